//! DRF's `obtain_auth_token` over real sockets: form and JSON give the key `token create`
//! gives, every 400 shape is DRF's, and the store never holds a key or a password.

use serde_json::{json, Value};

use crate::support::{Site, TestHost};

const CONFIG: &str = r#"
[[scheme]]
name = "token"
plugin = "token"

[[route]]
path = "/api-token-auth/"
handler = "obtain_token"
schemes = []
permission = "allow_any"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["token"]
permission = "is_authenticated"
"#;

fn site() -> Site {
    let site = Site::new(CONFIG);
    site.add_user("alice", "alice pw", &[]);
    site.add_user("bob", "bob-pw", &[]);
    site.add_user("gone", "gone-pw", &["--inactive"]);
    site
}

async fn post_form(host: &TestHost, body: &str) -> (u16, Value) {
    let resp = host.request("POST", "/api-token-auth/").form(body).send().await;
    (resp.status, resp.json())
}

async fn post_json(host: &TestHost, body: &Value) -> (u16, Value) {
    let resp = host.request("POST", "/api-token-auth/").json(body).send().await;
    (resp.status, resp.json())
}

#[tokio::test]
async fn form_and_json_return_the_key_token_create_gives() {
    let site = site();
    let key = site.token_for("alice");
    assert_eq!(key.len(), 40);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    let host = site.serve();
    assert_eq!(post_form(&host, "username=alice&password=alice+pw").await, (200, json!({ "token": key })));
    assert_eq!(
        post_json(&host, &json!({"username": " alice ", "password": "alice pw"})).await,
        (200, json!({ "token": key }))
    );
    let me = host.get("/me").header("Authorization", format!("Token {key}")).send().await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"], json!("alice"));
}

#[tokio::test]
async fn a_user_without_a_token_gets_one_and_keeps_it() {
    let site = site();
    let host = site.serve();
    let (status, body) = post_json(&host, &json!({"username": "bob", "password": "bob-pw"})).await;
    assert_eq!(status, 200);
    let key = body["token"].as_str().expect("a key").to_owned();
    assert_eq!(post_form(&host, "username=bob&password=bob-pw").await, (200, json!({ "token": key })));
    assert_eq!(site.token_for("bob"), key, "token create prints the same key");
}

#[tokio::test]
async fn regenerating_replaces_the_key() {
    let site = site();
    let old = site.token_for("alice");
    let out = site.authhost(&["token", "create", "alice", "-r"], "");
    assert!(out.status.success());
    let new = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_ne!(old, new);
    let host = site.serve();
    assert_eq!(post_form(&host, "username=alice&password=alice+pw").await, (200, json!({ "token": new })));
    let me = host.get("/me").header("Authorization", format!("Token {old}")).send().await;
    assert_eq!(me.status, 401);
    assert_eq!(me.json(), json!({"detail": "Invalid token."}));
}

#[tokio::test]
async fn every_drf_400_shape() {
    let host = site().serve();
    let required = json!(["This field is required."]);
    assert_eq!(
        post_json(&host, &json!({})).await,
        (400, json!({"username": required, "password": required}))
    );
    assert_eq!(post_form(&host, "password=x").await, (400, json!({"username": required})));
    assert_eq!(
        post_json(&host, &json!({"username": "   ", "password": ""})).await,
        (
            400,
            json!({"username": ["This field may not be blank."], "password": ["This field may not be blank."]})
        )
    );
    assert_eq!(
        post_json(&host, &json!({"username": null, "password": "x"})).await,
        (400, json!({"username": ["This field may not be null."]}))
    );
    assert_eq!(
        post_json(&host, &json!({"username": {"a": 1}, "password": false})).await,
        (400, json!({"username": ["Not a valid string."], "password": ["Not a valid string."]}))
    );
    assert_eq!(
        post_json(&host, &json!([{"username": "alice"}])).await,
        (400, json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}))
    );
    assert_eq!(
        post_json(&host, &Value::Null).await,
        (400, json!({"non_field_errors": ["No data provided"]}))
    );
    let bad = json!({"non_field_errors": ["Unable to log in with provided credentials."]});
    assert_eq!(post_form(&host, "username=alice&password=wrong").await, (400, bad.clone()));
    assert_eq!(post_form(&host, "username=nobody&password=alice+pw").await, (400, bad.clone()));
    assert_eq!(post_form(&host, "username=gone&password=gone-pw").await, (400, bad.clone()));
    // The password is never trimmed.
    assert_eq!(post_json(&host, &json!({"username": "alice", "password": " alice pw"})).await, (400, bad));
    // An empty body with no content type is an empty form.
    let resp = host.request("POST", "/api-token-auth/").send().await;
    assert_eq!((resp.status, resp.json()), (400, json!({"username": required, "password": required})));
}

