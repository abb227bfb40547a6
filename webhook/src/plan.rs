//! The decision of a delivery, without I/O: from an [`Intent`] and a [`Snapshot`] of what the
//! store and GitHub hold to the [`Plan`] the executor ([`crate::act`]) carries out, and from
//! each step's result to the [`Outcome`] the answer is made of.
//!
//! The shape is the sweeper's: the executor reads what [`needs`] names, [`plan`] decides with
//! `now` and a fresh id passed in, and the steps that can fail have their consequence decided
//! here too ([`claim_lost`], [`start_failed`], [`stop_delegated`], [`after_forward`],
//! [`after_refresh`], [`label_refusal`]), so every branch is a unit test.

use std::collections::BTreeMap;

use cca_domain::decide::{
    Command, CommentPlan, Intent, Rules, StartPlan, StopReason, plan_comment, plan_start,
    sessions_to_stop,
};
use cca_domain::event::{Actor, CheckRun, CheckSuite, Issue, PullRequest, Review, ReviewComment};
use cca_domain::naming::{self, PreviewUrls};
use cca_domain::session::SessionPatch;
use cca_domain::{
    ActiveKey, BranchName, ImageChannel, JiraKey, Login, RepoName, Session, SessionId, SessionType,
    Source, Status, texts,
};
use cca_github::{GitHubError, Permission};
use serde_json::{Value, json};

use crate::control::ControlError;

/// What a delivery's plan is made from, besides the intent: the settings that shape it.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub rules: &'a Rules,
    pub urls: &'a PreviewUrls,
    /// JIRA, when configured.
    pub jira: Option<JiraContext<'a>>,
    /// The installation JIRA sessions act through.
    pub default_installation: Option<u64>,
}

/// What JIRA's intents need of its settings.
#[derive(Debug, Clone, Copy)]
pub struct JiraContext<'a> {
    /// JIRA project key (upper case) → repository.
    pub mapping: &'a BTreeMap<String, RepoName>,
    /// `https://<site>`: issues are at `<base>/browse/<KEY>`.
    pub base_url: &'a str,
}

/// The reads a delivery needs before it can be planned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Needs {
    /// The actor's permission on the repository, through this installation.
    pub permission: Option<PermissionQuery>,
    /// The session that holds (or last held) this key.
    pub active: Option<ActiveKey>,
    /// Whether a session of [`Self::active`] that is stopping is waited for (a start: it is
    /// started again once stopped).
    pub wait_for_stop: bool,
    /// The sessions of this PR, newest first.
    pub on_pr: Option<(RepoName, u64)>,
    /// The session holding this id, if any (a preview's readable id may be another PR's).
    pub id_holder: Option<SessionId>,
    /// The comments on the diff of a submitted review, read once the PR is known to have an
    /// agent session ([`reads_review`]).
    pub review: Option<ReviewQuery>,
    /// The check runs of a failed suite, read once the PR is known to have an agent session.
    pub checks: Option<ChecksQuery>,
    /// The review a single diff comment was submitted with: when that review is itself for the
    /// agent, its own event carries the comment.
    pub comment_review: Option<ReviewQuery>,
    /// The agent sessions of an installation that have not ended: a start counts them against
    /// [`Rules::max_active_sessions`].
    pub installation_load: Option<LoadQuery>,
}

/// Whose active sessions a start counts, and whether only when a comment relaunches the PR's
/// ended session (a comment for a running one starts nothing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadQuery {
    pub installation: Option<u64>,
    pub only_for_relaunch: bool,
}

/// Whether a comment on a PR with these sessions starts its agent session again.
pub fn relaunches(on_pr: &[Session]) -> bool {
    matches!(plan_comment(on_pr), CommentPlan::Relaunch(_))
}

/// What is read of checks, through which installation: a failed suite's runs, or, for a
/// passing one, whether every suite on its commit passed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChecksQuery {
    pub repo: RepoName,
    pub suite_id: u64,
    pub head_sha: String,
    pub failed: bool,
    pub installation: Option<u64>,
}

/// The most failed checks whose logs are read for one fix run.
pub const FAILED_CHECKS_READ: usize = 5;

/// The lines of a failed check's log the fix run gets.
pub const LOG_TAIL_LINES: usize = 80;

/// Which review's comments are read, through which installation.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewQuery {
    pub repo: RepoName,
    pub pr_number: u64,
    pub review_id: u64,
    pub installation: Option<u64>,
}

/// Whose permission is asked, where.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionQuery {
    pub repo: RepoName,
    pub user: Login,
    pub installation: Option<u64>,
}

/// What the store and GitHub held when the delivery was planned.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Unix seconds of the reading: every record the delivery writes carries it.
    pub now: i64,
    /// The actor's permission, when [`Needs::permission`] asked for it.
    pub permission: Option<Permission>,
    /// The session of [`Needs::active`] (after a stop in progress was waited out).
    pub active: Option<Session>,
    /// The sessions of [`Needs::on_pr`].
    pub on_pr: Vec<Session>,
    /// The session of [`Needs::id_holder`].
    pub id_holder: Option<Session>,
    /// The comments of [`Needs::review`], oldest first.
    pub review_comments: Vec<ReviewComment>,
    /// For a passing suite: whether every suite on its commit has completed without failing.
    pub all_checks_green: Option<bool>,
    /// The review of [`Needs::comment_review`].
    pub comment_review: Option<Review>,
    /// The failed checks of [`Needs::checks`] (at most [`FAILED_CHECKS_READ`]), with their logs'
    /// tails where GitHub keeps them.
    pub failed_checks: Vec<CheckRun>,
    /// The id a new agent session gets (drawn at random by the reader).
    pub fresh_id: Option<SessionId>,
    /// The agent sessions of [`Needs::installation_load`] that have not ended.
    pub installation_active: Vec<Session>,
}

/// A comment to post on an issue or PR.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    pub installation: Option<u64>,
    pub repo: RepoName,
    pub number: u64,
    pub body: String,
}

