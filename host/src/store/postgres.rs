//! The PostgreSQL store, for several hosts sharing users, tokens and sessions: async queries
//! on a deadpool connection pool (tokio-postgres underneath), so a store look-up is a task,
//! never a thread. Migrations run once, under an advisory lock, even when several hosts
//! start together. A query, a connection or a wait for one that takes longer than
//! `busy_timeout` is `unavailable` (503), as for SQLite.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use authhost_plugin_api::User;
use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

use super::backend::Backend;
use super::{
    Changes, ClientToken, NewToken, NewUser, StoredSession, StoredToken, TokenGot, TokenRow, TokenSet,
};
use crate::error::Error;
use crate::throttle::{Admitted, FailureCheck, Rate, SharedWindows};

/// The environment variable a password comes from (never the URL, which logs may show).
pub const PASSWORD_ENV: &str = "AUTHHOST_STORE_PASSWORD";

/// The advisory lock that migrations run under ("authhost" in ASCII).
const MIGRATION_LOCK: i64 = 0x6175_7468_686f_7374;

/// Migrations in order; `authhost_schema` records how many ran.
const MIGRATIONS: &[&str] = &[
    // The SQLite schema as it stands after its eighth migration, in PostgreSQL's types.
    "CREATE TABLE users (
        id BIGSERIAL PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password TEXT,
        is_active BOOLEAN NOT NULL DEFAULT TRUE,
        is_staff BOOLEAN NOT NULL DEFAULT FALSE,
        date_joined TEXT NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
        generation BIGINT NOT NULL DEFAULT 0,
        email TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX users_email ON users (lower(email));
    CREATE TABLE tokens (
        id BIGSERIAL PRIMARY KEY,
        digest BYTEA NOT NULL UNIQUE,
        user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        created TEXT NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
        nonce BYTEA,
        client TEXT,
        expires BIGINT,
        max_expires BIGINT,
        last_used BIGINT
    );
    CREATE INDEX tokens_user_expires ON tokens (user_id, expires);
    CREATE INDEX tokens_expires ON tokens (expires) WHERE expires IS NOT NULL;
    CREATE TABLE sessions (
        id BIGSERIAL PRIMARY KEY,
        digest BYTEA NOT NULL UNIQUE,
        user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        csrf_secret TEXT NOT NULL,
        expires BIGINT NOT NULL
    );
    CREATE INDEX sessions_expires ON sessions (expires);
    CREATE INDEX sessions_user ON sessions (user_id);
    CREATE TABLE user_changes (
        seq BIGSERIAL PRIMARY KEY,
        username TEXT NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE INDEX user_changes_at ON user_changes (at);
    CREATE TABLE change_log (pruned_through BIGINT NOT NULL);
    INSERT INTO change_log (pruned_through) VALUES (0);",
    // DRF's throttle windows, shared by every host on this database: one row per counted
    // request, and one function that checks and records under a per-key lock, by the
    // database's clock, in one round trip. It returns NULL when the request is allowed
    // (and recorded), else DRF's wait in seconds (-1: none).
    "CREATE TABLE throttle_hits (key TEXT NOT NULL, at_ms BIGINT NOT NULL);
    CREATE INDEX throttle_hits_key ON throttle_hits (key, at_ms);
    CREATE INDEX throttle_hits_at ON throttle_hits (at_ms);
    CREATE FUNCTION authhost_throttle(k TEXT, period_ms BIGINT, allowed INTEGER)
    RETURNS DOUBLE PRECISION LANGUAGE plpgsql AS $$
    DECLARE
        now_ms BIGINT := (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
        n INTEGER;
        oldest BIGINT;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended(k, 0));
        DELETE FROM throttle_hits WHERE key = k AND at_ms <= now_ms - period_ms;
        SELECT count(*), min(at_ms) INTO n, oldest FROM throttle_hits WHERE key = k;
        IF n >= allowed THEN
            IF allowed - n + 1 > 0 THEN
                RETURN (period_ms - (now_ms - oldest))::DOUBLE PRECISION / 1000.0 / (allowed - n + 1);
            END IF;
            RETURN -1;
        END IF;
        INSERT INTO throttle_hits (key, at_ms) VALUES (k, now_ms);
        RETURN NULL;
    END $$;",
    // `[throttle] failures` shared too: a window looked at without counting (a login is
    // refused before any password work), a failure counted, and the addresses that logged
    // in as a name (exempt from the name's window for a day).
    "CREATE FUNCTION authhost_throttle_peek(k TEXT, period_ms BIGINT, allowed INTEGER)
    RETURNS DOUBLE PRECISION LANGUAGE plpgsql AS $$
    DECLARE
        now_ms BIGINT := (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
        n INTEGER;
        oldest BIGINT;
    BEGIN
        SELECT count(*), min(at_ms) INTO n, oldest FROM throttle_hits WHERE key = k AND at_ms > now_ms - period_ms;
        IF n >= allowed THEN
            IF allowed - n + 1 > 0 THEN
                RETURN (period_ms - (now_ms - oldest))::DOUBLE PRECISION / 1000.0 / (allowed - n + 1);
            END IF;
            RETURN -1;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TABLE login_known (
        login TEXT NOT NULL,
        address TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        PRIMARY KEY (login, address)
    );
    CREATE INDEX login_known_at ON login_known (at_ms);",
    // A full window with no request in it (a rate of 0) waits the whole period, as DRF's
    // `wait()` does for an empty history; the functions above returned NULL (allowed).
    "CREATE OR REPLACE FUNCTION authhost_throttle(k TEXT, period_ms BIGINT, allowed INTEGER)
    RETURNS DOUBLE PRECISION LANGUAGE plpgsql AS $$
    DECLARE
        now_ms BIGINT := (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
        n INTEGER;
        oldest BIGINT;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended(k, 0));
        DELETE FROM throttle_hits WHERE key = k AND at_ms <= now_ms - period_ms;
        SELECT count(*), min(at_ms) INTO n, oldest FROM throttle_hits WHERE key = k;
        IF n >= allowed THEN
            IF allowed - n + 1 > 0 THEN
                RETURN (period_ms - (now_ms - coalesce(oldest, now_ms)))::DOUBLE PRECISION / 1000.0 / (allowed - n + 1);
            END IF;
            RETURN -1;
        END IF;
        INSERT INTO throttle_hits (key, at_ms) VALUES (k, now_ms);
        RETURN NULL;
    END $$;
    CREATE OR REPLACE FUNCTION authhost_throttle_peek(k TEXT, period_ms BIGINT, allowed INTEGER)
    RETURNS DOUBLE PRECISION LANGUAGE plpgsql AS $$
    DECLARE
        now_ms BIGINT := (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
        n INTEGER;
        oldest BIGINT;
    BEGIN
        SELECT count(*), min(at_ms) INTO n, oldest FROM throttle_hits WHERE key = k AND at_ms > now_ms - period_ms;
        IF n >= allowed THEN
            IF allowed - n + 1 > 0 THEN
                RETURN (period_ms - (now_ms - coalesce(oldest, now_ms)))::DOUBLE PRECISION / 1000.0 / (allowed - n + 1);
            END IF;
            RETURN -1;
        END IF;
        RETURN NULL;
    END $$;",
    // DRF's check for a batch of requests in a row on one window (the host sends the
    // requests that arrived while the previous round trip was in flight together): the
    // first `admitted` are recorded, the rest refused with DRF's wait (-1: none). The
    // single-request function above stays for hosts of an earlier release.
    "CREATE FUNCTION authhost_throttle_batch(k TEXT, period_ms BIGINT, allowed INTEGER, asking INTEGER,
        OUT admitted INTEGER, OUT wait DOUBLE PRECISION) LANGUAGE plpgsql AS $$
    DECLARE
        now_ms BIGINT := (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
        n INTEGER;
        oldest BIGINT;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended(k, 0));
        DELETE FROM throttle_hits WHERE key = k AND at_ms <= now_ms - period_ms;
        SELECT count(*), min(at_ms) INTO n, oldest FROM throttle_hits WHERE key = k;
        admitted := greatest(0, least(asking, allowed - n));
        IF admitted > 0 THEN
            INSERT INTO throttle_hits (key, at_ms) SELECT k, now_ms FROM generate_series(1, admitted);
        END IF;
        wait := NULL;
        IF admitted < asking THEN
            n := n + admitted;
            IF allowed - n + 1 > 0 THEN
                wait := (period_ms - (now_ms - coalesce(oldest, now_ms)))::DOUBLE PRECISION / 1000.0 / (allowed - n + 1);
            ELSE
                wait := -1;
            END IF;
        END IF;
    END $$;",
];

/// What the PostgreSQL store needs besides its URL.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// The password, when the URL's user needs one (`$AUTHHOST_STORE_PASSWORD` or
    /// `[store] password_file`).
    pub password: Option<String>,
    pub busy_timeout: Duration,
    /// Connections per host.
    pub max_connections: usize,
    /// Seconds the change log keeps a change.
    pub change_log_keep: Duration,
}

#[derive(Debug, Clone)]
pub struct PgBackend {
    pool: Pool,
    keep_changes: i64,
    /// The URL without its password, for messages.
    shown: String,
    /// For the LISTEN connection, which the pool does not lend.
    config: tokio_postgres::Config,
}

/// The URL as messages may show it: no password.
pub fn redacted(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| {
        let (userinfo, host) = rest.split_once('@')?;
        let user = userinfo.split(':').next().unwrap_or_default();
        Some(format!("{scheme}://{user}@{host}"))
    }) {
        Some(shown) => shown,
        None => url.to_owned(),
    }
}

