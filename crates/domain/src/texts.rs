//! Every text the system posts: PR titles and bodies, the prompts it opens sessions with, the
//! comments of the webhook and the sweeper (here), an agent's status comment, run summaries and
//! commit messages ([`agent`]), and the comments on JIRA issues ([`jira`]). Wording and the
//! marker are changed here and nowhere else; callers pass what varies.

pub mod agent;
pub mod jira;

use crate::ids::{JiraKey, SessionId};
use crate::naming::{clip, one_line};

/// Hidden marker carried by every comment and PR body this system writes. A comment holding it
/// is never treated as a prompt, so the agent's own reports cannot loop back into it.
pub const MARKER: &str = "<!-- claude-agent -->";

/// Title of the draft PR for a GitHub issue, as the original: `[Claude] <title>`.
pub fn issue_pr_title(title: &str) -> String {
    format!("[Claude] {}", one_line(title, 200))
}

/// Title of the draft PR for a JIRA issue: `[Claude] <KEY>: <summary>`.
pub fn jira_pr_title(key: &JiraKey, summary: &str) -> String {
    format!("[Claude] {key}: {}", one_line(summary, 200))
}

/// Body of the draft PR for a GitHub issue. `Closes #n` links the PR so merging closes the issue;
/// the marker identifies the PR as the agent's.
pub fn issue_pr_body(issue_number: u64, issue_body: &str, preview_url: &str) -> String {
    format!(
        "## Automated Implementation\n\nThis PR was created by Claude Cloud Agent to implement \
         issue #{issue_number}.\n\nCloses #{issue_number}\n\n### Original Issue\n{}\n\n\
         ### UAT Preview\n{preview_url} (live once the agent reports ready)\n\n---\n*This PR is \
         being worked on by an automated agent. Mention @claude in a comment to give it \
         feedback; `/claude stop` stops it.*\n\n{MARKER}",
        clip(issue_body, 50_000)
    )
}

/// Body of the draft PR for a JIRA issue, linking back to it.
pub fn jira_pr_body(
    key: &JiraKey,
    browse_url: &str,
    summary: &str,
    description: &str,
    preview_url: &str,
) -> String {
    format!(
        "## Automated Implementation\n\nThis PR was created by Claude Cloud Agent to implement \
         [{key}]({browse_url}).\n\n### Original Issue\n**{}**\n\n{}\n\n### UAT Preview\n\
         {preview_url} (live once the agent reports ready)\n\n---\n*This PR is being worked on by \
         an automated agent. Mention @claude in a comment to give it feedback; `/claude stop` \
         stops it.*\n\n{MARKER}",
        one_line(summary, 200),
        clip(description, 50_000)
    )
}

/// The first prompt of a GitHub issue's session, as the original phrased it (the explicit
/// "commit" wording matters: without it the CLI tends to answer instead of acting).
pub fn issue_prompt(issue_number: u64, title: &str, body: &str) -> String {
    format!(
        "GitHub Issue #{issue_number}: {title}\n\n{body}\n\nImplement the requirements described \
         above. When complete, commit and push your changes."
    )
}

/// The first prompt of a JIRA issue's session.
pub fn jira_prompt(key: &JiraKey, summary: &str, description: &str) -> String {
    format!(
        "JIRA Issue {key}: {summary}\n\n{description}\n\nImplement the requirements described \
         above. When complete, commit and push your changes."
    )
}
/// The first prompt of a session relaunched by a comment on its PR.
pub fn follow_up_prompt(author: &str, body: &str) -> String {
    format!("Follow-up from @{author} on the PR:\n\n{body}")
}

/// The message of the empty first commit of an issue's branch.
pub fn issue_commit_message(issue_number: u64) -> String {
    format!("chore: start Claude agent session for issue #{issue_number}")
}

/// The message of the empty first commit of a JIRA issue's branch.
pub fn jira_commit_message(key: &JiraKey) -> String {
    format!("chore: start Claude agent session for {key}")
}

/// How to start a session again: the label to take off and put back, or the JIRA issue to label.
pub fn start_again(label: Option<&str>) -> String {
    match label {
        Some(label) => format!("remove and re-add the `{label}` label"),
        None => "label the JIRA issue again".to_owned(),
    }
}

