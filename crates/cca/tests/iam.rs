//! The IAM contract: every DynamoDB request the code makes for a role is allowed by that role's
//! policy as `infra/` applies it, evaluated as IAM evaluates it. The emulator evaluates no IAM at
//! all, so a policy that is too narrow shows only on the first real deployment; here it fails
//! the test with the request named.
//!
//! The requests are the real ones: the store's own client, against the emulator, with an
//! interceptor that records each request before it is sent (action, table or index, the
//! attributes it names in its key, item and expressions, `ReturnValues`), for the store methods
//! each binary calls:
//! - `agent-task`, `preview-task` (`cca-agent run` and `preview`): `get`, `update`, `transition`;
//! - `proxy-task` (`cca-uat-proxy`): `get`, `touch`;
//! - `webhook` (`cca-webhook`, which also runs the sweeper): every method.
//!
//! The policies are those of the applied deployment (`infra/test/run.sh` writes them beside
//! `CCA_INFRA_OUTPUTS`, from `terraform show -json`). The evaluation follows what AWS documents
//! and moto ignores: an explicit deny wins; an allow needs the action, the resource (an index is a
//! resource of its own, `<table>/index/<name>`) and every condition; a statement limited by
//! `dynamodb:Attributes` works only when its list names every key attribute of the table and of
//! its indexes, and allows no `ReturnValues` (nor `ReturnValuesOnConditionCheckFailure`) that
//! would return attributes outside the list (`ALL_OLD`, `ALL_NEW`); a read without a projection
//! names every attribute. A condition this test does not know fails the statement, so a new one
//! cannot pass unexamined. The last tests doctor the real policies and expect the failure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use cca_domain::ids::{BranchName, RepoName, SessionId};
use cca_domain::naming;
use cca_domain::session::{
    ActiveKey, ImageChannel, Session, SessionPatch, SessionType, Source, Status,
};
use cca_store::{DynamoStore, ListFilter, SessionStore};
use cca_testkit::moto::{Moto, unique_name};
use serde_json::{Value, json};

// --- Recording the code's requests -----------------------------------------------------------

/// Every DynamoDB request sent through a client: its `X-Amz-Target` and JSON body.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(String, Value)>>>);

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "IamContractRecorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let target = request
            .headers()
            .get("x-amz-target")
            .unwrap_or_default()
            .to_owned();
        let body = request
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        self.0.lock().unwrap().push((target, body));
        Ok(())
    }
}

impl Recorder {
    fn take(&self) -> Vec<(String, Value)> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// One action a request asks IAM for (a transaction asks for one per item).
#[derive(Debug, Clone, PartialEq)]
struct Request {
    /// What made it, for the failure message.
    origin: String,
    action: String,
    /// The table's ARN, or `<table ARN>/index/<name>`.
    resource: String,
    /// Top-level attributes the request names; `None` for a read of whole items.
    attributes: Option<BTreeSet<String>>,
    return_values: Option<String>,
    return_values_on_failure: Option<String>,
}

/// The top-level attribute names an expression uses: `#name` placeholders resolved, bare names
/// kept, functions, keywords and `:values` left out.
fn expression_attributes(expression: &str, names: &Value, into: &mut BTreeSet<String>) {
    const WORDS: &[&str] = &[
        "set",
        "remove",
        "add",
        "delete",
        "and",
        "or",
        "not",
        "in",
        "between",
        "attribute_exists",
        "attribute_not_exists",
        "attribute_type",
        "begins_with",
        "contains",
        "size",
        "if_not_exists",
        "list_append",
    ];
    let mut token = String::new();
    let flush = |token: &mut String, into: &mut BTreeSet<String>| {
        if let Some(placeholder) = token.strip_prefix('#') {
            let name = names[format!("#{placeholder}")]
                .as_str()
                .unwrap_or(placeholder);
            into.insert(name.to_owned());
        } else if !token.is_empty()
            && !token.starts_with(':')
            && !token.chars().next().unwrap().is_ascii_digit()
            && !WORDS.contains(&token.to_ascii_lowercase().as_str())
        {
            into.insert(token.clone());
        }
        token.clear();
    };
    let mut nested = false;
    for c in expression.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '#' || c == ':' {
            if !nested {
                token.push(c);
            }
        } else {
            if !token.is_empty() {
                flush(&mut token, into);
            }
            // `a.b` and `a[0]`: only `a` is a top-level attribute.
            nested = c == '.' || c == '[';
            if c == ']' {
                nested = false;
            }
        }
    }
    flush(&mut token, into);
}

