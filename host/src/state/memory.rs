//! The in-process state backend: three LRU tables (buckets, distinct windows, counters),
//! each with a fixed capacity, plus a budget on the members held by all distinct windows.

use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};

use lru::LruCache;

use super::bucket::TokenBucket;
use super::counter::SlidingCounter;
use super::distinct::DistinctWindow;
use super::{
    BucketSpec, BucketStatus, StateBackend, StateError, check_key, check_member, check_window,
};

/// Capacities of the in-memory tables. Memory use is bounded by roughly
/// `buckets * 100 B + counters * 300 B + distinct_member_budget * 120 B` plus key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryStateLimits {
    /// Token buckets kept (one per key, for example per client, user or address).
    pub buckets: NonZeroUsize,
    /// Windowed counters kept.
    pub counters: NonZeroUsize,
    /// Distinct-member windows kept (one per key, for example per user).
    pub distinct_keys: NonZeroUsize,
    /// Members one distinct window keeps before forgetting its oldest.
    pub distinct_members_per_key: NonZeroUsize,
    /// Members all distinct windows keep together; past it the least recently used
    /// windows are dropped whole.
    pub distinct_member_budget: NonZeroUsize,
}

impl Default for MemoryStateLimits {
    fn default() -> Self {
        MemoryStateLimits {
            buckets: nonzero(100_000),
            counters: nonzero(100_000),
            distinct_keys: nonzero(50_000),
            distinct_members_per_key: nonzero(1024),
            distinct_member_budget: nonzero(1_000_000),
        }
    }
}

fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

struct DistinctTable {
    windows: LruCache<Box<str>, DistinctWindow>,
    members: usize,
}

/// The default, single-process backend.
pub struct MemoryState {
    limits: MemoryStateLimits,
    buckets: Mutex<LruCache<Box<str>, TokenBucket>>,
    counters: Mutex<LruCache<Box<str>, SlidingCounter>>,
    distinct: Mutex<DistinctTable>,
}

impl MemoryState {
    pub fn new(limits: MemoryStateLimits) -> Self {
        MemoryState {
            limits,
            buckets: Mutex::new(LruCache::new(limits.buckets)),
            counters: Mutex::new(LruCache::new(limits.counters)),
            distinct: Mutex::new(DistinctTable {
                windows: LruCache::new(limits.distinct_keys),
                members: 0,
            }),
        }
    }

    /// Keys held per table: (buckets, counters, distinct windows, distinct members).
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        let distinct = lock(&self.distinct);
        (
            lock(&self.buckets).len(),
            lock(&self.counters).len(),
            distinct.windows.len(),
            distinct.members,
        )
    }
}

impl Default for MemoryState {
    fn default() -> Self {
        MemoryState::new(MemoryStateLimits::default())
    }
}

