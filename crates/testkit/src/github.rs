//! Stateful fake of the GitHub REST API, limited to what the product uses.
//!
//! It keeps repositories, branches, commits, issues, pull requests, comments, reactions,
//! deployments, App installations and their tokens in memory, and answers with GitHub's status
//! codes and JSON shapes (complete enough for octocrab's models), so tests run the production
//! clients unchanged and assert on the resulting state. Every request is handled inside one
//! critical section, so concurrent creates race exactly as they do against GitHub: one wins and
//! the others get 422.
//!
//! A repository can also be hosted for real ([`FakeGitHub::host_git`]): it is then a bare git
//! repository the fake owns, its branches and commits through the API are that repository's, and
//! git clients clone, fetch and push it over smart HTTP at its `clone_url`, authenticated with an
//! installation token as on GitHub. Tests that run a git client against the fake must not block
//! the runtime serving it: use `tokio::process`, `spawn_blocking`, or a multi-threaded runtime.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Query, State as Shared};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Value, json};

use crate::git::{Bare, CgiRequest, Expect, Identity, PathContent, is_oid_prefix};

mod oauth;
pub use crate::git::{GitCommitInfo, GitRequest, GitSignature};
pub use oauth::{CLIENT_ID, CLIENT_SECRET};

/// The fake App's id; App JWTs must carry it as `iss`.
pub const APP_ID: u64 = 4242;
/// The fake App's slug, as its bot user and manifest conversion name it.
pub const APP_SLUG: &str = "cca-test";
/// Login under which installation tokens act (comments, pull requests, reactions).
pub const BOT_LOGIN: &str = "cca-test[bot]";
/// Login under which personal tokens act.
pub const PERSONAL_LOGIN: &str = "cca-test-user";
/// Webhook secret handed out by the manifest conversion.
pub const MANIFEST_WEBHOOK_SECRET: &str = "cca-test-webhook-secret";
/// Installation token lifetime until [`FakeGitHub::set_token_lifetime`] changes it: GitHub's hour.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// File that [`FakeGitHub::push_commit`] appends to on hosted repositories, so every simulated
/// push changes the tree.
pub const PUSH_LOG_FILE: &str = "pushes.txt";
/// Longest App JWT lifetime (`exp - iat`) GitHub accepts: ten minutes.
const MAX_JWT_LIFETIME_SECS: i64 = 600;
/// Page size when a list request names none, as GitHub.
const DEFAULT_PER_PAGE: usize = 30;
/// Largest page size GitHub honours.
const MAX_PER_PAGE: usize = 100;
/// GitHub refuses issue and pull request comments longer than this many characters.
const MAX_COMMENT_CHARS: usize = 65_536;
/// Reaction contents GitHub accepts.
const REACTIONS: [&str; 8] = [
    "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
];
/// Deployment status states GitHub accepts.
const DEPLOYMENT_STATES: [&str; 7] = [
    "error",
    "failure",
    "inactive",
    "in_progress",
    "queued",
    "pending",
    "success",
];

const APP_PRIVATE_KEY_PEM: &str = include_str!("../keys/app.pem");
const APP_PUBLIC_KEY_PEM: &str = include_str!("../keys/app.pub.pem");

/// PEM of the fake App's RSA private key (PKCS#1, as GitHub issues them), to sign App JWTs with.
pub fn app_private_key_pem() -> &'static str {
    APP_PRIVATE_KEY_PEM
}

/// PEM of the public half of [`app_private_key_pem`], which the fake verifies App JWTs with.
pub fn app_public_key_pem() -> &'static str {
    APP_PUBLIC_KEY_PEM
}

/// Which credential a request carried, as the fake classified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthKind {
    /// No `Authorization` header, or a credential the fake does not know.
    None,
    /// Something shaped like a JWT (whether or not it verified).
    Jwt,
    /// An installation token the fake issued (possibly expired by now).
    Installation(String),
    /// A token registered with [`FakeGitHub::add_personal_token`].
    Personal,
    /// A user token of the web flow (see [`FakeGitHub::sign_in_browser`]), of this login.
    User(String),
}

/// One request as the fake received it, whatever it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path as sent (still percent-encoded), without the query.
    pub path: String,
    /// Query parameters, decoded.
    pub query: BTreeMap<String, String>,
    /// The credential presented.
    pub auth: AuthKind,
    /// JSON body; `Null` when empty, a string when it was not JSON.
    pub body: Value,
}

/// An installation access token the fake issued.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The `ghs_…` token.
    pub token: String,
    /// Installation it was issued for.
    pub installation_id: u64,
    /// Full names (lower-case) it is limited to; `None` for all repositories.
    pub repositories: Option<Vec<String>>,
    /// Permissions as answered.
    pub permissions: Value,
    /// After this instant the token is refused.
    pub expires_at: SystemTime,
}

/// A git commit object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// 40-hex commit sha.
    pub sha: String,
    /// Tree sha.
    pub tree: String,
    /// Parent commit shas.
    pub parents: Vec<String>,
    /// Commit message.
    pub message: String,
    /// When the fake stored it.
    pub created_at: SystemTime,
}

/// A pull request.
#[derive(Debug, Clone)]
pub struct Pull {
    /// Global id.
    pub id: u64,
    /// Number, shared with issues of the same repository.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body, if any.
    pub body: Option<String>,
    /// `open` or `closed`.
    pub state: String,
    /// Whether it is a draft.
    pub draft: bool,
    /// Head branch name.
    pub head: String,
    /// Head commit: follows the head branch while the pull request is open.
    pub head_sha: String,
    /// The repository the head branch is in, when it is a fork (`None`: this repository).
    pub head_repo: Option<String>,
    /// Base branch name.
    pub base: String,
    /// Login of the author.
    pub user: String,
    /// Whether it was merged (see [`FakeGitHub::merge_pull`]).
    pub merged: bool,
    /// Creation time.
    pub created_at: SystemTime,
    /// Last change.
    pub updated_at: SystemTime,
    /// When it was closed, if it is.
    pub closed_at: Option<SystemTime>,
}

/// A comment on an issue or pull request.
#[derive(Debug, Clone)]
pub struct Comment {
    /// Global id.
    pub id: u64,
    /// Issue or pull request number it belongs to.
    pub issue_number: u64,
    /// Current body.
    pub body: String,
    /// Login of the author.
    pub user: String,
    /// How many times it was edited through the API.
    pub edits: u32,
    /// Creation time.
    pub created_at: SystemTime,
    /// Last edit, or creation.
    pub updated_at: SystemTime,
}

/// A reaction on an issue comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    /// Global id.
    pub id: u64,
    /// `+1`, `eyes`, `rocket`, …
    pub content: String,
    /// Login of who reacted.
    pub user: String,
}

/// A deployment and the statuses set on it, oldest first.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Global id.
    pub id: u64,
    /// The `ref` it was created for (branch, or sha).
    pub git_ref: String,
    /// The commit the ref resolved to.
    pub sha: String,
    /// Environment name.
    pub environment: String,
    /// Task, `deploy` unless given.
    pub task: String,
    /// Description, if any.
    pub description: Option<String>,
    /// Payload as sent (`{}` when absent).
    pub payload: Value,
    /// Whether it was marked transient.
    pub transient_environment: bool,
    /// Whether it was marked as production.
    pub production_environment: bool,
    /// Login of the creator.
    pub creator: String,
    /// Creation time.
    pub created_at: SystemTime,
    /// Statuses, oldest first.
    pub statuses: Vec<DeploymentStatus>,
}

/// One status of a deployment.
#[derive(Debug, Clone)]
pub struct DeploymentStatus {
    /// Global id.
    pub id: u64,
    /// `success`, `inactive`, `in_progress`, …
    pub state: String,
    /// Where the deployed environment is reached.
    pub environment_url: Option<String>,
    /// Where its logs are.
    pub log_url: Option<String>,
    /// Description, if any.
    pub description: Option<String>,
    /// Login of the creator.
    pub creator: String,
    /// Creation time.
    pub created_at: SystemTime,
}

/// Handle on a running fake GitHub; clones share the same state.
#[derive(Debug, Clone)]
pub struct FakeGitHub {
    url: String,
    state: Arc<Mutex<State>>,
}

