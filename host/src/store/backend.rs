//! The store as the host's async code and the command line use it: one interface over
//! SQLite (blocking connections on the store pool's own threads, `pool.rs`) and PostgreSQL
//! (async queries on a connection pool). Every method is one store operation, atomic where
//! its `StoreConn` twin is.

use async_trait::async_trait;
use authhost_plugin_api::User;

use super::{
    Changes, ClientToken, NewToken, NewUser, Store, StoreConn, StoredSession, StoredToken, TokenGot,
    TokenRow, TokenSet,
};
use crate::error::Error;
use crate::pool::{StorePool, StorePoolConfig};

#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// `Err` with the reason when the store cannot serve now (a pool with no live worker).
    fn health(&self) -> Result<(), String>;

    /// Operations waiting for a connection, by queue.
    fn queue_depths(&self) -> Vec<(&'static str, usize)>;

    async fn find_user(&self, username: &str) -> Result<Option<User>, Error>;
    async fn find_credentials(&self, username: &str) -> Result<Option<(User, Option<String>)>, Error>;
    async fn find_credentials_by_email(&self, email: &str) -> Result<Option<(User, Option<String>)>, Error>;
    async fn create_user(&self, user: &NewUser<'_>) -> Result<Option<User>, Error>;
    async fn set_password(&self, username: &str, password_hash: &str) -> Result<bool, Error>;
    /// See `StoreConn::rehash_password`.
    async fn rehash_password(&self, username: &str, old: &str, new: &str) -> Result<bool, Error>;
    async fn set_active(&self, username: &str, active: bool) -> Result<bool, Error>;
    async fn set_staff(&self, username: &str, staff: bool) -> Result<bool, Error>;
    async fn set_email(&self, username: &str, email: &str) -> Result<bool, Error>;
    async fn delete_user(&self, username: &str) -> Result<bool, Error>;
    async fn list_users(&self) -> Result<Vec<User>, Error>;
    async fn find_token(&self, digest: &[u8], now: i64) -> Result<Option<StoredToken>, Error>;
    async fn create_client_token(
        &self,
        user_id: i64,
        token: &ClientToken<'_>,
        limit: u32,
    ) -> Result<Option<i64>, Error>;
    async fn refresh_token(&self, id: i64, expires: i64, now: i64) -> Result<bool, Error>;
    async fn delete_token(&self, user_id: i64, id: i64) -> Result<bool, Error>;
    async fn list_tokens(&self, username: &str) -> Result<Vec<TokenRow>, Error>;
    async fn create_token(
        &self,
        username: &str,
        token: &NewToken<'_>,
        replace: bool,
    ) -> Result<TokenSet, Error>;
    async fn get_or_create_token(&self, username: &str, token: &NewToken<'_>) -> Result<TokenGot, Error>;
    async fn token_nonce(&self, username: &str) -> Result<Option<Vec<u8>>, Error>;
    async fn delete_tokens(&self, username: &str) -> Result<usize, Error>;
    async fn users_without_token(&self) -> Result<Vec<String>, Error>;
    async fn create_session(
        &self,
        user_id: i64,
        digest: &[u8],
        csrf_secret: &str,
        expires: i64,
    ) -> Result<i64, Error>;
    async fn find_session(&self, digest: &[u8], now: i64) -> Result<Option<StoredSession>, Error>;
    async fn delete_session(&self, digest: &[u8]) -> Result<Option<String>, Error>;
    async fn last_change(&self) -> Result<i64, Error>;
    async fn changes_since(&self, seq: i64) -> Result<Changes, Error>;
}

/// SQLite behind the store pool: reads on the readers, writes on the one writer.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    pool: StorePool,
}

impl SqliteBackend {
    pub fn start(store: &dyn Store, config: StorePoolConfig) -> Result<Self, Error> {
        Ok(SqliteBackend { pool: StorePool::start(store, config)? })
    }

    /// The pool, for tests that hand it jobs of their own.
    pub fn pool(&self) -> &StorePool {
        &self.pool
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn StoreConn) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        self.pool.read(f).await
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn StoreConn) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        self.pool.write(f).await
    }
}

/// What a `NewUser` holds, owned, for a job on another thread.
struct OwnedUser {
    username: String,
    password_hash: Option<String>,
    is_active: bool,
    is_staff: bool,
    email: String,
}

impl OwnedUser {
    fn new(user: &NewUser<'_>) -> Self {
        OwnedUser {
            username: user.username.to_owned(),
            password_hash: user.password_hash.map(str::to_owned),
            is_active: user.is_active,
            is_staff: user.is_staff,
            email: user.email.to_owned(),
        }
    }

    fn borrow(&self) -> NewUser<'_> {
        NewUser {
            username: &self.username,
            password_hash: self.password_hash.as_deref(),
            is_active: self.is_active,
            is_staff: self.is_staff,
            email: &self.email,
        }
    }
}

/// A `NewToken`, owned.
fn owned_token(token: &NewToken<'_>) -> (Vec<u8>, Option<Vec<u8>>) {
    (token.digest.to_vec(), token.nonce.map(<[u8]>::to_vec))
}

#[async_trait]
impl Backend for SqliteBackend {
    fn health(&self) -> Result<(), String> {
        self.pool.health()
    }

    fn queue_depths(&self) -> Vec<(&'static str, usize)> {
        let (reads, writes) = self.pool.queue_depths();
        vec![("store_read", reads), ("store_write", writes)]
    }

    async fn find_user(&self, username: &str) -> Result<Option<User>, Error> {
        let username = username.to_owned();
        self.read(move |c| c.find_user(&username)).await
    }

