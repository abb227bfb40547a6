//! `cca-agent`: the entrypoint of agent and preview containers, also spawned as a local process
//! by `cca up`.

use std::process::ExitCode;

use cca_agent::config::{AgentArgs, Config};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cca-agent",
    version,
    about = "Claude Cloud Agent container entrypoint: a coding session or a PR preview"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a coding session: clone the branch, run Claude Code on the issue and on follow-ups,
    /// push, report on the PR.
    Run(AgentArgs),
    /// Serve a PR preview: clone the PR branch, install, start the app, deploy.
    Preview(AgentArgs),
    /// Say in one line what would confine untrusted code here (`AGENT_SANDBOX…`), and exit 0,
    /// or 2 when what is asked for cannot be had.
    Sandbox(AgentArgs),
}

/// `cca-agent sandbox`.
fn sandbox(args: &AgentArgs) -> ExitCode {
    let found = cca_agent::config::sandbox_settings(args)
        .map_err(|e| e.to_string())
        .and_then(|s| cca_agent::sandbox::Sandbox::probe(&s).map_err(|e| e.to_string()));
    match found {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("sessions will not start: {e}");
            ExitCode::from(USAGE)
        }
    }
}

/// Exit status for settings that are missing or wrong (as clap's usage errors).
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = std::env::var_os("AWS_EXECUTION_ENV").is_some()
        || std::env::var_os("ECS_CONTAINER_METADATA_URI_V4").is_some();
    cca_settings::init_logging(json);
    let (preview, args) = match cli.command {
        Command::Run(a) => (false, a),
        Command::Preview(a) => (true, a),
        Command::Sandbox(a) => return sandbox(&a),
    };
    let cfg = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cca-agent: {e}");
            return ExitCode::from(USAGE);
        }
    };
    // The session's root span, entered on every thread of the runtime: each line the agent logs,
    // from whichever task, says which session and mode it belongs to (at ERROR level, so that it
    // is there whatever RUST_LOG keeps).
    let span = tracing::error_span!(
        "session",
        id = %cfg.session_id,
        mode = if preview { "preview" } else { "run" },
    );
    let _entered = span.clone().entered();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || std::mem::forget(span.clone().entered()))
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cca-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        if preview {
            cca_agent::preview::run(cfg).await
        } else {
            cca_agent::agent::run(cfg).await
        }
    });
    // Background tasks (the control API, the heartbeat) end with the runtime; their work is
    // done once the session is recorded.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cca-agent ended with an error");
            eprintln!("cca-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
