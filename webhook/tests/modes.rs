//! The two ways the binary runs, as a real process: `cca-webhook serve --listen` over HTTP, and
//! Lambda mode driven through a local Lambda Runtime API (the protocol the Lambda service speaks
//! to the function: `GET …/invocation/next`, `POST …/invocation/<id>/response`), with API
//! Gateway v2 / Function URL and ALB events. Both reach the same router. In Lambda mode an
//! EventBridge scheduled event runs the sweeper instead.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine as _;
use cca_domain::session::SessionPatch;
use cca_domain::{ImageChannel, RepoName, Session, SessionId, SessionType, Source, Status, naming};
use cca_store::{SessionStore, SqliteStore};
use cca_testkit::fixtures::sign_github;
use serde_json::{Value, json};

const SECRET: &str = "modes-webhook-secret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn webhook(args: &[&str], envs: &[(&str, String)]) -> Command {
    let dir = std::env::temp_dir().join(cca_testkit::moto::unique_name("cca-modes"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cca-webhook"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "SESSION_STORE",
            format!("sqlite:{}", dir.join("s.db").display()),
        )
        .env("GITHUB_TOKEN", "personal-token-for-modes")
        .env("GITHUB_API_URL", "http://127.0.0.1:9")
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env(
            "CCA_CONTROL_SECRET",
            "modes-control-secret-0123456789abcdef",
        )
        .env("UAT_DOMAIN_SUFFIX", "localhost")
        .env("CCA_LOG_DIR", dir.join("logs"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

fn ping_body() -> Vec<u8> {
    serde_json::to_vec(&json!({"zen": "Keep it logically awesome.", "hook_id": 1})).unwrap()
}

#[tokio::test]
async fn serve_mode_answers_over_http() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _server = Running(
        webhook(
            &["serve", "--listen", &listen],
            &[("LISTEN_HEADER_TIMEOUT_SECS", "2".into())],
        )
        .spawn()
        .expect("spawn"),
    );
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("http://{listen}/health")).send().await {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = ping_body();
    let r = client
        .post(format!("http://{listen}/webhooks/github"))
        .header("x-github-event", "ping")
        .header("x-hub-signature-256", sign_github(SECRET, &body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["message"], "pong");
    let r = client
        .post(format!("http://{listen}/webhook"))
        .header("x-github-event", "ping")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A client that never finishes its headers is cut at the configured 2 s.
    let cut = cca_testkit::probe::slow_headers(&listen, Duration::from_secs(10)).await;
    assert!(
        cut.is_some_and(|t| t >= Duration::from_millis(1500)),
        "slow headers: {cut:?}"
    );
}

#[test]
fn a_bad_configuration_names_the_variable() {
    let out = webhook(&["serve"], &[("SESSION_STORE", "redis:nope".into())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SESSION_STORE is invalid"), "{stderr}");
    let out = webhook(&["serve"], &[("UAT_DOMAIN_SUFFIX", String::new())])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("UAT_DOMAIN_SUFFIX"));
}

/// A local Lambda Runtime API: hands out queued events and collects the function's answers.
#[derive(Clone, Default)]
struct RuntimeApi {
    events: Arc<Mutex<VecDeque<(String, Value)>>>,
    answers: Arc<Mutex<Vec<(String, Value)>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

async fn next(State(api): State<RuntimeApi>) -> impl IntoResponse {
    loop {
        let item = api.events.lock().unwrap().pop_front();
        if let Some((id, event)) = item {
            let deadline = (std::time::SystemTime::now() + Duration::from_secs(30))
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                .to_string();
            let mut h = HeaderMap::new();
            h.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
            h.insert("lambda-runtime-deadline-ms", deadline.parse().unwrap());
            h.insert(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:cca-webhook"
                    .parse()
                    .unwrap(),
            );
            h.insert(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000".parse().unwrap(),
            );
            return (StatusCode::OK, h, event.to_string());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn response(
    State(api): State<RuntimeApi>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    api.answers.lock().unwrap().push((id, v));
    StatusCode::ACCEPTED
}

async fn error(State(api): State<RuntimeApi>, body: Bytes) -> StatusCode {
    api.errors
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

/// Serves `api` on a free local port.
async fn serve_runtime_api(api: &RuntimeApi) -> SocketAddr {
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// What the Lambda service sets for a function using the Runtime API at `addr`.
fn lambda_env(addr: SocketAddr) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_RUNTIME_API", addr.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", "cca-webhook".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/cca-webhook".into(),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "stream".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

fn apigw_v2(body: &[u8], headers: Value, path: &str) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc", "domainName": "abc.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc", "requestId": "r1", "routeKey": "$default", "stage": "$default",
            "time": "21/Nov/2026:10:00:00 +0000", "timeEpoch": 1795255200000u64,
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "GitHub-Hookshot/1"}
        },
        "body": base64::engine::general_purpose::STANDARD.encode(body),
        "isBase64Encoded": true
    })
}

fn alb(body: &[u8], headers: Value, path: &str) -> Value {
    json!({
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t/1"}},
        "httpMethod": "POST",
        "path": path,
        "queryStringParameters": {},
        "headers": headers,
        "body": String::from_utf8(body.to_vec()).unwrap(),
        "isBase64Encoded": false
    })
}

#[tokio::test]
async fn lambda_mode_serves_function_url_and_alb_events() {
    let api = RuntimeApi::default();
    let body = ping_body();
    let signed = json!({"x-github-event": "ping", "x-hub-signature-256": sign_github(SECRET, &body), "content-type": "application/json"});
    let unsigned = json!({"x-github-event": "ping", "content-type": "application/json"});
    api.events.lock().unwrap().extend([
        (
            "req-1".to_owned(),
            apigw_v2(&body, signed.clone(), "/webhook"),
        ),
        ("req-2".to_owned(), apigw_v2(&body, unsigned, "/webhook")),
        ("req-3".to_owned(), alb(&body, signed, "/webhooks/github")),
        ("req-4".to_owned(), apigw_v2(b"", json!({}), "/health")),
    ]);
    let addr = serve_runtime_api(&api).await;
    let _function = Running(webhook(&[], &lambda_env(addr)).spawn().expect("spawn"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.answers.lock().unwrap().len() < 4 {
        assert!(
            api.errors.lock().unwrap().is_empty(),
            "{:?}",
            api.errors.lock().unwrap()
        );
        assert!(
            Instant::now() < deadline,
            "answers: {:?}",
            api.answers.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answers: std::collections::HashMap<String, Value> =
        api.answers.lock().unwrap().iter().cloned().collect();
    let status = |id: &str| answers[id]["statusCode"].as_u64().unwrap();
    let body_of = |id: &str| -> Value {
        let a = &answers[id];
        let raw = a["body"].as_str().unwrap_or_default();
        let text = if a["isBase64Encoded"] == true {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(raw)
                    .unwrap(),
            )
            .unwrap()
        } else {
            raw.to_owned()
        };
        serde_json::from_str(&text).unwrap()
    };
    assert_eq!(status("req-1"), 200, "{:?}", answers["req-1"]);
    assert_eq!(body_of("req-1")["message"], "pong");
    assert_eq!(status("req-2"), 401);
    assert_eq!(status("req-3"), 200, "{:?}", answers["req-3"]);
    assert_eq!(body_of("req-3")["message"], "pong");
    assert_eq!(
        status("req-4"),
        405,
        "GET-only /health was POSTed: {:?}",
        answers["req-4"]
    );
    assert_eq!(
        body_of("req-4")["error"],
        "method not allowed on this route"
    );
}

/// An agent session recorded up to RUNNING with `task_arn`, its heartbeat `heartbeat_age`
/// seconds old.
async fn running_session(
    store: &SqliteStore,
    issue: u64,
    task_arn: &str,
    heartbeat_age: i64,
) -> Session {
    let now = cca_webhook::app::now();
    let mut s = Session::new(
        SessionId::random_agent(),
        SessionType::Agent,
        Source::Github,
        RepoName::parse("octo/app").unwrap(),
        naming::issue_branch(issue),
        ImageChannel::Latest,
        now - 3600,
    );
    s.issue_number = Some(issue);
    store.create(&s).await.unwrap();
    let patch = SessionPatch {
        task_arn: Some(task_arn.to_owned()),
        heartbeat_at: Some(now - heartbeat_age),
        last_activity: Some(now),
        ..SessionPatch::default()
    };
    store
        .transition(&s.session_id, Status::Starting, patch, now)
        .await
        .unwrap();
    store
        .transition(&s.session_id, Status::Running, SessionPatch::default(), now)
        .await
        .unwrap()
}

#[tokio::test]
async fn lambda_mode_sweeps_on_a_scheduled_event() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.db");
    let store = SqliteStore::open(&db).unwrap();
    // A session whose agent process is gone (no such pid), and a live one whose "agent" is a
    // process of another launcher, recognised by the session variables in its environment.
    let dead = running_session(&store, 1, &format!("process:{}", i32::MAX - 1), 10).await;
    let agent = Command::new("sleep")
        .arg("60")
        .env("SESSION_ID", "stand-in-agent")
        .spawn()
        .expect("spawn a stand-in agent");
    let agent_pid = agent.id();
    let _agent = Running(agent);
    let live = running_session(&store, 2, &format!("process:{agent_pid}"), 10).await;

    let api = RuntimeApi::default();
    let scheduled = json!({
        "version": "0", "id": "8a9d8c1e-0f2b-4d1c-9b55-3a3c1b1e6f00",
        "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-21T10:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/cca-sweep"], "detail": {}
    });
    api.events.lock().unwrap().extend([
        ("sweep-1".to_owned(), scheduled),
        ("req-1".to_owned(), apigw_v2(b"", json!({}), "/health")),
    ]);
    let addr = serve_runtime_api(&api).await;
    let mut env = lambda_env(addr);
    env.push(("SESSION_STORE", format!("sqlite:{}", db.display())));
    let _function = Running(webhook(&[], &env).spawn().expect("spawn"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.answers.lock().unwrap().len() < 2 {
        assert!(
            api.errors.lock().unwrap().is_empty(),
            "{:?}",
            api.errors.lock().unwrap()
        );
        assert!(
            Instant::now() < deadline,
            "no answer to the scheduled event"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answers: std::collections::HashMap<String, Value> =
        api.answers.lock().unwrap().iter().cloned().collect();
    let report = &answers["sweep-1"];
    let actions = report["actions"].as_array().expect("a sweep report");
    assert_eq!(actions.len(), 1, "{report:#}");
    assert_eq!(actions[0]["action"], "fail");
    assert_eq!(actions[0]["session_id"], dead.session_id.as_str());
    assert_eq!(actions[0]["result"], "done");
    // HTTP events are still served by the router.
    assert_eq!(answers["req-1"]["statusCode"], 405);

    let after = store.get(&dead.session_id).await.unwrap().unwrap();
    assert_eq!(after.status, Status::Failed);
    assert_eq!(after.error.as_deref(), Some("task no longer running"));
    assert_eq!(store.get(&live.session_id).await.unwrap().unwrap(), live);
}
