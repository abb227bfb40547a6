//! `cca up`: the whole system on one machine. One process serves the webhook, the preview proxy
//! on `*.localhost` and, with no GitHub credentials yet, a setup page; sessions live in an
//! embedded SQLite file and agents run as local processes. Settings are the webhook's own
//! (flags or environment); `up` only fills in local defaults, then builds the webhook exactly as
//! `cca-webhook serve` does.
//!
//! With no credentials at all, `up` says what to set and serves [`setup`]'s page, which can
//! create a GitHub App and store it in the data directory ([`stored`]); it then goes on as if the
//! App had been configured, and later starts find the stored App by themselves. Ctrl-C (or
//! SIGTERM) stops taking webhooks, stops every agent (each pushes its work and records its end),
//! drains the proxy, and exits 0.

mod page;
mod setup;
mod stored;

use cca_webhook::serve::Limits;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use cca_domain::Status;
use cca_domain::session::SessionPatch;
use cca_store::{ListFilter, SessionStore};
use cca_webhook::app::{PROCESS_STOP_GRACE, now};
use cca_webhook::config::{GitHubSource, LauncherSpec, StoreSpec};
use cca_webhook::{App, Config, WebhookArgs, init_logging, router};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::data_dir::{DataDir, DataDirArgs};
use crate::sessions::{PROCESS_ARN_PREFIX, Process, identify};
use stored::StoredApp;

/// Exit status of a start refused for want of settings (as clap's usage errors).
const USAGE: u8 = 2;

/// How long requests in flight may finish after a stop signal before they are dropped: a
/// webhook handler answers within GitHub's 10 s or GitHub has given up on it anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the proxy's open requests may finish after a stop: a local browser, not a load
/// balancer, is on the other end, and the agents have already been asked to stop.
const PROXY_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the setup page's last answer may take to reach the browser before `up` moves on.
const SETUP_HANDOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// GitHub's REST API and web addresses.
use cca_domain::naming::{GITHUB_API, github_web_url};

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
    /// Address to serve the webhook (and the setup page) on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address of the preview proxy: sessions are at http://<session>.<UAT_DOMAIN_SUFFIX>:<port>.
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
    proxy_listen: SocketAddr,
    /// Do not start the preview proxy.
    #[arg(long)]
    no_proxy: bool,
    /// Without GitHub credentials, say what to set and exit with status 2 instead of serving
    /// the setup page.
    #[arg(long)]
    no_setup: bool,
    /// GitHub's web address, where the setup page creates the App. Default: https://github.com,
    /// or the server of an Enterprise GITHUB_API_URL (https://<host>/api/v3).
    #[arg(long, env = "GITHUB_WEB_URL", value_name = "URL")]
    github_web_url: Option<String>,
    /// Put sign-in with GitHub in front of the previews, as a deployment does. Off by default:
    /// the proxy listens on loopback, for this machine's user only. Needs the App's client id
    /// and secret (stored by the setup page, or GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET), and
    /// `http://auth.<UAT_DOMAIN_SUFFIX>:<proxy port>/callback` among the App's callback URLs.
    #[arg(long)]
    preview_sign_in: bool,
    /// The App's client id, for --preview-sign-in.
    #[arg(long, env = "GITHUB_CLIENT_ID", value_name = "ID")]
    github_client_id: Option<String>,
    /// The App's client secret, for --preview-sign-in.
    #[arg(
        long,
        env = "GITHUB_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    github_client_secret: Option<String>,
    #[command(flatten)]
    data_dir: DataDirArgs,
    #[command(flatten)]
    limits: cca_webhook::serve::LimitArgs,
    #[command(flatten)]
    settings: WebhookArgs,
}

