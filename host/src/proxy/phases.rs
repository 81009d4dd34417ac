//! The phase driver: a request's whole life in one place, phase by phase.
//!
//! ```text
//! limits -> canonicalize -> route -> read body -> identify -> classify -> pre-read
//!        -> policy chain -> enforce -> forward -> response hook -> audit -> respond
//! ```
//!
//! Each phase is a function that reads and fills the [`RequestContext`]. A phase that
//! refuses the request returns an [`Early`] decision; `handle` turns it into the client's
//! response and records it like any other outcome, so every refusal is audited.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::context::{Decision, RequestContext};
use super::forward::{self, UpstreamError};
use super::outcome::{self, Refusal};
use super::pre_read;
use super::{ConnectionInfo, Gateway, ProxyBody, Route, Shared};
use crate::audit::{AuditLog, AuditRecord};
use crate::engine::{
    ChainDecision, Denial, Header, Param, Request as PolicyRequest, Response as PolicyResponse,
};
use crate::request::canonical::{self, CanonicalTarget};
use crate::request::classify::{self, Classification};
use crate::request::identity::{self, Verified};
use crate::request::stored;
use crate::request::{Rejection, headers};

/// The rule of the 503 sent when the audit log cannot take a request's record.
const AUDIT_UNAVAILABLE_RULE: &str = "audit.unavailable";

/// A decision taken before the response was released.
pub(crate) enum Early {
    Rejected(Rejection),
    Denied {
        module: String,
        denial: Denial,
        headers: Vec<(String, String)>,
    },
    Upstream(UpstreamError),
}

impl From<Rejection> for Early {
    fn from(rejection: Rejection) -> Self {
        Early::Rejected(rejection)
    }
}

/// Handles one request from start to finish.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    connection: ConnectionInfo,
) -> Response<ProxyBody> {
    let gateway = shared.gateway.load_full();
    let id = request_id(request.headers());
    let mut context = RequestContext::new(
        id,
        connection.peer,
        connection.tls,
        request.method().as_str(),
    );
    shared.metrics.in_flight.inc();

    let response = match shared.concurrency.clone().try_acquire_owned() {
        Err(_) => Err(Early::Rejected(Rejection::new(
            503,
            "limits.overloaded",
            "the gateway is handling too many requests; retry shortly",
        ))),
        Ok(_permit) => run(&gateway, &mut context, request).await,
    };
    let response = match response {
        Ok(response) => {
            context.decision = Decision::Allowed;
            response
        }
        Err(early) => early_response(&mut context, early),
    };
    context.status = response.status().as_u16();
    let response = match &shared.audit {
        Some(audit) => audit_phase(audit, &mut context, response).await,
        None => response,
    };
    shared.metrics.in_flight.dec();
    super::record::record(&shared, &gateway, &context);
    response
}

/// The audit phase: the request's record is appended before its response is released (in
/// strict mode, fsynced). A record that cannot be written fails closed: the response becomes
/// a 503 `audit.unavailable`, and the record goes to the process log instead.
async fn audit_phase(
    audit: &AuditLog,
    context: &mut RequestContext,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let Err(error) = audit.append(AuditRecord::from_context(context)).await else {
        return response;
    };
    // Rebuilt rather than kept: a copy of every record for this rare path would cost every
    // request an allocation.
    let record = serde_json::to_string(&AuditRecord::from_context(context)).unwrap_or_default();
    tracing::error!(
        target: "ehrgate::audit",
        request_id = %context.id,
        %error,
        %record,
        "audit record not written; the response was replaced by a 503"
    );
    context.decision = Decision::Rejected {
        rule_id: AUDIT_UNAVAILABLE_RULE.to_owned(),
    };
    context.status = 503;
    outcome::refusal_response(
        &Refusal {
            status: 503,
            rule_id: AUDIT_UNAVAILABLE_RULE,
            message: "the audit log cannot be written, so the request was refused",
            retry_after_secs: Some(1),
            headers: &[],
        },
        &context.id,
    )
}