/// The attributes a request (or a transaction item) names.
fn attributes_of(body: &Value, whole_item_read: bool) -> Option<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for part in ["Key", "Item"] {
        if let Some(map) = body[part].as_object() {
            names.extend(map.keys().cloned());
        }
    }
    for part in [
        "UpdateExpression",
        "ConditionExpression",
        "ProjectionExpression",
        "FilterExpression",
        "KeyConditionExpression",
    ] {
        if let Some(expression) = body[part].as_str() {
            expression_attributes(expression, &body["ExpressionAttributeNames"], &mut names);
        }
    }
    if whole_item_read && body["ProjectionExpression"].is_null() {
        return None;
    }
    Some(names)
}

/// The IAM requests of one recorded API call.
fn requests_of(origin: &str, target: &str, body: &Value, table_arn: &str) -> Vec<Request> {
    let operation = target.rsplit('.').next().unwrap_or(target);
    let resource = |body: &Value| match body["IndexName"].as_str() {
        Some(index) => format!("{table_arn}/index/{index}"),
        None => table_arn.to_owned(),
    };
    let single = |action: &str, body: &Value, whole: bool| Request {
        origin: origin.to_owned(),
        action: format!("dynamodb:{action}"),
        resource: resource(body),
        attributes: attributes_of(body, whole),
        return_values: body["ReturnValues"].as_str().map(str::to_owned),
        return_values_on_failure: body["ReturnValuesOnConditionCheckFailure"]
            .as_str()
            .map(str::to_owned),
    };
    match operation {
        "TransactWriteItems" => body["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|item| {
                [
                    ("Update", "UpdateItem"),
                    ("Put", "PutItem"),
                    ("Delete", "DeleteItem"),
                    ("ConditionCheck", "ConditionCheckItem"),
                ]
                .into_iter()
                .filter(|(part, _)| item[*part].is_object())
                .map(|(part, action)| single(action, &item[part], false))
                .collect::<Vec<_>>()
            })
            .collect(),
        "TransactGetItems" => body["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| single("GetItem", &item["Get"], true))
            .collect(),
        "GetItem" | "Query" | "Scan" => vec![single(operation, body, true)],
        other => vec![single(other, body, false)],
    }
}

// --- Evaluating them as IAM does ---------------------------------------------------------------

/// The sessions table as deployed, and the roles' statements.
#[derive(Debug, Clone)]
struct Policies {
    table_arn: String,
    /// The bucket sessions keep their conversations in (absent in the evaluator's own tests).
    conversations_arn: Option<String>,
    /// Key attributes of the table and of every index.
    key_attributes: BTreeSet<String>,
    roles: BTreeMap<String, Vec<Value>>,
}

impl Policies {
    fn from_json(v: &Value) -> Self {
        let mut key_attributes: BTreeSet<String> = strings(&v["table"]["keys"]).collect();
        if let Some(indexes) = v["table"]["indexes"].as_object() {
            for keys in indexes.values() {
                key_attributes.extend(strings(keys));
            }
        }
        Self {
            table_arn: v["table"]["arn"].as_str().unwrap().to_owned(),
            conversations_arn: v["conversations"]["arn"].as_str().map(str::to_owned),
            key_attributes,
            roles: v["roles"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(role, statements)| (role.clone(), statements.as_array().unwrap().clone()))
                .collect(),
        }
    }
}

fn strings(value: &Value) -> impl Iterator<Item = String> + '_ {
    let list: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    };
    list.into_iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
}

