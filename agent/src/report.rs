//! What the agent says on the PR: one status comment edited in place, one summary per run, and
//! reactions — within a budget of content-creating requests, with every known secret masked.
//!
//! GitHub's secondary rate limit allows 80 content-creating requests a minute. Every such
//! request (comment, edit, reaction, deployment, deployment status) first takes a slot from one
//! [`Budget`] (a sliding minute, 60 by default), so no sequence of events can exceed it: the
//! status comment is coalesced (only its latest state is sent, at most once per interval), and
//! summaries wait for a slot rather than being dropped.

pub mod destination;
mod jira;
mod pr;

use std::collections::VecDeque;
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

pub use cca_domain::texts::agent::{RunSummary, StatusView, utc};

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

    /// Replies in the review thread of the PR that `comment_id` heads (masked, marked), logging
    /// instead of failing.
    pub async fn reply_in_thread(&self, comment_id: u64, body: &str) {
        let body = self.prepare(body);
        self.inner.budget.acquire().await;
        let result = match self.inner.access.client().await {
            Ok(c) => c
                .reply_in_thread(
                    &self.inner.access.repo,
                    self.inner.number,
                    comment_id,
                    &body,
                )
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            warn!(comment_id, error = %self.secrets().mask(&e.to_string()), "cannot reply in a review thread");
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
}
