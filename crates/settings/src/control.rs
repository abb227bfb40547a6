//! The control key, from which the webhook and the agents derive each session's token.

use cca_secrets::ControlSource;
use secrecy::SecretString;

use crate::{Aws, ConfigError, set};

/// The control key: a secret (deployed) or the key itself (`cca up`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ControlArgs {
    /// Secrets Manager secret holding the key control tokens are derived from.
    #[arg(long, env = "CONTROL_SECRET_ARN")]
    pub control_secret_arn: Option<String>,
    /// The control key itself (local use; at least 32 characters).
    #[arg(long, env = "CCA_CONTROL_SECRET", hide_env_values = true)]
    pub control_secret: Option<String>,
}

impl ControlArgs {
    /// Whether either variable is set.
    pub fn is_set(&self) -> bool {
        set(&self.control_secret_arn).is_some() || set(&self.control_secret).is_some()
    }

    /// Where the key comes from; `why` says what needs it, for the error when neither is set.
    pub fn source(&self, why: &'static str) -> Result<ControlSource, ConfigError> {
        ControlSource::from_vars(
            self.control_secret_arn.as_deref(),
            self.control_secret.as_deref(),
            why,
        )
    }
}

/// The key, fetched from Secrets Manager when it is stored there.
pub async fn control_key(source: &ControlSource, aws: &Aws) -> anyhow::Result<SecretString> {
    Ok(match source {
        ControlSource::SecretArn(arn) => {
            cca_secrets::fetch_control(&aws.secrets().await, arn)
                .await?
                .0
        }
        ControlSource::Local(key) => key.clone(),
    })
}
