//! `cca sessions list | show | stop`: the sessions of any store, for an operator.

use std::io::ErrorKind;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use cca_domain::session::SessionPatch;
use cca_domain::{Session, SessionId, Status};
use cca_store::{ListFilter, SessionStore};
use cca_webhook::app::now;
use clap::Subcommand;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::store::{self, Location, StoreArgs};

/// Prefix of the task ARN the process launcher records for a local agent: `process:<pid>`.
pub(crate) const PROCESS_ARN_PREFIX: &str = "process:";

/// `cca sessions …`.
#[derive(Debug, clap::Args)]
pub struct SessionsArgs {
    #[command(subcommand)]
    command: SessionsCommand,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// List sessions, newest first.
    List {
        /// Only sessions in this status (repeatable), e.g. `--status running --status idle`.
        #[arg(long = "status", value_name = "STATUS", value_parser = parse_status)]
        statuses: Vec<Status>,
        /// Print the records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show every field of one session.
    Show {
        /// The session id.
        id: String,
        /// Print the record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a session: mark it STOPPING and ask its local agent process to stop.
    Stop {
        /// The session id.
        id: String,
    },
}

fn parse_status(s: &str) -> Result<Status, String> {
    s.to_ascii_uppercase().parse().map_err(|_| {
        let all: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        format!("expected one of {}", all.join(", "))
    })
}

/// Runs a `cca sessions` command.
pub async fn run(args: SessionsArgs) -> anyhow::Result<ExitCode> {
    let location = args.store.location()?;
    let store = store::open(&location, &cca_settings::Aws::default()).await?;
    match args.command {
        SessionsCommand::List { statuses, json } => {
            let sessions = match &store {
                Some(store) => {
                    let filter = ListFilter {
                        statuses,
                        limit: None,
                    };
                    store.list(&filter).await.context("cannot list sessions")?
                }
                None => Vec::new(),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&sessions)?);
            } else if sessions.is_empty() {
                println!("no sessions in {location}");
            } else {
                print!("{}", table(&sessions));
            }
            Ok(ExitCode::SUCCESS)
        }
        SessionsCommand::Show { id, json } => {
            let Some(session) = find(store.as_deref(), &location, &id).await? else {
                return Ok(ExitCode::FAILURE);
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&session)?);
            } else {
                let rows = fields(&session);
                let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
                for (name, value) in rows {
                    println!("{name:<width$}  {value}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SessionsCommand::Stop { id } => {
            let Some(session) = find(store.as_deref(), &location, &id).await? else {
                return Ok(ExitCode::FAILURE);
            };
            let store = store.context("the store disappeared")?;
            stop(store, session).await
        }
    }
}

/// The session with id `raw`; `None` after telling the user there is none.
async fn find(
    store: Option<&dyn SessionStore>,
    location: &Location,
    raw: &str,
) -> anyhow::Result<Option<Session>> {
    let found = match (SessionId::parse(raw), store) {
        (Ok(id), Some(store)) => store
            .get(&id)
            .await
            .with_context(|| format!("cannot read session {id}"))?,
        // A malformed id names no session; saying so is more useful than a syntax lecture.
        (Err(_), _) | (_, None) => None,
    };
    if found.is_none() {
        eprintln!("cca: no session {raw} in {location}");
    }
    Ok(found)
}

/// Marks the session STOPPING and stops what can be stopped from here.
async fn stop(store: Arc<dyn SessionStore>, session: Session) -> anyhow::Result<ExitCode> {
    let id = session.session_id.clone();
    if session.status.is_terminal() {
        println!("session {id} has already ended: {}", session.status);
        return Ok(ExitCode::SUCCESS);
    }
    if session.status != Status::Stopping {
        store
            .transition(&id, Status::Stopping, SessionPatch::default(), now())
            .await
            .with_context(|| format!("cannot mark session {id} STOPPING"))?;
    }
    let mark_stopped = |why: String| {
        let store = Arc::clone(&store);
        let id = id.clone();
        async move {
            store
                .transition(&id, Status::Stopped, SessionPatch::default(), now())
                .await
                .with_context(|| format!("cannot mark session {id} STOPPED"))?;
            println!("session {id}: {why}; marked STOPPED");
            anyhow::Ok(ExitCode::SUCCESS)
        }
    };
    let Some(arn) = session.task_arn.clone() else {
        return mark_stopped("no agent was started".into()).await;
    };
    let Some(pid) = arn
        .strip_prefix(PROCESS_ARN_PREFIX)
        .and_then(|p| p.parse::<i32>().ok())
    else {
        println!(
            "session {id}: marked STOPPING; its task {arn} was not signalled (this version stops \
             local agents only): stop it with `aws ecs stop-task --cluster <cluster> --task {arn}`"
        );
        return Ok(ExitCode::SUCCESS);
    };
    match identify(pid, &id) {
        Process::Ours => {
            kill(Pid::from_raw(pid), Signal::SIGTERM)
                .with_context(|| format!("cannot send SIGTERM to agent process {pid}"))?;
            println!(
                "session {id}: marked STOPPING; sent SIGTERM to agent process {pid}, which \
                 pushes its work in progress and exits"
            );
            Ok(ExitCode::SUCCESS)
        }
        Process::Gone => mark_stopped(format!("agent process {pid} is no longer running")).await,
        Process::Other => {
            mark_stopped(format!(
                "process {pid} is no longer this session's agent (left alone)"
            ))
            .await
        }
    }
}

/// What a recorded pid is now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Process {
    /// The session's agent, still running.
    Ours,
    /// No such process.
    Gone,
    /// Another process (the pid was reused) or one that cannot be inspected: not to be signalled.
    Other,
}

