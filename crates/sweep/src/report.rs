//! What a sweep did (or, in a dry run, would do), as lines for a terminal or a log and as JSON.

use serde::Serialize;

use crate::plan::{Action, Kept, Resource};

/// What became of one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Dry run: it would be done.
    Planned,
    /// Done.
    Done,
    /// Not done, for a reason that is no fault (the session moved on meanwhile).
    Skipped,
    /// Tried and failed; `details` says why.
    Failed,
}

/// One action and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub action: Action,
    pub result: Verdict,
    /// What else happened or went wrong: the PR told or not, a task that could not be stopped.
    pub details: Vec<String>,
}

/// The report of one sweep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub dry_run: bool,
    /// Unix seconds of the sweep.
    pub now: i64,
    /// Session records read.
    pub sessions: usize,
    /// Running tasks of this system found.
    pub tasks: usize,
    /// Listener rules and target groups read; absent when the load balancer was not read.
    pub listener_rules: Option<usize>,
    pub target_groups: Option<usize>,
    pub actions: Vec<Outcome>,
    /// Leftovers kept, with the reason.
    pub kept: Vec<Kept>,
    /// Parts not swept and why (no listener configured, no GitHub credentials).
    pub notes: Vec<String>,
    /// State that could not be read; the sweep did what it could without it.
    pub errors: Vec<String>,
}

impl Report {
    /// Whether everything was read and every action done (or planned): what the exit status of
    /// `cca sweep` says.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.actions.iter().all(|o| o.result != Verdict::Failed)
    }

    /// The report as lines of text: a summary, one line per action, per kept leftover, per note
    /// and per error.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut read = format!(
            "{}, {}",
            count(self.sessions, "session"),
            count(self.tasks, "running task")
        );
        if let (Some(rules), Some(groups)) = (self.listener_rules, self.target_groups) {
            read.push_str(&format!(
                ", {}, {}",
                count(rules, "listener rule"),
                count(groups, "target group")
            ));
        }
        lines.push(if self.dry_run {
            format!("sweep (dry run, nothing is changed): {read}")
        } else {
            format!("sweep: {read}")
        });
        for o in &self.actions {
            lines.push(outcome_line(o));
        }
        if self.actions.is_empty() {
            lines.push("nothing to do".to_owned());
        }
        for k in &self.kept {
            let what = match k.resource {
                Resource::Task => "task",
                Resource::ListenerRule => "listener rule",
                Resource::TargetGroup => "target group",
            };
            let name = if k.name.is_empty() {
                String::new()
            } else {
                format!(" ({})", k.name)
            };
            lines.push(format!("kept {what} {}{name}: {}", k.arn, k.reason));
        }
        lines.extend(self.notes.iter().map(|n| format!("note: {n}")));
        lines.extend(self.errors.iter().map(|e| format!("error: {e}")));
        lines
    }
}

/// `stopped idle session abc (task …): no activity for 2 h (idle limit 60 min); told PR #3`.
fn outcome_line(o: &Outcome) -> String {
    let (done, planned, subject) = match &o.action {
        Action::StopIdle {
            session_id,
            task_arn,
            ..
        } => (
            "stopped",
            "stop",
            format!("idle session {session_id}{}", task(task_arn)),
        ),
        Action::Fail {
            session_id,
            task_arn,
            ..
        } => (
            "failed",
            "fail",
            format!("session {session_id}{}", task(task_arn)),
        ),
        Action::EndStopping {
            session_id,
            task_arn,
            ..
        } => (
            "ended",
            "end",
            format!("stopping session {session_id}{}", task(task_arn)),
        ),
        Action::StopTask { task_arn, .. } => ("stopped", "stop", format!("task {task_arn}")),
        Action::DeleteRule { rule_arn, host, .. } => (
            "deleted",
            "delete",
            format!("listener rule {rule_arn} ({host})"),
        ),
        Action::DeleteTargetGroup {
            target_group_arn,
            name,
            ..
        } => (
            "deleted",
            "delete",
            format!("target group {target_group_arn} ({name})"),
        ),
    };
    let head = match o.result {
        Verdict::Planned => format!("would {planned} {subject}"),
        Verdict::Done => format!("{done} {subject}"),
        Verdict::Skipped => format!("skipped: {planned} {subject}"),
        Verdict::Failed => format!("FAILED to {planned} {subject}"),
    };
    let mut line = format!("{head}: {}", o.action.reason());
    for d in &o.details {
        line.push_str("; ");
        line.push_str(d);
    }
    line
}

/// `1 session`, `2 sessions`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn task(arn: &Option<String>) -> String {
    arn.as_ref()
        .map_or_else(String::new, |a| format!(" (task {a})"))
}

#[cfg(test)]
mod tests {
    use cca_domain::SessionId;

    use super::*;

    #[test]
    fn lines_say_what_was_done_and_what_was_kept() {
        let id = SessionId::parse("abc123").unwrap();
        let report = Report {
            dry_run: false,
            now: 0,
            sessions: 3,
            tasks: 1,
            listener_rules: Some(4),
            target_groups: Some(5),
            actions: vec![
                Outcome {
                    action: Action::StopIdle {
                        session_id: id.clone(),
                        task_arn: Some("t1".into()),
                        reason: "no activity for 2 h (idle limit 60 min)".into(),
                    },
                    result: Verdict::Done,
                    details: vec!["told PR #3".into()],
                },
                Outcome {
                    action: Action::StopTask {
                        task_arn: "t2".into(),
                        session_id: None,
                        reason: "no session records this task".into(),
                    },
                    result: Verdict::Failed,
                    details: vec!["AccessDenied".into()],
                },
            ],
            kept: vec![Kept {
                resource: Resource::ListenerRule,
                arn: "r1".into(),
                name: "x.uat.example.com".into(),
                reason: "no record of session x".into(),
            }],
            notes: vec!["no listener configured".into()],
            errors: vec![],
        };
        assert_eq!(
            report.lines(),
            [
                "sweep: 3 sessions, 1 running task, 4 listener rules, 5 target groups",
                "stopped idle session abc123 (task t1): no activity for 2 h (idle limit 60 min); told PR #3",
                "FAILED to stop task t2: no session records this task; AccessDenied",
                "kept listener rule r1 (x.uat.example.com): no record of session x",
                "note: no listener configured",
            ]
        );
        assert!(!report.is_clean());
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["actions"][0]["action"], "stop_idle");
        assert_eq!(json["actions"][0]["result"], "done");
        assert_eq!(json["actions"][1]["task_arn"], "t2");
        assert_eq!(json["kept"][0]["resource"], "listener_rule");
    }

    #[test]
    fn a_dry_run_says_would_and_an_empty_one_says_nothing_to_do() {
        let report = Report {
            dry_run: true,
            ..Report::default()
        };
        assert_eq!(
            report.lines(),
            [
                "sweep (dry run, nothing is changed): 0 sessions, 0 running tasks",
                "nothing to do"
            ]
        );
        assert!(report.is_clean());
    }
}
