//! Scenarios through the real router: signed real payloads in, assertions on what the fake
//! GitHub, the fake JIRA, moto's ECS and the session store hold afterwards.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use cca_domain::control::control_token;
use cca_domain::decide::Rules;
use cca_domain::session::SessionPatch;
use cca_domain::{ImageChannel, SessionType, Source, Status};
use cca_testkit::control::FakeAgent;
use cca_testkit::github::RateLimit;
use cca_testkit::jira::Adf;
use serde_json::{Value, json};
use support::*;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A label by a collaborator: exactly one branch whose head is an empty commit on the default
/// branch, one draft PR that closes the issue, one session `PROVISIONING` with the task, one task.
#[tokio::test]
async fn label_by_collaborator_opens_branch_pr_session_and_task() {
    scenario(|stand| async move {
        let n = stand
            .github
            .add_issue(REPO, "Add a login page", "Email and password, please.");
        let (status, reply) = stand
            .deliver(
                "issues",
                &issue_labeled(
                    n,
                    "Add a login page",
                    "Email and password, please.",
                    "claude-dev",
                    "walt",
                ),
                &delivery(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["message"], "Session started");

        let branches = stand.new_branches();
        assert_eq!(branches.len(), 1, "{branches:?}");
        let (branch, head) = &branches[0];
        assert_eq!(branch, &format!("claude/{n}"));
        let head = stand.github.commit(REPO, head).expect("head commit");
        let main_head = stand.github.branches(REPO)["main"].clone();
        let base = stand.github.commit(REPO, &main_head).expect("main commit");
        assert_eq!(
            head.parents,
            vec![main_head.clone()],
            "branch starts on the default branch"
        );
        assert_eq!(
            head.tree, base.tree,
            "the first commit is empty: same tree as its parent"
        );

        let pulls = stand.github.pulls(REPO);
        assert_eq!(pulls.len(), 1);
        let pr = &pulls[0];
        assert!(pr.draft);
        assert_eq!(pr.title, "[Claude] Add a login page");
        assert_eq!(pr.head, format!("claude/{n}"));
        let body = pr.body.clone().unwrap_or_default();
        assert!(body.contains(&format!("Closes #{n}")), "{body}");
        assert!(body.contains("<!-- claude-agent -->"));

        let sessions = stand.sessions().await;
        assert_eq!(sessions.len(), 1);
        let s = &sessions[0];
        assert_eq!(s.status, Status::Provisioning);
        assert_eq!(
            (s.session_type, s.source),
            (SessionType::Agent, Source::Github)
        );
        assert_eq!(s.issue_number, Some(n));
        assert_eq!(s.pr_number, Some(pr.number));
        assert_eq!(s.branch_name.as_str(), format!("claude/{n}"));
        assert!(
            s.initial_prompt
                .as_deref()
                .unwrap_or("")
                .contains("Email and password")
        );
        assert_eq!(
            s.uat_url.as_deref(),
            Some(format!("https://{}.{DOMAIN}", s.session_id).as_str())
        );

        let tasks = stand.tasks().await;
        assert_eq!(tasks.len(), 1);
        assert_eq!(s.task_arn.as_deref(), Some(tasks[0].as_str()));
        assert_eq!(reply["task_arn"], tasks[0]);

        // The App authenticated with a JWT backdated 60 s and living under 10 minutes.
        let claims = stand.github.jwt_claims();
        assert!(!claims.is_empty());
        for c in claims {
            let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
            assert!(iat <= now() - 59 && iat >= now() - 70, "iat {iat}");
            assert!(exp - iat < 600, "lifetime {}", exp - iat);
        }
    })
    .await;
}

/// Nothing at all happens for a reader, a bot or a label that is not a trigger.
#[tokio::test]
async fn unpermitted_bot_or_other_label_does_nothing() {
    scenario(|stand| async move {
        let n = stand.github.add_issue(REPO, "T", "B");
        for (label, sender) in [
            ("claude-dev", "rita"),
            ("claude-dev", "tina"),
            ("claude-dev", "stranger"),
            ("claude-dev", "ci[bot]"),
            ("bug", "alice"),
        ] {
            let (status, reply) = stand
                .deliver(
                    "issues",
                    &issue_labeled(n, "T", "B", label, sender),
                    &delivery(),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{label} by {sender}: {reply}");
        }
        assert!(stand.new_branches().is_empty());
        assert!(stand.github.pulls(REPO).is_empty());
        assert!(stand.github.comments(REPO, n).is_empty());
        assert!(stand.sessions().await.is_empty());
        assert!(stand.tasks().await.is_empty());
    })
    .await;
}

/// 20 identical deliveries at once: one branch, one PR, one task; the rest are duplicates.
#[tokio::test]
async fn concurrent_identical_deliveries_act_once() {
    scenario(|stand| async move {
        stand
            .github
            .set_latency(std::time::Duration::from_millis(20));
        let n = stand.github.add_issue(REPO, "T", "B");
        let payload = issue_labeled(n, "T", "B", "claude-dev", "alice");
        let id = delivery();
        let replies =
            futures::future::join_all((0..20).map(|_| stand.deliver("issues", &payload, &id)))
                .await;
        assert!(
            replies.iter().all(|(s, _)| *s == StatusCode::OK),
            "{replies:?}"
        );
        let dupes = replies
            .iter()
            .filter(|(_, r)| r["message"] == "duplicate")
            .count();
        assert_eq!(dupes, 19);
        assert_eq!(stand.new_branches().len(), 1);
        assert_eq!(stand.github.pulls(REPO).len(), 1);
        assert_eq!(stand.tasks().await.len(), 1);
        assert_eq!(stand.sessions().await.len(), 1);
    })
    .await;
}

/// 20 different deliveries for the same issue at once: one session, one PR, one task.
#[tokio::test]
async fn concurrent_deliveries_for_one_issue_make_one_session() {
    scenario(|stand| async move {
        stand
            .github
            .set_latency(std::time::Duration::from_millis(20));
        let n = stand.github.add_issue(REPO, "T", "B");
        let payload = issue_labeled(n, "T", "B", "claude-dev", "alice");
        let ids: Vec<String> = (0..20).map(|_| delivery()).collect();
        let replies =
            futures::future::join_all(ids.iter().map(|id| stand.deliver("issues", &payload, id)))
                .await;
        assert!(
            replies.iter().all(|(s, _)| *s == StatusCode::OK),
            "{replies:?}"
        );
        let started = replies
            .iter()
            .filter(|(_, r)| r["message"] == "Session started")
            .count();
        assert_eq!(started, 1, "{replies:?}");
        assert_eq!(stand.sessions().await.len(), 1);
        assert_eq!(stand.github.pulls(REPO).len(), 1);
        assert_eq!(stand.new_branches().len(), 1);
        assert_eq!(stand.tasks().await.len(), 1);
    })
    .await;
}

/// A redelivery of a handled delivery has no side effect.
#[tokio::test]
async fn redelivery_is_a_duplicate() {
    scenario(|stand| async move {
        let n = stand.github.add_issue(REPO, "T", "B");
        let payload = issue_labeled(n, "T", "B", "claude-dev", "alice");
        let id = delivery();
        assert_eq!(
            stand.deliver("issues", &payload, &id).await.1["message"],
            "Session started"
        );
        let requests = stand.github.requests().len();
        let (status, reply) = stand.deliver("issues", &payload, &id).await;
        assert_eq!(
            (status, reply["message"].as_str()),
            (StatusCode::OK, Some("duplicate"))
        );
        assert_eq!(
            stand.github.requests().len(),
            requests,
            "no GitHub call for a duplicate"
        );
        assert_eq!(stand.tasks().await.len(), 1);
    })
    .await;
}

/// GitHub failing while the actor's permission is checked: the answer is a 502 and the delivery
/// is forgotten, so GitHub's redelivery does the work instead of being answered "duplicate".
#[tokio::test]
async fn a_5xx_during_the_permission_check_is_retried_by_the_redelivery() {
    scenario(|stand| async move {
        let n = stand.github.add_issue(REPO, "T", "B");
        let payload = issue_labeled(n, "T", "B", "claude-dev", "alice");
        let id = delivery();
        stand
            .github
            .fail_next("GET", "/collaborators/alice/permission", 503, 1);
        let (status, reply) = stand.deliver("issues", &payload, &id).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{reply}");
        assert!(stand.sessions().await.is_empty());
        assert!(stand.tasks().await.is_empty());
        let (status, reply) = stand.deliver("issues", &payload, &id).await;
        assert_eq!(
            (status, reply["message"].as_str()),
            (StatusCode::OK, Some("Session started")),
            "{reply}"
        );
        assert_eq!(stand.tasks().await.len(), 1);
        // Handled now: a third delivery of it is the duplicate.
        assert_eq!(
            stand.deliver("issues", &payload, &id).await.1["message"],
            "duplicate"
        );
    })
    .await;
}

/// A process that recorded a delivery and died before its work (the Lambda killed at its
/// time-out, a crash): the redelivery is a duplicate while the first may still be working, and
/// is handled once the delivery's lease has run out; a handled delivery stays a duplicate.
#[tokio::test]
async fn a_delivery_whose_handler_died_is_handled_again_after_its_lease() {
    scenario(|stand| async move {
        let n = stand.github.add_issue(REPO, "T", "B");
        let payload = issue_labeled(n, "T", "B", "claude-dev", "alice");
        let id = delivery();
        // Recorded a moment ago by a handler that is still running (or just died).
        assert!(stand.store.record_delivery(&id, now() - 10).await.unwrap());
        let (_, reply) = stand.deliver("issues", &payload, &id).await;
        assert_eq!(reply["message"], "duplicate", "{reply}");
        assert!(stand.tasks().await.is_empty());

        // Recorded longer ago than any handling takes, and never finished: it died.
        let died = delivery();
        assert!(
            stand
                .store
                .record_delivery(&died, now() - cca_store::DELIVERY_LEASE_SECS - 1)
                .await
                .unwrap()
        );
        let (status, reply) = stand.deliver("issues", &payload, &died).await;
        assert_eq!(
            (status, reply["message"].as_str()),
            (StatusCode::OK, Some("Session started")),
            "{reply}"
        );
        assert_eq!(stand.tasks().await.len(), 1);
        // Handled and finished: held for days, not for the lease.
        let later = now() + cca_store::DELIVERY_LEASE_SECS + 1;
        assert!(!stand.store.record_delivery(&died, later).await.unwrap());
    })
    .await;
}

/// GitHub's rate limits during a delivery: a short wait is sat out within GitHub's 10 s; a
/// long one answers at once with an error (and the delivery is forgotten for the redelivery).
#[tokio::test]
async fn rate_limits_are_waited_out_within_the_delivery_or_answered_at_once() {
    scenario(|stand| async move {
        let n = stand.github.add_issue(REPO, "T", "B");
        let payload = issue_labeled(n, "T", "B", "claude-dev", "alice");
        stand.github.rate_limit_next(
            "GET",
            "/collaborators/alice/permission",
            403,
            RateLimit::RetryAfter(1),
            1,
        );
        stand
            .github
            .rate_limit_next("POST", "/pulls", 429, RateLimit::ResetIn(1), 1);
        let started = std::time::Instant::now();
        let (status, reply) = stand.deliver("issues", &payload, &delivery()).await;
        assert_eq!(
            (status, reply["message"].as_str()),
            (StatusCode::OK, Some("Session started")),
            "{reply}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(stand.github.pulls(REPO).len(), 1);

        // A wait longer than the delivery has: answered at once, and GitHub can redeliver.
        let m = stand.github.add_issue(REPO, "U", "B");
        stand.github.set_permission(REPO, "bob", "write");
        let payload = issue_labeled(m, "U", "B", "claude-dev", "bob");
        let id = delivery();
        stand.github.rate_limit_next(
            "GET",
            "/collaborators/bob/permission",
            403,
            RateLimit::Unspecified,
            1,
        );
        let started = std::time::Instant::now();
        let (status, reply) = stand.deliver("issues", &payload, &id).await;
        assert!(status.is_server_error(), "{status} {reply}");
        assert!(reply.to_string().contains("rate-limited"), "{reply}");
        assert!(started.elapsed() < Duration::from_secs(3));
        let (_, again) = stand.deliver("issues", &payload, &id).await;
        assert_eq!(again["message"], "Session started", "{again}");
    })
    .await;
}

/// Installing the App (or adding repositories to it) makes the system's labels exist, so
/// nobody has to guess their names; a label that exists in any case is left as it is, and a
/// GitHub failure is answered 502 with the delivery forgotten for the redelivery.
#[tokio::test]
async fn installing_the_app_creates_the_labels_it_acts_on() {
    scenario(|stand| async move {
        stand.github.add_label(REPO, "UAT", "ff0000");
        // GitHub's recorded payloads, pointed at the stand's installation and repositories.
        let mut created = cca_testkit::fixtures::github_example("installation", Some("created"));
        created["installation"]["id"] = json!(INSTALLATION);
        created["repositories"] =
            json!([{ "full_name": REPO, "name": "app", "id": 1, "private": true }]);
        let (status, reply) = stand.deliver("installation", &created, &delivery()).await;
        assert_eq!(
            (status, reply["message"].as_str()),
            (StatusCode::OK, Some("Labels ensured")),
            "{reply}"
        );
        let mut names: Vec<(String, String)> = stand
            .github
            .labels(REPO)
            .into_iter()
            .map(|l| (l.name, l.color))
            .collect();
        names.sort();
        assert_eq!(names.len(), 5, "{names:?}");
        assert!(
            names.contains(&("UAT".into(), "ff0000".into())),
            "left as it was: {names:?}"
        );
        for wanted in [
            "claude-dev",
            "claude-dev-staging",
            "claude-plan",
            "uat-staging",
        ] {
            assert!(
                names.iter().any(|(n, _)| n == wanted),
                "{wanted} missing: {names:?}"
            );
        }

        let second = "octo/second";
        stand.github.add_repo(second);
        let mut added =
            cca_testkit::fixtures::github_example("installation_repositories", Some("added"));
        added["installation"]["id"] = json!(INSTALLATION);
        added["repositories_added"] =
            json!([{ "full_name": second, "name": "second", "id": 2, "private": false }]);
        stand.github.fail_next("POST", "/labels", 502, 1);
        let id = delivery();
        let (status, reply) = stand
            .deliver("installation_repositories", &added, &id)
            .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{reply}");
        let (status, reply) = stand
            .deliver("installation_repositories", &added, &id)
            .await;
        assert_eq!(status, StatusCode::OK, "the redelivery is handled: {reply}");
        assert_eq!(stand.github.labels(second).len(), 5);
        // Nothing else of an installation is acted on.
        let suspended = cca_testkit::fixtures::github_example("installation", Some("suspend"));
        let (status, reply) = stand.deliver("installation", &suspended, &delivery()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            reply["message"].as_str().unwrap().contains("not handled"),
            "{reply}"
        );
    })
    .await;
}

/// RunTask failing: the session ends `FAILED` with the reason, the PR gets one clear comment
/// with no secret in it, and the answer is an error naming the cause.
#[tokio::test]
async fn launch_failure_fails_the_session_and_says_so_once() {
    scenario_with(
        Options {
            missing_agent_task_definition: true,
            ..Options::default()
        },
        |stand| async move {
            let n = stand.github.add_issue(REPO, "T", "B");
            let id = delivery();
            let (status, reply) = stand
                .deliver(
                    "issues",
                    &issue_labeled(n, "T", "B", "claude-dev", "alice"),
                    &id,
                )
                .await;
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{reply}");
            let sessions = stand.sessions().await;
            assert_eq!(sessions.len(), 1);
            let s = &sessions[0];
            assert_eq!(s.status, Status::Failed);
            let error = s.error.clone().unwrap_or_default();
            assert!(
                error.contains(&stand.families.agent_latest),
                "the reason names the task definition: {error}"
            );
            assert!(s.ttl.is_some());
            let pr = s.pr_number.expect("the PR exists");
            let comments = stand.github.comments(REPO, pr);
            assert_eq!(comments.len(), 1, "{comments:?}");
            let body = &comments[0].body;
            assert!(
                body.contains("Agent failed to start")
                    && body.contains(&stand.families.agent_latest),
                "{body}"
            );
            let mut secrets: Vec<String> = vec![
                WEBHOOK_SECRET.into(),
                OLD_WEBHOOK_SECRET.into(),
                CONTROL_KEY.into(),
                JIRA_SECRET.into(),
            ];
            secrets.extend(stand.github.issued_tokens().into_iter().map(|t| t.token));
            for secret in &secrets {
                assert!(
                    !body.contains(secret.as_str()) && !reply.to_string().contains(secret.as_str()),
                    "secret leaked"
                );
            }

            // The failed delivery was forgotten: GitHub's redelivery is handled again (and, with the
            // task definition still missing, fails again and says so once more), not "duplicate".
            let (status, again) = stand
                .deliver(
                    "issues",
                    &issue_labeled(n, "T", "B", "claude-dev", "alice"),
                    &id,
                )
                .await;
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{again}");
            assert_eq!(stand.github.comments(REPO, pr).len(), 2);
            assert_eq!(
                stand.sessions().await.len(),
                1,
                "the same session was relaunched"
            );
        },
    )
    .await;
}

/// A review that requests changes reaches the agent as one prompt with every inline comment's
/// file, lines and hunk, and the threads to answer in; the same review by a reader or a bot, an
/// approval, and the review's own comment events reach nothing more.
#[tokio::test]
async fn a_review_requesting_changes_is_one_prompt_with_its_inline_comments_and_threads() {
    scenario(|stand| async move {
        let (agent, s) = stand.running_agent().await;
        let pr = s.pr_number.unwrap();
        let inline = cca_testkit::github::two_diff_comments();
        let review = |login: &str, state: &str| {
            let (id, comments) =
                stand
                    .github
                    .add_review(REPO, pr, login, state, "Two things, please.", &inline);
            (stand.github.review_event(REPO, id, INSTALLATION), comments)
        };

        // Not for the agent: a reader's, a bot's, an approval.
        for (login, state, why) in [
            ("rita", "CHANGES_REQUESTED", "lacks write permission"),
            ("ci[bot]", "CHANGES_REQUESTED", "is a bot"),
            ("alice", "APPROVED", "neither requests changes"),
        ] {
            let (event, _) = review(login, state);
            let (status, reply) = stand.deliver_new("pull_request_review", &event).await;
            assert!(
                reply.to_string().contains(why),
                "{login} {state}: {status} {reply}"
            );
        }
        assert!(agent.requests().is_empty(), "{:?}", agent.requests());

        let (event, comments) = review("maya", "CHANGES_REQUESTED");
        let (status, reply) = stand.deliver_new("pull_request_review", &event).await;
        assert_eq!(
            (status, reply["message"].as_str()),
            (StatusCode::OK, Some("Prompt forwarded")),
            "{reply}"
        );
        let reqs = agent.requests();
        assert_eq!(reqs.len(), 1, "{reqs:?}");
        let body = &reqs[0].body;
        let prompt = body["prompt"].as_str().unwrap();
        for want in [
            "Review from @maya on the PR (changes requested):",
            "Two things, please.",
            "1. `app.js`, lines 2-4:\nUse const here.",
            "-var a = 1;\n+let a = 1;",
            "2. `README.md`, line 7:\nSay what it does.",
            "-Old title\n+New title",
        ] {
            assert!(prompt.contains(want), "{want:?} not in {prompt}");
        }
        assert_eq!(body["author"], "maya");
        assert_eq!(
            body["review_threads"],
            json!([
                { "comment_id": comments[0], "path": "app.js" },
                { "comment_id": comments[1], "path": "README.md" },
            ])
        );
        assert_eq!(body["review_comments"], json!(comments));

        // GitHub also sends each inline comment's own event: without a mention it is nothing.
        let (_, reply) = stand
            .deliver_new(
                "pull_request_review_comment",
                &stand
                    .github
                    .review_comment_event(REPO, comments[0], INSTALLATION),
            )
            .await;
        assert!(reply.to_string().contains("does not mention"), "{reply}");
        assert_eq!(agent.requests().len(), 1);
    })
    .await;
}

/// Failed checks on a session's PR reach its agent with each failed check's name, what it said
/// and the end of its job log (read through GitHub's redirect); passing checks say only that;
/// a suite on a commit that heads no PR reaches nothing.
#[tokio::test]
async fn failed_checks_reach_the_agent_with_their_names_and_log_tails() {
    use cca_testkit::github::{ACTIONS_APP, CheckRunSpec};
    scenario(|stand| async move {
        let (agent, s) = stand.running_agent().await;
        let pr = s.pr_number.unwrap();
        let head = stand
            .github
            .pulls(REPO)
            .into_iter()
            .find(|p| p.number == pr)
            .unwrap()
            .head_sha;
        let log: String = (1..=200)
            .map(|i| format!("line {i}\n"))
            .chain(["FAIL app.test.js: expected 2, got 3\n".to_owned()])
            .collect();
        let suite = stand.github.add_check_suite(
            REPO,
            &head,
            &[
                CheckRunSpec {
                    name: "test".into(),
                    conclusion: "failure".into(),
                    app: ACTIONS_APP.into(),
                    log: Some(log),
                    ..CheckRunSpec::default()
                },
                CheckRunSpec {
                    name: "build".into(),
                    conclusion: "success".into(),
                    app: ACTIONS_APP.into(),
                    log: Some("ok".into()),
                    ..CheckRunSpec::default()
                },
            ],
        );
        let (status, reply) = stand
            .deliver_new(
                "check_suite",
                &stand.github.check_suite_event(REPO, suite, INSTALLATION),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let reqs = agent.requests();
        assert_eq!(reqs.len(), 1, "{reqs:?}");
        assert_eq!(reqs[0].path, "/checks");
        let body = &reqs[0].body;
        assert_eq!(body["head_sha"], head.as_str());
        assert_eq!(body["passed"], false);
        assert_eq!(body["checks"], json!(["test"]));
        let prompt = body["prompt"].as_str().unwrap();
        assert!(prompt.contains("### test (failure)"), "{prompt}");
        assert!(
            prompt.contains("FAIL app.test.js: expected 2, got 3"),
            "{prompt}"
        );
        assert!(
            !prompt.contains("line 100\n"),
            "only the log's tail: {prompt}"
        );
        assert!(
            !prompt.contains("build"),
            "a passing check is not a failure: {prompt}"
        );

        // Another workflow passing on the same commit is not "the checks pass".
        let green = |sha: &str| {
            stand.github.add_check_suite(
                REPO,
                sha,
                &[CheckRunSpec {
                    name: "test".into(),
                    conclusion: "success".into(),
                    app: ACTIONS_APP.into(),
                    ..CheckRunSpec::default()
                }],
            )
        };
        let passing = green(&head);
        let (_, reply) = stand
            .deliver_new(
                "check_suite",
                &stand.github.check_suite_event(REPO, passing, INSTALLATION),
            )
            .await;
        assert!(
            reply.to_string().contains("still running or failed"),
            "{reply}"
        );
        assert_eq!(agent.requests().len(), 1);
        // Every suite of a new head passing is.
        let fixed = stand
            .github
            .push_commit(REPO, s.branch_name.as_str(), "a fix");
        let passing = green(&fixed);
        stand
            .deliver_new(
                "check_suite",
                &stand.github.check_suite_event(REPO, passing, INSTALLATION),
            )
            .await;
        let reqs = agent.requests();
        assert_eq!(reqs.len(), 2, "{reqs:?}");
        assert_eq!(
            (reqs[1].body["passed"].as_bool(), reqs[1].body.get("prompt")),
            (Some(true), None)
        );

        // Checks on a commit that heads no PR.
        let elsewhere = stand.github.add_check_suite(
            REPO,
            "0000000000000000000000000000000000000000",
            &[CheckRunSpec {
                name: "test".into(),
                conclusion: "failure".into(),
                app: ACTIONS_APP.into(),
                ..CheckRunSpec::default()
            }],
        );
        let (_, reply) = stand
            .deliver_new(
                "check_suite",
                &stand
                    .github
                    .check_suite_event(REPO, elsewhere, INSTALLATION),
            )
            .await;
        assert!(reply.to_string().contains("no pull request"), "{reply}");
        assert_eq!(agent.requests().len(), 2);
    })
    .await;
}

/// A writer's `/claude status` is answered on the PR from the record; `/claude retry` and
/// `/claude budget +N` go to the agent; a reader's command reaches nothing, and an unknown one
/// is answered with the known ones.
#[tokio::test]
async fn commands_are_answered_or_sent_to_the_agent_for_writers_only() {
    scenario(|stand| async move {
        let (agent, s) = stand.running_agent().await;
        let pr = s.pr_number.unwrap();
        let (status, reply) = stand.comment(pr, "/claude budget +5", "rita").await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert!(
            reply.to_string().contains("lacks write permission"),
            "{reply}"
        );
        assert!(agent.requests().is_empty());

        stand.comment(pr, "/claude status", "maya").await;
        let said = stand
            .github
            .comments(REPO, pr)
            .into_iter()
            .rev()
            .find(|c| c.body.contains(&format!("**Session `{}`**", s.session_id)))
            .expect("the status is answered");
        assert!(said.body.contains("running"), "{}", said.body);

        stand.comment(pr, "/claude retry", "maya").await;
        stand.comment(pr, "/claude budget +2.5", "walt").await;
        let reqs = agent.requests();
        assert_eq!(
            reqs.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            ["/retry", "/budget"]
        );
        assert_eq!(reqs[1].body["add_usd"], 2.5);
        assert_eq!(reqs[1].body["author"], "walt");

        stand.comment(pr, "/claude dance", "maya").await;
        assert!(
            stand
                .github
                .comments(REPO, pr)
                .iter()
                .any(|c| c.body.contains("`/claude dance` is not a command")),
        );
        assert_eq!(agent.requests().len(), 2);
    })
    .await;
}

/// A permitted mention reaches the agent's control API with a valid token; bot, own, unmentioned
/// and unpermitted comments reach nothing.
#[tokio::test]
async fn comments_are_routed_only_when_permitted_and_meant() {
    scenario(|stand| async move {
        let (agent, s) = stand.running_agent().await;
        let pr = s.pr_number.unwrap();
        let token = control_token(CONTROL_KEY.as_bytes(), &s.session_id);

        for (body, author) in [
            ("@claude please fix", "ci[bot]"),
            ("<!-- claude-agent -->\n@claude done", "alice"),
            ("looks good to me", "alice"),
            ("@claude please fix", "rita"),
            ("@claude please fix", "stranger"),
        ] {
            let (status, reply) = stand.comment(pr, body, author).await;
            assert_eq!(status, StatusCode::OK, "{body} by {author}: {reply}");
        }
        assert!(agent.requests().is_empty(), "{:?}", agent.requests());

        let (status, reply) = stand
            .comment(pr, "@claude add a test, please", "maya")
            .await;
        assert_eq!(
            (status, reply["message"].as_str()),
            (StatusCode::OK, Some("Prompt forwarded")),
            "{reply}"
        );
        let reqs = agent.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].path.as_str()),
            ("POST", "/prompt")
        );
        assert_eq!(
            reqs[0].authorization.as_deref(),
            Some(format!("Bearer {token}").as_str())
        );
        assert_eq!(reqs[0].body["prompt"], "@claude add a test, please");
        assert_eq!(reqs[0].body["author"], "maya");
        assert_eq!(reqs[0].body["comment_id"], 424242);
    })
    .await;
}

/// Closing the PR stops every session of it: the agent is told to stop (and its task stopped),
/// the preview that never reported an address is ended directly.
#[tokio::test]
async fn closing_a_pr_stops_every_session() {
    scenario(|stand| async move {
        let (agent, s) = stand.running_agent().await;
        let pr = s.pr_number.unwrap();
        let head = s.branch_name.to_string();
        let (_, reply) = stand
            .deliver(
                "pull_request",
                &pull_request("labeled", pr, &head, Some("uat"), "alice", false),
                &delivery(),
            )
            .await;
        assert_eq!(reply["message"], "Preview started", "{reply}");
        assert_eq!(stand.tasks().await.len(), 2);

        let (status, reply) = stand
            .deliver(
                "pull_request",
                &pull_request("closed", pr, &head, None, "alice", true),
                &delivery(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let stops: Vec<_> = agent
            .requests()
            .into_iter()
            .filter(|r| r.path == "/stop")
            .collect();
        assert_eq!(stops.len(), 1);
        assert_eq!(stops[0].body["final_status"], "COMPLETED");
        let sessions = stand
            .store
            .by_pr(&cca_domain::RepoName::parse(REPO).unwrap(), pr)
            .await
            .unwrap();
        assert_eq!(sessions.len(), 2);
        for s in &sessions {
            match s.session_type {
                // The agent pushes its work and records its own end.
                SessionType::Agent => assert_eq!(s.status, Status::Stopping),
                SessionType::Preview => assert_eq!(s.status, Status::Completed),
            }
        }
        for (_, last) in stand.describe_tasks().await {
            assert_eq!(last, "STOPPED");
        }
    })
    .await;
}

/// An agent that reported an address but cannot be reached is not ended behind its back: it
/// stays `STOPPING` (its task is stopped, so SIGTERM makes it push and record its end).
#[tokio::test]
async fn an_unreachable_agent_is_left_stopping() {
    scenario(|stand| async move {
        let (_agent, s) = stand.running_agent().await;
        // The discard port: nothing listens there.
        let unreachable = SessionPatch {
            control_port: Some(9),
            ..SessionPatch::default()
        };
        stand
            .store
            .update(&s.session_id, unreachable, now())
            .await
            .unwrap();
        let pr = s.pr_number.unwrap();
        let (status, reply) = stand
            .deliver(
                "pull_request",
                &pull_request("closed", pr, s.branch_name.as_str(), None, "alice", false),
                &delivery(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(stand.status(&s.session_id).await, Status::Stopping);
        for (_, last) in stand.describe_tasks().await {
            assert_eq!(last, "STOPPED");
        }
    })
    .await;
}

/// `/claude stop` by a writer stops the agent session and says so.
#[tokio::test]
async fn stop_command_stops_the_agent() {
    scenario(|stand| async move {
        let (agent, s) = stand.running_agent().await;
        let pr = s.pr_number.unwrap();
        let (status, reply) = stand.comment(pr, "/claude stop", "rita").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            agent.requests().is_empty(),
            "a reader cannot stop it: {reply}"
        );
        let (_, reply) = stand.comment(pr, "/claude stop", "walt").await;
        assert_eq!(reply["message"], "Stopping", "{reply}");
        assert_eq!(
            agent
                .requests()
                .iter()
                .filter(|r| r.path == "/stop")
                .count(),
            1
        );
        assert_eq!(stand.status(&s.session_id).await, Status::Stopping);
    })
    .await;
}

/// Removing and re-adding the label after a failure starts the same session again, on the same
/// branch and PR.
#[tokio::test]
async fn relabel_relaunches_an_ended_session() {
    scenario(|stand| async move {
        let n = stand.github.add_issue(REPO, "T", "B");
        let (_, first) = stand
            .deliver(
                "issues",
                &issue_labeled(n, "T", "B", "claude-dev", "alice"),
                &delivery(),
            )
            .await;
        let id = cca_domain::SessionId::parse(first["session_id"].as_str().unwrap()).unwrap();
        stand
            .store
            .transition(
                &id,
                Status::Failed,
                SessionPatch {
                    error: Some("boom".into()),
                    ..Default::default()
                },
                now(),
            )
            .await
            .unwrap();
        let (_, again) = stand
            .deliver(
                "issues",
                &issue_labeled(n, "T", "B", "claude-dev", "alice"),
                &delivery(),
            )
            .await;
        assert_eq!(again["message"], "Session started", "{again}");
        assert_eq!(again["session_id"], first["session_id"]);
        let s = stand.store.get(&id).await.unwrap().unwrap();
        assert_eq!(
            (s.status, s.error.clone(), s.ttl),
            (Status::Provisioning, None, None)
        );
        assert_eq!(stand.github.pulls(REPO).len(), 1);
        assert_eq!(stand.new_branches().len(), 1);
        assert_eq!(stand.tasks().await.len(), 2);
    })
    .await;
}

/// Relabelled while the session is stopping: a stop that completes within the delivery's time
/// is followed by the relaunch; one that does not is answered on the issue, never dropped.
#[tokio::test]
async fn relabel_while_stopping_restarts_after_the_stop_or_says_it_will_not() {
    scenario(|stand| async move {
        let n = stand.github.add_issue(REPO, "T", "B");
        let label = || issue_labeled(n, "T", "B", "claude-dev", "alice");
        let (_, first) = stand.deliver("issues", &label(), &delivery()).await;
        let id = cca_domain::SessionId::parse(first["session_id"].as_str().unwrap()).unwrap();
        let stop = |id: cca_domain::SessionId| {
            let store = stand.store.clone();
            async move {
                store
                    .transition(&id, Status::Stopping, SessionPatch::default(), now())
                    .await
                    .unwrap();
            }
        };
        stop(id.clone()).await;
        // The agent records its end two seconds after the relabel arrives.
        let store = stand.store.clone();
        let ending = id.clone();
        let ender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            store
                .transition(&ending, Status::Stopped, SessionPatch::default(), now())
                .await
                .unwrap();
        });
        let (status, again) = stand.deliver("issues", &label(), &delivery()).await;
        ender.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["message"], "Session started", "{again}");
        assert_eq!(again["session_id"], first["session_id"]);
        assert_eq!(stand.tasks().await.len(), 2);

        // A stop that does not end in time: the relabel is answered on the PR.
        stop(id.clone()).await;
        let pr = stand
            .store
            .get(&id)
            .await
            .unwrap()
            .unwrap()
            .pr_number
            .unwrap();
        let before = stand.github.comments(REPO, pr).len();
        let (status, third) = stand.deliver("issues", &label(), &delivery()).await;
        assert_eq!(status, StatusCode::OK, "{third}");
        assert_eq!(
            third["message"], "Session stopping; not started again",
            "{third}"
        );
        let comments = stand.github.comments(REPO, pr);
        assert_eq!(comments.len(), before + 1, "{comments:?}");
        let said = &comments.last().unwrap().body;
        assert!(
            said.contains("still stopping") && said.contains("`claude-dev`"),
            "{said}"
        );
        assert_eq!(stand.tasks().await.len(), 2, "nothing launched");
    })
    .await;
}

/// A mention while the session is stopped launches it again with the comment as its prompt.
#[tokio::test]
async fn mention_relaunches_a_stopped_session() {
    scenario(|stand| async move {
        let (_agent, s) = stand.running_agent().await;
        stand
            .store
            .transition(
                &s.session_id,
                Status::Stopping,
                SessionPatch::default(),
                now(),
            )
            .await
            .unwrap();
        stand
            .store
            .transition(
                &s.session_id,
                Status::Stopped,
                SessionPatch::default(),
                now(),
            )
            .await
            .unwrap();
        let pr = s.pr_number.unwrap();
        let (_, reply) = stand
            .comment(pr, "@claude carry on with the tests", "alice")
            .await;
        assert_eq!(reply["message"], "Session relaunched", "{reply}");
        let s = stand.store.get(&s.session_id).await.unwrap().unwrap();
        assert_eq!(s.status, Status::Provisioning);
        assert!(
            s.initial_prompt
                .unwrap()
                .contains("carry on with the tests")
        );
        assert_eq!(stand.tasks().await.len(), 2);
    })
    .await;
}

/// A staging label runs the staging task definition and leaves the latest one untouched.
#[tokio::test]
async fn staging_launch_uses_the_staging_task_definition() {
    scenario(|stand| async move {
        let revisions = |family: String| {
            let ecs = stand.ecs.clone();
            async move {
                ecs.list_task_definitions()
                    .family_prefix(family)
                    .send()
                    .await
                    .unwrap()
                    .task_definition_arns()
                    .to_vec()
            }
        };
        let latest_before = revisions(stand.families.agent_latest.clone()).await;
        let n = stand.github.add_issue(REPO, "T", "B");
        let (_, reply) = stand
            .deliver(
                "issues",
                &issue_labeled(n, "T", "B", "claude-dev-staging", "alice"),
                &delivery(),
            )
            .await;
        assert_eq!(reply["message"], "Session started", "{reply}");
        let tasks = stand.describe_tasks().await;
        assert_eq!(tasks.len(), 1);
        assert!(
            tasks[0]
                .0
                .contains(&format!("/{}:", stand.families.agent_staging)),
            "{tasks:?}"
        );
        assert_eq!(
            revisions(stand.families.agent_latest.clone()).await,
            latest_before
        );
        assert_eq!(
            stand.sessions().await[0].image_channel,
            ImageChannel::Staging
        );
    })
    .await;
}

/// A PR labelled `uat` gets a preview session `tt-<branch>` and a preview task; new commits
/// refresh a running preview; removing the label stops it.
#[tokio::test]
async fn preview_lifecycle() {
    scenario(|stand| async move {
        let pr = stand.open_pr("feature/Login_Page").await;
        let (_, reply) = stand
            .deliver(
                "pull_request",
                &pull_request(
                    "labeled",
                    pr,
                    "feature/Login_Page",
                    Some("uat"),
                    "walt",
                    false,
                ),
                &delivery(),
            )
            .await;
        assert_eq!(reply["message"], "Preview started", "{reply}");
        assert_eq!(reply["session_id"], "tt-feature-login-page");
        let tasks = stand.describe_tasks().await;
        assert!(
            tasks[0]
                .0
                .contains(&format!("/{}:", stand.families.preview_latest))
        );

        let agent = FakeAgent::start(None).await;
        let id = cca_domain::SessionId::parse("tt-feature-login-page").unwrap();
        stand
            .store
            .transition(&id, Status::Starting, SessionPatch::default(), now())
            .await
            .unwrap();
        let patch = SessionPatch {
            container_ip: Some("127.0.0.1".into()),
            control_port: Some(agent.addr().port()),
            ..Default::default()
        };
        stand
            .store
            .transition(&id, Status::Running, patch, now())
            .await
            .unwrap();

        let mut sync = pull_request("synchronize", pr, "feature/Login_Page", None, "walt", false);
        sync["pull_request"]["head"]["sha"] = json!("0123456789abcdef0123456789abcdef01234567");
        let (_, reply) = stand.deliver("pull_request", &sync, &delivery()).await;
        assert_eq!(reply["message"], "Preview refreshing", "{reply}");
        let refresh = agent.requests();
        assert_eq!(refresh.len(), 1);
        assert_eq!(refresh[0].path, "/refresh");
        assert_eq!(
            refresh[0].body["head_sha"],
            "0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(
            refresh[0].authorization.as_deref(),
            Some(format!("Bearer {}", control_token(CONTROL_KEY.as_bytes(), &id)).as_str())
        );

        // Labelled again while running: one "already running" note, no second task.
        let (_, reply) = stand
            .deliver(
                "pull_request",
                &pull_request(
                    "labeled",
                    pr,
                    "feature/Login_Page",
                    Some("uat"),
                    "walt",
                    false,
                ),
                &delivery(),
            )
            .await;
        assert_eq!(reply["message"], "Session already exists");
        assert_eq!(stand.tasks().await.len(), 1);

        let (_, reply) = stand
            .deliver(
                "pull_request",
                &pull_request(
                    "unlabeled",
                    pr,
                    "feature/Login_Page",
                    Some("uat"),
                    "walt",
                    false,
                ),
                &delivery(),
            )
            .await;
        assert_eq!(reply["message"], "Stopping", "{reply}");
        assert_eq!(
            agent
                .requests()
                .iter()
                .filter(|r| r.path == "/stop")
                .count(),
            1
        );
        let comments: Vec<String> = stand
            .github
            .comments(REPO, pr)
            .into_iter()
            .map(|c| c.body)
            .collect();
        assert!(
            comments.iter().any(|c| c.contains("UAT Already Running")),
            "{comments:?}"
        );
        assert!(
            comments
                .iter()
                .any(|c| c.contains("UAT Environment Stopped")),
            "{comments:?}"
        );
    })
    .await;
}

/// A PR from a fork is previewed by its number (the agent fetches `refs/pull/<n>/head`, see
/// agent/tests/preview.rs), whatever its branch is called; one from a deleted fork is refused.
#[tokio::test]
async fn a_fork_pr_is_previewed_by_number_and_a_deleted_fork_is_refused_on_the_pr() {
    scenario(|stand| async move {
        // A contributor's fork with a branch named like the base's default branch: the session
        // records the PR, whose head (refs/pull/<n>/head) the preview fetches.
        let pr = stand.open_pr("fork-stand-in").await;
        let mut labeled = pull_request("labeled", pr, "main", Some("uat"), "walt", false);
        labeled["pull_request"]["head"]["repo"]["full_name"] = json!("contributor/app");
        let (_, reply) = stand.deliver("pull_request", &labeled, &delivery()).await;
        assert_eq!(reply["message"], "Preview started", "{reply}");
        let id = session_of(&reply);
        let session = stand.store.get(&id).await.unwrap().unwrap();
        assert_eq!(session.pr_number, Some(pr));
        assert_eq!(session.repo_full_name.as_str(), REPO);

        // The fork's owner pushes: nobody with write access has seen those commits, so the
        // preview stops (it is not refreshed) and the PR says how to preview them.
        let mut sync = pull_request("synchronize", pr, "main", None, "mallory", false);
        sync["pull_request"]["head"]["repo"]["full_name"] = json!("contributor/app");
        let (_, reply) = stand.deliver("pull_request", &sync, &delivery()).await;
        assert_eq!(reply["message"], "Stopping", "{reply}");
        let session = stand.store.get(&id).await.unwrap().unwrap();
        assert!(session.status.is_terminal(), "{:?}", session.status);
        let comments = stand.github.comments(REPO, pr);
        assert!(
            comments
                .iter()
                .any(|c| c.body.contains("UAT Environment Stopped")
                    && c.body.contains("pushed to the fork contributor/app")
                    && c.body.contains("add the label again")),
            "{comments:#?}"
        );

        // The fork is gone: GitHub sends `head.repo: null`. Nothing starts; the PR is told why.
        let gone = stand.open_pr("feature/gone").await;
        let mut labeled = pull_request("labeled", gone, "feature/gone", Some("uat"), "walt", false);
        labeled["pull_request"]["head"]["repo"] = Value::Null;
        let tasks_before = stand.describe_tasks().await.len();
        let (status, reply) = stand.deliver("pull_request", &labeled, &delivery()).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(
            reply["message"], "the PR's head repository is gone: not previewed",
            "{reply}"
        );
        assert_eq!(stand.describe_tasks().await.len(), tasks_before);
        let comments = stand.github.comments(REPO, gone);
        assert!(
            comments
                .iter()
                .any(|c| c.body.contains("UAT not started") && c.body.contains("deleted fork")),
            "{comments:#?}"
        );
    })
    .await;
}

/// Two PR branches that fold to the same readable preview id still get distinct sessions.
#[tokio::test]
async fn colliding_preview_ids_fall_back_to_hashed_ids() {
    scenario(|stand| async move {
        let (pa, pb) = (
            stand.open_pr("feature/x").await,
            stand.open_pr("feature-x").await,
        );
        let (_, a) = stand
            .deliver(
                "pull_request",
                &pull_request("labeled", pa, "feature/x", Some("uat"), "walt", false),
                &delivery(),
            )
            .await;
        let (_, b) = stand
            .deliver(
                "pull_request",
                &pull_request("labeled", pb, "feature-x", Some("uat"), "walt", false),
                &delivery(),
            )
            .await;
        assert_eq!(a["session_id"], "tt-feature-x");
        assert_eq!(b["message"], "Preview started", "{b}");
        assert_ne!(a["session_id"], b["session_id"]);
        assert_eq!(stand.tasks().await.len(), 2);
    })
    .await;
}

/// A JIRA label by an allowed person on a mapped project: branch, PR, session and a JIRA comment
/// with the links; the prompt keeps the description's paragraphs.
#[tokio::test]
async fn jira_label_starts_a_session_and_comments_back() {
    scenario_with(Options { rules: jira_allowing(&[JIRA_PERSON]), ..Options::default() }, |stand| async move {
        let description = Adf::new()
            .paragraph("Users need to reset their password from the login page.")
            .paragraph("The reset link expires after one hour.")
            .bullet_list(&["send the email", "show a confirmation"])
            .mention("557058:1", "Dave", "@Dave")
            .build();
        stand.jira.add_issue("AG-12", "Password reset", description.clone(), &["claude-dev"]);
        let payload = json!({
            "webhookEvent": "jira:issue_updated",
            "user": {"accountId": JIRA_PERSON, "accountType": "atlassian", "displayName": "Dave"},
            "issue": {"key": "AG-12", "fields": {"summary": "Password reset", "description": description,
                      "labels": ["backend", "claude-dev"], "project": {"key": "AG"}}},
            "changelog": {"items": [{"field": "labels", "fromString": "backend", "toString": "backend claude-dev"}]}
        });
        let (status, reply) = stand.deliver_jira(&payload, &delivery()).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["message"], "Session started", "{reply}");

        assert_eq!(stand.new_branches().into_iter().map(|(b, _)| b).collect::<Vec<_>>(), vec!["claude/ag-12".to_owned()]);
        let pulls = stand.github.pulls(REPO);
        assert_eq!(pulls.len(), 1);
        assert_eq!(pulls[0].title, "[Claude] AG-12: Password reset");
        assert!(pulls[0].body.clone().unwrap_or_default().contains(&format!("{}/browse/AG-12", stand.jira.url())));

        let s = &stand.sessions().await[0];
        assert_eq!((s.source, s.jira_issue_key.as_ref().map(|k| k.as_str())), (Source::Jira, Some("AG-12")));
        let prompt = s.initial_prompt.clone().unwrap();
        assert!(prompt.contains("reset their password from the login page.\n\nThe reset link expires"), "{prompt}");
        assert!(prompt.contains("- send the email"), "{prompt}");

        let comments = stand.jira.comments("AG-12");
        assert_eq!(comments.len(), 1);
        let text = comments[0].to_string();
        assert!(text.contains(&pulls[0].number.to_string()) && text.contains(s.session_id.as_str()), "{text}");
        assert_eq!(stand.tasks().await.len(), 1);

        // An unmapped project is refused with the reason; nothing else happens.
        let mut other = payload.clone();
        other["issue"]["key"] = json!("ZZ-1");
        other["issue"]["fields"]["project"]["key"] = json!("ZZ");
        let (_, reply) = stand.deliver_jira(&other, &delivery()).await;
        assert_eq!(reply["message"], "No repo mapping for project ZZ");
        assert_eq!(stand.sessions().await.len(), 1);
    })
    .await;
}

