//! Gateway mode over real sockets: authhost as a streaming reverse proxy in front of an
//! upstream served by the test, and as a forward-auth back-end asked about other requests.
//! (Real nginx and Caddy in front of it: gateway_peers.rs.)
//! See: issue 10 (items 1 to 3 and the must-shows for authhost as the proxy).

use std::net::SocketAddr;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::support::upstream::{self, Echo};
use crate::support::{Site, TestHost};

pub(crate) const ALICE_KEY: &str = "a11ce000000000000000000000000000000000aa";
pub(crate) const ROOT_KEY: &str = "7007000000000000000000000000000000000077";

/// The gateway config: proxy routes in front of `echo` (and of `ws`, a WebSocket echo),
/// a forward_auth route, and a decision-only route.
fn config(echo: SocketAddr, ws: SocketAddr, closed: SocketAddr, full: SocketAddr) -> String {
    format!(
        r#"
[[scheme]]
name = "token"
plugin = "token"

[[scheme]]
name = "remote-user"
plugin = "remote-user"
trusted_proxies = ["10.0.0.0/8"]

[[route]]
path = "/app"
prefix = true
upstream = "http://{echo}"
schemes = ["token"]
permission = "is_authenticated"

[[route]]
path = "/public"
prefix = true
upstream = "http://{echo}"
schemes = ["token"]
permission = "allow_any"

[[route]]
path = "/staff"
prefix = true
upstream = "http://{echo}"
schemes = ["token"]
permission = "is_admin"

[[route]]
path = "/stripped/"
prefix = true
upstream = "http://{echo}/base"
strip_prefix = true
strip_credentials = true
schemes = ["token"]
permission = "is_authenticated"

[[route]]
path = "/down"
upstream = "http://{closed}"
schemes = []
permission = "allow_any"

[[route]]
path = "/unreachable"
upstream = "http://{full}"
connect_timeout = "300ms"
schemes = []
permission = "allow_any"

[[route]]
path = "/slow"
prefix = true
upstream = "http://{echo}"
strip_prefix = true
timeout = "300ms"
schemes = []
permission = "allow_any"

[[route]]
path = "/ws"
upstream = "http://{ws}"
schemes = ["token"]
permission = "is_authenticated"

[[route]]
path = "/big"
prefix = true
upstream = "http://{echo}"
strip_prefix = true
schemes = ["token"]
permission = "is_authenticated"

[[route]]
path = "/renamed"
prefix = true
upstream = "http://{echo}"
pass_host_header = false
schemes = []
permission = "allow_any"

[[route]]
path = "/spa"
prefix = true
upstream = "http://{echo}"
schemes = ["token"]
permission = "is_authenticated"
cors_allow_preflight = true

[[route]]
path = "/spa-limited"
upstream = "http://{echo}"
schemes = ["token"]
permission = "is_authenticated"
cors_allow_preflight = true
throttle = ["preflights"]

[throttle.rates]
preflights = "1/min"

[[route]]
path = "/auth"
prefix = true
handler = "forward_auth"

[[route]]
path = "/decide-cors"
prefix = true
handler = "allow"
schemes = ["token"]
permission = "is_authenticated"
cors_allow_preflight = true

[[route]]
path = "/decide"
prefix = true
handler = "allow"
schemes = ["token"]
permission = "is_authenticated"

[[route]]
path = "/metrics"
handler = "metrics"

[[route]]
path = "/health"
handler = "health"

[[route]]
path = "/by-proxy"
handler = "allow"
schemes = ["remote-user"]
permission = "is_authenticated"
"#
    )
}

