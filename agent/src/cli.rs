//! Coding CLIs behind one adapter: how to start a run, and what its output lines mean.
//!
//! Claude Code is the default (`-p`, `--output-format stream-json --verbose`,
//! `--dangerously-skip-permissions`, `--max-turns`, `--max-budget-usd`, `--resume <id>` for
//! follow-ups). Any other tool is a shell command (`AGENT_CLI_COMMAND`) whose output is text and
//! whose exit status says whether the run succeeded. The prompt is never an argument: every CLI
//! reads it on standard input (whatever its size, and text starting with `--` stays text); a
//! shell command also finds it in `$CCA_PROMPT` when it is at most 100 KiB, never through the
//! shell's parser.
//!
//! Output is read line by line whatever a line's length (a tool result can be megabytes on one
//! line); a run ends when the CLI exits, is cancelled, exceeds its wall time or stays silent
//! too long, and the process group is killed so nothing it started survives.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::CliSpec;
use crate::sandbox::Sandbox;

/// How one run of a CLI is started: the program, its arguments and the variables it adds. The
/// sandbox runs it in the request's working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    /// What the CLI reads on standard input (the prompt): one argument or variable is limited
    /// to 128 KiB on Linux, and text starting with `--` in an argument could be read as an option.
    pub stdin: Option<String>,
}

impl Invocation {
    fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
        }
    }

    fn arg(&mut self, arg: impl Into<OsString>) -> &mut Self {
        self.args.push(arg.into());
        self
    }

    fn args<I: Into<OsString>>(&mut self, args: impl IntoIterator<Item = I>) -> &mut Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
}

/// What one run is asked to do.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub prompt: String,
    /// The conversation to continue, when the CLI keeps one.
    pub resume: Option<String>,
    pub max_turns: u32,
    pub max_budget_usd: f64,
    pub workdir: PathBuf,
    /// Plan only: the CLI may read but not change anything (Claude Code's plan mode).
    pub plan: bool,
}

/// The final report of a run, as the CLI gives it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CliResult {
    pub is_error: bool,
    /// `success`, `error_max_turns`, `error_during_execution`, … (Claude Code), or `exit`.
    pub subtype: String,
    pub text: String,
    pub conversation: Option<String>,
    pub cost_usd: Option<f64>,
    pub turns: Option<u32>,
    pub duration_ms: Option<u64>,
}

/// Something a CLI reported while it worked.
#[derive(Debug, Clone, PartialEq)]
pub enum CliEvent {
    /// The conversation id, known from the start.
    Started { conversation: String },
    /// Text the model wrote.
    Text(String),
    /// A tool call, with a one-line description.
    Tool { name: String, detail: String },
    /// A tool's result.
    ToolResult { is_error: bool },
    /// The plan the model presented to leave plan mode (Claude Code's `ExitPlanMode`).
    Plan(String),
    /// The run's final report.
    Finished(CliResult),
}

/// Starts runs of one coding CLI and reads its output.
pub trait Adapter: Send + Sync + std::fmt::Debug {
    /// Short name for logs and comments.
    fn name(&self) -> &str;
    /// The program, arguments and own variables of one run. The sandbox adds the rest of the
    /// environment and the process settings.
    fn command(&self, req: &RunRequest) -> Invocation;
    /// The events in one line of output.
    fn parse(&self, line: &str) -> Vec<CliEvent>;
    /// Whether a run can continue an earlier conversation.
    fn resumes(&self) -> bool;
}

/// The adapter a configuration names.
pub fn adapter(spec: &CliSpec) -> Box<dyn Adapter> {
    match spec {
        CliSpec::Claude { program, model } => Box::new(ClaudeCode {
            program: program.clone(),
            model: model.clone(),
        }),
        CliSpec::Command { shell_command } => Box::new(ShellCommand {
            command: shell_command.clone(),
        }),
    }
}

