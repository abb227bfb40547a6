//! `cca`: the operator command line of Claude Cloud Agent.
//!
//! `cca up` runs the system on one machine; `cca sessions` lists, shows and stops sessions in
//! any store; `cca replay` sends a recorded webhook delivery. Each command is a module; this file
//! only parses the command line and turns the outcome into an exit status.

mod data_dir;
mod replay;
mod sessions;
mod store;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cca",
    version,
    about = "Claude Cloud Agent operator command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the system on this machine: the webhook, sessions in SQLite, agents as processes.
    ///
    /// Every webhook setting is read from its environment variable or flag, as `cca-webhook`
    /// reads it; `up` fills in local defaults: SESSION_STORE=sqlite:<data dir>/sessions.db,
    /// LAUNCHER=process (SESSIONS_TABLE and ECS_CLUSTER alone are ignored), CCA_LOG_DIR=<data
    /// dir>/logs, UAT_DOMAIN_SUFFIX=localhost, and CCA_CONTROL_SECRET from <data dir>/control.key
    /// (made on first use). GitHub credentials are needed: GITHUB_TOKEN, or GITHUB_APP_ID and
    /// GITHUB_APP_PRIVATE_KEY_FILE, with GITHUB_WEBHOOK_SECRET.
    Up(Box<up::UpArgs>),
    /// List, show and stop sessions (SESSION_STORE, SESSIONS_TABLE, or the `cca up` store).
    Sessions(sessions::SessionsArgs),
    /// Send a payload file to a webhook, signed as GitHub (or JIRA) would sign it.
    Replay(replay::ReplayArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cca: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up::run(*args).await,
            Command::Sessions(args) => sessions::run(args).await,
            Command::Replay(args) => replay::run(args).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cca: {e:#}");
            ExitCode::FAILURE
        }
    }
}
