//! The scripted model server, first over plain HTTP and then driving the real Claude Code CLI
//! (skipped with a message when `CCA_CLAUDE_CLI` is unset; `scripts/test.sh` installs and sets
//! it).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cca_testkit::model::{self, FakeModel, Reply, Usage};
use serde_json::{Value, json};
use tempfile::TempDir;

/// Longest a single CLI run may take before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(120);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// A request body shaped like the CLI's main-conversation calls.
fn conversation_body(stream: bool, prompt: &str) -> Value {
    json!({
        "model": "claude-test",
        "max_tokens": 1024,
        "stream": stream,
        "system": [{ "type": "text", "text": "You are a test." }],
        "tools": [{ "name": "Write", "input_schema": { "type": "object" } }],
        "messages": [
            { "role": "user", "content": [{ "type": "text", "text": prompt }] },
            { "role": "system", "content": "# Environment\n - Primary working directory: /w\n" },
        ],
    })
}

/// The `data:` payloads of an event stream, with the name of each event.
fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|chunk| !chunk.trim().is_empty())
        .map(|chunk| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in chunk.lines() {
                if let Some(rest) = line.strip_prefix("event: ") {
                    name = rest.to_owned();
                } else if let Some(rest) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(rest).expect("event data is JSON");
                }
            }
            (name, data)
        })
        .collect()
}

#[tokio::test]
async fn fake_model_speaks_the_messages_api() {
    let model = FakeModel::start().await;
    model.set_usage(Usage {
        input_tokens: 42,
        output_tokens: 7,
    });
    model.push_all([Reply::write("hello.txt", "hi\n"), Reply::Error(529)]);
    let http = client();

    let head = http.head(model.url()).send().await.expect("HEAD /");
    assert_eq!(head.status(), 200);

    // An auxiliary call (no tools) never takes a scripted reply.
    let aux = http
        .post(format!("{}/v1/messages", model.url()))
        .json(&json!({ "model": "small", "max_tokens": 1, "messages": [] }))
        .send()
        .await
        .expect("auxiliary call");
    assert_eq!(aux.status(), 200);
    let aux: Value = aux.json().await.expect("JSON message");
    assert_eq!(aux["content"][0]["text"], model::AUXILIARY_TEXT);
    assert_eq!(model.pending(), 2);

    let streamed = http
        .post(format!("{}/v1/messages?beta=true", model.url()))
        .json(&conversation_body(true, "create hello.txt"))
        .send()
        .await
        .expect("streamed call");
    assert_eq!(streamed.status(), 200);
    assert!(
        streamed.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = sse_events(&streamed.text().await.expect("event stream"));
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    for (name, data) in &events {
        assert_eq!(&data["type"], name);
    }
    assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 42);
    let start = &events[1].1["content_block"];
    assert_eq!(start["type"], "tool_use");
    assert_eq!(start["name"], "Write");
    let partial: String = events[2..4]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    let input: Value = serde_json::from_str(&partial).expect("tool input is JSON");
    assert_eq!(
        input,
        json!({ "file_path": "/w/hello.txt", "content": "hi\n" })
    );
    assert_eq!(events[5].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(events[5].1["usage"]["output_tokens"], 7);

    let failed = http
        .post(format!("{}/v1/messages", model.url()))
        .json(&conversation_body(true, "again"))
        .send()
        .await
        .expect("failing call");
    assert_eq!(failed.status(), 529);
    let error: Value = failed.json().await.expect("error body");
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "overloaded_error");

    // An empty queue ends the turn with text, as JSON when not streamed.
    let plain: Value = http
        .post(format!("{}/v1/messages", model.url()))
        .json(&conversation_body(false, "and again"))
        .send()
        .await
        .expect("plain call")
        .json()
        .await
        .expect("JSON message");
    assert_eq!(plain["type"], "message");
    assert_eq!(plain["stop_reason"], "end_turn");
    assert_eq!(plain["content"][0]["text"], model::DEFAULT_TEXT);
    assert_eq!(plain["usage"]["output_tokens"], 7);

    let counted: Value = http
        .post(format!("{}/v1/messages/count_tokens", model.url()))
        .json(&json!({ "model": "m", "messages": [] }))
        .send()
        .await
        .expect("count_tokens")
        .json()
        .await
        .expect("JSON count");
    assert_eq!(counted["input_tokens"], 42);

    model.fail_always(500);
    let down = http
        .post(format!("{}/v1/messages", model.url()))
        .json(&json!({ "model": "small", "max_tokens": 1, "messages": [] }))
        .send()
        .await
        .expect("call while failing");
    assert_eq!(down.status(), 500);
    assert!(down.headers().contains_key("request-id"));

    let requests = model.requests();
    assert_eq!(requests.len(), 7);
    assert_eq!(requests[2].query.as_deref(), Some("beta=true"));
    assert_eq!(model.main_requests().len(), 3);
    assert_eq!(model.conversation_texts()[0], "and again");
    assert_eq!(model.pending(), 0);
}

