//! A real SQLite session store whose reads are counted and can be made slow, failing, hanging
//! or panicking, and whose `last_activity` writes are counted: for tests of code that must
//! behave under a misbehaving store (the proxy's cache, its activity writes).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cca_domain::session::SessionPatch;
use cca_domain::{ActiveKey, RepoName, Session, SessionId, Status};
use cca_store::{ListFilter, SessionStore, SqliteStore, StoreError, StoreResult};

/// How [`InstrumentedStore::get`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReadMode {
    /// Reads the SQLite store.
    Ok = 0,
    /// Fails as an unreachable store would.
    Fail = 1,
    /// Never answers.
    Hang = 2,
    /// Panics.
    Panic = 3,
}

/// See the module documentation. Every other method passes straight to SQLite.
#[derive(Debug)]
pub struct InstrumentedStore {
    inner: SqliteStore,
    gets: AtomicUsize,
    activity_writes: AtomicUsize,
    mode: AtomicU8,
    latency_ms: AtomicU64,
}

impl InstrumentedStore {
    /// Over a new in-memory SQLite store, reading normally and at once.
    ///
    /// # Panics
    /// When SQLite cannot open a memory database.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: SqliteStore::in_memory().expect("in-memory SQLite store"),
            gets: AtomicUsize::new(0),
            activity_writes: AtomicUsize::new(0),
            mode: AtomicU8::new(ReadMode::Ok as u8),
            latency_ms: AtomicU64::new(0),
        })
    }

    /// Session reads that reached the store (whatever their outcome).
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    /// Updates that wrote `last_activity`.
    pub fn activity_writes(&self) -> usize {
        self.activity_writes.load(Ordering::SeqCst)
    }

    /// How reads answer from now on.
    pub fn set_mode(&self, mode: ReadMode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// A delay before every read answers (widens the window of concurrent misses).
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms.store(
            u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }
}

#[async_trait]
impl SessionStore for InstrumentedStore {
    async fn create(&self, session: &Session) -> StoreResult<()> {
        self.inner.create(session).await
    }

    async fn get(&self, id: &SessionId) -> StoreResult<Option<Session>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let latency = self.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        match self.mode.load(Ordering::SeqCst) {
            m if m == ReadMode::Fail as u8 => {
                Err(StoreError::Backend("get: connection refused".into()))
            }
            m if m == ReadMode::Hang as u8 => std::future::pending().await,
            m if m == ReadMode::Panic as u8 => panic!("test store asked to panic"),
            _ => self.inner.get(id).await,
        }
    }

    async fn transition(
        &self,
        id: &SessionId,
        to: Status,
        patch: SessionPatch,
        now: i64,
    ) -> StoreResult<Session> {
        self.inner.transition(id, to, patch, now).await
    }

    async fn update(&self, id: &SessionId, patch: SessionPatch, now: i64) -> StoreResult<Session> {
        if patch.last_activity.is_some() {
            self.activity_writes.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.update(id, patch, now).await
    }

    async fn touch(&self, id: &SessionId, now: i64) -> StoreResult<()> {
        self.activity_writes.fetch_add(1, Ordering::SeqCst);
        self.inner.touch(id, now).await
    }

    async fn relaunch(
        &self,
        id: &SessionId,
        patch: SessionPatch,
        now: i64,
    ) -> StoreResult<Session> {
        self.inner.relaunch(id, patch, now).await
    }

    async fn by_active_key(&self, key: &ActiveKey) -> StoreResult<Option<Session>> {
        self.inner.by_active_key(key).await
    }

    async fn by_pr(&self, repo: &RepoName, pr_number: u64) -> StoreResult<Vec<Session>> {
        self.inner.by_pr(repo, pr_number).await
    }

    async fn list(&self, filter: &ListFilter) -> StoreResult<Vec<Session>> {
        self.inner.list(filter).await
    }

    async fn record_delivery(&self, delivery_id: &str, now: i64) -> StoreResult<bool> {
        self.inner.record_delivery(delivery_id, now).await
    }

    async fn finish_delivery(&self, delivery_id: &str, now: i64) -> StoreResult<()> {
        self.inner.finish_delivery(delivery_id, now).await
    }

    async fn forget_delivery(&self, delivery_id: &str) -> StoreResult<()> {
        self.inner.forget_delivery(delivery_id).await
    }
}
