//! The host services a scheme calls, in two halves: [`RequestHost`], which answers a
//! scheme synchronously from memory and records what it lacks, and [`Services`], which
//! fetches what was lacking off the async workers and keeps the caches.
//!
//! Every cache fill is stamped before its store read and every revocation is made in the
//! store first and in memory second (`cache.rs`), so that no answer read before a
//! revocation is served after it.

use std::cell::RefCell;
use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::Duration;

use authhost_plugin_api::abi_stable::std_types::{ROption, RResult, RStr};
use authhost_plugin_api::{
    HostError, HostServices, LoginField, SessionMatch, SessionSettings, TokenMatch, TokenPolicy, User,
};
use blake2::digest::{KeyInit, Mac};
use blake2::Blake2sMac256;
use sha2::{Digest, Sha256};
use tracing::{debug, error, info, warn};

use crate::cache::{Cache, Revocations};
use crate::config::SessionConfig;
use crate::error::Error;
use crate::pool::PasswordPool;
use crate::sessions;
use crate::store::{Backend, ClientToken, NewUser, StoreConn, StoreFile};
use crate::throttle::{self, Rate};
use crate::tokens::{self, TokenSecret};
use crate::usernames;

/// Something a scheme asked for that was not in memory.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Need {
    FindUser(String),
    VerifyPassword { field: LoginField, login: String, password: String, cache: Duration, client: IpAddr },
    CreateUser(String),
    FindToken([u8; 32]),
    FindSession([u8; 32]),
}

impl std::fmt::Debug for Need {
    // Never prints a password or a token digest.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Need::FindUser(name) => write!(f, "FindUser({name:?})"),
            Need::VerifyPassword { field, login, .. } => {
                write!(f, "VerifyPassword({}: {login:?})", field.as_str())
            }
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
    /// Active users, tokens, sessions and verified passwords read from the store; zero
    /// turns every cache off.
    pub ttl: Duration,
    /// Entries each cache holds at most.
    pub capacity: usize,
    /// How often the store's change log is read; changed users leave every cache.
    pub poll: Duration,
    /// Refresh on use writes a token's new expiry at most this often.
    pub refresh_every: Duration,
}

/// What the host keeps in memory, and the revocations that void it.
#[derive(Debug)]
struct Caches {
    revocations: Revocations,
    users: Cache<String, User>,
    tokens: Cache<[u8; 32], CachedToken>,
    /// Keyed hash of (username, password) → user, for verified pairs only.
    credentials: Cache<[u8; 32], User>,
    sessions: Cache<[u8; 32], SessionMatch>,
    /// Tokens whose refreshed expiry is being written.
    refreshing: std::sync::Mutex<std::collections::HashSet<i64>>,
}

impl Caches {
    fn new(capacity: usize) -> Self {
        Caches {
            revocations: Revocations::default(),
            users: Cache::new(capacity),
            tokens: Cache::new(capacity),
            credentials: Cache::new(capacity),
            sessions: Cache::new(capacity),
            refreshing: std::sync::Mutex::default(),
        }
    }

    /// Voids everything cached about these users. Call after the store changed.
    fn forget(&self, usernames: &[String]) {
        for name in usernames {
            self.revocations.revoke_user(name);
        }
    }

    /// Voids everything, and frees it.
    fn forget_everything(&self) {
        self.revocations.revoke_all();
        self.users.clear();
        self.tokens.clear();
        self.credentials.clear();
        self.sessions.clear();
    }
}

/// Shared by every request: the pools and the caches.
#[derive(Debug)]
pub struct Services {
    store: Arc<dyn Backend>,
    passwords: PasswordPool,
    policy: CachePolicy,
    caches: Arc<Caches>,
    credential_key: [u8; 32],
    session_settings: SessionSettings,
    /// Set when every new user gets a token (`[store] token_for_new_users`).
    new_user_tokens: Option<TokenSecret>,
    /// `[throttle] failures`: failed logins allowed per client address and per name.
    failures: Option<Rate>,
    /// Where the failures' windows live: here, or in the shared store.
    counter: throttle::Counter,
}

impl Services {
    pub fn new(
        store: Arc<dyn Backend>,
        passwords: PasswordPool,
        policy: CachePolicy,
        session: &SessionConfig,
        new_user_tokens: Option<TokenSecret>,
    ) -> Self {
        Services::with_failures(store, passwords, policy, session, new_user_tokens, None)
    }

