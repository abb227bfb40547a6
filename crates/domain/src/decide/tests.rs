//! Every branch of the decisions, without I/O.

use super::*;
use crate::SessionId;
use crate::ids::BranchName;
use crate::session::Source;

fn repo() -> RepoName {
    RepoName::parse("octo/app").unwrap()
}

fn human(login: &str) -> Actor {
    Actor {
        login: Login::parse(login).unwrap(),
        is_bot: false,
    }
}

fn bot() -> Actor {
    Actor {
        login: Login::parse("ci[bot]").unwrap(),
        is_bot: true,
    }
}

fn issue(is_pr: bool) -> Issue {
    Issue {
        number: 7,
        title: "Add login".into(),
        body: "b".into(),
        is_pull_request: is_pr,
        not_planned: false,
    }
}

fn pr(merged: bool) -> PullRequest {
    PullRequest {
        number: 8,
        title: "t".into(),
        body: String::new(),
        head_ref: "feature/x".into(),
        head_repo: Some("octo/app".into()),
        head_sha: "abc".into(),
        merged,
    }
}

fn issues(action: IssuesAction, sender: Actor) -> GitHubEvent {
    GitHubEvent::Issues {
        action,
        repo: repo(),
        issue: issue(false),
        sender,
        installation_id: Some(1),
    }
}

fn pull(action: PrAction, sender: Actor, merged: bool) -> GitHubEvent {
    GitHubEvent::PullRequest {
        action,
        repo: repo(),
        pr: pr(merged),
        sender,
        installation_id: Some(1),
    }
}

fn comment(body: &str, author: Actor, on_pr: bool) -> GitHubEvent {
    GitHubEvent::CommentCreated {
        repo: repo(),
        issue: issue(on_pr),
        comment: Comment {
            id: 99,
            body: body.into(),
            author,
        },
        installation_id: Some(1),
    }
}

fn decide(ev: GitHubEvent) -> Intent {
    decide_github(ev, &Rules::default())
}

#[test]
fn trigger_labels_start_agents_on_their_channel() {
    for (label, channel, planned) in [
        ("claude-dev", ImageChannel::Latest, false),
        ("Claude-Dev-Staging", ImageChannel::Staging, false),
        ("claude-plan", ImageChannel::Latest, true),
    ] {
        let i = decide(issues(IssuesAction::Labeled(label.into()), human("alice")));
        assert!(
            matches!(i, Intent::StartAgent { channel: c, plan, .. } if c == channel && plan == planned),
            "{label}: {i:?}"
        );
        assert_eq!(i.requires_write().map(Login::as_str), Some("alice"));
    }
    // Removing the plan label stops the session as removing any trigger label does.
    assert!(matches!(
        decide(issues(
            IssuesAction::Unlabeled("claude-plan".into()),
            human("a")
        )),
        Intent::StopIssue { .. }
    ));
}

#[test]
fn other_labels_bots_and_prs_are_ignored() {
    assert!(matches!(
        decide(issues(IssuesAction::Labeled("bug".into()), human("a"))),
        Intent::Ignore(_)
    ));
    assert!(matches!(
        decide(issues(IssuesAction::Labeled("claude-dev".into()), bot())),
        Intent::Ignore(_)
    ));
    let on_pr = GitHubEvent::Issues {
        action: IssuesAction::Labeled("claude-dev".into()),
        repo: repo(),
        issue: issue(true),
        sender: human("a"),
        installation_id: None,
    };
    assert!(matches!(decide(on_pr), Intent::Ignore(_)));
}

