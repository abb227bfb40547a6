//! Test stand for Claude Cloud Agent.
//!
//! Real parts wherever they run here (moto for AWS, real SQLite, real HTTP), and stateful HTTP
//! fakes only for the services that cannot run here: GitHub and JIRA. Tests point the production
//! clients at these fakes and assert on the fakes' state, not on calls.

pub mod control;
pub mod credential;
pub mod fixtures;
pub mod git;
pub mod github;
pub mod jira;
pub mod model;
pub mod moto;
pub mod probe;
pub mod settings;
pub mod stand;
pub mod store;
