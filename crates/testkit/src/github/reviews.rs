//! Reviews of pull requests and their comments on the diff: made by tests as a reviewer would,
//! read and answered through the REST API as GitHub serves them.

use super::*;

/// A submitted review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub id: u64,
    pub pull_number: u64,
    pub user: String,
    /// `APPROVED`, `CHANGES_REQUESTED` or `COMMENTED`, as GitHub's API spells it.
    pub state: String,
    pub body: String,
    pub commit_id: String,
}

/// A comment on a pull request's diff: a thread's first comment or a reply in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewComment {
    pub id: u64,
    pub pull_number: u64,
    pub review_id: u64,
    pub user: String,
    pub body: String,
    pub path: String,
    pub line: u64,
    pub start_line: Option<u64>,
    pub diff_hunk: String,
    pub in_reply_to_id: Option<u64>,
}

/// A comment a test's reviewer makes with a review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffComment {
    pub path: String,
    pub start_line: Option<u64>,
    pub line: u64,
    pub diff_hunk: String,
    pub body: String,
}

/// The two comments of a review that requests changes: a range of `app.js` and a line of
/// `README.md`, each with its hunk.
pub fn two_diff_comments() -> [DiffComment; 2] {
    [
        DiffComment {
            path: "app.js".into(),
            start_line: Some(2),
            line: 4,
            diff_hunk: "@@ -1,4 +1,4 @@\n-var a = 1;\n+let a = 1;".into(),
            body: "Use const here.".into(),
        },
        DiffComment {
            path: "README.md".into(),
            start_line: None,
            line: 7,
            diff_hunk: "@@ -7 +7 @@\n-Old title\n+New title".into(),
            body: "Say what it does.".into(),
        },
    ]
}

impl FakeGitHub {
    /// Submits a review of PR `number` by `login` with `comments` on the diff; returns the
    /// review's id and its comments' ids.
    ///
    /// # Panics
    /// When the repository has no pull request `number`.
    pub fn add_review(
        &self,
        repo: &str,
        number: u64,
        login: &str,
        state: &str,
        body: &str,
        comments: &[DiffComment],
    ) -> (u64, Vec<u64>) {
        let mut state_guard = self.state();
        let review_id = state_guard.next_id();
        let ids: Vec<u64> = comments.iter().map(|_| state_guard.next_id()).collect();
        let r = state_guard.repo_mut(repo);
        let commit_id = r
            .pulls
            .get(&number)
            .unwrap_or_else(|| panic!("{repo} has no pull request #{number}"))
            .head_sha
            .clone();
        r.reviews.push(Review {
            id: review_id,
            pull_number: number,
            user: login.to_owned(),
            state: state.to_ascii_uppercase(),
            body: body.to_owned(),
            commit_id,
        });
        for (c, id) in comments.iter().zip(&ids) {
            r.review_comments.push(ReviewComment {
                id: *id,
                pull_number: number,
                review_id,
                user: login.to_owned(),
                body: c.body.clone(),
                path: c.path.clone(),
                line: c.line,
                start_line: c.start_line,
                diff_hunk: c.diff_hunk.clone(),
                in_reply_to_id: None,
            });
        }
        (review_id, ids)
    }

    /// The comments on the diff of PR `number`, replies included, oldest first.
    pub fn review_comments(&self, repo: &str, number: u64) -> Vec<ReviewComment> {
        self.with_repo(repo, |r| {
            r.review_comments
                .iter()
                .filter(|c| c.pull_number == number)
                .cloned()
                .collect()
        })
    }

    /// The `pull_request_review.submitted` payload of review `review_id`, as GitHub delivers it.
    pub fn review_event(&self, repo: &str, review_id: u64, installation: u64) -> Value {
        let api = self.url().to_owned();
        self.with_repo(repo, |r| {
            let review = r
                .reviews
                .iter()
                .find(|v| v.id == review_id)
                .expect("the review exists")
                .clone();
            json!({
                "action": "submitted",
                "review": r.review_json(&api, &review),
                "pull_request": { "number": review.pull_number, "url": format!("{}/pulls/{}", r.api_url(&api), review.pull_number) },
                "repository": r.json(&api),
                "sender": user_json(&api, &review.user),
                "installation": { "id": installation },
            })
        })
    }

