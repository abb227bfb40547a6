//! `cca-webhook`: GitHub and JIRA webhook intake.
//!
//! bytes → [`verify`] → typed event → [`cca_domain::decide`] → [`act`]. The same [`router`]
//! serves as a Lambda ([`lambda`], which also runs the [`sweep`] on a schedule) and as
//! `cca-webhook serve --listen HOST:PORT`.

pub mod act;
pub mod app;
pub mod config;
pub mod control;
pub mod intake;
pub mod lambda;
pub mod reply;
pub mod router;
pub mod serve;
pub mod sweep;
pub mod tokens;
pub mod verify;

pub use app::App;
pub use config::{Config, WebhookArgs};
pub use router::router;

/// Logs as JSON (for CloudWatch) or readable lines (for a terminal), filtered by `RUST_LOG`.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests, embedded use) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
