//! GitHub App authentication: JWTs, installation tokens and their cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cca_domain::RepoName;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use octocrab::Octocrab;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::GitHubError;
use crate::client::RepoClient;

/// How far in the past a JWT's `iat` is set: GitHub rejects tokens "issued in the future", and
/// clocks drift; GitHub's own guidance is 60 s.
const JWT_BACKDATE_SECS: u64 = 60;

/// A JWT's lifetime from its `iat`. GitHub refuses more than 10 minutes; 9 leaves a minute for
/// clock skew on top of the backdating.
const JWT_LIFETIME_SECS: u64 = 9 * 60;

/// An installation token is replaced when less than this remains of its hour, so no request
/// starts with a token about to expire.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// A GitHub App's identity.
#[derive(Clone)]
pub struct AppCredentials {
    pub app_id: u64,
    key: EncodingKey,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

impl AppCredentials {
    /// From the App id and its private key in PEM (PKCS#1 or PKCS#8), as GitHub issues it.
    pub fn new(app_id: u64, private_key_pem: &SecretString) -> Result<Self, GitHubError> {
        let key =
            EncodingKey::from_rsa_pem(private_key_pem.expose_secret().as_bytes()).map_err(|e| {
                GitHubError::Auth(format!(
                    "GitHub App private key is not a usable RSA PEM key: {e}"
                ))
            })?;
        Ok(Self { app_id, key })
    }

    /// A JWT identifying the App, valid for about nine minutes.
    pub fn jwt(&self, now: SystemTime) -> Result<String, GitHubError> {
        #[derive(Serialize)]
        struct Claims {
            iat: u64,
            exp: u64,
            iss: String,
        }
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let iat = now.saturating_sub(JWT_BACKDATE_SECS);
        let claims = Claims {
            iat,
            exp: iat + JWT_LIFETIME_SECS,
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| GitHubError::Auth(format!("cannot sign the App JWT: {e}")))
    }
}

/// How the system authenticates to GitHub.
#[derive(Debug, Clone)]
pub enum GitHubAuth {
    /// A GitHub App; `default_installation` serves events that carry no installation (JIRA).
    App {
        app: AppCredentials,
        default_installation: Option<u64>,
    },
    /// A personal access token (local use).
    Token(SecretString),
    /// An agent's: installation tokens come from the control plane, which holds the App key
    /// and mints them limited to the session's repository ([`TOKEN_ROUTE`]); the agent proves
    /// its session with the session's control token.
    Broker {
        /// The control plane's base URL (`CCA_TOKEN_URL`).
        url: String,
        session_id: String,
        session_token: SecretString,
    },
}

/// Where an agent asks the control plane for a token: `POST <url>/agent/token` with
/// `{"session_id": …}` and `Authorization: Bearer <session token>`; the answer is
/// [`BrokeredToken`].
pub const TOKEN_ROUTE: &str = "/agent/token";

/// The control plane's answer to a token request.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct BrokeredToken {
    pub token: String,
    /// Seconds the token is still valid for.
    pub expires_in_secs: u64,
}

/// What an agent's token may do: what the agent uses (push, comments, PRs, reactions,
/// deployments), nothing else (no workflows, administration or secrets).
pub fn agent_permissions() -> serde_json::Value {
    serde_json::json!({
        "contents": "write",
        "pull_requests": "write",
        "issues": "write",
        "deployments": "write",
        "metadata": "read",
    })
}

/// A short-lived installation token.
#[derive(Clone)]
pub struct InstallationToken {
    pub token: SecretString,
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallationToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct AccessTokenAnswer {
    token: String,
    expires_at: String,
}

type TokenKey = (u64, Option<String>);
type TokenCache = HashMap<TokenKey, (InstallationToken, RepoClient)>;

/// Entry point to GitHub: hands out clients authenticated for an installation (or the personal
/// token), minting and caching installation tokens as needed.
#[derive(Clone)]
pub struct GitHub {
    api_url: String,
    auth: GitHubAuth,
    /// Unauthenticated client; every authenticated one is derived from it and shares its pool.
    base: Octocrab,
    tokens: Arc<tokio::sync::Mutex<TokenCache>>,
    personal: Option<RepoClient>,
    permissions: crate::client::PermissionCache,
    /// How long one call may wait in all for GitHub's rate limits.
    patience: Duration,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("api_url", &self.api_url)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// Bound on connecting to GitHub: the webhook has 10 s to answer in all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on waiting for one answer; GitHub answers REST calls in well under a second.
const READ_TIMEOUT: Duration = Duration::from_secs(8);

fn build_octocrab(api_url: &str) -> Result<Octocrab, GitHubError> {
    Octocrab::builder()
        .base_uri(api_url)
        .map_err(|e| {
            GitHubError::Auth(format!(
                "GITHUB_API_URL {api_url:?} is not a valid URL: {e}"
            ))
        })?
        .set_connect_timeout(Some(CONNECT_TIMEOUT))
        .set_read_timeout(Some(READ_TIMEOUT))
        .build()
        .map_err(|e| GitHubError::Auth(format!("cannot build the GitHub client: {e}")))
}

fn with_token(base: &Octocrab, token: &str) -> Result<Octocrab, GitHubError> {
    base.user_access_token(token.to_owned())
        .map_err(|e| GitHubError::Auth(format!("cannot authenticate the GitHub client: {e}")))
}

impl GitHub {
    /// A GitHub entry point for `api_url` (e.g. `https://api.github.com`).
    pub fn new(api_url: &str, auth: GitHubAuth) -> Result<Self, GitHubError> {
        let api_url = api_url.trim_end_matches('/').to_owned();
        let base = build_octocrab(&api_url)?;
        let personal = match &auth {
            GitHubAuth::Token(t) => Some(RepoClient::new(with_token(&base, t.expose_secret())?)),
            GitHubAuth::App { .. } | GitHubAuth::Broker { .. } => None,
        };
        Ok(Self {
            api_url,
            auth,
            base,
            tokens: Arc::default(),
            personal,
            permissions: crate::client::PermissionCache::default(),
            patience: crate::rate::DEFAULT_PATIENCE,
        })
    }

