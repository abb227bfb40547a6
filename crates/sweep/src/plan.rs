//! The decision, without I/O: from a [`Snapshot`] of the session records, the running tasks and
//! the listener's rules and target groups to the [`Action`]s that clean up, each with its
//! reason, and the leftovers that are [`Kept`], with theirs.
//!
//! Every rule here acts only on what a session record proves: a session is ended, failed or
//! stopped from its own record; a listener rule or target group is deleted only when the session
//! it was made for has a record that has ended. Tasks are the one exception the job demands: a
//! task of this system that no session records is stopped (never deleted), since nothing else
//! would ever stop it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use cca_domain::{Session, SessionId, SessionType, Status};
use cca_launcher::TaskSummary;
use serde::Serialize;

/// Default of the idle limit (`IDLE_TIMEOUT_SECS`), the agent's own default: an hour.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Default of the heartbeat limit (`HEARTBEAT_TIMEOUT_SECS`): six of the agent's 30 s
/// heartbeats, so a few writes lost to throttling never fail a live session.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(180);

/// Seconds past the idle limit before the sweeper stops an idle session. The agent stops itself
/// at the same limit (checking at least every 30 s), with its warning and its own comment; the
/// sweeper only catches the sessions whose agent failed to.
pub const IDLE_MARGIN_SECS: i64 = 300;

/// Seconds a session may stay `PROVISIONING`, and a task may run before its session records it:
/// the webhook claims, launches and records within GitHub's 10 s, and Fargate pulls an image
/// and starts a container within a few minutes.
pub const START_GRACE_SECS: i64 = 600;

/// Longest target group name ELB accepts; the original cut `<session id>-tg` to it.
pub const TARGET_GROUP_NAME_LEN: usize = 32;

/// The limits the sweeper applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A session idle for longer (plus [`IDLE_MARGIN_SECS`]) is stopped.
    pub idle_timeout: Duration,
    /// A session whose last heartbeat is older is failed (stuck `STOPPING`: ended).
    pub heartbeat_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
        }
    }
}

impl Limits {
    fn idle_secs(&self) -> i64 {
        secs(self.idle_timeout)
    }

    fn heartbeat_secs(&self) -> i64 {
        secs(self.heartbeat_timeout)
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// What the sweeper looked at, read just before planning.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Unix seconds of the reading.
    pub now: i64,
    /// Every session record.
    pub sessions: Vec<Session>,
    /// The tasks of this system that run (as [`cca_launcher::Launcher::list_tasks`] lists them).
    pub tasks: Vec<TaskSummary>,
    /// Whether the task of each session that has not ended is running, for the tasks not in
    /// [`Self::tasks`] (a task that is listed runs).
    pub task_running: BTreeMap<String, bool>,
    /// The listener's rules and the target groups; `None` when they were not read.
    pub listener: Option<ListenerState>,
}

impl Snapshot {
    /// Whether a task runs: `Some(true)` when listed or found running, `Some(false)` when found
    /// stopped, `None` when it was not looked at.
    fn task_state(&self, arn: &str) -> Option<bool> {
        if self.tasks.iter().any(|t| t.task_arn == arn) {
            return Some(true);
        }
        self.task_running.get(arn).copied()
    }
}

/// The rules of the load balancer listener and the account's target groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerState {
    /// The listener (`ALB_LISTENER_ARN`).
    pub listener_arn: String,
    /// The preview domain (`UAT_DOMAIN_SUFFIX`), which per-session host names end with.
    pub domain_suffix: String,
    /// Every rule of the listener, the default one included.
    pub rules: Vec<ListenerRule>,
    /// Every target group of the region.
    pub target_groups: Vec<TargetGroup>,
}

/// One listener rule, reduced to what decides whether it was made for a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerRule {
    pub arn: String,
    /// `default` or a number.
    pub priority: String,
    pub is_default: bool,
    /// Values of its `host-header` conditions.
    pub hosts: Vec<String>,
    /// Whether it has conditions on anything but the host.
    pub other_conditions: bool,
    /// Target groups its actions forward to.
    pub target_groups: Vec<String>,
}

/// One target group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetGroup {
    pub arn: String,
    pub name: String,
}

