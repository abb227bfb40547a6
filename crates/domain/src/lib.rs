//! The domain of Claude Cloud Agent, free of any I/O.
//!
//! Everything here is pure: identifiers normalised in their constructors, the session record and
//! its state machine, the naming rules users and infrastructure depend on, the typed form of the
//! events the webhook accepts, the decision from a verified event to what should happen, and the
//! policy on which recorded addresses the control plane may connect to.
//! Adapters (store, GitHub, JIRA, launchers) live in other crates and depend on this one; this
//! crate depends on none of them, so the rules can be tested exhaustively without a network.

pub mod address;
pub mod adf;
pub mod config;
pub mod contract;
pub mod control;
pub mod decide;
pub mod event;
pub mod ids;
pub mod mask;
pub mod naming;
pub mod session;
pub mod texts;

pub use ids::{BranchName, IdError, JiraKey, Login, RepoName, SessionId};
pub use session::{ActiveKey, ImageChannel, Session, SessionType, Source, Status, now};
