//! The proxy's configuration agrees with what `cca_domain::contract` says its task definition
//! must give it: an environment holding exactly the contract's variables starts, one lacking any
//! required variable fails naming it, and `LISTEN`, which a container must set, defaults to an
//! address the load balancer cannot reach.

use std::collections::BTreeSet;
use std::process::Command;

use cca_domain::contract::{Requirement, UAT_PROXY};
use cca_testkit::settings;
use cca_uat_proxy::{Config, ProxyArgs};

/// Variables the proxy reads outside [`ProxyArgs`]: `serve --listen` and the log settings
/// (`main.rs`).
const READ_OUTSIDE_SETTINGS: &[&str] = &["LISTEN", "LOG_FORMAT", "RUST_LOG"];

fn sample(name: &str) -> &'static str {
    match name {
        "SESSION_STORE" => "dynamodb:claude-cloud-agent-sessions",
        "SESSIONS_TABLE" => "claude-cloud-agent-sessions",
        "UAT_DOMAIN_SUFFIX" => "uat.example.com",
        "GITHUB_CLIENT_ID" => "Iv23liExample",
        "GITHUB_CLIENT_SECRET" => "0123456789abcdef0123456789abcdef01234567",
        "PREVIEW_SIGN_IN" => "off",
        other => panic!("no sample value for {other}: add one here"),
    }
}

fn environment(
    pick: impl Fn(usize, &Requirement) -> Option<&'static str>,
) -> Vec<(&'static str, &'static str)> {
    UAT_PROXY
        .requires
        .iter()
        .enumerate()
        .filter_map(|(i, r)| pick(i, r))
        .map(|name| (name, sample(name)))
        .collect()
}

fn validate(vars: &[(&str, &str)]) -> Result<Config, String> {
    let args: ProxyArgs = settings::parse_from_vars(vars).expect("the values parse as flags");
    Config::from_args(args).map_err(|e| e.to_string())
}

#[test]
fn exactly_the_contract_validates_with_each_alternative() {
    for (i, requirement) in UAT_PROXY.requires.iter().enumerate() {
        for alternative in requirement.names() {
            let vars = environment(|j, r| Some(if i == j { *alternative } else { r.primary() }));
            if let Err(e) = validate(&vars) {
                panic!("{vars:?} fails: {e}");
            }
        }
    }
}

#[test]
fn each_missing_requirement_is_named() {
    for (i, requirement) in UAT_PROXY.requires.iter().enumerate() {
        let vars = environment(|j, r| (i != j).then(|| r.primary()));
        let error = validate(&vars).expect_err("a requirement is missing");
        assert!(
            error.starts_with(&format!("{} is not set", requirement.primary())),
            "without {requirement}: {error}"
        );
    }
}

#[test]
fn the_audited_task_definition_does_not_start() {
    // The original's proxy task definition, revision 2: `SESSION_TABLE` only.
    let vars = [
        ("SESSION_TABLE", "claude-cloud-agent-sessions"),
        ("UAT_DOMAIN_SUFFIX", "uat.example.com"),
    ];
    let error = validate(&vars).expect_err("the store is missing");
    assert!(error.starts_with("SESSION_STORE is not set"), "{error}");
}

#[test]
fn listen_must_be_set_in_a_container() {
    assert_eq!(
        UAT_PROXY.container_requires,
        &[Requirement::Required("LISTEN")]
    );
    let out = Command::new(env!("CARGO_BIN_EXE_cca-uat-proxy"))
        .args(["serve", "--help"])
        .env_remove("LISTEN")
        .output()
        .expect("run cca-uat-proxy serve --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("env: LISTEN=") && help.contains("default: 127.0.0.1:"),
        "LISTEN's default is loopback, which the load balancer cannot reach: {help}"
    );
}

#[test]
fn the_contract_lists_every_variable_the_proxy_reads() {
    let listed: BTreeSet<String> = UAT_PROXY.reads.iter().map(|s| s.to_string()).collect();
    let expected: BTreeSet<String> = settings::variables::<ProxyArgs>()
        .into_iter()
        .chain(READ_OUTSIDE_SETTINGS.iter().map(|s| s.to_string()))
        .collect();
    assert_eq!(listed, expected);
}
