use super::*;

#[test]
fn a_summary_lists_this_runs_commits_newest_first_and_the_numbers() {
    let s = RunSummary {
        number: 2,
        author: Some("octocat".into()),
        succeeded: true,
        text: "Created hello.txt".into(),
        failure: None,
        limit: None,
        commits: vec![
            Commit {
                sha: "b".repeat(40),
                subject: "Second".into(),
            },
            Commit {
                sha: "a".repeat(40),
                subject: "First".into(),
            },
        ],
        files: vec![ChangedFile {
            status: "A".into(),
            path: "hello.txt".into(),
        }],
        cost_usd: Some(0.0123),
        turns: Some(2),
        duration: Duration::from_secs(12),
        push_error: None,
    }
    .render();
    assert!(s.starts_with(MARKER));
    assert!(s.contains("Run 2 finished (requested by @octocat)"));
    let second = s.find("bbbbbbb").unwrap();
    let first = s.find("aaaaaaa").unwrap();
    assert!(second < first);
    assert!(s.contains("`A hello.txt`"));
    assert!(s.contains("$0.0123") && s.contains("Turns: 2") && s.contains("12 s"));
}

#[test]
fn a_failed_summary_says_why() {
    let s = RunSummary {
        number: 1,
        author: None,
        succeeded: false,
        text: String::new(),
        failure: Some("API Error: 500".into()),
        limit: Some(Limit::RunWallTime(Duration::from_secs(60))),
        commits: vec![],
        files: vec![],
        cost_usd: None,
        turns: None,
        duration: Duration::from_secs(3),
        push_error: None,
    }
    .render();
    assert!(s.contains("Run 1 failed"));
    assert!(s.contains("**Reason:** API Error: 500"));
    assert!(s.contains("**Limit reached:** the run's wall time of 60 s (RUN_TIMEOUT_SECS)"));
    assert!(s.contains("none in this run"));
}

#[test]
fn status_renders_what_is_known() {
    let v = StatusView {
        session_id: "abc".into(),
        headline: "Working".into(),
        preview_url: Some("https://abc.uat.example.com".into()),
        app: Some("ready".into()),
        step: Some("✏️ Write hello.txt".into()),
        last_activity: Some(0),
        runs: 1,
        turns: 2,
        cost_usd: 0.5,
        queued: 1,
        unconfined: None,
        ready_not_draft: false,
    };
    let s = v.render();
    assert!(s.contains("https://abc.uat.example.com (app: ready)"));
    assert!(s.contains("1970-01-01 00:00:00 UTC"));
    assert!(s.contains("**Queued requests:** 1"));
    assert!(!s.contains("No sandbox"));
    let s = StatusView {
        unconfined: Some("bubblewrap does not work here".into()),
        ..v
    }
    .render();
    assert!(
        s.contains("**:warning: No sandbox:** bubblewrap does not work here"),
        "{s}"
    );
}

#[test]
fn durations_read_as_people_say_them() {
    assert_eq!(human(Duration::from_secs(40)), "40 s");
    assert_eq!(human(Duration::from_secs(300)), "5 min");
    assert_eq!(idle_reason(Duration::from_secs(90)), "idle for 1 min");
}

#[test]
fn every_limit_names_the_setting_that_sets_it() {
    let limits = [
        (
            Limit::SessionTurns { used: 5, max: 5 },
            "MAX_TURNS_PER_SESSION",
        ),
        (
            Limit::SessionCost {
                spent: 1.0,
                max: 1.0,
            },
            "MAX_COST_PER_SESSION_USD",
        ),
        (
            Limit::SessionTokens { used: 9, max: 9 },
            "MAX_TOKENS_PER_SESSION",
        ),
        (
            Limit::RunWallTime(Duration::from_secs(1)),
            "RUN_TIMEOUT_SECS",
        ),
        (
            Limit::RunSilence(Duration::from_secs(1)),
            "RUN_SILENCE_TIMEOUT_SECS",
        ),
        (Limit::RunTurns { max: 3 }, "MAX_TURNS_PER_RUN"),
        (
            Limit::RunBudget {
                budget: 0.5,
                per_run: 0.5,
                per_session: 2.0,
            },
            "MAX_COST_PER_RUN_USD",
        ),
    ];
    for (limit, setting) in limits {
        assert!(limit.to_string().contains(setting), "{limit}");
    }
    assert_eq!(
        session_limit_reason(&Limit::SessionTurns { used: 5, max: 5 }),
        "session limit reached: 5 turns used of MAX_TURNS_PER_SESSION 5"
    );
}

