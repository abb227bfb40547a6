//! Typed webhook events: the few fields of GitHub and JIRA payloads that decisions use.
//!
//! Parsing takes bytes whose signature was already verified and yields an event whose ids are
//! normalised. A payload of a handled kind that lacks a field the decision needs is an error
//! (the webhook answers 400 with the reason); an event or action the system does not handle is
//! [`GitHubEvent::Unhandled`] (answered 200), as long as the body is JSON at all.

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::ids::{IdError, JiraKey, Login, RepoName};

/// Why a payload could not be turned into an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or JSON of the wrong shape; the text is serde's, which names the field.
    #[error("invalid payload: {0}")]
    Json(String),
    /// A field held a value that is not a valid identifier.
    #[error("invalid payload: {0}")]
    Id(#[from] IdError),
}

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub login: Login,
    /// A GitHub App or other bot account: never allowed to trigger work.
    pub is_bot: bool,
}

impl Actor {
    /// A GitHub user as the API names it (`login`, and `type`: `User`, `Bot`, …): an App or
    /// other bot account by its type or its `[bot]` login.
    pub fn of_github(login: &str, kind: Option<&str>) -> Result<Actor, IdError> {
        Ok(Actor {
            login: Login::parse(login)?,
            is_bot: kind == Some("Bot") || login.ends_with("[bot]"),
        })
    }
}

/// A GitHub issue (or the issue side of a PR, for comments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub body: String,
    /// Whether this "issue" is a pull request (comments on PRs arrive as issue comments).
    pub is_pull_request: bool,
    /// Closed as not planned (GitHub's `state_reason`), rather than completed.
    pub not_planned: bool,
}

/// A GitHub pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub head_ref: String,
    pub head_sha: String,
    /// The repository the head branch is in (`head.repo.full_name`): the PR's own repository,
    /// or a fork; `None` when GitHub reports none (the fork was deleted).
    pub head_repo: Option<String>,
    pub merged: bool,
}

/// A comment on an issue or PR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: u64,
    pub body: String,
    pub author: Actor,
}

/// A submitted review of a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub id: u64,
    /// `approved`, `changes_requested` or `commented`, lower-cased.
    pub state: String,
    pub body: String,
    pub author: Actor,
}

/// A comment on the diff of a pull request: one thread's first comment, or a reply in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewComment {
    pub id: u64,
    /// The review it was submitted with (every review comment has one on GitHub).
    pub review_id: Option<u64>,
    pub body: String,
    pub author: Actor,
    pub path: String,
    /// The last line of the range it comments on, in the file as of its commit (none when the
    /// line is no longer in the diff).
    pub line: Option<u64>,
    /// The first line of a multi-line comment.
    pub start_line: Option<u64>,
    pub diff_hunk: String,
    /// The thread's first comment, when this is a reply.
    pub in_reply_to: Option<u64>,
}

impl ReviewComment {
    /// The comment that heads its thread: the one replies are posted to.
    pub fn thread(&self) -> u64 {
        self.in_reply_to.unwrap_or(self.id)
    }
}

/// A completed suite of checks on a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSuite {
    pub id: u64,
    pub head_sha: String,
    /// `success`, `failure`, `timed_out`, `cancelled`, `neutral`, `skipped`, `stale`,
    /// `action_required` or `startup_failure`, lower-cased; empty when GitHub gives none.
    pub conclusion: String,
    /// The open PRs whose head is this commit, in this repository (GitHub lists none for a fork).
    pub pull_requests: Vec<u64>,
    /// The app that ran the checks (`github-actions`, …), when GitHub names it.
    pub app: Option<String>,
}

impl CheckSuite {
    /// Whether the checks failed, as opposed to passing or being called off.
    pub fn failed(&self) -> bool {
        matches!(
            self.conclusion.as_str(),
            "failure" | "timed_out" | "startup_failure"
        )
    }
}

