//! The working copy: clone, commit, push, and what a run changed.
//!
//! Credentials reach git only through its environment, as an `http.<origin>.extraHeader` set with
//! `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` on each command that talks to the
//! remote: never in the remote URL, `.git/config`, a process argument or a log line. The header
//! is scoped to the clone URL's origin, so nothing else the repository points at receives it,
//! and it is built from the current token on every call, so a refreshed token is used as soon as
//! it exists.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use tokio::process::Command;

/// Longest a git command may take (a clone of a large repository included).
const GIT_TIMEOUT: Duration = Duration::from_secs(600);

/// A git command that failed.
#[derive(Debug, thiserror::Error)]
#[error("git {command} failed: {detail}")]
pub struct GitError {
    pub command: String,
    pub detail: String,
}

/// One commit, as reported on the PR.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommitInfo {
    pub sha: String,
    pub subject: String,
}

/// A file a run changed (`A`, `M`, `D`, `R…`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileChange {
    pub status: String,
    pub path: String,
}

/// Authenticates git's HTTP requests to one origin.
#[derive(Clone)]
pub struct GitAuth {
    origin: String,
    header: SecretString,
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitAuth")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl GitAuth {
    /// Basic authentication with `x-access-token:<token>` (GitHub's form for installation
    /// tokens) for requests to the origin of `clone_url`.
    pub fn new(clone_url: &str, token: &SecretString) -> Self {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("x-access-token:{}", token.expose_secret()));
        Self {
            origin: origin(clone_url),
            header: SecretString::from(format!("Authorization: Basic {basic}")),
        }
    }

    /// The encoded credential, so it can be masked wherever the token is.
    pub fn encoded(&self) -> String {
        self.header
            .expose_secret()
            .trim_start_matches("Authorization: Basic ")
            .to_owned()
    }

    fn env(&self) -> [(String, String); 3] {
        [
            ("GIT_CONFIG_COUNT".into(), "1".into()),
            (
                "GIT_CONFIG_KEY_0".into(),
                format!("http.{}/.extraHeader", self.origin),
            ),
            (
                "GIT_CONFIG_VALUE_0".into(),
                self.header.expose_secret().to_owned(),
            ),
        ]
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split('/').next().unwrap_or(rest);
            // Credentials in a URL are never used; drop them from the origin too.
            let host = host.rsplit('@').next().unwrap_or(host);
            format!("{scheme}://{host}")
        }
        None => url.to_owned(),
    }
}

/// A working copy.
#[derive(Debug, Clone)]
pub struct Repo {
    dir: PathBuf,
    author: (String, String),
}

