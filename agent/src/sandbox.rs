//! Where untrusted code runs: the coding CLI, the repository's install and dev-server commands,
//! and everything they start.
//!
//! Two mechanisms, combined when both are available (docs/SECURITY.md):
//! - **another identity**: when the agent runs as root (containers, CI), untrusted processes run
//!   as the unprivileged `AGENT_SANDBOX_USER`, so they cannot read the agent's memory,
//!   `/proc/<pid>/environ`, files or credentials, and every process of that user is ended when
//!   the session stops (a `setsid` or double fork included);
//! - **bubblewrap**: a mount, PID, IPC and UTS namespace in which the file system is read-only
//!   except the working copy and a home of the session's own, the user's and the agent's home
//!   directories, the data directory, `/tmp` and the other sessions' working copies are empty,
//!   no process outside is visible, and nothing survives the sandbox's first process.
//!
//! Without either (a non-root agent on a machine without bubblewrap), untrusted code runs as the
//! agent's user: that is never silent, it is logged at start and said in every status comment.
//!
//! Whatever the mechanism, an untrusted process's environment is built from an allow-list
//! ([`BASE_ENV`] plus what the caller adds), never inherited.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Command;

/// Variables of the agent's environment an untrusted process may have: what tools need to run
/// at all (search path, locale, time zone, the network's proxies and certificate bundles).
/// `HOME`, `USER`, `LOGNAME`, `TMPDIR` and `SHELL` are set by the sandbox, not inherited.
pub const BASE_ENV: &[&str] = &[
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
];

/// Directories hidden (an empty file system mounted over them) in every bubblewrap sandbox:
/// where users' and services' secrets usually live.
const HIDDEN_ALWAYS: &[&str] = &["/root", "/home", "/tmp", "/var/tmp", "/run"];

/// How often the processes of the sandbox user are looked for again while ending them (a
/// process may fork between two looks).
const END_POLL: Duration = Duration::from_millis(20);

/// How long ending every process of the sandbox user may take before giving up (and saying so).
const END_DEADLINE: Duration = Duration::from_secs(5);

/// The confinement asked for (`AGENT_SANDBOX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Requested {
    /// The strongest available: bubblewrap if it works here, another user if the agent is
    /// root; both when both hold; unconfined (said loudly) when neither.
    #[default]
    Auto,
    /// bubblewrap, required (and another user as well when the agent is root).
    Bwrap,
    /// Another user, required (the agent must be root); no bubblewrap.
    User,
    /// No confinement: only for trusted repositories (documented as insecure).
    None,
}

impl std::str::FromStr for Requested {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Self::Auto),
            "bwrap" | "bubblewrap" => Ok(Self::Bwrap),
            "user" => Ok(Self::User),
            "none" => Ok(Self::None),
            other => Err(format!("{other:?} is none of auto, bwrap, user, none")),
        }
    }
}

/// The sandbox settings of the agent's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub requested: Requested,
    /// The unprivileged user untrusted processes run as when the agent is root.
    pub user: String,
    /// The bubblewrap executable.
    pub bwrap: PathBuf,
    /// More paths visible (read-only) inside bubblewrap: tools installed under a home directory.
    pub paths: Vec<PathBuf>,
    /// More variable names passed to untrusted processes (operator's choice).
    pub env: Vec<String>,
}

/// The user of [`Settings::user`] when `AGENT_SANDBOX_USER` is unset.
pub const DEFAULT_USER: &str = "cca-sandbox";

impl Default for Settings {
    fn default() -> Self {
        Self {
            requested: Requested::Auto,
            user: DEFAULT_USER.to_owned(),
            bwrap: PathBuf::from("bwrap"),
            paths: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// Why no sandbox could be had as asked.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "AGENT_SANDBOX=user needs the agent to run as root (it runs as uid {0}); use bwrap or auto"
    )]
    NotRoot(u32),
    #[error(
        "the sandbox user {0:?} (AGENT_SANDBOX_USER) does not exist: create it (useradd --system {0}) or name another"
    )]
    NoUser(String),
    #[error("the sandbox user {0:?} is root: name an unprivileged user")]
    RootUser(String),
    #[error("bubblewrap ({path}) does not work here: {why}")]
    NoBwrap { path: String, why: String },
    #[error(
        "the sandbox user {user} cannot reach the working copy: {path} is not passable for it (mode {mode:o}); put the workspace (AGENT_WORKSPACE, or cca up's --data-dir) under directories others may pass (mode 0711 or more)"
    )]
    Unreachable {
        user: String,
        path: String,
        mode: u32,
    },
    #[error("cannot prepare the sandbox's {what} {path}: {error}")]
    Prepare {
        what: &'static str,
        path: String,
        error: io::Error,
    },
}

