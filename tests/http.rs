//! Malformed requests get a 4xx and never a 500 or a crash; shutdown is graceful.

use serde_json::json;

use crate::support::{Site, TestHost};

const CONFIG: &str = r#"
[[scheme]]
name = "x-username"
plugin = "x-username"

[[scheme]]
name = "slow"
plugin = "probe"
mode = "user"
user = "alice"
delay_ms = 700

[[route]]
path = "/me"
handler = "whoami"
schemes = ["x-username"]
permission = "is_authenticated"

[[route]]
path = "/slow"
handler = "whoami"
schemes = ["slow"]
permission = "is_authenticated"

[[route]]
path = "/health"
handler = "health"
permission = "allow_any"
"#;

fn host() -> TestHost {
    let site = Site::new(CONFIG);
    site.add_user("alice", "pw", &[]);
    let host = site.serve();
    std::mem::forget(site); // keep the folder for the life of the test process
    host
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

async fn assert_alive(host: &TestHost) {
    let resp = host.get("/health").send().await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), json!({"status": "ok"}));
}

#[tokio::test]
async fn non_utf8_header_bytes_get_4xx() {
    let host = host();
    // Latin-1 bytes name no user: 403, as DRF would say.
    let resp =
        host.raw(b"GET /me HTTP/1.1\r\nHost: x\r\nX-Username: j\xf6rg\xff\r\nConnection: close\r\n\r\n");
    assert_eq!(status_of(&resp), 403, "{resp}");
    assert!(resp.contains(r#"{"detail":"No such user"}"#), "{resp}");
    // Bytes that are no valid header value at all (a NUL) are refused by the parser.
    let resp = host.raw(b"GET /me HTTP/1.1\r\nHost: x\r\nX-Username: a\x00b\r\n\r\n");
    assert_eq!(status_of(&resp), 400, "{resp}");
    // A non-token byte in a header name.
    let resp = host.raw(b"GET /me HTTP/1.1\r\nHost: x\r\nX-\xffUser: alice\r\n\r\n");
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert_alive(&host).await;
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let host = host();
    let big = "a".repeat(100 * 1024);
    let resp = host.raw(
        format!("GET /me HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Username: {big}\r\n\r\n").as_bytes(),
    );
    assert_eq!(status_of(&resp), 431, "{}", &resp[..resp.len().min(200)]);
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let resp = host.raw(format!("GET /me HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes());
    assert_eq!(status_of(&resp), 431, "{}", &resp[..resp.len().min(200)]);
    assert_alive(&host).await;
}

#[tokio::test]
async fn garbage_request_lines_get_400() {
    let host = host();
    for garbage in [
        &b"HELLO\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /me HTTP/9.9\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello\r\n\r\n",
        b"G\xffT /me HTTP/1.1\r\n\r\n",
    ] {
        let resp = host.raw(garbage);
        let status = status_of(&resp);
        assert!((400..500).contains(&status), "{garbage:?} got {resp:?}");
    }
    assert_alive(&host).await;
}

#[tokio::test]
async fn repeated_headers_are_joined_before_schemes_see_them() {
    let host = host();
    // Joined, "alice, alice" names no user: refused rather than one header silently winning.
    let resp = host.get("/me").header("X-Username", "alice").header("X-Username", "alice").send().await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json(), json!({"detail": "No such user"}));
}

// Multi-threaded: the request runs on one thread while this one waits on the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish() {
    let mut host = host();
    let slow = {
        let req = host.get("/slow");
        tokio::spawn(req.send())
    };
    host.wait_for_log(|l| l.contains("request started") && l.contains("/slow"));
    host.signal("TERM");
    host.wait_for_log(|l| l.contains("shutting down"));
    // A new connection is no longer accepted...
    assert!(std::net::TcpStream::connect(host.addr).is_err(), "the listener is closed");
    // ...while the request in flight completes.
    let resp = slow.await.expect("request task");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["user"], json!("alice"));
    let status = host.wait_exit();
    assert!(status.success(), "exit status {status}");
    assert!(host.logs().contains("all connections closed"), "{}", host.logs());
}
