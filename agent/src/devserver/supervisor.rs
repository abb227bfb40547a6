//! Supervision of the dev server: one background task starts it, polls its health path until it
//! answers, restarts it with exponential back-off when it dies, and gives up after a run of
//! starts that never answered. The handle reports the state through a watch channel and kills
//! the process group when stopped or dropped.
//!
//! Ready time-out: when a start has not answered within the plan's `ready_timeout`, the state
//! becomes [`AppState::Failed`] with the reason, but the process keeps running and keeps being
//! checked, so a slow first compile still ends [`AppState::Ready`]. Only giving up after
//! [`SupervisorOptions::max_failures`] crashes leaves nothing running.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument;

use super::AppPlan;
use super::health::probe;
use super::output::{Tail, show_tail};
use crate::sandbox::Sandbox;

use super::process::{Spawned, dev_env, kill_leftovers, signal_group, spawn_shell, terminate};

/// How long to wait for the rest of a dead server's output, for its error report.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

/// What the dev server is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppState {
    /// Started; its health path has not answered yet.
    Starting,
    /// Its health path answered.
    Ready,
    /// It died; it will be started again `after` this long. `attempt` counts the consecutive
    /// deaths (1 for the first).
    Restarting {
        /// Consecutive deaths so far.
        attempt: u32,
        /// Back-off before the next start.
        after: Duration,
    },
    /// It does not work, for this reason. After a ready time-out the process is still running
    /// and may still become ready; after too many deaths nothing runs until [`Supervisor::restart`].
    Failed(String),
    /// Stopped on request; final.
    Stopped,
}

impl fmt::Display for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppState::Starting => f.write_str("starting"),
            AppState::Ready => f.write_str("ready"),
            AppState::Restarting { attempt, after } => {
                write!(f, "restarting in {after:?} (attempt {attempt})")
            }
            AppState::Failed(reason) => write!(f, "failed: {reason}"),
            AppState::Stopped => f.write_str("stopped"),
        }
    }
}

/// Tunables of the supervisor; the defaults suit a real session, tests shrink them.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// Back-off after the first death; doubles with each consecutive death.
    pub backoff_initial: Duration,
    /// Longest back-off, so a server that keeps dying is still retried twice a minute.
    pub backoff_max: Duration,
    /// Time ready after which a death counts as the first again (the back-off starts over).
    pub backoff_reset_after: Duration,
    /// Consecutive deaths without ever becoming ready after which the supervisor gives up.
    pub max_failures: u32,
    /// Time between SIGTERM and SIGKILL when stopping; dev servers flush nothing valuable.
    pub stop_grace: Duration,
    /// Pause between health checks while starting.
    pub health_interval: Duration,
    /// Longest wait for one health answer; a first request can wait for a whole compile.
    pub health_request_timeout: Duration,
    /// Address the health check connects to. The loopback by default; the container's own
    /// address also proves the server listens where the proxy connects.
    pub health_host: IpAddr,
    /// Lines of output kept for the report of a death.
    pub tail_lines: usize,
}

impl Default for SupervisorOptions {
    fn default() -> Self {
        SupervisorOptions {
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            backoff_reset_after: Duration::from_secs(60),
            max_failures: 10,
            stop_grace: Duration::from_secs(5),
            health_interval: Duration::from_millis(250),
            health_request_timeout: Duration::from_secs(10),
            health_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tail_lines: 20,
        }
    }
}

impl SupervisorOptions {
    /// The back-off before start number `attempt + 1`, see [`backoff_delay`].
    pub fn backoff(&self, attempt: u32) -> Duration {
        backoff_delay(attempt, self.backoff_initial, self.backoff_max)
    }
}

/// Back-off after the `attempt`-th consecutive death (1-based): `initial`, twice that, four
/// times…, never more than `max`.
pub fn backoff_delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    initial
        .checked_mul(1u32 << doublings)
        .map_or(max, |delay| delay.min(max))
}

/// The process group currently running, shared with the handle so that dropping the handle
/// can kill it without the task's help.
#[derive(Debug, Default)]
struct Group {
    running: Option<i32>,
    /// Set by the handle's drop: nothing may be started any more.
    closed: bool,
}

type SharedGroup = Arc<Mutex<Group>>;

