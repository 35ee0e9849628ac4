//! A PostgreSQL database of a test's own on the machine's server (127.0.0.1:5432, user
//! postgres, trust), with a unique name, dropped when the test ends. Where no server
//! answers, the test says so loudly and skips.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A database created for one test; dropped (with its connections) on drop.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    /// `postgres://postgres@127.0.0.1:5432/NAME`.
    pub url: String,
}

const ADMIN: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5";

/// Runs `sql` (one statement) as the admin, on a runtime and thread of its own.
pub fn admin(sql: &str) -> Result<(), String> {
    let sql = sql.to_owned();
    std::thread::spawn(move || {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let (client, connection) =
                tokio_postgres::connect(ADMIN, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
            let driver = tokio::spawn(connection);
            let done = client
                .batch_execute(&sql)
                .await
                .map_err(|e| e.as_db_error().map_or_else(|| e.to_string(), |db| db.to_string()));
            drop(client);
            let _ = driver.await;
            done
        })
    })
    .join()
    .unwrap_or_else(|_| Err("the admin thread panicked".into()))
}

impl TestDb {
    /// A new, empty database; `None` (after saying so) when no PostgreSQL server answers.
    pub fn create(test: &str) -> Option<TestDb> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = format!(
            "authhost_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst),
            nanos % 1_000_000_000
        );
        if let Err(err) = admin(&format!("CREATE DATABASE {name}")) {
            eprintln!("SKIPPED {test}: no PostgreSQL server answers on 127.0.0.1:5432 ({err})");
            return None;
        }
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        Some(TestDb { name, url })
    }

    /// Makes the database refuse every connection, and ends the ones it has: an outage
    /// of this database alone (never the machine's shared server). The refusal is
    /// committed first (statements sent together run as one transaction, and a host could
    /// reconnect between the terminations and that commit), and the call returns once no
    /// backend of the database is left: `pg_terminate_backend` only signals one, and a
    /// backend slow to go would still answer a query.
    pub fn cut_off(&self) {
        admin(&format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false", self.name))
            .expect("refuse connections");
        admin(&format!(
            "DO $$ BEGIN \
               FOR i IN 1..1000 LOOP \
                 PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{0}'; \
                 PERFORM pg_stat_clear_snapshot(); \
                 IF NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = '{0}') THEN RETURN; END IF; \
                 PERFORM pg_sleep(0.01); \
               END LOOP; \
               RAISE EXCEPTION 'backends of {0} still running after 10 s'; \
             END $$",
            self.name
        ))
        .expect("end the database's connections");
    }

    /// Lets connections in again.
    pub fn restore(&self) {
        admin(&format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true", self.name))
            .expect("restore the database");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = admin(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}
