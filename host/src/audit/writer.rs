//! The writer thread: takes every record queued since it last looked (group commit), chains
//! and serializes them, writes them with one `write` and, in strict mode, one fsync, then
//! answers their appenders. It also writes the checkpoints, rotates files, and in buffered
//! mode fsyncs on a timer.
//!
//! After a failed write or fsync the writer no longer knows what reached the disk, so it
//! drops its file and, before the next write, finds the chain's head on disk again and starts
//! a new file. Strict appenders of the failed batch get the error; buffered records are
//! retried (those already on disk are not written twice).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use ed25519_dalek::SigningKey;

use super::chain::{self, ChainHead, Chained};
use super::checkpoint::Checkpoint;
use super::files;
use super::head::HeadFile;
use super::keys;
use super::log::{AuditError, LogRecord, Pending, Queue};
use super::segment::Segment;
use super::settings::{AuditSettings, Durability};
use super::stats::WriterStats;
use super::time;

/// Records taken from the queue at once at most.
const MAX_BATCH: usize = 4096;
/// Buffered mode: how long the writer lets records gather before it writes them. Records
/// then cost one `write` and one wake of the writer per batch, not each; they reach the
/// operating system this much later, which buffered mode allows (it fsyncs far less often).
const BUFFERED_LINGER: Duration = Duration::from_millis(2);
/// Strict mode, when requests come concurrently (the last batch had more than one record):
/// how long the writer waits for more before it writes and fsyncs. An fsync costs about
/// 90 µs of system CPU on this project's machines besides its wait, so fewer, larger batches
/// leave more CPU to requests; the price is this much latency, paid only under concurrent
/// load (a lone request is written at once).
const STRICT_GROUP_WINDOW: Duration = Duration::from_micros(300);
/// Attempts at a buffered batch while the log is closing, before its records are given up.
const ATTEMPTS_WHEN_CLOSING: u32 = 5;

pub(super) struct Writer {
    settings: AuditSettings,
    key: SigningKey,
    head: ChainHead,
    /// The highest `seq` known to be on disk: recovery must never find less.
    durable_seq: u64,
    /// Records after the last checkpoint.
    uncovered: u64,
    last_checkpoint: Instant,
    last_sync: Instant,
    segment: Option<Segment>,
    /// A write failed: the head must be found on disk again before the next write.
    broken: bool,
    /// Lines not yet written to the segment.
    buffer: Vec<u8>,
    line: Vec<u8>,
    /// A checkpoint written but not yet fsynced; it goes to the head file after the fsync.
    unsynced_checkpoint: Option<Checkpoint>,
    head_file: HeadFile,
    /// Records in the last batch: more than one means appends are concurrent.
    last_batch: usize,
    stats: Arc<WriterStats>,
}

impl Writer {
    pub(super) fn open(
        settings: &AuditSettings,
        stats: Arc<WriterStats>,
    ) -> anyhow::Result<Writer> {
        let dir = &settings.dir;
        create_dir(dir)
            .with_context(|| format!("cannot create the audit directory `{}`", dir.display()))?;
        let key = keys::read_signing_key(&settings.signing_key)?;
        if keys::is_readable_by_others(&settings.signing_key) {
            tracing::warn!(
                path = %settings.signing_key.display(),
                "the audit signing key is readable by other users; `chmod 600` it"
            );
        }
        let recovered = files::recover(dir)?;
        let mut segment = None;
        if let Some((newest, len, torn)) = &recovered.newest {
            if *torn {
                tracing::warn!(
                    file = %newest.path.display(),
                    "the audit log's last line was torn by a crash; it is skipped and a new file is started"
                );
            } else if newest.day == time::day_of(time::now_millis()) && *len < settings.rotate_bytes
            {
                segment = Some(Segment::reopen(newest, *len).with_context(|| {
                    format!("cannot open `{}` for appending", newest.path.display())
                })?);
            }
        }
        let mut writer = Writer {
            settings: settings.clone(),
            key,
            head: recovered.head,
            durable_seq: recovered.head.seq,
            uncovered: u64::from(!recovered.covered),
            last_checkpoint: Instant::now(),
            last_sync: Instant::now(),
            segment,
            broken: false,
            buffer: Vec::with_capacity(1 << 20),
            line: Vec::with_capacity(4096),
            unsynced_checkpoint: None,
            head_file: HeadFile::start(dir.clone())
                .context("cannot start the audit head file thread")?,
            last_batch: 0,
            stats,
        };
        writer
            .ensure_segment()
            .with_context(|| format!("cannot create a log file in `{}`", dir.display()))?;
        tracing::info!(
            dir = %dir.display(),
            mode = settings.durability.as_str(),
            seq = writer.head.seq,
            file = %writer.segment.as_ref().map_or_else(String::new, |s| s.path.display().to_string()),
            "audit log open"
        );
        Ok(writer)
    }