fn lock(group: &SharedGroup) -> std::sync::MutexGuard<'_, Group> {
    group.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
enum Request {
    /// Restart, with a new plan when one is given.
    Restart(Option<AppPlan>, oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}

/// Supervises the dev server of an [`AppPlan`]. Dropping it kills the process group (SIGKILL,
/// synchronously); call [`Supervisor::stop`] first for a graceful stop.
#[derive(Debug)]
pub struct Supervisor {
    plan: Mutex<AppPlan>,
    state: watch::Receiver<AppState>,
    requests: mpsc::UnboundedSender<Request>,
    group: SharedGroup,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Starts the dev server in `workdir` and watches it, with the default options.
    ///
    /// It runs in `sandbox`; `env` comes on top of the sandbox's allow-list; the plan's `env`,
    /// `HOST=0.0.0.0` and `PORT` are added. Must be called within a Tokio runtime.
    pub fn start(
        plan: AppPlan,
        sandbox: Arc<Sandbox>,
        workdir: PathBuf,
        env: Vec<(String, String)>,
    ) -> Supervisor {
        Self::start_with(plan, sandbox, workdir, env, SupervisorOptions::default())
    }

    /// [`Supervisor::start`] with chosen options.
    pub fn start_with(
        plan: AppPlan,
        sandbox: Arc<Sandbox>,
        workdir: PathBuf,
        env: Vec<(String, String)>,
        options: SupervisorOptions,
    ) -> Supervisor {
        let (state_tx, state) = watch::channel(AppState::Starting);
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let group = SharedGroup::default();
        tracing::info!(
            command = %plan.dev,
            port = plan.port,
            source = %plan.source,
            "starting the dev server"
        );
        let worker = Worker {
            env: dev_env(&env, &plan),
            given_env: env,
            health: SocketAddr::new(options.health_host, plan.port),
            plan: plan.clone(),
            sandbox,
            workdir,
            options,
            state: state_tx,
            requests: requests_rx,
            group: Arc::clone(&group),
        };
        let task = tokio::spawn(worker.run().in_current_span());
        Supervisor {
            plan: Mutex::new(plan),
            state,
            requests,
            group,
            task,
        }
    }

    /// The plan being run.
    pub fn plan(&self) -> AppPlan {
        self.plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current state.
    pub fn state(&self) -> AppState {
        self.state.borrow().clone()
    }

    /// Changes of state, current state first.
    pub fn subscribe(&self) -> watch::Receiver<AppState> {
        self.state.clone()
    }

    /// Resolves when the health path answers; `Err` with the state when the server failed or
    /// was stopped first, or with the current state after `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), AppState> {
        let mut states = self.state.clone();
        let outcome = tokio::time::timeout(timeout, async move {
            loop {
                let state = states.borrow_and_update().clone();
                match state {
                    AppState::Ready => return Ok(()),
                    AppState::Failed(_) | AppState::Stopped => return Err(state),
                    AppState::Starting | AppState::Restarting { .. } => {}
                }
                if states.changed().await.is_err() {
                    return Err(states.borrow().clone());
                }
            }
        })
        .await;
        outcome.unwrap_or_else(|_| Err(self.state()))
    }

