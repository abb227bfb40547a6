//! Scripted Anthropic Messages API server for driving the real Claude Code CLI offline.
//!
//! [`FakeModel`] listens on `127.0.0.1` and answers the CLI the way the Messages API does:
//! `POST /v1/messages` (the CLI adds `?beta=true`) as Server-Sent Events when the request asks for
//! `stream: true` and as plain JSON otherwise, `POST /v1/messages/count_tokens`, and `200` to any
//! `HEAD` or `GET` (the CLI probes `HEAD /api/hello` unless non-essential traffic is disabled).
//! Tests queue [`Reply`]s; each *main-conversation* request takes the next one, in order, and gets
//! a short `end_turn` text once the queue is empty, so the CLI always finishes. Every request is
//! recorded for assertions ([`FakeModel::requests`], [`FakeModel::main_requests`],
//! [`FakeModel::conversation_texts`]). [`claude_cli`] and [`claude_env`] run the CLI against it.
//!
//! # What the CLI sends (observed with `@anthropic-ai/claude-code` 2.1.330)
//!
//! With [`claude_env`], a `claude -p` run makes exactly one HTTP request per model turn, all
//! `POST /v1/messages?beta=true` with `stream: true`, headers `x-api-key`, `anthropic-version:
//! 2023-06-01`, `anthropic-beta: …`, `x-claude-code-session-id: <session id>`, and a body with
//! `model` (`claude-opus-5-5` by default), `messages`, `system`, `tools` (the built-in tools the
//! model may call directly: `Agent`, `Bash`, `Edit`, `Read`, `Write`, `ToolSearch`, …; the others
//! are deferred behind `ToolSearch`), `metadata`, `max_tokens` (128000), `thinking`,
//! `context_management`, `output_config` and `stream`. No title, topic or quota request was seen
//! in `-p` mode; without `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC` the CLI only adds a
//! `HEAD /api/hello`. A request counts as main-conversation when it carries a non-empty `tools`
//! array; anything else (`max_tokens: 1` quota probes, small-model title requests, if a CLI
//! version sends them) gets a harmless default text and never takes a scripted reply.
//!
//! `messages` starts with a user message holding a `<system-reminder>` text block and then the
//! prompt text, followed by a message with role `system` and string content (`# Environment`,
//! with `Primary working directory: <cwd>`, which [`Reply::Write`] uses to make relative paths
//! absolute). Each tool round trip appends an assistant `tool_use` and a user `tool_result`. A
//! follow-up run with `--resume <session id>` (same working directory and `CLAUDE_CONFIG_DIR`)
//! sends the earlier turns before the new prompt. A 500 answer is retried
//! `CLAUDE_CODE_MAX_RETRIES` times after about half a second, and the retry takes the next
//! scripted reply: queue [`Reply::Error`] once more than the retries, or use
//! [`FakeModel::fail_always`].
//!
//! A run takes about 0.8 s here (the native executable starts in about 0.15 s); one that fails
//! with 500 about 1.5 s.
//!
//! # The CLI's `--output-format stream-json --verbose` events
//!
//! One JSON object a line on stdout; every line has `type`, `session_id` and `uuid`, and key
//! order varies (the result line does not start with `type`), so parse, never match text.
//! Observed shapes, values shortened, `…` standing for long lists or further keys:
//!
//! System init, always the first line:
//! ```json
//! {"type":"system","subtype":"init","cwd":"/work/dir","session_id":"3017396f-…","uuid":"…",
//!  "tools":["Task","Bash",…,"Write"],"mcp_servers":[],"model":"claude-opus-5-5",
//!  "permissionMode":"bypassPermissions","slash_commands":[…],"terminal_slash_commands":[…],
//!  "apiKeySource":"ANTHROPIC_API_KEY","claude_code_version":"2.1.330","output_style":"default",
//!  "agents":[…],"skills":[…],"plugins":[{"name":…,"path":…,"source":…}],"capabilities":[…],
//!  "analytics_disabled":true,"product_feedback_disabled":true,"served_by_anthropic":false,
//!  "memory_paths":{"auto":"…"},"original_cwd":"/work/dir","additional_directories":[],
//!  "messaging_socket_path":"/tmp/cc-socks/N.sock","fast_mode_state":"off",
//!  "fast_mode_disabled_reason":"…","per_turn_effort_active":true,"ultrathink_available":false,
//!  "ultrathink_typed_raises":false,"view_mode":"default"}
//! ```
//!
//! Assistant text (`stop_reason` is still `null`, and `usage` is the one of `message_start`):
//! ```json
//! {"type":"assistant","message":{"id":"msg_fake_2","type":"message","role":"assistant",
//!  "model":"claude-opus-5-5","content":[{"type":"text","text":"Created hello.txt."}],
//!  "stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1000,"output_tokens":1,
//!  "cache_creation_input_tokens":0,"cache_read_input_tokens":0,"service_tier":"standard"},
//!  "context_management":null},"parent_tool_use_id":null,"session_id":"…","uuid":"…",
//!  "timestamp":"2026-11-21T11:55:26.541Z"}
//! ```
//!
//! Assistant tool use: the same envelope with
//! `"content":[{"type":"tool_use","id":"toolu_fake_1","name":"Write",
//! "input":{"file_path":"/work/dir/hello.txt","content":"Hello, world!\n"}}]`
//! (`Bash`: `"input":{"command":"echo hi > b.txt && ls"}`).
//!
//! User tool result, after the CLI ran the tool:
//! ```json
//! {"type":"user","message":{"role":"user","content":[{"type":"tool_result",
//!  "tool_use_id":"toolu_fake_1","content":"File created successfully at: /work/dir/hello.txt …"}]},
//!  "parent_tool_use_id":null,"session_id":"…","uuid":"…","timestamp":"…",
//!  "tool_use_result":{"type":"create","filePath":"/work/dir/hello.txt","content":"…",
//!  "originalFile":null,"structuredPatch":[],"userModified":false},
//!  "tool_result_meta":[{"id":"toolu_fake_1","permission_decision":{"decision":"accept",
//!  "source":"config","reason_type":"mode"}}]}
//! ```
//! `is_error` in the `tool_result` block is absent (Write), `false` (Bash
//! `"content":"b.txt"`, `"tool_use_result":{"stdout":"b.txt","stderr":"","interrupted":false,
//! "isImage":false,"noOutputExpected":false}`) or `true` when the tool failed (Bash
//! `"content":"Exit code 3"`, `"tool_use_result":"Error: Exit code 3"`; unknown tool
//! `"content":"<tool_use_error>Error: No such tool available: Nope</tool_use_error>"`). So
//! `tool_use_result` is an object or a string.
//!
//! A failed model call about to be retried:
//! ```json
//! {"type":"system","subtype":"api_retry","attempt":1,"max_retries":1,"retry_delay_ms":516,
//!  "error_status":500,"error":"server_error","session_id":"…","uuid":"…"}
//! ```
//!
//! Result on success, always the last line (exit status 0):
//! ```json
//! {"type":"result","subtype":"success","is_error":false,"result":"Created hello.txt.",
//!  "num_turns":2,"total_cost_usd":0.012,"duration_ms":335,"duration_api_ms":97,
//!  "stop_reason":"end_turn","terminal_reason":"completed","api_error_status":null,
//!  "session_id":"…","uuid":"…","usage":{"input_tokens":2000,"output_tokens":200,
//!  "cache_creation_input_tokens":0,"cache_read_input_tokens":0,…},
//!  "modelUsage":{"claude-opus-5-5":{"inputTokens":2000,"outputTokens":200,"costUSD":0.012,…}},
//!  "model_usage_since_last_result":{…},"permission_denials":[],"ttft_ms":228,
//!  "queued_turn_count":0,"result_index":0,"safety_stops":0,"subagent_stats":{…},…}
//! ```
//! After `--resume`, `num_turns`, `usage` and `duration_ms` count this run only but
//! `total_cost_usd` and `modelUsage` are for the whole session so far (0.018 after a resumed
//! one-turn run following a two-turn one, with the default [`Usage`]).
//!
//! Result when the model API failed (exit status 1; `subtype` stays `"success"`, so read
//! `is_error`), after a synthetic assistant line with `"model":"<synthetic>"`,
//! `"error":"server_error"`, `"is_api_error_message":true`, `"api_error_status":500`,
//! `"api_error_type":"api_error"` and the error text as its content:
//! ```json
//! {"type":"result","subtype":"success","is_error":true,"api_error_status":500,
//!  "api_error_type":"api_error","result":"API Error: 500 Internal server error. …",
//!  "terminal_reason":"api_error","stop_reason":"stop_sequence","num_turns":1,
//!  "total_cost_usd":0,"duration_ms":880,"duration_api_ms":0,"session_id":"…",…}
//! ```
//!
//! Result when `--max-turns` was reached (exit status 1; no `result` key):
//! ```json
//! {"type":"result","subtype":"error_max_turns","is_error":true,
//!  "errors":["Reached maximum number of turns (2)"],"terminal_reason":"max_turns",
//!  "stop_reason":"tool_use","num_turns":3,"total_cost_usd":0.012,…}
//! ```
//!
//! On SIGTERM the CLI exits at once with status 143, printing no result line.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State as Shared;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub mod bedrock;

