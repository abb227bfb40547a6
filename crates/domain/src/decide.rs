//! The pure decisions: from a verified event to what should happen.
//!
//! [`decide_github`] and [`decide_jira`] look only at the event and the [`Rules`]; the webhook
//! then checks the actor's permission where [`Intent::requires_write`] says so, looks up the
//! sessions involved, and asks [`plan_start`] and [`plan_comment`] what to do with them. Every
//! branch of these functions is covered by tests without any I/O.

use std::collections::BTreeSet;

use crate::event::{
    Actor, CheckSuite, Comment, GitHubEvent, Issue, IssuesAction, JiraEvent, JiraUser, PrAction,
    PullRequest, Review, ReviewComment,
};
use crate::ids::{JiraKey, Login, RepoName};
use crate::session::{ImageChannel, Session, SessionType, Status};
use crate::texts::MARKER;

/// The labels and words that trigger work. Defaults are the original's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Starts an agent session (`claude-dev`).
    pub agent_label: String,
    /// Starts an agent session on the staging image (`claude-dev-staging`).
    pub agent_staging_label: String,
    /// Starts an agent session in plan mode: the plan is posted and waits for `/claude approve`
    /// (`claude-plan`).
    pub agent_plan_label: String,
    /// Starts a PR preview (`uat`).
    pub preview_label: String,
    /// Starts a PR preview on the staging image (`uat-staging`).
    pub preview_staging_label: String,
    /// A comment mentioning this reaches the agent (`@claude`).
    pub mention: String,
    /// Forward every human comment on a session's PR, mention or not.
    pub forward_all_comments: bool,
    /// A comment starting with this stops the session (`/claude stop`).
    pub stop_command: String,
    /// Who may start a session from JIRA (nobody unless configured).
    pub jira_actors: JiraActors,
    /// The most agent sessions of one installation that run at once; a session started beyond
    /// it waits `QUEUED` for one to end (`MAX_ACTIVE_SESSIONS`).
    pub max_active_sessions: usize,
}

/// [`Rules::max_active_sessions`] unless configured.
pub const DEFAULT_MAX_ACTIVE_SESSIONS: usize = 10;

impl Default for Rules {
    fn default() -> Self {
        Self {
            agent_label: "claude-dev".into(),
            agent_staging_label: "claude-dev-staging".into(),
            agent_plan_label: "claude-plan".into(),
            preview_label: "uat".into(),
            preview_staging_label: "uat-staging".into(),
            mention: "@claude".into(),
            forward_all_comments: false,
            stop_command: "/claude stop".into(),
            jira_actors: JiraActors::Nobody,
            max_active_sessions: DEFAULT_MAX_ACTIVE_SESSIONS,
        }
    }
}

impl Rules {
    /// The labels the system acts on, with the colour and description they are created with
    /// in a repository that lacks them.
    pub fn labels(&self) -> [(&str, &'static str, &'static str); 5] {
        [
            (
                &self.agent_label,
                "7057ff",
                "Claude Cloud Agent: implement this issue in a pull request",
            ),
            (
                &self.agent_staging_label,
                "a28bff",
                "Claude Cloud Agent: implement this issue with the staging image",
            ),
            (
                &self.agent_plan_label,
                "d4c5f9",
                "Claude Cloud Agent: plan this issue first, implement once a writer approves",
            ),
            (
                &self.preview_label,
                "0e8a16",
                "Claude Cloud Agent: a live preview of this pull request",
            ),
            (
                &self.preview_staging_label,
                "5fbf6f",
                "Claude Cloud Agent: a live preview with the staging image",
            ),
        ]
    }
}

/// The `accountType` of people; apps, automation rules and service-desk customers have others.
pub const JIRA_PERSON_ACCOUNT: &str = "atlassian";

/// Who may start a session by labelling a JIRA issue. A JIRA signature only proves that the
/// site sent the event, not that its actor may spend the GitHub App's access, so the actor is
/// checked as a GitHub actor's write permission is. Whatever this says, only people (account
/// type [`JIRA_PERSON_ACCOUNT`]) trigger: apps and automation rules act for whoever configured
/// them, and service-desk customers are outsiders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum JiraActors {
    /// JIRA never starts a session (neither `JIRA_ALLOWED_ACCOUNTS` nor
    /// `JIRA_ALLOW_ANY_ACCOUNT` is set).
    #[default]
    Nobody,
    /// The people with these Atlassian account ids (`JIRA_ALLOWED_ACCOUNTS`).
    Accounts(BTreeSet<String>),
    /// Any person who can label an issue of a mapped project (`JIRA_ALLOW_ANY_ACCOUNT=true`):
    /// weaker, as everyone with edit access to those projects can then start sessions.
    AnyPerson,
}

