//! The local setup page of `cca up`: with no GitHub credentials, it offers to create a GitHub
//! App through GitHub's manifest flow and stores what GitHub hands back.
//!
//! `GET /setup` renders a form that posts an App manifest to GitHub's "new App" page with a
//! random `state`. GitHub creates the App and sends the browser to `GET /setup/callback?code=…
//! &state=…`; the state must be the one this run issued (so no other site can make `cca up`
//! adopt an App of its choosing), then the code is exchanged at
//! `POST <GITHUB_API_URL>/app-manifests/{code}/conversions` (no authentication: the code is the
//! credential) and the App's id, key and secrets are written to the data directory. The pages
//! answer requests from this machine only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use rand::RngCore as _;
use serde::Deserialize;
use tokio::sync::oneshot;

use super::page::{self, AppChoice, MAX_APP_NAME_CHARS, SetupView};
use super::stored::{self, StoredApp};
use crate::data_dir::DataDir;

/// Bound on the code exchange with GitHub.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the setup pages need to know.
#[derive(Debug, Clone)]
pub struct SetupContext {
    /// How a browser on this machine reaches `cca up`, e.g. `http://127.0.0.1:8080`.
    pub local_url: String,
    /// GitHub's web address (`https://github.com`, or an Enterprise server).
    pub github_web_url: String,
    /// GitHub's REST API root.
    pub github_api_url: String,
    pub data_dir: DataDir,
    /// The App name offered by default.
    pub default_name: String,
    /// The App's callback URL for preview sign-in (`cca up --preview-sign-in`); none when the
    /// proxy's port is not fixed.
    pub sign_in_callback: Option<String>,
}

impl SetupContext {
    fn local_webhook_url(&self) -> String {
        format!("{}/webhook", self.local_url)
    }

    fn redirect_url(&self) -> String {
        format!("{}/setup/callback", self.local_url)
    }

    fn defaults(&self) -> AppChoice {
        AppChoice {
            name: self.default_name.clone(),
            webhook_url: self.local_webhook_url(),
            org: None,
        }
    }
}

/// An App GitHub created and whose files are stored.
#[derive(Debug, Clone)]
pub struct Created {
    pub app: StoredApp,
    /// The private key's file.
    pub pem: std::path::PathBuf,
}

#[derive(Debug)]
struct Shared {
    ctx: SetupContext,
    /// The state this run issued; `None` once it was redeemed.
    state: Mutex<Option<String>>,
    /// Told once, when an App is stored.
    done: Mutex<Option<oneshot::Sender<Created>>>,
    http: reqwest::Client,
}

/// The setup router and the receiver that learns of the App it creates.
pub fn router(ctx: SetupContext) -> anyhow::Result<(Router, oneshot::Receiver<Created>)> {
    let (done, created) = oneshot::channel();
    let http = reqwest::Client::builder()
        .timeout(EXCHANGE_TIMEOUT)
        .user_agent(concat!("cca/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build an HTTP client")?;
    let shared = Arc::new(Shared {
        ctx,
        state: Mutex::new(Some(random_hex(16))),
        done: Mutex::new(Some(done)),
        http,
    });
    let pages = Router::new()
        .route("/setup", get(setup))
        .route("/setup/callback", get(callback))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(allowed_hosts(&shared.ctx.local_url)),
            guard_host,
        ));
    let router = Router::new()
        .route("/", get(|| async { Redirect::to("/setup") }))
        .merge(pages)
        .route("/webhook", any(not_configured))
        .route("/webhooks/{*source}", any(not_configured))
        .route("/health", get(not_configured))
        .with_state(shared);
    Ok((router, created))
}

