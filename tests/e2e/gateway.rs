//! The `ehrgate` binary in front of a real upstream on 127.0.0.1: what reaches the upstream
//! (byte for byte), canonicalization on a raw socket, token failures, batches, limits,
//! upstream failures, reload and the admin endpoints.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::support::gateway::{GatewayProcess, binary, free_port};
use crate::support::guest;
use crate::support::http::{RawResponse, get, send, send_raw};
use crate::support::tokens::{self, clinician_claims, identity_toml, sign, sign_with, unsigned};
use crate::support::upstream::{Reply, TestUpstream};

const BUNDLE: &str = r#"{"resourceType":"Bundle","type":"searchset","total":0}"#;

/// A gateway config: one `/fhir` route to `upstream_url` guarded by the chaos fixture with
/// `chaos_config` (TOML inline table), plus `extra` appended.
fn config(upstream_url: &str, chaos_config: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"

[admin]
listen = "{{admin}}"

[limits]
max_header_count = 32
max_body_bytes = 4096


[[upstreams]]
name = "ehr"
url = "{upstream_url}"
timeout_ms = 1000

[[routes]]
name = "ehr"
prefix = "/fhir"
upstream = "ehr"
anonymous_paths = ["/metadata"]

[[routes.policies]]
name = "chaos"
module = "{module}"
config = {chaos_config}
{identity}
{extra}
"#,
        module = guest("chaos").display(),
        identity = identity_toml(),
    )
}

fn start(upstream: &TestUpstream, chaos_config: &str) -> GatewayProcess {
    GatewayProcess::start(&config(&upstream.url("/base"), chaos_config, ""))
}

fn token() -> String {
    sign(&clinician_claims())
}

