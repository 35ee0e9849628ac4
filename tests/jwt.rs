//! JWTs (djangorestframework-jwt's API) over real sockets: obtain, use, refresh, verify,
//! expiry, the refresh window, revocation by a new password, and a signature checked by an
//! independent HS256 implementation.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::{Site, TestHost};

const SECRET: &str = "a test secret of more than thirty-two bytes";

fn config(options: &str) -> String {
    format!(
        r#"
[[scheme]]
name = "jwt"
plugin = "jwt"
secret = "{SECRET}"
{options}

[[route]]
path = "/api-token-auth/"
handler = "obtain_jwt"
schemes = []
permission = "allow_any"
token_scheme = "jwt"

[[route]]
path = "/api-token-refresh/"
handler = "refresh_jwt"
schemes = []
permission = "allow_any"
token_scheme = "jwt"

[[route]]
path = "/api-token-verify/"
handler = "verify_jwt"
schemes = []
permission = "allow_any"
token_scheme = "jwt"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["jwt"]
permission = "is_authenticated"
"#
    )
}

fn site(options: &str) -> Site {
    let site = Site::with_cache(&config(options), "user_cache_ttl = \"1h\"\nchange_poll = \"50ms\"");
    site.add_user("alice", "alice-pw", &[]);
    site
}

async fn obtain(host: &TestHost) -> String {
    let resp = host
        .request("POST", "/api-token-auth/")
        .json(&json!({"username": "alice", "password": "alice-pw"}))
        .send()
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.json()["token"].as_str().expect("a token").to_owned()
}

async fn post(host: &TestHost, path: &str, token: &str) -> (u16, Value) {
    let resp = host.request("POST", path).json(&json!({ "token": token })).send().await;
    (resp.status, resp.json())
}

async fn me(host: &TestHost, authorization: &str) -> (u16, Option<String>, Value) {
    let resp = host.get("/me").header("authorization", authorization).send().await;
    (resp.status, resp.header("www-authenticate").map(str::to_owned), resp.json())
}

/// The payload of a JWT, decoded here with the `base64` crate, apart from the plugin.
fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// HMAC-SHA256 from RustCrypto's `hmac`, to check authhost's signatures apart from its
/// own code.
fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

#[tokio::test]
async fn obtain_then_use_a_jwt_whose_hs256_signature_checks_out_independently() {
    let host = site("").serve();
    let token = obtain(&host).await;
    let (status, _, body) = me(&host, &format!("Bearer {token}")).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"user": "alice", "auth": "jwt", "scheme": "jwt", "is_staff": false}));
    let claims = payload(&token);
    assert_eq!(claims["username"], json!("alice"));
    let (exp, iat) = (claims["exp"].as_i64().unwrap(), claims["iat"].as_i64().unwrap());
    assert_eq!(exp - iat, 7 * 86_400, "7 days by default");
    assert_eq!(claims["orig_iat"], claims["iat"]);
    let (input, signature) = token.rsplit_once('.').unwrap();
    let expected = b64url(&hmac(SECRET.as_bytes(), input.as_bytes()));
    assert_eq!(signature, expected, "HS256 over header.payload with the configured secret");
}

#[tokio::test]
async fn drf_jwt_refusals_with_the_bearer_challenge() {
    let host = site("").serve();
    let challenge = Some("Bearer realm=\"api\"".to_owned());
    assert_eq!(
        me(&host, "Bearer").await,
        (401, challenge.clone(), json!({"detail": "Invalid Authorization header. No credentials provided."}))
    );
    assert_eq!(
        me(&host, "Bearer a b").await,
        (
            401,
            challenge.clone(),
            json!({"detail": "Invalid Authorization header. Credentials string should not contain spaces."})
        )
    );
    let token = obtain(&host).await;
    let tampered = format!("{}x", token);
    assert_eq!(
        me(&host, &format!("Bearer {tampered}")).await,
        (401, challenge, json!({"detail": "Error decoding signature."}))
    );
    let (status, _, _) = me(&host, &format!("Token {token}")).await;
    assert_eq!(status, 401, "another keyword is not attempted");
}

#[tokio::test]
async fn the_keyword_is_configurable_like_drf_jwts_jwt_prefix() {
    let host = site("keyword = \"JWT\"").serve();
    let token = obtain(&host).await;
    assert_eq!(me(&host, &format!("JWT {token}")).await.0, 200);
    let (status, challenge, _) = me(&host, "Bearer nope").await;
    assert_eq!((status, challenge.as_deref()), (401, Some("JWT realm=\"api\"")));
}

#[tokio::test]
async fn expired_tokens_and_refresh_windows() {
    let host = site("expiration = 1\nrefresh_expiration = 100").serve();
    let token = obtain(&host).await;
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (status, _, body) = me(&host, &format!("Bearer {token}")).await;
    assert_eq!((status, body), (401, json!({"detail": "Signature has expired."})));
    assert_eq!(
        post(&host, "/api-token-verify/", &token).await,
        (400, json!({"non_field_errors": ["Signature has expired."]}))
    );

    let host = site("expiration = 100\nrefresh_expiration = 1").serve();
    let token = obtain(&host).await;
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(
        post(&host, "/api-token-refresh/", &token).await,
        (400, json!({"non_field_errors": ["Refresh has expired."]}))
    );
}

