//! The proxy's configuration: environment variables (or the same as flags), loaded once and
//! validated at start-up with an error that names the variable at fault.
//!
//! [`ProxyArgs`] is what the command line and environment hold, as text; [`Config::from_args`]
//! checks it and makes the typed [`Config`]. [`Settings`] is the part the server itself needs,
//! which tests build directly.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::cache::CacheConfig;
use crate::gate::{Access, GateSettings};
use cca_domain::address::{self, Guard};

/// How long a client may take to send a request's headers (slowloris). A browser or the load
/// balancer sends them at once; ten seconds leaves room for a slow mobile link.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client connection may sit idle between requests. Longer than the load balancer's
/// default idle time-out (60 s), as AWS advises, so the load balancer always closes an idle
/// connection first and never sends a request on one the proxy is closing (a 502).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// How long to wait for an app to accept a connection. Inside a VPC a connection takes
/// milliseconds; a container that is gone does not answer at all, and the visitor should see
/// "not answering" soon rather than wait for the load balancer's time-out.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long in-flight requests may finish after SIGTERM. Below ECS's default stop time-out
/// (30 s, after which it kills the task), so the proxy exits on its own having logged what it
/// cut off.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

/// How long an app may take, from the request being sent to it (its body included), to send its
/// answer's head. The load balancer gives up on a silent exchange after its idle time-out (60 s)
/// anyway; a hung app frees the connection.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// Client connections open at once; more are closed as they are accepted.
pub const MAX_CONNECTIONS: usize = 10_000;

/// WebSocket (and other upgraded) tunnels open at once; an upgrade beyond is answered 503.
pub const MAX_TUNNELS: usize = 2_000;

/// How long a tunnel may carry nothing either way before it is closed (dev servers' hot-reload
/// sockets ping well within this).
pub const TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

pub use cca_domain::config::ConfigError;

