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
use cca_github::GitHub;
use cca_jira::Jira;
use cca_launcher::{EcsLauncher, Launcher, ProcessLauncher};
use cca_settings::{Aws, control_key, open_store};
use cca_store::SessionStore;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{Config, LauncherSpec};
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
    /// Where agents keep their CLI's conversation (`CONVERSATION_BUCKET`), when set.
    pub conversations: Option<crate::conversation::ConversationBucket>,
}

pub use cca_domain::now;

impl App {
    /// Builds every dependency: AWS clients (only when something needs AWS), secrets, store,
    /// launcher, GitHub and JIRA clients.
    pub async fn from_config(cfg: Config) -> anyhow::Result<Self> {
        let aws = Aws::default();
        let mut masker = Masker::default();
        let store = open_store(&cfg.store, &aws).await?;

        let launcher: Arc<dyn Launcher> = match &cfg.launcher {
            LauncherSpec::Ecs(settings) => Arc::new(EcsLauncher::new(
                aws_sdk_ecs::Client::new(aws.config().await),
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

        let credentials = cfg.github.load(&aws).await?;
        let github_webhook_secrets = match &credentials.stored {
            Some(stored) => {
                let secrets: Vec<SecretString> =
                    stored.webhook_secrets().into_iter().cloned().collect();
                crate::config::check_webhook_secrets(
                    "GITHUB_APP_SECRET_ARN (webhook_secret, webhook_secrets)",
                    &secrets,
                )?;
                secrets
            }
            None => cfg.github_webhook_secrets.clone(),
        };
        if let Some(token) = credentials.token() {
            masker.add(token.expose_secret());
        }
        let github = GitHub::new(&cfg.github_api_url, credentials.auth)?;

        let jira = match &cfg.jira {
            None => None,
            Some(j) => {
                let loaded = j.source.load(&aws).await?;
                masker.add(loaded.api_token.expose_secret());
                let (webhook_secrets, project_mapping) = match &loaded.stored {
                    Some(s) => {
                        let mut mapping = BTreeMap::new();
                        for (k, v) in &s.project_mapping {
                            let repo = RepoName::parse(v)
                                .with_context(|| format!("JIRA secret project_mapping[{k}]"))?;
                            mapping.insert(k.to_ascii_uppercase(), repo);
                        }
                        let secrets: Vec<SecretString> =
                            s.webhook_secrets().into_iter().cloned().collect();
                        crate::config::check_webhook_secrets(
                            "JIRA_SECRET_ARN (webhook_secret, webhook_secrets)",
                            &secrets,
                        )?;
                        (secrets, mapping)
                    }
                    None => (j.webhook_secrets.clone(), j.project_mapping.clone()),
                };
                Some(JiraSetup {
                    client: loaded.client,
                    webhook_secrets,
                    project_mapping,
                })
            }
        };

        let control_key = control_key(&cfg.control, &aws).await?;
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

        let conversations = match &cfg.conversation_bucket {
            Some(bucket) => {
                let sdk = aws.config().await.clone();
                Some(crate::conversation::ConversationBucket {
                    bucket: bucket.clone(),
                    region: sdk
                        .region()
                        .map_or_else(|| "us-east-1".to_owned(), |r| r.as_ref().to_owned()),
                    endpoint: sdk.endpoint_url().map(str::to_owned),
                    aws: sdk,
                })
            }
            None => None,
        };
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
            conversations,
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
