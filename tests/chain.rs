//! DRF's chain and permissions, through the real loader and server.

use serde_json::json;

use crate::support::Site;

/// X-USERNAME alone, and behind a scheme that is never attempted but has a challenge.
const X_USERNAME: &str = r#"
[[scheme]]
name = "x-username"
plugin = "x-username"

[[scheme]]
name = "challenger"
plugin = "probe"
mode = "not_attempted"
challenge = 'Basic realm="api"'

[[scheme]]
name = "fallback"
plugin = "probe"
mode = "user"
user = "bob"
header = "x-fallback"

[defaults]
schemes = ["x-username"]
permission = "is_authenticated"

[[route]]
path = "/me"
handler = "whoami"

[[route]]
path = "/challenged"
handler = "whoami"
schemes = ["challenger", "x-username"]

[[route]]
path = "/fallback"
handler = "whoami"
schemes = ["x-username", "fallback"]

[[route]]
path = "/public"
handler = "whoami"
permission = "allow_any"

[[route]]
path = "/staff"
handler = "whoami"
permission = "is_admin"

[[route]]
path = "/nobody"
handler = "whoami"
schemes = []

[[route]]
path = "/read-only"
handler = "whoami"
permission = "is_authenticated_or_read_only"
"#;

fn site() -> Site {
    let site = Site::new(X_USERNAME);
    site.add_user("alice", "alice-pw", &[]);
    site.add_user("bob", "bob-pw", &[]);
    site.add_user("root", "root-pw", &["--staff"]);
    site.add_user("gone", "gone-pw", &["--inactive"]);
    site
}

#[tokio::test]
async fn x_username_known_user_gets_whoami() {
    let host = site().serve();
    let resp = host.get("/me").header("X-USERNAME", "alice").send().await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(
        resp.json(),
        json!({"user": "alice", "auth": null, "scheme": "x-username", "is_staff": false})
    );
}

#[tokio::test]
async fn x_username_unknown_user_gets_403_when_first_scheme_has_no_challenge() {
    let host = site().serve();
    let resp = host.get("/me").header("X-USERNAME", "mallory").send().await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.header("www-authenticate"), None);
    assert_eq!(resp.json(), json!({"detail": "No such user"}));
}

#[tokio::test]
async fn x_username_unknown_user_gets_401_with_the_first_schemes_challenge() {
    let host = site().serve();
    let resp = host.get("/challenged").header("X-USERNAME", "mallory").send().await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.header("www-authenticate"), Some(r#"Basic realm="api""#));
    assert_eq!(resp.json(), json!({"detail": "No such user"}));
}

#[tokio::test]
async fn x_username_inactive_user_is_refused() {
    let host = site().serve();
    let resp = host.get("/me").header("X-USERNAME", "gone").send().await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json(), json!({"detail": "User inactive or deleted."}));
}

#[tokio::test]
async fn no_header_falls_through_to_the_next_scheme() {
    let host = site().serve();
    let resp = host.get("/fallback").header("X-Fallback", "1").send().await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), json!({"user": "bob", "auth": "probe", "scheme": "fallback", "is_staff": false}));
}

#[tokio::test]
async fn failed_scheme_stops_the_chain() {
    let host = site().serve();
    // x-username fails first; the fallback that would authenticate bob is never asked.
    let resp = host.get("/fallback").header("X-USERNAME", "mallory").header("X-Fallback", "1").send().await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json(), json!({"detail": "No such user"}));
}

#[tokio::test]
async fn no_credentials_fall_through_to_anonymous() {
    let host = site().serve();
    let resp = host.get("/public").send().await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.json(),
        json!({"user": "AnonymousUser", "auth": null, "scheme": null, "is_staff": false})
    );
    let resp = host.get("/me").send().await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json(), json!({"detail": "Authentication credentials were not provided."}));
    let resp = host.get("/challenged").send().await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.header("www-authenticate"), Some(r#"Basic realm="api""#));
    assert_eq!(resp.json(), json!({"detail": "Authentication credentials were not provided."}));
}

#[tokio::test]
async fn failed_credentials_are_refused_even_on_allow_any() {
    let host = site().serve();
    let resp = host.get("/public").header("X-USERNAME", "mallory").send().await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json(), json!({"detail": "No such user"}));
}