/// Claude Code in print mode with its JSON event stream.
#[derive(Debug, Clone)]
pub struct ClaudeCode {
    pub program: PathBuf,
    pub model: Option<String>,
}

impl Adapter for ClaudeCode {
    fn name(&self) -> &str {
        "Claude Code"
    }

    fn command(&self, req: &RunRequest) -> Invocation {
        let mut cmd = Invocation::new(&self.program);
        // With `-p` and no prompt argument, Claude Code reads the prompt from standard input.
        cmd.arg("-p")
            .args(["--output-format", "stream-json", "--verbose"]);
        // A plan run is in plan mode and nothing bypasses it: the CLI refuses edits and
        // commands that change things.
        match req.plan {
            true => cmd.args(["--permission-mode", "plan"]),
            false => cmd.arg("--dangerously-skip-permissions"),
        };
        cmd.args(["--max-turns", &req.max_turns.to_string()])
            .args(["--max-budget-usd", &format!("{:.4}", req.max_budget_usd)]);
        if let Some(model) = &self.model {
            cmd.args(["--model", model]);
        }
        if let Some(id) = &req.resume {
            cmd.args(["--resume", id]);
        }
        cmd.stdin = Some(req.prompt.clone());
        cmd
    }

    fn parse(&self, line: &str) -> Vec<CliEvent> {
        parse_claude_line(line)
    }

    fn resumes(&self) -> bool {
        true
    }
}

/// One line of Claude Code's `stream-json` output. Lines that are not JSON, or events this
/// does not know, yield nothing: the CLI adds event kinds over time.
pub fn parse_claude_line(line: &str) -> Vec<CliEvent> {
    let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
        return Vec::new();
    };
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    match v.get("type").and_then(Value::as_str) {
        Some("system") if v.get("subtype").and_then(Value::as_str) == Some("init") => {
            str_of(&v, "session_id")
                .map(|conversation| vec![CliEvent::Started { conversation }])
                .unwrap_or_default()
        }
        Some("assistant") => content(&v)
            .iter()
            .flat_map(|block| match block.get("type").and_then(Value::as_str) {
                Some("text") => str_of(block, "text")
                    .filter(|t| !t.trim().is_empty())
                    .map(CliEvent::Text)
                    .into_iter()
                    .collect(),
                Some("tool_use") => {
                    let name = str_of(block, "name").unwrap_or_else(|| "tool".into());
                    let input = block.get("input");
                    let detail = input.map(tool_detail).unwrap_or_default();
                    let plan = (name == "ExitPlanMode")
                        .then(|| input.and_then(|i| str_of(i, "plan")))
                        .flatten()
                        .filter(|p| !p.trim().is_empty())
                        .map(CliEvent::Plan);
                    std::iter::once(CliEvent::Tool { name, detail })
                        .chain(plan)
                        .collect::<Vec<_>>()
                }
                _ => Vec::new(),
            })
            .collect(),
        Some("user") => content(&v)
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            .map(|b| CliEvent::ToolResult {
                is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            })
            .collect(),
        Some("result") => {
            let subtype = str_of(&v, "subtype").unwrap_or_else(|| "success".into());
            let is_error = v
                .get("is_error")
                .and_then(Value::as_bool)
                .unwrap_or(subtype != "success");
            let mut text = str_of(&v, "result").unwrap_or_default();
            if text.is_empty() {
                if let Some(errors) = v.get("errors").and_then(Value::as_array) {
                    text = errors
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ");
                }
            }
            vec![CliEvent::Finished(CliResult {
                is_error,
                subtype,
                text,
                conversation: str_of(&v, "session_id"),
                cost_usd: v.get("total_cost_usd").and_then(Value::as_f64),
                turns: v
                    .get("num_turns")
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok()),
                duration_ms: v.get("duration_ms").and_then(Value::as_u64),
            })]
        }
        _ => Vec::new(),
    }
}

