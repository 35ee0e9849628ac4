//! Revocation is final: 8 clients hammer one credential while it is revoked, with the
//! shipped cache settings, and no request that started after the revocation returned (for
//! the command line: after its exit plus the change-poll bound) is authenticated.
//! See: issue 11 (a logout undone by a concurrent request that re-cached the session).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{session_login, Hammer, Site, TestHost};

const ALICE_BASIC: &str = "Basic YWxpY2U6YWxpY2UtcHc="; // alice:alice-pw

/// `[store] change_poll` as configured below; the command line's changes reach a running
/// host within two of these (one poll may have just started when the change commits).
const POLL: Duration = Duration::from_millis(250);

const CONFIG: &str = r#"
[[scheme]]
name = "session"
plugin = "session"

[[scheme]]
name = "basic"
plugin = "basic"
cache_ttl = "30s"

[[scheme]]
name = "token"
plugin = "token"
prefix = "ah_"
ttl = "10h"
refresh_on_use = true

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
path = "/token/login"
handler = "login_token"
schemes = ["basic"]
permission = "is_authenticated"
token_scheme = "token"

[[route]]
path = "/token/logout"
handler = "logout_token"
schemes = ["token"]
permission = "is_authenticated"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["session", "basic", "token"]
permission = "is_authenticated"
"#;

/// The shipped cache settings: users, tokens and sessions served from memory for 60 s.
fn site() -> Site {
    let site = Site::with_cache(CONFIG, "user_cache_ttl = \"60s\"\nchange_poll = \"250ms\"");
    site.add_user("alice", "alice-pw", &[]);
    site
}

async fn token_login(host: &TestHost) -> String {
    let resp = host.request("POST", "/token/login").header("authorization", ALICE_BASIC).send().await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.json()["token"].as_str().expect("token").to_owned()
}

/// Runs `hammer` until the credential has been served from memory for a while, revokes it
/// with `revoke` (which returns the instant from which it must hold), lets the clients go
/// on for `after`, and checks every request that started from that instant on.
async fn assert_final<F, Fut>(hammer: Hammer, revoke: F, after: Duration)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Instant>,
{
    hammer.wait_for_successes(200).await;
    let revoked = revoke().await;
    let settle = Instant::now() + after;
    hammer.wait_until(settle).await;
    let results = hammer.stop().await;
    let later: Vec<_> = results.iter().filter(|r| r.started >= revoked).collect();
    assert!(later.len() >= 50, "too few requests after the revocation to judge: {}", later.len());
    let passed: Vec<_> = later.iter().filter(|r| r.status == 200).collect();
    assert!(
        passed.is_empty(),
        "{} of {} requests started after the revocation were authenticated (first {:?} after it)",
        passed.len(),
        later.len(),
        passed.first().map(|r| r.started - revoked)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_token_is_final_under_concurrent_use() {
    let host = site().serve();
    let key = format!("Token {}", token_login(&host).await);
    let shared = key.clone();
    let hammer = Hammer::start(&host, 8, move |_| vec![("authorization".into(), shared.clone())]);
    assert_final(
        hammer,
        || async {
            let resp = host.request("POST", "/token/logout").header("authorization", &key).send().await;
            assert_eq!(resp.status, 204, "{}", resp.body);
            Instant::now()
        },
        Duration::from_millis(600),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_logout_is_final_under_concurrent_use() {
    let host = site().serve();
    let (cookie, csrf) = session_login(&host, "alice", "alice-pw").await;
    let shared = cookie.clone();
    let hammer = Hammer::start(&host, 8, move |_| vec![("cookie".into(), shared.clone())]);
    assert_final(
        hammer,
        || async {
            let resp = host
                .request("POST", "/logout")
                .header("cookie", &cookie)
                .header("x-csrftoken", &csrf)
                .send()
                .await;
            assert_eq!(resp.status, 204, "{}", resp.body);
            Instant::now()
        },
        Duration::from_millis(600),
    )
    .await;
    let resp = host.get("/me").header("cookie", &cookie).send().await;
    assert_eq!(resp.status, 403, "{}", resp.body);
    assert_eq!(resp.json(), json!({"detail": "Authentication credentials were not provided."}));
}

/// Half the clients use Basic (answered from the verified-credential cache), half a token.
async fn hammer_basic_and_token(host: &TestHost) -> Hammer {
    let key = token_login(host).await;
    Hammer::start(host, 8, move |i| {
        let value = if i % 2 == 0 { ALICE_BASIC.to_owned() } else { format!("Token {key}") };
        vec![("authorization".into(), value)]
    })
}

/// Runs a command-line change on a blocking thread; the instant it exited.
async fn cli(site: &Site, args: &'static [&'static str], stdin: &'static str) -> Instant {
    let out = site.authhost(args, stdin);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_password_is_final_within_the_poll_bound() {
    let site = site();
    let host = site.serve();
    let hammer = hammer_basic_and_token(&host).await;
    assert_final(
        hammer,
        || async {
            cli(&site, &["user", "passwd", "alice", "--password-stdin"], "new-pw\n").await + 2 * POLL
        },
        Duration::from_millis(1200),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deactivation_is_final_within_the_poll_bound() {
    let site = site();
    let host = site.serve();
    let hammer = hammer_basic_and_token(&host).await;
    assert_final(
        hammer,
        || async { cli(&site, &["user", "deactivate", "alice"], "").await + 2 * POLL },
        Duration::from_millis(1200),
    )
    .await;
}
