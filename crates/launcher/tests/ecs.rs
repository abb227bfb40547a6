//! The ECS launcher against the local AWS emulator: what RunTask is asked for, that staging
//! launches leave the `latest` family alone, how refusals read, and stopping.
//!
//! Skipped, with a note, when the test stand's emulator is not running (`CCA_MOTO_URL` unset).

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{Task, TaskField};
use cca_domain::{BranchName, ImageChannel, RepoName, SessionId, SessionType};
use cca_launcher::{
    EcsLauncher, EcsSettings, LaunchError, LaunchRequest, Launcher, TaskDefinitions,
};
use cca_testkit::moto::{Moto, unique_name};

/// A cluster, a network and the four task definitions, each family new to this test.
struct Stand {
    ecs: Client,
    launcher: EcsLauncher,
    /// ARNs of the registered task definitions, in the order of [`TaskDefinitions`]' fields.
    arns: TaskDefinitions,
}

async fn stand() -> Option<Stand> {
    let Some(moto) = Moto::from_env() else {
        cca_testkit::stand::skip("CCA_MOTO_URL is not set (no AWS emulator)");
        return None;
    };
    let ecs = moto.ecs().await;
    let network = moto.create_network().await.expect("network");
    let cluster = unique_name("cca-launch");
    moto.create_cluster(&ecs, &cluster).await.expect("cluster");
    let families = TaskDefinitions {
        agent_latest: unique_name("agent"),
        agent_staging: unique_name("agent-staging"),
        preview_latest: unique_name("preview"),
        preview_staging: unique_name("preview-staging"),
    };
    let register = |family: String, container: &'static str| {
        let (moto, ecs) = (moto.clone(), ecs.clone());
        async move {
            moto.register_task_definition(&ecs, &family, container)
                .await
                .expect("task definition")
        }
    };
    let arns = TaskDefinitions {
        agent_latest: register(families.agent_latest.clone(), "agent").await,
        agent_staging: register(families.agent_staging.clone(), "agent").await,
        preview_latest: register(families.preview_latest.clone(), "preview").await,
        preview_staging: register(families.preview_staging.clone(), "preview").await,
    };
    let settings = EcsSettings::new(
        cluster,
        families,
        network.subnet_ids.clone(),
        vec![network.security_group_id.clone()],
        false,
    );
    Some(Stand {
        launcher: EcsLauncher::new(ecs.clone(), settings),
        ecs,
        arns,
    })
}

fn request(kind: SessionType, channel: ImageChannel) -> LaunchRequest {
    let branch = BranchName::parse("claude/42").unwrap();
    LaunchRequest {
        session_id: match kind {
            SessionType::Agent => SessionId::random_agent(),
            SessionType::Preview => SessionId::preview(&branch),
        },
        kind,
        channel,
        repo: RepoName::parse("Octo/App").unwrap(),
        branch,
        env: vec![("LOG_FORMAT".into(), "json".into())],
        session_token: None,
    }
}

impl Stand {
    fn cluster(&self) -> &str {
        &self.launcher.settings().cluster
    }

    async fn describe(&self, task_arn: &str) -> Task {
        let out = self
            .ecs
            .describe_tasks()
            .cluster(self.cluster())
            .tasks(task_arn)
            .include(TaskField::Tags)
            .send()
            .await
            .expect("DescribeTasks");
        out.tasks().first().cloned().expect("the task is known")
    }

    async fn family_revisions(&self, family: &str) -> Vec<String> {
        let out = self
            .ecs
            .list_task_definitions()
            .family_prefix(family)
            .send()
            .await
            .expect("ListTaskDefinitions");
        out.task_definition_arns().to_vec()
    }
}

fn env_of(task: &Task) -> Vec<(String, String)> {
    let container = &task.overrides().unwrap().container_overrides()[0];
    container
        .environment()
        .iter()
        .map(|kv| {
            (
                kv.name().unwrap().to_owned(),
                kv.value().unwrap().to_owned(),
            )
        })
        .collect()
}

fn tag<'a>(task: &'a Task, key: &str) -> Option<&'a str> {
    task.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