    /// How long one call may wait in all when GitHub rate-limits it
    /// ([`crate::DEFAULT_PATIENCE`] unless set): a few seconds where an answer is due (the
    /// webhook), minutes where nothing may be lost (an agent's comments).
    #[must_use]
    pub fn with_rate_limit_patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// The API URL every call goes to.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// The installation used when an event names none (JIRA events).
    pub fn default_installation(&self) -> Option<u64> {
        match &self.auth {
            GitHubAuth::App {
                default_installation,
                ..
            } => *default_installation,
            GitHubAuth::Token(_) | GitHubAuth::Broker { .. } => None,
        }
    }

    /// A client acting for `installation` (App mode) or the personal token.
    pub async fn client(&self, installation: Option<u64>) -> Result<RepoClient, GitHubError> {
        if let Some(p) = &self.personal {
            return Ok(p
                .clone()
                .with_permissions(self.permissions.clone())
                .with_patience(self.patience));
        }
        let id = installation
            .or(self.default_installation())
            .ok_or_else(|| GitHubError::Auth("the event names no GitHub App installation and no default_installation_id is configured".into()))?;
        let (_, client) = self.cached_token(id, None).await?;
        Ok(client
            .with_permissions(self.permissions.clone())
            .with_patience(self.patience))
    }

    /// A client acting with a token limited to one repository (what an agent container uses).
    /// A personal token is used as it is.
    pub async fn repo_client(
        &self,
        installation: u64,
        repo: &RepoName,
    ) -> Result<RepoClient, GitHubError> {
        if let GitHubAuth::Token(_) = &self.auth {
            return self.client(None).await;
        }
        Ok(self
            .cached_token(installation, Some(repo))
            .await?
            .1
            .with_patience(self.patience))
    }

    /// An installation token, limited to `repo` when given (what an agent container gets).
    pub async fn installation_token(
        &self,
        installation: u64,
        repo: Option<&RepoName>,
    ) -> Result<InstallationToken, GitHubError> {
        match &self.auth {
            GitHubAuth::Token(t) => Ok(InstallationToken {
                token: t.clone(),
                expires_at: SystemTime::now() + Duration::from_secs(3600),
            }),
            GitHubAuth::App { .. } | GitHubAuth::Broker { .. } => {
                Ok(self.cached_token(installation, repo).await?.0)
            }
        }
    }

    async fn cached_token(
        &self,
        installation: u64,
        repo: Option<&RepoName>,
    ) -> Result<(InstallationToken, RepoClient), GitHubError> {
        let key = (installation, repo.map(|r| r.name().to_owned()));
        // One lock for the whole cache: minting is rare (once an hour per installation), and
        // holding it while minting makes concurrent requests share one token instead of each
        // minting their own.
        let mut cache = self.tokens.lock().await;
        if let Some((tok, client)) = cache.get(&key) {
            if tok.expires_at > SystemTime::now() + TOKEN_REFRESH_MARGIN {
                return Ok((tok.clone(), client.clone()));
            }
        }
        // With a token still valid to fall back on, one attempt: the lock is held meanwhile.
        let fallback = cache
            .get(&key)
            .is_some_and(|(t, _)| t.expires_at > SystemTime::now() + Duration::from_secs(60));
        let tok = match self.mint(installation, repo, !fallback).await {
            Ok(tok) => tok,
            // A renewal that fails while the old token still has a minute left keeps the old
            // one: the next call tries again.
            Err(e) => match cache.get(&key) {
                Some((tok, client))
                    if tok.expires_at > SystemTime::now() + Duration::from_secs(60) =>
                {
                    tracing::warn!(error = %e, "renewing the installation token failed; the current one is still valid");
                    return Ok((tok.clone(), client.clone()));
                }
                _ => return Err(e),
            },
        };
        let client = RepoClient::new(with_token(&self.base, tok.token.expose_secret())?);
        cache.insert(key, (tok.clone(), client.clone()));
        Ok((tok, client))
    }

