//! The proxy server: accepts client connections and takes each request through its phases.
//!
//! 1. Route: the host names a session (`<id>.<suffix>`, any case, port ignored), or it is the
//!    load balancer's health check, or nothing served here.
//! 2. Look up the session through the read-through cache.
//! 3. Admit: sign-in with GitHub ([`crate::gate`]) unless the preview is public or sign-in is
//!    off; the auth host's own requests are answered by the gate before any look-up.
//! 4. Decide from the record: forward to its address (if the guard allows it) or answer a page.
//! 5. Forward: hop-by-hop headers removed, `X-Forwarded-*` set, the gate's cookies removed,
//!    bodies streamed both ways, upgrades (WebSocket) joined into a tunnel.
//! 6. Count the outcome and note the session's activity (admitted requests only).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cca_domain::{Session, SessionId, Status};
use cca_store::SessionStore;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::Instrument as _;

use crate::activity::Activity;
use crate::cache::{Lookup, SessionCache};
use crate::config::Settings;
use crate::conn::{ConnState, Expired, InFlight, Watched};
use crate::gate::{Admission, Gate};
use crate::metrics::{Metrics, MetricsHandle, Outcome, UpstreamError};
use crate::pages::{self, Page};
use cca_domain::address::{Guard, Refusal};

/// How many times a request may already have passed through this proxy (counted in `Via`)
/// before it is refused as a loop. An app may legitimately call another preview through the
/// load balancer (one earlier pass); a record pointing back at a proxy makes an endless chain,
/// cut here after a few passes.
pub const MAX_HOPS: usize = 3;

/// How long an idle upstream connection is kept for reuse. Just under Node's default
/// keep-alive time-out (5 s), which most dev servers run with: reusing a connection the app is
/// closing would fail the request.
pub const UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(4);

/// Idle upstream connections kept per app by each worker: enough for a browser's parallel
/// requests (six per host) several times over.
pub const UPSTREAM_POOL_MAX_IDLE: usize = 128;

/// This proxy's entry in `Via`, by which it recognises its own requests coming back.
const VIA_TOKEN: &str = "cca-uat-proxy";

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), and are never
/// forwarded; `Proxy-*` headers go too. Headers named in `Connection` are removed as well.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The proxy, before it serves. See the module documentation.
#[derive(Debug)]
pub struct Proxy {
    store: Arc<dyn SessionStore>,
    settings: Settings,
    guard: Guard,
    cache: SessionCache,
    metrics: Arc<Metrics>,
}

impl Proxy {
    /// A proxy serving the sessions in `store` under `settings`.
    pub fn new(store: Arc<dyn SessionStore>, settings: Settings) -> Self {
        let cache = SessionCache::new(Arc::clone(&store), settings.cache);
        Self {
            store,
            guard: settings.guard(),
            settings,
            cache,
            metrics: Arc::new(Metrics::default()),
        }
    }

    /// Never forwards to `addr` (another listener of this process, e.g. the metrics one). The
    /// proxy listener given to [`Proxy::serve`] is refused without being named here.
    pub fn refuse_listener(&mut self, addr: SocketAddr) {
        self.guard.refuse_listener(addr);
    }

    /// What the metrics listener serves.
    pub fn metrics(&self) -> MetricsHandle {
        MetricsHandle {
            metrics: Arc::clone(&self.metrics),
            cache: self.cache.clone(),
        }
    }

