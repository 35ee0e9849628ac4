//! The command line: users are added, changed and deactivated; passwords never come from
//! argv and are stored as argon2id hashes only.

use serde_json::json;

use crate::support::Site;

const CONFIG: &str = r#"
[[scheme]]
name = "x-username"
plugin = "x-username"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["x-username"]
permission = "is_authenticated"
"#;

#[test]
fn passwords_are_stored_as_argon2id_hashes_only() {
    let site = Site::new(CONFIG);
    site.add_user("alice", "correct horse battery", &["--staff"]);
    let db = rusqlite::Connection::open(site.db_path()).unwrap();
    let (hash, staff): (String, bool) = db
        .query_row("SELECT password, is_staff FROM users WHERE username = 'alice'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(staff);
    drop(db);
    let bytes = std::fs::read(site.db_path()).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("correct horse"), "no plaintext password in the store file");
}

#[test]
fn a_password_is_never_taken_from_argv() {
    let site = Site::new(CONFIG);
    let out = site.authhost(&["user", "add", "alice", "hunter2"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unexpected argument 'hunter2'"));
    // Without a terminal and without --password-stdin there is no way to ask: refused.
    let out = site.authhost(&["user", "add", "alice"], "hunter2\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password-stdin"));
}

#[test]
fn adding_a_user_twice_is_refused() {
    let site = Site::new(CONFIG);
    site.add_user("alice", "pw", &[]);
    let out = site.authhost(&["user", "add", "alice", "--password-stdin"], "pw2\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("user \"alice\" already exists"));
}

#[test]
fn passwd_and_deactivate_name_missing_users() {
    let site = Site::new(CONFIG);
    for args in [&["user", "passwd", "bob", "--password-stdin"][..], &["user", "deactivate", "bob"]] {
        let out = site.authhost(args, "pw\n");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("no user \"bob\""), "{args:?}");
    }
}

#[test]
fn passwd_replaces_the_hash() {
    let site = Site::new(CONFIG);
    site.add_user("alice", "old", &[]);
    let read = || -> String {
        let db = rusqlite::Connection::open(site.db_path()).unwrap();
        db.query_row("SELECT password FROM users WHERE username = 'alice'", [], |r| r.get(0)).unwrap()
    };
    let before = read();
    let out = site.authhost(&["user", "passwd", "alice", "--password-stdin"], "new\n");
    assert!(out.status.success());
    let after = read();
    assert_ne!(before, after);
    assert!(after.starts_with("$argon2id$"));
}

#[tokio::test]
async fn a_deactivated_user_is_refused_by_the_running_host_despite_its_cache() {
    let site = Site::with_cache(CONFIG, "user_cache_ttl = \"1h\"\nchange_poll = \"50ms\"");
    site.add_user("alice", "pw", &[]);
    let host = site.serve();
    let resp = host.get("/me").header("X-USERNAME", "alice").send().await;
    assert_eq!(resp.status, 200);
    // Served from the cache now.
    let resp = host.get("/me").header("X-USERNAME", "alice").send().await;
    assert_eq!(resp.status, 200);
    let out = site.authhost(&["user", "deactivate", "alice"], "");
    assert!(out.status.success());
    // The host reads the store's change log and drops alice from its cache.
    host.wait_for_log(|l| l.contains("dropped cached entries"));
    let resp = host.get("/me").header("X-USERNAME", "alice").send().await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json(), json!({"detail": "User inactive or deleted."}));
}

#[test]
fn bench_times_each_scheme_of_a_users_own_chain() {
    let config = r#"
[[scheme]]
name = "skip"
plugin = "probe"

[[scheme]]
name = "x-username"
plugin = "x-username"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["skip", "x-username"]
permission = "is_authenticated"
"#;
    let site = Site::new(config);
    site.add_user("alice", "pw", &[]);
    let out =
        site.authhost(&["bench", "--route", "/me", "-H", "X-USERNAME: alice", "--requests", "2000"], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("GET /me: skip -> x-username"), "{stdout}");
    assert!(stdout.contains("verdict: authenticated as \"alice\" by x-username; 2000 requests"), "{stdout}");
    let row = |name: &str| stdout.lines().find(|l| l.trim_start().starts_with(name)).map(str::to_owned);
    assert!(row("skip").is_some_and(|l| l.contains("not attempted")), "{stdout}");
    assert!(row("x-username").is_some_and(|l| l.contains("authenticated")), "{stdout}");
    assert!(row("chain").is_some_and(|l| l.contains("total") && l.contains("chains/s")), "{stdout}");
    assert!(stderr.contains("100%"), "a progress bar: {stderr}");

    let out = site.authhost(&["bench", "--route", "/nowhere"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no route"));
}
