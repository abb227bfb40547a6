//! App authentication against the stateful fake GitHub: JWT claims, installation tokens cached
//! until shortly before expiry, repository-scoped tokens, and the personal token mode.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cca_domain::{BranchName, Login, RepoName};
use cca_github::{GitHub, GitHubAuth, Permission};
use cca_testkit::github::{APP_ID, AuthKind, FakeGitHub};
use secrecy::{ExposeSecret, SecretString};

mod support;
use support::app;

async fn fake() -> FakeGitHub {
    let f = FakeGitHub::start().await;
    f.add_installation(7);
    f.add_repo("octo/app");
    f.add_repo("octo/other");
    f
}

fn repo() -> RepoName {
    RepoName::parse("octo/app").unwrap()
}

#[tokio::test]
async fn jwt_is_backdated_and_short_lived() {
    let f = fake().await;
    let gh = app(&f);
    gh.client(Some(7))
        .await
        .unwrap()
        .repo(&repo())
        .await
        .unwrap();
    let claims = f.jwt_claims();
    assert_eq!(claims.len(), 1);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (iat, exp) = (
        claims[0]["iat"].as_i64().unwrap(),
        claims[0]["exp"].as_i64().unwrap(),
    );
    assert!(
        (now - 70..=now - 59).contains(&iat),
        "iat {iat} vs now {now}"
    );
    assert!(exp > now && exp - iat < 600, "exp {exp}");
    assert_eq!(claims[0]["iss"], APP_ID.to_string());
}

#[tokio::test]
async fn installation_tokens_are_cached_and_shared() {
    let f = fake().await;
    let gh = app(&f);
    let clients = futures::future::join_all((0..10).map(|_| gh.client(None))).await;
    for c in clients {
        c.unwrap().repo(&repo()).await.unwrap();
    }
    assert_eq!(
        f.issued_tokens().len(),
        1,
        "concurrent callers share one token"
    );
    let used: std::collections::HashSet<String> = f
        .requests()
        .into_iter()
        .filter_map(|r| match r.auth {
            AuthKind::Installation(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(used.len(), 1);
}

#[tokio::test]
async fn tokens_near_expiry_are_replaced() {
    let f = fake().await;
    // Four minutes is inside the five-minute refresh margin: every use mints anew.
    f.set_token_lifetime(Duration::from_secs(240));
    let gh = app(&f);
    for _ in 0..3 {
        gh.client(Some(7))
            .await
            .unwrap()
            .repo(&repo())
            .await
            .unwrap();
    }
    assert_eq!(f.issued_tokens().len(), 3);
}

#[tokio::test]
async fn scoped_tokens_reach_only_their_repository() {
    let f = fake().await;
    let gh = app(&f);
    let token = gh.installation_token(7, Some(&repo())).await.unwrap();
    let issued = f.issued_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(
        issued[0].repositories.as_deref(),
        Some(&["octo/app".to_owned()][..])
    );
    assert_eq!(issued[0].token, token.token.expose_secret());
    assert!(token.expires_at > SystemTime::now() + Duration::from_secs(3000));
    let http = reqwest::Client::new();
    let get = |r: &str| {
        http.get(format!("{}/repos/{r}", f.url()))
            .bearer_auth(token.token.expose_secret())
            .send()
    };
    assert_eq!(get("octo/app").await.unwrap().status(), 200);
    assert_eq!(get("octo/other").await.unwrap().status(), 404);
}

#[tokio::test]
async fn personal_token_mode_uses_the_token_directly() {
    let f = fake().await;
    f.add_personal_token("ghp_personal_for_tests");
    let gh = GitHub::new(
        f.url(),
        GitHubAuth::Token(SecretString::from("ghp_personal_for_tests")),
    )
    .unwrap();
    let c = gh.client(None).await.unwrap();
    assert_eq!(c.repo(&repo()).await.unwrap().default_branch, "main");
    assert!(f.jwt_claims().is_empty() && f.issued_tokens().is_empty());
    assert!(f.requests().iter().all(|r| r.auth == AuthKind::Personal));
}

#[tokio::test]
async fn permissions_are_read_and_cached() {
    let f = fake().await;
    for (who, role) in [
        ("ann", "admin"),
        ("max", "maintain"),
        ("wes", "write"),
        ("tom", "triage"),
        ("rob", "read"),
    ] {
        f.set_permission("octo/app", who, role);
    }
    let c = app(&f).client(None).await.unwrap();
    let p = |who: &str| {
        let c = c.clone();
        let who = Login::parse(who).unwrap();
        async move { c.permission(&repo(), &who).await.unwrap() }
    };
    assert_eq!(p("ann").await, Permission::Admin);
    assert_eq!(p("max").await, Permission::Maintain);
    assert_eq!(p("wes").await, Permission::Write);
    assert_eq!(p("tom").await, Permission::Triage);
    assert_eq!(p("rob").await, Permission::Read);
    assert_eq!(p("nobody").await, Permission::None);
    let lookups = f.permission_lookups();
    assert_eq!(p("ann").await, Permission::Admin);
    assert_eq!(
        f.permission_lookups(),
        lookups,
        "a second look-up within a minute is cached"
    );
}

#[tokio::test]
async fn branch_and_pr_are_idempotent() {
    let f = fake().await;
    let c = app(&f).client(None).await.unwrap();
    let branch = BranchName::parse("claude/1").unwrap();
    let a = c
        .ensure_branch(&repo(), "main", &branch, "start")
        .await
        .unwrap();
    let b = c
        .ensure_branch(&repo(), "main", &branch, "start")
        .await
        .unwrap();
    assert_eq!(a, b);
    let p1 = c
        .ensure_draft_pr(&repo(), &branch, "main", "t", "b")
        .await
        .unwrap();
    let p2 = c
        .ensure_draft_pr(&repo(), &branch, "main", "t", "b")
        .await
        .unwrap();
    assert_eq!(p1, p2);
    assert_eq!(f.pulls("octo/app").len(), 1);
    // A repository whose plan has no drafts (422): a ready PR, which says why, and a retry
    // finds it rather than opening a second.
    f.refuse_drafts("octo/other");
    let other = RepoName::parse("octo/other").unwrap();
    c.ensure_branch(&other, "main", &branch, "start")
        .await
        .unwrap();
    let ready = c
        .ensure_draft_pr(&other, &branch, "main", "t", "Closes #4")
        .await
        .unwrap();
    assert!(!ready.draft);
    let pulls = f.pulls("octo/other");
    assert_eq!(pulls.len(), 1);
    assert!(!pulls[0].draft);
    let body = pulls[0].body.clone().unwrap_or_default();
    assert!(body.starts_with("Closes #4"), "{body}");
    assert!(body.contains(cca_github::READY_NOT_DRAFT_NOTE), "{body}");
    let again = c
        .ensure_draft_pr(&other, &branch, "main", "t", "Closes #4")
        .await
        .unwrap();
    assert_eq!(again.number, ready.number);
    assert_eq!(f.pulls("octo/other").len(), 1);
    let missing = c
        .ensure_branch(
            &repo(),
            "nope",
            &BranchName::parse("claude/2").unwrap(),
            "m",
        )
        .await;
    assert_eq!(missing.unwrap_err().status(), Some(404));
}
