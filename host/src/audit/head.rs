//! Publishing the newest checkpoint to the head file (`audit-head.json`) on a thread of its
//! own. Replacing the file durably takes two fsyncs and a rename, several milliseconds on
//! ext4, which strict-mode requests would otherwise wait for once per checkpoint. Only the
//! newest checkpoint matters, so one waiting behind a write is replaced by a newer one. The
//! writer publishes a checkpoint only after the log lines it covers are fsynced, so the head
//! file never claims more than the log holds.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use super::checkpoint::Checkpoint;
use super::files;

pub(super) struct HeadFile {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    slot: Mutex<Slot>,
    ready: Condvar,
}

#[derive(Default)]
struct Slot {
    latest: Option<Checkpoint>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl HeadFile {
    /// Starts the thread that keeps the head file in `dir`.
    pub(super) fn start(dir: PathBuf) -> std::io::Result<HeadFile> {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot::default()),
            ready: Condvar::new(),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ehrgate-audit-head".into())
            .spawn(move || publish_loop(&dir, &thread_shared))?;
        Ok(HeadFile {
            shared,
            thread: Some(thread),
        })
    }

    /// Makes `checkpoint` the next one written (replacing one not yet written).
    pub(super) fn publish(&self, checkpoint: Checkpoint) {
        self.shared.lock().latest = Some(checkpoint);
        self.shared.ready.notify_one();
    }

    /// Writes what is pending and stops the thread.
    pub(super) fn close(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for HeadFile {
    fn drop(&mut self) {
        self.close();
    }
}

fn publish_loop(dir: &std::path::Path, shared: &Shared) {
    loop {
        let next = {
            let mut slot = shared.lock();
            while slot.latest.is_none() && !slot.closed {
                slot = shared
                    .ready
                    .wait(slot)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            slot.latest.take()
        };
        let Some(checkpoint) = next else {
            return;
        };
        if let Err(error) = files::write_head_file(dir, &checkpoint) {
            // The log itself is intact; only `verify`'s check of the log's end loses its anchor.
            tracing::error!(%error, "cannot update the audit head file");
        }
    }
}
