//! Session keys, CSRF secrets and the clock sessions expire by.

use std::time::{SystemTime, UNIX_EPOCH};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use authhost_plugin_api::csrf;

/// Now, in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `len` characters drawn uniformly from `alphabet` with the OS's CSPRNG.
fn random_string(alphabet: &[u8], len: usize) -> String {
    // Rejection sampling: no modulo bias.
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        OsRng.fill_bytes(&mut buf);
        for &b in &buf {
            if usize::from(b) < limit && out.len() < len {
                out.push(char::from(alphabet[usize::from(b) % alphabet.len()]));
            }
        }
    }
    out
}

/// A session key: 32 characters of `[a-z0-9]`, Django's format.
pub fn new_session_key() -> String {
    random_string(b"abcdefghijklmnopqrstuvwxyz0123456789", 32)
}

/// A CSRF secret: 32 characters of `[a-zA-Z0-9]`, Django's format.
pub fn new_csrf_secret() -> String {
    random_string(csrf::ALLOWED, csrf::SECRET_LENGTH)
}

/// A masked token for `secret` with a fresh salt, as Django's `get_token` returns.
pub fn masked_token(secret: &str) -> String {
    csrf::mask(secret, &new_csrf_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_secrets_have_djangos_shape() {
        let key = new_session_key();
        assert_eq!(key.len(), 32);
        assert!(key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        let secret = new_csrf_secret();
        assert!(csrf::check_format(&secret).is_ok());
        assert_ne!(secret, new_csrf_secret());
        assert_eq!(csrf::unmask(&masked_token(&secret)), secret);
    }
}
