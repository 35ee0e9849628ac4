//! Browser sign-in over HTTP: the login and logout pages, `next` (never an open redirect),
//! redirects for browser navigations from authhost's proxy and from forward-auth, and the
//! pages' security headers. (A real headless Chromium drives them in browser.rs.)
//! See: issue 13 (items 1 to 5).

use serde_json::json;

use crate::support::upstream;
use crate::support::{Resp, Site, TestHost};

const INVALID_LOGIN: &str =
    "Please enter a correct username and password. Note that both fields may be case-sensitive.";
const HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

fn config(echo: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"
[session]
trusted_origins = ["https://app.example.com"]

[[scheme]]
name = "session"
plugin = "session"

[[scheme]]
name = "token"
plugin = "token"

[[route]]
path = "/login/"
handler = "login_page"
schemes = []
permission = "allow_any"

[[route]]
path = "/logout/"
handler = "logout_page"
schemes = []
permission = "allow_any"

[[route]]
path = "/app"
prefix = true
upstream = "http://{echo}"
schemes = ["session", "token"]
permission = "is_authenticated"
login_url = "/login/"

[[route]]
path = "/auth"
handler = "forward_auth"
schemes = []
permission = "allow_any"

[[route]]
path = "/api"
prefix = true
upstream = "http://{echo}"
schemes = ["session", "token"]
permission = "is_authenticated"
{extra}
"#
    )
}

async fn site() -> (Site, TestHost, upstream::Echo) {
    let echo = upstream::echo().await;
    let site = Site::new(&config(echo.addr, ""));
    site.add_user("alice", "alice-pw", &[]);
    site.add_user("ian", "ian-pw", &["--inactive"]);
    let host = site.serve();
    (site, host, echo)
}

/// Rendered text with minijinja's HTML escapes read back (it escapes `/` too).
fn unescape(text: &str) -> String {
    text.replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// The masked CSRF token in a rendered form.
fn form_token(body: &str) -> String {
    let at = body.find("name=\"csrfmiddlewaretoken\" value=\"").expect("a CSRF field") + 34;
    body[at..at + 64].to_owned()
}

/// GET the login page: the csrftoken cookie and the form's token.
async fn login_form(host: &TestHost) -> (String, String) {
    let resp = host.get("/login/").header("accept", HTML).send().await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    (resp.cookie("csrftoken").expect("csrftoken cookie"), form_token(&resp.body))
}

async fn post_login(host: &TestHost, user: &str, password: &str, next: &str) -> Resp {
    let (csrf, token) = login_form(host).await;
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("csrfmiddlewaretoken", &token)
        .append_pair("username", user)
        .append_pair("password", password)
        .append_pair("next", next)
        .finish();
    host.request("POST", "/login/").header("cookie", format!("csrftoken={csrf}")).form(&body).send().await
}

#[tokio::test]
async fn the_login_page_is_a_form_with_csrf_and_the_security_headers() {
    let (_site, host, _echo) = site().await;
    let resp = host.get("/login/?next=/app/x").header("accept", HTML).send().await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = resp.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "no script at all: {csp}");
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self' https://app.example.com")
    );
    assert_eq!(resp.header("x-frame-options"), Some("DENY"));
    assert_eq!(resp.header("referrer-policy"), Some("same-origin"));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert!(resp.cookie("csrftoken").is_some());
    let body = unescape(&resp.body);
    for needle in
        ["<label for=\"id_username\">", "<label for=\"id_password\">", "name=\"next\" value=\"/app/x\""]
    {
        assert!(body.contains(needle), "{needle} in:\n{body}");
    }
    assert!(!resp.body.contains("<script"), "{}", resp.body);
    // What the query carries is escaped, never markup.
    let resp = host.get("/login/?next=%22%3E%3Cscript%3Ex%3C/script%3E").send().await;
    assert!(!resp.body.contains("<script>x"), "{}", resp.body);
    assert!(resp.body.contains("&quot;&gt;&lt;script&gt;"), "{}", resp.body);
}

