//! Read-through cache of session records, keyed by session id.
//!
//! Every proxied request needs its session, and a page load makes dozens of requests, so records
//! are kept in memory for a short time: found sessions for [`CacheConfig::positive_ttl`], unknown
//! ids for [`CacheConfig::negative_ttl`] (so a flood of made-up host names reaches the store at
//! most once per id and lifetime).
//!
//! Concurrent misses for one id make one store read: the first registers an in-flight read and
//! the others wait for its answer. The read runs in a task of its own, so a request dropped
//! mid-read leaves nobody waiting, and it is bounded by [`STORE_READ_TIMEOUT`].
//!
//! When the store fails, an entry read less than [`CacheConfig::stale_for`] ago is served
//! instead, so a store outage does not take down previews that were in use. While the store keeps
//! failing, such an entry is answered at once and read again in the background at most every
//! [`RETRY_AFTER_FAILURE`], so a hanging store delays only the request that found it hanging.
//!
//! Memory is bounded by [`CacheConfig::max_entries`]: expired entries go first, then the oldest.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cca_domain::{Session, SessionId};
use cca_store::SessionStore;
use tokio::sync::watch;

/// Longest a store read may take before it counts as a failure. A healthy store (DynamoDB
/// `GetItem`, SQLite) answers in milliseconds, so two seconds means it is not answering, and it
/// is also the longest a request waits on a hanging store before getting a stale entry or an
/// error page.
pub const STORE_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// While the store fails, how often an id whose stale entry is being served is read again (in
/// the background). Once a second per id is no load for a recovering store, and a recovered store
/// is noticed within a second.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// How long entries live and how many there may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long a found session is answered from memory. Default 5 s: a status change or a new
    /// container address reaches the proxy within that time, while a page load's burst of
    /// requests costs one store read.
    pub positive_ttl: Duration,
    /// How long an unknown id is answered as missing from memory. Default 2 s: shorter than
    /// `positive_ttl`, since a session just created should become reachable quickly, and long
    /// enough that a flood of requests for unknown hosts costs one read per id every 2 s.
    pub negative_ttl: Duration,
    /// How long after its last successful read an entry may still be served while the store
    /// fails. Default 5 minutes: rides out a store outage of that length for previews in use,
    /// while a session stopped meanwhile is not shown as running for longer than that.
    pub stale_for: Duration,
    /// Most entries kept; 0 keeps none. Default 10 000: far more than the sessions live at once,
    /// and at a few kilobytes a record, tens of megabytes at most.
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            positive_ttl: Duration::from_secs(5),
            negative_ttl: Duration::from_secs(2),
            stale_for: Duration::from_secs(5 * 60),
            max_entries: 10_000,
        }
    }
}

/// The answer to a lookup.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The session, fresh or, while the store fails, from a stale entry.
    Found(Arc<Session>),
    /// No session has this id.
    Missing,
    /// The store failed and no usable entry exists; the reason is for the log, not for users.
    Unavailable(String),
}

/// Counters since the cache was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from a fresh entry.
    pub hits: u64,
    /// Lookups that found no fresh entry and read the store.
    pub misses: u64,
    /// Lookups answered from an expired entry because the store failed.
    pub stale_served: u64,
    /// Store reads that failed or timed out.
    pub store_errors: u64,
    /// Lookups that waited for a read another lookup had started instead of reading themselves.
    pub coalesced: u64,
}