/// A JIRA label event for AG-7 by `user` (the JSON of the payload's `user`).
fn jira_labelled_by(user: Option<serde_json::Value>) -> serde_json::Value {
    let mut payload = json!({
        "webhookEvent": "jira:issue_updated",
        "issue": {"key": "AG-7", "fields": {"summary": "Export to CSV", "description": null,
                  "labels": ["claude-dev"], "project": {"key": "AG"}}},
        "changelog": {"items": [{"field": "labels", "fromString": "", "toString": "claude-dev"}]}
    });
    if let Some(user) = user {
        payload["user"] = user;
    }
    payload
}

/// A JIRA label by anyone but an allowed person (another person, an automation app, a
/// service-desk customer, nobody named) is answered 200 with the reason and does nothing; with
/// no account allowed at all, not even that person triggers.
#[tokio::test]
async fn jira_label_by_an_account_not_allowed_does_nothing() {
    scenario_with(Options {
            rules: jira_allowing(&[JIRA_PERSON]),
            ..Options::default()
        }, |stand| async move {
        stand
            .jira
            .add_issue("AG-7", "Export to CSV", json!(null), &["claude-dev"]);
        for (user, reason) in [
            (
                Some(json!({"accountId": "557058:eve", "accountType": "atlassian", "displayName": "Eve"})),
                "JIRA account 557058:eve is not allowed to start sessions",
            ),
            (
                Some(json!({"accountId": JIRA_PERSON, "accountType": "app", "displayName": "Dave"})),
                "is of type \"app\", not a person",
            ),
            (
                Some(json!({"accountId": "qm:0a1b2c", "accountType": "customer"})),
                "is of type \"customer\", not a person",
            ),
            (
                Some(json!({"displayName": "Dave"})),
                "the JIRA event names no acting account",
            ),
            (None, "the JIRA event names no acting account"),
        ] {
            let (status, reply) = stand
                .deliver_jira(&jira_labelled_by(user.clone()), &delivery())
                .await;
            assert_eq!(status, StatusCode::OK, "{user:?}: {reply}");
            let message = reply["message"].as_str().unwrap_or_default();
            assert!(message.contains(reason), "{user:?}: {reply}");
        }
        assert!(stand.sessions().await.is_empty());
        assert!(stand.new_branches().is_empty());
        assert!(stand.github.pulls(REPO).is_empty());
        assert!(stand.jira.comments("AG-7").is_empty());
        assert!(stand.tasks().await.is_empty());

        // The allowed person, on the same stand, starts the session.
        let person = json!({"accountId": JIRA_PERSON, "accountType": "atlassian"});
        let (_, reply) = stand
            .deliver_jira(&jira_labelled_by(Some(person.clone())), &delivery())
            .await;
        assert_eq!(reply["message"], "Session started", "{reply}");

        // Deny by default: without JIRA_ALLOWED_ACCOUNTS (or the opt-in) nobody triggers.
        let Some(closed) = Stand::new().await else {
            return;
        };
        let (status, reply) = closed
            .deliver_jira(&jira_labelled_by(Some(person)), &delivery())
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            reply["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("JIRA triggers are off"),
            "{reply}"
        );
        assert!(closed.sessions().await.is_empty() && closed.github.pulls(REPO).is_empty());
    })
    .await;
}

