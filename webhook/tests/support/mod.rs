//! The test stand of the webhook scenarios: the real router and production clients, wired to a
//! stateful fake GitHub and JIRA over HTTP, moto for ECS (and DynamoDB), and a real store.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use cca_domain::Status;
use cca_domain::address::Guard;
use cca_domain::decide::{JiraActors, Rules};
use cca_domain::mask::Masker;
use cca_domain::session::SessionPatch;
use cca_github::{AppCredentials, GitHub, GitHubAuth};
use cca_launcher::{EcsLauncher, EcsSettings, TaskDefinitions};
use cca_store::{SessionStore, SqliteStore};
use cca_testkit::control::FakeAgent;
use cca_testkit::fixtures::{github_example, sign_github};
use cca_testkit::github::{APP_ID, FakeGitHub, app_private_key_pem};
use cca_testkit::jira::FakeJira;
use cca_testkit::moto::{Moto, unique_name};
use cca_webhook::app::JiraSetup;
use cca_webhook::control::ControlClient;
use cca_webhook::{App, router};
use http_body_util::BodyExt;
use secrecy::SecretString;
use serde_json::{Value, json};

pub const WEBHOOK_SECRET: &str = "gh-webhook-secret-for-tests";
pub const OLD_WEBHOOK_SECRET: &str = "gh-webhook-secret-rotated-out";
pub const JIRA_SECRET: &str = "jira-webhook-secret-for-tests";
pub const CONTROL_KEY: &str = "control-key-for-tests-0123456789";
pub const REPO: &str = "octo/app";
pub const INSTALLATION: u64 = 1;
pub const DOMAIN: &str = "uat.example.test";
/// The Atlassian account id of the JIRA person the JIRA scenarios allow.
pub const JIRA_PERSON: &str = "557058:dave-for-tests";

/// Bound on every scenario, so a hang fails instead of stalling CI.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs a scenario under the global time-out.
pub async fn within<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(SCENARIO_TIMEOUT, f)
        .await
        .expect("scenario timed out");
}

/// Runs one scenario: a fresh stand built with `opts`, then `body` on it, all under
/// [`SCENARIO_TIMEOUT`]. Without a stand (no AWS emulator configured) the test says so and
/// returns, or fails when the whole stand is required.
pub async fn scenario_with<F, Fut>(opts: Options, body: F)
where
    F: FnOnce(Stand) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    within(async move {
        if let Some(stand) = Stand::with(opts).await {
            body(stand).await;
        }
    })
    .await;
}

/// [`scenario_with`] the default stand.
pub async fn scenario<F, Fut>(body: F)
where
    F: FnOnce(Stand) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    scenario_with(Options::default(), body).await;
}

/// The production GitHub client, as the stand's App, pointed at the fake.
fn app_client(github: &FakeGitHub) -> GitHub {
    let key = SecretString::from(app_private_key_pem().to_owned());
    let app = AppCredentials::new(APP_ID, &key).expect("app key");
    GitHub::new(
        github.url(),
        GitHubAuth::App {
            app,
            default_installation: Some(INSTALLATION),
        },
    )
    .expect("github client")
}

/// The router over an App with no AWS at all: SQLite in memory, a process launcher whose
/// program does not exist, the fake GitHub (where nobody has write access) and JIRA. For input
/// tests, which must never get as far as launching anything.
pub async fn offline_router() -> (Router, FakeGitHub) {
    let github = FakeGitHub::start().await;
    github.add_installation(INSTALLATION);
    github.add_repo(REPO);
    let gh = app_client(&github);
    let dir = std::env::temp_dir().join(unique_name("cca-offline"));
    let launcher = Arc::new(cca_launcher::ProcessLauncher::new(
        dir.join("no-such-agent"),
        dir.clone(),
        Vec::new(),
        Duration::from_secs(1),
    ));
    let jira = JiraSetup {
        client: cca_jira::Jira::new(
            "http://127.0.0.1:9",
            "x@example.test",
            SecretString::from("t"),
        )
        .expect("jira"),
        webhook_secrets: vec![SecretString::from(JIRA_SECRET)],
        project_mapping: Default::default(),
    };
    let app = Arc::new(App {
        store: Arc::new(SqliteStore::in_memory().expect("sqlite")),
        launcher,
        github: gh,
        github_webhook_secrets: vec![SecretString::from(WEBHOOK_SECRET)],
        jira: Some(jira),
        control: ControlClient::new(
            SecretString::from(CONTROL_KEY),
            Duration::from_secs(1),
            Guard::new(Guard::default_allowed(), true),
        ),
        uat_domain_suffix: DOMAIN.into(),
        rules: Rules::default(),
        masker: Masker::default(),
        conversations: None,
    });
    (router(app), github)
}

