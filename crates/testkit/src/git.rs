//! Real git repositories behind the fake GitHub.
//!
//! A hosted repository is a bare repository in a directory the fake owns. The fake's API reads and
//! writes it with git plumbing (`rev-parse`, `cat-file`, `commit-tree`, `update-ref`, …), and git
//! clients reach it over smart HTTP, which the system's `git http-backend` serves as a CGI
//! program. Ref updates are compare-and-swap (`git update-ref <ref> <new> <old>`), so API calls and
//! pushes that race are settled by git's own ref locking, as on GitHub.
//!
//! Every git process runs with a cleared environment (no user or system configuration, no
//! inherited `GIT_DIR`), so the host's git settings never change what a test sees.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;

use crate::credential::AuthKind;

/// The object id git uses for "no object": as the old value of a ref update it means the ref
/// must not exist yet.
pub(crate) const ZERO_OID: &str = "0000000000000000000000000000000000000000";

/// Who made a commit, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSignature {
    /// Name, as recorded in the commit.
    pub name: String,
    /// E-mail address, as recorded in the commit.
    pub email: String,
    /// Timestamp, to the second.
    pub time: SystemTime,
}

/// A commit of a hosted repository, as git stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitCommitInfo {
    /// 40-hex commit id.
    pub sha: String,
    /// Tree id.
    pub tree: String,
    /// Parent commit ids, in order.
    pub parents: Vec<String>,
    /// First paragraph of the message, on one line (as `git log --format=%s`).
    pub subject: String,
    /// Whole message, without its final newline.
    pub message: String,
    /// Author.
    pub author: GitSignature,
    /// Committer.
    pub committer: GitSignature,
}

/// One request of git's HTTP protocol, as the fake received it, whatever it answered.
#[derive(Debug, Clone)]
pub struct GitRequest {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path as sent, without the query (`/git/owner/name.git/info/refs`).
    pub path: String,
    /// Repository addressed, `owner/name` in lower case; `None` when the path names none.
    pub repo: Option<String>,
    /// `git-upload-pack` (clone, fetch) or `git-receive-pack` (push), when the request names one.
    pub service: Option<String>,
    /// The credential presented (its password, or its user name when the password is empty).
    pub auth: AuthKind,
    /// `Content-Encoding` of the request body (`gzip` for large fetch negotiations).
    pub content_encoding: Option<String>,
    /// Whether that credential was accepted for this repository and service.
    pub authorized: bool,
    /// HTTP status answered.
    pub status: u16,
}

impl GitRequest {
    /// Whether this request pushed (or asked to push): the receive-pack service.
    pub fn is_push(&self) -> bool {
        self.service.as_deref() == Some("git-receive-pack")
    }

    /// The installation token presented, if the credential was one the fake issued.
    pub fn installation_token(&self) -> Option<&str> {
        match &self.auth {
            AuthKind::Installation(token) => Some(token),
            _ => None,
        }
    }
}

/// Name, e-mail and optional date (any format git accepts) of a commit's author or committer.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) name: String,
    pub(crate) email: String,
    pub(crate) date: Option<String>,
}

/// What a ref must point at for an update to happen.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect<'a> {
    /// The ref must not exist.
    Absent,
    /// The ref must point at this commit.
    At(&'a str),
}

/// An entry of a tree, as `git ls-tree -l` lists it.
#[derive(Debug, Clone)]
pub(crate) struct TreeEntry {
    pub(crate) kind: String,
    pub(crate) sha: String,
    pub(crate) size: Option<u64>,
    pub(crate) name: String,
}

/// What a path names at a revision.
#[derive(Debug, Clone)]
pub(crate) enum PathContent {
    File { sha: String, content: Vec<u8> },
    Dir(Vec<TreeEntry>),
}

pub(crate) type GitResult<T> = Result<T, String>;

/// A bare repository the fake hosts.
#[derive(Debug, Clone)]
pub(crate) struct Bare {
    dir: PathBuf,
    home: PathBuf,
}

