//! The ECS side: the cluster, and each task definition against what its binary requires
//! (`cca_domain::contract`).

use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ecs::types::{ContainerDefinition, TaskDefinition, TaskDefinitionStatus};
use cca_domain::contract::{self, Contract, Requirement};

use super::Settings;
use super::finding::{Finding, flag_of};

/// One task definition to check.
#[derive(Debug, Clone)]
pub struct TaskCheck {
    pub check: &'static str,
    /// The variable that names it (for messages).
    pub var: &'static str,
    /// Family, `family:revision` or ARN; `Err` holds why it is not checked.
    pub name: Result<String, Unnamed>,
    pub contract: &'static Contract,
    /// The container the binary runs in; `None`: the only (or first essential) one.
    pub container: Option<String>,
}

/// Why a task definition is not named.
#[derive(Debug, Clone)]
pub enum Unnamed {
    /// Needed, and not set: a problem.
    Required,
    /// Optional, or not derivable: skipped, for this reason.
    Skip(String),
}

/// The task definitions the settings name, in a fixed order.
pub fn task_checks(settings: &Settings) -> Vec<TaskCheck> {
    let staging = |latest: &Option<String>, staging: &Option<String>, latest_var: &str| match (
        staging, latest,
    ) {
        (Some(s), _) => Ok(s.clone()),
        // As the webhook derives it: only a family name can take the suffix.
        (None, Some(l)) if !l.contains(':') && !l.contains('/') => Ok(format!("{l}-staging")),
        (None, Some(_)) => Err(Unnamed::Skip(format!(
            "not set, and {latest_var} names a revision or an ARN, so it cannot be derived"
        ))),
        (None, None) => Err(Unnamed::Skip(format!("needs {latest_var}"))),
    };
    let required = |v: &Option<String>| v.clone().ok_or(Unnamed::Required);
    vec![
        TaskCheck {
            check: "agent-task-definition",
            var: "AGENT_TASK_DEFINITION",
            name: required(&settings.agent_task_definition),
            contract: &contract::AGENT_RUN,
            container: Some(settings.agent_container.clone()),
        },
        TaskCheck {
            check: "agent-staging-task-definition",
            var: "AGENT_TASK_DEFINITION_STAGING",
            name: staging(
                &settings.agent_task_definition,
                &settings.agent_task_definition_staging,
                "AGENT_TASK_DEFINITION",
            ),
            contract: &contract::AGENT_RUN,
            container: Some(settings.agent_container.clone()),
        },
        TaskCheck {
            check: "preview-task-definition",
            var: "UAT_TASK_DEFINITION",
            name: required(&settings.uat_task_definition),
            contract: &contract::AGENT_PREVIEW,
            container: Some(settings.uat_container.clone()),
        },
        TaskCheck {
            check: "preview-staging-task-definition",
            var: "UAT_TASK_DEFINITION_STAGING",
            name: staging(
                &settings.uat_task_definition,
                &settings.uat_task_definition_staging,
                "UAT_TASK_DEFINITION",
            ),
            contract: &contract::AGENT_PREVIEW,
            container: Some(settings.uat_container.clone()),
        },
        TaskCheck {
            check: "proxy-task-definition",
            var: "PROXY_TASK_DEFINITION",
            name: required(&settings.proxy_task_definition),
            contract: &contract::UAT_PROXY,
            container: settings.proxy_container.clone(),
        },
        TaskCheck {
            check: "proxy-staging-task-definition",
            var: "PROXY_TASK_DEFINITION_STAGING",
            // A staging proxy is a service of its own that not every deployment runs.
            name: settings
                .proxy_task_definition_staging
                .clone()
                .ok_or_else(|| Unnamed::Skip("not set".to_owned())),
            contract: &contract::UAT_PROXY,
            container: settings.proxy_container.clone(),
        },
    ]
}

