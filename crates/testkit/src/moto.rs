//! Helpers for tests that drive AWS APIs against the local emulator (moto).
//!
//! `scripts/test.sh` starts one moto server for the whole run and exports its address as
//! `CCA_MOTO_URL`; [`Moto::from_env`] picks it up. Tests run outside that script find no
//! address and skip themselves, so a plain `cargo test` still passes.
//!
//! The server is shared by every test of the run. Tests in one binary run in parallel, so they
//! keep out of each other's way with names from [`unique_name`] rather than by resetting the
//! server; a test that must reset it, or that changes moto's global state transitions, holds
//! [`Moto::exclusive`] for its whole body, and so must every other emulator test of the same
//! binary.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecs::config::Credentials;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, ContainerDefinition, NetworkConfiguration,
    NetworkMode,
};
use tokio::sync::{Mutex, MutexGuard};

/// Region the emulator is driven in; matches `AWS_REGION` exported by `scripts/test.sh`.
pub const REGION: &str = "us-east-1";

/// Account id moto gives every resource it creates.
pub const ACCOUNT_ID: &str = "123456789012";

/// Environment variable that carries the emulator's base URL.
pub const URL_ENV: &str = "CCA_MOTO_URL";

/// The EC2 Query API version that the network helpers speak.
const EC2_API_VERSION: &str = "2016-11-15";

/// Handle on the running moto server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moto {
    /// Base URL of the server, such as `http://127.0.0.1:5000`, without a trailing slash.
    pub url: String,
}

/// A VPC with subnets and a security group, enough for awsvpc tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// The VPC's id.
    pub vpc_id: String,
    /// Subnets of the VPC, one per availability zone used.
    pub subnet_ids: Vec<String>,
    /// A security group of the VPC.
    pub security_group_id: String,
}

impl Network {
    /// The awsvpc network configuration a RunTask call in this network takes, without a public IP
    /// (agent tasks live in private subnets).
    pub fn awsvpc_configuration(&self) -> NetworkConfiguration {
        let awsvpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(self.subnet_ids.clone()))
            .security_groups(self.security_group_id.clone())
            .assign_public_ip(AssignPublicIp::Disabled)
            .build()
            .expect("subnets are always set");
        NetworkConfiguration::builder()
            .awsvpc_configuration(awsvpc)
            .build()
    }
}

/// A name no other test of this run uses, for clusters, tables and task families.
///
/// Lower-case letters, digits and dashes only, so it is valid for every AWS resource the tests
/// create.
pub fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{:08x}{:08x}", rand::random::<u32>(), nanos)
}

/// Serializes the tests of one binary that reset the emulator or change its global settings.
static EXCLUSIVE: Mutex<()> = Mutex::const_new(());

