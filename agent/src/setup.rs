//! What both modes need before they work: the store and the session record, secrets, the
//! GitHub identity, the agent's address, the control API, and the heartbeat.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use cca_domain::session::SessionPatch;
use cca_domain::{Session, Status};
use cca_github::{GitHub, GitHubAuth};
use cca_jira::Jira;
use cca_settings::{Aws, control_key, open_store};
use cca_store::{SessionStore, StoreError};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::config::{Config, GitHubIdentity};
use crate::control::{self, Mode, Shared};
use crate::gateway::{self, Credential, Gateway, Ledger};
use crate::git::{GitAuth, Repo, agent_git_dir, sandbox_home, working_copy};
use crate::report::{RepoAccess, Secrets};
use crate::sandbox::{Layout, Sandbox};

/// How long one GitHub call of the agent waits in all for GitHub's rate limits (a secondary
/// limit asks for a minute or more).
const RATE_LIMIT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

pub use cca_domain::now;

/// Everything a mode starts with.
#[derive(Debug)]
pub struct Ready {
    pub cfg: Config,
    pub store: Arc<dyn SessionStore>,
    pub session: Session,
    pub access: RepoAccess,
    pub secrets: Secrets,
    pub jira: Option<Jira>,
    /// Variables only the coding CLI gets (model credentials).
    pub model_env: Vec<(String, String)>,
    /// Where the CLI, the install and the dev server run.
    pub sandbox: Arc<Sandbox>,
    /// The only holder of the model credential (an API key, an OAuth token, or the task role
    /// for Bedrock); none when there is no model.
    pub gateway: Option<Gateway>,
    pub shared: Arc<Shared>,
    pub address: String,
    pub control_port: u16,
}

/// The session's branch, checked out.
#[derive(Debug)]
pub struct Cloned {
    pub repo: Repo,
    pub clone_url: String,
}

impl Ready {
    /// Git credentials for `clone_url` with the current token (masked from now on).
    pub async fn git_auth(&self, clone_url: &str) -> anyhow::Result<GitAuth> {
        let token = self
            .access
            .token()
            .await
            .context("minting a token for git")?;
        let auth = GitAuth::new(clone_url, &token);
        self.secrets.add(&auth.encoded());
        Ok(auth)
    }

    /// Clones the session's branch into its working copy; a branch that does not exist yet is
    /// made from `base`, or from the repository's default branch when `base` is `None`.
    pub async fn clone_branch(
        &self,
        base: Option<&str>,
        start: crate::git::Start,
    ) -> anyhow::Result<Cloned> {
        let session = &self.session;
        let client = self
            .access
            .client()
            .await
            .context("GitHub authentication")?;
        let info = client
            .repo(&session.repo_full_name)
            .await
            .context("reading the repository")?;
        let repo = Repo::new(
            working_copy(
                &self.cfg.workspace,
                session.session_id.as_str(),
                session.repo_full_name.name(),
            ),
            agent_git_dir(&self.cfg.workspace, session.session_id.as_str()),
            &self.cfg.git_author_name,
            &self.cfg.git_author_email,
        );
        let auth = self.git_auth(&info.clone_url).await?;
        repo.clone_branch(
            &info.clone_url,
            session.branch_name.as_str(),
            base.unwrap_or(&info.default_branch),
            start,
            &auth,
        )
        .await
        .map_err(|e| anyhow::anyhow!(self.secrets.mask(&e.to_string())))?;
        self.sandbox
            .hand_over(repo.dir())
            .context("handing the working copy to the sandbox user")?;
        repo.refresh_cli_copy(&info.clone_url, &self.sandbox)
            .await
            .context("giving the CLI its copy of the history")?;
        info!(dir = %repo.dir().display(), branch = %session.branch_name, "cloned");
        Ok(Cloned {
            repo,
            clone_url: info.clone_url,
        })
    }

    /// The port the app is to listen on: `APP_PORT`, or a free one when it is 0.
    pub fn app_port(&self) -> anyhow::Result<u16> {
        match self.cfg.app_port {
            0 => {
                let l = std::net::TcpListener::bind("0.0.0.0:0").context("finding a free port")?;
                Ok(l.local_addr()?.port())
            }
            p => Ok(p),
        }
    }

    /// The limits as they stand now: the configured ones, with the session's cost limit as a
    /// writer may have raised it (`/claude budget`).
    pub fn limits_now(&self) -> crate::config::Limits {
        crate::config::Limits {
            max_cost_per_session_usd: self.shared.cost_limit().limit_usd,
            ..self.cfg.limits.clone()
        }
    }

