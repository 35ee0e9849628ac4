//! The plugin ABI across versions: within plugin-api 1.x a plugin built against a newer
//! minor than the host's loads and works, and a service the host predates ends in a clean
//! fault naming the plugin-api the plugin needs, never a crash or a refusal to load.
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
