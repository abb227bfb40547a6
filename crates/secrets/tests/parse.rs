//! The secret shapes as operators store them, and the errors they get when a shape is wrong.

use cca_secrets::{
    ExposeSecret, MIN_CONTROL_KEY_LEN, SecretError, parse_control, parse_github, parse_jira,
};

const KEY: &str =
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEsecretkeybody\n-----END RSA PRIVATE KEY-----\n";

fn github_json(app_id: &str, installation: &str) -> String {
    format!(
        r#"{{"app_id": {app_id}, "private_key": {key}, "webhook_secret": "hook-s3cret",
            "default_installation_id": {installation}}}"#,
        key = serde_json_string(KEY)
    )
}

fn serde_json_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\n', "\\n"))
}

fn reason(err: SecretError) -> String {
    match err {
        SecretError::Malformed { secret, reason } => {
            assert_eq!(secret, "gh");
            reason
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn github_ids_may_be_numbers_or_numeric_strings() {
    for (app_id, installation) in [
        ("12345", "678"),
        ("\"12345\"", "\"678\""),
        ("\" 12345 \"", "678"),
    ] {
        let s = parse_github("gh", &github_json(app_id, installation)).unwrap();
        assert_eq!(s.app_id, 12345);
        assert_eq!(s.default_installation_id, Some(678));
        assert_eq!(s.private_key.expose_secret(), KEY.trim_end());
        assert_eq!(s.webhook_secret.expose_secret(), "hook-s3cret");
    }
    for none in ["null", "\"\""] {
        let s = parse_github("gh", &github_json("1", none)).unwrap();
        assert_eq!(s.default_installation_id, None);
    }
}

#[test]
fn github_missing_or_bad_fields_are_named_without_their_values() {
    let no_secret = format!(
        r#"{{"app_id": 1, "private_key": {}}}"#,
        serde_json_string(KEY)
    );
    assert_eq!(
        reason(parse_github("gh", &no_secret).unwrap_err()),
        "missing field `webhook_secret`"
    );

    let r = reason(parse_github("gh", &github_json("\"12a\"", "1")).unwrap_err());
    assert!(r.contains("`app_id`") && !r.contains("12a"), "{r}");

    let r = reason(parse_github("gh", &github_json("-4", "1")).unwrap_err());
    assert!(r.contains("`app_id`"), "{r}");

    let not_pem = r#"{"app_id": 1, "private_key": "hunter2", "webhook_secret": "w"}"#;
    let r = reason(parse_github("gh", not_pem).unwrap_err());
    assert!(r.contains("`private_key`") && !r.contains("hunter2"), "{r}");

    let wrong_type = r#"{"app_id": 1, "private_key": 5, "webhook_secret": "w"}"#;
    let r = reason(parse_github("gh", wrong_type).unwrap_err());
    assert!(r.contains("`private_key` must be a string"), "{r}");
}

#[test]
fn malformed_json_gives_a_position_not_the_content() {
    let err = parse_github("gh", r#"{"app_id": 1, "private_key": "hunter2" "#).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("secret gh is malformed: not valid JSON"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");

    let r = reason(parse_github("gh", "[1, 2]").unwrap_err());
    assert_eq!(r, "expected a JSON object, found an array");
}

#[test]
fn private_key_with_escaped_line_breaks_is_repaired() {
    let json = format!(
        r#"{{"app_id": 1, "private_key": "{}", "webhook_secret": "w"}}"#,
        KEY.replace('\n', "\\\\n")
    );
    let s = parse_github("gh", &json).unwrap();
    assert_eq!(s.private_key.expose_secret(), KEY.trim_end());
}

#[test]
fn older_webhook_secrets_are_accepted_after_the_current_one() {
    let json = format!(
        r#"{{"app_id": 1, "private_key": {}, "webhook_secret": "new",
            "webhook_secrets": ["old", "", "older"]}}"#,
        serde_json_string(KEY)
    );
    let s = parse_github("gh", &json).unwrap();
    let all: Vec<&str> = s
        .webhook_secrets()
        .into_iter()
        .map(|w| w.expose_secret())
        .collect();
    assert_eq!(all, ["new", "old", "older"]);

    let bad = json.replace(r#"["old", "", "older"]"#, r#"["old", 7]"#);
    let r = reason(parse_github("gh", &bad).unwrap_err());
    assert!(r.contains("`webhook_secrets[1]`"), "{r}");
}

#[test]
fn debug_output_never_shows_a_secret_value() {
    let gh = parse_github("gh", &github_json("1", "2")).unwrap();
    let jira = parse_jira("jira", &jira_json(r#"{"APP": "Octo/App"}"#)).unwrap();
    let control = parse_control("control", &"k".repeat(64)).unwrap();
    let printed = format!("{gh:?} {jira:?} {control:?}");
    for value in [
        "MIIEsecretkeybody",
        "hook-s3cret",
        "jira-t0ken",
        "jira-h00k",
        &"k".repeat(64),
    ] {
        assert!(!printed.contains(value), "{value} leaked in {printed}");
    }
    assert!(
        printed.contains("jira@example.com"),
        "non-secret fields stay visible"
    );
}

fn jira_json(mapping: &str) -> String {
    format!(
        r#"{{"base_url": "https://example.atlassian.net/", "email": "jira@example.com",
            "api_token": "jira-t0ken", "webhook_secret": "jira-h00k",
            "project_mapping": {mapping}}}"#
    )
}

#[test]
fn jira_mapping_is_an_object_or_a_string_holding_one() {
    let as_object = parse_jira(
        "jira",
        &jira_json(r#"{"agnts": "Octo/App", "WEB": "octo/web"}"#),
    )
    .unwrap();
    let as_string = parse_jira(
        "jira",
        &jira_json(r#""{\"agnts\": \"Octo/App\", \"WEB\": \"octo/web\"}""#),
    )
    .unwrap();
    for s in [&as_object, &as_string] {
        assert_eq!(s.base_url, "https://example.atlassian.net");
        assert_eq!(s.email, "jira@example.com");
        assert_eq!(s.api_token.expose_secret(), "jira-t0ken");
        assert_eq!(s.webhook_secret.expose_secret(), "jira-h00k");
        assert_eq!(s.repo_for_project("Agnts"), Some("octo/app"));
        assert_eq!(s.repo_for_project("WEB"), Some("octo/web"));
        assert_eq!(s.repo_for_project("NOPE"), None);
        assert_eq!(s.webhook_secrets().len(), 1);
    }
}

#[test]
fn jira_errors_name_the_field() {
    let jira_reason = |json: &str| match parse_jira("jira", json).unwrap_err() {
        SecretError::Malformed { secret, reason } if secret == "jira" => reason,
        other => panic!("{other:?}"),
    };
    let r = jira_reason(&jira_json(r#""{not json""#));
    assert!(
        r.contains("`project_mapping` is a string but not valid JSON"),
        "{r}"
    );
    let r = jira_reason(&jira_json(r#"{"APP": "no-slash"}"#));
    assert!(r.contains("project APP must map to"), "{r}");
    let r = jira_reason(&jira_json("[1]"));
    assert!(r.contains("`project_mapping` must be an object"), "{r}");
    let r = jira_reason(r#"{"base_url": "https://x", "email": "e", "webhook_secret": "w"}"#);
    assert_eq!(r, "missing field `api_token`");
    let r = jira_reason(&jira_json("{}").replace("https://", "ftp://"));
    assert!(r.contains("`base_url`"), "{r}");

    let unmapped = jira_json("{}").replace(r#", "project_mapping": {}"#, "");
    assert!(
        parse_jira("jira", &unmapped)
            .unwrap()
            .project_mapping
            .is_empty()
    );
}

#[test]
fn control_key_is_a_trimmed_plain_string_of_enough_length() {
    let key = format!("  {}\n", "a1".repeat(32));
    let c = parse_control("control", &key).unwrap();
    assert_eq!(c.0.expose_secret(), "a1".repeat(32));

    let short = "x".repeat(MIN_CONTROL_KEY_LEN - 1);
    match parse_control("control", &short).unwrap_err() {
        SecretError::Malformed { secret, reason } => {
            assert_eq!(secret, "control");
            assert!(!reason.contains(&short), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
