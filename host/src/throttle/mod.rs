//! DRF's throttles (`SimpleRateThrottle`): per scope, a window of recent request times per
//! user or client address; a request is refused when the window is full, with DRF's wait.
//! Scope `anon` counts unauthenticated requests by address (AnonRateThrottle), `user`
//! counts by user id, or by address when anonymous (UserRateThrottle), and any other scope
//! counts per scope and per user or address (ScopedRateThrottle). The windows live for the
//! process, so that a reload does not reset them.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;

use crate::error::Error;

mod redis_windows;
pub use redis_windows::{RedisWindows, PASSWORD_ENV as REDIS_PASSWORD_ENV};

/// `"N/period"`: N requests per second, minute, hour or day (DRF's `parse_rate`: the
/// period by its first letter, so `"100/min"` and `"100/minute"` are the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub requests: u32,
    pub period: Duration,
}

impl std::str::FromStr for Rate {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let (requests, period) = text.split_once('/').ok_or(())?;
        let requests = requests.trim().parse().map_err(|_| ())?;
        let seconds = match period.trim().chars().next() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86400,
            _ => return Err(()),
        };
        Ok(Rate { requests, period: Duration::from_secs(seconds) })
    }
}

/// Which requests a scope counts, and by what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only anonymous requests, by address.
    Anon,
    /// By user, or by address when anonymous.
    User,
}

/// One throttle a route applies.
#[derive(Debug, Clone)]
pub struct Throttle {
    pub scope: Arc<str>,
    pub kind: Kind,
    pub rate: Rate,
}

impl Throttle {
    pub fn new(scope: &str, rate: Rate) -> Self {
        let kind = if scope == "anon" { Kind::Anon } else { Kind::User };
        Throttle { scope: Arc::from(scope), kind, rate }
    }
}

/// Whom a window counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Who {
    User(i64),
    Address(IpAddr),
    /// A login name (username or e-mail address) that failed.
    Login(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    scope: Arc<str>,
    who: Who,
}

type Window = Arc<Mutex<VecDeque<Instant>>>;

/// How many windows are kept; beyond it the least used go first (DRF's default cache
/// culls too). Each holds at most its rate's number of times.
const WINDOWS: usize = 200_000;

fn windows() -> &'static quick_cache::sync::Cache<Key, Window> {
    static WINDOWS_CACHE: OnceLock<quick_cache::sync::Cache<Key, Window>> = OnceLock::new();
    WINDOWS_CACHE.get_or_init(|| quick_cache::sync::Cache::new(WINDOWS))
}

/// The window of `scope` for `who`, made on first use.
fn window(scope: Arc<str>, who: Who) -> Window {
    let key = Key { scope, who };
    windows().get_or_insert_with(&key, || Ok::<_, ()>(Window::default())).unwrap_or_default()
}

/// What the windows that refused a request say (DRF's `throttled()`: the longest wait).
#[derive(Debug, Default)]
struct Refusals {
    refused: bool,
    longest: Option<f64>,
}

impl Refusals {
    fn add(&mut self, wait: Option<f64>) {
        self.refused = true;
        self.longest = match (self.longest, wait) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// `Err(wait)` when any window refused, the wait in whole seconds rounded up (DRF's
    /// `math.ceil`), None when DRF would give none.
    fn result(self) -> Result<(), Option<u64>> {
        if self.refused {
            Err(self.longest.map(|w| w.ceil() as u64))
        } else {
            Ok(())
        }
    }
}

/// DRF's `check_throttles` for one request: every throttle counts it (a request refused by
/// one is still recorded by the others that allowed it, as in DRF); `Err(wait)` when any
/// refused, with the longest wait in whole seconds (None when DRF would give none).
pub fn check(throttles: &[Throttle], user: Option<i64>, address: IpAddr) -> Result<(), Option<u64>> {
    let now = Instant::now();
    let mut refusals = Refusals::default();
    for throttle in throttles {
        let who = match (throttle.kind, user) {
            (Kind::Anon, Some(_)) => continue,
            (_, Some(id)) => Who::User(id),
            (_, None) => Who::Address(address),
        };
        let window = window(Arc::clone(&throttle.scope), who);
        let mut history = window.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(wait) = allow(&mut history, throttle.rate, now) {
            refusals.add(wait);
        }
    }
    refusals.result()
}

/// Throttle windows that every host sharing them counts in: the PostgreSQL store's
/// (`store/postgres.rs`) or Redis's (`[throttle] url`, `redis.rs`). Each call is one round
/// trip, by the shared server's clock; `Err` when it cannot answer (503, never a pass).
#[async_trait::async_trait]
pub trait SharedWindows: Send + Sync + std::fmt::Debug {
    /// DRF's `allow_request` for `count` requests in a row on window `key`: the first
    /// `admitted` are allowed (and recorded), the rest refused with DRF's wait (seconds;
    /// None when DRF gives none).
    async fn throttle(&self, key: &str, rate: Rate, count: u32) -> Result<Admitted, Error>;

