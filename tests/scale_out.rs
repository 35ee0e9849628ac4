//! Several authhost processes on one PostgreSQL database (a test's own): what one host or
//! the command line changes, every other host honours within the stated bound.
//! See: issue 14 (must-shows 1 and 2).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::postgres::TestDb;
use crate::support::redis::TestRedis;
use crate::support::{session_login, Site, TestHost};

const CONFIG: &str = r#"
[throttle.rates]
five = "5/min"

[[scheme]]
name = "basic"
plugin = "basic"

[[scheme]]
name = "token"
plugin = "token"
ttl = "1h"

[[scheme]]
name = "session"
plugin = "session"

[[route]]
path = "/api-token-auth/"
handler = "obtain_token"
schemes = []
permission = "allow_any"

[[route]]
path = "/knox/login"
handler = "login_token"
schemes = ["basic"]
permission = "is_authenticated"
token_scheme = "token"

[[route]]
path = "/knox/logout"
handler = "logout_token"
schemes = ["token"]
permission = "is_authenticated"

[[route]]
path = "/login"
handler = "login"
schemes = []
permission = "allow_any"

[[route]]
path = "/logout"
handler = "logout"
schemes = []
permission = "allow_any"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["token", "session"]
permission = "is_authenticated"

[[route]]
path = "/limited"
handler = "whoami"
schemes = ["token"]
permission = "is_authenticated"
throttle = ["five"]
"#;

/// How long a change made through one host or the command line may take to be honoured by
/// every other host: two change polls (100 ms here) and a store round trip, with room for
/// a loaded machine.
const BOUND: Duration = Duration::from_secs(2);

const ALICE_BASIC: &str = "Basic YWxpY2U6YWxpY2UtcHc="; // alice:alice-pw

