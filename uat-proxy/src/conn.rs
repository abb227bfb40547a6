//! Time-outs of client connections: request headers and idle keep-alive, kept apart.
//!
//! hyper's own header time-out also runs while a keep-alive connection waits for its next
//! request, so it would close idle connections after the (short) header time-out, before the
//! load balancer's idle time-out, and the load balancer would now and then send a request on a
//! connection being closed (a 502). So the connection's byte stream is watched instead: the
//! header clock starts with the first byte read while no request is in flight and stops when
//! hyper hands over the request head; the idle clock runs while nothing moves and no request is
//! in flight. A request in flight (a long download, a long poll) is never timed out here.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// `head_started` when no request head is being received.
const NOT_STARTED: u64 = u64::MAX;

/// What is known about one client connection's traffic. Times are milliseconds since `start`.
#[derive(Debug)]
pub(crate) struct ConnState {
    start: Instant,
    last_io: AtomicU64,
    head_started: AtomicU64,
    in_flight: AtomicUsize,
    /// Wakes the watchdog when a request head starts, so an idle wait does not delay the
    /// (shorter) header time-out.
    head_began: tokio::sync::Notify,
}

/// Why a connection was closed by its watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// A request head took longer than the header time-out.
    Headers,
    /// No request and no traffic for the idle time-out.
    Idle,
}

impl ConnState {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            last_io: AtomicU64::new(0),
            head_started: AtomicU64::new(NOT_STARTED),
            in_flight: AtomicUsize::new(0),
            head_began: tokio::sync::Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn read(&self) {
        let now = self.now_ms();
        self.last_io.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let began = self
                .head_started
                .compare_exchange(NOT_STARTED, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok();
            if began {
                self.head_began.notify_one();
            }
        }
    }

    fn wrote(&self) {
        self.last_io.store(self.now_ms(), Ordering::Relaxed);
    }

    /// A request head has arrived; the returned guard keeps the request in flight until its
    /// response has been sent (or abandoned).
    pub(crate) fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(NOT_STARTED, Ordering::Release);
        InFlight(Arc::clone(self))
    }

    /// Resolves when the connection should be closed, and says why.
    pub(crate) async fn expired(
        &self,
        header_timeout: Duration,
        idle_timeout: Duration,
    ) -> Expired {
        let to_ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2);
        let (header_ms, idle_ms) = (to_ms(header_timeout), to_ms(idle_timeout));
        loop {
            let now = self.now_ms();
            let wake_at = if self.in_flight.load(Ordering::Acquire) > 0 {
                now.saturating_add(idle_ms)
            } else {
                let head = self.head_started.load(Ordering::Acquire);
                if head != NOT_STARTED {
                    let deadline = head.saturating_add(header_ms);
                    if now >= deadline {
                        return Expired::Headers;
                    }
                    deadline
                } else {
                    let deadline = self.last_io.load(Ordering::Relaxed).saturating_add(idle_ms);
                    if now >= deadline {
                        return Expired::Idle;
                    }
                    deadline
                }
            };
            // A head starting while the watchdog waits on the idle clock re-arms it at once.
            tokio::select! {
                () = tokio::time::sleep_until(self.start + Duration::from_millis(wake_at)) => {}
                () = self.head_began.notified() => {}
            }
        }
    }
}

/// A request in flight on a connection; dropped when its response is done.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        // The idle clock starts when the response is done, not when the request came.
        self.0.wrote();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A client connection's byte stream, reporting its traffic to a [`ConnState`].
#[derive(Debug)]
pub(crate) struct Watched<T> {
    inner: T,
    state: Arc<ConnState>,
}

impl<T> Watched<T> {
    pub(crate) fn new(inner: T, state: Arc<ConnState>) -> Self {
        Self { inner, state }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.read();
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.state.wrote();
        }
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.state.wrote();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_then_headers_then_in_flight() {
        let state = ConnState::new();
        let (h, i) = (Duration::from_secs(10), Duration::from_secs(75));
        let started = Instant::now();
        assert_eq!(state.expired(h, i).await, Expired::Idle);
        assert_eq!(started.elapsed(), i);

        state.read();
        let started = Instant::now();
        assert_eq!(state.expired(h, i).await, Expired::Headers);
        assert_eq!(started.elapsed(), h);

        let in_flight = state.begin_request();
        let wait = tokio::time::timeout(Duration::from_secs(600), state.expired(h, i)).await;
        assert!(wait.is_err(), "a request in flight is not timed out");
        drop(in_flight);
        let started = Instant::now();
        assert_eq!(state.expired(h, i).await, Expired::Idle);
        assert_eq!(started.elapsed(), i);
    }
}

/// When bytes last moved through any stream sharing it (a tunnel's two sides).
#[derive(Debug, Clone)]
pub(crate) struct Stamp {
    start: Instant,
    /// Milliseconds since `start`.
    last: Arc<AtomicU64>,
}

impl Stamp {
    pub(crate) fn now() -> Self {
        Self {
            start: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> Instant {
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
}

/// A stream that stamps its [`Stamp`] whenever bytes are read or written.
#[derive(Debug)]
pub(crate) struct Stamped<T> {
    inner: T,
    stamp: Stamp,
}

impl<T> Stamped<T> {
    pub(crate) fn new(inner: T, stamp: Stamp) -> Self {
        Self { inner, stamp }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stamped<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.stamp.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stamped<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.stamp.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