fn content(v: &Value) -> Vec<Value> {
    v.get("message")
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A one-line description of a tool call's input: the path, command or pattern it names.
fn tool_detail(input: &Value) -> String {
    for key in [
        "file_path",
        "path",
        "command",
        "pattern",
        "url",
        "description",
    ] {
        if let Some(s) = input.get(key).and_then(Value::as_str) {
            let line = s.lines().next().unwrap_or_default();
            return cca_domain::naming::clip(line, 120).into_owned();
        }
    }
    String::new()
}

/// The largest prompt a shell command also gets in `$CCA_PROMPT` (Linux refuses to start a
/// program with one variable over 128 KiB).
pub const PROMPT_VARIABLE_MAX: usize = 100 * 1024;

/// Any CLI run as a shell command; its output is text.
#[derive(Debug, Clone)]
pub struct ShellCommand {
    pub command: String,
}

impl Adapter for ShellCommand {
    fn name(&self) -> &str {
        "command"
    }

    fn command(&self, req: &RunRequest) -> Invocation {
        let mut cmd = Invocation::new("sh");
        cmd.arg("-c").arg(&self.command);
        cmd.env = vec![
            ("CCA_MAX_TURNS".into(), req.max_turns.to_string()),
            ("CCA_PLAN_MODE".into(), u8::from(req.plan).to_string()),
        ];
        // A variable is limited like an argument: a larger prompt is on standard input only.
        if req.prompt.len() <= PROMPT_VARIABLE_MAX {
            cmd.env.push(("CCA_PROMPT".into(), req.prompt.clone()));
        }
        cmd.stdin = Some(req.prompt.clone());
        cmd
    }

    fn parse(&self, line: &str) -> Vec<CliEvent> {
        if line.trim().is_empty() {
            Vec::new()
        } else {
            vec![CliEvent::Text(line.trim_end().to_owned())]
        }
    }

    fn resumes(&self) -> bool {
        false
    }
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// The CLI exited by itself.
    Exited,
    /// The run's wall time ran out.
    WallTime(Duration),
    /// The CLI printed nothing for this long.
    Silent(Duration),
    /// Stopped from outside (stop request, SIGTERM, idle timeout).
    Cancelled,
    /// The CLI could not be started.
    NotStarted(String),
}

/// Everything known about a run once it is over.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub ended: Ended,
    pub exit: Option<ExitStatus>,
    pub result: Option<CliResult>,
    pub conversation: Option<String>,
    /// The last lines of standard error (for a failure's reason).
    pub stderr_tail: Vec<String>,
    /// Text the model wrote last (the result of a CLI without a result event).
    pub last_text: Option<String>,
    pub elapsed: Duration,
}

impl RunOutcome {
    /// Whether the run did what it was asked.
    pub fn succeeded(&self) -> bool {
        self.ended == Ended::Exited
            && self.exit.is_some_and(|s| s.success())
            && self.result.as_ref().is_none_or(|r| !r.is_error)
    }

    /// Why the run failed, in one line.
    pub fn failure(&self) -> Option<String> {
        if self.succeeded() {
            return None;
        }
        Some(match &self.ended {
            Ended::WallTime(d) => format!("stopped after its wall time of {} s", d.as_secs()),
            Ended::Silent(d) => format!("stopped: no output for {} s", d.as_secs()),
            Ended::Cancelled => "stopped before it finished".to_owned(),
            Ended::NotStarted(e) => format!("the CLI could not be started: {e}"),
            Ended::Exited => {
                let status = self
                    .exit
                    .map_or_else(|| "unknown status".to_owned(), |s| s.to_string());
                match &self.result {
                    Some(r) if r.is_error && !r.text.trim().is_empty() => {
                        format!("{} ({status})", r.text.trim())
                    }
                    _ => {
                        let tail = self.stderr_tail.join("\n");
                        if tail.trim().is_empty() {
                            format!("the CLI ended with {status}")
                        } else {
                            format!("the CLI ended with {status}: {}", tail.trim())
                        }
                    }
                }
            }
        })
    }
}

