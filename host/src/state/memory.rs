//! The in-process state backend: three LRU tables (buckets, distinct windows, counters),
//! each with a capacity, plus a budget on the members held by all distinct windows.
//!
//! Tables allocate as they fill, never ahead of use, and can be resized while in use. Each
//! state reports its entries and an estimate of the heap bytes it holds ([`StateStats`]).

use std::mem::size_of;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};

use super::batch::{check_take_all, refused_all};
use super::bucket::TokenBucket;
use super::counter::SlidingCounter;
use super::distinct::DistinctWindow;
use super::footprint;
use super::table::LruTable;
use super::{
    BucketSpec, BucketStatus, StateBackend, StateError, check_key, check_member, check_window,
};

/// Capacities of the in-memory tables.
///
/// Nothing is allocated ahead of use: memory grows with the keys in use, up to these
/// capacities. On 64-bit Linux with glibc's malloc, a state's heap is estimated as
///
/// ```text
///     buckets       × (96 B + key)   + index(buckets)
///   + counters      × (320 B + key)  + index(counters)
///   + distinct_keys × (224 B + key)  + index(distinct_keys)
///   + members       × (48 B + member + window index, at most 156 B)
///
///   index(n) = 17 B × slots + 16 B, slots = the power of two of at least 16 n / 7 (and 4)
///   key, member: n bytes take n + 8 rounded up to 16, at least 32 (64 B -> 80 B, 32 B -> 48 B)
/// ```
///
/// - Each entry is a node holding the key's pointer, the value and two list pointers: 96 B
///   for a bucket, 320 B for a counter, 128 B for a window plus 96 B for the two empty
///   nodes its member list starts with, 48 B for a member. Stored keys are the guest's key
///   behind the module's name and a slash.
/// - An index slot holds a key pointer, a node pointer and a control byte. An index fills
///   to 7/8 before it doubles, and may double once more as removed entries leave
///   tombstones, hence `16 n / 7`: 39 to 78 B per entry.
/// - A window's index is sized for the most members it held since it was last rebuilt, and
///   is rebuilt when fewer than half remain: at most 2 × 78 B per member held (68 B per
///   member in a full window of 1024).
/// - `members` is at most `distinct_member_budget`, or one full window if that is larger.
///
/// [`StateStats::estimated_bytes`] applies this to the entries held, each index at the
/// size its peak may have reached, with the keys' real lengths.
/// [`MemoryStateLimits::max_estimated_bytes`] applies it to full tables, with keys of
/// [`MemoryStateLimits::ASSUMED_KEY_BYTES`] (64) and members of
/// [`MemoryStateLimits::ASSUMED_MEMBER_BYTES`] (32) on average, and the worst window
/// indexes: about 338 MB for the defaults (22 MB of buckets, 44 MB of counters, 17 MB of
/// windows, 254 MB of members). Not counted: the allocator's fragmentation and page
/// rounding, and the old index a growing table holds while it moves its entries.
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

impl MemoryStateLimits {
    /// The average stored key [`MemoryStateLimits::max_estimated_bytes`] assumes: a guest's
    /// key behind its module's name and a slash.
    pub const ASSUMED_KEY_BYTES: usize = 64;

    /// The average distinct member [`MemoryStateLimits::max_estimated_bytes`] assumes.
    pub const ASSUMED_MEMBER_BYTES: usize = 32;

    /// The most members all distinct windows can hold together: the budget, or one full
    /// window when that is larger, and never more than every window full.
    pub fn max_distinct_members(&self) -> usize {
        self.distinct_member_budget
            .get()
            .max(self.distinct_members_per_key.get())
            .min(
                self.distinct_keys
                    .get()
                    .saturating_mul(self.distinct_members_per_key.get()),
            )
    }

    /// The estimated heap bytes of a state with every table full, keys averaging
    /// [`MemoryStateLimits::ASSUMED_KEY_BYTES`] and members
    /// [`MemoryStateLimits::ASSUMED_MEMBER_BYTES`] (see the formula above).
    pub fn max_estimated_bytes(&self) -> usize {
        self.estimated_bytes_with(Self::ASSUMED_KEY_BYTES, Self::ASSUMED_MEMBER_BYTES)
    }