/// `*` and `?` as IAM matches them in actions (case-insensitive) and resources.
fn glob(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = if case_insensitive {
        (
            pattern.to_ascii_lowercase().chars().collect(),
            text.to_ascii_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(&p, &t)
}

const RETURNS_ONLY_LISTED: &[&str] = &["NONE", "UPDATED_OLD", "UPDATED_NEW"];

/// Why `statement` does not apply to `request`, or `None` when it does.
fn mismatch(statement: &Value, request: &Request, policies: &Policies) -> Option<String> {
    if !strings(&statement["Action"]).any(|a| glob(&a, &request.action, true)) {
        return Some("another action".into());
    }
    if !strings(&statement["Resource"]).any(|r| glob(&r, &request.resource, false)) {
        return Some("another resource".into());
    }
    let empty = serde_json::Map::new();
    let conditions = statement["Condition"].as_object().unwrap_or(&empty);
    let mut limits_attributes = false;
    for (operator, keys) in conditions {
        for (key, values) in keys.as_object().unwrap_or(&empty) {
            let allowed: BTreeSet<String> = strings(values).collect();
            match (operator.as_str(), key.as_str()) {
                ("ForAllValues:StringEquals", "dynamodb:Attributes") => {
                    limits_attributes = true;
                    let missing: Vec<&String> =
                        policies.key_attributes.difference(&allowed).collect();
                    if !missing.is_empty() {
                        return Some(format!(
                            "its dynamodb:Attributes leaves out the key attributes {missing:?} of \
                             the table and its indexes, so DynamoDB refuses every request under it"
                        ));
                    }
                    match &request.attributes {
                        None => {
                            return Some(
                                "it limits dynamodb:Attributes and the request reads whole items"
                                    .into(),
                            );
                        }
                        Some(named) => {
                            let outside: Vec<&String> = named.difference(&allowed).collect();
                            if !outside.is_empty() {
                                return Some(format!(
                                    "the request names {outside:?}, outside its dynamodb:Attributes"
                                ));
                            }
                        }
                    }
                }
                ("ForAnyValue:StringEquals", "dynamodb:Attributes") => {
                    let names_one = match &request.attributes {
                        None => true,
                        Some(named) => named.iter().any(|a| allowed.contains(a)),
                    };
                    if !names_one {
                        return Some("the request names none of its attributes".into());
                    }
                }
                ("StringEqualsIfExists", "dynamodb:ReturnValues") => {
                    if let Some(rv) = &request.return_values
                        && !allowed.contains(rv)
                    {
                        return Some(format!("ReturnValues {rv} is not among {allowed:?}"));
                    }
                }
                ("StringEquals", "dynamodb:ReturnValues") => match &request.return_values {
                    Some(rv) if allowed.contains(rv) => {}
                    other => {
                        return Some(format!("ReturnValues {other:?} is not among {allowed:?}"));
                    }
                },
                (operator, key) => {
                    return Some(format!(
                        "it has a condition this test does not evaluate ({operator} {key}): \
                         teach crates/cca/tests/iam.rs what IAM does with it"
                    ));
                }
            }
        }
    }
    if limits_attributes {
        for (what, value) in [
            ("ReturnValues", &request.return_values),
            (
                "ReturnValuesOnConditionCheckFailure",
                &request.return_values_on_failure,
            ),
        ] {
            if let Some(rv) = value
                && !RETURNS_ONLY_LISTED.contains(&rv.as_str())
            {
                return Some(format!(
                    "it limits dynamodb:Attributes and the request asks for {what} {rv}, which \
                     returns attributes outside the list"
                ));
            }
        }
    }
    None
}

/// `Ok` when the role may make the request, else why not.
fn evaluate(statements: &[Value], request: &Request, policies: &Policies) -> Result<(), String> {
    if let Some(negated) = statements.iter().find(|s| {
        ["NotAction", "NotResource", "NotPrincipal"]
            .iter()
            .any(|k| !s[*k].is_null())
    }) {
        return Err(format!(
            "statement {} uses NotAction/NotResource/NotPrincipal, which this test does not \
             evaluate",
            negated["Sid"].as_str().unwrap_or("?")
        ));
    }
    for deny in statements.iter().filter(|s| s["Effect"] == "Deny") {
        // A deny whose condition this test cannot read is taken to apply: never more lenient
        // than IAM.
        let applies = match mismatch(deny, request, policies) {
            None => true,
            Some(reason) => reason.contains("does not evaluate"),
        };
        if applies {
            return Err(format!(
                "denied by statement {}",
                deny["Sid"].as_str().unwrap_or("?")
            ));
        }
    }
    let mut reasons = Vec::new();
    for allow in statements.iter().filter(|s| s["Effect"] == "Allow") {
        match mismatch(allow, request, policies) {
            None => return Ok(()),
            Some(reason) if reason != "another action" && reason != "another resource" => {
                reasons.push(format!(
                    "{}: {reason}",
                    allow["Sid"].as_str().unwrap_or("(no Sid)")
                ));
            }
            Some(_) => {}
        }
    }
    Err(if reasons.is_empty() {
        "no statement allows this action on this resource".to_owned()
    } else {
        reasons.join("; ")
    })
}

/// Every request a role may not make, one line each.
fn refusals(role: &str, requests: &[Request], policies: &Policies) -> Vec<String> {
    let Some(statements) = policies.roles.get(role) else {
        return vec![format!("the deployment has no role {role}")];
    };
    requests
        .iter()
        .filter_map(|r| {
            evaluate(statements, r, policies).err().map(|why| {
                format!(
                    "{role} may not {} on {} (from {}, attributes {:?}, ReturnValues {:?}): {why}",
                    r.action, r.resource, r.origin, r.attributes, r.return_values
                )
            })
        })
        .collect()
}

// --- The code's requests, role by role ---------------------------------------------------------

/// The policies of the applied deployment, or `None` (and a message) without one.
fn deployed_policies() -> Option<Policies> {
    let path = std::env::var_os("CCA_INFRA_OUTPUTS")
        .map(PathBuf::from)
        .and_then(|p| p.parent().map(|d| d.join("policies.json")))
        .filter(|p| p.is_file());
    let Some(path) = path else {
        cca_testkit::stand::skip(
            "no policies.json beside CCA_INFRA_OUTPUTS (scripts/test.sh applies infra/ first)",
        );
        return None;
    };
    let text = std::fs::read_to_string(&path).expect("read policies.json");
    Some(Policies::from_json(
        &serde_json::from_str(&text).expect("policies.json is JSON"),
    ))
}

fn moto() -> Option<Moto> {
    let moto = Moto::from_env();
    if moto.is_none() {
        cca_testkit::stand::skip("CCA_MOTO_URL is not set (scripts/test.sh starts the emulator)");
    }
    moto
}

/// A fresh table, a plain store to set up with, and a recorded one to act as a role.
struct Bench {
    table_arn: String,
    setup: DynamoStore,
    recorded: DynamoStore,
    recorder: Recorder,
}

impl Bench {
    async fn new(moto: &Moto) -> Self {
        let config = moto.sdk_config().await;
        let client = aws_sdk_dynamodb::Client::new(&config);
        let table = unique_name("iam");
        DynamoStore::create_table(&client, &table)
            .await
            .expect("create the table");
        let table_arn = client
            .describe_table()
            .table_name(&table)
            .send()
            .await
            .expect("DescribeTable")
            .table()
            .and_then(|t| t.table_arn())
            .unwrap()
            .to_owned();
        let recorder = Recorder::default();
        let recorded_client = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&config)
                .interceptor(recorder.clone())
                .build(),
        );
        Self {
            table_arn,
            setup: DynamoStore::new(client, table.clone()),
            recorded: DynamoStore::new(recorded_client, table),
            recorder,
        }
    }

    /// The requests recorded since the last call, attributed to `origin`.
    fn requests(&self, origin: &str) -> Vec<Request> {
        self.recorder
            .take()
            .iter()
            .flat_map(|(target, body)| requests_of(origin, target, body, &self.table_arn))
            .collect()
    }
}

