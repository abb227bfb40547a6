//! Checks on commits: suites of check runs that tests make as a CI app would, read through the
//! REST API, and GitHub Actions job logs, which GitHub serves by redirecting to a short-lived
//! download URL that takes no token.

use super::*;

/// The app GitHub Actions' check runs belong to.
pub const ACTIONS_APP: &str = "github-actions";

/// A check run a test's CI reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckRunSpec {
    pub name: String,
    /// `success`, `failure`, `timed_out`, …
    pub conclusion: String,
    /// The app that runs it ([`ACTIONS_APP`] for a job with a log).
    pub app: String,
    pub title: Option<String>,
    pub summary: Option<String>,
    /// The job's log, for an Actions check run.
    pub log: Option<String>,
}

/// A suite as the fake keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSuiteRec {
    pub id: u64,
    pub head_sha: String,
    pub conclusion: String,
    pub app: String,
    pub runs: Vec<(u64, CheckRunSpec)>,
}

impl FakeGitHub {
    /// Completes a suite of `runs` on `head_sha` (its conclusion: `failure` if any run failed,
    /// else `success`); returns its id.
    pub fn add_check_suite(&self, repo: &str, head_sha: &str, runs: &[CheckRunSpec]) -> u64 {
        let mut state = self.state();
        let id = state.next_id();
        let ids: Vec<u64> = runs.iter().map(|_| state.next_id()).collect();
        let failed = runs
            .iter()
            .any(|r| matches!(r.conclusion.as_str(), "failure" | "timed_out"));
        let r = state.repo_mut(repo);
        r.check_suites.push(CheckSuiteRec {
            id,
            head_sha: head_sha.to_owned(),
            conclusion: if failed { "failure" } else { "success" }.to_owned(),
            app: runs
                .first()
                .map_or_else(|| ACTIONS_APP.to_owned(), |r| r.app.clone()),
            runs: ids.into_iter().zip(runs.iter().cloned()).collect(),
        });
        id
    }

    /// The `check_suite.completed` payload of suite `suite_id`, naming the open PRs whose head
    /// is its commit, as GitHub does.
    pub fn check_suite_event(&self, repo: &str, suite_id: u64, installation: u64) -> Value {
        let api = self.url().to_owned();
        self.with_repo(repo, |r| {
            let suite = r
                .check_suites
                .iter()
                .find(|s| s.id == suite_id)
                .expect("the suite exists")
                .clone();
            let prs: Vec<Value> = r
                .pulls
                .values()
                .filter(|p| {
                    p.state == "open" && p.head_sha == suite.head_sha && p.head_repo.is_none()
                })
                .map(
                    |p| json!({ "number": p.number, "head": { "ref": p.head, "sha": p.head_sha } }),
                )
                .collect();
            json!({
                "action": "completed",
                "check_suite": {
                    "id": suite.id,
                    "head_sha": suite.head_sha,
                    "status": "completed",
                    "conclusion": suite.conclusion,
                    "pull_requests": prs,
                    "app": { "slug": suite.app },
                },
                "repository": r.json(&api),
                "sender": user_json(&api, &format!("{}[bot]", suite.app)),
                "installation": { "id": installation },
            })
        })
    }
}

impl RepoCtx<'_> {
    /// `GET /check-suites/{id}/check-runs`.
    pub(super) fn check_runs_of(&self, suite_id: u64) -> Answer {
        let suite = self
            .repo
            .check_suites
            .iter()
            .find(|s| s.id == suite_id)
            .ok_or_else(ApiError::not_found)?;
        let runs: Vec<Value> = suite
            .runs
            .iter()
            .map(|(id, run)| {
                json!({
                    "id": id,
                    "name": run.name,
                    "head_sha": suite.head_sha,
                    "status": "completed",
                    "conclusion": run.conclusion,
                    "output": {
                        "title": run.title,
                        "summary": run.summary,
                        "text": Value::Null,
                    },
                    "app": { "slug": run.app },
                })
            })
            .collect();
        ok(json!({ "total_count": runs.len(), "check_runs": runs }))
    }

    /// `GET /commits/{sha}/check-suites`.
    pub(super) fn check_suites_of(&self, sha: &str) -> Answer {
        let suites: Vec<Value> = self
            .repo
            .check_suites
            .iter()
            .filter(|s| s.head_sha == sha)
            .map(|s| {
                json!({
                    "id": s.id,
                    "head_sha": s.head_sha,
                    "status": "completed",
                    "conclusion": s.conclusion,
                    "app": { "slug": s.app },
                })
            })
            .collect();
        ok(json!({ "total_count": suites.len(), "check_suites": suites }))
    }

    /// `GET /actions/jobs/{id}/logs`: a redirect to the log's download URL, as GitHub answers;
    /// 404 for a check run that is no Actions job.
    pub(super) fn job_logs(&self, job_id: u64) -> Answer {
        let has_log = self.repo.check_suites.iter().any(|s| {
            s.runs
                .iter()
                .any(|(id, run)| *id == job_id && run.app == ACTIONS_APP && run.log.is_some())
        });
        if !has_log {
            return Err(ApiError::not_found());
        }
        let location = format!(
            "{}/_job-logs/{}/{}/{job_id}",
            self.api, self.repo.owner, self.repo.name
        );
        Ok((
            StatusCode::FOUND,
            [(
                header::LOCATION,
                HeaderValue::from_str(&location).expect("a URL"),
            )],
        )
            .into_response())
    }
}

impl State {
    /// The download behind a job log's redirect (no token needed, as GitHub's blob URLs).
    pub(super) fn job_log_download(&self, owner: &str, name: &str, job_id: &str) -> Answer {
        let key = format!("{owner}/{name}").to_lowercase();
        let job_id: u64 = job_id.parse().map_err(|_| ApiError::not_found())?;
        let log = self
            .repos
            .get(&key)
            .and_then(|r| {
                r.check_suites
                    .iter()
                    .flat_map(|s| s.runs.iter())
                    .find(|(id, _)| *id == job_id)
                    .and_then(|(_, run)| run.log.clone())
            })
            .ok_or_else(ApiError::not_found)?;
        Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], log).into_response())
    }
}
