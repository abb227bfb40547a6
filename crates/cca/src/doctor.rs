//! `cca doctor [--fix] [--json]`: checks the deployed system against what the code needs.
//!
//! One finding per check, each naming the resource and, when something is wrong, the fix:
//! the `*.<UAT_DOMAIN_SUFFIX>` listener rule and what shadows it ([`rules`]), the proxy's
//! target health and its security group's ingress from the load balancer ([`routing`]), the
//! cluster and every task definition against what its binary requires ([`tasks`], with
//! `cca_domain::contract`), the sessions table with its index and the secrets ([`data`]), the
//! webhook Lambda with its alias, URL, permissions and schedule ([`lambda`]), and the network
//! paths: the Lambda's NAT, the proxy's zones, the proxy's way into sessions ([`network`]).
//!
//! `--fix` makes only the repairs that add or redirect routing to the proxy (the rule and the
//! ingress), then checks everything again; the rest needs a decision or a deployment, so it is
//! reported with the command or change that fixes it. The exit status is 0 only when no check
//! finds a problem after the repairs.

mod data;
mod finding;
mod hosts;
mod lambda;
mod network;
mod routing;
mod rules;
mod tasks;

use std::process::ExitCode;

use anyhow::Context as _;
use cca_settings::{ControlArgs, GitHubArgs, JiraArgs, StoreArgs, StoreSpec, TaskArgs};

use finding::{Finding, Status};

/// The agents' control port unless CONTROL_PORT says otherwise (`cca-agent`'s default).
const DEFAULT_CONTROL_PORT: u16 = 8080;

/// Settings of `cca doctor`: the resources of the deployment, by the names the other binaries
/// read them under. An empty value counts as unset.
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// Make the safe repairs (create or repoint the wildcard listener rule, add the proxy's
    /// ingress from the load balancer), then check again.
    #[arg(long)]
    pub fix: bool,
    /// Print the findings as one JSON array of {check, resource, status, problem, fix}.
    #[arg(long)]
    pub json: bool,

    /// Domain of the preview hosts: the rule routes `*.<suffix>`.
    #[arg(long, env = "UAT_DOMAIN_SUFFIX")]
    pub uat_domain_suffix: Option<String>,
    /// The load balancer listener that must hold the wildcard rule.
    #[arg(long, env = "ALB_LISTENER_ARN")]
    pub alb_listener_arn: Option<String>,
    /// The proxy service's target group, by ARN or name.
    #[arg(long, env = "PROXY_TARGET_GROUP_ARN")]
    pub proxy_target_group_arn: Option<String>,
    /// Security group of the proxy's tasks.
    #[arg(long, env = "PROXY_SECURITY_GROUP_ID")]
    pub proxy_security_group_id: Option<String>,
    /// Security groups of the load balancer, comma-separated. Default: read from the load
    /// balancer of ALB_LISTENER_ARN.
    #[arg(long, env = "ALB_SECURITY_GROUP_ID")]
    pub alb_security_group_id: Option<String>,
    /// Port the proxy listens on. Default: the ports of the target group's registered targets,
    /// else the target group's port.
    #[arg(long, env = "PROXY_PORT")]
    pub proxy_port: Option<u16>,

    /// Task definition of the proxy service (`cca-uat-proxy serve`).
    #[arg(long, env = "PROXY_TASK_DEFINITION")]
    pub proxy_task_definition: Option<String>,
    /// Task definition of a staging proxy service, checked only when set.
    #[arg(long, env = "PROXY_TASK_DEFINITION_STAGING")]
    pub proxy_task_definition_staging: Option<String>,
    /// Container of the proxy's task definition. Default: its only (or first essential) one.
    #[arg(long, env = "PROXY_CONTAINER_NAME")]
    pub proxy_container_name: Option<String>,

    /// Proxy service (its name), whose subnets must be in the load balancer's zones.
    #[arg(long, env = "PROXY_SERVICE")]
    pub proxy_service: Option<String>,
    /// The agents' control port, which the proxy must not reach.
    #[arg(long, env = "CONTROL_PORT", default_value_t = DEFAULT_CONTROL_PORT)]
    pub control_port: u16,
    /// The webhook Lambda (`cca-webhook`), by name or ARN.
    #[arg(long, env = "WEBHOOK_FUNCTION_NAME")]
    pub webhook_function_name: Option<String>,

    #[command(flatten)]
    pub tasks: TaskArgs,
    // The store (an SQLite one has nothing deployed to check) and the secrets, as the
    // webhook reads them; of the credentials only the secrets' names are checked.
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub github: GitHubArgs,
    #[command(flatten)]
    pub jira: JiraArgs,
    #[command(flatten)]
    pub control: ControlArgs,
}

/// The validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lower case, without a leading `*.` or dots.
    pub uat_domain_suffix: Option<String>,
    pub alb_listener_arn: Option<String>,
    pub proxy_target_group: Option<String>,
    pub proxy_security_group_id: Option<String>,
    pub alb_security_group_ids: Vec<String>,
    pub proxy_port: Option<u16>,
    pub ecs_cluster: Option<String>,
    pub agent_task_definition: Option<String>,
    pub agent_task_definition_staging: Option<String>,
    pub uat_task_definition: Option<String>,
    pub uat_task_definition_staging: Option<String>,
    pub proxy_task_definition: Option<String>,
    pub proxy_task_definition_staging: Option<String>,
    pub agent_container: String,
    pub uat_container: String,
    pub proxy_container: Option<String>,
    pub proxy_service: Option<String>,
    pub session_security_groups: Vec<String>,
    pub control_port: u16,
    pub webhook_function: Option<String>,
    pub store: Option<StoreSpec>,
    pub github_app_secret_arn: Option<String>,
    pub jira_secret_arn: Option<String>,
    pub control_secret_arn: Option<String>,
}

