//! The webhook's answers: a status and a small JSON body with a reason.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cca_domain::mask::Masker;
use serde_json::{Value, json};

use crate::plan::Outcome;

/// An answer to a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    /// 200 with `{"message": …}`: handled, or deliberately not handled.
    pub fn ok(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::OK,
            body: json!({ "message": message.into() }),
        }
    }

    /// 200 with a message and more fields.
    pub fn ok_with(message: impl Into<String>, extra: Value) -> Self {
        let mut body = json!({ "message": message.into() });
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        Self {
            status: StatusCode::OK,
            body,
        }
    }

    /// An error status with `{"error": …}`.
    pub fn error(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": error.into() }),
        }
    }
}

impl Reply {
    /// The answer to a delivery that came to `outcome`, with every error masked. A dependency
    /// failure is a 502 whether or not it is transient (GitHub's delivery log shows it either
    /// way); `retry` says whether redelivering as it is may succeed.
    pub fn from_outcome(outcome: Outcome, masker: &Masker) -> Self {
        let id = |message: &str, id: cca_domain::SessionId| {
            Self::ok_with(message, json!({ "session_id": id }))
        };
        match outcome {
            Outcome::Done(message) | Outcome::Refused(message) => Self::ok(message),
            Outcome::NotInstalled {
                installation,
                error,
            } => Self::error(
                StatusCode::BAD_REQUEST,
                masker.mask(&format!(
                    "cannot act for installation {installation:?}: {error}"
                )),
            ),
            Outcome::Exists {
                id: session,
                status: None,
            } => id("Session already exists", session),
            Outcome::Exists {
                id,
                status: Some(status),
            } => Self::ok_with(
                "Session already exists",
                json!({ "session_id": id, "status": status }),
            ),
            Outcome::StillStopping { id, status } => Self::ok_with(
                STILL_STOPPING,
                json!({ "session_id": id, "status": status }),
            ),
            Outcome::Started { message, session } => Self::ok_with(
                message,
                json!({
                    "session_id": session.session_id,
                    "pr_number": session.pr_number,
                    "task_arn": session.task_arn,
                    "uat_url": session.uat_url,
                }),
            ),
            Outcome::Queued { session, place } => Self::ok_with(
                "Session queued",
                json!({
                    "session_id": session.session_id,
                    "pr_number": session.pr_number,
                    "place": place,
                }),
            ),
            Outcome::StartFailed(reason) => {
                Self::error(StatusCode::BAD_GATEWAY, masker.mask(&reason))
            }
            Outcome::Stopping(sessions) => {
                Self::ok_with("Stopping", json!({ "sessions": sessions }))
            }
            Outcome::Refreshing(session) => id("Preview refreshing", session),
            Outcome::RefreshFailed { id, error } => Self::error(
                StatusCode::BAD_GATEWAY,
                masker.mask(&format!("preview {id} could not be refreshed: {error}")),
            ),
            Outcome::Forwarded(session) => id("Prompt forwarded", session),
            Outcome::AgentUnreachable(session) => id("Agent cannot be reached", session),
            Outcome::ForwardFailed(error) => {
                Self::error(StatusCode::BAD_GATEWAY, masker.mask(&error))
            }
            Outcome::NotReady(session) => id("Agent not ready", session),
            Outcome::Labels {
                created,
                refused,
                not_done,
            } => Self::ok_with(
                "Labels ensured",
                json!({ "created": created, "refused": refused, "not_done": not_done }),
            ),
            Outcome::Failed { error, transient } => {
                let mut reply = Self::error(StatusCode::BAD_GATEWAY, masker.mask(&error));
                reply.body["retry"] = json!(transient);
                reply
            }
        }
    }
}

/// The message of a start that found its session still stopping.
pub const STILL_STOPPING: &str = "Session stopping; not started again";

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}