/// Environment variable naming the Claude Code executable for tests; `scripts/test.sh` sets it.
pub const CLAUDE_CLI_VAR: &str = "CCA_CLAUDE_CLI";

/// Text of the answer when no scripted reply is queued: ends the turn.
pub const DEFAULT_TEXT: &str = "Done.";

/// Text of the answer to auxiliary (non-conversation) requests.
pub const AUXILIARY_TEXT: &str = "OK";

/// One scripted answer to a main-conversation request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Assistant text that ends the turn (`stop_reason: end_turn`).
    Text(String),
    /// A `tool_use` of the CLI's `Write` tool (`stop_reason: tool_use`); the CLI writes the file
    /// and sends the `tool_result` in its next request, which takes the next reply. A relative
    /// `file_path` is made absolute against the CLI's working directory, as the tool requires.
    Write {
        /// Path of the file to write.
        file_path: String,
        /// Whole content of the file.
        content: String,
    },
    /// A `tool_use` of any tool (`stop_reason: tool_use`), e.g. `Bash` with `{"command": …}`.
    Tool {
        /// Tool name as the CLI lists it in the request's `tools`.
        name: String,
        /// The tool's input object.
        input: Value,
    },
    /// An HTTP error with this status and an Anthropic-style JSON error body.
    Error(u16),
    /// The inner reply, after waiting this long (the request is recorded before the wait).
    Delay(Duration, Box<Reply>),
}