/// How far the GitHub settings go.
#[derive(Debug, PartialEq, Eq)]
enum GitHubState {
    /// Enough to start.
    Ready,
    /// Some set, something missing: what to say.
    Incomplete(&'static str),
    /// Nothing set at all: the setup page can help.
    Absent,
}

/// Checked before anything is created, so a start refused for want of settings leaves nothing
/// behind.
fn github_state(s: &WebhookArgs) -> GitHubState {
    // An exported but empty variable is as good as none.
    let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
    if set(&s.github.github_app_secret_arn) {
        return GitHubState::Ready;
    }
    let credentials = set(&s.github.github_token) || s.github.github_app_id.is_some();
    match (credentials, set(&s.github_webhook_secret)) {
        (true, true) => GitHubState::Ready,
        (false, _) => GitHubState::Absent,
        (true, false) => GitHubState::Incomplete("GITHUB_WEBHOOK_SECRET is not set"),
    }
}

/// Uses a stored App's files, for a start with no GitHub settings of its own. A webhook secret
/// from the environment still wins.
fn use_stored_app(s: &mut WebhookArgs, app: &StoredApp, pem: PathBuf) {
    s.github.github_app_id = Some(app.app_id);
    s.github.github_app_private_key_file = Some(pem);
    if s.github_webhook_secret
        .as_deref()
        .is_none_or(|v| v.trim().is_empty())
    {
        s.github_webhook_secret = Some(app.webhook_secret.clone());
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
        &mut s.store.session_store,
        format!("sqlite:{}", dir.sessions_db().display()),
    );
    default(&mut s.launcher, "process".into());
    default(&mut s.uat_domain_suffix, "localhost".into());
    s.log_dir.get_or_insert_with(|| dir.logs());
    s.control.control_secret_arn = s
        .control
        .control_secret_arn
        .take()
        .filter(|v| !v.is_empty());
    if s.control.control_secret_arn.is_none()
        && s.control
            .control_secret
            .as_deref()
            .is_none_or(str::is_empty)
    {
        s.control.control_secret = Some(dir.control_key()?);
    }
    Ok(())
}

/// Preview URLs through the local proxy, `http://<id>.<suffix>:<port>`, unless
/// `PREVIEW_URL_TEMPLATE` says otherwise.
fn fill_preview_template(s: &mut WebhookArgs, proxy: Option<SocketAddr>) {
    if let Some(proxy) = proxy {
        if s.preview_url_template.as_deref().is_none_or(str::is_empty) {
            s.preview_url_template = Some(format!("http://{{id}}.{{suffix}}:{}", proxy.port()));
        }
    }
}

/// Settings the agents need that they would not inherit: defaults filled in here, and values
/// given as flags rather than environment. No credential: an agent gets its session's token from
/// the launcher and its installation tokens from this process's token broker at `webhook`.
fn agent_env(s: &WebhookArgs, dir: &DataDir, webhook: SocketAddr) -> Vec<(String, String)> {
    let mut env = vec![
        ("CCA_DATA_DIR".to_owned(), dir.root().display().to_string()),
        ("CCA_TOKEN_URL".to_owned(), local_url(webhook)),
    ];
    let text = [
        ("SESSION_STORE", s.store.session_store.clone()),
        ("UAT_DOMAIN_SUFFIX", s.uat_domain_suffix.clone()),
        ("GITHUB_API_URL", s.github.api.github_api_url.clone()),
    ];
    for (name, value) in text {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            env.push((name.to_owned(), v));
        }
    }
    env
}

/// What confines the local agents' untrusted code (the CLI, install and dev server), as the
/// agent decides it (`cca-agent sandbox`); said at start so that a missing sandbox is never
/// silent. Each agent also says it in every status comment.
async fn local_sandbox(agent: &Path) -> String {
    let asked = tokio::process::Command::new(agent)
        .arg("sandbox")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(SANDBOX_PROBE_TIMEOUT, asked).await {
        Ok(Ok(out)) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(Err(e)) => format!("unknown: {} could not be asked ({e})", agent.display()),
        Err(_) => format!(
            "unknown: {} did not answer `sandbox` within {} s",
            agent.display(),
            SANDBOX_PROBE_TIMEOUT.as_secs()
        ),
    }
}

