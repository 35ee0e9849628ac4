//! What a new operator runs into: reloads that cannot apply live, the start-up line, and
//! running under systemd.
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

/// Readiness for systemd (`Type=notify`): with `$NOTIFY_SOCKET` set, the host sends
/// READY=1 with its MAINPID once it answers requests, RELOADING=1 then READY=1 around a
/// reload, and STOPPING=1 on SIGTERM. The socket here is a datagram socket of the test's,
/// speaking the protocol as systemd does (one datagram of `KEY=VALUE` lines per message).
#[tokio::test]
async fn the_host_tells_systemd_when_it_is_ready_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let site = Site::new(CONFIG);
    site.add_user("alice", "alice-pw", &[]);
    let socket_path = site.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    socket.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let next = || {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut host = site.serve_env(&[("NOTIFY_SOCKET", &socket_path.display().to_string())]);
    let ready = next();
    let lines: Vec<&str> = ready.lines().collect();
    assert!(lines.contains(&"READY=1"), "{ready}");
    assert!(lines.contains(&format!("MAINPID={}", host.pid()).as_str()), "{ready}");
    // Ready means serving: the port answers already.
    let resp = host.get("/whoami").header("x-username", "alice").send().await;
    assert_eq!(resp.status, 200);

    host.signal("HUP");
    let reloading = next();
    assert!(reloading.lines().any(|l| l == "RELOADING=1"), "{reloading}");
    assert!(reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")), "{reloading}");
    let reloaded = next();
    assert!(reloaded.lines().any(|l| l == "READY=1"), "{reloaded}");
    host.wait_for_log(|l| l.contains("config reloaded"));

    host.signal("TERM");
    let stopping = next();
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    assert!(host.wait_exit().success());
}

/// The shipped unit file, contrib/authhost.service, passes `systemd-analyze verify` with
/// no complaint (every directive known and valid, its commands executable: the real
/// binary stands in for the installed path), and runs the host the way this test
/// suite checks: `Type=notify`, `serve --config`, reload by SIGHUP.
#[test]
fn the_shipped_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/authhost.service"))
        .expect("contrib/authhost.service");
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/bin/authhost serve --config /etc/authhost/authhost.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit has {line:?}");
    }
    let Some(analyze) = crate::support::peers::find("systemd-analyze") else {
        crate::support::peers::skip("the_shipped_systemd_unit_verifies", "systemd-analyze");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let binary = crate::support::build_dir().join("authhost");
    let file = dir.path().join("authhost.service");
    std::fs::write(&file, unit.replace("/usr/local/bin/authhost", &binary.display().to_string())).unwrap();
    let out = std::process::Command::new(analyze).args(["verify", "--man=no"]).arg(&file).output().unwrap();
    let complaints = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && complaints.trim().is_empty(), "systemd-analyze verify:\n{complaints}");
}

/// `authhost` run from another folder than the config's, the way an operator runs it.
fn authhost_in(dir: &std::path::Path, site: &Site, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new(crate::support::build_dir().join("authhost"))
        .args(args)
        .arg("--config")
        .arg(site.config_path())
        .current_dir(dir)
        .env("AUTHHOST_LOG", "info")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn authhost");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Every relative path in the config is placed against the config file's folder, wherever
/// authhost runs from: the SQLite store, the token secret, plugins.dir. Run from another
/// folder, `store init`, `user add` and `token create` work on the config's store (none is
/// made where they run); where an earlier release would have used a file that exists in
/// the working directory, authhost warns once, naming both places.
#[test]
fn relative_paths_resolve_against_the_config_files_folder() {
    let site = Site::new("");
    site.write_raw_config(&format!(
        "[plugins]\ndir = \"plugins\"\n\n[store]\nurl = \"sqlite://data/auth.db\"\n\
         token_secret_file = \"data/auth.secret\"\n{CONFIG}"
    ));
    std::fs::create_dir(site.path().join("data")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let out = authhost_in(elsewhere.path(), &site, args, stdin);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    run(&["store", "init"], "");
    run(&["user", "add", "alice", "--password-stdin"], "alice-pw\n");
    let out = run(&["token", "create", "alice"], "");
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());
    assert!(site.path().join("data/auth.db").is_file(), "the store is beside the config");
    assert!(site.path().join("data/auth.secret").is_file(), "so is the token secret");
    let made_here: Vec<_> = std::fs::read_dir(elsewhere.path()).unwrap().collect();
    assert!(made_here.is_empty(), "nothing is made where authhost runs: {made_here:?}");
    // `check` loads the plugins from plugins.dir, placed against the config's folder too.
    run(&["check"], "");

    // An old layout: the store the working directory holds, where earlier releases looked.
    std::fs::create_dir(elsewhere.path().join("data")).unwrap();
    std::fs::write(elsewhere.path().join("data/auth.db"), b"").unwrap();
    let out = run(&["user", "list"], "");
    let err = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> =
        err.lines().filter(|l| l.contains("now resolves against the config's folder")).collect();
    assert_eq!(warnings.len(), 1, "one warning, for the store:\n{err}");
    assert!(
        warnings[0].contains("store.url")
            && warnings[0].contains(&site.path().join("data/auth.db").display().to_string())
            && warnings[0].contains("data/auth.db"),
        "{}",
        warnings[0]
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice"), "the config's store is used");
}
