//! Header and method checks before a request is trusted, and the header set forwarded
//! upstream.
//!
//! A proxy and the server behind it must agree on the method, the message length and the
//! target host, or a request can be smuggled past the policies. The checks here refuse the
//! combinations on which they might disagree; `upstream_headers` drops what only describes
//! the client's connection to the gateway.

use http::Method;
use http::header::{self, HeaderMap, HeaderName};

use crate::request::{Rejection, quote};

#[cfg(test)]
mod tests;

/// Client-sent headers in this namespace are refused: the gateway's own headers must never
/// be forged by a client.
const RESERVED_PREFIX: &str = "x-ehrgate-";

/// Headers that frameworks honour to run a different method than the one on the request
/// line, which would let a `POST` the policies allowed execute as a `DELETE`. The
/// `x-original-method`/`x-override-method` pair is what IIS URL Rewrite and some Java and
/// PHP stacks read.
const METHOD_OVERRIDE_HEADERS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    "x-override-method",
];

/// Headers that frameworks honour to route a different path than the one on the request line
/// (Symfony, Zend/Laminas and IIS URL Rewrite read them), which would let a request the
/// policies judged for `/Patient/1` execute on any other URL. Refused like the method
/// overrides, not removed: either way the request would mean something other than what the
/// client asked, and a refusal tells the client so instead of quietly changing its request.
const TARGET_OVERRIDE_HEADERS: &[&str] = &["x-original-url", "x-rewrite-url"];

/// RFC 9110 §7.6.1 hop-by-hop headers, plus the pre-standard `proxy-connection` and
/// `keep-alive` (RFC 9110 §7.6.1 names them as ones to remove too).
const HOP_BY_HOP_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "trailer",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Headers that claim facts about the client's connection. Only the gateway may state them
/// upstream; a client could otherwise pose as an internal address or another host. They are
/// removed, not refused, as `Forwarded` and `X-Forwarded-*` always were: they describe the
/// hop before the gateway, which the gateway replaces with its own view from the socket,
/// and well-behaved clients behind a proxy send them in good faith. The client-IP names are
/// the ones CDNs and load balancers set (Akamai and Cloudflare `True-Client-IP`, Rackspace
/// `X-Cluster-Client-IP`) and that frameworks trust for allow-lists and audit.
const CLIENT_CONNECTION_HEADERS: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "client-ip",
    "x-host",
];
/// Covers `X-Forwarded-For`, `-Host`, `-Proto`, `-Port`, `-Prefix`, `-Server`, ...
const FORWARDED_PREFIX: &str = "x-forwarded-";

/// Headers the gateway sets or judges for the upstream, besides the families above: their
/// underscore twins are refused too.
const GATEWAY_OWNED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "authorization",
    "x-request-id",
    "prefer",
    "if-none-exist",
];

/// Rejects ambiguous or dangerous method and header combinations. `authority` is the URI
/// authority (HTTP/2 `:authority` or an absolute-form target) when there is one.
pub fn check_request(
    method: &Method,
    authority: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), Rejection> {
    check_method(method)?;
    check_method_override(headers)?;
    check_conditional_create(headers)?;
    check_target_override(headers)?;
    check_reserved(headers)?;
    check_underscore_twins(headers)?;
    check_connection(headers)?;
    check_host(authority, headers)?;
    check_length(headers)?;
    check_authorization(headers)
}

/// The headers to send upstream: the client's headers without hop-by-hop headers, without
/// client-sent forwarding and client-IP headers (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`,
/// `True-Client-IP`, `X-Client-IP`, `X-Cluster-Client-IP`, `Client-IP`, `X-Host`), without
/// the override headers and underscore twins `check_request` refuses, without
/// `Host` and `Content-Length` (the forwarder sets them for the canonical request) and
/// without any `x-ehrgate-*` header. Everything else (Authorization, Accept, Content-Type,
/// Prefer, If-Match, ...) is kept, repeated values included, in order.
pub fn upstream_headers(headers: &HeaderMap) -> HeaderMap {
    let mut forwarded = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if is_forwardable(name) {
            forwarded.append(name.clone(), value.clone());
        }
    }
    forwarded
}

fn is_forwardable(name: &HeaderName) -> bool {
    // Header names in an `http::HeaderMap` are lower case.
    let name = name.as_str();
    // The override headers and the underscore twins are refused by `check_request`; they are
    // left out here too so that no caller can forward them by skipping the check.
    let refused = METHOD_OVERRIDE_HEADERS.contains(&name)
        || TARGET_OVERRIDE_HEADERS.contains(&name)
        || (name.contains('_') && is_sensitive(&name.replace('_', "-")));
    !(refused
        || HOP_BY_HOP_HEADERS.contains(&name)
        || CLIENT_CONNECTION_HEADERS.contains(&name)
        || name.starts_with(FORWARDED_PREFIX)
        || name.starts_with(RESERVED_PREFIX)
        || name == header::HOST
        || name == header::CONTENT_LENGTH)
}

