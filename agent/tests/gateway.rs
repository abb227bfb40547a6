//! The model gateway between the real Claude Code CLI and the model: the CLI holds no model
//! key, the gateway's budget cuts a run whatever the CLI's own flags, the cut is said on the
//! PR, and the cost recorded is the gateway's sum.

mod support;

use std::time::Duration;

use cca_domain::session::SessionType;
use cca_testkit::model::Reply;
use serde_json::json;
use support::{Stand, scenario};

const START: Duration = Duration::from_secs(60);

/// Dollars per million tokens the stand charges: with the fake's 1,000 input and 100 output
/// tokens per answer, one answer costs $1.10 to the gateway, while the CLI, pricing them
/// itself, thinks it cheap (a cent), so its own `--max-budget-usd` never stops the run first.
const PRICE: f64 = 1000.0;
const PER_ANSWER: f64 = (1000.0 + 100.0) * PRICE / 1e6;
/// `MODEL_PRICES` at [`PRICE`] for every model family.
const PRICES: &str = "claude-opus=1000/1000,claude-sonnet=1000/1000,claude-haiku=1000/1000";

#[tokio::test]
async fn the_gateway_cuts_a_run_at_its_budget_and_its_sum_is_the_recorded_cost() {
    scenario(
        Stand::new(SessionType::Agent, "claude/1"),
        |mut stand| async move {
            stand.set("MODEL_PRICES", PRICES);
            stand.set("MAX_COST_PER_RUN_USD", "0.5");
            stand.set("MAX_COST_PER_SESSION_USD", "100");
            stand.model.push_all([
                Reply::bash("env > env.txt; echo one > one.txt"),
                Reply::bash("echo two > two.txt"),
                Reply::bash("echo three > three.txt"),
                Reply::text("Done."),
            ]);
            let mut agent = stand.spawn("run");
            let summary = stand.wait_comment("Run 1 failed", START).await;
            assert!(
                summary.body.contains("model gateway refused"),
                "{}",
                summary.body
            );
            assert!(summary.body.contains("$0.5000"), "{}", summary.body);
            // The model was asked once in the conversation; what followed was refused at the gateway.
            assert_eq!(stand.model.main_requests().len(), 1);
            assert_eq!(stand.model.pending(), 3);
            // The CLI's environment, which its first command wrote down, holds no model key.
            let env = std::fs::read_to_string(stand.clone_dir().join("env.txt")).unwrap();
            assert!(!env.contains("sk-ant-fake-key-for-tests"), "{env}");
            assert!(env.contains("ANTHROPIC_API_KEY=cca-gateway-"), "{env}");
            // The recorded cost is what the gateway let through, priced by its table.
            let answered = stand
                .model
                .requests()
                .iter()
                .filter(|r| r.path == "/v1/messages")
                .count();
            let s = stand.record().await;
            let cost = s.cost_usd.expect("a cost is recorded");
            assert!(
                (cost - answered as f64 * PER_ANSWER).abs() < 1e-6,
                "recorded {cost}, {answered} answers at {PER_ANSWER}"
            );
            let (code, _) = stand
                .control(
                    "POST",
                    "/prompt",
                    Some(&stand.token()),
                    json!({"prompt": "go on"}),
                )
                .await;
            assert_eq!(code, 202);
            // A new run has a new budget: its first request reaches the model again, and the next is
            // cut. (Wait for the run's summary: the status comment says "Run 2 in progress" before
            // the CLI has asked anything.)
            let second = stand.wait_comment("Run 2 failed", START).await;
            assert!(
                second.body.contains("model gateway refused"),
                "{}",
                second.body
            );
            assert_eq!(
                stand.model.main_requests().len(),
                2,
                "run 2 did not reach the model: {}\n--- agent log ---\n{}",
                second.body,
                stand.log_text()
            );
            stand.stop(&mut agent).await;
        },
    )
    .await;
}

