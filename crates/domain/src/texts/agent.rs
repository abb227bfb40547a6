//! What an agent says on its PR: the status comment (edited in place), one summary per run, the
//! comments about limits, refused pushes and idleness, and the commit messages it pushes.
//! `cca-agent` passes what varies; the words are here.

use std::fmt::{self, Write as _};
use std::time::Duration;

use super::MARKER;
use crate::naming::clip;

/// A commit of a run, newest first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Commit {
    pub sha: String,
    pub subject: String,
}

/// A file a run changed (`A`, `M`, `D`, `R…`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChangedFile {
    pub status: String,
    pub path: String,
}

/// What the status comment shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusView {
    pub session_id: String,
    pub headline: String,
    pub preview_url: Option<String>,
    pub app: Option<String>,
    pub step: Option<String>,
    pub last_activity: Option<i64>,
    pub runs: u32,
    pub turns: u32,
    pub cost_usd: f64,
    pub queued: usize,
    /// Why untrusted code runs unconfined, when it does: said in every version of the comment.
    pub unconfined: Option<String>,
    /// The PR is open for review because GitHub refused a draft in this repository.
    pub ready_not_draft: bool,
}

impl StatusView {
    /// The comment body.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{MARKER}\n### 🤖 Claude agent `{}`\n\n**Status:** {}\n",
            self.session_id, self.headline
        );
        if let Some(url) = &self.preview_url {
            let app = self.app.as_deref().unwrap_or("not started");
            let _ = writeln!(s, "**Preview:** {url} (app: {app})");
        }
        if let Some(step) = &self.step {
            let _ = writeln!(s, "**Current step:** {}", clip(step, 300));
        }
        if self.queued > 0 {
            let _ = writeln!(s, "**Queued requests:** {}", self.queued);
        }
        if let Some(t) = self.last_activity {
            let _ = writeln!(s, "**Last activity:** {}", utc(t));
        }
        if self.ready_not_draft {
            let _ = writeln!(
                s,
                "**Pull request:** open for review, not a draft: GitHub offers no draft pull requests in this repository. Wait for this comment to say the run finished before you merge."
            );
        }
        if let Some(why) = &self.unconfined {
            let _ = writeln!(
                s,
                "**:warning: No sandbox:** {why}. Code from the issue, the model and the repository can reach this agent's credentials."
            );
        }
        let _ = write!(
            s,
            "\n<sub>Runs: {} · Turns: {} · Cost: ${:.4} · This comment is updated as the agent works; comment on the PR to give it more to do.</sub>",
            self.runs, self.turns, self.cost_usd
        );
        s
    }
}

/// `2026-11-21 12:00:03 UTC`.
pub fn utc(unix: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .map_or_else(|| unix.to_string(), |t| format!("{t} UTC"))
}

/// `5 min`, or `40 s` under a minute.
pub fn human(d: Duration) -> String {
    match d.as_secs() / 60 {
        0 => format!("{} s", d.as_secs()),
        minutes => format!("{minutes} min"),
    }
}

/// How a run ended, for its summary.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub number: u32,
    pub author: Option<String>,
    pub succeeded: bool,
    pub text: String,
    pub failure: Option<String>,
    /// A limit that ended or refused the work.
    pub limit: Option<Limit>,
    pub commits: Vec<Commit>,
    pub files: Vec<ChangedFile>,
    pub cost_usd: Option<f64>,
    pub turns: Option<u32>,
    pub duration: Duration,
    pub push_error: Option<String>,
}

