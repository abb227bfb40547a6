//! The path of a preview request: the listener's wildcard rule, the proxy's target group and
//! its targets' health, and the proxy security group's ingress from the load balancer.

use aws_sdk_ec2::types::{IpPermission, UserIdGroupPair};
use aws_sdk_elasticloadbalancingv2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, HostHeaderConditionConfig, Listener, Rule, RuleCondition,
    RulePriorityPair, TargetGroup, TargetHealthDescription,
};

use super::Settings;
use super::finding::{Finding, Repair};
use super::rules::{self, RulePlan, RuleView};

/// The AWS clients this part needs.
#[derive(Debug, Clone)]
pub struct Clients {
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub ec2: aws_sdk_ec2::Client,
}

/// Something looked up: found, absent, or the look-up failed.
enum Lookup<T> {
    Found(T),
    Missing,
    Failed(String),
}

fn error_text<E>(err: &E) -> String
where
    E: std::error::Error,
{
    DisplayErrorContext(err).to_string()
}

/// The three findings: `listener-rule`, `proxy-targets`, `proxy-ingress`.
pub async fn check(clients: &Clients, settings: &Settings) -> Vec<Finding> {
    let listener = match &settings.alb_listener_arn {
        Some(arn) => Some(describe_listener(clients, arn).await),
        None => None,
    };
    let target_group = match &settings.proxy_target_group {
        Some(tg) => Some(describe_target_group(clients, tg).await),
        None => None,
    };
    let health = match &target_group {
        Some(Lookup::Found(tg)) => Some(target_health(clients, tg).await),
        _ => None,
    };
    vec![
        listener_rule(clients, settings, listener.as_ref(), target_group.as_ref()).await,
        cookie_scope(clients, settings, listener.as_ref()).await,
        proxy_targets(settings, target_group.as_ref(), health.as_ref()),
        proxy_ingress(
            clients,
            settings,
            listener.as_ref(),
            target_group.as_ref(),
            health.as_ref(),
        )
        .await,
    ]
}

async fn describe_listener(clients: &Clients, arn: &str) -> Lookup<Listener> {
    match clients
        .elb
        .describe_listeners()
        .listener_arns(arn)
        .send()
        .await
    {
        Ok(out) => out
            .listeners()
            .first()
            .cloned()
            .map_or(Lookup::Missing, Lookup::Found),
        Err(e) if e.code() == Some("ListenerNotFound") => Lookup::Missing,
        Err(e) => Lookup::Failed(format!("DescribeListeners: {}", error_text(&e))),
    }
}

/// The target group named by an ARN or by its name.
async fn describe_target_group(clients: &Clients, tg: &str) -> Lookup<TargetGroup> {
    let request = clients.elb.describe_target_groups();
    let request = if tg.starts_with("arn:") {
        request.target_group_arns(tg)
    } else {
        request.names(tg)
    };
    match request.send().await {
        Ok(out) => out
            .target_groups()
            .first()
            .cloned()
            .map_or(Lookup::Missing, Lookup::Found),
        Err(e) if e.code() == Some("TargetGroupNotFound") => Lookup::Missing,
        Err(e) => Lookup::Failed(format!("DescribeTargetGroups: {}", error_text(&e))),
    }
}

async fn target_health(
    clients: &Clients,
    tg: &TargetGroup,
) -> Result<Vec<TargetHealthDescription>, String> {
    clients
        .elb
        .describe_target_health()
        .set_target_group_arn(tg.target_group_arn().map(str::to_owned))
        .send()
        .await
        .map(|out| out.target_health_descriptions().to_vec())
        .map_err(|e| format!("DescribeTargetHealth: {}", error_text(&e)))
}

/// Every rule of the listener, across pages.
async fn listener_rules(clients: &Clients, listener_arn: &str) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    let mut marker = None;
    loop {
        let out = clients
            .elb
            .describe_rules()
            .listener_arn(listener_arn)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| format!("DescribeRules: {}", error_text(&e)))?;
        rules.extend(out.rules().iter().cloned());
        marker = out.next_marker().map(str::to_owned);
        if marker.is_none() {
            return Ok(rules);
        }
    }
}