    /// `[throttle] failures`: `Ok(Some(wait))` when a login as `check.login` from
    /// `check.address` must not be tried now (the address's window is full, or the name's
    /// is and the address has not logged in as that name in the last day).
    async fn failures_refused(&self, check: &FailureCheck<'_>) -> Result<Option<Option<f64>>, Error>;

    /// Counts a failed login in the windows `keys` (each `period` long).
    async fn failure(&self, keys: &[&str], period: Duration) -> Result<(), Error>;

    /// Remembers that `address` logged in as `login` (exempt from the name's window for a
    /// day).
    async fn login_known(&self, login: &str, address: &str) -> Result<(), Error>;
}

/// What a shared window said to a batch of requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Admitted {
    /// How many of the batch, from its first, are allowed.
    pub admitted: u32,
    /// DRF's wait for the others.
    pub wait: Option<f64>,
}

/// One `[throttle] failures` question: the two windows' keys and rates, and who asks.
#[derive(Debug, Clone, Copy)]
pub struct FailureCheck<'a> {
    pub address_key: &'a str,
    pub name_key: &'a str,
    pub login: &'a str,
    pub address: &'a str,
    pub period: Duration,
    pub allowed: u32,
    pub name_allowed: u32,
}

/// Where the throttle windows live: in this process, or shared by every host that counts
/// in the same PostgreSQL store or Redis.
#[derive(Debug, Clone)]
pub enum Counter {
    Local,
    Shared(Arc<Shared>),
}

impl Counter {
    /// Counts in `windows`, shared with every other host that counts there.
    pub fn shared(windows: Arc<dyn SharedWindows>) -> Counter {
        Counter::Shared(Arc::new(Shared { windows, pending: Mutex::default() }))
    }
}

/// Shared windows, and the checks waiting for them. Checks of one window that arrive while
/// round trips for it are in flight wait and go together in the next one (a group commit;
/// at most `IN_FLIGHT` round trips per window at once): a busy window costs a round trip
/// per batch, not per request, and each request still gets DRF's answer (a batch is
/// decided atomically by the shared server, its requests in the order they arrived).
#[derive(Debug)]
pub struct Shared {
    windows: Arc<dyn SharedWindows>,
    pending: Mutex<std::collections::HashMap<(String, Rate), Queue>>,
}

/// The requests waiting for one window, and how many round trips for it are in flight.
#[derive(Debug, Default)]
struct Queue {
    waiting: Vec<Waiter>,
    in_flight: usize,
}

/// A request waiting for its window's next round trip: Ok(None) allowed, Ok(Some(wait))
/// refused, Err(why) when the windows cannot answer.
type Waiter = tokio::sync::oneshot::Sender<Result<Option<Option<f64>>, String>>;

/// At most this many requests go in one round trip.
const BATCH: usize = 512;

/// Round trips in flight per window. Two keep the pipe to the shared server busy while a
/// batch's answers are handed out; more only make smaller batches (measured under wrk at
/// 32 connections on one window: 1, 2, 4, 16 in flight gave 42k, 53k, 48k, 38k requests/s).
const IN_FLIGHT: usize = 2;

