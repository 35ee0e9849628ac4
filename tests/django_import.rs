//! Moving a Django project over: a database made by Django itself (scripts/django-fixture:
//! Django and DRF from PyPI, `migrate`, users by `create_user` under each of Django's
//! password hashers, tokens by `Token.objects.create`), imported with `authhost import
//! django`; then the original passwords (Basic) and keys (Token) answer 200 through
//! authhost, each hash is argon2id after its first login, an inactive user stays refused
//! and an unusable password stays unusable.
//! See: issue 15 (item 5).

use std::process::Command;

use serde_json::{json, Value};

use crate::support::Site;

const CONFIG: &str = r#"
[[scheme]]
name = "basic"
plugin = "basic"

[[scheme]]
name = "token"
plugin = "token"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["basic", "token"]
permission = "is_authenticated"
"#;

/// What Django put in `database` (a SQLite file or a PostgreSQL URL); None (said loudly)
/// where no Django can be installed here.
fn django_database(database: &str) -> Option<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/django-fixture");
    let out = Command::new(script).arg(database).output().expect("scripts/django-fixture");
    if !out.status.success() {
        eprintln!(
            "SKIPPED django import: scripts/django-fixture could not make a Django database:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).expect("the fixture's JSON"))
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn stored_hash(site: &Site, user: &str) -> String {
    let db = rusqlite::Connection::open(site.db_path()).unwrap();
    db.query_row("SELECT password FROM users WHERE username = ?1", [user], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn a_django_projects_users_and_tokens_keep_working_after_import_from_sqlite() {
    let site = Site::new(CONFIG);
    let db = site.path().join("django.sqlite3");
    let Some(django) = django_database(&db.display().to_string()) else { return };
    import_and_check(&site, &format!("sqlite://{}", db.display()), &django).await;
}

/// The same from a Django project on PostgreSQL (Django migrates a test database of its
/// own), into authhost's SQLite store.
#[tokio::test]
async fn a_django_projects_users_and_tokens_keep_working_after_import_from_postgresql() {
    let test = "a_django_projects_users_and_tokens_keep_working_after_import_from_postgresql";
    let Some(db) = crate::support::postgres::TestDb::create(test) else { return };
    let site = Site::new(CONFIG);
    let Some(django) = django_database(&db.url) else { return };
    import_and_check(&site, &db.url, &django).await;
}

async fn import_and_check(site: &Site, from: &str, django: &Value) {
    let from = from.to_owned();
    let users = django["users"].as_array().unwrap();
    let hashers: Vec<&str> = users.iter().map(|u| u["stored"].as_str().unwrap()).collect();
    assert_eq!(hashers, ["pbkdf2_sha256", "pbkdf2_sha1", "argon2", "bcrypt_sha256", "scrypt"]);

    // A dry run says what it would do and changes nothing; no secret is printed.
    let out = site.authhost(&["import", "django", "--from", &from, "--dry-run"], "");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("would import user \"user0\" (password: pbkdf2_sha256)"), "{said}");
    assert!(said.contains("would import user \"nopw\" (password: unusable)"), "{said}");
    assert!(said.contains("would import 8 users (0 already present) and 6 tokens"), "{said}");
    for user in users {
        assert!(!said.contains(user["key"].as_str().unwrap()), "a key was printed: {said}");
    }
    let listed = site.authhost(&["user", "list"], "");
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("user0"), "the dry run imported");

    let out = site.authhost(&["import", "django", "--from", &from], "");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("imported 8 users (0 already present) and 6 tokens (0 skipped)"), "{said}");

    let host = site.serve();
    let me = |auth: String| host.get("/me").header("authorization", auth).send();
    for user in users {
        let (name, password, key) = (
            user["username"].as_str().unwrap(),
            user["password"].as_str().unwrap(),
            user["key"].as_str().unwrap(),
        );
        let hasher = user["stored"].as_str().unwrap();
        assert!(stored_hash(site, name).starts_with(hasher), "{name}: imported as Django stored it");
        let resp = me(basic(name, password)).await;
        assert_eq!((resp.status, resp.json()["user"].clone()), (200, json!(name)), "{hasher}: {}", resp.body);
        assert!(stored_hash(site, name).starts_with("$argon2id$"), "{name}: upgraded on its first login");
        // The argon2id hash verifies the same password; a wrong one is still wrong.
        assert_eq!(me(basic(name, password)).await.status, 200, "{hasher} after the upgrade");
        assert_eq!(me(basic(name, "wrong")).await.status, 401);
        let resp = me(format!("Token {key}")).await;
        assert_eq!((resp.status, resp.json()["scheme"].clone()), (200, json!("token")), "{name}'s DRF key");
    }

    // An inactive Django user stays refused, by password and by token, with DRF's words
    // (Basic goes through Django's ModelBackend, which refuses inactive users before DRF
    // could say so; TokenAuthentication says it).
    let gone = &django["inactive"];
    for (auth, detail) in [
        (basic("gone", gone["password"].as_str().unwrap()), "Invalid username/password."),
        (format!("Token {}", gone["key"].as_str().unwrap()), "User inactive or deleted."),
    ] {
        let resp = me(auth).await;
        assert_eq!((resp.status, resp.json()), (401, json!({ "detail": detail })));
    }
    // An unusable password matches nothing, not even an empty one, and stays unusable.
    for password in ["", "!", "anything"] {
        let resp = me(basic("nopw", password)).await;
        assert_eq!((resp.status, resp.json()), (401, json!({"detail": "Invalid username/password."})));
    }
    assert!(stored_hash(site, "nopw").starts_with('!'));
    // The superuser came over with is_staff as Django had it.
    let resp = me(basic("admin", "admin-pw")).await;
    assert_eq!((resp.status, resp.json()["is_staff"].clone()), (200, json!(true)));

    // Again: everyone is there already, and nobody's credentials changed.
    let out = site.authhost(&["import", "django", "--from", &from], "");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("imported 0 users (8 already present)"), "{said}");
    assert_eq!(me(basic("user0", users[0]["password"].as_str().unwrap())).await.status, 200);
}
