//! The working copy: clone, commit, push, and what a run changed.
//!
//! The working tree is the untrusted code's to change, and so is any `.git` in it: hooks,
//! `core.fsmonitor`, filters, `include`s, proxies, credential helpers and remotes there are all
//! the CLI's or the repository's choice. So the agent keeps the history in a git directory of
//! its own, beside the working tree and out of the sandbox's reach, and runs every command with
//! `--git-dir` on that directory and `--work-tree` on the tree: the files are read as data, the
//! configuration is the agent's. The `.git` the CLI sees is a copy the agent rebuilds from its
//! own after every run ([`Repo::refresh_cli_copy`]), never read by the agent. Every command also
//! runs with the system and global configuration off and [`HARDENING`] on its command line.
//!
//! Credentials reach git only through its environment, as an `http.<origin>.extraHeader` set with
//! `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` on each command that talks to the
//! remote: never in the remote URL, `.git/config`, a process argument or a log line. The header
//! is scoped to the clone URL's origin, so nothing else the repository points at receives it,
//! and it is built from the current token on every call, so a refreshed token is used as soon as
//! it exists.

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use tokio::process::Command;

/// Longest a git command may take (a clone of a large repository included).
const GIT_TIMEOUT: Duration = Duration::from_secs(600);

/// Configuration given on every git command line, which wins over any file: no hooks, no
/// file-system monitor, no credential helper or prompt, no proxy, no signing program, no
/// background maintenance, and only the protocols the agent uses (see [`protocols`]).
const HARDENING: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.askPass=",
    "core.sshCommand=false",
    "core.pager=cat",
    "core.editor=false",
    "credential.helper=",
    "http.proxy=",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "submodule.recurse=false",
    "push.recurseSubmodules=no",
    "fetch.recurseSubmodules=false",
    "protocol.allow=never",
    // The working tree may be another user's (the sandbox's): the agent's own git directory is
    // what git would otherwise check, and it is the agent's.
    "safe.directory=*",
];

/// A git command that failed.
#[derive(Debug, thiserror::Error)]
#[error("git {command} failed: {detail}")]
pub struct GitError {
    pub command: String,
    pub detail: String,
}

/// A commit and a changed file, as the run's summary lists them.
pub use cca_domain::texts::agent::{ChangedFile, Commit};

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

/// Where [`Repo::clone_branch`] starts the local branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the remote branch of the same name (made from the base when missing).
    Branch,
    /// At pull request `n`'s head, `refs/pull/<n>/head` of the base repository.
    Pull(u64),
}

/// A working copy: the tree untrusted code works in, and the agent's own git directory.
#[derive(Debug, Clone)]
pub struct Repo {
    dir: PathBuf,
    git_dir: PathBuf,
    author: (String, String),
}

impl Repo {
    /// The working tree at `dir` with its history in `git_dir` (neither need exist yet).
    pub fn new(dir: PathBuf, git_dir: PathBuf, author_name: &str, author_email: &str) -> Self {
        Self {
            dir,
            git_dir,
            author: (author_name.to_owned(), author_email.to_owned()),
        }
    }

    /// The working tree.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The agent's own git directory.
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    async fn git(&self, args: &[&str], auth: Option<&GitAuth>) -> Result<String, GitError> {
        self.git_bytes(args, auth)
            .await
            .map(|out| String::from_utf8_lossy(&out).into_owned())
    }

    /// [`Repo::git`], its output as git wrote it (paths need not be UTF-8).
    async fn git_bytes(&self, args: &[&str], auth: Option<&GitAuth>) -> Result<Vec<u8>, GitError> {
        let mut full = vec![
            format!("--git-dir={}", self.git_dir.display()),
            format!("--work-tree={}", self.dir.display()),
        ];
        full.extend(args.iter().map(|a| (*a).to_owned()));
        let cwd = self
            .git_dir
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        run_git_bytes(&cwd, &full, auth).await
    }

    /// Paths never committed, whatever the repository's `.gitignore` says (kept in the
    /// agent's git directory, where the CLI cannot change them).
    pub fn exclude(&self, patterns: &str) -> std::io::Result<()> {
        let path = self.git_dir.join("info/exclude");
        let existing = std::fs::read_to_string(&path).unwrap_or_default();
        if existing.contains(patterns) {
            return Ok(());
        }
        std::fs::create_dir_all(self.git_dir.join("info"))?;
        std::fs::write(&path, format!("{existing}\n{patterns}"))
    }

