//! The `ehrgate` binary against the test upstream with what a penetration test sent to slip
//! past the policies: headers a backend trusts (URL and method overrides, client-IP claims,
//! underscore twins of the gateway's own headers), bodies on GET, HEAD and DELETE, other
//! spellings of `access_token`, and HEAD where a policy judges the response.

use crate::support::gateway::GatewayProcess;
use crate::support::guest;
use crate::support::http::{RawResponse, get, send, send_raw};
use crate::support::tokens::{clinician_claims, identity_toml, sign};
use crate::support::upstream::{Reply, TestUpstream};

const PATIENT: &str = r#"{"resourceType":"Patient","id":"pat-123"}"#;

/// One `/fhir` route to `upstream` guarded by the chaos fixture with `chaos_config`.
fn start(upstream: &TestUpstream, chaos_config: &str) -> GatewayProcess {
    start_with(upstream, "chaos", chaos_config)
}

/// One `/fhir` route to `upstream` guarded by the guest crate `module` with `config`.
fn start_with(upstream: &TestUpstream, module: &str, config: &str) -> GatewayProcess {
    GatewayProcess::start(&format!(
        r#"
[server]
listen = "{{listen}}"

[admin]
listen = "{{admin}}"

[[upstreams]]
name = "ehr"
url = "{upstream_url}"
timeout_ms = 1000

[[routes]]
name = "ehr"
prefix = "/fhir"
upstream = "ehr"

[[routes.policies]]
name = "{module_name}"
module = "{module}"
config = {config}
{identity}
"#,
        upstream_url = upstream.url("/base"),
        module_name = module,
        module = guest(module).display(),
        identity = identity_toml(),
    ))
}

fn token() -> String {
    sign(&clinician_claims())
}

/// A GET of the patient with one extra header line.
fn get_with_header(gateway: &GatewayProcess, name: &str, value: &str) -> (u16, Option<String>) {
    let raw = format!(
        "GET /fhir/Patient/pat-123 HTTP/1.1\r\nhost: gateway.test\r\nauthorization: Bearer {}\r\n\
         {name}: {value}\r\nconnection: close\r\n\r\n",
        token()
    );
    let response = send_raw(gateway.addr, raw.as_bytes());
    (response.status, response.rule())
}

