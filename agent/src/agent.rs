//! `cca-agent run`: the coding session.
//!
//! Start-up: the record moves to `STARTING` with the agent's address (so a stop reaches it even
//! while it clones), the branch is cloned with a repository-scoped token, the app's dev server
//! starts under supervision, the record moves to `RUNNING`, and the status comment appears.
//! Then prompts run one at a time, in order: the issue first, then each follow-up from the
//! control API, each resuming the same conversation. After every run what the CLI left
//! uncommitted is committed, the branch pushed, and a summary posted listing only that run's
//! commits. A stop (SIGTERM, `POST /stop`, the idle timeout, a session limit) cancels the run,
//! commits and pushes the work in progress, records `STOPPED` or `COMPLETED`, and exits within
//! the stop deadline.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use cca_domain::session::SessionPatch;
use cca_domain::texts::agent::{self as texts, Idler, Limit};
use cca_domain::{Session, Status};
use serde_json::json;
use tracing::{error, info, warn};

use crate::ci::{CiFixes, Verdict};
use crate::cli;
use crate::control::{Checks, Mode, Prompt, Shared, StopRequest};
use crate::devserver::{self, AppState, Supervisor};
use crate::git::Repo;
use crate::ledger::SessionLedger;
use crate::lifecycle::{self, Activity, Deadline};
use crate::push::commit_and_push;
use crate::report::Reporter;
use crate::report::destination::{self, Destination};
use crate::setup::{Ready, now};

/// Paths never committed by the agent, whatever the repository's `.gitignore` says: what
/// installing and running an app leaves behind.
const LOCAL_EXCLUDES: &str = "node_modules/\n.venv/\n__pycache__/\n.pnpm-store/\n.npm/\n.cache/\n";

/// Runs a coding session until it is stopped.
pub async fn run(cfg: crate::config::Config) -> anyhow::Result<()> {
    let (ready, reporter) = lifecycle::open(cfg, Mode::Agent).await?;
    acknowledge_prompts(&ready.shared, &reporter);

    let mut session = Session::clone(&ready.session);
    let started = match start(&ready, &reporter, &mut session).await {
        Ok(s) => s,
        Err(e) => {
            let reason = ready.secrets.mask(&format!("{e:#}"));
            error!(error = %reason, "the session could not start");
            return lifecycle::fail(&ready, &reporter, "Session", &reason).await;
        }
    };
    let stop = work(&ready, &reporter, &started, &session).await;
    shutdown(&ready, &reporter, &started, stop).await;
    Ok(())
}

/// What `start` set up, shared by the runs.
pub(crate) struct Started {
    pub repo: Repo,
    pub clone_url: String,
    pub app: Option<Supervisor>,
    pub ledger: tokio::sync::Mutex<SessionLedger>,
    pub activity: Activity,
    /// Where each run's end is reported.
    pub destinations: Vec<Box<dyn Destination>>,
    /// The head whose refused push was last reported (so a stop does not report it again).
    pub refused_head: tokio::sync::Mutex<Option<String>>,
    /// The fixing of failing checks.
    pub ci: tokio::sync::Mutex<CiFixes>,
}

