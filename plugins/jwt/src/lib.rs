//! JSON Web Token authentication with djangorestframework-jwt's API and messages:
//! `Authorization: Bearer <jwt>` (keyword configurable, `JWT` as drf-jwt used), HS256.
//!
//! Options: `algorithm` (`"HS256"`, or `"EdDSA"`); for HS256 `secret`, or `secret_env`
//! naming an environment variable (at least 32 bytes either way); for EdDSA
//! `private_key_file` (PKCS#8 PEM, to mint) and/or `public_key_file` (SPKI PEM, to verify
//! only); `keyword` (`"Bearer"`); `realm` (`"api"`);
//! `expiration` (`"7d"`); `allow_refresh` (true); `refresh_expiration` (`"30d"`, counted from
//! the first token of a line, `orig_iat`); `leeway` (`"0s"`).
//!
//! Claims: `user_id`, `username`, `exp`, `iat`, `orig_iat` (when refresh is allowed) and
//! `gen`, the user's generation: a password change or a deactivation bumps it, and every
//! JWT minted before is refused from then on.

mod hs256;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authhost_plugin_api::authorization::{credentials, Credentials};
use authhost_plugin_api::{
    export_scheme, Claims, Host, OptionKind, OptionSpec, Options, Outcome, RequestView, Scheme, SchemeError,
    User,
};
use serde_json::{json, Value};

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hs256::{b64url_decode, b64url_encode, hmac_sha256, hmac_sha256_verify};

const NO_CREDENTIALS: &str = "Invalid Authorization header. No credentials provided.";
const HAS_SPACES: &str = "Invalid Authorization header. Credentials string should not contain spaces.";
const EXPIRED: &str = "Signature has expired.";
const DECODE_ERROR: &str = "Error decoding signature.";
const INVALID_PAYLOAD: &str = "Invalid payload.";
const NO_USER: &str = "Invalid signature.";
const DISABLED: &str = "User account is disabled.";
const REVOKED: &str = "Token has been revoked.";

/// The shortest secret accepted: HS256 keys shorter than the hash are weak (RFC 7518 §3.2).
const MIN_SECRET: usize = 32;

/// How tokens are signed and checked.
enum Key {
    Hs256(Vec<u8>),
    /// Ed25519 (RFC 8037); without the private key, tokens are only verified.
    EdDsa {
        signing: Option<Box<SigningKey>>,
        verifying: VerifyingKey,
    },
}

impl std::fmt::Debug for Key {
    // Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Key::Hs256(_) => "Key::Hs256(..)",
            Key::EdDsa { .. } => "Key::EdDsa(..)",
        })
    }
}

impl Key {
    fn alg(&self) -> &'static str {
        match self {
            Key::Hs256(_) => "HS256",
            Key::EdDsa { .. } => "EdDSA",
        }
    }

    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, SchemeError> {
        match self {
            Key::Hs256(secret) => Ok(hmac_sha256(secret, input).to_vec()),
            Key::EdDsa { signing: Some(key), .. } => Ok(key.sign(input).to_bytes().to_vec()),
            Key::EdDsa { signing: None, .. } => Err(SchemeError::internal(
                "this JWT scheme has no private_key_file, so it cannot mint tokens",
            )),
        }
    }

    fn verify(&self, input: &[u8], signature: &[u8]) -> bool {
        match self {
            Key::Hs256(secret) => hmac_sha256_verify(secret, input, signature),
            Key::EdDsa { verifying, .. } => Signature::from_slice(signature)
                .is_ok_and(|signature| verifying.verify_strict(input, &signature).is_ok()),
        }
    }
}

fn read_pem(options: &Options<'_>, key: &'static str) -> Result<Option<String>, SchemeError> {
    let Some(path) = options.str(key)? else { return Ok(None) };
    authhost_plugin_api::files::read_text(
        std::path::Path::new(path),
        authhost_plugin_api::files::MAX_SMALL_FILE,
    )
    .map(Some)
    .map_err(|e| SchemeError::option(key, format!("cannot read {path:?}: {e}")))
}