impl FakeGitHub {
    /// Binds `127.0.0.1` on a free port and serves the fake from a background task.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port for the fake GitHub");
        let addr = listener
            .local_addr()
            .expect("local address of the fake GitHub");
        let url = format!("http://{addr}");
        let fake = FakeGitHub {
            url: url.clone(),
            state: Arc::new(Mutex::new(State::new(url))),
        };
        let app = Router::new()
            .route("/git/{*path}", axum::routing::any(serve_git))
            .route(
                "/login/oauth/authorize",
                axum::routing::get(oauth::authorize),
            )
            .route(
                "/login/oauth/access_token",
                axum::routing::post(oauth::access_token),
            )
            .fallback(serve_request)
            .with_state(fake.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "fake GitHub stopped");
            }
        });
        fake
    }

    /// Base URL to point API clients at, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock must not hide its own failure behind ours.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers an installation of the App; it can reach every repository of the fake.
    pub fn add_installation(&self, id: u64) {
        self.state().installations.insert(id);
    }

    /// Accepts `token` as a personal access token acting as [`PERSONAL_LOGIN`].
    pub fn add_personal_token(&self, token: &str) {
        self.state().personal_tokens.insert(token.to_owned());
    }

    /// Makes `code` redeemable once at `POST /app-manifests/{code}/conversions`.
    pub fn add_manifest_code(&self, code: &str) {
        self.state().manifest_codes.insert(code.to_owned());
    }

    /// Lifetime of installation tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state().token_lifetime = lifetime;
    }

    /// Delay applied before every request is handled, to widen race windows.
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// Answers the next `times` requests whose method is `method` (`*` for any) and whose path
    /// contains `path_contains` with `status` and a JSON message, before touching any state.
    /// Requests of git's HTTP protocol (paths `/git/owner/name.git/…`) count too.
    pub fn fail_next(&self, method: &str, path_contains: &str, status: u16, times: usize) {
        self.state()
            .faults
            .push(Fault::new(method, path_contains, status, times));
    }

    /// Answers the next `times` API requests whose method is `method` (`*` for any) and whose
    /// path contains `path_contains` as GitHub answers a rate-limited call: `status` (403 or
    /// 429), its message and the headers `limit` names.
    pub fn rate_limit_next(
        &self,
        method: &str,
        path_contains: &str,
        status: u16,
        limit: RateLimit,
        times: usize,
    ) {
        if times > 0 {
            self.state().rate_limits.push(QueuedLimit {
                method: method.to_ascii_uppercase(),
                path_contains: path_contains.to_owned(),
                status,
                limit,
                remaining: times,
            });
        }
    }

    /// Changes how many content-creating requests one identity may make in a minute
    /// (GitHub's secondary limit, [`CONTENT_REQUESTS_PER_MINUTE`] unless set).
    pub fn set_content_limit(&self, per_minute: usize) {
        self.state().content_limit = per_minute;
    }

    /// Creates `owner/name` with default branch `main` holding one initial commit.
    pub fn add_repo(&self, full_name: &str) {
        self.add_repo_with_branch(full_name, "main");
    }

    /// Creates `owner/name` with the given default branch holding one initial commit.
    ///
    /// # Panics
    /// When `full_name` is not `owner/name` or the repository exists.
    pub fn add_repo_with_branch(&self, full_name: &str, default_branch: &str) {
        let (owner, name) = full_name
            .split_once('/')
            .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
            .unwrap_or_else(|| panic!("repository name {full_name:?} is not owner/name"));
        let mut state = self.state();
        let key = full_name.to_lowercase();
        assert!(
            !state.repos.contains_key(&key),
            "repository {full_name} already exists"
        );
        let id = state.next_id();
        let mut repo = Repo {
            id,
            owner: owner.to_owned(),
            name: name.to_owned(),
            default_branch: default_branch.to_owned(),
            clone_url: None,
            branches: BTreeMap::new(),
            commits: HashMap::new(),
            next_number: 1,
            issues: BTreeMap::new(),
            pulls: BTreeMap::new(),
            comments: Vec::new(),
            reactions: BTreeMap::new(),
            deployments: Vec::new(),
            permissions: HashMap::new(),
            hosted: None,
            drafts_refused: false,
            private: false,
            labels: BTreeMap::new(),
            push_rules: PushRules::default(),
        };
        let sha = repo.store_commit(random_sha(), Vec::new(), "initial commit".to_owned());
        repo.record_branch(default_branch, &sha);
        state.repos.insert(key, repo);
    }

    /// Sets the `clone_url` the API reports for a repository (for example a local bare repository).
    pub fn set_clone_url(&self, repo: &str, url: &str) {
        self.with_repo(repo, |r| r.clone_url = Some(url.to_owned()));
    }

    /// Protects `branch`: pushes to it are refused (GH006), as with a branch protection rule.
    pub fn protect_branch(&self, repo: &str, branch: &str) {
        self.with_repo(repo, |r| {
            r.push_rules.protected.insert(branch.to_owned());
        });
    }

    /// Refuses pushes adding a file over `bytes` (GitHub's limit is 100 MB, GH001).
    pub fn limit_file_size(&self, repo: &str, bytes: u64) {
        self.with_repo(repo, |r| r.push_rules.max_file_bytes = Some(bytes));
    }

    /// Refuses every push with `message`, as an organisation's pre-receive hook does.
    pub fn decline_pushes(&self, repo: &str, message: &str) {
        self.with_repo(repo, |r| r.push_rules.decline = Some(message.to_owned()));
    }

    /// The repository's labels, by name.
    pub fn labels(&self, repo: &str) -> Vec<Label> {
        self.with_repo(repo, |r| r.labels.values().cloned().collect())
    }

    /// Gives the repository a label (as a person would in the UI).
    pub fn add_label(&self, repo: &str, name: &str, color: &str) {
        self.with_repo(repo, |r| {
            r.labels.insert(
                name.to_lowercase(),
                Label {
                    name: name.to_owned(),
                    color: color.to_owned(),
                    description: None,
                },
            );
        });
    }

    /// Makes the repository refuse draft pull requests as GitHub does on a private repository
    /// of a Free or Pro account: 422, "Draft pull requests are not supported in this
    /// repository."
    pub fn refuse_drafts(&self, repo: &str) {
        self.with_repo(repo, |r| r.drafts_refused = true);
    }

    /// Gives `login` a role on a repository: admin, maintain, write, triage, read or none.
    ///
    /// # Panics
    /// On an unknown role or repository.
    pub fn set_permission(&self, repo: &str, login: &str, role: &str) {
        assert!(
            legacy_permission(role).is_some(),
            "unknown repository role {role:?}"
        );
        self.with_repo(repo, |r| {
            r.permissions.insert(login.to_lowercase(), role.to_owned());
        });
    }

    /// Opens an issue and returns its number.
    pub fn add_issue(&self, repo: &str, title: &str, body: &str) -> u64 {
        let mut state = self.state();
        let id = state.next_id();
        let r = state.repo_mut(repo);
        let number = r.take_number();
        r.issues.insert(
            number,
            IssueRec {
                id,
                title: title.to_owned(),
                body: Some(body.to_owned()).filter(|b| !b.is_empty()),
                state: "open".to_owned(),
                user: PERSONAL_LOGIN.to_owned(),
                created_at: SystemTime::now(),
            },
        );
        number
    }

    /// Adds a comment by `login` (a person, say) on an issue or pull request; returns its id.
    ///
    /// # Panics
    /// When the issue or pull request does not exist.
    pub fn add_comment(&self, repo: &str, number: u64, login: &str, body: &str) -> u64 {
        let mut state = self.state();
        let id = state.next_id();
        let r = state.repo_mut(repo);
        assert!(r.has_number(number), "{repo} has no issue #{number}");
        r.comments.push(new_comment(id, number, login, body));
        id
    }

    /// Simulates a push: a new commit with a new tree on `branch` (created from the default
    /// branch when missing); returns the commit sha. On a hosted repository it is a real commit
    /// by [`PERSONAL_LOGIN`] appending `message` to [`PUSH_LOG_FILE`].
    ///
    /// # Panics
    /// When git fails on a hosted repository.
    pub fn push_commit(&self, repo: &str, branch: &str, message: &str) -> String {
        self.with_repo(repo, |r| {
            if r.hosted.is_some() {
                let line = format!("{message}\n");
                return r
                    .commit_hosted_file(branch, PUSH_LOG_FILE, message, |before| {
                        let mut content = before.unwrap_or_default();
                        content.extend_from_slice(line.as_bytes());
                        content
                    })
                    .unwrap_or_else(|e| panic!("cannot push to {repo}: {e}"));
            }
            let parent = r
                .branches
                .get(branch)
                .or_else(|| r.branches.get(&r.default_branch))
                .cloned();
            let sha = r.store_commit(random_sha(), parent.into_iter().collect(), message.into());
            r.record_branch(branch, &sha);
            sha
        })
    }

    /// Simulates someone else pushing a commit that sets `path` to `content` on `branch` of a
    /// hosted repository (created from the default branch when missing); returns the commit sha.
    /// Open pull requests from the branch follow it.
    ///
    /// # Panics
    /// When the repository is not hosted or git fails.
    pub fn commit_file(
        &self,
        repo: &str,
        branch: &str,
        path: &str,
        content: &str,
        message: &str,
    ) -> String {
        self.with_repo(repo, |r| {
            assert!(
                r.hosted.is_some(),
                "{repo} is not hosted: call host_git first"
            );
            r.commit_hosted_file(branch, path, message, |_| content.as_bytes().to_vec())
                .unwrap_or_else(|e| panic!("cannot commit {path} to {repo}: {e}"))
        })
    }

    /// Simulates a contributor opening a pull request from `branch` of their fork `fork` (a
    /// hosted repository of its own) into the default branch of `base`: GitHub copies the head
    /// commit into `base` as `refs/pull/<n>/head`, and `base`'s branches are untouched (a
    /// branch of the same name in `base` stays what it was). Returns the number.
    ///
    /// # Panics
    /// When either repository is not hosted, or the fork has no such branch.
    pub fn open_fork_pull(&self, base: &str, fork: &str, branch: &str, title: &str) -> u64 {
        let fork_dir = self.git_dir(fork);
        let fork_name = self.with_repo(fork, |r| r.full_name());
        let head_sha = self
            .bare(fork)
            .resolve(&format!("refs/heads/{branch}"))
            .unwrap_or_else(|| panic!("{fork} has no branch {branch}"));
        let mut state = self.state();
        let id = state.next_id();
        let r = state.repo_mut(base);
        let bare = r.hosted.clone().expect("the base repository is hosted");
        bare.fetch_objects(&fork_dir, &format!("refs/heads/{branch}"))
            .unwrap_or_else(|e| panic!("cannot copy {fork}'s commit into {base}: {e}"));
        let number = r.take_number();
        let now = SystemTime::now();
        r.pulls.insert(
            number,
            Pull {
                id,
                number,
                title: title.to_owned(),
                body: None,
                state: "open".to_owned(),
                draft: false,
                head: branch.to_owned(),
                head_sha,
                head_repo: Some(fork_name),
                base: r.default_branch.clone(),
                user: fork.split('/').next().unwrap_or(fork).to_owned(),
                merged: false,
                created_at: now,
                updated_at: now,
                closed_at: None,
            },
        );
        r.write_pull_refs();
        number
    }

    /// A push to a fork's branch reaching its pull request `number` in `base`, as GitHub's
    /// `synchronize`: the new head is copied into `base` and `refs/pull/<n>/head` follows.
    /// Returns the new head.
    ///
    /// # Panics
    /// When the pull request is not from a fork.
    pub fn sync_fork_pull(&self, base: &str, number: u64) -> String {
        let (fork, branch) = self.with_repo(base, |r| {
            let pull = &r.pulls[&number];
            (
                pull.head_repo.clone().expect("a fork's pull request"),
                pull.head.clone(),
            )
        });
        let fork_dir = self.git_dir(&fork);
        let head = self
            .bare(&fork)
            .resolve(&format!("refs/heads/{branch}"))
            .expect("the fork's branch");
        self.with_repo(base, |r| {
            let bare = r.hosted.clone().expect("hosted");
            bare.fetch_objects(&fork_dir, &format!("refs/heads/{branch}"))
                .unwrap_or_else(|e| panic!("cannot copy {fork}'s commit: {e}"));
            let pull = r.pulls.get_mut(&number).unwrap();
            pull.head_sha.clone_from(&head);
            r.write_pull_refs();
        });
        head
    }

    /// Simulates merging an open pull request: a merge commit on the base branch, and the pull
    /// request closed as merged.
    ///
    /// # Panics
    /// When the pull request does not exist or is not open.
    /// On a hosted repository the merge commit is real (git's merge of the two heads); it panics
    /// when they conflict.
    pub fn merge_pull(&self, repo: &str, number: u64) {
        self.with_repo(repo, |r| {
            let pull = r.pulls.get(&number).expect("no such pull request").clone();
            assert_eq!(pull.state, "open", "pull request #{number} is not open");
            let base_sha = r.branches[&pull.base].clone();
            let message = format!("Merge pull request #{number} from {}", pull.head);
            match r.hosted.clone() {
                Some(bare) => {
                    let tree = bare
                        .merge_tree(&base_sha, &pull.head_sha)
                        .unwrap_or_else(|e| panic!("#{number} does not merge cleanly: {e}"));
                    let who = identity(PERSONAL_LOGIN);
                    let parents = [base_sha.clone(), pull.head_sha.clone()];
                    let merge = bare
                        .commit_tree(&tree, &parents, &message, &who, &who)
                        .unwrap_or_else(|e| panic!("cannot merge #{number}: {e}"));
                    r.move_ref(&pull.base, &merge, Expect::At(&base_sha))
                        .unwrap_or_else(|e| panic!("cannot merge #{number}: {e}"));
                }
                None => {
                    let tree = r.commits[&pull.head_sha].tree.clone();
                    let merge = r.store_commit(tree, vec![base_sha, pull.head_sha], message);
                    r.record_branch(&pull.base, &merge);
                }
            }
            let now = SystemTime::now();
            let p = r.pulls.get_mut(&number).expect("pull request exists");
            p.state = "closed".to_owned();
            p.merged = true;
            p.closed_at = Some(now);
            p.updated_at = now;
        });
    }

    /// Every API request received so far, oldest first (git's are in
    /// [`FakeGitHub::git_requests`]).
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Claims of every App JWT whose signature verified, oldest first (also those then refused).
    pub fn jwt_claims(&self) -> Vec<Value> {
        self.state().jwt_claims.clone()
    }

    /// Installation tokens issued so far, oldest first.
    pub fn issued_tokens(&self) -> Vec<IssuedToken> {
        self.state().tokens.clone()
    }

    /// How many collaborator permission look-ups were answered.
    pub fn permission_lookups(&self) -> usize {
        self.state().permission_lookups
    }

    /// Branch name → head sha.
    pub fn branches(&self, repo: &str) -> BTreeMap<String, String> {
        self.with_repo(repo, |r| r.branches.clone())
    }

    /// A commit of the repository, if stored.
    pub fn commit(&self, repo: &str, sha: &str) -> Option<Commit> {
        self.with_repo(repo, |r| r.commit(sha))
    }

    /// Makes `owner/name` (added with [`FakeGitHub::add_repo`] and not touched since) a real git
    /// repository: a bare repository in a directory the fake owns, whose default branch holds one
    /// commit adding a `README.md`. From then on the repository's branches and commits, through
    /// the API and the accessors, are those of the bare repository, and git clients reach it over
    /// HTTP at its `clone_url` ([`FakeGitHub::git_url`]) with an installation or personal token.
    /// A `clone_url` set with [`FakeGitHub::set_clone_url`] is dropped.
    ///
    /// # Panics
    /// When the repository does not exist, is hosted already, has branches, pull requests or
    /// deployments besides its initial state, or git cannot create it.
    pub fn host_git(&self, repo_full_name: &str) {
        let mut state = self.state();
        let root = state.git_root();
        let r = state.repo_mut(repo_full_name);
        assert!(r.hosted.is_none(), "{repo_full_name} is hosted already");
        assert!(
            r.branches.len() == 1 && r.pulls.is_empty() && r.deployments.is_empty(),
            "host {repo_full_name} right after adding it, before it has branches or pull requests"
        );
        let dir = repos_dir(&root)
            .join(r.owner.to_lowercase())
            .join(format!("{}.git", r.name.to_lowercase()));
        let bare = Bare::create(
            &home_dir(&root),
            dir,
            &r.default_branch,
            &r.name,
            &identity(PERSONAL_LOGIN),
        )
        .unwrap_or_else(|e| panic!("cannot host {repo_full_name}: {e}"));
        r.commits.clear();
        r.branches.clear();
        r.clone_url = None;
        r.hosted = Some(bare);
        r.refresh();
    }

    /// Whether the repository is hosted for real ([`FakeGitHub::host_git`]).
    pub fn is_hosted(&self, repo: &str) -> bool {
        self.with_repo(repo, |r| r.hosted.is_some())
    }

    /// The URL git clients clone a hosted repository from, as its `clone_url` reports it:
    /// `<url>/git/<owner>/<name>.git`.
    pub fn git_url(&self, repo: &str) -> String {
        let full_name = self.with_repo(repo, |r| r.full_name());
        format!("{}/git/{full_name}.git", self.url)
    }

    /// Path of a hosted repository's bare repository, to run git on directly.
    ///
    /// # Panics
    /// When the repository is not hosted.
    pub fn git_dir(&self, repo: &str) -> PathBuf {
        self.bare(repo).dir().to_owned()
    }

    /// The commits reachable from `rev` (a branch name, else any revision git understands, such
    /// as a sha), newest first; empty when `rev` names nothing.
    ///
    /// # Panics
    /// When the repository is not hosted.
    pub fn git_log(&self, repo: &str, rev: &str) -> Vec<GitCommitInfo> {
        let bare = self.bare(repo);
        match resolve_rev(&bare, rev) {
            Some(sha) => bare.log(&sha),
            None => Vec::new(),
        }
    }

    /// The contents of `path` at `rev` (a branch name, else any revision), if it is a file there.
    ///
    /// # Panics
    /// When the repository is not hosted.
    pub fn file_at(&self, repo: &str, rev: &str, path: &str) -> Option<String> {
        let bare = self.bare(repo);
        let sha = resolve_rev(&bare, rev)?;
        bare.blob_at(&sha, path)
            .map(|content| String::from_utf8_lossy(&content).into_owned())
    }

    /// Every request of git's HTTP protocol received so far, oldest first (in the order they were
    /// answered).
    pub fn git_requests(&self) -> Vec<GitRequest> {
        self.state().git_requests.clone()
    }

    fn bare(&self, repo: &str) -> Bare {
        self.with_repo(repo, |r| r.hosted.clone())
            .unwrap_or_else(|| panic!("{repo} is not hosted: call host_git first"))
    }

    /// Pull requests, by number.
    pub fn pulls(&self, repo: &str) -> Vec<Pull> {
        self.with_repo(repo, |r| r.pulls.values().cloned().collect())
    }

    /// Comments on an issue or pull request, oldest first.
    pub fn comments(&self, repo: &str, number: u64) -> Vec<Comment> {
        self.with_repo(repo, |r| {
            r.comments
                .iter()
                .filter(|c| c.issue_number == number)
                .cloned()
                .collect()
        })
    }

    /// Reactions on an issue comment, oldest first.
    pub fn reactions(&self, repo: &str, comment_id: u64) -> Vec<Reaction> {
        self.with_repo(repo, |r| {
            r.reactions.get(&comment_id).cloned().unwrap_or_default()
        })
    }

    /// Deployments with their statuses, oldest first.
    pub fn deployments(&self, repo: &str) -> Vec<Deployment> {
        self.with_repo(repo, |r| r.deployments.clone())
    }

    /// Runs `f` on a repository.
    ///
    /// # Panics
    /// When the repository does not exist: a typo in a test should fail loudly.
    fn with_repo<T>(&self, repo: &str, f: impl FnOnce(&mut Repo) -> T) -> T {
        let mut state = self.state();
        let r = state.repo_mut(repo);
        r.refresh();
        f(r)
    }
}

