//! Session authentication with Django's CSRF rules, and the login and logout views, over
//! real sockets.

use serde_json::json;

use crate::support::{Resp, Site, TestHost};

const CONFIG: &str = r#"
[session]
trusted_origins = ["https://app.example"]

[[scheme]]
name = "session"
plugin = "session"

[[scheme]]
name = "basic"
plugin = "basic"

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
path = "/me"
handler = "whoami"
schemes = ["session", "basic"]
permission = "is_authenticated"
"#;

fn site(config: &str) -> Site {
    let site = Site::new(config);
    site.add_user("alice", "alice-pw", &[]);
    site
}

/// A client's cookies: the CSRF secret and the session key.
#[derive(Debug, Clone)]
struct Browser {
    csrf: String,
    session: Option<String>,
    /// The masked token the last view handed out.
    token: String,
}

impl Browser {
    fn cookie_header(&self) -> String {
        match &self.session {
            Some(session) => format!("csrftoken={}; sessionid={session}", self.csrf),
            None => format!("csrftoken={}", self.csrf),
        }
    }
}

async fn get_csrf(host: &TestHost) -> Browser {
    let resp = host.get("/login").send().await;
    assert_eq!(resp.status, 200);
    let csrf = resp.cookie("csrftoken").expect("csrftoken cookie");
    assert_eq!(csrf.len(), 32);
    let token = resp.json()["csrftoken"].as_str().expect("token").to_owned();
    assert_eq!(token.len(), 64, "a masked token");
    Browser { csrf, session: None, token }
}

async fn login(host: &TestHost) -> (Browser, Resp) {
    let browser = get_csrf(host).await;
    let resp = host
        .request("POST", "/login")
        .header("cookie", browser.cookie_header())
        .header("x-csrftoken", &browser.token)
        // What a browser sends from the login page (needed over https, issue 12 item 8).
        .header("referer", "https://authhost.test/login")
        .form("username=alice&password=alice-pw")
        .send()
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let logged_in = Browser {
        csrf: resp.cookie("csrftoken").expect("rotated csrftoken"),
        session: Some(resp.cookie("sessionid").expect("sessionid")),
        token: resp.json()["csrftoken"].as_str().unwrap().to_owned(),
    };
    assert_ne!(logged_in.csrf, browser.csrf, "the CSRF secret is rotated at login");
    (logged_in, resp)
}

async fn post_me(host: &TestHost, browser: &Browser, token: Option<&str>) -> Resp {
    let mut req = host.request("POST", "/me").header("cookie", browser.cookie_header());
    if let Some(token) = token {
        req = req.header("x-csrftoken", token);
    }
    req.send().await
}

#[tokio::test]
async fn login_sets_an_http_only_lax_session_cookie_and_get_needs_no_csrf() {
    let host = site(CONFIG).serve();
    let (browser, resp) = login(&host).await;
    assert_eq!(resp.json()["user"], json!("alice"));
    let (_, _, attributes) = resp.cookies().into_iter().find(|(n, _, _)| n == "sessionid").unwrap();
    assert!(attributes.contains("HttpOnly") && attributes.contains("SameSite=Lax"), "{attributes}");
    assert!(!attributes.contains("Secure"), "not configured secure: {attributes}");
    let me = host.get("/me").header("cookie", browser.cookie_header()).send().await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json(), json!({"user": "alice", "auth": null, "scheme": "session", "is_staff": false}));
}

#[tokio::test]
async fn unsafe_methods_need_djangos_csrf_token() {
    let host = site(CONFIG).serve();
    let (browser, _) = login(&host).await;
    let resp = post_me(&host, &browser, None).await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json(), json!({"detail": "CSRF Failed: CSRF token missing."}));
    let resp = post_me(&host, &browser, Some(&"a".repeat(32))).await;
    assert_eq!(
        resp.json(),
        json!({"detail": "CSRF Failed: CSRF token from the 'X-Csrftoken' HTTP header incorrect."})
    );
    let resp = post_me(&host, &browser, Some("short")).await;
    assert_eq!(
        resp.json(),
        json!({"detail": "CSRF Failed: CSRF token from the 'X-Csrftoken' HTTP header has incorrect length."})
    );
    let resp = post_me(&host, &browser, Some(&"-".repeat(64))).await;
    assert_eq!(
        resp.json(),
        json!({"detail": "CSRF Failed: CSRF token from the 'X-Csrftoken' HTTP header has invalid characters."})
    );
    // The masked token from login, and the bare secret, both pass.
    assert_eq!(post_me(&host, &browser, Some(&browser.token)).await.status, 200);
    assert_eq!(post_me(&host, &browser, Some(&browser.csrf)).await.status, 200);
    // The form field works as well as the header.
    let resp = host
        .request("POST", "/me")
        .header("cookie", browser.cookie_header())
        .form(&format!("csrfmiddlewaretoken={}", browser.token))
        .send()
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let wrong_form = host
        .request("POST", "/me")
        .header("cookie", browser.cookie_header())
        .form(&format!("csrfmiddlewaretoken={}", "b".repeat(64)))
        .send()
        .await;
    assert_eq!(wrong_form.json(), json!({"detail": "CSRF Failed: CSRF token from POST incorrect."}));
}

