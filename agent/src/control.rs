//! The control API the webhook calls: `POST /prompt`, `GET /status`, `POST /stop`,
//! `POST /refresh`, and `GET /health`.
//!
//! Every route but `/health` needs `Authorization: Bearer <token>`, the session's token: the
//! HMAC of the session id under the control key, which only the webhook holds (a deployed agent
//! is given its own session's token by the launcher, never the key); anything else is 401
//! before the body is read. `/health` says only that the process answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cca_domain::{SessionId, Status};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};

/// Largest request body: a prompt is a PR comment (at most 65,536 characters).
const MAX_BODY: usize = 512 * 1024;

/// What the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Agent,
    Preview,
}

/// A follow-up request.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub text: String,
    pub author: Option<String>,
    pub comment_id: Option<u64>,
    /// The review threads the run answers in when it ends.
    pub threads: Vec<Thread>,
    /// A fix run for failing checks on this commit (not a person's follow-up).
    pub fix: Option<String>,
    /// `/claude approve` of the plan this many plan runs in (the one its approver saw).
    pub approval: Option<u32>,
}

/// A review thread a prompt came from: the id of its first comment (replies go there) and its
/// file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Thread {
    pub comment_id: u64,
    pub path: String,
}

/// The most review threads one prompt answers in (a review with more is still one prompt, and
/// the threads past these get no reply).
pub const MAX_THREADS: usize = 100;

/// Why the session is asked to end, and how it should be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct StopRequest {
    pub reason: String,
    /// `STOPPED` or `COMPLETED`.
    pub final_status: Status,
}

/// Checks that completed on the PR's head (coding sessions).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Checks {
    pub head_sha: String,
    pub passed: bool,
    /// The failed checks' names.
    #[serde(default)]
    pub checks: Vec<String>,
    /// The fix run's prompt, for failed checks.
    #[serde(default)]
    pub prompt: Option<String>,
}

/// A new PR head to show (previews).
#[derive(Debug, Clone, PartialEq)]
pub struct Refresh {
    pub head_sha: Option<String>,
}

/// State shared by the control API and the session's work.
#[derive(Debug)]
pub struct Shared {
    pub session_id: SessionId,
    pub mode: Mode,
    /// The session's control token, the only one accepted.
    token: SecretString,
    started: Instant,
    queue: Mutex<VecDeque<Prompt>>,
    queued: Notify,
    stop: watch::Sender<Option<StopRequest>>,
    /// True once `stop` holds a request: what a run in progress watches.
    cancel: watch::Sender<bool>,
    refresh: Mutex<Option<mpsc::UnboundedSender<Refresh>>>,
    checks: Mutex<Option<mpsc::UnboundedSender<Checks>>>,
    status: Mutex<Value>,
    /// Reactions to acknowledge prompts are sent through this (the reporter reads it).
    acks: Mutex<Option<mpsc::UnboundedSender<u64>>>,
    /// The review comments that prompts queued so far carried: a review and its own comment's
    /// event both reach the agent, and the second adds nothing.
    covered: Mutex<std::collections::HashSet<u64>>,
    /// The prompt of the last run that failed, for `POST /retry`.
    last_failed: Mutex<Option<Prompt>>,
    /// The session's cost limit and the operator's cap on raising it (`POST /budget`).
    cost: Mutex<CostLimit>,
    /// The session's runs plan and commit nothing until an approval runs.
    planning: std::sync::atomic::AtomicBool,
    /// Plans posted so far: an approval is of the plan its approver saw.
    plans_posted: std::sync::atomic::AtomicU32,
    /// An approval waits in the queue.
    approval_queued: std::sync::atomic::AtomicBool,
}

/// The session's cost limit, which a writer may raise up to the operator's cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostLimit {
    pub limit_usd: f64,
    pub cap_usd: f64,
}

