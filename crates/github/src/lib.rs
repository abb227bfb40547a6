//! GitHub adapter: App authentication and the REST calls the system makes, through octocrab.
//!
//! Every call goes to the configured API URL (`GITHUB_API_URL`: github.com, GitHub Enterprise or
//! a test server), so nothing here special-cases an environment. Two ways to authenticate:
//! a GitHub App (RS256 JWT → installation tokens, cached until shortly before they expire) or a
//! personal token for local use.

mod app;
mod client;
mod rate;

pub use app::{
    AppCredentials, BrokeredToken, GitHub, GitHubAuth, InstallationToken, TOKEN_ROUTE,
    agent_permissions,
};
pub use client::{
    IssueInfo, Permission, PullHead, PullInfo, PullRef, READY_NOT_DRAFT_NOTE, RepoClient, RepoInfo,
};
pub use rate::DEFAULT_PATIENCE;

/// A failure talking to GitHub.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// The App key or token could not be used.
    #[error("GitHub authentication failed: {0}")]
    Auth(String),
    /// GitHub answered with an error status.
    #[error("GitHub API {route} answered {status}: {message}")]
    Api {
        route: String,
        status: u16,
        message: String,
    },
    /// GitHub's rate limit asked for a longer wait than the caller has (403 or 429 with
    /// `retry-after`, `x-ratelimit-reset` or a secondary-limit message).
    #[error("GitHub API {route} is rate-limited ({status}, try again in {} s): {message}", wait.as_secs())]
    RateLimited {
        route: String,
        status: u16,
        wait: std::time::Duration,
        message: String,
    },
    /// The request did not complete (network, time-out, an answer that did not parse).
    #[error("GitHub request {route} failed: {message}")]
    Transport { route: String, message: String },
}

impl GitHubError {
    /// The HTTP status GitHub answered with, if it answered with a refusal (a rate limit's 403
    /// is [`GitHubError::RateLimited`], not a refusal, and has none here).
    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether retrying later may succeed (GitHub or the network failed, not the request).
    pub fn is_transient(&self) -> bool {
        match self {
            GitHubError::Api { status, .. } => *status >= 500 || *status == 429,
            GitHubError::Transport { .. } | GitHubError::RateLimited { .. } => true,
            GitHubError::Auth(_) => false,
        }
    }

    pub(crate) fn from_octocrab(route: &str, e: octocrab::Error) -> Self {
        match e {
            octocrab::Error::GitHub { source, .. } => {
                // A 422's reason is in `errors[].message` ("Validation Failed" says nothing).
                let mut message = source.message.clone();
                for e in source.errors.iter().flatten() {
                    if let Some(m) = e.get("message").and_then(|m| m.as_str()) {
                        message.push_str(": ");
                        message.push_str(m);
                    }
                }
                GitHubError::Api {
                    route: route.to_owned(),
                    status: source.status_code.as_u16(),
                    message,
                }
            }
            other => GitHubError::Transport {
                route: route.to_owned(),
                message: other.to_string(),
            },
        }
    }
}
