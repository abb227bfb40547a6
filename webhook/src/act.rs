//! The executor: reads what a delivery's plan needs, plans it ([`crate::plan`]) and carries the
//! plan out on the store, GitHub, the launcher, agents and JIRA.
//!
//! Order matters for "nothing lost, nothing doubled": a session is claimed in the store first
//! (so of concurrent deliveries exactly one proceeds), then the branch and PR are made (each
//! idempotent), then the task is launched. Any failure after the claim leaves the session
//! `FAILED` with its reason and says so once on the PR. Every choice is the plan's; this file
//! only does what it is told and hands each result back to it.

use cca_domain::decide::StopReason;
use cca_domain::event::CheckRun;
use cca_domain::session::SessionPatch;
use cca_domain::{ActiveKey, Session, SessionId, Status};
use cca_github::{GitHubError, PullRef, RepoClient};
use cca_launcher::LaunchRequest;
use cca_store::StoreError;
use tracing::{Instrument as _, Span, error_span, info, warn};

use crate::app::{App, now};
use crate::plan::{
    self, Claim, Conflict, Context, Forward, JiraContext, Needs, Outcome, Plan, Post, PrPlan,
    Provisioning, Snapshot, Start, Stop, StopTarget,
};

/// A read or write the plan depends on failed.
#[derive(Debug, thiserror::Error)]
enum ActError {
    #[error("session store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    GitHub(#[from] GitHubError),
    /// The App cannot act for this installation.
    #[error("cannot act for installation {installation:?}: {error}")]
    Installation {
        installation: Option<u64>,
        error: GitHubError,
    },
}

impl ActError {
    /// Whether the same request may well succeed later (an outage, a rate limit), as opposed
    /// to a refusal that will not change by itself.
    fn is_transient(&self) -> bool {
        match self {
            ActError::Store(e) => matches!(e, StoreError::Backend(_)),
            ActError::GitHub(e) => e.is_transient(),
            ActError::Installation { .. } => false,
        }
    }

    fn outcome(self) -> Outcome {
        match self {
            ActError::Installation {
                installation,
                error,
            } => {
                warn!(?installation, %error, "refused: installation not accessible");
                Outcome::NotInstalled {
                    installation,
                    error: error.to_string(),
                }
            }
            e => {
                let transient = e.is_transient();
                warn!(error = %e, transient, "dependency failed");
                Outcome::Failed {
                    error: e.to_string(),
                    transient,
                }
            }
        }
    }
}

/// How long a start waits for a stopping session of the same key to end (within GitHub's 10 s
/// for a delivery).
const STOPPING_WAIT: std::time::Duration = std::time::Duration::from_secs(6);
const STOPPING_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Reads, plans and carries out an intent; the outcome the answer is made of.
pub async fn handle(app: &App, intent: cca_domain::decide::Intent) -> Outcome {
    let ctx = context(app);
    let needs = plan::needs(&intent, &ctx);
    let snapshot = match read(app, &needs).await {
        Ok(s) => s,
        Err(e) => return e.outcome(),
    };
    let plan = plan::plan(intent, &snapshot, &ctx);
    carry_out(app, plan, snapshot.now).await
}

fn context(app: &App) -> Context<'_> {
    Context {
        rules: &app.rules,
        urls: &app.uat_domain_suffix,
        jira: app.jira.as_ref().map(|j| JiraContext {
            mapping: &j.project_mapping,
            base_url: j.client.base_url(),
        }),
        default_installation: app.github.default_installation(),
    }
}

/// A client for `installation`; an installation this App cannot act for is bad input, not an
/// outage.
async fn installation_client(app: &App, installation: Option<u64>) -> Result<RepoClient, ActError> {
    app.github.client(installation).await.map_err(|error| {
        match plan::installation_refused(&error) {
            true => ActError::Installation {
                installation,
                error,
            },
            false => ActError::GitHub(error),
        }
    })
}

