//! Loading secrets from AWS Secrets Manager.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;

use crate::fields::malformed;
use crate::{
    ControlSecret, GitHubAppSecret, JiraSecret, SecretError, parse_control, parse_github,
    parse_jira,
};

/// The current text of a secret, by name or ARN.
pub async fn fetch_secret_string(client: &Client, arn: &str) -> Result<String, SecretError> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| match e.as_service_error() {
            Some(GetSecretValueError::ResourceNotFoundException(_)) => {
                SecretError::Missing(arn.to_owned())
            }
            // The SDK's errors carry the service's message, never the secret's value.
            _ => SecretError::Backend(format!(
                "GetSecretValue of {arn}: {}",
                DisplayErrorContext(&e)
            )),
        })?;
    match out.secret_string() {
        Some(text) => Ok(text.to_owned()),
        None if out.secret_binary().is_some() => Err(malformed(
            arn,
            "holds a binary value; a text value is expected".to_owned(),
        )),
        None => Err(SecretError::Missing(arn.to_owned())),
    }
}

/// The GitHub App secret at `arn`.
pub async fn fetch_github(client: &Client, arn: &str) -> Result<GitHubAppSecret, SecretError> {
    parse_github(arn, &fetch_secret_string(client, arn).await?)
}

/// The JIRA secret at `arn`.
pub async fn fetch_jira(client: &Client, arn: &str) -> Result<JiraSecret, SecretError> {
    parse_jira(arn, &fetch_secret_string(client, arn).await?)
}

/// The control key at `arn`.
pub async fn fetch_control(client: &Client, arn: &str) -> Result<ControlSecret, SecretError> {
    parse_control(arn, &fetch_secret_string(client, arn).await?)
}