fn agent_session(issue: u64) -> Session {
    let repo = RepoName::parse("octo/iam").unwrap();
    let mut s = Session::new(
        SessionId::random_agent(),
        SessionType::Agent,
        Source::Github,
        repo,
        naming::issue_branch(issue),
        ImageChannel::Latest,
        1_000,
    );
    s.issue_number = Some(issue);
    s
}

fn preview_session(pr: u64) -> Session {
    let branch = BranchName::parse(&format!("feature/iam-{pr}")).unwrap();
    let mut s = Session::new(
        SessionId::preview(&branch),
        SessionType::Preview,
        Source::Github,
        RepoName::parse("octo/iam").unwrap(),
        branch,
        ImageChannel::Latest,
        1_000,
    );
    s.pr_number = Some(pr);
    s
}

/// A patch writing every field a patch can hold.
fn full_patch() -> SessionPatch {
    SessionPatch {
        pr_number: Some(7),
        task_arn: Some("arn:aws:ecs:us-east-1:123456789012:task/c/t".into()),
        container_ip: Some("10.0.1.5".into()),
        app_port: Some(5173),
        control_port: Some(8080),
        uat_url: Some("https://s.uat.example.com".into()),
        claude_session_id: Some("c-1".into()),
        cost_usd: Some(0.5),
        turns: Some(3),
        error: Some("e".into()),
        last_activity: Some(1_100),
        heartbeat_at: Some(1_100),
        initial_prompt: Some("p".into()),
        preview_public: Some(false),
        plan_mode: Some(true),
        runs: Some(2),
        prompt_threads: Some("[]".into()),
    }
}