/// Lines of standard error kept for a failure's reason.
const STDERR_TAIL: usize = 20;
/// How long output is still read after the CLI exited.
const DRAIN: Duration = Duration::from_secs(2);
/// Grace between SIGTERM and SIGKILL when a run is stopped.
const KILL_GRACE: Duration = Duration::from_secs(3);

/// Runs one CLI invocation to its end, sending its events to `events`.
///
/// `cancel` ends the run when it becomes true. The child runs in `sandbox`, in its own process
/// group, with the sandbox's allow-listed environment, `env`, then the adapter's variables,
/// and the invocation's standard input (or /dev/null).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    adapter: &dyn Adapter,
    req: &RunRequest,
    sandbox: &Sandbox,
    env: &[(String, String)],
    wall_time: Duration,
    silence: Duration,
    mut cancel: watch::Receiver<bool>,
    events: mpsc::UnboundedSender<CliEvent>,
) -> RunOutcome {
    let started = Instant::now();
    let mut outcome = RunOutcome {
        ended: Ended::Exited,
        exit: None,
        result: None,
        conversation: req.resume.clone(),
        stderr_tail: Vec::new(),
        last_text: None,
        elapsed: Duration::ZERO,
    };
    let invocation = adapter.command(req);
    let mut all_env = env.to_vec();
    all_env.extend(invocation.env.iter().cloned());
    let mut cmd = sandbox.command(
        &invocation.program,
        &invocation.args,
        &req.workdir,
        &all_env,
    );
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if invocation.stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            outcome.ended = Ended::NotStarted(e.to_string());
            return outcome;
        }
    };
    if let (Some(mut pipe), Some(text)) = (child.stdin.take(), invocation.stdin) {
        // Written beside the reading of the output (a CLI may answer before it read it all);
        // dropping the pipe closes it, which ends the prompt.
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            if let Err(e) = pipe.write_all(text.as_bytes()).await {
                warn!(error = %e, "the CLI did not read its whole prompt");
            }
        });
    }
    let pid = child.id();
    info!(cli = adapter.name(), pid, resume = ?req.resume, "run started");
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        outcome.ended = Ended::NotStarted("no pipes to the CLI".into());
        return outcome;
    };
    let (line_tx, mut line_rx) = mpsc::channel::<String>(64);
    tokio::spawn(read_lines(stdout, line_tx));
    let (err_tx, mut err_rx) = mpsc::channel::<String>(64);
    tokio::spawn(read_lines(stderr, err_tx));

    let deadline = tokio::time::Instant::now() + wall_time;
    let mut last_output = tokio::time::Instant::now();
    let mut stdout_open = true;
    let mut stderr_open = true;
    // After the CLI exits, what it printed is read until the pipes close, or for `DRAIN` at
    // most (a process it left in the background may hold them open).
    let mut drain_until: Option<tokio::time::Instant> = None;
    let ended = loop {
        if outcome.exit.is_some() && !stdout_open && !stderr_open {
            break None;
        }
        if *cancel.borrow() {
            break Some(Ended::Cancelled);
        }
        let silent_at = last_output + silence;
        tokio::select! {
            line = line_rx.recv(), if stdout_open => match line {
                Some(line) => {
                    last_output = tokio::time::Instant::now();
                    for ev in adapter.parse(&line) {
                        match &ev {
                            CliEvent::Started { conversation } => outcome.conversation = Some(conversation.clone()),
                            CliEvent::Text(t) => outcome.last_text = Some(t.clone()),
                            CliEvent::Finished(r) => {
                                if r.conversation.is_some() {
                                    outcome.conversation.clone_from(&r.conversation);
                                }
                                outcome.result = Some(r.clone());
                            }
                            _ => {}
                        }
                        let _ = events.send(ev);
                    }
                }
                None => stdout_open = false,
            },
            line = err_rx.recv(), if stderr_open => match line {
                Some(line) => {
                    last_output = tokio::time::Instant::now();
                    if outcome.stderr_tail.len() == STDERR_TAIL {
                        outcome.stderr_tail.remove(0);
                    }
                    outcome.stderr_tail.push(cca_domain::naming::clip(&line, 500).into_owned());
                }
                None => stderr_open = false,
            },
            status = child.wait(), if outcome.exit.is_none() => {
                outcome.exit = status.ok();
                drain_until = Some(tokio::time::Instant::now() + DRAIN);
            }
            _ = tokio::time::sleep_until(drain_until.unwrap_or(deadline)), if drain_until.is_some() => break None,
            _ = tokio::time::sleep_until(deadline) => break Some(Ended::WallTime(wall_time)),
            _ = tokio::time::sleep_until(silent_at) => break Some(Ended::Silent(silence)),
            _ = cancel.changed() => {}
        }
    };
    match ended {
        Some(ended) => {
            warn!(pid, ?ended, "stopping the CLI");
            outcome.exit = stop_group(&mut child, pid).await;
            outcome.ended = ended;
        }
        // Whatever the CLI left running in its group goes with it.
        None => kill_group(pid),
    }
    // The output already read still counts (a result printed just before a stop).
    while let Ok(line) = line_rx.try_recv() {
        for ev in adapter.parse(&line) {
            if let CliEvent::Finished(r) = &ev {
                outcome.result = Some(r.clone());
            }
            let _ = events.send(ev);
        }
    }
    if outcome.result.is_none() && !adapter.resumes() {
        outcome.result = outcome.exit.map(|s| CliResult {
            is_error: !s.success(),
            subtype: "exit".into(),
            text: outcome.last_text.clone().unwrap_or_default(),
            ..CliResult::default()
        });
    }
    outcome.elapsed = started.elapsed();
    info!(pid, ended = ?outcome.ended, exit = ?outcome.exit, elapsed_ms = outcome.elapsed.as_millis() as u64, "run ended");
    outcome
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// SIGTERM to the CLI's process group, SIGKILL after a grace; returns the exit status.
async fn stop_group(child: &mut tokio::process::Child, pid: Option<u32>) -> Option<ExitStatus> {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let group = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
        if let Ok(status) = tokio::time::timeout(KILL_GRACE, child.wait()).await {
            // The leader is gone; its group may not be.
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            return status.ok();
        }
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }
    let _ = child.start_kill();
    child.wait().await.ok()
}