#[tokio::test]
async fn multipart_forms_work_like_drfs_multipart_parser() {
    let site = site();
    let key = site.token_for("alice");
    let host = site.serve();
    let body = "--b0und\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nalice\r\n\
                --b0und\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nalice pw\r\n--b0und--\r\n";
    let resp = host
        .request("POST", "/api-token-auth/")
        .header("content-type", "multipart/form-data; boundary=b0und")
        .body(body)
        .send()
        .await;
    assert_eq!((resp.status, resp.json()), (200, json!({ "token": key })));
    let resp = host
        .request("POST", "/api-token-auth/")
        .header("content-type", "multipart/form-data")
        .body("junk")
        .send()
        .await;
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.json(),
        json!({"detail": "Multipart form parse error - Invalid boundary in multipart: None"})
    );
}

#[tokio::test]
async fn malformed_json_unsupported_media_and_wrong_method() {
    let host = site().serve();
    let resp = host
        .request("POST", "/api-token-auth/")
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await;
    assert_eq!(resp.status, 400);
    let detail = resp.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.starts_with("JSON parse error - "), "{detail}");
    let resp =
        host.request("POST", "/api-token-auth/").header("content-type", "text/plain").body("hi").send().await;
    assert_eq!(resp.status, 415);
    assert_eq!(resp.json(), json!({"detail": "Unsupported media type \"text/plain\" in request."}));
    let resp = host.get("/api-token-auth/").send().await;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.json(), json!({"detail": "Method \"GET\" not allowed."}));
}

#[tokio::test]
async fn the_store_holds_no_key_and_no_password() {
    let site = site();
    let key = site.token_for("alice");
    let host = site.serve();
    let (status, body) = post_form(&host, "username=bob&password=bob-pw").await;
    assert_eq!(status, 200);
    let bob_key = body["token"].as_str().unwrap().to_owned();
    let logs = host.settled_logs();
    drop(host);
    let bytes = site.store_bytes();
    assert!(!bytes.is_empty());
    let text = String::from_utf8_lossy(&bytes).to_lowercase();
    for secret in [key.as_str(), bob_key.as_str(), "alice pw", "bob-pw"] {
        assert!(!text.contains(&secret.to_lowercase()), "{secret:?} is in the store");
    }
    // Nor the key's raw bytes.
    let raw: Vec<u8> = (0..20).map(|i| u8::from_str_radix(&key[2 * i..2 * i + 2], 16).unwrap()).collect();
    assert!(!bytes.windows(raw.len()).any(|w| w == raw.as_slice()));
    for secret in [key.as_str(), bob_key.as_str(), "bob-pw"] {
        assert!(!logs.contains(secret), "{secret:?} is in the logs:\n{logs}");
    }
}

#[tokio::test]
async fn token_for_new_users_gives_every_new_user_a_token() {
    let config = format!(
        "{CONFIG}
[[scheme]]
name = \"proxy\"
plugin = \"remote-user\"
trusted_proxies = [\"127.0.0.1\"]

[[route]]
path = \"/proxied\"
handler = \"whoami\"
schemes = [\"proxy\"]
permission = \"is_authenticated\"
"
    );
    let site = Site::with_cache(&config, "token_for_new_users = true");
    let out = site.authhost(&["user", "add", "carol", "--password-stdin"], "carol-pw\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(key.len(), 40, "user add prints the new user's key: {key:?}");
    let host = site.serve();
    let me = host.get("/me").header("Authorization", format!("Token {key}")).send().await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"], json!("carol"));
    assert_eq!(post_form(&host, "username=carol&password=carol-pw").await, (200, json!({ "token": key })));
    // A user the remote-user scheme creates gets one too.
    let resp = host.get("/proxied").header("X-Remote-User", "dave").send().await;
    assert_eq!(resp.status, 200);
    let db = rusqlite::Connection::open(site.db_path()).unwrap();
    let tokens: i64 = db
        .query_row(
            "SELECT count(*) FROM tokens t JOIN users u ON u.id = t.user_id WHERE u.username = 'dave'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tokens, 1);
}