/// Sends a request through `router`; the reply must be JSON.
pub async fn send_to(
    router: &Router,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method("POST").uri(path);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(Body::from(body)).expect("request");
    let resp = tower::ServiceExt::oneshot(router.clone(), req)
        .await
        .expect("router answers");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("non-JSON reply {status}: {bytes:?}"));
    (status, json)
}

/// Everything a scenario touches.
pub struct Stand {
    pub github: FakeGitHub,
    pub jira: FakeJira,
    pub moto: Moto,
    pub ecs: aws_sdk_ecs::Client,
    pub cluster: String,
    pub families: TaskDefinitions,
    pub store: Arc<dyn SessionStore>,
    pub app: Arc<App>,
    pub router: Router,
    _dir: tempfile::TempDir,
}

/// How to build the stand.
#[derive(Default)]
pub struct Options {
    /// Leave the agent `latest` task definition unregistered, so RunTask fails.
    pub missing_agent_task_definition: bool,
    pub rules: Rules,
    /// Refuse control calls to loopback, as the deployed webhook (agents on ECS) does. By
    /// default the stand's fake agents listen on 127.0.0.1 and are called there, as under
    /// `cca up`.
    pub refuse_loopback_agents: bool,
    /// Keep agents' conversations in a new bucket of the emulator (`CONVERSATION_BUCKET`).
    pub conversation_bucket: bool,
}

/// Rules under which JIRA events from the people with `ids` start sessions.
pub fn jira_allowing(ids: &[&str]) -> Rules {
    Rules {
        jira_actors: JiraActors::Accounts(ids.iter().map(|id| id.to_string()).collect()),
        ..Rules::default()
    }
}

impl Stand {
    /// The stand, or `None` (the test then returns) when no moto server is configured.
    pub async fn new() -> Option<Stand> {
        Self::with(Options::default()).await
    }

