//! DRF conformance: every row of SPEC section 2's message table for every shipped scheme,
//! and the ordering cases, each a test named for its behaviour. Each case asserts the
//! status, the `WWW-Authenticate` header and the exact body, on both stores: each case is
//! a module with a `sqlite` and a `postgres` test (a test's own PostgreSQL database).

use serde_json::{json, Value};

use crate::support::postgres::TestDb;
use crate::support::Site;

/// The store a case runs on.
#[derive(Debug, Clone, Copy)]
enum Store {
    Sqlite,
    Postgres,
}

const CONFIG: &str = r#"
[[scheme]]
name = "basic"
plugin = "basic"
realm = "api"

[[scheme]]
name = "session"
plugin = "session"

[[scheme]]
name = "token"
plugin = "token"

[[scheme]]
name = "bearer"
plugin = "token"
keyword = "Bearer"

[[scheme]]
name = "x-username"
plugin = "x-username"

[[scheme]]
name = "remote"
plugin = "remote-user"
trusted_proxies = ["127.0.0.1", "::1"]
create_unknown_user = false

[[scheme]]
name = "remote-elsewhere"
plugin = "remote-user"
trusted_proxies = ["10.0.0.0/8"]

[defaults]
schemes = ["basic", "token"]
permission = "is_authenticated"

[[route]]
path = "/basic-first"
handler = "whoami"

[[route]]
path = "/token-first"
handler = "whoami"
schemes = ["token", "basic"]

[[route]]
path = "/bearer"
handler = "whoami"
schemes = ["bearer"]

[[route]]
path = "/x-first"
handler = "whoami"
schemes = ["x-username", "basic"]

[[route]]
path = "/basic-then-x"
handler = "whoami"
schemes = ["basic", "x-username"]

[[route]]
path = "/remote"
handler = "whoami"
schemes = ["remote"]

[[route]]
path = "/remote-elsewhere"
handler = "whoami"
schemes = ["remote-elsewhere"]

[[route]]
path = "/session-first"
handler = "whoami"
schemes = ["session", "basic"]

[[route]]
path = "/login"
handler = "login"
schemes = []
permission = "allow_any"

[[route]]
path = "/any"
handler = "whoami"
permission = "allow_any"

[[route]]
path = "/staff"
handler = "whoami"
permission = "is_admin"

[[route]]
path = "/empty"
handler = "whoami"
schemes = []
"#;

