//! Write ownership from the stored resource, through the real `ehrgate` binary and the
//! least-privilege module, in front of a recording upstream: what the gateway reads before
//! an update, patch or delete by id, what it forwards (the `If-Match` on the version read),
//! what it refuses without forwarding anything, and what the audit record says. The same
//! against the real FHIR server is in the demo (`examples/demo/run.sh --check`).

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::gateway::{GatewayProcess, binary};
use crate::support::guest;
use crate::support::http::{RawResponse, send, send_raw};
use crate::support::tokens::{AUDIENCE, ISSUER, identity_toml, now, sign};
use crate::support::upstream::{Reply, TestUpstream};

const OTHER_OBSERVATION: &str = r#"{"resourceType":"Observation","id":"o7","meta":{"versionId":"4"},"status":"final","subject":{"reference":"Patient/pat-456"}}"#;
const OWN_OBSERVATION: &str = r#"{"resourceType":"Observation","id":"o1","meta":{"versionId":"3"},"status":"final","subject":{"reference":"Patient/pat-123"}}"#;
const OUTCOME: &str = r#"{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational"}]}"#;

/// A patient app launched for `pat-123` that may read and write its observations.
fn patient_app_token() -> String {
    let now = now();
    sign(&json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "pat-123-user",
        "client_id": "patient-app",
        "scope": "launch/patient patient/Observation.cruds",
        "patient": "pat-123",
        "iat": now,
        "exp": now + 300,
    }))
}

/// A gateway with one `/fhir` route to `upstream` guarded by least-privilege (`policy`
/// config), `route_extra` on the route, and a strict audit log in `audit`.
fn start(
    upstream: &TestUpstream,
    route_extra: &str,
    policy: &str,
    audit: &Audit,
) -> GatewayProcess {
    GatewayProcess::start(&format!(
        r#"
[server]
listen = "{{listen}}"

[admin]
listen = "{{admin}}"

[sandbox]
deadline_ms = 200

[[upstreams]]
name = "ehr"
url = "{url}"
timeout_ms = 1000

[[routes]]
name = "ehr"
prefix = "/fhir"
upstream = "ehr"
{route_extra}

[[routes.policies]]
name = "least-privilege"
module = "{module}"
config = {policy}

[audit]
dir = "{dir}"
signing_key = "{key}"
{identity}
"#,
        url = upstream.url("/base"),
        module = guest("least-privilege").display(),
        dir = audit.dir.display(),
        key = audit.key.display(),
        identity = identity_toml(),
    ))
}

struct Audit {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    key: PathBuf,
}

fn audit() -> Audit {
    let temp = tempfile::tempdir().unwrap();
    let keys = temp.path().join("keys");
    let output = Command::new(binary())
        .args(["keygen", "--out", keys.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    Audit {
        dir: temp.path().join("audit"),
        key: keys.join("audit-signing.key"),
        _temp: temp,
    }
}

impl Audit {
    /// Every record written so far (strict mode: written before the response).
    fn records(&self) -> Vec<Value> {
        let mut records = Vec::new();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for file in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "jsonl"))
        {
            for line in std::fs::read_to_string(file).unwrap().lines() {
                let value: Value = serde_json::from_str(line).unwrap();
                if value.get("request_id").is_some() {
                    records.push(value);
                }
            }
        }
        records
    }

    fn last(&self) -> Value {
        self.records().pop().expect("a record")
    }
}

fn put(gateway: &GatewayProcess, path: &str, body: &str) -> RawResponse {
    send(
        gateway.addr,
        "PUT",
        path,
        Some(&patient_app_token()),
        "application/fhir+json",
        body,
    )
}

fn rule(response: &RawResponse) -> (u16, Option<String>) {
    (response.status, response.rule())
}