impl JiraActors {
    /// Whether `user`, the actor of an event, may start a session; if not, why.
    pub fn admit(&self, user: Option<&JiraUser>) -> Result<(), String> {
        if *self == JiraActors::Nobody {
            return Err(
                "JIRA triggers are off: neither JIRA_ALLOWED_ACCOUNTS nor JIRA_ALLOW_ANY_ACCOUNT is set"
                    .into(),
            );
        }
        let Some(id) = user.and_then(|u| u.account_id.as_deref()) else {
            return Err("the JIRA event names no acting account".into());
        };
        match user.and_then(|u| u.account_type.as_deref()) {
            Some(JIRA_PERSON_ACCOUNT) => {}
            Some(other) => {
                return Err(format!(
                    "JIRA account {id} is of type {other:?}, not a person ({JIRA_PERSON_ACCOUNT:?})"
                ));
            }
            None => return Err(format!("JIRA account {id} has no account type")),
        }
        match self {
            JiraActors::Accounts(ids) if !ids.contains(id) => Err(format!(
                "JIRA account {id} is not allowed to start sessions"
            )),
            _ => Ok(()),
        }
    }
}

impl Rules {
    /// The image channel a trigger label starts, and whether it starts in plan mode.
    fn agent_trigger(&self, label: &str) -> Option<(ImageChannel, bool)> {
        if label.eq_ignore_ascii_case(&self.agent_label) {
            Some((ImageChannel::Latest, false))
        } else if label.eq_ignore_ascii_case(&self.agent_staging_label) {
            Some((ImageChannel::Staging, false))
        } else if label.eq_ignore_ascii_case(&self.agent_plan_label) {
            Some((ImageChannel::Latest, true))
        } else {
            None
        }
    }

    fn preview_channel(&self, label: &str) -> Option<ImageChannel> {
        if label.eq_ignore_ascii_case(&self.preview_label) {
            Some(ImageChannel::Latest)
        } else if label.eq_ignore_ascii_case(&self.preview_staging_label) {
            Some(ImageChannel::Staging)
        } else {
            None
        }
    }

    /// Whether `body` mentions the trigger as a whole word (`@claude`, not `@claude-bot` or
    /// `me@claude.dev`), in any case.
    pub fn mentions(&self, body: &str) -> bool {
        let needle = self.mention.to_ascii_lowercase();
        let hay = body.to_ascii_lowercase();
        let word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        let mut from = 0;
        while let Some(pos) = hay[from..].find(&needle) {
            let start = from + pos;
            let end = start + needle.len();
            let before_ok = hay[..start]
                .chars()
                .next_back()
                .is_none_or(|c| !word(c) && c != '.');
            let after_ok = hay[end..].chars().next().is_none_or(|c| !word(c));
            if before_ok && after_ok {
                return true;
            }
            from = end;
        }
        false
    }

    /// Whether a review by a person is for the agent: it requests changes, mentions it, or
    /// every comment is forwarded.
    pub fn review_counts(&self, review: &Review) -> bool {
        review.state == "changes_requested"
            || self.forward_all_comments
            || self.mentions(&review.body)
    }

    /// The command a comment's first line gives (`/claude status`, `/claude retry`,
    /// `/claude budget +N`, in any case), other than the stop command; `None` when the line is
    /// no command at all.
    pub fn command(&self, body: &str) -> Option<Command> {
        let prefix = self.stop_command.split_whitespace().next()?;
        let first = body.trim_start().lines().next().unwrap_or("").trim();
        let mut words = first.split_whitespace();
        if !words.next()?.eq_ignore_ascii_case(prefix) {
            return None;
        }
        let verb = words.next()?.to_ascii_lowercase();
        let args: Vec<&str> = words.collect();
        Some(match (verb.as_str(), args.as_slice()) {
            ("status", []) => Command::Status,
            ("retry", []) => Command::Retry,
            ("approve", []) => Command::Approve,
            ("budget", [amount]) => {
                let digits = amount.strip_prefix('+').unwrap_or(amount);
                let digits = digits.strip_prefix('$').unwrap_or(digits);
                match digits.parse::<f64>() {
                    Ok(add)
                        if digits.starts_with(|c: char| c.is_ascii_digit())
                            && add.is_finite()
                            && add > 0.0
                            && add <= MAX_BUDGET_RAISE_USD =>
                    {
                        Command::Budget { add_usd: add }
                    }
                    _ => Command::Unknown(format!("budget {amount}")),
                }
            }
            _ => Command::Unknown(first[prefix.len()..].trim().to_owned()),
        })
    }