/// Polls `host` until `request` answers `status`; the time it took, or a panic after BOUND.
async fn refused_within<F, Fut>(host: &TestHost, what: &str, status: u16, request: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = crate::support::Resp>,
{
    let started = Instant::now();
    loop {
        let resp = request().await;
        if resp.status == status {
            return started.elapsed();
        }
        assert!(started.elapsed() < BOUND, "{what}: still {} after {BOUND:?}:\n{}", resp.status, host.logs());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_on_one_postgresql_share_credentials_and_revocations() {
    let Some(db) = TestDb::create("two_hosts_on_one_postgresql_share_credentials_and_revocations") else {
        return;
    };
    let site =
        Site::with_store(CONFIG, "change_poll = \"100ms\"\nuser_cache_ttl = \"1h\"", Some(db.url.clone()));
    site.add_user("alice", "alice-pw", &[]);
    let (a, b) = (site.serve(), site.serve());

    // DRF's token, obtained through one host, works on the other.
    let resp = a
        .request("POST", "/api-token-auth/")
        .json(&json!({"username": "alice", "password": "alice-pw"}))
        .send()
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let drf_key = resp.json()["token"].as_str().unwrap().to_owned();
    let me = |host: &TestHost, auth: String| host.get("/me").header("authorization", auth).send();
    assert_eq!(me(&b, format!("Token {drf_key}")).await.json()["user"], json!("alice"));

    // knox's per-client token: made on A, used on B (now cached there), logged out on A,
    // refused by B within the bound.
    let resp = a.request("POST", "/knox/login").header("authorization", ALICE_BASIC).send().await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let knox = resp.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(me(&b, format!("Token {knox}")).await.status, 200);
    let resp =
        a.request("POST", "/knox/logout").header("authorization", format!("Token {knox}")).send().await;
    assert_eq!(resp.status, 204);
    let took =
        refused_within(&b, "a token logged out on the other host", 401, || me(&b, format!("Token {knox}")))
            .await;
    eprintln!("logout through A refused by B after {took:?}");

    // A session made on A works on B.
    let (cookies, _) = session_login(&a, "alice", "alice-pw").await;
    let resp = b.get("/me").header("cookie", &cookies).send().await;
    assert_eq!((resp.status, resp.json()["scheme"].clone()), (200, json!("session")));

    // The command line deactivates alice: both hosts refuse her within the bound, counted
    // from the command's exit.
    assert_eq!(me(&a, format!("Token {drf_key}")).await.status, 200);
    let out = site.authhost(&["user", "deactivate", "alice"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (name, host) in [("A", &a), ("B", &b)] {
        let took =
            refused_within(host, "a deactivated user", 401, || me(host, format!("Token {drf_key}"))).await;
        eprintln!("deactivation from the CLI refused by {name} after {took:?}");
    }
}

/// The test's database cut off mid-run: what needs the store answers 503 while it lasts,
/// cached credentials keep working, service comes back by itself, and nothing changed
/// before the outage is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_outage_is_503_for_the_store_cached_credentials_work_and_service_returns() {
    let test = "a_postgresql_outage_is_503_for_the_store_cached_credentials_work_and_service_returns";
    let Some(db) = TestDb::create(test) else { return };
    let site = Site::with_store(
        CONFIG,
        "change_poll = \"100ms\"\nuser_cache_ttl = \"1h\"\nbusy_timeout = \"500ms\"",
        Some(db.url.clone()),
    );
    for name in ["alice", "bob", "carol"] {
        site.add_user(name, &format!("{name}-pw"), &[]);
    }
    let (alice, bob, carol) = (site.token_for("alice"), site.token_for("bob"), site.token_for("carol"));
    let host = site.serve();
    let me = |k: &str| host.get("/me").header("authorization", format!("Token {k}")).send();
    assert_eq!(me(&alice).await.status, 200, "alice's token is cached now");
    // A change before the outage: carol deactivated, and refused.
    assert!(site.authhost(&["user", "deactivate", "carol"], "").status.success());
    refused_within(&host, "carol, deactivated", 401, || me(&carol)).await;

    db.cut_off();
    // Bob's token was never read: it needs the store, which cannot answer.
    let resp = me(&bob).await;
    assert_eq!(
        (resp.status, resp.json()),
        (503, json!({"detail": "Authentication store unavailable."})),
        "{}",
        host.logs()
    );
    assert_eq!(resp.header("retry-after"), Some("1"));
    // Alice's is cached, and nothing can be revoked while the store is down: once the
    // host has found its change log unreachable, it keeps serving what it has cached.
    host.wait_for_log(|l| l.contains("the store is unreachable"));
    assert_eq!(me(&alice).await.status, 200, "{}", host.logs());

    db.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = me(&bob).await.status;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "bob still gets {status} after the database came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing from before the outage is lost: carol stays refused, alice stays in.
    assert_eq!(me(&carol).await.status, 401);
    assert_eq!(me(&alice).await.status, 200);
}

/// A throttle of 5 a minute holds across both hosts: they count in the same window (in the
/// database), so the sixth request, to either, is 429 with DRF's wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_holds_across_hosts_sharing_a_database() {
    let Some(db) = TestDb::create("a_throttle_holds_across_hosts_sharing_a_database") else { return };
    let site = Site::with_store(CONFIG, "", Some(db.url.clone()));
    throttle_holds_across_two_hosts(&site).await;
}

/// The same with the windows in Redis (`[throttle] url`) and the two hosts on one SQLite
/// store, which shares no throttle window by itself: only Redis can make the sixth
/// request a 429. The window is Redis's: five requests in one sorted set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_in_redis_holds_across_hosts() {
    let Some(redis) = TestRedis::start("a_throttle_in_redis_holds_across_hosts") else { return };
    let site = Site::new(&format!("[throttle]\nurl = \"{}\"\n{CONFIG}", redis.url));
    throttle_holds_across_two_hosts(&site).await;
    let keys = redis.cli(&["--scan", "--pattern", "authhost:throttle:five/*"]).unwrap_or_default();
    assert_eq!(keys.lines().count(), 1, "one window: {keys:?}");
    assert_eq!(redis.cli(&["ZCARD", keys.trim()]).as_deref(), Some("5"));
}

async fn throttle_holds_across_two_hosts(site: &Site) {
    site.add_user("alice", "alice-pw", &[]);
    let key = site.token_for("alice");
    let (a, b) = (site.serve(), site.serve());
    let limited =
        |host: &TestHost| host.get("/limited").header("authorization", format!("Token {key}")).send();
    for (i, host) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        assert_eq!(limited(host).await.status, 200, "request {}", i + 1);
    }
    for host in [&b, &a] {
        let resp = limited(host).await;
        assert_eq!(resp.status, 429, "{}", resp.body);
        let wait: u64 = resp.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        let plural = if wait == 1 { "1 second".to_owned() } else { format!("{wait} seconds") };
        assert_eq!(
            resp.json(),
            json!({ "detail": format!("Request was throttled. Expected available in {plural}.") })
        );
    }
}

/// `authhost store migrate` from a SQLite store with users, tokens and sessions; a host on
/// the PostgreSQL store then accepts the same credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_migrate_moves_sqlite_to_postgresql_and_the_credentials_still_work() {
    let Some(db) = TestDb::create("store_migrate_moves_sqlite_to_postgresql_and_the_credentials_still_work")
    else {
        return;
    };
    let site = Site::new(CONFIG);
    site.add_user("alice", "alice-pw", &["--email", "alice@example.com"]);
    site.add_user("bob", "bob-pw", &["--staff"]);
    let drf_key = site.token_for("alice");
    let (knox, cookies) = {
        let host = site.serve();
        let resp = host.request("POST", "/knox/login").header("authorization", ALICE_BASIC).send().await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        let knox = resp.json()["token"].as_str().unwrap().to_owned();
        let (cookies, _) = session_login(&host, "bob", "bob-pw").await;
        (knox, cookies)
    };

    let migrate = |extra: &[&str]| {
        let from = format!("sqlite://{}", site.db_path().display());
        let mut args = vec!["store", "migrate", "--from", from.as_str(), "--to", db.url.as_str()];
        args.extend_from_slice(extra);
        let out = std::process::Command::new(crate::support::build_dir().join("authhost"))
            .args(&args)
            .output()
            .expect("run authhost store migrate");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = migrate(&[]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("copied 2 users, 2 tokens, 1 sessions"), "{stdout}");
    assert!(!stdout.contains("password"), "{stdout}");
    // Into a store that holds users already: refused unless told.
    let (ok, _, stderr) = migrate(&[]);
    assert!(!ok && stderr.contains("--replace"), "{stderr}");
    let (ok, stdout, stderr) = migrate(&["--replace"]);
    assert!(ok && stdout.contains("copied 2 users"), "{stdout}{stderr}");

    // The same site (its token secret too) now on PostgreSQL.
    let text = std::fs::read_to_string(site.config_path()).unwrap();
    let sqlite = format!("sqlite://{}", site.db_path().display());
    site.write_raw_config(&text.replace(&sqlite, &db.url));
    std::fs::remove_file(site.db_path()).unwrap();
    let host = site.serve();
    let me = |auth: &str| host.get("/me").header("authorization", auth).send();
    let resp = host.request("POST", "/knox/login").header("authorization", ALICE_BASIC).send().await;
    assert_eq!(resp.status, 200, "the password hash came along: {}", resp.body);
    assert_eq!(me(&format!("Token {drf_key}")).await.json()["user"], json!("alice"));
    assert_eq!(me(&format!("Token {knox}")).await.json()["user"], json!("alice"));
    let resp = host.get("/me").header("cookie", &cookies).send().await;
    assert_eq!((resp.status, resp.json()["user"].clone()), (200, json!("bob")), "the session came along");
    // obtain_token hands out the same key (its nonce came along, and the secret is shared).
    let resp = host
        .request("POST", "/api-token-auth/")
        .json(&json!({"username": "alice", "password": "alice-pw"}))
        .send()
        .await;
    assert_eq!(resp.json()["token"], json!(drf_key));
    // New rows continue after the copied ids.
    let out = site.authhost(&["user", "add", "carol", "--password-stdin"], "carol-pw\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = site.authhost(&["user", "list"], "");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3\tcarol"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// With the periodic read a minute apart, a change still reaches the other host at once:
/// PostgreSQL's NOTIFY wakes its change-log reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_other_hosts_by_notification_not_by_polling() {
    let Some(db) = TestDb::create("changes_reach_other_hosts_by_notification_not_by_polling") else { return };
    let site =
        Site::with_store(CONFIG, "change_poll = \"60s\"\nuser_cache_ttl = \"1h\"", Some(db.url.clone()));
    site.add_user("alice", "alice-pw", &[]);
    let key = site.token_for("alice");
    let (a, b) = (site.serve(), site.serve());
    let me = |host: &TestHost| host.get("/me").header("authorization", format!("Token {key}")).send();
    assert_eq!(me(&a).await.status, 200);
    assert_eq!(me(&b).await.status, 200, "cached on both now");
    let resp = a.request("POST", "/knox/login").header("authorization", ALICE_BASIC).send().await;
    let knox = resp.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(b.get("/me").header("authorization", format!("Token {knox}")).send().await.status, 200);
    let resp =
        a.request("POST", "/knox/logout").header("authorization", format!("Token {knox}")).send().await;
    assert_eq!(resp.status, 204);
    let took = refused_within(&b, "a logout, with polls a minute apart", 401, || {
        b.get("/me").header("authorization", format!("Token {knox}")).send()
    })
    .await;
    eprintln!("logout through A refused by B after {took:?} (notified)");
    assert!(site.authhost(&["user", "deactivate", "alice"], "").status.success());
    for host in [&a, &b] {
        let took = refused_within(host, "a deactivation, with polls a minute apart", 401, || me(host)).await;
        eprintln!("deactivation refused after {took:?} (notified)");
    }
}

/// A slow database (a table another connection holds locked) is a 503 within
/// busy_timeout, as a locked SQLite store is; a password in the url is refused at load,
/// and never shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_postgresql_is_503_within_busy_timeout_and_a_password_in_the_url_is_refused() {
    let test = "a_slow_postgresql_is_503_within_busy_timeout_and_a_password_in_the_url_is_refused";
    let Some(db) = TestDb::create(test) else { return };
    let site = Site::with_store(CONFIG, "user_cache_ttl = 0\nbusy_timeout = \"300ms\"", Some(db.url.clone()));
    site.add_user("alice", "alice-pw", &[]);
    let key = site.token_for("alice");
    let host = site.serve();
    let me = || host.get("/me").header("authorization", format!("Token {key}")).send();
    assert_eq!(me().await.status, 200);

    // Another connection takes the tokens table and keeps it.
    let (locker, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    locker.batch_execute("BEGIN; LOCK TABLE tokens IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let started = Instant::now();
    let resp = me().await;
    assert_eq!((resp.status, resp.json()), (503, json!({"detail": "Authentication store unavailable."})));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(me().await.status, 200, "back by itself");

    let with_password = db.url.replace("postgres@", "postgres:hunter2@");
    site.write_raw_config(
        &std::fs::read_to_string(site.config_path()).unwrap().replace(&db.url, &with_password),
    );
    let out = site.authhost(&["check"], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("AUTHHOST_STORE_PASSWORD") && err.contains("password_file"), "{err}");
    assert!(!err.contains("hunter2"), "the password is never shown: {err}");
}

/// `[throttle] failures` counts across hosts too: failed logins spread over two hosts fill
/// the same window, and the next login from that address is refused before any password
/// work, on either host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_count_across_hosts_sharing_a_database() {
    let Some(db) = TestDb::create("failed_logins_count_across_hosts_sharing_a_database") else { return };
    let config = format!("[throttle]\nfailures = \"2/min\"\n{CONFIG}");
    failures_count_across_two_hosts(&Site::with_store(&config, "", Some(db.url.clone()))).await;
}

/// The same in Redis, the hosts on one SQLite store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_count_in_redis_across_hosts() {
    let Some(redis) = TestRedis::start("failed_logins_count_in_redis_across_hosts") else { return };
    let config = format!("[throttle]\nfailures = \"2/min\"\nurl = \"{}\"\n{CONFIG}", redis.url);
    failures_count_across_two_hosts(&Site::new(&config)).await;
}

async fn failures_count_across_two_hosts(site: &Site) {
    site.add_user("alice", "alice-pw", &[]);
    let (a, b) = (site.serve(), site.serve());
    let login = |host: &TestHost, auth: &'static str| {
        host.request("POST", "/knox/login").header("authorization", auth).send()
    };
    const WRONG: &str = "Basic YWxpY2U6d3Jvbmc="; // alice:wrong
    assert_eq!(login(&a, WRONG).await.status, 401);
    assert_eq!(login(&b, WRONG).await.status, 401);
    for host in [&a, &b] {
        let resp = login(host, ALICE_BASIC).await;
        assert_eq!(resp.status, 429, "{}", resp.body);
        assert!(resp.header("retry-after").is_some());
    }
}

