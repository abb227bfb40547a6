//! The GitHub App secret (`GITHUB_APP_SECRET_ARN`).

use secrecy::{ExposeSecret, SecretString};

use crate::SecretError;
use crate::fields::Fields;

/// The GitHub App's credentials and webhook secrets.
#[derive(Debug, Clone)]
pub struct GitHubAppSecret {
    /// The App's id, which signs its JWTs.
    pub app_id: u64,
    /// The App's private key, PEM.
    pub private_key: SecretString,
    /// The current webhook secret.
    pub webhook_secret: SecretString,
    /// The installation used when an event does not name one.
    pub default_installation_id: Option<u64>,
    /// Older webhook secrets still accepted while a rotation is under way (`webhook_secrets`).
    pub extra_webhook_secrets: Vec<SecretString>,
    /// The App's OAuth client id (`client_id`), for sign-in in front of previews. Only the
    /// proxy's environment gets it (and `client_secret`), through ECS.
    pub client_id: Option<String>,
    /// Whether the secret holds the App's `client_secret` (never read by this code).
    pub has_client_secret: bool,
}

impl GitHubAppSecret {
    /// Every webhook secret to try when checking a signature, the current one first.
    pub fn webhook_secrets(&self) -> Vec<&SecretString> {
        std::iter::once(&self.webhook_secret)
            .chain(&self.extra_webhook_secrets)
            .collect()
    }
}

/// Parses the GitHub App secret named `name` (used in errors only).
///
/// `app_id` and `default_installation_id` may be numbers or numeric strings. A private key whose
/// line breaks were pasted as the two characters `\n` (a common slip when a PEM file is put in a
/// JSON value by hand) is repaired, since no PEM key contains a literal backslash.
pub fn parse_github(name: &str, json: &str) -> Result<GitHubAppSecret, SecretError> {
    let fields = Fields::parse(name, json)?;
    let app_id = fields.u64("app_id")?;
    let private_key = fields.secret("private_key")?;
    let private_key = if private_key.expose_secret().contains("\\n") {
        SecretString::from(private_key.expose_secret().replace("\\n", "\n").trim())
    } else {
        private_key
    };
    if !private_key.expose_secret().starts_with("-----BEGIN ") {
        return Err(fields.error("field `private_key` is not a PEM key (no `-----BEGIN` line)"));
    }
    Ok(GitHubAppSecret {
        app_id,
        private_key,
        webhook_secret: fields.secret("webhook_secret")?,
        default_installation_id: fields.opt_u64("default_installation_id")?,
        extra_webhook_secrets: fields.secret_list("webhook_secrets")?,
        client_id: fields.opt_string("client_id")?,
        has_client_secret: fields.opt_string("client_secret")?.is_some(),
    })
}
