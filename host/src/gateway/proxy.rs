//! Proxy routes: an allowed request goes on to the route's upstream, bodies streaming both
//! ways, hop-by-hop headers removed (RFC 9110 §7.6.1), `X-Forwarded-*` and the identity
//! headers set, over pooled keep-alive connections. WebSocket (and other) upgrades are
//! tunnelled once the upstream agrees to them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, COOKIE, HOST, UPGRADE};
use hyper::http::request::Parts;
use hyper::http::uri::PathAndQuery;
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tracing::{debug, warn};

use super::forwarded;
use super::identity::{self, Identity};
use super::pool::{Failed, Pool, UpstreamIo};
use crate::config::{GatewayConfig, UpstreamConfig};
use crate::metrics::RouteMetrics;
use crate::respond::{Body, Refusal};
use crate::routes;

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1, with the
/// proxy-authentication pair, which are the proxy's own).
const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    hyper::header::TE,
    hyper::header::TRAILER,
    hyper::header::TRANSFER_ENCODING,
    UPGRADE,
    hyper::header::PROXY_AUTHENTICATE,
    hyper::header::PROXY_AUTHORIZATION,
];

/// One proxy route's upstream and its connection pool.
#[derive(Debug)]
pub struct Upstream {
    /// The route's `path`, for logs and for `strip_prefix`.
    route: String,
    config: UpstreamConfig,
    /// The upstream's own `Host` (`pass_host_header = false`, and requests without one).
    host: Option<HeaderValue>,
    pool: Arc<Pool>,
    metrics: RouteMetrics,
}

/// What the upstream answered, for the access log.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamReport {
    pub status: u16,
    /// Until its response head arrived.
    pub elapsed: Duration,
}

/// A request the app has allowed, as it goes on.
#[derive(Debug)]
pub struct Forward<'a> {
    pub parts: Parts,
    pub body: Body,
    /// The connection's own peer (not the client `X-Forwarded-For` names).
    pub peer: SocketAddr,
    pub trusted_peer: bool,
    /// The request came over TLS (`X-Forwarded-Proto: https`).
    pub tls: bool,
    pub identity: Option<Identity<'a>>,
    pub gateway: &'a GatewayConfig,
    /// The session cookie's name, for `strip_credentials`.
    pub session_cookie: &'a str,
}

impl Upstream {
    pub fn new(route: &str, config: UpstreamConfig, metrics: RouteMetrics) -> Self {
        let pool = Pool::new(config.authority.clone(), config.connect_timeout, config.tls.clone());
        let host = HeaderValue::from_str(config.host()).ok();
        Upstream { route: route.to_owned(), config, host, pool, metrics }
    }

