//! Token keys. A key the host issues is derived from a random nonce under the host's token
//! secret (keyed BLAKE2s), so the store keeps only the key's SHA-256 digest and the nonce:
//! a copy of the database alone reveals no key, yet the host can hand a user's existing key
//! out again, as DRF's `obtain_auth_token` and `drf_create_token` do. Imported keys
//! (`token create --key`) keep only their digest.

use std::io::Write;
use std::path::Path;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use blake2::digest::{KeyInit, Mac};
use blake2::Blake2sMac256;

use crate::error::Error;
use crate::services::token_digest;
use crate::store::{Backend, NewToken, TokenGot, TokenSet};

/// The environment variable that, when set, holds the token secret (64 hex characters).
pub const SECRET_ENV: &str = "AUTHHOST_TOKEN_SECRET";

/// The secret keys are derived under.
#[derive(Clone)]
pub struct TokenSecret {
    key: [u8; 32],
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecret(..)")
    }
}

impl TokenSecret {
    /// From `$AUTHHOST_TOKEN_SECRET`, else from `file`, which is created (mode 0600) with a
    /// new random secret if it does not exist.
    pub fn load(file: &Path) -> Result<TokenSecret, Error> {
        if let Ok(hex) = std::env::var(SECRET_ENV) {
            return parse_hex(hex.trim()).ok_or_else(|| {
                Error::config(format!("${SECRET_ENV} must be 64 hex characters (32 random bytes)"))
            });
        }
        match authhost_plugin_api::files::read_text(file, authhost_plugin_api::files::MAX_SMALL_FILE) {
            Ok(text) => parse_hex(text.trim()).ok_or_else(|| {
                Error::config(format!(
                    "{}: the token secret must be 64 hex characters; delete the file to make a new one \
                     (every issued key then stops working)",
                    file.display()
                ))
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => create(file),
            Err(err) => {
                Err(Error::config(format!("{}: cannot read the token secret: {err}", file.display())))
            }
        }
    }

    /// The key a nonce stands for: 40 hex characters (DRF's format).
    pub fn derive(&self, nonce: &[u8]) -> String {
        let mut mac = <Blake2sMac256 as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("a 32-byte key fits Blake2s"));
        mac.update(b"authhost token v1");
        mac.update(nonce);
        hex(&mac.finalize().into_bytes()[..20])
    }

    /// A new nonce from the OS's CSPRNG, and its key.
    pub fn issue(&self) -> ([u8; 16], String) {
        let mut nonce = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        let key = self.derive(&nonce);
        (nonce, key)
    }
}

fn create(file: &Path) -> Result<TokenSecret, Error> {
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(file) {
        Ok(mut out) => {
            writeln!(out, "{}", hex(&key)).map_err(|e| {
                Error::io(format!("{}: cannot write the token secret", file.display())).with_source(e)
            })?;
            Ok(TokenSecret { key })
        }
        // Another process created it first: use theirs.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => TokenSecret::load(file),
        Err(err) => {
            Err(Error::io(format!("{}: cannot create the token secret", file.display())).with_source(err))
        }
    }
}

fn parse_hex(text: &str) -> Option<TokenSecret> {
    if text.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(TokenSecret { key })
}

/// A random key for a per-client token: `prefix` and 40 hex characters from the OS's
/// CSPRNG. Never derived: the host cannot show it again, and never needs to.
pub fn random_key(prefix: &str) -> String {
    let mut bytes = [0u8; 20];
    OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex(&bytes))
}

/// Unix seconds as RFC 3339 in UTC (`2026-11-23T15:04:05Z`), by `humantime`; a time
/// before 1970 (no expiry is) reads as 1970.
pub fn rfc3339(secs: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The user's key, made if they have none (DRF's `Token.objects.get_or_create`). `None`
/// when there is no such user.
pub async fn get_or_create(
    store: &dyn Backend,
    secret: &TokenSecret,
    username: &str,
) -> Result<Option<String>, Error> {
    let (nonce, key) = secret.issue();
    let digest = token_digest(&key);
    Ok(
        match store.get_or_create_token(username, &NewToken { digest: &digest, nonce: Some(&nonce) }).await? {
            TokenGot::Existing { nonce } => Some(secret.derive(&nonce)),
            TokenGot::Created => Some(key),
            TokenGot::NoSuchUser => None,
        },
    )
}

/// Replaces the user's tokens with a new key. `None` when there is no such user.
pub async fn regenerate(
    store: &dyn Backend,
    secret: &TokenSecret,
    username: &str,
) -> Result<Option<String>, Error> {
    let (nonce, key) = secret.issue();
    let digest = token_digest(&key);
    Ok(match store.create_token(username, &NewToken { digest: &digest, nonce: Some(&nonce) }, true).await? {
        TokenSet::Created => Some(key),
        TokenSet::NoSuchUser | TokenSet::Exists => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_40_hex_and_depend_on_secret_and_nonce() {
        let a = parse_hex(&"11".repeat(32)).unwrap();
        let b = parse_hex(&"22".repeat(32)).unwrap();
        let key = a.derive(b"nonce");
        assert_eq!(key.len(), 40);
        assert!(key.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(key, a.derive(b"nonce"));
        assert_ne!(key, a.derive(b"other"));
        assert_ne!(key, b.derive(b"nonce"));
        let (nonce, issued) = a.issue();
        assert_eq!(issued, a.derive(&nonce));
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_446_245), "2026-11-23T15:04:05Z");
    }

    #[test]
    fn random_keys_carry_the_prefix() {
        let key = random_key("ah_");
        assert!(key.starts_with("ah_") && key.len() == 43);
        assert_ne!(key, random_key("ah_"));
    }

    #[test]
    fn a_bad_secret_is_refused() {
        assert!(parse_hex("abc").is_none());
        assert!(parse_hex(&"zz".repeat(32)).is_none());
    }
}
