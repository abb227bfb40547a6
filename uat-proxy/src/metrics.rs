//! Counters of what the proxy did, served in the Prometheus text format on a listener of their
//! own (`--metrics-listen`), so they are never reachable through the load balancer.
//!
//! Everything is a relaxed atomic updated on the request path; the text is written by hand when
//! scraped (a few dozen lines, no metrics crate).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::cache::{CacheStats, SessionCache};

/// Upper bounds (seconds) of the response-time histogram buckets: from a cached page answered
/// in a millisecond to a dev server compiling a route on first load (tens of seconds).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// How a request ended, one label value of `cca_uat_proxy_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded and answered by the app.
    Proxied,
    /// Forwarded and switched protocols (WebSocket and other upgrades).
    Upgraded,
    Health,
    UnknownHost,
    UnknownSession,
    Starting,
    Stopped,
    Failed,
    Refused,
    StoreUnavailable,
    AppNotAnswering,
    AppError,
    AppTimedOut,
    Busy,
    LoopDetected,
    NotAllowed,
    /// Sent to sign in (a redirect, or 401 where a redirect cannot help).
    SignIn,
    /// Signed in without access to the preview's repository.
    Forbidden,
    /// Access could not be checked with GitHub.
    AccessUnavailable,
    /// Answered by the sign-in flow itself (the auth host, the return to a preview).
    Auth,
}

impl Outcome {
    const ALL: [Outcome; 20] = [
        Outcome::Proxied,
        Outcome::Upgraded,
        Outcome::Health,
        Outcome::UnknownHost,
        Outcome::UnknownSession,
        Outcome::Starting,
        Outcome::Stopped,
        Outcome::Failed,
        Outcome::Refused,
        Outcome::StoreUnavailable,
        Outcome::AppNotAnswering,
        Outcome::AppError,
        Outcome::AppTimedOut,
        Outcome::Busy,
        Outcome::LoopDetected,
        Outcome::NotAllowed,
        Outcome::SignIn,
        Outcome::Forbidden,
        Outcome::AccessUnavailable,
        Outcome::Auth,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Proxied => "proxied",
            Outcome::Upgraded => "upgraded",
            Outcome::Health => "health",
            Outcome::UnknownHost => "unknown_host",
            Outcome::UnknownSession => "unknown_session",
            Outcome::Starting => "starting",
            Outcome::Stopped => "stopped",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
            Outcome::StoreUnavailable => "store_unavailable",
            Outcome::AppNotAnswering => "app_not_answering",
            Outcome::AppError => "app_error",
            Outcome::AppTimedOut => "app_timed_out",
            Outcome::Busy => "busy",
            Outcome::LoopDetected => "loop_detected",
            Outcome::NotAllowed => "not_allowed",
            Outcome::SignIn => "sign_in",
            Outcome::Forbidden => "forbidden",
            Outcome::AccessUnavailable => "access_unavailable",
            Outcome::Auth => "auth",
        }
    }

    fn index(self) -> usize {
        Outcome::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// Why a forwarded request failed, one label value of `cca_uat_proxy_upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// No connection: refused, unreachable or not within the connect time-out.
    Connect,
    /// Connected, but the exchange failed before a response head arrived.
    Exchange,
    /// The upgrade after `101 Switching Protocols` could not be completed.
    Upgrade,
    /// Connected, but no response head within the upstream time-out.
    Timeout,
}

impl UpstreamError {
    const ALL: [UpstreamError; 4] = [
        UpstreamError::Connect,
        UpstreamError::Exchange,
        UpstreamError::Upgrade,
        UpstreamError::Timeout,
    ];

    fn as_str(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Exchange => "exchange",
            UpstreamError::Upgrade => "upgrade",
            UpstreamError::Timeout => "timeout",
        }
    }
}

/// The proxy's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: [AtomicU64; Outcome::ALL.len()],
    /// Per bucket (not cumulative), plus one for above the last bound.
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_micros: AtomicU64,
    upstream_errors: [AtomicU64; UpstreamError::ALL.len()],
    open_connections: AtomicI64,
    open_tunnels: AtomicI64,
    activity_dropped: AtomicU64,
}

