//! HTTP Basic authentication (DRF's `BasicAuthentication`): `Authorization: Basic
//! base64(username:password)`, checked against argon2id hashes by the host.
//!
//! Options: `realm` (`"api"`) for the challenge; `cache_ttl` (off by default), how long the
//! host may answer a pair it verified from memory instead of paying argon2 again;
//! `login_field` (`"username"`, or `"email"` to log in with the e-mail address: one no user
//! or several users have fails like a wrong password, at the same cost).

use std::time::Duration;

use authhost_plugin_api::authorization::{credentials, Credentials};
use authhost_plugin_api::request::latin1_or_utf8;
use authhost_plugin_api::{
    export_scheme, Host, LoginField, OptionKind, OptionSpec, Options, Outcome, RequestView, Scheme,
    SchemeError,
};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

const NO_CREDENTIALS: &str = "Invalid basic header. No credentials provided.";
const HAS_SPACES: &str = "Invalid basic header. Credentials string should not contain spaces.";
const NOT_BASE64: &str = "Invalid basic header. Credentials not correctly base64 encoded.";
const INVALID: &str = "Invalid username/password.";

#[derive(Debug)]
pub struct Basic {
    challenge: String,
    cache_ttl: Duration,
    login_field: LoginField,
}

impl Scheme for Basic {
    const OPTIONS: &'static [OptionSpec] = &[
        OptionSpec::new("realm", OptionKind::Text, "api", "the realm of the WWW-Authenticate challenge"),
        OptionSpec::new("cache_ttl", OptionKind::Duration, "0s", "how long a verified pair skips argon2"),
        OptionSpec::new(
            "login_field",
            OptionKind::Text,
            "username",
            "\"username\" or \"email\": what the login is",
        ),
    ];

    fn new(options: &Options<'_>) -> Result<Self, SchemeError> {
        let realm = options.quotable_or("realm", "api")?;
        let field = options.str_or("login_field", "username")?;
        let login_field = LoginField::parse(field).ok_or_else(|| {
            SchemeError::option("login_field", format!("{field:?} is not \"username\" or \"email\""))
        })?;
        Ok(Basic {
            challenge: format!("Basic realm=\"{realm}\""),
            cache_ttl: options.duration("cache_ttl")?.unwrap_or(Duration::ZERO),
            login_field,
        })
    }

    fn authenticate(&self, request: &RequestView<'_>, host: &Host<'_>) -> Result<Outcome, SchemeError> {
        let encoded = match credentials(request, "basic") {
            Credentials::Absent => return Ok(Outcome::NotAttempted),
            Credentials::Missing => return Ok(Outcome::failed(NO_CREDENTIALS)),
            Credentials::Spaced => return Ok(Outcome::failed(HAS_SPACES)),
            Credentials::Given(encoded) => encoded,
        };
        // Strict, as RFC 7617 asks: padding required, no junk, no stray bits under the
        // padding (Python's decoder, which DRF uses, skips junk characters).
        let Ok(decoded) = BASE64.decode(encoded) else {
            return Ok(Outcome::failed(NOT_BASE64));
        };
        // Not UTF-8: tried as Latin-1, as DRF does, so it fails as a bad password.
        let text = latin1_or_utf8(&decoded);
        let Some((login, password)) = text.split_once(':') else {
            return Ok(Outcome::failed(NOT_BASE64));
        };
        // Inactive users fail like wrong passwords (Django's ModelBackend refuses them).
        Ok(match host.verify_login_cached(self.login_field, login, password, self.cache_ttl)? {
            Some(user) if user.is_active => Outcome::authenticated(user),
            _ => Outcome::failed(INVALID),
        })
    }

    fn authenticate_header(&self, _request: &RequestView<'_>) -> Option<String> {
        Some(self.challenge.clone())
    }
}

export_scheme!(Basic);

#[cfg(test)]
mod tests {
    use authhost_plugin_api::testing::{authenticate, MemoryHost};
    use authhost_plugin_api::Header;

    use super::*;