#[test]
fn issue_unlabel_and_close_stop_without_permission() {
    let i = decide(issues(
        IssuesAction::Unlabeled("claude-dev".into()),
        human("a"),
    ));
    assert!(matches!(
        &i,
        Intent::StopIssue {
            issue_number: 7,
            reason: StopReason::LabelRemoved(_),
            ..
        }
    ));
    assert_eq!(i.requires_write(), None);
    assert!(matches!(
        decide(issues(IssuesAction::Unlabeled("bug".into()), human("a"))),
        Intent::Ignore(_)
    ));
    let i = decide(issues(IssuesAction::Closed, bot()));
    assert!(matches!(
        i,
        Intent::StopIssue {
            reason: StopReason::IssueClosed { completed: true },
            ..
        }
    ));
    let not_planned = GitHubEvent::Issues {
        action: IssuesAction::Closed,
        repo: repo(),
        issue: Issue {
            not_planned: true,
            ..issue(false)
        },
        sender: human("a"),
        installation_id: None,
    };
    let Intent::StopIssue { reason, .. } = decide(not_planned) else {
        panic!("not a stop")
    };
    assert_eq!(reason.final_status(), Status::Stopped);
    assert_eq!(
        StopReason::IssueClosed { completed: true }.final_status(),
        Status::Completed
    );
}

#[test]
fn preview_labels() {
    let i = decide(pull(
        PrAction::Labeled("uat-staging".into()),
        human("a"),
        false,
    ));
    assert!(matches!(
        i,
        Intent::StartPreview {
            channel: ImageChannel::Staging,
            ..
        }
    ));
    let i = decide(pull(PrAction::Labeled("uat".into()), human("a"), false));
    assert!(matches!(
        i,
        Intent::StartPreview {
            channel: ImageChannel::Latest,
            ..
        }
    ));
    assert!(matches!(
        decide(pull(PrAction::Labeled("uat".into()), bot(), false)),
        Intent::Ignore(_)
    ));
    assert!(matches!(
        decide(pull(PrAction::Labeled("x".into()), human("a"), false)),
        Intent::Ignore(_)
    ));
    let i = decide(pull(PrAction::Unlabeled("uat".into()), human("a"), false));
    assert!(matches!(
        i,
        Intent::StopPr {
            only: Some(SessionType::Preview),
            ..
        }
    ));
}

#[test]
fn closing_a_pr_stops_everything_and_merge_completes() {
    let i = decide(pull(PrAction::Closed, human("a"), true));
    let Intent::StopPr {
        only: None, reason, ..
    } = i
    else {
        panic!("{i:?}")
    };
    assert_eq!(reason.final_status(), Status::Completed);
    let Intent::StopPr { reason, .. } = decide(pull(PrAction::Closed, human("a"), false)) else {
        panic!()
    };
    assert_eq!(reason.final_status(), Status::Stopped);
}

#[test]
fn synchronize_refreshes() {
    let i = decide(pull(PrAction::Synchronize, human("a"), false));
    assert_eq!(
        i,
        Intent::RefreshPreview {
            repo: repo(),
            pr_number: 8,
            head_sha: "abc".into()
        }
    );
}

/// New commits from a fork stop its preview instead of running them unreviewed.
#[test]
fn synchronize_from_a_fork_stops_the_preview() {
    let mut event = pull(PrAction::Synchronize, human("a"), false);
    if let GitHubEvent::PullRequest { pr, .. } = &mut event {
        pr.head_repo = Some("contributor/app".into());
    }
    let i = decide(event);
    let Intent::StopPr {
        pr_number: 8,
        only: Some(SessionType::Preview),
        reason,
        ..
    } = i
    else {
        panic!("{i:?}")
    };
    assert!(reason.describe().contains("contributor/app"));
    assert_eq!(reason.final_status(), Status::Stopped);
}

#[test]
fn comments() {
    assert!(matches!(
        decide(comment("@claude fix it", human("a"), true)),
        Intent::Prompt { pr_number: 7, .. }
    ));
    assert!(matches!(
        decide(comment("@claude fix it", human("a"), false)),
        Intent::Ignore(_)
    ));
    assert!(matches!(
        decide(comment("@claude fix it", bot(), true)),
        Intent::Ignore(_)
    ));
    let own = format!("{MARKER}\n@claude done");
    assert!(matches!(
        decide(comment(&own, human("a"), true)),
        Intent::Ignore(_)
    ));
    assert!(matches!(
        decide(comment("looks good", human("a"), true)),
        Intent::Ignore(_)
    ));
    assert!(matches!(
        decide(comment("  /Claude Stop\nplease", human("a"), true)),
        Intent::StopCommand { .. }
    ));
    let rules = Rules {
        forward_all_comments: true,
        ..Rules::default()
    };
    assert!(matches!(
        decide_github(comment("looks good", human("a"), true), &rules),
        Intent::Prompt { .. }
    ));
    assert!(matches!(
        decide_github(comment("x", bot(), true), &rules),
        Intent::Ignore(_)
    ));
    let i = decide(comment("@claude hi", human("bob"), true));
    assert_eq!(i.requires_write().map(Login::as_str), Some("bob"));
}

