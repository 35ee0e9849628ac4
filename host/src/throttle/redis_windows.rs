//! Throttle windows in Redis (`[throttle] url = "redis://HOST:PORT/DB"`): every host
//! pointed at the same Redis counts in the same windows. A window is a sorted set of
//! request times (milliseconds, by Redis's clock) under `authhost:throttle:<key>`; each
//! check is one Lua script, so one round trip, atomic on the server, and the connection
//! is redis-rs's multiplexed one, which pipelines the checks of concurrent requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{Admitted, FailureCheck, Rate, SharedWindows};
use crate::error::Error;

/// Where the password comes from when the server needs one (never from the URL).
pub const PASSWORD_ENV: &str = "AUTHHOST_THROTTLE_PASSWORD";

/// Keys are `PREFIX` + the window's key, so that authhost shares a Redis with others.
const PREFIX: &str = "authhost:throttle:";

/// DRF's `allow_request` and `wait` on one window, for a batch of requests in a row.
/// ARGV: period in ms, requests allowed, how many ask, a member prefix unique to the
/// batch. Returns how many (from the first) are allowed and recorded, and DRF's wait for
/// the rest as a string ("-1": none; false when every one is allowed).
const THROTTLE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[1])
local allowed = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
local n = redis.call('ZCARD', KEYS[1])
local admit = math.max(0, math.min(count, allowed - n))
if admit > 0 then
  local args = {}
  for i = 1, admit do
    args[#args + 1] = now
    args[#args + 1] = ARGV[4] .. '.' .. i
  end
  redis.call('ZADD', KEYS[1], unpack(args))
  redis.call('PEXPIRE', KEYS[1], period)
end
if admit == count then return { admit, false } end
n = n + admit
if allowed - n + 1 <= 0 then return { admit, '-1' } end
local remaining = period
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
if oldest then remaining = period - (now - tonumber(oldest)) end
return { admit, tostring(remaining / 1000 / (allowed - n + 1)) }
";

/// `[throttle] failures` without counting. KEYS: the address's window, the name's, the
/// known (login, address) marker. ARGV: period in ms, the address's allowance, the
/// name's. Returns the two windows' waits (false: not full; "-1": full with no wait).
const FAILURES_PEEK: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[1])
local function peek(key, allowed)
  local n = redis.call('ZCOUNT', key, '(' .. (now - period), '+inf')
  if n < allowed then return false end
  if allowed - n + 1 <= 0 then return '-1' end
  local remaining = period
  local oldest = redis.call('ZRANGEBYSCORE', key, '(' .. (now - period), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)[2]
  if oldest then remaining = period - (now - tonumber(oldest)) end
  return tostring(remaining / 1000 / (allowed - n + 1))
end
local by_address = peek(KEYS[1], tonumber(ARGV[2]))
local by_name = false
if redis.call('EXISTS', KEYS[3]) == 0 then by_name = peek(KEYS[2], tonumber(ARGV[3])) end
return { by_address, by_name }
";

/// Counts a failed login in each window of KEYS. ARGV: period in ms, a unique member.
const FAILURE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - period)
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('PEXPIRE', key, period)
end
return 1
";

/// How long a successful login exempts its address from the name's failure window.
const KNOWN_FOR_MS: u64 = 86_400_000;

/// The shared windows in one Redis.
pub struct RedisWindows {
    client: redis::Client,
    /// Made on first use, inside the runtime; it reconnects by itself after a failure.
    connection: OnceCell<ConnectionManager>,
    /// Each call's bound: `[store] busy_timeout`.
    timeout: Duration,
    /// The URL as messages may show it.
    shown: String,
    /// Makes each recorded request a distinct member of its window.
    nonce: u64,
    sequence: AtomicU64,
    scripts: Scripts,
}

struct Scripts {
    throttle: redis::Script,
    peek: redis::Script,
    failure: redis::Script,
}

impl std::fmt::Debug for RedisWindows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisWindows").field("url", &self.shown).finish_non_exhaustive()
    }
}

