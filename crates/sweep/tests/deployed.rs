//! The sweeper on the deployed store and launcher: DynamoDB and ECS on the AWS emulator, through
//! the library. Each session that is dead, idle or stuck is handled once, a dry run changes
//! nothing, and a live session is never touched.
//!
//! Skipped, with a note, when the test stand's emulator is not running (`CCA_MOTO_URL` unset).

use std::sync::Arc;
use std::time::Duration;

use cca_domain::session::SessionPatch;
use cca_domain::{
    BranchName, ImageChannel, RepoName, Session, SessionId, SessionType, Source, Status, naming,
};
use cca_launcher::{EcsLauncher, EcsSettings, LaunchRequest, Launcher, TaskDefinitions};
use cca_store::{DynamoStore, ListFilter, SessionStore};
use cca_sweep::{Action, Limits, Sweeper, Verdict};
use cca_testkit::moto::{Moto, unique_name};

/// Bound on the test: building the stand and three sweeps take a few seconds.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn all(store: &DynamoStore) -> Vec<Session> {
    let mut sessions = store.list(&ListFilter::default()).await.unwrap();
    sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    sessions
}

#[tokio::test]
async fn on_dynamodb_and_ecs_each_dead_idle_or_stuck_session_is_handled_once() {
    let Some(moto) = Moto::from_env() else {
        cca_testkit::stand::skip("CCA_MOTO_URL is not set (no AWS emulator)");
        return;
    };
    let _exclusive = Moto::exclusive().await;
    moto.ecs_manual_transitions().await;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dynamodb = moto.dynamodb().await;
        let table = unique_name("sweep-sessions");
        DynamoStore::create_table(&dynamodb, &table).await.unwrap();
        let store = Arc::new(DynamoStore::new(dynamodb, table));

        let ecs = moto.ecs().await;
        let network = moto.create_network().await.unwrap();
        let cluster = unique_name("sweep");
        moto.create_cluster(&ecs, &cluster).await.unwrap();
        let family = unique_name("agent");
        moto.register_task_definition(&ecs, &family, "agent")
            .await
            .unwrap();
        let launcher = Arc::new(EcsLauncher::new(
            ecs,
            EcsSettings::new(
                cluster,
                TaskDefinitions {
                    agent_latest: family.clone(),
                    agent_staging: family.clone(),
                    preview_latest: family.clone(),
                    preview_staging: family,
                },
                network.subnet_ids.clone(),
                vec![network.security_group_id.clone()],
                false,
            ),
        ));
        let launch = |id: &SessionId| {
            let launcher = Arc::clone(&launcher);
            let req = LaunchRequest {
                session_id: id.clone(),
                kind: SessionType::Agent,
                channel: ImageChannel::Latest,
                repo: RepoName::parse("octo/app").unwrap(),
                branch: BranchName::parse("claude/1").unwrap(),
                env: Vec::new(),
                session_token: None,
            };
            async move { launcher.launch(&req).await.unwrap().task_arn }
        };

        // (issue, final status, heartbeat age, activity age)
        let t = now();
        let mut made = Vec::new();
        for (issue, to, heartbeat_age, activity_age) in [
            (1, Status::Idle, 5, 9000),
            (2, Status::Running, 2000, 10),
            (3, Status::Running, 5, 10),
            (4, Status::Stopping, 2000, 10),
            (5, Status::Running, 5, 10),
        ] {
            let mut s = Session::new(
                SessionId::random_agent(),
                SessionType::Agent,
                Source::Github,
                RepoName::parse("octo/app").unwrap(),
                naming::issue_branch(issue),
                ImageChannel::Latest,
                t - 3 * 3600,
            );
            s.issue_number = Some(issue);
            store.create(&s).await.unwrap();
            let patch = SessionPatch {
                task_arn: Some(launch(&s.session_id).await),
                heartbeat_at: Some(t - heartbeat_age),
                last_activity: Some(t - activity_age),
                ..SessionPatch::default()
            };
            let id = s.session_id.clone();
            store
                .transition(&id, Status::Starting, patch, t)
                .await
                .unwrap();
            store
                .transition(&id, Status::Running, SessionPatch::default(), t)
                .await
                .unwrap();
            if to != Status::Running {
                store
                    .transition(&id, to, SessionPatch::default(), t)
                    .await
                    .unwrap();
            }
            made.push(store.get(&id).await.unwrap().unwrap());
        }
        let [idle, dead, gone, stuck, live] = <[Session; 5]>::try_from(made).unwrap();
        // The task of `gone` ended behind the record's back.
        let gone_task = gone.task_arn.clone().unwrap();
        launcher.stop(&gone_task, "crashed").await.unwrap();
        let orphan = launch(&SessionId::parse(&unique_name("lost")).unwrap()).await;

        let sweeper = Sweeper::new(
            Arc::clone(&store) as Arc<dyn SessionStore>,
            Arc::clone(&launcher) as Arc<dyn Launcher>,
            Limits::default(),
        );
        let before = all(&store).await;

        let dry = sweeper.sweep(now(), true).await.unwrap();
        assert_eq!(dry.actions.len(), 5, "{:#?}", dry.actions);
        assert!(dry.actions.iter().all(|o| o.result == Verdict::Planned));
        assert_eq!(all(&store).await, before);
        for arn in [&idle, &dead, &stuck, &live].map(|s| s.task_arn.clone().unwrap()) {
            assert!(launcher.is_running(&arn).await.unwrap(), "{arn}");
        }
        assert!(launcher.is_running(&orphan).await.unwrap());

        let report = sweeper.sweep(now(), false).await.unwrap();
        assert!(report.is_clean(), "{:#?}", report);
        let mut got: Vec<(String, &str)> = report
            .actions
            .iter()
            .map(|o| {
                assert_eq!(o.result, Verdict::Done, "{o:?}");
                match &o.action {
                    Action::StopIdle { session_id, .. } => (session_id.to_string(), "stop_idle"),
                    Action::Fail { session_id, .. } => (session_id.to_string(), "fail"),
                    Action::EndStopping { session_id, .. } => (session_id.to_string(), "end"),
                    Action::StopTask { task_arn, .. } => (task_arn.clone(), "stop_task"),
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        got.sort();
        let mut expected = vec![
            (idle.session_id.to_string(), "stop_idle"),
            (dead.session_id.to_string(), "fail"),
            (gone.session_id.to_string(), "fail"),
            (stuck.session_id.to_string(), "end"),
            (orphan.clone(), "stop_task"),
        ];
        expected.sort();
        assert_eq!(got, expected);

        let status = |id: &SessionId| {
            let store = Arc::clone(&store);
            let id = id.clone();
            async move { store.get(&id).await.unwrap().unwrap() }
        };
        assert_eq!(status(&idle.session_id).await.status, Status::Stopped);
        let dead_now = status(&dead.session_id).await;
        assert_eq!(dead_now.status, Status::Failed);
        assert!(
            dead_now
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("heartbeat stopped")),
            "{dead_now:?}"
        );
        let gone_now = status(&gone.session_id).await;
        assert_eq!(gone_now.status, Status::Failed);
        assert_eq!(gone_now.error.as_deref(), Some("task no longer running"));
        assert_eq!(status(&stuck.session_id).await.status, Status::Stopped);
        assert_eq!(status(&live.session_id).await, live);
        for arn in [&idle, &dead, &stuck].map(|s| s.task_arn.clone().unwrap()) {
            assert!(!launcher.is_running(&arn).await.unwrap(), "{arn}");
        }
        assert!(!launcher.is_running(&orphan).await.unwrap());
        assert!(
            launcher
                .is_running(live.task_arn.as_deref().unwrap())
                .await
                .unwrap()
        );

        let after = all(&store).await;
        let again = sweeper.sweep(now(), false).await.unwrap();
        assert_eq!(again.actions, vec![], "{:#?}", again.actions);
        assert_eq!(all(&store).await, after);
    })
    .await
    .expect("test timed out");
}
