//! What a new operator runs into: reloads that cannot apply live, and the start-up line.
//! See: issue 15 (items 2 and 3).

use crate::support::{Site, TestHost};

const CONFIG: &str = r#"
[[scheme]]
name = "x-username"
plugin = "x-username"

[[route]]
path = "/whoami"
handler = "whoami"
schemes = ["x-username"]
permission = "is_authenticated"
"#;

fn host() -> (Site, TestHost) {
    let site = Site::new(CONFIG);
    site.add_user("alice", "alice-pw", &[]);
    let host = site.serve();
    (site, host)
}

/// A reload that changes a key the running host cannot change live (the store's url, the
/// address it listens on) is refused naming the key; the host keeps its store, so a typo
/// in the url never switches it to a new, empty database.
#[tokio::test]
async fn a_reload_that_changes_the_store_url_or_the_address_is_refused_by_key() {
    let (site, host) = host();
    let text = std::fs::read_to_string(site.config_path()).unwrap();
    let typo = site.path().join("authost.db");
    site.write_raw_config(&text.replace(&site.db_path().display().to_string(), &typo.display().to_string()));
    host.signal("HUP");
    let line = host.wait_for_log(|l| l.contains("reload rejected"));
    assert!(line.contains("store.url") && line.contains("restart"), "{line}");
    assert!(!typo.exists(), "no new, empty database was made");
    let resp = host.get("/whoami").header("x-username", "alice").send().await;
    assert_eq!(resp.json()["user"], "alice", "the running store stays");

    site.write_raw_config(&format!("[server]\nlisten = \"127.0.0.1:1\"\n{text}"));
    host.signal("HUP");
    host.wait_for_log(|l| l.contains("reload rejected") && l.contains("server.listen"));
    // A change that can apply live still does.
    site.write_raw_config(&text.replace("is_authenticated", "allow_any"));
    host.signal("HUP");
    host.wait_for_log(|l| l.contains("config reloaded"));
}

/// The listening line names the process and what it loaded: the PID, and each scheme
/// with its plugin file.
#[test]
fn the_listening_line_names_the_pid_and_the_schemes_loaded() {
    let (_site, host) = host();
    let line = host.wait_for_log(|l| l.contains("listening on http://"));
    assert!(line.contains(&format!("pid={}", host.pid())), "{line}");
    assert!(line.contains("x-username") && line.contains("authhost_x_username"), "{line}");
}

/// `serve --pid-file` writes the process id once listening and removes it on exit;
/// `authhost reload --pid-file` sends SIGHUP to that one process, and refuses a file whose
/// process is gone; a second host with the same pid file refuses to start.
#[test]
fn a_pid_file_names_the_one_process_that_reload_signals() {
    let site = Site::new(CONFIG);
    let pid_file = site.path().join("authhost.pid");
    let pid_arg = pid_file.display().to_string();
    let mut host = site.serve_args(&["--pid-file", &pid_arg]);
    let written = std::fs::read_to_string(&pid_file).expect("the pid file");
    assert_eq!(written.trim(), host.pid().to_string());

    let out = site.authhost(&["reload", "--pid-file", &pid_arg], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("pid {}", host.pid())));
    host.wait_for_log(|l| l.contains("SIGHUP received"));
    host.wait_for_log(|l| l.contains("config reloaded"));

    // Another host on the same pid file: refused, and the file still names the first.
    let second = std::process::Command::new(crate::support::build_dir().join("authhost"))
        .args(["serve", "--listen", "127.0.0.1:0", "--pid-file", &pid_arg, "--config"])
        .arg(site.config_path())
        .output()
        .expect("run a second host");
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another authhost"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap().trim(), host.pid().to_string());

    host.signal("TERM");
    assert!(host.wait_exit().success());
    assert!(!pid_file.exists(), "removed on exit");
    // A pid file whose process is gone (or is not an authhost): nothing is signalled.
    std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
    let out = site.authhost(&["reload", "--pid-file", &pid_arg], "");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no running authhost"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A command of the command line on a store that does not exist refuses, naming the path
/// and what to run, instead of making an empty store where it happens to run (a `--config`
/// from another folder used to leave an empty authhost.db there and say `no user "root"`).
#[test]
fn a_command_on_a_missing_store_refuses_and_store_init_makes_it() {
    let site = Site::new(CONFIG);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", site.db_path().display()));
    }
    let out = site.authhost(&["user", "add", "root", "--password-stdin"], "pw\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("no store at {}", site.db_path().display())), "{err}");
    assert!(err.contains("authhost store init"), "{err}");
    assert!(!site.db_path().exists(), "nothing was made");
    let out = site.authhost(&["store", "init"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(site.db_path().exists());
    site.add_user("root", "pw", &[]);
    // Again on an existing store: nothing lost.
    assert!(site.authhost(&["store", "init"], "").status.success());
    let out = site.authhost(&["user", "list"], "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("root"));
}
