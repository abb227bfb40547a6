//! The fakes over real HTTP: they must keep state and answer like the services they replace,
//! or every test built on them proves nothing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cca_testkit::control::FakeAgent;
use cca_testkit::github::{self, APP_ID, AuthKind, FakeGitHub};
use cca_testkit::jira::{self, Adf, FakeJira};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const OTHER_KEY_PEM: &str = include_str!("../keys/other.pem");

fn client() -> Client {
    // Bounds every call, so a fake that hangs fails the test instead of stalling the suite.
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("seconds fit")
}

/// An App JWT with the given claims, signed with `key_pem`.
fn jwt(claims: &Value, key_pem: &str) -> String {
    let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).expect("RSA key parses");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("JWT signs")
}

/// A JWT as octocrab makes it: issued a minute ago, valid for nine more minutes.
fn app_jwt() -> String {
    let now = now();
    jwt(
        &json!({ "iat": now - 60, "exp": now + 540, "iss": APP_ID.to_string() }),
        github::app_private_key_pem(),
    )
}

async fn post(client: &Client, url: String, auth: &str, body: Value) -> (StatusCode, Value) {
    let response = client
        .post(url)
        .bearer_auth(auth)
        .json(&body)
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(client: &Client, url: String, auth: &str) -> (StatusCode, Value) {
    let response = client
        .get(url)
        .header("authorization", format!("token {auth}"))
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn installation_token(fake: &FakeGitHub, repositories: Option<&[&str]>) -> String {
    let body = repositories.map_or(Value::Null, |r| json!({ "repositories": r }));
    let url = format!("{}/app/installations/7/access_tokens", fake.url());
    let (status, answer) = post(&client(), url, &app_jwt(), body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["token"].as_str().expect("token").to_owned()
}

async fn github_with_repo() -> FakeGitHub {
    let fake = FakeGitHub::start().await;
    fake.add_installation(7);
    fake.add_repo("acme/widgets");
    fake
}

#[tokio::test]
async fn scoped_installation_token_reaches_its_repository_only() {
    let fake = github_with_repo().await;
    fake.add_repo("acme/other");
    let url = format!("{}/app/installations/7/access_tokens", fake.url());
    let body = json!({ "repositories": ["widgets"], "permissions": { "contents": "write" } });
    let (status, answer) = post(&client(), url, &app_jwt(), body).await;

    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let token = answer["token"].as_str().expect("token");
    assert!(token.starts_with("ghs_") && token.len() == 40, "{token}");
    assert_eq!(answer["repository_selection"], "selected");
    assert_eq!(answer["permissions"], json!({ "contents": "write" }));
    assert!(
        answer["expires_at"]
            .as_str()
            .expect("expiry")
            .ends_with('Z')
    );
    assert_eq!(answer["repositories"][0]["full_name"], "acme/widgets");

    let (status, repo) = get(
        &client(),
        format!("{}/repos/acme/widgets", fake.url()),
        token,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(repo["default_branch"], "main");
    assert_eq!(repo["owner"]["login"], "acme");
    assert_eq!(
        repo["clone_url"],
        format!("{}/git/acme/widgets.git", fake.url())
    );
    let (status, _) = get(&client(), format!("{}/repos/acme/other", fake.url()), token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let issued = fake.issued_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(
        issued[0].repositories.as_deref(),
        Some(&["acme/widgets".to_owned()][..])
    );
    assert_eq!(fake.jwt_claims()[0]["iss"], APP_ID.to_string());
    let auths: Vec<AuthKind> = fake.requests().into_iter().map(|r| r.auth).collect();
    assert_eq!(
        auths,
        [
            AuthKind::Jwt,
            AuthKind::Installation(token.to_owned()),
            AuthKind::Installation(token.to_owned())
        ]
    );
}

#[tokio::test]
async fn expired_and_unknown_tokens_are_bad_credentials() {
    let fake = github_with_repo().await;
    fake.set_token_lifetime(Duration::from_millis(300));
    let token = installation_token(&fake, None).await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    let url = format!("{}/repos/acme/widgets", fake.url());
    let (status, answer) = get(&client(), url.clone(), &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["message"], "Bad credentials");
    let (status, _) = get(&client(), url.clone(), "ghp_made_up").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    fake.add_personal_token("ghp_personal");
    let (status, _) = get(&client(), url, "ghp_personal").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn bad_app_jwts_are_refused() {
    let fake = github_with_repo().await;
    let url = format!("{}/app/installations/7/access_tokens", fake.url());
    let now = now();
    let cases = [
        (
            "foreign key",
            jwt(
                &json!({ "iat": now - 60, "exp": now + 540, "iss": APP_ID }),
                OTHER_KEY_PEM,
            ),
        ),
        (
            "wrong issuer",
            jwt(
                &json!({ "iat": now - 60, "exp": now + 540, "iss": 1 }),
                github::app_private_key_pem(),
            ),
        ),
        (
            "lives too long",
            jwt(
                &json!({ "iat": now - 60, "exp": now + 600, "iss": APP_ID }),
                github::app_private_key_pem(),
            ),
        ),
        (
            "expired",
            jwt(
                &json!({ "iat": now - 600, "exp": now - 1, "iss": APP_ID }),
                github::app_private_key_pem(),
            ),
        ),
        (
            "issued in the future",
            jwt(
                &json!({ "iat": now + 120, "exp": now + 300, "iss": APP_ID }),
                github::app_private_key_pem(),
            ),
        ),
    ];
    for (case, token) in cases {
        let (status, answer) = post(&client(), url.clone(), &token, Value::Null).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {answer}");
        assert!(answer["message"].is_string(), "{case}");
    }
    assert!(fake.issued_tokens().is_empty());
    // The foreign-key token never verified, so only the other four were recorded.
    assert_eq!(fake.jwt_claims().len(), 4);

    let (status, _) = post(&client(), url, &app_jwt(), Value::Null).await;
    assert_eq!(status, StatusCode::CREATED);
    let unknown = format!("{}/app/installations/8/access_tokens", fake.url());
    let (status, _) = post(&client(), unknown, &app_jwt(), Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_branch_creation_yields_one_ref() {
    let fake = github_with_repo().await;
    fake.set_latency(Duration::from_millis(20));
    let token = installation_token(&fake, None).await;
    let main = fake.branches("acme/widgets")["main"].clone();

    let client = client();
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let (client, token) = (client.clone(), token.clone());
            let url = format!("{}/repos/acme/widgets/git/refs", fake.url());
            let body = json!({ "ref": "refs/heads/claude/issue-12", "sha": main });
            tokio::spawn(async move { post(&client, url, &token, body).await })
        })
        .collect();
    let mut answers = Vec::new();
    for attempt in attempts {
        answers.push(attempt.await.expect("request task finished"));
    }

    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1);
    for (status, answer) in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_eq!(*status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(answer["message"], "Reference already exists");
    }
    assert_eq!(fake.branches("acme/widgets")["claude/issue-12"], main);

    let url = format!(
        "{}/repos/acme/widgets/git/ref/heads/claude/issue-12",
        fake.url()
    );
    let (status, reference) = get(&client, url, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reference["ref"], "refs/heads/claude/issue-12");
    assert_eq!(
        reference["object"],
        json!({ "sha": main, "type": "commit", "url": reference["object"]["url"] })
    );
}

#[tokio::test]
async fn draft_pull_request_needs_a_commit_and_is_unique_per_head() {
    let fake = github_with_repo().await;
    let token = installation_token(&fake, None).await;
    let repo_url = format!("{}/repos/acme/widgets", fake.url());
    let main = fake.branches("acme/widgets")["main"].clone();
    let tree = fake
        .commit("acme/widgets", &main)
        .expect("initial commit")
        .tree;
    let c = client();
    let body = json!({ "ref": "refs/heads/claude/12", "sha": main });
    post(&c, format!("{repo_url}/git/refs"), &token, body).await;

    let pull = json!({ "title": "[Claude] Dark mode", "head": "acme:claude/12", "base": "main", "body": "Closes #12", "draft": true });
    let (status, answer) = post(&c, format!("{repo_url}/pulls"), &token, pull.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer["errors"][0]["message"],
        "No commits between main and claude/12"
    );

    let commit = json!({ "message": "Start work on #12", "tree": tree, "parents": [main] });
    let (status, commit) = post(&c, format!("{repo_url}/git/commits"), &token, commit).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(commit["tree"]["sha"], tree);
    assert_eq!(commit["parents"][0]["sha"], main);
    let sha = commit["sha"].as_str().expect("sha").to_owned();
    let url = format!("{repo_url}/git/refs/heads/claude/12");
    let response = c
        .patch(url)
        .bearer_auth(&token)
        .json(&json!({ "sha": sha, "force": false }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);

    let (status, created) = post(&c, format!("{repo_url}/pulls"), &token, pull.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["number"], 1);
    assert_eq!(created["draft"], true);
    assert_eq!(
        created["html_url"],
        "https://github.com/acme/widgets/pull/1"
    );
    assert_eq!(created["head"]["sha"], sha);
    assert_eq!(created["user"]["login"], github::BOT_LOGIN);

    let (status, duplicate) = post(&c, format!("{repo_url}/pulls"), &token, pull).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        duplicate,
        json!({
            "message": "Validation Failed",
            "documentation_url": duplicate["documentation_url"],
            "status": "422",
            "errors": [{
                "resource": "PullRequest",
                "code": "custom",
                "message": "A pull request already exists for acme:claude/12.",
            }],
        })
    );

    let (_, open) = get(&c, format!("{repo_url}/pulls?head=acme:claude/12"), &token).await;
    assert_eq!(open.as_array().map(Vec::len), Some(1));
    let (_, none) = get(&c, format!("{repo_url}/pulls?head=acme:other"), &token).await;
    assert_eq!(none, json!([]));
    let (_, issue) = get(&c, format!("{repo_url}/issues/1"), &token).await;
    assert!(issue["pull_request"]["html_url"].is_string());
    assert_eq!(fake.pulls("acme/widgets").len(), 1);
}

#[tokio::test]
async fn collaborator_roles_map_to_legacy_permissions() {
    let fake = github_with_repo().await;
    let token = installation_token(&fake, None).await;
    for (login, role) in [
        ("ada", "admin"),
        ("max", "maintain"),
        ("wes", "write"),
        ("tia", "triage"),
        ("rob", "read"),
    ] {
        fake.set_permission("acme/widgets", login, role);
    }
    let expected = [
        ("ada", "admin", "admin"),
        ("max", "write", "maintain"),
        ("wes", "write", "write"),
        ("tia", "read", "triage"),
        ("rob", "read", "read"),
        ("stranger", "none", "none"),
    ];
    for (login, permission, role) in expected {
        let url = format!(
            "{}/repos/acme/widgets/collaborators/{login}/permission",
            fake.url()
        );
        let (status, answer) = get(&client(), url, &token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["permission"], permission, "{login}");
        assert_eq!(answer["role_name"], role, "{login}");
        assert_eq!(answer["user"]["login"], login);
    }
    assert_eq!(fake.permission_lookups(), expected.len());
}

#[tokio::test]
async fn status_comment_is_edited_in_place_and_reacted_to() {
    let fake = github_with_repo().await;
    let token = installation_token(&fake, None).await;
    let number = fake.add_issue("acme/widgets", "Dark mode", "Please add a dark mode.");
    let repo_url = format!("{}/repos/acme/widgets", fake.url());
    let c = client();

    let (status, comment) = post(
        &c,
        format!("{repo_url}/issues/{number}/comments"),
        &token,
        json!({ "body": "Working…" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(comment["user"]["login"], "cca-test[bot]");
    assert_eq!(comment["user"]["type"], "Bot");
    let id = comment["id"].as_u64().expect("id");
    // GitHub takes POST for PATCH, and octocrab edits comments that way.
    for (method, body) in [
        (reqwest::Method::PATCH, "Step 1 done"),
        (reqwest::Method::POST, "Step 2 done"),
    ] {
        let response = c
            .request(method, format!("{repo_url}/issues/comments/{id}"))
            .bearer_auth(&token)
            .json(&json!({ "body": body }))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let human = fake.add_comment("acme/widgets", number, "dana", "@claude also the footer");
    let (status, _) = post(
        &c,
        format!("{repo_url}/issues/comments/{human}/reactions"),
        &token,
        json!({ "content": "eyes" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = post(
        &c,
        format!("{repo_url}/issues/comments/{human}/reactions"),
        &token,
        json!({ "content": "eyes" }),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a repeated reaction is not a new one"
    );

    let comments = fake.comments("acme/widgets", number);
    assert_eq!(comments.len(), 2);
    assert_eq!(comments[0].body, "Step 2 done");
    assert_eq!(comments[0].edits, 2);
    assert_eq!(comments[1].user, "dana");
    let reactions = fake.reactions("acme/widgets", human);
    assert_eq!(reactions.len(), 1);
    assert_eq!(reactions[0].content, "eyes");
    let (_, listed) = get(&c, format!("{repo_url}/issues/{number}/comments"), &token).await;
    assert_eq!(listed[0]["body"], "Step 2 done");
}

#[tokio::test]
async fn injected_failures_come_first_and_run_out() {
    let fake = github_with_repo().await;
    let token = installation_token(&fake, None).await;
    fake.fail_next("get", "/repos/acme/widgets", 502, 2);
    let url = format!("{}/repos/acme/widgets", fake.url());
    let statuses = [
        get(&client(), url.clone(), &token).await.0,
        get(&client(), url.clone(), &token).await.0,
        get(&client(), url, &token).await.0,
    ];
    assert_eq!(
        statuses,
        [
            StatusCode::BAD_GATEWAY,
            StatusCode::BAD_GATEWAY,
            StatusCode::OK
        ]
    );
    assert_eq!(fake.requests().len(), 4);
}

#[tokio::test]
async fn deployment_statuses_retire_the_previous_preview() {
    let fake = github_with_repo().await;
    let token = installation_token(&fake, None).await;
    let repo_url = format!("{}/repos/acme/widgets", fake.url());
    let c = client();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let body = json!({ "ref": "main", "environment": "preview-main", "auto_merge": false, "required_contexts": [] });
        let (status, deployment) = post(&c, format!("{repo_url}/deployments"), &token, body).await;
        assert_eq!(status, StatusCode::CREATED);
        let id = deployment["id"].as_u64().expect("id");
        let body = json!({ "state": "success", "environment_url": "https://tt-main.example.com", "log_url": "https://logs" });
        let (status, _) = post(
            &c,
            format!("{repo_url}/deployments/{id}/statuses"),
            &token,
            body,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        ids.push(id);
    }
    let deployments = fake.deployments("acme/widgets");
    let states = |i: usize| -> Vec<String> {
        deployments[i]
            .statuses
            .iter()
            .map(|s| s.state.clone())
            .collect()
    };
    assert_eq!(states(0), ["success", "inactive"]);
    assert_eq!(states(1), ["success"]);
    assert_eq!(
        deployments[1].statuses[0].environment_url.as_deref(),
        Some("https://tt-main.example.com")
    );
}

#[tokio::test]
async fn manifest_codes_convert_once() {
    let fake = FakeGitHub::start().await;
    fake.add_manifest_code("abc123");
    let url = format!("{}/app-manifests/abc123/conversions", fake.url());
    let first = client().post(&url).send().await.expect("sent");
    assert_eq!(first.status(), StatusCode::CREATED);
    let app: Value = first.json().await.expect("json");
    assert_eq!(app["id"], APP_ID);
    assert_eq!(app["pem"], github::app_private_key_pem());
    let again = client().post(&url).send().await.expect("sent");
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn jira_needs_basic_auth_and_adf_comments() {
    let fake = FakeJira::start("bot@example.com", "jira-token").await;
    let description = Adf::new()
        .paragraph("The export button does nothing.")
        .bullet_list(&["CSV", "JSON"])
        .mention(jira::ACCOUNT_ID, "Dana", " can you confirm?")
        .build();
    fake.add_issue("PROJ-7", "Fix export", description.clone(), &["claude-dev"]);
    let issue_url = format!("{}/rest/api/3/issue/PROJ-7", fake.url());
    let c = client();

    let anonymous = c.get(&issue_url).send().await.expect("sent");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = c
        .get(&issue_url)
        .basic_auth("bot@example.com", Some("nope"))
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let issue: Value = c
        .get(&issue_url)
        .basic_auth("bot@example.com", Some("jira-token"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(issue["key"], "PROJ-7");
    assert_eq!(issue["fields"]["summary"], "Fix export");
    assert_eq!(issue["fields"]["labels"], json!(["claude-dev"]));
    assert_eq!(issue["fields"]["project"]["key"], "PROJ");
    assert_eq!(issue["fields"]["description"], description);

    let comment_url = format!("{issue_url}/comment");
    let plain = c
        .post(&comment_url)
        .basic_auth("bot@example.com", Some("jira-token"))
        .json(&json!({ "body": "PR opened" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(plain.status(), StatusCode::BAD_REQUEST);

    let body = jira::adf_paragraphs(&["PR: https://github.com/acme/widgets/pull/3"]);
    let created = c
        .post(&comment_url)
        .basic_auth("bot@example.com", Some("jira-token"))
        .json(&json!({ "body": body }))
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    assert_eq!(created["author"]["displayName"], jira::DISPLAY_NAME);

    let listed: Value = c
        .get(&comment_url)
        .basic_auth("bot@example.com", Some("jira-token"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["total"], 1);
    assert_eq!(
        jira::adf_text(&fake.comments("PROJ-7")[0]),
        "PR: https://github.com/acme/widgets/pull/3"
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 6);
    assert!(!requests[0].authorized && requests[2].authorized);
}

#[tokio::test]
async fn agent_control_api_refuses_the_wrong_token() {
    let agent = FakeAgent::start(Some("session-token".to_owned())).await;
    let url = format!("http://{}/prompt", agent.addr());
    let c = client();

    let refused = c
        .post(&url)
        .bearer_auth("guess")
        .json(&json!({ "prompt": "also fix the footer" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused.json::<Value>().await.expect("json"),
        json!({ "error": "unauthorized" })
    );

    let accepted = c
        .post(&url)
        .bearer_auth("session-token")
        .json(&json!({ "prompt": "also fix the footer" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(accepted.status(), StatusCode::OK);
    assert_eq!(
        accepted.json::<Value>().await.expect("json")["queue_position"],
        1
    );
    let status: Value = c
        .get(format!("{}/status", agent.url()))
        .bearer_auth("session-token")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(status["status"], "RUNNING");

    let requests = agent.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].authorization.as_deref(), Some("Bearer guess"));
    assert_eq!(requests[1].body["prompt"], "also fix the footer");
}
