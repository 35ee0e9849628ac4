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
    assert!(!stderr.contains("100%"), "no progress bar drawn into a pipe: {stderr}");

    let out = site.authhost(&["bench", "--route", "/nowhere"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no route"));
}

/// Issue 15: bench says what the chain answered as the response would (details keep their
/// case), and a faulting chain stops it at once with the cause: one log line, not one per
/// iteration.
#[test]
fn bench_shows_details_as_sent_and_stops_at_a_fault_with_its_cause() {
    let config = r#"
[[scheme]]
name = "token"
plugin = "token"

[[scheme]]
name = "boom"
plugin = "probe"
mode = "panic"
message = "the probe blew up"

[[route]]
path = "/token"
handler = "whoami"
schemes = ["token"]
permission = "is_authenticated"

[[route]]
path = "/boom"
handler = "whoami"
schemes = ["boom"]
permission = "is_authenticated"
"#;
    let site = Site::new(config);
    let out = site.authhost(
        &["bench", "--route", "/token", "-H", "Authorization: Token nope", "--requests", "500"],
        "",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("verdict: failed: \"Invalid token.\""), "{stdout}");

    let out = site.authhost(&["bench", "--route", "/boom", "--requests", "500"], "");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "a chain that faults cannot be timed");
    assert!(stderr.contains("the probe blew up"), "the cause: {stdout}{stderr}");
    let fault_lines = stderr.lines().filter(|l| l.contains(" ERROR ") && l.contains("faulted")).count();
    assert_eq!(fault_lines, 1, "one log line, not one per iteration:\n{stderr}");
}

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn users_carry_an_email_and_can_be_set_listed_activated_and_deleted() {
    let site = Site::new(CONFIG);
    site.add_user("alice", "pw", &["--email", "alice@example.com"]);
    site.add_user("bob", "pw", &["--inactive"]);
    assert_eq!(
        ok(&site.authhost(&["user", "list"], "")),
        "1\talice\talice@example.com\tactive\t-\n2\tbob\t-\tinactive\t-\n"
    );
    ok(&site.authhost(&["user", "set", "bob", "--email", " bob@example.com ", "--staff"], ""));
    ok(&site.authhost(&["user", "activate", "bob"], ""));
    ok(&site.authhost(&["user", "set", "alice", "--email", ""], ""));
    assert_eq!(
        ok(&site.authhost(&["user", "list"], "")),
        "1\talice\t-\tactive\t-\n2\tbob\tbob@example.com\tactive\tstaff\n"
    );
    ok(&site.authhost(&["user", "delete", "alice"], ""));
    assert_eq!(ok(&site.authhost(&["user", "list"], "")), "2\tbob\tbob@example.com\tactive\tstaff\n");
    // Mistakes are named.
    let out = site.authhost(&["user", "set", "bob", "--email", "bob.example.com"], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an e-mail address"), "{out:?}");
    let out = site.authhost(&["user", "delete", "alice"], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user \"alice\""), "{out:?}");
    let out = site.authhost(&["user", "set", "bob"], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to set"), "{out:?}");
}

#[tokio::test]
async fn a_deleted_or_demoted_user_is_refused_by_the_running_host_despite_its_cache() {
    let config = format!(
        "{CONFIG}\n[[route]]\npath = \"/staff\"\nhandler = \"whoami\"\nschemes = [\"x-username\"]\npermission = \"is_admin\"\n"
    );
    let site = Site::with_cache(&config, "user_cache_ttl = \"1h\"\nchange_poll = \"50ms\"");
    site.add_user("alice", "pw", &["--staff"]);
    site.add_user("bob", "pw", &[]);
    let host = site.serve();
    for _ in 0..2 {
        assert_eq!(host.get("/staff").header("X-USERNAME", "alice").send().await.status, 200);
        assert_eq!(host.get("/me").header("X-USERNAME", "bob").send().await.status, 200);
    }
    ok(&site.authhost(&["user", "set", "alice", "--no-staff"], ""));
    ok(&site.authhost(&["user", "delete", "bob"], ""));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let staff = host.get("/staff").header("X-USERNAME", "alice").send().await.status;
        let bob = host.get("/me").header("X-USERNAME", "bob").send().await;
        if staff == 403 && bob.status == 403 {
            assert_eq!(bob.json(), json!({"detail": "No such user"}));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still served from the cache: {staff} {}", bob.status);
    }
}