    /// Variables the app gets from the agent (it inherits nothing else but `PATH`, `HOME` and
    /// the like): the preview's host names, so dev servers that check `Host` (Vite) accept the
    /// proxy's requests.
    pub fn app_env(&self) -> Vec<(String, String)> {
        let host = self
            .session
            .uat_url
            .as_deref()
            .and_then(|u| u.split("://").nth(1))
            .map(|h| h.split(['/', ':']).next().unwrap_or(h));
        match host.and_then(|h| h.split_once('.')) {
            Some((_, suffix)) => vec![(
                "__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS".into(),
                format!(".{suffix}"),
            )],
            None => Vec::new(),
        }
    }

    /// Records the end of the session (`to`, through `STOPPING` when needed), logging what
    /// cannot be recorded: the process is ending either way.
    pub async fn record_end(&self, to: Status, patch: SessionPatch) {
        if let Err(e) = finish(self.store.as_ref(), &self.session.session_id, to, patch).await {
            error!(error = %e, to = %to, "cannot record the end of the session");
        }
    }
}

/// The agent's own credentials and settings that name them: never passed to untrusted code
/// (which inherits nothing anyway: its environment is an allow-list), and refused in
/// `AGENT_SANDBOX_ENV`.
pub const WITHHELD_FROM_CHILDREN: [&str; 13] = [
    "CCA_SESSION_TOKEN",
    "CCA_CONTROL_SECRET",
    "CONTROL_SECRET_ARN",
    "GITHUB_TOKEN",
    "GITHUB_APP_PRIVATE_KEY_FILE",
    "GITHUB_APP_SECRET_ARN",
    "GITHUB_WEBHOOK_SECRET",
    "JIRA_API_TOKEN",
    "JIRA_SECRET_ARN",
    "JIRA_WEBHOOK_SECRET",
    "ANTHROPIC_SECRET_ARN",
    "SESSION_STORE",
    "SESSIONS_TABLE",
];

/// Variables that hold a model credential; the CLI gets them only in [`Ready::model_env`].
pub const MODEL_CREDENTIALS: [&str; 3] = [
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
];

/// Variables of the agent's environment the coding CLI gets besides the sandbox's allow-list:
/// its own settings, none of which holds a credential (the model's credentials come in
/// [`Ready::model_env`]).
pub const CLI_SETTINGS: &[&str] = &[
    "ANTHROPIC_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
    "CLAUDE_CODE_MAX_RETRIES",
    "CLAUDE_CODE_MAX_OUTPUT_TOKENS",
    "CLAUDE_CODE_DISABLE_TERMINAL_TITLE",
    "DISABLE_AUTOUPDATER",
    "DISABLE_TELEMETRY",
    "DISABLE_ERROR_REPORTING",
    "DISABLE_BUG_COMMAND",
    "DISABLE_COST_WARNINGS",
    "IS_SANDBOX",
    "API_TIMEOUT_MS",
    "BASH_DEFAULT_TIMEOUT_MS",
    "BASH_MAX_TIMEOUT_MS",
    "MAX_THINKING_TOKENS",
    "NO_COLOR",
    "AWS_REGION",
];

