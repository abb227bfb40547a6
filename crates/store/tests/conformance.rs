//! The session store's guarantees, checked once against every implementation.
//!
//! Each scenario is an `async fn(Arc<dyn SessionStore>)`; `conformance!` turns the list of them
//! into one test per scenario and store (`sqlite::<scenario>`, `dynamo::<scenario>`), each under
//! a global time-out. The SQLite half runs on a fresh file; the DynamoDB half runs on a table of
//! its own in the emulator at `CCA_MOTO_URL`, and says it is skipped when that is unset.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use cca_domain::naming;
use cca_domain::session::{SessionPatch, TERMINAL_TTL_SECS};
use cca_domain::{
    ActiveKey, BranchName, ImageChannel, JiraKey, RepoName, Session, SessionId, SessionType,
    Source, Status,
};
use cca_store::{
    DELIVERY_LEASE_SECS, DELIVERY_TTL_SECS, DynamoStore, ListFilter, SessionStore, SqliteStore,
    StoreError, StoreResult,
};
use futures::future::join_all;

/// Longest any one test may take. The slowest scenarios make a few hundred emulator calls or
/// fifty racing writers with backoff; a minute means a hang, not a slow machine.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Writers racing for one key or one delivery id in the concurrency scenarios: well above the
/// handful a webhook burst produces, so a race the store does not close shows up.
const RACERS: usize = 50;

macro_rules! conformance {
    ($($scenario:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let (store, _dir) = super::sqlite_store();
                    super::within_time_limit(super::$scenario(store)).await;
                }
            )+
        }

        mod dynamo {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::within_time_limit(async {
                        if let Some((client, table)) = super::dynamo_table().await {
                            let store = cca_store::DynamoStore::new(client, table);
                            super::$scenario(std::sync::Arc::new(store)).await;
                        }
                    })
                    .await;
                }
            )+
        }
    };
}

conformance!(
    create_then_get_round_trips_every_field,
    create_refuses_a_session_not_provisioning,
    update_writes_the_patch_and_keeps_the_rest,
    every_transition_is_decided_by_the_store,
    unknown_sessions_are_not_found,
    ending_sets_the_ttl_and_freezes_the_record,
    concurrent_creates_for_one_issue_have_one_winner,
    concurrent_creates_of_one_preview_have_one_winner,
    an_ended_sessions_key_can_be_claimed_again,
    relaunch_restarts_an_ended_session_and_reclaims_its_key,
    by_active_key_returns_the_last_holder_even_after_it_ended,
    by_pr_lists_agent_and_preview_sessions_newest_first,
    list_filters_by_status_newest_first_and_limits,
    deliveries_are_recorded_once_until_they_expire,
    concurrent_identical_deliveries_record_once,
    a_forgotten_delivery_can_be_recorded_again,
    touch_records_activity_until_the_session_ends,
    a_delivery_never_finished_is_taken_again_after_its_lease,
);

// ---------------------------------------------------------------------------------------------
// Stores

fn sqlite_store() -> (Arc<dyn SessionStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path().join("sessions.db")).expect("open SQLite store");
    (Arc::new(store), dir)
}

/// A client of the emulator and a new table of this test's own, or `None` (with a message)
/// when no emulator is configured.
async fn dynamo_table() -> Option<(aws_sdk_dynamodb::Client, String)> {
    let Ok(url) = std::env::var("CCA_MOTO_URL") else {
        // As `cca_testkit::stand::skip`, which this crate cannot use (the kit depends on it).
        assert!(
            std::env::var_os("CCA_REQUIRE_STAND").is_none_or(|v| v != "1"),
            "CCA_MOTO_URL is not set, but CCA_REQUIRE_STAND=1: the test command must provide it"
        );
        eprintln!("skipped: CCA_MOTO_URL is not set, so there is no DynamoDB emulator to test");
        return None;
    };
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = format!("sessions-{}", SessionId::random_agent());
    DynamoStore::create_table(&client, &table)
        .await
        .expect("create table");
    Some((client, table))
}

async fn within_time_limit(test: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {TEST_TIMEOUT:?}"));
}

// ---------------------------------------------------------------------------------------------
// Builders

fn repo(name: &str) -> RepoName {
    RepoName::parse(name).unwrap()
}

/// A new agent session for a GitHub issue, created at `now`.
fn agent(repo: &RepoName, issue: u64, now: i64) -> Session {
    let mut s = Session::new(
        SessionId::random_agent(),
        SessionType::Agent,
        Source::Github,
        repo.clone(),
        naming::issue_branch(issue),
        ImageChannel::Latest,
        now,
    );
    s.issue_number = Some(issue);
    s
}

/// A new preview of PR `pr` on `branch`, created at `now`.
fn preview(repo: &RepoName, pr: u64, branch: &str, now: i64) -> Session {
    let branch = BranchName::parse(branch).unwrap();
    let mut s = Session::new(
        SessionId::preview(&branch),
        SessionType::Preview,
        Source::Github,
        repo.clone(),
        branch,
        ImageChannel::Latest,
        now,
    );
    s.pr_number = Some(pr);
    s
}