impl PgBackend {
    /// Connects lazily (the pool opens connections when asked for one) and runs the
    /// migrations now, on a connection of their own.
    pub fn open(url: &str, options: &PgOptions) -> Result<PgBackend, Error> {
        let shown = redacted(url);
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| Error::config(format!("store url {shown:?} is not a PostgreSQL URL: {e}")))?;
        if config.get_password().is_some() {
            return Err(Error::config(format!(
                "store url {shown:?}: put the password in ${PASSWORD_ENV} or [store] password_file, never in the url"
            )));
        }
        if let Some(password) = &options.password {
            config.password(password.as_bytes());
        }
        let timeout_ms = options.busy_timeout.as_millis().max(1);
        config
            .application_name("authhost")
            .connect_timeout(options.busy_timeout)
            .options(format!("-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}"));
        migrate(&config, &shown)?;
        let listen_config = config.clone();
        let manager =
            Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .wait_timeout(Some(options.busy_timeout))
            .create_timeout(Some(options.busy_timeout))
            .recycle_timeout(Some(options.busy_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::config(format!("store url {shown:?}: cannot make a connection pool: {e}")))?;
        let keep_changes = i64::try_from(options.change_log_keep.as_secs()).unwrap_or(i64::MAX);
        Ok(PgBackend { pool, keep_changes, shown, config: listen_config })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, Error> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Timeout(_) => {
                Error::unavailable(format!("{}: no connection within busy_timeout", self.shown))
            }
            PoolError::Backend(e) => unavailable(e, &self.shown),
            other => Error::unavailable(format!("{}: {other}", self.shown)),
        })
    }

    /// Listens for change notifications (`LISTEN authhost_changes`) on a connection of its
    /// own, waking `wake` for each, until the connection fails (`Err`) or `stop` says so.
    /// The caller reconnects and catches up from its last change number: a notification
    /// only says "read the log now"; the log itself is the truth.
    pub async fn listen(&self, wake: &tokio::sync::Notify, stop: impl Fn() -> bool) -> Result<(), Error> {
        use futures_util::StreamExt as _;
        let map = |e| pg_error(e, &self.shown);
        let (client, mut connection) = self.config.connect(NoTls).await.map_err(map)?;
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        let listening = client.batch_execute("LISTEN authhost_changes");
        tokio::pin!(listening);
        // The connection is driven by reading its messages, while LISTEN is sent.
        loop {
            tokio::select! {
                done = &mut listening => { done.map_err(map)?; break; }
                message = messages.next() => match message {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(map(e)),
                    None => return Err(Error::unavailable(format!("{}: the listening connection closed", self.shown))),
                },
            }
        }
        // Changes made while (re)connecting are caught by the read this wake-up starts.
        wake.notify_one();
        loop {
            match tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
                Err(_) => {}
                Ok(Some(Ok(tokio_postgres::AsyncMessage::Notification(_)))) => wake.notify_one(),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(map(e)),
                Ok(None) => {
                    return Err(Error::unavailable(format!(
                        "{}: the listening connection closed",
                        self.shown
                    )))
                }
            }
            if stop() {
                return Ok(());
            }
        }
    }

    /// The one row (or none) a look-up finds, its statement prepared once per connection:
    /// one round trip per look-up.
    async fn lookup(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        let client = self.client().await?;
        let map = |e| pg_error(e, &self.shown);
        let stmt = client.prepare_cached(sql).await.map_err(map)?;
        client.query_opt(&stmt, params).await.map_err(map)
    }

    /// Deletes up to `batch` expired tokens and sessions; how many at most of either.
    pub async fn purge_expired(&self, now: i64, batch: i64) -> Result<u64, Error> {
        let client = self.client().await?;
        let map = |e| pg_error(e, &self.shown);
        let tokens = client
            .execute(
                "DELETE FROM tokens WHERE id IN
                     (SELECT id FROM tokens WHERE expires IS NOT NULL AND expires <= $1 LIMIT $2)",
                &[&now, &batch],
            )
            .await
            .map_err(map)?;
        let sessions = client
            .execute(
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires <= $1 LIMIT $2)",
                &[&now, &batch],
            )
            .await
            .map_err(map)?;
        client
            .execute(
                "DELETE FROM login_known WHERE at_ms < $1",
                &[&now.saturating_sub(86_400).saturating_mul(1000)],
            )
            .await
            .map_err(map)?;
        // Throttle rows older than the longest period (a day) count for nothing.
        let day_ago_ms = now.saturating_sub(86_400).saturating_mul(1000);
        client
            .execute(
                "DELETE FROM throttle_hits WHERE ctid IN (SELECT ctid FROM throttle_hits WHERE at_ms < $1 LIMIT $2)",
                &[&day_ago_ms, &batch],
            )
            .await
            .map_err(map)?;
        Ok(tokens.max(sessions))
    }

    /// Copies `dump` in, ids kept, in one transaction that checks the counts before it
    /// commits. A target that holds users, tokens or sessions is refused unless `replace`
    /// (which empties it first).
    pub async fn import(&self, dump: &super::Dump, replace: bool) -> Result<[usize; 4], Error> {
        let map = |e| pg_error(e, &self.shown);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map)?;
        let held: i64 = tx
            .query_one("SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM tokens) + (SELECT count(*) FROM sessions)", &[])
            .await
            .map_err(map)?
            .get(0);
        if held > 0 && !replace {
            return Err(Error::config(format!(
                "{}: the target already holds users, tokens or sessions; add --replace to empty it first",
                self.shown
            )));
        }
        tx.batch_execute(
            "TRUNCATE users, tokens, sessions, user_changes, throttle_hits RESTART IDENTITY CASCADE",
        )
        .await
        .map_err(map)?;
        for (id, username, password, active, staff, joined, generation, email) in &dump.users {
            tx.execute(
                "INSERT INTO users (id, username, password, is_active, is_staff, date_joined, generation, email)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[id, username, password, active, staff, joined, generation, email],
            )
            .await
            .map_err(map)?;
        }
        for (id, digest, user_id, created, nonce, client, expires, max_expires, last_used) in &dump.tokens {
            tx.execute(
                "INSERT INTO tokens (id, digest, user_id, created, nonce, client, expires, max_expires, last_used)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[id, digest, user_id, created, nonce, client, expires, max_expires, last_used],
            )
            .await
            .map_err(map)?;
        }
        for (id, digest, user_id, secret, expires) in &dump.sessions {
            tx.execute(
                "INSERT INTO sessions (id, digest, user_id, csrf_secret, expires) VALUES ($1, $2, $3, $4, $5)",
                &[id, digest, user_id, secret, expires],
            )
            .await
            .map_err(map)?;
        }
        for (seq, username, at) in &dump.changes {
            tx.execute(
                "INSERT INTO user_changes (seq, username, at) VALUES ($1, $2, $3)",
                &[seq, username, at],
            )
            .await
            .map_err(map)?;
        }
        tx.execute("UPDATE change_log SET pruned_through = $1", &[&dump.pruned_through])
            .await
            .map_err(map)?;
        // New rows continue after the copied ids.
        for (table, column) in
            [("users", "id"), ("tokens", "id"), ("sessions", "id"), ("user_changes", "seq")]
        {
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                                   GREATEST((SELECT max({column}) FROM {table}), 1),
                                   (SELECT max({column}) FROM {table}) IS NOT NULL)"
                ),
                &[],
            )
            .await
            .map_err(map)?;
        }
        let row = tx
            .query_one(
                "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM tokens),
                        (SELECT count(*) FROM sessions), (SELECT count(*) FROM user_changes)",
                &[],
            )
            .await
            .map_err(map)?;
        let copied: [usize; 4] =
            [0, 1, 2, 3].map(|i| usize::try_from(row.get::<_, i64>(i)).unwrap_or(usize::MAX));
        if copied != dump.counts() {
            return Err(Error::store(format!(
                "{}: the copy holds {copied:?} users, tokens, sessions and changes, the source {:?}: nothing was written",
                self.shown,
                dump.counts()
            )));
        }
        tx.commit().await.map_err(map)?;
        Ok(copied)
    }

    /// Runs `statements` (the first must change one user) and logs the change, in one
    /// transaction; `false` when no user matched.
    async fn change(
        &self,
        username: &str,
        statements: &[&str],
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<bool, Error> {
        let map = |e| pg_error(e, &self.shown);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map)?;
        let Some((first, rest)) = statements.split_first() else { return Ok(false) };
        if tx.execute(*first, params).await.map_err(map)? != 1 {
            return Ok(false);
        }
        for sql in rest {
            tx.execute(*sql, params).await.map_err(map)?;
        }
        log_change(&tx, username, self.keep_changes).await.map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(true)
    }
}

