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
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use cca_domain::session::SessionPatch;
use cca_domain::texts::agent::{self as texts, Limit};
use cca_domain::{Session, Status};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::cli::{self, Adapter, CliEvent, RunRequest};
use crate::config::Config;
use crate::control::{Mode, Prompt, Shared, StopRequest};
use crate::devserver::{self, AppState, Supervisor};
use crate::git::Repo;
use crate::idle::{IdleEvent, IdleWatch, human};
use crate::ledger::{RunFigures, SessionLedger, run_limit, summary_limit};
use crate::report::{Budget, Reporter, RunSummary, StatusView};
use crate::setup::{self, CLI_SETTINGS, Ready, now};

/// Paths never committed by the agent, whatever the repository's `.gitignore` says: what
/// installing and running an app leaves behind.
const LOCAL_EXCLUDES: &str = "node_modules/\n.venv/\n__pycache__/\n.pnpm-store/\n.npm/\n.cache/\n";

/// Runs a coding session until it is stopped.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let ready = setup::prepare(cfg, Mode::Agent).await?;
    let shared = ready.shared.clone();
    watch_signals(shared.clone());
    setup::heartbeat(
        ready.store.clone(),
        ready.session.session_id.clone(),
        ready.cfg.heartbeat,
    );
    let number = ready
        .session
        .pr_number
        .or(ready.session.issue_number)
        .context("the session names no PR or issue to report on")?;
    let budget = Arc::new(Budget::new(
        ready.cfg.github_writes_per_minute,
        Duration::from_secs(60),
    ));
    let reporter = Reporter::start(
        ready.access.clone(),
        number,
        budget,
        ready.cfg.status_interval,
        StatusView {
            session_id: ready.session.session_id.to_string(),
            headline: "🚀 Starting: cloning the repository".into(),
            preview_url: ready.session.uat_url.clone(),
            last_activity: Some(now()),
            unconfined: ready.sandbox.unconfined_reason().map(str::to_owned),
            ..StatusView::default()
        },
    );
    acknowledge_prompts(&shared, &reporter);

    let mut session = Session::clone(&ready.session);
    let started = match start(&ready, &reporter, &mut session).await {
        Ok(s) => s,
        Err(e) => {
            let reason = ready.secrets.mask(&format!("{e:#}"));
            error!(error = %reason, "the session could not start");
            return fail(&ready, &reporter, "Session", &reason).await;
        }
    };
    let stop = work(&ready, &reporter, &started, &session).await;
    shutdown(&ready, &reporter, &started, stop).await;
    Ok(())
}

/// What `start` set up.
struct Started {
    repo: Repo,
    clone_url: String,
    app: Option<Supervisor>,
    ledger: tokio::sync::Mutex<SessionLedger>,
    activity: Activity,
    pr_url: Option<String>,
    /// The head whose refused push was last reported (so a stop does not report it again).
    refused_head: tokio::sync::Mutex<Option<String>>,
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
        v.headline = "🛠️ Working on the issue".into();
        v.last_activity = Some(now());
    });

    let prompt = initial_prompt(ready, session).await?;
    ready.shared.enqueue(Prompt {
        text: prompt,
        author: None,
        comment_id: None,
    });
    Ok(Started {
        repo,
        clone_url,
        app,
        ledger: tokio::sync::Mutex::new(SessionLedger::continuing(
            session.turns.unwrap_or(0),
            session.cost_usd.unwrap_or(0.0),
            session.claude_session_id.clone(),
        )),
        activity: Activity {
            busy: Arc::new(AtomicBool::new(false)),
            last: Arc::new(AtomicI64::new(now())),
        },
        pr_url,
        refused_head: tokio::sync::Mutex::new(None),
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

/// Variables the app gets from the agent (it inherits nothing else but `PATH`, `HOME` and the
/// like): the preview's host names, so dev servers that check `Host` (Vite) accept the proxy's
/// requests.
pub(crate) fn app_env(ready: &Ready) -> Vec<(String, String)> {
    let host = ready
        .session
        .uat_url
        .as_deref()
        .and_then(|u| u.split("://").nth(1))
        .map(|h| h.split(['/', ':']).next().unwrap_or(h));
    match host.and_then(|h| h.split_once('.')) {
        Some((_, suffix)) => vec![(
            "__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS".into(),
            format!(".{suffix}"),
        )],
        None => Vec::new(),
    }
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
            reporter.update(|v| v.app = Some("none (no .cca.toml and no app detected)".into()));
            return None;
        }
        Err(e) => {
            let msg = ready.secrets.mask(&e.to_string());
            warn!(error = %msg, "the repository settings are invalid");
            reporter.update(|v| v.app = Some(format!("not started: {msg}")));
            return None;
        }
    };
    reporter.update(|v| v.app = Some("installing".into()));
    let env = app_env(ready);
    if let Err(e) = devserver::install(&ready.sandbox, &plan, &dir, &env).await {
        let msg = ready.secrets.mask(&e.to_string());
        warn!(error = %msg, "install failed");
        reporter.update(|v| {
            v.app = Some(format!(
                "install failed: {}",
                cca_domain::naming::clip(&msg, 300)
            ))
        });
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
        AppState::Starting => "starting".into(),
        AppState::Ready => "ready".into(),
        AppState::Restarting { attempt, .. } => format!("restarting (attempt {attempt})"),
        AppState::Failed(why) => format!("failed: {}", cca_domain::naming::clip(why, 300)),
        AppState::Stopped => "stopped".into(),
    }
}

