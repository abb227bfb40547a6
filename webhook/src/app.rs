//! The webhook's dependencies, built once from the configuration (a warm Lambda reuses them, so
//! secrets are fetched once per container, not per request).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cca_domain::RepoName;
use cca_domain::decide::{JiraActors, Rules};
use cca_domain::mask::Masker;
use cca_domain::naming::PreviewUrls;
use cca_github::{AppCredentials, GitHub, GitHubAuth};
use cca_jira::Jira;
use cca_launcher::{EcsLauncher, Launcher, ProcessLauncher};
use cca_store::{DynamoStore, SessionStore, SqliteStore};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{Config, ControlSource, GitHubSource, JiraSource, LauncherSpec, StoreSpec};
use crate::control::ControlClient;

/// Grace the process launcher gives an agent between SIGTERM and SIGKILL; ECS uses the task
/// definition's `stopTimeout` instead. Long enough to commit and push work in progress.
pub const PROCESS_STOP_GRACE: Duration = Duration::from_secs(30);

/// JIRA, when configured.
#[derive(Debug, Clone)]
pub struct JiraSetup {
    pub client: Jira,
    pub webhook_secrets: Vec<SecretString>,
    /// JIRA project key → repository.
    pub project_mapping: BTreeMap<String, RepoName>,
}

/// Everything a request handler needs.
#[derive(Debug, Clone)]
pub struct App {
    pub store: Arc<dyn SessionStore>,
    pub launcher: Arc<dyn Launcher>,
    pub github: GitHub,
    pub github_webhook_secrets: Vec<SecretString>,
    pub jira: Option<JiraSetup>,
    pub control: ControlClient,
    /// The domain previews are served under, and how their URLs are written.
    pub uat_domain_suffix: PreviewUrls,
    pub rules: Rules,
    /// Known secret values, masked in everything the webhook writes.
    pub masker: Masker,
}

pub use cca_domain::now;