impl Shared {
    /// State of session `session_id`, whose control API accepts `token` only.
    pub fn new(session_id: SessionId, mode: Mode, token: SecretString) -> Arc<Self> {
        let (stop, _) = watch::channel(None);
        let (cancel, _) = watch::channel(false);
        Arc::new(Self {
            session_id,
            mode,
            token,
            started: Instant::now(),
            queue: Mutex::new(VecDeque::new()),
            queued: Notify::new(),
            stop,
            cancel,
            refresh: Mutex::new(None),
            checks: Mutex::new(None),
            status: Mutex::new(json!({})),
            acks: Mutex::new(None),
            covered: Mutex::new(std::collections::HashSet::new()),
            last_failed: Mutex::new(None),
            cost: Mutex::new(CostLimit {
                limit_usd: f64::INFINITY,
                cap_usd: f64::INFINITY,
            }),
            planning: std::sync::atomic::AtomicBool::new(false),
            plans_posted: std::sync::atomic::AtomicU32::new(0),
            approval_queued: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A plan run posted its plan.
    pub fn plan_posted(&self) {
        self.plans_posted
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Takes a queued approval out of the queue's count; whether it is of the newest plan.
    pub fn take_approval(&self, seen: u32) -> bool {
        self.approval_queued
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.plans_posted.load(std::sync::atomic::Ordering::SeqCst) == seen
    }

    /// Whether the session's runs plan (until a writer approves).
    pub fn planning(&self) -> bool {
        self.planning.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes the session's runs plan, or implement.
    pub fn set_planning(&self, planning: bool) {
        self.planning
            .store(planning, std::sync::atomic::Ordering::SeqCst);
    }

    /// The session's cost limit (`MAX_COST_PER_SESSION_USD`) and how far it may be raised
    /// (`MAX_COST_PER_SESSION_CAP_USD`).
    pub fn set_cost_limit(&self, limit_usd: f64, cap_usd: f64) {
        *self.cost.lock().unwrap_or_else(PoisonError::into_inner) = CostLimit {
            limit_usd,
            cap_usd: cap_usd.max(limit_usd),
        };
    }

    /// The session's cost limit now.
    pub fn cost_limit(&self) -> CostLimit {
        *self.cost.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Raises the cost limit by `add_usd`; refused, with why, past the cap.
    pub fn raise_cost_limit(&self, add_usd: f64) -> Result<f64, String> {
        let mut cost = self.cost.lock().unwrap_or_else(PoisonError::into_inner);
        let wanted = cost.limit_usd + add_usd;
        if !(add_usd.is_finite() && add_usd > 0.0) {
            return Err("the raise must be a positive number of dollars".into());
        }
        if wanted > cost.cap_usd + 1e-9 {
            return Err(format!(
                "${wanted:.2} would be over the cap of ${:.2} (MAX_COST_PER_SESSION_CAP_USD); the limit stays ${:.2}",
                cost.cap_usd, cost.limit_usd
            ));
        }
        cost.limit_usd = wanted;
        Ok(wanted)
    }

    /// Remembers the prompt of a run that failed (`None`: the last run succeeded).
    pub fn set_last_failed(&self, prompt: Option<Prompt>) {
        *self
            .last_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = prompt;
    }

    /// Whether review comments `ids` were all carried by an earlier prompt; if not, they are
    /// from now on. A prompt carrying none is always new.
    fn already_covered(&self, ids: &[u64]) -> bool {
        let mut covered = self.covered.lock().unwrap_or_else(PoisonError::into_inner);
        if !ids.is_empty() && ids.iter().all(|id| covered.contains(id)) {
            return true;
        }
        covered.extend(ids.iter().copied());
        false
    }

    /// Queues a prompt; returns its position (1 = next).
    pub fn enqueue(&self, prompt: Prompt) -> usize {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        q.push_back(prompt);
        let n = q.len();
        drop(q);
        self.queued.notify_one();
        n
    }

    /// The next prompt, waiting for one.
    pub async fn next_prompt(&self) -> Prompt {
        loop {
            let notified = self.queued.notified();
            if let Some(p) = self
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front()
            {
                return p;
            }
            notified.await;
        }
    }

    pub fn queue_len(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Asks the session to stop; the first request wins.
    pub fn request_stop(&self, req: StopRequest) {
        let first = self.stop.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some(req);
                true
            } else {
                false
            }
        });
        if first {
            self.cancel.send_replace(true);
        }
    }

    pub fn stop_requested(&self) -> Option<StopRequest> {
        self.stop.borrow().clone()
    }

    /// Completes when a stop has been requested.
    pub async fn stopped(&self) -> StopRequest {
        let mut rx = self.stop.subscribe();
        loop {
            if let Some(req) = rx.borrow_and_update().clone() {
                return req;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as `self`; this cannot happen while we are here.
                std::future::pending::<()>().await;
            }
        }
    }

    /// A receiver that turns true when a stop is requested (to cancel a run).
    pub fn cancel_signal(&self) -> watch::Receiver<bool> {
        self.cancel.subscribe()
    }

    /// Where refresh requests go (previews).
    pub fn refreshes(&self) -> mpsc::UnboundedReceiver<Refresh> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.refresh.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        rx
    }

    /// Where reports of checks go (coding sessions).
    pub fn checks(&self) -> mpsc::UnboundedReceiver<Checks> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.checks.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        rx
    }

    /// Where comment ids to acknowledge go.
    pub fn acks(&self) -> mpsc::UnboundedReceiver<u64> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.acks.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        rx
    }

    /// Replaces what `GET /status` reports (the runtime fields are added on the way out).
    pub fn set_status(&self, status: Value) {
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = status;
    }

    fn status_json(&self) -> Value {
        let mut v = self
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if !v.is_object() {
            v = json!({});
        }
        v["session_id"] = self.session_id.as_str().into();
        v["mode"] = match self.mode {
            Mode::Agent => "agent",
            Mode::Preview => "preview",
        }
        .into();
        v["uptime_seconds"] = self.started.elapsed().as_secs().into();
        v["queue_size"] = self.queue_len().into();
        v["stopping"] = self.stop_requested().is_some().into();
        v
    }
}

/// The control API's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    let authed = Router::new()
        .route("/prompt", post(prompt))
        .route("/status", get(status))
        .route("/stop", post(stop))
        .route("/refresh", post(refresh))
        .route("/checks", post(checks))
        .route("/retry", post(retry))
        .route("/budget", post(budget))
        .route("/approve", post(approve))
        .route_layer(middleware::from_fn_with_state(shared.clone(), authenticate));
    Router::new()
        .route("/health", get(health))
        .merge(authed)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn authenticate(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token)
            if bool::from(subtle::ConstantTimeEq::ct_eq(
                token.as_bytes(),
                s.token.expose_secret().as_bytes(),
            )) =>
        {
            next.run(req).await
        }
        _ => {
            tracing::warn!(path = %req.uri().path(), "control request without a valid token refused");
            let mut resp = error(StatusCode::UNAUTHORIZED, "missing or invalid control token");
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            resp
        }
    }
}