fn eddsa_key(options: &Options<'_>) -> Result<Key, SchemeError> {
    let signing = read_pem(options, "private_key_file")?
        .map(|pem| {
            SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
                SchemeError::option(
                    "private_key_file",
                    format!("not an Ed25519 private key in PKCS#8 PEM: {e}"),
                )
            })
        })
        .transpose()?;
    let verifying = match (read_pem(options, "public_key_file")?, &signing) {
        (Some(pem), _) => VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
            SchemeError::option("public_key_file", format!("not an Ed25519 public key in SPKI PEM: {e}"))
        })?,
        (None, Some(signing)) => signing.verifying_key(),
        (None, None) => {
            return Err(SchemeError::option(
                "private_key_file",
                "missing: EdDSA needs private_key_file (to mint) or public_key_file (to verify only)",
            ))
        }
    };
    if signing.as_ref().is_some_and(|s| s.verifying_key() != verifying) {
        return Err(SchemeError::option("public_key_file", "is not the public half of private_key_file"));
    }
    Ok(Key::EdDsa { signing: signing.map(Box::new), verifying })
}

/// The HS256 secret from `secret` or `$secret_env`: at least 32 bytes.
fn hs256_secret(options: &Options<'_>) -> Result<Vec<u8>, SchemeError> {
    options.secret("secret", "secret_env", MIN_SECRET)
}

#[derive(Debug)]
pub struct Jwt {
    key: Key,
    keyword: String,
    challenge: String,
    expiration: u64,
    refresh: Option<u64>,
    leeway: u64,
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

impl Scheme for Jwt {
    const OPTIONS: &'static [OptionSpec] = &[
        OptionSpec::new("algorithm", OptionKind::Text, "HS256", "HS256 or EdDSA"),
        OptionSpec::new(
            "secret_env",
            OptionKind::Text,
            "",
            "HS256: the variable holding the secret (32 bytes or more)",
        ),
        OptionSpec::new("secret", OptionKind::Text, "", "HS256: the secret itself (prefer secret_env)"),
        OptionSpec::new(
            "private_key_file",
            OptionKind::Text,
            "",
            "EdDSA: PKCS#8 PEM key that signs; unset: verify only",
        ),
        OptionSpec::new("public_key_file", OptionKind::Text, "", "EdDSA: SPKI PEM key that verifies"),
        OptionSpec::new(
            "keyword",
            OptionKind::Text,
            "Bearer",
            "the Authorization keyword (drf-jwt's JWT, say)",
        ),
        OptionSpec::new("realm", OptionKind::Text, "api", "the realm of the WWW-Authenticate challenge"),
        OptionSpec::new("expiration", OptionKind::Duration, "7d", "how long a token is good"),
        OptionSpec::new("allow_refresh", OptionKind::Boolean, "true", "refresh_jwt may renew tokens"),
        OptionSpec::new(
            "refresh_expiration",
            OptionKind::Duration,
            "30d",
            "no refresh after orig_iat plus this",
        ),
        OptionSpec::new("leeway", OptionKind::Duration, "0s", "clock skew forgiven on exp"),
    ];

    fn new(options: &Options<'_>) -> Result<Self, SchemeError> {
        let key = match options.str_or("algorithm", "HS256")? {
            "HS256" => Key::Hs256(hs256_secret(options)?),
            "EdDSA" => eddsa_key(options)?,
            other => {
                return Err(SchemeError::option(
                    "algorithm",
                    format!("{other:?} is not supported; use \"HS256\" or \"EdDSA\""),
                ))
            }
        };
        let keyword = options.keyword_or("keyword", "Bearer")?.to_owned();
        let realm = options.quotable_or("realm", "api")?;
        let expiration = secs(options.duration("expiration")?.unwrap_or(Duration::from_secs(7 * 86_400)));
        if expiration == 0 {
            return Err(SchemeError::option("expiration", "must be more than zero"));
        }
        let allow_refresh = options.bool_or("allow_refresh", true)?;
        let refresh_expiration =
            secs(options.duration("refresh_expiration")?.unwrap_or(Duration::from_secs(30 * 86_400)));
        let leeway = secs(options.duration("leeway")?.unwrap_or(Duration::ZERO));
        Ok(Jwt {
            key,
            challenge: format!("{keyword} realm=\"{realm}\""),
            keyword,
            expiration,
            refresh: allow_refresh.then_some(refresh_expiration),
            leeway,
        })
    }

