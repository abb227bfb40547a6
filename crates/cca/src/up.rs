//! `cca up`: the whole system on one machine, as far as it exists: the webhook served over
//! HTTP, sessions in an embedded SQLite file, agents as local processes. Settings are the
//! webhook's own (flags or environment); `up` only fills in local defaults, then builds the
//! webhook exactly as `cca-webhook serve` does.

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cca_webhook::app::PROCESS_STOP_GRACE;
use cca_webhook::config::{LauncherSpec, StoreSpec};
use cca_webhook::{App, Config, WebhookArgs, init_logging, router};
use tokio::signal::unix::{SignalKind, signal};

use crate::data_dir::{DataDir, DataDirArgs};

/// Exit status of a start refused for want of settings (as clap's usage errors).
const USAGE: u8 = 2;

/// How long requests in flight may finish after a stop signal before they are dropped: a
/// webhook handler answers within GitHub's 10 s or GitHub has given up on it anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What to set when GitHub credentials are missing.
const GITHUB_SETUP: &str = "\
Set either a personal access token:
    GITHUB_TOKEN=<token>
    GITHUB_WEBHOOK_SECRET=<the secret of the repository's webhook>
or a GitHub App:
    GITHUB_APP_ID=<app id>
    GITHUB_APP_PRIVATE_KEY_FILE=<path of the app's private key (.pem)>
    GITHUB_WEBHOOK_SECRET=<the app's webhook secret>
    GITHUB_INSTALLATION_ID=<installation id>   (optional)
then run `cca up` again.
";

/// `cca up …`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Address to serve the webhook on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    data_dir: DataDirArgs,
    #[command(flatten)]
    settings: WebhookArgs,
}

/// Why GitHub cannot be used, if it cannot: checked before anything is created, so a first run
/// without credentials leaves nothing behind.
fn missing_github(s: &WebhookArgs) -> Option<&'static str> {
    // An exported but empty variable is as good as none.
    let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
    if set(&s.github_app_secret_arn) {
        return None;
    }
    let credentials = set(&s.github_token) || s.github_app_id.is_some();
    match (credentials, set(&s.github_webhook_secret)) {
        (true, true) => None,
        (false, _) => Some("no GitHub credentials"),
        (true, false) => Some("GITHUB_WEBHOOK_SECRET is not set"),
    }
}

/// Fills the local defaults into the settings. The store and the launcher are local unless
/// `SESSION_STORE` or `LAUNCHER` say otherwise: `SESSIONS_TABLE` or `ECS_CLUSTER` left in an
/// operator's shell must not make a local run write to the deployed system.
fn fill_defaults(s: &mut WebhookArgs, dir: &DataDir) -> anyhow::Result<()> {
    // An exported but empty variable is as good as none.
    let default = |v: &mut Option<String>, d: String| {
        if v.as_deref().is_none_or(str::is_empty) {
            *v = Some(d);
        }
    };
    default(
        &mut s.session_store,
        format!("sqlite:{}", dir.sessions_db().display()),
    );
    default(&mut s.launcher, "process".into());
    default(&mut s.uat_domain_suffix, "localhost".into());
    s.log_dir.get_or_insert_with(|| dir.logs());
    s.control_secret_arn = s.control_secret_arn.take().filter(|v| !v.is_empty());
    if s.control_secret_arn.is_none() && s.control_secret.as_deref().is_none_or(str::is_empty) {
        s.control_secret = Some(dir.control_key()?);
    }
    Ok(())
}

/// Settings the agents need that they would not inherit: defaults filled in here and values
/// given as flags rather than environment. Credentials are inherited with the environment.
fn agent_env(s: &WebhookArgs, dir: &DataDir) -> Vec<(String, String)> {
    let mut env = vec![("CCA_DATA_DIR".to_owned(), dir.root().display().to_string())];
    let settings = [
        ("SESSION_STORE", &s.session_store),
        ("UAT_DOMAIN_SUFFIX", &s.uat_domain_suffix),
        ("GITHUB_API_URL", &s.github_api_url),
        ("CCA_CONTROL_SECRET", &s.control_secret),
    ];
    for (name, value) in settings {
        if let Some(v) = value {
            env.push((name.to_owned(), v.clone()));
        }
    }
    env
}

/// Completes on SIGINT or SIGTERM, naming it.
async fn stop_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    })
}