impl App {
    /// Builds every dependency: AWS clients (only when something needs AWS), secrets, store,
    /// launcher, GitHub and JIRA clients.
    pub async fn from_config(cfg: Config) -> anyhow::Result<Self> {
        let needs_aws = matches!(cfg.store, StoreSpec::Dynamo { .. })
            || matches!(cfg.launcher, LauncherSpec::Ecs(_))
            || matches!(cfg.github, GitHubSource::SecretArn(_))
            || matches!(cfg.jira, Some(JiraSource::SecretArn(_)))
            || matches!(cfg.control, ControlSource::SecretArn(_));
        let aws = if needs_aws {
            Some(aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await)
        } else {
            None
        };
        let aws_ref = || aws.as_ref().context("AWS configuration was not loaded");
        let secrets_client = || aws_ref().map(aws_sdk_secretsmanager::Client::new);
        let mut masker = Masker::default();

        let store: Arc<dyn SessionStore> = match &cfg.store {
            StoreSpec::Dynamo { table } => Arc::new(DynamoStore::new(
                aws_sdk_dynamodb::Client::new(aws_ref()?),
                table.clone(),
            )),
            StoreSpec::Sqlite { path } => Arc::new(
                SqliteStore::open(path)
                    .with_context(|| format!("opening the SQLite store {}", path.display()))?,
            ),
        };

        let launcher: Arc<dyn Launcher> = match &cfg.launcher {
            LauncherSpec::Ecs(settings) => Arc::new(EcsLauncher::new(
                aws_sdk_ecs::Client::new(aws_ref()?),
                settings.clone(),
            )),
            LauncherSpec::Process {
                program,
                log_dir,
                env,
            } => {
                std::fs::create_dir_all(log_dir)
                    .with_context(|| format!("creating CCA_LOG_DIR {}", log_dir.display()))?;
                Arc::new(ProcessLauncher::new(
                    program.clone(),
                    log_dir.clone(),
                    env.clone(),
                    PROCESS_STOP_GRACE,
                ))
            }
        };

        let (auth, github_webhook_secrets) = match &cfg.github {
            GitHubSource::SecretArn(arn) => {
                let s = cca_secrets::fetch_github(&secrets_client()?, arn).await?;
                let app = AppCredentials::new(s.app_id, &s.private_key)?;
                let secrets: Vec<SecretString> = s.webhook_secrets().into_iter().cloned().collect();
                crate::config::check_webhook_secrets(
                    "GITHUB_APP_SECRET_ARN (webhook_secret, webhook_secrets)",
                    &secrets,
                )?;
                (
                    GitHubAuth::App {
                        app,
                        default_installation: s.default_installation_id,
                    },
                    secrets,
                )
            }
            GitHubSource::App {
                app_id,
                private_key_file,
                webhook_secrets,
                installation_id,
            } => {
                let pem = std::fs::read_to_string(private_key_file).with_context(|| {
                    format!(
                        "reading GITHUB_APP_PRIVATE_KEY_FILE {}",
                        private_key_file.display()
                    )
                })?;
                let app = AppCredentials::new(*app_id, &SecretString::from(pem))?;
                (
                    GitHubAuth::App {
                        app,
                        default_installation: *installation_id,
                    },
                    webhook_secrets.clone(),
                )
            }
            GitHubSource::Token {
                token,
                webhook_secrets,
            } => {
                masker.add(token.expose_secret());
                (GitHubAuth::Token(token.clone()), webhook_secrets.clone())
            }
        };
        let github = GitHub::new(&cfg.github_api_url, auth)?;

        let jira = match &cfg.jira {
            None => None,
            Some(JiraSource::SecretArn(arn)) => {
                let s = cca_secrets::fetch_jira(&secrets_client()?, arn).await?;
                let mut mapping = BTreeMap::new();
                for (k, v) in &s.project_mapping {
                    let repo = RepoName::parse(v)
                        .with_context(|| format!("JIRA secret project_mapping[{k}]"))?;
                    mapping.insert(k.to_ascii_uppercase(), repo);
                }
                masker.add(s.api_token.expose_secret());
                let webhook_secrets: Vec<SecretString> =
                    s.webhook_secrets().into_iter().cloned().collect();
                crate::config::check_webhook_secrets(
                    "JIRA_SECRET_ARN (webhook_secret, webhook_secrets)",
                    &webhook_secrets,
                )?;
                Some(JiraSetup {
                    client: Jira::new(&s.base_url, &s.email, s.api_token.clone())?,
                    webhook_secrets,
                    project_mapping: mapping,
                })
            }
            Some(JiraSource::Local {
                base_url,
                email,
                api_token,
                webhook_secrets,
                project_mapping,
            }) => {
                masker.add(api_token.expose_secret());
                Some(JiraSetup {
                    client: Jira::new(base_url, email, api_token.clone())?,
                    webhook_secrets: webhook_secrets.clone(),
                    project_mapping: project_mapping.clone(),
                })
            }
        };

        let control_key = match &cfg.control {
            ControlSource::SecretArn(arn) => {
                cca_secrets::fetch_control(&secrets_client()?, arn).await?.0
            }
            ControlSource::Local(s) => s.clone(),
        };
        masker.add(control_key.expose_secret());
        for s in github_webhook_secrets
            .iter()
            .chain(jira.iter().flat_map(|j| j.webhook_secrets.iter()))
        {
            masker.add(s.expose_secret());
        }

        if jira.is_some() {
            log_jira_actors(&cfg.rules.jira_actors);
        }
        tracing::info!(allowed = %cfg.agent_addresses, "agents' control APIs are called only in these ranges");

        Ok(App {
            store,
            launcher,
            github,
            github_webhook_secrets,
            jira,
            control: ControlClient::new(control_key, cfg.control_timeout, cfg.agent_addresses),
            uat_domain_suffix: cfg.preview_urls,
            rules: cfg.rules,
            masker,
        })
    }
}

/// Says at start-up who may start sessions from JIRA, so that a JIRA that never triggers (the
/// default) is explained before the first event is refused.
fn log_jira_actors(actors: &JiraActors) {
    match actors {
        JiraActors::Nobody => tracing::warn!(
            "JIRA triggers are off: set JIRA_ALLOWED_ACCOUNTS to the account ids that may start sessions (or JIRA_ALLOW_ANY_ACCOUNT=true)"
        ),
        JiraActors::Accounts(ids) => {
            tracing::info!(
                accounts = ids.len(),
                "JIRA triggers allowed for the listed accounts"
            );
        }
        JiraActors::AnyPerson => tracing::warn!(
            "JIRA_ALLOW_ANY_ACCOUNT: any person who can label an issue of a mapped project may start sessions"
        ),
    }
}
