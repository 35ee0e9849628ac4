//! A store another process holds locked: writes answer 503 within `[store] busy_timeout`,
//! reads go on meanwhile, and service comes back by itself when the lock goes. One writer
//! in the host, so that its own writes never wait in SQLite's busy loop for each other.
//! See: issue 12 (item 4).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{Site, TestHost};

const CONFIG: &str = r#"
[[scheme]]
name = "basic"
plugin = "basic"
cache_ttl = "1h"

[[scheme]]
name = "token"
plugin = "token"
ttl = "1h"

[[route]]
path = "/api-token-auth/"
handler = "obtain_token"
schemes = []
permission = "allow_any"

[[route]]
path = "/login"
handler = "login_token"
schemes = ["basic"]
permission = "is_authenticated"
token_scheme = "token"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["token"]
permission = "is_authenticated"

[[route]]
path = "/metrics"
handler = "metrics"
schemes = []
permission = "allow_any"
"#;

const UNAVAILABLE: &str = "Authentication store unavailable.";

/// A site whose caches are off (every look-up reads the store) and whose store calls give
/// up after `busy_timeout`.
fn site(busy_timeout: &str) -> Site {
    let store = format!("user_cache_ttl = 0\nbusy_timeout = \"{busy_timeout}\"");
    site_with(Box::leak(store.into_boxed_str()))
}

fn site_with(store: &'static str) -> Site {
    let site = Site::with_cache(CONFIG, store);
    for name in ["alice", "bob", "carol", "dave", "erin"] {
        site.add_user(name, &format!("{name}-pw"), &[]);
    }
    site
}

async fn obtain_token(host: &TestHost, user: &str) -> (u16, Option<String>, Value) {
    let resp = host
        .request("POST", "/api-token-auth/")
        .json(&json!({"username": user, "password": format!("{user}-pw")}))
        .send()
        .await;
    (resp.status, resp.header("retry-after").map(str::to_owned), resp.json())
}

/// Another process's connection to the site's store, holding `BEGIN EXCLUSIVE` until
/// dropped (the test process is not the host's).
fn lock(site: &Site) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(site.db_path()).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    conn
}

/// Jobs waiting in the host's store queues, read from its metrics.
async fn store_jobs_queued(host: &TestHost) -> u64 {
    let text = host.get("/metrics").send().await.body;
    text.lines()
        .filter(|l| l.starts_with("authhost_pool_queue_depth{pool=\"store"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_locked_store_answers_503_within_busy_timeout_and_service_comes_back() {
    let site = site("300ms");
    let host = site.serve();
    let (status, _, body) = obtain_token(&host, "alice").await;
    assert_eq!(status, 200, "{body}");
    let alice = body["token"].as_str().unwrap().to_owned();

    let held = lock(&site);
    let started = Instant::now();
    let (status, retry_after, body) = obtain_token(&host, "bob").await;
    let waited = started.elapsed();
    assert_eq!((status, body), (503, json!({ "detail": UNAVAILABLE })), "{}", host.logs());
    assert_eq!(retry_after.as_deref(), Some("1"));
    // busy_timeout is 300 ms; SQLite's own timeout used to hold a write for 5 s.
    assert!(waited < Duration::from_secs(3), "the write waited {waited:?}");
    host.wait_for_log(|l| l.contains("store unavailable") && l.contains("locked"));

    // A read meanwhile: never a false "not authenticated", never a wait behind the lock.
    let resp = host.get("/me").header("authorization", format!("Token {alice}")).send().await;
    assert_eq!((resp.status, resp.json()["user"].clone()), (200, json!("alice")));

    // The lock goes: the next write succeeds with no restart.
    drop(held);
    let (status, _, body) = obtain_token(&host, "bob").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn reads_never_queue_behind_writes_waiting_on_a_lock() {
    let site = site("3s");
    let host = site.serve();
    let (status, _, body) = obtain_token(&host, "alice").await;
    assert_eq!(status, 200, "{body}");
    let alice = body["token"].as_str().unwrap().to_owned();

    let held = lock(&site);
    // Four writes, each waiting on the lock (up to busy_timeout, 3 s).
    let writers: Vec<_> = ["bob", "carol", "dave", "erin"]
        .into_iter()
        .map(|user| {
            let addr = host.addr;
            tokio::spawn(async move {
                let resp = crate::support::Req::to(addr, "POST", "/api-token-auth/")
                    .json(&json!({"username": user, "password": format!("{user}-pw")}))
                    .send()
                    .await;
                resp.status
            })
        })
        .collect();
    // Until the writes are in the host: at least two of them queued behind the first.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store_jobs_queued(&host).await < 2 {
        assert!(Instant::now() < deadline, "the writes never queued:\n{}", host.logs());
        tokio::task::yield_now().await;
    }
    // An uncached token look-up answers while every write still waits.
    let resp = host.get("/me").header("authorization", format!("Token {alice}")).send().await;
    assert_eq!((resp.status, resp.json()["user"].clone()), (200, json!("alice")));
    assert!(
        writers.iter().all(|w| !w.is_finished()),
        "the read waited until a write behind the lock gave up"
    );
    // Every write gives up within its own busy_timeout, not one after another.
    let started = Instant::now();
    for writer in writers {
        assert_eq!(writer.await.unwrap(), 503);
    }
    assert!(started.elapsed() < Duration::from_secs(6), "the writes gave up one after another");
    drop(held);
    let (status, _, body) = obtain_token(&host, "bob").await;
    assert_eq!(status, 200, "{body}");
}

/// Logins at once from many clients: the host's own writes wait for each other in its
/// queue, never in SQLite's busy loop, so none fails with "database is locked". (The
/// starvation the issue measured took minutes of sustained logins to show, about once every
/// 12 s; this guards the single writer, and `scripts/load`'s login-8 row measures it.)
#[tokio::test]
async fn concurrent_logins_never_lock_the_store_against_themselves() {
    // Caches on (verified passwords too), so that argon2 runs once per user.
    let site = site_with("busy_timeout = \"1s\"");
    let host = site.serve();
    let basic = |user: &str| {
        use base64::Engine as _;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{user}-pw")))
    };
    let login = |i: usize, user: &str| {
        let (addr, auth) = (host.addr, basic(user));
        async move {
            let resp = crate::support::Req::to(addr, "POST", "/login")
                .header("authorization", auth)
                .json(&json!({ "client": format!("c{i}") }))
                .send()
                .await;
            (resp.status, resp.body)
        }
    };
    // One login each first, so that argon2 runs once per user (basic's cache_ttl).
    for user in ["alice", "bob", "carol", "dave", "erin"] {
        assert_eq!(login(0, user).await.0, 200);
    }
    let mut logins = Vec::new();
    for i in 1..=200 {
        let user = ["alice", "bob", "carol", "dave", "erin"][i % 5];
        logins.push(tokio::spawn(login(i, user)));
    }
    for login in logins {
        let (status, body) = login.await.unwrap();
        assert_eq!(status, 200, "{body}\n{}", host.logs());
    }
    assert!(!host.settled_logs().contains("database is locked"), "{}", host.logs());
}
