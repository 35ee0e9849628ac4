//! A scheme that panics or errors is a fault: 500, one log line naming the scheme, the
//! plugin file and the cause, the rest of the chain untouched, and the host keeps serving.

use serde_json::json;

use crate::support::{library, Site};

const FAULTY: &str = r#"
[[scheme]]
name = "panicky"
plugin = "probe"
mode = "panic"
message = "boom: the probe panicked"
header = "x-panic"

[[scheme]]
name = "broken"
plugin = "probe"
mode = "error"
message = "database on fire"
header = "x-error"

[[scheme]]
name = "alice"
plugin = "probe"
mode = "user"
user = "alice"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["panicky", "broken", "alice"]
permission = "is_authenticated"

[[route]]
path = "/other"
handler = "whoami"
schemes = ["alice"]
permission = "is_authenticated"
"#;

fn site() -> Site {
    let site = Site::new(FAULTY);
    site.add_user("alice", "pw", &[]);
    site
}

#[tokio::test]
async fn panicking_scheme_gives_500_logs_it_and_the_host_keeps_serving() {
    let host = site().serve();
    // The chain works while the panicky scheme is not attempted.
    let resp = host.get("/me").send().await;
    assert_eq!(resp.status, 200, "{}", resp.body);

    let resp = host.get("/me").header("X-Panic", "1").send().await;
    assert_eq!(resp.status, 500);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    // The scheme after it, which would have authenticated alice, was not consulted.
    assert_eq!(resp.json(), json!({"detail": "Internal authentication error."}));

    let line = host.wait_for_log(|l| l.contains("faulted"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains(r#"scheme="panicky""#) || line.contains("scheme=panicky"), "{line}");
    assert!(line.contains(&format!("plugins/{}", library("probe"))), "the configured file: {line}");
    assert!(line.contains("panicked: boom: the probe panicked"), "{line}");
    assert!(line.contains("probe/src/lib.rs"), "the panic's location: {line}");

    // Still serving: the same route again, and another route.
    let again = host.get("/me").header("X-Panic", "1").send().await;
    assert_eq!(again.status, 500);
    let other = host.get("/other").send().await;
    assert_eq!(other.status, 200);
    assert_eq!(other.json()["user"], json!("alice"));
    let after = host.get("/me").send().await;
    assert_eq!(after.status, 200);
    let logs = host.settled_logs();
    assert_eq!(logs.matches("faulted").count(), 2, "one line per fault:\n{logs}");
}

#[tokio::test]
async fn erroring_scheme_gives_500_with_its_message_wrapped_in_the_log() {
    let host = site().serve();
    let resp = host.get("/me").header("X-Error", "1").send().await;
    assert_eq!(resp.status, 500);
    assert_eq!(resp.json(), json!({"detail": "Internal authentication error."}));
    let line = host.wait_for_log(|l| l.contains("faulted"));
    assert!(line.contains(r#"scheme "broken" faulted: database on fire"#), "{line}");
    assert!(line.contains(&format!("plugins/{}", library("probe"))), "the configured file: {line}");
    // The client never sees the cause.
    assert!(!resp.body.contains("fire"));

    let other = host.get("/other").send().await;
    assert_eq!(other.status, 200);
}

#[tokio::test]
async fn a_fault_is_never_read_as_not_attempted_even_on_allow_any() {
    let site = Site::new(&FAULTY.replace("permission = \"is_authenticated\"", "permission = \"allow_any\""));
    let host = site.serve();
    let resp = host.get("/other").send().await;
    assert_eq!(resp.status, 403, "alice is unknown in this store: {}", resp.body);
    let resp = host.get("/me").header("X-Panic", "1").send().await;
    assert_eq!(resp.status, 500);
}

const BASIC: &str = r#"
[[scheme]]
name = "basic"
plugin = "basic"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["basic"]
permission = "is_authenticated"

[[route]]
path = "/api-token-auth/"
handler = "obtain_token"
schemes = []
permission = "allow_any"
"#;

#[tokio::test]
async fn a_broken_stored_password_hash_is_a_fault_not_a_wrong_password() {
    let site = Site::new(BASIC);
    site.add_user("alice", "alice-pw", &[]);
    site.add_user("bob", "bob-pw", &[]);
    let db = rusqlite::Connection::open(site.db_path()).unwrap();
    db.execute("UPDATE users SET password = 'md5$not-a-phc-string' WHERE username = 'alice'", []).unwrap();
    let host = site.serve();
    let resp = host.get("/me").header("authorization", "Basic YWxpY2U6YWxpY2UtcHc=").send().await;
    assert_eq!(resp.status, 500, "{}", resp.body);
    assert_eq!(resp.json(), json!({"detail": "Internal authentication error."}));
    let line = host.wait_for_log(|l| l.contains("scheme \"basic\" faulted"));
    assert!(line.contains("a stored password hash does not parse"), "{line}");
    assert!(!line.contains("alice-pw"), "no secret in the log: {line}");
    let resp = host.request("POST", "/api-token-auth/").form("username=alice&password=alice-pw").send().await;
    assert_eq!(resp.status, 500, "{}", resp.body);
    // Other users are served as before.
    let resp = host.get("/me").header("authorization", "Basic Ym9iOmJvYi1wdw==").send().await;
    assert_eq!(resp.status, 200, "{}", resp.body);
}
