//! Password hashes imported from Django (`authhost import django`), verified as Django's
//! hashers verify them: `pbkdf2_sha256` (Django's default) and `pbkdf2_sha1`, `argon2`,
//! `bcrypt_sha256` and `bcrypt`, and `scrypt`. A match is upgraded to authhost's argon2id
//! by the caller, as Django's `check_password` upgrades a hash on a successful login.
//! Unusable passwords (`!…`, Django's `set_unusable_password`) and empty ones never match.
//! Blocking: run on the password pool.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use subtle::ConstantTimeEq as _;

use crate::error::Error;

/// Whether `hash` is in one of Django's formats (not authhost's own argon2id PHC string).
pub fn is_django(hash: &str) -> bool {
    !hash.starts_with('$')
}

/// Whether `encoded` can never match: empty, or Django's unusable password (`!...`).
pub fn is_unusable(encoded: &str) -> bool {
    encoded.is_empty() || encoded.starts_with('!')
}

/// Whether `password` matches Django's `encoded`. A hash in a format Django does not make,
/// or one whose fields do not parse, is an error: the store holds something broken.
pub fn verify(encoded: &str, password: &str) -> Result<bool, Error> {
    if is_unusable(encoded) {
        return Ok(false);
    }
    let broken = |why: &str| Error::store(format!("a stored password hash (Django's format) {why}"));
    let (algorithm, rest) = encoded.split_once('$').ok_or_else(|| broken("has no algorithm"))?;
    match algorithm {
        "pbkdf2_sha256" | "pbkdf2_sha1" => {
            // pbkdf2_sha256$ITERATIONS$SALT$BASE64(HASH)
            let mut fields = rest.splitn(3, '$');
            let (Some(iterations), Some(salt), Some(hash)) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(broken("lacks a field (pbkdf2)"));
            };
            let iterations: u32 = iterations.parse().map_err(|_| broken("has a bad iteration count"))?;
            let expected = STANDARD.decode(hash).map_err(|_| broken("has a bad base64 hash"))?;
            let mut derived = vec![0u8; expected.len()];
            if algorithm == "pbkdf2_sha256" {
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
                    password.as_bytes(),
                    salt.as_bytes(),
                    iterations,
                    &mut derived,
                );
            } else {
                pbkdf2::pbkdf2_hmac::<sha1::Sha1>(
                    password.as_bytes(),
                    salt.as_bytes(),
                    iterations,
                    &mut derived,
                );
            }
            Ok(!expected.is_empty() && bool::from(derived.ct_eq(&expected)))
        }
        "argon2" => {
            // "argon2" + argon2-cffi's PHC string: "argon2$argon2id$v=19$m=102400,t=2,p=8$SALT$HASH".
            use argon2::password_hash::{Error as HashError, PasswordHash, PasswordVerifier as _};
            let phc = format!("${rest}");
            let parsed =
                PasswordHash::new(&phc).map_err(|e| broken(&format!("does not parse (argon2): {e}")))?;
            match argon2::Argon2::default().verify_password(password.as_bytes(), &parsed) {
                Ok(()) => Ok(true),
                Err(HashError::Password) => Ok(false),
                Err(e) => Err(broken(&format!("cannot be checked (argon2): {e}"))),
            }
        }
        "bcrypt_sha256" | "bcrypt" => {
            // bcrypt_sha256 hashes the hex SHA-256 of the password (bcrypt reads 72 bytes
            // at most); bcrypt the password itself.
            let secret = if algorithm == "bcrypt_sha256" {
                use sha2::Digest as _;
                let digest = sha2::Sha256::digest(password.as_bytes());
                digest.iter().map(|b| format!("{b:02x}")).collect::<String>()
            } else {
                password.to_owned()
            };
            bcrypt::verify(secret, rest).map_err(|e| broken(&format!("cannot be checked (bcrypt): {e}")))
        }
        "scrypt" => {
            // scrypt$N$SALT$r$p$BASE64(HASH), 64 bytes.
            let fields: Vec<&str> = rest.splitn(5, '$').collect();
            let [n, salt, r, p, hash] = fields[..] else { return Err(broken("lacks a field (scrypt)")) };
            let number = |text: &str| text.parse::<u32>().map_err(|_| broken("has a bad parameter (scrypt)"));
            let (n, r, p) = (number(n)?, number(r)?, number(p)?);
            if !n.is_power_of_two() || n < 2 {
                return Err(broken("has a work factor that is not a power of two (scrypt)"));
            }
            let expected = STANDARD.decode(hash).map_err(|_| broken("has a bad base64 hash"))?;
            let params = scrypt::Params::new(n.ilog2() as u8, r, p, expected.len())
                .map_err(|e| broken(&format!("has parameters scrypt refuses: {e}")))?;
            let mut derived = vec![0u8; expected.len()];
            scrypt::scrypt(password.as_bytes(), salt.as_bytes(), &params, &mut derived)
                .map_err(|e| broken(&format!("cannot be checked (scrypt): {e}")))?;
            Ok(!expected.is_empty() && bool::from(derived.ct_eq(&expected)))
        }
        other => Err(Error::store(format!(
            "a stored password hash does not parse: {other:?} is not a hasher authhost knows (argon2id, or \
             Django's pbkdf2_sha256, pbkdf2_sha1, argon2, bcrypt_sha256, bcrypt, scrypt)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Django's own hashes are checked end to end in tests/django_import.rs (a database made
    // by Django itself); these pin the primitives to the RFCs' vectors.
    #[test]
    fn unusable_and_empty_passwords_never_match_and_unknown_formats_are_errors() {
        assert!(!verify("!OiFnB3fL0pUxZT1t1gTn0ULkqWQqJXq2Qe8fd0tD", "").unwrap());
        assert!(!verify("", "").unwrap());
        assert!(verify("md5$salt$abc", "s3cret").is_err());
        assert!(verify("pbkdf2_sha256$x$salt$abc", "s3cret").is_err());
        assert!(is_django("pbkdf2_sha256$1$s$h") && !is_django("$argon2id$v=19$m=19456,t=2,p=1$a$b"));
    }

    #[test]
    fn pbkdf2_sha256_matches_the_rfc_7914_test_vector() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256("passwd", "salt", 1, 64).
        let expected =
            "VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLxJypzM8Xm2RZkWZLOdd+8xfHG4RbHjC9UJESBB06GXgw==";
        assert!(verify(&format!("pbkdf2_sha256$1$salt${expected}"), "passwd").unwrap());
        assert!(!verify(&format!("pbkdf2_sha256$1$salt${expected}"), "passwe").unwrap());
    }

    #[test]
    fn scrypt_matches_the_rfc_7914_test_vector() {
        // RFC 7914 section 12: scrypt("password", "NaCl", N=1024, r=8, p=16, 64).
        let expected =
            "/bq+HJ00cgB4VucZDQHp/nxq18vII3gw53N2Y0s3MWIurzDZLiKjiG/xCSedmDDaxyevuUqD7m2DYMvfoswGQA==";
        assert!(verify(&format!("scrypt$1024$NaCl$8$16${expected}"), "password").unwrap());
        assert!(!verify(&format!("scrypt$1024$NaCl$8$16${expected}"), "passwore").unwrap());
    }
}