    /// Serves clients from `listener` until `shutdown` completes; then stops accepting (new
    /// connections are refused), lets requests in flight finish for at most the drain time-out,
    /// and returns. Upgraded connections (WebSocket) are not waited for: they end with the
    /// process, and clients reconnect.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let local = listener.local_addr()?;
        let core = self.core(local);
        serve_listener(worker(&core), listener, shutdown).await;
        Ok(())
    }

    /// Serves with `workers` threads, each with a runtime of its own, a listener of its own on
    /// the address of `listener` (made by [`listener`]: `SO_REUSEPORT`, the kernel spreads new
    /// connections over the workers' listeners) and its own upstream connections, so that no
    /// request is handed from thread to thread; the session cache, the gate, the metrics, the
    /// activity writer and the connection caps are shared. Stops as [`Proxy::serve`] does when
    /// `shutdown` turns true, or as soon as any worker ends by itself (an error or a panic),
    /// and returns once every worker has drained. No runtime is dropped before all have
    /// drained: a store read or a GitHub connection one worker's runtime drives may serve
    /// another's requests. With one worker it serves on the calling runtime.
    pub async fn serve_workers(
        self,
        listener: TcpListener,
        workers: usize,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<()> {
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        if workers <= 1 {
            return self.serve(listener, stopped(shutdown)).await;
        }
        let local = listener.local_addr()?;
        // Everything that can fail is made before any worker starts.
        let mut first = Some(listener.into_std()?);
        let mut parts = Vec::with_capacity(workers);
        for _ in 0..workers {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let own = match first.take() {
                Some(l) => l,
                None => self::listener(local)?.into_std()?,
            };
            parts.push((runtime, own));
        }
        let core = self.core(local);
        // Stops every worker: the caller's shutdown, or a worker that ended by itself.
        let (stop_all, stop_rx) = watch::channel(false);
        let mut outer = shutdown;
        let relay = stop_all.clone();
        tokio::spawn(async move {
            let _ = outer.wait_for(|stop| *stop).await;
            let _ = relay.send(true);
        });
        let all_drained = Arc::new(tokio::sync::Barrier::new(workers));
        let mut threads = Vec::with_capacity(workers);
        for (n, (runtime, std_listener)) in parts.into_iter().enumerate() {
            let (core, stop_rx, ends_all) = (Arc::clone(&core), stop_rx.clone(), stop_all.clone());
            let all_drained = Arc::clone(&all_drained);
            let spawned = std::thread::Builder::new()
                .name(format!("proxy-worker-{n}"))
                .spawn(move || -> io::Result<()> {
                    // However this worker ends, the others stop and are waited for.
                    struct Ends(watch::Sender<bool>);
                    impl Drop for Ends {
                        fn drop(&mut self) {
                            let _ = self.0.send(true);
                        }
                    }
                    let ends = Ends(ends_all);
                    runtime.block_on(async move {
                        let served = async {
                            let listener = TcpListener::from_std(std_listener)?;
                            serve_listener(worker(&core), listener, stopped(stop_rx)).await;
                            io::Result::Ok(())
                        }
                        .await;
                        drop(ends);
                        all_drained.wait().await;
                        served
                    })
                });
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    // The workers started so far stop; a barrier they wait at will not fill,
                    // so the process ends with this error.
                    let _ = stop_all.send(true);
                    return Err(e);
                }
            }
        }
        tracing::info!(workers, "proxy workers serving");
        tokio::task::spawn_blocking(move || {
            let mut first_error = None;
            for t in threads {
                let result = t
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("a proxy worker panicked")));
                if let Err(e) = result {
                    tracing::error!(error = %e, "a proxy worker ended");
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// What every worker shares, for a proxy listening on `local`.
    fn core(self, local: SocketAddr) -> Arc<Core> {
        let mut guard = self.guard;
        guard.refuse_listener(local);
        let suffix = &self.settings.domain_suffix;
        tracing::info!(%local, %suffix, allowed = %guard, "proxy serving");
        let gate = self
            .settings
            .gate
            .clone()
            .map(|g| Arc::new(Gate::new(g, &self.settings.domain_suffix)));
        match &gate {
            Some(_) => {
                tracing::info!(auth = %format!("{}.{suffix}", crate::gate::AUTH_LABEL), "previews need sign-in with GitHub")
            }
            None => {
                tracing::warn!("previews are open to anyone who reaches the proxy: sign-in is off")
            }
        }
        Arc::new(Core {
            gate,
            activity: Arc::new(Activity::start(
                Arc::clone(&self.store),
                self.settings.activity_interval,
                Arc::clone(&self.metrics),
            )),
            connections: Arc::new(Semaphore::new(self.settings.max_connections.max(1))),
            tunnels: Arc::new(Semaphore::new(self.settings.max_tunnels.max(1))),
            settings: self.settings,
            guard,
            cache: self.cache,
            metrics: self.metrics,
        })
    }
}

/// A listening socket on `addr` that the other workers' listeners join (`SO_REUSEPORT`), with
/// room for [`LISTEN_BACKLOG`] connections waiting to be accepted. Measured against one socket
/// shared by every worker, a listener per worker cost a quarter less CPU per request on one
/// connection (docs/PERFORMANCE.md). The kernel lets only processes of the same user join the
/// port: a second proxy of that user on the same port would take a share of the connections
/// rather than fail (docs/SECURITY.md).
pub fn listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Connections waiting to be accepted, per listener.
const LISTEN_BACKLOG: u32 = 1024;

/// What every worker of a serving proxy shares.
#[derive(Debug)]
struct Core {
    settings: Settings,
    /// Sign-in in front of previews; `None` when it is off.
    gate: Option<Arc<Gate>>,
    guard: Guard,
    cache: SessionCache,
    metrics: Arc<Metrics>,
    activity: Arc<Activity>,
    /// Slots for client connections (`max_connections`), across workers.
    connections: Arc<Semaphore>,
    /// Slots for upgraded tunnels (`max_tunnels`), across workers.
    tunnels: Arc<Semaphore>,
}

/// One worker's view: the shared core and an upstream client of its own runtime.
fn worker(core: &Arc<Core>) -> Arc<Shared> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(core.settings.connect_timeout));
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(UPSTREAM_POOL_IDLE)
        .pool_max_idle_per_host(UPSTREAM_POOL_MAX_IDLE)
        .build(connector);
    Arc::new(Shared {
        core: Arc::clone(core),
        client,
    })
}

