//! What a coding session and a preview share from start to end: start-up (prepared, signals
//! watched, heartbeat, the status comment), the idle timeout, the stop deadline, and the end (no
//! untrusted process left, the record's final state, the status comment's last word). Each mode
//! adds its own work between [`open`] and [`end`]: `agent.rs` runs prompts, `preview.rs` serves
//! the app.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use cca_domain::Status;
use cca_domain::session::SessionPatch;
use cca_domain::texts::agent::{self as texts, Idler, StatusView};
use tracing::{info, warn};

use crate::config::Config;
use crate::control::{Mode, Shared, StopRequest};
use crate::idle::{IdleEvent, IdleWatch};
use crate::report::{Budget, Reporter};
use crate::setup::{self, Ready, now};

/// Prepares the mode, watches the signals, starts the heartbeat and the status comment on the
/// PR (a coding session of an issue without a PR reports on the issue).
pub async fn open(cfg: Config, mode: Mode) -> anyhow::Result<(Ready, Reporter)> {
    let ready = setup::prepare(cfg, mode).await?;
    watch_signals(ready.shared.clone());
    setup::heartbeat(
        ready.store.clone(),
        ready.session.session_id.clone(),
        ready.cfg.heartbeat,
    );
    let (number, headline) = match mode {
        Mode::Agent => (
            ready
                .session
                .pr_number
                .or(ready.session.issue_number)
                .context("the session names no PR or issue to report on")?,
            texts::headline::STARTING,
        ),
        Mode::Preview => (
            ready
                .session
                .pr_number
                .context("the preview's record names no PR")?,
            texts::headline::PREVIEW_STARTING,
        ),
    };
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
            headline: headline.into(),
            preview_url: ready.session.uat_url.clone(),
            last_activity: Some(now()),
            unconfined: ready.sandbox.unconfined_reason().map(str::to_owned),
            ..StatusView::default()
        },
    );
    Ok((ready, reporter))
}

/// SIGTERM (ECS stopping the task) and SIGINT stop the session like `POST /stop`.
fn watch_signals(shared: Arc<Shared>) {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            warn!("cannot watch signals");
            return;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!(signal = name, "stop requested by signal");
        shared.request_stop(StopRequest {
            reason: texts::stopped_by_signal(name),
            final_status: Status::Stopped,
        });
    });
}

/// A cheap, shareable view of the mode's own activity for the idle watch: busy while a run or
/// a refresh is under way, and the time of the last one.
#[derive(Debug, Clone)]
pub struct Activity {
    busy: Arc<AtomicBool>,
    last: Arc<AtomicI64>,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    /// Activity as of now, not busy.
    pub fn new() -> Self {
        Self {
            busy: Arc::new(AtomicBool::new(false)),
            last: Arc::new(AtomicI64::new(now())),
        }
    }

    /// Something happened now; `busy` until it ends.
    pub fn begin(&self) {
        self.busy.store(true, Ordering::SeqCst);
        self.touch();
    }

    /// It ended (the last activity stays the one [`begin`](Self::begin) or
    /// [`touch`](Self::touch) recorded).
    pub fn end(&self) {
        self.busy.store(false, Ordering::SeqCst);
    }

    /// Something happened now.
    pub fn touch(&self) {
        self.last.store(now(), Ordering::SeqCst);
    }

    /// The last activity, or `None` while busy (a busy session is never idle).
    pub fn latest(&self) -> Option<i64> {
        (!self.busy.load(Ordering::SeqCst)).then(|| self.last.load(Ordering::SeqCst))
    }
}

/// Posts the idle warning once per quiet spell, then posts the end and asks the session to stop
/// at the idle timeout. `latest` gives the time of the last activity, `None` while busy.
pub fn watch_idle<F, Fut>(ready: &Ready, reporter: &Reporter, who: Idler, mut latest: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Option<i64>> + Send,
{
    let mut watch = IdleWatch::new(&ready.cfg.limits);
    let shared = ready.shared.clone();
    let reporter = reporter.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(watch.tick()).await;
            if shared.stop_requested().is_some() {
                return;
            }
            let Some(latest) = latest().await else {
                continue;
            };
            match watch.check(latest, now()) {
                None => {}
                Some(IdleEvent::Warn { left }) => {
                    reporter.post_logged(&texts::idle_warning(who, left)).await;
                }
                Some(IdleEvent::Expired) => {
                    reporter
                        .post_logged(&texts::idle_expired(who, watch.timeout()))
                        .await;
                    shared.request_stop(StopRequest {
                        reason: texts::idle_reason(watch.timeout()),
                        final_status: Status::Stopped,
                    });
                    return;
                }
            }
        }
    });
}

/// The stop deadline (`STOP_DEADLINE_SECS`), counted from the stop.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(tokio::time::Instant);

impl Deadline {
    pub fn from_now(ready: &Ready) -> Self {
        Self(tokio::time::Instant::now() + ready.cfg.stop_deadline)
    }

    /// The time left, less `reserve` kept for what comes after.
    pub fn left(&self, reserve: Duration) -> Duration {
        self.0
            .saturating_duration_since(tokio::time::Instant::now())
            .saturating_sub(reserve)
    }
}

/// The end both modes share, once their own work is stopped: nothing untrusted outlives the
/// session (a `setsid` child of the CLI included), and the record moves to the stop's state.
pub async fn end(ready: &Ready, stop: &StopRequest) {
    ready.sandbox.end_all().await;
    let patch = SessionPatch {
        last_activity: Some(now()),
        ..SessionPatch::default()
    };
    ready.record_end(stop.final_status, patch).await;
}

/// The session or preview (`what`) could not start: `FAILED` with the reason, and the status
/// comment says why.
pub async fn fail(
    ready: &Ready,
    reporter: &Reporter,
    what: &str,
    reason: &str,
) -> anyhow::Result<()> {
    let patch = SessionPatch {
        error: Some(reason.to_owned()),
        ..SessionPatch::default()
    };
    ready.record_end(Status::Failed, patch).await;
    reporter.update(|v| {
        v.headline = texts::headline::failed(what, reason);
        v.step = None;
    });
    let _ = tokio::time::timeout(Duration::from_secs(10), reporter.flush()).await;
    anyhow::bail!("the {} failed: {reason}", what.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::Activity;

    #[test]
    fn a_busy_session_is_never_idle_and_its_last_activity_is_when_the_work_began() {
        let a = Activity::new();
        let before = a.latest().expect("not busy at first");
        a.begin();
        assert_eq!(a.latest(), None, "busy: no idle time counts");
        let shared = a.clone();
        shared.end();
        let after = a.latest().expect("not busy after the end");
        assert!(after >= before, "the begin moved the last activity on");
    }
}