    /// A new token; `patient`: ride over transient failures of the control plane.
    async fn mint(
        &self,
        installation: u64,
        repo: Option<&RepoName>,
        patient: bool,
    ) -> Result<InstallationToken, GitHubError> {
        if let GitHubAuth::Broker {
            url,
            session_id,
            session_token,
        } = &self.auth
        {
            return broker_token(url, session_id, session_token, patient).await;
        }
        let (GitHubAuth::App { app, .. }, octo) = (&self.auth, &self.base) else {
            return Err(GitHubError::Auth(
                "installation tokens need GitHub App credentials".into(),
            ));
        };
        let route = format!("/app/installations/{installation}/access_tokens");
        let jwt = app.jwt(SystemTime::now())?;
        let body = match repo {
            Some(r) => serde_json::json!({
                "repositories": [r.name()],
                "permissions": agent_permissions(),
            }),
            None => serde_json::json!({}),
        };
        let as_app = octo
            .user_access_token(jwt)
            .map_err(|e| GitHubError::Auth(format!("cannot authenticate as the App: {e}")))?;
        let answer: AccessTokenAnswer = crate::rate::send(
            &as_app,
            http::Method::POST,
            &route,
            Some(&body),
            // Never long: the token cache's lock is held meanwhile, and the JWT is short-lived.
            crate::rate::DEFAULT_PATIENCE,
        )
        .await?;
        let expires_at = parse_rfc3339(&answer.expires_at)
            .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(3000));
        tracing::debug!(
            installation,
            scoped = repo.is_some(),
            "minted an installation token"
        );
        Ok(InstallationToken {
            token: SecretString::from(answer.token),
            expires_at,
        })
    }
}

/// Waits before each new attempt at the control plane after a transient failure (it could not
/// be reached, or answered 429 or 5xx, as when GitHub failed to mint).
const BROKER_RETRIES: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

/// A token from the control plane (see [`TOKEN_ROUTE`]), retried over transient failures
/// when `patient`.
async fn broker_token(
    url: &str,
    session_id: &str,
    session_token: &SecretString,
    patient: bool,
) -> Result<InstallationToken, GitHubError> {
    let waits: &[Duration] = if patient { &BROKER_RETRIES } else { &[] };
    let mut waits = waits.iter();
    loop {
        match broker_token_once(url, session_id, session_token).await {
            Err((e, true)) => match waits.next() {
                Some(wait) => {
                    tracing::warn!(error = %e, ?wait, "no token from the control plane yet; trying again");
                    tokio::time::sleep(*wait).await;
                }
                None => return Err(e),
            },
            Err((e, false)) => return Err(e),
            Ok(t) => return Ok(t),
        }
    }
}

/// One request for a token; the error says whether it is worth another try.
async fn broker_token_once(
    url: &str,
    session_id: &str,
    session_token: &SecretString,
) -> Result<InstallationToken, (GitHubError, bool)> {
    let route = format!("{}{TOKEN_ROUTE}", url.trim_end_matches('/'));
    let answer = reqwest::Client::new()
        .post(&route)
        .timeout(READ_TIMEOUT)
        .bearer_auth(session_token.expose_secret())
        .json(&serde_json::json!({ "session_id": session_id }))
        .send()
        .await
        .map_err(|e| {
            let e = GitHubError::Auth(format!(
                "the control plane at {route} could not be reached: {e}"
            ));
            (e, true)
        })?;
    let status = answer.status();
    if !status.is_success() {
        let transient = status.is_server_error() || status.as_u16() == 429;
        let body = answer.text().await.unwrap_or_default();
        let e = GitHubError::Auth(format!(
            "the control plane refused a token ({status}): {}",
            body.chars().take(300).collect::<String>()
        ));
        return Err((e, transient));
    }
    let t: BrokeredToken = answer.json().await.map_err(|e| {
        let e = GitHubError::Auth(format!("the control plane's answer is not a token: {e}"));
        (e, false)
    })?;
    tracing::debug!("received an installation token from the control plane");
    Ok(InstallationToken {
        token: SecretString::from(t.token),
        expires_at: SystemTime::now() + Duration::from_secs(t.expires_in_secs),
    })
}

/// Parses GitHub's `2026-11-21T10:00:00Z` (UTC, whole seconds) without a date library.
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        let t = parse_rfc3339("2026-11-21T10:00:00Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_795_255_200
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert!(parse_rfc3339("nonsense").is_none());
    }
}