/// What a delivery does.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Nothing to change: post these comments (if any) and answer.
    Answer { posts: Vec<Post>, outcome: Outcome },
    /// Claim a session, then make its branch, PR and task.
    Start(Box<Start>),
    /// Stop sessions.
    Stop(Stop),
    /// Tell a running preview to move to a new head.
    Refresh {
        session: Box<Session>,
        head_sha: String,
    },
    /// Send a comment to a running agent.
    Forward(Box<Forward>),
    /// Make the system's labels in the repositories the App was given.
    Labels {
        installation: u64,
        now: Vec<RepoName>,
        later: Vec<RepoName>,
    },
}

/// A start: the claim, then provisioning.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    pub claim: Claim,
    /// What asked for it (a lost race is answered differently).
    pub trigger: Trigger,
    /// The branch and draft PR an agent session opens; none for a preview or a relaunch by
    /// comment (its PR exists).
    pub pr: Option<PrPlan>,
    /// Posted when the claim is lost to a concurrent delivery.
    pub if_taken: Option<Post>,
    /// The JIRA issue told once the session started.
    pub jira: Option<JiraKey>,
    /// The answer's message once started.
    pub message: &'static str,
    /// The installation has [`Rules::max_active_sessions`] running: the session waits, its
    /// branch and PR made, at this place in line (1 = next), and the issue is told.
    pub queue: Option<Queued>,
}

/// Where a session waits for its turn, and what it is told.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub place: usize,
    /// The comment saying so.
    pub body: String,
    /// The GitHub issue or PR it goes to; `None`: the PR opened for the session (a JIRA issue
    /// is told too).
    pub number: Option<u64>,
}

/// The place a start of session `id` waits at under the ceiling, and what it is told on
/// `number`.
fn queue_for(
    ctx: &Context<'_>,
    snap: &Snapshot,
    id: &SessionId,
    number: Option<u64>,
) -> Option<Queued> {
    let max = ctx.rules.max_active_sessions;
    place_in_line(&snap.installation_active, id, max).map(|place| Queued {
        place,
        body: texts::session_queued(place, max),
        number,
    })
}

/// How a session is claimed in the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// A new record (fails if the key or id is taken meanwhile).
    Create(Session),
    /// The ended session started again on its id, branch and PR.
    Relaunch {
        last: Session,
        patch: Box<SessionPatch>,
    },
}

impl Claim {
    /// The session as it will be once claimed (before the store answers).
    pub fn session(&self) -> &Session {
        match self {
            Claim::Create(s) | Claim::Relaunch { last: s, .. } => s,
        }
    }
}

/// What asked for a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Label,
    Comment,
}

/// The PR a new agent session opens, and its first commit's message.
#[derive(Debug, Clone, PartialEq)]
pub struct PrPlan {
    pub title: String,
    pub body: String,
    pub commit_message: String,
}

/// A stop of some sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct Stop {
    pub targets: Vec<StopTarget>,
    pub reason: StopReason,
    /// Posted once if any session was stopped (the stop command's acknowledgement).
    pub then: Option<Post>,
}

/// One session to stop, and what is said on its PR.
#[derive(Debug, Clone, PartialEq)]
pub struct StopTarget {
    pub session: Session,
    pub post: Option<Post>,
}

/// A comment for a running agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    pub session: Session,
    /// The agent's control route: [`PROMPT_ROUTE`] or [`CHECKS_ROUTE`].
    pub route: &'static str,
    /// The comment acknowledged, if the follow-up is one.
    pub comment_id: Option<u64>,
    /// The control API's `/prompt` body.
    pub body: Value,
    /// Where the commenter is answered when the comment cannot be delivered.
    pub installation: Option<u64>,
    pub repo: RepoName,
    pub pr_number: u64,
}

/// What a delivery came to: the webhook's answer is made of it at the edge
/// ([`crate::reply::Reply::from_outcome`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Handled, or deliberately not: a reason.
    Done(String),
    /// The actor may not do this.
    Refused(String),
    /// The App cannot act for this installation: bad input, not an outage.
    NotInstalled {
        installation: Option<u64>,
        error: String,
    },
    /// A session already holds the key.
    Exists {
        id: SessionId,
        status: Option<Status>,
    },
    /// The session still stops; not started again.
    StillStopping { id: SessionId, status: Status },
    /// A session was started (or relaunched).
    Started {
        message: &'static str,
        session: Box<Session>,
    },
    /// A session waits for a place under the installation's ceiling.
    Queued { session: Box<Session>, place: usize },
    /// A claimed session could not be started: it is `FAILED` with this reason.
    StartFailed(String),
    /// These sessions are stopping.
    Stopping(Vec<SessionId>),
    /// The preview was told the new head.
    Refreshing(SessionId),
    /// The preview could not be told.
    RefreshFailed { id: SessionId, error: String },
    /// The comment reached the agent.
    Forwarded(SessionId),
    /// The agent's address may not be called; the commenter was told.
    AgentUnreachable(SessionId),
    /// The comment did not reach the agent this time; the commenter was told.
    ForwardFailed(String),
    /// The agent is still starting; the commenter was told.
    NotReady(SessionId),
    /// Labels made, per repository; the repositories that refused; those left for later.
    Labels {
        created: BTreeMap<String, Vec<String>>,
        refused: Vec<String>,
        not_done: Vec<String>,
    },
    /// A dependency failed; `transient` when the same request may well succeed later.
    Failed { error: String, transient: bool },
}

impl Outcome {
    /// Whether the work was not done, so the delivery is forgotten and GitHub's redelivery is
    /// handled again rather than answered "duplicate".
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Outcome::StartFailed(_)
                | Outcome::RefreshFailed { .. }
                | Outcome::ForwardFailed(_)
                | Outcome::Failed { .. }
        )
    }
}

/// The most repositories one installation delivery makes labels in, one request at a time as
/// GitHub asks of content-creating requests: five labels each (twenty labels in all, as before
/// the plan label) stay within its 10 s for an answer.
pub const LABEL_REPOS_PER_DELIVERY: usize = 4;