/// The cluster, then every task definition.
pub async fn check(ecs: &aws_sdk_ecs::Client, settings: &Settings) -> Vec<Finding> {
    let mut findings = vec![cluster(ecs, settings).await];
    let checks = task_checks(settings);
    let results = futures::future::join_all(checks.iter().map(|c| task_definition(ecs, c))).await;
    findings.extend(results);
    findings
}

async fn cluster(ecs: &aws_sdk_ecs::Client, settings: &Settings) -> Finding {
    const CHECK: &str = "cluster";
    let Some(name) = &settings.ecs_cluster else {
        return Finding::not_configured(CHECK, "ECS_CLUSTER", "the cluster");
    };
    let out = match ecs.describe_clusters().clusters(name).send().await {
        Ok(out) => out,
        Err(e) => {
            return Finding::problem(
                CHECK,
                name,
                format!(
                    "could not be checked: DescribeClusters: {}",
                    DisplayErrorContext(&e)
                ),
                "check the AWS credentials, region and permissions doctor runs with",
            );
        }
    };
    match out.clusters().first() {
        Some(c) if c.status() == Some("ACTIVE") => Finding::ok(
            CHECK,
            c.cluster_arn().unwrap_or(name),
            format!(
                "ACTIVE, {} running and {} pending tasks",
                c.running_tasks_count(),
                c.pending_tasks_count()
            ),
        ),
        Some(c) => Finding::problem(
            CHECK,
            c.cluster_arn().unwrap_or(name),
            format!(
                "the cluster is {}, so no task can start",
                c.status().unwrap_or("in an unknown state")
            ),
            "create the cluster again (or point ECS_CLUSTER at the active one)",
        ),
        None => Finding::problem(
            CHECK,
            name,
            "the cluster does not exist",
            "create it, or set ECS_CLUSTER to the cluster sessions run in",
        ),
    }
}

async fn task_definition(ecs: &aws_sdk_ecs::Client, check: &TaskCheck) -> Finding {
    let name = match &check.name {
        Ok(name) => name,
        Err(Unnamed::Required) => {
            return Finding::not_configured(check.check, check.var, "the task definition");
        }
        Err(Unnamed::Skip(reason)) => {
            return Finding::skipped(check.check, check.var, reason.clone());
        }
    };
    let definition = match ecs
        .describe_task_definition()
        .task_definition(name)
        .send()
        .await
    {
        Ok(out) => out.task_definition().cloned(),
        Err(e) if e.code() == Some("ClientException") => None,
        Err(e) => {
            return Finding::problem(
                check.check,
                name,
                format!(
                    "could not be checked: DescribeTaskDefinition: {}",
                    DisplayErrorContext(&e)
                ),
                "check the AWS credentials, region and permissions doctor runs with",
            );
        }
    };
    let Some(definition) = definition else {
        return Finding::problem(
            check.check,
            name,
            "the task definition does not exist",
            format!(
                "register it (for {}), or set {} to where it is",
                check.contract.binary, check.var
            ),
        );
    };
    judge(check, name, &definition)
}