impl Reply {
    /// [`Reply::Text`].
    pub fn text(text: impl Into<String>) -> Self {
        Reply::Text(text.into())
    }

    /// [`Reply::Write`].
    pub fn write(file_path: impl Into<String>, content: impl Into<String>) -> Self {
        Reply::Write {
            file_path: file_path.into(),
            content: content.into(),
        }
    }

    /// [`Reply::Tool`].
    pub fn tool(name: impl Into<String>, input: Value) -> Self {
        Reply::Tool {
            name: name.into(),
            input,
        }
    }

    /// A `Bash` tool use running `command`.
    pub fn bash(command: impl Into<String>) -> Self {
        Reply::tool("Bash", json!({ "command": command.into() }))
    }

    /// This reply, answered only after `delay`.
    #[must_use]
    pub fn delayed(self, delay: Duration) -> Self {
        Reply::Delay(delay, Box::new(self))
    }
}

/// Token counts reported in every successful answer, so the CLI computes cost and usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// `usage.input_tokens` of `message_start` (or of the JSON answer).
    pub input_tokens: u64,
    /// `usage.output_tokens` of `message_delta` (or of the JSON answer).
    pub output_tokens: u64,
}

impl Default for Usage {
    fn default() -> Self {
        Usage {
            input_tokens: 1000,
            output_tokens: 100,
        }
    }
}

/// One request as the fake received it, whatever it answered.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path without the query, e.g. `/v1/messages`.
    pub path: String,
    /// Raw query string, e.g. `beta=true`.
    pub query: Option<String>,
    /// Headers, names in lower case (a repeated header keeps its last value).
    pub headers: BTreeMap<String, String>,
    /// JSON body; `Null` when empty, a string when it was not JSON.
    pub body: Value,
    /// Whether it was a main-conversation request (and so took a scripted reply if one was
    /// queued).
    pub main: bool,
}

impl ModelRequest {
    /// Whether it was a main-conversation request.
    pub fn is_main(&self) -> bool {
        self.main
    }

