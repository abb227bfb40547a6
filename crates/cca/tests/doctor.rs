//! `cca doctor` against the AWS emulator: a correctly built deployment is all ok, and each fault
//! of the 2026-02-02 audit, built one at a time on a fresh deployment, is exactly the one problem
//! reported; `--fix` repairs the routing faults and leaves the others reported.
//!
//! The deployment is built with the SDK as infrastructure code would: a VPC, the load balancer
//! with its HTTP listener and security group, the proxy's target group with one registered IP
//! target, the wildcard rule beside another application's rule, the proxy's security group, the
//! cluster, the five task definitions, the sessions table made by the store itself, and the
//! secrets. Target health is moto's: it does not probe targets and reports every registered IP
//! target `healthy`, so the stand registers one to stand for a running proxy task.

use std::process::Output;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_ec2::types::{IpPermission, UserIdGroupPair};
use aws_sdk_ecs::types::{Compatibility, ContainerDefinition, KeyValuePair, NetworkMode};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, HostHeaderConditionConfig, ProtocolEnum, RuleCondition,
    TargetDescription, TargetTypeEnum,
};
use cca_testkit::moto::{Moto, REGION, unique_name};
use serde_json::Value;
use tokio::process::Command;

/// Bound on each test: a stand takes a few seconds to build, doctor under one to run.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Port the proxy listens on, as in the original's deployment.
const PROXY_PORT: i32 = 8080;

/// The emulator, or `None` (and a message) when the test stand is not running.
fn moto() -> Option<Moto> {
    let moto = Moto::from_env();
    if moto.is_none() {
        cca_testkit::stand::skip(
            "CCA_MOTO_URL is not set (scripts/test.sh starts the AWS emulator)",
        );
    }
    moto
}

/// AWS clients on the emulator.
struct Aws {
    ec2: aws_sdk_ec2::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    ecs: aws_sdk_ecs::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    secrets: aws_sdk_secretsmanager::Client,
    lambda: aws_sdk_lambda::Client,
    events: aws_sdk_eventbridge::Client,
}

impl Aws {
    async fn new(moto: &Moto) -> Self {
        let config = moto.sdk_config().await;
        Self {
            ec2: aws_sdk_ec2::Client::new(&config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&config),
            ecs: aws_sdk_ecs::Client::new(&config),
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            secrets: aws_sdk_secretsmanager::Client::new(&config),
            lambda: aws_sdk_lambda::Client::new(&config),
            events: aws_sdk_eventbridge::Client::new(&config),
        }
    }
}

/// A deployment as the system needs it, with the names doctor is given.
struct Stand {
    moto: Moto,
    aws: Aws,
    suffix: String,
    listener_arn: String,
    proxy_tg_arn: String,
    other_tg_arn: String,
    wildcard_rule_arn: String,
    alb_sg: String,
    proxy_sg: String,
    /// The security group of a load balancer that no longer serves the previews.
    old_alb_sg: String,
    cluster: String,
    agent_family: String,
    preview_family: String,
    proxy_family: String,
    table: String,
    github_secret: String,
    control_secret: String,
    /// The webhook Lambda, in `private_subnet` (routed through a NAT gateway).
    function: String,
    private_subnet: String,
    /// A subnet routed to the internet gateway only.
    public_subnet: String,
    proxy_service: String,
    sessions_sg: String,
}

fn env(pairs: &[(&str, &str)]) -> Vec<KeyValuePair> {
    pairs
        .iter()
        .map(|(k, v)| KeyValuePair::builder().name(*k).value(*v).build())
        .collect()
}