/// Runs `cca up` until SIGINT or SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let UpArgs {
        listen,
        data_dir,
        mut settings,
    } = args;
    if let Some(problem) = missing_github(&settings) {
        eprint!("cca up: {problem}.\n{GITHUB_SETUP}");
        return Ok(ExitCode::from(USAGE));
    }
    let dir = DataDir::resolve(&data_dir)?;
    dir.create()?;
    fill_defaults(&mut settings, &dir)?;
    let child_env = agent_env(&settings, &dir);
    let mut config = match Config::from_args(settings) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("cca up: {e}");
            return Ok(ExitCode::from(USAGE));
        }
    };
    init_logging(false);

    let store = match &config.store {
        StoreSpec::Sqlite { path } => format!("sqlite:{}", path.display()),
        StoreSpec::Dynamo { table } => format!("dynamodb:{table}"),
    };
    let local = match &mut config.launcher {
        LauncherSpec::Process {
            program,
            log_dir,
            env,
        } => {
            // Agents get the settings `up` filled in, not only what it inherited.
            *env = child_env;
            Some((program.clone(), log_dir.clone()))
        }
        LauncherSpec::Ecs(_) => None,
    };
    let suffix = config.uat_domain_suffix.clone();
    let app = App::from_config(config).await.context("cannot start")?;
    let launcher = app.launcher.clone();

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().unwrap_or(listen);
    // Watched from here on, so a stop sent as soon as the webhook answers is not lost.
    let stop = stop_signal().await?;
    println!("cca up: serving on http://{addr}");
    println!("  webhook   http://{addr}/webhook  (also /webhooks/github, /webhooks/jira)");
    println!("  health    http://{addr}/health");
    println!("  data dir  {}", dir.root().display());
    println!("  sessions  {store}");
    match &local {
        Some((program, log_dir)) => {
            let found = if program.exists() {
                ""
            } else {
                "  (not found: set CCA_AGENT_BIN)"
            };
            println!("  agents    {}{found}", program.display());
            println!("  logs      {}", log_dir.display());
        }
        None => println!("  agents    ECS (LAUNCHER=ecs)"),
    }
    println!("  previews  https://<session>.{suffix} (proxy not yet available)");
    println!("Ctrl-C stops the webhook, then every agent it started.");

    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router(Arc::new(app)))
        .with_graceful_shutdown(async {
            let _ = drain_rx.await;
        })
        .into_future();
    tokio::pin!(server);
    let served = tokio::select! {
        result = &mut server => result.context("the webhook server failed"),
        name = stop => {
            eprintln!("cca up: {name}: stopping");
            let _ = drain_tx.send(());
            if tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await.is_err() {
                eprintln!("cca up: requests still running after {DRAIN_TIMEOUT:?} were dropped");
            }
            Ok(())
        }
    };
    if local.is_some() {
        eprintln!(
            "cca up: stopping agents (each has {}s to push its work)",
            PROCESS_STOP_GRACE.as_secs()
        );
    }
    launcher.shutdown().await;
    served.map(|()| ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_checked_before_anything_is_made() {
        let mut s = WebhookArgs::default();
        assert_eq!(missing_github(&s), Some("no GitHub credentials"));
        s.github_token = Some(String::new());
        assert_eq!(missing_github(&s), Some("no GitHub credentials"));
        s.github_token = Some("t".into());
        assert_eq!(missing_github(&s), Some("GITHUB_WEBHOOK_SECRET is not set"));
        s.github_webhook_secret = Some("w".into());
        assert_eq!(missing_github(&s), None);
        let arn = WebhookArgs {
            github_app_secret_arn: Some("arn".into()),
            ..WebhookArgs::default()
        };
        assert_eq!(missing_github(&arn), None);
    }

    #[test]
    fn local_defaults_keep_a_shell_pointed_at_aws_local() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::resolve(&DataDirArgs {
            data_dir: Some(tmp.path().to_owned()),
        })
        .unwrap();
        let mut s = WebhookArgs {
            sessions_table: Some("prod".into()),
            ecs_cluster: Some("prod".into()),
            ..WebhookArgs::default()
        };
        fill_defaults(&mut s, &dir).unwrap();
        assert_eq!(
            s.session_store.as_deref(),
            Some(format!("sqlite:{}", tmp.path().join("sessions.db").display()).as_str())
        );
        assert_eq!(s.launcher.as_deref(), Some("process"));
        assert_eq!(s.uat_domain_suffix.as_deref(), Some("localhost"));
        assert_eq!(s.control_secret, Some(dir.control_key().unwrap()));
        let env = agent_env(&s, &dir);
        assert!(env.iter().any(|(k, _)| k == "SESSION_STORE"));
        assert!(env.iter().any(|(k, _)| k == "CCA_CONTROL_SECRET"));
    }
}