/// Connection errors and timeouts are "unavailable" (503); anything else a store error.
fn pg_error(err: tokio_postgres::Error, shown: &str) -> Error {
    let transient = err.is_closed()
        || err.code().is_some_and(|c| {
            [
                &SqlState::QUERY_CANCELED,
                &SqlState::LOCK_NOT_AVAILABLE,
                &SqlState::ADMIN_SHUTDOWN,
                &SqlState::CRASH_SHUTDOWN,
                &SqlState::CANNOT_CONNECT_NOW,
                &SqlState::CONNECTION_FAILURE,
                &SqlState::CONNECTION_EXCEPTION,
                &SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(&c)
        })
        || err.code().is_none();
    if transient {
        unavailable(err, shown)
    } else {
        Error::store(format!("{shown}: store error")).with_source(err)
    }
}

fn unavailable(err: tokio_postgres::Error, shown: &str) -> Error {
    Error::unavailable(format!("{shown}: the store does not answer")).with_source(err)
}

/// Runs the migrations not yet applied, under an advisory lock held by one host at a time,
/// on a connection of its own (a runtime of its own on a thread of its own, so that any
/// caller may wait for it).
fn migrate(config: &tokio_postgres::Config, shown: &str) -> Result<(), Error> {
    let config = config.clone();
    let shown = shown.to_owned();
    std::thread::spawn(move || -> Result<(), Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start a runtime for migrations").with_source(e))?;
        runtime.block_on(async {
            let map = |e| pg_error(e, &shown);
            let (mut client, connection) = config.connect(NoTls).await.map_err(map)?;
            let driver = tokio::spawn(connection);
            let tx = client.transaction().await.map_err(map)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(map)?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS authhost_schema (migrations INTEGER NOT NULL)")
                .await
                .map_err(map)?;
            let applied: Option<i32> = tx
                .query_opt("SELECT migrations FROM authhost_schema", &[])
                .await
                .map_err(map)?
                .map(|r| r.get(0));
            let applied = usize::try_from(applied.unwrap_or(0)).unwrap_or(0);
            for sql in MIGRATIONS.iter().skip(applied) {
                tx.batch_execute(sql).await.map_err(map)?;
            }
            let count = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
            tx.execute("DELETE FROM authhost_schema", &[]).await.map_err(map)?;
            tx.execute("INSERT INTO authhost_schema (migrations) VALUES ($1)", &[&count])
                .await
                .map_err(map)?;
            tx.commit().await.map_err(map)?;
            drop(client);
            let _ = driver.await;
            Ok(())
        })
    })
    .join()
    .unwrap_or_else(|_| Err(Error::io("the migration thread panicked")))
}