/// A finished CLI run.
struct Run {
    status: ExitStatus,
    events: Vec<Value>,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn result(&self) -> &Value {
        let last = self.events.last().expect("the CLI printed stream-json");
        assert_eq!(last["type"], "result", "last event is the result: {last}");
        last
    }

    fn describe(&self) -> String {
        let events: Vec<String> = self.events.iter().map(Value::to_string).collect();
        format!(
            "status {:?} after {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.elapsed,
            events.join("\n"),
            self.stderr
        )
    }
}

/// A fresh home and working directory for CLI runs.
struct Sandbox {
    home: TempDir,
    work: TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Sandbox {
            home: tempfile::tempdir().expect("home dir"),
            work: tempfile::tempdir().expect("working dir"),
        }
    }

    fn work(&self) -> PathBuf {
        // The CLI reports canonical paths, so compare against the canonical one.
        self.work.path().canonicalize().expect("canonical work dir")
    }
}

/// `claude -p <prompt> --output-format stream-json … --max-turns 5 <extra>` in the sandbox
/// against `model`, with standard input from `/dev/null`.
fn claude_command(
    cli: &Path,
    model: &FakeModel,
    sandbox: &Sandbox,
    prompt: &str,
    extra: &[&str],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(cli);
    command
        .args([
            "-p",
            prompt,
            "--output-format",
            "stream-json",
            "--verbose",
            "--dangerously-skip-permissions",
            "--max-turns",
            "5",
        ])
        .args(extra)
        .current_dir(sandbox.work())
        .envs(model::claude_env(model.url(), sandbox.home.path()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Waits for a started CLI, bounded by [`RUN_LIMIT`].
async fn finish(child: tokio::process::Child, started: Instant, what: &str) -> Run {
    let output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .expect("the CLI finished in time")
        .expect("the CLI's output");
    let run = Run {
        status: output.status,
        events: model::stream_json_events(&output.stdout),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    };
    eprintln!("claude {what}: {}", run.describe());
    run
}

/// Runs the CLI to its end (see [`claude_command`]).
async fn run_claude(
    cli: &Path,
    model: &FakeModel,
    sandbox: &Sandbox,
    prompt: &str,
    extra: &[&str],
) -> Run {
    let started = Instant::now();
    let child = claude_command(cli, model, sandbox, prompt, extra)
        .spawn()
        .expect("start the Claude CLI");
    finish(child, started, &format!("{prompt:?} {extra:?}")).await
}

fn cli_or_skip(test: &str) -> Option<PathBuf> {
    let cli = model::claude_cli();
    if cli.is_none() {
        cca_testkit::stand::skip(format_args!(
            "{test}: {} is unset (scripts/test.sh installs the Claude CLI)",
            model::CLAUDE_CLI_VAR
        ));
    }
    cli
}

/// A first run that writes `hello.txt` through the `Write` tool.
async fn write_hello(cli: &Path, model: &FakeModel, sandbox: &Sandbox) -> Run {
    model.push_all([
        Reply::write("hello.txt", "Hello, world!\n"),
        Reply::text("Created hello.txt."),
    ]);
    let run = run_claude(cli, model, sandbox, "create hello.txt", &[]).await;
    assert!(run.status.success(), "{}", run.describe());
    run
}

#[tokio::test]
async fn cli_writes_a_file_and_reports_the_result() {
    let Some(cli) = cli_or_skip("cli_writes_a_file_and_reports_the_result") else {
        return;
    };
    let model = FakeModel::start().await;
    let sandbox = Sandbox::new();
    let run = write_hello(&cli, &model, &sandbox).await;

    let written = std::fs::read_to_string(sandbox.work().join("hello.txt")).expect("hello.txt");
    assert_eq!(written, "Hello, world!\n");

    let init = &run.events[0];
    assert_eq!(init["type"], "system", "{}", run.describe());
    assert_eq!(init["subtype"], "init");
    let session_id = init["session_id"].as_str().expect("session id");
    assert_eq!(init["cwd"], sandbox.work().display().to_string());

    let tool_use = run
        .events
        .iter()
        .filter(|e| e["type"] == "assistant")
        .flat_map(|e| {
            e["message"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|b| b["type"] == "tool_use")
        .expect("an assistant tool_use event");
    assert_eq!(tool_use["name"], "Write");
    let tool_result = run
        .events
        .iter()
        .filter(|e| e["type"] == "user")
        .flat_map(|e| {
            e["message"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|b| b["type"] == "tool_result")
        .expect("a user tool_result event");
    assert_eq!(tool_result["tool_use_id"], tool_use["id"]);
    assert_ne!(tool_result["is_error"], true, "{tool_result}");

    let result = run.result();
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["is_error"], false);
    assert_eq!(result["session_id"], session_id);
    assert_eq!(result["result"], "Created hello.txt.");
    assert_eq!(result["num_turns"], 2);
    assert!(result["total_cost_usd"].as_f64().expect("cost") > 0.0);

    // The tool result went back to the model, and both scripted replies were used.
    let main = model.main_requests();
    assert_eq!(main.len(), 2, "{:?}", model.requests());
    assert!(main[0].texts().iter().any(|t| t == "create hello.txt"));
    assert_eq!(main[1].tool_results().len(), 1);
    assert_eq!(model.pending(), 0);
}

#[tokio::test]
async fn cli_resume_sends_the_earlier_conversation() {
    let Some(cli) = cli_or_skip("cli_resume_sends_the_earlier_conversation") else {
        return;
    };
    let model = FakeModel::start().await;
    let sandbox = Sandbox::new();
    let first = write_hello(&cli, &model, &sandbox).await;
    let session_id = first.result()["session_id"]
        .as_str()
        .expect("session id")
        .to_owned();
    let before = model.main_requests().len();

    model.push(Reply::text("Now it says goodbye."));
    let second = run_claude(
        &cli,
        &model,
        &sandbox,
        "now say goodbye",
        &["--resume", &session_id],
    )
    .await;
    assert!(second.status.success(), "{}", second.describe());
    let result = second.result();
    assert_eq!(result["is_error"], false);
    assert_eq!(result["result"], "Now it says goodbye.");
    assert_eq!(result["session_id"], session_id);

    let followups = &model.main_requests()[before..];
    assert_eq!(followups.len(), 1, "{followups:?}");
    let texts = model.conversation_texts();
    let position = |needle: &str| {
        texts
            .iter()
            .position(|t| t == needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from the resumed conversation {texts:?}"))
    };
    assert!(position("create hello.txt") < position("Created hello.txt."));
    assert!(position("Created hello.txt.") < position("now say goodbye"));
    let request = &followups[0];
    assert_eq!(request.tool_uses().len(), 1);
    assert_eq!(request.tool_uses()[0]["name"], "Write");
    assert_eq!(request.tool_results().len(), 1);
}

#[tokio::test]
async fn cli_fails_fast_when_the_model_server_fails() {
    let Some(cli) = cli_or_skip("cli_fails_fast_when_the_model_server_fails") else {
        return;
    };
    let model = FakeModel::start().await;
    model.fail_always(500);
    let sandbox = Sandbox::new();
    let run = run_claude(&cli, &model, &sandbox, "create hello.txt", &[]).await;
    assert_eq!(run.status.code(), Some(1), "{}", run.describe());
    assert!(run.elapsed < Duration::from_secs(60), "{}", run.describe());
    let result = run.result();
    assert_eq!(result["is_error"], true);
    assert_eq!(result["api_error_status"], 500);
    assert!(
        result["result"].as_str().unwrap_or("").contains("500"),
        "{result}"
    );
    // One call and one retry (CLAUDE_CODE_MAX_RETRIES=1).
    assert_eq!(model.main_requests().len(), 2, "{:?}", model.requests());
}

#[tokio::test]
async fn cli_reports_a_scripted_error_after_its_retry() {
    let Some(cli) = cli_or_skip("cli_reports_a_scripted_error_after_its_retry") else {
        return;
    };
    let model = FakeModel::start().await;
    // The CLI retries once, so the error is queued for the call and its retry.
    model.push_all([Reply::Error(500), Reply::Error(500)]);
    let sandbox = Sandbox::new();
    let run = run_claude(&cli, &model, &sandbox, "create hello.txt", &[]).await;
    assert_eq!(run.status.code(), Some(1), "{}", run.describe());
    assert_eq!(run.result()["is_error"], true);
    assert_eq!(model.pending(), 0);
}

#[tokio::test]
async fn cli_stops_at_max_turns() {
    let Some(cli) = cli_or_skip("cli_stops_at_max_turns") else {
        return;
    };
    let model = FakeModel::start().await;
    model.push_all([
        Reply::bash("echo one > one.txt"),
        Reply::bash("echo two > two.txt"),
        Reply::bash("echo three > three.txt"),
    ]);
    let sandbox = Sandbox::new();
    // A later `--max-turns` overrides the default of five.
    let run = run_claude(&cli, &model, &sandbox, "count", &["--max-turns", "2"]).await;
    assert_eq!(run.status.code(), Some(1), "{}", run.describe());
    let result = run.result();
    assert_eq!(result["subtype"], "error_max_turns");
    assert_eq!(result["is_error"], true);
    assert_eq!(result["terminal_reason"], "max_turns");
    assert!(sandbox.work().join("two.txt").exists());
    assert!(!sandbox.work().join("three.txt").exists());
    assert_eq!(model.main_requests().len(), 2);
    assert_eq!(model.pending(), 1);
}

#[tokio::test]
async fn cli_ends_on_sigterm_while_the_model_is_slow() {
    let Some(cli) = cli_or_skip("cli_ends_on_sigterm_while_the_model_is_slow") else {
        return;
    };
    let model = FakeModel::start().await;
    model.push(Reply::text("too late").delayed(Duration::from_secs(60)));
    let sandbox = Sandbox::new();
    let started = Instant::now();
    let child = claude_command(&cli, &model, &sandbox, "take your time", &[])
        .spawn()
        .expect("start the Claude CLI");
    assert!(
        model
            .wait_for_main_requests(1, Duration::from_secs(30))
            .await,
        "the CLI called the model"
    );
    let pid = child.id().expect("the CLI is running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal the CLI");
    let run = finish(child, started, "stopped by SIGTERM").await;
    assert!(run.elapsed < Duration::from_secs(30), "{}", run.describe());
    // It exits with 128 + SIGTERM after its init line, and prints no result.
    assert_eq!(run.status.code(), Some(143), "{}", run.describe());
    assert!(run.events.iter().all(|e| e["type"] != "result"));
}