    /// Whether `body` is the stop command (its first line, trimmed, in any case).
    pub fn is_stop_command(&self, body: &str) -> bool {
        let first = body.trim_start().lines().next().unwrap_or("").trim();
        first.eq_ignore_ascii_case(&self.stop_command)
    }
}

/// The largest raise one `/claude budget +N` asks for (the operator's cap bounds the total).
pub const MAX_BUDGET_RAISE_USD: f64 = 10_000.0;

/// A writer's command to the session of a PR.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `/claude status`: the session's state, runs, cost and preview link.
    Status,
    /// `/claude retry`: the last failed run again.
    Retry,
    /// `/claude budget +N`: raise the session's cost limit by N dollars, up to the cap.
    Budget { add_usd: f64 },
    /// `/claude approve`: implement the plan the session posted.
    Approve,
    /// Not a command this system knows (the words after the prefix).
    Unknown(String),
}

impl Command {
    /// The command's name, as said back.
    pub fn name(&self) -> &str {
        match self {
            Command::Status => "status",
            Command::Retry => "retry",
            Command::Budget { .. } => "budget",
            Command::Approve => "approve",
            Command::Unknown(words) => words,
        }
    }
}

/// Why sessions are being stopped; decides the final status and what the PR is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The issue was closed; `completed` unless closed as not planned. Merging a PR that closes
    /// the issue sends this too, possibly before the PR's own event, so it must end the session
    /// the same way the merge would.
    IssueClosed {
        completed: bool,
    },
    LabelRemoved(String),
    PrClosed {
        merged: bool,
    },
    Command {
        by: Login,
    },
    /// New commits on a PR from a fork: the preview was approved for the commit a writer
    /// labelled, not for whatever the fork's owner pushes next.
    ForkPushed {
        head_repo: String,
    },
}

impl StopReason {
    /// The status a session ends in: `COMPLETED` when its PR was merged or its issue closed as
    /// completed, else `STOPPED`.
    pub fn final_status(&self) -> Status {
        match self {
            StopReason::PrClosed { merged: true } | StopReason::IssueClosed { completed: true } => {
                Status::Completed
            }
            _ => Status::Stopped,
        }
    }

    /// Said on the PR and in the record.
    pub fn describe(&self) -> String {
        match self {
            StopReason::IssueClosed { completed: true } => {
                "the issue was closed as completed".into()
            }
            StopReason::IssueClosed { completed: false } => {
                "the issue was closed as not planned".into()
            }
            StopReason::LabelRemoved(l) => format!("the `{l}` label was removed"),
            StopReason::PrClosed { merged: true } => "the PR was merged".into(),
            StopReason::PrClosed { merged: false } => "the PR was closed".into(),
            StopReason::Command { by } => format!("@{by} asked it to stop"),
            StopReason::ForkPushed { head_repo } => format!(
                "new commits were pushed to the fork {head_repo}; a person with write access \
                 must review them and add the label again to preview them"
            ),
        }
    }
}