/// Bedrock through the gateway: the agent holds the task role's credentials (the stand-in ones
/// the fake Bedrock checks the signature against), the CLI sends unsigned requests with only the
/// gateway's address, and none of the role's credentials reaches the CLI's tools. The run's
/// token limit cuts it the way the cost budget does.
#[tokio::test]
async fn bedrock_requests_are_signed_by_the_gateway_and_the_token_limit_cuts_the_run() {
    use cca_testkit::model::bedrock;
    scenario(
        Stand::new(SessionType::Agent, "claude/1"),
        |mut stand| async move {
            stand.unset("ANTHROPIC_API_KEY");
            stand.unset("ANTHROPIC_BASE_URL");
            let model_url = stand.model.url().to_owned();
            for (name, value) in [
                ("CLAUDE_CODE_USE_BEDROCK", "1"),
                ("ANTHROPIC_BEDROCK_BASE_URL", model_url.as_str()),
                ("AWS_ACCESS_KEY_ID", bedrock::ACCESS_KEY_ID),
                ("AWS_SECRET_ACCESS_KEY", bedrock::SECRET_ACCESS_KEY),
                ("AWS_SESSION_TOKEN", bedrock::SESSION_TOKEN),
                ("AWS_REGION", bedrock::REGION),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("MODEL_PRICES", PRICES),
                ("MAX_COST_PER_RUN_USD", "100"),
                ("MAX_COST_PER_SESSION_USD", "100"),
                // One answer is 1,100 tokens: the second is let through (1,100 < 1,500), the third not.
                ("MAX_TOKENS_PER_RUN", "1500"),
            ] {
                stand.set(name, value);
            }
            stand.model.push_all([
        Reply::bash(
            "env > env.txt; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' > environ.txt; true",
        ),
        Reply::write("hello.txt", "hello\n"),
        Reply::bash("echo three > three.txt"),
        Reply::text("Done."),
    ]);
            let mut agent = stand.spawn("run");
            let summary = stand.wait_comment("Run 1 failed", START).await;
            assert!(
                summary.body.contains("MAX_TOKENS_PER_RUN"),
                "{}",
                summary.body
            );
            assert!(
                summary.body.contains("model gateway refused"),
                "{}",
                summary.body
            );
            // Every request reached Bedrock signed (the fake refuses anything else with 403), by the
            // gateway: the third was refused there.
            let requests = stand.model.requests();
            let invocations: Vec<_> = requests
                .iter()
                .filter(|r| r.path.starts_with("/model/"))
                .collect();
            assert_eq!(
                invocations.len(),
                2,
                "{:#?}",
                requests.iter().map(|r| &r.path).collect::<Vec<_>>()
            );
            assert!(
                invocations.iter().all(|r| r.main),
                "a request was refused by Bedrock"
            );
            assert!(
                invocations
                    .iter()
                    .all(|r| r.path.ends_with("/invoke-with-response-stream")),
                "{invocations:#?}"
            );
            assert_eq!(stand.model.pending(), 2);
            // The CLI's tools saw no AWS credential of the agent's.
            for file in ["env.txt", "environ.txt"] {
                let text =
                    std::fs::read_to_string(stand.clone_dir().join(file)).unwrap_or_default();
                assert!(
                    text.contains("PATH="),
                    "{file} holds no environment: {text}"
                );
                for secret in [
                    bedrock::ACCESS_KEY_ID,
                    bedrock::SECRET_ACCESS_KEY,
                    bedrock::SESSION_TOKEN,
                ] {
                    assert!(!text.contains(secret), "{file} holds {secret}");
                }
            }
            let env = std::fs::read_to_string(stand.clone_dir().join("env.txt")).unwrap();
            assert!(env.contains("CLAUDE_CODE_SKIP_BEDROCK_AUTH=1"), "{env}");
            // The work done before the cut is pushed; the cost is the gateway's sum of what Bedrock
            // answered, priced by the model the path names.
            assert!(
                stand
                    .github
                    .file_at(support::REPO, "claude/1", "hello.txt")
                    .is_some()
            );
            let cost = stand.record().await.cost_usd.expect("a cost is recorded");
            assert!((cost - 2.0 * PER_ANSWER).abs() < 1e-6, "recorded {cost}");
            stand.stop(&mut agent).await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_request_without_the_gateway_token_is_refused() {
    let gateway = cca_agent::gateway::Gateway::start(
        "http://127.0.0.1:9",
        cca_agent::gateway::Credential::ApiKey("sk-real".to_owned().into()),
        cca_agent::gateway::Prices::default(),
        cca_agent::gateway::Ledger::new(1.0, 0.0),
    )
    .await
    .unwrap();
    let base = &gateway.cli_env()[0].1;
    for key in [None, Some("sk-real"), Some("cca-gateway-guess")] {
        let mut req = reqwest::Client::new()
            .post(format!("{base}/v1/messages"))
            .json(&json!({"model": "claude-opus-5", "messages": []}));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{key:?}");
    }
}

/// In Bedrock mode the token is the path's first segment: a wrong or missing one, a token sent
/// as a key instead, Bedrock's other APIs and paths that would resolve elsewhere are all
/// refused before anything is signed or sent.
#[tokio::test]
async fn bedrock_mode_refuses_what_is_not_a_plain_model_invocation_with_its_token() {
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    let model = cca_testkit::model::FakeModel::start().await;
    let provider = SharedCredentialsProvider::new(Credentials::new(
        "AKIAEXAMPLE",
        "secret",
        None,
        None,
        "test",
    ));
    let gateway = cca_agent::gateway::Gateway::start(
        model.url(),
        cca_agent::gateway::Credential::Bedrock(cca_agent::gateway::Bedrock::new(
            "us-east-1".into(),
            provider,
        )),
        cca_agent::gateway::Prices::default(),
        cca_agent::gateway::Ledger::new(1.0, 0.0),
    )
    .await
    .unwrap();
    let env = gateway.cli_env();
    let base = &env
        .iter()
        .find(|(k, _)| k == "ANTHROPIC_BEDROCK_BASE_URL")
        .unwrap()
        .1;
    let root = base.rsplit_once('/').unwrap().0;
    let invoke = "/model/us.anthropic.claude-haiku-4-5/invoke";
    let cases = [
        (format!("{root}{invoke}"), None, 401),
        (format!("{root}/cca-gateway-guess{invoke}"), None, 401),
        (format!("{root}{invoke}"), Some(gateway.token()), 401),
        (format!("{base}/inference-profiles"), None, 403),
        (
            format!(
                "{base}/model/us.anthropic.claude-haiku-4-5/../us.anthropic.claude-opus-5/invoke"
            ),
            None,
            400,
        ),
        (
            format!("{base}/model/us.anthropic.claude-haiku-4-5%2F..%2Fx/invoke"),
            None,
            400,
        ),
    ];
    for (url, key, want) in cases {
        let status = raw_post(&url, key).await;
        assert_eq!(status, want, "{url}");
    }
    assert!(
        model.requests().is_empty(),
        "a refused request reached Bedrock: {:?}",
        model.requests()
    );
}

/// POSTs `{}` to `url` with its path sent as written (an HTTP client would resolve dot
/// segments first, as code run by the CLI need not); the answer's status.
async fn raw_post(url: &str, key: Option<&str>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let key = key
        .map(|k| format!("x-api-key: {k}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\ncontent-type: application/json\r\n{key}content-length: 2\r\nconnection: close\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let head = String::from_utf8_lossy(&answer);
    head.split(' ').nth(1).unwrap().parse().unwrap()
}