/// One check of a suite as GitHub's API gives it, with the tail of its log when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckRun {
    pub id: u64,
    pub name: String,
    pub conclusion: String,
    /// The app that ran it (`github-actions`: its log is the job's).
    pub app: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub text: Option<String>,
    /// The last lines of its log (GitHub Actions jobs).
    pub log_tail: Option<String>,
}

impl CheckRun {
    /// Whether this check failed.
    pub fn failed(&self) -> bool {
        matches!(
            self.conclusion.as_str(),
            "failure" | "timed_out" | "startup_failure"
        )
    }
}

/// What happened to an issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuesAction {
    Labeled(String),
    Unlabeled(String),
    Closed,
}

/// What happened to a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrAction {
    Labeled(String),
    Unlabeled(String),
    Closed,
    Synchronize,
}

/// A GitHub webhook event the system acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitHubEvent {
    Issues {
        action: IssuesAction,
        repo: RepoName,
        issue: Issue,
        sender: Actor,
        installation_id: Option<u64>,
    },
    PullRequest {
        action: PrAction,
        repo: RepoName,
        pr: PullRequest,
        sender: Actor,
        installation_id: Option<u64>,
    },
    /// A new comment on an issue or PR.
    CommentCreated {
        repo: RepoName,
        issue: Issue,
        comment: Comment,
        installation_id: Option<u64>,
    },
    /// A review of a PR was submitted.
    ReviewSubmitted {
        repo: RepoName,
        pr_number: u64,
        review: Review,
        installation_id: Option<u64>,
    },
    /// A comment on a PR's diff was made.
    ReviewCommentCreated {
        repo: RepoName,
        pr_number: u64,
        comment: ReviewComment,
        installation_id: Option<u64>,
    },
    /// A suite of checks on a commit completed (`check_suite.completed`): one a CI app, for
    /// every check run it made on the commit.
    CheckSuiteCompleted {
        repo: RepoName,
        suite: CheckSuite,
        installation_id: Option<u64>,
    },
    /// The App was installed on repositories (`installation.created`), or repositories were
    /// added to an installation (`installation_repositories.added`).
    RepositoriesAdded {
        repos: Vec<RepoName>,
        installation_id: u64,
    },
    /// GitHub's check that the hook works.
    Ping,
    /// Any other event or action: answered 200 with a reason, nothing done.
    Unhandled {
        event: String,
        action: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
struct RawUser {
    login: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

impl RawUser {
    fn actor(self) -> Result<Actor, ParseError> {
        Ok(Actor::of_github(&self.login, self.kind.as_deref())?)
    }
}

#[derive(Deserialize)]
struct RawLabel {
    name: String,
}

#[derive(Deserialize)]
struct RawRepo {
    full_name: String,
}

#[derive(Deserialize)]
struct RawInstallation {
    id: u64,
}

#[derive(Deserialize)]
struct RawIssue {
    number: u64,
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    pull_request: Option<IgnoredAny>,
    #[serde(default)]
    state_reason: Option<String>,
}

impl From<RawIssue> for Issue {
    fn from(r: RawIssue) -> Self {
        Issue {
            number: r.number,
            title: r.title,
            body: r.body.unwrap_or_default(),
            is_pull_request: r.pull_request.is_some(),
            not_planned: r.state_reason.as_deref() == Some("not_planned"),
        }
    }
}

#[derive(Deserialize)]
struct RawRef {
    #[serde(rename = "ref")]
    git_ref: String,
    sha: String,
    /// `null` when the head repository (a fork) has been deleted.
    #[serde(default)]
    repo: Option<RawRepo>,
}

#[derive(Deserialize)]
struct RawPr {
    number: u64,
    title: String,
    #[serde(default)]
    body: Option<String>,
    head: RawRef,
    #[serde(default)]
    merged: Option<bool>,
}

#[derive(Deserialize)]
struct RawComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    user: RawUser,
}

/// A review as GitHub's payloads and REST API give it (`GET /pulls/{n}/reviews/{id}` too).
#[derive(Debug, Deserialize)]
pub struct ApiReview {
    id: u64,
    state: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    user: Option<RawUser>,
}

/// A diff comment as GitHub's payloads and REST API give it (`GET …/reviews/{id}/comments`
/// too).
#[derive(Debug, Deserialize)]
pub struct ApiReviewComment {
    id: u64,
    #[serde(default)]
    pull_request_review_id: Option<u64>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    user: Option<RawUser>,
    path: String,
    #[serde(default)]
    line: Option<u64>,
    #[serde(default)]
    start_line: Option<u64>,
    #[serde(default)]
    diff_hunk: Option<String>,
    #[serde(default)]
    in_reply_to_id: Option<u64>,
}

impl ApiReview {
    /// The review, its author's login checked.
    pub fn into_review(self) -> Result<Review, ParseError> {
        Ok(Review {
            id: self.id,
            state: self.state.to_ascii_lowercase(),
            body: self.body.unwrap_or_default(),
            // A deleted account's review is GitHub's `ghost`'s.
            author: match self.user {
                Some(user) => user.actor()?,
                None => Actor::of_github("ghost", None)?,
            },
        })
    }
}

impl ApiReviewComment {
    /// The comment, its author's login checked.
    pub fn into_comment(self) -> Result<ReviewComment, ParseError> {
        Ok(ReviewComment {
            id: self.id,
            review_id: self.pull_request_review_id,
            body: self.body.unwrap_or_default(),
            author: self
                .user
                .ok_or_else(|| ParseError::Json("the comment names no author".into()))?
                .actor()?,
            path: self.path,
            line: self.line,
            start_line: self.start_line,
            diff_hunk: self.diff_hunk.unwrap_or_default(),
            in_reply_to: self.in_reply_to_id,
        })
    }
}

#[derive(Deserialize)]
struct RawApp {
    #[serde(default)]
    slug: Option<String>,
}

#[derive(Deserialize)]
struct RawCheckSuite {
    id: u64,
    head_sha: String,
    #[serde(default)]
    conclusion: Option<String>,
    #[serde(default)]
    pull_requests: Vec<RawPrNumber>,
    #[serde(default)]
    app: Option<RawApp>,
}

#[derive(Deserialize)]
struct CheckSuitePayload {
    action: String,
    check_suite: RawCheckSuite,
    repository: RawRepo,
    #[serde(default)]
    installation: Option<RawInstallation>,
}

/// A pull request as a review's payload names it: only its number is needed.
#[derive(Deserialize)]
struct RawPrNumber {
    number: u64,
}

#[derive(Deserialize)]
struct ReviewPayload {
    action: String,
    review: ApiReview,
    pull_request: RawPrNumber,
    repository: RawRepo,
    #[serde(default)]
    installation: Option<RawInstallation>,
}

#[derive(Deserialize)]
struct ReviewCommentPayload {
    action: String,
    comment: ApiReviewComment,
    pull_request: RawPrNumber,
    repository: RawRepo,
    #[serde(default)]
    installation: Option<RawInstallation>,
}

#[derive(Deserialize)]
struct ActionOnly {
    #[serde(default)]
    action: Option<String>,
}

#[derive(Deserialize)]
struct IssuesPayload {
    action: String,
    issue: RawIssue,
    #[serde(default)]
    label: Option<RawLabel>,
    repository: RawRepo,
    sender: RawUser,
    #[serde(default)]
    installation: Option<RawInstallation>,
}

#[derive(Deserialize)]
struct PrPayload {
    action: String,
    pull_request: RawPr,
    #[serde(default)]
    label: Option<RawLabel>,
    repository: RawRepo,
    sender: RawUser,
    #[serde(default)]
    installation: Option<RawInstallation>,
}

#[derive(Deserialize)]
struct CommentPayload {
    action: String,
    issue: RawIssue,
    comment: RawComment,
    repository: RawRepo,
    #[serde(default)]
    installation: Option<RawInstallation>,
}

fn json_err(e: sonic_rs::Error) -> ParseError {
    ParseError::Json(e.to_string())
}

fn handled_action(event: &str, action: &str) -> bool {
    match event {
        "issues" => matches!(action, "labeled" | "unlabeled" | "closed"),
        "pull_request" => matches!(action, "labeled" | "unlabeled" | "closed" | "synchronize"),
        "issue_comment" | "pull_request_review_comment" => action == "created",
        "pull_request_review" => action == "submitted",
        "check_suite" => action == "completed",
        "installation" => action == "created",
        "installation_repositories" => action == "added",
        _ => false,
    }
}

/// Deepest nesting of objects and arrays accepted. GitHub and JIRA payloads nest fewer than 15
/// levels (at most 7 in the recorded examples); the SIMD parser skips unknown values
/// recursively, so a bound well below what a thread's stack holds keeps a hostile body from
/// crashing the process.
pub const MAX_JSON_DEPTH: usize = 32;

/// Openers (`{`, `[`) up to which a body skips the exact depth scan: its nesting cannot exceed
/// that count, and the parser's recursion survives that deep on a 2 MiB thread stack (measured:
/// 4,096 levels in a release build, about 50 in a debug build, whose frames are far larger, so
/// there the scan starts at 16). Real payloads carry up to ~180 openers.
const FAST_PATH_OPENERS: usize = if cfg!(debug_assertions) { 16 } else { 1024 };

/// Refuses bodies that are not a JSON object, or that nest deeper than [`MAX_JSON_DEPTH`].
fn check_shape(body: &[u8]) -> Result<(), ParseError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ParseError::Json("the payload is not a JSON object".into()));
    }
    // Nesting cannot exceed the number of openers, and counting them is a vectorised pass; only
    // a body with many of them pays for the exact scan.
    let openers: usize = body
        .chunks(255)
        // `{` (0x7B) and `[` (0x5B) differ only in bit 0x20; a byte counter per chunk of at most
        // 255 cannot overflow, and this shape compiles to SIMD compares and adds.
        .map(|chunk| {
            chunk
                .iter()
                .fold(0u8, |n, &b| n + u8::from(b | 0x20 == b'{')) as usize
        })
        .sum();
    if openers <= FAST_PATH_OPENERS {
        return Ok(());
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(ParseError::Json(format!(
                        "the payload nests deeper than {MAX_JSON_DEPTH} levels"
                    )));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses a GitHub webhook body of the event named by `X-GitHub-Event`.
pub fn parse_github(event: &str, body: &[u8]) -> Result<GitHubEvent, ParseError> {
    // Every webhook payload is a JSON object; a scalar or array is not a delivery at all.
    check_shape(body)?;
    let unhandled = |action: Option<String>| GitHubEvent::Unhandled {
        event: event.to_owned(),
        action,
    };
    let result = match event {
        "ping" => sonic_rs::from_slice::<IgnoredAny>(body)
            .map(|_| GitHubEvent::Ping)
            .map_err(json_err),
        "issues" => parse_issues(body),
        "pull_request" => parse_pr(body),
        "issue_comment" => parse_comment(body),
        "pull_request_review" => parse_review(body),
        "pull_request_review_comment" => parse_review_comment(body),
        "check_suite" => parse_check_suite(body),
        "installation" | "installation_repositories" => parse_installation(event, body),
        _ => {
            let a: ActionOnly = sonic_rs::from_slice(body).map_err(json_err)?;
            return Ok(unhandled(a.action));
        }
    };
    match result {
        Ok(ev) => Ok(ev),
        // A payload of an action this system ignores may lack fields it would need; it is
        // still a valid delivery, so answer "not handled" rather than "bad request".
        Err(e) => match sonic_rs::from_slice::<ActionOnly>(body) {
            Ok(ActionOnly { action: Some(a) }) if !handled_action(event, &a) => {
                Ok(unhandled(Some(a)))
            }
            _ => Err(e),
        },
    }
}

fn label_name(label: Option<RawLabel>) -> Result<String, ParseError> {
    label
        .map(|l| l.name)
        .ok_or_else(|| ParseError::Json("missing field `label`".into()))
}

#[derive(Deserialize)]
struct InstallationPayload {
    action: String,
    installation: RawInstallation,
    /// `installation.created`: the repositories it was installed on (absent for "all
    /// repositories" of a large account).
    #[serde(default)]
    repositories: Option<Vec<RawRepo>>,
    /// `installation_repositories.added`.
    #[serde(default)]
    repositories_added: Option<Vec<RawRepo>>,
}

fn parse_installation(event: &str, body: &[u8]) -> Result<GitHubEvent, ParseError> {
    let p: InstallationPayload = sonic_rs::from_slice(body).map_err(json_err)?;
    if !handled_action(event, &p.action) {
        return Ok(GitHubEvent::Unhandled {
            event: event.to_owned(),
            action: Some(p.action),
        });
    }
    let repos = p
        .repositories
        .into_iter()
        .chain(p.repositories_added)
        .flatten()
        .map(|r| RepoName::parse(&r.full_name))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(GitHubEvent::RepositoriesAdded {
        repos,
        installation_id: p.installation.id,
    })
}

fn parse_issues(body: &[u8]) -> Result<GitHubEvent, ParseError> {
    let p: IssuesPayload = sonic_rs::from_slice(body).map_err(json_err)?;
    let action = match p.action.as_str() {
        "labeled" => IssuesAction::Labeled(label_name(p.label)?),
        "unlabeled" => IssuesAction::Unlabeled(label_name(p.label)?),
        "closed" => IssuesAction::Closed,
        _ => {
            return Ok(GitHubEvent::Unhandled {
                event: "issues".into(),
                action: Some(p.action),
            });
        }
    };
    Ok(GitHubEvent::Issues {
        action,
        repo: RepoName::parse(&p.repository.full_name)?,
        issue: p.issue.into(),
        sender: p.sender.actor()?,
        installation_id: p.installation.map(|i| i.id),
    })
}

fn parse_pr(body: &[u8]) -> Result<GitHubEvent, ParseError> {
    let p: PrPayload = sonic_rs::from_slice(body).map_err(json_err)?;
    let action = match p.action.as_str() {
        "labeled" => PrAction::Labeled(label_name(p.label)?),
        "unlabeled" => PrAction::Unlabeled(label_name(p.label)?),
        "closed" => PrAction::Closed,
        "synchronize" => PrAction::Synchronize,
        _ => {
            return Ok(GitHubEvent::Unhandled {
                event: "pull_request".into(),
                action: Some(p.action),
            });
        }
    };
    let r = p.pull_request;
    Ok(GitHubEvent::PullRequest {
        action,
        repo: RepoName::parse(&p.repository.full_name)?,
        pr: PullRequest {
            number: r.number,
            title: r.title,
            body: r.body.unwrap_or_default(),
            head_ref: r.head.git_ref,
            head_sha: r.head.sha,
            head_repo: r.head.repo.map(|repo| repo.full_name),
            merged: r.merged.unwrap_or(false),
        },
        sender: p.sender.actor()?,
        installation_id: p.installation.map(|i| i.id),
    })
}

fn parse_comment(body: &[u8]) -> Result<GitHubEvent, ParseError> {
    let p: CommentPayload = sonic_rs::from_slice(body).map_err(json_err)?;
    if p.action != "created" {
        return Ok(GitHubEvent::Unhandled {
            event: "issue_comment".into(),
            action: Some(p.action),
        });
    }
    Ok(GitHubEvent::CommentCreated {
        repo: RepoName::parse(&p.repository.full_name)?,
        issue: p.issue.into(),
        comment: Comment {
            id: p.comment.id,
            body: p.comment.body.unwrap_or_default(),
            author: p.comment.user.actor()?,
        },
        installation_id: p.installation.map(|i| i.id),
    })
}

fn parse_review(body: &[u8]) -> Result<GitHubEvent, ParseError> {
    let p: ReviewPayload = sonic_rs::from_slice(body).map_err(json_err)?;
    if p.action != "submitted" {
        return Ok(GitHubEvent::Unhandled {
            event: "pull_request_review".into(),
            action: Some(p.action),
        });
    }
    Ok(GitHubEvent::ReviewSubmitted {
        repo: RepoName::parse(&p.repository.full_name)?,
        pr_number: p.pull_request.number,
        review: p.review.into_review()?,
        installation_id: p.installation.map(|i| i.id),
    })
}

fn parse_review_comment(body: &[u8]) -> Result<GitHubEvent, ParseError> {
    let p: ReviewCommentPayload = sonic_rs::from_slice(body).map_err(json_err)?;
    if p.action != "created" {
        return Ok(GitHubEvent::Unhandled {
            event: "pull_request_review_comment".into(),
            action: Some(p.action),
        });
    }
    Ok(GitHubEvent::ReviewCommentCreated {
        repo: RepoName::parse(&p.repository.full_name)?,
        pr_number: p.pull_request.number,
        comment: p.comment.into_comment()?,
        installation_id: p.installation.map(|i| i.id),
    })
}

fn parse_check_suite(body: &[u8]) -> Result<GitHubEvent, ParseError> {
    let p: CheckSuitePayload = sonic_rs::from_slice(body).map_err(json_err)?;
    if p.action != "completed" {
        return Ok(GitHubEvent::Unhandled {
            event: "check_suite".into(),
            action: Some(p.action),
        });
    }
    let c = p.check_suite;
    Ok(GitHubEvent::CheckSuiteCompleted {
        repo: RepoName::parse(&p.repository.full_name)?,
        suite: CheckSuite {
            id: c.id,
            head_sha: c.head_sha,
            conclusion: c.conclusion.unwrap_or_default().to_ascii_lowercase(),
            pull_requests: c.pull_requests.into_iter().map(|pr| pr.number).collect(),
            app: c.app.and_then(|a| a.slug),
        },
        installation_id: p.installation.map(|i| i.id),
    })
}

/// A JIRA webhook event, reduced to what the trigger needs.
#[derive(Debug, Clone, PartialEq)]
pub struct JiraEvent {
    /// `webhookEvent`, e.g. `jira:issue_updated`.
    pub kind: String,
    pub issue: Option<JiraIssue>,
    /// Labels this event added: all labels of a created issue; for an update, the labels in the
    /// changelog's `toString` that were not in its `fromString`.
    pub labels_added: Vec<String>,
    /// The account that acted (added the label), when the payload names one.
    pub user: Option<JiraUser>,
}

/// The acting account of a JIRA event (`user`), as JIRA Cloud sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JiraUser {
    /// `accountId`, the stable Atlassian account id; `None` when absent or empty.
    pub account_id: Option<String>,
    /// `accountType`: `atlassian` for people, `app` for apps and automation rules, `customer`
    /// for service-desk customers; `None` when absent.
    pub account_type: Option<String>,
    /// `displayName`, for logs only: anyone can choose theirs.
    pub display_name: Option<String>,
}

