//! Token authentication (DRF's `TokenAuthentication`): `Authorization: <keyword> <key>`.
//! The keyword is `Token` by default; the Bearer variant is this plugin with
//! `keyword = "Bearer"`. The host keeps only a digest of each key.

use authhost_plugin_api::authorization::{authorization_parts, keyword_matches};
use authhost_plugin_api::{export_scheme, Host, Options, Outcome, RequestView, Scheme, SchemeError};

const NO_CREDENTIALS: &str = "Invalid token header. No credentials provided.";
const HAS_SPACES: &str = "Invalid token header. Token string should not contain spaces.";
const INVALID_CHARACTERS: &str = "Invalid token header. Token string should not contain invalid characters.";
const INVALID: &str = "Invalid token.";
const INACTIVE: &str = "User inactive or deleted.";

#[derive(Debug)]
pub struct Token {
    keyword: String,
}

impl Scheme for Token {
    fn new(options: &Options<'_>) -> Result<Self, SchemeError> {
        let keyword = options.str_or("keyword", "Token")?;
        if keyword.is_empty() || !keyword.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SchemeError::option(
                "keyword",
                "must be one word of visible ASCII, like \"Token\" or \"Bearer\"",
            ));
        }
        Ok(Token { keyword: keyword.to_owned() })
    }

    fn authenticate(&self, request: &RequestView<'_>, host: &Host<'_>) -> Result<Outcome, SchemeError> {
        let parts = authorization_parts(request);
        if !keyword_matches(&parts, &self.keyword) {
            return Ok(Outcome::NotAttempted);
        }
        let key = match parts.as_slice() {
            [_] => return Ok(Outcome::failed(NO_CREDENTIALS)),
            [_, key] => key,
            _ => return Ok(Outcome::failed(HAS_SPACES)),
        };
        let Ok(key) = std::str::from_utf8(key) else {
            return Ok(Outcome::failed(INVALID_CHARACTERS));
        };
        Ok(match host.find_token(key)? {
            None => Outcome::failed(INVALID),
            Some(token) if !token.user.is_active => Outcome::failed(INACTIVE),
            Some(token) => Outcome::authenticated_with(token.user, token.token_id.to_string()),
        })
    }

    fn authenticate_header(&self, _request: &RequestView<'_>) -> Option<String> {
        Some(self.keyword.clone())
    }
}

export_scheme!(Token);

#[cfg(test)]
mod tests {
    use authhost_plugin_api::testing::{authenticate, MemoryHost};
    use authhost_plugin_api::{Header, OptionEntry, OptionValue};

    use super::*;

    const KEY: &str = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b";

    fn outcome(keyword: &str, authorization: &[u8]) -> Outcome {
        let entries = [OptionEntry::new("keyword", OptionValue::Str(keyword.into()))];
        let scheme = Token::new(&Options::new(&entries)).unwrap();
        let host = MemoryHost::new()
            .with_user("alice", None, true, false)
            .with_user("gone", None, false, false)
            .with_token(KEY, "alice")
            .with_token("inactivekey", "gone");
        let headers = [Header::new("authorization", authorization)];
        let request = RequestView::new("GET", "/", "", &headers, "127.0.0.1:1".parse().unwrap());
        authenticate(&scheme, &request, &host).unwrap()
    }

    #[test]
    fn follows_drf_for_every_header_shape() {
        assert_eq!(outcome("Token", b"Basic abc"), Outcome::NotAttempted);
        assert_eq!(outcome("Token", b"Bearer abc"), Outcome::NotAttempted);
        assert_eq!(outcome("Token", b"Token"), Outcome::failed(NO_CREDENTIALS));
        assert_eq!(outcome("Token", b"Token a b"), Outcome::failed(HAS_SPACES));
        assert_eq!(outcome("Token", b"Token \xff\xfe"), Outcome::failed(INVALID_CHARACTERS));
        assert_eq!(outcome("Token", b"Token nope"), Outcome::failed(INVALID));
        assert_eq!(outcome("Token", b"Token inactivekey"), Outcome::failed(INACTIVE));
        assert!(matches!(outcome("Token", format!("token {KEY}").as_bytes()), Outcome::Authenticated { .. }));
        assert!(matches!(
            outcome("Bearer", format!("Bearer {KEY}").as_bytes()),
            Outcome::Authenticated { .. }
        ));
    }

    #[test]
    fn the_challenge_is_the_keyword() {
        let entries = [OptionEntry::new("keyword", OptionValue::Str("Bearer".into()))];
        let scheme = Token::new(&Options::new(&entries)).unwrap();
        let request = RequestView::new("GET", "/", "", &[], "127.0.0.1:1".parse().unwrap());
        assert_eq!(scheme.authenticate_header(&request).as_deref(), Some("Bearer"));
        let bad = [OptionEntry::new("keyword", OptionValue::Str("Two words".into()))];
        assert_eq!(Token::new(&Options::new(&bad)).unwrap_err().option_key(), Some("keyword"));
    }
}