/// Everything the fake knows; only touched under the mutex.
#[derive(Debug)]
struct State {
    url: String,
    /// The web flow: browser sign-in, codes, user tokens.
    web: oauth::WebFlow,
    last_id: u64,
    installations: BTreeSet<u64>,
    tokens: Vec<IssuedToken>,
    token_lifetime: Duration,
    personal_tokens: HashSet<String>,
    manifest_codes: HashSet<String>,
    repos: BTreeMap<String, Repo>,
    jwt_claims: Vec<Value>,
    requests: Vec<Recorded>,
    faults: Faults,
    rate_limits: Vec<QueuedLimit>,
    /// Content-creating requests of the last minute, by identity (GitHub's secondary limit).
    content_sent: VecDeque<(String, Instant)>,
    content_limit: usize,
    latency: Duration,
    permission_lookups: usize,
    /// Directory of hosted repositories, made when the first one is hosted.
    git_root: Option<tempfile::TempDir>,
    git_requests: Vec<GitRequest>,
}

#[derive(Debug)]
struct Repo {
    id: u64,
    owner: String,
    name: String,
    default_branch: String,
    clone_url: Option<String>,
    branches: BTreeMap<String, String>,
    commits: HashMap<String, Commit>,
    next_number: u64,
    issues: BTreeMap<u64, IssueRec>,
    pulls: BTreeMap<u64, Pull>,
    comments: Vec<Comment>,
    reactions: BTreeMap<u64, Vec<Reaction>>,
    deployments: Vec<Deployment>,
    permissions: HashMap<String, String>,
    /// The bare repository, when hosted: then `branches` is a copy of its refs, refreshed before
    /// every use, and `commits` is unused.
    hosted: Option<Bare>,
    /// Whether `POST /pulls` with `draft: true` is refused (private repositories on GitHub
    /// Free and Pro).
    drafts_refused: bool,
    /// Private: user tokens without a role on it are told it does not exist.
    private: bool,
    /// The repository's labels by lower-cased name (GitHub's names are case-insensitive).
    labels: BTreeMap<String, Label>,
    /// What the receive side refuses (see [`crate::git::PRE_RECEIVE`]).
    push_rules: PushRules,
}

/// GitHub's refusals of pushes to one repository.
#[derive(Debug, Clone, Default)]
struct PushRules {
    protected: BTreeSet<String>,
    max_file_bytes: Option<u64>,
    decline: Option<String>,
}

/// A repository label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub name: String,
    pub color: String,
    pub description: Option<String>,
}

impl Label {
    fn json(&self) -> Value {
        json!({ "name": self.name, "color": self.color, "description": self.description, "default": false })
    }
}

#[derive(Debug)]
struct IssueRec {
    id: u64,
    title: String,
    body: Option<String>,
    state: String,
    user: String,
    created_at: SystemTime,
}

/// Who a repository request acts as.
#[derive(Debug, Clone, Copy)]
struct Actor {
    login: &'static str,
}

/// The credential of a request, before it is checked.
#[derive(Debug, Clone)]
enum Credential {
    None,
    Jwt(String),
    Token(String),
}

/// A request reduced to what routing needs.
#[derive(Debug)]
struct Incoming {
    method: String,
    path: String,
    segments: Vec<String>,
    query: BTreeMap<String, String>,
    credential: Credential,
    body: Value,
    body_is_json: bool,
}

