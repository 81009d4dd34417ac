//! A string-keyed LRU table whose capacity is enforced here rather than by the `lru` crate,
//! so nothing is allocated ahead of use, and which keeps what its byte estimate needs.
//!
//! `lru::LruCache::new(cap)` sizes its index for `cap` entries up front; this table starts
//! from an unbounded, empty cache and evicts the least recently used entry itself when an
//! insert finds it full, which is the same eviction order. The index never shrinks on its
//! own, so the table records the most entries it has held since the index was allocated
//! (`peak`) and rebuilds the cache when it falls below half of that, or when its capacity
//! is lowered.

use std::num::NonZeroUsize;

use lru::LruCache;

use super::footprint;

pub(crate) struct LruTable<V> {
    entries: LruCache<Box<str>, V>,
    cap: NonZeroUsize,
    /// The most entries held since `entries` was allocated; its index is sized for these.
    peak: usize,
    /// The heap bytes of the keys held.
    key_bytes: usize,
}

impl<V> LruTable<V> {
    pub(crate) fn new(cap: NonZeroUsize) -> Self {
        LruTable {
            entries: LruCache::unbounded(),
            cap,
            peak: 0,
            key_bytes: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn cap(&self) -> NonZeroUsize {
        self.cap
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.entries.contains(key)
    }

    /// The entry under `key`, marked most recently used.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.entries.get_mut(key)
    }

    /// Inserts `value` under `key` as the most recently used entry and returns the value
    /// that left the table: the one `key` held, or else, when the table is full, the least
    /// recently used entry that made room.
    pub(crate) fn insert(&mut self, key: &str, value: V) -> Option<V> {
        if let Some(slot) = self.entries.get_mut(key) {
            return Some(std::mem::replace(slot, value));
        }
        let evicted = if self.entries.len() >= self.cap.get() {
            self.pop_lru()
        } else {
            None
        };
        self.key_bytes += footprint::key(key.len());
        self.entries.push(key.into(), value);
        self.peak = self.peak.max(self.entries.len());
        evicted
    }

    /// The least recently used entry, without touching it.
    pub(crate) fn peek_lru(&self) -> Option<&V> {
        self.entries.peek_lru().map(|(_, value)| value)
    }

    /// Removes the least recently used entry. Call [`LruTable::settle`] once done removing.
    pub(crate) fn pop_lru(&mut self) -> Option<V> {
        let (key, value) = self.entries.pop_lru()?;
        self.key_bytes -= footprint::key(key.len());
        Some(value)
    }

    /// Every entry, in no particular order, without touching their recency.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().map(|(_, value)| value)
    }

    /// Sets the capacity; a lower one evicts least recently used entries, each passed to
    /// `evicted`.
    pub(crate) fn set_cap(&mut self, cap: NonZeroUsize, mut evicted: impl FnMut(V)) {
        self.cap = cap;
        while self.entries.len() > cap.get() {
            match self.pop_lru() {
                Some(value) => evicted(value),
                None => break,
            }
        }
        if self.peak > cap.get() {
            self.rebuild();
        }
        self.settle();
    }

    /// Releases the index when fewer than half of the entries it was sized for remain.
    /// Rebuilding costs one move per entry kept, fewer than were removed since the index
    /// was last sized, so it adds a constant to each removal.
    pub(crate) fn settle(&mut self) {
        if self.entries.len() * 2 < self.peak {
            self.rebuild();
        }
    }

    /// Moves the entries into a fresh cache, keeping their order.
    fn rebuild(&mut self) {
        let mut fresh = LruCache::unbounded();
        while let Some((key, value)) = self.entries.pop_lru() {
            fresh.push(key, value);
        }
        self.entries = fresh;
        self.peak = self.entries.len();
    }

    /// The heap bytes held by the table: its sentinels, its index, its nodes and its keys,
    /// but not what the values own.
    pub(crate) fn heap_bytes(&self) -> usize {
        footprint::sentinels::<V>()
            + footprint::index(self.peak)
            + self.entries.len() * footprint::node::<V>()
            + self.key_bytes
    }

    /// The heap bytes of a full table whose keys average `key_len` bytes, values' own
    /// heap excluded.
    pub(crate) fn max_heap_bytes(cap: NonZeroUsize, key_len: usize) -> usize {
        footprint::sentinels::<V>()
            .saturating_add(footprint::index(cap.get()))
            .saturating_add(
                cap.get()
                    .saturating_mul(footprint::node::<V>() + footprint::key(key_len)),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
    }

    #[test]
    fn evicts_the_least_recently_used_when_full() {
        let mut table = LruTable::new(cap(2));
        assert_eq!(table.insert("a", 1), None);
        assert_eq!(table.insert("b", 2), None);
        assert_eq!(table.get_mut("a").copied(), Some(1));
        assert_eq!(table.insert("c", 3), Some(2), "b was least recently used");
        assert!(table.contains("a") && table.contains("c") && !table.contains("b"));
    }

    #[test]
    fn a_lower_cap_evicts_oldest_first_and_keeps_order() {
        let mut table = LruTable::new(cap(10));
        for (i, key) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            table.insert(key, i);
        }
        let mut evicted = Vec::new();
        table.set_cap(cap(2), |value| evicted.push(value));
        assert_eq!(evicted, vec![0, 1, 2]);
        assert_eq!(table.peek_lru().copied(), Some(3));
        assert_eq!(table.insert("f", 5), Some(3));
    }

    #[test]
    fn key_bytes_follow_the_keys_held() {
        let mut table = LruTable::new(cap(2));
        let empty = table.heap_bytes();
        table.insert("a", 0u64);
        table.insert("b", 0u64);
        table.insert("c", 0u64);
        assert_eq!(table.key_bytes, 2 * footprint::key(1));
        while table.pop_lru().is_some() {}
        table.settle();
        assert_eq!(
            table.heap_bytes(),
            empty,
            "an emptied table releases its index"
        );
    }
}
