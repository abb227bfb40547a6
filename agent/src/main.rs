//! `cca-agent`: the entrypoint of agent and preview containers, also spawned as a local process
//! by `cca up`. This placeholder keeps the command line of the real program (`run`, `preview`,
//! `--help`, `--version`) so launchers and scripts can already name it, and refuses to run with
//! a status that tells a launcher the start failed.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status of a program that cannot do what it was asked: the same status clap uses for a
/// usage error, so nothing mistakes the placeholder for a session that ended normally.
const NOT_IMPLEMENTED: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "cca-agent",
    version,
    about = "Claude Cloud Agent container entrypoint (not yet implemented)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a coding session (not yet implemented).
    Run,
    /// Serve a PR preview environment (not yet implemented).
    Preview,
}

fn main() -> ExitCode {
    let _ = Cli::parse();
    eprintln!("cca-agent: not yet implemented (coming with the agent runner)");
    ExitCode::from(NOT_IMPLEMENTED)
}