/// Redis unreachable mid-run: a throttled route answers 503 (never a pass, never a 500)
/// while it lasts, routes without a throttle keep answering, and the throttled route comes
/// back by itself when Redis does. A bad `[throttle] url` fails at load naming the file
/// and the key; a password in it is refused and never shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_503_on_throttled_routes_and_service_returns() {
    let Some(mut redis) = TestRedis::start("a_redis_outage_is_503_on_throttled_routes_and_service_returns")
    else {
        return;
    };
    let config = format!("[throttle]\nurl = \"{}\"\n{CONFIG}", redis.url);
    let site = Site::with_store(&config, "busy_timeout = \"300ms\"", None);
    site.add_user("alice", "alice-pw", &[]);
    let key = site.token_for("alice");
    let host = site.serve();
    let get = |path: &'static str| host.get(path).header("authorization", format!("Token {key}")).send();
    assert_eq!(get("/limited").await.status, 200);

    redis.stop();
    let resp = get("/limited").await;
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert_eq!(resp.json(), json!({ "detail": "Authentication store unavailable." }));
    assert!(resp.header("retry-after").is_some());
    assert_eq!(get("/me").await.status, 200, "a route without a throttle needs no Redis");
    host.wait_for_log(|line| line.contains("throttle store does not answer"));

    redis.start_again();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = get("/limited").await.status;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "still 503 after Redis came back:\n{}", host.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(host);

    // At load: nothing answering, a password in the url, not a Redis url.
    let down = format!("redis://{}/0", crate::support::peers::free_port());
    let cases = [
        (down.as_str(), "Redis does not answer"),
        ("redis://:hunter2@127.0.0.1:6379/0", "AUTHHOST_THROTTLE_PASSWORD"),
        ("http://127.0.0.1:6379", "is not a Redis URL"),
    ];
    for (url, says) in cases {
        site.write_config(&format!("[throttle]\nurl = \"{url}\"\n{CONFIG}"));
        let out = site.authhost(&["check"], "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}: accepted");
        assert!(
            err.contains("authhost.toml") && err.contains("throttle.url") && err.contains(says),
            "{url}: {err}"
        );
        assert!(!err.contains("hunter2"), "the password is never shown: {err}");
    }
}

