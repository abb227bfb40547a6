//! `cca`: the operator command line of Claude Cloud Agent.
//!
//! `cca up` runs the system on one machine; `cca sessions` lists, shows and stops sessions in
//! any store; `cca replay` sends a recorded webhook delivery. Each command is a module; this file
//! only parses the command line and turns the outcome into an exit status.

mod data_dir;
mod doctor;
mod replay;
mod sessions;
mod store;
mod sweep;
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
    /// Run the system on this machine: the webhook, the preview proxy, sessions in SQLite, agents
    /// as processes.
    ///
    /// Every webhook setting is read from its environment variable or flag, as `cca-webhook`
    /// reads it; `up` fills in local defaults: SESSION_STORE=sqlite:<data dir>/sessions.db,
    /// LAUNCHER=process (SESSIONS_TABLE and ECS_CLUSTER alone are ignored), CCA_LOG_DIR=<data
    /// dir>/logs, UAT_DOMAIN_SUFFIX=localhost, PREVIEW_URL_TEMPLATE=http://{id}.{suffix}:<proxy
    /// port>, and CCA_CONTROL_SECRET from <data dir>/control.key (made on first use). GitHub
    /// credentials come from GITHUB_TOKEN, or GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_FILE, with
    /// GITHUB_WEBHOOK_SECRET, or else from the App stored in the data directory; with none, `up`
    /// serves a setup page (http://<listen>/setup) that creates a GitHub App and stores it.
    Up(Box<up::UpArgs>),
    /// List, show and stop sessions (SESSION_STORE, SESSIONS_TABLE, or the `cca up` store).
    Sessions(sessions::SessionsArgs),
    /// Send a payload file to a webhook, signed as GitHub (or JIRA) would sign it.
    Replay(replay::ReplayArgs),
    /// Check the deployed system against what the code needs; `--fix` repairs routing.
    ///
    /// One line per check (ok, FAIL with the resource and the fix, or skip): the
    /// `*.<UAT_DOMAIN_SUFFIX>` rule on ALB_LISTENER_ARN forwarding to the proxy's target group
    /// with nothing evaluated before it taking preview hosts, healthy proxy targets, the proxy
    /// security group admitting the load balancer's on the proxy port, the cluster, every task
    /// definition setting the variables its binary requires, the sessions table with its
    /// `pr-index` and TTL, and the secrets. `--fix` creates or repoints the rule and adds the
    /// ingress, then checks again. Exit status 1 when any problem remains.
    Doctor(Box<doctor::DoctorArgs>),
    /// Stop and fail what is dead or idle, and remove what is left behind; `--dry-run` changes
    /// nothing.
    ///
    /// Sessions idle past IDLE_TIMEOUT_SECS are stopped, sessions whose task is gone or whose
    /// heartbeat is older than HEARTBEAT_TIMEOUT_SECS are marked FAILED (both with a PR comment
    /// when GitHub credentials are set), tasks of ended sessions and tasks no session records
    /// are stopped, and the per-session listener rules and target groups of ALB_LISTENER_ARN are
    /// deleted once their session's record has ended (kept and reported otherwise). Tasks are
    /// those of ECS_CLUSTER, else the local agent processes. Exit status 1 when some state could
    /// not be read or an action failed.
    Sweep(Box<sweep::SweepArgs>),
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
            Command::Doctor(args) => doctor::run(*args).await,
            Command::Sweep(args) => sweep::run(*args).await,
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