impl Stand {
    async fn build(moto: &Moto) -> Self {
        let aws = Aws::new(moto).await;
        let name = unique_name("dr");
        let suffix = format!("{name}.uat.example.com");

        // Network: a VPC, two subnets, and the security groups of the load balancer, the proxy
        // and a load balancer of old.
        let vpc = aws
            .ec2
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .expect("CreateVpc");
        let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).unwrap().to_owned();
        let mut subnets = Vec::new();
        for (cidr, zone) in [("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b")] {
            let out = aws
                .ec2
                .create_subnet()
                .vpc_id(&vpc_id)
                .cidr_block(cidr)
                .availability_zone(zone)
                .send()
                .await
                .expect("CreateSubnet");
            subnets.push(out.subnet().and_then(|s| s.subnet_id()).unwrap().to_owned());
        }
        let group = |label: &'static str| {
            let ec2 = aws.ec2.clone();
            let vpc_id = vpc_id.clone();
            let name = format!("{name}-{label}");
            async move {
                let out = ec2
                    .create_security_group()
                    .vpc_id(vpc_id)
                    .group_name(&name)
                    .description(label)
                    .send()
                    .await
                    .expect("CreateSecurityGroup");
                out.group_id().unwrap().to_owned()
            }
        };
        let alb_sg = group("alb").await;
        let proxy_sg = group("proxy").await;
        let old_alb_sg = group("old-alb").await;
        let sessions_sg = group("sessions").await;
        let webhook_sg = group("webhook").await;
        // The proxy reaches sessions on every app port but the control port.
        for (from, to) in [(1024, 8079), (8081, 65535)] {
            let to_sessions = IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(from)
                .to_port(to)
                .user_id_group_pairs(UserIdGroupPair::builder().group_id(&sessions_sg).build())
                .build();
            aws.ec2
                .authorize_security_group_egress()
                .group_id(&proxy_sg)
                .ip_permissions(to_sessions)
                .send()
                .await
                .expect("AuthorizeSecurityGroupEgress");
            let from_proxy = IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(from)
                .to_port(to)
                .user_id_group_pairs(UserIdGroupPair::builder().group_id(&proxy_sg).build())
                .build();
            aws.ec2
                .authorize_security_group_ingress()
                .group_id(&sessions_sg)
                .ip_permissions(from_proxy)
                .send()
                .await
                .expect("AuthorizeSecurityGroupIngress");
        }

        // Routing: the load balancer's subnets are public (internet gateway); the Lambda's is
        // private, through a NAT gateway in a public one.
        let igw = aws
            .ec2
            .create_internet_gateway()
            .send()
            .await
            .expect("CreateInternetGateway");
        let igw = igw
            .internet_gateway()
            .and_then(|g| g.internet_gateway_id())
            .unwrap()
            .to_owned();
        aws.ec2
            .attach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(&vpc_id)
            .send()
            .await
            .expect("AttachInternetGateway");
        let table = |via: Via| {
            let ec2 = aws.ec2.clone();
            let vpc_id = vpc_id.clone();
            async move {
                let out = ec2
                    .create_route_table()
                    .vpc_id(vpc_id)
                    .send()
                    .await
                    .expect("CreateRouteTable");
                let id = out
                    .route_table()
                    .and_then(|t| t.route_table_id())
                    .unwrap()
                    .to_owned();
                let route = ec2
                    .create_route()
                    .route_table_id(&id)
                    .destination_cidr_block("0.0.0.0/0");
                let route = match via {
                    Via::Gateway(g) => route.gateway_id(g),
                    Via::Nat(n) => route.nat_gateway_id(n),
                };
                route.send().await.expect("CreateRoute");
                id
            }
        };
        let public_rt = table(Via::Gateway(igw.clone())).await;
        let eip = aws
            .ec2
            .allocate_address()
            .send()
            .await
            .expect("AllocateAddress");
        let nat = aws
            .ec2
            .create_nat_gateway()
            .subnet_id(&subnets[0])
            .allocation_id(eip.allocation_id().unwrap())
            .send()
            .await
            .expect("CreateNatGateway");
        let nat = nat
            .nat_gateway()
            .and_then(|n| n.nat_gateway_id())
            .unwrap()
            .to_owned();
        let private_rt = table(Via::Nat(nat)).await;
        let private_subnet = aws
            .ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block("10.0.3.0/24")
            .availability_zone("us-east-1a")
            .send()
            .await
            .expect("CreateSubnet");
        let private_subnet = private_subnet
            .subnet()
            .and_then(|s| s.subnet_id())
            .unwrap()
            .to_owned();
        for (table, subnet) in [
            (&public_rt, &subnets[0]),
            (&public_rt, &subnets[1]),
            (&private_rt, &private_subnet),
        ] {
            aws.ec2
                .associate_route_table()
                .route_table_id(table)
                .subnet_id(subnet)
                .send()
                .await
                .expect("AssociateRouteTable");
        }

        // The load balancer, its listener (another application is the default), the target
        // groups, one registered proxy target.
        let lb = aws
            .elb
            .create_load_balancer()
            .name(&name)
            .set_subnets(Some(subnets.clone()))
            .security_groups(&alb_sg)
            .send()
            .await
            .expect("CreateLoadBalancer");
        let lb_arn = lb.load_balancers()[0]
            .load_balancer_arn()
            .unwrap()
            .to_owned();
        let target_group = |label: &'static str, port: i32| {
            let elb = aws.elb.clone();
            let vpc_id = vpc_id.clone();
            let name = format!("{name}-{label}");
            async move {
                let out = elb
                    .create_target_group()
                    .name(name)
                    .protocol(ProtocolEnum::Http)
                    .port(port)
                    .vpc_id(vpc_id)
                    .target_type(TargetTypeEnum::Ip)
                    .health_check_path("/health")
                    .send()
                    .await
                    .expect("CreateTargetGroup");
                out.target_groups()[0]
                    .target_group_arn()
                    .unwrap()
                    .to_owned()
            }
        };
        let proxy_tg_arn = target_group("proxy", PROXY_PORT).await;
        let other_tg_arn = target_group("app", 3001).await;
        aws.elb
            .register_targets()
            .target_group_arn(&proxy_tg_arn)
            .targets(
                TargetDescription::builder()
                    .id("10.0.1.10")
                    .port(PROXY_PORT)
                    .build(),
            )
            .send()
            .await
            .expect("RegisterTargets");
        let listener = aws
            .elb
            .create_listener()
            .load_balancer_arn(&lb_arn)
            .protocol(ProtocolEnum::Http)
            .port(80)
            .default_actions(forward(&other_tg_arn))
            .send()
            .await
            .expect("CreateListener");
        let listener_arn = listener.listeners()[0].listener_arn().unwrap().to_owned();
        create_rule(&aws, &listener_arn, 1, "app.example.org", &other_tg_arn).await;
        let wildcard_rule_arn = create_rule(
            &aws,
            &listener_arn,
            10,
            &format!("*.{suffix}"),
            &proxy_tg_arn,
        )
        .await;
        authorize(&aws, &proxy_sg, &alb_sg).await;

        // ECS: the cluster and the task definitions.
        let cluster = name.clone();
        moto.create_cluster(&aws.ecs, &cluster)
            .await
            .expect("CreateCluster");
        let table = format!("{name}-sessions");
        let github_secret = format!("{name}/github-app");
        let control_secret = format!("{name}/control");
        // Session containers hold no secret of the system's: they ask the webhook's token
        // broker for their installation tokens.
        let agent_env = [
            ("SESSIONS_TABLE", table.as_str()),
            (
                "CCA_TOKEN_URL",
                "https://abc123.lambda-url.us-east-1.on.aws",
            ),
            ("CLAUDE_CODE_USE_BEDROCK", "1"),
        ];
        let agent_family = format!("{name}-agent");
        let preview_family = format!("{name}-preview");
        let proxy_family = format!("{name}-proxy");
        for (family, container) in [
            (agent_family.clone(), "agent"),
            (format!("{agent_family}-staging"), "agent"),
            (preview_family.clone(), "preview"),
            (format!("{preview_family}-staging"), "preview"),
        ] {
            register(&aws, &family, container, &agent_env, &[]).await;
        }
        let listen = format!("0.0.0.0:{PROXY_PORT}");
        register(
            &aws,
            &proxy_family,
            "uat-proxy",
            &[
                ("SESSIONS_TABLE", table.as_str()),
                ("UAT_DOMAIN_SUFFIX", suffix.as_str()),
                // Terraform gives these as secrets; as values here, the check is the same.
                ("GITHUB_CLIENT_ID", "Iv23liExample"),
                ("GITHUB_CLIENT_SECRET", "client-secret"),
            ],
            &["serve", "--listen", &listen],
        )
        .await;

        // The sessions table, as the store makes it, and the secrets.
        cca_store::DynamoStore::create_table(&aws.dynamodb, &table)
            .await
            .expect("create the sessions table");
        let github = serde_json::json!({
            "app_id": 4242,
            "private_key": cca_testkit::github::app_private_key_pem(),
            "webhook_secret": "webhook-secret",
            "default_installation_id": 7,
        });
        for (name, value) in [
            (&github_secret, github.to_string()),
            (&control_secret, "c".repeat(64)),
        ] {
            aws.secrets
                .create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await
                .expect("CreateSecret");
        }

        // The proxy service, in the load balancer's zones.
        let proxy_service = format!("{name}-uat-proxy");
        aws.ecs
            .create_service()
            .cluster(&cluster)
            .service_name(&proxy_service)
            .task_definition(&proxy_family)
            .desired_count(0)
            .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
            .network_configuration(
                aws_sdk_ecs::types::NetworkConfiguration::builder()
                    .awsvpc_configuration(
                        aws_sdk_ecs::types::AwsVpcConfiguration::builder()
                            .set_subnets(Some(subnets.clone()))
                            .security_groups(&proxy_sg)
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("CreateService");

        // The webhook Lambda as infra/lambda.tf makes it: a published version behind the alias
        // `live`, its public URL with both permissions, the sweep schedule.
        let function = format!("{name}-webhook");
        let role = moto
            .create_lambda_role(&format!("{name}-webhook"))
            .await
            .expect("CreateRole");
        let created = aws
            .lambda
            .create_function()
            .function_name(&function)
            .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
            .handler("bootstrap")
            .role(role)
            .code(
                aws_sdk_lambda::types::FunctionCode::builder()
                    .zip_file(EMPTY_ZIP.to_vec().into())
                    .build(),
            )
            .vpc_config(
                aws_sdk_lambda::types::VpcConfig::builder()
                    .subnet_ids(&private_subnet)
                    .security_group_ids(&webhook_sg)
                    .build(),
            )
            .publish(true)
            .send()
            .await
            .expect("CreateFunction");
        let version = created.version().unwrap_or("1").to_owned();
        let alias = aws
            .lambda
            .create_alias()
            .function_name(&function)
            .name("live")
            .function_version(version)
            .send()
            .await
            .expect("CreateAlias");
        let alias_arn = alias.alias_arn().unwrap().to_owned();
        aws.lambda
            .create_function_url_config()
            .function_name(&function)
            .qualifier("live")
            .auth_type(aws_sdk_lambda::types::FunctionUrlAuthType::None)
            .send()
            .await
            .expect("CreateFunctionUrlConfig");
        aws.lambda
            .add_permission()
            .function_name(&function)
            .qualifier("live")
            .statement_id("PublicFunctionUrl")
            .action("lambda:InvokeFunctionUrl")
            .principal("*")
            .function_url_auth_type(aws_sdk_lambda::types::FunctionUrlAuthType::None)
            .send()
            .await
            .expect("AddPermission");
        aws.lambda
            .add_permission()
            .function_name(&function)
            .qualifier("live")
            .statement_id(URL_INVOKE_STATEMENT)
            .action("lambda:InvokeFunction")
            .principal("*")
            .invoked_via_function_url(true)
            .send()
            .await
            .expect("AddPermission");
        let rule = aws
            .events
            .put_rule()
            .name(format!("{name}-sweep"))
            .schedule_expression("rate(5 minutes)")
            .send()
            .await
            .expect("PutRule");
        aws.events
            .put_targets()
            .rule(format!("{name}-sweep"))
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("sweep")
                    .arn(&alias_arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("PutTargets");
        aws.lambda
            .add_permission()
            .function_name(&function)
            .qualifier("live")
            .statement_id("SweepSchedule")
            .action("lambda:InvokeFunction")
            .principal("events.amazonaws.com")
            .source_arn(rule.rule_arn().unwrap())
            .send()
            .await
            .expect("AddPermission");

        Self {
            moto: moto.clone(),
            aws,
            suffix,
            listener_arn,
            proxy_tg_arn,
            other_tg_arn,
            wildcard_rule_arn,
            alb_sg,
            proxy_sg,
            old_alb_sg,
            cluster,
            agent_family,
            preview_family,
            proxy_family,
            table,
            github_secret,
            control_secret,
            function,
            private_subnet,
            public_subnet: subnets[0].clone(),
            proxy_service,
            sessions_sg,
        }
    }

    /// Runs `cca doctor` with `args` and only this stand's settings in its environment.
    async fn doctor(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cca"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", &self.moto.url)
            .env("AWS_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("UAT_DOMAIN_SUFFIX", &self.suffix)
            .env("ALB_LISTENER_ARN", &self.listener_arn)
            .env("PROXY_TARGET_GROUP_ARN", &self.proxy_tg_arn)
            .env("PROXY_SECURITY_GROUP_ID", &self.proxy_sg)
            .env("ECS_CLUSTER", &self.cluster)
            .env("AGENT_TASK_DEFINITION", &self.agent_family)
            .env("UAT_TASK_DEFINITION", &self.preview_family)
            .env("PROXY_TASK_DEFINITION", &self.proxy_family)
            .env("SESSIONS_TABLE", &self.table)
            .env("GITHUB_APP_SECRET_ARN", &self.github_secret)
            .env("CONTROL_SECRET_ARN", &self.control_secret)
            .env("WEBHOOK_FUNCTION_NAME", &self.function)
            .env("PROXY_SERVICE", &self.proxy_service)
            .env("AGENT_SECURITY_GROUPS", &self.sessions_sg)
            .arg("doctor")
            .args(args)
            .kill_on_drop(true);
        cmd.output().await.expect("run cca doctor")
    }
}

/// Where a route table sends its default route.
enum Via {
    Gateway(String),
    Nat(String),
}

/// A zip archive with no entries: the emulator stores a function's code without running it.
const EMPTY_ZIP: [u8; 22] = [
    0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// The statement Terraform's `terraform_data.webhook_url_invoke` makes.
const URL_INVOKE_STATEMENT: &str = "PublicFunctionUrlInvoke";

fn forward(target_group_arn: &str) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(target_group_arn)
        .build()
}

async fn create_rule(aws: &Aws, listener: &str, priority: i32, host: &str, tg: &str) -> String {
    let out = aws
        .elb
        .create_rule()
        .listener_arn(listener)
        .priority(priority)
        .conditions(
            RuleCondition::builder()
                .field("host-header")
                .host_header_config(HostHeaderConditionConfig::builder().values(host).build())
                .build(),
        )
        .actions(forward(tg))
        .send()
        .await
        .expect("CreateRule");
    out.rules()[0].rule_arn().unwrap().to_owned()
}

/// Lets `source` reach `group` on the proxy port.
async fn authorize(aws: &Aws, group: &str, source: &str) {
    authorize_range(aws, group, source, PROXY_PORT, PROXY_PORT).await;
}

async fn register(
    aws: &Aws,
    family: &str,
    container: &str,
    vars: &[(&str, &str)],
    command: &[&str],
) {
    let definition = ContainerDefinition::builder()
        .name(container)
        .image("cca:latest")
        .essential(true)
        .set_environment(Some(env(vars)))
        .set_command((!command.is_empty()).then(|| command.iter().map(|s| s.to_string()).collect()))
        .build();
    aws.ecs
        .register_task_definition()
        .family(family)
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu("256")
        .memory("512")
        .container_definitions(definition)
        .send()
        .await
        .expect("RegisterTaskDefinition");
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The report's FAIL lines.
fn failures(out: &Output) -> Vec<String> {
    stdout(out)
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .map(str::to_owned)
        .collect()
}

/// Asserts the run found exactly one problem, whose line starts with `start` and holds each of
/// `contains`.
fn assert_one_problem(out: &Output, start: &str, contains: &[&str]) {
    let fails = failures(out);
    let report = format!(
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
    // Shown with --nocapture, to read the report as an operator would.
    eprintln!("{report}");
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(fails.len(), 1, "{report}");
    assert!(fails[0].starts_with(start), "{report}");
    for part in contains {
        assert!(fails[0].contains(part), "missing {part:?}: {report}");
    }
}

fn assert_clean(out: &Output) {
    let report = format!(
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{report}");
    assert!(failures(out).is_empty(), "{report}");
    assert_eq!(out.status.code(), Some(0), "{report}");
}

/// Runs `body` with a fresh stand, under the global time-out.
async fn with_stand<F, Fut>(body: F)
where
    F: FnOnce(Stand) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(moto) = moto() else { return };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let stand = Stand::build(&moto).await;
        body(stand).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_correct_deployment_is_all_ok() {
    with_stand(|stand| async move {
        let out = stand.doctor(&[]).await;
        assert_clean(&out);
        let text = stdout(&out);
        for check in [
            "listener-rule",
            "proxy-targets",
            "proxy-ingress",
            "cluster",
            "agent-task-definition",
            "agent-staging-task-definition",
            "preview-task-definition",
            "preview-staging-task-definition",
            "proxy-task-definition",
            "sessions-table",
            "github-app-secret",
            "control-secret",
            "webhook-function",
            "webhook-alias",
            "webhook-url",
            "webhook-url-permissions",
            "sweep-schedule",
            "webhook-subnets",
            "proxy-zones",
            "session-ports",
        ] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("ok    {check}: "))),
                "{check} not ok:\n{text}"
            );
        }
        assert!(
            text.contains("skip  jira-secret: JIRA_SECRET_ARN"),
            "{text}"
        );
        assert!(text.contains("1 of 1 targets healthy"), "{text}");

        // The same as JSON.
        let out = stand.doctor(&["--json"]).await;
        assert_eq!(out.status.code(), Some(0));
        let findings: Vec<Value> = serde_json::from_slice(&out.stdout).expect("a JSON array");
        assert_eq!(findings.len(), 23);
        let rule = findings
            .iter()
            .find(|f| f["check"] == "listener-rule")
            .unwrap();
        assert_eq!(rule["status"], "ok");
        assert_eq!(rule["resource"], stand.listener_arn.as_str());
        assert!(rule["problem"].is_null() && rule["fix"].is_null());
    })
    .await;
}

