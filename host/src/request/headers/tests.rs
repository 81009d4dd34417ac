//! Cases for the header checks and for the header set forwarded upstream.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::*;

/// method, URI authority, headers, expected outcome: `None` for accepted, else (status, rule).
type Case = (
    &'static str,
    Option<&'static str>,
    &'static [(&'static str, &'static str)],
    Option<(u16, &'static str)>,
);

const HOST: (&str, &str) = ("host", "ehr.example");

#[rustfmt::skip]
const CASES: &[Case] = &[
    // Methods (FHIR R4 http.html)
    ("GET", None, &[HOST], None),
    ("HEAD", None, &[HOST], None),
    ("POST", None, &[HOST, ("content-length", "10")], None),
    ("PUT", None, &[HOST, ("transfer-encoding", "chunked")], None),
    ("PATCH", None, &[HOST], None),
    ("DELETE", None, &[HOST], None),
    ("OPTIONS", None, &[HOST], Some((405, "headers.method-not-allowed"))),
    ("TRACE", None, &[HOST], Some((405, "headers.method-not-allowed"))),
    ("CONNECT", None, &[HOST], Some((405, "headers.method-not-allowed"))),
    ("PROPFIND", None, &[HOST], Some((405, "headers.method-not-allowed"))),
    // Method overrides
    ("POST", None, &[HOST, ("x-http-method-override", "DELETE")], Some((400, "headers.method-override"))),
    ("POST", None, &[HOST, ("if-none-exist", "patient=2")], Some((400, "headers.conditional-create"))),
    ("PUT", None, &[HOST, ("if-match", "W/\"1\"")], None),
    ("POST", None, &[HOST, ("x-http-method", "DELETE")], Some((400, "headers.method-override"))),
    ("GET", None, &[HOST, ("x-method-override", "PUT")], Some((400, "headers.method-override"))),
    // Connection options (RFC 9110 §7.6.1) and protocol upgrades (RFC 9110 §7.8)
    ("GET", None, &[HOST, ("connection", "keep-alive")], None),
    ("GET", None, &[HOST, ("connection", "close")], None),
    ("GET", None, &[HOST, ("connection", "Keep-Alive, CLOSE,")], None),
    ("GET", None, &[HOST, ("connection", "keep-alive, authorization")], Some((400, "headers.connection-option"))),
    ("GET", None, &[HOST, ("connection", "x-forwarded-for")], Some((400, "headers.connection-option"))),
    ("GET", None, &[HOST, ("connection", "close"), ("connection", "x-ehrgate-user")], Some((400, "headers.connection-option"))),
    ("GET", None, &[HOST, ("connection", "upgrade"), ("upgrade", "websocket")], Some((400, "headers.connection-option"))),
    ("GET", None, &[HOST, ("upgrade", "h2c")], Some((400, "headers.upgrade"))),
    // The gateway's own namespace
    ("GET", None, &[HOST, ("x-ehrgate-principal", "admin")], Some((400, "headers.reserved-header"))),
    ("GET", None, &[HOST, ("X-Ehrgate-Break-Glass", "yes")], Some((400, "headers.reserved-header"))),
    // Host and authority (RFC 9112 §3.2, RFC 9113 §8.3.1)
    ("GET", Some("ehr.example"), &[HOST], None),
    ("GET", Some("EHR.Example"), &[HOST], None),
    ("GET", Some("ehr.example:8443"), &[], None),
    ("GET", None, &[HOST, ("host", "other.example")], Some((400, "headers.duplicate-host"))),
    ("GET", Some("other.example"), &[HOST], Some((400, "headers.host-mismatch"))),
    ("GET", Some("ehr.example:8443"), &[HOST], Some((400, "headers.host-mismatch"))),
    ("GET", None, &[], Some((400, "headers.missing-host"))),
    ("GET", None, &[("host", "")], Some((400, "headers.invalid-host"))),
    // Message length (RFC 9112 §6.1, RFC 9110 §8.6)
    ("POST", None, &[HOST, ("content-length", "5"), ("transfer-encoding", "chunked")], Some((400, "headers.length-and-encoding"))),
    ("POST", None, &[HOST, ("content-length", "5"), ("content-length", "5")], Some((400, "headers.duplicate-content-length"))),
    ("POST", None, &[HOST, ("content-length", "5, 5")], Some((400, "headers.invalid-content-length"))),
    ("POST", None, &[HOST, ("content-length", "-1")], Some((400, "headers.invalid-content-length"))),
    ("POST", None, &[HOST, ("content-length", "0")], None),
    // One credential
    ("GET", None, &[HOST, ("authorization", "Bearer a")], None),
    ("GET", None, &[HOST, ("authorization", "Bearer a"), ("authorization", "Bearer b")], Some((400, "headers.duplicate-authorization"))),
];

fn header_map(headers: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        map.append(name, HeaderValue::from_str(value).unwrap());
    }
    map
}

#[test]
fn request_checks() {
    for (method, authority, headers, expected) in CASES {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let result = check_request(&method, *authority, &header_map(headers));
        let context = format!("{method} {authority:?} {headers:?}");
        match (result, expected) {
            (Ok(()), None) => {}
            (Err(rejection), Some((status, rule_id))) => {
                assert_eq!(
                    rejection.rule_id, *rule_id,
                    "{context}: {}",
                    rejection.message
                );
                assert_eq!(rejection.status, *status, "{context}");
                let message = &rejection.message;
                assert!(message.starts_with(|c: char| c.is_lowercase()), "{message}");
                assert!(
                    message.contains("expected") && !message.ends_with('.'),
                    "{message}"
                );
            }
            (result, _) => panic!("{context}: unexpected {result:?}"),
        }
    }
}

#[test]
fn upstream_headers_drop_connection_and_forwarding_headers() {
    let incoming = header_map(&[
        ("host", "ehr.example"),
        ("content-length", "12"),
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("te", "trailers"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "h2c"),
        ("trailer", "x-checksum"),
        ("proxy-authorization", "Basic eA=="),
        ("proxy-authenticate", "Basic"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-host", "internal"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-prefix", "/admin"),
        ("forwarded", "for=10.0.0.1"),
        ("x-real-ip", "10.0.0.1"),
        ("x-ehrgate-principal", "admin"),
        ("authorization", "Bearer token"),
        ("accept", "application/fhir+json"),
        ("accept", "application/json"),
        ("content-type", "application/fhir+json"),
        ("prefer", "return=representation"),
        ("if-match", "W/\"3\""),
        ("x-request-id", "abc"),
    ]);
    let forwarded = upstream_headers(&incoming);
    let kept: Vec<(&str, &str)> = forwarded
        .iter()
        .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
        .collect();
    assert_eq!(
        kept,
        [
            ("authorization", "Bearer token"),
            ("accept", "application/fhir+json"),
            ("accept", "application/json"),
            ("content-type", "application/fhir+json"),
            ("prefer", "return=representation"),
            ("if-match", "W/\"3\""),
            ("x-request-id", "abc"),
        ]
    );
}
