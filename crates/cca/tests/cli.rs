//! The `cca` binary as an operator runs it: its help, its refusals, and `cca up` end to end,
//! with GitHub faked at the HTTP level and a shell script standing in for `cca-agent`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::time::Duration;

use cca_domain::session::SessionPatch;
use cca_domain::{ImageChannel, RepoName, Session, SessionId, SessionType, Source, Status};
use cca_store::{SessionStore, SqliteStore};
use cca_testkit::fixtures::github_example;
use cca_testkit::github::FakeGitHub;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Bound on each test, so a hung child fails the run instead of stalling CI.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How long `cca up` may take to stop after SIGINT: the agent stand-in exits on SIGTERM at once.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

const SECRET: &str = "webhook-secret-for-tests";
const TOKEN: &str = "personal-token-for-tests";
const REPO: &str = "octo/app";

/// Runs `body` under the global time-out.
async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test timed out");
}

/// `cca` with an environment holding nothing but `PATH` and a private home, so settings of the
/// machine running the tests cannot leak in.
fn cca(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cca"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("xdg"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn output(cmd: &mut Command) -> Output {
    cmd.output().await.expect("run cca")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn every_command_has_help() {
    bounded(async {
        let home = tempfile::tempdir().unwrap();
        let commands: [&[&str]; 9] = [
            &[],
            &["up"],
            &["sessions"],
            &["sessions", "list"],
            &["sessions", "show"],
            &["sessions", "stop"],
            &["replay"],
            &["sweep"],
            &["doctor"],
        ];
        for args in commands {
            let out = output(cca(home.path()).args(args).arg("--help")).await;
            assert!(out.status.success(), "cca {args:?} --help: {out:?}");
            assert!(text(&out.stdout).contains("Usage: cca"), "{out:?}");
        }
    })
    .await;
}

/// With `--no-setup`, no credentials is a usage error (without it, `cca up` serves its setup
/// page: tests/up.rs).
#[tokio::test]
async fn up_without_github_credentials_says_what_to_set() {
    bounded(async {
        let home = tempfile::tempdir().unwrap();
        let out = output(cca(home.path()).args(["up", "--no-setup"])).await;
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = text(&out.stderr);
        for var in [
            "GITHUB_TOKEN",
            "GITHUB_WEBHOOK_SECRET",
            "GITHUB_APP_ID",
            "GITHUB_APP_PRIVATE_KEY_FILE",
        ] {
            assert!(err.contains(var), "{var} not named in {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !home.path().join("xdg").exists(),
            "a refused start created the data directory"
        );
    })
    .await;
}

#[tokio::test]
async fn showing_an_unknown_session_names_it() {
    bounded(async {
        let home = tempfile::tempdir().unwrap();
        let db = home.path().join("sessions.db");
        let store = format!("sqlite:{}", db.display());
        // Before the store exists, and once it does.
        for _ in 0..2 {
            let out = output(
                cca(home.path())
                    .args(["sessions", "show", "nosuchsession"])
                    .env("SESSION_STORE", &store),
            )
            .await;
            assert_eq!(out.status.code(), Some(1), "{out:?}");
            assert!(
                text(&out.stderr).contains("no session nosuchsession"),
                "{out:?}"
            );
            SqliteStore::open(&db).unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn stopping_a_session_that_never_started_an_agent_ends_it() {
    bounded(async {
        let home = tempfile::tempdir().unwrap();
        let db = home.path().join("sessions.db");
        let store = SqliteStore::open(&db).unwrap();
        let id = SessionId::random_agent();
        let mut session = Session::new(
            id.clone(),
            SessionType::Agent,
            Source::Github,
            RepoName::parse(REPO).unwrap(),
            cca_domain::naming::issue_branch(3),
            ImageChannel::Latest,
            1_700_000_000,
        );
        session.issue_number = Some(3);
        store.create(&session).await.unwrap();
        store
            .transition(
                &id,
                Status::Starting,
                SessionPatch::default(),
                1_700_000_001,
            )
            .await
            .unwrap();

        let out = output(
            cca(home.path())
                .args(["sessions", "stop", id.as_str()])
                .env("SESSION_STORE", format!("sqlite:{}", db.display())),
        )
        .await;
        assert!(out.status.success(), "{out:?}");
        assert!(text(&out.stdout).contains("STOPPED"), "{out:?}");
        let now = store.get(&id).await.unwrap().unwrap();
        assert_eq!(now.status, Status::Stopped);
    })
    .await;
}

/// The stand-in for `cca-agent`: records its pid, arguments and environment, then waits to be
/// stopped, and exits at once on SIGTERM (taking its `sleep` with it).
const AGENT_SCRIPT: &str = r#"#!/bin/sh
trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
{ echo "pid=$$"; echo "args=$*"; env; } > "$AGENT_RECORD.tmp"
mv "$AGENT_RECORD.tmp" "$AGENT_RECORD"
sleep 300 &
sleeper=$!
wait "$sleeper"
"#;

fn write_agent(dir: &Path) -> PathBuf {
    let path = dir.join("fake-agent.sh");
    std::fs::write(&path, AGENT_SCRIPT).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A real `issues.labeled` delivery: `claude-dev` added to issue `number` of [`REPO`] by `sender`,
/// as a repository webhook sends it (no App installation).
fn issue_labeled(number: u64, sender: &str) -> Value {
    let mut p = github_example("issues", Some("labeled"));
    p["repository"]["full_name"] = json!(REPO);
    p["repository"]["name"] = json!("app");
    p["repository"]["owner"]["login"] = json!("octo");
    p["issue"]["number"] = json!(number);
    p["issue"]["title"] = json!("Greet the user");
    p["issue"]["body"] = json!("Print a greeting on start.");
    if let Some(issue) = p["issue"].as_object_mut() {
        issue.remove("pull_request");
    }
    p["label"] = json!({ "name": "claude-dev", "id": 1, "color": "ededed" });
    p["sender"]["login"] = json!(sender);
    p["sender"]["type"] = json!("User");
    if let Some(root) = p.as_object_mut() {
        root.remove("installation");
    }
    p
}

/// A running `cca up` and the address it serves on.
struct Up {
    child: Child,
    addr: String,
    stdout: tokio::task::JoinHandle<Vec<String>>,
}

async fn start_up(home: &Path, data: &Path, github: &FakeGitHub, agent: &Path) -> Up {
    let log = std::fs::File::create(home.join("up.stderr")).unwrap();
    let mut child = cca(home)
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--proxy-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data)
        .env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("GITHUB_API_URL", github.url())
        .env("CCA_AGENT_BIN", agent)
        .env("AGENT_RECORD", home.join("agent-record"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start cca up");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines
        .next_line()
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("cca up printed nothing; stderr: {}", stderr_of(home)));
    let addr = first
        .strip_prefix("cca up: serving on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    let stdout = tokio::spawn(async move {
        let mut rest = vec![first];
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push(line);
        }
        rest
    });
    Up {
        child,
        addr,
        stdout,
    }
}

fn stderr_of(home: &Path) -> String {
    std::fs::read_to_string(home.join("up.stderr")).unwrap_or_default()
}

async fn wait_for<T, F: AsyncFnMut() -> Option<T>>(what: &str, mut probe: F) -> T {
    for _ in 0..200 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gave up waiting for {what}");
}

fn signal(pid: u32, sig: Signal) -> nix::Result<()> {
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), sig)
}

fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), None).is_ok()
}