/// Longest a preview sign-in may be made to last (`PREVIEW_SESSION_HOURS`): a week.
pub const MAX_SESSION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Every setting, as flags and environment variables (text, checked by [`Config::from_args`]).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Domain under which previews are served: `<session>.<suffix>`.
    #[arg(long, env = "UAT_DOMAIN_SUFFIX")]
    pub uat_domain_suffix: Option<String>,
    /// Comma-separated CIDRs the proxy may forward to. Default: 10.0.0.0/8, 172.16.0.0/12,
    /// 192.168.0.0/16, fc00::/7.
    #[arg(long, env = "PROXY_ALLOWED_CIDRS")]
    pub allowed_cidrs: Option<String>,
    /// Also forward to loopback (for `cca up`, where apps run on this machine).
    #[arg(long, env = "PROXY_LOCAL_MODE")]
    pub local_mode: Option<String>,
    /// Send the upstream address as `Host` instead of the visitor's host name.
    #[arg(long, env = "PROXY_REWRITE_HOST")]
    pub rewrite_host: Option<String>,
    /// Milliseconds a found session is served from memory.
    #[arg(long, env = "PROXY_CACHE_TTL_MS")]
    pub cache_ttl_ms: Option<String>,
    /// Milliseconds an unknown session is remembered as unknown.
    #[arg(long, env = "PROXY_NEGATIVE_TTL_MS")]
    pub negative_ttl_ms: Option<String>,
    /// Seconds a cached session may still be served while the store fails.
    #[arg(long, env = "PROXY_STALE_SECS")]
    pub stale_secs: Option<String>,
    /// Address of the Prometheus metrics listener (off when unset).
    #[arg(long, env = "PROXY_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Worker threads, each with its own listener and upstream connections (default: one per
    /// CPU the process may use).
    #[arg(long, env = "PROXY_WORKERS")]
    pub workers: Option<String>,
    /// Seconds a client may take to send request headers.
    #[arg(long, env = "PROXY_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<String>,
    /// Seconds an idle client connection is kept open.
    #[arg(long, env = "PROXY_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<String>,
    /// Milliseconds to wait for an app to accept a connection.
    #[arg(long, env = "PROXY_CONNECT_TIMEOUT_MS")]
    pub connect_timeout_ms: Option<String>,
    /// Seconds in-flight requests may finish after SIGTERM.
    #[arg(long, env = "PROXY_DRAIN_SECS")]
    pub drain_secs: Option<String>,
    /// Seconds an app may take to send its answer's head.
    #[arg(long, env = "PROXY_UPSTREAM_TIMEOUT_SECS")]
    pub upstream_timeout_secs: Option<String>,
    /// Client connections open at once.
    #[arg(long, env = "PROXY_MAX_CONNECTIONS")]
    pub max_connections: Option<String>,
    /// WebSocket tunnels open at once.
    #[arg(long, env = "PROXY_MAX_TUNNELS")]
    pub max_tunnels: Option<String>,
    /// Seconds a tunnel may carry nothing before it is closed.
    #[arg(long, env = "PROXY_TUNNEL_IDLE_SECS")]
    pub tunnel_idle_secs: Option<String>,
    /// Sign-in in front of previews: `github` (the default) or `off` (insecure: anyone who
    /// reaches the proxy sees every preview). Off by default in local mode.
    #[arg(long, env = "PREVIEW_SIGN_IN")]
    pub preview_sign_in: Option<String>,
    /// The GitHub App's client id (sign-in).
    #[arg(long, env = "GITHUB_CLIENT_ID")]
    pub github_client_id: Option<String>,
    /// The GitHub App's client secret (sign-in; cookies are sealed with a key derived from it).
    #[arg(long, env = "GITHUB_CLIENT_SECRET", hide_env_values = true)]
    pub github_client_secret: Option<String>,
    /// A separate secret, at least 32 characters, to seal cookies with.
    #[arg(long, env = "PREVIEW_COOKIE_SECRET", hide_env_values = true)]
    pub preview_cookie_secret: Option<String>,
    /// The repository permission a visitor needs: `read` (default) or `write`.
    #[arg(long, env = "PREVIEW_ACCESS")]
    pub preview_access: Option<String>,
    /// Seconds GitHub's answer on a visitor's access is trusted.
    #[arg(long, env = "PREVIEW_ACCESS_CACHE_SECS")]
    pub preview_access_cache_secs: Option<String>,
    /// Hours a preview sign-in lasts.
    #[arg(long, env = "PREVIEW_SESSION_HOURS")]
    pub preview_session_hours: Option<String>,
    #[command(flatten)]
    pub github_api: GitHubApiArgs,
    /// GitHub's web address, where visitors authorize the App (default `https://github.com`).
    #[arg(long, env = "GITHUB_WEB_URL")]
    pub github_web_url: Option<String>,
}

pub use cca_settings::{GitHubApiArgs, StoreArgs, StoreSpec};

/// What the server needs to run; built by [`Config::from_args`], or directly in tests.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lower case, without leading or trailing dots: a session host is `<id>.<domain_suffix>`.
    pub domain_suffix: String,
    /// Ranges the proxy may forward to (see [`Guard`]).
    pub allowed_cidrs: Vec<IpNet>,
    /// Loopback allowed too (`cca up`).
    pub local_mode: bool,
    /// Send the upstream address as `Host` instead of the visitor's host name (which dev
    /// servers usually want to see, so it is kept by default).
    pub rewrite_host: bool,
    /// Session look-up cache lifetimes.
    pub cache: CacheConfig,
    /// See [`HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// See [`IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`DRAIN_TIMEOUT`].
    pub drain_timeout: Duration,
    /// See [`UPSTREAM_TIMEOUT`].
    pub upstream_timeout: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`MAX_TUNNELS`].
    pub max_tunnels: usize,
    /// See [`TUNNEL_IDLE_TIMEOUT`].
    pub tunnel_idle_timeout: Duration,
    /// See [`crate::activity::ACTIVITY_INTERVAL`].
    pub activity_interval: Duration,
    /// Sign-in with GitHub in front of previews; `None` leaves them open to anyone who reaches
    /// the proxy (local mode's default, or the operator's `PREVIEW_SIGN_IN=off`).
    pub gate: Option<GateSettings>,
}