#[test]
fn an_allowed_request_reaches_the_upstream_as_canonicalized() {
    let upstream = TestUpstream::start(Reply::json(BUNDLE));
    let gateway = start(&upstream, "{}");
    let raw = format!(
        "GET /fhir/Observation/?patient=pat-123&code=a+b&date=ge2025-01-01T00:00:00%2B01:00 HTTP/1.1\r\n\
         host: gateway.test\r\naccept: application/fhir+json\r\nauthorization: Bearer {}\r\n\
         x-forwarded-for: 6.6.6.6\r\nx-real-ip: 6.6.6.6\r\nforwarded: for=6.6.6.6\r\n\
         x-request-id: trace-42\r\nconnection: close\r\n\r\n",
        token()
    );
    let response = send_raw(gateway.addr, raw.as_bytes());
    assert_eq!(response.status, 200, "{response:?}\n{}", gateway.log());
    assert_eq!(response.body, BUNDLE);
    assert_eq!(response.header("x-request-id"), Some("trace-42"));
    assert_eq!(response.header("x-upstream"), Some("test"));

    let received = upstream.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(
        request.request_line(),
        "GET /base/Observation?patient=pat-123&code=a%20b&date=ge2025-01-01T00:00:00%2B01:00 HTTP/1.1"
    );
    assert_eq!(
        request.header("host"),
        Some(upstream.addr.to_string().as_str())
    );
    assert_eq!(request.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(request.header("x-forwarded-proto"), Some("http"));
    assert_eq!(request.header("x-request-id"), Some("trace-42"));
    assert_eq!(request.header("x-ehrgate-subject"), Some("dr-adams"));
    assert_eq!(request.header("x-ehrgate-client-id"), Some("ward-app"));
    assert_eq!(request.header("x-real-ip"), None);
    assert_eq!(request.header("forwarded"), None);
    assert!(
        request
            .header("authorization")
            .is_some_and(|a| a.starts_with("Bearer "))
    );
    assert!(request.body.is_empty());
}

#[test]
fn a_denied_request_never_reaches_the_upstream() {
    let upstream = TestUpstream::start(Reply::json(BUNDLE));
    let gateway = start(
        &upstream,
        r#"{ verdict = "deny", status = 403, rule_id = "chaos.nope" }"#,
    );
    let response = get(gateway.addr, "/fhir/Patient/pat-123", Some(&token()));
    assert_eq!(response.status, 403);
    assert_eq!(response.rule().as_deref(), Some("chaos.nope"));
    assert!(
        response
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/fhir+json"))
    );
    assert!(upstream.received().is_empty());
}

#[test]
fn ambiguous_requests_are_rejected_before_policies_and_never_forwarded() {
    let upstream = TestUpstream::start(Reply::json(BUNDLE));
    let gateway = start(&upstream, "{}");
    let token = token();
    // (request line, extra headers, expected status, expected rule or "" for hyper's own 400)
    let cases: &[(&str, &str, u16, &str)] = &[
        (
            "GET /fhir/Patient/../Observation HTTP/1.1",
            "",
            400,
            "canonical.dot-segment",
        ),
        (
            "GET /fhir/Patient/./pat-123 HTTP/1.1",
            "",
            400,
            "canonical.dot-segment",
        ),
        (
            "GET /fhir/Patient%2Fpat-123 HTTP/1.1",
            "",
            400,
            "canonical.encoded-separator",
        ),
        (
            "GET /fhir/%2e%2e/admin HTTP/1.1",
            "",
            400,
            "canonical.encoded-dot",
        ),
        (
            "GET /fhir/Patient%5Cpat-123 HTTP/1.1",
            "",
            400,
            "canonical.encoded-separator",
        ),
        (
            "GET /fhir\\Patient HTTP/1.1",
            "",
            400,
            "canonical.backslash",
        ),
        (
            "GET /fhir/Patient;jsessionid=1/pat-123 HTTP/1.1",
            "",
            400,
            "canonical.matrix-parameter",
        ),
        (
            "GET /fhir//Patient/pat-123 HTTP/1.1",
            "",
            400,
            "canonical.empty-segment",
        ),
        (
            "GET /fhir/Patient/%FF HTTP/1.1",
            "",
            400,
            "canonical.invalid-utf8",
        ),
        (
            "GET /fhir/Patient/pat%00123 HTTP/1.1",
            "",
            400,
            "canonical.encoded-control-character",
        ),
        (
            "GET /fhir/Observation?patient=1&patient=2 HTTP/1.1",
            "",
            400,
            "canonical.duplicate-governing-parameter",
        ),
        (
            "GET /fhir/Observation?subject=Patient/1&subject:Patient=2 HTTP/1.1",
            "",
            400,
            "canonical.duplicate-governing-parameter",
        ),
        (
            "GET /fhir/Patient?_method=DELETE HTTP/1.1",
            "",
            400,
            "canonical.method-override",
        ),
        (
            "GET /fhir/patient/pat-123 HTTP/1.1",
            "",
            400,
            "classify.resource-type-case",
        ),
        (
            "GET http://evil.test/fhir/Patient HTTP/1.1",
            "",
            400,
            "canonical.absolute-form",
        ),
        (
            "GET /fhir/Patient HTTP/1.1",
            "x-http-method-override: DELETE\r\n",
            400,
            "headers.method-override",
        ),
        (
            "GET /fhir/Patient HTTP/1.1",
            "connection: close, x-ehrgate-subject\r\n",
            400,
            "headers.connection-option",
        ),
        (
            "GET /fhir/Patient HTTP/1.1",
            "x-ehrgate-subject: admin\r\n",
            400,
            "headers.reserved-header",
        ),
        (
            "GET /fhir/Patient HTTP/1.1",
            "upgrade: websocket\r\n",
            400,
            "headers.upgrade",
        ),
        (
            "TRACE /fhir/Patient HTTP/1.1",
            "",
            405,
            "headers.method-not-allowed",
        ),
        (
            "PROPFIND /fhir/Patient HTTP/1.1",
            "",
            405,
            "headers.method-not-allowed",
        ),
        ("GET /nowhere/Patient HTTP/1.1", "", 404, "route.not-found"),
    ];
    for (line, extra, status, rule) in cases {
        let raw = format!(
            "{line}\r\nhost: gateway.test\r\nauthorization: Bearer {token}\r\n{extra}connection: close\r\n\r\n"
        );
        let response = send_raw(gateway.addr, raw.as_bytes());
        assert_eq!(response.status, *status, "{line} {extra:?}: {response:?}");
        if !rule.is_empty() {
            assert_eq!(
                response.rule().as_deref(),
                Some(*rule),
                "{line} {extra:?}: {}",
                response.body
            );
        }
    }
    assert!(upstream.received().is_empty(), "{:?}", upstream.received());
}

#[test]
fn conflicting_message_framing_is_reframed_never_passed_on() {
    let upstream = TestUpstream::start(Reply::json(BUNDLE));
    let gateway = start(&upstream, "{}");
    // RFC 9112 §6.3: with both Transfer-Encoding and Content-Length, Transfer-Encoding wins.
    // The gateway reads the chunked body and forwards it framed by its own Content-Length,
    // so a smuggled second request cannot ride along.
    let raw = format!(
        "POST /fhir/Observation/_search HTTP/1.1\r\nhost: gateway.test\r\nauthorization: Bearer {}\r\n\
         content-type: application/x-www-form-urlencoded\r\ncontent-length: 4\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\nf\r\npatient=pat-123\r\n0\r\n\r\n",
        token()
    );
    let response = send_raw(gateway.addr, raw.as_bytes());
    assert_eq!(response.status, 200, "{response:?}");
    let received = upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].request_line(),
        "POST /base/Observation/_search HTTP/1.1"
    );
    assert_eq!(received[0].header("content-length"), Some("15"));
    assert_eq!(received[0].header("transfer-encoding"), None);
    assert_eq!(received[0].body, b"patient=pat-123");

    // A transfer coding that does not end in chunked cannot be framed: refused.
    let raw = "POST /fhir/Observation HTTP/1.1\r\nhost: gateway.test\r\ntransfer-encoding: gzip\r\nconnection: close\r\n\r\n";
    assert_eq!(send_raw(gateway.addr, raw.as_bytes()).status, 400);
    assert_eq!(upstream.received().len(), 1);
}

