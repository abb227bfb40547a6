//! The settings the binaries share, declared once: where the sessions are ([`StoreArgs`]), the
//! GitHub identity ([`GitHubArgs`]), JIRA ([`JiraArgs`]), the control key ([`ControlArgs`]) and
//! the ECS tasks of sessions ([`TaskArgs`]). Each is a clap argument group a binary flattens into its own, with the
//! validation that names the variable at fault and the code that turns it into a client, so
//! the webhook, the agent, the proxy and the operator commands read every variable alike.
//! [`Aws`] loads the SDK's configuration once, when something first needs it, and
//! [`init_logging`] is every binary's logger.

mod aws;
mod control;
mod github;
mod jira;
mod logging;
mod store;
mod tasks;

pub use aws::Aws;
pub use cca_domain::config::ConfigError;
pub use cca_secrets::ControlSource;
pub use cca_store::StoreSpec;
pub use control::{ControlArgs, control_key};
pub use github::{
    DEFAULT_GITHUB_API_URL, GitHubApiArgs, GitHubArgs, GitHubCredentials, GitHubSource,
};
pub use jira::{JiraArgs, JiraCredentials, JiraSource};
pub use logging::{DEFAULT_FILTER, init_logging};
pub use store::{StoreArgs, open_store};
pub use tasks::TaskArgs;

/// The value, trimmed, unless it is absent or blank (an empty variable counts as unset).
fn set(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Refuses a URL that is not http(s), naming `var`.
fn http_url(var: &'static str, url: String) -> Result<String, ConfigError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(url)
    } else {
        Err(ConfigError::Invalid {
            var,
            reason: format!("{url:?} is not an http(s) URL"),
        })
    }
}
