//! The user store behind one interface, so that PostgreSQL can follow SQLite.
//!
//! Store calls block; the host makes them only on its store pool (`pool.rs`) or from the
//! command line, never on an async worker.

mod backend;
mod postgres;
mod sqlite;

use std::time::Duration;

use authhost_plugin_api::User;

use crate::error::Error;

pub use backend::{Backend, SqliteBackend};
pub use postgres::{redacted, PgBackend, PgOptions, PASSWORD_ENV};
pub use sqlite::SqliteStore;

/// How long the change log keeps a change by default: a host paused for less than this
/// catches up; one paused longer finds the gap and drops every cache.
pub const CHANGE_LOG_KEEP: Duration = Duration::from_secs(24 * 60 * 60);

/// A store: something that hands out connections.
pub trait Store: Send + Sync + 'static {
    fn connect(&self) -> Result<Box<dyn StoreConn>, Error>;

    /// A connection that only reads (the store pool's readers): it never waits for a
    /// writer, and refuses to write.
    fn connect_reader(&self) -> Result<Box<dyn StoreConn>, Error> {
        self.connect()
    }
}

/// A user to create. `password_hash` is an argon2id PHC string, or `None` for a user who
/// cannot log in with a password (RemoteUser's created users).
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub password_hash: Option<&'a str>,
    pub is_active: bool,
    pub is_staff: bool,
    /// The e-mail address, or "".
    pub email: &'a str,
}

/// One connection. Blocking.
/// Whether a connection still reads the store its URL names (the change poll asks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFile {
    Same,
    /// Another file is at the path now (a backup copied over it, say).
    Replaced,
    /// Nothing is at the path.
    Missing,
}

pub trait StoreConn: Send {
    /// Whether what this connection reads is still the store its URL names.
    fn store_file(&self) -> StoreFile {
        StoreFile::Same
    }

    /// How long the next call may wait for a lock another connection holds before it
    /// fails as unavailable.
    fn set_busy_timeout(&mut self, _timeout: Duration) {}

    /// Deletes up to `batch` expired tokens and up to `batch` expired sessions (by their
    /// expiry indexes); how many it deleted.
    fn purge_expired(&mut self, now: i64, batch: usize) -> Result<usize, Error>;

    fn find_user(&mut self, username: &str) -> Result<Option<User>, Error>;

    /// The user and their password hash (`None` when the password is unusable).
    fn find_credentials(&mut self, username: &str) -> Result<Option<(User, Option<String>)>, Error>;

    /// The one user with this e-mail address (without regard to case) and their password
    /// hash; `None` when no user or several users have it.
    fn find_credentials_by_email(&mut self, email: &str) -> Result<Option<(User, Option<String>)>, Error>;

    /// Creates a user; `Ok(None)` when the username is taken.
    fn create_user(&mut self, user: &NewUser<'_>) -> Result<Option<User>, Error>;

    /// Sets the password hash; `false` when there is no such user.
    fn set_password(&mut self, username: &str, password_hash: &str) -> Result<bool, Error>;

    /// Replaces the password hash `old` with `new`, the same password's (an imported
    /// Django hash upgraded to argon2id on a successful login): nothing else changes, no
    /// credential is revoked. `false` when the stored hash is no longer `old`.
    fn rehash_password(&mut self, username: &str, old: &str, new: &str) -> Result<bool, Error>;

    /// Sets `is_active`; `false` when there is no such user.
    fn set_active(&mut self, username: &str, active: bool) -> Result<bool, Error>;

    /// Sets `is_staff`; `false` when there is no such user.
    fn set_staff(&mut self, username: &str, staff: bool) -> Result<bool, Error>;

    /// Sets the e-mail address ("" for none); `false` when there is no such user.
    fn set_email(&mut self, username: &str, email: &str) -> Result<bool, Error>;

    /// Deletes the user with their tokens and sessions; `false` when there is no such user.
    fn delete_user(&mut self, username: &str) -> Result<bool, Error>;

    /// Every user, by id.
    fn list_users(&mut self) -> Result<Vec<User>, Error>;

    /// The live token whose key has this digest at time `now`, with its user. An expired
    /// one is not found (the writer's purge deletes it).
    fn find_token(&mut self, digest: &[u8], now: i64) -> Result<Option<StoredToken>, Error>;

    /// Stores a per-client token, unless the user already holds `limit` live ones (0: no
    /// limit); expired ones do not count.
    fn create_client_token(
        &mut self,
        user_id: i64,
        token: &ClientToken<'_>,
        limit: u32,
    ) -> Result<Option<i64>, Error>;

    /// Moves a token's expiry (refresh on use) and records its use; `false` when there is
    /// no such token or its user is inactive (nothing is written then).
    fn refresh_token(&mut self, id: i64, expires: i64, now: i64) -> Result<bool, Error>;

    /// Deletes one token of the user's; whether there was one.
    fn delete_token(&mut self, user_id: i64, id: i64) -> Result<bool, Error>;

    /// The user's tokens, oldest first.
    fn list_tokens(&mut self, username: &str) -> Result<Vec<TokenRow>, Error>;

    /// Stores a token for `username`. `replace` first deletes the user's tokens; otherwise a
    /// user who has a token keeps it and `Ok(TokenSet::Exists)` comes back.
    fn create_token(
        &mut self,
        username: &str,
        token: &NewToken<'_>,
        replace: bool,
    ) -> Result<TokenSet, Error>;

    /// The nonce of the user's first derivable token, or else stores `token` (DRF's
    /// `Token.objects.get_or_create(user=user)`), in one transaction.
    fn get_or_create_token(&mut self, username: &str, token: &NewToken<'_>) -> Result<TokenGot, Error>;

    /// The nonce of the user's first derivable token, when they have one.
    fn token_nonce(&mut self, username: &str) -> Result<Option<Vec<u8>>, Error>;

    /// Deletes the user's tokens; how many there were.
    fn delete_tokens(&mut self, username: &str) -> Result<usize, Error>;

    /// Every user with no token.
    fn users_without_token(&mut self) -> Result<Vec<String>, Error>;

    /// Stores a session (the digest of its key) for `user_id`, expiring at `expires` (Unix
    /// seconds).
    fn create_session(
        &mut self,
        user_id: i64,
        digest: &[u8],
        csrf_secret: &str,
        expires: i64,
    ) -> Result<i64, Error>;

    /// The live session with this digest at time `now`: its user, id, CSRF secret and expiry.
    fn find_session(&mut self, digest: &[u8], now: i64) -> Result<Option<StoredSession>, Error>;

    /// Deletes the session with this digest, and logs the change for other hosts; the
    /// name of its user, when there was one.
    fn delete_session(&mut self, digest: &[u8]) -> Result<Option<String>, Error>;

    /// The newest change number (see `changes_since`).
    fn last_change(&mut self) -> Result<i64, Error>;

    /// The changes after change `seq`: users whose password, status, tokens or sessions
    /// changed, so that running hosts drop what they cached of them.
    fn changes_since(&mut self, seq: i64) -> Result<Changes, Error>;
}

/// A user row: id, username, password, is_active, is_staff, date_joined, generation, email.
pub type UserRecord = (i64, String, Option<String>, bool, bool, String, i64, String);
/// A token row: id, digest, user_id, created, nonce, client, expires, max_expires,
/// last_used.
pub type TokenRecord =
    (i64, Vec<u8>, i64, String, Option<Vec<u8>>, Option<String>, Option<i64>, Option<i64>, Option<i64>);

/// Everything a store holds, row by row, for `authhost store migrate`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dump {
    pub users: Vec<UserRecord>,
    pub tokens: Vec<TokenRecord>,
    /// id, digest, user_id, csrf_secret, expires.
    pub sessions: Vec<(i64, Vec<u8>, i64, String, i64)>,
    /// seq, username, at.
    pub changes: Vec<(i64, String, i64)>,
    pub pruned_through: i64,
}

impl Dump {
    /// Users, tokens, sessions and changes: what a copy must hold as many of.
    pub fn counts(&self) -> [usize; 4] {
        [self.users.len(), self.tokens.len(), self.sessions.len(), self.changes.len()]
    }
}

/// What the change log holds after a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The newest change number: the next read starts after it.
    pub last: i64,
    /// The users changed, oldest first (a name may repeat).
    pub users: Vec<String>,
    /// Changes after the position were pruned, or the log is not the one the position
    /// was read from (a replaced store): whoever follows it must drop everything.
    pub missed: bool,
}

