//! `authhost import django --from DATABASE`: a Django project's users (`auth_user`) and
//! DRF's tokens (`authtoken_token`) moved into authhost's store. Passwords keep their
//! Django hashes until each user's first successful login, which upgrades them to argon2id
//! (django_hashes.rs); tokens are stored as digests of their keys, so the same keys keep
//! working; unusable passwords stay unusable. Users already in the store are left alone.

use std::fmt::Write as _;

use crate::error::Error;
use crate::store::{Backend, NewToken, NewUser, TokenSet};

/// One row of Django's user table.
#[derive(Debug, Clone)]
pub struct DjangoUser {
    pub username: String,
    pub email: String,
    /// Django's encoded hash (`algorithm$...`, or `!...` when unusable).
    pub password: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
}

/// What was read from the Django database.
#[derive(Debug, Default)]
pub struct DjangoData {
    pub users: Vec<DjangoUser>,
    /// (username, key): DRF's `authtoken_token`, empty when the app was not installed.
    pub tokens: Vec<(String, String)>,
    pub has_token_table: bool,
}

/// Where the Django database is: a SQLite file (`sqlite://PATH`, or a plain path) or
/// PostgreSQL (`postgres://USER[:PASSWORD]@HOST:PORT/DB`; `$PGPASSWORD` is read too).
pub fn read(database: &str, user_table: &str) -> Result<DjangoData, Error> {
    if !user_table.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || user_table.is_empty() {
        return Err(Error::config(format!("--user-table {user_table:?} is not a table name")));
    }
    if crate::store::is_postgres(database) || database.starts_with("postgresql://") {
        return read_postgres(database, user_table);
    }
    let path = database.strip_prefix("sqlite://").unwrap_or(database);
    let path = std::path::Path::new(path);
    if !path.is_file() {
        return Err(Error::config(format!("no Django database at {}", path.display())));
    }
    read_sqlite(path, user_table)
}

const USERS: &str =
    "SELECT username, email, password, is_active, is_staff, is_superuser FROM {table} ORDER BY id";
const TOKENS: &str =
    "SELECT u.username, t.key FROM authtoken_token t JOIN {table} u ON u.id = t.user_id ORDER BY t.created";

