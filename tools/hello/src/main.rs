//! A bare hyper hello-world server, built like authhost's (hyper 1 HTTP/1.1 on a tokio
//! multi-threaded runtime, TCP_NODELAY, a small JSON body), with no routing and no
//! authentication: the ceiling `scripts/load` measures authhost against.
//!
//! `authhost-hello [ADDR]` (default 127.0.0.1:0) prints `listening on http://ADDR`. It
//! answers `/allow` with an empty 200 (an auth back-end's answer) and anything else with
//! `{"hello":"world"}`.

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

async fn hello(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // `/allow`: an empty 200, what an auth back-end answers (scripts/load gateway).
    if req.uri().path() == "/allow" {
        return Ok(Response::new(Full::new(Bytes::new())));
    }
    let mut resp = Response::new(Full::new(Bytes::from_static(b"{\"hello\":\"world\"}")));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        eprintln!("listening on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(hello)).await;
            });
        }
    })
}