    /// Clones `branch` of `clone_url`, or `base` when the branch does not exist yet, in which
    /// case the branch is created from it. An existing working copy (a relaunch) is fetched
    /// and moved to the remote branch instead. With [`Start::Pull`] the local `branch` starts
    /// at the pull request's head instead (previews: the head may be in a fork).
    pub async fn clone_branch(
        &self,
        clone_url: &str,
        branch: &str,
        base: &str,
        start: Start,
        auth: &GitAuth,
    ) -> Result<(), GitError> {
        let io_error = |what: &str, e: std::io::Error| GitError {
            command: "clone".into(),
            detail: format!("cannot create {what}: {e}"),
        };
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| io_error(&self.dir.display().to_string(), e))?;
        let fresh = !self.git_dir.join("HEAD").exists();
        if fresh {
            if let Some(parent) = self.git_dir.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| io_error(&parent.display().to_string(), e))?;
            }
            let dir = self.git_dir.display().to_string();
            run_git(Path::new("/"), &["init", "--quiet", "--bare", &dir], None).await?;
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&self.git_dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| io_error(&dir, e))?;
            }
            self.git(&["config", "core.bare", "false"], None).await?;
            self.git(&["remote", "add", "origin", clone_url], None)
                .await?;
        } else {
            self.git(&["remote", "set-url", "origin", clone_url], None)
                .await?;
        }
        self.configure().await?;
        let start = match start {
            Start::Pull(number) => {
                self.fetch_pull(number, auth).await?;
                format!("refs/remotes/origin/pull/{number}")
            }
            Start::Branch => self.branch_start(branch, base, fresh, auth).await?,
        };
        self.git(
            &["checkout", "--quiet", "--force", "-B", branch, &start],
            None,
        )
        .await?;
        Ok(())
    }

    /// Where a branch starts: the remote's branch, else (a new branch) the base.
    async fn branch_start(
        &self,
        branch: &str,
        base: &str,
        fresh: bool,
        auth: &GitAuth,
    ) -> Result<String, GitError> {
        Ok(match self.fetch(branch, auth).await {
            Ok(()) => format!("origin/{branch}"),
            Err(e) if fresh && e.detail.contains("couldn't find remote ref") => {
                self.fetch(base, auth).await?;
                format!("origin/{base}")
            }
            Err(e) => return Err(e),
        })
    }

    /// Gives the working tree a `.git` of the CLI's own: a fresh copy of the agent's history at
    /// the current branch, with its index, made where the sandbox cannot reach and then moved
    /// into the tree (replacing whatever `.git` the CLI had), and handed to the sandbox user.
    /// The agent never runs git on it. Its `origin` is the clone URL, with no credential.
    pub async fn refresh_cli_copy(
        &self,
        clone_url: &str,
        sandbox: &crate::sandbox::Sandbox,
    ) -> Result<(), GitError> {
        let fail = |what: &str, e: std::io::Error| GitError {
            command: "copy".into(),
            detail: format!("{what}: {e}"),
        };
        let staging = self.git_dir.with_extension("cli-copy");
        remove_any(&staging).map_err(|e| fail("removing an old copy", e))?;
        let staged = staging.display().to_string();
        run_git(
            Path::new("/"),
            &["init", "--quiet", "--bare", &staged],
            None,
        )
        .await?;
        let copy = |args: Vec<String>| {
            let mut full = vec![format!("--git-dir={staged}")];
            full.extend(args);
            async move { run_git(Path::new("/"), &full, None).await }
        };
        let own = self.git_dir.display().to_string();
        let branch = self
            .git(&["symbolic-ref", "--short", "HEAD"], None)
            .await?
            .trim()
            .to_owned();
        copy(vec![
            "-c".into(),
            "protocol.file.allow=always".into(),
            "fetch".into(),
            "--quiet".into(),
            "--no-tags".into(),
            own,
            "+refs/heads/*:refs/heads/*".into(),
            "+refs/remotes/origin/*:refs/remotes/origin/*".into(),
        ])
        .await?;
        for (key, value) in [
            ("core.bare", "false"),
            ("remote.origin.url", clone_url),
            ("remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"),
            ("user.name", &self.author.0),
            ("user.email", &self.author.1),
        ] {
            copy(vec!["config".into(), key.into(), value.into()]).await?;
        }
        copy(vec![
            "symbolic-ref".into(),
            "HEAD".into(),
            format!("refs/heads/{branch}"),
        ])
        .await?;
        copy(vec![
            format!("--work-tree={}", self.dir.display()),
            "read-tree".into(),
            "HEAD".into(),
        ])
        .await?;
        sandbox
            .hand_over(&staging)
            .map_err(|e| fail("handing the copy over", e))?;
        let target = self.dir.join(".git");
        remove_any(&target).map_err(|e| fail("removing the CLI's .git", e))?;
        std::fs::rename(&staging, &target).map_err(|e| fail("moving the copy in", e))?;
        Ok(())
    }

    /// Identity for the commits made here (by the agent and by the CLI).
    async fn configure(&self) -> Result<(), GitError> {
        self.git(&["config", "user.name", &self.author.0], None)
            .await?;
        self.git(&["config", "user.email", &self.author.1], None)
            .await?;
        Ok(())
    }

    /// Fetches `branch` from the remote.
    pub async fn fetch(&self, branch: &str, auth: &GitAuth) -> Result<(), GitError> {
        let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
        self.git(&["fetch", "--no-tags", "origin", &refspec], Some(auth))
            .await
            .map(drop)
    }

    /// Fetches pull request `number`'s head as GitHub keeps it in the base repository
    /// (`refs/pull/<n>/head`): the head repository's commit, whether the branch is in this
    /// repository or in a fork, never a base-repository branch of the same name.
    pub async fn fetch_pull(&self, number: u64, auth: &GitAuth) -> Result<(), GitError> {
        let refspec = format!("+refs/pull/{number}/head:refs/remotes/origin/pull/{number}");
        self.git(&["fetch", "--no-tags", "origin", &refspec], Some(auth))
            .await
            .map(drop)
    }

    /// Moves the working copy to pull request `number`'s head, discarding local changes
    /// (previews); returns the commit.
    pub async fn reset_to_pull(&self, number: u64, auth: &GitAuth) -> Result<String, GitError> {
        self.fetch_pull(number, auth).await?;
        self.git(
            &[
                "reset",
                "--hard",
                &format!("refs/remotes/origin/pull/{number}"),
            ],
            None,
        )
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

    /// The untracked files of the working tree that would be committed (ignored and excluded
    /// ones left out), as git names them (bytes: a name need not be UTF-8).
    pub async fn untracked(&self) -> Result<Untracked, GitError> {
        let out = self
            .git_bytes(&["ls-files", "--others", "--exclude-standard", "-z"], None)
            .await?;
        Ok(Untracked(
            out.split(|b| *b == 0)
                .filter(|p| !p.is_empty())
                .map(<[u8]>::to_vec)
                .collect(),
        ))
    }

    /// Puts the working tree back as it was at `start` with `before` untracked: what a plan run
    /// changed, committed or created is gone (files that were there untracked stay). A file
    /// the run hid behind a `.gitignore` of its own comes to light once that file is gone, so
    /// the listing is repeated until it finds nothing new. Without `before` (it could not be
    /// read) only tracked files are put back. Files are removed by name, never as patterns.
    pub async fn discard_since(
        &self,
        start: &str,
        before: Option<&Untracked>,
    ) -> Result<(), GitError> {
        self.git(&["reset", "--quiet", "--hard", start], None)
            .await?;
        let Some(before) = before else {
            return Ok(());
        };
        for _ in 0..DISCARD_PASSES {
            let created: Vec<Vec<u8>> = self
                .untracked()
                .await?
                .0
                .into_iter()
                .filter(|p| !before.0.contains(p))
                .collect();
            if created.is_empty() {
                return Ok(());
            }
            for name in created {
                let path = self.dir.join(std::ffi::OsStr::from_bytes(&name));
                remove_any(&path).map_err(|e| GitError {
                    command: "clean".into(),
                    detail: format!("cannot remove {}: {e}", path.display()),
                })?;
            }
        }
        Err(GitError {
            command: "clean".into(),
            detail: format!("new files still appear after {DISCARD_PASSES} passes"),
        })
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
    pub async fn commits_since(&self, start: &str) -> Result<Vec<Commit>, GitError> {
        let out = self
            .git(
                &["log", "--format=%H%x1f%s", &format!("{start}..HEAD")],
                None,
            )
            .await?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('\x1f'))
            .map(|(sha, subject)| Commit {
                sha: sha.to_owned(),
                subject: subject.to_owned(),
            })
            .collect())
    }

    /// Files that differ between `start` and HEAD.
    pub async fn files_since(&self, start: &str) -> Result<Vec<ChangedFile>, GitError> {
        let out = self
            .git(&["diff", "--name-status", start, "HEAD"], None)
            .await?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let mut parts = l.split('\t');
                let status = parts.next()?.to_owned();
                let path = parts.next_back()?.to_owned();
                Some(ChangedFile { status, path })
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
            // GitHub refused the push itself: fetching and rebasing would not change that.
            Err(e) if refusal(&e.detail).is_some() => Err(e),
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

    /// Pushes HEAD to a new branch `branch` (never over an existing one).
    pub async fn push_new(&self, branch: &str, auth: &GitAuth) -> Result<(), GitError> {
        let refspec = format!("HEAD:refs/heads/{branch}");
        self.git(&["push", "origin", &refspec], Some(auth))
            .await
            .map(drop)
    }

    /// The commits HEAD has and the remote `branch` lacks, as `git am` reads them (all of
    /// HEAD's history from `start` when the remote branch is unknown).
    pub async fn patch(&self, branch: &str, start: &str) -> Result<String, GitError> {
        let remote = format!("refs/remotes/origin/{branch}");
        let base = match self
            .git(&["rev-parse", "--verify", "--quiet", &remote], None)
            .await
        {
            Ok(_) => remote,
            Err(_) => start.to_owned(),
        };
        self.git(
            &[
                "format-patch",
                "--stdout",
                "--no-color",
                &format!("{base}..HEAD"),
            ],
            None,
        )
        .await
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

/// GitHub's reason when it refused a push itself (`[remote rejected]`: a protected branch,
/// workflow files without the `workflows` permission, a file over 100 MB, a pre-receive hook),
/// from git's output: the remote's own lines and the reason in parentheses. `None` for any
/// other failure (a branch that moved is `[rejected]`, and a rebase helps).
pub fn refusal(detail: &str) -> Option<String> {
    let rejected = detail.lines().find(|l| l.contains("[remote rejected]"))?;
    let mut reasons: Vec<String> = detail
        .lines()
        // The first line also carries git's exit status before it.
        .filter_map(|l| l.split_once("remote:").map(|(_, rest)| rest))
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("Resolving deltas")
                && !l.starts_with("Processing")
                && !l.starts_with("Create a pull request")
                && !l.starts_with("https://")
        })
        .map(|l| l.strip_prefix("error: ").unwrap_or(l).to_owned())
        .collect();
    let why = rejected
        .rsplit_once('(')
        .map(|(_, r)| r.trim_end().trim_end_matches(')').to_owned());
    if let Some(why) = why.filter(|w| !reasons.iter().any(|r| r == w)) {
        reasons.push(why);
    }
    let text = reasons.join("; ");
    // GitHub also says `[remote rejected]` for its own failures (`Internal Server Error`,
    // `failed to update ref`, `cannot lock ref` in a race): those are worth the usual retry.
    let permanent = [
        "GH00",
        "GH01",
        "without `workflows` permission",
        "pre-receive hook declined",
        "repository rule violations",
        "protected branch",
    ];
    permanent
        .iter()
        .any(|p| text.to_ascii_lowercase().contains(&p.to_ascii_lowercase()))
        .then_some(text)
}

