//! Caches that a revocation cannot be undone in.
//!
//! Every answer the host caches was read from the store at some moment; a revocation
//! (logout, new password, deactivation, a change another process logged) happens at
//! another. The danger is an answer read *before* a revocation and put in the cache
//! *after* it: it would live for the cache's time. So every revocation ticks a clock, each
//! fill is stamped with the clock as it was *before* its store read, and an entry is
//! served only while no revocation of its user has ticked after its stamp.
//!
//! Revocations are kept per stripe of users (a keyed hash of the username picks one of
//! [`STRIPES`]), so revoking a user is two atomic writes, never a scan of the caches, and a
//! lookup is three atomic loads. A collision only costs another user one extra store read.
//! Order matters and is kept by the callers: the store change first, then the revocation.
//!
//! The caches themselves are bounded by entry count with per-entry eviction (quick_cache's
//! S3-FIFO: one-hit entries leave first, so a flood of new entries does not evict the
//! entries in use).

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// How many stripes users are spread over.
pub const STRIPES: usize = 4096;

/// The revocation clock and, per stripe of users, when it was last revoked.
#[derive(Debug)]
pub struct Revocations {
    clock: AtomicU64,
    /// Entries stamped before this are void: everything was revoked at once.
    floor: AtomicU64,
    stripes: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
}

/// The clock as it was before a store read: what a fill is stamped with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(u64);

/// The stripe a user's revocations are kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stripe(u16);

impl Default for Revocations {
    fn default() -> Self {
        Revocations {
            clock: AtomicU64::new(1),
            floor: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl Revocations {
    /// Read before the store is: a fill's answer is only as new as this.
    pub fn stamp(&self) -> Stamp {
        Stamp(self.clock.load(SeqCst))
    }

    pub fn stripe(&self, username: &str) -> Stripe {
        // STRIPES is a power of two no larger than u16's range.
        Stripe((self.hasher.hash_one(username) as usize % STRIPES) as u16)
    }

    /// Everything cached about `username` before now is void. Call after the store change.
    pub fn revoke_user(&self, username: &str) {
        let tick = self.clock.fetch_add(1, SeqCst) + 1;
        self.stripes[usize::from(self.stripe(username).0)].fetch_max(tick, SeqCst);
    }

    /// Everything cached before now is void.
    pub fn revoke_all(&self) {
        let tick = self.clock.fetch_add(1, SeqCst) + 1;
        self.floor.fetch_max(tick, SeqCst);
    }

    /// Whether an answer about a user of `stripe`, read after `stamp` was taken, still holds.
    pub fn holds(&self, stamp: Stamp, stripe: Stripe) -> bool {
        self.floor.load(SeqCst) <= stamp.0 && self.stripes[usize::from(stripe.0)].load(SeqCst) <= stamp.0
    }
}

#[derive(Debug, Clone)]
struct Entry<V> {
    value: V,
    expires: Instant,
    stamp: Stamp,
    stripe: Stripe,
}

/// A bounded map of answers, each expiring, each void once its user is revoked.
#[derive(Debug)]
pub struct Cache<K, V> {
    /// `None`: caching is off.
    entries: Option<quick_cache::sync::Cache<K, Entry<V>>>,
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    /// At most about `capacity` entries; 0 turns the cache off.
    pub fn new(capacity: usize) -> Self {
        Cache { entries: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)) }
    }

    /// The live, unrevoked entry for `key`.
    pub fn get<Q>(&self, key: &Q, revocations: &Revocations) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized + quick_cache::Equivalent<K>,
    {
        let entries = self.entries.as_ref()?;
        let entry = entries.get(key)?;
        if Instant::now() < entry.expires && revocations.holds(entry.stamp, entry.stripe) {
            return Some(entry.value);
        }
        // Expired or revoked: drop it, unless a newer fill already replaced it.
        entries.remove_if(key, |e| e.stamp == entry.stamp);
        None
    }

    /// Keeps `value` (about the user named `username`, read after `stamp` was taken) for
    /// `ttl`, unless the user was revoked since `stamp`: then it is not kept at all.
    pub fn put(
        &self,
        key: K,
        value: V,
        username: &str,
        stamp: Stamp,
        ttl: Duration,
        revocations: &Revocations,
    ) {
        let Some(entries) = self.entries.as_ref() else { return };
        let Some(expires) = Instant::now().checked_add(ttl).filter(|_| !ttl.is_zero()) else { return };
        let stripe = revocations.stripe(username);
        if revocations.holds(stamp, stripe) {
            entries.insert(key, Entry { value, expires, stamp, stripe });
        }
    }

    /// Frees every entry (they are already void when this is called after `revoke_all`).
    pub fn clear(&self) {
        if let Some(entries) = &self.entries {
            entries.clear();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, quick_cache::sync::Cache::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_fill_read_before_a_revocation_is_never_served() {
        let revocations = Revocations::default();
        let cache = Cache::new(100);
        let before = revocations.stamp();
        // The store read happens here; the user is revoked meanwhile.
        revocations.revoke_user("alice");
        cache.put("k", 1, "alice", before, MINUTE, &revocations);
        assert!(cache.get("k", &revocations).is_none());
        // Put before the revocation, then revoked: void from then on.
        let stamp = revocations.stamp();
        cache.put("k", 2, "alice", stamp, MINUTE, &revocations);
        assert_eq!(cache.get("k", &revocations), Some(2));
        revocations.revoke_user("alice");
        assert!(cache.get("k", &revocations).is_none());
        // Read after the revocation: cached.
        let after = revocations.stamp();
        cache.put("k", 3, "alice", after, MINUTE, &revocations);
        assert_eq!(cache.get("k", &revocations), Some(3));
    }

    #[test]
    fn revoking_one_user_leaves_the_others_and_revoke_all_clears_everyone() {
        let revocations = Revocations::default();
        let cache = Cache::new(100);
        let stamp = revocations.stamp();
        // Find a name in another stripe than alice's.
        let other =
            (0..).map(|i| format!("user{i}")).find(|n| revocations.stripe(n) != revocations.stripe("alice"));
        let other = other.unwrap_or_default();
        cache.put("a", 1, "alice", stamp, MINUTE, &revocations);
        cache.put("b", 2, &other, stamp, MINUTE, &revocations);
        revocations.revoke_user("alice");
        assert!(cache.get("a", &revocations).is_none());
        assert_eq!(cache.get("b", &revocations), Some(2));
        revocations.revoke_all();
        assert!(cache.get("b", &revocations).is_none());
    }

    #[test]
    fn entries_expire_and_a_zero_or_huge_ttl_or_capacity_keeps_nothing() {
        let revocations = Revocations::default();
        let cache = Cache::new(100);
        cache.put("k", 1, "alice", revocations.stamp(), Duration::ZERO, &revocations);
        cache.put("h", 1, "alice", revocations.stamp(), Duration::MAX, &revocations);
        assert_eq!(cache.len(), 0);
        cache.put("k", 1, "alice", revocations.stamp(), Duration::from_nanos(1), &revocations);
        let deadline = Instant::now() + Duration::from_secs(1);
        while cache.get("k", &revocations).is_some() {
            assert!(Instant::now() < deadline, "the entry never expired");
        }
        let off = Cache::new(0);
        off.put("k", 1, "alice", revocations.stamp(), MINUTE, &revocations);
        assert!(off.get("k", &revocations).is_none());
    }
}