/// The snapshot of what `needs` names. A permission that does not allow the intent ends the
/// reading: the plan refuses without the store being asked.
async fn read(app: &App, needs: &Needs) -> Result<Snapshot, ActError> {
    let mut snap = Snapshot::default();
    if let Some(q) = &needs.permission {
        let gh = installation_client(app, q.installation).await?;
        let p = gh.permission(&q.repo, &q.user).await?;
        snap.permission = Some(p);
        if !p.can_write() {
            info!(user = %q.user, repo = %q.repo, permission = ?p, "refused: the actor lacks write permission");
            snap.now = now();
            return Ok(snap);
        }
    }
    if let Some(id) = &needs.id_holder {
        snap.id_holder = app.store.get(id).await?;
    }
    if let Some(key) = &needs.active {
        snap.active = match needs.wait_for_stop {
            true => read_active(app, key).await?,
            false => app.store.by_active_key(key).await?,
        };
        if needs.wait_for_stop {
            snap.fresh_id = Some(cca_domain::SessionId::random_agent());
        }
    }
    if let Some((repo, pr)) = &needs.on_pr {
        snap.on_pr = app.store.by_pr(repo, *pr).await?;
    }
    if let Some(q) = needs
        .installation_load
        .filter(|q| !q.only_for_relaunch || plan::relaunches(&snap.on_pr))
    {
        snap.installation_active = active_agents(app)
            .await?
            .into_iter()
            .filter(|s| s.installation_id == q.installation)
            .collect();
    }
    if let Some(q) = needs
        .review
        .as_ref()
        .filter(|_| plan::reads_review(&snap.on_pr))
    {
        let gh = installation_client(app, q.installation).await?;
        snap.review_comments = gh
            .review_comments(&q.repo, q.pr_number, q.review_id)
            .await?;
    }
    if let Some(q) = needs
        .comment_review
        .as_ref()
        .filter(|_| plan::reads_review(&snap.on_pr))
    {
        let gh = installation_client(app, q.installation).await?;
        snap.comment_review = Some(gh.review(&q.repo, q.pr_number, q.review_id).await?);
    }
    if let Some(q) = needs
        .checks
        .as_ref()
        .filter(|_| plan::forwards(&snap.on_pr))
    {
        let gh = installation_client(app, q.installation).await?;
        match q.failed {
            true => snap.failed_checks = failed_checks(&gh, q).await?,
            false => {
                snap.all_checks_green = Some(gh.checks_settled_green(&q.repo, &q.head_sha).await?)
            }
        }
    }
    snap.now = now();
    Ok(snap)
}

/// How long reading the failed checks' logs may take in all: the delivery has 10 s.
const LOGS_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The failed runs of a suite, with the tail of each GitHub Actions job's log, read together
/// within [`LOGS_LIMIT`] (a log GitHub no longer keeps, cannot give, or gives too slowly leaves
/// its check without one).
async fn failed_checks(gh: &RepoClient, q: &plan::ChecksQuery) -> Result<Vec<CheckRun>, ActError> {
    let mut failed: Vec<CheckRun> = gh
        .check_runs(&q.repo, q.suite_id)
        .await?
        .into_iter()
        .filter(CheckRun::failed)
        .take(plan::FAILED_CHECKS_READ)
        .collect();
    let reads = failed.iter().map(|run| async move {
        if run.app.as_deref() != Some("github-actions") {
            return None;
        }
        let read = gh.job_log_tail(&q.repo, run.id, plan::LOG_TAIL_LINES);
        match tokio::time::timeout(LOGS_LIMIT, read).await {
            Ok(Ok(tail)) => tail,
            Ok(Err(e)) => {
                warn!(check = %run.name, error = %e, "cannot read the check's log");
                None
            }
            Err(_) => {
                warn!(check = %run.name, "the check's log did not come in time");
                None
            }
        }
    });
    let tails = futures::future::join_all(reads).await;
    for (run, tail) in failed.iter_mut().zip(tails) {
        run.log_tail = tail;
    }
    Ok(failed)
}

/// The session holding `key`. An agent stops within seconds (it commits and pushes first): a
/// start asked for meanwhile waits for that within the delivery's time.
async fn read_active(app: &App, key: &ActiveKey) -> Result<Option<Session>, StoreError> {
    let mut last = app.store.by_active_key(key).await?;
    let until = tokio::time::Instant::now() + STOPPING_WAIT;
    while plan::worth_waiting_for(last.as_ref()) && tokio::time::Instant::now() < until {
        tokio::time::sleep(STOPPING_POLL).await;
        last = app.store.by_active_key(key).await?;
    }
    Ok(last)
}

