//! The embedded SQLite store: created and migrated on first open.

use std::path::{Path, PathBuf};
use std::time::Duration;

use authhost_plugin_api::User;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{
    Changes, ClientToken, NewToken, NewUser, Store, StoreConn, StoreFile, StoredSession, StoredToken,
    TokenGot, TokenRow, TokenSet,
};
use crate::error::Error;

/// Migrations in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password TEXT,
        is_active INTEGER NOT NULL DEFAULT 1,
        is_staff INTEGER NOT NULL DEFAULT 0,
        date_joined TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );",
    // Tokens are stored as SHA-256 digests of their keys, never as keys.
    "CREATE TABLE tokens (
        id INTEGER PRIMARY KEY,
        digest BLOB NOT NULL UNIQUE,
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );
    CREATE INDEX tokens_user ON tokens (user_id);
    CREATE TABLE user_changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL
    );",
    // Keys the host derives from its token secret keep the nonce they derive from (not
    // enough to rebuild a key without the secret); imported keys have none.
    "ALTER TABLE tokens ADD COLUMN nonce BLOB;",
    // Sessions are stored as SHA-256 digests of their keys, with the session's CSRF secret.
    "CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        digest BLOB NOT NULL UNIQUE,
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        csrf_secret TEXT NOT NULL,
        expires INTEGER NOT NULL
    );
    CREATE INDEX sessions_expires ON sessions (expires);
    CREATE INDEX sessions_user ON sessions (user_id);",
    // Per-client tokens (login_token): a label, an expiry and its cap, the last use.
    "ALTER TABLE tokens ADD COLUMN client TEXT;
    ALTER TABLE tokens ADD COLUMN expires INTEGER;
    ALTER TABLE tokens ADD COLUMN max_expires INTEGER;
    ALTER TABLE tokens ADD COLUMN last_used INTEGER;",
    // Bumped by a new password or a deactivation: credentials minted before (JWTs) that
    // carry an older generation are refused.
    "ALTER TABLE users ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;",
    // The change log is pruned by age (`at`, Unix seconds), and remembers the newest change
    // it pruned, so that a host that was behind knows it missed some.
    "ALTER TABLE user_changes ADD COLUMN at INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX user_changes_at ON user_changes (at);
    CREATE TABLE change_log (pruned_through INTEGER NOT NULL);
    INSERT INTO change_log (pruned_through) VALUES (0);",
    // Users' e-mail addresses ('' when none), found case-insensitively for logins by e-mail.
    "ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT '';
    CREATE INDEX users_email ON users (lower(email));",
    // Live tokens are counted per user by expiry, and expired ones purged by expiry, each
    // by an index: a user holding many tokens costs a login nothing.
    "DROP INDEX tokens_user;
    CREATE INDEX tokens_user_expires ON tokens (user_id, expires);
    CREATE INDEX tokens_expires ON tokens (expires) WHERE expires IS NOT NULL;",
];
// Append new migrations only: a database records how many it has applied.

#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    /// Seconds the change log keeps a change.
    keep_changes: i64,
}

impl SqliteStore {
    /// Opens (creating and migrating if need be) the database at `path`, readable by its
    /// owner only (0600: it holds password hashes and token digests; SQLite gives the WAL
    /// files the database's mode); its change log
    /// keeps changes for `change_log_keep`.
    pub fn open(path: impl AsRef<Path>, change_log_keep: Duration) -> Result<Self, Error> {
        let keep_changes = i64::try_from(change_log_keep.as_secs()).unwrap_or(i64::MAX);
        let store = SqliteStore { path: path.as_ref().to_owned(), keep_changes };
        let mut conn = store.open_connection()?;
        migrate(&mut conn).map_err(|e| {
            Error::store(format!("{}: cannot migrate the store", store.path.display())).with_source(e)
        })?;
        Ok(store)
    }

    fn open_connection(&self) -> Result<Connection, Error> {
        owner_only(&self.path)?;
        let conn = Connection::open(&self.path).map_err(|e| {
            Error::store(format!("{}: cannot open the SQLite store", self.path.display())).with_source(e)
        })?;
        // The command line's default; the store pool sets each job's own.
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(conn)
    }
}

