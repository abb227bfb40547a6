//! The model gateway: the only holder of the model credential.
//!
//! The coding CLI is told that the Messages API lives on a loopback port of the agent and that
//! its key is a random token of this session's gateway. The gateway checks that token, replaces
//! it with the real credential (an API key or an OAuth token), forwards the request to the real
//! API and streams the answer back unchanged, reading the `usage` of every answer on the way
//! (`message_start` and `message_delta` events of a stream, or the JSON body). It prices the
//! tokens with [`Prices`] and keeps the [`Ledger`] of the run and the session: once a budget is
//! spent, the next request is refused with an error the CLI does not retry, so the run ends
//! whatever the CLI's own flags say, and the agent reports the cut. The cost the agent records
//! is the gateway's sum. Token limits work the same way.
//!
//! With Amazon Bedrock the CLI sends unsigned Bedrock requests to `http://<gateway>/<token>/…`
//! (the token in the path, as such requests carry no key) and the gateway signs them with the
//! task role's credentials ([`bedrock`]); the CLI never sees an AWS credential.

mod bedrock;
mod prices;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tracing::{info, warn};

pub use bedrock::{Bedrock, endpoint as bedrock_endpoint};
pub use prices::{Price, PriceError, Prices};

/// Largest request body the gateway forwards (a long conversation with images stays well below).
const REQUEST_LIMIT: usize = 64 << 20;

/// The credential the gateway adds to each forwarded request.
#[derive(Clone)]
pub enum Credential {
    /// `x-api-key`.
    ApiKey(SecretString),
    /// `Authorization: Bearer` with the OAuth beta the API requires for such tokens.
    OAuth(SecretString),
    /// `Authorization: Bearer` as it is (`ANTHROPIC_AUTH_TOKEN`, for an API gateway of the
    /// operator's).
    Bearer(SecretString),
    /// A Signature Version 4 of each request, with the task role's credentials.
    Bedrock(Bedrock),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::ApiKey(_) => "ApiKey(..)",
            Credential::OAuth(_) => "OAuth(..)",
            Credential::Bearer(_) => "Bearer(..)",
            Credential::Bedrock(_) => "Bedrock(..)",
        })
    }
}

/// The beta flag the Messages API needs with an OAuth token.
const OAUTH_BETA: &str = "oauth-2025-04-20";

/// Tokens and dollars, of a run or of the session.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_tokens: u64,
    pub cache_read_tokens: u64,
    pub requests: u64,
    pub cost_usd: f64,
}

impl Usage {
    fn add(&mut self, other: &Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cache_creation_tokens = self
            .cache_creation_tokens
            .saturating_add(other.cache_creation_tokens);
        self.cache_read_tokens = self
            .cache_read_tokens
            .saturating_add(other.cache_read_tokens);
        self.requests = self.requests.saturating_add(other.requests);
        self.cost_usd += other.cost_usd;
    }

    /// Every token counted: input, output and both cache sides.
    pub fn tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.output_tokens)
            .saturating_add(self.cache_creation_tokens)
            .saturating_add(self.cache_read_tokens)
    }
}

/// The spending of the current run and of the whole session, and their budgets. Pure: the
/// gateway asks it before forwarding and tells it after each answer.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    run: Usage,
    session: Usage,
    run_budget_usd: f64,
    session_budget_usd: f64,
    run_token_budget: Option<u64>,
    session_token_budget: Option<u64>,
    /// The budget that refused a request in this run, if one did.
    refused: Option<Refusal>,
}

/// Which budget refused a model request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    Run { budget_usd: f64 },
    Session { budget_usd: f64 },
    RunTokens { budget: u64 },
    SessionTokens { budget: u64 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Run { budget_usd } => write!(
                f,
                "the run's budget of ${budget_usd:.4} (MAX_COST_PER_RUN_USD, at most what the session has left)"
            ),
            Refusal::Session { budget_usd } => write!(
                f,
                "the session's budget of ${budget_usd:.2} (MAX_COST_PER_SESSION_USD)"
            ),
            Refusal::RunTokens { budget } => {
                write!(f, "the run's {budget} tokens (MAX_TOKENS_PER_RUN)")
            }
            Refusal::SessionTokens { budget } => write!(
                f,
                "the session's {budget} tokens (MAX_TOKENS_PER_SESSION, counted since the agent started)"
            ),
        }
    }
}