    #[test]
    fn base64_is_decoded_strictly() {
        let decode = |s: &[u8]| BASE64.decode(s).ok();
        assert_eq!(decode(b"YWxpY2U6cHc=").as_deref(), Some(&b"alice:pw"[..]));
        assert_eq!(decode(b"YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(decode(b"").as_deref(), Some(&b""[..]));
        assert_eq!(decode(b"YWxpY2U6cHc"), None, "missing padding");
        assert_eq!(decode(b"YW*pY2U6cHc="), None, "junk character");
        assert_eq!(decode(b"YR=="), None, "non-zero bits under the padding");
        assert_eq!(decode(b"YQ==YQ=="), None, "padding in the middle");
        assert_eq!(decode(b"Y==="), None, "too much padding");
    }

    fn outcome(authorization: &[u8]) -> Outcome {
        let scheme = Basic::new(&Options::new(&[])).unwrap();
        let host = MemoryHost::new().with_user("alice", Some("pw:with:colons"), true, false).with_user(
            "j\u{f6}rg",
            Some("pw"),
            true,
            false,
        );
        let headers = [Header::new("authorization", authorization)];
        let request = RequestView::new("GET", "/", "", &headers, "127.0.0.1:1".parse().unwrap());
        authenticate(&scheme, &request, &host).unwrap()
    }

    #[test]
    fn follows_drf_for_every_header_shape() {
        assert_eq!(outcome(b"Token abc"), Outcome::NotAttempted);
        assert_eq!(outcome(b"Basicabc"), Outcome::NotAttempted);
        assert_eq!(outcome(b"Basic "), Outcome::failed(NO_CREDENTIALS));
        assert_eq!(outcome(b"Basic a b"), Outcome::failed(HAS_SPACES));
        assert_eq!(outcome(b"Basic !!!!"), Outcome::failed(NOT_BASE64));
        assert_eq!(outcome(b"Basic YWxpY2U="), Outcome::failed(NOT_BASE64)); // "alice", no colon
        assert!(matches!(outcome(b"bAsIc\tYWxpY2U6cHc6d2l0aDpjb2xvbnM="), Outcome::Authenticated { .. }));
        assert_eq!(outcome(b"Basic YWxpY2U6d3Jvbmc="), Outcome::failed(INVALID));
    }

    #[test]
    fn latin1_credentials_are_tried_as_latin1() {
        // "j\xf6rg:pw" in Latin-1 is not UTF-8; DRF decodes it as Latin-1.
        assert!(matches!(outcome(b"Basic avZyZzpwdw=="), Outcome::Authenticated { .. }));
    }

    #[test]
    fn login_by_email_matches_one_user_regardless_of_case() {
        use authhost_plugin_api::{OptionEntry, OptionValue};
        let entries = [OptionEntry::new("login_field", OptionValue::Str("email".into()))];
        let scheme = Basic::new(&Options::new(&entries)).unwrap();
        let host = || {
            MemoryHost::new()
                .with_user("alice", Some("pw"), true, false)
                .with_email("alice", "Alice@Example.com")
                .with_user("bob", Some("pw"), true, false)
                .with_user("carol", Some("pw"), true, false)
                .with_email("bob", "shared@example.com")
                .with_email("carol", "shared@example.com")
                .answering_later()
        };
        let basic = |encoded: &str| {
            let value = format!("Basic {encoded}");
            let headers = [Header::new("authorization", value.as_bytes())];
            let request = RequestView::new("GET", "/", "", &headers, "127.0.0.1:1".parse().unwrap());
            authenticate(&scheme, &request, &host()).unwrap()
        };
        match basic("YWxpY2VAZXhhbXBsZS5jb206cHc=") {
            // alice@example.com:pw
            Outcome::Authenticated { user, .. } => assert_eq!(user.username.as_str(), "alice"),
            other => panic!("{other:?}"),
        }
        assert_eq!(basic("YWxpY2U6cHc="), Outcome::failed(INVALID), "alice:pw: the username is no login now");
        assert_eq!(
            basic("c2hhcmVkQGV4YW1wbGUuY29tOnB3"),
            Outcome::failed(INVALID),
            "an address two users share"
        );
        let bad = [OptionEntry::new("login_field", OptionValue::Str("phone".into()))];
        assert_eq!(Basic::new(&Options::new(&bad)).unwrap_err().option_key(), Some("login_field"));
    }

    #[test]
    fn the_realm_is_configurable_and_checked() {
        use authhost_plugin_api::{OptionEntry, OptionValue};
        let entries = [OptionEntry::new("realm", OptionValue::Str("staff".into()))];
        let scheme = Basic::new(&Options::new(&entries)).unwrap();
        let request = RequestView::new("GET", "/", "", &[], "127.0.0.1:1".parse().unwrap());
        assert_eq!(scheme.authenticate_header(&request).as_deref(), Some("Basic realm=\"staff\""));
        let bad = [OptionEntry::new("realm", OptionValue::Str("a\"b".into()))];
        assert_eq!(Basic::new(&Options::new(&bad)).unwrap_err().option_key(), Some("realm"));
    }
}