async fn start(
    ready: &Ready,
    reporter: &Reporter,
    session: &mut Session,
) -> anyhow::Result<Started> {
    let crate::setup::Cloned { repo, clone_url } =
        ready.clone_branch(None, crate::git::Start::Branch).await?;
    if let Err(e) = repo.exclude(LOCAL_EXCLUDES) {
        warn!(error = %e, "cannot write the agent's exclude file");
    }
    let client = ready.access.client().await?;
    let pull = match session.pr_number {
        Some(n) => client.pull(&session.repo_full_name, n).await.ok(),
        None => None,
    };
    if pull.as_ref().is_some_and(|p| p.ready_for_want_of_drafts()) {
        reporter.update(|v| v.ready_not_draft = true);
    }
    let pr_url = pull.map(|p| p.html_url);

    let app_port = ready.app_port()?;
    let app = start_app(ready, reporter, repo.dir().to_path_buf(), app_port).await;
    // A repository's settings may name their own port: the proxy must forward there.
    let app_port = app.as_ref().map_or(app_port, |a| a.plan().port);

    let patch = SessionPatch {
        app_port: Some(app_port),
        last_activity: Some(now()),
        ..SessionPatch::default()
    };
    *session = ready
        .store
        .transition(&session.session_id, Status::Running, patch, now())
        .await
        .context("recording RUNNING")?;
    reporter.update(|v| {
        v.headline = texts::headline::WORKING.into();
        v.last_activity = Some(now());
    });

    let prompt = initial_prompt(ready, session).await?;
    // A review that relaunched the session: its run answers in the review's threads.
    let mut threads: Vec<crate::control::Thread> = session
        .prompt_threads
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    threads.truncate(crate::control::MAX_THREADS);
    ready.shared.enqueue(Prompt {
        text: prompt,
        author: None,
        comment_id: None,
        threads,
        fix: None,
        approval: None,
    });
    Ok(Started {
        repo,
        clone_url,
        app,
        ledger: tokio::sync::Mutex::new(
            SessionLedger::continuing(
                session.turns.unwrap_or(0),
                session.cost_usd.unwrap_or(0.0),
                session.claude_session_id.clone(),
            )
            .after_runs(session.runs.unwrap_or(0)),
        ),
        activity: Activity::new(),
        destinations: destination::for_session(ready, reporter, pr_url),
        refused_head: tokio::sync::Mutex::new(None),
        ci: tokio::sync::Mutex::new(CiFixes::new(ready.cfg.ci_fix_attempts)),
    })
}

/// The prompt of the first run: the record's, else the issue's title and body.
async fn initial_prompt(ready: &Ready, session: &Session) -> anyhow::Result<String> {
    if let Some(p) = session
        .initial_prompt
        .clone()
        .filter(|p| !p.trim().is_empty())
    {
        return Ok(p);
    }
    let issue = session
        .issue_number
        .context("the session record has no prompt and names no issue")?;
    let client = ready.access.client().await?;
    let i = client
        .issue(&session.repo_full_name, issue)
        .await
        .context("reading the issue for the prompt")?;
    Ok(cca_domain::texts::issue_prompt(
        issue,
        &i.title,
        i.body.as_deref().unwrap_or(""),
    ))
}

/// Installs and starts the app in the background; its state shows on the status comment.
async fn start_app(
    ready: &Ready,
    reporter: &Reporter,
    dir: PathBuf,
    port: u16,
) -> Option<Supervisor> {
    let plan = match devserver::plan(&dir, port, ready.control_port) {
        Ok(Some(plan)) => plan,
        Ok(None) => {
            reporter.update(|v| v.app = Some(texts::app::NONE.into()));
            return None;
        }
        Err(e) => {
            let msg = ready.secrets.mask(&e.to_string());
            warn!(error = %msg, "the repository settings are invalid");
            reporter.update(|v| v.app = Some(texts::app::not_started(&msg)));
            return None;
        }
    };
    reporter.update(|v| v.app = Some(texts::app::INSTALLING.into()));
    let env = ready.app_env();
    if let Err(e) = devserver::install(&ready.sandbox, &plan, &dir, &env).await {
        let msg = ready.secrets.mask(&e.to_string());
        warn!(error = %msg, "install failed");
        reporter.update(|v| v.app = Some(texts::app::install_failed(&msg)));
        return None;
    }
    let sup = Supervisor::start(plan, ready.sandbox.clone(), dir, env);
    let mut states = sup.subscribe();
    let r = reporter.clone();
    tokio::spawn(async move {
        loop {
            let text = describe_app(&states.borrow_and_update());
            r.update(|v| v.app = Some(text));
            if states.changed().await.is_err() {
                return;
            }
        }
    });
    Some(sup)
}

fn describe_app(s: &AppState) -> String {
    match s {
        AppState::Starting => texts::app::STARTING.into(),
        AppState::Ready => texts::app::READY.into(),
        AppState::Restarting { attempt, .. } => texts::app::restarting(*attempt),
        AppState::Failed(why) => texts::app::failed(why),
        AppState::Stopped => texts::app::STOPPED.into(),
    }
}