impl Settings {
    fn from_args(a: &DoctorArgs) -> anyhow::Result<Self> {
        let set = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let store = a.store.spec()?;
        Ok(Self {
            uat_domain_suffix: set(&a.uat_domain_suffix).map(|s| {
                s.trim_start_matches("*.")
                    .trim_matches('.')
                    .to_ascii_lowercase()
            }),
            alb_listener_arn: set(&a.alb_listener_arn),
            proxy_target_group: set(&a.proxy_target_group_arn),
            proxy_security_group_id: set(&a.proxy_security_group_id),
            alb_security_group_ids: set(&a.alb_security_group_id)
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            proxy_port: a.proxy_port,
            ecs_cluster: set(&a.tasks.ecs_cluster),
            agent_task_definition: set(&a.tasks.agent_task_definition),
            agent_task_definition_staging: set(&a.tasks.agent_task_definition_staging),
            uat_task_definition: set(&a.tasks.uat_task_definition),
            uat_task_definition_staging: set(&a.tasks.uat_task_definition_staging),
            proxy_task_definition: set(&a.proxy_task_definition),
            proxy_task_definition_staging: set(&a.proxy_task_definition_staging),
            agent_container: set(&a.tasks.agent_container_name)
                .unwrap_or_else(|| cca_launcher::DEFAULT_AGENT_CONTAINER.to_owned()),
            uat_container: set(&a.tasks.uat_container_name)
                .unwrap_or_else(|| cca_launcher::DEFAULT_PREVIEW_CONTAINER.to_owned()),
            proxy_container: set(&a.proxy_container_name),
            proxy_service: set(&a.proxy_service),
            session_security_groups: set(&a.tasks.agent_security_groups)
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            control_port: a.control_port,
            webhook_function: set(&a.webhook_function_name),
            store,
            github_app_secret_arn: set(&a.github.github_app_secret_arn),
            jira_secret_arn: set(&a.jira.jira_secret_arn),
            control_secret_arn: set(&a.control.control_secret_arn),
        })
    }
}

/// Every AWS client doctor uses.
#[derive(Debug, Clone)]
struct Clients {
    routing: routing::Clients,
    ecs: aws_sdk_ecs::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    secrets: aws_sdk_secretsmanager::Client,
    lambda: lambda::Clients,
    network: network::Clients,
}

/// Runs every check, in a fixed order.
async fn check_all(clients: &Clients, settings: &Settings) -> Vec<Finding> {
    let webhook = async {
        let report = lambda::check(&clients.lambda, settings).await;
        let network = network::check(&clients.network, settings, report.function.as_ref()).await;
        (report.findings, network)
    };
    let (routing, tasks, data, (webhook, network)) = tokio::join!(
        routing::check(&clients.routing, settings),
        tasks::check(&clients.ecs, settings),
        data::check(&clients.dynamodb, &clients.secrets, settings),
        webhook,
    );
    routing
        .into_iter()
        .chain(tasks)
        .chain(data)
        .chain(webhook)
        .chain(network)
        .collect()
}

/// `cca doctor`.
pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_args(&args).context("invalid configuration")?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let clients = Clients {
        routing: routing::Clients {
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&aws),
            ec2: aws_sdk_ec2::Client::new(&aws),
        },
        ecs: aws_sdk_ecs::Client::new(&aws),
        dynamodb: aws_sdk_dynamodb::Client::new(&aws),
        secrets: aws_sdk_secretsmanager::Client::new(&aws),
        lambda: lambda::Clients {
            lambda: aws_sdk_lambda::Client::new(&aws),
            events: aws_sdk_eventbridge::Client::new(&aws),
        },
        network: network::Clients {
            ec2: aws_sdk_ec2::Client::new(&aws),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&aws),
            ecs: aws_sdk_ecs::Client::new(&aws),
        },
    };
    let mut findings = check_all(&clients, &settings).await;
    if args.fix && findings.iter().any(|f| !f.repairs.is_empty()) {
        let mut done: Vec<(&'static str, String)> = Vec::new();
        for finding in &findings {
            for repair in &finding.repairs {
                let note = match routing::apply(&clients.routing, repair).await {
                    Ok(()) => repair.describe(),
                    Err(e) => format!("could not apply ({}): {e}", repair.describe()),
                };
                done.push((finding.check, note));
            }
        }
        findings = check_all(&clients, &settings).await;
        for finding in &mut findings {
            let notes: Vec<&str> = done
                .iter()
                .filter(|(check, _)| *check == finding.check)
                .map(|(_, note)| note.as_str())
                .collect();
            if !notes.is_empty() {
                finding.repaired = Some(notes.join("; "));
            }
        }
    }
    let problems = findings
        .iter()
        .filter(|f| f.status == Status::Problem)
        .count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        for finding in &findings {
            println!("{}", finding.line());
        }
        let skipped = findings
            .iter()
            .filter(|f| f.status == Status::Skipped)
            .count();
        let fixable = findings.iter().filter(|f| !f.repairs.is_empty()).count();
        let ok = findings.len() - problems - skipped;
        let mut summary = format!("{ok} ok, {problems} problem(s), {skipped} skipped");
        if fixable > 0 && !args.fix {
            summary.push_str(&format!("; `cca doctor --fix` repairs {fixable} of them"));
        }
        println!("{summary}");
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
