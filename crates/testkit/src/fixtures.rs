//! Real GitHub webhook payloads and their signatures.
//!
//! The payloads come from the `@octokit/webhooks-examples` npm package, which records deliveries
//! from github.com. `scripts/test.sh` installs a pinned version and exports the path of its
//! `api.github.com/index.json` as `CCA_WEBHOOK_EXAMPLES`. That file is a list of events, each
//! `{"name": "<event>", "examples": [<payload>, …], …}`; a payload's own `action` field tells
//! which action it shows.

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Environment variable that carries the path of the examples' `index.json`.
pub const EXAMPLES_ENV: &str = "CCA_WEBHOOK_EXAMPLES";

/// Event name and payloads, in the file's order; parsed once per test binary because the file
/// is several megabytes.
type Catalogue = Vec<(String, Vec<Value>)>;

static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();

fn catalogue() -> &'static Catalogue {
    CATALOGUE.get_or_init(|| {
        let path = std::env::var(EXAMPLES_ENV).unwrap_or_else(|_| {
            panic!(
                "{EXAMPLES_ENV} is not set: run the tests with scripts/test.sh, which installs \
                 @octokit/webhooks-examples and points {EXAMPLES_ENV} at its \
                 api.github.com/index.json"
            )
        });
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{EXAMPLES_ENV}={path} cannot be read ({e}); run scripts/test.sh to install it")
        });
        parse_catalogue(&text).unwrap_or_else(|e| panic!("{EXAMPLES_ENV}={path}: {e}"))
    })
}

fn parse_catalogue(text: &str) -> Result<Catalogue, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let events = root
        .as_array()
        .ok_or("expected a list of events at the top level")?;
    events
        .iter()
        .map(|event| {
            let name = event
                .get("name")
                .and_then(Value::as_str)
                .ok_or("an event has no \"name\"")?;
            let examples = event
                .get("examples")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("event {name} has no \"examples\" list"))?;
            Ok((name.to_owned(), examples.clone()))
        })
        .collect()
}

/// The first recorded payload of `event` (the `X-GitHub-Event` name, such as `issues`) whose
/// `action` is `action`; with `None`, the event's first payload whatever its action.
///
/// # Panics
/// If `CCA_WEBHOOK_EXAMPLES` is unset or unreadable, or no such payload is recorded.
pub fn github_example(event: &str, action: Option<&str>) -> Value {
    let (_, examples) = catalogue()
        .iter()
        .find(|(name, _)| name == event)
        .unwrap_or_else(|| panic!("no GitHub webhook examples for event {event:?}"));
    examples
        .iter()
        .find(|payload| {
            action
                .is_none_or(|wanted| payload.get("action").and_then(Value::as_str) == Some(wanted))
        })
        .cloned()
        .unwrap_or_else(|| panic!("no GitHub webhook example for {event} with action {action:?}"))
}

/// Every recorded payload as `(event name, payload)`, for tests that feed them all through a
/// handler.
///
/// # Panics
/// If `CCA_WEBHOOK_EXAMPLES` is unset or unreadable.
pub fn all_github_examples() -> Vec<(String, Value)> {
    catalogue()
        .iter()
        .flat_map(|(name, examples)| examples.iter().map(move |p| (name.clone(), p.clone())))
        .collect()
}

/// The `X-Hub-Signature-256` header value GitHub would send for `body` under `secret`:
/// `sha256=` and the lower-case hex HMAC-SHA256.
pub fn sign_github(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_githubs_documented_example() {
        // The test vector of GitHub's "Validating webhook deliveries" guide.
        assert_eq!(
            sign_github("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn parse_catalogue_reads_events_and_rejects_other_shapes() {
        let parsed = parse_catalogue(
            r#"[{"name":"issues","examples":[{"action":"opened"}]},{"name":"ping","examples":[]}]"#,
        )
        .unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].0, "issues");
        assert_eq!(parsed[0].1[0]["action"], "opened");
        assert!(parse_catalogue(r#"{"name":"issues"}"#).is_err());
        assert!(parse_catalogue(r#"[{"name":"issues"}]"#).is_err());
    }

    #[test]
    fn recorded_examples_cover_the_events_the_product_handles() {
        if std::env::var_os(EXAMPLES_ENV).is_none() {
            crate::stand::skip(format_args!(
                "{EXAMPLES_ENV} is not set (run scripts/test.sh)"
            ));
            return;
        }
        let labeled = github_example("issues", Some("labeled"));
        assert_eq!(labeled["action"], "labeled");
        assert!(labeled["issue"]["number"].is_u64());
        assert!(labeled["repository"]["full_name"].is_string());
        let comment = github_example("issue_comment", Some("created"));
        assert!(comment["comment"]["body"].is_string());
        let sync = github_example("pull_request", Some("synchronize"));
        assert!(sync["pull_request"]["head"]["ref"].is_string());
        assert!(github_example("ping", None).get("zen").is_some());
        let all = all_github_examples();
        assert!(all.len() > 100, "only {} examples", all.len());
        assert!(all.iter().any(|(event, _)| event == "push"));
    }
}
