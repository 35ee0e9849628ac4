//! Where blocking work runs: a small store pool whose threads own their connections, and a
//! separate password pool for argon2, each behind a bounded queue. Neither ever runs on a
//! tokio worker, and argon2 never queues in front of store look-ups (runtime-facts.md).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use authhost_plugin_api::export::payload_message;
use tokio::sync::oneshot;
use tracing::error;

use crate::error::Error;
use crate::store::{Store, StoreConn};

/// A pool whose every worker has been on one job this long is stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(10);

type StoreJob = Box<dyn FnOnce(&mut dyn StoreConn) + Send>;

/// How a pool's workers are doing: how many are alive, and since when each is busy.
#[derive(Debug)]
struct Workers {
    what: &'static str,
    started: Instant,
    alive: AtomicUsize,
    /// Per worker: milliseconds after `started` at which its current job began, plus one;
    /// 0 when idle.
    busy_since: Box<[AtomicU64]>,
    stuck_after: Duration,
    /// Jobs submitted and not yet taken by a worker (the metrics' queue depth).
    queued: AtomicUsize,
}

impl Workers {
    fn new(what: &'static str, count: usize, stuck_after: Duration) -> Arc<Self> {
        Arc::new(Workers {
            what,
            started: Instant::now(),
            alive: AtomicUsize::new(0),
            busy_since: (0..count).map(|_| AtomicU64::new(0)).collect(),
            stuck_after,
            queued: AtomicUsize::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// `Err` with the reason when the pool cannot serve: no worker alive, or every worker
    /// busy with one job for longer than `stuck_after`.
    fn health(&self) -> Result<(), String> {
        let alive = self.alive.load(Ordering::SeqCst);
        if alive == 0 {
            return Err(format!("the {} pool has no running worker", self.what));
        }
        let now = self.now_ms();
        let stuck_ms = u64::try_from(self.stuck_after.as_millis()).unwrap_or(u64::MAX);
        let stuck = self.busy_since.iter().all(|since| match since.load(Ordering::SeqCst) {
            0 => false,
            since => now.saturating_sub(since - 1) >= stuck_ms,
        });
        if stuck {
            return Err(format!(
                "the {} pool is stuck: every worker has been on one job for more than {}s",
                self.what,
                self.stuck_after.as_secs_f64()
            ));
        }
        Ok(())
    }

    /// Runs worker `index`'s loop on a new thread: jobs from `rx`, each through `run`. The
    /// worker counts as alive until its thread ends, however it ends.
    fn spawn<J: Send + 'static>(
        self: &Arc<Self>,
        index: usize,
        rx: Arc<Mutex<Receiver<J>>>,
        mut run: impl FnMut(J) + Send + 'static,
    ) -> Result<(), Error> {
        struct Alive(Arc<Workers>, usize);
        impl Drop for Alive {
            fn drop(&mut self) {
                self.0.busy_since[self.1].store(0, Ordering::SeqCst);
                self.0.alive.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.alive.fetch_add(1, Ordering::SeqCst);
        let workers = Arc::clone(self);
        thread::Builder::new()
            .name(format!("authhost-{}-{index}", self.what))
            .spawn(move || {
                let alive = Alive(workers, index);
                let workers = &alive.0;
                loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    // Every sender is gone: the host is shutting down.
                    let Ok(job) = job else { return };
                    workers.queued.fetch_sub(1, Ordering::Relaxed);
                    workers.busy_since[index].store(workers.now_ms() + 1, Ordering::SeqCst);
                    run(job);
                    workers.busy_since[index].store(0, Ordering::SeqCst);
                }
            })
            .map(drop)
            .map_err(|e| {
                self.alive.fetch_sub(1, Ordering::SeqCst);
                Error::io(format!("cannot start a {} thread", self.what)).with_source(e)
            })
    }
}

/// Runs `f`, turning a panic into an error that names the pool and the panic, logged once.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let cause = payload_message(payload.as_ref());
        error!(pool = what, cause, "a {what} job panicked: {cause}");
        Err(Error::io(format!("a {what} job panicked: {cause}")))
    })
}

/// A fixed set of threads, each owning one store connection.
#[derive(Debug, Clone)]
pub struct StorePool {
    jobs: SyncSender<StoreJob>,
    workers: Arc<Workers>,
}

