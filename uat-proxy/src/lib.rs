//! `cca-uat-proxy`: every preview, agent session or PR preview alike, is reached through one
//! `*.<UAT_DOMAIN_SUFFIX>` listener rule and this proxy, which maps `Host: <id>.<suffix>` to the
//! session's container.
//!
//! A request goes through phases with one context: route (the host names a session), look up
//! (read-through [`cache`]), guard (the address is one the proxy may reach), forward (streamed
//! both ways, upgrades passed through), and log/measure. Pages for sessions that cannot be
//! reached say why, with the right status.

pub mod activity;
pub mod cache;
pub mod config;
pub mod guard;
pub mod metrics;
pub mod pages;
pub mod proxy;
