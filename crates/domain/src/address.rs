//! Which addresses the control plane may connect to, given what a session record says.
//!
//! A session's `container_ip` is written by the agent container, which is not trusted: a record
//! pointing at the instance metadata service, at a control-plane listener or at the internet
//! would make the proxy forward visitors there, or make the webhook send the session's control
//! token there. So the proxy (before forwarding to a preview) and the webhook (before calling an
//! agent's control API) both ask this one policy: an address must be an IP literal (names are
//! never resolved, so DNS cannot change the answer after the check) inside the configured private
//! ranges, loopback only in local mode, and a few kinds are refused whatever the configuration
//! says. The decision is pure and made before any connection is opened.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The ranges allowed when `PROXY_ALLOWED_CIDRS` (the proxy) or `AGENT_ALLOWED_CIDRS` (the
/// webhook) is not set: the IPv4 private ranges of RFC 1918 (where VPC subnets live) and IPv6
/// unique local addresses.
pub const DEFAULT_ALLOWED_CIDRS: [&str; 4] =
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"];

/// AWS's IPv6 service addresses (instance metadata `fd00:ec2::254`, DNS, time). They sit inside
/// `fc00::/7`, which is allowed by default, so they are refused by name.
const AWS_IPV6_SERVICES: Ipv6Net =
    match Ipv6Net::new(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0), 32) {
        Ok(net) => net,
        Err(_) => panic!("valid prefix length"),
    };

/// Why a recorded address was refused. The text is for the log; visitors and commenters only
/// learn that the preview or agent cannot be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `container_ip` is not an IP literal (names are not resolved).
    #[error("container_ip {0:?} is not an IP address")]
    NotAnIp(String),
    /// Link-local, which includes the instance and task metadata services.
    #[error("{0} is link-local (metadata services live there)")]
    LinkLocal(IpAddr),
    /// An AWS IPv6 service address (metadata, DNS, time).
    #[error("{0} is an AWS service address")]
    AwsService(IpAddr),
    /// Loopback while not in local mode.
    #[error("{0} is loopback and local mode is off")]
    Loopback(IpAddr),
    /// `0.0.0.0`, `::`, broadcast or multicast: not one host.
    #[error("{0} is not a single host (unspecified, broadcast or multicast)")]
    NotAHost(IpAddr),
    /// One of the caller's own listeners (see [`Guard::refuse_listener`]): going there would loop.
    #[error("{0} is a listener of this process")]
    OwnListener(SocketAddr),
    /// Not inside any allowed range (a public address, or a private one not configured).
    #[error("{0} is outside the allowed ranges {1}")]
    OutsideAllowed(IpAddr, String),
}

/// The address policy. See the module documentation.
#[derive(Debug, Clone)]
pub struct Guard {
    allowed: Vec<IpNet>,
    local_mode: bool,
    own: Vec<SocketAddr>,
}

impl Guard {
    /// A guard allowing addresses inside `allowed`; loopback is allowed too when `local_mode` is
    /// set (everything runs on this machine: `cca up`, the process launcher).
    pub fn new(allowed: Vec<IpNet>, local_mode: bool) -> Self {
        Self {
            allowed,
            local_mode,
            own: Vec::new(),
        }
    }

    /// [`DEFAULT_ALLOWED_CIDRS`] as networks.
    pub fn default_allowed() -> Vec<IpNet> {
        DEFAULT_ALLOWED_CIDRS
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect()
    }

    /// Also refuses `addr`, one of the caller's own listeners (the proxy's, or the webhook's
    /// under `cca up`). When it listens on every interface (`0.0.0.0`), loopback and unspecified
    /// targets on that port are refused; other addresses of this host are not known here, so the
    /// proxy catches loops through them by its hop count instead.
    pub fn refuse_listener(&mut self, addr: SocketAddr) {
        self.own.push(addr);
    }

    /// The address to connect to for a recorded `container_ip` and `port`, or why not.
    pub fn check(&self, container_ip: &str, port: u16) -> Result<SocketAddr, Refusal> {
        let ip: IpAddr = container_ip
            .trim()
            .parse()
            .map_err(|_| Refusal::NotAnIp(container_ip.to_owned()))?;
        // `::ffff:169.254.169.254` reaches the same host as `169.254.169.254`.
        let ip = ip.to_canonical();
        let target = SocketAddr::new(ip, port);
        if is_link_local(ip) {
            return Err(Refusal::LinkLocal(ip));
        }
        if matches!(ip, IpAddr::V6(v6) if AWS_IPV6_SERVICES.contains(&v6)) {
            return Err(Refusal::AwsService(ip));
        }
        if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
            return Err(Refusal::NotAHost(ip));
        }
        if let Some(own) = self.own.iter().find(|own| is_own(**own, target)) {
            return Err(Refusal::OwnListener(*own));
        }
        if ip.is_loopback() {
            return if self.local_mode {
                Ok(target)
            } else {
                Err(Refusal::Loopback(ip))
            };
        }
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            Ok(target)
        } else {
            Err(Refusal::OutsideAllowed(ip, self.allowed_text()))
        }
    }

    fn allowed_text(&self) -> String {
        let nets: Vec<String> = self.allowed.iter().map(ToString::to_string).collect();
        nets.join(",")
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => Ipv6Net::new(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10)
            .is_ok_and(|net| net.contains(&v6)),
    }
}