/// Runs prompts until a stop is requested; returns the stop.
async fn work(ready: &Ready, reporter: &Reporter, st: &Started, session: &Session) -> StopRequest {
    let shared = &ready.shared;
    let adapter = cli::adapter(&ready.cfg.cli);
    spawn_idle_watch(ready, reporter, st);
    loop {
        publish_status(shared, st, "waiting").await;
        let prompt = tokio::select! {
            p = shared.next_prompt() => p,
            stop = shared.stopped() => return stop,
        };
        st.activity.busy.store(true, Ordering::SeqCst);
        st.activity.last.store(now(), Ordering::SeqCst);
        if let Some(limit) = session_limit(ready, st).await {
            reporter
                .post_logged(&texts::session_limit_reached(&limit))
                .await;
            let reason = texts::session_limit_reason(&limit);
            record_error(ready, &reason).await;
            shared.request_stop(StopRequest {
                reason,
                final_status: Status::Stopped,
            });
            st.activity.busy.store(false, Ordering::SeqCst);
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
        run_one(ready, reporter, st, session, adapter.as_ref(), prompt).await;
        st.activity.last.store(now(), Ordering::SeqCst);
        st.activity.busy.store(false, Ordering::SeqCst);
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
        reporter.update(|v| {
            v.headline = "💤 Waiting: comment on the PR to ask for more".into();
            v.step = None;
            v.last_activity = Some(now());
        });
    }
}

/// The session limit that forbids another run, if any.
async fn session_limit(ready: &Ready, st: &Started) -> Option<Limit> {
    let tokens = ready.gateway.as_ref().map(|g| g.session().tokens());
    st.ledger.lock().await.limit(&ready.cfg.limits, tokens)
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

async fn publish_status(shared: &Shared, st: &Started, state: &str) {
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

/// One run: the CLI, then commit, push, summary and the record.
async fn run_one(
    ready: &Ready,
    reporter: &Reporter,
    st: &Started,
    session: &Session,
    adapter: &dyn Adapter,
    prompt: Prompt,
) {
    let limits = &ready.cfg.limits;
    let plan = st.ledger.lock().await.begin_run(limits, |id| {
        adapter.resumes() && conversation_exists(ready, id)
    });
    let number = plan.number;
    publish_status(&ready.shared, st, "running").await;
    let who = prompt
        .author
        .as_deref()
        .map(|a| format!(" for @{a}"))
        .unwrap_or_default();
    reporter.update(|v| {
        v.headline = format!("🛠️ Run {number}{who} in progress");
        v.step = Some("thinking".into());
        v.runs = number;
        v.queued = ready.shared.queue_len();
        v.last_activity = Some(now());
    });
    let start = match st.repo.head().await {
        Ok(h) => h,
        Err(e) => {
            reporter
                .post_logged(&format!(":warning: **Run {number} could not start:** {e}"))
                .await;
            return;
        }
    };
    let req = RunRequest {
        prompt: prompt.text.clone(),
        resume: plan.resume.clone(),
        max_turns: plan.max_turns,
        max_budget_usd: plan.cli_budget_usd,
        workdir: st.repo.dir().to_path_buf(),
    };
    let mut env = cli_env(ready);
    env.push(("CCA_SESSION_ID".into(), session.session_id.to_string()));
    if let Some(gateway) = &ready.gateway {
        gateway.begin_run(plan.budget_usd);
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let progress = spawn_progress(reporter.clone(), rx);
    info!(run = number, resume = ?plan.resume, "run starting");
    let outcome = cli::run(
        adapter,
        &req,
        &ready.sandbox,
        &env,
        limits.run_timeout,
        limits.silence_timeout,
        ready.shared.cancel_signal(),
        tx,
    )
    .await;
    let _ = progress.await;

    let stopping = ready.shared.stop_requested();
    let message = match &stopping {
        Some(stop) => format!(
            "WIP: work in progress when the session stopped ({})",
            cca_domain::naming::clip(&stop.reason, 60)
        ),
        None => format!(
            "Apply changes from Claude run {number}: {}",
            cca_domain::naming::clip(prompt.text.lines().next().unwrap_or("").trim(), 60)
        ),
    };
    let (commits, files, push_error) =
        commit_and_push(ready, reporter, st, session, &start, &message).await;
    if stopping.is_none() {
        if let Err(e) = st
            .repo
            .refresh_cli_copy(&st.clone_url, &ready.sandbox)
            .await
        {
            warn!(error = %ready.secrets.mask(&e.to_string()), "cannot refresh the CLI's copy of the history");
        }
    }

    let metered = ready.gateway.as_ref().map(|g| g.run());
    let result = outcome.result.as_ref();
    let ended_by = run_limit(
        &outcome.ended,
        result.map_or("", |r| r.subtype.as_str()),
        result.map_or("", |r| r.text.as_str()),
        limits,
        plan.budget_usd,
    );
    let limit = summary_limit(
        metered
            .as_ref()
            .and_then(|(_, refusal)| *refusal)
            .map(|r| r.to_string()),
        ended_by,
        stopping.as_ref().map(|s| s.reason.as_str()),
    );
    let figures = RunFigures {
        turns: result.and_then(|r| r.turns),
        reported_cost_usd: result.and_then(|r| r.cost_usd),
        conversation: outcome.conversation.clone(),
        metered_cost_usd: metered.as_ref().map(|(usage, _)| usage.cost_usd),
    };
    let (turns, cost, conversation, run_cost) = {
        let mut ledger = st.ledger.lock().await;
        let run_cost = ledger.end_run(&plan, &figures);
        (
            ledger.turns,
            ledger.cost_usd,
            ledger.conversation.clone(),
            run_cost,
        )
    };
    let failure = outcome.failure().map(|f| ready.secrets.mask(&f));
    let summary = RunSummary {
        number,
        author: prompt.author.clone(),
        succeeded: outcome.succeeded(),
        text: outcome
            .result
            .as_ref()
            .map(|r| r.text.clone())
            .filter(|t| !t.is_empty() && outcome.succeeded())
            .or(outcome.last_text.clone().filter(|_| outcome.succeeded()))
            .unwrap_or_default(),
        failure: failure.clone(),
        limit,
        commits: commits.clone(),
        files,
        cost_usd: run_cost,
        turns: outcome.result.as_ref().and_then(|r| r.turns),
        duration: outcome.elapsed,
        push_error: push_error.clone(),
    };
    let patch = SessionPatch {
        cost_usd: Some(cost),
        turns: Some(turns),
        claude_session_id: conversation,
        last_activity: Some(now()),
        error: failure
            .as_ref()
            .map(|f| format!("run {number} failed: {f}"))
            .or(push_error
                .as_ref()
                .map(|e| format!("run {number}: push failed: {e}"))),
        ..SessionPatch::default()
    };
    if let Err(e) = ready.store.update(&session.session_id, patch, now()).await {
        warn!(error = %e, "cannot record the run");
    }
    reporter.update(|v| {
        v.turns = turns;
        v.cost_usd = cost;
        v.last_activity = Some(now());
    });
    // When stopping, the summary must not hold up the exit.
    let body = summary.render();
    let post = reporter.post_logged(&body);
    if stopping.is_some() {
        let _ = tokio::time::timeout(Duration::from_secs(3), post).await;
    } else {
        post.await;
    }
    if number == 1 {
        jira_summary(ready, st, &summary).await;
    }
    info!(
        run = number,
        succeeded = outcome.succeeded(),
        commits = commits.len(),
        "run finished"
    );
}

/// Whether `id` can be resumed here (a relaunched container starts without the conversation).
/// The CLI's environment on top of the sandbox's allow-list: its own settings from the agent's
/// environment, the model's credentials, and its configuration directory in the sandbox's home.
fn cli_env(ready: &Ready) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = CLI_SETTINGS
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| ((*name).to_owned(), v)))
        .collect();
    env.extend(ready.model_env.iter().cloned());
    env.push((
        "CLAUDE_CONFIG_DIR".into(),
        cli_config_dir(ready).display().to_string(),
    ));
    env
}

/// Where Claude Code keeps its conversations: in the sandbox's home, which survives the runs.
fn cli_config_dir(ready: &Ready) -> PathBuf {
    ready.sandbox.home().join(".claude")
}

fn conversation_exists(ready: &Ready, id: &str) -> bool {
    let found = cli::has_conversation(&cli_config_dir(ready), id);
    if !found {
        warn!(
            conversation = id,
            "the earlier conversation is not stored here; starting a new one"
        );
    }
    found
}

/// Commits what is left, pushes, and lists this run's commits and files (since `start`).
async fn commit_and_push(
    ready: &Ready,
    reporter: &Reporter,
    st: &Started,
    session: &Session,
    start: &str,
    message: &str,
) -> (
    Vec<crate::git::Commit>,
    Vec<crate::git::ChangedFile>,
    Option<String>,
) {
    let mask = |e: &dyn std::fmt::Display| ready.secrets.mask(&e.to_string());
    if let Err(e) = st.repo.commit_all(message).await {
        warn!(error = %mask(&e), "cannot commit the run's changes");
    }
    let commits = st.repo.commits_since(start).await.unwrap_or_default();
    let files = st.repo.files_since(start).await.unwrap_or_default();
    let mut push_error = None;
    if st
        .repo
        .unpushed(session.branch_name.as_str())
        .await
        .unwrap_or(true)
    {
        let pushed = match ready.git_auth(&st.clone_url).await {
            Ok(auth) => match st.repo.push(session.branch_name.as_str(), &auth).await {
                Ok(()) => Ok(()),
                Err(e) => match crate::git::refusal(&e.detail) {
                    Some(reason) => {
                        let reason = mask(&reason);
                        Err(
                            keep_refused_work(ready, reporter, st, session, start, &auth, &reason)
                                .await,
                        )
                    }
                    None => Err(mask(&e)),
                },
            },
            Err(e) => Err(mask(&format!("{e:#}"))),
        };
        if let Err(e) = pushed {
            warn!(error = %e, "push failed");
            push_error = Some(e);
        } else {
            info!(branch = %session.branch_name, "pushed");
        }
    }
    (commits, files, push_error)
}

/// The largest patch posted as a comment (GitHub refuses comments over 65 536 characters).
const PATCH_COMMENT_MAX: usize = 50_000;

/// How long the comments about refused work may wait (a stop has its own deadline).
const REFUSAL_POST_LIMIT: Duration = Duration::from_secs(10);

/// Whether GitHub's refusal is about where or with what permission the work was pushed, not
/// about its content: only then may the content be posted on the PR. Secret scanning (GH013)
/// and an organisation's own hook refuse content on purpose; posting it would defeat them.
fn content_may_be_posted(reason: &str) -> bool {
    reason.contains("without `workflows` permission") || reason.contains("GH006")
}

/// GitHub refused the push (`reason`): the work must not be lost. It goes to a new branch
/// beside the session's (enough for a protected branch); when GitHub refuses that too, the
/// commits are posted on the PR as a patch `git am` applies, when the refusal is not about the
/// content and the patch fits in a comment, else the files are named. Says on the PR what was
/// refused, why, and where the work is; returns the line for the run's summary. A head already
/// reported is not reported again (the stop retries the push).
#[allow(clippy::too_many_arguments)]
async fn keep_refused_work(
    ready: &Ready,
    reporter: &Reporter,
    st: &Started,
    session: &Session,
    start: &str,
    auth: &crate::git::GitAuth,
    reason: &str,
) -> String {
    let branch = session.branch_name.as_str();
    let head = st.repo.head().await.unwrap_or_default();
    let mut reported = st.refused_head.lock().await;
    if reported.as_deref() == Some(head.as_str()) {
        return format!("GitHub refused the push to `{branch}`: {reason} (reported above).");
    }
    let short = &head[..head.len().min(7)];
    let fallback = format!("{branch}-kept-{short}");
    let mut patch_comment = None;
    let kept = match st.repo.push_new(&fallback, auth).await {
        Ok(()) => {
            info!(branch = %fallback, "the refused work is on a branch of its own");
            format!("The work is on the branch `{fallback}` instead.")
        }
        Err(e) => {
            let second = crate::git::refusal(&e.detail).unwrap_or_else(|| e.detail.clone());
            warn!(error = %ready.secrets.mask(&second), "the fallback branch was refused too");
            let files = st.repo.files_since(start).await.unwrap_or_default();
            let named: Vec<String> = files
                .iter()
                .take(50)
                .map(|f| format!("`{}`", f.path))
                .collect();
            let gone = if ready.shared.stop_requested().is_some() {
                "the session is stopping, so it is lost with it"
            } else {
                "the work stays in this session's working copy until it stops"
            };
            match st.repo.patch(branch, start).await {
                Ok(patch) if patch.len() <= PATCH_COMMENT_MAX && content_may_be_posted(reason) => {
                    let fence = "`".repeat(longest_backtick_run(&patch).max(2) + 1);
                    patch_comment = Some(format!(
                        "📎 **The refused work, as a patch** (apply it with `git am` on `{branch}`):\n\n<details><summary>{} lines</summary>\n\n{fence}diff\n{patch}\n{fence}\n\n</details>",
                        patch.lines().count()
                    ));
                    "A branch of its own was refused too, so the work is posted below as a patch."
                        .to_owned()
                }
                Ok(patch) if content_may_be_posted(reason) => format!(
                    "A branch of its own was refused too, and the patch ({} KB) is too large for a comment: {gone}. Files: {}.",
                    patch.len() / 1024,
                    named.join(", ")
                ),
                // Refused for its content: the content is not repeated here.
                Ok(_) => format!(
                    "A branch of its own was refused too; as GitHub refused the content, it is not posted here: {gone}. Files: {}.",
                    named.join(", ")
                ),
                Err(e) => format!("{gone} (no patch: {}).", ready.secrets.mask(&e.to_string())),
            }
        }
    };
    *reported = Some(head.clone());
    let said = format!("GitHub refused the push to `{branch}`: {reason}. {kept}");
    let post = async {
        reporter
            .post_logged(&format!(":no_entry: **Push refused.** {said}"))
            .await;
        if let Some(patch) = &patch_comment {
            reporter.post_logged(patch).await;
        }
    };
    if tokio::time::timeout(REFUSAL_POST_LIMIT, post)
        .await
        .is_err()
    {
        warn!("the comments about the refused push did not go out in time");
    }
    said
}

fn longest_backtick_run(s: &str) -> usize {
    s.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// Turns the CLI's events into the status comment's current step.
fn spawn_progress(
    reporter: Reporter,
    mut rx: mpsc::UnboundedReceiver<CliEvent>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            let step = match &ev {
                CliEvent::Tool { name, detail } => {
                    Some(format!("{} {name} {detail}", tool_icon(name)))
                }
                CliEvent::Text(t) => Some(format!(
                    "💬 {}",
                    cca_domain::naming::clip(t.lines().next().unwrap_or(""), 200)
                )),
                _ => None,
            };
            if let Some(step) = step {
                let masked = reporter.secrets().mask(&step);
                info!(step = %masked, "cli");
                reporter.update(|v| {
                    v.step = Some(masked);
                    v.last_activity = Some(now());
                });
            }
        }
    })
}