async fn carry_out(app: &App, plan: Plan, now: i64) -> Outcome {
    match plan {
        Plan::Answer { posts, outcome } => {
            for p in &posts {
                post(app, p).await;
            }
            outcome
        }
        Plan::Start(start) => self::start(app, *start, now).await,
        Plan::Stop(stop) => self::stop(app, stop, now)
            .await
            .unwrap_or_else(ActError::outcome),
        Plan::Refresh { session, head_sha } => {
            on_session(&session.session_id);
            let result = app
                .control
                .post(
                    &session,
                    "/refresh",
                    &serde_json::json!({ "head_sha": head_sha }),
                )
                .await;
            if let Err(e) = &result {
                warn!(error = %e, "cannot refresh the preview");
            }
            plan::after_refresh(&session, &result)
        }
        Plan::Forward(f) => forward(app, &f).await,
        Plan::Labels {
            installation,
            now,
            later,
        } => labels(app, installation, &now, &later)
            .await
            .unwrap_or_else(ActError::outcome),
    }
}

/// Claims the session, then provisions it.
async fn start(app: &App, start: Start, now: i64) -> Outcome {
    on_session(&start.claim.session().session_id);
    let claimed = match &start.claim {
        Claim::Create(s) => app.store.create(s).await.map(|()| s.clone()),
        Claim::Relaunch { last, patch } => {
            app.store
                .relaunch(&last.session_id, SessionPatch::clone(patch), now)
                .await
        }
    };
    let session = match claimed {
        Ok(s) => s,
        Err(e) => {
            let conflict = match &e {
                StoreError::ActiveExists { existing, .. } => {
                    Some(Conflict::ActiveExists(existing.clone()))
                }
                StoreError::IdTaken(id) => Some(Conflict::IdTaken(id.clone())),
                StoreError::IllegalTransition { id, .. } => Some(Conflict::Moved(id.clone())),
                _ => None,
            };
            return match conflict.and_then(|c| plan::claim_lost(&start, c)) {
                Some(outcome) => {
                    info!(error = %e, "session already claimed by a concurrent delivery");
                    if let Some(p) = &start.if_taken {
                        post(app, p).await;
                    }
                    outcome
                }
                None => ActError::from(e).outcome(),
            };
        }
    };
    if let Some(queued) = &start.queue {
        return queue(app, session, &start, queued, now).await;
    }
    info!(kind = ?session.session_type, relaunch = matches!(start.claim, Claim::Relaunch { .. }), "starting a session");
    let (session, pr) = match provision(app, session, start.pr.as_ref(), now).await {
        Ok(done) => done,
        Err(reason) => return Outcome::StartFailed(reason),
    };
    if let (Some(key), Some(jira)) = (&start.jira, &app.jira) {
        let pr_url = pr.as_ref().map(|p| p.html_url.clone()).unwrap_or_default();
        let comment = cca_domain::texts::jira::started(
            &pr_url,
            session.uat_url.as_deref().unwrap_or_default(),
            session.session_id.as_str(),
            session.branch_name.as_str(),
            session.image_channel == cca_domain::ImageChannel::Staging,
        );
        if let Err(e) = jira.client.comment(key.as_str(), comment).await {
            // JIRA is told about progress only; the session itself is fine.
            warn!(key = %key, error = %e, "cannot comment on the JIRA issue");
        }
    }
    Outcome::Started {
        message: start.message,
        session: Box::new(session),
    }
}

