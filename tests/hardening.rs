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
    serve(CONFIG)
}

/// A host on `config`, with alice (password `alice-pw`).
fn serve(config: &str) -> (Site, TestHost) {
    let site = Site::new(config);
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
    assert!(!host.settled_logs().contains("evil.com"), "the refused Host reached a log line");
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

/// Item 7: the remote-user scheme refuses a joined value (two headers, which the host
/// joins as WSGI servers do) or one no username can be, and never creates a user from it.
#[test]
fn remote_user_refuses_a_joined_or_overlong_name_and_creates_nobody() {
    let site = Site::new(
        r#"
[[scheme]]
name = "remote-user"
plugin = "remote-user"
trusted_proxies = ["127.0.0.1"]

[[route]]
path = "/whoami"
handler = "whoami"
schemes = ["remote-user"]
permission = "is_authenticated"
"#,
    );
    let host = site.serve();
    let long = "a".repeat(151);
    for headers in [
        "X-Remote-User: alice\r\nX-Remote-User: root\r\n".to_owned(),
        "X-Remote-User: alice, root\r\n".to_owned(),
        format!("X-Remote-User: {long}\r\n"),
    ] {
        let text = host
            .raw(format!("GET /whoami HTTP/1.1\r\nHost: a\r\n{headers}Connection: close\r\n\r\n").as_bytes());
        let (status, body) = status_and_body(&text);
        assert!(status == 401 || status == 403, "{headers}: {text}");
        assert_eq!(body, r#"{"detail":"Invalid remote user."}"#, "{headers}");
    }
    // A well-formed name still works, and is the only user there is.
    let text =
        host.raw(b"GET /whoami HTTP/1.1\r\nHost: a\r\nX-Remote-User: alice\r\nConnection: close\r\n\r\n");
    assert_eq!(status_and_body(&text).0, 200, "{text}");
    let users = site.authhost(&["user", "list"], "");
    let list = String::from_utf8_lossy(&users.stdout);
    assert!(list.contains("alice") && !list.contains("root") && !list.contains(&long), "{list}");
}

/// Item 7: the store holds argon2 hashes and token digests: the database and its WAL
/// files are readable by their owner only (they were created 0644).
#[test]
fn the_store_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (site, host) = host();
    // Serving, with a write behind it, so that the -wal and -shm files exist.
    let body = r#"{"username":"alice","password":"alice-pw"}"#;
    let text = host.raw(
        format!(
            "POST /api-token-auth/ HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(status_and_body(&text).0, 200, "{text}");
    let db = site.db_path();
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        let mode = std::fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{} is {:o}", file.display(), mode & 0o777);
    }
}

/// Item 7: a reload to a config with no routes is refused (it would turn every route into
/// a 404), and a rejected reload's log line carries the underlying cause.
#[tokio::test]
async fn a_reload_to_no_routes_is_refused_and_a_rejection_names_its_cause() {
    let (site, host) = host();
    site.write_config("");
    host.signal("HUP");
    let line = host.wait_for_log(|l| l.contains("reload rejected"));
    assert!(line.contains("no [[route]]"), "{line}");
    let text = host.raw(b"GET /whoami HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(status_and_body(&text).0, 200, "the running config stays: {text}");
    // A token secret that cannot be read: the line says why, not only that.
    std::fs::create_dir(site.path().join("secret-folder")).unwrap();
    site.write_config(&format!(
        "token_secret_file = \"secret-folder\"\n{CONFIG}\n[[route]]\npath = \"/t\"\nhandler = \"obtain_token\"\nschemes = []\npermission = \"allow_any\""
    ));
    host.signal("HUP");
    let line = host.wait_for_log(|l| l.contains("reload rejected") && l.contains("secret-folder"));
    assert!(line.contains("cannot read the token secret"), "the cause is missing: {line}");
}

/// Item 3: a store file replaced under a running host (backup, remove, copy back) is
/// noticed: the host reopens it, and a change the CLI makes to the new file reaches it
/// within the usual poll bound (it used to keep reading the deleted file).
#[tokio::test]
async fn a_store_file_replaced_under_a_running_host_is_reopened() {
    let (site, host) = host();
    site.add_user("carol", "carol-pw", &[]);
    let whoami = || host.get("/whoami").header("x-username", "carol").send();
    assert_eq!(whoami().await.json()["user"], "carol");
    // sqlite3 a.db ".backup b.db"; rm a.db*; cp b.db a.db
    let db = site.db_path();
    let copy = site.path().join("copy.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute("VACUUM INTO ?1", [copy.display().to_string()]).unwrap();
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(&copy, &db).unwrap();
    let out = site.authhost(&["user", "deactivate", "carol"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Polled with a deadline: the change poll (250 ms), the reopen, then the next read.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = whoami().await;
        if resp.json()["user"] != "carol" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "carol is still authenticated from the replaced store:\n{}",
            host.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    host.wait_for_log(|l| l.contains("the store file was replaced"));
}

/// Item 7: usernames are normalised as Django's `normalize_username` does (NFKC), on
/// creation and on look-up: a fullwidth `ａｌｉｃｅ` is alice, never a second account.
#[tokio::test]
async fn a_fullwidth_lookalike_is_the_same_user_not_a_new_one() {
    let (site, host) = host();
    let out = site.authhost(&["user", "add", "ａｌｉｃｅ", "--password-stdin"], "other-pw\n");
    assert!(!out.status.success(), "a lookalike of alice was created");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    site.add_user("ｂｏｂ", "bob-pw", &[]);
    let list = site.authhost(&["user", "list"], "");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.lines().any(|l| l.split('\t').nth(1) == Some("bob")), "{list}");
    assert!(!list.contains('ｂ'), "{list}");
    // A login by username and X-USERNAME name the same user either way.
    let resp =
        host.request("POST", "/api-token-auth/").form("username=ａｌｉｃｅ&password=alice-pw").send().await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let resp = host.get("/whoami").header("x-username", "ｂｏｂ".as_bytes()).send().await;
    assert_eq!(resp.json()["user"], "bob", "{}", resp.body);
    let out = site.authhost(&["user", "deactivate", "ｂｏｂ"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Item 8: with `[session] secure = true` (the host is reached over https), an unsafe
/// request without an `Origin` needs a same-origin `Referer`, with Django's reasons.
#[tokio::test]
async fn over_https_an_unsafe_request_without_origin_needs_a_same_origin_referer() {
    let site = Site::new(
        r#"
[session]
secure = true

[[route]]
path = "/login"
handler = "login"
schemes = []
permission = "allow_any"
"#,
    );
    site.add_user("alice", "alice-pw", &[]);
    let host = site.serve();
    let form = host.get("/login").send().await;
    let cookie = form.cookie("csrftoken").expect("csrftoken");
    let token = form.json()["csrftoken"].as_str().unwrap().to_owned();
    let post = |referer: Option<&'static str>| {
        let mut req = host
            .request("POST", "/login")
            .header("cookie", format!("csrftoken={cookie}"))
            .header("x-csrftoken", &token)
            .form("username=alice&password=alice-pw");
        if let Some(r) = referer {
            req = req.header("referer", r);
        }
        req.send()
    };
    for (referer, reason) in [
        (None, "Referer checking failed - no Referer.".to_owned()),
        (Some("not a url"), "Referer checking failed - Referer is malformed.".to_owned()),
        (
            Some("http://authhost.test/"),
            "Referer checking failed - Referer is insecure while host is secure.".to_owned(),
        ),
        (
            Some("https://evil.test/page"),
            "Referer checking failed - https://evil.test/page does not match any trusted origins.".to_owned(),
        ),
    ] {
        let resp = post(referer).await;
        assert_eq!(resp.status, 403, "{referer:?}: {}", resp.body);
        assert_eq!(
            resp.json(),
            serde_json::json!({ "detail": format!("CSRF Failed: {reason}") }),
            "{referer:?}"
        );
    }
    let resp = post(Some("https://authhost.test/login")).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
}

/// Item 6: a FIFO (or anything but a regular file) where authhost reads a file at load
/// (the config, the token secret, a plugin's key file) is refused at once, naming the
/// file; it used to wedge `check`, the reload and shutdown waiting for a writer.
#[test]
fn a_fifo_where_a_file_is_read_is_refused_at_once() {
    let mkfifo = |path: &std::path::Path| {
        let status = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo");
        assert!(status.success());
    };
    let run = |site: &Site, args: &[&str], config: &std::path::Path| {
        let mut child = std::process::Command::new(crate::support::build_dir().join("authhost"))
            .args(args)
            .arg("--config")
            .arg(config)
            .current_dir(site.path())
            .env_remove("AUTHHOST_TOKEN_SECRET")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run authhost");
        // Polled with a deadline: a wedged process is killed, and the test fails.
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{args:?} is waiting on a FIFO");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(!status.success(), "{args:?} accepted a FIFO");
        let mut err = String::new();
        child.stderr.take().expect("stderr").read_to_string(&mut err).expect("read stderr");
        err
    };
    // The config itself.
    let site = Site::new("");
    let fifo_config = site.path().join("fifo.toml");
    mkfifo(&fifo_config);
    let err = run(&site, &["check"], &fifo_config);
    assert!(err.contains("fifo.toml") && err.contains("not a regular file"), "{err}");
    // The token secret.
    let site = Site::with_cache(
        "[[route]]\npath = \"/t\"\nhandler = \"obtain_token\"\nschemes = []\npermission = \"allow_any\"\n",
        "token_secret_file = \"secret.fifo\"",
    );
    mkfifo(&site.path().join("secret.fifo"));
    let err = run(&site, &["check"], &site.config_path());
    assert!(err.contains("secret.fifo") && err.contains("not a regular file"), "{err}");
    // A plugin's key file.
    let site = Site::new(
        "[[scheme]]\nname = \"jwt\"\nplugin = \"jwt\"\nalgorithm = \"EdDSA\"\npublic_key_file = \"key.fifo\"\n",
    );
    mkfifo(&site.path().join("key.fifo"));
    let err = run(&site, &["check"], &site.config_path());
    assert!(err.contains("key.fifo") && err.contains("not a regular file"), "{err}");
}

/// Item 6: SIGTERM ends the host within `shutdown_timeout` even while a reload is wedged
/// (a plugin constructor that never returns, here); it used to wait for the reload.
#[test]
fn sigterm_exits_within_the_shutdown_timeout_while_a_reload_is_wedged() {
    let config = |delay: u64| {
        format!(
            "[server]\nshutdown_timeout = \"1s\"\n\n[[scheme]]\nname = \"probe\"\npath = {:?}\nstart_delay_ms = {delay}\n\n\
             [[route]]\npath = \"/whoami\"\nhandler = \"whoami\"\nschemes = [\"probe\"]\npermission = \"allow_any\"\n",
            crate::support::plugin_path("probe").display().to_string()
        )
    };
    let site = Site::new(&config(0));
    let mut host = site.serve();
    site.write_config(&config(600_000));
    host.signal("HUP");
    host.wait_for_log(|l| l.contains("SIGHUP received"));
    let started = Instant::now();
    host.signal("TERM");
    let status = host.wait_exit();
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    assert!(status.success(), "{status}");
}

/// A site whose connections must send a request head within one second.
const PACED: &str = r#"
[server]
header_timeout = "1s"

[[scheme]]
name = "x-username"
plugin = "x-username"

# Answers after 2.5 s: a request in flight longer than header_timeout.
[[scheme]]
name = "slow"
plugin = "probe"
mode = "user"
user = "alice"
delay_ms = 2500

[[route]]
path = "/whoami"
handler = "whoami"
schemes = ["x-username"]
permission = "allow_any"

[[route]]
path = "/slow"
handler = "whoami"
schemes = ["slow"]
permission = "is_authenticated"
"#;

fn paced_host() -> (Site, TestHost) {
    serve(PACED)
}

/// Whether the host has closed `stream` (a read sees the end; `stream` has a short read
/// timeout, so this returns quickly while it is open).
fn closed_by_host(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(n) => n == 0,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// Slowloris: a head sent a byte every 100 ms never completes; the connection is closed
/// once `[server] header_timeout` has passed since it opened, bytes arriving or not.
#[test]
fn a_head_trickled_byte_by_byte_is_cut_off_after_header_timeout() {
    let (_site, host) = paced_host();
    let mut stream = TcpStream::connect(host.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let opened = Instant::now();
    stream.write_all(b"GET /whoami HTTP/1.1\r\nHost: a\r\n").unwrap();
    let header =
        b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_after = None;
    for byte in header.iter().cycle() {
        // The client's own pace: one byte, then the 100 ms read timeout as its pause.
        if stream.write_all(&[*byte]).is_err() || closed_by_host(&mut stream) {
            closed_after = Some(opened.elapsed());
            break;
        }
        assert!(opened.elapsed() < Duration::from_secs(10), "the trickled head was never cut off");
    }
    let took = closed_after.unwrap();
    assert!(took >= Duration::from_millis(900), "closed after {took:?}, before header_timeout");
}

/// An idle keep-alive connection is closed `header_timeout` after its last response; one
/// request in flight for longer is answered, and its connection then serves another.
#[test]
fn header_timeout_closes_idle_connections_and_never_a_request_in_flight() {
    let (_site, host) = paced_host();
    let mut stream = TcpStream::connect(host.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let read_answer = |stream: &mut TcpStream| {
        let mut buffer = vec![0u8; 4096];
        let mut text = String::new();
        while !text.contains("\r\n\r\n") || !text.trim_end().ends_with('}') {
            let n = stream.read(&mut buffer).expect("the answer");
            assert!(n > 0, "closed before answering: {text}");
            text.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
        text
    };
    // 2.5 s in flight, over a 1 s header_timeout: answered.
    stream.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let slow = read_answer(&mut stream);
    assert_eq!(status_and_body(&slow).0, 200, "{slow}");
    // The same connection, straight after: served.
    stream.write_all(b"GET /whoami HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let quick = read_answer(&mut stream);
    assert_eq!(status_and_body(&quick).0, 200, "{quick}");
    // Then idle: the host closes it after header_timeout (the read sees the end).
    let idle = Instant::now();
    let mut byte = [0u8; 1];
    let end = stream.read(&mut byte);
    let took = idle.elapsed();
    assert!(matches!(end, Ok(0)), "an idle connection was not closed: {end:?}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "closed after {took:?}");
}
