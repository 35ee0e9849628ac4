//! The OpenAPI document (`handler = "openapi"`): what it says about each chain and handler,
//! and schemathesis (PyPI) run against the running host from it, with every phase
//! (coverage, fuzzing, stateful), positive and negative data: no 5xx, every response as
//! documented.
//! See: issue 15 (item 4).

use std::process::Command;

use serde_json::{json, Value};

use crate::support::Site;

const CONFIG: &str = r#"
[throttle.rates]
burst = "100000/min"

[[scheme]]
name = "session"
plugin = "session"

[[scheme]]
name = "basic"
plugin = "basic"
cache_ttl = "60s"

[[scheme]]
name = "token"
plugin = "token"
ttl = "1h"

[[scheme]]
name = "bearer"
plugin = "token"
keyword = "Bearer"

[[scheme]]
name = "jwt"
plugin = "jwt"
secret = "0123456789abcdef0123456789abcdef-openapi"

[[route]]
path = "/openapi.json"
handler = "openapi"
schemes = []
permission = "allow_any"

[[route]]
path = "/health"
handler = "health"
schemes = []
permission = "allow_any"

[[route]]
path = "/api/me"
handler = "whoami"
schemes = ["session", "basic", "token", "bearer", "jwt"]
permission = "is_authenticated"
throttle = ["burst"]

[[route]]
path = "/api/public"
handler = "whoami"
schemes = ["token", "basic"]
permission = "allow_any"

[[route]]
path = "/api/staff"
handler = "whoami"
schemes = ["basic", "token"]
permission = "is_admin"

[[route]]
path = "/api-token-auth/"
handler = "obtain_token"
schemes = []
permission = "allow_any"

[[route]]
path = "/api/login/"
handler = "login"
schemes = []
permission = "allow_any"

[[route]]
path = "/api/logout/"
handler = "logout"
schemes = []
permission = "allow_any"

[[route]]
path = "/api/auth/login/"
handler = "login_token"
schemes = ["basic"]
permission = "is_authenticated"
token_scheme = "token"

[[route]]
path = "/api/auth/logout/"
handler = "logout_token"
schemes = ["token"]
permission = "is_authenticated"

[[route]]
path = "/api/auth/logoutall/"
handler = "logout_all"
schemes = ["token"]
permission = "is_authenticated"

[[route]]
path = "/api/jwt/"
handler = "obtain_jwt"
schemes = []
permission = "allow_any"
token_scheme = "jwt"

[[route]]
path = "/api/jwt/refresh/"
handler = "refresh_jwt"
schemes = []
permission = "allow_any"
token_scheme = "jwt"

[[route]]
path = "/api/jwt/verify/"
handler = "verify_jwt"
schemes = []
permission = "allow_any"
token_scheme = "jwt"

[[route]]
path = "/metrics"
handler = "metrics"
schemes = []
permission = "allow_any"

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
"#;

/// The document maps each chain to OpenAPI's security schemes as the issue lists them, and
/// a proxied route is opaque.
#[tokio::test]
async fn the_document_maps_chains_to_security_schemes_and_handlers_to_drf_bodies() {
    let proxy = "\n[[route]]\npath = \"/app\"\nprefix = true\nupstream = \"http://127.0.0.1:9\"\nschemes = [\"token\"]\npermission = \"is_authenticated\"\n";
    let site = Site::new(&format!("{CONFIG}{proxy}"));
    let host = site.serve();
    let resp = host.get("/openapi.json").send().await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let doc: Value = resp.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["basic"], json!({"type": "http", "scheme": "basic"}));
    assert_eq!(
        (schemes["token"]["type"].clone(), schemes["token"]["in"].clone()),
        (json!("apiKey"), json!("header"))
    );
    assert_eq!(schemes["bearer"], json!({"type": "http", "scheme": "bearer"}));
    assert_eq!(schemes["jwt"], json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}));
    assert_eq!(schemes["session"], json!({"type": "apiKey", "in": "cookie", "name": "sessionid"}));
    assert_eq!(schemes["session_csrf"]["name"], "X-CSRFToken");

    // Any one scheme of the chain; anonymous only where the permission lets it through.
    let me = &doc["paths"]["/api/me"]["get"];
    assert_eq!(
        me["security"],
        json!([{"session": [], "session_csrf": []}, {"basic": []}, {"token": []}, {"bearer": []}, {"jwt": []}])
    );
    assert_eq!(doc["paths"]["/api/public"]["get"]["security"], json!([{"token": []}, {"basic": []}, {}]));
    for status in ["200", "401", "403", "429"] {
        assert!(me["responses"][status].is_object(), "GET /api/me documents {status}");
    }
    let obtain = &doc["paths"]["/api-token-auth/"]["post"];
    for media in ["application/json", "application/x-www-form-urlencoded", "multipart/form-data"] {
        assert_eq!(
            obtain["requestBody"]["content"][media]["schema"]["required"],
            json!(["username", "password"])
        );
    }
    assert_eq!(
        doc["paths"]["/api/auth/login/"]["post"]["responses"]["403"]["content"]["application/json"]["schema"],
        json!({"$ref": "#/components/schemas/KnoxLimit"})
    );
    let app = &doc["paths"]["/app"];
    assert_eq!(app["get"]["x-authhost-upstream"], "http://127.0.0.1:9");
    assert!(app["get"]["responses"]["default"].is_object() && app["delete"].is_object());
    assert!(app["description"].as_str().unwrap().contains("prefix"));
}

/// schemathesis against the running host: zero 5xx, zero responses off the document.
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_response_off_the_document() {
    let site = Site::new(CONFIG);
    site.add_user("alice", "alice-pw", &[]);
    let host = site.serve();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/schemathesis");
    if !Command::new(script).arg("--setup").status().is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED schemathesis: scripts/schemathesis could not install it from PyPI");
        return;
    }
    let url = format!("http://{}/openapi.json", host.addr);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(script)
            .arg(&url)
            .args(["-a", "alice:alice-pw", "--max-examples", "20", "--max-time", "60", "--seed", "1"])
            .output()
            .expect("scripts/schemathesis")
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let summary = said.split("SUMMARY").nth(1).unwrap_or(&said);
    eprintln!("schemathesis:{summary}");
    assert!(out.status.success(), "schemathesis failed:\n{said}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(summary.contains("Tested: 22"), "{summary}");
    for phase in ["Coverage", "Fuzzing", "Stateful"] {
        assert!(summary.contains(&format!("✅ {phase}")), "{phase} ran and passed:\n{summary}");
    }
    assert!(!host.logs().contains("panicked"), "{}", host.logs());
}
