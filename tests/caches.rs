//! The host's caches over real sockets: bounded with per-entry eviction (one user's
//! endless logins do not flush another user's entries), and a host that fell behind a
//! pruned change log drops everything instead of serving revoked credentials.
//! See: issue 11.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{session_login, Site, TestHost};

const CONFIG: &str = r#"
[[scheme]]
name = "session"
plugin = "session"

[[scheme]]
name = "token"
plugin = "token"

[[route]]
path = "/login"
handler = "login"
schemes = []
permission = "allow_any"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["session", "token"]
permission = "is_authenticated"
"#;

async fn me(host: &TestHost, header: &str, value: &str) -> (u16, serde_json::Value) {
    let resp = host.get("/me").header(header, value).send().await;
    let body = resp.json();
    (resp.status, body)
}

/// Deletes every session row behind the host's back (no change is logged), so that only
/// the host's memory can still know them.
fn delete_sessions_in_store(site: &Site) {
    let db = rusqlite::Connection::open(site.db_path()).unwrap();
    db.execute("DELETE FROM sessions", []).unwrap();
}

#[tokio::test]
async fn one_users_endless_logins_do_not_evict_another_users_entry() {
    let site = Site::with_cache(CONFIG, "cache_capacity = 32");
    site.add_user("alice", "alice-pw", &[]);
    site.add_user("mallory", "mallory-pw", &[]);
    let host = site.serve();
    let (alice, _) = session_login(&host, "alice", "alice-pw").await;
    // Alice's session is in use: read from the store once, then served from memory.
    for _ in 0..5 {
        assert_eq!(me(&host, "cookie", &alice).await.0, 200);
    }
    // Mallory logs in again and again, each new session used once: four times the bound.
    for _ in 0..128 {
        let (mallory, _) = session_login(&host, "mallory", "mallory-pw").await;
        assert_eq!(me(&host, "cookie", &mallory).await.0, 200);
    }
    // Only the cache can answer for alice now.
    delete_sessions_in_store(&site);
    let (status, body) = me(&host, "cookie", &alice).await;
    assert_eq!((status, &body["user"]), (200, &json!("alice")), "alice's entry was evicted: {body}");
    // The control: a session the cache does not hold is gone with its row.
    let (mallory, _) = session_login(&host, "mallory", "mallory-pw").await;
    delete_sessions_in_store(&site);
    assert_eq!(me(&host, "cookie", &mallory).await.0, 403);
}

#[tokio::test]
async fn a_host_behind_a_pruned_change_log_drops_its_caches() {
    // Changes are kept one second; the host reads them every 50 ms, unless it is paused.
    let site = Site::with_cache(CONFIG, "change_poll = \"50ms\"\nchange_log_keep = 1");
    site.add_user("alice", "alice-pw", &[]);
    site.add_user("bob", "bob-pw", &[]);
    let key = format!("Token {}", site.token_for("alice"));
    let host = site.serve();
    assert_eq!(me(&host, "authorization", &key).await.0, 200, "alice's token, now cached");
    host.signal("STOP");
    let out = site.authhost(&["token", "revoke", "alice"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let revoked = last_change(&site);
    // Other changes go on until the revocation is pruned from the log.
    let deadline = Instant::now() + Duration::from_secs(20);
    while pruned_through(&site) < revoked {
        assert!(Instant::now() < deadline, "the change log was never pruned");
        let out = site.authhost(&["user", "deactivate", "bob"], "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    host.signal("CONT");
    host.wait_for_log(|l| l.contains("dropping every cache"));
    let (status, body) = me(&host, "authorization", &key).await;
    assert_eq!((status, body), (403, json!({"detail": "Invalid token."})), "session first: no challenge");
}

fn last_change(site: &Site) -> i64 {
    let db = rusqlite::Connection::open(site.db_path()).unwrap();
    db.query_row("SELECT max(seq) FROM user_changes", [], |r| r.get(0)).unwrap()
}

fn pruned_through(site: &Site) -> i64 {
    let db = rusqlite::Connection::open(site.db_path()).unwrap();
    db.query_row("SELECT pruned_through FROM change_log", [], |r| r.get(0)).unwrap()
}

const BASIC: &str = r#"
[[scheme]]
name = "basic"
plugin = "basic"
cache_ttl = "30s"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["basic"]
permission = "is_authenticated"
"#;

/// Replaces alice's password hash behind the host's back (no change is logged): only a
/// cached verification can still let the old password in.
fn change_password_in_store(site: &Site) {
    let out = site.authhost(&["user", "add", "hash-donor", "--password-stdin"], "other-pw\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let db = rusqlite::Connection::open(site.db_path()).unwrap();
    db.execute(
        "UPDATE users SET password = (SELECT password FROM users WHERE username = 'hash-donor')
         WHERE username = 'alice'",
        [],
    )
    .unwrap();
}

#[tokio::test]
async fn user_cache_ttl_zero_turns_off_the_verified_password_cache_too() {
    const ALICE: &str = "Basic YWxpY2U6YWxpY2UtcHc="; // alice:alice-pw
    for (cache, old_password_still_passes) in [("", true), ("user_cache_ttl = 0", false)] {
        let site = Site::with_cache(BASIC, cache);
        site.add_user("alice", "alice-pw", &[]);
        let host = site.serve();
        assert_eq!(me(&host, "authorization", ALICE).await.0, 200);
        change_password_in_store(&site);
        let status = me(&host, "authorization", ALICE).await.0;
        assert_eq!(status == 200, old_password_still_passes, "[store] {cache:?}: {status}");
    }
}
