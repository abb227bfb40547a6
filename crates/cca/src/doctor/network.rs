//! The network paths the system needs that no request of its own would show until it fails:
//! the webhook Lambda's way out (a Lambda never gets a public address, so its subnets must send
//! their default route through a NAT), the proxy's tasks in zones the load balancer serves, and
//! the proxy's way into sessions on every port a repository may give its app.

use std::ops::RangeInclusive;

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::types::{Filter, IpPermission, RouteTable};
use aws_sdk_lambda::types::FunctionConfiguration;
use cca_domain::contract::APP_PORTS;

use super::Settings;
use super::finding::Finding;

/// The AWS clients this part needs.
#[derive(Debug, Clone)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub ecs: aws_sdk_ecs::Client,
}

fn error_text<E: std::error::Error>(err: &E) -> String {
    DisplayErrorContext(err).to_string()
}

const NOT_CHECKED: &str = "check the AWS credentials, region and permissions doctor runs with";

/// `webhook-subnets`, `proxy-zones`, `session-ports`.
pub async fn check(
    clients: &Clients,
    settings: &Settings,
    function: Option<&FunctionConfiguration>,
) -> Vec<Finding> {
    let (subnets, zones, ports) = tokio::join!(
        webhook_subnets(clients, settings, function),
        proxy_zones(clients, settings),
        session_ports(clients, settings),
    );
    vec![subnets, zones, ports]
}

/// Where a subnet's default route goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Egress {
    /// A NAT gateway, a transit gateway, or an instance or interface doing NAT.
    Translated(String),
    /// An internet gateway: only addresses with a public IP get out, and a Lambda has none.
    InternetGateway(String),
    /// No default route.
    None,
}

/// The default IPv4 route of a route table.
pub fn default_egress(table: &RouteTable) -> Egress {
    let Some(route) = table
        .routes()
        .iter()
        .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
    else {
        return Egress::None;
    };
    if route
        .state()
        .is_some_and(|s| *s == aws_sdk_ec2::types::RouteState::Blackhole)
    {
        return Egress::None;
    }
    if let Some(nat) = route.nat_gateway_id() {
        return Egress::Translated(nat.to_owned());
    }
    if let Some(gateway) = route.gateway_id() {
        return if gateway.starts_with("igw-") {
            Egress::InternetGateway(gateway.to_owned())
        } else {
            // A virtual private gateway (egress through the company's network) or a gateway
            // endpoint.
            Egress::Translated(gateway.to_owned())
        };
    }
    [
        route.transit_gateway_id(),
        route.network_interface_id(),
        route.instance_id(),
        route.core_network_arn(),
    ]
    .into_iter()
    .flatten()
    .next()
    .map_or(Egress::None, |id| Egress::Translated(id.to_owned()))
}

/// The route table a subnet uses: its own association, else its VPC's main table.
async fn route_table_of(
    ec2: &aws_sdk_ec2::Client,
    subnet: &str,
    vpc: &str,
) -> Result<Option<RouteTable>, String> {
    let explicit = ec2
        .describe_route_tables()
        .filters(
            Filter::builder()
                .name("association.subnet-id")
                .values(subnet)
                .build(),
        )
        .send()
        .await
        .map_err(|e| format!("DescribeRouteTables: {}", error_text(&e)))?;
    if let Some(table) = explicit.route_tables().first() {
        return Ok(Some(table.clone()));
    }
    let main = ec2
        .describe_route_tables()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .filters(
            Filter::builder()
                .name("association.main")
                .values("true")
                .build(),
        )
        .send()
        .await
        .map_err(|e| format!("DescribeRouteTables: {}", error_text(&e)))?;
    Ok(main.route_tables().first().cloned())
}

