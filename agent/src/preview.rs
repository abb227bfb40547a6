//! `cca-agent preview`: a PR's app, served for review at its preview URL.
//!
//! Clones the PR branch, installs, starts the dev server and waits until it answers, records
//! `RUNNING` with the address, and sets a GitHub deployment status whose `environment_url` is the
//! preview URL. `POST /refresh` (a push to the PR) fetches the new head, reinstalls when the
//! dependency files changed, restarts the app and deploys again. The idle timeout counts the
//! proxy's `last_activity` writes as activity; a warning is posted once before it ends the
//! preview. A stop marks the deployment inactive and records the end.

use std::time::Duration;

use anyhow::{Context, bail};
use cca_domain::Status;
use cca_domain::session::SessionPatch;
use cca_domain::texts::agent::{self as texts, Idler};
use serde_json::json;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::control::{Mode, StopRequest};
use crate::devserver::{self, Supervisor};
use crate::git::Repo;
use crate::lifecycle::{self, Activity, Deadline};
use crate::report::Reporter;
use crate::setup::{Ready, now};

/// Files whose change means dependencies must be installed again.
const DEPENDENCY_FILES: [&str; 9] = [
    "package.json",
    "package-lock.json",
    "pnpm-lock.yaml",
    "yarn.lock",
    "bun.lockb",
    "pyproject.toml",
    "poetry.lock",
    "requirements.txt",
    ".cca.toml",
];

/// Serves a PR preview until it is stopped.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let (ready, reporter) = lifecycle::open(cfg, Mode::Preview).await?;
    let mut preview = match start(&ready, &reporter).await {
        Ok(p) => p,
        Err(e) => {
            let reason = ready.secrets.mask(&format!("{e:#}"));
            error!(error = %reason, "the preview could not start");
            return lifecycle::fail(&ready, &reporter, "Preview", &reason).await;
        }
    };
    // The proxy records traffic on the record; the latest of it and the preview's own refreshes
    // counts, and a refresh under way is activity.
    let activity = Activity::new();
    let (store, id, local) = (
        ready.store.clone(),
        ready.session.session_id.clone(),
        activity.clone(),
    );
    lifecycle::watch_idle(&ready, &reporter, Idler::Preview, move || {
        let (store, id, local) = (store.clone(), id.clone(), local.clone());
        async move {
            let local = local.latest()?;
            let recorded = store
                .get(&id)
                .await
                .ok()
                .flatten()
                .and_then(|s| s.last_activity)
                .unwrap_or(0);
            Some(recorded.max(local))
        }
    });
    let mut refreshes = ready.shared.refreshes();
    let stop = loop {
        tokio::select! {
            stop = ready.shared.stopped() => break stop,
            Some(r) = refreshes.recv() => {
                activity.begin();
                if let Err(e) = preview.refresh(&ready, &reporter, r.head_sha.as_deref()).await {
                    let msg = ready.secrets.mask(&format!("{e:#}"));
                    warn!(error = %msg, "refresh failed");
                    reporter.update(|v| v.headline = texts::headline::refresh_failed(&msg));
                }
                activity.end();
            }
        }
    };
    preview.shutdown(&ready, &reporter, stop).await;
    Ok(())
}

struct Preview {
    repo: Repo,
    clone_url: String,
    app: Supervisor,
    head: String,
    /// Deployments made, marked inactive when the preview ends.
    deployments: Vec<u64>,
    /// What the app's processes get from the agent.
    env: Vec<(String, String)>,
}

async fn start(ready: &Ready, reporter: &Reporter) -> anyhow::Result<Preview> {
    let branch = ready.session.branch_name.as_str();
    let pr = pull_number(ready)?;
    let crate::setup::Cloned { repo, clone_url } = ready
        .clone_branch(Some(branch), crate::git::Start::Pull(pr))
        .await
        .with_context(|| {
            format!(
                "cannot fetch the head of PR #{pr} (refs/pull/{pr}/head of {}): its head \
                 repository may be gone or unreadable",
                ready.session.repo_full_name
            )
        })?;
    let head = repo.head().await?;
    let port = ready.app_port()?;
    let plan = devserver::plan(repo.dir(), port, ready.control_port)?
        .context("the branch has no app to preview (no .cca.toml and nothing detected)")?;
    reporter.update(|v| {
        v.headline = texts::headline::PREVIEW_INSTALLING.into();
        v.app = Some(texts::app::INSTALLING.into());
    });
    let env = ready.app_env();
    devserver::install(&ready.sandbox, &plan, repo.dir(), &env)
        .await
        .map_err(|e| anyhow::anyhow!(ready.secrets.mask(&e.to_string())))?;
    let ready_timeout = plan.ready_timeout;
    // A repository's settings may name their own port: the proxy must forward there.
    let port = plan.port;
    let app = Supervisor::start(
        plan,
        ready.sandbox.clone(),
        repo.dir().to_path_buf(),
        env.clone(),
    );
    reporter.update(|v| v.app = Some(texts::app::STARTING.into()));
    if let Err(state) = app.wait_ready(ready_timeout).await {
        app.stop().await;
        bail!("the app did not become ready: {state:?}");
    }
    let patch = SessionPatch {
        app_port: Some(port),
        last_activity: Some(now()),
        ..SessionPatch::default()
    };
    ready
        .store
        .transition(&ready.session.session_id, Status::Running, patch, now())
        .await
        .context("recording RUNNING")?;
    let mut preview = Preview {
        repo,
        clone_url,
        app,
        head,
        deployments: Vec::new(),
        env,
    };
    preview.deploy(ready, reporter).await;
    reporter.update(|v| {
        v.headline = texts::headline::preview_ready(&preview.head);
        v.app = Some(texts::app::READY.into());
        v.last_activity = Some(now());
    });
    ready
        .shared
        .set_status(json!({ "status": "ready", "head": preview.head }));
    info!(head = %preview.head, port, "preview ready");
    Ok(preview)
}

