//! The host services a scheme calls, in two halves: [`RequestHost`], which answers a
//! scheme synchronously from memory and records what it lacks, and [`Services`], which
//! fetches what was lacking off the async workers and keeps the caches.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use authhost_plugin_api::abi_stable::std_types::{ROption, RResult, RStr};
use authhost_plugin_api::{
    HostError, HostServices, SessionMatch, SessionSettings, TokenMatch, TokenPolicy, User,
};
use blake2::digest::{KeyInit, Mac};
use blake2::Blake2sMac256;
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use crate::config::SessionConfig;
use crate::error::Error;
use crate::pool::{PasswordPool, StorePool};
use crate::sessions;
use crate::store::{ClientToken, NewUser};
use crate::tokens::{self, TokenSecret};

/// Something a scheme asked for that was not in memory.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Need {
    FindUser(String),
    VerifyPassword { username: String, password: String, cache: Duration },
    CreateUser(String),
    FindToken([u8; 32]),
    FindSession([u8; 32]),
}

impl std::fmt::Debug for Need {
    // Never prints a password or a token digest.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Need::FindUser(name) => write!(f, "FindUser({name:?})"),
            Need::VerifyPassword { username, .. } => write!(f, "VerifyPassword({username:?})"),
            Need::CreateUser(name) => write!(f, "CreateUser({name:?})"),
            Need::FindToken(_) => f.write_str("FindToken"),
            Need::FindSession(_) => f.write_str("FindSession"),
        }
    }
}

/// What the host fetched for a [`Need`].
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    User(Option<User>),
    Token(Option<CachedToken>),
    Session(Option<SessionMatch>),
}

/// A map whose entries expire, bounded in size. Only positive answers go in.
#[derive(Debug)]
struct TtlCache<K, V> {
    capacity: usize,
    entries: RwLock<HashMap<K, (V, Instant)>>,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    fn new(capacity: usize) -> Self {
        TtlCache { capacity, entries: RwLock::default() }
    }

    fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let (value, expires) = entries.get(key)?;
        (Instant::now() < *expires).then(|| value.clone())
    }

    fn put(&self, key: K, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, (_, expires)| *expires > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (value, now + ttl));
    }

    fn remove(&self, key: &K) {
        self.entries.write().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    fn retain(&self, keep: impl Fn(&V) -> bool) {
        self.entries.write().unwrap_or_else(|e| e.into_inner()).retain(|_, (v, _)| keep(v));
    }
}

/// A token as the host caches it: what the scheme gets, and what expiry needs.
#[derive(Debug, Clone)]
pub(crate) struct CachedToken {
    id: i64,
    expires: Option<i64>,
    max_expires: Option<i64>,
    /// When it was last used, as far as the store knows (Unix seconds).
    used: i64,
    token: TokenMatch,
}

/// How long a found token may stay in memory: the cache's time, never past its expiry.
fn cache_ttl(cache: Duration, expires: Option<i64>, now: i64) -> Duration {
    match expires {
        Some(expires) => cache.min(Duration::from_secs(u64::try_from(expires - now).unwrap_or(0))),
        None => cache,
    }
}

/// How long the host keeps what it read, and how often it looks for changes made by other
/// processes (the command line, other hosts).
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    /// Active users and tokens read from the store.
    pub ttl: Duration,
    /// How often the store's change log is read; changed users leave every cache.
    pub poll: Duration,
    /// Refresh on use writes a token's new expiry at most this often.
    pub refresh_every: Duration,
}

/// Shared by every request: the pools and the caches.
#[derive(Debug)]
pub struct Services {
    store: StorePool,
    passwords: PasswordPool,
    policy: CachePolicy,
    users: TtlCache<String, User>,
    tokens: TtlCache<[u8; 32], CachedToken>,
    /// Keyed hash of (username, password) → user, for verified pairs only.
    credentials: TtlCache<[u8; 32], User>,
    credential_key: [u8; 32],
    sessions: TtlCache<[u8; 32], SessionMatch>,
    session_settings: SessionSettings,
    /// Set when every new user gets a token (`[store] token_for_new_users`).
    new_user_tokens: Option<TokenSecret>,
}

