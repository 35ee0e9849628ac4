//! The plain Rust trait a plugin implements, and its error type.

use std::fmt;

use crate::host::{Host, HostError, HostErrorKind, TokenPolicy};
use crate::mint::Claims;
use crate::options::{OptionSpec, Options};
use crate::outcome::Outcome;
use crate::outcome::User;
use crate::request::RequestView;

/// An authentication scheme (DRF's `BaseAuthentication`), in plain Rust.
///
/// Implement it and invoke [`export_scheme!`](crate::export_scheme) once. Panics are caught
/// for you and become a fault; never build a plugin with `panic = "abort"`.
pub trait Scheme: Send + Sync + Sized + 'static {
    /// The options `new` reads, declared for `authhost plugin info` and `authhost check`
    /// (a wrong key or kind is refused before `new` runs). Empty: no declaration, and
    /// `new`'s own getters are the only check.
    const OPTIONS: &'static [OptionSpec] = &[];

    /// Builds one configured instance from the scheme's `[[scheme]]` table. Read every
    /// option through `options`: keys never read are refused as unknown.
    fn new(options: &Options<'_>) -> Result<Self, SchemeError>;

    /// Not attempted, authenticated, failed or forbidden. Host look-ups go through `host`
    /// and are passed on with `?`.
    fn authenticate(&self, request: &RequestView<'_>, host: &Host<'_>) -> Result<Outcome, SchemeError>;

    /// The `WWW-Authenticate` challenge, if the scheme has one (DRF's `authenticate_header`).
    fn authenticate_header(&self, _request: &RequestView<'_>) -> Option<String> {
        None
    }

    /// For a token scheme: how its per-client tokens live (expiry, refresh, limit, key
    /// prefix). The host's `login_token` view issues tokens by it, and the host applies it
    /// whenever this scheme finds a token. Other schemes keep the default, `None`.
    fn token_policy(&self) -> Option<TokenPolicy> {
        None
    }

    /// For a scheme that mints its own credentials (JWT): a new one for `user`, keeping
    /// `orig_iat` when refreshing. `Err` is a fault (500). Others keep the default, `None`.
    fn mint(&self, _user: &User, _orig_iat: Option<i64>) -> Option<Result<String, SchemeError>> {
        None
    }

    /// For a minting scheme: what a credential it minted says, or why it is no good (for
    /// the client). Others keep the default, `None`.
    fn inspect(&self, _credential: &str) -> Option<Result<Claims, String>> {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Pending,
    Internal(String),
    Option { key: Option<String>, message: String },
}

/// What went wrong inside a scheme: an internal error (the host answers 500 and logs it),
/// a bad option at start-up, or a host answer still pending (the host calls again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemeError {
    kind: Kind,
}

impl SchemeError {
    /// An internal error: the request gets a 500 and the host logs `message` with the
    /// scheme's name. Not for wrong credentials: those are `Outcome::failed`.
    pub fn internal(message: impl Into<String>) -> Self {
        SchemeError { kind: Kind::Internal(message.into()) }
    }

    /// A bad option value, named by its key.
    pub fn option(key: impl Into<String>, message: impl Into<String>) -> Self {
        SchemeError { kind: Kind::Option { key: Some(key.into()), message: message.into() } }
    }

    /// A start-up error that no single option causes.
    pub fn config(message: impl Into<String>) -> Self {
        SchemeError { kind: Kind::Option { key: None, message: message.into() } }
    }

    /// True when the host is still fetching an answer; the scheme will be called again.
    pub fn is_pending(&self) -> bool {
        matches!(self.kind, Kind::Pending)
    }

    /// The option this error is about, if any.
    pub fn option_key(&self) -> Option<&str> {
        match &self.kind {
            Kind::Option { key, .. } => key.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn message(&self) -> &str {
        match &self.kind {
            Kind::Pending => "a host answer is pending",
            Kind::Internal(message) | Kind::Option { message, .. } => message,
        }
    }
}

impl fmt::Display for SchemeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.option_key() {
            Some(key) => write!(f, "{key}: {}", self.message()),
            None => f.write_str(self.message()),
        }
    }
}

impl std::error::Error for SchemeError {}

impl From<HostError> for SchemeError {
    fn from(err: HostError) -> Self {
        match err.kind {
            HostErrorKind::Pending => SchemeError { kind: Kind::Pending },
            // Internal, Unsupported, and any kind a later host adds: a fault.
            _ => SchemeError::internal(format!("host service: {}", err.message)),
        }
    }
}