pub(crate) struct Gateway {
    site: Site,
    /// A listener whose backlog is full: connecting to it hangs.
    _full: upstream::FullListener,
    pub(crate) host: TestHost,
    pub(crate) echo: Echo,
    ws_seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

pub(crate) async fn gateway() -> Gateway {
    let echo = upstream::echo().await;
    let (ws, ws_seen) = upstream::websocket_echo().await;
    let full = upstream::FullListener::new().await;
    let site = Site::new(&config(echo.addr, ws, upstream::closed_port(), full.addr));
    site.add_user("alice", "alice-pw", &["--email", "alice@example.com"]);
    site.add_user("root", "root-pw", &["--staff"]);
    for (user, key) in [("alice", ALICE_KEY), ("root", ROOT_KEY)] {
        let out = site.authhost(&["token", "create", user, "--key", key], "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let host = site.serve();
    Gateway { site, _full: full, host, echo, ws_seen }
}

impl Gateway {
    /// Another host on the same site and store, started with `args`.
    pub(crate) fn serve_another(&self, args: &[&str]) -> TestHost {
        self.site.serve_args(args)
    }
}

/// The headers the echo upstream received, by name (lowercase), each with its values.
fn seen(resp: &crate::support::Resp) -> Value {
    assert_eq!(resp.header("x-upstream"), Some("echo"), "not the upstream's answer: {}", resp.body);
    resp.json()["headers"].clone()
}

#[tokio::test]
async fn an_allowed_request_reaches_the_upstream_with_identity_and_forwarded_headers() {
    let g = gateway().await;
    let resp = g
        .host
        .get("/app/items/?page=2")
        .header("authorization", format!("Token {ALICE_KEY}"))
        .header("x-authenticated-user", "root")
        .header("X-Authenticated-Staff", "true")
        .send()
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["uri"], "/app/items/?page=2");
    let headers = seen(&resp);
    assert_eq!(headers["x-authenticated-user"], json!(["alice"]), "forged identity replaced: {headers}");
    assert_eq!(headers["x-authenticated-staff"], json!(["false"]));
    assert_eq!(headers["x-authenticated-email"], json!(["alice@example.com"]));
    assert_eq!(headers["x-authenticated-scheme"], json!(["token"]));
    assert!(headers["x-authenticated-user-id"][0].as_str().unwrap().parse::<i64>().is_ok());
    // Credentials pass unchanged by default.
    assert_eq!(headers["authorization"], json!([format!("Token {ALICE_KEY}")]));
    assert_eq!(headers["x-forwarded-for"], json!(["127.0.0.1"]));
    assert_eq!(headers["x-forwarded-proto"], json!(["http"]));
    assert_eq!(headers["x-forwarded-host"], json!(["authhost.test"]));
    assert_eq!(headers["host"], json!(["authhost.test"]));
    // The upstream's hop-by-hop header stays on its hop.
    assert_eq!(resp.header("keep-alive"), None);
}

#[tokio::test]
async fn an_anonymous_request_carries_no_identity_and_cannot_forge_one() {
    let g = gateway().await;
    let resp = g
        .host
        .get("/public/")
        .header("X-Authenticated-User", "root")
        .header("x-authenticated-user", "root2")
        .header("X-Authenticated-User-Id", "1")
        .header("X-Authenticated-Scheme", "token")
        .header("X-Authenticated-Email", "root@example.com")
        .header("X-Authenticated-Staff", "true")
        .send()
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let headers = seen(&resp);
    for name in ["user", "user-id", "email", "scheme", "staff"] {
        assert!(
            headers.get(format!("x-authenticated-{name}")).is_none(),
            "{name} reached the upstream: {headers}"
        );
    }
}

#[tokio::test]
async fn refusals_are_drf_answers_and_never_reach_the_upstream() {
    let g = gateway().await;
    let resp = g.host.get("/app/x").send().await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.header("www-authenticate"), Some("Token"));
    assert_eq!(resp.json(), json!({"detail": "Authentication credentials were not provided."}));
    let resp = g.host.get("/app/x").header("authorization", "Token nope").send().await;
    assert_eq!((resp.status, resp.json()), (401, json!({"detail": "Invalid token."})));
    let resp = g.host.get("/staff/").header("authorization", format!("Token {ALICE_KEY}")).send().await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json(), json!({"detail": "You do not have permission to perform this action."}));
    let resp = g.host.get("/apiary").header("authorization", format!("Token {ALICE_KEY}")).send().await;
    assert_eq!(resp.status, 404);
    assert_eq!(g.echo.hits(), 0, "a refused request reached the upstream");
    let resp = g.host.get("/staff/").header("authorization", format!("Token {ROOT_KEY}")).send().await;
    assert_eq!(seen(&resp)["x-authenticated-staff"], json!(["true"]));
    assert_eq!(g.echo.hits(), 1);
}

