//! The agent's settings: environment variables (each also a flag), validated once at start-up
//! with an error that names the variable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cca_domain::SessionId;
use cca_store::StoreSpec;
use clap::Args;
use secrecy::SecretString;

/// Everything `cca-agent run` and `cca-agent preview` read.
#[derive(Debug, Clone, Default, Args)]
pub struct AgentArgs {
    /// The session this container serves (set by the launcher).
    #[arg(long, env = "SESSION_ID")]
    pub session_id: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub github: GitHubArgs,

    /// The control plane's token broker (the webhook): with it the agent holds no GitHub App
    /// key and asks there for its repository's installation tokens.
    #[arg(long, env = "CCA_TOKEN_URL")]
    pub token_url: Option<String>,
    /// The session's control token, set by the launcher on each task: it authenticates the
    /// control API's callers and the agent's token requests; no control key is needed then.
    #[arg(long, env = "CCA_SESSION_TOKEN", hide_env_values = true)]
    pub session_token: Option<String>,

    #[command(flatten)]
    pub control: ControlArgs,
    #[command(flatten)]
    pub jira: JiraArgs,

    /// Secrets Manager secret with an Anthropic API key (plain, or JSON with `api_key` or
    /// `oauth_token`), passed only to the coding CLI. Without it the CLI uses what its
    /// environment gives (Bedrock through the task role, or `ANTHROPIC_API_KEY`).
    #[arg(long, env = "ANTHROPIC_SECRET_ARN")]
    pub anthropic_secret_arn: Option<String>,

    /// The Messages API the model gateway forwards to.
    #[arg(long, env = "ANTHROPIC_BASE_URL")]
    pub anthropic_base_url: Option<String>,
    /// Model prices overriding the gateway's table: `prefix=input/output,…` (USD per million
    /// tokens).
    #[arg(long, env = "MODEL_PRICES")]
    pub model_prices: Option<String>,

    /// ECS task metadata endpoint (set by ECS); the agent's address comes from it.
    #[arg(long, env = "ECS_CONTAINER_METADATA_URI_V4")]
    pub ecs_metadata_uri: Option<String>,
    /// The agent's address when not on ECS (the process launcher sets 127.0.0.1).
    #[arg(long, env = "AGENT_ADDRESS")]
    pub agent_address: Option<String>,
    /// Port of the app's dev server, which the proxy forwards to (0: any free port).
    #[arg(long, env = "APP_PORT")]
    pub app_port: Option<u16>,
    /// Port of the control API (0: any free port).
    #[arg(long, env = "CONTROL_PORT")]
    pub control_port: Option<u16>,
    /// Where repositories are cloned.
    #[arg(long, env = "AGENT_WORKSPACE")]
    pub workspace: Option<PathBuf>,
    /// Data directory of `cca up` (workspaces go under it when `AGENT_WORKSPACE` is unset).
    #[arg(long, env = "CCA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Coding CLI: `claude` (default) or `command` (`AGENT_CLI_COMMAND`).
    #[arg(long, env = "AGENT_CLI")]
    pub cli: Option<String>,
    /// The Claude Code executable.
    #[arg(long, env = "CLAUDE_BIN")]
    pub claude_bin: Option<PathBuf>,
    /// Model for Claude Code (`--model`); its default when unset.
    #[arg(long, env = "CLAUDE_MODEL")]
    pub claude_model: Option<String>,
    /// Shell command of the generic adapter; the prompt is on its standard input (and in
    /// `$CCA_PROMPT` up to 100 KiB).
    #[arg(long, env = "AGENT_CLI_COMMAND")]
    pub cli_command: Option<String>,

