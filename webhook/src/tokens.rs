//! The token broker: agents hold no GitHub App key, they ask here.
//!
//! `POST /agent/token` with `{"session_id": …}` and `Authorization: Bearer <session token>`
//! (the session's control token, which the launcher gives each task and only the webhook can
//! derive) answers an installation token limited to the session's repository and to the
//! permissions the agent uses ([`cca_github::agent_permissions`]), and how long it lives. A
//! wrong or missing token, another session's token, an unknown or ended session, and a record
//! whose address the webhook would not call are refused before GitHub is asked; each refusal
//! is logged with its reason, never with the token.

use std::time::SystemTime;

use axum::http::{HeaderMap, StatusCode, header};
use cca_domain::SessionId;
use cca_github::BrokeredToken;
use secrecy::ExposeSecret;
use serde::Deserialize;
use tracing::{Instrument as _, Span, error_span, field, info, warn};

use crate::app::App;
use crate::reply::Reply;

#[derive(Deserialize)]
struct TokenRequest {
    session_id: String,
}

fn refuse(status: StatusCode, why: &str) -> Reply {
    warn!(reason = why, "agent request refused");
    Reply::error(status, why.to_owned())
}

/// The session token a request presents (checked before its body is read).
pub(crate) fn bearer(headers: &HeaderMap) -> Result<&str, Reply> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "no session token"))
}

/// The live session `session_id` whose token the request presents, or the refusal: a wrong or
/// missing token, another session's token, an unknown or ended session, a record whose address
/// the webhook would not call. Shared by every route agents call with their session's token.
pub(crate) async fn authenticate(
    app: &App,
    presented: &str,
    session_id: &str,
) -> Result<cca_domain::Session, Reply> {
    let id = SessionId::parse(session_id)
        .map_err(|_| refuse(StatusCode::BAD_REQUEST, "not a session id"))?;
    Span::current().record("session", id.as_str());
    if !app.control.is_token_of(&id, presented) {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "the token is not this session's",
        ));
    }
    let session = app
        .store
        .get(&id)
        .await
        .map_err(|e| {
            warn!(error = %e, "agent request: the store failed");
            Reply::error(StatusCode::BAD_GATEWAY, "the session store failed")
        })?
        .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "no such session"))?;
    if session.status.is_terminal() {
        return Err(refuse(StatusCode::FORBIDDEN, "the session has ended"));
    }
    if let Some(why) = app.control.address_refusal(&session) {
        warn!(reason = %why, "agent request refused: the recorded address is not allowed");
        return Err(Reply::error(
            StatusCode::FORBIDDEN,
            "the session's recorded address is not allowed",
        ));
    }
    Ok(session)
}

/// Answers one token request (see the module documentation).
pub async fn issue(app: &App, headers: &HeaderMap, body: &[u8]) -> axum::response::Response {
    use axum::response::IntoResponse;
    let span = error_span!("token request", session = field::Empty);
    match decide(app, headers, body).instrument(span).await {
        Ok(token) => (StatusCode::OK, axum::Json(token)).into_response(),
        Err(reply) => reply.into_response(),
    }
}

async fn decide(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<BrokeredToken, Reply> {
    let presented = bearer(headers)?;
    let req: TokenRequest = serde_json::from_slice(body).map_err(|_| {
        refuse(
            StatusCode::BAD_REQUEST,
            "the body is not {\"session_id\": …}",
        )
    })?;
    let session = authenticate(app, presented, &req.session_id).await?;
    let installation = session
        .installation_id
        .or(app.github.default_installation())
        .unwrap_or(0);
    let token = app
        .github
        .installation_token(installation, Some(&session.repo_full_name))
        .await
        .map_err(|e| {
            warn!(error = %e, "token request: GitHub did not mint a token");
            Reply::error(StatusCode::BAD_GATEWAY, "GitHub did not mint a token")
        })?;
    let expires_in_secs = token
        .expires_at
        .duration_since(SystemTime::now())
        .map_or(0, |d| d.as_secs());
    info!(repo = %session.repo_full_name, expires_in_secs, "token issued to the agent");
    Ok(BrokeredToken {
        token: token.token.expose_secret().to_owned(),
        expires_in_secs,
    })
}