async fn health(State(s): State<Arc<Shared>>) -> Response {
    Json(json!({ "status": "healthy", "uptime_seconds": s.started.elapsed().as_secs() }))
        .into_response()
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    Json(s.status_json()).into_response()
}

#[derive(Deserialize)]
struct PromptBody {
    prompt: String,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    comment_id: Option<u64>,
    #[serde(default)]
    review_threads: Vec<Thread>,
    /// The review comments the prompt carries.
    #[serde(default)]
    review_comments: Vec<u64>,
}

async fn prompt(
    State(s): State<Arc<Shared>>,
    body: Result<Json<PromptBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected JSON {prompt, author?, comment_id?}",
        );
    };
    if s.mode == Mode::Preview {
        return error(
            StatusCode::CONFLICT,
            "this session is a preview; it takes no prompts",
        );
    }
    if s.stop_requested().is_some() {
        return error(StatusCode::CONFLICT, "the session is stopping");
    }
    if body.prompt.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "the prompt is empty");
    }
    let mut threads = body.review_threads;
    threads.truncate(MAX_THREADS);
    if s.already_covered(&body.review_comments) {
        return (
            StatusCode::OK,
            Json(json!({ "message": "An earlier prompt carried these review comments" })),
        )
            .into_response();
    }
    let comment_id = body.comment_id;
    let position = s.enqueue(Prompt {
        text: body.prompt,
        author: body.author.filter(|a| !a.is_empty()),
        comment_id,
        threads,
        fix: None,
        approval: None,
    });
    acknowledge(&s, comment_id);
    (
        StatusCode::ACCEPTED,
        Json(json!({ "message": "Prompt queued for processing", "queue_position": position })),
    )
        .into_response()
}