/// Every row `sql` selects, each read by `row`.
fn all<T>(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    tx.prepare(sql)?.query_map([], row)?.collect()
}

fn insert_token(tx: &rusqlite::Transaction<'_>, user_id: i64, token: &NewToken<'_>) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO tokens (digest, nonce, user_id) VALUES (?1, ?2, ?3)",
        params![token.digest, token.nonce, user_id],
    )?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let applied: usize = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for sql in MIGRATIONS.iter().skip(applied) {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len())?;
    tx.commit()
}

impl SqliteStore {
    /// Every row of the store at `path`, read in one snapshot without writing (the file
    /// must exist: a missing one is an error, never a new empty store).
    pub fn dump(path: &Path) -> Result<super::Dump, Error> {
        let cant = |e: rusqlite::Error| {
            Error::store(format!("{}: cannot read the SQLite store", path.display())).with_source(e)
        };
        let mut conn =
            Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(cant)?;
        let tx = conn.transaction().map_err(cant)?;
        let dump = (|| -> rusqlite::Result<super::Dump> {
            Ok(super::Dump {
                users: all(
                    &tx,
                    "SELECT id, username, password, is_active, is_staff, date_joined, generation, email
                     FROM users ORDER BY id",
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                        ))
                    },
                )?,
                tokens: all(
                    &tx,
                    "SELECT id, digest, user_id, created, nonce, client, expires, max_expires, last_used
                     FROM tokens ORDER BY id",
                    |r| {
                        let row = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
                        Ok((row.0, row.1, row.2, row.3, row.4, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?))
                    },
                )?,
                sessions: all(
                    &tx,
                    "SELECT id, digest, user_id, csrf_secret, expires FROM sessions ORDER BY id",
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )?,
                changes: all(&tx, "SELECT seq, username, at FROM user_changes ORDER BY seq", |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?,
                pruned_through: tx.query_row("SELECT pruned_through FROM change_log", [], |r| r.get(0))?,
            })
        })()
        .map_err(cant)?;
        Ok(dump)
    }

    fn conn(&self, conn: Connection) -> Box<dyn StoreConn> {
        // The file this connection has open, by device and inode, read after opening.
        let file = file_identity(&self.path);
        Box::new(SqliteConn { conn, keep_changes: self.keep_changes, path: self.path.clone(), file })
    }
}

impl Store for SqliteStore {
    fn connect(&self) -> Result<Box<dyn StoreConn>, Error> {
        Ok(self.conn(self.open_connection()?))
    }

    fn connect_reader(&self) -> Result<Box<dyn StoreConn>, Error> {
        let conn = self.open_connection()?;
        conn.pragma_update(None, "query_only", "ON")?;
        Ok(self.conn(conn))
    }
}

struct SqliteConn {
    conn: Connection,
    keep_changes: i64,
    path: PathBuf,
    /// (device, inode) of the file opened.
    file: Option<(u64, u64)>,
}

fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Records that `username` changed, for running hosts to drop what they cached of them,
/// and prunes changes older than `keep` seconds, remembering the newest one pruned.
fn log_change(tx: &rusqlite::Transaction<'_>, username: &str, keep: i64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO user_changes (username, at) VALUES (?1, CAST(strftime('%s', 'now') AS INTEGER))",
        [username],
    )?;
    let cutoff = "CAST(strftime('%s', 'now') AS INTEGER) - ?1";
    tx.execute(
        &format!(
            "UPDATE change_log SET pruned_through = max(pruned_through,
                 coalesce((SELECT max(seq) FROM user_changes WHERE at < {cutoff}), 0))"
        ),
        [keep],
    )?;
    tx.execute(&format!("DELETE FROM user_changes WHERE at < {cutoff}"), [keep])?;
    Ok(())
}

