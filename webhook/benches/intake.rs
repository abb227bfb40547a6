//! Cost of intake on real GitHub payloads: verify + parse + decide, next to the HMAC-SHA256
//! check alone on the same bytes.
//!
//! Run with `CCA_WEBHOOK_EXAMPLES=<@octokit/webhooks-examples api.github.com/index.json>
//! cargo bench -p cca-webhook --bench intake` (scripts/bench-intake.sh sets it up).

use std::hint::black_box;

use cca_domain::decide::Rules;
use cca_webhook::intake::triage_github;
use cca_webhook::verify::{sign, verify};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use secrecy::SecretString;
use serde_json::Value;

const SECRET: &str = "bench-webhook-secret";

fn example(event: &str, action: &str) -> Vec<u8> {
    let path = std::env::var("CCA_WEBHOOK_EXAMPLES")
        .expect("set CCA_WEBHOOK_EXAMPLES (see scripts/bench-intake.sh)");
    let all: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read examples")).expect("json");
    let events = all.iter().find(|e| e["name"] == event).expect("event");
    let payload = events["examples"]
        .as_array()
        .expect("examples")
        .iter()
        .find(|p| p["action"] == action)
        .expect("action");
    serde_json::to_vec(payload).expect("json")
}

fn bench(c: &mut Criterion) {
    let secrets = vec![SecretString::from(SECRET)];
    let rules = Rules::default();
    for (event, action) in [
        ("issues", "labeled"),
        ("issue_comment", "created"),
        ("pull_request", "closed"),
    ] {
        let body = example(event, action);
        let sig = sign(SECRET, &body);
        let mut group = c.benchmark_group(format!("{event}.{action} ({} bytes)", body.len()));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function("hmac only", |b| {
            b.iter(|| {
                verify(
                    black_box(&secrets),
                    black_box(Some(sig.as_str())),
                    black_box(&body),
                )
                .is_ok()
            })
        });
        group.bench_function("verify+parse+decide", |b| {
            b.iter(|| {
                triage_github(
                    black_box(&secrets),
                    &rules,
                    Some(sig.as_str()),
                    Some(event),
                    black_box(&body),
                )
                .is_ok()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
