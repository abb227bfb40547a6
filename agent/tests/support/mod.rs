//! The agent's test stand: the real `cca-agent` binary, the real Claude Code CLI against a
//! scripted Messages API, a real git remote served over HTTP by the fake GitHub (which checks
//! installation tokens), and a real SQLite store. `git` and the CLI are reached through small
//! wrappers that record their arguments, so tests can read how they were called.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cca_domain::session::{ImageChannel, SessionType, Source};
use cca_domain::{BranchName, RepoName, Session, SessionId, Status};
use cca_github::{AppCredentials, GitHub, GitHubAuth};
use cca_store::{SessionStore, SqliteStore};
use cca_testkit::github::{APP_ID, Comment, FakeGitHub, app_private_key_pem};
use cca_testkit::model::{FakeModel, claude_cli, claude_env};
use secrecy::SecretString;
use serde_json::Value;
use tokio::process::{Child, Command};

pub const REPO: &str = "octo/hello";
pub const INSTALLATION: u64 = 7;
pub const CONTROL_KEY: &str = "agent-test-control-key-0123456789abcdef";
pub const DOMAIN: &str = "uat.example.test";

/// Bound on every test of a real agent, its set-up included, so a hang fails instead of
/// stalling CI (each wait inside has its own, shorter bound that says what it waited for).
pub const TEST_TIMEOUT: Duration = Duration::from_secs(480);

