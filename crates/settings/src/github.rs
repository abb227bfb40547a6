//! The GitHub identity: the API's address and whose credentials are used.

use std::path::PathBuf;

use anyhow::Context as _;
use cca_github::{AppCredentials, GitHubAuth};
use cca_secrets::GitHubAppSecret;
use secrecy::SecretString;

use crate::{Aws, ConfigError, http_url, set};

/// GitHub's public REST API.
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";

/// Where GitHub's REST API is (the proxy needs only this).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GitHubApiArgs {
    /// GitHub's REST API root (Enterprise and tests). Default: `https://api.github.com`.
    #[arg(long, env = "GITHUB_API_URL")]
    pub github_api_url: Option<String>,
}

impl GitHubApiArgs {
    /// The API root, checked to be an http(s) URL.
    pub fn url(&self) -> Result<String, ConfigError> {
        http_url(
            "GITHUB_API_URL",
            set(&self.github_api_url).unwrap_or_else(|| DEFAULT_GITHUB_API_URL.into()),
        )
    }
}

/// The GitHub API and the credentials to call it with: a GitHub App's secret (deployed), a
/// local App's id and key file, or a personal token.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GitHubArgs {
    #[command(flatten)]
    pub api: GitHubApiArgs,
    /// Secrets Manager secret of the GitHub App: `{app_id, private_key, webhook_secret, …}`.
    #[arg(long, env = "GITHUB_APP_SECRET_ARN")]
    pub github_app_secret_arn: Option<String>,
    /// Local GitHub App: its id (with `GITHUB_APP_PRIVATE_KEY_FILE`).
    #[arg(long, env = "GITHUB_APP_ID")]
    pub github_app_id: Option<u64>,
    /// Local GitHub App: its private key, a PEM file.
    #[arg(long, env = "GITHUB_APP_PRIVATE_KEY_FILE")]
    pub github_app_private_key_file: Option<PathBuf>,
    /// The installation used when nothing names one (JIRA sessions, a local App).
    #[arg(long, env = "GITHUB_INSTALLATION_ID")]
    pub github_installation_id: Option<u64>,
    /// A personal access token instead of an App (local use).
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<String>,
}

/// Where the GitHub credentials come from.
#[derive(Debug, Clone)]
pub enum GitHubSource {
    /// The App's secret in Secrets Manager (`GITHUB_APP_SECRET_ARN`).
    SecretArn(String),
    /// A local App (`GITHUB_APP_ID`, `GITHUB_APP_PRIVATE_KEY_FILE`, `GITHUB_INSTALLATION_ID`).
    App {
        app_id: u64,
        private_key_file: PathBuf,
        installation_id: Option<u64>,
    },
    /// A personal access token (`GITHUB_TOKEN`).
    Token(SecretString),
}

impl GitHubArgs {
    /// Whether an App's secret is named (its webhook secrets then come from it).
    pub fn has_secret_arn(&self) -> bool {
        set(&self.github_app_secret_arn).is_some()
    }

    /// The credentials named, in this order: the App's secret, a local App, a token; `None`
    /// when none is set. A local App's id without its key file is an error.
    pub fn source(&self) -> Result<Option<GitHubSource>, ConfigError> {
        if let Some(arn) = set(&self.github_app_secret_arn) {
            return Ok(Some(GitHubSource::SecretArn(arn)));
        }
        match (
            self.github_app_id,
            &self.github_app_private_key_file,
            set(&self.github_token),
        ) {
            (Some(app_id), Some(file), _) => Ok(Some(GitHubSource::App {
                app_id,
                private_key_file: file.clone(),
                installation_id: self.github_installation_id,
            })),
            (Some(_), None, _) => Err(ConfigError::Missing {
                var: "GITHUB_APP_PRIVATE_KEY_FILE",
                why: "GITHUB_APP_ID is set",
            }),
            (None, _, Some(token)) => Ok(Some(GitHubSource::Token(SecretString::from(token)))),
            (None, _, None) => Ok(None),
        }
    }
}

/// Credentials, loaded.
#[derive(Debug, Clone)]
pub struct GitHubCredentials {
    pub auth: GitHubAuth,
    /// The App's secret as stored, when it came from Secrets Manager (its webhook secrets are
    /// the webhook's).
    pub stored: Option<GitHubAppSecret>,
}

impl GitHubCredentials {
    /// The personal token, which must never appear in what the system writes.
    pub fn token(&self) -> Option<&SecretString> {
        match &self.auth {
            GitHubAuth::Token(t) => Some(t),
            _ => None,
        }
    }
}

impl GitHubSource {
    /// Reads the key file or fetches the App's secret.
    pub async fn load(&self, aws: &Aws) -> anyhow::Result<GitHubCredentials> {
        Ok(match self {
            GitHubSource::SecretArn(arn) => {
                let s = cca_secrets::fetch_github(&aws.secrets().await, arn).await?;
                GitHubCredentials {
                    auth: GitHubAuth::App {
                        app: AppCredentials::new(s.app_id, &s.private_key)?,
                        default_installation: s.default_installation_id,
                    },
                    stored: Some(s),
                }
            }
            GitHubSource::App {
                app_id,
                private_key_file,
                installation_id,
            } => {
                let pem = std::fs::read_to_string(private_key_file).with_context(|| {
                    format!(
                        "reading GITHUB_APP_PRIVATE_KEY_FILE {}",
                        private_key_file.display()
                    )
                })?;
                GitHubCredentials {
                    auth: GitHubAuth::App {
                        app: AppCredentials::new(*app_id, &SecretString::from(pem))?,
                        default_installation: *installation_id,
                    },
                    stored: None,
                }
            }
            GitHubSource::Token(token) => GitHubCredentials {
                auth: GitHubAuth::Token(token.clone()),
                stored: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_wins_then_a_local_app_then_a_token() {
        let all = GitHubArgs {
            github_app_secret_arn: Some("arn:s".into()),
            github_app_id: Some(7),
            github_app_private_key_file: Some("/k.pem".into()),
            github_token: Some("t".into()),
            ..GitHubArgs::default()
        };
        assert!(matches!(all.source(), Ok(Some(GitHubSource::SecretArn(a))) if a == "arn:s"));
        let app = GitHubArgs {
            github_app_secret_arn: Some(" ".into()),
            github_installation_id: Some(9),
            ..all.clone()
        };
        assert!(matches!(
            app.source(),
            Ok(Some(GitHubSource::App {
                app_id: 7,
                installation_id: Some(9),
                ..
            }))
        ));
        let token = GitHubArgs {
            github_app_id: None,
            ..app.clone()
        };
        assert!(matches!(token.source(), Ok(Some(GitHubSource::Token(_)))));
        let no_key = GitHubArgs {
            github_app_private_key_file: None,
            ..app
        };
        let e = no_key.source().unwrap_err().to_string();
        assert!(
            e.starts_with("GITHUB_APP_PRIVATE_KEY_FILE is not set"),
            "{e}"
        );
        assert!(matches!(GitHubArgs::default().source(), Ok(None)));
    }

    #[test]
    fn the_api_defaults_to_github_and_must_be_http() {
        assert_eq!(
            GitHubApiArgs::default().url().unwrap(),
            DEFAULT_GITHUB_API_URL
        );
        let bad = GitHubApiArgs {
            github_api_url: Some("ftp://x".into()),
        };
        assert!(
            bad.url()
                .unwrap_err()
                .to_string()
                .starts_with("GITHUB_API_URL is invalid")
        );
    }
}