/// Accepts clients from `listener` for `shared` until `shutdown`, then drains as
/// [`Proxy::serve`] says.
async fn serve_listener(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    // Every connection holds a receiver; the sender learns when the last one is gone.
    let (drain, _) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match Arc::clone(&shared.connections).try_acquire_owned() {
                    Ok(slot) => spawn_connection(
                        Arc::clone(&shared),
                        stream,
                        peer,
                        drain.subscribe(),
                        slot,
                    ),
                    // Over the cap: closed at once, before a byte is read.
                    Err(_) => {
                        tracing::debug!(%peer, "connection cap reached: closing a new connection");
                        drop(stream);
                    }
                },
                Err(err) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let open = drain.receiver_count();
    tracing::info!(open, "stopped accepting; draining connections");
    let _ = drain.send(());
    let drain_timeout = shared.settings.drain_timeout;
    if tokio::time::timeout(drain_timeout, drain.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            open = drain.receiver_count(),
            "drain time-out: closing connections with requests in flight"
        );
    } else {
        tracing::info!("drained");
    }
}

/// What every request of one worker shares: the proxy's [`Core`] (through `Deref`) and this
/// worker's upstream connections.
#[derive(Debug)]
struct Shared {
    core: Arc<Core>,
    client: Client<HttpConnector, Incoming>,
}

impl std::ops::Deref for Shared {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

fn spawn_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    mut drain: watch::Receiver<()>,
    slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let state = ConnState::new();
    let io = TokioIo::new(Watched::new(stream, Arc::clone(&state)));
    let open = shared.metrics.connection();
    let (header_timeout, idle_timeout) =
        (shared.settings.header_timeout, shared.settings.idle_timeout);
    let service_state = Arc::clone(&state);
    let service = service_fn(move |req| {
        let in_flight = service_state.begin_request();
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(&shared, peer, req, in_flight).await) }
    });
    tokio::spawn(async move {
        let _open = open;
        let _slot = slot;
        let mut builder = http1::Builder::new();
        // Header and idle time-outs are kept by `ConnState` (see `conn`), not by hyper.
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .keep_alive(true);
        let mut conn = pin!(builder.serve_connection(io, service).with_upgrades());
        let mut draining = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(%peer, error = %err, "client connection ended");
                    }
                    break;
                }
                _ = drain.changed(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                expired = state.expired(header_timeout, idle_timeout) => {
                    if expired == Expired::Headers {
                        // Debug only: a flood of slow clients must not flood the log too.
                        tracing::debug!(%peer, "request headers too slow: closing the connection");
                    }
                    break;
                }
            }
        }
        drop(drain);
    });
}