    #[arg(long, env = "MAX_TURNS_PER_RUN")]
    pub max_turns_per_run: Option<u32>,
    #[arg(long, env = "MAX_TURNS_PER_SESSION")]
    pub max_turns_per_session: Option<u32>,
    #[arg(long, env = "MAX_COST_PER_RUN_USD")]
    pub max_cost_per_run_usd: Option<f64>,
    #[arg(long, env = "MAX_COST_PER_SESSION_USD")]
    pub max_cost_per_session_usd: Option<f64>,
    /// How far `/claude budget +N` may raise the session's cost limit (default: not at all).
    #[arg(long, env = "MAX_COST_PER_SESSION_CAP_USD")]
    pub max_cost_per_session_cap_usd: Option<f64>,
    #[arg(long, env = "MAX_TOKENS_PER_RUN")]
    pub max_tokens_per_run: Option<u64>,
    #[arg(long, env = "MAX_TOKENS_PER_SESSION")]
    pub max_tokens_per_session: Option<u64>,
    #[arg(long, env = "RUN_TIMEOUT_SECS")]
    pub run_timeout_secs: Option<u64>,
    #[arg(long, env = "RUN_SILENCE_TIMEOUT_SECS")]
    pub silence_timeout_secs: Option<u64>,
    #[arg(long, env = "IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    #[arg(long, env = "IDLE_WARNING_SECS")]
    pub idle_warning_secs: Option<u64>,
    #[arg(long, env = "HEARTBEAT_SECS")]
    pub heartbeat_secs: Option<u64>,
    /// Least seconds between two edits of the status comment.
    #[arg(long, env = "STATUS_INTERVAL_SECS")]
    pub status_interval_secs: Option<u64>,
    /// Most content-creating GitHub requests in any minute (GitHub's secondary limit is 80).
    #[arg(long, env = "GITHUB_WRITES_PER_MINUTE")]
    pub github_writes_per_minute: Option<u32>,
    /// Seconds from a stop request to exit: the CLI is stopped, work pushed, state recorded.
    #[arg(long, env = "STOP_DEADLINE_SECS")]
    pub stop_deadline_secs: Option<u64>,
    /// Fix runs a PR gets for failing checks on the agent's own commits (0: none).
    #[arg(long, env = "CI_FIX_ATTEMPTS")]
    pub ci_fix_attempts: Option<u32>,
    /// Where untrusted code runs: `auto` (default), `bwrap`, `user` or `none`.
    #[arg(long, env = "AGENT_SANDBOX")]
    pub sandbox: Option<String>,
    /// The unprivileged user untrusted code runs as when the agent is root.
    #[arg(long, env = "AGENT_SANDBOX_USER")]
    pub sandbox_user: Option<String>,
    /// The bubblewrap executable.
    #[arg(long, env = "AGENT_SANDBOX_BWRAP")]
    pub sandbox_bwrap: Option<PathBuf>,
    /// More paths (`:`-separated) visible read-only inside bubblewrap.
    #[arg(long, env = "AGENT_SANDBOX_PATHS")]
    pub sandbox_paths: Option<String>,
    /// More variable names (`,`-separated) passed to untrusted processes.
    #[arg(long, env = "AGENT_SANDBOX_ENV")]
    pub sandbox_env: Option<String>,
    /// Author of the commits the agent makes.
    #[arg(long, env = "GIT_AUTHOR_NAME")]
    pub git_author_name: Option<String>,
    #[arg(long, env = "GIT_AUTHOR_EMAIL")]
    pub git_author_email: Option<String>,
}

pub use cca_settings::{
    ConfigError, ControlArgs, ControlSource, GitHubArgs, GitHubSource, JiraArgs, JiraSource,
    StoreArgs,
};

/// Whose GitHub identity the agent uses.
#[derive(Debug, Clone)]
pub enum GitHubIdentity {
    /// The control plane's token broker (`CCA_TOKEN_URL`), with the session's token: the
    /// deployed agent holds no App key.
    Broker { url: String },
    /// Credentials of its own (local use).
    Direct(GitHubSource),
}

/// The coding CLI and how it is run.
#[derive(Debug, Clone)]
pub enum CliSpec {
    Claude {
        program: PathBuf,
        model: Option<String>,
    },
    Command {
        shell_command: String,
    },
}

