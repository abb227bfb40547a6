//! Sign-in with GitHub in front of every preview.
//!
//! A visitor without a valid session cookie for the preview host is sent through GitHub's user
//! authorization of the App (the web flow), on one fixed auth host, `auth.<suffix>`, whose
//! `/callback` is the App's callback URL:
//!
//! 1. `<id>.<suffix>/page` → 302 to `auth.<suffix>/signin?to=<the page>&b=<binding>`, with a
//!    host-only *binding* cookie on the preview host (a random nonce; `b` is its SHA-256).
//! 2. The auth host checks that `to` is a preview address (anything else is refused: no open
//!    redirect) and sends the browser to GitHub's `/login/oauth/authorize` with a sealed `state`
//!    holding `to`, `b` and an expiry.
//! 3. GitHub returns to `auth.<suffix>/callback?code&state`; the auth host opens the state,
//!    exchanges the code for the user's token (client id and secret), reads `GET /user`, and
//!    hands the preview host a *one-time code*, sealed for that host alone and valid for a
//!    minute: `<id>.<suffix>/__cca/signin?code=…`. Never the cookie itself.
//! 4. The preview host opens the code, checks that the browser holds the binding cookie whose
//!    digest the code carries (a code stolen from a log or a `Referer` is useless elsewhere, and
//!    a visitor cannot be signed in as someone else by a link), refuses a code it has seen,
//!    sets its own host-only session cookie and sends the visitor back to the page.
//!
//! Every request then carries the session cookie: sealed ([`crate::seal`]) for that host, with
//! the visitor's login, id, token and an expiry. The proxy lets them in when GitHub says, with
//! the visitor's own token, that they may read (or write, as configured) the session's
//! repository; the answer is cached for [`ACCESS_TTL`] per visitor and repository, so removed
//! access ends within that time. The gate's cookies are removed from requests before they
//! reach the app, and an app cannot set them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode, Uri};
use serde::{Deserialize, Serialize};

use crate::metrics::Outcome;
use crate::pages::Page;
use crate::seal::{self, Purpose, Sealer};

/// The auth host's label: `auth.<suffix>`. Never a session id: agent ids are 16 random
/// characters and preview ids start with `tt-`.
pub const AUTH_LABEL: &str = "auth";

/// The path on a preview host where the auth host's one-time code is turned into a cookie.
/// Requests for it never reach the app.
pub const SIGNIN_PATH: &str = "/__cca/signin";

/// How long GitHub's answer on a visitor's access is trusted: a visitor whose access is removed
/// loses the preview within this time (the webhook's permission check caches as briefly).
pub const ACCESS_TTL: Duration = Duration::from_secs(60);

/// How long a preview session cookie lasts: a working day, as GitHub's user tokens do (8 h).
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// How long a sign-in may take at GitHub (the sealed `state`).
const STATE_TTL_SECS: u64 = 600;

/// How long the auth host's one-time code is valid: a redirect takes a second.
const CODE_TTL_SECS: u64 = 60;

/// How long GitHub may take to answer one call of the gate.
const GITHUB_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest page address (path and query) a sign-in returns to; longer ones return to `/`, so
/// the sealed state and code stay well under [`seal::MAX_SEALED_LEN`].
const MAX_RETURN_PATH: usize = 2048;

/// Entries kept in the access cache and the used-code list before old ones are dropped.
const MAX_ENTRIES: usize = 10_000;

/// The repository permission a visitor needs to see a preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read (`pull`): anyone who may read the repository (the default).
    Read,
    /// Write (`push`): only people who may change it.
    Write,
}

impl std::str::FromStr for Access {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            _ => Err(format!("{s:?} is neither read nor write")),
        }
    }
}

/// What the gate needs: the App's OAuth client, GitHub's addresses and the policy.
#[derive(Clone)]
pub struct GateSettings {
    /// The App's client id (`Iv1.…` or `Iv23…`).
    pub client_id: String,
    /// The App's client secret. Cookies are sealed with a key derived from it unless
    /// `cookie_secret` is set.
    pub client_secret: String,
    /// A separate secret for sealing (`PREVIEW_COOKIE_SECRET`); rotating it signs everyone out.
    pub cookie_secret: Option<String>,
    /// GitHub's REST API (`https://api.github.com`).
    pub api_url: String,
    /// GitHub's web host, where the authorization pages are (`https://github.com`).
    pub web_url: String,
    /// The permission a visitor needs.
    pub access: Access,
    /// See [`ACCESS_TTL`].
    pub access_ttl: Duration,
    /// See [`SESSION_TTL`].
    pub session_ttl: Duration,
    /// `https` links and `Secure`, `__Host-` cookies; off only in local mode (plain HTTP on
    /// loopback).
    pub secure: bool,
}

