//! `cca-uat-proxy`: routes `<session>.<UAT_DOMAIN_SUFFIX>` to the session's container. This
//! placeholder keeps the command line of the real program (`serve --listen`, `--help`,
//! `--version`) and refuses to run with a status that tells a supervisor the start failed.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status of a program that cannot do what it was asked: the same status clap uses for a
/// usage error, so no supervisor mistakes the placeholder for a proxy that stopped normally.
const NOT_IMPLEMENTED: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "cca-uat-proxy",
    version,
    about = "Claude Cloud Agent preview proxy (not yet implemented)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the proxy over HTTP (not yet implemented).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: std::net::SocketAddr,
    },
}

fn main() -> ExitCode {
    let _ = Cli::parse();
    eprintln!("cca-uat-proxy: not yet implemented (coming with the preview proxy)");
    ExitCode::from(NOT_IMPLEMENTED)
}
