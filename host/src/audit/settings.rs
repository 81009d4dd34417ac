//! The audit log's settings, validated from `[audit]` in the gateway's config.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// When a record counts as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// The record is on disk (written and fsynced, one fsync for every record queued
    /// meanwhile) before the response is released; a log that cannot be written refuses
    /// requests with 503. Costs one fsync per batch of concurrent requests.
    #[default]
    Strict,
    /// The record is queued and the response released; the queue is written at once and
    /// fsynced every `fsync_interval`. A crash loses at most that interval's records; a full
    /// queue makes requests wait rather than drop records.
    Buffered,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Strict => "strict",
            Durability::Buffered => "buffered",
        }
    }
}

pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;
pub const DEFAULT_CHECKPOINT_SECS: u64 = 60;
pub const DEFAULT_ROTATE_BYTES: u64 = 256 << 20;
pub const DEFAULT_FSYNC_INTERVAL_MS: u64 = 1000;
pub const DEFAULT_QUEUE_CAPACITY: usize = 8192;
pub const DEFAULT_REVIEW_RISK_THRESHOLD: u8 = 70;

/// Everything the writer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// The directory of the log files (created if missing).
    pub dir: PathBuf,
    pub durability: Durability,
    /// A checkpoint after this many records.
    pub checkpoint_every: u64,
    /// A checkpoint after this long, when there are records it would cover.
    pub checkpoint_interval: Duration,
    /// The Ed25519 private key (PKCS#8 PEM) checkpoints are signed with.
    pub signing_key: PathBuf,
    /// A file is rotated before it grows past this size.
    pub rotate_bytes: u64,
    /// How often buffered mode fsyncs.
    pub fsync_interval: Duration,
    /// Records queued for the writer at most; appenders wait when it is full.
    pub queue_capacity: usize,
    /// Records with this risk score or more are flagged for review.
    pub review_risk_threshold: u8,
}

impl AuditSettings {
    /// The defaults for a log in `dir` signed with `signing_key`.
    pub fn new(dir: PathBuf, signing_key: PathBuf) -> AuditSettings {
        AuditSettings {
            dir,
            durability: Durability::Strict,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            checkpoint_interval: Duration::from_secs(DEFAULT_CHECKPOINT_SECS),
            signing_key,
            rotate_bytes: DEFAULT_ROTATE_BYTES,
            fsync_interval: Duration::from_millis(DEFAULT_FSYNC_INTERVAL_MS),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            review_risk_threshold: DEFAULT_REVIEW_RISK_THRESHOLD,
        }
    }
}

pub const DEFAULT_REFUSAL_INTERVAL_SECS: u64 = 60;
pub const DEFAULT_REFUSAL_RECORDS_PER_PEER: u64 = 20;
pub const DEFAULT_REFUSAL_RECORDS_PER_INTERVAL: u64 = 200;
pub const DEFAULT_REFUSAL_PEERS: u64 = 1024;

/// How many protocol refusals get a record of their own, so a flood of refused connections
/// cannot fill the disk. Within one interval, a peer address gets at most `records_per_peer`
/// records of its own and all peers together at most `records_per_interval`; every refusal
/// beyond is counted in one aggregate record per peer at the interval's end. The peer table
/// holds `peers` addresses (least recently refused evicted first); the counts of evicted
/// peers go into one aggregate without an address. So an interval writes at most
/// `records_per_interval + peers + 1` refusal records, whatever the flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalBounds {
    pub interval: Duration,
    pub records_per_peer: u32,
    pub records_per_interval: u32,
    pub peers: usize,
}

impl Default for RefusalBounds {
    fn default() -> Self {
        RefusalBounds {
            interval: Duration::from_secs(DEFAULT_REFUSAL_INTERVAL_SECS),
            records_per_peer: DEFAULT_REFUSAL_RECORDS_PER_PEER as u32,
            records_per_interval: DEFAULT_REFUSAL_RECORDS_PER_INTERVAL as u32,
            peers: DEFAULT_REFUSAL_PEERS as usize,
        }
    }
}