fn review(state: &str, body: &str, author: Actor) -> GitHubEvent {
    GitHubEvent::ReviewSubmitted {
        repo: repo(),
        pr_number: 7,
        review: Review {
            id: 70,
            state: state.into(),
            body: body.into(),
            author,
        },
        installation_id: Some(1),
    }
}

fn diff_comment(body: &str, author: Actor, review_id: Option<u64>) -> GitHubEvent {
    GitHubEvent::ReviewCommentCreated {
        repo: repo(),
        pr_number: 7,
        comment: ReviewComment {
            id: 71,
            review_id,
            body: body.into(),
            author,
            path: "src/app.js".into(),
            line: Some(3),
            start_line: None,
            diff_hunk: "@@ -1,3 +1,3 @@".into(),
            in_reply_to: None,
        },
        installation_id: Some(1),
    }
}

#[test]
fn reviews_that_request_changes_or_mention_reach_the_agent_and_need_write() {
    let asked = decide(review("changes_requested", "", human("rev")));
    assert!(
        matches!(&asked, Intent::Review { pr_number: 7, review: Some(r), comments, .. } if r.id == 70 && comments.is_empty()),
        "{asked:?}"
    );
    assert_eq!(asked.requires_write().map(Login::as_str), Some("rev"));
    assert!(matches!(
        decide(review("commented", "@claude rename it", human("rev"))),
        Intent::Review { .. }
    ));
    // An approval or a plain comment is for people, not for the agent.
    for state in ["approved", "commented"] {
        let why = ignored(decide(review(state, "nice", human("rev"))));
        assert!(why.contains(state), "{why}");
    }
    assert!(ignored(decide(review("changes_requested", "x", bot()))).contains("bot"));
    let own = format!("{MARKER}\nchanges");
    assert!(ignored(decide(review("changes_requested", &own, human("rev")))).contains("system"));
    let all = Rules {
        forward_all_comments: true,
        ..Rules::default()
    };
    assert!(matches!(
        decide_github(review("approved", "", human("rev")), &all),
        Intent::Review { .. }
    ));
}

#[test]
fn a_diff_comment_mentioning_the_agent_is_one_follow_up_and_its_review_never_doubles_it() {
    let single = decide(diff_comment("@claude use const", human("rev"), Some(70)));
    assert!(
        matches!(&single, Intent::Review { review: None, comments, .. } if comments.len() == 1 && comments[0].path == "src/app.js"),
        "{single:?}"
    );
    assert_eq!(single.requires_write().map(Login::as_str), Some("rev"));
    assert!(ignored(decide(diff_comment("use const", human("rev"), Some(70)))).contains("mention"));
    assert!(ignored(decide(diff_comment("@claude x", bot(), Some(70)))).contains("bot"));
    // With every comment forwarded, the review event carries its comments: the comment's own
    // event is not a second turn.
    let all = Rules {
        forward_all_comments: true,
        ..Rules::default()
    };
    assert!(
        ignored(decide_github(
            diff_comment("use const", human("rev"), Some(70)),
            &all
        ))
        .contains("review")
    );
    assert!(matches!(
        decide_github(diff_comment("use const", human("rev"), None), &all),
        Intent::Review { .. }
    ));
}

fn checks(conclusion: &str, prs: &[u64]) -> GitHubEvent {
    GitHubEvent::CheckSuiteCompleted {
        repo: repo(),
        suite: crate::event::CheckSuite {
            id: 9,
            head_sha: "abc".into(),
            conclusion: conclusion.into(),
            pull_requests: prs.to_vec(),
            app: Some("github-actions".into()),
        },
        installation_id: Some(1),
    }
}

