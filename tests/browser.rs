//! The sign-in pages in a real headless Chromium over WebDriver: behind real nginx with
//! `auth_request`, and through authhost's own proxy. A person's path: open a protected
//! page, land on the sign-in page, mistype, sign in, land back where they were (the
//! upstream saw `X-Authenticated-User: alice`), reload, sign out, and be sent to sign in
//! again. Screenshots land in target/browser-screenshots/.
//! See: issue 13 (the must-shows).

use std::net::SocketAddr;

use crate::support::browser::Browser;
use crate::support::peers::{self, Peer};
use crate::support::upstream;
use crate::support::{Req, Site, TestHost};
use serde_json::json;

const INVALID_LOGIN: &str =
    "Please enter a correct username and password. Note that both fields may be case-sensitive.";

/// authhost's routes for both tests: the pages, a forward_auth route, and `/app` (proxied
/// to `echo` by authhost itself, or decided for nginx by forward-auth).
fn config(echo: SocketAddr) -> String {
    format!(
        r#"
[[scheme]]
name = "token"
plugin = "token"

[[scheme]]
name = "session"
plugin = "session"

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
path = "/auth"
handler = "forward_auth"
schemes = []
permission = "allow_any"

[[route]]
path = "/app"
prefix = true
upstream = "http://{echo}"
schemes = ["token", "session"]
permission = "is_authenticated"
login_url = "/login/"
"#
    )
}

/// The nginx docs/gateway.md shows for browser sign-in: auth_request for the app, the
/// sign-in pages passed to authhost with the browser's Host, and `error_page 401` sending
/// a browser to sign in with `next` set to where it was going.
fn nginx_block(authhost: SocketAddr, echo: SocketAddr) -> String {
    format!(
        r#"
    server {{
        listen 127.0.0.1:{{port}};

        location = /_authhost {{
            internal;
            proxy_pass http://{authhost}/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
        }}

        location /login/ {{
            proxy_pass http://{authhost};
            proxy_set_header Host $http_host;
        }}

        location /logout/ {{
            proxy_pass http://{authhost};
            proxy_set_header Host $http_host;
        }}

        location / {{
            auth_request /_authhost;
            auth_request_set $authenticated_user $upstream_http_x_authenticated_user;
            auth_request_set $authhost_login $upstream_http_x_authhost_login;
            proxy_set_header X-Authenticated-User $authenticated_user;
            error_page 401 = @sign_in;
            proxy_pass http://{echo};
        }}

        # A browser goes to sign in (authhost says where, next included); an API client
        # gets authhost's own answer: DRF's 401, its body and its challenge.
        location @sign_in {{
            if ($authhost_login) {{
                return 302 $authhost_login;
            }}
            rewrite ^ /auth break;
            proxy_pass http://{authhost};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
        }}
    }}
"#
    )
}

/// docs/gateway.md's Caddyfile for forward_auth, with the sign-in pages passed to authhost
/// (Caddy passes a denial, redirect included, on to the browser as authhost sent it).
fn caddyfile(authhost: SocketAddr, echo: SocketAddr) -> String {
    format!(
        r#"{{
    admin off
    auto_https off
}}