/// The legal steps from `PROVISIONING` to `status`.
fn path_to(status: Status) -> Vec<Status> {
    use Status::*;
    let path = match status {
        Provisioning => vec![],
        Queued => vec![Queued],
        Starting => vec![Starting],
        Running => vec![Starting, Running],
        Idle => vec![Starting, Running, Idle],
        Stopping => vec![Stopping],
        Stopped => vec![Stopping, Stopped],
        Completed => vec![Stopping, Completed],
        Failed => vec![Failed],
    };
    let mut from = Provisioning;
    for &to in &path {
        assert!(
            from.can_transition_to(to),
            "test path {from} -> {to} is not legal"
        );
        from = to;
    }
    path
}

/// Moves a stored session along `path`, one second per step after `start`.
async fn drive(store: &dyn SessionStore, id: &SessionId, path: &[Status], start: i64) {
    for (i, &to) in path.iter().enumerate() {
        store
            .transition(id, to, SessionPatch::default(), start + i as i64)
            .await
            .unwrap_or_else(|e| panic!("{id} -> {to}: {e}"));
    }
}

/// A stored session already in `status`.
async fn session_in(store: &dyn SessionStore, status: Status, issue: u64) -> Session {
    let s = agent(&repo("octo/states"), issue, 1_000);
    store.create(&s).await.unwrap();
    drive(store, &s.session_id, &path_to(status), 1_001).await;
    store.get(&s.session_id).await.unwrap().unwrap()
}

fn ids(sessions: &[Session]) -> Vec<&str> {
    sessions.iter().map(|s| s.session_id.as_str()).collect()
}

#[track_caller]
fn assert_illegal<T: std::fmt::Debug>(
    result: StoreResult<T>,
    id: &SessionId,
    from: Status,
    to: Status,
) {
    match result {
        Err(StoreError::IllegalTransition {
            id: i,
            from: f,
            to: t,
        }) if &i == id && f == from && t == to => {}
        other => panic!("expected IllegalTransition {{ {id}, {from} -> {to} }}, got {other:?}"),
    }
}

