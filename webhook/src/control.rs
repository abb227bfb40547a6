//! Client of an agent's control API (`/prompt`, `/stop`, `/refresh`), authenticated with the
//! session's derived token.
//!
//! Where an agent listens is read from its session record, which the agent container writes, so
//! the address is checked against [`Guard`] (the policy the preview proxy applies too) before any
//! request is made: the token never goes to the metadata service, the internet or any other place
//! a record was made to point at.

use std::time::Duration;

use cca_domain::Session;
use cca_domain::address::{Guard, Refusal};
use cca_domain::control::control_token;
use secrecy::{ExposeSecret, SecretString};

/// A control API call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the agent has not reported its address yet")]
    NoAddress,
    /// The recorded address is not one the webhook may call; nothing was sent.
    #[error("the agent's recorded address is refused: {0}")]
    Refused(Refusal),
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
    agents: Guard,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient")
            .field("agents", &self.agents.to_string())
            .finish_non_exhaustive()
    }
}

impl ControlClient {
    /// A client deriving tokens from `key`, calling only addresses `agents` allows, each call
    /// bounded by `timeout`.
    pub fn new(key: SecretString, timeout: Duration, agents: Guard) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .build()
            .unwrap_or_default();
        Self { key, http, agents }
    }

    /// Whether `presented` is the token of session `id` (constant time).
    pub fn is_token_of(&self, id: &cca_domain::SessionId, presented: &str) -> bool {
        let expected = control_token(self.key.expose_secret().as_bytes(), id);
        subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), presented.as_bytes()).into()
    }

    /// Whether the webhook may talk to the address a record holds (the token broker hands
    /// tokens only to agents the webhook could call).
    pub fn address_refusal(&self, session: &Session) -> Option<String> {
        let Some(ip) = &session.container_ip else {
            return Some("the agent has not reported its address yet".into());
        };
        let port = session.control_port.unwrap_or(0);
        self.agents.check(ip, port).err().map(|r| r.to_string())
    }

    /// The token of a session's control API.
    pub fn token(&self, session: &Session) -> String {
        control_token(self.key.expose_secret().as_bytes(), &session.session_id)
    }

    /// `POST http://<container_ip>:<control_port><path>` with a JSON body, if the address is
    /// allowed.
    pub async fn post(
        &self,
        session: &Session,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(), ControlError> {
        let (Some(ip), Some(port)) = (&session.container_ip, session.control_port) else {
            return Err(ControlError::NoAddress);
        };
        let target = self.agents.check(ip, port).map_err(|refusal| {
            tracing::warn!(session = %session.session_id, %path, reason = %refusal, "control call refused: the recorded address is not allowed");
            ControlError::Refused(refusal)
        })?;
        // A socket address prints IPv6 in brackets, as a URL needs it.
        let resp = self
            .http
            .post(format!("http://{target}{path}"))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use cca_domain::{BranchName, ImageChannel, RepoName, SessionId, SessionType, Source};
    use serde_json::json;
    use tokio::net::TcpListener;

    use super::*;

    /// An HTTP server on loopback answering every request `204`, counting them.
    async fn listener() -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&received);
        let app = axum::Router::new().fallback(move || {
            let count = Arc::clone(&count);
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::NO_CONTENT
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        (port, received)
    }

    fn session_at(ip: &str, port: u16) -> Session {
        let mut s = Session::new(
            SessionId::random_agent(),
            SessionType::Agent,
            Source::Github,
            RepoName::parse("octo/app").unwrap(),
            BranchName::parse("claude/1").unwrap(),
            ImageChannel::Latest,
            0,
        );
        s.container_ip = Some(ip.to_owned());
        s.control_port = Some(port);
        s
    }

    fn client(local_mode: bool) -> ControlClient {
        ControlClient::new(
            SecretString::from("control-key-for-tests-0123456789"),
            Duration::from_secs(2),
            Guard::new(Guard::default_allowed(), local_mode),
        )
    }

    #[tokio::test]
    async fn loopback_is_called_only_in_local_mode() {
        let (port, accepted) = listener().await;
        let s = session_at("127.0.0.1", port);
        client(true).post(&s, "/stop", &json!({})).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        let refused = client(false).post(&s, "/stop", &json!({})).await;
        assert!(
            matches!(refused, Err(ControlError::Refused(Refusal::Loopback(_)))),
            "{refused:?}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "nothing more was sent");
    }

    #[tokio::test]
    async fn metadata_public_and_named_addresses_are_refused_in_any_mode() {
        for ip in [
            "169.254.170.2",
            "169.254.169.254",
            "fd00:ec2::254",
            "8.8.8.8",
            "localhost",
        ] {
            let refused = client(true)
                .post(&session_at(ip, 80), "/prompt", &json!({}))
                .await;
            assert!(
                matches!(refused, Err(ControlError::Refused(_))),
                "{ip}: {refused:?}"
            );
        }
    }
}
