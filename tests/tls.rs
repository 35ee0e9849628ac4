//! TLS and HTTP/2 on the listening port, spoken to by curl (HTTP/2 by ALPN and HTTP/1.1)
//! and checked with openssl's own client: Token authentication on both protocols, a
//! certificate replaced on disk served after `authhost reload`, a bad one refused naming
//! the file, and HTTP/2 without TLS only where `h2c = true`.
//! See: issue 15 (item 1).

use std::path::Path;
use std::process::Command;

use crate::support::peers::{find, skip};
use crate::support::{Site, TestHost};

const CONFIG: &str = r#"
[[scheme]]
name = "token"
plugin = "token"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["token"]
permission = "is_authenticated"
"#;

/// A self-signed certificate for localhost and 127.0.0.1, and its key, made by openssl.
fn certificate(dir: &Path, name: &str) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .args(["-subj", &format!("/CN={name}"), "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(dir.join(format!("{name}.pem")))
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl req: {}", String::from_utf8_lossy(&out.stderr));
}

/// The SHA-256 fingerprint of a certificate file, or of the one a server presents.
fn fingerprint(pem: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl x509");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), pem).unwrap();
    let out = child.wait_with_output().unwrap();
    let fingerprint = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(fingerprint.contains("Fingerprint="), "no certificate in:\n{}", String::from_utf8_lossy(pem));
    fingerprint
}

fn served_fingerprint(host: &TestHost) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &host.addr.to_string(), "-servername", "localhost"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    fingerprint(&out.stdout)
}

/// curl's answer: (HTTP version, status, body).
fn curl(site: &Site, args: &[&str], url: &str) -> (String, u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(site.path().join("ca.pem"))
        .args(args)
        .args(["-w", "\n%{http_version} %{http_code}", url])
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl {args:?} {url}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap();
    let (version, status) = tail.split_once(' ').unwrap();
    (version.to_owned(), status.parse().unwrap(), body.to_owned())
}

fn tools_missing(test: &str) -> bool {
    for program in ["openssl", "curl"] {
        if find(program).is_none() {
            skip(test, program);
            return true;
        }
    }
    false
}

fn token_site(extra: &str) -> (Site, String) {
    let site = Site::new(&format!("{extra}\n{CONFIG}"));
    site.add_user("alice", "alice-pw", &[]);
    let key = site.token_for("alice");
    (site, key)
}