    async fn find_credentials(&self, username: &str) -> Result<Option<(User, Option<String>)>, Error> {
        let username = username.to_owned();
        self.read(move |c| c.find_credentials(&username)).await
    }

    async fn find_credentials_by_email(&self, email: &str) -> Result<Option<(User, Option<String>)>, Error> {
        let email = email.to_owned();
        self.read(move |c| c.find_credentials_by_email(&email)).await
    }

    async fn create_user(&self, user: &NewUser<'_>) -> Result<Option<User>, Error> {
        let user = OwnedUser::new(user);
        self.write(move |c| c.create_user(&user.borrow())).await
    }

    async fn set_password(&self, username: &str, password_hash: &str) -> Result<bool, Error> {
        let (username, hash) = (username.to_owned(), password_hash.to_owned());
        self.write(move |c| c.set_password(&username, &hash)).await
    }

    async fn rehash_password(&self, username: &str, old: &str, new: &str) -> Result<bool, Error> {
        let (username, old, new) = (username.to_owned(), old.to_owned(), new.to_owned());
        self.write(move |c| c.rehash_password(&username, &old, &new)).await
    }

    async fn set_active(&self, username: &str, active: bool) -> Result<bool, Error> {
        let username = username.to_owned();
        self.write(move |c| c.set_active(&username, active)).await
    }

    async fn set_staff(&self, username: &str, staff: bool) -> Result<bool, Error> {
        let username = username.to_owned();
        self.write(move |c| c.set_staff(&username, staff)).await
    }

    async fn set_email(&self, username: &str, email: &str) -> Result<bool, Error> {
        let (username, email) = (username.to_owned(), email.to_owned());
        self.write(move |c| c.set_email(&username, &email)).await
    }

    async fn delete_user(&self, username: &str) -> Result<bool, Error> {
        let username = username.to_owned();
        self.write(move |c| c.delete_user(&username)).await
    }

    async fn list_users(&self) -> Result<Vec<User>, Error> {
        self.read(|c| c.list_users()).await
    }

    async fn find_token(&self, digest: &[u8], now: i64) -> Result<Option<StoredToken>, Error> {
        let digest = digest.to_vec();
        self.read(move |c| c.find_token(&digest, now)).await
    }

    async fn create_client_token(
        &self,
        user_id: i64,
        token: &ClientToken<'_>,
        limit: u32,
    ) -> Result<Option<i64>, Error> {
        let (digest, client) = (token.digest.to_vec(), token.client.map(str::to_owned));
        let (expires, max_expires) = (token.expires, token.max_expires);
        self.write(move |c| {
            let token = ClientToken { digest: &digest, client: client.as_deref(), expires, max_expires };
            c.create_client_token(user_id, &token, limit)
        })
        .await
    }

    async fn refresh_token(&self, id: i64, expires: i64, now: i64) -> Result<bool, Error> {
        self.write(move |c| c.refresh_token(id, expires, now)).await
    }

    async fn delete_token(&self, user_id: i64, id: i64) -> Result<bool, Error> {
        self.write(move |c| c.delete_token(user_id, id)).await
    }

    async fn list_tokens(&self, username: &str) -> Result<Vec<TokenRow>, Error> {
        let username = username.to_owned();
        self.read(move |c| c.list_tokens(&username)).await
    }

    async fn create_token(
        &self,
        username: &str,
        token: &NewToken<'_>,
        replace: bool,
    ) -> Result<TokenSet, Error> {
        let (username, (digest, nonce)) = (username.to_owned(), owned_token(token));
        self.write(move |c| {
            c.create_token(&username, &NewToken { digest: &digest, nonce: nonce.as_deref() }, replace)
        })
        .await
    }

    async fn get_or_create_token(&self, username: &str, token: &NewToken<'_>) -> Result<TokenGot, Error> {
        let (username, (digest, nonce)) = (username.to_owned(), owned_token(token));
        self.write(move |c| {
            c.get_or_create_token(&username, &NewToken { digest: &digest, nonce: nonce.as_deref() })
        })
        .await
    }

    async fn token_nonce(&self, username: &str) -> Result<Option<Vec<u8>>, Error> {
        let username = username.to_owned();
        self.read(move |c| c.token_nonce(&username)).await
    }

    async fn delete_tokens(&self, username: &str) -> Result<usize, Error> {
        let username = username.to_owned();
        self.write(move |c| c.delete_tokens(&username)).await
    }

    async fn users_without_token(&self) -> Result<Vec<String>, Error> {
        self.read(|c| c.users_without_token()).await
    }

    async fn create_session(
        &self,
        user_id: i64,
        digest: &[u8],
        csrf_secret: &str,
        expires: i64,
    ) -> Result<i64, Error> {
        let (digest, secret) = (digest.to_vec(), csrf_secret.to_owned());
        self.write(move |c| c.create_session(user_id, &digest, &secret, expires)).await
    }

    async fn find_session(&self, digest: &[u8], now: i64) -> Result<Option<StoredSession>, Error> {
        let digest = digest.to_vec();
        self.read(move |c| c.find_session(&digest, now)).await
    }

    async fn delete_session(&self, digest: &[u8]) -> Result<Option<String>, Error> {
        let digest = digest.to_vec();
        self.write(move |c| c.delete_session(&digest)).await
    }

    async fn last_change(&self) -> Result<i64, Error> {
        self.read(|c| c.last_change()).await
    }

    async fn changes_since(&self, seq: i64) -> Result<Changes, Error> {
        self.read(move |c| c.changes_since(seq)).await
    }
}
