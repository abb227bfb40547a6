//! The proxy in-process on 127.0.0.1, in front of in-process apps, with sessions in a real
//! (in-memory) SQLite store moved through their lifecycle as the agent and webhook would.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cca_domain::session::SessionPatch;
use cca_domain::{BranchName, RepoName, Session, SessionId, Status};
use cca_domain::{ImageChannel, SessionType, Source};
use cca_store::{SessionStore, SqliteStore};
use cca_testkit::store::{InstrumentedStore, ReadMode};
use cca_uat_proxy::metrics::{MetricsHandle, Outcome};
use cca_uat_proxy::{Proxy, Settings};
use futures::{SinkExt as _, StreamExt as _};
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Empty, Full, StreamBody};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

const SUFFIX: &str = "preview.test";
const NOW: i64 = 1_760_000_000;

type AppBody = UnsyncBoxBody<Bytes, Infallible>;

/// Every test ends within this, whatever hangs.
async fn within<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("test took longer than its time-out")
}

// ---- the stand: store, proxy, apps -------------------------------------------------------

fn settings(local_mode: bool) -> Settings {
    Settings {
        local_mode,
        ..Settings::new(SUFFIX).unwrap()
    }
}

struct Stand {
    store: Arc<dyn SessionStore>,
    addr: SocketAddr,
    metrics: MetricsHandle,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<std::io::Result<()>>,
    next_pr: u64,
}

impl Stand {
    async fn start(settings: Settings) -> Self {
        Self::with_store(Arc::new(SqliteStore::in_memory().unwrap()), settings).await
    }

    async fn with_store(store: Arc<dyn SessionStore>, settings: Settings) -> Self {
        let proxy = Proxy::new(Arc::clone(&store), settings);
        let metrics = proxy.metrics();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(proxy.serve(listener, async {
            let _ = stopped.await;
        }));
        Self {
            store,
            addr,
            metrics,
            stop: Some(stop),
            served,
            next_pr: 1,
        }
    }

    fn host(id: &str) -> String {
        format!("{id}.{SUFFIX}")
    }

    /// A new preview session in PROVISIONING.
    async fn create(&mut self, id: &str) -> SessionId {
        let sid = SessionId::parse(id).unwrap();
        let session = Session {
            pr_number: Some(self.next_pr),
            ..Session::new(
                sid.clone(),
                SessionType::Preview,
                Source::Github,
                RepoName::parse("octo/hello").unwrap(),
                BranchName::parse(&format!("feature/{id}")).unwrap(),
                ImageChannel::Latest,
                NOW,
            )
        };
        self.next_pr += 1;
        self.store.create(&session).await.unwrap();
        sid
    }

    async fn to(&self, id: &SessionId, status: Status, patch: SessionPatch) {
        self.store.transition(id, status, patch, NOW).await.unwrap();
    }

    /// A session RUNNING at `ip:port`, as the agent records it.
    async fn running(&mut self, id: &str, ip: &str, port: u16) -> SessionId {
        let sid = self.create(id).await;
        self.to(&sid, Status::Starting, SessionPatch::default())
            .await;
        let patch = SessionPatch {
            container_ip: Some(ip.into()),
            app_port: Some(port),
            ..SessionPatch::default()
        };
        self.to(&sid, Status::Running, patch).await;
        sid
    }

    async fn get(&self, host: &str, path: &str) -> Reply {
        let req = Request::get(path)
            .header(header::HOST, host)
            .body(Empty::<Bytes>::new())
            .unwrap();
        Reply::read(send(self.addr, req).await).await
    }

