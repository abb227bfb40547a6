//! The REST calls of the control plane, each idempotent where a retry could repeat it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cca_domain::{BranchName, Login, RepoName};
use octocrab::Octocrab;
use serde::Deserialize;

use crate::GitHubError;

/// How long a collaborator's permission is remembered. Short, so a revoked permission stops
/// working within a minute, yet a burst of comments costs one look-up.
const PERMISSION_TTL: Duration = Duration::from_secs(60);

/// A user's role on a repository, from the collaborator permission API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Admin,
    Maintain,
    Write,
    Triage,
    Read,
    None,
}

impl Permission {
    fn parse(role_name: Option<&str>, permission: &str) -> Self {
        match role_name.unwrap_or(permission) {
            "admin" => Permission::Admin,
            "maintain" => Permission::Maintain,
            "write" | "push" => Permission::Write,
            "triage" => Permission::Triage,
            "read" | "pull" => Permission::Read,
            // Custom roles carry their base permission in `permission`.
            _ => match permission {
                "admin" => Permission::Admin,
                "write" => Permission::Write,
                "read" => Permission::Read,
                _ => Permission::None,
            },
        }
    }

    /// Write or above: may start, prompt and stop agents.
    pub fn can_write(self) -> bool {
        matches!(
            self,
            Permission::Admin | Permission::Maintain | Permission::Write
        )
    }
}

/// Cache of collaborator permissions shared by every client of one [`crate::GitHub`].
#[derive(Debug, Clone, Default)]
pub(crate) struct PermissionCache(Arc<Mutex<HashMap<PermissionKey, (Permission, Instant)>>>);

/// (repository, lower-cased login).
type PermissionKey = (String, String);

impl PermissionCache {
    fn get(&self, key: &PermissionKey) -> Option<Permission> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(_, at)| at.elapsed() < PERMISSION_TTL)
            .map(|(p, _)| *p)
    }

    fn put(&self, key: PermissionKey, p: Permission) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, at)| at.elapsed() < PERMISSION_TTL);
        map.insert(key, (p, Instant::now()));
    }
}

/// What the system needs of a repository.
#[derive(Debug, Clone, Deserialize)]
pub struct RepoInfo {
    pub full_name: String,
    pub default_branch: String,
    /// The clone URL as the API gives it (github.com, Enterprise or a test server alike).
    pub clone_url: String,
}

/// A pull request, as far as the system refers to it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRef {
    pub number: u64,
    pub html_url: String,
    /// False when GitHub refused a draft and the PR was opened ready for review.
    #[serde(default)]
    pub draft: bool,
}

/// What GitHub answers (422) when a repository's plan has no draft pull requests.
const DRAFTS_UNSUPPORTED: &str = "Draft pull requests are not supported";

/// What a PR opened ready for review, because drafts were refused, says under its body.
pub const READY_NOT_DRAFT_NOTE: &str = "> **Note:** this pull request is open for review rather than a draft because GitHub does not offer draft pull requests in this repository (private repositories on GitHub Free and Pro). The agent is still working on it: wait for its status comment to say the run finished before you merge.";

#[derive(Deserialize)]
struct PermissionAnswer {
    permission: String,
    #[serde(default)]
    role_name: Option<String>,
}

#[derive(Deserialize)]
struct RefAnswer {
    object: RefObject,
}

#[derive(Deserialize)]
struct RefObject {
    sha: String,
}

#[derive(Deserialize)]
struct CommitAnswer {
    sha: String,
    tree: TreeRef,
}

#[derive(Deserialize)]
struct TreeRef {
    sha: String,
}

#[derive(Deserialize)]
struct CommentAnswer {
    id: u64,
}

/// A check run as `GET /check-suites/{id}/check-runs` answers it.
#[derive(Debug, Deserialize)]
struct CheckRunAnswer {
    id: u64,
    name: String,
    #[serde(default)]
    conclusion: Option<String>,
    #[serde(default)]
    output: Option<CheckOutputAnswer>,
    #[serde(default)]
    app: Option<AppAnswer>,
}