/// Limits on the work of one run and of the whole session.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_turns_per_run: u32,
    pub max_turns_per_session: u32,
    pub max_cost_per_run_usd: f64,
    pub max_cost_per_session_usd: f64,
    /// Tokens (input, output and cache) a run may use; no limit when `None`.
    pub max_tokens_per_run: Option<u64>,
    /// Tokens the session may use while this agent runs; no limit when `None`.
    pub max_tokens_per_session: Option<u64>,
    pub run_timeout: Duration,
    /// A CLI that prints nothing for this long is stopped (the original's 600 s).
    pub silence_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long before the idle timeout the warning is posted.
    pub idle_warning: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_turns_per_run: 50,
            max_turns_per_session: 300,
            max_cost_per_run_usd: 5.0,
            max_cost_per_session_usd: 25.0,
            max_tokens_per_run: None,
            max_tokens_per_session: None,
            run_timeout: Duration::from_secs(45 * 60),
            silence_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(60 * 60),
            idle_warning: Duration::from_secs(5 * 60),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub session_id: SessionId,
    pub store: StoreSpec,
    pub github_api_url: String,
    pub github: GitHubIdentity,
    pub default_installation: Option<u64>,
    /// The control key, when the agent derives its session's token itself (local use).
    pub control: Option<ControlSource>,
    /// The session's token as the launcher gave it.
    pub session_token: Option<SecretString>,
    pub jira: Option<JiraSource>,
    pub anthropic_secret_arn: Option<String>,
    pub ecs_metadata_uri: Option<String>,
    pub agent_address: Option<String>,
    pub app_port: u16,
    pub control_port: u16,
    pub workspace: PathBuf,
    pub cli: CliSpec,
    pub limits: Limits,
    pub heartbeat: Duration,
    pub status_interval: Duration,
    pub github_writes_per_minute: u32,
    pub stop_deadline: Duration,
    pub git_author_name: String,
    pub git_author_email: String,
    pub sandbox: crate::sandbox::Settings,
    /// The Messages API behind the model gateway.
    pub model_api_url: String,
    /// What the gateway charges per model.
    pub prices: crate::gateway::Prices,
    /// Files and directories of the agent's own (credentials, the store, the data directory)
    /// hidden from untrusted code.
    pub private_paths: Vec<PathBuf>,
    /// Where the CLI's conversation is kept between containers: the data directory under
    /// `cca up`, else S3 through the token broker; none for an agent with credentials of its
    /// own and no data directory.
    pub conversations: Option<crate::conversation::Store>,
    /// `CI_FIX_ATTEMPTS`: fix runs for failing checks (3).
    pub ci_fix_attempts: u32,
    /// `MAX_COST_PER_SESSION_CAP_USD`: the most `/claude budget` may raise the session's cost
    /// limit to (the limit itself unless set).
    pub cost_cap_usd: f64,
}

/// Fix runs a PR gets for failing checks unless `CI_FIX_ATTEMPTS` says otherwise.
pub const DEFAULT_CI_FIX_ATTEMPTS: u32 = 3;

/// Port the dev server listens on in a container (the proxy forwards to it).
pub const DEFAULT_APP_PORT: u16 = 3000;
/// Port of the control API in a container.
pub const DEFAULT_CONTROL_PORT: u16 = 8080;