    /// [`MemoryStateLimits::max_estimated_bytes`] for keys averaging `key_bytes` and members
    /// averaging `member_bytes`.
    pub fn estimated_bytes_with(&self, key_bytes: usize, member_bytes: usize) -> usize {
        let windows = self.distinct_keys;
        let members = self.max_distinct_members();
        // Every window's index is sized for at most twice the members it holds (it is
        // rebuilt below half) and never for more than a full window.
        let member_indexes =
            footprint::indexes_bound(members.saturating_mul(2), windows.get().min(members)).min(
                windows
                    .get()
                    .min(members)
                    .saturating_mul(footprint::index(self.distinct_members_per_key.get())),
            );
        STATE_BYTES
            .saturating_add(LruTable::<TokenBucket>::max_heap_bytes(
                self.buckets,
                key_bytes,
            ))
            .saturating_add(LruTable::<SlidingCounter>::max_heap_bytes(
                self.counters,
                key_bytes,
            ))
            .saturating_add(LruTable::<DistinctWindow>::max_heap_bytes(
                windows, key_bytes,
            ))
            .saturating_add(windows.get().saturating_mul(EMPTY_WINDOW_BYTES))
            .saturating_add(members.saturating_mul(
                footprint::node::<u64>().saturating_add(footprint::key(member_bytes)),
            ))
            .saturating_add(member_indexes)
    }
}

/// What limits allow that an operator probably did not mean, one sentence each.
pub fn limits_problems(limits: &MemoryStateLimits) -> Vec<String> {
    let mut problems = Vec::new();
    if limits.distinct_member_budget < limits.distinct_members_per_key {
        problems.push(format!(
            "distinct_member_budget ({}) is below distinct_members_per_key ({}): one window \
             alone may hold more members than the budget",
            limits.distinct_member_budget, limits.distinct_members_per_key
        ));
    }
    if limits.max_estimated_bytes() == usize::MAX {
        problems.push("the state's memory at these capacities overflows any machine".into());
    }
    problems
}

/// The heap bytes of a [`MemoryState`] behind an `Arc`, besides its tables.
const STATE_BYTES: usize = footprint::allocation(size_of::<MemoryState>() + 2 * size_of::<usize>());

/// The heap bytes of a distinct window with no members (its sentinels).
const EMPTY_WINDOW_BYTES: usize = footprint::sentinels::<u64>();

fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// Entries, capacities and estimated heap bytes of one [`MemoryState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateStats {
    /// Token buckets held.
    pub buckets: usize,
    /// Windowed counters held.
    pub counters: usize,
    /// Distinct windows held.
    pub distinct_windows: usize,
    /// Members held by all distinct windows together.
    pub distinct_members: usize,
    /// The capacities the state is held to.
    pub limits: MemoryStateLimits,
    /// The heap bytes the state holds now, from its entries and the bytes of its keys
    /// (see [`MemoryStateLimits`] for the formula).
    pub estimated_bytes: usize,
    /// [`MemoryStateLimits::max_estimated_bytes`] of `limits`.
    pub max_estimated_bytes: usize,
}

struct DistinctTable {
    windows: LruTable<DistinctWindow>,
    members_per_key: NonZeroUsize,
    member_budget: NonZeroUsize,
    /// Members held by all windows.
    members: usize,
    /// Heap bytes owned by all windows (their members), kept up to date with every change.
    window_bytes: usize,
}

impl DistinctTable {
    /// Accounts for a window that left the table.
    fn dropped(&mut self, window: &DistinctWindow) {
        self.members -= window.len();
        self.window_bytes -= window.heap_bytes();
    }

    /// Drops whole least-recently-used windows while the members exceed the budget, never
    /// the last window (the one just used sits at the fresh end).
    fn apply_budget(&mut self) {
        let mut dropped = false;
        while self.members > self.member_budget.get() && self.windows.len() > 1 {
            let Some(window) = self.windows.pop_lru() else {
                break;
            };
            self.dropped(&window);
            dropped = true;
        }
        if dropped {
            self.windows.settle();
        }
    }
}

/// The default, single-process backend.
pub struct MemoryState {
    buckets: Mutex<LruTable<TokenBucket>>,
    counters: Mutex<LruTable<SlidingCounter>>,
    distinct: Mutex<DistinctTable>,
}

