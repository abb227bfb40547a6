//! The webhook Lambda: the function, the `live` alias GitHub and the schedule reach, its public
//! function URL, the two permissions such a URL needs, and the sweep schedule's target.
//!
//! Since October 2025 a function URL with auth type `NONE` answers 403 unless the resource
//! policy allows both `lambda:InvokeFunctionUrl` (limited to `lambda:FunctionUrlAuthType`
//! `NONE`) and `lambda:InvokeFunction` limited to calls through a function URL
//! (`lambda:InvokedViaFunctionUrl`). An `InvokeFunction` for everyone without that condition
//! would let any AWS account invoke the function directly, so it is reported too.

use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_lambda::types::{FunctionConfiguration, FunctionUrlAuthType, State};
use serde_json::Value;

use super::Settings;
use super::finding::Finding;

/// The alias the function URL and the schedule invoke (`infra/lambda.tf`, moved by deploy.sh).
pub const LIVE_ALIAS: &str = "live";

/// The AWS clients this part needs.
#[derive(Debug, Clone)]
pub struct Clients {
    pub lambda: aws_sdk_lambda::Client,
    pub events: aws_sdk_eventbridge::Client,
}

/// What the Lambda checks found, with the function's configuration for the network checks.
pub struct Report {
    pub findings: Vec<Finding>,
    pub function: Option<FunctionConfiguration>,
}

fn error_text<E: std::error::Error>(err: &E) -> String {
    DisplayErrorContext(err).to_string()
}

const NOT_CHECKED: &str = "check the AWS credentials, region and permissions doctor runs with";

/// `webhook-function`, `webhook-alias`, `webhook-url`, `webhook-url-permissions`,
/// `sweep-schedule`.
pub async fn check(clients: &Clients, settings: &Settings) -> Report {
    const CHECKS: [&str; 5] = [
        "webhook-function",
        "webhook-alias",
        "webhook-url",
        "webhook-url-permissions",
        "sweep-schedule",
    ];
    let Some(name) = &settings.webhook_function else {
        let mut findings = vec![Finding::not_configured(
            CHECKS[0],
            "WEBHOOK_FUNCTION_NAME",
            "the webhook Lambda",
        )];
        findings.extend(CHECKS[1..].iter().map(|check| {
            Finding::skipped(
                check,
                "WEBHOOK_FUNCTION_NAME",
                "no webhook function to check",
            )
        }));
        return Report {
            findings,
            function: None,
        };
    };

    // The version the alias serves: a published version keeps the subnets and state it was
    // published with, whatever `$LATEST` has since. (A missing alias is reported below.)
    let live = clients
        .lambda
        .get_function()
        .function_name(name)
        .qualifier(LIVE_ALIAS)
        .send()
        .await;
    let live = match live {
        Err(e) if e.code() == Some("ResourceNotFoundException") => {
            clients
                .lambda
                .get_function()
                .function_name(name)
                .send()
                .await
        }
        other => other,
    };
    let function = match live {
        Ok(out) => out.configuration().cloned(),
        Err(e) if e.code() == Some("ResourceNotFoundException") => None,
        Err(e) => {
            let mut findings = vec![Finding::problem(
                CHECKS[0],
                name,
                format!("could not be checked: GetFunction: {}", error_text(&e)),
                NOT_CHECKED,
            )];
            findings.extend(
                CHECKS[1..]
                    .iter()
                    .map(|check| Finding::skipped(check, name, "the function could not be read")),
            );
            return Report {
                findings,
                function: None,
            };
        }
    };
    let Some(function) = function else {
        let mut findings = vec![Finding::problem(
            CHECKS[0],
            name,
            "the function does not exist",
            "run `terraform apply` in infra/ (it makes the function, its alias, URL and \
             permissions), or set WEBHOOK_FUNCTION_NAME to the deployed one",
        )];
        findings.extend(
            CHECKS[1..]
                .iter()
                .map(|check| Finding::skipped(check, name, "the function does not exist")),
        );
        return Report {
            findings,
            function: None,
        };
    };
    let function_finding = judge_function(name, &function);
    // arn:aws:lambda:<region>:<account>:function:<name>, without the qualifier (`:live`, or
    // the version the alias points at) the answer may carry.
    let arn = function.function_arn().unwrap_or(name);
    let unqualified = if arn.starts_with("arn:") {
        arn.split(':').take(7).collect::<Vec<_>>().join(":")
    } else {
        arn.to_owned()
    };
    let alias_arn = format!("{unqualified}:{LIVE_ALIAS}");

    let (alias, url, permissions, schedule) = tokio::join!(
        alias(clients, name, &alias_arn),
        url(clients, name, &alias_arn),
        permissions(clients, name, &alias_arn),
        schedule(clients, name, &alias_arn),
    );
    Report {
        findings: vec![function_finding, alias, url, permissions, schedule],
        function: Some(function),
    }
}