/// The parts of a rule that decide where preview requests go; `None` for the default rule.
fn view(rule: &Rule) -> Option<RuleView> {
    if rule.is_default() == Some(true) {
        return None;
    }
    let priority = rule.priority()?.parse().ok()?;
    let mut hosts: Option<Vec<String>> = None;
    let mut regex_hosts_only = false;
    let mut other_conditions = Vec::new();
    for condition in rule.conditions() {
        match condition.field() {
            Some("host-header") => {
                let mut values: Vec<String> = condition.values().to_vec();
                if let Some(config) = condition.host_header_config() {
                    values.extend(config.values().iter().cloned());
                    regex_hosts_only = values.is_empty() && !config.regex_values().is_empty();
                }
                if !values.is_empty() {
                    hosts.get_or_insert_with(Vec::new).extend(values);
                }
            }
            Some(field) => other_conditions.push(field.to_owned()),
            None => {}
        }
    }
    let mut forwards_to = Vec::new();
    let mut actions = Vec::new();
    for action in rule.actions() {
        actions.push(action.r#type().map_or("?", |t| t.as_str()).to_owned());
        if action.r#type() != Some(&ActionTypeEnum::Forward) {
            continue;
        }
        match action.forward_config() {
            Some(config) if !config.target_groups().is_empty() => forwards_to.extend(
                config
                    .target_groups()
                    .iter()
                    .filter(|t| t.weight().is_none_or(|w| w > 0))
                    .filter_map(|t| t.target_group_arn().map(str::to_owned)),
            ),
            _ => forwards_to.extend(action.target_group_arn().map(str::to_owned)),
        }
    }
    forwards_to.sort();
    forwards_to.dedup();
    Some(RuleView {
        arn: rule.rule_arn().unwrap_or_default().to_owned(),
        priority,
        hosts,
        regex_hosts_only,
        other_conditions,
        forwards_to,
        actions,
    })
}

async fn listener_rule(
    clients: &Clients,
    settings: &Settings,
    listener: Option<&Lookup<Listener>>,
    target_group: Option<&Lookup<TargetGroup>>,
) -> Finding {
    const CHECK: &str = "listener-rule";
    let Some(suffix) = &settings.uat_domain_suffix else {
        return Finding::not_configured(CHECK, "UAT_DOMAIN_SUFFIX", "the preview rule");
    };
    let (Some(listener_arn), Some(listener)) = (&settings.alb_listener_arn, listener) else {
        return Finding::not_configured(CHECK, "ALB_LISTENER_ARN", "the preview rule");
    };
    match listener {
        Lookup::Found(_) => {}
        Lookup::Missing => {
            return Finding::problem(
                CHECK,
                listener_arn,
                "the listener does not exist",
                format!(
                    "set ALB_LISTENER_ARN to the HTTPS listener of the load balancer that \
                     *.{suffix} resolves to"
                ),
            );
        }
        Lookup::Failed(e) => return cannot_check(CHECK, listener_arn, e),
    }
    let tg_arn = match target_group {
        Some(Lookup::Found(tg)) => tg.target_group_arn().unwrap_or_default().to_owned(),
        Some(_) => {
            return Finding::skipped(
                CHECK,
                listener_arn,
                "needs the proxy's target group (see proxy-targets)",
            );
        }
        None => {
            return Finding::skipped(CHECK, listener_arn, "needs PROXY_TARGET_GROUP_ARN");
        }
    };
    let rules = match listener_rules(clients, listener_arn).await {
        Ok(rules) => rules,
        Err(e) => return cannot_check(CHECK, listener_arn, &e),
    };
    let views: Vec<RuleView> = rules.iter().filter_map(view).collect();
    match rules::plan(listener_arn, &views, suffix, &tg_arn) {
        RulePlan::Ok { rule_arn, priority } => Finding::ok(
            CHECK,
            listener_arn,
            format!("rule {rule_arn} (priority {priority}) forwards *.{suffix} to {tg_arn}"),
        ),
        RulePlan::Problem {
            problems,
            fix,
            repairs,
            ..
        } => {
            let mut finding = Finding::problem(CHECK, listener_arn, problems.join("; "), fix);
            for repair in repairs {
                finding = finding.with_repair(repair);
            }
            finding
        }
    }
}

