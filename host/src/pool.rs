//! Where blocking work runs: a small store pool whose threads own their connections, and a
//! separate password pool for argon2, each behind a bounded queue. Neither ever runs on a
//! tokio worker, and argon2 never queues in front of store look-ups (runtime-facts.md).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use authhost_plugin_api::export::payload_message;
use tokio::sync::oneshot;
use tracing::{debug, warn};

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

    /// Runs worker `index`'s loop on a new thread: jobs from `rx`, each through `run`. `run`
    /// says how long to wait for the next job before it is called with none (a tick, for
    /// work between jobs), or `None` to wait for a job without limit. The worker counts as
    /// alive until its thread ends, however it ends.
    fn spawn<J: Send + 'static>(
        self: &Arc<Self>,
        index: usize,
        rx: Arc<Mutex<Receiver<J>>>,
        mut run: impl FnMut(Option<J>) -> Option<Duration> + Send + 'static,
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
                // A first tick at once.
                let mut wait = Some(Duration::ZERO);
                loop {
                    let job = match rx.lock() {
                        Ok(rx) => match wait {
                            None => rx.recv().map(Some).map_err(|_| ()),
                            Some(wait) => match rx.recv_timeout(wait) {
                                Ok(job) => Ok(Some(job)),
                                Err(RecvTimeoutError::Timeout) => Ok(None),
                                Err(RecvTimeoutError::Disconnected) => Err(()),
                            },
                        },
                        Err(_) => return,
                    };
                    // Every sender is gone: the host is shutting down.
                    let Ok(job) = job else { return };
                    if job.is_some() {
                        workers.queued.fetch_sub(1, Ordering::Relaxed);
                    }
                    workers.busy_since[index].store(workers.now_ms() + 1, Ordering::SeqCst);
                    wait = run(job);
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

/// Runs `f`, turning a panic into an error that names the pool and the panic. Not logged
/// here: the process's panic hook (main.rs) has already written the panic's one line, with
/// its thread (`authhost-<pool>-<n>`) and location, and whoever gets the error says what it
/// did to the request (a scheme's fault line, a handler's 500).
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let cause = payload_message(payload.as_ref());
        Err(Error::io(format!("a {what} job panicked: {cause}")))
    })
}

/// The store's threads, each owning one connection: readers (WAL readers never wait for a
/// writer) and one writer, each behind its own bounded queue. One writer, so that the
/// host's own writes wait for each other in its queue, in order, and never in SQLite's busy
/// loop (which is not fair: two writers starved each other for seconds). Every job gives up
/// once `busy_timeout` has passed since it was submitted, queue wait included: the caller
/// gets an `unavailable` error (503), never a wait without bound.
#[derive(Debug, Clone)]
pub struct StorePool {
    reads: Lane,
    writes: Lane,
    busy_timeout: Duration,
}

/// One queue and the threads that take jobs from it.
#[derive(Debug, Clone)]
struct Lane {
    jobs: SyncSender<StoreJob>,
    workers: Arc<Workers>,
}

/// How the store pool runs: its size and its time limits.
#[derive(Debug, Clone, Copy)]
pub struct StorePoolConfig {
    /// Reader threads (the writer is one more).
    pub readers: usize,
    /// Jobs each queue holds; beyond them, callers are told the pool is busy.
    pub queue: usize,
    /// How long a job may take to start and get its locks (`[store] busy_timeout`).
    pub busy_timeout: Duration,
    /// How often the writer purges expired tokens and sessions (`[store] purge_every`).
    pub purge_every: Duration,
    /// A lane whose every worker has been on one job this long is stuck.
    pub stuck_after: Duration,
}

impl StorePoolConfig {
    /// `readers` reader threads and a queue of `queue` jobs, with the shipped time limits.
    pub fn new(readers: usize, queue: usize) -> Self {
        StorePoolConfig {
            readers,
            queue,
            busy_timeout: Duration::from_secs(1),
            purge_every: Duration::from_secs(60),
            stuck_after: STUCK_AFTER,
        }
    }
}

/// Expired tokens and sessions deleted per purge transaction: the writer takes the jobs
/// waiting between batches, so a purge of many never holds a login back for long.
const PURGE_BATCH: usize = 1000;