    /// The `pull_request_review_comment.created` payload of comment `comment_id`.
    pub fn review_comment_event(&self, repo: &str, comment_id: u64, installation: u64) -> Value {
        let api = self.url().to_owned();
        self.with_repo(repo, |r| {
            let c = r
                .review_comments
                .iter()
                .find(|c| c.id == comment_id)
                .expect("the review comment exists")
                .clone();
            json!({
                "action": "created",
                "comment": r.review_comment_json(&api, &c),
                "pull_request": { "number": c.pull_number, "url": format!("{}/pulls/{}", r.api_url(&api), c.pull_number) },
                "repository": r.json(&api),
                "sender": user_json(&api, &c.user),
                "installation": { "id": installation },
            })
        })
    }
}

impl Repo {
    pub(super) fn review_json(&self, api: &str, v: &Review) -> Value {
        json!({
            "id": v.id,
            "user": user_json(api, &v.user),
            "body": if v.body.is_empty() { Value::Null } else { json!(v.body) },
            "state": v.state.to_ascii_lowercase(),
            "commit_id": v.commit_id,
            "pull_request_url": format!("{}/pulls/{}", self.api_url(api), v.pull_number),
        })
    }

    pub(super) fn review_comment_json(&self, api: &str, c: &ReviewComment) -> Value {
        let mut v = json!({
            "id": c.id,
            "pull_request_review_id": c.review_id,
            "user": user_json(api, &c.user),
            "body": c.body,
            "path": c.path,
            "line": c.line,
            "original_line": c.line,
            "start_line": c.start_line,
            "original_start_line": c.start_line,
            "side": "RIGHT",
            "diff_hunk": c.diff_hunk,
            "url": format!("{}/pulls/comments/{}", self.api_url(api), c.id),
            "pull_request_url": format!("{}/pulls/{}", self.api_url(api), c.pull_number),
        });
        if let Some(to) = c.in_reply_to_id {
            v["in_reply_to_id"] = json!(to);
        }
        v
    }
}

impl RepoCtx<'_> {
    /// `GET /pulls/{n}/reviews/{id}`.
    pub(super) fn review_of(&self, number: u64, review_id: u64) -> Answer {
        let review = self
            .repo
            .reviews
            .iter()
            .find(|v| v.id == review_id && v.pull_number == number)
            .ok_or_else(ApiError::not_found)?;
        ok(self.repo.review_json(self.api, review))
    }

    /// `GET /pulls/{n}/reviews/{id}/comments`.
    pub(super) fn review_comments_of(&self, number: u64, review_id: u64) -> Answer {
        if !self
            .repo
            .reviews
            .iter()
            .any(|v| v.id == review_id && v.pull_number == number)
        {
            return Err(ApiError::not_found());
        }
        let list = self
            .repo
            .review_comments
            .iter()
            .filter(|c| c.review_id == review_id)
            .map(|c| self.repo.review_comment_json(self.api, c))
            .collect();
        self.paginate(list)
    }

    /// `POST /pulls/{n}/comments/{id}/replies`: only a thread's first comment takes replies,
    /// as on GitHub.
    pub(super) fn reply_in_thread(&mut self, number: u64, comment_id: u64) -> Answer {
        let Some(head) = self
            .repo
            .review_comments
            .iter()
            .find(|c| c.id == comment_id && c.pull_number == number)
            .cloned()
        else {
            return Err(ApiError::not_found());
        };
        if head.in_reply_to_id.is_some() {
            return Err(ApiError::field(
                "PullRequestReviewComment",
                "in_reply_to",
                "invalid",
            ));
        }
        let body = comment_body(self.req)?.to_owned();
        let review_id = self.next_id();
        let id = self.next_id();
        let reply = ReviewComment {
            id,
            pull_number: number,
            review_id,
            user: self.actor.login.to_owned(),
            body,
            path: head.path.clone(),
            line: head.line,
            start_line: head.start_line,
            diff_hunk: head.diff_hunk.clone(),
            in_reply_to_id: Some(head.id),
        };
        let json = self.repo.review_comment_json(self.api, &reply);
        self.repo.review_comments.push(reply);
        created(json)
    }
}