impl SqliteConn {
    /// Runs an update of one user (the first statement, which must match one row) and what
    /// follows from it, and records the change for running hosts, in one transaction;
    /// `false` when no user matched.
    fn change(
        &mut self,
        username: &str,
        statements: &[&str],
        params: impl rusqlite::Params + Copy,
    ) -> Result<bool, Error> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let Some((first, rest)) = statements.split_first() else { return Ok(false) };
        if tx.execute(first, params)? != 1 {
            return Ok(false);
        }
        for sql in rest {
            tx.execute(sql, params)?;
        }
        log_change(&tx, username, self.keep_changes)?;
        tx.commit()?;
        Ok(true)
    }
}

const USER_COLUMNS: &str = "id, username, is_active, is_staff, password, generation, email";

/// A user from the first seven columns of a row, in `USER_COLUMNS` order.
fn user_from_row(row: &Row<'_>) -> rusqlite::Result<(User, Option<String>)> {
    let user = User {
        is_active: row.get(2)?,
        is_staff: row.get(3)?,
        generation: row.get::<_, i64>(5).map(|g| u64::try_from(g).unwrap_or(0))?,
        email: row.get::<_, String>(6)?.into(),
        ..User::new(row.get(0)?, row.get::<_, String>(1)?)
    };
    Ok((user, row.get(4)?))
}

impl StoreConn for SqliteConn {
    fn store_file(&self) -> StoreFile {
        match file_identity(&self.path) {
            None => StoreFile::Missing,
            now if now == self.file => StoreFile::Same,
            Some(_) => StoreFile::Replaced,
        }
    }

    fn set_busy_timeout(&mut self, timeout: Duration) {
        // Only fails for a closed connection, which the next call reports.
        let _ = self.conn.busy_timeout(timeout);
    }