impl Repo {
    /// The working copy at `dir` (which may not exist yet).
    pub fn new(dir: PathBuf, author_name: &str, author_email: &str) -> Self {
        Self {
            dir,
            author: (author_name.to_owned(), author_email.to_owned()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn git(&self, args: &[&str], auth: Option<&GitAuth>) -> Result<String, GitError> {
        let cwd = if self.dir.exists() {
            self.dir.clone()
        } else {
            self.dir
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        };
        run_git(&cwd, args, auth).await
    }

    /// Clones `branch` of `clone_url`, or `base` when the branch does not exist yet, in which
    /// case the branch is created from it. An existing working copy (a relaunch) is fetched
    /// and moved to the remote branch instead, keeping nothing the remote lacks except
    /// uncommitted work, which is committed first.
    pub async fn clone_branch(
        &self,
        clone_url: &str,
        branch: &str,
        base: &str,
        auth: &GitAuth,
    ) -> Result<(), GitError> {
        if self.dir.join(".git").exists() {
            self.fetch(branch, auth).await?;
            self.configure().await?;
            if self.has_remote_branch(branch).await? {
                self.git(
                    &["checkout", "-B", branch, &format!("origin/{branch}")],
                    None,
                )
                .await?;
            }
            return Ok(());
        }
        if let Some(parent) = self.dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| GitError {
                command: "clone".into(),
                detail: format!("cannot create {}: {e}", parent.display()),
            })?;
        }
        let dir = self.dir.to_string_lossy().into_owned();
        let cloned = self
            .git(
                &[
                    "clone",
                    "--no-tags",
                    "--branch",
                    branch,
                    "--",
                    clone_url,
                    &dir,
                ],
                Some(auth),
            )
            .await;
        match cloned {
            Ok(_) => {}
            Err(e) if e.detail.contains("not found in upstream") => {
                self.git(
                    &[
                        "clone",
                        "--no-tags",
                        "--branch",
                        base,
                        "--",
                        clone_url,
                        &dir,
                    ],
                    Some(auth),
                )
                .await?;
                self.git(&["checkout", "-b", branch], None).await?;
            }
            Err(e) => return Err(e),
        }
        self.configure().await
    }

    /// Identity for the commits made here (by the agent and by the CLI).
    async fn configure(&self) -> Result<(), GitError> {
        self.git(&["config", "user.name", &self.author.0], None)
            .await?;
        self.git(&["config", "user.email", &self.author.1], None)
            .await?;
        Ok(())
    }

    async fn has_remote_branch(&self, branch: &str) -> Result<bool, GitError> {
        Ok(self
            .git(
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("refs/remotes/origin/{branch}"),
                ],
                None,
            )
            .await
            .is_ok())
    }

    /// Fetches `branch` from the remote.
    pub async fn fetch(&self, branch: &str, auth: &GitAuth) -> Result<(), GitError> {
        let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
        self.git(&["fetch", "--no-tags", "origin", &refspec], Some(auth))
            .await
            .map(drop)
    }

    /// Moves the working copy to the remote's `branch`, discarding local changes (previews).
    pub async fn reset_to_remote(&self, branch: &str, auth: &GitAuth) -> Result<String, GitError> {
        self.fetch(branch, auth).await?;
        self.git(&["reset", "--hard", &format!("origin/{branch}")], None)
            .await?;
        self.head().await
    }

    /// The commit checked out.
    pub async fn head(&self) -> Result<String, GitError> {
        Ok(self
            .git(&["rev-parse", "HEAD"], None)
            .await?
            .trim()
            .to_owned())
    }

    /// Commits everything in the working tree (new files included) with `message`, when there
    /// is anything; returns whether a commit was made.
    pub async fn commit_all(&self, message: &str) -> Result<bool, GitError> {
        self.git(&["add", "--all"], None).await?;
        let staged = self.git(&["diff", "--cached", "--name-only"], None).await?;
        if staged.trim().is_empty() {
            return Ok(false);
        }
        self.git(&["commit", "--quiet", "--no-verify", "-m", message], None)
            .await?;
        Ok(true)
    }