impl Moto {
    /// A handle on the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        Self {
            url: url.trim_end_matches('/').to_owned(),
        }
    }

    /// The server named by `CCA_MOTO_URL`, or `None` when the variable is unset or empty.
    ///
    /// Callers skip their test on `None`, with a message saying why.
    pub fn from_env() -> Option<Self> {
        std::env::var(URL_ENV)
            .ok()
            .filter(|url| !url.trim().is_empty())
            .map(Self::new)
    }

    /// Waits for, then holds, the lock that keeps this binary's emulator tests from running while
    /// one of them resets the server or changes its state transitions.
    pub async fn exclusive() -> MutexGuard<'static, ()> {
        EXCLUSIVE.lock().await
    }

    /// Deletes every resource in every emulated service.
    ///
    /// This is global to the server: hold [`Moto::exclusive`] while relying on it.
    ///
    /// # Panics
    /// If the server does not accept the reset.
    pub async fn reset(&self) {
        self.post_control("/moto-api/reset", None)
            .await
            .expect("reset the AWS emulator");
    }

    /// Keeps ECS tasks in the state they are in until a test stops them.
    ///
    /// By default moto moves a task one step along its lifecycle (RUNNING, DEACTIVATING, …,
    /// STOPPED) on every DescribeTasks, so a task would look as if it died on its own; code that
    /// watches tasks needs them to stay RUNNING until StopTask. The setting outlives
    /// [`Moto::reset`]; hold [`Moto::exclusive`] in a binary that also uses
    /// [`Moto::ecs_transition_after`].
    ///
    /// # Panics
    /// If the server refuses the setting.
    pub async fn ecs_manual_transitions(&self) {
        // Far more describes than any test makes, so no task ever advances by itself.
        self.ecs_transition_after(1_000_000_000).await;
    }

    /// Moves an ECS task one lifecycle step after every `describes` DescribeTasks calls that
    /// include it, for tests of code that notices tasks ending without being stopped.
    ///
    /// # Panics
    /// If the server refuses the setting.
    pub async fn ecs_transition_after(&self, describes: u64) {
        let body = serde_json::json!({
            "model_name": "ecs::task",
            "transition": { "progression": "manual", "times": describes },
        });
        self.post_control("/moto-api/state-manager/set-transition", Some(body))
            .await
            .expect("set the ECS task transition of the AWS emulator");
    }

    /// SDK configuration pointed at the emulator, with static test credentials and region
    /// `us-east-1`; nothing is read from the environment or profile files.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.url)
            .credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "cca-testkit",
            ))
            .load()
            .await
    }

    /// An ECS client on the emulator.
    pub async fn ecs(&self) -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::new(&self.sdk_config().await)
    }

    /// A DynamoDB client on the emulator.
    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config().await)
    }

    /// Creates a VPC with two subnets in two availability zones and a security group.
    ///
    /// DNS hostnames stay off, as in a VPC created with the defaults.
    pub async fn create_network(&self) -> anyhow::Result<Network> {
        let http = reqwest::Client::new();
        let vpc_id = self
            .ec2(
                &http,
                &[("Action", "CreateVpc"), ("CidrBlock", "10.0.0.0/16")],
                "vpcId",
            )
            .await?;
        let mut subnet_ids = Vec::new();
        for (cidr, zone) in [("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b")] {
            let params = [
                ("Action", "CreateSubnet"),
                ("VpcId", vpc_id.as_str()),
                ("CidrBlock", cidr),
                ("AvailabilityZone", zone),
            ];
            subnet_ids.push(self.ec2(&http, &params, "subnetId").await?);
        }
        let params = [
            ("Action", "CreateSecurityGroup"),
            ("VpcId", vpc_id.as_str()),
            ("GroupName", "cca-agent-tasks"),
            ("GroupDescription", "Agent tasks of the test stand"),
        ];
        let security_group_id = self.ec2(&http, &params, "groupId").await?;
        Ok(Network {
            vpc_id,
            subnet_ids,
            security_group_id,
        })
    }

    /// Creates an ECS cluster and returns its ARN.
    pub async fn create_cluster(
        &self,
        ecs: &aws_sdk_ecs::Client,
        name: &str,
    ) -> anyhow::Result<String> {
        let out = ecs
            .create_cluster()
            .cluster_name(name)
            .send()
            .await
            .with_context(|| format!("CreateCluster {name}"))?;
        out.cluster()
            .and_then(|c| c.cluster_arn())
            .map(str::to_owned)
            .with_context(|| format!("CreateCluster {name} returned no cluster ARN"))
    }

    /// Registers a Fargate task definition in awsvpc mode with one essential container named
    /// `container`, and returns its ARN.
    pub async fn register_task_definition(
        &self,
        ecs: &aws_sdk_ecs::Client,
        family: &str,
        container: &str,
    ) -> anyhow::Result<String> {
        let definition = ContainerDefinition::builder()
            .name(container)
            .image("cca-agent:latest")
            .essential(true)
            .cpu(256)
            .memory(512)
            .build();
        let out = ecs
            .register_task_definition()
            .family(family)
            .requires_compatibilities(Compatibility::Fargate)
            .network_mode(NetworkMode::Awsvpc)
            .cpu("256")
            .memory("512")
            .container_definitions(definition)
            .send()
            .await
            .with_context(|| format!("RegisterTaskDefinition {family}"))?;
        out.task_definition()
            .and_then(|t| t.task_definition_arn())
            .map(str::to_owned)
            .with_context(|| format!("RegisterTaskDefinition {family} returned no ARN"))
    }

    /// Every task ARN of `cluster`, across all pages.
    ///
    /// # Panics
    /// If ListTasks fails.
    pub async fn list_task_arns(&self, ecs: &aws_sdk_ecs::Client, cluster: &str) -> Vec<String> {
        let mut arns = Vec::new();
        let mut token = None;
        loop {
            let page = ecs
                .list_tasks()
                .cluster(cluster)
                .set_next_token(token)
                .send()
                .await
                .unwrap_or_else(|e| panic!("ListTasks on cluster {cluster}: {e:?}"));
            arns.extend(page.task_arns().iter().cloned());
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return arns;
            }
        }
    }

    async fn post_control(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.url);
        let mut request = reqwest::Client::new().post(&url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("POST {url} answered {status}: {text}");
        }
        Ok(())
    }

    /// Calls EC2's Query API and returns the text of the first `<field>` element of the answer.
    ///
    /// The EC2 SDK is a large dependency for three calls that only tests make, so these go as
    /// plain form posts.
    /// Creates an IAM role that Lambda may assume and returns its ARN (moto refuses a function
    /// whose role does not exist).
    pub async fn create_lambda_role(&self, name: &str) -> anyhow::Result<String> {
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        let params = [
            ("Action", "CreateRole"),
            ("RoleName", name),
            ("AssumeRolePolicyDocument", trust),
        ];
        self.query(&reqwest::Client::new(), "iam", "2010-05-08", &params, "Arn")
            .await
    }

    async fn ec2(
        &self,
        http: &reqwest::Client,
        params: &[(&str, &str)],
        field: &str,
    ) -> anyhow::Result<String> {
        self.query(http, "ec2", EC2_API_VERSION, params, field)
            .await
    }

    /// One call of a Query API (EC2, IAM), returning the text of `field` in the answer.
    async fn query(
        &self,
        http: &reqwest::Client,
        service: &str,
        version: &str,
        params: &[(&str, &str)],
        field: &str,
    ) -> anyhow::Result<String> {
        let action = params
            .iter()
            .find(|(k, _)| *k == "Action")
            .map_or("?", |(_, v)| *v);
        let mut form = params.to_vec();
        form.push(("Version", version));
        // moto ignores signatures, but on a bare host:port it picks the service from the
        // credential scope of the Authorization header; without one the call lands in S3.
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20240101/{REGION}/{service}/aws4_request, \
             SignedHeaders=host, Signature=0"
        );
        let response = http
            .post(format!("{}/", self.url))
            .header("Authorization", authorization)
            .form(&form)
            .send()
            .await
            .with_context(|| format!("{service} {action}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("{service} {action}: reading the answer"))?;
        if !status.is_success() {
            bail!("{service} {action} answered {status}: {text}");
        }
        xml_field(&text, field)
            .map(str::to_owned)
            .with_context(|| format!("{service} {action}: no <{field}> in the answer: {text}"))
    }
}

/// The text of the first `<field>…</field>` element of an XML document.
fn xml_field<'a>(xml: &'a str, field: &str) -> Option<&'a str> {
    let open = format!("<{field}>");
    let close = format!("</{field}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(xml[start..start + len].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_field_takes_the_first_element() {
        let xml = "<r><vpc><vpcId> vpc-1 </vpcId></vpc><vpcId>vpc-2</vpcId></r>";
        assert_eq!(xml_field(xml, "vpcId"), Some("vpc-1"));
        assert_eq!(xml_field(xml, "subnetId"), None);
    }

    #[test]
    fn unique_names_differ_and_are_dns_safe() {
        let a = unique_name("cca");
        let b = unique_name("cca");
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn new_drops_trailing_slash() {
        assert_eq!(Moto::new("http://127.0.0.1:1/").url, "http://127.0.0.1:1");
    }
}