#[tokio::test]
async fn refresh_keeps_orig_iat_and_verify_returns_the_token() {
    let host = site("").serve();
    let token = obtain(&host).await;
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (status, body) = post(&host, "/api-token-refresh/", &token).await;
    assert_eq!(status, 200, "{body}");
    let refreshed = body["token"].as_str().unwrap();
    assert_ne!(refreshed, token);
    assert_eq!(payload(refreshed)["orig_iat"], payload(&token)["orig_iat"]);
    assert!(payload(refreshed)["exp"].as_i64() > payload(&token)["exp"].as_i64());
    assert_eq!(post(&host, "/api-token-verify/", refreshed).await, (200, json!({ "token": refreshed })));
    assert_eq!(
        post(&host, "/api-token-verify/", "junk").await,
        (400, json!({"non_field_errors": ["Error decoding signature."]}))
    );
    let resp = host.request("POST", "/api-token-verify/").json(&json!({})).send().await;
    assert_eq!((resp.status, resp.json()), (400, json!({"token": ["This field is required."]})));
    let no_refresh = site("allow_refresh = false").serve();
    let token = obtain(&no_refresh).await;
    assert_eq!(
        post(&no_refresh, "/api-token-refresh/", &token).await,
        (400, json!({"non_field_errors": ["orig_iat field is required."]}))
    );
}

/// Runs a CLI change and waits (at most 5 s) until the host's change poll has seen it.
fn cli_change_seen(site: &Site, host: &TestHost, args: &[&str]) {
    // Counted before the change, so that a poll that sees it at once is not missed.
    let logs_before = host.logs().matches("dropped cached entries").count();
    let out = site.authhost(args, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while host.logs().matches("dropped cached entries").count() == logs_before {
        assert!(std::time::Instant::now() < deadline, "the change was not seen");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_new_password_or_a_deactivation_invalidates_earlier_jwts() {
    let site = site("");
    let host = site.serve();
    let token = obtain(&host).await;
    assert_eq!(me(&host, &format!("Bearer {token}")).await.0, 200);
    let out = site.authhost(&["user", "passwd", "alice", "--password-stdin"], "new-pw\n");
    assert!(out.status.success());
    host.wait_for_log(|l| l.contains("dropped cached entries"));
    let (status, _, body) = me(&host, &format!("Bearer {token}")).await;
    assert_eq!((status, body), (401, json!({"detail": "Token has been revoked."})));
    assert_eq!(
        post(&host, "/api-token-refresh/", &token).await,
        (400, json!({"non_field_errors": ["Token has been revoked."]}))
    );

    let resp = host
        .request("POST", "/api-token-auth/")
        .json(&json!({"username": "alice", "password": "new-pw"}))
        .send()
        .await;
    let fresh = resp.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(me(&host, &format!("Bearer {fresh}")).await.0, 200);
    cli_change_seen(&site, &host, &["user", "deactivate", "alice"]);
    let (status, _, body) = me(&host, &format!("Bearer {fresh}")).await;
    assert_eq!((status, body), (401, json!({"detail": "User account is disabled."})));
    assert!(!host.settled_logs().contains(&fresh), "no JWT in the logs");

    // Issue 12, item 5: a deactivation bumps the generation, so a JWT minted before it
    // stays refused once the account is active again.
    cli_change_seen(&site, &host, &["user", "activate", "alice"]);
    let (status, _, body) = me(&host, &format!("Bearer {fresh}")).await;
    assert_eq!((status, body), (401, json!({"detail": "Token has been revoked."})));
    let resp = host
        .request("POST", "/api-token-auth/")
        .json(&json!({"username": "alice", "password": "new-pw"}))
        .send()
        .await;
    let after = resp.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(me(&host, &format!("Bearer {after}")).await.0, 200, "a JWT minted after reactivation works");
}

#[test]
fn a_missing_or_short_secret_stops_start_up_naming_the_key() {
    let site = Site::new(
        &config("").replace(&format!("secret = \"{SECRET}\""), "secret_env = \"AUTHHOST_TEST_NO_SUCH_VAR\""),
    );
    let out = site.authhost(&["check"], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scheme[0] (\"jwt\").secret_env: $AUTHHOST_TEST_NO_SUCH_VAR is not set"), "{err}");
    let site = Site::new(&config("").replace(SECRET, "short"));
    let err = String::from_utf8_lossy(&site.authhost(&["check"], "").stderr).into_owned();
    assert!(err.contains("scheme[0] (\"jwt\").secret: the secret is 5 bytes; use at least 32"), "{err}");
}

#[tokio::test]
async fn eddsa_with_pem_keys_is_an_option() {
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys");
    let options = format!(
        "algorithm = \"EdDSA\"\nprivate_key_file = {:?}",
        keys.join("ed25519.pem").display().to_string()
    );
    let text = config(&options).replace(&format!("secret = \"{SECRET}\"\n"), "");
    let site = Site::new(&text);
    site.add_user("alice", "alice-pw", &[]);
    let host = site.serve();
    let token = obtain(&host).await;
    let header = token.split('.').next().unwrap();
    assert_eq!(header, b64url(br#"{"alg":"EdDSA","typ":"JWT"}"#));
    assert_eq!(me(&host, &format!("Bearer {token}")).await.0, 200);
    assert_eq!(post(&host, "/api-token-verify/", &token).await, (200, json!({ "token": token })));
}

#[tokio::test]
async fn no_secret_or_jwt_in_the_store_or_the_logs() {
    let site = site("");
    let host = site.serve();
    let token = obtain(&host).await;
    assert_eq!(me(&host, &format!("Bearer {token}")).await.0, 200);
    assert_eq!(post(&host, "/api-token-refresh/", &token).await.0, 200);
    let logs = host.settled_logs();
    drop(host);
    let store = String::from_utf8_lossy(&site.store_bytes()).into_owned();
    let signature = token.rsplit('.').next().unwrap();
    for secret in [SECRET, token.as_str(), signature, "alice-pw"] {
        assert!(!store.contains(secret), "{secret:?} is in the store");
        assert!(!logs.contains(secret), "{secret:?} is in the logs");
    }
}