fn tool_icon(name: &str) -> &'static str {
    match name {
        "Read" => "📖",
        "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => "✏️",
        "Bash" => "💻",
        "Glob" => "🔍",
        "Grep" => "🔎",
        "Task" | "Agent" => "🤖",
        _ => "🔧",
    }
}

/// Posts the first run's outcome on the JIRA issue (JIRA sessions).
async fn jira_summary(ready: &Ready, st: &Started, s: &RunSummary) {
    let (Some(jira), Some(key)) = (&ready.jira, &ready.session.jira_issue_key) else {
        return;
    };
    let pr = st.pr_url.as_deref().zip(ready.session.pr_number);
    let doc = cca_domain::texts::jira::run_summary(s, pr);
    let body = serde_json::from_str(&ready.secrets.mask(&doc.to_string())).unwrap_or_default();
    if let Err(e) = jira.comment(key.as_str(), body).await {
        warn!(error = %ready.secrets.mask(&e.to_string()), "cannot post the JIRA summary");
    }
}

/// Posts the idle warning once, then asks the session to stop at the idle timeout.
fn spawn_idle_watch(ready: &Ready, reporter: &Reporter, st: &Started) {
    let mut watch = IdleWatch::new(&ready.cfg.limits);
    let shared = ready.shared.clone();
    let reporter = reporter.clone();
    let activity = st.activity.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(watch.tick()).await;
            if shared.stop_requested().is_some() {
                return;
            }
            let (busy, latest) = activity.read();
            if busy {
                continue;
            }
            match watch.check(latest, now()) {
                None => {}
                Some(IdleEvent::Warn { left }) => {
                    reporter
                        .post_logged(&format!(
                            ":hourglass: **Idle Warning**: this session stops in about {} unless it gets a comment.",
                            human(left)
                        ))
                        .await;
                }
                Some(IdleEvent::Expired) => {
                    let idle = human(watch.timeout());
                    reporter
                        .post_logged(&format!(
                            ":zzz: **Session Terminated**: no activity for {idle} (IDLE_TIMEOUT_SECS). Re-add the label to start again."
                        ))
                        .await;
                    shared.request_stop(StopRequest {
                        reason: format!("idle for {idle}"),
                        final_status: Status::Stopped,
                    });
                    return;
                }
            }
        }
    });
}

