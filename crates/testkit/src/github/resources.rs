//! The repository resources of the fake's REST API: refs, commits, issues, pulls, comments,
//! reactions, labels, deployments and contents, one handler each.

use super::*;

impl RepoCtx<'_> {
    pub(super) fn next_id(&mut self) -> u64 {
        *self.last_id += 1;
        *self.last_id
    }

    /// Routes a request on the repository. GitHub takes POST wherever it takes PATCH (for clients
    /// that cannot send PATCH), and octocrab relies on it, e.g. to edit comments.
    pub(super) fn route(&mut self, method: &str, rest: &[&str]) -> Answer {
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
            ("GET", ["commits", sha, "check-suites"]) => self.check_suites_of(sha),
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
            ("GET", ["check-suites", id, "check-runs"]) => self.check_runs_of(parse_number(id)?),
            ("GET", ["actions", "jobs", id, "logs"]) => self.job_logs(parse_number(id)?),
            ("GET", ["pulls", number, "reviews", id]) => {
                self.review_of(parse_number(number)?, parse_number(id)?)
            }
            ("GET", ["pulls", number, "reviews", id, "comments"]) => {
                self.review_comments_of(parse_number(number)?, parse_number(id)?)
            }
            ("POST", ["pulls", number, "comments", id, "replies"]) => {
                self.reply_in_thread(parse_number(number)?, parse_number(id)?)
            }
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

    pub(super) fn permission(&mut self, login: &str) -> Answer {
        *self.permission_lookups += 1;
        ok(self.repo.permission_json(self.api, login))
    }

    pub(super) fn get_ref(&self, branch: &str) -> Answer {
        let sha = self
            .repo
            .branches
            .get(branch)
            .ok_or_else(ApiError::not_found)?;
        ok(self.repo.ref_json(self.api, branch, sha))
    }

    pub(super) fn create_commit(&mut self) -> Answer {
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

    pub(super) fn create_ref(&mut self) -> Answer {
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

    pub(super) fn update_ref(&mut self, branch: &str) -> Answer {
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

    pub(super) fn delete_ref(&mut self, branch: &str) -> Answer {
        if !self.repo.delete_branch(branch) {
            return Err(ApiError::unprocessable("Reference does not exist"));
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    pub(super) fn list_branches(&self) -> Answer {
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

    pub(super) fn get_branch(&self, branch: &str) -> Answer {
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
    pub(super) fn list_commits(&self) -> Answer {
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
    pub(super) fn compare(&self, spec: &str) -> Answer {
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
    pub(super) fn contents(&self, path: &str) -> Answer {
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

    pub(super) fn list_pulls(&self) -> Answer {
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
    pub(super) fn create_label(&mut self) -> Answer {
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

    pub(super) fn create_pull(&mut self) -> Answer {
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

    pub(super) fn update_pull(&mut self, number: u64) -> Answer {
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

    pub(super) fn create_comment(&mut self, number: u64) -> Answer {
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

    pub(super) fn edit_comment(&mut self, id: u64) -> Answer {
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

    pub(super) fn react(&mut self, comment_id: u64) -> Answer {
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

    pub(super) fn list_deployments(&self) -> Answer {
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

    pub(super) fn create_deployment(&mut self) -> Answer {
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

    pub(super) fn create_deployment_status(&mut self, id: u64) -> Answer {
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
    pub(super) fn paginate(&self, items: Vec<Value>) -> Answer {
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

pub(super) fn comment_body(req: &Incoming) -> Result<&str, ApiError> {
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

pub(super) fn new_comment(id: u64, issue_number: u64, login: &str, body: &str) -> Comment {
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

pub(super) fn parse_number(segment: &str) -> Result<u64, ApiError> {
    segment.parse().map_err(|_| ApiError::not_found())
}

/// Branch names git would accept, roughly: enough to refuse obvious client bugs.
pub(super) fn valid_branch(name: &str) -> bool {
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