/// Previews run the repositories' code: whatever cookies it sets for the suffix's parent domains
/// reach every other host under them. Names the hosts of this listener that share the
/// previews' site (docs/SECURITY.md, "Preview sign-in").
async fn cookie_scope(
    clients: &Clients,
    settings: &Settings,
    listener: Option<&Lookup<Listener>>,
) -> Finding {
    const CHECK: &str = "preview-cookie-scope";
    let Some(suffix) = &settings.uat_domain_suffix else {
        // listener-rule names the missing variable already.
        return Finding::skipped(CHECK, "UAT_DOMAIN_SUFFIX", "needs UAT_DOMAIN_SUFFIX");
    };
    let site = rules::cookie_site(suffix);
    let (Some(listener_arn), Some(Lookup::Found(_))) = (&settings.alb_listener_arn, listener)
    else {
        return Finding::skipped(CHECK, suffix, "needs the listener (see listener-rule)");
    };
    let rules = match listener_rules(clients, listener_arn).await {
        Ok(rules) => rules,
        Err(e) => return cannot_check(CHECK, listener_arn, &e),
    };
    let views: Vec<RuleView> = rules.iter().filter_map(view).collect();
    let neighbours = rules::cookie_neighbours(&views, suffix);
    if neighbours.is_empty() {
        return Finding::ok(
            CHECK,
            suffix,
            format!(
                "no other host of the listener is under {site}, the parent domain previews can set \
                 cookies for (hosts elsewhere under {site} cannot be seen from here)"
            ),
        );
    }
    Finding::problem(
        CHECK,
        suffix,
        format!(
            "{} share {site} with the previews: a preview's code can set cookies they read",
            neighbours.join(", ")
        ),
        format!(
            "serve previews under a domain of their own (UAT_DOMAIN_SUFFIX under a registrable \
             domain nothing else uses), or move those hosts off {site}"
        ),
    )
}

fn proxy_targets(
    settings: &Settings,
    target_group: Option<&Lookup<TargetGroup>>,
    health: Option<&Result<Vec<TargetHealthDescription>, String>>,
) -> Finding {
    const CHECK: &str = "proxy-targets";
    let (Some(name), Some(target_group)) = (&settings.proxy_target_group, target_group) else {
        return Finding::not_configured(
            CHECK,
            "PROXY_TARGET_GROUP_ARN",
            "the proxy's target group",
        );
    };
    let tg = match target_group {
        Lookup::Found(tg) => tg,
        Lookup::Missing => {
            return Finding::problem(
                CHECK,
                name,
                "the target group does not exist",
                "set PROXY_TARGET_GROUP_ARN to the target group of the proxy service (ARN or name)",
            );
        }
        Lookup::Failed(e) => return cannot_check(CHECK, name, e),
    };
    let arn = tg.target_group_arn().unwrap_or(name);
    let descriptions = match health {
        Some(Ok(d)) => d,
        Some(Err(e)) => return cannot_check(CHECK, arn, e),
        None => return Finding::skipped(CHECK, arn, "target health was not read"),
    };
    let states: Vec<String> = descriptions.iter().map(describe_target).collect();
    let healthy = descriptions
        .iter()
        .filter(|d| {
            d.target_health()
                .and_then(|h| h.state())
                .map(|s| s.as_str())
                == Some("healthy")
        })
        .count();
    let port = tg
        .port()
        .map_or_else(String::new, |p| format!(" on port {p}"));
    let health_path = tg.health_check_path().unwrap_or("/health");
    if healthy > 0 {
        return Finding::ok(
            CHECK,
            arn,
            format!("{healthy} of {} targets healthy", descriptions.len()),
        );
    }
    let problem = if descriptions.is_empty() {
        "no target is registered: no proxy task is running behind the load balancer".to_owned()
    } else {
        format!("no healthy target: {}", states.join(", "))
    };
    Finding::problem(
        CHECK,
        arn,
        problem,
        format!(
            "make sure the proxy service runs (desired count at least 1) with this target group \
             as its load balancer, listening{port} on 0.0.0.0 (LISTEN) and answering GET \
             {health_path}; see its task logs, and proxy-ingress"
        ),
    )
}

fn describe_target(d: &TargetHealthDescription) -> String {
    let target = d.target();
    let id = target.and_then(|t| t.id()).unwrap_or("?");
    let port = target
        .and_then(|t| t.port())
        .map_or_else(String::new, |p| format!(":{p}"));
    let health = d.target_health();
    let state = health
        .and_then(|h| h.state())
        .map_or("unknown", |s| s.as_str());
    let reason = health
        .and_then(|h| h.reason())
        .map_or_else(String::new, |r| format!(" ({})", r.as_str()));
    format!("{id}{port} {state}{reason}")
}