    async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A whole response.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    async fn read(response: Response<Incoming>) -> Self {
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Self {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// Sends one request on a new connection.
async fn send<B>(addr: SocketAddr, req: Request<B>) -> Response<Incoming>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender.send_request(req).await.unwrap()
}

/// An app on 127.0.0.1 answering with `handler`.
async fn app<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<AppBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<AppBody> {
    let mut response = Response::new(Full::new(body.into()).boxed_unsync());
    *response.status_mut() = status;
    response
}

/// A body whose chunks come from a channel, so the test decides when each is sent.
fn channel_body(rx: mpsc::Receiver<Bytes>) -> AppBody {
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    StreamBody::new(frames).boxed_unsync()
}

/// A port on 127.0.0.1 where nothing listens.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Log lines written while the returned guard lives (on this thread, where a current-thread
/// test runtime also runs the proxy's tasks).
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = Arc::new(Mutex::new(Vec::new()));
    let buf = Buf(Arc::clone(&logs));
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || buf.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

// ---- forwarding ---------------------------------------------------------------------------

#[tokio::test]
async fn a_request_reaches_the_app_with_forwarding_headers_and_without_hop_by_hop_ones() {
    within(async {
        let seen = Arc::new(Mutex::new(None::<(String, HeaderMap)>));
        let seen_by_app = Arc::clone(&seen);
        let upstream = app(move |req: Request<Incoming>| {
            let seen = Arc::clone(&seen_by_app);
            async move {
                let target = req.uri().to_string();
                let (parts, body) = req.into_parts();
                *seen.lock().unwrap() = Some((target, parts.headers));
                let body = body.collect().await.unwrap().to_bytes();
                let mut response = text(
                    StatusCode::CREATED,
                    format!("got {}", String::from_utf8_lossy(&body)),
                );
                let headers = response.headers_mut();
                headers.insert("x-app", "yes".parse().unwrap());
                headers.insert(header::CONNECTION, "x-internal".parse().unwrap());
                headers.insert("x-internal", "1".parse().unwrap());
                response
            }
        })
        .await;
        let mut stand = Stand::start(settings(true)).await;
        stand.running("app1", "127.0.0.1", upstream.port()).await;

        let req = Request::post("/path?q=1")
            .header(header::HOST, "APP1.Preview.Test:8081")
            .header(header::CONNECTION, "x-secret")
            .header("x-secret", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authorization", "Basic eDp5")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        let reply = Reply::read(send(stand.addr, req).await).await;

        assert_eq!(reply.status, StatusCode::CREATED);
        assert_eq!(reply.body, "got hello");
        assert_eq!(reply.headers["x-app"], "yes");
        assert!(!reply.headers.contains_key("x-internal"));
        let (target, headers) = seen
            .lock()
            .unwrap()
            .take()
            .expect("the app got the request");
        assert_eq!(target, "/path?q=1");
        assert_eq!(headers[header::HOST], "APP1.Preview.Test:8081", "Host kept");
        assert_eq!(headers["x-forwarded-host"], "APP1.Preview.Test:8081");
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
        for gone in ["x-secret", "keep-alive", "proxy-authorization"] {
            assert!(!headers.contains_key(gone), "{gone} reached the app");
        }

        // Behind the load balancer: its X-Forwarded-* are kept and extended.
        let req = Request::get("/")
            .header(header::HOST, "app1.preview.test")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-for", "203.0.113.9")
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(
            Reply::read(send(stand.addr, req).await).await.status,
            StatusCode::CREATED
        );
        let (_, headers) = seen.lock().unwrap().take().unwrap();
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(stand.metrics.metrics().requests(Outcome::Proxied), 2);
    })
    .await;
}

#[tokio::test]
async fn host_can_be_rewritten_to_the_app_address() {
    within(async {
        let upstream = app(|req: Request<Incoming>| async move {
            let host = req.headers()[header::HOST].to_str().unwrap().to_owned();
            text(StatusCode::OK, host)
        })
        .await;
        let mut stand = Stand::start(Settings {
            rewrite_host: true,
            ..settings(true)
        })
        .await;
        stand.running("app1", "127.0.0.1", upstream.port()).await;
        let reply = stand.get(&Stand::host("app1"), "/").await;
        assert_eq!(reply.body, upstream.to_string());
    })
    .await;
}

#[tokio::test]
async fn hosts_match_in_any_case_with_any_port_and_only_under_the_suffix() {
    within(async {
        let upstream = app(|req: Request<Incoming>| async move {
            text(StatusCode::OK, format!("app {}", req.uri().path()))
        })
        .await;
        let mut stand = Stand::start(settings(true)).await;
        stand.running("abc", "127.0.0.1", upstream.port()).await;

        for host in [
            "abc.preview.test",
            "ABC.PREVIEW.TEST",
            "Abc.Preview.Test:443",
            "abc.preview.test.",
        ] {
            let reply = stand.get(host, "/x").await;
            assert_eq!(
                (reply.status, reply.body.as_str()),
                (StatusCode::OK, "app /x"),
                "{host}"
            );
        }
        for host in [
            "abc.preview.other",
            "abc.x.preview.test",
            "abcpreview.test",
            "preview.test",
        ] {
            assert_eq!(
                stand.get(host, "/x").await.status,
                StatusCode::NOT_FOUND,
                "{host}"
            );
        }
        assert_eq!(
            stand.get("nosuch.preview.test", "/").await.status,
            StatusCode::NOT_FOUND
        );

        // The target group's check: the load balancer sends its own address as Host.
        let health = stand.get("10.0.1.17", "/health").await;
        assert_eq!(
            (health.status, health.body.as_str()),
            (StatusCode::OK, "ok\n")
        );
        assert_eq!(
            stand.get("10.0.1.17:8080", "/health").await.status,
            StatusCode::OK
        );
        // On a preview's host, /health is the app's.
        assert_eq!(
            stand.get("abc.preview.test", "/health").await.body,
            "app /health"
        );
    })
    .await;
}

// ---- streaming ----------------------------------------------------------------------------

#[tokio::test]
async fn a_large_request_body_streams_to_the_app() {
    within(async {
        const CHUNK: usize = 1 << 20;
        const CHUNKS: usize = 20;
        let first_bytes_arrived = Arc::new(Notify::new());
        let notify = Arc::clone(&first_bytes_arrived);
        let upstream = app(move |req: Request<Incoming>| {
            let notify = Arc::clone(&notify);
            async move {
                let mut body = req.into_body();
                let (mut len, mut intact) = (0usize, true);
                while let Some(frame) = body.frame().await {
                    let Ok(data) = frame.unwrap().into_data() else {
                        continue;
                    };
                    if len == 0 {
                        notify.notify_one();
                    }
                    intact &= data
                        .iter()
                        .enumerate()
                        .all(|(i, b)| *b == ((len + i) % 251) as u8);
                    len += data.len();
                }
                text(StatusCode::OK, format!("{len} {intact}"))
            }
        })
        .await;
        let mut stand = Stand::start(settings(true)).await;
        stand.running("big", "127.0.0.1", upstream.port()).await;

        // The rest of the body is made only after the app has the first chunk: a proxy that
        // buffered the body would wait for it forever.
        let gate = Arc::clone(&first_bytes_arrived);
        let chunks = futures::stream::unfold(0usize, move |i| {
            let gate = Arc::clone(&gate);
            async move {
                if i == CHUNKS {
                    return None;
                }
                if i == 1 {
                    gate.notified().await;
                }
                let chunk: Vec<u8> = (0..CHUNK).map(|j| ((i * CHUNK + j) % 251) as u8).collect();
                Some((Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))), i + 1))
            }
        });
        let req = Request::put("/upload")
            .header(header::HOST, Stand::host("big"))
            .body(StreamBody::new(chunks))
            .unwrap();
        let reply = Reply::read(send(stand.addr, req).await).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, format!("{} true", CHUNK * CHUNKS));
    })
    .await;
}

