//! Unit-testing a scheme without the host: an in-memory [`MemoryHost`] and [`authenticate`],
//! which calls a scheme as the host would. Integration tests still go through the real
//! loader and server (see the repository's `tests/`).

use std::collections::HashMap;
use std::sync::Mutex;

use abi_stable::std_types::{ROption, RResult, RStr, RVec};

use crate::host::{lend, Host, HostError, HostServices, SessionMatch, SessionSettings, TokenMatch};
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
}

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
        let user = User { id, username: username.into(), is_active, is_staff, generation: 0 };
        self.users.insert(username.to_owned(), (user, password.map(str::to_owned)));
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
}

impl HostServices for MemoryHost {
    fn find_user(&self, username: RStr<'_>) -> RResult<ROption<User>, HostError> {
        RResult::ROk(self.users.get(username.as_str()).map(|(u, _)| u.clone()).into())
    }

    fn verify_password(
        &self,
        username: RStr<'_>,
        password: RStr<'_>,
        _cache_ms: u64,
    ) -> RResult<ROption<User>, HostError> {
        let found =
            self.users.get(username.as_str()).filter(|(_, p)| p.as_deref() == Some(password.as_str()));
        RResult::ROk(found.map(|(u, _)| u.clone()).into())
    }

    fn create_user(&self, username: RStr<'_>) -> RResult<User, HostError> {
        match self.users.get(username.as_str()) {
            Some((user, _)) => RResult::ROk(user.clone()),
            None => RResult::RErr(HostError::internal("MemoryHost cannot create users")),
        }
    }

    fn find_token(&self, key: RStr<'_>) -> RResult<ROption<TokenMatch>, HostError> {
        let found = self.tokens.get(key.as_str()).and_then(|name| self.users.get(name));
        RResult::ROk(
            found.map(|(user, _)| TokenMatch { user: user.clone(), token_id: key.as_str().into() }).into(),
        )
    }

    fn find_session(&self, key: RStr<'_>) -> RResult<ROption<SessionMatch>, HostError> {
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

/// Calls `scheme.authenticate` as the host does, with `host` behind the ABI object.
pub fn authenticate<S: Scheme>(
    scheme: &S,
    request: &RequestView<'_>,
    host: &MemoryHost,
) -> Result<Outcome, SchemeError> {
    let services = lend(host);
    scheme.authenticate(request, &Host::new(&services))
}
