//! `TestHost`: the real `authhost` binary with the real plugins, serving on 127.0.0.1:0
//! from a fresh directory with its own SQLite store. Tests talk to it over real sockets and
//! read what it logs.

#![allow(dead_code, unreachable_pub)] // each test module uses a part of this

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub mod browser;
pub mod peers;
pub mod postgres;
pub mod redis;
pub mod upstream;

/// The shipped plugins, built into `target/<profile>` beside the binary.
pub const SHIPPED: [&str; 6] = ["x_username", "basic", "token", "session", "remote_user", "jwt"];

/// The fixture plugins, which scripts/test builds into `target/fixtures/<profile>` so that
/// they never land in a shipped plugin directory.
pub const FIXTURES: [&str; 3] = ["probe", "wrong_abi", "not_a_plugin"];

/// Where cargo put the binary and the shipped plugin libraries (`target/debug`).
pub fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_owned()
}

/// Where scripts/test built the fixture plugins (`target/fixtures/debug`).
pub fn fixtures_dir() -> PathBuf {
    let build = build_dir();
    let profile = build.file_name().expect("profile folder").to_owned();
    build.parent().expect("target").join("fixtures").join(profile)
}

/// `libauthhost_<name>.so` (per platform).
pub fn library(name: &str) -> String {
    format!("{}authhost_{name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
}

/// A shipped plugin's or a fixture's library, asserting that it was built.
pub fn plugin_path(name: &str) -> PathBuf {
    let dir = if FIXTURES.contains(&name) { fixtures_dir() } else { build_dir() };
    let file = dir.join(library(name));
    assert!(
        file.exists(),
        "{} is missing: run the tests with scripts/test (it builds the plugins and fixtures first)",
        file.display()
    );
    file
}

/// A fresh folder holding a config (`authhost.toml`) and a store (`authhost.db`).
#[derive(Debug)]
pub struct Site {
    pub dir: tempfile::TempDir,
    /// `[store]` keys for the cache: the shipped settings unless a test asks otherwise.
    cache: &'static str,
    /// The store's url when it is not the site's own SQLite file (a PostgreSQL database).
    store_url: Option<String>,
}

impl Site {
    /// `config` is the TOML for schemes, defaults and routes; the site adds `[plugins]`
    /// and `[store]` pointing at the build folder and its own store, with the shipped
    /// cache settings (users, tokens and sessions kept 60 s, changes read every 250 ms).
    pub fn new(config: &str) -> Site {
        Site::with_cache(config, "")
    }

    /// As `new`, with these `[store]` cache keys instead of the shipped ones.
    pub fn with_cache(config: &str, cache: &'static str) -> Site {
        Site::with_store(config, cache, None)
    }

    /// As `with_cache`, on the store `store_url` names (a test's PostgreSQL database).
    pub fn with_store(config: &str, cache: &'static str, store_url: Option<String>) -> Site {
        let site = Site { dir: tempfile::tempdir().expect("temp dir"), cache, store_url };
        // The site's plugin directory: links to the shipped plugins and the fixtures.
        std::fs::create_dir(site.plugins_dir()).expect("plugins dir");
        for name in SHIPPED.iter().chain(&FIXTURES) {
            std::os::unix::fs::symlink(plugin_path(name), site.plugins_dir().join(library(name)))
                .expect("link a plugin");
        }
        site.write_config(config);
        // The command line works only on a store that exists. (A test of a bad config
        // sees its own command fail on it; this one's failure is not the test's.)
        let _ = site.authhost(&["store", "init"], "");
        site
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.path().join("plugins")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("authhost.toml")
    }

    pub fn db_path(&self) -> PathBuf {
        self.path().join("authhost.db")
    }

    /// The bytes of every file of the store: the database, its WAL and shared memory.
    pub fn store_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(self.path()).expect("site folder") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("authhost.db")) {
                bytes.extend(std::fs::read(&path).expect("store file"));
            }
        }
        assert!(!bytes.is_empty(), "no store files");
        bytes
    }

    /// Replaces the config: the same binary and plugins, no rebuild.
    pub fn write_config(&self, config: &str) {
        let text = format!(
            "[plugins]\ndir = {:?}\n\n[store]\nurl = \"{}\"\n{}\n\n{config}",
            self.plugins_dir().display(),
            self.store_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.db_path().display())),
            self.cache
        );
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// Writes a config exactly as given, for tests of bad configs.
    pub fn write_raw_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// Runs `authhost ARGS --config <site config>`, with `stdin` piped in.
    pub fn authhost(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(build_dir().join("authhost"))
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .current_dir(self.path())
            .env("AUTHHOST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn authhost");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
        child.wait_with_output().expect("authhost output")
    }

    /// `authhost token create USER`, asserting success: the key it prints.
    pub fn token_for(&self, user: &str) -> String {
        let out = self.authhost(&["token", "create", user], "");
        assert!(out.status.success(), "token create failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("a key").trim().to_owned()
    }

    /// `authhost user add NAME --password-stdin [flags]`, asserting success.
    pub fn add_user(&self, name: &str, password: &str, flags: &[&str]) {
        let mut args = vec!["user", "add", name, "--password-stdin"];
        args.extend_from_slice(flags);
        let out = self.authhost(&args, &format!("{password}\n"));
        assert!(out.status.success(), "user add failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts `authhost serve` on 127.0.0.1:0 and waits until it listens.
    pub fn serve(&self) -> TestHost {
        TestHost::start(self, &build_dir().join("authhost"), &[])
    }

    /// As `serve`, with another `authhost` executable (another release of the host).
    pub fn serve_with(&self, authhost: &Path) -> TestHost {
        TestHost::start(self, authhost, &[])
    }

    /// As `serve`, with more arguments (`--log-format json`).
    pub fn serve_args(&self, args: &[&str]) -> TestHost {
        TestHost::start(self, &build_dir().join("authhost"), args)
    }

    /// As `serve`, with these environment variables set for the host.
    pub fn serve_env(&self, env: &[(&str, &str)]) -> TestHost {
        TestHost::start_with(self, &build_dir().join("authhost"), &[], env)
    }
}

/// Lines a child wrote to stderr, shared with the thread that reads them.
#[derive(Debug, Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

/// A running `authhost serve`.
#[derive(Debug)]
pub struct TestHost {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Log>,
}

impl TestHost {
    fn start(site: &Site, authhost: &Path, args: &[&str]) -> TestHost {
        TestHost::start_with(site, authhost, args, &[])
    }

    fn start_with(site: &Site, authhost: &Path, args: &[&str], env: &[(&str, &str)]) -> TestHost {
        let mut child = Command::new(authhost)
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(site.config_path())
            .current_dir(site.path())
            .env("AUTHHOST_LOG", "info,authhost::app=debug,authhost::services=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn authhost serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Log::default());
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                sink.changed.notify_all();
            }
            sink.lines.lock().unwrap_or_else(|e| e.into_inner()).push("<stderr closed>".into());
            sink.changed.notify_all();
        });
        let line = wait_for(&log, |l| l.contains("listening on http") || l == "<stderr closed>");
        let Some(addr) = line.split("listening on http").nth(1).and_then(|rest| rest.split("://").nth(1))
        else {
            let status = child.wait().expect("wait");
            panic!(
                "authhost serve exited ({status}) before listening:\n{}",
                log.lines.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
            );
        };
        // Text or JSON lines: the address is what follows, up to the first character that
        // cannot be in one.
        let addr: String =
            addr.chars().take_while(|c| c.is_ascii_alphanumeric() || ".:[]".contains(*c)).collect();
        let addr = addr.parse().expect("socket address");
        TestHost { child, addr, log }
    }

    /// Everything the host has logged up to now, for assertions on what is (not) in the
    /// log: the host writes log lines on a thread of its own, so a marker request is sent
    /// first and its access-log line waited for; every line queued before it is then in.
    pub fn settled_logs(&self) -> String {
        static MARKERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = MARKERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let marker = format!("/log-barrier-{n}");
        let _ = self.raw(
            format!("GET {marker} HTTP/1.1\r\nHost: authhost.test\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        self.wait_for_log(|l| l.contains(&format!("path=\"{marker}\"")));
        self.logs()
    }

    /// Everything the host has logged so far.
    pub fn logs(&self) -> String {
        self.log.lines.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    }

    /// Waits (at most 10 s) for a log line matching `pred` and returns it.
    pub fn wait_for_log(&self, pred: impl Fn(&str) -> bool) -> String {
        wait_for(&self.log, pred)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().expect("kill");
        assert!(status.success());
    }

    /// Waits (at most 10 s) for the process to exit.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "authhost did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn get(&self, path: &str) -> Req {
        self.request("GET", path)
    }

    pub fn request(&self, method: &str, path: &str) -> Req {
        Req::to(self.addr, method, path)
    }

    /// Writes raw bytes on a new connection and returns what the host answers, up to EOF.
    pub fn raw(&self, bytes: &[u8]) -> String {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The host may answer and close before reading everything: ignore write errors.
        let _ = stream.write_all(bytes);
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(log: &Log, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lines = log.lines.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(line) = lines.iter().find(|l| pred(l)) {
            return line.clone();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no such log line in:\n{}", lines.join("\n"));
        lines = log.changed.wait_timeout(lines, left).unwrap_or_else(|e| e.into_inner()).0;
    }
}

/// A request being built.
#[derive(Debug)]
pub struct Req {
    addr: SocketAddr,
    builder: hyper::http::request::Builder,
    body: Vec<u8>,
    /// The address the connection comes from (another client on loopback).
    from: Option<std::net::IpAddr>,
}

impl Req {
    /// A request to a server at `addr` (one served in-process, say).
    pub fn to(addr: SocketAddr, method: &str, path: &str) -> Req {
        Req {
            addr,
            builder: Request::builder().method(method).uri(path).header("host", "authhost.test"),
            body: Vec::new(),
            from: None,
        }
    }

    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.builder = self.builder.header(name, value.as_ref());
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A form body, `application/x-www-form-urlencoded`.
    pub fn form(self, body: &str) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded").body(body)
    }

    /// A JSON body.
    pub fn json(self, body: &Value) -> Self {
        self.header("content-type", "application/json").body(body.to_string())
    }

    /// Connects from `ip` (127.0.0.x: another client on this machine).
    pub fn from(mut self, ip: &str) -> Self {
        self.from = Some(ip.parse().expect("an address"));
        self
    }

    pub async fn send(self) -> Resp {
        let stream = match self.from {
            None => tokio::net::TcpStream::connect(self.addr).await.expect("connect"),
            Some(ip) => {
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                socket.bind(SocketAddr::new(ip, 0)).expect("bind the client address");
                socket.connect(self.addr).await.expect("connect")
            }
        };
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        let req = self.builder.body(Full::new(Bytes::from(self.body))).expect("request");
        let resp = sender.send_request(req).await.expect("response");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("text header"))
    }

    /// The `Set-Cookie` headers as (name, value, attributes).
    pub fn cookies(&self) -> Vec<(String, String, String)> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| {
                let text = v.to_str().expect("text cookie");
                let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
                let (name, value) = pair.split_once('=').expect("name=value");
                (name.to_owned(), value.to_owned(), attributes.trim().to_owned())
            })
            .collect()
    }

    /// The value a `Set-Cookie` header gives `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies().into_iter().find(|(n, _, _)| n == name).map(|(_, v, _)| v)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Logs `user` in through the `login` view at `/login` (a CSRF token first, as a browser
