//! Services the host hands a scheme for one call: users and passwords, later tokens and
//! sessions. Plugins never open the store themselves.
//!
//! Every service answers at once. When the answer is not in the host's memory the service
//! records what it needs and returns [`HostErrorKind::Pending`]; the scheme passes that on
//! with `?`, the host fetches the answer off its async workers and calls the scheme again.
//! So `authenticate` must not act on the world before its last host call (none of ours do).

use std::time::Duration;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::sabi_types::RRef;
use abi_stable::std_types::{ROption, RResult, RString, RVec};
use abi_stable::StableAbi;

use crate::outcome::User;
use crate::scheme::SchemeError;

/// Why a host service gave no answer: a code, not an enum, so that a later host can send
/// a kind an earlier plugin does not know (which reads it as internal) without breaking
/// the ABI.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostErrorKind(u8);

#[allow(non_upper_case_globals)] // read like the enum variants they stand for
impl HostErrorKind {
    /// The answer is being fetched; the host calls the scheme again once it has it.
    pub const Pending: HostErrorKind = HostErrorKind(0);
    /// The host could not answer (bad argument, store error); the scheme faults.
    pub const Internal: HostErrorKind = HostErrorKind(1);
    /// The host is older than the plugin-api this plugin was built against and does not
    /// have the service (`message` says which plugin-api minor it needs); the scheme
    /// faults, and the host logs what it needs.
    pub const Unsupported: HostErrorKind = HostErrorKind(2);
}

/// A host service's refusal, carried back to the scheme and on to the host.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct HostError {
    pub kind: HostErrorKind,
    pub message: RString,
}

impl HostError {
    pub fn pending() -> Self {
        HostError { kind: HostErrorKind::Pending, message: RString::new() }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        HostError { kind: HostErrorKind::Internal, message: RString::from(message.into()) }
    }

    /// What a service added in plugin-api `1.minor` answers by default: the default body
    /// runs in the plugin when the host's services predate it.
    pub fn unsupported(service: &str, minor: u32) -> Self {
        HostError {
            kind: HostErrorKind::Unsupported,
            message: format!("this host has no {service} service: the plugin needs plugin-api 1.{minor}")
                .into(),
        }
    }
}

// abi_stable's derives put impls inside `const _`, which trips `non_local_definitions`;
// an `allow` on the item does not reach them, on the module it does.
/// Which of a user's names a login gives: the username, or the e-mail address (matched
/// without regard to case; an address no user or several users have matches nobody).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoginField {
    #[default]
    Username,
    Email,
}

impl LoginField {
    /// The name configs and request bodies use: `username` or `email`.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginField::Username => "username",
            LoginField::Email => "email",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "username" => Some(LoginField::Username),
            "email" => Some(LoginField::Email),
            _ => None,
        }
    }
}

/// A token found by its key.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct TokenMatch {
    pub user: User,
    /// A public identifier of the token (never the key), for `request.auth`.
    pub token_id: RString,
}

/// How a token scheme's per-client tokens live. The scheme declares it (from its options);
/// the host applies it when the `login_token` view issues a token and whenever it finds one.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenPolicy {
    /// Seconds a new token lives; 0: it never expires.
    pub ttl_secs: u64,
    /// Each use moves the expiry to now + ttl (written at most once a minute), never past
    /// creation + `max_ttl_secs`.
    pub refresh_on_use: bool,
    /// Seconds after its creation past which no use extends a token; 0: no cap.
    pub max_ttl_secs: u64,
    /// How many live tokens a user may hold; 0: no limit.
    pub limit_per_user: u32,
    /// Put before new keys (`ah_`), so that secret scanners can spot leaked ones.
    pub prefix: RString,
}

/// A live session found by its key.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct SessionMatch {
    pub user: User,
    /// A public identifier of the session (never the key), for `request.auth`.
    pub session_id: RString,
    /// The session's CSRF secret: unsafe requests must carry a token that stands for it.
    pub csrf_secret: RString,
}

/// The host's `[session]` settings, which its login view and the session scheme share.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    pub cookie_name: RString,
    pub csrf_cookie_name: RString,
    pub csrf_header_name: RString,
    pub secure: bool,
    pub trusted_origins: RVec<RString>,
}

#[allow(non_local_definitions)]
mod services_trait {
    use super::{HostError, SessionMatch, SessionSettings, TokenMatch, User};
    use abi_stable::sabi_trait;
    use abi_stable::std_types::{ROption, RResult, RStr};

