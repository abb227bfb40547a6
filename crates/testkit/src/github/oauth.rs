//! GitHub's user authorization of the App (the web flow), as strict as github.com:
//!
//! - `GET /login/oauth/authorize?client_id&redirect_uri&state`: the browser's page at GitHub.
//!   The client id must be the App's and the `redirect_uri` one of its callback URLs (GitHub
//!   answers an error page otherwise). A browser signed in to GitHub ([`FakeGitHub::sign_in_browser`])
//!   is sent straight back with a `code` and the `state`; otherwise the sign-in page is shown.
//! - `POST /login/oauth/access_token` (form or JSON): the code, once, within ten minutes, with
//!   the client secret and the same `redirect_uri`; answered **200** with an `error` field when
//!   refused, as GitHub does.
//! - User tokens (`ghu_…`, eight hours): `GET /user`; `GET /repos/{owner}/{repo}` answers 404
//!   for a private repository the user has no role on and otherwise carries their
//!   `permissions`; the collaborator permission API needs push access to call; anything else
//!   is refused as not accessible to the integration.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::{Value, json};

use super::{Answer, ApiError, FakeGitHub, State, ok, parse_query, random_sha, user_json};

/// The App's OAuth client id (also given by the manifest conversion).
pub const CLIENT_ID: &str = "Iv1.cca0test0client";
/// The App's OAuth client secret.
pub const CLIENT_SECRET: &str = "cca-test-client-secret";

const CODE_LIFETIME: Duration = Duration::from_secs(600);
const TOKEN_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// The web flow's state inside the fake.
#[derive(Debug, Default)]
pub(super) struct WebFlow {
    /// Who is signed in to github.com in "the browser".
    browser_user: Option<String>,
    /// The App's callback URLs.
    callbacks: Vec<String>,
    codes: HashMap<String, IssuedCode>,
    tokens: HashMap<String, UserToken>,
    /// Authorizations asked for and codes exchanged, for tests.
    pub(super) authorizations: usize,
    pub(super) exchanges: usize,
}

#[derive(Debug)]
struct IssuedCode {
    login: String,
    redirect_uri: Option<String>,
    issued: Instant,
}

#[derive(Debug)]
struct UserToken {
    login: String,
    expires: Instant,
}

impl WebFlow {
    /// The user a live user token belongs to.
    pub(super) fn user_of(&self, token: &str) -> Option<&str> {
        self.tokens
            .get(token)
            .filter(|t| Instant::now() < t.expires)
            .map(|t| t.login.as_str())
    }

    /// Whether `token` is a user token the fake issued (live or not).
    pub(super) fn issued(&self, token: &str) -> bool {
        self.tokens.contains_key(token)
    }
}

impl FakeGitHub {
    /// Signs "the browser" in to github.com as `login` (`None`: signed out, so the
    /// authorization page asks to sign in and never returns).
    pub fn sign_in_browser(&self, login: Option<&str>) {
        self.state().web.browser_user = login.map(str::to_owned);
    }

    /// Registers a callback URL of the App (GitHub Apps take a few fixed ones).
    pub fn add_callback_url(&self, url: &str) {
        self.state().web.callbacks.push(url.to_owned());
    }

    /// Makes a repository private: user tokens without a role on it get 404.
    pub fn set_private(&self, repo: &str, private: bool) {
        self.with_repo(repo, |r| r.private = private);
    }

    /// Ends every user token of `login` (as revoking the App's authorization does).
    pub fn revoke_user_tokens(&self, login: &str) {
        self.state()
            .web
            .tokens
            .retain(|_, t| !t.login.eq_ignore_ascii_case(login));
    }

    /// How many times the authorization page was asked for, and codes exchanged for tokens.
    pub fn web_flow_counts(&self) -> (usize, usize) {
        let state = self.state();
        (state.web.authorizations, state.web.exchanges)
    }
}

