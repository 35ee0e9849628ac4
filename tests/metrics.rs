//! Metrics and the access log: the counters move as the requests say (read back from the
//! metrics route), promtool accepts the exposition, and every request gets one access-log
//! line that names its route, scheme, outcome and status and never a secret.
//! See: issue 10 (item 4 and its must-show).

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::gateway::{gateway, ALICE_KEY};
use crate::support::peers;
use crate::support::TestHost;

/// The value of the sample `name{labels}` (labels in any order, others allowed), or 0.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).expect("a sample value"))
        .sum()
}

/// The metrics in the Prometheus text format (what curl and promtool get).
async fn scrape(host: &TestHost) -> String {
    let resp = host.get("/metrics").send().await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    resp.body
}

/// Run `promtool check metrics` on `text`, if promtool is installed.
fn promtool_accepts(text: &str, test: &str) {
    let Some(promtool) = peers::find("promtool") else {
        return peers::skip(test, "promtool");
    };
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool refused the metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_counters_move_as_the_requests_say_and_promtool_accepts_them() {
    let g = gateway().await;
    let host = &g.host;
    let token = format!("Token {ALICE_KEY}");
    let before = scrape(host).await;
    assert_eq!(sample(&before, "authhost_scheme_outcomes_total", &[("scheme", "token")]), 0.0);
    for _ in 0..3 {
        assert_eq!(host.get("/app/x").header("authorization", &token).send().await.status, 200);
    }
    assert_eq!(host.get("/app/x").send().await.status, 401);
    assert_eq!(host.get("/app/x").header("authorization", "Token wrong").send().await.status, 401);
    assert_eq!(host.get("/down").send().await.status, 502);
    assert_eq!(host.get("/slow/hang").send().await.status, 504);
    assert_eq!(host.get("/nowhere").send().await.status, 404);
    let text = scrape(host).await;
    let outcome = |o| sample(&text, "authhost_scheme_outcomes_total", &[("scheme", "token"), ("outcome", o)]);
    assert_eq!(outcome("authenticated"), 3.0, "{text}");
    assert_eq!(outcome("not_attempted"), 1.0, "{text}");
    assert_eq!(outcome("failed"), 1.0, "{text}");
    assert_eq!(outcome("fault"), 0.0, "{text}");
    assert_eq!(
        sample(&text, "authhost_scheme_duration_seconds_count", &[("scheme", "token")]),
        5.0,
        "{text}"
    );
    let requests =
        |route, status| sample(&text, "authhost_requests_total", &[("route", route), ("status", status)]);
    assert_eq!(requests("/app*", "200"), 3.0, "{text}");
    assert_eq!(requests("/app*", "401"), 2.0, "{text}");
    assert_eq!(requests("/down", "502"), 1.0, "{text}");
    assert_eq!(requests("/slow*", "504"), 1.0, "{text}");
    assert_eq!(requests("-", "404"), 1.0, "{text}");
    assert_eq!(
        sample(&text, "authhost_upstream_duration_seconds_count", &[("route", "/app*")]),
        3.0,
        "{text}"
    );
    let errors =
        |route, e| sample(&text, "authhost_upstream_errors_total", &[("route", route), ("error", e)]);
    assert_eq!(errors("/down", "refused"), 1.0, "{text}");
    assert_eq!(errors("/slow*", "timeout"), 1.0, "{text}");
    for pool in ["store_read", "store_write", "password"] {
        assert!(text.contains(&format!("authhost_pool_queue_depth{{pool=\"{pool}\"}} 0")), "{text}");
    }

    promtool_accepts(&text, "the_counters_move_as_the_requests_say_and_promtool_accepts_them");
    // Prometheus itself asks for OpenMetrics, and gets it: the same samples, `# EOF` last.
    let om = host
        .get("/metrics")
        .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
        .send()
        .await;
    assert!(om.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert_eq!(sample(&om.body, "authhost_requests_total", &[("route", "/app*"), ("status", "200")]), 3.0);
}

#[tokio::test]
async fn one_access_log_line_per_request_naming_route_scheme_outcome_and_status_never_a_secret() {
    let g = gateway().await;
    let host = &g.host;
    let token = format!("Token {ALICE_KEY}");
    host.get("/app/x?secret=hunter2").header("authorization", &token).send().await;
    host.get("/staff/").header("authorization", &token).send().await;
    host.get("/health").send().await;
    host.get("/metrics").send().await;
    host.get("/down").send().await;
    let line = host.wait_for_log(|l| l.contains("authhost::access") && l.contains("path=\"/app/x\""));
    for part in [
        "route=\"/app*\"",
        "scheme=\"token\"",
        "outcome=\"authenticated\"",
        "status=200",
        "upstream_status=200",
        "upstream_ms=",
        "duration_ms=",
    ] {
        assert!(line.contains(part), "{part} missing: {line}");
    }
    let line = host.wait_for_log(|l| l.contains("authhost::access") && l.contains("path=\"/staff/\""));
    assert!(line.contains("outcome=\"denied\"") && line.contains("status=403"), "{line}");
    let line = host.wait_for_log(|l| l.contains("authhost::access") && l.contains("path=\"/down\""));
    assert!(line.contains("status=502") && line.contains("outcome=\"anonymous\""), "{line}");
    let logs = host.settled_logs();
    assert_eq!(
        logs.lines().filter(|l| l.contains("authhost::access") && !l.contains("log-barrier")).count(),
        3,
        "health and metrics are not logged by default:\n{logs}"
    );
    assert!(!logs.contains(ALICE_KEY) && !logs.contains("hunter2"), "a secret reached the log:\n{logs}");
}

#[tokio::test]
async fn the_access_log_can_be_json_lines() {
    let g = gateway().await;
    let host = g.serve_another(&["--log-format", "json"]);
    host.get("/public/").send().await;
    let line = host.wait_for_log(|l| {
        l.contains("\"target\":\"authhost::access\"") && l.contains("\"path\":\"/public/\"")
    });
    let entry: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(entry["target"], "authhost::access", "{entry}");
    assert_eq!(entry["fields"]["route"], "/public*", "{entry}");
    assert_eq!(entry["fields"]["status"], 200, "{entry}");
    assert_eq!(entry["fields"]["outcome"], "anonymous", "{entry}");
}

#[tokio::test]
async fn a_metrics_route_keeps_its_chain_and_permission() {
    let site = crate::support::Site::new(
        r#"
[[scheme]]
name = "basic"
plugin = "basic"
realm = "metrics"

[[route]]
path = "/metrics"
handler = "metrics"
schemes = ["basic"]
permission = "is_admin"
"#,
    );
    site.add_user("alice", "alice-pw", &[]);
    site.add_user("prom", "prom-pw", &["--staff"]);
    let host = site.serve();
    // base64 of alice:alice-pw and prom:prom-pw.
    let (alice, prom) = ("Basic YWxpY2U6YWxpY2UtcHc=", "Basic cHJvbTpwcm9tLXB3");
    let resp = host.get("/metrics").send().await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.header("www-authenticate"), Some("Basic realm=\"metrics\""));
    let resp = host.get("/metrics").header("authorization", alice).send().await;
    assert_eq!(resp.status, 403, "{}", resp.body);
    let resp = host.get("/metrics").header("authorization", prom).send().await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(resp.body.contains("authhost_requests_total"), "{}", resp.body);
}