/// Records that `username` changed and prunes old changes. The change_log row is updated
/// first: its row lock orders every transaction that logs a change, so change numbers are
/// taken in commit order and a follower reading "after N" never skips one committed late.
async fn log_change<C: GenericClient>(
    tx: &C,
    username: &str,
    keep: i64,
) -> Result<(), tokio_postgres::Error> {
    let now = crate::sessions::now();
    let cutoff = now.saturating_sub(keep);
    tx.execute(
        "UPDATE change_log SET pruned_through = GREATEST(pruned_through,
             COALESCE((SELECT max(seq) FROM user_changes WHERE at < $1), 0))",
        &[&cutoff],
    )
    .await?;
    tx.execute("DELETE FROM user_changes WHERE at < $1", &[&cutoff]).await?;
    let seq: i64 = tx
        .query_one(
            "INSERT INTO user_changes (username, at) VALUES ($1, $2) RETURNING seq",
            &[&username, &now],
        )
        .await?
        .get(0);
    tx.execute("SELECT pg_notify('authhost_changes', $1)", &[&seq.to_string()]).await?;
    Ok(())
}

/// The id of the user named `username`, their row locked until the transaction ends (so
/// that token operations on one user run one after another).
async fn locked_user<C: GenericClient>(tx: &C, username: &str) -> Result<Option<i64>, tokio_postgres::Error> {
    Ok(tx
        .query_opt("SELECT id FROM users WHERE username = $1 FOR UPDATE", &[&username])
        .await?
        .map(|r| r.get(0)))
}