    fn authenticate(&self, request: &RequestView<'_>, host: &Host<'_>) -> Result<Outcome, SchemeError> {
        let token = match credentials(request, &self.keyword) {
            Credentials::Absent => return Ok(Outcome::NotAttempted),
            Credentials::Missing => return Ok(Outcome::failed(NO_CREDENTIALS)),
            Credentials::Spaced => return Ok(Outcome::failed(HAS_SPACES)),
            Credentials::Given(token) => token,
        };
        let Ok(token) = std::str::from_utf8(token) else { return Ok(Outcome::failed(DECODE_ERROR)) };
        let claims = match self.decode(token) {
            Ok(claims) => claims,
            Err(reason) => return Ok(Outcome::failed(reason)),
        };
        if claims.username.is_empty() {
            return Ok(Outcome::failed(INVALID_PAYLOAD));
        }
        Ok(match host.find_user(&claims.username)? {
            None => Outcome::failed(NO_USER),
            Some(user) if user.id != claims.user_id => Outcome::failed(NO_USER),
            Some(user) if !user.is_active => Outcome::failed(DISABLED),
            Some(user) if user.generation != claims.generation => Outcome::failed(REVOKED),
            Some(user) => Outcome::authenticated_with(user, "jwt"),
        })
    }

    fn authenticate_header(&self, _request: &RequestView<'_>) -> Option<String> {
        Some(self.challenge.clone())
    }

    fn mint(&self, user: &User, orig_iat: Option<i64>) -> Option<Result<String, SchemeError>> {
        Some(self.encode(user, orig_iat, now()))
    }

    fn inspect(&self, credential: &str) -> Option<Result<Claims, String>> {
        Some(self.decode(credential).map_err(str::to_owned))
    }
}

impl Jwt {
    fn encode(&self, user: &User, orig_iat: Option<i64>, now: i64) -> Result<String, SchemeError> {
        let header = b64url_encode(format!(r#"{{"alg":"{}","typ":"JWT"}}"#, self.key.alg()).as_bytes());
        let exp = now.saturating_add(i64::try_from(self.expiration).unwrap_or(i64::MAX / 2));
        let mut payload = json!({
            "user_id": user.id,
            "username": user.username.as_str(),
            "exp": exp,
            "iat": now,
            "gen": user.generation,
        });
        if self.refresh.is_some() {
            payload["orig_iat"] = json!(orig_iat.unwrap_or(now));
        }
        let input = format!("{header}.{}", b64url_encode(payload.to_string().as_bytes()));
        let signature = b64url_encode(&self.key.sign(input.as_bytes())?);
        Ok(format!("{input}.{signature}"))
    }

    /// Verifies the signature, then the expiry (PyJWT's order), and reads the claims.
    fn decode(&self, token: &str) -> Result<Claims, &'static str> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(DECODE_ERROR);
        };
        let header: Value =
            b64url_decode(header).and_then(|h| serde_json::from_slice(&h).ok()).ok_or(DECODE_ERROR)?;
        if header.get("alg").and_then(Value::as_str) != Some(self.key.alg()) {
            return Err(DECODE_ERROR);
        }
        let signature = b64url_decode(signature).ok_or(DECODE_ERROR)?;
        let input = &token[..token.len() - token.rsplit('.').next().map_or(0, str::len) - 1];
        if !self.key.verify(input.as_bytes(), &signature) {
            return Err(DECODE_ERROR);
        }
        let payload: Value =
            b64url_decode(payload).and_then(|p| serde_json::from_slice(&p).ok()).ok_or(DECODE_ERROR)?;
        let int = |key: &str| payload.get(key).and_then(Value::as_i64);
        let exp = int("exp").ok_or(DECODE_ERROR)?;
        if now() > exp.saturating_add(i64::try_from(self.leeway).unwrap_or(i64::MAX / 2)) {
            return Err(EXPIRED);
        }
        let orig_iat = int("orig_iat").unwrap_or(0);
        let refresh_until = match self.refresh {
            Some(window) if orig_iat > 0 => {
                orig_iat.saturating_add(i64::try_from(window).unwrap_or(i64::MAX / 2))
            }
            _ => 0,
        };
        Ok(Claims {
            user_id: int("user_id").unwrap_or(0),
            username: payload.get("username").and_then(Value::as_str).unwrap_or_default().into(),
            issued_at: int("iat").unwrap_or(0),
            expires: exp,
            orig_iat,
            refresh_until,
            generation: payload.get("gen").and_then(Value::as_u64).unwrap_or(0),
            extra: Default::default(),
        })
    }
}

