//! Distinct members in a sliding window ("distinct patients per user per hour").
//!
//! Members are kept in recency order (an LRU list), each with the time it was last seen, so
//! expiry pops from the old end and a count is the list's length. A key holds at most
//! `max_members`; beyond that the oldest member is forgotten, so the count saturates there.
//! A window allocates for the members it holds, not for `max_members`, and gives memory
//! back as its members expire.

use std::num::NonZeroUsize;

use super::table::LruTable;

pub(crate) struct DistinctWindow {
    members: LruTable<u64>,
}

impl DistinctWindow {
    pub(crate) fn new(max_members: NonZeroUsize) -> Self {
        DistinctWindow {
            members: LruTable::new(max_members),
        }
    }

    /// Records `member` at `now_ms`; returns how many members the window grew by (0 or 1)
    /// and how many it forgot to stay within capacity (0 or 1), for the caller's budget.
    pub(crate) fn add(&mut self, member: &str, now_ms: u64) -> (usize, usize) {
        if let Some(seen) = self.members.get_mut(member) {
            *seen = (*seen).max(now_ms);
            return (0, 0);
        }
        let evicted = self.members.insert(member, now_ms);
        (1, usize::from(evicted.is_some()))
    }

    /// Forgets members last seen at or before `now_ms - window_ms`; returns how many.
    pub(crate) fn expire(&mut self, window_ms: u64, now_ms: u64) -> usize {
        let cutoff = now_ms.saturating_sub(window_ms);
        let mut expired = 0;
        while let Some(&seen) = self.members.peek_lru() {
            if seen > cutoff || now_ms < window_ms {
                break;
            }
            self.members.pop_lru();
            expired += 1;
        }
        if expired > 0 {
            self.members.settle();
        }
        expired
    }

    /// Sets the most members the window keeps; returns how many of the oldest it forgot.
    pub(crate) fn set_max_members(&mut self, max_members: NonZeroUsize) -> usize {
        let mut forgotten = 0;
        self.members.set_cap(max_members, |_| forgotten += 1);
        forgotten
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// The heap bytes the window owns (its members), besides the window itself.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.members.heap_bytes()
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

    #[test]
    fn a_lower_cap_forgets_the_oldest() {
        let mut w = window(10);
        for i in 0..10 {
            w.add(&format!("p{i}"), i);
        }
        assert_eq!(w.set_max_members(NonZeroUsize::MIN.saturating_add(3)), 6);
        assert_eq!(w.len(), 4);
        w.expire(100, 107);
        assert_eq!(w.len(), 2, "p6 and p7 expired, p8 and p9 remain");
    }

    #[test]
    fn an_expired_window_gives_its_memory_back() {
        let mut w = window(1000);
        let empty = w.heap_bytes();
        for i in 0..1000 {
            w.add(&format!("p{i}"), i);
        }
        assert!(w.heap_bytes() > 1000 * 40);
        w.expire(10, 2000);
        assert_eq!(w.len(), 0);
        assert_eq!(w.heap_bytes(), empty);
    }
}