    /// Runs until the log is closed and everything queued is written.
    pub(super) fn run(mut self, queue: &Queue) {
        loop {
            let linger = match self.settings.durability {
                Durability::Buffered => Some(BUFFERED_LINGER),
                Durability::Strict => (self.last_batch > 1).then_some(STRICT_GROUP_WINDOW),
            };
            let taken = queue.take(self.next_deadline(), linger, MAX_BATCH);
            if taken.done {
                self.finish();
                return;
            }
            if !taken.batch.is_empty() {
                self.last_batch = taken.batch.len();
                self.write_batch(taken.batch, queue);
            }
            if let Err(error) = self.on_timers() {
                tracing::error!(%error, "audit log: a timed checkpoint or fsync failed");
                self.fail();
                // Tried again after another interval, not in a busy loop.
                self.last_checkpoint = Instant::now();
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let checkpoint =
            (self.uncovered > 0).then(|| self.last_checkpoint + self.settings.checkpoint_interval);
        let sync = (self.settings.durability == Durability::Buffered
            && self.segment.as_ref().is_some_and(|s| s.dirty))
        .then(|| self.last_sync + self.settings.fsync_interval);
        checkpoint.into_iter().chain(sync).min()
    }

    fn write_batch(&mut self, batch: Vec<Pending>, queue: &Queue) {
        let mut records = Vec::with_capacity(batch.len());
        let mut acks = Vec::with_capacity(batch.len());
        let mut permits = Vec::with_capacity(batch.len());
        for pending in batch {
            let (record, ack, permit) = pending.into_parts();
            records.push(record);
            acks.push(ack);
            permits.push(permit);
        }
        match self.settings.durability {
            Durability::Strict => {
                let result = self.commit(&mut records, true).map_err(|error| {
                    tracing::error!(%error, records = records.len(), "audit log write failed");
                    self.fail();
                    AuditError::Write(error.to_string())
                });
                // The queue slots are free before the appenders hear back, so an appender
                // that is answered never sees its own record still counted as queued.
                drop(permits);
                for ack in acks.into_iter().flatten() {
                    let _ = ack.send(result.clone());
                }
            }
            Durability::Buffered => self.write_buffered(records, queue),
        }
    }

    /// Buffered records are never dropped while the log is open: a failed batch is retried
    /// once the log is recovered, without the records that reached the disk, and the queue
    /// fills up meanwhile, which makes appenders wait.
    fn write_buffered(&mut self, mut records: Vec<LogRecord>, queue: &Queue) {
        let mut attempt: u32 = 0;
        loop {
            // `commit` numbers the records it chains, in order: after a failure, the numbered
            // ones up to the head found on disk were written.
            for record in &mut records {
                record.link(0, String::new());
            }
            let sync = self.last_sync.elapsed() >= self.settings.fsync_interval;
            let Err(error) = self.commit(&mut records, sync) else {
                return;
            };
            tracing::error!(%error, records = records.len(), "audit log write failed; retrying");
            self.fail();
            loop {
                attempt += 1;
                if queue.is_closing() && attempt >= ATTEMPTS_WHEN_CLOSING {
                    tracing::error!(
                        records = records.len(),
                        "audit log closing with records that could not be written"
                    );
                    return;
                }
                std::thread::sleep(backoff(attempt));
                match self.ensure_segment() {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::error!(%error, attempt, "audit log still cannot be written")
                    }
                }
            }
            let on_disk = self.head.seq;
            records.retain(|r| r.seq() == 0 || r.seq() > on_disk);
            if records.is_empty() {
                return;
            }
        }
    }

    /// Chains, writes and (when `sync`) fsyncs `records`, checkpointing and rotating as due.
    fn commit(&mut self, records: &mut [LogRecord], sync: bool) -> io::Result<()> {
        self.ensure_segment()?;
        let today = time::day_of(time::now_millis());
        if self.segment.as_ref().is_some_and(|s| s.day != today) {
            self.rotate(today)?;
        }
        self.buffer.clear();
        for record in records.iter_mut() {
            self.line.clear();
            let next =
                chain::append_line(record, &self.head, &mut self.line).map_err(io::Error::other)?;
            let file_len = self.segment.as_ref().map_or(0, |s| s.len) + self.buffer.len() as u64;
            if file_len > 0 && file_len + self.line.len() as u64 > self.settings.rotate_bytes {
                self.rotate(today)?;
            }
            self.buffer.extend_from_slice(&self.line);
            self.head = next;
            self.uncovered += 1;
            if self.uncovered >= self.settings.checkpoint_every {
                self.push_checkpoint();
            }
        }
        self.flush(sync)?;
        WriterStats::add(&self.stats.records_written, records.len() as u64);
        Ok(())
    }

    fn push_checkpoint(&mut self) {
        let checkpoint = Checkpoint::sign(&self.head, time::now_millis(), &self.key);
        self.buffer.extend_from_slice(&checkpoint.to_line());
        self.uncovered = 0;
        self.last_checkpoint = Instant::now();
        self.unsynced_checkpoint = Some(checkpoint);
        WriterStats::add(&self.stats.checkpoints, 1);
    }

    /// Writes the buffer; with `sync`, fsyncs and publishes the newest checkpoint.
    fn flush(&mut self, sync: bool) -> io::Result<()> {
        let segment = self.segment.as_mut().ok_or_else(no_segment)?;
        segment.write(&self.buffer)?;
        self.buffer.clear();
        if sync {
            segment.sync()?;
            self.last_sync = Instant::now();
            self.durable_seq = self.head.seq;
            WriterStats::add(&self.stats.fsyncs, 1);
            self.stats
                .durable_seq
                .store(self.durable_seq, Ordering::Relaxed);
            if let Some(checkpoint) = self.unsynced_checkpoint.take() {
                self.head_file.publish(checkpoint);
            }
        }
        self.stats.failing.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Ends the current file with a checkpoint and starts the next one for `day`.
    fn rotate(&mut self, day: u64) -> io::Result<()> {
        if self.uncovered > 0 {
            self.push_checkpoint();
        }
        self.flush(true)?;
        self.segment = Some(Segment::create(&self.settings.dir, day)?);
        WriterStats::add(&self.stats.files_started, 1);
        Ok(())
    }

    fn on_timers(&mut self) -> io::Result<()> {
        if self.uncovered > 0 && self.last_checkpoint.elapsed() >= self.settings.checkpoint_interval
        {
            self.ensure_segment()?;
            self.push_checkpoint();
            return self.flush(true);
        }
        let dirty = self.segment.as_ref().is_some_and(|s| s.dirty);
        if dirty && self.last_sync.elapsed() >= self.settings.fsync_interval {
            return self.flush(true);
        }
        Ok(())
    }

    /// Forgets the file after a failed write; the next write recovers the head from disk.
    fn fail(&mut self) {
        WriterStats::add(&self.stats.write_failures, 1);
        self.stats.failing.store(true, Ordering::Relaxed);
        self.segment = None;
        self.broken = true;
        self.buffer.clear();
        self.unsynced_checkpoint = None;
    }

    /// Makes sure there is a file to write to, recovering the head from disk after a failure.
    fn ensure_segment(&mut self) -> io::Result<()> {
        if self.segment.is_some() {
            return Ok(());
        }
        let dir = &self.settings.dir;
        if self.broken {
            let recovered = files::recover(dir).map_err(io::Error::other)?;
            if recovered.head.seq < self.durable_seq {
                return Err(io::Error::other(format!(
                    "the log on disk ends at seq {} but seq {} was already fsynced: files were removed",
                    recovered.head.seq, self.durable_seq
                )));
            }
            self.head = recovered.head;
            self.uncovered = u64::from(!recovered.covered);
            tracing::warn!(
                seq = self.head.seq,
                "audit log recovered after a failed write; starting a new file"
            );
        }
        self.segment = Some(Segment::create(dir, time::day_of(time::now_millis()))?);
        WriterStats::add(&self.stats.files_started, 1);
        self.broken = false;
        Ok(())
    }

    /// Closing: a final checkpoint and fsync.
    fn finish(&mut self) {
        let result = self.ensure_segment().and_then(|()| {
            if self.uncovered > 0 {
                self.push_checkpoint();
            }
            self.flush(true)
        });
        self.head_file.close();
        match result {
            Ok(()) => tracing::info!(seq = self.head.seq, "audit log closed"),
            Err(error) => tracing::error!(%error, "audit log: the final checkpoint failed"),
        }
    }
}

fn no_segment() -> io::Error {
    io::Error::other("no open log file")
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << attempt.min(7)))
}

fn create_dir(dir: &PathBuf) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
