//! The sweeper, run by `cca sweep` and by `cca-webhook` on a scheduled event.
//!
//! Read, plan, act: [`Sweeper::snapshot`] reads the session records, the running tasks of this
//! system and (when a listener is configured) the listener's rules and the target groups;
//! [`plan::plan`] decides, without I/O, what to do and why; [`Sweeper::sweep`] does it (or, in a
//! dry run, only says it would) and returns a [`Report`].
//!
//! - Sessions idle past the limit are stopped (`STOPPING`, task stopped, `STOPPED`), and the PR is
//!   told.
//! - Sessions whose task is gone or whose heartbeat stopped are `FAILED`, and the PR is told;
//!   sessions stuck in `STOPPING` are ended.
//! - Tasks of ended sessions, and tasks of this system that no session records, are stopped.
//! - The per-session listener rules and target groups the original system made are deleted
//!   once a session record proves their session ended; others are reported and kept.
//!
//! Every change to a record is a conditional transition of the store, so a session that moved on
//! since it was read is left alone, and a second sweep finds nothing left to do.

pub mod elb;
pub mod plan;
pub mod report;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use cca_domain::session::SessionPatch;
use cca_domain::texts;
use cca_domain::{Session, SessionId, Source, Status};
use cca_github::GitHub;
use cca_launcher::{LaunchError, Launcher};
use cca_store::{ListFilter, SessionStore, StoreError};
use tracing::Instrument as _;

pub use elb::LoadBalancer;
pub use plan::{Action, Kept, Limits, Plan, Snapshot};
pub use report::{Outcome, Report, Verdict};

