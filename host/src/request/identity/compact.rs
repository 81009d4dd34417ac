//! A JWT in JWS compact serialization (RFC 7515 §7.1, RFC 7519 §7.2) taken apart before
//! its signature is checked: the header, the payload's claims as JSON, and the bytes the
//! signature covers. Nothing here is trusted yet; the verifier reads `alg`, `kid` and `iss`
//! only to choose the key.

use serde_json::{Map, Value};

use super::json::{self, JsonError};
use super::{Rejection, base64url, rule, unauthorized};

/// The largest token accepted. Real access tokens are a few KiB; the bound keeps the JSON
/// parsing of an unauthenticated input small.
pub(super) const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A token split into its parts, its signature not yet verified.
#[derive(Debug)]
pub(super) struct UnverifiedToken<'a> {
    /// The header's `alg`, as written.
    pub alg: String,
    /// The header's `kid`, if any.
    pub kid: Option<String>,
    /// The payload, a JSON object.
    pub claims: Map<String, Value>,
    /// `header.payload`, the bytes the signature covers (RFC 7515 §5.2).
    pub signing_input: &'a str,
    /// The base64url signature.
    pub signature: &'a str,
}

pub(super) fn parse(token: &str) -> Result<UnverifiedToken<'_>, Rejection> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(unauthorized(
            rule::TOKEN_TOO_LARGE,
            format!(
                "the bearer token has {} bytes; at most {MAX_TOKEN_BYTES} are accepted",
                token.len()
            ),
        ));
    }
    let segments: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = segments[..] else {
        // Five segments are an encrypted JWT (RFC 7516 §7.1), which no issuer here produces.
        return Err(malformed(if segments.len() == 5 {
            "encrypted tokens (JWE) are not accepted; expected a signed JWT"
        } else {
            "expected a JWT: three base64url segments separated by `.` (RFC 7515 §7.1)"
        }));
    };
    let signing_input = &token[..header.len() + 1 + payload.len()];
    if !segments
        .iter()
        .all(|segment| base64url::is_alphabet(segment))
    {
        return Err(malformed(
            "the token has characters outside base64url (RFC 7515 §2)",
        ));
    }
    let header = json_object(header, "header")?;
    let claims = json_object(payload, "payload")?;

    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        _ => {
            return Err(malformed(
                "the header has no string `alg` (RFC 7515 §4.1.1)",
            ));
        }
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => {
            return Err(malformed(
                "the header's `kid` is not a string (RFC 7515 §4.1.4)",
            ));
        }
    };
    // RFC 7515 §4.1.11: a recipient MUST reject a token whose `crit` lists extensions it does
    // not understand, and the gateway understands none.
    if header.contains_key("crit") {
        return Err(malformed(
            "the header has `crit` extensions, which the gateway does not support \
             (RFC 7515 §4.1.11)",
        ));
    }
    // `jku`, `x5u`, `jwk` and `x5c` are ignored on purpose: keys come from the configuration
    // only, never from the token that they would vouch for (RFC 8725 §3.10).

    Ok(UnverifiedToken {
        alg,
        kid,
        claims,
        signing_input,
        signature,
    })
}

fn json_object(segment: &str, part: &str) -> Result<Map<String, Value>, Rejection> {
    let bytes = base64url::decode(segment)
        .ok_or_else(|| malformed(format!("the {part} is not valid base64url (RFC 7515 §2)")))?;
    // Before anything is read from it: `Value` below would keep the last of repeated names.
    // RFC 7519 §4 (claims) and RFC 7515 §5.2 step 4 (header) allow rejecting such a token,
    // and the gateway does, at any depth, so that no reader of the token sees other claims
    // than the policies did.
    if let Err(JsonError::DuplicateMember(detail)) = json::check_unique_members(&bytes) {
        return Err(unauthorized(
            rule::DUPLICATE_JSON_KEY,
            format!(
                "the token's {part} repeats a JSON member ({detail}); expected each member once \
                 (RFC 7519 §4, RFC 7515 §5.2)"
            ),
        ));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(malformed(format!(
            "the {part} is not a JSON object (RFC 7519 §7.2)"
        ))),
    }
}

fn malformed(message: impl Into<String>) -> Rejection {
    unauthorized(rule::MALFORMED_TOKEN, message)
}
