//! Stateful fake of the JIRA Cloud REST API (v3), limited to what the product uses.
//!
//! Issues and their comments live in memory; every call needs the Basic credentials the fake was
//! started with, and comment bodies must be Atlassian Document Format, as JIRA Cloud insists, so a
//! client that sends plain text fails here as it would in production. [`Adf`] and
//! [`adf_paragraphs`] build realistic documents for issue descriptions, and [`adf_text`] reads
//! one back as plain text for assertions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Query, State as Shared};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::github::{Fault, Faults, injected_failure, percent_decode, utc_fields};

/// Display name of the account the fake's credentials belong to.
pub const DISPLAY_NAME: &str = "Claude Cloud Agent (test)";
/// Account id of that account.
pub const ACCOUNT_ID: &str = "5b10ac8d82e05b22cc7d4ef5";

/// One request as the fake received it, whatever it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path as sent, without the query.
    pub path: String,
    /// Query parameters, decoded.
    pub query: BTreeMap<String, String>,
    /// Whether the Basic credentials matched.
    pub authorized: bool,
    /// JSON body; `Null` when empty, a string when it was not JSON.
    pub body: Value,
}

/// Handle on a running fake JIRA; clones share the same state.
#[derive(Debug, Clone)]
pub struct FakeJira {
    url: String,
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    url: String,
    expected_authorization: String,
    email: String,
    last_id: u64,
    issues: BTreeMap<String, Issue>,
    requests: Vec<Recorded>,
    faults: Faults,
}

#[derive(Debug)]
struct Issue {
    id: u64,
    key: String,
    summary: String,
    description: Value,
    labels: Vec<String>,
    created_at: SystemTime,
    comments: Vec<Comment>,
}

#[derive(Debug)]
struct Comment {
    id: u64,
    body: Value,
    created_at: SystemTime,
    updated_at: SystemTime,
}

impl FakeJira {
    /// Binds `127.0.0.1` on a free port; every call must carry Basic `email:api_token`.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start(email: &str, api_token: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port for the fake JIRA");
        let addr = listener
            .local_addr()
            .expect("local address of the fake JIRA");
        let url = format!("http://{addr}");
        let state = State {
            url: url.clone(),
            expected_authorization: format!(
                "Basic {}",
                BASE64.encode(format!("{email}:{api_token}"))
            ),
            email: email.to_owned(),
            last_id: 10_000,
            issues: BTreeMap::new(),
            requests: Vec::new(),
            faults: Faults::default(),
        };
        let fake = FakeJira {
            url,
            state: Arc::new(Mutex::new(state)),
        };
        let app = Router::new()
            .fallback(serve_request)
            .with_state(fake.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "fake JIRA stopped");
            }
        });
        fake
    }

    /// Base URL of the site, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates (or replaces) an issue; its project is the key's prefix.
    pub fn add_issue(&self, key: &str, summary: &str, description_adf: Value, labels: &[&str]) {
        let mut state = self.state();
        state.last_id += 1;
        let issue = Issue {
            id: state.last_id,
            key: key.to_uppercase(),
            summary: summary.to_owned(),
            description: description_adf,
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            created_at: SystemTime::now(),
            comments: Vec::new(),
        };
        state.issues.insert(issue.key.clone(), issue);
    }

    /// ADF bodies of the comments on an issue, oldest first (empty for an unknown issue).
    pub fn comments(&self, key: &str) -> Vec<Value> {
        self.state()
            .issues
            .get(&key.to_uppercase())
            .map(|i| i.comments.iter().map(|c| c.body.clone()).collect())
            .unwrap_or_default()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Answers the next `times` requests whose method is `method` (`*` for any) and whose path
    /// contains `path_contains` with `status`, before touching any state.
    pub fn fail_next(&self, method: &str, path_contains: &str, status: u16, times: usize) {
        self.state()
            .faults
            .push(Fault::new(method, path_contains, status, times));
    }
}

/// An error answer in JIRA's shape.
fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "errorMessages": [message], "errors": {} })),
    )
        .into_response()
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "Issue does not exist or you do not have permission to see it.",
    )
}