    /// Commits made since `start`, newest first.
    pub async fn commits_since(&self, start: &str) -> Result<Vec<CommitInfo>, GitError> {
        let out = self
            .git(
                &["log", "--format=%H%x1f%s", &format!("{start}..HEAD")],
                None,
            )
            .await?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('\x1f'))
            .map(|(sha, subject)| CommitInfo {
                sha: sha.to_owned(),
                subject: subject.to_owned(),
            })
            .collect())
    }

    /// Files that differ between `start` and HEAD.
    pub async fn files_since(&self, start: &str) -> Result<Vec<FileChange>, GitError> {
        let out = self
            .git(&["diff", "--name-status", start, "HEAD"], None)
            .await?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let mut parts = l.split('\t');
                let status = parts.next()?.to_owned();
                let path = parts.next_back()?.to_owned();
                Some(FileChange { status, path })
            })
            .collect())
    }

    /// Files changed between two commits (to decide whether dependencies must be installed).
    pub async fn changed_between(&self, from: &str, to: &str) -> Result<Vec<String>, GitError> {
        let out = self.git(&["diff", "--name-only", from, to], None).await?;
        Ok(out.lines().map(str::to_owned).collect())
    }

    /// Pushes HEAD to `branch`. When the remote moved on (someone pushed to the PR), the local
    /// commits are rebased onto it and pushed again; a conflict is reported, never forced.
    pub async fn push(&self, branch: &str, auth: &GitAuth) -> Result<(), GitError> {
        let refspec = format!("HEAD:refs/heads/{branch}");
        match self.git(&["push", "origin", &refspec], Some(auth)).await {
            Ok(_) => Ok(()),
            Err(e) if e.detail.contains("rejected") || e.detail.contains("fetch first") => {
                self.fetch(branch, auth).await?;
                if let Err(rebase) = self
                    .git(&["rebase", &format!("origin/{branch}")], None)
                    .await
                {
                    let _ = self.git(&["rebase", "--abort"], None).await;
                    return Err(GitError {
                        command: "push".into(),
                        detail: format!(
                            "the branch changed on the remote and the agent's commits do not rebase onto it: {}",
                            rebase.detail
                        ),
                    });
                }
                self.git(&["push", "origin", &refspec], Some(auth))
                    .await
                    .map(drop)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether HEAD has commits the remote branch lacks.
    pub async fn unpushed(&self, branch: &str) -> Result<bool, GitError> {
        let remote = format!("refs/remotes/origin/{branch}");
        if self
            .git(&["rev-parse", "--verify", "--quiet", &remote], None)
            .await
            .is_err()
        {
            return Ok(true);
        }
        let out = self
            .git(&["rev-list", "--count", &format!("{remote}..HEAD")], None)
            .await?;
        Ok(out.trim() != "0")
    }
}

/// Runs git in `cwd` with a clean, non-interactive environment.
async fn run_git(cwd: &Path, args: &[&str], auth: Option<&GitAuth>) -> Result<String, GitError> {
    let name = args.first().copied().unwrap_or("").to_owned();
    let mut cmd = Command::new("git");
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("SSH_ASKPASS", "true")
        .env("GCM_INTERACTIVE", "never")
        .env_remove("GIT_CONFIG_COUNT")
        .env_remove("GIT_CONFIG_PARAMETERS");
    if let Some(auth) = auth {
        cmd.envs(auth.env());
    }
    let out = tokio::time::timeout(GIT_TIMEOUT, cmd.output())
        .await
        .map_err(|_| GitError {
            command: name.clone(),
            detail: format!("no answer in {} s", GIT_TIMEOUT.as_secs()),
        })?
        .map_err(|e| GitError {
            command: name.clone(),
            detail: format!("cannot run git: {e}"),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(GitError {
            command: name,
            detail: format!("{}: {}", out.status, stderr.trim()),
        })
    }
}

/// Path of the working copy of `repo` for `session` under `workspace`.
pub fn working_copy(workspace: &Path, session: &str, repo_name: &str) -> PathBuf {
    let mut dir = workspace.to_path_buf();
    dir.push(session);
    dir.push(repo_name);
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_keeps_scheme_host_and_port_only() {
        assert_eq!(
            origin("https://github.com/octo/hello.git"),
            "https://github.com"
        );
        assert_eq!(
            origin("http://127.0.0.1:4000/git/o/r.git"),
            "http://127.0.0.1:4000"
        );
        assert_eq!(
            origin("https://user:pw@ghe.example.com/o/r.git"),
            "https://ghe.example.com"
        );
    }

    #[test]
    fn the_header_carries_the_token_encoded_and_debug_hides_it() {
        let auth = GitAuth::new(
            "https://github.com/o/r.git",
            &SecretString::from("ghs_SECRET123"),
        );
        let env = auth.env();
        assert_eq!(env[1].1, "http.https://github.com/.extraHeader");
        assert!(!env[2].1.contains("ghs_SECRET123"));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.encoded())
            .unwrap();
        assert_eq!(decoded, b"x-access-token:ghs_SECRET123");
        assert!(!format!("{auth:?}").contains(&auth.encoded()));
    }
}
