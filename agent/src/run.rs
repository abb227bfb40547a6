//! One run: the CLI on one prompt, then the commit and push, the ledger, the record, and the
//! run's end reported to every destination.

use std::path::PathBuf;

use cca_domain::Session;
use cca_domain::session::SessionPatch;
use cca_domain::texts as texts_root;
use cca_domain::texts::agent::{self as texts, RunSummary};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::agent::{Started, publish_status};
use crate::cli::{self, Adapter, CliEvent, RunRequest};
use crate::control::{Prompt, Thread};
use crate::conversation;
use crate::ledger::{RunFigures, run_limit, summary_limit};
use crate::push::{Pushed, commit_and_push};
use crate::report::Reporter;
use crate::setup::{CLI_SETTINGS, Ready, now};

/// Runs `prompt` to its end; every outcome, a failure included, is reported.
pub(crate) async fn run_one(
    ready: &Ready,
    reporter: &Reporter,
    st: &Started,
    session: &Session,
    adapter: &dyn Adapter,
    prompt: Prompt,
) {
    let limits = &ready.limits_now();
    restore_conversation(ready, st).await;
    let plan = st.ledger.lock().await.begin_run(limits, |id| {
        adapter.resumes() && conversation_exists(ready, id)
    });
    let number = plan.number;
    publish_status(&ready.shared, st, "running").await;
    reporter.update(|v| {
        v.headline = texts::headline::run_in_progress(number, prompt.author.as_deref());
        v.step = Some(texts::step::THINKING.into());
        v.runs = number;
        v.queued = ready.shared.queue_len();
        v.last_activity = Some(now());
    });
    let start = match st.repo.head().await {
        Ok(h) => h,
        Err(e) => {
            reporter
                .post_logged(&texts::run_could_not_start(number, &e.to_string()))
                .await;
            ready.shared.set_last_failed(Some(prompt));
            return;
        }
    };
    // Read once: an approval that arrives during a plan run makes the next run implement.
    let planning = ready.shared.planning();
    // What was untracked before a plan run stays; unreadable, nothing untracked is removed.
    let untracked_before = match planning {
        true => st.repo.untracked().await.map_err(|e| {
            warn!(error = %ready.secrets.mask(&e.to_string()), "cannot list the untracked files before the plan run");
        }).ok(),
        false => None,
    };
    let req = RunRequest {
        prompt: match planning {
            true => format!("{}\n\n{}", texts_root::PLAN_MODE_NOTE, prompt.text),
            false => prompt.text.clone(),
        },
        resume: plan.resume.clone(),
        max_turns: plan.max_turns,
        max_budget_usd: plan.cli_budget_usd,
        workdir: st.repo.dir().to_path_buf(),
        plan: planning,
    };
    let mut env = cli_env(ready);
    env.push(("CCA_SESSION_ID".into(), session.session_id.to_string()));
    if let Some(gateway) = &ready.gateway {
        gateway.begin_run(plan.budget_usd, limits.max_cost_per_session_usd);
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let progress = spawn_progress(reporter.clone(), rx);
    info!(run = number, resume = ?plan.resume, planning, "run starting");
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
    let presented = progress.await.ok().flatten();

    let stopping = ready.shared.stop_requested();
    let message = match &stopping {
        Some(stop) => texts::wip_commit_message(&stop.reason),
        None => texts::run_commit_message(number, &prompt.text),
    };
    let Pushed {
        commits,
        files,
        error: push_error,
    } = match planning {
        // A plan changes nothing: whatever the run left, committed or not, is undone.
        true => {
            if let Err(e) = st
                .repo
                .discard_since(&start, untracked_before.as_ref())
                .await
            {
                warn!(error = %ready.secrets.mask(&e.to_string()), "cannot undo what the plan run changed");
            }
            Pushed::default()
        }
        false => commit_and_push(ready, reporter, st, session, &start, &message).await,
    };
    if stopping.is_none() && !planning {
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
    // What `/claude retry` runs again: a run that failed, not one a stop cut short.
    ready
        .shared
        .set_last_failed((failure.is_some() && stopping.is_none()).then(|| prompt.clone()));
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
    let conversation_kept = conversation.clone();
    let patch = SessionPatch {
        cost_usd: Some(cost),
        turns: Some(turns),
        runs: Some(number),
        claude_session_id: conversation,
        last_activity: Some(now()),
        // Approved since the run began, or still planning: the record says which.
        plan_mode: (planning || session.plan_mode).then(|| ready.shared.planning()),
        error: failure
            .as_ref()
            .map(|f| texts::run_failed_error(number, f))
            .or(push_error
                .as_ref()
                .map(|e| texts::run_push_failed_error(number, e))),
        ..SessionPatch::default()
    };
    if let Err(e) = ready.store.update(&session.session_id, patch, now()).await {
        warn!(error = %e, "cannot record the run");
    }
    let keep = keep_conversation(ready, conversation_kept.as_deref());
    if stopping.is_some() {
        if tokio::time::timeout(KEEP_WHEN_STOPPING, keep)
            .await
            .is_err()
        {
            warn!("keeping the conversation did not finish before the stop");
        }
    } else {
        keep.await;
    }
    reporter.update(|v| {
        v.turns = turns;
        v.cost_usd = cost;
        v.last_activity = Some(now());
    });
    if planning {
        ready.shared.plan_posted();
        reporter
            .post_logged(&texts::plan_posted(
                number,
                presented.as_deref().unwrap_or(&summary.text),
                summary.succeeded,
                summary.failure.as_deref(),
            ))
            .await;
    } else {
        for destination in &st.destinations {
            destination.run_ended(&summary, stopping.is_some()).await;
        }
    }
    let answers = answer_threads(reporter, &prompt.threads, &summary);
    if stopping.is_some() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), answers).await;
    } else {
        answers.await;
    }
    info!(
        run = number,
        succeeded = outcome.succeeded(),
        commits = commits.len(),
        "run finished"
    );
}