#[tokio::test]
async fn agent_launch_on_latest_runs_the_agent_task_definition_with_overrides_and_tags() {
    let Some(stand) = stand().await else { return };
    let req = request(SessionType::Agent, ImageChannel::Latest);

    let launched = stand.launcher.launch(&req).await.expect("launch");

    let moto = Moto::from_env().unwrap();
    let listed = moto.list_task_arns(&stand.ecs, stand.cluster()).await;
    assert_eq!(listed, std::slice::from_ref(&launched.task_arn));

    let task = stand.describe(&launched.task_arn).await;
    assert_eq!(
        task.task_definition_arn(),
        Some(stand.arns.agent_latest.as_str())
    );
    let container = &task.overrides().unwrap().container_overrides()[0];
    assert_eq!(container.name(), Some("agent"));
    assert_eq!(container.command(), ["cca-agent", "run"]);
    let id = req.session_id.as_str();
    let expected: Vec<(String, String)> = [
        ("SESSION_ID", id),
        ("SESSION_TYPE", "agent"),
        ("IMAGE_CHANNEL", "latest"),
        ("REPO_FULL_NAME", "octo/app"),
        ("BRANCH_NAME", "claude/42"),
        ("LOG_FORMAT", "json"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(env_of(&task), expected);
    assert_eq!(task.started_by(), Some(format!("cca-{id}").as_str()));
    assert_eq!(tag(&task, "cca:session-id"), Some(id));
    assert_eq!(tag(&task, "cca:kind"), Some("agent"));
}

#[tokio::test]
async fn staging_launches_use_their_own_task_definitions_and_leave_latest_alone() {
    let Some(stand) = stand().await else { return };
    let families = stand.launcher.settings().task_definitions.clone();
    let agent_before = stand.family_revisions(&families.agent_latest).await;
    let preview_before = stand.family_revisions(&families.preview_latest).await;

    let agent = stand
        .launcher
        .launch(&request(SessionType::Agent, ImageChannel::Staging))
        .await
        .unwrap();
    let preview_req = request(SessionType::Preview, ImageChannel::Staging);
    let preview = stand.launcher.launch(&preview_req).await.unwrap();

    let agent_task = stand.describe(&agent.task_arn).await;
    assert_eq!(
        agent_task.task_definition_arn(),
        Some(stand.arns.agent_staging.as_str())
    );
    let preview_task = stand.describe(&preview.task_arn).await;
    assert_eq!(
        preview_task.task_definition_arn(),
        Some(stand.arns.preview_staging.as_str())
    );
    let container = &preview_task.overrides().unwrap().container_overrides()[0];
    assert_eq!(container.name(), Some("preview"));
    assert_eq!(container.command(), ["cca-agent", "preview"]);
    assert!(env_of(&preview_task).contains(&("IMAGE_CHANNEL".into(), "staging".into())));
    assert_eq!(
        tag(&preview_task, "cca:session-id"),
        Some(preview_req.session_id.as_str())
    );
    assert_eq!(tag(&preview_task, "cca:kind"), Some("preview"));

    // Nothing was registered in the `latest` families: a later `latest` launch by family name
    // still runs revision 1.
    assert_eq!(
        stand.family_revisions(&families.agent_latest).await,
        agent_before
    );
    assert_eq!(
        stand.family_revisions(&families.preview_latest).await,
        preview_before
    );
    let latest = stand
        .ecs
        .describe_task_definition()
        .task_definition(&families.agent_latest)
        .send()
        .await
        .unwrap();
    let latest = latest.task_definition().unwrap();
    assert_eq!(latest.revision(), 1);
    assert_eq!(
        latest.task_definition_arn(),
        Some(stand.arns.agent_latest.as_str())
    );
}

#[tokio::test]
async fn a_missing_task_definition_is_refused_with_its_name() {
    let Some(stand) = stand().await else { return };
    let mut settings = stand.launcher.settings().clone();
    settings.task_definitions.agent_latest = unique_name("no-such-family");
    let missing = settings.task_definitions.agent_latest.clone();
    let launcher = EcsLauncher::new(stand.ecs.clone(), settings);

    match launcher
        .launch(&request(SessionType::Agent, ImageChannel::Latest))
        .await
    {
        Err(LaunchError::Refused(reason)) => {
            assert!(reason.contains(&missing), "{reason}");
            assert!(reason.contains("ClientException"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn stop_ends_the_task_and_is_running_follows() {
    let Some(stand) = stand().await else { return };
    let launched = stand
        .launcher
        .launch(&request(SessionType::Agent, ImageChannel::Latest))
        .await
        .unwrap();

    assert!(stand.launcher.is_running(&launched.task_arn).await.unwrap());

    let reason = format!("stopped by a reviewer {}", "!".repeat(400));
    stand
        .launcher
        .stop(&launched.task_arn, &reason)
        .await
        .expect("stop");
    let task = stand.describe(&launched.task_arn).await;
    assert_eq!(task.last_status(), Some("STOPPED"));
    assert_eq!(task.stopped_reason().map(str::len), Some(255));
    assert!(!stand.launcher.is_running(&launched.task_arn).await.unwrap());

    // Stopping again is not an error.
    stand
        .launcher
        .stop(&launched.task_arn, "again")
        .await
        .expect("second stop");
}