#[tokio::test]
async fn a_wrong_password_an_unknown_user_and_an_inactive_one_get_djangos_message() {
    let (_site, host, echo) = site().await;
    for (user, password) in [("alice", "wrong"), ("nobody", "alice-pw"), ("ian", "ian-pw")] {
        let resp = post_login(&host, user, password, "/app/x").await;
        assert_eq!(resp.status, 200, "{user}: {}", resp.body);
        assert!(resp.body.contains(INVALID_LOGIN), "{user}: {}", resp.body);
        assert!(resp.cookie("sessionid").is_none(), "{user}");
        // The form comes back with the name typed and the next kept.
        let body = unescape(&resp.body);
        assert!(body.contains(&format!("value=\"{user}\"")), "{body}");
        assert!(body.contains("name=\"next\" value=\"/app/x\""), "{body}");
    }
    let resp = post_login(&host, "", "", "/").await;
    assert!(resp.body.contains("This field is required."), "{}", resp.body);
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn the_right_password_starts_a_session_and_goes_back_to_next() {
    let (_site, host, _echo) = site().await;
    let resp = post_login(&host, "alice", "alice-pw", "/app/x?y=1").await;
    assert_eq!(resp.status, 303, "{}", resp.body);
    assert_eq!(resp.header("location"), Some("/app/x?y=1"));
    let session = resp.cookie("sessionid").expect("a session");
    let resp = host
        .get("/app/x?y=1")
        .header("accept", HTML)
        .header("cookie", format!("sessionid={session}"))
        .send()
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["headers"]["x-authenticated-user"], json!(["alice"]));
}

