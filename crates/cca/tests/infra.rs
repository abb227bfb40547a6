//! The task definitions in `infra/` give each binary what it requires.
//!
//! `infra/containers.tf.json` states every container of the Terraform task definitions (its
//! name, the program it runs and its environment), in Terraform's JSON syntax so that it reads
//! here as data; `infra/ecs.tf` builds the task definitions from it. Each container is checked
//! against `cca_domain::contract`, the statement of what `cca-agent run`, `cca-agent preview`
//! and `cca-uat-proxy serve` need, as `cca doctor` checks deployed task definitions: a required
//! variable missing (or set empty) or misspelled, a variable the launcher sets per task, or one
//! the binary does not read, fails the test with a sentence naming it. The doctored copies below
//! prove that it does.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cca_domain::contract::{self, Contract, Requirement};
use cca_launcher::{DEFAULT_AGENT_CONTAINER, DEFAULT_PREVIEW_CONTAINER};
use serde_json::{Value, json};

/// One container as `containers.tf.json` states it. Values are Terraform templates; an empty
/// one leaves the variable out of the task definition.
#[derive(Debug, Clone)]
struct Container {
    /// Its key in `local.containers`.
    key: String,
    name: String,
    command: Vec<String>,
    environment: BTreeMap<String, String>,
}

fn infra_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra")
}

fn read_infra(file: &str) -> String {
    let path = infra_dir().join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn containers_json() -> Value {
    serde_json::from_str(&read_infra("containers.tf.json"))
        .expect("infra/containers.tf.json is JSON")
}

/// The containers of `local.containers`, or why the file does not have that shape.
fn containers(json: &Value) -> Result<Vec<Container>, String> {
    let all = json
        .pointer("/locals/containers")
        .and_then(Value::as_object)
        .ok_or("no object at locals.containers")?;
    let strings = |v: &Value, what: &str| -> Result<Vec<String>, String> {
        v.as_array()
            .ok_or(format!("{what} is not a list"))?
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_owned)
                    .ok_or(format!("{what} holds a non-string"))
            })
            .collect()
    };
    all.iter()
        .map(|(key, c)| {
            let name = c["name"]
                .as_str()
                .ok_or(format!("container {key} has no name"))?
                .to_owned();
            let command = strings(&c["command"], &format!("the command of {key}"))?;
            // Secrets reach the container's environment too (ECS resolves them at start).
            let no_secrets = serde_json::Map::new();
            let secrets = c
                .get("secrets")
                .map(|s| {
                    s.as_object()
                        .ok_or(format!("container {key}: secrets is not an object"))
                })
                .transpose()?
                .unwrap_or(&no_secrets);
            let environment = c["environment"]
                .as_object()
                .ok_or(format!("container {key} has no environment object"))?
                .iter()
                .chain(secrets.iter())
                .map(|(n, v)| {
                    let value = v
                        .as_str()
                        .ok_or(format!("{key}: {n} is not a string template"))?;
                    Ok((n.clone(), value.to_owned()))
                })
                .collect::<Result<_, String>>()?;
            Ok(Container {
                key: key.clone(),
                name,
                command,
                environment,
            })
        })
        .collect()
}

/// The flag of a variable, as the binaries' command lines spell it (`LISTEN` is `--listen`).
fn flag(name: &str) -> String {
    format!("--{}", name.to_ascii_lowercase().replace('_', "-"))
}

/// The contract of the binary a command runs: its program and sub-command, before any flags.
fn contract_of(command: &[String]) -> Option<&'static Contract> {
    contract::ALL.iter().copied().find(|k| {
        let words: Vec<&str> = k.binary.split(' ').collect();
        command.len() >= words.len() && command.iter().zip(&words).all(|(a, w)| a == w)
    })
}