#[tokio::test]
async fn a_deleted_listener_rule_is_found_and_recreated() {
    with_stand(|stand| async move {
        stand
            .aws
            .elb
            .delete_rule()
            .rule_arn(&stand.wildcard_rule_arn)
            .send()
            .await
            .expect("DeleteRule");
        let out = stand.doctor(&[]).await;
        assert_one_problem(
            &out,
            &format!(
                "FAIL  listener-rule: {}: no rule routes host *.{}",
                stand.listener_arn, stand.suffix
            ),
            &["`cca doctor --fix` does this", &stand.proxy_tg_arn],
        );

        let fixed = stand.doctor(&["--fix"]).await;
        assert_clean(&fixed);
        // Priority 1 holds the other application's rule: the lowest free number is 2.
        assert!(
            stdout(&fixed).contains("[--fix created a rule at priority 2"),
            "{}",
            stdout(&fixed)
        );
        assert_clean(&stand.doctor(&[]).await);
    })
    .await;
}

#[tokio::test]
async fn a_rule_forwarding_elsewhere_is_found_and_repointed() {
    with_stand(|stand| async move {
        stand
            .aws
            .elb
            .modify_rule()
            .rule_arn(&stand.wildcard_rule_arn)
            .actions(forward(&stand.other_tg_arn))
            .send()
            .await
            .expect("ModifyRule");
        let out = stand.doctor(&[]).await;
        assert_one_problem(
            &out,
            &format!("FAIL  listener-rule: {}: rule ", stand.listener_arn),
            &[&format!(
                "forwards to {} instead of the proxy's target group {}",
                stand.other_tg_arn, stand.proxy_tg_arn
            )],
        );

        let fixed = stand.doctor(&["--fix"]).await;
        assert_clean(&fixed);
        assert!(
            stdout(&fixed).contains(&format!(
                "[--fix rule {} now forwards to {}]",
                stand.wildcard_rule_arn, stand.proxy_tg_arn
            )),
            "{}",
            stdout(&fixed)
        );
        assert_clean(&stand.doctor(&[]).await);
    })
    .await;
}

