//! Which response headers a policy may set: an allow-list per route. A policy's decision may
//! carry only the headers its route's `policy_response_headers` names, plus the rate-limit
//! fields and `Retry-After` that rate limiting needs; any other header makes the decision a
//! `bad-output` fault. A deny-list cannot keep up with what a header can do to a client
//! (`Refresh` redirects, CORS grants credentials, `Strict-Transport-Security: max-age=0`
//! turns HSTS off, `Cache-Control: public` caches PHI in shared caches), so nothing is
//! allowed unless the operator names it.

use std::sync::Arc;

/// Headers every policy may set: the fields of the IETF draft `RateLimit` header fields for
/// HTTP (draft-ietf-httpapi-ratelimit-headers), their widespread `X-RateLimit-*` forms, and
/// `Retry-After` (RFC 9110 §10.2.3).
pub const ALWAYS_ALLOWED: &[&str] = &[
    "ratelimit",
    "ratelimit-policy",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "retry-after",
];

/// Headers no route may let a policy set, with why.
const NEVER_ALLOWED: &[(&str, &str)] = &[
    // RFC 9110 §7.6.1 and RFC 9113 §8.2.2: connection-specific (hop-by-hop) fields.
    ("connection", "hop-by-hop"),
    ("keep-alive", "hop-by-hop"),
    ("proxy-connection", "hop-by-hop"),
    ("te", "hop-by-hop"),
    ("trailer", "hop-by-hop"),
    ("transfer-encoding", "hop-by-hop"),
    ("upgrade", "hop-by-hop"),
    ("proxy-authenticate", "hop-by-hop"),
    ("proxy-authorization", "hop-by-hop"),
    // Framing and representation: they describe the body the upstream sent.
    ("content-length", "framing"),
    ("content-encoding", "framing"),
    ("content-type", "framing"),
    ("content-range", "framing"),
    ("content-disposition", "framing"),
    ("content-location", "framing"),
    ("date", "framing"),
    ("etag", "framing"),
    ("last-modified", "framing"),
    ("vary", "framing"),
    ("alt-svc", "framing"),
    ("host", "framing"),
    ("location", "framing"),
    ("refresh", "security"),
    ("link", "security"),
    ("www-authenticate", "security"),
    ("strict-transport-security", "security"),
    ("content-security-policy", "security"),
    ("content-security-policy-report-only", "security"),
    ("clear-site-data", "security"),
    ("x-frame-options", "security"),
    ("x-content-type-options", "security"),
    ("x-xss-protection", "security"),
    ("referrer-policy", "security"),
    ("permissions-policy", "security"),
    ("cross-origin-opener-policy", "security"),
    ("cross-origin-embedder-policy", "security"),
    ("cross-origin-resource-policy", "security"),
    ("timing-allow-origin", "security"),
    ("cache-control", "caching"),
    ("expires", "caching"),
    ("pragma", "caching"),
    ("age", "caching"),
    ("surrogate-control", "caching"),
    ("set-cookie", "cookie"),
    ("set-cookie2", "cookie"),
    ("cookie", "cookie"),
    ("x-request-id", "gateway-owned"),
];

/// Prefixes no route may let a policy set.
const NEVER_ALLOWED_PREFIXES: &[(&str, &str)] = &[
    ("access-control-", "security (CORS)"),
    ("x-ehrgate-", "gateway-owned"),
    ("x-forwarded-", "gateway-owned"),
    ("proxy-", "hop-by-hop"),
    ("sec-", "security"),
];

/// Why `name` (lower case) may never be on a route's allow-list, if it may not.
pub fn never_allowed(name: &str) -> Option<&'static str> {
    // Underscore and dash spellings are the same header to CGI-style backends and caches.
    let name = name.to_ascii_lowercase().replace('_', "-");
    NEVER_ALLOWED
        .iter()
        .find(|(forbidden, _)| *forbidden == name)
        .map(|(_, why)| *why)
        .or_else(|| {
            NEVER_ALLOWED_PREFIXES
                .iter()
                .find(|(prefix, _)| name.starts_with(prefix))
                .map(|(_, why)| *why)
        })
}

/// Whether `name` is a well-formed header name (RFC 9110 §5.1 token, lower case).
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

/// The headers a route's policies may set, lower case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseHeaderAllowList {
    configured: Arc<[Box<str>]>,
}

impl ResponseHeaderAllowList {
    /// The route's configured names (already checked by the config loader).
    pub fn new(configured: &[String]) -> Self {
        ResponseHeaderAllowList {
            configured: configured
                .iter()
                .map(|name| name.to_ascii_lowercase().into_boxed_str())
                .collect(),
        }
    }

    /// Whether a policy may set `name` (any case).
    pub fn allows(&self, name: &str) -> bool {
        ALWAYS_ALLOWED
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(name))
            || self
                .configured
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_headers_are_always_allowed_and_others_only_when_listed() {
        let none = ResponseHeaderAllowList::default();
        assert!(none.allows("RateLimit-Remaining"));
        assert!(none.allows("retry-after"));
        assert!(!none.allows("x-policy-note"));
        let listed = ResponseHeaderAllowList::new(&["x-policy-note".to_owned()]);
        assert!(listed.allows("X-Policy-Note"));
    }

    #[test]
    fn dangerous_names_can_never_be_listed() {
        for name in [
            "refresh",
            "Access-Control-Allow-Origin",
            "access-control-allow-credentials",
            "strict-transport-security",
            "cache-control",
            "date",
            "x-ehrgate-subject",
            "x_ehrgate_subject",
            "content-disposition",
            "clear-site-data",
            "link",
            "alt-svc",
            "set-cookie",
            "transfer_encoding",
        ] {
            assert!(never_allowed(name).is_some(), "{name}");
        }
        assert_eq!(never_allowed("x-policy-note"), None);
    }
}
