//! The run's summary as a comment on the PR (or the issue of a session without one).

use std::time::Duration;

use futures::future::BoxFuture;

use super::Reporter;
use super::destination::Destination;
use cca_domain::texts::agent::RunSummary;

/// How long a summary may wait for its slot when the session is stopping.
const STOPPING_LIMIT: Duration = Duration::from_secs(3);

pub struct PullRequest {
    reporter: Reporter,
}

impl PullRequest {
    pub fn new(reporter: Reporter) -> Self {
        Self { reporter }
    }
}

impl Destination for PullRequest {
    fn run_ended<'a>(&'a self, summary: &'a RunSummary, stopping: bool) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let body = summary.render();
            let post = self.reporter.post_logged(&body);
            if stopping {
                let _ = tokio::time::timeout(STOPPING_LIMIT, post).await;
            } else {
                post.await;
            }
        })
    }
}
