//! The webhook's configuration: environment variables (or the same as flags), loaded once and
//! validated at start-up with an error that names the variable at fault. docs/CONFIGURATION.md
//! lists every variable; a test checks that list against this file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use cca_domain::RepoName;
use cca_domain::address::{self, Guard};
use cca_domain::decide::{JiraActors, Rules};
use cca_domain::naming::PreviewUrls;
use secrecy::SecretString;

pub use cca_settings::{
    ConfigError, ControlArgs, ControlSource, GitHubArgs, GitHubSource, JiraArgs, JiraSource,
    StoreArgs, StoreSpec, TaskArgs,
};

/// Every setting, as flags and environment variables.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WebhookArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub tasks: TaskArgs,
    /// `ecs` or `process`. Default: `ecs` when ECS_CLUSTER is set, else `process`.
    #[arg(long, env = "LAUNCHER")]
    pub launcher: Option<String>,
    /// Comma-separated subnet ids for agent and preview tasks.
    #[arg(long, env = "AGENT_SUBNETS")]
    pub agent_subnets: Option<String>,
    #[arg(long, env = "AGENT_ASSIGN_PUBLIC_IP")]
    pub agent_assign_public_ip: Option<bool>,
    /// The `cca-agent` program the process launcher runs. Default: beside this binary.
    #[arg(long, env = "CCA_AGENT_BIN")]
    pub agent_bin: Option<PathBuf>,
    /// Where the process launcher writes agent logs.
    #[arg(long, env = "CCA_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
    #[arg(long, env = "UAT_DOMAIN_SUFFIX")]
    pub uat_domain_suffix: Option<String>,
    /// How preview URLs are written, e.g. `http://{id}.localhost:8081`. Default:
    /// `https://{id}.<UAT_DOMAIN_SUFFIX>`.
    #[arg(long, env = "PREVIEW_URL_TEMPLATE")]
    pub preview_url_template: Option<String>,
    #[command(flatten)]
    pub github: GitHubArgs,
    /// Comma-separated: the current secret first, older ones still accepted during a rotation.
    #[arg(long, env = "GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub github_webhook_secret: Option<String>,
    #[command(flatten)]
    pub jira: JiraArgs,
    #[arg(long, env = "JIRA_WEBHOOK_SECRET", hide_env_values = true)]
    pub jira_webhook_secret: Option<String>,
    /// JSON object `{"PROJ": "owner/repo"}` or `PROJ=owner/repo,OTHER=owner/other`.
    #[arg(long, env = "JIRA_PROJECT_MAPPING")]
    pub jira_project_mapping: Option<String>,
    /// Comma-separated Atlassian account ids of the people who may start sessions from JIRA.
    #[arg(long, env = "JIRA_ALLOWED_ACCOUNTS")]
    pub jira_allowed_accounts: Option<String>,
    /// Let any person who can label an issue of a mapped project start sessions (weaker).
    #[arg(long, env = "JIRA_ALLOW_ANY_ACCOUNT")]
    pub jira_allow_any_account: Option<bool>,
    #[command(flatten)]
    pub control: ControlArgs,
    #[arg(long, env = "TRIGGER_LABEL")]
    pub trigger_label: Option<String>,
    #[arg(long, env = "TRIGGER_LABEL_STAGING")]
    pub trigger_label_staging: Option<String>,
    #[arg(long, env = "PLAN_LABEL")]
    pub plan_label: Option<String>,
    #[arg(long, env = "UAT_LABEL")]
    pub uat_label: Option<String>,
    #[arg(long, env = "UAT_LABEL_STAGING")]
    pub uat_label_staging: Option<String>,
    /// The mention that sends a comment to the agent.
    #[arg(long, env = "CLAUDE_MENTION")]
    pub claude_mention: Option<String>,
    /// Forward every human comment on a session's PR, mention or not.
    #[arg(long, env = "FORWARD_ALL_COMMENTS")]
    pub forward_all_comments: Option<bool>,
    /// The most agent sessions of one installation that run at once; more wait in line.
    #[arg(long, env = "MAX_ACTIVE_SESSIONS")]
    pub max_active_sessions: Option<String>,
    /// S3 bucket agents keep their CLI's conversation in (through URLs presigned here).
    #[arg(long, env = "CONVERSATION_BUCKET")]
    pub conversation_bucket: Option<String>,
    /// Seconds to wait for an agent's control API.
    #[arg(long, env = "CONTROL_TIMEOUT_SECS")]
    pub control_timeout_secs: Option<u64>,
    /// Comma-separated ranges agents' control APIs may be called in. Default: the private ranges.
    #[arg(long, env = "AGENT_ALLOWED_CIDRS")]
    pub agent_allowed_cidrs: Option<String>,
}