const ALICE_KEY: &str = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b";
const GONE_KEY: &str = "0123456789abcdef0123456789abcdef01234567";
const BASIC: Option<&str> = Some(r#"Basic realm="api""#);
const TOKEN: Option<&str> = Some("Token");
const BEARER: Option<&str> = Some("Bearer");
const NONE: Option<&str> = None;

/// The site on `store`, with the database it needs (kept alive with it); `None` when the
/// case skips (no PostgreSQL server answers, said loudly).
fn site(store: Store, test: &str) -> Option<(Site, Option<TestDb>)> {
    let (site, db) = match store {
        Store::Sqlite => (Site::new(CONFIG), None),
        Store::Postgres => {
            let db = TestDb::create(test)?;
            (Site::with_store(CONFIG, "", Some(db.url.clone())), Some(db))
        }
    };
    site.add_user("alice", "alice-pw", &[]);
    site.add_user("gone", "gone-pw", &["--inactive"]);
    site.add_user("root", "root-pw", &["--staff"]);
    for (user, key) in [("alice", ALICE_KEY), ("gone", GONE_KEY)] {
        let out = site.authhost(&["token", "create", user, "--key", key], "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    Some((site, db))
}

fn detail(text: &str) -> Value {
    json!({ "detail": text })
}

fn who(user: &str, scheme: &str, auth: &Value, is_staff: bool) -> Value {
    json!({ "user": user, "auth": auth, "scheme": scheme, "is_staff": is_staff })
}

/// Logs alice in through the login view: the session key, the CSRF secret (the cookie)
/// and a masked CSRF token, for the `{session}`, `{secret}` and `{session_token}`
/// placeholders.
async fn login(host: &crate::support::TestHost) -> (String, String, String) {
    let form = host.get("/login").send().await;
    let secret = form.cookie("csrftoken").expect("csrftoken");
    let token = form.json()["csrftoken"].as_str().expect("token").to_owned();
    let resp = host
        .request("POST", "/login")
        .header("cookie", format!("csrftoken={secret}"))
        .header("x-csrftoken", &token)
        .form("username=alice&password=alice-pw")
        .send()
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let token = resp.json()["csrftoken"].as_str().expect("token").to_owned();
    (resp.cookie("sessionid").expect("sessionid"), resp.cookie("csrftoken").expect("csrftoken"), token)
}

/// One request and what must come back, on `store`.
#[allow(clippy::too_many_arguments)]
async fn check(
    store: Store,
    test: &str,
    method: &str,
    path: &str,
    headers: &[(&str, Vec<u8>)],
    status: u16,
    challenge: Option<&str>,
    body: Value,
) {
    let Some((site, _db)) = site(store, test) else { return };
    let host = site.serve();
    let session = if headers.iter().any(|(_, v)| v.windows(2).any(|w| w == b"{s")) {
        Some(login(&host).await)
    } else {
        None
    };
    let mut req = host.request(method, path);
    for (name, value) in headers {
        req = match (&session, std::str::from_utf8(value)) {
            (Some((key, secret, token)), Ok(text)) => req.header(
                name,
                text.replace("{session}", key).replace("{secret}", secret).replace("{session_token}", token),
            ),
            _ => req.header(name, value),
        };
    }
    let resp = req.send().await;
    assert_eq!(resp.status, status, "{}", resp.body);
    assert_eq!(resp.header("www-authenticate"), challenge);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.json(), body);
}

macro_rules! conformance {
    ($($name:ident: $method:literal $path:literal [$(($h:literal, $v:expr)),*] => $status:literal, $challenge:expr, $body:expr;)*) => {
        $(
            mod $name {
                use super::*;

                async fn case(store: Store) {
                    let headers: Vec<(&str, Vec<u8>)> = vec![$(($h, AsRef::<[u8]>::as_ref(&$v).to_vec())),*];
                    check(store, stringify!($name), $method, $path, &headers, $status, $challenge, $body).await;
                }

                #[tokio::test]
                async fn sqlite() {
                    case(Store::Sqlite).await;
                }

                #[tokio::test]
                async fn postgres() {
                    case(Store::Postgres).await;
                }
            }
        )*
    };
}

conformance! {
    // Basic, every row of the table.
    basic_with_nothing_after_the_keyword_has_no_credentials:
        "GET" "/basic-first" [("Authorization", "Basic")] => 401, BASIC, detail("Invalid basic header. No credentials provided.");
    basic_keyword_with_trailing_space_has_no_credentials:
        "GET" "/basic-first" [("Authorization", "Basic ")] => 401, BASIC, detail("Invalid basic header. No credentials provided.");
    basic_with_two_parts_should_not_contain_spaces:
        "GET" "/basic-first" [("Authorization", "Basic YWxp Y2U=")] => 401, BASIC, detail("Invalid basic header. Credentials string should not contain spaces.");
    basic_not_base64_is_refused:
        "GET" "/basic-first" [("Authorization", "Basic !!notbase64!!")] => 401, BASIC, detail("Invalid basic header. Credentials not correctly base64 encoded.");
    basic_with_junk_inside_base64_is_refused_strictly:
        "GET" "/basic-first" [("Authorization", "Basic YWxpY2U6Y*WxpY2UtcHc=")] => 401, BASIC, detail("Invalid basic header. Credentials not correctly base64 encoded.");
    basic_without_a_colon_is_not_correctly_encoded:
        "GET" "/basic-first" [("Authorization", "Basic YWxpY2U=")] => 401, BASIC, detail("Invalid basic header. Credentials not correctly base64 encoded.");
    basic_unknown_user_is_invalid:
        "GET" "/basic-first" [("Authorization", "Basic bm9ib2R5OmFsaWNlLXB3")] => 401, BASIC, detail("Invalid username/password.");
    basic_wrong_password_is_invalid:
        "GET" "/basic-first" [("Authorization", "Basic YWxpY2U6d3Jvbmc=")] => 401, BASIC, detail("Invalid username/password.");
    basic_inactive_user_is_indistinguishable_from_a_wrong_password:
        "GET" "/basic-first" [("Authorization", "Basic Z29uZTpnb25lLXB3")] => 401, BASIC, detail("Invalid username/password.");
    basic_latin1_credentials_fail_as_a_bad_password:
        "GET" "/basic-first" [("Authorization", "Basic avZyZzpwdw==")] => 401, BASIC, detail("Invalid username/password.");
    basic_keyword_is_case_insensitive_and_split_on_whitespace_runs:
        "GET" "/basic-first" [("Authorization", "bAsIc \t YWxpY2U6YWxpY2UtcHc=")] => 200, NONE, who("alice", "basic", &Value::Null, false);
    basic_good_credentials_authenticate:
        "GET" "/basic-first" [("Authorization", "Basic YWxpY2U6YWxpY2UtcHc=")] => 200, NONE, who("alice", "basic", &Value::Null, false);

    // Token, every row of the table.
    token_with_nothing_after_the_keyword_has_no_credentials:
        "GET" "/token-first" [("Authorization", "Token")] => 401, TOKEN, detail("Invalid token header. No credentials provided.");
    token_with_two_parts_should_not_contain_spaces:
        "GET" "/token-first" [("Authorization", "Token abc def")] => 401, TOKEN, detail("Invalid token header. Token string should not contain spaces.");
    token_not_valid_text_has_invalid_characters:
        "GET" "/token-first" [("Authorization", b"Token \xff\xfe\xfd")] => 401, TOKEN, detail("Invalid token header. Token string should not contain invalid characters.");
    token_unknown_key_is_invalid:
        "GET" "/token-first" [("Authorization", "Token 0000000000000000000000000000000000000000")] => 401, TOKEN, detail("Invalid token.");
    token_of_an_inactive_user_is_refused:
        "GET" "/token-first" [("Authorization", format!("Token {GONE_KEY}"))] => 401, TOKEN, detail("User inactive or deleted.");
    token_good_key_authenticates:
        "GET" "/token-first" [("Authorization", format!("token {ALICE_KEY}"))] => 200, NONE, who("alice", "token", &json!("1"), false);
    token_wrong_keyword_is_not_attempted:
        "GET" "/token-first" [("Authorization", format!("Tokens {ALICE_KEY}"))] => 401, TOKEN, detail("Authentication credentials were not provided.");

    // The Bearer variant: the same plugin with keyword = "Bearer".
    bearer_good_key_authenticates:
        "GET" "/bearer" [("Authorization", format!("Bearer {ALICE_KEY}"))] => 200, NONE, who("alice", "bearer", &json!("1"), false);
    bearer_unknown_key_is_invalid_with_the_bearer_challenge:
        "GET" "/bearer" [("Authorization", "Bearer nope")] => 401, BEARER, detail("Invalid token.");
    bearer_route_does_not_attempt_the_token_keyword:
        "GET" "/bearer" [("Authorization", format!("Token {ALICE_KEY}"))] => 401, BEARER, detail("Authentication credentials were not provided.");
    bearer_with_nothing_after_the_keyword_has_no_credentials:
        "GET" "/bearer" [("Authorization", "Bearer")] => 401, BEARER, detail("Invalid token header. No credentials provided.");

    // X-USERNAME.
    x_username_naming_no_user_fails:
        "GET" "/x-first" [("X-USERNAME", "mallory")] => 403, NONE, detail("No such user");
    x_username_naming_an_inactive_user_fails:
        "GET" "/x-first" [("X-USERNAME", "gone")] => 403, NONE, detail("User inactive or deleted.");

    // Session: CSRF on unsafe methods for authenticated sessions, and no challenge.
    session_get_without_csrf_is_authenticated:
        "GET" "/session-first" [("Cookie", "sessionid={session}; csrftoken={secret}")] => 200, NONE, who("alice", "session", &Value::Null, false);
    session_post_without_csrf_is_forbidden_with_djangos_reason:
        "POST" "/session-first" [("Cookie", "sessionid={session}; csrftoken={secret}")] => 403, NONE, detail("CSRF Failed: CSRF token missing.");
    session_post_with_a_wrong_csrf_token_is_forbidden:
        "POST" "/session-first" [("Cookie", "sessionid={session}; csrftoken={secret}"), ("X-CSRFToken", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")] => 403, NONE, detail("CSRF Failed: CSRF token from the 'X-Csrftoken' HTTP header incorrect.");
    session_post_with_csrf_is_authenticated:
        "POST" "/session-first" [("Cookie", "sessionid={session}; csrftoken={secret}"), ("X-CSRFToken", "{session_token}")] => 200, NONE, who("alice", "session", &Value::Null, false);
    session_post_without_the_csrf_cookie_is_forbidden:
        "POST" "/session-first" [("Cookie", "sessionid={session}"), ("X-CSRFToken", "{session_token}")] => 403, NONE, detail("CSRF Failed: CSRF cookie not set.");
    session_first_chain_refuses_with_403:
        "GET" "/session-first" [] => 403, NONE, detail("Authentication credentials were not provided.");
    session_first_chain_refuses_failed_basic_with_403:
        "GET" "/session-first" [("Authorization", "Basic YWxpY2U6d3Jvbmc=")] => 403, NONE, detail("Invalid username/password.");
    unknown_session_cookie_is_anonymous:
        "GET" "/session-first" [("Cookie", "sessionid=nosuchsession")] => 403, NONE, detail("Authentication credentials were not provided.");

    // RemoteUser: it never fails, and it has no challenge.
    remote_user_from_a_trusted_proxy_authenticates:
        "GET" "/remote" [("X-Remote-User", "alice")] => 200, NONE, who("alice", "remote", &Value::Null, false);
    remote_user_naming_an_inactive_user_is_not_attempted:
        "GET" "/remote" [("X-Remote-User", "gone")] => 403, NONE, detail("Authentication credentials were not provided.");
    remote_user_naming_an_unknown_user_is_not_attempted_without_create_unknown_user:
        "GET" "/remote" [("X-Remote-User", "mallory")] => 403, NONE, detail("Authentication credentials were not provided.");
    remote_user_from_an_untrusted_peer_is_not_attempted:
        "GET" "/remote-elsewhere" [("X-Remote-User", "alice")] => 403, NONE, detail("Authentication credentials were not provided.");

    // Ordering: the first scheme's challenge decides, whichever scheme failed.
    wrong_token_on_a_basic_first_route_gets_the_basic_challenge:
        "GET" "/basic-first" [("Authorization", "Token nope")] => 401, BASIC, detail("Invalid token.");
    wrong_token_on_a_token_first_route_gets_the_token_challenge:
        "GET" "/token-first" [("Authorization", "Token nope")] => 401, TOKEN, detail("Invalid token.");
    bad_basic_on_a_token_first_route_gets_the_token_challenge:
        "GET" "/token-first" [("Authorization", "Basic YWxpY2U6d3Jvbmc=")] => 401, TOKEN, detail("Invalid username/password.");
    unknown_x_username_with_good_basic_fails_when_x_username_is_first:
        "GET" "/x-first" [("X-USERNAME", "mallory"), ("Authorization", "Basic YWxpY2U6YWxpY2UtcHc=")] => 403, NONE, detail("No such user");
    unknown_x_username_with_good_basic_succeeds_when_basic_is_first:
        "GET" "/basic-then-x" [("X-USERNAME", "mallory"), ("Authorization", "Basic YWxpY2U6YWxpY2UtcHc=")] => 200, NONE, who("alice", "basic", &Value::Null, false);
    two_authorization_headers_are_joined_and_refused_as_containing_spaces:
        "GET" "/token-first" [("Authorization", format!("Token {ALICE_KEY}")), ("Authorization", format!("Token {ALICE_KEY}"))] => 401, TOKEN, detail("Invalid token header. Token string should not contain spaces.");

    // Permissions and anonymous.
    anonymous_on_allow_any_is_the_anonymous_user:
        "GET" "/any" [] => 200, NONE, json!({"user": "AnonymousUser", "auth": null, "scheme": null, "is_staff": false});
    failed_credentials_are_refused_even_on_allow_any:
        "GET" "/any" [("Authorization", "Token nope")] => 401, BASIC, detail("Invalid token.");
    no_credentials_on_is_authenticated_gets_the_first_challenge:
        "GET" "/basic-first" [] => 401, BASIC, detail("Authentication credentials were not provided.");
    staff_route_admits_staff:
        "GET" "/staff" [("Authorization", "Basic cm9vdDpyb290LXB3")] => 200, NONE, who("root", "basic", &Value::Null, true);
    staff_route_refuses_an_authenticated_non_staff_user_with_403:
        "GET" "/staff" [("Authorization", format!("Token {ALICE_KEY}"))] => 403, NONE, detail("You do not have permission to perform this action.");
    staff_route_asks_an_anonymous_user_to_authenticate:
        "GET" "/staff" [] => 401, BASIC, detail("Authentication credentials were not provided.");
    empty_chain_denies_with_permission_denied:
        "GET" "/empty" [("Authorization", format!("Token {ALICE_KEY}"))] => 403, NONE, detail("You do not have permission to perform this action.");
    wrong_method_unauthenticated_gets_401_before_405:
        "PUT" "/basic-first" [] => 401, BASIC, detail("Authentication credentials were not provided.");
    wrong_method_authenticated_gets_405:
        "DELETE" "/basic-first" [("Authorization", format!("Token {ALICE_KEY}"))] => 405, NONE, detail("Method \"DELETE\" not allowed.");
}