/// Read-through cache of session records. Cheap to clone: clones share one cache.
#[derive(Clone)]
pub struct SessionCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the records: they are many, and hold prompts.
        f.debug_struct("SessionCache")
            .field("config", &self.inner.config)
            .field("entries", &self.inner.state().entries.len())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl SessionCache {
    /// A cache in front of `store`.
    pub fn new(store: Arc<dyn SessionStore>, config: CacheConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                state: Mutex::new(State::default()),
                counters: Counters::default(),
            }),
        }
    }

    /// The session with this id, from memory when fresh, else from the store (one read however
    /// many lookups for the id arrive meanwhile).
    pub async fn lookup(&self, id: &SessionId) -> Lookup {
        let mut pending = match self.inner.plan(id, Instant::now()) {
            Plan::Done(lookup) => return lookup,
            Plan::Wait(pending) => pending,
        };
        // The sender is dropped without an answer only if the read task died (a panicking store
        // or a runtime shutting down); the read guard has then cleared the in-flight slot.
        let answer = pending
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|answer| answer.clone());
        match answer {
            Some(Answer { lookup, stale }) => {
                if stale {
                    self.inner.counters.stale_served.bump();
                }
                lookup
            }
            None => Lookup::Unavailable("the session store read ended without an answer".into()),
        }
    }

    /// Counters since the cache was made.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        CacheStats {
            hits: c.hits.get(),
            misses: c.misses.get(),
            stale_served: c.stale_served.get(),
            store_errors: c.store_errors.get(),
            coalesced: c.coalesced.get(),
        }
    }

    /// Forgets the entry for `id`, so the next lookup reads the store. A read already under way
    /// still answers the lookups waiting for it, but its result is not kept.
    pub fn invalidate(&self, id: &SessionId) {
        let mut state = self.inner.state();
        state.remove(id);
        state.in_flight.remove(id);
    }
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn SessionStore>,
    config: CacheConfig,
    /// Never held across an await.
    state: Mutex<State>,
    counters: Counters,
}

/// What a lookup does next, decided under the lock.
enum Plan {
    Done(Lookup),
    Wait(watch::Receiver<Option<Answer>>),
}

/// The result of one store read, shared by every lookup that waited for it.
#[derive(Debug, Clone)]
struct Answer {
    lookup: Lookup,
    /// Served from an expired entry because the store failed.
    stale: bool,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state is consistent between statements, so a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ttl(&self, kind: Kind) -> Duration {
        match kind {
            Kind::Found => self.config.positive_ttl,
            Kind::Missing => self.config.negative_ttl,
        }
    }

    /// Answers from memory, joins the read under way, or starts one.
    fn plan(self: &Arc<Self>, id: &SessionId, now: Instant) -> Plan {
        let mut state = self.state();
        if let Some(entry) = state.entries.get(id) {
            let age = now.saturating_duration_since(entry.stored_at);
            if age < self.ttl(entry.kind()) {
                self.counters.hits.bump();
                return Plan::Done(entry.lookup());
            }
            if let Some(failed_at) = entry.failed_at.filter(|_| age < self.config.stale_for) {
                // The store failed at the last read: answer at once rather than wait for it to
                // fail again, and try it again now and then.
                let lookup = entry.lookup();
                self.counters.stale_served.bump();
                let retry = now.saturating_duration_since(failed_at) >= RETRY_AFTER_FAILURE;
                if retry && !state.in_flight.contains_key(id) {
                    self.counters.misses.bump();
                    self.start_read(&mut state, id);
                }
                return Plan::Done(lookup);
            }
        }
        if let Some(flight) = state.in_flight.get(id) {
            self.counters.coalesced.bump();
            return Plan::Wait(flight.answer.clone());
        }
        self.counters.misses.bump();
        Plan::Wait(self.start_read(&mut state, id))
    }

    /// Registers a read of `id` and starts it in a task of its own.
    fn start_read(
        self: &Arc<Self>,
        state: &mut State,
        id: &SessionId,
    ) -> watch::Receiver<Option<Answer>> {
        let read = state.next_seq();
        let (tx, rx) = watch::channel(None);
        state.in_flight.insert(
            id.clone(),
            InFlight {
                read,
                answer: rx.clone(),
            },
        );
        let read = Read {
            inner: Arc::clone(self),
            id: id.clone(),
            read,
            tx: Some(tx),
        };
        tokio::spawn(read.run());
        rx
    }