/// A token to store: the SHA-256 digest of its key and, for a key the host derives from its
/// token secret, the nonce it derives it from. Never the key.
#[derive(Debug, Clone, Copy)]
pub struct NewToken<'a> {
    pub digest: &'a [u8],
    pub nonce: Option<&'a [u8]>,
}

/// What `get_or_create_token` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenGot {
    Existing { nonce: Vec<u8> },
    Created,
    NoSuchUser,
}

/// A token as `find_token` returns it (never its key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub user: User,
    pub id: i64,
    /// Unix seconds; `None`: never.
    pub expires: Option<i64>,
    pub max_expires: Option<i64>,
    pub last_used: Option<i64>,
}

/// A per-client token to store.
#[derive(Debug, Clone, Copy)]
pub struct ClientToken<'a> {
    pub digest: &'a [u8],
    pub client: Option<&'a str>,
    pub expires: Option<i64>,
    pub max_expires: Option<i64>,
}

/// One line of `token list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub client: Option<String>,
    pub created: String,
    pub expires: Option<i64>,
    pub last_used: Option<i64>,
    /// A key derived from the token secret (obtain_token, `token create`).
    pub derived: bool,
}

/// A session as the store keeps it (never its key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub user: User,
    pub id: i64,
    pub csrf_secret: String,
    pub expires: i64,
}

/// What `create_token` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSet {
    Created,
    Exists,
    NoSuchUser,
}

/// The store a `[store] url` names, for one command of the command line: one reader, the
/// writer, and SQLite's lock waited for up to 5 s (an operator's command may wait for a
/// busy host longer than a request would).
pub fn open_for_command(
    url: &str,
    change_log_keep: Duration,
    password: Option<String>,
) -> Result<std::sync::Arc<dyn Backend>, Error> {
    if is_postgres(url) {
        let options =
            PgOptions { password, busy_timeout: Duration::from_secs(5), max_connections: 2, change_log_keep };
        return Ok(std::sync::Arc::new(PgBackend::open(url, &options)?));
    }
    let store = open(url, change_log_keep)?;
    let config = crate::pool::StorePoolConfig {
        busy_timeout: Duration::from_secs(5),
        ..crate::pool::StorePoolConfig::new(1, 64)
    };
    Ok(std::sync::Arc::new(SqliteBackend::start(store.as_ref(), config)?))
}

/// Whether a `[store] url` names a PostgreSQL database.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Opens the store a `[store] url` names, whose change log keeps changes for
/// `change_log_keep`. `sqlite://PATH` is the one backend so far.
pub fn open(url: &str, change_log_keep: Duration) -> Result<Box<dyn Store>, Error> {
    match url.strip_prefix("sqlite://") {
        Some(path) if !path.is_empty() => Ok(Box::new(SqliteStore::open(path, change_log_keep)?)),
        _ => Err(Error::config(format!(
            "store url {url:?} is not supported: use \"sqlite://PATH\" or \"postgres://USER@HOST:PORT/DB\""
        ))),
    }
}