/// `cca up` serving, after one labelled issue started one agent.
struct Running {
    home: tempfile::TempDir,
    data: PathBuf,
    up: Up,
    base: String,
    github: FakeGitHub,
    session_id: String,
    agent_pid: u32,
}

impl Running {
    fn home(&self) -> &Path {
        self.home.path()
    }
}

/// Starts `cca up`, has `alice` (an admin) label an issue through `cca replay`, and waits for the
/// agent it starts.
async fn up_with_one_session() -> Running {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    let data = dir.join("data");
    let github = FakeGitHub::start().await;
    github.add_personal_token(TOKEN);
    github.add_repo(REPO);
    github.set_permission(REPO, "alice", "admin");
    let issue = github.add_issue(REPO, "Greet the user", "Print a greeting on start.");
    let agent = write_agent(dir);

    let up = start_up(dir, &data, &github, &agent).await;
    let base = format!("http://{}", up.addr);
    let http = reqwest::Client::new();
    wait_for("/health", async || {
        let r = http.get(format!("{base}/health")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;

    // A developer labels the issue; the delivery is replayed as GitHub would send it.
    let payload = dir.join("labeled.json");
    std::fs::write(
        &payload,
        serde_json::to_vec(&issue_labeled(issue, "alice")).unwrap(),
    )
    .unwrap();
    let out = output(
        cca(dir)
            .arg("replay")
            .arg(&payload)
            .args(["--event", "issues", "--url", &format!("{base}/webhook")])
            .args(["--secret", SECRET]),
    )
    .await;
    assert!(
        out.status.success(),
        "replay: {out:?}\ncca up stderr:\n{}",
        stderr_of(dir)
    );

    // One session, in the store `cca up` made.
    let out = output(
        cca(dir)
            .args(["sessions", "list", "--json", "--data-dir"])
            .arg(&data),
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let sessions: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["repo_full_name"], REPO);
    assert_eq!(sessions[0]["issue_number"], issue);
    let session_id = sessions[0]["session_id"].as_str().unwrap().to_owned();
    assert_eq!(github.pulls(REPO).len(), 1, "one draft PR");

    // Its agent was started as `cca-agent run`, for this session, on this store.
    let record = dir.join("agent-record");
    let record = wait_for("the agent's record", async || {
        std::fs::read_to_string(&record).ok()
    })
    .await;
    let lines: Vec<&str> = record.lines().collect();
    assert!(lines.contains(&"args=run"), "{record}");
    assert!(
        lines.contains(&format!("SESSION_ID={session_id}").as_str()),
        "{record}"
    );
    let store = format!(
        "SESSION_STORE=sqlite:{}",
        data.join("sessions.db").display()
    );
    assert!(lines.contains(&store.as_str()), "{record}");
    let agent_pid: u32 = lines
        .iter()
        .find_map(|l| l.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {record}"));
    assert!(alive(agent_pid));

    Running {
        home,
        data,
        up,
        base,
        github,
        session_id,
        agent_pid,
    }
}

/// Sends SIGINT to `cca up` and expects a clean exit within [`STOP_TIMEOUT`].
async fn interrupt(r: &mut Running) {
    signal(r.up.child.id().unwrap(), Signal::SIGINT).unwrap();
    let status: ExitStatus = tokio::time::timeout(STOP_TIMEOUT, r.up.child.wait())
        .await
        .unwrap_or_else(|_| panic!("cca up still running; stderr:\n{}", stderr_of(r.home())))
        .unwrap();
    assert!(
        status.success(),
        "{status:?}; stderr:\n{}",
        stderr_of(r.home())
    );
}

#[tokio::test]
async fn up_handles_a_replayed_label_and_stops_its_agent_on_ctrl_c() {
    bounded(async {
        let mut r = up_with_one_session().await;

        // Ctrl-C: the webhook stops, then the agent, then `cca up` exits cleanly.
        interrupt(&mut r).await;
        assert!(
            !alive(r.agent_pid),
            "agent process {} outlived cca up",
            r.agent_pid
        );

        let printed = (&mut r.up.stdout).await.unwrap().join("\n");
        assert!(
            printed.contains(&format!("{}/webhook", r.base)),
            "{printed}"
        );
        assert!(printed.contains("/health"), "{printed}");
        assert!(printed.contains("http://<session>.localhost:"), "{printed}");
        assert_eq!(r.github.pulls(REPO).len(), 1);

        // The stand-in exits on SIGTERM without recording anything: `cca up` ends the session
        // itself, so the store shows nothing running that nothing runs.
        let out = output(
            cca(r.home())
                .args(["sessions", "show", &r.session_id, "--json", "--data-dir"])
                .arg(&r.data),
        )
        .await;
        assert!(out.status.success(), "{out:?}");
        let session: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(session["status"], "FAILED", "{session}");
        assert!(
            session["error"]
                .as_str()
                .is_some_and(|e| e.contains("without recording")),
            "{session}"
        );
    })
    .await;
}

#[tokio::test]
async fn stopping_a_session_signals_its_local_agent() {
    bounded(async {
        let mut r = up_with_one_session().await;
        let out = output(
            cca(r.home())
                .args(["sessions", "stop", &r.session_id, "--data-dir"])
                .arg(&r.data),
        )
        .await;
        assert!(out.status.success(), "{out:?}");
        assert!(text(&out.stdout).contains("SIGTERM"), "{out:?}");
        let pid = r.agent_pid;
        wait_for("the agent to exit", async || (!alive(pid)).then_some(())).await;

        let out = output(
            cca(r.home())
                .args(["sessions", "show", &r.session_id, "--data-dir"])
                .arg(&r.data),
        )
        .await;
        assert!(out.status.success(), "{out:?}");
        let shown = text(&out.stdout);
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with("status") && l.ends_with("STOPPING")),
            "{shown}"
        );
        interrupt(&mut r).await;
    })
    .await;
}
