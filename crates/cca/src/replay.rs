//! `cca replay`: sends a recorded payload to a webhook, signed and with the headers GitHub or
//! JIRA would send, to reproduce a delivery against a local or deployed system.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rand::RngCore as _;

/// Bound on the whole exchange: GitHub gives up on a webhook after 10 s, so a handler slower
/// than that is a failure worth seeing, with margin for a cold local start.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);

/// `cca replay …`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The payload file; its bytes are sent and signed exactly as they are.
    payload: PathBuf,
    /// The GitHub event name (`X-GitHub-Event`), e.g. `issues` or `issue_comment`.
    #[arg(long, required_unless_present = "jira")]
    event: Option<String>,
    /// The webhook URL.
    #[arg(long, default_value = "http://127.0.0.1:8080/webhook")]
    url: String,
    /// The webhook secret (the first of a comma-separated list is used). Default:
    /// $GITHUB_WEBHOOK_SECRET, or $JIRA_WEBHOOK_SECRET with --jira.
    #[arg(long)]
    secret: Option<String>,
    /// The delivery id. Default: a random one, so the webhook does not take it for a redelivery.
    #[arg(long)]
    delivery: Option<String>,
    /// Send as a JIRA delivery (`X-Hub-Signature`, `X-Atlassian-Webhook-Identifier`).
    #[arg(long)]
    jira: bool,
}

/// A random id in the form of a UUID v4, as GitHub's delivery ids are.
fn random_delivery() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

impl ReplayArgs {
    fn secret(&self) -> anyhow::Result<String> {
        let var = if self.jira {
            "JIRA_WEBHOOK_SECRET"
        } else {
            "GITHUB_WEBHOOK_SECRET"
        };
        let list = match &self.secret {
            Some(s) => s.clone(),
            None => std::env::var(var).unwrap_or_default(),
        };
        // The webhook accepts a list during a rotation (one secret a line), and signs nothing
        // itself: the current secret is the first.
        match cca_webhook::config::secret_lines(&list).next() {
            Some(first) => Ok(first.to_owned()),
            None => bail!("no webhook secret: pass --secret or set {var}"),
        }
    }

    /// The headers of the delivery, signature included.
    fn headers(&self, body: &[u8]) -> anyhow::Result<Vec<(&'static str, String)>> {
        let signature = cca_webhook::verify::sign(&self.secret()?, body);
        let delivery = self.delivery.clone().unwrap_or_else(random_delivery);
        let mut headers = vec![("content-type", "application/json".to_owned())];
        if self.jira {
            headers.push(("x-hub-signature", signature));
            headers.push(("x-atlassian-webhook-identifier", delivery));
        } else {
            let event = self.event.clone().context("--event is required")?;
            headers.push(("x-hub-signature-256", signature));
            headers.push(("x-github-event", event));
            headers.push(("x-github-delivery", delivery));
        }
        Ok(headers)
    }
}

/// Sends the delivery and prints the answer; success only for a 2xx.
pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let body = std::fs::read(&args.payload)
        .with_context(|| format!("cannot read {}", args.payload.display()))?;
    let headers = args.headers(&body)?;
    let client = reqwest::Client::builder()
        .timeout(REPLAY_TIMEOUT)
        .build()
        .context("cannot build an HTTP client")?;
    let mut request = client.post(&args.url).body(body);
    for (name, value) in &headers {
        request = request.header(*name, value);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {}", args.url))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("cannot read the answer of {}", args.url))?;
    println!("{status}");
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(json) => println!("{}", serde_json::to_string_pretty(&json)?),
        Err(_) if text.is_empty() => {}
        Err(_) => println!("{text}"),
    }
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(jira: bool) -> ReplayArgs {
        ReplayArgs {
            payload: "p.json".into(),
            event: Some("issues".into()),
            url: String::new(),
            secret: Some(" new\nold".into()),
            delivery: Some("d-1".into()),
            jira,
        }
    }

    #[test]
    fn github_deliveries_carry_githubs_headers() {
        let h = args(false).headers(b"{}").unwrap();
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(
            get("x-hub-signature-256"),
            Some(cca_webhook::verify::sign("new", b"{}").as_str())
        );
        assert_eq!(get("x-github-event"), Some("issues"));
        assert_eq!(get("x-github-delivery"), Some("d-1"));
        assert_eq!(get("x-hub-signature"), None);
    }

    #[test]
    fn jira_deliveries_carry_jiras_headers() {
        let h = args(true).headers(b"{}").unwrap();
        let names: Vec<&str> = h.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "x-hub-signature",
                "x-atlassian-webhook-identifier"
            ]
        );
    }

    #[test]
    fn delivery_ids_look_like_githubs() {
        let id = random_delivery();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, random_delivery());
    }
}