impl MemoryState {
    pub fn new(limits: MemoryStateLimits) -> Self {
        MemoryState {
            buckets: Mutex::new(LruTable::new(limits.buckets)),
            counters: Mutex::new(LruTable::new(limits.counters)),
            distinct: Mutex::new(DistinctTable {
                windows: LruTable::new(limits.distinct_keys),
                members_per_key: limits.distinct_members_per_key,
                member_budget: limits.distinct_member_budget,
                members: 0,
                window_bytes: 0,
            }),
        }
    }

    /// The capacities the state is held to.
    pub fn limits(&self) -> MemoryStateLimits {
        let distinct = lock(&self.distinct);
        MemoryStateLimits {
            buckets: lock(&self.buckets).cap(),
            counters: lock(&self.counters).cap(),
            distinct_keys: distinct.windows.cap(),
            distinct_members_per_key: distinct.members_per_key,
            distinct_member_budget: distinct.member_budget,
        }
    }

    /// Holds the state to new capacities, keeping its entries. Lower capacities evict least
    /// recently used entries; a lower `distinct_members_per_key` makes every window forget
    /// its oldest members beyond it; the member budget is then applied again.
    pub fn resize(&self, limits: MemoryStateLimits) {
        lock(&self.buckets).set_cap(limits.buckets, drop);
        lock(&self.counters).set_cap(limits.counters, drop);
        let mut guard = lock(&self.distinct);
        let table = &mut *guard;
        let (mut members, mut bytes) = (0, 0);
        table.windows.set_cap(limits.distinct_keys, |window| {
            members += window.len();
            bytes += window.heap_bytes();
        });
        table.members -= members;
        table.window_bytes -= bytes;
        if limits.distinct_members_per_key != table.members_per_key {
            let (mut forgotten, mut before, mut after) = (0, 0, 0);
            for window in table.windows.values_mut() {
                before += window.heap_bytes();
                forgotten += window.set_max_members(limits.distinct_members_per_key);
                after += window.heap_bytes();
            }
            table.members -= forgotten;
            table.window_bytes = table.window_bytes - before + after;
        }
        table.members_per_key = limits.distinct_members_per_key;
        table.member_budget = limits.distinct_member_budget;
        table.apply_budget();
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

    /// Entries, capacities and estimated heap bytes.
    pub fn stats(&self) -> StateStats {
        let (buckets, buckets_cap, buckets_bytes) = {
            let table = lock(&self.buckets);
            (table.len(), table.cap(), table.heap_bytes())
        };
        let (counters, counters_cap, counters_bytes) = {
            let table = lock(&self.counters);
            (table.len(), table.cap(), table.heap_bytes())
        };
        let distinct = lock(&self.distinct);
        let limits = MemoryStateLimits {
            buckets: buckets_cap,
            counters: counters_cap,
            distinct_keys: distinct.windows.cap(),
            distinct_members_per_key: distinct.members_per_key,
            distinct_member_budget: distinct.member_budget,
        };
        StateStats {
            buckets,
            counters,
            distinct_windows: distinct.windows.len(),
            distinct_members: distinct.members,
            limits,
            estimated_bytes: STATE_BYTES
                + buckets_bytes
                + counters_bytes
                + distinct.windows.heap_bytes()
                + distinct.window_bytes,
            max_estimated_bytes: limits.max_estimated_bytes(),
        }
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
        buckets.insert(key, bucket);
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
            let window = DistinctWindow::new(table.members_per_key);
            table.window_bytes += window.heap_bytes();
            if let Some(dropped) = table.windows.insert(key, window) {
                table.dropped(&dropped);
            }
        }
        let Some(window) = table.windows.get_mut(key) else {
            return Err(StateError::Unavailable("distinct window vanished".into()));
        };
        let before = window.heap_bytes();
        let expired = window.expire(window_ms, now_ms);
        let (added, forgotten) = window.add(member, now_ms);
        let count = window.len();
        let after = window.heap_bytes();
        table.members = table.members + added - expired - forgotten;
        table.window_bytes = table.window_bytes - before + after;
        table.apply_budget();
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
        let before = window.heap_bytes();
        table.members -= window.expire(window_ms, now_ms);
        table.window_bytes = table.window_bytes - before + window.heap_bytes();
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
        counters.insert(key, counter);
        Ok(total)
    }