/// The `Host` values a setup page answers: the loopback address it listens on, by number or as
/// `localhost`, with its port. A page reached through a tunnel, or by a DNS-rebinding page
/// whose name now points at 127.0.0.1, carries another name and is refused (421), so no other
/// site can read the page's state.
fn allowed_hosts(local_url: &str) -> Vec<String> {
    let authority = local_url
        .split_once("://")
        .map_or(local_url, |(_, rest)| rest)
        .trim_end_matches('/');
    let port = authority.rsplit_once(':').map(|(_, p)| p).unwrap_or("80");
    let mut hosts = vec![authority.to_ascii_lowercase()];
    for name in ["127.0.0.1", "localhost", "[::1]"] {
        let mut names = vec![format!("{name}:{port}")];
        // Browsers leave the default port out of `Host`.
        if port == "80" {
            names.push(name.to_owned());
        }
        for h in names {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    hosts
}

/// Refuses setup requests whose `Host` is not one of `hosts` ([`allowed_hosts`]).
async fn guard_host(
    State(hosts): State<Arc<Vec<String>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    if host.as_ref().is_some_and(|h| hosts.contains(h)) {
        return next.run(req).await;
    }
    tracing::warn!(host = ?host, "setup page: a request naming another host was refused");
    html(
        StatusCode::MISDIRECTED_REQUEST,
        page::message_page(
            "Open the setup page by its own address",
            &format!(
                "The setup page answers only at {}; this request named another host.",
                hosts[0]
            ),
        ),
        None,
    )
}

/// What the status pages of a configured `cca up` show.
#[derive(Debug, Clone)]
pub struct Configured {
    /// Where the credentials come from, in words.
    pub source: String,
    pub app: Option<StoredApp>,
    pub webhook_url: String,
}

/// `/setup` once credentials are set: what is used, and a link to install the App further.
pub fn configured_router(info: Configured) -> Router {
    let info = Arc::new(info);
    let page = {
        let info = Arc::clone(&info);
        move |ConnectInfo(peer): ConnectInfo<SocketAddr>| {
            let info = Arc::clone(&info);
            async move {
                if !peer.ip().is_loopback() {
                    return local_only();
                }
                html(
                    StatusCode::OK,
                    page::configured_page(&info.source, info.app.as_ref(), &info.webhook_url),
                    None,
                )
            }
        }
    };
    let hosts = allowed_hosts(
        info.webhook_url
            .strip_suffix("/webhook")
            .unwrap_or(&info.webhook_url),
    );
    Router::new()
        .route("/setup", get(page))
        .route(
            "/setup/callback",
            get(|| async {
                html(
                    StatusCode::CONFLICT,
                    page::message_page(
                        "Already configured",
                        "cca up already runs with GitHub credentials; this link was not used.",
                    ),
                    None,
                )
            }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(hosts),
            guard_host,
        ))
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// An HTML answer with the headers every setup page carries: never cached, no referrer (the
/// callback's address holds the code), scripts only with this page's nonce, forms only to here
/// and to GitHub.
fn html(status: StatusCode, body: String, csp: Option<String>) -> Response {
    let csp = csp.unwrap_or_else(|| {
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; \
         base-uri 'none'; frame-ancestors 'none'"
            .to_owned()
    });
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

fn local_only() -> Response {
    html(
        StatusCode::FORBIDDEN,
        page::message_page(
            "Only on this machine",
            "The setup page answers requests from this machine only: open it in a browser here.",
        ),
        None,
    )
}

/// The origin of a URL (`scheme://host[:port]`), for the content security policy.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// What the address may override on the page (the "Apply" button without scripts).
fn choice_from(ctx: &SetupContext, q: &HashMap<String, String>) -> (AppChoice, Vec<String>) {
    let mut choice = ctx.defaults();
    let mut notes = Vec::new();
    let given = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    if let Some(name) = given("name") {
        if name.chars().count() <= MAX_APP_NAME_CHARS {
            choice.name = name.to_owned();
        } else {
            notes.push(format!(
                "The App name may have at most {MAX_APP_NAME_CHARS} characters; the default is used."
            ));
        }
    }
    if let Some(url) = given("webhook_url") {
        if page::valid_url(url) {
            choice.webhook_url = url.to_owned();
        } else {
            notes.push(format!(
                "{url:?} is not an http:// or https:// address; the local webhook address is used."
            ));
        }
    }
    if let Some(org) = given("org") {
        if page::valid_org(org) {
            choice.org = Some(org.to_owned());
        } else {
            notes.push(format!(
                "{org:?} is not an organization name; the App goes to your own account."
            ));
        }
    }
    (choice, notes)
}

async fn setup(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !peer.ip().is_loopback() {
        return local_only();
    }
    let ctx = &shared.ctx;
    let Some(state) = shared
        .state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
    else {
        return html(
            StatusCode::OK,
            page::message_page(
                "App already created",
                "This run of cca up has stored a GitHub App already; reload to see its status.",
            ),
            None,
        );
    };
    let (choice, notes) = choice_from(ctx, &q);
    let manifest = page::manifest(
        &choice,
        &format!("{}/setup", ctx.local_url),
        &ctx.redirect_url(),
        ctx.sign_in_callback.as_deref(),
    );
    let nonce = random_hex(12);
    let body = page::setup_page(&SetupView {
        choice: &choice,
        notes: &notes,
        github_web_url: &ctx.github_web_url,
        state: &state,
        manifest: &manifest,
        local_webhook_url: &ctx.local_webhook_url(),
        data_dir: &ctx.data_dir.root().display().to_string(),
        nonce: &nonce,
    });
    // The form may go to GitHub (an organization's page too), nowhere else.
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; \
         form-action 'self' {}; base-uri 'none'; frame-ancestors 'none'",
        origin(&ctx.github_web_url)
    );
    html(StatusCode::OK, body, Some(csp))
}

/// GitHub's answer to a manifest conversion: the new App and its credentials.
#[derive(Deserialize)]
struct Conversion {
    id: u64,
    slug: String,
    #[serde(default)]
    name: Option<String>,
    html_url: String,
    pem: String,
    #[serde(default)]
    webhook_secret: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    owner: Option<Owner>,
}

#[derive(Deserialize)]
struct Owner {
    login: String,
}

/// A code as GitHub issues them: short, letters, digits, `-` and `_` (anything else is refused
/// before it reaches a URL).
fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 200
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn callback(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !peer.ip().is_loopback() {
        return local_only();
    }
    let refuse =
        |status, title: &str, message: &str| html(status, page::message_page(title, message), None);
    let (Some(code), Some(state)) = (q.get("code"), q.get("state")) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Nothing to do",
            "GitHub sends you here with a code and a state after it created the App; this address has neither.",
        );
    };
    {
        let mut expected = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        let matches = expected
            .as_deref()
            .is_some_and(|e| subtle_eq(e.as_bytes(), state.as_bytes()));
        if !matches {
            tracing::warn!("setup callback refused: the state is not the one this run issued");
            return refuse(
                StatusCode::FORBIDDEN,
                "Not started here",
                "This link does not carry the state this cca up issued (it was opened from another \
                 page, or an App was already created). Nothing was stored: start again from the setup page.",
            );
        }
        if !valid_code(code) {
            return refuse(
                StatusCode::BAD_REQUEST,
                "Malformed code",
                "The code in this address is not one GitHub issues.",
            );
        }
        // Redeemed now, so a second callback racing this one is refused.
        *expected = None;
    }
    match exchange(&shared, code).await {
        Ok(created) => {
            let stored_in = shared.ctx.data_dir.root().display().to_string();
            let body =
                page::created_page(&created.app, &stored_in, &shared.ctx.local_webhook_url());
            tracing::info!(app_id = created.app.app_id, slug = %created.app.slug, "GitHub App created and stored");
            if let Some(done) = shared
                .done
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                let _ = done.send(created);
            }
            html(StatusCode::OK, body, None)
        }
        Err(e) => {
            // The old state is spent and a code works once: a retry starts from a fresh form.
            *shared.state.lock().unwrap_or_else(PoisonError::into_inner) = Some(random_hex(16));
            tracing::warn!(error = %format!("{e:#}"), "the App could not be created");
            refuse(
                StatusCode::BAD_GATEWAY,
                "The App could not be stored",
                &format!("{e:#}. Start again from the setup page."),
            )
        }
    }
}

