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
    ("GET", None, &[HOST, ("x-original-method", "DELETE")], Some((400, "headers.method-override"))),
    ("POST", None, &[HOST, ("X-Override-Method", "DELETE")], Some((400, "headers.method-override"))),
    // URL overrides
    ("GET", None, &[HOST, ("x-original-url", "/admin")], Some((400, "headers.target-override"))),
    ("GET", None, &[HOST, ("X-Rewrite-URL", "/Patient/2")], Some((400, "headers.target-override"))),
    // Client-IP claims are removed (see upstream_headers), not refused
    ("GET", None, &[HOST, ("true-client-ip", "10.0.0.1"), ("x-client-ip", "10.0.0.1"), ("x-cluster-client-ip", "10.0.0.1"), ("client-ip", "10.0.0.1"), ("x-host", "internal")], None),
    // Underscore twins (RFC 3875 §4.1.18)
    ("GET", None, &[HOST, ("x_ehrgate_subject", "admin")], Some((400, "headers.underscore-name"))),
    ("POST", None, &[HOST, ("Transfer_Encoding", "chunked")], Some((400, "headers.underscore-name"))),
    ("POST", None, &[HOST, ("content_length", "0")], Some((400, "headers.underscore-name"))),
    ("GET", None, &[HOST, ("x_forwarded_for", "10.0.0.1")], Some((400, "headers.underscore-name"))),
    ("POST", None, &[HOST, ("x_http_method_override", "DELETE")], Some((400, "headers.underscore-name"))),
    ("GET", None, &[HOST, ("x_original_url", "/admin")], Some((400, "headers.underscore-name"))),
    ("GET", None, &[HOST, ("true_client_ip", "10.0.0.1")], Some((400, "headers.underscore-name"))),
    ("POST", None, &[HOST, ("if_none_exist", "patient=2")], Some((400, "headers.underscore-name"))),
    ("GET", None, &[HOST, ("x_request_id", "forged")], Some((400, "headers.underscore-name"))),
    ("GET", None, &[HOST, ("x_custom_trace", "1")], None),
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
        ("true-client-ip", "10.0.0.1"),
        ("x-client-ip", "10.0.0.1"),
        ("x-cluster-client-ip", "10.0.0.1"),
        ("client-ip", "10.0.0.1"),
        ("x-host", "internal"),
        ("x-original-url", "/admin"),
        ("x_ehrgate_subject", "admin"),
        ("x_custom_trace", "1"),
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
            ("x_custom_trace", "1"),
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

/// Every header a backend may trust for the method, the URL, the client's address or the
/// gateway's own statements, with its underscore twin (RFC 3875 §4.1.18): none reaches the
/// upstream, whether the request is refused or the header removed.
#[test]
fn trusted_headers_and_their_underscore_twins_never_reach_the_upstream() {
    let names = [
        "x-original-url",
        "x-rewrite-url",
        "x-original-method",
        "x-override-method",
        "x-http-method-override",
        "true-client-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "client-ip",
        "x-host",
        "x-forwarded-host",
        "x-forwarded-for",
        "x-real-ip",
        "x-ehrgate-subject",
        "x-ehrgate-client-id",
        "transfer-encoding",
        "content-length",
        "proxy-connection",
        "keep-alive",
        "proxy-authorization",
        "if-none-exist",
    ];
    // Forwarded as sent (the forwarder replaces it with the request's id); only its twin is
    // refused.
    let twins_only = ["x-request-id", "content-type"];
    let spellings = names.iter().chain(&twins_only).flat_map(|dashed| {
        let twin = dashed.replace('-', "_");
        let mut spellings = vec![twin.clone(), twin.to_ascii_uppercase()];
        if !twins_only.contains(dashed) {
            spellings.push((*dashed).to_owned());
        }
        spellings
    });
    for name in spellings {
        let headers = header_map(&[HOST, (name.as_str(), "1")]);
        let refused = check_request(&Method::POST, None, &headers).is_err();
        let lowered = name.to_ascii_lowercase();
        let absent = !upstream_headers(&headers).contains_key(lowered.as_str());
        assert!(refused || absent, "`{name}` is accepted and forwarded");
        // The twins are refused, and left out even if a caller skipped the check.
        if name.contains('_') {
            assert!(
                refused && absent,
                "`{name}`: refused {refused}, absent {absent}"
            );
        }
    }
}

/// method, headers, whether content arrived, whether the request is refused.
type BodyCase = (
    &'static str,
    &'static [(&'static str, &'static str)],
    bool,
    bool,
);

#[test]
fn bodies_on_methods_without_body_semantics_are_refused() {
    #[rustfmt::skip]
    let cases: &[BodyCase] = &[
        ("GET", &[("content-length", "4")], true, true),
        ("HEAD", &[("content-length", "1")], true, true),
        ("DELETE", &[("transfer-encoding", "chunked")], true, true),
        ("GET", &[("transfer-encoding", "identity")], false, true),
        ("GET", &[], true, true),
        ("GET", &[("content-length", "0")], false, false),
        ("DELETE", &[("content-length", "00")], false, false),
        ("HEAD", &[], false, false),
        ("PATCH", &[("content-length", "4")], true, false),
        ("POST", &[], true, false),
    ];
    for (method, headers, has_body, refused) in cases {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let result = check_unexpected_body(&method, &header_map(headers), *has_body);
        match (result, refused) {
            (Ok(()), false) => {}
            (Err(rejection), true) => {
                assert_eq!(rejection.rule_id, "headers.unexpected-body");
                assert_eq!(rejection.status, 400);
                assert!(
                    rejection.message.starts_with("a `"),
                    "{}",
                    rejection.message
                );
                assert!(rejection.message.contains("expected"));
            }
            (result, _) => panic!("{method} {headers:?} {has_body}: unexpected {result:?}"),
        }
    }
}