impl Ledger {
    /// A ledger for a session that has spent `spent_usd` already (a relaunch).
    pub fn new(session_budget_usd: f64, spent_usd: f64) -> Self {
        Self {
            session: Usage {
                cost_usd: spent_usd,
                ..Usage::default()
            },
            session_budget_usd,
            ..Self::default()
        }
    }

    /// Adds token limits (none where `None`): of each run, and of the session as this agent
    /// has seen it (the record keeps no token count, so a relaunch counts afresh).
    #[must_use]
    pub fn with_token_limits(mut self, run: Option<u64>, session: Option<u64>) -> Self {
        self.run_token_budget = run;
        self.session_token_budget = session;
        self
    }

    /// The session's budget is now `budget_usd` (a writer raised it with `/claude budget`).
    pub fn set_session_budget(&mut self, budget_usd: f64) {
        self.session_budget_usd = budget_usd;
    }

    /// Starts a run that may spend `budget_usd`.
    pub fn begin_run(&mut self, budget_usd: f64) {
        self.run = Usage::default();
        self.run_budget_usd = budget_usd;
        self.refused = None;
    }

    /// Whether another request may go out; records the refusal when not.
    pub fn admit(&mut self) -> Result<(), Refusal> {
        let refusal = if self.session.cost_usd >= self.session_budget_usd {
            Some(Refusal::Session {
                budget_usd: self.session_budget_usd,
            })
        } else if self.run.cost_usd >= self.run_budget_usd {
            Some(Refusal::Run {
                budget_usd: self.run_budget_usd,
            })
        } else if let Some(budget) = self
            .session_token_budget
            .filter(|b| self.session.tokens() >= *b)
        {
            Some(Refusal::SessionTokens { budget })
        } else {
            self.run_token_budget
                .filter(|b| self.run.tokens() >= *b)
                .map(|budget| Refusal::RunTokens { budget })
        };
        match refusal {
            Some(r) => {
                self.refused = Some(r);
                Err(r)
            }
            None => Ok(()),
        }
    }

    /// Adds one answer's usage.
    pub fn record(&mut self, usage: &Usage) {
        self.run.add(usage);
        self.session.add(usage);
    }

    /// What the run spent, and the budget that cut it, if one did.
    pub fn run(&self) -> (Usage, Option<Refusal>) {
        (self.run, self.refused)
    }

    /// What the session spent so far.
    pub fn session(&self) -> Usage {
        self.session
    }
}

struct Inner {
    upstream: String,
    credential: Credential,
    token: String,
    prices: Prices,
    ledger: Mutex<Ledger>,
    http: reqwest::Client,
}

/// A running gateway.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
    addr: SocketAddr,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("addr", &self.addr)
            .field("upstream", &self.inner.upstream)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Listens on a free loopback port and forwards to `upstream` (the API's base URL).
    pub async fn start(
        upstream: &str,
        credential: Credential,
        prices: Prices,
        ledger: Ledger,
    ) -> std::io::Result<Gateway> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let token = format!("cca-gateway-{}", hex::encode(rand::random::<[u8; 24]>()));
        let http = reqwest::Client::builder()
            .build()
            .map_err(std::io::Error::other)?;
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_owned(),
            credential,
            token,
            prices,
            ledger: Mutex::new(ledger),
            http,
        });
        let app = axum::Router::new()
            .fallback(forward)
            .layer(axum::extract::DefaultBodyLimit::max(REQUEST_LIMIT))
            .with_state(inner.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                warn!(error = %e, "the model gateway stopped");
            }
        });
        info!(%addr, upstream = %inner.upstream, "model gateway listening");
        Ok(Gateway { inner, addr })
    }

    /// The variables the CLI gets instead of a model credential.
    pub fn cli_env(&self) -> Vec<(String, String)> {
        match &self.inner.credential {
            Credential::Bedrock(b) => vec![
                ("CLAUDE_CODE_USE_BEDROCK".into(), "1".into()),
                ("CLAUDE_CODE_SKIP_BEDROCK_AUTH".into(), "1".into()),
                (
                    "ANTHROPIC_BEDROCK_BASE_URL".into(),
                    format!("http://{}/{}", self.addr, self.inner.token),
                ),
                ("AWS_REGION".into(), b.region().to_owned()),
            ],
            _ => vec![
                ("ANTHROPIC_BASE_URL".into(), format!("http://{}", self.addr)),
                ("ANTHROPIC_API_KEY".into(), self.inner.token.clone()),
            ],
        }
    }

    /// The token the CLI presents (not a credential of the model: it spends only through this
    /// gateway, within its budgets).
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.inner
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a run that may spend `budget_usd`, in a session that may spend
    /// `session_budget_usd` in all.
    pub fn begin_run(&self, budget_usd: f64, session_budget_usd: f64) {
        let mut ledger = self.ledger();
        ledger.set_session_budget(session_budget_usd);
        ledger.begin_run(budget_usd);
    }

    /// What the current run spent, and the budget that cut it, if one did.
    pub fn run(&self) -> (Usage, Option<Refusal>) {
        self.ledger().run()
    }

    /// What the session spent through the gateway (and before it, on a relaunch).
    pub fn session(&self) -> Usage {
        self.ledger().session()
    }
}