#[derive(Deserialize, Default)]
struct StopBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    final_status: Option<String>,
}

async fn stop(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let body: StopBody = if body.is_empty() {
        StopBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
        }
    };
    let final_status = match body.final_status.as_deref() {
        None | Some("STOPPED") => Status::Stopped,
        Some("COMPLETED") => Status::Completed,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("final_status {other:?} is neither STOPPED nor COMPLETED"),
            );
        }
    };
    s.request_stop(StopRequest {
        reason: body.reason.unwrap_or_else(|| "stop requested".into()),
        final_status,
    });
    (StatusCode::ACCEPTED, Json(json!({ "message": "stopping" }))).into_response()
}

#[derive(Deserialize, Default)]
struct RefreshBody {
    #[serde(default)]
    head_sha: Option<String>,
}

#[derive(Deserialize, Default)]
struct CommandBody {
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    comment_id: Option<u64>,
    #[serde(default)]
    add_usd: Option<f64>,
}

/// Has the reporter react to the comment that asked (a prompt's or a command's).
fn acknowledge(s: &Shared, comment_id: Option<u64>) {
    if let Some(id) = comment_id {
        if let Some(tx) = s
            .acks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = tx.send(id);
        }
    }
}

/// The refusal of work a preview (`preview` says why) or a stopping session does not take.
fn refuses_work(s: &Shared, preview: &str) -> Option<Response> {
    if s.mode == Mode::Preview {
        return Some(error(StatusCode::CONFLICT, preview));
    }
    s.stop_requested()
        .map(|_| error(StatusCode::CONFLICT, "the session is stopping"))
}

/// `/claude retry`: the last failed run's prompt queued again.
async fn retry(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let body: CommandBody = serde_json::from_slice(&body).unwrap_or_default();
    if let Some(refused) = refuses_work(&s, "this session is a preview; it runs nothing") {
        return refused;
    }
    let failed = s
        .last_failed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let Some(mut prompt) = failed else {
        return error(
            StatusCode::CONFLICT,
            "the last run did not fail: nothing to retry",
        );
    };
    prompt.author = body.author.filter(|a| !a.is_empty()).or(prompt.author);
    prompt.comment_id = body.comment_id;
    // A writer asked for it: it runs whatever the fixing of checks now says.
    prompt.fix = None;
    let position = s.enqueue(prompt);
    acknowledge(&s, body.comment_id);
    (
        StatusCode::ACCEPTED,
        Json(json!({ "message": "The failed run is queued again", "queue_position": position })),
    )
        .into_response()
}