impl Shared {
    /// One request's turn on window `key`: allowed (None), or refused with DRF's wait.
    async fn check(self: &Arc<Self>, key: String, rate: Rate) -> Result<Option<Option<f64>>, Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let drive = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let queue = pending.entry((key.clone(), rate)).or_default();
            queue.waiting.push(tx);
            let drive = queue.in_flight < IN_FLIGHT;
            if drive {
                queue.in_flight += 1;
            }
            drive
        };
        if drive {
            // A driver is a task of its own, so that no request waits for batches after
            // its own.
            tokio::spawn(Arc::clone(self).drive(key, rate));
        }
        match rx.await {
            Ok(Ok(verdict)) => Ok(verdict),
            Ok(Err(why)) => Err(Error::unavailable(why)),
            Err(_) => Err(Error::unavailable("the throttle check was dropped")),
        }
    }

    /// Sends the window's waiting requests in batches until none is left.
    async fn drive(self: Arc<Self>, key: String, rate: Rate) {
        let slot = (key, rate);
        loop {
            let batch: Vec<Waiter> = {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                let Some(queue) = pending.get_mut(&slot) else { return };
                if queue.waiting.is_empty() {
                    queue.in_flight -= 1;
                    if queue.in_flight == 0 {
                        pending.remove(&slot);
                    }
                    return;
                }
                let take = queue.waiting.len().min(BATCH);
                queue.waiting.drain(..take).collect()
            };
            let count = u32::try_from(batch.len()).unwrap_or(u32::MAX);
            // A panic in a driver would strand its window's queue: it answers as a fault.
            let answer = std::panic::AssertUnwindSafe(self.windows.throttle(&slot.0, rate, count))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(Error::unavailable("a shared throttle check panicked")));
            for (i, waiter) in batch.into_iter().enumerate() {
                let verdict = match &answer {
                    Ok(a) if (i as u64) < u64::from(a.admitted) => Ok(None),
                    Ok(a) => Ok(Some(a.wait)),
                    Err(err) => Err(err.with_cause()),
                };
                // A request that stopped waiting (its client left) needs no answer.
                let _ = waiter.send(verdict);
            }
        }
    }
}

impl Counter {
    /// `check` against these windows: `Ok(Err(wait))` when refused; `Err` when the shared
    /// windows cannot be read (the store is down: 503, never a pass).
    pub async fn check(
        &self,
        throttles: &[Throttle],
        user: Option<i64>,
        address: IpAddr,
    ) -> Result<Result<(), Option<u64>>, Error> {
        let Counter::Shared(shared) = self else { return Ok(check(throttles, user, address)) };
        let mut refusals = Refusals::default();
        for throttle in throttles {
            let who = match (throttle.kind, user) {
                (Kind::Anon, Some(_)) => continue,
                (_, Some(id)) => format!("user:{id}"),
                (_, None) => format!("address:{address}"),
            };
            let key = format!("{}/{who}", throttle.scope);
            // A full window stays full until its oldest request ages out (other hosts can
            // only add to it): until then this host refuses without asking the database,
            // so a flood against one window costs no round trips.
            let now = Instant::now();
            if let Some(until) = full_windows().get(&key).filter(|until| *until > now) {
                refusals.add(Some(until.duration_since(now).as_secs_f64()));
                continue;
            }
            if let Some(wait) = shared.check(key.clone(), throttle.rate).await? {
                if let Some(w) = wait.filter(|w| *w > 0.0) {
                    // DRF's wait for a window exactly full is the oldest request's time left.
                    full_windows().insert(key, now + Duration::from_secs_f64(w));
                }
                refusals.add(wait);
            }
        }
        Ok(refusals.result())
    }
}

/// Shared windows known full, and until when: refused here without a round trip.
fn full_windows() -> &'static quick_cache::sync::Cache<String, Instant> {
    static FULL: OnceLock<quick_cache::sync::Cache<String, Instant>> = OnceLock::new();
    FULL.get_or_init(|| quick_cache::sync::Cache::new(WINDOWS))
}

impl Counter {
    /// `[throttle] failures`: `Ok(Err(wait))` when a login as `login` from `address` must
    /// not be tried now.
    pub async fn failures_refused(
        &self,
        rate: Rate,
        address: IpAddr,
        login: &str,
    ) -> Result<Result<(), Option<u64>>, Error> {
        let Counter::Shared(shared) = self else { return Ok(failures::refused(rate, address, login)) };
        let store = &shared.windows;
        let name_rate = rate.requests.saturating_mul(failures::NAME_FACTOR);
        let (address_key, name_key) = failures::keys(address, login);
        let address = address.to_string();
        let check = FailureCheck {
            address_key: &address_key,
            name_key: &name_key,
            login,
            address: &address,
            period: rate.period,
            allowed: rate.requests,
            name_allowed: name_rate,
        };
        let refused = store.failures_refused(&check).await?;
        let mut refusals = Refusals::default();
        if let Some(wait) = refused {
            refusals.add(wait);
        }
        Ok(refusals.result())
    }