/// gets it): the cookie header that carries the new session and CSRF cookie, and the CSRF
/// secret for unsafe requests.
pub async fn session_login(host: &TestHost, user: &str, password: &str) -> (String, String) {
    let resp = host.get("/login").send().await;
    let csrf = resp.cookie("csrftoken").expect("csrftoken");
    let token = resp.json()["csrftoken"].as_str().expect("token").to_owned();
    let resp = host
        .request("POST", "/login")
        .header("cookie", format!("csrftoken={csrf}"))
        .header("x-csrftoken", &token)
        .form(&format!("username={user}&password={password}"))
        .send()
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let csrf = resp.cookie("csrftoken").expect("rotated csrftoken");
    let session = resp.cookie("sessionid").expect("sessionid");
    (format!("csrftoken={csrf}; sessionid={session}"), csrf)
}

/// One request a [`Hammer`] client sent: when it started and what came back (0: the
/// connection failed).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub started: Instant,
    pub status: u16,
}

/// Clients sending `GET /me` back to back on their own keep-alive connections, each with
/// its own headers, until stopped.
#[derive(Debug)]
pub struct Hammer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    successes: Arc<std::sync::atomic::AtomicUsize>,
    clients: Vec<tokio::task::JoinHandle<Vec<Sample>>>,
}

