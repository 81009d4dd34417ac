//! The canonical request-target: one decoded path and query for every request, with ambiguous
//! spellings rejected, re-encoded in a single spelling for the upstream.
//!
//! Proxies and servers disagree on encoded separators, dot segments, matrix parameters and
//! repeated parameters; each disagreement lets a request mean one thing to the gateway and
//! another to the upstream. The gateway decides once here, refuses what it cannot decide, and
//! forwards exactly the target it decided on (`CanonicalTarget::target`).

use crate::engine::Param;
use crate::request::{Rejection, quote};

use percent::{Component, decode, encode_query_component, encode_segment};

mod parameters;
mod percent;
#[cfg(test)]
mod tests;

/// Parameters whose repetition decides whose data a search returns. FHIR servers disagree on
/// what `patient=1&patient=2` means (AND, first wins, last wins; search.html#combining), so a
/// policy that checks one of them can be shown a different patient than the server uses.
const GOVERNING_PARAMS: &[&str] = &["patient", "subject", "beneficiary", "_id", "identifier"];

/// RFC 6750 §2.3's query parameter for the bearer token.
const ACCESS_TOKEN_PARAM: &str = "access_token";

/// A request-target after canonicalization.
#[derive(Debug, Clone)]
pub struct CanonicalTarget {
    /// Decoded path segments, e.g. `["fhir", "Patient", "123", "$everything"]`; empty for `/`.
    pub segments: Vec<String>,
    /// The canonical path, re-encoded from `segments`, starting with `/`, e.g.
    /// `/fhir/Patient/123/$everything`.
    pub path: String,
    /// Query parameters in request order, percent-decoded. Names keep modifiers and chains as
    /// written (`subject:Patient`, `_has:Observation:patient:code`).
    pub params: Vec<Param>,
}

impl CanonicalTarget {
    /// Builds a target from decoded parts, computing `path`.
    pub fn from_parts(segments: Vec<String>, params: Vec<Param>) -> Self {
        let path = encode_path(&segments);
        CanonicalTarget {
            segments,
            path,
            params,
        }
    }

    /// The canonical query string re-encoded from `params`, without the leading `?`; empty
    /// when there are no parameters. Every parameter is written `name=value`.
    pub fn query(&self) -> String {
        let mut query = String::new();
        for (index, param) in self.params.iter().enumerate() {
            if index > 0 {
                query.push('&');
            }
            query.extend(encode_query_component(&param.name));
            query.push('=');
            query.extend(encode_query_component(&param.value));
        }
        query
    }

    /// The request-target forwarded upstream: `path`, then `?` and the query when there is one.
    pub fn target(&self) -> String {
        let query = self.query();
        if query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, query)
        }
    }

    /// The same target below a route prefix: the segments after `prefix_segments` when they
    /// are a segment-wise prefix (so `/fhirx` is not below `/fhir`), else `None`.
    pub fn strip_prefix(&self, prefix_segments: &[String]) -> Option<CanonicalTarget> {
        let rest = self.segments.strip_prefix(prefix_segments)?;
        Some(CanonicalTarget::from_parts(
            rest.to_vec(),
            self.params.clone(),
        ))
    }
}

/// Canonicalizes a raw origin-form request-target (path and optional query, exactly as
/// received on the wire, e.g. `/fhir/Patient?name=smith&_count=10`).
pub fn canonicalize_target(raw_target: &str) -> Result<CanonicalTarget, Rejection> {
    // RFC 9112 §3.2: a server-bound request uses origin-form; absolute-form is only for
    // proxies and asterisk-form only for OPTIONS, neither of which this gateway serves.
    if !raw_target.starts_with('/') {
        return Err(Rejection::bad_request(
            "canonical.not-origin-form",
            format!(
                "request target `{}` is not in origin form; expected a path starting with `/`",
                quote(raw_target)
            ),
        ));
    }
    check_visible_ascii(raw_target.as_bytes(), "request target")?;
    // RFC 9110 §7.1: the fragment is never part of a request-target.
    if raw_target.contains('#') {
        return Err(Rejection::bad_request(
            "canonical.fragment",
            format!(
                "request target `{}` contains `#`, which starts a fragment and is never sent \
                 to a server; expected `%23` if `#` is data",
                quote(raw_target)
            ),
        ));
    }
    let (raw_path, raw_query) = match raw_target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (raw_target, None),
    };
    let segments = parse_path(raw_path)?;
    let params = match raw_query {
        Some(query) => parse_query(query)?,
        None => Vec::new(),
    };
    Ok(CanonicalTarget::from_parts(segments, params))
}

