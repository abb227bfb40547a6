//! The local launcher of `cca up`: each session is a `cca-agent` child process.
//!
//! It behaves like a container as far as the agent can tell: the same environment as an ECS
//! task, SIGTERM first so the agent can push its work, SIGKILL to its whole process group once
//! the grace period is over (as ECS tears down a container). Each child runs in a process group
//! of its own, so a Ctrl-C in the terminal reaches `cca up` only, which then stops the agents in
//! order with [`ProcessLauncher::shutdown_all`].
//!
//! An operator command (`cca sweep`) runs its own launcher beside `cca up`'s: a `process:<pid>`
//! it did not start counts as running, and is signalled, only while that pid's environment
//! (procfs) holds the session variables the launchers set, since the pid may have been reused.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use cca_domain::SessionId;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};

use crate::{LaunchError, LaunchRequest, Launched, Launcher, TaskSummary};

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

/// One child: its session, its exit, once known, and the way to kill it.
#[derive(Debug)]
struct Tracked {
    /// The session it was started for.
    session_id: SessionId,
    /// When it was started, in Unix seconds.
    started_at: i64,
    /// `None` while the child runs; its exit status once reaped.
    exited: watch::Receiver<Option<ExitStatus>>,
    /// Asks the reaper to SIGKILL the group; taken by the first stop.
    kill: Option<oneshot::Sender<()>>,
}

/// Variables of the launching process an agent process never inherits: the GitHub App's and
/// the control key's, which only the webhook holds.
pub const NOT_HANDED_ON: &[&str] = &[
    "GITHUB_TOKEN",
    "GITHUB_APP_ID",
    "GITHUB_APP_PRIVATE_KEY_FILE",
    "GITHUB_APP_SECRET_ARN",
    "GITHUB_WEBHOOK_SECRET",
    "CCA_CONTROL_SECRET",
    "CONTROL_SECRET_ARN",
];

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
        let mut command = Command::new(&self.inner.program);
        // An agent gets its session's token and asks the token broker for GitHub tokens: the
        // system's own credentials in this process's environment are not handed on.
        for name in NOT_HANDED_ON {
            command.env_remove(name);
        }
        command
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

/// What a pid this launcher did not start is now: a `cca-agent` started by another process (an
/// operator command looks at the agents of `cca up`), gone, or something else.
#[derive(Debug, PartialEq, Eq)]
enum Foreign {
    /// A process whose environment holds the session variables every launcher sets.
    Agent,
    /// No such process, or a zombie that has exited.
    Gone,
    /// Another process (the pid was reused), or one that cannot be inspected.
    Other,
    /// Alive, but without procfs there is no telling what it runs.
    Unknown,
}

/// Identifies `pid` through procfs where there is one, else by liveness alone.
fn identify(pid: u32) -> Foreign {
    if Path::new("/proc/self").exists() {
        let wanted = format!("{}=", crate::env::SESSION_ID);
        return match std::fs::read(format!("/proc/{pid}/environ")) {
            // A zombie's environment reads empty: it has exited.
            Ok(env) if env.is_empty() => Foreign::Gone,
            Ok(env)
                if env
                    .split(|b| *b == 0)
                    .any(|v| v.starts_with(wanted.as_bytes())) =>
            {
                Foreign::Agent
            }
            Ok(_) => Foreign::Other,
            Err(e) if e.kind() == ErrorKind::NotFound => Foreign::Gone,
            Err(_) => Foreign::Other,
        };
    }
    match kill(as_pid(pid), None) {
        Ok(()) => Foreign::Unknown,
        Err(Errno::ESRCH) => Foreign::Gone,
        Err(_) => Foreign::Unknown,
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
                    session_id: req.session_id.clone(),
                    started_at: cca_domain::now(),
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
            Some(pid) if self.children().contains_key(&pid) => {
                tracing::info!(pid, reason, "stopping agent process");
                self.request_stop(pid);
            }
            // Started by another process (the `cca up` an operator command looks at): signalled
            // only when it is still an agent, since the pid may have been reused since.
            Some(pid) => match identify(pid) {
                Foreign::Agent => {
                    tracing::info!(pid, reason, "stopping agent process of another launcher");
                    kill(as_pid(pid), Signal::SIGTERM).map_err(|e| {
                        LaunchError::Backend(format!("cannot send SIGTERM to process {pid}: {e}"))
                    })?;
                }
                Foreign::Gone | Foreign::Other => {
                    tracing::debug!(pid, "agent process to stop was already gone");
                }
                Foreign::Unknown => {
                    return Err(LaunchError::Refused(format!(
                        "process {pid} was not started here and cannot be identified as an \
                         agent without procfs: not signalled"
                    )));
                }
            },
            // Not one of ours (an ECS ARN kept from another mode): there is nothing here to stop.
            None => tracing::warn!(task_arn, "not a local process; nothing to stop"),
        }
        Ok(())
    }

    async fn is_running(&self, task_arn: &str) -> Result<bool, LaunchError> {
        let Some(pid) = parse_arn(task_arn) else {
            return Ok(false);
        };
        if let Some(tracked) = self.children().get(&pid) {
            return Ok(tracked.exited.borrow().is_none());
        }
        // Not a child of this launcher: without procfs a live pid is taken for the agent, so
        // nothing is declared dead that might not be.
        Ok(matches!(identify(pid), Foreign::Agent | Foreign::Unknown))
    }

    async fn list_tasks(&self) -> Result<Vec<TaskSummary>, LaunchError> {
        Ok(self
            .children()
            .iter()
            .filter(|(_, t)| t.exited.borrow().is_none())
            .map(|(pid, t)| TaskSummary {
                task_arn: format!("{ARN_PREFIX}{pid}"),
                session_id: Some(t.session_id.clone()),
                created_at: Some(t.started_at),
            })
            .collect())
    }

    async fn shutdown(&self) {
        self.shutdown_all().await;
    }
}