impl Hammer {
    /// Starts `clients` clients; `headers(i)` gives client `i`'s headers.
    pub fn start(
        host: &TestHost,
        clients: usize,
        headers: impl Fn(usize) -> Vec<(String, String)>,
    ) -> Hammer {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let successes = Arc::new(AtomicUsize::new(0));
        let clients = (0..clients)
            .map(|i| {
                let (addr, headers) = (host.addr, headers(i));
                let (stop, successes) = (Arc::clone(&stop), Arc::clone(&successes));
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    let mut sender = None;
                    while !stop.load(Ordering::Relaxed) {
                        if sender.is_none() {
                            sender = connect(addr).await;
                        }
                        let mut req = Request::builder().uri("/me").header("host", "authhost.test");
                        for (name, value) in &headers {
                            req = req.header(name, value);
                        }
                        let req = req.body(Full::new(Bytes::new())).expect("request");
                        let started = Instant::now();
                        let status = match sender.as_mut() {
                            Some(s) => match s.send_request(req).await {
                                Ok(resp) => {
                                    let status = resp.status().as_u16();
                                    let _ = resp.into_body().collect().await;
                                    status
                                }
                                Err(_) => 0,
                            },
                            None => 0,
                        };
                        if status == 0 {
                            sender = None;
                        } else if status == 200 {
                            successes.fetch_add(1, Ordering::Relaxed);
                        }
                        samples.push(Sample { started, status });
                    }
                    samples
                })
            })
            .collect();
        Hammer { stop, successes, clients }
    }

    /// Waits (at most 20 s) until `n` requests have been authenticated.
    pub async fn wait_for_successes(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.successes.load(std::sync::atomic::Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "the clients were not authenticated {n} times");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Lets the clients go on until `until`: the window in which results are judged.
    pub async fn wait_until(&self, until: Instant) {
        tokio::time::sleep_until(until.into()).await;
    }

    /// Stops the clients; every request they sent, in no particular order.
    pub async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut samples = Vec::new();
        for client in self.clients {
            samples.extend(client.await.expect("client task"));
        }
        samples
    }
}

async fn connect(addr: SocketAddr) -> Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    Some(sender)
}