pub use parameters::operation_parameters;

/// For a POST to an operation (`.../$name`) whose body is a `Parameters` resource: `target`
/// with the body's simple parameters after the query's, the view policies judge. `None` for
/// every other request (nothing to add).
pub fn with_operation_parameters(
    method: &http::Method,
    target: &CanonicalTarget,
    body: Option<&[u8]>,
) -> Option<CanonicalTarget> {
    let is_operation = target
        .segments
        .last()
        .is_some_and(|segment| segment.starts_with('$'));
    if method != http::Method::POST || !is_operation {
        return None;
    }
    let added = operation_parameters(body?);
    if added.is_empty() {
        return None;
    }
    let mut judged = target.clone();
    judged.params.extend(added);
    Some(judged)
}

/// Parses an `application/x-www-form-urlencoded` body (`POST [type]/_search`) with the same
/// decoding rules as the query string (FHIR R4 search.html#Introduction: the body carries the
/// same parameters a GET would put in the query).
pub fn parse_form(body: &[u8]) -> Result<Vec<Param>, Rejection> {
    check_visible_ascii(body, "form body")?;
    // Checked above: every byte is visible ASCII, so the body is UTF-8.
    let text = std::str::from_utf8(body).map_err(|_| {
        Rejection::bad_request(
            "canonical.invalid-utf8",
            "form body is not UTF-8; expected an `application/x-www-form-urlencoded` body",
        )
    })?;
    parse_query(text)
}

/// Rejects a parameter list in which a parameter that governs whose data is returned
/// (`patient`, `subject`, `beneficiary`, `_id`, `identifier`) appears more than once, in any
/// spelling: `patient` and `patient:Patient`, or `subject` and `subject.name`, count as the
/// same parameter. A comma list inside one value (`patient=1,2`) is one parameter with an OR
/// meaning defined by FHIR (search.html#combining) and is fine.
pub fn check_governing_duplicates(params: &[Param]) -> Result<(), Rejection> {
    for governing in GOVERNING_PARAMS {
        let mut spellings = params
            .iter()
            .map(|param| param.name.as_str())
            .filter(|name| base_name(name).eq_ignore_ascii_case(governing));
        if let (Some(first), Some(second)) = (spellings.next(), spellings.next()) {
            return Err(Rejection::bad_request(
                "canonical.duplicate-governing-parameter",
                format!(
                    "parameter `{governing}` appears more than once (`{}` and `{}`), which \
                     servers read differently; expected it once, with a comma list for several \
                     values",
                    quote(first),
                    quote(second)
                ),
            ));
        }
    }
    Ok(())
}

/// Rejects a parameter spelled like RFC 6750 §2.3's `access_token` in another case
/// (`ACCESS_TOKEN`, `Access_Token`, also when percent-encoded, as names are compared
/// decoded). Only the exact name is taken as the token and removed from the forwarded URL;
/// another spelling would be forwarded, and a server that matches names case-insensitively
/// would take a token the gateway never verified, left in URLs and logs.
pub fn check_access_token_spelling(params: &[Param]) -> Result<(), Rejection> {
    match params.iter().find(|param| {
        param.name != ACCESS_TOKEN_PARAM && param.name.eq_ignore_ascii_case(ACCESS_TOKEN_PARAM)
    }) {
        None => Ok(()),
        Some(param) => Err(Rejection::bad_request(
            "canonical.access-token-spelling",
            format!(
                "parameter `{}` looks like a bearer token parameter; expected the token in \
                 `Authorization: Bearer`, or in a parameter spelled exactly `access_token`",
                quote(&param.name)
            ),
        )),
    }
}

/// The parameter a name refers to, without FHIR modifiers (`:Patient`) or chains (`.name`).
pub fn base_name(name: &str) -> &str {
    name.split([':', '.']).next().unwrap_or(name)
}

