//! Step 3 of the request flow, "identify": finds the bearer token (`bearer`), verifies it
//! against the configured issuers (`verifier`, with the token's compact form in `compact`,
//! the refusal of repeated JSON members in `json`, and key material in `keys`, `pem` and
//! `jwks`), and maps its claims into the principal every policy sees (`claims`). The issuers
//! come from `[[identity.issuers]]` in the gateway's config (`config`).
//!
//! Every failure is a 401 [`Rejection`](super::Rejection) with one of the stable rule ids in
//! [`rule`]; no message ever quotes the token, a claim's value or its signature (a repeated
//! member is named, escaped and shortened, so the issuer's operator can find it).

mod base64url;
mod bearer;
mod claims;
mod compact;
mod config;
mod json;
mod jwks;
mod keys;
mod pem;
mod verifier;

#[cfg(test)]
mod tests;

pub use bearer::extract_token;
pub use config::{
    ClaimNames, DEFAULT_LEEWAY_SECS, DEFAULT_MAX_LIFETIME_SECS, IssuerConfig, KeyConfig,
    MAX_LEEWAY_SECS, default_leeway,
};
pub use verifier::{Verified, Verifier};

use super::Rejection;

/// The rule ids of identity rejections, for the OperationOutcome and the audit record.
pub mod rule {
    /// More than one `Authorization` header, more than one `access_token` parameter, or a
    /// token both in the header and in a parameter (RFC 6750 §2).
    pub const TOKEN_IN_MANY_PLACES: &str = "identity.token-in-many-places";
    /// An `Authorization` header that is not `Bearer <b64token>` (RFC 6750 §2.1), or an empty
    /// or malformed `access_token` parameter.
    pub const BAD_AUTHORIZATION: &str = "identity.bad-authorization";
    /// A token longer than 16 KiB.
    pub const TOKEN_TOO_LARGE: &str = "identity.token-too-large";
    /// Not a JWS in compact serialization with a JSON header and payload.
    pub const MALFORMED_TOKEN: &str = "identity.malformed-token";
    /// The header or the payload repeats a JSON member name, at any depth (RFC 7519 §4,
    /// RFC 7515 §5.2): refused rather than read as the last one.
    pub const DUPLICATE_JSON_KEY: &str = "identity.duplicate-json-key";
    /// `alg: none`, an algorithm the issuer does not allow, or a key that cannot verify it.
    pub const ALGORITHM_NOT_ALLOWED: &str = "identity.algorithm-not-allowed";
    /// No configured issuer has the token's `iss`.
    pub const UNKNOWN_ISSUER: &str = "identity.unknown-issuer";
    /// The token has no `kid` and its issuer does not set `allow_missing_kid`.
    pub const MISSING_KID: &str = "identity.missing-kid";
    /// The token's `kid` names no key of its issuer, or the token has no `kid` and its
    /// issuer has more than one key for its algorithm.
    pub const UNKNOWN_KID: &str = "identity.unknown-kid";
    /// The signature does not verify.
    pub const BAD_SIGNATURE: &str = "identity.bad-signature";
    /// A required claim (`exp`, `iss`, `aud`, `sub`, a client id) is absent.
    pub const MISSING_CLAIM: &str = "identity.missing-claim";
    /// A claim of the wrong JSON type or outside its limits.
    pub const BAD_CLAIM: &str = "identity.bad-claim";
    /// `exp` lies in the past by more than the issuer's leeway.
    pub const EXPIRED: &str = "identity.expired";
    /// `nbf` or `iat` lies in the future by more than the issuer's leeway.
    pub const NOT_YET_VALID: &str = "identity.not-yet-valid";
    /// `aud` names none of the issuer's configured audiences.
    pub const WRONG_AUDIENCE: &str = "identity.wrong-audience";
    /// The token lives longer than the issuer's `max_lifetime_secs`, or than 24 hours when
    /// the issuer sets none.
    pub const LIFETIME_TOO_LONG: &str = "identity.lifetime-too-long";
}

/// The 401 every identity failure answers with.
fn unauthorized(rule_id: &'static str, message: impl Into<String>) -> Rejection {
    Rejection::new(401, rule_id, message)
}