/// A claimed session that waits for its turn: its branch and PR are made, it becomes `QUEUED`,
/// and it is told its place. A turn may be free already (the sessions ahead of it started
/// meanwhile, or one ended): the queue is then served at once.
async fn queue(
    app: &App,
    session: Session,
    start: &Start,
    queued: &plan::Queued,
    now: i64,
) -> Outcome {
    info!(
        place = queued.place,
        "the installation is at its ceiling: the session waits"
    );
    let (session, pr) = match open_pr(app, session, start.pr.as_ref(), now).await {
        Ok(done) => done,
        Err(reason) => return Outcome::StartFailed(reason),
    };
    let session = match app
        .store
        .transition(
            &session.session_id,
            Status::Queued,
            SessionPatch::default(),
            now,
        )
        .await
    {
        Ok(s) => s,
        // Stopped meanwhile (its label removed, the PR closed): nothing waits.
        Err(StoreError::IllegalTransition { from, .. }) => {
            info!(status = %from, "the session moved on before it was queued");
            return Outcome::Done(format!("the session is {from}, not queued"));
        }
        Err(e) => {
            let reason = fail(app, &session, Provisioning::Queue, &e.to_string(), now).await;
            return Outcome::StartFailed(reason);
        }
    };
    if let Some(number) = queued.number.or(pr.as_ref().map(|p| p.number)) {
        let p = Post {
            installation: session.installation_id,
            repo: session.repo_full_name.clone(),
            number,
            body: queued.body.clone(),
        };
        post(app, &p).await;
    }
    if let (Some(key), Some(jira)) = (&start.jira, &app.jira) {
        let pr_url = pr.as_ref().map(|p| p.html_url.as_str()).unwrap_or_default();
        let told =
            cca_domain::texts::jira::queued(queued.place, app.rules.max_active_sessions, pr_url);
        if let Err(e) = jira.client.comment(key.as_str(), told).await {
            warn!(key = %key, error = %e, "cannot comment on the JIRA issue");
        }
    }
    start_turns(app, now).await;
    // Its turn may have come at once (the sessions ahead of it started or ended meanwhile).
    match app.store.get(&session.session_id).await {
        Ok(Some(s)) if s.status != Status::Queued => Outcome::Started {
            message: start.message,
            session: Box::new(s),
        },
        _ => Outcome::Queued {
            session: Box::new(session),
            place: queued.place,
        },
    }
}

/// The agent sessions that have not ended, every installation's.
async fn active_agents(app: &App) -> Result<Vec<Session>, StoreError> {
    let filter = cca_store::ListFilter {
        statuses: Status::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .collect(),
        limit: None,
    };
    Ok(app
        .store
        .list(&filter)
        .await?
        .into_iter()
        .filter(|s| s.session_type == cca_domain::SessionType::Agent)
        .collect())
}

/// Starts the queued sessions whose turn it is (see [`plan::turns`]): each is moved
/// `QUEUED → PROVISIONING` (of concurrent servers exactly one wins it) and launched. Run after
/// every stop, after a session is queued, on every scheduled sweep, and every
/// [`TURNS_INTERVAL`] by a server.
pub async fn start_turns(app: &App, now: i64) {
    let active = match active_agents(app).await {
        Ok(a) => a,
        Err(e) => {
            warn!(error = %e, "cannot read the queue");
            return;
        }
    };
    for s in plan::turns(&active, app.rules.max_active_sessions) {
        let span = error_span!("turn", session = %s.session_id);
        async {
            let session = match app
                .store
                .transition(
                    &s.session_id,
                    Status::Provisioning,
                    SessionPatch::default(),
                    now,
                )
                .await
            {
                Ok(s) => s,
                Err(StoreError::IllegalTransition { .. }) => return,
                Err(e) => {
                    warn!(error = %e, "cannot start a queued session");
                    return;
                }
            };
            info!("a queued session's turn: starting it");
            if let Err(reason) = launch(app, session, now).await {
                warn!(%reason, "the queued session could not start");
            }
        }
        .instrument(span)
        .await;
    }
}

/// How often a server serves the queue, besides after every stop: sessions also end by
/// themselves (idle, limits, crashes).
pub const TURNS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);

/// Serves the queue every [`TURNS_INTERVAL`] until `stop` turns true (`cca-webhook serve`,
/// `cca up`; the Lambda serves it on its scheduled event instead). A turn being given is
/// finished first: its launch is never cut between the claim and the task's record.
pub fn spawn_turns(
    app: std::sync::Arc<App>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TURNS_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => start_turns(&app, now()).await,
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
        }
    })
}

