//! The embedded SQLite store: created and migrated on first open.

use std::path::{Path, PathBuf};
use std::time::Duration;

use authhost_plugin_api::User;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{NewUser, Store, StoreConn};
use crate::error::Error;

/// Migrations in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &["CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password TEXT,
        is_active INTEGER NOT NULL DEFAULT 1,
        is_staff INTEGER NOT NULL DEFAULT 0,
        date_joined TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );"];

#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating and migrating if need be) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let store = SqliteStore {
            path: path.as_ref().to_owned(),
        };
        let mut conn = store.open_connection()?;
        migrate(&mut conn).map_err(|e| {
            Error::store(format!(
                "{}: cannot migrate the store",
                store.path.display()
            ))
            .with_source(e)
        })?;
        Ok(store)
    }

    fn open_connection(&self) -> Result<Connection, Error> {
        let conn = Connection::open(&self.path).map_err(|e| {
            Error::store(format!(
                "{}: cannot open the SQLite store",
                self.path.display()
            ))
            .with_source(e)
        })?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(conn)
    }
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

impl Store for SqliteStore {
    fn connect(&self) -> Result<Box<dyn StoreConn>, Error> {
        Ok(Box::new(SqliteConn {
            conn: self.open_connection()?,
        }))
    }
}

struct SqliteConn {
    conn: Connection,
}

const USER_COLUMNS: &str = "id, username, is_active, is_staff, password";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<(User, Option<String>)> {
    let user = User {
        id: row.get(0)?,
        username: row.get::<_, String>(1)?.into(),
        is_active: row.get(2)?,
        is_staff: row.get(3)?,
    };
    Ok((user, row.get(4)?))
}

impl StoreConn for SqliteConn {
    fn find_user(&mut self, username: &str) -> Result<Option<User>, Error> {
        Ok(self.find_credentials(username)?.map(|(user, _)| user))
    }

    fn find_credentials(
        &mut self,
        username: &str,
    ) -> Result<Option<(User, Option<String>)>, Error> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = ?1"
        ))?;
        Ok(stmt.query_row([username], user_from_row).optional()?)
    }

    fn create_user(&mut self, user: &NewUser<'_>) -> Result<Option<User>, Error> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "INSERT INTO users (username, password, is_active, is_staff) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (username) DO NOTHING RETURNING {USER_COLUMNS}"
        ))?;
        let row = stmt
            .query_row(
                params![
                    user.username,
                    user.password_hash,
                    user.is_active,
                    user.is_staff
                ],
                user_from_row,
            )
            .optional()?;
        Ok(row.map(|(user, _)| user))
    }

    fn set_password(&mut self, username: &str, password_hash: &str) -> Result<bool, Error> {
        let changed = self
            .conn
            .prepare_cached("UPDATE users SET password = ?2 WHERE username = ?1")?
            .execute([username, password_hash])?;
        Ok(changed == 1)
    }

    fn set_active(&mut self, username: &str, active: bool) -> Result<bool, Error> {
        let changed = self
            .conn
            .prepare_cached("UPDATE users SET is_active = ?2 WHERE username = ?1")?
            .execute(params![username, active])?;
        Ok(changed == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_unique_and_updates_report_missing_users() {
        let dir = std::env::temp_dir().join(format!("authhost-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(dir.join("t.db")).unwrap();
        let mut conn = store.connect().unwrap();
        let new = NewUser {
            username: "alice",
            password_hash: Some("$argon2id$x"),
            is_active: true,
            is_staff: false,
        };
        let alice = conn.create_user(&new).unwrap().expect("created");
        assert_eq!(alice.username.as_str(), "alice");
        assert!(
            conn.create_user(&new).unwrap().is_none(),
            "a taken username is refused"
        );
        assert!(conn.set_active("alice", false).unwrap());
        assert!(!conn.find_user("alice").unwrap().unwrap().is_active);
        assert!(!conn.set_password("bob", "x").unwrap());
        // Reopening does not re-run migrations.
        drop(conn);
        SqliteStore::open(dir.join("t.db")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