impl RunSummary {
    /// The comment posted on the PR when the run ends.
    pub fn render(&self) -> String {
        let mut s = String::from(MARKER);
        s.push('\n');
        let who = self
            .author
            .as_deref()
            .map(|a| format!(" (requested by @{a})"))
            .unwrap_or_default();
        if self.succeeded {
            let _ = writeln!(s, "### ✅ Run {} finished{who}\n", self.number);
        } else {
            let _ = writeln!(s, "### ⚠️ Run {} failed{who}\n", self.number);
        }
        if let Some(why) = &self.failure {
            let _ = writeln!(s, "**Reason:** {}\n", clip(why, 2000));
        }
        if let Some(limit) = &self.limit {
            let _ = writeln!(s, "**Limit reached:** {limit}\n");
        }
        if !self.text.trim().is_empty() {
            for line in clip(self.text.trim(), 3000).lines() {
                let _ = writeln!(s, "> {line}");
            }
            s.push('\n');
        }
        if self.commits.is_empty() {
            s.push_str("**Commits:** none in this run\n");
        } else {
            let _ = writeln!(s, "**Commits** (this run, newest first):");
            for c in self.commits.iter().take(30) {
                let _ = writeln!(s, "- `{}` {}", short_sha(&c.sha), clip(&c.subject, 120));
            }
            if self.commits.len() > 30 {
                let _ = writeln!(s, "- … and {} more", self.commits.len() - 30);
            }
        }
        if !self.files.is_empty() {
            let list: Vec<String> = self
                .files
                .iter()
                .take(50)
                .map(|f| format!("`{} {}`", f.status, f.path))
                .collect();
            let more = if self.files.len() > 50 {
                format!(" and {} more", self.files.len() - 50)
            } else {
                String::new()
            };
            let _ = writeln!(s, "\n**Files changed:** {}{more}", list.join(", "));
        }
        if let Some(e) = &self.push_error {
            let _ = writeln!(s, "\n:warning: **Push failed:** {}", clip(e, 1000));
        }
        let cost = self
            .cost_usd
            .map_or_else(|| "unknown".to_owned(), |c| format!("${c:.4}"));
        let turns = self
            .turns
            .map_or_else(|| "unknown".to_owned(), |t| t.to_string());
        let _ = write!(
            s,
            "\n<sub>Cost: {cost} · Turns: {turns} · Duration: {} s</sub>",
            self.duration.as_secs()
        );
        s
    }
}

/// The first seven characters of a commit id.
pub fn short_sha(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// A limit that ended a run or forbids the next one. Said plainly, with the setting that sets it.
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    SessionTurns {
        used: u32,
        max: u32,
    },
    SessionCost {
        spent: f64,
        max: f64,
    },
    SessionTokens {
        used: u64,
        max: u64,
    },
    RunWallTime(Duration),
    RunSilence(Duration),
    RunTurns {
        max: u32,
    },
    RunBudget {
        budget: f64,
        per_run: f64,
        per_session: f64,
    },
    /// The model gateway refused further requests once this was spent.
    GatewayRefused(String),
    /// The session was stopped, for this reason.
    Stopped(String),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SessionTurns { used, max } => {
                write!(f, "{used} turns used of MAX_TURNS_PER_SESSION {max}")
            }
            Self::SessionCost { spent, max } => {
                write!(f, "${spent:.2} spent of MAX_COST_PER_SESSION_USD ${max:.2}")
            }
            Self::SessionTokens { used, max } => {
                write!(f, "{used} tokens used of MAX_TOKENS_PER_SESSION {max}")
            }
            Self::RunWallTime(d) => write!(
                f,
                "the run's wall time of {} s (RUN_TIMEOUT_SECS)",
                d.as_secs()
            ),
            Self::RunSilence(d) => write!(
                f,
                "no output for {} s (RUN_SILENCE_TIMEOUT_SECS)",
                d.as_secs()
            ),
            Self::RunTurns { max } => {
                write!(f, "the run's turn limit of {max} (MAX_TURNS_PER_RUN)")
            }
            Self::RunBudget {
                budget,
                per_run,
                per_session,
            } => write!(
                f,
                "the run's budget of ${budget:.4} (MAX_COST_PER_RUN_USD ${per_run:.2}, or what is left of MAX_COST_PER_SESSION_USD ${per_session:.2})"
            ),
            Self::GatewayRefused(what) => write!(
                f,
                "{what} is spent; the model gateway refused further requests"
            ),
            Self::Stopped(reason) => write!(f, "the session was stopped: {reason}"),
        }
    }
}

/// A session limit forbids another run: said on the PR, and the session stops.
pub fn session_limit_reached(limit: &Limit) -> String {
    format!(
        ":octagonal_sign: **Session limit reached:** {limit}. The session stops; re-add the label to start a new one."
    )
}

/// The session's cost limit forbids another run, and writers may still raise it: the prompt is
/// kept for `/claude retry`, and the session waits.
pub fn session_cost_limit_raisable(limit: &Limit, cap_usd: f64) -> String {
    format!(
        ":moneybag: **Session limit reached:** {limit}. This prompt did not run. A writer's `/claude budget +N` raises the limit (up to ${cap_usd:.2}, MAX_COST_PER_SESSION_CAP_USD), then `/claude retry` runs it; otherwise the session stops when idle."
    )
}

