//! The handle the gateway appends records through. Records go into a bounded queue that one
//! writer thread drains (see `writer`): the request path neither serializes nor hashes nor
//! touches a file. In strict mode `append` waits until the writer has fsynced the batch its
//! record was in; in buffered mode it returns once the record is queued.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::chain::Chained;
use super::record::AuditRecord;
use super::refusal::RefusalRecord;
use super::settings::{AuditSettings, Durability};
use super::stats::{AuditWatch, WriterStats};
use super::writer::Writer;

/// Why a record was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("the audit log cannot be written: {0}")]
    Write(String),
    #[error("the audit log is closed")]
    Closed,
}

/// The audit log. Cheap to clone; the writer stops when the last clone is dropped or
/// [`AuditLog::flush_and_close`] is called.
#[derive(Clone)]
pub struct AuditLog {
    handle: Arc<Handle>,
}

struct Handle {
    queue: Arc<Queue>,
    permits: Arc<Semaphore>,
    stats: Arc<WriterStats>,
    settings: AuditSettings,
    finished: Mutex<Option<oneshot::Receiver<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// A line of the chain: a request's record or a protocol refusal's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
#[expect(
    clippy::large_enum_variant,
    reason = "request records are the common, large variant; boxing them would cost every \
              request an allocation to save space on rare refusal records"
)]
pub enum LogRecord {
    Request(AuditRecord),
    Refusal(RefusalRecord),
}

impl Chained for LogRecord {
    fn link(&mut self, seq: u64, prev_hash: String) {
        match self {
            LogRecord::Request(record) => record.link(seq, prev_hash),
            LogRecord::Refusal(record) => record.link(seq, prev_hash),
        }
    }

    fn set_hash(&mut self, hash: String) {
        match self {
            LogRecord::Request(record) => record.set_hash(hash),
            LogRecord::Refusal(record) => record.set_hash(hash),
        }
    }

    fn seq(&self) -> u64 {
        match self {
            LogRecord::Request(record) => record.seq,
            LogRecord::Refusal(record) => record.seq,
        }
    }
}

/// A record waiting for the writer.
pub(super) struct Pending {
    pub(super) record: LogRecord,
    /// Strict mode: told once the record is on disk (or not).
    pub(super) ack: Option<oneshot::Sender<Result<(), AuditError>>>,
    /// Its place in the queue, given back when the record is written.
    _permit: OwnedSemaphorePermit,
}

impl Pending {
    pub(super) fn into_parts(
        self,
    ) -> (
        LogRecord,
        Option<oneshot::Sender<Result<(), AuditError>>>,
        OwnedSemaphorePermit,
    ) {
        (self.record, self.ack, self._permit)
    }
}

/// The queue between appenders and the writer thread.
pub(super) struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<Pending>,
    closing: bool,
    stopped: bool,
    /// The writer waits for a record: only then does a push need to wake it (a wake is a
    /// system call, and the writer finds what was pushed while it worked anyway).
    writer_waiting: bool,
}

/// What the writer took from the queue.
pub(super) struct Taken {
    pub(super) batch: Vec<Pending>,
    /// The log is closing and nothing is left to write.
    pub(super) done: bool,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            state: Mutex::new(QueueState::default()),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // The writer never panics while holding the lock; if a thread did, the queue itself
        // is still consistent (every change is a single push, drain or flag).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, pending: Pending) -> Result<(), AuditError> {
        let mut state = self.lock();
        if state.closing || state.stopped {
            return Err(AuditError::Closed);
        }
        state.items.push_back(pending);
        let wake = state.writer_waiting;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Waits until there is something to write, the log closes, or `deadline` passes; then,
    /// after `linger` (letting more records join the batch), takes up to `max` records.
    pub(super) fn take(
        &self,
        deadline: Option<Instant>,
        linger: Option<Duration>,
        max: usize,
    ) -> Taken {
        let mut state = self.lock();
        state.writer_waiting = true;
        while state.items.is_empty() && !state.closing {
            match deadline {
                None => {
                    state = self
                        .ready
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner)
                }
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    state = self
                        .ready
                        .wait_timeout(state, deadline - now)
                        .map(|(state, _)| state)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
            }
        }
        state.writer_waiting = false;
        if let Some(linger) = linger
            && !state.items.is_empty()
            && state.items.len() < max
            && !state.closing
        {
            drop(state);
            std::thread::sleep(linger);
            state = self.lock();
        }
        let count = state.items.len().min(max);
        let batch: Vec<Pending> = state.items.drain(..count).collect();
        Taken {
            done: state.closing && state.items.is_empty() && batch.is_empty(),
            batch,
        }
    }

    pub(super) fn is_closing(&self) -> bool {
        self.lock().closing
    }

    fn close(&self) {
        self.lock().closing = true;
        self.ready.notify_all();
    }

    /// The writer has stopped: refuse new records and answer any left.
    fn stop(&self) {
        let left: Vec<Pending> = {
            let mut state = self.lock();
            state.stopped = true;
            state.items.drain(..).collect()
        };
        for pending in left {
            if let Some(ack) = pending.ack {
                let _ = ack.send(Err(AuditError::Closed));
            }
        }
    }
}