#[tokio::test]
async fn pass_host_header_false_gives_the_upstream_its_own_host() {
    let g = gateway().await;
    let headers = seen(&g.host.get("/renamed/x").send().await);
    assert_eq!(headers["host"], json!([g.echo.addr.to_string()]), "{headers}");
    assert_eq!(headers["x-forwarded-host"], json!(["authhost.test"]), "{headers}");
    // By default the client's Host goes on.
    assert_eq!(seen(&g.host.get("/public/").send().await)["host"], json!(["authhost.test"]));
}

#[tokio::test]
async fn hop_by_hop_headers_and_those_connection_names_are_not_forwarded() {
    let g = gateway().await;
    let resp = g
        .host
        .get("/app/")
        .header("authorization", format!("Token {ALICE_KEY}"))
        .header("connection", "keep-alive, X-Private-Hop")
        .header("x-private-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("te", "trailers")
        .header("x-end-to-end", "kept")
        .send()
        .await;
    let headers = seen(&resp);
    for name in ["x-private-hop", "keep-alive", "proxy-authorization", "te"] {
        assert!(headers.get(name).is_none(), "{name} was forwarded: {headers}");
    }
    assert_eq!(headers["x-end-to-end"], json!(["kept"]));
}

#[tokio::test]
async fn strip_prefix_and_strip_credentials_rewrite_what_the_upstream_sees() {
    let g = gateway().await;
    let resp = g
        .host
        .get("/stripped/a/b?c=d")
        .header("authorization", format!("Token {ALICE_KEY}"))
        .header("cookie", "theme=dark; sessionid=abc")
        .send()
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["uri"], "/base/a/b?c=d");
    let headers = seen(&resp);
    assert!(headers.get("authorization").is_none(), "{headers}");
    assert_eq!(headers["cookie"], json!(["theme=dark"]));
    assert_eq!(headers["x-authenticated-user"], json!(["alice"]));
}

#[tokio::test]
async fn an_upstream_that_refuses_is_502_and_one_that_hangs_or_cannot_be_reached_is_504_each_logged_once() {
    let g = gateway().await;
    let resp = g.host.get("/down").send().await;
    assert_eq!((resp.status, resp.json()), (502, json!({"detail": "Bad gateway."})));
    let line = g.host.wait_for_log(|l| l.contains("upstream failed") && l.contains("/down"));
    assert!(line.contains("status=502") && line.contains("refused"), "{line}");
    let started = Instant::now();
    let resp = g.host.get("/slow/hang").send().await;
    assert_eq!((resp.status, resp.json()), (504, json!({"detail": "Gateway timeout."})));
    assert!(started.elapsed().as_secs() < 5, "the route's 300ms timeout was not applied");
    let line = g.host.wait_for_log(|l| l.contains("upstream failed") && l.contains("/slow"));
    assert!(line.contains("status=504"), "{line}");
    let started = Instant::now();
    let resp = g.host.get("/unreachable").send().await;
    assert_eq!((resp.status, resp.json()), (504, json!({"detail": "Gateway timeout."})));
    assert!(started.elapsed().as_secs() < 5, "the route's 300ms connect_timeout was not applied");
    let line = g.host.wait_for_log(|l| l.contains("upstream failed") && l.contains("/unreachable"));
    assert!(line.contains("status=504"), "{line}");
    let logs = g.host.settled_logs();
    assert_eq!(logs.matches("upstream failed").count(), 3, "{logs}");
    // The host keeps serving, and the pool has no stale connection to trip on.
    let resp = g.host.get("/slow/ok").send().await;
    assert_eq!(resp.status, 200);
}

