//! One in-memory state per policy module, so a module that floods its tables evicts only
//! its own keys.
//!
//! The gateway's `[state]` table gives the totals. A module the operator gave limits of its
//! own gets those; every other module gets an even share of the totals: each table's
//! capacity and the member budget divided by the number of such modules (at least 1 each).
//! `distinct_members_per_key` is per window and is not divided. Without explicit limits the
//! partitions therefore add up to the totals.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{MemoryState, MemoryStateLimits, StateHandle, StateProvider, StateStats};

/// The per-module partitions of the gateway's state.
pub struct MemoryPartitions {
    inner: RwLock<Inner>,
}

struct Inner {
    totals: MemoryStateLimits,
    partitions: BTreeMap<String, Partition>,
}

struct Partition {
    state: Arc<MemoryState>,
    /// The operator's limits for the module; `None` takes an even share of the totals.
    explicit: Option<MemoryStateLimits>,
}

/// `totals` divided evenly among `shares` modules; `distinct_members_per_key` is kept.
pub fn even_share(totals: &MemoryStateLimits, shares: usize) -> MemoryStateLimits {
    let shares = shares.max(1);
    let divide = |n: NonZeroUsize| NonZeroUsize::new(n.get() / shares).unwrap_or(NonZeroUsize::MIN);
    MemoryStateLimits {
        buckets: divide(totals.buckets),
        counters: divide(totals.counters),
        distinct_keys: divide(totals.distinct_keys),
        distinct_members_per_key: totals.distinct_members_per_key,
        distinct_member_budget: divide(totals.distinct_member_budget),
    }
}

impl Inner {
    fn shared(&self) -> usize {
        self.partitions
            .values()
            .filter(|partition| partition.explicit.is_none())
            .count()
    }
}

