//! What the agent says on the PR: one status comment edited in place, one summary per run, and
//! reactions — within a budget of content-creating requests, with every known secret masked.
//!
//! GitHub's secondary rate limit allows 80 content-creating requests a minute. Every such
//! request (comment, edit, reaction, deployment, deployment status) first takes a slot from one
//! [`Budget`] (a sliding minute, 60 by default), so no sequence of events can exceed it: the
//! status comment is coalesced (only its latest state is sent, at most once per interval), and
//! summaries wait for a slot rather than being dropped.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use cca_domain::RepoName;
use cca_domain::mask::Masker;
use cca_domain::naming::clip;
use cca_domain::texts::MARKER;
use cca_github::{GitHub, GitHubError, RepoClient};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::warn;

use crate::git::{CommitInfo, FileChange};

/// At most `max` acquisitions in any `window`.
#[derive(Debug)]
pub struct Budget {
    max: usize,
    window: Duration,
    sent: Mutex<VecDeque<Instant>>,
}

impl Budget {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max: max.max(1) as usize,
            window,
            sent: Mutex::new(VecDeque::new()),
        }
    }

    /// Takes a slot, waiting until one is free.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                while sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    sent.pop_front();
                }
                if sent.len() < self.max {
                    sent.push_back(now);
                    return;
                }
                // The oldest slot frees at its time plus the window.
                sent.front().map_or(Duration::ZERO, |t| {
                    (*t + self.window).saturating_duration_since(now)
                })
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Secret values known so far (tokens are added as they are minted); shared by everything that
/// writes text out.
#[derive(Debug, Clone, Default)]
pub struct Secrets(Arc<RwLock<Masker>>);

impl Secrets {
    pub fn add(&self, secret: &str) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .add(secret);
    }

    pub fn mask(&self, text: &str) -> String {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .mask(text)
    }
}

/// The GitHub identity of the session: a token scoped to its repository, refreshed as it ages.
#[derive(Debug, Clone)]
pub struct RepoAccess {
    pub github: GitHub,
    pub installation: u64,
    pub repo: RepoName,
    pub secrets: Secrets,
}

impl RepoAccess {
    /// The client with a current token (minted or refreshed when needed, and masked from then on).
    pub async fn client(&self) -> Result<RepoClient, GitHubError> {
        self.token().await?;
        self.github.repo_client(self.installation, &self.repo).await
    }

    /// The current token itself (for git), masked from now on.
    pub async fn token(&self) -> Result<secrecy::SecretString, GitHubError> {
        let token = self
            .github
            .installation_token(self.installation, Some(&self.repo))
            .await?;
        self.secrets
            .add(secrecy::ExposeSecret::expose_secret(&token.token));
        Ok(token.token)
    }
}

/// What the status comment shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusView {
    pub session_id: String,
    pub headline: String,
    pub preview_url: Option<String>,
    pub app: Option<String>,
    pub step: Option<String>,
    pub last_activity: Option<i64>,
    pub runs: u32,
    pub turns: u32,
    pub cost_usd: f64,
    pub queued: usize,
    /// Why untrusted code runs unconfined, when it does: said in every version of the comment.
    pub unconfined: Option<String>,
    /// The PR is open for review because GitHub refused a draft in this repository.
    pub ready_not_draft: bool,
}