/// Upstream connections are kept alive and reused: ten requests one after another reach
/// the upstream over one connection.
#[tokio::test]
async fn requests_one_after_another_share_one_upstream_connection() {
    let g = gateway().await;
    for _ in 0..10 {
        let resp = g.host.get("/public/x").send().await;
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
    assert_eq!(g.echo.hits(), 10);
    assert_eq!(g.echo.connections(), 1, "the pooled connection was not reused");
}

/// An upstream that closes an idle connection (its own idle timeout) costs nothing: the
/// next request, not yet written, goes out on a new connection instead of failing 502.
#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replaced_not_a_502() {
    let (addr, closed) = upstream::one_per_connection().await;
    let site = Site::new(&format!(
        "[[route]]\npath = \"/once\"\nprefix = true\nupstream = \"http://{addr}\"\npermission = \"allow_any\"\n"
    ));
    let host = site.serve();
    for n in 1..=3 {
        let resp = host.get("/once/x").send().await;
        assert_eq!((resp.status, resp.body.as_str()), (200, "ok"), "request {n}: {}", host.logs());
        // The upstream has closed the connection it answered on before the next request.
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while closed.load(std::sync::atomic::Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "the upstream did not close connection {n}");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    assert!(!host.settled_logs().contains("upstream failed"), "{}", host.logs());
}

/// Peak resident memory of a process, from /proc (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("kB");
    kib * 1024
}

const GIB: u64 = 1024 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_streams_each_way_in_bounded_memory() {
    let g = gateway().await;
    let stream = tokio::net::TcpStream::connect(g.host.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    // Upload: the upstream counts what arrives.
    let req = Request::post("/big/upload")
        .header("host", "authhost.test")
        .header("authorization", format!("Token {ALICE_KEY}"))
        .body(upstream::zeros(GIB))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["received"], json!(GIB));
    // Download: count it here, frame by frame, never holding it.
    sender.ready().await.expect("the connection is kept alive");
    let req = Request::get(format!("/big/download/{GIB}"))
        .header("host", "authhost.test")
        .header("authorization", format!("Token {ALICE_KEY}"))
        .body(upstream::zeros(0))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            received += data.len() as u64;
        }
    }
    assert_eq!(received, GIB);
    let peak = peak_rss(g.host.pid());
    assert!(peak < 64 * 1024 * 1024, "authhost peaked at {} MiB", peak / (1024 * 1024));
}

#[tokio::test]
async fn a_websocket_echoes_once_authenticated() {
    let g = gateway().await;
    let url = format!("ws://{}/ws", g.host.addr);
    // Without credentials: DRF's 401, and no handshake reaches the upstream.
    let stream = tokio::net::TcpStream::connect(g.host.addr).await.unwrap();
    let refused = tokio_tungstenite::client_async(url.as_str(), stream).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected a 401, got {:?}", other.map(|(_, r)| r.status())),
    }
    assert!(g.ws_seen.lock().unwrap().is_empty());
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Token {ALICE_KEY}").parse().unwrap());
    request.headers_mut().insert("x-authenticated-user", "root".parse().unwrap());
    let stream = tokio::net::TcpStream::connect(g.host.addr).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(request, stream).await.expect("handshake");
    assert_eq!(resp.status(), 101);
    for text in ["hello", "second message"] {
        ws.send(Message::text(text)).await.unwrap();
        let back = ws.next().await.expect("an answer").unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), text);
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().into_data().as_ref(), &[0u8, 1, 2, 255]);
    ws.close(None).await.unwrap();
    let seen = g.ws_seen.lock().unwrap().clone();
    let user: Vec<&str> =
        seen.iter().filter(|(n, _)| n == "x-authenticated-user").map(|(_, v)| v.as_str()).collect();
    assert_eq!(user, ["alice"], "{seen:?}");
}

