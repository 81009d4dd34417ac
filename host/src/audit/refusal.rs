//! The protocol-refusal record: a connection or request the gateway refused below the request
//! handler (at accept, in the TLS handshake, in the HTTP/1 parser, by an HTTP/2 stream or
//! connection error, or because the client said nothing), so no request record exists for
//! it. One record per refusal, or, beyond the per-peer bound, one aggregate per peer and
//! interval that counts the refusals it stands for by cause.
//!
//! The record is a line of the same hash chain as request records: `{"seq":N,"kind":
//! "protocol-refusal",...,"prev_hash":"…","hash":"…"}`. Request records never have `kind`,
//! so a reader tells the two apart by the member after `seq` ([`is_refusal_line`]). The field
//! order here is the order of the keys in the log (part of the canonical bytes): new fields go
//! before `prev_hash`, and existing fields are never reordered.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `kind` of a protocol-refusal record.
pub const REFUSAL_KIND: &str = "protocol-refusal";

/// One protocol-refusal line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalRecord {
    /// Position in the chain, from 1, set by the writer.
    #[serde(default)]
    pub seq: u64,
    /// Always [`REFUSAL_KIND`].
    pub kind: String,
    /// When the connection or stream was refused; for an aggregate, when its interval began.
    pub time: String,
    /// The peer's IP address as seen on the socket; none for the aggregate of peers that did
    /// not fit in the bounded peer table.
    pub source_address: Option<String>,
    /// The peer's port (individual records only).
    pub source_port: Option<u16>,
    /// Whether the listener serves TLS.
    pub tls: bool,
    /// What was being spoken: `tcp` (refused at accept or silent), `tls` (handshake),
    /// `http/1.1` or `h2`; none for an aggregate.
    pub protocol: Option<String>,
    /// Why (`http1-malformed`, `http2-stream-reset`, `peer-limit`, ...); none for an
    /// aggregate, whose causes are in `aggregate`.
    pub cause: Option<String>,
    /// The status the client was answered with, when it got one (HTTP/1 parse errors).
    pub status: Option<u16>,
    /// What the refusing layer said: hyper's or rustls's message, the HTTP/2 error code and
    /// stream. Never client-sent bytes.
    pub detail: Option<String>,
    /// For an aggregate record: the refusals of this peer in the interval that have no
    /// record of their own.
    pub aggregate: Option<RefusalAggregate>,
    /// The previous record's `hash`, set by the writer.
    #[serde(default)]
    pub prev_hash: String,
    /// SHA-256 over the previous hash and this record's canonical bytes; empty until written.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

/// Refusals counted instead of recorded one by one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalAggregate {
    /// The end of the interval (exclusive), `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub until: String,
    /// How many refusals this record stands for.
    pub count: u64,
    /// The same, by cause.
    pub causes: BTreeMap<String, u64>,
}

impl RefusalRecord {
    /// How many refusals the record stands for: 1, or an aggregate's count.
    pub fn count(&self) -> u64 {
        self.aggregate.as_ref().map_or(1, |a| a.count)
    }

    /// The causes with their counts.
    pub fn causes(&self) -> Vec<(&str, u64)> {
        match &self.aggregate {
            Some(aggregate) => aggregate
                .causes
                .iter()
                .map(|(cause, count)| (cause.as_str(), *count))
                .collect(),
            None => vec![(self.cause.as_deref().unwrap_or("unknown"), 1)],
        }
    }
}

/// Whether a record line (without its newline) is a protocol-refusal record: its member after
/// `seq` is `"kind":"protocol-refusal"`, exactly as the writer writes it.
pub fn is_refusal_line(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"{\"seq\":") else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    rest[digits..].starts_with(b",\"kind\":\"protocol-refusal\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_lines_are_told_from_request_lines_by_the_member_after_seq() {
        assert!(is_refusal_line(
            br#"{"seq":12,"kind":"protocol-refusal","time":"x"}"#
        ));
        assert!(!is_refusal_line(
            br#"{"seq":12,"time":"x","kind":"protocol-refusal"}"#
        ));
        assert!(!is_refusal_line(br#"{"seq":12,"time":"x"}"#));
        assert!(!is_refusal_line(br#"{"checkpoint":{}}"#));
        assert!(!is_refusal_line(b"{\"seq\":"));
    }
}
