//! The first run's outcome on the JIRA issue a JIRA session came from.

use futures::future::BoxFuture;
use tracing::warn;

use super::Secrets;
use super::destination::Destination;
use crate::setup::Ready;
use cca_domain::texts::agent::RunSummary;
use cca_jira::Jira;

pub struct JiraIssue {
    jira: Jira,
    key: String,
    /// The PR's link and number, when there is a PR.
    pr: Option<(String, u64)>,
    secrets: Secrets,
    /// Whether this container told JIRA of a run already.
    told: std::sync::atomic::AtomicBool,
}

impl JiraIssue {
    /// The session's JIRA issue, if it came from one and JIRA is configured.
    pub fn of(ready: &Ready, pr_url: Option<String>) -> Option<Self> {
        let (Some(jira), Some(key)) = (&ready.jira, &ready.session.jira_issue_key) else {
            return None;
        };
        Some(Self {
            jira: jira.clone(),
            key: key.as_str().to_owned(),
            pr: pr_url.zip(ready.session.pr_number),
            secrets: ready.secrets.clone(),
            told: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

impl Destination for JiraIssue {
    fn run_ended<'a>(&'a self, summary: &'a RunSummary, _stopping: bool) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // JIRA hears of the first run of the session that implements (plans are posted on
            // the PR only, and runs are numbered across relaunches): later ones are follow-ups
            // on the PR.
            if self.told.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let pr = self.pr.as_ref().map(|(url, n)| (url.as_str(), *n));
            let doc = cca_domain::texts::jira::run_summary(summary, pr);
            let body =
                serde_json::from_str(&self.secrets.mask(&doc.to_string())).unwrap_or_default();
            if let Err(e) = self.jira.comment(&self.key, body).await {
                warn!(error = %self.secrets.mask(&e.to_string()), "cannot post the JIRA summary");
            }
        })
    }
}
