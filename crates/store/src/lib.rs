//! The session store: one interface, two implementations.
//!
//! [`DynamoStore`] keeps sessions in the DynamoDB table of the deployed system (keyed by
//! `session_id`, GSI `pr-index`); [`SqliteStore`] keeps the same fields in an embedded SQLite
//! file for `cca up`. Both enforce the rules that must hold under concurrent writers inside the
//! store itself, with conditional writes rather than a read followed by a write:
//! - a status change is applied only from a status that may precede it ([`Status::allowed_predecessors`]);
//! - at most one session is active per [`ActiveKey`] (one agent per issue, one preview per PR);
//! - a webhook delivery id is recorded once.
//!
//! The active key of a session is derived from its stored record ([`Session::active_key`]); a
//! preview's `pr_number` is part of its key, so it is set at creation and not patched later.
//!
//! The conformance suite in `tests/conformance.rs` runs the same scenarios against both.

mod dynamo;
mod record;
mod spec;
mod sqlite;

use async_trait::async_trait;
use cca_domain::session::SessionPatch;
use cca_domain::{ActiveKey, RepoName, Session, SessionId, Status};

pub use dynamo::DynamoStore;
pub use spec::{InvalidStoreSpec, StoreSpec};
pub use sqlite::SqliteStore;

/// Seconds a delivery id is remembered: GitHub redelivers for up to 3 days, so 3 days plus a day
/// of margin.
pub const DELIVERY_TTL_SECS: i64 = 4 * 24 * 3600;

/// Seconds a delivery id is held while its delivery is being handled, before
/// [`SessionStore::finish_delivery`] keeps it for [`DELIVERY_TTL_SECS`]: longer than any
/// handling may take (a Lambda invocation lasts 15 minutes at most), so that a process that died
/// between recording a delivery and doing its work does not make GitHub's redelivery a
/// `duplicate` forever.
pub const DELIVERY_LEASE_SECS: i64 = 15 * 60;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another session is already active for this key (one agent per issue, one preview per PR).
    #[error("an active session already exists for {key}: {existing}")]
    ActiveExists { key: String, existing: SessionId },
    /// A session with this id exists already.
    #[error("session {0} exists already")]
    IdTaken(SessionId),
    /// No session has this id.
    #[error("session {0} not found")]
    NotFound(SessionId),
    /// The session is not in a status from which the change is allowed.
    #[error("session {id} cannot move to {to}: it is {from}")]
    IllegalTransition {
        id: SessionId,
        from: Status,
        to: Status,
    },
    /// The backing service failed (network, throttling, a corrupt row), or a value cannot be
    /// stored (a cost that is not finite). The message names the operation, and for a corrupt
    /// record the session and field.
    #[error("session store backend failed: {0}")]
    Backend(String),
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// Which sessions to list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only these statuses (all when empty).
    pub statuses: Vec<Status>,
    /// At most this many (all when `None`).
    pub limit: Option<usize>,
}

/// Sessions, wherever they are kept. See the crate documentation for the guarantees.
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// Stores a new session (status must be `PROVISIONING`, else
    /// [`StoreError::IllegalTransition`]) and claims its active key, both or neither.
    /// Fails with [`StoreError::ActiveExists`] when a session holds the key and has not ended,
    /// and [`StoreError::IdTaken`] when the id exists; when both hold, `ActiveExists` is the one
    /// reported, since it names the session to deal with.
    async fn create(&self, session: &Session) -> StoreResult<()>;

    /// The session with this id.
    async fn get(&self, id: &SessionId) -> StoreResult<Option<Session>>;

    /// Moves a session to `to` and writes `patch` and `updated_at`, only if its current status
    /// may precede `to` (else [`StoreError::IllegalTransition`] with the current status, or
    /// [`StoreError::NotFound`]). Reaching a terminal status sets `ttl` to now + 7 days and, in
    /// the same write, releases the active key if this session holds it.
    /// Returns the record as written.
    async fn transition(
        &self,
        id: &SessionId,
        to: Status,
        patch: SessionPatch,
        now: i64,
    ) -> StoreResult<Session>;

    /// Writes `patch` without changing the status (address, cost, activity…). Refused with
    /// [`StoreError::IllegalTransition`] (from = to = current) once the session has ended, so a
    /// late heartbeat cannot revive a record.
    async fn update(&self, id: &SessionId, patch: SessionPatch, now: i64) -> StoreResult<Session>;

    /// Records activity: sets `last_activity` and `updated_at` to `now`, refused like
    /// [`SessionStore::update`] once the session has ended or when it does not exist. The one
    /// write the proxy makes. In DynamoDB it names no attribute but `session_id`, `status`,
    /// `last_activity` and `updated_at` and asks for nothing back (IAM's `dynamodb:Attributes`
    /// refuses a write that returns attributes outside its list), so the proxy's role can be
    /// held to those attributes.
    async fn touch(&self, id: &SessionId, now: i64) -> StoreResult<()> {
        let patch = SessionPatch {
            last_activity: Some(now),
            ..SessionPatch::default()
        };
        self.update(id, patch, now).await.map(|_| ())
    }

    /// Starts an ended session again on the same id, branch and PR: `STOPPED | COMPLETED |
    /// FAILED → PROVISIONING`, clearing `task_arn`, `container_ip`, `error` and `ttl`, writing
    /// `patch` (which wins over the clearing), and claiming the active key again: it fails with
    /// `ActiveExists` when another session holds the key, and with `IllegalTransition` (to
    /// `PROVISIONING`) when the session has not ended.
    async fn relaunch(&self, id: &SessionId, patch: SessionPatch, now: i64)
    -> StoreResult<Session>;

    /// The session holding or last holding `key`, active or not (newest claim wins).
    async fn by_active_key(&self, key: &ActiveKey) -> StoreResult<Option<Session>>;

    /// Sessions of a PR through `pr-index`, newest `created_at` first (ties by id). DynamoDB
    /// index reads are eventually consistent, so a session created a moment ago may be missing.
    async fn by_pr(&self, repo: &RepoName, pr_number: u64) -> StoreResult<Vec<Session>>;

    /// Sessions matching `filter`, newest `created_at` first (ties by id).
    async fn list(&self, filter: &ListFilter) -> StoreResult<Vec<Session>>;

    /// Records a webhook delivery id as being handled; `true` the first time, `false` for a
    /// redelivery. Held for [`DELIVERY_LEASE_SECS`] (from `now` + that many seconds on, the id
    /// may be recorded again, as after a crash mid-delivery) until
    /// [`SessionStore::finish_delivery`] keeps it for [`DELIVERY_TTL_SECS`].
    async fn record_delivery(&self, delivery_id: &str, now: i64) -> StoreResult<bool>;

    /// Marks a recorded delivery as handled: its id is kept for [`DELIVERY_TTL_SECS`] from
    /// `now`. An unknown id (forgotten, or never recorded) is left unknown.
    async fn finish_delivery(&self, delivery_id: &str, now: i64) -> StoreResult<()>;

    /// Forgets a recorded delivery, so a redelivery of work that failed is handled again.
    /// Forgetting an unknown id is not an error.
    async fn forget_delivery(&self, delivery_id: &str) -> StoreResult<()>;
}
