//! DRF's throttles over sockets: anon by address, user by user (or address), scoped;
//! 429 with `Retry-After` and DRF's exact detail, singular and plural. And beyond DRF,
//! failed logins counted per address and per name, refused before any password work.
//! See: issue 12 (item 9) and SPEC section 9.

use serde_json::json;

use crate::support::{Req, Resp, Site, TestHost};

const CONFIG: &str = r#"
[throttle.rates]
anon = "3/min"
user = "2/hour"
burst = "1/s"

[defaults]
throttle = ["anon"]

[[scheme]]
name = "x-username"
plugin = "x-username"

[[route]]
path = "/anon"
handler = "whoami"
schemes = ["x-username"]
permission = "allow_any"

[[route]]
path = "/user"
handler = "whoami"
schemes = ["x-username"]
permission = "allow_any"
throttle = ["user"]

[[route]]
path = "/burst"
handler = "whoami"
schemes = ["x-username"]
permission = "allow_any"
throttle = ["burst"]

[[route]]
path = "/free"
handler = "whoami"
schemes = ["x-username"]
permission = "allow_any"
throttle = []

[[route]]
path = "/metrics"
handler = "metrics"
"#;

fn host() -> (Site, TestHost) {
    let site = Site::new(CONFIG);
    site.add_user("alice", "alice-pw", &[]);
    site.add_user("bob", "bob-pw", &[]);
    let host = site.serve();
    (site, host)
}

fn as_user(req: Req, user: Option<&str>) -> Req {
    match user {
        Some(user) => req.header("x-username", user),
        None => req,
    }
}

async fn get(host: &TestHost, path: &str, user: Option<&str>) -> Resp {
    as_user(host.get(path), user).send().await
}

/// Asserts a 429 with DRF's plural detail and a matching `Retry-After`, the wait within
/// `slack` seconds below `period` (the window's oldest request is a moment old; a slow
/// machine makes it older), and returns the wait.
fn assert_throttled(resp: &Resp, period: u64, slack: u64) -> u64 {
    assert_eq!(resp.status, 429, "{}", resp.body);
    let wait: u64 = resp.header("retry-after").expect("Retry-After").parse().expect("whole seconds");
    assert!(wait <= period && wait + slack >= period, "wait {wait} for a period of {period}");
    assert_eq!(
        resp.json(),
        json!({ "detail": format!("Request was throttled. Expected available in {wait} seconds.") })
    );
    wait
}

#[tokio::test]
async fn anon_counts_anonymous_requests_per_address_and_answers_drfs_429() {
    let (_site, host) = host();
    for _ in 0..3 {
        assert_eq!(get(&host, "/anon", None).await.status, 200);
    }
    let refused = get(&host, "/anon", None).await;
    assert_throttled(&refused, 60, 5);
    // Authenticated requests are not anon's to count; another address has its own window.
    assert_eq!(get(&host, "/anon", Some("alice")).await.status, 200);
    let other = Req::to(host.addr, "GET", "/anon").from("127.0.0.2").send().await;
    assert_eq!(other.status, 200, "{}", other.body);
    // A route with throttle = [] is not throttled at all.
    assert_eq!(get(&host, "/free", None).await.status, 200);
}

#[tokio::test]
async fn user_counts_each_user_apart() {
    let (_site, host) = host();
    for _ in 0..2 {
        assert_eq!(get(&host, "/user", Some("alice")).await.status, 200);
    }
    let refused = get(&host, "/user", Some("alice")).await;
    assert_throttled(&refused, 3600, 5);
    assert_eq!(get(&host, "/user", Some("bob")).await.status, 200);
    // Anonymous requests are counted by address, apart from alice's.
    assert_eq!(get(&host, "/user", None).await.status, 200);
    let text = host.get("/metrics").send().await.body;
    assert!(text.contains("authhost_throttled_requests_total{route=\"/user\"} 1"), "{text}");
}

#[tokio::test]
async fn a_wait_of_one_second_is_singular() {
    let (_site, host) = host();
    // 1/s: the second request within the same second is refused. Polled with a deadline,
    // since a stalled machine could let a whole second pass between two requests.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let refused = loop {
        assert!(std::time::Instant::now() < deadline, "never throttled");
        let first = get(&host, "/burst", Some("alice")).await;
        let second = get(&host, "/burst", Some("alice")).await;
        if first.status == 200 && second.status == 429 {
            break second;
        }
    };
    assert_eq!(refused.json(), json!({"detail": "Request was throttled. Expected available in 1 second."}));
    assert_eq!(refused.header("retry-after"), Some("1"));
}

const FAILURES: &str = r#"
[throttle]
failures = "5/min"

[[scheme]]
name = "basic"
plugin = "basic"

[[route]]
path = "/api-token-auth/"
handler = "obtain_token"
schemes = []
permission = "allow_any"

[[route]]
path = "/basic"
handler = "whoami"
schemes = ["basic"]
permission = "is_authenticated"
"#;

/// Beyond DRF, `[throttle] failures`: one address's flood of wrong passwords is refused with
/// 429 once its window is full, for every login route, while another address's login
/// (the same user's, with the right password) still answers 200.
#[tokio::test]
async fn a_flood_of_wrong_passwords_from_one_address_leaves_another_addresss_login_answering_200() {
    let site = Site::new(FAILURES);
    site.add_user("alice", "alice-pw", &[]);
    let host = site.serve();
    let login = |form: &'static str| host.request("POST", "/api-token-auth/").form(form);
    for _ in 0..5 {
        let resp = login("username=alice&password=wrong").send().await;
        assert_eq!(resp.status, 400, "{}", resp.body);
    }
    assert_throttled(&login("username=alice&password=wrong").send().await, 60, 5);
    // The right password from the flooding address waits too: nothing is tried there.
    assert_throttled(&login("username=alice&password=alice-pw").send().await, 60, 5);
    let basic = host.get("/basic").header("authorization", "Basic YWxpY2U6d3Jvbmc=").send().await;
    assert_throttled(&basic, 60, 5);
    // Another address logs in.
    let other = Req::to(host.addr, "POST", "/api-token-auth/")
        .from("127.0.0.2")
        .form("username=alice&password=alice-pw")
        .send()
        .await;
    assert_eq!(other.status, 200, "{}", other.body);
    assert!(other.json()["token"].is_string());
    let other = Req::to(host.addr, "GET", "/basic")
        .from("127.0.0.2")
        .header("authorization", "Basic YWxpY2U6YWxpY2UtcHc=")
        .send()
        .await;
    assert_eq!(other.status, 200, "{}", other.body);
}