/// DRF refuses every request under a rate of 0 (`len(history) >= 0`), with the whole
/// period as its wait (an empty history): in memory, in PostgreSQL and in Redis alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_of_zero_refuses_every_request_wherever_the_windows_live() {
    let test = "a_rate_of_zero_refuses_every_request_wherever_the_windows_live";
    let (Some(db), Some(redis)) = (TestDb::create(test), TestRedis::start(test)) else { return };
    let config = CONFIG.replace("five = \"5/min\"", "five = \"0/min\"");
    let sites = [
        ("memory", Site::new(&config)),
        ("postgresql", Site::with_store(&config, "", Some(db.url.clone()))),
        ("redis", Site::new(&format!("[throttle]\nurl = \"{}\"\n{config}", redis.url))),
    ];
    for (windows, site) in &sites {
        site.add_user("alice", "alice-pw", &[]);
        let key = site.token_for("alice");
        let host = site.serve();
        let resp = host.get("/limited").header("authorization", format!("Token {key}")).send().await;
        assert_eq!(resp.status, 429, "{windows}: {}", resp.body);
        assert_eq!(resp.header("retry-after"), Some("60"), "{windows}");
        assert_eq!(
            resp.json(),
            json!({ "detail": "Request was throttled. Expected available in 60 seconds." }),
            "{windows}"
        );
    }
}

