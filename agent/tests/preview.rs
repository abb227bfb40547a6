//! `cca-agent preview` end to end: a PR branch with a small Node app, cloned over HTTP from the
//! fake GitHub, installed and served; a deployment status pointing at the preview URL; a push
//! and `POST /refresh` showing the new content; the idle timeout counting proxy traffic.

mod support;

use std::time::{Duration, Instant};

use cca_domain::Status;
use cca_domain::session::{SessionPatch, SessionType};
use cca_store::SessionStore;
use serde_json::json;
use support::{REPO, Stand, now, scenario};

const BRANCH: &str = "feature-x";

async fn page(port: u16) -> Option<String> {
    let resp = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    resp.text().await.ok()
}

async fn wait_page(stand: &Stand, port: u16, want: &str) {
    let start = Instant::now();
    loop {
        if page(port).await.as_deref() == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the app never answered {want:?} (last: {:?})\n{}",
            page(port).await,
            stand.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_serves_the_branch_deploys_and_follows_a_push() {
    scenario(
        Stand::new(SessionType::Preview, BRANCH),
        |stand| async move {
            let mut agent = stand.spawn("preview");
            let s = stand
                .wait_status(Status::Running, Duration::from_secs(90))
                .await;
            let port = s.app_port.expect("app port recorded");
            assert_eq!(s.container_ip.as_deref(), Some("127.0.0.1"));
            wait_page(&stand, port, "preview 1\n").await;

            // The deployment status points at the preview URL.
            let url = s.uat_url.clone().unwrap();
            let wait_deployments = |n: usize| {
                let stand = &stand;
                async move {
                    let start = Instant::now();
                    loop {
                        let d = stand.github.deployments(REPO);
                        if d.len() >= n && d.iter().all(|d| !d.statuses.is_empty()) {
                            return d;
                        }
                        assert!(start.elapsed() < Duration::from_secs(30), "{d:#?}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            };
            let deployments = wait_deployments(1).await;
            let first = &deployments[0];
            let head1 = stand.github.git_log(REPO, BRANCH)[0].sha.clone();
            assert_eq!(first.sha, head1);
            assert_eq!(first.environment, "preview");
            let status = first.statuses.last().unwrap();
            assert_eq!(status.state, "success");
            assert_eq!(status.environment_url.as_deref(), Some(url.as_str()));

            // A push, then the webhook's refresh: the new content is served.
            let head2 =
                stand
                    .github
                    .commit_file(REPO, BRANCH, "version.txt", "2\n", "Bump version");
            let (code, body) = stand
                .control(
                    "POST",
                    "/refresh",
                    Some(&stand.token()),
                    json!({ "head_sha": head2 }),
                )
                .await;
            assert_eq!(code, 202, "{body}");
            wait_page(&stand, port, "preview 2\n").await;
            let deployments = wait_deployments(2).await;
            assert_eq!(deployments.len(), 2);
            assert!(deployments.iter().any(|d| d.sha == head2));

            // Unauthenticated refreshes change nothing.
            let (code, _) = stand.control("POST", "/refresh", None, json!({})).await;
            assert_eq!(code, 401);

            // Stop: the app is gone, the deployments inactive, the record ended.
            let (code, _) = stand
                .control(
                    "POST",
                    "/stop",
                    Some(&stand.token()),
                    json!({ "reason": "PR closed", "final_status": "COMPLETED" }),
                )
                .await;
            assert_eq!(code, 202);
            let exit = stand.wait_exit(&mut agent, Duration::from_secs(25)).await;
            assert!(exit.success(), "{exit:?}\n{}", stand.log_text());
            assert_eq!(stand.record().await.status, Status::Completed);
            assert!(page(port).await.is_none(), "the app outlived the preview");
            for d in stand.github.deployments(REPO) {
                assert_eq!(d.statuses.last().unwrap().state, "inactive", "{d:#?}");
            }
        },
    )
    .await;
}

/// A PR from a fork: the preview runs the fork's commit (GitHub's `refs/pull/<n>/head` of the
/// base repository), never the base repository's branch of the same name, and a refresh reads
/// the PR's ref again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_pr_previews_the_forks_commit_not_a_base_branch_of_the_same_name() {
    const FORK: &str = "contributor/app";
    let fork_pr = std::sync::Arc::new(std::sync::Mutex::new(0));
    let number = fork_pr.clone();
    scenario(
        Stand::new_on(
            SessionType::Preview,
            BRANCH,
            move |github| {
                github.add_repo(FORK);
                github.host_git(FORK);
                for (path, content) in support::PREVIEW_APP {
                    let content = if path == "version.txt" {
                        "fork 1\n"
                    } else {
                        content
                    };
                    github.commit_file(FORK, BRANCH, path, content, &format!("Add {path}"));
                }
                // The fork declares its own preview public: only the default branch may.
                github.commit_file(
                    FORK,
                    BRANCH,
                    ".cca.toml",
                    "[preview]\npublic = true\n",
                    "Make my preview public",
                );
                *number.lock().unwrap() = github.open_fork_pull(REPO, FORK, BRANCH, "From a fork");
            },
            |_| {},
        ),
        |stand| async move {
            // The stand's own PR is from the base repository's `feature-x`; the session previews the
            // fork's PR, whose branch has the same name.
            let pr = *fork_pr.lock().unwrap();
            stand
                .store
                .update(
                    &stand.session.session_id,
                    SessionPatch {
                        pr_number: Some(pr),
                        ..SessionPatch::default()
                    },
                    now(),
                )
                .await
                .unwrap();
            assert!(
                stand.github.branches(REPO).contains_key(BRANCH),
                "the base repository has a branch of the same name"
            );
            let mut agent = stand.spawn("preview");
            let s = stand
                .wait_status(Status::Running, Duration::from_secs(90))
                .await;
            let port = s.app_port.expect("app port recorded");
            assert!(
                !s.preview_public,
                "a fork's .cca.toml cannot open its preview to anyone"
            );
            wait_page(&stand, port, "preview fork 1\n").await;

            // The contributor pushes to the fork and GitHub updates the PR's ref: a refresh shows it.
            // (The webhook stops a fork's preview on a push instead, until a writer labels it again;
            // what is tested here is that the preview reads the PR's ref, not a branch.)
            stand
                .github
                .commit_file(FORK, BRANCH, "version.txt", "fork 2\n", "Bump");
            let head = stand.github.sync_fork_pull(REPO, pr);
            let (code, body) = stand
                .control(
                    "POST",
                    "/refresh",
                    Some(&stand.token()),
                    json!({ "head_sha": head }),
                )
                .await;
            assert_eq!(code, 202, "{body}");
            wait_page(&stand, port, "preview fork 2\n").await;
            // The app may serve the new files before the refresh's deployment is recorded.
            let start = Instant::now();
            loop {
                let deployments = stand.github.deployments(REPO);
                if deployments.iter().any(|d| d.sha == head) {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "{deployments:#?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            stand.stop(&mut agent).await;
        },
    )
    .await;
}

/// A PR whose head the base repository no longer has (say, a PR number of another
/// repository's): the preview fails with the reason on the PR, and serves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pr_head_that_cannot_be_fetched_fails_the_preview_saying_why() {
    scenario(
        Stand::new_on(
            SessionType::Preview,
            BRANCH,
            |github| {
                // The default branch declares previews public: recorded before anything else.
                github.commit_file(
                    REPO,
                    "main",
                    ".cca.toml",
                    "[preview]\npublic = true\n",
                    "Public previews",
                );
            },
            |s| {
                s.pr_number = Some(4242);
            },
        ),
        |stand| async move {
            let mut agent = stand.spawn("preview");
            let exit = stand.wait_exit(&mut agent, Duration::from_secs(60)).await;
            assert!(!exit.success(), "{}", stand.log_text());
            let record = stand.record().await;
            assert_eq!(record.status, Status::Failed, "{}", stand.log_text());
            assert!(
                record.preview_public,
                "the default branch's [preview] public"
            );
            let error = record.error.unwrap_or_default();
            assert!(error.contains("refs/pull/4242/head"), "{error}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_traffic_keeps_a_preview_alive_and_its_absence_ends_it_after_one_warning() {
    scenario(
        Stand::new(SessionType::Preview, BRANCH),
        |mut stand| async move {
            stand.set("IDLE_TIMEOUT_SECS", "6");
            stand.set("IDLE_WARNING_SECS", "3");
            let mut agent = stand.spawn("preview");
            stand
                .wait_status(Status::Running, Duration::from_secs(90))
                .await;
            // The proxy records activity as visitors use the preview: 10 s of it, past the timeout.
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                let patch = SessionPatch {
                    last_activity: Some(now()),
                    ..SessionPatch::default()
                };
                stand
                    .store
                    .update(&stand.session.session_id, patch, now())
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            assert_eq!(
                stand.record().await.status,
                Status::Running,
                "{}",
                stand.log_text()
            );
            assert!(
                stand
                    .comments()
                    .iter()
                    .all(|c| !c.body.contains("Idle Warning"))
            );
            // Then nobody comes.
            stand
                .wait_comment("Idle Warning", Duration::from_secs(20))
                .await;
            stand
                .wait_comment("Preview stopped", Duration::from_secs(20))
                .await;
            stand.wait_exit(&mut agent, Duration::from_secs(25)).await;
            assert_eq!(stand.record().await.status, Status::Stopped);
            assert_eq!(
                stand
                    .comments()
                    .iter()
                    .filter(|c| c.body.contains("Idle Warning"))
                    .count(),
                1
            );
        },
    )
    .await;
}
