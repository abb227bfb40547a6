//! Loading secrets from Secrets Manager, against the local AWS emulator of the test stand.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use cca_secrets::{ExposeSecret, SecretError, fetch_control, fetch_github, fetch_jira};

/// A client on the emulator, or `None` (and a note) when the test stand is not running.
fn emulator() -> Option<Client> {
    let Ok(url) = std::env::var("CCA_MOTO_URL") else {
        cca_testkit::stand::skip("CCA_MOTO_URL is not set (no AWS emulator)");
        return None;
    };
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    Some(Client::from_conf(config))
}

/// A name no other test run uses, since the emulator's state outlives a run.
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("cca-test/{name}-{nanos}")
}

async fn create(client: &Client, name: &str, value: &str) -> String {
    let out = client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("create secret");
    out.arn().expect("arn").to_owned()
}

#[tokio::test]
async fn stored_secrets_are_fetched_and_parsed() {
    let Some(client) = emulator() else { return };
    let github = create(
        &client,
        &unique("github"),
        r#"{"app_id": "42", "private_key": "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----",
            "webhook_secret": "w1", "default_installation_id": 7}"#,
    )
    .await;
    let jira = create(
        &client,
        &unique("jira"),
        r#"{"base_url": "https://j.example", "email": "e@example.com", "api_token": "t",
            "webhook_secret": "w2", "project_mapping": "{\"AG\": \"octo/app\"}"}"#,
    )
    .await;
    let control_name = unique("control");
    create(&client, &control_name, &"c".repeat(64)).await;

    let gh = fetch_github(&client, &github).await.unwrap();
    assert_eq!((gh.app_id, gh.default_installation_id), (42, Some(7)));
    assert_eq!(gh.webhook_secret.expose_secret(), "w1");

    let j = fetch_jira(&client, &jira).await.unwrap();
    assert_eq!(j.repo_for_project("ag"), Some("octo/app"));

    // By name as well as by ARN, as Secrets Manager allows.
    let c = fetch_control(&client, &control_name).await.unwrap();
    assert_eq!(c.0.expose_secret(), "c".repeat(64));
}

#[tokio::test]
async fn a_missing_secret_is_missing_and_a_bad_one_names_the_secret() {
    let Some(client) = emulator() else { return };
    let absent = "arn:aws:secretsmanager:us-east-1:123456789012:secret:cca-test/absent-AbCdEf";
    match fetch_github(&client, absent).await.unwrap_err() {
        SecretError::Missing(name) => assert_eq!(name, absent),
        other => panic!("expected Missing, got {other:?}"),
    }

    let bad = create(&client, &unique("bad"), r#"{"app_id": 1}"#).await;
    match fetch_github(&client, &bad).await.unwrap_err() {
        SecretError::Malformed { secret, reason } => {
            assert_eq!(secret, bad);
            assert_eq!(reason, "missing field `private_key`");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}
