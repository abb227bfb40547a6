//! The load balancer side: the listener's rules and the target groups, read into the planner's
//! terms, and the two deletions the sweeper makes.
//!
//! The system itself routes every preview through one `*.<domain>` rule to the proxy; what is
//! read here is what the original left behind (a host rule and a target group per preview).

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_elasticloadbalancingv2::types::{Rule, RuleCondition};

use crate::SweepError;
use crate::plan::{ListenerRule, ListenerState, TargetGroup};

/// Items per page asked of the describe calls (the API's most).
const PAGE_SIZE: i32 = 400;

/// The listener whose leftovers are swept (`ALB_LISTENER_ARN`) and the preview domain its
/// per-session host names end with (`UAT_DOMAIN_SUFFIX`).
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    client: Client,
    listener_arn: String,
    domain_suffix: String,
}

impl LoadBalancer {
    /// The listener `listener_arn`, reached with `client`.
    pub fn new(client: Client, listener_arn: impl Into<String>, domain_suffix: &str) -> Self {
        Self {
            client,
            listener_arn: listener_arn.into(),
            domain_suffix: domain_suffix.trim_start_matches('.').to_ascii_lowercase(),
        }
    }

    /// The listener's ARN.
    pub fn listener_arn(&self) -> &str {
        &self.listener_arn
    }

    /// Every rule of the listener and every target group of the region.
    pub async fn read(&self) -> Result<ListenerState, SweepError> {
        let mut rules = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .client
                .describe_rules()
                .listener_arn(&self.listener_arn)
                .page_size(PAGE_SIZE)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| elb_error(&format!("DescribeRules of {}", self.listener_arn), e))?;
            rules.extend(page.rules().iter().map(listener_rule));
            marker = page.next_marker().map(str::to_owned);
            if marker.is_none() {
                break;
            }
        }
        let mut target_groups = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .client
                .describe_target_groups()
                .page_size(PAGE_SIZE)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| elb_error("DescribeTargetGroups", e))?;
            target_groups.extend(page.target_groups().iter().filter_map(|tg| {
                Some(TargetGroup {
                    arn: tg.target_group_arn()?.to_owned(),
                    name: tg.target_group_name().unwrap_or_default().to_owned(),
                })
            }));
            marker = page.next_marker().map(str::to_owned);
            if marker.is_none() {
                break;
            }
        }
        Ok(ListenerState {
            listener_arn: self.listener_arn.clone(),
            domain_suffix: self.domain_suffix.clone(),
            rules,
            target_groups,
        })
    }

    /// Deletes a listener rule; one already gone counts as deleted.
    pub async fn delete_rule(&self, rule_arn: &str) -> Result<(), SweepError> {
        match self.client.delete_rule().rule_arn(rule_arn).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("RuleNotFound") => Ok(()),
            Err(e) => Err(elb_error(&format!("DeleteRule of {rule_arn}"), e)),
        }
    }

    /// Deletes a target group; one already gone counts as deleted. ELB refuses while a rule or a
    /// listener still forwards to it.
    pub async fn delete_target_group(&self, arn: &str) -> Result<(), SweepError> {
        match self
            .client
            .delete_target_group()
            .target_group_arn(arn)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("TargetGroupNotFound") => Ok(()),
            Err(e) => Err(elb_error(&format!("DeleteTargetGroup of {arn}"), e)),
        }
    }
}

fn listener_rule(rule: &Rule) -> ListenerRule {
    let (hosts, other_conditions) = hosts(rule.conditions());
    let mut target_groups: Vec<String> = Vec::new();
    for action in rule.actions() {
        let forwarded = action.target_group_arn().into_iter().chain(
            action
                .forward_config()
                .into_iter()
                .flat_map(|f| f.target_groups())
                .filter_map(|t| t.target_group_arn()),
        );
        for arn in forwarded {
            if !target_groups.iter().any(|t| t == arn) {
                target_groups.push(arn.to_owned());
            }
        }
    }
    ListenerRule {
        arn: rule.rule_arn().unwrap_or_default().to_owned(),
        priority: rule.priority().unwrap_or_default().to_owned(),
        is_default: rule.is_default().unwrap_or(false),
        hosts,
        other_conditions,
        target_groups,
    }
}

/// The host names a rule's conditions match, and whether it has any other condition (a path, a
/// header, a host pattern given as a regular expression…).
fn hosts(conditions: &[RuleCondition]) -> (Vec<String>, bool) {
    let mut hosts = Vec::new();
    let mut other = false;
    for c in conditions {
        if c.field() != Some("host-header") || !c.regex_values().is_empty() {
            other = true;
            continue;
        }
        match c.host_header_config() {
            Some(config) if !config.values().is_empty() || !config.regex_values().is_empty() => {
                other |= !config.regex_values().is_empty();
                hosts.extend(config.values().iter().cloned());
            }
            _ => hosts.extend(c.values().iter().cloned()),
        }
    }
    (hosts, other)
}

fn elb_error<E>(action: &str, err: SdkError<E>) -> SweepError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let said = match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => DisplayErrorContext(&err).to_string(),
    };
    SweepError::LoadBalancer(format!("{action}: {said}"))
}
