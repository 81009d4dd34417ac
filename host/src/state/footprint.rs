//! The memory cost model behind the state's byte estimates: what an LRU entry, a stored key
//! and a hash table take on the heap.
//!
//! The figures come from the layouts of the `lru` and `hashbrown` crates: an `lru` entry is a
//! separately allocated node holding the key, the value and two list pointers; the `lru`
//! index is a `hashbrown` table whose slots hold a pointer to the node's key and a pointer to
//! the node (16 bytes on 64-bit targets) plus one control byte, with at most 7/8 of the slots
//! in use and the slot count a power of two; every `lru` cache also allocates two empty
//! sentinel nodes. Allocations are counted as glibc's malloc lays them out: the request plus
//! an 8-byte header, rounded up to 16 bytes, at least 32. The unit tests in `memory.rs`
//! check the model against a counting allocator.

use std::mem::size_of;

/// Bytes of one `hashbrown` slot of an `lru` index: a key pointer and a node pointer.
const SLOT_BYTES: usize = 2 * size_of::<usize>();

/// Control bytes `hashbrown` allocates past the last slot (one SSE2 group).
const GROUP_BYTES: usize = 16;

/// The heap bytes of one allocation of `request` bytes, as glibc's malloc lays it out.
pub(crate) const fn allocation(request: usize) -> usize {
    if request == 0 {
        return 0;
    }
    let chunk = request.saturating_add(8 + 15) & !15;
    if chunk < 32 { 32 } else { chunk }
}

/// The heap bytes of one `lru` node holding a `Box<str>` key and a `V`.
pub(crate) const fn node<V>() -> usize {
    allocation(size_of::<(Box<str>, V, usize, usize)>())
}

/// The heap bytes of a stored key of `len` bytes.
pub(crate) const fn key(len: usize) -> usize {
    allocation(len)
}

/// The two sentinel nodes every `lru` cache allocates.
pub(crate) const fn sentinels<V>() -> usize {
    2 * node::<V>()
}

/// Entries a `hashbrown` table of `slots` slots holds before it grows.
const fn capacity(slots: usize) -> usize {
    if slots <= 8 {
        slots.saturating_sub(1)
    } else {
        slots / 8 * 7
    }
}

/// The most slots an `lru` index may have after holding at most `peak` entries since it was
/// allocated empty.
///
/// A table grows by doubling when an insert finds no free slot and more than half of its
/// capacity would be in use; that happens when it is full, but also when removed entries
/// left tombstones, so a table that churns near its peak may double once more than its
/// entries need.
pub(crate) const fn slots(peak: usize) -> usize {
    if peak == 0 {
        return 0;
    }
    let mut slots = 4usize;
    while peak > capacity(slots) / 2 {
        slots = slots.saturating_mul(2);
        if slots == usize::MAX {
            break;
        }
    }
    slots
}

/// The heap bytes of an `lru` index that has held at most `peak` entries.
pub(crate) const fn index(peak: usize) -> usize {
    let slots = slots(peak);
    if slots == 0 {
        return 0;
    }
    allocation(
        slots
            .saturating_mul(SLOT_BYTES + 1)
            .saturating_add(GROUP_BYTES),
    )
}

/// An upper bound of the summed [`index`] of `tables` indexes whose peaks add up to at most
/// `total_peak`, from a bound linear in the peak: `slots(peak) <= 32 * peak / 7`.
pub(crate) const fn indexes_bound(total_peak: usize, tables: usize) -> usize {
    (total_peak.saturating_mul(32 * (SLOT_BYTES + 1)) / 7)
        .saturating_add(tables.saturating_mul(INDEX_BOUND_SLACK))
}

/// The constant part of [`indexes_bound`] per table: the rounding of the slope, the
/// control group and malloc's rounding.
const INDEX_BOUND_SLACK: usize = 1 + GROUP_BYTES + 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_round_like_glibc() {
        assert_eq!(allocation(0), 0);
        assert_eq!(allocation(1), 32);
        assert_eq!(allocation(24), 32);
        assert_eq!(allocation(25), 48);
        assert_eq!(allocation(40), 48);
        assert_eq!(allocation(80), 96);
    }

    #[test]
    fn slots_follow_hashbrown_growth() {
        assert_eq!(slots(0), 0);
        assert_eq!(slots(1), 4);
        assert_eq!(slots(2), 8);
        assert_eq!(slots(3), 8);
        assert_eq!(slots(7), 16);
        // 1024 entries fit 2048 slots (capacity 1792), but past 896 a tombstone can make
        // the table double.
        assert_eq!(slots(896), 2048);
        assert_eq!(slots(897), 4096);
        assert_eq!(slots(1024), 4096);
    }

    #[test]
    fn the_linear_bound_holds() {
        for peak in 1..(1usize << 20) {
            assert!(
                index(peak) <= indexes_bound(peak, 1),
                "peak {peak}: {} > {}",
                index(peak),
                indexes_bound(peak, 1)
            );
        }
    }
}