/// Runs prompts until a stop is requested; returns the stop.
async fn work(ready: &Ready, reporter: &Reporter, st: &Started, session: &Session) -> StopRequest {
    let shared = &ready.shared;
    let adapter = cli::adapter(&ready.cfg.cli);
    let activity = st.activity.clone();
    lifecycle::watch_idle(ready, reporter, Idler::Session, move || {
        let latest = activity.latest();
        async move { latest }
    });
    let mut checks = shared.checks();
    loop {
        publish_status(shared, st, "waiting").await;
        let prompt = tokio::select! {
            p = shared.next_prompt() => p,
            Some(report) = checks.recv() => {
                on_checks(ready, reporter, st, report).await;
                continue;
            }
            stop = shared.stopped() => return stop,
        };
        if prompt.author.is_some() {
            st.ci.lock().await.person_asked();
        }
        if let Some(seen) = prompt.approval {
            if !shared.take_approval(seen) {
                reporter
                    .post_logged(texts::PLAN_CHANGED_SINCE_APPROVAL)
                    .await;
                continue;
            }
            shared.set_planning(false);
            let patch = SessionPatch {
                plan_mode: Some(false),
                ..SessionPatch::default()
            };
            if let Err(e) = ready.store.update(&session.session_id, patch, now()).await {
                warn!(error = %e, "cannot record the approval");
            }
        }
        if let Some(commit) = &prompt.fix {
            let head = st.repo.head().await.unwrap_or_default();
            if !st.ci.lock().await.still_fixing(commit, &head) {
                info!(commit = %commit, head = %head, "a queued fix run is no longer wanted");
                continue;
            }
        }
        st.activity.begin();
        if let Some(limit) = session_limit(ready, st).await {
            let cost = shared.cost_limit();
            if matches!(limit, Limit::SessionCost { .. }) && cost.cap_usd > cost.limit_usd + 1e-9 {
                st.activity.end();
                if prompt.fix.is_some() {
                    // Checks report again on the next push; a writer decides about money.
                    info!("a fix run is not started at the session's cost limit");
                    continue;
                }
                // The operator lets writers raise it: the session waits for a raise (or its
                // idle stop) instead of ending with the conversation's context.
                reporter
                    .post_logged(&texts::session_cost_limit_raisable(&limit, cost.cap_usd))
                    .await;
                record_error(ready, &texts::session_limit_reason(&limit)).await;
                ready.shared.set_last_failed(Some(prompt));
                continue;
            }
            reporter
                .post_logged(&texts::session_limit_reached(&limit))
                .await;
            let reason = texts::session_limit_reason(&limit);
            record_error(ready, &reason).await;
            shared.request_stop(StopRequest {
                reason,
                final_status: Status::Stopped,
            });
            st.activity.end();
            continue;
        }
        let _ = ready
            .store
            .transition(
                &session.session_id,
                Status::Running,
                SessionPatch::default(),
                now(),
            )
            .await;
        crate::run::run_one(ready, reporter, st, session, adapter.as_ref(), prompt).await;
        st.activity.touch();
        st.activity.end();
        if let Some(stop) = shared.stop_requested() {
            return stop;
        }
        let _ = ready
            .store
            .transition(
                &session.session_id,
                Status::Idle,
                SessionPatch {
                    last_activity: Some(now()),
                    ..SessionPatch::default()
                },
                now(),
            )
            .await;
        let planning = shared.planning();
        reporter.update(|v| {
            v.headline = match planning {
                true => texts::headline::PLAN_WAITING.into(),
                false => texts::headline::WAITING.into(),
            };
            v.step = None;
            v.last_activity = Some(now());
        });
    }
}