/// Stores a DRF token (its digest, and its nonce when derived) for `user_id`.
async fn insert_token<C: GenericClient>(
    tx: &C,
    token: &NewToken<'_>,
    user_id: i64,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO tokens (digest, nonce, user_id) VALUES ($1, $2, $3)",
        &[&token.digest, &token.nonce, &user_id],
    )
    .await
    .map(drop)
}

const USER_COLUMNS: &str = "u.id, u.username, u.is_active, u.is_staff, u.password, u.generation, u.email";

fn user_from_row(row: &Row) -> (User, Option<String>) {
    let user = User {
        is_active: row.get(2),
        is_staff: row.get(3),
        generation: u64::try_from(row.get::<_, i64>(5)).unwrap_or(0),
        email: row.get::<_, String>(6).into(),
        ..User::new(row.get(0), row.get::<_, String>(1))
    };
    (user, row.get(4))
}

#[async_trait]
impl Backend for PgBackend {
    fn health(&self) -> Result<(), String> {
        Ok(())
    }

    fn queue_depths(&self) -> Vec<(&'static str, usize)> {
        vec![("store_wait", self.pool.status().waiting)]
    }

    async fn find_user(&self, username: &str) -> Result<Option<User>, Error> {
        Ok(self.find_credentials(username).await?.map(|(user, _)| user))
    }

