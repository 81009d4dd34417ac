//! Distinct members in a sliding window ("distinct patients per user per hour").
//!
//! Members are kept in recency order (an LRU list), each with the time it was last seen, so
//! expiry pops from the old end and a count is the list's length. A key holds at most
//! `max_members`; beyond that the oldest member is forgotten, so the count saturates there.

use std::num::NonZeroUsize;

use lru::LruCache;

pub(crate) struct DistinctWindow {
    members: LruCache<Box<str>, u64>,
}

impl DistinctWindow {
    pub(crate) fn new(max_members: NonZeroUsize) -> Self {
        DistinctWindow {
            members: LruCache::new(max_members),
        }
    }

    /// Records `member` at `now_ms`; returns how many members the window grew by (0 or 1)
    /// and how many it forgot to stay within capacity (0 or 1), for the caller's budget.
    pub(crate) fn add(&mut self, member: &str, now_ms: u64) -> (usize, usize) {
        if let Some(seen) = self.members.get_mut(member) {
            *seen = (*seen).max(now_ms);
            return (0, 0);
        }
        let evicted = self.members.push(member.into(), now_ms);
        // `push` returns the evicted entry when at capacity.
        (1, usize::from(evicted.is_some()))
    }

    /// Forgets members last seen at or before `now_ms - window_ms`; returns how many.
    pub(crate) fn expire(&mut self, window_ms: u64, now_ms: u64) -> usize {
        let cutoff = now_ms.saturating_sub(window_ms);
        let mut expired = 0;
        while let Some((_, &seen)) = self.members.peek_lru() {
            if seen > cutoff || now_ms < window_ms {
                break;
            }
            self.members.pop_lru();
            expired += 1;
        }
        expired
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(max: usize) -> DistinctWindow {
        DistinctWindow::new(NonZeroUsize::new(max).unwrap_or(NonZeroUsize::MIN))
    }

    #[test]
    fn counts_distinct_members_once() {
        let mut w = window(100);
        for patient in ["p1", "p2", "p1", "p3", "p2"] {
            w.add(patient, 1_000);
        }
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn members_leave_the_window_after_it_passes() {
        let hour = 3_600_000;
        let mut w = window(100);
        w.add("p1", hour);
        w.add("p2", hour + 10);
        w.expire(hour, 2 * hour);
        assert_eq!(w.len(), 1, "p1 was seen exactly one window ago");
        w.expire(hour, 2 * hour + 10);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn seeing_a_member_again_keeps_it_in_the_window() {
        let mut w = window(100);
        w.add("p1", 10);
        w.add("p2", 500);
        w.add("p1", 900);
        w.expire(1_000, 1_400);
        assert_eq!(w.len(), 2);
        w.expire(1_000, 1_600);
        assert_eq!(w.len(), 1, "p2 expired, p1 was refreshed at 900");
    }

    #[test]
    fn saturates_at_capacity() {
        let mut w = window(3);
        for i in 0..10 {
            w.add(&format!("p{i}"), i);
        }
        assert_eq!(w.len(), 3);
    }
}