export_scheme!(Jwt);

#[cfg(test)]
mod tests {
    use authhost_plugin_api::testing::{authenticate, MemoryHost};
    use authhost_plugin_api::{Header, OptionEntry, OptionValue};

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    fn scheme(extra: &[(&str, OptionValue)]) -> Jwt {
        let mut entries = vec![OptionEntry::new("secret", OptionValue::Str(SECRET.into()))];
        entries.extend(extra.iter().map(|(k, v)| OptionEntry::new(*k, v.clone())));
        Jwt::new(&Options::new(&entries)).unwrap()
    }

    fn alice() -> User {
        User::new(1, "alice")
    }

    fn outcome(s: &Jwt, authorization: &str) -> Outcome {
        let host = MemoryHost::new().with_user("alice", None, true, false);
        let headers = [Header::new("authorization", authorization.as_bytes())];
        let request = RequestView::new("GET", "/", "", &headers, "127.0.0.1:1".parse().unwrap());
        authenticate(s, &request, &host).unwrap()
    }

    #[test]
    fn minted_tokens_authenticate_and_read_back() {
        let s = scheme(&[]);
        let token = s.encode(&alice(), None, now()).unwrap();
        assert!(matches!(outcome(&s, &format!("Bearer {token}")), Outcome::Authenticated { .. }));
        let claims = s.decode(&token).unwrap();
        assert_eq!((claims.user_id, claims.username.as_str()), (1, "alice"));
        assert_eq!(claims.refresh_until - claims.orig_iat, 30 * 86_400);
    }

    #[test]
    fn drf_jwt_messages() {
        let s = scheme(&[]);
        assert_eq!(outcome(&s, "Token abc"), Outcome::NotAttempted);
        assert_eq!(outcome(&s, "Bearer"), Outcome::failed(NO_CREDENTIALS));
        assert_eq!(outcome(&s, "Bearer a b"), Outcome::failed(HAS_SPACES));
        assert_eq!(outcome(&s, "Bearer not.a.jwt"), Outcome::failed(DECODE_ERROR));
        let expired = s.encode(&alice(), None, now() - 8 * 86_400).unwrap();
        assert_eq!(outcome(&s, &format!("Bearer {expired}")), Outcome::failed(EXPIRED));
        let other_secret =
            [OptionEntry::new("secret", OptionValue::Str("another secret of at least 32 bytes!".into()))];
        let other = Jwt::new(&Options::new(&other_secret)).unwrap();
        let forged = other.encode(&alice(), None, now()).unwrap();
        assert_eq!(outcome(&s, &format!("Bearer {forged}")), Outcome::failed(DECODE_ERROR));
        let stale = s.encode(&User { generation: 1, ..alice() }, None, now()).unwrap();
        assert_eq!(outcome(&s, &format!("Bearer {stale}")), Outcome::failed(REVOKED));
    }