impl StorePool {
    /// Starts `workers` threads with a queue of `queue` jobs.
    pub fn start(store: &dyn Store, workers: usize, queue: usize) -> Result<Self, Error> {
        StorePool::start_watched(store, workers, queue, STUCK_AFTER)
    }

    /// As `start`, calling the pool stuck after `stuck_after` (tests use a short one).
    pub fn start_watched(
        store: &dyn Store,
        workers: usize,
        queue: usize,
        stuck_after: Duration,
    ) -> Result<Self, Error> {
        let (jobs, rx) = sync_channel::<StoreJob>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let count = workers.max(1);
        let state = Workers::new("store", count, stuck_after);
        for i in 0..count {
            let mut conn = store.connect()?;
            state.spawn(i, Arc::clone(&rx), move |job: StoreJob| job(conn.as_mut()))?;
        }
        Ok(StorePool { jobs, workers: state })
    }

    /// Runs `f` on a store thread. Busy when the queue is full; a panic in `f` is this
    /// call's error alone (the thread goes on with the next job).
    pub async fn run<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn StoreConn) -> Result<T, Error> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: StoreJob = Box::new(move |conn| drop(tx.send(guarded("store", || f(conn)))));
        submit(&self.jobs, &self.workers, job, "store")?;
        rx.await.map_err(|_| Error::store("a store thread stopped"))?
    }

    /// `Err` with the reason when the pool cannot serve (no worker alive, or all stuck).
    pub fn health(&self) -> Result<(), String> {
        self.workers.health()
    }

    /// Jobs waiting for a worker.
    pub fn queue_depth(&self) -> usize {
        self.workers.queued.load(Ordering::Relaxed)
    }
}

/// Queues `job`, counting it in `workers.queued` until a worker takes it.
fn submit<J>(jobs: &SyncSender<J>, workers: &Workers, job: J, what: &str) -> Result<(), Error> {
    // Counted before the send, so that a worker taking it at once never counts below zero.
    workers.queued.fetch_add(1, Ordering::Relaxed);
    jobs.try_send(job).map_err(|e| {
        workers.queued.fetch_sub(1, Ordering::Relaxed);
        match e {
            TrySendError::Full(_) => Error::busy(format!("the {what} queue is full")),
            TrySendError::Disconnected(_) => Error::io(format!("the {what} pool has stopped")),
        }
    })
}

