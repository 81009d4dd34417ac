//! The module's rule ids and the refusal every check returns. Messages name types, ids,
//! parameters and scopes, never the content of a resource.

/// No principal at all (401).
pub const AUTHENTICATION: &str = "least-privilege.authentication";
/// No scope grants the permission on the type, or a granular scope does not apply.
pub const SCOPE: &str = "least-privilege.scope";
/// `system/` scopes from a client that is not a configured backend service.
pub const SYSTEM_SCOPE: &str = "least-privilege.system-scope";
/// A patient-bound grant reaching outside the launch patient's compartment.
pub const COMPARTMENT: &str = "least-privilege.compartment";
/// `_include` / `_revinclude` of a type the token may not read, `*`, or `:iterate`.
pub const INCLUDE: &str = "least-privilege.include";
/// Chained or `_has:` searches that are not pinned to the launch patient.
pub const CHAIN: &str = "least-privilege.chain";
/// `_filter`, `_query`, `_contained` (configurable) in a patient-bound search.
pub const SEARCH_PARAMETER: &str = "least-privilege.search-parameter";
/// An operation that is not allowed, or `$everything` without the scopes it needs.
pub const OPERATION: &str = "least-privilege.operation";
/// `$export` of types that are not granted.
pub const EXPORT_TYPE: &str = "least-privilege.export-type";
/// `$export` in the wrong scope context.
pub const EXPORT_CONTEXT: &str = "least-privilege.export-context";
/// `Group/[id]/$export` of a Group that is not configured.
pub const EXPORT_GROUP: &str = "least-privilege.export-group";
/// None of the caller's roles permits the access.
pub const ROLE: &str = "least-privilege.role";
/// Break-the-glass refused (role, reason), and the finding of a valid one.
pub const BREAK_GLASS: &str = "least-privilege.break-glass";
/// A write that does not stay in the launch patient's compartment.
pub const WRITE_PATIENT: &str = "least-privilege.write-patient";
/// An update, patch or delete of a stored resource that is not the launch patient's, as the
/// gateway read it before the write.
pub const STORED_OWNER: &str = "least-privilege.stored-owner";
/// A returned resource outside the launch patient's compartment.
pub const RESPONSE_COMPARTMENT: &str = "least-privilege.response-compartment";
/// A returned resource no scope lets the token read.
pub const RESPONSE_SCOPE: &str = "least-privilege.response-scope";
/// A response that must be checked but is not JSON the module can read.
pub const RESPONSE_FORMAT: &str = "least-privilege.response-format";
/// A returned resource with a security label the caller may not see.
pub const SECURITY_LABEL: &str = "least-privilege.security-label";
/// An interaction the module does not understand.
pub const INTERACTION: &str = "least-privilege.interaction";
/// Finding: scopes that did not parse and were ignored.
pub const MALFORMED_SCOPE: &str = "least-privilege.malformed-scope";

/// Why a request (or response) is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub rule: &'static str,
    pub message: String,
}

impl Refusal {
    /// A 403 under `rule`.
    pub fn new(rule: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status: 403,
            rule,
            message: message.into(),
        }
    }

    /// The same refusal, its message prefixed with where it happened (`bundle entry 2`).
    pub fn within(self, place: &str) -> Self {
        Refusal {
            message: format!("{place}: {}", self.message),
            ..self
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary (the contract caps messages
/// and finding details at 1024 bytes).
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub(3);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}
