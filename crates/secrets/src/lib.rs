//! Secrets of Claude Cloud Agent: their JSON shapes, parsed once, and their loading from
//! Secrets Manager.
//!
//! The shapes are those the original stored, so existing secrets keep working: the GitHub App
//! (`{app_id, private_key, webhook_secret, default_installation_id}`), JIRA (`{base_url, email,
//! api_token, webhook_secret, project_mapping}`) and the control key (a plain string). Every
//! secret value is held in a [`SecretString`], which never prints, and no error names a value:
//! errors name the secret and the field, so an operator can fix what is wrong without the
//! message leaking what is right.

mod aws;
mod control;
mod fields;
mod github;
mod jira;

pub use aws::{fetch_control, fetch_github, fetch_jira, fetch_secret_string};
pub use control::{ControlSecret, ControlSource, MIN_CONTROL_KEY_LEN, parse_control};
pub use github::{GitHubAppSecret, parse_github};
pub use jira::{JiraSecret, parse_jira};
pub use secrecy::{ExposeSecret, SecretString};

/// Why a secret could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// No secret of this name or ARN exists (or it has no current value).
    #[error("secret {0} does not exist")]
    Missing(String),
    /// The secret exists but its content is not of the expected shape.
    #[error("secret {secret} is malformed: {reason}")]
    Malformed {
        /// Name or ARN of the secret.
        secret: String,
        /// What is wrong, naming the field and never its value.
        reason: String,
    },
    /// Secrets Manager could not be reached or refused the read (access denied, KMS).
    #[error("reading a secret failed: {0}")]
    Backend(String),
}