/// A start asked for while the session still stops.
pub fn still_stopping(id: &SessionId, again: &str) -> String {
    format!(
        "{MARKER}\n:hourglass: Session `{id}` is still stopping (it commits and pushes its work first), so it was not started again. Once it has stopped, {again} to start it."
    )
}

/// A preview asked for on a PR whose head repository (a fork) was deleted.
pub fn head_repository_gone() -> String {
    format!(
        "{MARKER}\n**UAT not started**\n\nThe head repository of this PR no longer exists (a deleted fork): its commits can no longer change, and previews are only made of PRs whose head repository exists. Open the PR again from a repository GitHub still has."
    )
}

/// A preview asked for while one runs.
pub fn preview_already_running(url: &str, id: &SessionId) -> String {
    format!("{MARKER}\n**UAT Already Running**\n\nURL: {url}\n\nSession: `{id}`")
}

/// A session that could not be started: what failed, why, and how to try again.
pub fn start_failed(what: &str, id: &SessionId, reason: &str, retry: &str) -> String {
    format!(
        "{MARKER}\n:x: **{what}**\n\nSession: `{id}`\n\nError: {reason}\n\nPlease check the configuration, then {retry} to try again."
    )
}

/// A preview shut down for `reason`.
pub fn preview_stopped(id: &SessionId, reason: &str) -> String {
    format!(
        "{MARKER}\n**UAT Environment Stopped**\n\nThe UAT environment for `{id}` has been shut down ({reason})."
    )
}

/// The stop command, acknowledged.
pub fn stopping_on_request(by: &str) -> String {
    format!(
        "{MARKER}\n:octagonal_sign: Stopping at @{by}'s request: work in progress is committed and pushed first."
    )
}

/// A comment that cannot reach the agent, which will not change by trying again.
pub fn comment_undeliverable(id: &SessionId, stop_command: &str, mention: &str) -> String {
    format!(
        "{MARKER}\n:warning: Your comment could not be delivered: the agent (`{id}`) cannot be reached. `{stop_command}` ends the session; mentioning {mention} after that starts it again with your comment."
    )
}

/// A comment that did not reach the agent this time.
pub fn comment_not_delivered(id: &SessionId, error: &str) -> String {
    format!(
        "{MARKER}\n:warning: Your comment could not be delivered to the agent (`{id}`): {error}. Please try again in a minute."
    )
}

/// A comment sent while the agent is still starting.
pub fn agent_not_ready(id: &SessionId, status: &str, mention: &str) -> String {
    format!(
        "{MARKER}\n:hourglass: The agent (`{id}`) is {status} and cannot take comments yet; please mention {mention} again once it reports ready."
    )
}

/// The sweeper stopped an idle session.
pub fn swept_idle(id: &SessionId, reason: &str) -> String {
    format!(
        "{MARKER}\n:zzz: **Session stopped**: {reason}. The work pushed so far is on the branch.\n\nSession `{id}`. Re-add the label to start it again."
    )
}

/// The sweeper ended a session that had failed.
pub fn swept_failed(id: &SessionId, error: &str) -> String {
    format!(
        "{MARKER}\n:x: **Session failed**: {error}.\n\nSession `{id}` was ended by the sweeper. Re-add the label to start it again."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pr_texts() {
        assert_eq!(
            issue_pr_title("Add  login\n page"),
            "[Claude] Add login page"
        );
        let body = issue_pr_body(7, "Do it", "https://x.uat.example.com");
        assert!(body.contains("Closes #7") && body.contains(MARKER));
        let k = JiraKey::parse("P-1").unwrap();
        assert_eq!(jira_pr_title(&k, "Sum"), "[Claude] P-1: Sum");
    }

    #[test]
    fn every_comment_carries_the_marker() {
        let id = SessionId::parse("abc123").unwrap();
        for text in [
            still_stopping(&id, &start_again(Some("claude-dev"))),
            head_repository_gone(),
            preview_already_running("https://x", &id),
            start_failed("Agent failed to start", &id, "no", "retry"),
            preview_stopped(&id, "closed"),
            stopping_on_request("alice"),
            comment_undeliverable(&id, "/claude stop", "@claude"),
            comment_not_delivered(&id, "timed out"),
            agent_not_ready(&id, "provisioning", "@claude"),
            swept_idle(&id, "idle"),
            swept_failed(&id, "dead"),
        ] {
            assert!(text.starts_with(MARKER), "{text}");
        }
        assert_eq!(start_again(None), "label the JIRA issue again");
    }
}
