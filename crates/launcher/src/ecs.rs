//! The deployed launcher: one ECS Fargate task per session.
//!
//! Each kind of session and image channel has its own task definition, chosen by
//! [`TaskDefinitions::pick`]; this launcher never registers a task definition. The original
//! registered a staging revision in the `latest` family, so every later `latest` launch by family
//! name ran the staging image; keeping staging in its own family rules that out by construction.
//!
//! Tasks are found again by their tags (`cca:session-id`, `cca:kind`) and their `startedBy`.

use async_trait::async_trait;
use aws_sdk_ecs::Client;
use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, DesiredStatus, Failure, KeyValuePair,
    LaunchType, NetworkConfiguration, PropagateTags, Tag, TaskField, TaskOverride,
};
use cca_domain::{ImageChannel, SessionId, SessionType};

use crate::{LaunchError, LaunchRequest, Launched, Launcher, TaskSummary};

/// Container overridden in agent task definitions when none is configured.
pub const DEFAULT_AGENT_CONTAINER: &str = "agent";

/// Container overridden in preview task definitions when none is configured.
pub const DEFAULT_PREVIEW_CONTAINER: &str = "preview";

/// Prefix of `startedBy`, so `ListTasks --started-by` tells this system's tasks from others in a
/// shared cluster. ECS allows only letters, digits, `-`, `/` and `_` there, hence no `:`.
pub const DEFAULT_STARTED_BY_PREFIX: &str = "cca-";

/// Longest `startedBy` written: ECS once documented 36 characters (now 128), and staying under
/// the older bound costs nothing since the tags carry the full session id.
pub const MAX_STARTED_BY_LEN: usize = 36;

/// Longest stop reason ECS accepts, in characters.
pub const MAX_STOP_REASON_LEN: usize = 255;

/// Tag holding the full session id on every task.
const TAG_SESSION_ID: &str = "cca:session-id";

/// Tag holding `agent` or `preview` on every task.
const TAG_KIND: &str = "cca:kind";

/// The program the container runs; its sub-command is the session's mode.
const AGENT_PROGRAM: &str = "cca-agent";

/// Most tasks one DescribeTasks call may name (the API's limit).
const DESCRIBE_BATCH: usize = 100;

/// Last statuses of a task that has ended or is being torn down.
fn has_ended(last_status: Option<&str>) -> bool {
    matches!(last_status, Some("STOPPED" | "DEPROVISIONING" | "DELETED"))
}

/// Task definitions (family names, `family:revision` or ARNs) for each kind and channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDefinitions {
    /// Coding sessions on the `latest` image.
    pub agent_latest: String,
    /// Coding sessions on the `staging` image: a family of its own.
    pub agent_staging: String,
    /// Previews on the `latest` image.
    pub preview_latest: String,
    /// Previews on the `staging` image: a family of its own.
    pub preview_staging: String,
}

impl TaskDefinitions {
    /// The task definition a session of this kind on this channel runs.
    pub fn pick(&self, kind: SessionType, channel: ImageChannel) -> &str {
        match (kind, channel) {
            (SessionType::Agent, ImageChannel::Latest) => &self.agent_latest,
            (SessionType::Agent, ImageChannel::Staging) => &self.agent_staging,
            (SessionType::Preview, ImageChannel::Latest) => &self.preview_latest,
            (SessionType::Preview, ImageChannel::Staging) => &self.preview_staging,
        }
    }
}

/// Where and how tasks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsSettings {
    /// Cluster name or ARN (`ECS_CLUSTER`).
    pub cluster: String,
    /// Task definition per kind and channel.
    pub task_definitions: TaskDefinitions,
    /// Subnets of the tasks' network interfaces (`AGENT_SUBNETS`).
    pub subnets: Vec<String>,
    /// Security groups of the tasks (`AGENT_SECURITY_GROUPS`).
    pub security_groups: Vec<String>,
    /// Whether tasks get a public address: needed in public subnets without a NAT gateway, so
    /// they can pull images and reach GitHub.
    pub assign_public_ip: bool,
    /// Container to override in agent task definitions.
    pub agent_container: String,
    /// Container to override in preview task definitions.
    pub preview_container: String,
    /// Prefix of each task's `startedBy`; letters, digits, `-`, `/` and `_` only.
    pub started_by_prefix: String,
}

impl EcsSettings {
    /// Settings with the default container names and `startedBy` prefix.
    pub fn new(
        cluster: impl Into<String>,
        task_definitions: TaskDefinitions,
        subnets: Vec<String>,
        security_groups: Vec<String>,
        assign_public_ip: bool,
    ) -> Self {
        Self {
            cluster: cluster.into(),
            task_definitions,
            subnets,
            security_groups,
            assign_public_ip,
            agent_container: DEFAULT_AGENT_CONTAINER.to_owned(),
            preview_container: DEFAULT_PREVIEW_CONTAINER.to_owned(),
            started_by_prefix: DEFAULT_STARTED_BY_PREFIX.to_owned(),
        }
    }