impl RedisWindows {
    /// Checks the URL and that the server answers (PING, within `timeout`), so that a
    /// wrong url fails at load naming the key, not at the first throttled request.
    pub fn open(url: &str, password: Option<&str>, timeout: Duration) -> Result<RedisWindows, Error> {
        let shown = crate::store::redacted(url);
        let info: redis::ConnectionInfo = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|e| Error::config(format!("throttle.url {shown:?} is not a Redis URL: {e}")))?;
        if info.redis_settings().password().is_some() {
            return Err(Error::config(format!(
                "throttle.url {shown:?}: put the password in ${PASSWORD_ENV} or [throttle] password_file, never in the url"
            )));
        }
        let settings = info.redis_settings().clone().set_lib_name("authhost", env!("CARGO_PKG_VERSION"));
        let settings = match password {
            Some(password) => settings.set_password(password),
            None => settings,
        };
        let info = info.set_redis_settings(settings);
        let client =
            redis::Client::open(info).map_err(|e| Error::config(format!("throttle.url {shown:?}: {e}")))?;
        let mut probe = client
            .get_connection_with_timeout(timeout)
            .map_err(|e| Error::config(format!("throttle.url {shown:?}: Redis does not answer: {e}")))?;
        redis::cmd("PING")
            .query::<String>(&mut probe)
            .map_err(|e| Error::config(format!("throttle.url {shown:?}: Redis refused PING: {e}")))?;
        let mut nonce = [0u8; 8];
        argon2::password_hash::rand_core::RngCore::fill_bytes(
            &mut argon2::password_hash::rand_core::OsRng,
            &mut nonce,
        );
        Ok(RedisWindows {
            client,
            connection: OnceCell::new(),
            timeout,
            shown,
            nonce: u64::from_le_bytes(nonce),
            sequence: AtomicU64::new(0),
            scripts: Scripts {
                throttle: redis::Script::new(THROTTLE),
                peek: redis::Script::new(FAILURES_PEEK),
                failure: redis::Script::new(FAILURE),
            },
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, Error> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(self.timeout);
        let connection = self
            .connection
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .map_err(|e| self.unavailable(&e))?;
        Ok(connection.clone())
    }

    fn unavailable(&self, err: &redis::RedisError) -> Error {
        Error::unavailable(format!("{}: the throttle store does not answer: {err}", self.shown))
    }

    /// A member no other request of any host uses: this host's nonce and a count.
    fn member(&self) -> String {
        format!("{:016x}.{}", self.nonce, self.sequence.fetch_add(1, Ordering::Relaxed))
    }

    /// Runs `invocation` within the timeout; a late or failed answer is the 503 kind.
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, Error> {
        let mut connection = self.connection().await?;
        self.bounded(invocation.invoke_async(&mut connection)).await
    }

    /// `call` within the timeout; a late or failed answer is the 503 kind.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.unavailable(&e)),
            Err(_) => Err(Error::unavailable(format!("{}: no answer within busy_timeout", self.shown))),
        }
    }
}

/// A script's wait: None when the window is not full, Some(None) when full with no wait.
fn wait(answer: Option<String>) -> Option<Option<f64>> {
    answer.map(|w| w.parse::<f64>().ok().filter(|w| *w >= 0.0))
}

fn millis(period: Duration) -> u64 {
    u64::try_from(period.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl SharedWindows for RedisWindows {
    async fn throttle(&self, key: &str, rate: Rate, count: u32) -> Result<Admitted, Error> {
        let mut invocation = self.scripts.throttle.prepare_invoke();
        invocation
            .key(format!("{PREFIX}{key}"))
            .arg(millis(rate.period))
            .arg(rate.requests)
            .arg(count)
            .arg(self.member());
        let (admitted, refused): (u32, Option<String>) = self.run(invocation).await?;
        Ok(Admitted { admitted, wait: wait(refused).flatten() })
    }

    async fn failures_refused(&self, check: &FailureCheck<'_>) -> Result<Option<Option<f64>>, Error> {
        let mut invocation = self.scripts.peek.prepare_invoke();
        invocation
            .key(format!("{PREFIX}{}", check.address_key))
            .key(format!("{PREFIX}{}", check.name_key))
            .key(known_key(check.login, check.address))
            .arg(millis(check.period))
            .arg(check.allowed)
            .arg(check.name_allowed);
        let (by_address, by_name): (Option<String>, Option<String>) = self.run(invocation).await?;
        let waits = [wait(by_address), wait(by_name)];
        if waits.iter().all(Option::is_none) {
            return Ok(None);
        }
        // DRF's longest wait; none only when no full window has one.
        Ok(Some(waits.into_iter().flatten().flatten().reduce(f64::max)))
    }

    async fn failure(&self, keys: &[&str], period: Duration) -> Result<(), Error> {
        let mut invocation = self.scripts.failure.prepare_invoke();
        for key in keys {
            invocation.key(format!("{PREFIX}{key}"));
        }
        invocation.arg(millis(period)).arg(self.member());
        self.run::<i64>(invocation).await.map(drop)
    }

    async fn login_known(&self, login: &str, address: &str) -> Result<(), Error> {
        let mut connection = self.connection().await?;
        let mut command = redis::cmd("SET");
        command.arg(known_key(login, address)).arg(1).arg("PX").arg(KNOWN_FOR_MS);
        self.bounded(command.query_async::<()>(&mut connection)).await
    }
}

/// The marker that `address` logged in as `login`; the login is length-prefixed so that
/// no name can make another pair's key.
fn known_key(login: &str, address: &str) -> String {
    format!("{PREFIX}known:{}:{login}:{address}", login.len())
}