/// Why the session stops at a session limit (the record's error and the stop's reason).
pub fn session_limit_reason(limit: &Limit) -> String {
    format!("session limit reached: {limit}")
}

/// The plan a run in plan mode wrote, posted on the PR to be approved or revised.
pub fn plan_posted(number: u32, plan: &str, succeeded: bool, failure: Option<&str>) -> String {
    let body = match (succeeded, plan.trim().is_empty()) {
        (true, false) => clip(plan.trim(), 60_000).into_owned(),
        (true, true) => "_The run ended without writing a plan._".to_owned(),
        (false, _) => format!(
            "_The run failed before it finished the plan: {}_",
            failure.unwrap_or("no reason given")
        ),
    };
    format!(
        "{MARKER}\n:clipboard: **Plan (run {number})**: nothing was changed, committed or pushed.\n\n{body}\n\n\
         ---\nA writer's `/claude approve` implements this plan in the same conversation; any other \
         mention of the agent asks for a revised plan."
    )
}

/// An approval whose turn came after a revised plan was posted: not the plan approved.
pub const PLAN_CHANGED_SINCE_APPROVAL: &str = ":arrows_counterclockwise: **Not implemented:** a revised plan was posted after this approval was given. A writer's `/claude approve` implements the plan as it now stands.";

/// A run that could not begin (its working copy is unreadable).
pub fn run_could_not_start(number: u32, error: &str) -> String {
    format!(":warning: **Run {number} could not start:** {error}")
}

/// The record's error after a failed run.
pub fn run_failed_error(number: u32, failure: &str) -> String {
    format!("run {number} failed: {failure}")
}

/// The record's error after a run whose push failed.
pub fn run_push_failed_error(number: u32, error: &str) -> String {
    format!("run {number}: push failed: {error}")
}

/// The message of the commit of what a run left uncommitted.
pub fn run_commit_message(number: u32, prompt: &str) -> String {
    format!(
        "Apply changes from Claude run {number}: {}",
        clip(prompt.lines().next().unwrap_or("").trim(), 60)
    )
}

/// The message of the commit of the work in progress when the session stops.
pub fn wip_commit_message(reason: &str) -> String {
    format!(
        "WIP: work in progress when the session stopped ({})",
        clip(reason, 60)
    )
}

/// Why the session stops on a signal.
pub fn stopped_by_signal(name: &str) -> String {
    format!("the container was stopped ({name})")
}

/// Why the session stops at the idle timeout.
pub fn idle_reason(idle: Duration) -> String {
    format!("idle for {}", human(idle))
}

/// Which kind of session an idle warning speaks of: they measure activity differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idler {
    /// A coding session: runs and prompts.
    Session,
    /// A preview: the proxy's traffic.
    Preview,
}

/// The one warning before the idle timeout.
pub fn idle_warning(who: Idler, left: Duration) -> String {
    match who {
        Idler::Session => format!(
            ":hourglass: **Idle Warning**: this session stops in about {} unless it gets a comment.",
            human(left)
        ),
        Idler::Preview => format!(
            ":hourglass: **Idle Warning**: this preview stops in about {} unless it is used.",
            human(left)
        ),
    }
}

/// The idle timeout ended the session.
pub fn idle_expired(who: Idler, timeout: Duration) -> String {
    let idle = human(timeout);
    match who {
        Idler::Session => format!(
            ":zzz: **Session Terminated**: no activity for {idle} (IDLE_TIMEOUT_SECS). Re-add the label to start again."
        ),
        Idler::Preview => format!(
            ":zzz: **Preview stopped**: no traffic for {idle} (IDLE_TIMEOUT_SECS). Re-add the label to start it again."
        ),
    }
}

/// What a refused push became, for the PR and the run's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept<'a> {
    /// Pushed to a branch of its own.
    Branch(&'a str),
    /// Posted as a patch in the next comment.
    Patch,
    /// The patch is too large for a comment (`kb`); the files (paths) are named.
    TooLarge {
        kb: usize,
        gone: Gone,
        files: &'a [String],
    },
    /// Refused for its content, which is not repeated; the files (paths) are named.
    ContentRefused { gone: Gone, files: &'a [String] },
    /// No patch could be made.
    NoPatch { gone: Gone, error: &'a str },
}

/// Where work that could not be pushed anywhere stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// The session is stopping: the work goes with it.
    Stopping,
    /// In the working copy until the session stops.
    Kept,
}

impl fmt::Display for Gone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stopping => "the session is stopping, so it is lost with it",
            Self::Kept => "the work stays in this session's working copy until it stops",
        })
    }
}