/// The repository and installation an intent acts on, and who must be able to write there.
fn permission_query(intent: &Intent) -> Option<PermissionQuery> {
    let user = intent.requires_write()?.clone();
    let (repo, installation) = match intent {
        Intent::StartAgent {
            repo,
            installation_id,
            ..
        }
        | Intent::StartPreview {
            repo,
            installation_id,
            ..
        }
        | Intent::Prompt {
            repo,
            installation_id,
            ..
        }
        | Intent::Review {
            repo,
            installation_id,
            ..
        }
        | Intent::StopCommand {
            repo,
            installation_id,
            ..
        }
        | Intent::Command {
            repo,
            installation_id,
            ..
        } => (repo.clone(), *installation_id),
        _ => return None,
    };
    Some(PermissionQuery {
        repo,
        user,
        installation,
    })
}

/// The branch a preview of `pr` runs, when it can be previewed at all.
fn preview_branch(pr: &PullRequest) -> Option<BranchName> {
    pr.head_repo.as_ref()?;
    BranchName::parse(&pr.head_ref).ok()
}

/// The repository a JIRA project maps to.
fn jira_repo(ctx: &Context<'_>, project_key: &str) -> Option<RepoName> {
    ctx.jira?
        .mapping
        .get(&project_key.to_ascii_uppercase())
        .cloned()
}

/// What must be read before `intent` can be planned.
pub fn needs(intent: &Intent, ctx: &Context<'_>) -> Needs {
    let permission = permission_query(intent);
    let mut n = Needs {
        permission,
        ..Needs::default()
    };
    match intent {
        Intent::StartAgent {
            repo,
            issue,
            installation_id,
            ..
        } => {
            n.active = Some(ActiveKey::issue(repo, issue.number));
            n.wait_for_stop = true;
            n.installation_load = Some(LoadQuery {
                installation: *installation_id,
                only_for_relaunch: false,
            });
        }
        Intent::StartPreview { repo, pr, .. } => {
            if let Some(branch) = preview_branch(pr) {
                n.active = Some(ActiveKey::preview(repo, pr.number));
                n.wait_for_stop = true;
                n.id_holder = Some(readable_preview_id(&branch));
            }
        }
        Intent::StopIssue {
            repo, issue_number, ..
        } => n.active = Some(ActiveKey::issue(repo, *issue_number)),
        Intent::StopPr {
            repo, pr_number, ..
        }
        | Intent::StopCommand {
            repo, pr_number, ..
        }
        | Intent::Command {
            repo, pr_number, ..
        }
        | Intent::RefreshPreview {
            repo, pr_number, ..
        }
        | Intent::Prompt {
            repo, pr_number, ..
        } => n.on_pr = Some((repo.clone(), *pr_number)),
        Intent::Review {
            repo,
            pr_number,
            review,
            comments,
            installation_id,
            ..
        } => {
            n.on_pr = Some((repo.clone(), *pr_number));
            let query = |review_id| ReviewQuery {
                repo: repo.clone(),
                pr_number: *pr_number,
                review_id,
                installation: *installation_id,
            };
            n.review = review.as_ref().map(|r| query(r.id));
            n.comment_review = match review {
                None => comments.first().and_then(|c| c.review_id).map(query),
                Some(_) => None,
            };
        }
        Intent::Checks {
            repo,
            pr_number,
            suite,
            installation_id,
        } => {
            n.on_pr = Some((repo.clone(), *pr_number));
            n.checks = Some(ChecksQuery {
                repo: repo.clone(),
                suite_id: suite.id,
                head_sha: suite.head_sha.clone(),
                failed: suite.failed(),
                installation: *installation_id,
            });
        }
        Intent::StartJira {
            key, project_key, ..
        } => {
            if jira_repo(ctx, project_key).is_some() {
                n.active = Some(ActiveKey::jira(key));
                n.wait_for_stop = true;
                n.installation_load = Some(LoadQuery {
                    installation: ctx.default_installation,
                    only_for_relaunch: false,
                });
            }
        }
        Intent::EnsureLabels { .. } | Intent::Ignore(_) => {}
    }
    // A comment on an ended session relaunches it (commands: only an approval does).
    if let Intent::Prompt {
        installation_id, ..
    }
    | Intent::Review {
        installation_id, ..
    }
    | Intent::Command {
        installation_id,
        command: Command::Approve,
        ..
    } = intent
    {
        n.installation_load = Some(LoadQuery {
            installation: *installation_id,
            only_for_relaunch: true,
        });
    }
    n
}

fn readable_preview_id(branch: &BranchName) -> SessionId {
    SessionId::parse(&naming::preview_session_id(branch.as_str()))
        .unwrap_or_else(|_| unreachable!())
}

/// Whether a review's comments are worth reading: only a PR with an agent session forwards it.
pub fn reads_review(on_pr: &[Session]) -> bool {
    on_pr.iter().any(|s| s.session_type == SessionType::Agent)
}

/// Whether the PR's agent would be sent something now: its newest agent session is running
/// with an address (what is read only for that is not read otherwise).
pub fn forwards(on_pr: &[Session]) -> bool {
    matches!(plan_comment(on_pr), CommentPlan::Forward(_))
}

/// Whether a start waits for the session holding its key (one that stops ends within seconds,
/// then is started again).
pub fn worth_waiting_for(active: Option<&Session>) -> bool {
    active.is_some_and(|s| s.status == Status::Stopping)
}

fn answer(outcome: Outcome) -> Plan {
    Plan::Answer {
        posts: Vec::new(),
        outcome,
    }
}

fn done(message: impl Into<String>) -> Plan {
    answer(Outcome::Done(message.into()))
}

