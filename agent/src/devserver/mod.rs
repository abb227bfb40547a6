//! The app's dev server: per-repository settings, detection, install and supervision.
//!
//! A session serves a live preview of the repository's app through the proxy. What to run comes
//! from the repository's settings file ([`SETTINGS_FILE`], see `docs/REPOSITORY-SETTINGS.md`) or,
//! without one, from what the repository contains ([`detect`]). [`plan`] turns either into an
//! [`AppPlan`]; [`install`] runs its install command once; [`Supervisor`] runs the dev server in
//! its own process group, tells when it answers on its health path, restarts it with back-off
//! when it dies, and kills the whole group when it is stopped or dropped.
//!
//! Both run in the session's sandbox ([`crate::sandbox`]), and neither inherits the agent's
//! environment: they get the sandbox's allow-list, the variables the caller passes, the
//! repository's own `[app.env]`, and `PORT` / `HOST`. Credentials of the agent never reach the
//! app.

mod detect;
mod health;
mod install;
mod output;
mod process;
pub(crate) mod settings;
mod supervisor;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use detect::{Detected, RepoFiles, detect};
pub use health::probe;
pub use install::{InstallError, install};
pub use settings::{SETTINGS_FILE, SettingsError};
pub use supervisor::{AppState, Supervisor, SupervisorOptions, backoff_delay};

/// Health path used when the settings file names none: the root, which every dev server serves
/// (a 404 there still proves the server answers).
pub const DEFAULT_HEALTH_PATH: &str = "/";

/// How long one start of the dev server may take to answer before the session reports it as
/// failed. First starts compile the whole app (Next.js, large Vite apps) and can take minutes on a
/// small container; the supervisor keeps waiting after this, so it bounds only the report.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(180);

/// How to install and run a repository's app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPlan {
    /// Shell command run once before the dev server (`sh -c`), if any.
    pub install: Option<String>,
    /// Shell command of the dev server (`sh -c`); it finds its port in `$PORT`.
    pub dev: String,
    /// Port the dev server listens on, the port the proxy forwards to.
    pub port: u16,
    /// Path answered by the dev server once it is ready; starts with `/`.
    pub health_path: String,
    /// Variables the repository asks for (`[app.env]`).
    pub env: BTreeMap<String, String>,
    /// How long a start may take before it is reported as failed.
    pub ready_timeout: Duration,
    /// Where the plan comes from, for logs and reports.
    pub source: PlanSource,
}

impl AppPlan {
    /// The address the supervisor checks, on the loopback interface.
    pub fn health_url(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.health_path)
    }
}

/// Where an [`AppPlan`] comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanSource {
    /// The repository's settings file, at this path (detected values fill what it leaves out).
    File(PathBuf),
    /// Detected from the repository's files; says what was recognised.
    Detected(String),
}

impl fmt::Display for PlanSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanSource::File(path) => write!(f, "{}", path.display()),
            PlanSource::Detected(what) => write!(f, "detected: {what}"),
        }
    }
}

/// Reads the settings file at the repository root, or detects what to run; `Ok(None)` when the
/// repository has no app to run (nothing detected, or `[app] enabled = false`).
///
/// `port` is the agent's app port, used unless the settings file names another one;
/// `control_port` is the agent's control API, which no app may take: the proxy would send the
/// preview's visitors to it. Detection runs only when the settings file does not name the dev
/// command, so a repository whose files confuse detection can always say what to run.
pub fn plan(
    workdir: &Path,
    port: u16,
    control_port: u16,
) -> Result<Option<AppPlan>, SettingsError> {
    let file = settings::read(workdir)?;
    let path = file.as_ref().map(|f| f.path.clone());
    let plan = settings::resolve(file, || detect(&RepoFiles::read(workdir)?), port)?;
    if let (Some(plan), Some(path)) = (&plan, path)
        && plan.port == control_port
        && plan.port != port
    {
        return Err(SettingsError::Invalid {
            path,
            key: "app.port".to_owned(),
            reason: format!(
                "{control_port} is the agent's control port; give the app another port"
            ),
        });
    }
    Ok(plan)
}
