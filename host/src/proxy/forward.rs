//! Forwarding to upstreams: one pooled HTTP/1.1 client per upstream (over TLS for `https://`
//! upstreams, verified against the configured CA or the system's trust store), the canonical
//! request rebuilt for the upstream (its base path, its Host, the gateway's own forwarding
//! and identity headers), and upstream failures mapped to 502 and 504.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::ProxyBody;
use super::context::RequestContext;
use crate::config::UpstreamSettings;

/// An upstream and its connection pool.
pub struct Upstream {
    pub settings: UpstreamSettings,
    /// `http` or `https`.
    scheme: &'static str,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Upstream {
    /// The pooled client for `settings`; fails when an `https://` upstream has no usable CA
    /// certificate (every connection would be refused).
    pub fn new(settings: UpstreamSettings) -> Result<Self, String> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        // The TLS layer below takes `https://` URIs; plain upstreams pass through it.
        connector.enforce_http(false);
        let https = settings.tls_roots.is_some();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _unparsable) =
            roots.add_parsable_certificates(settings.tls_roots.iter().flatten().cloned());
        if https && added == 0 {
            return Err(format!(
                "upstream `{}`: none of its CA certificates can be used",
                settings.name
            ));
        }
        // ring, as the client listener uses; TLS 1.2 and 1.3 with rustls's safe defaults,
        // the certificate checked against the roots and the upstream's host name.
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("upstream `{}`: TLS setup failed: {e}", settings.name))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(settings.pool_max_idle)
            .pool_idle_timeout(settings.pool_idle_timeout)
            .build(connector);
        Ok(Upstream {
            settings,
            scheme: if https { "https" } else { "http" },
            client,
        })
    }
}

/// Why the upstream gave no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the upstream could not be reached")]
    Unreachable(#[source] hyper_util::client::legacy::Error),
    #[error("the upstream request could not be built")]
    BadRequest(#[source] http::Error),
}

impl UpstreamError {
    pub fn status(&self) -> u16 {
        match self {
            UpstreamError::Timeout(_) => 504,
            UpstreamError::Unreachable(_) | UpstreamError::BadRequest(_) => 502,
        }
    }

    pub fn rule_id(&self) -> &'static str {
        match self {
            UpstreamError::Timeout(_) => "upstream.timeout",
            UpstreamError::Unreachable(_) => "upstream.unreachable",
            UpstreamError::BadRequest(_) => "upstream.bad-request",
        }
    }
}

/// Sends the canonical request to `upstream`. `target` is the canonical path (and query)
/// below the route; the upstream's base path is put in front of it.
pub async fn send(
    upstream: &Upstream,
    method: &Method,
    target: &str,
    mut headers: HeaderMap,
    body: Option<Bytes>,
    context: &RequestContext,
) -> Result<Response<Incoming>, UpstreamError> {
    let settings = &upstream.settings;
    let uri = format!(
        "{}://{}{}{}",
        upstream.scheme, settings.authority, settings.base_path, target
    );

    if let Ok(host) = HeaderValue::from_str(&settings.authority) {
        headers.insert(header::HOST, host);
    }
    // The gateway's own view of the client; client-sent forwarding headers were removed.
    if let Ok(value) = HeaderValue::from_str(&context.peer.ip().to_string()) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(if context.tls { "https" } else { "http" }),
    );
    if let Ok(value) = HeaderValue::from_str(&context.id) {
        headers.insert(HeaderName::from_static("x-request-id"), value);
    }
    strict_handling(&mut headers);
    // Identity headers for the upstream. Clients cannot send or strip `x-ehrgate-*`
    // (requests that try are refused), so the upstream can trust them.
    if let Some(principal) = &context.principal {
        for (name, value) in [
            ("x-ehrgate-subject", principal.subject.as_str()),
            ("x-ehrgate-client-id", principal.client_id.as_str()),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let mut builder = Request::builder().method(method.clone()).uri(uri);
    if let Some(request_headers) = builder.headers_mut() {
        *request_headers = headers;
    }
    let request = builder
        .body(Full::new(body))
        .map_err(UpstreamError::BadRequest)?;
    match tokio::time::timeout(settings.timeout, upstream.client.request(request)).await {
        Err(_) => Err(UpstreamError::Timeout(settings.timeout)),
        Ok(Err(error)) => Err(UpstreamError::Unreachable(error)),
        Ok(Ok(response)) => Ok(response),
    }
}

/// The upstream's response for the client: streamed, without hop-by-hop headers.
pub fn client_response<B>(response: Response<B>) -> Response<ProxyBody>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // The version belongs to each connection (RFC 9110 §6.2): the client's connection
    // decides how the response is framed, not the upstream's. Left as the upstream's, an
    // HTTP/1.0 upstream would make hyper answer an HTTP/1.1 client in HTTP/1.0.
    parts.version = http::Version::default();
    Response::from_parts(parts, body.map_err(Into::into).boxed_unsync())
}

/// Asks the upstream to refuse search parameters it does not know (R4 search.html#errors,
/// `Prefer: handling=strict`) instead of ignoring them: the policies judged the parameters as
/// written, and a server that silently drops one (a `patient` on a type that has none)
/// would search wider than what was judged. The client's other preferences are kept; its
/// own `handling` is replaced.
fn strict_handling(headers: &mut HeaderMap) {
    let mut preferences: Vec<String> = headers
        .get_all(header::HeaderName::from_static("prefer"))
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|preference| {
            !preference.is_empty()
                && !preference
                    .split(['=', ';'])
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .eq_ignore_ascii_case("handling")
        })
        .map(str::to_owned)
        .collect();
    preferences.push("handling=strict".to_owned());
    if let Ok(value) = HeaderValue::from_str(&preferences.join(", ")) {
        headers.insert(HeaderName::from_static("prefer"), value);
    }
}

/// RFC 9110 §7.6.1: hop-by-hop headers are not forwarded, nor the headers `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefer(values: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("prefer", HeaderValue::from_str(value).unwrap());
        }
        strict_handling(&mut headers);
        let all: Vec<&str> = headers
            .get_all("prefer")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        all.join(" | ")
    }

    #[test]
    fn the_upstream_is_asked_for_strict_handling_and_other_preferences_stay() {
        assert_eq!(prefer(&[]), "handling=strict");
        assert_eq!(prefer(&["handling=lenient"]), "handling=strict");
        assert_eq!(
            prefer(&["return=minimal, Handling = lenient", "respond-async"]),
            "return=minimal, respond-async, handling=strict"
        );
    }
}