    /// Counts a failed login.
    pub async fn failed(&self, rate: Rate, address: IpAddr, login: &str) -> Result<(), Error> {
        let Counter::Shared(shared) = self else {
            failures::failed(rate, address, login);
            return Ok(());
        };
        let store = &shared.windows;
        let (address_key, name_key) = failures::keys(address, login);
        store.failure(&[&address_key, &name_key], rate.period).await
    }

    /// Remembers a successful login.
    pub async fn succeeded(&self, address: IpAddr, login: &str) -> Result<(), Error> {
        let Counter::Shared(shared) = self else {
            failures::succeeded(address, login);
            return Ok(());
        };
        let store = &shared.windows;
        store.login_known(login, &address.to_string()).await
    }
}

/// DRF's `allow_request` and `wait` on one window (newest first).
fn allow(history: &mut VecDeque<Instant>, rate: Rate, now: Instant) -> Result<(), Option<f64>> {
    full(history, rate, now)?;
    history.push_front(now);
    Ok(())
}

/// DRF's check without the recording: `Err(wait)` when the window is full.
fn full(history: &mut VecDeque<Instant>, rate: Rate, now: Instant) -> Result<(), Option<f64>> {
    while history.back().is_some_and(|oldest| now.saturating_duration_since(*oldest) >= rate.period) {
        history.pop_back();
    }
    if history.len() >= rate.requests as usize {
        let remaining = match history.back() {
            Some(oldest) => rate.period.saturating_sub(now.saturating_duration_since(*oldest)),
            None => rate.period,
        };
        let available = i64::from(rate.requests) - history.len() as i64 + 1;
        return Err((available > 0).then(|| remaining.as_secs_f64() / available as f64));
    }
    Ok(())
}

/// Beyond DRF, `[throttle] failures`: failed logins are counted per client address (any
/// name) and per login name (from any address), and a login is refused before any argon2
/// work while either window is full. A flood against one name must not lock its owner
/// out: an address's refused attempts are not counted, so one address adds at most its
/// rate to a name's window, and a name's window holds `NAME_FACTOR` times the rate (no
/// single address can fill it); and an address that logged in as that name in the last
/// day is exempt from the name's window altogether (never from its own).
pub mod failures {
    use super::*;

    /// A name's window holds this many times the rate.
    pub const NAME_FACTOR: u32 = 5;

    /// How long a successful login exempts its address from the name's window.
    const KNOWN_FOR: Duration = Duration::from_secs(86_400);
    const KNOWN: usize = 100_000;

