//! What the audit writer has done, for `/metrics`: records written, fsyncs, checkpoints,
//! files started, failures, and whether the last write succeeded. The writer thread updates
//! plain atomics; a scrape reads them, so watching the log costs the writer nothing but a
//! few relaxed stores per batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Semaphore;

/// Counters the writer thread keeps.
#[derive(Debug, Default)]
pub(super) struct WriterStats {
    pub(super) records_written: AtomicU64,
    pub(super) fsyncs: AtomicU64,
    pub(super) checkpoints: AtomicU64,
    pub(super) files_started: AtomicU64,
    pub(super) write_failures: AtomicU64,
    /// The highest sequence number fsynced.
    pub(super) durable_seq: AtomicU64,
    /// Set by a failed write or fsync, cleared by the next successful one.
    pub(super) failing: AtomicBool,
}

impl WriterStats {
    pub(super) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }
}

/// A view of the log's activity that does not keep the log open.
#[derive(Debug, Clone)]
pub struct AuditWatch {
    pub(super) stats: Arc<WriterStats>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) queue_capacity: usize,
}

/// The numbers at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditSnapshot {
    pub records_written: u64,
    pub fsyncs: u64,
    pub checkpoints: u64,
    pub files_started: u64,
    pub write_failures: u64,
    pub durable_seq: u64,
    /// The last write or fsync failed and none has succeeded since.
    pub failing: bool,
    /// Records queued or being written.
    pub queue_depth: u64,
    pub queue_capacity: u64,
}

impl AuditWatch {
    pub fn snapshot(&self) -> AuditSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let stats = &self.stats;
        let free = self.permits.available_permits();
        AuditSnapshot {
            records_written: read(&stats.records_written),
            fsyncs: read(&stats.fsyncs),
            checkpoints: read(&stats.checkpoints),
            files_started: read(&stats.files_started),
            write_failures: read(&stats.write_failures),
            durable_seq: read(&stats.durable_seq),
            failing: stats.failing.load(Ordering::Relaxed),
            queue_depth: self.queue_capacity.saturating_sub(free) as u64,
            queue_capacity: self.queue_capacity as u64,
        }
    }
}
