//! `cca-uat-proxy`: every preview, agent session or PR preview alike, is reached through one
//! `*.<UAT_DOMAIN_SUFFIX>` listener rule and this proxy, which maps `Host: <id>.<suffix>` to the
//! session's container.
//!
//! A request goes through phases with one context ([`proxy`]): route (the host names a
//! session), look up (read-through [`cache`]), admit (sign-in with GitHub, [`gate`]), decide (the session's state, and the address
//! policy of [`cca_domain::address`], shared with the webhook, on its address), forward (streamed both ways, upgrades passed through), and count
//! ([`metrics`], [`activity`]). Sessions that cannot be reached get a [`pages`] entry saying
//! why, with the right status. [`config`] reads the settings; the binary only wires.

pub mod activity;
pub mod cache;
pub mod config;
mod conn;
pub mod gate;
pub mod metrics;
pub mod pages;
pub mod proxy;
pub mod seal;

pub use config::{Config, ProxyArgs, Settings, StoreSpec};
pub use proxy::Proxy;

pub use cca_settings::init_logging;