/// Compares without an early exit, so the state cannot be guessed byte by byte from timings.
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Redeems `code` at GitHub and stores the App.
async fn exchange(shared: &Shared, code: &str) -> anyhow::Result<Created> {
    let ctx = &shared.ctx;
    let url = format!(
        "{}/app-manifests/{code}/conversions",
        ctx.github_api_url.trim_end_matches('/')
    );
    let response = shared
        .http
        .post(&url)
        .header(header::ACCEPT, "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .send()
        .await
        .with_context(|| format!("cannot reach GitHub at {}", ctx.github_api_url))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .context("cannot read GitHub's answer")?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "no message".into());
        anyhow::bail!(
            "GitHub answered {status} to the code exchange ({message}); codes expire after an hour and work once"
        );
    }
    let c: Conversion = serde_json::from_str(&text)
        .context("GitHub's answer to the code exchange is not an App")?;
    let webhook_secret = c
        .webhook_secret
        .filter(|s| !s.trim().is_empty())
        .context("GitHub gave the App no webhook secret (was the webhook URL left out?)")?;
    if !c.pem.trim_start().starts_with("-----BEGIN ") {
        anyhow::bail!("GitHub's answer holds no PEM private key");
    }
    let app = StoredApp {
        app_id: c.id,
        name: c.name.unwrap_or_else(|| c.slug.clone()),
        slug: c.slug,
        html_url: c.html_url,
        owner: c.owner.map(|o| o.login),
        webhook_secret,
        client_id: c.client_id,
        client_secret: c.client_secret,
        created_at: cca_webhook::app::now(),
    };
    stored::save(&ctx.data_dir, &app, &c.pem)?;
    Ok(Created {
        app,
        pem: ctx.data_dir.github_app_pem(),
    })
}

