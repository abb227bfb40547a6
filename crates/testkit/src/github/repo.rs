//! A fake repository's state: branches, commits (stored or hosted in a bare repository), and
//! its JSON.

use super::*;

impl Repo {
    pub(super) fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    pub(super) fn take_number(&mut self) -> u64 {
        let number = self.next_number;
        self.next_number += 1;
        number
    }

    pub(super) fn has_number(&self, number: u64) -> bool {
        self.issues.contains_key(&number) || self.pulls.contains_key(&number)
    }

    pub(super) fn store_commit(
        &mut self,
        tree: String,
        parents: Vec<String>,
        message: String,
    ) -> String {
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
    pub(super) fn record_branch(&mut self, branch: &str, sha: &str) {
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
    pub(super) fn write_pull_refs(&self) {
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
    pub(super) fn refresh(&mut self) {
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
    pub(super) fn move_ref(
        &mut self,
        branch: &str,
        sha: &str,
        expect: Expect<'_>,
    ) -> Result<(), String> {
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
    pub(super) fn delete_branch(&mut self, branch: &str) -> bool {
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
    pub(super) fn commit_hosted_file(
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
    pub(super) fn commit_info(&self, sha: &str) -> Option<GitCommitInfo> {
        match &self.hosted {
            Some(bare) => bare.commit(sha),
            None => self.commits.get(sha).map(fake_commit_info),
        }
    }

    pub(super) fn commit(&self, sha: &str) -> Option<Commit> {
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

    pub(super) fn has_commit(&self, sha: &str) -> bool {
        match &self.hosted {
            Some(bare) => bare.object_type(sha).as_deref() == Some("commit"),
            None => self.commits.contains_key(sha),
        }
    }

    pub(super) fn has_tree(&self, tree: &str) -> bool {
        match &self.hosted {
            Some(bare) => bare.object_type(tree).as_deref() == Some("tree"),
            None => self.commits.values().any(|c| c.tree == tree),
        }
    }

    /// The commit a branch (`name` or `refs/heads/name`) or commit id names.
    pub(super) fn resolve(&self, rev: &str) -> Option<String> {
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
    pub(super) fn history(&self, sha: &str) -> Vec<GitCommitInfo> {
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
    pub(super) fn is_ancestor(&self, ancestor: &str, descendant: &str) -> bool {
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

    pub(super) fn comment(&self, id: u64) -> Option<&Comment> {
        self.comments.iter().find(|c| c.id == id)
    }

    pub(super) fn deployment(&self, id: u64) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.id == id)
    }

    pub(super) fn deployment_mut(&mut self, id: u64) -> Option<&mut Deployment> {
        self.deployments.iter_mut().find(|d| d.id == id)
    }

    /// The collaborator permission answer for `login`.
    pub(super) fn permission_json(&self, api: &str, login: &str) -> Value {
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

    pub(super) fn api_url(&self, api: &str) -> String {
        format!("{api}/repos/{}", self.full_name())
    }

    pub(super) fn html_url(&self) -> String {
        format!("https://github.com/{}", self.full_name())
    }

    pub(super) fn json(&self, api: &str) -> Value {
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

    pub(super) fn ref_json(&self, api: &str, branch: &str, sha: &str) -> Value {
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
    pub(super) fn commit_json(&self, api: &str, commit: &GitCommitInfo) -> Value {
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
    pub(super) fn rest_commit_json(&self, api: &str, commit: &GitCommitInfo) -> Value {
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

    pub(super) fn branch_json(&self, api: &str, branch: &str, sha: &str) -> Value {
        json!({
            "label": format!("{}:{branch}", self.owner),
            "ref": branch,
            "sha": sha,
            "user": user_json(api, &self.owner),
            "repo": self.json(api),
        })
    }

    pub(super) fn pull_json(&self, api: &str, pull: &Pull) -> Value {
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

    pub(super) fn issue_json(&self, api: &str, number: u64) -> Option<Value> {
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

    pub(super) fn comment_json(&self, api: &str, comment: &Comment) -> Value {
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

    pub(super) fn deployment_json(&self, api: &str, d: &Deployment) -> Value {
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

    pub(super) fn deployment_status_json(
        &self,
        api: &str,
        d: &Deployment,
        s: &DeploymentStatus,
    ) -> Value {
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
pub(super) fn fake_commit_info(commit: &Commit) -> GitCommitInfo {
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
pub(super) fn noreply_email(login: &str) -> String {
    format!("{}+{login}@users.noreply.github.com", login_id(login))
}

/// How an account signs the commits it makes, dated now.
pub(super) fn identity(login: &str) -> Identity {
    Identity {
        name: login.to_owned(),
        email: noreply_email(login),
        date: None,
    }
}

/// An `author` or `committer` object of a Git Data API request, if it has a name and an e-mail.
pub(super) fn identity_from(value: &Value) -> Option<Identity> {
    Some(Identity {
        name: value["name"].as_str()?.to_owned(),
        email: value["email"].as_str()?.to_owned(),
        date: value["date"].as_str().map(str::to_owned),
    })
}

/// A branch name of a hosted repository, else any revision git understands.
pub(super) fn resolve_rev(bare: &Bare, rev: &str) -> Option<String> {
    bare.resolve(&format!("refs/heads/{rev}"))
        .or_else(|| bare.resolve(rev))
}

/// Where hosted repositories live under the fake's directory (`GIT_PROJECT_ROOT`).
pub(super) fn repos_dir(root: &std::path::Path) -> PathBuf {
    root.join("repos")
}

/// The empty `HOME` git runs with, so no user configuration applies.
pub(super) fn home_dir(root: &std::path::Path) -> PathBuf {
    root.join("home")
}
