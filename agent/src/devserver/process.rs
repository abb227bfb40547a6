//! Shell commands in their own process group: `npm run dev` starts a tree of processes (npm, a
//! shell, node, esbuild…), and only signalling the whole group stops all of them.

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;

use crate::sandbox::Sandbox;

use super::AppPlan;
use super::output::{Pumps, Tail, pump};

/// Pause between checks that the processes of a signalled group are gone.
const GROUP_POLL: Duration = Duration::from_millis(50);

/// How long to wait for a killed group to disappear before starting again on the same port.
const KILL_SETTLE: Duration = Duration::from_secs(1);

/// Environment of the dev server, later entries winning: the caller's, `HOST`, the repository's
/// `[app.env]` (which may change `HOST`), then `PORT`, which nothing overrides.
pub(crate) fn dev_env(given: &[(String, String)], plan: &AppPlan) -> Vec<(String, String)> {
    let mut env = given.to_vec();
    env.push(("HOST".into(), "0.0.0.0".into()));
    env.extend(plan.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.push(("PORT".into(), plan.port.to_string()));
    env
}

/// Environment of the install: `CI=true` (package managers then never wait for an answer on a
/// terminal), the caller's variables, then the repository's `[app.env]`.
pub(crate) fn install_env(given: &[(String, String)], plan: &AppPlan) -> Vec<(String, String)> {
    let mut env = vec![("CI".to_owned(), "true".to_owned())];
    env.extend_from_slice(given);
    env.extend(plan.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// A running shell command and what reads its output.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) child: Child,
    /// Id of the process group, which is the shell's pid.
    pub(crate) group: i32,
    pub(crate) pumps: Pumps,
}

/// Starts `sh -c <script>` in `workdir`, inside `sandbox` (its allow-listed environment, then
/// `env`), in a new process group, stdin closed, output into the log under `phase`.
pub(crate) fn spawn_shell(
    sandbox: &Sandbox,
    script: &str,
    workdir: &Path,
    env: &[(String, String)],
    phase: &'static str,
    tail: &Arc<Tail>,
) -> io::Result<Spawned> {
    let args = [OsString::from("-c"), OsString::from(script)];
    let mut command = sandbox.command("sh", &args, workdir, env);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let group = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .ok_or_else(|| io::Error::other("the started process has no pid"))?;
    let pumps = pump(child.stdout.take(), child.stderr.take(), phase, tail);
    Ok(Spawned {
        child,
        group,
        pumps,
    })
}

/// Sends `signal` to every process of the group; false when the group no longer exists.
pub(crate) fn signal_group(group: i32, signal: Signal) -> bool {
    match killpg(Pid::from_raw(group), signal) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(error) => {
            tracing::warn!(group, %signal, %error, "cannot signal the app's process group");
            false
        }
    }
}

/// Whether any live process of the group is left. Zombies do not count: a process whose parent
/// died waits for the init process to reap it, which may be slow or, when the agent itself is
/// the container's first process, never happen; it holds no port and runs no code.
fn group_exists(group: i32) -> bool {
    match live_members(group) {
        Some(count) => count > 0,
        // No /proc to look at: whether the group has any member, zombies included.
        None => killpg(Pid::from_raw(group), None).is_ok(),
    }
}

/// Number of processes of the group that are not zombies, from `/proc`; `None` without it.
fn live_members(group: i32) -> Option<usize> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let mut live = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        // A process may end while being read: then it is simply not counted.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if stat_group(&stat).is_some_and(|(state, pgrp)| pgrp == group && state != 'Z') {
            live += 1;
        }
    }
    Some(live)
}

/// State and process group from the text of `/proc/<pid>/stat`: `pid (comm) state ppid pgrp …`,
/// where `comm` may itself contain spaces and parentheses.
fn stat_group(stat: &str) -> Option<(char, i32)> {
    let (_, rest) = stat.rsplit_once(") ")?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// Kills what is left of a group whose leader has exited, and waits briefly for it to go so
/// the next start finds its port free.
pub(crate) async fn kill_leftovers(group: i32) {
    if signal_group(group, Signal::SIGKILL) {
        settle(group, KILL_SETTLE).await;
    }
}

async fn settle(group: i32, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while group_exists(group) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(GROUP_POLL).await;
    }
}

/// Stops a running command: SIGTERM to the group, SIGKILL to whatever is left after `grace`.
/// Returns the shell's exit status when it could be collected.
pub(crate) async fn terminate(
    child: &mut Child,
    group: i32,
    grace: Duration,
) -> Option<ExitStatus> {
    let deadline = tokio::time::Instant::now() + grace;
    signal_group(group, Signal::SIGTERM);
    let mut status = tokio::time::timeout_at(deadline, child.wait())
        .await
        .ok()
        .and_then(Result::ok);
    // Children may take longer than the shell that started them.
    settle(
        group,
        deadline.saturating_duration_since(tokio::time::Instant::now()),
    )
    .await;
    if group_exists(group) && signal_group(group, Signal::SIGKILL) {
        tracing::warn!(
            group,
            "the app did not stop within {grace:?} of SIGTERM; killed"
        );
        settle(group, KILL_SETTLE).await;
    }
    if status.is_none() {
        status = child.wait().await.ok();
    }
    status
}

/// Kills the group when dropped, unless disarmed: a caller that gives up on a command (a
/// time-out around [`super::install`]) must not leave it running.
#[derive(Debug)]
pub(crate) struct GroupGuard(pub(crate) Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0.take() {
            signal_group(group, Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::devserver::PlanSource;

    fn plan(env: &[(&str, &str)]) -> AppPlan {
        AppPlan {
            install: None,
            dev: "true".into(),
            port: 4321,
            health_path: "/".into(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            ready_timeout: Duration::from_secs(1),
            source: PlanSource::Detected("test".into()),
        }
    }

    fn last<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn proc_stat_lines_give_state_and_group() {
        assert_eq!(
            stat_group("4242 (node server.js) S 4200 4100 4100 0 -1"),
            Some(('S', 4100))
        );
        assert_eq!(stat_group("7 (a) b) (c) Z 1 7 7"), Some(('Z', 7)));
        assert_eq!(stat_group("garbage"), None);
    }

    #[test]
    fn the_repository_overrides_the_caller_and_port_overrides_everything() {
        let given = [
            ("PORT".to_owned(), "1".to_owned()),
            ("A".to_owned(), "caller".to_owned()),
        ];
        let env = dev_env(&given, &plan(&[("A", "repo"), ("HOST", "::")]));
        assert_eq!(last(&env, "PORT"), Some("4321"));
        assert_eq!(last(&env, "A"), Some("repo"));
        assert_eq!(last(&env, "HOST"), Some("::"));
        assert_eq!(last(&dev_env(&[], &plan(&[])), "HOST"), Some("0.0.0.0"));

        let env = install_env(&given, &plan(&[("A", "repo")]));
        assert_eq!(last(&env, "CI"), Some("true"));
        assert_eq!(last(&env, "A"), Some("repo"));
    }
}
