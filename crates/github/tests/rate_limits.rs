//! GitHub's rate limits against the fake, which answers them as GitHub does (403 or 429 with
//! `retry-after`, `x-ratelimit-reset`, or a secondary-limit message naming no time): the client
//! waits and tries again within its patience, and otherwise fails fast with the wait it was
//! asked for. A 403 that refuses permission is never retried.

use std::time::{Duration, Instant};

use cca_domain::RepoName;
use cca_github::{GitHub, GitHubError};
use cca_testkit::github::{FakeGitHub, RateLimit};

const REPO: &str = "octo/app";

async fn stand() -> (FakeGitHub, u64) {
    let f = FakeGitHub::start().await;
    f.add_installation(7);
    f.add_repo(REPO);
    let issue = f.add_issue(REPO, "T", "B");
    (f, issue)
}

mod support;

fn client(fake: &FakeGitHub, patience: Duration) -> GitHub {
    support::app(fake).with_rate_limit_patience(patience)
}

fn repo() -> RepoName {
    RepoName::parse(REPO).unwrap()
}

fn posts(fake: &FakeGitHub) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/comments"))
        .count()
}

#[tokio::test]
async fn a_rate_limited_comment_is_sent_once_the_wait_is_over() {
    for (status, limit) in [
        (403, RateLimit::RetryAfter(1)),
        (429, RateLimit::ResetIn(1)),
    ] {
        let (f, issue) = stand().await;
        let gh = client(&f, Duration::from_secs(10));
        let c = gh.client(None).await.unwrap();
        f.rate_limit_next("POST", "/comments", status, limit, 1);
        let started = Instant::now();
        c.comment(&repo(), issue, "hello").await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{limit:?}: tried again before the wait was over ({:?})",
            started.elapsed()
        );
        assert_eq!(f.comments(REPO, issue).len(), 1, "{limit:?}");
        assert_eq!(posts(&f), 2, "{limit:?}: one refused, one made");
    }
}

#[tokio::test]
async fn a_wait_longer_than_the_patience_fails_at_once_naming_it() {
    let (f, issue) = stand().await;
    let gh = client(&f, Duration::from_secs(4));
    let c = gh.client(None).await.unwrap();
    for (status, limit, wait) in [
        (403, RateLimit::RetryAfter(120), 120),
        (403, RateLimit::Unspecified, 60),
        (429, RateLimit::ResetIn(300), 301),
    ] {
        f.rate_limit_next("POST", "/comments", status, limit, 1);
        let started = Instant::now();
        let e = c.comment(&repo(), issue, "hello").await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{limit:?} waited"
        );
        match &e {
            GitHubError::RateLimited {
                wait: w, status: s, ..
            } => {
                assert_eq!(*s, status);
                // The reset is whole seconds: a second either way.
                assert!(w.as_secs().abs_diff(wait) <= 1, "{limit:?}: {w:?}");
            }
            other => panic!("{limit:?}: {other:?}"),
        }
        assert!(e.is_transient(), "a rate limit is worth retrying later");
        assert_eq!(e.status(), None, "not a refusal");
    }
    assert!(f.comments(REPO, issue).is_empty());
}

#[tokio::test]
async fn a_403_refusal_is_not_mistaken_for_a_rate_limit() {
    let (f, issue) = stand().await;
    let gh = client(&f, Duration::from_secs(10));
    let c = gh.client(None).await.unwrap();
    f.fail_next("POST", "/comments", 403, 1);
    let e = c.comment(&repo(), issue, "hello").await.unwrap_err();
    assert_eq!(e.status(), Some(403), "{e:?}");
    assert_eq!(posts(&f), 1, "not retried");
}

#[tokio::test]
async fn the_fake_enforces_githubs_secondary_limit_on_content_creation() {
    let (f, issue) = stand().await;
    f.set_content_limit(3);
    let gh = client(&f, Duration::ZERO);
    let c = gh.client(None).await.unwrap();
    for i in 0..3 {
        c.comment(&repo(), issue, &format!("comment {i}"))
            .await
            .unwrap();
    }
    let e = c.comment(&repo(), issue, "one too many").await.unwrap_err();
    let GitHubError::RateLimited { wait, message, .. } = &e else {
        panic!("{e:?}")
    };
    assert!((55..=60).contains(&wait.as_secs()), "{wait:?}");
    assert!(message.contains("secondary rate limit"), "{message}");
    // Reading is not limited.
    c.issue(&repo(), issue).await.unwrap();
    assert_eq!(f.comments(REPO, issue).len(), 3);
}