async fn serve_request(
    Shared(fake): Shared<FakeJira>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (body, is_json) = if body.is_empty() {
        (Value::Null, true)
    } else {
        match serde_json::from_slice(&body) {
            Ok(value) => (value, true),
            Err(_) => (
                Value::String(String::from_utf8_lossy(&body).into_owned()),
                false,
            ),
        }
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let mut state = fake.state();
    let authorized = authorization == Some(state.expected_authorization.as_str());
    state.requests.push(Recorded {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: Query::<BTreeMap<String, String>>::try_from_uri(&uri)
            .map(|Query(q)| q)
            .unwrap_or_default(),
        authorized,
        body: body.clone(),
    });
    if let Some(status) = state.faults.take(method.as_str(), uri.path()) {
        return injected_failure(
            status,
            json!({ "errorMessages": ["injected failure"], "errors": {} }),
        );
    }
    if !authorized {
        return error(
            StatusCode::UNAUTHORIZED,
            "Client must be authenticated to access this resource.",
        );
    }
    if !is_json {
        return error(
            StatusCode::BAD_REQUEST,
            "Unexpected character in the request body.",
        );
    }
    let segments: Vec<String> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["rest", "api", "3", "myself"]) => Json(state.myself()).into_response(),
        ("GET", ["rest", "api", "3", "issue", key]) => match state.issue(key) {
            Some(issue) => Json(state.issue_json(issue)).into_response(),
            None => not_found(),
        },
        ("GET", ["rest", "api", "3", "issue", key, "comment"]) => match state.issue(key) {
            Some(issue) => {
                let comments: Vec<Value> = issue
                    .comments
                    .iter()
                    .map(|c| state.comment_json(issue, c))
                    .collect();
                Json(json!({
                    "startAt": 0,
                    "maxResults": comments.len().max(50),
                    "total": comments.len(),
                    "comments": comments,
                }))
                .into_response()
            }
            None => not_found(),
        },
        ("POST", ["rest", "api", "3", "issue", key, "comment"]) => state.add_comment(key, &body),
        ("PUT", ["rest", "api", "3", "issue", key, "comment", id]) => {
            state.edit_comment(key, id, &body)
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

impl State {
    /// Looks an issue up by key (any case) or numeric id, as JIRA accepts both.
    fn issue(&self, key_or_id: &str) -> Option<&Issue> {
        self.issues
            .get(&key_or_id.to_uppercase())
            .or_else(|| self.issues.values().find(|i| i.id.to_string() == key_or_id))
    }

    fn issue_key(&self, key_or_id: &str) -> Option<String> {
        self.issue(key_or_id).map(|i| i.key.clone())
    }

    fn add_comment(&mut self, key: &str, body: &Value) -> Response {
        let Some(key) = self.issue_key(key) else {
            return not_found();
        };
        let adf = match comment_body(body) {
            Ok(adf) => adf,
            Err(answer) => return (StatusCode::BAD_REQUEST, Json(answer)).into_response(),
        };
        self.last_id += 1;
        let now = SystemTime::now();
        let comment = Comment {
            id: self.last_id,
            body: adf,
            created_at: now,
            updated_at: now,
        };
        let issue = &self.issues[&key];
        let json = self.comment_json(issue, &comment);
        self.issues
            .get_mut(&key)
            .expect("looked up above")
            .comments
            .push(comment);
        (StatusCode::CREATED, Json(json)).into_response()
    }

    fn edit_comment(&mut self, key: &str, id: &str, body: &Value) -> Response {
        let Some(key) = self.issue_key(key) else {
            return not_found();
        };
        let adf = match comment_body(body) {
            Ok(adf) => adf,
            Err(answer) => return (StatusCode::BAD_REQUEST, Json(answer)).into_response(),
        };
        let issue = self.issues.get_mut(&key).expect("looked up above");
        let Some(comment) = issue.comments.iter_mut().find(|c| c.id.to_string() == id) else {
            return error(StatusCode::NOT_FOUND, "Can not find a comment for the id.");
        };
        comment.body = adf;
        comment.updated_at = SystemTime::now();
        let issue = &self.issues[&key];
        let comment = issue
            .comments
            .iter()
            .find(|c| c.id.to_string() == id)
            .expect("just edited");
        Json(self.comment_json(issue, comment)).into_response()
    }

    fn myself(&self) -> Value {
        json!({
            "self": format!("{}/rest/api/3/user?accountId={ACCOUNT_ID}", self.url),
            "accountId": ACCOUNT_ID,
            "accountType": "atlassian",
            "emailAddress": self.email,
            "displayName": DISPLAY_NAME,
            "active": true,
            "timeZone": "Etc/UTC",
        })
    }

    fn issue_json(&self, issue: &Issue) -> Value {
        let project = issue.key.split('-').next().unwrap_or_default();
        json!({
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": issue.id.to_string(),
            "self": format!("{}/rest/api/3/issue/{}", self.url, issue.id),
            "key": issue.key,
            "fields": {
                "summary": issue.summary,
                "description": issue.description,
                "labels": issue.labels,
                "project": {
                    "self": format!("{}/rest/api/3/project/{project}", self.url),
                    "id": "10000",
                    "key": project,
                    "name": project,
                },
                "issuetype": { "id": "10001", "name": "Task", "subtask": false },
                "status": { "id": "10000", "name": "To Do" },
                "created": jira_time(issue.created_at),
                "updated": jira_time(issue.created_at),
            },
        })
    }

    fn comment_json(&self, issue: &Issue, comment: &Comment) -> Value {
        let author = json!({
            "self": format!("{}/rest/api/3/user?accountId={ACCOUNT_ID}", self.url),
            "accountId": ACCOUNT_ID,
            "emailAddress": self.email,
            "displayName": DISPLAY_NAME,
            "active": true,
            "accountType": "atlassian",
        });
        json!({
            "self": format!("{}/rest/api/3/issue/{}/comment/{}", self.url, issue.id, comment.id),
            "id": comment.id.to_string(),
            "author": author,
            "updateAuthor": author,
            "body": comment.body,
            "created": jira_time(comment.created_at),
            "updated": jira_time(comment.updated_at),
            "jsdPublic": true,
        })
    }
}

/// The ADF document of a comment request, or the body of JIRA's 400 answer.
fn comment_body(request: &Value) -> Result<Value, Value> {
    let body = &request["body"];
    if body.is_null() {
        return Err(json!({
            "errorMessages": [],
            "errors": { "comment": "Comment body can not be empty!" },
        }));
    }
    let is_doc = body["type"] == "doc"
        && body["version"] == 1
        && body["content"].is_array()
        && valid_adf_node(body);
    if !is_doc {
        // JIRA Cloud v3 answers plain strings and malformed documents like this.
        return Err(json!({ "errorMessages": ["INVALID_INPUT"], "errors": {} }));
    }
    Ok(body.clone())
}

/// Structural ADF rules JIRA enforces: typed nodes, array content, no empty text nodes.
fn valid_adf_node(node: &Value) -> bool {
    let Some(kind) = node["type"].as_str() else {
        return false;
    };
    if kind == "text" && node["text"].as_str().is_none_or(str::is_empty) {
        return false;
    }
    match &node["content"] {
        Value::Null => true,
        Value::Array(children) => children.iter().all(valid_adf_node),
        _ => false,
    }
}

/// JIRA's timestamp format, `2024-01-31T12:00:00.000+0000`.
fn jira_time(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = utc_fields(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}+0000")
}

/// Builder of Atlassian Document Format documents, for realistic issue descriptions.
#[derive(Debug, Clone, Default)]
pub struct Adf {
    content: Vec<Value>,
}

impl Adf {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a paragraph of plain text (an empty one for `""`, since ADF forbids empty text).
    pub fn paragraph(mut self, text: &str) -> Self {
        self.content.push(paragraph(vec![text_node(text)]));
        self
    }

    /// Appends a bullet list with one plain-text item per entry.
    pub fn bullet_list(mut self, items: &[&str]) -> Self {
        let items: Vec<Value> = items
            .iter()
            .map(
                |item| json!({ "type": "listItem", "content": [paragraph(vec![text_node(item)])] }),
            )
            .collect();
        self.content
            .push(json!({ "type": "bulletList", "content": items }));
        self
    }

    /// Appends a paragraph that starts with a mention of a user, followed by `text`.
    pub fn mention(mut self, account_id: &str, display_name: &str, text: &str) -> Self {
        let mention = json!({
            "type": "mention",
            "attrs": { "id": account_id, "text": format!("@{display_name}"), "accessLevel": "" },
        });
        self.content.push(paragraph(vec![mention, text_node(text)]));
        self
    }

    /// The finished document.
    pub fn build(self) -> Value {
        json!({ "type": "doc", "version": 1, "content": self.content })
    }
}

fn text_node(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        json!({ "type": "text", "text": text })
    }
}

fn paragraph(children: Vec<Value>) -> Value {
    let children: Vec<Value> = children.into_iter().filter(|c| !c.is_null()).collect();
    json!({ "type": "paragraph", "content": children })
}

/// An ADF document with one paragraph per entry.
pub fn adf_paragraphs(paras: &[&str]) -> Value {
    paras
        .iter()
        .fold(Adf::new(), |doc, text| doc.paragraph(text))
        .build()
}

/// Plain text of an ADF document: blocks on their own lines, list items prefixed with `- `,
/// mentions as their `@name`, links and cards as their URL.
pub fn adf_text(doc: &Value) -> String {
    fn walk(node: &Value, out: &mut String) {
        match node["type"].as_str().unwrap_or_default() {
            "text" => out.push_str(node["text"].as_str().unwrap_or_default()),
            "mention" | "emoji" => out.push_str(node["attrs"]["text"].as_str().unwrap_or_default()),
            "inlineCard" | "blockCard" => {
                out.push_str(node["attrs"]["url"].as_str().unwrap_or_default());
            }
            "hardBreak" => out.push('\n'),
            kind => {
                if kind == "listItem" {
                    out.push_str("- ");
                }
                for child in node["content"].as_array().into_iter().flatten() {
                    walk(child, out);
                }
                let is_block = matches!(kind, "paragraph" | "heading" | "codeBlock" | "blockquote");
                if is_block && !out.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
    }
    let mut out = String::new();
    walk(doc, &mut out);
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_reads_back_documents() {
        let doc = Adf::new()
            .paragraph("Add a dark mode.")
            .bullet_list(&["toggle in settings", "remember the choice"])
            .mention(ACCOUNT_ID, "Dana", " please review")
            .paragraph("")
            .build();
        assert!(valid_adf_node(&doc));
        assert_eq!(
            adf_text(&doc),
            "Add a dark mode.\n- toggle in settings\n- remember the choice\n@Dana please review"
        );
    }

    #[test]
    fn refuses_plain_text_comments() {
        assert!(comment_body(&json!({ "body": "hello" })).is_err());
        assert!(comment_body(&json!({ "body": adf_paragraphs(&["hello"]) })).is_ok());
    }
}