#[test]
fn another_patients_observation_is_not_overwritten_by_id() {
    let upstream = TestUpstream::start_script(vec![
        Reply::json(OTHER_OBSERVATION).with_header("etag", "W/\"4\""),
    ]);
    let audit = audit();
    let gateway = start(&upstream, "", "{}", &audit);
    let response = put(
        &gateway,
        "/fhir/Observation/o7",
        r#"{"resourceType":"Observation","id":"o7","status":"amended","subject":{"reference":"Patient/pat-123"}}"#,
    );
    assert_eq!(
        rule(&response),
        (403, Some("least-privilege.stored-owner".into())),
        "{response:?}\n{}",
        gateway.log()
    );
    // Only the read reached the upstream, with the client's credentials and the marker.
    let received = upstream.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    let read = &received[0];
    assert_eq!(read.request_line(), "GET /base/Observation/o7 HTTP/1.1");
    assert!(
        read.header("authorization")
            .is_some_and(|a| a.starts_with("Bearer "))
    );
    assert_eq!(read.header("x-ehrgate-pre-read"), Some("1"));
    assert_eq!(read.header("x-ehrgate-subject"), Some("pat-123-user"));
    assert_eq!(read.header("accept"), Some("application/fhir+json"));
    assert!(read.body.is_empty());

    let record = audit.last();
    assert_eq!(record["decision"], "deny");
    assert_eq!(record["rule"], "least-privilege.stored-owner");
    assert_eq!(record["patients"], json!(["pat-123", "pat-456"]));
    assert_eq!(record["pre_read"]["status"], 200);
    assert_eq!(record["pre_read"]["outcome"], "found");
    assert_eq!(record["pre_read"]["version"], "4");
    assert_eq!(record["pre_read"]["patients"], json!(["pat-456"]));
    assert_eq!(record["pre_read"]["condition"], "If-Match: W/\"4\"");
    assert!(record["pre_read"]["latency_us"].as_u64().is_some());
}

#[test]
fn own_writes_go_upstream_pinned_to_the_version_read() {
    let updated = OWN_OBSERVATION.replace("\"3\"", "\"4\"");
    let upstream = TestUpstream::start_script(vec![
        Reply::json(OWN_OBSERVATION).with_header("etag", "W/\"3\""),
        Reply::json(&updated).with_header("etag", "W/\"4\""),
        Reply::json(OWN_OBSERVATION).with_header("etag", "W/\"3\""),
        Reply::json(OUTCOME),
    ]);
    let audit = audit();
    let gateway = start(&upstream, "", "{}", &audit);
    let body = r#"{"resourceType":"Observation","id":"o1","status":"amended","subject":{"reference":"Patient/pat-123"}}"#;
    // The client's own If-Match on the same version is kept by the gateway's.
    let raw = format!(
        "PUT /fhir/Observation/o1 HTTP/1.1\r\nhost: gateway.test\r\nauthorization: Bearer {}\r\n\
         content-type: application/fhir+json\r\nif-match: W/\"3\"\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        patient_app_token(),
        body.len()
    );
    let response = send_raw(gateway.addr, raw.as_bytes());
    assert_eq!(response.status, 200, "{response:?}\n{}", gateway.log());
    let record = audit.last();
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["patients"], json!(["pat-123"]));
    assert_eq!(record["pre_read"]["condition"], "If-Match: W/\"3\"");

    let delete = send_raw(
        gateway.addr,
        format!(
            "DELETE /fhir/Observation/o1 HTTP/1.1\r\nhost: gateway.test\r\n\
             authorization: Bearer {}\r\nconnection: close\r\n\r\n",
            patient_app_token()
        )
        .as_bytes(),
    );
    assert_eq!(delete.status, 200, "{delete:?}\n{}", gateway.log());

    let received = upstream.received();
    let lines: Vec<&str> = received.iter().map(|r| r.request_line()).collect();
    assert_eq!(
        lines,
        [
            "GET /base/Observation/o1 HTTP/1.1",
            "PUT /base/Observation/o1 HTTP/1.1",
            "GET /base/Observation/o1 HTTP/1.1",
            "DELETE /base/Observation/o1 HTTP/1.1",
        ]
    );
    assert_eq!(received[1].header("if-match"), Some("W/\"3\""));
    assert_eq!(received[1].header("if-none-match"), None);
    assert_eq!(received[1].header("x-ehrgate-pre-read"), None);
    assert_eq!(received[3].header("if-match"), Some("W/\"3\""));
}

#[test]
fn a_concurrent_change_between_the_read_and_the_write_is_refused_upstream() {
    // The upstream holds version 3 when the gateway reads, and another client's change has
    // made it version 4 when the write arrives: an upstream that honours If-Match refuses.
    let upstream = TestUpstream::start_script(vec![
        Reply::json(OWN_OBSERVATION).with_header("etag", "W/\"3\""),
        Reply::status(
            412,
            r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"conflict","diagnostics":"Version conflict: If-Match W/\"3\" but current is 4"}]}"#,
        ),
    ]);
    let audit = audit();
    let gateway = start(&upstream, "", "{}", &audit);
    let response = put(
        &gateway,
        "/fhir/Observation/o1",
        r#"{"resourceType":"Observation","id":"o1","status":"amended","subject":{"reference":"Patient/pat-123"}}"#,
    );
    assert_eq!(response.status, 412, "{response:?}\n{}", gateway.log());
    let received = upstream.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].header("if-match"), Some("W/\"3\""));
    let record = audit.last();
    assert_eq!(record["upstream_status"], 412);
    assert_eq!(record["pre_read"]["version"], "3");
}

