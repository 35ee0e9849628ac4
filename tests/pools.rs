//! The store and password pools survive their jobs: a store job that panics fails alone,
//! the next requests are served and `health` stays ok. The host runs in-process here (the
//! real config, loader, plugins, server on a real socket, and the real SQLite store), so
//! that the store can be wrapped to panic on purpose: no request can make the host's own
//! store code panic. Dead and stuck pools turning `health` into 503 are shown in
//! `host/src/pool.rs`, where a job can escape the guard.
//! See: issue 11.

use std::sync::Arc;
use std::time::Duration;

use authhost::store::{
    Changes, ClientToken, NewToken, NewUser, SqliteStore, Store, StoreConn, StoredSession, StoredToken,
    TokenGot, TokenRow, TokenSet,
};
use authhost::{App, AppSlot, Config, Error, Schemes};
use authhost_plugin_api::User;
use serde_json::json;

use crate::support::{Req, Site};

/// The real SQLite store, whose `find_user` panics for one name.
struct PanicsOn(SqliteStore, &'static str);

struct PanicsOnConn(Box<dyn StoreConn>, &'static str);

impl Store for PanicsOn {
    fn connect(&self) -> Result<Box<dyn StoreConn>, Error> {
        Ok(Box::new(PanicsOnConn(self.0.connect()?, self.1)))
    }
    fn connect_reader(&self) -> Result<Box<dyn StoreConn>, Error> {
        Ok(Box::new(PanicsOnConn(self.0.connect_reader()?, self.1)))
    }
}

impl StoreConn for PanicsOnConn {
    fn set_busy_timeout(&mut self, timeout: Duration) {
        self.0.set_busy_timeout(timeout)
    }
    fn purge_expired(&mut self, now: i64, batch: usize) -> Result<usize, Error> {
        self.0.purge_expired(now, batch)
    }
    fn token_nonce(&mut self, username: &str) -> Result<Option<Vec<u8>>, Error> {
        self.0.token_nonce(username)
    }
    fn find_user(&mut self, username: &str) -> Result<Option<User>, Error> {
        assert_ne!(username, self.1, "the store was told to panic on this user");
        self.0.find_user(username)
    }
    fn find_credentials(&mut self, username: &str) -> Result<Option<(User, Option<String>)>, Error> {
        self.0.find_credentials(username)
    }
    fn find_credentials_by_email(&mut self, email: &str) -> Result<Option<(User, Option<String>)>, Error> {
        self.0.find_credentials_by_email(email)
    }
    fn create_user(&mut self, user: &NewUser<'_>) -> Result<Option<User>, Error> {
        self.0.create_user(user)
    }
    fn set_password(&mut self, username: &str, hash: &str) -> Result<bool, Error> {
        self.0.set_password(username, hash)
    }
    fn rehash_password(&mut self, username: &str, old: &str, new: &str) -> Result<bool, Error> {
        self.0.rehash_password(username, old, new)
    }
    fn set_active(&mut self, username: &str, active: bool) -> Result<bool, Error> {
        self.0.set_active(username, active)
    }
    fn set_staff(&mut self, username: &str, staff: bool) -> Result<bool, Error> {
        self.0.set_staff(username, staff)
    }
    fn set_email(&mut self, username: &str, email: &str) -> Result<bool, Error> {
        self.0.set_email(username, email)
    }
    fn delete_user(&mut self, username: &str) -> Result<bool, Error> {
        self.0.delete_user(username)
    }
    fn list_users(&mut self) -> Result<Vec<User>, Error> {
        self.0.list_users()
    }
    fn find_token(&mut self, digest: &[u8], now: i64) -> Result<Option<StoredToken>, Error> {
        self.0.find_token(digest, now)
    }
    fn create_client_token(
        &mut self,
        user_id: i64,
        token: &ClientToken<'_>,
        limit: u32,
    ) -> Result<Option<i64>, Error> {
        self.0.create_client_token(user_id, token, limit)
    }
    fn refresh_token(&mut self, id: i64, expires: i64, now: i64) -> Result<bool, Error> {
        self.0.refresh_token(id, expires, now)
    }
    fn delete_token(&mut self, user_id: i64, id: i64) -> Result<bool, Error> {
        self.0.delete_token(user_id, id)
    }
    fn list_tokens(&mut self, username: &str) -> Result<Vec<TokenRow>, Error> {
        self.0.list_tokens(username)
    }
    fn create_token(
        &mut self,
        username: &str,
        token: &NewToken<'_>,
        replace: bool,
    ) -> Result<TokenSet, Error> {
        self.0.create_token(username, token, replace)
    }
    fn get_or_create_token(&mut self, username: &str, token: &NewToken<'_>) -> Result<TokenGot, Error> {
        self.0.get_or_create_token(username, token)
    }
    fn delete_tokens(&mut self, username: &str) -> Result<usize, Error> {
        self.0.delete_tokens(username)
    }
    fn users_without_token(&mut self) -> Result<Vec<String>, Error> {
        self.0.users_without_token()
    }
    fn create_session(
        &mut self,
        user_id: i64,
        digest: &[u8],
        csrf: &str,
        expires: i64,
    ) -> Result<i64, Error> {
        self.0.create_session(user_id, digest, csrf, expires)
    }
    fn find_session(&mut self, digest: &[u8], now: i64) -> Result<Option<StoredSession>, Error> {
        self.0.find_session(digest, now)
    }
    fn delete_session(&mut self, digest: &[u8]) -> Result<Option<String>, Error> {
        self.0.delete_session(digest)
    }
    fn last_change(&mut self) -> Result<i64, Error> {
        self.0.last_change()
    }
    fn changes_since(&mut self, seq: i64) -> Result<Changes, Error> {
        self.0.changes_since(seq)
    }
}

const CONFIG: &str = r#"
[[scheme]]
name = "x-username"
plugin = "x-username"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["x-username"]
permission = "is_authenticated"

[[route]]
path = "/health"
handler = "health"
schemes = []
permission = "allow_any"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_store_job_fails_alone_and_health_stays_ok() {
    // Caches off: every request below goes through the store pool.
    let site = Site::with_cache(CONFIG, "user_cache_ttl = 0");
    site.add_user("alice", "alice-pw", &[]);
    let config = Config::load(&site.config_path()).expect("config");
    let store =
        PanicsOn(SqliteStore::open(site.db_path(), Duration::from_secs(3600)).expect("store"), "crash");
    let schemes = Schemes::load(&config).expect("plugins");
    let slot = Arc::new(AppSlot::new(App::with_store(&config, &schemes, &store).expect("app")));
    let app = slot.get();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(authhost::serve(
        listener,
        slot,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
        64,
    ));

    // A request whose store job panics: 500 for that request alone.
    let resp = Req::to(addr, "GET", "/me").header("x-username", "crash").send().await;
    assert_eq!((resp.status, resp.json()), (500, json!({"detail": "Internal authentication error."})));

    // The same from the store called directly: its caller gets the panic as an error.
    let err =
        app.services().store().find_user("crash").await.expect_err("the caller gets the panic as an error");
    assert!(!err.is_busy());
    assert!(err.with_cause().contains("a store-read job panicked"), "{}", err.with_cause());
    assert!(err.with_cause().contains("the store was told to panic on this user"), "{}", err.with_cause());

    // Both store threads still serve: more requests than threads, each read from the store.
    for _ in 0..6 {
        let resp = Req::to(addr, "GET", "/me").header("x-username", "alice").send().await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(resp.json()["user"], json!("alice"));
    }
    let resp = Req::to(addr, "GET", "/health").send().await;
    assert_eq!((resp.status, resp.json()), (200, json!({"status": "ok"})));
    let _ = stop.send(());
    server.await.unwrap();
}