fn is_own(own: SocketAddr, target: SocketAddr) -> bool {
    if own.port() != target.port() {
        return false;
    }
    own.ip() == target.ip() || (own.ip().is_unspecified() && target.ip().is_loopback())
}

/// Parses a comma-separated list of CIDRs (`10.0.0.0/8,fc00::/7`); a bare address is one host.
pub fn parse_cidrs(text: &str) -> Result<Vec<IpNet>, String> {
    let mut nets = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let net = match part.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => match part.parse::<IpAddr>() {
                Ok(IpAddr::V4(v4)) => IpNet::V4(Ipv4Net::from(v4)),
                Ok(IpAddr::V6(v6)) => IpNet::V6(Ipv6Net::from(v6)),
                Err(_) => return Err(format!("{part:?} is not a CIDR such as 10.0.0.0/8")),
            },
        };
        nets.push(net.trunc());
    }
    if nets.is_empty() {
        return Err("no range given".to_owned());
    }
    Ok(nets)
}

impl fmt::Display for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.allowed_text())?;
        if self.local_mode {
            f.write_str(" + loopback")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(local: bool) -> Guard {
        Guard::new(Guard::default_allowed(), local)
    }

    #[test]
    fn private_addresses_pass() {
        for ip in ["10.0.3.7", "172.31.255.1", "192.168.1.2", "fd12::5"] {
            assert!(guard(false).check(ip, 3000).is_ok(), "{ip}");
        }
    }

    #[test]
    fn dangerous_addresses_are_refused_whatever_the_ranges() {
        let everything = Guard::new(parse_cidrs("0.0.0.0/0,::/0").unwrap(), true);
        for ip in [
            "169.254.169.254",
            "169.254.170.2",
            "::ffff:169.254.169.254",
            "fe80::1",
            "fd00:ec2::254",
            "0.0.0.0",
            "::",
            "255.255.255.255",
            "224.0.0.1",
            "ff02::1",
        ] {
            assert!(everything.check(ip, 80).is_err(), "{ip}");
        }
    }

    #[test]
    fn public_and_loopback_need_configuration() {
        assert!(matches!(
            guard(true).check("8.8.8.8", 80),
            Err(Refusal::OutsideAllowed(..))
        ));
        assert_eq!(
            guard(false).check("127.0.0.1", 80),
            Err(Refusal::Loopback("127.0.0.1".parse().unwrap()))
        );
        assert!(guard(false).check("::1", 80).is_err());
        assert!(guard(true).check("127.0.0.1", 80).is_ok());
        assert!(guard(true).check("::ffff:127.0.0.1", 80).is_ok());
    }

    #[test]
    fn names_are_not_resolved() {
        for name in [
            "localhost",
            "metadata.google.internal",
            "10.0.0.1.nip.io",
            "",
        ] {
            assert!(matches!(
                guard(true).check(name, 80),
                Err(Refusal::NotAnIp(_))
            ));
        }
    }

    #[test]
    fn own_listeners_are_refused() {
        let mut g = guard(true);
        g.refuse_listener("0.0.0.0:8080".parse().unwrap());
        g.refuse_listener("10.0.0.9:9090".parse().unwrap());
        assert!(matches!(
            g.check("127.0.0.1", 8080),
            Err(Refusal::OwnListener(_))
        ));
        assert!(matches!(
            g.check("10.0.0.9", 9090),
            Err(Refusal::OwnListener(_))
        ));
        // Another container may use the same port as the proxy.
        assert!(g.check("10.0.0.5", 8080).is_ok());
        assert!(g.check("127.0.0.1", 8081).is_ok());
    }

    #[test]
    fn cidr_lists_parse() {
        assert_eq!(parse_cidrs(" 10.1.2.3/8 , 192.168.0.1").unwrap().len(), 2);
        assert_eq!(
            parse_cidrs("10.1.2.3/8").unwrap()[0].to_string(),
            "10.0.0.0/8"
        );
        assert!(parse_cidrs("10.0.0.0/33").is_err());
        assert!(parse_cidrs(" , ").is_err());
    }
}