impl StatusView {
    /// The comment body.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{MARKER}\n### 🤖 Claude agent `{}`\n\n**Status:** {}\n",
            self.session_id, self.headline
        );
        if let Some(url) = &self.preview_url {
            let app = self.app.as_deref().unwrap_or("not started");
            let _ = writeln!(s, "**Preview:** {url} (app: {app})");
        }
        if let Some(step) = &self.step {
            let _ = writeln!(s, "**Current step:** {}", clip(step, 300));
        }
        if self.queued > 0 {
            let _ = writeln!(s, "**Queued requests:** {}", self.queued);
        }
        if let Some(t) = self.last_activity {
            let _ = writeln!(s, "**Last activity:** {}", utc(t));
        }
        if self.ready_not_draft {
            let _ = writeln!(
                s,
                "**Pull request:** open for review, not a draft: GitHub offers no draft pull requests in this repository. Wait for this comment to say the run finished before you merge."
            );
        }
        if let Some(why) = &self.unconfined {
            let _ = writeln!(
                s,
                "**:warning: No sandbox:** {why}. Code from the issue, the model and the repository can reach this agent's credentials."
            );
        }
        let _ = write!(
            s,
            "\n<sub>Runs: {} · Turns: {} · Cost: ${:.4} · This comment is updated as the agent works; comment on the PR to give it more to do.</sub>",
            self.runs, self.turns, self.cost_usd
        );
        s
    }
}

/// `2026-11-21 12:00:03 UTC`.
pub fn utc(unix: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .map_or_else(|| unix.to_string(), |t| format!("{t} UTC"))
}

/// How a run ended, for its summary.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub number: u32,
    pub author: Option<String>,
    pub succeeded: bool,
    pub text: String,
    pub failure: Option<String>,
    /// A limit that ended or refused the work, said plainly.
    pub limit: Option<String>,
    pub commits: Vec<CommitInfo>,
    pub files: Vec<FileChange>,
    pub cost_usd: Option<f64>,
    pub turns: Option<u32>,
    pub duration: Duration,
    pub push_error: Option<String>,
}

impl RunSummary {
    pub fn render(&self) -> String {
        let mut s = String::from(MARKER);
        s.push('\n');
        let who = self
            .author
            .as_deref()
            .map(|a| format!(" (requested by @{a})"))
            .unwrap_or_default();
        if self.succeeded {
            let _ = writeln!(s, "### ✅ Run {} finished{who}\n", self.number);
        } else {
            let _ = writeln!(s, "### ⚠️ Run {} failed{who}\n", self.number);
        }
        if let Some(why) = &self.failure {
            let _ = writeln!(s, "**Reason:** {}\n", clip(why, 2000));
        }
        if let Some(limit) = &self.limit {
            let _ = writeln!(s, "**Limit reached:** {limit}\n");
        }
        if !self.text.trim().is_empty() {
            for line in clip(self.text.trim(), 3000).lines() {
                let _ = writeln!(s, "> {line}");
            }
            s.push('\n');
        }
        if self.commits.is_empty() {
            s.push_str("**Commits:** none in this run\n");
        } else {
            let _ = writeln!(s, "**Commits** (this run, newest first):");
            for c in self.commits.iter().take(30) {
                let _ = writeln!(
                    s,
                    "- `{}` {}",
                    &c.sha[..c.sha.len().min(7)],
                    clip(&c.subject, 120)
                );
            }
            if self.commits.len() > 30 {
                let _ = writeln!(s, "- … and {} more", self.commits.len() - 30);
            }
        }
        if !self.files.is_empty() {
            let list: Vec<String> = self
                .files
                .iter()
                .take(50)
                .map(|f| format!("`{} {}`", f.status, f.path))
                .collect();
            let more = if self.files.len() > 50 {
                format!(" and {} more", self.files.len() - 50)
            } else {
                String::new()
            };
            let _ = writeln!(s, "\n**Files changed:** {}{more}", list.join(", "));
        }
        if let Some(e) = &self.push_error {
            let _ = writeln!(s, "\n:warning: **Push failed:** {}", clip(e, 1000));
        }
        let cost = self
            .cost_usd
            .map_or_else(|| "unknown".to_owned(), |c| format!("${c:.4}"));
        let turns = self
            .turns
            .map_or_else(|| "unknown".to_owned(), |t| t.to_string());
        let _ = write!(
            s,
            "\n<sub>Cost: {cost} · Turns: {turns} · Duration: {} s</sub>",
            self.duration.as_secs()
        );
        s
    }
}