#[derive(Debug, Deserialize)]
struct CheckOutputAnswer {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AppAnswer {
    #[serde(default)]
    slug: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CheckRunsAnswer {
    check_runs: Vec<CheckRunAnswer>,
}

/// The largest log read for its tail (a job log is downloaded whole).
const LOG_READ_MAX: usize = 256 * 1024;

/// The most comments of one review read (five pages of GitHub's largest).
const REVIEW_COMMENTS_MAX: usize = 500;

/// A GitHub client with one identity (an installation token or a personal token).
#[derive(Clone)]
pub struct RepoClient {
    octo: Octocrab,
    permissions: PermissionCache,
    /// How long one call may wait in all for GitHub's rate limits.
    patience: Duration,
}

impl std::fmt::Debug for RepoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoClient").finish_non_exhaustive()
    }
}

impl RepoClient {
    pub(crate) fn new(octo: Octocrab) -> Self {
        Self {
            octo,
            permissions: PermissionCache::default(),
            patience: crate::rate::DEFAULT_PATIENCE,
        }
    }

    pub(crate) fn with_patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    pub(crate) fn with_permissions(mut self, cache: PermissionCache) -> Self {
        self.permissions = cache;
        self
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, route: &str) -> Result<T, GitHubError> {
        crate::rate::send(&self.octo, http::Method::GET, route, None, self.patience).await
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        route: &str,
        body: &serde_json::Value,
    ) -> Result<T, GitHubError> {
        crate::rate::send(
            &self.octo,
            http::Method::POST,
            route,
            Some(body),
            self.patience,
        )
        .await
    }

    /// The repository's default branch and clone URL.
    pub async fn repo(&self, repo: &RepoName) -> Result<RepoInfo, GitHubError> {
        self.get(&format!("/repos/{repo}")).await
    }