#[tokio::test]
async fn ingress_only_from_another_group_is_found_and_opened() {
    with_stand(|stand| async move {
        stand
            .aws
            .ec2
            .revoke_security_group_ingress()
            .group_id(&stand.proxy_sg)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(PROXY_PORT)
                    .to_port(PROXY_PORT)
                    .user_id_group_pairs(UserIdGroupPair::builder().group_id(&stand.alb_sg).build())
                    .build(),
            )
            .send()
            .await
            .expect("RevokeSecurityGroupIngress");
        authorize(&stand.aws, &stand.proxy_sg, &stand.old_alb_sg).await;
        let out = stand.doctor(&[]).await;
        assert_one_problem(
            &out,
            &format!(
                "FAIL  proxy-ingress: {}: does not admit the load balancer's security group {} \
                 on tcp/{PROXY_PORT}",
                stand.proxy_sg, stand.alb_sg
            ),
            &[
                &format!("it admits tcp/{PROXY_PORT} from {}", stand.old_alb_sg),
                &format!(
                    "--group-id {} --protocol tcp --port {PROXY_PORT} --source-group {}",
                    stand.proxy_sg, stand.alb_sg
                ),
            ],
        );

        let fixed = stand.doctor(&["--fix"]).await;
        assert_clean(&fixed);
        assert_clean(&stand.doctor(&[]).await);
    })
    .await;
}

