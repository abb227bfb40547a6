//! JIRA adapter: the REST calls the system makes (JIRA Cloud API v3, Basic auth with an API
//! token) and the ADF documents it posts.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// Bound on one JIRA call; JIRA is only told about progress, so a slow JIRA must not hold up the
/// webhook's answer to GitHub.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A failure talking to JIRA.
#[derive(Debug, thiserror::Error)]
pub enum JiraError {
    #[error("JIRA {route} answered {status}: {body}")]
    Api {
        route: String,
        status: u16,
        body: String,
    },
    #[error("JIRA request {route} failed: {message}")]
    Transport { route: String, message: String },
}

/// Where a person reads issue `key` of the site at `base_url` (no trailing `/`).
pub fn browse_url(base_url: &str, key: &str) -> String {
    format!("{base_url}/browse/{key}")
}

/// A JIRA site client.
#[derive(Clone)]
pub struct Jira {
    base_url: String,
    email: String,
    token: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for Jira {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jira")
            .field("base_url", &self.base_url)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl Jira {
    /// A client for the site at `base_url` (e.g. `https://example.atlassian.net`).
    pub fn new(base_url: &str, email: &str, token: SecretString) -> Result<Self, JiraError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| JiraError::Transport {
                route: String::new(),
                message: e.to_string(),
            })?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            email: email.to_owned(),
            token,
            http,
        })
    }

    /// The page of an issue, for links.
    pub fn browse_url(&self, key: &str) -> String {
        browse_url(&self.base_url, key)
    }

    /// The site's address, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Adds a comment (an ADF document) to an issue.
    pub async fn comment(&self, key: &str, body: Value) -> Result<(), JiraError> {
        let route = format!("/rest/api/3/issue/{key}/comment");
        let resp = self
            .http
            .post(format!("{}{route}", self.base_url))
            .basic_auth(&self.email, Some(self.token.expose_secret()))
            .json(&json!({ "body": body }))
            .send()
            .await
            .map_err(|e| JiraError::Transport {
                route: route.clone(),
                message: e.to_string(),
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body: String = resp
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(500)
            .collect();
        Err(JiraError::Api {
            route,
            status: status.as_u16(),
            body,
        })
    }
}

/// ADF building blocks for the comments this system posts.
pub mod adf {
    use serde_json::{Value, json};

    /// Plain text.
    pub fn text(t: &str) -> Value {
        json!({ "type": "text", "text": t })
    }

    /// Bold text.
    pub fn strong(t: &str) -> Value {
        json!({ "type": "text", "text": t, "marks": [{ "type": "strong" }] })
    }

    /// Italic text.
    pub fn em(t: &str) -> Value {
        json!({ "type": "text", "text": t, "marks": [{ "type": "em" }] })
    }

    /// A link.
    pub fn link(t: &str, href: &str) -> Value {
        json!({ "type": "text", "text": t, "marks": [{ "type": "link", "attrs": { "href": href } }] })
    }

    /// A paragraph of inline nodes.
    pub fn paragraph(inline: Vec<Value>) -> Value {
        json!({ "type": "paragraph", "content": inline })
    }

    /// A bullet list, one item per entry of inline nodes.
    pub fn bullets(items: Vec<Vec<Value>>) -> Value {
        let items: Vec<Value> = items
            .into_iter()
            .map(|inline| json!({ "type": "listItem", "content": [paragraph(inline)] }))
            .collect();
        json!({ "type": "bulletList", "content": items })
    }

    /// A document of blocks.
    pub fn doc(blocks: Vec<Value>) -> Value {
        json!({ "type": "doc", "version": 1, "content": blocks })
    }
}

/// The comment posted when a JIRA issue's agent starts: the original's wording, with the PR and
/// preview as links.
pub fn started_comment(
    pr_url: &str,
    preview_url: &str,
    session_id: &str,
    branch: &str,
    staging: bool,
) -> Value {
    use adf::*;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn started_comment_has_links_and_staging_note() {
        let c = started_comment(
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
}