/// Opens the store, loads the record, resolves secrets and the address, starts the control API
/// and moves the session to `STARTING` with its address.
pub async fn prepare(cfg: Config, mode: Mode) -> anyhow::Result<Ready> {
    let aws = Aws::default();
    let store = open_store(&cfg.store, &aws).await?;
    let session = store
        .get(&cfg.session_id)
        .await
        .context("reading the session record")?
        .with_context(|| format!("session {} has no record in {}", cfg.session_id, cfg.store))?;
    if session.status.is_terminal() || session.status == Status::Stopping {
        bail!(
            "session {} is {} already; nothing to do",
            session.session_id,
            session.status
        );
    }

    let secrets = Secrets::default();
    let auth = match &cfg.github {
        GitHubIdentity::Direct(source) => {
            let loaded = source.load(&aws).await?;
            if let Some(token) = loaded.token() {
                secrets.add(token.expose_secret());
            }
            loaded.auth
        }
        GitHubIdentity::Broker { url } => GitHubAuth::Broker {
            url: url.clone(),
            session_id: cfg.session_id.to_string(),
            session_token: cfg
                .session_token
                .clone()
                .context("CCA_SESSION_TOKEN is not set")?,
        },
    };
    // Nothing the agent says may be lost to a rate limit: it waits them out (a stop is bounded
    // by its own deadline).
    let github =
        GitHub::new(&cfg.github_api_url, auth)?.with_rate_limit_patience(RATE_LIMIT_PATIENCE);
    let installation = session
        .installation_id
        .or(cfg.default_installation)
        .or(github.default_installation())
        .unwrap_or(0);
    let access = RepoAccess {
        github,
        installation,
        repo: session.repo_full_name.clone(),
        secrets: secrets.clone(),
    };

    // The control API accepts the session's token: as the launcher gave it, or derived from
    // the control key (local use).
    let session_token = match (&cfg.session_token, &cfg.control) {
        (Some(t), _) => t.clone(),
        (None, Some(source)) => {
            let key = control_key(source, &aws).await?;
            secrets.add(key.expose_secret());
            SecretString::from(cca_domain::control::control_token(
                key.expose_secret().as_bytes(),
                &session.session_id,
            ))
        }
        (None, None) => bail!("neither CCA_SESSION_TOKEN nor a control key is configured"),
    };
    secrets.add(session_token.expose_secret());

    let jira = match &cfg.jira {
        Some(source) if session.jira_issue_key.is_some() => {
            let loaded = source.load(&aws).await?;
            secrets.add(loaded.api_token.expose_secret());
            Some(loaded.client)
        }
        _ => None,
    };

    let mut credential = None;
    if let Some(arn) = &cfg.anthropic_secret_arn {
        let text = cca_secrets::fetch_secret_string(&aws.secrets().await, arn).await?;
        let found = model_credential(&text)
            .with_context(|| format!("secret {arn} holds no api_key or oauth_token"))?;
        credential = Some(found);
    }
    for name in MODEL_CREDENTIALS {
        if let Ok(v) = std::env::var(name) {
            if credential.is_none() && !v.trim().is_empty() {
                credential = Some((name, v));
            }
        }
    }
    let upstream = match credential {
        Some((name, value)) => {
            secrets.add(&value);
            let value = SecretString::from(value);
            let credential = match name {
                "ANTHROPIC_API_KEY" => Credential::ApiKey(value),
                "CLAUDE_CODE_OAUTH_TOKEN" => Credential::OAuth(value),
                _ => Credential::Bearer(value),
            };
            Some((cfg.model_api_url.clone(), credential))
        }
        None if bedrock_wanted() => Some(bedrock(aws.config().await).await?),
        None => {
            warn!(
                "no model credential (ANTHROPIC_SECRET_ARN, ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN) and no Bedrock (CLAUDE_CODE_USE_BEDROCK): the CLI has no model to talk to"
            );
            None
        }
    };
    let gateway = match upstream {
        Some((upstream, credential)) => {
            let spent = session.cost_usd.unwrap_or(0.0);
            let ledger = Ledger::new(cfg.limits.max_cost_per_session_usd, spent).with_token_limits(
                cfg.limits.max_tokens_per_run,
                cfg.limits.max_tokens_per_session,
            );
            Some(
                Gateway::start(&upstream, credential, cfg.prices.clone(), ledger)
                    .await
                    .context("starting the model gateway")?,
            )
        }
        None => None,
    };
    let model_env = gateway.as_ref().map(Gateway::cli_env).unwrap_or_default();
    let sandbox = Arc::new(prepare_sandbox(&cfg, &session)?);

    let address = discover_address(&cfg).await?;
    let shared = Shared::new(session.session_id.clone(), mode, session_token);
    shared.set_cost_limit(cfg.limits.max_cost_per_session_usd, cfg.cost_cap_usd);
    let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], cfg.control_port)))
        .await
        .with_context(|| format!("cannot listen on CONTROL_PORT {}", cfg.control_port))?;
    let control_port = listener.local_addr()?.port();
    let app = control::router(shared.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!(error = %e, "the control API stopped");
        }
    });
    info!(%address, control_port, "control API listening");

    let declared = declared(&access).await;
    // The default branch's plan-first setting applies to a session's first start only: once a
    // conversation exists the session has planned (or was approved) already.
    let plan_by_default = mode == Mode::Agent
        && declared.plan
        && !session.plan_mode
        && session.runs.unwrap_or(0) == 0
        && session.claude_session_id.is_none();
    shared.set_planning(mode == Mode::Agent && (session.plan_mode || plan_by_default));
    let patch = SessionPatch {
        container_ip: Some(address.clone()),
        control_port: Some(control_port),
        heartbeat_at: Some(now()),
        preview_public: Some(declared.public),
        plan_mode: plan_by_default.then_some(true),
        ..SessionPatch::default()
    };
    let session = match session.status {
        Status::Provisioning => store
            .transition(&session.session_id, Status::Starting, patch, now())
            .await
            .context("recording STARTING")?,
        _ => store
            .update(&session.session_id, patch, now())
            .await
            .context("recording the agent's address")?,
    };

    Ok(Ready {
        cfg,
        store,
        session,
        access,
        secrets,
        jira,
        model_env,
        sandbox,
        gateway,
        shared,
        address,
        control_port,
    })
}