    #[test]
    fn the_rfc7515_a1_token_verifies_with_its_key_and_not_when_tampered() {
        // RFC 7515 A.1: its key (a JWK `k`), and its token, whose `exp` is in 2011.
        let key = hs256::b64url_decode(
            "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
        )
        .unwrap();
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
                     .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
                     .dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let s = Jwt { key: Key::Hs256(key), ..scheme(&[]) };
        // The signature checks first (PyJWT's order): only then is the 2011 expiry seen.
        assert_eq!(s.decode(token).unwrap_err(), EXPIRED);
        let tampered = token.replace(".dBjf", ".eBjf");
        assert_eq!(s.decode(&tampered).unwrap_err(), DECODE_ERROR);
        let other_key = scheme(&[]);
        assert_eq!(other_key.decode(token).unwrap_err(), DECODE_ERROR);
    }

    fn key_file(name: &str) -> String {
        format!("{}/../../tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn eddsa(files: &[(&str, &str)]) -> Result<Jwt, SchemeError> {
        let mut entries = vec![OptionEntry::new("algorithm", OptionValue::Str("EdDSA".into()))];
        entries.extend(files.iter().map(|(k, f)| OptionEntry::new(*k, OptionValue::Str(key_file(f).into()))));
        Jwt::new(&Options::new(&entries))
    }

    #[test]
    fn eddsa_mints_with_the_private_key_and_verifies_with_the_public_one() {
        let minter = eddsa(&[("private_key_file", "ed25519.pem")]).unwrap();
        let token = minter.encode(&alice(), None, now()).unwrap();
        assert!(token.starts_with(&b64url_encode(br#"{"alg":"EdDSA","typ":"JWT"}"#)));
        let verifier = eddsa(&[("public_key_file", "ed25519.pub.pem")]).unwrap();
        assert!(matches!(outcome(&verifier, &format!("Bearer {token}")), Outcome::Authenticated { .. }));
        assert!(verifier.mint(&alice(), None).unwrap().is_err(), "no private key, no minting");
        // An HS256 token is refused by an EdDSA scheme (no algorithm confusion).
        let hs = scheme(&[]).encode(&alice(), None, now()).unwrap();
        assert_eq!(verifier.decode(&hs).unwrap_err(), DECODE_ERROR);
        let mut forged = token.clone();
        forged.replace_range(forged.len() - 4.., "AAAA");
        assert_eq!(verifier.decode(&forged).unwrap_err(), DECODE_ERROR);
    }

    #[test]
    fn eddsa_key_problems_name_the_option() {
        assert_eq!(eddsa(&[]).unwrap_err().option_key(), Some("private_key_file"));
        let bad = eddsa(&[("public_key_file", "README.md")]).unwrap_err();
        assert_eq!(bad.option_key(), Some("public_key_file"));
        let missing = eddsa(&[("private_key_file", "nonesuch.pem")]).unwrap_err();
        assert_eq!(missing.option_key(), Some("private_key_file"));
    }

    #[test]
    fn leeway_forgives_a_little_expiry() {
        let s = scheme(&[("expiration", OptionValue::Int(10)), ("leeway", OptionValue::Int(30))]);
        let token = s.encode(&alice(), None, now() - 20).unwrap();
        assert!(matches!(outcome(&s, &format!("Bearer {token}")), Outcome::Authenticated { .. }));
    }

    #[test]
    fn a_missing_or_short_secret_stops_start_up() {
        let short = [OptionEntry::new("secret", OptionValue::Str("short".into()))];
        assert_eq!(Jwt::new(&Options::new(&short)).unwrap_err().option_key(), Some("secret"));
        assert_eq!(Jwt::new(&Options::new(&[])).unwrap_err().option_key(), Some("secret_env"));
        let unset = [OptionEntry::new("secret_env", OptionValue::Str("AUTHHOST_TEST_UNSET_SECRET".into()))];
        assert_eq!(Jwt::new(&Options::new(&unset)).unwrap_err().option_key(), Some("secret_env"));
    }
}
