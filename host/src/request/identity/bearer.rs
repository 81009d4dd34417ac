//! Finding the bearer token of a request (RFC 6750 §2): in the `Authorization` header or in
//! an `access_token` query or form parameter, never in more than one place.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::{Rejection, rule, unauthorized};
use crate::engine::Param;

/// The parameter name RFC 6750 §2.2 and §2.3 give the token.
const ACCESS_TOKEN_PARAM: &str = "access_token";

/// Finds the bearer token: `Authorization: Bearer <token>` or an `access_token` query/form
/// parameter (RFC 6750 §2.3). Returns `Ok(None)` when there is none. Rejects
/// (`identity.token-in-many-places`) a token in more than one place or more than one
/// `Authorization` header, and (`identity.bad-authorization`) a scheme other than `Bearer`
/// or an empty or malformed token.
pub fn extract_token(headers: &HeaderMap, params: &[Param]) -> Result<Option<String>, Rejection> {
    let mut authorizations = headers.get_all(AUTHORIZATION).iter();
    let from_header = match (authorizations.next(), authorizations.next()) {
        (None, _) => None,
        (Some(value), None) => Some(bearer_credentials(value)?),
        // Two headers could carry two identities; which one a backend would honour is not
        // ours to guess.
        (Some(_), Some(_)) => {
            return Err(unauthorized(
                rule::TOKEN_IN_MANY_PLACES,
                "the request has more than one `Authorization` header",
            ));
        }
    };

    let mut access_tokens = params
        .iter()
        .filter(|param| param.name == ACCESS_TOKEN_PARAM);
    let from_param = match (access_tokens.next(), access_tokens.next()) {
        (None, _) => None,
        (Some(param), None) => Some(b64token(&param.value, "the `access_token` parameter")?),
        (Some(_), Some(_)) => {
            return Err(unauthorized(
                rule::TOKEN_IN_MANY_PLACES,
                "the request has more than one `access_token` parameter",
            ));
        }
    };

    match (from_header, from_param) {
        // RFC 6750 §2: clients MUST NOT use more than one method to transmit the token.
        (Some(_), Some(_)) => Err(unauthorized(
            rule::TOKEN_IN_MANY_PLACES,
            "the request has a token both in `Authorization` and in `access_token` (RFC 6750 §2)",
        )),
        (Some(token), None) | (None, Some(token)) => Ok(Some(token)),
        (None, None) => Ok(None),
    }
}

/// `Bearer <b64token>` (RFC 6750 §2.1). The scheme is case-insensitive (RFC 9110 §11.1).
fn bearer_credentials(value: &http::HeaderValue) -> Result<String, Rejection> {
    let value = value.to_str().map_err(|_| {
        unauthorized(
            rule::BAD_AUTHORIZATION,
            "the `Authorization` header is not visible ASCII",
        )
    })?;
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("Bearer") {
        // The scheme is not quoted: a client that forgot it would have its token echoed.
        return Err(unauthorized(
            rule::BAD_AUTHORIZATION,
            "the `Authorization` scheme is not `Bearer` (RFC 6750 §2.1)",
        ));
    }
    b64token(
        credentials.trim_start_matches(' '),
        "the `Authorization` header",
    )
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn b64token(token: &str, place: &str) -> Result<String, Rejection> {
    if token.is_empty() {
        return Err(unauthorized(
            rule::BAD_AUTHORIZATION,
            format!("{place} has an empty bearer token"),
        ));
    }
    let body = token.trim_end_matches('=');
    let well_formed = !body.is_empty()
        && body
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-._~+/".contains(&byte));
    if !well_formed {
        return Err(unauthorized(
            rule::BAD_AUTHORIZATION,
            format!("{place} has a bearer token with characters outside RFC 6750 §2.1's b64token"),
        ));
    }
    Ok(token.to_string())
}
