//! End to end through a real browser: a Vite dev server (the fixture app in `tests/browser/app`)
//! behind `cca-uat-proxy`, opened in headless Chromium at `http://<session>.localhost:<proxy>/`.
//! The page must load through the proxy, Vite's hot-reload WebSocket must connect through it,
//! and an edit of a module on disk must reach the open page by hot module replacement.
//!
//! Needs Node.js, `/usr/bin/chromium` and an npm prefix holding `vite` and `playwright-core`;
//! `scripts/test.sh` installs them and sets `CCA_BROWSER_TESTS=1` and `CCA_NODE_PREFIX`.
//! Without `CCA_BROWSER_TESTS=1` the test says so and passes without running.
//!
//! Set `CCA_SCREENSHOT_OUT=<file>` to keep the final screenshot.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cca_domain::session::SessionPatch;
use cca_domain::{ImageChannel, RepoName, Session, SessionId, SessionType, Source, Status};
use cca_store::{SessionStore, SqliteStore};
use cca_testkit::github::{CLIENT_ID, CLIENT_SECRET, FakeGitHub};

/// The whole test, from starting Vite to the driver's exit.
const GLOBAL_TIMEOUT: Duration = Duration::from_secs(120);
const SESSION_ID: &str = "preview1";
const REPO: &str = "octo/preview";
const FIRST_TEXT: &str = "Hello from the preview";
const SECOND_TEXT: &str = "Edited through the proxy";

#[test]
fn vite_hot_reload_goes_through_the_proxy() {
    run(false);
}

/// The same behind sign-in with GitHub: Chromium follows the whole flow (the auth host, the fake
/// GitHub's authorization page, the callback, the one-time code) to the page, and Vite's
/// hot-reload WebSocket, checked by the gate on its upgrade, still updates it.
#[test]
fn vite_hot_reload_goes_through_the_sign_in_gate() {
    run(true);
}