    /// Records the result of read `read` of `id` (unless the id was invalidated meanwhile) and
    /// turns it into the answer for the lookups that waited.
    fn settle(
        &self,
        id: &SessionId,
        read: u64,
        result: Result<Option<Session>, String>,
        now: Instant,
    ) -> Answer {
        let mut state = self.state();
        let current = state.in_flight.get(id).is_some_and(|f| f.read == read);
        if current {
            state.in_flight.remove(id);
        }
        let reason = match result {
            Ok(found) => {
                let value = found.map(Arc::new);
                if current {
                    state.insert(id, value.clone(), now, self);
                }
                let lookup = match value {
                    Some(session) => Lookup::Found(session),
                    None => Lookup::Missing,
                };
                return Answer {
                    lookup,
                    stale: false,
                };
            }
            Err(reason) => reason,
        };
        let stale_for = self.config.stale_for;
        match state.entries.get_mut(id) {
            Some(entry) if now.saturating_duration_since(entry.stored_at) < stale_for => {
                if current {
                    entry.failed_at = Some(now);
                }
                Answer {
                    lookup: entry.lookup(),
                    stale: true,
                }
            }
            entry => {
                if entry.is_some() {
                    // Too old to serve ever again.
                    state.remove(id);
                }
                Answer {
                    lookup: Lookup::Unavailable(reason),
                    stale: false,
                }
            }
        }
    }
}

/// One store read, run in its own task. Dropped without an answer (a panicking store, a runtime
/// shutting down), it clears its in-flight slot so later lookups read again.
struct Read {
    inner: Arc<Inner>,
    id: SessionId,
    read: u64,
    tx: Option<watch::Sender<Option<Answer>>>,
}

impl Read {
    async fn run(mut self) {
        let result = tokio::time::timeout(STORE_READ_TIMEOUT, self.inner.store.get(&self.id)).await;
        let result = match result {
            Ok(read) => read.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "the session store did not answer within {STORE_READ_TIMEOUT:?}"
            )),
        };
        if let Err(reason) = &result {
            self.inner.counters.store_errors.bump();
            tracing::warn!(session_id = %self.id, %reason, "session store read failed");
        }
        let answer = self
            .inner
            .settle(&self.id, self.read, result, Instant::now());
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(answer));
        }
    }
}