/// How long `cca-agent sandbox` may take (it starts bubblewrap once).
const SANDBOX_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The address a browser on this machine uses for a listener: an unspecified address (listening
/// everywhere) is reached through loopback.
fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// GitHub's web address: as given, else derived from the API's (github.com, or an Enterprise
/// server's `https://<host>/api/v3`); another API root (a test server) serves both.
/// The App's callback URL for preview sign-in through the local proxy:
/// `http://auth.<suffix>:<port>/callback`.
fn sign_in_callback(suffix: Option<&str>, proxy_port: u16) -> String {
    let suffix = suffix
        .map(|s| s.trim().trim_matches('.'))
        .filter(|s| !s.is_empty())
        .unwrap_or("localhost");
    format!(
        "http://{}.{suffix}:{proxy_port}/callback",
        cca_uat_proxy::gate::AUTH_LABEL
    )
}

/// The App name offered by default: `Claude Cloud Agent (<host>)`, within GitHub's limit.
fn default_app_name() -> String {
    const PREFIX: &str = "Claude Cloud Agent (";
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().split('.').next().unwrap_or_default().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".into());
    let room = page::MAX_APP_NAME_CHARS - PREFIX.len() - 1;
    let host: String = host.chars().take(room).collect();
    format!("{PREFIX}{host})")
}

/// Where the credentials come from, in words.
fn describe_github(config: &Config, stored: Option<&(StoredApp, PathBuf)>) -> String {
    match (&config.github, stored) {
        (GitHubSource::SecretArn(arn), _) => format!("the GitHub App of secret {arn}"),
        (GitHubSource::App { app_id, .. }, Some((app, _))) if app.app_id == *app_id => format!(
            "the GitHub App {} (id {app_id}) stored in the data directory",
            app.slug
        ),
        (GitHubSource::App { app_id, .. }, _) => format!("the GitHub App {app_id} (GITHUB_APP_ID)"),
        (GitHubSource::Token(_), _) => "a personal access token (GITHUB_TOKEN)".into(),
    }
}

/// Ends the unfinished sessions whose local agent process is gone without recording its end
/// (killed after its grace period, or left by an earlier `cca up` that was killed), so the store
/// never shows a session as running that nothing runs: `STOPPED` when a stop was asked for,
/// `FAILED` with the reason otherwise. Answers how many.
async fn settle_ended_agents(store: &dyn SessionStore) -> usize {
    let filter = ListFilter {
        statuses: Status::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .collect(),
        limit: None,
    };
    let sessions = match store.list(&filter).await {
        Ok(sessions) => sessions,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list sessions to check their agents");
            return 0;
        }
    };
    let mut settled = 0;
    for session in sessions {
        let Some(pid) = session
            .task_arn
            .as_deref()
            .and_then(|a| a.strip_prefix(PROCESS_ARN_PREFIX))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let id = &session.session_id;
        if identify(pid, id) == Process::Ours {
            continue;
        }
        let (to, patch) = if session.status == Status::Stopping {
            (Status::Stopped, SessionPatch::default())
        } else {
            let patch = SessionPatch {
                error: Some(format!(
                    "the agent process {pid} ended without recording the end of the session"
                )),
                ..SessionPatch::default()
            };
            (Status::Failed, patch)
        };
        match store.transition(id, to, patch, now()).await {
            Ok(_) => {
                eprintln!("cca up: session {id}: its agent process {pid} is gone; marked {to}");
                settled += 1;
            }
            // The agent recorded its end in the meantime.
            Err(e) => tracing::debug!(session = %id, error = %e, "not marked {to}"),
        }
    }
    settled
}

/// Completes on SIGINT or SIGTERM, naming it.
fn stop_signal() -> anyhow::Result<Pin<Box<dyn Future<Output = &'static str> + Send>>> {
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    Ok(Box::pin(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    }))
}