impl StorePool {
    pub fn start(store: &dyn Store, config: StorePoolConfig) -> Result<Self, Error> {
        let readers = config.readers.max(1);
        let (read_jobs, rx) = sync_channel::<StoreJob>(config.queue);
        let rx = Arc::new(Mutex::new(rx));
        let read_workers = Workers::new("store-read", readers, config.stuck_after);
        for i in 0..readers {
            let mut conn = store.connect_reader()?;
            read_workers.spawn(i, Arc::clone(&rx), move |job: Option<StoreJob>| {
                if let Some(job) = job {
                    job(conn.as_mut());
                }
                None
            })?;
        }
        let (write_jobs, rx) = sync_channel::<StoreJob>(config.queue);
        let write_workers = Workers::new("store-write", 1, config.stuck_after);
        let mut conn = store.connect()?;
        let mut purge = Purge::new(config.purge_every, config.busy_timeout);
        write_workers.spawn(0, Arc::new(Mutex::new(rx)), move |job: Option<StoreJob>| {
            if let Some(job) = job {
                job(conn.as_mut());
            }
            purge.run_if_due(conn.as_mut());
            Some(purge.wait())
        })?;
        Ok(StorePool {
            reads: Lane { jobs: read_jobs, workers: read_workers },
            writes: Lane { jobs: write_jobs, workers: write_workers },
            busy_timeout: config.busy_timeout,
        })
    }

    /// Runs `f`, which only reads, on a reader thread. Busy when the queue is full; a panic
    /// in `f` is this call's error alone (the thread goes on with the next job).
    pub async fn read<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn StoreConn) -> Result<T, Error> + Send + 'static,
    {
        self.run_on(&self.reads, f).await
    }

    /// Runs `f`, which writes, on the writer thread, after the writes queued before it.
    pub async fn write<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn StoreConn) -> Result<T, Error> + Send + 'static,
    {
        self.run_on(&self.writes, f).await
    }

    async fn run_on<T, F>(&self, lane: &Lane, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn StoreConn) -> Result<T, Error> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let (timeout, what) = (self.busy_timeout, lane.workers.what);
        let deadline = Instant::now() + timeout;
        let job: StoreJob = Box::new(move |conn| {
            let left = deadline.saturating_duration_since(Instant::now());
            let result = if left.is_zero() {
                Err(Error::unavailable(format!(
                    "a {what} job waited in the queue for longer than busy_timeout ({}ms)",
                    timeout.as_millis()
                )))
            } else {
                conn.set_busy_timeout(left);
                guarded(what, || f(conn))
            };
            drop(tx.send(result));
        });
        submit(&lane.jobs, &lane.workers, job, what)?;
        rx.await.map_err(|_| Error::store(format!("a {what} thread stopped")))?
    }

    /// `Err` with the reason when the pool cannot serve (no worker alive, or all stuck).
    pub fn health(&self) -> Result<(), String> {
        self.reads.workers.health().and_then(|()| self.writes.workers.health())
    }

    /// Jobs waiting for a reader, and for the writer.
    pub fn queue_depths(&self) -> (usize, usize) {
        let depth = |lane: &Lane| lane.workers.queued.load(Ordering::Relaxed);
        (depth(&self.reads), depth(&self.writes))
    }
}

/// The writer's purge of expired tokens and sessions: every `every`, and again straight
/// after a full batch until none is left, between jobs.
#[derive(Debug, Clone)]
struct Purge {
    every: Duration,
    busy_timeout: Duration,
    next: Instant,
}

impl Purge {
    fn new(every: Duration, busy_timeout: Duration) -> Self {
        // The first purge soon after start-up: a host that was down leaves some.
        Purge { every, busy_timeout, next: Instant::now() }
    }

    /// How long the writer may wait for a job before the next purge is due.
    fn wait(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }

    fn run_if_due(&mut self, conn: &mut dyn StoreConn) {
        if Instant::now() < self.next {
            return;
        }
        conn.set_busy_timeout(self.busy_timeout);
        let purged = guarded("store-write", || conn.purge_expired(crate::sessions::now(), PURGE_BATCH));
        self.next = match purged {
            Ok(n) if n >= PURGE_BATCH => Instant::now(),
            Ok(n) => {
                if n > 0 {
                    debug!(purged = n, "expired tokens and sessions purged");
                }
                Instant::now() + self.every
            }
            Err(err) => {
                warn!(error = %err.with_cause(), "cannot purge expired tokens and sessions; trying again later");
                Instant::now() + self.every
            }
        };
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
            state.spawn(i, Arc::clone(&rx), move |job: Option<PasswordJob>| {
                if let Some(job) = job {
                    job(&argon2, &dummy);
                }
                None
            })?;
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

    /// As `verify`, for a stored hash that may be Django's (`authhost import django`): on a
    /// match against one, also the password's argon2id hash, made on the same thread, for
    /// the caller to store in its place (Django upgrades a hash on login the same way).
    pub async fn verify_upgrading(
        &self,
        hash: Option<String>,
        password: String,
    ) -> Result<(bool, Option<String>), Error> {
        if !hash.as_deref().is_some_and(crate::django_hashes::is_django) {
            return self.verify(hash, password).await.map(|ok| (ok, None));
        }
        let (tx, rx) = oneshot::channel();
        let job: PasswordJob = Box::new(move |argon2, dummy| {
            let checked = guarded("password", || {
                let encoded = hash.as_deref().unwrap_or_default();
                if crate::django_hashes::is_unusable(encoded) {
                    // An unusable password costs what a wrong one does, and never matches.
                    let _ = std::hint::black_box(verify_with(argon2, dummy, &password));
                    return Ok((false, None));
                }
                match crate::django_hashes::verify(encoded, &password)? {
                    true => Ok((true, Some(hash_with(argon2, &password)))),
                    false => Ok((false, None)),
                }
            });
            let _ = tx.send(checked);
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

    /// A writer that keeps what a test's subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_panicking_job_is_one_error_and_no_log_line_of_the_pools_own() {
        // The process's panic hook writes the panic's line and the caller logs what the
        // error did to its request: a line from the pool too made two or three per panic.
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).finish();
        let err = tracing::subscriber::with_default(subscriber, || {
            guarded("store-read", || -> Result<(), Error> { panic!("injected") })
        })
        .unwrap_err();
        assert!(err.with_cause().contains("a store-read job panicked: injected"), "{}", err.with_cause());
        assert_eq!(String::from_utf8_lossy(&captured.0.lock().unwrap()), "");
    }

    #[test]
    fn a_panicking_job_fails_alone_and_the_pool_stays_healthy() {
        let (_dir, store) = store();
        let pool = StorePool::start(&store, StorePoolConfig::new(2, 16)).unwrap();
        let rt = runtime();
        let err = rt.block_on(pool.read(|_| -> Result<(), Error> { panic!("injected") })).unwrap_err();
        assert!(!err.is_busy());
        assert!(err.with_cause().contains("a store-read job panicked: injected"), "{}", err.with_cause());
        let err = rt.block_on(pool.write(|_| -> Result<(), Error> { panic!("injected") })).unwrap_err();
        assert!(err.with_cause().contains("a store-write job panicked: injected"), "{}", err.with_cause());
        // Every thread still serves: more jobs than threads, each answered.
        for _ in 0..8 {
            assert_eq!(rt.block_on(pool.read(|conn| conn.last_change())).unwrap(), 0);
            assert_eq!(rt.block_on(pool.write(|conn| conn.last_change())).unwrap(), 0);
        }
        assert_eq!(pool.health(), Ok(()));
        assert_eq!(pool.reads.workers.alive.load(Ordering::SeqCst), 2);
        assert_eq!(pool.writes.workers.alive.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn health_reports_a_stuck_pool_and_recovers() {
        let (_dir, store) = store();
        let config = StorePoolConfig {
            stuck_after: Duration::from_millis(50),
            busy_timeout: Duration::from_secs(60),
            ..StorePoolConfig::new(2, 16)
        };
        let pool = StorePool::start(&store, config).unwrap();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let hold = Arc::new(Mutex::new(hold));
        let rt = runtime();
        let mut stuck = Vec::new();
        for _ in 0..2 {
            let (hold, pool) = (Arc::clone(&hold), pool.clone());
            stuck.push(rt.spawn(async move {
                pool.read(move |_| {
                    let _ = hold.lock().map(|h| h.recv());
                    Ok(())
                })
                .await
            }));
        }
        let health = wait_for_health(&pool, Result::is_err);
        assert!(health.unwrap_err().contains("the store-read pool is stuck"));
        drop(release);
        for job in stuck {
            rt.block_on(job).unwrap().unwrap();
        }
        assert_eq!(wait_for_health(&pool, Result::is_ok), Ok(()));
    }

    #[test]
    fn health_reports_a_pool_whose_workers_are_gone() {
        let (_dir, store) = store();
        let pool = StorePool::start(&store, StorePoolConfig::new(2, 16)).unwrap();
        // A panic outside `run_on`'s guard ends its thread, as nothing else can.
        for _ in 0..2 {
            submit(
                &pool.reads.jobs,
                &pool.reads.workers,
                Box::new(|_: &mut dyn StoreConn| panic!("a worker dies")) as StoreJob,
                "store",
            )
            .unwrap();
        }
        let health = wait_for_health(&pool, |h| h.as_ref().is_err_and(|e| e.contains("no running worker")));
        assert_eq!(health, Err("the store-read pool has no running worker".to_owned()));
    }
}
