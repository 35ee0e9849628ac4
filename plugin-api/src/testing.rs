//! Unit-testing a scheme without the host: an in-memory [`MemoryHost`] and [`authenticate`],
//! which calls a scheme as the host would. Integration tests still go through the real
//! loader and server (see the repository's `tests/`).
//!
//! The host answers a service from memory when it can and "pending" when it cannot (the
//! scheme passes that on with `?`; the host fetches the answer and calls the scheme again).
//! [`MemoryHost::answering_later`] does the same, so that a scheme's tests go through that
//! path too: a scheme that acts on a first, pending call, or that swallows the pending
//! error, fails them.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use abi_stable::std_types::{ROption, RResult, RStr, RVec};

use crate::host::{lend, Host, HostError, HostServices, SessionMatch, SessionSettings, TokenMatch};
#[cfg(feature = "toml")]
use crate::options::OptionEntry;
use crate::outcome::{Outcome, User};
use crate::request::RequestView;
use crate::scheme::{Scheme, SchemeError};

/// Users and their passwords, in memory.
#[derive(Debug, Default)]
pub struct MemoryHost {
    users: HashMap<String, (User, Option<String>)>,
    tokens: HashMap<String, String>,
    sessions: HashMap<String, (String, String)>,
    warnings: Mutex<Vec<String>>,
    /// Set by `answering_later`: the look-ups asked so far, each answered "pending" once.
    later: Option<Mutex<HashSet<String>>>,
    calls: Mutex<usize>,
}

/// How many times [`authenticate`] calls a scheme for one request at most, as the host.
pub const MAX_CALLS: usize = 9;

impl MemoryHost {
    pub fn new() -> Self {
        MemoryHost::default()
    }

    /// Adds a user; `password` `None` means no usable password.
    pub fn with_user(
        mut self,
        username: &str,
        password: Option<&str>,
        is_active: bool,
        is_staff: bool,
    ) -> Self {
        let id = i64::try_from(self.users.len()).unwrap_or(i64::MAX) + 1;
        let user = User { is_active, is_staff, ..User::new(id, username) };
        self.users.insert(username.to_owned(), (user, password.map(str::to_owned)));
        self
    }

    /// Gives `username` this e-mail address.
    pub fn with_email(mut self, username: &str, email: &str) -> Self {
        if let Some((user, _)) = self.users.get_mut(username) {
            user.email = email.into();
        }
        self
    }

    /// Gives `username` a token with this key.
    pub fn with_token(mut self, key: &str, username: &str) -> Self {
        self.tokens.insert(key.to_owned(), username.to_owned());
        self
    }

    /// Gives `username` a session with this key and CSRF secret.
    pub fn with_session(mut self, key: &str, username: &str, csrf_secret: &str) -> Self {
        self.sessions.insert(key.to_owned(), (username.to_owned(), csrf_secret.to_owned()));
        self
    }

    /// The warnings schemes logged.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Answers each look-up (user, password, token, session, user creation) "pending" the
    /// first time it is asked, and from memory when asked again, as the host does for
    /// answers it must fetch.
    pub fn answering_later(mut self) -> Self {
        self.later = Some(Mutex::default());
        self
    }