/// How long keeping the conversation may hold up a stop.
const KEEP_WHEN_STOPPING: std::time::Duration = std::time::Duration::from_secs(3);

/// Restores the conversation the ledger resumes when this container does not hold it (a new
/// container after an idle stop or a crash), from where the session keeps it.
async fn restore_conversation(ready: &Ready, st: &Started) {
    let Some(store) = &ready.cfg.conversations else {
        return;
    };
    let Some(id) = st.ledger.lock().await.conversation.clone() else {
        return;
    };
    let dir = cli_config_dir(ready);
    if cli::has_conversation(&dir, &id) {
        return;
    }
    let mask = |e: &anyhow::Error| ready.secrets.mask(&format!("{e:#}"));
    match store.get(&ready.session.session_id).await {
        Ok(Some(archive)) => match conversation::unpack(&ready.sandbox, &dir, archive).await {
            Ok(()) if cli::has_conversation(&dir, &id) => {
                info!(conversation = %id, "the conversation was restored");
            }
            Ok(()) => warn!(conversation = %id, "the kept conversation is another one"),
            Err(e) => warn!(error = %mask(&e), "cannot restore the conversation"),
        },
        Ok(None) => info!(conversation = %id, "no conversation is kept for this session"),
        Err(e) => warn!(error = %mask(&e), "cannot read the kept conversation"),
    }
}

/// Saves conversation `id` where the session keeps it, replacing the one saved before.
async fn keep_conversation(ready: &Ready, id: Option<&str>) {
    let (Some(store), Some(id)) = (&ready.cfg.conversations, id) else {
        return;
    };
    let mask = |e: &anyhow::Error| ready.secrets.mask(&format!("{e:#}"));
    match conversation::pack(&ready.sandbox, &cli_config_dir(ready), id).await {
        Ok(Some(archive)) => {
            let bytes = archive.len();
            match store.put(&ready.session.session_id, archive).await {
                Ok(()) => info!(conversation = %id, bytes, "the conversation is kept"),
                Err(e) => warn!(error = %mask(&e), "cannot keep the conversation"),
            }
        }
        Ok(None) => info!(conversation = %id, "the CLI holds no files of the conversation"),
        Err(e) => warn!(error = %mask(&e), "cannot pack the conversation"),
    }
}

/// Answers in each review thread the prompt came from: whether the run's commits changed the
/// thread's file.
async fn answer_threads(reporter: &Reporter, threads: &[Thread], summary: &RunSummary) {
    for t in threads {
        let changed = summary.files.iter().any(|f| f.path == t.path);
        let body = texts::thread_reply(
            summary.number,
            summary.succeeded,
            &t.path,
            changed,
            &summary.commits,
        );
        reporter.reply_in_thread(t.comment_id, &body).await;
    }
}

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

/// Whether `id` can be resumed here (a relaunched container starts without the conversation).
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

/// Turns the CLI's events into the status comment's current step; the last plan the model
/// presented to leave plan mode, if it did.
fn spawn_progress(
    reporter: Reporter,
    mut rx: mpsc::UnboundedReceiver<CliEvent>,
) -> tokio::task::JoinHandle<Option<String>> {
    tokio::spawn(async move {
        let mut plan = None;
        while let Some(ev) = rx.recv().await {
            if let CliEvent::Plan(p) = &ev {
                plan = Some(p.clone());
            }
            let step = match &ev {
                CliEvent::Tool { name, detail } => Some(texts::step::tool(name, detail)),
                CliEvent::Text(t) => Some(texts::step::text(t)),
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
        plan
    })
}