/// An Anthropic-style error answer.
fn api_error(status: StatusCode, kind: &str, message: &str) -> Response {
    // `message` at the top as well, where Bedrock's clients read it.
    let body =
        json!({"type": "error", "error": {"type": kind, "message": message}, "message": message});
    (status, axum::Json(body)).into_response()
}

/// Headers not forwarded either way: the connection's own, and the credentials.
fn is_dropped(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "content-length"
            // The meter reads answers as they come: no compressed ones.
            | "accept-encoding"
            | "x-api-key"
            | "authorization"
            | "proxy-authorization"
            | "x-amz-date"
            | "x-amz-security-token"
            | "x-amz-content-sha256"
    )
}

/// Whether `presented` is the gateway's token, in constant time.
fn is_token(presented: &str, token: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), token.as_bytes()).into()
}

/// The path to forward when the request authenticates: Bedrock requests carry the token as
/// their first path segment, the others in `x-api-key` or `Authorization: Bearer`.
fn authenticated_path<'a>(gw: &Inner, req: &'a Request) -> Option<&'a str> {
    let path = req.uri().path();
    if matches!(gw.credential, Credential::Bedrock(_)) {
        let (token, _) = path.strip_prefix('/')?.split_once('/')?;
        return is_token(token, &gw.token).then(|| &path[token.len() + 1..]);
    }
    presented_token(req.headers())
        .is_some_and(|t| is_token(t, &gw.token))
        .then_some(path)
}

fn presented_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
}

/// Whether a path means what it reads: no `.` or `..` segment and no encoded dot, slash or
/// backslash, which the HTTP client or the upstream would resolve into another path than the
/// one checked and priced here.
fn is_plain_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    !lower.contains("%2e")
        && !lower.contains("%2f")
        && !lower.contains("%5c")
        && !path.contains('\\')
        && path.split('/').all(|seg| seg != "." && seg != "..")
}