/// `/claude approve`: the plan is implemented by the next run, in the same conversation; the
/// session plans no more.
async fn approve(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let body: CommandBody = serde_json::from_slice(&body).unwrap_or_default();
    if let Some(refused) = refuses_work(&s, "this session is a preview; it has no plan") {
        return refused;
    }
    let Some(author) = body.author.filter(|a| !a.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected JSON {author, comment_id?}: an approval names who approved",
        );
    };
    use std::sync::atomic::Ordering::SeqCst;
    if !s.planning() {
        return error(
            StatusCode::CONFLICT,
            "no plan is waiting for approval: the session implements already",
        );
    }
    let seen = s.plans_posted.load(SeqCst);
    if seen == 0 {
        return error(
            StatusCode::CONFLICT,
            "no plan has been posted yet: approve it once it is",
        );
    }
    if s.approval_queued.swap(true, SeqCst) {
        return error(StatusCode::CONFLICT, "an approval is queued already");
    }
    // Planning ends when the approval's turn comes: prompts queued before it still revise the
    // plan, and a plan posted meanwhile is not the one approved.
    let position = s.enqueue(Prompt {
        text: cca_domain::texts::approved_prompt(&author),
        author: Some(author),
        comment_id: body.comment_id,
        threads: Vec::new(),
        fix: None,
        approval: Some(seen),
    });
    acknowledge(&s, body.comment_id);
    (
        StatusCode::ACCEPTED,
        Json(json!({ "message": "The plan is approved; implementing it", "queue_position": position })),
    )
        .into_response()
}

/// `/claude budget +N`: the session's cost limit raised, up to the cap.
async fn budget(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let body: CommandBody = serde_json::from_slice(&body).unwrap_or_default();
    if s.mode == Mode::Preview {
        return error(
            StatusCode::CONFLICT,
            "this session is a preview; it spends nothing",
        );
    }
    let Some(add) = body.add_usd else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected JSON {add_usd, author?, comment_id?}",
        );
    };
    match s.raise_cost_limit(add) {
        Ok(limit) => {
            acknowledge(&s, body.comment_id);
            (
                StatusCode::ACCEPTED,
                Json(json!({ "message": "The cost limit is raised", "cost_limit_usd": limit })),
            )
                .into_response()
        }
        Err(why) => error(StatusCode::CONFLICT, &why),
    }
}

async fn checks(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let Ok(report) = serde_json::from_slice::<Checks>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected JSON {head_sha, passed, checks?, prompt?}",
        );
    };
    if !report.passed && report.prompt.as_deref().is_none_or(|p| p.trim().is_empty()) {
        return error(StatusCode::BAD_REQUEST, "failed checks need a prompt");
    }
    let tx = s
        .checks
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    match (s.mode, tx) {
        (Mode::Agent, Some(tx)) if tx.send(report).is_ok() => (
            StatusCode::ACCEPTED,
            Json(json!({ "message": "checks noted" })),
        )
            .into_response(),
        (Mode::Agent, _) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the session is not ready for checks yet",
        ),
        (Mode::Preview, _) => error(
            StatusCode::CONFLICT,
            "this session is a preview; it fixes nothing",
        ),
    }
}