#[tokio::test]
async fn configured_anonymous_user_and_auth_are_used() {
    let site = Site::new(
        &X_USERNAME.replace("[defaults]", "[anonymous]\nuser = false\nauth = \"none\"\n\n[defaults]"),
    );
    let host = site.serve();
    let resp = host.get("/public").send().await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), json!({"user": null, "auth": "none", "scheme": null, "is_staff": false}));
}

#[tokio::test]
async fn staff_route_admits_staff_only() {
    let host = site().serve();
    let resp = host.get("/staff").header("X-USERNAME", "root").send().await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["is_staff"], json!(true));
    let resp = host.get("/staff").header("X-USERNAME", "alice").send().await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json(), json!({"detail": "You do not have permission to perform this action."}));
    let resp = host.get("/staff").send().await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json(), json!({"detail": "Authentication credentials were not provided."}));
}

#[tokio::test]
async fn empty_chain_denies_with_permission_denied() {
    let host = site().serve();
    let resp = host.get("/nobody").header("X-USERNAME", "alice").send().await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json(), json!({"detail": "You do not have permission to perform this action."}));
}

#[tokio::test]
async fn read_only_permission_lets_anonymous_read_but_not_write() {
    let host = site().serve();
    let resp = host.get("/read-only").send().await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["user"], json!("AnonymousUser"));
    let resp = host.request("POST", "/read-only").send().await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json(), json!({"detail": "Authentication credentials were not provided."}));
    let resp = host.request("POST", "/read-only").header("X-USERNAME", "alice").send().await;
    assert_eq!(resp.status, 200);
}

#[tokio::test]
async fn wrong_method_is_405_only_once_authenticated() {
    let host = site().serve();
    let resp = host.request("PUT", "/me").send().await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json(), json!({"detail": "Authentication credentials were not provided."}));
    let resp = host.request("PUT", "/me").header("X-USERNAME", "alice").send().await;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET, HEAD, POST"));
    assert_eq!(resp.json(), json!({"detail": "Method \"PUT\" not allowed."}));
}

#[tokio::test]
async fn unrouted_path_is_404() {
    let host = site().serve();
    let resp = host.get("/nowhere").header("X-USERNAME", "alice").send().await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json(), json!({"detail": "Not found."}));
}

/// Two challenging schemes, neither attempted: the 401 carries the first one's challenge.
fn two_challenges(first: &str, second: &str) -> String {
    format!(
        r#"
[[scheme]]
name = "basicish"
plugin = "probe"
challenge = 'Basic realm="api"'

[[scheme]]
name = "tokenish"
plugin = "probe"
challenge = "Token"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["{first}", "{second}"]
permission = "is_authenticated"
"#
    )
}

#[tokio::test]
async fn reordering_schemes_in_config_changes_the_challenge_without_rebuilding() {
    let site = Site::new(&two_challenges("basicish", "tokenish"));
    let host = site.serve();
    let resp = host.get("/me").send().await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.header("www-authenticate"), Some(r#"Basic realm="api""#));
    drop(host);

    site.write_config(&two_challenges("tokenish", "basicish"));
    let host = site.serve();
    let resp = host.get("/me").send().await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.header("www-authenticate"), Some("Token"));
}

#[tokio::test]
async fn sighup_reloads_a_reordered_config_and_keeps_the_old_one_when_the_new_is_bad() {
    let site = Site::new(&two_challenges("basicish", "tokenish"));
    let host = site.serve();
    let resp = host.get("/me").send().await;
    assert_eq!(resp.header("www-authenticate"), Some(r#"Basic realm="api""#));

    site.write_config(&two_challenges("tokenish", "basicish"));
    host.signal("HUP");
    host.wait_for_log(|l| l.contains("config reloaded"));
    let resp = host.get("/me").send().await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.header("www-authenticate"), Some("Token"));

    site.write_config(&two_challenges("tokenish", "nonesuch"));
    host.signal("HUP");
    let line = host.wait_for_log(|l| l.contains("reload rejected"));
    assert!(line.contains("route[0] (\"/me\").schemes[1]: unknown scheme \"nonesuch\""), "{line}");
    let resp = host.get("/me").send().await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.header("www-authenticate"), Some("Token"), "the running config stays");
}