#[test]
fn token_failures_are_401_and_never_forwarded() {
    let upstream = TestUpstream::start(Reply::json(BUNDLE));
    let gateway = start(&upstream, "{}");
    let mut claims = clinician_claims();
    let without = |name: &str| {
        let mut c = clinician_claims();
        c.as_object_mut().map(|o| o.remove(name));
        c
    };
    let expired = {
        let mut c = clinician_claims();
        c["exp"] = json!(tokens::now() - 3600);
        c["iat"] = json!(tokens::now() - 7200);
        c
    };
    let future = {
        let mut c = clinician_claims();
        c["nbf"] = json!(tokens::now() + 3600);
        c
    };
    claims["aud"] = json!("https://another-api.test");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            unsigned(&clinician_claims()),
            "identity.algorithm-not-allowed",
        ),
        // RS/HS confusion: an HMAC signed with the RSA public key's PEM as the secret.
        (
            "hs256 with the public key",
            sign_with(
                &clinician_claims(),
                Algorithm::HS256,
                Some("rsa-a"),
                "rsa-a.pub.pem",
            ),
            "identity.algorithm-not-allowed",
        ),
        (
            "missing aud",
            sign(&without("aud")),
            "identity.missing-claim",
        ),
        (
            "missing iss",
            sign(&without("iss")),
            "identity.missing-claim",
        ),
        ("wrong aud", sign(&claims), "identity.wrong-audience"),
        ("expired", sign(&expired), "identity.expired"),
        ("future nbf", sign(&future), "identity.not-yet-valid"),
        (
            "unknown kid",
            sign_with(
                &clinician_claims(),
                Algorithm::RS256,
                Some("rsa-z"),
                "rsa-a.key.pem",
            ),
            "identity.unknown-kid",
        ),
        (
            "signed by another key",
            sign_with(
                &clinician_claims(),
                Algorithm::RS256,
                Some("rsa-a"),
                "rsa-b.key.pem",
            ),
            "identity.bad-signature",
        ),
    ];
    for (name, token, rule) in cases {
        let response = get(gateway.addr, "/fhir/Patient/pat-123", Some(&token));
        assert_eq!(response.status, 401, "{name}: {response:?}");
        assert_eq!(
            response.rule().as_deref(),
            Some(rule),
            "{name}: {}",
            response.body
        );
        assert!(response.header("www-authenticate").is_some(), "{name}");
    }
    let response = get(gateway.addr, "/fhir/Patient/pat-123", None);
    assert_eq!(
        (response.status, response.rule().as_deref()),
        (401, Some("identity.missing-token"))
    );
    // Token in two places.
    let response = get(
        gateway.addr,
        &format!("/fhir/Patient/pat-123?access_token={}", token()),
        Some(&token()),
    );
    assert_eq!(
        (response.status, response.rule().as_deref()),
        (401, Some("identity.token-in-many-places"))
    );
    assert!(upstream.received().is_empty());

    // An anonymous path works without a token, for reads only.
    let response = get(gateway.addr, "/fhir/metadata", None);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(upstream.received().len(), 1);
    for method in ["PUT", "POST", "DELETE"] {
        let response = send(
            gateway.addr,
            method,
            "/fhir/metadata",
            None,
            "application/fhir+json",
            "{}",
        );
        assert_eq!(
            (response.status, response.rule().as_deref()),
            (401, Some("identity.missing-token")),
            "{method}: {response:?}"
        );
    }
    assert_eq!(
        upstream.received().len(),
        1,
        "no anonymous write reached the upstream"
    );
}

