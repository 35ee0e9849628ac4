//! A proxy route's upstream connections, driven inside the task of the request that uses
//! them.
//!
//! hyper's client connection is two halves: `SendRequest`, which hands a request over, and
//! `Connection`, the future that does the I/O. A pooled client (hyper-util's) spawns every
//! `Connection` as a task of its own, so each proxied request crosses between two tasks
//! (often two worker threads) four times: the request out, the head back, the body back,
//! the connection returned. Here a connection is leased whole: the request's own task
//! polls its `Connection` while it waits for the head, and the response body polls it
//! while it streams, so the only wake-ups are the sockets' own (as in nginx's event loop).
//! Once the body has been read to its end, the lease goes back to the pool.
//!
//! A pooled connection the upstream has closed meanwhile is found when it is polled: the
//! request, not yet written, goes to the next idle connection or a new one.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body as _, Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper::http::uri::Authority;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use crate::respond::Body;

/// How long an idle upstream connection stays in the pool.
const IDLE_FOR: Duration = Duration::from_secs(90);

/// Idle connections kept per upstream; more are closed when they come back.
const MAX_IDLE: usize = 256;

/// One upstream's idle connections, the most recently used last.
pub struct Pool {
    authority: Authority,
    connect_timeout: Duration,
    /// An `https://` upstream's TLS settings.
    tls: Option<Arc<ClientConfig>>,
    idle: Mutex<VecDeque<(Instant, Box<Lease>)>>,
}

/// A connection to the upstream, with its driver; no driver once it has finished (the
/// upstream closed, or the exchange failed), and then the lease is never reused. A
/// finished driver is dropped at once: that fails a request still queued for it, which
/// comes back unsent, instead of leaving it waiting for a connection no one drives.
struct Lease {
    sender: http1::SendRequest<Body>,
    driver: Option<Driver>,
}

type Driver = http1::Connection<TokioIo<UpstreamIo>, Body>;