    /// As `new`, with `[throttle] failures`.
    pub fn with_failures(
        store: Arc<dyn Backend>,
        passwords: PasswordPool,
        policy: CachePolicy,
        session: &SessionConfig,
        new_user_tokens: Option<TokenSecret>,
        failures: Option<Rate>,
    ) -> Self {
        let mut credential_key = [0u8; 32];
        argon2::password_hash::rand_core::RngCore::fill_bytes(
            &mut argon2::password_hash::rand_core::OsRng,
            &mut credential_key,
        );
        let capacity = if policy.ttl.is_zero() { 0 } else { policy.capacity };
        Services {
            store,
            passwords,
            policy,
            caches: Arc::new(Caches::new(capacity)),
            credential_key,
            session_settings: SessionSettings {
                cookie_name: session.cookie_name.as_str().into(),
                csrf_cookie_name: session.csrf_cookie_name.as_str().into(),
                csrf_header_name: session.csrf_header_name.as_str().into(),
                secure: session.secure,
                trusted_origins: session.trusted_origins.iter().map(|o| o.as_str().into()).collect(),
            },
            new_user_tokens,
            failures,
            counter: throttle::Counter::Local,
        }
    }

    /// Counts `[throttle] failures` (and the app's throttles) in `counter`'s windows.
    pub fn with_counter(mut self, counter: throttle::Counter) -> Self {
        self.counter = counter;
        self
    }

    /// Where throttle windows live.
    pub fn counter(&self) -> &throttle::Counter {
        &self.counter
    }

    /// `Err` with the reason when the host cannot serve authentication right now: a pool
    /// with no live worker, or one stuck on its jobs.
    pub fn health(&self) -> Result<(), String> {
        self.store.health()?;
        self.passwords.health()
    }

    /// Jobs waiting in each pool's queue, by pool.
    pub fn queue_depths(&self) -> Vec<(&'static str, usize)> {
        let mut depths = self.store.queue_depths();
        depths.push(("password", self.passwords.queue_depth()));
        depths
    }

    /// The store, for the host's handlers and for tests that exercise it in-process.
    pub fn store(&self) -> &Arc<dyn Backend> {
        &self.store
    }

