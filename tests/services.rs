//! Host services a scheme calls across the ABI: each look-up the host does not have in
//! memory is fetched off the async workers (store pool, argon2 pool) and the scheme is
//! called again with the answer.

use serde_json::json;

use crate::support::Site;

const CONFIG: &str = r#"
[[scheme]]
name = "password"
plugin = "probe"
mode = "password"

[[scheme]]
name = "create"
plugin = "probe"
mode = "create"

[[route]]
path = "/password"
handler = "whoami"
schemes = ["password"]
permission = "is_authenticated"

[[route]]
path = "/create"
handler = "whoami"
schemes = ["create"]
permission = "is_authenticated"
"#;

fn site() -> Site {
    let site = Site::new(CONFIG);
    site.add_user("alice", "right password", &[]);
    site.add_user("gone", "right password", &["--inactive"]);
    site
}

#[tokio::test]
async fn verify_password_runs_argon2_off_the_reactor_and_answers_the_scheme() {
    let host = site().serve();
    let ok = host
        .get("/password")
        .header("X-Probe-User", "alice")
        .header("X-Probe-Password", "right password")
        .send()
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        ok.json(),
        json!({"user": "alice", "auth": "password", "scheme": "password", "is_staff": false})
    );
    for (user, password) in [("alice", "wrong"), ("nobody", "right password"), ("gone", "right password")] {
        let resp = host
            .get("/password")
            .header("X-Probe-User", user)
            .header("X-Probe-Password", password)
            .send()
            .await;
        assert_eq!(resp.status, 403, "{user}");
        assert_eq!(resp.json(), json!({"detail": "Invalid username/password."}), "{user}");
    }
    assert!(!host.settled_logs().contains("right password"), "no password in the logs");
}

#[tokio::test]
async fn create_user_adds_an_active_user_without_a_usable_password() {
    let site = site();
    let host = site.serve();
    let resp = host.get("/create").header("X-Probe-User", "carol").send().await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["user"], json!("carol"));
    // Creating again finds the same user.
    let again = host.get("/create").header("X-Probe-User", "carol").send().await;
    assert_eq!(again.status, 200);
    let db = rusqlite::Connection::open(site.db_path()).unwrap();
    let (count, active, password): (i64, bool, Option<String>) = db
        .query_row("SELECT count(*), is_active, password FROM users WHERE username = 'carol'", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((count, active, password), (1, true, None));
}

const REMOTE: &str = r#"
[[scheme]]
name = "proxy"
plugin = "remote-user"
trusted_proxies = ["127.0.0.0/8"]

[[scheme]]
name = "elsewhere"
plugin = "remote-user"
trusted_proxies = ["10.0.0.0/8"]

[[route]]
path = "/proxy"
handler = "whoami"
schemes = ["proxy"]
permission = "is_authenticated"

[[route]]
path = "/elsewhere"
handler = "whoami"
schemes = ["elsewhere"]
permission = "allow_any"
"#;

#[tokio::test]
async fn remote_user_creates_unknown_users_from_a_trusted_proxy() {
    let site = Site::new(REMOTE);
    let host = site.serve();
    let resp = host.get("/proxy").header("X-Remote-User", "dave").send().await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["user"], json!("dave"));
    let db = rusqlite::Connection::open(site.db_path()).unwrap();
    let password: Option<String> =
        db.query_row("SELECT password FROM users WHERE username = 'dave'", [], |r| r.get(0)).unwrap();
    assert_eq!(password, None, "created with no usable password");
}

#[tokio::test]
async fn remote_user_from_an_untrusted_peer_is_ignored_and_warned_about_once() {
    let site = Site::new(REMOTE);
    site.add_user("alice", "pw", &[]);
    let host = site.serve();
    for _ in 0..3 {
        let resp = host.get("/elsewhere").header("X-Remote-User", "alice").send().await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.json()["user"], json!("AnonymousUser"), "the header is not honoured");
    }
    let line = host.wait_for_log(|l| l.contains("not in trusted_proxies"));
    assert!(line.contains("WARN") && line.contains("elsewhere"), "{line}");
    assert!(line.contains("127.0.0.1"), "{line}");
    let logs = host.settled_logs();
    assert_eq!(logs.matches("not in trusted_proxies").count(), 1, "once per peer:\n{logs}");
}
