//! The plugin ABI across versions: within plugin-api 1.x a plugin built against a newer
//! minor than the host's loads and works, and a service the host predates ends in a clean
//! fault naming the plugin-api the plugin needs, never a crash or a refusal to load; and a
//! newer host (the next release: its own version bumped, plugin-api 1.1) loads and runs
//! the plugins built from this checkout (plugin-api 1.0).
//! See: issue 9 (versioning; docs/plugin-abi.md).

use serde_json::json;

use crate::support::{fixtures_dir, library, Site};

fn next_minor_plugin() -> std::path::PathBuf {
    let path = fixtures_dir().join(library("next_probe"));
    assert!(path.exists(), "{} is missing: run scripts/test (it runs scripts/abi-next)", path.display());
    path
}

#[tokio::test]
async fn a_plugin_built_against_the_next_minor_loads_and_a_missing_service_is_a_clean_fault() {
    let config = format!(
        "[[scheme]]\nname = \"next\"\npath = {:?}\n\n[[route]]\npath = \"/me\"\nhandler = \"whoami\"\nschemes = [\"next\"]\npermission = \"is_authenticated\"\n",
        next_minor_plugin().display().to_string()
    );
    let site = Site::new(&config);
    site.add_user("alice", "alice-pw", &[]);
    let check = site.authhost(&["check"], "");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let host = site.serve();
    let resp = host.get("/me").header("x-next-user", "alice").send().await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    // The 1.1 user accessor reads the attributes a 1.0 host sends: none.
    assert_eq!(
        resp.json(),
        json!({"user": "alice", "auth": "department=none", "scheme": "next", "is_staff": false})
    );

    let resp = host.get("/me").header("x-next-user", "alice").header("x-next-groups", "1").send().await;
    assert_eq!((resp.status, resp.json()), (500, json!({"detail": "Internal authentication error."})));
    let line = host.wait_for_log(|l| l.contains("faulted"));
    assert!(line.contains("scheme \"next\" faulted"), "{line}");
    assert!(line.contains("needs plugin-api 1.1"), "{line}");
    // And the host goes on serving.
    assert_eq!(host.get("/me").header("x-next-user", "alice").send().await.status, 200);
}

/// The next release of the host, built by scripts/host-next.
fn next_host() -> std::path::PathBuf {
    let path = fixtures_dir().join("authhost");
    assert!(path.exists(), "{} is missing: run scripts/test (it runs scripts/host-next)", path.display());
    path
}

#[tokio::test]
async fn the_next_host_release_loads_and_runs_todays_plugins() {
    let version = |exe: &std::path::Path| {
        let out = std::process::Command::new(exe).arg("--version").output().expect("--version");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let (today, next) = (version(&crate::support::build_dir().join("authhost")), version(&next_host()));
    assert_ne!(today, next, "the next host has another version of its own");
    let config = "[[scheme]]\nname = \"basic\"\nplugin = \"basic\"\n\n[[scheme]]\nname = \"who\"\nplugin = \"x-username\"\n\n\
                  [[route]]\npath = \"/me\"\nhandler = \"whoami\"\nschemes = [\"basic\", \"who\"]\npermission = \"is_authenticated\"\n";
    let site = Site::new(config);
    site.add_user("alice", "alice-pw", &[]);
    let info = std::process::Command::new(next_host())
        .args(["plugin", "info"])
        .arg(site.plugins_dir().join(library("x_username")))
        .output()
        .expect("plugin info");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("plugin-api:  1.0.0 (this host: 1.1.0)") && info.contains("loadable:    yes"),
        "{info}"
    );

    let host = site.serve_with(&next_host());
    let resp = host.get("/me").header("x-username", "alice").send().await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json(), json!({"user": "alice", "auth": null, "scheme": "who", "is_staff": false}));
    // Basic from 1.0, through the 1.1 host's services (argon2 on its pool): alice:alice-pw.
    let resp = host.get("/me").header("authorization", "Basic YWxpY2U6YWxpY2UtcHc=").send().await;
    assert_eq!((resp.status, &resp.json()["scheme"]), (200, &json!("basic")));
    let resp = host.get("/me").header("authorization", "Basic YWxpY2U6d3Jvbmc=").send().await;
    assert_eq!((resp.status, resp.json()), (401, json!({"detail": "Invalid username/password."})));
}

#[tokio::test]
async fn a_plugin_built_against_the_frozen_plugin_api_1_0_loads_and_authenticates() {
    let lib = fixtures_dir().join(library("frozen_probe"));
    assert!(lib.exists(), "{} is missing: run scripts/test", lib.display());
    let config = format!(
        "[[scheme]]\nname = \"frozen\"\npath = {:?}\n\n[[route]]\npath = \"/me\"\nhandler = \"whoami\"\nschemes = [\"frozen\"]\npermission = \"is_authenticated\"\n",
        lib.display().to_string()
    );
    let site = Site::new(&config);
    site.add_user("alice", "alice-pw", &["--email", "alice@example.com"]);
    let host = site.serve();
    let resp = host.get("/me").header("x-frozen-user", "alice").send().await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.json(),
        json!({"user": "alice", "auth": "email=alice@example.com", "scheme": "frozen", "is_staff": false})
    );
    let resp =
        host.get("/me").header("x-frozen-user", "alice").header("x-frozen-password", "alice-pw").send().await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let resp =
        host.get("/me").header("x-frozen-user", "alice").header("x-frozen-password", "nope").send().await;
    assert_eq!((resp.status, resp.header("www-authenticate")), (401, Some("Frozen")));
    // Its declared option is checked by the current host.
    site.write_config(&config.replacen("path =", "notte = \"x\"\npath =", 1));
    let out = site.authhost(&["check"], "");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("notte: unknown option (did you mean \"note\"?)"),
        "{out:?}"
    );
}

/// The frozen plugin-api 1.0 is what yesterday's plugins were built with: it never changes.
/// (A change to the ABI goes into plugin-api/ as a new minor, by docs/plugin-abi.md's rules.)
#[test]
fn the_frozen_plugin_api_1_0_is_unchanged() {
    use sha2::{Digest, Sha256};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/abi-1.0/plugin-api");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("frozen plugin-api") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let mut named: Vec<(String, std::path::PathBuf)> = files
        .into_iter()
        .map(|p| (p.strip_prefix(&root).expect("inside").to_string_lossy().replace('\\', "/"), p))
        .collect();
    named.sort();
    let mut digest = Sha256::new();
    for (name, path) in &named {
        digest.update(name.as_bytes());
        digest.update([0]);
        digest.update(std::fs::read(path).expect("file"));
        digest.update([0]);
    }
    let hex: String = digest.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex, "f323c2a09299c3cd54bb1be65ffbcfe703ddc2b36f1b17829f8aad6f97ff579a",
        "tests/fixtures/abi-1.0/plugin-api was edited"
    );
}