/// A cheap, shareable view of the session's activity for the idle watch.
#[derive(Clone)]
struct Activity {
    busy: Arc<AtomicBool>,
    last: Arc<AtomicI64>,
}

impl Activity {
    fn read(&self) -> (bool, i64) {
        (
            self.busy.load(Ordering::SeqCst),
            self.last.load(Ordering::SeqCst),
        )
    }
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

/// SIGTERM (ECS stopping the task) and SIGINT stop the session like `POST /stop`.
pub(crate) fn watch_signals(shared: Arc<Shared>) {
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
            reason: format!("the container was stopped ({name})"),
            final_status: Status::Stopped,
        });
    });
}

/// After a stop: push what is left, stop the app, record the end, say so — within the deadline.
async fn shutdown(ready: &Ready, reporter: &Reporter, st: &Started, stop: StopRequest) {
    let deadline = tokio::time::Instant::now() + ready.cfg.stop_deadline;
    info!(reason = %stop.reason, "stopping");
    let left = |reserve: Duration| {
        deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .saturating_sub(reserve)
    };
    // A run in progress has already committed and pushed its work; this catches anything else.
    let start = st.repo.head().await.unwrap_or_default();
    let message = format!(
        "WIP: work in progress when the session stopped ({})",
        cca_domain::naming::clip(&stop.reason, 60)
    );
    let pushed = tokio::time::timeout(
        left(Duration::from_secs(6)),
        commit_and_push(ready, reporter, st, &ready.session, &start, &message),
    )
    .await;
    if pushed.is_err() {
        warn!("pushing the work in progress did not finish before the stop deadline");
    }
    if let Some(app) = &st.app {
        let _ = tokio::time::timeout(left(Duration::from_secs(4)), app.stop()).await;
    }
    // Nothing untrusted outlives the session: a `setsid` child of the CLI included.
    ready.sandbox.end_all().await;
    let patch = SessionPatch {
        last_activity: Some(now()),
        ..SessionPatch::default()
    };
    ready.record_end(stop.final_status, patch).await;
    let icon = if stop.final_status == Status::Completed {
        "🏁"
    } else {
        "⏹️"
    };
    reporter.update(|v| {
        v.headline = format!("{icon} {}: {}", stop.final_status, stop.reason);
        v.step = None;
        v.queued = 0;
        v.last_activity = Some(now());
    });
    let _ = tokio::time::timeout(left(Duration::ZERO), reporter.flush()).await;
    info!(status = %stop.final_status, "session ended");
}

/// The session could not start: `FAILED` with the reason, and the status comment says why.
pub(crate) async fn fail(
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
        v.headline = format!("❌ {what} failed: {reason}");
        v.step = None;
    });
    let _ = tokio::time::timeout(Duration::from_secs(10), reporter.flush()).await;
    anyhow::bail!("the {} failed: {reason}", what.to_lowercase())
}
