//! `cca-agent run` end to end: the real binary, the real Claude Code CLI against a scripted model,
//! a real git remote over HTTP, the fake GitHub and a real store.

mod support;

use std::time::{Duration, Instant};

use cca_domain::Status;
use cca_domain::session::SessionType;
use cca_testkit::model::Reply;
use serde_json::json;
use support::{REPO, Stand, all_files, contains, scenario};

const START: Duration = Duration::from_secs(60);

#[tokio::test]
async fn an_issue_becomes_a_pushed_commit_a_follow_up_resumes_and_no_token_leaks() {
    scenario(Stand::new(SessionType::Agent, "claude/1"), |stand| async move {
    // Tokens that are due for refresh two seconds after they are minted (the client renews
    // five minutes before expiry): every later git operation must use a new one.
    stand
        .github
        .set_token_lifetime(Duration::from_secs(5 * 60 + 2));
    // The stand made the branch and PR as the webhook does, with a token of its own.
    let stand_tokens = stand.github.issued_tokens().len();
    let base: Vec<String> = stand
        .github
        .git_log(REPO, "claude/1")
        .into_iter()
        .map(|c| c.sha)
        .collect();
    stand.model.push_all([
        Reply::write("hello.txt", "hello\n"),
        Reply::text("Created hello.txt."),
    ]);
    let spawned = Instant::now();
    let mut agent = stand.spawn("run");
    stand
        .wait_record("RUNNING", START, |s| {
            matches!(s.status, Status::Running | Status::Idle)
        })
        .await;
    let to_running = spawned.elapsed();

    // The first run: one commit with the file, pushed to the branch.
    let summary = stand.wait_comment("Run 1 finished", START).await;
    eprintln!(
        "start to RUNNING (cloned, app planned): {to_running:?}; start to the first summary: {:?}",
        spawned.elapsed()
    );
    let log = stand.github.git_log(REPO, "claude/1");
    assert_eq!(
        log.len(),
        base.len() + 1,
        "exactly one new commit: {log:#?}"
    );
    let new = &log[0];
    assert_eq!(new.parents, vec![base[0].clone()]);
    assert_eq!(
        stand
            .github
            .file_at(REPO, "claude/1", "hello.txt")
            .as_deref(),
        Some("hello\n")
    );
    // The summary lists that commit and none of the base history.
    assert!(summary.body.contains(&new.sha[..7]), "{}", summary.body);
    for old in &base {
        assert!(
            !summary.body.contains(&old[..7]),
            "base commit listed: {}",
            summary.body
        );
    }
    assert!(summary.body.contains("`A hello.txt`"), "{}", summary.body);
    assert!(
        summary.body.contains("Created hello.txt."),
        "{}",
        summary.body
    );
    // Cost and turns recorded.
    let s = stand
        .wait_record("the run recorded", Duration::from_secs(10), |s| {
            s.turns.is_some()
        })
        .await;
    assert!(s.turns.unwrap() >= 2, "{s:?}");
    assert!(s.cost_usd.unwrap() > 0.0, "{s:?}");
    let conversation = s.claude_session_id.clone().expect("conversation id");
    assert!(matches!(s.status, Status::Idle | Status::Running), "{s:?}");
    assert!(s.container_ip.is_some() && s.control_port.is_some() && s.app_port.is_some());
    assert!(s.heartbeat_at.is_some());

    // The control API refuses calls without the session's token.
    for (method, path) in [
        ("POST", "/prompt"),
        ("GET", "/status"),
        ("POST", "/stop"),
        ("POST", "/refresh"),
    ] {
        for token in [None, Some("not-the-token")] {
            let (code, _) = stand
                .control(method, path, token, json!({"prompt": "x"}))
                .await;
            assert_eq!(code, 401, "{method} {path} with {token:?}");
        }
    }
    assert_eq!(stand.record().await.status, s.status, "nothing happened");

    // A follow-up resumes the same conversation and makes a second commit (after the token
    // of the first push has aged past its refresh point).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let comment = stand.github.add_comment(
        REPO,
        s.pr_number.unwrap(),
        "octocat",
        "@claude also add bye.txt",
    );
    stand.model.push_all([
        Reply::write("bye.txt", "bye\n"),
        Reply::text("Added bye.txt."),
    ]);
    let (code, body) = stand.post("/prompt", json!({"prompt": "also add bye.txt", "author": "octocat", "comment_id": comment}))
        .await;
    assert_eq!(code, 202, "{body}");
    let second = stand.wait_comment("Run 2 finished", START).await;
    assert!(second.body.contains("@octocat"), "{}", second.body);
    let log2 = stand.github.git_log(REPO, "claude/1");
    assert_eq!(log2.len(), log.len() + 1);
    assert!(second.body.contains(&log2[0].sha[..7]));
    assert!(
        !second.body.contains(&new.sha[..7]),
        "run 2 lists only its own commit"
    );
    let argv = stand.argv_text();
    assert!(
        argv.lines()
            .any(|l| l.starts_with("claude ") && l.contains(&format!("--resume {conversation}"))),
        "the follow-up did not resume {conversation}:\n{argv}"
    );
    // The model saw the first request again: the same conversation.
    let last = stand.model.main_requests().pop().unwrap();
    assert!(
        last.texts().iter().any(|t| t.contains("hello.txt")),
        "{:?}",
        last.texts()
    );
    assert_eq!(
        stand.record().await.claude_session_id.as_deref(),
        Some(conversation.as_str())
    );
    // The prompt was acknowledged on its comment.
    let reactions = stand.github.reactions(REPO, comment);
    assert!(
        reactions.iter().any(|r| r.content == "eyes"),
        "{reactions:?}"
    );

    // One status comment, edited in place.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = stand.status_comments();
    assert_eq!(status.len(), 1, "{status:#?}");
    assert!(status[0].edits >= 2, "{status:#?}");

    // Stop: recorded COMPLETED, process gone.
    let (code, _) = stand.post("/stop", json!({"reason": "PR merged", "final_status": "COMPLETED"}))
        .await;
    assert_eq!(code, 202);
    let exit = stand.wait_exit(&mut agent, Duration::from_secs(25)).await;
    assert!(exit.success(), "{exit:?}\n{}", stand.log_text());
    assert_eq!(stand.record().await.status, Status::Completed);

    // No token in the clone, in any argument, in the log, in a comment or in the record.
    let tokens: Vec<String> = stand
        .github
        .issued_tokens()
        .into_iter()
        .map(|t| t.token)
        .collect();
    assert!(!tokens.is_empty());
    let files = all_files(&stand.clone_dir());
    assert!(files.iter().any(|(p, _)| p.ends_with(".git/config")));
    let record = format!("{:?}", stand.record().await);
    let comments: Vec<String> = stand.comments().into_iter().map(|c| c.body).collect();
    for token in &tokens {
        let t = token.as_bytes();
        for (path, bytes) in &files {
            assert!(!contains(bytes, t), "token in {}", path.display());
        }
        assert!(!argv.contains(token), "token in an argument");
        assert!(!stand.log_text().contains(token), "token in the log");
        assert!(!record.contains(token), "token in the record");
        for c in &comments {
            assert!(!c.contains(token), "token in a comment");
        }
    }
    // Every git request to the remote carried a valid token, and the token was renewed as it
    // aged: the pushes of the two runs used different ones, each limited to the repository.
    let git = stand.github.git_requests();
    assert!(!git.is_empty());
    assert!(git.iter().all(|r| r.authorized), "{git:#?}");
    let push_tokens: std::collections::BTreeSet<&str> = git
        .iter()
        .filter(|r| r.is_push())
        .filter_map(|r| r.installation_token())
        .collect();
    assert!(
        push_tokens.len() >= 2,
        "{:#?}\n{}",
        stand.github.issued_tokens(),
        stand.log_text()
    );
    for t in &stand.github.issued_tokens()[stand_tokens..] {
        assert_eq!(
            t.repositories.as_deref(),
            Some(&["octo/hello".to_owned()][..]),
            "{t:?}"
        );
    }
    // The CLI's environment held no agent credential (its `Bash` tool could read it).
    assert!(!argv.contains(support::CONTROL_KEY));
    })
    .await;
}