/// What is wrong with one container, each problem a sentence naming the variable.
fn problems(c: &Container) -> Vec<String> {
    let Some(contract) = contract_of(&c.command) else {
        return vec![format!(
            "container {} runs `{}`, which is none of the containerised binaries",
            c.key,
            c.command.join(" ")
        )];
    };
    let who = format!("container {} ({})", c.key, contract.binary);
    let set_in_env = |name: &str| {
        c.environment
            .get(name)
            .is_some_and(|v| !v.trim().is_empty())
    };
    // A container-only need may be met by its flag, unless the launcher replaces the command.
    let set = |name: &str| {
        set_in_env(name)
            || (contract.per_task.is_empty()
                && contract
                    .container_requires
                    .iter()
                    .any(|r| r.names().contains(&name))
                && c.command
                    .iter()
                    .any(|arg| arg == &flag(name) || arg.starts_with(&format!("{}=", flag(name)))))
    };
    let names: Vec<&str> = c
        .environment
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(n, _)| n.as_str())
        .collect();

    let mut found = Vec::new();
    for requirement in contract.unmet(set) {
        let mut problem = format!("{who} does not set {requirement}, which it requires");
        if let Some((wrong, meant)) = contract.misspelling_of(&requirement, names.iter().copied()) {
            problem.push_str(&format!(": set {meant} instead of {wrong}"));
        }
        found.push(problem);
    }
    for name in contract.per_task.iter().filter(|n| set_in_env(n)) {
        found.push(format!(
            "{who} sets {name}, which the launcher sets on each task it starts"
        ));
    }
    found.extend(unread(contract, &who, &names));
    found
}

/// Variables set that the binary does not read. The AWS SDK's own (`AWS_*`) are always allowed;
/// a binary that hands its environment on (the agent, to Claude Code) may get others, unless the
/// name is one or two edits from one it reads.
fn unread(contract: &Contract, who: &str, names: &[&str]) -> Vec<String> {
    let reads = Requirement::AnyOf(contract.reads);
    names
        .iter()
        .filter(|n| !contract.reads(n) && !n.starts_with("AWS_"))
        .filter_map(|name| match contract.misspelling_of(&reads, [*name]) {
            Some((_, meant)) => Some(format!(
                "{who} sets {name}, which it does not read: a misspelling of {meant}?"
            )),
            None if !contract.passes_environment_on => Some(format!(
                "{who} sets {name}, which {} does not read",
                contract.binary
            )),
            None => None,
        })
        .collect()
}

/// The containers the launcher overrides by name: its defaults, which `cca doctor` assumes too.
const LAUNCHED: [(&Contract, &str); 2] = [
    (&contract::AGENT_RUN, DEFAULT_AGENT_CONTAINER),
    (&contract::AGENT_PREVIEW, DEFAULT_PREVIEW_CONTAINER),
];

