//! A guest call's own running time: the CPU time of the engine threads while they poll the
//! call, not the wall-clock time the call has been around. A module's deadline counts only
//! this, so a call that waited for a core on a busy machine is not stopped for it, and a
//! module that loops is stopped after `deadline_ms` of its own work however busy the machine.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};

/// CPU time consumed by the calling thread so far, in nanoseconds. `CLOCK_THREAD_CPUTIME_ID`
/// counts only time the thread was on a core (POSIX clock_getres(3); Linux
/// `clock_gettime(2)`): time the scheduler gave to other threads is not in it.
pub(crate) fn thread_cpu_ns() -> u64 {
    let now = clock_gettime(ClockId::ThreadCPUTime);
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    seconds.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Running time of one engine job (a chain's calls for one request), shared between the
/// executor that polls the job and the epoch callbacks of its stores.
#[derive(Debug, Default)]
pub(crate) struct CallMeter {
    /// CPU time of the polls that have finished.
    spent_ns: AtomicU64,
    /// Thread CPU time when the poll under way began; 0 between polls.
    slice_start_ns: AtomicU64,
    /// Set once the job has run longer than a first slice: it finishes on the low-priority
    /// threads.
    demoted: AtomicBool,
    /// Set when a guest yields at an epoch tick (rather than the job waiting for a permit
    /// or the network): the moment a demoted job may move.
    yielded: AtomicBool,
}

impl CallMeter {
    /// Marks the start of a poll on the current thread.
    pub(crate) fn begin_slice(&self) {
        self.slice_start_ns
            .store(thread_cpu_ns().max(1), Ordering::Relaxed);
    }

    /// Marks the end of the poll begun by [`begin_slice`](Self::begin_slice) on this thread.
    pub(crate) fn end_slice(&self) {
        let started = self.slice_start_ns.swap(0, Ordering::Relaxed);
        if started != 0 {
            let spent = thread_cpu_ns().saturating_sub(started);
            self.spent_ns.fetch_add(spent, Ordering::Relaxed);
        }
    }

    /// The job's running time so far, including the poll under way. Called from the thread
    /// that polls the job (the epoch callback runs inside the poll).
    pub(crate) fn running(&self) -> Duration {
        let spent = self.spent_ns.load(Ordering::Relaxed);
        let started = self.slice_start_ns.load(Ordering::Relaxed);
        let current = if started == 0 {
            0
        } else {
            thread_cpu_ns().saturating_sub(started)
        };
        Duration::from_nanos(spent.saturating_add(current))
    }

    pub(crate) fn demote(&self) {
        self.demoted.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_demoted(&self) -> bool {
        self.demoted.load(Ordering::Relaxed)
    }

    /// Notes that the guest yields its thread at an epoch tick.
    pub(crate) fn mark_yield(&self) {
        self.yielded.store(true, Ordering::Relaxed);
    }

    /// Whether the guest yielded since the last call, clearing the mark.
    pub(crate) fn take_yield(&self) -> bool {
        self.yielded.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_time_counts_work_not_sleep() {
        let meter = CallMeter::default();
        meter.begin_slice();
        std::thread::sleep(Duration::from_millis(30));
        meter.end_slice();
        assert!(
            meter.running() < Duration::from_millis(10),
            "sleeping counted as running: {:?}",
            meter.running()
        );
        meter.begin_slice();
        let (cpu, wall) = (thread_cpu_ns(), std::time::Instant::now());
        while thread_cpu_ns() - cpu < 15_000_000 && wall.elapsed() < Duration::from_secs(10) {
            std::hint::black_box(());
        }
        meter.end_slice();
        assert!(
            meter.running() >= Duration::from_millis(15),
            "{:?}",
            meter.running()
        );
    }
}
