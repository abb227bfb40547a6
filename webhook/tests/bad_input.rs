//! Bad input never panics the handler nor gets a 5xx: wrong, missing and malformed signatures;
//! empty, truncated, non-JSON, huge and random bodies; every real payload, and real payloads
//! with fields removed or mistyped. Each gets a status below 500 and a JSON reason.

mod support;

use axum::Router;
use axum::http::StatusCode;
use cca_testkit::fixtures::{all_github_examples, github_example, sign_github};
use proptest::prelude::*;
use serde_json::{Value, json};
use support::*;

fn signed(event: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("x-github-event", event.to_owned()),
        ("x-github-delivery", delivery()),
        ("x-hub-signature-256", sign_github(WEBHOOK_SECRET, body)),
    ]
}

async fn assert_handled(
    router: &Router,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    what: &str,
) -> (StatusCode, Value) {
    let (status, reply) = send_to(router, path, headers, body).await;
    assert!(status.as_u16() < 500, "{what}: {status} {reply}");
    let reason = reply.get("message").or_else(|| reply.get("error"));
    assert!(
        reason
            .and_then(Value::as_str)
            .is_some_and(|r| !r.is_empty()),
        "{what}: no reason in {reply}"
    );
    (status, reply)
}

#[tokio::test]
async fn signatures_missing_wrong_or_malformed_are_401() {
    let (router, _) = offline_router().await;
    let body = serde_json::to_vec(&github_example("issues", Some("labeled"))).unwrap();
    let good = sign_github(WEBHOOK_SECRET, &body);
    for sig in [
        None,
        Some(String::new()),
        Some("sha256=".into()),
        Some("sha1=0123".into()),
        Some(good[..good.len() - 2].to_owned()),
        Some(format!("{good}00")),
        Some(good.replace("sha256=", "SHA256=")),
        Some(sign_github("another-secret", &body)),
        Some("sha256=zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz".into()),
    ] {
        let mut headers = vec![("x-github-event", "issues".to_owned())];
        if let Some(s) = sig.clone() {
            headers.push(("x-hub-signature-256", s));
        }
        let (status, reply) = assert_handled(
            &router,
            "/webhook",
            &headers,
            body.clone(),
            &format!("{sig:?}"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{sig:?}: {reply}");
    }
    // A body changed after signing.
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let (status, _) = assert_handled(
        &router,
        "/webhook",
        &signed("issues", &body)[..],
        tampered,
        "tampered",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bodies_empty_truncated_non_json_and_huge_are_4xx() {
    let (router, _) = offline_router().await;
    let real = serde_json::to_vec(&github_example("issues", Some("labeled"))).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated", real[..real.len() / 2].to_vec()),
        ("not json", b"hello, world".to_vec()),
        ("json scalar", b"42".to_vec()),
        ("json array", b"[1,2,3]".to_vec()),
        ("invalid utf-8", vec![0xff, 0xfe, 0x7b, 0x7d]),
        (
            "deeply nested",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        ),
    ];
    for event in ["issues", "pull_request", "issue_comment", "ping", "push"] {
        for (what, body) in &cases {
            let (status, reply) = assert_handled(
                &router,
                "/webhook",
                &signed(event, body),
                body.clone(),
                &format!("{event}/{what}"),
            )
            .await;
            assert!(status.is_client_error(), "{event}/{what}: {status} {reply}");
        }
    }
    // No event header at all.
    let headers = vec![("x-hub-signature-256", sign_github(WEBHOOK_SECRET, &real))];
    let (status, _) = assert_handled(
        &router,
        "/webhooks/github",
        &headers,
        real.clone(),
        "no event",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Over GitHub's 25 MB cap.
    let huge = vec![b' '; 26 * 1024 * 1024];
    let (status, _) = assert_handled(
        &router,
        "/webhook",
        &signed("issues", &huge),
        huge.clone(),
        "huge",
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // JIRA bodies as well.
    for (what, body) in &cases {
        let headers = vec![
            ("x-atlassian-webhook-identifier", delivery()),
            ("x-hub-signature", sign_github(JIRA_SECRET, body)),
        ];
        let (status, _) = assert_handled(
            &router,
            "/webhook",
            &headers,
            body.clone(),
            &format!("jira/{what}"),
        )
        .await;
        assert!(status.is_client_error(), "jira/{what}");
    }
}

#[tokio::test]
async fn every_real_payload_is_handled() {
    let (router, github) = offline_router().await;
    // The installation and repositories of the recorded installation events, so installing the
    // App runs its whole path (labels made) rather than stopping at an unknown installation.
    github.add_installation(957_387);
    for repo in ["Codertocat/Hello-World", "Codertocat/Space"] {
        github.add_repo(repo);
    }
    let examples = all_github_examples();
    assert!(examples.len() > 100, "the fixture set is the full one");
    for (event, payload) in examples {
        let body = serde_json::to_vec(&payload).unwrap();
        let (status, reply) =
            assert_handled(&router, "/webhook", &signed(&event, &body), body, &event).await;
        assert_eq!(status, StatusCode::OK, "{event}: {reply}");
    }
}

/// Paths into the payloads whose removal or change the parser must survive.
const FIELDS: &[&str] = &[
    "action",
    "issue",
    "issue/number",
    "issue/title",
    "issue/body",
    "issue/pull_request",
    "label",
    "label/name",
    "repository",
    "repository/full_name",
    "sender",
    "sender/login",
    "sender/type",
    "installation",
    "installation/id",
    "pull_request",
    "pull_request/number",
    "pull_request/head",
    "pull_request/head/ref",
    "pull_request/head/sha",
    "pull_request/merged",
    "comment",
    "comment/id",
    "comment/body",
    "comment/user",
    "comment/path",
    "comment/line",
    "comment/diff_hunk",
    "comment/in_reply_to_id",
    "review",
    "review/id",
    "review/state",
    "review/body",
    "review/user",
];

fn mutate(payload: &mut Value, path: &str, replacement: Option<Value>) -> bool {
    let mut parts: Vec<&str> = path.split('/').collect();
    let last = parts.pop().unwrap_or_default();
    let mut node = payload;
    for p in parts {
        match node.get_mut(p) {
            Some(n) => node = n,
            None => return false,
        }
    }
    let Some(obj) = node.as_object_mut() else {
        return false;
    };
    if !obj.contains_key(last) {
        return false;
    }
    match replacement {
        None => {
            obj.remove(last);
        }
        Some(v) => {
            obj.insert(last.to_owned(), v);
        }
    }
    true
}

fn handled_examples() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (event, action) in [
        ("issues", "labeled"),
        ("issues", "unlabeled"),
        ("pull_request", "labeled"),
        ("pull_request", "unlabeled"),
        ("pull_request", "closed"),
        ("pull_request", "synchronize"),
        ("issue_comment", "created"),
        ("pull_request_review", "submitted"),
        ("pull_request_review_comment", "created"),
    ] {
        let mut p = github_example(event, Some(action));
        // Make them triggers, so the mutated copies reach as far as the decision can go.
        mutate(
            &mut p,
            "label/name",
            Some(json!(if event == "issues" {
                "claude-dev"
            } else {
                "uat"
            })),
        );
        mutate(&mut p, "comment/body", Some(json!("@claude please")));
        mutate(&mut p, "review/state", Some(json!("changes_requested")));
        out.push((event.to_owned(), p));
    }
    out
}

#[tokio::test]
async fn real_payloads_with_fields_removed_or_mistyped_are_never_5xx() {
    let (router, _) = offline_router().await;
    let wrong: Vec<Option<Value>> = vec![
        None,
        Some(Value::Null),
        Some(json!("text")),
        Some(json!(-1)),
        Some(json!(1.5)),
        Some(json!([])),
        Some(json!({})),
        Some(json!(true)),
    ];
    let mut tried = 0;
    for (event, payload) in handled_examples() {
        for field in FIELDS {
            for w in &wrong {
                let mut p = payload.clone();
                if !mutate(&mut p, field, w.clone()) {
                    continue;
                }
                tried += 1;
                let body = serde_json::to_vec(&p).unwrap();
                assert_handled(
                    &router,
                    "/webhook",
                    &signed(&event, &body),
                    body,
                    &format!("{event} {field}={w:?}"),
                )
                .await;
            }
        }
    }
    assert!(tried > 300, "only {tried} mutations applied");
}

/// One runtime and one router for every generated case: the fakes live on this runtime.
static SHARED: std::sync::LazyLock<(tokio::runtime::Runtime, Router)> =
    std::sync::LazyLock::new(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (router, github) = rt.block_on(offline_router());
        std::mem::forget(github);
        (rt, router)
    });

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random bytes, signed or not, under any event name: never a 5xx, always a JSON reason.
    #[test]
    fn random_bodies_are_refused_cleanly(body in proptest::collection::vec(any::<u8>(), 0..2048), sign in any::<bool>(), event in "[a-z_]{0,20}") {
        let (rt, router) = &*SHARED;
        rt.block_on(async {
            let mut headers = vec![("x-github-event", event.clone())];
            if sign {
                headers.push(("x-hub-signature-256", sign_github(WEBHOOK_SECRET, &body)));
            }
            let (status, _) = assert_handled(router, "/webhook", &headers, body.clone(), "random").await;
            if !sign {
                assert_eq!(status, StatusCode::UNAUTHORIZED);
            }
        });
    }

    /// Real payloads with a random field replaced by a random JSON value, signed.
    #[test]
    fn mutated_real_payloads_are_never_5xx(
        which in 0usize..7,
        field in 0usize..FIELDS.len(),
        value in prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            ".{0,40}".prop_map(|s| json!(s)),
            any::<bool>().prop_map(|b| json!(b)),
            Just(json!([1, "two", null])),
            Just(json!({"nested": {"x": 1}})),
        ],
    ) {
        let (rt, router) = &*SHARED;
        rt.block_on(async {
            let (event, mut payload) = handled_examples().swap_remove(which);
            mutate(&mut payload, FIELDS[field], Some(value));
            let body = serde_json::to_vec(&payload).unwrap();
            assert_handled(router, "/webhook", &signed(&event, &body), body, "mutated").await;
        });
    }
}