fn judge_function(name: &str, function: &FunctionConfiguration) -> Finding {
    const CHECK: &str = "webhook-function";
    let resource = function.function_arn().unwrap_or(name).to_owned();
    match function.state() {
        Some(State::Failed) | Some(State::Inactive) => {
            return Finding::problem(
                CHECK,
                resource,
                format!(
                    "the function is {}: {}",
                    function.state().map_or("?", |s| s.as_str()),
                    function.state_reason().unwrap_or("no reason given")
                ),
                "fix the cause named, then `deploy.sh lambda` (or `terraform apply`)",
            );
        }
        _ => {}
    }
    let subnets = function.vpc_config().map_or(0, |v| v.subnet_ids().len());
    if subnets == 0 {
        return Finding::problem(
            CHECK,
            resource,
            "the function is not in the VPC, so it cannot reach the agents' control API at \
             their private addresses",
            "set lambda_subnet_ids in infra/ and `terraform apply`",
        );
    }
    Finding::ok(
        CHECK,
        resource,
        format!(
            "{}, in {subnets} subnet(s)",
            function.state().map_or("state unknown", |s| s.as_str())
        ),
    )
}

async fn alias(clients: &Clients, name: &str, alias_arn: &str) -> Finding {
    const CHECK: &str = "webhook-alias";
    match clients
        .lambda
        .get_alias()
        .function_name(name)
        .name(LIVE_ALIAS)
        .send()
        .await
    {
        Ok(out) => match out.function_version() {
            Some(version) if version != "$LATEST" => {
                Finding::ok(CHECK, alias_arn, format!("serves version {version}"))
            }
            other => Finding::problem(
                CHECK,
                alias_arn,
                format!(
                    "the alias serves {} instead of a published version",
                    other.unwrap_or("no version")
                ),
                "`deploy.sh lambda` publishes a version and moves the alias to it",
            ),
        },
        Err(e) if e.code() == Some("ResourceNotFoundException") => Finding::problem(
            CHECK,
            alias_arn,
            format!(
                "the function has no alias `{LIVE_ALIAS}`, which its URL and the schedule invoke"
            ),
            "`terraform apply` in infra/ makes it",
        ),
        Err(e) => Finding::problem(
            CHECK,
            alias_arn,
            format!("could not be checked: GetAlias: {}", error_text(&e)),
            NOT_CHECKED,
        ),
    }
}

async fn url(clients: &Clients, name: &str, alias_arn: &str) -> Finding {
    const CHECK: &str = "webhook-url";
    match clients
        .lambda
        .get_function_url_config()
        .function_name(name)
        .qualifier(LIVE_ALIAS)
        .send()
        .await
    {
        Ok(out) if *out.auth_type() == FunctionUrlAuthType::None => Finding::ok(
            CHECK,
            alias_arn,
            format!("{} (auth NONE)", out.function_url()),
        ),
        Ok(out) => Finding::problem(
            CHECK,
            alias_arn,
            format!(
                "the function URL's auth type is {}: GitHub and JIRA cannot sign their \
                 deliveries for IAM, so every delivery is refused",
                out.auth_type().as_str()
            ),
            "`terraform apply` in infra/ sets it back to NONE (each delivery's HMAC signature \
             is checked by the webhook)",
        ),
        Err(e) if e.code() == Some("ResourceNotFoundException") => Finding::problem(
            CHECK,
            alias_arn,
            format!("the alias `{LIVE_ALIAS}` has no function URL, so GitHub cannot deliver"),
            "`terraform apply` in infra/ makes it; point the GitHub App's webhook at the \
             `webhook_url` output",
        ),
        Err(e) => Finding::problem(
            CHECK,
            alias_arn,
            format!(
                "could not be checked: GetFunctionUrlConfig: {}",
                error_text(&e)
            ),
            NOT_CHECKED,
        ),
    }
}