/// How containers are started.
#[derive(Debug, Clone)]
pub enum LauncherSpec {
    Ecs(cca_launcher::EcsSettings),
    /// Local processes; `env` is added to what they inherit (the settings `cca up` filled in).
    Process {
        program: PathBuf,
        log_dir: PathBuf,
        env: Vec<(String, String)>,
    },
}

/// JIRA, when configured: its credentials, and what the webhook needs besides (from the
/// environment with a local JIRA, from the secret otherwise).
#[derive(Debug, Clone)]
pub struct JiraConfig {
    pub source: JiraSource,
    /// `JIRA_WEBHOOK_SECRET`'s; empty with a secret, which holds them.
    pub webhook_secrets: Vec<SecretString>,
    /// `JIRA_PROJECT_MAPPING`; empty with a secret, which holds it.
    pub project_mapping: BTreeMap<String, RepoName>,
}

/// The validated configuration of `cca-webhook`.
#[derive(Debug, Clone)]
pub struct Config {
    pub store: StoreSpec,
    pub launcher: LauncherSpec,
    pub github_api_url: String,
    pub github: GitHubSource,
    /// `GITHUB_WEBHOOK_SECRET`'s; empty with an App's secret, which holds them.
    pub github_webhook_secrets: Vec<SecretString>,
    pub jira: Option<JiraConfig>,
    pub control: ControlSource,
    pub uat_domain_suffix: String,
    /// Sessions' preview URLs: `https://<id>.<uat_domain_suffix>` unless a template says otherwise.
    pub preview_urls: PreviewUrls,
    pub rules: Rules,
    pub control_timeout: Duration,
    /// Where agents' control APIs may be called: `AGENT_ALLOWED_CIDRS`, and loopback when the
    /// process launcher runs the agents on this machine.
    pub agent_addresses: Guard,
    /// `CONVERSATION_BUCKET`: where agents keep their CLI's conversation between containers.
    pub conversation_bucket: Option<String>,
}

/// Default bound on a call to an agent's control API: GitHub allows the webhook 10 s in all.
pub const DEFAULT_CONTROL_TIMEOUT: Duration = Duration::from_secs(4);

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The shortest webhook secret accepted: GitHub's own advice is a long random string, and a
/// short one can be guessed against the signature.
pub const MIN_WEBHOOK_SECRET_LEN: usize = 16;

/// A list of webhook secrets: one a line (the current one first, older ones still accepted
/// during a rotation). Lines, not commas: a secret may hold a comma, never a line break, so no
/// secret is cut into fragments that would each be accepted. Each must have
/// [`MIN_WEBHOOK_SECRET_LEN`] characters.
pub fn webhook_secrets(var: &'static str, s: &str) -> Result<Vec<SecretString>, ConfigError> {
    let list: Vec<SecretString> = secret_lines(s).map(SecretString::from).collect();
    check_webhook_secrets(var, &list)?;
    if list.len() == 1 && s.contains(',') {
        // Lists used to be comma-separated: say so rather than reject every signature quietly.
        tracing::warn!(
            var,
            "the webhook secret holds a comma: it is taken whole; a rotation's list is one secret a line"
        );
    }
    Ok(list)
}

/// The secrets of a list, one a line, trimmed, empty lines skipped (also what `cca replay`
/// signs with: the first).
pub fn secret_lines(s: &str) -> impl Iterator<Item = &str> {
    s.split('\n').map(str::trim).filter(|l| !l.is_empty())
}

