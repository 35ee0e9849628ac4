//! Proxy routes to an `https://` upstream: tools/hello serving TLS with a certificate a
//! test CA signed. The upstream's certificate is checked against the route's
//! `upstream_ca_file` (for its address or its name); one that no trusted CA signed is a 502
//! whose log line says why, and the request never reaches the upstream. A WebSocket goes
//! through to a TLS upstream too, over the connection its upgrade opened.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::gateway::ALICE_KEY;
use crate::support::{build_dir, upstream, Site};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`NAME.pem`) and a certificate it signed for localhost and 127.0.0.1, as a server
/// or as a client (`NAME-leaf.pem`, key `NAME-leaf.key`), made by openssl in `dir`.
fn ca_and_leaf(dir: &Path, name: &str) {
    let (ca, ca_key) = (format!("{name}.pem"), format!("{name}.key"));
    let (leaf, leaf_key, csr) =
        (format!("{name}-leaf.pem"), format!("{name}-leaf.key"), format!("{name}.csr"));
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let subject = format!("/CN={name} test CA");
    openssl(
        dir,
        &[&["req", "-x509", "-days", "2", "-subj", &subject][..], &ec, &["-keyout", &ca_key, "-out", &ca]]
            .concat(),
    );
    openssl(
        dir,
        &[&["req", "-subj", "/CN=localhost"][..], &ec, &["-keyout", &leaf_key, "-out", &csr]].concat(),
    );
    // Good for a server and for a client (mutual TLS).
    let extensions = "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
                      extendedKeyUsage=serverAuth,clientAuth\n";
    std::fs::write(dir.join("leaf.ext"), extensions).expect("extensions file");
    openssl(
        dir,
        &["x509", "-req", "-days", "2", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key, "-CAcreateserial"]
            .into_iter()
            .chain(["-extfile", "leaf.ext", "-out", &leaf])
            .collect::<Vec<_>>(),
    );
}

/// tools/hello serving TLS on 127.0.0.1; stopped when dropped.
struct TlsHello {
    child: Child,
    addr: String,
}

impl TlsHello {
    fn start(cert: &Path, key: &Path) -> TlsHello {
        let mut child = Command::new(build_dir().join("authhost-hello"))
            .arg("127.0.0.1:0")
            .arg("--tls")
            .args([cert, key])
            .stderr(Stdio::piped())
            .spawn()
            .expect("authhost-hello");
        let mut line = String::new();
        BufReader::new(child.stderr.take().expect("stderr")).read_line(&mut line).expect("its first line");
        let addr = match line.trim().strip_prefix("listening on https://") {
            Some(addr) => addr.to_owned(),
            None => panic!("authhost-hello did not start: {line}"),
        };
        TlsHello { child, addr }
    }
}