fn run(gated: bool) {
    if std::env::var("CCA_BROWSER_TESTS").as_deref() != Ok("1") {
        cca_testkit::stand::skip(
            "browser test needs CCA_BROWSER_TESTS=1 with Chromium, Vite and \
             playwright-core installed (scripts/test.sh installs them and sets it)",
        );
        return;
    }
    let prefix = PathBuf::from(
        std::env::var("CCA_NODE_PREFIX")
            .expect("CCA_NODE_PREFIX must name the npm prefix holding vite and playwright-core"),
    );
    let vite_bin = prefix.join("node_modules/vite/bin/vite.js");
    assert!(vite_bin.is_file(), "missing {}", vite_bin.display());
    let deadline = Instant::now() + GLOBAL_TIMEOUT;

    let tmp = tempfile::tempdir().expect("temp dir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let app = tmp.path().join("app");
    copy_dir(&fixture.join("app"), &app);
    // Printed (tail of each log) if anything below panics.
    let _logs = LogsOnPanic(vec![
        ("vite", tmp.path().join("vite.log")),
        ("proxy", tmp.path().join("proxy.log")),
        ("driver", tmp.path().join("driver.log")),
    ]);

    // The dev server, on loopback only.
    let vite_port = free_port();
    let mut vite = Proc::spawn(
        "vite",
        Command::new("node")
            .arg(&vite_bin)
            .args(["--port", &vite_port.to_string()])
            .args(["--host", "127.0.0.1", "--strictPort"])
            .current_dir(&app),
        &tmp.path().join("vite.log"),
    );
    let vite_addr = SocketAddr::from(([127, 0, 0, 1], vite_port));
    wait_for_status(&mut vite, vite_addr, "127.0.0.1", "/", 200, deadline);

    // A RUNNING session pointing at it, and the proxy in local mode reading that store.
    let store_path = tmp.path().join("sessions.db");
    seed_running_session(&store_path, SESSION_ID, vite_port);
    let proxy_port = free_port();
    let proxy_addr = SocketAddr::from(([127, 0, 0, 1], proxy_port));
    let mut command = Command::new(env!("CARGO_BIN_EXE_cca-uat-proxy"));
    command
        .args(["serve", "--listen", &proxy_addr.to_string()])
        .env("SESSION_STORE", format!("sqlite:{}", store_path.display()))
        .env("UAT_DOMAIN_SUFFIX", "localhost")
        .env("PROXY_LOCAL_MODE", "true")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    // Behind the gate: the fake GitHub, in a runtime of its own, knows alice, who may read the
    // private repository and is signed in to GitHub in "the browser".
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let github = gated.then(|| {
        let github = runtime.block_on(FakeGitHub::start());
        github.add_repo(REPO);
        github.set_private(REPO, true);
        github.set_permission(REPO, "alice", "read");
        github.sign_in_browser(Some("alice"));
        github.add_callback_url(&format!("http://auth.localhost:{proxy_port}/callback"));
        command
            .env("PREVIEW_SIGN_IN", "github")
            .env("GITHUB_CLIENT_ID", CLIENT_ID)
            .env("GITHUB_CLIENT_SECRET", CLIENT_SECRET)
            .env("GITHUB_API_URL", github.url())
            .env("GITHUB_WEB_URL", github.url());
        github
    });
    let mut proxy = Proc::spawn("cca-uat-proxy", &mut command, &tmp.path().join("proxy.log"));
    wait_for_status(
        &mut proxy,
        proxy_addr,
        "127.0.0.1",
        "/health",
        200,
        deadline,
    );
    let host = format!("{SESSION_ID}.localhost:{proxy_port}");
    // The page through the proxy, before a browser is involved: a clearer failure if not. Behind
    // the gate, an anonymous request is sent to sign in.
    let first = if gated { 302 } else { 200 };
    wait_for_status(&mut proxy, proxy_addr, &host, "/", first, deadline);
    let sign_in_hosts = github
        .as_ref()
        .map(|g| {
            let fake = g.url().trim_start_matches("http://").to_owned();
            format!("auth.localhost:{proxy_port},{fake}")
        })
        .unwrap_or_default();

    // The browser.
    let shots = tmp.path().join("shots");
    let driver_log = tmp.path().join("driver.log");
    let mut driver = Proc::spawn_piped(
        "driver",
        Command::new("node")
            .arg(fixture.join("driver.cjs"))
            .arg(format!("http://{host}/"))
            .args([FIRST_TEXT, SECOND_TEXT])
            .arg(&shots)
            .env("CCA_NODE_PREFIX", &prefix)
            .env("CCA_SIGN_IN_HOSTS", &sign_in_hosts),
        &driver_log,
    );
    let lines = driver.lines();

    let ready = next_line(&lines, &mut driver, deadline, "READY");
    assert_eq!(ready, "READY");
    fs::write(
        app.join("message.js"),
        format!("export const message = '{SECOND_TEXT}';\n"),
    )
    .expect("edit message.js");

    let done = next_line(&lines, &mut driver, deadline, "OK <screenshot>");
    let shot = done
        .strip_prefix("OK ")
        .unwrap_or_else(|| panic!("driver said {done:?}, expected OK <screenshot>"));
    let status = driver.wait_until(deadline);
    assert!(status.success(), "driver exited with {status}");
    let png = fs::read(shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
    if let (false, Ok(out)) = (gated, std::env::var("CCA_SCREENSHOT_OUT")) {
        fs::write(&out, &png).unwrap_or_else(|e| panic!("cannot write {out}: {e}"));
    }

    // Both servers still up: nothing above crashed them.
    assert!(vite.is_running(), "vite exited");
    assert!(proxy.is_running(), "cca-uat-proxy exited");
    if let Some(github) = github {
        let (authorizations, exchanges) = github.web_flow_counts();
        assert_eq!(
            (authorizations, exchanges),
            (1, 1),
            "one sign-in for the page, its scripts and the hot-reload socket"
        );
    }
}

/// Not a test: prints the session cookie a visitor signed in as `octocat` holds for
/// `bench.localhost`, sealed with `CCA_BENCH_COOKIE_SECRET` as a local-mode proxy with that
/// `PREVIEW_COOKIE_SECRET` seals it, for `scripts/bench-proxy.sh` (the proxy behind sign-in).
#[test]
#[ignore = "helper of scripts/bench-proxy.sh"]
fn mint_cookie_for_benchmark() {
    let secret = std::env::var("CCA_BENCH_COOKIE_SECRET").expect("CCA_BENCH_COOKIE_SECRET");
    let out = std::env::var("CCA_BENCH_COOKIE_OUT").expect("CCA_BENCH_COOKIE_OUT");
    let mut settings = cca_uat_proxy::gate::GateSettings::new(CLIENT_ID, CLIENT_SECRET);
    settings.cookie_secret = Some(secret);
    settings.secure = false;
    let gate = cca_uat_proxy::gate::Gate::new(settings, "localhost");
    let token = format!("ghu_{}", "b".repeat(36));
    let cookie = gate.issue_cookie("bench.localhost", "octocat", 583231, &token);
    fs::write(out, format!("{}={cookie}", gate.cookie_name())).expect("write the cookie");
}

/// Not a test: writes the RUNNING session `bench` → 127.0.0.1:`CCA_BENCH_UPSTREAM_PORT` into the
/// SQLite store at `CCA_BENCH_STORE`, for `scripts/bench-proxy.sh`.
#[test]
#[ignore = "helper of scripts/bench-proxy.sh"]
fn seed_store_for_benchmark() {
    let path = std::env::var("CCA_BENCH_STORE").expect("CCA_BENCH_STORE");
    let port = std::env::var("CCA_BENCH_UPSTREAM_PORT")
        .expect("CCA_BENCH_UPSTREAM_PORT")
        .parse()
        .expect("CCA_BENCH_UPSTREAM_PORT is a port");
    seed_running_session(Path::new(&path), "bench", port);
}

/// Creates session `id` in the SQLite store at `path` and moves it to RUNNING at
/// 127.0.0.1:`port`, as the launcher would once its container answers.
fn seed_running_session(path: &Path, id: &str, port: u16) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let store = SqliteStore::open(path).expect("open the store");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let id = SessionId::parse(id).expect("session id");
        let mut session = Session::new(
            id.clone(),
            SessionType::Agent,
            Source::Github,
            RepoName::parse(REPO).expect("repo"),
            cca_domain::naming::issue_branch(1),
            ImageChannel::Latest,
            now,
        );
        session.issue_number = Some(1);
        store.create(&session).await.expect("create the session");
        store
            .transition(&id, Status::Starting, SessionPatch::default(), now)
            .await
            .expect("to STARTING");
        let running = SessionPatch {
            container_ip: Some("127.0.0.1".into()),
            app_port: Some(port),
            ..Default::default()
        };
        store
            .transition(&id, Status::Running, running, now)
            .await
            .expect("to RUNNING");
    });
}