/// Keeps a well-formed client `X-Request-Id`, otherwise makes one.
fn request_id(headers: &HeaderMap) -> String {
    let client = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    match client {
        Some(id) => id.to_owned(),
        None => uuid::Uuid::new_v4().to_string(),
    }
}

fn early_response(context: &mut RequestContext, early: Early) -> Response<ProxyBody> {
    match early {
        Early::Rejected(rejection) => {
            context.decision = Decision::Rejected {
                rule_id: rejection.rule_id.to_owned(),
            };
            let retry_after_secs = (rejection.status == 503).then_some(1);
            outcome::refusal_response(
                &Refusal {
                    status: rejection.status,
                    rule_id: rejection.rule_id,
                    message: &rejection.message,
                    retry_after_secs,
                    headers: &[],
                },
                &context.id,
            )
        }
        Early::Denied {
            module,
            denial,
            headers,
        } => {
            context.decision = Decision::Denied {
                module,
                rule_id: denial.rule_id.clone(),
            };
            outcome::refusal_response(
                &Refusal {
                    status: denial.status,
                    rule_id: &denial.rule_id,
                    message: &denial.message,
                    retry_after_secs: denial.retry_after_secs,
                    headers: &headers,
                },
                &context.id,
            )
        }
        Early::Upstream(error) => {
            context.decision = Decision::UpstreamFailed {
                rule_id: error.rule_id().to_owned(),
            };
            outcome::refusal_response(
                &Refusal {
                    status: error.status(),
                    rule_id: error.rule_id(),
                    message: &error.to_string(),
                    retry_after_secs: None,
                    headers: &[],
                },
                &context.id,
            )
        }
    }
}

