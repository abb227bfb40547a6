//! Hosted repositories of the fake GitHub: a real git client clones, fetches and pushes them over
//! HTTP with installation tokens, and the API the product reads agrees with what was pushed.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use cca_domain::{BranchName, RepoName};
use cca_github::{AppCredentials, GitHub, GitHubAuth, RepoClient};
use cca_testkit::github::{APP_ID, AuthKind, FakeGitHub, PUSH_LOG_FILE, app_private_key_pem};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

const REPO: &str = "acme/widgets";
const INSTALLATION: u64 = 7;

fn repo() -> RepoName {
    RepoName::parse(REPO).expect("repository name")
}

fn branch(name: &str) -> BranchName {
    BranchName::parse(name).expect("branch name")
}

/// A fake with one installation, the hosted repository and a second, plain one.
async fn hosted() -> FakeGitHub {
    let fake = FakeGitHub::start().await;
    fake.add_installation(INSTALLATION);
    fake.add_repo(REPO);
    fake.add_repo("acme/other");
    fake.host_git(REPO);
    fake
}

/// The product's GitHub client, as the App.
fn app(fake: &FakeGitHub) -> GitHub {
    let key = SecretString::from(app_private_key_pem().to_owned());
    let app = AppCredentials::new(APP_ID, &key).expect("App key");
    GitHub::new(
        fake.url(),
        GitHubAuth::App {
            app,
            default_installation: Some(INSTALLATION),
        },
    )
    .expect("GitHub client")
}

/// An installation token limited to the repository, minted as an agent container gets it.
async fn agent_token(fake: &FakeGitHub) -> String {
    app(fake)
        .installation_token(INSTALLATION, Some(&repo()))
        .await
        .expect("installation token")
        .token
        .expose_secret()
        .to_owned()
}

async fn client(fake: &FakeGitHub) -> RepoClient {
    app(fake)
        .client(Some(INSTALLATION))
        .await
        .expect("repository client")
}