impl Settings {
    /// Defaults for serving `<id>.<domain_suffix>`.
    pub fn new(domain_suffix: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            domain_suffix: normalise_suffix(domain_suffix)?,
            allowed_cidrs: Guard::default_allowed(),
            local_mode: false,
            rewrite_host: false,
            cache: CacheConfig::default(),
            header_timeout: HEADER_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
            drain_timeout: DRAIN_TIMEOUT,
            upstream_timeout: UPSTREAM_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_tunnels: MAX_TUNNELS,
            tunnel_idle_timeout: TUNNEL_IDLE_TIMEOUT,
            activity_interval: crate::activity::ACTIVITY_INTERVAL,
            gate: None,
        })
    }

    /// The upstream address guard these settings describe.
    pub fn guard(&self) -> Guard {
        Guard::new(self.allowed_cidrs.clone(), self.local_mode)
    }
}

/// The whole configuration of `cca-uat-proxy serve`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where sessions are read (and activity written).
    pub store: StoreSpec,
    /// The metrics listener, off when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// Worker threads serving the listen address (`PROXY_WORKERS`).
    pub workers: usize,
    /// What the server itself needs.
    pub settings: Settings,
}

impl Config {
    /// Checks every setting; the error names the first variable at fault.
    pub fn from_args(args: ProxyArgs) -> Result<Self, ConfigError> {
        let store = args.store.required()?;
        let suffix = args
            .uat_domain_suffix
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .ok_or(ConfigError::Missing {
                var: "UAT_DOMAIN_SUFFIX",
                why: "previews are served at <session>.<UAT_DOMAIN_SUFFIX> (`localhost` locally)",
            })?;
        let mut settings = Settings::new(suffix)?;
        if let Some(text) = non_empty(&args.allowed_cidrs) {
            settings.allowed_cidrs =
                address::parse_cidrs(text).map_err(|reason| ConfigError::Invalid {
                    var: "PROXY_ALLOWED_CIDRS",
                    reason,
                })?;
        }
        if let Some(v) = parse_bool("PROXY_LOCAL_MODE", &args.local_mode)? {
            settings.local_mode = v;
        }
        if let Some(v) = parse_bool("PROXY_REWRITE_HOST", &args.rewrite_host)? {
            settings.rewrite_host = v;
        }
        let millis = Duration::from_millis;
        let secs = Duration::from_secs;
        set(
            &mut settings.cache.positive_ttl,
            "PROXY_CACHE_TTL_MS",
            &args.cache_ttl_ms,
            millis,
        )?;
        set(
            &mut settings.cache.negative_ttl,
            "PROXY_NEGATIVE_TTL_MS",
            &args.negative_ttl_ms,
            millis,
        )?;
        set(
            &mut settings.cache.stale_for,
            "PROXY_STALE_SECS",
            &args.stale_secs,
            secs,
        )?;
        set(
            &mut settings.header_timeout,
            "PROXY_HEADER_TIMEOUT_SECS",
            &args.header_timeout_secs,
            secs,
        )?;
        set(
            &mut settings.idle_timeout,
            "PROXY_IDLE_TIMEOUT_SECS",
            &args.idle_timeout_secs,
            secs,
        )?;
        set(
            &mut settings.connect_timeout,
            "PROXY_CONNECT_TIMEOUT_MS",
            &args.connect_timeout_ms,
            millis,
        )?;
        set(
            &mut settings.drain_timeout,
            "PROXY_DRAIN_SECS",
            &args.drain_secs,
            secs,
        )?;
        set(
            &mut settings.upstream_timeout,
            "PROXY_UPSTREAM_TIMEOUT_SECS",
            &args.upstream_timeout_secs,
            secs,
        )?;
        set(
            &mut settings.tunnel_idle_timeout,
            "PROXY_TUNNEL_IDLE_SECS",
            &args.tunnel_idle_secs,
            secs,
        )?;
        for (var, value, text) in [
            (
                "PROXY_MAX_CONNECTIONS",
                &mut settings.max_connections,
                &args.max_connections,
            ),
            (
                "PROXY_MAX_TUNNELS",
                &mut settings.max_tunnels,
                &args.max_tunnels,
            ),
        ] {
            if let Some(t) = non_empty(text) {
                *value = t.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ConfigError::Invalid {
                        var,
                        reason: format!("{t:?} is not a whole number above 0"),
                    }
                })?;
            }
        }
        for (var, value) in [
            ("PROXY_HEADER_TIMEOUT_SECS", settings.header_timeout),
            ("PROXY_IDLE_TIMEOUT_SECS", settings.idle_timeout),
            ("PROXY_CONNECT_TIMEOUT_MS", settings.connect_timeout),
            ("PROXY_UPSTREAM_TIMEOUT_SECS", settings.upstream_timeout),
            ("PROXY_TUNNEL_IDLE_SECS", settings.tunnel_idle_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Invalid {
                    var,
                    reason: "must be more than 0".into(),
                });
            }
        }
        settings.gate = gate_settings(&args, settings.local_mode)?;
        let metrics_listen = non_empty(&args.metrics_listen)
            .map(|text| {
                text.parse::<SocketAddr>()
                    .map_err(|_| ConfigError::Invalid {
                        var: "PROXY_METRICS_LISTEN",
                        reason: format!("{text:?} is not HOST:PORT (an IP address and a port)"),
                    })
            })
            .transpose()?;
        let workers = match non_empty(&args.workers) {
            None => std::thread::available_parallelism().map_or(1, usize::from),
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=256).contains(&n) => n,
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "PROXY_WORKERS",
                        reason: format!("{text:?} is not a whole number from 1 to 256"),
                    });
                }
            },
        };
        Ok(Self {
            store,
            metrics_listen,
            workers,
            settings,
        })
    }
}