/// The issue of a JIRA event.
#[derive(Debug, Clone, PartialEq)]
pub struct JiraIssue {
    pub key: JiraKey,
    pub project_key: String,
    pub summary: String,
    /// ADF document (JIRA Cloud API v3), plain string (v2) or null.
    pub description: serde_json::Value,
    pub labels: Vec<String>,
}

#[derive(Deserialize)]
struct RawJira {
    #[serde(rename = "webhookEvent", default)]
    webhook_event: Option<String>,
    #[serde(default)]
    issue: Option<RawJiraIssue>,
    #[serde(default)]
    changelog: Option<RawChangelog>,
    #[serde(default)]
    user: Option<RawJiraUser>,
}

#[derive(Deserialize)]
struct RawJiraUser {
    #[serde(rename = "accountId", default)]
    account_id: Option<String>,
    #[serde(rename = "accountType", default)]
    account_type: Option<String>,
    #[serde(rename = "displayName", default)]
    display_name: Option<String>,
}

impl From<RawJiraUser> for JiraUser {
    fn from(u: RawJiraUser) -> Self {
        let given = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        JiraUser {
            account_id: given(u.account_id),
            account_type: given(u.account_type),
            display_name: u.display_name,
        }
    }
}

#[derive(Deserialize)]
struct RawJiraIssue {
    key: String,
    fields: RawJiraFields,
}

