//! The act: what each intent does to the store, GitHub, the launcher, agents and JIRA.
//!
//! Order matters for "nothing lost, nothing doubled": a session is claimed in the store first
//! (so of concurrent deliveries exactly one proceeds), then the branch and PR are made (each
//! idempotent), then the task is launched. Any failure after the claim leaves the session
//! `FAILED` with its reason and says so once on the PR.

use axum::http::StatusCode;
use cca_domain::adf;
use cca_domain::decide::{
    CommentPlan, Intent, StartPlan, StopReason, plan_comment, plan_start, sessions_to_stop,
};
use cca_domain::event::{Actor, Comment, Issue, PullRequest};
use cca_domain::naming::{self, MARKER};
use cca_domain::session::SessionPatch;
use cca_domain::{
    ActiveKey, BranchName, ImageChannel, JiraKey, RepoName, Session, SessionId, SessionType,
    Source, Status,
};
use cca_github::{GitHubError, PullRef};
use cca_launcher::LaunchRequest;
use cca_store::StoreError;
use serde_json::json;
use tracing::{info, warn};

use crate::app::{App, now};
use crate::control::ControlError;
use crate::reply::Reply;

/// A dependency failed; answered 502 (GitHub's delivery log shows it, and the delivery id is
/// forgotten so a redelivery can retry).
#[derive(Debug, thiserror::Error)]
enum ActError {
    #[error("session store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    GitHub(#[from] GitHubError),
}

impl ActError {
    fn reply(&self, app: &App) -> Reply {
        warn!(error = %self, "dependency failed");
        Reply::error(StatusCode::BAD_GATEWAY, app.masker.mask(&self.to_string()))
    }
}

type ActResult = Result<Reply, ActError>;

/// The repository and installation an intent acts on (for the permission check).
fn target(intent: &Intent) -> Option<(&RepoName, Option<u64>)> {
    match intent {
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
        } => Some((repo, *installation_id)),
        Intent::StopCommand {
            repo,
            installation_id,
            ..
        } => Some((repo, *installation_id)),
        _ => None,
    }
}

/// Refuses (with a 200 and the reason) an intent whose actor lacks write permission.
pub async fn check_permission(app: &App, intent: &Intent) -> Option<Reply> {
    let user = intent.requires_write()?;
    let (repo, installation) = target(intent)?;
    let gh = match installation_client(app, installation).await {
        Ok(gh) => gh,
        Err(refusal) => return Some(refusal),
    };
    match gh.permission(repo, user).await {
        Ok(p) if p.can_write() => None,
        Ok(p) => {
            info!(user = %user, repo = %repo, permission = ?p, "refused: the actor lacks write permission");
            Some(Reply::ok(format!(
                "{user} lacks write permission on {repo}"
            )))
        }
        Err(e) => Some(ActError::from(e).reply(app)),
    }
}

/// Carries out an intent.
pub async fn execute(app: &App, intent: Intent) -> Reply {
    let result = match intent {
        Intent::StartAgent {
            repo,
            issue,
            channel,
            actor,
            installation_id,
        } => start_issue_agent(app, repo, issue, channel, actor, installation_id).await,
        Intent::StopIssue {
            repo,
            issue_number,
            reason,
        } => stop_issue(app, &repo, issue_number, reason).await,
        Intent::StartPreview {
            repo,
            pr,
            channel,
            installation_id,
            ..
        } => start_preview(app, repo, pr, channel, installation_id).await,
        Intent::StopPr {
            repo,
            pr_number,
            only,
            reason,
        } => {
            let sessions = app.store.by_pr(&repo, pr_number).await;
            match sessions {
                Ok(sessions) => {
                    stop_all(
                        app,
                        &repo,
                        pr_number,
                        sessions_to_stop(&sessions, only),
                        &reason,
                    )
                    .await
                }
                Err(e) => Err(e.into()),
            }
        }
        Intent::RefreshPreview {
            repo,
            pr_number,
            head_sha,
        } => refresh(app, &repo, pr_number, &head_sha).await,
        Intent::Prompt {
            repo,
            pr_number,
            comment,
            installation_id,
        } => prompt(app, repo, pr_number, comment, installation_id).await,
        Intent::StopCommand {
            repo,
            pr_number,
            actor,
            ..
        } => {
            let reason = StopReason::Command { by: actor.login };
            match app.store.by_pr(&repo, pr_number).await {
                Ok(sessions) => {
                    let targets = sessions_to_stop(&sessions, Some(SessionType::Agent));
                    stop_all(app, &repo, pr_number, targets, &reason).await
                }
                Err(e) => Err(e.into()),
            }
        }
        Intent::StartJira {
            key,
            project_key,
            summary,
            description,
            channel,
        } => start_jira(app, key, &project_key, &summary, &description, channel).await,
        Intent::EnsureLabels {
            repos,
            installation_id,
        } => ensure_labels(app, &repos, installation_id).await,
        Intent::Ignore(reason) => Ok(Reply::ok(reason)),
    };
    result.unwrap_or_else(|e| e.reply(app))
}

