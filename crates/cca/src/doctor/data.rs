//! The data the system keeps: the sessions table and its index, and the secrets.
//!
//! The table's expected layout is the one `cca_store::DynamoStore::create_table` makes; the
//! doctor's tests build their table with it and expect no finding, so the two cannot drift
//! apart unnoticed.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    IndexStatus, KeyType, ProjectionType, ScalarAttributeType, TableDescription, TableStatus,
    TimeToLiveDescription, TimeToLiveStatus,
};
use cca_secrets::{ExposeSecret as _, SecretError};
use cca_store::StoreSpec;

use super::Settings;
use super::finding::Finding;

/// The table's key.
const TABLE_KEY: &[(&str, KeyType, ScalarAttributeType)] =
    &[("session_id", KeyType::Hash, ScalarAttributeType::S)];
/// The index of sessions by pull request, which the webhook queries.
const PR_INDEX: &str = "pr-index";
const PR_INDEX_KEY: &[(&str, KeyType, ScalarAttributeType)] = &[
    ("repo_full_name", KeyType::Hash, ScalarAttributeType::S),
    ("pr_number", KeyType::Range, ScalarAttributeType::N),
];
/// The attribute DynamoDB's TTL deletes ended sessions and old delivery ids by.
const TTL_ATTRIBUTE: &str = "ttl";

/// The sessions table, then the secrets.
pub async fn check(
    dynamodb: &aws_sdk_dynamodb::Client,
    secrets: &aws_sdk_secretsmanager::Client,
    settings: &Settings,
) -> Vec<Finding> {
    let (table, github, control, jira) = tokio::join!(
        sessions_table(dynamodb, settings),
        github_secret(secrets, settings),
        control_secret(secrets, settings),
        jira_secret(secrets, settings),
    );
    vec![table, github, control, jira]
}

async fn sessions_table(client: &aws_sdk_dynamodb::Client, settings: &Settings) -> Finding {
    const CHECK: &str = "sessions-table";
    let table = match &settings.store {
        Some(StoreSpec::Dynamo { table }) => table,
        Some(StoreSpec::Sqlite { path }) => {
            return Finding::skipped(
                CHECK,
                "SESSION_STORE",
                format!(
                    "names the SQLite file {}; the deployed system keeps sessions in DynamoDB",
                    path.display()
                ),
            );
        }
        None => return Finding::not_configured(CHECK, "SESSIONS_TABLE", "the sessions table"),
    };
    let description = match client.describe_table().table_name(table).send().await {
        Ok(out) => out.table().cloned(),
        Err(e) if e.code() == Some("ResourceNotFoundException") => None,
        Err(e) => {
            return Finding::problem(
                CHECK,
                table,
                format!(
                    "could not be checked: DescribeTable: {}",
                    DisplayErrorContext(&e)
                ),
                "check the AWS credentials, region and permissions doctor runs with",
            );
        }
    };
    let Some(description) = description else {
        return Finding::problem(
            CHECK,
            table,
            "the table does not exist",
            format!(
                "create it: key session_id (S), GSI {PR_INDEX} on repo_full_name (S) + \
                 pr_number (N) projecting all attributes, TTL on {TTL_ATTRIBUTE}; or set \
                 SESSIONS_TABLE to the table the system uses"
            ),
        );
    };
    let ttl = match client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
    {
        Ok(out) => out.time_to_live_description().cloned(),
        Err(e) => {
            return Finding::problem(
                CHECK,
                table,
                format!(
                    "could not be checked: DescribeTimeToLive: {}",
                    DisplayErrorContext(&e)
                ),
                "check the AWS credentials, region and permissions doctor runs with",
            );
        }
    };
    let resource = description.table_arn().unwrap_or(table).to_owned();
    let faults = judge_table(table, &description, ttl.as_ref());
    if faults.is_empty() {
        return Finding::ok(
            CHECK,
            resource,
            format!("key session_id, index {PR_INDEX}, TTL on {TTL_ATTRIBUTE}"),
        );
    }
    let (problems, fixes): (Vec<String>, Vec<String>) = faults.into_iter().unzip();
    Finding::problem(CHECK, resource, problems.join("; "), fixes.join("; "))
}

