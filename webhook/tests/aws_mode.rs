//! The deployed configuration end to end: every dependency built by `App::from_config` from
//! the same variables a Lambda gets — the DynamoDB table, ECS, and the GitHub App, JIRA and
//! control secrets from Secrets Manager (all in moto) — then a signed label event through the
//! router leaves a session in DynamoDB and a task in ECS.

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use cca_domain::Status;
use cca_store::{DynamoStore, SessionStore};
use cca_testkit::github::{APP_ID, FakeGitHub, app_private_key_pem};
use cca_testkit::moto::{Moto, unique_name};
use cca_webhook::config::TaskArgs;
use cca_webhook::{App, Config, WebhookArgs, router};
use serde_json::json;
use support::*;

async fn put_secret(client: &aws_sdk_secretsmanager::Client, name: &str, value: String) -> String {
    let out = client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("create secret");
    out.arn().expect("arn").to_owned()
}

#[tokio::test]
async fn deployed_configuration_runs_on_dynamodb_ecs_and_secrets_manager() {
    within(async {
        let Some(moto) = Moto::from_env() else {
            cca_testkit::stand::skip("CCA_MOTO_URL is not set (run scripts/test.sh)");
            return;
        };
        moto.ecs_manual_transitions().await;
        let sdk = moto.sdk_config().await;
        let ecs = aws_sdk_ecs::Client::new(&sdk);
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let secrets = aws_sdk_secretsmanager::Client::new(&sdk);

        let table = unique_name("sessions");
        DynamoStore::create_table(&dynamo, &table)
            .await
            .expect("table");
        let cluster = unique_name("cluster");
        moto.create_cluster(&ecs, &cluster).await.expect("cluster");
        let network = moto.create_network().await.expect("network");
        let (agent, preview) = (unique_name("agent"), unique_name("preview"));
        for (family, container) in [(&agent, "agent"), (&preview, "preview")] {
            moto.register_task_definition(&ecs, family, container)
                .await
                .expect("task definition");
        }

        let github = FakeGitHub::start().await;
        github.add_installation(INSTALLATION);
        github.add_repo(REPO);
        github.set_permission(REPO, "alice", "admin");
        let n = github.add_issue(REPO, "Dark mode", "Add a dark theme.");

        let github_arn = put_secret(
            &secrets,
            &unique_name("github-app"),
            json!({
                "app_id": APP_ID.to_string(),
                "private_key": app_private_key_pem(),
                "webhook_secret": WEBHOOK_SECRET,
                "default_installation_id": INSTALLATION,
            })
            .to_string(),
        )
        .await;
        let jira_arn = put_secret(
            &secrets,
            &unique_name("jira"),
            json!({
                "base_url": "https://example.atlassian.net",
                "email": "bot@example.test",
                "api_token": "jira-api-token-for-tests",
                "webhook_secret": JIRA_SECRET,
                "project_mapping": json!({"AG": REPO}).to_string(),
            })
            .to_string(),
        )
        .await;
        let control_arn =
            put_secret(&secrets, &unique_name("control"), CONTROL_KEY.repeat(2)).await;

        let mut args = WebhookArgs {
            tasks: TaskArgs {
                ecs_cluster: Some(cluster.clone()),
                agent_task_definition: Some(agent.clone()),
                uat_task_definition: Some(preview.clone()),
                agent_security_groups: Some(network.security_group_id.clone()),
                ..TaskArgs::default()
            },
            agent_subnets: Some(network.subnet_ids.join(",")),
            uat_domain_suffix: Some(DOMAIN.into()),
            ..WebhookArgs::default()
        };
        args.store.sessions_table = Some(table.clone());
        args.github.api.github_api_url = Some(github.url().to_owned());
        args.github.github_app_secret_arn = Some(github_arn);
        args.jira.jira_secret_arn = Some(jira_arn);
        args.control.control_secret_arn = Some(control_arn);
        let config = Config::from_args(args).expect("config");
        let app = Arc::new(App::from_config(config).await.expect("app"));
        assert!(
            app.jira
                .as_ref()
                .is_some_and(|j| j.project_mapping.contains_key("AG"))
        );
        let router = router(app);

        let body = serde_json::to_vec(&issue_labeled(
            n,
            "Dark mode",
            "Add a dark theme.",
            "claude-dev",
            "alice",
        ))
        .unwrap();
        let headers = [
            ("x-github-event", "issues".to_owned()),
            ("x-github-delivery", delivery()),
            (
                "x-hub-signature-256",
                cca_testkit::fixtures::sign_github(WEBHOOK_SECRET, &body),
            ),
        ];
        let (status, reply) = send_to(&router, "/webhook", &headers, body).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["message"], "Session started");

        let store = DynamoStore::new(dynamo, table);
        let sessions = store.list(&cca_store::ListFilter::default()).await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].status, Status::Provisioning);
        let tasks = moto.list_task_arns(&ecs, &cluster).await;
        assert_eq!(tasks.len(), 1);
        assert_eq!(sessions[0].task_arn.as_deref(), Some(tasks[0].as_str()));
        let pr = sessions[0].pr_number.expect("pr");
        assert_eq!(
            store
                .by_pr(&cca_domain::RepoName::parse(REPO).unwrap(), pr)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(github.pulls(REPO).len(), 1);
    })
    .await;
}