/// Asks the forward_auth route about a request, with the given headers.
async fn ask(host: &TestHost, path: &str, headers: &[(&str, &str)]) -> crate::support::Resp {
    let mut req = host.get(path);
    for (name, value) in headers {
        req = req.header(name, value);
    }
    req.send().await
}

#[tokio::test]
async fn forward_auth_decides_by_the_original_request_for_each_proxy_family() {
    let g = gateway().await;
    let token = format!("Token {ALICE_KEY}");
    // Traefik and Caddy.
    let resp = ask(
        &g.host,
        "/auth",
        &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/app/x?y=1"), ("authorization", &token)],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("x-authenticated-user"), Some("alice"));
    assert_eq!(resp.header("x-authenticated-email"), Some("alice@example.com"));
    assert_eq!(resp.header("x-authenticated-scheme"), Some("token"));
    assert_eq!(resp.header("x-authenticated-staff"), Some("false"));
    // nginx.
    let resp = ask(
        &g.host,
        "/auth",
        &[("x-original-method", "GET"), ("x-original-uri", "/staff/"), ("authorization", &token)],
    )
    .await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json(), json!({"detail": "You do not have permission to perform this action."}));
    // Envoy: the original path after the route's own prefix.
    let resp = ask(&g.host, "/auth/app/x", &[]).await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.header("www-authenticate"), Some("Token"));
    assert_eq!(resp.json(), json!({"detail": "Authentication credentials were not provided."}));
    // A decision-only route, and an anonymous allowed request: 200 with no identity.
    let resp = ask(&g.host, "/auth", &[("x-forwarded-uri", "/decide/a"), ("authorization", &token)]).await;
    assert_eq!((resp.status, resp.header("x-authenticated-user")), (200, Some("alice")));
    let resp =
        ask(&g.host, "/auth", &[("x-forwarded-uri", "/public/"), ("x-authenticated-user", "root")]).await;
    assert_eq!((resp.status, resp.header("x-authenticated-user")), (200, None));
    assert_eq!(g.echo.hits(), 0, "forward-auth never proxies");
}

/// A CORS preflight's headers: what a browser sends before a cross-origin request that
/// carries credentials (and never with credentials of its own).
const PREFLIGHT: [(&str, &str); 3] = [
    ("origin", "https://spa.example"),
    ("access-control-request-method", "POST"),
    ("access-control-request-headers", "authorization"),
];