/// Whether `s` is a full 40-hex object id.
pub(crate) fn is_full_oid(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `s` could abbreviate an object id.
pub(crate) fn is_oid_prefix(s: &str) -> bool {
    (4..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A git command with a clean environment: only `PATH`, a `HOME` without configuration, and
/// the C locale, so neither the host's settings nor the test's own `GIT_*` variables leak in.
pub(crate) fn clean_git(home: &Path) -> Command {
    let mut command = Command::new("git");
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .env("TZ", "UTC");
    command
}

impl Bare {
    /// Creates a bare repository at `dir` whose default branch holds one commit adding a
    /// `README.md`, made by `who`. `home` is an empty directory used as git's `HOME`.
    pub(crate) fn create(
        home: &Path,
        dir: PathBuf,
        default_branch: &str,
        name: &str,
        who: &Identity,
    ) -> GitResult<Bare> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let bare = Bare {
            dir,
            home: home.to_owned(),
        };
        let head = format!("--initial-branch={default_branch}");
        bare.run(&["init", "--bare", "--quiet", &head])?;
        let hook = bare.dir.join("hooks").join("pre-receive");
        std::fs::create_dir_all(bare.dir.join("hooks")).map_err(|e| format!("hooks: {e}"))?;
        std::fs::write(&hook, PRE_RECEIVE).map_err(|e| format!("write {}: {e}", hook.display()))?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("chmod {}: {e}", hook.display()))?;
        }
        for (key, value) in [
            ("http.receivepack", "true"),
            ("uploadpack.allowAnySHA1InWant", "true"),
            ("uploadpack.allowFilter", "true"),
            ("core.logAllRefUpdates", "false"),
            ("gc.auto", "0"),
        ] {
            bare.run(&["config", key, value])?;
        }
        let readme = format!("# {name}\n");
        let blob = bare.run_with(
            &["hash-object", "-w", "--stdin"],
            Some(readme.as_bytes()),
            &[],
        )?;
        let listing = format!("100644 blob {}\tREADME.md\n", trim(&blob));
        let tree = trim(&bare.run_with(&["mktree"], Some(listing.as_bytes()), &[])?);
        let commit = bare.commit_tree(&tree, &[], "Initial commit", who, who)?;
        bare.update_ref(default_branch, &commit, Expect::Absent)?;
        Ok(bare)
    }

    /// The repository's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = clean_git(&self.home);
        command.env("GIT_DIR", &self.dir).args(args);
        command
    }

    /// Runs git, feeding `input` on standard input; standard output when it succeeds, standard
    /// error (or why it could not run) when it does not.
    fn run_with(
        &self,
        args: &[&str],
        input: Option<&[u8]>,
        env: &[(&str, &str)],
    ) -> GitResult<Vec<u8>> {
        let mut command = self.command(args);
        for (key, value) in env {
            command.env(key, value);
        }
        command
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run git {}: {e}", args.join(" ")))?;
        let stdin = child.stdin.take();
        // Standard input is written from another thread so a large answer cannot block it.
        let output = std::thread::scope(|scope| {
            if let (Some(mut stdin), Some(input)) = (stdin, input) {
                scope.spawn(move || {
                    // A git that exits early closes the pipe; its status tells what went wrong.
                    let _ = stdin.write_all(input);
                });
            }
            child.wait_with_output()
        })
        .map_err(|e| format!("git {} did not finish: {e}", args.join(" ")))?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(format!(
                "git {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    fn run(&self, args: &[&str]) -> GitResult<String> {
        self.run_with(args, None, &[]).map(|out| trim(&out))
    }

    /// Branch name → head commit.
    pub(crate) fn branches(&self) -> GitResult<BTreeMap<String, String>> {
        let out = self.run(&[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads/",
        ])?;
        Ok(out
            .lines()
            .filter_map(|line| {
                let (sha, name) = line.split_once(' ')?;
                Some((name.strip_prefix("refs/heads/")?.to_owned(), sha.to_owned()))
            })
            .collect())
    }

    /// The commit `rev` names (a ref, a full or abbreviated id, `main~1`, …), if any.
    pub(crate) fn resolve(&self, rev: &str) -> Option<String> {
        if rev.starts_with('-') {
            return None;
        }
        let spec = format!("{rev}^{{commit}}");
        self.run(&["rev-parse", "--verify", "--quiet", &spec])
            .ok()
            .filter(|sha| is_full_oid(sha))
    }

    /// `commit`, `tree`, `blob` or `tag` for a full object id, `None` when it is not stored.
    pub(crate) fn object_type(&self, oid: &str) -> Option<String> {
        if !is_full_oid(oid) {
            return None;
        }
        self.run(&["cat-file", "-t", oid]).ok()
    }

    /// Commits by id, in the order asked; ids that are not commits are left out.
    pub(crate) fn commits(&self, shas: &[String]) -> Vec<GitCommitInfo> {
        if shas.is_empty() {
            return Vec::new();
        }
        let input: String = shas.iter().map(|s| format!("{s}\n")).collect();
        let Ok(out) = self.run_with(&["cat-file", "--batch"], Some(input.as_bytes()), &[]) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        let mut rest = out.as_slice();
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let header = String::from_utf8_lossy(&rest[..end]).into_owned();
            rest = &rest[end + 1..];
            let fields: Vec<&str> = header.split(' ').collect();
            let [oid, kind, size] = fields.as_slice() else {
                // `<input> missing`: nothing follows.
                continue;
            };
            let Ok(size) = size.parse::<usize>() else {
                break;
            };
            let Some(content) = rest.get(..size) else {
                break;
            };
            if *kind == "commit" {
                if let Some(info) = parse_commit(oid, content) {
                    found.push(info);
                }
            }
            rest = rest.get(size + 1..).unwrap_or_default();
        }
        found
    }

    /// One commit, by id (full or abbreviated).
    pub(crate) fn commit(&self, sha: &str) -> Option<GitCommitInfo> {
        if !is_oid_prefix(sha) {
            return None;
        }
        self.commits(&[sha.to_owned()]).into_iter().next()
    }

    /// The ids of the commits reachable from `sha`, newest first.
    pub(crate) fn rev_list(&self, sha: &str) -> Vec<String> {
        if !is_full_oid(sha) {
            return Vec::new();
        }
        self.run(&["rev-list", sha])
            .map(|out| out.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// The commits reachable from `rev`, newest first; empty when `rev` names no commit.
    pub(crate) fn log(&self, rev: &str) -> Vec<GitCommitInfo> {
        match self.resolve(rev) {
            Some(sha) => self.commits(&self.rev_list(&sha)),
            None => Vec::new(),
        }
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors.
    pub(crate) fn is_ancestor(&self, ancestor: &str, descendant: &str) -> bool {
        is_full_oid(ancestor)
            && is_full_oid(descendant)
            && self
                .run(&["merge-base", "--is-ancestor", ancestor, descendant])
                .is_ok()
    }

    /// Stores a commit object; returns its id.
    pub(crate) fn commit_tree(
        &self,
        tree: &str,
        parents: &[String],
        message: &str,
        author: &Identity,
        committer: &Identity,
    ) -> GitResult<String> {
        let mut args = vec!["commit-tree", tree];
        for parent in parents {
            args.extend(["-p", parent.as_str()]);
        }
        args.extend(["-F", "-"]);
        let mut env = vec![
            ("GIT_AUTHOR_NAME", author.name.as_str()),
            ("GIT_AUTHOR_EMAIL", author.email.as_str()),
            ("GIT_COMMITTER_NAME", committer.name.as_str()),
            ("GIT_COMMITTER_EMAIL", committer.email.as_str()),
        ];
        if let Some(date) = &author.date {
            env.push(("GIT_AUTHOR_DATE", date));
        }
        if let Some(date) = &committer.date {
            env.push(("GIT_COMMITTER_DATE", date));
        }
        let mut text = message.to_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        self.run_with(&args, Some(text.as_bytes()), &env)
            .map(|out| trim(&out))
    }

    /// The tree of `parent` with `path` set to `content` (a regular file); returns the tree id.
    pub(crate) fn tree_with_file(
        &self,
        parent: &str,
        path: &str,
        content: &[u8],
    ) -> GitResult<String> {
        let path = path.trim_matches('/');
        if path.is_empty()
            || path
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(format!("{path:?} is not a file path"));
        }
        let blob = trim(&self.run_with(&["hash-object", "-w", "--stdin"], Some(content), &[])?);
        // A private index, so concurrent writers never share one.
        let index = self.dir.join(format!(
            "fake-index-{}",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let index_str = index.to_string_lossy().into_owned();
        let env = [("GIT_INDEX_FILE", index_str.as_str())];
        let cacheinfo = format!("100644,{blob},{path}");
        let result = self
            .run_with(&["read-tree", parent], None, &env)
            .and_then(|_| {
                self.run_with(
                    &["update-index", "--add", "--cacheinfo", &cacheinfo],
                    None,
                    &env,
                )
            })
            .and_then(|_| self.run_with(&["write-tree"], None, &env))
            .map(|out| trim(&out));
        let _ = std::fs::remove_file(&index);
        result
    }

    /// The tree merging `head` into `base`; an error when they conflict.
    pub(crate) fn merge_tree(&self, base: &str, head: &str) -> GitResult<String> {
        let out = self.run(&["merge-tree", "--write-tree", "--no-messages", base, head])?;
        out.lines()
            .next()
            .map(str::to_owned)
            .filter(|t| is_full_oid(t))
            .ok_or_else(|| format!("git merge-tree answered {out:?}"))
    }

    /// Points `refs/heads/<branch>` at `new` if it currently is as `expect` says.
    /// Points any ref (such as `refs/pull/1/head`) at `sha`.
    pub(crate) fn set_ref(&self, name: &str, sha: &str) -> GitResult<()> {
        self.run(&["update-ref", "--no-deref", name, sha])
            .map(|_| ())
    }

    /// Copies the objects of `rev` (a ref of that repository) and its history from the
    /// repository at `from`.
    pub(crate) fn fetch_objects(&self, from: &Path, rev: &str) -> GitResult<()> {
        let from = from.display().to_string();
        self.run(&["fetch", "--quiet", "--no-tags", &from, rev])
            .map(|_| ())
    }

    pub(crate) fn update_ref(&self, branch: &str, new: &str, expect: Expect<'_>) -> GitResult<()> {
        let name = format!("refs/heads/{branch}");
        self.run(&["check-ref-format", &name])
            .map_err(|_| format!("{name} is not a valid ref name"))?;
        let mut args = vec!["update-ref", "--no-deref", name.as_str(), new];
        match expect {
            Expect::Absent => args.push(ZERO_OID),
            Expect::At(old) => args.push(old),
        }
        self.run(&args).map(|_| ())
    }

    /// Deletes `refs/heads/<branch>`; an error when it does not exist.
    pub(crate) fn delete_ref(&self, branch: &str) -> GitResult<()> {
        let name = format!("refs/heads/{branch}");
        let current = self.run(&["rev-parse", "--verify", "--quiet", &name])?;
        self.run(&["update-ref", "--no-deref", "-d", &name, &current])
            .map(|_| ())
    }

    /// The contents of a file at a commit.
    pub(crate) fn blob_at(&self, commit: &str, path: &str) -> Option<Vec<u8>> {
        match self.path_at(commit, path)? {
            PathContent::File { content, .. } => Some(content),
            PathContent::Dir(_) => None,
        }
    }

    /// What `path` (relative to the root; empty for the root) names at a commit.
    pub(crate) fn path_at(&self, commit: &str, path: &str) -> Option<PathContent> {
        if !is_full_oid(commit) {
            return None;
        }
        let spec = format!("{commit}:{}", path.trim_matches('/'));
        let sha = self
            .run(&["rev-parse", "--verify", "--quiet", &spec])
            .ok()?;
        match self.object_type(&sha)?.as_str() {
            "blob" => {
                let content = self.run_with(&["cat-file", "blob", &sha], None, &[]).ok()?;
                Some(PathContent::File { sha, content })
            }
            "tree" => {
                let out = self.run(&["ls-tree", "-l", &sha]).ok()?;
                let entries = out
                    .lines()
                    .filter_map(|line| {
                        let (meta, name) = line.split_once('\t')?;
                        let mut meta = meta.split_whitespace();
                        let _mode = meta.next()?;
                        let kind = meta.next()?.to_owned();
                        let sha = meta.next()?.to_owned();
                        let size = meta.next().and_then(|s| s.parse().ok());
                        Some(TreeEntry {
                            kind,
                            sha,
                            size,
                            name: name.to_owned(),
                        })
                    })
                    .collect();
                Some(PathContent::Dir(entries))
            }
            _ => None,
        }
    }
}

fn trim(out: &[u8]) -> String {
    String::from_utf8_lossy(out).trim().to_owned()
}

/// Parses a raw commit object.
fn parse_commit(sha: &str, raw: &[u8]) -> Option<GitCommitInfo> {
    let text = String::from_utf8_lossy(raw);
    let (headers, message) = text.split_once("\n\n").unwrap_or((&text, ""));
    let (mut tree, mut parents, mut author, mut committer) = (None, Vec::new(), None, None);
    for line in headers.lines() {
        if let Some(v) = line.strip_prefix("tree ") {
            tree = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("parent ") {
            parents.push(v.to_owned());
        } else if let Some(v) = line.strip_prefix("author ") {
            author = parse_signature(v);
        } else if let Some(v) = line.strip_prefix("committer ") {
            committer = parse_signature(v);
        }
    }
    let message = message.strip_suffix('\n').unwrap_or(message).to_owned();
    let subject = message
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    Some(GitCommitInfo {
        sha: sha.to_owned(),
        tree: tree?,
        parents,
        subject,
        message,
        author: author?,
        committer: committer?,
    })
}

/// Parses `Name <email> 1700000000 +0000`.
fn parse_signature(value: &str) -> Option<GitSignature> {
    let open = value.find('<')?;
    let close = value.rfind('>')?;
    let seconds: u64 = value
        .get(close + 1..)?
        .split_whitespace()
        .next()?
        .parse()
        .unwrap_or(0);
    Some(GitSignature {
        name: value[..open].trim().to_owned(),
        email: value.get(open + 1..close)?.to_owned(),
        time: UNIX_EPOCH + Duration::from_secs(seconds),
    })
}

/// The refusals of GitHub's receive side, as a hook: the fake sets, per push, which apply.
/// `CCA_FAKE_PROTECTED`: branches no push may update (GH006). `CCA_FAKE_NO_WORKFLOWS`: the
/// pusher lacks the `workflows` permission, so no commit may touch `.github/workflows/`.
/// `CCA_FAKE_MAX_FILE_BYTES`: the largest file (GitHub's is 100 MB, GH001). `CCA_FAKE_DECLINE`:
/// an organisation's own pre-receive hook refusing with this message.
pub(crate) const PRE_RECEIVE: &str = r#"#!/bin/sh
zero=0000000000000000000000000000000000000000
status=0
while read -r old new ref; do
    [ "$new" = "$zero" ] && continue
    branch=${ref#refs/heads/}
    for p in $CCA_FAKE_PROTECTED; do
        if [ "$p" = "$branch" ]; then
            echo "error: GH006: Protected branch update failed for $ref." >&2
            echo "error: Changes must be made through a pull request." >&2
            status=1
        fi
    done
    if [ -n "$CCA_FAKE_NO_WORKFLOWS" ]; then
        for c in $(git rev-list "$new" --not --all); do
            for f in $(git diff-tree --no-commit-id --name-only -r --root "$c" | grep '^\.github/workflows/'); do
                echo "refusing to allow a GitHub App to create or update workflow \`$f\` without \`workflows\` permission" >&2
                status=1
            done
        done
    fi
    if [ -n "$CCA_FAKE_MAX_FILE_BYTES" ]; then
        big=$(git rev-list --objects "$new" --not --all | git cat-file --batch-check='%(objecttype) %(objectsize) %(rest)' | awk -v max="$CCA_FAKE_MAX_FILE_BYTES" '$1 == "blob" && $2 > max { print $3 " is " $2 " bytes" }')
        if [ -n "$big" ]; then
            echo "error: GH001: Large files detected. You may want to try Git Large File Storage - https://git-lfs.github.com." >&2
            echo "$big" | while read -r line; do
                echo "error: File $line; this exceeds GitHub's file size limit of $CCA_FAKE_MAX_FILE_BYTES bytes" >&2
            done
            status=1
        fi
    fi
    if [ -n "$CCA_FAKE_DECLINE" ]; then
        echo "$CCA_FAKE_DECLINE" >&2
        status=1
    fi
done
exit $status
"#;

/// A request of git's HTTP protocol, ready for `git http-backend`.
#[derive(Debug)]
pub(crate) struct CgiRequest {
    /// An empty directory for `HOME`.
    pub(crate) home: PathBuf,
    /// The directory the repositories live under (`GIT_PROJECT_ROOT`).
    pub(crate) root: PathBuf,
    /// Path below the root: `/owner/name.git/info/refs`.
    pub(crate) path_info: String,
    pub(crate) method: String,
    pub(crate) query: String,
    pub(crate) content_type: Option<String>,
    pub(crate) content_encoding: Option<String>,
    pub(crate) git_protocol: Option<String>,
    /// Who is pushing or fetching (`REMOTE_USER`).
    pub(crate) remote_user: String,
    /// The push rules [`PRE_RECEIVE`] applies, as its variables.
    pub(crate) rules: Vec<(&'static str, String)>,
    pub(crate) body: Bytes,
}

/// Runs `git http-backend` for one request and turns its CGI answer into an HTTP response.
pub(crate) async fn http_backend(request: CgiRequest) -> Response {
    let mut command = tokio::process::Command::from(clean_git(&request.home));
    command
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", &request.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("PATH_INFO", &request.path_info)
        .env("REQUEST_METHOD", &request.method)
        .env("QUERY_STRING", &request.query)
        .env("REMOTE_USER", &request.remote_user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", request.body.len().to_string())
        .envs(request.rules.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in [
        ("CONTENT_TYPE", &request.content_type),
        ("HTTP_CONTENT_ENCODING", &request.content_encoding),
        ("HTTP_GIT_PROTOCOL", &request.git_protocol),
    ] {
        if let Some(value) = value {
            command.env(name, value);
        }
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return server_error(&format!("cannot run git http-backend: {error}")),
    };
    let stdin = child.stdin.take();
    let body = request.body.clone();
    // Fed from its own task: the backend may answer before it has read everything.
    let feeder = tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&body).await;
            let _ = stdin.shutdown().await;
        }
    });
    let output = child.wait_with_output().await;
    feeder.abort();
    let output = match output {
        Ok(output) => output,
        Err(error) => return server_error(&format!("git http-backend failed: {error}")),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.trim().is_empty() {
        tracing::debug!(path = %request.path_info, stderr = %stderr.trim(), "git http-backend");
    }
    if output.stdout.is_empty() {
        return server_error(&format!(
            "git http-backend answered nothing ({}): {}",
            output.status,
            stderr.trim()
        ));
    }
    cgi_response(&output.stdout)
}

fn server_error(message: &str) -> Response {
    tracing::error!(message, "fake GitHub git hosting");
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{message}\n")).into_response()
}

/// Turns a CGI program's output (headers, a blank line, the body) into an HTTP response.
pub(crate) fn cgi_response(out: &[u8]) -> Response {
    let (head, body) = match (find(out, b"\r\n\r\n"), find(out, b"\n\n")) {
        (Some(crlf), Some(lf)) if lf < crlf => (&out[..lf], &out[lf + 2..]),
        (Some(crlf), _) => (&out[..crlf], &out[crlf + 4..]),
        (None, Some(lf)) => (&out[..lf], &out[lf + 2..]),
        (None, None) => (out, &[][..]),
    };
    let mut response = Response::new(Body::from(body.to_vec()));
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok());
            if let Some(status) = code.and_then(|c| StatusCode::from_u16(c).ok()) {
                *response.status_mut() = status;
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            // The body is passed whole; its length is set from it.
        } else if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commit_objects() {
        let raw = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
parent 1111111111111111111111111111111111111111\n\
author A U Thor <a@example.com> 1700000000 +0200\n\
committer C O Mitter <c@example.com> 1700000100 +0000\n\
\n\
Fix the thing\n\
across two lines\n\
\n\
Body text.\n";
        let info = parse_commit("abc", raw).expect("parses");
        assert_eq!(info.tree, "4b825dc642cb6eb9a060e54bf8d69288fbee4904");
        assert_eq!(info.parents.len(), 1);
        assert_eq!(info.subject, "Fix the thing across two lines");
        assert_eq!(
            info.message,
            "Fix the thing\nacross two lines\n\nBody text."
        );
        assert_eq!(info.author.name, "A U Thor");
        assert_eq!(info.author.email, "a@example.com");
        assert_eq!(
            info.committer.time,
            UNIX_EPOCH + Duration::from_secs(1_700_000_100)
        );
    }

    #[test]
    fn splits_cgi_headers_from_the_body() {
        let response = cgi_response(
            b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nExpires: never\r\n\r\nnope\n",
        );
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()["content-type"], "text/plain");
        let plain = cgi_response(b"Content-Type: application/x-git-upload-pack-result\n\nPACK");
        assert_eq!(plain.status(), StatusCode::OK);
        assert_eq!(
            plain.headers()["content-type"],
            "application/x-git-upload-pack-result"
        );
    }
}