/// Checks that `pid` still runs this session's agent before it is signalled: the record outlives
/// the process, and after `cca up` restarts, the pid may belong to anything.
pub(crate) fn identify(pid: i32, id: &SessionId) -> Process {
    if std::path::Path::new("/proc/self").exists() {
        let wanted = format!("{}={id}", cca_launcher::env::SESSION_ID);
        return match std::fs::read(format!("/proc/{pid}/environ")) {
            // A zombie's environment reads empty: it has exited, so it is not ours to stop.
            Ok(env) if env.split(|b| *b == 0).any(|v| v == wanted.as_bytes()) => Process::Ours,
            Ok(_) => Process::Other,
            Err(e) if e.kind() == ErrorKind::NotFound => Process::Gone,
            Err(_) => Process::Other,
        };
    }
    // Without procfs (macOS) only liveness can be checked.
    match kill(Pid::from_raw(pid), None) {
        Ok(()) => Process::Ours,
        Err(Errno::ESRCH) => Process::Gone,
        Err(_) => Process::Other,
    }
}

/// Unix seconds as a UTC date and time; the raw number when out of range.
fn when(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_owned(), T::to_string)
}

/// What the session works on: the JIRA key or the issue, and the PR.
fn subject(s: &Session) -> String {
    let work = match (&s.jira_issue_key, s.issue_number) {
        (Some(key), _) => Some(key.to_string()),
        (None, Some(n)) => Some(format!("#{n}")),
        (None, None) => None,
    };
    let pr = s.pr_number.map(|n| format!("PR #{n}"));
    match (work, pr) {
        (Some(w), Some(p)) => format!("{w} {p}"),
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => "-".into(),
    }
}

