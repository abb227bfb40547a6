//! Where a run's end is reported: the PR (or issue) always, the JIRA issue for a JIRA session.
//! A new destination is one file implementing [`Destination`] and one line in [`for_session`].

use futures::future::BoxFuture;

use super::Reporter;
use super::jira::JiraIssue;
use super::pr::PullRequest;
use crate::setup::Ready;
use cca_domain::texts::agent::RunSummary;

/// A place that hears of each run's end.
pub trait Destination: Send + Sync {
    /// Reports the run `summary` describes. `stopping`: the session is stopping, so the report
    /// must not hold up the exit.
    fn run_ended<'a>(&'a self, summary: &'a RunSummary, stopping: bool) -> BoxFuture<'a, ()>;
}

/// The destinations of this session's runs, in the order they hear of them.
pub fn for_session(
    ready: &Ready,
    reporter: &Reporter,
    pr_url: Option<String>,
) -> Vec<Box<dyn Destination>> {
    let mut all: Vec<Box<dyn Destination>> = vec![Box::new(PullRequest::new(reporter.clone()))];
    if let Some(jira) = JiraIssue::of(ready, pr_url) {
        all.push(Box::new(jira));
    }
    all
}
