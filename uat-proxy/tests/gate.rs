//! Sign-in with GitHub in front of previews, against the real `cca-uat-proxy` binary and the
//! fake GitHub's web flow (`/login/oauth/authorize`, `/login/oauth/access_token`, `GET /user`,
//! repository permissions with the user's token).
//!
//! The proxy runs in local mode (plain HTTP on loopback, so it may reach the apps on 127.0.0.1)
//! with sign-in turned on, as `cca up --preview-sign-in` runs it. The visitor is a small
//! browser: it follows redirects, keeps host-only cookies per host, and reaches every preview
//! host on the proxy's port.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cca_domain::session::SessionPatch;
use cca_domain::{ImageChannel, RepoName, Session, SessionId, SessionType, Source, Status};
use cca_store::{SessionStore, SqliteStore};
use cca_testkit::github::{CLIENT_ID, CLIENT_SECRET, FakeGitHub};
use futures::{SinkExt as _, StreamExt as _};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const SUFFIX: &str = "preview.test";
const REPO: &str = "octo/private";
const OTHER_REPO: &str = "octo/other";

// ---- the stand ----------------------------------------------------------------------------

struct Stand {
    github: FakeGitHub,
    store: SqliteStore,
    proxy: Child,
    addr: SocketAddr,
    app: SocketAddr,
    sessions: std::sync::atomic::AtomicU64,
    _dir: tempfile::TempDir,
}