    fn credential_hash(&self, field: LoginField, login: &str, password: &str) -> [u8; 32] {
        let mut mac = <Blake2sMac256 as KeyInit>::new_from_slice(&self.credential_key)
            .unwrap_or_else(|_| unreachable!("a 32-byte key fits Blake2s"));
        mac.update(field.as_str().as_bytes());
        mac.update(&(login.len() as u64).to_le_bytes());
        mac.update(login.as_bytes());
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Follows the store's change log on a thread of its own with its own connection (never
    /// queued behind requests), while `services` lives (a reload replaces it). A change
    /// voids what is cached of its user; a gap in the log (pruned past this host's
    /// position, or another store) or a failed read voids everything.
    pub fn spawn_change_poller(services: &Arc<Services>, mut conn: Box<dyn StoreConn>) -> Result<(), Error> {
        let mut seq = conn.last_change()?;
        let weak: Weak<Services> = Arc::downgrade(services);
        let period = services.policy.poll;
        let mut failing = false;
        let mut reload_asked: Option<std::time::Instant> = None;
        std::thread::Builder::new()
            .name("authhost-changes".into())
            .spawn(move || loop {
                // A thread of its own: it waits out the period, then reads.
                std::thread::sleep(period);
                let Some(services) = weak.upgrade() else {
                    return;
                };
                let caches = &services.caches;
                // A store file removed or replaced under the host: nothing read from the old
                // one can be vouched for, so caches are dropped on every poll. Once another
                // file is at the path, a reload (asked for now, and again every 5 s while it
                // has not happened) opens it; while none is, none is created.
                match conn.store_file() {
                    StoreFile::Same => {}
                    StoreFile::Missing => {
                        caches.forget_everything();
                        continue;
                    }
                    StoreFile::Replaced => {
                        caches.forget_everything();
                        if reload_asked.is_none_or(|at| at.elapsed() >= Duration::from_secs(5)) {
                            warn!("the store file was replaced under this host: reloading to reopen it");
                            crate::server::request_reload();
                            reload_asked = Some(std::time::Instant::now());
                        }
                        continue;
                    }
                }
                apply_changes(caches, conn.changes_since(seq), &mut seq, &mut failing);
            })
            .map_err(|e| Error::io("cannot start the change-log thread").with_source(e))?;
        Ok(())
    }

    /// PostgreSQL: follows the change log and purges expired credentials in tasks on the
    /// host's runtime, while `services` lives (a reload replaces it).
    pub fn spawn_store_tasks(
        services: &Arc<Services>,
        pg: Arc<crate::store::PgBackend>,
        purge_every: Duration,
    ) -> Result<(), Error> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::io("the PostgreSQL store's tasks need the host's runtime"))?;
        let weak: Weak<Services> = Arc::downgrade(services);
        let period = services.policy.poll;
        // LISTEN/NOTIFY wakes the reader at once; the periodic read stays as the fallback
        // for a lost listening connection (which reconnects, then the reader catches up
        // from its last change number).
        let wake = Arc::new(tokio::sync::Notify::new());
        {
            let (wake, weak, pg) = (Arc::clone(&wake), weak.clone(), Arc::clone(&pg));
            runtime.spawn(async move {
                let mut failing = false;
                while weak.strong_count() > 0 {
                    match pg.listen(&wake, || weak.strong_count() == 0).await {
                        Ok(()) => return,
                        Err(err) => {
                            if !failing {
                                warn!(error = %err.with_cause(), "lost the store's change notifications: reading the log every change_poll until they are back");
                                failing = true;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        runtime.spawn(async move {
            let mut seq: Option<i64> = None;
            let mut failing = false;
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = wake.notified() => {}
                }
                let Some(services) = weak.upgrade() else { return };
                let Some(position) = seq else {
                    // Where the log stands when this host starts: later changes are news.
                    match services.store.last_change().await {
                        Ok(last) => seq = Some(last),
                        Err(err) => apply_changes(&services.caches, Err(err), &mut 0, &mut failing),
                    }
                    continue;
                };
                let mut position = position;
                let read = services.store.changes_since(position).await;
                apply_changes_or_keep(&services.caches, read, &mut position, &mut failing, true);
                seq = Some(position);
            }
        });
        let weak: Weak<Services> = Arc::downgrade(services);
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(purge_every);
            loop {
                ticks.tick().await;
                if weak.strong_count() == 0 {
                    return;
                }
                // A full batch: more are waiting, so purge again at once.
                loop {
                    match pg.purge_expired(sessions::now(), 1000).await {
                        Ok(n) if n >= 1000 => continue,
                        Ok(n) => {
                            if n > 0 {
                                debug!(purged = n, "expired tokens and sessions purged");
                            }
                        }
                        Err(err) => warn!(error = %err.with_cause(), "cannot purge expired tokens and sessions; trying again later"),
                    }
                    break;
                }
            }
        });
        Ok(())
    }

    /// Fetches what a scheme needed: a store look-up on the store pool, argon2 on the
    /// password pool. Awaits; never blocks the worker. What it caches is stamped before the
    /// store read, so a revocation meanwhile keeps it out of the cache.
    pub(crate) async fn fulfil(&self, need: &Need) -> Result<Answer, Error> {
        let caches = &self.caches;
        let revocations = &caches.revocations;
        let stamp = revocations.stamp();
        let now = sessions::now();
        Ok(match need.clone() {
            Need::FindUser(name) => {
                let user = self.store.find_user(&name).await?;
                self.cache_user(user.as_ref(), stamp);
                Answer::User(user)
            }
            Need::CreateUser(name) => {
                let tokens = self.new_user_tokens.clone();
                let user = create_or_find(self.store.as_ref(), &name, tokens.as_ref()).await?;
                self.cache_user(Some(&user), stamp);
                Answer::User(Some(user))
            }
            Need::VerifyPassword { field, login, password, cache, client } => {
                let key = (!cache.is_zero()).then(|| self.credential_hash(field, &login, &password));
                let user = self.verify_login(field, login, password, client).await?;
                if let (Some(key), Some(user)) = (key, user.as_ref().filter(|u| u.is_active)) {
                    // Never longer than the host's own cache time.
                    let ttl = cache.min(self.policy.ttl);
                    caches.credentials.put(key, user.clone(), &user.username, stamp, ttl, revocations);
                }
                Answer::User(user)
            }
            Need::FindToken(digest) => {
                let found = self.store.find_token(&digest, now).await?;
                let token = found.map(|t| CachedToken {
                    id: t.id,
                    expires: t.expires,
                    max_expires: t.max_expires,
                    used: t.last_used.unwrap_or(i64::MIN),
                    token: TokenMatch { user: t.user, token_id: t.id.to_string().into() },
                });
                if let Some(token) = token.as_ref().filter(|t| t.token.user.is_active) {
                    let ttl = cache_ttl(self.policy.ttl, token.expires, now);
                    let name = token.token.user.username.to_string();
                    caches.tokens.put(digest, token.clone(), &name, stamp, ttl, revocations);
                }
                Answer::Token(token)
            }
            Need::FindSession(digest) => {
                let found = self.store.find_session(&digest, now).await?;
                let session = found.map(|s| {
                    let found = SessionMatch {
                        user: s.user,
                        session_id: s.id.to_string().into(),
                        csrf_secret: s.csrf_secret.into(),
                    };
                    if found.user.is_active {
                        let ttl = cache_ttl(self.policy.ttl, Some(s.expires), now);
                        let name = found.user.username.to_string();
                        caches.sessions.put(digest, found.clone(), &name, stamp, ttl, revocations);
                    }
                    found
                });
                Answer::Session(session)
            }
        })
    }

    fn cache_user(&self, user: Option<&User>, stamp: crate::cache::Stamp) {
        if let Some(user) = user.filter(|u| u.is_active) {
            let caches = &self.caches;
            caches.users.put(
                user.username.to_string(),
                user.clone(),
                &user.username,
                stamp,
                self.policy.ttl,
                &caches.revocations,
            );
        }
    }
}

impl Services {
    /// The user whose `field` is `login`, when the password is theirs (active or not): a
    /// store read on the store pool, then argon2 on the password pool. An unknown user (or
    /// an e-mail address several users share) is verified against a dummy hash, so it
    /// costs the same.
    ///
    /// With `[throttle] failures`, a login from `client` is refused (a throttled error: 429)
    /// before any store read or argon2 work while the client's or the name's failures fill
    /// their window; a wrong password counts in both.
    pub async fn verify_login(
        &self,
        field: LoginField,
        login: String,
        password: String,
        client: IpAddr,
    ) -> Result<Option<User>, Error> {
        let login = match field {
            LoginField::Username => usernames::normalize(&login).into_owned(),
            LoginField::Email => login,
        };
        if let Some(rate) = self.failures {
            self.counter.failures_refused(rate, client, &login).await?.map_err(Error::throttled)?;
        }
        let name = self.failures.map(|_| login.clone());
        let found = match field {
            LoginField::Username => self.store.find_credentials(&login).await?,
            LoginField::Email => self.store.find_credentials_by_email(&login).await?,
        };
        let (user, hash) = match found {
            Some((user, hash)) => (Some(user), hash),
            None => (None, None),
        };
        let (ok, upgraded) = self.passwords.verify_upgrading(hash.clone(), password).await?;
        // A Django hash that matched is replaced by the password's argon2id hash, once.
        if let (Some(user), Some(old), Some(new)) = (&user, &hash, &upgraded) {
            match self.store.rehash_password(&user.username, old, new).await {
                Ok(_) => info!(user = %user.username, "imported Django password hash upgraded to argon2id"),
                Err(err) => {
                    warn!(user = %user.username, "cannot upgrade an imported password hash: {}", err.with_cause())
                }
            }
        }
        if let (Some(rate), Some(name)) = (self.failures, name) {
            if ok {
                self.counter.succeeded(client, &name).await?;
            } else {
                self.counter.failed(rate, client, &name).await?;
            }
        }
        Ok(user.filter(|_| ok))
    }

    /// Refresh on use: moves a token's expiry to now + ttl (never past its cap), at most
    /// once a minute per token, never for an inactive user. The store write is the truth:
    /// the cache takes the new expiry only once it is written, stamped from before the
    /// write, so a token deleted meanwhile is not put back.
    fn refresh_on_use(&self, digest: [u8; 32], token: &CachedToken, policy: &TokenPolicy) {
        // Tokens that never expire (obtain_token's) stay so.
        if !policy.refresh_on_use
            || policy.ttl_secs == 0
            || token.expires.is_none()
            || !token.token.user.is_active
        {
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
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let caches = Arc::clone(&self.caches);
        // One write per token at a time: requests meanwhile leave it to the one on its way.
        if !caches.refreshing.lock().unwrap_or_else(|e| e.into_inner()).insert(token.id) {
            return;
        }
        let username = token.token.user.username.to_string();
        let before_write = caches.revocations.stamp();
        let refreshed = CachedToken { expires: Some(expires), used: now, ..token.clone() };
        let new_ttl = cache_ttl(self.policy.ttl, Some(expires), now);
        let (id, store) = (token.id, self.store.clone());
        runtime.spawn(async move {
            match store.refresh_token(id, expires, now).await {
                Ok(true) => {
                    debug!(token_id = id, expires, "token expiry refreshed");
                    caches.tokens.put(
                        digest,
                        refreshed,
                        &username,
                        before_write,
                        new_ttl,
                        &caches.revocations,
                    );
                }
                Ok(false) => debug!(token_id = id, "token not refreshed: deleted, or its user is inactive"),
                Err(err) => warn!(error = %err.with_cause(), "cannot record a token's refreshed expiry"),
            }
            caches.refreshing.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        });
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
        let token = ClientToken { digest: &digest, client: client.as_deref(), expires, max_expires };
        let created = self.store.create_client_token(user_id, &token, limit).await?;
        Ok(created.map(|_| (key, expires)))
    }

    /// Deletes one of the user's tokens (logout), here and, through the change log, in
    /// other hosts' caches.
    pub async fn delete_token(&self, user: &User, id: i64) -> Result<bool, Error> {
        let user_id = user.id;
        let deleted = self.store.delete_token(user_id, id).await?;
        // The store first, then memory: a fill that read the token before is void now.
        self.caches.forget(&[user.username.to_string()]);
        Ok(deleted)
    }

    /// Deletes every token of the user's (logout everywhere).
    pub async fn delete_user_tokens(&self, user: &User) -> Result<usize, Error> {
        let name = user.username.to_string();
        let deleted = self.store.delete_tokens(&name).await?;
        self.caches.forget(&[name]);
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
        self.store.create_session(user_id, &digest, &csrf_secret, expires).await?;
        Ok(key)
    }

    /// Ends the session with this key (logout): in the store (which logs it for other
    /// hosts), then in memory. Whether there was one.
    pub async fn delete_session(&self, key: &str) -> Result<bool, Error> {
        let digest = token_digest(key);
        let owner = self.store.delete_session(&digest).await?;
        if let Some(owner) = &owner {
            self.caches.forget(std::slice::from_ref(owner));
        }
        Ok(owner.is_some())
    }

    /// The live session with this key, from the cache or the store.
    pub async fn find_session(&self, key: &str) -> Result<Option<SessionMatch>, Error> {
        let digest = token_digest(key);
        if let Some(found) = self.caches.sessions.get(&digest, &self.caches.revocations) {
            return Ok(Some(found));
        }
        match self.fulfil(&Need::FindSession(digest)).await? {
            Answer::Session(found) => Ok(found),
            other => Err(Error::store(format!("a session look-up was answered with {other:?}"))),
        }
    }

    pub fn session_settings(&self) -> &SessionSettings {
        &self.session_settings
    }

    /// The user with this name, from the cache or the store.
    pub async fn find_user(&self, username: &str) -> Result<Option<User>, Error> {
        if let Some(user) = self.caches.users.get(username, &self.caches.revocations) {
            return Ok(Some(user));
        }
        match self.fulfil(&Need::FindUser(username.to_owned())).await? {
            Answer::User(user) => Ok(user),
            other => Err(Error::store(format!("a user look-up was answered with {other:?}"))),
        }
    }

    /// The user's token key, made if they have none: read on a reader (the usual case, so
    /// a held write lock does not stop it), written by the writer only when there is none.
    pub async fn get_or_create_token(
        &self,
        secret: TokenSecret,
        username: String,
    ) -> Result<Option<String>, Error> {
        if let Some(nonce) = self.store.token_nonce(&username).await? {
            return Ok(Some(secret.derive(&nonce)));
        }
        tokens::get_or_create(self.store.as_ref(), &secret, &username).await
    }
}

/// What one read of the change log means for the caches: a change voids what is cached of
/// its user; a gap (pruned past `seq`, or another store) or a failed read voids everything.
fn apply_changes(
    caches: &Caches,
    read: Result<crate::store::Changes, Error>,
    seq: &mut i64,
    failing: &mut bool,
) {
    apply_changes_or_keep(caches, read, seq, failing, false);
}

/// As `apply_changes`; with `keep_when_unreachable`, a store that cannot be reached at all
/// leaves the caches as they are (no one can change it meanwhile either): they keep serving
/// until their entries expire (`user_cache_ttl`), and the log is read from where it was
/// once the store answers again.
fn apply_changes_or_keep(
    caches: &Caches,
    read: Result<crate::store::Changes, Error>,
    seq: &mut i64,
    failing: &mut bool,
    keep_when_unreachable: bool,
) {
    if let Err(err) = &read {
        if keep_when_unreachable && err.is_unavailable() {
            if !*failing {
                warn!(error = %err.with_cause(), "the store is unreachable: serving what is cached until it expires");
                *failing = true;
            }
            return;
        }
    }
    match read {
        Ok(changes) => {
            if *failing {
                info!("the store's change log is readable again");
                *failing = false;
            }
            if changes.missed {
                warn!(
                    position = *seq,
                    "changes were pruned from the store's change log before this host read \
                     them (or the store was replaced): dropping every cache"
                );
                caches.forget_everything();
            }
            if !changes.users.is_empty() {
                caches.forget(&changes.users);
                debug!(users = changes.users.len(), "store changes: dropped cached entries");
            }
            *seq = changes.last;
        }
        Err(err) => {
            // Nothing cached can be vouched for: drop it all, on every failed read.
            caches.forget_everything();
            if !*failing {
                warn!(error = %err.with_cause(), "cannot read the store's change log: dropping every cache until it can be read");
                *failing = true;
            }
        }
    }
}

/// Creates the user (with a token, when `tokens` is given: DRF's post_save recipe), or
/// finds them if they exist.
async fn create_or_find(
    store: &dyn Backend,
    name: &str,
    tokens: Option<&TokenSecret>,
) -> Result<User, Error> {
    let new = NewUser { username: name, password_hash: None, is_active: true, is_staff: false, email: "" };
    match store.create_user(&new).await? {
        Some(user) => {
            if let Some(secret) = tokens {
                tokens::get_or_create(store, secret, name).await?;
            }
            Ok(user)
        }
        None => store
            .find_user(name)
            .await?
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
    /// The client's address (after a trusted proxy's `X-Forwarded-For`).
    client: IpAddr,
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
        client: IpAddr,
    ) -> Self {
        RequestHost {
            services,
            scheme,
            client,
            token_policy,
            answers: RefCell::default(),
            need: RefCell::default(),
        }
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
        match self.answered(&need) {
            Some(Answer::User(user)) => RResult::ROk(user.into()),
            Some(other) => mismatch(&need, &other),
            None => match cached() {
                Some(user) => RResult::ROk(ROption::RSome(user)),
                None => self.pending(need),
            },
        }
    }

    /// Runs a service under the same guard as a plugin call: a panic in the host's own
    /// code is caught here (it must never unwind through the plugin's frames), logged, and
    /// answered as an error, which the scheme passes on and the host reports as a fault.
    fn guarded<T>(&self, service: &str, f: impl FnOnce() -> RResult<T, HostError>) -> RResult<T, HostError> {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(result) => result,
            Err(payload) => {
                let cause = authhost_plugin_api::export::payload_message(payload.as_ref());
                error!(scheme = %self.scheme, service, cause, "host service {service} panicked: {cause}");
                RResult::RErr(HostError::internal(format!("host service {service} panicked: {cause}")))
            }
        }
    }
}

/// An answer of the wrong kind for a need: a host bug, reported as a fault, never read as
/// "not found".
fn mismatch<T>(need: &Need, answer: &Answer) -> RResult<T, HostError> {
    let variant = match answer {
        Answer::User(_) => "a user",
        Answer::Token(_) => "a token",
        Answer::Session(_) => "a session",
    };
    RResult::RErr(HostError::internal(format!("the host answered {need:?} with {variant}")))
}

impl HostServices for RequestHost<'_> {
    fn find_user(&self, username: RStr<'_>) -> RResult<ROption<User>, HostError> {
        self.guarded("find_user", || {
            let name = usernames::normalize(username.as_str());
            let name = name.as_ref();
            let caches = &self.services.caches;
            self.user_lookup(Need::FindUser(name.to_owned()), || caches.users.get(name, &caches.revocations))
        })
    }

    fn verify_password(
        &self,
        username: RStr<'_>,
        password: RStr<'_>,
        cache_ms: u64,
    ) -> RResult<ROption<User>, HostError> {
        self.verify_login("username".into(), username, password, cache_ms)
    }

    fn verify_login(
        &self,
        field: RStr<'_>,
        login: RStr<'_>,
        password: RStr<'_>,
        cache_ms: u64,
    ) -> RResult<ROption<User>, HostError> {
        self.guarded("verify_login", || {
            let Some(field) = LoginField::parse(field.as_str()) else {
                return RResult::RErr(HostError::internal(format!("no login field {:?}", field.as_str())));
            };
            let cache = Duration::from_millis(cache_ms);
            let login = match field {
                LoginField::Username => usernames::normalize(login.as_str()),
                LoginField::Email => std::borrow::Cow::Borrowed(login.as_str()),
            };
            let need = Need::VerifyPassword {
                field,
                login: login.to_string(),
                password: password.to_string(),
                cache,
                client: self.client,
            };
            self.user_lookup(need, || {
                if cache.is_zero() {
                    return None;
                }
                let caches = &self.services.caches;
                let key = self.services.credential_hash(field, &login, password.as_str());
                caches.credentials.get(&key, &caches.revocations)
            })
        })
    }

    fn create_user(&self, username: RStr<'_>) -> RResult<User, HostError> {
        self.guarded("create_user", || {
            let name = usernames::normalize(username.as_str());
            let name = name.as_ref();
            if name.is_empty() {
                return RResult::RErr(HostError::internal("cannot create a user with an empty name"));
            }
            let caches = &self.services.caches;
            let cached = || caches.users.get(name, &caches.revocations);
            match self.user_lookup(Need::CreateUser(name.to_owned()), cached) {
                RResult::ROk(ROption::RSome(user)) => RResult::ROk(user),
                RResult::ROk(ROption::RNone) => {
                    RResult::RErr(HostError::internal("user creation gave no user"))
                }
                RResult::RErr(e) => RResult::RErr(e),
            }
        })
    }

    fn find_token(&self, key: RStr<'_>) -> RResult<ROption<TokenMatch>, HostError> {
        self.guarded("find_token", || {
            let digest = token_digest(key.as_str());
            let need = Need::FindToken(digest);
            let caches = &self.services.caches;
            let found = match self.answered(&need) {
                Some(Answer::Token(token)) => token,
                Some(other) => return mismatch(&need, &other),
                // The cache never outlives a token's expiry, so a hit is live.
                None => match caches.tokens.get(&digest, &caches.revocations) {
                    found @ Some(_) => found,
                    None => return self.pending(need),
                },
            };
            if let (Some(token), Some(policy)) = (&found, self.token_policy) {
                self.services.refresh_on_use(digest, token, policy);
            }
            RResult::ROk(found.map(|t| t.token).into())
        })
    }

    fn find_session(&self, key: RStr<'_>) -> RResult<ROption<SessionMatch>, HostError> {
        self.guarded("find_session", || {
            let digest = token_digest(key.as_str());
            let need = Need::FindSession(digest);
            let caches = &self.services.caches;
            match self.answered(&need) {
                Some(Answer::Session(found)) => RResult::ROk(found.into()),
                Some(other) => mismatch(&need, &other),
                None => match caches.sessions.get(&digest, &caches.revocations) {
                    Some(found) => RResult::ROk(ROption::RSome(found)),
                    None => self.pending(need),
                },
            }
        })
    }

    fn session_settings(&self) -> SessionSettings {
        self.services.session_settings.clone()
    }

    fn warn(&self, message: RStr<'_>) {
        warn!(scheme = %self.scheme, "{}", message.as_str());
    }
}
