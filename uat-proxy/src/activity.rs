//! Records that a preview is in use, so its idle timeout counts proxy traffic.
//!
//! A page load makes dozens of requests; each would be a store write. Instead the request path
//! only notes the session id, at most once per [`ACTIVITY_INTERVAL`] per session, into a bounded
//! channel, and one background task writes `last_activity`. When the writer is behind (a slow
//! store), notes are dropped rather than making requests wait: the next request a minute later
//! records the activity again, and idle timeouts are tens of minutes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cca_domain::SessionId;
use cca_store::{SessionStore, StoreError};
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Least time between two `last_activity` writes for one session. Idle timeouts are measured in
/// tens of minutes, so a minute of precision costs nothing and bounds the writes to one a
/// minute per preview in use, however busy it is.
pub const ACTIVITY_INTERVAL: Duration = Duration::from_secs(60);

/// Notes waiting for the writer. A store write takes milliseconds, so a backlog of this many
/// means the store is struggling, and adding to it would only delay the writes further.
pub const ACTIVITY_QUEUE: usize = 1024;

/// Sessions remembered for throttling before old entries are swept out: well above the
/// previews in use at once, so a sweep (a pass over the map) is rare.
const THROTTLE_SWEEP_AT: usize = 4096;

/// The request side: notes activity, cheaply and without waiting.
#[derive(Debug)]
pub struct Activity {
    tx: mpsc::Sender<SessionId>,
    interval: Duration,
    last_noted: Mutex<HashMap<SessionId, Instant>>,
    metrics: Arc<Metrics>,
}

impl Activity {
    /// Starts the writer task on the current runtime and returns the request side. The task
    /// ends when the request side is dropped.
    pub fn start(store: Arc<dyn SessionStore>, interval: Duration, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(ACTIVITY_QUEUE);
        tokio::spawn(write_activity(store, rx));
        Self {
            tx,
            interval,
            last_noted: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Notes a request for `id`; writes at most once per interval per session.
    pub fn note(&self, id: &SessionId) {
        let now = Instant::now();
        let mut last = self
            .last_noted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last
            .get(id)
            .is_some_and(|at| now.duration_since(*at) < self.interval)
        {
            return;
        }
        match self.tx.try_send(id.clone()) {
            Ok(()) => {
                if last.len() >= THROTTLE_SWEEP_AT {
                    last.retain(|_, at| now.duration_since(*at) < self.interval);
                }
                last.insert(id.clone(), now);
            }
            // Not remembered, so the next request tries again.
            Err(mpsc::error::TrySendError::Full(_)) => self.metrics.activity_dropped(),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

async fn write_activity(store: Arc<dyn SessionStore>, mut rx: mpsc::Receiver<SessionId>) {
    while let Some(id) = rx.recv().await {
        match store.touch(&id, cca_domain::now()).await {
            Ok(_) => tracing::debug!(session = %id, "activity recorded"),
            // The session ended or went away since the request: nothing to keep alive.
            Err(StoreError::IllegalTransition { .. } | StoreError::NotFound(_)) => {}
            Err(err) => tracing::warn!(session = %id, error = %err, "cannot record activity"),
        }
    }
}