/// The line for the run's summary: what was refused, why, and where the work is.
pub fn push_refused_line(branch: &str, reason: &str, kept: &Kept<'_>) -> String {
    let kept = match kept {
        Kept::Branch(b) => format!("The work is on the branch `{b}` instead."),
        Kept::Patch => {
            "A branch of its own was refused too, so the work is posted below as a patch.".into()
        }
        Kept::TooLarge { kb, gone, files } => format!(
            "A branch of its own was refused too, and the patch ({kb} KB) is too large for a comment: {gone}. Files: {}.",
            named(files)
        ),
        Kept::ContentRefused { gone, files } => format!(
            "A branch of its own was refused too; as GitHub refused the content, it is not posted here: {gone}. Files: {}.",
            named(files)
        ),
        Kept::NoPatch { gone, error } => format!("{gone} (no patch: {error})."),
    };
    format!("GitHub refused the push to `{branch}`: {reason}. {kept}")
}

/// The first fifty paths, in code spans.
fn named(paths: &[String]) -> String {
    let named: Vec<String> = paths.iter().take(50).map(|p| format!("`{p}`")).collect();
    named.join(", ")
}

/// The summary's line for a refusal already reported on the PR.
pub fn push_refused_again(branch: &str, reason: &str) -> String {
    format!("GitHub refused the push to `{branch}`: {reason} (reported above).")
}

/// The comment about a refused push.
pub fn push_refused(line: &str) -> String {
    format!(":no_entry: **Push refused.** {line}")
}

/// The refused work as a patch `git am` applies, fenced so no line of it closes the fence.
pub fn refused_patch(branch: &str, patch: &str) -> String {
    let longest = patch.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!(
        "📎 **The refused work, as a patch** (apply it with `git am` on `{branch}`):\n\n<details><summary>{} lines</summary>\n\n{fence}diff\n{patch}\n{fence}\n\n</details>",
        patch.lines().count()
    )
}

/// The name of the branch refused work is pushed to instead.
pub fn kept_branch(branch: &str, head: &str) -> String {
    format!("{branch}-kept-{}", short_sha(head))
}

/// What the agent answers in a review thread it was given, once the run ends: the run's commits
/// when they changed the thread's file (`changed`), or that they did not, or that the run failed.
pub fn thread_reply(
    number: u32,
    succeeded: bool,
    path: &str,
    changed: bool,
    commits: &[Commit],
) -> String {
    let said = if !succeeded {
        format!("Run {number} failed before it finished with this; its summary on the PR says why.")
    } else if !changed || commits.is_empty() {
        format!("Run {number} made no change to `{path}`; its summary on the PR says what it did.")
    } else {
        let shas: Vec<String> = commits
            .iter()
            .map(|c| format!("`{}` {}", short_sha(&c.sha), clip(&c.subject, 72)))
            .collect();
        format!("Addressed in run {number}: {}.", shas.join(", "))
    };
    format!("{MARKER}\n🤖 {said}")
}

/// A fix run for failing checks is queued.
pub fn ci_fix_queued(attempt: u32, max: u32, head: &str, checks: &[String]) -> String {
    let named: Vec<String> = checks
        .iter()
        .take(10)
        .map(|c| format!("`{}`", clip(&c.replace(['`', '\n', '\r'], " "), 100)))
        .collect();
    let which = match named.is_empty() {
        true => String::new(),
        false => format!(" ({})", named.join(", ")),
    };
    format!(
        ":wrench: **Checks failed** on `{}`{which}: fix run {attempt} of {max} (CI_FIX_ATTEMPTS).",
        short_sha(head)
    )
}

/// The checks pass after fix runs.
pub fn ci_passed(attempts: u32, head: &str) -> String {
    let runs = if attempts == 1 { "run" } else { "runs" };
    format!(
        ":white_check_mark: **Checks pass** on `{}` after {attempts} fix {runs}.",
        short_sha(head)
    )
}

