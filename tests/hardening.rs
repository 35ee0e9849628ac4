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

/// Item 8: `[server] allowed_hosts` as Django's ALLOWED_HOSTS: exact names, `.domain` for
/// the domain and its subdomains, a port ignored; any other Host is 400 before any scheme.
#[test]
fn a_host_not_in_allowed_hosts_is_400_before_any_scheme_runs() {
    let site = Site::new(
        r#"
[server]
allowed_hosts = ["api.example.com", ".example.org", "127.0.0.1"]

[[scheme]]
name = "x-username"
plugin = "x-username"

[[route]]
path = "/whoami"
handler = "whoami"
schemes = ["x-username"]
permission = "is_authenticated"
"#,
    );
    site.add_user("alice", "alice-pw", &[]);
    let host = site.serve();
    let ask = |h: &str| {
        let text = host.raw(
            format!("GET /whoami HTTP/1.1\r\nHost: {h}\r\nX-USERNAME: alice\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        status_and_body(&text)
    };
    for allowed in
        ["api.example.com", "API.Example.com:8443", "example.org", "deep.sub.example.org", "127.0.0.1:80"]
    {
        assert_eq!(ask(allowed).0, 200, "{allowed}");
    }
    for refused in ["evil.com", "example.com", "api.example.com.evil.com", "notexample.org", "[::1]"] {
        assert_eq!(ask(refused), (400, r#"{"detail":"Invalid Host header."}"#.to_owned()), "{refused}");
    }
    // Refused before any scheme ran: no user was looked up for it.
    assert!(!host.logs().contains("evil.com"), "the refused Host reached a log line");
}

/// Item 1: beyond `[server] max_connections`, a new connection waits in the backlog and is
/// served as soon as one closes; nothing crashes.
#[test]
fn connections_beyond_max_connections_wait_in_the_backlog() {
    let site = Site::new(
        r#"
[server]
max_connections = 2

[[scheme]]
name = "x-username"
plugin = "x-username"

[[route]]
path = "/whoami"
handler = "whoami"
schemes = ["x-username"]
permission = "allow_any"
"#,
    );
    let host = site.serve();
    let request = b"GET /whoami HTTP/1.1\r\nHost: a\r\n\r\n";
    let exchange = |stream: &mut TcpStream| {
        stream.write_all(request).unwrap();
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    // Two kept-alive connections take both places.
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(host.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            assert!(exchange(&mut s).starts_with("HTTP/1.1 200"));
            s
        })
        .collect();
    // A third connects (the kernel's backlog) but is not served while both are held.
    let mut third = TcpStream::connect(host.addr).unwrap();
    third.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    third.write_all(request).unwrap();
    let mut buf = [0u8; 4096];
    match third.read(&mut buf) {
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
        other => panic!("served beyond max_connections: {other:?}"),
    }
    // One closes: the third is served.
    drop(held.pop());
    third.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let n = third.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(exchange(&mut held[0]).starts_with("HTTP/1.1 200"), "the held connection still works");
}