/// Refuses a list holding a secret shorter than [`MIN_WEBHOOK_SECRET_LEN`] (naming its place,
/// never its value).
pub fn check_webhook_secrets(
    source: &'static str,
    list: &[SecretString],
) -> Result<(), ConfigError> {
    use secrecy::ExposeSecret;
    match list
        .iter()
        .position(|s| s.expose_secret().chars().count() < MIN_WEBHOOK_SECRET_LEN)
    {
        Some(i) => Err(ConfigError::Invalid {
            var: source,
            reason: format!(
                "webhook secret {} of the list is shorter than {MIN_WEBHOOK_SECRET_LEN} characters",
                i + 1
            ),
        }),
        None => Ok(()),
    }
}

/// The value of `var`, which `why` requires (empty counts as unset).
fn required(
    v: &Option<String>,
    var: &'static str,
    why: &'static str,
) -> Result<String, ConfigError> {
    v.clone()
        .filter(|s| !s.is_empty())
        .ok_or(ConfigError::Missing { var, why })
}

/// The staging task definition: as set, or `<family>-staging` when the latest one is named by
/// its family alone. An ARN or `family:revision` cannot be suffixed, so it needs the variable.
fn staging_family(
    latest: &str,
    set: &Option<String>,
    var: &'static str,
) -> Result<String, ConfigError> {
    match set.clone().filter(|s| !s.is_empty()) {
        Some(s) => Ok(s),
        None if latest.contains(':') || latest.contains('/') => Err(ConfigError::Missing {
            var,
            why: "the latest task definition is given as an ARN or family:revision, so the staging one cannot be derived",
        }),
        None => Ok(format!("{latest}-staging")),
    }
}

/// Who may start sessions from JIRA: `JIRA_ALLOWED_ACCOUNTS` or `JIRA_ALLOW_ANY_ACCOUNT=true`,
/// not both (which one was meant would be a guess); nobody when neither is set.
fn jira_actors(a: &WebhookArgs) -> Result<JiraActors, ConfigError> {
    let accounts = a
        .jira_allowed_accounts
        .as_deref()
        .map(list)
        .unwrap_or_default();
    match (
        accounts.is_empty(),
        a.jira_allow_any_account.unwrap_or(false),
    ) {
        (true, false) => Ok(JiraActors::Nobody),
        (true, true) => Ok(JiraActors::AnyPerson),
        (false, false) => Ok(JiraActors::Accounts(accounts.into_iter().collect())),
        (false, true) => Err(ConfigError::Invalid {
            var: "JIRA_ALLOW_ANY_ACCOUNT",
            reason: "JIRA_ALLOWED_ACCOUNTS is set too; set one of them".into(),
        }),
    }
}

/// Parses `JIRA_PROJECT_MAPPING`: a JSON object or `KEY=owner/repo` pairs.
pub fn parse_mapping(
    var: &'static str,
    s: &str,
) -> Result<BTreeMap<String, RepoName>, ConfigError> {
    let pairs: Vec<(String, String)> = if s.trim_start().starts_with('{') {
        let m: BTreeMap<String, String> =
            serde_json::from_str(s).map_err(|e| ConfigError::Invalid {
                var,
                reason: e.to_string(),
            })?;
        m.into_iter().collect()
    } else {
        list(s)
            .into_iter()
            .map(|p| {
                p.split_once('=')
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .ok_or_else(|| ConfigError::Invalid {
                        var,
                        reason: format!("{p:?} is not KEY=owner/repo"),
                    })
            })
            .collect::<Result<_, _>>()?
    };
    pairs
        .into_iter()
        .map(|(k, v)| {
            let repo = RepoName::parse(&v).map_err(|e| ConfigError::Invalid {
                var,
                reason: e.to_string(),
            })?;
            Ok((k.to_ascii_uppercase(), repo))
        })
        .collect()
}

