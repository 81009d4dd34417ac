//! Signed checkpoints: the chain's head (sequence number and hash) at a time, signed with the
//! gateway's Ed25519 key, so that rewriting the chain (which anyone can rehash) is caught.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::chain::{ChainHead, parse_hash};
use super::keys::key_id;
use super::time;

/// A checkpoint as written in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The `seq` of the last record it covers.
    pub seq: u64,
    /// That record's hash, lowercase hex.
    pub head_hash: String,
    /// When it was signed, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub time: String,
    pub key_id: String,
    /// Ed25519 over [`Checkpoint::message`], lowercase hex.
    pub signature: String,
}

/// A checkpoint line: `{"checkpoint":{...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointLine {
    pub checkpoint: Checkpoint,
}

/// Why a checkpoint does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("is not a checkpoint line: {0}")]
    Malformed(String),
    #[error("is signed with key id `{0}`, which is none of the public keys given")]
    UnknownKey(String),
    #[error("has a signature that does not verify with key `{0}`")]
    BadSignature(String),
}

impl Checkpoint {
    /// Signs `head` at `time_ms` with `key`.
    pub fn sign(head: &ChainHead, time_ms: u64, key: &SigningKey) -> Checkpoint {
        let time = time::format_millis(time_ms);
        let key_id = key_id(&key.verifying_key());
        let message = message(head.seq, &head.hash, &time, &key_id);
        Checkpoint {
            seq: head.seq,
            head_hash: hex::encode(head.hash),
            time,
            key_id,
            signature: hex::encode(key.sign(&message).to_bytes()),
        }
    }

    /// The line for the log, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let line = CheckpointLine {
            checkpoint: self.clone(),
        };
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Parses a checkpoint line (without its newline).
    pub fn parse_line(line: &[u8]) -> Result<Checkpoint, CheckpointError> {
        serde_json::from_slice::<CheckpointLine>(line)
            .map(|l| l.checkpoint)
            .map_err(|e| CheckpointError::Malformed(e.to_string()))
    }

    /// The head it covers.
    pub fn head(&self) -> Result<ChainHead, CheckpointError> {
        let hash = parse_hash(&self.head_hash).ok_or_else(|| {
            CheckpointError::Malformed("`head_hash` is not 64 lowercase hex digits".into())
        })?;
        Ok(ChainHead {
            seq: self.seq,
            hash,
        })
    }

    /// Checks the signature with whichever of `keys` has the checkpoint's key id.
    pub fn verify(&self, keys: &[VerifyingKey]) -> Result<(), CheckpointError> {
        let head = self.head()?;
        if !time::is_canonical(&self.time) {
            return Err(CheckpointError::Malformed(format!(
                "`time` `{}` is not of the form YYYY-MM-DDTHH:MM:SS.mmmZ",
                self.time
            )));
        }
        let key = keys
            .iter()
            .find(|k| key_id(k) == self.key_id)
            .ok_or_else(|| CheckpointError::UnknownKey(self.key_id.clone()))?;
        let mut signature = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut signature)
            .map_err(|_| CheckpointError::BadSignature(self.key_id.clone()))?;
        let message = message(head.seq, &head.hash, &self.time, &self.key_id);
        key.verify(&message, &Signature::from_bytes(&signature))
            .map_err(|_| CheckpointError::BadSignature(self.key_id.clone()))
    }
}

/// The signed bytes: `seq` (8 bytes big-endian) || head hash (32 bytes) || time (24 ASCII
/// bytes) || key id (ASCII hex).
pub fn message(seq: u64, head_hash: &[u8; 32], time: &str, key_id: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(8 + 32 + time.len() + key_id.len());
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(head_hash);
    message.extend_from_slice(time.as_bytes());
    message.extend_from_slice(key_id.as_bytes());
    message
}
