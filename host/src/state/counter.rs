//! A counter over a sliding window, in sixteen slots.
//!
//! The window is cut into 16 slots of `window_ms / 16`; a total sums the slots that fall in
//! the last window, so it may include up to one slot's worth of older counts. Sixteen slots
//! keep the error under 6.25% of the window with 256 bytes per key.

pub(crate) const SLOTS: usize = 16;

#[derive(Debug, Clone)]
pub(crate) struct SlidingCounter {
    window_ms: u64,
    slot_ms: u64,
    counts: [u64; SLOTS],
    /// The absolute slot number each entry of `counts` belongs to.
    slot_numbers: [u64; SLOTS],
}

impl SlidingCounter {
    pub(crate) fn new(window_ms: u64) -> Self {
        SlidingCounter {
            window_ms,
            slot_ms: (window_ms / SLOTS as u64).max(1),
            counts: [0; SLOTS],
            slot_numbers: [u64::MAX; SLOTS],
        }
    }

    /// Adds `amount` at `now_ms` and returns the window's total. A different `window_ms`
    /// than the counter was made with starts it afresh.
    pub(crate) fn add(&mut self, amount: u64, window_ms: u64, now_ms: u64) -> u64 {
        if window_ms != self.window_ms {
            *self = SlidingCounter::new(window_ms);
        }
        let current = now_ms / self.slot_ms;
        let index = (current % SLOTS as u64) as usize;
        if self.slot_numbers[index] != current {
            self.slot_numbers[index] = current;
            self.counts[index] = 0;
        }
        self.counts[index] = self.counts[index].saturating_add(amount);
        self.total(current)
    }

    fn total(&self, current: u64) -> u64 {
        // Windows shorter than 16 ms have 1 ms slots and span fewer than 16 of them.
        let slots_in_window = (self.window_ms / self.slot_ms).clamp(1, SLOTS as u64);
        let oldest = current.saturating_sub(slots_in_window - 1);
        self.slot_numbers
            .iter()
            .zip(self.counts.iter())
            .filter(|(number, _)| **number != u64::MAX && **number >= oldest && **number <= current)
            .fold(0u64, |sum, (_, count)| sum.saturating_add(*count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_within_the_window_and_forgets_after_it() {
        let mut c = SlidingCounter::new(1_600);
        assert_eq!(c.add(1, 1_600, 0), 1);
        assert_eq!(c.add(2, 1_600, 750), 3);
        assert_eq!(c.add(1, 1_600, 1_599), 4);
        // Slot 0 (0..100 ms) leaves the window once slot 16 begins.
        assert_eq!(c.add(0, 1_600, 1_600), 3);
        assert_eq!(c.add(0, 1_600, 2_350), 1, "the 750 ms slot has left too");
        assert_eq!(c.add(0, 1_600, 10_000), 0);
    }

    #[test]
    fn a_changed_window_starts_afresh() {
        let mut c = SlidingCounter::new(1_000);
        c.add(5, 1_000, 10);
        assert_eq!(c.add(1, 2_000, 20), 1);
    }

    #[test]
    fn tiny_windows_still_work() {
        let mut c = SlidingCounter::new(3);
        assert_eq!(c.add(1, 3, 0), 1);
        assert_eq!(c.add(1, 3, 1), 2);
        assert_eq!(c.add(1, 3, 100), 1);
    }
}
