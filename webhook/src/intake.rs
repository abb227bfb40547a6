//! Intake: bytes → verified → typed event → intent, then delivery dedupe, the permission check,
//! and the act. Each step that refuses answers at once with the reason; nothing is parsed before
//! the signature is checked.

use axum::http::{HeaderMap, StatusCode};
use cca_domain::decide::{Intent, Rules, decide_github, decide_jira};
use cca_domain::event::{parse_github, parse_jira};
use secrecy::SecretString;
use tracing::{Instrument as _, Span, error_span, field, info, warn};

use crate::act;
use crate::app::{App, now};
use crate::reply::Reply;
use crate::verify::{SignatureError, verify};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn signature_reply(e: SignatureError, source: &str) -> Reply {
    match e {
        SignatureError::Missing => Reply::error(
            StatusCode::UNAUTHORIZED,
            format!("Missing {source} signature"),
        ),
        SignatureError::Invalid => Reply::error(
            StatusCode::UNAUTHORIZED,
            format!("Invalid {source} signature"),
        ),
    }
}

/// Verify, parse and decide a GitHub delivery: the pure, I/O-free part of intake.
pub fn triage_github(
    secrets: &[SecretString],
    rules: &Rules,
    signature: Option<&str>,
    event: Option<&str>,
    body: &[u8],
) -> Result<Intent, Reply> {
    verify(secrets, signature, body).map_err(|e| signature_reply(e, "GitHub"))?;
    let event = event
        .ok_or_else(|| Reply::error(StatusCode::BAD_REQUEST, "Missing X-GitHub-Event header"))?;
    let parsed = parse_github(event, body)
        .map_err(|e| Reply::error(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(decide_github(parsed, rules))
}

/// Verify, parse and decide a JIRA delivery.
pub fn triage_jira(
    secrets: &[SecretString],
    rules: &Rules,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Intent, Reply> {
    verify(secrets, signature, body).map_err(|e| signature_reply(e, "JIRA"))?;
    let parsed =
        parse_jira(body).map_err(|e| Reply::error(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(decide_jira(parsed, rules))
}

/// The root span of one delivery: every log line of its handling carries the source, the
/// event and the delivery id, then what it is about (`subject`) and who asked (`actor`) once
/// decided, and the session it acts on (`session`, recorded by the executor). At ERROR level,
/// so that the context is on every line whatever `RUST_LOG` keeps.
fn delivery_span(source: &'static str, event: Option<&str>, delivery: Option<&str>) -> Span {
    error_span!(
        "delivery",
        source,
        event = printable(event),
        id = printable(delivery),
        subject = field::Empty,
        actor = field::Empty,
        session = field::Empty,
    )
}

/// A header as it may go into a log line: up to 200 visible ASCII characters, else nothing (the
/// headers are read before the signature is checked, so they are anyone's text).
fn printable(header: Option<&str>) -> &str {
    header
        .filter(|h| h.len() <= 200 && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("")
}

/// What an intent is about, for the delivery's span: `owner/repo#n`, a JIRA key, or the
/// repositories given to the App.
fn subject(intent: &Intent) -> Option<String> {
    Some(match intent {
        Intent::StartAgent { repo, issue, .. } => format!("{repo}#{}", issue.number),
        Intent::StopIssue {
            repo, issue_number, ..
        } => format!("{repo}#{issue_number}"),
        Intent::StartPreview { repo, pr, .. } => format!("{repo}#{}", pr.number),
        Intent::StopPr {
            repo, pr_number, ..
        }
        | Intent::RefreshPreview {
            repo, pr_number, ..
        }
        | Intent::Prompt {
            repo, pr_number, ..
        }
        | Intent::Review {
            repo, pr_number, ..
        }
        | Intent::Checks {
            repo, pr_number, ..
        }
        | Intent::StopCommand {
            repo, pr_number, ..
        }
        | Intent::Command {
            repo, pr_number, ..
        } => format!("{repo}#{pr_number}"),
        Intent::StartJira { key, .. } => key.to_string(),
        Intent::EnsureLabels { repos, .. } => format!("{} repositories", repos.len()),
        Intent::Ignore(_) => return None,
    })
}

/// Handles a GitHub delivery.
pub async fn github(app: &App, headers: &HeaderMap, body: &[u8]) -> Reply {
    let span = delivery_span(
        "github",
        header(headers, "x-github-event"),
        header(headers, "x-github-delivery"),
    );
    github_in_span(app, headers, body).instrument(span).await
}

async fn github_in_span(app: &App, headers: &HeaderMap, body: &[u8]) -> Reply {
    let intent = match triage_github(
        &app.github_webhook_secrets,
        &app.rules,
        header(headers, "x-hub-signature-256"),
        header(headers, "x-github-event"),
        body,
    ) {
        Ok(i) => i,
        Err(reply) => {
            warn!(status = reply.status.as_u16(), reason = %reply.body, "GitHub delivery refused");
            return reply;
        }
    };
    handle(app, intent, header(headers, "x-github-delivery")).await
}

/// Handles a JIRA delivery.
pub async fn jira(app: &App, headers: &HeaderMap, body: &[u8]) -> Reply {
    let span = delivery_span(
        "jira",
        None,
        header(headers, "x-atlassian-webhook-identifier"),
    );
    jira_in_span(app, headers, body).instrument(span).await
}

async fn jira_in_span(app: &App, headers: &HeaderMap, body: &[u8]) -> Reply {
    let Some(jira) = &app.jira else {
        return Reply::error(StatusCode::NOT_FOUND, "JIRA is not configured");
    };
    let intent = match triage_jira(
        &jira.webhook_secrets,
        &app.rules,
        header(headers, "x-hub-signature"),
        body,
    ) {
        Ok(i) => i,
        Err(reply) => {
            warn!(status = reply.status.as_u16(), reason = %reply.body, "JIRA delivery refused");
            return reply;
        }
    };
    handle(
        app,
        intent,
        header(headers, "x-atlassian-webhook-identifier"),
    )
    .await
}

async fn handle(app: &App, intent: Intent, delivery: Option<&str>) -> Reply {
    if let Intent::Ignore(reason) = intent {
        info!(%reason, "delivery ignored");
        return Reply::ok(reason);
    }
    if let Some(subject) = subject(&intent) {
        Span::current().record("subject", subject);
    }
    if let Some(actor) = intent.requires_write() {
        Span::current().record("actor", actor.as_str());
    }
    let delivery = delivery.filter(|d| !d.is_empty() && d.len() <= 200);
    if let Some(id) = delivery {
        match app.store.record_delivery(id, now()).await {
            Ok(true) => {}
            Ok(false) => {
                // Handled already, or being handled: a delivery whose handler died is taken
                // again once its lease (DELIVERY_LEASE_SECS) has run out.
                info!("redelivery ignored");
                return Reply::ok("duplicate");
            }
            Err(e) => {
                warn!(error = %e, "cannot record the delivery");
                return Reply::error(StatusCode::SERVICE_UNAVAILABLE, "session store unavailable");
            }
        }
    }
    let outcome = act::handle(app, intent).await;
    let failed = outcome.is_failure();
    let reply = Reply::from_outcome(outcome, &app.masker);
    info!(status = reply.status.as_u16(), answer = %reply.body, "delivery answered");
    if let Some(id) = delivery {
        if failed {
            // The work did not happen: forget the delivery so GitHub's redelivery can retry it.
            if let Err(e) = app.store.forget_delivery(id).await {
                warn!(error = %e, "cannot forget a failed delivery");
            }
        } else if let Err(e) = app.store.finish_delivery(id, now()).await {
            // The work is done; the id is then held only for its lease, after which a
            // redelivery would be handled again.
            warn!(error = %e, "cannot mark a delivery handled");
        }
    }
    reply
}
