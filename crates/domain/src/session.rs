//! The session record and its state machine.
//!
//! `PROVISIONING → STARTING → RUNNING ⇄ IDLE → STOPPING → STOPPED | COMPLETED`, and `FAILED` from
//! any state that has not ended; `PROVISIONING ⇄ QUEUED` (and `QUEUED → STOPPING`) for a session
//! that waits for the installation's ceiling on active sessions. The stores refuse an illegal transition with a conditional write
//! built from [`Status::allowed_predecessors`], so a late or duplicated writer cannot move a
//! session backwards.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{BranchName, JiraKey, RepoName, SessionId};

/// Seconds a session record is kept after it ends (DynamoDB `ttl`), as the original: 7 days.
pub const TERMINAL_TTL_SECS: i64 = 7 * 24 * 3600;

/// Seconds since the Unix epoch: the time unit of every timestamp in the record.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionType {
    /// A coding session: Claude Code implementing an issue on a PR branch.
    Agent,
    /// A PR preview environment (`tt-…`).
    Preview,
}

/// Where the work came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Github,
    Jira,
}

/// Which image channel a session runs: `latest` or `staging`, each with its own task definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageChannel {
    #[default]
    Latest,
    Staging,
}

/// The lifecycle of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Record made; branch, PR and task being created.
    Provisioning,
    /// Waiting for a place under the installation's `MAX_ACTIVE_SESSIONS`: branch and PR made,
    /// no task yet.
    Queued,
    /// The container has started and is cloning and installing.
    Starting,
    /// Working, or ready for follow-ups.
    Running,
    /// Alive but with nothing to do.
    Idle,
    /// Asked to stop; pushing work in progress.
    Stopping,
    /// Stopped by a person, a limit or the idle timeout.
    Stopped,
    /// Ended because its work ended (PR merged or closed).
    Completed,
    /// Ended by an error; `error` says which.
    Failed,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 9] = [
        Status::Provisioning,
        Status::Queued,
        Status::Starting,
        Status::Running,
        Status::Idle,
        Status::Stopping,
        Status::Stopped,
        Status::Completed,
        Status::Failed,
    ];

    /// The stored spelling, e.g. `RUNNING`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Provisioning => "PROVISIONING",
            Status::Queued => "QUEUED",
            Status::Starting => "STARTING",
            Status::Running => "RUNNING",
            Status::Idle => "IDLE",
            Status::Stopping => "STOPPING",
            Status::Stopped => "STOPPED",
            Status::Completed => "COMPLETED",
            Status::Failed => "FAILED",
        }
    }

    /// Whether the session has ended (its task should not be running).
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Stopped | Status::Completed | Status::Failed)
    }

    /// Whether moving from `self` to `to` is a legal step of the lifecycle. Writing the same
    /// status again is not a transition and is refused, so a duplicate writer learns it lost.
    pub fn can_transition_to(self, to: Status) -> bool {
        use Status::*;
        match (self, to) {
            (from, Failed) => !from.is_terminal(),
            (Provisioning, Starting | Stopping | Queued) => true,
            (Queued, Provisioning | Stopping) => true,
            (Starting, Running | Stopping) => true,
            (Running, Idle | Stopping) => true,
            (Idle, Running | Stopping) => true,
            (Stopping, Stopped | Completed) => true,
            _ => false,
        }
    }

    /// The statuses from which `to` may be reached: what a store puts in its condition.
    pub fn allowed_predecessors(to: Status) -> Vec<Status> {
        Status::ALL
            .into_iter()
            .filter(|from| from.can_transition_to(to))
            .collect()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status string that is not one of the nine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown session status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

macro_rules! lower_enum_str {
    ($t:ty, $($v:ident => $s:literal),+) => {
        impl $t {
            /// The stored spelling.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
        }
        impl FromStr for $t {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($s => Ok(Self::$v),)+ _ => Err(UnknownStatus(s.to_owned())) }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
lower_enum_str!(SessionType, Agent => "agent", Preview => "preview");
lower_enum_str!(Source, Github => "github", Jira => "jira");
lower_enum_str!(ImageChannel, Latest => "latest", Staging => "staging");

/// The record of one session, as stored (DynamoDB item or SQLite row, same fields).
///
/// Times are Unix seconds. Fields the agent fills in later (address, cost) start empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub session_id: SessionId,
    pub session_type: SessionType,
    pub source: Source,
    pub repo_full_name: RepoName,
    /// The GitHub issue (agent sessions from GitHub) or the PR (previews).
    pub issue_number: Option<u64>,
    pub pr_number: Option<u64>,
    pub branch_name: BranchName,
    pub jira_issue_key: Option<JiraKey>,
    pub status: Status,
    pub image_channel: ImageChannel,
    /// The GitHub App installation that acts on the repository (absent with a personal token).
    pub installation_id: Option<u64>,
    /// The first prompt; read by the agent from here, since ECS overrides are limited to 8 KB.
    pub initial_prompt: Option<String>,
    /// The review threads the first prompt came from (a review that relaunched the session),
    /// as JSON `[{"comment_id": …, "path": …}]`: the first run answers in them. Cleared by
    /// every relaunch that does not set it.
    pub prompt_threads: Option<String>,
    pub task_arn: Option<String>,
    pub container_ip: Option<String>,
    pub app_port: Option<u16>,
    pub control_port: Option<u16>,
    pub uat_url: Option<String>,
    pub claude_session_id: Option<String>,
    pub cost_usd: Option<f64>,
    pub turns: Option<u32>,
    /// Runs the session's agent made (across relaunches): the next run's number follows it.
    pub runs: Option<u32>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_activity: Option<i64>,
    /// When the agent last said it was alive (every heartbeat interval while it runs); the
    /// sweeper fails sessions whose heartbeat stopped.
    pub heartbeat_at: Option<i64>,
    /// Expiry (Unix seconds) once the session has ended; DynamoDB's TTL attribute.
    pub ttl: Option<i64>,
    /// The repository declared its previews public (`[preview] public = true` in `.cca.toml`):
    /// the proxy serves this session without sign-in. Absent (false) unless the agent read it.
    pub preview_public: bool,
    /// The session plans before it implements (`claude-plan`, or `[agent] plan = true` in the
    /// default branch's `.cca.toml`): its runs post a plan and commit nothing until a writer's
    /// `/claude approve` clears this.
    pub plan_mode: bool,
}

impl Session {
    /// A new session in `PROVISIONING`, with nothing of the container known yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        session_id: SessionId,
        session_type: SessionType,
        source: Source,
        repo_full_name: RepoName,
        branch_name: BranchName,
        image_channel: ImageChannel,
        now: i64,
    ) -> Self {
        Self {
            session_id,
            session_type,
            source,
            repo_full_name,
            issue_number: None,
            pr_number: None,
            branch_name,
            jira_issue_key: None,
            status: Status::Provisioning,
            image_channel,
            installation_id: None,
            initial_prompt: None,
            prompt_threads: None,
            task_arn: None,
            container_ip: None,
            app_port: None,
            control_port: None,
            uat_url: None,
            claude_session_id: None,
            cost_usd: None,
            turns: None,
            runs: None,
            error: None,
            created_at: now,
            updated_at: now,
            last_activity: None,
            heartbeat_at: None,
            ttl: None,
            preview_public: false,
            plan_mode: false,
        }
    }

    /// The key under which at most one session may be active: one agent session per GitHub issue
    /// or JIRA key, one preview per PR.
    pub fn active_key(&self) -> ActiveKey {
        match (self.session_type, &self.jira_issue_key) {
            (SessionType::Agent, Some(key)) => ActiveKey::jira(key),
            (SessionType::Agent, None) => {
                ActiveKey::issue(&self.repo_full_name, self.issue_number.unwrap_or(0))
            }
            (SessionType::Preview, _) => {
                ActiveKey::preview(&self.repo_full_name, self.pr_number.unwrap_or(0))
            }
        }
    }
}

/// What a status change also writes. `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionPatch {
    pub pr_number: Option<u64>,
    pub task_arn: Option<String>,
    pub container_ip: Option<String>,
    pub app_port: Option<u16>,
    pub control_port: Option<u16>,
    pub uat_url: Option<String>,
    pub claude_session_id: Option<String>,
    pub cost_usd: Option<f64>,
    pub turns: Option<u32>,
    pub runs: Option<u32>,
    pub error: Option<String>,
    pub last_activity: Option<i64>,
    /// When the agent last said it was alive (every heartbeat interval while it runs); the
    /// sweeper fails sessions whose heartbeat stopped.
    pub heartbeat_at: Option<i64>,
    pub initial_prompt: Option<String>,
    /// See [`Session::prompt_threads`].
    pub prompt_threads: Option<String>,
    /// See [`Session::preview_public`].
    pub preview_public: Option<bool>,
    /// See [`Session::plan_mode`].
    pub plan_mode: Option<bool>,
}

