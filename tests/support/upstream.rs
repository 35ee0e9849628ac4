//! Upstreams for the gateway tests, served in the test process on 127.0.0.1:0: an HTTP
//! echo (what it received, as JSON), a byte sink and source for large bodies, one that
//! never answers, and a real WebSocket echo server (tokio-tungstenite).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

/// A running echo upstream.
#[derive(Debug, Clone)]
pub struct Echo {
    pub addr: SocketAddr,
    /// How many requests reached it.
    pub hits: Arc<AtomicUsize>,
    /// How many connections it accepted.
    pub connections: Arc<AtomicUsize>,
}

impl Echo {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Starts the echo upstream on the current runtime. Paths:
/// - `/hang...`: never answers;
/// - `/download/N`: N bytes of zeros, streamed;
/// - `/upload...`: reads the whole body and answers `{"received": N}`;
/// - anything else: `{"method", "uri", "headers": {name: [values]}}`, with an
///   `X-Upstream: echo` header and a hop-by-hop `Keep-Alive` header that must not reach
///   the client.
pub async fn echo() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    let hits = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let (counter, accepted) = (Arc::clone(&hits), Arc::clone(&connections));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            accepted.fetch_add(1, Ordering::SeqCst);
            let counter = Arc::clone(&counter);
            let service = service_fn(move |req| {
                counter.fetch_add(1, Ordering::SeqCst);
                answer(req)
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    Echo { addr, hits, connections }
}

/// An upstream that answers one request per connection, `200 ok` with keep-alive implied,
/// and then closes the connection without saying so (as an upstream's own idle timeout
/// does). Its counter is the number of connections it has closed.
pub async fn one_per_connection() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    let closed = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&closed);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
            drop(stream);
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, closed)
}

async fn answer(req: Request<Incoming>) -> Result<Response<UpstreamBody>, Infallible> {
    let path = req.uri().path().to_owned();
    if path.starts_with("/hang") {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if let Some(n) = path.strip_prefix("/download/") {
        let left = n.parse().expect("byte count");
        return Ok(Response::new(UpstreamBody::Zeros { left }));
    }
    if path.starts_with("/upload") {
        let mut body = req.into_body();
        let mut received: u64 = 0;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("upload frame").into_data() {
                received += data.len() as u64;
            }
        }
        return Ok(json_answer(&json!({ "received": received })));
    }
    let mut headers = Map::new();
    for (name, value) in req.headers() {
        let values = headers.entry(name.as_str()).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = values {
            list.push(Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()));
        }
    }
    let mut resp = json_answer(&json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "headers": headers,
    }));
    resp.headers_mut().insert("x-upstream", "echo".parse().unwrap());
    resp.headers_mut().insert("keep-alive", "timeout=5".parse().unwrap());
    Ok(resp)
}

fn json_answer(value: &Value) -> Response<UpstreamBody> {
    let mut resp = Response::new(UpstreamBody::Full(Full::new(Bytes::from(value.to_string()))));
    resp.headers_mut().insert("content-type", "application/json".parse().unwrap());
    resp
}

/// What the echo upstream answers with: a JSON document, or zeros streamed in chunks.
#[derive(Debug)]
pub enum UpstreamBody {
    Full(Full<Bytes>),
    Zeros { left: u64 },
}

/// 64 KiB of zeros, the chunk a download streams.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            UpstreamBody::Full(full) => Pin::new(full).poll_frame(cx),
            UpstreamBody::Zeros { left } => {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                let n = (*left).min(ZEROS.len() as u64);
                *left -= n;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROS[..n as usize])))))
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Full(full) => full.size_hint(),
            UpstreamBody::Zeros { left } => SizeHint::with_exact(*left),
        }
    }
}

/// A request body of `n` zeros, streamed in chunks, for uploads.
pub fn zeros(n: u64) -> UpstreamBody {
    UpstreamBody::Zeros { left: n }
}

/// Starts a WebSocket echo server: every text or binary message comes back as sent. The
/// handshake's request headers are kept, so a test can see what reached it.
pub async fn websocket_echo() -> (SocketAddr, Arc<std::sync::Mutex<Vec<(String, String)>>>) {
    websocket_echo_over(None).await
}

/// As `websocket_echo`, over TLS with these settings when given (an `https://` upstream).
pub async fn websocket_echo_over(
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) -> (SocketAddr, Arc<std::sync::Mutex<Vec<(String, String)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind websocket upstream");
    let addr = listener.local_addr().expect("address");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let record = Arc::clone(&record);
            let tls = tls.clone();
            tokio::spawn(async move {
                // The signature is tungstenite's (its error is a whole response).
                #[allow(clippy::result_large_err)]
                let callback = |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
                    let mut seen = record.lock().unwrap();
                    for (name, value) in req.headers() {
                        seen.push((name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()));
                    }
                    Ok(resp)
                };
                match tls {
                    None => {
                        let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                            return;
                        };
                        echo_messages(ws).await;
                    }
                    Some(tls) => {
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(tls).accept(stream).await else {
                            return;
                        };
                        let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                            return;
                        };
                        echo_messages(ws).await;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Sends every text and binary message back until the client stops.
async fn echo_messages<S>(mut ws: tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

/// An address nothing listens on (bound, then closed).
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

/// A listener that never accepts, its backlog of one filled by the test's own connections:
/// a further connection attempt hangs (Linux drops the SYN), as to an unreachable host.
#[derive(Debug)]
pub struct FullListener {
    pub addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _fillers: Vec<tokio::net::TcpStream>,
}

impl FullListener {
    pub async fn new() -> FullListener {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
        let listener = socket.listen(1).expect("listen");
        let addr = listener.local_addr().expect("address");
        let mut fillers = Vec::new();
        // Fill the accept queue until a connection attempt no longer completes at once.
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await
            {
                Ok(Ok(stream)) => fillers.push(stream),
                _ => break,
            }
        }
        FullListener { addr, _listener: listener, _fillers: fillers }
    }
}
