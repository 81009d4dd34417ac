//! A counting global allocator for the unit tests, so the state's byte estimates can be
//! checked against what it really allocates.
//!
//! Counting is per thread and off until a test starts a [`Count`], so the other tests of
//! the binary run as before. Bytes are counted as requested and as glibc's malloc lays
//! them out (see [`footprint::allocation`]).

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use super::footprint;

struct Counting;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static REQUESTED: Cell<isize> = const { Cell::new(0) };
    static CHUNKED: Cell<isize> = const { Cell::new(0) };
}

fn record(size: usize, sign: isize) {
    // `try_with`: a thread being torn down may still free memory.
    let active = ACTIVE.try_with(Cell::get).unwrap_or(false);
    if !active {
        return;
    }
    let requested = sign * size as isize;
    let chunked = sign * footprint::allocation(size) as isize;
    let _ = REQUESTED.try_with(|bytes| bytes.set(bytes.get() + requested));
    let _ = CHUNKED.try_with(|bytes| bytes.set(bytes.get() + chunked));
}

// SAFETY: every call is forwarded to the system allocator unchanged; counting only reads
// the layouts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `layout` are passed on.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            record(layout.size(), 1);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            record(layout.size(), 1);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a block this allocator (so the system's) returned.
        unsafe { System.dealloc(ptr, layout) };
        record(layout.size(), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc` and `alloc`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            record(layout.size(), -1);
            record(new_size, 1);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Live bytes allocated by this thread since a [`Count`] started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Live {
    /// As requested from the allocator.
    pub(crate) requested: isize,
    /// As glibc's malloc lays the requests out.
    pub(crate) chunked: isize,
}

/// Counts this thread's allocations until dropped.
pub(crate) struct Count(());

impl Count {
    pub(crate) fn start() -> Count {
        REQUESTED.with(|bytes| bytes.set(0));
        CHUNKED.with(|bytes| bytes.set(0));
        ACTIVE.with(|active| active.set(true));
        Count(())
    }

    pub(crate) fn live(&self) -> Live {
        Live {
            requested: REQUESTED.with(Cell::get),
            chunked: CHUNKED.with(Cell::get),
        }
    }
}

impl Drop for Count {
    fn drop(&mut self) {
        ACTIVE.with(|active| active.set(false));
    }
}
