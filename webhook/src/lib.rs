//! `cca-webhook`: GitHub and JIRA webhook intake.
//!
//! bytes → [`verify`] → typed event → [`cca_domain::decide`] → [`act`]. The same [`router`]
//! serves as a Lambda ([`lambda`], which also runs the [`sweep`] on a schedule) and as
//! `cca-webhook serve --listen HOST:PORT`.

pub mod act;
pub mod app;
pub mod config;
pub mod control;
pub mod conversation;
pub mod intake;
pub mod lambda;
pub mod plan;
pub mod reply;
pub mod router;
pub mod serve;
pub mod sweep;
pub mod tokens;
pub mod verify;

pub use app::App;
pub use config::{Config, WebhookArgs};
pub use router::router;

pub use cca_settings::init_logging;