async fn not_configured() -> impl IntoResponse {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({
            "error": "cca up has no GitHub credentials yet: open /setup on this machine",
        })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_origins() {
        assert!(valid_code("a1B2-c_3"));
        assert!(!valid_code("../app"));
        assert!(!valid_code(""));
        assert_eq!(origin("https://github.com/"), "https://github.com");
        assert_eq!(origin("http://127.0.0.1:9/x/y"), "http://127.0.0.1:9");
        assert_eq!(origin("https://ghe.example.com"), "https://ghe.example.com");
        assert!(subtle_eq(b"abc", b"abc") && !subtle_eq(b"abc", b"abd") && !subtle_eq(b"a", b"ab"));
    }

    /// A tunnel's name, or a DNS-rebinding page's, reaches the listener but not the page.
    #[tokio::test]
    async fn setup_pages_answer_only_their_own_loopback_host() {
        let on_80 = allowed_hosts("http://127.0.0.1:80");
        assert!(on_80.contains(&"127.0.0.1".to_owned()) && on_80.contains(&"localhost".to_owned()));
        assert!(!allowed_hosts("http://127.0.0.1:8080").contains(&"localhost".to_owned()));
        use tower::ServiceExt as _;
        let app = configured_router(Configured {
            source: "a token".into(),
            app: None,
            webhook_url: "http://127.0.0.1:8080/webhook".into(),
        });
        for (host, want) in [
            (Some("127.0.0.1:8080"), StatusCode::OK),
            (Some("localhost:8080"), StatusCode::OK),
            (Some("LOCALHOST:8080"), StatusCode::OK),
            (
                Some("rebind.attacker.example:8080"),
                StatusCode::MISDIRECTED_REQUEST,
            ),
            (
                Some("abc.trycloudflare.com"),
                StatusCode::MISDIRECTED_REQUEST,
            ),
            (Some("127.0.0.1:9999"), StatusCode::MISDIRECTED_REQUEST),
            (None, StatusCode::MISDIRECTED_REQUEST),
        ] {
            for path in ["/setup", "/setup/callback?code=x&state=y"] {
                let mut req = axum::http::Request::get(path);
                if let Some(h) = host {
                    req = req.header(header::HOST, h);
                }
                let mut req = req.body(axum::body::Body::empty()).unwrap();
                req.extensions_mut()
                    .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 5555))));
                let status = app.clone().oneshot(req).await.unwrap().status();
                let want = if path != "/setup" && want == StatusCode::OK {
                    StatusCode::CONFLICT
                } else {
                    want
                };
                assert_eq!(status, want, "{host:?} {path}");
            }
        }
    }
}
