//! Hostile clients: each case reproduced over a raw socket against the real server.
//! See: issue 12 (items 1 and 8).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{Site, TestHost};

const CONFIG: &str = r#"
[server]
body_timeout = "1s"

[[scheme]]
name = "x-username"
plugin = "x-username"

[[route]]
path = "/whoami"
handler = "whoami"
schemes = ["x-username"]
permission = "allow_any"

[[route]]
path = "/api-token-auth/"
handler = "obtain_token"
schemes = []
permission = "allow_any"
"#;

fn host() -> (Site, TestHost) {
    let site = Site::new(CONFIG);
    site.add_user("alice", "alice-pw", &[]);
    let host = site.serve();
    (site, host)
}

/// The status line's code and the body of a raw exchange.
fn status_and_body(text: &str) -> (u16, String) {
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

#[test]
fn an_empty_x_username_is_not_attempted_as_in_drfs_example() {
    let (_site, host) = host();
    let text = host.raw(b"GET /whoami HTTP/1.1\r\nHost: a\r\nX-USERNAME: \r\nConnection: close\r\n\r\n");
    let (status, body) = status_and_body(&text);
    assert_eq!(status, 200, "{text}");
    assert!(body.contains("\"user\":\"AnonymousUser\""), "{body}");
}

#[test]
fn http_1_1_without_a_host_or_with_two_is_400() {
    let (_site, host) = host();
    let none = host.raw(b"GET /whoami HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(status_and_body(&none), (400, r#"{"detail":"Invalid Host header."}"#.to_owned()), "{none}");
    let two = host.raw(b"GET /whoami HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n");
    assert_eq!(status_and_body(&two).0, 400, "{two}");
    // HTTP/1.0 has no Host requirement.
    let old = host.raw(b"GET /whoami HTTP/1.0\r\n\r\n");
    assert_eq!(status_and_body(&old).0, 200, "{old}");
}

#[test]
fn a_declared_length_over_the_limit_is_413_before_any_body_byte_and_without_100_continue() {
    let (_site, host) = host();
    let mut stream = TcpStream::connect(host.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
        .write_all(
            b"POST /api-token-auth/ HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
              Content-Length: 2147483648\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
    // No body byte is sent: the answer must come from the head alone.
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(!text.contains("100 Continue"), "the host invited the body: {text}");
    assert_eq!(status_and_body(&text), (413, r#"{"detail":"Request body too large."}"#.to_owned()), "{text}");
}

#[test]
fn a_body_that_stops_coming_is_408_after_body_timeout() {
    let (_site, host) = host();
    for head in [
        "POST /api-token-auth/ HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        "POST /api-token-auth/ HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n",
    ] {
        let mut stream = TcpStream::connect(host.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        stream.write_all(head.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(
            status_and_body(&text),
            (408, r#"{"detail":"Request body timeout."}"#.to_owned()),
            "{text}"
        );
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "answered after {took:?}");
    }
}
