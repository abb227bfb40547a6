//! The fake's REST router: authentication, rate limits, the App and installation endpoints, and
//! the dispatch of repository requests to [`super::RepoCtx`].

use super::*;

impl State {
    pub(super) fn new(url: String) -> Self {
        State {
            url,
            web: oauth::WebFlow::default(),
            last_id: 1000,
            installations: BTreeSet::new(),
            tokens: Vec::new(),
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            personal_tokens: HashSet::new(),
            manifest_codes: HashSet::new(),
            repos: BTreeMap::new(),
            jwt_claims: Vec::new(),
            requests: Vec::new(),
            faults: Faults::default(),
            rate_limits: Vec::new(),
            content_sent: VecDeque::new(),
            content_limit: CONTENT_REQUESTS_PER_MINUTE,
            latency: Duration::ZERO,
            permission_lookups: 0,
            git_root: None,
            git_requests: Vec::new(),
        }
    }

    /// The directory hosted repositories live under, made on first use.
    pub(super) fn git_root(&mut self) -> PathBuf {
        let root = self.git_root.get_or_insert_with(|| {
            let dir = tempfile::Builder::new()
                .prefix("cca-fake-github-")
                .tempdir()
                .expect("a temporary directory for hosted repositories");
            for sub in [repos_dir(dir.path()), home_dir(dir.path())] {
                std::fs::create_dir_all(&sub).expect("directories for hosted repositories");
            }
            dir
        });
        root.path().to_owned()
    }

    pub(super) fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    pub(super) fn repo_mut(&mut self, full_name: &str) -> &mut Repo {
        self.repos
            .get_mut(&full_name.to_lowercase())
            .unwrap_or_else(|| panic!("the fake GitHub has no repository {full_name}"))
    }

    pub(super) fn handle(&mut self, req: Incoming) -> Response {
        let auth = self.classify(&req.credential);
        self.requests.push(Recorded {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            auth,
            body: req.body.clone(),
        });
        if let Some(status) = self.faults.take(&req.method, &req.path) {
            return injected_failure(status, json!({ "message": "injected failure" }));
        }
        if let Some(limited) = self.rate_limit(&req) {
            return limited;
        }
        if !req.body_is_json {
            return ApiError::new(StatusCode::BAD_REQUEST, "Problems parsing JSON").into_response();
        }
        self.route(&req).unwrap_or_else(IntoResponse::into_response)
    }