    fn known() -> &'static quick_cache::sync::Cache<(String, IpAddr), Instant> {
        static KNOWN_CACHE: OnceLock<quick_cache::sync::Cache<(String, IpAddr), Instant>> = OnceLock::new();
        KNOWN_CACHE.get_or_init(|| quick_cache::sync::Cache::new(KNOWN))
    }

    /// The address's window and the name's, each with its rate and whether it applies.
    fn windows_for(rate: Rate, address: IpAddr, login: &str) -> [(Window, Rate, bool); 2] {
        let exempt = known().get(&(login.to_owned(), address)).is_some_and(|at| at.elapsed() < KNOWN_FOR);
        let name_rate = Rate { requests: rate.requests.saturating_mul(NAME_FACTOR), ..rate };
        [
            (window(Arc::from("failures:address"), Who::Address(address)), rate, true),
            (window(Arc::from("failures:login"), Who::Login(login.to_owned())), name_rate, !exempt),
        ]
    }

    /// `Err(wait in whole seconds)` when a login as `login` from `address` must not be
    /// tried now.
    pub fn refused(rate: Rate, address: IpAddr, login: &str) -> Result<(), Option<u64>> {
        let now = Instant::now();
        let mut refusals = Refusals::default();
        for (window, rate, applies) in windows_for(rate, address, login) {
            if !applies {
                continue;
            }
            let mut history = window.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(wait) = full(&mut history, rate, now) {
                refusals.add(wait);
            }
        }
        refusals.result()
    }

    /// Counts a failed login.
    pub fn failed(rate: Rate, address: IpAddr, login: &str) {
        let now = Instant::now();
        for (window, rate, _) in windows_for(rate, address, login) {
            let mut history = window.lock().unwrap_or_else(|e| e.into_inner());
            history.push_front(now);
            history.truncate(rate.requests as usize);
        }
    }

    /// The shared windows' keys: the address's and the name's.
    pub(super) fn keys(address: IpAddr, login: &str) -> (String, String) {
        (format!("failures:address/{address}"), format!("failures:login/{login}"))
    }

    /// Remembers a successful login: its address is exempt from the name's window.
    pub fn succeeded(address: IpAddr, login: &str) {
        known().insert((login.to_owned(), address), Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_drf_parses_them() {
        let per_minute = Rate { requests: 100, period: Duration::from_secs(60) };
        assert_eq!("100/min".parse(), Ok(per_minute));
        assert_eq!("100/minute".parse(), Ok(per_minute));
        assert_eq!("100/m".parse(), Ok(per_minute));
        assert_eq!("5/day".parse::<Rate>().unwrap().period, Duration::from_secs(86400));
        assert_eq!("1/s".parse::<Rate>().unwrap().period, Duration::from_secs(1));
        assert!("100".parse::<Rate>().is_err());
        assert!("x/min".parse::<Rate>().is_err());
        assert!("100/week".parse::<Rate>().is_err());
    }

    #[test]
    fn a_full_window_waits_for_its_oldest_request() {
        let rate = Rate { requests: 2, period: Duration::from_secs(60) };
        let start = Instant::now();
        let mut history = VecDeque::new();
        assert_eq!(allow(&mut history, rate, start), Ok(()));
        assert_eq!(allow(&mut history, rate, start + Duration::from_secs(10)), Ok(()));
        // The oldest is 20 s old: 40 s left, one slot when it goes.
        let wait = allow(&mut history, rate, start + Duration::from_secs(20)).unwrap_err().unwrap();
        assert!((wait - 40.0).abs() < 1e-9, "{wait}");
        // Once the oldest has left the window, there is room again.
        assert_eq!(allow(&mut history, rate, start + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn failures_refuse_an_address_and_a_name_but_not_the_names_known_address() {
        let rate = Rate { requests: 2, period: Duration::from_secs(3600) };
        let owner: IpAddr = "198.51.100.200".parse().unwrap();
        let stranger: IpAddr = "198.51.100.201".parse().unwrap();
        failures::succeeded(owner, "carol-unit");
        // One address fills its own window, and only part of the name's.
        let attacker: IpAddr = "198.51.100.1".parse().unwrap();
        for _ in 0..2 {
            assert_eq!(failures::refused(rate, attacker, "carol-unit"), Ok(()));
            failures::failed(rate, attacker, "carol-unit");
        }
        let wait = failures::refused(rate, attacker, "carol-unit").unwrap_err().unwrap();
        assert!((3590..=3600).contains(&wait), "{wait}");
        assert!(failures::refused(rate, attacker, "someone-else").is_err(), "the address, for any name");
        assert_eq!(failures::refused(rate, stranger, "carol-unit"), Ok(()), "one address cannot lock a name");
        // Many addresses fill the name's window: a stranger is refused, the owner is not.
        for i in 2..=failures::NAME_FACTOR {
            let other: IpAddr = format!("198.51.100.{i}").parse().unwrap();
            for _ in 0..2 {
                failures::failed(rate, other, "carol-unit");
            }
        }
        assert!(failures::refused(rate, stranger, "carol-unit").is_err());
        assert_eq!(failures::refused(rate, owner, "carol-unit"), Ok(()));
    }

    #[test]
    fn anon_skips_authenticated_requests_and_user_counts_each_user() {
        let rate = Rate { requests: 1, period: Duration::from_secs(3600) };
        let anon = [Throttle { scope: Arc::from("anon-test"), kind: Kind::Anon, rate }];
        let ip: IpAddr = "192.0.2.77".parse().unwrap();
        assert_eq!(check(&anon, Some(1), ip), Ok(()));
        assert_eq!(check(&anon, Some(1), ip), Ok(()));
        assert_eq!(check(&anon, None, ip), Ok(()));
        assert!(check(&anon, None, ip).is_err());
        let user = [Throttle { scope: Arc::from("user-test"), kind: Kind::User, rate }];
        assert_eq!(check(&user, Some(7), ip), Ok(()));
        assert!(check(&user, Some(7), ip).is_err());
        assert_eq!(check(&user, Some(8), ip), Ok(()));
    }
}