#[tokio::test]
async fn a_cors_preflight_passes_anonymously_where_the_route_allows_it_and_nowhere_else() {
    let g = gateway().await;
    let options = |path: &str, headers: &[(&str, &str)]| {
        let mut req = g.host.request("OPTIONS", path);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        req
    };
    // The upstream answers it, and sees no identity (a forged one is removed as always).
    let resp = options("/spa/items", &PREFLIGHT).header("x-authenticated-user", "root").send().await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["method"], "OPTIONS");
    let headers = seen(&resp);
    assert_eq!(headers["origin"], json!(["https://spa.example"]));
    assert_eq!(headers["access-control-request-method"], json!(["POST"]));
    assert!(headers.get("x-authenticated-user").is_none(), "{headers}");
    assert_eq!(g.echo.hits(), 1);
    let line = g.host.wait_for_log(|l| l.contains("/spa/items") && l.contains("outcome"));
    assert!(line.contains("preflight"), "{line}");
    // Not a preflight: an OPTIONS without Access-Control-Request-Method, and a GET with
    // the preflight's headers, need credentials as before.
    let resp = options("/spa/items", &PREFLIGHT[..1]).send().await;
    assert_eq!(
        (resp.status, resp.json()),
        (401, json!({"detail": "Authentication credentials were not provided."}))
    );
    let mut get = g.host.get("/spa/items");
    for (name, value) in PREFLIGHT {
        get = get.header(name, value);
    }
    assert_eq!(get.send().await.status, 401);
    // A route that does not say so answers a preflight as DRF does.
    let resp = options("/app/items", &PREFLIGHT).send().await;
    assert_eq!(resp.status, 401);
    assert_eq!(g.echo.hits(), 1, "only the allowed preflight reached the upstream");
    // Forward-auth, asked about a preflight: 200 with no identity where the route the
    // original request matches allows preflights, DRF's refusal where it does not.
    let about = |uri: &'static str| {
        let mut headers = vec![("x-original-method", "OPTIONS"), ("x-original-uri", uri)];
        headers.extend(PREFLIGHT);
        headers
    };
    let resp = ask(&g.host, "/auth", &about("/decide-cors/x")).await;
    assert_eq!((resp.status, resp.header("x-authenticated-user")), (200, None), "{}", resp.body);
    let resp = ask(&g.host, "/auth", &about("/decide/x")).await;
    assert_eq!(resp.status, 401, "{}", resp.body);
    // The route's throttles still count preflights (as anonymous requests, by address).
    assert_eq!(options("/spa-limited", &PREFLIGHT).send().await.status, 200);
    let resp = options("/spa-limited", &PREFLIGHT).send().await;
    assert_eq!(resp.status, 429, "{}", resp.body);
    assert!(resp.header("retry-after").is_some());
}

#[tokio::test]
async fn forward_auth_fails_closed() {
    let g = gateway().await;
    let token = format!("Token {ALICE_KEY}");
    for (uri, why) in [
        ("/nowhere", "no route"),
        ("/auth/app/x", "a forward_auth route"),
        ("/app/../staff/", "a dot segment"),
        ("/app/%2e%2e/staff/", "an encoded dot segment"),
        ("//staff/", "an empty segment"),
        ("/app%2f..%2fstaff/", "an encoded slash"),
        ("app/x", "not absolute"),
    ] {
        let resp = ask(&g.host, "/auth", &[("x-forwarded-uri", uri), ("authorization", &token)]).await;
        assert_eq!(resp.status, 403, "{why}: {uri} got {} {}", resp.status, resp.body);
        assert!(resp.header("x-authenticated-user").is_none());
    }
    let resp = ask(&g.host, "/auth", &[("authorization", &token)]).await;
    assert_eq!(resp.status, 403, "no original request: {}", resp.body);
    let doubled = g
        .host
        .get("/auth")
        .header("x-forwarded-uri", "/public/")
        .header("x-forwarded-uri", "/app/")
        .send()
        .await;
    assert_eq!(doubled.status, 403);
}

#[tokio::test]
async fn x_forwarded_for_from_a_trusted_proxy_gives_the_client_address_schemes_see() {
    let g = gateway().await;
    // remote-user trusts 10.0.0.0/8 only; the connection comes from 127.0.0.1, which the
    // gateway trusts to say who its client is.
    let from_lan = ask(
        &g.host,
        "/auth",
        &[("x-forwarded-uri", "/by-proxy"), ("x-forwarded-for", "10.1.2.3"), ("x-remote-user", "alice")],
    )
    .await;
    assert_eq!((from_lan.status, from_lan.header("x-authenticated-user")), (200, Some("alice")));
    let direct = ask(&g.host, "/auth", &[("x-forwarded-uri", "/by-proxy"), ("x-remote-user", "alice")]).await;
    assert_eq!(direct.status, 403, "{}", direct.body);
    // The rightmost untrusted address counts: a forged leftmost entry does not.
    let forged = ask(
        &g.host,
        "/auth",
        &[
            ("x-forwarded-uri", "/by-proxy"),
            ("x-forwarded-for", "10.9.9.9, 192.0.2.1"),
            ("x-remote-user", "alice"),
        ],
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
}
