//! `cca-agent`: the coding session (`run`) and the PR preview (`preview`) that run in an agent
//! container, or as local processes under `cca up`.

pub mod agent;
pub mod ci;
pub mod cli;
pub mod config;
pub mod control;
pub mod conversation;
pub mod devserver;
pub mod gateway;
pub mod git;
pub mod idle;
pub mod ledger;
pub mod lifecycle;
pub mod preview;
mod push;
pub mod report;
mod run;
pub mod sandbox;
pub mod setup;