/// A child process in its own process group, killed with the whole group when dropped (Vite's
/// and Chromium's helpers included).
struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Self {
        let out = fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        Self::start(name, cmd.stdout(out).stderr(err))
    }

    /// Like `spawn`, with stdout left to read through [`Proc::lines`].
    fn spawn_piped(name: &'static str, cmd: &mut Command, log: &Path) -> Self {
        let err = fs::File::create(log).expect("log file");
        Self::start(name, cmd.stdout(Stdio::piped()).stderr(err))
    }

    fn start(name: &'static str, cmd: &mut Command) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self { name, child }
    }

    /// The lines of the child's stdout, read on a thread; the channel closes at end of file.
    fn lines(&mut self) -> mpsc::Receiver<String> {
        let stdout = self.child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    fn wait_until(&mut self, deadline: Instant) -> ExitStatus {
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit in time",
                self.name
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// On panic, prints the last lines of each log.
struct LogsOnPanic(Vec<(&'static str, PathBuf)>);

impl Drop for LogsOnPanic {
    fn drop(&mut self) {
        if !thread::panicking() {
            return;
        }
        for (name, path) in &self.0 {
            let text = fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("--- last lines of the {name} log ---");
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

/// The driver's next stdout line, failing when it exits first or the deadline passes.
fn next_line(
    lines: &mpsc::Receiver<String>,
    driver: &mut Proc,
    deadline: Instant,
    expected: &str,
) -> String {
    let left = deadline.saturating_duration_since(Instant::now());
    match lines.recv_timeout(left) {
        Ok(line) => line,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("driver printed no {expected} within {GLOBAL_TIMEOUT:?}")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let status = driver.wait_until(deadline);
            panic!("driver exited with {status} before printing {expected}")
        }
    }
}

/// Waits until `GET path` with `Host: host` at `addr` answers `want`.
fn wait_for_status(
    server: &mut Proc,
    addr: SocketAddr,
    host: &str,
    path: &str,
    want: u16,
    deadline: Instant,
) {
    loop {
        if let Some(status) = server.exited() {
            panic!("{} exited with {status} before answering", server.name);
        }
        let last = match http_status(addr, host, path) {
            Ok(code) if code == want => return,
            Ok(code) => format!("status {code}"),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "{} did not answer {want} for http://{host}{path} via {addr} in time ({last})",
            server.name
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The status code of one plain HTTP/1.1 GET.
fn http_status(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create dir");
    for entry in fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}