impl Services {
    pub fn new(
        store: StorePool,
        passwords: PasswordPool,
        policy: CachePolicy,
        session: &SessionConfig,
        new_user_tokens: Option<TokenSecret>,
    ) -> Self {
        let mut credential_key = [0u8; 32];
        argon2::password_hash::rand_core::RngCore::fill_bytes(
            &mut argon2::password_hash::rand_core::OsRng,
            &mut credential_key,
        );
        Services {
            store,
            passwords,
            policy,
            users: TtlCache::new(100_000),
            tokens: TtlCache::new(100_000),
            credentials: TtlCache::new(100_000),
            credential_key,
            sessions: TtlCache::new(100_000),
            session_settings: SessionSettings {
                cookie_name: session.cookie_name.as_str().into(),
                csrf_cookie_name: session.csrf_cookie_name.as_str().into(),
                csrf_header_name: session.csrf_header_name.as_str().into(),
                secure: session.secure,
                trusted_origins: session.trusted_origins.iter().map(|o| o.as_str().into()).collect(),
            },
            new_user_tokens,
        }
    }

    fn credential_hash(&self, username: &str, password: &str) -> [u8; 32] {
        let mut mac = <Blake2sMac256 as KeyInit>::new_from_slice(&self.credential_key)
            .unwrap_or_else(|_| unreachable!("a 32-byte key fits Blake2s"));
        mac.update(&(username.len() as u64).to_le_bytes());
        mac.update(username.as_bytes());
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Drops everything cached about these users.
    fn forget(&self, usernames: &[String]) {
        let changed = |u: &User| usernames.iter().any(|n| n.as_str() == u.username.as_str());
        self.users.retain(|u| !changed(u));
        self.credentials.retain(|u| !changed(u));
        self.tokens.retain(|t| !changed(&t.token.user));
        self.sessions.retain(|s| !changed(&s.user));
    }

    /// Follows the store's change log while `services` lives (a reload replaces it).
    pub fn spawn_change_poller(services: &Arc<Services>, mut seq: i64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<Services> = Arc::downgrade(services);
        let period = services.policy.poll;
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(services) = weak.upgrade() else {
                    return;
                };
                match services.store.run(move |conn| conn.changes_since(seq)).await {
                    Ok((last, names)) => {
                        if !names.is_empty() {
                            services.forget(&names);
                            debug!(users = names.len(), "store changes: dropped cached entries");
                        }
                        seq = last;
                    }
                    Err(err) => warn!(error = %err, "cannot read the store's change log"),
                }
            }
        });
    }

    /// Fetches what a scheme needed: a store look-up on the store pool, argon2 on the
    /// password pool. Awaits; never blocks the worker.
    pub(crate) async fn fulfil(&self, need: &Need) -> Result<Answer, Error> {
        let user = match need.clone() {
            Need::FindUser(name) => self.store.run(move |conn| conn.find_user(&name)).await?,
            Need::VerifyPassword { username, password, cache } => {
                let key = (!cache.is_zero()).then(|| self.credential_hash(&username, &password));
                let user = self.verify_password(username, password).await?;
                if let (Some(key), Some(user)) = (key, user.as_ref().filter(|u| u.is_active)) {
                    self.credentials.put(key, user.clone(), cache);
                }
                user
            }
            Need::CreateUser(name) => {
                let tokens = self.new_user_tokens.clone();
                Some(self.store.run(move |conn| create_or_find(conn, &name, tokens.as_ref())).await?)
            }
            Need::FindToken(digest) => {
                let now = sessions::now();
                let found = self.store.run(move |conn| conn.find_token(&digest, now)).await?;
                let token = found.map(|t| CachedToken {
                    id: t.id,
                    expires: t.expires,
                    max_expires: t.max_expires,
                    used: t.last_used.unwrap_or(i64::MIN),
                    token: TokenMatch { user: t.user, token_id: t.id.to_string().into() },
                });
                if let Some(token) = token.as_ref().filter(|t| t.token.user.is_active) {
                    self.tokens.put(digest, token.clone(), cache_ttl(self.policy.ttl, token.expires, now));
                }
                return Ok(Answer::Token(token));
            }
            Need::FindSession(digest) => {
                let now = sessions::now();
                let found = self.store.run(move |conn| conn.find_session(&digest, now)).await?;
                let session = found.map(|s| {
                    let ttl =
                        Duration::from_secs(u64::try_from(s.expires - now).unwrap_or(0)).min(self.policy.ttl);
                    let found = SessionMatch {
                        user: s.user,
                        session_id: s.id.to_string().into(),
                        csrf_secret: s.csrf_secret.into(),
                    };
                    if found.user.is_active {
                        self.sessions.put(digest, found.clone(), ttl);
                    }
                    found
                });
                return Ok(Answer::Session(session));
            }
        };
        if let Some(user) = user.as_ref().filter(|u| u.is_active) {
            self.users.put(user.username.to_string(), user.clone(), self.policy.ttl);
        }
        Ok(Answer::User(user))
    }
}