/// What an event asks for, before any state is consulted.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// Start (or restart) the agent session of a GitHub issue.
    StartAgent {
        repo: RepoName,
        issue: Issue,
        channel: ImageChannel,
        /// Plan first (`claude-plan`): the agent posts a plan and waits for `/claude approve`.
        plan: bool,
        actor: Actor,
        installation_id: Option<u64>,
    },
    /// Stop the agent session of a GitHub issue.
    StopIssue {
        repo: RepoName,
        issue_number: u64,
        reason: StopReason,
    },
    /// Start the preview of a PR.
    StartPreview {
        repo: RepoName,
        pr: PullRequest,
        channel: ImageChannel,
        actor: Actor,
        installation_id: Option<u64>,
    },
    /// Stop sessions of a PR: only its preview, or every session (agent and preview).
    StopPr {
        repo: RepoName,
        pr_number: u64,
        only: Option<SessionType>,
        reason: StopReason,
    },
    /// New commits on a PR: a running preview fetches and restarts.
    RefreshPreview {
        repo: RepoName,
        pr_number: u64,
        head_sha: String,
    },
    /// A comment for the agent of a PR.
    Prompt {
        repo: RepoName,
        pr_number: u64,
        comment: Comment,
        installation_id: Option<u64>,
    },
    /// A review for the agent of a PR: a submitted review (its inline comments are read before
    /// it is planned) or a single comment on the diff.
    Review {
        repo: RepoName,
        pr_number: u64,
        author: Actor,
        /// The submitted review, or `None` for a single comment on the diff.
        review: Option<Review>,
        /// The single comment on the diff (empty for a submitted review).
        comments: Vec<ReviewComment>,
        installation_id: Option<u64>,
    },
    /// Checks on the head of a PR completed: failed ones are for the agent to fix (if the head is
    /// its own), passing ones end its fixing.
    Checks {
        repo: RepoName,
        pr_number: u64,
        suite: CheckSuite,
        installation_id: Option<u64>,
    },
    /// Another `/claude …` command on a PR.
    Command {
        repo: RepoName,
        pr_number: u64,
        actor: Actor,
        comment_id: u64,
        command: Command,
        installation_id: Option<u64>,
    },
    /// `/claude stop` on a PR.
    StopCommand {
        repo: RepoName,
        pr_number: u64,
        actor: Actor,
        installation_id: Option<u64>,
    },
    /// Start the agent session of a JIRA issue.
    StartJira {
        key: JiraKey,
        project_key: String,
        summary: String,
        description: serde_json::Value,
        channel: ImageChannel,
    },
    /// Make the system's labels exist in repositories the App was just given.
    EnsureLabels {
        repos: Vec<RepoName>,
        installation_id: u64,
    },
    /// Nothing to do, and why (answered 200 with this reason).
    Ignore(String),
}

impl Intent {
    /// The GitHub user who must have write access for this to go ahead. Lifecycle stops (a closed
    /// issue or PR, a removed label) need none: GitHub already checked who may do those.
    pub fn requires_write(&self) -> Option<&Login> {
        match self {
            Intent::StartAgent { actor, .. }
            | Intent::StartPreview { actor, .. }
            | Intent::StopCommand { actor, .. }
            | Intent::Command { actor, .. } => Some(&actor.login),
            Intent::Prompt { comment, .. } => Some(&comment.author.login),
            Intent::Review { author, .. } => Some(&author.login),
            _ => None,
        }
    }
}

fn ignore(reason: impl Into<String>) -> Intent {
    Intent::Ignore(reason.into())
}