    fn take_all(
        &self,
        buckets: &[(String, BucketSpec)],
        cost: u64,
        now_ms: u64,
    ) -> Result<Vec<BucketStatus>, StateError> {
        check_take_all(buckets)?;
        // One lock for the check and the takes: no other request sees a bucket in between.
        let mut table = lock(&self.buckets);
        let trial: Vec<BucketStatus> = buckets
            .iter()
            .map(|(key, spec)| match table.get_mut(key) {
                Some(bucket) => bucket.peek(*spec, cost, now_ms),
                None => TokenBucket::new(*spec, now_ms).peek(*spec, cost, now_ms),
            })
            .collect();
        if !trial.iter().all(|status| status.allowed) {
            return Ok(refused_all(trial));
        }
        let mut taken = Vec::with_capacity(buckets.len());
        for (key, spec) in buckets {
            let status = match table.get_mut(key) {
                Some(bucket) => bucket.take(*spec, cost, now_ms),
                None => {
                    let mut bucket = TokenBucket::new(*spec, now_ms);
                    let status = bucket.take(*spec, cost, now_ms);
                    table.insert(key, bucket);
                    status
                }
            };
            taken.push(status);
        }
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::state::counting_alloc::{Count, Live};

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

    fn limits(
        buckets: usize,
        counters: usize,
        distinct_keys: usize,
        per_key: usize,
        budget: usize,
    ) -> MemoryStateLimits {
        MemoryStateLimits {
            buckets: nonzero(buckets),
            counters: nonzero(counters),
            distinct_keys: nonzero(distinct_keys),
            distinct_members_per_key: nonzero(per_key),
            distinct_member_budget: nonzero(budget),
        }
    }

    /// The bytes really allocated, as requested and as malloc lays them out (what the model
    /// counts), stay within the estimate, which stays within the maximum.
    fn assert_within(live: Live, stats: &StateStats) {
        assert!(live.requested >= 0, "{live:?}");
        assert!(live.requested <= live.chunked, "{live:?}");
        assert!(
            live.chunked as usize <= stats.estimated_bytes,
            "{live:?} above the estimate: {stats:?}"
        );
        assert!(
            stats.estimated_bytes <= stats.max_estimated_bytes,
            "{stats:?}"
        );
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn the_documented_figures_hold() {
        assert_eq!(footprint::node::<TokenBucket>(), 96);
        assert_eq!(footprint::node::<SlidingCounter>(), 320);
        assert_eq!(
            footprint::node::<DistinctWindow>() + EMPTY_WINDOW_BYTES,
            224
        );
        assert_eq!(footprint::node::<u64>(), 48);
        assert_eq!(footprint::key(MemoryStateLimits::ASSUMED_KEY_BYTES), 80);
        assert_eq!(footprint::key(MemoryStateLimits::ASSUMED_MEMBER_BYTES), 48);
        let max = MemoryStateLimits::default().max_estimated_bytes();
        assert!((330_000_000..345_000_000).contains(&max), "{max}");
    }

    #[test]
    fn nothing_is_allocated_ahead() {
        let count = Count::start();
        let state = Arc::new(MemoryState::default());
        let empty = count.live();
        assert!(empty.chunked < 2048, "{empty:?}");
        assert_eq!(empty.chunked as usize, state.stats().estimated_bytes);
        state.distinct_add("anomaly/u", "p", 1_000, 0).ok();
        let one_window = count.live().chunked - empty.chunked;
        assert!(
            one_window < 1024,
            "a window allocates for one member: {one_window} B"
        );
        assert_within(count.live(), &state.stats());
    }

    #[test]
    fn a_full_state_stays_within_its_estimate() {
        let count = Count::start();
        let state = Arc::new(MemoryState::new(limits(2000, 2000, 500, 64, 5000)));
        // Three times the capacity, with keys and members of the assumed lengths, so the
        // tables churn at capacity.
        for i in 0..6000u64 {
            let key = format!("rate-limit/{i:053}");
            state.take(&key, SPEC, 1, i).ok();
            state.counter_add(&key, 1, 60_000, i).ok();
        }
        for i in 0..60_000u64 {
            let key = format!("anomaly/{:056}", i % 450);
            let member = format!("{i:032}");
            state.distinct_add(&key, &member, 3_600_000, i).ok();
        }
        let stats = state.stats();
        assert_eq!((stats.buckets, stats.counters), (2000, 2000));
        assert!(
            (4900..=5000).contains(&stats.distinct_members),
            "the member budget is full: {stats:?}"
        );
        let live = count.live();
        assert_within(live, &stats);
        assert!(
            stats.estimated_bytes <= live.chunked as usize / 2 * 3,
            "the estimate is close to what is held: {live:?} {stats:?}"
        );
    }

    #[test]
    fn one_key_flooded_with_members_stays_within_its_estimate() {
        let count = Count::start();
        let state = Arc::new(MemoryState::default());
        for i in 0..100_000u64 {
            state
                .distinct_add("anomaly/insider", &format!("patient-{i:024}"), 3_600_000, i)
                .ok();
        }
        let stats = state.stats();
        assert_eq!(stats.distinct_members, 1024);
        assert_within(count.live(), &stats);
        assert!(stats.estimated_bytes < 256 * 1024, "{stats:?}");
        // Once its members expire, the window gives the memory back.
        assert_eq!(
            state.distinct_count("anomaly/insider", 3_600_000, 10 * 3_600_000),
            Ok(0)
        );
        let stats = state.stats();
        assert_within(count.live(), &stats);
        assert!(stats.estimated_bytes < 2048, "{stats:?}");
    }

    #[test]
    fn windows_whose_members_expired_do_not_keep_their_size() {
        let count = Count::start();
        let state = Arc::new(MemoryState::default());
        for user in 0..100u64 {
            for patient in 0..1024u64 {
                state
                    .distinct_add(
                        &format!("anomaly/u{user}"),
                        &format!("p{patient}"),
                        1_000,
                        0,
                    )
                    .ok();
            }
        }
        for user in 0..100u64 {
            state
                .distinct_add(&format!("anomaly/u{user}"), "p", 1_000, 5_000)
                .ok();
        }
        let stats = state.stats();
        assert_eq!((stats.distinct_windows, stats.distinct_members), (100, 100));
        assert_within(count.live(), &stats);
        assert!(stats.estimated_bytes < 100 * 1024, "{stats:?}");
    }

    #[test]
    fn resizing_down_evicts_the_least_recently_used_and_frees_memory() {
        let count = Count::start();
        let state = Arc::new(small());
        for i in 0..1000u64 {
            state.take(&format!("k{i}"), SPEC, 5, 0).ok();
            state.counter_add(&format!("k{i}"), 1, 60_000, 0).ok();
        }
        for user in 0..10u64 {
            for patient in 0..50u64 {
                state
                    .distinct_add(&format!("u{user}"), &format!("p{patient}"), 3_600_000, user)
                    .ok();
            }
        }
        let before = state.stats();
        let smaller = limits(100, 100, 5, 20, 60);
        state.resize(smaller);
        let stats = state.stats();
        assert_eq!(stats.limits, smaller);
        assert_eq!(
            (stats.buckets, stats.counters, stats.distinct_windows),
            (100, 100, 3),
            "five windows of 20 members are over the budget of 60"
        );
        assert_eq!(stats.distinct_members, 60);
        assert_eq!(state.take("k999", SPEC, 1, 0).map(|s| s.allowed), Ok(false));
        assert_eq!(state.take("k0", SPEC, 1, 0).map(|s| s.allowed), Ok(true));
        assert_eq!(state.distinct_count("u9", 3_600_000, 10), Ok(20));
        assert_eq!(state.distinct_count("u6", 3_600_000, 10), Ok(0));
        let stats = state.stats();
        assert_within(count.live(), &stats);
        assert!(
            stats.estimated_bytes < before.estimated_bytes / 5,
            "{before:?} {stats:?}"
        );
    }

    #[test]
    fn resizing_up_keeps_every_entry() {
        let state = small();
        for _ in 0..5 {
            state.take("a", SPEC, 1, 0).ok();
        }
        state.distinct_add("u", "p1", 3_600_000, 0).ok();
        state.resize(MemoryStateLimits::default());
        assert_eq!(state.take("a", SPEC, 1, 0).map(|s| s.allowed), Ok(false));
        assert_eq!(state.distinct_count("u", 3_600_000, 0), Ok(1));
        assert_eq!(state.stats().limits, MemoryStateLimits::default());
    }

    #[test]
    fn limits_that_defeat_the_budget_are_reported() {
        assert!(limits_problems(&MemoryStateLimits::default()).is_empty());
        let problems = limits_problems(&limits(10, 10, 10, 100, 50));
        assert_eq!(problems.len(), 1, "{problems:?}");
    }
}
