//! Route matching over real sockets: a prefix route matches whole path segments, and a
//! path that is not in normal form (dot segments, `//`, encoded separators) is refused
//! with 400 instead of reaching a route it does not name.
//! See: issue 10 (item 0 and the first must-show).

use serde_json::json;

use crate::support::{Site, TestHost};

const CONFIG: &str = r#"
[[scheme]]
name = "x-username"
plugin = "x-username"

[[route]]
path = "/api"
prefix = true
handler = "whoami"
schemes = ["x-username"]
permission = "allow_any"

[[route]]
path = "/admin"
handler = "whoami"
schemes = ["x-username"]
permission = "is_admin"
"#;

/// Sends `GET <target>` as raw bytes (no client normalises it) and returns the status
/// line's code and the body.
fn get_raw(host: &TestHost, target: &str) -> (u16, String) {
    let text = host.raw(
        format!(
            "GET {target} HTTP/1.1\r\nHost: authhost.test\r\nX-USERNAME: alice\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[tokio::test]
async fn prefixes_match_whole_segments_and_abnormal_paths_never_route() {
    let site = Site::new(CONFIG);
    site.add_user("alice", "alice-pw", &[]);
    let host = site.serve();
    for path in ["/api", "/api/", "/api/x", "/api/x/y.json"] {
        let (status, body) = get_raw(&host, path);
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, body) = get_raw(&host, "/apiary");
    assert_eq!((status, body.as_str()), (404, r#"{"detail":"Not found."}"#), "not the /api prefix");
    // alice is no staff: /admin refuses her, so none of these may reach it (or /api).
    assert_eq!(get_raw(&host, "/admin").0, 403);
    for (path, detail) in [
        ("/api/../admin", "Malformed request path: dot segment."),
        ("/api/%2e%2e/admin", "Malformed request path: dot segment."),
        ("/api/./x", "Malformed request path: dot segment."),
        ("//admin", "Malformed request path: empty segment."),
        ("/api//x", "Malformed request path: empty segment."),
        ("/api%2Fx", "Malformed request path: encoded separator."),
    ] {
        let (status, body) = get_raw(&host, path);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            json!({ "detail": detail }),
            "{path}"
        );
    }
}