type StopSignal = Pin<Box<dyn Future<Output = &'static str> + Send>>;

/// Runs `cca up` until SIGINT or SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let UpArgs {
        listen,
        proxy_listen,
        no_proxy,
        no_setup,
        github_web_url: web_url,
        preview_sign_in,
        github_client_id,
        github_client_secret,
        data_dir,
        limits,
        mut settings,
    } = args;
    let proxy_port = proxy_listen.port();
    let limits = limits.limits();
    let dir = DataDir::resolve(&data_dir)?;
    let mut stored = None;
    match github_state(&settings) {
        GitHubState::Ready => {}
        GitHubState::Incomplete(problem) => {
            eprint!("cca up: {problem}.\n{GITHUB_SETUP}");
            return Ok(ExitCode::from(USAGE));
        }
        GitHubState::Absent => {
            if let Some((app, pem)) = stored::load(&dir)? {
                use_stored_app(&mut settings, &app, pem.clone());
                stored = Some((app, pem));
            } else if no_setup {
                eprint!("cca up: no GitHub credentials.\n{GITHUB_SETUP}");
                return Ok(ExitCode::from(USAGE));
            }
        }
    }
    init_logging(false);

    // One socket for the setup page and then the webhook, so the page's address stays valid.
    let socket = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    socket
        .set_nonblocking(true)
        .context("cannot make the listener non-blocking")?;
    let addr = socket.local_addr().unwrap_or(listen);
    // Watched from here on, so a stop sent as soon as the address is printed is not lost.
    let mut stop = stop_signal()?;

    if stored.is_none() && github_state(&settings) == GitHubState::Absent {
        let ctx = setup::SetupContext {
            local_url: local_url(addr),
            github_web_url: github_web_url(
                web_url.as_deref(),
                settings.github.api.github_api_url.as_deref(),
            ),
            github_api_url: settings
                .github
                .api
                .github_api_url
                .clone()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| GITHUB_API.into()),
            data_dir: dir.clone(),
            default_name: default_app_name(),
            sign_in_callback: (!no_proxy && proxy_port != 0)
                .then(|| sign_in_callback(settings.uat_domain_suffix.as_deref(), proxy_port)),
        };
        let page = format!("{}/setup", ctx.local_url);
        eprint!("cca up: no GitHub credentials.\n{GITHUB_SETUP}");
        eprintln!("Or open {page} in a browser here to create a GitHub App in two clicks.");
        println!("cca up: setup page on {page}");
        let listener =
            TcpListener::from_std(socket.try_clone().context("cannot share the listener")?)
                .context("cannot serve the setup page")?;
        match serve_setup(ctx, listener, limits, &mut stop).await? {
            Some(created) => {
                println!(
                    "cca up: GitHub App {} (id {}) created and stored in {}",
                    created.app.slug,
                    created.app.app_id,
                    dir.root().display()
                );
                use_stored_app(&mut settings, &created.app, created.pem.clone());
                stored = Some((created.app, created.pem));
            }
            None => return Ok(ExitCode::SUCCESS),
        }
    }

    let sign_in = if preview_sign_in && !no_proxy {
        if proxy_port == 0 {
            eprintln!(
                "cca up: --preview-sign-in needs a fixed --proxy-listen port: the App's callback \
                 URL (http://auth.<UAT_DOMAIN_SUFFIX>:<port>/callback) names it."
            );
            return Ok(ExitCode::from(USAGE));
        }
        let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let app = stored.as_ref().map(|(a, _)| a);
        let id = set(github_client_id).or_else(|| app.and_then(|a| a.client_id.clone()));
        let secret =
            set(github_client_secret).or_else(|| app.and_then(|a| a.client_secret.clone()));
        let (Some(id), Some(secret)) = (id, secret) else {
            eprintln!(
                "cca up: --preview-sign-in needs the App's client id and secret: create the App \
                 on the setup page, or set GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET."
            );
            return Ok(ExitCode::from(USAGE));
        };
        let mut gate = cca_uat_proxy::gate::GateSettings::new(&id, &secret);
        // Plain HTTP on loopback: no `Secure` cookies, `http://` links.
        gate.secure = false;
        gate.web_url = github_web_url(
            web_url.as_deref(),
            settings.github.api.github_api_url.as_deref(),
        );
        if let Some(api) = settings
            .github
            .api
            .github_api_url
            .as_deref()
            .filter(|v| !v.trim().is_empty())
        {
            gate.api_url = api.trim_end_matches('/').to_owned();
        }
        Some(gate)
    } else {
        None
    };
    let listener = TcpListener::from_std(socket).context("cannot serve the webhook")?;
    serve(
        Running {
            listener,
            limits,
            proxy_listen: (!no_proxy).then_some(proxy_listen),
            dir,
            settings,
            stored,
            sign_in,
        },
        stop,
    )
    .await
}