async fn webhook_subnets(
    clients: &Clients,
    settings: &Settings,
    function: Option<&FunctionConfiguration>,
) -> Finding {
    const CHECK: &str = "webhook-subnets";
    let Some(function) = function else {
        return Finding::skipped(
            CHECK,
            settings
                .webhook_function
                .as_deref()
                .unwrap_or("WEBHOOK_FUNCTION_NAME"),
            "needs the webhook function (see webhook-function)",
        );
    };
    let resource = function.function_name().unwrap_or("webhook").to_owned();
    let Some(vpc) = function.vpc_config() else {
        return Finding::skipped(CHECK, resource, "the function is not in a VPC");
    };
    if vpc.subnet_ids().is_empty() {
        return Finding::skipped(CHECK, resource, "the function is not in a VPC");
    }
    // The subnets' own VPC (the function reports its VPC too, but the subnets decide).
    let described = match clients
        .ec2
        .describe_subnets()
        .set_subnet_ids(Some(vpc.subnet_ids().to_vec()))
        .send()
        .await
    {
        Ok(out) => out.subnets().to_vec(),
        Err(e) => {
            return Finding::problem(
                CHECK,
                resource,
                format!("could not be checked: DescribeSubnets: {}", error_text(&e)),
                "check that the function's subnets exist, and the permissions doctor runs with",
            );
        }
    };
    let mut faults = Vec::new();
    let mut ways = Vec::new();
    for subnet in vpc.subnet_ids() {
        let Some(vpc_id) = described
            .iter()
            .find(|s| s.subnet_id() == Some(subnet.as_str()))
            .and_then(|s| s.vpc_id())
        else {
            faults.push(format!("{subnet} does not exist"));
            continue;
        };
        let table = match route_table_of(&clients.ec2, subnet, vpc_id).await {
            Ok(table) => table,
            Err(e) => {
                return Finding::problem(
                    CHECK,
                    resource,
                    format!("could not be checked: {e}"),
                    NOT_CHECKED,
                );
            }
        };
        match table.as_ref().map_or(Egress::None, default_egress) {
            Egress::Translated(via) => {
                if via.starts_with("nat-") {
                    match nat_state(&clients.ec2, &via).await {
                        Ok(state) if state == "available" => ways.push(format!("{subnet} → {via}")),
                        Ok(state) => faults.push(format!(
                            "{subnet} routes through NAT gateway {via}, which is {state}"
                        )),
                        Err(e) => {
                            return Finding::problem(
                                CHECK,
                                resource,
                                format!("could not be checked: {e}"),
                                NOT_CHECKED,
                            );
                        }
                    }
                } else {
                    ways.push(format!("{subnet} → {via}"));
                }
            }
            Egress::InternetGateway(igw) => faults.push(format!(
                "{subnet} sends its default route to internet gateway {igw}: a Lambda never \
                 gets a public address, so the webhook cannot reach GitHub or AWS's APIs from it"
            )),
            Egress::None => faults.push(format!(
                "{subnet} has no usable default route (none, or a blackhole), so the webhook \
                 cannot reach GitHub or AWS's APIs"
            )),
        }
    }
    if faults.is_empty() {
        return Finding::ok(CHECK, resource, ways.join(", "));
    }
    Finding::problem(
        CHECK,
        resource,
        faults.join("; "),
        "give lambda_subnet_ids private subnets whose route table sends 0.0.0.0/0 to a NAT \
         gateway, then `terraform apply`",
    )
}

async fn nat_state(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<String, String> {
    match ec2.describe_nat_gateways().nat_gateway_ids(id).send().await {
        Ok(out) => Ok(out
            .nat_gateways()
            .first()
            .and_then(|n| n.state())
            .map_or("gone", |s| s.as_str())
            .to_owned()),
        Err(e) if e.code() == Some("NatGatewayNotFound") => Ok("gone".to_owned()),
        Err(e) => Err(format!("DescribeNatGateways: {}", error_text(&e))),
    }
}

/// The availability zone of each subnet.
async fn zones_of(
    ec2: &aws_sdk_ec2::Client,
    subnets: &[String],
) -> Result<Vec<(String, String)>, String> {
    let out = ec2
        .describe_subnets()
        .set_subnet_ids(Some(subnets.to_vec()))
        .send()
        .await
        .map_err(|e| format!("DescribeSubnets: {}", error_text(&e)))?;
    Ok(out
        .subnets()
        .iter()
        .filter_map(|s| Some((s.subnet_id()?.to_owned(), s.availability_zone()?.to_owned())))
        .collect())
}

async fn proxy_zones(clients: &Clients, settings: &Settings) -> Finding {
    const CHECK: &str = "proxy-zones";
    let Some(service) = &settings.proxy_service else {
        return Finding::not_configured(CHECK, "PROXY_SERVICE", "the proxy's zones");
    };
    let (Some(cluster), Some(listener)) = (&settings.ecs_cluster, &settings.alb_listener_arn)
    else {
        return Finding::skipped(
            CHECK,
            service,
            "needs ECS_CLUSTER and ALB_LISTENER_ARN as well",
        );
    };
    let described = match clients
        .ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            return Finding::problem(
                CHECK,
                service,
                format!(
                    "could not be checked: DescribeServices: {}",
                    aws_sdk_ecs::error::DisplayErrorContext(&e)
                ),
                NOT_CHECKED,
            );
        }
    };
    let Some(svc) = described
        .services()
        .iter()
        .find(|s| s.status() != Some("INACTIVE"))
    else {
        return Finding::problem(
            CHECK,
            service,
            format!("the proxy service does not exist in cluster {cluster}"),
            "`terraform apply` in infra/ makes it; or set PROXY_SERVICE to the deployed one",
        );
    };
    let subnets: Vec<String> = svc
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration())
        .map(|a| a.subnets().to_vec())
        .unwrap_or_default();
    if subnets.is_empty() {
        return Finding::problem(
            CHECK,
            service,
            "the service has no subnets (awsvpc network configuration)",
            "set proxy_subnet_ids in infra/ and `terraform apply`",
        );
    }
    let lb_zones = match load_balancer_zones(clients, listener).await {
        Ok(zones) => zones,
        Err(e) => {
            return Finding::problem(
                CHECK,
                listener,
                format!("could not be checked: {e}"),
                NOT_CHECKED,
            );
        }
    };
    let zones = match zones_of(&clients.ec2, &subnets).await {
        Ok(zones) => zones,
        Err(e) => {
            return Finding::problem(
                CHECK,
                service,
                format!("could not be checked: {e}"),
                NOT_CHECKED,
            );
        }
    };
    let outside: Vec<String> = zones
        .iter()
        .filter(|(_, zone)| !lb_zones.contains(zone))
        .map(|(subnet, zone)| format!("{subnet} ({zone})"))
        .collect();
    if outside.is_empty() {
        let mut names: Vec<&str> = zones.iter().map(|(_, z)| z.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        return Finding::ok(
            CHECK,
            service,
            format!(
                "tasks in {}, all served by the load balancer",
                names.join(", ")
            ),
        );
    }
    Finding::problem(
        CHECK,
        service,
        format!(
            "subnet(s) {} are in zones the load balancer does not serve ({} only): a proxy task \
             placed there gets no preview request",
            outside.join(", "),
            lb_zones.join(", ")
        ),
        "give proxy_subnet_ids subnets in the load balancer's zones (or enable the zone on the \
         load balancer), then `terraform apply`",
    )
}