#[test]
fn failed_and_passing_checks_of_a_pr_head_go_to_its_agent_without_a_permission_check() {
    for conclusion in ["failure", "timed_out", "startup_failure", "success"] {
        let i = decide(checks(conclusion, &[7]));
        assert!(
            matches!(&i, Intent::Checks { pr_number: 7, suite, .. } if suite.conclusion == conclusion),
            "{i:?}"
        );
        // GitHub reports checks; no person asks for anything.
        assert_eq!(i.requires_write(), None);
    }
    for conclusion in [
        "cancelled",
        "neutral",
        "skipped",
        "stale",
        "action_required",
        "",
    ] {
        assert!(ignored(decide(checks(conclusion, &[7]))).contains("neither passed nor failed"));
    }
    assert!(ignored(decide(checks("failure", &[]))).contains("no pull request"));
}

#[test]
fn commands_are_the_first_line_of_a_comment_and_need_write() {
    let r = Rules::default();
    assert_eq!(r.command("/claude status"), Some(Command::Status));
    assert_eq!(r.command("  /CLAUDE Retry\nplease"), Some(Command::Retry));
    assert_eq!(r.command("/claude approve"), Some(Command::Approve));
    assert_eq!(
        r.command("/claude approve everything"),
        Some(Command::Unknown("approve everything".into()))
    );
    assert_eq!(
        r.command("/claude budget +5"),
        Some(Command::Budget { add_usd: 5.0 })
    );
    assert_eq!(
        r.command("/claude budget 2.5"),
        Some(Command::Budget { add_usd: 2.5 })
    );
    assert_eq!(
        r.command("/claude budget +$5"),
        Some(Command::Budget { add_usd: 5.0 })
    );
    for bad in [
        "/claude budget",
        "/claude budget -5",
        "/claude budget +NaN",
        "/claude budget +1e9",
        "/claude budget ++5",
        "/claude budget +5 extra",
        "/claude status now",
    ] {
        assert!(matches!(r.command(bad), Some(Command::Unknown(_))), "{bad}");
    }
    assert_eq!(
        r.command("/claude dance"),
        Some(Command::Unknown("dance".into()))
    );
    assert_eq!(r.command("please /claude status"), None);
    assert_eq!(r.command("/claudeX status"), None);
    assert_eq!(r.command("/claude"), None);
    let i = decide(comment("/claude status", human("bob"), true));
    assert!(
        matches!(
            &i,
            Intent::Command {
                command: Command::Status,
                pr_number: 7,
                ..
            }
        ),
        "{i:?}"
    );
    assert_eq!(i.requires_write().map(Login::as_str), Some("bob"));
    // An unknown verb in a comment meant for the agent is a follow-up, not a refusal.
    assert!(matches!(
        decide(comment("/claude fix the lint @claude", human("bob"), true)),
        Intent::Prompt { .. }
    ));
    assert!(matches!(
        decide(comment("/claude fix the lint", human("bob"), true)),
        Intent::Command {
            command: Command::Unknown(_),
            ..
        }
    ));
    // The stop command stays the stop command; a bot's command is nothing.
    assert!(matches!(
        decide(comment("/claude stop", human("bob"), true)),
        Intent::StopCommand { .. }
    ));
    assert!(matches!(
        decide(comment("/claude status", bot(), true)),
        Intent::Ignore(_)
    ));
}

#[test]
fn mentions_are_whole_words() {
    let r = Rules::default();
    for yes in [
        "@claude",
        "hey @Claude, do it",
        "(@claude)",
        "@claude: x",
        "x\n@claude",
    ] {
        assert!(r.mentions(yes), "{yes}");
    }
    for no in ["@claude-bot", "me@claude.dev", "@claudette", "claude", ""] {
        assert!(!r.mentions(no), "{no}");
    }
}

#[test]
fn unhandled_and_ping() {
    assert!(matches!(decide(GitHubEvent::Ping), Intent::Ignore(_)));
    let i = decide(GitHubEvent::Unhandled {
        event: "push".into(),
        action: None,
    });
    assert_eq!(i, Intent::Ignore("event push is not handled".into()));
}

/// The person every JIRA test event is from, unless it says otherwise.
const DAVE: &str = "557058:dave";

fn person(id: &str) -> Option<JiraUser> {
    account(Some(id), Some(JIRA_PERSON_ACCOUNT))
}