/// The gate's settings, or `None` when sign-in is off. Deny by default: outside local mode a
/// proxy without the App's client id and secret does not start unless `PREVIEW_SIGN_IN=off`.
fn gate_settings(args: &ProxyArgs, local_mode: bool) -> Result<Option<GateSettings>, ConfigError> {
    let on = match non_empty(&args.preview_sign_in).map(str::to_ascii_lowercase) {
        None => !local_mode,
        Some(v) if v == "github" => true,
        Some(v) if v == "off" => false,
        Some(v) => {
            return Err(ConfigError::Invalid {
                var: "PREVIEW_SIGN_IN",
                reason: format!("{v:?} is neither github nor off"),
            });
        }
    };
    if !on {
        return Ok(None);
    }
    let client_id = non_empty(&args.github_client_id).ok_or(ConfigError::Missing {
        var: "GITHUB_CLIENT_ID",
        why: "previews need sign-in with GitHub: set the App's client id and secret, or \
              PREVIEW_SIGN_IN=off to open every preview to anyone (insecure)",
    })?;
    let client_secret = non_empty(&args.github_client_secret).ok_or(ConfigError::Missing {
        var: "GITHUB_CLIENT_SECRET",
        why: "previews need sign-in with GitHub: set the App's client secret",
    })?;
    let mut gate = GateSettings::new(client_id, client_secret);
    gate.secure = !local_mode;
    if let Some(secret) = non_empty(&args.preview_cookie_secret) {
        if secret.len() < 32 {
            return Err(ConfigError::Invalid {
                var: "PREVIEW_COOKIE_SECRET",
                reason: "must be at least 32 characters".into(),
            });
        }
        gate.cookie_secret = Some(secret.to_owned());
    }
    if let Some(text) = non_empty(&args.preview_access) {
        gate.access = text
            .parse::<Access>()
            .map_err(|reason| ConfigError::Invalid {
                var: "PREVIEW_ACCESS",
                reason,
            })?;
    }
    set(
        &mut gate.access_ttl,
        "PREVIEW_ACCESS_CACHE_SECS",
        &args.preview_access_cache_secs,
        Duration::from_secs,
    )?;
    set(
        &mut gate.session_ttl,
        "PREVIEW_SESSION_HOURS",
        &args.preview_session_hours,
        |h| Duration::from_secs(h.saturating_mul(3600)),
    )?;
    if gate.session_ttl.is_zero() || gate.session_ttl > MAX_SESSION {
        return Err(ConfigError::Invalid {
            var: "PREVIEW_SESSION_HOURS",
            reason: format!("must be from 1 to {}", MAX_SESSION.as_secs() / 3600),
        });
    }
    let web_given = non_empty(&args.github_web_url).is_some();
    for (var, value, target) in [
        (
            "GITHUB_API_URL",
            &args.github_api.github_api_url,
            &mut gate.api_url,
        ),
        ("GITHUB_WEB_URL", &args.github_web_url, &mut gate.web_url),
    ] {
        if let Some(text) = non_empty(value) {
            if !(text.starts_with("https://") || text.starts_with("http://")) {
                return Err(ConfigError::Invalid {
                    var,
                    reason: format!("{text:?} is not an http(s) URL"),
                });
            }
            *target = text.trim_end_matches('/').to_owned();
        }
    }
    if !web_given {
        gate.web_url = cca_domain::naming::github_web_url(None, Some(&gate.api_url));
    }
    Ok(Some(gate))
}