#[test]
fn a_batch_with_one_forbidden_entry_is_denied_whole() {
    let upstream = TestUpstream::start(Reply::json(BUNDLE));
    let gateway = start(&upstream, r#"{ deny_entry_type = "Condition" }"#);
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Observation?patient=pat-123"}},
            {"request": {"method": "GET", "url": "Condition?patient=pat-999"}},
            {"request": {"method": "GET", "url": "Patient/pat-123"}},
        ]
    })
    .to_string();
    let response = send(
        gateway.addr,
        "POST",
        "/fhir",
        Some(&token()),
        "application/fhir+json",
        &bundle,
    );
    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(response.rule().as_deref(), Some("chaos.entry-type"));
    assert!(upstream.received().is_empty());

    let allowed = bundle.replace(
        "Condition?patient=pat-999",
        "Observation?patient=pat-123&code=x",
    );
    let response = send(
        gateway.addr,
        "POST",
        "/fhir",
        Some(&token()),
        "application/fhir+json",
        &allowed,
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(upstream.received()[0].body, allowed.as_bytes());
}

#[test]
fn limits_are_431_and_413() {
    let upstream = TestUpstream::start(Reply::json(BUNDLE));
    let gateway = start(&upstream, "{}");
    let many: String = (0..40).map(|i| format!("x-filler-{i}: {i}\r\n")).collect();
    let raw = format!(
        "GET /fhir/metadata HTTP/1.1\r\nhost: gateway.test\r\n{many}connection: close\r\n\r\n"
    );
    let response = send_raw(gateway.addr, raw.as_bytes());
    assert_eq!(response.status, 431, "{response:?}");
    let big = format!(
        r#"{{"resourceType":"Observation","note":"{}"}}"#,
        "x".repeat(5000)
    );
    let response = send(
        gateway.addr,
        "POST",
        "/fhir/Observation",
        Some(&token()),
        "application/fhir+json",
        &big,
    );
    assert_eq!(
        (response.status, response.rule().as_deref()),
        (413, Some("limits.body-bytes"))
    );
    assert!(upstream.received().is_empty());
}