#[test]
fn token_authentication_over_tls_with_http2_and_http1_and_a_replaced_certificate_after_reload() {
    if tools_missing(
        "token_authentication_over_tls_with_http2_and_http1_and_a_replaced_certificate_after_reload",
    ) {
        return;
    }
    let (site, key) = token_site("[server]\ntls_cert_file = \"server.pem\"\ntls_key_file = \"server.key\"");
    certificate(site.path(), "first");
    std::fs::copy(site.path().join("first.pem"), site.path().join("server.pem")).unwrap();
    std::fs::copy(site.path().join("first.key"), site.path().join("server.key")).unwrap();
    std::fs::copy(site.path().join("first.pem"), site.path().join("ca.pem")).unwrap();
    let pid_file = site.path().join("authhost.pid");
    let host = site.serve_args(&["--pid-file", &pid_file.display().to_string()]);
    host.wait_for_log(|l| l.contains("listening on https://"));
    let port = host.addr.port();
    let url = format!("https://localhost:{port}/me");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let auth = format!("Authorization: Token {key}");

    for (protocol, expected) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let (version, status, body) = curl(&site, &[protocol, "--resolve", &resolve, "-H", &auth], &url);
        assert_eq!((version.as_str(), status), (expected, 200), "{protocol}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((body["user"].as_str(), body["scheme"].as_str()), (Some("alice"), Some("token")));
        // DRF's refusal is the same on both.
        let (_, status, body) =
            curl(&site, &[protocol, "--resolve", &resolve, "-H", "Authorization: Token nope"], &url);
        assert_eq!((status, body.as_str()), (401, r#"{"detail":"Invalid token."}"#), "{protocol}");
    }

    // A certificate replaced on disk is served after `authhost reload`.
    let first = std::fs::read(site.path().join("first.pem")).unwrap();
    assert_eq!(served_fingerprint(&host), fingerprint(&first));
    certificate(site.path(), "second");
    std::fs::copy(site.path().join("second.pem"), site.path().join("server.pem")).unwrap();
    std::fs::copy(site.path().join("second.key"), site.path().join("server.key")).unwrap();
    let out = site.authhost(&["reload", "--pid-file", &pid_file.display().to_string()], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    host.wait_for_log(|l| l.contains("config reloaded"));
    let second = std::fs::read(site.path().join("second.pem")).unwrap();
    assert_eq!(served_fingerprint(&host), fingerprint(&second));
    std::fs::copy(site.path().join("second.pem"), site.path().join("ca.pem")).unwrap();
    let (version, status, _) = curl(&site, &["--http2", "--resolve", &resolve, "-H", &auth], &url);
    assert_eq!((version.as_str(), status), ("2", 200));

    // A broken certificate refuses the reload, naming the file and the key; the running
    // certificate stays.
    std::fs::write(site.path().join("server.pem"), "not a certificate\n").unwrap();
    host.signal("HUP");
    let line = host.wait_for_log(|l| l.contains("reload rejected"));
    assert!(line.contains("server.pem") && line.contains("server.tls_cert_file"), "{line}");
    assert_eq!(served_fingerprint(&host), fingerprint(&second));
}

/// A certificate that cannot be used refuses start-up naming the file and the key: a key
/// that is not the certificate's, a missing file, and a half-given pair.
#[test]
fn a_bad_certificate_or_key_refuses_start_up_naming_the_file() {
    if tools_missing("a_bad_certificate_or_key_refuses_start_up_naming_the_file") {
        return;
    }
    let (site, _) = token_site("");
    certificate(site.path(), "one");
    certificate(site.path(), "two");
    let cases = [
        ("tls_cert_file = \"one.pem\"\ntls_key_file = \"two.key\"", "two.key", "server.tls_key_file"),
        (
            "tls_cert_file = \"missing.pem\"\ntls_key_file = \"one.key\"",
            "missing.pem",
            "server.tls_cert_file",
        ),
        ("tls_cert_file = \"one.pem\"", "authhost.toml", "server.tls_key_file"),
    ];
    for (server, file, key) in cases {
        site.write_config(&format!("[server]\n{server}\n{CONFIG}"));
        let out = site.authhost(&["check"], "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{server}: accepted");
        assert!(err.contains(file) && err.contains(key), "{server}: {err}");
    }
}

/// HTTP/2 without TLS (prior knowledge) is off unless `h2c = true`; with it, HTTP/2 and
/// HTTP/1.1 share the plain port.
#[test]
fn h2c_serves_http2_beside_http1_only_when_asked() {
    if tools_missing("h2c_serves_http2_beside_http1_only_when_asked") {
        return;
    }
    let (site, key) = token_site("[server]\nh2c = true");
    std::fs::write(site.path().join("ca.pem"), "").unwrap();
    let host = site.serve();
    let url = format!("http://{}/me", host.addr);
    let auth = format!("Authorization: Token {key}");
    for (protocol, expected) in [("--http2-prior-knowledge", "2"), ("--http1.1", "1.1")] {
        let (version, status, body) = curl(&site, &[protocol, "-H", &auth], &url);
        assert_eq!((version.as_str(), status), (expected, 200), "{protocol}: {body}");
    }
    drop(host);

    let (plain, key) = token_site("");
    std::fs::write(plain.path().join("ca.pem"), "").unwrap();
    let host = plain.serve();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "--http2-prior-knowledge",
            "-H",
            &format!("Authorization: Token {key}"),
        ])
        .arg(format!("http://{}/me", host.addr))
        .output()
        .unwrap();
    assert!(!out.status.success(), "HTTP/2 prior knowledge was answered without h2c");
}
