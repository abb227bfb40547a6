//! The local launcher of `cca up`: each session is a `cca-agent` child process.
//!
//! It behaves like a container as far as the agent can tell: the same environment as an ECS
//! task, SIGTERM first so the agent can push its work, SIGKILL to its whole process group once
//! the grace period is over (as ECS tears down a container). Each child runs in a process group
//! of its own, so a Ctrl-C in the terminal reaches `cca up` only, which then stops the agents in
//! order with [`ProcessLauncher::shutdown_all`].

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};

use crate::{LaunchError, LaunchRequest, Launched, Launcher};

/// Prefix of the pseudo task ARN of a local process.
const ARN_PREFIX: &str = "process:";

/// What a container learns from ECS and a local process is told instead: its address (for the
/// proxy and the webhook) and that it must pick free ports, since every session shares this
/// host. `base_env` can override them.
const LOCAL_DEFAULTS: [(&str, &str); 3] = [
    ("AGENT_ADDRESS", "127.0.0.1"),
    ("APP_PORT", "0"),
    ("CONTROL_PORT", "0"),
];

/// One child: its exit, once known, and the way to kill it.
#[derive(Debug)]
struct Tracked {
    /// `None` while the child runs; its exit status once reaped.
    exited: watch::Receiver<Option<ExitStatus>>,
    /// Asks the reaper to SIGKILL the group; taken by the first stop.
    kill: Option<oneshot::Sender<()>>,
}

/// Runs sessions as local `cca-agent` processes.
#[derive(Debug, Clone)]
pub struct ProcessLauncher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    program: PathBuf,
    log_dir: PathBuf,
    base_env: Vec<(String, String)>,
    grace: Duration,
    children: Mutex<HashMap<u32, Tracked>>,
}