/// Answers one request and counts it.
async fn handle(
    shared: &Shared,
    peer: SocketAddr,
    req: Request<Incoming>,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let (outcome, response) = respond(shared, peer, req).await;
    shared.metrics.request(outcome, started.elapsed());
    response.map(|body| body.until_done(in_flight))
}

async fn respond(
    shared: &Shared,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> (Outcome, Response<ProxyBody>) {
    if req.method() == Method::CONNECT {
        return page(Page::MethodNotAllowed);
    }
    let host = request_host(&req);
    if let (Some(gate), Some(h)) = (&shared.gate, host.as_deref()) {
        if gate.is_auth_host(h) {
            let (outcome, response) = gate.auth_request(req.method(), req.uri(), h).await;
            return (outcome, response.map(ProxyBody::full));
        }
    }
    let Some(id) = host
        .as_deref()
        .and_then(|h| session_host(h, &shared.settings.domain_suffix))
    else {
        if req.uri().path() == "/health" && matches!(*req.method(), Method::GET | Method::HEAD) {
            return page(Page::Health);
        }
        tracing::debug!(host = host.as_deref().unwrap_or(""), "not a preview host");
        return page(Page::UnknownHost);
    };
    // The root span of a preview's request: every line from here on says whose it is (at
    // ERROR level, so that it is there whatever RUST_LOG keeps).
    let span = tracing::error_span!("preview", session = %id);
    respond_to_session(shared, peer, req, host, id)
        .instrument(span)
        .await
}

/// The phases after routing, for the session the host names.
async fn respond_to_session(
    shared: &Shared,
    peer: SocketAddr,
    req: Request<Incoming>,
    host: Option<String>,
    id: SessionId,
) -> (Outcome, Response<ProxyBody>) {
    let found = match shared.cache.lookup(&id).await {
        Lookup::Found(session) => Some(session),
        Lookup::Missing => None,
        Lookup::Unavailable(why) => {
            tracing::warn!(error = %why, "session store unavailable");
            return page(Page::StoreUnavailable);
        }
    };
    // The gate comes before anything the record says: an anonymous visitor learns neither
    // whether the preview exists nor its state, error or PR.
    if let Some(gate) = &shared.gate {
        // The sign-in return is the proxy's on every preview host, public ones too.
        let public = found.as_ref().is_some_and(|s| s.preview_public)
            && req.uri().path() != crate::gate::SIGNIN_PATH;
        if !public {
            let repo = found.as_ref().map(|s| s.repo_full_name.as_str());
            let host = host.as_deref().unwrap_or_default();
            if let Admission::Respond(outcome, response) = gate
                .admit(req.method(), req.uri(), req.headers(), host, repo)
                .await
            {
                return (outcome, response.map(ProxyBody::full));
            }
        }
    }
    let Some(session) = found else {
        return page(Page::UnknownSession);
    };
    let target = match decide(&session, &shared.guard) {
        Ok(target) => target,
        Err(Blocked::Page(p)) => return page(p),
        Err(Blocked::Refused(refusal)) => {
            tracing::warn!(reason = %refusal, "upstream address refused");
            return page(Page::Refused);
        }
    };
    if passes(req.headers()) >= MAX_HOPS {
        tracing::warn!("request loop: it has passed this proxy {MAX_HOPS} times");
        return page(Page::LoopDetected);
    }
    shared.activity.note(&id);
    let host = host.unwrap_or_default();
    forward(shared, peer, &host, &session, target, req).await
}

fn page(page: Page) -> (Outcome, Response<ProxyBody>) {
    let outcome = match page {
        Page::Health => Outcome::Health,
        Page::UnknownHost => Outcome::UnknownHost,
        Page::UnknownSession => Outcome::UnknownSession,
        Page::Starting { .. } => Outcome::Starting,
        Page::Stopped { .. } => Outcome::Stopped,
        Page::Failed { .. } => Outcome::Failed,
        Page::AppNotAnswering { .. } => Outcome::AppNotAnswering,
        Page::AppError { .. } => Outcome::AppError,
        Page::AppTimedOut { .. } => Outcome::AppTimedOut,
        Page::Busy => Outcome::Busy,
        Page::StoreUnavailable => Outcome::StoreUnavailable,
        Page::Refused => Outcome::Refused,
        Page::LoopDetected => Outcome::LoopDetected,
        Page::MethodNotAllowed => Outcome::NotAllowed,
        Page::SignInRequired => Outcome::SignIn,
        Page::Forbidden { .. } | Page::CrossSite => Outcome::Forbidden,
        Page::AccessUnavailable => Outcome::AccessUnavailable,
        Page::BadSignIn { .. } => Outcome::Auth,
    };
    (outcome, page.response().map(ProxyBody::full))
}

/// Why a session's request is not forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// The session's state has a page of its own.
    Page(Page),
    /// The recorded address may not be connected to.
    Refused(Refusal),
}