impl Drop for TlsHello {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn an_https_upstream_is_reached_over_tls_and_its_certificate_is_checked() {
    let certs = tempfile::tempdir().expect("temp dir");
    ca_and_leaf(certs.path(), "trusted");
    ca_and_leaf(certs.path(), "other");
    let hello =
        TlsHello::start(&certs.path().join("trusted-leaf.pem"), &certs.path().join("trusted-leaf.key"));
    let port = hello.addr.rsplit(':').next().expect("a port");
    let (trusted, other) = (certs.path().join("trusted.pem"), certs.path().join("other.pem"));
    let site = Site::new(&format!(
        r#"
[[scheme]]
name = "token"
plugin = "token"

[[route]]
path = "/app"
prefix = true
upstream = "https://{addr}"
upstream_ca_file = {trusted:?}
schemes = ["token"]
permission = "is_authenticated"

[[route]]
path = "/by-name"
upstream = "https://localhost:{port}"
upstream_ca_file = {trusted:?}
schemes = []
permission = "allow_any"

[[route]]
path = "/untrusted"
upstream = "https://{addr}"
upstream_ca_file = {other:?}
schemes = []
permission = "allow_any"
"#,
        addr = hello.addr,
    ));
    site.add_user("alice", "alice-pw", &[]);
    let out = site.authhost(&["token", "create", "alice", "--key", ALICE_KEY], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // `authhost check` shows the upstream as configured, https included.
    let out = site.authhost(&["check"], "");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains(&format!("-> https://{}", hello.addr)), "{shown}");
    let host = site.serve();
    let hello_world = json!({"hello": "world"});
    let resp = host.get("/app/x").header("authorization", format!("Token {ALICE_KEY}")).send().await;
    assert_eq!((resp.status, resp.json()), (200, hello_world.clone()), "{}", resp.body);
    // Twice more: the second and third go over the pooled TLS connection.
    for _ in 0..2 {
        let resp = host.get("/app/y").header("authorization", format!("Token {ALICE_KEY}")).send().await;
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
    assert_eq!(host.get("/app/x").send().await.status, 401);
    // By name: the certificate names localhost too.
    let resp = host.get("/by-name").send().await;
    assert_eq!((resp.status, resp.json()), (200, hello_world), "{}", resp.body);
    // Signed by a CA the route does not trust: 502, and the log line says why.
    let resp = host.get("/untrusted").send().await;
    assert_eq!((resp.status, resp.json()), (502, json!({"detail": "Bad gateway."})));
    let line = host.wait_for_log(|l| l.contains("upstream failed") && l.contains("/untrusted"));
    assert!(line.contains("invalid peer certificate") && line.contains("UnknownIssuer"), "{line}");
}

#[tokio::test]
async fn a_websocket_reaches_an_https_upstream_over_its_tls_connection() {
    let certs = tempfile::tempdir().expect("temp dir");
    ca_and_leaf(certs.path(), "trusted");
    let (cert, key) = (certs.path().join("trusted-leaf.pem"), certs.path().join("trusted-leaf.key"));
    let tls = authhost::tls::server_config(&cert, &key, Path::new("test")).expect("the test certificate");
    let (ws_upstream, seen) = upstream::websocket_echo_over(Some(tls)).await;
    let site = Site::new(&format!(
        r#"
[[scheme]]
name = "token"
plugin = "token"

[[route]]
path = "/ws"
upstream = "https://{ws_upstream}"
upstream_ca_file = {trusted:?}
schemes = ["token"]
permission = "is_authenticated"
"#,
        trusted = certs.path().join("trusted.pem"),
    ));
    site.add_user("alice", "alice-pw", &[]);
    let out = site.authhost(&["token", "create", "alice", "--key", ALICE_KEY], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let host = site.serve();
    let mut request = format!("ws://{}/ws", host.addr).into_client_request().expect("request");
    request.headers_mut().insert("authorization", format!("Token {ALICE_KEY}").parse().expect("header"));
    let stream = tokio::net::TcpStream::connect(host.addr).await.expect("connect");
    let (mut ws, resp) = tokio_tungstenite::client_async(request, stream).await.expect("handshake");
    assert_eq!(resp.status(), 101);
    for text in ["over TLS", "and again"] {
        ws.send(Message::text(text)).await.expect("send");
        let back = ws.next().await.expect("an answer").expect("a message");
        assert_eq!(back.into_text().expect("text").as_str(), text);
    }
    ws.close(None).await.expect("close");
    let seen = seen.lock().expect("seen").clone();
    assert!(seen.iter().any(|(n, v)| n == "x-authenticated-user" && v == "alice"), "{seen:?}");
}

#[test]
fn an_https_upstream_on_a_system_without_trusted_cas_refuses_the_config_and_says_what_to_do() {
    let site = Site::new(
        "[[route]]\npath = \"/x\"\nupstream = \"https://api.example.com:443\"\nschemes = []\npermission = \"allow_any\"\n",
    );
    let (empty_file, empty_dir) = (site.path().join("no-cas.pem"), site.path().join("no-cas"));
    std::fs::write(&empty_file, "").expect("an empty bundle");
    std::fs::create_dir(&empty_dir).expect("an empty directory");
    // The system's CAs, as rustls-native-certs finds them: here an empty bundle and folder.
    let out = Command::new(build_dir().join("authhost"))
        .args(["check", "--config"])
        .arg(site.config_path())
        .env("SSL_CERT_FILE", &empty_file)
        .env("SSL_CERT_DIR", &empty_dir)
        .output()
        .expect("authhost check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("route[0] (\"/x\").upstream: this system has no trusted CA certificates to check the upstream with")
            && err.contains("install ca-certificates or set upstream_ca_file"),
        "{err}"
    );
}

/// TLS settings for an upstream that wants a client certificate `ca` signed.
fn requiring_client_certificates(cert: &Path, key: &Path, ca: &Path) -> Arc<ServerConfig> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca).expect("the CA")).expect("a CA certificate");
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
        .build()
        .expect("a client verifier");
    let chain = vec![CertificateDer::from_pem_file(cert).expect("the certificate")];
    let key = PrivateKeyDer::from_pem_file(key).expect("the key");
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("a server certificate");
    Arc::new(config)
}

#[tokio::test]
async fn mutual_tls_shows_the_upstream_a_client_certificate_where_the_route_names_one() {
    let certs = tempfile::tempdir().expect("temp dir");
    ca_and_leaf(certs.path(), "trusted");
    let file = |name: &str| certs.path().join(name);
    let tls = requiring_client_certificates(
        &file("trusted-leaf.pem"),
        &file("trusted-leaf.key"),
        &file("trusted.pem"),
    );
    let (ws_upstream, _) = upstream::websocket_echo_over(Some(tls)).await;
    let site = Site::new(&format!(
        r#"
[[route]]
path = "/mtls"
upstream = "https://{ws_upstream}"
upstream_ca_file = {ca:?}
upstream_client_cert_file = {cert:?}
upstream_client_key_file = {key:?}
schemes = []
permission = "allow_any"

[[route]]
path = "/no-certificate"
upstream = "https://{ws_upstream}"
upstream_ca_file = {ca:?}
schemes = []
permission = "allow_any"
"#,
        ca = file("trusted.pem"),
        cert = file("trusted-leaf.pem"),
        key = file("trusted-leaf.key"),
    ));
    let host = site.serve();
    let connect = |path: &'static str| {
        let addr = host.addr;
        async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            tokio_tungstenite::client_async(format!("ws://{addr}{path}"), stream).await
        }
    };
    let (mut ws, resp) = connect("/mtls").await.expect("handshake");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("with a client certificate")).await.expect("send");
    let back = ws.next().await.expect("an answer").expect("a message");
    assert_eq!(back.into_text().expect("text").as_str(), "with a client certificate");
    match connect("/no-certificate").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 502),
        other => panic!("expected a 502, got {:?}", other.map(|(_, r)| r.status())),
    }
    host.wait_for_log(|l| l.contains("upstream failed") && l.contains("/no-certificate"));
}