/// Decides what a GitHub event asks for.
pub fn decide_github(event: GitHubEvent, rules: &Rules) -> Intent {
    match event {
        GitHubEvent::Ping => ignore("pong"),
        GitHubEvent::RepositoriesAdded {
            repos,
            installation_id,
        } if !repos.is_empty() => Intent::EnsureLabels {
            repos,
            installation_id,
        },
        GitHubEvent::RepositoriesAdded { .. } => ignore("no repositories named"),
        GitHubEvent::Unhandled { event, action } => match action {
            Some(a) => ignore(format!("event {event}.{a} is not handled")),
            None => ignore(format!("event {event} is not handled")),
        },
        GitHubEvent::Issues {
            action,
            repo,
            issue,
            sender,
            installation_id,
        } => match action {
            IssuesAction::Labeled(label) => match rules.agent_trigger(&label) {
                None => ignore(format!("label {label} is not a trigger label")),
                Some(_) if sender.is_bot => ignore(format!("sender {} is a bot", sender.login)),
                Some(_) if issue.is_pull_request => {
                    ignore("agent labels on pull requests are not handled")
                }
                Some((channel, plan)) => Intent::StartAgent {
                    repo,
                    issue,
                    channel,
                    plan,
                    actor: sender,
                    installation_id,
                },
            },
            IssuesAction::Unlabeled(label) => match rules.agent_trigger(&label) {
                None => ignore(format!("label {label} is not a trigger label")),
                Some(_) => Intent::StopIssue {
                    repo,
                    issue_number: issue.number,
                    reason: StopReason::LabelRemoved(label),
                },
            },
            IssuesAction::Closed => Intent::StopIssue {
                repo,
                issue_number: issue.number,
                reason: StopReason::IssueClosed {
                    completed: !issue.not_planned,
                },
            },
        },
        GitHubEvent::PullRequest {
            action,
            repo,
            pr,
            sender,
            installation_id,
        } => match action {
            PrAction::Labeled(label) => match rules.preview_channel(&label) {
                None => ignore(format!("label {label} is not a trigger label")),
                Some(_) if sender.is_bot => ignore(format!("sender {} is a bot", sender.login)),
                Some(channel) => Intent::StartPreview {
                    repo,
                    pr,
                    channel,
                    actor: sender,
                    installation_id,
                },
            },
            PrAction::Unlabeled(label) => match rules.preview_channel(&label) {
                None => ignore(format!("label {label} is not a trigger label")),
                Some(_) => Intent::StopPr {
                    repo,
                    pr_number: pr.number,
                    only: Some(SessionType::Preview),
                    reason: StopReason::LabelRemoved(label),
                },
            },
            PrAction::Closed => Intent::StopPr {
                repo,
                pr_number: pr.number,
                only: None,
                reason: StopReason::PrClosed { merged: pr.merged },
            },
            // A fork's new commits are code nobody with write access has looked at yet.
            PrAction::Synchronize => match pr.head_repo {
                Some(head_repo) if !head_repo.eq_ignore_ascii_case(repo.as_str()) => {
                    Intent::StopPr {
                        repo,
                        pr_number: pr.number,
                        only: Some(SessionType::Preview),
                        reason: StopReason::ForkPushed { head_repo },
                    }
                }
                _ => Intent::RefreshPreview {
                    repo,
                    pr_number: pr.number,
                    head_sha: pr.head_sha,
                },
            },
        },
        GitHubEvent::CommentCreated {
            repo,
            issue,
            comment,
            installation_id,
        } => {
            if !issue.is_pull_request {
                ignore("comment is not on a pull request")
            } else if comment.author.is_bot {
                ignore(format!("comment author {} is a bot", comment.author.login))
            } else if comment.body.contains(MARKER) {
                ignore("comment was written by this system")
            } else if rules.is_stop_command(&comment.body) {
                Intent::StopCommand {
                    repo,
                    pr_number: issue.number,
                    actor: comment.author,
                    installation_id,
                }
            } else if let Some(command) = rules.command(&comment.body).filter(|c| {
                // Words after an unknown verb, meant for the agent, are a follow-up.
                !matches!(c, Command::Unknown(_))
                    || !(rules.forward_all_comments || rules.mentions(&comment.body))
            }) {
                Intent::Command {
                    repo,
                    pr_number: issue.number,
                    actor: comment.author.clone(),
                    comment_id: comment.id,
                    command,
                    installation_id,
                }
            } else if rules.forward_all_comments || rules.mentions(&comment.body) {
                Intent::Prompt {
                    repo,
                    pr_number: issue.number,
                    comment,
                    installation_id,
                }
            } else {
                ignore(format!("comment does not mention {}", rules.mention))
            }
        }
        GitHubEvent::ReviewSubmitted {
            repo,
            pr_number,
            review,
            installation_id,
        } => {
            if review.author.is_bot {
                ignore(format!("review author {} is a bot", review.author.login))
            } else if review.body.contains(MARKER) {
                ignore("review was written by this system")
            } else if rules.review_counts(&review) {
                Intent::Review {
                    repo,
                    pr_number,
                    author: review.author.clone(),
                    review: Some(review),
                    comments: Vec::new(),
                    installation_id,
                }
            } else {
                ignore(format!(
                    "review ({}) neither requests changes nor mentions {}",
                    review.state, rules.mention
                ))
            }
        }
        GitHubEvent::CheckSuiteCompleted {
            repo,
            suite,
            installation_id,
        } => match suite.pull_requests.first().copied() {
            None => ignore("the checked commit is the head of no pull request of this repository"),
            Some(pr_number) if suite.failed() || suite.conclusion == "success" => Intent::Checks {
                repo,
                pr_number,
                suite,
                installation_id,
            },
            Some(_) => ignore(format!(
                "the checks ended {}: neither passed nor failed",
                if suite.conclusion.is_empty() {
                    "without a conclusion"
                } else {
                    suite.conclusion.as_str()
                }
            )),
        },
        GitHubEvent::ReviewCommentCreated {
            repo,
            pr_number,
            comment,
            installation_id,
        } => {
            if comment.author.is_bot {
                ignore(format!("comment author {} is a bot", comment.author.login))
            } else if comment.body.contains(MARKER) {
                ignore("comment was written by this system")
            } else if rules.forward_all_comments && comment.review_id.is_some() {
                // Every review is forwarded, and its review carries this comment.
                ignore("the comment's review carries it")
            } else if rules.forward_all_comments || rules.mentions(&comment.body) {
                Intent::Review {
                    repo,
                    pr_number,
                    author: comment.author.clone(),
                    review: None,
                    comments: vec![comment],
                    installation_id,
                }
            } else {
                ignore(format!("comment does not mention {}", rules.mention))
            }
        }
    }
}