/// The tables hold plain data that every operation leaves consistent, so a panic elsewhere
/// while the lock was held (there is no code that can panic inside) cannot corrupt them.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl StateBackend for MemoryState {
    fn take(
        &self,
        key: &str,
        spec: BucketSpec,
        cost: u64,
        now_ms: u64,
    ) -> Result<BucketStatus, StateError> {
        check_key(key)?;
        spec.validate().map_err(StateError::InvalidArgument)?;
        let mut buckets = lock(&self.buckets);
        if let Some(bucket) = buckets.get_mut(key) {
            return Ok(bucket.take(spec, cost, now_ms));
        }
        let mut bucket = TokenBucket::new(spec, now_ms);
        let status = bucket.take(spec, cost, now_ms);
        buckets.push(key.into(), bucket);
        Ok(status)
    }

    fn distinct_add(
        &self,
        key: &str,
        member: &str,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<u32, StateError> {
        check_key(key)?;
        check_member(member)?;
        check_window(window_ms)?;
        let mut guard = lock(&self.distinct);
        let table = &mut *guard;
        if !table.windows.contains(key) {
            let window = DistinctWindow::new(self.limits.distinct_members_per_key);
            if let Some((_, dropped)) = table.windows.push(key.into(), window) {
                table.members -= dropped.len();
            }
        }
        let Some(window) = table.windows.get_mut(key) else {
            return Err(StateError::Unavailable("distinct window vanished".into()));
        };
        let expired = window.expire(window_ms, now_ms);
        let (added, forgotten) = window.add(member, now_ms);
        let count = window.len();
        table.members = table.members + added - expired - forgotten;
        // Over the global budget: drop whole least-recently-used windows (never this one,
        // which was just used and sits at the fresh end).
        while table.members > self.limits.distinct_member_budget.get() && table.windows.len() > 1 {
            match table.windows.pop_lru() {
                Some((_, dropped)) => table.members -= dropped.len(),
                None => break,
            }
        }
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    fn distinct_count(&self, key: &str, window_ms: u64, now_ms: u64) -> Result<u32, StateError> {
        check_key(key)?;
        check_window(window_ms)?;
        let mut guard = lock(&self.distinct);
        let table = &mut *guard;
        let Some(window) = table.windows.get_mut(key) else {
            return Ok(0);
        };
        table.members -= window.expire(window_ms, now_ms);
        Ok(u32::try_from(window.len()).unwrap_or(u32::MAX))
    }

    fn counter_add(
        &self,
        key: &str,
        amount: u64,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<u64, StateError> {
        check_key(key)?;
        check_window(window_ms)?;
        let mut counters = lock(&self.counters);
        if let Some(counter) = counters.get_mut(key) {
            return Ok(counter.add(amount, window_ms, now_ms));
        }
        let mut counter = SlidingCounter::new(window_ms);
        let total = counter.add(amount, window_ms, now_ms);
        counters.push(key.into(), counter);
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> MemoryState {
        MemoryState::new(MemoryStateLimits {
            buckets: nonzero(1000),
            counters: nonzero(1000),
            distinct_keys: nonzero(100),
            distinct_members_per_key: nonzero(50),
            distinct_member_budget: nonzero(500),
        })
    }

    const SPEC: BucketSpec = BucketSpec {
        capacity: 5,
        refill_tokens: 1,
        refill_period_ms: 1000,
    };

    #[test]
    fn a_million_rotating_keys_stay_within_capacity() {
        let state = small();
        for i in 0..1_000_000u64 {
            let key = format!("client-{i}");
            state.take(&key, SPEC, 1, i).ok();
            state.counter_add(&key, 1, 60_000, i).ok();
            state
                .distinct_add(&key, &format!("patient-{}", i % 7), 3_600_000, i)
                .ok();
        }
        let (buckets, counters, windows, members) = state.sizes();
        assert_eq!(buckets, 1000);
        assert_eq!(counters, 1000);
        assert_eq!(windows, 100);
        assert!(members <= 500, "{members} members held");
    }

    #[test]
    fn one_key_with_endless_members_stays_within_its_cap() {
        let state = small();
        for i in 0..10_000u64 {
            state
                .distinct_add("insider", &format!("patient-{i}"), 3_600_000, i)
                .ok();
        }
        assert_eq!(state.distinct_count("insider", 3_600_000, 10_000), Ok(50));
        assert_eq!(state.sizes().3, 50);
    }

    #[test]
    fn the_member_budget_drops_old_windows_whole() {
        let state = small();
        for user in 0..20u64 {
            for patient in 0..50u64 {
                state
                    .distinct_add(&format!("u{user}"), &format!("p{patient}"), 3_600_000, user)
                    .ok();
            }
        }
        let (_, _, windows, members) = state.sizes();
        assert_eq!(members, 500);
        assert_eq!(windows, 10);
        assert_eq!(
            state.distinct_count("u0", 3_600_000, 20),
            Ok(0),
            "oldest user dropped"
        );
        assert_eq!(state.distinct_count("u19", 3_600_000, 20), Ok(50));
    }

    #[test]
    fn distinct_counts_slide_with_the_window() {
        let state = small();
        let hour = 3_600_000;
        assert_eq!(state.distinct_add("u", "p1", hour, 0), Ok(1));
        assert_eq!(state.distinct_add("u", "p2", hour, 1_000), Ok(2));
        assert_eq!(state.distinct_add("u", "p1", hour, 2_000), Ok(2));
        assert_eq!(state.distinct_count("u", hour, hour + 1_500), Ok(1));
        assert_eq!(state.distinct_count("u", hour, hour + 2_000), Ok(0));
        assert_eq!(state.sizes().3, 0, "expired members leave the budget");
    }

    #[test]
    fn buckets_are_per_key() {
        let state = small();
        for _ in 0..5 {
            assert!(
                state
                    .take("a", SPEC, 1, 0)
                    .map(|s| s.allowed)
                    .unwrap_or(false)
            );
        }
        assert_eq!(state.take("a", SPEC, 1, 0).map(|s| s.allowed), Ok(false));
        assert_eq!(state.take("b", SPEC, 1, 0).map(|s| s.allowed), Ok(true));
    }

    #[test]
    fn bad_arguments_are_refused() {
        let state = small();
        let long = "k".repeat(600);
        assert_eq!(
            state.take(&long, SPEC, 1, 0),
            Err(StateError::KeyTooLong { len: 600, max: 512 })
        );
        let zero = BucketSpec {
            capacity: 0,
            ..SPEC
        };
        assert!(state.take("k", zero, 1, 0).is_err());
        assert!(state.counter_add("k", 1, 0, 0).is_err());
        assert!(state.distinct_add("k", &long, 10, 0).is_err());
    }
}