#[test]
fn upstream_failures_are_502_and_504() {
    // Nothing listens on this port.
    let down = free_port();
    let gateway = GatewayProcess::start(&config(&format!("http://{down}/base"), "{}", ""));
    let response = get(gateway.addr, "/fhir/Patient/pat-123", Some(&token()));
    assert_eq!(
        (response.status, response.rule().as_deref()),
        (502, Some("upstream.unreachable"))
    );

    let slow = TestUpstream::start(Reply {
        delay: Duration::from_millis(1500),
        ..Reply::json(BUNDLE)
    });
    let gateway = start(&slow, "{}");
    let response = get(gateway.addr, "/fhir/Patient/pat-123", Some(&token()));
    assert_eq!(
        (response.status, response.rule().as_deref()),
        (504, Some("upstream.timeout"))
    );
}

#[test]
fn a_reload_with_a_broken_config_keeps_serving_and_a_good_one_applies() {
    let upstream = TestUpstream::start(Reply::json(BUNDLE));
    let gateway = start(&upstream, "{}");
    let good = std::fs::read_to_string(gateway.config_path()).expect("config");
    assert_eq!(
        get(gateway.addr, "/fhir/Patient/pat-123", Some(&token())).status,
        200
    );

    std::fs::write(
        gateway.config_path(),
        good.replace("name = \"chaos\"", "name = \"chaos\"\nbogus = 1"),
    )
    .expect("write");
    gateway.signal("HUP");
    assert!(gateway.wait_for_log("reload failed"), "{}", gateway.log());
    assert_eq!(
        get(gateway.addr, "/fhir/Patient/pat-123", Some(&token())).status,
        200
    );

    let denying = good.replace(
        "config = {}",
        r#"config = { verdict = "deny", rule_id = "chaos.reloaded" }"#,
    );
    std::fs::write(gateway.config_path(), denying).expect("write");
    gateway.signal("HUP");
    assert!(
        gateway.wait_for_log("configuration reloaded"),
        "{}",
        gateway.log()
    );
    let response = get(gateway.addr, "/fhir/Patient/pat-123", Some(&token()));
    assert_eq!(
        (response.status, response.rule().as_deref()),
        (403, Some("chaos.reloaded"))
    );
}

#[test]
fn the_admin_listener_reports_health_and_metrics() {
    let upstream = TestUpstream::start(Reply::json(BUNDLE));
    let gateway = start(&upstream, "{}");
    assert_eq!(
        get(gateway.addr, "/fhir/Patient/pat-123", Some(&token())).status,
        200
    );
    assert_eq!(get(gateway.addr, "/fhir/Patient/pat-123", None).status, 401);
    let health = get(gateway.admin, "/healthz", None);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(get(gateway.admin, "/readyz", None).status, 200);
    let metrics: RawResponse = get(gateway.admin, "/metrics", None);
    assert_eq!(metrics.status, 200);
    for expected in [
        r#"ehrgate_requests_total{route="ehr",decision="allow",status="200"} 1"#,
        r#"ehrgate_denials_total{rule="identity.missing-token"} 1"#,
        "ehrgate_policy_duration_seconds_count{module=\"chaos\"} 1",
        "ehrgate_upstream_duration_seconds_count{upstream=\"ehr\"} 1",
        "ehrgate_in_flight_requests 0",
    ] {
        assert!(
            metrics.body.contains(expected),
            "missing {expected}:\n{}",
            metrics.body
        );
    }
}

#[test]
fn shutdown_drains_and_exits_cleanly() {
    let upstream = TestUpstream::start(Reply::json(BUNDLE));
    let mut gateway = start(&upstream, "{}");
    gateway.signal("TERM");
    assert_eq!(
        gateway.wait_for_exit(Duration::from_secs(20)),
        Some(true),
        "{}",
        gateway.log()
    );
    assert!(gateway.log().contains("draining"));
}

#[test]
fn check_lists_every_problem_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.toml");
    let broken = r#"
[server]
listen = "127.0.0.1:0"

[[upstreams]]
name = "ehr"
url = "ftp://example.test"

[[routes]]
name = "ehr"
prefix = "/fhir/../x"
upstream = "ehrr"