/// `GET /login/oauth/authorize`.
pub(super) async fn authorize(Shared(fake): Shared<FakeGitHub>, uri: Uri) -> Response {
    let query = parse_query(&uri);
    let mut state = fake.state();
    let web = &mut state.web;
    web.authorizations += 1;
    if query.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return (
            StatusCode::NOT_FOUND,
            Html("<h1>404: application not found</h1>"),
        )
            .into_response();
    }
    let redirect_uri = query.get("redirect_uri").cloned();
    let target = match &redirect_uri {
        Some(uri) if web.callbacks.iter().any(|c| c == uri) => uri.clone(),
        Some(_) => {
            return (
                StatusCode::BAD_REQUEST,
                Html("<h1>Redirect URI mismatch</h1><p>The redirect_uri is not associated with this application.</p>"),
            )
                .into_response();
        }
        None => match web.callbacks.first() {
            Some(first) => first.clone(),
            None => {
                return (StatusCode::BAD_REQUEST, Html("<h1>No callback URL</h1>")).into_response();
            }
        },
    };
    let Some(login) = web.browser_user.clone() else {
        return Html("<h1>Sign in to GitHub</h1><p>to continue to the App</p>").into_response();
    };
    let code = random_sha()[..20].to_owned();
    web.codes.insert(
        code.clone(),
        IssuedCode {
            login,
            redirect_uri,
            issued: Instant::now(),
        },
    );
    let mut location = format!("{target}?code={code}");
    if let Some(s) = query.get("state") {
        location.push_str("&state=");
        location.push_str(&form_encode(s));
    }
    Redirect::to(&location).into_response()
}

/// `POST /login/oauth/access_token`.
pub(super) async fn access_token(
    Shared(fake): Shared<FakeGitHub>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let fields: HashMap<String, String> = if json_body {
        serde_json::from_slice::<HashMap<String, Value>>(&body)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
            .collect()
    } else {
        url::form_urlencoded::parse(&body).into_owned().collect()
    };
    let field = |name: &str| fields.get(name).map(String::as_str);
    let refuse = |error: &str, description: &str| {
        (
            StatusCode::OK,
            axum::Json(json!({
                "error": error,
                "error_description": description,
                "error_uri": "https://docs.github.com/apps/troubleshooting",
            })),
        )
            .into_response()
    };
    if field("client_id") != Some(CLIENT_ID) || field("client_secret") != Some(CLIENT_SECRET) {
        return refuse(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
        );
    }
    let mut state = fake.state();
    let web = &mut state.web;
    web.exchanges += 1;
    // A code is spent by the first exchange, whatever its outcome.
    let Some(issued) = field("code").and_then(|c| web.codes.remove(c)) else {
        return refuse(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
        );
    };
    if issued.issued.elapsed() > CODE_LIFETIME {
        return refuse(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
        );
    }
    if issued.redirect_uri.is_some() && field("redirect_uri") != issued.redirect_uri.as_deref() {
        return refuse(
            "redirect_uri_mismatch",
            "The redirect_uri MUST match the registered callback URL for this application.",
        );
    }
    let token = format!("ghu_{}", &random_sha()[..36]);
    web.tokens.insert(
        token.clone(),
        UserToken {
            login: issued.login,
            expires: Instant::now() + TOKEN_LIFETIME,
        },
    );
    (
        StatusCode::OK,
        axum::Json(json!({
            "access_token": token,
            "expires_in": TOKEN_LIFETIME.as_secs(),
            "refresh_token": format!("ghr_{}", &random_sha()[..36]),
            "refresh_token_expires_in": 15_897_600,
            "token_type": "bearer",
            "scope": "",
        })),
    )
        .into_response()
}

impl State {
    /// An API request made with a user token of `login`.
    pub(super) fn user_route(&mut self, login: &str, method: &str, segments: &[&str]) -> Answer {
        match (method, segments) {
            ("GET", ["user"]) => ok(user_json(&self.url, login)),
            ("GET", ["repos", owner, name, rest @ ..]) => {
                let key = format!("{owner}/{name}").to_lowercase();
                let api = self.url.clone();
                let repo = self.repos.get(&key).ok_or_else(ApiError::not_found)?;
                let role = repo
                    .permissions
                    .get(&login.to_lowercase())
                    .map_or("none", String::as_str);
                if repo.private && role == "none" {
                    return Err(ApiError::not_found());
                }
                match rest {
                    [] => {
                        let mut json = repo.json(&api);
                        json["permissions"] = json!({
                            "admin": role == "admin",
                            "maintain": matches!(role, "admin" | "maintain"),
                            "push": matches!(role, "admin" | "maintain" | "write"),
                            "triage": matches!(role, "admin" | "maintain" | "write" | "triage"),
                            "pull": role != "none" || !repo.private,
                        });
                        ok(json)
                    }
                    ["collaborators", other, "permission"] => {
                        if matches!(role, "admin" | "maintain" | "write") {
                            ok(repo.permission_json(&api, other))
                        } else {
                            Err(ApiError::new(
                                StatusCode::FORBIDDEN,
                                "Must have push access to view repository collaborators.",
                            ))
                        }
                    }
                    _ => Err(not_accessible()),
                }
            }
            _ => Err(not_accessible()),
        }
    }
}

fn not_accessible() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "Resource not accessible by integration",
    )
}

fn form_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