/// Runs git in `dir` without blocking the runtime the fake is served from. The token goes in an
/// extra header from the environment, never in the URL; prompts are off so refusals fail fast,
/// and no configuration of the host applies.
async fn git(dir: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let home = dir.join(".test-home");
    std::fs::create_dir_all(&home).expect("git home");
    let mut command = tokio::process::Command::new("git");
    command
        .current_dir(dir)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Agent")
        .env("GIT_AUTHOR_EMAIL", "agent@example.com")
        .env("GIT_COMMITTER_NAME", "Agent")
        .env("GIT_COMMITTER_EMAIL", "agent@example.com")
        .kill_on_drop(true);
    if let Some(token) = token {
        let basic = BASE64.encode(format!("x-access-token:{token}"));
        command
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env(
                "GIT_CONFIG_VALUE_0",
                format!("Authorization: Basic {basic}"),
            );
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("git finished within a minute")
        .expect("git runs")
}

/// Runs git and insists it succeeded; standard output, trimmed.
async fn git_ok(dir: &Path, token: Option<&str>, args: &[&str]) -> String {
    let out = git(dir, token, args).await;
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn clone(fake: &FakeGitHub, work: &Path, token: &str) -> std::path::PathBuf {
    let url = client(fake)
        .await
        .repo(&repo())
        .await
        .expect("repo")
        .clone_url;
    git_ok(work, Some(token), &["clone", "--quiet", &url, "clone"]).await;
    work.join("clone")
}

async fn api_get(fake: &FakeGitHub, token: &str, path: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", fake.url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("API request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn api_send(
    fake: &FakeGitHub,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", fake.url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("API request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn clone_and_push_with_an_installation_token_agree_with_the_api() {
    let fake = hosted().await;
    let work = tempfile::tempdir().expect("work dir");
    let token = agent_token(&fake).await;
    let main = fake.branches(REPO)["main"].clone();
    assert_eq!(fake.git_log(REPO, "main")[0].sha, main);

    let info = client(&fake).await.repo(&repo()).await.expect("repo");
    assert_eq!(info.clone_url, fake.git_url(REPO));
    assert!(fake.is_hosted(REPO) && !fake.is_hosted("acme/other"));

    let checkout = clone(&fake, work.path(), &token).await;
    assert_eq!(git_ok(&checkout, None, &["rev-parse", "HEAD"]).await, main);
    let readme = std::fs::read_to_string(checkout.join("README.md")).expect("README.md");
    assert_eq!(Some(readme), fake.file_at(REPO, "main", "README.md"));
    let remote = git_ok(&checkout, None, &["config", "remote.origin.url"]).await;
    assert!(
        !remote.contains(&token),
        "the token stays out of the config"
    );

    git_ok(&checkout, None, &["switch", "--quiet", "-c", "claude/7"]).await;
    std::fs::write(checkout.join("app.txt"), "dark mode\n").expect("write");
    git_ok(&checkout, None, &["add", "app.txt"]).await;
    git_ok(
        &checkout,
        None,
        &["commit", "--quiet", "-m", "Add dark mode"],
    )
    .await;
    let pushed = git_ok(&checkout, None, &["rev-parse", "HEAD"]).await;
    git_ok(
        &checkout,
        Some(&token),
        &["push", "--quiet", "origin", "claude/7"],
    )
    .await;

    let log = fake.git_log(REPO, "claude/7");
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].sha, pushed);
    assert_eq!(log[0].subject, "Add dark mode");
    assert_eq!(log[0].parents, vec![main.clone()]);
    assert_eq!(log[0].author.email, "agent@example.com");
    assert_eq!(fake.branches(REPO)["claude/7"], pushed);
    assert_eq!(
        fake.file_at(REPO, "claude/7", "app.txt").as_deref(),
        Some("dark mode\n")
    );
    assert_eq!(fake.file_at(REPO, "main", "app.txt"), None);

    // What the product reads through the API is what was pushed.
    let head = client(&fake)
        .await
        .branch_head(&repo(), "claude/7")
        .await
        .expect("branch head");
    assert_eq!(head.as_deref(), Some(pushed.as_str()));
    let (status, commit) = api_get(
        &fake,
        &token,
        &format!("/repos/{REPO}/git/commits/{pushed}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{commit}");
    assert_eq!(commit["message"], "Add dark mode");
    assert_eq!(commit["parents"][0]["sha"], main);
    assert_eq!(commit["author"]["name"], "Agent");
    let (status, compare) = api_get(
        &fake,
        &token,
        &format!("/repos/{REPO}/compare/main...claude/7"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{compare}");
    assert_eq!(compare["status"], "ahead");
    assert_eq!(compare["ahead_by"], 1);
    assert_eq!(compare["commits"][0]["sha"], pushed);
    assert_eq!(compare["merge_base_commit"]["sha"], main);
    let (status, file) = api_get(
        &fake,
        &token,
        &format!("/repos/{REPO}/contents/app.txt?ref=claude/7"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{file}");
    let content: String = file["content"]
        .as_str()
        .expect("content")
        .split_whitespace()
        .collect();
    assert_eq!(BASE64.decode(content).expect("base64"), b"dark mode\n");

    // Every git request carried the agent's token and was let through.
    let requests = fake.git_requests();
    assert!(requests.iter().any(|r| r.is_push() && r.method == "POST"));
    assert!(
        requests
            .iter()
            .any(|r| r.service.as_deref() == Some("git-upload-pack"))
    );
    for request in &requests {
        assert!(request.authorized, "{request:?}");
        assert_eq!(request.installation_token(), Some(token.as_str()));
        assert_eq!(request.repo.as_deref(), Some(REPO));
        assert_eq!(request.status, 200, "{request:?}");
    }
}

#[tokio::test]
async fn git_refuses_missing_wrong_expired_and_foreign_tokens() {
    let fake = hosted().await;
    let work = tempfile::tempdir().expect("work dir");
    let url = fake.git_url(REPO);
    let gh = app(&fake);
    let foreign = gh
        .installation_token(INSTALLATION, Some(&RepoName::parse("acme/other").unwrap()))
        .await
        .expect("token for the other repository")
        .token
        .expose_secret()
        .to_owned();
    fake.set_token_lifetime(Duration::ZERO);
    let expired = agent_token(&fake).await;
    fake.set_token_lifetime(Duration::from_secs(3600));

    let cases = [
        ("no token", None),
        (
            "wrong token",
            Some("ghs_not_a_token_the_fake_issued_000000"),
        ),
        ("expired token", Some(expired.as_str())),
        ("token for another repository", Some(foreign.as_str())),
    ];
    for (i, (case, token)) in cases.iter().enumerate() {
        let before = fake.git_requests().len();
        let target = format!("refused-{i}");
        let out = git(work.path(), *token, &["clone", "--quiet", &url, &target]).await;
        assert!(!out.status.success(), "{case}: the clone succeeded");
        assert!(!work.path().join(&target).join(".git").exists(), "{case}");
        let requests = fake.git_requests();
        let refused = &requests[before..];
        assert!(!refused.is_empty(), "{case}: no request recorded");
        for request in refused {
            assert_eq!(request.status, 401, "{case}: {request:?}");
            assert!(!request.authorized, "{case}");
        }
    }
    let expired_attempt = fake
        .git_requests()
        .into_iter()
        .find(|r| r.installation_token() == Some(expired.as_str()))
        .expect("the expired token was presented");
    assert_eq!(expired_attempt.status, 401);
    assert!(matches!(expired_attempt.auth, AuthKind::Installation(_)));

    // The same repository with a valid token is fine, and a read-only token cannot push.
    let token = agent_token(&fake).await;
    let checkout = clone(&fake, work.path(), &token).await;
    let read_only = reqwest::Client::new()
        .post(format!(
            "{}/app/installations/{INSTALLATION}/access_tokens",
            fake.url()
        ))
        .bearer_auth(
            AppCredentials::new(
                APP_ID,
                &SecretString::from(app_private_key_pem().to_owned()),
            )
            .expect("App key")
            .jwt(std::time::SystemTime::now())
            .expect("JWT"),
        )
        .json(&json!({ "repositories": ["widgets"], "permissions": { "contents": "read" } }))
        .send()
        .await
        .expect("mint")
        .json::<Value>()
        .await
        .expect("token answer")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    git_ok(
        &checkout,
        None,
        &["commit", "--quiet", "--allow-empty", "-m", "nope"],
    )
    .await;
    let out = git(
        &checkout,
        Some(&read_only),
        &["push", "--quiet", "origin", "HEAD:refs/heads/read-only"],
    )
    .await;
    assert!(!out.status.success(), "a read-only token pushed");
    assert!(!fake.branches(REPO).contains_key("read-only"));
    let last = fake.git_requests().pop().expect("push recorded");
    assert_eq!((last.status, last.is_push()), (403, true), "{last:?}");
}

#[tokio::test]
async fn ensure_branch_makes_a_real_empty_commit_and_the_pull_request_follows_pushes() {
    let fake = hosted().await;
    let work = tempfile::tempdir().expect("work dir");
    let gh = client(&fake).await;
    let main = fake.branches(REPO)["main"].clone();
    let head = gh
        .ensure_branch(&repo(), "main", &branch("claude/12"), "Start work on #12")
        .await
        .expect("branch made");

    let log = fake.git_log(REPO, "claude/12");
    assert_eq!(log[0].sha, head);
    assert_eq!(log[0].parents, vec![main.clone()]);
    assert_eq!(log[0].subject, "Start work on #12");
    assert_eq!(log[0].tree, log[1].tree, "the first commit is empty");
    let commit = fake.commit(REPO, &head).expect("stored");
    assert_eq!(commit.tree, fake.commit(REPO, &main).expect("main").tree);
    let again = gh
        .ensure_branch(&repo(), "main", &branch("claude/12"), "Start work on #12")
        .await
        .expect("branch reused");
    assert_eq!(again, head);
    let object = std::process::Command::new("git")
        .args(["cat-file", "-t", &head])
        .env("GIT_DIR", fake.git_dir(REPO))
        .output()
        .expect("git cat-file");
    assert_eq!(String::from_utf8_lossy(&object.stdout).trim(), "commit");

    let pr = gh
        .ensure_draft_pr(
            &repo(),
            &branch("claude/12"),
            "main",
            "[Claude] #12",
            "Closes #12",
        )
        .await
        .expect("draft PR");
    assert_eq!(fake.pulls(REPO)[0].head_sha, head);

    let token = agent_token(&fake).await;
    let checkout = clone(&fake, work.path(), &token).await;
    git_ok(&checkout, None, &["switch", "--quiet", "claude/12"]).await;
    assert_eq!(git_ok(&checkout, None, &["rev-parse", "HEAD"]).await, head);

    // Someone else pushes to the PR branch: the branch, the PR and a fetch all see it.
    let theirs = fake.commit_file(REPO, "claude/12", "src/lib.rs", "fn main() {}\n", "Theirs");
    assert_eq!(fake.branches(REPO)["claude/12"], theirs);
    assert_eq!(fake.pulls(REPO)[0].head_sha, theirs);
    let (status, pull) =
        api_get(&fake, &token, &format!("/repos/{REPO}/pulls/{}", pr.number)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pull["head"]["sha"], theirs);
    assert_eq!(
        fake.git_log(REPO, "claude/12")[0].parents,
        vec![head.clone()]
    );
    git_ok(&checkout, Some(&token), &["fetch", "--quiet", "origin"]).await;
    assert_eq!(
        git_ok(&checkout, None, &["rev-parse", "origin/claude/12"]).await,
        theirs
    );
    git_ok(
        &checkout,
        None,
        &["merge", "--quiet", "--ff-only", "origin/claude/12"],
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(checkout.join("src/lib.rs")).expect("fetched file"),
        "fn main() {}\n"
    );

    // A push through git moves the open PR's head too.
    std::fs::write(checkout.join("src/lib.rs"), "fn main() { run() }\n").expect("write");
    git_ok(&checkout, None, &["commit", "--quiet", "-am", "Ours"]).await;
    let ours = git_ok(&checkout, None, &["rev-parse", "HEAD"]).await;
    git_ok(
        &checkout,
        Some(&token),
        &["push", "--quiet", "origin", "claude/12"],
    )
    .await;
    assert_eq!(fake.pulls(REPO)[0].head_sha, ours);
    let (_, pull) = api_get(&fake, &token, &format!("/repos/{REPO}/pulls/{}", pr.number)).await;
    assert_eq!(pull["head"]["sha"], ours);
}

#[tokio::test]
async fn ref_updates_through_the_api_are_checked_against_the_real_repository() {
    let fake = hosted().await;
    let token = agent_token(&fake).await;
    let main = fake.branches(REPO)["main"].clone();
    let base = format!("/repos/{REPO}");
    let post = reqwest::Method::POST;

    let (status, _) = api_send(
        &fake,
        &token,
        post.clone(),
        &format!("{base}/git/refs"),
        json!({ "ref": "refs/heads/feature", "sha": main }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, answer) = api_send(
        &fake,
        &token,
        post.clone(),
        &format!("{base}/git/refs"),
        json!({ "ref": "refs/heads/feature", "sha": main }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["message"], "Reference already exists");
    let (status, _) = api_send(
        &fake,
        &token,
        post.clone(),
        &format!("{base}/git/refs"),
        json!({ "ref": "refs/heads/ghost", "sha": "1234567890123456789012345678901234567890" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // A real commit moves the branch; rewinding it is not a fast forward unless forced.
    let pushed = fake.push_commit(REPO, "feature", "work");
    assert_eq!(fake.git_log(REPO, "feature")[0].sha, pushed);
    assert_eq!(
        fake.file_at(REPO, "feature", PUSH_LOG_FILE).as_deref(),
        Some("work\n")
    );
    let patch = reqwest::Method::PATCH;
    let (status, answer) = api_send(
        &fake,
        &token,
        patch.clone(),
        &format!("{base}/git/refs/heads/feature"),
        json!({ "sha": main }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["message"], "Update is not a fast forward");
    let (status, _) = api_send(
        &fake,
        &token,
        patch,
        &format!("{base}/git/refs/heads/feature"),
        json!({ "sha": main, "force": true }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fake.git_log(REPO, "feature")[0].sha, main);

    // A commit made with the Git Data API carries the given author.
    let tree = fake.git_log(REPO, "main")[0].tree.clone();
    let (status, commit) = api_send(
        &fake,
        &token,
        post.clone(),
        &format!("{base}/git/commits"),
        json!({
            "message": "Authored",
            "tree": tree,
            "parents": [main],
            "author": { "name": "Mona", "email": "mona@example.com", "date": "2024-05-01T12:00:00Z" },
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{commit}");
    let sha = commit["sha"].as_str().expect("sha");
    let stored = fake.git_log(REPO, sha);
    assert_eq!(stored[0].author.name, "Mona");
    assert_eq!(stored[0].committer.email, "mona@example.com");
    assert_eq!(commit["author"]["date"], "2024-05-01T12:00:00Z");
    let (status, _) = api_send(
        &fake,
        &token,
        post,
        &format!("{base}/git/commits"),
        json!({ "message": "x", "tree": main, "parents": [main] }),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a commit is no tree"
    );

    // Deleting goes to the real repository.
    let (status, _) = api_send(
        &fake,
        &token,
        reqwest::Method::DELETE,
        &format!("{base}/git/refs/heads/feature"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(fake.git_log(REPO, "feature").is_empty());
    assert!(!fake.branches(REPO).contains_key("feature"));
}

#[tokio::test]
async fn merged_pull_requests_make_real_merge_commits() {
    let fake = hosted().await;
    let gh = client(&fake).await;
    let main = fake.branches(REPO)["main"].clone();
    let head = fake.commit_file(REPO, "topic", "topic.txt", "topic\n", "Topic");
    fake.commit_file(REPO, "main", "main.txt", "main\n", "Main moves on");
    let pr = gh
        .ensure_draft_pr(&repo(), &branch("topic"), "main", "Topic", "")
        .await
        .expect("PR");
    fake.merge_pull(REPO, pr.number);

    let merge = &fake.git_log(REPO, "main")[0];
    assert_eq!(merge.parents.len(), 2);
    assert_eq!(merge.parents[1], head);
    assert_ne!(merge.parents[0], main);
    assert_eq!(
        fake.file_at(REPO, "main", "topic.txt").as_deref(),
        Some("topic\n")
    );
    assert_eq!(
        fake.file_at(REPO, "main", "main.txt").as_deref(),
        Some("main\n")
    );
    assert!(fake.pulls(REPO)[0].merged);
}

#[tokio::test]
async fn plain_repositories_are_not_served_over_git() {
    let fake = hosted().await;
    let work = tempfile::tempdir().expect("work dir");
    let token = app(&fake)
        .installation_token(INSTALLATION, None)
        .await
        .expect("token")
        .token
        .expose_secret()
        .to_owned();
    let url = format!("{}/git/acme/other.git", fake.url());
    let out = git(
        work.path(),
        Some(&token),
        &["clone", "--quiet", &url, "other"],
    )
    .await;
    assert!(!out.status.success());
    let last = fake.git_requests().pop().expect("recorded");
    assert_eq!(last.status, 404, "{last:?}");
    assert!(last.authorized);

    // Without `.git` and in another case the hosted one is found, as on GitHub.
    let url = format!("{}/git/Acme/Widgets", fake.url());
    git_ok(
        work.path(),
        Some(&token),
        &["clone", "--quiet", &url, "widgets"],
    )
    .await;
    assert!(work.path().join("widgets/README.md").exists());
}

#[tokio::test]
async fn large_fetch_negotiations_arrive_gzipped_and_are_understood() {
    let fake = hosted().await;
    let work = tempfile::tempdir().expect("work dir");
    let token = agent_token(&fake).await;
    let checkout = clone(&fake, work.path(), &token).await;
    // Forty new branches, each at a commit the client lacks: the first request of the fetch
    // carries a `want` line (50 bytes) for each, well over the 1 KB past which git compresses
    // a request body. The size does not depend on how many `have` lines git's negotiation
    // chooses to send (which made a test built on local history pass only sometimes).
    let theirs: Vec<String> = (0..40)
        .map(|i| {
            let branch = format!("news/{i}");
            let content = format!("news {i}\n");
            fake.commit_file(REPO, &branch, "news.txt", &content, "News")
        })
        .collect();
    git_ok(&checkout, Some(&token), &["fetch", "--quiet", "origin"]).await;
    for (i, sha) in theirs.iter().enumerate() {
        let branch = format!("origin/news/{i}");
        assert_eq!(&git_ok(&checkout, None, &["rev-parse", &branch]).await, sha);
    }
    let gzipped = fake
        .git_requests()
        .into_iter()
        .filter(|r| r.content_encoding.as_deref() == Some("gzip"))
        .collect::<Vec<_>>();
    assert!(!gzipped.is_empty(), "no request was gzipped");
    assert!(gzipped.iter().all(|r| r.status == 200), "{gzipped:?}");
}

#[tokio::test]
async fn large_pushes_are_streamed_in_chunks_and_stored_whole() {
    let fake = hosted().await;
    let work = tempfile::tempdir().expect("work dir");
    let token = agent_token(&fake).await;
    let checkout = clone(&fake, work.path(), &token).await;
    // Incompressible and over git's 1 MiB post buffer, so the push is sent chunked.
    let blob: Vec<u8> = (0..3 << 20).map(|_| rand::random::<u8>()).collect();
    std::fs::write(checkout.join("big.bin"), &blob).expect("write");
    git_ok(&checkout, None, &["add", "big.bin"]).await;
    git_ok(&checkout, None, &["commit", "--quiet", "-m", "Big"]).await;
    git_ok(
        &checkout,
        Some(&token),
        &["push", "--quiet", "origin", "HEAD:refs/heads/big"],
    )
    .await;
    let head = git_ok(&checkout, None, &["rev-parse", "HEAD"]).await;
    assert_eq!(fake.branches(REPO)["big"], head);
    let stored = std::process::Command::new("git")
        .args(["cat-file", "blob", &format!("{head}:big.bin")])
        .env("GIT_DIR", fake.git_dir(REPO))
        .output()
        .expect("git cat-file");
    assert!(stored.stdout == blob, "the pushed file arrived whole");
}

#[tokio::test]
async fn concurrent_branch_creation_on_a_hosted_repository_yields_one_ref() {
    let fake = hosted().await;
    let token = agent_token(&fake).await;
    let main = fake.branches(REPO)["main"].clone();
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let (fake, token, main) = (fake.clone(), token.clone(), main.clone());
            tokio::spawn(async move {
                let body = json!({ "ref": "refs/heads/claude/race", "sha": main });
                let path = format!("/repos/{REPO}/git/refs");
                api_send(&fake, &token, reqwest::Method::POST, &path, body)
                    .await
                    .0
            })
        })
        .collect();
    let mut created = 0;
    for attempt in attempts {
        match attempt.await.expect("request task") {
            StatusCode::CREATED => created += 1,
            status => assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(fake.git_log(REPO, "claude/race")[0].sha, main);
}
