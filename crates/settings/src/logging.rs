//! Every binary's logger.

use std::io::IsTerminal as _;

/// The filter when `RUST_LOG` is unset: the product at `info`, the SDKs' chatter at `warn`.
pub const DEFAULT_FILTER: &str = "info,aws_config=warn,aws_smithy_runtime=warn,hyper=warn";

/// Logs to stderr: JSON lines when `json` (CloudWatch), readable text otherwise, coloured only
/// on a terminal (an agent's log file gets none); the level from `RUST_LOG`, else
/// [`DEFAULT_FILTER`]. A second call (tests, embedded use) keeps the first subscriber.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!json && std::io::stderr().is_terminal());
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