fn check_method(method: &Method) -> Result<(), Rejection> {
    // FHIR R4 http.html uses exactly these methods. CONNECT, TRACE, OPTIONS and extension
    // methods have no FHIR meaning, so no policy could have judged them.
    let allowed = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    if allowed.contains(method) {
        return Ok(());
    }
    Err(Rejection::new(
        405,
        "headers.method-not-allowed",
        format!(
            "method `{}` is not allowed; expected GET, HEAD, POST, PUT, PATCH or DELETE",
            quote(method.as_str())
        ),
    ))
}

fn check_method_override(headers: &HeaderMap) -> Result<(), Rejection> {
    match METHOD_OVERRIDE_HEADERS
        .iter()
        .find(|name| headers.contains_key(**name))
    {
        None => Ok(()),
        Some(name) => Err(Rejection::bad_request(
            "headers.method-override",
            format!(
                "header `{name}` overrides the HTTP method; expected the intended method on \
                 the request line"
            ),
        )),
    }
}

/// R4 http.html#ccreate: `If-None-Exist` makes a create a search first, and the server
/// answers with the matching resource (or how many matched) instead of creating one. The
/// criteria are a query no policy sees, so a create-only grant would become a read of any
/// resource; conditional creates are refused.
fn check_conditional_create(headers: &HeaderMap) -> Result<(), Rejection> {
    if !headers.contains_key("if-none-exist") {
        return Ok(());
    }
    Err(Rejection::bad_request(
        "headers.conditional-create",
        "header `If-None-Exist` (conditional create) searches with criteria no policy checks; \
         expected a plain create, with a search first if duplicates matter",
    ))
}

fn check_target_override(headers: &HeaderMap) -> Result<(), Rejection> {
    match TARGET_OVERRIDE_HEADERS
        .iter()
        .find(|name| headers.contains_key(**name))
    {
        None => Ok(()),
        Some(name) => Err(Rejection::bad_request(
            "headers.target-override",
            format!(
                "header `{name}` overrides the request URL; expected the intended path on the \
                 request line"
            ),
        )),
    }
}

/// Whether a header name, once spelled the way CGI and WSGI spell it, is one the gateway
/// owns, removes or judges.
fn is_sensitive(name: &str) -> bool {
    HOP_BY_HOP_HEADERS.contains(&name)
        || CLIENT_CONNECTION_HEADERS.contains(&name)
        || METHOD_OVERRIDE_HEADERS.contains(&name)
        || TARGET_OVERRIDE_HEADERS.contains(&name)
        || GATEWAY_OWNED_HEADERS.contains(&name)
        || name.starts_with(FORWARDED_PREFIX)
        || name.starts_with(RESERVED_PREFIX)
}

/// RFC 3875 §4.1.18: CGI (and WSGI, PHP-FPM, Rack after it) exposes a header as
/// `HTTP_` + its name upper-cased with `-` turned into `_`, so `x_ehrgate_subject` and
/// `X-Ehrgate-Subject` reach such an upstream as the same variable, and which one wins is the
/// server's choice. A twin of a header the gateway sets, removes or judges would forge or
/// undo that decision (`Transfer_Encoding` reframes the body, `x_forwarded_for` poses as
/// another client), so it is refused. Twins of other headers are forwarded unchanged.
fn check_underscore_twins(headers: &HeaderMap) -> Result<(), Rejection> {
    for name in headers.keys() {
        let name = name.as_str();
        if !name.contains('_') {
            continue;
        }
        // Header names in an `http::HeaderMap` are lower case already.
        let dashed = name.replace('_', "-");
        if is_sensitive(&dashed) {
            return Err(Rejection::bad_request(
                "headers.underscore-name",
                format!(
                    "header `{}` is read as `{}` by CGI-style servers, which the gateway \
                     controls; expected `-` instead of `_`, or no such header",
                    quote(name),
                    quote(&dashed)
                ),
            ));
        }
    }
    Ok(())
}

/// RFC 9110 §9.3.1, §9.3.2 and §9.3.5: content in a GET, HEAD or DELETE request has no
/// defined semantics, and some servers act on it anyway (a body that is a search, or a
/// second request to a server that ignores the framing). No policy judges such a body, so
/// it is refused: when `Content-Length` is above 0, when `Transfer-Encoding` is present, or
/// when content arrived without either (`has_body`, HTTP/2 DATA frames need no framing
/// header). `Content-Length: 0` states that there is no body and is accepted. The proxy
/// calls this after identification, so that a request without a token is still told first
/// that it needs one; the body is refused before anything is forwarded either way.
pub fn check_unexpected_body(
    method: &Method,
    headers: &HeaderMap,
    has_body: bool,
) -> Result<(), Rejection> {
    if !matches!(*method, Method::GET | Method::HEAD | Method::DELETE) {
        return Ok(());
    }
    let declares_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|length| length.as_bytes().iter().any(|byte| *byte != b'0'));
    if !(declares_body || has_body) {
        return Ok(());
    }
    Err(Rejection::bad_request(
        "headers.unexpected-body",
        format!(
            "a `{}` request has a body, which has no meaning for it (RFC 9110 §9.3); expected \
             no body",
            quote(method.as_str())
        ),
    ))
}

