//! Stand-in for an agent container's control API (`/prompt`, `/stop`, `/refresh`, `/checks`,
//! `/retry`, `/budget`, `/status`).
//!
//! The webhook forwards follow-ups and stop requests to a running agent; this fake lets tests
//! check what was sent, with which credential, without starting an agent. It checks the
//! per-session bearer token like the real agent, so a caller that derives the wrong token is
//! caught.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{Value, json};

/// One request as the fake agent received it, whatever it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    /// JSON body; `Null` when empty, a string when it was not JSON.
    pub body: Value,
}

/// Handle on a running fake agent control API; clones share the same state.
#[derive(Debug, Clone)]
pub struct FakeAgent {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    token: Option<String>,
    status: String,
    requests: Vec<Recorded>,
}

impl FakeAgent {
    /// Binds `127.0.0.1` on a free port; with `Some(token)`, every call must carry
    /// `Authorization: Bearer <token>`.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start(expected_bearer_token: Option<String>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port for the fake agent");
        let addr = listener
            .local_addr()
            .expect("local address of the fake agent");
        let fake = FakeAgent {
            addr,
            state: Arc::new(Mutex::new(State {
                token: expected_bearer_token,
                status: "RUNNING".to_owned(),
                requests: Vec::new(),
            })),
        };
        let app = Router::new()
            .fallback(serve_request)
            .with_state(fake.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "fake agent stopped");
            }
        });
        fake
    }

    /// Address the control API listens on (what a session record's ip and control port name).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the expected bearer token (`None`: accept any caller).
    pub fn set_token(&self, token: Option<String>) {
        self.state().token = token;
    }

    /// Changes what `GET /status` reports (`RUNNING` at start).
    pub fn set_status(&self, status: &str) {
        status.clone_into(&mut self.state().status);
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }
}

async fn serve_request(
    Shared(fake): Shared<FakeAgent>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    let mut state = fake.state();
    state.requests.push(Recorded {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        authorization: authorization.clone(),
        body,
    });
    if let Some(token) = &state.token {
        let presented = authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "));
        if presented != Some(token.as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "error": "unauthorized" })),
            )
                .into_response();
        }
    }
    let answer = match (method.as_str(), uri.path()) {
        ("POST", "/prompt") => {
            json!({ "message": "Prompt queued for processing", "queue_position": 1 })
        }
        ("POST", "/stop") => json!({ "message": "stopping" }),
        ("POST", "/refresh") => json!({ "message": "refreshing" }),
        ("POST", "/checks") => json!({ "message": "checks noted" }),
        ("POST", "/retry") => json!({ "message": "The failed run is queued again" }),
        ("POST", "/budget") => json!({ "message": "The cost limit is raised" }),
        ("GET", "/status") => json!({ "status": state.status }),
        _ => return (StatusCode::NOT_FOUND, Json(json!({ "error": "not found" }))).into_response(),
    };
    (StatusCode::OK, Json(answer)).into_response()
}