/// A burst at two hosts at once, 25 concurrent requests each against a limit of 20 a
/// minute: exactly 20 are allowed, however the hosts group the checks that arrive while a
/// round trip is in flight; in PostgreSQL and in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_burst_gets_exactly_the_rate_across_hosts() {
    let test = "a_concurrent_burst_gets_exactly_the_rate_across_hosts";
    let (Some(db), Some(redis)) = (TestDb::create(test), TestRedis::start(test)) else { return };
    let config = CONFIG.replace("five = \"5/min\"", "five = \"20/min\"");
    let sites = [
        ("postgresql", Site::with_store(&config, "", Some(db.url.clone()))),
        ("redis", Site::new(&format!("[throttle]\nurl = \"{}\"\n{config}", redis.url))),
    ];
    for (windows, site) in &sites {
        site.add_user("alice", "alice-pw", &[]);
        let key = site.token_for("alice");
        let (a, b) = (site.serve(), site.serve());
        let auth = format!("Token {key}");
        let burst = (0..50).map(|i| {
            let host = if i % 2 == 0 { &a } else { &b };
            host.get("/limited").header("authorization", auth.clone()).send()
        });
        let statuses: Vec<u16> =
            futures_util::future::join_all(burst).await.iter().map(|r| r.status).collect();
        let allowed = statuses.iter().filter(|s| **s == 200).count();
        let refused = statuses.iter().filter(|s| **s == 429).count();
        assert_eq!((allowed, refused), (20, 30), "{windows}: {statuses:?}");
    }
}