/// Serves the setup page until an App is stored (`Some`) or a stop signal comes (`None`).
async fn serve_setup(
    ctx: setup::SetupContext,
    listener: TcpListener,
    limits: Limits,
    stop: &mut StopSignal,
) -> anyhow::Result<Option<setup::Created>> {
    let (router, mut created) = setup::router(ctx)?;
    let (done_tx, mut done_rx) = watch::channel(false);
    let server = cca_webhook::serve::serve(listener, router, limits, async move {
        let _ = done_rx.wait_for(|done| *done).await;
    });
    let mut server = tokio::spawn(server);
    let outcome = tokio::select! {
        app = &mut created => app.ok(),
        name = stop => {
            eprintln!("cca up: {name}: stopping (nothing was started)");
            None
        }
        result = &mut server => {
            result.context("the setup page failed")?.context("the setup page failed")?;
            anyhow::bail!("the setup page stopped by itself");
        }
    };
    let _ = done_tx.send(true);
    if tokio::time::timeout(SETUP_HANDOVER_TIMEOUT, &mut server)
        .await
        .is_err()
    {
        server.abort();
    }
    Ok(outcome)
}

/// What the normal mode starts from.
struct Running {
    listener: TcpListener,
    limits: Limits,
    proxy_listen: Option<SocketAddr>,
    dir: DataDir,
    settings: WebhookArgs,
    stored: Option<(StoredApp, PathBuf)>,
    /// Sign-in in front of previews (`--preview-sign-in`).
    sign_in: Option<cca_uat_proxy::gate::GateSettings>,
}