/// The sessions as an aligned table with a header.
fn table(sessions: &[Session]) -> String {
    let header = [
        "ID", "TYPE", "STATUS", "REPO", "ISSUE/PR", "BRANCH", "CREATED",
    ]
    .map(str::to_owned);
    let rows: Vec<[String; 7]> = std::iter::once(header)
        .chain(sessions.iter().map(|s| {
            [
                s.session_id.to_string(),
                s.session_type.to_string(),
                s.status.to_string(),
                s.repo_full_name.to_string(),
                subject(s),
                s.branch_name.to_string(),
                when(s.created_at),
            ]
        }))
        .collect();
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Every field of the record, named as stored, in the record's order.
fn fields(s: &Session) -> Vec<(&'static str, String)> {
    let time = |t: &Option<i64>| t.map_or_else(|| "-".to_owned(), |t| format!("{} ({t})", when(t)));
    vec![
        ("session_id", s.session_id.to_string()),
        ("session_type", s.session_type.to_string()),
        ("source", s.source.to_string()),
        ("repo_full_name", s.repo_full_name.to_string()),
        ("issue_number", opt(&s.issue_number)),
        ("pr_number", opt(&s.pr_number)),
        ("branch_name", s.branch_name.to_string()),
        ("jira_issue_key", opt(&s.jira_issue_key)),
        ("status", s.status.to_string()),
        ("image_channel", s.image_channel.to_string()),
        ("installation_id", opt(&s.installation_id)),
        ("initial_prompt", opt(&s.initial_prompt)),
        ("task_arn", opt(&s.task_arn)),
        ("container_ip", opt(&s.container_ip)),
        ("app_port", opt(&s.app_port)),
        ("control_port", opt(&s.control_port)),
        ("uat_url", opt(&s.uat_url)),
        ("claude_session_id", opt(&s.claude_session_id)),
        (
            "cost_usd",
            s.cost_usd.map_or("-".into(), |c| format!("{c:.4}")),
        ),
        ("turns", opt(&s.turns)),
        ("runs", opt(&s.runs)),
        ("prompt_threads", opt(&s.prompt_threads)),
        ("error", opt(&s.error)),
        ("created_at", time(&Some(s.created_at))),
        ("updated_at", time(&Some(s.updated_at))),
        ("last_activity", time(&s.last_activity)),
        ("heartbeat_at", time(&s.heartbeat_at)),
        ("ttl", time(&s.ttl)),
        ("preview_public", s.preview_public.to_string()),
        ("plan_mode", s.plan_mode.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use cca_domain::{ImageChannel, RepoName, SessionType, Source};

    use super::*;

    fn session() -> Session {
        let mut s = Session::new(
            SessionId::parse("abc123").unwrap(),
            SessionType::Agent,
            Source::Github,
            RepoName::parse("octo/app").unwrap(),
            cca_domain::naming::issue_branch(7),
            ImageChannel::Latest,
            1_700_000_000,
        );
        s.issue_number = Some(7);
        s.pr_number = Some(8);
        s
    }

    #[test]
    fn show_names_every_stored_field() {
        let s = session();
        let json = serde_json::to_value(&s).unwrap();
        let shown: Vec<&str> = fields(&s).into_iter().map(|(k, _)| k).collect();
        for key in json.as_object().unwrap().keys() {
            assert!(shown.contains(&key.as_str()), "show omits {key}");
        }
    }

    #[test]
    fn the_table_is_aligned_and_readable() {
        let out = table(&[session()]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID    "));
        assert!(lines[1].contains("#7 PR #8"));
        assert!(lines[1].ends_with("2023-11-14 22:13:20Z"));
        assert_eq!(lines[0].find("STATUS"), lines[1].find("PROVISIONING"));
    }

    #[test]
    fn statuses_parse_in_any_case() {
        assert_eq!(parse_status("running").unwrap(), Status::Running);
        assert!(parse_status("busy").unwrap_err().contains("RUNNING"));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_pid_that_is_not_the_agent_is_left_alone() {
        let id = SessionId::parse("abc123").unwrap();
        let me = i32::try_from(std::process::id()).unwrap();
        assert_eq!(identify(me, &id), Process::Other);
        assert_eq!(identify(i32::MAX, &id), Process::Gone);
    }
}
