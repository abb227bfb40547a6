//! JIRA's credentials, optional everywhere.

use cca_jira::Jira;
use cca_secrets::JiraSecret;
use secrecy::SecretString;

use crate::{Aws, ConfigError, set};

/// JIRA's site and account: a secret (deployed) or the values themselves (local).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JiraArgs {
    /// Secrets Manager secret with the JIRA credentials: `{base_url, email, api_token, …}`.
    #[arg(long, env = "JIRA_SECRET_ARN")]
    pub jira_secret_arn: Option<String>,
    /// Local JIRA: the site, e.g. `https://example.atlassian.net`.
    #[arg(long, env = "JIRA_BASE_URL")]
    pub jira_base_url: Option<String>,
    /// Local JIRA: the account the API token belongs to.
    #[arg(long, env = "JIRA_EMAIL")]
    pub jira_email: Option<String>,
    /// Local JIRA: the API token.
    #[arg(long, env = "JIRA_API_TOKEN", hide_env_values = true)]
    pub jira_api_token: Option<String>,
}

/// Where the JIRA credentials come from.
#[derive(Debug, Clone)]
pub enum JiraSource {
    SecretArn(String),
    Local {
        base_url: String,
        email: String,
        api_token: SecretString,
    },
}

impl JiraArgs {
    /// Whether JIRA is configured the local way (its other settings are then required too).
    pub fn is_local(&self) -> bool {
        set(&self.jira_secret_arn).is_none() && set(&self.jira_base_url).is_some()
    }

    /// The credentials named, the secret winning; `None` when JIRA is not configured. With
    /// `JIRA_BASE_URL`, the email and token are required.
    pub fn source(&self) -> Result<Option<JiraSource>, ConfigError> {
        if let Some(arn) = set(&self.jira_secret_arn) {
            return Ok(Some(JiraSource::SecretArn(arn)));
        }
        let Some(base_url) = set(&self.jira_base_url) else {
            return Ok(None);
        };
        let need = |v: &Option<String>, var: &'static str| {
            set(v).ok_or(ConfigError::Missing {
                var,
                why: "JIRA_BASE_URL is set",
            })
        };
        Ok(Some(JiraSource::Local {
            base_url,
            email: need(&self.jira_email, "JIRA_EMAIL")?,
            api_token: SecretString::from(need(&self.jira_api_token, "JIRA_API_TOKEN")?),
        }))
    }
}

/// JIRA's client, loaded.
#[derive(Debug, Clone)]
pub struct JiraCredentials {
    pub client: Jira,
    /// The API token, which must never appear in what the system writes.
    pub api_token: SecretString,
    /// The secret as stored, when it came from Secrets Manager (the webhook's secrets and
    /// project mapping are in it).
    pub stored: Option<JiraSecret>,
}

impl JiraSource {
    /// Fetches the secret, when there is one, and makes the client.
    pub async fn load(&self, aws: &Aws) -> anyhow::Result<JiraCredentials> {
        Ok(match self {
            JiraSource::SecretArn(arn) => {
                let s = cca_secrets::fetch_jira(&aws.secrets().await, arn).await?;
                JiraCredentials {
                    client: Jira::new(&s.base_url, &s.email, s.api_token.clone())?,
                    api_token: s.api_token.clone(),
                    stored: Some(s),
                }
            }
            JiraSource::Local {
                base_url,
                email,
                api_token,
            } => JiraCredentials {
                client: Jira::new(base_url, email, api_token.clone())?,
                api_token: api_token.clone(),
                stored: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_wins_and_a_local_site_needs_its_account() {
        let local = JiraArgs {
            jira_base_url: Some("https://j".into()),
            jira_email: Some("a@b".into()),
            jira_api_token: Some("t".into()),
            ..JiraArgs::default()
        };
        assert!(local.is_local());
        assert!(matches!(local.source(), Ok(Some(JiraSource::Local { .. }))));
        let secret = JiraArgs {
            jira_secret_arn: Some("arn:j".into()),
            ..local.clone()
        };
        assert!(!secret.is_local());
        assert!(matches!(
            secret.source(),
            Ok(Some(JiraSource::SecretArn(_)))
        ));
        let no_email = JiraArgs {
            jira_email: None,
            ..local
        };
        let e = no_email.source().unwrap_err().to_string();
        assert!(e.starts_with("JIRA_EMAIL is not set"), "{e}");
        assert!(matches!(JiraArgs::default().source(), Ok(None)));
    }
}