    async fn find_credentials(&self, username: &str) -> Result<Option<(User, Option<String>)>, Error> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.username = $1");
        Ok(self.lookup(&sql, &[&username]).await?.as_ref().map(user_from_row))
    }

    async fn find_credentials_by_email(&self, email: &str) -> Result<Option<(User, Option<String>)>, Error> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.email <> '' AND lower(u.email) = lower($1) LIMIT 2"),
                &[&email],
            )
            .await
            .map_err(|e| pg_error(e, &self.shown))?;
        Ok(if rows.len() == 1 { rows.first().map(user_from_row) } else { None })
    }

    async fn create_user(&self, user: &NewUser<'_>) -> Result<Option<User>, Error> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "WITH u AS (INSERT INTO users (username, password, is_active, is_staff, email)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username) DO NOTHING
                     RETURNING id, username, is_active, is_staff, password, generation, email)
                 SELECT u.id, u.username, u.is_active, u.is_staff, u.password, u.generation, u.email FROM u",
                &[&user.username, &user.password_hash, &user.is_active, &user.is_staff, &user.email],
            )
            .await
            .map_err(|e| pg_error(e, &self.shown))?;
        Ok(row.as_ref().map(|r| user_from_row(r).0))
    }

    async fn set_password(&self, username: &str, password_hash: &str) -> Result<bool, Error> {
        // A new password ends the user's sessions and tokens, in the same transaction.
        self.change(
            username,
            &[
                "UPDATE users SET password = $2, generation = generation + 1 WHERE username = $1",
                "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = $1) AND $2::text IS NOT NULL",
                "DELETE FROM tokens WHERE user_id = (SELECT id FROM users WHERE username = $1) AND $2::text IS NOT NULL",
            ],
            &[&username, &password_hash],
        )
        .await
    }

    async fn set_active(&self, username: &str, active: bool) -> Result<bool, Error> {
        self.change(
            username,
            &["UPDATE users SET is_active = $2, generation = generation + (CASE WHEN $2 THEN 0 ELSE 1 END)
               WHERE username = $1"],
            &[&username, &active],
        )
        .await
    }

    async fn set_staff(&self, username: &str, staff: bool) -> Result<bool, Error> {
        self.change(username, &["UPDATE users SET is_staff = $2 WHERE username = $1"], &[&username, &staff])
            .await
    }

    async fn rehash_password(&self, username: &str, old: &str, new: &str) -> Result<bool, Error> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE users SET password = $3 WHERE username = $1 AND password = $2",
                &[&username, &old, &new],
            )
            .await
            .map_err(|e| pg_error(e, &self.shown))?;
        Ok(changed == 1)
    }

    async fn set_email(&self, username: &str, email: &str) -> Result<bool, Error> {
        self.change(username, &["UPDATE users SET email = $2 WHERE username = $1"], &[&username, &email])
            .await
    }

    async fn delete_user(&self, username: &str) -> Result<bool, Error> {
        self.change(username, &["DELETE FROM users WHERE username = $1"], &[&username]).await
    }

    async fn list_users(&self) -> Result<Vec<User>, Error> {
        let client = self.client().await?;
        let rows = client
            .query(&format!("SELECT {USER_COLUMNS} FROM users u ORDER BY u.id"), &[])
            .await
            .map_err(|e| pg_error(e, &self.shown))?;
        Ok(rows.iter().map(|r| user_from_row(r).0).collect())
    }

    async fn find_token(&self, digest: &[u8], now: i64) -> Result<Option<StoredToken>, Error> {
        let sql = format!(
            "SELECT {USER_COLUMNS}, t.id, t.expires, t.max_expires, t.last_used
             FROM tokens t JOIN users u ON u.id = t.user_id
             WHERE t.digest = $1 AND (t.expires IS NULL OR t.expires > $2)"
        );
        let row = self.lookup(&sql, &[&digest, &now]).await?;
        Ok(row.map(|r| StoredToken {
            user: user_from_row(&r).0,
            id: r.get(7),
            expires: r.get(8),
            max_expires: r.get(9),
            last_used: r.get(10),
        }))
    }

    async fn create_client_token(
        &self,
        user_id: i64,
        token: &ClientToken<'_>,
        limit: u32,
    ) -> Result<Option<i64>, Error> {
        let map = |e| pg_error(e, &self.shown);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map)?;
        // The user's row, locked: concurrent logins count one after another.
        if tx
            .query_opt("SELECT id FROM users WHERE id = $1 FOR UPDATE", &[&user_id])
            .await
            .map_err(map)?
            .is_none()
        {
            return Ok(None);
        }
        if limit > 0 {
            let now = crate::sessions::now();
            let live: i64 = tx
                .query_one(
                    "SELECT (SELECT count(*) FROM tokens WHERE user_id = $1 AND expires IS NULL)
                          + (SELECT count(*) FROM tokens WHERE user_id = $1 AND expires > $2)",
                    &[&user_id, &now],
                )
                .await
                .map_err(map)?
                .get(0);
            if live >= i64::from(limit) {
                return Ok(None);
            }
        }
        let id: i64 = tx
            .query_one(
                "INSERT INTO tokens (digest, user_id, client, expires, max_expires) VALUES ($1, $2, $3, $4, $5)
                 RETURNING id",
                &[&token.digest, &user_id, &token.client, &token.expires, &token.max_expires],
            )
            .await
            .map_err(map)?
            .get(0);
        tx.commit().await.map_err(map)?;
        Ok(Some(id))
    }

    async fn refresh_token(&self, id: i64, expires: i64, now: i64) -> Result<bool, Error> {
        let client = self.client().await?;
        let updated = client
            .execute(
                "UPDATE tokens SET expires = $2, last_used = $3
                 WHERE id = $1 AND user_id IN (SELECT id FROM users WHERE is_active)",
                &[&id, &expires, &now],
            )
            .await
            .map_err(|e| pg_error(e, &self.shown))?;
        Ok(updated == 1)
    }

    async fn delete_token(&self, user_id: i64, id: i64) -> Result<bool, Error> {
        let map = |e| pg_error(e, &self.shown);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map)?;
        let deleted = tx
            .execute("DELETE FROM tokens WHERE id = $1 AND user_id = $2", &[&id, &user_id])
            .await
            .map_err(map)?;
        let username: Option<String> = tx
            .query_opt("SELECT username FROM users WHERE id = $1", &[&user_id])
            .await
            .map_err(map)?
            .map(|r| r.get(0));
        if let Some(username) = username {
            log_change(&tx, &username, self.keep_changes).await.map_err(map)?;
        }
        tx.commit().await.map_err(map)?;
        Ok(deleted == 1)
    }

    async fn list_tokens(&self, username: &str) -> Result<Vec<TokenRow>, Error> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT t.id, t.client, t.created, t.expires, t.last_used, t.nonce IS NOT NULL
                 FROM tokens t JOIN users u ON u.id = t.user_id WHERE u.username = $1 ORDER BY t.id",
                &[&username],
            )
            .await
            .map_err(|e| pg_error(e, &self.shown))?;
        Ok(rows
            .iter()
            .map(|r| TokenRow {
                id: r.get(0),
                client: r.get(1),
                created: r.get(2),
                expires: r.get(3),
                last_used: r.get(4),
                derived: r.get(5),
            })
            .collect())
    }

    async fn create_token(
        &self,
        username: &str,
        token: &NewToken<'_>,
        replace: bool,
    ) -> Result<TokenSet, Error> {
        let map = |e| pg_error(e, &self.shown);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map)?;
        let user_id = locked_user(&tx, username).await.map_err(map)?;
        let Some(user_id) = user_id else { return Ok(TokenSet::NoSuchUser) };
        if replace {
            tx.execute("DELETE FROM tokens WHERE user_id = $1", &[&user_id]).await.map_err(map)?;
            log_change(&tx, username, self.keep_changes).await.map_err(map)?;
        } else {
            let has: bool = tx
                .query_one("SELECT EXISTS (SELECT 1 FROM tokens WHERE user_id = $1)", &[&user_id])
                .await
                .map_err(map)?
                .get(0);
            if has {
                return Ok(TokenSet::Exists);
            }
        }
        insert_token(&tx, token, user_id).await.map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(TokenSet::Created)
    }

    async fn get_or_create_token(&self, username: &str, token: &NewToken<'_>) -> Result<TokenGot, Error> {
        let map = |e| pg_error(e, &self.shown);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map)?;
        let user_id = locked_user(&tx, username).await.map_err(map)?;
        let Some(user_id) = user_id else { return Ok(TokenGot::NoSuchUser) };
        let nonce: Option<Vec<u8>> = tx
            .query_opt(
                "SELECT nonce FROM tokens WHERE user_id = $1 AND nonce IS NOT NULL ORDER BY id LIMIT 1",
                &[&user_id],
            )
            .await
            .map_err(map)?
            .map(|r| r.get(0));
        if let Some(nonce) = nonce {
            return Ok(TokenGot::Existing { nonce });
        }
        insert_token(&tx, token, user_id).await.map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(TokenGot::Created)
    }

    async fn token_nonce(&self, username: &str) -> Result<Option<Vec<u8>>, Error> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT t.nonce FROM tokens t JOIN users u ON u.id = t.user_id
                 WHERE u.username = $1 AND t.nonce IS NOT NULL ORDER BY t.id LIMIT 1",
                &[&username],
            )
            .await
            .map_err(|e| pg_error(e, &self.shown))?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn delete_tokens(&self, username: &str) -> Result<usize, Error> {
        let map = |e| pg_error(e, &self.shown);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map)?;
        let deleted = tx
            .execute(
                "DELETE FROM tokens WHERE user_id = (SELECT id FROM users WHERE username = $1)",
                &[&username],
            )
            .await
            .map_err(map)?;
        log_change(&tx, username, self.keep_changes).await.map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    async fn users_without_token(&self) -> Result<Vec<String>, Error> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT username FROM users u WHERE NOT EXISTS (SELECT 1 FROM tokens t WHERE t.user_id = u.id) ORDER BY id",
                &[],
            )
            .await
            .map_err(|e| pg_error(e, &self.shown))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn create_session(
        &self,
        user_id: i64,
        digest: &[u8],
        csrf_secret: &str,
        expires: i64,
    ) -> Result<i64, Error> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO sessions (digest, user_id, csrf_secret, expires) VALUES ($1, $2, $3, $4) RETURNING id",
                &[&digest, &user_id, &csrf_secret, &expires],
            )
            .await
            .map_err(|e| pg_error(e, &self.shown))?;
        Ok(row.get(0))
    }

    async fn find_session(&self, digest: &[u8], now: i64) -> Result<Option<StoredSession>, Error> {
        let sql = format!(
            "SELECT {USER_COLUMNS}, s.id, s.csrf_secret, s.expires
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.digest = $1 AND s.expires > $2"
        );
        let row = self.lookup(&sql, &[&digest, &now]).await?;
        Ok(row.map(|r| StoredSession {
            user: user_from_row(&r).0,
            id: r.get(7),
            csrf_secret: r.get(8),
            expires: r.get(9),
        }))
    }

    async fn delete_session(&self, digest: &[u8]) -> Result<Option<String>, Error> {
        let map = |e| pg_error(e, &self.shown);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map)?;
        let username: Option<String> = tx
            .query_opt(
                "DELETE FROM sessions s WHERE s.digest = $1
                 RETURNING (SELECT username FROM users u WHERE u.id = s.user_id)",
                &[&digest],
            )
            .await
            .map_err(map)?
            .and_then(|r| r.get(0));
        if let Some(username) = &username {
            log_change(&tx, username, self.keep_changes).await.map_err(map)?;
        }
        tx.commit().await.map_err(map)?;
        Ok(username)
    }

    async fn last_change(&self) -> Result<i64, Error> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT GREATEST(COALESCE((SELECT max(seq) FROM user_changes), 0), pruned_through) FROM change_log",
                &[],
            )
            .await
            .map_err(|e| pg_error(e, &self.shown))?;
        Ok(row.get(0))
    }

    async fn changes_since(&self, seq: i64) -> Result<Changes, Error> {
        let map = |e| pg_error(e, &self.shown);
        let mut client = self.client().await?;
        // One snapshot: the rows and the prune mark agree.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(map)?;
        let row = tx
            .query_one(
                "SELECT COALESCE((SELECT max(seq) FROM user_changes), 0), pruned_through FROM change_log",
                &[],
            )
            .await
            .map_err(map)?;
        let (newest, pruned): (i64, i64) = (row.get(0), row.get(1));
        let mut changes = Changes { last: seq, users: Vec::new(), missed: pruned > seq };
        if newest.max(pruned) < seq {
            changes.missed = true;
            changes.last = newest.max(pruned);
        }
        for row in tx
            .query("SELECT seq, username FROM user_changes WHERE seq > $1 ORDER BY seq", &[&seq])
            .await
            .map_err(map)?
        {
            changes.last = changes.last.max(row.get::<_, i64>(0));
            changes.users.push(row.get(1));
        }
        changes.last = changes.last.max(pruned);
        tx.commit().await.map_err(map)?;
        Ok(changes)
    }
}

