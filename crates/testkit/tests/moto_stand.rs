//! Proves the AWS emulator of the test stand works with the real Rust SDK, in the calls the
//! product makes: an ECS Fargate task in an awsvpc network driven through its whole life, and a
//! DynamoDB table with a secondary index and conditional writes.
//!
//! Each test returns early, saying so, when `CCA_MOTO_URL` is unset; `scripts/test.sh` always
//! sets it.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType,
};
use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, ContainerOverride, KeyValuePair, LaunchType, NetworkMode,
    Tag, TaskOverride,
};
use cca_testkit::moto::{Moto, unique_name};

fn moto_or_skip(test: &str) -> Option<Moto> {
    let moto = Moto::from_env();
    if moto.is_none() {
        cca_testkit::stand::skip(format_args!(
            "{test}: CCA_MOTO_URL is not set (run scripts/test.sh)"
        ));
    }
    moto
}

#[tokio::test]
async fn fargate_task_runs_is_described_listed_and_stopped() {
    let Some(moto) = moto_or_skip("fargate_task_runs_is_described_listed_and_stopped") else {
        return;
    };
    let _exclusive = Moto::exclusive().await;
    moto.reset().await;
    moto.ecs_manual_transitions().await;

    let ecs = moto.ecs().await;
    let network = moto.create_network().await.expect("create network");
    assert_eq!(network.subnet_ids.len(), 2);
    assert!(network.vpc_id.starts_with("vpc-"), "{network:?}");
    assert!(network.security_group_id.starts_with("sg-"), "{network:?}");

    let cluster = unique_name("cca-agents");
    let cluster_arn = moto
        .create_cluster(&ecs, &cluster)
        .await
        .expect("create cluster");
    assert!(cluster_arn.ends_with(&cluster), "{cluster_arn}");
    let task_definition = moto
        .register_task_definition(&ecs, "cca-agent", "agent")
        .await
        .expect("register task definition");

    let overrides = TaskOverride::builder()
        .container_overrides(
            ContainerOverride::builder()
                .name("agent")
                .environment(
                    KeyValuePair::builder()
                        .name("CCA_SESSION_ID")
                        .value("s-1")
                        .build(),
                )
                .environment(
                    KeyValuePair::builder()
                        .name("SESSIONS_TABLE")
                        .value("sessions")
                        .build(),
                )
                .build(),
        )
        .build();
    let run = ecs
        .run_task()
        .cluster(&cluster)
        .task_definition(&task_definition)
        .launch_type(LaunchType::Fargate)
        .network_configuration(network.awsvpc_configuration())
        .overrides(overrides)
        .started_by("cca/s-1")
        .tags(Tag::builder().key("cca:session").value("s-1").build())
        .send()
        .await
        .expect("RunTask");
    assert!(run.failures().is_empty(), "{:?}", run.failures());
    let [task] = run.tasks() else {
        panic!("expected one task, got {:?}", run.tasks());
    };
    let task_arn = task.task_arn().expect("task ARN").to_owned();
    assert_eq!(task.containers()[0].memory(), Some("512"));

    // Twice, because moto advances a task's status on each describe unless told not to.
    for _ in 0..2 {
        let described = ecs
            .describe_tasks()
            .cluster(&cluster)
            .tasks(&task_arn)
            .send()
            .await
            .expect("DescribeTasks");
        let [task] = described.tasks() else {
            panic!("expected one task, got {:?}", described.tasks());
        };
        assert_eq!(task.last_status(), Some("RUNNING"));
        assert_eq!(task.started_by(), Some("cca/s-1"));
        let container = &task.containers()[0];
        assert_eq!(container.name(), Some("agent"));
        assert_eq!(container.cpu(), Some("256"));
        assert_eq!(container.memory(), Some("512"));
        let environment = task
            .overrides()
            .and_then(|o| o.container_overrides().first())
            .map(|c| c.environment().to_vec())
            .unwrap_or_default();
        assert!(
            environment
                .iter()
                .any(|kv| kv.name() == Some("CCA_SESSION_ID") && kv.value() == Some("s-1")),
            "{environment:?}"
        );
        let address = task
            .attachments()
            .iter()
            .flat_map(|a| a.details())
            .find(|d| d.name() == Some("privateIPv4Address"))
            .and_then(|d| d.value());
        assert!(
            address.is_some_and(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()),
            "{:?}",
            task.attachments()
        );
    }

    assert_eq!(
        moto.list_task_arns(&ecs, &cluster).await,
        vec![task_arn.clone()]
    );

    let stopped = ecs
        .stop_task()
        .cluster(&cluster)
        .task(&task_arn)
        .reason("session ended")
        .send()
        .await
        .expect("StopTask");
    let task = stopped.task().expect("stopped task");
    assert_eq!(task.last_status(), Some("STOPPED"));
    assert_eq!(task.desired_status(), Some("STOPPED"));
    assert_eq!(task.stopped_reason(), Some("session ended"));
}

