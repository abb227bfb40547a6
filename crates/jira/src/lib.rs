//! JIRA adapter: the REST calls the system makes (JIRA Cloud API v3, Basic auth with an API
//! token) and the ADF documents it posts.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// Bound on one JIRA call; JIRA is only told about progress, so a slow JIRA must not hold up the
/// webhook's answer to GitHub.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A failure talking to JIRA.
#[derive(Debug, thiserror::Error)]
pub enum JiraError {
    #[error("JIRA {route} answered {status}: {body}")]
    Api {
        route: String,
        status: u16,
        body: String,
    },
    #[error("JIRA request {route} failed: {message}")]
    Transport { route: String, message: String },
}

/// Where a person reads issue `key` of the site at `base_url` (no trailing `/`).
pub fn browse_url(base_url: &str, key: &str) -> String {
    format!("{base_url}/browse/{key}")
}

/// A JIRA site client.
#[derive(Clone)]
pub struct Jira {
    base_url: String,
    email: String,
    token: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for Jira {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jira")
            .field("base_url", &self.base_url)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl Jira {
    /// A client for the site at `base_url` (e.g. `https://example.atlassian.net`).
    pub fn new(base_url: &str, email: &str, token: SecretString) -> Result<Self, JiraError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| JiraError::Transport {
                route: String::new(),
                message: e.to_string(),
            })?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            email: email.to_owned(),
            token,
            http,
        })
    }

    /// The page of an issue, for links.
    pub fn browse_url(&self, key: &str) -> String {
        browse_url(&self.base_url, key)
    }

    /// The site's address, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Adds a comment (an ADF document) to an issue.
    pub async fn comment(&self, key: &str, body: Value) -> Result<(), JiraError> {
        let route = format!("/rest/api/3/issue/{key}/comment");
        let resp = self
            .http
            .post(format!("{}{route}", self.base_url))
            .basic_auth(&self.email, Some(self.token.expose_secret()))
            .json(&json!({ "body": body }))
            .send()
            .await
            .map_err(|e| JiraError::Transport {
                route: route.clone(),
                message: e.to_string(),
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body: String = resp
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(500)
            .collect();
        Err(JiraError::Api {
            route,
            status: status.as_u16(),
            body,
        })
    }
}