    /// The services behind [`Host`](super::Host), as they cross the ABI.
    ///
    /// Frozen at plugin-api 1.0 up to `warn`, the last prefix field. A later minor appends
    /// services after it, each with a default body that returns
    /// `HostError::unsupported("name", minor)`: a plugin built against that minor calls the
    /// default when the host predates it, and faults cleanly (see docs/plugin-abi.md).
    #[sabi_trait]
    pub trait HostServices {
        /// The user with this username, active or not.
        fn find_user(&self, username: RStr<'_>) -> RResult<ROption<User>, HostError>;

        /// The user, when `password` is theirs (argon2, off the async workers). An unknown
        /// user costs the same work as a wrong password. With `cache_ms` > 0 the host may
        /// answer a pair it verified within that time from memory (a keyed hash of the
        /// pair; dropped at once when the user's password or status changes).
        fn verify_password(
            &self,
            username: RStr<'_>,
            password: RStr<'_>,
            cache_ms: u64,
        ) -> RResult<ROption<User>, HostError>;

        /// As `verify_password`, with the user found by `field` (`username` or `email`); an
        /// e-mail address that matches no user, or several, costs the same as a wrong
        /// password.
        fn verify_login(
            &self,
            field: RStr<'_>,
            login: RStr<'_>,
            password: RStr<'_>,
            cache_ms: u64,
        ) -> RResult<ROption<User>, HostError>;

        /// Creates an active user with no usable password (RemoteUser's
        /// `create_unknown_user`), or returns the existing one.
        fn create_user(&self, username: RStr<'_>) -> RResult<User, HostError>;

        /// The token with this key, and its user (active or not). The host keeps only a
        /// digest of each key.
        fn find_token(&self, key: RStr<'_>) -> RResult<ROption<TokenMatch>, HostError>;

        /// The live session with this key (from the session cookie), its user (active or
        /// not) and its CSRF secret. Expired sessions are not found.
        fn find_session(&self, key: RStr<'_>) -> RResult<ROption<SessionMatch>, HostError>;

        /// The host's `[session]` settings: cookie names, https, trusted origins.
        fn session_settings(&self) -> SessionSettings;

        /// Logs a warning under the scheme's name. Never pass a secret.
        #[sabi(last_prefix_field)]
        fn warn(&self, message: RStr<'_>);
    }
}

pub use services_trait::{HostServices, HostServices_TO};

/// The services object as the host lends it for one call.
pub type HostServicesRef<'a> = HostServices_TO<'a, RRef<'a, ()>>;

/// What a scheme sees of the host: plain Rust over the ABI services.
pub struct Host<'a> {
    services: &'a (dyn HostServices + 'a),
}

impl std::fmt::Debug for Host<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").finish_non_exhaustive()
    }
}

impl<'a> Host<'a> {
    pub(crate) fn new(services: &'a (dyn HostServices + 'a)) -> Self {
        Host { services }
    }

    /// The user with this username, active or not; `None` when there is none.
    pub fn find_user(&self, username: &str) -> Result<Option<User>, SchemeError> {
        into_result(self.services.find_user(username.into())).map(ROption::into_option)
    }

    /// The user, when the password is theirs; `None` for an unknown user or a wrong password.
    pub fn verify_password(&self, username: &str, password: &str) -> Result<Option<User>, SchemeError> {
        self.verify_password_cached(username, password, Duration::ZERO)
    }

    /// As `verify_password`, but a pair verified within `ttl` may be answered from the
    /// host's memory instead of paying argon2 again.
    pub fn verify_password_cached(
        &self,
        username: &str,
        password: &str,
        ttl: Duration,
    ) -> Result<Option<User>, SchemeError> {
        let cache_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        into_result(self.services.verify_password(username.into(), password.into(), cache_ms))
            .map(ROption::into_option)
    }

    /// As `verify_password_cached`, with the user found by `field` (username or e-mail).
    pub fn verify_login_cached(
        &self,
        field: LoginField,
        login: &str,
        password: &str,
        ttl: Duration,
    ) -> Result<Option<User>, SchemeError> {
        let cache_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        into_result(self.services.verify_login(
            field.as_str().into(),
            login.into(),
            password.into(),
            cache_ms,
        ))
        .map(ROption::into_option)
    }

    /// Creates an active user with no usable password, or returns the existing one.
    pub fn create_user(&self, username: &str) -> Result<User, SchemeError> {
        into_result(self.services.create_user(username.into()))
    }

    /// The token with this key and its user; `None` when no token has this key.
    pub fn find_token(&self, key: &str) -> Result<Option<TokenMatch>, SchemeError> {
        into_result(self.services.find_token(key.into())).map(ROption::into_option)
    }

    /// The live session with this key, with its user and CSRF secret.
    pub fn find_session(&self, key: &str) -> Result<Option<SessionMatch>, SchemeError> {
        into_result(self.services.find_session(key.into())).map(ROption::into_option)
    }

    /// The host's session settings (cookie names, https, trusted origins).
    pub fn session_settings(&self) -> SessionSettings {
        self.services.session_settings()
    }

    /// Logs a warning under the scheme's name (plugins never print). Never pass a secret.
    pub fn warn(&self, message: &str) {
        self.services.warn(message.into());
    }
}

fn into_result<T>(result: RResult<T, HostError>) -> Result<T, SchemeError> {
    result.into_result().map_err(SchemeError::from)
}

/// Lends `services` to a scheme as the ABI object. For the host, tests and benches.
pub fn lend<S: HostServices>(services: &S) -> HostServicesRef<'_> {
    HostServices_TO::from_ptr(RRef::new(services), TD_Opaque)
}