/// What is wrong with the table, each with its fix.
fn judge_table(
    table: &str,
    description: &TableDescription,
    ttl: Option<&TimeToLiveDescription>,
) -> Vec<(String, String)> {
    let mut faults = Vec::new();
    let attribute_type = |name: &str| {
        description
            .attribute_definitions()
            .iter()
            .find(|a| a.attribute_name() == name)
            .map(|a| a.attribute_type().clone())
    };
    let matches = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement],
                   expected: &[(&str, KeyType, ScalarAttributeType)]| {
        schema.len() == expected.len()
            && expected.iter().all(|(name, key_type, attr)| {
                schema
                    .iter()
                    .any(|k| k.attribute_name() == *name && k.key_type() == key_type)
                    && attribute_type(name).as_ref() == Some(attr)
            })
    };
    let describe = |expected: &[(&str, KeyType, ScalarAttributeType)]| {
        expected
            .iter()
            .map(|(name, key_type, attr)| {
                format!("{name} ({}, {})", key_type.as_str(), attr.as_str())
            })
            .collect::<Vec<_>>()
            .join(" + ")
    };
    if let Some(status) = description.table_status() {
        if !matches!(status, TableStatus::Active | TableStatus::Updating) {
            faults.push((
                format!("the table is {}", status.as_str()),
                "wait for it to become ACTIVE, or restore it".to_owned(),
            ));
        }
    }
    if !matches(description.key_schema(), TABLE_KEY) {
        faults.push((
            format!(
                "its key is not {} as the store expects",
                describe(TABLE_KEY)
            ),
            "a key cannot be changed: create the table anew with that key and move the items"
                .to_owned(),
        ));
    }
    let index = description
        .global_secondary_indexes()
        .iter()
        .find(|i| i.index_name() == Some(PR_INDEX));
    match index {
        None => faults.push((
            format!(
                "it has no global secondary index {PR_INDEX}, which the webhook queries to find \
                 the sessions of a pull request"
            ),
            format!(
                "aws dynamodb update-table --table-name {table} --attribute-definitions \
                 AttributeName=repo_full_name,AttributeType=S \
                 AttributeName=pr_number,AttributeType=N --global-secondary-index-updates \
                 '[{{\"Create\":{{\"IndexName\":\"{PR_INDEX}\",\"KeySchema\":[{{\"AttributeName\":\"repo_full_name\",\"KeyType\":\"HASH\"}},{{\"AttributeName\":\"pr_number\",\"KeyType\":\"RANGE\"}}],\"Projection\":{{\"ProjectionType\":\"ALL\"}}}}}}]'"
            ),
        )),
        Some(index) => {
            if !matches(index.key_schema(), PR_INDEX_KEY) {
                faults.push((
                    format!("index {PR_INDEX} is not keyed on {}", describe(PR_INDEX_KEY)),
                    "delete the index and create it again with that key".to_owned(),
                ));
            }
            let projection = index.projection().and_then(|p| p.projection_type());
            if projection != Some(&ProjectionType::All) {
                faults.push((
                    format!(
                        "index {PR_INDEX} projects {}, not every attribute, so sessions read \
                         through it are incomplete",
                        projection.map_or("nothing", |p| p.as_str())
                    ),
                    "delete the index and create it again projecting ALL".to_owned(),
                ));
            }
            if let Some(status) = index.index_status() {
                if !matches!(status, IndexStatus::Active | IndexStatus::Updating) {
                    faults.push((
                        format!("index {PR_INDEX} is {}", status.as_str()),
                        "wait for it to become ACTIVE".to_owned(),
                    ));
                }
            }
        }
    }
    let ttl_on = ttl.is_some_and(|t| {
        matches!(
            t.time_to_live_status(),
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        ) && t.attribute_name() == Some(TTL_ATTRIBUTE)
    });
    if !ttl_on {
        faults.push((
            format!(
                "TTL is not enabled on attribute {TTL_ATTRIBUTE}, so ended sessions and delivery \
                 ids are never deleted"
            ),
            format!(
                "aws dynamodb update-time-to-live --table-name {table} \
                 --time-to-live-specification Enabled=true,AttributeName={TTL_ATTRIBUTE}"
            ),
        ));
    }
    faults
}