/// Branch, PR (agent sessions) and task of a claimed session. On failure the session ends
/// `FAILED`, the PR (or issue) is told once, and the reason is handed back.
async fn provision(
    app: &App,
    session: Session,
    pr_plan: Option<&PrPlan>,
    now: i64,
) -> Result<(Session, Option<PullRef>), String> {
    let (session, pr) = open_pr(app, session, pr_plan, now).await?;
    Ok((launch(app, session, now).await?, pr))
}

/// The branch and draft PR a new agent session opens (nothing for others), recorded.
async fn open_pr(
    app: &App,
    mut session: Session,
    pr_plan: Option<&PrPlan>,
    now: i64,
) -> Result<(Session, Option<PullRef>), String> {
    let mut pr = None;
    if let Some(plan) = pr_plan {
        let opened = match open_branch_and_pr(app, &session, plan).await {
            Ok(p) => p,
            Err(e) => {
                return Err(fail(
                    app,
                    &session,
                    Provisioning::BranchAndPr,
                    &e.to_string(),
                    now,
                )
                .await);
            }
        };
        let patch = SessionPatch {
            pr_number: Some(opened.number),
            ..SessionPatch::default()
        };
        session = match app.store.update(&session.session_id, patch, now).await {
            Ok(s) => s,
            Err(e) => {
                let step = Provisioning::RecordPr {
                    pr_number: opened.number,
                };
                return Err(fail(app, &session, step, &e.to_string(), now).await);
            }
        };
        pr = Some(opened);
    }
    Ok((session, pr))
}