impl Metrics {
    /// Counts a request and the time until its response head was ready.
    pub fn request(&self, outcome: Outcome, elapsed: Duration) {
        self.requests[outcome.index()].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts a failed exchange with an app.
    pub fn upstream_error(&self, kind: UpstreamError) {
        let i = UpstreamError::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        self.upstream_errors[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an activity update dropped because the writer was behind.
    pub fn activity_dropped(&self) {
        self.activity_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// A client connection opened; it is counted until the guard drops.
    pub fn connection(self: &Arc<Self>) -> OpenGuard {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
        OpenGuard {
            metrics: Arc::clone(self),
            tunnel: false,
        }
    }

    /// An upgraded connection (WebSocket) opened; counted until the guard drops.
    pub fn tunnel(self: &Arc<Self>) -> OpenGuard {
        self.open_tunnels.fetch_add(1, Ordering::Relaxed);
        OpenGuard {
            metrics: Arc::clone(self),
            tunnel: true,
        }
    }

    /// How many requests ended with `outcome` so far.
    pub fn requests(&self, outcome: Outcome) -> u64 {
        self.requests[outcome.index()].load(Ordering::Relaxed)
    }

    /// How many upstream errors of every kind so far.
    pub fn upstream_errors(&self) -> u64 {
        self.upstream_errors
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The Prometheus text exposition of these counters and the cache's.
    pub fn render(&self, cache: &CacheStats) -> String {
        let mut out = String::with_capacity(4096);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);

        out.push_str("# HELP cca_uat_proxy_requests_total Requests by how they ended.\n");
        out.push_str("# TYPE cca_uat_proxy_requests_total counter\n");
        for outcome in Outcome::ALL {
            let _ = writeln!(
                out,
                "cca_uat_proxy_requests_total{{outcome=\"{}\"}} {}",
                outcome.as_str(),
                load(&self.requests[outcome.index()])
            );
        }

        out.push_str(
            "# HELP cca_uat_proxy_response_seconds Time until the response head was ready.\n",
        );
        out.push_str("# TYPE cca_uat_proxy_response_seconds histogram\n");
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += load(&self.latency[i]);
            let _ = writeln!(
                out,
                "cca_uat_proxy_response_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += load(&self.latency[LATENCY_BUCKETS.len()]);
        let _ = writeln!(
            out,
            "cca_uat_proxy_response_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let sum = load(&self.latency_sum_micros) as f64 / 1e6;
        let _ = writeln!(out, "cca_uat_proxy_response_seconds_sum {sum}");
        let _ = writeln!(out, "cca_uat_proxy_response_seconds_count {cumulative}");

        out.push_str("# HELP cca_uat_proxy_upstream_errors_total Failed exchanges with apps.\n");
        out.push_str("# TYPE cca_uat_proxy_upstream_errors_total counter\n");
        for (i, kind) in UpstreamError::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "cca_uat_proxy_upstream_errors_total{{kind=\"{}\"}} {}",
                kind.as_str(),
                load(&self.upstream_errors[i])
            );
        }

        let gauges = [
            (
                "open_connections",
                "Client connections open.",
                self.open_connections.load(Ordering::Relaxed),
            ),
            (
                "open_tunnels",
                "Upgraded connections (WebSocket) open.",
                self.open_tunnels.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP cca_uat_proxy_{name} {help}");
            let _ = writeln!(out, "# TYPE cca_uat_proxy_{name} gauge");
            let _ = writeln!(out, "cca_uat_proxy_{name} {value}");
        }

        let counters = [
            (
                "cache_hits_total",
                "Session look-ups answered from memory.",
                cache.hits,
            ),
            (
                "cache_misses_total",
                "Session look-ups that read the store.",
                cache.misses,
            ),
            (
                "cache_stale_served_total",
                "Expired entries served because the store failed.",
                cache.stale_served,
            ),
            (
                "cache_store_errors_total",
                "Failed store reads.",
                cache.store_errors,
            ),
            (
                "cache_coalesced_total",
                "Look-ups that waited for another's store read.",
                cache.coalesced,
            ),
            (
                "activity_dropped_total",
                "Activity updates dropped because the writer was behind.",
                load(&self.activity_dropped),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP cca_uat_proxy_{name} {help}");
            let _ = writeln!(out, "# TYPE cca_uat_proxy_{name} counter");
            let _ = writeln!(out, "cca_uat_proxy_{name} {value}");
        }
        out
    }
}

/// Keeps a connection counted as open while it lives.
#[derive(Debug)]
pub struct OpenGuard {
    metrics: Arc<Metrics>,
    tunnel: bool,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let gauge = if self.tunnel {
            &self.metrics.open_tunnels
        } else {
            &self.metrics.open_connections
        };
        gauge.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the metrics listener reads: the proxy's counters and its cache's.
#[derive(Debug, Clone)]
pub struct MetricsHandle {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) cache: SessionCache,
}

impl MetricsHandle {
    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The current text exposition.
    pub fn render(&self) -> String {
        self.metrics.render(&self.cache.stats())
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes. Scrapes are short, so
/// shutdown does not wait for them.
pub async fn serve(
    handle: MetricsHandle,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "metrics listener cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let handle = handle.clone();
                async move {
                    let mut response =
                        if req.method() == Method::GET && req.uri().path() == "/metrics" {
                            let mut r = Response::new(Full::new(Bytes::from(handle.render())));
                            r.headers_mut().insert(
                                header::CONTENT_TYPE,
                                http::HeaderValue::from_static("text/plain; version=0.0.4"),
                            );
                            r
                        } else {
                            Response::new(Full::new(Bytes::from_static(b"not found\n")))
                        };
                    if req.uri().path() != "/metrics" {
                        *response.status_mut() = StatusCode::NOT_FOUND;
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_match() {
        let metrics = Metrics::default();
        metrics.request(Outcome::Proxied, Duration::from_micros(500));
        metrics.request(Outcome::Proxied, Duration::from_millis(20));
        metrics.request(Outcome::Starting, Duration::from_secs(100));
        let text = metrics.render(&CacheStats::default());
        assert!(text.contains("cca_uat_proxy_requests_total{outcome=\"proxied\"} 2\n"));
        assert!(text.contains("cca_uat_proxy_response_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("cca_uat_proxy_response_seconds_bucket{le=\"0.025\"} 2\n"));
        assert!(text.contains("cca_uat_proxy_response_seconds_bucket{le=\"30\"} 2\n"));
        assert!(text.contains("cca_uat_proxy_response_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("cca_uat_proxy_response_seconds_count 3\n"));
    }

    #[test]
    fn gauges_follow_guards() {
        let metrics = Arc::new(Metrics::default());
        let a = metrics.connection();
        let _b = metrics.connection();
        drop(a);
        assert!(
            metrics
                .render(&CacheStats::default())
                .contains("cca_uat_proxy_open_connections 1\n")
        );
    }
}