impl Config {
    /// Validates the settings.
    pub fn from_args(a: AgentArgs) -> Result<Self, ConfigError> {
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let session_id = nonempty(&a.session_id).ok_or(ConfigError::Missing {
            var: "SESSION_ID",
            why: "the launcher names the session the container serves",
        })?;
        let session_id = SessionId::parse(&session_id).map_err(|e| ConfigError::Invalid {
            var: "SESSION_ID",
            reason: e.to_string(),
        })?;
        let store = a.store.required()?;

        let session_token = nonempty(&a.session_token).map(SecretString::from);
        let github = match nonempty(&a.token_url) {
            Some(url) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(ConfigError::Invalid {
                        var: "CCA_TOKEN_URL",
                        reason: format!("{url:?} is not an http(s) URL"),
                    });
                }
                if session_token.is_none() {
                    return Err(ConfigError::Missing {
                        var: "CCA_SESSION_TOKEN",
                        why: "CCA_TOKEN_URL is set: the launcher gives each task its session's token",
                    });
                }
                GitHubIdentity::Broker { url }
            }
            None => GitHubIdentity::Direct(a.github.source()?.ok_or(ConfigError::Missing {
                var: "CCA_TOKEN_URL",
                why: "the control plane's token broker (the webhook's URL); locally GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY_FILE or GITHUB_TOKEN instead",
            })?),
        };
        let github_api_url = a.github.api.url()?;

        let control = match &session_token {
            Some(_) if !a.control.is_set() => None,
            _ => Some(a.control.source(
                "the control API's token is derived from it (or give CCA_SESSION_TOKEN; locally: CCA_CONTROL_SECRET)",
            )?),
        };

        let jira = a.jira.source()?;

        let cli = match nonempty(&a.cli).as_deref().unwrap_or("claude") {
            "claude" => CliSpec::Claude {
                program: a
                    .claude_bin
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("claude")),
                model: nonempty(&a.claude_model),
            },
            "command" => CliSpec::Command {
                shell_command: nonempty(&a.cli_command).ok_or(ConfigError::Missing {
                    var: "AGENT_CLI_COMMAND",
                    why: "AGENT_CLI=command runs it (the prompt is on its standard input and in $CCA_PROMPT)",
                })?,
            },
            other => {
                return Err(ConfigError::Invalid {
                    var: "AGENT_CLI",
                    reason: format!("{other:?} is neither claude nor command"),
                });
            }
        };

        let d = Limits::default();
        let secs = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_secs);
        let positive_cost = |v: Option<f64>, default: f64, var: &'static str| match v {
            None => Ok(default),
            Some(c) if c.is_finite() && c > 0.0 => Ok(c),
            Some(c) => Err(ConfigError::Invalid {
                var,
                reason: format!("{c} is not a positive amount"),
            }),
        };
        let limits = Limits {
            max_turns_per_run: a.max_turns_per_run.unwrap_or(d.max_turns_per_run).max(1),
            max_turns_per_session: a
                .max_turns_per_session
                .unwrap_or(d.max_turns_per_session)
                .max(1),
            max_cost_per_run_usd: positive_cost(
                a.max_cost_per_run_usd,
                d.max_cost_per_run_usd,
                "MAX_COST_PER_RUN_USD",
            )?,
            max_cost_per_session_usd: positive_cost(
                a.max_cost_per_session_usd,
                d.max_cost_per_session_usd,
                "MAX_COST_PER_SESSION_USD",
            )?,
            // 0 means no limit, as when unset.
            max_tokens_per_run: a.max_tokens_per_run.filter(|n| *n > 0),
            max_tokens_per_session: a.max_tokens_per_session.filter(|n| *n > 0),
            run_timeout: secs(a.run_timeout_secs, d.run_timeout),
            silence_timeout: secs(a.silence_timeout_secs, d.silence_timeout),
            idle_timeout: secs(a.idle_timeout_secs, d.idle_timeout),
            idle_warning: secs(a.idle_warning_secs, d.idle_warning),
        };
        if limits.idle_warning >= limits.idle_timeout {
            return Err(ConfigError::Invalid {
                var: "IDLE_WARNING_SECS",
                reason: "the warning must come before the idle timeout".into(),
            });
        }
        let writes = a.github_writes_per_minute.unwrap_or(60);
        if !(1..=80).contains(&writes) {
            return Err(ConfigError::Invalid {
                var: "GITHUB_WRITES_PER_MINUTE",
                reason: format!("{writes} is outside 1..=80 (GitHub's secondary limit is 80)"),
            });
        }

        let workspace = a
            .workspace
            .clone()
            .or_else(|| a.data_dir.as_ref().map(|d| d.join("workspaces")))
            .unwrap_or_else(|| PathBuf::from("/workspace"));

        let model_api_url =
            nonempty(&a.anthropic_base_url).unwrap_or_else(|| "https://api.anthropic.com".into());
        if !(model_api_url.starts_with("https://") || model_api_url.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                var: "ANTHROPIC_BASE_URL",
                reason: format!("{model_api_url:?} is not an http(s) URL"),
            });
        }
        let prices = crate::gateway::Prices::parse(a.model_prices.as_deref().unwrap_or(""))
            .map_err(|e| ConfigError::Invalid {
                var: "MODEL_PRICES",
                reason: e.to_string(),
            })?;
        let sandbox = sandbox_settings(&a)?;
        // Everything of the agent's own that untrusted code must not see, besides the homes,
        // /tmp and /run, which are always hidden.
        let mut private_paths = vec![workspace.clone()];
        private_paths.extend(a.data_dir.clone());
        private_paths.extend(a.github.github_app_private_key_file.clone());
        if let StoreSpec::Sqlite { path } = &store {
            private_paths.extend(path.parent().map(Path::to_path_buf));
        }
        private_paths.extend(std::env::var_os("HOME").map(PathBuf::from));

        let cost_cap_usd = match a.max_cost_per_session_cap_usd {
            None => limits.max_cost_per_session_usd,
            Some(cap) if cap.is_finite() && cap >= limits.max_cost_per_session_usd => cap,
            Some(cap) if !cap.is_finite() => {
                return Err(ConfigError::Invalid {
                    var: "MAX_COST_PER_SESSION_CAP_USD",
                    reason: format!("{cap} is not a number of dollars"),
                });
            }
            Some(cap) => {
                return Err(ConfigError::Invalid {
                    var: "MAX_COST_PER_SESSION_CAP_USD",
                    reason: format!(
                        "{cap} is below MAX_COST_PER_SESSION_USD ({})",
                        limits.max_cost_per_session_usd
                    ),
                });
            }
        };
        let conversations = match (&a.data_dir, &github, &session_token) {
            (Some(dir), _, _) => Some(crate::conversation::Store::Dir(dir.join("conversations"))),
            (None, GitHubIdentity::Broker { url }, Some(token)) => {
                Some(crate::conversation::Store::Broker {
                    url: url.clone(),
                    token: token.clone(),
                })
            }
            _ => None,
        };
        Ok(Config {
            session_id,
            store,
            github_api_url,
            github,
            default_installation: a.github.github_installation_id,
            control,
            session_token,
            jira,
            anthropic_secret_arn: nonempty(&a.anthropic_secret_arn),
            ecs_metadata_uri: nonempty(&a.ecs_metadata_uri),
            agent_address: nonempty(&a.agent_address),
            app_port: a.app_port.unwrap_or(DEFAULT_APP_PORT),
            control_port: a.control_port.unwrap_or(DEFAULT_CONTROL_PORT),
            workspace,
            cli,
            limits,
            heartbeat: secs(a.heartbeat_secs, Duration::from_secs(30)),
            status_interval: secs(a.status_interval_secs, Duration::from_secs(10)),
            github_writes_per_minute: writes,
            stop_deadline: secs(a.stop_deadline_secs, Duration::from_secs(25)),
            git_author_name: nonempty(&a.git_author_name).unwrap_or_else(|| "Claude Agent".into()),
            git_author_email: nonempty(&a.git_author_email)
                .unwrap_or_else(|| "claude-agent@users.noreply.github.com".into()),
            sandbox,
            model_api_url,
            prices,
            private_paths,
            conversations,
            ci_fix_attempts: a.ci_fix_attempts.unwrap_or(DEFAULT_CI_FIX_ATTEMPTS),
            cost_cap_usd,
        })
    }
}