    pub async fn with(opts: Options) -> Option<Stand> {
        let Some(moto) = Moto::from_env() else {
            cca_testkit::stand::skip("CCA_MOTO_URL is not set (run scripts/test.sh)");
            return None;
        };
        moto.ecs_manual_transitions().await;
        let ecs = moto.ecs().await;
        let cluster = unique_name("cluster");
        moto.create_cluster(&ecs, &cluster).await.expect("cluster");
        let network = moto.create_network().await.expect("network");
        let families = TaskDefinitions {
            agent_latest: unique_name("agent"),
            agent_staging: unique_name("agent-staging"),
            preview_latest: unique_name("preview"),
            preview_staging: unique_name("preview-staging"),
        };
        let mut settings = EcsSettings::new(
            cluster.clone(),
            families.clone(),
            network.subnet_ids.clone(),
            vec![network.security_group_id.clone()],
            false,
        );
        settings.agent_container = "agent".into();
        settings.preview_container = "preview".into();
        for (family, container) in [
            (&families.agent_latest, "agent"),
            (&families.agent_staging, "agent"),
            (&families.preview_latest, "preview"),
            (&families.preview_staging, "preview"),
        ] {
            if opts.missing_agent_task_definition && family == &families.agent_latest {
                continue;
            }
            moto.register_task_definition(&ecs, family, container)
                .await
                .expect("task definition");
        }
        let launcher = Arc::new(EcsLauncher::new(ecs.clone(), settings));

        let conversations = match opts.conversation_bucket {
            true => {
                let bucket = unique_name("conversations");
                let made = reqwest::Client::new()
                    .put(format!("{}/{bucket}", moto.url))
                    .send()
                    .await
                    .expect("create the bucket");
                assert!(made.status().is_success(), "{}", made.status());
                Some(cca_webhook::conversation::ConversationBucket {
                    bucket,
                    region: "us-east-1".into(),
                    endpoint: Some(moto.url.clone()),
                    aws: moto.sdk_config().await,
                })
            }
            false => None,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn SessionStore> =
            Arc::new(SqliteStore::open(dir.path().join("sessions.db")).expect("sqlite store"));

        let github = FakeGitHub::start().await;
        github.add_installation(INSTALLATION);
        github.add_repo(REPO);
        for (login, role) in [
            ("alice", "admin"),
            ("maya", "maintain"),
            ("walt", "write"),
            ("rita", "read"),
            ("tina", "triage"),
        ] {
            github.set_permission(REPO, login, role);
        }
        let jira = FakeJira::start("bot@example.test", "jira-api-token-for-tests").await;

        let gh = app_client(&github);
        let mut masker = Masker::default();
        for s in [
            WEBHOOK_SECRET,
            OLD_WEBHOOK_SECRET,
            JIRA_SECRET,
            CONTROL_KEY,
            "jira-api-token-for-tests",
        ] {
            masker.add(s);
        }
        let jira_setup = JiraSetup {
            client: cca_jira::Jira::new(
                jira.url(),
                "bot@example.test",
                SecretString::from("jira-api-token-for-tests"),
            )
            .expect("jira client"),
            webhook_secrets: vec![SecretString::from(JIRA_SECRET)],
            project_mapping: [(
                "AG".to_owned(),
                cca_domain::RepoName::parse(REPO).expect("repo"),
            )]
            .into_iter()
            .collect(),
        };
        let app = Arc::new(App {
            store: store.clone(),
            launcher,
            github: gh,
            github_webhook_secrets: vec![
                SecretString::from(WEBHOOK_SECRET),
                SecretString::from(OLD_WEBHOOK_SECRET),
            ],
            jira: Some(jira_setup),
            control: ControlClient::new(
                SecretString::from(CONTROL_KEY),
                Duration::from_secs(3),
                Guard::new(Guard::default_allowed(), !opts.refuse_loopback_agents),
            ),
            uat_domain_suffix: DOMAIN.into(),
            rules: opts.rules,
            masker,
            conversations,
        });
        Some(Stand {
            router: router(app.clone()),
            github,
            jira,
            moto,
            ecs,
            cluster,
            families,
            store,
            app,
            _dir: dir,
        })
    }

    /// Sends raw bytes with the given headers through the real router.
    pub async fn send(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method("POST").uri(path);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req.body(Body::from(body)).expect("request");
        let resp = tower::ServiceExt::oneshot(self.router.clone(), req)
            .await
            .expect("router answers");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("non-JSON reply {status}: {bytes:?}"));
        (status, json)
    }

    /// Delivers a GitHub event, signed with the current secret.
    pub async fn deliver(
        &self,
        event: &str,
        payload: &Value,
        delivery: &str,
    ) -> (StatusCode, Value) {
        let body = serde_json::to_vec(payload).expect("json");
        let headers = [
            ("x-github-event", event.to_owned()),
            ("x-github-delivery", delivery.to_owned()),
            ("x-hub-signature-256", sign_github(WEBHOOK_SECRET, &body)),
            ("content-type", "application/json".to_owned()),
        ];
        self.send("/webhook", &headers, body).await
    }