    /// The requested `model`, if any.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// Whether the body asked for a streamed answer.
    pub fn is_stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }

    /// The body's `messages`, oldest first.
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// Names of the tools the request offered the model.
    pub fn tool_names(&self) -> Vec<String> {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    }

    /// Every text of the conversation in order: text blocks of both roles, and the text of
    /// `tool_result` blocks.
    pub fn texts(&self) -> Vec<String> {
        let mut texts = Vec::new();
        for message in self.messages() {
            collect_texts(message.get("content").unwrap_or(&Value::Null), &mut texts);
        }
        texts
    }

    /// The `tool_result` blocks of the conversation, oldest first.
    pub fn tool_results(&self) -> Vec<Value> {
        self.blocks_of_type("tool_result")
    }

    /// The `tool_use` blocks the assistant sent earlier in the conversation, oldest first.
    pub fn tool_uses(&self) -> Vec<Value> {
        self.blocks_of_type("tool_use")
    }

    fn blocks_of_type(&self, kind: &str) -> Vec<Value> {
        self.messages()
            .iter()
            .filter_map(|m| m.get("content").and_then(Value::as_array))
            .flatten()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some(kind))
            .cloned()
            .collect()
    }
}

fn collect_texts(content: &Value, texts: &mut Vec<String>) {
    match content {
        Value::String(text) => texts.push(text.clone()),
        Value::Array(blocks) => {
            for block in blocks {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(text) = block.get("text").and_then(Value::as_str) {
                            texts.push(text.to_owned());
                        }
                    }
                    Some("tool_result") => {
                        collect_texts(block.get("content").unwrap_or(&Value::Null), texts);
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Handle on a running scripted model server; clones share the same state.
#[derive(Debug, Clone)]
pub struct FakeModel {
    url: String,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    replies: VecDeque<Reply>,
    requests: Vec<ModelRequest>,
    fail_always: Option<u16>,
    usage: Usage,
    last_id: u64,
}

impl FakeModel {
    /// Binds `127.0.0.1` on a free port and serves until the runtime ends.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port for the fake model");
        let addr = listener
            .local_addr()
            .expect("local address of the fake model");
        let fake = FakeModel {
            url: format!("http://{addr}"),
            state: Arc::new(Mutex::new(State::default())),
        };
        let app = Router::new()
            .fallback(serve_request)
            .with_state(fake.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "fake model stopped");
            }
        });
        fake
    }

    /// Base URL for `ANTHROPIC_BASE_URL`, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a reply for the next main-conversation request not yet scripted.
    pub fn push(&self, reply: Reply) {
        self.state().replies.push_back(reply);
    }

    /// Queues several replies, in order.
    pub fn push_all(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state().replies.extend(replies);
    }

    /// How many queued replies no request has taken yet.
    pub fn pending(&self) -> usize {
        self.state().replies.len()
    }

    /// Answers every `/v1/…` request with `status` and an error body from now on, without taking
    /// queued replies; `HEAD` and `GET` still answer 200.
    pub fn fail_always(&self, status: u16) {
        self.state().fail_always = Some(status);
    }

    /// Undoes [`FakeModel::fail_always`].
    pub fn stop_failing(&self) {
        self.state().fail_always = None;
    }

    /// Sets the token counts reported in later answers.
    pub fn set_usage(&self, usage: Usage) {
        self.state().usage = usage;
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<ModelRequest> {
        self.state().requests.clone()
    }

    /// The main-conversation requests received so far, oldest first.
    pub fn main_requests(&self) -> Vec<ModelRequest> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.main)
            .cloned()
            .collect()
    }

    /// The conversation as the latest main-conversation request sent it: every text, oldest
    /// first (see [`ModelRequest::texts`]); empty before any such request.
    pub fn conversation_texts(&self) -> Vec<String> {
        self.state()
            .requests
            .iter()
            .rev()
            .find(|r| r.main)
            .map(ModelRequest::texts)
            .unwrap_or_default()
    }

    /// Waits until at least `count` main-conversation requests have arrived (they are recorded
    /// before any [`Reply::Delay`]); false when `timeout` passed first.
    pub async fn wait_for_main_requests(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.state().requests.iter().filter(|r| r.main).count() >= count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Whether a request belongs to the main conversation: a Messages call offering tools.
fn is_main(path: &str, body: &Value) -> bool {
    (path == "/v1/messages" || bedrock::invocation(path).is_some())
        && body
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|tools| !tools.is_empty())
}