#[test]
fn a_refused_push_says_where_the_work_is() {
    let files = vec!["a.txt".to_owned(), "b.txt".to_owned()];
    let branch = kept_branch("claude/issue-1", &"c".repeat(40));
    assert_eq!(branch, "claude/issue-1-kept-ccccccc");
    let line = push_refused_line("claude/issue-1", "GH006", &Kept::Branch(&branch));
    assert_eq!(
        line,
        "GitHub refused the push to `claude/issue-1`: GH006. The work is on the branch `claude/issue-1-kept-ccccccc` instead."
    );
    let line = push_refused_line(
        "b",
        "GH013",
        &Kept::ContentRefused {
            gone: Gone::Kept,
            files: &files,
        },
    );
    assert!(line.contains("`a.txt`, `b.txt`") && line.contains("not posted here"));
    assert!(push_refused(&line).starts_with(":no_entry: **Push refused.**"));
}

#[test]
fn a_patch_is_fenced_longer_than_any_backtick_run_inside_it() {
    let patch = "+ a ```` fence\n+ b\n";
    let comment = refused_patch("b", patch);
    assert!(comment.contains("`````diff\n"), "{comment}");
    assert!(comment.contains("2 lines"));
    assert!(refused_patch("b", "+ plain\n").contains("```diff\n"));
}

#[test]
fn steps_and_headlines() {
    assert_eq!(step::tool("Bash", "ls"), "💻 Bash ls");
    assert_eq!(step::tool("Mystery", ""), "🔧 Mystery ");
    assert_eq!(step::text("hello\nworld"), "💬 hello");
    assert_eq!(
        headline::run_in_progress(2, Some("octocat")),
        "🛠️ Run 2 for @octocat in progress"
    );
    assert_eq!(
        headline::ended(crate::Status::Completed, "done"),
        "🏁 COMPLETED: done"
    );
    assert_eq!(
        headline::ended(crate::Status::Stopped, "idle"),
        "⏹️ STOPPED: idle"
    );
    assert_eq!(
        run_commit_message(3, "  Add a page\nwith more"),
        "Apply changes from Claude run 3: Add a page"
    );
}

#[test]
fn a_thread_reply_names_the_commits_that_changed_its_file_or_says_there_were_none() {
    let commits = [Commit {
        sha: "abcdef1234".into(),
        subject: "Use const".into(),
    }];
    let done = thread_reply(2, true, "a.js", true, &commits);
    assert!(done.starts_with(MARKER), "{done}");
    assert!(
        done.contains("Addressed in run 2: `abcdef1` Use const."),
        "{done}"
    );
    let untouched = thread_reply(2, true, "a.js", false, &commits);
    assert!(untouched.contains("no change to `a.js`"), "{untouched}");
    let failed = thread_reply(2, false, "a.js", true, &commits);
    assert!(failed.contains("Run 2 failed"), "{failed}");
}

#[test]
fn the_fixing_of_checks_is_said_with_the_commit_the_attempt_and_the_limit() {
    let queued = ci_fix_queued(2, 3, "abcdef123", &["test".into(), "lint".into()]);
    assert!(
        queued.contains("`abcdef1` (`test`, `lint`): fix run 2 of 3"),
        "{queued}"
    );
    assert!(ci_passed(1, "abcdef123").contains("after 1 fix run."));
    assert!(ci_passed(2, "abcdef123").contains("after 2 fix runs."));
    let gave_up = ci_gave_up(3, "abcdef123");
    assert!(
        gave_up.contains("after 3 fix runs") && gave_up.contains("no more"),
        "{gave_up}"
    );
}
