//! `cca up` end to end, as a user runs it: the real `cca` binary with the real `cca-agent`
//! binary as its agents, GitHub faked at the HTTP level (with real git hosting), deliveries sent
//! with `cca replay`, sessions read with `cca sessions`, and the setup page driven over HTTP and
//! in headless Chromium.
//!
//! The agent binary belongs to another package, so cargo does not build it for `cargo test -p
//! cca`: [`agent_binary`] takes `cca-agent` from beside the `cca` binary under test (the same
//! target directory and profile) and builds it there with `cargo build -p cca-agent` when it is
//! missing or older than a source file it was built from (cargo holds no lock while tests run).
//! `CCA_AGENT_BIN` overrides the choice.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use cca_testkit::github::{
    APP_ID, APP_SLUG, FakeGitHub, MANIFEST_WEBHOOK_SECRET, app_private_key_pem,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Bound on each test, so a hung child fails the run instead of stalling CI.
const TEST_TIMEOUT: Duration = Duration::from_secs(240);

/// How long `cca up` may take to stop after SIGINT: the agents' stop deadline (25 s) with room.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

const SECRET: &str = "up-test-webhook-secret";
const REPO: &str = "octo/app";
const INSTALLATION: u64 = 77;

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
        .env("NO_COLOR", "1")
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

/// The `cca-agent` binary to run: `CCA_AGENT_BIN`, else the one beside `cca`, built or rebuilt
/// first when it is missing or stale.
fn agent_binary() -> PathBuf {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT
        .get_or_init(|| {
            if let Some(bin) = std::env::var_os("CCA_AGENT_BIN").filter(|v| !v.is_empty()) {
                return PathBuf::from(bin);
            }
            let cca = Path::new(env!("CARGO_BIN_EXE_cca"));
            let agent = cca.with_file_name("cca-agent");
            if !is_fresh(&agent) {
                build_agent(cca);
            }
            assert!(agent.is_file(), "{} was not built", agent.display());
            agent
        })
        .clone()
}

/// Whether `bin` exists and is newer than every source file its dep-info (`<bin>.d`, written by
/// cargo beside it) names.
fn is_fresh(bin: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(bin) else {
        return false;
    };
    let Ok(deps) = std::fs::read_to_string(bin.with_extension("d")) else {
        return true;
    };
    // `target: src1 src2 …`, spaces in paths escaped with a backslash.
    let sources = deps.split_once(": ").map_or("", |(_, s)| s);
    let paths = sources.replace("\\ ", "\u{1}");
    paths
        .split_whitespace()
        .map(|p| PathBuf::from(p.replace('\u{1}', " ")))
        .all(|src| modified(&src).is_none_or(|m: SystemTime| m <= built))
}

/// `cargo build -p cca-agent` into the target directory and profile of the `cca` binary.
fn build_agent(cca: &Path) {
    let profile_dir = cca.parent().expect("cca has a directory");
    let target_dir = profile_dir
        .parent()
        .expect("the profile has a target directory");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args([
        "build",
        "-p",
        "cca-agent",
        "--bin",
        "cca-agent",
        "--target-dir",
    ])
    .arg(target_dir)
    .current_dir(env!("CARGO_MANIFEST_DIR"))
    .stdin(Stdio::null());
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!("building cca-agent for the cca up tests: {cmd:?}");
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "cargo build -p cca-agent failed:\n{}",
        text(&out.stderr)
    );
}

/// Processes whose environment holds `needle` (`NAME=value`), with their command lines.
fn processes_with(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = text(&cmdline).replace('\0', " ").trim().to_owned();
            found.push((pid, cmdline));
        }
    }
    found
}

/// Live processes below `root` in the process tree (the agent's children: its CLI, in its
/// sandbox, carries none of the agent's variables), with their command lines.
fn descendants(root: u32) -> Vec<(u32, String)> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // `pid (comm) state ppid …`: the command may hold spaces and parentheses.
        let Some(after) = stat.rsplit_once(") ").map(|(_, rest)| rest) else {
            continue;
        };
        let mut fields = after.split_whitespace();
        let state = fields.next().unwrap_or("");
        let ppid = fields
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0);
        if state != "Z" {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (child, _) in parent_of.iter().filter(|(_, ppid)| *ppid == p) {
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            found.push((*child, text(&cmdline).replace('\0', " ").trim().to_owned()));
            frontier.push(*child);
        }
    }
    found
}

