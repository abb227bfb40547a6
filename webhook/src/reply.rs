//! The webhook's answers: a status and a small JSON body with a reason.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

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

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}
