//! Real proxies asking authhost's forward_auth route: Debian's nginx (`auth_request`) and
//! caddy (`forward_auth`), each in front of the echo upstream, with the configs
//! docs/gateway.md shows. The same cases through both.
//! See: issue 10 (item 3, item 5 and the must-show for real nginx and Caddy).

use std::net::SocketAddr;

use serde_json::json;

use crate::gateway::{gateway, Gateway, ALICE_KEY, ROOT_KEY};
use crate::support::peers::{self, Peer};
use crate::support::Req;

/// The http block docs/gateway.md shows for nginx `auth_request`.
fn nginx_block(authhost: SocketAddr, echo: SocketAddr) -> String {
    format!(
        r#"
    upstream app {{
        server {echo};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{{port}};

        location = /_authhost {{
            internal;
            proxy_pass http://{authhost}/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}

        location / {{
            auth_request /_authhost;
            auth_request_set $authenticated_user $upstream_http_x_authenticated_user;
            auth_request_set $authenticated_user_id $upstream_http_x_authenticated_user_id;
            auth_request_set $authenticated_email $upstream_http_x_authenticated_email;
            auth_request_set $authenticated_scheme $upstream_http_x_authenticated_scheme;
            auth_request_set $authenticated_staff $upstream_http_x_authenticated_staff;
            proxy_set_header X-Authenticated-User $authenticated_user;
            proxy_set_header X-Authenticated-User-Id $authenticated_user_id;
            proxy_set_header X-Authenticated-Email $authenticated_email;
            proxy_set_header X-Authenticated-Scheme $authenticated_scheme;
            proxy_set_header X-Authenticated-Staff $authenticated_staff;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://app;
        }}
    }}
"#
    )
}

/// The Caddyfile docs/gateway.md shows for Caddy `forward_auth`.
fn caddyfile(authhost: SocketAddr, echo: SocketAddr) -> String {
    format!(
        r#"{{
    admin off
    auto_https off
}}

http://:{{port}} {{
    bind 127.0.0.1
    # In this order (Caddy's own would run request_header after the auth check): a
    # client's own X-Authenticated-* headers go, then authhost decides, and the identity
    # headers are copied only when authhost sent them (it sends all five, or none for an
    # anonymous request). forward_auth's copy_headers is not used: before Caddy 2.10 it
    # sets a header authhost did not send to its placeholder's text, and from 2.10 on it
    # leaves the client's own value in place.
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
                request_header X-Authenticated-User-Id {{rp.header.X-Authenticated-User-Id}}
                request_header X-Authenticated-Email {{rp.header.X-Authenticated-Email}}
                request_header X-Authenticated-Scheme {{rp.header.X-Authenticated-Scheme}}
                request_header X-Authenticated-Staff {{rp.header.X-Authenticated-Staff}}
            }}
            # Allowed, anonymous: nothing to copy; the request goes on.
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

/// The must-show cases, through `front`.
async fn the_five_cases(front: SocketAddr, g: &Gateway, proxy: &str) {
    let get = |path: &str| Req::to(front, "GET", path);
    let token = format!("Token {ALICE_KEY}");
    // A valid token reaches the upstream as alice; a forged identity never does.
    let resp =
        get("/app/x?y=1").header("authorization", &token).header("x-authenticated-user", "root").send().await;
    assert_eq!(resp.status, 200, "{proxy}: {}", resp.body);
    let seen = resp.json()["headers"].clone();
    assert_eq!(seen["x-authenticated-user"], json!(["alice"]), "{proxy}: {seen}");
    assert_eq!(seen["x-authenticated-email"], json!(["alice@example.com"]), "{proxy}: {seen}");
    assert_eq!(seen["x-authenticated-staff"], json!(["false"]), "{proxy}: {seen}");
    let resp = get("/public/")
        .header("x-authenticated-user", "root")
        .header("x-authenticated-staff", "true")
        .send()
        .await;
    assert_eq!(resp.status, 200, "{proxy}: {}", resp.body);
    let seen = resp.json()["headers"].clone();
    assert!(seen.get("x-authenticated-user").is_none(), "{proxy} let a forged identity through: {seen}");
    assert!(seen.get("x-authenticated-staff").is_none(), "{proxy} let a forged identity through: {seen}");
    // No credentials on an is_authenticated route: 401 with the first scheme's challenge.
    let resp = get("/app/x").send().await;
    assert_eq!(resp.status, 401, "{proxy}: {}", resp.body);
    assert_eq!(resp.header("www-authenticate"), Some("Token"), "{proxy}");
    // A staff-only route refuses a non-staff user, and admits a staff one.
    let resp = get("/staff/").header("authorization", &token).send().await;
    assert_eq!(resp.status, 403, "{proxy}: {}", resp.body);
    let resp = get("/staff/").header("authorization", format!("Token {ROOT_KEY}")).send().await;
    assert_eq!(resp.status, 200, "{proxy}: {}", resp.body);
    assert_eq!(resp.json()["headers"]["x-authenticated-staff"], json!(["true"]), "{proxy}");
    // A path matching no route, or not in normal form: 403, whatever the proxy makes of it.
    let hits = g.echo.hits();
    for path in ["/nowhere", "/apiary", "/app/%2e%2e/staff/", "/app/..%2fstaff/"] {
        let resp = get(path).header("authorization", &token).send().await;
        assert_eq!(resp.status, 403, "{proxy}: {path} got {} {}", resp.status, resp.body);
    }
    assert_eq!(g.echo.hits(), hits, "{proxy}: a refused request reached the upstream");
}

/// A CORS preflight through `front`: where the route lets preflights pass (`/spa`), the
/// upstream answers it; elsewhere it needs credentials like any request.
async fn a_cors_preflight(front: SocketAddr, proxy: &str) {
    let preflight = |path: &str| {
        Req::to(front, "OPTIONS", path)
            .header("origin", "https://spa.example")
            .header("access-control-request-method", "POST")
    };
    let resp = preflight("/spa/x").send().await;
    assert_eq!(resp.status, 200, "{proxy}: {}", resp.body);
    assert_eq!(resp.json()["method"], "OPTIONS", "{proxy}: not the upstream's answer");
    let resp = preflight("/app/x").send().await;
    assert_eq!(resp.status, 401, "{proxy}: {}", resp.body);
}

#[tokio::test]
async fn nginx_auth_request_in_front_of_an_upstream() {
    let g = gateway().await;
    let Some(nginx) = Peer::nginx(&nginx_block(g.host.addr, g.echo.addr)) else {
        return peers::skip("nginx_auth_request_in_front_of_an_upstream", "nginx");
    };
    the_five_cases(nginx.addr, &g, "nginx").await;
    a_cors_preflight(nginx.addr, "nginx").await;
}

#[tokio::test]
async fn caddy_forward_auth_in_front_of_an_upstream() {
    let g = gateway().await;
    let Some(caddy) = Peer::caddy(&caddyfile(g.host.addr, g.echo.addr)) else {
        return peers::skip("caddy_forward_auth_in_front_of_an_upstream", "caddy");
    };
    the_five_cases(caddy.addr, &g, "caddy").await;
    a_cors_preflight(caddy.addr, "caddy").await;
    // Caddy passes authhost's refusal on whole: DRF's body too.
    let resp = Req::to(caddy.addr, "GET", "/app/x").send().await;
    assert_eq!(resp.json(), json!({"detail": "Authentication credentials were not provided."}));
}