    fn purge_expired(&mut self, now: i64, batch: usize) -> Result<usize, Error> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        let tokens = tx.execute(
            "DELETE FROM tokens WHERE id IN
                 (SELECT id FROM tokens WHERE expires IS NOT NULL AND expires <= ?1 LIMIT ?2)",
            params![now, batch],
        )?;
        let sessions = tx.execute(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires <= ?1 LIMIT ?2)",
            params![now, batch],
        )?;
        tx.commit()?;
        Ok(tokens.max(sessions))
    }

    fn find_user(&mut self, username: &str) -> Result<Option<User>, Error> {
        Ok(self.find_credentials(username)?.map(|(user, _)| user))
    }

    fn find_credentials(&mut self, username: &str) -> Result<Option<(User, Option<String>)>, Error> {
        let mut stmt =
            self.conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1"))?;
        Ok(stmt.query_row([username], user_from_row).optional()?)
    }

    fn find_credentials_by_email(&mut self, email: &str) -> Result<Option<(User, Option<String>)>, Error> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email <> '' AND lower(email) = lower(?1) LIMIT 2"
        ))?;
        let mut found = stmt.query_map([email], user_from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(if found.len() == 1 { found.pop() } else { None })
    }

    fn create_user(&mut self, user: &NewUser<'_>) -> Result<Option<User>, Error> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "INSERT INTO users (username, password, is_active, is_staff, email) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (username) DO NOTHING RETURNING {USER_COLUMNS}"
        ))?;
        let row = stmt
            .query_row(
                params![user.username, user.password_hash, user.is_active, user.is_staff, user.email],
                user_from_row,
            )
            .optional()?;
        Ok(row.map(|(user, _)| user))
    }

    fn set_password(&mut self, username: &str, password_hash: &str) -> Result<bool, Error> {
        // A new password ends the user's sessions, as Django's session auth hash does, and
        // their tokens: whoever knew the old password may have made some. One transaction,
        // so that no host caches a token between the change and the deletion. (Every
        // statement takes both parameters; `?2 IS NOT NULL` is always true.)
        self.change(
            username,
            &[
                "UPDATE users SET password = ?2, generation = generation + 1 WHERE username = ?1",
                "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = ?1) AND ?2 IS NOT NULL",
                "DELETE FROM tokens WHERE user_id = (SELECT id FROM users WHERE username = ?1) AND ?2 IS NOT NULL",
            ],
            params![username, password_hash],
        )
    }

    fn rehash_password(&mut self, username: &str, old: &str, new: &str) -> Result<bool, Error> {
        let sql = "UPDATE users SET password = ?3 WHERE username = ?1 AND password = ?2";
        Ok(self.conn.execute(sql, params![username, old, new])? == 1)
    }

    fn set_active(&mut self, username: &str, active: bool) -> Result<bool, Error> {
        // A deactivation bumps the generation, as a new password does: credentials minted
        // before it (JWTs) stay refused when the account is activated again.
        self.change(
            username,
            &["UPDATE users SET is_active = ?2, generation = generation + (CASE WHEN ?2 THEN 0 ELSE 1 END) \
               WHERE username = ?1"],
            params![username, active],
        )
    }

    fn set_staff(&mut self, username: &str, staff: bool) -> Result<bool, Error> {
        self.change(
            username,
            &["UPDATE users SET is_staff = ?2 WHERE username = ?1"],
            params![username, staff],
        )
    }

    fn set_email(&mut self, username: &str, email: &str) -> Result<bool, Error> {
        self.change(username, &["UPDATE users SET email = ?2 WHERE username = ?1"], params![username, email])
    }

    fn delete_user(&mut self, username: &str) -> Result<bool, Error> {
        // Tokens and sessions go with the user (ON DELETE CASCADE); the change is logged
        // in the same transaction, so running hosts drop what they cached.
        self.change(username, &["DELETE FROM users WHERE username = ?1"], [username])
    }

    fn list_users(&mut self) -> Result<Vec<User>, Error> {
        let mut stmt = self.conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))?;
        let users =
            stmt.query_map([], |r| user_from_row(r).map(|(u, _)| u))?.collect::<Result<Vec<_>, _>>()?;
        Ok(users)
    }

    fn find_token(&mut self, digest: &[u8], now: i64) -> Result<Option<StoredToken>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT u.id, u.username, u.is_active, u.is_staff, u.password, u.generation, u.email,
                    t.id, t.expires, t.max_expires, t.last_used
             FROM tokens t JOIN users u ON u.id = t.user_id
             WHERE t.digest = ?1 AND (t.expires IS NULL OR t.expires > ?2)",
        )?;
        let row = stmt
            .query_row(params![digest, now], |row| {
                Ok(StoredToken {
                    user: user_from_row(row)?.0,
                    id: row.get(7)?,
                    expires: row.get(8)?,
                    max_expires: row.get(9)?,
                    last_used: row.get(10)?,
                })
            })
            .optional()?;
        Ok(row)
    }

    fn create_client_token(
        &mut self,
        user_id: i64,
        token: &ClientToken<'_>,
        limit: u32,
    ) -> Result<Option<i64>, Error> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if limit > 0 {
            // Two ranges of tokens_user_expires: never a scan of the user's expired tokens.
            let live: i64 = tx.query_row(
                "SELECT (SELECT count(*) FROM tokens WHERE user_id = ?1 AND expires IS NULL)
                      + (SELECT count(*) FROM tokens WHERE user_id = ?1 AND expires > CAST(strftime('%s', 'now') AS INTEGER))",
                [user_id],
                |r| r.get(0),
            )?;
            if live >= i64::from(limit) {
                return Ok(None);
            }
        }
        tx.execute(
            "INSERT INTO tokens (digest, user_id, client, expires, max_expires) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![token.digest, user_id, token.client, token.expires, token.max_expires],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Some(id))
    }

    fn refresh_token(&mut self, id: i64, expires: i64, now: i64) -> Result<bool, Error> {
        let updated = self
            .conn
            .prepare_cached(
                "UPDATE tokens SET expires = ?2, last_used = ?3
                 WHERE id = ?1 AND user_id IN (SELECT id FROM users WHERE is_active)",
            )?
            .execute(params![id, expires, now])?;
        Ok(updated == 1)
    }

    fn delete_token(&mut self, user_id: i64, id: i64) -> Result<bool, Error> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let deleted =
            tx.execute("DELETE FROM tokens WHERE id = ?1 AND user_id = ?2", params![id, user_id])?;
        // Other hosts drop what they cached of the user's tokens.
        let username: Option<String> =
            tx.query_row("SELECT username FROM users WHERE id = ?1", [user_id], |r| r.get(0)).optional()?;
        if let Some(username) = username {
            log_change(&tx, &username, self.keep_changes)?;
        }
        tx.commit()?;
        Ok(deleted == 1)
    }

    fn list_tokens(&mut self, username: &str) -> Result<Vec<TokenRow>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT t.id, t.client, t.created, t.expires, t.last_used, t.nonce IS NOT NULL
             FROM tokens t JOIN users u ON u.id = t.user_id WHERE u.username = ?1 ORDER BY t.id",
        )?;
        let rows = stmt
            .query_map([username], |r| {
                Ok(TokenRow {
                    id: r.get(0)?,
                    client: r.get(1)?,
                    created: r.get(2)?,
                    expires: r.get(3)?,
                    last_used: r.get(4)?,
                    derived: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn create_token(
        &mut self,
        username: &str,
        token: &NewToken<'_>,
        replace: bool,
    ) -> Result<TokenSet, Error> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let user_id: Option<i64> =
            tx.query_row("SELECT id FROM users WHERE username = ?1", [username], |r| r.get(0)).optional()?;
        let Some(user_id) = user_id else {
            return Ok(TokenSet::NoSuchUser);
        };
        if replace {
            tx.execute("DELETE FROM tokens WHERE user_id = ?1", [user_id])?;
            log_change(&tx, username, self.keep_changes)?;
        } else {
            let has: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM tokens WHERE user_id = ?1)", [user_id], |r| {
                    r.get(0)
                })?;
            if has {
                return Ok(TokenSet::Exists);
            }
        }
        insert_token(&tx, user_id, token)?;
        tx.commit()?;
        Ok(TokenSet::Created)
    }

    fn get_or_create_token(&mut self, username: &str, token: &NewToken<'_>) -> Result<TokenGot, Error> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let user_id: Option<i64> =
            tx.query_row("SELECT id FROM users WHERE username = ?1", [username], |r| r.get(0)).optional()?;
        let Some(user_id) = user_id else {
            return Ok(TokenGot::NoSuchUser);
        };
        let nonce: Option<Vec<u8>> = tx
            .query_row(
                "SELECT nonce FROM tokens WHERE user_id = ?1 AND nonce IS NOT NULL ORDER BY id LIMIT 1",
                [user_id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(nonce) = nonce {
            return Ok(TokenGot::Existing { nonce });
        }
        insert_token(&tx, user_id, token)?;
        tx.commit()?;
        Ok(TokenGot::Created)
    }

    fn token_nonce(&mut self, username: &str) -> Result<Option<Vec<u8>>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT t.nonce FROM tokens t JOIN users u ON u.id = t.user_id
             WHERE u.username = ?1 AND t.nonce IS NOT NULL ORDER BY t.id LIMIT 1",
        )?;
        Ok(stmt.query_row([username], |r| r.get(0)).optional()?)
    }

    fn delete_tokens(&mut self, username: &str) -> Result<usize, Error> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let deleted = tx.execute(
            "DELETE FROM tokens WHERE user_id = (SELECT id FROM users WHERE username = ?1)",
            [username],
        )?;
        log_change(&tx, username, self.keep_changes)?;
        tx.commit()?;
        Ok(deleted)
    }

    fn users_without_token(&mut self) -> Result<Vec<String>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT username FROM users u WHERE NOT EXISTS (SELECT 1 FROM tokens t WHERE t.user_id = u.id) ORDER BY id",
        )?;
        let names = stmt.query_map([], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
        Ok(names)
    }

    fn create_session(
        &mut self,
        user_id: i64,
        digest: &[u8],
        csrf_secret: &str,
        expires: i64,
    ) -> Result<i64, Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO sessions (digest, user_id, csrf_secret, expires) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![digest, user_id, csrf_secret, expires])?;
        Ok(self.conn.last_insert_rowid())
    }

    fn find_session(&mut self, digest: &[u8], now: i64) -> Result<Option<StoredSession>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT u.id, u.username, u.is_active, u.is_staff, u.password, u.generation, u.email,
                    s.id, s.csrf_secret, s.expires
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.digest = ?1 AND s.expires > ?2",
        )?;
        let row = stmt
            .query_row(params![digest, now], |row| {
                Ok(StoredSession {
                    user: user_from_row(row)?.0,
                    id: row.get(7)?,
                    csrf_secret: row.get(8)?,
                    expires: row.get(9)?,
                })
            })
            .optional()?;
        Ok(row)
    }

    fn delete_session(&mut self, digest: &[u8]) -> Result<Option<String>, Error> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let username: Option<String> = tx
            .query_row(
                "DELETE FROM sessions WHERE digest = ?1
                 RETURNING (SELECT username FROM users WHERE users.id = sessions.user_id)",
                [digest],
                |r| r.get(0),
            )
            .optional()?;
        // Other hosts drop what they cached of the user's sessions.
        if let Some(username) = &username {
            log_change(&tx, username, self.keep_changes)?;
        }
        tx.commit()?;
        Ok(username)
    }

    fn last_change(&mut self) -> Result<i64, Error> {
        Ok(self.conn.query_row(
            "SELECT max(coalesce((SELECT max(seq) FROM user_changes), 0), pruned_through) FROM change_log",
            [],
            |r| r.get(0),
        )?)
    }

    fn changes_since(&mut self, seq: i64) -> Result<Changes, Error> {
        // One read transaction: the rows and the prune mark from the same snapshot.
        let tx = self.conn.transaction()?;
        let (newest, pruned): (i64, i64) = tx.query_row(
            "SELECT coalesce((SELECT max(seq) FROM user_changes), 0), pruned_through FROM change_log",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut changes = Changes { last: seq, users: Vec::new(), missed: pruned > seq };
        if newest.max(pruned) < seq {
            // The log is behind the position: not the log the position came from.
            changes.missed = true;
            changes.last = newest.max(pruned);
        }
        {
            let mut stmt =
                tx.prepare_cached("SELECT seq, username FROM user_changes WHERE seq > ?1 ORDER BY seq")?;
            for row in stmt.query_map([seq], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
                let (n, name) = row?;
                changes.last = changes.last.max(n);
                changes.users.push(name);
            }
        }
        changes.last = changes.last.max(pruned);
        tx.commit()?;
        Ok(changes)
    }
}