async fn load_balancer_zones(clients: &Clients, listener: &str) -> Result<Vec<String>, String> {
    use aws_sdk_elasticloadbalancingv2::error::DisplayErrorContext as ElbError;
    let listeners = clients
        .elb
        .describe_listeners()
        .listener_arns(listener)
        .send()
        .await
        .map_err(|e| format!("DescribeListeners: {}", ElbError(&e)))?;
    let lb = listeners
        .listeners()
        .first()
        .and_then(|l| l.load_balancer_arn())
        .ok_or("the listener does not exist")?
        .to_owned();
    let lbs = clients
        .elb
        .describe_load_balancers()
        .load_balancer_arns(lb)
        .send()
        .await
        .map_err(|e| format!("DescribeLoadBalancers: {}", ElbError(&e)))?;
    Ok(lbs
        .load_balancers()
        .first()
        .map(|lb| {
            lb.availability_zones()
                .iter()
                .filter_map(|z| z.zone_name().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// The TCP port ranges that `permissions` open to the security group `source` (or to any
/// address).
pub fn open_ranges(permissions: &[IpPermission], source: &str) -> Vec<RangeInclusive<u16>> {
    permissions
        .iter()
        .filter(|p| {
            p.user_id_group_pairs()
                .iter()
                .any(|g| g.group_id() == Some(source))
                || p.ip_ranges()
                    .iter()
                    .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))
        })
        .filter_map(|p| match p.ip_protocol() {
            Some("-1") => Some(0..=65535),
            Some("tcp") | Some("6") => {
                let from = u16::try_from(p.from_port()?).ok()?;
                let to = u16::try_from(p.to_port()?).ok()?;
                Some(from..=to)
            }
            _ => None,
        })
        .collect()
}

/// The ports of `wanted` that no range covers, as ranges.
pub fn uncovered(
    ranges: &[RangeInclusive<u16>],
    wanted: RangeInclusive<u16>,
    except: u16,
) -> Vec<RangeInclusive<u16>> {
    let mut gaps = Vec::new();
    let mut start: Option<u16> = None;
    for port in wanted.clone() {
        let covered = port == except || ranges.iter().any(|r| r.contains(&port));
        match (covered, start) {
            (false, None) => start = Some(port),
            (true, Some(s)) => {
                gaps.push(s..=port - 1);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        gaps.push(s..=*wanted.end());
    }
    gaps
}

fn show(ranges: &[RangeInclusive<u16>]) -> String {
    ranges
        .iter()
        .map(|r| {
            if r.start() == r.end() {
                r.start().to_string()
            } else {
                format!("{}-{}", r.start(), r.end())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn session_ports(clients: &Clients, settings: &Settings) -> Finding {
    const CHECK: &str = "session-ports";
    let Some(sessions) = settings.session_security_groups.first() else {
        return Finding::not_configured(
            CHECK,
            "AGENT_SECURITY_GROUPS",
            "the sessions' ingress from the proxy",
        );
    };
    let Some(proxy) = &settings.proxy_security_group_id else {
        return Finding::skipped(CHECK, sessions, "needs PROXY_SECURITY_GROUP_ID as well");
    };
    let groups = match clients
        .ec2
        .describe_security_groups()
        .group_ids(sessions)
        .group_ids(proxy)
        .send()
        .await
    {
        Ok(out) => out.security_groups().to_vec(),
        Err(e) => {
            return Finding::problem(
                CHECK,
                sessions,
                format!(
                    "could not be checked: DescribeSecurityGroups: {}",
                    error_text(&e)
                ),
                "check that AGENT_SECURITY_GROUPS and PROXY_SECURITY_GROUP_ID name existing groups",
            );
        }
    };
    let find = |id: &str| groups.iter().find(|g| g.group_id() == Some(id));
    let (Some(session_group), Some(proxy_group)) = (find(sessions), find(proxy)) else {
        return Finding::problem(
            CHECK,
            sessions,
            "a security group named by AGENT_SECURITY_GROUPS or PROXY_SECURITY_GROUP_ID does not exist",
            "set them to the deployed groups (infra/ outputs doctor_environment)",
        );
    };
    let control = settings.control_port;
    let ingress = open_ranges(session_group.ip_permissions(), proxy);
    let egress = open_ranges(proxy_group.ip_permissions_egress(), sessions);
    let mut faults = Vec::new();
    let closed_in = uncovered(&ingress, APP_PORTS, control);
    if !closed_in.is_empty() {
        faults.push(format!(
            "{sessions} does not admit the proxy's group {proxy} on tcp/{}",
            show(&closed_in)
        ));
    }
    let closed_out = uncovered(&egress, APP_PORTS, control);
    if !closed_out.is_empty() {
        faults.push(format!(
            "the proxy's group {proxy} may not send to {sessions} on tcp/{}",
            show(&closed_out)
        ));
    }
    if ingress.iter().any(|r| r.contains(&control)) {
        faults.push(format!(
            "{sessions} admits the proxy on the agents' control port {control}, which only the \
             webhook may call"
        ));
    }
    if faults.is_empty() {
        return Finding::ok(
            CHECK,
            sessions,
            format!(
                "the proxy reaches tcp/{}-{} except the control port {control}",
                APP_PORTS.start(),
                APP_PORTS.end()
            ),
        );
    }
    Finding::problem(
        CHECK,
        sessions,
        format!(
            "{}: a repository's `.cca.toml` may give its app any port in {}-{}",
            faults.join("; "),
            APP_PORTS.start(),
            APP_PORTS.end()
        ),
        "`terraform apply` in infra/ (network.tf opens those ports, the control port excepted)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routes_are_read_by_their_target() {
        use aws_sdk_ec2::types::{Route, RouteState};
        let table = |route: Route| RouteTable::builder().routes(route).build();
        let default = || Route::builder().destination_cidr_block("0.0.0.0/0");
        assert_eq!(
            default_egress(&table(default().nat_gateway_id("nat-1").build())),
            Egress::Translated("nat-1".into())
        );
        assert_eq!(
            default_egress(&table(default().gateway_id("igw-1").build())),
            Egress::InternetGateway("igw-1".into())
        );
        assert_eq!(
            default_egress(&table(default().gateway_id("vgw-1").build())),
            Egress::Translated("vgw-1".into())
        );
        assert_eq!(
            default_egress(&table(
                default()
                    .nat_gateway_id("nat-1")
                    .state(RouteState::Blackhole)
                    .build()
            )),
            Egress::None
        );
        let local = Route::builder()
            .destination_cidr_block("10.0.0.0/16")
            .gateway_id("local")
            .build();
        assert_eq!(default_egress(&table(local)), Egress::None);
    }

    #[test]
    fn uncovered_ports_are_the_gaps_between_ranges() {
        assert!(uncovered(&[1024..=8079, 8081..=65535], 1024..=65535, 8080).is_empty());
        assert_eq!(
            uncovered(&[3000..=3000], 1024..=65535, 8080),
            vec![1024..=2999, 3001..=8079, 8081..=65535]
        );
        assert_eq!(uncovered(&[0..=65535], 1024..=65535, 8080), vec![]);
        assert_eq!(
            uncovered(&[], 1024..=1030, 1027),
            vec![1024..=1026, 1028..=1030]
        );
    }
}
