//! Users' e-mail addresses at work: DRF's custom `ObtainAuthToken` answering
//! `{"token", "user_id", "email"}`, and logging in by e-mail with Basic, `obtain_token`
//! and the session login view. An address no user or several users have fails like a
//! wrong password.
//! See: issue 9 (item 2).

use serde_json::json;

use crate::support::Site;

const CONFIG: &str = r#"
[[scheme]]
name = "basic-email"
plugin = "basic"
login_field = "email"

[[scheme]]
name = "token"
plugin = "token"

[[route]]
path = "/api-token-auth/"
handler = "obtain_token"
schemes = []
permission = "allow_any"
fields = ["token", "user_id", "email"]

[[route]]
path = "/by-email/api-token-auth/"
handler = "obtain_token"
schemes = []
permission = "allow_any"
login_field = "email"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["basic-email", "token"]
permission = "is_authenticated"
"#;

fn site() -> Site {
    let site = Site::new(CONFIG);
    site.add_user("alice", "alice-pw", &["--email", "Alice@Example.com"]);
    site.add_user("bob", "shared-pw", &["--email", "shared@example.com"]);
    site.add_user("carol", "shared-pw", &["--email", "shared@example.com"]);
    site.add_user("dave", "dave-pw", &[]);
    site
}

#[tokio::test]
async fn obtain_token_answers_the_configured_fields() {
    let host = site().serve();
    let resp = host.request("POST", "/api-token-auth/").form("username=alice&password=alice-pw").send().await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let body = resp.json();
    let key = body["token"].as_str().expect("token").to_owned();
    assert_eq!(body, json!({"token": key, "user_id": 1, "email": "Alice@Example.com"}));
    // In the configured order, as DRF's Response(dict) keeps it.
    assert!(
        resp.body.starts_with("{\"token\":") && resp.body.ends_with("\"email\":\"Alice@Example.com\"}"),
        "{}",
        resp.body
    );
    let resp = host.request("POST", "/api-token-auth/").form("username=dave&password=dave-pw").send().await;
    assert_eq!(resp.json()["email"], json!(""), "no address: empty, as Django's EmailField");
}

#[tokio::test]
async fn obtain_token_and_basic_log_in_by_email() {
    let host = site().serve();
    let resp = host
        .request("POST", "/by-email/api-token-auth/")
        .json(&json!({"email": "alice@example.COM", "password": "alice-pw"}))
        .send()
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let key = resp.json()["token"].as_str().expect("token").to_owned();
    let me = host.get("/me").header("authorization", format!("Token {key}")).send().await;
    assert_eq!(me.json()["user"], json!("alice"));
    // The field is `email` now; DRF's messages name it.
    let resp = host
        .request("POST", "/by-email/api-token-auth/")
        .form("username=alice&password=alice-pw")
        .send()
        .await;
    assert_eq!((resp.status, resp.json()), (400, json!({"email": ["This field is required."]})));
    let bad = json!({"non_field_errors": ["Unable to log in with provided credentials."]});
    for (email, password) in
        [("shared@example.com", "shared-pw"), ("nobody@example.com", "x"), ("alice", "alice-pw")]
    {
        let resp = host
            .request("POST", "/by-email/api-token-auth/")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await;
        assert_eq!((resp.status, resp.json()), (400, bad.clone()), "{email}");
    }

    // Basic with login_field = "email": alice@example.com:alice-pw.
    let me =
        host.get("/me").header("authorization", "Basic YWxpY2VAZXhhbXBsZS5jb206YWxpY2UtcHc=").send().await;
    assert_eq!((me.status, &me.json()["user"]), (200, &json!("alice")));
    // alice:alice-pw: the username is no login for this scheme.
    let me = host.get("/me").header("authorization", "Basic YWxpY2U6YWxpY2UtcHc=").send().await;
    assert_eq!((me.status, me.json()), (401, json!({"detail": "Invalid username/password."})));
    // shared@example.com:shared-pw: two users have it.
    let me = host
        .get("/me")
        .header("authorization", "Basic c2hhcmVkQGV4YW1wbGUuY29tOnNoYXJlZC1wdw==")
        .send()
        .await;
    assert_eq!(me.status, 401);
}

#[test]
fn login_field_and_fields_are_checked_at_load() {
    let site = Site::new(
        "[[route]]\npath = \"/t\"\nhandler = \"obtain_token\"\nschemes = []\npermission = \"allow_any\"\nfields = [\"token\", \"mail\"]\n",
    );
    let out = site.authhost(&["check"], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("route[0] (\"/t\").fields: unknown field \"mail\" (did you mean \"email\"?)"),
        "{err}"
    );
    site.write_config(
        "[[route]]\npath = \"/t\"\nhandler = \"whoami\"\nschemes = []\npermission = \"allow_any\"\nlogin_field = \"email\"\n",
    );
    let out = site.authhost(&["check"], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "route[0] (\"/t\").login_field: only obtain_token, login and obtain_jwt routes take a login_field"
        ),
        "{err}"
    );
}
