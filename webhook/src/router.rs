//! The HTTP surface, identical in Lambda and `serve` modes: `POST /webhook` (GitHub or JIRA, told
//! apart by headers), `POST /webhooks/github`, `POST /webhooks/jira`, `GET /health`, and
//! `POST /agent/token`, where agents get their repository's installation token, and
//! `POST /agent/conversation`, where they get the URLs of their kept conversation.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

use crate::app::App;
use crate::intake;
use crate::reply::Reply;

/// Largest body accepted: GitHub caps webhook payloads at 25 MB.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// The router over the shared dependencies.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/webhook", post(any_source))
        .route("/webhooks/github", post(github))
        .route("/webhooks/jira", post(jira))
        .route("/health", get(health))
        .route(cca_github::TOKEN_ROUTE, post(agent_token))
        .route(CONVERSATION_ROUTE, post(agent_conversation))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

async fn agent_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match read(body).await {
        Ok(bytes) => crate::tokens::issue(&app, &headers, &bytes).await,
        Err(r) => r.into_response(),
    }
}

/// Where agents ask for their conversation's URLs (`cca_agent::conversation` asks here).
pub const CONVERSATION_ROUTE: &str = "/agent/conversation";

async fn agent_conversation(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match read(body).await {
        Ok(bytes) => crate::conversation::presign(&app, &headers, &bytes).await,
        Err(r) => r.into_response(),
    }
}

async fn health() -> Reply {
    Reply::ok("ok")
}

async fn not_found() -> Reply {
    Reply::error(StatusCode::NOT_FOUND, "no such route")
}

async fn method_not_allowed() -> Reply {
    Reply::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}

async fn read(body: Body) -> Result<Bytes, Reply> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            Reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {MAX_BODY_BYTES} bytes or unreadable"),
            )
        })
}

async fn any_source(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Reply {
    let bytes = match read(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    // As the original: a JIRA delivery carries its own identifier header.
    if headers.contains_key("x-atlassian-webhook-identifier") {
        intake::jira(&app, &headers, &bytes).await
    } else {
        intake::github(&app, &headers, &bytes).await
    }
}

async fn github(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Reply {
    match read(body).await {
        Ok(bytes) => intake::github(&app, &headers, &bytes).await,
        Err(r) => r,
    }
}

async fn jira(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Reply {
    match read(body).await {
        Ok(bytes) => intake::jira(&app, &headers, &bytes).await,
        Err(r) => r,
    }
}