/// The `protocol.<name>.allow` settings that let git reach `url`'s scheme, and only it.
fn protocols(url: &str) -> Vec<String> {
    let scheme = url.split_once("://").map_or("file", |(s, _)| s);
    match scheme {
        "https" | "http" => vec![format!("protocol.{scheme}.allow=always")],
        _ => Vec::new(),
    }
}

/// Runs git in `cwd`, non-interactive, with no system or global configuration, [`HARDENING`]
/// on its command line, and none of the agent's `GIT_*` variables.
async fn run_git<S: AsRef<str>>(
    cwd: &Path,
    args: &[S],
    auth: Option<&GitAuth>,
) -> Result<String, GitError> {
    run_git_bytes(cwd, args, auth)
        .await
        .map(|out| String::from_utf8_lossy(&out).into_owned())
}

/// [`run_git`], its standard output as git wrote it (paths need not be UTF-8).
async fn run_git_bytes<S: AsRef<str>>(
    cwd: &Path,
    args: &[S],
    auth: Option<&GitAuth>,
) -> Result<Vec<u8>, GitError> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let name = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .copied()
        .unwrap_or("")
        .to_owned();
    let mut cmd = Command::new("git");
    for setting in HARDENING {
        cmd.args(["-c", setting]);
    }
    if let Some(auth) = auth {
        for setting in protocols(&auth.origin) {
            cmd.args(["-c", &setting]);
        }
    }
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(&key);
        }
    }
    cmd.args(&args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("SSH_ASKPASS", "true")
        .env("GCM_INTERACTIVE", "never")
        .env("GIT_PROTOCOL_FROM_USER", "0");
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
        Ok(out.stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(GitError {
            command: name,
            detail: format!("{}: {}", out.status, stderr.trim()),
        })
    }
}