impl Config {
    /// Validates the settings.
    pub fn from_args(a: WebhookArgs) -> Result<Self, ConfigError> {
        let store = a.store.required()?;

        let launcher_kind = a.launcher.clone().unwrap_or_else(|| {
            if a.tasks.ecs_cluster.is_some() {
                "ecs".into()
            } else {
                "process".into()
            }
        });
        let launcher = match launcher_kind.as_str() {
            "ecs" => {
                let need = |v: &Option<String>, var: &'static str| {
                    required(v, var, "required by LAUNCHER=ecs")
                };
                let cluster = need(&a.tasks.ecs_cluster, "ECS_CLUSTER")?;
                let agent = need(&a.tasks.agent_task_definition, "AGENT_TASK_DEFINITION")?;
                let uat = need(&a.tasks.uat_task_definition, "UAT_TASK_DEFINITION")?;
                let subnets = list(&need(&a.agent_subnets, "AGENT_SUBNETS")?);
                let security_groups = list(&need(
                    &a.tasks.agent_security_groups,
                    "AGENT_SECURITY_GROUPS",
                )?);
                let task_definitions = cca_launcher::TaskDefinitions {
                    agent_staging: staging_family(
                        &agent,
                        &a.tasks.agent_task_definition_staging,
                        "AGENT_TASK_DEFINITION_STAGING",
                    )?,
                    agent_latest: agent,
                    preview_staging: staging_family(
                        &uat,
                        &a.tasks.uat_task_definition_staging,
                        "UAT_TASK_DEFINITION_STAGING",
                    )?,
                    preview_latest: uat,
                };
                let mut settings = cca_launcher::EcsSettings::new(
                    cluster,
                    task_definitions,
                    subnets,
                    security_groups,
                    a.agent_assign_public_ip.unwrap_or(false),
                );
                if let Some(c) = a.tasks.agent_container_name.clone() {
                    settings.agent_container = c;
                }
                if let Some(c) = a.tasks.uat_container_name.clone() {
                    settings.preview_container = c;
                }
                LauncherSpec::Ecs(settings)
            }
            "process" => {
                let program = match &a.agent_bin {
                    Some(p) => p.clone(),
                    None => std::env::current_exe()
                        .ok()
                        .and_then(|p| p.parent().map(|d| d.join("cca-agent")))
                        .unwrap_or_else(|| PathBuf::from("cca-agent")),
                };
                let log_dir = a
                    .log_dir
                    .clone()
                    .unwrap_or_else(|| std::env::temp_dir().join("cca-logs"));
                LauncherSpec::Process {
                    program,
                    log_dir,
                    env: Vec::new(),
                }
            }
            other => {
                return Err(ConfigError::Invalid {
                    var: "LAUNCHER",
                    reason: format!("{other:?} is neither ecs nor process"),
                });
            }
        };

        // With an App's secret the webhook secrets are in it; otherwise they are required here.
        let github_webhook_secrets = if a.github.has_secret_arn() {
            Vec::new()
        } else {
            let list = match a.github_webhook_secret.as_deref() {
                Some(s) => webhook_secrets("GITHUB_WEBHOOK_SECRET", s)?,
                None => Vec::new(),
            };
            if list.is_empty() {
                return Err(ConfigError::Missing {
                    var: "GITHUB_WEBHOOK_SECRET",
                    why: "needed to verify GitHub deliveries (or set GITHUB_APP_SECRET_ARN)",
                });
            }
            list
        };
        let github = a.github.source()?.ok_or(ConfigError::Missing {
            var: "GITHUB_APP_SECRET_ARN",
            why: "set it, or GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY_FILE, or GITHUB_TOKEN",
        })?;

