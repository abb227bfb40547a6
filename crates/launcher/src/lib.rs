//! Launchers start and stop the container of a session.
//!
//! Two implementations behind one interface: [`EcsLauncher`] runs an ECS Fargate task (the
//! deployed system) and [`ProcessLauncher`] spawns `cca-agent` as a local process (`cca up`).
//! Both pass the same settings, built once by [`LaunchRequest::environment`]; neither passes a
//! secret: the agent reads its credentials itself (Secrets Manager or local files), and reads its
//! prompt from the session record.

mod ecs;
mod process;

use async_trait::async_trait;
use cca_domain::{BranchName, ImageChannel, RepoName, SessionId, SessionType};
use secrecy::{ExposeSecret, SecretString};

pub use ecs::{
    DEFAULT_AGENT_CONTAINER, DEFAULT_PREVIEW_CONTAINER, DEFAULT_STARTED_BY_PREFIX, EcsLauncher,
    EcsSettings, MAX_STARTED_BY_LEN, MAX_STOP_REASON_LEN, TaskDefinitions,
};
pub use process::ProcessLauncher;

/// Names of the variables every launcher sets for the agent, read by `cca-agent` at start-up.
pub mod env {
    /// The session id.
    pub const SESSION_ID: &str = "SESSION_ID";
    /// `agent` or `preview`.
    pub const SESSION_TYPE: &str = "SESSION_TYPE";
    /// `latest` or `staging`.
    pub const IMAGE_CHANNEL: &str = "IMAGE_CHANNEL";
    /// `owner/name`, the name kept from the original.
    pub const REPO_FULL_NAME: &str = "REPO_FULL_NAME";
    /// The branch the session works on (agent) or serves (preview).
    pub const BRANCH_NAME: &str = "BRANCH_NAME";
    /// The session's control token: the agent's proof of its session, to the control plane's
    /// token broker and from the webhook's control calls. Never logged.
    pub const SESSION_TOKEN: &str = "CCA_SESSION_TOKEN";
}

/// What to start.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    /// The session the container serves.
    pub session_id: SessionId,
    /// Coding session or preview: picks the task definition and the `cca-agent` mode.
    pub kind: SessionType,
    /// Image channel: picks the task definition.
    pub channel: ImageChannel,
    /// The repository to clone.
    pub repo: RepoName,
    /// The branch to check out.
    pub branch: BranchName,
    /// Extra environment for the container. Non-secret settings only: ECS shows overrides to
    /// anyone who may describe the task, and both launchers log the names and values.
    pub env: Vec<(String, String)>,
    /// The session's control token ([`env::SESSION_TOKEN`]), which the launchers never log.
    /// ECS shows it, as every override, to principals allowed `ecs:DescribeTasks` (the
    /// webhook's role and operators; not the session roles).
    pub session_token: Option<SecretString>,
}

impl LaunchRequest {
    /// The `cca-agent` sub-command for this kind of session.
    pub fn mode(&self) -> &'static str {
        match self.kind {
            SessionType::Agent => "run",
            SessionType::Preview => "preview",
        }
    }

    /// The container's environment: the session's own variables (see [`env`]) followed by
    /// [`Self::env`], so a caller's extra settings come last and win where the runtime keeps
    /// the last of two equal names.
    pub fn environment(&self) -> Vec<(String, String)> {
        let own = [
            (env::SESSION_ID, self.session_id.as_str()),
            (env::SESSION_TYPE, self.kind.as_str()),
            (env::IMAGE_CHANNEL, self.channel.as_str()),
            (env::REPO_FULL_NAME, self.repo.as_str()),
            (env::BRANCH_NAME, self.branch.as_str()),
        ];
        own.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .chain(self.env.iter().cloned())
            .chain(
                self.session_token
                    .iter()
                    .map(|t| (env::SESSION_TOKEN.to_owned(), t.expose_secret().to_owned())),
            )
            .collect()
    }
}

/// What was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    /// ECS task ARN, or `process:<pid>` for a local process.
    pub task_arn: String,
}

/// A task this system started and that has not been stopped, as [`Launcher::list_tasks`] finds
/// it. The sweeper compares these with the session records to find tasks no session owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSummary {
    /// ECS task ARN, or `process:<pid>`.
    pub task_arn: String,
    /// The session the task was started for, when the launcher marked it (the ECS tag
    /// `cca:session-id`, or what the process launcher remembers).
    pub session_id: Option<SessionId>,
    /// When the task was created, in Unix seconds, when known.
    pub created_at: Option<i64>,
}

/// A launch or stop failure, with the reason as the service gave it.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The service refused the request (bad task definition, no capacity, access denied).
    #[error("launch refused: {0}")]
    Refused(String),
    /// The service could not be reached or failed.
    #[error("launcher backend failed: {0}")]
    Backend(String),
}

/// Starts and stops session containers.
#[async_trait]
pub trait Launcher: Send + Sync + std::fmt::Debug {
    /// Starts the container of a session; answers once the start is accepted, never waiting for
    /// the container itself.
    async fn launch(&self, req: &LaunchRequest) -> Result<Launched, LaunchError>;

    /// Asks the container to stop (SIGTERM, then SIGKILL after the grace period). Stopping a
    /// task that already ended is not an error.
    async fn stop(&self, task_arn: &str, reason: &str) -> Result<(), LaunchError>;

    /// Whether the task is still running (or about to).
    async fn is_running(&self, task_arn: &str) -> Result<bool, LaunchError>;

    /// The tasks this system started that have not been asked to stop: on ECS, the cluster's
    /// tasks whose `startedBy` carries this system's prefix (other tasks of a shared cluster are
    /// never listed); for local processes, the children of this launcher still running.
    async fn list_tasks(&self) -> Result<Vec<TaskSummary>, LaunchError>;

    /// Stops whatever this launcher started that would otherwise outlive the process hosting
    /// it, and waits for it to end. ECS tasks run on their own, so by default this does nothing.
    async fn shutdown(&self) {}
}