/// The plan of `intent` from what was read.
pub fn plan(intent: Intent, snap: &Snapshot, ctx: &Context<'_>) -> Plan {
    if let (Some(query), Some(p)) = (permission_query(&intent), snap.permission) {
        if !p.can_write() {
            return answer(Outcome::Refused(format!(
                "{} lacks write permission on {}",
                query.user, query.repo
            )));
        }
    }
    match intent {
        Intent::StartAgent {
            repo,
            issue,
            channel,
            plan,
            installation_id,
            ..
        } => start_issue(ctx, snap, repo, &issue, (channel, plan), installation_id),
        Intent::StartPreview {
            repo,
            pr,
            channel,
            installation_id,
            ..
        } => start_preview(ctx, snap, repo, &pr, channel, installation_id),
        Intent::StartJira {
            key,
            project_key,
            summary,
            description,
            channel,
        } => start_jira(
            ctx,
            snap,
            key,
            &project_key,
            &summary,
            &description,
            channel,
        ),
        Intent::StopIssue {
            repo,
            issue_number,
            reason,
        } => match &snap.active {
            None => done("no session for this issue"),
            Some(s) => {
                let pr = s.pr_number.unwrap_or(issue_number);
                stop(
                    &repo,
                    pr,
                    sessions_to_stop(std::slice::from_ref(s), None),
                    reason,
                )
            }
        },
        Intent::StopPr {
            repo,
            pr_number,
            only,
            reason,
        } => stop(
            &repo,
            pr_number,
            sessions_to_stop(&snap.on_pr, only),
            reason,
        ),
        Intent::StopCommand {
            repo,
            pr_number,
            actor,
            ..
        } => stop(
            &repo,
            pr_number,
            sessions_to_stop(&snap.on_pr, Some(SessionType::Agent)),
            StopReason::Command { by: actor.login },
        ),
        Intent::Command {
            repo,
            pr_number,
            actor,
            comment_id,
            command,
            installation_id,
        } => command_plan(
            ctx,
            snap,
            repo,
            pr_number,
            actor.login.as_str(),
            comment_id,
            &command,
            installation_id,
        ),
        Intent::RefreshPreview { head_sha, .. } => {
            match snap.on_pr.iter().find(|s| {
                s.session_type == SessionType::Preview
                    && matches!(s.status, Status::Running | Status::Idle)
            }) {
                Some(s) => Plan::Refresh {
                    session: Box::new(s.clone()),
                    head_sha,
                },
                None => done("no running preview for this PR"),
            }
        }
        Intent::Prompt {
            repo,
            pr_number,
            comment,
            installation_id,
        } => {
            let follow_up = FollowUp {
                prompt: comment.body.clone(),
                relaunch_prompt: texts::follow_up_prompt(
                    comment.author.login.as_str(),
                    &comment.body,
                ),
                author: comment.author.login.as_str().to_owned(),
                comment_id: Some(comment.id),
                threads: Vec::new(),
                covers: Vec::new(),
            };
            prompt(ctx, snap, repo, pr_number, follow_up, installation_id)
        }
        Intent::Review {
            repo,
            pr_number,
            author,
            review,
            comments,
            installation_id,
        } => {
            if let Some(r) = snap
                .comment_review
                .as_ref()
                .filter(|r| ctx.rules.review_counts(r))
            {
                return done(format!(
                    "the comment's review ({}) is for the agent, and its own event carries it",
                    r.state
                ));
            }
            let follow_up = review_follow_up(&author, review.as_ref(), comments, snap);
            if follow_up.threads.is_empty()
                && review.as_ref().is_none_or(|r| r.body.trim().is_empty())
            {
                return done("the review holds nothing for the agent");
            }
            prompt(ctx, snap, repo, pr_number, follow_up, installation_id)
        }
        Intent::Checks {
            repo,
            pr_number,
            suite,
            installation_id,
        } => checks(snap, repo, pr_number, &suite, installation_id),
        Intent::EnsureLabels {
            repos,
            installation_id,
        } => {
            let (now, later) = repos.split_at(repos.len().min(LABEL_REPOS_PER_DELIVERY));
            Plan::Labels {
                installation: installation_id,
                now: now.to_vec(),
                later: later.to_vec(),
            }
        }
        Intent::Ignore(reason) => done(reason),
    }
}

/// The label that starts `s` again (none for a JIRA session: its issue is labelled in JIRA).
fn start_label<'a>(s: &Session, rules: &'a Rules) -> Option<&'a str> {
    let staging = s.image_channel == ImageChannel::Staging;
    match (s.source, s.session_type, staging) {
        (Source::Jira, _, _) => None,
        (_, SessionType::Agent, false) => Some(&rules.agent_label),
        (_, SessionType::Agent, true) => Some(&rules.agent_staging_label),
        (_, SessionType::Preview, false) => Some(&rules.preview_label),
        (_, SessionType::Preview, true) => Some(&rules.preview_staging_label),
    }
}

/// The claim of a start from the session last holding its key, or the answer when there is
/// nothing to claim.
fn claim(
    ctx: &Context<'_>,
    snap: &Snapshot,
    fresh: impl FnOnce() -> Session,
    prompt: Option<String>,
) -> Result<Claim, Box<Plan>> {
    let last = snap.active.as_ref();
    if let Some(s) = last.filter(|s| s.status == Status::Stopping) {
        // Still stopping after the wait: said on the issue or PR, not started again.
        let posts = s
            .pr_number
            .or(s.issue_number)
            .map(|n| Post {
                installation: s.installation_id,
                repo: s.repo_full_name.clone(),
                number: n,
                body: texts::still_stopping(
                    &s.session_id,
                    &texts::start_again(start_label(s, ctx.rules)),
                ),
            })
            .into_iter()
            .collect();
        return Err(Box::new(Plan::Answer {
            posts,
            outcome: Outcome::StillStopping {
                id: s.session_id.clone(),
                status: s.status,
            },
        }));
    }
    match (plan_start(last), last) {
        (StartPlan::AlreadyActive, Some(s)) => Err(Box::new(answer(Outcome::Exists {
            id: s.session_id.clone(),
            status: Some(s.status),
        }))),
        (StartPlan::Relaunch, Some(s)) => Ok(Claim::Relaunch {
            last: s.clone(),
            patch: Box::new(SessionPatch {
                initial_prompt: prompt,
                ..SessionPatch::default()
            }),
        }),
        _ => Ok(Claim::Create(fresh())),
    }
}

fn fresh_agent_id(snap: &Snapshot) -> SessionId {
    snap.fresh_id
        .clone()
        .unwrap_or_else(SessionId::random_agent)
}