fn account(id: Option<&str>, kind: Option<&str>) -> Option<JiraUser> {
    Some(JiraUser {
        account_id: id.map(str::to_owned),
        account_type: kind.map(str::to_owned),
        display_name: Some("Dave".into()),
    })
}

/// Rules letting exactly `ids` start sessions from JIRA.
fn allowing(ids: &[&str]) -> Rules {
    Rules {
        jira_actors: JiraActors::Accounts(ids.iter().map(|s| s.to_string()).collect()),
        ..Rules::default()
    }
}

fn jira(kind: &str, added: &[&str]) -> JiraEvent {
    jira_by(kind, added, person(DAVE))
}

fn jira_by(kind: &str, added: &[&str], user: Option<JiraUser>) -> JiraEvent {
    JiraEvent {
        kind: kind.into(),
        issue: Some(crate::event::JiraIssue {
            key: JiraKey::parse("AG-1").unwrap(),
            project_key: "AG".into(),
            summary: "S".into(),
            description: serde_json::Value::Null,
            labels: vec![],
        }),
        labels_added: added.iter().map(|s| s.to_string()).collect(),
        user,
    }
}

fn ignored(i: Intent) -> String {
    match i {
        Intent::Ignore(reason) => reason,
        other => panic!("not ignored: {other:?}"),
    }
}

#[test]
fn jira_triggers() {
    let r = allowing(&[DAVE]);
    assert!(matches!(
        decide_jira(jira("jira:issue_updated", &["claude-dev"]), &r),
        Intent::StartJira {
            channel: ImageChannel::Latest,
            ..
        }
    ));
    assert!(matches!(
        decide_jira(
            jira("jira:issue_created", &["claude-dev", "claude-dev-staging"]),
            &r
        ),
        Intent::StartJira {
            channel: ImageChannel::Staging,
            ..
        }
    ));
    assert!(matches!(
        decide_jira(jira("jira:issue_updated", &["other"]), &r),
        Intent::Ignore(_)
    ));
    assert!(matches!(
        decide_jira(jira("jira:issue_deleted", &["claude-dev"]), &r),
        Intent::Ignore(_)
    ));
    let mut none = jira("jira:issue_updated", &["claude-dev"]);
    none.issue = None;
    assert!(matches!(decide_jira(none, &r), Intent::Ignore(_)));
}

#[test]
fn jira_allowed_account_starts() {
    let r = allowing(&["557058:other", DAVE]);
    assert!(matches!(
        decide_jira(jira("jira:issue_updated", &["claude-dev"]), &r),
        Intent::StartJira { .. }
    ));
}

#[test]
fn jira_account_not_on_the_list_is_ignored_with_the_reason() {
    let r = allowing(&["557058:other"]);
    let reason = ignored(decide_jira(jira("jira:issue_updated", &["claude-dev"]), &r));
    assert_eq!(
        reason,
        "JIRA account 557058:dave is not allowed to start sessions"
    );
    // Ids are compared exactly: no case folding, no prefixes.
    for id in ["557058:DAVE", "557058:dav", "557058:dave2"] {
        let r = allowing(&[id]);
        assert!(
            matches!(
                decide_jira(jira("jira:issue_updated", &["claude-dev"]), &r),
                Intent::Ignore(_)
            ),
            "{id}"
        );
    }
}

#[test]
fn jira_triggers_nobody_by_default() {
    let reason = ignored(decide_jira(
        jira("jira:issue_updated", &["claude-dev"]),
        &Rules::default(),
    ));
    assert!(reason.starts_with("JIRA triggers are off"), "{reason}");
    // An event that is no trigger anyway keeps its own reason.
    let reason = ignored(decide_jira(
        jira("jira:issue_updated", &["other"]),
        &Rules::default(),
    ));
    assert_eq!(reason, "no trigger label was added");
}