/// An error answer in GitHub's shape.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, message: &str) -> Self {
        ApiError {
            status,
            body: json!({
                "message": message,
                "documentation_url": "https://docs.github.com/rest",
                "status": status.as_u16().to_string(),
            }),
        }
    }

    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found")
    }

    fn bad_credentials() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Bad credentials")
    }

    fn unprocessable(message: &str) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 422 "Validation Failed" with GitHub's `errors` list.
    fn validation(errors: Value) -> Self {
        let mut error = Self::unprocessable("Validation Failed");
        error.body["errors"] = errors;
        error
    }

    fn field(resource: &str, field: &str, code: &str) -> Self {
        Self::validation(json!([{ "resource": resource, "field": field, "code": code }]))
    }

    fn custom(resource: &str, message: &str) -> Self {
        Self::validation(json!([{ "resource": resource, "code": "custom", "message": message }]))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

type Answer = Result<Response, ApiError>;

fn created(body: Value) -> Answer {
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn ok(body: Value) -> Answer {
    Ok((StatusCode::OK, Json(body)).into_response())
}

async fn serve_request(
    Shared(fake): Shared<FakeGitHub>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = fake.state().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let incoming = Incoming::new(&method, &uri, &headers, &body);
    fake.state().handle(incoming)
}

impl Incoming {
    fn new(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Self {
        let credential = match headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
        {
            Some((scheme, value))
                if scheme.eq_ignore_ascii_case("bearer")
                    || scheme.eq_ignore_ascii_case("token") =>
            {
                let value = value.trim().to_owned();
                if looks_like_jwt(&value) {
                    Credential::Jwt(value)
                } else {
                    Credential::Token(value)
                }
            }
            _ => Credential::None,
        };
        let (body, body_is_json) = if body.is_empty() {
            (Value::Null, true)
        } else {
            match serde_json::from_slice(body) {
                Ok(value) => (value, true),
                Err(_) => (
                    Value::String(String::from_utf8_lossy(body).into_owned()),
                    false,
                ),
            }
        };
        Incoming {
            method: method.as_str().to_owned(),
            path: uri.path().to_owned(),
            segments: uri
                .path()
                .split('/')
                .filter(|s| !s.is_empty())
                .map(percent_decode)
                .collect(),
            query: parse_query(uri),
            credential,
            body,
            body_is_json,
        }
    }

    fn str_field(&self, name: &str) -> Option<&str> {
        self.body.get(name).and_then(Value::as_str)
    }
}

fn looks_like_jwt(value: &str) -> bool {
    value.starts_with("eyJ") && value.matches('.').count() == 2
}

impl State {
    fn new(url: String) -> Self {
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
    fn git_root(&mut self) -> PathBuf {
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

    fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    fn repo_mut(&mut self, full_name: &str) -> &mut Repo {
        self.repos
            .get_mut(&full_name.to_lowercase())
            .unwrap_or_else(|| panic!("the fake GitHub has no repository {full_name}"))
    }

    fn handle(&mut self, req: Incoming) -> Response {
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
    fn rate_limit(&mut self, req: &Incoming) -> Option<Response> {
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

    fn classify(&self, credential: &Credential) -> AuthKind {
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

    fn route(&mut self, req: &Incoming) -> Answer {
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

    fn installation(&self, id: &str) -> Result<u64, ApiError> {
        id.parse()
            .ok()
            .filter(|id| self.installations.contains(id))
            .ok_or_else(ApiError::not_found)
    }

    /// Checks an App JWT as GitHub does, recording the claims once the signature holds.
    fn verify_jwt(&mut self, credential: &Credential) -> Result<(), ApiError> {
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

    fn issue_token(&mut self, installation_id: u64, body: &Value) -> Answer {
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
    fn plan_git(
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
    fn authorize_git(
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
    fn authorize_repo(
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

    fn convert_manifest(&mut self, code: &str) -> Answer {
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

    fn app_json(&self) -> Value {
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
            "events": ["issues", "issue_comment", "pull_request"],
            "installations_count": self.installations.len(),
        })
    }

    fn installation_json(&self, id: u64) -> Value {
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
            "events": ["issues", "issue_comment", "pull_request"],
            "created_at": now,
            "updated_at": now,
        })
    }
}

fn no_such_repository() -> ApiError {
    ApiError::unprocessable(
        "There is at least one repository that does not exist or is not accessible to the parent installation.",
    )
}

/// What the fake App was granted at installation.
fn app_permissions() -> Value {
    json!({
        "contents": "write",
        "pull_requests": "write",
        "issues": "write",
        "deployments": "write",
        "metadata": "read",
    })
}

fn permission_rank(level: &str) -> u8 {
    match level {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        _ => u8::MAX,
    }
}

/// GitHub's legacy permission for a role: maintain counts as write, triage as read.
fn legacy_permission(role: &str) -> Option<&'static str> {
    match role {
        "admin" => Some("admin"),
        "maintain" | "write" => Some("write"),
        "triage" | "read" => Some("read"),
        "none" => Some("none"),
        _ => None,
    }
}

/// A repository request with everything its handler may touch borrowed apart.
struct RepoCtx<'a> {
    api: &'a str,
    last_id: &'a mut u64,
    permission_lookups: &'a mut usize,
    repo: &'a mut Repo,
    actor: Actor,
    req: &'a Incoming,
}

impl RepoCtx<'_> {
    fn next_id(&mut self) -> u64 {
        *self.last_id += 1;
        *self.last_id
    }

    /// Routes a request on the repository. GitHub takes POST wherever it takes PATCH (for clients
    /// that cannot send PATCH), and octocrab relies on it, e.g. to edit comments.
    fn route(&mut self, method: &str, rest: &[&str]) -> Answer {
        match (method, rest) {
            ("GET", []) => ok(self.repo.json(self.api)),
            ("GET", ["collaborators", login, "permission"]) => self.permission(login),
            ("GET", ["labels"]) => ok(Value::Array(
                self.repo.labels.values().map(Label::json).collect(),
            )),
            ("GET", ["labels", name]) => self
                .repo
                .labels
                .get(&percent_decode(name).to_lowercase())
                .map(|l| ok(l.json()))
                .unwrap_or_else(|| Err(ApiError::not_found())),
            ("POST", ["labels"]) => self.create_label(),
            ("GET", ["git", "ref", "heads", branch @ ..]) if !branch.is_empty() => {
                self.get_ref(&branch.join("/"))
            }
            ("GET", ["git", "commits", sha]) => {
                let commit = self.repo.commit_info(sha).ok_or_else(ApiError::not_found)?;
                ok(self.repo.commit_json(self.api, &commit))
            }
            ("POST", ["git", "commits"]) => self.create_commit(),
            ("POST", ["git", "refs"]) => self.create_ref(),
            ("PATCH" | "POST", ["git", "refs", "heads", branch @ ..]) if !branch.is_empty() => {
                self.update_ref(&branch.join("/"))
            }
            ("DELETE", ["git", "refs", "heads", branch @ ..]) if !branch.is_empty() => {
                self.delete_ref(&branch.join("/"))
            }
            ("GET", ["branches"]) => self.list_branches(),
            ("GET", ["branches", branch @ ..]) if !branch.is_empty() => {
                self.get_branch(&branch.join("/"))
            }
            ("GET", ["commits"]) => self.list_commits(),
            ("GET", ["commits", rev @ ..]) if !rev.is_empty() => {
                let sha = self
                    .repo
                    .resolve(&rev.join("/"))
                    .ok_or_else(ApiError::not_found)?;
                let commit = self
                    .repo
                    .commit_info(&sha)
                    .ok_or_else(ApiError::not_found)?;
                ok(self.repo.rest_commit_json(self.api, &commit))
            }
            ("GET", ["compare", spec @ ..]) if !spec.is_empty() => self.compare(&spec.join("/")),
            ("GET", ["contents", path @ ..]) => self.contents(&path.join("/")),
            ("GET", ["pulls"]) => self.list_pulls(),
            ("POST", ["pulls"]) => self.create_pull(),
            ("GET", ["pulls", number]) => {
                let number = parse_number(number)?;
                let pull = self
                    .repo
                    .pulls
                    .get(&number)
                    .ok_or_else(ApiError::not_found)?;
                ok(self.repo.pull_json(self.api, pull))
            }
            ("PATCH" | "POST", ["pulls", number]) => self.update_pull(parse_number(number)?),
            ("GET", ["issues", "comments", id]) => {
                let id = parse_number(id)?;
                let comment = self.repo.comment(id).ok_or_else(ApiError::not_found)?;
                ok(self.repo.comment_json(self.api, comment))
            }
            ("PATCH" | "POST", ["issues", "comments", id]) => self.edit_comment(parse_number(id)?),
            ("DELETE", ["issues", "comments", id]) => {
                let id = parse_number(id)?;
                let before = self.repo.comments.len();
                self.repo.comments.retain(|c| c.id != id);
                if before == self.repo.comments.len() {
                    return Err(ApiError::not_found());
                }
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            ("GET", ["issues", "comments", id, "reactions"]) => {
                let id = parse_number(id)?;
                self.repo.comment(id).ok_or_else(ApiError::not_found)?;
                let list = self.repo.reactions.get(&id).cloned().unwrap_or_default();
                let list = list.iter().map(|r| reaction_json(self.api, r)).collect();
                self.paginate(list)
            }
            ("POST", ["issues", "comments", id, "reactions"]) => self.react(parse_number(id)?),
            ("GET", ["issues", number]) => {
                let number = parse_number(number)?;
                ok(self
                    .repo
                    .issue_json(self.api, number)
                    .ok_or_else(ApiError::not_found)?)
            }
            ("GET", ["issues", number, "comments"]) => {
                let number = parse_number(number)?;
                if !self.repo.has_number(number) {
                    return Err(ApiError::not_found());
                }
                let list = self
                    .repo
                    .comments
                    .iter()
                    .filter(|c| c.issue_number == number)
                    .map(|c| self.repo.comment_json(self.api, c))
                    .collect();
                self.paginate(list)
            }
            ("POST", ["issues", number, "comments"]) => self.create_comment(parse_number(number)?),
            ("GET", ["deployments"]) => self.list_deployments(),
            ("POST", ["deployments"]) => self.create_deployment(),
            ("GET", ["deployments", id]) => {
                let id = parse_number(id)?;
                let d = self.repo.deployment(id).ok_or_else(ApiError::not_found)?;
                ok(self.repo.deployment_json(self.api, d))
            }
            ("GET", ["deployments", id, "statuses"]) => {
                let id = parse_number(id)?;
                let d = self.repo.deployment(id).ok_or_else(ApiError::not_found)?;
                let list = d
                    .statuses
                    .iter()
                    .rev()
                    .map(|s| self.repo.deployment_status_json(self.api, d, s))
                    .collect();
                self.paginate(list)
            }
            ("POST", ["deployments", id, "statuses"]) => {
                self.create_deployment_status(parse_number(id)?)
            }
            _ => Err(ApiError::not_found()),
        }
    }

    fn permission(&mut self, login: &str) -> Answer {
        *self.permission_lookups += 1;
        ok(self.repo.permission_json(self.api, login))
    }

    fn get_ref(&self, branch: &str) -> Answer {
        let sha = self
            .repo
            .branches
            .get(branch)
            .ok_or_else(ApiError::not_found)?;
        ok(self.repo.ref_json(self.api, branch, sha))
    }

    fn create_commit(&mut self) -> Answer {
        let Some(message) = self.req.str_field("message") else {
            return Err(ApiError::field("Commit", "message", "missing_field"));
        };
        let Some(tree) = self.req.str_field("tree") else {
            return Err(ApiError::field("Commit", "tree", "missing_field"));
        };
        if !self.repo.has_tree(tree) {
            return Err(ApiError::unprocessable("Tree SHA does not exist"));
        }
        let mut parents = Vec::new();
        for parent in self.req.body["parents"].as_array().into_iter().flatten() {
            match parent.as_str() {
                Some(sha) if self.repo.has_commit(sha) => parents.push(sha.to_owned()),
                _ => {
                    return Err(ApiError::unprocessable(
                        "Parent SHA does not exist or is not a commit object",
                    ));
                }
            }
        }
        let sha = match self.repo.hosted.clone() {
            Some(bare) => {
                // As GitHub: the author defaults to the caller, the committer to the author.
                let author = identity_from(&self.req.body["author"])
                    .unwrap_or_else(|| identity(self.actor.login));
                let committer =
                    identity_from(&self.req.body["committer"]).unwrap_or_else(|| author.clone());
                bare.commit_tree(tree, &parents, message, &author, &committer)
                    .map_err(|e| ApiError::unprocessable(&e))?
            }
            None => self
                .repo
                .store_commit(tree.to_owned(), parents, message.to_owned()),
        };
        let commit = self
            .repo
            .commit_info(&sha)
            .ok_or_else(|| ApiError::unprocessable("the new commit cannot be read back"))?;
        created(self.repo.commit_json(self.api, &commit))
    }

    fn create_ref(&mut self) -> Answer {
        let (Some(full_ref), Some(sha)) = (self.req.str_field("ref"), self.req.str_field("sha"))
        else {
            return Err(ApiError::field("Reference", "ref", "missing_field"));
        };
        let Some(branch) = full_ref
            .strip_prefix("refs/heads/")
            .filter(|b| valid_branch(b))
        else {
            return Err(ApiError::unprocessable(
                "Reference name is invalid (the fake models refs/heads/* only)",
            ));
        };
        if self.repo.branches.contains_key(branch) {
            return Err(ApiError::unprocessable("Reference already exists"));
        }
        if !self.repo.has_commit(sha) {
            return Err(ApiError::unprocessable("Object does not exist"));
        }
        // Made meanwhile by a push: git refuses the update, as the check above would have.
        self.repo
            .move_ref(branch, sha, Expect::Absent)
            .map_err(|_| ApiError::unprocessable("Reference already exists"))?;
        created(self.repo.ref_json(self.api, branch, sha))
    }

    fn update_ref(&mut self, branch: &str) -> Answer {
        let Some(sha) = self.req.str_field("sha") else {
            return Err(ApiError::field("Reference", "sha", "missing_field"));
        };
        let Some(old) = self.repo.branches.get(branch).cloned() else {
            return Err(ApiError::unprocessable("Reference does not exist"));
        };
        if !self.repo.has_commit(sha) {
            return Err(ApiError::unprocessable("Object does not exist"));
        }
        let force = self.req.body["force"].as_bool().unwrap_or(false);
        if !force && !self.repo.is_ancestor(&old, sha) {
            return Err(ApiError::unprocessable("Update is not a fast forward"));
        }
        // Moved meanwhile by a push: git refuses the update rather than losing that push.
        self.repo
            .move_ref(branch, sha, Expect::At(&old))
            .map_err(|_| ApiError::unprocessable("Reference cannot be updated"))?;
        ok(self.repo.ref_json(self.api, branch, sha))
    }

    fn delete_ref(&mut self, branch: &str) -> Answer {
        if !self.repo.delete_branch(branch) {
            return Err(ApiError::unprocessable("Reference does not exist"));
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    fn list_branches(&self) -> Answer {
        let list = self
            .repo
            .branches
            .iter()
            .map(|(name, sha)| {
                json!({
                    "name": name,
                    "commit": {
                        "sha": sha,
                        "url": format!("{}/commits/{sha}", self.repo.api_url(self.api)),
                    },
                    "protected": false,
                })
            })
            .collect();
        self.paginate(list)
    }

    fn get_branch(&self, branch: &str) -> Answer {
        let sha = self
            .repo
            .branches
            .get(branch)
            .ok_or_else(ApiError::not_found)?;
        let commit = self.repo.commit_info(sha).ok_or_else(ApiError::not_found)?;
        let url = self.repo.api_url(self.api);
        ok(json!({
            "name": branch,
            "commit": self.repo.rest_commit_json(self.api, &commit),
            "_links": {
                "self": format!("{url}/branches/{branch}"),
                "html": format!("{}/tree/{branch}", self.repo.html_url()),
            },
            "protected": false,
            "protection_url": format!("{url}/branches/{branch}/protection"),
        }))
    }

    /// Commits reachable from `sha` (a branch or commit; the default branch when absent),
    /// newest first.
    fn list_commits(&self) -> Answer {
        let rev = self
            .req
            .query
            .get("sha")
            .map_or(self.repo.default_branch.as_str(), String::as_str);
        let sha = self.repo.resolve(rev).ok_or_else(ApiError::not_found)?;
        let list = self
            .repo
            .history(&sha)
            .iter()
            .map(|c| self.repo.rest_commit_json(self.api, c))
            .collect();
        self.paginate(list)
    }

    /// `base...head`, each a branch (optionally `owner:branch`) or a commit.
    fn compare(&self, spec: &str) -> Answer {
        let (base, head) = spec.split_once("...").ok_or_else(ApiError::not_found)?;
        let side = |rev: &str| -> Result<String, ApiError> {
            let rev = match rev.split_once(':') {
                Some((owner, branch)) if owner.eq_ignore_ascii_case(&self.repo.owner) => branch,
                _ => rev,
            };
            self.repo.resolve(rev).ok_or_else(ApiError::not_found)
        };
        let (base_sha, head_sha) = (side(base)?, side(head)?);
        let base_history = self.repo.history(&base_sha);
        let head_history = self.repo.history(&head_sha);
        let in_base: HashSet<&str> = base_history.iter().map(|c| c.sha.as_str()).collect();
        let in_head: HashSet<&str> = head_history.iter().map(|c| c.sha.as_str()).collect();
        let ahead: Vec<&GitCommitInfo> = head_history
            .iter()
            .filter(|c| !in_base.contains(c.sha.as_str()))
            .collect();
        let behind = base_history
            .iter()
            .filter(|c| !in_head.contains(c.sha.as_str()))
            .count();
        let merge_base = head_history
            .iter()
            .find(|c| in_base.contains(c.sha.as_str()));
        let status = match (ahead.len(), behind) {
            (0, 0) => "identical",
            (_, 0) => "ahead",
            (0, _) => "behind",
            _ => "diverged",
        };
        let url = self.repo.api_url(self.api);
        let html = self.repo.html_url();
        ok(json!({
            "url": format!("{url}/compare/{spec}"),
            "html_url": format!("{html}/compare/{spec}"),
            "permalink_url": format!("{html}/compare/{base_sha}...{head_sha}"),
            "status": status,
            "ahead_by": ahead.len(),
            "behind_by": behind,
            "total_commits": ahead.len(),
            "base_commit": base_history
                .iter()
                .find(|c| c.sha == base_sha)
                .map(|c| self.repo.rest_commit_json(self.api, c)),
            "merge_base_commit": merge_base.map(|c| self.repo.rest_commit_json(self.api, c)),
            "commits": ahead
                .iter()
                .rev()
                .map(|c| self.repo.rest_commit_json(self.api, c))
                .collect::<Vec<_>>(),
            "files": [],
        }))
    }

    /// A file (base64, as GitHub) or a directory listing, at `ref` or the default branch. Only
    /// hosted repositories have contents.
    fn contents(&self, path: &str) -> Answer {
        let Some(bare) = &self.repo.hosted else {
            return Err(ApiError::not_found());
        };
        let rev = self
            .req
            .query
            .get("ref")
            .map_or(self.repo.default_branch.as_str(), String::as_str);
        let sha = self.repo.resolve(rev).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                &format!("No commit found for the ref {rev}"),
            )
        })?;
        let path = path.trim_matches('/');
        let url = self.repo.api_url(self.api);
        let html = self.repo.html_url();
        let entry = |kind: &str, name: &str, path: &str, sha: &str, size: u64| {
            let (git_kind, html_kind) = if kind == "dir" {
                ("trees", "tree")
            } else {
                ("blobs", "blob")
            };
            let self_url = format!("{url}/contents/{path}?ref={rev}");
            let git_url = format!("{url}/git/{git_kind}/{sha}");
            let html_url = format!("{html}/{html_kind}/{rev}/{path}");
            json!({
                "type": kind,
                "name": name,
                "path": path,
                "sha": sha,
                "size": size,
                "url": self_url,
                "git_url": git_url,
                "html_url": html_url,
                "download_url": (kind == "file").then(|| {
                    format!("https://raw.githubusercontent.com/{}/{rev}/{path}", self.repo.full_name())
                }),
                "_links": { "self": self_url, "git": git_url, "html": html_url },
            })
        };
        match bare.path_at(&sha, path).ok_or_else(ApiError::not_found)? {
            PathContent::File { sha, content } => {
                let name = path.rsplit('/').next().unwrap_or(path);
                let size = u64::try_from(content.len()).unwrap_or(u64::MAX);
                let mut answer = entry("file", name, path, &sha, size);
                // GitHub wraps the base64 text at 60 characters.
                let encoded = BASE64.encode(&content);
                let wrapped: Vec<String> = encoded
                    .as_bytes()
                    .chunks(60)
                    .map(|line| String::from_utf8_lossy(line).into_owned())
                    .collect();
                answer["encoding"] = json!("base64");
                answer["content"] = json!(format!("{}\n", wrapped.join("\n")));
                ok(answer)
            }
            PathContent::Dir(entries) => ok(Value::Array(
                entries
                    .iter()
                    .map(|e| {
                        let child = if path.is_empty() {
                            e.name.clone()
                        } else {
                            format!("{path}/{}", e.name)
                        };
                        let kind = match e.kind.as_str() {
                            "tree" => "dir",
                            "commit" => "submodule",
                            _ => "file",
                        };
                        entry(kind, &e.name, &child, &e.sha, e.size.unwrap_or(0))
                    })
                    .collect(),
            )),
        }
    }

    fn list_pulls(&self) -> Answer {
        let q = &self.req.query;
        let state = q.get("state").map_or("open", String::as_str);
        if !matches!(state, "open" | "closed" | "all") {
            return Err(ApiError::field("PullRequest", "state", "invalid"));
        }
        // GitHub only filters on `head` given as `owner:branch`; a bare branch name is ignored,
        // which is a classic source of "found someone else's pull request" bugs.
        let head = q.get("head").and_then(|h| h.split_once(':'));
        let mut list: Vec<&Pull> = self
            .repo
            .pulls
            .values()
            .filter(|p| state == "all" || p.state == state)
            .filter(|p| {
                head.is_none_or(|(owner, branch)| {
                    owner.eq_ignore_ascii_case(&self.repo.owner) && p.head == branch
                })
            })
            .filter(|p| q.get("base").is_none_or(|b| &p.base == b))
            .collect();
        if q.get("direction").map(String::as_str) != Some("asc") {
            list.reverse();
        }
        let list = list
            .into_iter()
            .map(|p| self.repo.pull_json(self.api, p))
            .collect();
        self.paginate(list)
    }

    /// As GitHub: a name, a six-digit hex colour without `#`, a description of at most 100
    /// characters; a name that exists in any case is 422 `already_exists`.
    fn create_label(&mut self) -> Answer {
        let req = self.req;
        let Some(name) = req.str_field("name").filter(|n| !n.trim().is_empty()) else {
            return Err(ApiError::field("Label", "name", "missing_field"));
        };
        let color = req.str_field("color").unwrap_or("ededed");
        if color.len() != 6 || !color.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::field("Label", "color", "invalid"));
        }
        let description = req.str_field("description").map(str::to_owned);
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 100)
        {
            return Err(ApiError::field("Label", "description", "invalid"));
        }
        let key = name.to_lowercase();
        if self.repo.labels.contains_key(&key) {
            return Err(ApiError::field("Label", "name", "already_exists"));
        }
        let label = Label {
            name: name.to_owned(),
            color: color.to_owned(),
            description,
        };
        let body = label.json();
        self.repo.labels.insert(key, label);
        Ok((StatusCode::CREATED, Json(body)).into_response())
    }

    fn create_pull(&mut self) -> Answer {
        let req = self.req;
        let Some(title) = req.str_field("title").filter(|t| !t.trim().is_empty()) else {
            return Err(ApiError::field("PullRequest", "title", "missing_field"));
        };
        let Some(head_spec) = req.str_field("head") else {
            return Err(ApiError::field("PullRequest", "head", "missing_field"));
        };
        let Some(base) = req.str_field("base") else {
            return Err(ApiError::field("PullRequest", "base", "missing_field"));
        };
        if self.repo.drafts_refused && req.body["draft"].as_bool() == Some(true) {
            return Err(ApiError::custom(
                "PullRequest",
                "Draft pull requests are not supported in this repository.",
            ));
        }
        let head = match head_spec.split_once(':') {
            Some((owner, branch)) if owner.eq_ignore_ascii_case(&self.repo.owner) => branch,
            Some(_) => return Err(ApiError::field("PullRequest", "head", "invalid")),
            None => head_spec,
        };
        let Some(head_sha) = self.repo.branches.get(head).cloned() else {
            return Err(ApiError::field("PullRequest", "head", "invalid"));
        };
        let Some(base_sha) = self.repo.branches.get(base).cloned() else {
            return Err(ApiError::field("PullRequest", "base", "invalid"));
        };
        let owner = self.repo.owner.clone();
        if self
            .repo
            .pulls
            .values()
            .any(|p| p.state == "open" && p.head == head && p.base == base)
        {
            return Err(ApiError::custom(
                "PullRequest",
                &format!("A pull request already exists for {owner}:{head}."),
            ));
        }
        if self.repo.is_ancestor(&head_sha, &base_sha) {
            return Err(ApiError::custom(
                "PullRequest",
                &format!("No commits between {base} and {head}"),
            ));
        }
        let id = self.next_id();
        let number = self.repo.take_number();
        let now = SystemTime::now();
        let pull = Pull {
            id,
            number,
            title: title.to_owned(),
            body: req.str_field("body").map(str::to_owned),
            state: "open".to_owned(),
            draft: req.body["draft"].as_bool().unwrap_or(false),
            head: head.to_owned(),
            head_sha,
            head_repo: None,
            base: base.to_owned(),
            user: self.actor.login.to_owned(),
            merged: false,
            created_at: now,
            updated_at: now,
            closed_at: None,
        };
        let body = self.repo.pull_json(self.api, &pull);
        self.repo.pulls.insert(number, pull);
        self.repo.write_pull_refs();
        created(body)
    }

    fn update_pull(&mut self, number: u64) -> Answer {
        let req = self.req;
        let pull = self
            .repo
            .pulls
            .get(&number)
            .ok_or_else(ApiError::not_found)?;
        let state = match req.str_field("state") {
            None => pull.state.clone(),
            Some(s @ ("open" | "closed")) => s.to_owned(),
            Some(_) => return Err(ApiError::field("PullRequest", "state", "invalid")),
        };
        if state == "open" && pull.state == "closed" {
            if pull.merged {
                return Err(ApiError::unprocessable(
                    "Validation Failed: a merged pull request cannot be reopened",
                ));
            }
            let (head, base) = (&pull.head, &pull.base);
            if self
                .repo
                .pulls
                .values()
                .any(|p| p.state == "open" && &p.head == head && &p.base == base)
            {
                let message = format!(
                    "A pull request already exists for {}:{head}.",
                    self.repo.owner
                );
                return Err(ApiError::custom("PullRequest", &message));
            }
        }
        let base = match req.str_field("base") {
            Some(b) if !self.repo.branches.contains_key(b) => {
                return Err(ApiError::field("PullRequest", "base", "invalid"));
            }
            other => other.map(str::to_owned),
        };
        let now = SystemTime::now();
        let current_head = self.repo.branches.get(&pull.head).cloned();
        let pull = self.repo.pulls.get_mut(&number).expect("checked above");
        if state != pull.state {
            pull.closed_at = (state == "closed").then_some(now);
            if state == "open" {
                if let Some(sha) = current_head {
                    pull.head_sha = sha;
                }
            }
            pull.state = state;
        }
        if let Some(title) = req.str_field("title") {
            pull.title = title.to_owned();
        }
        if let Some(body) = req.str_field("body") {
            pull.body = Some(body.to_owned());
        }
        if let Some(base) = base {
            pull.base = base;
        }
        pull.updated_at = now;
        ok(self.repo.pull_json(self.api, &self.repo.pulls[&number]))
    }

    fn create_comment(&mut self, number: u64) -> Answer {
        if !self.repo.has_number(number) {
            return Err(ApiError::not_found());
        }
        let body = comment_body(self.req)?;
        let id = self.next_id();
        let comment = new_comment(id, number, self.actor.login, body);
        let json = self.repo.comment_json(self.api, &comment);
        self.repo.comments.push(comment);
        created(json)
    }

    fn edit_comment(&mut self, id: u64) -> Answer {
        let body = comment_body(self.req)?.to_owned();
        let comment = self
            .repo
            .comments
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(ApiError::not_found)?;
        comment.body = body;
        comment.edits += 1;
        comment.updated_at = SystemTime::now();
        ok(self
            .repo
            .comment_json(self.api, self.repo.comment(id).expect("just edited")))
    }

    fn react(&mut self, comment_id: u64) -> Answer {
        self.repo
            .comment(comment_id)
            .ok_or_else(ApiError::not_found)?;
        let Some(content) = self
            .req
            .str_field("content")
            .filter(|c| REACTIONS.contains(c))
        else {
            return Err(ApiError::field("Reaction", "content", "invalid"));
        };
        let login = self.actor.login;
        let existing = self.repo.reactions.get(&comment_id).and_then(|list| {
            list.iter()
                .find(|r| r.content == content && r.user == login)
        });
        // GitHub answers 200 with the existing reaction when the same user reacts twice.
        if let Some(existing) = existing {
            return ok(reaction_json(self.api, existing));
        }
        let reaction = Reaction {
            id: self.next_id(),
            content: content.to_owned(),
            user: login.to_owned(),
        };
        let json = reaction_json(self.api, &reaction);
        self.repo
            .reactions
            .entry(comment_id)
            .or_default()
            .push(reaction);
        created(json)
    }

    fn list_deployments(&self) -> Answer {
        let q = &self.req.query;
        let list = self
            .repo
            .deployments
            .iter()
            .rev()
            .filter(|d| q.get("environment").is_none_or(|e| &d.environment == e))
            .filter(|d| q.get("ref").is_none_or(|r| &d.git_ref == r))
            .filter(|d| q.get("sha").is_none_or(|s| &d.sha == s))
            .filter(|d| q.get("task").is_none_or(|t| &d.task == t))
            .map(|d| self.repo.deployment_json(self.api, d))
            .collect();
        self.paginate(list)
    }

    fn create_deployment(&mut self) -> Answer {
        let req = self.req;
        let Some(git_ref) = req.str_field("ref") else {
            return Err(ApiError::field("Deployment", "ref", "missing_field"));
        };
        let branch = git_ref.strip_prefix("refs/heads/").unwrap_or(git_ref);
        let sha = match self.repo.branches.get(branch) {
            Some(sha) => sha.clone(),
            None if self.repo.has_commit(git_ref) => git_ref.to_owned(),
            None => {
                return Err(ApiError::unprocessable(&format!(
                    "No ref found for: {git_ref}"
                )));
            }
        };
        let environment = req.str_field("environment").unwrap_or("production");
        let deployment = Deployment {
            id: self.next_id(),
            git_ref: git_ref.to_owned(),
            sha,
            environment: environment.to_owned(),
            task: req.str_field("task").unwrap_or("deploy").to_owned(),
            description: req.str_field("description").map(str::to_owned),
            payload: match &req.body["payload"] {
                Value::Null => json!({}),
                other => other.clone(),
            },
            transient_environment: req.body["transient_environment"].as_bool().unwrap_or(false),
            production_environment: req.body["production_environment"]
                .as_bool()
                .unwrap_or(environment == "production"),
            creator: self.actor.login.to_owned(),
            created_at: SystemTime::now(),
            statuses: Vec::new(),
        };
        let json = self.repo.deployment_json(self.api, &deployment);
        self.repo.deployments.push(deployment);
        created(json)
    }

    fn create_deployment_status(&mut self, id: u64) -> Answer {
        let req = self.req;
        self.repo.deployment(id).ok_or_else(ApiError::not_found)?;
        let Some(state) = req
            .str_field("state")
            .filter(|s| DEPLOYMENT_STATES.contains(s))
        else {
            return Err(ApiError::field("DeploymentStatus", "state", "invalid"));
        };
        let status_id = self.next_id();
        let now = SystemTime::now();
        let status = DeploymentStatus {
            id: status_id,
            state: state.to_owned(),
            environment_url: req.str_field("environment_url").map(str::to_owned),
            log_url: req
                .str_field("log_url")
                .or_else(|| req.str_field("target_url"))
                .map(str::to_owned),
            description: req.str_field("description").map(str::to_owned),
            creator: self.actor.login.to_owned(),
            created_at: now,
        };
        let deployment = self.repo.deployment_mut(id).expect("checked above");
        if let Some(environment) = req.str_field("environment") {
            deployment.environment = environment.to_owned();
        }
        deployment.statuses.push(status);
        let environment = deployment.environment.clone();
        let auto_inactive = req.body["auto_inactive"].as_bool().unwrap_or(true);
        if state == "success" && auto_inactive {
            // As GitHub: earlier successful deployments of the same environment go inactive.
            let mut retired = Vec::new();
            for d in &mut self.repo.deployments {
                let was_live = d.statuses.last().is_some_and(|s| s.state == "success");
                if d.id != id
                    && d.environment == environment
                    && was_live
                    && !d.transient_environment
                    && !d.production_environment
                {
                    retired.push(d.id);
                }
            }
            for other in retired {
                let status_id = self.next_id();
                let d = self.repo.deployment_mut(other).expect("listed above");
                d.statuses.push(DeploymentStatus {
                    id: status_id,
                    state: "inactive".to_owned(),
                    environment_url: None,
                    log_url: None,
                    description: None,
                    creator: self.actor.login.to_owned(),
                    created_at: now,
                });
            }
        }
        let d = self.repo.deployment(id).expect("checked above");
        let status = d.statuses.last().expect("just pushed");
        created(self.repo.deployment_status_json(self.api, d, status))
    }

    /// Answers one page of `items` with GitHub's `Link` header when there are more.
    fn paginate(&self, items: Vec<Value>) -> Answer {
        let query = &self.req.query;
        let per_page = query
            .get("per_page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(DEFAULT_PER_PAGE)
            .clamp(1, MAX_PER_PAGE);
        let page: usize = query
            .get("page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(1)
            .max(1);
        let last = items.len().div_ceil(per_page).max(1);
        let slice: Vec<Value> = items
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect();
        let mut response = (StatusCode::OK, Json(Value::Array(slice))).into_response();
        if last > 1 {
            let link_to = |n: usize, rel: &str| {
                let mut q = query.clone();
                q.insert("page".into(), n.to_string());
                q.insert("per_page".into(), per_page.to_string());
                format!(
                    "<{}{}?{}>; rel=\"{rel}\"",
                    self.api,
                    self.req.path,
                    encode_query(&q)
                )
            };
            let mut links = Vec::new();
            if page > 1 {
                links.push(link_to(page - 1, "prev"));
                links.push(link_to(1, "first"));
            }
            if page < last {
                links.push(link_to(page + 1, "next"));
                links.push(link_to(last, "last"));
            }
            if let Ok(value) = HeaderValue::from_str(&links.join(", ")) {
                response.headers_mut().insert(header::LINK, value);
            }
        }
        Ok(response)
    }
}

fn comment_body(req: &Incoming) -> Result<&str, ApiError> {
    let Some(body) = req.str_field("body") else {
        return Err(ApiError::field("IssueComment", "body", "missing_field"));
    };
    if body.chars().count() > MAX_COMMENT_CHARS {
        return Err(ApiError::custom(
            "IssueComment",
            "Body is too long (maximum is 65536 characters)",
        ));
    }
    Ok(body)
}

fn new_comment(id: u64, issue_number: u64, login: &str, body: &str) -> Comment {
    let now = SystemTime::now();
    Comment {
        id,
        issue_number,
        body: body.to_owned(),
        user: login.to_owned(),
        edits: 0,
        created_at: now,
        updated_at: now,
    }
}

fn parse_number(segment: &str) -> Result<u64, ApiError> {
    segment.parse().map_err(|_| ApiError::not_found())
}

/// Branch names git would accept, roughly: enough to refuse obvious client bugs.
fn valid_branch(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name
            .chars()
            .any(|c| c.is_ascii_control() || " ~^:?*[\\".contains(c))
}

impl Repo {
    fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    fn take_number(&mut self) -> u64 {
        let number = self.next_number;
        self.next_number += 1;
        number
    }

    fn has_number(&self, number: u64) -> bool {
        self.issues.contains_key(&number) || self.pulls.contains_key(&number)
    }

    fn store_commit(&mut self, tree: String, parents: Vec<String>, message: String) -> String {
        let sha = random_sha();
        self.commits.insert(
            sha.clone(),
            Commit {
                sha: sha.clone(),
                tree,
                parents,
                message,
                created_at: SystemTime::now(),
            },
        );
        sha
    }

    /// Notes that a branch moved; open pull requests from it follow, as on GitHub.
    fn record_branch(&mut self, branch: &str, sha: &str) {
        self.branches.insert(branch.to_owned(), sha.to_owned());
        for pull in self.pulls.values_mut() {
            if pull.state == "open" && pull.head == branch && pull.head_repo.is_none() {
                pull.head_sha = sha.to_owned();
            }
        }
        self.write_pull_refs();
    }

    /// Points `refs/pull/<n>/head` of a hosted repository at each pull request's head commit,
    /// as GitHub keeps it (for pull requests from forks too, whose commits it copies in).
    fn write_pull_refs(&self) {
        let Some(bare) = &self.hosted else {
            return;
        };
        for pull in self.pulls.values() {
            let name = format!("refs/pull/{}/head", pull.number);
            if pull.head_sha.is_empty() || bare.resolve(&name).as_deref() == Some(&pull.head_sha) {
                continue;
            }
            if let Err(error) = bare.set_ref(&name, &pull.head_sha) {
                tracing::error!(%error, %name, "cannot write a pull request's ref");
            }
        }
    }

    /// Re-reads a hosted repository's branches (pushes move them behind the fake's back), and
    /// has open pull requests follow their heads.
    fn refresh(&mut self) {
        let Some(bare) = &self.hosted else {
            return;
        };
        match bare.branches() {
            Ok(branches) => {
                for pull in self.pulls.values_mut() {
                    if pull.state == "open" && pull.head_repo.is_none() {
                        if let Some(sha) = branches.get(&pull.head) {
                            pull.head_sha.clone_from(sha);
                        }
                    }
                }
                self.branches = branches;
                self.write_pull_refs();
            }
            Err(error) => {
                tracing::error!(%error, "cannot read the branches of a hosted repository")
            }
        }
    }

    /// Points a branch at `sha` if it currently is as `expect` says (compare-and-swap in git
    /// for a hosted repository, so a concurrent push is never lost).
    fn move_ref(&mut self, branch: &str, sha: &str, expect: Expect<'_>) -> Result<(), String> {
        match &self.hosted {
            Some(bare) => bare.update_ref(branch, sha, expect)?,
            None => {
                let current = self.branches.get(branch).map(String::as_str);
                match (expect, current) {
                    (Expect::Absent, Some(_)) => return Err("the branch exists".into()),
                    (Expect::At(old), current) if current != Some(old) => {
                        return Err("the branch moved".into());
                    }
                    _ => {}
                }
            }
        }
        self.record_branch(branch, sha);
        Ok(())
    }

    /// Deletes a branch; false when there is none.
    fn delete_branch(&mut self, branch: &str) -> bool {
        if let Some(bare) = &self.hosted {
            if bare.delete_ref(branch).is_err() {
                return false;
            }
        }
        self.branches.remove(branch).is_some()
    }

    /// Commits a change of one file onto `branch` of a hosted repository (made from the default
    /// branch when missing) as [`PERSONAL_LOGIN`]: `content` maps the file's current contents, if
    /// any, to its new ones. Retried when a push moves the branch meanwhile.
    fn commit_hosted_file(
        &mut self,
        branch: &str,
        path: &str,
        message: &str,
        content: impl Fn(Option<Vec<u8>>) -> Vec<u8>,
    ) -> Result<String, String> {
        let bare = self.hosted.clone().ok_or("not hosted")?;
        let who = identity(PERSONAL_LOGIN);
        let mut last_error = String::new();
        for _ in 0..5 {
            let current = bare.resolve(&format!("refs/heads/{branch}"));
            let parent = match &current {
                Some(sha) => sha.clone(),
                None => bare
                    .resolve(&format!("refs/heads/{}", self.default_branch))
                    .ok_or("the default branch is missing")?,
            };
            let tree = bare.tree_with_file(&parent, path, &content(bare.blob_at(&parent, path)))?;
            let sha = bare.commit_tree(&tree, &[parent], message, &who, &who)?;
            let expect = current.as_deref().map_or(Expect::Absent, Expect::At);
            match self.move_ref(branch, &sha, expect) {
                Ok(()) => return Ok(sha),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// A commit with its author and committer; fake commits are the bot's.
    fn commit_info(&self, sha: &str) -> Option<GitCommitInfo> {
        match &self.hosted {
            Some(bare) => bare.commit(sha),
            None => self.commits.get(sha).map(fake_commit_info),
        }
    }

    fn commit(&self, sha: &str) -> Option<Commit> {
        match &self.hosted {
            Some(bare) => bare.commit(sha).map(|c| Commit {
                sha: c.sha,
                tree: c.tree,
                parents: c.parents,
                message: c.message,
                created_at: c.committer.time,
            }),
            None => self.commits.get(sha).cloned(),
        }
    }

    fn has_commit(&self, sha: &str) -> bool {
        match &self.hosted {
            Some(bare) => bare.object_type(sha).as_deref() == Some("commit"),
            None => self.commits.contains_key(sha),
        }
    }

    fn has_tree(&self, tree: &str) -> bool {
        match &self.hosted {
            Some(bare) => bare.object_type(tree).as_deref() == Some("tree"),
            None => self.commits.values().any(|c| c.tree == tree),
        }
    }

    /// The commit a branch (`name` or `refs/heads/name`) or commit id names.
    fn resolve(&self, rev: &str) -> Option<String> {
        let branch = rev.strip_prefix("refs/heads/").unwrap_or(rev);
        if let Some(sha) = self.branches.get(branch) {
            return Some(sha.clone());
        }
        match &self.hosted {
            Some(bare) if is_oid_prefix(rev) => bare.resolve(rev),
            Some(_) => None,
            None => self.commits.contains_key(rev).then(|| rev.to_owned()),
        }
    }

    /// The commits reachable from `sha`, newest first.
    fn history(&self, sha: &str) -> Vec<GitCommitInfo> {
        if let Some(bare) = &self.hosted {
            return bare.commits(&bare.rev_list(sha));
        }
        let mut found = Vec::new();
        let mut queue = VecDeque::from([sha]);
        let mut seen = HashSet::new();
        while let Some(sha) = queue.pop_front() {
            if !seen.insert(sha) {
                continue;
            }
            if let Some(commit) = self.commits.get(sha) {
                found.push(fake_commit_info(commit));
                queue.extend(commit.parents.iter().map(String::as_str));
            }
        }
        found.sort_by_key(|c| std::cmp::Reverse(c.committer.time));
        found
    }

    /// Whether `ancestor` is reachable from `descendant` by parent links (or is it).
    fn is_ancestor(&self, ancestor: &str, descendant: &str) -> bool {
        if let Some(bare) = &self.hosted {
            return bare.is_ancestor(ancestor, descendant);
        }
        let mut queue = VecDeque::from([descendant]);
        let mut seen = HashSet::new();
        while let Some(sha) = queue.pop_front() {
            if sha == ancestor {
                return true;
            }
            if seen.insert(sha) {
                if let Some(commit) = self.commits.get(sha) {
                    queue.extend(commit.parents.iter().map(String::as_str));
                }
            }
        }
        false
    }

    fn comment(&self, id: u64) -> Option<&Comment> {
        self.comments.iter().find(|c| c.id == id)
    }

    fn deployment(&self, id: u64) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.id == id)
    }

    fn deployment_mut(&mut self, id: u64) -> Option<&mut Deployment> {
        self.deployments.iter_mut().find(|d| d.id == id)
    }

    /// The collaborator permission answer for `login`.
    fn permission_json(&self, api: &str, login: &str) -> Value {
        let role = self
            .permissions
            .get(&login.to_lowercase())
            .map_or("none", String::as_str);
        let permission = legacy_permission(role).unwrap_or("none");
        let mut user = user_json(api, login);
        user["permissions"] = json!({
            "admin": role == "admin",
            "maintain": matches!(role, "admin" | "maintain"),
            "push": matches!(role, "admin" | "maintain" | "write"),
            "triage": matches!(role, "admin" | "maintain" | "write" | "triage"),
            "pull": role != "none",
        });
        user["role_name"] = json!(role);
        json!({ "permission": permission, "role_name": role, "user": user })
    }

    fn api_url(&self, api: &str) -> String {
        format!("{api}/repos/{}", self.full_name())
    }

    fn html_url(&self) -> String {
        format!("https://github.com/{}", self.full_name())
    }

    fn json(&self, api: &str) -> Value {
        let url = self.api_url(api);
        let full = self.full_name();
        json!({
            "id": self.id,
            "node_id": node_id("R", self.id),
            "name": self.name,
            "full_name": full,
            "owner": user_json(api, &self.owner),
            "private": self.private,
            "visibility": if self.private { "private" } else { "public" },
            "fork": false,
            "archived": false,
            "html_url": self.html_url(),
            "url": url,
            "clone_url": self
                .clone_url
                .clone()
                .unwrap_or_else(|| format!("{api}/git/{full}.git")),
            "default_branch": self.default_branch,
            "pulls_url": format!("{url}/pulls{{/number}}"),
            "issues_url": format!("{url}/issues{{/number}}"),
            "deployments_url": format!("{url}/deployments"),
        })
    }

    fn ref_json(&self, api: &str, branch: &str, sha: &str) -> Value {
        let url = self.api_url(api);
        json!({
            "ref": format!("refs/heads/{branch}"),
            "node_id": node_id("REF", self.id),
            "url": format!("{url}/git/refs/heads/{branch}"),
            "object": {
                "sha": sha,
                "type": "commit",
                "url": format!("{url}/git/commits/{sha}"),
            },
        })
    }

    /// A commit as the Git Data API answers it.
    fn commit_json(&self, api: &str, commit: &GitCommitInfo) -> Value {
        let url = self.api_url(api);
        let person =
            |s: &GitSignature| json!({ "name": s.name, "email": s.email, "date": rfc3339(s.time) });
        let parents: Vec<Value> = commit
            .parents
            .iter()
            .map(|p| {
                json!({
                    "sha": p,
                    "url": format!("{url}/git/commits/{p}"),
                    "html_url": format!("{}/commit/{p}", self.html_url()),
                })
            })
            .collect();
        json!({
            "sha": commit.sha,
            "node_id": node_id("C", self.id),
            "url": format!("{url}/git/commits/{}", commit.sha),
            "html_url": format!("{}/commit/{}", self.html_url(), commit.sha),
            "author": person(&commit.author),
            "committer": person(&commit.committer),
            "message": commit.message,
            "tree": { "sha": commit.tree, "url": format!("{url}/git/trees/{}", commit.tree) },
            "parents": parents,
            "verification": {
                "verified": false,
                "reason": "unsigned",
                "signature": null,
                "payload": null,
                "verified_at": null,
            },
        })
    }

    /// A commit as the REST commits endpoints answer it.
    fn rest_commit_json(&self, api: &str, commit: &GitCommitInfo) -> Value {
        let url = self.api_url(api);
        let html = self.html_url();
        let sha = &commit.sha;
        // GitHub links a commit to an account by e-mail; the fake knows only noreply ones,
        // `<id>+<login>@users.noreply.github.com`.
        let account = |s: &GitSignature| {
            s.email
                .strip_suffix("@users.noreply.github.com")
                .and_then(|local| local.split_once('+'))
                .map_or(Value::Null, |(_, login)| user_json(api, login))
        };
        let mut git = self.commit_json(api, commit);
        if let Some(git) = git.as_object_mut() {
            for key in ["sha", "node_id", "html_url", "parents"] {
                git.remove(key);
            }
            git.insert("comment_count".into(), json!(0));
        }
        let parents: Vec<Value> = commit
            .parents
            .iter()
            .map(|p| {
                json!({
                    "sha": p,
                    "url": format!("{url}/commits/{p}"),
                    "html_url": format!("{html}/commit/{p}"),
                })
            })
            .collect();
        json!({
            "sha": sha,
            "node_id": node_id("C", self.id),
            "url": format!("{url}/commits/{sha}"),
            "html_url": format!("{html}/commit/{sha}"),
            "comments_url": format!("{url}/commits/{sha}/comments"),
            "commit": git,
            "author": account(&commit.author),
            "committer": account(&commit.committer),
            "parents": parents,
        })
    }

    fn branch_json(&self, api: &str, branch: &str, sha: &str) -> Value {
        json!({
            "label": format!("{}:{branch}", self.owner),
            "ref": branch,
            "sha": sha,
            "user": user_json(api, &self.owner),
            "repo": self.json(api),
        })
    }

    fn pull_json(&self, api: &str, pull: &Pull) -> Value {
        // (GitHub's `head` of a fork names the fork's owner and repository.)
        let url = self.api_url(api);
        let n = pull.number;
        let html = format!("{}/pull/{n}", self.html_url());
        let base_sha = self.branches.get(&pull.base).map_or("", String::as_str);
        json!({
            "url": format!("{url}/pulls/{n}"),
            "id": pull.id,
            "node_id": node_id("PR", pull.id),
            "html_url": html,
            "diff_url": format!("{html}.diff"),
            "patch_url": format!("{html}.patch"),
            "issue_url": format!("{url}/issues/{n}"),
            "comments_url": format!("{url}/issues/{n}/comments"),
            "number": n,
            "state": pull.state,
            "locked": false,
            "title": pull.title,
            "user": user_json(api, &pull.user),
            "body": pull.body,
            "labels": [],
            "created_at": rfc3339(pull.created_at),
            "updated_at": rfc3339(pull.updated_at),
            "closed_at": pull.closed_at.map(rfc3339),
            "merged_at": pull.closed_at.filter(|_| pull.merged).map(rfc3339),
            "merged": pull.merged,
            "draft": pull.draft,
            "head": match &pull.head_repo {
                None => self.branch_json(api, &pull.head, &pull.head_sha),
                Some(fork) => fork_branch_json(api, fork, &pull.head, &pull.head_sha),
            },
            "base": self.branch_json(api, &pull.base, base_sha),
            "author_association": "NONE",
        })
    }

    fn issue_json(&self, api: &str, number: u64) -> Option<Value> {
        let url = self.api_url(api);
        let comments = self
            .comments
            .iter()
            .filter(|c| c.issue_number == number)
            .count();
        let mut issue = json!({
            "url": format!("{url}/issues/{number}"),
            "repository_url": url,
            "labels_url": format!("{url}/issues/{number}/labels{{/name}}"),
            "comments_url": format!("{url}/issues/{number}/comments"),
            "events_url": format!("{url}/issues/{number}/events"),
            "number": number,
            "labels": [],
            "assignee": null,
            "assignees": [],
            "locked": false,
            "comments": comments,
            "author_association": "NONE",
        });
        let (id, title, body, state, user, created, updated, closed, html) =
            match (self.issues.get(&number), self.pulls.get(&number)) {
                (Some(i), _) => (
                    i.id,
                    &i.title,
                    &i.body,
                    &i.state,
                    &i.user,
                    i.created_at,
                    i.created_at,
                    None,
                    format!("{}/issues/{number}", self.html_url()),
                ),
                (None, Some(p)) => {
                    let html = format!("{}/pull/{number}", self.html_url());
                    issue["pull_request"] = json!({
                        "url": format!("{url}/pulls/{number}"),
                        "html_url": html,
                        "diff_url": format!("{html}.diff"),
                        "patch_url": format!("{html}.patch"),
                        "merged_at": p.closed_at.filter(|_| p.merged).map(rfc3339),
                    });
                    issue["draft"] = json!(p.draft);
                    (
                        p.id,
                        &p.title,
                        &p.body,
                        &p.state,
                        &p.user,
                        p.created_at,
                        p.updated_at,
                        p.closed_at,
                        html,
                    )
                }
                (None, None) => return None,
            };
        issue["id"] = json!(id);
        issue["node_id"] = json!(node_id("I", id));
        issue["html_url"] = json!(html);
        issue["title"] = json!(title);
        issue["body"] = json!(body);
        issue["state"] = json!(state);
        issue["user"] = user_json(api, user);
        issue["created_at"] = json!(rfc3339(created));
        issue["updated_at"] = json!(rfc3339(updated));
        issue["closed_at"] = json!(closed.map(rfc3339));
        Some(issue)
    }

    fn comment_json(&self, api: &str, comment: &Comment) -> Value {
        let url = self.api_url(api);
        let kind = if self.pulls.contains_key(&comment.issue_number) {
            "pull"
        } else {
            "issues"
        };
        json!({
            "id": comment.id,
            "node_id": node_id("IC", comment.id),
            "url": format!("{url}/issues/comments/{}", comment.id),
            "html_url": format!(
                "{}/{kind}/{}#issuecomment-{}",
                self.html_url(),
                comment.issue_number,
                comment.id
            ),
            "issue_url": format!("{url}/issues/{}", comment.issue_number),
            "body": comment.body,
            "user": user_json(api, &comment.user),
            "created_at": rfc3339(comment.created_at),
            "updated_at": rfc3339(comment.updated_at),
            "author_association": "NONE",
        })
    }

    fn deployment_json(&self, api: &str, d: &Deployment) -> Value {
        let url = format!("{}/deployments/{}", self.api_url(api), d.id);
        json!({
            "url": url,
            "id": d.id,
            "node_id": node_id("DE", d.id),
            "sha": d.sha,
            "ref": d.git_ref,
            "task": d.task,
            "payload": d.payload,
            "original_environment": d.environment,
            "environment": d.environment,
            "description": d.description,
            "creator": user_json(api, &d.creator),
            "created_at": rfc3339(d.created_at),
            "updated_at": rfc3339(d.statuses.last().map_or(d.created_at, |s| s.created_at)),
            "statuses_url": format!("{url}/statuses"),
            "repository_url": self.api_url(api),
            "transient_environment": d.transient_environment,
            "production_environment": d.production_environment,
        })
    }

    fn deployment_status_json(&self, api: &str, d: &Deployment, s: &DeploymentStatus) -> Value {
        let deployment_url = format!("{}/deployments/{}", self.api_url(api), d.id);
        json!({
            "url": format!("{deployment_url}/statuses/{}", s.id),
            "id": s.id,
            "node_id": node_id("DES", s.id),
            "state": s.state,
            "creator": user_json(api, &s.creator),
            "description": s.description.clone().unwrap_or_default(),
            "environment": d.environment,
            "target_url": s.log_url.clone().unwrap_or_default(),
            "log_url": s.log_url.clone().unwrap_or_default(),
            "environment_url": s.environment_url.clone().unwrap_or_default(),
            "created_at": rfc3339(s.created_at),
            "updated_at": rfc3339(s.created_at),
            "deployment_url": deployment_url,
            "repository_url": self.api_url(api),
        })
    }
}

/// A fake commit as git would describe it: made by the bot when the fake stored it.
fn fake_commit_info(commit: &Commit) -> GitCommitInfo {
    let bot = GitSignature {
        name: BOT_LOGIN.to_owned(),
        email: noreply_email(BOT_LOGIN),
        time: commit.created_at,
    };
    GitCommitInfo {
        sha: commit.sha.clone(),
        tree: commit.tree.clone(),
        parents: commit.parents.clone(),
        subject: commit.message.lines().next().unwrap_or_default().to_owned(),
        message: commit.message.clone(),
        author: bot.clone(),
        committer: bot,
    }
}

/// GitHub's noreply address of an account.
fn noreply_email(login: &str) -> String {
    format!("{}+{login}@users.noreply.github.com", login_id(login))
}

/// How an account signs the commits it makes, dated now.
fn identity(login: &str) -> Identity {
    Identity {
        name: login.to_owned(),
        email: noreply_email(login),
        date: None,
    }
}

/// An `author` or `committer` object of a Git Data API request, if it has a name and an e-mail.
fn identity_from(value: &Value) -> Option<Identity> {
    Some(Identity {
        name: value["name"].as_str()?.to_owned(),
        email: value["email"].as_str()?.to_owned(),
        date: value["date"].as_str().map(str::to_owned),
    })
}

/// A branch name of a hosted repository, else any revision git understands.
fn resolve_rev(bare: &Bare, rev: &str) -> Option<String> {
    bare.resolve(&format!("refs/heads/{rev}"))
        .or_else(|| bare.resolve(rev))
}

/// Where hosted repositories live under the fake's directory (`GIT_PROJECT_ROOT`).
fn repos_dir(root: &std::path::Path) -> PathBuf {
    root.join("repos")
}

/// The empty `HOME` git runs with, so no user configuration applies.
fn home_dir(root: &std::path::Path) -> PathBuf {
    root.join("home")
}

/// What a git request needs once it is allowed.
#[derive(Debug)]
struct GitPlan {
    root: PathBuf,
    home: PathBuf,
    path_info: String,
    login: &'static str,
    rules: Vec<(&'static str, String)>,
}

/// Serves git's smart HTTP protocol for hosted repositories, through `git http-backend`; the
/// backend runs outside the fake's critical section, and a push's new refs are read back after.
async fn serve_git(Shared(fake): Shared<FakeGitHub>, request: axum::extract::Request) -> Response {
    let latency = fake.state().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return (StatusCode::BAD_REQUEST, "unreadable request body\n").into_response();
    };
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let target = parse_git_path(&path);
    let service = target
        .as_ref()
        .and_then(|(_, tail)| git_service(tail, &query));
    let push = service.as_deref() == Some("git-receive-pack");
    let mut record = GitRequest {
        method: parts.method.as_str().to_owned(),
        path,
        repo: target.as_ref().map(|(key, _)| key.clone()),
        service,
        auth: AuthKind::None,
        content_encoding: parts
            .headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        authorized: false,
        status: 0,
    };
    let token = basic_token(&parts.headers);
    let plan = fake
        .state()
        .plan_git(&mut record, target, token.as_deref(), push);
    let response = match plan {
        Err(refusal) => *refusal,
        Ok(plan) => {
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            crate::git::http_backend(CgiRequest {
                home: plan.home,
                root: plan.root,
                path_info: plan.path_info,
                method: record.method.clone(),
                query,
                content_type: header("content-type"),
                content_encoding: header("content-encoding"),
                git_protocol: header("git-protocol"),
                remote_user: plan.login.to_owned(),
                rules: plan.rules,
                body,
            })
            .await
        }
    };
    record.status = response.status().as_u16();
    let mut state = fake.state();
    if push && record.authorized {
        if let Some(repo) = record.repo.as_ref().and_then(|k| state.repos.get_mut(k)) {
            repo.refresh();
        }
    }
    state.git_requests.push(record);
    response
}

/// `/git/<owner>/<name>[.git]/<tail>` → (`owner/name` in lower case, tail).
fn parse_git_path(path: &str) -> Option<(String, String)> {
    let mut parts = path.strip_prefix("/git/")?.splitn(3, '/');
    let owner = percent_decode(parts.next()?);
    let name = percent_decode(parts.next()?);
    let name = name.strip_suffix(".git").unwrap_or(&name);
    let tail = parts.next().unwrap_or_default();
    let plain = |s: &str| !s.is_empty() && !s.starts_with('.') && !s.contains(['/', '\\']);
    (plain(&owner) && plain(name))
        .then(|| (format!("{owner}/{name}").to_lowercase(), tail.to_owned()))
}

/// The git service a request is for, from its path or its `service` parameter.
fn git_service(tail: &str, query: &str) -> Option<String> {
    match tail {
        "git-upload-pack" | "git-receive-pack" => Some(tail.to_owned()),
        "info/refs" => query
            .split('&')
            .find_map(|pair| pair.strip_prefix("service="))
            .map(str::to_owned),
        _ => None,
    }
}

/// The token of `Authorization: Basic`: the password, or the user name when the password is
/// empty (both work with GitHub).
fn basic_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
    let token = if password.is_empty() { user } else { password };
    Some(token.to_owned()).filter(|t| !t.is_empty())
}

/// A plain-text refusal, which git shows its user.
fn git_refusal(status: StatusCode, message: &str) -> Response {
    let mut response = (status, format!("{message}\n")).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"GitHub\""),
        );
    }
    response
}

fn reaction_json(api: &str, r: &Reaction) -> Value {
    json!({
        "id": r.id,
        "node_id": node_id("REA", r.id),
        "user": user_json(api, &r.user),
        "content": r.content,
        "created_at": rfc3339(SystemTime::now()),
    })
}

/// A user object with every field octocrab's `Author` requires.
/// `head` of a pull request from a fork: the fork's owner and repository.
fn fork_branch_json(api: &str, fork: &str, branch: &str, sha: &str) -> Value {
    let (owner, name) = fork.split_once('/').unwrap_or((fork, fork));
    json!({
        "label": format!("{owner}:{branch}"),
        "ref": branch,
        "sha": sha,
        "user": user_json(api, owner),
        "repo": {
            "name": name,
            "full_name": fork,
            "owner": user_json(api, owner),
            "fork": true,
            "private": false,
            "url": format!("{api}/repos/{fork}"),
        },
    })
}

fn user_json(api: &str, login: &str) -> Value {
    let id = login_id(login);
    let is_bot = login.ends_with("[bot]");
    let path = login.replace('[', "%5B").replace(']', "%5D");
    let url = format!("{api}/users/{path}");
    let html_url = match login.strip_suffix("[bot]") {
        Some(app) => format!("https://github.com/apps/{app}"),
        None => format!("https://github.com/{login}"),
    };
    json!({
        "login": login,
        "id": id,
        "node_id": node_id("U", id),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "",
        "url": url,
        "html_url": html_url,
        "followers_url": format!("{url}/followers"),
        "following_url": format!("{url}/following{{/other_user}}"),
        "gists_url": format!("{url}/gists{{/gist_id}}"),
        "starred_url": format!("{url}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{url}/subscriptions"),
        "organizations_url": format!("{url}/orgs"),
        "repos_url": format!("{url}/repos"),
        "events_url": format!("{url}/events{{/privacy}}"),
        "received_events_url": format!("{url}/received_events"),
        "type": if is_bot { "Bot" } else { "User" },
        "site_admin": false,
    })
}

/// A stable numeric id per login (FNV-1a), so the same user always has the same id.
fn login_id(login: &str) -> u64 {
    let hash = login
        .to_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    hash % 100_000_000 + 1
}

fn node_id(kind: &str, id: u64) -> String {
    format!("{kind}_kgDO{id:08X}")
}

fn random_sha() -> String {
    hex::encode(rand::random::<[u8; 20]>())
}

fn parse_query(uri: &Uri) -> BTreeMap<String, String> {
    Query::<BTreeMap<String, String>>::try_from_uri(uri)
        .map(|Query(q)| q)
        .unwrap_or_default()
}

/// Decodes `%XX` escapes in one path segment (so `%2F` in a branch name becomes `/`).
pub(crate) fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_pair = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex_pair) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode_query(query: &BTreeMap<String, String>) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    query
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Answers an injected failure with `body` (a 403 here is a refusal; rate limits are
/// [`FakeGitHub::rate_limit_next`]).
pub(crate) fn injected_failure(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

/// GitHub's secondary limit on content-creating requests (comments, edits, reactions, PRs…)
/// by one identity in a minute.
pub const CONTENT_REQUESTS_PER_MINUTE: usize = 80;

/// How a rate-limited answer says when to try again, as GitHub's answers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// A secondary limit with `retry-after: <seconds>`.
    RetryAfter(u64),
    /// The primary limit: `x-ratelimit-remaining: 0` and `x-ratelimit-reset` this many seconds
    /// from now.
    ResetIn(u64),
    /// A secondary limit that names no time (GitHub: wait at least a minute).
    Unspecified,
}

#[derive(Debug)]
struct QueuedLimit {
    method: String,
    path_contains: String,
    status: u16,
    limit: RateLimit,
    remaining: usize,
}

/// A rate-limited answer with GitHub's status, headers and message.
fn rate_limited(status: u16, limit: RateLimit) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    let (message, doc) = match limit {
        RateLimit::ResetIn(_) => (
            "API rate limit exceeded for installation. If you reach out to GitHub Support for help, please include the request ID.",
            "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        ),
        RateLimit::RetryAfter(_) | RateLimit::Unspecified => (
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.",
            "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
        ),
    };
    let mut response = (
        status,
        Json(json!({ "message": message, "documentation_url": doc })),
    )
        .into_response();
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        headers.insert(name, HeaderValue::from_str(&value).expect("a header value"));
    };
    match limit {
        RateLimit::RetryAfter(secs) => set("retry-after", secs.to_string()),
        RateLimit::ResetIn(secs) => {
            let reset = unix_seconds(SystemTime::now() + Duration::from_secs(secs));
            set("x-ratelimit-limit", "5000".into());
            set("x-ratelimit-remaining", "0".into());
            set("x-ratelimit-used", "5000".into());
            set("x-ratelimit-reset", reset.to_string());
            set("x-ratelimit-resource", "core".into());
        }
        RateLimit::Unspecified => {}
    }
    response
}

/// Failures queued with `fail_next`, shared by the fakes.
#[derive(Debug, Default)]
pub(crate) struct Faults(Vec<Fault>);

#[derive(Debug)]
pub(crate) struct Fault {
    method: String,
    path_contains: String,
    status: u16,
    remaining: usize,
}

impl Fault {
    pub(crate) fn new(method: &str, path_contains: &str, status: u16, times: usize) -> Self {
        Fault {
            method: method.to_ascii_uppercase(),
            path_contains: path_contains.to_owned(),
            status,
            remaining: times,
        }
    }
}

impl Faults {
    pub(crate) fn push(&mut self, fault: Fault) {
        if fault.remaining > 0 {
            self.0.push(fault);
        }
    }

    /// The status to fail this request with, if a queued failure matches; uses it up.
    pub(crate) fn take(&mut self, method: &str, path: &str) -> Option<u16> {
        let index = self.0.iter().position(|f| {
            (f.method == "*" || f.method.eq_ignore_ascii_case(method))
                && path.contains(&f.path_contains)
        })?;
        let fault = &mut self.0[index];
        fault.remaining -= 1;
        let status = fault.status;
        if fault.remaining == 0 {
            self.0.remove(index);
        }
        Some(status)
    }
}

pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// UTC calendar fields of an instant: (year, month, day, hour, minute, second, millisecond).
pub(crate) fn utc_fields(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let millis = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis());
    let secs = unix_seconds(t);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from a day count, after Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let small = |v: i64| u32::try_from(v).unwrap_or_default();
    (
        year,
        small(month),
        small(day),
        small(rem / 3_600),
        small(rem % 3_600 / 60),
        small(rem % 60),
        millis,
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the timestamp format of GitHub's API.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = utc_fields(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_661);
        assert_eq!(rfc3339(t), "2000-02-29T01:01:01Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("claude%2F12"), "claude/12");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn maps_roles_to_legacy_permissions() {
        assert_eq!(legacy_permission("maintain"), Some("write"));
        assert_eq!(legacy_permission("triage"), Some("read"));
        assert_eq!(legacy_permission("owner"), None);
    }
}