#[tokio::test]
async fn a_task_definition_setting_session_table_is_found_and_left_to_a_deployment() {
    with_stand(|stand| async move {
        // A new revision as the audit found it: SESSION_TABLE where SESSIONS_TABLE is read.
        let listen = format!("0.0.0.0:{PROXY_PORT}");
        register(
            &stand.aws,
            &stand.proxy_family,
            "uat-proxy",
            &[
                ("SESSION_TABLE", stand.table.as_str()),
                ("UAT_DOMAIN_SUFFIX", stand.suffix.as_str()),
            ],
            &["serve", "--listen", &listen],
        )
        .await;
        let expected_start = format!(
            "FAIL  proxy-task-definition: {}:2: container uat-proxy does not set any of \
             SESSION_STORE, SESSIONS_TABLE",
            stand.proxy_family
        );
        let expected = [
            "(SESSION_TABLE is set, which cca-uat-proxy serve does not read)",
            "set SESSIONS_TABLE instead of SESSION_TABLE",
        ];
        assert_one_problem(&stand.doctor(&[]).await, &expected_start, &expected);

        // Not a repair doctor makes: it stays reported, and the exit status says so.
        assert_one_problem(&stand.doctor(&["--fix"]).await, &expected_start, &expected);
    })
    .await;
}