/// A task definition against its binary's contract.
fn judge(check: &TaskCheck, name: &str, definition: &TaskDefinition) -> Finding {
    let resource = match (definition.family(), definition.revision()) {
        (Some(family), revision) if revision > 0 => format!("{family}:{revision}"),
        _ => name.to_owned(),
    };
    let family = definition.family().unwrap_or(name);
    if definition.status() == Some(&TaskDefinitionStatus::Inactive) {
        return Finding::problem(
            check.check,
            resource,
            "the revision is INACTIVE (deregistered), so no new task can start from it",
            format!("register a new revision of {family} and use it"),
        );
    }
    let containers = definition.container_definitions();
    let container = match &check.container {
        Some(wanted) => containers.iter().find(|c| c.name() == Some(wanted)),
        None if containers.len() == 1 => containers.first(),
        None => containers
            .iter()
            .find(|c| c.essential() != Some(false))
            .or(containers.first()),
    };
    let Some(container) = container else {
        let names: Vec<&str> = containers.iter().filter_map(|c| c.name()).collect();
        let wanted = check.container.as_deref().unwrap_or("?");
        let container_var = match check.var.split('_').next() {
            Some("AGENT") => "AGENT_CONTAINER_NAME",
            Some("UAT") => "UAT_CONTAINER_NAME",
            _ => "PROXY_CONTAINER_NAME",
        };
        return Finding::problem(
            check.check,
            resource,
            format!(
                "no container named {wanted} (it has {}), the container {} runs in",
                names.join(", "),
                check.contract.binary
            ),
            format!(
                "name the container {wanted} in a new revision of {family}, or set \
                 {container_var} to its name"
            ),
        );
    };
    let container_name = container.name().unwrap_or("?");
    // The launcher replaces the command of agent containers, so flags there do not count.
    let set = names_set(container, check.contract.per_task.is_empty());
    let unmet = check.contract.unmet(|name| set.iter().any(|s| s == name));
    if unmet.is_empty() {
        let mut required: Vec<String> = Vec::new();
        for r in check.contract.all_requirements() {
            let name = match r {
                Requirement::Required(name) => (*name).to_owned(),
                Requirement::AnyOf(names) => names
                    .iter()
                    .find(|n| set.iter().any(|s| s == *n))
                    .map_or_else(|| r.to_string(), |n| (*n).to_owned()),
            };
            // One variable may meet several requirements (PREVIEW_SIGN_IN=off).
            if !required.contains(&name) {
                required.push(name);
            }
        }
        return Finding::ok(
            check.check,
            resource,
            format!(
                "container {container_name} sets {} for {}",
                required.join(", "),
                check.contract.binary
            ),
        );
    }
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for requirement in &unmet {
        let what = match requirement {
            Requirement::Required(name) => (*name).to_owned(),
            Requirement::AnyOf(names) => format!("any of {}", names.join(", ")),
        };
        let why = if check.contract.requires.contains(requirement) {
            format!("which {} needs to start", check.contract.binary)
        } else {
            format!(
                "which {} needs in a container (its default serves only the container itself)",
                check.contract.binary
            )
        };
        let misspelt = check
            .contract
            .misspelling_of(requirement, set.iter().map(String::as_str));
        let hint = misspelt.map_or_else(String::new, |(m, _)| {
            format!(
                " ({m} is set, which {} does not read)",
                check.contract.binary
            )
        });
        problems.push(format!(
            "container {container_name} does not set {what}, {why}{hint}"
        ));
        fixes.push(match (misspelt, requirement) {
            (Some((m, meant)), _) => format!("set {meant} instead of {m}"),
            (None, Requirement::AnyOf(names)) => format!("set one of {}", names.join(", ")),
            (None, Requirement::Required(name)) if check.contract.per_task.is_empty() => {
                format!("set {name} (or --{} in the command)", flag_of(name))
            }
            (None, Requirement::Required(name)) => format!("set {name}"),
        });
    }
    if !container.environment_files().is_empty() {
        problems.push(
            "the container also loads environment files, which doctor cannot read".to_owned(),
        );
    }
    let deploy = if check.contract.per_task.is_empty() {
        "then update the proxy service to it"
    } else {
        "new sessions use the latest revision of the family"
    };
    Finding::problem(
        check.check,
        resource,
        problems.join("; "),
        format!(
            "register a new revision of {family} whose container {container_name} does: {}; {deploy}",
            fixes.join(", ")
        ),
    )
}