/// The shared throttle windows in the database: rows in `throttle_hits`, counted by the
/// plpgsql functions above under a per-key lock, by the database's clock.
#[async_trait]
impl SharedWindows for PgBackend {
    async fn throttle(&self, key: &str, rate: Rate, count: u32) -> Result<Admitted, Error> {
        let client = self.client().await?;
        let period_ms = i64::try_from(rate.period.as_millis()).unwrap_or(i64::MAX);
        let allowed = i32::try_from(rate.requests).unwrap_or(i32::MAX);
        let count = i32::try_from(count).unwrap_or(i32::MAX);
        let row = client
            .query_one(
                "SELECT * FROM authhost_throttle_batch($1, $2, $3, $4)",
                &[&key, &period_ms, &allowed, &count],
            )
            .await
            .map_err(|e| pg_error(e, &self.shown))?;
        let (admitted, wait): (i32, Option<f64>) = (row.get(0), row.get(1));
        Ok(Admitted { admitted: u32::try_from(admitted).unwrap_or(0), wait: wait.filter(|w| *w >= 0.0) })
    }

    /// `[throttle] failures`, shared: `Ok(Some(wait))` when a login as `login` from
    /// `address` must not be tried now (the address's window is full, or the name's is and
    /// the address has not logged in as that name in the last day). One round trip.
    async fn failures_refused(&self, check: &FailureCheck<'_>) -> Result<Option<Option<f64>>, Error> {
        let FailureCheck { address_key, name_key, login, address, period, allowed, name_allowed } = *check;
        let client = self.client().await?;
        let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
        let (allowed, name_allowed) =
            (i32::try_from(allowed).unwrap_or(i32::MAX), i32::try_from(name_allowed).unwrap_or(i32::MAX));
        let row = client
            .query_one(
                "SELECT authhost_throttle_peek($1, $3, $4),
                        CASE WHEN EXISTS (SELECT 1 FROM login_known WHERE login = $6 AND address = $7
                                          AND at_ms > (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT - 86400000)
                             THEN NULL ELSE authhost_throttle_peek($2, $3, $5) END",
                &[&address_key, &name_key, &period_ms, &allowed, &name_allowed, &login, &address],
            )
            .await
            .map_err(|e| pg_error(e, &self.shown))?;
        let waits: [Option<f64>; 2] = [row.get(0), row.get(1)];
        if waits.iter().all(Option::is_none) {
            return Ok(None);
        }
        // DRF's longest wait; -1 (no wait) only when no window has one.
        let longest = waits
            .iter()
            .flatten()
            .copied()
            .filter(|w| *w >= 0.0)
            .fold(None, |a: Option<f64>, w| Some(a.map_or(w, |a| a.max(w))));
        Ok(Some(longest))
    }

    /// Counts a failed login in the shared windows `keys`.
    async fn failure(&self, keys: &[&str], _period: Duration) -> Result<(), Error> {
        let client = self.client().await?;
        for key in keys {
            client
                .execute(
                    "INSERT INTO throttle_hits (key, at_ms) VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT)",
                    &[key],
                )
                .await
                .map_err(|e| pg_error(e, &self.shown))?;
        }
        Ok(())
    }

    /// Remembers that `address` logged in as `login`.
    async fn login_known(&self, login: &str, address: &str) -> Result<(), Error> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO login_known (login, address, at_ms)
                 VALUES ($1, $2, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT)
                 ON CONFLICT (login, address) DO UPDATE SET at_ms = excluded.at_ms",
                &[&login, &address],
            )
            .await
            .map_err(|e| pg_error(e, &self.shown))?;
        Ok(())
    }
}