/// State the sweep could not read; nothing is changed when it happens.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("cannot read the sessions: {0}")]
    Store(#[from] StoreError),
    #[error("cannot read the tasks: {0}")]
    Launcher(#[from] LaunchError),
    #[error("load balancer: {0}")]
    LoadBalancer(String),
}

/// Prefix of the stop reason given to ECS (and logged by the process launcher).
const STOP_REASON_PREFIX: &str = "cca sweep: ";

/// What the sweeper works on. See the crate documentation.
#[derive(Debug, Clone)]
pub struct Sweeper {
    store: Arc<dyn SessionStore>,
    launcher: Arc<dyn Launcher>,
    limits: Limits,
    github: Option<GitHub>,
    load_balancer: Option<LoadBalancer>,
}

impl Sweeper {
    /// A sweeper of the sessions in `store` and the tasks of `launcher`; without GitHub (PRs are
    /// not told) and without a load balancer (rules and target groups are not looked at).
    pub fn new(store: Arc<dyn SessionStore>, launcher: Arc<dyn Launcher>, limits: Limits) -> Self {
        Self {
            store,
            launcher,
            limits,
            github: None,
            load_balancer: None,
        }
    }

    /// Tells PRs through `github` when it fails or stops a session.
    pub fn with_github(mut self, github: Option<GitHub>) -> Self {
        self.github = github;
        self
    }

    /// Also sweeps the leftovers of this listener.
    pub fn with_load_balancer(mut self, load_balancer: Option<LoadBalancer>) -> Self {
        self.load_balancer = load_balancer;
        self
    }

    /// Reads everything the plan needs. Failing to read the sessions or the tasks is an error;
    /// failing to read the load balancer is reported in the second value, and its part skipped.
    pub async fn snapshot(&self, now: i64) -> Result<(Snapshot, Vec<String>), SweepError> {
        let mut sessions = self.store.list(&ListFilter::default()).await?;
        let tasks = self.launcher.list_tasks().await?;

        // A task may name a session the listing missed (a DynamoDB scan is eventually
        // consistent): that record is read directly before the task is taken for an orphan.
        let mut known: HashSet<SessionId> = sessions.iter().map(|s| s.session_id.clone()).collect();
        let recorded: HashSet<String> =
            sessions.iter().filter_map(|s| s.task_arn.clone()).collect();
        for task in &tasks {
            let Some(id) = &task.session_id else { continue };
            if recorded.contains(&task.task_arn) || !known.insert(id.clone()) {
                continue;
            }
            if let Some(s) = self.store.get(id).await? {
                sessions.push(s);
            }
        }

        let listed: HashSet<&str> = tasks.iter().map(|t| t.task_arn.as_str()).collect();
        let mut task_running = BTreeMap::new();
        for s in sessions.iter().filter(|s| !s.status.is_terminal()) {
            if let Some(arn) = &s.task_arn {
                if !listed.contains(arn.as_str()) {
                    task_running.insert(arn.clone(), self.launcher.is_running(arn).await?);
                }
            }
        }

        let mut errors = Vec::new();
        let listener = match &self.load_balancer {
            None => None,
            Some(lb) => match lb.read().await {
                Ok(state) => Some(state),
                Err(e) => {
                    errors.push(format!(
                        "{e}; listener rules and target groups were not swept"
                    ));
                    None
                }
            },
        };
        Ok((
            Snapshot {
                now,
                sessions,
                tasks,
                task_running,
                listener,
            },
            errors,
        ))
    }

    /// Reads, plans and acts (or, with `dry_run`, only reports what it would do), in a root
    /// span `sweep` that each action's line carries with the session it concerns.
    pub async fn sweep(&self, now: i64, dry_run: bool) -> Result<Report, SweepError> {
        self.sweep_in_span(now, dry_run)
            .instrument(tracing::error_span!("sweep", dry_run))
            .await
    }

    async fn sweep_in_span(&self, now: i64, dry_run: bool) -> Result<Report, SweepError> {
        let (snap, errors) = self.snapshot(now).await?;
        let plan = plan::plan(&snap, &self.limits);
        let sessions: HashMap<&SessionId, &Session> =
            snap.sessions.iter().map(|s| (&s.session_id, s)).collect();
        let mut outcomes = Vec::with_capacity(plan.actions.len());
        for action in plan.actions {
            let session = action.session().and_then(|id| sessions.get(id).copied());
            let outcome = if dry_run {
                let mut details = Vec::new();
                if comment(&action).is_some() {
                    details.push(self.would_tell(session));
                }
                Outcome {
                    action,
                    result: Verdict::Planned,
                    details,
                }
            } else {
                let span = tracing::error_span!(
                    "action",
                    session = action.session().map(SessionId::as_str),
                );
                self.act(action, session, now).instrument(span).await
            };
            if outcome.result == Verdict::Failed {
                tracing::warn!(outcome = ?outcome, "sweep action failed");
            }
            outcomes.push(outcome);
        }
        let mut notes = Vec::new();
        if self.load_balancer.is_none() {
            notes.push(
                "no load balancer listener configured (ALB_LISTENER_ARN): listener rules and \
                 target groups were not checked"
                    .to_owned(),
            );
        }
        if self.github.is_none() {
            notes.push(
                "no GitHub credentials: PRs are not told about the sessions failed or stopped"
                    .to_owned(),
            );
        }
        Ok(Report {
            dry_run,
            now,
            sessions: snap.sessions.len(),
            tasks: snap.tasks.len(),
            listener_rules: snap.listener.as_ref().map(|l| l.rules.len()),
            target_groups: snap.listener.as_ref().map(|l| l.target_groups.len()),
            actions: outcomes,
            kept: plan.kept,
            notes,
            errors,
        })
    }

    /// Carries out one action.
    async fn act(&self, action: Action, session: Option<&Session>, now: i64) -> Outcome {
        let mut details = Vec::new();
        let result = match &action {
            Action::StopIdle {
                session_id,
                task_arn,
                reason,
            } => {
                let stopping = self
                    .store
                    .transition(session_id, Status::Stopping, SessionPatch::default(), now)
                    .await;
                match stopping {
                    Err(e) => moved_on(e, &mut details),
                    Ok(_) => {
                        let mut ok = self.stop(task_arn.as_deref(), reason, &mut details).await;
                        ok &= self
                            .end(session_id, Status::Stopped, None, now, &mut details)
                            .await;
                        details.push(self.tell(session, &action).await);
                        verdict(ok)
                    }
                }
            }
            Action::Fail {
                session_id,
                task_arn,
                stop_task,
                error,
            } => {
                let patch = SessionPatch {
                    error: Some(error.clone()),
                    ..SessionPatch::default()
                };
                match self
                    .store
                    .transition(session_id, Status::Failed, patch, now)
                    .await
                {
                    Err(e) => moved_on(e, &mut details),
                    Ok(_) => {
                        let task = task_arn.as_deref().filter(|_| *stop_task);
                        let ok = self.stop(task, error, &mut details).await;
                        details.push(self.tell(session, &action).await);
                        verdict(ok)
                    }
                }
            }
            Action::EndStopping {
                session_id,
                task_arn,
                stop_task,
                reason,
            } => {
                let task = task_arn.as_deref().filter(|_| *stop_task);
                let mut ok = self.stop(task, reason, &mut details).await;
                ok &= self
                    .end(session_id, Status::Stopped, None, now, &mut details)
                    .await;
                verdict(ok)
            }
            Action::StopTask {
                task_arn, reason, ..
            } => verdict(self.stop(Some(task_arn), reason, &mut details).await),
            Action::DeleteRule { rule_arn, .. } => {
                let lb = self.load_balancer.as_ref();
                match lb.map(|lb| lb.delete_rule(rule_arn)) {
                    Some(call) => verdict(noted(call.await, &mut details)),
                    None => Verdict::Skipped,
                }
            }
            Action::DeleteTargetGroup {
                target_group_arn, ..
            } => {
                let lb = self.load_balancer.as_ref();
                match lb.map(|lb| lb.delete_target_group(target_group_arn)) {
                    Some(call) => verdict(noted(call.await, &mut details)),
                    None => Verdict::Skipped,
                }
            }
        };
        Outcome {
            action,
            result,
            details,
        }
    }

    /// Stops a task, if there is one; `false` (with the reason in `details`) when it failed.
    async fn stop(&self, task_arn: Option<&str>, reason: &str, details: &mut Vec<String>) -> bool {
        let Some(arn) = task_arn else { return true };
        let why = format!("{STOP_REASON_PREFIX}{reason}");
        match self.launcher.stop(arn, &why).await {
            Ok(()) => true,
            Err(e) => {
                details.push(format!("task {arn} not stopped: {e}"));
                false
            }
        }
    }

    /// Records the end of a session; one that another writer ended meanwhile is fine.
    async fn end(
        &self,
        id: &SessionId,
        to: Status,
        error: Option<String>,
        now: i64,
        details: &mut Vec<String>,
    ) -> bool {
        let patch = SessionPatch {
            error,
            ..SessionPatch::default()
        };
        match self.store.transition(id, to, patch, now).await {
            Ok(_) => true,
            Err(StoreError::IllegalTransition { from, .. }) if from.is_terminal() => {
                details.push(format!("the session recorded {from} itself"));
                true
            }
            Err(e) => {
                details.push(format!("{to} not recorded: {e}"));
                false
            }
        }
    }

    /// Where the PR comment of a session goes: the PR, else the GitHub issue.
    fn thread(session: Option<&Session>) -> Result<(&Session, u64), String> {
        let s = session.ok_or("no record to tell about")?;
        let issue = s.issue_number.filter(|_| s.source == Source::Github);
        match s.pr_number.or(issue) {
            Some(n) => Ok((s, n)),
            None => Err("no PR or issue to tell".to_owned()),
        }
    }

    fn would_tell(&self, session: Option<&Session>) -> String {
        match (Self::thread(session), &self.github) {
            (Err(why), _) => why,
            (Ok((_, n)), Some(_)) => format!("would tell #{n}"),
            (Ok((_, n)), None) => format!("#{n} not told: no GitHub credentials"),
        }
    }

    /// Posts the action's comment (it has one) on the session's PR; says what happened.
    async fn tell(&self, session: Option<&Session>, action: &Action) -> String {
        let body = comment(action).unwrap_or_default();
        let (s, n) = match Self::thread(session) {
            Ok(found) => found,
            Err(why) => return why,
        };
        let Some(github) = &self.github else {
            return format!("#{n} not told: no GitHub credentials");
        };
        let posted = async {
            github
                .client(s.installation_id)
                .await?
                .comment(&s.repo_full_name, n, &body)
                .await
        }
        .await;
        match posted {
            Ok(_) => format!("told #{n}"),
            Err(e) => format!("#{n} not told: {e}"),
        }
    }
}

/// The comment an action posts on the session's PR, if it posts one.
fn comment(action: &Action) -> Option<String> {
    match action {
        Action::StopIdle {
            session_id, reason, ..
        } => Some(texts::swept_idle(session_id, reason)),
        Action::Fail {
            session_id, error, ..
        } => Some(texts::swept_failed(session_id, error)),
        _ => None,
    }
}

/// The first write of an action was refused: the session moved on since it was read (skipped),
/// or the store failed.
fn moved_on(e: StoreError, details: &mut Vec<String>) -> Verdict {
    match e {
        StoreError::IllegalTransition { from, .. } => {
            details.push(format!("the session is now {from}"));
            Verdict::Skipped
        }
        StoreError::NotFound(_) => {
            details.push("the session record is gone".to_owned());
            Verdict::Skipped
        }
        e => {
            details.push(e.to_string());
            Verdict::Failed
        }
    }
}

fn noted(result: Result<(), SweepError>, details: &mut Vec<String>) -> bool {
    match result {
        Ok(()) => true,
        Err(e) => {
            details.push(e.to_string());
            false
        }
    }
}

fn verdict(ok: bool) -> Verdict {
    if ok { Verdict::Done } else { Verdict::Failed }
}
