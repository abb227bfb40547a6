//! The two ways the binary runs, as a real process: `cca-webhook serve --listen` over HTTP, and
//! Lambda mode driven through a local Lambda Runtime API (the protocol the Lambda service speaks
//! to the function: `GET …/invocation/next`, `POST …/invocation/<id>/response`), with API
//! Gateway v2 / Function URL and ALB events. Both reach the same router.

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
        webhook(&["serve", "--listen", &listen], &[])
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

    let lambda_env = [
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
    ];
    let _function = Running(webhook(&[], &lambda_env).spawn().expect("spawn"));
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