/// Something to do, with the reason. The executor applies them in the order planned: sessions,
/// then tasks, then listener rules, then target groups (a rule must go before the target group
/// it forwards to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Idle past the limit: record `STOPPING`, stop the task, record `STOPPED`, tell the PR.
    StopIdle {
        session_id: SessionId,
        task_arn: Option<String>,
        reason: String,
    },
    /// Dead: record `FAILED` with `error`, stop the task when it may still run, tell the PR.
    Fail {
        session_id: SessionId,
        task_arn: Option<String>,
        stop_task: bool,
        error: String,
    },
    /// Stuck in `STOPPING`: stop the task when it may still run, record `STOPPED`.
    EndStopping {
        session_id: SessionId,
        task_arn: Option<String>,
        stop_task: bool,
        reason: String,
    },
    /// A task that should not run: its session ended, or no session records it.
    StopTask {
        task_arn: String,
        session_id: Option<SessionId>,
        reason: String,
    },
    /// A per-session listener rule of the original system whose session ended.
    DeleteRule {
        rule_arn: String,
        host: String,
        session_id: SessionId,
        reason: String,
    },
    /// A per-session target group of the original system whose sessions ended.
    DeleteTargetGroup {
        target_group_arn: String,
        name: String,
        session_ids: Vec<SessionId>,
        reason: String,
    },
}

impl Action {
    /// Why this is done.
    pub fn reason(&self) -> &str {
        match self {
            Action::StopIdle { reason, .. }
            | Action::EndStopping { reason, .. }
            | Action::StopTask { reason, .. }
            | Action::DeleteRule { reason, .. }
            | Action::DeleteTargetGroup { reason, .. } => reason,
            Action::Fail { error, .. } => error,
        }
    }

    /// The session whose record it changes, if any.
    pub fn session(&self) -> Option<&SessionId> {
        match self {
            Action::StopIdle { session_id, .. }
            | Action::Fail { session_id, .. }
            | Action::EndStopping { session_id, .. } => Some(session_id),
            _ => None,
        }
    }
}

/// What kind of resource a [`Kept`] entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Task,
    ListenerRule,
    TargetGroup,
}

/// A leftover that looks like it could go but is kept, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub resource: Resource,
    pub arn: String,
    /// The host name of a rule, the name of a target group, the session of a task.
    pub name: String,
    pub reason: String,
}

/// The outcome of planning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub kept: Vec<Kept>,
}

/// Decides what to do about `snap` under `limits`. See the module documentation.
pub fn plan(snap: &Snapshot, limits: &Limits) -> Plan {
    let mut out = Plan::default();
    for session in &snap.sessions {
        if let Some(action) = plan_session(session, snap, limits) {
            out.actions.push(action);
        }
    }
    plan_tasks(snap, &mut out);
    if let Some(listener) = &snap.listener {
        plan_listener(listener, &snap.sessions, &mut out);
    }
    out
}

/// Seconds as a short human reading: `45 s`, `3 min 1 s`, `12 min`, `2 h 5 min`.
pub fn human(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 600 && s % 60 != 0 => format!("{} min {} s", s / 60, s % 60),
        s if s < 7200 => format!("{} min", s / 60),
        s => match (s % 3600) / 60 {
            0 => format!("{} h", s / 3600),
            m => format!("{} h {m} min", s / 3600),
        },
    }
}

/// Why a session's container counts as dead, if it does: its last heartbeat is older than the
/// limit, or, for an agent that never wrote one, the record's last change is older than the
/// limit and the start grace.
fn silence(s: &Session, limits: &Limits, now: i64) -> Option<String> {
    match s.heartbeat_at {
        Some(at) => (now - at > limits.heartbeat_secs()).then(|| {
            format!(
                "heartbeat stopped: the last was {} ago (limit {})",
                human(now - at),
                human(limits.heartbeat_secs())
            )
        }),
        None => {
            let at = s.updated_at.max(s.created_at);
            let limit = limits.heartbeat_secs().max(START_GRACE_SECS);
            (now - at > limit).then(|| {
                format!(
                    "no heartbeat and no change for {} (limit {})",
                    human(now - at),
                    human(limit)
                )
            })
        }
    }
}

