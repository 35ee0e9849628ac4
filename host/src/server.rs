//! The accept loop: a thin loop around hyper's `serve_connection`, with graceful shutdown
//! (requests in flight finish; new connections are refused).

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::FutureExt as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tracing::{debug, error, info, warn};

use crate::app::App;
use crate::pace::{Pace, Paced};
use crate::respond::{Body, Refusal};

/// How long a TLS client may take to finish its handshake.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// Requests one HTTP/2 connection may have in flight at once.
const MAX_STREAMS: u32 = 256;

/// Drives one connection until it ends, or, once `stopping` says so, lets its requests in
/// flight finish and closes it (`graceful_shutdown`, which HTTP/1.1 with upgrades, HTTP/2
/// and the auto-detecting connection each have), or, once `overdue` resolves (no request
/// head within `[server] header_timeout`, nothing in flight), closes it at once.
macro_rules! drive {
    ($conn:expr, $stopping:expr, $peer:expr, $overdue:expr) => {{
        let conn = $conn;
        let mut stopping = $stopping;
        tokio::pin!(conn);
        let ended = tokio::select! {
            ended = conn.as_mut() => ended.map_err(|e| e.to_string()),
            () = async { drop(stopping.wait_for(|stop| *stop).await) } => {
                conn.as_mut().graceful_shutdown();
                conn.await.map_err(|e| e.to_string())
            }
            () = $overdue => {
                debug!(peer = %$peer, "no request head within header_timeout: connection closed");
                Ok(())
            }
        };
        if let Err(err) = ended {
            debug!(peer = %$peer, error = %err, "connection ended with an error");
        }
    }};
}

/// The largest request head hyper buffers while parsing; `App` also refuses a parsed head
/// whose headers add up to more than this, with 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The app being served, replaced whole on a successful reload. A request keeps the app it
/// started with until it ends.
#[derive(Debug)]
pub struct AppSlot {
    current: RwLock<Arc<App>>,
    /// Bumped by every replacement, so that connections notice with one atomic load.
    generation: AtomicU64,
}

impl AppSlot {
    pub fn new(app: App) -> Self {
        AppSlot { current: RwLock::new(Arc::new(app)), generation: AtomicU64::new(0) }
    }

    pub fn get(&self) -> Arc<App> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn replace(&self, app: App) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(app);
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// One connection's view of the slot. Requests clone the connection's own handle, so they
/// do not all write to the one reference count the app's `Arc` shares across cores; a
/// reload is seen by the next request (one atomic load).
struct ConnApp {
    slot: Arc<AppSlot>,
    cached: RefCell<(u64, Arc<Pinned>)>,
}

/// The app as one connection holds it: its own reference count, cloned per request.
struct Pinned(Arc<App>);

/// A request's handle on its connection's app.
struct RequestApp(Arc<Pinned>);

impl std::ops::Deref for RequestApp {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0 .0
    }
}

impl ConnApp {
    fn new(slot: Arc<AppSlot>) -> Self {
        let cached = RefCell::new((slot.generation(), Arc::new(Pinned(slot.get()))));
        ConnApp { slot, cached }
    }

    fn app(&self) -> RequestApp {
        let generation = self.slot.generation();
        let mut cached = self.cached.borrow_mut();
        if cached.0 != generation {
            *cached = (generation, Arc::new(Pinned(self.slot.get())));
        }
        RequestApp(Arc::clone(&cached.1))
    }
}

/// Answers with `answer`, or, when the host panics producing it, with 500 and DRF-shaped
/// JSON, like a scheme fault: the connection is kept and the host keeps serving. (The
/// panic hook main installs has logged the panic, with its location, as one line.)
///
/// A combinator, not an `async fn`: an `async fn` would keep its argument and the wrapped
/// future side by side, twice the request's future, copied on every request.
pub fn guarded(answer: impl Future<Output = Response<Body>>) -> impl Future<Output = Response<Body>> {
    AssertUnwindSafe(answer)
        .catch_unwind()
        .map(|answered| answered.unwrap_or_else(|_| Refusal::Internal.into_response()))
}

