//! The app's dev server: settings file, detection, install and supervision, with a real Node.js
//! app started through npm and killed for real.

use std::path::Path;
use std::time::Duration;

use cca_agent::devserver::{
    self, AppPlan, AppState, Detected, InstallError, PlanSource, RepoFiles, SETTINGS_FILE,
    SettingsError, Supervisor, SupervisorOptions, backoff_delay, detect,
};
use cca_agent::sandbox::Sandbox;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// No confinement: these tests are about the supervision, not the sandbox.
fn unconfined(dir: &Path) -> std::sync::Arc<Sandbox> {
    std::sync::Arc::new(Sandbox::unconfined(dir))
}

/// Upper bound of every scenario, so a hang fails instead of blocking the run.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(90);

/// The app under supervision: writes its pid, serves the health path, echoes `GREETING` on
/// `/env`, and answers 500 elsewhere when a specific health path is configured.
const SERVER_JS: &str = r#"
const http = require('http');
const fs = require('fs');
const healthPath = process.env.HEALTH_PATH || '/';
fs.writeFileSync('server.pid', String(process.pid));
http.createServer((req, res) => {
  if (req.url === '/env') { res.end(String(process.env.GREETING)); return; }
  if (healthPath === '/' || req.url === healthPath) { res.end('hello from the app'); return; }
  res.statusCode = 500;
  res.end('not here');
}).listen(Number(process.env.PORT), process.env.HOST);
"#;

const PACKAGE_JSON: &str = r#"{
  "name": "preview-app",
  "version": "1.0.0",
  "private": true,
  "scripts": { "dev": "node server.js", "build": "true" }
}"#;

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::DEBUG)
        .try_init();
}

async fn scenario<F: Future<Output = ()>>(body: F) {
    init_logs();
    tokio::time::timeout(SCENARIO_TIMEOUT, body)
        .await
        .expect("the scenario timed out");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn repo(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, contents) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(path, contents).expect("write");
    }
    dir
}

/// A Node.js repository with no lockfile and no dependencies: `npm install` works offline.
fn node_repo() -> TempDir {
    repo(&[("package.json", PACKAGE_JSON), ("server.js", SERVER_JS)])
}