/// Every problem of the file: its shape, each container, and the containers the launcher and
/// `cca doctor` look for by name.
fn check(json: &Value) -> Vec<String> {
    let containers = match containers(json) {
        Ok(c) => c,
        Err(e) => return vec![format!("infra/containers.tf.json: {e}")],
    };
    let mut found: Vec<String> = containers.iter().flat_map(problems).collect();
    for contract in contract::ALL {
        let runs = |c: &&Container| contract_of(&c.command) == Some(contract);
        match containers.iter().find(runs) {
            None => found.push(format!("no container runs `{}`", contract.binary)),
            Some(c) => {
                let launched = LAUNCHED.iter().find(|(k, _)| *k == contract);
                if let Some((_, wanted)) = launched.filter(|(_, w)| *w != c.name) {
                    found.push(format!(
                        "container {} is named {:?}; the launcher overrides the container named {wanted:?}",
                        c.key, c.name
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn every_container_in_infra_sets_what_its_binary_requires() {
    let problems = check(&containers_json());
    assert!(
        problems.is_empty(),
        "infra/containers.tf.json:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_task_definitions_take_their_containers_from_the_checked_file() {
    // A task definition that spelled out an environment of its own would escape the check above.
    let ecs = read_infra("ecs.tf");
    let blocks: Vec<&str> = ecs
        .split("\nresource ")
        .filter(|b| b.starts_with("\"aws_ecs_task_definition\""))
        .collect();
    assert_eq!(
        blocks.len(),
        2,
        "session and proxy task definitions in infra/ecs.tf"
    );
    for block in blocks {
        let head = block.lines().next().unwrap_or_default();
        // `terraform fmt` aligns the `=` of neighbouring lines: compare with spaces collapsed.
        let text = block.split_whitespace().collect::<Vec<_>>().join(" ");
        for (attribute, source) in [
            ("name", "local.containers"),
            ("command", "local.containers"),
            ("environment", "local.environment"),
        ] {
            assert!(
                text.contains(&format!("{attribute} = {source}")),
                "{head}: its container's {attribute} must be taken from {source} (infra/containers.tf.json)"
            );
        }
    }
}

// --- The check fails on doctored copies ---------------------------------------------------------

fn doctored(edit: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut json = containers_json();
    edit(&mut json);
    check(&json)
}

fn env_of<'a>(json: &'a mut Value, container: &str) -> &'a mut serde_json::Map<String, Value> {
    json["locals"]["containers"][container]["environment"]
        .as_object_mut()
        .expect("an environment object")
}

#[test]
fn the_audited_misspelling_of_the_proxy_s_table_fails_naming_both_names() {
    let problems = doctored(|json| {
        let env = env_of(json, "proxy");
        let table = env
            .remove("SESSIONS_TABLE")
            .expect("the proxy sets SESSIONS_TABLE");
        env.insert("SESSION_TABLE".into(), table);
    });
    assert!(
        problems.iter().any(
            |p| p.contains("does not set SESSION_STORE or SESSIONS_TABLE")
                && p.contains("set SESSIONS_TABLE instead of SESSION_TABLE")
        ),
        "{problems:#?}"
    );
}

#[test]
fn a_missing_token_broker_fails_for_the_agent() {
    let problems = doctored(|json| {
        env_of(json, "agent").remove("CCA_TOKEN_URL");
    });
    assert_eq!(
        problems,
        ["container agent (cca-agent run) does not set CCA_TOKEN_URL, which it requires"]
    );
}

#[test]
fn no_session_container_is_given_the_app_secret_or_the_control_key() {
    let json = containers_json();
    for container in ["agent", "preview"] {
        let env = &json["locals"]["containers"][container]["environment"];
        for secret in ["GITHUB_APP_SECRET_ARN", "CONTROL_SECRET_ARN"] {
            assert!(env.get(secret).is_none(), "{container} is given {secret}");
        }
    }
}

#[test]
fn an_empty_value_counts_as_unset() {
    let problems = doctored(|json| {
        env_of(json, "preview").insert("CCA_TOKEN_URL".into(), json!(""));
    });
    assert_eq!(
        problems,
        ["container preview (cca-agent preview) does not set CCA_TOKEN_URL, which it requires"]
    );
}

#[test]
fn a_misspelled_optional_setting_of_the_agent_fails() {
    let problems = doctored(|json| {
        env_of(json, "agent").insert("CLAUDE_MODLE".into(), json!("${var.claude_model}"));
    });
    assert_eq!(
        problems,
        [
            "container agent (cca-agent run) sets CLAUDE_MODLE, which it does not read: a misspelling of CLAUDE_MODEL?"
        ]
    );
}

#[test]
fn the_agent_may_hand_on_variables_for_claude_code_but_the_proxy_may_not() {
    let agent = doctored(|json| {
        env_of(json, "agent").insert("DISABLE_TELEMETRY".into(), json!("1"));
    });
    assert!(agent.is_empty(), "{agent:#?}");
    let proxy = doctored(|json| {
        env_of(json, "proxy").insert("DISABLE_TELEMETRY".into(), json!("1"));
    });
    assert_eq!(
        proxy,
        [
            "container proxy (cca-uat-proxy serve) sets DISABLE_TELEMETRY, which cca-uat-proxy serve does not read"
        ]
    );
}

#[test]
fn a_misspelled_optional_setting_of_the_proxy_fails() {
    let problems = doctored(|json| {
        env_of(json, "proxy").insert("PROXY_CACHE_TL_MS".into(), json!("5000"));
    });
    assert_eq!(
        problems,
        [
            "container proxy (cca-uat-proxy serve) sets PROXY_CACHE_TL_MS, which it does not read: a misspelling of PROXY_CACHE_TTL_MS?"
        ]
    );
}

#[test]
fn a_variable_the_launcher_sets_per_task_fails() {
    let problems = doctored(|json| {
        env_of(json, "agent").insert("SESSION_ID".into(), json!("k7mqz2hd9rtw4xcp"));
    });
    assert_eq!(
        problems,
        [
            "container agent (cca-agent run) sets SESSION_ID, which the launcher sets on each task it starts"
        ]
    );
}

#[test]
fn the_proxy_may_listen_by_flag_but_not_by_default() {
    let by_flag = doctored(|json| {
        env_of(json, "proxy").remove("LISTEN");
        json["locals"]["containers"]["proxy"]["command"] =
            json!(["cca-uat-proxy", "serve", "--listen", "0.0.0.0:8081"]);
    });
    assert!(by_flag.is_empty(), "{by_flag:#?}");
    let not_at_all = doctored(|json| {
        env_of(json, "proxy").remove("LISTEN");
    });
    assert_eq!(
        not_at_all,
        ["container proxy (cca-uat-proxy serve) does not set LISTEN, which it requires"]
    );
}

#[test]
fn a_renamed_or_missing_session_container_fails() {
    let renamed = doctored(|json| {
        json["locals"]["containers"]["preview"]["name"] = json!("uat");
    });
    assert_eq!(
        renamed,
        [
            "container preview is named \"uat\"; the launcher overrides the container named \"preview\""
        ]
    );
    let missing = doctored(|json| {
        json["locals"]["containers"]
            .as_object_mut()
            .expect("containers")
            .remove("agent");
    });
    assert_eq!(missing, ["no container runs `cca-agent run`"]);
}

/// The one value of `readonly NAME=value` in a script of the repository.
fn readonly(script: &str, name: &str) -> String {
    let text = std::fs::read_to_string(infra_dir().join("..").join(script)).unwrap();
    let prefix = format!("readonly {name}=");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{script} sets no {name}"))
        .trim_matches('"')
        .to_owned()
}

#[test]
fn the_architectures_infra_runs_are_the_ones_the_scripts_build() {
    // Images: deploy.sh builds one platform; every task definition runs it.
    let platform = readonly("deploy.sh", "PLATFORM");
    let cpu = match platform.as_str() {
        "linux/amd64" => "X86_64",
        "linux/arm64" => "ARM64",
        other => panic!("deploy.sh builds {other}"),
    };
    let ecs = read_infra("ecs.tf");
    let runs: Vec<&str> = ecs
        .lines()
        .filter_map(|l| l.trim().strip_prefix("cpu_architecture"))
        .collect();
    assert!(!runs.is_empty(), "ecs.tf names no cpu_architecture");
    for r in &runs {
        assert!(
            r.contains(&format!("\"{cpu}\"")),
            "a task runs {r:?}, deploy.sh builds {platform}"
        );
    }
    // The webhook's package: scripts/build-lambda.sh builds one target; the function runs it.
    let target = readonly("scripts/build-lambda.sh", "TARGET");
    let arch = target
        .split('-')
        .next()
        .unwrap()
        .replace("aarch64", "arm64");
    let lambda = read_infra("lambda.tf");
    let line = lambda
        .lines()
        .find(|l| l.trim().starts_with("architectures"))
        .expect("lambda.tf names the function's architectures");
    assert!(
        line.contains(&format!("[\"{arch}\"]")),
        "the function runs {line:?}, build-lambda.sh builds {target}"
    );
    // Nothing offers a choice the scripts would not honour.
    let variables = read_infra("variables.tf");
    assert!(
        !variables.contains("architecture\""),
        "variables.tf offers an architecture setting that deploy.sh and build-lambda.sh ignore"
    );
}