    /// A coding session of an issue of its own, as its agent leaves it once started: `STARTING`
    /// with its address (`ip`) recorded.
    pub async fn started_session(&self, ip: &str) -> cca_domain::Session {
        let id = cca_domain::SessionId::random_agent();
        let mut s = cca_domain::Session::new(
            id.clone(),
            cca_domain::SessionType::Agent,
            cca_domain::Source::Github,
            cca_domain::RepoName::parse(REPO).unwrap(),
            cca_domain::BranchName::parse(&format!("claude/{}", id.as_str())).unwrap(),
            cca_domain::ImageChannel::Latest,
            cca_domain::now(),
        );
        s.installation_id = Some(INSTALLATION);
        // One active session per issue: each gets its own.
        s.issue_number = Some(u64::from(rand::random::<u16>()) + 1);
        self.store.create(&s).await.unwrap();
        let patch = SessionPatch {
            container_ip: Some(ip.to_owned()),
            control_port: Some(8080),
            ..SessionPatch::default()
        };
        self.store
            .transition(&id, Status::Starting, patch, cca_domain::now())
            .await
            .unwrap()
    }

    /// Delivers `payload` as GitHub's `event` under a fresh delivery id.
    pub async fn deliver_new(&self, event: &str, payload: &Value) -> (StatusCode, Value) {
        self.deliver(event, payload, &delivery()).await
    }

    /// A fake agent, and the session of a freshly labelled issue recorded as running there.
    pub async fn running_agent(&self) -> (FakeAgent, cca_domain::Session) {
        let agent = FakeAgent::start(None).await;
        let n = self.github.add_issue(REPO, "T", "B");
        let (_, reply) = self
            .deliver(
                "issues",
                &issue_labeled(n, "T", "B", "claude-dev", "alice"),
                &delivery(),
            )
            .await;
        assert_eq!(reply["message"], "Session started", "{reply}");
        let id = session_of(&reply);
        // As an agent does, it accepts only its session's token.
        agent.set_token(Some(cca_domain::control::control_token(
            CONTROL_KEY.as_bytes(),
            &id,
        )));
        let now = cca_domain::session::now();
        self.store
            .transition(&id, Status::Starting, SessionPatch::default(), now)
            .await
            .unwrap();
        let patch = SessionPatch {
            container_ip: Some(agent.addr().ip().to_string()),
            control_port: Some(agent.addr().port()),
            app_port: Some(3000),
            ..SessionPatch::default()
        };
        let session = self
            .store
            .transition(&id, Status::Running, patch, now)
            .await
            .unwrap();
        (agent, session)
    }

    /// A comment by `author` on PR `number`, delivered under a fresh delivery id.
    pub async fn comment(&self, number: u64, body: &str, author: &str) -> (StatusCode, Value) {
        self.deliver(
            "issue_comment",
            &pr_comment(number, body, author),
            &delivery(),
        )
        .await
    }

    /// Delivers a JIRA event, signed.
    pub async fn deliver_jira(&self, payload: &Value, delivery: &str) -> (StatusCode, Value) {
        let body = serde_json::to_vec(payload).expect("json");
        let headers = [
            ("x-atlassian-webhook-identifier", delivery.to_owned()),
            ("x-hub-signature", sign_github(JIRA_SECRET, &body)),
            ("content-type", "application/json".to_owned()),
        ];
        self.send("/webhook", &headers, body).await
    }

    /// Task ARNs in the stand's cluster.
    pub async fn tasks(&self) -> Vec<String> {
        self.moto.list_task_arns(&self.ecs, &self.cluster).await
    }

