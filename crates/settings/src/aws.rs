//! The AWS SDK's configuration, shared by every client a binary makes.

use tokio::sync::OnceCell;

/// The SDK configuration (region, credentials, `AWS_ENDPOINT_URL`), loaded the first time a
/// client needs it: a local run whose store, secrets and launcher are all local never loads it.
#[derive(Debug, Default)]
pub struct Aws(OnceCell<aws_config::SdkConfig>);

impl Aws {
    /// The configuration, loaded from the environment on the first call.
    pub async fn config(&self) -> &aws_config::SdkConfig {
        self.0
            .get_or_init(|| aws_config::load_defaults(aws_config::BehaviorVersion::latest()))
            .await
    }

    /// A Secrets Manager client.
    pub async fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(self.config().await)
    }
}