/// Posts to one PR (or issue) on behalf of the session.
#[derive(Debug, Clone)]
pub struct Reporter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    access: RepoAccess,
    number: u64,
    budget: Arc<Budget>,
    interval: Duration,
    view: watch::Sender<StatusView>,
    status_comment: Mutex<Option<u64>>,
    /// The view last sent, so an unchanged view is not sent again.
    sent: Mutex<Option<String>>,
}

impl Reporter {
    /// A reporter for PR (or issue) `number`; starts the task that keeps the status comment.
    pub fn start(
        access: RepoAccess,
        number: u64,
        budget: Arc<Budget>,
        interval: Duration,
        view: StatusView,
    ) -> Self {
        let (tx, rx) = watch::channel(view);
        let inner = Arc::new(Inner {
            access,
            number,
            budget,
            interval,
            view: tx,
            status_comment: Mutex::new(None),
            sent: Mutex::new(None),
        });
        tokio::spawn(status_loop(Arc::downgrade(&inner), rx));
        Self { inner }
    }

    pub fn secrets(&self) -> &Secrets {
        &self.inner.access.secrets
    }

    /// Changes what the status comment shows; it is sent within the interval.
    pub fn update(&self, f: impl FnOnce(&mut StatusView)) {
        self.inner.view.send_modify(f);
    }

    /// Sends the status now, whatever the interval (before the process exits).
    pub async fn flush(&self) {
        send_status(&self.inner).await;
    }

    /// Posts a new comment (masked, marked); returns its id.
    pub async fn post(&self, body: &str) -> Result<u64, GitHubError> {
        let body = self.prepare(body);
        self.inner.budget.acquire().await;
        let client = self.inner.access.client().await?;
        client
            .comment(&self.inner.access.repo, self.inner.number, &body)
            .await
    }

    /// Posts, logging instead of failing: a report must never end the session.
    pub async fn post_logged(&self, body: &str) {
        if let Err(e) = self.post(body).await {
            warn!(error = %self.secrets().mask(&e.to_string()), "cannot post a comment");
        }
    }

    /// Adds a reaction to a comment.
    pub async fn react(&self, comment_id: u64, content: &str) {
        self.inner.budget.acquire().await;
        let result = match self.inner.access.client().await {
            Ok(c) => c.react(&self.inner.access.repo, comment_id, content).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            warn!(comment_id, error = %self.secrets().mask(&e.to_string()), "cannot add a reaction");
        }
    }

    /// Takes a slot of the request budget (for other content-creating calls).
    pub async fn slot(&self) {
        self.inner.budget.acquire().await;
    }

    fn prepare(&self, body: &str) -> String {
        let masked = self.secrets().mask(body);
        let mut body = if masked.contains(MARKER) {
            masked
        } else {
            format!("{MARKER}\n{masked}")
        };
        // GitHub refuses comments over 65,536 characters.
        if body.chars().count() > 60_000 {
            body = format!("{}\n\n(cut)", clip(&body, 60_000));
        }
        body
    }
}