#[test]
fn jira_apps_and_customers_never_trigger_even_with_the_opt_in() {
    let any = Rules {
        jira_actors: JiraActors::AnyPerson,
        ..Rules::default()
    };
    for kind in ["app", "customer", "Atlassian", "unknown"] {
        for r in [&any, &allowing(&[DAVE])] {
            let event = jira_by(
                "jira:issue_updated",
                &["claude-dev"],
                account(Some(DAVE), Some(kind)),
            );
            let reason = ignored(decide_jira(event, r));
            assert_eq!(
                reason,
                format!(
                    "JIRA account 557058:dave is of type {kind:?}, not a person (\"atlassian\")"
                )
            );
        }
    }
    let untyped = jira_by(
        "jira:issue_updated",
        &["claude-dev"],
        account(Some(DAVE), None),
    );
    assert_eq!(
        ignored(decide_jira(untyped, &any)),
        "JIRA account 557058:dave has no account type"
    );
}

#[test]
fn jira_event_without_an_account_is_ignored() {
    let any = Rules {
        jira_actors: JiraActors::AnyPerson,
        ..Rules::default()
    };
    for user in [None, account(None, Some(JIRA_PERSON_ACCOUNT))] {
        for r in [&any, &allowing(&[DAVE])] {
            let event = jira_by("jira:issue_updated", &["claude-dev"], user.clone());
            assert_eq!(
                ignored(decide_jira(event, r)),
                "the JIRA event names no acting account"
            );
        }
    }
}

#[test]
fn jira_opt_in_lets_any_person_trigger() {
    let any = Rules {
        jira_actors: JiraActors::AnyPerson,
        ..Rules::default()
    };
    for id in [
        DAVE,
        "5b10ac8d82e05b22cc7d4ef5",
        "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077",
    ] {
        let event = jira_by("jira:issue_created", &["claude-dev"], person(id));
        assert!(
            matches!(decide_jira(event, &any), Intent::StartJira { .. }),
            "{id}"
        );
    }
}

fn session(status: Status, kind: SessionType) -> Session {
    let mut s = Session::new(
        SessionId::random_agent(),
        kind,
        Source::Github,
        repo(),
        BranchName::parse("claude/7").unwrap(),
        ImageChannel::Latest,
        0,
    );
    s.status = status;
    s
}

#[test]
fn start_plans() {
    assert_eq!(plan_start(None), StartPlan::Create);
    for st in Status::ALL {
        let expected = if st.is_terminal() {
            StartPlan::Relaunch
        } else {
            StartPlan::AlreadyActive
        };
        assert_eq!(
            plan_start(Some(&session(st, SessionType::Agent))),
            expected,
            "{st}"
        );
    }
}

#[test]
fn comment_plans() {
    assert_eq!(plan_comment(&[]), CommentPlan::NoSession);
    assert_eq!(
        plan_comment(&[session(Status::Running, SessionType::Preview)]),
        CommentPlan::NoSession
    );
    let mut up = session(Status::Running, SessionType::Agent);
    assert!(
        matches!(plan_comment(&[up.clone()]), CommentPlan::NotReady(_)),
        "no address yet"
    );
    up.container_ip = Some("10.0.0.5".into());
    up.control_port = Some(8081);
    assert!(matches!(
        plan_comment(&[session(Status::Running, SessionType::Preview), up.clone()]),
        CommentPlan::Forward(_)
    ));
    up.status = Status::Idle;
    assert!(matches!(plan_comment(&[up]), CommentPlan::Forward(_)));
    for st in [Status::Stopped, Status::Failed, Status::Completed] {
        assert!(matches!(
            plan_comment(&[session(st, SessionType::Agent)]),
            CommentPlan::Relaunch(_)
        ));
    }
    for st in [Status::Provisioning, Status::Starting, Status::Stopping] {
        assert!(matches!(
            plan_comment(&[session(st, SessionType::Agent)]),
            CommentPlan::NotReady(_)
        ));
    }
}

#[test]
fn stop_selection() {
    let all = [
        session(Status::Running, SessionType::Agent),
        session(Status::Provisioning, SessionType::Preview),
        session(Status::Stopped, SessionType::Agent),
        session(Status::Stopping, SessionType::Preview),
    ];
    assert_eq!(sessions_to_stop(&all, None).len(), 2);
    let previews = sessions_to_stop(&all, Some(SessionType::Preview));
    assert_eq!(previews.len(), 1);
    assert_eq!(previews[0].status, Status::Provisioning);
}