impl std::fmt::Debug for GateSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateSettings")
            .field("client_id", &self.client_id)
            .field("api_url", &self.api_url)
            .field("web_url", &self.web_url)
            .field("access", &self.access)
            .field("access_ttl", &self.access_ttl)
            .field("session_ttl", &self.session_ttl)
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

impl GateSettings {
    /// Settings for the App client `client_id`/`client_secret` on github.com, with the defaults.
    pub fn new(client_id: &str, client_secret: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            cookie_secret: None,
            api_url: "https://api.github.com".into(),
            web_url: "https://github.com".into(),
            access: Access::Read,
            access_ttl: ACCESS_TTL,
            session_ttl: SESSION_TTL,
            secure: true,
        }
    }
}

/// Who a valid session cookie says the visitor is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Visitor {
    login: String,
    id: u64,
    token: String,
    /// Unix seconds after which the cookie is refused.
    exp: u64,
}

/// The sealed `state` of an authorization.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    to: String,
    b: String,
    exp: u64,
}

/// The one-time code the auth host hands a preview host.
#[derive(Debug, Serialize, Deserialize)]
struct Code {
    visitor: Visitor,
    /// The page to return to.
    to: String,
    /// SHA-256 of the binding cookie the browser must hold.
    b: String,
    /// Unique per code, remembered once used.
    n: String,
    exp: u64,
}

/// A visitor's GitHub id and a repository (lower case): what an access answer is about.
type AccessKey = (u64, String);

/// The lock that lets one request at a time ask GitHub about one [`AccessKey`].
type Flight = Arc<tokio::sync::Mutex<()>>;

/// GitHub's answer on one visitor and one repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allowed,
    Denied,
}

/// Why access could not be decided.
#[derive(Debug)]
enum Check {
    /// GitHub no longer accepts the visitor's token: sign in again.
    SignedOut,
    /// GitHub failed or rate-limited the check.
    Unavailable(String),
}

/// What the gate says about a request for a preview.
#[derive(Debug)]
pub enum Admission {
    /// Let it through to the session (or its page).
    Allowed,
    /// Answer this instead.
    Respond(Outcome, Response<Bytes>),
}

/// The gate of a serving proxy. See the module documentation.
#[derive(Debug)]
pub struct Gate {
    settings: GateSettings,
    suffix: String,
    sealer: Sealer,
    http: reqwest::Client,
    access: Mutex<HashMap<AccessKey, (Verdict, Instant)>>,
    /// One question to GitHub at a time per visitor and repository.
    flights: Mutex<HashMap<AccessKey, Flight>>,
    used_codes: Mutex<HashMap<String, u64>>,
    cookie: &'static str,
    binding: &'static str,
}

impl Gate {
    /// The gate for previews under `suffix`.
    pub fn new(settings: GateSettings, suffix: &str) -> Self {
        let secret = settings
            .cookie_secret
            .as_deref()
            .unwrap_or(&settings.client_secret);
        let http = reqwest::Client::builder()
            .timeout(GITHUB_TIMEOUT)
            .user_agent(concat!("cca-uat-proxy/", env!("CARGO_PKG_VERSION")))
            // A renamed repository answers 301 to its new name.
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .expect("the HTTP client builds");
        let (cookie, binding) = if settings.secure {
            ("__Host-cca-preview", "__Host-cca-signin")
        } else {
            ("cca-preview", "cca-signin")
        };
        Self {
            sealer: Sealer::from_secret(secret.as_bytes()),
            settings,
            suffix: suffix.to_owned(),
            http,
            access: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            used_codes: Mutex::new(HashMap::new()),
            cookie,
            binding,
        }
    }

