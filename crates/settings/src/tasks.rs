//! The ECS cluster, task definitions and containers of sessions: what the webhook launches
//! and `cca doctor` checks.

/// Where session tasks run.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TaskArgs {
    /// Cluster the sessions (and the proxy service) run in.
    #[arg(long, env = "ECS_CLUSTER")]
    pub ecs_cluster: Option<String>,
    /// Task definition of coding sessions (`cca-agent run`).
    #[arg(long, env = "AGENT_TASK_DEFINITION")]
    pub agent_task_definition: Option<String>,
    /// Staging task definition of coding sessions. Default: <AGENT_TASK_DEFINITION>-staging.
    #[arg(long, env = "AGENT_TASK_DEFINITION_STAGING")]
    pub agent_task_definition_staging: Option<String>,
    /// Task definition of PR previews (`cca-agent preview`).
    #[arg(long, env = "UAT_TASK_DEFINITION")]
    pub uat_task_definition: Option<String>,
    /// Staging task definition of PR previews. Default: <UAT_TASK_DEFINITION>-staging.
    #[arg(long, env = "UAT_TASK_DEFINITION_STAGING")]
    pub uat_task_definition_staging: Option<String>,
    /// Container of agent task definitions that the launcher overrides.
    #[arg(long, env = "AGENT_CONTAINER_NAME")]
    pub agent_container_name: Option<String>,
    /// Container of preview task definitions that the launcher overrides.
    #[arg(long, env = "UAT_CONTAINER_NAME")]
    pub uat_container_name: Option<String>,
    /// Security groups of session tasks, comma-separated (`cca doctor` checks the first).
    #[arg(long, env = "AGENT_SECURITY_GROUPS")]
    pub agent_security_groups: Option<String>,
}