/// The webhook, the proxy and the agents, until a stop signal.
async fn serve(running: Running, mut stop: StopSignal) -> anyhow::Result<ExitCode> {
    let Running {
        listener,
        limits,
        proxy_listen,
        dir,
        mut settings,
        stored,
        sign_in,
    } = running;
    let addr = listener.local_addr().context("no local address")?;
    dir.create()?;
    fill_defaults(&mut settings, &dir)?;
    let proxy_listener = match proxy_listen {
        Some(at) => Some(
            TcpListener::bind(at)
                .await
                .with_context(|| format!("cannot listen on {at} for the preview proxy"))?,
        ),
        None => None,
    };
    let proxy_addr = match &proxy_listener {
        Some(l) => Some(l.local_addr().context("no local address of the proxy")?),
        None => None,
    };
    fill_preview_template(&mut settings, proxy_addr);
    let child_env = agent_env(&settings, &dir, addr);
    let mut config = match Config::from_args(settings) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("cca up: {e}");
            return Ok(ExitCode::from(USAGE));
        }
    };

    let store_text = match &config.store {
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
    // Only a store of this machine's own, with agents of this machine, can be settled from here:
    // a pid means nothing on another host.
    let settles = local.is_some() && matches!(config.store, StoreSpec::Sqlite { .. });
    let github = describe_github(&config, stored.as_ref());
    let suffix = config.uat_domain_suffix.clone();
    let previews = config.preview_urls.clone();
    let sign_in_text = match (&proxy_listener, &sign_in) {
        (None, _) => None,
        (Some(_), Some(_)) => Some(format!(
            "github (callback http://{}.{suffix}:{}/callback)",
            cca_uat_proxy::gate::AUTH_LABEL,
            proxy_addr.map_or(0, |a| a.port())
        )),
        (Some(_), None) => {
            Some("off (the proxy is on loopback, for this machine; --preview-sign-in)".to_owned())
        }
    };
    let proxy_settings = match &proxy_listener {
        Some(_) => {
            let mut s = match cca_uat_proxy::Settings::new(&suffix) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cca up: {e}");
                    return Ok(ExitCode::from(USAGE));
                }
            };
            // Apps run on this machine, on loopback.
            s.local_mode = true;
            s.drain_timeout = PROXY_DRAIN_TIMEOUT;
            s.gate = sign_in;
            Some(s)
        }
        None => None,
    };
    let app = App::from_config(config).await.context("cannot start")?;
    let launcher = app.launcher.clone();
    let store = app.store.clone();
    if settles {
        settle_ended_agents(store.as_ref()).await;
    }

    let base = local_url(addr);
    let webhook_url = format!("{base}/webhook");
    // While the agents stop, the token broker must still answer (each needs a token to push
    // its work in progress), but no delivery may start new work.
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let app = Arc::new(app);
    // Queued sessions start as others end, until the stop.
    let (stop_turns, turns_stop) = watch::channel(false);
    let turns = cca_webhook::act::spawn_turns(app.clone(), turns_stop);
    let routes: Router = router(app)
        .merge(setup::configured_router(setup::Configured {
            source: github.clone(),
            app: stored.as_ref().map(|(a, _)| a.clone()),
            webhook_url: webhook_url.clone(),
        }))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let stopping = *stopping_rx.borrow();
                async move {
                    use axum::response::IntoResponse;
                    if stopping && req.uri().path() != cca_github::TOKEN_ROUTE {
                        return (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "cca up is stopping",
                        )
                            .into_response();
                    }
                    next.run(req).await
                }
            },
        ));

    let settle_store = settles.then(|| Arc::clone(&store));
    // The webhook stops after the agents (its token broker serves them while they stop), the
    // proxy last: it serves the agents' apps while they stop.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (proxy_stop_tx, proxy_stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut proxy_task = match (proxy_listener, proxy_settings) {
        (Some(listener), Some(settings)) => {
            let mut proxy = cca_uat_proxy::Proxy::new(Arc::clone(&store), settings);
            // Never forward to the webhook, whatever a session record says.
            proxy.refuse_listener(addr);
            Some(tokio::spawn(proxy.serve(listener, stopped(proxy_stop_rx))))
        }
        _ => None,
    };

    println!("cca up: serving on {base}");
    println!("  webhook   {webhook_url}  (also /webhooks/github, /webhooks/jira)");
    println!("  health    {base}/health");
    println!("  setup     {base}/setup");
    match proxy_addr {
        Some(at) => println!("  previews  {}  (proxy on {at})", previews.pattern()),
        None => println!(
            "  previews  {}  (proxy not started: --no-proxy)",
            previews.pattern()
        ),
    }
    println!("  github    {github}");
    if let Some(text) = &sign_in_text {
        println!("  sign-in   {text}");
    }
    println!("  data dir  {}", dir.root().display());
    println!("  sessions  {store_text}");
    match &local {
        Some((program, log_dir)) => {
            let found = if program.exists() {
                ""
            } else {
                "  (not found: set CCA_AGENT_BIN)"
            };
            println!("  agents    {}{found}", program.display());
            println!("  logs      {}", log_dir.display());
            println!("  sandbox   {}", local_sandbox(program).await);
        }
        None => println!("  agents    ECS (LAUNCHER=ecs)"),
    }
    println!("Ctrl-C stops the webhook, every agent it started, and the proxy.");

    let server = cca_webhook::serve::serve(listener, routes, limits, stopped(stop_rx));
    let mut server = tokio::spawn(server);
    let failure: Option<anyhow::Error> = tokio::select! {
        name = &mut stop => {
            eprintln!("cca up: {name}: stopping");
            None
        }
        result = &mut server => Some(match result {
            Ok(Ok(())) => anyhow::anyhow!("the webhook server stopped by itself"),
            Ok(Err(e)) => anyhow::Error::new(e).context("the webhook server failed"),
            Err(e) => anyhow::Error::new(e).context("the webhook server failed"),
        }),
        result = async {
            match proxy_task.as_mut() {
                Some(task) => task.await,
                None => std::future::pending().await,
            }
        } => Some(match result {
            Ok(Ok(())) => anyhow::anyhow!("the preview proxy stopped by itself"),
            Ok(Err(e)) => anyhow::Error::new(e).context("the preview proxy failed"),
            Err(e) => anyhow::Error::new(e).context("the preview proxy failed"),
        }),
    };
    if let Some(e) = &failure {
        eprintln!("cca up: {e:#}: stopping");
    }
    // A finished task must not be awaited again.
    let proxy_task = proxy_task.filter(|t| !t.is_finished());

    // First no new work, then the agents (each pushes its work, with a token from the broker,
    // which still answers, and records its end), then the webhook, then the proxy, which serves
    // their apps until they are gone.
    let _ = stopping_tx.send(true);
    let _ = stop_turns.send(true);
    let _ = turns.await;
    if local.is_some() {
        eprintln!(
            "cca up: stopping agents (each has {}s to push its work)",
            PROCESS_STOP_GRACE.as_secs()
        );
    }
    launcher.shutdown().await;
    let _ = stop_tx.send(true);
    if !server.is_finished()
        && tokio::time::timeout(DRAIN_TIMEOUT, &mut server)
            .await
            .is_err()
    {
        eprintln!("cca up: webhook requests still running after {DRAIN_TIMEOUT:?} were dropped");
        server.abort();
    }
    if let Some(store) = &settle_store {
        settle_ended_agents(store.as_ref()).await;
    }
    let _ = proxy_stop_tx.send(true);
    if let Some(task) = proxy_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("cca up: the preview proxy failed while stopping: {e}"),
            Err(e) => eprintln!("cca up: the preview proxy failed while stopping: {e}"),
        }
    }
    eprintln!("cca up: stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cca_webhook::config::TaskArgs;

    #[test]
    fn credentials_are_checked_before_anything_is_made() {
        let mut s = WebhookArgs::default();
        assert_eq!(github_state(&s), GitHubState::Absent);
        s.github.github_token = Some(String::new());
        assert_eq!(github_state(&s), GitHubState::Absent);
        s.github.github_token = Some("t".into());
        assert_eq!(
            github_state(&s),
            GitHubState::Incomplete("GITHUB_WEBHOOK_SECRET is not set")
        );
        s.github_webhook_secret = Some("w".into());
        assert_eq!(github_state(&s), GitHubState::Ready);
        let mut arn = WebhookArgs::default();
        arn.github.github_app_secret_arn = Some("arn".into());
        assert_eq!(github_state(&arn), GitHubState::Ready);
    }

    #[test]
    fn a_stored_app_completes_the_settings() {
        let app = StoredApp {
            app_id: 9,
            slug: "s".into(),
            name: "S".into(),
            html_url: "https://github.com/apps/s".into(),
            owner: None,
            webhook_secret: "stored-secret".into(),
            client_id: None,
            client_secret: None,
            created_at: 0,
        };
        let mut s = WebhookArgs::default();
        use_stored_app(&mut s, &app, "/d/github-app.pem".into());
        assert_eq!(github_state(&s), GitHubState::Ready);
        assert_eq!(s.github_webhook_secret.as_deref(), Some("stored-secret"));
        let mut s = WebhookArgs {
            github_webhook_secret: Some("from-env".into()),
            ..WebhookArgs::default()
        };
        use_stored_app(&mut s, &app, "/d/github-app.pem".into());
        assert_eq!(s.github_webhook_secret.as_deref(), Some("from-env"));
    }

    #[test]
    fn local_defaults_keep_a_shell_pointed_at_aws_local() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::resolve(&DataDirArgs {
            data_dir: Some(tmp.path().to_owned()),
        })
        .unwrap();
        let mut s = WebhookArgs {
            tasks: TaskArgs {
                ecs_cluster: Some("prod".into()),
                ..TaskArgs::default()
            },
            ..WebhookArgs::default()
        };
        s.store.sessions_table = Some("prod".into());
        s.github.github_app_id = Some(5);
        s.github.github_app_private_key_file = Some("/k.pem".into());
        fill_defaults(&mut s, &dir).unwrap();
        assert_eq!(
            s.store.session_store.as_deref(),
            Some(format!("sqlite:{}", tmp.path().join("sessions.db").display()).as_str())
        );
        assert_eq!(s.launcher.as_deref(), Some("process"));
        assert_eq!(s.uat_domain_suffix.as_deref(), Some("localhost"));
        assert_eq!(s.control.control_secret, Some(dir.control_key().unwrap()));
        let env = agent_env(&s, &dir, "0.0.0.0:8080".parse().unwrap());
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert!(get("SESSION_STORE").is_some());
        assert_eq!(get("CCA_TOKEN_URL"), Some("http://127.0.0.1:8080"));
        // Agents hold no credential of the system's: tokens come from the broker.
        for name in [
            "CCA_CONTROL_SECRET",
            "GITHUB_APP_ID",
            "GITHUB_APP_PRIVATE_KEY_FILE",
            "GITHUB_TOKEN",
        ] {
            assert_eq!(get(name), None, "{name}");
        }
    }

    #[test]
    fn previews_go_through_the_local_proxy_unless_told_otherwise() {
        let mut s = WebhookArgs::default();
        fill_preview_template(&mut s, Some("127.0.0.1:8081".parse().unwrap()));
        assert_eq!(
            s.preview_url_template.as_deref(),
            Some("http://{id}.{suffix}:8081")
        );
        let mut s = WebhookArgs {
            preview_url_template: Some("https://{id}.dev.example.com".into()),
            ..WebhookArgs::default()
        };
        fill_preview_template(&mut s, Some("127.0.0.1:8081".parse().unwrap()));
        assert_eq!(
            s.preview_url_template.as_deref(),
            Some("https://{id}.dev.example.com")
        );
        let mut s = WebhookArgs::default();
        fill_preview_template(&mut s, None);
        assert_eq!(s.preview_url_template, None);
    }

    #[test]
    fn addresses_for_the_browser_and_github() {
        assert_eq!(
            local_url("0.0.0.0:80".parse().unwrap()),
            "http://127.0.0.1:80"
        );
        assert_eq!(local_url("[::]:80".parse().unwrap()), "http://[::1]:80");
        assert_eq!(
            local_url("127.0.0.1:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(github_web_url(None, None), "https://github.com");
        assert_eq!(
            github_web_url(None, Some("https://api.github.com/")),
            "https://github.com"
        );
        assert_eq!(
            github_web_url(None, Some("https://ghe.example.com/api/v3")),
            "https://ghe.example.com"
        );
        assert_eq!(
            github_web_url(None, Some("http://127.0.0.1:9")),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            github_web_url(Some("https://web.example/"), Some("http://127.0.0.1:9")),
            "https://web.example"
        );
        let name = default_app_name();
        assert!(name.starts_with("Claude Cloud Agent ("), "{name}");
        assert!(name.chars().count() <= page::MAX_APP_NAME_CHARS, "{name}");
    }
}