impl AuditLog {
    /// Opens the log in `settings.dir` (creating it), finds the chain's head from the newest
    /// file, and starts the writer thread.
    pub fn open(settings: &AuditSettings) -> anyhow::Result<AuditLog> {
        let stats = Arc::new(WriterStats::default());
        let writer = Writer::open(settings, stats.clone())?;
        let queue = Arc::new(Queue::new());
        let (finished_tx, finished_rx) = oneshot::channel();
        let writer_queue = queue.clone();
        std::thread::Builder::new()
            .name("ehrgate-audit".into())
            .spawn(move || {
                writer.run(&writer_queue);
                writer_queue.stop();
                let _ = finished_tx.send(());
            })
            .context("cannot start the audit writer thread")?;
        Ok(AuditLog {
            handle: Arc::new(Handle {
                queue,
                permits: Arc::new(Semaphore::new(settings.queue_capacity.max(1))),
                stats,
                settings: settings.clone(),
                finished: Mutex::new(Some(finished_rx)),
            }),
        })
    }

    /// Appends `record` after flagging it for review with the configured threshold. Strict:
    /// returns once the record is fsynced, or the error that kept it off the disk. Buffered:
    /// returns once it is queued. Either way it waits while the queue is full.
    pub async fn append(&self, mut record: AuditRecord) -> Result<(), AuditError> {
        record.flag_for_review(self.handle.settings.review_risk_threshold);
        self.append_line(LogRecord::Request(record)).await
    }

    /// Appends a protocol refusal's record, in the same chain and with the same durability
    /// as request records.
    pub async fn append_refusal(&self, record: RefusalRecord) -> Result<(), AuditError> {
        self.append_line(LogRecord::Refusal(record)).await
    }

    async fn append_line(&self, record: LogRecord) -> Result<(), AuditError> {
        let handle = &self.handle;
        let permit = handle
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AuditError::Closed)?;
        let (ack, acked) = match handle.settings.durability {
            Durability::Strict => {
                let (ack, acked) = oneshot::channel();
                (Some(ack), Some(acked))
            }
            Durability::Buffered => (None, None),
        };
        handle.queue.push(Pending {
            record,
            ack,
            _permit: permit,
        })?;
        match acked {
            Some(acked) => acked.await.unwrap_or(Err(AuditError::Closed)),
            None => Ok(()),
        }
    }

    /// Writes everything queued, a final checkpoint, fsyncs, and stops the writer. Appends
    /// after this fail with [`AuditError::Closed`].
    pub async fn flush_and_close(&self) {
        self.handle.queue.close();
        let finished = self
            .handle
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(finished) = finished {
            let _ = finished.await;
        }
    }

    /// A view of the writer's activity for metrics, which does not keep the log open.
    pub fn watch(&self) -> AuditWatch {
        AuditWatch {
            stats: self.handle.stats.clone(),
            permits: self.handle.permits.clone(),
            queue_capacity: self.handle.settings.queue_capacity.max(1),
        }
    }

    /// The settings the log was opened with.
    pub fn settings(&self) -> &AuditSettings {
        &self.handle.settings
    }
}