impl Services {
    /// The user when the password is theirs (active or not): a store read on the store
    /// pool, then argon2 on the password pool. An unknown user is verified against a dummy
    /// hash, so it costs the same.
    pub async fn verify_password(&self, username: String, password: String) -> Result<Option<User>, Error> {
        let found = self.store.run(move |conn| conn.find_credentials(&username)).await?;
        let (user, hash) = match found {
            Some((user, hash)) => (Some(user), hash),
            None => (None, None),
        };
        let ok = self.passwords.verify(hash, password).await?;
        Ok(user.filter(|_| ok))
    }

    /// Refresh on use: moves a token's expiry to now + ttl (never past its cap), in the
    /// cache at once and in the store in the background, at most once a minute per token.
    fn refresh_on_use(&self, digest: [u8; 32], token: &CachedToken, policy: &TokenPolicy) {
        // Tokens that never expire (obtain_token's) stay so.
        if !policy.refresh_on_use || policy.ttl_secs == 0 || token.expires.is_none() {
            return;
        }
        let now = sessions::now();
        let every = i64::try_from(self.policy.refresh_every.as_secs()).unwrap_or(i64::MAX);
        if now.saturating_sub(token.used) < every {
            return;
        }
        let ttl = i64::try_from(policy.ttl_secs).unwrap_or(i64::MAX / 2);
        let mut expires = now.saturating_add(ttl);
        if let Some(cap) = token.max_expires {
            expires = expires.min(cap);
        }
        if token.expires.is_some_and(|e| e >= expires) {
            return;
        }
        let refreshed = CachedToken { expires: Some(expires), used: now, ..token.clone() };
        self.tokens.put(digest, refreshed, cache_ttl(self.policy.ttl, Some(expires), now));
        let id = token.id;
        let store = self.store.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                match store.run(move |conn| conn.refresh_token(id, expires, now)).await {
                    Ok(()) => debug!(token_id = id, expires, "token expiry refreshed"),
                    Err(err) => warn!(error = %err, "cannot record a token's refreshed expiry"),
                }
            });
        }
    }

    /// Issues a per-client token by `policy` (knox's login): `Ok(None)` when the user holds
    /// `limit_per_user` live tokens already. The key (returned) is never stored.
    pub async fn issue_token(
        &self,
        user: &User,
        policy: &TokenPolicy,
        client: Option<String>,
    ) -> Result<Option<(String, Option<i64>)>, Error> {
        let now = sessions::now();
        let after =
            |secs: u64| (secs > 0).then(|| now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX / 2)));
        let expires = after(policy.ttl_secs);
        let max_expires = after(policy.max_ttl_secs);
        let key = tokens::random_key(&policy.prefix);
        let digest = token_digest(&key);
        let (user_id, limit) = (user.id, policy.limit_per_user);
        let created = self
            .store
            .run(move |conn| {
                let token = ClientToken { digest: &digest, client: client.as_deref(), expires, max_expires };
                conn.create_client_token(user_id, &token, limit)
            })
            .await?;
        Ok(created.map(|_| (key, expires)))
    }

    /// Deletes one of the user's tokens (logout), here and, through the change log, in
    /// other hosts' caches.
    pub async fn delete_token(&self, user: &User, id: i64) -> Result<bool, Error> {
        let user_id = user.id;
        let deleted = self.store.run(move |conn| conn.delete_token(user_id, id)).await?;
        self.forget(&[user.username.to_string()]);
        Ok(deleted)
    }

    /// Deletes every token of the user's (logout everywhere).
    pub async fn delete_user_tokens(&self, user: &User) -> Result<usize, Error> {
        let name = user.username.to_string();
        let deleted = {
            let name = name.clone();
            self.store.run(move |conn| conn.delete_tokens(&name)).await?
        };
        self.forget(&[name]);
        Ok(deleted)
    }

    /// Starts a session for `user`: a new key (returned, for the cookie; the store keeps its
    /// digest) with a new CSRF secret, expiring after `ttl`.
    pub async fn create_session(
        &self,
        user: &User,
        csrf_secret: String,
        ttl: Duration,
    ) -> Result<String, Error> {
        let key = sessions::new_session_key();
        let digest = token_digest(&key);
        let expires = sessions::now().saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2));
        let user_id = user.id;
        self.store.run(move |conn| conn.create_session(user_id, &digest, &csrf_secret, expires)).await?;
        Ok(key)
    }

    /// Ends the session with this key (logout), here and in the cache.
    pub async fn delete_session(&self, key: &str) -> Result<bool, Error> {
        let digest = token_digest(key);
        self.sessions.remove(&digest);
        self.store.run(move |conn| conn.delete_session(&digest)).await
    }

    /// The live session with this key, from the cache or the store.
    pub async fn find_session(&self, key: &str) -> Result<Option<SessionMatch>, Error> {
        let digest = token_digest(key);
        if let Some(found) = self.sessions.get(&digest) {
            return Ok(Some(found));
        }
        match self.fulfil(&Need::FindSession(digest)).await? {
            Answer::Session(found) => Ok(found),
            _ => Ok(None),
        }
    }

    pub fn session_settings(&self) -> &SessionSettings {
        &self.session_settings
    }

    /// The user with this name, from the cache or the store.
    pub async fn find_user(&self, username: &str) -> Result<Option<User>, Error> {
        if let Some(user) = self.users.get(username) {
            return Ok(Some(user));
        }
        match self.fulfil(&Need::FindUser(username.to_owned())).await? {
            Answer::User(user) => Ok(user),
            _ => Ok(None),
        }
    }

    /// The user's token key, made if they have none, on the store pool.
    pub async fn get_or_create_token(
        &self,
        secret: TokenSecret,
        username: String,
    ) -> Result<Option<String>, Error> {
        self.store.run(move |conn| tokens::get_or_create(conn, &secret, &username)).await
    }
}