fn plan_session(s: &Session, snap: &Snapshot, limits: &Limits) -> Option<Action> {
    let now = snap.now;
    let id = s.session_id.clone();
    let task = s.task_arn.clone();
    let state = task.as_deref().and_then(|arn| snap.task_state(arn));
    // Stopping a task that may run is cheap and safe; only one known to be gone is spared.
    let may_run = task.is_some() && state != Some(false);
    match s.status {
        // Waiting for a place, with no task: its turn is the webhook's to give.
        Status::Queued => None,
        Status::Provisioning => {
            let age = now - s.updated_at;
            if age <= START_GRACE_SECS {
                return None;
            }
            let error = match &task {
                None => format!(
                    "launch did not complete: no task was recorded within {}",
                    human(START_GRACE_SECS)
                ),
                Some(_) => format!("container did not start within {}", human(START_GRACE_SECS)),
            };
            Some(Action::Fail {
                session_id: id,
                stop_task: may_run,
                task_arn: task,
                error,
            })
        }
        Status::Starting | Status::Running | Status::Idle => {
            if state == Some(false) {
                return Some(Action::Fail {
                    session_id: id,
                    task_arn: task,
                    stop_task: false,
                    error: "task no longer running".to_owned(),
                });
            }
            if let Some(error) = silence(s, limits, now) {
                return Some(Action::Fail {
                    session_id: id,
                    stop_task: may_run,
                    task_arn: task,
                    error,
                });
            }
            // A coding session is RUNNING while a run is in progress, which records no activity
            // and is bounded by the agent's own run time-out; a preview stays RUNNING and its
            // activity is the proxy's traffic.
            let idle_counts = s.status == Status::Idle
                || (s.status == Status::Running && s.session_type == SessionType::Preview);
            let since = s.last_activity.unwrap_or(s.created_at);
            if idle_counts && now - since > limits.idle_secs().saturating_add(IDLE_MARGIN_SECS) {
                return Some(Action::StopIdle {
                    session_id: id,
                    task_arn: task,
                    reason: format!(
                        "no activity for {} (idle limit {})",
                        human(now - since),
                        human(limits.idle_secs())
                    ),
                });
            }
            None
        }
        Status::Stopping => {
            if state == Some(false) {
                return Some(Action::EndStopping {
                    session_id: id,
                    task_arn: task,
                    stop_task: false,
                    reason: "stuck STOPPING: its task ended without recording the end".to_owned(),
                });
            }
            if let Some(why) = silence(s, limits, now) {
                return Some(Action::EndStopping {
                    session_id: id,
                    stop_task: may_run,
                    task_arn: task,
                    reason: format!("stuck STOPPING: {why}"),
                });
            }
            None
        }
        Status::Stopped | Status::Completed | Status::Failed => {
            let arn = task?;
            // Listed tasks only: ended sessions are many, and their tasks are not looked up one
            // by one. The agent records its end just before it exits, so a moment is allowed.
            let runs = snap.tasks.iter().any(|t| t.task_arn == arn);
            let ended_for = now - s.updated_at;
            (runs && ended_for > limits.heartbeat_secs()).then(|| Action::StopTask {
                task_arn: arn,
                session_id: Some(id.clone()),
                reason: format!(
                    "session {id} ended {} {} ago, but its task still runs",
                    s.status,
                    human(ended_for)
                ),
            })
        }
    }
}

fn plan_tasks(snap: &Snapshot, out: &mut Plan) {
    let recorded: HashSet<&str> = snap
        .sessions
        .iter()
        .filter_map(|s| s.task_arn.as_deref())
        .collect();
    let by_id: HashMap<&SessionId, &Session> =
        snap.sessions.iter().map(|s| (&s.session_id, s)).collect();
    for task in &snap.tasks {
        if recorded.contains(task.task_arn.as_str()) {
            continue;
        }
        let session = task.session_id.as_ref().and_then(|id| by_id.get(id));
        let keep = |reason: String| Kept {
            resource: Resource::Task,
            arn: task.task_arn.clone(),
            name: task
                .session_id
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
            reason,
        };
        if let Some(created) = task.created_at {
            let age = snap.now - created;
            if age <= START_GRACE_SECS {
                out.kept.push(keep(format!(
                    "started {} ago: its session may not have recorded it yet",
                    human(age)
                )));
                continue;
            }
        }
        let reason = match (session, &task.session_id) {
            (Some(s), _) if !s.status.is_terminal() && s.task_arn.is_none() => {
                out.kept.push(keep(format!(
                    "session {} is {} and has not recorded a task yet",
                    s.session_id, s.status
                )));
                continue;
            }
            (Some(s), _) if s.status.is_terminal() => {
                format!("session {} ended {}", s.session_id, s.status)
            }
            (Some(s), _) => format!(
                "session {} runs another task ({})",
                s.session_id,
                s.task_arn.as_deref().unwrap_or("-")
            ),
            (None, Some(id)) => format!("no session record of {id}"),
            (None, None) => "it names no session".to_owned(),
        };
        out.actions.push(Action::StopTask {
            task_arn: task.task_arn.clone(),
            session_id: task.session_id.clone(),
            reason: format!("no session records this task: {reason}"),
        });
    }
}

