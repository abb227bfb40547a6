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

mod api;
mod checks;
mod faults;
mod git_http;
mod json;
mod oauth;
mod repo;
mod resources;
mod reviews;
mod time;

use self::{api::*, faults::*, git_http::*, json::*, repo::*, resources::*};
pub use crate::git::{GitCommitInfo, GitRequest, GitSignature};
pub use checks::{ACTIONS_APP, CheckRunSpec, CheckSuiteRec};
pub use faults::{CONTENT_REQUESTS_PER_MINUTE, RateLimit};
pub(crate) use faults::{Fault, Faults, injected_failure};
pub use oauth::{CLIENT_ID, CLIENT_SECRET};
pub use reviews::{DiffComment, Review, ReviewComment, two_diff_comments};
pub(crate) use time::{rfc3339, unix_seconds, utc_fields};

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

pub use crate::credential::AuthKind;

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
            reviews: Vec::new(),
            review_comments: Vec::new(),
            check_suites: Vec::new(),
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
    reviews: Vec<Review>,
    review_comments: Vec<ReviewComment>,
    check_suites: Vec<CheckSuiteRec>,
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

/// A repository request with everything its handler may touch borrowed apart.
struct RepoCtx<'a> {
    api: &'a str,
    last_id: &'a mut u64,
    permission_lookups: &'a mut usize,
    repo: &'a mut Repo,
    actor: Actor,
    req: &'a Incoming,
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