#[tokio::test]
async fn a_streamed_response_reaches_the_client_before_the_app_finishes() {
    within(async {
        let (release_tx, release_rx) = mpsc::channel::<()>(1);
        let release_rx = Arc::new(tokio::sync::Mutex::new(release_rx));
        let upstream = app(move |_req: Request<Incoming>| {
            let release_rx = Arc::clone(&release_rx);
            async move {
                let (tx, rx) = mpsc::channel(4);
                tokio::spawn(async move {
                    tx.send(Bytes::from_static(b"first,")).await.unwrap();
                    release_rx.lock().await.recv().await;
                    tx.send(Bytes::from_static(b"second")).await.unwrap();
                });
                Response::new(channel_body(rx))
            }
        })
        .await;
        let mut stand = Stand::start(settings(true)).await;
        stand.running("stream", "127.0.0.1", upstream.port()).await;

        let req = Request::get("/events")
            .header(header::HOST, Stand::host("stream"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = send(stand.addr, req).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.headers().contains_key(header::CONTENT_LENGTH));
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(
            &first[..],
            b"first,",
            "the first chunk arrives while the app still writes"
        );
        release_tx.send(()).await.unwrap();
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(&rest[..], b"second");
    })
    .await;
}

// ---- upgrades -----------------------------------------------------------------------------

#[tokio::test]
async fn a_websocket_echo_works_through_the_proxy() {
    within(async {
        let upstream = ws_echo().await;
        let mut stand = Stand::start(settings(true)).await;
        stand.running("ws", "127.0.0.1", upstream.port()).await;

        let stream = TcpStream::connect(stand.addr).await.unwrap();
        let (mut ws, response) =
            tokio_tungstenite::client_async("ws://ws.preview.test/hmr", stream)
                .await
                .unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        ws.send(Message::text("hello")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
        let big = Bytes::from(vec![7u8; 300_000]);
        ws.send(Message::binary(big.clone())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
        ws.close(None).await.unwrap();
        assert_eq!(stand.metrics.metrics().requests(Outcome::Upgraded), 1);
    })
    .await;
}

/// A WebSocket echo app on 127.0.0.1.
async fn ws_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_close() || ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    upstream
}

#[tokio::test]
async fn a_hanging_app_is_cut_at_the_upstream_time_out() {
    within(async {
        // The app reads the request and never answers.
        let hang = app(|_req| async {
            std::future::pending::<()>().await;
            text(StatusCode::OK, "never")
        })
        .await;
        let mut stand = Stand::start(Settings {
            upstream_timeout: Duration::from_secs(1),
            ..settings(true)
        })
        .await;
        stand.running("hang", "127.0.0.1", hang.port()).await;
        let started = Instant::now();
        let reply = stand.get(&Stand::host("hang"), "/").await;
        assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(stand.metrics.metrics().requests(Outcome::AppTimedOut), 1);
    })
    .await;
}

#[tokio::test]
async fn tunnels_are_capped_and_an_idle_one_is_closed() {
    within(async {
        let upstream = ws_echo().await;
        let mut stand = Stand::start(Settings {
            max_tunnels: 1,
            tunnel_idle_timeout: Duration::from_secs(1),
            ..settings(true)
        })
        .await;
        stand.running("ws", "127.0.0.1", upstream.port()).await;
        let open = || async {
            let stream = TcpStream::connect(stand.addr).await.unwrap();
            tokio_tungstenite::client_async("ws://ws.preview.test/hmr", stream).await
        };
        let (mut first, _) = open().await.unwrap();
        // A second tunnel while the first holds the only slot: 503, the app never asked.
        match open().await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            }
            other => panic!("a second tunnel: {:?}", other.map(|(_, r)| r.status())),
        }
        assert_eq!(stand.metrics.metrics().requests(Outcome::Busy), 1);
        // Traffic keeps the tunnel open past the idle time-out...
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(600)).await;
            first.send(Message::text("ping")).await.unwrap();
            assert_eq!(first.next().await.unwrap().unwrap(), Message::text("ping"));
        }
        // ...and silence closes it.
        let started = Instant::now();
        let end = first.next().await;
        assert!(
            !matches!(end, Some(Ok(Message::Text(_) | Message::Binary(_)))),
            "{end:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        // Its slot is free again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (mut again, _) = open().await.unwrap();
        again.send(Message::text("back")).await.unwrap();
        assert_eq!(again.next().await.unwrap().unwrap(), Message::text("back"));
    })
    .await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_as_they_arrive() {
    within(async {
        let stand = Stand::start(Settings {
            max_connections: 2,
            ..settings(true)
        })
        .await;
        let _a = TcpStream::connect(stand.addr).await.unwrap();
        let _b = TcpStream::connect(stand.addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = TcpStream::connect(stand.addr).await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(1), c.read_to_end(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0))), "{read:?}");
        drop((_a, _b));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            stand.get(&Stand::host("nobody"), "/").await.status,
            StatusCode::NOT_FOUND
        );
    })
    .await;
}