async fn forward(State(gw): State<Arc<Inner>>, req: Request) -> Response {
    let Some(path) = authenticated_path(&gw, &req).map(str::to_owned) else {
        return api_error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "this gateway accepts only its session's token",
        );
    };
    if !is_plain_path(&path) {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "the gateway forwards only plain paths (no dot segments, no encoded separators)",
        );
    }
    let bedrock = match &gw.credential {
        Credential::Bedrock(b) => Some(b),
        _ => None,
    };
    // Of Bedrock, only model invocations: its other APIs (listing inference profiles, …) are
    // not the CLI's to call with the task role.
    if bedrock.is_some() && !bedrock::is_invocation(&path) {
        return api_error(
            StatusCode::FORBIDDEN,
            "permission_error",
            "this gateway forwards only Bedrock model invocations",
        );
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, REQUEST_LIMIT).await else {
        return api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "request body too large",
        );
    };
    // Only model calls spend; counting tokens and listing models are free.
    let spends =
        path.ends_with("/messages") || path.ends_with("/complete") || bedrock::is_invocation(&path);
    if spends {
        let admitted = gw
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit();
        if let Err(refusal) = admitted {
            warn!(%refusal, "model request refused: budget spent");
            return api_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!(
                    "The agent's model gateway refused this request: {refusal} is spent. The run ends here."
                ),
            );
        }
    }
    let model = if bedrock.is_some() {
        bedrock::model_of(&path)
    } else {
        serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("model").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default()
    };
    let url = match parts.uri.query() {
        Some(q) => format!("{}{path}?{q}", gw.upstream),
        None => format!("{}{path}", gw.upstream),
    };
    let forwarded: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter(|(name, _)| !is_dropped(name) && *name != "anthropic-beta")
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let mut out = gw.http.request(parts.method.clone(), &url);
    for (name, value) in &forwarded {
        out = out.header(name, value);
    }
    let mut betas: Vec<String> = parts
        .headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|b| b.trim().to_owned())
        .filter(|b| !b.is_empty())
        .collect();
    match &gw.credential {
        Credential::ApiKey(k) => out = out.header("x-api-key", k.expose_secret()),
        Credential::OAuth(t) => {
            out = out.bearer_auth(t.expose_secret());
            if !betas.iter().any(|b| b == OAUTH_BETA) {
                betas.push(OAUTH_BETA.to_owned());
            }
        }
        Credential::Bearer(t) => out = out.bearer_auth(t.expose_secret()),
        Credential::Bedrock(_) => {}
    }
    if !betas.is_empty() {
        out = out.header("anthropic-beta", betas.join(","));
    }
    if let Some(b) = bedrock {
        let mut signed = forwarded.clone();
        if !betas.is_empty() {
            signed.push(("anthropic-beta".into(), betas.join(",")));
        }
        match bedrock::signature(b, parts.method.as_str(), &url, &signed, &body).await {
            Ok(headers) => {
                for (name, value) in headers {
                    out = out.header(name, value);
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot sign the Bedrock request");
                return api_error(StatusCode::BAD_GATEWAY, "api_error", &e);
            }
        }
    }
    let out = out.body(body);
    let upstream = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "the model API could not be reached");
            return api_error(
                StatusCode::BAD_GATEWAY,
                "api_error",
                "the model API could not be reached",
            );
        }
    };
    let status = upstream.status();
    let mut headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if !is_dropped(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let content_type = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let form = if content_type.starts_with("text/event-stream") {
        Form::Events
    } else if content_type.starts_with("application/vnd.amazon.eventstream") {
        Form::AwsEventStream
    } else {
        Form::Json
    };
    let meter = Meter {
        gw: gw.clone(),
        model,
        counting: spends && status.is_success(),
        form,
        buffer: Vec::new(),
        usage: Usage::default(),
    };
    let stream = futures::stream::unfold(
        (upstream.bytes_stream(), meter),
        |(mut bytes, mut meter)| async move {
            match bytes.next().await {
                Some(Ok(chunk)) => {
                    meter.feed(&chunk);
                    Some((Ok::<_, std::io::Error>(chunk), (bytes, meter)))
                }
                Some(Err(e)) => {
                    meter.finish();
                    Some((Err(std::io::Error::other(e)), (bytes, meter)))
                }
                None => {
                    meter.finish();
                    None
                }
            }
        },
    );
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    if let Ok(v) = HeaderValue::from_str("no") {
        response.headers_mut().insert("x-accel-buffering", v);
    }
    response
}

/// How an answer comes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Form {
    /// One JSON body with `usage`.
    Json,
    /// `text/event-stream` (the Messages API).
    Events,
    /// The AWS event stream (Bedrock's `invoke-with-response-stream`).
    AwsEventStream,
}

/// Reads the usage of one answer as it passes, and books it once at the end.
struct Meter {
    gw: Arc<Inner>,
    model: String,
    counting: bool,
    form: Form,
    buffer: Vec<u8>,
    usage: Usage,
}