/// Kills whatever still carries the test's data directory when the test ends, so a failure
/// leaves no agent behind on the machine running the tests.
struct Reaper(String);

impl Drop for Reaper {
    fn drop(&mut self) {
        for (pid, _) in processes_with(&self.0) {
            let _ = kill(
                Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
                Signal::SIGKILL,
            );
        }
    }
}

async fn wait_for<T, F: AsyncFnMut() -> Option<T>>(what: &str, mut probe: F) -> T {
    for _ in 0..600 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gave up waiting for {what}");
}

/// A running `cca up`: its stdout, line by line, and where its stderr goes.
struct Up {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    printed: Vec<String>,
    stderr: PathBuf,
}

impl Up {
    fn spawn(mut cmd: Command, stderr: PathBuf) -> Up {
        let log = std::fs::File::create(&stderr).unwrap();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start cca up");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Up {
            child,
            lines,
            printed: Vec::new(),
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Reads stdout until a line starts with `prefix`; answers the rest of that line.
    async fn line_after(&mut self, prefix: &str) -> String {
        loop {
            match self.lines.next_line().await.unwrap() {
                Some(line) => {
                    self.printed.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                None => panic!(
                    "cca up ended its output before {prefix:?}; printed:\n{}\nstderr:\n{}",
                    self.printed.join("\n"),
                    self.stderr()
                ),
            }
        }
    }

    /// SIGINT, then a clean exit within [`STOP_TIMEOUT`]; answers the rest of stdout.
    async fn interrupt(&mut self) -> String {
        let pid = i32::try_from(self.child.id().expect("cca up runs")).unwrap();
        kill(Pid::from_raw(pid), Signal::SIGINT).unwrap();
        let status = tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("cca up still running; stderr:\n{}", self.stderr()))
            .unwrap();
        assert!(status.success(), "{status:?}; stderr:\n{}", self.stderr());
        while let Ok(Some(line)) = self.lines.next_line().await {
            self.printed.push(line);
        }
        self.printed.join("\n")
    }
}

/// `claude-dev` added to issue `number` of [`REPO`] by `alice`, as a GitHub App receives it:
/// the fields the webhook reads, in GitHub's shape.
fn issue_labeled(number: u64) -> Value {
    let user = |login: &str| json!({ "login": login, "id": 1, "type": "User" });
    json!({
        "action": "labeled",
        "issue": {
            "number": number,
            "title": "Greet the user",
            "body": "Print a greeting on start.",
            "state": "open",
            "user": user("alice"),
            "labels": [{ "name": "claude-dev" }],
        },
        "label": { "id": 1, "name": "claude-dev", "color": "ededed" },
        "repository": {
            "id": 1,
            "name": "app",
            "full_name": REPO,
            "private": true,
            "owner": user("octo"),
            "default_branch": "main",
        },
        "sender": user("alice"),
        "installation": { "id": INSTALLATION },
    })
}

/// The session record `cca sessions show --json` prints.
async fn show(home: &Path, data: &Path, id: &str) -> Value {
    let out = output(
        cca(home)
            .args(["sessions", "show", id, "--json", "--data-dir"])
            .arg(data),
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn up_runs_a_real_agent_for_a_replayed_label_and_ctrl_c_leaves_nothing_running() {
    bounded(async {
        let agent = agent_binary();
        let home = tempfile::tempdir().unwrap();
        let dir = home.path();
        // The agents' sandbox user reaches its working copy under the data directory by name,
        // as it would under a home directory of mode 0711 or more.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
        let data = dir.join("data");
        let _reaper = Reaper(format!("CCA_DATA_DIR={}", data.display()));
        let github = FakeGitHub::start().await;
        github.add_installation(INSTALLATION);
        github.add_repo(REPO);
        github.host_git(REPO);
        github.set_permission(REPO, "alice", "admin");
        let issue = github.add_issue(REPO, "Greet the user", "Print a greeting on start.");
        // Tokens due for renewal two seconds after they are minted: the agent's later work
        // (its reports, the push of its work in progress) needs tokens renewed through the
        // broker.
        github.set_token_lifetime(Duration::from_secs(5 * 60 + 2));
        let key = dir.join("app.pem");
        std::fs::write(&key, app_private_key_pem()).unwrap();

        let mut cmd = cca(dir);
        cmd.args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--proxy-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .env("GITHUB_APP_ID", APP_ID.to_string())
        .env("GITHUB_APP_PRIVATE_KEY_FILE", &key)
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("GITHUB_API_URL", github.url())
        .env("CCA_AGENT_BIN", &agent)
        // The coding CLI is a command that works until it is stopped: the agent is busy
        // when Ctrl-C comes, and must take its child down with it.
        .env("AGENT_CLI", "command")
        .env(
            "AGENT_CLI_COMMAND",
            "echo working; echo started > wip.txt; exec sleep 600",
        )
        .env("RUST_LOG", "info");
        let mut up = Up::spawn(cmd, dir.join("up.stderr"));
        let addr = up.line_after("cca up: serving on http://").await;
        let base = format!("http://{addr}");
        let previews = up.line_after("  previews  ").await;
        let proxy_port: u16 = previews
            .split_once("(proxy on 127.0.0.1:")
            .and_then(|(_, p)| p.trim_end_matches(')').parse().ok())
            .unwrap_or_else(|| panic!("no proxy address in {previews:?}"));
        assert!(
            previews.starts_with(&format!("http://<session>.localhost:{proxy_port}")),
            "{previews}"
        );
        let http = reqwest::Client::new();
        let health = http.get(format!("{base}/health")).send().await.unwrap();
        assert!(health.status().is_success());
        let proxy = format!("http://127.0.0.1:{proxy_port}");
        let proxy_health = http.get(format!("{proxy}/health")).send().await.unwrap();
        assert!(proxy_health.status().is_success());

        // A developer labels the issue; the delivery is signed and sent by `cca replay`.
        let payload = dir.join("labeled.json");
        std::fs::write(&payload, serde_json::to_vec(&issue_labeled(issue)).unwrap()).unwrap();
        let out = output(
            cca(dir)
                .arg("replay")
                .arg(&payload)
                .args(["--event", "issues", "--url", &format!("{base}/webhook")])
                .env("GITHUB_WEBHOOK_SECRET", SECRET),
        )
        .await;
        assert!(
            out.status.success(),
            "replay: {out:?}\ncca up stderr:\n{}",
            up.stderr()
        );

        // The session, in the store `cca up` made, with a preview URL through the local proxy.
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
        let id = sessions[0]["session_id"].as_str().unwrap().to_owned();
        assert_eq!(
            sessions[0]["uat_url"],
            format!("http://{id}.localhost:{proxy_port}")
        );
        assert_eq!(github.pulls(REPO).len(), 1, "one draft PR");

        // The real agent starts: it records its address, clones, and runs the CLI.
        let pid: u32 = show(dir, &data, &id).await["task_arn"]
            .as_str()
            .and_then(|a| a.strip_prefix("process:"))
            .and_then(|p| p.parse().ok())
            .expect("a local process task");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(text(&cmdline).contains("cca-agent"), "{}", text(&cmdline));
        let running = wait_for("the agent to report RUNNING", async || {
            let s = show(dir, &data, &id).await;
            (s["status"] == "RUNNING").then_some(s)
        })
        .await;
        assert_eq!(running["container_ip"], "127.0.0.1");
        // The agent holds no credential of the system's: it cloned with a token the broker of
        // `cca up` minted for its repository alone.
        let environ = text(&std::fs::read(format!("/proc/{pid}/environ")).unwrap());
        for name in [
            "GITHUB_APP_PRIVATE_KEY_FILE=",
            "GITHUB_WEBHOOK_SECRET=",
            "CCA_CONTROL_SECRET=",
        ] {
            assert!(!environ.contains(name), "the agent was given {name}");
        }
        assert!(
            environ.contains(&format!("CCA_TOKEN_URL={base}")),
            "{environ}"
        );
        assert!(environ.contains("CCA_SESSION_TOKEN="));
        let scoped = github
            .issued_tokens()
            .into_iter()
            .filter(|t| t.repositories.as_deref() == Some(&[REPO.to_lowercase()][..]))
            .count();
        assert!(scoped >= 1, "no repository-scoped token was minted");
        let needle = format!("CCA_DATA_DIR={}", data.display());
        let cli = wait_for("the agent's CLI to run", async || {
            descendants(pid)
                .into_iter()
                .find(|(_, cmd)| cmd.starts_with("sleep"))
        })
        .await;
        let log = data.join("logs").join(format!("{id}.log"));
        assert!(log.is_file(), "no agent log at {}", log.display());

        // The proxy knows the session (an unknown one is a 404).
        let known = http
            .get(format!("{proxy}/"))
            .header("host", format!("{id}.localhost:{proxy_port}"))
            .send()
            .await
            .unwrap();
        assert_ne!(known.status(), reqwest::StatusCode::NOT_FOUND);
        // Without --preview-sign-in nobody is sent to sign in: the proxy is on loopback.
        assert!(
            !known.status().is_redirection() && known.status() != 401,
            "{:?}",
            known.status()
        );
        let unknown = http
            .get(format!("{proxy}/"))
            .header("host", format!("nosuchsession.localhost:{proxy_port}"))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), reqwest::StatusCode::NOT_FOUND);

        // Past the first token's renewal margin, so the push on Ctrl-C needs a renewed one.
        tokio::time::sleep(Duration::from_secs(3)).await;

        // Ctrl-C: everything stops, the agent records its end, no process is left.
        let printed = up.interrupt().await;
        for expected in [
            format!("{base}/webhook"),
            format!("{base}/health"),
            format!("{base}/setup"),
            format!("data dir  {}", data.display()),
            format!("sessions  sqlite:{}", data.join("sessions.db").display()),
            format!("logs      {}", data.join("logs").display()),
            format!("agents    {}", agent.display()),
            // As root with bubblewrap and the sandbox user, as the test command sets up.
            "sandbox   bubblewrap as user cca-sandbox".to_owned(),
            "sign-in   off".to_owned(),
        ] {
            assert!(
                printed.contains(&expected),
                "{expected:?} not in:\n{printed}"
            );
        }
        wait_for(
            "every process of the test's data directory to end",
            async || processes_with(&needle).is_empty().then_some(()),
        )
        .await;
        assert!(
            std::fs::read(format!("/proc/{}/cmdline", cli.0)).map_or(true, |c| c.is_empty()),
            "the agent's CLI {cli:?} outlived cca up"
        );
        assert!(
            std::fs::read(format!("/proc/{pid}/cmdline")).map_or(true, |c| c.is_empty()),
            "agent {pid} outlived cca up"
        );
        let end = show(dir, &data, &id).await;
        assert_eq!(end["status"], "STOPPED", "{end}");
        // The work in progress was pushed on Ctrl-C, with a token renewed through the broker.
        assert_eq!(
            github.file_at(REPO, "claude/1", "wip.txt").as_deref(),
            Some("started\n")
        );
        let scoped: Vec<_> = github
            .issued_tokens()
            .into_iter()
            .filter(|t| t.repositories.as_deref() == Some(&[REPO.to_lowercase()][..]))
            .collect();
        assert!(scoped.len() >= 2, "renewed tokens: {}", scoped.len());
        for t in &scoped {
            assert_eq!(t.permissions, cca_github::agent_permissions());
        }
    })
    .await;
}

/// The `value` of the attribute `name` in the first tag of `html` that holds `marker`.
fn attribute(html: &str, marker: &str, name: &str) -> String {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in the page"));
    let start = html[..at].rfind('<').unwrap();
    let end = at + html[at..].find('>').unwrap();
    let tag = &html[start..end];
    let key = format!("{name}=\"");
    let from = tag
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {tag}"))
        + key.len();
    let value = &tag[from..from + tag[from..].find('"').unwrap()];
    unescape(value)
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `cca up` with no credentials, pointed at `github`.
fn up_without_credentials(home: &Path, data: &Path, github: &FakeGitHub) -> Up {
    let mut cmd = cca(home);
    cmd.args([
        "up",
        "--listen",
        "127.0.0.1:0",
        "--proxy-listen",
        "127.0.0.1:0",
    ])
    .arg("--data-dir")
    .arg(data)
    .env("GITHUB_API_URL", github.url())
    .env("CCA_AGENT_BIN", home.join("no-agent-needed"))
    .env("LISTEN_HEADER_TIMEOUT_SECS", "2")
    .env("RUST_LOG", "info");
    Up::spawn(cmd, home.join(format!("up-{}.stderr", rand_suffix())))
}

fn rand_suffix() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
async fn the_setup_page_creates_a_github_app_and_up_carries_on_with_it() {
    bounded(async {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path();
        let data = dir.join("data");
        let github = FakeGitHub::start().await;
        github.add_manifest_code("code-from-github");
        let http = reqwest::Client::new();

        let mut up = up_without_credentials(dir, &data, &github);
        let page_url = up.line_after("cca up: setup page on ").await;
        let base = page_url.strip_suffix("/setup").unwrap().to_owned();
        let err = up.stderr();
        for var in ["GITHUB_TOKEN", "GITHUB_APP_ID", "GITHUB_WEBHOOK_SECRET", &page_url] {
            assert!(err.contains(var), "{var} not in {err}");
        }
        assert!(!data.exists(), "the data directory was made before anything was stored");
        // A client that never finishes its headers is cut at the configured 2 s.
        let host = base.strip_prefix("http://").unwrap();
        let cut = cca_testkit::probe::slow_headers(host, Duration::from_secs(10)).await;
        assert!(
            cut.is_some_and(|t| t >= Duration::from_millis(1500)),
            "slow headers: {cut:?}"
        );

        // The page: a form posting the manifest to GitHub's "new App" page, with a state.
        let page = http.get(&page_url).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(
            page.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let html = page.text().await.unwrap();
        assert!(html.contains("personal access token"), "both options are explained");
        let action = attribute(&html, "id=\"create-app\"", "action");
        let state = action
            .strip_prefix(&format!("{}/settings/apps/new?state=", github.url()))
            .unwrap_or_else(|| panic!("form goes to {action}"))
            .to_owned();
        assert!(state.len() >= 32, "{state}");
        let manifest: Value =
            serde_json::from_str(&attribute(&html, "name=\"manifest\"", "value")).unwrap();
        assert_eq!(
            manifest["default_permissions"],
            json!({
                "contents": "write",
                "pull_requests": "write",
                "issues": "write",
                "deployments": "write",
                "metadata": "read",
                "checks": "read",
                "actions": "read",
            })
        );
        assert_eq!(
            manifest["default_events"],
            json!([
                "issues",
                "issue_comment",
                "pull_request",
                "pull_request_review",
                "pull_request_review_comment",
                "check_suite"
            ])
        );
        assert_eq!(manifest["redirect_url"], format!("{base}/setup/callback"));
        assert_eq!(manifest["hook_attributes"]["url"], format!("{base}/webhook"));
        assert_eq!(manifest["public"], false);
        assert!(
            manifest["name"]
                .as_str()
                .unwrap()
                .starts_with("Claude Cloud Agent (")
        );

        // The choices, given in the address (as the page's "Apply" does without scripts).
        let html = http
            .get(format!(
                "{page_url}?name=Team%20agent&org=acme&webhook_url=https%3A%2F%2Fhooks.example.com%2Fwebhook"
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            attribute(&html, "id=\"create-app\"", "action"),
            format!(
                "{}/organizations/acme/settings/apps/new?state={state}",
                github.url()
            )
        );
        let manifest: Value =
            serde_json::from_str(&attribute(&html, "name=\"manifest\"", "value")).unwrap();
        assert_eq!(manifest["name"], "Team agent");
        assert_eq!(
            manifest["hook_attributes"]["url"],
            "https://hooks.example.com/webhook"
        );

        // A callback with another state is refused before GitHub is asked anything.
        let refused = http
            .get(format!(
                "{base}/setup/callback?code=code-from-github&state=0123456789abcdef0123456789abcdef"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403);
        assert!(
            !github
                .requests()
                .iter()
                .any(|r| r.path.contains("app-manifests")),
            "the code was exchanged despite the wrong state"
        );
        assert!(!data.exists());

        // GitHub sends the browser back with the code and the state: the App is stored.
        let done = http
            .get(format!(
                "{base}/setup/callback?code=code-from-github&state={state}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 200);
        let done = done.text().await.unwrap();
        assert!(
            done.contains(&format!("https://github.com/apps/{APP_SLUG}/installations/new")),
            "{done}"
        );
        // Passable for the agents' sandbox user, listable by its owner only.
        assert_eq!(mode(&data), 0o711);
        assert_eq!(mode(&data.join("logs")), 0o700);
        assert_eq!(mode(&data.join("sessions.db")), 0o600);
        let json_path = data.join("github-app.json");
        let pem_path = data.join("github-app.pem");
        assert_eq!(mode(&json_path), 0o600);
        assert_eq!(mode(&pem_path), 0o600);
        assert_eq!(
            std::fs::read_to_string(&pem_path).unwrap(),
            app_private_key_pem()
        );
        let stored: Value =
            serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
        assert_eq!(stored["app_id"], APP_ID);
        assert_eq!(stored["slug"], APP_SLUG);
        assert_eq!(stored["webhook_secret"], MANIFEST_WEBHOOK_SECRET);
        assert_eq!(stored["client_id"], "Iv1.cca0test0client");
        assert_eq!(stored["client_secret"], "cca-test-client-secret");
        assert_eq!(
            stored["html_url"],
            format!("https://github.com/apps/{APP_SLUG}")
        );

        // `cca up` carries on with the App, on the same address.
        let serving = up.line_after("cca up: serving on ").await;
        assert_eq!(serving, base);
        let health = http.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let status = http.get(&page_url).send().await.unwrap().text().await.unwrap();
        assert!(status.contains("GitHub is configured"), "{status}");
        let again = http
            .get(format!(
                "{base}/setup/callback?code=code-from-github&state={state}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 409);
        up.interrupt().await;

        // The next start finds the stored App by itself, and checks deliveries with its secret.
        let mut up = up_without_credentials(dir, &data, &github);
        let addr = up.line_after("cca up: serving on http://").await;
        let github_line = up.line_after("  github    ").await;
        assert!(
            github_line.contains(&format!("{APP_SLUG} (id {APP_ID})")),
            "{github_line}"
        );
        let ping = dir.join("ping.json");
        std::fs::write(&ping, br#"{"zen":"Keep it logically awesome.","hook_id":1}"#).unwrap();
        for (secret, ok) in [(MANIFEST_WEBHOOK_SECRET, true), ("not-the-secret", false)] {
            let out = output(
                cca(dir)
                    .arg("replay")
                    .arg(&ping)
                    .args(["--event", "ping", "--url", &format!("http://{addr}/webhook")])
                    .args(["--secret", secret]),
            )
            .await;
            assert_eq!(out.status.success(), ok, "{out:?}");
        }
        up.interrupt().await;
    })
    .await;
}

/// The setup page in headless Chromium: it renders, its script keeps the form in step with the
/// fields, and a screenshot is taken (kept at `CCA_SETUP_SCREENSHOT_OUT` when set, e.g.
/// `docs/setup-page.png`). Needs what `scripts/test.sh` installs and `CCA_BROWSER_TESTS=1`.
#[tokio::test]
async fn the_setup_page_renders_in_a_browser() {
    if std::env::var("CCA_BROWSER_TESTS").as_deref() != Ok("1") {
        cca_testkit::stand::skip(
            "browser test needs CCA_BROWSER_TESTS=1 with Chromium and playwright-core \
             installed (scripts/test.sh installs them and sets it)",
        );
        return;
    }
    bounded(async {
        let prefix = std::env::var("CCA_NODE_PREFIX")
            .expect("CCA_NODE_PREFIX must name the npm prefix holding playwright-core");
        let home = tempfile::tempdir().unwrap();
        let dir = home.path();
        let github = FakeGitHub::start().await;
        let mut up = up_without_credentials(dir, &dir.join("data"), &github);
        let page_url = up.line_after("cca up: setup page on ").await;

        let shot = dir.join("setup-page.png");
        let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/setup_page.cjs");
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            Command::new("node")
                .arg(&driver)
                .arg(&page_url)
                .arg(github.url())
                .arg(&shot)
                .env("CCA_NODE_PREFIX", &prefix)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("the browser driver timed out")
        .expect("run node");
        assert!(
            out.status.success(),
            "driver failed:\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(text(&out.stdout).contains("OK"), "{}", text(&out.stdout));
        let png = std::fs::read(&shot).expect("screenshot written");
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        if let Some(keep) = std::env::var_os("CCA_SETUP_SCREENSHOT_OUT").filter(|v| !v.is_empty()) {
            std::fs::write(&keep, &png)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", PathBuf::from(&keep).display()));
        }
        up.interrupt().await;
    })
    .await;
}

/// `cca up --preview-sign-in`: the local proxy sends anonymous visitors to sign in, through the
/// auth host on the proxy's port; without the App's client it refuses to start, naming it.
#[tokio::test]
async fn up_with_preview_sign_in_sends_anonymous_visitors_to_sign_in() {
    bounded(async {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path();
        let data = dir.join("data");
        let github = FakeGitHub::start().await;
        github.add_installation(INSTALLATION);
        let key = dir.join("app.pem");
        std::fs::write(&key, app_private_key_pem()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let up_cmd = |client: bool| {
            let mut cmd = cca(dir);
            cmd.args(["up", "--listen", "127.0.0.1:0", "--preview-sign-in"])
                .args(["--proxy-listen", &format!("127.0.0.1:{port}")])
                .arg("--data-dir")
                .arg(&data)
                .env("GITHUB_APP_ID", APP_ID.to_string())
                .env("GITHUB_APP_PRIVATE_KEY_FILE", &key)
                .env("GITHUB_WEBHOOK_SECRET", SECRET)
                .env("GITHUB_API_URL", github.url())
                .env("GITHUB_WEB_URL", github.url())
                .env("CCA_AGENT_BIN", dir.join("no-agent-needed"))
                .env("RUST_LOG", "info");
            if client {
                cmd.env("GITHUB_CLIENT_ID", cca_testkit::github::CLIENT_ID)
                    .env("GITHUB_CLIENT_SECRET", cca_testkit::github::CLIENT_SECRET);
            }
            cmd
        };
        // Without the client: exit status 2 and what to set.
        let out = output(up_cmd(false).stdin(Stdio::null())).await;
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = text(&out.stderr);
        assert!(err.contains("GITHUB_CLIENT_ID"), "{err}");

        let mut up = Up::spawn(up_cmd(true), dir.join("up.stderr"));
        let sign_in = up.line_after("  sign-in   ").await;
        assert_eq!(
            sign_in,
            format!("github (callback http://auth.localhost:{port}/callback)")
        );
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = http
            .get(format!("http://127.0.0.1:{port}/"))
            .header("host", format!("somesession.localhost:{port}"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), reqwest::StatusCode::FOUND);
        let location = page.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            location.starts_with(&format!("http://auth.localhost:{port}/signin?to=")),
            "{location}"
        );
        // The auth host sends the browser on to GitHub with the App's client and callback.
        let auth = http
            .get(location.replace(
                &format!("auth.localhost:{port}"),
                &format!("127.0.0.1:{port}"),
            ))
            .header("host", format!("auth.localhost:{port}"))
            .send()
            .await
            .unwrap();
        assert_eq!(auth.status(), reqwest::StatusCode::FOUND);
        let github_url = auth.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            github_url.starts_with(&format!(
                "{}/login/oauth/authorize?client_id={}",
                github.url(),
                cca_testkit::github::CLIENT_ID
            )),
            "{github_url}"
        );
        up.interrupt().await;
    })
    .await;
}