#[tokio::test]
async fn fargate_task_runs_when_only_the_task_sizes_memory() {
    let Some(moto) = moto_or_skip("fargate_task_runs_when_only_the_task_sizes_memory") else {
        return;
    };
    // The ECS test resets the whole emulator, which would delete this cluster mid-test.
    let _exclusive = Moto::exclusive().await;
    let ecs = moto.ecs().await;
    let network = moto.create_network().await.expect("create network");
    let cluster = unique_name("cca-preview");
    moto.create_cluster(&ecs, &cluster)
        .await
        .expect("create cluster");
    let registered = ecs
        .register_task_definition()
        .family(unique_name("cca-preview"))
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu("512")
        .memory("1024")
        .container_definitions(
            ContainerDefinition::builder()
                .name("preview")
                .image("cca-agent:latest")
                .build(),
        )
        .send()
        .await
        .expect("RegisterTaskDefinition");
    let arn = registered
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .expect("task definition ARN");

    let run = ecs
        .run_task()
        .cluster(&cluster)
        .task_definition(arn)
        .launch_type(LaunchType::Fargate)
        .network_configuration(network.awsvpc_configuration())
        .send()
        .await
        .expect("RunTask without container memory");
    assert_eq!(run.tasks().len(), 1, "{:?}", run.failures());
    assert_eq!(run.tasks()[0].containers()[0].memory(), None);
}

#[tokio::test]
async fn dynamodb_table_with_index_refuses_a_second_conditional_put() {
    let Some(moto) = moto_or_skip("dynamodb_table_with_index_refuses_a_second_conditional_put")
    else {
        return;
    };
    // The ECS test resets the whole emulator, which would delete this table mid-test.
    let _exclusive = Moto::exclusive().await;
    let dynamodb = moto.dynamodb().await;
    let table = unique_name("sessions");

    let key = |name: &str, key_type| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .expect("key schema")
    };
    let attribute = |name: &str, kind| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .expect("attribute definition")
    };
    dynamodb
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("session_id", ScalarAttributeType::S))
        .attribute_definitions(attribute("repo_full_name", ScalarAttributeType::S))
        .attribute_definitions(attribute("pr_number", ScalarAttributeType::N))
        .key_schema(key("session_id", KeyType::Hash))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("pr-index")
                .key_schema(key("repo_full_name", KeyType::Hash))
                .key_schema(key("pr_number", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .expect("index"),
        )
        .send()
        .await
        .expect("CreateTable");

    let put = || {
        dynamodb
            .put_item()
            .table_name(&table)
            .item("session_id", AttributeValue::S("s-1".into()))
            .item("repo_full_name", AttributeValue::S("acme/app".into()))
            .item("pr_number", AttributeValue::N("7".into()))
            .item("status", AttributeValue::S("PROVISIONING".into()))
            .condition_expression("attribute_not_exists(session_id)")
            .send()
    };
    put().await.expect("first conditional put");
    let refused = put()
        .await
        .expect_err("second conditional put must be refused");
    assert!(
        refused
            .into_service_error()
            .is_conditional_check_failed_exception(),
        "expected ConditionalCheckFailedException"
    );

    let by_pr = dynamodb
        .query()
        .table_name(&table)
        .index_name("pr-index")
        .key_condition_expression("repo_full_name = :repo AND pr_number = :pr")
        .expression_attribute_values(":repo", AttributeValue::S("acme/app".into()))
        .expression_attribute_values(":pr", AttributeValue::N("7".into()))
        .send()
        .await
        .expect("Query pr-index");
    assert_eq!(by_pr.items().len(), 1);
    assert_eq!(
        by_pr.items()[0].get("session_id"),
        Some(&AttributeValue::S("s-1".into()))
    );
}
