//! The hash chain: a record's canonical bytes, its hash over the previous hash and those
//! bytes, and the line that carries both (the construction is spelled out in the `audit`
//! module's documentation).

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::record::AuditRecord;
use super::refusal::RefusalRecord;

/// The `prev_hash` of the first record: 32 zero bytes.
pub const GENESIS: [u8; 32] = [0; 32];

/// What a line ends with after the canonical bytes' closing brace is removed:
/// `,"hash":"` + 64 hex digits + `"}`.
const HASH_PREFIX: &[u8] = b",\"hash\":\"";
const HASH_SUFFIX_LEN: usize = HASH_PREFIX.len() + 64 + 2;

/// The last record of the chain: its position and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: [u8; 32],
}

impl ChainHead {
    /// The head of an empty log.
    pub const GENESIS: ChainHead = ChainHead {
        seq: 0,
        hash: GENESIS,
    };
}

/// `SHA-256(prev || canonical)`.
pub fn record_hash(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(canonical);
    hasher.finalize().into()
}

/// A record of the chain: it serializes `seq` first and `prev_hash` last (then `hash`, when
/// set), and the writer sets those three.
pub trait Chained: serde::Serialize {
    /// Sets `seq` and `prev_hash` and clears `hash`, before the record is serialized.
    fn link(&mut self, seq: u64, prev_hash: String);
    fn set_hash(&mut self, hash: String);
    fn seq(&self) -> u64;
}

/// Both record kinds keep their chain fields under the same names.
macro_rules! chained {
    ($($record:ty),*) => {$(
        impl Chained for $record {
            fn link(&mut self, seq: u64, prev_hash: String) {
                self.seq = seq;
                self.prev_hash = prev_hash;
                self.hash.clear();
            }

            fn set_hash(&mut self, hash: String) {
                self.hash = hash;
            }

            fn seq(&self) -> u64 {
                self.seq
            }
        }
    )*};
}

chained!(AuditRecord, RefusalRecord);

/// Appends `record` as the next record after `head` to `out` (one line, newline included),
/// setting its `seq`, `prev_hash` and `hash`, and returns the new head.
pub fn append_line<R: Chained>(
    record: &mut R,
    head: &ChainHead,
    out: &mut Vec<u8>,
) -> Result<ChainHead, serde_json::Error> {
    record.link(head.seq + 1, hex::encode(head.hash));
    let start = out.len();
    serde_json::to_writer(&mut *out, record)?;
    let hash = record_hash(&head.hash, &out[start..]);
    // The canonical bytes end with `}`; the line is them with the hash member before it.
    out.pop();
    out.extend_from_slice(HASH_PREFIX);
    let hash_hex = hex::encode(hash);
    out.extend_from_slice(hash_hex.as_bytes());
    out.extend_from_slice(b"\"}\n");
    record.set_hash(hash_hex);
    Ok(ChainHead {
        seq: record.seq(),
        hash,
    })
}

/// The chain fields of a record line, read without the rest of the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedLine {
    pub seq: u64,
    pub prev_hash: [u8; 32],
    /// The hash the line claims.
    pub hash: [u8; 32],
    /// The hash its bytes have: equal to `hash` unless the line was changed.
    pub computed: [u8; 32],
}

/// Why a line is not a well-formed record line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("is not a JSON audit record: {0}")]
    NotJson(String),
    #[error("does not end with its `hash` member")]
    NoTrailingHash,
    #[error("has a `{0}` that is not 64 lowercase hex digits")]
    BadHex(&'static str),
}

#[derive(Deserialize)]
struct ChainFields<'a> {
    seq: u64,
    #[serde(borrow)]
    prev_hash: &'a str,
    #[serde(borrow)]
    hash: &'a str,
}

/// Reads the chain fields of `line` (without its newline) and hashes its canonical bytes.
pub fn read_line(line: &[u8]) -> Result<LinkedLine, LineError> {
    let fields: ChainFields<'_> =
        serde_json::from_slice(line).map_err(|e| LineError::NotJson(e.to_string()))?;
    // The hash must be the last member, written exactly as the writer writes it, so that the
    // canonical bytes are everything before it.
    if line.len() < HASH_SUFFIX_LEN + 1 {
        return Err(LineError::NoTrailingHash);
    }
    let split = line.len() - HASH_SUFFIX_LEN;
    let suffix = &line[split..];
    if !suffix.starts_with(HASH_PREFIX)
        || !suffix.ends_with(b"\"}")
        || &suffix[HASH_PREFIX.len()..HASH_PREFIX.len() + 64] != fields.hash.as_bytes()
    {
        return Err(LineError::NoTrailingHash);
    }
    let prev_hash = parse_hash(fields.prev_hash).ok_or(LineError::BadHex("prev_hash"))?;
    let hash = parse_hash(fields.hash).ok_or(LineError::BadHex("hash"))?;
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(&line[..split]);
    hasher.update(b"}");
    Ok(LinkedLine {
        seq: fields.seq,
        prev_hash,
        hash,
        computed: hasher.finalize().into(),
    })
}

/// 64 lowercase hex digits as 32 bytes.
pub fn parse_hash(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut bytes = [0; 32];
    hex::decode_to_slice(text, &mut bytes).ok()?;
    Some(bytes)
}

/// Whether a line is a checkpoint rather than a record.
pub fn is_checkpoint_line(line: &[u8]) -> bool {
    line.starts_with(b"{\"checkpoint\":")
}