    /// How many times [`authenticate`] called the scheme, over every request so far.
    pub fn calls(&self) -> usize {
        *self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Some(pending)` when this look-up is to be answered later and was not asked before.
    fn not_yet<T>(&self, service: &str, argument: &str) -> Option<RResult<T, HostError>> {
        let asked = self.later.as_ref()?;
        let first = asked.lock().unwrap_or_else(|e| e.into_inner()).insert(format!("{service}\0{argument}"));
        first.then(|| RResult::RErr(HostError::pending()))
    }
}

impl HostServices for MemoryHost {
    fn find_user(&self, username: RStr<'_>) -> RResult<ROption<User>, HostError> {
        if let Some(pending) = self.not_yet("find_user", username.as_str()) {
            return pending;
        }
        RResult::ROk(self.users.get(username.as_str()).map(|(u, _)| u.clone()).into())
    }

    fn verify_password(
        &self,
        username: RStr<'_>,
        password: RStr<'_>,
        _cache_ms: u64,
    ) -> RResult<ROption<User>, HostError> {
        if let Some(pending) = self.not_yet("verify_password", username.as_str()) {
            return pending;
        }
        let found =
            self.users.get(username.as_str()).filter(|(_, p)| p.as_deref() == Some(password.as_str()));
        RResult::ROk(found.map(|(u, _)| u.clone()).into())
    }

    fn verify_login(
        &self,
        field: RStr<'_>,
        login: RStr<'_>,
        password: RStr<'_>,
        cache_ms: u64,
    ) -> RResult<ROption<User>, HostError> {
        match field.as_str() {
            "username" => self.verify_password(login, password, cache_ms),
            "email" => {
                if let Some(pending) = self.not_yet("verify_login", login.as_str()) {
                    return pending;
                }
                let login = login.as_str().to_lowercase();
                let mut matches = self
                    .users
                    .values()
                    .filter(|(u, _)| !u.email.is_empty() && u.email.to_lowercase() == login);
                let found = match (matches.next(), matches.next()) {
                    (Some((user, hash)), None) if hash.as_deref() == Some(password.as_str()) => {
                        Some(user.clone())
                    }
                    _ => None,
                };
                RResult::ROk(found.into())
            }
            other => RResult::RErr(HostError::internal(format!("no login field {other:?}"))),
        }
    }

    fn create_user(&self, username: RStr<'_>) -> RResult<User, HostError> {
        if let Some(pending) = self.not_yet("create_user", username.as_str()) {
            return pending;
        }
        match self.users.get(username.as_str()) {
            Some((user, _)) => RResult::ROk(user.clone()),
            None => RResult::RErr(HostError::internal("MemoryHost cannot create users")),
        }
    }

    fn find_token(&self, key: RStr<'_>) -> RResult<ROption<TokenMatch>, HostError> {
        if let Some(pending) = self.not_yet("find_token", key.as_str()) {
            return pending;
        }
        let found = self.tokens.get(key.as_str()).and_then(|name| self.users.get(name));
        RResult::ROk(
            found.map(|(user, _)| TokenMatch { user: user.clone(), token_id: key.as_str().into() }).into(),
        )
    }

    fn find_session(&self, key: RStr<'_>) -> RResult<ROption<SessionMatch>, HostError> {
        if let Some(pending) = self.not_yet("find_session", key.as_str()) {
            return pending;
        }
        let found =
            self.sessions.get(key.as_str()).and_then(|(name, csrf)| Some((self.users.get(name)?, csrf)));
        RResult::ROk(
            found
                .map(|((user, _), csrf)| SessionMatch {
                    user: user.clone(),
                    session_id: key.as_str().into(),
                    csrf_secret: csrf.as_str().into(),
                })
                .into(),
        )
    }

    fn session_settings(&self) -> SessionSettings {
        SessionSettings {
            cookie_name: "sessionid".into(),
            csrf_cookie_name: "csrftoken".into(),
            csrf_header_name: "X-CSRFToken".into(),
            secure: false,
            trusted_origins: RVec::new(),
        }
    }

    fn warn(&self, message: RStr<'_>) {
        self.warnings.lock().unwrap_or_else(|e| e.into_inner()).push(message.to_string());
    }
}

/// Builds scheme `S` from a `[[scheme]]` table's own keys, written as TOML, with the checks
/// the host makes: declared options (`S::OPTIONS`), the constructor, and the refusal of
/// keys it never read. `Err` names the key, as `authhost check` would.
///
/// ```ignore
/// let scheme: Mine = build("header = \"X-Mine\"\ncache_ttl = \"30s\"").unwrap();
/// ```
#[cfg(feature = "toml")]
pub fn build<S: Scheme>(table: &str) -> Result<S, SchemeError> {
    let table: toml::Table =
        table.parse().map_err(|e| SchemeError::config(format!("not a TOML table: {e}")))?;
    let entries = table
        .iter()
        .map(|(key, value)| {
            OptionEntry::from_toml(key, value).ok_or_else(|| {
                SchemeError::option(key.as_str(), "not a string, number, boolean or list of strings")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    crate::options::check_declared(S::OPTIONS, &entries)?;
    crate::export::construct::<S>(&entries)
}

/// Calls `scheme.authenticate` as the host does, with `host` behind the ABI object: again
/// whenever it passes on a pending answer (at most [`MAX_CALLS`] times; past that, the
/// pending error comes back, which the host would report as a fault).
pub fn authenticate<S: Scheme>(
    scheme: &S,
    request: &RequestView<'_>,
    host: &MemoryHost,
) -> Result<Outcome, SchemeError> {
    let services = lend(host);
    let mut result = Err(SchemeError::from(HostError::pending()));
    for _ in 0..MAX_CALLS {
        *host.calls.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        result = scheme.authenticate(request, &Host::new(&services));
        if !result.as_ref().is_err_and(SchemeError::is_pending) {
            break;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Options;

    /// Looks the `X-User` header's user up, as schemes should: a pending answer goes back
    /// to the host with `?`.
    struct Passes;
    /// The same, but reads any error, a pending answer included, as "no such user".
    struct Swallows;

    impl Scheme for Passes {
        fn new(_: &Options<'_>) -> Result<Self, SchemeError> {
            Ok(Passes)
        }
        fn authenticate(&self, request: &RequestView<'_>, host: &Host<'_>) -> Result<Outcome, SchemeError> {
            let name = request.header("x-user").unwrap_or_default();
            Ok(match host.find_user(&name)? {
                Some(user) => Outcome::authenticated(user),
                None => Outcome::failed("No such user"),
            })
        }
    }

    impl Scheme for Swallows {
        fn new(_: &Options<'_>) -> Result<Self, SchemeError> {
            Ok(Swallows)
        }
        fn authenticate(&self, request: &RequestView<'_>, host: &Host<'_>) -> Result<Outcome, SchemeError> {
            let name = request.header("x-user").unwrap_or_default();
            Ok(match host.find_user(&name).ok().flatten() {
                Some(user) => Outcome::authenticated(user),
                None => Outcome::failed("No such user"),
            })
        }
    }

    fn request_for<'a>(headers: &'a [crate::request::Header<'a>]) -> RequestView<'a> {
        RequestView::new("GET", "/", "", headers, "127.0.0.1:1".parse().unwrap())
    }

    #[test]
    fn answering_later_calls_the_scheme_again_and_exposes_one_that_swallows_pending() {
        let headers = [crate::request::Header::new("x-user", b"alice")];
        let request = request_for(&headers);
        let host = MemoryHost::new().with_user("alice", None, true, false).answering_later();
        let outcome = authenticate(&Passes, &request, &host).unwrap();
        assert!(matches!(outcome, Outcome::Authenticated { .. }), "{outcome:?}");
        assert_eq!(host.calls(), 2);
        // Answered from memory the second time round, as the host would.
        let host = MemoryHost::new().with_user("alice", None, true, false).answering_later();
        assert_eq!(authenticate(&Swallows, &request, &host).unwrap(), Outcome::failed("No such user"));
        assert_eq!(host.calls(), 1, "the pending answer was read as no user: the bug this mode finds");
        // Without it, both schemes look right.
        let host = MemoryHost::new().with_user("alice", None, true, false);
        assert!(matches!(authenticate(&Swallows, &request, &host).unwrap(), Outcome::Authenticated { .. }));
    }
}
