//! The intake plan without I/O: every intent against the snapshots the scenario tests meet,
//! and each step's failure.

use cca_domain::address::Refusal;
use cca_domain::event::{Actor, CheckRun, CheckSuite, Comment, Review, ReviewComment};

use super::*;
use cca_domain::decide::Command;

const NOW: i64 = 1_800_000_000;
const INSTALLATION: u64 = 42;

fn repo() -> RepoName {
    RepoName::parse("octo/app").unwrap()
}

fn rules() -> Rules {
    Rules::default()
}

fn urls() -> PreviewUrls {
    PreviewUrls::new("uat.example.com")
}

fn mapping() -> BTreeMap<String, RepoName> {
    BTreeMap::from([("PROJ".to_owned(), repo())])
}

/// Runs `f` with a context (JIRA configured or not).
fn with_ctx<T>(jira: bool, f: impl FnOnce(&Context<'_>) -> T) -> T {
    let (rules, urls, mapping) = (rules(), urls(), mapping());
    let ctx = Context {
        rules: &rules,
        urls: &urls,
        jira: jira.then_some(JiraContext {
            mapping: &mapping,
            base_url: "https://example.atlassian.net",
        }),
        default_installation: Some(INSTALLATION),
    };
    f(&ctx)
}

fn plan_of(intent: Intent, snap: &Snapshot) -> Plan {
    with_ctx(true, |ctx| plan(intent, snap, ctx))
}

fn actor(login: &str) -> Actor {
    Actor {
        login: Login::parse(login).unwrap(),
        is_bot: false,
    }
}

fn fresh_id() -> SessionId {
    SessionId::parse("a1b2c3d4e5f6").unwrap()
}

fn snap() -> Snapshot {
    Snapshot {
        now: NOW,
        permission: Some(Permission::Write),
        fresh_id: Some(fresh_id()),
        ..Snapshot::default()
    }
}

fn session(id: &str, kind: SessionType, status: Status) -> Session {
    let branch = match kind {
        SessionType::Agent => naming::issue_branch(7),
        SessionType::Preview => BranchName::parse("feature/x").unwrap(),
    };
    let mut s = Session::new(
        SessionId::parse(id).unwrap(),
        kind,
        Source::Github,
        repo(),
        branch,
        ImageChannel::Latest,
        NOW - 100,
    );
    s.status = status;
    s.issue_number = Some(7);
    s.pr_number = Some(8);
    s.installation_id = Some(INSTALLATION);
    s.uat_url = Some(format!("https://{id}.uat.example.com"));
    s
}

fn agent(status: Status) -> Session {
    session("agent1", SessionType::Agent, status)
}

fn preview(status: Status) -> Session {
    session("tt-feature-x", SessionType::Preview, status)
}

fn issue() -> Issue {
    Issue {
        number: 7,
        title: "Add a login page".into(),
        body: "Email and password".into(),
        is_pull_request: false,
        not_planned: false,
    }
}

fn start_agent(channel: ImageChannel) -> Intent {
    Intent::StartAgent {
        repo: repo(),
        issue: issue(),
        channel,
        plan: false,
        actor: actor("alice"),
        installation_id: Some(INSTALLATION),
    }
}

fn pull(head_repo: Option<&str>, head_ref: &str) -> PullRequest {
    PullRequest {
        number: 8,
        title: "T".into(),
        body: "B".into(),
        head_ref: head_ref.into(),
        head_sha: "abc".into(),
        head_repo: head_repo.map(str::to_owned),
        merged: false,
    }
}

fn start_preview(pr: PullRequest) -> Intent {
    Intent::StartPreview {
        repo: repo(),
        pr,
        channel: ImageChannel::Latest,
        actor: actor("alice"),
        installation_id: Some(INSTALLATION),
    }
}

fn start_jira(project: &str) -> Intent {
    Intent::StartJira {
        key: JiraKey::parse("PROJ-3").unwrap(),
        project_key: project.into(),
        summary: "Sum".into(),
        description: json!("Describe it"),
        channel: ImageChannel::Latest,
    }
}

fn prompt_intent() -> Intent {
    Intent::Prompt {
        repo: repo(),
        pr_number: 8,
        comment: Comment {
            id: 99,
            body: "@claude add tests".into(),
            author: actor("alice"),
        },
        installation_id: Some(INSTALLATION),
    }
}

fn stop_command() -> Intent {
    Intent::StopCommand {
        repo: repo(),
        pr_number: 8,
        actor: actor("alice"),
        installation_id: Some(INSTALLATION),
    }
}

fn stop_pr(only: Option<SessionType>, reason: StopReason) -> Intent {
    Intent::StopPr {
        repo: repo(),
        pr_number: 8,
        only,
        reason,
    }
}

fn start(plan: Plan) -> Start {
    match plan {
        Plan::Start(s) => *s,
        other => panic!("not a start: {other:?}"),
    }
}

fn answer_of(plan: Plan) -> (Vec<Post>, Outcome) {
    match plan {
        Plan::Answer { posts, outcome } => (posts, outcome),
        other => panic!("not an answer: {other:?}"),
    }
}

fn stop_of(plan: Plan) -> Stop {
    match plan {
        Plan::Stop(s) => s,
        other => panic!("not a stop: {other:?}"),
    }
}

fn done(message: &str) -> (Vec<Post>, Outcome) {
    (Vec::new(), Outcome::Done(message.into()))
}

// What is read.

#[test]
fn writers_are_checked_for_every_intent_a_person_asks_for_and_only_those() {
    with_ctx(true, |ctx| {
        for intent in [
            start_agent(ImageChannel::Latest),
            start_preview(pull(Some("octo/app"), "feature/x")),
            prompt_intent(),
            stop_command(),
        ] {
            let q = needs(&intent, ctx).permission.expect("asked");
            assert_eq!(
                (q.repo, q.user.as_str(), q.installation),
                (repo(), "alice", Some(INSTALLATION))
            );
        }
        for intent in [
            stop_pr(None, StopReason::PrClosed { merged: true }),
            Intent::StopIssue {
                repo: repo(),
                issue_number: 7,
                reason: StopReason::IssueClosed { completed: true },
            },
            Intent::RefreshPreview {
                repo: repo(),
                pr_number: 8,
                head_sha: "abc".into(),
            },
            start_jira("PROJ"),
            Intent::EnsureLabels {
                repos: vec![repo()],
                installation_id: INSTALLATION,
            },
            Intent::Ignore("pong".into()),
        ] {
            assert_eq!(needs(&intent, ctx).permission, None, "{intent:?}");
        }
    });
}

#[test]
fn starts_read_their_key_and_wait_out_a_stop_and_stops_do_not_wait() {
    with_ctx(true, |ctx| {
        let n = needs(&start_agent(ImageChannel::Latest), ctx);
        assert_eq!(n.active, Some(ActiveKey::issue(&repo(), 7)));
        assert!(n.wait_for_stop);
        let n = needs(&start_preview(pull(Some("octo/app"), "feature/x")), ctx);
        assert_eq!(n.active, Some(ActiveKey::preview(&repo(), 8)));
        assert_eq!(n.id_holder, Some(SessionId::parse("tt-feature-x").unwrap()));
        assert!(n.wait_for_stop);
        let n = needs(&start_jira("proj"), ctx);
        assert_eq!(
            n.active,
            Some(ActiveKey::jira(&JiraKey::parse("PROJ-3").unwrap()))
        );
        let n = needs(
            &Intent::StopIssue {
                repo: repo(),
                issue_number: 7,
                reason: StopReason::LabelRemoved("claude-dev".into()),
            },
            ctx,
        );
        assert_eq!(n.active, Some(ActiveKey::issue(&repo(), 7)));
        assert!(!n.wait_for_stop);
        for intent in [
            prompt_intent(),
            stop_command(),
            stop_pr(None, StopReason::PrClosed { merged: false }),
        ] {
            let n = needs(&intent, ctx);
            assert_eq!(n.on_pr, Some((repo(), 8)));
            assert_eq!((n.active, n.wait_for_stop), (None, false));
        }
    });
}

#[test]
fn what_can_be_answered_without_the_store_reads_nothing_from_it() {
    with_ctx(true, |ctx| {
        for intent in [
            start_preview(pull(None, "feature/x")),
            start_preview(pull(Some("octo/app"), "bad..ref")),
            start_jira("NOPE"),
        ] {
            let n = needs(&intent, ctx);
            assert_eq!(
                (n.active, n.on_pr, n.id_holder),
                (None, None, None),
                "{intent:?}"
            );
        }
    });
    with_ctx(false, |ctx| {
        assert_eq!(needs(&start_jira("PROJ"), ctx), Needs::default());
    });
}

// Who may.

#[test]
fn a_reader_is_refused_naming_who_and_where() {
    for p in [Permission::Read, Permission::Triage, Permission::None] {
        let snap = Snapshot {
            permission: Some(p),
            ..snap()
        };
        for intent in [
            start_agent(ImageChannel::Latest),
            prompt_intent(),
            stop_command(),
        ] {
            assert_eq!(
                answer_of(plan_of(intent, &snap)),
                (
                    Vec::new(),
                    Outcome::Refused("alice lacks write permission on octo/app".into())
                )
            );
        }
    }
    for p in [Permission::Write, Permission::Maintain, Permission::Admin] {
        let snap = Snapshot {
            permission: Some(p),
            ..snap()
        };
        assert!(matches!(
            plan_of(start_agent(ImageChannel::Latest), &snap),
            Plan::Start(_)
        ));
    }
}

// Starting an issue's agent.

#[test]
fn a_first_label_creates_the_session_its_branch_and_draft_pr() {
    let s = start(plan_of(start_agent(ImageChannel::Latest), &snap()));
    let Claim::Create(new) = &s.claim else {
        panic!("{:?}", s.claim)
    };
    assert_eq!(new.session_id, fresh_id());
    assert_eq!(
        (new.session_type, new.source, new.status),
        (SessionType::Agent, Source::Github, Status::Provisioning)
    );
    assert_eq!(new.branch_name.as_str(), "claude/7");
    assert_eq!((new.issue_number, new.pr_number), (Some(7), None));
    assert_eq!(new.installation_id, Some(INSTALLATION));
    assert_eq!(new.created_at, NOW);
    let url = "https://a1b2c3d4e5f6.uat.example.com";
    assert_eq!(new.uat_url.as_deref(), Some(url));
    assert!(
        new.initial_prompt
            .as_deref()
            .unwrap()
            .contains("Email and password")
    );
    let pr = s.pr.expect("a PR");
    assert_eq!(pr.title, "[Claude] Add a login page");
    assert!(pr.body.contains("Closes #7") && pr.body.contains(url));
    assert_eq!(
        pr.commit_message,
        "chore: start Claude agent session for issue #7"
    );
    assert_eq!(
        (s.trigger, s.message, s.jira, s.if_taken),
        (Trigger::Label, "Session started", None, None)
    );
}

#[test]
fn a_label_on_an_ended_session_relaunches_it_with_the_issue_as_prompt() {
    for ended in [Status::Stopped, Status::Completed, Status::Failed] {
        let snap = Snapshot {
            active: Some(agent(ended)),
            ..snap()
        };
        let s = start(plan_of(start_agent(ImageChannel::Latest), &snap));
        let Claim::Relaunch { last, patch } = &s.claim else {
            panic!("{:?}", s.claim)
        };
        assert_eq!(last.session_id.as_str(), "agent1");
        assert!(
            patch
                .initial_prompt
                .as_deref()
                .unwrap()
                .starts_with("GitHub Issue #7")
        );
        // The PR body points at the session's own preview.
        assert!(
            s.pr.unwrap()
                .body
                .contains("https://agent1.uat.example.com")
        );
    }
}

#[test]
fn a_label_on_an_active_session_says_it_exists_and_does_nothing() {
    for active in [Status::Provisioning, Status::Running, Status::Idle] {
        let snap = Snapshot {
            active: Some(agent(active)),
            ..snap()
        };
        assert_eq!(
            answer_of(plan_of(start_agent(ImageChannel::Latest), &snap)),
            (
                Vec::new(),
                Outcome::Exists {
                    id: SessionId::parse("agent1").unwrap(),
                    status: Some(active)
                }
            )
        );
    }
}

#[test]
fn a_session_still_stopping_after_the_wait_is_not_started_and_the_pr_is_told_how_to_retry() {
    for (channel, label) in [
        (ImageChannel::Latest, "claude-dev"),
        (ImageChannel::Staging, "claude-dev-staging"),
    ] {
        let mut stopping = agent(Status::Stopping);
        stopping.image_channel = channel;
        let snap = Snapshot {
            active: Some(stopping),
            ..snap()
        };
        let (posts, outcome) = answer_of(plan_of(start_agent(channel), &snap));
        assert_eq!(
            outcome,
            Outcome::StillStopping {
                id: SessionId::parse("agent1").unwrap(),
                status: Status::Stopping
            }
        );
        assert_eq!(posts.len(), 1);
        assert_eq!(
            (posts[0].number, posts[0].installation),
            (8, Some(INSTALLATION))
        );
        assert!(
            posts[0]
                .body
                .contains(&format!("remove and re-add the `{label}` label")),
            "{}",
            posts[0].body
        );
    }
}

// Previews.

#[test]
fn a_preview_of_a_deleted_fork_is_refused_on_the_pr() {
    let (posts, outcome) = answer_of(plan_of(start_preview(pull(None, "feature/x")), &snap()));
    assert_eq!(
        outcome,
        Outcome::Done("the PR's head repository is gone: not previewed".into())
    );
    assert_eq!(posts.len(), 1);
    assert!(posts[0].body.contains("UAT not started"));
}

#[test]
fn a_branch_that_cannot_be_named_is_not_previewed() {
    assert_eq!(
        answer_of(plan_of(
            start_preview(pull(Some("octo/app"), "bad..ref")),
            &snap()
        )),
        done("branch \"bad..ref\" cannot be previewed")
    );
}

#[test]
fn a_preview_gets_the_readable_id_unless_another_pr_holds_it() {
    let id_of = |snap: &Snapshot| {
        let s = start(plan_of(
            start_preview(pull(Some("fork/app"), "feature/x")),
            snap,
        ));
        let Claim::Create(new) = &s.claim else {
            panic!("{:?}", s.claim)
        };
        assert_eq!(
            (new.session_type, new.pr_number, new.issue_number),
            (SessionType::Preview, Some(8), Some(8))
        );
        assert_eq!(
            new.uat_url,
            Some(format!("https://{}.uat.example.com", new.session_id))
        );
        assert!(s.pr.is_none() && s.if_taken.is_some());
        assert_eq!(s.message, "Preview started");
        new.session_id.to_string()
    };
    assert_eq!(id_of(&snap()), "tt-feature-x");
    // This PR's own ended preview keeps the readable id.
    let own = Snapshot {
        id_holder: Some(preview(Status::Stopped)),
        ..snap()
    };
    assert_eq!(id_of(&own), "tt-feature-x");
    // Another PR's branch folds to the same id: the hashed one is used.
    let mut other = preview(Status::Running);
    other.pr_number = Some(9);
    let taken = Snapshot {
        id_holder: Some(other),
        ..snap()
    };
    let hashed = id_of(&taken);
    assert_eq!(hashed, naming::preview_session_id_hashed("feature/x"));
    assert_ne!(hashed, "tt-feature-x");
}

#[test]
fn a_running_preview_is_said_to_run_with_its_url() {
    let snap = Snapshot {
        active: Some(preview(Status::Running)),
        ..snap()
    };
    let (posts, outcome) = answer_of(plan_of(
        start_preview(pull(Some("octo/app"), "feature/x")),
        &snap,
    ));
    assert!(matches!(
        outcome,
        Outcome::Exists {
            status: Some(Status::Running),
            ..
        }
    ));
    assert_eq!(posts.len(), 1);
    assert!(posts[0].body.contains("UAT Already Running"));
    assert!(
        posts[0]
            .body
            .contains("https://tt-feature-x.uat.example.com")
    );
}

#[test]
fn a_stopping_preview_is_told_once_with_the_preview_label() {
    let snap = Snapshot {
        active: Some(preview(Status::Stopping)),
        ..snap()
    };
    let (posts, outcome) = answer_of(plan_of(
        start_preview(pull(Some("octo/app"), "feature/x")),
        &snap,
    ));
    assert!(matches!(outcome, Outcome::StillStopping { .. }));
    assert_eq!(posts.len(), 1, "not also 'already running'");
    assert!(posts[0].body.contains("re-add the `uat` label"));
}

// JIRA.

#[test]
fn jira_without_settings_or_mapping_is_answered_without_a_session() {
    let plan = with_ctx(false, |ctx| plan(start_jira("PROJ"), &snap(), ctx));
    assert_eq!(answer_of(plan), done("JIRA is not configured"));
    assert_eq!(
        answer_of(plan_of(start_jira("OTHER"), &snap())),
        done("No repo mapping for project OTHER")
    );
}

#[test]
fn a_mapped_jira_issue_starts_a_session_through_the_default_installation() {
    let s = start(plan_of(start_jira("proj"), &snap()));
    let Claim::Create(new) = &s.claim else {
        panic!("{:?}", s.claim)
    };
    assert_eq!(new.source, Source::Jira);
    assert_eq!(
        new.jira_issue_key.as_ref().map(JiraKey::as_str),
        Some("PROJ-3")
    );
    assert_eq!(new.installation_id, Some(INSTALLATION));
    assert_eq!(new.repo_full_name, repo());
    assert!(
        new.initial_prompt
            .as_deref()
            .unwrap()
            .contains("Describe it")
    );
    let pr = s.pr.unwrap();
    assert_eq!(pr.title, "[Claude] PROJ-3: Sum");
    assert!(
        pr.body
            .contains("https://example.atlassian.net/browse/PROJ-3")
    );
    assert_eq!(
        pr.commit_message,
        "chore: start Claude agent session for PROJ-3"
    );
    assert_eq!(s.jira.as_ref().map(JiraKey::as_str), Some("PROJ-3"));
}

#[test]
fn a_stopping_jira_session_is_told_to_be_labelled_in_jira() {
    let mut stopping = agent(Status::Stopping);
    stopping.source = Source::Jira;
    let snap = Snapshot {
        active: Some(stopping),
        ..snap()
    };
    let (posts, _) = answer_of(plan_of(start_jira("PROJ"), &snap));
    assert!(posts[0].body.contains("label the JIRA issue again"));
}

// Stopping.

#[test]
fn closing_an_issue_stops_its_session_and_comments_on_its_pr() {
    let intent = |reason| Intent::StopIssue {
        repo: repo(),
        issue_number: 7,
        reason,
    };
    let reason = StopReason::IssueClosed { completed: true };
    assert_eq!(
        answer_of(plan_of(intent(reason.clone()), &snap())),
        done("no session for this issue")
    );
    let running = Snapshot {
        active: Some(agent(Status::Running)),
        ..snap()
    };
    let stop = stop_of(plan_of(intent(reason.clone()), &running));
    assert_eq!(stop.targets.len(), 1);
    assert_eq!((stop.reason, stop.then), (reason.clone(), None));
    assert_eq!(
        stop.targets[0].post, None,
        "an agent's own report says it stopped"
    );
    // Stopping already: someone else is on it.
    let stopping = Snapshot {
        active: Some(agent(Status::Stopping)),
        ..snap()
    };
    assert_eq!(
        answer_of(plan_of(intent(reason), &stopping)),
        done("no active session to stop")
    );
}

#[test]
fn closing_a_pr_stops_every_live_session_quietly_and_a_removed_label_only_the_preview_with_a_comment()
 {
    let on_pr = Snapshot {
        on_pr: vec![
            agent(Status::Running),
            preview(Status::Idle),
            session("old", SessionType::Agent, Status::Stopped),
        ],
        ..snap()
    };
    let closed = stop_of(plan_of(
        stop_pr(None, StopReason::PrClosed { merged: true }),
        &on_pr,
    ));
    let ids: Vec<&str> = closed
        .targets
        .iter()
        .map(|t| t.session.session_id.as_str())
        .collect();
    assert_eq!(ids, ["agent1", "tt-feature-x"]);
    assert!(
        closed.targets.iter().all(|t| t.post.is_none()),
        "a closed PR is not commented on"
    );

    let unlabelled = stop_of(plan_of(
        stop_pr(
            Some(SessionType::Preview),
            StopReason::LabelRemoved("uat".into()),
        ),
        &on_pr,
    ));
    assert_eq!(unlabelled.targets.len(), 1);
    let post = unlabelled.targets[0].post.as_ref().expect("said on the PR");
    assert_eq!(post.number, 8);
    assert!(
        post.body.contains("UAT Environment Stopped")
            && post.body.contains("`uat` label was removed")
    );
    assert_eq!(
        answer_of(plan_of(
            stop_pr(None, StopReason::PrClosed { merged: false }),
            &snap()
        )),
        done("no active session to stop")
    );
}

#[test]
fn the_stop_command_stops_the_agent_only_and_acknowledges_once() {
    let on_pr = Snapshot {
        on_pr: vec![preview(Status::Running), agent(Status::Running)],
        ..snap()
    };
    let stop = stop_of(plan_of(stop_command(), &on_pr));
    assert_eq!(stop.targets.len(), 1);
    assert_eq!(stop.targets[0].session.session_type, SessionType::Agent);
    assert_eq!(
        stop.reason,
        StopReason::Command {
            by: Login::parse("alice").unwrap()
        }
    );
    let then = stop.then.expect("acknowledged");
    assert_eq!((then.number, then.installation), (8, Some(INSTALLATION)));
    assert!(then.body.contains("@alice's request"));
}

// New commits and comments.

#[test]
fn new_commits_refresh_a_running_preview_only() {
    let intent = || Intent::RefreshPreview {
        repo: repo(),
        pr_number: 8,
        head_sha: "def".into(),
    };
    for status in [Status::Running, Status::Idle] {
        let snap = Snapshot {
            on_pr: vec![agent(Status::Running), preview(status)],
            ..snap()
        };
        match plan_of(intent(), &snap) {
            Plan::Refresh { session, head_sha } => {
                assert_eq!(
                    (session.session_id.as_str(), head_sha.as_str()),
                    ("tt-feature-x", "def")
                );
            }
            other => panic!("{other:?}"),
        }
    }
    let starting = Snapshot {
        on_pr: vec![preview(Status::Provisioning)],
        ..snap()
    };
    assert_eq!(
        answer_of(plan_of(intent(), &starting)),
        done("no running preview for this PR")
    );
}

#[test]
fn a_comment_goes_to_a_ready_agent_waits_for_a_starting_one_and_relaunches_an_ended_one() {
    assert_eq!(
        answer_of(plan_of(prompt_intent(), &snap())),
        done("no agent session on this PR")
    );

    let mut ready = agent(Status::Running);
    ready.container_ip = Some("10.0.0.5".into());
    ready.control_port = Some(8080);
    let snap_with = |s: Session| Snapshot {
        on_pr: vec![s],
        ..snap()
    };
    match plan_of(prompt_intent(), &snap_with(ready)) {
        Plan::Forward(f) => {
            assert_eq!(
                f.body,
                json!({ "prompt": "@claude add tests", "author": "alice", "comment_id": 99 })
            );
            assert_eq!((f.pr_number, f.installation), (8, Some(INSTALLATION)));
        }
        other => panic!("{other:?}"),
    }

    let (posts, outcome) = answer_of(plan_of(
        prompt_intent(),
        &snap_with(agent(Status::Provisioning)),
    ));
    assert_eq!(
        outcome,
        Outcome::NotReady(SessionId::parse("agent1").unwrap())
    );
    assert!(
        posts[0]
            .body
            .contains("is provisioning and cannot take comments yet")
    );

    let s = start(plan_of(prompt_intent(), &snap_with(agent(Status::Stopped))));
    assert_eq!(
        (s.trigger, s.message, s.pr),
        (Trigger::Comment, "Session relaunched", None)
    );
    let Claim::Relaunch { patch, .. } = &s.claim else {
        panic!("{:?}", s.claim)
    };
    assert_eq!(
        patch.initial_prompt.as_deref(),
        Some("Follow-up from @alice on the PR:\n\n@claude add tests")
    );
}

fn diff_comment(id: u64, path: &str, line: u64, author: Actor) -> ReviewComment {
    ReviewComment {
        id,
        review_id: Some(500),
        body: format!("@claude fix {path}"),
        author,
        path: path.into(),
        line: Some(line),
        start_line: None,
        diff_hunk: format!("@@ -{line} +{line} @@\n-old {path}\n+new {path}"),
        in_reply_to: None,
    }
}

fn review_intent() -> Intent {
    Intent::Review {
        repo: repo(),
        pr_number: 8,
        author: actor("rev"),
        review: Some(Review {
            id: 500,
            state: "changes_requested".into(),
            body: "Please fix both.".into(),
            author: actor("rev"),
        }),
        comments: Vec::new(),
        installation_id: Some(INSTALLATION),
    }
}

fn ready_agent() -> Session {
    let mut ready = agent(Status::Running);
    ready.container_ip = Some("10.0.0.5".into());
    ready.control_port = Some(8080);
    ready
}

#[test]
fn a_review_reads_its_comments_only_for_a_pr_with_an_agent_and_needs_a_writer() {
    let n = with_ctx(false, |ctx| needs(&review_intent(), ctx));
    assert_eq!(n.on_pr, Some((repo(), 8)));
    assert_eq!(
        n.review,
        Some(ReviewQuery {
            repo: repo(),
            pr_number: 8,
            review_id: 500,
            installation: Some(INSTALLATION),
        })
    );
    assert_eq!(
        n.permission.map(|q| q.user),
        Some(Login::parse("rev").unwrap())
    );
    assert!(!reads_review(&[]));
    assert!(!reads_review(&[preview(Status::Running)]));
    assert!(reads_review(&[
        preview(Status::Running),
        agent(Status::Stopped)
    ]));
    // A reader is refused before anything is forwarded.
    let reader = Snapshot {
        permission: Some(Permission::Read),
        on_pr: vec![ready_agent()],
        ..snap()
    };
    assert!(matches!(
        answer_of(plan_of(review_intent(), &reader)).1,
        Outcome::Refused(why) if why.contains("rev")
    ));
}

#[test]
fn a_review_is_one_follow_up_carrying_every_comment_with_its_place_and_its_threads() {
    let snap = Snapshot {
        on_pr: vec![ready_agent()],
        review_comments: vec![
            diff_comment(501, "src/a.js", 3, actor("rev")),
            diff_comment(502, "docs/b.md", 9, actor("rev")),
            // The system's own reply and a bot's comment are not the reviewer's words.
            ReviewComment {
                body: format!("{}\nAddressed", texts::MARKER),
                in_reply_to: Some(501),
                ..diff_comment(503, "src/a.js", 3, actor("rev"))
            },
            diff_comment(
                504,
                "x",
                1,
                Actor {
                    login: Login::parse("ci[bot]").unwrap(),
                    is_bot: true,
                },
            ),
        ],
        ..snap()
    };
    let Plan::Forward(f) = plan_of(review_intent(), &snap) else {
        panic!("not forwarded")
    };
    let prompt = f.body["prompt"].as_str().unwrap();
    assert!(
        prompt.starts_with("Review from @rev on the PR (changes requested):"),
        "{prompt}"
    );
    for want in [
        "Please fix both.",
        "1. `src/a.js`, line 3:",
        "@@ -3 +3 @@\n-old src/a.js\n+new src/a.js",
        "2. `docs/b.md`, line 9:",
        "@@ -9 +9 @@",
    ] {
        assert!(prompt.contains(want), "{want:?} not in {prompt}");
    }
    assert!(
        !prompt.contains("Addressed") && !prompt.contains("`x`"),
        "{prompt}"
    );
    assert_eq!(f.body["author"], "rev");
    assert_eq!(f.body["comment_id"], Value::Null);
    assert_eq!(
        f.body["review_threads"],
        json!([{ "comment_id": 501, "path": "src/a.js" }, { "comment_id": 502, "path": "docs/b.md" }])
    );
    assert_eq!(f.body["review_comments"], json!([501, 502]));
    assert_eq!(f.comment_id, None);

    // A single comment on the diff, a reply in a thread: answered in the thread it belongs to.
    let reply = ReviewComment {
        in_reply_to: Some(501),
        ..diff_comment(505, "src/a.js", 3, actor("rev"))
    };
    let single = Intent::Review {
        repo: repo(),
        pr_number: 8,
        author: actor("rev"),
        review: None,
        comments: vec![reply],
        installation_id: Some(INSTALLATION),
    };
    let Plan::Forward(f) = plan_of(single, &snap) else {
        panic!("not forwarded")
    };
    assert!(
        f.body["prompt"]
            .as_str()
            .unwrap()
            .starts_with("Review from @rev on the PR:\n")
    );
    assert_eq!(
        f.body["review_threads"],
        json!([{ "comment_id": 501, "path": "src/a.js" }])
    );
    assert_eq!(f.body["review_comments"], json!([505]));
}

#[test]
fn a_review_of_an_ended_session_relaunches_it_with_the_review_as_prompt() {
    let snap = Snapshot {
        on_pr: vec![agent(Status::Stopped)],
        review_comments: vec![diff_comment(501, "src/a.js", 3, actor("rev"))],
        ..snap()
    };
    let s = start(plan_of(review_intent(), &snap));
    let Claim::Relaunch { patch, .. } = &s.claim else {
        panic!("{:?}", s.claim)
    };
    let p = patch.initial_prompt.as_deref().unwrap();
    assert!(
        p.starts_with("Review from @rev") && p.contains("`src/a.js`, line 3"),
        "{p}"
    );
    // The relaunched run answers in the review's thread.
    let threads: Value = serde_json::from_str(patch.prompt_threads.as_deref().unwrap()).unwrap();
    assert_eq!(threads, json!([{ "comment_id": 501, "path": "src/a.js" }]));
    assert_eq!(
        answer_of(plan_of(
            review_intent(),
            &Snapshot {
                on_pr: vec![],
                ..snap
            }
        )),
        done("no agent session on this PR")
    );
}

fn checks_intent(conclusion: &str) -> Intent {
    Intent::Checks {
        repo: repo(),
        pr_number: 8,
        suite: CheckSuite {
            id: 600,
            head_sha: "0123456789abcdef".into(),
            conclusion: conclusion.into(),
            pull_requests: vec![8],
            app: Some("github-actions".into()),
        },
        installation_id: Some(INSTALLATION),
    }
}

#[test]
fn failed_checks_read_their_runs_and_go_to_the_running_agent_with_their_logs() {
    let n = with_ctx(false, |ctx| needs(&checks_intent("failure"), ctx));
    assert_eq!(
        n.permission, None,
        "GitHub reports checks: nobody's permission is asked"
    );
    assert_eq!(n.on_pr, Some((repo(), 8)));
    assert_eq!(
        n.checks,
        Some(ChecksQuery {
            repo: repo(),
            suite_id: 600,
            head_sha: "0123456789abcdef".into(),
            failed: true,
            installation: Some(INSTALLATION),
        })
    );
    // A passing suite asks whether every suite on the commit passed.
    let passing = with_ctx(false, |ctx| needs(&checks_intent("success"), ctx));
    assert_eq!(passing.checks.map(|q| q.failed), Some(false));
    assert!(!forwards(&[agent(Status::Stopped)]) && forwards(&[ready_agent()]));

    let snap = Snapshot {
        on_pr: vec![ready_agent()],
        failed_checks: vec![
            CheckRun {
                id: 601,
                name: "test".into(),
                conclusion: "failure".into(),
                app: Some("github-actions".into()),
                log_tail: Some("FAIL src/app.test.js\nExpected 2, got 3".into()),
                ..CheckRun::default()
            },
            CheckRun {
                id: 602,
                name: "lint".into(),
                conclusion: "failure".into(),
                summary: Some("3 problems".into()),
                ..CheckRun::default()
            },
        ],
        ..snap()
    };
    let Plan::Forward(f) = plan_of(checks_intent("failure"), &snap) else {
        panic!("not forwarded")
    };
    assert_eq!(f.route, CHECKS_ROUTE);
    assert_eq!(f.body["head_sha"], "0123456789abcdef");
    assert_eq!(f.body["passed"], false);
    assert_eq!(f.body["checks"], json!(["test", "lint"]));
    let prompt = f.body["prompt"].as_str().unwrap();
    for want in [
        "`0123456` failed (2 failing)",
        "### test (failure)",
        "FAIL src/app.test.js\nExpected 2, got 3",
        "### lint (failure)",
        "3 problems",
    ] {
        assert!(prompt.contains(want), "{want:?} not in {prompt}");
    }
    // Nobody is told when the agent cannot be reached: GitHub asked, not a person.
    let (post, outcome) = after_forward(
        &f,
        &Err(ControlError::Unreachable("timed out".into())),
        &rules(),
    );
    assert_eq!(post, None);
    assert!(outcome.is_failure());

    let green = Snapshot {
        all_checks_green: Some(true),
        ..snap.clone()
    };
    let Plan::Forward(passed) = plan_of(checks_intent("success"), &green) else {
        panic!("not forwarded")
    };
    assert_eq!(passed.body["passed"], true);
    assert!(passed.body.get("prompt").is_none());
    // One workflow passed while another failed or still runs on the commit: not "the checks
    // pass".
    let mixed = Snapshot {
        all_checks_green: Some(false),
        ..snap
    };
    assert_eq!(
        answer_of(plan_of(checks_intent("success"), &mixed)),
        done("other checks on the commit are still running or failed")
    );
}

#[test]
fn checks_of_a_pr_without_a_running_agent_start_nothing() {
    for on_pr in [
        vec![],
        vec![agent(Status::Stopped)],
        vec![agent(Status::Provisioning)],
    ] {
        let (posts, outcome) = answer_of(plan_of(
            checks_intent("failure"),
            &Snapshot { on_pr, ..snap() },
        ));
        assert!(posts.is_empty());
        assert!(
            matches!(&outcome, Outcome::Done(why) if why.contains("only while it runs")),
            "{outcome:?}"
        );
    }
}

#[test]
fn a_diff_comment_whose_review_is_for_the_agent_is_left_to_that_review() {
    let single = Intent::Review {
        repo: repo(),
        pr_number: 8,
        author: actor("rev"),
        review: None,
        comments: vec![diff_comment(505, "src/a.js", 3, actor("rev"))],
        installation_id: Some(INSTALLATION),
    };
    let n = with_ctx(false, |ctx| needs(&single, ctx));
    assert_eq!(n.comment_review.map(|q| q.review_id), Some(500));
    let of_review = |state: &str| Snapshot {
        on_pr: vec![ready_agent()],
        comment_review: Some(Review {
            id: 500,
            state: state.into(),
            body: String::new(),
            author: actor("rev"),
        }),
        ..snap()
    };
    let (_, outcome) = answer_of(plan_of(single.clone(), &of_review("changes_requested")));
    assert!(
        matches!(&outcome, Outcome::Done(why) if why.contains("its own event carries it")),
        "{outcome:?}"
    );
    assert!(matches!(
        plan_of(single, &of_review("commented")),
        Plan::Forward(_)
    ));
    // A review with no words and no comments for the agent is nothing.
    let empty = Intent::Review {
        repo: repo(),
        pr_number: 8,
        author: actor("rev"),
        review: Some(Review {
            id: 500,
            state: "changes_requested".into(),
            body: "  ".into(),
            author: actor("rev"),
        }),
        comments: Vec::new(),
        installation_id: Some(INSTALLATION),
    };
    assert_eq!(
        answer_of(plan_of(
            empty,
            &Snapshot {
                on_pr: vec![ready_agent()],
                ..snap()
            }
        )),
        done("the review holds nothing for the agent")
    );
}

fn command_intent(command: Command) -> Intent {
    Intent::Command {
        repo: repo(),
        pr_number: 8,
        actor: actor("alice"),
        comment_id: 77,
        command,
        installation_id: Some(INSTALLATION),
    }
}

#[test]
fn status_is_answered_from_the_record_and_retry_and_budget_go_to_the_running_agent() {
    let mut running = ready_agent();
    running.cost_usd = Some(1.25);
    running.turns = Some(9);
    let on = |s: Session| Snapshot {
        on_pr: vec![s],
        ..snap()
    };
    let (posts, _) = answer_of(plan_of(
        command_intent(Command::Status),
        &on(running.clone()),
    ));
    let said = &posts[0].body;
    assert!(
        said.contains("`agent1`") && said.contains("running"),
        "{said}"
    );
    assert!(
        said.contains("9 turns") && said.contains("$1.25 spent"),
        "{said}"
    );
    assert!(said.contains("Preview: https://"), "{said}");
    let (posts, _) = answer_of(plan_of(command_intent(Command::Status), &snap()));
    assert!(
        posts[0].body.contains("no agent session"),
        "{}",
        posts[0].body
    );

    for (command, route) in [
        (Command::Retry, RETRY_ROUTE),
        (Command::Budget { add_usd: 5.0 }, BUDGET_ROUTE),
    ] {
        let Plan::Forward(f) = plan_of(command_intent(command.clone()), &on(running.clone()))
        else {
            panic!("{command:?} not forwarded")
        };
        assert_eq!((f.route, f.comment_id), (route, Some(77)));
        assert_eq!(f.body["author"], "alice");
        if route == BUDGET_ROUTE {
            assert_eq!(f.body["add_usd"], 5.0);
        }
        // The agent's refusal is said on the PR with its reason.
        let (post, outcome) = after_forward(
            &f,
            &Err(ControlError::Status {
                status: 409,
                body: r#"{"error":"$30.00 would be over the cap of $25.00"}"#.into(),
            }),
            &rules(),
        );
        assert!(post.unwrap().body.contains("over the cap of $25.00"));
        assert!(matches!(outcome, Outcome::Refused(_)));
        // An ended session is not commanded: the PR is told how to start it, or that a budget
        // is raised only in a running session.
        let (posts, outcome) = answer_of(plan_of(
            command_intent(command),
            &on(agent(Status::Stopped)),
        ));
        let want = if route == RETRY_ROUTE {
            "mention @claude"
        } else {
            "not running"
        };
        assert!(posts[0].body.contains(want), "{}", posts[0].body);
        assert!(matches!(outcome, Outcome::Refused(_)));
    }

    let (posts, outcome) = answer_of(plan_of(
        command_intent(Command::Unknown("dance".into())),
        &on(running.clone()),
    ));
    assert!(
        posts[0].body.contains("`/claude dance` is not a command"),
        "{}",
        posts[0].body
    );
    assert!(
        posts[0].body.contains("`/claude budget +N`"),
        "{}",
        posts[0].body
    );
    assert!(matches!(outcome, Outcome::Refused(_)));

    // A reader's command is refused before anything is said or sent.
    let reader = Snapshot {
        permission: Some(Permission::Read),
        ..on(running)
    };
    assert!(matches!(
        answer_of(plan_of(command_intent(Command::Budget { add_usd: 1.0 }), &reader)),
        (posts, Outcome::Refused(_)) if posts.is_empty()
    ));
}

#[test]
fn approve_goes_to_a_planning_agent_relaunches_an_ended_plan_and_is_refused_otherwise() {
    let on = |s: Session| Snapshot {
        on_pr: vec![s],
        ..snap()
    };
    // No plan waiting: said on the PR, nothing sent.
    let (posts, outcome) = answer_of(plan_of(
        command_intent(Command::Approve),
        &on(ready_agent()),
    ));
    assert!(
        posts[0].body.contains("no plan waiting"),
        "{}",
        posts[0].body
    );
    assert!(matches!(outcome, Outcome::Refused(_)));

    let mut planning = ready_agent();
    planning.plan_mode = true;
    planning.runs = Some(1);
    let Plan::Forward(f) = plan_of(command_intent(Command::Approve), &on(planning.clone())) else {
        panic!("approve not forwarded")
    };
    assert_eq!((f.route, f.comment_id), (APPROVE_ROUTE, Some(77)));
    assert_eq!(f.body["author"], "alice");

    // The plan's session ended: it starts again to implement, planning no more.
    let mut ended = agent(Status::Stopped);
    ended.plan_mode = true;
    ended.runs = Some(1);
    let Plan::Start(start) = plan_of(command_intent(Command::Approve), &on(ended)) else {
        panic!("an ended plan is not relaunched")
    };
    let Claim::Relaunch { patch, .. } = &start.claim else {
        panic!("{:?}", start.claim)
    };
    assert_eq!(patch.plan_mode, Some(false));
    assert!(
        patch
            .initial_prompt
            .as_deref()
            .is_some_and(|p| p.contains("@alice approved your plan")),
        "{patch:?}"
    );

    // A plan session that never ran has no plan to approve, ended or not.
    let mut unplanned = agent(Status::Stopped);
    unplanned.plan_mode = true;
    let (posts, outcome) = answer_of(plan_of(command_intent(Command::Approve), &on(unplanned)));
    assert!(
        posts[0].body.contains("no plan waiting"),
        "{}",
        posts[0].body
    );
    assert!(matches!(outcome, Outcome::Refused(_)));
    // The agent's refusal (a second approval, a plan posted meanwhile) is said with its reason.
    let (post, outcome) = after_forward(
        &f,
        &Err(ControlError::Status {
            status: 409,
            body: r#"{"error":"an approval is queued already"}"#.into(),
        }),
        &rules(),
    );
    assert!(post.unwrap().body.contains("an approval is queued already"));
    assert!(matches!(outcome, Outcome::Refused(_)));

    // A reader's approval is refused before anything is said or sent.
    let reader = Snapshot {
        permission: Some(Permission::Read),
        ..on(planning)
    };
    assert!(matches!(
        answer_of(plan_of(command_intent(Command::Approve), &reader)),
        (posts, Outcome::Refused(_)) if posts.is_empty()
    ));
}

#[test]
fn the_plan_label_starts_a_planning_session_and_another_label_relaunches_it_implementing() {
    let mut intent = start_agent(ImageChannel::Latest);
    if let Intent::StartAgent { plan, .. } = &mut intent {
        *plan = true;
    }
    let Plan::Start(start) = plan_of(intent.clone(), &snap()) else {
        panic!("not started")
    };
    let Claim::Create(s) = &start.claim else {
        panic!("{:?}", start.claim)
    };
    assert!(s.plan_mode);
    // Relabelled after it ended: the label given now decides.
    let ended = Snapshot {
        active: Some(agent(Status::Stopped)),
        ..snap()
    };
    for (plan, want) in [(true, Some(true)), (false, Some(false))] {
        if let Intent::StartAgent { plan: p, .. } = &mut intent {
            *p = plan;
        }
        let Plan::Start(start) = plan_of(intent.clone(), &ended) else {
            panic!("not relaunched")
        };
        let Claim::Relaunch { patch, .. } = &start.claim else {
            panic!("{:?}", start.claim)
        };
        assert_eq!(patch.plan_mode, want);
    }
}

// Installations.

#[test]
fn labels_are_made_in_four_repositories_a_delivery_and_the_rest_named() {
    let repos: Vec<RepoName> = (0..7)
        .map(|i| RepoName::parse(&format!("octo/r{i}")).unwrap())
        .collect();
    match plan_of(
        Intent::EnsureLabels {
            repos: repos.clone(),
            installation_id: INSTALLATION,
        },
        &snap(),
    ) {
        Plan::Labels {
            installation,
            now,
            later,
        } => {
            assert_eq!(installation, INSTALLATION);
            assert_eq!(
                (now.as_slice(), later.as_slice()),
                (&repos[..4], &repos[4..])
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        answer_of(plan_of(Intent::Ignore("pong".into()), &snap())),
        done("pong")
    );
}

// What each failure comes to.

fn id(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

#[test]
fn a_lost_claim_is_an_existing_session_and_a_comment_relaunch_keeps_what_it_read() {
    let by_label = start(plan_of(start_agent(ImageChannel::Latest), &snap()));
    for conflict in [
        Conflict::ActiveExists(id("other")),
        Conflict::IdTaken(id("other")),
        Conflict::Moved(id("other")),
    ] {
        assert_eq!(
            claim_lost(&by_label, conflict),
            Some(Outcome::Exists {
                id: id("other"),
                status: None
            })
        );
    }
    let ended = Snapshot {
        on_pr: vec![agent(Status::Stopped)],
        ..snap()
    };
    let by_comment = start(plan_of(prompt_intent(), &ended));
    assert_eq!(
        claim_lost(&by_comment, Conflict::ActiveExists(id("other"))),
        Some(Outcome::Exists {
            id: id("other"),
            status: None
        })
    );
    assert_eq!(
        claim_lost(&by_comment, Conflict::Moved(id("agent1"))),
        Some(Outcome::Exists {
            id: id("agent1"),
            status: Some(Status::Stopped)
        })
    );
    assert_eq!(
        claim_lost(&by_comment, Conflict::IdTaken(id("agent1"))),
        None,
        "a relaunch cannot lose its id: a failure"
    );
}

#[test]
fn each_provisioning_step_fails_the_session_with_its_reason_and_one_comment_where_it_belongs() {
    let rules = rules();
    let mut fresh = agent(Status::Provisioning);
    fresh.pr_number = None;
    let f = start_failed(&fresh, Provisioning::BranchAndPr, "422 protected", &rules);
    assert_eq!(f.reason, "cannot create the branch and PR: 422 protected");
    assert_eq!(
        f.post.as_ref().map(|p| p.number),
        Some(7),
        "on the issue: there is no PR"
    );
    let f = start_failed(
        &fresh,
        Provisioning::RecordPr { pr_number: 12 },
        "throttled",
        &rules,
    );
    assert_eq!(f.reason, "cannot record the PR: throttled");
    assert_eq!(f.post.as_ref().map(|p| p.number), Some(12));
    let with_pr = agent(Status::Provisioning);
    let f = start_failed(&with_pr, Provisioning::Launch, "no task definition", &rules);
    assert_eq!(
        f.reason,
        "the container could not be launched: no task definition"
    );
    let post = f.post.expect("said");
    assert_eq!(post.number, 8);
    assert!(
        post.body.contains("Agent failed to start") && post.body.contains("no task definition")
    );
    assert!(
        post.body
            .contains("re-add the `claude-dev` label, or mention @claude")
    );
    let f = start_failed(&fresh, Provisioning::RecordTask, "throttled", &rules);
    assert_eq!(
        (f.reason.as_str(), f.post),
        ("cannot record the task: throttled", None)
    );

    let f = start_failed(
        &preview(Status::Provisioning),
        Provisioning::Launch,
        "capacity",
        &rules,
    );
    let body = f.post.unwrap().body;
    assert!(body.contains("UAT Failed to Start") && body.contains("re-add the `uat` label"));
}

#[test]
fn a_stop_is_left_to_the_agent_unless_it_has_no_address_or_a_refused_one() {
    assert!(stop_delegated(&Ok(())));
    assert!(stop_delegated(&Err(ControlError::Unreachable(
        "timed out".into()
    ))));
    assert!(stop_delegated(&Err(ControlError::Status {
        status: 500,
        body: String::new()
    })));
    assert!(!stop_delegated(&Err(ControlError::NoAddress)));
    assert!(!stop_delegated(&Err(ControlError::Refused(
        Refusal::NotAnIp("x".into())
    ))));
}

#[test]
fn an_undelivered_comment_is_answered_on_the_pr_and_only_a_passing_failure_asks_for_a_retry() {
    let mut ready = agent(Status::Running);
    ready.container_ip = Some("10.0.0.5".into());
    ready.control_port = Some(8080);
    let Plan::Forward(f) = plan_of(
        prompt_intent(),
        &Snapshot {
            on_pr: vec![ready],
            ..snap()
        },
    ) else {
        panic!("not forwarded")
    };
    let rules = rules();
    assert_eq!(
        after_forward(&f, &Ok(()), &rules),
        (None, Outcome::Forwarded(id("agent1")))
    );
    let (post, outcome) = after_forward(
        &f,
        &Err(ControlError::Refused(Refusal::NotAnIp("x".into()))),
        &rules,
    );
    assert_eq!(outcome, Outcome::AgentUnreachable(id("agent1")));
    assert!(
        post.unwrap()
            .body
            .contains("`/claude stop` ends the session")
    );
    let (post, outcome) = after_forward(
        &f,
        &Err(ControlError::Unreachable("timed out".into())),
        &rules,
    );
    assert_eq!(
        outcome,
        Outcome::ForwardFailed(
            "agent unreachable: the agent could not be reached: timed out".into()
        )
    );
    assert!(
        outcome.is_failure(),
        "the delivery is forgotten for a redelivery"
    );
    assert!(post.unwrap().body.contains("Please try again in a minute"));
}

#[test]
fn a_preview_that_cannot_be_told_of_new_commits_is_a_failure() {
    let p = preview(Status::Running);
    assert_eq!(
        after_refresh(&p, &Ok(())),
        Outcome::Refreshing(id("tt-feature-x"))
    );
    let failed = after_refresh(&p, &Err(ControlError::NoAddress));
    assert_eq!(
        failed,
        Outcome::RefreshFailed {
            id: id("tt-feature-x"),
            error: "the agent has not reported its address yet".into()
        }
    );
    assert!(failed.is_failure());
}

#[test]
fn github_refusals_are_told_apart_from_outages() {
    let api = |status| GitHubError::Api {
        route: "POST /repos/octo/app/labels".into(),
        status,
        message: "no".into(),
    };
    for final_status in [403, 404, 422] {
        assert!(label_refusal(&api(final_status)), "{final_status}");
    }
    for passing in [429, 500, 502] {
        assert!(!label_refusal(&api(passing)), "{passing}");
    }
    for not_installed in [401, 403, 404] {
        assert!(installation_refused(&api(not_installed)));
    }
    assert!(!installation_refused(&api(503)));
}

#[test]
fn only_work_not_done_forgets_the_delivery() {
    let failed = [
        Outcome::StartFailed("x".into()),
        Outcome::ForwardFailed("x".into()),
        Outcome::RefreshFailed {
            id: id("a1"),
            error: "x".into(),
        },
        Outcome::Failed {
            error: "x".into(),
            transient: false,
        },
    ];
    assert!(failed.iter().all(Outcome::is_failure));
    let handled = [
        Outcome::Done("x".into()),
        Outcome::Refused("x".into()),
        Outcome::NotInstalled {
            installation: Some(1),
            error: "x".into(),
        },
        Outcome::Exists {
            id: id("a1"),
            status: None,
        },
        Outcome::AgentUnreachable(id("a1")),
        Outcome::NotReady(id("a1")),
        Outcome::Stopping(Vec::new()),
    ];
    assert!(!handled.iter().any(Outcome::is_failure));
}

#[test]
fn the_ceiling_counts_each_installations_running_sessions_and_gives_turns_oldest_first() {
    let at = |id: &str, status: Status, installation: u64, updated: i64| {
        let mut s = session(id, SessionType::Agent, status);
        s.installation_id = Some(installation);
        s.updated_at = updated;
        s
    };
    let id = |s: &str| SessionId::parse(s).unwrap();
    let running = at("run1", Status::Running, 1, 1);
    // Under the ceiling: no wait; at it: first in line; others waiting: behind them.
    assert_eq!(
        place_in_line(std::slice::from_ref(&running), &id("new1"), 2),
        None
    );
    assert_eq!(
        place_in_line(std::slice::from_ref(&running), &id("new1"), 1),
        Some(1)
    );
    let waiting = at("wait1", Status::Queued, 1, 5);
    assert_eq!(
        place_in_line(&[running.clone(), waiting.clone()], &id("new1"), 2),
        Some(2),
        "a free place goes to the one waiting first"
    );
    // The session itself is not counted (a relaunch reads its own ended record).
    assert_eq!(
        place_in_line(std::slice::from_ref(&running), &id("run1"), 1),
        None
    );
    // A stopping session leaves its place.
    let stopping = at("stop1", Status::Stopping, 1, 2);
    assert_eq!(
        place_in_line(std::slice::from_ref(&stopping), &id("new1"), 1),
        None
    );

    // Turns: per installation, as many as the places left, oldest first.
    let active = vec![
        running,
        stopping,
        at("wait2", Status::Queued, 1, 9),
        waiting,
        at("other", Status::Running, 2, 1),
        at("owait1", Status::Queued, 2, 3),
        at("owait2", Status::Queued, 2, 4),
        at("ended", Status::Stopped, 1, 0),
    ];
    let names = |max| {
        turns(&active, max)
            .into_iter()
            .map(|s| s.session_id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(1), Vec::<String>::new());
    assert_eq!(names(2), ["wait1", "owait1"]);
    assert_eq!(names(3), ["wait1", "wait2", "owait1", "owait2"]);
}
