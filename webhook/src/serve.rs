//! Serving a router over TCP with the bounds a listener on a network needs, which `axum::serve`
//! does not set: request headers must arrive within [`Limits::header_timeout`] (a client that
//! trickles them, slowloris, is cut), each request, its body included, is answered within
//! [`Limits::request_timeout`] (a body that trickles gets 408 and the connection closes), and at
//! most [`Limits::max_connections`] connections are open at once (more are closed as they are
//! accepted). `cca-webhook serve` and `cca up` both serve through here.

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
    /// From the end of the headers to the end of the answer's head: the body's arrival and the
    /// handling.
    pub request_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for Limits {
    /// 10 s for headers, 30 s a request (GitHub gives up on a delivery after 10 s), 512
    /// connections.
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
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
    /// Seconds a request has, once its headers are in, for its body and its answer.
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
            handle(router.clone(), peer, req, limits.request_timeout)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Some(limits.header_timeout))
            .keep_alive(true);
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

async fn handle(
    router: Router,
    peer: SocketAddr,
    req: Request<Incoming>,
    deadline: Duration,
) -> Result<Response, Infallible> {
    let mut req = req.map(Body::new);
    req.extensions_mut().insert(ConnectInfo(peer));
    match tokio::time::timeout(deadline, router.oneshot(req)).await {
        Ok(answer) => answer,
        Err(_) => {
            tracing::debug!(%peer, ?deadline, "request not done in time");
            let mut r = Reply::error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request was not complete within {} s",
                    deadline.as_secs()
                ),
            )
            .into_response();
            r.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            Ok(r)
        }
    }
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