http://:{{port}} {{
    bind 127.0.0.1
    route /login/* {{
        reverse_proxy {authhost}
    }}
    route /logout/* {{
        reverse_proxy {authhost}
    }}
    route {{
        request_header -X-Authenticated-*
        reverse_proxy {authhost} {{
            method GET
            rewrite /auth
            header_up X-Forwarded-Method {{method}}
            header_up X-Forwarded-Uri {{uri}}
            @authenticated {{
                status 2xx
                header X-Authenticated-User *
            }}
            handle_response @authenticated {{
                request_header X-Authenticated-User {{rp.header.X-Authenticated-User}}
            }}
            @anonymous status 2xx
            handle_response @anonymous {{
                request_header -X-Authenticated-User
            }}
        }}
        reverse_proxy {echo}
    }}
}}
"#
    )
}

async fn site() -> (Site, TestHost, upstream::Echo) {
    let echo = upstream::echo().await;
    let site = Site::new(&config(echo.addr));
    site.add_user("alice", "alice-pw", &[]);
    let host = site.serve();
    (site, host, echo)
}

/// API clients on the same routes keep DRF's 401 with the challenge (the chain's first
/// scheme is Token): one asking for JSON, one carrying a wrong token.
async fn api_clients_keep_drfs_answers(addr: SocketAddr) {
    let get = |accept: &'static str, authorization: Option<&'static str>| {
        let mut req = Req::to(addr, "GET", "/app/reports").header("accept", accept);
        if let Some(value) = authorization {
            req = req.header("authorization", value);
        }
        req.send()
    };
    for (resp, detail) in [
        (get("application/json", None).await, "Authentication credentials were not provided."),
        (get("text/html", Some("Token 0123456789abcdef0123456789abcdef01234567")).await, "Invalid token."),
    ] {
        assert_eq!((resp.status, resp.header("www-authenticate")), (401, Some("Token")), "{}", resp.body);
        assert_eq!(resp.json(), json!({ "detail": detail }));
    }
}

/// The person's path through the site at `origin` (`http://127.0.0.1:PORT`).
async fn sign_in_and_out(browser: &Browser, origin: &str, shots: &str) {
    let client = &browser.client;
    // A protected page sends the browser to sign in, remembering where it was going.
    client.goto(&format!("{origin}/app/reports")).await.expect("open the app");
    let at = browser.location().await;
    assert!(at.starts_with("/login/?next="), "{at}");
    assert!(at.contains("%2Fapp%2Freports") || at.contains("/app/reports"), "{at}");
    browser.screenshot(&format!("{shots}-1-sign-in")).await;
    // A wrong password: Django's message, on the same page.
    browser.fill("#id_username", "alice").await;
    browser.fill("#id_password", "not-her-password").await;
    browser.click_and_wait("#sign-in").await;
    let text = browser.text().await;
    assert!(text.contains(INVALID_LOGIN), "{text}");
    browser.screenshot(&format!("{shots}-2-wrong-password")).await;
    // The right one: back where the browser was going; the upstream saw alice.
    browser.fill("#id_password", "alice-pw").await;
    browser.click_and_wait("#sign-in").await;
    assert_eq!(browser.location().await, "/app/reports");
    let text = browser.text().await;
    assert!(text.contains("\"x-authenticated-user\":[\"alice\"]"), "{text}");
    browser.screenshot(&format!("{shots}-3-signed-in")).await;
    // A reload keeps the session.
    client.refresh().await.expect("reload");
    assert_eq!(browser.location().await, "/app/reports");
    assert!(browser.text().await.contains("\"x-authenticated-user\":[\"alice\"]"));
    // The logout page asks, then ends the session and shows the sign-in page.
    client.goto(&format!("{origin}/logout/")).await.expect("open the logout page");
    assert!(browser.text().await.contains("You are signed in as alice"), "{}", browser.text().await);
    browser.click_and_wait("#sign-out").await;
    assert!(browser.location().await.starts_with("/login/"), "{}", browser.location().await);
    // The next navigation to the app lands on the sign-in page again.
    client.goto(&format!("{origin}/app/reports")).await.expect("open the app again");
    assert!(browser.location().await.starts_with("/login/?next="), "{}", browser.location().await);
    // A next elsewhere is not followed: signing in lands on this origin's `/`.
    client.goto(&format!("{origin}/login/?next=https://evil.example/")).await.expect("open the sign-in page");
    browser.fill("#id_username", "alice").await;
    browser.fill("#id_password", "alice-pw").await;
    browser.click_and_wait("#sign-in").await;
    let url = client.current_url().await.expect("current url");
    assert_eq!((url.origin().ascii_serialization(), url.path()), (origin.to_owned(), "/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_through_authhosts_own_proxy() {
    let Some(browser) = Browser::start().await else {
        return peers::skip("a_browser_signs_in_through_authhosts_own_proxy", "chromium or chromedriver");
    };
    let (_site, host, echo) = site().await;
    sign_in_and_out(&browser, &format!("http://{}", host.addr), "proxy").await;
    api_clients_keep_drfs_answers(host.addr).await;
    assert!(echo.hits() >= 2, "the upstream served the signed-in pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_behind_nginx_auth_request() {
    let Some(browser) = Browser::start().await else {
        return peers::skip("a_browser_signs_in_behind_nginx_auth_request", "chromium or chromedriver");
    };
    let (_site, host, echo) = site().await;
    let Some(nginx) = Peer::nginx(&nginx_block(host.addr, echo.addr)) else {
        return peers::skip("a_browser_signs_in_behind_nginx_auth_request", "nginx");
    };
    sign_in_and_out(&browser, &format!("http://{}", nginx.addr), "nginx").await;
    api_clients_keep_drfs_answers(nginx.addr).await;
    assert!(echo.hits() >= 2, "the upstream served the signed-in pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_behind_caddy_forward_auth() {
    let Some(browser) = Browser::start().await else {
        return peers::skip("a_browser_signs_in_behind_caddy_forward_auth", "chromium or chromedriver");
    };
    let (_site, host, echo) = site().await;
    let Some(caddy) = Peer::caddy(&caddyfile(host.addr, echo.addr)) else {
        return peers::skip("a_browser_signs_in_behind_caddy_forward_auth", "caddy");
    };
    sign_in_and_out(&browser, &format!("http://{}", caddy.addr), "caddy").await;
    api_clients_keep_drfs_answers(caddy.addr).await;
}