impl Drop for Read {
    fn drop(&mut self) {
        if self.tx.is_some() {
            let mut state = self.inner.state();
            if state
                .in_flight
                .get(&self.id)
                .is_some_and(|f| f.read == self.read)
            {
                state.in_flight.remove(&self.id);
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<SessionId, Entry>,
    /// Found entries by age, oldest first, keyed `(stored_at, seq)`.
    found_by_age: BTreeMap<(Instant, u64), SessionId>,
    /// Missing entries by age, oldest first.
    missing_by_age: BTreeMap<(Instant, u64), SessionId>,
    in_flight: HashMap<SessionId, InFlight>,
    /// Source of entry and read numbers.
    seq: u64,
}

#[derive(Debug)]
struct InFlight {
    /// Which read, so a read detached by `invalidate` does not clear or fill a newer one's slot.
    read: u64,
    answer: watch::Receiver<Option<Answer>>,
}

#[derive(Debug)]
struct Entry {
    /// `None`: no session has this id.
    value: Option<Arc<Session>>,
    /// When the store last answered for this id.
    stored_at: Instant,
    seq: u64,
    /// When the last read failed, if it did (and none has succeeded since).
    failed_at: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Found,
    Missing,
}

impl Entry {
    fn kind(&self) -> Kind {
        if self.value.is_some() {
            Kind::Found
        } else {
            Kind::Missing
        }
    }

    fn lookup(&self) -> Lookup {
        match &self.value {
            Some(session) => Lookup::Found(Arc::clone(session)),
            None => Lookup::Missing,
        }
    }
}

impl State {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn by_age(&mut self, kind: Kind) -> &mut BTreeMap<(Instant, u64), SessionId> {
        match kind {
            Kind::Found => &mut self.found_by_age,
            Kind::Missing => &mut self.missing_by_age,
        }
    }

    fn remove(&mut self, id: &SessionId) {
        if let Some(entry) = self.entries.remove(id) {
            self.by_age(entry.kind())
                .remove(&(entry.stored_at, entry.seq));
        }
    }

    /// Stores a fresh entry, making room first if the cache is full.
    fn insert(&mut self, id: &SessionId, value: Option<Arc<Session>>, now: Instant, inner: &Inner) {
        self.remove(id);
        if inner.config.max_entries == 0 {
            return;
        }
        while self.entries.len() >= inner.config.max_entries && self.evict_one(now, inner) {}
        let seq = self.next_seq();
        let entry = Entry {
            value,
            stored_at: now,
            seq,
            failed_at: None,
        };
        self.by_age(entry.kind()).insert((now, seq), id.clone());
        self.entries.insert(id.clone(), entry);
    }

    /// Drops the oldest expired entry, or if none has expired, the oldest. `false` when empty.
    fn evict_one(&mut self, now: Instant, inner: &Inner) -> bool {
        // Within each kind the oldest entry is the first to expire, so the two heads decide.
        let heads = [
            (Kind::Found, self.found_by_age.first_key_value()),
            (Kind::Missing, self.missing_by_age.first_key_value()),
        ];
        let heads = heads
            .into_iter()
            .filter_map(|(kind, head)| head.map(|(&key, id)| (kind, key, id)));
        let expired = |&(kind, (at, _), _): &(Kind, (Instant, u64), &SessionId)| {
            now.saturating_duration_since(at) >= inner.ttl(kind)
        };
        let oldest_expired = heads.clone().filter(expired).min_by_key(|h| h.1);
        let victim = oldest_expired
            .or_else(|| heads.min_by_key(|h| h.1))
            .map(|(_, _, id)| id.clone());
        match victim {
            Some(id) => {
                self.remove(&id);
                true
            }
            None => false,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    hits: Counter,
    misses: Counter,
    stale_served: Counter,
    store_errors: Counter,
    coalesced: Counter,
}

#[derive(Debug, Default)]
struct Counter(AtomicU64);

impl Counter {
    fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use cca_domain::session::SessionPatch;
    use cca_domain::{BranchName, ImageChannel, RepoName, SessionType, Source};
    use cca_store::ListFilter;
    use cca_testkit::store::{InstrumentedStore, ReadMode};
    use std::future::Future;

    use super::*;

    /// Longest any one test may run.
    const TEST_TIMEOUT: Duration = Duration::from_secs(30);

    /// The instrumented store, plus a way to add preview sessions.
    type TestStore = InstrumentedStore;

    /// Stores a preview session with this id (one PR per session, so active keys differ).
    async fn add(store: &TestStore, id: &str) -> SessionId {
        let pr = store.list(&ListFilter::default()).await.unwrap().len() as u64 + 1;
        let mut session = Session::new(
            sid(id),
            SessionType::Preview,
            Source::Github,
            RepoName::parse("acme/shop").unwrap(),
            BranchName::parse("feature/cart").unwrap(),
            ImageChannel::Latest,
            1_700_000_000,
        );
        session.pr_number = Some(pr);
        store.create(&session).await.unwrap();
        sid(id)
    }

    fn sid(id: &str) -> SessionId {
        SessionId::parse(id).unwrap()
    }

    fn cache(store: &Arc<TestStore>, config: CacheConfig) -> SessionCache {
        SessionCache::new(Arc::clone(store) as Arc<dyn SessionStore>, config)
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    async fn within<F: Future>(test: F) -> F::Output {
        tokio::time::timeout(TEST_TIMEOUT, test)
            .await
            .expect("test took too long")
    }

    fn found_id(lookup: &Lookup) -> Option<&str> {
        match lookup {
            Lookup::Found(session) => Some(session.session_id.as_str()),
            _ => None,
        }
    }

    async fn lookup_concurrently(cache: &SessionCache, id: &SessionId, n: usize) -> Vec<Lookup> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (cache, id) = (cache.clone(), id.clone());
                tokio::spawn(async move { cache.lookup(&id).await })
            })
            .collect();
        let mut answers = Vec::with_capacity(n);
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        answers
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hundred_concurrent_lookups_of_a_cold_id_make_one_store_read() {
        within(async {
            let store = TestStore::new();
            let shop = add(&store, "shop").await;
            store.set_latency(ms(100));
            let cache = cache(&store, CacheConfig::default());

            let answers = lookup_concurrently(&cache, &shop, 100).await;
            assert!(answers.iter().all(|a| found_id(a) == Some("shop")));
            assert_eq!(store.gets(), 1);

            let ghost = sid("ghost");
            let answers = lookup_concurrently(&cache, &ghost, 100).await;
            assert!(answers.iter().all(|a| *a == Lookup::Missing));
            assert_eq!(store.gets(), 2);

            let stats = cache.stats();
            assert_eq!(stats.misses, 2);
            assert_eq!(stats.hits + stats.coalesced, 198);
            assert!(stats.coalesced > 0, "{stats:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn found_session_is_served_from_memory_until_positive_ttl_then_read_again() {
        within(async {
            let store = TestStore::new();
            let shop = add(&store, "shop").await;
            let config = CacheConfig {
                positive_ttl: ms(300),
                ..CacheConfig::default()
            };
            let cache = cache(&store, config);

            assert_eq!(found_id(&cache.lookup(&shop).await), Some("shop"));
            let patch = SessionPatch {
                container_ip: Some("10.0.3.7".into()),
                ..SessionPatch::default()
            };
            store.update(&shop, patch, 1_700_000_100).await.unwrap();
            let Lookup::Found(cached) = cache.lookup(&shop).await else {
                panic!("not found")
            };
            assert_eq!(cached.container_ip, None, "served from memory");
            assert_eq!(store.gets(), 1);

            tokio::time::sleep(ms(400)).await;
            let Lookup::Found(fresh) = cache.lookup(&shop).await else {
                panic!("not found")
            };
            assert_eq!(fresh.container_ip.as_deref(), Some("10.0.3.7"));
            assert_eq!(store.gets(), 2);
            assert_eq!(cache.stats().hits, 1);
        })
        .await;
    }

    #[tokio::test]
    async fn unknown_id_is_read_once_within_negative_ttl_and_found_once_created() {
        within(async {
            let store = TestStore::new();
            let config = CacheConfig {
                negative_ttl: ms(300),
                ..CacheConfig::default()
            };
            let cache = cache(&store, config);
            let late = sid("late");

            assert_eq!(cache.lookup(&late).await, Lookup::Missing);
            add(&store, "late").await;
            assert_eq!(cache.lookup(&late).await, Lookup::Missing);
            assert_eq!(store.gets(), 1);

            tokio::time::sleep(ms(400)).await;
            assert_eq!(found_id(&cache.lookup(&late).await), Some("late"));
            assert_eq!(store.gets(), 2);
        })
        .await;
    }

    #[tokio::test]
    async fn invalidated_entry_is_read_again() {
        within(async {
            let store = TestStore::new();
            let shop = add(&store, "shop").await;
            let cache = cache(&store, CacheConfig::default());

            cache.lookup(&shop).await;
            cache.invalidate(&shop);
            assert_eq!(found_id(&cache.lookup(&shop).await), Some("shop"));
            assert_eq!(store.gets(), 2);
        })
        .await;
    }

    #[tokio::test]
    async fn store_outage_serves_known_sessions_from_stale_entries_until_stale_for() {
        within(async {
            let store = TestStore::new();
            let shop = add(&store, "shop").await;
            let config = CacheConfig {
                positive_ttl: ms(50),
                negative_ttl: ms(50),
                stale_for: ms(800),
                ..CacheConfig::default()
            };
            let cache = cache(&store, config);
            let gone = sid("gone");
            assert_eq!(found_id(&cache.lookup(&shop).await), Some("shop"));
            assert_eq!(cache.lookup(&gone).await, Lookup::Missing);

            store.set_mode(ReadMode::Fail);
            tokio::time::sleep(ms(100)).await;
            assert_eq!(found_id(&cache.lookup(&shop).await), Some("shop"));
            assert_eq!(found_id(&cache.lookup(&shop).await), Some("shop"));
            assert_eq!(cache.lookup(&gone).await, Lookup::Missing);
            let never_seen = cache.lookup(&sid("never-seen")).await;
            assert!(
                matches!(&never_seen, Lookup::Unavailable(r) if r.contains("connection refused")),
                "{never_seen:?}"
            );
            let stats = cache.stats();
            assert_eq!(stats.stale_served, 3);
            assert_eq!(
                stats.store_errors, 3,
                "the second lookup did not read: {stats:?}"
            );

            tokio::time::sleep(ms(800)).await;
            assert!(matches!(cache.lookup(&shop).await, Lookup::Unavailable(_)));

            store.set_mode(ReadMode::Ok);
            assert_eq!(found_id(&cache.lookup(&shop).await), Some("shop"));
        })
        .await;
    }

    #[tokio::test]
    async fn hanging_store_answers_within_the_read_timeout() {
        within(async {
            let store = TestStore::new();
            let shop = add(&store, "shop").await;
            let config = CacheConfig {
                positive_ttl: ms(50),
                ..CacheConfig::default()
            };
            let cache = cache(&store, config);
            cache.lookup(&shop).await;
            store.set_mode(ReadMode::Hang);
            tokio::time::sleep(ms(100)).await;

            let never_seen = sid("never-seen");
            let started = Instant::now();
            let (never_seen, known) = tokio::join!(cache.lookup(&never_seen), cache.lookup(&shop));
            let waited = started.elapsed();
            assert!(
                matches!(never_seen, Lookup::Unavailable(_)),
                "{never_seen:?}"
            );
            assert_eq!(found_id(&known), Some("shop"));
            assert!(waited >= STORE_READ_TIMEOUT, "{waited:?}");
            assert!(waited < STORE_READ_TIMEOUT + ms(1000), "{waited:?}");

            // Known to be failing: the stale entry is answered without waiting again.
            let started = Instant::now();
            assert_eq!(found_id(&cache.lookup(&shop).await), Some("shop"));
            assert!(started.elapsed() < ms(500));
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancelled_first_caller_does_not_block_the_others() {
        within(async {
            let store = TestStore::new();
            let shop = add(&store, "shop").await;
            store.set_latency(ms(500));
            let cache = cache(&store, CacheConfig::default());

            let first = {
                let (cache, shop) = (cache.clone(), shop.clone());
                tokio::spawn(async move { cache.lookup(&shop).await })
            };
            tokio::time::sleep(ms(50)).await;
            first.abort();
            assert!(first.await.unwrap_err().is_cancelled());

            let started = Instant::now();
            let answers = lookup_concurrently(&cache, &shop, 10).await;
            assert!(answers.iter().all(|a| found_id(a) == Some("shop")));
            assert!(started.elapsed() < ms(1000));
            assert_eq!(store.gets(), 1);
            assert_eq!(cache.stats().coalesced, 10);
        })
        .await;
    }

    #[tokio::test]
    async fn panicking_store_read_does_not_wedge_the_id() {
        within(async {
            let store = TestStore::new();
            let shop = add(&store, "shop").await;
            let cache = cache(&store, CacheConfig::default());

            store.set_mode(ReadMode::Panic);
            assert!(matches!(cache.lookup(&shop).await, Lookup::Unavailable(_)));
            store.set_mode(ReadMode::Ok);
            assert_eq!(found_id(&cache.lookup(&shop).await), Some("shop"));
            assert_eq!(store.gets(), 2);
        })
        .await;
    }

    #[tokio::test]
    async fn full_cache_drops_expired_entries_first_then_the_oldest() {
        within(async {
            let store = TestStore::new();
            let (a, b, c) = (
                add(&store, "a").await,
                add(&store, "b").await,
                add(&store, "c").await,
            );
            let config = CacheConfig {
                negative_ttl: ms(50),
                max_entries: 2,
                ..CacheConfig::default()
            };
            let cache = cache(&store, config);

            // Oldest first: a goes when c arrives.
            for id in [&a, &b, &c] {
                cache.lookup(id).await;
            }
            assert_eq!(store.gets(), 3);
            cache.lookup(&b).await;
            cache.lookup(&c).await;
            assert_eq!(store.gets(), 3, "b and c kept");
            cache.lookup(&a).await;
            assert_eq!(store.gets(), 4, "a was dropped");

            // Expired first: the expired miss goes, although a is older.
            cache.invalidate(&b);
            cache.invalidate(&c);
            let ghost = sid("ghost");
            cache.lookup(&ghost).await;
            tokio::time::sleep(ms(100)).await;
            cache.lookup(&b).await;
            assert_eq!(store.gets(), 6);
            cache.lookup(&a).await;
            cache.lookup(&b).await;
            assert_eq!(store.gets(), 6, "a and b kept");
            let state = cache.inner.state();
            assert_eq!(state.entries.len(), 2);
            assert_eq!(state.found_by_age.len() + state.missing_by_age.len(), 2);
        })
        .await;
    }
}