type PasswordJob = Box<dyn FnOnce(&Argon2<'static>, &str) + Send>;

/// Dedicated argon2 threads with a bounded queue.
#[derive(Debug, Clone)]
pub struct PasswordPool {
    jobs: SyncSender<PasswordJob>,
    workers: Arc<Workers>,
}

impl PasswordPool {
    pub fn start(workers: usize, queue: usize) -> Result<Self, Error> {
        let (jobs, rx) = sync_channel::<PasswordJob>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let count = workers.max(1);
        let state = Workers::new("argon2", count, STUCK_AFTER);
        for i in 0..count {
            let argon2 = Argon2::default();
            // Unknown users are verified against this, so that they cost the same.
            let dummy = hash_with(&argon2, "authhost dummy password");
            state.spawn(i, Arc::clone(&rx), move |job: PasswordJob| job(&argon2, &dummy))?;
        }
        Ok(PasswordPool { jobs, workers: state })
    }

    /// Verifies `password` against `hash`, or against a dummy hash when there is none, so
    /// that an unknown user costs the same argon2 work as a wrong password. A stored hash
    /// that does not parse, or that argon2 cannot check, is an error (a fault), never a
    /// wrong password.
    pub async fn verify(&self, hash: Option<String>, password: String) -> Result<bool, Error> {
        let (tx, rx) = oneshot::channel();
        let job: PasswordJob = Box::new(move |argon2, dummy| {
            let ok = guarded("argon2", || match hash.as_deref() {
                Some(hash) => verify_with(argon2, hash, &password),
                None => {
                    // The result is thrown away; the work is what counts.
                    let _ = std::hint::black_box(verify_with(argon2, dummy, &password));
                    Ok(false)
                }
            });
            let _ = tx.send(ok);
        });
        submit(&self.jobs, &self.workers, job, "password")?;
        rx.await.map_err(|_| Error::io("a password thread stopped"))?
    }

    /// `Err` with the reason when the pool cannot serve (no worker alive, or all stuck).
    pub fn health(&self) -> Result<(), String> {
        self.workers.health()
    }

    /// Jobs waiting for a worker.
    pub fn queue_depth(&self) -> usize {
        self.workers.queued.load(Ordering::Relaxed)
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

/// Whether `password` matches the PHC string `hash`. A hash that does not parse, or whose
/// algorithm or parameters argon2 refuses, is an error: the store holds something broken,
/// which must not read as a wrong password.
fn verify_with(argon2: &Argon2<'_>, hash: &str, password: &str) -> Result<bool, Error> {
    use argon2::password_hash::Error as HashError;
    let parsed = PasswordHash::new(hash)
        .map_err(|e| Error::store(format!("a stored password hash does not parse: {e}")))?;
    match argon2.verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(HashError::Password) => Ok(false),
        Err(e) => Err(Error::store(format!("a stored password hash cannot be checked: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[test]
    fn hashes_are_argon2id_and_verify_and_a_broken_hash_is_an_error() {
        let argon2 = Argon2::default();
        let hash = hash_password("s3cret");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_with(&argon2, &hash, "s3cret").unwrap());
        assert!(!verify_with(&argon2, &hash, "wrong").unwrap());
        assert!(verify_with(&argon2, "!", "s3cret").is_err(), "not a PHC string");
        let unknown = "$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA";
        assert!(verify_with(&argon2, unknown, "s3cret").is_err(), "an algorithm argon2 cannot check");
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("t.db"), crate::store::CHANGE_LOG_KEEP).unwrap();
        (dir, store)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
    }

    /// Waits (at most 10 s) until `health` gives what `want` accepts.
    fn wait_for_health(pool: &StorePool, want: impl Fn(&Result<(), String>) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let health = pool.health();
            if want(&health) {
                return health;
            }
            assert!(Instant::now() < deadline, "health stayed {health:?}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_panicking_job_fails_alone_and_the_pool_stays_healthy() {
        let (_dir, store) = store();
        let pool = StorePool::start(&store, 2, 16).unwrap();
        let rt = runtime();
        let err = rt.block_on(pool.run(|_| -> Result<(), Error> { panic!("injected") })).unwrap_err();
        assert!(!err.is_busy());
        assert!(err.with_cause().contains("a store job panicked: injected"), "{}", err.with_cause());
        // Both threads still serve: more jobs than threads, each answered.
        for _ in 0..8 {
            assert_eq!(rt.block_on(pool.run(|conn| conn.last_change())).unwrap(), 0);
        }
        assert_eq!(pool.health(), Ok(()));
        assert_eq!(pool.workers.alive.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn health_reports_a_stuck_pool_and_recovers() {
        let (_dir, store) = store();
        let pool = StorePool::start_watched(&store, 2, 16, Duration::from_millis(50)).unwrap();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let hold = Arc::new(Mutex::new(hold));
        let rt = runtime();
        let mut stuck = Vec::new();
        for _ in 0..2 {
            let (hold, pool) = (Arc::clone(&hold), pool.clone());
            stuck.push(rt.spawn(async move {
                pool.run(move |_| {
                    let _ = hold.lock().map(|h| h.recv());
                    Ok(())
                })
                .await
            }));
        }
        let health = wait_for_health(&pool, Result::is_err);
        assert!(health.unwrap_err().contains("the store pool is stuck"));
        drop(release);
        for job in stuck {
            rt.block_on(job).unwrap().unwrap();
        }
        assert_eq!(wait_for_health(&pool, Result::is_ok), Ok(()));
    }

    #[test]
    fn health_reports_a_pool_whose_workers_are_gone() {
        let (_dir, store) = store();
        let pool = StorePool::start(&store, 2, 16).unwrap();
        // A panic outside `run`'s guard ends its thread, as nothing else can.
        for _ in 0..2 {
            submit(
                &pool.jobs,
                &pool.workers,
                Box::new(|_: &mut dyn StoreConn| panic!("a worker dies")) as StoreJob,
                "store",
            )
            .unwrap();
        }
        let health = wait_for_health(&pool, |h| h.as_ref().is_err_and(|e| e.contains("no running worker")));
        assert_eq!(health, Err("the store pool has no running worker".to_owned()));
    }
}