impl Meter {
    fn feed(&mut self, chunk: &[u8]) {
        if !self.counting {
            return;
        }
        self.buffer.extend_from_slice(chunk);
        match self.form {
            Form::Json => return,
            Form::AwsEventStream => {
                if !bedrock::read_messages(&mut self.buffer, &mut self.usage) {
                    warn!(
                        "an answer said to be an AWS event stream is not one; its usage is what was read"
                    );
                    self.form = Form::Json;
                    self.buffer.clear();
                }
                return;
            }
            Form::Events => {}
        }
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            if let Some(data) = line.strip_prefix(b"data:") {
                if let Ok(event) = serde_json::from_slice::<Value>(data) {
                    read_event(&event, &mut self.usage);
                }
            }
        }
    }

    fn finish(&mut self) {
        if !std::mem::take(&mut self.counting) {
            return;
        }
        if self.form == Form::Json {
            if let Ok(body) = serde_json::from_slice::<Value>(&self.buffer) {
                if let Some(u) = body.get("usage") {
                    read_usage(u, &mut self.usage);
                }
            }
        }
        self.buffer.clear();
        let price = self.gw.prices.of(&self.model);
        self.usage.requests = 1;
        self.usage.cost_usd = price.cost(&self.usage);
        self.gw
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(&self.usage);
        tracing::debug!(model = %self.model, usage = ?self.usage, "model answer booked");
    }
}

impl Drop for Meter {
    /// An answer cut short (the CLI hung up) is booked with what it had used so far.
    fn drop(&mut self) {
        self.finish();
    }
}

/// The usage an event of a streamed answer reports: `message_start` carries the input side,
/// `message_delta` the output so far (cumulative).
fn read_event(event: &Value, usage: &mut Usage) {
    match event.get("type").and_then(Value::as_str) {
        Some("message_start") => {
            if let Some(u) = event.get("message").and_then(|m| m.get("usage")) {
                read_usage(u, usage);
            }
        }
        Some("message_delta") => {
            if let Some(u) = event.get("usage") {
                read_usage(u, usage);
            }
        }
        _ => {}
    }
}

/// Takes the larger of each count already known and the one in `u` (counts only grow).
fn read_usage(u: &Value, usage: &mut Usage) {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    usage.input_tokens = usage.input_tokens.max(n("input_tokens"));
    usage.output_tokens = usage.output_tokens.max(n("output_tokens"));
    usage.cache_creation_tokens = usage
        .cache_creation_tokens
        .max(n("cache_creation_input_tokens"));
    usage.cache_read_tokens = usage.cache_read_tokens.max(n("cache_read_input_tokens"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_refuses_once_a_budget_is_spent() {
        let mut l = Ledger::new(1.0, 0.0);
        l.begin_run(0.5);
        assert_eq!(l.admit(), Ok(()));
        l.record(&Usage {
            cost_usd: 0.6,
            ..Usage::default()
        });
        assert_eq!(l.admit(), Err(Refusal::Run { budget_usd: 0.5 }));
        assert_eq!(l.run().1, Some(Refusal::Run { budget_usd: 0.5 }));
        // A new run may spend again, until the session's budget is gone.
        l.begin_run(0.5);
        assert_eq!(l.admit(), Ok(()));
        l.record(&Usage {
            cost_usd: 0.45,
            ..Usage::default()
        });
        assert_eq!(l.admit(), Err(Refusal::Session { budget_usd: 1.0 }));
        assert!((l.session().cost_usd - 1.05).abs() < 1e-9);
        // A relaunch starts from what was spent.
        let mut l = Ledger::new(1.0, 1.0);
        l.begin_run(0.5);
        assert!(l.admit().is_err());
    }

    #[test]
    fn usage_is_read_from_stream_events_and_only_grows() {
        let mut u = Usage::default();
        read_event(
            &json!({"type":"message_start","message":{"usage":{"input_tokens":1200,"cache_read_input_tokens":300,"output_tokens":1}}}),
            &mut u,
        );
        read_event(
            &json!({"type":"message_delta","usage":{"output_tokens":40}}),
            &mut u,
        );
        read_event(
            &json!({"type":"message_delta","usage":{"output_tokens":90}}),
            &mut u,
        );
        read_event(&json!({"type":"content_block_delta"}), &mut u);
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.cache_creation_tokens
            ),
            (1200, 90, 300, 0)
        );
    }
}