#[tokio::test]
async fn next_is_never_an_open_redirect() {
    let (_site, host, _echo) = site().await;
    for (next, expected) in [
        ("https://evil.example/", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("\\\\evil.example", "/"),
        ("http:///evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/\t/evil.example", "/"),
        ("https://app.example.com/home", "https://app.example.com/home"),
        ("/app/ok", "/app/ok"),
    ] {
        let resp = post_login(&host, "alice", "alice-pw", next).await;
        assert_eq!(resp.status, 303, "{next:?}");
        assert_eq!(resp.header("location"), Some(expected), "{next:?}");
    }
}

#[tokio::test]
async fn browsers_are_sent_to_sign_in_and_api_clients_keep_drfs_answers() {
    let (_site, host, echo) = site().await;
    let resp = host.get("/app/page?x=1&y=2").header("accept", HTML).send().await;
    assert_eq!(resp.status, 302);
    assert_eq!(resp.header("location"), Some("/login/?next=%2Fapp%2Fpage%3Fx%3D1%26y%3D2"));
    // An API client: no HTML wanted, or credentials sent.
    let resp = host.get("/app/page").header("accept", "application/json").send().await;
    assert_eq!(
        (resp.status, resp.json()),
        (403, json!({"detail": "Authentication credentials were not provided."}))
    );
    // (403: the chain's first scheme, session, has no challenge, as in DRF.)
    let resp =
        host.get("/app/page").header("accept", HTML).header("authorization", "Token nope").send().await;
    assert_eq!((resp.status, resp.json()), (403, json!({"detail": "Invalid token."})));
    // A route without login_url keeps DRF's answer for browsers too; so does a POST.
    let resp = host.get("/api/x").header("accept", HTML).send().await;
    assert_eq!(resp.status, 403);
    let resp = host.request("POST", "/app/form").header("accept", HTML).send().await;
    assert_eq!(resp.status, 403);
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn forward_auth_redirects_for_traefik_and_caddy_but_not_for_nginx() {
    let (_site, host, _echo) = site().await;
    let resp = host
        .get("/auth")
        .header("accept", HTML)
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/app/page")
        .header("x-forwarded-host", "app.example.com")
        .send()
        .await;
    assert_eq!(resp.status, 302);
    assert_eq!(resp.header("location"), Some("/login/?next=%2Fapp%2Fpage"));
    // nginx's auth_request takes only 2xx, 401 and 403: a browser gets 401 (which nginx's
    // error_page turns into the redirect), whatever the chain's first scheme; API clients
    // keep DRF's answer (403 here: the session scheme has no challenge).
    let original = |accept: &'static str| {
        host.get("/auth")
            .header("accept", accept)
            .header("x-original-method", "GET")
            .header("x-original-uri", "/app/page")
            .send()
    };
    let resp = original(HTML).await;
    assert_eq!(
        (resp.status, resp.json()),
        (401, json!({"detail": "Authentication credentials were not provided."}))
    );
    assert_eq!(resp.header("x-authhost-login"), Some("/login/?next=%2Fapp%2Fpage"));
    let resp = original("application/json").await;
    assert_eq!((resp.status, resp.header("x-authhost-login")), (403, None));
}

#[tokio::test]
async fn the_logout_page_asks_then_ends_the_session_with_csrf() {
    let (_site, host, _echo) = site().await;
    let resp = post_login(&host, "alice", "alice-pw", "/").await;
    let session = resp.cookie("sessionid").expect("a session");
    let csrf = resp.cookie("csrftoken").expect("a rotated csrftoken");
    let cookies = format!("sessionid={session}; csrftoken={csrf}");
    let resp = host.get("/logout/").header("cookie", &cookies).send().await;
    assert_eq!(resp.status, 200);
    assert!(resp.body.contains("alice"), "{}", resp.body);
    assert_eq!(resp.header("x-frame-options"), Some("DENY"));
    let token = form_token(&resp.body);
    // Without the token: Django's CSRF failure, and the session lives on.
    let resp = host.request("POST", "/logout/").header("cookie", &cookies).form("next=/").send().await;
    assert_eq!(resp.status, 403);
    assert!(resp.body.contains("CSRF verification failed."), "{}", resp.body);
    let me = |cookies: String| host.get("/app/me").header("cookie", cookies).send();
    assert_eq!(me(cookies.clone()).await.status, 200);
    let resp = host
        .request("POST", "/logout/")
        .header("cookie", &cookies)
        .form(&format!("csrfmiddlewaretoken={token}"))
        .send()
        .await;
    assert_eq!(resp.status, 303);
    assert_eq!(resp.header("location"), Some("/login/"), "the login page without a next");
    assert_eq!(me(cookies).await.status, 403, "the session is over");
}

#[tokio::test]
async fn an_operators_template_replaces_the_page_and_a_broken_one_is_refused_by_name() {
    let echo = upstream::echo().await;
    let site = Site::new(&config(echo.addr, ""));
    std::fs::write(
        site.path().join("mine.html"),
        "<p>Welcome to {{ next }}</p><form>{{ csrf_token }}</form>",
    )
    .unwrap();
    let text = std::fs::read_to_string(site.config_path()).unwrap();
    let with = text.replace("handler = \"login_page\"", "handler = \"login_page\"\ntemplate = \"mine.html\"");
    site.write_raw_config(&with);
    let host = site.serve();
    let resp = host.get("/login/?next=/app/%3Cb%3E").send().await;
    assert!(unescape(&resp.body).starts_with("<p>Welcome to /app/<b></p>"), "{}", resp.body);
    assert!(!resp.body.contains("<b>"), "{}", resp.body);
    drop(host);
    std::fs::write(site.path().join("mine.html"), "<p>{% if %}</p>").unwrap();
    let out = site.authhost(&["check"], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("mine.html") && err.contains("route[0] (\"/login/\").template"), "{err}");
}

#[tokio::test]
async fn a_throttled_sign_in_shows_drfs_wait_on_the_page() {
    let echo = upstream::echo().await;
    let site = Site::new(&config(echo.addr, "\n[throttle]\nfailures = \"2/min\"\n"));
    site.add_user("alice", "alice-pw", &[]);
    let host = site.serve();
    for _ in 0..2 {
        assert!(post_login(&host, "alice", "wrong", "/").await.body.contains(INVALID_LOGIN));
    }
    // The address and the name are over their limit: refused before any password work,
    // even with the right password, with DRF's wait on the page and in Retry-After.
    let resp = post_login(&host, "alice", "alice-pw", "/").await;
    assert_eq!(resp.status, 429, "{}", resp.body);
    let wait: u64 = resp.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!(
        resp.body.contains(&format!("Request was throttled. Expected available in {wait} seconds.")),
        "{}",
        resp.body
    );
    assert!(resp.cookie("sessionid").is_none());
}