/// The task of a provisioning session, recorded.
async fn launch(app: &App, mut session: Session, now: i64) -> Result<Session, String> {
    let req = LaunchRequest {
        session_id: session.session_id.clone(),
        kind: session.session_type,
        channel: session.image_channel,
        repo: session.repo_full_name.clone(),
        branch: session.branch_name.clone(),
        env: Vec::new(),
        session_token: Some(secrecy::SecretString::from(app.control.token(&session))),
    };
    let launched = match app.launcher.launch(&req).await {
        Ok(l) => l,
        Err(e) => return Err(fail(app, &session, Provisioning::Launch, &e.to_string(), now).await),
    };
    let patch = SessionPatch {
        task_arn: Some(launched.task_arn.clone()),
        ..SessionPatch::default()
    };
    match app.store.update(&session.session_id, patch, now).await {
        Ok(s) => session = s,
        Err(e) => {
            // The task runs but nothing records it: stop it rather than leak it.
            let _ = app
                .launcher
                .stop(&launched.task_arn, "session record could not be updated")
                .await;
            return Err(fail(app, &session, Provisioning::RecordTask, &e.to_string(), now).await);
        }
    }
    info!(task = %launched.task_arn, "session launched");
    Ok(session)
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

/// Ends a session `FAILED` as the plan says of `step` failing with `error`, and comments once;
/// the recorded (masked) reason.
async fn fail(app: &App, session: &Session, step: Provisioning, error: &str, now: i64) -> String {
    let failure = plan::start_failed(session, step, &app.masker.mask(error), &app.rules);
    let reason = app.masker.mask(&failure.reason);
    warn!(%reason, "session failed to start");
    let patch = SessionPatch {
        error: Some(reason.clone()),
        ..SessionPatch::default()
    };
    if let Err(e) = app
        .store
        .transition(&session.session_id, Status::Failed, patch, now)
        .await
    {
        warn!(error = %e, "cannot record the failure");
    }
    if let Some(p) = &failure.post {
        post(app, p).await;
    }
    reason
}

/// Stops each session: `STOPPING`, then `POST /stop` to its agent (which pushes work in progress
/// and records the final status), then StopTask / SIGTERM. ECS (the task definition's
/// `stopTimeout`) and the process launcher wait a grace period between SIGTERM and SIGKILL,
/// which is the agent's time to finish pushing. A session the plan does not delegate to its
/// agent is ended here.
async fn stop(app: &App, stop: Stop, now: i64) -> Result<Outcome, ActError> {
    let mut stopped = Vec::new();
    for target in &stop.targets {
        let span = error_span!("stop", session = %target.session.session_id);
        if let Some(id) = stop_one(app, target, &stop.reason, now)
            .instrument(span)
            .await?
        {
            stopped.push(id);
        }
    }
    if let (Some(p), false) = (&stop.then, stopped.is_empty()) {
        post(app, p).await;
    }
    if !stopped.is_empty() {
        start_turns(app, now).await;
    }
    Ok(Outcome::Stopping(stopped))
}

/// Stops one session; `None` when it had ended or was stopping already.
async fn stop_one(
    app: &App,
    target: &StopTarget,
    reason: &StopReason,
    now: i64,
) -> Result<Option<SessionId>, ActError> {
    let s = match app
        .store
        .transition(
            &target.session.session_id,
            Status::Stopping,
            SessionPatch::default(),
            now,
        )
        .await
    {
        Ok(s) => s,
        // Ended or stopping meanwhile: someone else is on it.
        Err(StoreError::IllegalTransition { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let body =
        serde_json::json!({ "reason": reason.describe(), "final_status": reason.final_status() });
    let result = app.control.post(&s, "/stop", &body).await;
    let delegated = plan::stop_delegated(&result);
    if let (Err(e), true) = (&result, delegated) {
        warn!(error = %e, "agent not reached; its task is stopped");
    }
    if let Some(arn) = &s.task_arn {
        if let Err(e) = app.launcher.stop(arn, &reason.describe()).await {
            warn!(task = %arn, error = %e, "cannot stop the task");
        }
    }
    if !delegated {
        if let Err(e) = app
            .store
            .transition(
                &s.session_id,
                reason.final_status(),
                SessionPatch::default(),
                now,
            )
            .await
        {
            warn!(error = %e, "cannot record the stop");
        }
    }
    info!(reason = %reason.describe(), delegated, "session stopping");
    if let Some(p) = &target.post {
        post(app, p).await;
    }
    Ok(Some(s.session_id))
}

/// Puts the session the delivery acts on into its span, so every line after says it.
fn on_session(id: &SessionId) {
    Span::current().record("session", id.as_str());
}

async fn forward(app: &App, f: &Forward) -> Outcome {
    on_session(&f.session.session_id);
    let result = app.control.post(&f.session, f.route, &f.body).await;
    match &result {
        Ok(()) => {
            info!(comment = ?f.comment_id, "follow-up forwarded to the agent");
        }
        Err(e) => warn!(error = ?app.masker.mask(&e.to_string()), "comment not delivered"),
    }
    let (tell, outcome) = plan::after_forward(f, &result, &app.rules);
    if let Some(p) = &tell {
        post(app, p).await;
    }
    outcome
}

/// Makes the system's labels exist in the repositories the App was just given, so nobody has
/// to guess their names. Repositories beyond the plan's share are named in the answer (and the
/// log) for `cca doctor` or a hand to do.
async fn labels(
    app: &App,
    installation: u64,
    now: &[cca_domain::RepoName],
    later: &[cca_domain::RepoName],
) -> Result<Outcome, ActError> {
    let gh = installation_client(app, Some(installation)).await?;
    let mut created = std::collections::BTreeMap::new();
    let mut refused = Vec::new();
    for repo in now {
        match labels_of(app, &gh, repo).await {
            Ok(made) => {
                info!(repo = %repo, ?made, "labels ensured");
                created.insert(repo.to_string(), made);
            }
            Err(e) if plan::label_refusal(&e) => {
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
    Ok(Outcome::Labels {
        created,
        refused,
        not_done: later.iter().map(ToString::to_string).collect(),
    })
}

/// Makes the system's labels exist in `repo`; the names it created.
async fn labels_of(
    app: &App,
    gh: &RepoClient,
    repo: &cca_domain::RepoName,
) -> Result<Vec<String>, GitHubError> {
    let mut created = Vec::new();
    for (name, color, description) in app.rules.labels() {
        if gh.ensure_label(repo, name, color, description).await? {
            created.push(name.to_owned());
        }
    }
    Ok(created)
}

/// Posts a comment, masking secrets; a failure is logged, never fatal.
async fn post(app: &App, p: &Post) {
    let body = app.masker.mask(&p.body);
    let result = async {
        app.github
            .client(p.installation)
            .await?
            .comment(&p.repo, p.number, &body)
            .await
    }
    .await;
    if let Err(e) = result {
        warn!(repo = %p.repo, number = p.number, error = %e, "cannot comment");
    }
}