impl ProcessLauncher {
    /// A launcher of `program` (the `cca-agent` binary). Children inherit this process's
    /// environment, then [`LOCAL_DEFAULTS`], then `base_env` (local settings such as the store and the credentials'
    /// files), then the session's variables; their output goes to `<log_dir>/<session id>.log`.
    /// `grace` is how long a stopped child has between SIGTERM and SIGKILL.
    pub fn new(
        program: PathBuf,
        log_dir: PathBuf,
        base_env: Vec<(String, String)>,
        grace: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                program,
                log_dir,
                base_env,
                grace,
                children: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Stops every running child and waits until all have exited (each within the grace
    /// period, then killed): what `cca up` does on Ctrl-C so no agent's work is lost.
    pub async fn shutdown_all(&self) {
        let pids: Vec<u32> = self.children().keys().copied().collect();
        let mut waits = Vec::with_capacity(pids.len());
        for pid in pids {
            if let Some(mut exited) = self.request_stop(pid) {
                waits.push(async move {
                    // An error means the reaper is gone, which it only is once the child is.
                    let _ = exited.wait_for(Option::is_some).await;
                });
            }
        }
        futures::future::join_all(waits).await;
    }

    fn children(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Tracked>> {
        // The map stays consistent even if a holder panicked: every update is one insert or
        // one field write.
        self.inner
            .children
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends SIGTERM to a running child and arms the SIGKILL after the grace period. Answers
    /// the child's exit watch, or `None` when the pid is unknown or the child already exited.
    fn request_stop(&self, pid: u32) -> Option<watch::Receiver<Option<ExitStatus>>> {
        let mut children = self.children();
        let tracked = children.get_mut(&pid)?;
        if tracked.exited.borrow().is_some() {
            return None;
        }
        // The reaper has not reported an exit, so the pid is still our child (running, or a
        // zombie); the only gap is between its wait and its report, far too short for the kernel
        // to cycle through the pid space and hand the pid to another process.
        if let Err(e) = kill(as_pid(pid), Signal::SIGTERM) {
            tracing::warn!(pid, error = %e, "SIGTERM failed");
        }
        let exited = tracked.exited.clone();
        if let Some(kill_now) = tracked.kill.take() {
            let mut watch = exited.clone();
            let grace = self.inner.grace;
            tokio::spawn(async move {
                let ended = tokio::time::timeout(grace, watch.wait_for(Option::is_some)).await;
                if ended.is_err() {
                    tracing::warn!(pid, ?grace, "child ignored SIGTERM; killing it");
                    let _ = kill_now.send(());
                }
            });
        }
        Some(exited)
    }

    fn spawn(&self, req: &LaunchRequest) -> Result<Child, LaunchError> {
        let log_path = self.inner.log_dir.join(format!("{}.log", req.session_id));
        let log = std::fs::create_dir_all(&self.inner.log_dir)
            .and_then(|()| OpenOptions::new().create(true).append(true).open(&log_path))
            .map_err(|e| {
                LaunchError::Backend(format!("cannot open log {}: {e}", log_path.display()))
            })?;
        let log_err = log
            .try_clone()
            .map_err(|e| LaunchError::Backend(format!("cannot share log file: {e}")))?;
        Command::new(&self.inner.program)
            .arg(req.mode())
            .envs(LOCAL_DEFAULTS)
            .envs(self.inner.base_env.iter().map(|(k, v)| (k, v)))
            .envs(req.environment())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                LaunchError::Refused(format!(
                    "cannot start {}: {e}",
                    self.inner.program.display()
                ))
            })
    }
}

/// Owns the child until it exits, so it is always reaped, and kills its group on request.
async fn reap(
    pid: u32,
    mut child: Child,
    kill_now: oneshot::Receiver<()>,
    exited: watch::Sender<Option<ExitStatus>>,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        Ok(()) = kill_now => {
            // The whole group, as a container's teardown takes the agent's own children too.
            if let Err(e) = killpg(as_pid(pid), Signal::SIGKILL) {
                tracing::warn!(pid, error = %e, "SIGKILL failed");
            }
            child.wait().await
        }
    };
    match status {
        Ok(status) => {
            tracing::info!(pid, %status, "agent process exited");
            let _ = exited.send(Some(status));
        }
        Err(e) => {
            // Waiting can only fail if the child was reaped elsewhere; count it as gone.
            tracing::warn!(pid, error = %e, "waiting for agent process failed");
            let _ = exited.send(Some(ExitStatus::default()));
        }
    }
}

fn as_pid(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

fn parse_arn(task_arn: &str) -> Option<u32> {
    task_arn.strip_prefix(ARN_PREFIX)?.parse().ok()
}

#[async_trait]
impl Launcher for ProcessLauncher {
    async fn launch(&self, req: &LaunchRequest) -> Result<Launched, LaunchError> {
        let child = self.spawn(req)?;
        let pid = child
            .id()
            .ok_or_else(|| LaunchError::Backend("child exited before its pid was read".into()))?;
        let (kill_tx, kill_rx) = oneshot::channel();
        let (exited_tx, exited_rx) = watch::channel(None);
        {
            let mut children = self.children();
            // Forget children that exited, so the map does not grow with every session.
            children.retain(|_, t| t.exited.borrow().is_none());
            children.insert(
                pid,
                Tracked {
                    exited: exited_rx,
                    kill: Some(kill_tx),
                },
            );
        }
        tokio::spawn(reap(pid, child, kill_rx, exited_tx));
        tracing::info!(
            session_id = %req.session_id,
            pid,
            program = %self.inner.program.display(),
            mode = req.mode(),
            env = ?req.env,
            "agent process started"
        );
        Ok(Launched {
            task_arn: format!("{ARN_PREFIX}{pid}"),
        })
    }

    async fn stop(&self, task_arn: &str, reason: &str) -> Result<(), LaunchError> {
        match parse_arn(task_arn) {
            Some(pid) => {
                tracing::info!(pid, reason, "stopping agent process");
                self.request_stop(pid);
            }
            // Not one of ours (an ECS ARN kept from another mode): there is nothing here to stop.
            None => tracing::warn!(task_arn, "not a local process; nothing to stop"),
        }
        Ok(())
    }

    async fn is_running(&self, task_arn: &str) -> Result<bool, LaunchError> {
        let Some(pid) = parse_arn(task_arn) else {
            return Ok(false);
        };
        Ok(self
            .children()
            .get(&pid)
            .is_some_and(|t| t.exited.borrow().is_none()))
    }

    async fn shutdown(&self) {
        self.shutdown_all().await;
    }
}