/// Creates the user (with a token, when `tokens` is given: DRF's post_save recipe), or
/// finds them if they exist.
fn create_or_find(
    conn: &mut dyn crate::store::StoreConn,
    name: &str,
    tokens: Option<&TokenSecret>,
) -> Result<User, Error> {
    let new = NewUser { username: name, password_hash: None, is_active: true, is_staff: false };
    match conn.create_user(&new)? {
        Some(user) => {
            if let Some(secret) = tokens {
                tokens::get_or_create(conn, secret, name)?;
            }
            Ok(user)
        }
        None => conn
            .find_user(name)?
            .ok_or_else(|| Error::store(format!("user {name:?} vanished while being created"))),
    }
}

/// SHA-256 of a token key: what the store keeps.
pub fn token_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The services lent to one scheme for one request.
#[derive(Debug)]
pub(crate) struct RequestHost<'s> {
    services: &'s Services,
    scheme: &'s str,
    /// The calling scheme's token policy, applied to the tokens it finds.
    token_policy: Option<&'s TokenPolicy>,
    answers: RefCell<Vec<(Need, Answer)>>,
    need: RefCell<Option<Need>>,
}

impl<'s> RequestHost<'s> {
    pub(crate) fn new(
        services: &'s Services,
        scheme: &'s str,
        token_policy: Option<&'s TokenPolicy>,
    ) -> Self {
        RequestHost { services, scheme, token_policy, answers: RefCell::default(), need: RefCell::default() }
    }

