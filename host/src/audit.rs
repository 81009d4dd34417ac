//! The tamper-evident audit log: one JSON Lines record for every decision the gateway takes,
//! hash-chained and periodically signed, and the tools a privacy officer reviews it with.
//!
//! - [`record`]: the record, built from a request's context; [`refusal`]: the record of a
//!   connection or request refused below the request handler (protocol refusals).
//! - [`chain`]: canonical bytes and the hash chain; [`checkpoint`]: signed checkpoints;
//!   [`keys`]: the Ed25519 key files.
//! - [`log`]: the handle the gateway appends through; `writer` and `segment`: the writer
//!   thread and the file it writes; `head`: the head file's thread; [`files`]: file names,
//!   listing and crash recovery;
//!   [`settings`]: the validated `[audit]` settings.
//! - [`reader`], [`verify`], [`query`], [`report`], [`export`]: reading the log back.
//!
//! # Files
//!
//! The log is a directory of files named `audit-YYYYMMDD-NNNN.jsonl` (UTC date of creation, a
//! counter within the day), read in (date, counter) order. A file is rotated when it would
//! grow past `rotate_bytes` or when the UTC day changes; the chain continues across files.
//! Every line ends with `\n`. A line is either a record (it starts with `{"seq":`) or a
//! checkpoint (it starts with `{"checkpoint":`). A record is a request's, or, when its member
//! after `seq` is `"kind":"protocol-refusal"`, a protocol refusal's ([`refusal`]); both are
//! links of the one chain. A final segment of a file without `\n` is a line torn by a crash
//! during a write; it was never acknowledged, the writer skips it on restart and starts a new
//! file, and `verify` reports it as torn, not as tampering.
//!
//! # Records and the hash chain
//!
//! A record is one JSON object with its keys in the fixed order of [`AuditRecord`]'s fields
//! (or [`RefusalRecord`]'s), no insignificant whitespace, `seq` first (1, 2, 3, ... across all
//! files), then the record's fields, then `prev_hash` (the previous record's `hash`, lowercase hex) and last
//! `hash`. Its canonical bytes are the line without the `hash` member and without the
//! newline, that is, the line with its final `,"hash":"<64 hex digits>"}` replaced by `}`:
//!
//! ```text
//! line      = {"seq":7,...,"prev_hash":"<hex>","hash":"<hex>"}\n
//! canonical = {"seq":7,...,"prev_hash":"<hex>"}
//! hash      = SHA-256( prev_hash as 32 raw bytes || canonical )
//! ```
//!
//! The first record's `prev_hash` is 32 zero bytes (64 `0` digits). `verify` hashes the bytes
//! as they stand in the file, so any change to any byte of a record, including whitespace,
//! changes its hash.
//!
//! # Checkpoints
//!
//! Every `checkpoint_every` records, every `checkpoint_secs` seconds with new records, before
//! a file is rotated and when the log is closed, the writer appends
//!
//! ```text
//! {"checkpoint":{"seq":N,"head_hash":"<hex>","time":"<RFC 3339>","key_id":"<hex>","signature":"<hex>"}}
//! ```
//!
//! where `seq` and `head_hash` are those of the last record before it, `time` is UTC with
//! milliseconds in exactly the form `YYYY-MM-DDTHH:MM:SS.mmmZ` (24 bytes), `key_id` is the
//! lowercase hex of the first 8 bytes of SHA-256 over the 32-byte Ed25519 public key, and
//! `signature` is the lowercase hex of the 64-byte Ed25519 signature (RFC 8032) over
//!
//! ```text
//! seq as 8 bytes big-endian || head_hash as 32 raw bytes || time as its 24 ASCII bytes
//!     || key_id as its ASCII hex digits
//! ```
//!
//! Every part but the last has a fixed length, so the message is unambiguous. The newest
//! checkpoint is also kept in `audit-head.json` in the same directory (replaced atomically);
//! a copy of it kept elsewhere lets `verify --head` prove that no records were cut off the
//! end of the log.

pub mod chain;
pub mod checkpoint;
pub mod export;
pub mod files;
mod head;
pub mod keys;
pub mod log;
pub mod query;
pub mod reader;
pub mod record;
pub mod refusal;
pub mod report;
mod segment;
pub mod settings;
pub mod stats;
pub mod time;
pub mod verify;
mod writer;

#[cfg(test)]
mod tests;

pub use log::{AuditError, AuditLog, LogRecord};
pub use record::AuditRecord;
pub use refusal::RefusalRecord;
pub use settings::{AuditSettings, Durability};
