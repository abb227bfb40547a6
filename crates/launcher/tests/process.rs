//! The process launcher with a stand-in for `cca-agent`: a shell script that records how it was
//! started and what signals it got.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cca_domain::{BranchName, ImageChannel, RepoName, SessionId, SessionType};
use cca_launcher::{LaunchRequest, Launcher, ProcessLauncher};
use tempfile::TempDir;

/// Longest any wait in these tests may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// Traps TERM like an agent pushing its work: records the signal, then exits.
const POLITE: &str = r#"#!/bin/sh
out="$OUT_DIR/$SESSION_ID"
trap 'echo terminated > "$out.term"; kill "$child" 2>/dev/null; exit 0' TERM
echo "started on stdout"
echo "started on stderr" >&2
{ echo "args:$*"; env; } > "$out.tmp" && mv "$out.tmp" "$out.env"
sleep 30 &
child=$!
wait "$child"
"#;

/// Ignores TERM, so only the SIGKILL after the grace period ends it (and its `sleep`).
const STUBBORN: &str = r#"#!/bin/sh
out="$OUT_DIR/$SESSION_ID"
trap '' TERM
sleep 30 &
echo "$!" > "$out.child"
{ echo "args:$*"; env; } > "$out.tmp" && mv "$out.tmp" "$out.env"
wait
"#;

struct Stand {
    dir: TempDir,
    launcher: ProcessLauncher,
}

fn stand(script: &str, grace: Duration) -> Stand {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("cca-agent");
    std::fs::write(&program, script).unwrap();
    let mut perms = std::fs::metadata(&program).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&program, perms).unwrap();
    let base_env = vec![
        ("OUT_DIR".to_owned(), dir.path().display().to_string()),
        (
            "SESSION_STORE".to_owned(),
            "sqlite:/tmp/sessions.db".to_owned(),
        ),
    ];
    let launcher = ProcessLauncher::new(program, dir.path().join("logs"), base_env, grace);
    Stand { dir, launcher }
}

fn request(kind: SessionType) -> LaunchRequest {
    LaunchRequest {
        session_id: SessionId::random_agent(),
        kind,
        channel: ImageChannel::Latest,
        repo: RepoName::parse("octo/app").unwrap(),
        branch: BranchName::parse("claude/7").unwrap(),
        env: vec![("CONTROL_PORT".into(), "49152".into())],
        session_token: None,
    }
}

impl Stand {
    fn file(&self, req: &LaunchRequest, ext: &str) -> PathBuf {
        self.dir.path().join(format!("{}.{ext}", req.session_id))
    }
}

/// Waits until `check` holds, failing the test after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn exists(path: &Path) -> bool {
    tokio::fs::try_exists(path).await.unwrap_or(false)
}