#[derive(Deserialize)]
struct RawJiraFields {
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    description: serde_json::Value,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    project: Option<RawJiraProject>,
}

#[derive(Deserialize)]
struct RawJiraProject {
    key: String,
}

#[derive(Deserialize)]
struct RawChangelog {
    #[serde(default)]
    items: Vec<RawChangeItem>,
}

#[derive(Deserialize)]
struct RawChangeItem {
    #[serde(default)]
    field: Option<String>,
    #[serde(rename = "fromString", default)]
    from_string: Option<String>,
    #[serde(rename = "toString", default)]
    to_string: Option<String>,
}

/// Parses a JIRA webhook body.
pub fn parse_jira(body: &[u8]) -> Result<JiraEvent, ParseError> {
    check_shape(body)?;
    let raw: RawJira = sonic_rs::from_slice(body).map_err(json_err)?;
    let kind = raw.webhook_event.unwrap_or_default();
    let issue = match raw.issue {
        Some(i) => {
            let key = JiraKey::parse(&i.key)?;
            let project_key = i
                .fields
                .project
                .map(|p| p.key)
                .unwrap_or_else(|| key.project().to_owned());
            Some(JiraIssue {
                key,
                project_key: project_key.to_ascii_uppercase(),
                summary: i.fields.summary.unwrap_or_default(),
                description: i.fields.description,
                labels: i.fields.labels,
            })
        }
        None => None,
    };
    let labels_added = match kind.as_str() {
        "jira:issue_created" => issue.as_ref().map(|i| i.labels.clone()).unwrap_or_default(),
        _ => {
            let mut added = Vec::new();
            for item in raw.changelog.map(|c| c.items).unwrap_or_default() {
                if item.field.as_deref() != Some("labels") {
                    continue;
                }
                let before: Vec<&str> = item
                    .from_string
                    .as_deref()
                    .unwrap_or("")
                    .split_whitespace()
                    .collect();
                for l in item.to_string.as_deref().unwrap_or("").split_whitespace() {
                    if !before.contains(&l) && !added.iter().any(|a: &String| a == l) {
                        added.push(l.to_owned());
                    }
                }
            }
            added
        }
    };
    Ok(JiraEvent {
        kind,
        issue,
        labels_added,
        user: raw.user.map(JiraUser::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issues(action: &str, label: &str, sender_type: &str) -> Vec<u8> {
        json!({
            "action": action,
            "issue": {"number": 5, "title": "T", "body": null},
            "label": {"name": label},
            "repository": {"full_name": "Octo/Repo"},
            "sender": {"login": "alice", "type": sender_type},
            "installation": {"id": 9}
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn issues_labeled() {
        let ev = parse_github("issues", &issues("labeled", "claude-dev", "User")).unwrap();
        let GitHubEvent::Issues {
            action,
            repo,
            issue,
            sender,
            installation_id,
        } = ev
        else {
            panic!("wrong event")
        };
        assert_eq!(action, IssuesAction::Labeled("claude-dev".into()));
        assert_eq!(repo.as_str(), "octo/repo");
        assert_eq!(issue.body, "");
        assert!(!sender.is_bot);
        assert_eq!(installation_id, Some(9));
    }

    #[test]
    fn bots_are_recognised() {
        let ev = parse_github("issues", &issues("labeled", "x", "Bot")).unwrap();
        assert!(matches!(
            ev,
            GitHubEvent::Issues {
                sender: Actor { is_bot: true, .. },
                ..
            }
        ));
    }

    #[test]
    fn unhandled_events_and_actions() {
        assert_eq!(
            parse_github("star", br#"{"action":"created"}"#).unwrap(),
            GitHubEvent::Unhandled {
                event: "star".into(),
                action: Some("created".into())
            }
        );
        // An ignored action with fields missing is still "not handled", not a bad request.
        assert!(matches!(
            parse_github("issues", br#"{"action":"opened"}"#).unwrap(),
            GitHubEvent::Unhandled { .. }
        ));
        assert!(parse_github("issues", br#"{"action":"labeled"}"#).is_err());
        assert!(parse_github("star", b"not json").is_err());
        assert!(parse_github("ping", b"{}").is_ok());
        assert!(parse_github("ping", b"42").is_err());
        assert!(parse_github("push", b" []").is_err());
        assert!(parse_jira(b"[]").is_err());
    }

    #[test]
    fn hostile_json_is_an_error_not_a_crash() {
        let nest = |n: usize| {
            format!(
                "{{\"x\":{}{}, \"s\": \"[[[{{{{\\\"\"}}",
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        let deep = nest(200_000);
        // Openers inside strings do not count; the limit itself is fine.
        assert!(check_shape(nest(MAX_JSON_DEPTH - 1).as_bytes()).is_ok());
        assert!(check_shape(nest(MAX_JSON_DEPTH).as_bytes()).is_err());
        for event in ["issues", "pull_request", "issue_comment", "push", "ping"] {
            assert!(parse_github(event, deep.as_bytes()).is_err(), "{event}");
            let mut bad_utf8 = br#"{"action":"labeled","x":""#.to_vec();
            bad_utf8.extend([0xff, 0xfe]);
            bad_utf8.extend(br#""}"#);
            assert!(parse_github(event, &bad_utf8).is_err(), "{event}");
        }
        assert!(parse_jira(deep.as_bytes()).is_err());
    }

    #[test]
    fn the_parser_survives_the_fast_path_depth_on_a_small_stack() {
        let n = FAST_PATH_OPENERS - 1;
        let body = format!(
            "{{\"action\":\"labeled\",\"x\":{}{}}}",
            "[".repeat(n),
            "]".repeat(n)
        );
        let survived = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || parse_github("issues", body.as_bytes()).is_err())
            .expect("thread")
            .join();
        assert_eq!(survived.ok(), Some(true));
    }

    #[test]
    fn jira_labels_added_from_changelog() {
        let body = json!({
            "webhookEvent": "jira:issue_updated",
            "issue": {"key": "agnts-4", "fields": {"summary": "S", "labels": ["a", "claude-dev"],
                      "project": {"key": "AGNTS"}}},
            "changelog": {"items": [
                {"field": "status", "fromString": "x", "toString": "y"},
                {"field": "labels", "fromString": "a", "toString": "a claude-dev"}
            ]}
        });
        let ev = parse_jira(body.to_string().as_bytes()).unwrap();
        assert_eq!(ev.labels_added, vec!["claude-dev".to_owned()]);
        assert_eq!(ev.issue.unwrap().key.as_str(), "AGNTS-4");
    }

    #[test]
    fn jira_user_is_the_acting_account() {
        let body = json!({"webhookEvent": "jira:issue_updated",
            "user": {"accountId": " 557058:f5 ", "accountType": "atlassian", "displayName": "Dave"}});
        let user = parse_jira(body.to_string().as_bytes())
            .unwrap()
            .user
            .unwrap();
        assert_eq!(user.account_id.as_deref(), Some("557058:f5"));
        assert_eq!(user.account_type.as_deref(), Some("atlassian"));
        let body = json!({"webhookEvent": "jira:issue_updated", "user": {"accountId": ""}});
        let user = parse_jira(body.to_string().as_bytes())
            .unwrap()
            .user
            .unwrap();
        assert_eq!((user.account_id, user.account_type), (None, None));
        let body = json!({"webhookEvent": "jira:issue_updated"});
        assert_eq!(parse_jira(body.to_string().as_bytes()).unwrap().user, None);
    }

    #[test]
    fn jira_created_counts_every_label() {
        let body = json!({"webhookEvent": "jira:issue_created",
            "issue": {"key": "P-1", "fields": {"labels": ["claude-dev"]}}});
        let ev = parse_jira(body.to_string().as_bytes()).unwrap();
        assert_eq!(ev.labels_added, vec!["claude-dev".to_owned()]);
        assert_eq!(ev.issue.unwrap().project_key, "P");
    }
}