async fn refresh(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let body: RefreshBody = serde_json::from_slice(&body).unwrap_or_default();
    let tx = s
        .refresh
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    match (s.mode, tx) {
        (Mode::Preview, Some(tx))
            if tx
                .send(Refresh {
                    head_sha: body.head_sha,
                })
                .is_ok() =>
        {
            (
                StatusCode::ACCEPTED,
                Json(json!({ "message": "refreshing" })),
            )
                .into_response()
        }
        (Mode::Preview, _) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the preview is not ready to refresh yet",
        ),
        (Mode::Agent, _) => error(
            StatusCode::CONFLICT,
            "this session is a coding session; its branch changes through its own commits",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use cca_domain::control::control_token;
    use tower::ServiceExt;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn shared(mode: Mode) -> Arc<Shared> {
        let id = SessionId::parse("abcdefgh12345678").unwrap();
        let token = control_token(KEY.as_bytes(), &id);
        Shared::new(id, mode, SecretString::from(token))
    }

    async fn call(
        s: &Arc<Shared>,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        req = req.header("content-type", "application/json");
        let resp = router(s.clone())
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn every_route_but_health_needs_the_sessions_token() {
        let s = shared(Mode::Agent);
        let good = control_token(KEY.as_bytes(), &s.session_id);
        let other = control_token(
            KEY.as_bytes(),
            &SessionId::parse("zzzzzzzz12345678").unwrap(),
        );
        for (method, path) in [
            ("POST", "/prompt"),
            ("GET", "/status"),
            ("POST", "/stop"),
            ("POST", "/refresh"),
        ] {
            for token in [None, Some("wrong"), Some(other.as_str()), Some("")] {
                let (status, _) = call(&s, method, path, token, r#"{"prompt":"x"}"#).await;
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} {token:?}"
                );
            }
        }
        assert_eq!(s.queue_len(), 0);
        assert!(s.stop_requested().is_none());
        let (status, _) = call(&s, "GET", "/health", None, "").await;
        assert_eq!(status, StatusCode::OK);
        let (status, v) = call(&s, "GET", "/status", Some(&good), "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["session_id"], "abcdefgh12345678");
    }

    #[tokio::test]
    async fn prompts_queue_in_order_and_stop_takes_the_first_request() {
        let s = shared(Mode::Agent);
        let t = control_token(KEY.as_bytes(), &s.session_id);
        let (status, v) = call(
            &s,
            "POST",
            "/prompt",
            Some(&t),
            r#"{"prompt":"one","author":"a","comment_id":7}"#,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(v["queue_position"], 1);
        let (_, v) = call(&s, "POST", "/prompt", Some(&t), r#"{"prompt":"two"}"#).await;
        assert_eq!(v["queue_position"], 2);
        assert_eq!(
            call(&s, "POST", "/prompt", Some(&t), r#"{"prompt":"  "}"#)
                .await
                .0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            call(&s, "POST", "/prompt", Some(&t), "nope").await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(s.next_prompt().await.text, "one");
        assert_eq!(s.next_prompt().await.text, "two");

        let (status, _) = call(
            &s,
            "POST",
            "/stop",
            Some(&t),
            r#"{"reason":"PR merged","final_status":"COMPLETED"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        call(&s, "POST", "/stop", Some(&t), "").await;
        assert_eq!(
            s.stop_requested(),
            Some(StopRequest {
                reason: "PR merged".into(),
                final_status: Status::Completed
            })
        );
        assert_eq!(
            call(&s, "POST", "/prompt", Some(&t), r#"{"prompt":"late"}"#)
                .await
                .0,
            StatusCode::CONFLICT
        );
        assert_eq!(
            call(
                &s,
                "POST",
                "/stop",
                Some(&t),
                r#"{"final_status":"FAILED"}"#
            )
            .await
            .0,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn refresh_is_for_previews_and_prompts_are_for_agents() {
        let p = shared(Mode::Preview);
        let t = control_token(KEY.as_bytes(), &p.session_id);
        assert_eq!(
            call(&p, "POST", "/prompt", Some(&t), r#"{"prompt":"x"}"#)
                .await
                .0,
            StatusCode::CONFLICT
        );
        assert_eq!(
            call(&p, "POST", "/refresh", Some(&t), "{}").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let mut rx = p.refreshes();
        assert_eq!(
            call(&p, "POST", "/refresh", Some(&t), r#"{"head_sha":"abc"}"#)
                .await
                .0,
            StatusCode::ACCEPTED
        );
        assert_eq!(rx.recv().await.unwrap().head_sha.as_deref(), Some("abc"));
        let a = shared(Mode::Agent);
        let t = control_token(KEY.as_bytes(), &a.session_id);
        assert_eq!(
            call(&a, "POST", "/refresh", Some(&t), "{}").await.0,
            StatusCode::CONFLICT
        );
    }
}