#[tokio::test]
async fn a_launched_agent_gets_its_mode_and_environment_and_stops_on_term() {
    let stand = stand(POLITE, Duration::from_secs(5));
    let req = request(SessionType::Agent);

    let launched = stand.launcher.launch(&req).await.unwrap();
    assert!(
        launched.task_arn.starts_with("process:"),
        "{}",
        launched.task_arn
    );
    assert!(stand.launcher.is_running(&launched.task_arn).await.unwrap());

    let env_file = stand.file(&req, "env");
    eventually("the agent to start", || exists(&env_file)).await;
    let seen = std::fs::read_to_string(&env_file).unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines[0], "args:run");
    for expected in [
        format!("SESSION_ID={}", req.session_id),
        "SESSION_TYPE=agent".to_owned(),
        "IMAGE_CHANNEL=latest".to_owned(),
        "REPO_FULL_NAME=octo/app".to_owned(),
        "BRANCH_NAME=claude/7".to_owned(),
        "CONTROL_PORT=49152".to_owned(),
        "SESSION_STORE=sqlite:/tmp/sessions.db".to_owned(),
    ] {
        assert!(
            lines.contains(&expected.as_str()),
            "{expected} missing from {seen}"
        );
    }

    let started = Instant::now();
    stand
        .launcher
        .stop(&launched.task_arn, "test")
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "stop waits for nothing"
    );
    let term_file = stand.file(&req, "term");
    eventually("the agent to exit", || async {
        !stand.launcher.is_running(&launched.task_arn).await.unwrap()
    })
    .await;
    assert_eq!(std::fs::read_to_string(term_file).unwrap(), "terminated\n");

    let log = stand
        .dir
        .path()
        .join("logs")
        .join(format!("{}.log", req.session_id));
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        log.contains("started on stdout") && log.contains("started on stderr"),
        "{log}"
    );

    // Stopping an ended process, or one that was never ours, is not an error.
    stand
        .launcher
        .stop(&launched.task_arn, "again")
        .await
        .unwrap();
    stand
        .launcher
        .stop("process:999999999", "unknown")
        .await
        .unwrap();
    assert!(
        !stand
            .launcher
            .is_running("process:999999999")
            .await
            .unwrap()
    );
    assert!(
        !stand
            .launcher
            .is_running("arn:aws:ecs:us-east-1:1:task/x")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_preview_is_started_in_preview_mode() {
    let stand = stand(POLITE, Duration::from_secs(5));
    let req = request(SessionType::Preview);
    let launched = stand.launcher.launch(&req).await.unwrap();
    let env_file = stand.file(&req, "env");
    eventually("the preview to start", || exists(&env_file)).await;
    let seen = std::fs::read_to_string(&env_file).unwrap();
    assert!(seen.starts_with("args:preview\n"), "{seen}");
    assert!(seen.contains("SESSION_TYPE=preview\n"), "{seen}");
    stand
        .launcher
        .stop(&launched.task_arn, "done")
        .await
        .unwrap();
}

#[tokio::test]
async fn an_agent_ignoring_term_is_killed_with_its_children_after_the_grace() {
    let grace = Duration::from_millis(300);
    let stand = stand(STUBBORN, grace);
    let req = request(SessionType::Agent);
    let launched = stand.launcher.launch(&req).await.unwrap();
    let env_file = stand.file(&req, "env");
    eventually("the agent to start", || exists(&env_file)).await;
    let child_pid = std::fs::read_to_string(stand.file(&req, "child")).unwrap();

    let started = Instant::now();
    stand
        .launcher
        .stop(&launched.task_arn, "test")
        .await
        .unwrap();
    tokio::time::sleep(grace / 2).await;
    assert!(
        stand.launcher.is_running(&launched.task_arn).await.unwrap(),
        "TERM is ignored"
    );
    eventually("the agent to be killed", || async {
        !stand.launcher.is_running(&launched.task_arn).await.unwrap()
    })
    .await;
    assert!(started.elapsed() >= grace);

    // The whole process group went, as a container's processes go with it.
    let stat = format!("/proc/{}/stat", child_pid.trim());
    eventually("the agent's child to be killed", || async {
        std::fs::read_to_string(&stat).map_or(true, |s| s.contains(") Z "))
    })
    .await;
}

#[tokio::test]
async fn shutdown_all_stops_every_agent_and_waits_for_them() {
    let stand = stand(POLITE, Duration::from_secs(5));
    let reqs = [request(SessionType::Agent), request(SessionType::Preview)];
    let mut arns = Vec::new();
    for req in &reqs {
        arns.push(stand.launcher.launch(req).await.unwrap().task_arn);
        let env_file = stand.file(req, "env");
        eventually("the agent to start", || exists(&env_file)).await;
    }

    tokio::time::timeout(PATIENCE, stand.launcher.shutdown_all())
        .await
        .expect("shutdown within the grace period");

    for (req, arn) in reqs.iter().zip(&arns) {
        assert!(!stand.launcher.is_running(arn).await.unwrap());
        assert!(exists(&stand.file(req, "term")).await, "{arn} got TERM");
    }
}

#[tokio::test]
async fn a_missing_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = ProcessLauncher::new(
        dir.path().join("no-such-agent"),
        dir.path().join("logs"),
        Vec::new(),
        Duration::from_secs(1),
    );
    let err = launcher
        .launch(&request(SessionType::Agent))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-agent"), "{err}");
}
