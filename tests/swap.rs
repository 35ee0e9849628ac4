//! Plugin files swapped under a running host: what authors do (`cp` a rebuilt library over
//! the file the host loaded) never crashes it; SIGHUP picks the new code up while requests
//! in flight finish on the old; a truncated file or a FIFO named as a plugin is refused by
//! `check` in one line and by a reload, which keeps the running chain.
//! See: issue 9 (items 4 and the must-show list).

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::support::{plugin_path, Site, TestHost};

/// `mine` is whatever library `libmine.so` in the site holds; `slow` (the probe) holds a
/// request for 600 ms when it carries `X-Slow`, before `mine` answers it.
const CONFIG: &str = r#"
[[scheme]]
name = "slow"
plugin = "probe"
header = "x-slow"
delay_ms = 600

[[scheme]]
name = "mine"
path = "libmine.so"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["slow", "mine"]
permission = "allow_any"
"#;

/// Copies a library over `to` the way `cp` does: the same file (inode), rewritten.
fn cp(from: &Path, to: &Path) {
    std::fs::copy(from, to).expect("cp");
}

async fn who(host: &TestHost) -> (u16, serde_json::Value) {
    let resp = host.get("/me").header("x-username", "alice").send().await;
    let body = resp.json();
    (resp.status, body)
}

const ANONYMOUS: &str = "AnonymousUser";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_copied_over_the_loaded_one_runs_from_the_next_reload_on() {
    let site = Site::new(CONFIG);
    site.add_user("alice", "alice-pw", &[]);
    let mine = site.path().join("libmine.so");
    // The first build of "mine": the probe, which is never attempted here.
    cp(&plugin_path("probe"), &mine);
    let host = site.serve();
    assert_eq!(who(&host).await.1["user"], json!(ANONYMOUS));

    // A request in flight (held by `slow`) while the file changes and the host reloads.
    let in_flight = {
        let req = host.get("/me").header("x-username", "alice").header("x-slow", "1");
        tokio::spawn(req.send())
    };
    // The "rebuild": X-USERNAME's library, copied over the file the host has loaded.
    cp(&plugin_path("x_username"), &mine);
    let (status, body) = who(&host).await;
    assert_eq!((status, &body["user"]), (200, &json!(ANONYMOUS)), "the old code answers until SIGHUP");
    host.signal("HUP");
    host.wait_for_log(|l| l.contains("config reloaded"));
    let resp = in_flight.await.expect("in-flight request");
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["user"], json!(ANONYMOUS), "it finished on the code it started with");
    let (status, body) = who(&host).await;
    assert_eq!((status, &body["user"], &body["scheme"]), (200, &json!("alice"), &json!("mine")), "{body}");
    let logs = host.settled_logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

/// `authhost check` on the site: it fails with exactly one line on stderr, returned.
fn check_refuses(site: &Site) -> String {
    let out = site.authhost(&["check"], "");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert!(!out.status.success(), "check accepted it: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

const BROKEN: &str = r#"
[[scheme]]
name = "mine"
path = "libbroken.so"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["mine"]
permission = "allow_any"
"#;

#[tokio::test]
async fn a_truncated_library_or_a_fifo_is_refused_by_check_and_by_a_reload() {
    let site = Site::new(CONFIG);
    site.add_user("alice", "alice-pw", &[]);
    cp(&plugin_path("x_username"), &site.path().join("libmine.so"));
    let host = site.serve();
    assert_eq!(who(&host).await.1["user"], json!("alice"));
    let good = std::fs::read_to_string(site.config_path()).unwrap();

    // The start of a library: what a reader sees while `cp` is still writing it (cut
    // inside the segments the loader maps, so touching them raises SIGBUS).
    let whole = std::fs::read(plugin_path("x_username")).unwrap();
    let broken = site.path().join("libbroken.so");
    std::fs::write(&broken, &whole[..whole.len().min(200_000)]).unwrap();
    site.write_config(BROKEN);
    let err = check_refuses(&site);
    assert!(err.contains("scheme[0] (\"mine\")") && err.contains("libbroken.so"), "{err}");
    assert!(err.contains("crashed a trial process with signal 7 (SIGBUS)"), "{err}");
    host.signal("HUP");
    let line = host.wait_for_log(|l| l.contains("reload rejected"));
    assert!(line.contains("libbroken.so"), "{line}");
    assert_eq!(
        who(&host).await,
        (200, json!({"user": "alice", "auth": null, "scheme": "mine", "is_staff": false}))
    );

    // A FIFO where the library should be: refused without being opened for reading (which
    // would block until someone writes to it).
    std::fs::remove_file(&broken).unwrap();
    let status = Command::new("mkfifo").arg(&broken).status().expect("mkfifo");
    assert!(status.success());
    let err = check_refuses(&site);
    assert!(err.contains("not a regular file (it is a FIFO)"), "{err}");
    host.signal("HUP");
    host.wait_for_log(|l| l.contains("reload rejected") && l.contains("FIFO"));
    assert_eq!(who(&host).await.0, 200);
    assert_eq!(who(&host).await.1["user"], json!("alice"));

    // Back to a good config: the reload is taken.
    std::fs::write(site.config_path(), good).unwrap();
    host.signal("HUP");
    host.wait_for_log(|l| l.contains("config reloaded"));
}