#[tokio::test]
async fn a_failing_model_fails_the_run_with_its_reason_and_the_session_lives_on() {
    scenario(
        Stand::new(SessionType::Agent, "claude/1"),
        |stand| async move {
            stand.model.fail_always(500);
            let started = Instant::now();
            let mut agent = stand.spawn("run");
            let summary = stand.wait_comment("Run 1 failed", START).await;
            assert!(started.elapsed() < Duration::from_secs(60));
            assert!(summary.body.contains("500"), "{}", summary.body);
            let s = stand
                .wait_record("the error recorded", Duration::from_secs(10), |s| {
                    s.error.is_some()
                })
                .await;
            assert!(
                s.error.as_deref().unwrap().contains("run 1 failed"),
                "{s:?}"
            );
            stand
                .wait_status(Status::Idle, Duration::from_secs(10))
                .await;
            // Nothing was committed.
            assert_eq!(stand.github.git_log(REPO, "claude/1").len(), 2);
            // It still takes follow-ups once the model answers again.
            stand.model.stop_failing();
            stand
                .model
                .push_all([Reply::write("retry.txt", "ok\n"), Reply::text("Done.")]);
            let (code, _) = stand.post("/prompt", json!({"prompt": "try again"})).await;
            assert_eq!(code, 202);
            stand.wait_comment("Run 2 finished", START).await;
            assert!(
                stand
                    .github
                    .file_at(REPO, "claude/1", "retry.txt")
                    .is_some()
            );
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(agent.id().unwrap() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
            stand.wait_exit(&mut agent, Duration::from_secs(25)).await;
            assert_eq!(stand.record().await.status, Status::Stopped);
        },
    )
    .await;
}

#[tokio::test]
async fn sigterm_in_the_middle_of_a_run_commits_and_pushes_the_work_within_the_deadline() {
    scenario(
        Stand::new(SessionType::Agent, "claude/1"),
        |stand| async move {
            stand.model.push_all([
                Reply::write("wip.txt", "half done\n"),
                Reply::text("still thinking").delayed(Duration::from_secs(120)),
            ]);
            let mut agent = stand.spawn("run");
            let wip = stand.clone_dir().join("wip.txt");
            let start = Instant::now();
            while !wip.exists() {
                assert!(
                    start.elapsed() < START,
                    "the CLI never wrote wip.txt\n{}",
                    stand.log_text()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(
                stand
                    .model
                    .wait_for_main_requests(2, Duration::from_secs(30))
                    .await
            );
            let sent = Instant::now();
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(agent.id().unwrap() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
            let exit = stand.wait_exit(&mut agent, Duration::from_secs(25)).await;
            let took = sent.elapsed();
            assert!(took < Duration::from_secs(25), "{took:?}");
            assert!(exit.success(), "{exit:?}\n{}", stand.log_text());
            assert_eq!(
                stand.github.file_at(REPO, "claude/1", "wip.txt").as_deref(),
                Some("half done\n"),
                "the work in progress was not pushed\n{}",
                stand.log_text()
            );
            let head = &stand.github.git_log(REPO, "claude/1")[0];
            assert!(head.subject.starts_with("WIP:"), "{head:?}");
            assert_eq!(stand.record().await.status, Status::Stopped);
            eprintln!("SIGTERM to exit with the work pushed: {took:?}");
        },
    )
    .await;
}

#[tokio::test]
async fn limits_turns_are_passed_wall_time_stops_a_run_and_idle_ends_the_session() {
    scenario(
        Stand::new(SessionType::Agent, "claude/1"),
        |mut stand| async move {
            stand.set("MAX_TURNS_PER_RUN", "7");
            stand.set("RUN_TIMEOUT_SECS", "4");
            stand.set("IDLE_TIMEOUT_SECS", "8");
            stand.set("IDLE_WARNING_SECS", "4");
            stand
                .model
                .push(Reply::text("slow").delayed(Duration::from_secs(60)));
            let mut agent = stand.spawn("run");
            let summary = stand.wait_comment("Run 1 failed", START).await;
            assert!(
                summary.body.contains("wall time of 4 s"),
                "{}",
                summary.body
            );
            assert!(
                summary.body.contains("RUN_TIMEOUT_SECS"),
                "{}",
                summary.body
            );
            let argv = stand.argv_text();
            assert!(argv.contains("--max-turns 7"), "{argv}");
            // Then nothing happens: one warning, then the session ends itself.
            let warning = stand
                .wait_comment("Idle Warning", Duration::from_secs(30))
                .await;
            let ended = stand
                .wait_comment("Session Terminated", Duration::from_secs(30))
                .await;
            assert!(warning.id < ended.id);
            assert_eq!(
                stand
                    .comments()
                    .iter()
                    .filter(|c| c.body.contains("Idle Warning"))
                    .count(),
                1
            );
            stand.wait_exit(&mut agent, Duration::from_secs(25)).await;
            let s = stand.record().await;
            assert_eq!(s.status, Status::Stopped);
        },
    )
    .await;
}

#[tokio::test]
async fn a_jira_session_posts_its_first_runs_summary_on_the_jira_issue() {
    scenario(
        Stand::new_with(SessionType::Agent, "claude/1", |s| {
            s.jira_issue_key = Some(cca_domain::JiraKey::parse("AGNTS-7").unwrap());
            s.source = cca_domain::session::Source::Jira;
            s.initial_prompt = Some("JIRA Issue AGNTS-7: Create hello.txt".into());
        }),
        |mut stand| async move {
            let jira =
                cca_testkit::jira::FakeJira::start("bot@example.test", "jira-token-0123456789")
                    .await;
            jira.add_issue(
                "AGNTS-7",
                "Create hello.txt",
                cca_testkit::jira::adf_paragraphs(&["Add hello.txt"]),
                &["claude-dev"],
            );
            stand.set("JIRA_BASE_URL", jira.url());
            stand.set("JIRA_EMAIL", "bot@example.test");
            stand.set("JIRA_API_TOKEN", "jira-token-0123456789");
            stand.model.push_all([
                Reply::write("hello.txt", "hello\n"),
                Reply::text("Created hello.txt."),
            ]);
            let mut agent = stand.spawn("run");
            stand.wait_comment("Run 1 finished", START).await;
            let start = Instant::now();
            let comments = loop {
                let c = jira.comments("AGNTS-7");
                if !c.is_empty() || start.elapsed() > Duration::from_secs(10) {
                    break c;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            assert_eq!(comments.len(), 1, "{comments:#?}");
            let text = cca_testkit::jira::adf_text(&comments[0]);
            let head = &stand.github.git_log(REPO, "claude/1")[0];
            assert!(text.contains("Implementation Complete"), "{text}");
            assert!(text.contains(&head.sha[..7]), "{text}");
            assert!(text.contains("Created hello.txt."), "{text}");
            assert!(
                comments[0].to_string().contains("/pull/"),
                "{}",
                comments[0]
            );
            assert!(!text.contains("jira-token-0123456789"));
            stand.stop(&mut agent).await;
        },
    )
    .await;
}

#[tokio::test]
async fn another_cli_is_a_command_that_gets_the_prompt_as_data() {
    scenario(
        Stand::new_with(SessionType::Agent, "claude/1", |s| {
            s.initial_prompt = Some("say \"hi\"; $(touch pwned)".into());
        }),
        |mut stand| async move {
            stand.set("AGENT_CLI", "command");
            // The prompt is data: quotes and `$(...)` in it are never run.
            stand.set(
                "AGENT_CLI_COMMAND",
                r#"printf '%s\n' "$CCA_PROMPT" > prompt.txt; echo "wrote prompt.txt""#,
            );
            let mut agent = stand.spawn("run");
            let summary = stand.wait_comment("Run 1 finished", START).await;
            assert!(summary.body.contains("`A prompt.txt`"), "{}", summary.body);
            assert_eq!(
                stand
                    .github
                    .file_at(REPO, "claude/1", "prompt.txt")
                    .as_deref(),
                Some("say \"hi\"; $(touch pwned)\n")
            );
            assert!(!stand.clone_dir().join("pwned").exists());
            assert!(stand.github.file_at(REPO, "claude/1", "pwned").is_none());
            stand.stop(&mut agent).await;
        },
    )
    .await;
}

#[tokio::test]
async fn reaching_the_session_cost_limit_says_so_and_stops_the_session() {
    scenario(
        Stand::new(SessionType::Agent, "claude/1"),
        |mut stand| async move {
            // One run of the scripted model costs about $0.012: the first run spends the session's budget.
            stand.set("MAX_COST_PER_SESSION_USD", "0.01");
            stand
                .model
                .push_all([Reply::write("a.txt", "a\n"), Reply::text("Done.")]);
            let mut agent = stand.spawn("run");
            // The CLI stops the run at the budget the session has left, and the summary says so.
            let first = stand.wait_comment("Run 1 failed", START).await;
            assert!(first.body.contains("budget of $0.0100"), "{}", first.body);
            let (code, _) = stand.post("/prompt", json!({"prompt": "more"})).await;
            assert_eq!(code, 202);
            let limit = stand.wait_comment("Session limit reached", START).await;
            assert!(
                limit.body.contains("MAX_COST_PER_SESSION_USD"),
                "{}",
                limit.body
            );
            stand.wait_exit(&mut agent, Duration::from_secs(25)).await;
            let s = stand.record().await;
            assert_eq!(s.status, Status::Stopped);
            assert!(s.error.unwrap().contains("session limit"));
            // The refused prompt never reached the model.
            assert_eq!(stand.model.main_requests().len(), 2);
            assert!(stand.comments().iter().all(|c| !c.body.contains("Run 2")));
        },
    )
    .await;
}

#[tokio::test]
async fn a_200_kb_prompt_and_a_help_comment_reach_the_model_as_text() {
    // One argument is limited to 128 KiB on Linux: this prompt only fits on standard input.
    let filler = "All work and no play makes a long issue. ".repeat(5_000);
    let big = format!("Summarise this issue.\n{filler}END-OF-ISSUE");
    assert!(big.len() > 200_000);
    let prompt = big.clone();
    scenario(
        Stand::new_with(SessionType::Agent, "claude/1", move |s| {
            s.initial_prompt = Some(prompt);
        }),
        |stand| async move {
            stand.model.push_all([Reply::text("Read it.")]);
            let mut agent = stand.spawn("run");
            stand.wait_comment("Run 1 finished", START).await;
            let first = stand.model.main_requests().remove(0);
            assert!(
                first.texts().iter().any(|t| t.contains(&big)),
                "the model did not get the whole prompt"
            );
            // A follow-up that reads like an option is text to the model, not a flag to the CLI.
            stand.model.push_all([Reply::text("That was text.")]);
            let (code, body) = stand
                .post("/prompt", json!({"prompt": "--help", "author": "octocat"}))
                .await;
            assert_eq!(code, 202, "{body}");
            stand.wait_comment("Run 2 finished", START).await;
            let last = stand.model.main_requests().pop().unwrap();
            assert!(
                last.texts().iter().any(|t| t.trim() == "--help"),
                "{:?}",
                last.texts()
                    .iter()
                    .map(|t| cca_domain::naming::clip(t, 80).into_owned())
                    .collect::<Vec<_>>()
            );
            let argv = stand.argv_text();
            assert!(
                !argv.contains("--help") && !argv.contains("END-OF-ISSUE"),
                "{argv}"
            );
            stand.stop(&mut agent).await;
        },
    )
    .await;
}

#[tokio::test]
async fn rate_limited_comments_are_sent_late_and_never_lost() {
    scenario(
        Stand::new(SessionType::Agent, "claude/1"),
        |stand| async move {
            // GitHub's secondary limit on the first three comments and the primary one on the first
            // edit: each asks for a wait the agent sits out.
            stand.github.rate_limit_next(
                "POST",
                "/comments",
                403,
                cca_testkit::github::RateLimit::RetryAfter(2),
                3,
            );
            stand.github.rate_limit_next(
                "PATCH",
                "/comments/",
                429,
                cca_testkit::github::RateLimit::ResetIn(1),
                1,
            );
            stand.model.push_all([
                Reply::write("hello.txt", "hello\n"),
                Reply::text("Created hello.txt."),
            ]);
            let mut agent = stand.spawn("run");
            let summary = stand.wait_comment("Run 1 finished", START).await;
            assert!(
                summary.body.contains("Created hello.txt."),
                "{}",
                summary.body
            );
            // The status comment waited its turn too: it arrives, once.
            let waited = Instant::now();
            while stand.status_comments().is_empty() && waited.elapsed() < Duration::from_secs(30) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            assert_eq!(stand.status_comments().len(), 1, "one status comment");
            // Every comment the agent made took one refused attempt more: the limits were met.
            let posts = stand
                .github
                .requests()
                .iter()
                .filter(|r| r.method == "POST" && r.path.ends_with("/comments"))
                .count();
            assert_eq!(
                posts,
                stand.comments().len() + 3,
                "three POSTs were rate-limited"
            );
            stand.stop(&mut agent).await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_pr_opened_ready_for_want_of_drafts_is_said_in_the_status_comment() {
    scenario(
        Stand::new_on(
            SessionType::Agent,
            "claude/1",
            |github| github.refuse_drafts(REPO),
            |_| {},
        ),
        |stand| async move {
            let pr = stand.session.pr_number.unwrap();
            let pulls = stand.github.pulls(REPO);
            let opened = pulls.iter().find(|p| p.number == pr).unwrap();
            assert!(!opened.draft, "the fake refused the draft");
            stand.model.push_all([Reply::text("Nothing to do.")]);
            let mut agent = stand.spawn("run");
            stand.wait_comment("Run 1 finished", START).await;
            // The status comment is edited at most once per interval: wait for the edit.
            let waited = Instant::now();
            while !stand
                .status_comments()
                .iter()
                .any(|c| c.body.contains("not a draft"))
                && waited.elapsed() < Duration::from_secs(30)
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let status = stand.status_comments();
            assert_eq!(status.len(), 1);
            assert!(status[0].body.contains("not a draft"), "{}", status[0].body);
            stand.stop(&mut agent).await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_push_to_a_protected_branch_is_refused_and_the_work_goes_to_a_branch_of_its_own() {
    scenario(
        Stand::new_on(
            SessionType::Agent,
            "claude/1",
            |github| github.protect_branch(REPO, "claude/1"),
            |_| {},
        ),
        |stand| async move {
            stand.model.push_all([
                Reply::write("hello.txt", "hello\n"),
                Reply::text("Created hello.txt."),
            ]);
            let mut agent = stand.spawn("run");
            let refused = stand.wait_comment("Push refused", START).await;
            assert!(refused.body.contains("GH006"), "{}", refused.body);
            let fallback = refused
                .body
                .split("on the branch `")
                .nth(1)
                .and_then(|rest| rest.split('`').next())
                .unwrap_or_else(|| panic!("no branch named: {}", refused.body))
                .to_owned();
            assert!(fallback.starts_with("claude/1-kept-"), "{fallback}");
            assert_eq!(
                stand
                    .github
                    .file_at(REPO, &fallback, "hello.txt")
                    .as_deref(),
                Some("hello\n"),
                "the work is reachable"
            );
            assert!(
                stand
                    .github
                    .file_at(REPO, "claude/1", "hello.txt")
                    .is_none()
            );
            let summary = stand.wait_comment("Run 1 finished", START).await;
            assert!(summary.body.contains("Push failed"), "{}", summary.body);
            stand.stop(&mut agent).await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_workflow_file_is_refused_without_the_permission_and_the_work_is_posted_as_a_patch() {
    scenario(
        Stand::new(SessionType::Agent, "claude/1"),
        |stand| async move {
            // The model (or the issue's text) tries to add CI that would run with the repository's
            // secrets: the App has no `workflows` permission, so GitHub refuses every branch.
            stand.model.push_all([
                Reply::write(".github/workflows/ci.yml", "on: push\njobs: {}\n"),
                Reply::text("Added CI."),
            ]);
            let mut agent = stand.spawn("run");
            let refused = stand.wait_comment("Push refused", START).await;
            assert!(
                refused.body.contains("without `workflows` permission"),
                "{}",
                refused.body
            );
            assert!(refused.body.contains("as a patch"), "{}", refused.body);
            let patch = stand
                .wait_comment("The refused work, as a patch", START)
                .await;
            assert!(
                patch.body.contains("+++ b/.github/workflows/ci.yml")
                    && patch.body.contains("+on: push"),
                "{}",
                patch.body
            );
            assert!(
                stand
                    .github
                    .file_at(REPO, "claude/1", ".github/workflows/ci.yml")
                    .is_none()
            );
            stand.stop(&mut agent).await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_file_over_githubs_limit_or_a_hook_is_refused_and_its_content_is_not_posted() {
    for (setup, expect) in [
        (
            (|g: &cca_testkit::github::FakeGitHub| g.limit_file_size(REPO, 1_000))
                as fn(&cca_testkit::github::FakeGitHub),
            "GH001",
        ),
        (
            |g: &cca_testkit::github::FakeGitHub| {
                g.decline_pushes(REPO, "Commits must be signed (policy of octo).");
            },
            "Commits must be signed",
        ),
    ] {
        scenario(
            Stand::new_on(SessionType::Agent, "claude/1", setup, |_| {}),
            |stand| async move {
                stand.model.push_all([
                    Reply::write("data.txt", "x".repeat(2_000)),
                    Reply::text("Wrote data."),
                ]);
                let mut agent = stand.spawn("run");
                let refused = stand.wait_comment("Push refused", START).await;
                assert!(refused.body.contains(expect), "{}", refused.body);
                // Refused for its content (GitHub's size limit, a policy hook that may be scanning
                // for secrets): the files are named, their content is never posted.
                assert!(refused.body.contains("`data.txt`"), "{}", refused.body);
                stand.wait_comment("Run 1 finished", START).await;
                assert!(
                    stand
                        .comments()
                        .iter()
                        .all(|c| !c.body.contains("xxxxxxxxxx")),
                    "the refused content was posted"
                );
                stand.stop(&mut agent).await;
            },
        )
        .await;
    }
}

/// A review becomes one run: the model sees every inline comment's file, lines and hunk, the
/// work is one commit, and the agent answers in each thread besides the one summary.
#[tokio::test]
async fn a_review_is_one_run_that_sees_its_inline_comments_and_answers_in_each_thread() {
    use cca_domain::event::{Actor, Review, ReviewComment};
    scenario(Stand::new(SessionType::Agent, "claude/1"), |stand| async move {
        stand.model.push_all([Reply::text("Nothing to do yet.")]);
        let mut agent = stand.spawn("run");
        stand.wait_comment("Run 1 finished", START).await;
        let pr = stand.record().await.pr_number.unwrap();
        let inline = cca_testkit::github::two_diff_comments();
        let (review_id, ids) =
            stand
                .github
                .add_review(REPO, pr, "octocat", "CHANGES_REQUESTED", "Two things.", &inline);
        // The prompt as the webhook makes it from the review it read.
        let who = Actor {
            login: cca_domain::Login::parse("octocat").unwrap(),
            is_bot: false,
        };
        let comments: Vec<ReviewComment> = inline
            .iter()
            .zip(&ids)
            .map(|(c, id)| ReviewComment {
                id: *id,
                review_id: Some(review_id),
                body: c.body.clone(),
                author: who.clone(),
                path: c.path.clone(),
                line: Some(c.line),
                start_line: c.start_line,
                diff_hunk: c.diff_hunk.clone(),
                in_reply_to: None,
            })
            .collect();
        let review = Review {
            id: review_id,
            state: "changes_requested".into(),
            body: "Two things.".into(),
            author: who,
        };
        let prompt = cca_domain::texts::review_prompt("octocat", Some(&review), &comments);
        stand.model.push_all([
            Reply::write("app.js", "const a = 1;\n"),
            Reply::write("README.md", "# App: says what it does\n"),
            Reply::text("Both done."),
        ]);
        let before = stand.github.git_log(REPO, "claude/1").len();
        let threads = json!([
            { "comment_id": ids[0], "path": "app.js" },
            { "comment_id": ids[1], "path": "README.md" },
        ]);
        let (code, body) = stand.post("/prompt", json!({ "prompt": prompt, "author": "octocat", "review_threads": threads, "review_comments": ids }))
            .await;
        assert_eq!(code, 202, "{body}");
        // The same review comments again (the inline comment's own event): nothing more queued.
        let (code, body) = stand.post("/prompt", json!({ "prompt": "again", "author": "octocat", "review_threads": [threads[0].clone()], "review_comments": [ids[0]] }))
            .await;
        assert_eq!(code, 200, "{body}");

        let summary = stand.wait_comment("Run 2 finished", START).await;
        // The model saw both comments with their place in the diff.
        let seen = stand.model.main_requests().pop().unwrap().texts().join("\n");
        for want in [
            "`app.js`, lines 2-4:\nUse const here.",
            "-var a = 1;\n+let a = 1;",
            "`README.md`, line 7:\nSay what it does.",
            "-Old title\n+New title",
        ] {
            assert!(seen.contains(want), "{want:?} not in what the model saw:\n{seen}");
        }
        let log = stand.github.git_log(REPO, "claude/1");
        assert_eq!(log.len(), before + 1, "one commit: {log:#?}");
        assert!(summary.body.contains(&log[0].sha[..7]), "{}", summary.body);
        // One reply in each thread, naming the commit (they follow the summary).
        let deadline = Instant::now() + Duration::from_secs(20);
        let replies = loop {
            let all = stand.github.review_comments(REPO, pr);
            if all.iter().filter(|c| c.in_reply_to_id.is_some()).count() >= ids.len()
                || Instant::now() > deadline
            {
                break all;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        for id in &ids {
            let answers: Vec<_> = replies
                .iter()
                .filter(|c| c.in_reply_to_id == Some(*id))
                .collect();
            assert_eq!(answers.len(), 1, "thread {id}: {replies:#?}");
            assert!(answers[0].body.contains(&log[0].sha[..7]), "{:?}", answers[0]);
        }
        let summaries = stand
            .comments()
            .into_iter()
            .filter(|c| c.body.contains("Run 2 finished"))
            .count();
        assert_eq!(summaries, 1);
        stand.stop(&mut agent).await;
    })
    .await;
}

/// The conversation outlives the container: after an idle stop, a relaunch in a fresh working
/// directory and home (a new container) restores the conversation from the data directory, the
/// CLI resumes it, and the model sees the first run's exchange.
#[tokio::test]
async fn a_relaunch_in_a_new_container_resumes_the_conversation_kept_in_the_data_directory() {
    scenario(
        Stand::new(SessionType::Agent, "claude/1"),
        |mut stand| async move {
            let data = stand.dir.path().join("private/data");
            stand.set("CCA_DATA_DIR", &data.display().to_string());
            stand.set("IDLE_TIMEOUT_SECS", "6");
            stand.set("IDLE_WARNING_SECS", "3");
            stand.model.push_all([
                Reply::write("hello.txt", "hello\n"),
                Reply::text("Created hello.txt for the first request."),
            ]);
            let mut agent = stand.spawn("run");
            stand.wait_comment("Run 1 finished", START).await;
            stand.wait_comment("Session Terminated", START).await;
            let exit = stand.wait_exit(&mut agent, Duration::from_secs(25)).await;
            assert!(exit.success(), "{exit:?}\n{}", stand.log_text());
            let ended = stand.record().await;
            assert_eq!(ended.status, Status::Stopped);
            let conversation = ended.claude_session_id.clone().expect("conversation id");
            let kept = data
                .join("conversations")
                .join(format!("{}.tar", ended.session_id));
            assert!(kept.exists(), "nothing kept at {}", kept.display());
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{kept:?} is {mode:o}");
            }

            // A new container: nothing of the old one's working copy or home is left. It is
            // started again by a review, whose thread the relaunched run answers in.
            use cca_store::SessionStore as _;
            std::fs::remove_dir_all(stand.workspace.join(ended.session_id.as_str())).unwrap();
            let pr = ended.pr_number.unwrap();
            let (_, ids) = stand.github.add_review(
                REPO,
                pr,
                "octocat",
                "CHANGES_REQUESTED",
                "also add bye.txt",
                &cca_testkit::github::two_diff_comments()[..1],
            );
            stand
                .store
                .relaunch(
                    &ended.session_id,
                    cca_domain::session::SessionPatch {
                        initial_prompt: Some(
                            "Follow-up from @octocat on the PR:\n\nalso add bye.txt".into(),
                        ),
                        prompt_threads: Some(
                            json!([{ "comment_id": ids[0], "path": "app.js" }]).to_string(),
                        ),
                        ..Default::default()
                    },
                    cca_domain::now(),
                )
                .await
                .unwrap();
            stand.model.push_all([
                Reply::write("bye.txt", "bye\n"),
                Reply::text("Added bye.txt."),
            ]);
            let before = stand.model.main_requests().len();
            let mut agent = stand.spawn("run");
            let deadline = Instant::now() + START;
            // The relaunch numbers its run after the first container's.
            while !stand
                .comments()
                .iter()
                .any(|c| c.body.contains("Run 2 finished"))
            {
                assert!(
                    Instant::now() < deadline,
                    "no summary of the relaunch\n{}",
                    stand.log_text()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let argv = stand.argv_text();
            assert!(
                argv.lines()
                    .rfind(|l| l.starts_with("claude "))
                    .is_some_and(|l| l.contains(&format!("--resume {conversation}"))),
                "the relaunch did not resume {conversation}:\n{argv}"
            );
            let relaunched = stand.model.main_requests();
            let seen = relaunched[before..]
                .iter()
                .flat_map(|r| r.texts())
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                seen.contains("Created hello.txt for the first request."),
                "the model did not see the first conversation:\n{seen}"
            );
            assert!(seen.contains("also add bye.txt"), "{seen}");
            assert!(stand.log_text().contains("the conversation was restored"));
            assert_eq!(
                stand.github.file_at(REPO, "claude/1", "bye.txt").as_deref(),
                Some("bye\n")
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let replies: Vec<_> = stand
                    .github
                    .review_comments(REPO, pr)
                    .into_iter()
                    .filter(|c| c.in_reply_to_id == Some(ids[0]))
                    .collect();
                if let [reply] = replies.as_slice() {
                    assert!(reply.body.contains("Run 2"), "{reply:?}");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "no reply in the review's thread: {replies:#?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            stand.stop(&mut agent).await;
        },
    )
    .await;
}

/// Failing checks on the agent's own commit get fix runs that see the checks' names and log
/// tails, each said on the PR, exactly CI_FIX_ATTEMPTS of them, then one comment that it stops.
#[tokio::test]
async fn failing_checks_on_the_agents_commits_get_exactly_the_allowed_fix_runs_then_one_comment() {
    scenario(
        Stand::new(SessionType::Agent, "claude/1"),
        |mut stand| async move {
            stand.set("CI_FIX_ATTEMPTS", "2");
            stand.model.push_all([
                Reply::write("hello.txt", "hello\n"),
                Reply::text("Created hello.txt."),
            ]);
            let mut agent = stand.spawn("run");
            stand.wait_comment("Run 1 finished", START).await;
            let head = |stand: &Stand| stand.github.git_log(REPO, "claude/1")[0].sha.clone();
            let fail = |sha: String, marker: &str| {
                json!({
                    "head_sha": sha,
                    "passed": false,
                    "checks": ["test"],
                    "prompt": cca_domain::texts::checks_prompt(&sha, &[cca_domain::event::CheckRun {
                        name: "test".into(),
                        conclusion: "failure".into(),
                        log_tail: Some(format!("FAIL hello.test: {marker}")),
                        ..Default::default()
                    }]),
                })
            };
            let summaries = |stand: &Stand| {
                stand
                    .comments()
                    .iter()
                    .filter(|c| c.body.contains(" finished"))
                    .count()
            };
            for (attempt, file) in [(1, "fix1.txt"), (2, "fix2.txt")] {
                let before = head(&stand);
                stand.model.push_all([
                    Reply::write(file, "fixed\n"),
                    Reply::text(format!("Fixed, attempt {attempt}.")),
                ]);
                let marker = format!("expected hello, attempt {attempt}");
                let (code, body) = stand
                    .control(
                        "POST",
                        "/checks",
                        Some(&stand.token()),
                        fail(before.clone(), &marker),
                    )
                    .await;
                assert_eq!(code, 202, "{body}");
                stand
                    .wait_comment(&format!("fix run {attempt} of 2"), START)
                    .await;
                stand
                    .wait_comment(&format!("Run {} finished", attempt + 1), START)
                    .await;
                let seen = stand
                    .model
                    .main_requests()
                    .pop()
                    .unwrap()
                    .texts()
                    .join("\n");
                assert!(
                    seen.contains(&marker),
                    "the fix run did not see the log: {seen}"
                );
                assert!(seen.contains("### test (failure)"), "{seen}");
                assert_ne!(head(&stand), before, "fix run {attempt} made no commit");
            }
            // Failing again after the last attempt: no third run, one comment that it stops.
            let (code, _) = stand
                .control(
                    "POST",
                    "/checks",
                    Some(&stand.token()),
                    fail(head(&stand), "again"),
                )
                .await;
            assert_eq!(code, 202);
            let stopped = stand.wait_comment("Checks still fail", START).await;
            assert!(
                stopped.body.contains("after 2 fix runs"),
                "{}",
                stopped.body
            );
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert_eq!(summaries(&stand), 3, "one run and two fix runs, no more");
            assert_eq!(stand.model.pending(), 0);
            let fixes = stand
                .comments()
                .iter()
                .filter(|c| c.body.contains("**Checks failed**"))
                .count();
            assert_eq!(fixes, 2);
            stand.stop(&mut agent).await;
        },
    )
    .await;
}

/// A session that starts on a branch whose head is a person's commit (a relaunch, a PR that
/// moved on) never fixes that commit: only commits the agent pushed are its to fix.
#[tokio::test]
async fn failing_checks_on_a_persons_commit_get_no_fix_run() {
    scenario(
        Stand::new(SessionType::Agent, "claude/1"),
        |stand| async move {
            let person = stand
                .github
                .push_commit(REPO, "claude/1", "a person's change");
            stand.model.push_all([Reply::text("Nothing to change.")]);
            let mut agent = stand.spawn("run");
            stand.wait_comment("Run 1 finished", START).await;
            assert_eq!(stand.github.git_log(REPO, "claude/1")[0].sha, person);
            let (code, body) = stand
                .post(
                    "/checks",
                    json!({
                        "head_sha": person,
                        "passed": false,
                        "checks": ["test"],
                        "prompt": "The checks failed.",
                    }),
                )
                .await;
            assert_eq!(code, 202, "{body}");
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert!(
                stand
                    .comments()
                    .iter()
                    .all(|c| !c.body.contains("**Checks failed**") && !c.body.contains("Run 2")),
                "{:#?}",
                stand.comments()
            );
            stand.stop(&mut agent).await;
        },
    )
    .await;
}

/// `/claude retry` runs the last failed run again (and refuses when none failed); `/claude
/// budget +N` raises the session's cost limit up to the operator's cap, so a spent session runs
/// again, and a raise past the cap is refused with why.
#[tokio::test]
async fn retry_runs_the_failed_run_again_and_a_budget_raise_lets_a_spent_session_go_on() {
    scenario(
        Stand::new(SessionType::Agent, "claude/1"),
        |mut stand| async move {
            stand.set("MAX_COST_PER_SESSION_USD", "0.000001");
            stand.set("MAX_COST_PER_SESSION_CAP_USD", "3");
            stand.model.fail_always(500);
            let mut agent = stand.spawn("run");
            stand.wait_comment("Run 1 failed", START).await;
            stand
                .wait_status(Status::Idle, Duration::from_secs(10))
                .await;
            // Retried once the model is back: the same prompt again. The session's tiny budget
            // lets one request through, then the gateway refuses: the retry fails, spent.
            stand.model.stop_failing();
            stand.model.push_all([
                Reply::write("hello.txt", "hello\n"),
                Reply::text("Created hello.txt on the retry."),
            ]);
            let before = stand.model.main_requests().len();
            let (code, body) = stand.post("/retry", json!({ "author": "octocat" })).await;
            assert_eq!(code, 202, "{body}");
            let spent = stand.wait_comment("Run 2 failed", START).await;
            assert!(spent.body.contains("@octocat"), "{}", spent.body);
            assert!(
                spent.body.contains("MAX_COST_PER_SESSION_USD"),
                "{}",
                spent.body
            );
            // The retry's own prompt: the last message of its first request, not the history.
            let first = stand.model.main_requests()[before].clone();
            let asked = first
                .messages()
                .iter()
                .rev()
                .find(|m| m["role"] == "user")
                .map(|m| m.to_string())
                .unwrap_or_default();
            assert!(
                asked.contains("Create hello.txt"),
                "the issue's prompt again: {asked}"
            );
            stand
                .wait_status(Status::Idle, Duration::from_secs(10))
                .await;
            // A follow-up to the spent session does not run, and the session does not end:
            // writers may still raise its limit.
            let (code, body) = stand
                .post(
                    "/prompt",
                    json!({ "prompt": "Now add bye.txt.", "author": "octocat" }),
                )
                .await;
            assert_eq!(code, 202, "{body}");
            let held = stand.wait_comment("This prompt did not run", START).await;
            assert!(held.body.contains("/claude budget +N"), "{}", held.body);
            assert!(
                held.body.contains("$3.00"),
                "the cap is named: {}",
                held.body
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(stand.record().await.status, Status::Idle);

            // A raise past the cap is refused; one within it lets the spent session retry.
            let (code, body) = stand.post("/budget", json!({ "add_usd": 5 })).await;
            assert_eq!(code, 409, "{body}");
            assert!(body.to_string().contains("over the cap"), "{body}");
            let (code, body) = stand.post("/budget", json!({ "add_usd": 2 })).await;
            assert_eq!(code, 202, "{body}");
            assert!(
                (body["cost_limit_usd"].as_f64().unwrap() - 2.000001).abs() < 1e-6,
                "{body}"
            );
            let before = stand.model.main_requests().len();
            let (code, body) = stand.post("/retry", json!({})).await;
            assert_eq!(code, 202, "{body}");
            stand.wait_comment("Run 3 finished", START).await;
            let retried = stand.model.main_requests()[before].texts().join("\n");
            assert!(
                retried.contains("Now add bye.txt."),
                "the held prompt runs on the retry: {retried}"
            );
            assert!(
                stand
                    .comments()
                    .iter()
                    .all(|c| !c.body.contains("The session stops")),
                "the session was never stopped at its limit"
            );
            // Nothing failed since: nothing to retry.
            let (code, body) = stand.post("/retry", json!({})).await;
            assert_eq!(code, 409, "{body}");
            assert!(body.to_string().contains("nothing to retry"), "{body}");
            stand.stop(&mut agent).await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_plan_is_posted_with_nothing_committed_revised_on_a_mention_and_implemented_once_approved()
 {
    scenario(
        Stand::new_with(SessionType::Agent, "claude/1", |s| s.plan_mode = true),
        |stand| async move {
            let base = stand.github.git_log(REPO, "claude/1");
            // A model that tries to change things while it plans: plan mode refuses both.
            stand.model.push_all([
                Reply::write("hello.txt", "hello\n"),
                Reply::bash("touch made-while-planning.txt"),
                Reply::text("1. Create hello.txt saying hello.\n2. Check it with cat."),
            ]);
            let mut agent = stand.spawn("run");
            let plan = stand.wait_comment("Plan (run 1)", START).await;
            assert!(
                plan.body.contains("1. Create hello.txt saying hello."),
                "{}",
                plan.body
            );
            assert!(plan.body.contains("/claude approve"), "{}", plan.body);
            let argv = stand.argv_text();
            assert!(argv.contains("--permission-mode plan"), "{argv}");
            assert!(!argv.contains("--dangerously-skip-permissions"), "{argv}");
            // The CLI refused the edit and the command; nothing reached the branch or the tree.
            let refused: Vec<_> = stand
                .model
                .main_requests()
                .iter()
                .flat_map(|r| r.tool_results())
                .collect();
            assert!(refused.len() >= 2, "{refused:#?}");
            assert!(
                refused.iter().all(|r| r["is_error"] == true),
                "every change was refused: {refused:#?}"
            );
            assert!(
                refused
                    .iter()
                    .any(|r| r["content"].to_string().contains("plan mode")),
                "{refused:#?}"
            );
            assert_eq!(stand.github.git_log(REPO, "claude/1").len(), base.len());
            assert!(!stand.clone_dir().join("hello.txt").exists());
            assert!(!stand.clone_dir().join("made-while-planning.txt").exists());
            assert!(
                stand
                    .comments()
                    .iter()
                    .all(|c| !c.body.contains("Run 1 finished")),
                "a plan run posts its plan, not a summary"
            );
            stand
                .wait_record("idle, still planning", Duration::from_secs(10), |s| {
                    s.status == Status::Idle && s.plan_mode
                })
                .await;

            // Another mention revises the plan, still in plan mode.
            // This time the model presents its plan as Claude Code asks, to leave plan mode.
            stand.model.push_all([
                Reply::tool(
                    "ExitPlanMode",
                    json!({ "plan": "1. Create hello.txt saying hello.\n2. Add a test for it." }),
                ),
                Reply::text("The plan is above."),
            ]);
            let (code, body) = stand
                .post(
                    "/prompt",
                    json!({ "prompt": "Please add a test too.", "author": "octocat" }),
                )
                .await;
            assert_eq!(code, 202, "{body}");
            let revised = stand.wait_comment("Plan (run 2)", START).await;
            assert!(
                revised.body.contains("Add a test for it."),
                "{}",
                revised.body
            );
            assert_eq!(stand.github.git_log(REPO, "claude/1").len(), base.len());

            // An approval must say who approved; then the next run implements the plan in the
            // same conversation, with permissions bypassed again.
            let (code, _) = stand.post("/approve", json!({})).await;
            assert_eq!(code, 400);
            stand.model.push_all([
                Reply::write("hello.txt", "hello\n"),
                Reply::text("Implemented the plan."),
            ]);
            let before = stand.model.main_requests().len();
            let (code, body) = stand.post("/approve", json!({ "author": "octocat" })).await;
            assert_eq!(code, 202, "{body}");
            let done = stand.wait_comment("Run 3 finished", START).await;
            assert!(done.body.contains("`A hello.txt`"), "{}", done.body);
            assert_eq!(
                stand
                    .github
                    .file_at(REPO, "claude/1", "hello.txt")
                    .as_deref(),
                Some("hello\n")
            );
            let first = stand.model.main_requests()[before].texts().join("\n");
            assert!(first.contains("approved your plan"), "{first}");
            assert!(
                first.contains("Please add a test too.") && first.contains("Check it with cat."),
                "the implementation resumes the conversation that made the plans: {first}"
            );
            assert!(stand.argv_text().contains("--dangerously-skip-permissions"));
            stand
                .wait_record("implementing", Duration::from_secs(10), |s| !s.plan_mode)
                .await;
            // Nothing is waiting for approval any more.
            let (code, body) = stand.post("/approve", json!({ "author": "octocat" })).await;
            assert_eq!(code, 409, "{body}");
            stand.stop(&mut agent).await;
        },
    )
    .await;
}

#[tokio::test]
async fn the_default_branchs_plan_setting_makes_a_new_session_plan_first() {
    scenario(
        Stand::new_on(
            SessionType::Agent,
            "claude/1",
            |github| {
                github.commit_file(
                    REPO,
                    "main",
                    ".cca.toml",
                    "[agent]\nplan = true\n",
                    "Plan first",
                );
            },
            |_| {},
        ),
        |stand| async move {
            stand
                .model
                .push(Reply::text("1. Create hello.txt saying hello."));
            let mut agent = stand.spawn("run");
            stand.wait_comment("Plan (run 1)", START).await;
            assert!(stand.argv_text().contains("--permission-mode plan"));
            let s = stand
                .wait_record("planning", Duration::from_secs(10), |s| s.plan_mode)
                .await;
            assert!(s.claude_session_id.is_some(), "{s:?}");
            stand.stop(&mut agent).await;
        },
    )
    .await;
}

/// A plan run that changes things anyway (here a command, which no plan mode restrains): a
/// file hidden behind a `.gitignore` of its own, a file named like a pattern, a plain new file
/// are all gone after it, nothing reaches the branch, and the approved run commits only its
/// own work.
#[tokio::test]
async fn whatever_a_plan_run_leaves_is_undone_and_never_pushed() {
    scenario(
        Stand::new_with(SessionType::Agent, "claude/1", |s| s.plan_mode = true),
        |mut stand| async move {
            stand.set("AGENT_CLI", "command");
            stand.set(
                "AGENT_CLI_COMMAND",
                r#"if [ "$CCA_PLAN_MODE" = 1 ]; then mkdir -p x && printf 'payload.js\n' > x/.gitignore && echo evil > x/payload.js && echo star > '*' && echo new > plain.txt && echo "1. Write impl.txt"; else echo impl > impl.txt && echo "implemented"; fi"#,
            );
            let base = stand.github.git_log(REPO, "claude/1");
            let mut agent = stand.spawn("run");
            let plan = stand.wait_comment("Plan (run 1)", START).await;
            assert!(plan.body.contains("1. Write impl.txt"), "{}", plan.body);
            let dir = stand.clone_dir();
            for left in ["x/payload.js", "x/.gitignore", "*", "plain.txt"] {
                assert!(!dir.join(left).exists(), "{left} survived the plan run");
            }
            assert_eq!(stand.github.git_log(REPO, "claude/1").len(), base.len());
            let (code, body) = stand.post("/approve", json!({ "author": "octocat" })).await;
            assert_eq!(code, 202, "{body}");
            // A second approval while the first waits or runs is refused.
            let (code, _) = stand.post("/approve", json!({ "author": "octocat" })).await;
            assert_eq!(code, 409);
            let done = stand.wait_comment("Run 2 finished", START).await;
            assert!(done.body.contains("`A impl.txt`"), "{}", done.body);
            let log = stand.github.git_log(REPO, "claude/1");
            assert_eq!(log.len(), base.len() + 1, "{log:#?}");
            for never in ["x/payload.js", "plain.txt", "*"] {
                assert!(stand.github.file_at(REPO, "claude/1", never).is_none(), "{never}");
            }
            stand.stop(&mut agent).await;
        },
    )
    .await;
}
