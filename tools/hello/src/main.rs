//! A bare hyper hello-world server, built like authhost's (hyper 1 HTTP/1.1 on a tokio
//! multi-threaded runtime, TCP_NODELAY, a small JSON body), with no routing and no
//! authentication: the ceiling `scripts/load` measures authhost against.
//!
//! `authhost-hello [ADDR] [--tls CERT KEY]` (default 127.0.0.1:0) prints `listening on
//! http://ADDR` (`https://` with `--tls`: authhost's own TLS settings, rustls with ALPN h2
//! then http/1.1, and hyper's HTTP/2 beside HTTP/1.1, as authhost serves TLS). It answers
//! `/allow` with an empty 200 (an auth back-end's answer) and anything else with
//! `{"hello":"world"}`.

use std::convert::Infallible;
use std::path::Path;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

async fn hello(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // `/allow`: an empty 200, what an auth back-end answers (scripts/load gateway).
    if req.uri().path() == "/allow" {
        return Ok(Response::new(Full::new(Bytes::new())));
    }
    let mut resp = Response::new(Full::new(Bytes::from_static(b"{\"hello\":\"world\"}")));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr =
        args.first().filter(|a| !a.starts_with("--")).cloned().unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let tls = match args.iter().position(|a| a == "--tls") {
        Some(i) => match (args.get(i + 1), args.get(i + 2)) {
            (Some(cert), Some(key)) => Some(authhost::tls::server_config(
                Path::new(cert),
                Path::new(key),
                Path::new("authhost-hello"),
            )?),
            _ => return Err("--tls needs CERT and KEY".into()),
        },
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!("listening on {scheme}://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service_fn(hello))
                            .await;
                    }
                    Some(tls) => {
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(tls).accept(stream).await else {
                            return;
                        };
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service_fn(hello))
                            .await;
                    }
                }
            });
        }
    })
}