/// Serves the app in `slot` on `listener` until `shutdown` resolves, then lets requests
/// in flight finish for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    slot: Arc<AppSlot>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    max_connections: usize,
) {
    // One permit per open connection: with none left, the loop stops accepting and new
    // connections wait in the kernel's backlog until one closes.
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    // Graceful shutdown by hand: hyper-util's GracefulShutdown cannot watch a connection
    // that allows upgrades. `stop` tells every connection to finish its request in flight;
    // each holds a clone of `open`, so `closed` ends when the last one has gone.
    let (stop, _) = tokio::sync::watch::channel(false);
    let (open, mut closed) = tokio::sync::mpsc::channel::<()>(1);
    let mut http = http1::Builder::new();
    // hyper's default of 100 headers (more get 431) is kept on purpose: setting
    // `max_headers` moves the header array to the heap on every request (measured: 3% CPU).
    // No timer: the header-read limit of plain connections is `Pace`'s, not hyper's.
    http.max_buf_size(MAX_HEAD_BYTES);
    // HTTP/2 beside HTTP/1.1, for TLS connections and `h2c`: the same limits on each, and
    // hyper's own header-read timer (set per connection from the app's config).
    let mut both = auto::Builder::new(TokioExecutor::new());
    both.http1().max_buf_size(MAX_HEAD_BYTES).timer(TokioTimer::new());
    both.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEAD_BYTES).unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_STREAMS)
        .keep_alive_interval(Some(Duration::from_secs(60)));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit,
            () = &mut shutdown => break,
        };
        // The semaphore is never closed.
        let Ok(permit) = permit else { break };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors, for example: back off instead of spinning.
                        warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn_app = ConnApp::new(Arc::clone(&slot));
                // The app this connection starts with decides how it is spoken to: TLS
                // (with the certificate that app read), HTTP/2 by prior knowledge, or plain
                // HTTP/1.1 (the hot path, unchanged by the other two).
                let (tls, h2c, header_timeout) = {
                    let app = conn_app.app();
                    (app.tls().cloned(), app.h2c(), app.header_timeout())
                };
                let pace = Pace::new();
                let service = {
                    let pace = Arc::clone(&pace);
                    service_fn(move |req| {
                        let in_flight = pace.begin();
                        guarded(App::handle(conn_app.app(), req, peer))
                            .map(move |resp| Ok::<_, Infallible>(resp.map(|body| Paced::new(body, in_flight))))
                    })
                };
                let stopping = stop.subscribe();
                let open = open.clone();
                match (tls, h2c) {
                    (Some(tls), _) => {
                        let both = with_header_timeout(&both, header_timeout);
                        tokio::spawn(async move {
                            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                            match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => {
                                    // ALPN or the client's first bytes choose HTTP/2 or 1.1.
                                    let conn = both.serve_connection_with_upgrades(TokioIo::new(stream), service);
                                    drive!(conn, stopping, peer, std::future::pending());
                                }
                                Ok(Err(err)) => debug!(%peer, error = %err, "TLS handshake failed"),
                                Err(_) => debug!(%peer, "TLS handshake timed out"),
                            }
                            drop(open);
                            drop(permit);
                        });
                    }
                    (None, true) => {
                        let both = with_header_timeout(&both, header_timeout);
                        tokio::spawn(async move {
                            let conn = both.serve_connection_with_upgrades(TokioIo::new(stream), service);
                            drive!(conn, stopping, peer, std::future::pending());
                            drop(open);
                            drop(permit);
                        });
                    }
                    (None, false) => {
                        // Upgrades: a proxied WebSocket takes the connection over once
                        // authenticated.
                        let conn = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
                        tokio::spawn(async move {
                            drive!(conn, stopping, peer, pace.overdue(header_timeout));
                            drop(open);
                            drop(permit);
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    info!("shutting down: finishing requests in flight");
    process_manager::stopping();
    stop.send_replace(true);
    drop(open);
    tokio::select! {
        _ = closed.recv() => info!("all connections closed"),
        () = tokio::time::sleep(grace) => warn!("shutdown grace period over; closing remaining connections"),
    }
}

/// The TLS and h2c builder with hyper's header-read timer set to the app's limit.
fn with_header_timeout(both: &auto::Builder<TokioExecutor>, limit: Duration) -> auto::Builder<TokioExecutor> {
    let mut both = both.clone();
    both.http1().header_read_timeout(limit);
    both
}

/// How long a reload may take to load the new config before it is abandoned.
const RELOAD_BOUND: Duration = Duration::from_secs(60);

/// Asks the running host to reload, as a SIGHUP does (the change poll does, when the store
/// file it reads was replaced). Nothing happens where no `reload_on_hangup` runs.
pub fn request_reload() {
    reload_requests().notify_one();
}

fn reload_requests() -> &'static tokio::sync::Notify {
    static RELOAD: std::sync::OnceLock<tokio::sync::Notify> = std::sync::OnceLock::new();
    RELOAD.get_or_init(tokio::sync::Notify::new)
}

/// Re-reads the config on every SIGHUP and swaps the app in `slot` when the new config
/// loads completely; otherwise the running app stays and the log says why. The signal is
/// caught from this call on (call it before announcing the address); the reloads happen
/// in the returned future.
#[cfg(unix)]
pub fn reload_on_hangup(
    slot: Arc<AppSlot>,
    build: impl Fn() -> Result<App, crate::Error> + Send + Sync + 'static,
) -> impl Future<Output = ()> + Send {
    use tokio::signal::unix::{signal, SignalKind};
    let hangup = signal(SignalKind::hangup());
    let build = Arc::new(build);
    async move {
        let mut hangup = match hangup {
            Ok(hangup) => hangup,
            Err(err) => {
                warn!(error = %err, "cannot listen for SIGHUP; reloading is off");
                return;
            }
        };
        loop {
            tokio::select! {
                received = hangup.recv() => {
                    if received.is_none() {
                        return;
                    }
                    info!("SIGHUP received: reloading the config");
                }
                () = reload_requests().notified() => info!("reload requested: reloading the config"),
            }
            process_manager::reloading();
            let build = Arc::clone(&build);
            // Loading plugins and opening the store block: not on a worker. A load that
            // takes longer than RELOAD_BOUND is abandoned (its thread finishes, or not, on
            // its own; what it builds is dropped) and the running config stays.
            let loading = tokio::task::spawn_blocking(move || build());
            match tokio::time::timeout(RELOAD_BOUND, loading).await {
                Ok(Ok(Ok(app))) => {
                    slot.replace(app);
                    info!("config reloaded");
                    process_manager::ready("config reloaded");
                }
                Ok(Ok(Err(err))) => {
                    error!("reload rejected, keeping the running config: {}", err.with_cause());
                    process_manager::ready("reload rejected, keeping the running config");
                }
                Ok(Err(err)) => {
                    error!("reload rejected, keeping the running config: {err}");
                    process_manager::ready("reload rejected, keeping the running config");
                }
                Err(_) => {
                    error!(
                        "reload abandoned after {}s, keeping the running config: loading it did not finish \
                         (a plugin constructor or the store that never returns?)",
                        RELOAD_BOUND.as_secs()
                    );
                    process_manager::ready("reload abandoned, keeping the running config");
                }
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM. Both are caught from this call on (call it before
/// announcing the address, so that an early signal stops the host gracefully too).
#[cfg(unix)]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = int.recv() => info!("SIGINT received"),
                _ = term.recv() => info!("SIGTERM received"),
            },
            (Err(err), _) | (_, Err(err)) => {
                warn!(error = %err, "cannot listen for SIGTERM or SIGINT; stopping is up to the process manager");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn a_panic_while_answering_is_a_500_with_the_usual_json() {
        let resp = guarded(async {
            let deadline = std::time::Instant::now();
            // What the overflowing deadlines of issue 12 did.
            let _ = deadline.checked_add(Duration::MAX).expect("overflow when adding duration to instant");
            Refusal::NotFound.into_response()
        })
        .await;
        assert_eq!(resp.status(), hyper::StatusCode::INTERNAL_SERVER_ERROR);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"detail":"Internal authentication error."}"#);
        let fine = guarded(async { Refusal::NotFound.into_response() }).await;
        assert_eq!(fine.status(), hyper::StatusCode::NOT_FOUND);
    }
}

/// Readiness for process managers: systemd's notification protocol on `$NOTIFY_SOCKET`
/// (a `Type=notify` unit; contrib/authhost.service). Without the variable, nothing is sent.
pub mod process_manager {
    use sd_notify::NotifyState;
    use tracing::warn;

    fn send(states: &[NotifyState<'_>]) {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return;
        }
        if let Err(err) = sd_notify::notify(states) {
            warn!(error = %err, "cannot notify the process manager on $NOTIFY_SOCKET");
        }
    }

    /// Serving: the listening socket is open and the app built.
    pub fn ready(status: &str) {
        send(&[NotifyState::Ready, NotifyState::MainPid(std::process::id()), NotifyState::Status(status)]);
    }

    /// A reload has begun; `ready` ends it, applied or not.
    pub fn reloading() {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now, NotifyState::Status("reloading the config")]),
            Err(_) => send(&[NotifyState::Reloading, NotifyState::Status("reloading the config")]),
        }
    }

    /// Shutting down: requests in flight are finishing.
    pub fn stopping() {
        send(&[NotifyState::Stopping, NotifyState::Status("stopping: finishing requests in flight")]);
    }
}