    /// What the last call asked for and did not get.
    pub(crate) fn take_need(&self) -> Option<Need> {
        self.need.borrow_mut().take()
    }

    pub(crate) fn answer(&self, need: Need, answer: Answer) {
        self.answers.borrow_mut().push((need, answer));
    }

    fn answered(&self, need: &Need) -> Option<Answer> {
        self.answers.borrow().iter().find(|(n, _)| n == need).map(|(_, a)| a.clone())
    }

    fn pending<T>(&self, need: Need) -> RResult<T, HostError> {
        self.need.borrow_mut().get_or_insert(need);
        RResult::RErr(HostError::pending())
    }

    fn user_lookup(
        &self,
        need: Need,
        cached: impl FnOnce() -> Option<User>,
    ) -> RResult<ROption<User>, HostError> {
        if let Some(Answer::User(user)) = self.answered(&need) {
            return RResult::ROk(user.into());
        }
        match cached() {
            Some(user) => RResult::ROk(ROption::RSome(user)),
            None => self.pending(need),
        }
    }
}

impl HostServices for RequestHost<'_> {
    fn find_user(&self, username: RStr<'_>) -> RResult<ROption<User>, HostError> {
        let name = username.as_str();
        self.user_lookup(Need::FindUser(name.to_owned()), || self.services.users.get(name))
    }

    fn verify_password(
        &self,
        username: RStr<'_>,
        password: RStr<'_>,
        cache_ms: u64,
    ) -> RResult<ROption<User>, HostError> {
        let cache = Duration::from_millis(cache_ms);
        let need =
            Need::VerifyPassword { username: username.to_string(), password: password.to_string(), cache };
        self.user_lookup(need, || {
            if cache.is_zero() {
                return None;
            }
            self.services
                .credentials
                .get(&self.services.credential_hash(username.as_str(), password.as_str()))
        })
    }

    fn create_user(&self, username: RStr<'_>) -> RResult<User, HostError> {
        let name = username.as_str();
        if name.is_empty() {
            return RResult::RErr(HostError::internal("cannot create a user with an empty name"));
        }
        match self.user_lookup(Need::CreateUser(name.to_owned()), || self.services.users.get(name)) {
            RResult::ROk(ROption::RSome(user)) => RResult::ROk(user),
            RResult::ROk(ROption::RNone) => RResult::RErr(HostError::internal("user creation gave no user")),
            RResult::RErr(e) => RResult::RErr(e),
        }
    }

    fn find_token(&self, key: RStr<'_>) -> RResult<ROption<TokenMatch>, HostError> {
        let digest = token_digest(key.as_str());
        let need = Need::FindToken(digest);
        let found = match self.answered(&need) {
            Some(Answer::Token(token)) => token,
            _ => match self.services.tokens.get(&digest) {
                // The cache never outlives a token's expiry, so a hit is live.
                Some(token) => Some(token),
                None => return self.pending(need),
            },
        };
        if let (Some(token), Some(policy)) = (&found, self.token_policy) {
            self.services.refresh_on_use(digest, token, policy);
        }
        RResult::ROk(found.map(|t| t.token).into())
    }

    fn find_session(&self, key: RStr<'_>) -> RResult<ROption<SessionMatch>, HostError> {
        let digest = token_digest(key.as_str());
        let need = Need::FindSession(digest);
        if let Some(Answer::Session(found)) = self.answered(&need) {
            return RResult::ROk(found.into());
        }
        match self.services.sessions.get(&digest) {
            Some(found) => RResult::ROk(ROption::RSome(found)),
            None => self.pending(need),
        }
    }

    fn session_settings(&self) -> SessionSettings {
        self.services.session_settings.clone()
    }

    fn warn(&self, message: RStr<'_>) {
        warn!(scheme = %self.scheme, "{}", message.as_str());
    }
}
