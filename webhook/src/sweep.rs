//! The settings of the sweeper, which `cca-webhook` runs on an EventBridge scheduled event and
//! `cca sweep` runs on demand, and the sweeper built from the webhook's own dependencies.

use std::time::Duration;

use cca_sweep::{Limits, LoadBalancer, Sweeper};

use crate::App;
use crate::config::ConfigError;

/// The sweeper's settings, as flags and environment variables.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SweeperArgs {
    /// Listener whose per-session rules and target groups, left by the original system, are
    /// swept. Without it they are not looked at.
    #[arg(long, env = "ALB_LISTENER_ARN")]
    pub alb_listener_arn: Option<String>,
    /// Seconds without activity after which an idle session is stopped (the agent's own limit;
    /// the sweeper acts five minutes later). Default 3600.
    #[arg(long, env = "IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<String>,
    /// Seconds since the last heartbeat after which a session counts as dead. Default 180.
    #[arg(long, env = "HEARTBEAT_TIMEOUT_SECS")]
    pub heartbeat_timeout_secs: Option<String>,
}

/// The validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepSettings {
    pub listener_arn: Option<String>,
    pub limits: Limits,
}

impl SweepSettings {
    /// Validates the settings: limits are whole seconds above zero; an empty value is unset.
    pub fn from_args(a: &SweeperArgs) -> Result<Self, ConfigError> {
        Ok(Self {
            listener_arn: set(&a.alb_listener_arn).map(str::to_owned),
            limits: Limits {
                idle_timeout: seconds(
                    &a.idle_timeout_secs,
                    "IDLE_TIMEOUT_SECS",
                    cca_sweep::plan::DEFAULT_IDLE_TIMEOUT,
                )?,
                heartbeat_timeout: seconds(
                    &a.heartbeat_timeout_secs,
                    "HEARTBEAT_TIMEOUT_SECS",
                    cca_sweep::plan::DEFAULT_HEARTBEAT_TIMEOUT,
                )?,
            },
        })
    }
}

/// The value, trimmed, unless it is absent or empty.
fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A limit in whole seconds above zero, or `default` when unset.
fn seconds(
    v: &Option<String>,
    var: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match set(v) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
            _ => Err(ConfigError::Invalid {
                var,
                reason: format!("{v:?} is not a whole number of seconds above 0"),
            }),
        },
    }
}

/// The load balancer listener to sweep, when one is configured, with rules matched against
/// `domain_suffix`.
pub async fn load_balancer(
    listener_arn: Option<&str>,
    domain_suffix: &str,
) -> Option<LoadBalancer> {
    let arn = listener_arn?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    Some(LoadBalancer::new(
        aws_sdk_elasticloadbalancingv2::Client::new(&aws),
        arn,
        domain_suffix,
    ))
}

/// The sweeper of the webhook's store and launcher, telling PRs through its GitHub client.
pub async fn sweeper(app: &App, settings: &SweepSettings) -> Sweeper {
    Sweeper::new(app.store.clone(), app.launcher.clone(), settings.limits)
        .with_github(Some(app.github.clone()))
        .with_load_balancer(
            load_balancer(
                settings.listener_arn.as_deref(),
                app.uat_domain_suffix.suffix(),
            )
            .await,
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listener: &str, idle: &str, heartbeat: &str) -> SweeperArgs {
        SweeperArgs {
            alb_listener_arn: Some(listener.into()),
            idle_timeout_secs: Some(idle.into()),
            heartbeat_timeout_secs: Some(heartbeat.into()),
        }
    }

    #[test]
    fn limits_default_when_unset_or_empty() {
        let unset = SweepSettings::from_args(&SweeperArgs::default()).unwrap();
        assert_eq!(unset.limits, Limits::default());
        assert_eq!(unset.listener_arn, None);
        assert_eq!(SweepSettings::from_args(&args("", "", " ")).unwrap(), unset);
        let s = SweepSettings::from_args(&args("arn:l", "60", " 90 ")).unwrap();
        assert_eq!(s.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.limits.heartbeat_timeout, Duration::from_secs(90));
        assert_eq!(s.listener_arn.as_deref(), Some("arn:l"));
    }

    #[test]
    fn a_bad_limit_names_its_variable() {
        for bad in ["0", "-5", "1h"] {
            let err = SweepSettings::from_args(&args("", "", bad)).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("HEARTBEAT_TIMEOUT_SECS is invalid"),
                "{err}"
            );
            let err = SweepSettings::from_args(&args("", bad, "")).unwrap_err();
            assert!(
                err.to_string().starts_with("IDLE_TIMEOUT_SECS is invalid"),
                "{err}"
            );
        }
    }
}