/// The phases, in order.
async fn run(
    gateway: &Gateway,
    context: &mut RequestContext,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Early> {
    let (parts, body) = request.into_parts();
    check_limits(gateway, &parts.headers)?;

    // canonicalize: one normalized target and a header check; ambiguous input stops here.
    let raw_target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if parts.uri.scheme().is_some() && parts.version < http::Version::HTTP_2 {
        return Err(Rejection::bad_request(
            "canonical.absolute-form",
            "absolute-form request targets are for forward proxies; send the path only",
        )
        .into());
    }
    let target = canonical::canonicalize_target(raw_target)?;
    let authority = parts.uri.authority().map(|a| a.as_str());
    headers::check_request(&parts.method, authority, &parts.headers)?;
    check_hostname(gateway, authority, &parts.headers)?;

    // route
    let (route, below) = gateway.route_for(&target).ok_or_else(|| {
        Rejection::new(
            404,
            "route.not-found",
            format!("no route serves `{}`", crate::request::quote(&target.path)),
        )
    })?;
    context.route = Some(route.settings.name.clone());
    context.upstream = Some(route.upstream.settings.name.clone());
    context.path = Some(below.path.clone());

    // read body: bounded in size and time; writes and bundles are inspected whole.
    let body = read_body(gateway, &parts.headers, body).await?;

    // POST _search: the form body's parameters join the query's (FHIR R4 http.html#search).
    let mut below = below;
    let is_post_search =
        parts.method == Method::POST && below.segments.last().is_some_and(|s| s == "_search");
    if is_post_search {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
        {
            return Err(Rejection::new(
                415,
                "canonical.search-body-type",
                "a POST _search body must be application/x-www-form-urlencoded",
            )
            .into());
        }
        let form = canonical::parse_form(body.as_deref().unwrap_or_default())?;
        below.params.extend(form);
    }

    // identify
    canonical::check_access_token_spelling(&below.params)?;
    let token = identity::extract_token(&parts.headers, &below.params)?;
    let token_in_query = below.params.iter().any(|p| p.name == "access_token");
    below.params.retain(|p| p.name != "access_token");
    context.query = Some(below.query()).filter(|q| !q.is_empty());
    let verified: Option<Verified> = match &token {
        Some(token) => Some(gateway.verifier.verify(token, context.received_secs())?),
        None if route.is_anonymous(&parts.method, &below.segments) => None,
        None => {
            return Err(Rejection::new(
                401,
                "identity.missing-token",
                "this path needs a bearer token",
            )
            .into());
        }
    };
    // After identification, so that a request without a token hears first that it needs one.
    headers::check_unexpected_body(&parts.method, &parts.headers, body.is_some())?;
    if let Some(verified) = &verified {
        context.principal = Some(verified.principal.clone());
        context.break_glass_reason = verified.break_glass_reason.clone();
    }
    // POST operations: the simple parameters of a `Parameters` body are judged with the
    // query's (R4 operations.html#request); the upstream still gets the request as sent.
    let with_body_parameters =
        canonical::with_operation_parameters(&parts.method, &below, body.as_deref());
    let judged = with_body_parameters.as_ref().unwrap_or(&below);
    canonical::check_governing_duplicates(&judged.params)?;

    // classify
    let classification = classify::classify(
        &parts.method,
        judged,
        body.as_deref(),
        gateway.config.limits.max_batch_entries,
    )?;
    crate::request::scope::check(
        &route.settings.name,
        &route.settings.resource_types,
        &classification,
        &judged.params,
    )?;
    context.interaction = Some(classification.interaction);
    context.resource_type = classification.resource_type.clone();
    context.resource_id = classification.resource_id.clone();
    context.patients = classification.patients.clone();

    // pre-read: a write by id is judged on the stored version it changes, and forwarded on
    // condition that it is still that version.
    let mut classification = classification;
    let stored = match stored::target(
        route.settings.verify_write_owner,
        &classification,
        context.principal.as_ref(),
    ) {
        None => None,
        Some(target) => {
            let max_bytes = gateway.config.limits.max_inspect_bytes;
            let stored =
                pre_read::read(route, &target, token.as_deref(), max_bytes, context).await?;
            classification.patients = stored::merge_patients(&classification.patients, &stored);
            context.patients = classification.patients.clone();
            let condition = stored::condition(&target, &stored, &parts.headers)?;
            if let Some(record) = &mut context.pre_read {
                record.condition = condition.clone();
            }
            Some((target, stored, condition))
        }
    };

    // policy chain and enforcement
    let mut policy_request = policy_request(
        context,
        route,
        judged,
        &parts.headers,
        &parts.method,
        &classification,
        body.as_deref(),
    );
    // The gateway's own headers, whatever the allow-list says (clients cannot send them).
    if let Some((_, stored, _)) = &stored {
        policy_request
            .headers
            .extend(stored::policy_headers(stored));
    }
    let policy_request = Arc::new(policy_request);
    let started = Instant::now();
    let outcome = route.chain.evaluate(policy_request.clone()).await;
    context.policy_time = started.elapsed();
    let decision = outcome.decision.clone();
    let policy_headers = outcome.response_headers.clone();
    context.chain = Some(outcome);
    if let ChainDecision::Deny { module, denial } = decision {
        return Err(Early::Denied {
            module: module.to_string(),
            denial,
            headers: policy_headers,
        });
    }

    if let Some(nothing) = stored
        .as_ref()
        .and_then(|(target, stored, _)| stored::nothing_to_change(target, stored))
    {
        return Err(nothing.into());
    }

    // forward
    let forwarded_body = if is_post_search {
        Some(Bytes::from(below.query()))
    } else {
        body
    };
    let mut upstream_headers = headers::upstream_headers(&parts.headers);
    if let Some((_, _, Some(condition))) = &stored {
        // The gateway's condition pins the version the client's own was judged on.
        upstream_headers.remove(header::IF_MATCH);
        upstream_headers.remove(header::IF_NONE_MATCH);
        let (name, value) = condition.header();
        if let Ok(value) = HeaderValue::from_str(&value) {
            upstream_headers.insert(name, value);
        }
    }
    if token_in_query && let Some(token) = &token {
        // RFC 6750 §2.3 tokens in the URL end up in logs: move it to the header upstream.
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            upstream_headers.insert(header::AUTHORIZATION, value);
        }
    }
    let forward_target = if is_post_search {
        below.path.clone()
    } else {
        below.target()
    };
    // RFC 9110 §9.3.2: HEAD is GET without the content, and it is classified as a read. A
    // policy that judges the response (least-privilege checks the returned resource's
    // patient) sees no content in a HEAD response and could not refuse another patient's
    // resource, whose ETag and Last-Modified would then leak. With such a policy the upstream
    // gets a GET, the policies judge its content, and the client gets the GET's status and
    // headers without the content.
    let head_as_get = parts.method == Method::HEAD && route.chain.inspects_response();
    let forward_method = if head_as_get {
        Method::GET
    } else {
        parts.method.clone()
    };
    let started = Instant::now();
    let upstream_response = forward::send(
        &route.upstream,
        &forward_method,
        &forward_target,
        upstream_headers,
        forwarded_body,
        context,
    )
    .await;
    context.upstream_time = Some(started.elapsed());
    let upstream_response = upstream_response.map_err(Early::Upstream)?;
    context.upstream_status = Some(upstream_response.status().as_u16());

    // response hook
    let response = if route.chain.inspects_response() {
        // The hook judges the response of the request that went upstream: for a HEAD sent as
        // GET that is a GET's, with content. Shown as HEAD, a policy may skip it, as
        // least-privilege does, since a HEAD response has no content to check.
        let judged_request = if head_as_get {
            let mut as_get = PolicyRequest::clone(&policy_request);
            as_get.method = Method::GET.as_str().to_owned();
            Arc::new(as_get)
        } else {
            policy_request
        };
        let response =
            inspect_response(gateway, route, context, judged_request, upstream_response).await?;
        if head_as_get {
            without_content(response)
        } else {
            response
        }
    } else {
        forward::client_response(upstream_response)
    };
    Ok(finish_response(response, &policy_headers, &context.id))
}