/// The session a rule was made for, when it is one of the original's per-session rules: not the
/// default, only host conditions, exactly one host `<session id>.<domain suffix>`.
pub fn rule_session(rule: &ListenerRule, domain_suffix: &str) -> Option<SessionId> {
    if rule.is_default || rule.other_conditions {
        return None;
    }
    let [host] = rule.hosts.as_slice() else {
        return None;
    };
    let suffix = domain_suffix.trim_start_matches('.').to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let label = host.strip_suffix(&suffix)?.strip_suffix('.')?;
    if label.contains('.') {
        return None;
    }
    SessionId::parse(label).ok()
}

/// The target group name the original made for a session: `<session id>-tg`, cut to
/// [`TARGET_GROUP_NAME_LEN`] characters.
pub fn target_group_name(id: &SessionId) -> String {
    format!("{id}-tg")
        .chars()
        .take(TARGET_GROUP_NAME_LEN)
        .collect()
}

/// Why a leftover made for `ids` cannot go, if it cannot: a session without a record or one that
/// has not ended.
fn blocker(ids: &BTreeSet<SessionId>, by_id: &HashMap<&SessionId, &Session>) -> Option<String> {
    ids.iter().find_map(|id| match by_id.get(id) {
        None => Some(format!(
            "no record of session {id}: nothing is deleted without a record proving its session ended"
        )),
        Some(s) if !s.status.is_terminal() => Some(format!("session {id} is {}", s.status)),
        Some(_) => None,
    })
}

fn ended(ids: &BTreeSet<SessionId>, by_id: &HashMap<&SessionId, &Session>) -> String {
    ids.iter()
        .map(|id| {
            let status = by_id.get(id).map_or("?", |s| s.status.as_str());
            format!("session {id} ended {status}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn plan_listener(listener: &ListenerState, sessions: &[Session], out: &mut Plan) {
    let by_id: HashMap<&SessionId, &Session> =
        sessions.iter().map(|s| (&s.session_id, s)).collect();
    let mut deleted = HashSet::new();
    // Sessions each target group was made for, as the per-session rules forwarding to it say.
    let mut via_rules: HashMap<&str, BTreeSet<SessionId>> = HashMap::new();
    for rule in &listener.rules {
        let Some(id) = rule_session(rule, &listener.domain_suffix) else {
            continue;
        };
        for tg in &rule.target_groups {
            via_rules.entry(tg).or_default().insert(id.clone());
        }
        let host = rule.hosts.first().cloned().unwrap_or_default();
        let ids = BTreeSet::from([id.clone()]);
        match blocker(&ids, &by_id) {
            None => {
                deleted.insert(rule.arn.as_str());
                out.actions.push(Action::DeleteRule {
                    rule_arn: rule.arn.clone(),
                    host,
                    reason: format!("per-session rule left behind: {}", ended(&ids, &by_id)),
                    session_id: id,
                });
            }
            Some(reason) => out.kept.push(Kept {
                resource: Resource::ListenerRule,
                arn: rule.arn.clone(),
                name: host,
                reason,
            }),
        }
    }

    // Target groups still forwarded to by a rule that stays (the wildcard rule's proxy target
    // group among them) are never deleted.
    let mut in_use: HashMap<&str, Vec<&str>> = HashMap::new();
    for rule in listener
        .rules
        .iter()
        .filter(|r| !deleted.contains(r.arn.as_str()))
    {
        for tg in &rule.target_groups {
            in_use.entry(tg).or_default().push(&rule.priority);
        }
    }
    for tg in &listener.target_groups {
        let mut ids: BTreeSet<SessionId> = sessions
            .iter()
            .filter(|s| target_group_name(&s.session_id) == tg.name)
            .map(|s| s.session_id.clone())
            .collect();
        if let Some(more) = via_rules.get(tg.arn.as_str()) {
            ids.extend(more.iter().cloned());
        }
        if ids.is_empty() {
            continue; // not made for a session this system knows of
        }
        let keep = |reason: String| Kept {
            resource: Resource::TargetGroup,
            arn: tg.arn.clone(),
            name: tg.name.clone(),
            reason,
        };
        if let Some(priorities) = in_use.get(tg.arn.as_str()) {
            out.kept.push(keep(format!(
                "in use by the listener rule of priority {}",
                priorities.join(", ")
            )));
            continue;
        }
        match blocker(&ids, &by_id) {
            None => out.actions.push(Action::DeleteTargetGroup {
                target_group_arn: tg.arn.clone(),
                name: tg.name.clone(),
                reason: format!(
                    "per-session target group left behind: {}",
                    ended(&ids, &by_id)
                ),
                session_ids: ids.into_iter().collect(),
            }),
            Some(reason) => out.kept.push(keep(reason)),
        }
    }
}

#[cfg(test)]
mod tests;