[[routes.policies]]
name = "missing"
module = "nowhere.wasm"
"#;
    std::fs::write(&path, broken).expect("write");
    let output = std::process::Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run check");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    for expected in [
        "gateway.toml:7: upstream `ehr`: url `ftp://example.test` needs the `http://` or `https://` scheme",
        "gateway.toml:11: route `ehr`: prefix `/fhir/../x` is not a canonical path",
        "gateway.toml:12: route `ehr`: upstream `ehrr` is not defined",
        "gateway.toml:16: route `ehr`: policy `missing`: no module at",
        "4 problem(s)",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }

    std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:0\"\ntypo = 1\n").expect("write");
    let output = std::process::Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("gateway.toml:3: unknown field `typo`"),
        "{stderr}"
    );
}

#[test]
fn the_client_gets_its_own_http_version_whatever_the_upstream_speaks() {
    let old_server = TestUpstream::start(Reply {
        version: "HTTP/1.0",
        ..Reply::json(BUNDLE)
    });
    let gateway = start(&old_server, "{}");
    let response = get(gateway.addr, "/fhir/Patient/pat-123", Some(&token()));
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response.head.starts_with("HTTP/1.1 200"),
        "an HTTP/1.1 client is answered in HTTP/1.1: {}",
        response.head
    );
}

#[test]
fn a_fragment_never_reaches_the_gateway_or_the_upstream() {
    // RFC 9112 §3.2: a request-target has no fragment. The HTTP parser drops one a client
    // sends anyway, so the request is judged and forwarded without it.
    let upstream = TestUpstream::start(Reply::json(BUNDLE));
    let gateway = start(&upstream, "{}");
    let raw = format!(
        "GET /fhir/Patient/pat-123#/../Patient/other HTTP/1.1\r\nhost: gateway.test\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
        token()
    );
    let response = send_raw(gateway.addr, raw.as_bytes());
    assert_eq!(response.status, 200, "{response:?}");
    let received = upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].request_line(),
        "GET /base/Patient/pat-123 HTTP/1.1"
    );
}

#[test]
fn content_length_beside_transfer_encoding_is_ignored_and_the_body_reframed() {
    // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length. The HTTP parser drops the
    // length, reads the chunked body, and the upstream gets the gateway's own framing.
    let upstream = TestUpstream::start(Reply::json(BUNDLE));
    let gateway = start(&upstream, "{}");
    let body = r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/pat-123"}}"#;
    let raw = format!(
        "POST /fhir/Observation HTTP/1.1\r\nhost: gateway.test\r\nauthorization: Bearer {}\r\ncontent-type: application/fhir+json\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        token(),
        body.len()
    );
    let response = send_raw(gateway.addr, raw.as_bytes());
    let received = upstream.received();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, body.as_bytes());
    assert_eq!(
        received[0].header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(received[0].header("transfer-encoding"), None);
}

#[test]
fn a_route_serves_only_its_resource_types_however_they_are_reached() {
    let upstream = TestUpstream::start(Reply::json(BUNDLE));
    let gateway = GatewayProcess::start(&config(&upstream.url("/base"), "{}", "").replace(
        "anonymous_paths = [\"/metadata\"]",
        "anonymous_paths = [\"/metadata\"]\nresource_types = [\"Claim\", \"Patient\"]",
    ));
    for target in [
        "/fhir/Observation?patient=pat-123",
        "/fhir/Patient/pat-123/Observation",
        "/fhir?_type=Claim,Observation",
        "/fhir?patient=pat-123",
        "/fhir/Patient/pat-123/$everything",
        "/fhir/_history",
        "/fhir/Claim?_revinclude=Observation:subject",
    ] {
        let response = get(gateway.addr, target, Some(&token()));
        assert_eq!(
            (response.status, response.rule().as_deref()),
            (404, Some("route.resource-type")),
            "{target}: {response:?}"
        );
    }
    assert!(
        upstream.received().is_empty(),
        "a refused request was forwarded"
    );
    let served = get(gateway.addr, "/fhir/Claim?patient=pat-123", Some(&token()));
    assert_eq!(served.status, 200, "{served:?}");
}