impl Preview {
    /// A deployment of the current head with a `success` status pointing at the preview URL.
    async fn deploy(&mut self, ready: &Ready, reporter: &Reporter) {
        let url = ready.session.uat_url.as_deref();
        let result = async {
            let client = ready.access.client().await?;
            reporter.slot().await;
            let id = client
                .create_deployment(
                    &ready.session.repo_full_name,
                    &self.head,
                    texts::deployment::ENVIRONMENT,
                    texts::deployment::DESCRIPTION,
                )
                .await?;
            reporter.slot().await;
            client
                .deployment_status(
                    &ready.session.repo_full_name,
                    id,
                    "success",
                    url,
                    texts::deployment::READY,
                )
                .await?;
            Ok::<_, cca_github::GitHubError>(id)
        }
        .await;
        match result {
            Ok(id) => self.deployments.push(id),
            Err(e) => {
                warn!(error = %ready.secrets.mask(&e.to_string()), "cannot set the deployment status")
            }
        }
    }

    async fn refresh(
        &mut self,
        ready: &Ready,
        reporter: &Reporter,
        wanted: Option<&str>,
    ) -> anyhow::Result<()> {
        let git = ready.git_auth(&self.clone_url).await?;
        let pr = pull_number(ready)?;
        let old = self.head.clone();
        let new = self
            .repo
            .reset_to_pull(pr, &git)
            .await
            .map_err(|e| anyhow::anyhow!(ready.secrets.mask(&e.to_string())))?;
        ready
            .sandbox
            .hand_over(self.repo.dir())
            .context("handing the updated working copy to the sandbox user")?;
        if let Some(w) = wanted {
            if !new.starts_with(w) && !w.starts_with(&new) {
                warn!(wanted = w, fetched = %new, "the branch head is not the pushed commit (pushed again since?); showing what the branch has");
            }
        }
        if new == old {
            info!(head = %new, "refresh: head unchanged");
            return Ok(());
        }
        reporter.update(|v| v.headline = texts::headline::preview_updating(&new));
        let changed = self
            .repo
            .changed_between(&old, &new)
            .await
            .unwrap_or_default();
        let current = self.app.plan();
        // The settings file may have changed with the push; the port stays the recorded one.
        let plan = match devserver::plan(self.repo.dir(), current.port, ready.control_port) {
            Ok(Some(p)) => p,
            Ok(None) => bail!("the new head has no app to preview"),
            Err(e) => bail!("{}", ready.secrets.mask(&e.to_string())),
        };
        if changed
            .iter()
            .any(|f| DEPENDENCY_FILES.contains(&f.as_str()))
        {
            devserver::install(&ready.sandbox, &plan, self.repo.dir(), &self.env)
                .await
                .map_err(|e| anyhow::anyhow!(ready.secrets.mask(&e.to_string())))?;
        }
        if plan == current {
            self.app.restart().await;
        } else {
            self.app.restart_with(plan.clone()).await;
        }
        if let Err(state) = self.app.wait_ready(plan.ready_timeout).await {
            bail!("the app did not become ready after the update: {state:?}");
        }
        self.head = new;
        self.deploy(ready, reporter).await;
        reporter.update(|v| {
            v.headline = texts::headline::preview_ready(&self.head);
            v.last_activity = Some(now());
        });
        ready
            .shared
            .set_status(json!({ "status": "ready", "head": self.head }));
        info!(head = %self.head, "preview refreshed");
        Ok(())
    }

    async fn shutdown(self, ready: &Ready, reporter: &Reporter, stop: StopRequest) {
        let deadline = Deadline::from_now(ready);
        info!(reason = %stop.reason, "stopping the preview");
        let _ = tokio::time::timeout(Duration::from_secs(8), self.app.stop()).await;
        lifecycle::end(ready, &stop).await;
        let ids = self.deployments.clone();
        let inactive = async {
            if let Ok(client) = ready.access.client().await {
                for id in ids {
                    reporter.slot().await;
                    if let Err(e) = client
                        .deployment_status(
                            &ready.session.repo_full_name,
                            id,
                            "inactive",
                            None,
                            texts::deployment::STOPPED,
                        )
                        .await
                    {
                        warn!(error = %e, "cannot mark the deployment inactive");
                    }
                }
            }
            reporter.update(|v| {
                v.headline = texts::headline::preview_ended(stop.final_status, &stop.reason);
                v.app = Some(texts::app::STOPPED.into());
            });
            reporter.flush().await;
        };
        let _ = tokio::time::timeout(deadline.left(Duration::ZERO), inactive).await;
    }
}

/// The PR a preview shows: it is fetched as `refs/pull/<n>/head`, which holds the head
/// repository's commit for a PR from a fork as for one from this repository.
fn pull_number(ready: &Ready) -> anyhow::Result<u64> {
    ready.session.pr_number.with_context(|| {
        format!(
            "the preview session {} has no PR number to fetch",
            ready.session.session_id
        )
    })
}
