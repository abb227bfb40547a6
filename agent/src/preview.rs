//! `cca-agent preview`: a PR's app, served for review at its preview URL.
//!
//! Clones the PR branch, installs, starts the dev server and waits until it answers, records
//! `RUNNING` with the address, and sets a GitHub deployment status whose `environment_url` is the
//! preview URL. `POST /refresh` (a push to the PR) fetches the new head, reinstalls when the
//! dependency files changed, restarts the app and deploys again. The idle timeout counts the
//! proxy's `last_activity` writes as activity; a warning is posted once before it ends the
//! preview. A stop marks the deployment inactive and records the end.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use cca_domain::Status;
use cca_domain::session::SessionPatch;
use serde_json::json;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::control::{Mode, StopRequest};
use crate::devserver::{self, Supervisor};
use crate::git::Repo;
use crate::idle::{IdleEvent, IdleWatch, human};
use crate::report::{Budget, Reporter, StatusView};
use crate::setup::{self, Ready, now};

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

/// The GitHub environment previews deploy to.
const ENVIRONMENT: &str = "preview";

/// Serves a PR preview until it is stopped.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let ready = setup::prepare(cfg, Mode::Preview).await?;
    crate::agent::watch_signals(ready.shared.clone());
    setup::heartbeat(
        ready.store.clone(),
        ready.session.session_id.clone(),
        ready.cfg.heartbeat,
    );
    let number = ready
        .session
        .pr_number
        .context("the preview's record names no PR")?;
    let reporter = Reporter::start(
        ready.access.clone(),
        number,
        Arc::new(Budget::new(
            ready.cfg.github_writes_per_minute,
            Duration::from_secs(60),
        )),
        ready.cfg.status_interval,
        StatusView {
            session_id: ready.session.session_id.to_string(),
            headline: "🚀 Preview starting: cloning the branch".into(),
            preview_url: ready.session.uat_url.clone(),
            last_activity: Some(now()),
            unconfined: ready.sandbox.unconfined_reason().map(str::to_owned),
            ..StatusView::default()
        },
    );
    let mut preview = match start(&ready, &reporter).await {
        Ok(p) => p,
        Err(e) => {
            let reason = ready.secrets.mask(&format!("{e:#}"));
            error!(error = %reason, "the preview could not start");
            return crate::agent::fail(&ready, &reporter, "Preview", &reason).await;
        }
    };
    let mut refreshes = ready.shared.refreshes();
    let mut watch = IdleWatch::new(&ready.cfg.limits);
    let mut local_activity = now();
    let stop = loop {
        tokio::select! {
            stop = ready.shared.stopped() => break stop,
            Some(r) = refreshes.recv() => {
                local_activity = now();
                if let Err(e) = preview.refresh(&ready, &reporter, r.head_sha.as_deref()).await {
                    let msg = ready.secrets.mask(&format!("{e:#}"));
                    warn!(error = %msg, "refresh failed");
                    reporter.update(|v| v.headline = format!("⚠️ Refresh failed: {msg}"));
                }
            }
            () = tokio::time::sleep(watch.tick()) => {
                // The proxy records traffic on the record; the latest of it and our own events counts.
                let recorded = ready
                    .store
                    .get(&ready.session.session_id)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|s| s.last_activity)
                    .unwrap_or(0);
                let latest = recorded.max(local_activity);
                match watch.check(latest, now()) {
                    None => {}
                    Some(IdleEvent::Warn { left }) => {
                        reporter.post_logged(&format!(
                            ":hourglass: **Idle Warning**: this preview stops in about {} unless it is used.",
                            human(left)
                        )).await;
                    }
                    Some(IdleEvent::Expired) => {
                        let idle = human(watch.timeout());
                        reporter.post_logged(&format!(
                            ":zzz: **Preview stopped**: no traffic for {idle} (IDLE_TIMEOUT_SECS). Re-add the label to start it again."
                        )).await;
                        break StopRequest { reason: format!("idle for {idle}"), final_status: Status::Stopped };
                    }
                }
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
        v.headline = "📦 Preview starting: installing".into();
        v.app = Some("installing".into());
    });
    let env = crate::agent::app_env(ready);
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
    reporter.update(|v| v.app = Some("starting".into()));
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
        v.headline = format!("✅ Preview ready at commit `{}`", short(&preview.head));
        v.app = Some("ready".into());
        v.last_activity = Some(now());
    });
    ready
        .shared
        .set_status(json!({ "status": "ready", "head": preview.head }));
    info!(head = %preview.head, port, "preview ready");
    Ok(preview)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
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
                    ENVIRONMENT,
                    "PR preview",
                )
                .await?;
            reporter.slot().await;
            client
                .deployment_status(
                    &ready.session.repo_full_name,
                    id,
                    "success",
                    url,
                    "Preview ready",
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
        reporter.update(|v| v.headline = format!("🔄 Updating the preview to `{}`", short(&new)));
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
            v.headline = format!("✅ Preview ready at commit `{}`", short(&self.head));
            v.last_activity = Some(now());
        });
        ready
            .shared
            .set_status(json!({ "status": "ready", "head": self.head }));
        info!(head = %self.head, "preview refreshed");
        Ok(())
    }

    async fn shutdown(self, ready: &Ready, reporter: &Reporter, stop: StopRequest) {
        let deadline = tokio::time::Instant::now() + ready.cfg.stop_deadline;
        info!(reason = %stop.reason, "stopping the preview");
        let _ = tokio::time::timeout(Duration::from_secs(8), self.app.stop()).await;
        ready.sandbox.end_all().await;
        let patch = SessionPatch {
            last_activity: Some(now()),
            ..SessionPatch::default()
        };
        ready.record_end(stop.final_status, patch).await;
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
                            "Preview stopped",
                        )
                        .await
                    {
                        warn!(error = %e, "cannot mark the deployment inactive");
                    }
                }
            }
            reporter.update(|v| {
                v.headline = format!("⏹️ Preview {}: {}", stop.final_status, stop.reason);
                v.app = Some("stopped".into());
            });
            reporter.flush().await;
        };
        let _ = tokio::time::timeout_at(deadline, inactive).await;
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