async fn github_secret(client: &aws_sdk_secretsmanager::Client, settings: &Settings) -> Finding {
    const CHECK: &str = "github-app-secret";
    let Some(arn) = &settings.github_app_secret_arn else {
        return Finding::not_configured(CHECK, "GITHUB_APP_SECRET_ARN", "the GitHub App secret");
    };
    const SHAPE: &str = "JSON {app_id, private_key (PEM), webhook_secret, default_installation_id, client_id, client_secret}";
    let secret = match cca_secrets::fetch_github(client, arn).await {
        Ok(secret) => secret,
        Err(e) => return secret_problem(CHECK, arn, &e, SHAPE),
    };
    if let Err(e) = cca_github::AppCredentials::new(secret.app_id, &secret.private_key) {
        return Finding::problem(
            CHECK,
            arn,
            format!("field private_key: {e}"),
            "store the App's private key as GitHub issued it (PEM, PKCS#1 or PKCS#8)",
        );
    }
    let installation = secret.default_installation_id.map_or_else(
        || "no default installation".to_owned(),
        |i| format!("default installation {i}"),
    );
    let sign_in = match (&secret.client_id, secret.has_client_secret) {
        (Some(id), true) => format!("sign-in client {id}"),
        (None, false) => "no sign-in client (previews need PREVIEW_SIGN_IN=off)".to_owned(),
        _ => {
            return Finding::problem(
                CHECK,
                arn,
                "the secret holds only one of client_id and client_secret",
                "add both from the App's settings page (Client ID, a generated client secret): \
                 the proxy needs them for preview sign-in",
            );
        }
    };
    Finding::ok(
        CHECK,
        arn,
        format!(
            "App {}, {installation}, {} webhook secret(s), {sign_in}",
            secret.app_id,
            secret.webhook_secrets().len()
        ),
    )
}

async fn control_secret(client: &aws_sdk_secretsmanager::Client, settings: &Settings) -> Finding {
    const CHECK: &str = "control-secret";
    let Some(arn) = &settings.control_secret_arn else {
        return Finding::not_configured(CHECK, "CONTROL_SECRET_ARN", "the control key");
    };
    match cca_secrets::fetch_control(client, arn).await {
        Ok(key) => Finding::ok(
            CHECK,
            arn,
            format!("a key of {} characters", key.0.expose_secret().len()),
        ),
        Err(e) => secret_problem(
            CHECK,
            arn,
            &e,
            "a plain string of at least 32 characters, e.g. `openssl rand -hex 32`",
        ),
    }
}

async fn jira_secret(client: &aws_sdk_secretsmanager::Client, settings: &Settings) -> Finding {
    const CHECK: &str = "jira-secret";
    let Some(arn) = &settings.jira_secret_arn else {
        return Finding::skipped(CHECK, "JIRA_SECRET_ARN", "not set (JIRA is optional)");
    };
    match cca_secrets::fetch_jira(client, arn).await {
        Ok(secret) => Finding::ok(
            CHECK,
            arn,
            format!(
                "site {}, {} project(s) mapped",
                secret.base_url,
                secret.project_mapping.len()
            ),
        ),
        Err(e) => secret_problem(
            CHECK,
            arn,
            &e,
            "JSON {base_url, email, api_token, webhook_secret, project_mapping}",
        ),
    }
}

fn secret_problem(check: &'static str, arn: &str, error: &SecretError, shape: &str) -> Finding {
    match error {
        SecretError::Missing(_) => Finding::problem(
            check,
            arn,
            "the secret does not exist (or has no current value)",
            format!("create it in Secrets Manager holding {shape}, or point the variable at it"),
        ),
        SecretError::Malformed { reason, .. } => Finding::problem(
            check,
            arn,
            format!("the secret is malformed: {reason}"),
            format!("store {shape}"),
        ),
        SecretError::Backend(e) => Finding::problem(
            check,
            arn,
            format!("could not be read: {e}"),
            "check the AWS credentials, region and permissions (secretsmanager:GetSecretValue, \
             and kms:Decrypt for a customer key) doctor runs with",
        ),
    }
}