    /// Stops the process group and starts the server again with a fresh back-off (after a pull
    /// changed the code). Returns once the old processes are gone. Does nothing once stopped.
    pub async fn restart(&self) {
        let (done, wait) = oneshot::channel();
        if self.requests.send(Request::Restart(None, done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// [`Supervisor::restart`] with a new plan, for a pull that changed the settings file. The
    /// proxy keeps forwarding to the port recorded for the session, so a plan on another port
    /// needs that record changed too.
    pub async fn restart_with(&self, plan: AppPlan) {
        let (done, wait) = oneshot::channel();
        if self
            .requests
            .send(Request::Restart(Some(plan.clone()), done))
            .is_ok()
        {
            *self.plan.lock().unwrap_or_else(PoisonError::into_inner) = plan;
            let _ = wait.await;
        }
    }

    /// Stops the server: SIGTERM to its process group, SIGKILL after the grace. Idempotent.
    pub async fn stop(&self) {
        let (done, wait) = oneshot::channel();
        if self.requests.send(Request::Stop(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let mut group = lock(&self.group);
        group.closed = true;
        if let Some(running) = group.running.take() {
            signal_group(running, Signal::SIGKILL);
        }
        drop(group);
        self.task.abort();
    }
}

/// How one start of the server ended.
enum RunEnd {
    /// It exited on its own (or could not be started), having been ready for this long.
    Died {
        status: String,
        tail: Vec<String>,
        ready_for: Option<Duration>,
    },
    /// A request arrived (`None`: the handle is gone); the process is already gone.
    Request(Option<Request>),
}

/// What the supervisor does after a request.
enum Next {
    Start,
    Exit,
}

type Probe = Pin<Box<dyn Future<Output = Option<u16>> + Send>>;

struct Worker {
    plan: AppPlan,
    sandbox: Arc<Sandbox>,
    workdir: PathBuf,
    /// The caller's variables, from which `env` is made for each plan.
    given_env: Vec<(String, String)>,
    /// The dev server's environment.
    env: Vec<(String, String)>,
    health: SocketAddr,
    options: SupervisorOptions,
    state: watch::Sender<AppState>,
    requests: mpsc::UnboundedReceiver<Request>,
    group: SharedGroup,
}

impl Worker {
    async fn run(mut self) {
        // Consecutive deaths, for the back-off.
        let mut attempt = 0u32;
        // Consecutive deaths of starts that never became ready, for giving up.
        let mut unready_deaths = 0u32;
        loop {
            self.set(AppState::Starting);
            let (status, tail, ready_for) = match self.run_once().await {
                RunEnd::Died {
                    status,
                    tail,
                    ready_for,
                } => (status, tail, ready_for),
                RunEnd::Request(request) => match self.answer(request) {
                    Next::Start => {
                        (attempt, unready_deaths) = (0, 0);
                        continue;
                    }
                    Next::Exit => return,
                },
            };

            if ready_for.is_some_and(|up| up >= self.options.backoff_reset_after) {
                attempt = 0;
            }
            attempt = attempt.saturating_add(1);
            match ready_for {
                Some(_) => unready_deaths = 0,
                None => unready_deaths += 1,
            }

            if unready_deaths >= self.options.max_failures {
                let reason = format!(
                    "the dev server `{}` stopped {unready_deaths} times in a row without \
                     answering on {}; giving up. Last exit: {status}; last output:\n{}",
                    self.plan.dev,
                    self.health_url(),
                    show_tail(&tail)
                );
                tracing::error!("{reason}");
                self.set(AppState::Failed(reason));
                // Nothing runs until someone asks again (after a fix was pulled).
                let request = self.requests.recv().await;
                match self.answer(request) {
                    Next::Start => {
                        (attempt, unready_deaths) = (0, 0);
                        continue;
                    }
                    Next::Exit => return,
                }
            }

            let after = self.options.backoff(attempt);
            tracing::warn!(
                attempt,
                "the dev server {status}; restarting in {after:?}. Last output:\n{}",
                show_tail(&tail)
            );
            self.set(AppState::Restarting { attempt, after });
            tokio::select! {
                () = tokio::time::sleep(after) => {}
                request = self.requests.recv() => match self.answer(request) {
                    Next::Start => (attempt, unready_deaths) = (0, 0),
                    Next::Exit => return,
                },
            }
        }
    }

    /// Carries out a request while no process runs; `None` (the handle is gone) stops.
    fn answer(&mut self, request: Option<Request>) -> Next {
        match request {
            Some(Request::Restart(plan, done)) => {
                tracing::info!("restarting the dev server on request");
                if let Some(plan) = plan {
                    tracing::info!(
                        command = %plan.dev,
                        port = plan.port,
                        source = %plan.source,
                        "the dev server's plan changed"
                    );
                    self.env = dev_env(&self.given_env, &plan);
                    self.health = SocketAddr::new(self.options.health_host, plan.port);
                    self.plan = plan;
                }
                self.set(AppState::Starting);
                let _ = done.send(());
                Next::Start
            }
            Some(Request::Stop(done)) => {
                tracing::info!("dev server stopped");
                self.set(AppState::Stopped);
                let _ = done.send(());
                Next::Exit
            }
            None => {
                self.set(AppState::Stopped);
                Next::Exit
            }
        }
    }

    /// Starts the server once and watches it until it dies or a request arrives.
    async fn run_once(&mut self) -> RunEnd {
        let tail = Tail::new(self.options.tail_lines);
        let mut spawned = match self.spawn(&tail) {
            Ok(Some(spawned)) => spawned,
            Ok(None) => return RunEnd::Request(None),
            Err(error) => {
                return RunEnd::Died {
                    status: format!("could not be started ({error})"),
                    tail: Vec::new(),
                    ready_for: None,
                };
            }
        };
        tracing::debug!(pid = spawned.group, "dev server process started");
        let started = Instant::now();
        let mut ready_since: Option<Instant> = None;
        let mut timeout_reported = false;
        let mut ticks = tokio::time::interval(self.options.health_interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut in_flight: Option<Probe> = None;

        let end = loop {
            tokio::select! {
                exit = spawned.child.wait() => break Ok(exit),
                request = self.requests.recv() => break Err(request),
                _ = ticks.tick(), if ready_since.is_none() && in_flight.is_none() => {
                    let (addr, path) = (self.health, self.plan.health_path.clone());
                    let timeout = self.options.health_request_timeout;
                    in_flight = Some(Box::pin(async move { probe(addr, &path, timeout).await }));
                }
                answer = async { in_flight.as_mut().expect("guarded by the condition").await },
                    if in_flight.is_some() =>
                {
                    in_flight = None;
                    if answer.is_some_and(|status| status < 500) {
                        tracing::info!(elapsed = ?started.elapsed(), url = %self.health_url(), "dev server ready");
                        ready_since = Some(Instant::now());
                        self.set(AppState::Ready);
                    } else if !timeout_reported && started.elapsed() >= self.plan.ready_timeout {
                        timeout_reported = true;
                        let reason = format!(
                            "the dev server did not answer on {} within {}s; still waiting. \
                             Last output:\n{}",
                            self.health_url(),
                            self.plan.ready_timeout.as_secs(),
                            show_tail(&tail.lines())
                        );
                        tracing::warn!("{reason}");
                        self.set(AppState::Failed(reason));
                    }
                }
            }
        };

        let group = spawned.group;
        match end {
            Ok(exit) => {
                kill_leftovers(group).await;
                self.forget(group);
                spawned.pumps.drain(OUTPUT_DRAIN).await;
                let status = match exit {
                    Ok(status) => format!("exited ({status})"),
                    Err(error) => format!("could not be waited for ({error})"),
                };
                RunEnd::Died {
                    status,
                    tail: tail.lines(),
                    ready_for: ready_since.map(|since| since.elapsed()),
                }
            }
            Err(request) => {
                terminate(&mut spawned.child, group, self.options.stop_grace).await;
                self.forget(group);
                spawned.pumps.drain(OUTPUT_DRAIN).await;
                RunEnd::Request(request)
            }
        }
    }

    /// Starts the process unless the handle is gone, recording its group for the handle.
    ///
    /// A port already taken is refused before starting: the health check would otherwise take
    /// the other process's answers for the app's.
    fn spawn(&self, tail: &Arc<Tail>) -> std::io::Result<Option<Spawned>> {
        if let Err(error) = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, self.plan.port))
            && error.kind() == std::io::ErrorKind::AddrInUse
        {
            return Err(std::io::Error::new(
                error.kind(),
                format!(
                    "port {} is already in use by another process",
                    self.plan.port
                ),
            ));
        }
        let mut group = lock(&self.group);
        if group.closed {
            return Ok(None);
        }
        let spawned = spawn_shell(
            &self.sandbox,
            &self.plan.dev,
            &self.workdir,
            &self.env,
            "dev",
            tail,
        )?;
        group.running = Some(spawned.group);
        Ok(Some(spawned))
    }

    fn forget(&self, running: i32) {
        let mut group = lock(&self.group);
        if group.running == Some(running) {
            group.running = None;
        }
    }

    fn health_url(&self) -> String {
        format!("http://{}{}", self.health, self.plan.health_path)
    }

    fn set(&self, state: AppState) {
        self.state.send_if_modified(|current| {
            if *current == state {
                false
            } else {
                *current = state;
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_initial_delay_up_to_the_cap() {
        let options = SupervisorOptions::default();
        let delays: Vec<u64> = (1..=8).map(|n| options.backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(options.backoff(u32::MAX), Duration::from_secs(30));
    }
}