    /// A queued rate limit for this request, or GitHub's secondary limit on content-creating
    /// requests (more than [`CONTENT_REQUESTS_PER_MINUTE`] a minute by one identity).
    pub(super) fn rate_limit(&mut self, req: &Incoming) -> Option<Response> {
        if let Some(i) = self.rate_limits.iter().position(|q| {
            (q.method == "*" || q.method.eq_ignore_ascii_case(&req.method))
                && req.path.contains(&q.path_contains)
        }) {
            let q = &mut self.rate_limits[i];
            q.remaining -= 1;
            let (status, limit) = (q.status, q.limit);
            if q.remaining == 0 {
                self.rate_limits.remove(i);
            }
            return Some(rate_limited(status, limit));
        }
        let creates =
            !matches!(req.method.as_str(), "GET" | "HEAD") && req.path.starts_with("/repos/");
        if !creates {
            return None;
        }
        let identity = match &req.credential {
            Credential::Token(t) => match self.tokens.iter().find(|i| &i.token == t) {
                Some(issued) => format!("installation {}", issued.installation_id),
                None => format!("token {t}"),
            },
            _ => return None,
        };
        let now = Instant::now();
        while self
            .content_sent
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) >= Duration::from_secs(60))
        {
            self.content_sent.pop_front();
        }
        let mine: Vec<Instant> = self
            .content_sent
            .iter()
            .filter(|(who, _)| *who == identity)
            .map(|(_, at)| *at)
            .collect();
        if mine.len() >= self.content_limit {
            let frees = Duration::from_secs(60).saturating_sub(now.duration_since(mine[0]));
            return Some(rate_limited(
                403,
                RateLimit::RetryAfter(frees.as_secs().max(1)),
            ));
        }
        self.content_sent.push_back((identity, now));
        None
    }

    pub(super) fn classify(&self, credential: &Credential) -> AuthKind {
        match credential {
            Credential::None => AuthKind::None,
            Credential::Jwt(_) => AuthKind::Jwt,
            Credential::Token(t) if self.personal_tokens.contains(t) => AuthKind::Personal,
            Credential::Token(t) if self.web.issued(t) => match self.web.user_of(t) {
                Some(login) => AuthKind::User(login.to_owned()),
                None => AuthKind::None,
            },
            Credential::Token(t) if self.tokens.iter().any(|i| &i.token == t) => {
                AuthKind::Installation(t.clone())
            }
            Credential::Token(_) => AuthKind::None,
        }
    }

    pub(super) fn route(&mut self, req: &Incoming) -> Answer {
        let segments: Vec<&str> = req.segments.iter().map(String::as_str).collect();
        if let Credential::Token(token) = &req.credential {
            if self.web.issued(token) {
                let Some(login) = self.web.user_of(token).map(str::to_owned) else {
                    return Err(ApiError::bad_credentials());
                };
                return self.user_route(&login, &req.method, &segments);
            }
        }
        match (req.method.as_str(), segments.as_slice()) {
            ("POST", ["app-manifests", code, "conversions"]) => self.convert_manifest(code),
            // GitHub's download URLs are presigned: a request bearing a token is not one a
            // careful client sends there.
            ("GET", ["_job-logs", owner, name, id]) => match &req.credential {
                Credential::None => self.job_log_download(owner, name, id),
                _ => Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "the download URL takes no Authorization header",
                )),
            },
            ("GET", ["app"]) => {
                self.verify_jwt(&req.credential)?;
                ok(self.app_json())
            }
            ("GET", ["app", "installations"]) => {
                self.verify_jwt(&req.credential)?;
                let list = self
                    .installations
                    .iter()
                    .map(|id| self.installation_json(*id))
                    .collect();
                ok(Value::Array(list))
            }
            ("GET", ["app", "installations", id]) => {
                self.verify_jwt(&req.credential)?;
                let id = self.installation(id)?;
                ok(self.installation_json(id))
            }
            ("POST", ["app", "installations", id, "access_tokens"]) => {
                self.verify_jwt(&req.credential)?;
                let id = self.installation(id)?;
                self.issue_token(id, &req.body)
            }
            ("GET", ["repos", owner, name, "installation"]) => {
                self.verify_jwt(&req.credential)?;
                let key = format!("{owner}/{name}").to_lowercase();
                match self.installations.first() {
                    Some(id) if self.repos.contains_key(&key) => ok(self.installation_json(*id)),
                    _ => Err(ApiError::not_found()),
                }
            }
            (method, ["repos", owner, name, rest @ ..]) => {
                let actor = self.authorize_repo(&req.credential, owner, name)?;
                let key = format!("{owner}/{name}").to_lowercase();
                let last_id = &mut self.last_id;
                let permission_lookups = &mut self.permission_lookups;
                let Some(repo) = self.repos.get_mut(&key) else {
                    return Err(ApiError::not_found());
                };
                repo.refresh();
                let mut ctx = RepoCtx {
                    api: &self.url,
                    last_id,
                    permission_lookups,
                    repo,
                    actor,
                    req,
                };
                ctx.route(method, rest)
            }
            _ => Err(ApiError::not_found()),
        }
    }

    pub(super) fn installation(&self, id: &str) -> Result<u64, ApiError> {
        id.parse()
            .ok()
            .filter(|id| self.installations.contains(id))
            .ok_or_else(ApiError::not_found)
    }

    /// Checks an App JWT as GitHub does, recording the claims once the signature holds.
    pub(super) fn verify_jwt(&mut self, credential: &Credential) -> Result<(), ApiError> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
        let Credential::Jwt(token) = credential else {
            return Err(unauthorized("A JSON web token could not be decoded"));
        };
        let key = DecodingKey::from_rsa_pem(APP_PUBLIC_KEY_PEM.as_bytes())
            .expect("the fake App's public key parses");
        let mut validation = Validation::new(Algorithm::RS256);
        // The time claims are checked below, with GitHub's rules and messages.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|_| unauthorized("A JSON web token could not be decoded"))?
            .claims;
        self.jwt_claims.push(claims.clone());
        let issuer_ok = match &claims["iss"] {
            Value::Number(n) => n.as_u64() == Some(APP_ID),
            Value::String(s) => s.trim() == APP_ID.to_string(),
            _ => false,
        };
        if !issuer_ok {
            return Err(unauthorized("'Issuer' claim ('iss') must be an Integer"));
        }
        let now = unix_seconds(SystemTime::now());
        let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
            return Err(unauthorized(
                "'Issued at' and 'Expiration time' claims must be integers",
            ));
        };
        if iat > now {
            return Err(unauthorized(
                "'Issued at' claim ('iat') must be an Integer representing a time in the past.",
            ));
        }
        if exp <= now {
            return Err(unauthorized(
                "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires.",
            ));
        }
        if exp - iat > MAX_JWT_LIFETIME_SECS {
            return Err(unauthorized(
                "'Expiration time' claim ('exp') is too far in the future",
            ));
        }
        Ok(())
    }

    pub(super) fn issue_token(&mut self, installation_id: u64, body: &Value) -> Answer {
        let wanted: Option<Vec<String>> = match (&body["repositories"], &body["repository_ids"]) {
            (Value::Null, Value::Null) => None,
            (names, ids) => {
                let mut keys = Vec::new();
                for name in names.as_array().into_iter().flatten() {
                    let name = name.as_str().unwrap_or_default();
                    let found: Vec<String> = self
                        .repos
                        .iter()
                        .filter(|(_, r)| {
                            r.name.eq_ignore_ascii_case(name)
                                || r.full_name().eq_ignore_ascii_case(name)
                        })
                        .map(|(k, _)| k.clone())
                        .collect();
                    if found.is_empty() {
                        return Err(no_such_repository());
                    }
                    keys.extend(found);
                }
                for id in ids.as_array().into_iter().flatten() {
                    let key = self
                        .repos
                        .iter()
                        .find(|(_, r)| Some(r.id) == id.as_u64())
                        .map(|(k, _)| k.clone())
                        .ok_or_else(no_such_repository)?;
                    keys.push(key);
                }
                keys.sort();
                keys.dedup();
                Some(keys)
            }
        };
        let granted = app_permissions();
        let permissions = match &body["permissions"] {
            Value::Object(asked) => {
                for (scope, level) in asked {
                    let allowed = granted[scope].as_str().map_or(0, permission_rank);
                    if level.as_str().map_or(u8::MAX, permission_rank) > allowed {
                        return Err(ApiError::unprocessable(
                            "The permissions requested are not granted to this installation.",
                        ));
                    }
                }
                Value::Object(asked.clone())
            }
            _ => granted,
        };
        let token = format!(
            "ghs_{}",
            rand::rng()
                .sample_iter(Alphanumeric)
                .take(36)
                .map(char::from)
                .collect::<String>()
        );
        let expires_at = SystemTime::now() + self.token_lifetime;
        let repositories: Vec<Value> = self
            .repos
            .iter()
            .filter(|(k, _)| wanted.as_ref().is_none_or(|w| w.contains(k)))
            .map(|(_, r)| r.json(&self.url))
            .collect();
        self.tokens.push(IssuedToken {
            token: token.clone(),
            installation_id,
            repositories: wanted.clone(),
            permissions: permissions.clone(),
            expires_at,
        });
        created(json!({
            "token": token,
            "expires_at": rfc3339(expires_at),
            "permissions": permissions,
            "repository_selection": if wanted.is_some() { "selected" } else { "all" },
            "repositories": repositories,
        }))
    }

    /// Decides a git request: queued failures, then the credential, then the repository.
    pub(super) fn plan_git(
        &mut self,
        record: &mut GitRequest,
        target: Option<(String, String)>,
        token: Option<&str>,
        push: bool,
    ) -> Result<GitPlan, Box<Response>> {
        if let Some(status) = self.faults.take(&record.method, &record.path) {
            let body = json!({ "message": "injected failure" });
            return Err(Box::new(injected_failure(status, body)));
        }
        let Some((key, tail)) = target else {
            return Err(Box::new(git_refusal(
                StatusCode::NOT_FOUND,
                "Repository not found.",
            )));
        };
        let (auth, verdict) = self.authorize_git(token, &key, push);
        record.auth = auth;
        let login = match verdict {
            Ok(login) => login,
            Err(StatusCode::FORBIDDEN) => {
                let message = format!("Permission to {key}.git denied to {BOT_LOGIN}.");
                return Err(Box::new(git_refusal(StatusCode::FORBIDDEN, &message)));
            }
            Err(status) => {
                return Err(Box::new(git_refusal(
                    status,
                    "Invalid username or token. Password authentication is not supported for Git operations.",
                )));
            }
        };
        record.authorized = true;
        let hosted = self.repos.get(&key).is_some_and(|r| r.hosted.is_some());
        let Some(root) = self.git_root.as_ref().filter(|_| hosted) else {
            return Err(Box::new(git_refusal(
                StatusCode::NOT_FOUND,
                "Repository not found.",
            )));
        };
        // An installation token may touch workflow files only with `workflows: write`.
        let workflows = match token.and_then(|t| self.tokens.iter().find(|i| i.token == t)) {
            Some(issued) => issued.permissions["workflows"] == "write",
            None => true,
        };
        let rules = &self.repos[&key].push_rules;
        let mut env = vec![(
            "CCA_FAKE_PROTECTED",
            rules
                .protected
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
        )];
        if !workflows {
            env.push(("CCA_FAKE_NO_WORKFLOWS", "1".to_owned()));
        }
        if let Some(max) = rules.max_file_bytes {
            env.push(("CCA_FAKE_MAX_FILE_BYTES", max.to_string()));
        }
        if let Some(message) = &rules.decline {
            env.push(("CCA_FAKE_DECLINE", message.clone()));
        }
        Ok(GitPlan {
            root: repos_dir(root.path()),
            home: home_dir(root.path()),
            path_info: format!("/{key}.git/{tail}"),
            login,
            rules: env,
        })
    }

    /// Checks the token of a git request as GitHub does: a personal token, or an installation
    /// token that has not expired and, when scoped, covers the repository; pushing needs
    /// `contents: write`. Answers how the credential classifies, and who it acts as or the
    /// status refusing it.
    pub(super) fn authorize_git(
        &self,
        token: Option<&str>,
        key: &str,
        push: bool,
    ) -> (AuthKind, Result<&'static str, StatusCode>) {
        let Some(token) = token else {
            return (AuthKind::None, Err(StatusCode::UNAUTHORIZED));
        };
        if self.personal_tokens.contains(token) {
            return (AuthKind::Personal, Ok(PERSONAL_LOGIN));
        }
        let Some(issued) = self.tokens.iter().find(|t| t.token == token) else {
            let kind = if looks_like_jwt(token) {
                AuthKind::Jwt
            } else {
                AuthKind::None
            };
            return (kind, Err(StatusCode::UNAUTHORIZED));
        };
        let kind = AuthKind::Installation(token.to_owned());
        let expired = SystemTime::now() >= issued.expires_at;
        let out_of_scope = issued
            .repositories
            .as_ref()
            .is_some_and(|scope| !scope.iter().any(|r| r == key));
        if expired || out_of_scope {
            return (kind, Err(StatusCode::UNAUTHORIZED));
        }
        let can_write = matches!(
            issued.permissions["contents"].as_str(),
            Some("write" | "admin")
        );
        if push && !can_write {
            return (kind, Err(StatusCode::FORBIDDEN));
        }
        (kind, Ok(BOT_LOGIN))
    }

    /// Resolves the credential of a repository request to who it acts as.
    pub(super) fn authorize_repo(
        &self,
        credential: &Credential,
        owner: &str,
        name: &str,
    ) -> Result<Actor, ApiError> {
        let Credential::Token(token) = credential else {
            return Err(ApiError::bad_credentials());
        };
        if self.personal_tokens.contains(token) {
            return Ok(Actor {
                login: PERSONAL_LOGIN,
            });
        }
        let issued = self
            .tokens
            .iter()
            .find(|t| &t.token == token && SystemTime::now() < t.expires_at)
            .ok_or_else(ApiError::bad_credentials)?;
        let key = format!("{owner}/{name}").to_lowercase();
        if issued
            .repositories
            .as_ref()
            .is_some_and(|scope| !scope.contains(&key))
        {
            // GitHub hides repositories a token cannot see rather than admitting they exist.
            return Err(ApiError::not_found());
        }
        Ok(Actor { login: BOT_LOGIN })
    }

    pub(super) fn convert_manifest(&mut self, code: &str) -> Answer {
        if !self.manifest_codes.remove(code) {
            return Err(ApiError::not_found());
        }
        let mut app = self.app_json();
        app["pem"] = json!(APP_PRIVATE_KEY_PEM);
        app["webhook_secret"] = json!(MANIFEST_WEBHOOK_SECRET);
        app["client_id"] = json!(CLIENT_ID);
        app["client_secret"] = json!(CLIENT_SECRET);
        created(app)
    }

    pub(super) fn app_json(&self) -> Value {
        let now = rfc3339(SystemTime::now());
        json!({
            "id": APP_ID,
            "slug": APP_SLUG,
            "node_id": node_id("A", APP_ID),
            "owner": user_json(&self.url, PERSONAL_LOGIN),
            "name": APP_SLUG,
            "description": "Claude Cloud Agent (test)",
            "external_url": "https://example.com",
            "html_url": format!("https://github.com/apps/{APP_SLUG}"),
            "created_at": now,
            "updated_at": now,
            "permissions": app_permissions(),
            "events": APP_EVENTS,
            "installations_count": self.installations.len(),
        })
    }

    pub(super) fn installation_json(&self, id: u64) -> Value {
        let now = rfc3339(SystemTime::now());
        json!({
            "id": id,
            "account": user_json(&self.url, PERSONAL_LOGIN),
            "app_id": APP_ID,
            "app_slug": APP_SLUG,
            "target_id": login_id(PERSONAL_LOGIN),
            "target_type": "User",
            "repository_selection": "all",
            "access_tokens_url": format!("{}/app/installations/{id}/access_tokens", self.url),
            "repositories_url": format!("{}/installation/repositories", self.url),
            "html_url": format!("https://github.com/settings/installations/{id}"),
            "permissions": app_permissions(),
            "events": APP_EVENTS,
            "created_at": now,
            "updated_at": now,
        })
    }
}

pub(super) fn no_such_repository() -> ApiError {
    ApiError::unprocessable(
        "There is at least one repository that does not exist or is not accessible to the parent installation.",
    )
}

/// What the fake App was granted at installation.
pub(super) fn app_permissions() -> Value {
    json!({
        "contents": "write",
        "pull_requests": "write",
        "issues": "write",
        "deployments": "write",
        "metadata": "read",
        "checks": "read",
        "actions": "read",
    })
}

/// The events the fake App subscribes to.
const APP_EVENTS: [&str; 6] = [
    "issues",
    "issue_comment",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "check_suite",
];

pub(super) fn permission_rank(level: &str) -> u8 {
    match level {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        _ => u8::MAX,
    }
}

/// GitHub's legacy permission for a role: maintain counts as write, triage as read.
pub(super) fn legacy_permission(role: &str) -> Option<&'static str> {
    match role {
        "admin" => Some("admin"),
        "maintain" | "write" => Some("write"),
        "triage" | "read" => Some("read"),
        "none" => Some("none"),
        _ => None,
    }
}
