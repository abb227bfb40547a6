//! What the system says on a JIRA issue, in Atlassian's document format: that its agent
//! started, and how the first run ended.

use serde_json::Value;

use super::agent::{RunSummary, short_sha};
use crate::adf::{bullets, doc, em, link, paragraph, strong, text};
use crate::naming::clip;

/// The comment posted when a JIRA issue's agent starts: the original's wording, with the PR and
/// preview as links.
pub fn started(
    pr_url: &str,
    preview_url: &str,
    session_id: &str,
    branch: &str,
    staging: bool,
) -> Value {
    let title = if staging {
        "Claude Agent Started (Staging)"
    } else {
        "Claude Agent Started"
    };
    let mut items = vec![
        vec![text("GitHub PR: "), link(pr_url, pr_url)],
        vec![text("UAT Preview: "), link(preview_url, preview_url)],
        vec![text(&format!("Session ID: {session_id}"))],
        vec![text(&format!("Branch: {branch}"))],
    ];
    if staging {
        items.push(vec![text("Image: claude-agent:staging")]);
    }
    doc(vec![
        paragraph(vec![strong(title)]),
        bullets(items),
        paragraph(vec![em(
            "Follow progress and provide feedback on the GitHub PR.",
        )]),
    ])
}

/// The comment posted when a JIRA issue's session waits for a place (`place` 1 = next).
pub fn queued(place: usize, max: usize, pr_url: &str) -> Value {
    doc(vec![
        paragraph(vec![strong("Claude Agent Queued")]),
        paragraph(vec![text(&format!(
            "{max} agent session(s) already run (MAX_ACTIVE_SESSIONS); this one is number {place} in line and starts by itself when one ends."
        ))]),
        bullets(vec![vec![text("GitHub PR: "), link(pr_url, pr_url)]]),
    ])
}

/// The comment about the first run's outcome; `pr` is the PR's URL and number.
pub fn run_summary(s: &RunSummary, pr: Option<(&str, u64)>) -> Value {
    let title = if s.succeeded {
        "✅ Implementation Complete"
    } else {
        "⚠️ Implementation Failed"
    };
    let mut blocks = vec![paragraph(vec![strong(title)])];
    if let Some((url, n)) = pr {
        blocks.push(paragraph(vec![
            text("GitHub PR: "),
            link(&format!("#{n}"), url),
        ]));
    }
    if !s.text.trim().is_empty() {
        blocks.push(paragraph(vec![
            strong("Summary: "),
            text(&clip(s.text.trim(), 2000)),
        ]));
    }
    if !s.commits.is_empty() {
        blocks.push(paragraph(vec![strong("Commits:")]));
        blocks.push(bullets(
            s.commits
                .iter()
                .take(10)
                .map(|c| vec![text(&format!("{} {}", short_sha(&c.sha), c.subject))])
                .collect(),
        ));
    }
    if let Some(e) = &s.failure {
        blocks.push(paragraph(vec![strong("Error: "), text(e)]));
    }
    blocks.push(paragraph(vec![em(
        "Review the PR and provide feedback there.",
    )]));
    doc(blocks)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::texts::agent::Commit;

    #[test]
    fn started_comment_has_links_and_staging_note() {
        let c = started(
            "https://gh/pr/1",
            "https://s.uat.x",
            "abc",
            "claude/p-1",
            true,
        );
        let s = c.to_string();
        assert!(s.contains("Claude Agent Started (Staging)"));
        assert!(s.contains("\"href\":\"https://gh/pr/1\""));
        assert!(s.contains("https://s.uat.x"));
        assert!(s.contains("claude-agent:staging"));
        assert_eq!(c["type"], "doc");
    }

    #[test]
    fn a_run_summary_links_the_pr_and_lists_ten_commits_at_most() {
        let summary = RunSummary {
            number: 1,
            author: None,
            succeeded: false,
            text: "Half done".into(),
            failure: Some("API Error: 500".into()),
            limit: None,
            commits: (0..12)
                .map(|i| Commit {
                    sha: format!("{i:040}"),
                    subject: format!("Commit {i}"),
                })
                .collect(),
            files: vec![],
            cost_usd: None,
            turns: None,
            duration: Duration::from_secs(1),
            push_error: None,
        };
        let c = run_summary(&summary, Some(("https://gh/pr/7", 7)));
        let s = c.to_string();
        assert!(s.contains("Implementation Failed"), "{s}");
        assert!(s.contains("\"text\":\"#7\"") && s.contains("https://gh/pr/7"));
        assert!(s.contains("Commit 9") && !s.contains("Commit 10"), "{s}");
        assert!(s.contains("API Error: 500"));
        let plain = crate::adf::to_text(&c);
        assert!(plain.contains("Summary: Half done"), "{plain}");
        assert!(
            !run_summary(&summary, None)
                .to_string()
                .contains("GitHub PR")
        );
    }
}