/// The variables a container sets: its environment (empty values count as unset, as the
/// binaries read them), its secrets, and, when `flags_count`, the settings given as flags in its
/// entry point or command (`--listen` sets `LISTEN`).
fn names_set(container: &ContainerDefinition, flags_count: bool) -> Vec<String> {
    let mut set: Vec<String> = container
        .environment()
        .iter()
        .filter(|kv| kv.value().is_some_and(|v| !v.trim().is_empty()))
        .filter_map(|kv| kv.name().map(str::to_owned))
        .chain(container.secrets().iter().map(|s| s.name().to_owned()))
        .collect();
    if flags_count {
        set.extend(
            container
                .entry_point()
                .iter()
                .chain(container.command())
                .filter_map(|word| word.strip_prefix("--"))
                .map(|flag| flag.split('=').next().unwrap_or(flag))
                .filter(|flag| !flag.is_empty())
                .map(|flag| flag.to_ascii_uppercase().replace('-', "_")),
        );
    }
    set
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{KeyValuePair, Secret};

    use super::*;

    fn container(env: &[(&str, &str)], command: &[&str]) -> ContainerDefinition {
        let mut b = ContainerDefinition::builder().name("uat-proxy");
        for (k, v) in env {
            b = b.environment(KeyValuePair::builder().name(*k).value(*v).build());
        }
        for word in command {
            b = b.command(*word);
        }
        b.secrets(
            Secret::builder()
                .name("GITHUB_TOKEN_X")
                .value_from("arn:secret")
                .build()
                .unwrap(),
        )
        .build()
    }

    fn proxy_check() -> TaskCheck {
        TaskCheck {
            check: "proxy-task-definition",
            var: "PROXY_TASK_DEFINITION",
            name: Ok("proxy".into()),
            contract: &contract::UAT_PROXY,
            container: None,
        }
    }

    fn definition(c: ContainerDefinition) -> TaskDefinition {
        TaskDefinition::builder()
            .family("proxy")
            .revision(2)
            .container_definitions(c)
            .build()
    }

    #[test]
    fn flags_in_the_command_and_secrets_count_empty_values_do_not() {
        let c = container(
            &[("SESSIONS_TABLE", ""), ("UAT_DOMAIN_SUFFIX", "x")],
            &[
                "serve",
                "--listen=0.0.0.0:8080",
                "--session-store",
                "dynamodb:t",
            ],
        );
        let set = names_set(&c, true);
        assert!(set.contains(&"LISTEN".to_owned()));
        assert!(set.contains(&"SESSION_STORE".to_owned()));
        assert!(set.contains(&"GITHUB_TOKEN_X".to_owned()));
        assert!(!set.contains(&"SESSIONS_TABLE".to_owned()));
        assert!(!names_set(&c, false).contains(&"LISTEN".to_owned()));
    }

    #[test]
    fn the_audited_proxy_revision_is_named_with_its_misspelling() {
        let c = container(
            &[
                ("SESSION_TABLE", "claude-cloud-agent-sessions"),
                ("UAT_DOMAIN_SUFFIX", "uat.example.com"),
                ("LISTEN", "0.0.0.0:8080"),
            ],
            &[],
        );
        let f = judge(&proxy_check(), "proxy", &definition(c));
        assert_eq!(f.resource, "proxy:2");
        let problem = f.problem.unwrap();
        assert!(
            problem.contains("does not set any of SESSION_STORE, SESSIONS_TABLE")
                && problem
                    .contains("(SESSION_TABLE is set, which cca-uat-proxy serve does not read)"),
            "{problem}"
        );
        assert!(
            f.fix
                .unwrap()
                .contains("set SESSIONS_TABLE instead of SESSION_TABLE")
        );
    }

    #[test]
    fn a_complete_proxy_revision_is_ok() {
        let c = container(
            &[
                ("SESSIONS_TABLE", "t"),
                ("UAT_DOMAIN_SUFFIX", "uat.example.com"),
                ("PREVIEW_SIGN_IN", "off"),
            ],
            &["serve", "--listen", "0.0.0.0:8080"],
        );
        let f = judge(&proxy_check(), "proxy", &definition(c));
        assert_eq!(f.status, super::super::finding::Status::Ok, "{f:?}");
        assert_eq!(
            f.detail.as_deref(),
            Some(
                "container uat-proxy sets SESSIONS_TABLE, UAT_DOMAIN_SUFFIX, PREVIEW_SIGN_IN, \
                 LISTEN for cca-uat-proxy serve"
            )
        );
    }
}