fn check_limits(gateway: &Gateway, headers: &HeaderMap) -> Result<(), Rejection> {
    let limits = &gateway.config.limits;
    if headers.len() > limits.max_header_count {
        return Err(Rejection::new(
            431,
            "limits.header-count",
            format!(
                "{} headers; at most {} are accepted",
                headers.len(),
                limits.max_header_count
            ),
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if bytes > limits.max_header_bytes {
        return Err(Rejection::new(
            431,
            "limits.header-bytes",
            format!(
                "{bytes} bytes of headers; at most {} are accepted",
                limits.max_header_bytes
            ),
        ));
    }
    Ok(())
}

fn check_hostname(
    gateway: &Gateway,
    authority: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), Rejection> {
    let allowed = &gateway.config.hostnames;
    if allowed.is_empty() {
        return Ok(());
    }
    let host = authority
        .or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()))
        .unwrap_or("");
    let name = host
        .rsplit_once(':')
        .map_or(host, |(name, _)| name)
        .to_ascii_lowercase();
    if allowed.contains(&name) {
        Ok(())
    } else {
        Err(Rejection::new(
            421,
            "headers.misdirected",
            format!(
                "this gateway does not serve host `{}`",
                crate::request::quote(host)
            ),
        ))
    }
}

async fn read_body(
    gateway: &Gateway,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Option<Bytes>, Rejection> {
    let limits = &gateway.config.limits;
    let too_large = || {
        Rejection::new(
            413,
            "limits.body-bytes",
            format!(
                "the request body is larger than {} bytes",
                limits.max_body_bytes
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(too_large());
    }
    let timeout = std::time::Duration::from_millis(limits.body_read_timeout_ms);
    let collected =
        tokio::time::timeout(timeout, Limited::new(body, limits.max_body_bytes).collect())
            .await
            .map_err(|_| {
                Rejection::new(
                    408,
                    "limits.body-timeout",
                    "the request body arrived too slowly",
                )
            })?;
    match collected {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            Ok((!bytes.is_empty()).then_some(bytes))
        }
        Err(error)
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(_) => Err(Rejection::bad_request(
            "limits.body-read",
            "the request body could not be read",
        )),
    }
}

/// Builds the canonical request record every policy of the chain sees.
fn policy_request(
    context: &RequestContext,
    route: &Route,
    below: &CanonicalTarget,
    headers: &HeaderMap,
    method: &Method,
    classification: &Classification,
    body: Option<&[u8]>,
) -> PolicyRequest {
    let policy_headers = route
        .settings
        .policy_headers
        .iter()
        .filter_map(|name| {
            let value = headers.get(name.as_str())?.to_str().ok()?;
            Some(Header {
                name: name.clone(),
                value: value.to_owned(),
            })
        })
        .collect();
    let body = if route.settings.policy_body {
        body.and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_owned)
    } else {
        None
    };
    PolicyRequest {
        id: context.id.clone(),
        time_ms: context.received_ms(),
        source_address: context.peer.ip().to_string(),
        method: method.as_str().to_owned(),
        path: below.path.clone(),
        route: route.settings.name.clone(),
        upstream: route.upstream.settings.name.clone(),
        interaction: classification.interaction,
        resource_type: classification.resource_type.clone(),
        resource_id: classification.resource_id.clone(),
        version_id: classification.version_id.clone(),
        operation: classification.operation.clone(),
        params: below
            .params
            .iter()
            .map(|p| Param {
                name: p.name.clone(),
                value: p.value.clone(),
            })
            .collect(),
        headers: policy_headers,
        principal: context.principal.clone(),
        break_glass_reason: context.break_glass_reason.clone(),
        patients: classification.patients.clone(),
        entries: classification.entries.clone(),
        body,
    }
}

/// Buffers a JSON response (up to the cap) and lets the inspecting modules decide on it.
async fn inspect_response(
    gateway: &Gateway,
    route: &Route,
    context: &mut RequestContext,
    request: Arc<PolicyRequest>,
    upstream: Response<Incoming>,
) -> Result<Response<ProxyBody>, Early> {
    let (parts, body) = upstream.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let cap = gateway.config.limits.max_inspect_bytes;
    let collected = Limited::new(body, cap).collect().await;
    let (shown, bytes) = match collected {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            let is_json = content_type.as_deref().is_some_and(|t| t.contains("json"));
            let shown = if is_json {
                std::str::from_utf8(&bytes).ok().map(str::to_owned)
            } else {
                None
            };
            (shown, Some(bytes))
        }
        // Too large to inspect: the modules decide without the body, and the client gets
        // nothing unless they allow it; a partially read body cannot be released anyway.
        Err(_) => (None, None),
    };
    let response = PolicyResponse {
        status: parts.status.as_u16(),
        content_type,
        body: shown,
    };
    let started = Instant::now();
    let outcome = route.chain.on_response(request, response).await;
    context.policy_time += started.elapsed();
    let decision = outcome.decision.clone();
    let headers = outcome.response_headers.clone();
    context.response_chain = Some(outcome);
    if let ChainDecision::Deny { module, denial } = decision {
        return Err(Early::Denied {
            module: module.to_string(),
            denial,
            headers,
        });
    }
    match bytes {
        Some(bytes) => Ok(forward::client_response(Response::from_parts(
            parts,
            outcome::full(bytes),
        ))),
        None => Err(Early::Rejected(Rejection::new(
            502,
            "upstream.response-too-large",
            "the upstream's response is larger than policies may inspect",
        ))),
    }
}

/// A HEAD response made from a GET's: the same status and headers, no content. The GET's
/// `Content-Length` is kept, as RFC 9110 §8.6 and §9.3.2 let a HEAD response carry the length
/// the GET's content has; hyper sends no content for a HEAD response whatever the header says.
fn without_content(response: Response<ProxyBody>) -> Response<ProxyBody> {
    let (parts, _content) = response.into_parts();
    Response::from_parts(parts, outcome::full(Bytes::new()))
}

/// Adds the policies' headers and the request id to the client's response.
fn finish_response(
    mut response: Response<ProxyBody>,
    policy_headers: &[(String, String)],
    request_id: &str,
) -> Response<ProxyBody> {
    let headers = response.headers_mut();
    for (name, value) in policy_headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", value);
    }
    response
}