/// What `cca-agent run` and `preview` do with their record: read it, patch it, move it to its
/// end (which releases the active key in the same transaction), and meet the refusals.
async fn session_task_requests(bench: &Bench) -> Vec<Request> {
    let s = agent_session(1);
    let id = &s.session_id;
    bench.setup.create(&s).await.unwrap();
    let mut requests = Vec::new();
    bench.recorded.get(id).await.unwrap();
    requests.extend(bench.requests("get"));
    for to in [Status::Starting, Status::Running] {
        bench
            .recorded
            .transition(id, to, SessionPatch::default(), 1_010)
            .await
            .unwrap();
    }
    requests.extend(bench.requests("transition"));
    bench
        .recorded
        .update(id, full_patch(), 1_020)
        .await
        .unwrap();
    requests.extend(bench.requests("update"));
    for to in [Status::Stopping, Status::Completed] {
        bench
            .recorded
            .transition(id, to, SessionPatch::default(), 1_030)
            .await
            .unwrap();
    }
    requests.extend(bench.requests("transition to an end"));
    let _ = bench
        .recorded
        .update(id, SessionPatch::default(), 1_040)
        .await
        .expect_err("ended");
    requests.extend(bench.requests("update refused"));
    let _ = bench
        .recorded
        .transition(id, Status::Running, SessionPatch::default(), 1_050)
        .await
        .expect_err("ended");
    requests.extend(bench.requests("transition refused"));
    requests
}

/// What `cca-uat-proxy` does: read records and record activity.
async fn proxy_requests(bench: &Bench) -> Vec<Request> {
    let s = preview_session(2);
    let id = &s.session_id;
    bench.setup.create(&s).await.unwrap();
    let mut requests = Vec::new();
    bench.recorded.get(id).await.unwrap();
    requests.extend(bench.requests("get"));
    bench.recorded.touch(id, 1_100).await.unwrap();
    requests.extend(bench.requests("touch"));
    bench
        .setup
        .transition(id, Status::Stopping, SessionPatch::default(), 1_200)
        .await
        .unwrap();
    bench
        .setup
        .transition(id, Status::Stopped, SessionPatch::default(), 1_201)
        .await
        .unwrap();
    let _ = bench.recorded.touch(id, 1_300).await.expect_err("ended");
    requests.extend(bench.requests("touch refused"));
    let ghost = SessionId::parse("ghost-iam").unwrap();
    let _ = bench.recorded.touch(&ghost, 1_300).await.expect_err("none");
    requests.extend(bench.requests("touch of no session"));
    requests
}

/// What `cca-webhook` (intake, launches, the sweeper) does: every method of the store.
async fn webhook_requests(bench: &Bench) -> Vec<Request> {
    let store = &bench.recorded;
    let mut requests = Vec::new();
    let a = agent_session(3);
    store.create(&a).await.unwrap();
    requests.extend(bench.requests("create"));
    let _ = store.create(&agent_session(3)).await.expect_err("active");
    requests.extend(bench.requests("create refused"));
    let p = preview_session(4);
    store.create(&p).await.unwrap();
    store.get(&a.session_id).await.unwrap();
    requests.extend(bench.requests("create, get"));
    store
        .update(&a.session_id, full_patch(), 1_010)
        .await
        .unwrap();
    requests.extend(bench.requests("update"));
    for to in [Status::Stopping, Status::Stopped] {
        store
            .transition(&a.session_id, to, SessionPatch::default(), 1_020)
            .await
            .unwrap();
    }
    requests.extend(bench.requests("transition"));
    store
        .relaunch(&a.session_id, SessionPatch::default(), 1_030)
        .await
        .unwrap();
    let _ = store
        .relaunch(&a.session_id, SessionPatch::default(), 1_031)
        .await
        .expect_err("running");
    requests.extend(bench.requests("relaunch"));
    let repo = RepoName::parse("octo/iam").unwrap();
    store
        .by_active_key(&ActiveKey::issue(&repo, 3))
        .await
        .unwrap();
    requests.extend(bench.requests("by_active_key"));
    store.by_pr(&repo, 4).await.unwrap();
    requests.extend(bench.requests("by_pr"));
    store
        .list(&ListFilter {
            statuses: vec![Status::Provisioning],
            limit: Some(5),
        })
        .await
        .unwrap();
    requests.extend(bench.requests("list"));
    assert!(store.record_delivery("d-1", 1_040).await.unwrap());
    assert!(!store.record_delivery("d-1", 1_041).await.unwrap());
    store.finish_delivery("d-1", 1_042).await.unwrap();
    store.forget_delivery("d-1").await.unwrap();
    store.finish_delivery("d-1", 1_043).await.unwrap();
    requests.extend(bench.requests("deliveries"));
    requests
}