/// The connection to an upstream: TCP, or TLS over it for an `https://` upstream.
#[derive(Debug)]
pub enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl UpstreamIo {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            UpstreamIo::Plain(tcp) => tcp,
            UpstreamIo::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            UpstreamIo::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            UpstreamIo::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(tcp) => tcp.is_write_vectored(),
            UpstreamIo::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            UpstreamIo::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            UpstreamIo::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why no response head came.
#[derive(Debug)]
pub enum Failed {
    /// No connection could be opened (with the cause), or none within `connect_timeout`.
    Connect(std::io::Error),
    ConnectTimeout(Duration),
    /// The exchange failed after the request went out (or on a new connection).
    Exchange(hyper::Error),
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failed::Connect(err) => write!(f, "connect: {err}"),
            Failed::ConnectTimeout(after) => write!(f, "no connection within {after:?}"),
            Failed::Exchange(err) => {
                write!(f, "{err}")?;
                let mut source = std::error::Error::source(err);
                while let Some(err) = source {
                    write!(f, ": {err}")?;
                    source = err.source();
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let idle = self.idle.lock().map_or(0, |idle| idle.len());
        f.debug_struct("Pool").field("authority", &self.authority).field("idle", &idle).finish()
    }
}

impl Pool {
    pub fn new(authority: Authority, connect_timeout: Duration, tls: Option<Arc<ClientConfig>>) -> Arc<Self> {
        Arc::new(Pool { authority, connect_timeout, tls, idle: Mutex::new(VecDeque::new()) })
    }

    /// Sends `request` and answers with the response head, its body relaying from the
    /// leased connection (which goes back to the pool once the body has ended).
    pub async fn send(self: &Arc<Self>, mut request: Request<Body>) -> Result<Response<Relayed>, Failed> {
        loop {
            let (mut lease, pooled) = match self.take_idle() {
                Some(lease) => (lease, true),
                None => (self.connect().await?, false),
            };
            match lease.exchange(request).await {
                Ok(response) => {
                    let pool = Arc::clone(self);
                    return Ok(response.map(|body| Relayed {
                        body,
                        lease: Some((lease, pool)),
                        ended: false,
                    }));
                }
                // An idle connection the upstream had closed: the request never went out.
                Err((Some(unsent), _)) if pooled => request = unsent,
                Err((_, err)) => return Err(Failed::Exchange(err)),
            }
        }
    }

    fn take_idle(&self) -> Option<Box<Lease>> {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (since, lease) = idle.pop_back()?;
        // The rest are older still.
        if since.elapsed() >= IDLE_FOR {
            idle.clear();
            return None;
        }
        Some(lease)
    }

    fn give_back(&self, lease: Box<Lease>) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while idle.front().is_some_and(|(since, _)| now.duration_since(*since) >= IDLE_FOR) {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back((now, lease));
        }
    }

    async fn connect(&self) -> Result<Box<Lease>, Failed> {
        let (sender, driver) = self.dedicated().await?;
        Ok(Box::new(Lease { sender, driver: Some(driver) }))
    }

    /// A new connection: its sender and its driver. The pool leases these; a request that
    /// takes its connection over (an upgrade) gets one of its own, never pooled.
    pub async fn dedicated(&self) -> Result<(http1::SendRequest<Body>, Driver), Failed> {
        // An IPv6 literal comes bracketed in an authority (`[::1]:8080`), not in an address.
        let host = self.authority.host().trim_start_matches('[').trim_end_matches(']');
        let address = (host, self.authority.port_u16().unwrap_or(80));
        // TCP, then for an https:// upstream TLS (its certificate checked for the
        // upstream's host name or address), both within connect_timeout.
        let connect = async {
            let tcp = TcpStream::connect(address).await?;
            let Some(tls) = &self.tls else { return Ok(UpstreamIo::Plain(tcp)) };
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let stream = TlsConnector::from(Arc::clone(tls)).connect(name, tcp).await?;
            Ok(UpstreamIo::Tls(Box::new(stream)))
        };
        let io = match tokio::time::timeout(self.connect_timeout, connect).await {
            Err(_) => return Err(Failed::ConnectTimeout(self.connect_timeout)),
            Ok(Err(err)) => return Err(Failed::Connect(err)),
            Ok(Ok(io)) => io,
        };
        // Nagle stays on: each request goes out in one write, and TCP_NODELAY here cost a
        // quarter of the proxy's throughput (measured: system time per request 13 to 18 µs).
        // Upgraded tunnels, which write small frames, turn it off.
        http1::handshake(TokioIo::new(io)).await.map_err(Failed::Exchange)
    }
}

impl Lease {
    fn closed(&self) -> bool {
        self.driver.is_none()
    }

    /// Polls the driver, unless it has finished; a finished driver is dropped.
    fn drive(&mut self, cx: &mut Context<'_>) {
        drive(&mut self.driver, cx);
    }

    /// Sends `request` and waits for the response head, driving the connection meanwhile.
    /// A request that never went out comes back with the error.
    async fn exchange(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, (Option<Request<Body>>, hyper::Error)> {
        let Lease { sender, driver } = self;
        let ready = poll_fn(|cx| {
            drive(driver, cx);
            sender.poll_ready(cx)
        })
        .await;
        if let Err(err) = ready {
            *driver = None;
            return Err((Some(request), err));
        }
        let mut sent = std::pin::pin!(sender.try_send_request(request));
        let answer = poll_fn(|cx| {
            drive(driver, cx);
            sent.as_mut().poll(cx)
        })
        .await;
        answer.map_err(|mut failed| {
            *driver = None;
            (failed.take_message(), failed.into_error())
        })
    }
}

fn drive(driver: &mut Option<Driver>, cx: &mut Context<'_>) {
    if driver.as_mut().is_some_and(|running| Pin::new(running).poll(cx).is_ready()) {
        *driver = None;
    }
}

/// An upstream's response body, relayed as it arrives; it drives the leased connection,
/// and gives it back to the pool once the body has ended.
pub struct Relayed {
    body: Incoming,
    lease: Option<(Box<Lease>, Arc<Pool>)>,
    ended: bool,
}

impl fmt::Debug for Relayed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relayed").field("ended", &self.ended).finish_non_exhaustive()
    }
}

impl hyper::body::Body for Relayed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some((lease, _)) = this.lease.as_mut() {
            lease.drive(cx);
        }
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        if frame.is_none() {
            this.ended = true;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Relayed {
    fn drop(&mut self) {
        // Only a connection whose response was read to its end can carry another; one
        // dropped half-way (the client went away) is closed with it.
        if let Some((lease, pool)) = self.lease.take() {
            if !lease.closed() && (self.ended || self.body.is_end_stream()) {
                pool.give_back(lease);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ipv6_literal_upstream_is_connected_to() {
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            eprintln!("SKIPPED: this machine has no IPv6 loopback");
            return;
        };
        let port = listener.local_addr().unwrap().port();
        let pool = Pool::new(format!("[::1]:{port}").parse().unwrap(), Duration::from_secs(5), None);
        assert!(pool.dedicated().await.is_ok());
        assert!(listener.accept().await.is_ok());
    }
}