    /// The name of the session cookie.
    pub fn cookie_name(&self) -> &'static str {
        self.cookie
    }

    /// Whether `host` (port allowed) is the auth host.
    pub fn is_auth_host(&self, host: &str) -> bool {
        host_name(host)
            .strip_suffix(&self.suffix)
            .and_then(|l| l.strip_suffix('.'))
            == Some(AUTH_LABEL)
    }

    /// A request for the preview `host` (as the visitor wrote it, port included) of a session in
    /// `repo` (`None` when no session has that name): the sign-in return, a visitor let in, or
    /// the answer that sends them to sign in or refuses them.
    pub async fn admit(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        host: &str,
        repo: Option<&str>,
    ) -> Admission {
        let name = host_name(host);
        if uri.path() == SIGNIN_PATH {
            return self.finish_sign_in(uri, headers, &name);
        }
        let Some(visitor) = self.visitor(headers, &name) else {
            return self.sign_in(method, uri, headers, host);
        };
        if let Some(why) = self.cross_site(method, headers, host) {
            // Every preview is the same site: another preview's page could otherwise use this
            // visitor's cookie (a WebSocket to this dev server, a form post).
            tracing::info!(login = %visitor.login, host = %name, %why, "cross-site request refused");
            return respond(Outcome::Forbidden, Page::CrossSite.response());
        }
        let Some(repo) = repo else {
            // No such session: the same answer as no access, so a signed-in stranger cannot
            // probe which previews (branch names) exist.
            return respond(
                Outcome::Forbidden,
                Page::Forbidden {
                    login: visitor.login,
                }
                .response(),
            );
        };
        match self.check(&visitor, repo).await {
            Ok(Verdict::Allowed) => Admission::Allowed,
            Ok(Verdict::Denied) => {
                tracing::info!(login = %visitor.login, %repo, "visitor without access refused");
                respond(
                    Outcome::Forbidden,
                    Page::Forbidden {
                        login: visitor.login,
                    }
                    .response(),
                )
            }
            Err(Check::SignedOut) => self.sign_in(method, uri, headers, host),
            Err(Check::Unavailable(why)) => {
                tracing::warn!(login = %visitor.login, %repo, error = %why, "cannot check a visitor's access");
                respond(
                    Outcome::AccessUnavailable,
                    Page::AccessUnavailable.response(),
                )
            }
        }
    }

    /// Why a request is refused as coming from another site or origin, if it is: the browser's
    /// fetch metadata says it came from elsewhere and it is not a page load (a link from the PR
    /// is one); without fetch metadata (older browsers), an upgrade or a request that changes
    /// state must carry this preview's own `Origin`, if any.
    fn cross_site(&self, method: &Method, headers: &HeaderMap, host: &str) -> Option<String> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let safe = matches!(*method, Method::GET | Method::HEAD);
        let upgrade = crate::proxy::upgrade_protocol(headers).is_some();
        match header("sec-fetch-site") {
            Some("same-origin" | "none") => None,
            Some(site) => {
                let navigation = header("sec-fetch-mode") == Some("navigate") && safe && !upgrade;
                (!navigation).then(|| format!("Sec-Fetch-Site: {site}"))
            }
            None if safe && !upgrade => None,
            None => {
                let own = format!("{}://{}", self.scheme(), host.to_ascii_lowercase());
                match header("origin") {
                    Some(origin) if !origin.eq_ignore_ascii_case(&own) => {
                        Some(format!("Origin: {origin}"))
                    }
                    _ => None,
                }
            }
        }
    }

    /// The visitor a valid session cookie for `name` names. Every cookie of the gate's name is
    /// tried, since a browser may hold more than one.
    fn visitor(&self, headers: &HeaderMap, name: &str) -> Option<Visitor> {
        let now = unix_now();
        cookies(headers, self.cookie).find_map(|value| {
            let plain = self.sealer.open(Purpose::Cookie, name, value)?;
            let visitor: Visitor = serde_json::from_slice(&plain).ok()?;
            (visitor.exp > now).then_some(visitor)
        })
    }

    /// Whether a cookie valid for `name` comes with the request (for the benchmark and tests).
    pub fn has_valid_cookie(&self, headers: &HeaderMap, name: &str) -> bool {
        self.visitor(headers, name).is_some()
    }

    /// A session cookie value for `login` on `name`, as the sign-in return would set it (for
    /// the benchmark).
    pub fn issue_cookie(&self, name: &str, login: &str, id: u64, token: &str) -> String {
        let visitor = Visitor {
            login: login.to_owned(),
            id,
            token: token.to_owned(),
            exp: unix_now() + self.settings.session_ttl.as_secs(),
        };
        self.seal_json(Purpose::Cookie, name, &visitor)
    }

    /// Sends the visitor to sign in: a page load is redirected to the auth host; anything
    /// else (an upgrade, a form post, a script) is answered 401, since it could not follow.
    fn sign_in(&self, method: &Method, uri: &Uri, headers: &HeaderMap, host: &str) -> Admission {
        let navigable = matches!(*method, Method::GET | Method::HEAD)
            && crate::proxy::upgrade_protocol(headers).is_none();
        if !navigable {
            return respond(Outcome::SignIn, Page::SignInRequired.response());
        }
        // One binding per browser: a second tab reuses it rather than breaking the first's. It
        // is sealed for this host, so a value the app planted (it runs on this host) is not one.
        let name = host_name(host);
        let binding = cookies(headers, self.binding)
            .find(|v| self.sealer.open(Purpose::Binding, &name, v).is_some())
            .map_or_else(
                || {
                    self.sealer
                        .seal(Purpose::Binding, &name, seal::random_text(16).as_bytes())
                },
                str::to_owned,
            );
        // A page address too long to carry through GitHub's state is returned to as `/`.
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| p.len() <= MAX_RETURN_PATH)
            .unwrap_or("/");
        let to = format!("{}://{host}{path}", self.scheme());
        let location = format!(
            "{}/signin?to={}&b={}",
            self.auth_origin(host),
            encode(&to),
            seal::digest_hex(binding.as_bytes())
        );
        let mut response = redirect(StatusCode::FOUND, &location);
        self.set_cookie(&mut response, self.binding, &binding, STATE_TTL_SECS);
        respond(Outcome::SignIn, response)
    }

    /// A request for the auth host: `/signin` (start) or `/callback` (GitHub's return).
    pub async fn auth_request(
        &self,
        method: &Method,
        uri: &Uri,
        host: &str,
    ) -> (Outcome, Response<Bytes>) {
        if !matches!(*method, Method::GET | Method::HEAD) {
            return (Outcome::NotAllowed, Page::MethodNotAllowed.response());
        }
        let query = query_pairs(uri);
        let answer = match uri.path() {
            "/signin" => self.start(&query, host),
            "/callback" => self.callback(&query, host).await,
            _ => return (Outcome::UnknownHost, Page::UnknownHost.response()),
        };
        match answer {
            Ok(response) => (Outcome::Auth, response),
            Err(reason) => {
                tracing::info!(%reason, "sign-in step refused");
                (Outcome::Auth, Page::BadSignIn { reason }.response())
            }
        }
    }

    /// `/signin?to&b`: checks `to` and sends the browser to GitHub.
    fn start(
        &self,
        query: &HashMap<String, String>,
        host: &str,
    ) -> Result<Response<Bytes>, String> {
        let to = query.get("to").ok_or("The sign-in link names no page.")?;
        self.preview_url(to)?;
        let b = query
            .get("b")
            .filter(|b| b.len() == 64 && b.bytes().all(|c| c.is_ascii_hexdigit()))
            .ok_or("The sign-in link is incomplete.")?;
        let state = State {
            to: to.clone(),
            b: b.clone(),
            exp: unix_now() + STATE_TTL_SECS,
        };
        let state = self.seal_json(Purpose::State, AUTH_LABEL, &state);
        let location = format!(
            "{}/login/oauth/authorize?client_id={}&redirect_uri={}&state={}",
            self.settings.web_url.trim_end_matches('/'),
            encode(&self.settings.client_id),
            encode(&self.callback_url(host)),
            state
        );
        Ok(redirect(StatusCode::FOUND, &location))
    }

    /// `/callback?code&state`: GitHub's return. Exchanges the code, reads the user, and hands
    /// the preview a one-time code.
    async fn callback(
        &self,
        query: &HashMap<String, String>,
        host: &str,
    ) -> Result<Response<Bytes>, String> {
        let state: State = query
            .get("state")
            .and_then(|s| self.open_json(Purpose::State, AUTH_LABEL, s))
            .ok_or("The sign-in state is missing or was not made here.")?;
        if state.exp <= unix_now() {
            return Err("The sign-in took too long.".into());
        }
        if let Some(error) = query.get("error") {
            return Err(match error.as_str() {
                "access_denied" => "The sign-in was cancelled at GitHub.".into(),
                other => format!("GitHub refused the sign-in ({other})."),
            });
        }
        let origin = self.preview_url(&state.to)?;
        let code = query.get("code").ok_or("GitHub sent no code.")?;
        let token = self.exchange(code, &self.callback_url(host)).await?;
        let (login, id) = self.user(&token).await?;
        tracing::info!(%login, "signed in with GitHub");
        let code = Code {
            visitor: Visitor {
                login,
                id,
                token,
                exp: unix_now() + self.settings.session_ttl.as_secs(),
            },
            to: state.to.clone(),
            b: state.b,
            n: seal::random_text(16),
            exp: unix_now() + CODE_TTL_SECS,
        };
        let target = host_name(&origin.host);
        let code = self.seal_json(Purpose::Code, &target, &code);
        let location = format!("{}{SIGNIN_PATH}?code={code}", origin.origin);
        Ok(redirect(StatusCode::FOUND, &location))
    }

    /// `<preview>/__cca/signin?code`: the one-time code becomes this host's cookie.
    fn finish_sign_in(&self, uri: &Uri, headers: &HeaderMap, name: &str) -> Admission {
        let refuse = |reason: &str| {
            tracing::info!(%reason, host = %name, "sign-in return refused");
            respond(
                Outcome::Auth,
                Page::BadSignIn {
                    reason: reason.to_owned(),
                }
                .response(),
            )
        };
        let query = query_pairs(uri);
        let Some(code) = query
            .get("code")
            .and_then(|c| self.open_json::<Code>(Purpose::Code, name, c))
        else {
            return refuse("The sign-in code is not valid for this preview.");
        };
        let now = unix_now();
        if code.exp <= now {
            return refuse("The sign-in code has expired.");
        }
        let bound = cookies(headers, self.binding).any(|v| {
            self.sealer.open(Purpose::Binding, name, v).is_some()
                && constant_eq(seal::digest_hex(v.as_bytes()).as_bytes(), code.b.as_bytes())
        });
        if !bound {
            return refuse("This sign-in was started in another browser.");
        }
        {
            let mut used = self.used_codes.lock().expect("used codes lock");
            if used.len() >= MAX_ENTRIES {
                used.retain(|_, exp| *exp > now);
            }
            if used.insert(code.n.clone(), code.exp).is_some() {
                return refuse("The sign-in code was used already.");
            }
        }
        // Absolute, on this host: a path such as `//elsewhere/` stays a path of the preview.
        let back = self
            .preview_url(&code.to)
            .ok()
            .filter(|u| host_name(&u.host) == name)
            .map_or_else(|| "/".to_owned(), |u| format!("{}{}", u.origin, u.path));
        let cookie = self.seal_json(Purpose::Cookie, name, &code.visitor);
        let mut response = redirect(StatusCode::SEE_OTHER, &back);
        self.set_cookie(
            &mut response,
            self.cookie,
            &cookie,
            code.visitor.exp.saturating_sub(now),
        );
        self.set_cookie(&mut response, self.binding, "", 0);
        respond(Outcome::Auth, response)
    }

    /// Whether `visitor` may see previews of `repo`, from the cache or GitHub.
    /// Requests that find the entry missing or expired together (a page load sends dozens) wait
    /// for one question to GitHub rather than each asking it.
    async fn check(&self, visitor: &Visitor, repo: &str) -> Result<Verdict, Check> {
        let key = (visitor.id, repo.to_ascii_lowercase());
        if let Some(verdict) = self.cached(&key) {
            return Ok(verdict);
        }
        let flight = {
            let mut flights = self.flights.lock().expect("flights lock");
            Arc::clone(flights.entry(key.clone()).or_default())
        };
        let _asking = flight.lock().await;
        // Whoever asked while this request waited has filled the cache.
        if let Some(verdict) = self.cached(&key) {
            self.land(&key, &flight);
            return Ok(verdict);
        }
        let fetched = self.fetch_access(&visitor.token, repo).await;
        self.land(&key, &flight);
        let (verdict, cacheable) = fetched?;
        if !cacheable {
            return Ok(verdict);
        }
        let mut cache = self.access.lock().expect("access lock");
        if cache.len() >= MAX_ENTRIES {
            let ttl = self.settings.access_ttl;
            cache.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        cache.insert(key, (verdict, Instant::now()));
        Ok(verdict)
    }

    fn cached(&self, key: &AccessKey) -> Option<Verdict> {
        let cache = self.access.lock().expect("access lock");
        let (verdict, at) = cache.get(key)?;
        (at.elapsed() < self.settings.access_ttl).then_some(*verdict)
    }

    /// Forgets the flight of `key` once nobody else holds it.
    fn land(&self, key: &AccessKey, flight: &Flight) {
        let mut flights = self.flights.lock().expect("flights lock");
        // Held by the map, by `flight` and by each waiter.
        if Arc::strong_count(flight) <= 2 {
            flights.remove(key);
        }
    }

    /// `GET /repos/{repo}` with the visitor's own token: GitHub answers 404 for a repository the
    /// visitor cannot see (or the App is not installed on), else its `permissions` for them.
    /// (The collaborator permission API needs push access to call, so it cannot tell a reader.)
    async fn fetch_access(&self, token: &str, repo: &str) -> Result<(Verdict, bool), Check> {
        let url = format!(
            "{}/repos/{repo}",
            self.settings.api_url.trim_end_matches('/')
        );
        let response = self
            .http
            .get(&url)
            .bearer_auth(token)
            .header(header::ACCEPT, "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .send()
            .await
            .map_err(|e| Check::Unavailable(format!("GET {url}: {e}")))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(Check::SignedOut);
        }
        let limited = response.headers().contains_key(header::RETRY_AFTER)
            || response
                .headers()
                .get("x-ratelimit-remaining")
                .is_some_and(|v| v.as_bytes() == b"0");
        if status.as_u16() == 429 || (status.as_u16() == 403 && limited) {
            return Err(Check::Unavailable(format!("GitHub rate limit ({status})")));
        }
        if status.as_u16() == 404 {
            return Ok((Verdict::Denied, true));
        }
        if status.as_u16() == 403 {
            // A secondary rate limit may come without its headers; an organisation's SAML
            // enforcement is a refusal. Neither is cached: the next request asks again.
            let text = response
                .text()
                .await
                .unwrap_or_default()
                .to_ascii_lowercase();
            if text.contains("rate limit") {
                return Err(Check::Unavailable("GitHub rate limit (403)".into()));
            }
            return Ok((Verdict::Denied, false));
        }
        if !status.is_success() {
            return Err(Check::Unavailable(format!("GET {url} answered {status}")));
        }
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| Check::Unavailable(format!("GET {url}: {e}")))?;
        let field = match self.settings.access {
            Access::Read => "pull",
            Access::Write => "push",
        };
        let verdict = if body["permissions"][field] == true {
            Verdict::Allowed
        } else {
            Verdict::Denied
        };
        Ok((verdict, true))
    }

    /// The user's token for `code` (`POST /login/oauth/access_token`). GitHub answers a bad
    /// code with 200 and an `error` field.
    async fn exchange(&self, code: &str, redirect_uri: &str) -> Result<String, String> {
        let url = format!(
            "{}/login/oauth/access_token",
            self.settings.web_url.trim_end_matches('/')
        );
        let failed = |e: String| {
            tracing::warn!(error = %e, "token exchange failed");
            "GitHub could not be reached to finish the sign-in. Try again in a moment.".to_owned()
        };
        let response = self
            .http
            .post(&url)
            .header(header::ACCEPT, "application/json")
            .form(&[
                ("client_id", self.settings.client_id.as_str()),
                ("client_secret", self.settings.client_secret.as_str()),
                ("code", code),
                ("redirect_uri", redirect_uri),
            ])
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| failed(format!("{status}: {e}")))?;
        if let Some(token) = body["access_token"].as_str().filter(|t| !t.is_empty()) {
            return Ok(token.to_owned());
        }
        let error = body["error"].as_str().unwrap_or("no token");
        tracing::warn!(%status, %error, "GitHub refused the sign-in code");
        Err(match error {
            "bad_verification_code" => "GitHub did not accept the sign-in code (used or expired).",
            "incorrect_client_credentials" | "redirect_uri_mismatch" => {
                "GitHub refused this deployment's App credentials; the operator must check them."
            }
            _ => "GitHub refused the sign-in.",
        }
        .to_owned())
    }

    /// `GET /user` with the user's token: login and id.
    async fn user(&self, token: &str) -> Result<(String, u64), String> {
        let url = format!("{}/user", self.settings.api_url.trim_end_matches('/'));
        let refused = |e: String| {
            tracing::warn!(error = %e, "cannot read the signed-in user");
            "GitHub did not say who signed in. Try again in a moment.".to_owned()
        };
        let response = self
            .http
            .get(&url)
            .bearer_auth(token)
            .header(header::ACCEPT, "application/vnd.github+json")
            .send()
            .await
            .map_err(|e| refused(e.to_string()))?;
        if !response.status().is_success() {
            return Err(refused(format!("answered {}", response.status())));
        }
        let body: serde_json::Value = response.json().await.map_err(|e| refused(e.to_string()))?;
        match (body["login"].as_str(), body["id"].as_u64()) {
            (Some(login), Some(id)) if cca_domain::Login::parse(login).is_ok() => {
                Ok((login.to_owned(), id))
            }
            _ => Err(refused("no login and id".into())),
        }
    }

    /// `to` when it is an address of a preview under the suffix, with this deployment's scheme,
    /// no user information and a path: the only places the auth host sends anyone.
    fn preview_url(&self, to: &str) -> Result<PreviewUrl, String> {
        let refused = || "The page to return to is not a preview address.".to_owned();
        let url = url::Url::parse(to).map_err(|_| refused())?;
        if url.scheme() != self.scheme()
            || !url.username().is_empty()
            || url.password().is_some()
            || url.fragment().is_some()
        {
            return Err(refused());
        }
        let name = url.host_str().ok_or_else(refused)?;
        let host = match url.port() {
            Some(port) => format!("{name}:{port}"),
            None => name.to_owned(),
        };
        if crate::proxy::session_host(&host, &self.suffix).is_none() || self.is_auth_host(&host) {
            return Err(refused());
        }
        let mut path = url.path().to_owned();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(PreviewUrl {
            origin: format!("{}://{host}", self.scheme()),
            host,
            path,
        })
    }

    fn scheme(&self) -> &'static str {
        if self.settings.secure {
            "https"
        } else {
            "http"
        }
    }

    /// `scheme://auth.<suffix>[:port]`, the port taken from the host the visitor used.
    fn auth_origin(&self, host: &str) -> String {
        let port = port_of(host).map(|p| format!(":{p}")).unwrap_or_default();
        format!("{}://{AUTH_LABEL}.{}{port}", self.scheme(), self.suffix)
    }

    /// The App's callback URL: `scheme://auth.<suffix>[:port]/callback`.
    fn callback_url(&self, host: &str) -> String {
        format!("{}/callback", self.auth_origin(host))
    }

    fn seal_json<T: Serialize>(&self, purpose: Purpose, name: &str, value: &T) -> String {
        let plain = serde_json::to_vec(value).expect("gate values serialise");
        self.sealer.seal(purpose, name, &plain)
    }

    fn open_json<T: for<'de> Deserialize<'de>>(
        &self,
        purpose: Purpose,
        name: &str,
        text: &str,
    ) -> Option<T> {
        serde_json::from_slice(&self.sealer.open(purpose, name, text)?).ok()
    }

    fn set_cookie(&self, response: &mut Response<Bytes>, name: &str, value: &str, max_age: u64) {
        let secure = if self.settings.secure { "; Secure" } else { "" };
        let cookie =
            format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }

    /// Removes the gate's cookies from a request before it goes to the app: the app is the
    /// repository's code and never sees the visitor's sealed token.
    pub fn strip_request_cookies(&self, headers: &mut HeaderMap) {
        if !headers.contains_key(header::COOKIE) {
            return;
        }
        let ours = |pair: &str| {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n).trim();
            name == self.cookie || name == self.binding
        };
        let kept: Vec<String> = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .map(str::trim)
            .filter(|p| !p.is_empty() && !ours(p))
            .map(str::to_owned)
            .collect();
        headers.remove(header::COOKIE);
        if !kept.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
                headers.insert(header::COOKIE, v);
            }
        }
    }

    /// Removes `Set-Cookie` headers of the gate's names from an app's response: an app cannot
    /// sign its visitors out or plant a cookie of the gate's.
    pub fn strip_response_cookies(&self, headers: &mut HeaderMap) {
        if !headers.contains_key(header::SET_COOKIE) {
            return;
        }
        let kept: Vec<HeaderValue> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter(|v| {
                let text = String::from_utf8_lossy(v.as_bytes());
                let name = text.split_once('=').map_or(&*text, |(n, _)| n).trim();
                !(name.eq_ignore_ascii_case(self.cookie) || name.eq_ignore_ascii_case(self.binding))
            })
            .cloned()
            .collect();
        headers.remove(header::SET_COOKIE);
        for v in kept {
            headers.append(header::SET_COOKIE, v);
        }
    }
}