// ---- the address guard --------------------------------------------------------------------

#[tokio::test]
async fn addresses_outside_the_private_ranges_are_refused_without_a_connection() {
    within(async {
        let (logs, _logging) = capture_logs();
        let accepts = Arc::new(AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let loopback_port = listener.local_addr().unwrap().port();
        let counted = Arc::clone(&accepts);
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        let mut stand = Stand::start(settings(false)).await;
        stand.running("metadata", "169.254.169.254", 80).await;
        stand.running("public", "8.8.8.8", 80).await;
        stand.running("local", "127.0.0.1", loopback_port).await;
        stand.running("named", "localhost", loopback_port).await;

        for (id, why) in [
            ("metadata", "169.254.169.254 is link-local"),
            ("public", "8.8.8.8 is outside the allowed ranges"),
            ("local", "127.0.0.1 is loopback and local mode is off"),
            ("named", "\"localhost\" is not an IP address"),
        ] {
            let started = Instant::now();
            let reply = stand.get(&Stand::host(id), "/").await;
            assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{id}");
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{id} was refused at once"
            );
            for address in ["169.254", "8.8.8.8", "127.0.0.1", "localhost"] {
                assert!(!reply.body.contains(address), "the page reveals {address}");
            }
            let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
            assert!(logged.contains(why), "log says why for {id}: {logged}");
        }
        assert_eq!(
            accepts.load(Ordering::SeqCst),
            0,
            "no connection to loopback"
        );
        let metrics = stand.metrics.metrics();
        assert_eq!(metrics.requests(Outcome::Refused), 4);
        assert_eq!(metrics.upstream_errors(), 0, "no connection was attempted");
    })
    .await;
}

