//! Serving a router over TCP with the bounds a listener on a network needs, which `axum::serve`
//! does not set: request headers must arrive within [`Limits::header_timeout`] (a client that
//! trickles them, slowloris, is cut), a request's body within [`Limits::request_timeout`] after
//! them (a body that trickles gets 408; the handler is never cut once it has the body, so a
//! delivery's work is not dropped half-way), bodies are at most [`Limits::max_body_bytes`]
//! (413), and at most [`Limits::max_connections`] connections are open at once (more are closed
//! as they are accepted). Connections are not kept alive: hyper's header clock also runs while a
//! kept-alive connection waits, and a tunnel or load balancer reusing a connection the server is
//! closing would lose a delivery; every answer says `Connection: close` instead. `cca-webhook
//! serve` and `cca up` both serve through here.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use crate::reply::Reply;

/// The bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From the connection's first byte (or the end of the last request) to the end of the
    /// request's headers.
    pub header_timeout: Duration,
    /// From the end of the headers to the end of the body.
    pub request_timeout: Duration,
    /// The largest body accepted.
    pub max_body_bytes: usize,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for Limits {
    /// 10 s for headers, 30 s for the body, 25 MiB (GitHub's largest payload), 512
    /// connections.
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: crate::router::MAX_BODY_BYTES,
            max_connections: 512,
        }
    }
}

/// The bounds as settings (`cca-webhook serve` and `cca up`).
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Seconds a client has to send a request's headers.
    #[arg(long, env = "LISTEN_HEADER_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub header_timeout_secs: u64,
    /// Seconds a request has, once its headers are in, for its body.
    #[arg(long, env = "LISTEN_REQUEST_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub request_timeout_secs: u64,
    /// Connections open at once; more are closed as they arrive.
    #[arg(long, env = "LISTEN_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_connections: u64,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            max_body_bytes: crate::router::MAX_BODY_BYTES,
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then lets open
/// requests finish. Handlers see the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of descriptors and the like: wait a moment rather than spin or stop.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, "connection cap reached: closing a new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            handle(router.clone(), peer, req, limits)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Some(limits.header_timeout))
            .keep_alive(false);
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Reads the body within the deadline, then hands the request to the router, which is never
/// cut off.
async fn handle(
    router: Router,
    peer: SocketAddr,
    req: Request<Incoming>,
    limits: Limits,
) -> Result<Response, Infallible> {
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, limits.max_body_bytes);
    let read = tokio::time::timeout(limits.request_timeout, limited.collect()).await;
    let body = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Ok(Reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {} bytes", limits.max_body_bytes),
            )
            .into_response());
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "request body not read");
            return Ok(
                Reply::error(StatusCode::BAD_REQUEST, "the body could not be read").into_response(),
            );
        }
        Err(_) => {
            tracing::debug!(%peer, "request body too slow");
            return Ok(Reply::error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s",
                    limits.request_timeout.as_secs()
                ),
            )
            .into_response());
        }
    };
    let mut req = Request::from_parts(parts, Body::from(body));
    req.extensions_mut().insert(ConnectInfo(peer));
    router.oneshot(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    async fn start(limits: Limits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/echo",
            axum::routing::post(|body: String| async move { body }),
        );
        tokio::spawn(serve(listener, router, limits, std::future::pending()));
        addr
    }

    /// Reads until the server closes; what it sent.
    async fn until_closed(stream: &mut tokio::net::TcpStream) -> String {
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            max_body_bytes: 1024,
            max_connections: 2,
        }
    }

    #[tokio::test]
    async fn slow_headers_and_slow_bodies_are_cut_and_a_prompt_client_is_answered() {
        let addr = start(limits()).await;
        // Headers that never end.
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let t = Instant::now();
        until_closed(&mut slow).await;
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        // A body that never comes: 408.
        let mut trickle = tokio::net::TcpStream::connect(addr).await.unwrap();
        trickle
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
            .await
            .unwrap();
        let t = Instant::now();
        let answer = until_closed(&mut trickle).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        // Meanwhile a client that sends its request at once is answered.
        let mut good = tokio::net::TcpStream::connect(addr).await.unwrap();
        good.write_all(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        )
        .await
        .unwrap();
        let answer = until_closed(&mut good).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("hi"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn an_oversized_body_is_413_and_a_slow_handler_is_never_cut() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route(
                "/echo",
                axum::routing::post(|body: String| async move { body }),
            )
            .route(
                "/slow",
                axum::routing::post(|| async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    "done"
                }),
            );
        tokio::spawn(serve(listener, router, limits(), std::future::pending()));
        let mut large = tokio::net::TcpStream::connect(addr).await.unwrap();
        large
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
            .await
            .unwrap();
        large.write_all(&[b'a'; 2000]).await.unwrap();
        let answer = until_closed(&mut large).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        // Past the 2 s body deadline, but the body was in: the answer comes, and closes.
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let answer = until_closed(&mut client).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"),
            "{answer}"
        );
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_at_once() {
        let addr = start(limits()).await;
        let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let t = Instant::now();
        let said = until_closed(&mut c).await;
        assert!(
            said.is_empty() && t.elapsed() < Duration::from_millis(500),
            "{said:?}"
        );
    }
}