/// A checked preview address.
#[derive(Debug)]
struct PreviewUrl {
    /// `scheme://host[:port]`.
    origin: String,
    /// `host[:port]`.
    host: String,
    /// Path and query.
    path: String,
}

fn respond(outcome: Outcome, response: Response<Bytes>) -> Admission {
    Admission::Respond(outcome, response)
}

fn redirect(status: StatusCode, location: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The values of every cookie called `name` in the request.
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n == name).then_some(v)
        })
}

fn query_pairs(uri: &Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The host without its port, lower case, without a trailing dot: what cookies are sealed for.
fn host_name(host: &str) -> String {
    crate::proxy::strip_port(host.trim())
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

fn port_of(host: &str) -> Option<&str> {
    host.rsplit_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate::new(
            GateSettings::new("Iv1.test", "a-client-secret"),
            "preview.test",
        )
    }

    #[test]
    fn only_preview_addresses_are_places_to_return_to() {
        let g = gate();
        let ok = g
            .preview_url("https://tt-main.preview.test/a/b?c=d")
            .unwrap();
        assert_eq!(ok.origin, "https://tt-main.preview.test");
        assert_eq!(ok.path, "/a/b?c=d");
        for bad in [
            "https://evil.example/",
            "https://tt-main.preview.test.evil.example/",
            "https://evil.example/tt-main.preview.test",
            "http://tt-main.preview.test/",
            "https://user:pw@tt-main.preview.test/",
            "https://auth.preview.test/signin",
            "https://a.b.preview.test/",
            "//tt-main.preview.test/",
            "/relative",
            "javascript:alert(1)",
            "https://tt-main.preview.test/#frag",
        ] {
            assert!(g.preview_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_cookies_of_the_gate_never_reach_the_app() {
        let g = gate();
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-cca-preview=secret; b=2"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("__Host-cca-signin=x"),
        );
        g.strip_request_cookies(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h[header::COOKIE], "a=1; b=2");
        let mut r = HeaderMap::new();
        r.append(
            header::SET_COOKIE,
            HeaderValue::from_static("__Host-cca-preview=x; Path=/"),
        );
        r.append(
            header::SET_COOKIE,
            HeaderValue::from_static("app=1; Path=/"),
        );
        g.strip_response_cookies(&mut r);
        assert_eq!(r.get_all(header::SET_COOKIE).iter().count(), 1);
        assert_eq!(r[header::SET_COOKIE], "app=1; Path=/");
    }

    #[test]
    fn a_cookie_opens_only_on_its_host_and_until_it_expires() {
        let g = gate();
        let value = g.issue_cookie("a.preview.test", "alice", 7, "ghu_x");
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::COOKIE,
                HeaderValue::from_str(&format!("other=1; __Host-cca-preview={v}")).unwrap(),
            );
            h
        };
        assert!(g.has_valid_cookie(&with(&value), "a.preview.test"));
        assert!(!g.has_valid_cookie(&with(&value), "b.preview.test"));
        let expired = Visitor {
            login: "alice".into(),
            id: 7,
            token: "t".into(),
            exp: unix_now() - 1,
        };
        let expired = g.seal_json(Purpose::Cookie, "a.preview.test", &expired);
        assert!(!g.has_valid_cookie(&with(&expired), "a.preview.test"));
        assert!(g.is_auth_host("AUTH.preview.test:8080"));
        assert!(!g.is_auth_host("auth.other.test"));
    }
}