/// `preview.example.com`, `.preview.example.com` and `*.Preview.Example.com.` all name the same
/// suffix.
fn normalise_suffix(text: &str) -> Result<String, ConfigError> {
    let s = text
        .trim()
        .trim_start_matches("*.")
        .trim_matches('.')
        .to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if s.is_empty() || !s.split('.').all(label_ok) {
        return Err(ConfigError::Invalid {
            var: "UAT_DOMAIN_SUFFIX",
            reason: format!("{text:?} is not a domain name such as preview.example.com"),
        });
    }
    Ok(s)
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn parse_bool(var: &'static str, value: &Option<String>) -> Result<Option<bool>, ConfigError> {
    let Some(text) = non_empty(value) else {
        return Ok(None);
    };
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(Some(true)),
        "0" | "false" | "no" | "off" => Ok(Some(false)),
        _ => Err(ConfigError::Invalid {
            var,
            reason: format!("{text:?} is not true or false"),
        }),
    }
}

fn set(
    target: &mut Duration,
    var: &'static str,
    value: &Option<String>,
    unit: fn(u64) -> Duration,
) -> Result<(), ConfigError> {
    if let Some(text) = non_empty(value) {
        let n: u64 = text.parse().map_err(|_| ConfigError::Invalid {
            var,
            reason: format!("{text:?} is not a whole number"),
        })?;
        *target = unit(n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ProxyArgs {
        ProxyArgs {
            store: StoreArgs {
                session_store: Some("sqlite:/tmp/s.db".into()),
                ..StoreArgs::default()
            },
            uat_domain_suffix: Some("*.Preview.Example.com.".into()),
            github_client_id: Some("Iv1.abc".into()),
            github_client_secret: Some("client-secret".into()),
            ..ProxyArgs::default()
        }
    }

    #[test]
    fn sign_in_is_on_unless_turned_off_or_local() {
        let gate = Config::from_args(args()).unwrap().settings.gate.unwrap();
        assert!(gate.secure);
        assert_eq!(gate.access, Access::Read);
        assert_eq!(gate.api_url, "https://api.github.com");
        let missing = Config::from_args(ProxyArgs {
            github_client_id: None,
            ..args()
        })
        .unwrap_err()
        .to_string();
        assert!(
            missing.starts_with("GITHUB_CLIENT_ID is not set"),
            "{missing}"
        );
        let off = Config::from_args(ProxyArgs {
            github_client_id: None,
            github_client_secret: None,
            preview_sign_in: Some("off".into()),
            ..args()
        })
        .unwrap();
        assert!(off.settings.gate.is_none());
        let local = Config::from_args(ProxyArgs {
            github_client_id: None,
            local_mode: Some("true".into()),
            ..args()
        })
        .unwrap();
        assert!(local.settings.gate.is_none());
        let local_on = Config::from_args(ProxyArgs {
            local_mode: Some("true".into()),
            preview_sign_in: Some("github".into()),
            preview_access: Some("write".into()),
            ..args()
        })
        .unwrap()
        .settings
        .gate
        .unwrap();
        assert!(!local_on.secure, "local mode is plain HTTP");
        let web_url_of = |api| cca_domain::naming::github_web_url(None, Some(api));
        assert_eq!(web_url_of("https://api.github.com"), "https://github.com");
        assert_eq!(
            web_url_of("https://ghe.example/api/v3"),
            "https://ghe.example"
        );
        assert_eq!(web_url_of("http://127.0.0.1:9"), "http://127.0.0.1:9");
        assert_eq!(local_on.access, Access::Write);
        for (args, var) in [
            (
                ProxyArgs {
                    preview_sign_in: Some("maybe".into()),
                    ..args()
                },
                "PREVIEW_SIGN_IN is invalid",
            ),
            (
                ProxyArgs {
                    preview_access: Some("admin".into()),
                    ..args()
                },
                "PREVIEW_ACCESS is invalid",
            ),
            (
                ProxyArgs {
                    preview_cookie_secret: Some("short".into()),
                    ..args()
                },
                "PREVIEW_COOKIE_SECRET is invalid",
            ),
        ] {
            let err = Config::from_args(args).unwrap_err().to_string();
            assert!(err.starts_with(var), "{err}");
        }
    }

    #[test]
    fn defaults() {
        let config = Config::from_args(args()).unwrap();
        assert_eq!(config.settings.domain_suffix, "preview.example.com");
        assert_eq!(config.store.to_string(), "sqlite:/tmp/s.db");
        assert!(!config.settings.local_mode);
        assert_eq!(config.settings.allowed_cidrs.len(), 4);
        assert_eq!(config.metrics_listen, None);
    }

    #[test]
    fn sessions_table_alone_means_dynamodb() {
        let config = Config::from_args(ProxyArgs {
            store: StoreArgs {
                sessions_table: Some("sessions".into()),
                ..StoreArgs::default()
            },
            ..args()
        })
        .unwrap();
        assert_eq!(
            config.store,
            StoreSpec::Dynamo {
                table: "sessions".into()
            }
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: [(ProxyArgs, &str); 7] = [
            (
                ProxyArgs {
                    uat_domain_suffix: None,
                    ..args()
                },
                "UAT_DOMAIN_SUFFIX is not set",
            ),
            (
                ProxyArgs {
                    store: StoreArgs::default(),
                    ..args()
                },
                "SESSION_STORE is not set",
            ),
            (
                ProxyArgs {
                    store: StoreArgs {
                        session_store: Some("redis:x".into()),
                        ..StoreArgs::default()
                    },
                    ..args()
                },
                "SESSION_STORE is invalid",
            ),
            (
                ProxyArgs {
                    allowed_cidrs: Some("10.0.0.0/99".into()),
                    ..args()
                },
                "PROXY_ALLOWED_CIDRS is invalid",
            ),
            (
                ProxyArgs {
                    local_mode: Some("maybe".into()),
                    ..args()
                },
                "PROXY_LOCAL_MODE is invalid",
            ),
            (
                ProxyArgs {
                    cache_ttl_ms: Some("-1".into()),
                    ..args()
                },
                "PROXY_CACHE_TTL_MS is invalid",
            ),
            (
                ProxyArgs {
                    metrics_listen: Some("localhost:9".into()),
                    ..args()
                },
                "PROXY_METRICS_LISTEN is invalid",
            ),
        ];
        for (args, expected) in cases {
            let err = Config::from_args(args).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err}");
        }
        assert!(Settings::new("bad_suffix.com").is_err());
    }

    #[test]
    fn values_are_read() {
        let config = Config::from_args(ProxyArgs {
            local_mode: Some("true".into()),
            rewrite_host: Some("1".into()),
            cache_ttl_ms: Some("250".into()),
            stale_secs: Some("60".into()),
            metrics_listen: Some("127.0.0.1:9100".into()),
            allowed_cidrs: Some("10.1.0.0/16".into()),
            ..args()
        })
        .unwrap();
        let s = &config.settings;
        assert!(s.local_mode && s.rewrite_host);
        assert_eq!(s.cache.positive_ttl, Duration::from_millis(250));
        assert_eq!(s.cache.stale_for, Duration::from_secs(60));
        assert_eq!(s.allowed_cidrs.len(), 1);
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9100".parse().unwrap())
        );
    }
}