async fn serve_request(
    Shared(fake): Shared<FakeModel>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = body;
    let body = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()))
    };
    let path = uri.path().trim_end_matches('/').to_owned();
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let is_post = method == Method::POST;
    let headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let invocation = bedrock::invocation(&path);
    // Bedrock refuses what is not signed by the stand-in credentials before anything else.
    let refused = invocation.as_ref().and_then(|_| {
        bedrock::check_signature(method.as_str(), uri.path(), uri.query(), &headers, &raw).err()
    });
    let main = is_post && refused.is_none() && is_main(&path, &body);
    let (action, usage, id) = {
        let mut state = fake.state();
        state.requests.push(ModelRequest {
            method: method.as_str().to_owned(),
            path: path.clone(),
            query: uri.query().map(str::to_owned),
            headers,
            body: body.clone(),
            main,
        });
        state.last_id += 1;
        if let Some(message) = refused {
            tracing::warn!(%message, "fake Bedrock refused an unsigned request");
            let mut response = json_response(StatusCode::FORBIDDEN, &bedrock::error_body(&message));
            response.headers_mut().insert(
                "x-amzn-errortype",
                HeaderValue::from_static("UnrecognizedClientException"),
            );
            return response;
        }
        let action = if !is_post {
            None
        } else if let Some(status) = state
            .fail_always
            .filter(|_| path.starts_with("/v1/") || invocation.is_some())
        {
            Some(Reply::Error(status))
        } else if main {
            Some(
                state
                    .replies
                    .pop_front()
                    .unwrap_or_else(|| Reply::text(DEFAULT_TEXT)),
            )
        } else {
            Some(Reply::text(AUXILIARY_TEXT))
        };
        (action, state.usage, state.last_id)
    };
    let Some(mut action) = action else {
        return if method == Method::HEAD || method == Method::GET {
            json_response(StatusCode::OK, &json!({}))
        } else {
            api_error(StatusCode::METHOD_NOT_ALLOWED, id)
        };
    };
    while let Reply::Delay(delay, inner) = action {
        tokio::time::sleep(delay).await;
        action = *inner;
    }
    if let Reply::Error(status) = action {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return api_error(status, id);
    }
    if let Some((model, stream)) = invocation {
        let cwd = working_directory(&body);
        let answer = Answer {
            id: format!("msg_bdrk_{id}"),
            model,
            content: content_blocks(action, id, cwd.as_deref()),
            usage,
        };
        return if stream {
            answer.bedrock_events()
        } else {
            json_response(StatusCode::OK, &answer.message())
        };
    }
    match path.as_str() {
        "/v1/messages/count_tokens" => json_response(
            StatusCode::OK,
            &json!({ "input_tokens": usage.input_tokens }),
        ),
        "/v1/messages" => {
            let cwd = working_directory(&body);
            let content = content_blocks(action, id, cwd.as_deref());
            let model = body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("claude-fake")
                .to_owned();
            let answer = Answer {
                id: format!("msg_fake_{id}"),
                model,
                content,
                usage,
            };
            if body.get("stream").and_then(Value::as_bool) == Some(true) {
                answer.events()
            } else {
                json_response(StatusCode::OK, &answer.message())
            }
        }
        _ => api_error(StatusCode::NOT_FOUND, id),
    }
}

/// The CLI's working directory, as its system prompt states it; used to make relative `Write`
/// paths absolute.
fn working_directory(body: &Value) -> Option<String> {
    const MARKER: &str = "Primary working directory: ";
    let mut texts = Vec::new();
    collect_texts(body.get("system").unwrap_or(&Value::Null), &mut texts);
    for message in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        collect_texts(message.get("content").unwrap_or(&Value::Null), &mut texts);
    }
    texts.iter().find_map(|text| {
        let start = text.find(MARKER)? + MARKER.len();
        let rest = &text[start..];
        let line = rest.lines().next().unwrap_or(rest).trim();
        (!line.is_empty()).then(|| line.to_owned())
    })
}