impl MemoryPartitions {
    /// No partitions yet; `totals` is the gateway's `[state]` table.
    pub fn new(totals: MemoryStateLimits) -> Self {
        MemoryPartitions {
            inner: RwLock::new(Inner {
                totals,
                partitions: BTreeMap::new(),
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The totals the shares are cut from.
    pub fn totals(&self) -> MemoryStateLimits {
        self.read().totals
    }

    /// Partitions exactly `modules` (each module's name and the operator's limits for it,
    /// if any), at start and on every reload. A module already partitioned keeps its
    /// entries and is resized; the partitions of modules no longer listed are dropped.
    pub fn configure(&self, modules: &[(String, Option<MemoryStateLimits>)]) {
        let totals = self.totals();
        self.configure_with_totals(totals, modules);
    }

    /// [`MemoryPartitions::configure`] with new totals, for a reload that changed the
    /// `[state]` table.
    pub fn configure_with_totals(
        &self,
        totals: MemoryStateLimits,
        modules: &[(String, Option<MemoryStateLimits>)],
    ) {
        // A module listed twice takes its last limits.
        let listed: BTreeMap<&str, Option<MemoryStateLimits>> = modules
            .iter()
            .map(|(name, explicit)| (name.as_str(), *explicit))
            .collect();
        let shared = listed
            .values()
            .filter(|explicit| explicit.is_none())
            .count();
        let share = even_share(&totals, shared);
        let mut inner = self.write();
        inner.totals = totals;
        let mut previous = std::mem::take(&mut inner.partitions);
        inner.partitions = listed
            .into_iter()
            .map(|(name, explicit)| {
                let limits = explicit.unwrap_or(share);
                let state = match previous.remove(name) {
                    Some(partition) => {
                        partition.state.resize(limits);
                        partition.state
                    }
                    None => Arc::new(MemoryState::new(limits)),
                };
                (name.to_owned(), Partition { state, explicit })
            })
            .collect();
        drop(inner);
        // The partitions of modules no longer listed are freed outside the lock.
        drop(previous);
    }

    /// The partition of `module`. A module that was not configured gets a new partition
    /// with the share it would have if it were added; the others keep theirs until the next
    /// [`configure`](Self::configure) (a reload that fails to load must not shrink, and so
    /// evict, the running modules' state).
    pub fn partition(&self, module: &str) -> Arc<MemoryState> {
        if let Some(partition) = self.read().partitions.get(module) {
            return partition.state.clone();
        }
        let mut inner = self.write();
        if let Some(partition) = inner.partitions.get(module) {
            return partition.state.clone();
        }
        let share = even_share(&inner.totals, inner.shared() + 1);
        let state = Arc::new(MemoryState::new(share));
        inner.partitions.insert(
            module.to_owned(),
            Partition {
                state: state.clone(),
                explicit: None,
            },
        );
        state
    }

    /// Each partition's entries, capacities and estimated bytes, by module name.
    pub fn stats(&self) -> Vec<(String, StateStats)> {
        let partitions: Vec<(String, Arc<MemoryState>)> = self
            .read()
            .partitions
            .iter()
            .map(|(name, partition)| (name.clone(), partition.state.clone()))
            .collect();
        partitions
            .into_iter()
            .map(|(name, state)| (name, state.stats()))
            .collect()
    }
}

impl Default for MemoryPartitions {
    fn default() -> Self {
        MemoryPartitions::new(MemoryStateLimits::default())
    }
}

/// Each module's state is its own partition.
impl StateProvider for MemoryPartitions {
    fn partition(self: Arc<Self>, module: &str) -> StateHandle {
        StateHandle::Local(MemoryPartitions::partition(&self, module))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BucketSpec, StateBackend};
    use super::*;

    fn nonzero(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
    }

    fn totals() -> MemoryStateLimits {
        MemoryStateLimits {
            buckets: nonzero(3000),
            counters: nonzero(3000),
            distinct_keys: nonzero(300),
            distinct_members_per_key: nonzero(100),
            distinct_member_budget: nonzero(3000),
        }
    }

    fn modules(names: &[&str]) -> Vec<(String, Option<MemoryStateLimits>)> {
        names
            .iter()
            .map(|name| ((*name).to_owned(), None))
            .collect()
    }

    const SPEC: BucketSpec = BucketSpec {
        capacity: 5,
        refill_tokens: 1,
        refill_period_ms: 60_000,
    };

    fn allowed(state: &dyn StateBackend, key: &str) -> bool {
        state
            .take(key, SPEC, 1, 0)
            .map(|status| status.allowed)
            .unwrap_or(false)
    }

    #[test]
    fn a_flooding_module_never_evicts_another_modules_bucket() {
        let partitions = MemoryPartitions::default();
        partitions.configure(&modules(&["rate-limit", "anomaly"]));
        let limiter = partitions.partition("rate-limit");
        for _ in 0..5 {
            assert!(allowed(&*limiter, "rate-limit/user:alice"));
        }
        assert!(!allowed(&*limiter, "rate-limit/user:alice"));
        let flooder = partitions.partition("anomaly");
        for i in 0..1_000_000u64 {
            flooder.take(&format!("anomaly/k{i}"), SPEC, 1, 0).ok();
        }
        assert_eq!(
            flooder.sizes().0,
            50_000,
            "the flooder fills only its own share"
        );
        assert!(
            !allowed(&*limiter, "rate-limit/user:alice"),
            "alice's empty bucket survived the flood"
        );
    }

    #[test]
    fn shares_divide_the_totals_among_modules_without_limits() {
        let partitions = MemoryPartitions::new(totals());
        let own = MemoryStateLimits {
            buckets: nonzero(7),
            ..totals()
        };
        let mut listed = modules(&["a", "b", "c"]);
        listed.push(("d".to_owned(), Some(own)));
        partitions.configure(&listed);
        let stats = partitions.stats();
        let names: Vec<&str> = stats.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        let share = MemoryStateLimits {
            buckets: nonzero(1000),
            counters: nonzero(1000),
            distinct_keys: nonzero(100),
            distinct_members_per_key: nonzero(100),
            distinct_member_budget: nonzero(1000),
        };
        for (_, stats) in &stats[..3] {
            assert_eq!(stats.limits, share);
        }
        assert_eq!(stats[3].1.limits, own);
    }

    #[test]
    fn a_share_is_at_least_one_of_each() {
        let tiny = MemoryStateLimits {
            buckets: nonzero(2),
            ..totals()
        };
        assert_eq!(even_share(&tiny, 5).buckets, nonzero(1));
        assert_eq!(even_share(&tiny, 0), tiny);
    }

    #[test]
    fn by_default_the_partitions_add_up_to_the_totals() {
        let partitions = MemoryPartitions::default();
        partitions.configure(&modules(&["a", "b", "c", "d"]));
        let sum = partitions
            .stats()
            .iter()
            .fold(0, |sum, (_, stats)| sum + stats.limits.buckets.get());
        assert_eq!(sum, 100_000);
    }

    #[test]
    fn reconfiguring_keeps_entries_and_drops_unlisted_modules() {
        let partitions = MemoryPartitions::new(totals());
        partitions.configure(&modules(&["a", "b"]));
        let a = partitions.partition("a");
        for _ in 0..5 {
            assert!(allowed(&*a, "a/k"));
        }
        a.distinct_add("a/u", "p1", 3_600_000, 0).ok();
        partitions.partition("b").take("b/k", SPEC, 1, 0).ok();

        partitions.configure(&modules(&["a", "c"]));
        let names: Vec<String> = partitions
            .stats()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["a", "c"]);
        let a_again = partitions.partition("a");
        assert!(Arc::ptr_eq(&a, &a_again), "the same partition, not a copy");
        assert!(!allowed(&*a_again, "a/k"), "the bucket is still empty");
        assert_eq!(a_again.distinct_count("a/u", 3_600_000, 0), Ok(1));
        assert_eq!(partitions.partition("c").sizes(), (0, 0, 0, 0));
        assert_eq!(a_again.stats().limits, even_share(&totals(), 2));

        // b was dropped: configured again it starts empty.
        partitions.configure(&modules(&["a", "b", "c"]));
        assert_eq!(partitions.partition("b").sizes(), (0, 0, 0, 0));
        assert_eq!(a.stats().limits, even_share(&totals(), 3));
    }

    #[test]
    fn new_totals_resize_the_shares() {
        let partitions = MemoryPartitions::new(totals());
        partitions.configure(&modules(&["a"]));
        let doubled = MemoryStateLimits {
            buckets: nonzero(6000),
            ..totals()
        };
        partitions.configure_with_totals(doubled, &modules(&["a"]));
        assert_eq!(partitions.totals(), doubled);
        assert_eq!(partitions.partition("a").stats().limits, doubled);
    }

    #[test]
    fn an_unconfigured_module_gets_a_share() {
        let partitions = MemoryPartitions::new(totals());
        let a = partitions.partition("a");
        assert_eq!(a.stats().limits, totals());
        let b = partitions.partition("b");
        assert_eq!(b.stats().limits, even_share(&totals(), 2));
        assert_eq!(
            a.stats().limits,
            totals(),
            "a keeps its share until configured"
        );
        assert!(Arc::ptr_eq(&b, &partitions.partition("b")));
        partitions.configure(&modules(&["a", "b"]));
        assert_eq!(a.stats().limits, even_share(&totals(), 2));
    }

    #[test]
    fn the_partitions_memory_stays_within_their_totals_estimate() {
        let partitions = MemoryPartitions::new(totals());
        partitions.configure(&modules(&["a", "b", "c"]));
        for module in ["a", "b", "c"] {
            let partition = partitions.partition(module);
            for i in 0..5000u64 {
                let key = format!("{module}/{i}");
                partition.take(&key, SPEC, 1, 0).ok();
                partition.counter_add(&key, 1, 1_000, 0).ok();
                partition
                    .distinct_add(&format!("{module}/{}", i % 150), &i.to_string(), 1_000, 0)
                    .ok();
            }
        }
        let stats = partitions.stats();
        let used: usize = stats.iter().map(|(_, s)| s.estimated_bytes).sum();
        let max: usize = stats.iter().map(|(_, s)| s.max_estimated_bytes).sum();
        assert!(used <= max, "{used} > {max}");
        for (_, stats) in &stats {
            assert_eq!((stats.buckets, stats.counters), (1000, 1000));
            assert!(stats.distinct_members <= 1000);
        }
    }
}