/// The alias's resource policy, as statements; an empty list when it has none.
async fn policy(clients: &Clients, name: &str) -> Result<Vec<Value>, String> {
    match clients
        .lambda
        .get_policy()
        .function_name(name)
        .qualifier(LIVE_ALIAS)
        .send()
        .await
    {
        Ok(out) => {
            let text = out.policy().unwrap_or("{}");
            let policy: Value = serde_json::from_str(text)
                .map_err(|e| format!("the resource policy is not JSON: {e}"))?;
            Ok(match &policy["Statement"] {
                Value::Array(statements) => statements.clone(),
                Value::Null => Vec::new(),
                one => vec![one.clone()],
            })
        }
        Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(Vec::new()),
        Err(e) => Err(format!("GetPolicy: {}", error_text(&e))),
    }
}

/// A policy statement, read for what it allows.
struct Statement<'a>(&'a Value);

impl Statement<'_> {
    fn allows(&self) -> bool {
        self.0["Effect"].as_str() == Some("Allow")
    }

    fn has_action(&self, action: &str) -> bool {
        strings(&self.0["Action"]).any(|a| a.eq_ignore_ascii_case(action) || a == "lambda:*")
    }

    /// For a resource of the alias (or no resource named, as a policy of the alias is).
    fn on(&self, alias_arn: &str) -> bool {
        let mut resources = strings(&self.0["Resource"]).peekable();
        resources.peek().is_none() || resources.any(|r| r == alias_arn)
    }

    fn public(&self) -> bool {
        match &self.0["Principal"] {
            Value::String(p) => p == "*",
            Value::Object(map) => map.get("AWS").is_some_and(|p| strings(p).any(|p| p == "*")),
            _ => false,
        }
    }

    fn service(&self, service: &str) -> bool {
        strings(&self.0["Principal"]["Service"]).any(|s| s == service)
    }

    /// The value a condition operator sets for a key, in any case of the key's name.
    fn condition(&self, operator: &str, key: &str) -> Option<String> {
        let Value::Object(ops) = &self.0["Condition"] else {
            return None;
        };
        ops.iter()
            .filter(|(op, _)| op.eq_ignore_ascii_case(operator))
            .filter_map(|(_, keys)| keys.as_object())
            .flat_map(|keys| keys.iter())
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| match v {
                Value::String(s) => Some(s.clone()),
                Value::Bool(b) => Some(b.to_string()),
                Value::Array(items) if items.len() == 1 => items[0]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| items[0].as_bool().map(|b| b.to_string())),
                _ => None,
            })
    }

    fn has_condition(&self) -> bool {
        self.0["Condition"]
            .as_object()
            .is_some_and(|c| !c.is_empty())
    }
}

fn strings(value: &Value) -> impl Iterator<Item = &str> {
    let items: Vec<&str> = match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    items.into_iter()
}