/// Wrong, missing, rotated-out and malformed signatures: 401 and nothing happens; the older
/// secret of a rotation is still accepted.
#[tokio::test]
async fn signatures_are_checked_before_anything() {
    scenario(|stand| async move {
        let n = stand.github.add_issue(REPO, "T", "B");
        let body = serde_json::to_vec(&issue_labeled(n, "T", "B", "claude-dev", "alice")).unwrap();
        let with = |sig: Option<String>| {
            let mut h = vec![
                ("x-github-event", "issues".to_owned()),
                ("x-github-delivery", delivery()),
            ];
            if let Some(s) = sig {
                h.push(("x-hub-signature-256", s));
            }
            h
        };
        for sig in [
            None,
            Some("sha256=00".into()),
            Some(cca_testkit::fixtures::sign_github("wrong", &body)),
            Some("md5=abc".into()),
        ] {
            let (status, reply) = stand
                .send("/webhooks/github", &with(sig), body.clone())
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
            assert!(reply["error"].as_str().unwrap().contains("signature"));
        }
        let (status, _) = stand
            .send(
                "/webhooks/jira",
                &[("x-hub-signature", "sha256=00".into())],
                b"{}".to_vec(),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(stand.sessions().await.is_empty() && stand.github.pulls(REPO).is_empty());
        let (status, reply) = stand
            .send(
                "/webhooks/github",
                &with(Some(cca_testkit::fixtures::sign_github(
                    OLD_WEBHOOK_SECRET,
                    &body,
                ))),
                body.clone(),
            )
            .await;
        assert_eq!(
            (status, reply["message"].as_str()),
            (StatusCode::OK, Some("Session started"))
        );
    })
    .await;
}

/// Removing the trigger label, or closing the issue, stops the issue's agent session.
#[tokio::test]
async fn unlabel_or_close_stops_the_issue_session() {
    scenario(|stand| async move {
        // Closed as completed (also what merging a PR that closes the issue sends) completes it.
        for (action, final_status) in [("unlabeled", "STOPPED"), ("closed", "COMPLETED")] {
            let (agent, s) = stand.running_agent().await;
            let n = s.issue_number.unwrap();
            let mut event = issue_labeled(n, "T", "B", "claude-dev", "rita");
            event["action"] = json!(action);
            let (status, reply) = stand.deliver("issues", &event, &delivery()).await;
            assert_eq!(
                (status, reply["message"].as_str()),
                (StatusCode::OK, Some("Stopping")),
                "{action}: {reply}"
            );
            let stops: Vec<_> = agent
                .requests()
                .into_iter()
                .filter(|r| r.path == "/stop")
                .collect();
            assert_eq!(stops.len(), 1, "{action}");
            assert_eq!(stops[0].body["final_status"], final_status);
            assert_eq!(stand.status(&s.session_id).await, Status::Stopping);
            // A second close finds nothing left to stop.
            let (_, reply) = stand.deliver("issues", &event, &delivery()).await;
            assert_eq!(
                reply["message"], "no active session to stop",
                "{action}: {reply}"
            );
        }
    })
    .await;
}

/// The control token goes only where the address policy allows. Under `cca up` (loopback
/// allowed) a mention reaches the agent on 127.0.0.1; with loopback refused, as deployed, the
/// same record gets no request at all: the commenter is told the agent cannot be reached, and
/// `/claude stop` ends the session without it.
#[tokio::test]
async fn control_calls_go_only_to_allowed_addresses() {
    scenario(|local| async move {
        let (agent, s) = local.running_agent().await;
        let pr = s.pr_number.unwrap();
        let (_, reply) = local.comment(pr, "@claude add a test", "maya").await;
        assert_eq!(reply["message"], "Prompt forwarded", "{reply}");
        assert_eq!(
            agent.requests().len(),
            1,
            "calls to loopback arrive in local mode"
        );

        let Some(deployed) = Stand::with(Options {
            refuse_loopback_agents: true,
            ..Options::default()
        })
        .await
        else {
            return;
        };
        let (agent, s) = deployed.running_agent().await;
        let pr = s.pr_number.unwrap();
        let (status, reply) = deployed.comment(pr, "@claude add a test", "maya").await;
        assert_eq!(
            (status, reply["message"].as_str()),
            (StatusCode::OK, Some("Agent cannot be reached")),
            "{reply}"
        );
        let comments: Vec<String> = deployed
            .github
            .comments(REPO, pr)
            .into_iter()
            .map(|c| c.body)
            .collect();
        let told = comments
            .iter()
            .find(|c| c.contains("could not be delivered"))
            .unwrap_or_else(|| panic!("{comments:?}"));
        assert!(
            told.contains("cannot be reached") && told.contains(s.session_id.as_str()),
            "{told}"
        );
        assert!(
            !told.contains("127.0.0.1"),
            "the PR is not told the recorded address: {told}"
        );

        let (_, reply) = deployed.comment(pr, "/claude stop", "walt").await;
        assert_eq!(reply["message"], "Stopping", "{reply}");
        assert!(
            agent.requests().is_empty(),
            "nothing was sent: {:?}",
            agent.requests()
        );
        assert_eq!(
            deployed.status(&s.session_id).await,
            Status::Stopped,
            "the webhook recorded the stop itself"
        );
        for (_, last) in deployed.describe_tasks().await {
            assert_eq!(last, "STOPPED");
        }
    })
    .await;
}

/// Records pointing at the task metadata service, AWS's IPv6 service addresses or the internet
/// get no control call even with loopback allowed: a follow-up is answered at once (no
/// connection is tried) and a stop is recorded by the webhook.
#[tokio::test]
async fn records_pointing_outside_the_allowed_ranges_get_no_control_call() {
    scenario(|stand| async move {
        for ip in [
            "169.254.170.2",
            "8.8.8.8",
            "fd00:ec2::254",
            "metadata.internal",
        ] {
            let (agent, s) = stand.running_agent().await;
            let moved = SessionPatch {
                container_ip: Some(ip.into()),
                ..SessionPatch::default()
            };
            stand
                .store
                .update(&s.session_id, moved, now())
                .await
                .unwrap();
            let pr = s.pr_number.unwrap();
            let started = std::time::Instant::now();
            let (status, reply) = stand.comment(pr, "@claude go on", "maya").await;
            assert_eq!(
                (status, reply["message"].as_str()),
                (StatusCode::OK, Some("Agent cannot be reached")),
                "{ip}: {reply}"
            );
            assert!(
                started.elapsed() < std::time::Duration::from_secs(2),
                "{ip}: refused without trying to connect"
            );
            let (_, reply) = stand.comment(pr, "/claude stop", "walt").await;
            assert_eq!(reply["message"], "Stopping", "{ip}: {reply}");
            assert_eq!(stand.status(&s.session_id).await, Status::Stopped, "{ip}");
            assert!(agent.requests().is_empty(), "{ip}");
        }
    })
    .await;
}

/// `MAX_ACTIVE_SESSIONS=1`: a second and third label wait in line with their places said on
/// their issues; the first one's stop starts the second at once, and when the second ends by
/// itself (as an idle agent records it) the queue serving that follows starts the third.
#[tokio::test]
async fn beyond_the_ceiling_sessions_wait_in_line_and_start_as_others_end() {
    let opts = Options {
        rules: Rules {
            max_active_sessions: 1,
            ..Rules::default()
        },
        ..Options::default()
    };
    scenario_with(opts, |stand| async move {
        let label = |n: u64| issue_labeled(n, "T", "B", "claude-dev", "alice");
        let issues: Vec<u64> = (0..3)
            .map(|_| stand.github.add_issue(REPO, "T", "B"))
            .collect();
        let (_, first) = stand.deliver_new("issues", &label(issues[0])).await;
        assert_eq!(first["message"], "Session started", "{first}");
        let mut queued = Vec::new();
        for (place, &n) in issues[1..].iter().enumerate() {
            // The line is kept to the second (the record's times): one label a second.
            if place > 0 {
                tokio::time::sleep(Duration::from_millis(1100)).await;
            }
            let (status, reply) = stand.deliver_new("issues", &label(n)).await;
            assert_eq!(
                (status, reply["message"].as_str()),
                (StatusCode::OK, Some("Session queued")),
                "{reply}"
            );
            assert_eq!(reply["place"], place + 1, "{reply}");
            let told = stand.github.comments(REPO, n);
            let want = if place == 0 {
                "next in line".to_owned()
            } else {
                format!("number {} in line", place + 1)
            };
            assert!(
                told.iter().any(|c| c.body.contains(&want)),
                "{want}: {told:#?}"
            );
            let id = session_of(&reply);
            let s = stand.store.get(&id).await.unwrap().unwrap();
            assert_eq!(s.status, Status::Queued);
            assert!(s.pr_number.is_some(), "its branch and PR are made: {s:?}");
            assert!(s.task_arn.is_none(), "no task while it waits: {s:?}");
            queued.push(id);
        }
        assert_eq!(stand.tasks().await.len(), 1, "one task under the ceiling");
        // A second label on a waiting issue says it exists, and changes nothing.
        let (_, again) = stand.deliver_new("issues", &label(issues[1])).await;
        assert_eq!(again["status"], "QUEUED", "{again}");

        // The first is stopped through the webhook: the next in line starts at once.
        let mut unlabel = label(issues[0]);
        unlabel["action"] = json!("unlabeled");
        let (_, reply) = stand.deliver_new("issues", &unlabel).await;
        assert_eq!(reply["message"], "Stopping", "{reply}");
        let second = stand.store.get(&queued[0]).await.unwrap().unwrap();
        assert_eq!(second.status, Status::Provisioning, "{second:?}");
        assert!(second.task_arn.is_some(), "{second:?}");
        assert_eq!(stand.status(&queued[1]).await, Status::Queued);
        assert_eq!(stand.tasks().await.len(), 2);

        // The second ends by itself, as an agent records its idle stop; the queue is served
        // (a server does it every few seconds, the Lambda on its scheduled sweep).
        let now = cca_domain::now();
        for to in [Status::Stopping, Status::Stopped] {
            stand
                .store
                .transition(&queued[0], to, SessionPatch::default(), now)
                .await
                .unwrap();
        }
        cca_webhook::act::start_turns(&stand.app, now).await;
        let third = stand.store.get(&queued[1]).await.unwrap().unwrap();
        assert_eq!(third.status, Status::Provisioning, "{third:?}");
        assert!(third.task_arn.is_some(), "{third:?}");
        // Served again, the queue is empty: nothing more starts.
        cca_webhook::act::start_turns(&stand.app, now).await;
        assert_eq!(stand.tasks().await.len(), 3);
    })
    .await;
}

/// `claude-plan` starts a session in plan mode; `/claude approve` reaches its agent only from a
/// writer, and only while a plan waits.
#[tokio::test]
async fn the_plan_label_plans_first_and_only_a_writers_approval_reaches_the_agent() {
    scenario(|stand| async move {
        let n = stand.github.add_issue(REPO, "Plan it", "B");
        let (_, reply) = stand
            .deliver_new(
                "issues",
                &issue_labeled(n, "Plan it", "B", "claude-plan", "alice"),
            )
            .await;
        assert_eq!(reply["message"], "Session started", "{reply}");
        let id = session_of(&reply);
        assert!(stand.store.get(&id).await.unwrap().unwrap().plan_mode);

        let (agent, s) = stand.running_agent().await;
        let pr = s.pr_number.unwrap();
        // Nothing is waiting yet: refused with the reason, nothing sent.
        stand.comment(pr, "/claude approve", "maya").await;
        assert!(agent.requests().is_empty());
        assert!(
            stand
                .github
                .comments(REPO, pr)
                .iter()
                .any(|c| c.body.contains("no plan waiting"))
        );
        let planning = SessionPatch {
            plan_mode: Some(true),
            runs: Some(1),
            ..SessionPatch::default()
        };
        stand
            .store
            .update(&s.session_id, planning, cca_domain::now())
            .await
            .unwrap();
        let (_, reply) = stand.comment(pr, "/claude approve", "rita").await;
        assert!(
            reply.to_string().contains("lacks write permission"),
            "a reader's approval: {reply}"
        );
        assert!(agent.requests().is_empty());
        stand.comment(pr, "/claude approve", "maya").await;
        let reqs = agent.requests();
        assert_eq!(
            reqs.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            ["/approve"]
        );
        assert_eq!(reqs[0].body["author"], "maya");
    })
    .await;
}

/// GitHub failing while a review's comments or a suite's check runs are read: a 5xx or a rate
/// limit longer than the delivery has answers 5xx with nothing sent to the agent, and the
/// redelivery sends it once; a job log GitHub cannot give leaves that check without a log, not
/// the run without its prompt.
#[tokio::test]
async fn github_failing_during_review_and_check_reads_is_answered_for_the_redelivery() {
    use cca_testkit::github::{ACTIONS_APP, CheckRunSpec};
    scenario(|stand| async move {
        let (agent, s) = stand.running_agent().await;
        let pr = s.pr_number.unwrap();
        let (review, _) = stand.github.add_review(
            REPO,
            pr,
            "maya",
            "CHANGES_REQUESTED",
            "Fix these.",
            &cca_testkit::github::two_diff_comments(),
        );
        let event = stand.github.review_event(REPO, review, INSTALLATION);
        let id = delivery();
        stand.github.fail_next("GET", "/comments", 502, 1);
        let (status, reply) = stand.deliver("pull_request_review", &event, &id).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{reply}");
        assert!(agent.requests().is_empty());
        stand
            .github
            .rate_limit_next("GET", "/comments", 429, RateLimit::Unspecified, 1);
        let (status, reply) = stand.deliver("pull_request_review", &event, &id).await;
        assert!(status.is_server_error(), "{status} {reply}");
        assert!(reply.to_string().contains("rate-limited"), "{reply}");
        assert!(agent.requests().is_empty());
        let (_, reply) = stand.deliver("pull_request_review", &event, &id).await;
        assert_eq!(reply["message"], "Prompt forwarded", "{reply}");
        assert_eq!(agent.requests().len(), 1);

        let head = stand
            .github
            .pulls(REPO)
            .into_iter()
            .find(|p| p.number == pr)
            .unwrap()
            .head_sha;
        let suite = stand.github.add_check_suite(
            REPO,
            &head,
            &[CheckRunSpec {
                name: "test".into(),
                conclusion: "failure".into(),
                app: ACTIONS_APP.into(),
                log: Some("FAIL: expected 2, got 3\n".into()),
                ..CheckRunSpec::default()
            }],
        );
        let event = stand.github.check_suite_event(REPO, suite, INSTALLATION);
        let id = delivery();
        stand.github.fail_next("GET", "/check-runs", 503, 1);
        let (status, reply) = stand.deliver("check_suite", &event, &id).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{reply}");
        assert_eq!(agent.requests().len(), 1, "nothing more sent");
        stand.github.fail_next("GET", "/logs", 500, 1);
        let (status, reply) = stand.deliver("check_suite", &event, &id).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let reqs = agent.requests();
        assert_eq!(reqs.len(), 2, "{reqs:?}");
        let prompt = reqs[1].body["prompt"].as_str().unwrap();
        assert!(prompt.contains("### test (failure)"), "{prompt}");
        assert!(!prompt.contains("expected 2, got 3"), "no log: {prompt}");
    })
    .await;
}

/// A queued session whose turn comes while ECS refuses its task ends `FAILED`, told on its PR,
/// and takes no place from those behind it.
#[tokio::test]
async fn a_queued_session_that_cannot_be_launched_fails_and_says_so() {
    let opts = Options {
        missing_agent_task_definition: true,
        rules: Rules {
            max_active_sessions: 1,
            ..Rules::default()
        },
        ..Options::default()
    };
    scenario_with(opts, |stand| async move {
        let first = stand.github.add_issue(REPO, "T", "B");
        let second = stand.github.add_issue(REPO, "U", "B");
        // The staging task definition exists; the latest one does not.
        let staging = issue_labeled(first, "T", "B", "claude-dev-staging", "alice");
        let (_, reply) = stand.deliver_new("issues", &staging).await;
        assert_eq!(reply["message"], "Session started", "{reply}");
        let (_, reply) = stand
            .deliver_new(
                "issues",
                &issue_labeled(second, "U", "B", "claude-dev", "alice"),
            )
            .await;
        assert_eq!(reply["message"], "Session queued", "{reply}");
        let waiting = session_of(&reply);

        let mut unlabel = staging;
        unlabel["action"] = json!("unlabeled");
        let (_, reply) = stand.deliver_new("issues", &unlabel).await;
        assert_eq!(reply["message"], "Stopping", "{reply}");
        let failed = stand.store.get(&waiting).await.unwrap().unwrap();
        assert_eq!(failed.status, Status::Failed, "{failed:?}");
        assert!(
            failed
                .error
                .as_deref()
                .is_some_and(|e| e.contains("could not be launched")),
            "{failed:?}"
        );
        let pr = failed.pr_number.unwrap();
        assert!(
            stand
                .github
                .comments(REPO, pr)
                .iter()
                .any(|c| c.body.contains("could not be launched")),
            "the PR is told"
        );
        assert_eq!(
            stand.tasks().await.len(),
            1,
            "only the first's task ever ran"
        );
    })
    .await;
}