#[track_caller]
fn assert_active_exists<T: std::fmt::Debug>(
    result: StoreResult<T>,
    key: &ActiveKey,
    owner: &SessionId,
) {
    match result {
        Err(StoreError::ActiveExists { key: k, existing })
            if k == key.as_str() && &existing == owner => {}
        other => panic!("expected ActiveExists {{ {key}, {owner} }}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async fn create_then_get_round_trips_every_field(store: Arc<dyn SessionStore>) {
    let mut full = Session::new(
        SessionId::random_agent(),
        SessionType::Agent,
        Source::Jira,
        repo("Octo/Hello.World"),
        BranchName::parse("claude/PROJ-12").unwrap(),
        ImageChannel::Staging,
        1_700_000_000,
    );
    full.issue_number = Some(12);
    full.pr_number = Some(4_000_000_000);
    full.jira_issue_key = Some(JiraKey::parse("proj-12").unwrap());
    full.installation_id = Some(98_765_432_101);
    full.initial_prompt = Some("Réparer le «bug» 🐛 — 修复错误\nline two\t\"quoted\"".to_owned());
    full.task_arn = Some("arn:aws:ecs:us-east-1:123456789012:task/cca/0123abcd".to_owned());
    full.container_ip = Some("10.0.3.17".to_owned());
    full.app_port = Some(3000);
    full.control_port = Some(u16::MAX);
    full.uat_url = Some("https://abc.uat.example.com".to_owned());
    full.claude_session_id = Some("5f0c3c1e-8d0a-4b1e-9a51-3f1b2c7d9e10".to_owned());
    full.cost_usd = Some(0.1 + 0.2);
    full.turns = Some(u32::MAX);
    full.error = Some(String::new());
    full.updated_at = 1_700_000_005;
    full.last_activity = Some(1_700_000_004);
    full.ttl = Some(1_700_600_000);
    store.create(&full).await.unwrap();
    assert_eq!(
        store.get(&full.session_id).await.unwrap().as_ref(),
        Some(&full)
    );

    let minimal = Session::new(
        SessionId::random_agent(),
        SessionType::Preview,
        Source::Github,
        repo("octo/hello"),
        BranchName::parse("main").unwrap(),
        ImageChannel::Latest,
        -5,
    );
    store.create(&minimal).await.unwrap();
    assert_eq!(
        store.get(&minimal.session_id).await.unwrap().as_ref(),
        Some(&minimal)
    );

    let absent = SessionId::parse("nobody-here").unwrap();
    assert_eq!(store.get(&absent).await.unwrap(), None);
}

async fn create_refuses_a_session_not_provisioning(store: Arc<dyn SessionStore>) {
    let mut s = agent(&repo("octo/hello"), 1, 100);
    s.status = Status::Running;
    assert_illegal(
        store.create(&s).await,
        &s.session_id,
        Status::Running,
        Status::Provisioning,
    );
    assert_eq!(store.get(&s.session_id).await.unwrap(), None);
    // Nothing was claimed either.
    let mut fresh = agent(&repo("octo/hello"), 1, 100);
    fresh.status = Status::Provisioning;
    store.create(&fresh).await.unwrap();
}

async fn update_writes_the_patch_and_keeps_the_rest(store: Arc<dyn SessionStore>) {
    let mut s = agent(&repo("octo/hello"), 5, 100);
    s.initial_prompt = Some("first".to_owned());
    store.create(&s).await.unwrap();

    let patch = SessionPatch {
        container_ip: Some("10.0.0.9".to_owned()),
        cost_usd: Some(1.25),
        turns: Some(3),
        last_activity: Some(140),
        heartbeat_at: Some(145),
        ..SessionPatch::default()
    };
    let written = store.update(&s.session_id, patch, 150).await.unwrap();
    let expected = Session {
        container_ip: Some("10.0.0.9".to_owned()),
        cost_usd: Some(1.25),
        turns: Some(3),
        last_activity: Some(140),
        heartbeat_at: Some(145),
        updated_at: 150,
        ..s.clone()
    };
    assert_eq!(written, expected);
    assert_eq!(
        store.get(&s.session_id).await.unwrap(),
        Some(expected.clone())
    );

    // Every patchable field, on a running session.
    drive(
        &*store,
        &s.session_id,
        &[Status::Starting, Status::Running],
        160,
    )
    .await;
    let patch = SessionPatch {
        pr_number: Some(77),
        task_arn: Some("arn:task/2".to_owned()),
        container_ip: Some("10.0.0.10".to_owned()),
        app_port: Some(8080),
        control_port: Some(9090),
        uat_url: Some("https://x.example".to_owned()),
        claude_session_id: Some("claude-1".to_owned()),
        cost_usd: Some(2.5),
        turns: Some(9),
        error: Some("transient".to_owned()),
        last_activity: Some(170),
        heartbeat_at: Some(175),
        initial_prompt: Some("second ✓".to_owned()),
        preview_public: Some(true),
        plan_mode: Some(true),
        runs: Some(4),
        prompt_threads: Some(r#"[{"comment_id":1,"path":"a.rs"}]"#.to_owned()),
    };
    let written = store.update(&s.session_id, patch, 180).await.unwrap();
    let expected = Session {
        pr_number: Some(77),
        task_arn: Some("arn:task/2".to_owned()),
        container_ip: Some("10.0.0.10".to_owned()),
        app_port: Some(8080),
        control_port: Some(9090),
        uat_url: Some("https://x.example".to_owned()),
        claude_session_id: Some("claude-1".to_owned()),
        cost_usd: Some(2.5),
        turns: Some(9),
        error: Some("transient".to_owned()),
        last_activity: Some(170),
        heartbeat_at: Some(175),
        initial_prompt: Some("second ✓".to_owned()),
        preview_public: true,
        plan_mode: true,
        runs: Some(4),
        prompt_threads: Some(r#"[{"comment_id":1,"path":"a.rs"}]"#.to_owned()),
        status: Status::Running,
        updated_at: 180,
        ..expected
    };
    assert_eq!(written, expected);

    // An empty patch only touches `updated_at`.
    let written = store
        .update(&s.session_id, SessionPatch::default(), 190)
        .await
        .unwrap();
    assert_eq!(
        written,
        Session {
            updated_at: 190,
            ..expected.clone()
        }
    );

    // A cost that cannot be stored is refused, and nothing is written.
    let bad = SessionPatch {
        cost_usd: Some(f64::NAN),
        turns: Some(1),
        ..SessionPatch::default()
    };
    assert!(matches!(
        store.update(&s.session_id, bad, 200).await,
        Err(StoreError::Backend(_))
    ));
    assert_eq!(
        store.get(&s.session_id).await.unwrap().unwrap().updated_at,
        190
    );
}

async fn every_transition_is_decided_by_the_store(store: Arc<dyn SessionStore>) {
    let patch = SessionPatch {
        turns: Some(4),
        ..SessionPatch::default()
    };
    let mut issue = 0;
    for from in Status::ALL {
        for to in Status::ALL {
            issue += 1;
            let s = session_in(&*store, from, issue).await;
            assert_eq!(s.status, from);
            let result = store
                .transition(&s.session_id, to, patch.clone(), 5_000)
                .await;
            if from.can_transition_to(to) {
                let written = result.unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
                assert_eq!(
                    (written.status, written.updated_at, written.turns),
                    (to, 5_000, Some(4))
                );
                assert_eq!(store.get(&s.session_id).await.unwrap(), Some(written));
            } else {
                assert_illegal(result, &s.session_id, from, to);
                assert_eq!(
                    store.get(&s.session_id).await.unwrap(),
                    Some(s),
                    "{from} -> {to}"
                );
            }
        }
    }
}

async fn unknown_sessions_are_not_found(store: Arc<dyn SessionStore>) {
    let id = SessionId::parse("ghost").unwrap();
    let not_found = |r: StoreResult<Session>| matches!(r, Err(StoreError::NotFound(i)) if i == id);
    for to in Status::ALL {
        assert!(
            not_found(store.transition(&id, to, SessionPatch::default(), 1).await),
            "{to}"
        );
    }
    assert!(not_found(
        store.update(&id, SessionPatch::default(), 1).await
    ));
    assert!(not_found(
        store.relaunch(&id, SessionPatch::default(), 1).await
    ));
    assert_eq!(store.get(&id).await.unwrap(), None);
}

async fn touch_records_activity_until_the_session_ends(store: Arc<dyn SessionStore>) {
    let session = session_in(store.as_ref(), Status::Running, 31).await;
    let id = &session.session_id;
    store
        .touch(id, 9_000)
        .await
        .expect("touch a running session");
    let after = store.get(id).await.unwrap().unwrap();
    assert_eq!(after.last_activity, Some(9_000));
    assert_eq!(after.updated_at, 9_000);
    assert_eq!(after.status, Status::Running);
    assert_eq!(after.container_ip, session.container_ip);

    store
        .transition(id, Status::Stopping, SessionPatch::default(), 9_100)
        .await
        .unwrap();
    store
        .transition(id, Status::Stopped, SessionPatch::default(), 9_200)
        .await
        .unwrap();
    let refused = store.touch(id, 9_300).await;
    assert!(
        matches!(
            &refused,
            Err(StoreError::IllegalTransition {
                from: Status::Stopped,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(
        store.get(id).await.unwrap().unwrap().last_activity,
        Some(9_000)
    );
    let ghost = SessionId::parse("ghost-touch").unwrap();
    assert!(matches!(
        store.touch(&ghost, 1).await,
        Err(StoreError::NotFound(i)) if i == ghost
    ));
}

async fn ending_sets_the_ttl_and_freezes_the_record(store: Arc<dyn SessionStore>) {
    for (issue, end) in [Status::Stopped, Status::Completed, Status::Failed]
        .into_iter()
        .enumerate()
    {
        let path = path_to(end);
        let s = agent(&repo("octo/ttl"), issue as u64, 100);
        store.create(&s).await.unwrap();
        let (last, before) = path.split_last().unwrap();
        for (i, &step) in before.iter().enumerate() {
            let written =
                store.transition(&s.session_id, step, SessionPatch::default(), 200 + i as i64);
            assert_eq!(written.await.unwrap().ttl, None, "ttl before {end}");
        }
        let patch = SessionPatch {
            error: Some("why".to_owned()),
            ..SessionPatch::default()
        };
        let ended = store
            .transition(&s.session_id, *last, patch, 300)
            .await
            .unwrap();
        assert_eq!(ended.status, end);
        assert_eq!(ended.ttl, Some(300 + TERMINAL_TTL_SECS));
        assert_eq!(ended.error.as_deref(), Some("why"));

        let late = SessionPatch {
            last_activity: Some(400),
            ..SessionPatch::default()
        };
        assert_illegal(
            store.update(&s.session_id, late, 400).await,
            &s.session_id,
            end,
            end,
        );
        assert_eq!(store.get(&s.session_id).await.unwrap(), Some(ended));
    }
}

async fn concurrent_creates_for_one_issue_have_one_winner(store: Arc<dyn SessionStore>) {
    let repo = repo("octo/race");
    let racers: Vec<Session> = (0..RACERS).map(|_| agent(&repo, 9, 100)).collect();
    let key = racers[0].active_key();
    let results = join_all(racers.iter().map(|s| {
        let store = Arc::clone(&store);
        let s = s.clone();
        tokio::spawn(async move { store.create(&s).await })
    }))
    .await;
    let results: Vec<StoreResult<()>> = results.into_iter().map(|r| r.unwrap()).collect();
    let winners: Vec<&Session> = racers
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(s, _)| s)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let winner = &winners[0].session_id;
    for result in results.into_iter().filter(|r| r.is_err()) {
        assert_active_exists(result, &key, winner);
    }
    // The losers wrote nothing.
    let all = store.list(&ListFilter::default()).await.unwrap();
    assert_eq!(ids(&all), [winner.as_str()]);
    assert_eq!(
        store.by_active_key(&key).await.unwrap().unwrap().session_id,
        *winner
    );
}

async fn concurrent_creates_of_one_preview_have_one_winner(store: Arc<dyn SessionStore>) {
    let repo = repo("octo/race");

    // The same preview, created by redelivered webhooks: one id, so one record.
    let same = preview(&repo, 40, "feature/login", 100);
    let results = join_all((0..RACERS).map(|_| {
        let store = Arc::clone(&store);
        let s = same.clone();
        tokio::spawn(async move { store.create(&s).await })
    }))
    .await;
    let mut oks = 0;
    for result in results.into_iter().map(|r| r.unwrap()) {
        match result {
            Ok(()) => oks += 1,
            Err(StoreError::IdTaken(id)) | Err(StoreError::ActiveExists { existing: id, .. }) => {
                assert_eq!(id, same.session_id)
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(oks, 1);
    assert_eq!(store.get(&same.session_id).await.unwrap(), Some(same));

    // Different previews (branches) claiming one PR: one wins, the others are told which.
    let racers: Vec<Session> = (0..RACERS)
        .map(|i| preview(&repo, 41, &format!("topic/{i}"), 100))
        .collect();
    let key = ActiveKey::preview(&repo, 41);
    let results = join_all(racers.iter().map(|s| {
        let store = Arc::clone(&store);
        let s = s.clone();
        tokio::spawn(async move { store.create(&s).await })
    }))
    .await;
    let results: Vec<StoreResult<()>> = results.into_iter().map(|r| r.unwrap()).collect();
    let winners: Vec<&SessionId> = racers
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(s, _)| &s.session_id)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for result in results.into_iter().filter(|r| r.is_err()) {
        assert_active_exists(result, &key, winners[0]);
    }
    assert_eq!(store.by_pr(&repo, 41).await.unwrap().len(), 1);
}

async fn an_ended_sessions_key_can_be_claimed_again(store: Arc<dyn SessionStore>) {
    let repo = repo("octo/hello");
    let first = agent(&repo, 7, 100);
    let second = agent(&repo, 7, 200);
    let key = first.active_key();
    store.create(&first).await.unwrap();
    assert_active_exists(store.create(&second).await, &key, &first.session_id);

    drive(
        &*store,
        &first.session_id,
        &[Status::Stopping, Status::Stopped],
        150,
    )
    .await;
    store.create(&second).await.unwrap();
    assert_eq!(
        store.by_active_key(&key).await.unwrap(),
        Some(second.clone())
    );

    // A JIRA session is keyed by its JIRA key, whatever the repository.
    let mut jira = agent(&repo, 0, 300);
    jira.source = Source::Jira;
    jira.issue_number = None;
    jira.jira_issue_key = Some(JiraKey::parse("PROJ-3").unwrap());
    let mut same_key = jira.clone();
    same_key.session_id = SessionId::random_agent();
    same_key.repo_full_name = self::repo("other/repo");
    store.create(&jira).await.unwrap();
    assert_active_exists(
        store.create(&same_key).await,
        &ActiveKey::jira(&JiraKey::parse("PROJ-3").unwrap()),
        &jira.session_id,
    );
    store
        .transition(
            &jira.session_id,
            Status::Failed,
            SessionPatch::default(),
            310,
        )
        .await
        .unwrap();
    store.create(&same_key).await.unwrap();

    // An ended session's id stays taken.
    assert!(matches!(
        store.create(&first).await,
        Err(StoreError::ActiveExists { .. })
    ));
    store
        .transition(
            &second.session_id,
            Status::Failed,
            SessionPatch::default(),
            400,
        )
        .await
        .unwrap();
    assert!(
        matches!(store.create(&first).await, Err(StoreError::IdTaken(id)) if id == first.session_id)
    );
}

async fn relaunch_restarts_an_ended_session_and_reclaims_its_key(store: Arc<dyn SessionStore>) {
    let repo = repo("octo/hello");
    let mut first = agent(&repo, 8, 100);
    first.pr_number = Some(21);
    first.cost_usd = Some(3.0);
    let key = first.active_key();
    store.create(&first).await.unwrap();
    let id = first.session_id.clone();
    let running = SessionPatch {
        task_arn: Some("arn:task/1".to_owned()),
        container_ip: Some("10.0.0.1".to_owned()),
        ..SessionPatch::default()
    };
    store
        .transition(&id, Status::Starting, running, 110)
        .await
        .unwrap();
    let failure = SessionPatch {
        error: Some("out of memory".to_owned()),
        ..SessionPatch::default()
    };
    store
        .transition(&id, Status::Failed, failure, 120)
        .await
        .unwrap();

    // Someone else took the key meanwhile: the relaunch is refused and changes nothing.
    let other = agent(&repo, 8, 130);
    store.create(&other).await.unwrap();
    let before = store.get(&id).await.unwrap();
    assert_active_exists(
        store.relaunch(&id, SessionPatch::default(), 140).await,
        &key,
        &other.session_id,
    );
    assert_eq!(store.get(&id).await.unwrap(), before);

    store
        .transition(
            &other.session_id,
            Status::Stopping,
            SessionPatch::default(),
            150,
        )
        .await
        .unwrap();
    store
        .transition(
            &other.session_id,
            Status::Completed,
            SessionPatch::default(),
            151,
        )
        .await
        .unwrap();
    let patch = SessionPatch {
        initial_prompt: Some("try again".to_owned()),
        ..SessionPatch::default()
    };
    let relaunched = store.relaunch(&id, patch, 160).await.unwrap();
    let expected = Session {
        status: Status::Provisioning,
        initial_prompt: Some("try again".to_owned()),
        updated_at: 160,
        task_arn: None,
        container_ip: None,
        error: None,
        ttl: None,
        ..first.clone()
    };
    assert_eq!(relaunched, expected);
    assert_eq!(store.get(&id).await.unwrap(), Some(expected));
    assert_eq!(
        store.by_active_key(&key).await.unwrap().unwrap().session_id,
        id
    );
    assert_active_exists(store.create(&agent(&repo, 8, 170)).await, &key, &id);

    // Only an ended session can be relaunched.
    assert_illegal(
        store.relaunch(&id, SessionPatch::default(), 180).await,
        &id,
        Status::Provisioning,
        Status::Provisioning,
    );

    // A relaunch patch wins over the fields a relaunch clears.
    store
        .transition(&id, Status::Failed, SessionPatch::default(), 190)
        .await
        .unwrap();
    let patch = SessionPatch {
        task_arn: Some("arn:task/3".to_owned()),
        error: Some("previous: out of memory".to_owned()),
        ..SessionPatch::default()
    };
    let relaunched = store.relaunch(&id, patch, 200).await.unwrap();
    assert_eq!(relaunched.task_arn.as_deref(), Some("arn:task/3"));
    assert_eq!(relaunched.error.as_deref(), Some("previous: out of memory"));
    assert_eq!((relaunched.container_ip, relaunched.ttl), (None, None));
}

async fn by_active_key_returns_the_last_holder_even_after_it_ended(store: Arc<dyn SessionStore>) {
    let repo = repo("octo/hello");
    let s = preview(&repo, 12, "feature/x", 100);
    store.create(&s).await.unwrap();
    let key = ActiveKey::preview(&repo, 12);
    assert_eq!(store.by_active_key(&key).await.unwrap(), Some(s.clone()));

    let ended = store
        .transition(&s.session_id, Status::Failed, SessionPatch::default(), 110)
        .await;
    assert_eq!(
        store.by_active_key(&key).await.unwrap(),
        Some(ended.unwrap())
    );

    assert_eq!(
        store
            .by_active_key(&ActiveKey::preview(&repo, 13))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .by_active_key(&ActiveKey::issue(&repo, 12))
            .await
            .unwrap(),
        None
    );
}

async fn by_pr_lists_agent_and_preview_sessions_newest_first(store: Arc<dyn SessionStore>) {
    let hello = repo("octo/hello");
    let mut old_agent = agent(&hello, 3, 100);
    old_agent.pr_number = Some(40);
    let later_agent = agent(&hello, 4, 200);
    let pr_preview = preview(&hello, 40, "claude/issue-3", 300);
    let mut other_pr = agent(&hello, 5, 400);
    other_pr.pr_number = Some(41);
    let mut other_repo = agent(&repo("octo/other"), 3, 500);
    other_repo.pr_number = Some(40);
    let no_pr = agent(&hello, 6, 600);
    for s in [
        &old_agent,
        &later_agent,
        &pr_preview,
        &other_pr,
        &other_repo,
        &no_pr,
    ] {
        store.create(s).await.unwrap();
    }
    // The PR of a session can be learnt after it was created.
    let patch = SessionPatch {
        pr_number: Some(40),
        ..SessionPatch::default()
    };
    store
        .update(&later_agent.session_id, patch, 250)
        .await
        .unwrap();
    store
        .transition(
            &old_agent.session_id,
            Status::Failed,
            SessionPatch::default(),
            260,
        )
        .await
        .unwrap();

    let found = store.by_pr(&hello, 40).await.unwrap();
    assert_eq!(
        ids(&found),
        [
            pr_preview.session_id.as_str(),
            later_agent.session_id.as_str(),
            old_agent.session_id.as_str()
        ]
    );
    assert_eq!(found[2].status, Status::Failed);
    assert_eq!(
        ids(&store.by_pr(&hello, 41).await.unwrap()),
        [other_pr.session_id.as_str()]
    );
    assert_eq!(
        ids(&store.by_pr(&repo("octo/other"), 40).await.unwrap()),
        [other_repo.session_id.as_str()]
    );
    assert!(store.by_pr(&hello, 99).await.unwrap().is_empty());
    assert!(
        store
            .by_pr(&repo("nobody/here"), 40)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn list_filters_by_status_newest_first_and_limits(store: Arc<dyn SessionStore>) {
    assert!(store.list(&ListFilter::default()).await.unwrap().is_empty());
    let hello = repo("octo/hello");
    let sessions: [Session; 5] =
        std::array::from_fn(|i| agent(&hello, i as u64, 100 * (i as i64 + 1)));
    for s in &sessions {
        store.create(s).await.unwrap();
    }
    let [s0, s1, s2, s3, s4] = sessions.each_ref().map(|s| s.session_id.as_str());
    for s in [&sessions[1], &sessions[3]] {
        drive(
            &*store,
            &s.session_id,
            &[Status::Starting, Status::Running],
            700,
        )
        .await;
    }
    store
        .transition(
            &sessions[4].session_id,
            Status::Failed,
            SessionPatch::default(),
            800,
        )
        .await
        .unwrap();
    // Pointers and deliveries share the DynamoDB table; they are never listed.
    assert!(store.record_delivery("d-1", 900).await.unwrap());

    let list = |statuses: Vec<Status>, limit: Option<usize>| {
        let store = Arc::clone(&store);
        async move { store.list(&ListFilter { statuses, limit }).await.unwrap() }
    };
    assert_eq!(ids(&list(vec![], None).await), [s4, s3, s2, s1, s0]);
    assert_eq!(ids(&list(vec![Status::Running], None).await), [s3, s1]);
    assert_eq!(
        ids(&list(vec![Status::Running, Status::Failed], None).await),
        [s4, s3, s1]
    );
    assert_eq!(ids(&list(vec![Status::Provisioning], Some(1)).await), [s2]);
    assert_eq!(ids(&list(vec![], Some(2)).await), [s4, s3]);
    assert!(list(vec![Status::Idle], None).await.is_empty());
    assert!(list(vec![], Some(0)).await.is_empty());
}

async fn deliveries_are_recorded_once_until_they_expire(store: Arc<dyn SessionStore>) {
    let now = 1_000_000;
    assert!(
        store
            .record_delivery("72d3162e-cc78-11e3-81ab-4c9367dc0958", now)
            .await
            .unwrap()
    );
    store
        .finish_delivery("72d3162e-cc78-11e3-81ab-4c9367dc0958", now)
        .await
        .unwrap();
    assert!(
        !store
            .record_delivery("72d3162e-cc78-11e3-81ab-4c9367dc0958", now + 1)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_delivery("72d3162e-cc78-11e3-81ab-4c9367dc0959", now + 1)
            .await
            .unwrap()
    );

    // Handled, so held past its lease.
    assert!(
        !store
            .record_delivery(
                "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                now + DELIVERY_LEASE_SECS + 1
            )
            .await
            .unwrap()
    );
    let expiry = now + DELIVERY_TTL_SECS;
    assert!(
        !store
            .record_delivery("72d3162e-cc78-11e3-81ab-4c9367dc0958", expiry)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_delivery("72d3162e-cc78-11e3-81ab-4c9367dc0958", expiry + 1)
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_delivery("72d3162e-cc78-11e3-81ab-4c9367dc0958", expiry + 2)
            .await
            .unwrap()
    );
}

/// A process that recorded a delivery and died before doing its work (a Lambda killed at its
/// time-out, a crash) holds the id only for the lease: GitHub's redelivery after that is
/// handled. Within the lease it is a duplicate (the first may still be working).
async fn a_delivery_never_finished_is_taken_again_after_its_lease(store: Arc<dyn SessionStore>) {
    let now = 3_000_000;
    assert!(store.record_delivery("d-died", now).await.unwrap());
    assert!(
        !store
            .record_delivery("d-died", now + DELIVERY_LEASE_SECS)
            .await
            .unwrap(),
        "still within the lease"
    );
    assert!(
        store
            .record_delivery("d-died", now + DELIVERY_LEASE_SECS + 1)
            .await
            .unwrap(),
        "the lease ran out: handled again"
    );
    // Finishing an id that was forgotten (or never recorded) does not make it known.
    store.forget_delivery("d-died").await.unwrap();
    store.finish_delivery("d-died", now).await.unwrap();
    store.finish_delivery("d-never", now).await.unwrap();
    assert!(store.record_delivery("d-died", now + 1).await.unwrap());
    assert!(store.record_delivery("d-never", now + 1).await.unwrap());
}

async fn a_forgotten_delivery_can_be_recorded_again(store: Arc<dyn SessionStore>) {
    let now = 2_000_000;
    assert!(store.record_delivery("d-forget", now).await.unwrap());
    assert!(!store.record_delivery("d-forget", now).await.unwrap());
    store.forget_delivery("d-forget").await.unwrap();
    assert!(
        store.record_delivery("d-forget", now).await.unwrap(),
        "forgotten, so new again"
    );
    // Forgetting what was never recorded is not an error, and touches nothing else.
    store.forget_delivery("d-never-seen").await.unwrap();
    assert!(!store.record_delivery("d-forget", now).await.unwrap());
    assert!(store.list(&ListFilter::default()).await.unwrap().is_empty());
}

async fn concurrent_identical_deliveries_record_once(store: Arc<dyn SessionStore>) {
    let results = join_all((0..RACERS).map(|_| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.record_delivery("redelivered", 5_000).await })
    }))
    .await;
    let firsts = results
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .filter(|&new| new)
        .count();
    assert_eq!(firsts, 1);
}

// ---------------------------------------------------------------------------------------------
// DynamoDB layout: what other tools (infrastructure, the original system's data) rely on.

type Item = HashMap<String, AttributeValue>;

async fn raw_item(client: &aws_sdk_dynamodb::Client, table: &str, key: &str) -> Option<Item> {
    client
        .get_item()
        .table_name(table)
        .key("session_id", AttributeValue::S(key.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

#[tokio::test]
async fn dynamo_items_carry_the_record_field_names() {
    within_time_limit(async {
        let Some((client, table)) = dynamo_table().await else {
            return;
        };
        let store = DynamoStore::new(client.clone(), table.clone());
        let hello = repo("octo/hello");
        let mut s = agent(&hello, 3, 100);
        s.cost_usd = Some(0.75);
        store.create(&s).await.unwrap();
        store.record_delivery("d-9", 100).await.unwrap();

        let item = raw_item(&client, &table, s.session_id.as_str())
            .await
            .unwrap();
        let names: HashSet<&str> = item.keys().map(String::as_str).collect();
        let expected: HashSet<&str> = [
            "session_id",
            "session_type",
            "source",
            "repo_full_name",
            "issue_number",
            "branch_name",
            "status",
            "image_channel",
            "cost_usd",
            "created_at",
            "updated_at",
        ]
        .into();
        // Absent fields are not written, so a session without a PR stays out of `pr-index`.
        assert_eq!(names, expected);
        assert_eq!(item["status"], AttributeValue::S("PROVISIONING".to_owned()));
        assert_eq!(item["issue_number"], AttributeValue::N("3".to_owned()));
        assert_eq!(item["cost_usd"], AttributeValue::N("0.75".to_owned()));

        let pointer = raw_item(&client, &table, "key#agent:octo/hello#3")
            .await
            .unwrap();
        assert_eq!(
            pointer["owner"],
            AttributeValue::S(s.session_id.to_string())
        );
        assert_eq!(pointer["active"], AttributeValue::Bool(true));
        assert_eq!(pointer["kind"], AttributeValue::S("key".to_owned()));

        // Held for its lease while handled, then for the TTL (DynamoDB's TTL deletes it).
        let delivery = raw_item(&client, &table, "delivery#d-9").await.unwrap();
        assert_eq!(delivery["kind"], AttributeValue::S("delivery".to_owned()));
        assert_eq!(
            delivery["ttl"],
            AttributeValue::N((100 + DELIVERY_LEASE_SECS).to_string())
        );
        store.finish_delivery("d-9", 150).await.unwrap();
        let delivery = raw_item(&client, &table, "delivery#d-9").await.unwrap();
        assert_eq!(
            delivery["ttl"],
            AttributeValue::N((150 + DELIVERY_TTL_SECS).to_string())
        );

        store
            .transition(&s.session_id, Status::Failed, SessionPatch::default(), 200)
            .await
            .unwrap();
        let pointer = raw_item(&client, &table, "key#agent:octo/hello#3")
            .await
            .unwrap();
        assert_eq!(pointer["active"], AttributeValue::Bool(false));
        let item = raw_item(&client, &table, s.session_id.as_str())
            .await
            .unwrap();
        assert_eq!(
            item["ttl"],
            AttributeValue::N((200 + TERMINAL_TTL_SECS).to_string())
        );
    })
    .await;
}

#[tokio::test]
async fn dynamo_sessions_without_a_pointer_can_still_end() {
    within_time_limit(async {
        let Some((client, table)) = dynamo_table().await else {
            return;
        };
        let store = DynamoStore::new(client.clone(), table.clone());
        // A record written before pointers existed: the session item alone.
        let id = "legacy1";
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let n = |v: &str| AttributeValue::N(v.to_owned());
        client
            .put_item()
            .table_name(&table)
            .item("session_id", s(id))
            .item("session_type", s("agent"))
            .item("source", s("github"))
            .item("repo_full_name", s("octo/hello"))
            .item("issue_number", n("11"))
            .item("branch_name", s("claude/11"))
            .item("status", s("RUNNING"))
            .item("image_channel", s("latest"))
            .item("created_at", n("100"))
            .item("updated_at", n("100"))
            .item("task_arn", AttributeValue::Null(true))
            .send()
            .await
            .unwrap();
        let id = SessionId::parse(id).unwrap();
        let got = store.get(&id).await.unwrap().unwrap();
        assert_eq!((got.status, got.task_arn), (Status::Running, None));
        store
            .transition(&id, Status::Stopping, SessionPatch::default(), 200)
            .await
            .unwrap();
        let ended = store
            .transition(&id, Status::Stopped, SessionPatch::default(), 201)
            .await
            .unwrap();
        assert_eq!(ended.status, Status::Stopped);
        // No pointer was invented for it.
        assert_eq!(
            raw_item(&client, &table, "key#agent:octo/hello#11").await,
            None
        );
        // Relaunching claims the key as any create would.
        store
            .relaunch(&id, SessionPatch::default(), 300)
            .await
            .unwrap();
        let key = ActiveKey::issue(&repo("octo/hello"), 11);
        assert_eq!(
            store.by_active_key(&key).await.unwrap().unwrap().session_id,
            id
        );
    })
    .await;
}

#[tokio::test]
async fn dynamo_corrupt_items_are_backend_errors_naming_session_and_field() {
    within_time_limit(async {
        let Some((client, table)) = dynamo_table().await else {
            return;
        };
        let store = DynamoStore::new(client.clone(), table.clone());
        let s = agent(&repo("octo/hello"), 1, 100);
        store.create(&s).await.unwrap();
        client
            .update_item()
            .table_name(&table)
            .key("session_id", AttributeValue::S(s.session_id.to_string()))
            .update_expression("SET turns = :t")
            .expression_attribute_values(":t", AttributeValue::S("many".to_owned()))
            .send()
            .await
            .unwrap();
        let err = store.get(&s.session_id).await.unwrap_err();
        let StoreError::Backend(msg) = &err else {
            panic!("{err:?}")
        };
        assert!(
            msg.contains(s.session_id.as_str()) && msg.contains("turns"),
            "{msg}"
        );
        assert!(matches!(
            store.list(&ListFilter::default()).await,
            Err(StoreError::Backend(_))
        ));
    })
    .await;
}