/// The content blocks of a successful answer to `reply` (never `Error` or `Delay` here).
fn content_blocks(reply: Reply, id: u64, cwd: Option<&str>) -> Vec<Value> {
    let tool_id = format!("toolu_fake_{id}");
    match reply {
        Reply::Write { file_path, content } => {
            let file_path = match cwd {
                Some(cwd) if !Path::new(&file_path).is_absolute() => {
                    Path::new(cwd).join(&file_path).display().to_string()
                }
                _ => file_path,
            };
            vec![json!({
                "type": "tool_use",
                "id": tool_id,
                "name": "Write",
                "input": { "file_path": file_path, "content": content },
            })]
        }
        Reply::Tool { name, input } => vec![json!({
            "type": "tool_use",
            "id": tool_id,
            "name": name,
            "input": input,
        })],
        Reply::Text(text) => vec![json!({ "type": "text", "text": text })],
        Reply::Error(_) | Reply::Delay(..) => {
            vec![json!({ "type": "text", "text": DEFAULT_TEXT })]
        }
    }
}

/// A successful assistant message, rendered as JSON or as the stream of events.
struct Answer {
    id: String,
    model: String,
    content: Vec<Value>,
    usage: Usage,
}

impl Answer {
    fn stop_reason(&self) -> &'static str {
        if self
            .content
            .iter()
            .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        {
            "tool_use"
        } else {
            "end_turn"
        }
    }

    fn usage_json(&self, output_tokens: u64) -> Value {
        json!({
            "input_tokens": self.usage.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        })
    }

    fn message(&self) -> Value {
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self.content,
            "stop_reason": self.stop_reason(),
            "stop_sequence": null,
            "usage": self.usage_json(self.usage.output_tokens),
        })
    }

    /// The answer's stream events, each block's payload split over two deltas as the real API
    /// splits it over many.
    fn event_list(&self) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        let mut event = |name: &'static str, data: Value| out.push((name, data));
        event(
            "message_start",
            json!({
                "type": "message_start",
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": self.usage_json(1),
                },
            }),
        );
        for (index, block) in self.content.iter().enumerate() {
            let (start, deltas) = match block.get("type").and_then(Value::as_str) {
                Some("tool_use") => {
                    let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                    let deltas: Vec<Value> = halves(&input.to_string())
                        .into_iter()
                        .map(|part| json!({ "type": "input_json_delta", "partial_json": part }))
                        .collect();
                    let mut start = block.clone();
                    start["input"] = json!({});
                    (start, deltas)
                }
                _ => {
                    let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                    let deltas = halves(text)
                        .into_iter()
                        .map(|part| json!({ "type": "text_delta", "text": part }))
                        .collect();
                    (json!({ "type": "text", "text": "" }), deltas)
                }
            };
            event(
                "content_block_start",
                json!({ "type": "content_block_start", "index": index, "content_block": start }),
            );
            for delta in deltas {
                event(
                    "content_block_delta",
                    json!({ "type": "content_block_delta", "index": index, "delta": delta }),
                );
            }
            event(
                "content_block_stop",
                json!({ "type": "content_block_stop", "index": index }),
            );
        }
        event(
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": { "stop_reason": self.stop_reason(), "stop_sequence": null },
                "usage": { "output_tokens": self.usage.output_tokens },
            }),
        );
        event("message_stop", json!({ "type": "message_stop" }));
        out
    }

    /// The answer as `text/event-stream`.
    fn events(&self) -> Response {
        let mut out = String::new();
        for (name, data) in self.event_list() {
            out.push_str("event: ");
            out.push_str(name);
            out.push_str("\ndata: ");
            out.push_str(&data.to_string());
            out.push_str("\n\n");
        }
        let mut response = Response::new(Body::from(out));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }

    /// The answer as Bedrock streams it: the same events in the AWS event stream.
    fn bedrock_events(&self) -> Response {
        let events: Vec<Value> = self.event_list().into_iter().map(|(_, e)| e).collect();
        let body =
            bedrock::event_stream(&events, self.usage.input_tokens, self.usage.output_tokens);
        let mut response = Response::new(Body::from(body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.amazon.eventstream"),
        );
        response
    }
}

