//! Token authentication (DRF's `TokenAuthentication`): `Authorization: <keyword> <key>`.
//! The keyword is `Token` by default; the Bearer variant is this plugin with
//! `keyword = "Bearer"`. The host keeps only a digest of each key.
//!
//! Per-client tokens (knox's model), issued by the host's `login_token` view, follow the
//! scheme's options: `ttl` (absent: never expire), `refresh_on_use` (each use moves the
//! expiry to now + ttl, at most once a minute), `max_ttl` (no use extends a token past its
//! creation + max_ttl), `limit_per_user` (live tokens a user may hold: 100 unless set; 0 for
//! no limit), and `prefix` (put before new keys so that secret
//! scanners can spot them). An expired token answers `Invalid token.` and is purged.

use authhost_plugin_api::abi_stable::std_types::ROption;
use authhost_plugin_api::authorization::{credentials, Credentials};
use authhost_plugin_api::{
    export_scheme, Host, OptionKind, OptionSpec, Options, Outcome, RequestView, Scheme, SchemeError,
    TokenPolicy,
};

/// Live per-client tokens a user may hold unless `limit_per_user` says otherwise: finite, so
/// that no client can fill the store with one account's tokens.
const DEFAULT_LIMIT_PER_USER: i64 = 100;

const NO_CREDENTIALS: &str = "Invalid token header. No credentials provided.";
const HAS_SPACES: &str = "Invalid token header. Token string should not contain spaces.";
const INVALID_CHARACTERS: &str = "Invalid token header. Token string should not contain invalid characters.";
const INVALID: &str = "Invalid token.";
const INACTIVE: &str = "User inactive or deleted.";

#[derive(Debug)]
pub struct Token {
    keyword: String,
    policy: TokenPolicy,
}

impl Scheme for Token {
    const OPTIONS: &'static [OptionSpec] = &[
        OptionSpec::new(
            "keyword",
            OptionKind::Text,
            "Token",
            "the Authorization keyword (Bearer for the Bearer variant)",
        ),
        OptionSpec::new(
            "ttl",
            OptionKind::Duration,
            "",
            "how long a login_token token lives; unset: forever",
        ),
        OptionSpec::new(
            "refresh_on_use",
            OptionKind::Boolean,
            "false",
            "each use moves the expiry to now + ttl",
        ),
        OptionSpec::new(
            "max_ttl",
            OptionKind::Duration,
            "",
            "no use extends a token past this after its creation",
        ),
        OptionSpec::new(
            "limit_per_user",
            OptionKind::Integer,
            "",
            "live tokens a user may hold; unset: no limit",
        ),
        OptionSpec::new("prefix", OptionKind::Text, "", "put before new keys (ah_), for secret scanners"),
    ];

    fn new(options: &Options<'_>) -> Result<Self, SchemeError> {
        let keyword = options.keyword_or("keyword", "Token")?;
        let secs = |key: &'static str| -> Result<u64, SchemeError> {
            Ok(options.duration(key)?.map_or(0, |d| d.as_secs()))
        };
        let ttl = secs("ttl")?;
        let max_ttl = secs("max_ttl")?;
        let refresh_on_use = options.bool_or("refresh_on_use", false)?;
        if refresh_on_use && ttl == 0 {
            return Err(SchemeError::option(
                "refresh_on_use",
                "needs a ttl: tokens that never expire need no refresh",
            ));
        }
        if max_ttl != 0 && max_ttl < ttl {
            return Err(SchemeError::option("max_ttl", "must be at least ttl"));
        }
        let limit = options.int("limit_per_user")?.unwrap_or(DEFAULT_LIMIT_PER_USER);
        let limit_per_user = u32::try_from(limit).map_err(|_| {
            SchemeError::option("limit_per_user", "must be 0 (no limit) or a positive number")
        })?;
        let prefix = options.str_or("prefix", "")?;
        if prefix.len() > 16 || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(SchemeError::option("prefix", "at most 16 letters, digits, '_' or '-'"));
        }
        let policy = TokenPolicy {
            ttl_secs: ttl,
            refresh_on_use,
            max_ttl_secs: max_ttl,
            limit_per_user,
            prefix: prefix.into(),
        };
        Ok(Token { keyword: keyword.to_owned(), policy })
    }

    fn authenticate(&self, request: &RequestView<'_>, host: &Host<'_>) -> Result<Outcome, SchemeError> {
        let key = match credentials(request, &self.keyword) {
            Credentials::Absent => return Ok(Outcome::NotAttempted),
            Credentials::Missing => return Ok(Outcome::failed(NO_CREDENTIALS)),
            Credentials::Spaced => return Ok(Outcome::failed(HAS_SPACES)),
            Credentials::Given(key) => key,
        };
        let Ok(key) = std::str::from_utf8(key) else {
            return Ok(Outcome::failed(INVALID_CHARACTERS));
        };
        Ok(match host.find_token(key)? {
            None => Outcome::failed(INVALID),
            Some(token) if !token.user.is_active => Outcome::failed(INACTIVE),
            // The token's id as the host gave it: no copy.
            Some(token) => Outcome::Authenticated { user: token.user, auth: ROption::RSome(token.token_id) },
        })
    }

    fn authenticate_header(&self, _request: &RequestView<'_>) -> Option<String> {
        Some(self.keyword.clone())
    }

    fn token_policy(&self) -> Option<TokenPolicy> {
        Some(self.policy.clone())
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

    #[test]
    fn the_token_policy_comes_from_the_options_and_is_checked() {
        let entries = [
            OptionEntry::new("ttl", OptionValue::Str("10h".into())),
            OptionEntry::new("refresh_on_use", OptionValue::Bool(true)),
            OptionEntry::new("max_ttl", OptionValue::Str("7d".into())),
            OptionEntry::new("limit_per_user", OptionValue::Int(5)),
            OptionEntry::new("prefix", OptionValue::Str("ah_".into())),
        ];
        let policy = Token::new(&Options::new(&entries)).unwrap().token_policy().unwrap();
        assert_eq!(
            policy,
            TokenPolicy {
                ttl_secs: 36_000,
                refresh_on_use: true,
                max_ttl_secs: 604_800,
                limit_per_user: 5,
                prefix: "ah_".into()
            }
        );
        let unset = Token::new(&Options::new(&[])).unwrap().token_policy().unwrap();
        assert_eq!(unset.limit_per_user, 100, "a finite limit unless set");
        let refresh_only = [OptionEntry::new("refresh_on_use", OptionValue::Bool(true))];
        assert_eq!(
            Token::new(&Options::new(&refresh_only)).unwrap_err().option_key(),
            Some("refresh_on_use")
        );
        let short_max = [
            OptionEntry::new("ttl", OptionValue::Str("10h".into())),
            OptionEntry::new("max_ttl", OptionValue::Str("1h".into())),
        ];
        assert_eq!(Token::new(&Options::new(&short_max)).unwrap_err().option_key(), Some("max_ttl"));
        let bad_prefix = [OptionEntry::new("prefix", OptionValue::Str("a b".into()))];
        assert_eq!(Token::new(&Options::new(&bad_prefix)).unwrap_err().option_key(), Some("prefix"));
    }
}