/// Where a request for `session` goes: its app's address, or why not.
pub fn decide(session: &Session, guard: &Guard) -> Result<SocketAddr, Blocked> {
    // Built only for a page: forwarding, the common case, needs no link.
    let pr_link = || pages::pr_link(session);
    match session.status {
        Status::Provisioning | Status::Queued | Status::Starting => {
            Err(Blocked::Page(Page::Starting { pr_link: pr_link() }))
        }
        Status::Running | Status::Idle => match (&session.container_ip, session.app_port) {
            (Some(ip), Some(port)) => guard.check(ip, port).map_err(Blocked::Refused),
            _ => Err(Blocked::Page(Page::Starting { pr_link: pr_link() })),
        },
        Status::Stopping | Status::Stopped | Status::Completed => {
            Err(Blocked::Page(Page::Stopped { pr_link: pr_link() }))
        }
        Status::Failed => Err(Blocked::Page(Page::Failed {
            pr_link: pr_link(),
            error: session.error.clone(),
        })),
    }
}

async fn forward(
    shared: &Shared,
    peer: SocketAddr,
    host: &str,
    session: &Session,
    target: SocketAddr,
    mut req: Request<Incoming>,
) -> (Outcome, Response<ProxyBody>) {
    let id = &session.session_id;
    let upgrade = upgrade_protocol(req.headers());
    // A tunnel's slot is taken before the app is asked, so a refused upgrade costs it nothing.
    let tunnel_slot = match upgrade {
        Some(_) => match Arc::clone(&shared.tunnels).try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) => {
                tracing::warn!("tunnel cap reached: upgrade refused");
                return page(Page::Busy);
            }
        },
        None => None,
    };
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    // The origin-form target as the client sent it (shared bytes, not copied), on the app's
    // address; `OPTIONS *` and the like have no path to forward.
    let path = match parts.uri.path_and_query() {
        Some(pq) if pq.as_str().starts_with('/') => Ok(pq.clone()),
        // An absolute-form target with a query and no path: its path is `/`.
        Some(pq) if pq.as_str().starts_with('?') => {
            http::uri::PathAndQuery::try_from(format!("/{pq}"))
        }
        Some(_) => return page(Page::MethodNotAllowed),
        None => Ok(http::uri::PathAndQuery::from_static("/")),
    };
    let uri = path.ok().and_then(|path| {
        Uri::builder()
            .scheme(http::uri::Scheme::HTTP)
            .authority(target.to_string())
            .path_and_query(path)
            .build()
            .ok()
    });
    let Some(uri) = uri else {
        return page(Page::MethodNotAllowed);
    };
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let host_value = if shared.settings.rewrite_host {
        target.to_string()
    } else {
        host.to_owned()
    };
    forwarded_headers(&mut parts.headers, peer.ip(), host, &host_value, upgrade);
    if let Some(gate) = &shared.gate {
        gate.strip_request_cookies(&mut parts.headers);
    }

    let exchange = shared.client.request(Request::from_parts(parts, body));
    let Ok(answer) = tokio::time::timeout(shared.settings.upstream_timeout, exchange).await else {
        shared.metrics.upstream_error(UpstreamError::Timeout);
        tracing::warn!(timeout = ?shared.settings.upstream_timeout, "app did not answer in time");
        return page(Page::AppTimedOut {
            pr_link: pages::pr_link(session),
        });
    };
    let mut response = match answer {
        Ok(response) => response,
        Err(err) if err.is_connect() => {
            shared.metrics.upstream_error(UpstreamError::Connect);
            // The app may have moved (a new container): read the record again next time.
            shared.cache.invalidate(id);
            tracing::info!(error = %error_chain(&err), "app not answering");
            return page(Page::AppNotAnswering {
                pr_link: pages::pr_link(session),
            });
        }
        Err(err) => {
            shared.metrics.upstream_error(UpstreamError::Exchange);
            tracing::warn!(error = %error_chain(&err), "app exchange failed");
            return page(Page::AppError {
                pr_link: pages::pr_link(session),
            });
        }
    };

    if let Some(gate) = &shared.gate {
        gate.strip_response_cookies(response.headers_mut());
    }
    let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let outcome = match (switched, client_upgrade) {
        (false, _) => {
            strip_hop_by_hop(response.headers_mut());
            Outcome::Proxied
        }
        (true, Some(client_upgrade)) => {
            let protocol = response.headers().get(header::UPGRADE).cloned();
            strip_hop_by_hop(response.headers_mut());
            if let Some(protocol) = protocol {
                let headers = response.headers_mut();
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(header::UPGRADE, protocol);
            }
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let tunnel = shared.metrics.tunnel();
            let metrics = Arc::clone(&shared.metrics);
            let idle = shared.settings.tunnel_idle_timeout;
            tokio::spawn(
                async move {
                    let _tunnel = tunnel;
                    let _slot = tunnel_slot;
                    join_upgrades(client_upgrade, upstream_upgrade, idle, &metrics).await;
                }
                .in_current_span(),
            );
            Outcome::Upgraded
        }
        (true, None) => {
            // Switching protocols without being asked leaves the client unable to follow.
            shared.metrics.upstream_error(UpstreamError::Exchange);
            tracing::warn!("app switched protocols without an upgrade request");
            return page(Page::AppError {
                pr_link: pages::pr_link(session),
            });
        }
    };
    tracing::debug!(status = response.status().as_u16(), "proxied");
    (outcome, response.map(ProxyBody::upstream))
}

