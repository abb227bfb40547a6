//! Client of an agent's control API (`/prompt`, `/stop`, `/refresh`), authenticated with the
//! session's derived token.

use std::time::Duration;

use cca_domain::Session;
use cca_domain::control::control_token;
use secrecy::{ExposeSecret, SecretString};

/// A control API call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the agent has not reported its address yet")]
    NoAddress,
    #[error("the agent answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the agent could not be reached: {0}")]
    Unreachable(String),
}

/// Calls agents' control APIs.
#[derive(Clone)]
pub struct ControlClient {
    key: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient").finish_non_exhaustive()
    }
}

impl ControlClient {
    /// A client deriving tokens from `key`, each call bounded by `timeout`.
    pub fn new(key: SecretString, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .build()
            .unwrap_or_default();
        Self { key, http }
    }

    /// The token of a session's control API.
    pub fn token(&self, session: &Session) -> String {
        control_token(self.key.expose_secret().as_bytes(), &session.session_id)
    }

    /// `POST http://<container_ip>:<control_port><path>` with a JSON body.
    pub async fn post(
        &self,
        session: &Session,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(), ControlError> {
        let (Some(ip), Some(port)) = (&session.container_ip, session.control_port) else {
            return Err(ControlError::NoAddress);
        };
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.clone()
        };
        let resp = self
            .http
            .post(format!("http://{host}:{port}{path}"))
            .bearer_auth(self.token(session))
            .json(body)
            .send()
            .await
            .map_err(|e| ControlError::Unreachable(e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            let body: String = resp
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            Err(ControlError::Status {
                status: status.as_u16(),
                body,
            })
        }
    }
}