/// The checks still fail after every fix run allowed.
pub fn ci_gave_up(max: u32, head: &str) -> String {
    format!(
        ":octagonal_sign: **Checks still fail** on `{}` after {max} fix runs (CI_FIX_ATTEMPTS): no more fix runs. Ask the agent in a comment (mention it) to try again.",
        short_sha(head)
    )
}

/// The status comment's headlines.
pub mod headline {
    use super::short_sha;
    use crate::Status;

    pub const STARTING: &str = "🚀 Starting: cloning the repository";
    pub const WORKING: &str = "🛠️ Working on the issue";
    pub const WAITING: &str = "💤 Waiting: comment on the PR to ask for more";
    pub const PLAN_WAITING: &str =
        "📋 Plan posted: waiting for a writer's `/claude approve`, or a mention asking for changes";
    pub const PREVIEW_STARTING: &str = "🚀 Preview starting: cloning the branch";
    pub const PREVIEW_INSTALLING: &str = "📦 Preview starting: installing";

    /// A run in progress, and for whom.
    pub fn run_in_progress(number: u32, author: Option<&str>) -> String {
        let who = author.map(|a| format!(" for @{a}")).unwrap_or_default();
        format!("🛠️ Run {number}{who} in progress")
    }

    /// The session ended.
    pub fn ended(status: Status, reason: &str) -> String {
        let icon = if status == Status::Completed {
            "🏁"
        } else {
            "⏹️"
        };
        format!("{icon} {status}: {reason}")
    }

    /// The session or preview (`what`) could not start.
    pub fn failed(what: &str, reason: &str) -> String {
        format!("❌ {what} failed: {reason}")
    }

    /// The preview shows `head`.
    pub fn preview_ready(head: &str) -> String {
        format!("✅ Preview ready at commit `{}`", short_sha(head))
    }

    /// The preview moves to `head`.
    pub fn preview_updating(head: &str) -> String {
        format!("🔄 Updating the preview to `{}`", short_sha(head))
    }

    /// A refresh of the preview failed.
    pub fn refresh_failed(error: &str) -> String {
        format!("⚠️ Refresh failed: {error}")
    }

    /// The preview ended.
    pub fn preview_ended(status: Status, reason: &str) -> String {
        format!("⏹️ Preview {status}: {reason}")
    }
}

/// The status comment's line about the app.
pub mod app {
    use crate::naming::clip;

    pub const NONE: &str = "none (no .cca.toml and no app detected)";
    pub const INSTALLING: &str = "installing";
    pub const STARTING: &str = "starting";
    pub const READY: &str = "ready";
    pub const STOPPED: &str = "stopped";

    /// The repository's settings are invalid.
    pub fn not_started(error: &str) -> String {
        format!("not started: {error}")
    }

    /// Installing the app's dependencies failed.
    pub fn install_failed(error: &str) -> String {
        format!("install failed: {}", clip(error, 300))
    }

    /// The supervisor restarts the app.
    pub fn restarting(attempt: u32) -> String {
        format!("restarting (attempt {attempt})")
    }

    /// The app failed for good.
    pub fn failed(why: &str) -> String {
        format!("failed: {}", clip(why, 300))
    }
}

/// The status comment's current step: a tool the CLI uses, or the first line of what it says.
pub mod step {
    use crate::naming::clip;

    /// A tool call, with an icon for its kind.
    pub fn tool(name: &str, detail: &str) -> String {
        let icon = match name {
            "Read" => "📖",
            "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => "✏️",
            "Bash" => "💻",
            "Glob" => "🔍",
            "Grep" => "🔎",
            "Task" | "Agent" => "🤖",
            _ => "🔧",
        };
        format!("{icon} {name} {detail}")
    }

    /// The first line of the model's text.
    pub fn text(t: &str) -> String {
        format!("💬 {}", clip(t.lines().next().unwrap_or(""), 200))
    }

    /// The step shown while the model works before any tool or text.
    pub const THINKING: &str = "thinking";
}

/// The GitHub deployment of a preview: its description and its statuses' descriptions.
pub mod deployment {
    pub const ENVIRONMENT: &str = "preview";
    pub const DESCRIPTION: &str = "PR preview";
    pub const READY: &str = "Preview ready";
    pub const STOPPED: &str = "Preview stopped";
}

#[cfg(test)]
mod tests;
