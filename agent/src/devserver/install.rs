//! The install step, run once before the dev server starts (and again by the caller after a
//! pull that changed the dependencies).

use std::io;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::AppPlan;
use super::output::{Tail, show_tail};
use crate::sandbox::Sandbox;

use super::process::{GroupGuard, install_env, kill_leftovers, spawn_shell};

/// Lines of output kept for the error report of a failed install.
const INSTALL_TAIL_LINES: usize = 30;

/// How long to wait for the rest of the output once the install has exited.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Why the install failed. The message names the command and, when it ran, its exit status and
/// last lines of output, so it can be reported on the PR as it is.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The command could not be started or waited for.
    #[error("could not run the install command `{command}`: {error}")]
    Spawn {
        /// The command.
        command: String,
        /// What the system said.
        error: io::Error,
    },
    /// The command ended unsuccessfully.
    #[error(
        "the install command `{command}` failed ({status}); last output:\n{}",
        show_tail(tail)
    )]
    Failed {
        /// The command.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// Its last lines of output, stdout and stderr interleaved.
        tail: Vec<String>,
    },
}

/// Runs the plan's install command (`sh -c`) in `workdir`, its output into the log line by line.
/// Does nothing when the plan has no install command.
///
/// It runs in `sandbox`; the environment is the sandbox's allow-list, `CI=true`, `env`, then the
/// plan's `env`. The
/// command runs in its own process group, killed whole when it ends or when this future is
/// dropped, so a time-out around the call leaves nothing running.
pub async fn install(
    sandbox: &Sandbox,
    plan: &AppPlan,
    workdir: &Path,
    env: &[(String, String)],
) -> Result<(), InstallError> {
    let Some(command) = plan.install.as_deref() else {
        return Ok(());
    };
    tracing::info!(command, "installing the app's dependencies");
    let started = Instant::now();
    let tail = Tail::new(INSTALL_TAIL_LINES);
    let spawn_error = |error| InstallError::Spawn {
        command: command.to_owned(),
        error,
    };
    let mut spawned = spawn_shell(
        sandbox,
        command,
        workdir,
        &install_env(env, plan),
        "install",
        &tail,
    )
    .map_err(spawn_error)?;
    let mut guard = GroupGuard(Some(spawned.group));
    let status = spawned.child.wait().await.map_err(spawn_error)?;
    // Whatever the install left running in the background would hold the output open.
    guard.0 = None;
    kill_leftovers(spawned.group).await;
    spawned.pumps.drain(OUTPUT_DRAIN).await;
    if status.success() {
        tracing::info!(command, elapsed = ?started.elapsed(), "install finished");
        Ok(())
    } else {
        Err(InstallError::Failed {
            command: command.to_owned(),
            status,
            tail: tail.lines(),
        })
    }
}