/// Untracked file names of a working tree, as git lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Untracked(std::collections::BTreeSet<Vec<u8>>);

/// How many times [`Repo::discard_since`] lists what is left: each pass can uncover files a
/// removed `.gitignore` hid, nested as deep as a run made them.
const DISCARD_PASSES: usize = 8;

/// Removes `path` whatever it is (a directory with its contents, a file, a link: never
/// followed); nothing when it does not exist.
fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Path of the working copy of `repo` for `session` under `workspace`.
pub fn working_copy(workspace: &Path, session: &str, repo_name: &str) -> PathBuf {
    let mut dir = workspace.to_path_buf();
    dir.push(session);
    dir.push(repo_name);
    dir
}

/// The agent's own git directory for `session` under `workspace` (`@` cannot start a
/// repository's name, so it never meets a working copy).
pub fn agent_git_dir(workspace: &Path, session: &str) -> PathBuf {
    workspace.join(session).join("@git")
}

/// The home of the session's untrusted processes under `workspace`.
pub fn sandbox_home(workspace: &Path, session: &str) -> PathBuf {
    workspace.join(session).join("@home")
}

#[cfg(test)]
mod tests {
    use super::refusal;

    #[test]
    fn githubs_refusals_are_told_from_a_branch_that_moved() {
        let large = "exit status: 1: remote: error: Trace: 8f1d\nremote: error: GH001: Large files detected.\nremote: error: File big.bin is 120.00 MB; this exceeds GitHub's file size limit of 100.00 MB\nTo https://github.com/o/r.git\n ! [remote rejected] HEAD -> claude/1 (pre-receive hook declined)\nerror: failed to push some refs";
        let why = refusal(large).unwrap();
        assert!(
            why.contains("GH001") && why.contains("big.bin is 120.00 MB"),
            "{why}"
        );
        assert!(why.ends_with("pre-receive hook declined"), "{why}");
        // GitHub's own refusal of a workflow file names it in the parentheses only.
        let workflow = " ! [remote rejected] HEAD -> claude/1 (refusing to allow a GitHub App to create or update workflow `.github/workflows/ci.yml` without `workflows` permission)";
        assert_eq!(
            refusal(workflow).as_deref(),
            Some(
                "refusing to allow a GitHub App to create or update workflow `.github/workflows/ci.yml` without `workflows` permission"
            )
        );
        // GitHub's own failure, and a branch that moved, are not refusals: fetch, rebase and
        // push again.
        let flaky = " ! [remote rejected] HEAD -> claude/1 (Internal Server Error)";
        assert_eq!(refusal(flaky), None);
        let secret = "remote: error: GH013: Repository rule violations found for refs/heads/claude/1.\n ! [remote rejected] HEAD -> claude/1 (push declined due to repository rule violations)";
        assert!(refusal(secret).unwrap().contains("GH013"));
        let moved =
            " ! [rejected]        HEAD -> claude/1 (fetch first)\nerror: failed to push some refs";
        assert_eq!(refusal(moved), None);
    }

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