/// The PR a new agent session opens, and its first commit's message.
struct PrPlan {
    title: String,
    body: String,
    commit_message: String,
}

/// What provisioning made.
struct Provisioned {
    session: Session,
    pr: Option<PullRef>,
}

fn already(session: &Session) -> Reply {
    Reply::ok_with(
        "Session already exists",
        json!({ "session_id": session.session_id, "status": session.status }),
    )
}

/// The most repositories one installation delivery makes labels in, one request at a time as
/// GitHub asks of content-creating requests: four labels each stay within its 10 s for an
/// answer.
const LABEL_REPOS_PER_DELIVERY: usize = 5;

/// Makes the system's labels exist in repositories the App was just given, so nobody has to
/// guess their names. Repositories beyond [`LABEL_REPOS_PER_DELIVERY`] are named in the answer
/// (and the log) for `cca doctor` or a hand to do.
async fn ensure_labels(app: &App, repos: &[RepoName], installation: u64) -> ActResult {
    let gh = match installation_client(app, Some(installation)).await {
        Ok(gh) => gh,
        Err(refusal) => return Ok(refusal),
    };
    let (now, later) = repos.split_at(repos.len().min(LABEL_REPOS_PER_DELIVERY));
    let mut made = serde_json::Map::new();
    let mut refused = Vec::new();
    for repo in now {
        match labels_of(app, &gh, repo).await {
            Ok(created) => {
                info!(repo = %repo, ?created, "labels ensured");
                made.insert(repo.to_string(), json!(created));
            }
            // Removed from the installation meanwhile, labels not permitted, or a configured
            // name GitHub refuses (422): said, not retried.
            Err(e) if matches!(e.status(), Some(403 | 404 | 422)) => {
                warn!(repo = %repo, error = %e, "cannot make labels");
                refused.push(repo.to_string());
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !later.is_empty() {
        warn!(
            count = later.len(),
            "too many repositories in one delivery to label them all"
        );
    }
    Ok(Reply::ok_with(
        "Labels ensured",
        json!({
            "created": made,
            "refused": refused,
            "not_done": later.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }),
    ))
}

/// Makes the system's labels exist in `repo`; the names it created.
async fn labels_of(
    app: &App,
    gh: &cca_github::RepoClient,
    repo: &RepoName,
) -> Result<Vec<String>, GitHubError> {
    let mut created = Vec::new();
    for (name, color, description) in app.rules.labels() {
        if gh.ensure_label(repo, name, color, description).await? {
            created.push(name.to_owned());
        }
    }
    Ok(created)
}

/// A client for `installation`; an installation this App cannot act for is bad input, not an
/// outage (a 400 naming it), any other failure a 502.
async fn installation_client(
    app: &App,
    installation: Option<u64>,
) -> Result<cca_github::RepoClient, Reply> {
    match app.github.client(installation).await {
        Ok(gh) => Ok(gh),
        Err(e) if matches!(e.status(), Some(401 | 403 | 404)) => {
            warn!(installation = ?installation, error = %e, "refused: installation not accessible");
            Err(Reply::error(
                StatusCode::BAD_REQUEST,
                format!("cannot act for installation {installation:?}: {e}"),
            ))
        }
        Err(e) => Err(ActError::from(e).reply(app)),
    }
}

/// How long a start waits for a stopping session of the same key to end (within GitHub's 10 s
/// for a delivery).
const STOPPING_WAIT: std::time::Duration = std::time::Duration::from_secs(6);
const STOPPING_POLL: std::time::Duration = std::time::Duration::from_millis(250);

const STILL_STOPPING: &str = "Session stopping; not started again";

/// A start that found its session still stopping after [`STOPPING_WAIT`]: it is not started
/// again, and the issue or PR is told so rather than the label being silently dropped.
async fn still_stopping(app: &App, s: &Session) -> Reply {
    info!(session = %s.session_id, "start asked for while the session is stopping");
    if let Some(n) = s.pr_number.or(s.issue_number) {
        let staging = s.image_channel == ImageChannel::Staging;
        let again = match (s.source, s.session_type, staging) {
            (Source::Jira, _, _) => "label the JIRA issue again".to_owned(),
            (_, SessionType::Agent, false) => {
                format!("remove and re-add the `{}` label", app.rules.agent_label)
            }
            (_, SessionType::Agent, true) => format!(
                "remove and re-add the `{}` label",
                app.rules.agent_staging_label
            ),
            (_, SessionType::Preview, false) => {
                format!("remove and re-add the `{}` label", app.rules.preview_label)
            }
            (_, SessionType::Preview, true) => format!(
                "remove and re-add the `{}` label",
                app.rules.preview_staging_label
            ),
        };
        let body = format!(
            "{MARKER}\n:hourglass: Session `{}` is still stopping (it commits and pushes its work first), so it was not started again. Once it has stopped, {again} to start it.",
            s.session_id
        );
        post_comment(app, s.installation_id, &s.repo_full_name, n, &body).await;
    }
    Reply::ok_with(
        STILL_STOPPING,
        json!({ "session_id": s.session_id, "status": s.status }),
    )
}

/// Claims the session of `key`: a new one, or the last one started again. `None` when another
/// session is active (answered "already exists").
async fn claim(
    app: &App,
    key: &ActiveKey,
    fresh: impl FnOnce() -> Session,
    prompt: Option<String>,
) -> Result<Result<Session, Reply>, ActError> {
    let mut last = app.store.by_active_key(key).await?;
    if last.as_ref().is_some_and(|s| s.status == Status::Stopping) {
        // An agent stops within seconds (it commits and pushes first): a start asked for
        // meanwhile waits for that within the delivery's time, then relaunches it.
        let until = tokio::time::Instant::now() + STOPPING_WAIT;
        while last.as_ref().is_some_and(|s| s.status == Status::Stopping)
            && tokio::time::Instant::now() < until
        {
            tokio::time::sleep(STOPPING_POLL).await;
            last = app.store.by_active_key(key).await?;
        }
        if let Some(s) = last.as_ref().filter(|s| s.status == Status::Stopping) {
            return Ok(Err(still_stopping(app, s).await));
        }
    }
    let claimed = match plan_start(last.as_ref()) {
        StartPlan::AlreadyActive => {
            return Ok(Err(already(
                last.as_ref().unwrap_or_else(|| unreachable!()),
            )));
        }
        StartPlan::Relaunch => {
            let last = last.unwrap_or_else(|| unreachable!());
            let patch = SessionPatch {
                initial_prompt: prompt,
                ..SessionPatch::default()
            };
            app.store.relaunch(&last.session_id, patch, now()).await
        }
        StartPlan::Create => {
            let s = fresh();
            app.store.create(&s).await.map(|()| s)
        }
    };
    match claimed {
        Ok(s) => Ok(Ok(s)),
        Err(StoreError::ActiveExists { existing, .. } | StoreError::IdTaken(existing)) => {
            info!(key = %key, existing = %existing, "session already claimed by a concurrent delivery");
            Ok(Err(Reply::ok_with(
                "Session already exists",
                json!({ "session_id": existing }),
            )))
        }
        // A concurrent relaunch got there first.
        Err(StoreError::IllegalTransition { id, .. }) => Ok(Err(Reply::ok_with(
            "Session already exists",
            json!({ "session_id": id }),
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Branch, PR (agent sessions) and task of a claimed session. On failure the session ends
/// `FAILED`, the PR (or issue) is told once, and the reply is a 502 naming the reason.
async fn provision(
    app: &App,
    session: Session,
    pr_plan: Option<PrPlan>,
) -> Result<Provisioned, Reply> {
    let mut session = session;
    let mut pr = None;
    let comment_on = session.pr_number.or(session.issue_number);
    if let Some(plan) = pr_plan {
        match open_branch_and_pr(app, &session, &plan).await {
            Ok(p) => {
                let patch = SessionPatch {
                    pr_number: Some(p.number),
                    ..SessionPatch::default()
                };
                match app.store.update(&session.session_id, patch, now()).await {
                    Ok(s) => session = s,
                    Err(e) => {
                        return Err(fail(
                            app,
                            &session,
                            Some(p.number),
                            &format!("cannot record the PR: {e}"),
                        )
                        .await);
                    }
                }
                pr = Some(p);
            }
            Err(e) => {
                return Err(fail(
                    app,
                    &session,
                    comment_on,
                    &format!("cannot create the branch and PR: {e}"),
                )
                .await);
            }
        }
    }
    let req = LaunchRequest {
        session_id: session.session_id.clone(),
        kind: session.session_type,
        channel: session.image_channel,
        repo: session.repo_full_name.clone(),
        branch: session.branch_name.clone(),
        env: Vec::new(),
        session_token: Some(secrecy::SecretString::from(app.control.token(&session))),
    };
    match app.launcher.launch(&req).await {
        Ok(launched) => {
            let patch = SessionPatch {
                task_arn: Some(launched.task_arn.clone()),
                ..SessionPatch::default()
            };
            match app.store.update(&session.session_id, patch, now()).await {
                Ok(s) => session = s,
                Err(e) => {
                    // The task runs but nothing records it: stop it rather than leak it.
                    let _ = app
                        .launcher
                        .stop(&launched.task_arn, "session record could not be updated")
                        .await;
                    return Err(fail(
                        app,
                        &session,
                        session.pr_number,
                        &format!("cannot record the task: {e}"),
                    )
                    .await);
                }
            }
            info!(session = %session.session_id, repo = %session.repo_full_name, task = %launched.task_arn, "session launched");
            Ok(Provisioned { session, pr })
        }
        Err(e) => Err(fail(
            app,
            &session,
            session.pr_number.or(comment_on),
            &format!("the container could not be launched: {e}"),
        )
        .await),
    }
}

async fn open_branch_and_pr(
    app: &App,
    session: &Session,
    plan: &PrPlan,
) -> Result<PullRef, GitHubError> {
    let gh = app.github.client(session.installation_id).await?;
    let repo = &session.repo_full_name;
    let info = gh.repo(repo).await?;
    gh.ensure_branch(
        repo,
        &info.default_branch,
        &session.branch_name,
        &plan.commit_message,
    )
    .await?;
    gh.ensure_draft_pr(
        repo,
        &session.branch_name,
        &info.default_branch,
        &plan.title,
        &plan.body,
    )
    .await
}

/// Ends a session `FAILED` with `reason` and comments once on `number`.
async fn fail(app: &App, session: &Session, number: Option<u64>, reason: &str) -> Reply {
    let reason = app.masker.mask(reason);
    warn!(session = %session.session_id, repo = %session.repo_full_name, %reason, "session failed to start");
    let patch = SessionPatch {
        error: Some(reason.clone()),
        ..SessionPatch::default()
    };
    if let Err(e) = app
        .store
        .transition(&session.session_id, Status::Failed, patch, now())
        .await
    {
        warn!(session = %session.session_id, error = %e, "cannot record the failure");
    }
    if let Some(n) = number {
        let (what, retry) = match session.session_type {
            SessionType::Agent => (
                "Agent failed to start",
                format!(
                    "remove and re-add the `{}` label, or mention {}",
                    app.rules.agent_label, app.rules.mention
                ),
            ),
            SessionType::Preview => (
                "UAT Failed to Start",
                format!("remove and re-add the `{}` label", app.rules.preview_label),
            ),
        };
        let body = format!(
            "{MARKER}\n:x: **{what}**\n\nSession: `{}`\n\nError: {reason}\n\nPlease check the configuration, then {retry} to try again.",
            session.session_id
        );
        post_comment(
            app,
            session.installation_id,
            &session.repo_full_name,
            n,
            &body,
        )
        .await;
    }
    Reply::error(StatusCode::BAD_GATEWAY, reason)
}

/// Posts a comment, masking secrets; a failure is logged, never fatal.
async fn post_comment(
    app: &App,
    installation: Option<u64>,
    repo: &RepoName,
    number: u64,
    body: &str,
) {
    let body = app.masker.mask(body);
    let result = async {
        app.github
            .client(installation)
            .await?
            .comment(repo, number, &body)
            .await
    }
    .await;
    if let Err(e) = result {
        warn!(repo = %repo, number, error = %e, "cannot comment");
    }
}

fn started(p: &Provisioned, message: &str) -> Reply {
    Reply::ok_with(
        message,
        json!({
            "session_id": p.session.session_id,
            "pr_number": p.session.pr_number,
            "task_arn": p.session.task_arn,
            "uat_url": p.session.uat_url,
        }),
    )
}

async fn start_issue_agent(
    app: &App,
    repo: RepoName,
    issue: Issue,
    channel: ImageChannel,
    actor: Actor,
    installation_id: Option<u64>,
) -> ActResult {
    let key = ActiveKey::issue(&repo, issue.number);
    let prompt = naming::issue_prompt(issue.number, &issue.title, &issue.body);
    let fresh = || {
        let id = SessionId::random_agent();
        let mut s = Session::new(
            id.clone(),
            SessionType::Agent,
            Source::Github,
            repo.clone(),
            naming::issue_branch(issue.number),
            channel,
            now(),
        );
        s.issue_number = Some(issue.number);
        s.installation_id = installation_id;
        s.initial_prompt = Some(prompt.clone());
        s.uat_url = Some(app.uat_domain_suffix.url(&id));
        s
    };
    let session = match claim(app, &key, fresh, Some(prompt.clone())).await? {
        Ok(s) => s,
        Err(reply) => return Ok(reply),
    };
    info!(session = %session.session_id, repo = %repo, issue = issue.number, by = %actor.login, "starting an agent session");
    let url = session.uat_url.clone().unwrap_or_default();
    let plan = PrPlan {
        title: naming::issue_pr_title(&issue.title),
        body: naming::issue_pr_body(issue.number, &issue.body, &url),
        commit_message: format!(
            "chore: start Claude agent session for issue #{}",
            issue.number
        ),
    };
    Ok(match provision(app, session, Some(plan)).await {
        Ok(p) => started(&p, "Session started"),
        Err(reply) => reply,
    })
}

async fn start_preview(
    app: &App,
    repo: RepoName,
    pr: PullRequest,
    channel: ImageChannel,
    installation_id: Option<u64>,
) -> ActResult {
    // The preview runs the PR's head as GitHub keeps it in this repository
    // (`refs/pull/<n>/head`), so a PR from a fork shows the fork's commit and never a branch of
    // this repository with the same name. Without a head repository (a deleted fork) there is
    // nothing to show.
    let Some(head_repo) = pr.head_repo.as_deref() else {
        let body = format!(
            "{MARKER}\n**UAT not started**\n\nThe head repository of this PR no longer exists \
             (a deleted fork): its commits can no longer change, and previews are only made of \
             PRs whose head repository exists. Open the PR again from a repository GitHub still \
             has."
        );
        post_comment(app, installation_id, &repo, pr.number, &body).await;
        return Ok(Reply::ok("the PR's head repository is gone: not previewed"));
    };
    let Ok(branch) = BranchName::parse(&pr.head_ref) else {
        return Ok(Reply::ok(format!(
            "branch {:?} cannot be previewed",
            pr.head_ref
        )));
    };
    if !head_repo.eq_ignore_ascii_case(repo.as_str()) {
        info!(%repo, pr = pr.number, head_repo, "previewing a PR from a fork");
    }
    let key = ActiveKey::preview(&repo, pr.number);
    let mut id = naming::preview_session_id(branch.as_str());
    if let Some(holder) = app
        .store
        .get(&SessionId::parse(&id).unwrap_or_else(|_| unreachable!()))
        .await?
    {
        if holder.repo_full_name != repo || holder.pr_number != Some(pr.number) {
            // Another PR's branch folds to the same readable id: use the hashed one.
            id = naming::preview_session_id_hashed(branch.as_str());
        }
    }
    let id = SessionId::parse(&id).unwrap_or_else(|_| unreachable!());
    let url = app.uat_domain_suffix.url(&id);
    let fresh = || {
        let mut s = Session::new(
            id.clone(),
            SessionType::Preview,
            Source::Github,
            repo.clone(),
            branch.clone(),
            channel,
            now(),
        );
        s.pr_number = Some(pr.number);
        s.issue_number = Some(pr.number);
        s.installation_id = installation_id;
        s.uat_url = Some(url.clone());
        s
    };
    let session = match claim(app, &key, fresh, None).await? {
        Ok(s) => s,
        // The stopping preview was told on the PR already.
        Err(reply) if reply.body["message"] == STILL_STOPPING => return Ok(reply),
        Err(reply) => {
            let body =
                format!("{MARKER}\n**UAT Already Running**\n\nURL: {url}\n\nSession: `{id}`");
            post_comment(app, installation_id, &repo, pr.number, &body).await;
            return Ok(reply);
        }
    };
    Ok(match provision(app, session, None).await {
        Ok(p) => started(&p, "Preview started"),
        Err(reply) => reply,
    })
}

async fn start_jira(
    app: &App,
    key: JiraKey,
    project_key: &str,
    summary: &str,
    description: &serde_json::Value,
    channel: ImageChannel,
) -> ActResult {
    let Some(jira) = &app.jira else {
        return Ok(Reply::ok("JIRA is not configured"));
    };
    let Some(repo) = jira
        .project_mapping
        .get(&project_key.to_ascii_uppercase())
        .cloned()
    else {
        info!(project = project_key, "no repository mapping");
        return Ok(Reply::ok(format!(
            "No repo mapping for project {project_key}"
        )));
    };
    let installation_id = app.github.default_installation();
    let text = adf::to_text(description);
    let prompt = naming::jira_prompt(&key, summary, &text);
    let fresh = || {
        let id = SessionId::random_agent();
        let mut s = Session::new(
            id.clone(),
            SessionType::Agent,
            Source::Jira,
            repo.clone(),
            naming::jira_branch(&key),
            channel,
            now(),
        );
        s.jira_issue_key = Some(key.clone());
        s.installation_id = installation_id;
        s.initial_prompt = Some(prompt.clone());
        s.uat_url = Some(app.uat_domain_suffix.url(&id));
        s
    };
    let session = match claim(app, &ActiveKey::jira(&key), fresh, Some(prompt.clone())).await? {
        Ok(s) => s,
        Err(reply) => return Ok(reply),
    };
    let url = session.uat_url.clone().unwrap_or_default();
    let plan = PrPlan {
        title: naming::jira_pr_title(&key, summary),
        body: naming::jira_pr_body(
            &key,
            &jira.client.browse_url(key.as_str()),
            summary,
            &text,
            &url,
        ),
        commit_message: format!("chore: start Claude agent session for {key}"),
    };
    let p = match provision(app, session, Some(plan)).await {
        Ok(p) => p,
        Err(reply) => return Ok(reply),
    };
    let pr_url =
        p.pr.as_ref()
            .map(|pr| pr.html_url.clone())
            .unwrap_or_default();
    let comment = cca_jira::started_comment(
        &pr_url,
        &url,
        p.session.session_id.as_str(),
        p.session.branch_name.as_str(),
        channel == ImageChannel::Staging,
    );
    if let Err(e) = jira.client.comment(key.as_str(), comment).await {
        // JIRA is told about progress only; the session itself is fine.
        warn!(key = %key, error = %e, "cannot comment on the JIRA issue");
    }
    Ok(started(&p, "Session started"))
}

async fn stop_issue(
    app: &App,
    repo: &RepoName,
    issue_number: u64,
    reason: StopReason,
) -> ActResult {
    let Some(s) = app
        .store
        .by_active_key(&ActiveKey::issue(repo, issue_number))
        .await?
    else {
        return Ok(Reply::ok("no session for this issue"));
    };
    let pr = s.pr_number.unwrap_or(issue_number);
    stop_all(
        app,
        repo,
        pr,
        sessions_to_stop(std::slice::from_ref(&s), None),
        &reason,
    )
    .await
}

/// Stops each session: `STOPPING`, then `POST /stop` to its agent (which pushes work in progress
/// and records the final status), then StopTask / SIGTERM. ECS (the task definition's
/// `stopTimeout`) and the process launcher wait a grace period between SIGTERM and SIGKILL,
/// which is the agent's time to finish pushing. A session whose agent never reported an address
/// has nothing to push, and one whose recorded address may not be called cannot be told; both
/// are ended here.
async fn stop_all(
    app: &App,
    repo: &RepoName,
    pr_number: u64,
    sessions: Vec<Session>,
    reason: &StopReason,
) -> ActResult {
    if sessions.is_empty() {
        return Ok(Reply::ok("no active session to stop"));
    }
    let mut stopped = Vec::new();
    let mut installation = None;
    for s in sessions {
        installation = installation.or(s.installation_id);
        let s = match app
            .store
            .transition(
                &s.session_id,
                Status::Stopping,
                SessionPatch::default(),
                now(),
            )
            .await
        {
            Ok(s) => s,
            // Ended or stopping meanwhile: someone else is on it.
            Err(StoreError::IllegalTransition { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let body = json!({ "reason": reason.describe(), "final_status": reason.final_status() });
        // An agent that reported an address pushes its work and records its own end, even if
        // it could not be reached just now (SIGTERM from the task stop reaches it, and the
        // sweeper ends it if it dies). One that never reported an address has nothing to push;
        // one whose address is refused (logged by the client) is not asked, only its task stopped.
        let delegated = match app.control.post(&s, "/stop", &body).await {
            Ok(()) => true,
            Err(ControlError::NoAddress | ControlError::Refused(_)) => false,
            Err(e) => {
                warn!(session = %s.session_id, error = %e, "agent not reached; its task is stopped");
                true
            }
        };
        if let Some(arn) = &s.task_arn {
            if let Err(e) = app.launcher.stop(arn, &reason.describe()).await {
                warn!(session = %s.session_id, task = %arn, error = %e, "cannot stop the task");
            }
        }
        if !delegated {
            let patch = SessionPatch::default();
            if let Err(e) = app
                .store
                .transition(&s.session_id, reason.final_status(), patch, now())
                .await
            {
                warn!(session = %s.session_id, error = %e, "cannot record the stop");
            }
        }
        info!(session = %s.session_id, reason = %reason.describe(), delegated, "session stopping");
        if s.session_type == SessionType::Preview && !matches!(reason, StopReason::PrClosed { .. })
        {
            let body = format!(
                "{MARKER}\n**UAT Environment Stopped**\n\nThe UAT environment for `{}` has been shut down ({}).",
                s.session_id,
                reason.describe()
            );
            post_comment(app, s.installation_id, repo, pr_number, &body).await;
        }
        stopped.push(s.session_id.to_string());
    }
    if let StopReason::Command { by } = reason {
        if !stopped.is_empty() {
            let body = format!(
                "{MARKER}\n:octagonal_sign: Stopping at @{by}'s request: work in progress is committed and pushed first."
            );
            post_comment(app, installation, repo, pr_number, &body).await;
        }
    }
    Ok(Reply::ok_with("Stopping", json!({ "sessions": stopped })))
}

async fn refresh(app: &App, repo: &RepoName, pr_number: u64, head_sha: &str) -> ActResult {
    let sessions = app.store.by_pr(repo, pr_number).await?;
    let Some(s) = sessions.into_iter().find(|s| {
        s.session_type == SessionType::Preview && matches!(s.status, Status::Running | Status::Idle)
    }) else {
        return Ok(Reply::ok("no running preview for this PR"));
    };
    match app
        .control
        .post(&s, "/refresh", &json!({ "head_sha": head_sha }))
        .await
    {
        Ok(()) => Ok(Reply::ok_with(
            "Preview refreshing",
            json!({ "session_id": s.session_id }),
        )),
        Err(e) => {
            warn!(session = %s.session_id, error = %e, "cannot refresh the preview");
            Ok(Reply::error(
                StatusCode::BAD_GATEWAY,
                format!("preview {} could not be refreshed: {e}", s.session_id),
            ))
        }
    }
}

async fn prompt(
    app: &App,
    repo: RepoName,
    pr_number: u64,
    comment: Comment,
    installation_id: Option<u64>,
) -> ActResult {
    let sessions = app.store.by_pr(&repo, pr_number).await?;
    match plan_comment(&sessions) {
        CommentPlan::NoSession => Ok(Reply::ok("no agent session on this PR")),
        CommentPlan::Forward(s) => {
            let body = json!({ "prompt": comment.body, "author": comment.author.login, "comment_id": comment.id });
            match app.control.post(&s, "/prompt", &body).await {
                Ok(()) => {
                    info!(session = %s.session_id, comment = comment.id, "comment forwarded to the agent");
                    Ok(Reply::ok_with(
                        "Prompt forwarded",
                        json!({ "session_id": s.session_id }),
                    ))
                }
                // Retrying will not help, and the PR is not told what the record says.
                Err(ControlError::Refused(_)) => {
                    let body = format!(
                        "{MARKER}\n:warning: Your comment could not be delivered: the agent (`{}`) cannot be reached. `{}` ends the session; mentioning {} after that starts it again with your comment.",
                        s.session_id, app.rules.stop_command, app.rules.mention
                    );
                    post_comment(app, installation_id, &repo, pr_number, &body).await;
                    Ok(Reply::ok_with(
                        "Agent cannot be reached",
                        json!({ "session_id": s.session_id }),
                    ))
                }
                Err(e) => {
                    let body = format!(
                        "{MARKER}\n:warning: Your comment could not be delivered to the agent (`{}`): {e}. Please try again in a minute.",
                        s.session_id
                    );
                    post_comment(app, installation_id, &repo, pr_number, &body).await;
                    Ok(Reply::error(
                        StatusCode::BAD_GATEWAY,
                        format!("agent unreachable: {e}"),
                    ))
                }
            }
        }
        CommentPlan::NotReady(s) => {
            let body = format!(
                "{MARKER}\n:hourglass: The agent (`{}`) is {} and cannot take comments yet; please mention {} again once it reports ready.",
                s.session_id,
                s.status.as_str().to_ascii_lowercase(),
                app.rules.mention
            );
            post_comment(app, installation_id, &repo, pr_number, &body).await;
            Ok(Reply::ok_with(
                "Agent not ready",
                json!({ "session_id": s.session_id }),
            ))
        }
        CommentPlan::Relaunch(s) => {
            let prompt = format!(
                "Follow-up from @{} on the PR:\n\n{}",
                comment.author.login, comment.body
            );
            let patch = SessionPatch {
                initial_prompt: Some(prompt),
                ..SessionPatch::default()
            };
            let session = match app.store.relaunch(&s.session_id, patch, now()).await {
                Ok(s) => s,
                Err(StoreError::ActiveExists { existing, .. }) => {
                    return Ok(Reply::ok_with(
                        "Session already exists",
                        json!({ "session_id": existing }),
                    ));
                }
                Err(StoreError::IllegalTransition { .. }) => return Ok(already(&s)),
                Err(e) => return Err(e.into()),
            };
            info!(session = %session.session_id, by = %comment.author.login, "relaunching a session for a comment");
            Ok(match provision(app, session, None).await {
                Ok(p) => started(&p, "Session relaunched"),
                Err(reply) => reply,
            })
        }
    }
}