#[test]
fn headers_a_backend_trusts_are_refused_or_never_reach_the_upstream() {
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    let gateway = start(&upstream, "{}");
    // (header as the client spells it, the rule of its refusal or `None` when it is removed)
    let cases: &[(&str, Option<&str>)] = &[
        ("X-Original-URL", Some("headers.target-override")),
        ("X-Rewrite-URL", Some("headers.target-override")),
        ("X-Original-Method", Some("headers.method-override")),
        ("X-Override-Method", Some("headers.method-override")),
        ("X-HTTP-Method-Override", Some("headers.method-override")),
        ("True-Client-IP", None),
        ("X-Client-IP", None),
        ("X-Cluster-Client-IP", None),
        ("Client-IP", None),
        ("X-Host", None),
        ("X-Forwarded-Host", None),
        ("x_ehrgate_subject", Some("headers.underscore-name")),
        ("X_Ehrgate_Client_Id", Some("headers.underscore-name")),
        ("Transfer_Encoding", Some("headers.underscore-name")),
        ("content_length", Some("headers.underscore-name")),
        ("x_forwarded_for", Some("headers.underscore-name")),
        ("X_Forwarded_Host", Some("headers.underscore-name")),
        ("x_http_method_override", Some("headers.underscore-name")),
        ("x_original_url", Some("headers.underscore-name")),
        ("true_client_ip", Some("headers.underscore-name")),
        ("x_real_ip", Some("headers.underscore-name")),
        ("x_request_id", Some("headers.underscore-name")),
        ("proxy_connection", Some("headers.underscore-name")),
    ];
    for (name, refusal) in cases {
        let before = upstream.received().len();
        let (status, rule) = get_with_header(&gateway, name, "10.0.0.1");
        let received = upstream.received();
        match refusal {
            Some(expected) => {
                assert_eq!(status, 400, "{name}\n{}", gateway.log());
                assert_eq!(rule.as_deref(), Some(*expected), "{name}");
                assert_eq!(received.len(), before, "{name} reached the upstream");
            }
            None => {
                assert_eq!(status, 200, "{name}\n{}", gateway.log());
                assert_eq!(received.len(), before + 1, "{name}");
                let request = &received[before];
                assert_eq!(request.header(name), None, "{name}:\n{}", request.head);
            }
        }
    }
    // The gateway's own statements arrive, once each, from the gateway.
    let last = upstream.received().pop().expect("a forwarded request");
    assert_eq!(last.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(last.header("x-ehrgate-subject"), Some("dr-adams"));
}

#[test]
fn bodies_on_get_head_and_delete_are_refused_before_the_upstream() {
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    let gateway = start(&upstream, "{}");
    for method in ["GET", "HEAD", "DELETE"] {
        let response = send(
            gateway.addr,
            method,
            "/fhir/Patient/pat-123",
            Some(&token()),
            "application/fhir+json",
            r#"{"resourceType":"Patient","id":"pat-999"}"#,
        );
        assert_eq!(response.status, 400, "{method}: {response:?}");
        if method != "HEAD" {
            assert_eq!(
                response.rule().as_deref(),
                Some("headers.unexpected-body"),
                "{method}"
            );
        }
    }
    let chunked = format!(
        "GET /fhir/Patient/pat-123 HTTP/1.1\r\nhost: gateway.test\r\nauthorization: Bearer {}\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n",
        token()
    );
    let response = send_raw(gateway.addr, chunked.as_bytes());
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(response.rule().as_deref(), Some("headers.unexpected-body"));
    assert!(upstream.received().is_empty());

    // No body, or an empty one declared with `Content-Length: 0`, is fine.
    let empty = format!(
        "DELETE /fhir/Patient/pat-123 HTTP/1.1\r\nhost: gateway.test\r\nauthorization: Bearer {}\r\n\
         content-length: 0\r\nconnection: close\r\n\r\n",
        token()
    );
    let response = send_raw(gateway.addr, empty.as_bytes());
    assert_eq!(response.status, 200, "{response:?}\n{}", gateway.log());
    assert_eq!(upstream.received().len(), 1);
}

#[test]
fn access_token_in_another_spelling_is_refused_before_the_upstream() {
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    let gateway = start(&upstream, "{}");
    for query in [
        "ACCESS_TOKEN=x",
        "Access_Token=x",
        "ACCESS%5FTOKEN=x",
        "%41ccess_token=x",
    ] {
        let response = get(
            gateway.addr,
            &format!("/fhir/Patient/pat-123?{query}"),
            Some(&token()),
        );
        assert_eq!(response.status, 400, "{query}: {response:?}");
        assert_eq!(
            response.rule().as_deref(),
            Some("canonical.access-token-spelling"),
            "{query}"
        );
    }
    assert!(upstream.received().is_empty());

    // The exact spelling is the token, moved out of the URL into the header.
    let response = get(
        gateway.addr,
        &format!("/fhir/Patient/pat-123?access_token={}", token()),
        None,
    );
    assert_eq!(response.status, 200, "{response:?}\n{}", gateway.log());
    let received = upstream.received();
    assert_eq!(
        received[0].request_line(),
        "GET /base/Patient/pat-123 HTTP/1.1"
    );
    assert!(
        received[0]
            .header("authorization")
            .is_some_and(|a| a.starts_with("Bearer "))
    );
}

fn head(gateway: &GatewayProcess) -> RawResponse {
    head_of(gateway, "/fhir/Patient/pat-123")
}

fn head_of(gateway: &GatewayProcess, target: &str) -> RawResponse {
    let raw = format!(
        "HEAD {target} HTTP/1.1\r\nhost: gateway.test\r\nauthorization: Bearer {}\r\n\
         connection: close\r\n\r\n",
        token()
    );
    send_raw(gateway.addr, raw.as_bytes())
}

#[test]
fn head_is_forwarded_as_get_when_a_policy_judges_responses() {
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    let gateway = start(&upstream, "{ inspect_response = true }");
    let response = head(&gateway);
    assert_eq!(response.status, 200, "{response:?}\n{}", gateway.log());
    assert_eq!(response.body, "");
    assert_eq!(response.header("x-upstream"), Some("test"));
    let length = PATIENT.len().to_string();
    assert_eq!(response.header("content-length"), Some(length.as_str()));
    let received = upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].request_line(),
        "GET /base/Patient/pat-123 HTTP/1.1"
    );
    // The response hook ran on it.
    assert!(
        gateway.wait_for_log("chaos:chaos.response"),
        "{}",
        gateway.log()
    );
}

#[test]
fn head_is_forwarded_as_head_when_no_policy_judges_responses() {
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    let gateway = start(&upstream, "{}");
    let response = head(&gateway);
    assert_eq!(response.status, 200, "{response:?}\n{}", gateway.log());
    assert_eq!(response.body, "");
    let received = upstream.received();
    assert_eq!(
        received[0].request_line(),
        "HEAD /base/Patient/pat-123 HTTP/1.1"
    );
}

/// The penetration test's finding: least-privilege checks a read by id in the response (the
/// Observation's patient is only known from its content), so a HEAD answered 200 where the
/// GET was 403.
#[test]
fn head_of_another_patients_resource_is_denied_like_its_get() {
    let observation = r#"{"resourceType":"Observation","id":"obs-1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/pat-999"}}"#;
    let upstream = TestUpstream::start(Reply::json(observation));
    let gateway = start_with(&upstream, "least-privilege", "{}");
    let response = get(gateway.addr, "/fhir/Observation/obs-1", Some(&token()));
    assert_eq!(response.status, 403, "{response:?}\n{}", gateway.log());
    assert_eq!(
        response.rule().as_deref(),
        Some("least-privilege.response-compartment")
    );
    let response = head_of(&gateway, "/fhir/Observation/obs-1");
    assert_eq!(response.status, 403, "{response:?}\n{}", gateway.log());
    assert_eq!(response.header("x-upstream"), None);
    let received = upstream.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[1].request_line(),
        "GET /base/Observation/obs-1 HTTP/1.1"
    );
}