/// What the alias's policy lacks (or allows too widely) for a public function URL.
pub fn judge_url_permissions(
    statements: &[Value],
    function: &str,
    alias_arn: &str,
) -> Vec<(String, String)> {
    let statements: Vec<Statement<'_>> = statements
        .iter()
        .map(Statement)
        .filter(|s| s.allows() && s.on(alias_arn) && s.public())
        .collect();
    let mut faults = Vec::new();
    let url = statements.iter().any(|s| {
        s.has_action("lambda:InvokeFunctionUrl")
            && s.condition("StringEquals", "lambda:FunctionUrlAuthType")
                .is_some_and(|v| v == "NONE")
    });
    if !url {
        faults.push((
            "no statement allows everyone lambda:InvokeFunctionUrl with \
             lambda:FunctionUrlAuthType NONE"
                .to_owned(),
            "`terraform apply` in infra/ (aws_lambda_permission.webhook_url)".to_owned(),
        ));
    }
    let via_url = |s: &Statement<'_>| {
        s.condition("Bool", "lambda:InvokedViaFunctionUrl")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    };
    let invoke = statements
        .iter()
        .any(|s| s.has_action("lambda:InvokeFunction") && via_url(s));
    if !invoke {
        faults.push((
            "no statement allows lambda:InvokeFunction through the function URL \
             (lambda:InvokedViaFunctionUrl), which Lambda requires since October 2025: \
             every delivery is answered 403"
                .to_owned(),
            format!(
                "`terraform apply` in infra/ (terraform_data.webhook_url_invoke), or `aws lambda \
                 add-permission --function-name {function} --qualifier {LIVE_ALIAS} \
                 --statement-id PublicFunctionUrlInvoke --action lambda:InvokeFunction \
                 --principal '*' --invoked-via-function-url`"
            ),
        ));
    }
    if let Some(open) = statements
        .iter()
        .find(|s| s.has_action("lambda:InvokeFunction") && !s.has_condition())
    {
        let sid = open.0["Sid"].as_str().unwrap_or("<Sid>");
        faults.push((
            format!(
                "statement {sid} lets anyone invoke the function directly, not only through its URL"
            ),
            format!(
                "remove it: `aws lambda remove-permission --function-name {function} \
                 --qualifier {LIVE_ALIAS} --statement-id {sid}`"
            ),
        ));
    }
    faults
}

async fn permissions(clients: &Clients, name: &str, alias_arn: &str) -> Finding {
    const CHECK: &str = "webhook-url-permissions";
    let statements = match policy(clients, name).await {
        Ok(statements) => statements,
        Err(e) => {
            return Finding::problem(
                CHECK,
                alias_arn,
                format!("could not be checked: {e}"),
                NOT_CHECKED,
            );
        }
    };
    let faults = judge_url_permissions(&statements, name, alias_arn);
    if faults.is_empty() {
        return Finding::ok(
            CHECK,
            alias_arn,
            "InvokeFunctionUrl (auth NONE) and InvokeFunction through the URL only",
        );
    }
    let (problems, fixes): (Vec<String>, Vec<String>) = faults.into_iter().unzip();
    Finding::problem(CHECK, alias_arn, problems.join("; "), fixes.join("; "))
}

