//! The pre-read phase: before an update, patch or delete by id that the route verifies
//! (`verify_write_owner`), the gateway reads the stored resource from the same upstream,
//! judges it (`request::stored`) and keeps what it found in the request's context, where
//! the policy request, the forwarded write's condition and the audit record take it from.
//!
//! The read is the write's own request as far as the upstream can tell: the same upstream
//! connection pool, the client's credentials (the upstream authenticates the write with
//! them too, so a token the upstream would not let read the resource cannot have it
//! judged), the gateway's identity and forwarding headers, the request id, and
//! `x-ehrgate-pre-read: 1` so that the upstream's own logs can tell it from a read the
//! client made. Its answer is never shown to the client. It is bounded by the upstream's
//! `timeout_ms` (headers and body together) and `limits.max_inspect_bytes`.

use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use http_body_util::{BodyExt, Limited};

use super::Route;
use super::context::{PreRead, RequestContext};
use super::forward::{self, UpstreamError};
use crate::request::Rejection;
use crate::request::stored::{self, Stored, StoredResponse, StoredTarget};

/// Reads and judges the stored resource of `target`. On success the context holds what was
/// found; a refusal is recorded there too, with the status the upstream gave, if any.
pub(super) async fn read(
    route: &Route,
    target: &StoredTarget,
    token: Option<&str>,
    max_bytes: usize,
    context: &mut RequestContext,
) -> Result<Stored, Rejection> {
    let started = Instant::now();
    let answer = fetch(route, target, token, max_bytes, context).await;
    let mut record = PreRead {
        status: None,
        stored: None,
        condition: None,
        elapsed: std::time::Duration::ZERO,
    };
    let judged = match answer {
        Err(rejection) => Err(rejection),
        Ok((status, etag, body)) => {
            record.status = Some(status);
            stored::judge(
                target,
                StoredResponse {
                    status,
                    etag: etag.as_deref(),
                    body: &body,
                },
            )
        }
    };
    record.elapsed = started.elapsed();
    record.stored = judged.as_ref().ok().cloned();
    context.pre_read = Some(record);
    judged
}

/// Sends the read and collects its answer: status, `ETag` and body.
async fn fetch(
    route: &Route,
    target: &StoredTarget,
    token: Option<&str>,
    max_bytes: usize,
    context: &RequestContext,
) -> Result<(u16, Option<String>, bytes::Bytes), Rejection> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/fhir+json"),
    );
    if let Some(token) = token
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        headers.insert(header::AUTHORIZATION, value);
    }
    headers.insert(
        HeaderName::from_static("x-ehrgate-pre-read"),
        HeaderValue::from_static("1"),
    );
    let timeout = route.upstream.settings.timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let response = forward::send(
        &route.upstream,
        &Method::GET,
        &target.path(),
        headers,
        None,
        context,
    )
    .await
    .map_err(|error| unavailable(target, &error))?;
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get(header::ETAG)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let collected = tokio::time::timeout_at(
        deadline,
        Limited::new(response.into_body(), max_bytes).collect(),
    )
    .await
    .map_err(|_| unavailable(target, &UpstreamError::Timeout(timeout)))?
    .map_err(|_| {
        Rejection::new(
            502,
            "preread.failed",
            format!(
                "the stored `{}/{}` could not be read whole (more than {max_bytes} bytes, or \
                 the upstream broke off)",
                target.resource_type, target.id
            ),
        )
    })?;
    Ok((status, etag, collected.to_bytes()))
}

fn unavailable(target: &StoredTarget, error: &UpstreamError) -> Rejection {
    let (status, rule_id) = match error {
        UpstreamError::Timeout(_) => (504, "preread.timeout"),
        _ => (502, "preread.failed"),
    };
    Rejection::new(
        status,
        rule_id,
        format!(
            "the gateway reads `{}/{}` before a write to learn whose it is, and could not: {error}",
            target.resource_type, target.id
        ),
    )
}