#[tokio::test]
async fn a_table_without_its_index_is_found() {
    with_stand(|stand| async move {
        // A table of the right key and TTL but no pr-index, under the name doctor is given.
        let table = format!("{}-noindex", stand.table);
        stand
            .aws
            .dynamodb
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("session_id")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("session_id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("CreateTable");
        stand
            .aws
            .dynamodb
            .update_time_to_live()
            .table_name(&table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("ttl")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("UpdateTimeToLive");
        let stand = Stand { table, ..stand };
        let expected = [
            "it has no global secondary index pr-index",
            "--global-secondary-index-updates",
        ];
        let out = stand.doctor(&[]).await;
        assert_one_problem(&out, "FAIL  sessions-table: arn:aws:dynamodb:", &expected);
        assert!(failures(&out)[0].contains(&format!("table/{}", stand.table)));
        assert_one_problem(
            &stand.doctor(&["--fix"]).await,
            "FAIL  sessions-table: ",
            &expected,
        );
    })
    .await;
}

/// Lambda requires, since October 2025, an InvokeFunction statement for calls through the URL;
/// a replaced alias or a hand-run removal loses it, and every delivery is answered 403.
#[tokio::test]
async fn a_missing_function_url_permission_is_found() {
    with_stand(|stand| async move {
        stand
            .aws
            .lambda
            .remove_permission()
            .function_name(&stand.function)
            .qualifier("live")
            .statement_id(URL_INVOKE_STATEMENT)
            .send()
            .await
            .expect("RemovePermission");
        let out = stand.doctor(&[]).await;
        assert_one_problem(
            &out,
            "FAIL  webhook-url-permissions: ",
            &[
                "lambda:InvokedViaFunctionUrl",
                "403",
                "terraform_data.webhook_url_invoke",
                "--invoked-via-function-url",
            ],
        );

        // Put back without its condition, it lets anyone invoke the function directly.
        stand
            .aws
            .lambda
            .add_permission()
            .function_name(&stand.function)
            .qualifier("live")
            .statement_id("Everyone")
            .action("lambda:InvokeFunction")
            .principal("*")
            .send()
            .await
            .expect("AddPermission");
        let out = stand.doctor(&[]).await;
        assert_one_problem(
            &out,
            "FAIL  webhook-url-permissions: ",
            &[
                "InvokedViaFunctionUrl",
                "statement Everyone lets anyone invoke",
            ],
        );
    })
    .await;
}

/// A Lambda never gets a public address: in a subnet whose default route is an internet
/// gateway it reaches nothing outside the VPC.
#[tokio::test]
async fn a_lambda_subnet_without_a_nat_is_found() {
    with_stand(|stand| async move {
        let out = stand.doctor(&[]).await;
        let text = stdout(&out);
        assert!(
            text.contains(&format!(
                "ok    webhook-subnets: {}: {} → nat-",
                stand.function, stand.private_subnet
            )),
            "{text}"
        );
        stand
            .aws
            .lambda
            .update_function_configuration()
            .function_name(&stand.function)
            .vpc_config(
                aws_sdk_lambda::types::VpcConfig::builder()
                    .subnet_ids(&stand.public_subnet)
                    .security_group_ids(&stand.proxy_sg)
                    .build(),
            )
            .send()
            .await
            .expect("UpdateFunctionConfiguration");
        // Not yet served: the alias still runs the version published in the private subnet.
        let out = stand.doctor(&[]).await;
        assert_clean(&out);
        // Released (`deploy.sh lambda` publishes the function as it is and moves the alias).
        let published = stand
            .aws
            .lambda
            .publish_version()
            .function_name(&stand.function)
            .send()
            .await
            .expect("PublishVersion");
        stand
            .aws
            .lambda
            .update_alias()
            .function_name(&stand.function)
            .name("live")
            .function_version(published.version().unwrap())
            .send()
            .await
            .expect("UpdateAlias");
        let out = stand.doctor(&[]).await;
        assert_one_problem(
            &out,
            &format!(
                "FAIL  webhook-subnets: {}: {}",
                stand.function, stand.public_subnet
            ),
            &[
                "internet gateway igw-",
                "never gets a public address",
                "NAT gateway",
            ],
        );
    })
    .await;
}

/// A repository may name any unprivileged port for its app: a group that admits the proxy on
/// the default port only blocks the docs' own example (5173).
#[tokio::test]
async fn sessions_closed_to_an_app_port_are_found() {
    with_stand(|stand| async move {
        stand
            .aws
            .ec2
            .revoke_security_group_ingress()
            .group_id(&stand.sessions_sg)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(1024)
                    .to_port(8079)
                    .user_id_group_pairs(
                        UserIdGroupPair::builder().group_id(&stand.proxy_sg).build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("RevokeSecurityGroupIngress");
        authorize_range(&stand.aws, &stand.sessions_sg, &stand.proxy_sg, 3000, 3000).await;
        let out = stand.doctor(&[]).await;
        assert_one_problem(
            &out,
            &format!("FAIL  session-ports: {}", stand.sessions_sg),
            &["on tcp/1024-2999, 3001-8079", ".cca.toml"],
        );

        // Opening everything, the control port included, is a problem too.
        authorize_range(&stand.aws, &stand.sessions_sg, &stand.proxy_sg, 0, 65535).await;
        let out = stand.doctor(&[]).await;
        assert_one_problem(
            &out,
            &format!("FAIL  session-ports: {}", stand.sessions_sg),
            &["control port 8080"],
        );
    })
    .await;
}

/// Lets `source` reach `group` on tcp/`from`-`to`.
async fn authorize_range(aws: &Aws, group: &str, source: &str, from: i32, to: i32) {
    aws.ec2
        .authorize_security_group_ingress()
        .group_id(group)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(from)
                .to_port(to)
                .user_id_group_pairs(UserIdGroupPair::builder().group_id(source).build())
                .build(),
        )
        .send()
        .await
        .expect("AuthorizeSecurityGroupIngress");
}

#[tokio::test]
async fn an_unconfigured_doctor_names_every_missing_input() {
    // No deployment is named, so no AWS call is made: this runs without the emulator.
    let out = Command::new(env!("CARGO_BIN_EXE_cca"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["doctor", "--json"])
        .output()
        .await
        .expect("run cca doctor");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let findings: Vec<Value> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    let unset: Vec<&str> = findings
        .iter()
        .filter(|f| f["status"] == "problem")
        .map(|f| f["resource"].as_str().unwrap())
        .collect();
    assert_eq!(
        unset,
        [
            "UAT_DOMAIN_SUFFIX",
            "PROXY_TARGET_GROUP_ARN",
            "PROXY_SECURITY_GROUP_ID",
            "ECS_CLUSTER",
            "AGENT_TASK_DEFINITION",
            "UAT_TASK_DEFINITION",
            "PROXY_TASK_DEFINITION",
            "SESSIONS_TABLE",
            "GITHUB_APP_SECRET_ARN",
            "CONTROL_SECRET_ARN",
            "WEBHOOK_FUNCTION_NAME",
            "PROXY_SERVICE",
            "AGENT_SECURITY_GROUPS",
        ]
    );
    for finding in findings.iter().filter(|f| f["status"] == "problem") {
        let var = finding["resource"].as_str().unwrap();
        assert_eq!(
            finding["problem"].as_str().unwrap().split(' ').next(),
            Some(var)
        );
        assert!(
            finding["fix"]
                .as_str()
                .unwrap()
                .starts_with(&format!("set {var}"))
        );
    }
}