/// The uniqueness key of active sessions, e.g. `agent:octo/hello#12`, `jira:PROJ-3`,
/// `preview:octo/hello#40`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActiveKey(String);

impl ActiveKey {
    /// The agent session of a GitHub issue.
    pub fn issue(repo: &RepoName, issue: u64) -> Self {
        Self(format!("agent:{repo}#{issue}"))
    }
    /// The agent session of a JIRA issue (whatever repository it maps to).
    pub fn jira(key: &JiraKey) -> Self {
        Self(format!("jira:{key}"))
    }
    /// The preview of a PR.
    pub fn preview(repo: &RepoName, pr: u64) -> Self {
        Self(format!("preview:{repo}#{pr}"))
    }
    /// The text of the key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ActiveKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_of_statuses_is_decided() {
        use Status::*;
        let legal = [
            (Provisioning, Starting),
            (Provisioning, Stopping),
            (Provisioning, Queued),
            (Queued, Provisioning),
            (Queued, Stopping),
            (Starting, Running),
            (Starting, Stopping),
            (Running, Idle),
            (Running, Stopping),
            (Idle, Running),
            (Idle, Stopping),
            (Stopping, Stopped),
            (Stopping, Completed),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                let expected = legal.contains(&(from, to)) || (to == Failed && !from.is_terminal());
                assert_eq!(from.can_transition_to(to), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn terminal_states_have_no_way_out_but_relaunch() {
        for from in [Status::Stopped, Status::Completed, Status::Failed] {
            assert!(Status::ALL.iter().all(|to| !from.can_transition_to(*to)));
        }
        // Only a queued session's turn reaches PROVISIONING by a transition; a new or ended
        // one gets there by `create` or `relaunch`.
        assert_eq!(
            Status::allowed_predecessors(Status::Provisioning),
            vec![Status::Queued]
        );
    }

    #[test]
    fn statuses_round_trip_their_spelling() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("running".parse::<Status>().is_err());
    }

    #[test]
    fn active_keys() {
        let repo = RepoName::parse("o/r").unwrap();
        let mut s = Session::new(
            SessionId::random_agent(),
            SessionType::Agent,
            Source::Github,
            repo.clone(),
            crate::naming::issue_branch(3),
            ImageChannel::Latest,
            0,
        );
        s.issue_number = Some(3);
        assert_eq!(s.active_key().as_str(), "agent:o/r#3");
        s.jira_issue_key = Some(JiraKey::parse("P-9").unwrap());
        assert_eq!(s.active_key().as_str(), "jira:P-9");
        s.session_type = SessionType::Preview;
        s.pr_number = Some(5);
        assert_eq!(s.active_key(), ActiveKey::preview(&repo, 5));
    }
}