fn check_reserved(headers: &HeaderMap) -> Result<(), Rejection> {
    match headers
        .keys()
        .find(|name| name.as_str().starts_with(RESERVED_PREFIX))
    {
        None => Ok(()),
        Some(name) => Err(Rejection::bad_request(
            "headers.reserved-header",
            format!(
                "header `{}` is reserved for the gateway; expected no `{RESERVED_PREFIX}*` headers",
                quote(name.as_str())
            ),
        )),
    }
}

fn check_connection(headers: &HeaderMap) -> Result<(), Rejection> {
    // RFC 9110 §7.6.1: every header named in `Connection` is removed by the next hop. Naming
    // `Authorization` or a forwarding header would make the gateway's view and the upstream's
    // differ, so only the two connection options without that effect are accepted.
    for value in headers.get_all(header::CONNECTION) {
        let Ok(text) = value.to_str() else {
            return Err(Rejection::bad_request(
                "headers.connection-option",
                "header `connection` is not visible ASCII; expected `keep-alive` or `close`",
            ));
        };
        let option = text
            .split(',')
            .map(str::trim)
            .filter(|option| !option.is_empty())
            .find(|option| {
                !option.eq_ignore_ascii_case("keep-alive") && !option.eq_ignore_ascii_case("close")
            });
        if let Some(option) = option {
            return Err(Rejection::bad_request(
                "headers.connection-option",
                format!(
                    "header `connection` names `{}`; expected only `keep-alive` or `close`",
                    quote(option)
                ),
            ));
        }
    }
    // RFC 9110 §7.8: a protocol switch (WebSocket, h2c) would carry traffic the policies
    // never see.
    if headers.contains_key(header::UPGRADE) {
        return Err(Rejection::bad_request(
            "headers.upgrade",
            "header `upgrade` asks to switch protocols; expected plain HTTP requests only",
        ));
    }
    Ok(())
}

fn check_host(authority: Option<&str>, headers: &HeaderMap) -> Result<(), Rejection> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    // RFC 9112 §3.2: a request with more than one Host is answered with 400.
    if hosts.next().is_some() {
        return Err(Rejection::bad_request(
            "headers.duplicate-host",
            "request has more than one `host` header; expected exactly one",
        ));
    }
    let host = match host {
        None => None,
        Some(value) => match value.to_str() {
            Ok(text) if !text.is_empty() => Some(text),
            _ => {
                return Err(Rejection::bad_request(
                    "headers.invalid-host",
                    "header `host` is empty or not visible ASCII; expected the target's host \
                     and port",
                ));
            }
        },
    };
    match (host, authority) {
        (None, None) => Err(Rejection::bad_request(
            "headers.missing-host",
            "request has neither a `host` header nor a URI authority; expected one of them",
        )),
        // RFC 9112 §3.2.2 lets a proxy replace Host by the absolute-form authority and RFC
        // 9113 §8.3.1 says `:authority` wins over Host; a gateway that routes on one while
        // the upstream routes on the other is the confusion this refuses.
        (Some(host), Some(authority)) if !host.eq_ignore_ascii_case(authority) => {
            Err(Rejection::bad_request(
                "headers.host-mismatch",
                format!(
                    "header `host` is `{}` but the request targets `{}`; expected them to agree",
                    quote(host),
                    quote(authority)
                ),
            ))
        }
        _ => Ok(()),
    }
}

fn check_length(headers: &HeaderMap) -> Result<(), Rejection> {
    // RFC 9112 §6.1: Content-Length with Transfer-Encoding is a request-smuggling vector; a
    // server may reject it, and a gateway in front of servers that do not must. hyper's
    // HTTP/1 parser already lets Transfer-Encoding win and drops the length (§6.3), and
    // HTTP/2 has no Transfer-Encoding: this refuses the pair should a parser ever pass it.
    if headers.contains_key(header::CONTENT_LENGTH)
        && headers.contains_key(header::TRANSFER_ENCODING)
    {
        return Err(Rejection::bad_request(
            "headers.length-and-encoding",
            "request has both `content-length` and `transfer-encoding`; expected one of them",
        ));
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let length = lengths.next();
    // RFC 9110 §8.6 lets a recipient merge identical repeats; the gateway refuses all repeats
    // so that no recipient has to choose.
    if lengths.next().is_some() {
        return Err(Rejection::bad_request(
            "headers.duplicate-content-length",
            "request has more than one `content-length` header; expected exactly one",
        ));
    }
    if let Some(length) = length {
        let valid = !length.is_empty() && length.as_bytes().iter().all(u8::is_ascii_digit);
        if !valid {
            return Err(Rejection::bad_request(
                "headers.invalid-content-length",
                format!(
                    "header `content-length` is `{}`; expected a decimal number of bytes",
                    quote(&String::from_utf8_lossy(length.as_bytes()))
                ),
            ));
        }
    }
    Ok(())
}

fn check_authorization(headers: &HeaderMap) -> Result<(), Rejection> {
    // Identity verifies one token; with two, the upstream may honour the other one.
    if headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(Rejection::bad_request(
            "headers.duplicate-authorization",
            "request has more than one `authorization` header; expected exactly one",
        ));
    }
    Ok(())
}