#[tokio::test]
async fn csrf_cookie_and_origin_are_checked() {
    let host = site(CONFIG).serve();
    let (browser, _) = login(&host).await;
    let session_only = format!("sessionid={}", browser.session.as_deref().unwrap());
    let resp = host
        .request("POST", "/me")
        .header("cookie", &session_only)
        .header("x-csrftoken", &browser.token)
        .send()
        .await;
    assert_eq!(resp.json(), json!({"detail": "CSRF Failed: CSRF cookie not set."}));
    let bad_cookie = format!("{session_only}; csrftoken=tooshort");
    let resp = host
        .request("POST", "/me")
        .header("cookie", &bad_cookie)
        .header("x-csrftoken", &browser.token)
        .send()
        .await;
    assert_eq!(resp.json(), json!({"detail": "CSRF Failed: CSRF cookie has incorrect length."}));
    let evil = host
        .request("POST", "/me")
        .header("cookie", browser.cookie_header())
        .header("x-csrftoken", &browser.token)
        .header("origin", "https://evil.example")
        .send()
        .await;
    assert_eq!(evil.status, 403);
    assert_eq!(
        evil.json(),
        json!({"detail": "CSRF Failed: Origin checking failed - https://evil.example does not match any trusted origins."})
    );
    for origin in ["https://app.example", "http://authhost.test"] {
        let ok = host
            .request("POST", "/me")
            .header("cookie", browser.cookie_header())
            .header("x-csrftoken", &browser.token)
            .header("origin", origin)
            .send()
            .await;
        assert_eq!(ok.status, 200, "{origin}: {}", ok.body);
    }
}

#[tokio::test]
async fn the_pre_login_csrf_secret_no_longer_works() {
    let host = site(CONFIG).serve();
    let before = get_csrf(&host).await;
    let (after, _) = login(&host).await;
    let stale =
        Browser { csrf: before.csrf.clone(), session: after.session.clone(), token: before.token.clone() };
    let resp = post_me(&host, &stale, Some(&before.token)).await;
    assert_eq!(
        resp.json(),
        json!({"detail": "CSRF Failed: CSRF token from the 'X-Csrftoken' HTTP header incorrect."})
    );
}

#[tokio::test]
async fn login_itself_is_csrf_protected_and_checks_credentials() {
    let host = site(CONFIG).serve();
    let resp = host.request("POST", "/login").form("username=alice&password=alice-pw").send().await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json(), json!({"detail": "CSRF Failed: CSRF cookie not set."}));
    let browser = get_csrf(&host).await;
    let resp = host
        .request("POST", "/login")
        .header("cookie", browser.cookie_header())
        .header("x-csrftoken", &browser.token)
        .json(&json!({"username": "alice", "password": "wrong"}))
        .send()
        .await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json(), json!({"non_field_errors": ["Unable to log in with provided credentials."]}));
    assert!(resp.cookie("sessionid").is_none());
}

#[tokio::test]
async fn a_session_first_chain_refuses_with_403_and_anonymous_requests_skip_csrf() {
    let host = site(CONFIG).serve();
    let resp = host.get("/me").send().await;
    assert_eq!(resp.status, 403, "the session scheme has no challenge");
    assert_eq!(resp.header("www-authenticate"), None);
    assert_eq!(resp.json(), json!({"detail": "Authentication credentials were not provided."}));
    // A POST with no session is not CSRF-checked; Basic authenticates it.
    let resp = host.request("POST", "/me").header("authorization", "Basic YWxpY2U6YWxpY2UtcHc=").send().await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["scheme"], json!("basic"));
}

#[tokio::test]
async fn logout_ends_the_session() {
    let host = site(CONFIG).serve();
    let (browser, _) = login(&host).await;
    let refused = host.request("POST", "/logout").header("cookie", browser.cookie_header()).send().await;
    assert_eq!(refused.status, 403, "logout is CSRF-checked");
    let resp = host
        .request("POST", "/logout")
        .header("cookie", browser.cookie_header())
        .header("x-csrftoken", &browser.token)
        .send()
        .await;
    assert_eq!(resp.status, 204);
    let (_, value, attributes) = resp.cookies().into_iter().find(|(n, _, _)| n == "sessionid").unwrap();
    assert_eq!(value, "\"\"");
    assert!(attributes.contains("Max-Age=0"), "{attributes}");
    let me = host.get("/me").header("cookie", browser.cookie_header()).send().await;
    assert_eq!(me.status, 403, "the old cookie is anonymous now");
}

#[tokio::test]
async fn sessions_expire_and_a_new_password_ends_them() {
    let site = site(&CONFIG.replace("[session]\n", "[session]\nttl = 1\n"));
    let host = site.serve();
    let (browser, _) = login(&host).await;
    assert_eq!(host.get("/me").header("cookie", browser.cookie_header()).send().await.status, 200);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(host.get("/me").header("cookie", browser.cookie_header()).send().await.status, 403, "expired");

    let site = self::site(CONFIG);
    let host = site.serve();
    let (browser, _) = login(&host).await;
    let out = site.authhost(&["user", "passwd", "alice", "--password-stdin"], "new-pw\n");
    assert!(out.status.success());
    assert_eq!(host.get("/me").header("cookie", browser.cookie_header()).send().await.status, 403);
}

#[tokio::test]
async fn secure_sessions_get_secure_cookies_and_an_https_origin() {
    let host = site(&CONFIG.replace("[session]\n", "[session]\nsecure = true\n")).serve();
    let (browser, resp) = login(&host).await;
    assert!(resp.cookies().iter().all(|(_, _, attributes)| attributes.contains("Secure")));
    let http = host
        .request("POST", "/me")
        .header("cookie", browser.cookie_header())
        .header("x-csrftoken", &browser.token)
        .header("origin", "http://authhost.test")
        .send()
        .await;
    assert_eq!(http.status, 403, "the host's own origin is https now");
}

#[tokio::test]
async fn the_store_keeps_no_session_key() {
    let site = site(CONFIG);
    let host = site.serve();
    let (browser, _) = login(&host).await;
    drop(host);
    let bytes = site.store_bytes();
    let key = browser.session.unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains(&key), "the session key is in the store");
}