/// Copies bytes both ways between the client and the app once both sides have switched, until
/// either closes or nothing has passed for `idle`.
async fn join_upgrades(client: OnUpgrade, upstream: OnUpgrade, idle: Duration, metrics: &Metrics) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(err) => {
            metrics.upstream_error(UpstreamError::Upgrade);
            tracing::debug!(error = %err, "upgrade not completed");
            return;
        }
    };
    let last = crate::conn::Stamp::now();
    let mut client = crate::conn::Stamped::new(TokioIo::new(client), last.clone());
    let mut upstream = crate::conn::Stamped::new(TokioIo::new(upstream), last.clone());
    let mut copy = pin!(tokio::io::copy_bidirectional(&mut client, &mut upstream));
    loop {
        let quiet_until = last.get() + idle;
        tokio::select! {
            result = copy.as_mut() => {
                match result {
                    Ok((sent, received)) => {
                        tracing::debug!(sent, received, "upgraded connection closed");
                    }
                    Err(err) => tracing::debug!(error = %err, "upgraded connection ended"),
                }
                return;
            }
            () = tokio::time::sleep_until(quiet_until) => {
                if last.get() + idle <= tokio::time::Instant::now() {
                    tracing::debug!(?idle, "tunnel idle: closing it");
                    return;
                }
            }
        }
    }
}

/// The host the client asked for: the absolute URI's authority, else the `Host` header.
fn request_host<B>(req: &Request<B>) -> Option<String> {
    if let Some(authority) = req.uri().authority() {
        return Some(authority.as_str().to_owned());
    }
    req.headers()
        .get(header::HOST)?
        .to_str()
        .ok()
        .map(str::to_owned)
}

/// The session named by `host` when it is `<id>.<suffix>` (any case, port and a trailing dot
/// ignored); `suffix` is lower case.
pub fn session_host(host: &str, suffix: &str) -> Option<SessionId> {
    let name = strip_port(host.trim())
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let label = name.strip_suffix(suffix)?.strip_suffix('.')?;
    if label.contains('.') {
        return None;
    }
    SessionId::parse(label).ok()
}

pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(v6, _)| v6);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The protocol asked for when the request is an upgrade (`Connection: upgrade` with
/// `Upgrade: <protocol>`).
pub(crate) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    connection_tokens(headers)
        .any(|t| t.eq_ignore_ascii_case("upgrade"))
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes the headers that belong to one connection: the standard hop-by-hop set, `Proxy-*`,
/// and whatever `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        // The body's framing is not the client's to remove.
        .filter(|name| *name != header::CONTENT_LENGTH)
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

/// Prepares a request's headers for the app: hop-by-hop removed (except an upgrade's
/// `Connection: upgrade` and `Upgrade`), `X-Forwarded-For` appended, `X-Forwarded-Proto` kept
/// from the load balancer (else `http`), `X-Forwarded-Host` set, `Host` set, `Via` appended.
pub fn forwarded_headers(
    headers: &mut HeaderMap,
    client_ip: IpAddr,
    original_host: &str,
    host: &str,
    upgrade: Option<HeaderValue>,
) {
    strip_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    let client_ip = client_ip.to_canonical().to_string();
    let earlier: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let xff = if earlier.is_empty() {
        client_ip
    } else {
        format!("{}, {client_ip}", earlier.join(", "))
    };
    set(headers, "x-forwarded-for", &xff);
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    set(headers, "x-forwarded-host", original_host);
    set(headers, header::HOST.as_str(), host);
    let via: Vec<&str> = headers
        .get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let via = if via.is_empty() {
        format!("1.1 {VIA_TOKEN}")
    } else {
        format!("{}, 1.1 {VIA_TOKEN}", via.join(", "))
    };
    set(headers, header::VIA.as_str(), &via);
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(value) => {
            headers.insert(name, value);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

/// How many times this proxy's `Via` entry appears already.
fn passes(headers: &HeaderMap) -> usize {
    headers
        .get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|entry| entry.split_whitespace().nth(1) == Some(VIA_TOKEN))
        .count()
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A response body: the app's, streamed as it arrives, or one of the proxy's pages. It keeps
/// its request counted as in flight until it is done.
#[derive(Debug)]
pub struct ProxyBody {
    kind: Kind,
    in_flight: Option<InFlight>,
}

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    Upstream(Incoming),
}

impl ProxyBody {
    fn full(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full(Some(bytes).filter(|b| !b.is_empty())),
            in_flight: None,
        }
    }

    fn upstream(body: Incoming) -> Self {
        Self {
            kind: Kind::Upstream(body),
            in_flight: None,
        }
    }

    fn until_done(mut self, in_flight: InFlight) -> Self {
        self.in_flight = Some(in_flight);
        self
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let poll = match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(body) => Pin::new(body).poll_frame(cx),
        };
        if matches!(poll, Poll::Ready(None)) {
            this.in_flight = None;
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_hosts() {
        let id = |h: &str| session_host(h, "preview.test").map(|id| id.to_string());
        assert_eq!(id("abc.preview.test").as_deref(), Some("abc"));
        assert_eq!(id("ABC.Preview.TEST:8080").as_deref(), Some("abc"));
        assert_eq!(
            id("tt-feature-x.preview.test.").as_deref(),
            Some("tt-feature-x")
        );
        for other in [
            "preview.test",
            "a.b.preview.test",
            "abc.preview.test.evil.com",
            "abcpreview.test",
            "abc.other.test",
            "10.0.0.1",
            "[::1]:80",
            "under_score.preview.test",
            "",
        ] {
            assert_eq!(id(other), None, "{other}");
        }
    }

    #[test]
    fn hop_by_hop_headers_go_and_forwarding_headers_come() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        forwarded_headers(
            &mut h,
            "::ffff:10.0.0.9".parse().unwrap(),
            "a.p.test",
            "a.p.test",
            None,
        );
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "proxy-authorization",
            "te",
            "upgrade",
        ] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.p.test");
        assert_eq!(h[header::HOST], "a.p.test");
        assert_eq!(h[header::ACCEPT], "*/*");
        assert_eq!(passes(&h), 1);
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let upgrade = upgrade_protocol(&h);
        assert_eq!(
            upgrade.as_ref().map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        forwarded_headers(
            &mut h,
            "10.0.0.1".parse().unwrap(),
            "a",
            "10.0.0.5:3000",
            upgrade,
        );
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::HOST], "10.0.0.5:3000");
    }
}