/// The sandbox settings of `a` (`AGENT_SANDBOX`, `AGENT_SANDBOX_USER`, `AGENT_SANDBOX_BWRAP`,
/// `AGENT_SANDBOX_PATHS`, `AGENT_SANDBOX_ENV`), validated.
pub fn sandbox_settings(a: &AgentArgs) -> Result<crate::sandbox::Settings, ConfigError> {
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let list = |v: &Option<String>, sep: char| -> Vec<String> {
        v.as_deref()
            .unwrap_or("")
            .split(sep)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let sandbox = crate::sandbox::Settings {
        requested: a
            .sandbox
            .as_deref()
            .unwrap_or("")
            .parse()
            .map_err(|reason| ConfigError::Invalid {
                var: "AGENT_SANDBOX",
                reason,
            })?,
        user: nonempty(&a.sandbox_user).unwrap_or_else(|| crate::sandbox::DEFAULT_USER.to_owned()),
        bwrap: a
            .sandbox_bwrap
            .clone()
            .unwrap_or_else(|| PathBuf::from("bwrap")),
        paths: list(&a.sandbox_paths, ':')
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        env: list(&a.sandbox_env, ','),
    };
    if let Some(bad) = sandbox.env.iter().find(|n| {
        crate::setup::WITHHELD_FROM_CHILDREN.contains(&n.as_str())
            || crate::setup::MODEL_CREDENTIALS.contains(&n.as_str())
    }) {
        return Err(ConfigError::Invalid {
            var: "AGENT_SANDBOX_ENV",
            reason: format!("{bad} holds a credential and is never passed to untrusted code"),
        });
    }
    Ok(sandbox)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> AgentArgs {
        AgentArgs {
            session_id: Some("abcdefgh12345678".into()),
            store: StoreArgs {
                session_store: Some("sqlite:/tmp/x.db".into()),
                ..StoreArgs::default()
            },
            github: GitHubArgs {
                github_token: Some("ghp_x".into()),
                ..GitHubArgs::default()
            },
            control: ControlArgs {
                control_secret: Some("k".repeat(32)),
                ..ControlArgs::default()
            },
            ..AgentArgs::default()
        }
    }

    #[test]
    fn defaults_are_filled() {
        let c = Config::from_args(base()).unwrap();
        assert_eq!(c.app_port, DEFAULT_APP_PORT);
        assert_eq!(c.control_port, DEFAULT_CONTROL_PORT);
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.workspace, PathBuf::from("/workspace"));
        assert!(matches!(c.cli, CliSpec::Claude { .. }));
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: Vec<(AgentArgs, &str)> = vec![
            (
                AgentArgs {
                    session_id: None,
                    ..base()
                },
                "SESSION_ID",
            ),
            (
                AgentArgs {
                    store: StoreArgs::default(),
                    ..base()
                },
                "SESSION_STORE",
            ),
            (
                AgentArgs {
                    github: GitHubArgs::default(),
                    ..base()
                },
                "CCA_TOKEN_URL",
            ),
            (
                AgentArgs {
                    control: ControlArgs {
                        control_secret: Some("short".into()),
                        ..ControlArgs::default()
                    },
                    ..base()
                },
                "CCA_CONTROL_SECRET",
            ),
            (
                AgentArgs {
                    cli: Some("command".into()),
                    ..base()
                },
                "AGENT_CLI_COMMAND",
            ),
            (
                AgentArgs {
                    max_cost_per_run_usd: Some(-1.0),
                    ..base()
                },
                "MAX_COST_PER_RUN_USD",
            ),
            (
                AgentArgs {
                    github_writes_per_minute: Some(81),
                    ..base()
                },
                "GITHUB_WRITES_PER_MINUTE",
            ),
            (
                AgentArgs {
                    idle_timeout_secs: Some(60),
                    idle_warning_secs: Some(60),
                    ..base()
                },
                "IDLE_WARNING_SECS",
            ),
        ];
        for (args, var) in cases {
            let e = Config::from_args(args).unwrap_err().to_string();
            assert!(e.starts_with(var), "{var}: {e}");
        }
    }
}