/// `text` cut in two at a character boundary near its middle (one part when it is short).
fn halves(text: &str) -> Vec<String> {
    if text.chars().count() < 2 {
        return vec![text.to_owned()];
    }
    let mut middle = text.len() / 2;
    while !text.is_char_boundary(middle) {
        middle += 1;
    }
    vec![text[..middle].to_owned(), text[middle..].to_owned()]
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// An error answer in the Messages API's shape, with its `request-id` header.
fn api_error(status: StatusCode, id: u64) -> Response {
    let (kind, message) = match status.as_u16() {
        400 => ("invalid_request_error", "Invalid request"),
        401 => ("authentication_error", "invalid x-api-key"),
        403 => ("permission_error", "Your API key does not have permission"),
        404 => ("not_found_error", "Not found"),
        405 => ("invalid_request_error", "Method not allowed"),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed size",
        ),
        429 => ("rate_limit_error", "Rate limited"),
        529 => ("overloaded_error", "Overloaded"),
        _ => ("api_error", "Internal server error"),
    };
    let request_id = format!("req_fake_{id}");
    let body = json!({
        "type": "error",
        "error": { "type": kind, "message": message },
        "request_id": request_id,
    });
    let mut response = json_response(status, &body);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("request-id", value);
    }
    response
}

/// The Claude Code executable named by `CCA_CLAUDE_CLI`, or `None` when it is unset or empty
/// (tests then skip with a message).
///
/// # Panics
/// When the variable names a file that does not exist, so a broken install fails loudly instead
/// of skipping.
pub fn claude_cli() -> Option<PathBuf> {
    let path = std::env::var_os(CLAUDE_CLI_VAR).filter(|p| !p.is_empty())?;
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "{CLAUDE_CLI_VAR}={} is not a file; run scripts/test.sh to install the CLI",
        path.display()
    );
    Some(path)
}

/// The environment that runs the Claude Code CLI offline against `model_url` (a
/// [`FakeModel::url`]), with `home` as a fresh home and configuration directory so no state of
/// the machine's user leaks in. Each pair, in order:
///
/// - `ANTHROPIC_BASE_URL`: where the CLI sends Messages API calls.
/// - `ANTHROPIC_API_KEY`: a dummy key; with it the CLI needs no login.
/// - `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`: no auto-update, telemetry, error reports or
///   reachability probe.
/// - `DISABLE_AUTOUPDATER=1`, `DISABLE_TELEMETRY=1`, `DISABLE_ERROR_REPORTING=1`,
///   `DISABLE_BUG_COMMAND=1`, `DISABLE_COST_WARNINGS=1`: the same, spelled out one by one.
/// - `IS_SANDBOX=1`: lets `--dangerously-skip-permissions` run as root, as in containers.
/// - `HOME`: `home`, so the CLI reads and writes no real user's files.
/// - `CLAUDE_CONFIG_DIR`: `home/.claude`, where sessions are kept (a `--resume` needs the same
///   one as the run it resumes).
/// - `CLAUDE_CODE_MAX_RETRIES=1`: one retry of a failed model call instead of ten with back-off,
///   so a failing server ends a run within seconds.
/// - `API_TIMEOUT_MS=60000`: a model call that hangs fails after a minute instead of ten.
/// - `CLAUDE_CODE_DISABLE_TERMINAL_TITLE=1`: no terminal escape codes in the output.
/// - `NO_COLOR=1`: plain text in any message on standard error.
pub fn claude_env(model_url: &str, home: &Path) -> Vec<(String, String)> {
    let config = home.join(".claude");
    [
        ("ANTHROPIC_BASE_URL", model_url.to_owned()),
        ("ANTHROPIC_API_KEY", "sk-ant-fake-key-for-tests".to_owned()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
        ("DISABLE_AUTOUPDATER", "1".to_owned()),
        ("DISABLE_TELEMETRY", "1".to_owned()),
        ("DISABLE_ERROR_REPORTING", "1".to_owned()),
        ("DISABLE_BUG_COMMAND", "1".to_owned()),
        ("DISABLE_COST_WARNINGS", "1".to_owned()),
        ("IS_SANDBOX", "1".to_owned()),
        ("HOME", home.display().to_string()),
        ("CLAUDE_CONFIG_DIR", config.display().to_string()),
        ("CLAUDE_CODE_MAX_RETRIES", "1".to_owned()),
        ("API_TIMEOUT_MS", "60000".to_owned()),
        ("CLAUDE_CODE_DISABLE_TERMINAL_TITLE", "1".to_owned()),
        ("NO_COLOR", "1".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

/// The JSON lines of a `--output-format stream-json` output, skipping any line that is not JSON.
pub fn stream_json_events(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line.trim()).ok())
        .collect()
}