    /// A file's text on the default branch (`GET /contents/{path}` without a ref), `None`
    /// when the branch has no such file. Larger files (over 1 MB GitHub sends no content) and
    /// other encodings count as absent.
    pub async fn default_branch_file(
        &self,
        repo: &RepoName,
        path: &str,
    ) -> Result<Option<String>, GitHubError> {
        #[derive(Deserialize)]
        struct Content {
            #[serde(rename = "type")]
            kind: String,
            content: Option<String>,
            encoding: Option<String>,
        }
        let content = match self
            .get::<Content>(&format!("/repos/{repo}/contents/{path}"))
            .await
        {
            Ok(c) => c,
            Err(e) if e.status() == Some(404) => return Ok(None),
            Err(e) => return Err(e),
        };
        if content.kind != "file" || content.encoding.as_deref() != Some("base64") {
            return Ok(None);
        }
        let packed: String = content
            .content
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        use base64::Engine as _;
        Ok(base64::engine::general_purpose::STANDARD
            .decode(packed)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok()))
    }

    /// The user's role on the repository (cached for a minute).
    pub async fn permission(
        &self,
        repo: &RepoName,
        user: &Login,
    ) -> Result<Permission, GitHubError> {
        let key = (repo.as_str().to_owned(), user.as_str().to_ascii_lowercase());
        if let Some(p) = self.permissions.get(&key) {
            return Ok(p);
        }
        let route = format!("/repos/{repo}/collaborators/{user}/permission");
        let p = match self.get::<PermissionAnswer>(&route).await {
            Ok(a) => Permission::parse(a.role_name.as_deref(), &a.permission),
            // Not a collaborator (or not a user at all).
            Err(e) if e.status() == Some(404) => Permission::None,
            Err(e) => return Err(e),
        };
        self.permissions.put(key, p);
        Ok(p)
    }

    /// The head commit of a branch, if the branch exists.
    pub async fn branch_head(
        &self,
        repo: &RepoName,
        branch: &str,
    ) -> Result<Option<String>, GitHubError> {
        match self
            .get::<RefAnswer>(&format!("/repos/{repo}/git/ref/heads/{branch}"))
            .await
        {
            Ok(r) => Ok(Some(r.object.sha)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes `branch` exist, starting with one empty commit on top of `base`, made with the Git
    /// Data API so nothing is added to the user's tree. A branch that exists already is reused
    /// as it is (a retry, or a relaunch). Returns the branch head.
    pub async fn ensure_branch(
        &self,
        repo: &RepoName,
        base: &str,
        branch: &BranchName,
        message: &str,
    ) -> Result<String, GitHubError> {
        if let Some(sha) = self.branch_head(repo, branch.as_str()).await? {
            return Ok(sha);
        }
        let base_sha = self
            .branch_head(repo, base)
            .await?
            .ok_or_else(|| GitHubError::Api {
                route: format!("/repos/{repo}/git/ref/heads/{base}"),
                status: 404,
                message: format!("base branch {base} does not exist"),
            })?;
        let base_commit: CommitAnswer = self
            .get(&format!("/repos/{repo}/git/commits/{base_sha}"))
            .await?;
        let commit: CommitAnswer = self
            .post(
                &format!("/repos/{repo}/git/commits"),
                &serde_json::json!({
                    "message": message,
                    "tree": base_commit.tree.sha,
                    "parents": [base_commit.sha],
                }),
            )
            .await?;
        let route = format!("/repos/{repo}/git/refs");
        let body = serde_json::json!({ "ref": format!("refs/heads/{branch}"), "sha": commit.sha });
        match self.post::<serde_json::Value>(&route, &body).await {
            Ok(_) => Ok(commit.sha),
            // Made concurrently by another delivery: use that one (our commit stays unreferenced).
            Err(e) if e.status() == Some(422) => {
                self.branch_head(repo, branch.as_str()).await?.ok_or(e)
            }
            Err(e) => Err(e),
        }
    }

    /// The open PR from `head`, opened as a draft if there is none.
    pub async fn ensure_draft_pr(
        &self,
        repo: &RepoName,
        head: &BranchName,
        base: &str,
        title: &str,
        body: &str,
    ) -> Result<PullRef, GitHubError> {
        if let Some(pr) = self.open_pr_for(repo, head).await? {
            return Ok(pr);
        }
        let route = format!("/repos/{repo}/pulls");
        let req = serde_json::json!({
            "title": title, "head": head.as_str(), "base": base, "body": body, "draft": true,
        });
        match self.post::<PullRef>(&route, &req).await {
            Ok(pr) => Ok(pr),
            Err(e) if e.status() == Some(422) => {
                if let Some(pr) = self.open_pr_for(repo, head).await? {
                    return Ok(pr);
                }
                if !e.to_string().contains(DRAFTS_UNSUPPORTED) {
                    return Err(e);
                }
                tracing::info!(%repo, "GitHub refuses draft pull requests here; opening a ready one");
                let req = serde_json::json!({
                    "title": title, "head": head.as_str(), "base": base,
                    "body": format!("{body}\n\n{READY_NOT_DRAFT_NOTE}"), "draft": false,
                });
                match self.post::<PullRef>(&route, &req).await {
                    Ok(pr) => Ok(pr),
                    Err(e) if e.status() == Some(422) => {
                        self.open_pr_for(repo, head).await?.ok_or(e)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn open_pr_for(
        &self,
        repo: &RepoName,
        head: &BranchName,
    ) -> Result<Option<PullRef>, GitHubError> {
        let route = format!(
            "/repos/{repo}/pulls?state=open&head={}:{}",
            repo.owner(),
            head
        );
        let list: Vec<PullRef> = self.get(&route).await?;
        Ok(list.into_iter().next())
    }

    /// Posts a comment on an issue or PR; returns its id.
    pub async fn comment(
        &self,
        repo: &RepoName,
        number: u64,
        body: &str,
    ) -> Result<u64, GitHubError> {
        let route = format!("/repos/{repo}/issues/{number}/comments");
        let c: CommentAnswer = self
            .post(&route, &serde_json::json!({ "body": body }))
            .await?;
        Ok(c.id)
    }
}

impl RepoClient {
    async fn patch<T: serde::de::DeserializeOwned>(
        &self,
        route: &str,
        body: &serde_json::Value,
    ) -> Result<T, GitHubError> {
        crate::rate::send(
            &self.octo,
            http::Method::PATCH,
            route,
            Some(body),
            self.patience,
        )
        .await
    }

    /// Makes a label exist (created with `color` and `description` when missing, an existing
    /// one is left as it is); true when it was created.
    pub async fn ensure_label(
        &self,
        repo: &RepoName,
        name: &str,
        color: &str,
        description: &str,
    ) -> Result<bool, GitHubError> {
        let route = format!("/repos/{repo}/labels");
        let one = format!("{route}/{}", path_segment(name));
        match self.get::<serde_json::Value>(&one).await {
            Ok(_) => return Ok(false),
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(e),
        }
        let body = serde_json::json!({ "name": name, "color": color, "description": description });
        match self.post::<serde_json::Value>(&route, &body).await {
            Ok(_) => Ok(true),
            // Made meanwhile (`already_exists`): the one GitHub has now is kept. Any other
            // validation failure is an error.
            Err(e) if e.status() == Some(422) => match self.get::<serde_json::Value>(&one).await {
                Ok(_) => Ok(false),
                Err(_) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// An issue's title and body (the prompt of a session whose record has none).
    pub async fn issue(&self, repo: &RepoName, number: u64) -> Result<IssueInfo, GitHubError> {
        self.get(&format!("/repos/{repo}/issues/{number}")).await
    }

    /// A pull request's head branch and commit.
    pub async fn pull(&self, repo: &RepoName, number: u64) -> Result<PullInfo, GitHubError> {
        self.get(&format!("/repos/{repo}/pulls/{number}")).await
    }

    /// The comments on the diff submitted with review `review_id` of PR `pr`, oldest first (at
    /// most [`REVIEW_COMMENTS_MAX`]). A comment whose author GitHub no longer names (a deleted
    /// account) is left out.
    pub async fn review_comments(
        &self,
        repo: &RepoName,
        pr: u64,
        review_id: u64,
    ) -> Result<Vec<cca_domain::event::ReviewComment>, GitHubError> {
        let mut out = Vec::new();
        for page in 1..=REVIEW_COMMENTS_MAX / 100 {
            let route = format!(
                "/repos/{repo}/pulls/{pr}/reviews/{review_id}/comments?per_page=100&page={page}"
            );
            let list: Vec<cca_domain::event::ApiReviewComment> = self.get(&route).await?;
            let last = list.len() < 100;
            // A comment whose author GitHub no longer names (a deleted account) is left out.
            out.extend(list.into_iter().filter_map(|c| c.into_comment().ok()));
            if last {
                break;
            }
        }
        Ok(out)
    }

    /// The latest check runs of suite `suite_id` (at most 100), without their logs.
    pub async fn check_runs(
        &self,
        repo: &RepoName,
        suite_id: u64,
    ) -> Result<Vec<cca_domain::event::CheckRun>, GitHubError> {
        let route =
            format!("/repos/{repo}/check-suites/{suite_id}/check-runs?filter=latest&per_page=100");
        let answer: CheckRunsAnswer = self.get(&route).await?;
        Ok(answer
            .check_runs
            .into_iter()
            .map(|r| {
                let output = r.output.unwrap_or(CheckOutputAnswer {
                    title: None,
                    summary: None,
                    text: None,
                });
                cca_domain::event::CheckRun {
                    id: r.id,
                    name: r.name,
                    conclusion: r.conclusion.unwrap_or_default().to_ascii_lowercase(),
                    app: r.app.and_then(|a| a.slug),
                    title: output.title,
                    summary: output.summary,
                    text: output.text,
                    log_tail: None,
                }
            })
            .collect())
    }

    /// Whether every check suite on commit `sha` has completed without failing (none still
    /// running, none failed): only then do "the checks pass".
    pub async fn checks_settled_green(
        &self,
        repo: &RepoName,
        sha: &str,
    ) -> Result<bool, GitHubError> {
        #[derive(Deserialize)]
        struct Suite {
            #[serde(default)]
            status: Option<String>,
            #[serde(default)]
            conclusion: Option<String>,
        }
        #[derive(Deserialize)]
        struct Suites {
            check_suites: Vec<Suite>,
        }
        let route = format!("/repos/{repo}/commits/{sha}/check-suites?per_page=100");
        let answer: Suites = self.get(&route).await?;
        Ok(answer.check_suites.iter().all(|s| {
            s.status.as_deref() == Some("completed")
                && !matches!(
                    s.conclusion.as_deref(),
                    Some("failure" | "timed_out" | "startup_failure" | "action_required")
                )
        }))
    }

    /// The last `max_lines` lines of GitHub Actions job `job_id`'s log (a check run of
    /// `github-actions` has its job's id), or `None` when GitHub keeps no log of it (expired,
    /// or not an Actions job). GitHub answers with a redirect to a short-lived download URL,
    /// which is fetched without the installation's token.
    pub async fn job_log_tail(
        &self,
        repo: &RepoName,
        job_id: u64,
        max_lines: usize,
    ) -> Result<Option<String>, GitHubError> {
        let route = format!("/repos/{repo}/actions/jobs/{job_id}/logs");
        let transport = |message: String| GitHubError::Transport {
            route: route.clone(),
            message,
        };
        let answer = self
            .octo
            ._get(&route)
            .await
            .map_err(|e| GitHubError::from_octocrab(&route, e))?;
        let status = answer.status();
        let text = if status.is_redirection() {
            let location = answer
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| transport("a redirect without a location".into()))?
                .to_owned();
            let download = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| transport(e.to_string()))?
                .get(&location)
                .send()
                .await
                .map_err(|e| transport(format!("downloading the log: {e}")))?;
            if !download.status().is_success() {
                return Ok(None);
            }
            // Only the end is wanted: read at most LOG_READ_MAX, keeping the last bytes.
            let mut download = download;
            let mut kept: Vec<u8> = Vec::new();
            while let Some(chunk) = download
                .chunk()
                .await
                .map_err(|e| transport(format!("downloading the log: {e}")))?
            {
                kept.extend_from_slice(&chunk);
                if kept.len() > LOG_READ_MAX {
                    kept.drain(..kept.len() - LOG_READ_MAX);
                }
            }
            String::from_utf8_lossy(&kept).into_owned()
        } else if status.is_success() {
            self.octo
                .body_to_string(answer)
                .await
                .map_err(|e| GitHubError::from_octocrab(&route, e))?
        } else if matches!(status.as_u16(), 404 | 410) {
            return Ok(None);
        } else {
            return match octocrab::map_github_error(answer).await {
                Err(e) => Err(GitHubError::from_octocrab(&route, e)),
                Ok(_) => Err(transport(format!("answered {status}"))),
            };
        };
        let lines: Vec<&str> = text.lines().collect();
        Ok(Some(
            lines[lines.len().saturating_sub(max_lines)..].join("\n"),
        ))
    }

    /// Review `review_id` of PR `pr`: its state and body (the author's login as GitHub gives it).
    pub async fn review(
        &self,
        repo: &RepoName,
        pr: u64,
        review_id: u64,
    ) -> Result<cca_domain::event::Review, GitHubError> {
        let route = format!("/repos/{repo}/pulls/{pr}/reviews/{review_id}");
        let r: cca_domain::event::ApiReview = self.get(&route).await?;
        r.into_review().map_err(|e| GitHubError::Transport {
            route,
            message: e.to_string(),
        })
    }

    /// Replies in the review thread that `comment_id` heads (GitHub accepts only a thread's
    /// first comment here); returns the reply's id.
    pub async fn reply_in_thread(
        &self,
        repo: &RepoName,
        pr: u64,
        comment_id: u64,
        body: &str,
    ) -> Result<u64, GitHubError> {
        let route = format!("/repos/{repo}/pulls/{pr}/comments/{comment_id}/replies");
        let c: CommentAnswer = self
            .post(&route, &serde_json::json!({ "body": body }))
            .await?;
        Ok(c.id)
    }

    /// Replaces the body of a comment.
    pub async fn edit_comment(
        &self,
        repo: &RepoName,
        comment_id: u64,
        body: &str,
    ) -> Result<(), GitHubError> {
        let route = format!("/repos/{repo}/issues/comments/{comment_id}");
        let _: CommentAnswer = self
            .patch(&route, &serde_json::json!({ "body": body }))
            .await?;
        Ok(())
    }

    /// Adds a reaction (`eyes`, `rocket`, `+1`, …) to an issue or PR comment.
    pub async fn react(
        &self,
        repo: &RepoName,
        comment_id: u64,
        content: &str,
    ) -> Result<(), GitHubError> {
        let route = format!("/repos/{repo}/issues/comments/{comment_id}/reactions");
        let _: serde_json::Value = self
            .post(&route, &serde_json::json!({ "content": content }))
            .await?;
        Ok(())
    }

    /// Creates a deployment of `git_ref` to `environment` (no merge of the base, no status
    /// checks required: a preview shows the branch as it is); returns its id.
    pub async fn create_deployment(
        &self,
        repo: &RepoName,
        git_ref: &str,
        environment: &str,
        description: &str,
    ) -> Result<u64, GitHubError> {
        let route = format!("/repos/{repo}/deployments");
        let body = serde_json::json!({
            "ref": git_ref,
            "environment": environment,
            "description": description,
            "auto_merge": false,
            "required_contexts": [],
            "transient_environment": true,
        });
        let d: IdAnswer = self.post(&route, &body).await?;
        Ok(d.id)
    }

    /// Adds a status (`in_progress`, `success`, `failure`, `inactive`, …) to a deployment.
    pub async fn deployment_status(
        &self,
        repo: &RepoName,
        deployment_id: u64,
        state: &str,
        environment_url: Option<&str>,
        description: &str,
    ) -> Result<(), GitHubError> {
        let route = format!("/repos/{repo}/deployments/{deployment_id}/statuses");
        let mut body = serde_json::json!({ "state": state, "description": description });
        if let Some(url) = environment_url {
            body["environment_url"] = url.into();
            body["log_url"] = url.into();
        }
        let _: serde_json::Value = self.post(&route, &body).await?;
        Ok(())
    }
}

/// `s` as one path segment: every byte but the unreserved ones percent-encoded.
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An issue's text.
#[derive(Debug, Clone, Deserialize)]
pub struct IssueInfo {
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
}

/// A pull request's head.
#[derive(Debug, Clone, Deserialize)]
pub struct PullInfo {
    pub number: u64,
    pub html_url: String,
    pub head: PullHead,
    #[serde(default)]
    pub draft: bool,
    #[serde(default)]
    pub body: Option<String>,
}

impl PullInfo {
    /// Whether the PR was opened ready for review because GitHub refused a draft (its body
    /// carries [`READY_NOT_DRAFT_NOTE`]) and still is.
    pub fn ready_for_want_of_drafts(&self) -> bool {
        !self.draft
            && self
                .body
                .as_deref()
                .is_some_and(|b| b.contains(READY_NOT_DRAFT_NOTE))
    }
}

/// The branch and commit a pull request proposes.
#[derive(Debug, Clone, Deserialize)]
pub struct PullHead {
    #[serde(rename = "ref")]
    pub branch: String,
    pub sha: String,
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_map_roles() {
        assert_eq!(
            Permission::parse(Some("maintain"), "write"),
            Permission::Maintain
        );
        assert_eq!(
            Permission::parse(Some("triage"), "read"),
            Permission::Triage
        );
        assert_eq!(Permission::parse(None, "admin"), Permission::Admin);
        assert_eq!(
            Permission::parse(Some("custom-role"), "write"),
            Permission::Write
        );
        assert_eq!(Permission::parse(Some("x"), "none"), Permission::None);
        assert!(Permission::Maintain.can_write() && !Permission::Triage.can_write());
    }
}