    /// The `startedBy` of a session's task: the prefix and the id, or, when that is longer than
    /// [`MAX_STARTED_BY_LEN`], its head and a hash of the whole id, so two long ids that share a
    /// head still differ.
    pub fn started_by(&self, id: &SessionId) -> String {
        let full = format!("{}{}", self.started_by_prefix, id);
        if full.len() <= MAX_STARTED_BY_LEN {
            return full;
        }
        let hash = format!("{:08x}", fnv1a(id.as_str()));
        let head = MAX_STARTED_BY_LEN - hash.len() - 1;
        let mut short: String = full.chars().take(head).collect();
        short.push('-');
        short.push_str(&hash);
        short
    }

    fn container(&self, kind: SessionType) -> &str {
        match kind {
            SessionType::Agent => &self.agent_container,
            SessionType::Preview => &self.preview_container,
        }
    }
}

/// FNV-1a, 32 bits: stable across releases and platforms, unlike the standard hasher, so the
/// same id always gives the same `startedBy`.
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Runs sessions as ECS Fargate tasks.
#[derive(Debug, Clone)]
pub struct EcsLauncher {
    client: Client,
    settings: EcsSettings,
}

impl EcsLauncher {
    /// A launcher using this client (its region, credentials and endpoint) and these settings.
    pub fn new(client: Client, settings: EcsSettings) -> Self {
        Self { client, settings }
    }

    /// The settings this launcher runs with.
    pub fn settings(&self) -> &EcsSettings {
        &self.settings
    }

    fn network(&self) -> Result<NetworkConfiguration, LaunchError> {
        if self.settings.subnets.is_empty() {
            return Err(LaunchError::Refused(
                "no subnets configured for tasks".to_owned(),
            ));
        }
        let assign = if self.settings.assign_public_ip {
            AssignPublicIp::Enabled
        } else {
            AssignPublicIp::Disabled
        };
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(self.settings.subnets.clone()))
            .set_security_groups(Some(self.settings.security_groups.clone()))
            .assign_public_ip(assign)
            .build()
            .map_err(|e| LaunchError::Refused(format!("network configuration: {e}")))?;
        Ok(NetworkConfiguration::builder()
            .awsvpc_configuration(vpc)
            .build())
    }
}

#[async_trait]
impl Launcher for EcsLauncher {
    async fn launch(&self, req: &LaunchRequest) -> Result<Launched, LaunchError> {
        let task_definition = self.settings.task_definitions.pick(req.kind, req.channel);
        let action = format!(
            "RunTask of task definition {task_definition} in cluster {}",
            self.settings.cluster
        );
        // Overrides are visible to anyone who may describe the task, which is why the request
        // carries non-secret settings only; the agent fetches its credentials itself.
        let environment = req
            .environment()
            .into_iter()
            .map(|(name, value)| KeyValuePair::builder().name(name).value(value).build())
            .collect();
        let overrides = TaskOverride::builder()
            .container_overrides(
                ContainerOverride::builder()
                    .name(self.settings.container(req.kind))
                    .command(AGENT_PROGRAM)
                    .command(req.mode())
                    .set_environment(Some(environment))
                    .build(),
            )
            .build();
        let tag = |key: &str, value: &str| Tag::builder().key(key).value(value).build();

        let out = self
            .client
            .run_task()
            .cluster(&self.settings.cluster)
            .task_definition(task_definition)
            .launch_type(LaunchType::Fargate)
            .count(1)
            .network_configuration(self.network()?)
            .overrides(overrides)
            .started_by(self.settings.started_by(&req.session_id))
            .tags(tag(TAG_SESSION_ID, req.session_id.as_str()))
            .tags(tag(TAG_KIND, req.kind.as_str()))
            .enable_ecs_managed_tags(true)
            .propagate_tags(PropagateTags::TaskDefinition)
            .send()
            .await
            .map_err(|e| sdk_error(&action, e))?;

        match out.tasks().iter().find_map(|t| t.task_arn()) {
            Some(arn) => {
                tracing::info!(
                    session_id = %req.session_id,
                    task_definition,
                    task_arn = arn,
                    env = ?req.env,
                    "task started"
                );
                Ok(Launched {
                    task_arn: arn.to_owned(),
                })
            }
            None => Err(LaunchError::Refused(format!(
                "{action} started no task: {}",
                failure_reasons(out.failures())
            ))),
        }
    }