/// Runs one test: the stand `stand` builds, then `body` on it, all under [`TEST_TIMEOUT`].
/// Without a stand (a part of the test stand missing) the test returns after saying so, or
/// fails when the whole stand is required.
pub async fn scenario<S, F, Fut>(stand: S, body: F)
where
    S: std::future::Future<Output = Option<Stand>>,
    F: FnOnce(Stand) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    tokio::time::timeout(TEST_TIMEOUT, async move {
        if let Some(stand) = stand.await {
            body(stand).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the test did not finish within {TEST_TIMEOUT:?}"));
}

/// A small app the preview tests serve: `npm run dev` starts it on `$PORT`; it answers with the
/// content of `version.txt`, read at start.
pub const PREVIEW_APP: [(&str, &str); 3] = [
    (
        "package.json",
        r#"{ "name": "preview-app", "version": "1.0.0", "private": true, "scripts": { "dev": "node server.js" } }"#,
    ),
    (
        "server.js",
        "const http = require('http');\nconst fs = require('fs');\nconst version = fs.readFileSync(__dirname + '/version.txt', 'utf8').trim();\nhttp.createServer((req, res) => res.end('preview ' + version + '\\n')).listen(Number(process.env.PORT), '0.0.0.0');\n",
    ),
    ("version.txt", "1\n"),
];

/// One agent at a time: each runs a real CLI and git, and timing assertions (the stop
/// deadline) must not depend on how many others share the two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Stand {
    pub github: FakeGitHub,
    pub model: FakeModel,
    pub dir: tempfile::TempDir,
    pub store: Arc<SqliteStore>,
    pub db: PathBuf,
    pub session: Session,
    pub key_file: PathBuf,
    pub argv_log: PathBuf,
    pub log: PathBuf,
    pub home: PathBuf,
    pub workspace: PathBuf,
    pub bin_dir: PathBuf,
    pub env: Vec<(String, String)>,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// The production client as the App, pointed at the fake.
pub fn app_client(github: &FakeGitHub) -> GitHub {
    let key = SecretString::from(app_private_key_pem().to_owned());
    GitHub::new(
        github.url(),
        GitHubAuth::App {
            app: AppCredentials::new(APP_ID, &key).unwrap(),
            default_installation: Some(INSTALLATION),
        },
    )
    .unwrap()
}

fn which(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

/// A script that records how `name` was called, then runs `real`. Inside the sandbox, where
/// `CCA_TEST_ARGV_LOG` is not passed, the record goes to `$HOME/argv.log` (the sandbox's home).
fn write_wrapper(path: &Path, name: &str, real: &Path) {
    let script = format!(
        "#!/bin/sh\n# Records how {name} was called, then runs it.\nprintf '%s\\n' \"{name} $*\" >> \"${{CCA_TEST_ARGV_LOG:-$HOME/argv.log}}\"\nexec '{}' \"$@\"\n",
        real.display()
    );
    std::fs::write(path, script).unwrap();
    set_mode(path, 0o755);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The CLI executable where any user may run it: the sandbox user cannot reach the install
/// under root's home. Linked (or copied) once per machine into a directory of its own.
fn stage_cli(cli: &Path) -> PathBuf {
    let meta = std::fs::metadata(cli).unwrap();
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let dir = std::env::temp_dir().join("cca-test-cli");
    std::fs::create_dir_all(&dir).unwrap();
    set_mode(&dir, 0o755);
    let staged = dir.join(format!("claude-{}-{modified}", meta.len()));
    if !staged.exists() {
        let partial = dir.join(format!("partial-{}", std::process::id()));
        let _ = std::fs::remove_file(&partial);
        if std::fs::hard_link(cli, &partial).is_err() {
            std::fs::copy(cli, &partial).unwrap();
        }
        set_mode(&partial, 0o755);
        std::fs::rename(&partial, &staged).unwrap();
    }
    staged
}

impl Stand {
    /// A repository with its first commit, the session's branch and draft PR made the way the
    /// webhook makes them, and a session record; `None` (with a message) when the CLI is not
    /// installed.
    pub async fn new(kind: SessionType, branch: &str) -> Option<Stand> {
        Self::new_with(kind, branch, |_| {}).await
    }

    /// As [`Stand::new`], with the record changed by `edit` before it is stored.
    pub async fn new_with(
        kind: SessionType,
        branch: &str,
        edit: impl FnOnce(&mut Session),
    ) -> Option<Stand> {
        Self::new_on(kind, branch, |_| {}, edit).await
    }

    /// As [`Stand::new_with`], with the fake GitHub set up by `prepare` before the branch and
    /// PR are made.
    pub async fn new_on(
        kind: SessionType,
        branch: &str,
        prepare: impl FnOnce(&FakeGitHub),
        edit: impl FnOnce(&mut Session),
    ) -> Option<Stand> {
        let Some(cli) = claude_cli() else {
            cca_testkit::stand::skip(
                "CCA_CLAUDE_CLI is not set (scripts/test.sh installs the CLI)",
            );
            return None;
        };
        let turn = ONE_AT_A_TIME.lock().await;
        let github = FakeGitHub::start().await;
        github.add_repo(REPO);
        github.host_git(REPO);
        github.add_installation(INSTALLATION);
        prepare(&github);
        let model = FakeModel::start().await;

        // As an operator lays it out: the agent's own files private (0700/0600), the tools any
        // user may run, the workspace for the agent to arrange.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        set_mode(&root, 0o711);
        let private = root.join("private");
        std::fs::create_dir_all(&private).unwrap();
        set_mode(&private, 0o700);
        let key_file = private.join("app.pem");
        std::fs::write(&key_file, app_private_key_pem()).unwrap();
        set_mode(&key_file, 0o600);
        let bin_dir = root.join("bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        set_mode(&bin_dir, 0o755);
        write_wrapper(&bin_dir.join("git"), "git", &which("git"));
        let staged_cli = stage_cli(&cli);
        write_wrapper(&bin_dir.join("claude"), "claude", &staged_cli);
        let home = private.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let db = private.join("sessions.db");
        let store = Arc::new(SqliteStore::open(&db).unwrap());

        let repo = RepoName::parse(REPO).unwrap();
        let branch = BranchName::parse(branch).unwrap();
        let client = app_client(&github)
            .client(Some(INSTALLATION))
            .await
            .unwrap();
        let (issue, pr) = match kind {
            SessionType::Agent => {
                let issue = github.add_issue(
                    REPO,
                    "Create hello.txt",
                    "Please add a file hello.txt saying hello.",
                );
                client
                    .ensure_branch(&repo, "main", &branch, "Start Claude session")
                    .await
                    .unwrap();
                let pr = client
                    .ensure_draft_pr(&repo, &branch, "main", "[Claude] Create hello.txt", "body")
                    .await
                    .unwrap();
                (Some(issue), pr.number)
            }
            SessionType::Preview => {
                for (path, content) in PREVIEW_APP {
                    github.commit_file(
                        REPO,
                        branch.as_str(),
                        path,
                        content,
                        &format!("Add {path}"),
                    );
                }
                let pr = client
                    .ensure_draft_pr(&repo, &branch, "main", "A feature", "body")
                    .await
                    .unwrap();
                (None, pr.number)
            }
        };
        let id = match kind {
            SessionType::Agent => SessionId::random_agent(),
            SessionType::Preview => SessionId::preview(&branch),
        };
        let mut session = Session::new(
            id.clone(),
            kind,
            Source::Github,
            repo,
            branch,
            ImageChannel::Latest,
            now(),
        );
        session.issue_number = issue;
        session.pr_number = Some(pr);
        session.installation_id = Some(INSTALLATION);
        session.uat_url = Some(format!("https://{id}.{DOMAIN}"));
        edit(&mut session);
        store.create(&session).await.unwrap();

        let argv_log = private.join("argv.log");
        let log = private.join("agent.log");
        let workspace = root.join("workspace");
        let mut env = claude_env(model.url(), &home);
        env.extend(
            [
                ("SESSION_ID", id.to_string()),
                ("SESSION_STORE", format!("sqlite:{}", db.display())),
                ("GITHUB_API_URL", github.url().to_owned()),
                ("GITHUB_APP_ID", APP_ID.to_string()),
                (
                    "GITHUB_APP_PRIVATE_KEY_FILE",
                    key_file.display().to_string(),
                ),
                ("CCA_CONTROL_SECRET", CONTROL_KEY.to_owned()),
                ("AGENT_ADDRESS", "127.0.0.1".to_owned()),
                ("APP_PORT", "0".to_owned()),
                ("CONTROL_PORT", "0".to_owned()),
                ("AGENT_WORKSPACE", workspace.display().to_string()),
                ("CLAUDE_BIN", bin_dir.join("claude").display().to_string()),
                ("STATUS_INTERVAL_SECS", "1".to_owned()),
                ("HEARTBEAT_SECS", "1".to_owned()),
                ("CCA_TEST_ARGV_LOG", argv_log.display().to_string()),
                // The staged CLI lives under /tmp, which the sandbox hides.
                (
                    "AGENT_SANDBOX_PATHS",
                    staged_cli.parent().unwrap().display().to_string(),
                ),
                ("RUST_LOG", "info,cca_agent=debug".to_owned()),
                (
                    "PATH",
                    format!(
                        "{}:{}",
                        bin_dir.display(),
                        std::env::var("PATH").unwrap_or_default()
                    ),
                ),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        Some(Stand {
            github,
            model,
            dir,
            store,
            db,
            session,
            key_file,
            argv_log,
            log,
            home,
            workspace,
            bin_dir,
            env,
            _turn: turn,
        })
    }

    /// Sets (or replaces) a variable of the agent's environment.
    pub fn set(&mut self, name: &str, value: &str) {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_owned(), value.to_owned()));
    }

    /// Removes a variable from the agent's environment.
    pub fn unset(&mut self, name: &str) {
        self.env.retain(|(k, _)| k != name);
    }

    /// Starts `cca-agent <mode>` with its output in [`Stand::log`].
    pub fn spawn(&self, mode: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_cca-agent"))
            .arg(mode)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    pub async fn record(&self) -> Session {
        self.store
            .get(&self.session.session_id)
            .await
            .unwrap()
            .unwrap()
    }

    /// Waits until the record satisfies `pred`; panics with the record and the log otherwise.
    pub async fn wait_record(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Session) -> bool,
    ) -> Session {
        let start = Instant::now();
        loop {
            let s = self.record().await;
            if pred(&s) {
                return s;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out waiting for {what}: {s:#?}\n--- agent log ---\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_status(&self, status: Status, timeout: Duration) -> Session {
        self.wait_record(&format!("status {status}"), timeout, |s| s.status == status)
            .await
    }

    /// Waits until the PR has a comment containing `text`.
    pub async fn wait_comment(&self, text: &str, timeout: Duration) -> Comment {
        let start = Instant::now();
        loop {
            if let Some(c) = self.comments().into_iter().find(|c| c.body.contains(text)) {
                return c;
            }
            if start.elapsed() > timeout {
                panic!(
                    "no comment containing {text:?} after {timeout:?}; comments: {:#?}\n--- agent log ---\n{}",
                    self.comments().iter().map(|c| &c.body).collect::<Vec<_>>(),
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn comments(&self) -> Vec<Comment> {
        self.github.comments(REPO, self.session.pr_number.unwrap())
    }

    /// The comments that are the agent's status comment.
    pub fn status_comments(&self) -> Vec<Comment> {
        self.comments()
            .into_iter()
            .filter(|c| c.body.contains("### 🤖 Claude agent"))
            .collect()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How git (run by the agent) and the CLI (run in the sandbox) were called.
    pub fn argv_text(&self) -> String {
        let mut text = std::fs::read_to_string(&self.argv_log).unwrap_or_default();
        text.push_str(
            &std::fs::read_to_string(self.sandbox_home().join("argv.log")).unwrap_or_default(),
        );
        text
    }

    /// The home of the session's sandboxed processes.
    pub fn sandbox_home(&self) -> PathBuf {
        self.workspace
            .join(self.session.session_id.as_str())
            .join("@home")
    }

    /// The working copy the agent cloned.
    pub fn clone_dir(&self) -> PathBuf {
        self.workspace
            .join(self.session.session_id.as_str())
            .join("hello")
    }

    /// The session's control token.
    pub fn token(&self) -> String {
        cca_domain::control::control_token(CONTROL_KEY.as_bytes(), &self.session.session_id)
    }

    /// Calls the control API of the running agent.
    pub async fn control(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let s = self.record().await;
        let url = format!(
            "http://{}:{}{path}",
            s.container_ip.unwrap(),
            s.control_port.unwrap()
        );
        let mut req = reqwest::Client::new().request(method.parse().unwrap(), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.json(&body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `POST path` to the agent's control API with the session's token, as the webhook calls it.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.control("POST", path, Some(&self.token()), body).await
    }

    /// Stops the agent through its control API and waits for it to exit.
    pub async fn stop(&self, child: &mut Child) {
        let (code, _) = self
            .control(
                "POST",
                "/stop",
                Some(&self.token()),
                serde_json::json!({"reason": "test over"}),
            )
            .await;
        assert_eq!(code, 202);
        self.wait_exit(child, Duration::from_secs(25)).await;
    }

    /// Waits for the agent to exit; its status.
    pub async fn wait_exit(
        &self,
        child: &mut Child,
        timeout: Duration,
    ) -> std::process::ExitStatus {
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(s) => s.unwrap(),
            Err(_) => panic!(
                "the agent did not exit within {timeout:?}\n--- agent log ---\n{}",
                self.log_text()
            ),
        }
    }
}

pub use cca_domain::now;

/// Every file under `dir` (hidden ones and `.git` included), with its bytes.
pub fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                pending.push(p);
            } else if meta.is_file() {
                if let Ok(bytes) = std::fs::read(&p) {
                    out.push((p, bytes));
                }
            }
        }
    }
    out
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
