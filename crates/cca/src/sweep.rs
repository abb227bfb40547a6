//! `cca sweep [--dry-run] [--json]`: the sweeper of `cca-webhook`'s schedule, on demand.
//!
//! It reads the store as `cca sessions` does, the tasks of `ECS_CLUSTER` (else the local agent
//! processes), the leftovers of `ALB_LISTENER_ARN` when set, and tells PRs with the GitHub
//! credentials the webhook uses, when there are any.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use cca_github::GitHub;
use cca_launcher::{EcsLauncher, EcsSettings, Launcher, ProcessLauncher, TaskDefinitions};
use cca_settings::{Aws, GitHubArgs};
use cca_sweep::Sweeper;
use cca_webhook::app::{PROCESS_STOP_GRACE, now};
use cca_webhook::sweep::{SweepSettings, SweeperArgs, load_balancer};

use crate::store::{self, StoreArgs};

/// `cca sweep`.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// Say what would be done, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON instead of lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    settings: SweeperArgs,
    /// ECS cluster whose tasks are swept. Without it, the local agent processes are.
    #[arg(long, env = "ECS_CLUSTER")]
    ecs_cluster: Option<String>,
    /// Preview domain: per-session listener rules are `<session id>.<UAT_DOMAIN_SUFFIX>`.
    /// Needed with ALB_LISTENER_ARN.
    #[arg(long, env = "UAT_DOMAIN_SUFFIX")]
    uat_domain_suffix: Option<String>,
    // The credentials the webhook uses, to tell the PRs.
    #[command(flatten)]
    github: GitHubArgs,
}

/// Runs `cca sweep`: exit status 0 when everything was read and done, 1 otherwise.
pub async fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let settings = SweepSettings::from_args(&args.settings)?;
    let explicit_store = args.store.is_named()?;
    let cluster = set(&args.ecs_cluster);
    if cluster.is_some() && !explicit_store {
        // Against the local store every task of the cluster would look like it has no session.
        bail!(
            "ECS_CLUSTER is set but neither SESSION_STORE nor SESSIONS_TABLE: name the store \
             that records the cluster's sessions"
        );
    }
    let suffix = match (&settings.listener_arn, set(&args.uat_domain_suffix)) {
        (Some(_), None) => bail!(
            "UAT_DOMAIN_SUFFIX is not set: with ALB_LISTENER_ARN it tells which listener rules \
             were made for a session"
        ),
        (_, suffix) => suffix.unwrap_or_default().to_owned(),
    };

    let location = args.store.location()?;
    // One AWS configuration for the store, the cluster and the App's secret.
    let aws = Aws::default();
    let Some(store) = store::open(&location, &aws).await? else {
        println!("no sessions in {location}: nothing to sweep");
        return Ok(ExitCode::SUCCESS);
    };
    let launcher: Arc<dyn Launcher> = match cluster {
        Some(cluster) => {
            // Only lists, inspects and stops tasks: it has no task definition or subnet, so a
            // launch would be refused.
            let none = String::new;
            let settings = EcsSettings::new(
                cluster,
                TaskDefinitions {
                    agent_latest: none(),
                    agent_staging: none(),
                    preview_latest: none(),
                    preview_staging: none(),
                },
                Vec::new(),
                Vec::new(),
                false,
            );
            Arc::new(EcsLauncher::new(
                aws_sdk_ecs::Client::new(aws.config().await),
                settings,
            ))
        }
        None => Arc::new(ProcessLauncher::new(
            PathBuf::from("cca-agent"),
            std::env::temp_dir(),
            Vec::new(),
            PROCESS_STOP_GRACE,
        )),
    };

    let sweeper = Sweeper::new(store, launcher, settings.limits)
        .with_github(github(&args.github, &aws).await?)
        .with_load_balancer(load_balancer(settings.listener_arn.as_deref(), &suffix).await);
    let report = sweeper
        .sweep(now(), args.dry_run)
        .await
        .with_context(|| format!("cannot sweep {location}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for line in report.lines() {
            println!("{line}");
        }
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The value, trimmed, unless it is absent or empty (an empty variable counts as unset).
fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The GitHub client of the configured credentials, in the webhook's order (App secret, local
/// App, personal token); `None` without any.
async fn github(args: &GitHubArgs, aws: &Aws) -> anyhow::Result<Option<GitHub>> {
    let Some(source) = args.source()? else {
        return Ok(None);
    };
    let credentials = source.load(aws).await?;
    Ok(Some(GitHub::new(&args.api.url()?, credentials.auth)?))
}