/// Creates the database file 0600 when it is missing, and takes group and other access
/// away from it and its WAL files when an older authhost left them readable.
fn owner_only(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
    match created {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        // Let SQLite report what it makes of the path (a missing folder, say).
        Err(_) => return Ok(()),
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        let Ok(meta) = std::fs::metadata(&file) else { continue };
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700)).map_err(|e| {
                Error::store(format!("{}: cannot make the store readable by its owner only", file.display()))
                    .with_source(e)
            })?;
            tracing::warn!(file = %file.display(), "the store was readable by others: now 0600");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_unique_and_updates_report_missing_users() {
        let dir = std::env::temp_dir().join(format!("authhost-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(dir.join("t.db"), crate::store::CHANGE_LOG_KEEP).unwrap();
        let mut conn = store.connect().unwrap();
        let new = NewUser {
            username: "alice",
            password_hash: Some("$argon2id$x"),
            is_active: true,
            is_staff: false,
            email: "alice@example.com",
        };
        let alice = conn.create_user(&new).unwrap().expect("created");
        assert_eq!(alice.username.as_str(), "alice");
        assert!(conn.create_user(&new).unwrap().is_none(), "a taken username is refused");
        assert!(conn.set_active("alice", false).unwrap());
        assert!(!conn.find_user("alice").unwrap().unwrap().is_active);
        assert!(!conn.set_password("bob", "x").unwrap());
        // Reopening does not re-run migrations.
        drop(conn);
        SqliteStore::open(dir.join("t.db"), crate::store::CHANGE_LOG_KEEP).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
