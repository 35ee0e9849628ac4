//! The author's path: `authhost new-scheme demo` in a folder outside the repository gives
//! a crate whose own `cargo test` and `cargo build` pass as generated, and whose library
//! the host loads by `path` and authenticates with.
//! See: issue 9 (item 5).

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::support::{build_dir, library, Site};

/// Runs cargo in the generated crate. Its build shares target/fixtures with the other
/// fixtures, so that abi_stable and friends are not compiled once more.
fn cargo(dir: &Path, args: &[&str]) {
    let target = build_dir().parent().expect("target").join("fixtures");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} in the generated crate failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_generated_scheme_builds_tests_and_loads_outside_the_repository() {
    let outside = tempfile::tempdir().expect("temp dir");
    let out = Command::new(build_dir().join("authhost"))
        .args(["new-scheme", "demo", "--dir"])
        .arg(outside.path())
        .output()
        .expect("authhost new-scheme");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let crate_dir = outside.path().join("demo");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&crate_dir.display().to_string()));
    for file in ["Cargo.toml", "src/lib.rs", "README.md"] {
        assert!(crate_dir.join(file).is_file(), "{file} was not written");
    }
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("edition = \"2021\""), "{manifest}");

    cargo(&crate_dir, &["test", "--quiet"]);
    cargo(&crate_dir, &["build", "--quiet"]);
    let lib = build_dir().parent().unwrap().join("fixtures/debug").join(library("demo"));
    assert!(lib.is_file(), "{} was not built", lib.display());

    let site = Site::new(&format!(
        "[[scheme]]\nname = \"demo\"\npath = {:?}\n\n[[route]]\npath = \"/me\"\nhandler = \"whoami\"\nschemes = [\"demo\"]\npermission = \"is_authenticated\"\n",
        lib.display().to_string()
    ));
    site.add_user("alice", "alice-pw", &[]);
    let host = site.serve();
    let resp = host.get("/me").header("x-demo-user", "alice").send().await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json(), json!({"user": "alice", "auth": null, "scheme": "demo", "is_staff": false}));
    let resp = host.get("/me").header("x-demo-user", "mallory").send().await;
    assert_eq!((resp.status, resp.json()), (403, json!({"detail": "No such user"})));

    // A second scheme of that name is refused, and so is a bad name.
    let again = Command::new(build_dir().join("authhost"))
        .args(["new-scheme", "demo", "--dir"])
        .arg(outside.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    let bad = Command::new(build_dir().join("authhost")).args(["new-scheme", "Demo!"]).output().unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is no scheme name"));
}
