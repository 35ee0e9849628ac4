//! Where blocking work runs: a small store pool whose threads own their connections, and a
//! separate password pool for argon2, each behind a bounded queue. Neither ever runs on a
//! tokio worker, and argon2 never queues in front of store look-ups (runtime-facts.md).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::oneshot;

use crate::error::Error;
use crate::store::{Store, StoreConn};

type StoreJob = Box<dyn FnOnce(&mut dyn StoreConn) + Send>;

/// A fixed set of threads, each owning one store connection.
#[derive(Debug, Clone)]
pub struct StorePool {
    jobs: SyncSender<StoreJob>,
}

impl StorePool {
    /// Starts `workers` threads with a queue of `queue` jobs.
    pub fn start(store: &dyn Store, workers: usize, queue: usize) -> Result<Self, Error> {
        let (jobs, rx) = sync_channel::<StoreJob>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let mut conn = store.connect()?;
            let rx = Arc::clone(&rx);
            thread::Builder::new()
                .name(format!("authhost-store-{i}"))
                .spawn(move || run_jobs(&rx, |job: StoreJob| job(conn.as_mut())))
                .map_err(|e| Error::io("cannot start a store thread").with_source(e))?;
        }
        Ok(StorePool { jobs })
    }

    /// Runs `f` on a store thread. Busy when the queue is full.
    pub async fn run<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn StoreConn) -> Result<T, Error> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        submit(&self.jobs, Box::new(move |conn| drop(tx.send(f(conn)))), "store")?;
        rx.await.map_err(|_| Error::store("a store thread stopped"))?
    }
}

fn submit<J>(jobs: &SyncSender<J>, job: J, what: &str) -> Result<(), Error> {
    jobs.try_send(job).map_err(|e| match e {
        TrySendError::Full(_) => Error::busy(format!("the {what} queue is full")),
        TrySendError::Disconnected(_) => Error::io(format!("the {what} pool has stopped")),
    })
}

fn run_jobs<J>(rx: &Mutex<Receiver<J>>, mut run: impl FnMut(J)) {
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => run(job),
            Err(_) => return, // every sender is gone: the host is shutting down
        }
    }
}

type PasswordJob = Box<dyn FnOnce(&Argon2<'static>, &str) + Send>;

/// Dedicated argon2 threads with a bounded queue.
#[derive(Debug, Clone)]
pub struct PasswordPool {
    jobs: SyncSender<PasswordJob>,
}

impl PasswordPool {
    pub fn start(workers: usize, queue: usize) -> Result<Self, Error> {
        let (jobs, rx) = sync_channel::<PasswordJob>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = Arc::clone(&rx);
            thread::Builder::new()
                .name(format!("authhost-argon2-{i}"))
                .spawn(move || {
                    let argon2 = Argon2::default();
                    // Unknown users are verified against this, so that they cost the same.
                    let dummy = hash_with(&argon2, "authhost dummy password");
                    run_jobs(&rx, |job: PasswordJob| job(&argon2, &dummy));
                })
                .map_err(|e| Error::io("cannot start a password thread").with_source(e))?;
        }
        Ok(PasswordPool { jobs })
    }

    /// Verifies `password` against `hash`, or against a dummy hash when there is none, so
    /// that an unknown user costs the same argon2 work as a wrong password.
    pub async fn verify(&self, hash: Option<String>, password: String) -> Result<bool, Error> {
        let (tx, rx) = oneshot::channel();
        let job: PasswordJob = Box::new(move |argon2, dummy| {
            let ok = match hash.as_deref() {
                Some(hash) => verify_with(argon2, hash, &password),
                None => {
                    // The result is thrown away; the work is what counts.
                    std::hint::black_box(verify_with(argon2, dummy, &password));
                    false
                }
            };
            let _ = tx.send(ok);
        });
        submit(&self.jobs, job, "password")?;
        rx.await.map_err(|_| Error::io("a password thread stopped"))
    }
}

/// Hashes a password as an argon2id PHC string. Blocking: call it from a command or a pool.
pub fn hash_password(password: &str) -> String {
    hash_with(&Argon2::default(), password)
}

fn hash_with(argon2: &Argon2<'_>, password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .unwrap_or_else(|e| unreachable!("argon2 with default parameters cannot fail: {e}"))
}

fn verify_with(argon2: &Argon2<'_>, hash: &str, password: &str) -> bool {
    // A hash that does not parse (an unusable password) verifies nothing.
    PasswordHash::new(hash).is_ok_and(|parsed| argon2.verify_password(password.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let hash = hash_password("s3cret");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_with(&Argon2::default(), &hash, "s3cret"));
        assert!(!verify_with(&Argon2::default(), &hash, "wrong"));
        assert!(!verify_with(&Argon2::default(), "!", "s3cret"));
    }
}