/// Who untrusted processes run as.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    /// The agent's own user.
    Same,
    /// Another, unprivileged user (the agent is root).
    Other { uid: u32, gid: u32, name: String },
}

/// The sandbox of one session. See the module documentation.
#[derive(Debug, Clone)]
pub struct Sandbox {
    identity: Identity,
    bwrap: Option<PathBuf>,
    /// Home of the untrusted processes, the session's own.
    home: PathBuf,
    /// The working copy, the only other writable place.
    workdir: PathBuf,
    /// Read-only paths shown inside bubblewrap on top of the hidden ones.
    visible: Vec<PathBuf>,
    /// Paths hidden inside bubblewrap, besides [`HIDDEN_ALWAYS`].
    hidden: Vec<PathBuf>,
    /// Variable names passed on besides [`BASE_ENV`].
    pass_env: Vec<String>,
    /// Why there is no confinement, when there is none.
    unconfined: Option<String>,
}

/// What [`Sandbox::prepare`] needs to know about the session.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// The working copy (created if missing, handed to the sandbox user).
    pub workdir: PathBuf,
    /// The untrusted processes' home (created, handed over, mode 0700).
    pub home: PathBuf,
    /// Paths untrusted processes must not see (bubblewrap), e.g. the data directory, the
    /// workspace holding other sessions, the agent's credential files.
    pub hidden: Vec<PathBuf>,
    /// Paths they must see read-only although a hidden path holds them (the CLI's install).
    pub visible: Vec<PathBuf>,
}

impl Sandbox {
    /// The sandbox for a session laid out as `layout`, as `settings` ask. Fails when what was
    /// asked for explicitly cannot be had; `auto` falls back to less, never silently.
    pub fn prepare(settings: &Settings, layout: &Layout) -> Result<Sandbox, SandboxError> {
        let (identity, bwrap, unconfined) = decide(settings)?;
        let sandbox = Sandbox {
            identity,
            bwrap,
            home: layout.home.clone(),
            workdir: layout.workdir.clone(),
            visible: layout.visible.clone(),
            hidden: layout.hidden.clone(),
            pass_env: settings.env.clone(),
            unconfined,
        };
        let mut visible = sandbox.visible.clone();
        visible.extend(settings.paths.iter().cloned());
        let sandbox = Sandbox { visible, ..sandbox };
        sandbox.check_reachable(&sandbox.workdir)?;
        sandbox.make_dir(&sandbox.home, 0o700, "home")?;
        sandbox.make_dir(&sandbox.workdir, 0o755, "working copy")?;
        match &sandbox.unconfined {
            Some(why) => tracing::warn!(%why, "untrusted code is not confined"),
            None => tracing::info!(sandbox = %sandbox.describe(), "untrusted code is confined"),
        }
        Ok(sandbox)
    }

    /// What `settings` give on this machine, in one line (`cca-agent sandbox`, which `cca up`
    /// prints at start), without preparing a session.
    pub fn probe(settings: &Settings) -> Result<String, SandboxError> {
        let (identity, bwrap, unconfined) = decide(settings)?;
        let sandbox = Sandbox {
            identity,
            bwrap,
            unconfined,
            ..Sandbox::unconfined(Path::new("/"))
        };
        Ok(match sandbox.unconfined_reason() {
            Some(why) => format!("NONE: {why}"),
            None => sandbox.describe(),
        })
    }

    /// No confinement at all, for tests of the parts that run commands.
    pub fn unconfined(workdir: &Path) -> Sandbox {
        Sandbox {
            identity: Identity::Same,
            bwrap: None,
            home: std::env::var_os("HOME").map_or_else(|| workdir.to_path_buf(), PathBuf::from),
            workdir: workdir.to_path_buf(),
            visible: Vec::new(),
            hidden: Vec::new(),
            pass_env: Vec::new(),
            unconfined: Some("unconfined (test)".into()),
        }
    }