/// Sends each line of `reader` (any length, decoded lossily, without its line end).
async fn read_lines(reader: impl AsyncRead + Unpin, tx: mpsc::Sender<String>) {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                if tx
                    .send(String::from_utf8_lossy(&buf).into_owned())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Whether Claude Code has the conversation `id` stored under `config_dir` (a relaunched
/// container starts without it, and `--resume` would fail).
pub fn has_conversation(config_dir: &Path, id: &str) -> bool {
    let file = format!("{id}.jsonl");
    let Ok(projects) = std::fs::read_dir(config_dir.join("projects")) else {
        return false;
    };
    projects.flatten().any(|p| p.path().join(&file).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_events_are_read() {
        let init = r#"{"type":"system","subtype":"init","session_id":"abc-1","tools":["Write"]}"#;
        assert_eq!(
            parse_claude_line(init),
            vec![CliEvent::Started {
                conversation: "abc-1".into()
            }]
        );
        let assistant = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"I'll write it."},{"type":"tool_use","id":"t1","name":"Write","input":{"file_path":"/w/hello.txt","content":"hi"}}]},"session_id":"abc-1"}"#;
        assert_eq!(
            parse_claude_line(assistant),
            vec![
                CliEvent::Text("I'll write it.".into()),
                CliEvent::Tool {
                    name: "Write".into(),
                    detail: "/w/hello.txt".into()
                }
            ]
        );
        let user = r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"ok","is_error":true}]}}"#;
        assert_eq!(
            parse_claude_line(user),
            vec![CliEvent::ToolResult { is_error: true }]
        );
        let result = r#"{"type":"result","subtype":"success","is_error":false,"duration_ms":1234,"num_turns":2,"result":"Done.","session_id":"abc-1","total_cost_usd":0.0123}"#;
        assert_eq!(
            parse_claude_line(result),
            vec![CliEvent::Finished(CliResult {
                is_error: false,
                subtype: "success".into(),
                text: "Done.".into(),
                conversation: Some("abc-1".into()),
                cost_usd: Some(0.0123),
                turns: Some(2),
                duration_ms: Some(1234),
            })]
        );
    }

    #[test]
    fn unknown_or_broken_lines_yield_nothing() {
        for line in [
            "",
            "not json",
            "{\"type\":\"stream_event\"}",
            "[1,2]",
            "{\"type\":\"assistant\"}",
        ] {
            assert!(parse_claude_line(line).is_empty(), "{line}");
        }
    }

    #[test]
    fn an_error_result_without_text_uses_its_errors() {
        let line = r#"{"type":"result","subtype":"error_during_execution","is_error":true,"errors":["API Error: 500"],"session_id":"s"}"#;
        let events = parse_claude_line(line);
        let [CliEvent::Finished(r)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert!(r.is_error);
        assert_eq!(r.text, "API Error: 500");
    }

    fn req(dir: &Path) -> RunRequest {
        RunRequest {
            prompt: "do it; echo $(id)".into(),
            resume: None,
            max_turns: 3,
            max_budget_usd: 1.0,
            workdir: dir.to_path_buf(),
            plan: false,
        }
    }

    async fn run_shell(
        command: &str,
        wall: Duration,
        silence: Duration,
    ) -> (RunOutcome, Vec<CliEvent>) {
        let dir = tempfile::tempdir().unwrap();
        let adapter = ShellCommand {
            command: command.into(),
        };
        let (_cancel_tx, cancel) = watch::channel(false);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let out = run(
            &adapter,
            &req(dir.path()),
            &Sandbox::unconfined(dir.path()),
            &[],
            wall,
            silence,
            cancel,
            tx,
        )
        .await;
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        (out, events)
    }

    #[test]
    fn a_plan_run_is_in_plan_mode_and_bypasses_no_permission() {
        let dir = tempfile::tempdir().unwrap();
        let adapter = ClaudeCode {
            program: "claude".into(),
            model: None,
        };
        let mut r = req(dir.path());
        let implement = adapter.command(&r).args;
        assert!(
            implement
                .iter()
                .any(|a| a == "--dangerously-skip-permissions")
        );
        assert!(!implement.iter().any(|a| a == "--permission-mode"));
        r.plan = true;
        let plan = adapter.command(&r).args;
        let at = plan.iter().position(|a| a == "--permission-mode").unwrap();
        assert_eq!(plan[at + 1], "plan");
        assert!(
            !plan
                .iter()
                .any(|a| a.to_string_lossy().contains("skip-permissions")),
            "{plan:?}"
        );
    }

    #[test]
    fn claude_code_gets_the_prompt_on_standard_input_never_as_an_argument() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = req(dir.path());
        r.prompt = "--help".into();
        r.resume = Some("conv-1".into());
        let adapter = ClaudeCode {
            program: "claude".into(),
            model: None,
        };
        let inv = adapter.command(&r);
        assert_eq!(inv.stdin.as_deref(), Some("--help"));
        assert!(!inv.args.iter().any(|a| a == "--help"), "{:?}", inv.args);
        // Every argument is an option of ours or its value.
        assert_eq!(inv.args[0], "-p");
        assert!(
            inv.args
                .windows(2)
                .any(|w| w[0] == "--resume" && w[1] == "conv-1")
        );
    }

    #[tokio::test]
    async fn a_prompt_larger_than_one_argument_reaches_a_shell_command_whole() {
        let dir = tempfile::tempdir().unwrap();
        let adapter = ShellCommand {
            command: "echo \"variable=${CCA_PROMPT:+set}\"; wc -c | tr -d ' '".into(),
        };
        let mut r = req(dir.path());
        // 200 KB: more than Linux lets one argument or variable hold.
        r.prompt = "x".repeat(200_000);
        let (_cancel_tx, cancel) = watch::channel(false);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let out = run(
            &adapter,
            &r,
            &Sandbox::unconfined(dir.path()),
            &[],
            Duration::from_secs(10),
            Duration::from_secs(10),
            cancel,
            tx,
        )
        .await;
        assert!(out.succeeded(), "{out:?}");
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        assert_eq!(
            events,
            vec![
                CliEvent::Text("variable=".into()),
                CliEvent::Text("200000".into())
            ]
        );
    }

    #[tokio::test]
    async fn a_shell_command_gets_the_prompt_as_data_and_its_exit_status_decides() {
        let (out, events) = run_shell(
            "printf '%s\\n' \"$CCA_PROMPT\"; echo turns=$CCA_MAX_TURNS",
            Duration::from_secs(10),
            Duration::from_secs(10),
        )
        .await;
        assert!(out.succeeded(), "{out:?}");
        assert_eq!(
            events,
            vec![
                CliEvent::Text("do it; echo $(id)".into()),
                CliEvent::Text("turns=3".into())
            ]
        );
        let (out, _) = run_shell(
            "echo broken >&2; exit 3",
            Duration::from_secs(10),
            Duration::from_secs(10),
        )
        .await;
        assert!(!out.succeeded());
        let why = out.failure().unwrap();
        assert!(why.contains("broken") && why.contains('3'), "{why}");
    }

    #[tokio::test]
    async fn a_line_of_several_megabytes_is_read_whole() {
        let (out, events) = run_shell(
            "head -c 5000000 /dev/zero | tr '\\0' 'x'; echo; echo after",
            Duration::from_secs(20),
            Duration::from_secs(20),
        )
        .await;
        assert!(out.succeeded());
        let CliEvent::Text(long) = &events[0] else {
            panic!()
        };
        assert_eq!(long.len(), 5_000_000);
        assert_eq!(events[1], CliEvent::Text("after".into()));
    }

    #[tokio::test]
    async fn wall_time_and_silence_stop_the_whole_group() {
        let started = Instant::now();
        let (out, _) = run_shell(
            "sleep 30 & sleep 30",
            Duration::from_millis(500),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(out.ended, Ended::WallTime(Duration::from_millis(500)));
        assert!(started.elapsed() < Duration::from_secs(8));
        assert!(out.failure().unwrap().contains("wall time"));

        let (out, _) = run_shell(
            "echo hi; sleep 30",
            Duration::from_secs(10),
            Duration::from_millis(500),
        )
        .await;
        assert_eq!(out.ended, Ended::Silent(Duration::from_millis(500)));
    }

    #[tokio::test]
    async fn cancel_stops_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let adapter = ShellCommand {
            command: "sleep 30".into(),
        };
        let (cancel_tx, cancel) = watch::channel(false);
        let (tx, _rx) = mpsc::unbounded_channel();
        let r = req(dir.path());
        let sandbox = Sandbox::unconfined(dir.path());
        let task = tokio::spawn(async move {
            run(
                &adapter,
                &r,
                &sandbox,
                &[],
                Duration::from_secs(60),
                Duration::from_secs(60),
                cancel,
                tx,
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel_tx.send(true).unwrap();
        let out = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.ended, Ended::Cancelled);
    }
}