impl Drop for Stand {
    fn drop(&mut self) {
        let _ = self.proxy.kill();
        let _ = self.proxy.wait();
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Stand {
    /// The fake GitHub with a private repository (alice reads it, bob does not), an app, and
    /// the proxy with `env` on top of sign-in in local mode.
    async fn start(env: &[(&str, &str)]) -> Self {
        let github = FakeGitHub::start().await;
        for repo in [REPO, OTHER_REPO] {
            github.add_repo(repo);
            github.set_private(repo, true);
        }
        github.set_permission(REPO, "alice", "read");
        github.set_permission(REPO, "carol", "write");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        let store = SqliteStore::open(&path).unwrap();
        let app = start_app().await;
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        github.add_callback_url(&format!("http://auth.{SUFFIX}:{port}/callback"));
        let log = std::fs::File::create(dir.path().join("proxy.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cca-uat-proxy"));
        cmd.args(["serve", "--listen", &addr.to_string()])
            .env_clear()
            .env("SESSION_STORE", format!("sqlite:{}", path.display()))
            .env("UAT_DOMAIN_SUFFIX", SUFFIX)
            .env("PROXY_LOCAL_MODE", "true")
            .env("PREVIEW_SIGN_IN", "github")
            .env("GITHUB_CLIENT_ID", CLIENT_ID)
            .env("GITHUB_CLIENT_SECRET", CLIENT_SECRET)
            .env("GITHUB_API_URL", github.url())
            .env("GITHUB_WEB_URL", github.url())
            .env("PREVIEW_ACCESS_CACHE_SECS", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let proxy = cmd.spawn().expect("start cca-uat-proxy");
        let stand = Self {
            github,
            store,
            proxy,
            addr,
            app,
            sessions: std::sync::atomic::AtomicU64::new(0),
            _dir: dir,
        };
        stand.wait_up().await;
        stand
    }

    async fn wait_up(&self) {
        let start = Instant::now();
        while tokio::net::TcpStream::connect(self.addr).await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the proxy did not start:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// A session of `repo` RUNNING at the app (or at `port`).
    async fn running(&self, id: &str, repo: &str, port: Option<u16>) -> SessionId {
        let sid = SessionId::parse(id).unwrap();
        let mut session = Session::new(
            sid.clone(),
            SessionType::Preview,
            Source::Github,
            RepoName::parse(repo).unwrap(),
            cca_domain::BranchName::parse(&format!("feature/{id}")).unwrap(),
            ImageChannel::Latest,
            now(),
        );
        let pr = 7 + self
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        session.pr_number = Some(pr);
        self.store.create(&session).await.unwrap();
        self.store
            .transition(&sid, Status::Starting, SessionPatch::default(), now())
            .await
            .unwrap();
        let patch = SessionPatch {
            container_ip: Some("127.0.0.1".into()),
            app_port: Some(port.unwrap_or(self.app.port())),
            ..SessionPatch::default()
        };
        self.store
            .transition(&sid, Status::Running, patch, now())
            .await
            .unwrap();
        sid
    }

    fn url(&self, id: &str, path: &str) -> String {
        format!("http://{id}.{SUFFIX}:{}{path}", self.addr.port())
    }

    /// How many access checks (`GET /repos/{REPO}` with a visitor's token) GitHub has answered.
    fn access_checks(&self) -> usize {
        self.github
            .requests()
            .iter()
            .filter(|r| r.path == format!("/repos/{REPO}"))
            .count()
    }

    fn browser(&self) -> Browser {
        Browser::new(self.addr, self.github.url())
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An app that answers with what it saw: the path and the `Cookie` header.
async fn start_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    let cookie = req
                        .headers()
                        .get(header::COOKIE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let body = format!("app page {} cookie=[{cookie}]", req.uri().path());
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    // An app trying to plant the gate's cookie, and one of its own.
                    let headers = response.headers_mut();
                    headers.append(
                        header::SET_COOKIE,
                        "cca-preview=planted; Path=/".parse().unwrap(),
                    );
                    headers.append(header::SET_COOKIE, "app=1; Path=/".parse().unwrap());
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A WebSocket echo app.
async fn start_ws_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

// ---- the browser --------------------------------------------------------------------------

/// What a page load ended on.
#[derive(Debug)]
struct Page {
    status: StatusCode,
    url: String,
    body: String,
    location: Option<String>,
    set_cookies: Vec<String>,
}

/// Follows redirects like a browser, with host-only cookies per host; every host under the
/// suffix is the proxy.
struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, HashMap<String, String>>,
    /// Every URL visited, in order.
    visited: Vec<String>,
}

impl Browser {
    fn new(proxy: SocketAddr, _github: &str) -> Self {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        for label in [
            "auth", "a1", "b1", "fail1", "pub1", "ws1", "other1", "gone1",
        ] {
            builder = builder.resolve(&format!("{label}.{SUFFIX}"), proxy);
        }
        Self {
            http: builder.build().unwrap(),
            jar: HashMap::new(),
            visited: Vec::new(),
        }
    }

    fn cookie(&self, host: &str, name: &str) -> Option<String> {
        self.jar.get(host)?.get(name).cloned()
    }

    fn set(&mut self, host: &str, name: &str, value: &str) {
        self.jar
            .entry(host.to_owned())
            .or_default()
            .insert(name.to_owned(), value.to_owned());
    }

    /// One request, cookies of its host sent and kept.
    async fn get_once(&mut self, url: &str) -> Page {
        self.visited.push(url.to_owned());
        let parsed = url::Url::parse(url).unwrap();
        let host = parsed.host_str().unwrap().to_owned();
        let mut req = self.http.get(url);
        if let Some(cookies) = self.jar.get(&host).filter(|c| !c.is_empty()) {
            let header: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header(header::COOKIE, header.join("; "));
        }
        let response = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for c in &set_cookies {
            let first = c.split(';').next().unwrap();
            let (name, value) = first.split_once('=').unwrap();
            let gone = c.contains("Max-Age=0");
            let cookies = self.jar.entry(host.clone()).or_default();
            if gone {
                cookies.remove(name);
            } else {
                cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Page {
            status,
            url: url.to_owned(),
            body: response.text().await.unwrap_or_default(),
            location,
            set_cookies,
        }
    }

    /// A page load, following up to ten redirects.
    async fn open(&mut self, url: &str) -> Page {
        let mut url = url.to_owned();
        for _ in 0..10 {
            let page = self.get_once(&url).await;
            match (&page.location, page.status.is_redirection()) {
                (Some(next), true) => {
                    url = url::Url::parse(&url)
                        .unwrap()
                        .join(next)
                        .unwrap()
                        .to_string()
                }
                _ => return page,
            }
        }
        panic!("too many redirects: {:#?}", self.visited);
    }
}

// ---- the tests ----------------------------------------------------------------------------

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test took longer than a minute")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_signs_in_and_sees_the_page_others_are_refused_and_removed_access_ends() {
    within(async {
        let stand = Stand::start(&[]).await;
        stand.running("a1", REPO, None).await;

        // Anonymous: sent to sign in, nothing of the app.
        let mut anonymous = stand.browser();
        let first = anonymous.get_once(&stand.url("a1", "/deep/page?x=1")).await;
        assert_eq!(first.status, StatusCode::FOUND, "{first:?}");
        let location = first.location.clone().unwrap();
        assert!(
            location.starts_with(&format!(
                "http://auth.{SUFFIX}:{}/signin?to=",
                stand.addr.port()
            )),
            "{location}"
        );
        assert!(!first.body.contains("app page"));
        let binding = first
            .set_cookies
            .iter()
            .find(|c| c.starts_with("cca-signin="))
            .expect("a binding cookie");
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(binding.contains(attribute), "{binding}");
        }
        assert!(!binding.contains("Domain"), "host-only: {binding}");

        // Alice, signed in to GitHub, goes through the flow and lands on the page she asked for.
        stand.github.sign_in_browser(Some("alice"));
        let mut alice = stand.browser();
        let page = alice.open(&stand.url("a1", "/deep/page?x=1")).await;
        assert_eq!(
            page.status,
            StatusCode::OK,
            "{page:?}\n{:#?}\n{}",
            alice.visited,
            stand.log()
        );
        assert_eq!(page.url, stand.url("a1", "/deep/page?x=1"));
        assert!(
            page.body.starts_with("app page /deep/page"),
            "{}",
            page.body
        );
        // The app never sees the gate's cookies, and cannot plant one.
        assert!(!page.body.contains("cca-"), "{}", page.body);
        assert!(page.set_cookies.iter().any(|c| c.starts_with("app=1")));
        assert!(
            !page
                .set_cookies
                .iter()
                .any(|c| c.starts_with("cca-preview=planted"))
        );
        let trail = alice.visited.join("\n");
        assert!(
            trail.contains("/login/oauth/authorize?client_id="),
            "{trail}"
        );
        assert!(trail.contains("/callback?code="), "{trail}");
        assert!(trail.contains("/__cca/signin?code="), "{trail}");
        let cookie = alice
            .cookie(&format!("a1.{SUFFIX}"), "cca-preview")
            .expect("session cookie");
        assert!(
            alice
                .cookie(&format!("a1.{SUFFIX}"), "cca-signin")
                .is_none(),
            "binding cleared"
        );
        // A second page needs no new sign-in.
        let (authorizations, _) = stand.github.web_flow_counts();
        let again = alice.open(&stand.url("a1", "/other")).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(stand.github.web_flow_counts().0, authorizations);
        assert!(!cookie.is_empty());

        // Bob may not read the repository: 403 naming him, nothing of the app.
        stand.github.sign_in_browser(Some("bob"));
        let mut bob = stand.browser();
        let refused = bob.open(&stand.url("a1", "/")).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
        assert!(refused.body.contains("bob"));
        assert!(!refused.body.contains("app page"));
        assert!(
            !refused.body.contains("/pull/"),
            "no PR link for a stranger"
        );

        // A page load from elsewhere (a link on the PR) is fine; a script's request from
        // another site is not.
        let from = |site: &'static str, mode: &'static str| {
            let http = alice.http.clone();
            let url = stand.url("a1", "/");
            let cookie = cookie.clone();
            async move {
                http.get(url)
                    .header(header::COOKIE, format!("cca-preview={cookie}"))
                    .header("sec-fetch-site", site)
                    .header("sec-fetch-mode", mode)
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        };
        assert_eq!(from("cross-site", "navigate").await, StatusCode::OK);
        assert_eq!(from("same-site", "no-cors").await, StatusCode::FORBIDDEN);
        assert_eq!(from("same-origin", "cors").await, StatusCode::OK);

        // A page load's many requests arriving together once the answer has expired: one
        // question to GitHub, not one each.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let before = stand.access_checks();
        // GitHub slow enough for the whole burst to arrive while the first question is out.
        stand.github.set_latency(Duration::from_millis(300));
        let burst: Vec<_> = (0..20).map(|_| from("same-origin", "no-cors")).collect();
        for status in futures::future::join_all(burst).await {
            assert_eq!(status, StatusCode::OK);
        }
        stand.github.set_latency(Duration::ZERO);
        assert_eq!(
            stand.access_checks(),
            before + 1,
            "one access check for the burst"
        );

        // GitHub failing the access check once the cache has expired: 503, never a way in;
        // then it answers again.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        stand
            .github
            .fail_next("GET", &format!("/repos/{REPO}"), 502, 1);
        let failed = alice.open(&stand.url("a1", "/")).await;
        assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE, "{failed:?}");
        assert!(!failed.body.contains("app page"));
        assert_eq!(
            alice.open(&stand.url("a1", "/")).await.status,
            StatusCode::OK
        );

        // A page address that looks like another host (`//evil.example/`) is returned to as
        // a path of the preview, never elsewhere.
        stand.github.sign_in_browser(Some("alice"));
        let mut fresh = stand.browser();
        let page = fresh.open(&stand.url("a1", "//evil.example/x")).await;
        assert_eq!(
            page.url,
            stand.url("a1", "//evil.example/x"),
            "{:#?}",
            fresh.visited
        );
        assert!(
            page.body.starts_with("app page //evil.example/x"),
            "{}",
            page.body
        );

        // Alice loses her access: within the cache lifetime (1 s here) she is refused too.
        stand.github.set_permission(REPO, "alice", "none");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let after = alice.open(&stand.url("a1", "/")).await;
        assert_eq!(after.status, StatusCode::FORBIDDEN, "{after:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_stay_on_their_preview_codes_do_not_replay_and_the_auth_host_redirects_nowhere_else()
 {
    within(async {
        let stand = Stand::start(&[]).await;
        stand.running("a1", REPO, None).await;
        stand.running("b1", REPO, None).await;
        stand.github.sign_in_browser(Some("alice"));
        let mut alice = stand.browser();
        assert_eq!(
            alice.open(&stand.url("a1", "/")).await.status,
            StatusCode::OK
        );
        let a_host = format!("a1.{SUFFIX}");
        let b_host = format!("b1.{SUFFIX}");
        let cookie = alice.cookie(&a_host, "cca-preview").unwrap();

        // A's cookie presented to B (alice may read B's repository too): not valid there.
        let mut thief = stand.browser();
        thief.set(&b_host, "cca-preview", &cookie);
        let at_b = thief.get_once(&stand.url("b1", "/")).await;
        assert_eq!(at_b.status, StatusCode::FOUND, "{at_b:?}");
        assert!(!at_b.body.contains("app page"));

        // A tampered cookie is refused.
        let mut tampered = cookie.clone().into_bytes();
        let i = tampered.len() / 2;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let mut forger = stand.browser();
        forger.set(
            &a_host,
            "cca-preview",
            std::str::from_utf8(&tampered).unwrap(),
        );
        assert_eq!(
            forger.get_once(&stand.url("a1", "/")).await.status,
            StatusCode::FOUND
        );

        // An expired cookie, sealed with the deployment's own key (derived from the client
        // secret, which this test knows): refused all the same.
        let mut expired_settings = cca_uat_proxy::gate::GateSettings::new(CLIENT_ID, CLIENT_SECRET);
        expired_settings.session_ttl = Duration::ZERO;
        let expired = cca_uat_proxy::gate::Gate::new(expired_settings, SUFFIX).issue_cookie(
            &a_host,
            "alice",
            1,
            "ghu_expired",
        );
        let before = stand.access_checks();
        let mut late = stand.browser();
        late.set(&a_host, "cca-preview", &expired);
        assert_eq!(
            late.get_once(&stand.url("a1", "/")).await.status,
            StatusCode::FOUND
        );
        assert_eq!(
            stand.access_checks(),
            before,
            "an expired cookie is not even checked with GitHub"
        );
        // The same key with a live expiry is taken as a cookie (its made-up token is then
        // refused by GitHub, 401, which is a new sign-in): the key was right.
        let live = cca_uat_proxy::gate::Gate::new(
            cca_uat_proxy::gate::GateSettings::new(CLIENT_ID, CLIENT_SECRET),
            SUFFIX,
        )
        .issue_cookie(&a_host, "alice", 2, "ghu_madeup");
        late.set(&a_host, "cca-preview", &live);
        assert_eq!(
            late.get_once(&stand.url("a1", "/")).await.status,
            StatusCode::FOUND
        );
        assert_eq!(stand.access_checks(), before + 1);

        // The one-time code: used once by the browser that started the sign-in; a replay with
        // the same binding, or the code in another browser, is refused.
        let code_url = alice
            .visited
            .iter()
            .find(|u| u.contains("/__cca/signin?code="))
            .unwrap()
            .clone();
        let mut fresh = stand.browser();
        let elsewhere = fresh.get_once(&code_url).await;
        assert_eq!(elsewhere.status, StatusCode::BAD_REQUEST, "{elsewhere:?}");
        assert!(
            elsewhere.body.contains("another browser"),
            "{}",
            elsewhere.body
        );
        // A second sign-in of alice's, replayed with its binding cookie restored.
        let mut second = stand.browser();
        let start = second.get_once(&stand.url("a1", "/")).await;
        let binding = second.cookie(&a_host, "cca-signin").unwrap();
        let mut url = start.location.unwrap();
        let code_url = loop {
            let page = second.get_once(&url).await;
            let next = url::Url::parse(&url)
                .unwrap()
                .join(&page.location.unwrap())
                .unwrap()
                .to_string();
            if next.contains("/__cca/signin?code=") {
                break next;
            }
            url = next;
        };
        assert_eq!(
            second.get_once(&code_url).await.status,
            StatusCode::SEE_OTHER
        );
        second.set(&a_host, "cca-signin", &binding);
        let replay = second.get_once(&code_url).await;
        assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{replay:?}");
        assert!(replay.body.contains("used already"), "{}", replay.body);

        // The auth host sends nobody anywhere but a preview.
        let auth = |path: &str| format!("http://auth.{SUFFIX}:{}{path}", stand.addr.port());
        let b = "0".repeat(64);
        for to in [
            "https://evil.example/".to_owned(),
            format!("http://a1.{SUFFIX}.evil.example:{}/", stand.addr.port()),
            "//evil.example/".to_owned(),
            format!("http://user@a1.{SUFFIX}:{}/", stand.addr.port()),
            format!("http://auth.{SUFFIX}:{}/callback", stand.addr.port()),
        ] {
            let encoded: String = url::form_urlencoded::byte_serialize(to.as_bytes()).collect();
            let page = fresh
                .get_once(&auth(&format!("/signin?to={encoded}&b={b}")))
                .await;
            assert_eq!(page.status, StatusCode::BAD_REQUEST, "{to}: {page:?}");
            assert!(page.location.is_none(), "{to}");
        }
        // A state not made by the proxy.
        let forged = fresh.get_once(&auth("/callback?code=x&state=forged")).await;
        assert_eq!(forged.status, StatusCode::BAD_REQUEST);
        assert!(forged.location.is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_visitors_count_as_activity_and_see_what_the_record_says() {
    within(async {
        let stand = Stand::start(&[]).await;
        let id = stand.running("a1", REPO, None).await;
        // A failed preview of the same repository, with an error and a PR.
        let failed = stand.running("fail1", REPO, None).await;
        stand
            .store
            .transition(
                &failed,
                Status::Failed,
                SessionPatch {
                    error: Some("npm install: secret-looking detail".into()),
                    ..SessionPatch::default()
                },
                now(),
            )
            .await
            .unwrap();
        let mut anonymous = stand.browser();
        for _ in 0..5 {
            let page = anonymous.get_once(&stand.url("a1", "/")).await;
            assert_eq!(page.status, StatusCode::FOUND);
        }
        let page = anonymous.get_once(&stand.url("fail1", "/")).await;
        assert_eq!(page.status, StatusCode::FOUND);
        assert!(!page.body.contains("secret-looking"));
        // An unknown preview looks the same as a known one to anonymous visitors.
        let gone = anonymous.get_once(&stand.url("gone1", "/")).await;
        assert_eq!(gone.status, StatusCode::FOUND);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let record = stand.store.get(&id).await.unwrap().unwrap();
        assert_eq!(
            record.last_activity, None,
            "anonymous requests are not activity"
        );

        stand.github.sign_in_browser(Some("alice"));
        let mut alice = stand.browser();
        assert_eq!(
            alice.open(&stand.url("a1", "/")).await.status,
            StatusCode::OK
        );
        let start = Instant::now();
        loop {
            let record = stand.store.get(&id).await.unwrap().unwrap();
            if record.last_activity.is_some() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "a signed-in visit was not recorded"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The failure page, with its error and PR link, is for allowed visitors.
        let page = alice.open(&stand.url("fail1", "/")).await;
        assert_eq!(page.status, StatusCode::BAD_GATEWAY, "{page:?}");
        assert!(page.body.contains("secret-looking"));
        assert!(
            page.body.contains(&format!("/{REPO}/pull/8")),
            "{}",
            page.body
        );
        // An unknown preview is answered as one without access: a signed-in stranger cannot
        // probe which branch previews exist.
        let gone = alice.open(&stand.url("gone1", "/")).await;
        assert_eq!(gone.status, StatusCode::FORBIDDEN, "{gone:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_are_checked_on_the_upgrade_request() {
    within(async {
        let stand = Stand::start(&[]).await;
        let ws_app = start_ws_app().await;
        stand.running("ws1", REPO, Some(ws_app.port())).await;
        let url = format!("ws://ws1.{SUFFIX}:{}/hmr", stand.addr.port());
        let connect = |cookie: Option<String>| {
            let url = url.clone();
            let addr = stand.addr;
            async move {
                let mut req = url.into_client_request().unwrap();
                if let Some(c) = cookie {
                    req.headers_mut().insert(header::COOKIE, c.parse().unwrap());
                }
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                tokio_tungstenite::client_async(req, stream).await
            }
        };
        match connect(None).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            }
            other => panic!("an anonymous upgrade went through: {:?}", other.map(|_| ())),
        }
        stand.github.sign_in_browser(Some("alice"));
        let mut alice = stand.browser();
        let page = alice
            .open(&format!("http://ws1.{SUFFIX}:{}/", stand.addr.port()))
            .await;
        // The echo app answers plain HTTP with nothing useful; what matters is the cookie.
        let _ = page;
        let cookie = alice
            .cookie(&format!("ws1.{SUFFIX}"), "cca-preview")
            .expect("signed in");
        // Another preview's page opening this dev server's socket with the visitor's cookie:
        // refused, by Origin and by fetch metadata.
        for header in [
            (
                "origin",
                format!("http://a1.{SUFFIX}:{}", stand.addr.port()),
            ),
            ("sec-fetch-site", "same-site".to_owned()),
        ] {
            let mut req = url.clone().into_client_request().unwrap();
            req.headers_mut().insert(
                header::COOKIE,
                format!("cca-preview={cookie}").parse().unwrap(),
            );
            req.headers_mut()
                .insert(header.0, header.1.parse().unwrap());
            let stream = tokio::net::TcpStream::connect(stand.addr).await.unwrap();
            match tokio_tungstenite::client_async(req, stream).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    assert_eq!(response.status(), StatusCode::FORBIDDEN, "{header:?}");
                }
                other => panic!("a cross-site upgrade went through: {:?}", other.map(|_| ())),
            }
        }
        let (mut ws, response) = connect(Some(format!("cca-preview={cookie}")))
            .await
            .expect("a signed-in upgrade goes through");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        ws.send(Message::text("ping")).await.unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), "ping");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_repository_setting_and_the_operator_switch_open_previews() {
    within(async {
        // The repository declared its previews public: the agent recorded it.
        let stand = Stand::start(&[]).await;
        let id = stand.running("pub1", REPO, None).await;
        stand
            .store
            .update(
                &id,
                SessionPatch {
                    preview_public: Some(true),
                    ..SessionPatch::default()
                },
                now(),
            )
            .await
            .unwrap();
        stand.running("a1", REPO, None).await;
        let mut anonymous = stand.browser();
        let page = anonymous.get_once(&stand.url("pub1", "/")).await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        assert!(page.body.starts_with("app page /"));
        let page = anonymous.get_once(&stand.url("a1", "/")).await;
        assert_eq!(page.status, StatusCode::FOUND, "others keep the gate");
        drop(stand);

        // The operator's switch: sign-in off for the whole deployment.
        let stand = Stand::start(&[("PREVIEW_SIGN_IN", "off")]).await;
        stand.running("a1", REPO, None).await;
        let page = stand.browser().get_once(&stand.url("a1", "/")).await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        assert!(stand.log().contains("sign-in is off"), "{}", stand.log());
        drop(stand);

        // Local mode without PREVIEW_SIGN_IN (cca up's default): open, no credentials needed.
        let stand = Stand::start(&[
            ("PREVIEW_SIGN_IN", ""),
            ("GITHUB_CLIENT_ID", ""),
            ("GITHUB_CLIENT_SECRET", ""),
        ])
        .await;
        stand.running("a1", REPO, None).await;
        let page = stand.browser().get_once(&stand.url("a1", "/")).await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
    })
    .await;
}

#[test]
fn outside_local_mode_a_proxy_without_sign_in_credentials_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cca-uat-proxy"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env(
            "SESSION_STORE",
            format!("sqlite:{}", Path::new(dir.path()).join("s.db").display()),
        )
        .env("UAT_DOMAIN_SUFFIX", SUFFIX)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("GITHUB_CLIENT_ID"), "{stderr}");
    assert!(stderr.contains("PREVIEW_SIGN_IN=off"), "{stderr}");
}

/// The gate as deployed, behind the load balancer's TLS: `https` links, and cookies that are
/// `Secure`, host-only and `__Host-` prefixed. In-process, since the binary reaches apps on
/// loopback only in local mode, which is plain HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_tls_links_are_https_and_cookies_secure_host_only_and_prefixed() {
    within(async {
        use cca_uat_proxy::gate::GateSettings;
        use cca_uat_proxy::{Proxy, Settings};
        use std::sync::Arc;

        let github = FakeGitHub::start().await;
        github.add_repo(REPO);
        github.set_private(REPO, true);
        github.set_permission(REPO, "alice", "read");
        github.sign_in_browser(Some("alice"));
        github.add_callback_url(&format!("https://auth.{SUFFIX}/callback"));
        let store: Arc<dyn SessionStore> = Arc::new(SqliteStore::in_memory().unwrap());
        let app = start_app().await;
        let sid = SessionId::parse("a1").unwrap();
        let mut session = Session::new(
            sid.clone(),
            SessionType::Preview,
            Source::Github,
            RepoName::parse(REPO).unwrap(),
            cca_domain::BranchName::parse("feature/a1").unwrap(),
            ImageChannel::Latest,
            now(),
        );
        session.pr_number = Some(3);
        store.create(&session).await.unwrap();
        store
            .transition(&sid, Status::Starting, SessionPatch::default(), now())
            .await
            .unwrap();
        let patch = SessionPatch {
            container_ip: Some("127.0.0.1".into()),
            app_port: Some(app.port()),
            ..SessionPatch::default()
        };
        store
            .transition(&sid, Status::Running, patch, now())
            .await
            .unwrap();
        let mut settings = Settings::new(SUFFIX).unwrap();
        settings.local_mode = true; // to reach the app on loopback; the gate stays as deployed
        let mut gate = GateSettings::new(CLIENT_ID, CLIENT_SECRET);
        gate.api_url = github.url().to_owned();
        gate.web_url = github.url().to_owned();
        assert!(gate.secure);
        settings.gate = Some(gate);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_addr = listener.local_addr().unwrap();
        tokio::spawn(Proxy::new(store, settings).serve(listener, std::future::pending()));

        // A browser behind TLS termination: https addresses under the suffix go to the proxy.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut jar: HashMap<String, HashMap<String, String>> = HashMap::new();
        let mut set_cookies: Vec<(String, String)> = Vec::new();
        let mut url = format!("https://a1.{SUFFIX}/page");
        let mut last = None;
        for _ in 0..10 {
            let parsed = url::Url::parse(&url).unwrap();
            let host = parsed.host_str().unwrap().to_owned();
            let mut req = if host.ends_with(SUFFIX) {
                let path = &url[url.find(&host).unwrap() + host.len()..];
                http.get(format!("http://{proxy_addr}{path}"))
                    .header(header::HOST, &host)
                    .header("x-forwarded-proto", "https")
            } else {
                http.get(&url)
            };
            if let Some(c) = jar.get(&host) {
                let c: Vec<String> = c.iter().map(|(k, v)| format!("{k}={v}")).collect();
                req = req.header(header::COOKIE, c.join("; "));
            }
            let response = req.send().await.unwrap();
            for v in response.headers().get_all(header::SET_COOKIE) {
                let text = v.to_str().unwrap().to_owned();
                let (name, value) = text.split(';').next().unwrap().split_once('=').unwrap();
                jar.entry(host.clone())
                    .or_default()
                    .insert(name.to_owned(), value.to_owned());
                set_cookies.push((host.clone(), text.clone()));
            }
            match response.headers().get(header::LOCATION) {
                Some(next) if response.status().is_redirection() => {
                    let next = next.to_str().unwrap().to_owned();
                    // Every address of the deployment's own is https.
                    let next_host = url::Url::parse(&next)
                        .unwrap()
                        .host_str()
                        .unwrap()
                        .to_owned();
                    if next_host.ends_with(SUFFIX) {
                        assert!(next.starts_with("https://"), "{next}");
                    }
                    url = next;
                }
                _ => {
                    last = Some((response.status(), response.text().await.unwrap()));
                    break;
                }
            }
        }
        let (status, body) = last.expect("the flow ended");
        assert_eq!(status, StatusCode::OK, "{body}\n{set_cookies:#?}");
        assert!(body.starts_with("app page /page"), "{body}");
        let session_cookie = set_cookies
            .iter()
            .find(|(_, c)| c.starts_with("__Host-cca-preview="))
            .map(|(host, c)| (host.as_str(), c.as_str()))
            .expect("the session cookie");
        assert_eq!(session_cookie.0, format!("a1.{SUFFIX}"));
        for attribute in ["; Secure", "; HttpOnly", "; SameSite=Lax", "; Path=/"] {
            assert!(session_cookie.1.contains(attribute), "{}", session_cookie.1);
        }
        assert!(!session_cookie.1.contains("Domain"), "{}", session_cookie.1);
        let binding = set_cookies
            .iter()
            .find(|(_, c)| c.starts_with("__Host-cca-signin="))
            .expect("the binding cookie");
        assert!(binding.1.contains("; Secure"), "{}", binding.1);
        assert!(
            !set_cookies
                .iter()
                .any(|(host, _)| host.starts_with("auth.")),
            "the auth host sets no cookie: it hands the preview a code"
        );
    })
    .await;
}

/// `PREVIEW_ACCESS=write`: a reader of the repository is refused like a stranger; a writer is
/// let in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_write_access_required_a_reader_is_refused_and_a_writer_let_in() {
    within(async {
        let stand = Stand::start(&[("PREVIEW_ACCESS", "write")]).await;
        stand.running("a1", REPO, None).await;
        stand.github.sign_in_browser(Some("alice"));
        let reader = stand.browser().open(&stand.url("a1", "/")).await;
        assert_eq!(reader.status, StatusCode::FORBIDDEN, "{reader:?}");
        assert!(reader.body.contains("alice"));
        assert!(!reader.body.contains("app page"));
        stand.github.sign_in_browser(Some("carol"));
        let writer = stand.browser().open(&stand.url("a1", "/")).await;
        assert_eq!(writer.status, StatusCode::OK, "{writer:?}");
        assert!(writer.body.starts_with("app page /"));
    })
    .await;
}