fn start_issue(
    ctx: &Context<'_>,
    snap: &Snapshot,
    repo: RepoName,
    issue: &Issue,
    (channel, plan_mode): (ImageChannel, bool),
    installation_id: Option<u64>,
) -> Plan {
    let prompt = texts::issue_prompt(issue.number, &issue.title, &issue.body);
    let fresh = || {
        let id = fresh_agent_id(snap);
        let mut s = Session::new(
            id.clone(),
            SessionType::Agent,
            Source::Github,
            repo.clone(),
            naming::issue_branch(issue.number),
            channel,
            snap.now,
        );
        s.issue_number = Some(issue.number);
        s.installation_id = installation_id;
        s.initial_prompt = Some(prompt.clone());
        s.uat_url = Some(ctx.urls.url(&id));
        s.plan_mode = plan_mode;
        s
    };
    let mut claim = match claim(ctx, snap, fresh, Some(prompt.clone())) {
        Ok(c) => c,
        Err(plan) => return *plan,
    };
    if let Claim::Relaunch { patch, .. } = &mut claim {
        // The label given now decides: a plan label plans again, another one implements.
        patch.plan_mode = Some(plan_mode);
    }
    let queue = queue_for(ctx, snap, &claim.session().session_id, Some(issue.number));
    let url = claim.session().uat_url.clone().unwrap_or_default();
    Plan::Start(Box::new(Start {
        claim,
        trigger: Trigger::Label,
        pr: Some(PrPlan {
            title: texts::issue_pr_title(&issue.title),
            body: texts::issue_pr_body(issue.number, &issue.body, &url),
            commit_message: texts::issue_commit_message(issue.number),
        }),
        if_taken: None,
        jira: None,
        message: "Session started",
        queue,
    }))
}

/// The place in line of a start of session `id` (1 = next), when it must wait: the
/// installation's other agent sessions that have not ended (`active`) hold `max` places, or
/// others already wait (they go first).
pub fn place_in_line(active: &[Session], id: &SessionId, max: usize) -> Option<usize> {
    let others = || active.iter().filter(|s| s.session_id != *id);
    let waiting = others().filter(|s| s.status == Status::Queued).count();
    let busy = others().filter(|s| holds_a_place(s.status)).count();
    (busy >= max || waiting > 0).then_some(waiting + 1)
}

/// Whether a session counts against the ceiling: it runs, or is about to. One that is stopping
/// is ending (its agent pushes and exits within seconds) and leaves its place to the next.
fn holds_a_place(status: Status) -> bool {
    !status.is_terminal() && !matches!(status, Status::Queued | Status::Stopping)
}

/// The queued sessions whose turn it is, oldest first: per installation, as many as the places
/// its running agent sessions leave under `max`. `active` holds every session that has not
/// ended.
pub fn turns(active: &[Session], max: usize) -> Vec<Session> {
    let mut by_installation: BTreeMap<Option<u64>, (usize, Vec<&Session>)> = BTreeMap::new();
    for s in active
        .iter()
        .filter(|s| s.session_type == SessionType::Agent && !s.status.is_terminal())
    {
        let entry = by_installation.entry(s.installation_id).or_default();
        match s.status {
            Status::Queued => entry.1.push(s),
            status if holds_a_place(status) => entry.0 += 1,
            _ => {}
        }
    }
    let mut due = Vec::new();
    for (busy, mut waiting) in by_installation.into_values() {
        waiting.sort_by(|a, b| {
            (a.updated_at, a.session_id.as_str()).cmp(&(b.updated_at, b.session_id.as_str()))
        });
        let free = max.saturating_sub(busy);
        due.extend(waiting.into_iter().take(free).cloned());
    }
    due
}

fn start_preview(
    ctx: &Context<'_>,
    snap: &Snapshot,
    repo: RepoName,
    pr: &PullRequest,
    channel: ImageChannel,
    installation_id: Option<u64>,
) -> Plan {
    // The preview runs the PR's head as GitHub keeps it in this repository
    // (`refs/pull/<n>/head`), so a PR from a fork shows the fork's commit and never a branch of
    // this repository with the same name. Without a head repository (a deleted fork) there is
    // nothing to show.
    if pr.head_repo.is_none() {
        return Plan::Answer {
            posts: vec![Post {
                installation: installation_id,
                repo,
                number: pr.number,
                body: texts::head_repository_gone(),
            }],
            outcome: Outcome::Done("the PR's head repository is gone: not previewed".into()),
        };
    }
    let Some(branch) = preview_branch(pr) else {
        return done(format!("branch {:?} cannot be previewed", pr.head_ref));
    };
    let mut id = readable_preview_id(&branch);
    if snap
        .id_holder
        .as_ref()
        .is_some_and(|h| h.repo_full_name != repo || h.pr_number != Some(pr.number))
    {
        // Another PR's branch folds to the same readable id: use the hashed one.
        id = SessionId::parse(&naming::preview_session_id_hashed(branch.as_str()))
            .unwrap_or_else(|_| unreachable!());
    }
    let url = ctx.urls.url(&id);
    let busy = Post {
        installation: installation_id,
        repo: repo.clone(),
        number: pr.number,
        body: texts::preview_already_running(&url, &id),
    };
    let fresh = || {
        let mut s = Session::new(
            id.clone(),
            SessionType::Preview,
            Source::Github,
            repo.clone(),
            branch.clone(),
            channel,
            snap.now,
        );
        s.pr_number = Some(pr.number);
        s.issue_number = Some(pr.number);
        s.installation_id = installation_id;
        s.uat_url = Some(url.clone());
        s
    };
    let claim = match claim(ctx, snap, fresh, None).map_err(|plan| *plan) {
        Ok(c) => c,
        Err(Plan::Answer {
            outcome: outcome @ Outcome::Exists { .. },
            ..
        }) => {
            return Plan::Answer {
                posts: vec![busy],
                outcome,
            };
        }
        Err(plan) => return plan,
    };
    Plan::Start(Box::new(Start {
        claim,
        trigger: Trigger::Label,
        pr: None,
        if_taken: Some(busy),
        jira: None,
        message: "Preview started",
        queue: None,
    }))
}