/// Checks completed on the PR's head: a fix run is queued when they failed on the agent's own
/// commit and the fixing allows one; what is decided is said on the PR.
async fn on_checks(ready: &Ready, reporter: &Reporter, st: &Started, report: Checks) {
    let head = st.repo.head().await.unwrap_or_default();
    let verdict = st
        .ci
        .lock()
        .await
        .on_checks(&report.head_sha, report.passed, &head);
    info!(checked = %report.head_sha, head = %head, passed = report.passed, ?verdict, "checks");
    match verdict {
        Verdict::Fix { attempt, max } => {
            reporter
                .post_logged(&texts::ci_fix_queued(
                    attempt,
                    max,
                    &report.head_sha,
                    &report.checks,
                ))
                .await;
            ready.shared.enqueue(Prompt {
                text: report.prompt.unwrap_or_default(),
                author: None,
                comment_id: None,
                threads: Vec::new(),
                fix: Some(report.head_sha.clone()),
                approval: None,
            });
        }
        Verdict::Passed { attempts } => {
            reporter
                .post_logged(&texts::ci_passed(attempts, &report.head_sha))
                .await;
        }
        Verdict::GiveUp { max } => {
            reporter
                .post_logged(&texts::ci_gave_up(max, &report.head_sha))
                .await;
        }
        Verdict::Nothing(_) => {}
    }
}

/// The session limit that forbids another run, if any.
async fn session_limit(ready: &Ready, st: &Started) -> Option<Limit> {
    let tokens = ready.gateway.as_ref().map(|g| g.session().tokens());
    st.ledger.lock().await.limit(&ready.limits_now(), tokens)
}

async fn record_error(ready: &Ready, error: &str) {
    let patch = SessionPatch {
        error: Some(error.to_owned()),
        ..SessionPatch::default()
    };
    if let Err(e) = ready
        .store
        .update(&ready.session.session_id, patch, now())
        .await
    {
        warn!(error = %e, "cannot record the error");
    }
}

/// The control API's `GET /status`: the session's state, its figures, and the app's.
pub(crate) async fn publish_status(shared: &Shared, st: &Started, state: &str) {
    let t = st.ledger.lock().await.clone();
    shared.set_status(json!({
        "status": state,
        "prompts_processed": t.runs,
        "turns": t.turns,
        "cost_usd": t.cost_usd,
        "conversation_id": t.conversation,
        "app": st.app.as_ref().map(|a| describe_app(&a.state())),
    }));
}

/// Acknowledges queued prompts with a reaction on their comment.
fn acknowledge_prompts(shared: &Arc<Shared>, reporter: &Reporter) {
    let mut rx = shared.acks();
    let reporter = reporter.clone();
    tokio::spawn(async move {
        while let Some(id) = rx.recv().await {
            reporter.react(id, "eyes").await;
        }
    });
}

/// After a stop: push what is left, stop the app, record the end, say so — within the deadline.
async fn shutdown(ready: &Ready, reporter: &Reporter, st: &Started, stop: StopRequest) {
    let deadline = Deadline::from_now(ready);
    info!(reason = %stop.reason, "stopping");
    // A run in progress has already committed and pushed its work; this catches anything else.
    // A session that plans has no work: whatever is left is not pushed.
    if !ready.shared.planning() {
        let start = st.repo.head().await.unwrap_or_default();
        let message = texts::wip_commit_message(&stop.reason);
        let pushed = tokio::time::timeout(
            deadline.left(std::time::Duration::from_secs(6)),
            commit_and_push(ready, reporter, st, &ready.session, &start, &message),
        )
        .await;
        if pushed.is_err() {
            warn!("pushing the work in progress did not finish before the stop deadline");
        }
    }
    if let Some(app) = &st.app {
        let _ = tokio::time::timeout(deadline.left(std::time::Duration::from_secs(4)), app.stop())
            .await;
    }
    lifecycle::end(ready, &stop).await;
    reporter.update(|v| {
        v.headline = texts::headline::ended(stop.final_status, &stop.reason);
        v.step = None;
        v.queued = 0;
        v.last_activity = Some(now());
    });
    let _ = tokio::time::timeout(deadline.left(std::time::Duration::ZERO), reporter.flush()).await;
    info!(status = %stop.final_status, "session ended");
}