fn bedrock_wanted() -> bool {
    std::env::var("CLAUDE_CODE_USE_BEDROCK").is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
}

/// Amazon Bedrock through the task role: the gateway signs for the CLI, so the role's
/// credentials stay in the agent. The upstream is `ANTHROPIC_BEDROCK_BASE_URL` when the agent is
/// given one (a VPC endpoint, say), else the region's Bedrock runtime.
async fn bedrock(aws: &aws_config::SdkConfig) -> anyhow::Result<(String, Credential)> {
    let region = aws
        .region()
        .map(ToString::to_string)
        .context("CLAUDE_CODE_USE_BEDROCK is set but no AWS region is (AWS_REGION)")?;
    let credentials = aws
        .credentials_provider()
        .context("CLAUDE_CODE_USE_BEDROCK is set but the AWS SDK found no credentials")?;
    let upstream = std::env::var("ANTHROPIC_BEDROCK_BASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| gateway::bedrock_endpoint(&region));
    info!(%region, %upstream, "Bedrock: the model gateway signs the CLI's requests with the task role");
    Ok((
        upstream,
        Credential::Bedrock(gateway::Bedrock::new(region, credentials)),
    ))
}

/// The session's sandbox: the working copy and a home of its own writable, the agent's
/// private paths hidden, the CLI's installation visible.
fn prepare_sandbox(cfg: &Config, session: &Session) -> anyhow::Result<Sandbox> {
    let id = session.session_id.as_str();
    let session_dir = cfg.workspace.join(id);
    for dir in [&cfg.workspace, &session_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // Passable, not listable: the sandbox user reaches its own paths by name only.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("setting the mode of {}", dir.display()))?;
    }
    let mut visible = Vec::new();
    if let crate::config::CliSpec::Claude { program, .. } = &cfg.cli {
        for p in [
            program.clone(),
            std::fs::canonicalize(program).unwrap_or_default(),
        ] {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                visible.push(dir.to_path_buf());
            }
        }
    }
    let layout = Layout {
        workdir: working_copy(&cfg.workspace, id, session.repo_full_name.name()),
        home: sandbox_home(&cfg.workspace, id),
        hidden: cfg.private_paths.clone(),
        visible,
    };
    Sandbox::prepare(&cfg.sandbox, &layout).context("preparing the sandbox (AGENT_SANDBOX)")
}

/// The CLI variable and value of an Anthropic credential secret: a plain key, or JSON with
/// `api_key` or `oauth_token`.
fn model_credential(text: &str) -> Option<(&'static str, String)> {
    #[derive(Deserialize)]
    struct Cred {
        api_key: Option<String>,
        oauth_token: Option<String>,
    }
    let t = text.trim();
    if t.starts_with('{') {
        let c: Cred = serde_json::from_str(t).ok()?;
        return c
            .api_key
            .map(|k| ("ANTHROPIC_API_KEY", k))
            .or(c.oauth_token.map(|k| ("CLAUDE_CODE_OAUTH_TOKEN", k)));
    }
    (!t.is_empty()).then(|| ("ANTHROPIC_API_KEY", t.to_owned()))
}

/// The address the proxy and the webhook reach this agent at: the task's private IPv4 address
/// from ECS task metadata v4, or `AGENT_ADDRESS` when not on ECS.
pub async fn discover_address(cfg: &Config) -> anyhow::Result<String> {
    if let Some(uri) = &cfg.ecs_metadata_uri {
        let mut last = None;
        // The metadata endpoint can lag the container's start by a moment.
        for _ in 0..10 {
            match task_address(uri).await {
                Ok(ip) => return Ok(ip),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        return Err(last.unwrap_or_else(|| anyhow::anyhow!("no answer")))
            .with_context(|| format!("reading the task's address from {uri}/task"));
    }
    match &cfg.agent_address {
        Some(a) => Ok(a.clone()),
        None => bail!(
            "AGENT_ADDRESS is not set and ECS_CONTAINER_METADATA_URI_V4 is absent: the agent cannot tell the proxy where it is"
        ),
    }
}

#[derive(Deserialize)]
struct TaskMetadata {
    #[serde(rename = "Containers", default)]
    containers: Vec<ContainerMetadata>,
}

#[derive(Deserialize)]
struct ContainerMetadata {
    #[serde(rename = "Networks", default)]
    networks: Vec<NetworkMetadata>,
}

#[derive(Deserialize)]
struct NetworkMetadata {
    #[serde(rename = "IPv4Addresses", default)]
    ipv4: Vec<String>,
}

async fn task_address(uri: &str) -> anyhow::Result<String> {
    let body: TaskMetadata = reqwest::Client::new()
        .get(format!("{}/task", uri.trim_end_matches('/')))
        .timeout(Duration::from_secs(2))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    body.containers
        .into_iter()
        .flat_map(|c| c.networks)
        .flat_map(|n| n.ipv4)
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        .context("the task metadata lists no IPv4 address")
}

/// Writes `heartbeat_at` every `every` until the process ends.
pub fn heartbeat(store: Arc<dyn SessionStore>, session: cca_domain::SessionId, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let patch = SessionPatch {
                heartbeat_at: Some(now()),
                ..SessionPatch::default()
            };
            if let Err(e) = store.update(&session, patch, now()).await {
                warn!(error = %e, "heartbeat not recorded");
            }
        }
    });
}

