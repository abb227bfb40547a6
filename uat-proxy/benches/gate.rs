//! Cost of the sign-in gate's cookie check on the hot path: what every request to a preview
//! behind sign-in pays before the access cache is asked (one AES-256-GCM open of the sealed
//! cookie, its JSON and the expiry), with the cookie among a browser's usual others, and for a
//! request without one or with a forged one.
//!
//! Run with `cargo bench -p cca-uat-proxy --bench gate` (scripts/bench-proxy.sh runs it too).

use std::hint::black_box;

use cca_uat_proxy::gate::{Gate, GateSettings};
use criterion::{Criterion, criterion_group, criterion_main};
use http::header::{COOKIE, HeaderMap, HeaderValue};

const HOST: &str = "tt-feature-x.uat.example.com";

fn headers(cookie: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        COOKIE,
        HeaderValue::from_str(&format!(
            "_ga=GA1.1.1234567890.1700000000; theme=dark; __Host-cca-preview={cookie}; \
             vite-session=abcdef0123456789"
        ))
        .unwrap(),
    );
    h
}

fn cookie_check(c: &mut Criterion) {
    let gate = Gate::new(
        GateSettings::new("Iv23liExample", "a client secret of forty characters...."),
        "uat.example.com",
    );
    let cookie = gate.issue_cookie(HOST, "octocat", 583231, &format!("ghu_{}", "x".repeat(36)));
    let valid = headers(&cookie);
    assert!(gate.has_valid_cookie(&valid, HOST));
    let mut forged = cookie.clone().into_bytes();
    let middle = forged.len() / 2;
    forged[middle] = if forged[middle] == b'A' { b'B' } else { b'A' };
    let forged = headers(std::str::from_utf8(&forged).unwrap());
    assert!(!gate.has_valid_cookie(&forged, HOST));
    let mut none = HeaderMap::new();
    none.insert(COOKIE, HeaderValue::from_static("_ga=GA1.1.1; theme=dark"));

    let mut group = c.benchmark_group("gate");
    group.bench_function("valid cookie", |b| {
        b.iter(|| black_box(gate.has_valid_cookie(black_box(&valid), HOST)))
    });
    group.bench_function("forged cookie", |b| {
        b.iter(|| black_box(gate.has_valid_cookie(black_box(&forged), HOST)))
    });
    group.bench_function("no cookie", |b| {
        b.iter(|| black_box(gate.has_valid_cookie(black_box(&none), HOST)))
    });
    group.finish();
}

criterion_group!(benches, cookie_check);
criterion_main!(benches);