    async fn stop(&self, task_arn: &str, reason: &str) -> Result<(), LaunchError> {
        let reason: String = reason.chars().take(MAX_STOP_REASON_LEN).collect();
        let result = self
            .client
            .stop_task()
            .cluster(&self.settings.cluster)
            .task(task_arn)
            .reason(reason)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A task that ended long ago is forgotten by ECS; it is as stopped as it gets.
            Err(e) if e.as_service_error().is_some_and(is_task_not_found) => {
                tracing::debug!(task_arn, "task to stop was already gone");
                Ok(())
            }
            Err(e) => Err(sdk_error(&format!("StopTask of {task_arn}"), e)),
        }
    }

    async fn is_running(&self, task_arn: &str) -> Result<bool, LaunchError> {
        let out = self
            .client
            .describe_tasks()
            .cluster(&self.settings.cluster)
            .tasks(task_arn)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("DescribeTasks of {task_arn}"), e))?;
        // A task ECS no longer knows comes back as a `MISSING` failure and no task.
        Ok(out
            .tasks()
            .first()
            .is_some_and(|task| !has_ended(task.last_status())))
    }

    async fn list_tasks(&self) -> Result<Vec<TaskSummary>, LaunchError> {
        let cluster = &self.settings.cluster;
        let mut arns = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_tasks()
                .cluster(cluster)
                .desired_status(DesiredStatus::Running)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| sdk_error(&format!("ListTasks in cluster {cluster}"), e))?;
            arns.extend(page.task_arns().iter().cloned());
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        let mut found = Vec::new();
        for batch in arns.chunks(DESCRIBE_BATCH) {
            let out = self
                .client
                .describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(batch.to_vec()))
                .include(TaskField::Tags)
                .send()
                .await
                .map_err(|e| sdk_error(&format!("DescribeTasks in cluster {cluster}"), e))?;
            for task in out.tasks() {
                let ours = task
                    .started_by()
                    .is_some_and(|by| by.starts_with(&self.settings.started_by_prefix));
                let Some(arn) = task.task_arn() else { continue };
                if !ours || has_ended(task.last_status()) {
                    continue;
                }
                let session_id = task
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some(TAG_SESSION_ID))
                    .and_then(|t| t.value())
                    .and_then(|v| SessionId::parse(v).ok());
                found.push(TaskSummary {
                    task_arn: arn.to_owned(),
                    session_id,
                    created_at: task.created_at().map(|t| t.secs()),
                });
            }
        }
        Ok(found)
    }
}

/// The reasons ECS gave for placing no task (`RESOURCE:MEMORY`, `MISSING`, …).
fn failure_reasons(failures: &[Failure]) -> String {
    if failures.is_empty() {
        return "no reason given".to_owned();
    }
    failures
        .iter()
        .map(|f| match (f.reason(), f.detail()) {
            (Some(reason), Some(detail)) => format!("{reason} ({detail})"),
            (Some(reason), None) => reason.to_owned(),
            (None, Some(detail)) => detail.to_owned(),
            (None, None) => "unknown failure".to_owned(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether StopTask failed only because the task is unknown.
fn is_task_not_found(err: &impl ProvideErrorMetadata) -> bool {
    err.code() == Some("InvalidParameterException")
        && err
            .message()
            .is_some_and(|m| m.to_ascii_lowercase().contains("not found"))
}

/// Maps an SDK error: an answer of the service that refuses the request is [`LaunchError::Refused`]
/// with the service's words; a failure to get an answer, or a server-side error, is
/// [`LaunchError::Backend`], which a caller may retry.
fn sdk_error<E>(action: &str, err: SdkError<E>) -> LaunchError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let server_side = err
        .raw_response()
        .is_some_and(|r| r.status().is_server_error());
    match err.as_service_error() {
        Some(service) if !server_side => {
            let said = match (service.code(), service.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (None, Some(message)) => message.to_owned(),
                _ => DisplayErrorContext(service).to_string(),
            };
            LaunchError::Refused(format!("{action}: {said}"))
        }
        _ => LaunchError::Backend(format!("{action}: {}", DisplayErrorContext(&err))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EcsSettings {
        EcsSettings::new(
            "cluster",
            TaskDefinitions {
                agent_latest: "agent".into(),
                agent_staging: "agent-staging".into(),
                preview_latest: "preview".into(),
                preview_staging: "preview-staging".into(),
            },
            vec!["subnet-1".into()],
            vec![],
            true,
        )
    }

    #[test]
    fn each_kind_and_channel_has_its_own_task_definition() {
        let s = settings();
        let td = &s.task_definitions;
        assert_eq!(td.pick(SessionType::Agent, ImageChannel::Latest), "agent");
        assert_eq!(
            td.pick(SessionType::Agent, ImageChannel::Staging),
            "agent-staging"
        );
        assert_eq!(
            td.pick(SessionType::Preview, ImageChannel::Latest),
            "preview"
        );
        assert_eq!(
            td.pick(SessionType::Preview, ImageChannel::Staging),
            "preview-staging"
        );
        assert_eq!(s.container(SessionType::Agent), "agent");
        assert_eq!(s.container(SessionType::Preview), "preview");
    }

    #[test]
    fn started_by_fits_and_keeps_long_ids_apart() {
        let s = settings();
        let short = SessionId::parse("abcdefghijkmnpqr").unwrap();
        assert_eq!(s.started_by(&short), "cca-abcdefghijkmnpqr");

        let a = SessionId::parse(&format!("tt-{}-a1", "x".repeat(40))).unwrap();
        let b = SessionId::parse(&format!("tt-{}-b2", "x".repeat(40))).unwrap();
        let (sa, sb) = (s.started_by(&a), s.started_by(&b));
        assert_eq!(sa.len(), MAX_STARTED_BY_LEN);
        assert!(sa.starts_with("cca-tt-xxx"));
        assert_ne!(sa, sb);
        assert_eq!(sa, s.started_by(&a));
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-/_".contains(c);
        assert!(sa.chars().all(allowed), "{sa}");
    }
}
