//! The agent's configuration agrees with what `cca_domain::contract` says its task definitions
//! must give it: an environment holding exactly the contract's variables (and the launcher's
//! per-task ones) starts, and one lacking any required variable fails, naming it.

use std::collections::BTreeSet;

use cca_agent::config::{AgentArgs, Config, ConfigError};
use cca_domain::contract::{AGENT_PREVIEW, AGENT_RUN, Contract, Requirement};
use cca_testkit::settings;

/// Variables `cca-agent` reads outside its flags: the log filter and format (`main.rs`) and
/// where Claude Code keeps conversations (`agent.rs`).
const READ_DIRECTLY: &[&str] = &[
    "RUST_LOG",
    "AWS_EXECUTION_ENV",
    "HOME",
    "CLAUDE_CODE_USE_BEDROCK",
];

/// A value each variable could have in a deployed task definition or override.
fn sample(name: &str) -> &'static str {
    match name {
        "SESSION_STORE" => "dynamodb:claude-cloud-agent-sessions",
        "SESSIONS_TABLE" => "claude-cloud-agent-sessions",
        "GITHUB_APP_SECRET_ARN" => {
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:cca/github-app"
        }
        "CONTROL_SECRET_ARN" => "arn:aws:secretsmanager:us-east-1:123456789012:secret:cca/control",
        "CCA_TOKEN_URL" => "https://abc123.lambda-url.us-east-1.on.aws",
        "CCA_SESSION_TOKEN" => "5f0c0ffee5f0c0ffee5f0c0ffee5f0c0ffee5f0c0ffee5f0c0ffee5f0c0ffee0",
        "SESSION_ID" => "k7mqz2hd9rtw4xcp",
        "SESSION_TYPE" => "agent",
        "IMAGE_CHANNEL" => "latest",
        "REPO_FULL_NAME" => "octo/app",
        "BRANCH_NAME" => "claude/42",
        other => panic!("no sample value for {other}: add one here"),
    }
}

/// The task definition's variables, one name per requirement (`pick` chooses among
/// alternatives), and the launcher's per-task ones.
fn environment(
    contract: &Contract,
    pick: impl Fn(&Requirement) -> Option<&'static str>,
) -> Vec<(&'static str, &'static str)> {
    contract
        .requires
        .iter()
        .filter_map(pick)
        .chain(contract.per_task.iter().copied())
        .map(|name| (name, sample(name)))
        .collect()
}

fn validate(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let args: AgentArgs = settings::parse_from_vars(vars).expect("the values parse as flags");
    Config::from_args(args)
}

#[test]
fn exactly_the_contract_validates_with_each_alternative() {
    for contract in [&AGENT_RUN, &AGENT_PREVIEW] {
        assert!(
            contract.container_requires.is_empty(),
            "the agent's defaults suit a container"
        );
        for (i, requirement) in contract.requires.iter().enumerate() {
            for alternative in requirement.names() {
                let vars = environment(contract, |r| {
                    Some(if std::ptr::eq(r, &contract.requires[i]) {
                        *alternative
                    } else {
                        r.primary()
                    })
                });
                if let Err(e) = validate(&vars) {
                    panic!("{}: {vars:?} fails: {e}", contract.binary);
                }
            }
        }
    }
}

#[test]
fn each_missing_requirement_is_named() {
    for contract in [&AGENT_RUN, &AGENT_PREVIEW] {
        for (i, requirement) in contract.requires.iter().enumerate() {
            let vars = environment(contract, |r| {
                (!std::ptr::eq(r, &contract.requires[i])).then(|| r.primary())
            });
            let error = validate(&vars)
                .expect_err("a requirement is missing")
                .to_string();
            assert!(
                error.starts_with(&format!("{} is not set", requirement.primary())),
                "{}: without {requirement}: {error}",
                contract.binary
            );
        }
    }
}

#[test]
fn the_session_id_comes_from_the_launcher() {
    let vars: Vec<_> = environment(&AGENT_RUN, |r| Some(r.primary()))
        .into_iter()
        .filter(|(name, _)| *name != "SESSION_ID")
        .collect();
    let error = validate(&vars).expect_err("no session").to_string();
    assert!(error.starts_with("SESSION_ID is not set"), "{error}");
}

#[test]
fn the_contract_lists_every_variable_the_agent_reads() {
    let flags: BTreeSet<String> = settings::variables::<AgentArgs>().into_iter().collect();
    let listed: BTreeSet<String> = AGENT_RUN.reads.iter().map(|s| s.to_string()).collect();
    let expected: BTreeSet<String> = flags
        .iter()
        .cloned()
        .chain(READ_DIRECTLY.iter().map(|s| s.to_string()))
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(AGENT_PREVIEW.reads, AGENT_RUN.reads);
}