async fn requests_of_role(moto: &Moto, role: &str) -> (Vec<Request>, String) {
    let bench = Bench::new(moto).await;
    let requests = match role {
        "agent-task" | "preview-task" => session_task_requests(&bench).await,
        "proxy-task" => proxy_requests(&bench).await,
        "webhook" => webhook_requests(&bench).await,
        other => panic!("no scenario for {other}"),
    };
    assert!(!requests.is_empty(), "nothing was recorded for {role}");
    (requests, bench.table_arn)
}

/// The same requests, on the deployed table's ARN (the bench's table is another one).
fn on_table(requests: &[Request], from: &str, to: &str) -> Vec<Request> {
    requests
        .iter()
        .cloned()
        .map(|mut r| {
            r.resource = r.resource.replacen(from, to, 1);
            r
        })
        .collect()
}

const ROLES: [&str; 4] = ["agent-task", "preview-task", "proxy-task", "webhook"];

#[tokio::test]
async fn every_request_of_every_role_is_allowed_by_its_deployed_policy() {
    let (Some(moto), Some(policies)) = (moto(), deployed_policies()) else {
        return;
    };
    let mut problems = Vec::new();
    for role in ROLES {
        let (requests, bench_arn) = requests_of_role(&moto, role).await;
        let requests = on_table(&requests, &bench_arn, &policies.table_arn);
        let actions: BTreeSet<&str> = requests.iter().map(|r| r.action.as_str()).collect();
        eprintln!("{role}: {} requests, {actions:?}", requests.len());
        problems.extend(refusals(role, &requests, &policies));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// An S3 request on `resource` (S3's requests carry no attribute list).
fn s3(origin: &str, action: &str, resource: String) -> Request {
    Request {
        origin: origin.into(),
        action: action.into(),
        resource,
        attributes: Some(BTreeSet::new()),
        return_values: None,
        return_values_on_failure: None,
    }
}

/// A session's conversation is its own: only the webhook, which presigns a URL of the asking
/// session's own object, may read or write conversations, and only under `sessions/`; no session
/// task (whose code runs next to the model's commands) may read or write any, its own or
/// another's, with its role's credentials.
#[test]
fn only_the_webhook_reaches_conversations_and_no_session_role_reads_another_sessions() {
    let Some(policies) = deployed_policies() else {
        return;
    };
    let bucket = policies
        .conversations_arn
        .clone()
        .expect("policies.json names the conversations bucket");
    let mine = cca_domain::SessionId::random_agent();
    let other = cca_domain::SessionId::random_agent();
    let object =
        |id: &cca_domain::SessionId| format!("{bucket}/{}", cca_webhook::conversation::key(id));
    let presigned: Vec<Request> = ["s3:GetObject", "s3:PutObject"]
        .into_iter()
        .map(|a| s3("webhook presigns", a, object(&mine)))
        .collect();
    assert_eq!(
        refusals("webhook", &presigned, &policies),
        Vec::<String>::new()
    );
    // Outside the sessions' prefix, or deleting, not even the webhook.
    let outside = [
        s3("webhook", "s3:GetObject", format!("{bucket}/elsewhere")),
        s3("webhook", "s3:PutObject", format!("{bucket}/elsewhere")),
        s3("webhook", "s3:DeleteObject", object(&mine)),
    ];
    assert_eq!(
        refusals("webhook", &outside, &policies).len(),
        outside.len()
    );
    for role in ["agent-task", "preview-task", "proxy-task"] {
        let attempts: Vec<Request> = [&mine, &other]
            .into_iter()
            .flat_map(|id| {
                ["s3:GetObject", "s3:PutObject"]
                    .into_iter()
                    .map(|a| s3(role, a, object(id)))
            })
            .chain([s3(role, "s3:ListBucket", bucket.clone())])
            .collect();
        let refused = refusals(role, &attempts, &policies);
        assert_eq!(
            refused.len(),
            attempts.len(),
            "{role} may reach conversations with its own credentials: {refused:#?}"
        );
        // Not even under a condition this test cannot read: no statement names S3 at all.
        let granting: Vec<&Value> = policies.roles[role]
            .iter()
            .filter(|st| {
                strings(&st["Action"]).any(|a| {
                    ["s3:GetObject", "s3:PutObject", "s3:ListBucket"]
                        .iter()
                        .any(|s3_action| glob(&a, s3_action, true))
                })
            })
            .collect();
        assert!(granting.is_empty(), "{role} names S3: {granting:#?}");
    }
}

/// The proxy's policy as deployed, with `edit` applied to its attribute-limited statement.
fn doctored_proxy(policies: &Policies, edit: impl Fn(&mut Value)) -> Policies {
    let mut doctored = policies.clone();
    let statements = doctored
        .roles
        .get_mut("proxy-task")
        .expect("proxy-task role");
    let limited = statements
        .iter_mut()
        .find(|s| !s["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"].is_null())
        .expect("the proxy's write is limited by dynamodb:Attributes");
    edit(limited);
    doctored
}

#[tokio::test]
async fn doctored_policies_fail_the_contract_naming_the_request() {
    let (Some(moto), Some(policies)) = (moto(), deployed_policies()) else {
        return;
    };
    let (proxy, bench_arn) = requests_of_role(&moto, "proxy-task").await;
    let proxy = on_table(&proxy, &bench_arn, &policies.table_arn);
    let found = refusals("proxy-task", &proxy, &policies);
    assert!(found.is_empty(), "{found:#?}");

    // An attribute the proxy writes, left out of the list.
    let without_activity = doctored_proxy(&policies, |s| {
        let list = s["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
            .as_array_mut()
            .unwrap();
        list.retain(|a| a != "last_activity");
    });
    let found = refusals("proxy-task", &proxy, &without_activity);
    assert!(
        found.iter().any(|f| f.contains("from touch")
            && f.contains("\"last_activity\"]")
            && f.contains("outside its dynamodb:Attributes")),
        "{found:#?}"
    );

    // An index key left out: DynamoDB refuses every request under the statement.
    let without_index_key = doctored_proxy(&policies, |s| {
        let list = s["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
            .as_array_mut()
            .unwrap();
        list.retain(|a| a != "pr_number");
    });
    let found = refusals("proxy-task", &proxy, &without_index_key);
    assert!(
        found
            .iter()
            .any(|f| f.contains("from touch") && f.contains("key attributes [\"pr_number\"]")),
        "{found:#?}"
    );

    // The write the proxy made before `touch`: `update` returns the whole record (ALL_NEW),
    // which an attribute-limited statement refuses whatever its ReturnValues list says.
    let bench = Bench::new(&moto).await;
    let s = preview_session(9);
    bench.setup.create(&s).await.unwrap();
    let patch = SessionPatch {
        last_activity: Some(1_100),
        ..SessionPatch::default()
    };
    bench
        .recorded
        .update(&s.session_id, patch, 1_100)
        .await
        .unwrap();
    let update = on_table(
        &bench.requests("update"),
        &bench.table_arn,
        &policies.table_arn,
    );
    let found = refusals("proxy-task", &update, &policies);
    assert!(
        found
            .iter()
            .any(|f| f.contains("ReturnValues ALL_NEW") || f.contains("ALL_NEW")),
        "{found:#?}"
    );

    // An action the webhook needs, taken away.
    let (webhook, bench_arn) = requests_of_role(&moto, "webhook").await;
    let webhook = on_table(&webhook, &bench_arn, &policies.table_arn);
    let mut no_query = policies.clone();
    for statement in no_query.roles.get_mut("webhook").unwrap() {
        if let Some(actions) = statement["Action"].as_array_mut() {
            actions.retain(|a| a != "dynamodb:Query");
        } else if statement["Action"] == "dynamodb:Query" {
            statement["Action"] = json!("dynamodb:DescribeTable");
        }
    }
    let found = refusals("webhook", &webhook, &no_query);
    assert!(
        found
            .iter()
            .any(|f| f.contains("may not dynamodb:Query") && f.contains("/index/pr-index")),
        "{found:#?}"
    );
}

// --- The evaluator on its own ------------------------------------------------------------------

fn request(action: &str, attributes: &[&str], return_values: Option<&str>) -> Request {
    Request {
        origin: "unit".into(),
        action: action.into(),
        resource: "arn:aws:dynamodb:us-east-1:1:table/t".into(),
        attributes: Some(attributes.iter().map(|s| s.to_string()).collect()),
        return_values: return_values.map(str::to_owned),
        return_values_on_failure: None,
    }
}

fn unit_policies(statements: Value) -> Policies {
    Policies::from_json(&json!({
        "table": {"arn": "arn:aws:dynamodb:us-east-1:1:table/t", "keys": ["id"],
                  "indexes": {"i": ["k"]}},
        "roles": {"r": statements},
    }))
}

#[test]
fn the_evaluator_reads_conditions_as_iam_does() {
    let limited = unit_policies(json!([
        {"Sid": "Limited", "Effect": "Allow", "Action": "dynamodb:UpdateItem",
         "Resource": "arn:aws:dynamodb:us-east-1:1:table/t",
         "Condition": {
            "ForAllValues:StringEquals": {"dynamodb:Attributes": ["id", "k", "a"]},
            "StringEqualsIfExists": {"dynamodb:ReturnValues": ["NONE", "UPDATED_NEW"]}}}
    ]));
    let ok = request("dynamodb:UpdateItem", &["id", "a"], Some("NONE"));
    assert!(refusals("r", &[ok], &limited).is_empty());
    let outside = request("dynamodb:UpdateItem", &["id", "b"], None);
    assert!(refusals("r", &[outside], &limited)[0].contains("[\"b\"]"));
    let all_new = request("dynamodb:UpdateItem", &["id"], Some("ALL_NEW"));
    assert!(refusals("r", &[all_new], &limited)[0].contains("ALL_NEW"));
    let other_action = request("dynamodb:PutItem", &["id"], None);
    assert!(refusals("r", &[other_action], &limited)[0].contains("no statement allows"));
    let mut whole = request("dynamodb:UpdateItem", &[], None);
    whole.attributes = None;
    assert!(refusals("r", &[whole], &limited)[0].contains("whole items"));

    let unknown = unit_policies(json!([
        {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*",
         "Condition": {"StringLike": {"dynamodb:LeadingKeys": ["x*"]}}}
    ]));
    let any = request("dynamodb:GetItem", &["id"], None);
    assert!(refusals("r", std::slice::from_ref(&any), &unknown)[0].contains("does not evaluate"));

    let denied = unit_policies(json!([
        {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"},
        {"Sid": "No", "Effect": "Deny", "Action": "dynamodb:GetItem", "Resource": "*"}
    ]));
    assert!(
        refusals("r", std::slice::from_ref(&any), &denied)[0].contains("denied by statement No")
    );

    let unknown_deny = unit_policies(json!([
        {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"},
        {"Sid": "Maybe", "Effect": "Deny", "Action": "dynamodb:GetItem", "Resource": "*",
         "Condition": {"StringLike": {"aws:SourceVpce": ["vpce-*"]}}}
    ]));
    assert!(
        refusals("r", std::slice::from_ref(&any), &unknown_deny)[0]
            .contains("denied by statement Maybe")
    );
    let negated = unit_policies(json!([
        {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"},
        {"Sid": "Neg", "Effect": "Deny", "NotAction": "dynamodb:GetItem", "Resource": "*"}
    ]));
    assert!(refusals("r", &[any], &negated)[0].contains("NotAction"));
}

#[test]
fn attributes_are_read_from_keys_items_and_expressions() {
    let body = json!({
        "Key": {"session_id": {"S": "x"}},
        "UpdateExpression": "SET #a = :a, #b.c = :b, d[0] = :d REMOVE #e",
        "ConditionExpression": "attribute_exists(#s) AND NOT (#st IN (:x, :y))",
        "ExpressionAttributeNames": {"#a": "last_activity", "#b": "meta", "#e": "error",
                                     "#s": "session_id", "#st": "status"},
    });
    let names: Vec<String> = attributes_of(&body, false).unwrap().into_iter().collect();
    assert_eq!(
        names,
        [
            "d",
            "error",
            "last_activity",
            "meta",
            "session_id",
            "status"
        ]
    );
    let get = json!({"Key": {"session_id": {"S": "x"}}});
    assert_eq!(attributes_of(&get, true), None);
    let transaction = json!({"TransactItems": [
        {"Update": {"TableName": "t", "Key": {"session_id": {"S": "x"}}, "UpdateExpression": "SET #a = :a",
                    "ExpressionAttributeNames": {"#a": "status"}}},
        {"ConditionCheck": {"TableName": "t", "Key": {"session_id": {"S": "p"}}, "ConditionExpression": "attribute_exists(session_id)"}}
    ]});
    let requests = requests_of(
        "t",
        "DynamoDB_20120810.TransactWriteItems",
        &transaction,
        "arn:t",
    );
    let actions: Vec<&str> = requests.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        ["dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"]
    );
}