/// What the test calls it, the upstream's answer to the read, the method, extra client
/// headers, and the refusal expected.
type RefusalCase = (
    &'static str,
    Reply,
    &'static str,
    &'static str,
    (u16, &'static str),
);

#[test]
fn the_gateway_refuses_what_it_cannot_judge_and_forwards_nothing() {
    let audit = audit();
    let cases: Vec<RefusalCase> = vec![
        (
            "a client precondition on another version",
            Reply::json(OWN_OBSERVATION).with_header("etag", "W/\"3\""),
            "PUT",
            "if-match: W/\"2\"\r\n",
            (412, "preread.precondition-failed"),
        ),
        (
            "a delete of nothing",
            Reply::status(404, OUTCOME),
            "DELETE",
            "",
            (404, "preread.not-found"),
        ),
        (
            "a read the upstream fails",
            Reply::status(500, OUTCOME),
            "PUT",
            "",
            (502, "preread.failed"),
        ),
        (
            "a read the upstream refuses",
            Reply::status(403, OUTCOME),
            "DELETE",
            "",
            (403, "preread.refused"),
        ),
        (
            "a read that takes too long",
            Reply {
                delay: std::time::Duration::from_millis(1500),
                ..Reply::json(OWN_OBSERVATION)
            },
            "DELETE",
            "",
            (504, "preread.timeout"),
        ),
    ];
    for (what, reply, method, extra, (status, rule_id)) in cases {
        let upstream = TestUpstream::start(reply);
        let gateway = start(&upstream, "", "{}", &audit);
        let body = if method == "PUT" {
            r#"{"resourceType":"Observation","id":"o1","status":"amended","subject":{"reference":"Patient/pat-123"}}"#
        } else {
            ""
        };
        let framing = if method == "PUT" {
            format!(
                "content-type: application/fhir+json\r\ncontent-length: {}\r\n",
                body.len()
            )
        } else {
            String::new()
        };
        let raw = format!(
            "{method} /fhir/Observation/o1 HTTP/1.1\r\nhost: gateway.test\r\n\
             authorization: Bearer {}\r\n{extra}{framing}connection: close\r\n\r\n{body}",
            patient_app_token()
        );
        let response = send_raw(gateway.addr, raw.as_bytes());
        assert_eq!(
            rule(&response),
            (status, Some(rule_id.to_owned())),
            "{what}: {response:?}\n{}",
            gateway.log()
        );
        let received = upstream.received();
        assert!(
            received
                .iter()
                .all(|r| r.request_line().starts_with("GET ")),
            "{what}: the write reached the upstream: {received:#?}"
        );
        let record = audit.last();
        assert_eq!(record["decision"], "reject", "{what}");
        assert_eq!(record["rule"], rule_id, "{what}");
        assert!(record["pre_read"].is_object(), "{what}: {record}");
    }
}

#[test]
fn clinicians_and_routes_that_do_not_verify_are_not_read_first() {
    let upstream = TestUpstream::start(Reply::json(OWN_OBSERVATION));
    let audit = audit();
    // Without the read, the policy refuses a patient-bound update unless told the upstream
    // enforces the owner itself.
    let gateway = start(
        &upstream,
        "verify_write_owner = \"off\"",
        "{ allow_unverified_instance_writes = true }",
        &audit,
    );
    let body = r#"{"resourceType":"Observation","id":"o1","status":"amended","subject":{"reference":"Patient/pat-123"}}"#;
    let response = put(&gateway, "/fhir/Observation/o1", body);
    assert_eq!(response.status, 200, "{response:?}\n{}", gateway.log());
    let received = upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].request_line(),
        "PUT /base/Observation/o1 HTTP/1.1"
    );
    assert_eq!(received[0].header("if-match"), None);
    assert!(audit.last().get("pre_read").is_none());
    drop(gateway);

    // A clinician's token without a launch patient, on a default route.
    let upstream = TestUpstream::start(Reply::json(OWN_OBSERVATION));
    let gateway = start(&upstream, "", "{ role_contexts = [] }", &audit);
    let now = now();
    let clinician = sign(&json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "dr-adams", "client_id": "ward-app",
        "scope": "user/Observation.cruds", "fhirUser": "Practitioner/dr-adams",
        "iat": now, "exp": now + 300,
    }));
    let response = send(
        gateway.addr,
        "PUT",
        "/fhir/Observation/o1",
        Some(&clinician),
        "application/fhir+json",
        body,
    );
    assert_eq!(response.status, 200, "{response:?}\n{}", gateway.log());
    let received = upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].request_line(),
        "PUT /base/Observation/o1 HTTP/1.1"
    );
    assert!(audit.last().get("pre_read").is_none());
}