fn start_jira(
    ctx: &Context<'_>,
    snap: &Snapshot,
    key: JiraKey,
    project_key: &str,
    summary: &str,
    description: &Value,
    channel: ImageChannel,
) -> Plan {
    let Some(jira) = ctx.jira else {
        return done("JIRA is not configured");
    };
    let Some(repo) = jira_repo(ctx, project_key) else {
        return done(format!("No repo mapping for project {project_key}"));
    };
    let text = cca_domain::adf::to_text(description);
    let prompt = texts::jira_prompt(&key, summary, &text);
    let fresh = || {
        let id = fresh_agent_id(snap);
        let mut s = Session::new(
            id.clone(),
            SessionType::Agent,
            Source::Jira,
            repo.clone(),
            naming::jira_branch(&key),
            channel,
            snap.now,
        );
        s.jira_issue_key = Some(key.clone());
        s.installation_id = ctx.default_installation;
        s.initial_prompt = Some(prompt.clone());
        s.uat_url = Some(ctx.urls.url(&id));
        s
    };
    let claim = match claim(ctx, snap, fresh, Some(prompt.clone())) {
        Ok(c) => c,
        Err(plan) => return *plan,
    };
    let url = claim.session().uat_url.clone().unwrap_or_default();
    let browse = cca_jira::browse_url(jira.base_url, key.as_str());
    let queue = queue_for(ctx, snap, &claim.session().session_id, None);
    Plan::Start(Box::new(Start {
        claim,
        trigger: Trigger::Label,
        pr: Some(PrPlan {
            title: texts::jira_pr_title(&key, summary),
            body: texts::jira_pr_body(&key, &browse, summary, &text, &url),
            commit_message: texts::jira_commit_message(&key),
        }),
        if_taken: None,
        jira: Some(key),
        message: "Session started",
        queue,
    }))
}

fn stop(repo: &RepoName, pr_number: u64, sessions: Vec<Session>, reason: StopReason) -> Plan {
    if sessions.is_empty() {
        return done("no active session to stop");
    }
    let installation = sessions.iter().find_map(|s| s.installation_id);
    let targets = sessions
        .into_iter()
        .map(|s| {
            let post = (s.session_type == SessionType::Preview
                && !matches!(reason, StopReason::PrClosed { .. }))
            .then(|| Post {
                installation: s.installation_id,
                repo: repo.clone(),
                number: pr_number,
                body: texts::preview_stopped(&s.session_id, &reason.describe()),
            });
            StopTarget { session: s, post }
        })
        .collect();
    let then = match &reason {
        StopReason::Command { by } => Some(Post {
            installation,
            repo: repo.clone(),
            number: pr_number,
            body: texts::stopping_on_request(by.as_str()),
        }),
        _ => None,
    };
    Plan::Stop(Stop {
        targets,
        reason,
        then,
    })
}

/// A follow-up for the agent of a PR, from a comment or a review.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    /// What a running agent is sent.
    pub prompt: String,
    /// The first prompt of the session when it is started again for this.
    pub relaunch_prompt: String,
    pub author: String,
    /// The comment the agent acknowledges with a reaction.
    pub comment_id: Option<u64>,
    /// The review threads the agent answers in when the run ends: the id of each thread's
    /// first comment, with its file.
    pub threads: Vec<(u64, String)>,
    /// The review comments the prompt carries (the agent drops a prompt whose comments an
    /// earlier one carried).
    pub covers: Vec<u64>,
}

/// A review as a follow-up: its own comments on the diff (the single comment's, or those read
/// for the submitted review) that are not the system's own, one thread each.
fn review_follow_up(
    author: &Actor,
    review: Option<&Review>,
    comments: Vec<ReviewComment>,
    snap: &Snapshot,
) -> FollowUp {
    let comments: Vec<ReviewComment> = match review {
        Some(_) => snap.review_comments.clone(),
        None => comments,
    }
    .into_iter()
    .filter(|c| !c.author.is_bot && !c.body.contains(texts::MARKER))
    .collect();
    let mut threads: Vec<(u64, String)> = Vec::new();
    for c in &comments {
        if !threads.iter().any(|(id, _)| *id == c.thread()) {
            threads.push((c.thread(), c.path.clone()));
        }
    }
    let text = texts::review_prompt(author.login.as_str(), review, &comments);
    FollowUp {
        relaunch_prompt: text.clone(),
        prompt: text,
        author: author.login.as_str().to_owned(),
        comment_id: None,
        threads,
        covers: comments.iter().map(|c| c.id).collect(),
    }
}

/// Checks on a PR's head, for its agent to fix or to stop fixing. Only a running agent gets
/// them: an ended session is not started again by a check (a person decides that).
fn checks(
    snap: &Snapshot,
    repo: RepoName,
    pr_number: u64,
    suite: &CheckSuite,
    installation_id: Option<u64>,
) -> Plan {
    let CommentPlan::Forward(session) = plan_comment(&snap.on_pr) else {
        return done("no running agent session on this PR: checks are fixed only while it runs");
    };
    if !suite.failed() && snap.all_checks_green == Some(false) {
        return done("other checks on the commit are still running or failed");
    }
    let failed: Vec<&CheckRun> = snap.failed_checks.iter().filter(|c| c.failed()).collect();
    let mut body = json!({
        "head_sha": suite.head_sha,
        "passed": !suite.failed(),
        "checks": failed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
    });
    if suite.failed() {
        let owned: Vec<CheckRun> = failed.into_iter().cloned().collect();
        body["prompt"] = json!(texts::checks_prompt(&suite.head_sha, &owned));
    }
    Plan::Forward(Box::new(Forward {
        route: CHECKS_ROUTE,
        comment_id: None,
        body,
        installation: installation_id,
        repo,
        pr_number,
        session,
    }))
}