        let jira = match a.jira.source()? {
            None => None,
            Some(source) if a.jira.is_local() => {
                let need = |v: &Option<String>, var: &'static str| {
                    required(v, var, "JIRA_BASE_URL is set")
                };
                Some(JiraConfig {
                    source,
                    webhook_secrets: webhook_secrets(
                        "JIRA_WEBHOOK_SECRET",
                        &need(&a.jira_webhook_secret, "JIRA_WEBHOOK_SECRET")?,
                    )?,
                    project_mapping: parse_mapping(
                        "JIRA_PROJECT_MAPPING",
                        &need(&a.jira_project_mapping, "JIRA_PROJECT_MAPPING")?,
                    )?,
                })
            }
            Some(source) => Some(JiraConfig {
                source,
                webhook_secrets: Vec::new(),
                project_mapping: BTreeMap::new(),
            }),
        };

        let control = a.control.source(
            "the agents' control tokens are derived from it (locally: CCA_CONTROL_SECRET)",
        )?;

        let uat_domain_suffix = a
            .uat_domain_suffix
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError::Missing {
                var: "UAT_DOMAIN_SUFFIX",
                why: "previews are served under it",
            })?
            .trim_start_matches('.')
            .to_ascii_lowercase();
        let mut preview_urls = PreviewUrls::new(&uat_domain_suffix);
        if let Some(template) = a
            .preview_url_template
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            preview_urls =
                preview_urls
                    .with_template(template)
                    .map_err(|reason| ConfigError::Invalid {
                        var: "PREVIEW_URL_TEMPLATE",
                        reason,
                    })?;
        }

        let github_api_url = a.github.api.url()?;

        let mut rules = Rules::default();
        let set = |slot: &mut String, v: &Option<String>| {
            if let Some(v) = v.clone().filter(|s| !s.is_empty()) {
                *slot = v;
            }
        };
        set(&mut rules.agent_label, &a.trigger_label);
        set(&mut rules.agent_staging_label, &a.trigger_label_staging);
        set(&mut rules.agent_plan_label, &a.plan_label);
        set(&mut rules.preview_label, &a.uat_label);
        set(&mut rules.preview_staging_label, &a.uat_label_staging);
        set(&mut rules.mention, &a.claude_mention);
        rules.forward_all_comments = a.forward_all_comments.unwrap_or(false);
        rules.jira_actors = jira_actors(&a)?;
        if let Some(v) = a
            .max_active_sessions
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            rules.max_active_sessions = match v.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "MAX_ACTIVE_SESSIONS",
                        reason: format!("{v:?} is not a whole number above 0"),
                    });
                }
            };
        }

        let allowed = match a
            .agent_allowed_cidrs
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            Some(text) => address::parse_cidrs(text).map_err(|reason| ConfigError::Invalid {
                var: "AGENT_ALLOWED_CIDRS",
                reason,
            })?,
            None => Guard::default_allowed(),
        };
        // Agents the process launcher starts run on this machine and report a loopback address.
        let local_mode = matches!(launcher, LauncherSpec::Process { .. });

        Ok(Config {
            store,
            launcher,
            github_api_url,
            github,
            github_webhook_secrets,
            jira,
            control,
            uat_domain_suffix,
            preview_urls,
            rules,
            control_timeout: a
                .control_timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_CONTROL_TIMEOUT),
            agent_addresses: Guard::new(allowed, local_mode),
            conversation_bucket: a
                .conversation_bucket
                .clone()
                .map(|b| b.trim().to_owned())
                .filter(|b| !b.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> WebhookArgs {
        WebhookArgs {
            store: StoreArgs {
                session_store: Some("sqlite:/tmp/x.db".into()),
                ..StoreArgs::default()
            },
            github: GitHubArgs {
                github_token: Some("t".into()),
                ..GitHubArgs::default()
            },
            github_webhook_secret: Some("first-secret,with-a-comma\nsecond-secret-rotated".into()),
            control: ControlArgs {
                control_secret: Some("0123456789abcdef0123456789abcdef".into()),
                ..ControlArgs::default()
            },
            uat_domain_suffix: Some(".UAT.example.com".into()),
            ..WebhookArgs::default()
        }
    }

    /// The ECS settings the launcher needs, with one security group.
    fn ecs_tasks() -> TaskArgs {
        TaskArgs {
            ecs_cluster: Some("c".into()),
            agent_task_definition: Some("agent".into()),
            uat_task_definition: Some("preview".into()),
            agent_security_groups: Some("sg-1".into()),
            ..TaskArgs::default()
        }
    }

    fn err(a: WebhookArgs) -> String {
        Config::from_args(a).expect_err("should fail").to_string()
    }

    #[test]
    fn local_minimum_is_valid() {
        let c = Config::from_args(base()).unwrap();
        assert_eq!(
            c.store,
            StoreSpec::Sqlite {
                path: "/tmp/x.db".into()
            }
        );
        assert!(matches!(c.launcher, LauncherSpec::Process { .. }));
        assert_eq!(c.uat_domain_suffix, "uat.example.com");
        assert!(matches!(c.github, GitHubSource::Token(_)) && c.github_webhook_secrets.len() == 2);
    }

    #[test]
    fn webhook_secrets_are_lines_never_cut_at_a_comma_and_long_enough() {
        use secrecy::ExposeSecret;
        let c = Config::from_args(base()).unwrap();
        let got: Vec<&str> = c
            .github_webhook_secrets
            .iter()
            .map(|s| s.expose_secret())
            .collect();
        assert_eq!(got, ["first-secret,with-a-comma", "second-secret-rotated"]);
        let e = err(WebhookArgs {
            github_webhook_secret: Some("long-enough-secret-1\nxyzzy".into()),
            ..base()
        });
        assert!(e.starts_with("GITHUB_WEBHOOK_SECRET"), "{e}");
        assert!(e.contains("secret 2") && e.contains("16"), "{e}");
        assert!(!e.contains("xyzzy"), "the value is never said: {e}");
    }

    #[test]
    fn errors_name_the_variable() {
        assert!(
            err(WebhookArgs {
                store: StoreArgs::default(),
                ..base()
            })
            .starts_with("SESSION_STORE is not set")
        );
        assert!(
            err(WebhookArgs {
                store: StoreArgs {
                    session_store: Some("redis:x".into()),
                    ..StoreArgs::default()
                },
                ..base()
            })
            .starts_with("SESSION_STORE is invalid")
        );
        assert!(
            err(WebhookArgs {
                uat_domain_suffix: None,
                ..base()
            })
            .starts_with("UAT_DOMAIN_SUFFIX")
        );
        assert!(
            err(WebhookArgs {
                github_webhook_secret: None,
                ..base()
            })
            .starts_with("GITHUB_WEBHOOK_SECRET")
        );
        assert!(
            err(WebhookArgs {
                control: ControlArgs {
                    control_secret: Some("short".into()),
                    ..ControlArgs::default()
                },
                ..base()
            })
            .starts_with("CCA_CONTROL_SECRET")
        );
        assert!(
            err(WebhookArgs {
                launcher: Some("ecs".into()),
                ..base()
            })
            .starts_with("ECS_CLUSTER is not set")
        );
        let jira = WebhookArgs {
            jira: JiraArgs {
                jira_base_url: Some("https://j".into()),
                ..JiraArgs::default()
            },
            ..base()
        };
        assert!(err(jira).starts_with("JIRA_EMAIL is not set"));
    }

    #[test]
    fn preview_urls_follow_the_template_when_set() {
        let id = cca_domain::SessionId::parse("abc123").unwrap();
        let c = Config::from_args(base()).unwrap();
        assert_eq!(c.preview_urls.url(&id), "https://abc123.uat.example.com");
        let c = Config::from_args(WebhookArgs {
            preview_url_template: Some("http://{id}.localhost:8081".into()),
            ..base()
        })
        .unwrap();
        assert_eq!(c.preview_urls.url(&id), "http://abc123.localhost:8081");
        assert!(
            err(WebhookArgs {
                preview_url_template: Some("http://localhost:8081".into()),
                ..base()
            })
            .starts_with("PREVIEW_URL_TEMPLATE is invalid")
        );
    }

    #[test]
    fn sessions_table_alone_means_dynamodb() {
        let c = Config::from_args(WebhookArgs {
            store: StoreArgs {
                sessions_table: Some("t".into()),
                ..StoreArgs::default()
            },
            ..base()
        })
        .unwrap();
        assert_eq!(c.store, StoreSpec::Dynamo { table: "t".into() });
    }

    #[test]
    fn ecs_settings_default_staging_families() {
        let a = WebhookArgs {
            tasks: ecs_tasks(),
            agent_subnets: Some("subnet-1, subnet-2".into()),
            ..base()
        };
        let LauncherSpec::Ecs(e) = Config::from_args(a).unwrap().launcher else {
            panic!("not ecs")
        };
        assert_eq!(e.task_definitions.agent_staging, "agent-staging");
        let arn = WebhookArgs {
            tasks: TaskArgs {
                agent_task_definition: Some(
                    "arn:aws:ecs:us-east-1:1:task-definition/agent:3".into(),
                ),
                ..ecs_tasks()
            },
            agent_subnets: Some("subnet-1".into()),
            ..base()
        };
        assert!(err(arn).starts_with("AGENT_TASK_DEFINITION_STAGING is not set"));
        assert_eq!(e.subnets, vec!["subnet-1", "subnet-2"]);
    }

    #[test]
    fn jira_actors_are_nobody_unless_configured() {
        let rules = |a: WebhookArgs| Config::from_args(a).unwrap().rules;
        assert_eq!(rules(base()).jira_actors, JiraActors::Nobody);
        assert_eq!(
            rules(WebhookArgs {
                jira_allowed_accounts: Some(" , ".into()),
                jira_allow_any_account: Some(false),
                ..base()
            })
            .jira_actors,
            JiraActors::Nobody
        );
        let JiraActors::Accounts(ids) = rules(WebhookArgs {
            jira_allowed_accounts: Some("557058:a, 5b10ac8d82e05b22cc7d4ef5".into()),
            ..base()
        })
        .jira_actors
        else {
            panic!("not a list")
        };
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            ["557058:a", "5b10ac8d82e05b22cc7d4ef5"]
        );
        assert_eq!(
            rules(WebhookArgs {
                jira_allow_any_account: Some(true),
                ..base()
            })
            .jira_actors,
            JiraActors::AnyPerson
        );
        assert!(
            err(WebhookArgs {
                jira_allowed_accounts: Some("557058:a".into()),
                jira_allow_any_account: Some(true),
                ..base()
            })
            .starts_with("JIRA_ALLOW_ANY_ACCOUNT is invalid")
        );
    }

    #[test]
    fn agent_addresses_allow_loopback_only_for_local_agents() {
        let local = Config::from_args(base()).unwrap().agent_addresses;
        assert!(local.check("127.0.0.1", 7000).is_ok());
        assert!(local.check("10.1.2.3", 7000).is_ok());
        assert!(local.check("169.254.170.2", 7000).is_err());
        assert!(local.check("8.8.8.8", 7000).is_err());
        let ecs = WebhookArgs {
            tasks: ecs_tasks(),
            agent_subnets: Some("subnet-1".into()),
            ..base()
        };
        let deployed = Config::from_args(ecs.clone()).unwrap().agent_addresses;
        assert!(deployed.check("127.0.0.1", 7000).is_err());
        assert!(deployed.check("10.1.2.3", 7000).is_ok());
        let narrowed = Config::from_args(WebhookArgs {
            agent_allowed_cidrs: Some("10.20.0.0/16".into()),
            ..ecs
        })
        .unwrap()
        .agent_addresses;
        assert!(narrowed.check("10.20.3.4", 7000).is_ok());
        assert!(narrowed.check("10.1.2.3", 7000).is_err());
        assert!(
            err(WebhookArgs {
                agent_allowed_cidrs: Some("10.0.0.0/33".into()),
                ..base()
            })
            .starts_with("AGENT_ALLOWED_CIDRS is invalid")
        );
    }

    #[test]
    fn mappings() {
        let m = parse_mapping("X", r#"{"ag": "Octo/App"}"#).unwrap();
        assert_eq!(m["AG"].as_str(), "octo/app");
        let m = parse_mapping("X", "AG=o/a, BE=o/b").unwrap();
        assert_eq!(m.len(), 2);
        assert!(parse_mapping("X", "AG").is_err());
        assert!(parse_mapping("X", "AG=nope").is_err());
    }
}
