//! Clients that misbehave on purpose, for the listeners' bounds.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Connects to `addr`, sends the first line of a request's headers and never the rest
/// (slowloris); how long the server took to close the connection, or `None` when it was still
/// open after `give_up`.
///
/// # Panics
/// When nothing listens on `addr`.
pub async fn slow_headers(addr: &str, give_up: Duration) -> Option<Duration> {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("the first line is sent");
    let started = Instant::now();
    let mut sink = Vec::new();
    match tokio::time::timeout(give_up, stream.read_to_end(&mut sink)).await {
        Ok(_) => Some(started.elapsed()),
        Err(_) => None,
    }
}