/// A writer's `/claude …` command: the status is answered from the record; a retry or a budget
/// raise goes to the running agent, which decides it (and reacts, or answers why not).
#[allow(clippy::too_many_arguments)]
fn command_plan(
    ctx: &Context<'_>,
    snap: &Snapshot,
    repo: RepoName,
    pr_number: u64,
    author: &str,
    comment_id: u64,
    command: &Command,
    installation_id: Option<u64>,
) -> Plan {
    let answer_with = |body: String, outcome: Outcome| Plan::Answer {
        posts: vec![Post {
            installation: installation_id,
            repo: repo.clone(),
            number: pr_number,
            body,
        }],
        outcome,
    };
    let newest = snap
        .on_pr
        .iter()
        .find(|s| s.session_type == SessionType::Agent);
    let route = match command {
        Command::Unknown(words) => {
            return answer_with(
                texts::unknown_command(words, &ctx.rules.stop_command),
                Outcome::Refused(format!("unknown command {words:?}")),
            );
        }
        Command::Status => {
            return match newest {
                Some(s) => answer_with(
                    texts::session_status(s),
                    Outcome::Done("status posted".into()),
                ),
                None => answer_with(
                    texts::command_refused("status", "this PR has no agent session"),
                    Outcome::Done("no agent session on this PR".into()),
                ),
            };
        }
        Command::Retry => RETRY_ROUTE,
        Command::Budget { .. } => BUDGET_ROUTE,
        Command::Approve => {
            // A plan must have been posted (a run made) for there to be one to approve.
            if !newest.is_some_and(|s| s.plan_mode && s.runs.unwrap_or(0) > 0) {
                let why = "this PR's agent session has no plan waiting for approval".to_owned();
                return answer_with(
                    texts::command_refused("approve", &why),
                    Outcome::Refused(why),
                );
            }
            APPROVE_ROUTE
        }
    };
    if let (Command::Approve, CommentPlan::Relaunch(s)) = (command, plan_comment(&snap.on_pr)) {
        // The plan's session ended (idle stop, crash): it starts again to implement the plan,
        // in the conversation kept for it.
        let patch = SessionPatch {
            initial_prompt: Some(texts::approved_prompt(author)),
            plan_mode: Some(false),
            ..SessionPatch::default()
        };
        let message = "Session relaunched to implement the approved plan";
        return relaunch_by_comment(ctx, snap, s, pr_number, patch, message);
    }
    let CommentPlan::Forward(session) = plan_comment(&snap.on_pr) else {
        let why = match command {
            // The raised limit lives in the running agent (the record keeps none yet).
            // A session whose limit can be raised waits at it rather than stopping.
            Command::Budget { .. } => {
                "a budget is raised in a running session, and this one is not running".to_owned()
            }
            _ => format!(
                "the agent session is not running; mention {} to start it again",
                ctx.rules.mention
            ),
        };
        return answer_with(
            texts::command_refused(command.name(), &why),
            Outcome::Refused(why),
        );
    };
    let mut body = json!({ "author": author, "comment_id": comment_id });
    if let Command::Budget { add_usd } = command {
        body["add_usd"] = json!(add_usd);
    }
    Plan::Forward(Box::new(Forward {
        route,
        comment_id: Some(comment_id),
        body,
        installation: installation_id,
        repo,
        pr_number,
        session,
    }))
}

/// The agent's control route for `/claude approve`.
pub const APPROVE_ROUTE: &str = "/approve";

/// The agent's control route for `/claude retry`.
pub const RETRY_ROUTE: &str = "/retry";

/// The agent's control route for `/claude budget +N`.
pub const BUDGET_ROUTE: &str = "/budget";

/// The agent's control route for follow-ups.
pub const PROMPT_ROUTE: &str = "/prompt";

/// The agent's control route for checks on its PR.
pub const CHECKS_ROUTE: &str = "/checks";

fn prompt(
    ctx: &Context<'_>,
    snap: &Snapshot,
    repo: RepoName,
    pr_number: u64,
    follow_up: FollowUp,
    installation_id: Option<u64>,
) -> Plan {
    let post = |body: String| Post {
        installation: installation_id,
        repo: repo.clone(),
        number: pr_number,
        body,
    };
    match plan_comment(&snap.on_pr) {
        CommentPlan::NoSession => done("no agent session on this PR"),
        CommentPlan::Forward(s) => {
            let threads: Vec<Value> = follow_up
                .threads
                .iter()
                .map(|(id, path)| json!({ "comment_id": id, "path": path }))
                .collect();
            let mut body = json!({
                "prompt": follow_up.prompt,
                "author": follow_up.author,
                "comment_id": follow_up.comment_id,
            });
            if !threads.is_empty() {
                body["review_threads"] = Value::Array(threads);
                body["review_comments"] = json!(follow_up.covers);
            }
            Plan::Forward(Box::new(Forward {
                route: PROMPT_ROUTE,
                comment_id: follow_up.comment_id,
                body,
                installation: installation_id,
                repo: repo.clone(),
                pr_number,
                session: s,
            }))
        }
        CommentPlan::NotReady(s) => Plan::Answer {
            posts: vec![post(texts::agent_not_ready(
                &s.session_id,
                &s.status.as_str().to_ascii_lowercase(),
                &ctx.rules.mention,
            ))],
            outcome: Outcome::NotReady(s.session_id),
        },
        CommentPlan::Relaunch(s) => {
            let patch = SessionPatch {
                initial_prompt: Some(follow_up.relaunch_prompt),
                // A review's threads go with its prompt, so the first run answers in them.
                prompt_threads: (!follow_up.threads.is_empty()).then(|| {
                    Value::Array(
                        follow_up
                            .threads
                            .iter()
                            .map(|(id, path)| json!({ "comment_id": id, "path": path }))
                            .collect(),
                    )
                    .to_string()
                }),
                ..SessionPatch::default()
            };
            relaunch_by_comment(ctx, snap, s, pr_number, patch, "Session relaunched")
        }
    }
}

/// A comment on a PR starts its ended agent session `last` again with `patch` (its prompt),
/// waiting in line when the installation is at its ceiling.
fn relaunch_by_comment(
    ctx: &Context<'_>,
    snap: &Snapshot,
    last: Session,
    pr_number: u64,
    patch: SessionPatch,
    message: &'static str,
) -> Plan {
    Plan::Start(Box::new(Start {
        queue: queue_for(ctx, snap, &last.session_id, Some(pr_number)),
        claim: Claim::Relaunch {
            patch: Box::new(patch),
            last,
        },
        trigger: Trigger::Comment,
        pr: None,
        if_taken: None,
        jira: None,
        message,
    }))
}