/// Keeps npm quiet and off the network.
fn npm_env() -> Vec<(String, String)> {
    [
        ("npm_config_update_notifier", "false"),
        ("npm_config_audit", "false"),
        ("npm_config_fund", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Small delays, so restarts and give-ups happen within a test.
fn quick() -> SupervisorOptions {
    SupervisorOptions {
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        backoff_reset_after: Duration::from_secs(60),
        max_failures: 10,
        stop_grace: Duration::from_secs(3),
        health_interval: Duration::from_millis(50),
        health_request_timeout: Duration::from_secs(2),
        tail_lines: 20,
        ..SupervisorOptions::default()
    }
}

fn plan_of(dir: &Path, port: u16) -> AppPlan {
    devserver::plan(dir, port, 8080)
        .expect("settings are valid")
        .expect("an app is found")
}

/// GET over plain TCP: (status, body).
async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

async fn read_pid(dir: &Path) -> i32 {
    let text = tokio::fs::read_to_string(dir.join("server.pid"))
        .await
        .expect("the app wrote its pid");
    text.trim().parse().expect("a pid")
}

/// Whether a process is gone (absent, or a zombie waiting for its parent).
fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

async fn wait_gone(pid: i32) -> bool {
    for _ in 0..100 {
        if process_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Collects the states not yet seen through `states` until one matches `done`; returns them
/// all, the matching one last.
async fn states_until(
    states: &mut watch::Receiver<AppState>,
    done: impl Fn(&AppState) -> bool,
) -> Vec<AppState> {
    let mut seen = Vec::new();
    loop {
        if !states.has_changed().expect("the supervisor is alive") {
            states.changed().await.expect("the supervisor is alive");
        }
        let state = states.borrow_and_update().clone();
        let done = done(&state);
        seen.push(state);
        if done {
            return seen;
        }
    }
}

fn kill(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the app");
}

// ---------------------------------------------------------------------------------------------
// Supervision of a real app

#[tokio::test]
async fn a_detected_node_app_is_installed_started_and_served_through_its_port() {
    scenario(async {
        let dir = node_repo();
        let port = free_port();
        let plan = plan_of(dir.path(), port);
        assert_eq!(plan.install.as_deref(), Some("npm install"));
        assert_eq!(plan.dev, "npm run dev");
        assert_eq!(plan.port, port);
        assert_eq!(plan.health_path, "/");
        assert!(matches!(&plan.source, PlanSource::Detected(what) if what.contains("scripts.dev")));

        devserver::install(
            &Sandbox::unconfined(dir.path()),
            &plan,
            dir.path(),
            &npm_env(),
        )
        .await
        .expect("npm install without dependencies works offline");
        assert!(dir.path().join("package-lock.json").exists());

        let app = Supervisor::start_with(
            plan,
            unconfined(dir.path()),
            dir.path().to_path_buf(),
            npm_env(),
            quick(),
        );
        app.wait_ready(Duration::from_secs(30))
            .await
            .expect("the app becomes ready");
        assert_eq!(app.state(), AppState::Ready);
        let (status, body) = get(port, "/").await.expect("the app answers");
        assert_eq!((status, body.as_str()), (200, "hello from the app"));
        app.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_killed_app_is_restarted_with_back_off_and_serves_again() {
    scenario(async {
        let dir = node_repo();
        let port = free_port();
        let app = Supervisor::start_with(
            plan_of(dir.path(), port),
            unconfined(dir.path()),
            dir.path().to_path_buf(),
            npm_env(),
            quick(),
        );
        app.wait_ready(Duration::from_secs(30))
            .await
            .expect("ready");
        let first = read_pid(dir.path()).await;
        let mut states = app.subscribe();
        states.borrow_and_update();

        kill(first);
        let seen = states_until(&mut states, |s| *s == AppState::Ready).await;
        assert!(
            seen.contains(&AppState::Restarting {
                attempt: 1,
                after: Duration::from_millis(100)
            }),
            "{seen:?}"
        );
        assert_eq!(seen.last(), Some(&AppState::Ready));

        let second = read_pid(dir.path()).await;
        assert_ne!(first, second);
        assert!(process_gone(first));
        let (status, _) = get(port, "/").await.expect("the app answers again");
        assert_eq!(status, 200);
        app.stop().await;
        assert!(wait_gone(second).await, "stop kills the restarted app");
    })
    .await;
}

#[tokio::test]
async fn the_settings_file_sets_command_port_health_path_and_environment() {
    scenario(async {
        let custom_port = free_port();
        let settings = format!(
            r#"
[app]
dev = "node server.js"
port = {custom_port}
health_path = "/healthz"
ready_timeout_secs = 20

[app.env]
GREETING = "hello from the settings"
HEALTH_PATH = "/healthz"
"#
        );
        let dir = repo(&[
            ("package.json", PACKAGE_JSON),
            ("server.js", SERVER_JS),
            (SETTINGS_FILE, &settings),
        ]);
        let agent_port = free_port();
        let plan = plan_of(dir.path(), agent_port);
        assert_eq!(plan.port, custom_port);
        assert_eq!(
            plan.install, None,
            "a file naming `dev` installs nothing unless told"
        );
        assert_eq!(plan.ready_timeout, Duration::from_secs(20));
        assert_eq!(
            plan.source,
            PlanSource::File(dir.path().join(SETTINGS_FILE))
        );
        assert_eq!(
            plan.health_url(),
            format!("http://127.0.0.1:{custom_port}/healthz")
        );

        let app = Supervisor::start_with(
            plan,
            unconfined(dir.path()),
            dir.path().to_path_buf(),
            Vec::new(),
            quick(),
        );
        // `/` answers 500 here, so readiness proves that the health path was used.
        app.wait_ready(Duration::from_secs(30))
            .await
            .expect("ready");
        assert_eq!(get(custom_port, "/").await.map(|r| r.0), Some(500));
        let (status, body) = get(custom_port, "/env").await.expect("answers");
        assert_eq!((status, body.as_str()), (200, "hello from the settings"));
        assert_eq!(
            get(agent_port, "/").await,
            None,
            "nothing on the agent's port"
        );
        app.stop().await;
    })
    .await;
}

#[tokio::test]
async fn stop_leaves_no_process_behind_and_is_idempotent() {
    scenario(async {
        let dir = node_repo();
        let app = Supervisor::start_with(
            plan_of(dir.path(), free_port()),
            unconfined(dir.path()),
            dir.path().to_path_buf(),
            npm_env(),
            quick(),
        );
        app.wait_ready(Duration::from_secs(30))
            .await
            .expect("ready");
        let pid = read_pid(dir.path()).await;

        app.stop().await;
        assert_eq!(app.state(), AppState::Stopped);
        assert!(wait_gone(pid).await, "the node process outlived stop()");
        app.stop().await;
        app.restart().await;
        assert_eq!(app.state(), AppState::Stopped, "stopped is final");
        assert_eq!(
            app.wait_ready(Duration::from_secs(1)).await,
            Err(AppState::Stopped)
        );
    })
    .await;
}

#[tokio::test]
async fn an_app_ignoring_sigterm_is_killed_after_the_grace() {
    scenario(async {
        let stubborn = format!("process.on('SIGTERM', () => {{}});\n{SERVER_JS}");
        let dir = repo(&[
            ("stubborn.js", &stubborn),
            (SETTINGS_FILE, "[app]\ndev = \"node stubborn.js\"\n"),
        ]);
        let options = SupervisorOptions {
            stop_grace: Duration::from_millis(500),
            ..quick()
        };
        let app = Supervisor::start_with(
            plan_of(dir.path(), free_port()),
            unconfined(dir.path()),
            dir.path().to_path_buf(),
            Vec::new(),
            options,
        );
        app.wait_ready(Duration::from_secs(30))
            .await
            .expect("ready");
        let pid = read_pid(dir.path()).await;
        let asked = std::time::Instant::now();
        app.stop().await;
        assert!(
            asked.elapsed() >= Duration::from_millis(500),
            "the grace was given"
        );
        assert!(wait_gone(pid).await, "SIGKILL ends what SIGTERM did not");
    })
    .await;
}

#[tokio::test]
async fn dropping_the_supervisor_kills_the_whole_process_group() {
    scenario(async {
        let dir = node_repo();
        let app = Supervisor::start_with(
            plan_of(dir.path(), free_port()),
            unconfined(dir.path()),
            dir.path().to_path_buf(),
            npm_env(),
            quick(),
        );
        app.wait_ready(Duration::from_secs(30))
            .await
            .expect("ready");
        let pid = read_pid(dir.path()).await;
        drop(app);
        assert!(
            wait_gone(pid).await,
            "the node process outlived the supervisor"
        );
    })
    .await;
}

#[tokio::test]
async fn restart_on_request_replaces_the_process() {
    scenario(async {
        let dir = node_repo();
        let port = free_port();
        let app = Supervisor::start_with(
            plan_of(dir.path(), port),
            unconfined(dir.path()),
            dir.path().to_path_buf(),
            npm_env(),
            quick(),
        );
        app.wait_ready(Duration::from_secs(30))
            .await
            .expect("ready");
        let first = read_pid(dir.path()).await;

        app.restart().await;
        assert!(
            process_gone(first),
            "restart returns once the old process is gone"
        );
        app.wait_ready(Duration::from_secs(30))
            .await
            .expect("ready again");
        assert_ne!(read_pid(dir.path()).await, first);
        assert_eq!(get(port, "/").await.map(|r| r.0), Some(200));
        app.stop().await;
    })
    .await;
}

#[tokio::test]
async fn restart_with_a_new_plan_runs_the_new_settings() {
    scenario(async {
        let dir = repo(&[
            ("server.js", SERVER_JS),
            (
                SETTINGS_FILE,
                "[app]\ndev = \"node server.js\"\n[app.env]\nGREETING = \"before\"\n",
            ),
        ]);
        let port = free_port();
        let app = Supervisor::start_with(
            plan_of(dir.path(), port),
            unconfined(dir.path()),
            dir.path().to_path_buf(),
            Vec::new(),
            quick(),
        );
        app.wait_ready(Duration::from_secs(30))
            .await
            .expect("ready");
        assert_eq!(
            get(port, "/env").await.map(|r| r.1).as_deref(),
            Some("before")
        );

        // A pull changed the settings file.
        std::fs::write(
            dir.path().join(SETTINGS_FILE),
            "[app]\ndev = \"node server.js\"\n[app.env]\nGREETING = \"after\"\n",
        )
        .expect("write");
        let plan = plan_of(dir.path(), port);
        app.restart_with(plan.clone()).await;
        assert_eq!(app.plan(), plan);
        app.wait_ready(Duration::from_secs(30))
            .await
            .expect("ready again");
        assert_eq!(
            get(port, "/env").await.map(|r| r.1).as_deref(),
            Some("after")
        );
        app.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_app_that_always_crashes_fails_after_the_limit_and_a_restart_revives_it() {
    scenario(async {
        let settings = r#"
[app]
dev = "if [ -f fixed ]; then exec node server.js; fi; echo booting; echo boom >&2; exit 3"
"#;
        let dir = repo(&[("server.js", SERVER_JS), (SETTINGS_FILE, settings)]);
        let port = free_port();
        let options = SupervisorOptions {
            backoff_initial: Duration::from_millis(20),
            max_failures: 3,
            ..quick()
        };
        let app = Supervisor::start_with(
            plan_of(dir.path(), port),
            unconfined(dir.path()),
            dir.path().to_path_buf(),
            Vec::new(),
            options,
        );
        let mut states = app.subscribe();
        let seen = states_until(&mut states, |s| matches!(s, AppState::Failed(_))).await;
        let attempts: Vec<u32> = seen
            .iter()
            .filter_map(|s| match s {
                AppState::Restarting { attempt, .. } => Some(*attempt),
                _ => None,
            })
            .collect();
        assert_eq!(attempts, [1, 2], "{seen:?}");
        let Some(AppState::Failed(reason)) = seen.last() else {
            unreachable!()
        };
        assert!(reason.contains("3 times"), "{reason}");
        assert!(reason.contains("exit status: 3"), "{reason}");
        assert!(reason.contains("boom"), "{reason}");
        assert!(
            reason.contains(&format!("http://127.0.0.1:{port}/")),
            "{reason}"
        );
        assert!(matches!(
            app.wait_ready(Duration::from_secs(1)).await,
            Err(AppState::Failed(_))
        ));

        // The supervisor gave up but still answers: after a fix, a restart brings the app up.
        std::fs::write(dir.path().join("fixed"), "").expect("write");
        app.restart().await;
        app.wait_ready(Duration::from_secs(30))
            .await
            .expect("ready after the fix");
        app.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_port_taken_by_another_process_is_reported_not_mistaken_for_the_app() {
    scenario(async {
        let squatter = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
        let port = squatter.local_addr().expect("address").port();
        let dir = repo(&[
            ("server.js", SERVER_JS),
            (SETTINGS_FILE, "[app]\ndev = \"node server.js\"\n"),
        ]);
        let options = SupervisorOptions {
            max_failures: 2,
            ..quick()
        };
        let app = Supervisor::start_with(
            plan_of(dir.path(), port),
            unconfined(dir.path()),
            dir.path().to_path_buf(),
            Vec::new(),
            options,
        );
        let Err(AppState::Failed(reason)) = app.wait_ready(Duration::from_secs(30)).await else {
            panic!("expected a failure, got {:?}", app.state());
        };
        assert!(
            reason.contains(&format!("port {port} is already in use")),
            "{reason}"
        );
        drop(squatter);
    })
    .await;
}

#[tokio::test]
async fn a_slow_app_is_reported_at_the_ready_timeout_and_still_becomes_ready() {
    scenario(async {
        let settings = r#"
[app]
dev = "sleep 2; exec node server.js"
ready_timeout_secs = 1
"#;
        let dir = repo(&[("server.js", SERVER_JS), (SETTINGS_FILE, settings)]);
        let port = free_port();
        let app = Supervisor::start_with(
            plan_of(dir.path(), port),
            unconfined(dir.path()),
            dir.path().to_path_buf(),
            Vec::new(),
            quick(),
        );
        let Err(AppState::Failed(reason)) = app.wait_ready(Duration::from_secs(30)).await else {
            panic!("expected a ready time-out, got {:?}", app.state());
        };
        assert!(reason.contains("within 1s"), "{reason}");
        assert!(
            reason.contains(&format!("http://127.0.0.1:{port}/")),
            "{reason}"
        );

        let mut states = app.subscribe();
        states_until(&mut states, |s| *s == AppState::Ready).await;
        assert_eq!(get(port, "/").await.map(|r| r.0), Some(200));
        app.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_back_off_starts_over_after_the_app_was_ready_long_enough() {
    scenario(async {
        let dir = repo(&[
            ("server.js", SERVER_JS),
            (SETTINGS_FILE, "[app]\ndev = \"exec node server.js\"\n"),
        ]);
        let options = SupervisorOptions {
            backoff_reset_after: Duration::from_millis(800),
            ..quick()
        };
        let app = Supervisor::start_with(
            plan_of(dir.path(), free_port()),
            unconfined(dir.path()),
            dir.path().to_path_buf(),
            Vec::new(),
            options,
        );
        let mut states = app.subscribe();
        let mut attempts = Vec::new();
        for pause in [Duration::ZERO, Duration::ZERO, Duration::from_millis(1500)] {
            states_until(&mut states, |s| *s == AppState::Ready).await;
            tokio::time::sleep(pause).await;
            kill(read_pid(dir.path()).await);
            let seen =
                states_until(&mut states, |s| matches!(s, AppState::Restarting { .. })).await;
            if let Some(AppState::Restarting { attempt, after }) = seen.last() {
                attempts.push((*attempt, *after));
            }
        }
        let ms = Duration::from_millis;
        assert_eq!(attempts, [(1, ms(100)), (2, ms(200)), (1, ms(100))]);
        app.stop().await;
    })
    .await;
}

#[test]
fn the_back_off_doubles_and_is_capped() {
    let s = Duration::from_secs;
    let delays: Vec<Duration> = (1..=8).map(|n| backoff_delay(n, s(1), s(30))).collect();
    assert_eq!(delays, [s(1), s(2), s(4), s(8), s(16), s(30), s(30), s(30)]);
    assert_eq!(backoff_delay(0, s(1), s(30)), s(1));
    assert_eq!(backoff_delay(u32::MAX, s(1), s(30)), s(30));
    let ms = Duration::from_millis;
    assert_eq!(SupervisorOptions::default().backoff(3), s(4));
    assert_eq!(backoff_delay(3, ms(100), ms(250)), ms(250));
}

// ---------------------------------------------------------------------------------------------
// Install

fn install_plan(command: &str) -> AppPlan {
    AppPlan {
        install: Some(command.to_owned()),
        dev: "true".to_owned(),
        port: 1,
        health_path: "/".to_owned(),
        env: [("FROM_REPO".to_owned(), "repo".to_owned())].into(),
        ready_timeout: Duration::from_secs(1),
        source: PlanSource::Detected("test".to_owned()),
    }
}

#[tokio::test]
async fn install_runs_in_the_repository_with_the_given_and_the_repositorys_environment() {
    scenario(async {
        let dir = repo(&[]);
        let command = r#"printf '%s|%s|%s|%s' "$FROM_CALLER" "$FROM_REPO" "$CI" "$CARGO_MANIFEST_DIR" > installed.txt"#;
        let env = vec![("FROM_CALLER".to_owned(), "caller".to_owned())];
        devserver::install(&Sandbox::unconfined(dir.path()), &install_plan(command), dir.path(), &env)
            .await
            .expect("install succeeds");
        let written = std::fs::read_to_string(dir.path().join("installed.txt")).expect("written");
        // The agent's own environment (here, what cargo set for the test) does not leak.
        assert!(std::env::var("CARGO_MANIFEST_DIR").is_ok());
        assert_eq!(written, "caller|repo|true|");

        let mut nothing = install_plan("exit 1");
        nothing.install = None;
        devserver::install(&Sandbox::unconfined(dir.path()), &nothing, dir.path(), &[])
            .await
            .expect("no install command, nothing to do");
    })
    .await;
}

#[tokio::test]
async fn a_failed_install_names_the_command_its_status_and_its_last_output() {
    scenario(async {
        let dir = repo(&[]);
        let command = "echo resolving; head -c 300000 /dev/zero | tr '\\0' x; echo; echo 'ERR! missing peer' >&2; exit 7";
        let error = devserver::install(&Sandbox::unconfined(dir.path()), &install_plan(command), dir.path(), &[])
            .await
            .expect_err("the install fails");
        let InstallError::Failed { status, tail, .. } = &error else {
            panic!("unexpected error {error}");
        };
        assert_eq!(status.code(), Some(7));
        assert!(tail.iter().any(|line| line == "ERR! missing peer"), "{tail:?}");
        assert!(tail.iter().all(|line| line.len() < 600), "long lines are cut");
        let message = error.to_string();
        assert!(message.contains(command), "{message}");
        assert!(message.contains("exit status: 7"), "{message}");
        assert!(message.contains("ERR! missing peer"), "{message}");
    })
    .await;
}

#[tokio::test]
async fn an_abandoned_install_leaves_nothing_running() {
    scenario(async {
        let dir = repo(&[]);
        let plan = install_plan("sleep 30 & echo $! > background.pid; sleep 30");
        let outcome = tokio::time::timeout(
            Duration::from_secs(1),
            devserver::install(&Sandbox::unconfined(dir.path()), &plan, dir.path(), &[]),
        )
        .await;
        assert!(outcome.is_err(), "the install was cut short");
        let pid: i32 = std::fs::read_to_string(dir.path().join("background.pid"))
            .expect("pid written")
            .trim()
            .parse()
            .expect("pid");
        assert!(
            wait_gone(pid).await,
            "the background process outlived the install"
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Detection (pure)

fn node(package: &str, extra: &[&str]) -> Option<Detected> {
    let files = extra.iter().fold(
        RepoFiles::new().with("package.json", package),
        |files, name| files.with(*name, ""),
    );
    detect(&files).expect("valid files")
}

fn dev_script(script: &str) -> String {
    format!(r#"{{"scripts": {{"dev": "{script}"}}}}"#)
}

fn commands(found: Option<Detected>) -> (Option<String>, String) {
    let found = found.expect("an app is detected");
    (found.install, found.dev)
}

fn pair(install: &str, dev: &str) -> (Option<String>, String) {
    (Some(install.to_owned()), dev.to_owned())
}

#[test]
fn npm_is_the_default_and_uses_ci_with_a_lockfile() {
    let plain = dev_script("node server.js");
    assert_eq!(
        commands(node(&plain, &[])),
        pair("npm install", "npm run dev")
    );
    assert_eq!(
        commands(node(&plain, &["package-lock.json"])),
        pair("npm ci", "npm run dev")
    );
}

#[test]
fn the_lockfile_chooses_the_package_manager() {
    let plain = dev_script("node server.js");
    assert_eq!(
        commands(node(&plain, &["pnpm-lock.yaml"])),
        pair("pnpm install --frozen-lockfile", "pnpm run dev")
    );
    assert_eq!(
        commands(node(&plain, &["yarn.lock"])),
        pair("yarn install --frozen-lockfile", "yarn run dev")
    );
    assert_eq!(
        commands(node(&plain, &["yarn.lock", ".yarnrc.yml"])),
        pair("yarn install --immutable", "yarn run dev")
    );
    assert_eq!(
        commands(node(&plain, &["bun.lockb"])),
        pair("bun install --frozen-lockfile", "bun run dev")
    );
    let declared = r#"{"packageManager": "pnpm@9.1.0", "scripts": {"dev": "node s.js"}}"#;
    assert_eq!(
        commands(node(declared, &[])),
        pair("pnpm install", "pnpm run dev")
    );
}

#[test]
fn vite_and_next_are_told_the_port_and_host() {
    let vite = dev_script("vite");
    assert_eq!(
        commands(node(&vite, &["package-lock.json"])),
        pair(
            "npm ci",
            "npm run dev -- --port $PORT --host 0.0.0.0 --strictPort"
        )
    );
    assert_eq!(
        commands(node(&vite, &["pnpm-lock.yaml"])).1,
        "pnpm run dev --port $PORT --host 0.0.0.0 --strictPort"
    );
    let found = node(&dev_script("tsc -b && vite"), &[]).expect("detected");
    assert!(found.dev.ends_with("--strictPort"));
    assert!(found.what.contains("vite"), "{}", found.what);

    assert_eq!(
        commands(node(&dev_script("next dev --turbo"), &[])).1,
        "npm run dev -- -p $PORT -H 0.0.0.0"
    );
    assert_eq!(
        commands(node(&dev_script("next dev"), &["yarn.lock"])).1,
        "yarn run dev -p $PORT -H 0.0.0.0"
    );
    // Not a framework that needs telling: `$PORT` is in its environment.
    assert_eq!(
        commands(node(&dev_script("vitest --watch"), &[])).1,
        "npm run dev"
    );
}

#[test]
fn start_is_used_when_there_is_no_dev_script() {
    let start = r#"{"scripts": {"build": "tsc", "start": "node dist/index.js"}}"#;
    let found = node(start, &[]).expect("detected");
    assert_eq!(found.dev, "npm run start");
    assert!(found.what.contains("scripts.start"));
    let next = r#"{"scripts": {"start": "next start"}}"#;
    assert_eq!(
        commands(node(next, &[])).1,
        "npm run start -- -p $PORT -H 0.0.0.0"
    );
    let both = r#"{"scripts": {"start": "node prod.js", "dev": "node dev.js"}}"#;
    assert_eq!(commands(node(both, &[])).1, "npm run dev");
}

#[test]
fn a_package_json_without_dev_or_start_is_no_node_app() {
    assert_eq!(node(r#"{"scripts": {"build": "tsc"}}"#, &[]), None);
    assert_eq!(node(r#"{"name": "library"}"#, &[]), None);
    assert_eq!(node(&dev_script("  "), &[]), None);
    // …but a Python app beside it is still found.
    let files = RepoFiles::new()
        .with("package.json", r#"{"scripts": {"build": "tailwindcss"}}"#)
        .with("manage.py", "")
        .with("requirements.txt", "Django>=5\n");
    let found = detect(&files).expect("valid").expect("detected");
    assert_eq!(found.dev, "python3 manage.py runserver 0.0.0.0:$PORT");
}

#[test]
fn python_apps_are_detected_with_their_toolchain() {
    let poetry = r#"
[tool.poetry]
name = "api"

[tool.poetry.dependencies]
python = "^3.12"
FastAPI = "^0.110"
"#;
    let files = RepoFiles::new()
        .with("pyproject.toml", poetry)
        .with("poetry.lock", "")
        .with("main.py", "");
    assert_eq!(
        commands(detect(&files).expect("valid")),
        pair(
            "poetry install",
            "poetry run uvicorn main:app --host 0.0.0.0 --port $PORT --reload"
        )
    );

    let uv = r#"
[project]
name = "api"
dependencies = ["uvicorn[standard]>=0.30", "pydantic"]
"#;
    let files = RepoFiles::new()
        .with("pyproject.toml", uv)
        .with("uv.lock", "")
        .with("app/main.py", "");
    assert_eq!(
        commands(detect(&files).expect("valid")),
        pair(
            "uv sync",
            "uv run uvicorn app.main:app --host 0.0.0.0 --port $PORT --reload"
        )
    );

    let files = RepoFiles::new().with("requirements.txt", "# web\nflask==3.0\ngunicorn\n");
    assert_eq!(
        commands(detect(&files).expect("valid")),
        pair(
            "python3 -m pip install -r requirements.txt",
            "flask run --host 0.0.0.0 --port $PORT --reload"
        )
    );

    let files = RepoFiles::new()
        .with("manage.py", "")
        .with("requirements.txt", "django\nuvicorn\n");
    let found = detect(&files).expect("valid").expect("detected");
    assert_eq!(found.dev, "python3 manage.py runserver 0.0.0.0:$PORT");
    assert!(found.what.contains("django"));

    let files = RepoFiles::new().with("requirements.txt", "requests\nnumpy\n");
    assert_eq!(detect(&files).expect("valid"), None);
}

#[test]
fn no_app_is_detected_in_a_repository_without_one() {
    assert_eq!(detect(&RepoFiles::new()).expect("valid"), None);
    let dir = repo(&[("README.md", "# docs only"), ("src/lib.rs", "")]);
    assert_eq!(
        devserver::plan(dir.path(), 3000, 8080).expect("valid"),
        None
    );
}

#[test]
fn detected_commands_never_hard_code_a_port() {
    let cases = [
        node(&dev_script("vite"), &[]),
        node(&dev_script("next dev"), &[]),
        node(&dev_script("astro dev"), &[]),
        node(&dev_script("react-scripts start"), &[]),
        detect(
            &RepoFiles::new()
                .with("requirements.txt", "fastapi")
                .with("main.py", ""),
        )
        .expect("valid"),
        detect(&RepoFiles::new().with("manage.py", "")).expect("valid"),
    ];
    for found in cases {
        let dev = found.expect("detected").dev;
        assert!(
            !dev.chars().any(|c| c.is_ascii_digit()) || dev.contains("0.0.0.0"),
            "{dev}"
        );
        assert!(
            !["3000", "3001", "5173", "8000"]
                .iter()
                .any(|port| dev.contains(port)),
            "{dev}"
        );
    }
}

#[test]
fn a_malformed_package_json_is_an_error_naming_the_file_and_line() {
    let dir = repo(&[(
        "package.json",
        "{\n  \"scripts\": {\n    \"dev\": vite\n  }\n}\n",
    )]);
    let error = devserver::plan(dir.path(), 3000, 8080).expect_err("malformed");
    let SettingsError::Malformed { path, line, .. } = &error else {
        panic!("unexpected error {error}");
    };
    assert_eq!(path, &dir.path().join("package.json"));
    assert_eq!(*line, 3);
    assert!(error.to_string().contains("package.json:3:"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Settings file

fn settings_error(settings: &str) -> SettingsError {
    let dir = repo(&[(SETTINGS_FILE, settings), ("package.json", PACKAGE_JSON)]);
    devserver::plan(dir.path(), 3000, 8080).expect_err("the settings are refused")
}

#[test]
fn an_unknown_key_is_an_error_that_names_it_and_its_line() {
    let error = settings_error("[app]\ndev = \"npm run dev\"\ncommand = \"npm start\"\n");
    let SettingsError::Malformed {
        line,
        message,
        path,
        ..
    } = &error
    else {
        panic!("unexpected error {error}");
    };
    assert_eq!(*line, 3);
    assert!(message.contains("command"), "{message}");
    assert!(path.ends_with(SETTINGS_FILE));
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}:3:", path.display())),
        "{error}"
    );

    let error = settings_error("[application]\ndev = \"x\"\n");
    assert!(error.to_string().contains("application"), "{error}");
}

#[test]
fn malformed_toml_and_wrong_types_are_errors_naming_the_file_and_line() {
    let error = settings_error("[app]\ndev = \"npm run dev\n");
    assert!(
        matches!(&error, SettingsError::Malformed { line: 2, path, .. } if path.ends_with(SETTINGS_FILE)),
        "{error:?}"
    );
    let error = settings_error("[app]\n\nport = \"5173\"\n");
    assert!(
        matches!(&error, SettingsError::Malformed { line: 3, .. }),
        "{error:?}"
    );
    let error = settings_error("[app]\nport = 70000\n");
    assert!(
        matches!(&error, SettingsError::Malformed { line: 2, .. }),
        "{error:?}"
    );
}

#[test]
fn unusable_values_are_errors_naming_the_setting() {
    let key_of = |settings: &str| match settings_error(settings) {
        SettingsError::Invalid { key, .. } => key,
        other => panic!("unexpected error {other:?}"),
    };
    assert_eq!(
        key_of("[app]\nhealth_path = \"healthz\"\n"),
        "app.health_path"
    );
    assert_eq!(key_of("[app]\ndev = \"  \"\n"), "app.dev");
    assert_eq!(key_of("[app]\nport = 0\n"), "app.port");
    assert_eq!(
        key_of("[app]\nready_timeout_secs = 0\n"),
        "app.ready_timeout_secs"
    );
    assert_eq!(key_of("[app.env]\nPORT = \"80\"\n"), "app.env.PORT");
}

/// A repository picks its app's port, but only among those the deployed network lets the proxy
/// reach, and never the agent's own control port (the proxy would send visitors to it).
#[test]
fn an_app_port_is_unprivileged_and_never_the_control_port() {
    for port in [1, 80, 443, 1023] {
        let error = settings_error(&format!("[app]\nport = {port}\n"));
        assert!(
            matches!(&error, SettingsError::Invalid { key, .. } if key == "app.port"),
            "{error:?}"
        );
        assert!(error.to_string().contains("1024 and 65535"), "{error}");
    }
    let error = settings_error("[app]\nport = 8080\n");
    assert!(
        matches!(&error, SettingsError::Invalid { key, .. } if key == "app.port"),
        "{error:?}"
    );
    assert!(error.to_string().contains("control port"), "{error}");
    for port in [1024, 5173, 65535] {
        let dir = repo(&[
            (SETTINGS_FILE, &format!("[app]\nport = {port}\n")),
            ("package.json", PACKAGE_JSON),
        ]);
        assert_eq!(plan_of(dir.path(), 3000).port, port);
    }
}

#[test]
fn enabled_false_means_no_app_whatever_the_repository_holds() {
    let dir = repo(&[
        (SETTINGS_FILE, "[app]\nenabled = false\n"),
        ("package.json", "{ not json"),
    ]);
    assert_eq!(
        devserver::plan(dir.path(), 3000, 8080).expect("valid"),
        None
    );
}

#[test]
fn a_file_without_dev_completes_detection() {
    let dir = repo(&[
        (
            SETTINGS_FILE,
            "[app]\nhealth_path = \"/api/health\"\n[app.env]\nVITE_FLAG = \"1\"\n",
        ),
        ("package.json", &dev_script("vite")),
        ("package-lock.json", "{}"),
    ]);
    let plan = plan_of(dir.path(), 4000);
    assert_eq!(plan.install.as_deref(), Some("npm ci"));
    assert_eq!(
        plan.dev,
        "npm run dev -- --port $PORT --host 0.0.0.0 --strictPort"
    );
    assert_eq!(plan.port, 4000);
    assert_eq!(plan.health_path, "/api/health");
    assert_eq!(plan.env.get("VITE_FLAG").map(String::as_str), Some("1"));
    assert!(matches!(plan.source, PlanSource::File(_)));

    let dir = repo(&[
        (SETTINGS_FILE, "[app]\ninstall = \"\"\n"),
        ("package.json", &dev_script("node s.js")),
    ]);
    assert_eq!(
        plan_of(dir.path(), 4000).install,
        None,
        "empty install: none"
    );

    let dir = repo(&[(SETTINGS_FILE, "[app]\ninstall = \"make deps\"\n")]);
    let error = devserver::plan(dir.path(), 4000, 8080).expect_err("nothing to run");
    assert!(
        matches!(&error, SettingsError::Invalid { key, .. } if key == "app.dev"),
        "{error:?}"
    );
}

#[test]
fn a_file_naming_dev_skips_detection() {
    let dir = repo(&[
        (
            SETTINGS_FILE,
            "[app]\ninstall = \"make deps\"\ndev = \"make serve\"\n",
        ),
        ("package.json", "{ not json"),
    ]);
    let plan = plan_of(dir.path(), 4000);
    assert_eq!(plan.install.as_deref(), Some("make deps"));
    assert_eq!(plan.dev, "make serve");
    assert_eq!(plan.health_path, "/");
    assert_eq!(plan.ready_timeout, devserver::DEFAULT_READY_TIMEOUT);
}