/// Decides what a JIRA event asks for: a trigger label added by an allowed person (see
/// [`JiraActors`]). The project mapping is checked by the caller.
pub fn decide_jira(event: JiraEvent, rules: &Rules) -> Intent {
    if !matches!(
        event.kind.as_str(),
        "jira:issue_created" | "jira:issue_updated"
    ) {
        return ignore(format!("JIRA event {} is not handled", event.kind));
    }
    let Some(issue) = event.issue else {
        return ignore("JIRA event has no issue");
    };
    let has = |l: &str| event.labels_added.iter().any(|a| a.eq_ignore_ascii_case(l));
    // Staging first, as the original: an issue given both labels runs the staging image.
    let channel = if has(&rules.agent_staging_label) {
        ImageChannel::Staging
    } else if has(&rules.agent_label) {
        ImageChannel::Latest
    } else {
        return ignore("no trigger label was added");
    };
    if let Err(reason) = rules.jira_actors.admit(event.user.as_ref()) {
        return ignore(reason);
    }
    Intent::StartJira {
        key: issue.key,
        project_key: issue.project_key,
        summary: issue.summary,
        description: issue.description,
        channel,
    }
}

/// What to do about a start request, given the session last holding its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPlan {
    /// No session ever: create branch, PR, record, task.
    Create,
    /// The last session ended: start it again on the same id, branch and PR.
    Relaunch,
    /// A session is active: nothing to do.
    AlreadyActive,
}

/// Plans a start from the session that holds or last held the key.
pub fn plan_start(last: Option<&Session>) -> StartPlan {
    match last {
        None => StartPlan::Create,
        Some(s) if s.status.is_terminal() => StartPlan::Relaunch,
        Some(_) => StartPlan::AlreadyActive,
    }
}

/// What to do with a permitted comment on a PR.
#[derive(Debug, Clone, PartialEq)]
pub enum CommentPlan {
    /// The agent is up: send the comment to its control API.
    Forward(Session),
    /// The agent session ended: start it again with the comment as its prompt.
    Relaunch(Session),
    /// The agent is still starting: tell the commenter to try again shortly.
    NotReady(Session),
    /// The PR has no agent session.
    NoSession,
}

/// Plans a comment from the PR's sessions (newest first): the newest agent session decides.
pub fn plan_comment(sessions: &[Session]) -> CommentPlan {
    match sessions
        .iter()
        .find(|s| s.session_type == SessionType::Agent)
    {
        None => CommentPlan::NoSession,
        Some(s) => match s.status {
            Status::Running | Status::Idle
                if s.container_ip.is_some() && s.control_port.is_some() =>
            {
                CommentPlan::Forward(s.clone())
            }
            st if st.is_terminal() => CommentPlan::Relaunch(s.clone()),
            _ => CommentPlan::NotReady(s.clone()),
        },
    }
}

/// The sessions of a PR that a stop applies to: those not ended, of the requested type.
pub fn sessions_to_stop(sessions: &[Session], only: Option<SessionType>) -> Vec<Session> {
    sessions
        .iter()
        .filter(|s| !s.status.is_terminal() && s.status != Status::Stopping)
        .filter(|s| only.is_none_or(|t| s.session_type == t))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