/// Moves the session to `to`, going through `STOPPING` when it must; a state someone else
/// already recorded is left as it is.
pub async fn finish(
    store: &dyn SessionStore,
    session: &cca_domain::SessionId,
    to: Status,
    patch: SessionPatch,
) -> Result<(), StoreError> {
    let attempt = store.transition(session, to, patch.clone(), now()).await;
    match attempt {
        Ok(_) => Ok(()),
        Err(StoreError::IllegalTransition { .. }) if to != Status::Failed => {
            match store
                .transition(session, Status::Stopping, SessionPatch::default(), now())
                .await
            {
                Ok(_) | Err(StoreError::IllegalTransition { .. }) => {}
                Err(e) => return Err(e),
            }
            match store.transition(session, to, patch, now()).await {
                Ok(_) => Ok(()),
                Err(StoreError::IllegalTransition { .. }) => {
                    warn!(%session, to = %to, "the session had already ended; its record is left as it is");
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        Err(StoreError::IllegalTransition { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// What the default branch's settings file declares for every session of the repository.
#[derive(Debug, Clone, Copy, Default)]
struct Declared {
    /// `[preview] public = true`: previews without sign-in.
    public: bool,
    /// `[agent] plan = true`: new sessions plan first.
    plan: bool,
}

/// What the repository declares in the settings file of the default branch, read through the
/// API. Never the session's own branch, which the model and any contributor can write.
/// Unreadable declares nothing: previews keep sign-in, sessions implement at once.
async fn declared(access: &RepoAccess) -> Declared {
    use crate::devserver::settings::{SETTINGS_FILE, declares_plan, declares_public};
    let text = match access.client().await {
        Ok(client) => {
            client
                .default_branch_file(&access.repo, SETTINGS_FILE)
                .await
        }
        Err(e) => Err(e),
    };
    match text {
        Ok(Some(text)) => {
            let d = Declared {
                public: declares_public(&text),
                plan: declares_plan(&text),
            };
            if d.public {
                info!(
                    "the default branch declares previews public: no sign-in in front of this one"
                );
            }
            if d.plan {
                info!("the default branch makes new sessions plan first");
            }
            d
        }
        Ok(None) => Declared::default(),
        Err(e) => {
            warn!(error = %access.secrets.mask(&e.to_string()), "cannot read the default branch's settings: the preview keeps sign-in");
            Declared::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_credentials_come_in_three_shapes() {
        assert_eq!(
            model_credential("sk-ant-123"),
            Some(("ANTHROPIC_API_KEY", "sk-ant-123".into()))
        );
        assert_eq!(
            model_credential(r#"{"api_key":"k1"}"#),
            Some(("ANTHROPIC_API_KEY", "k1".into()))
        );
        assert_eq!(
            model_credential(r#"{"oauth_token":"o1"}"#),
            Some(("CLAUDE_CODE_OAUTH_TOKEN", "o1".into()))
        );
        assert_eq!(model_credential("{}"), None);
        assert_eq!(model_credential("  "), None);
    }

    #[tokio::test]
    async fn the_address_comes_from_task_metadata() {
        use axum::{Json, Router, routing::get};
        let app = Router::new().route(
            "/v4/abc/task",
            get(|| async {
                Json(serde_json::json!({
                    "Containers": [{"Name": "agent", "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.3.7"]}]}]
                }))
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let ip = task_address(&format!("http://{addr}/v4/abc"))
            .await
            .unwrap();
        assert_eq!(ip, "10.0.3.7");
    }
}