async fn schedule(clients: &Clients, name: &str, alias_arn: &str) -> Finding {
    const CHECK: &str = "sweep-schedule";
    const FIX: &str =
        "`terraform apply` in infra/ (aws_cloudwatch_event_rule.sweep and its target)";
    let rules = match clients
        .events
        .list_rule_names_by_target()
        .target_arn(alias_arn)
        .send()
        .await
    {
        Ok(out) => out.rule_names().to_vec(),
        Err(e) => {
            return Finding::problem(
                CHECK,
                alias_arn,
                format!(
                    "could not be checked: ListRuleNamesByTarget: {}",
                    aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                ),
                NOT_CHECKED,
            );
        }
    };
    let mut scheduled = Vec::new();
    for rule in &rules {
        match clients.events.describe_rule().name(rule).send().await {
            Ok(out) => {
                let enabled = out
                    .state()
                    .is_some_and(|s| *s == aws_sdk_eventbridge::types::RuleState::Enabled);
                if let (true, Some(expression), Some(arn)) =
                    (enabled, out.schedule_expression(), out.arn())
                {
                    scheduled.push((rule.clone(), arn.to_owned(), expression.to_owned()));
                }
            }
            Err(e) => {
                return Finding::problem(
                    CHECK,
                    rule,
                    format!(
                        "could not be checked: DescribeRule: {}",
                        aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                    ),
                    NOT_CHECKED,
                );
            }
        }
    }
    if scheduled.is_empty() {
        let problem = if rules.is_empty() {
            format!("no EventBridge rule targets the alias `{LIVE_ALIAS}`, so no sweep runs")
        } else {
            format!(
                "the rules targeting the alias ({}) are disabled or have no schedule, so no \
                 sweep runs",
                rules.join(", ")
            )
        };
        return Finding::problem(CHECK, alias_arn, problem, FIX);
    }
    let statements = match policy(clients, name).await {
        Ok(statements) => statements,
        Err(e) => {
            return Finding::problem(
                CHECK,
                alias_arn,
                format!("could not be checked: {e}"),
                NOT_CHECKED,
            );
        }
    };
    let allowed = |rule_arn: &str| {
        statements.iter().map(Statement).any(|s| {
            s.allows()
                && s.on(alias_arn)
                && s.service("events.amazonaws.com")
                && s.has_action("lambda:InvokeFunction")
                && s.condition("ArnLike", "AWS:SourceArn")
                    .is_none_or(|arn| arn == rule_arn)
        })
    };
    match scheduled.iter().find(|(_, arn, _)| allowed(arn)) {
        Some((rule, _, expression)) => {
            Finding::ok(CHECK, alias_arn, format!("rule {rule}, {expression}"))
        }
        None => Finding::problem(
            CHECK,
            alias_arn,
            format!(
                "rule {} targets the alias, but the alias's policy does not let EventBridge \
                 invoke it, so every sweep fails",
                scheduled[0].0
            ),
            "`terraform apply` in infra/ (aws_lambda_permission.sweep)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALIAS: &str = "arn:aws:lambda:us-east-1:123456789012:function:cca-webhook:live";

    fn url_statement() -> Value {
        json!({
            "Sid": "PublicFunctionUrl", "Effect": "Allow", "Principal": "*",
            "Action": "lambda:InvokeFunctionUrl", "Resource": ALIAS,
            "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}
        })
    }

    fn invoke_statement() -> Value {
        json!({
            "Sid": "PublicFunctionUrlInvoke", "Effect": "Allow", "Principal": "*",
            "Action": "lambda:InvokeFunction", "Resource": ALIAS,
            "Condition": {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}
        })
    }

    #[test]
    fn both_permissions_are_needed_and_enough() {
        assert!(
            judge_url_permissions(&[url_statement(), invoke_statement()], "f", ALIAS).is_empty()
        );
        let faults = judge_url_permissions(&[url_statement()], "f", ALIAS);
        assert_eq!(faults.len(), 1);
        assert!(faults[0].0.contains("InvokedViaFunctionUrl"), "{faults:?}");
        let faults = judge_url_permissions(&[invoke_statement()], "f", ALIAS);
        assert_eq!(faults.len(), 1);
        assert!(faults[0].0.contains("InvokeFunctionUrl"), "{faults:?}");
    }

    #[test]
    fn an_unconditioned_public_invoke_is_a_problem() {
        let open = json!({
            "Sid": "Everyone", "Effect": "Allow", "Principal": {"AWS": "*"},
            "Action": ["lambda:InvokeFunction"], "Resource": ALIAS
        });
        let faults = judge_url_permissions(&[url_statement(), open], "f", ALIAS);
        assert!(
            faults.iter().any(|f| f.0.contains("Everyone")),
            "{faults:?}"
        );
        // It does not count as the permission through the URL either.
        assert!(faults.iter().any(|f| f.0.contains("InvokedViaFunctionUrl")));
    }

    #[test]
    fn statements_of_another_alias_or_principal_do_not_count() {
        let mut other = invoke_statement();
        other["Resource"] = json!(ALIAS.replace(":live", ":old"));
        let mut service = invoke_statement();
        service["Principal"] = json!({"Service": "events.amazonaws.com"});
        let faults = judge_url_permissions(&[url_statement(), other, service], "f", ALIAS);
        assert_eq!(faults.len(), 1, "{faults:?}");
    }
}