fn read_sqlite(path: &std::path::Path, table: &str) -> Result<DjangoData, Error> {
    let failed =
        |e: rusqlite::Error| Error::store(format!("{}: cannot read Django's tables: {e}", path.display()));
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(failed)?;
    let mut data = DjangoData::default();
    let mut users = conn.prepare(&USERS.replace("{table}", table)).map_err(failed)?;
    data.users = users
        .query_map([], |r| {
            Ok(DjangoUser {
                username: r.get(0)?,
                email: r.get(1)?,
                password: r.get(2)?,
                is_active: r.get(3)?,
                is_staff: r.get(4)?,
                is_superuser: r.get(5)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(failed)?;
    data.has_token_table = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'authtoken_token'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(failed)?
        > 0;
    if data.has_token_table {
        let mut tokens = conn.prepare(&TOKENS.replace("{table}", table)).map_err(failed)?;
        data.tokens = tokens
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(failed)?;
    }
    Ok(data)
}

fn read_postgres(url: &str, table: &str) -> Result<DjangoData, Error> {
    use std::str::FromStr as _;
    let shown = crate::store::redacted(url);
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|e| Error::config(format!("{shown:?} is not a PostgreSQL URL: {e}")))?;
    if config.get_password().is_none() {
        if let Ok(password) = std::env::var("PGPASSWORD") {
            config.password(password);
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start a runtime").with_source(e))?;
    runtime.block_on(async {
        let failed =
            |e: tokio_postgres::Error| Error::store(format!("{shown}: cannot read Django's tables: {e}"));
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(failed)?;
        let driver = tokio::spawn(connection);
        let mut data = DjangoData::default();
        for row in client.query(&USERS.replace("{table}", table), &[]).await.map_err(failed)? {
            data.users.push(DjangoUser {
                username: row.get(0),
                email: row.get(1),
                password: row.get(2),
                is_active: row.get(3),
                is_staff: row.get(4),
                is_superuser: row.get(5),
            });
        }
        data.has_token_table = client
            .query_one("SELECT to_regclass('authtoken_token') IS NOT NULL", &[])
            .await
            .map_err(failed)?
            .get(0);
        if data.has_token_table {
            for row in client.query(&TOKENS.replace("{table}", table), &[]).await.map_err(failed)? {
                data.tokens.push((row.get(0), row.get(1)));
            }
        }
        drop(client);
        let _ = driver.await;
        Ok(data)
    })
}

/// The hasher a Django hash names, for the report (never the hash itself).
fn hasher(encoded: &str) -> &str {
    if crate::django_hashes::is_unusable(encoded) {
        return "unusable";
    }
    encoded.split('$').next().unwrap_or("?")
}

/// What `import` did, or (dry run) would do, line by line, then in sum.
pub async fn import(store: &dyn Backend, data: &DjangoData, dry_run: bool) -> Result<String, Error> {
    let mut report = String::new();
    let verb = if dry_run { "would import" } else { "imported" };
    let (mut imported, mut present) = (0usize, 0usize);
    let mut known = std::collections::HashSet::new();
    for user in &data.users {
        let exists = store.find_user(&user.username).await?.is_some();
        if exists {
            present += 1;
            let _ = writeln!(report, "user {:?}: already in the store, left as it is", user.username);
            continue;
        }
        known.insert(user.username.as_str());
        let flags =
            [("inactive", !user.is_active), ("staff", user.is_staff), ("superuser", user.is_superuser)];
        let flags: Vec<&str> = flags.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect();
        let _ = writeln!(
            report,
            "{verb} user {:?} (password: {}{}{})",
            user.username,
            hasher(&user.password),
            if flags.is_empty() { "" } else { "; " },
            flags.join(", ")
        );
        if user.is_superuser && !user.is_staff {
            let _ = writeln!(
                report,
                "  note: {:?} is a superuser but not staff; DRF's IsAdminUser (is_staff) refuses them, here too",
                user.username
            );
        }
        if !dry_run {
            let new = NewUser {
                username: &user.username,
                password_hash: Some(user.password.as_str()).filter(|p| !p.is_empty()),
                is_active: user.is_active,
                is_staff: user.is_staff,
                email: &user.email,
            };
            if store.create_user(&new).await?.is_none() {
                return Err(Error::store(format!(
                    "user {:?} appeared while importing; run the import again",
                    user.username
                )));
            }
        }
        imported += 1;
    }
    let (mut tokens, mut skipped) = (0usize, 0usize);
    for (username, key) in &data.tokens {
        if dry_run {
            if known.contains(username.as_str()) {
                tokens += 1;
                let _ = writeln!(report, "{verb} the token of {username:?} (as its digest)");
            } else {
                skipped += 1;
                let _ = writeln!(
                    report,
                    "token of {username:?}: its user is already in the store, left as it is"
                );
            }
            continue;
        }
        let digest = crate::services::token_digest(key);
        match store.create_token(username, &NewToken { digest: &digest, nonce: None }, false).await? {
            TokenSet::Created => {
                tokens += 1;
                let _ = writeln!(report, "{verb} the token of {username:?} (as its digest)");
            }
            TokenSet::Exists => {
                skipped += 1;
                let _ =
                    writeln!(report, "token of {username:?}: the user has a token already, left as it is");
            }
            TokenSet::NoSuchUser => {
                skipped += 1;
                let _ = writeln!(report, "token of {username:?}: no such user, skipped");
            }
        }
    }
    let _ = write!(
        report,
        "{verb} {imported} users ({present} already present) and {tokens} tokens ({skipped} skipped)"
    );
    if !data.has_token_table {
        report.push_str("; no authtoken_token table (rest_framework.authtoken was not installed)");
    }
    Ok(report)
}