    /// One line for logs and the status comment.
    pub fn describe(&self) -> String {
        match (&self.identity, &self.bwrap) {
            (Identity::Other { name, .. }, Some(_)) => format!("bubblewrap as user {name}"),
            (Identity::Other { name, .. }, None) => format!("user {name}"),
            (Identity::Same, Some(_)) => "bubblewrap".to_owned(),
            (Identity::Same, None) => "none".to_owned(),
        }
    }

    /// Why untrusted code is not confined, when it is not: said in every status comment.
    pub fn unconfined_reason(&self) -> Option<&str> {
        self.unconfined.as_deref()
    }

    /// The untrusted processes' home.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The environment every untrusted process starts from.
    fn base_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = BASE_ENV
            .iter()
            .map(|n| (*n).to_owned())
            .chain(self.pass_env.iter().cloned())
            .filter_map(|name| std::env::var(&name).ok().map(|v| (name, v)))
            .collect();
        let user = match &self.identity {
            Identity::Other { name, .. } => name.clone(),
            Identity::Same => nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map_or_else(|| "agent".to_owned(), |u| u.name),
        };
        env.extend([
            ("HOME".to_owned(), self.home.display().to_string()),
            ("USER".to_owned(), user.clone()),
            ("LOGNAME".to_owned(), user),
            ("SHELL".to_owned(), "/bin/sh".to_owned()),
            ("TMPDIR".to_owned(), "/tmp".to_owned()),
        ]);
        env
    }

    /// `program args…` in `cwd`, confined, with the base environment and then `env`; in a
    /// process group of its own, stdin from /dev/null, killed when dropped.
    pub fn command(
        &self,
        program: impl Into<OsString>,
        args: &[OsString],
        cwd: &Path,
        env: &[(String, String)],
    ) -> Command {
        let program = program.into();
        let mut cmd = match &self.bwrap {
            Some(bwrap) => {
                let mut cmd = Command::new(bwrap);
                cmd.args(self.bwrap_args(cwd))
                    .arg("--")
                    .arg(&program)
                    .current_dir("/");
                cmd
            }
            None => {
                let mut cmd = Command::new(&program);
                cmd.current_dir(cwd);
                cmd
            }
        };
        cmd.args(args)
            .env_clear()
            .envs(self.base_env())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        if let Identity::Other { uid, gid, .. } = &self.identity {
            // std drops the supplementary groups of a root parent when it changes the uid.
            cmd.uid(*uid).gid(*gid);
        }
        cmd
    }

    fn bwrap_args(&self, cwd: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = [
            "--die-with-parent",
            "--new-session",
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        // A link (`/var/run` → `/run`) is hidden where it leads, once.
        let mut hidden: Vec<PathBuf> = HIDDEN_ALWAYS
            .iter()
            .map(PathBuf::from)
            .chain(self.hidden.iter().cloned())
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        hidden.sort();
        hidden.dedup();
        for path in hidden {
            if path.is_dir() {
                args.extend(["--tmpfs".into(), path.into_os_string()]);
            } else if path.exists() {
                args.extend([
                    "--ro-bind".into(),
                    "/dev/null".into(),
                    path.into_os_string(),
                ]);
            }
        }
        for path in &self.visible {
            if path.exists() {
                args.extend([
                    "--ro-bind".into(),
                    path.clone().into_os_string(),
                    path.clone().into_os_string(),
                ]);
            }
        }
        for path in [&self.workdir, &self.home] {
            args.extend([
                "--bind".into(),
                path.clone().into_os_string(),
                path.clone().into_os_string(),
            ]);
        }
        args.extend(["--chdir".into(), cwd.as_os_str().to_owned()]);
        args
    }

    /// Hands `path` (and everything under it) to the sandbox user, so untrusted processes can
    /// change what the agent wrote there (a checkout). Symbolic links are changed, not followed.
    pub fn hand_over(&self, path: &Path) -> io::Result<()> {
        let Identity::Other { uid, gid, .. } = &self.identity else {
            return Ok(());
        };
        let mut pending = vec![path.to_path_buf()];
        while let Some(p) = pending.pop() {
            let meta = std::fs::symlink_metadata(&p)?;
            std::os::unix::fs::lchown(&p, Some(*uid), Some(*gid))?;
            if meta.is_dir() {
                for entry in std::fs::read_dir(&p)? {
                    pending.push(entry?.path());
                }
            }
        }
        Ok(())
    }

    /// Whether the sandbox user may pass every directory above `path` (another identity only).
    fn check_reachable(&self, path: &Path) -> Result<(), SandboxError> {
        use std::os::unix::fs::MetadataExt;
        let Identity::Other { uid, gid, name } = &self.identity else {
            return Ok(());
        };
        for dir in path.ancestors().skip(1) {
            let Ok(meta) = std::fs::metadata(dir) else {
                continue;
            };
            let mode = meta.mode();
            let passable = if meta.uid() == *uid {
                mode & 0o100 != 0
            } else if meta.gid() == *gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !passable {
                return Err(SandboxError::Unreachable {
                    user: name.clone(),
                    path: dir.display().to_string(),
                    mode: mode & 0o7777,
                });
            }
        }
        Ok(())
    }

    fn make_dir(&self, path: &Path, mode: u32, what: &'static str) -> Result<(), SandboxError> {
        use std::os::unix::fs::PermissionsExt;
        let fail = |error| SandboxError::Prepare {
            what,
            path: path.display().to_string(),
            error,
        };
        std::fs::create_dir_all(path).map_err(fail)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(fail)?;
        self.hand_over(path).map_err(fail)
    }

    /// Ends every process of the sandbox user (another identity) and waits until none is left;
    /// with bubblewrap alone, each sandbox's processes end with its first process, which the
    /// caller's process-group kill reaches. Returns how many processes were killed.
    pub async fn end_all(&self) -> usize {
        let Identity::Other { uid, .. } = &self.identity else {
            return 0;
        };
        let deadline = tokio::time::Instant::now() + END_DEADLINE;
        let mut killed = 0;
        loop {
            let pids = processes_of(*uid);
            if pids.is_empty() {
                break;
            }
            for pid in &pids {
                if kill(Pid::from_raw(*pid), Signal::SIGKILL).is_ok() {
                    killed += 1;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::error!(
                    uid,
                    left = pids.len(),
                    "processes of the sandbox user are still running"
                );
                break;
            }
            tokio::time::sleep(END_POLL).await;
        }
        if killed > 0 {
            tracing::info!(uid, killed, "ended the sandbox user's processes");
        }
        killed
    }
}

/// Who untrusted code runs as, in which bubblewrap if any, and why it is unconfined if it is:
/// what `settings` ask, as far as this machine allows. `auto` falls back, never silently.
fn decide(
    settings: &Settings,
) -> Result<(Identity, Option<PathBuf>, Option<String>), SandboxError> {
    let euid = nix::unistd::geteuid().as_raw();
    let want_bwrap = matches!(settings.requested, Requested::Auto | Requested::Bwrap);
    let want_user = settings.requested != Requested::None && euid == 0;
    if settings.requested == Requested::User && euid != 0 {
        return Err(SandboxError::NotRoot(euid));
    }
    let identity = if want_user {
        let (uid, gid) = lookup_user(&settings.user)?;
        Identity::Other {
            uid,
            gid,
            name: settings.user.clone(),
        }
    } else {
        Identity::Same
    };
    let bwrap = if want_bwrap {
        match probe_bwrap(&settings.bwrap, &identity) {
            Ok(()) => Some(settings.bwrap.clone()),
            Err(why) if settings.requested == Requested::Bwrap => {
                return Err(SandboxError::NoBwrap {
                    path: settings.bwrap.display().to_string(),
                    why,
                });
            }
            Err(why) => {
                tracing::warn!(bwrap = %settings.bwrap.display(), %why, "bubblewrap is not available");
                None
            }
        }
    } else {
        None
    };
    let unconfined = match (&identity, &bwrap, settings.requested) {
        (Identity::Same, None, Requested::None) => {
            Some("AGENT_SANDBOX=none: untrusted code runs as the agent's user".to_owned())
        }
        (Identity::Same, None, _) => Some(format!(
            "no sandbox available (the agent is not root and bubblewrap at {} does not work): untrusted code runs as the agent's user",
            settings.bwrap.display()
        )),
        _ => None,
    };
    Ok((identity, bwrap, unconfined))
}

/// uid and gid of `user` (a name from /etc/passwd, or `uid[:gid]`).
fn lookup_user(user: &str) -> Result<(u32, u32), SandboxError> {
    let (uid, gid) = if let Ok(uid) = user.split(':').next().unwrap_or("").parse::<u32>() {
        let gid = user
            .split_once(':')
            .and_then(|(_, g)| g.parse().ok())
            .unwrap_or(uid);
        (uid, gid)
    } else {
        match nix::unistd::User::from_name(user) {
            Ok(Some(u)) => (u.uid.as_raw(), u.gid.as_raw()),
            _ => return Err(SandboxError::NoUser(user.to_owned())),
        }
    };
    if uid == 0 {
        return Err(SandboxError::RootUser(user.to_owned()));
    }
    Ok((uid, gid))
}

/// Whether bubblewrap can make a sandbox here, as the identity it would run as.
fn probe_bwrap(bwrap: &Path, identity: &Identity) -> Result<(), String> {
    let mut cmd = std::process::Command::new(bwrap);
    cmd.args([
        "--die-with-parent",
        "--unshare-user",
        "--unshare-pid",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--",
        "true",
    ])
    .env_clear()
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    if let Identity::Other { uid, gid, .. } = identity {
        use std::os::unix::process::CommandExt;
        cmd.uid(*uid).gid(*gid);
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Pids of the live processes whose real or effective uid is `uid`.
fn processes_of(uid: u32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            let zombie = status
                .lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'));
            let uids = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|l| {
                    l.split_whitespace()
                        .take(2)
                        .filter_map(|u| u.parse::<u32>().ok())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            !zombie && uids.contains(&uid)
        })
        .collect()
}

/// Reads a file of the repository as data: a symbolic link is refused (it could name the
/// agent's own files), and at most `limit` bytes are read. `Ok(None)` when there is no file.
pub fn read_repository_file(path: &Path, limit: u64) -> io::Result<Option<String>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(io::Error::other(format!(
                "{} is a symbolic link; the agent reads repository settings only from regular files",
                path.display()
            )));
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::from(io::ErrorKind::IsADirectory));
    }
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let mut text = String::new();
    file.take(limit).read_to_string(&mut text)?;
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_modes_parse_and_errors_name_the_choices() {
        assert_eq!("".parse::<Requested>(), Ok(Requested::Auto));
        assert_eq!("BWRAP".parse::<Requested>(), Ok(Requested::Bwrap));
        assert_eq!("user".parse::<Requested>(), Ok(Requested::User));
        assert_eq!("none".parse::<Requested>(), Ok(Requested::None));
        let err = "docker".parse::<Requested>().unwrap_err();
        assert!(err.contains("auto, bwrap, user, none"), "{err}");
    }

    #[test]
    fn users_are_names_or_numbers_and_never_root() {
        assert_eq!(lookup_user("1234").unwrap(), (1234, 1234));
        assert_eq!(lookup_user("1234:99").unwrap(), (1234, 99));
        assert!(matches!(lookup_user("0"), Err(SandboxError::RootUser(_))));
        assert!(matches!(
            lookup_user("no-such-user-here"),
            Err(SandboxError::NoUser(_))
        ));
    }

    #[test]
    fn repository_files_behind_a_link_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "key").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), dir.path().join(".cca.toml"))
            .unwrap();
        let err = read_repository_file(&dir.path().join(".cca.toml"), 1024).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(
            read_repository_file(&dir.path().join("missing"), 1024).unwrap(),
            None
        );
        std::fs::write(dir.path().join("big"), "x".repeat(5000)).unwrap();
        let text = read_repository_file(&dir.path().join("big"), 100)
            .unwrap()
            .unwrap();
        assert_eq!(text.len(), 100);
    }

    #[test]
    fn the_environment_is_an_allow_list() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::unconfined(dir.path());
        let env = sandbox.base_env();
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        for name in &names {
            assert!(
                BASE_ENV.contains(name)
                    || ["HOME", "USER", "LOGNAME", "SHELL", "TMPDIR"].contains(name),
                "{name} is not on the allow-list"
            );
        }
    }
}