/// Why the store refused a claim: another delivery got there first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// Another session holds the key.
    ActiveExists(SessionId),
    /// The id is taken.
    IdTaken(SessionId),
    /// The session moved on since it was read (a concurrent relaunch).
    Moved(SessionId),
}

/// The answer to a claim lost to a concurrent delivery; `None` when the refusal is not a race
/// this start can lose (a failure).
pub fn claim_lost(start: &Start, conflict: Conflict) -> Option<Outcome> {
    let exists = |id| Some(Outcome::Exists { id, status: None });
    match (start.trigger, conflict) {
        (_, Conflict::ActiveExists(id)) => exists(id),
        (Trigger::Label, Conflict::IdTaken(id) | Conflict::Moved(id)) => exists(id),
        (Trigger::Comment, Conflict::Moved(_)) => {
            let last = start.claim.session();
            Some(Outcome::Exists {
                id: last.session_id.clone(),
                status: Some(last.status),
            })
        }
        (Trigger::Comment, Conflict::IdTaken(_)) => None,
    }
}

/// A provisioning step of a claimed session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioning {
    /// Making the branch and draft PR.
    BranchAndPr,
    /// Recording the PR that was opened.
    RecordPr { pr_number: u64 },
    /// Launching the task.
    Launch,
    /// Recording the task that was launched (the task is stopped).
    RecordTask,
    /// Recording that the session waits for its turn.
    Queue,
}

/// What a failed provisioning step comes to: the session's recorded error, and the one comment
/// saying so.
#[derive(Debug, Clone, PartialEq)]
pub struct StartFailure {
    pub reason: String,
    pub post: Option<Post>,
}

/// The failure of `step` for `session` (as recorded before the step), with the dependency's
/// `error` already masked.
pub fn start_failed(
    session: &Session,
    step: Provisioning,
    error: &str,
    rules: &Rules,
) -> StartFailure {
    let (reason, number) = match step {
        Provisioning::BranchAndPr => (
            format!("cannot create the branch and PR: {error}"),
            session.pr_number.or(session.issue_number),
        ),
        Provisioning::RecordPr { pr_number } => {
            (format!("cannot record the PR: {error}"), Some(pr_number))
        }
        Provisioning::Launch => (
            format!("the container could not be launched: {error}"),
            session.pr_number.or(session.issue_number),
        ),
        Provisioning::RecordTask => (
            format!("cannot record the task: {error}"),
            session.pr_number,
        ),
        Provisioning::Queue => (
            format!("cannot queue the session: {error}"),
            session.pr_number.or(session.issue_number),
        ),
    };
    let (what, retry) = match session.session_type {
        SessionType::Agent => (
            "Agent failed to start",
            format!(
                "remove and re-add the `{}` label, or mention {}",
                rules.agent_label, rules.mention
            ),
        ),
        SessionType::Preview => (
            "UAT Failed to Start",
            format!("remove and re-add the `{}` label", rules.preview_label),
        ),
    };
    let post = number.map(|n| Post {
        installation: session.installation_id,
        repo: session.repo_full_name.clone(),
        number: n,
        body: texts::start_failed(what, &session.session_id, &reason, &retry),
    });
    StartFailure { reason, post }
}

/// Whether a stopping session's agent records its own end, from how `POST /stop` went. An
/// agent that reported an address pushes its work and records its end even if it could not be
/// reached just now (SIGTERM from the task stop reaches it, and the sweeper ends it if it dies).
/// One that never reported an address has nothing to push; one whose address is refused is not
/// asked: both are ended by the webhook.
pub fn stop_delegated(result: &Result<(), ControlError>) -> bool {
    !matches!(
        result,
        Err(ControlError::NoAddress | ControlError::Refused(_))
    )
}

/// What a forwarded comment came to, and what the commenter is told.
pub fn after_forward(
    f: &Forward,
    result: &Result<(), ControlError>,
    rules: &Rules,
) -> (Option<Post>, Outcome) {
    let id = f.session.session_id.clone();
    // Checks come from GitHub, not from someone to answer: a failure is the outcome alone.
    let answered = f.route != CHECKS_ROUTE;
    let post = |body| {
        answered.then(|| Post {
            installation: f.installation,
            repo: f.repo.clone(),
            number: f.pr_number,
            body,
        })
    };
    if matches!(f.route, RETRY_ROUTE | BUDGET_ROUTE | APPROVE_ROUTE) {
        if let Err(ControlError::Status {
            status: 400 | 409,
            body,
        }) = result
        {
            let why = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| body.clone());
            let name = f.route.trim_start_matches('/');
            return (
                Some(Post {
                    installation: f.installation,
                    repo: f.repo.clone(),
                    number: f.pr_number,
                    body: texts::command_refused(name, &why),
                }),
                Outcome::Refused(why),
            );
        }
    }
    match result {
        Ok(()) => (None, Outcome::Forwarded(id)),
        // Retrying will not help, and the PR is not told what the record says.
        Err(ControlError::Refused(_)) => (
            post(texts::comment_undeliverable(
                &id,
                &rules.stop_command,
                &rules.mention,
            )),
            Outcome::AgentUnreachable(id),
        ),
        Err(e) => (
            post(texts::comment_not_delivered(&id, &e.to_string())),
            Outcome::ForwardFailed(format!("agent unreachable: {e}")),
        ),
    }
}

/// What telling a preview its new head came to.
pub fn after_refresh(session: &Session, result: &Result<(), ControlError>) -> Outcome {
    match result {
        Ok(()) => Outcome::Refreshing(session.session_id.clone()),
        Err(e) => Outcome::RefreshFailed {
            id: session.session_id.clone(),
            error: e.to_string(),
        },
    }
}

/// Whether a repository's refusal to make labels is final (said in the answer, not retried):
/// removed from the installation meanwhile, labels not permitted, or a configured name GitHub
/// refuses.
pub fn label_refusal(e: &GitHubError) -> bool {
    matches!(e.status(), Some(403 | 404 | 422))
}

/// Whether the App's installation refused to act (bad input, answered 400) rather than failed.
pub fn installation_refused(e: &GitHubError) -> bool {
    matches!(e.status(), Some(401 | 403 | 404))
}

#[cfg(test)]
mod tests;