#[tokio::test]
async fn loops_back_into_the_proxy_are_cut() {
    within(async {
        let mut stand = Stand::start(settings(true)).await;
        // A record pointing at the proxy itself.
        stand.running("self", "127.0.0.1", stand.addr.port()).await;
        assert_eq!(
            stand.get(&Stand::host("self"), "/").await.status,
            StatusCode::BAD_GATEWAY
        );

        // A request that has come round through this proxy several times already.
        let upstream = app(|_req: Request<Incoming>| async { text(StatusCode::OK, "app") }).await;
        stand.running("app", "127.0.0.1", upstream.port()).await;
        let req = Request::get("/")
            .header(header::HOST, Stand::host("app"))
            .header(
                header::VIA,
                "1.1 cca-uat-proxy, 1.1 cca-uat-proxy, 1.1 cca-uat-proxy",
            )
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(
            send(stand.addr, req).await.status(),
            StatusCode::LOOP_DETECTED
        );
    })
    .await;
}

// ---- pages --------------------------------------------------------------------------------

#[tokio::test]
async fn each_state_of_a_session_has_its_page() {
    within(async {
        let mut stand = Stand::start(settings(true)).await;
        stand.create("provisioning").await;
        let starting = stand.create("starting").await;
        stand
            .to(&starting, Status::Starting, SessionPatch::default())
            .await;
        let no_address = stand.create("noaddress").await;
        stand
            .to(&no_address, Status::Starting, SessionPatch::default())
            .await;
        stand
            .to(&no_address, Status::Running, SessionPatch::default())
            .await;
        let stopping = stand.running("stopping", "10.0.0.5", 3000).await;
        stand
            .to(&stopping, Status::Stopping, SessionPatch::default())
            .await;
        let stopped = stand.running("stopped", "10.0.0.6", 3000).await;
        stand
            .to(&stopped, Status::Stopping, SessionPatch::default())
            .await;
        stand
            .to(&stopped, Status::Stopped, SessionPatch::default())
            .await;
        let completed = stand.running("completed", "10.0.0.7", 3000).await;
        stand
            .to(&completed, Status::Stopping, SessionPatch::default())
            .await;
        stand
            .to(&completed, Status::Completed, SessionPatch::default())
            .await;
        let failed = stand.create("failed").await;
        let error = SessionPatch {
            error: Some("npm install failed: <script>alert('x')</script> & more".into()),
            ..SessionPatch::default()
        };
        stand.to(&failed, Status::Failed, error).await;
        stand
            .running("silent", "127.0.0.1", closed_port().await)
            .await;

        for id in ["provisioning", "starting", "noaddress"] {
            let reply = stand.get(&Stand::host(id), "/").await;
            assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{id}");
            assert_eq!(reply.headers[header::RETRY_AFTER], "5", "{id}");
            assert!(
                reply
                    .body
                    .contains("<meta http-equiv=\"refresh\" content=\"5\">"),
                "{id}"
            );
            assert!(
                reply.body.contains("https://github.com/octo/hello/pull/"),
                "{id}"
            );
        }
        for id in ["stopping", "stopped", "completed"] {
            let reply = stand.get(&Stand::host(id), "/").await;
            assert_eq!(reply.status, StatusCode::GONE, "{id}");
            assert!(reply.body.contains("stopped"), "{id}");
        }
        let reply = stand.get(&Stand::host("failed"), "/").await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
        assert!(reply.body.contains("failed"));
        assert!(reply.body.contains(
            "npm install failed: &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"
        ));
        assert!(!reply.body.contains("<script>"));

        let reply = stand.get(&Stand::host("silent"), "/").await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
        assert!(reply.body.contains("not answering"));
        assert_eq!(
            stand.metrics.metrics().requests(Outcome::AppNotAnswering),
            1
        );

        let reply = stand.get(&Stand::host("nobody"), "/").await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        let reply = stand.get("elsewhere.example.com", "/").await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    })
    .await;
}