fn check_visible_ascii(bytes: &[u8], what: &str) -> Result<(), Rejection> {
    // RFC 3986 §2 and RFC 9112 §3.2: a request-target is visible ASCII; anything else is
    // either an attack on a lenient parser or a client bug, and both are refused.
    match bytes.iter().position(|byte| !(0x21..=0x7E).contains(byte)) {
        None => Ok(()),
        Some(position) => {
            let byte = bytes.get(position).copied().unwrap_or_default();
            Err(Rejection::bad_request(
                "canonical.invalid-character",
                format!(
                    "{what} `{}` contains the byte 0x{byte:02X} at offset {position}; \
                     expected visible ASCII, with anything else percent-encoded",
                    quote(&String::from_utf8_lossy(bytes))
                ),
            ))
        }
    }
}

fn parse_path(raw_path: &str) -> Result<Vec<String>, Rejection> {
    // Some servers (IIS, Tomcat on Windows) treat `\` as `/`; the gateway would not.
    if raw_path.contains('\\') {
        return Err(Rejection::bad_request(
            "canonical.backslash",
            format!(
                "path `{}` contains `\\`; expected `/` as the only separator",
                quote(raw_path)
            ),
        ));
    }
    // RFC 3986 §3.3 allows `;` parameters in a segment; servlet containers strip them
    // (`/Patient;x=1/123`), so the gateway and the upstream would see different paths.
    if raw_path.contains(';') {
        return Err(Rejection::bad_request(
            "canonical.matrix-parameter",
            format!(
                "path `{}` contains `;` (a matrix parameter); expected parameters in the query",
                quote(raw_path)
            ),
        ));
    }
    let mut body = raw_path.strip_prefix('/').unwrap_or(raw_path);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    // One trailing `/` is dropped (`/fhir/Patient/` is `/fhir/Patient`): FHIR defines no
    // meaning for it and clients add it freely.
    if let Some(trimmed) = body.strip_suffix('/') {
        body = trimmed;
    }
    let mut segments = Vec::new();
    for raw_segment in body.split('/') {
        if raw_segment.is_empty() {
            return Err(Rejection::bad_request(
                "canonical.empty-segment",
                format!(
                    "path `{}` contains an empty segment (`//`); expected one `/` between segments",
                    quote(raw_path)
                ),
            ));
        }
        // RFC 3986 §5.2.4: dot segments are resolved differently (or not at all) by
        // different servers, which turns `/fhir/Practitioner/../Patient/1` into a path the
        // policies never saw.
        if raw_segment == "." || raw_segment == ".." {
            return Err(Rejection::bad_request(
                "canonical.dot-segment",
                format!(
                    "path `{}` contains the dot segment `{raw_segment}`; expected a path without \
                     `.` or `..` segments",
                    quote(raw_path)
                ),
            ));
        }
        segments.push(decode(raw_segment, Component::PathSegment)?);
    }
    Ok(segments)
}

fn parse_query(raw_query: &str) -> Result<Vec<Param>, Rejection> {
    let mut params = Vec::new();
    // Empty parts from `&&` or a trailing `&` carry nothing and are dropped.
    for part in raw_query.split('&').filter(|part| !part.is_empty()) {
        let (raw_name, raw_value) = part.split_once('=').unwrap_or((part, ""));
        let name = decode(raw_name, Component::QueryName)?;
        if name.is_empty() {
            return Err(Rejection::bad_request(
                "canonical.empty-parameter-name",
                format!(
                    "query part `{}` has no parameter name; expected `name=value`",
                    quote(part)
                ),
            ));
        }
        // A name padded with spaces would be a different parameter to the gateway and the
        // same one to a server that trims it.
        if name.chars().any(char::is_whitespace) {
            return Err(Rejection::bad_request(
                "canonical.bad-parameter-name",
                format!(
                    "query parameter name `{}` contains whitespace; expected a FHIR parameter name",
                    quote(&name)
                ),
            ));
        }
        // Frameworks honour `_method` as a method override: a GET that a server executes as
        // a DELETE would be classified as a read.
        if name.eq_ignore_ascii_case("_method") {
            return Err(Rejection::bad_request(
                "canonical.method-override",
                format!(
                    "query parameter `{}` overrides the HTTP method; expected the intended \
                     method on the request line",
                    quote(&name)
                ),
            ));
        }
        let value = decode(raw_value, Component::QueryValue)?;
        params.push(Param { name, value });
    }
    Ok(params)
}

fn encode_path(segments: &[String]) -> String {
    if segments.is_empty() {
        return "/".to_string();
    }
    let mut path = String::new();
    for segment in segments {
        path.push('/');
        path.extend(encode_segment(segment));
    }
    path
}