    /// Sends the request on and answers with the upstream's response (and what it was), or
    /// 502/504.
    pub async fn forward(&self, request: Forward<'_>) -> (Response<Body>, Option<UpstreamReport>) {
        let Forward { mut parts, body, peer, trusted_peer, tls, identity, gateway, session_cookie } = request;
        let upgrade = upgrade_protocol(&parts.headers);
        let on_client_upgrade = upgrade.as_ref().and_then(|_| parts.extensions.remove::<OnUpgrade>());
        parts.extensions = Default::default();
        remove_hop_by_hop(&mut parts.headers);
        if let Some(identity) = identity {
            identity::set(&mut parts.headers, gateway, identity);
        }
        if self.config.strip_credentials {
            parts.headers.remove(AUTHORIZATION);
            remove_cookie(&mut parts.headers, session_cookie);
        }
        forwarded::set(&mut parts.headers, peer, trusted_peer, tls);
        if let Some(protocol) = &upgrade {
            parts.headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(UPGRADE, protocol.clone());
        }
        parts.uri = match self.target(&parts.uri) {
            Some(uri) => uri,
            None => return (self.failed("the forwarded URI is not valid", StatusCode::BAD_GATEWAY), None),
        };
        parts.version = hyper::Version::HTTP_11;
        // The client's Host goes on (as it did through hyper-util's client), unless the
        // route says pass_host_header = false (then it is in X-Forwarded-Host); a request
        // without one (HTTP/1.0) names the upstream.
        if !self.config.pass_host_header || !parts.headers.contains_key(HOST) {
            if let Some(host) = &self.host {
                parts.headers.insert(HOST, host.clone());
            }
        }
        let started = tokio::time::Instant::now();
        let request = Request::from_parts(parts, body);
        let exchange = async {
            if upgrade.is_some() {
                self.upgrade(request).await.map(|response| response.map(Body::Stream))
            } else {
                self.pool
                    .send(request)
                    .await
                    .map(|response| response.map(|body| Body::Relayed(Box::new(body))))
            }
        };
        let mut response = match tokio::time::timeout(self.config.timeout, exchange).await {
            Err(_) => {
                let cause = format!("no response head within {:?}", self.config.timeout);
                return (self.failed(&cause, StatusCode::GATEWAY_TIMEOUT), None);
            }
            Ok(Err(failed)) => {
                let status = if matches!(failed, Failed::ConnectTimeout(_)) {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                };
                return (self.failed(&failed.to_string(), status), None);
            }
            Ok(Ok(response)) => response,
        };
        let report = UpstreamReport { status: response.status().as_u16(), elapsed: started.elapsed() };
        self.metrics.upstream_answered(report.elapsed);
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            return (self.tunnel(response, on_client_upgrade), Some(report));
        }
        remove_hop_by_hop(response.headers_mut());
        (response, Some(report))
    }

    /// A request that asks to switch protocols, on a connection of its own (its driver a
    /// task that hands the socket over once the upstream agrees).
    async fn upgrade(&self, request: Request<Body>) -> Result<Response<hyper::body::Incoming>, Failed> {
        let (mut sender, driver) = self.pool.dedicated().await?;
        tokio::spawn(async move {
            let _ = driver.with_upgrades().await;
        });
        sender.send_request(request).await.map_err(Failed::Exchange)
    }

    /// The request target the upstream gets, in origin form (RFC 9112 §3.2.1): its base
    /// path, then the request's path (after the route's own path with `strip_prefix`) and
    /// query.
    fn target(&self, uri: &Uri) -> Option<Uri> {
        let path_and_query = if !self.config.strip_prefix && self.config.base.is_empty() {
            // The usual case: the path and query as sent (a cheap clone).
            uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"))
        } else {
            let path = uri.path();
            let path =
                if self.config.strip_prefix { routes::below(&self.route, path).unwrap_or("/") } else { path };
            let mut target = String::with_capacity(self.config.base.len() + uri.path().len() + 16);
            target.push_str(&self.config.base);
            target.push_str(path);
            if let Some(query) = uri.query() {
                target.push('?');
                target.push_str(query);
            }
            PathAndQuery::try_from(target).ok()?
        };
        Some(Uri::from(path_and_query))
    }

    /// Joins the client's upgraded connection to the upstream's, both ways, in a task of
    /// its own; the 101 goes back to the client.
    fn tunnel(&self, mut response: Response<Body>, client: Option<OnUpgrade>) -> Response<Body> {
        let (Some(client), Some(upstream)) = (client, response.extensions_mut().remove::<OnUpgrade>()) else {
            return self.failed("the upstream switched protocols unasked", StatusCode::BAD_GATEWAY);
        };
        let route = self.route.clone();
        tokio::spawn(async move {
            match tokio::try_join!(client, upstream) {
                Ok((client, upstream)) => {
                    let mut client = TokioIo::new(client);
                    let ended = match upstream.downcast::<TokioIo<UpstreamIo>>() {
                        // The upstream's own connection: small frames go out at once
                        // (TCP_NODELAY), after whatever the upstream sent behind its 101.
                        Ok(parts) => {
                            let mut upstream = parts.io.into_inner();
                            let _ = upstream.tcp().set_nodelay(true);
                            match client.write_all(&parts.read_buf).await {
                                Ok(()) => tokio::io::copy_bidirectional(&mut client, &mut upstream).await,
                                Err(err) => Err(err),
                            }
                        }
                        Err(upstream) => {
                            tokio::io::copy_bidirectional(&mut client, &mut TokioIo::new(upstream)).await
                        }
                    };
                    if let Err(err) = ended {
                        debug!(%route, error = %err, "upgraded connection ended with an error");
                    }
                }
                Err(err) => warn!(%route, error = %err, "upgrade failed"),
            }
        });
        response.map(|_| Body::Empty)
    }

    fn failed(&self, cause: &str, status: StatusCode) -> Response<Body> {
        warn!(route = %self.route, upstream = %self.config.authority, status = status.as_u16(), cause, "upstream failed");
        self.metrics.upstream_failed(status == StatusCode::GATEWAY_TIMEOUT);
        if status == StatusCode::GATEWAY_TIMEOUT {
            Refusal::GatewayTimeout.into_response()
        } else {
            Refusal::BadGateway.into_response()
        }
    }
}

/// The protocol a request asks to upgrade to, when it does (`Connection: upgrade`).
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(UPGRADE).cloned()).flatten()
}

/// Removes the hop-by-hop headers and every header `Connection` names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Removes the cookie `name` from every `Cookie` header, keeping the others.
fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').map_or(*pair, |(n, _)| n.trim()) != name)
        .map(str::to_owned)
        .collect();
    headers.remove(COOKIE);
    if !kept.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(COOKIE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_with_those_connection_names() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, X-Secret-Hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-end-to-end", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-end-to-end"]);
    }

    #[test]
    fn only_the_session_cookie_is_removed() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("theme=dark; sessionid=abc"));
        h.append(COOKIE, HeaderValue::from_static("csrftoken=x"));
        remove_cookie(&mut h, "sessionid");
        assert_eq!(h[COOKIE], "theme=dark; csrftoken=x");
        remove_cookie(&mut h, "theme");
        remove_cookie(&mut h, "csrftoken");
        assert!(h.get(COOKIE).is_none());
    }

    #[test]
    fn an_upgrade_is_asked_by_the_connection_header() {
        let mut h = HeaderMap::new();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_protocol(&h), None);
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert_eq!(upgrade_protocol(&h).unwrap(), "websocket");
    }
}