// ---- time-outs and shutdown -----------------------------------------------------------------

#[tokio::test]
async fn slow_headers_are_cut_but_idle_connections_live_until_the_idle_time_out() {
    within(async {
        let upstream = app(|_req: Request<Incoming>| async { text(StatusCode::OK, "app") }).await;
        let mut stand = Stand::start(Settings {
            header_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(1500),
            ..settings(true)
        })
        .await;
        stand.running("app", "127.0.0.1", upstream.port()).await;

        // Half a request head, then nothing: closed after the header time-out.
        let mut slow = TcpStream::connect(stand.addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: app.preview.test\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        let n = slow.read(&mut buf).await.unwrap_or(0);
        assert!(n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_millis(1200),
            "{waited:?}"
        );

        // A keep-alive connection idle for longer than the header time-out is still usable.
        let stream = TcpStream::connect(stand.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let mut conn = tokio::spawn(conn);
        let get = || {
            Request::get("/")
                .header(header::HOST, "app.preview.test")
                .body(Empty::<Bytes>::new())
                .unwrap()
        };
        let reply = Reply::read(sender.send_request(get()).await.unwrap()).await;
        assert_eq!(reply.body, "app");
        tokio::time::sleep(Duration::from_millis(700)).await;
        let reply = Reply::read(sender.send_request(get()).await.unwrap()).await;
        assert_eq!(reply.body, "app");
        // And closed once idle for the idle time-out.
        let started = Instant::now();
        let closed = tokio::time::timeout(Duration::from_secs(5), &mut conn).await;
        assert!(closed.is_ok(), "the proxy closed the idle connection");
        assert!(
            started.elapsed() >= Duration::from_millis(1200),
            "{:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_refuses_new_connections() {
    within(async {
        let arrived = Arc::new(Notify::new());
        let notify = Arc::clone(&arrived);
        let upstream = app(move |_req: Request<Incoming>| {
            let notify = Arc::clone(&notify);
            async move {
                notify.notify_one();
                tokio::time::sleep(Duration::from_millis(500)).await;
                text(StatusCode::OK, "finished after 500 ms")
            }
        })
        .await;
        let mut stand = Stand::start(settings(true)).await;
        stand.running("slow", "127.0.0.1", upstream.port()).await;

        let addr = stand.addr;
        let request = tokio::spawn(async move {
            let req = Request::get("/")
                .header(header::HOST, Stand::host("slow"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            Reply::read(send(addr, req).await).await
        });
        arrived.notified().await;
        stand.shut_down().await;

        let reply = request.await.unwrap();
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (StatusCode::OK, "finished after 500 ms")
        );
        let refused = TcpStream::connect(addr).await;
        assert!(
            refused.is_err(),
            "new connections are refused once shutdown began"
        );
        (&mut stand.served).await.unwrap().unwrap();
    })
    .await;
}

// ---- activity and metrics -------------------------------------------------------------------

#[tokio::test]
async fn requests_within_a_minute_record_activity_once() {
    within(async {
        let upstream = app(|_req: Request<Incoming>| async { text(StatusCode::OK, "app") }).await;
        let store = InstrumentedStore::new();
        let mut stand = Stand::with_store(store.clone(), settings(true)).await;
        let id = stand.running("busy", "127.0.0.1", upstream.port()).await;

        assert_eq!(
            stand.get(&Stand::host("busy"), "/").await.status,
            StatusCode::OK
        );
        while store.activity_writes() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            stand.get(&Stand::host("busy"), "/a.js").await.status,
            StatusCode::OK
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(store.activity_writes(), 1);
        let record = store.get(&id).await.unwrap().unwrap();
        assert!(record.last_activity.is_some_and(|t| t > NOW));
        assert_eq!(record.status, Status::Running);
    })
    .await;
}

#[tokio::test]
async fn metrics_are_served_in_the_prometheus_text_format() {
    within(async {
        let upstream = app(|_req: Request<Incoming>| async { text(StatusCode::OK, "app") }).await;
        let mut stand = Stand::start(settings(true)).await;
        stand.running("app", "127.0.0.1", upstream.port()).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_addr = listener.local_addr().unwrap();
        tokio::spawn(cca_uat_proxy::metrics::serve(
            stand.metrics.clone(),
            listener,
            std::future::pending(),
        ));

        stand.get(&Stand::host("app"), "/").await;
        stand.get(&Stand::host("app"), "/").await;
        stand.get(&Stand::host("gone"), "/").await;

        let req = Request::get("/metrics")
            .header(header::HOST, "metrics")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let reply = Reply::read(send(metrics_addr, req).await).await;
        assert_eq!(reply.status, StatusCode::OK);
        for line in [
            "cca_uat_proxy_requests_total{outcome=\"proxied\"} 2",
            "cca_uat_proxy_requests_total{outcome=\"unknown_session\"} 1",
            "cca_uat_proxy_response_seconds_count 3",
            "cca_uat_proxy_cache_hits_total 1",
            "cca_uat_proxy_cache_misses_total 2",
            "cca_uat_proxy_upstream_errors_total{kind=\"connect\"} 0",
            "# TYPE cca_uat_proxy_open_connections gauge",
        ] {
            assert!(
                reply.body.lines().any(|l| l == line),
                "{line} in\n{}",
                reply.body
            );
        }
    })
    .await;
}

/// Through the proxy: 100 concurrent requests for a cold host cost one store read, an unknown
/// host is remembered as unknown, and when the store becomes unreachable known hosts keep
/// working from their (stale) entries while unknown ones get the "unavailable" page.
#[tokio::test]
async fn cold_hosts_cost_one_read_and_known_hosts_survive_a_store_outage() {
    within(async {
        let upstream = app(|_req: Request<Incoming>| async { text(StatusCode::OK, "app") }).await;
        let store = InstrumentedStore::new();
        let mut config = settings(true);
        config.cache.positive_ttl = Duration::from_millis(100);
        config.cache.negative_ttl = Duration::from_millis(100);
        let mut stand = Stand::with_store(store.clone(), config).await;
        stand.running("cold", "127.0.0.1", upstream.port()).await;
        // Widen the window in which concurrent misses could each read.
        store.set_latency(Duration::from_millis(20));
        let reads = || store.gets();
        let (cold, nobody) = (Stand::host("cold"), Stand::host("nobody"));
        let before = reads();

        let replies = futures::future::join_all((0..100).map(|_| stand.get(&cold, "/"))).await;
        assert!(replies.iter().all(|r| r.status == StatusCode::OK));
        assert_eq!(
            reads() - before,
            1,
            "100 concurrent requests for a cold host: one read"
        );

        let replies = futures::future::join_all((0..20).map(|_| stand.get(&nobody, "/"))).await;
        assert!(replies.iter().all(|r| r.status == StatusCode::NOT_FOUND));
        assert_eq!(reads() - before, 2, "one read for the unknown host too");
        assert_eq!(
            stand.get(&Stand::host("nobody"), "/").await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(reads() - before, 2, "the unknown host is remembered");

        // Let the entries expire, then lose the store.
        tokio::time::sleep(Duration::from_millis(200)).await;
        store.set_mode(ReadMode::Fail);
        let known = stand.get(&Stand::host("cold"), "/").await;
        assert_eq!((known.status, known.body.as_str()), (StatusCode::OK, "app"));
        let unknown = stand.get(&Stand::host("never-seen"), "/").await;
        assert_eq!(unknown.status, StatusCode::SERVICE_UNAVAILABLE);

        // The same, as the metrics listener reports it in Prometheus text.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_addr = listener.local_addr().unwrap();
        let (_stop_metrics, stopped) = oneshot::channel::<()>();
        tokio::spawn(cca_uat_proxy::metrics::serve(
            stand.metrics.clone(),
            listener,
            async {
                let _ = stopped.await;
            },
        ));
        let text = reqwest::get(format!("http://{metrics_addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in [
            // Two cold reads, the failed re-read of `cold`, the read of `never-seen`.
            "cca_uat_proxy_cache_misses_total 4\n",
            "cca_uat_proxy_cache_stale_served_total 1\n",
            "cca_uat_proxy_requests_total{outcome=\"store_unavailable\"} 1\n",
            "cca_uat_proxy_requests_total{outcome=\"proxied\"} 101\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        stand.shut_down().await;
    })
    .await;
}

// ---- workers ------------------------------------------------------------------------------

/// Served by several workers (each a thread with a runtime of its own accepting from one
/// listening socket), every connection is answered through the app from the one session
/// cache, the metrics count them all, and a shutdown ends every worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_workers_share_one_port_one_cache_and_one_shutdown() {
    within(async {
        let upstream =
            app(|_req: Request<Incoming>| async { text(StatusCode::OK, "from the app") }).await;
        let store: Arc<dyn SessionStore> = Arc::new(SqliteStore::in_memory().unwrap());
        let mut stand = Stand::with_store(Arc::clone(&store), settings(true)).await;
        stand
            .running("tt-workers", "127.0.0.1", upstream.port())
            .await;
        stand.shut_down().await;

        let proxy = Proxy::new(Arc::clone(&store), settings(true));
        let metrics = proxy.metrics();
        let listener = cca_uat_proxy::proxy::listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let served = tokio::spawn(proxy.serve_workers(listener, 3, stopped));
        for _ in 0..24 {
            let req = Request::get("/")
                .header(header::HOST, Stand::host("tt-workers"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let reply = Reply::read(send(addr, req).await).await;
            assert_eq!(
                (reply.status, reply.body.as_str()),
                (StatusCode::OK, "from the app")
            );
        }
        assert_eq!(metrics.metrics().requests(Outcome::Proxied), 24);
        // One cache for all workers: the session was read from the store once.
        let text = metrics.render();
        assert!(
            text.lines().any(|l| l.ends_with("cache_misses_total 1")),
            "{text}"
        );
        let _ = stop.send(true);
        served.await.unwrap().unwrap();
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "no worker accepts after the shutdown"
        );
    })
    .await;
}