async fn proxy_ingress(
    clients: &Clients,
    settings: &Settings,
    listener: Option<&Lookup<Listener>>,
    target_group: Option<&Lookup<TargetGroup>>,
    health: Option<&Result<Vec<TargetHealthDescription>, String>>,
) -> Finding {
    const CHECK: &str = "proxy-ingress";
    let Some(group_id) = &settings.proxy_security_group_id else {
        return Finding::not_configured(CHECK, "PROXY_SECURITY_GROUP_ID", "the proxy's ingress");
    };
    let group = match clients
        .ec2
        .describe_security_groups()
        .group_ids(group_id)
        .send()
        .await
    {
        Ok(out) => out.security_groups().first().cloned(),
        Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidGroup")) => None,
        Err(e) => {
            return cannot_check(
                CHECK,
                group_id,
                &format!("DescribeSecurityGroups: {}", error_text(&e)),
            );
        }
    };
    let Some(group) = group else {
        return Finding::problem(
            CHECK,
            group_id,
            "the security group does not exist",
            "set PROXY_SECURITY_GROUP_ID to the security group of the proxy service's tasks",
        );
    };
    let sources = match load_balancer_groups(clients, settings, listener).await {
        Ok(groups) => groups,
        Err(reason) => return Finding::skipped(CHECK, group_id, reason),
    };
    let ports = match proxy_ports(settings, target_group, health) {
        Some(ports) => ports,
        None => {
            return Finding::skipped(
                CHECK,
                group_id,
                "needs the proxy port: set PROXY_PORT, or fix PROXY_TARGET_GROUP_ARN",
            );
        }
    };
    let permissions = group.ip_permissions();
    let closed: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|port| !admits(permissions, &sources, *port))
        .collect();
    if closed.is_empty() {
        return Finding::ok(
            CHECK,
            group_id,
            format!(
                "admits {} on tcp/{}",
                sources.join(", "),
                join(ports.iter())
            ),
        );
    }
    let admitted = describe_ingress(permissions);
    let problem = format!(
        "does not admit the load balancer's security group {} on tcp/{} (it admits {})",
        sources.join(", "),
        join(closed.iter()),
        if admitted.is_empty() {
            "nothing".to_owned()
        } else {
            admitted.join("; ")
        }
    );
    let fix = closed
        .iter()
        .map(|port| {
            format!(
                "aws ec2 authorize-security-group-ingress --group-id {group_id} --protocol tcp \
                 --port {port} --source-group {}",
                sources[0]
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut finding = Finding::problem(CHECK, group_id, problem, fix);
    for port in closed {
        finding = finding.with_repair(Repair::AuthorizeIngress {
            group_id: group_id.clone(),
            source_group_id: sources[0].clone(),
            port,
        });
    }
    finding
}

fn join<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

/// The load balancer's security groups: as configured, else those of the listener's load
/// balancer.
async fn load_balancer_groups(
    clients: &Clients,
    settings: &Settings,
    listener: Option<&Lookup<Listener>>,
) -> Result<Vec<String>, String> {
    if !settings.alb_security_group_ids.is_empty() {
        return Ok(settings.alb_security_group_ids.clone());
    }
    let listener = match listener {
        Some(Lookup::Found(l)) => l,
        Some(_) => {
            return Err(
                "needs the load balancer's security groups: fix ALB_LISTENER_ARN (see \
                 listener-rule) or set ALB_SECURITY_GROUP_ID"
                    .to_owned(),
            );
        }
        None => {
            return Err(
                "needs the load balancer's security groups: set ALB_LISTENER_ARN or \
                 ALB_SECURITY_GROUP_ID"
                    .to_owned(),
            );
        }
    };
    let Some(lb_arn) = listener.load_balancer_arn() else {
        return Err("the listener names no load balancer".to_owned());
    };
    let out = clients
        .elb
        .describe_load_balancers()
        .load_balancer_arns(lb_arn)
        .send()
        .await
        .map_err(|e| format!("DescribeLoadBalancers of {lb_arn}: {}", error_text(&e)))?;
    let groups: Vec<String> = out
        .load_balancers()
        .first()
        .map(|lb| lb.security_groups().to_vec())
        .unwrap_or_default();
    if groups.is_empty() {
        return Err(format!(
            "load balancer {lb_arn} has no security groups: set ALB_SECURITY_GROUP_ID"
        ));
    }
    Ok(groups)
}

/// The ports the load balancer sends proxy traffic to: as configured, else those of the
/// registered targets, else the target group's.
fn proxy_ports(
    settings: &Settings,
    target_group: Option<&Lookup<TargetGroup>>,
    health: Option<&Result<Vec<TargetHealthDescription>, String>>,
) -> Option<Vec<u16>> {
    if let Some(port) = settings.proxy_port {
        return Some(vec![port]);
    }
    let mut ports: Vec<u16> = match health {
        Some(Ok(targets)) => targets
            .iter()
            .filter_map(|t| t.target()?.port())
            .filter_map(|p| u16::try_from(p).ok())
            .collect(),
        _ => Vec::new(),
    };
    if ports.is_empty() {
        if let Some(Lookup::Found(tg)) = target_group {
            ports.extend(tg.port().and_then(|p| u16::try_from(p).ok()));
        }
    }
    ports.sort_unstable();
    ports.dedup();
    (!ports.is_empty()).then_some(ports)
}

/// Whether some permission lets `sources` (any of them: the load balancer's traffic carries all
/// its groups) reach tcp `port`; an IPv4 rule open to everyone counts too.
fn admits(permissions: &[IpPermission], sources: &[String], port: u16) -> bool {
    permissions.iter().any(|p| {
        let protocol_ok = match p.ip_protocol() {
            Some("-1") => true,
            Some("tcp" | "6") => {
                let from = p.from_port().unwrap_or(0);
                let to = p.to_port().unwrap_or(65_535);
                (from..=to).contains(&i32::from(port))
            }
            _ => false,
        };
        let source_ok = p.user_id_group_pairs().iter().any(|pair| {
            pair.group_id()
                .is_some_and(|g| sources.iter().any(|s| s == g))
        }) || p
            .ip_ranges()
            .iter()
            .any(|r| r.cidr_ip() == Some("0.0.0.0/0"));
        protocol_ok && source_ok
    })
}

/// The ingress rules, as `tcp/8080 from sg-…` phrases.
fn describe_ingress(permissions: &[IpPermission]) -> Vec<String> {
    permissions
        .iter()
        .map(|p| {
            let ports = match (p.ip_protocol(), p.from_port(), p.to_port()) {
                (Some("-1"), ..) => "all traffic".to_owned(),
                (Some(proto), Some(from), Some(to)) if from == to => format!("{proto}/{from}"),
                (Some(proto), Some(from), Some(to)) => format!("{proto}/{from}-{to}"),
                (proto, ..) => proto.unwrap_or("?").to_owned(),
            };
            let sources: Vec<&str> = p
                .user_id_group_pairs()
                .iter()
                .filter_map(UserIdGroupPair::group_id)
                .chain(p.ip_ranges().iter().filter_map(|r| r.cidr_ip()))
                .collect();
            format!("{ports} from {}", sources.join(", "))
        })
        .collect()
}

fn cannot_check(check: &'static str, resource: &str, error: &str) -> Finding {
    Finding::problem(
        check,
        resource,
        format!("could not be checked: {error}"),
        "check the AWS credentials, region and permissions doctor runs with",
    )
}

/// Makes one repair of this part.
pub async fn apply(clients: &Clients, repair: &Repair) -> Result<(), String> {
    match repair {
        Repair::CreateRule {
            listener_arn,
            host,
            target_group_arn,
            priority,
        } => {
            let condition = RuleCondition::builder()
                .field("host-header")
                .host_header_config(HostHeaderConditionConfig::builder().values(host).build())
                .build();
            clients
                .elb
                .create_rule()
                .listener_arn(listener_arn)
                .priority(i32::try_from(*priority).map_err(|e| e.to_string())?)
                .conditions(condition)
                .actions(forward(target_group_arn))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("CreateRule: {}", error_text(&e)))
        }
        Repair::Repoint {
            rule_arn,
            target_group_arn,
        } => clients
            .elb
            .modify_rule()
            .rule_arn(rule_arn)
            .actions(forward(target_group_arn))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("ModifyRule: {}", error_text(&e))),
        Repair::Move { rule_arn, priority } => clients
            .elb
            .set_rule_priorities()
            .rule_priorities(
                RulePriorityPair::builder()
                    .rule_arn(rule_arn)
                    .priority(i32::try_from(*priority).map_err(|e| e.to_string())?)
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("SetRulePriorities: {}", error_text(&e))),
        Repair::AuthorizeIngress {
            group_id,
            source_group_id,
            port,
        } => {
            let permission = IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(i32::from(*port))
                .to_port(i32::from(*port))
                .user_id_group_pairs(
                    UserIdGroupPair::builder()
                        .group_id(source_group_id)
                        .description("load balancer to the UAT proxy (cca doctor --fix)")
                        .build(),
                )
                .build();
            clients
                .ec2
                .authorize_security_group_ingress()
                .group_id(group_id)
                .ip_permissions(permission)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("AuthorizeSecurityGroupIngress: {}", error_text(&e)))
        }
    }
}

fn forward(target_group_arn: &str) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(target_group_arn)
        .build()
}