    /// (task definition ARN, last status) of each task.
    pub async fn describe_tasks(&self) -> Vec<(String, String)> {
        let arns = self.tasks().await;
        if arns.is_empty() {
            return vec![];
        }
        let out = self
            .ecs
            .describe_tasks()
            .cluster(&self.cluster)
            .set_tasks(Some(arns))
            .send()
            .await
            .expect("describe");
        out.tasks()
            .iter()
            .map(|t| {
                (
                    t.task_definition_arn().unwrap_or_default().to_owned(),
                    t.last_status().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// The status of a session that must exist.
    pub async fn status(&self, id: &cca_domain::SessionId) -> cca_domain::Status {
        self.store
            .get(id)
            .await
            .expect("store")
            .expect("session exists")
            .status
    }

    /// Every session in the store.
    pub async fn sessions(&self) -> Vec<cca_domain::Session> {
        self.store
            .list(&cca_store::ListFilter::default())
            .await
            .expect("list")
    }

    /// Pushes a commit to `head` and opens a PR from it, as a person would; returns its number.
    pub async fn open_pr(&self, head: &str) -> u64 {
        self.github.push_commit(REPO, head, "work");
        self.github.add_personal_token("person-token-for-tests");
        let resp: Value = reqwest::Client::new()
            .post(format!("{}/repos/{REPO}/pulls", self.github.url()))
            .bearer_auth("person-token-for-tests")
            .json(&json!({ "title": format!("Work on {head}"), "head": head, "base": "main", "body": "" }))
            .send()
            .await
            .expect("create PR")
            .json()
            .await
            .expect("PR json");
        resp["number"]
            .as_u64()
            .unwrap_or_else(|| panic!("no PR number in {resp}"))
    }

    /// Branches of the repository other than the default one.
    pub fn new_branches(&self) -> Vec<(String, String)> {
        self.github
            .branches(REPO)
            .into_iter()
            .filter(|(b, _)| b != "main")
            .collect()
    }
}

fn adapt_common(p: &mut Value, sender: &str, sender_type: &str) {
    p["repository"]["full_name"] = json!(REPO);
    p["repository"]["name"] = json!("app");
    p["repository"]["owner"]["login"] = json!("octo");
    p["sender"]["login"] = json!(sender);
    p["sender"]["type"] = json!(sender_type);
    p["installation"] = json!({ "id": INSTALLATION });
}

/// The session a webhook answer names.
pub fn session_of(reply: &Value) -> cca_domain::SessionId {
    let id = reply["session_id"].as_str();
    cca_domain::SessionId::parse(id.unwrap_or_else(|| panic!("no session in {reply}")))
        .expect("a session id")
}

/// A real `issues.labeled` payload, adapted to the stand's repository and an issue.
pub fn issue_labeled(number: u64, title: &str, body: &str, label: &str, sender: &str) -> Value {
    let mut p = github_example("issues", Some("labeled"));
    adapt_common(
        &mut p,
        sender,
        if sender.ends_with("[bot]") {
            "Bot"
        } else {
            "User"
        },
    );
    p["issue"]["number"] = json!(number);
    p["issue"]["title"] = json!(title);
    p["issue"]["body"] = json!(body);
    if let Some(o) = p["issue"].as_object_mut() {
        o.remove("pull_request");
    }
    p["label"] = json!({ "name": label, "id": 1, "color": "ededed" });
    p
}

/// A real `pull_request` payload of `action`, adapted.
pub fn pull_request(
    action: &str,
    number: u64,
    head_ref: &str,
    label: Option<&str>,
    sender: &str,
    merged: bool,
) -> Value {
    let mut p = github_example("pull_request", Some(action));
    adapt_common(
        &mut p,
        sender,
        if sender.ends_with("[bot]") {
            "Bot"
        } else {
            "User"
        },
    );
    p["number"] = json!(number);
    p["pull_request"]["number"] = json!(number);
    p["pull_request"]["head"]["ref"] = json!(head_ref);
    p["pull_request"]["head"]["repo"]["full_name"] = json!(REPO);
    p["pull_request"]["merged"] = json!(merged);
    if let Some(l) = label {
        p["label"] = json!({ "name": l, "id": 2, "color": "ededed" });
    }
    p
}

/// A real `issue_comment.created` payload on PR `number`, adapted.
pub fn pr_comment(number: u64, body: &str, author: &str) -> Value {
    let mut p = github_example("issue_comment", Some("created"));
    let kind = if author.ends_with("[bot]") {
        "Bot"
    } else {
        "User"
    };
    adapt_common(&mut p, author, kind);
    p["issue"]["number"] = json!(number);
    p["issue"]["pull_request"] =
        json!({ "url": format!("https://api.github.com/repos/{REPO}/pulls/{number}") });
    p["comment"]["id"] = json!(424242);
    p["comment"]["body"] = json!(body);
    p["comment"]["user"]["login"] = json!(author);
    p["comment"]["user"]["type"] = json!(kind);
    p
}

/// A fresh delivery id.
pub fn delivery() -> String {
    unique_name("delivery")
}