async fn status_loop(inner: std::sync::Weak<Inner>, mut rx: watch::Receiver<StatusView>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let interval = strong.interval;
        send_status(&strong).await;
        drop(strong);
        tokio::time::sleep(interval).await;
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Creates the status comment, or edits it when the view changed since it was last sent.
async fn send_status(inner: &Inner) {
    let body = inner.access.secrets.mask(&inner.view.borrow().render());
    {
        let sent = inner.sent.lock().unwrap_or_else(PoisonError::into_inner);
        if sent.as_deref() == Some(body.as_str()) {
            return;
        }
    }
    inner.budget.acquire().await;
    let client = match inner.access.client().await {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %inner.access.secrets.mask(&e.to_string()), "cannot update the status comment");
            return;
        }
    };
    let existing = *inner
        .status_comment
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let result = match existing {
        Some(id) => client
            .edit_comment(&inner.access.repo, id, &body)
            .await
            .map(|()| id),
        None => {
            client
                .comment(&inner.access.repo, inner.number, &body)
                .await
        }
    };
    match result {
        Ok(id) => {
            *inner
                .status_comment
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(id);
            *inner.sent.lock().unwrap_or_else(PoisonError::into_inner) = Some(body);
        }
        Err(e) => {
            warn!(error = %inner.access.secrets.mask(&e.to_string()), "cannot update the status comment");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_budget_never_allows_more_than_its_maximum_in_any_window() {
        let budget = Arc::new(Budget::new(80, Duration::from_secs(60)));
        let times = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..400)
            .map(|_| {
                let (b, t) = (budget.clone(), times.clone());
                tokio::spawn(async move {
                    b.acquire().await;
                    t.lock().unwrap().push(Instant::now());
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let mut times = times.lock().unwrap().clone();
        times.sort();
        assert_eq!(times.len(), 400);
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < Duration::from_secs(60))
                .count();
            assert!(in_window <= 80, "{in_window} requests within a minute");
        }
        // And it does not wait more than it must: 400 slots take 4 full windows.
        let span = times[399].duration_since(times[0]);
        assert!(
            span >= Duration::from_secs(240) && span < Duration::from_secs(241),
            "{span:?}"
        );
    }

    #[test]
    fn a_summary_lists_this_runs_commits_newest_first_and_the_numbers() {
        let s = RunSummary {
            number: 2,
            author: Some("octocat".into()),
            succeeded: true,
            text: "Created hello.txt".into(),
            failure: None,
            limit: None,
            commits: vec![
                CommitInfo {
                    sha: "b".repeat(40),
                    subject: "Second".into(),
                },
                CommitInfo {
                    sha: "a".repeat(40),
                    subject: "First".into(),
                },
            ],
            files: vec![FileChange {
                status: "A".into(),
                path: "hello.txt".into(),
            }],
            cost_usd: Some(0.0123),
            turns: Some(2),
            duration: Duration::from_secs(12),
            push_error: None,
        }
        .render();
        assert!(s.starts_with(MARKER));
        assert!(s.contains("Run 2 finished (requested by @octocat)"));
        let second = s.find("bbbbbbb").unwrap();
        let first = s.find("aaaaaaa").unwrap();
        assert!(second < first);
        assert!(s.contains("`A hello.txt`"));
        assert!(s.contains("$0.0123") && s.contains("Turns: 2") && s.contains("12 s"));
    }

    #[test]
    fn a_failed_summary_says_why() {
        let s = RunSummary {
            number: 1,
            author: None,
            succeeded: false,
            text: String::new(),
            failure: Some("API Error: 500".into()),
            limit: Some("the run's wall time of 60 s".into()),
            commits: vec![],
            files: vec![],
            cost_usd: None,
            turns: None,
            duration: Duration::from_secs(3),
            push_error: None,
        }
        .render();
        assert!(s.contains("Run 1 failed"));
        assert!(s.contains("**Reason:** API Error: 500"));
        assert!(s.contains("**Limit reached:**"));
        assert!(s.contains("none in this run"));
    }

    #[test]
    fn status_renders_what_is_known() {
        let v = StatusView {
            session_id: "abc".into(),
            headline: "Working".into(),
            preview_url: Some("https://abc.uat.example.com".into()),
            app: Some("ready".into()),
            step: Some("✏️ Write hello.txt".into()),
            last_activity: Some(0),
            runs: 1,
            turns: 2,
            cost_usd: 0.5,
            queued: 1,
            unconfined: None,
            ready_not_draft: false,
        };
        let s = v.render();
        assert!(s.contains("https://abc.uat.example.com (app: ready)"));
        assert!(s.contains("1970-01-01 00:00:00 UTC"));
        assert!(s.contains("**Queued requests:** 1"));
        assert!(!s.contains("No sandbox"));
        let s = StatusView {
            unconfined: Some("bubblewrap does not work here".into()),
            ..v
        }
        .render();
        assert!(
            s.contains("**:warning: No sandbox:** bubblewrap does not work here"),
            "{s}"
        );
    }
}
