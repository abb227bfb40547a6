//! The JIRA secret (`JIRA_SECRET_ARN`).

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde_json::Value;

use crate::SecretError;
use crate::fields::{Fields, kind};

/// JIRA credentials, webhook secrets and the projects mapped to repositories.
#[derive(Debug, Clone)]
pub struct JiraSecret {
    /// The site, e.g. `https://example.atlassian.net`, without a trailing `/`.
    pub base_url: String,
    /// The account the API token belongs to (Basic auth user).
    pub email: String,
    /// The API token.
    pub api_token: SecretString,
    /// The current webhook secret.
    pub webhook_secret: SecretString,
    /// JIRA project key (upper case) → `owner/repo` (lower case).
    pub project_mapping: BTreeMap<String, String>,
    /// Older webhook secrets still accepted while a rotation is under way (`webhook_secrets`).
    pub extra_webhook_secrets: Vec<SecretString>,
}

impl JiraSecret {
    /// Every webhook secret to try when checking a signature, the current one first.
    pub fn webhook_secrets(&self) -> Vec<&SecretString> {
        std::iter::once(&self.webhook_secret)
            .chain(&self.extra_webhook_secrets)
            .collect()
    }

    /// The repository of a JIRA project, whatever the case of the key.
    pub fn repo_for_project(&self, project_key: &str) -> Option<&str> {
        self.project_mapping
            .get(&project_key.to_ascii_uppercase())
            .map(String::as_str)
    }
}

/// Parses the JIRA secret named `name` (used in errors only).
///
/// `project_mapping` is a JSON object, or a string holding one (operators paste it that way
/// into the console's key/value editor); absent means no project is mapped. Keys are folded to
/// upper case and repositories to lower case, as JIRA and GitHub compare them.
pub fn parse_jira(name: &str, json: &str) -> Result<JiraSecret, SecretError> {
    let fields = Fields::parse(name, json)?;
    let base_url = fields.string("base_url")?.trim_end_matches('/').to_owned();
    if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
        return Err(fields.error("field `base_url` must start with https://"));
    }
    Ok(JiraSecret {
        base_url,
        email: fields.string("email")?,
        api_token: fields.secret("api_token")?,
        webhook_secret: fields.secret("webhook_secret")?,
        project_mapping: project_mapping(&fields)?,
        extra_webhook_secrets: fields.secret_list("webhook_secrets")?,
    })
}

fn project_mapping(fields: &Fields<'_>) -> Result<BTreeMap<String, String>, SecretError> {
    const FIELD: &str = "project_mapping";
    let nested;
    let map = match fields.value(FIELD) {
        None => return Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map,
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(BTreeMap::new()),
        Some(Value::String(text)) => {
            nested = serde_json::from_str::<Value>(text).map_err(|e| {
                fields.error(format!(
                    "field `{FIELD}` is a string but not valid JSON (column {})",
                    e.column()
                ))
            })?;
            match &nested {
                Value::Object(map) => map,
                other => {
                    return Err(fields.error(format!(
                        "field `{FIELD}` must hold a JSON object, found {}",
                        kind(other)
                    )));
                }
            }
        }
        Some(other) => {
            return Err(fields.error(format!(
                "field `{FIELD}` must be an object of project key to owner/repo, found {}",
                kind(other)
            )));
        }
    };
    map.iter()
        .map(|(project, repo)| {
            // Project keys and repository names are not secret, so naming them helps.
            let repo = match repo {
                Value::String(repo) if is_repo(repo.trim()) => repo.trim().to_ascii_lowercase(),
                _ => {
                    return Err(fields.error(format!(
                        "field `{FIELD}`: project {project} must map to \"owner/repo\""
                    )));
                }
            };
            Ok((project.trim().to_ascii_uppercase(), repo))
        })
        .collect()
}

/// `owner/name` with both parts non-empty and no further `/`.
fn is_repo(s: &str) -> bool {
    s.split_once('/').is_some_and(|(owner, name)| {
        !owner.is_empty()
            && !name.is_empty()
            && !name.contains('/')
            && !s.contains(char::is_whitespace)
    })
}
