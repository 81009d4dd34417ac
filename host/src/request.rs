//! From raw HTTP to the canonical request: one normalization of path, query and headers
//! (`canonical`, `headers`), the caller's identity from a verified bearer token
//! (`identity`), and the FHIR interaction, resources and patients the request touches
//! (`classify`, with FHIR facts in `fhir`). Everything downstream (policies, the upstream,
//! the audit log) sees only what these produce.

pub mod canonical;
pub mod classify;
pub mod fhir;
pub mod headers;
pub mod identity;
pub mod scope;
pub mod stored;

/// A request refused before any policy ran: malformed, ambiguous, over a limit or
/// unauthenticated. The gateway answers with `status` and a FHIR OperationOutcome naming
/// `rule_id`, and audits the refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule_id}: {message}")]
pub struct Rejection {
    /// The HTTP status: 400 (ambiguous or malformed), 401 (identity), 405, 413, 415, 431.
    pub status: u16,
    /// A stable rule id, `[a-z0-9._-]`, for example `canonical.dot-segment`.
    pub rule_id: &'static str,
    /// What was wrong, for the client and the log. Quotes offending input in backticks,
    /// shortened to at most 100 characters; never includes token contents.
    pub message: String,
}

impl Rejection {
    pub fn new(status: u16, rule_id: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status,
            rule_id,
            message: message.into(),
        }
    }

    /// A 400 for malformed or ambiguous input.
    pub fn bad_request(rule_id: &'static str, message: impl Into<String>) -> Self {
        Rejection::new(400, rule_id, message)
    }
}

/// Shows at most 100 characters of client input inside a message, escaped.
pub fn quote(input: &str) -> String {
    let mut shown: String = input.chars().take(100).collect();
    if shown.len() < input.len() {
        shown.push('…');
    }
    shown.escape_debug().to_string()
}
