//! Responses the gateway writes itself: refusals as FHIR R4 `OperationOutcome` resources
//! that name the rule and leak no protected data.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use super::ProxyBody;

/// A refusal to send to the client.
pub struct Refusal<'a> {
    pub status: u16,
    pub rule_id: &'a str,
    pub message: &'a str,
    pub retry_after_secs: Option<u32>,
    pub headers: &'a [(String, String)],
}

/// The OperationOutcome issue code for a status (FHIR R4 valueset issue-type).
fn issue_code(status: u16) -> &'static str {
    match status {
        401 => "login",
        403 => "forbidden",
        404 => "not-found",
        405 | 415 => "not-supported",
        408 | 504 => "timeout",
        412 => "conflict",
        413 | 431 => "too-costly",
        429 => "throttled",
        400..=499 => "invalid",
        502 | 503 => "transient",
        _ => "exception",
    }
}

/// The JSON body of an OperationOutcome for a refusal.
pub fn operation_outcome(status: u16, rule_id: &str, message: &str) -> String {
    serde_json::json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": "error",
            "code": issue_code(status),
            "details": {
                "coding": [{"system": "urn:ehrgate:rule", "code": rule_id}],
                "text": message,
            },
            "diagnostics": format!("{rule_id}: {message}"),
        }]
    })
    .to_string()
}

/// The HTTP response for a refusal.
pub fn refusal_response(refusal: &Refusal<'_>, request_id: &str) -> Response<ProxyBody> {
    let body = operation_outcome(refusal.status, refusal.rule_id, refusal.message);
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::FORBIDDEN);
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", value);
    }
    if let Some(seconds) = refusal.retry_after_secs {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if refusal.status == 401 {
        // RFC 6750 §3: a 401 for a bearer-protected resource names the scheme.
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"ehrgate\""),
        );
    }
    for (name, value) in refusal.headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    response
}

/// A complete body.
pub fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}
