//! The audit log end to end: the real `ehrgate` binary in strict mode killed with SIGKILL
//! under load and restarted on the same log, a log that cannot be written, and the review
//! commands (`verify`, `query`, `report`, `export`) on a log the gateway wrote, with the
//! FHIR export validated by the `fhir.resources` Python package.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::gateway::{GatewayProcess, binary};
use crate::support::guest;
use crate::support::http::{get, send};
use crate::support::tokens::{clinician_claims, identity_toml, sign};
use crate::support::upstream::{Reply, TestUpstream};

const BUNDLE: &str = r#"{"resourceType":"Bundle","type":"searchset","total":0}"#;

/// A key pair made with `ehrgate keygen`, and a log directory, kept apart from any one
/// gateway process so a restarted gateway writes the same log.
pub(crate) struct AuditFiles {
    _temp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    pub(crate) signing_key: PathBuf,
    pub(crate) public_key: PathBuf,
}

pub(crate) fn audit_files() -> AuditFiles {
    let temp = tempfile::tempdir().unwrap();
    let keys = temp.path().join("keys");
    let output = ehrgate(&["keygen", "--out", keys.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    let signing_key = keys.join("audit-signing.key");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&signing_key)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the private key is for its owner only");
    AuditFiles {
        dir: temp.path().join("audit"),
        public_key: keys.join("audit-signing.pub"),
        signing_key,
        _temp: temp,
    }
}

/// A gateway config: `/fhir` to `upstream_url`, the chaos fixture enforcing `chaos_config`
/// and a second chaos module in shadow mode that always denies, and `[audit]` with `extra`.
fn config(upstream_url: &str, files: &AuditFiles, chaos_config: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"

[admin]
listen = "{{admin}}"


[[upstreams]]
name = "ehr"
url = "{upstream_url}"
timeout_ms = 2000

[[routes]]
name = "ehr"
prefix = "/fhir"
upstream = "ehr"
anonymous_paths = ["/metadata"]

[[routes.policies]]
name = "chaos"
module = "{module}"
config = {chaos_config}

[[routes.policies]]
name = "trial"
module = "{module}"
mode = "shadow"
config = {{ verdict = "deny", status = 403, rule_id = "trial.would-deny" }}

[audit]
dir = "{dir}"
signing_key = "{key}"
{extra}
{identity}
"#,
        module = guest("chaos").display(),
        dir = files.dir.display(),
        key = files.signing_key.display(),
        identity = identity_toml(),
    )
}

/// The value of an unlabelled metric in a Prometheus text exposition.
fn metric(exposition: &str, name: &str) -> u64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{name}` in\n{exposition}"))
}

pub(crate) fn ehrgate(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .output()
        .expect("run ehrgate")
}

pub(crate) fn verify_json(files: &AuditFiles) -> (bool, Value) {
    let output = ehrgate(&[
        "audit",
        "verify",
        "--dir",
        files.dir.to_str().unwrap(),
        "--public-key",
        files.public_key.to_str().unwrap(),
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("verify --json printed no JSON ({e}): {output:?}"));
    (output.status.success(), report)
}

/// The request ids of every record in the log, through `audit query --json`.
fn logged_request_ids(files: &AuditFiles) -> Vec<String> {
    let output = ehrgate(&[
        "audit",
        "query",
        "--dir",
        files.dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            record["request_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// One GET with our own request id on a fresh connection. The status, or `None` when the
/// gateway is gone.
fn try_get(addr: SocketAddr, request_id: &str, token: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let raw = format!(
        "GET /fhir/Observation?patient=pat-123 HTTP/1.1\r\nhost: gateway.test\r\n\
         authorization: Bearer {token}\r\nx-request-id: {request_id}\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(raw.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    // Any byte of a response means the record was already fsynced: strict mode writes it
    // before the response is released.
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[test]
fn a_strict_log_survives_sigkill_under_load_and_its_chain_continues_after_restart() {
    let upstream = TestUpstream::start(Reply::json(BUNDLE));
    let files = audit_files();
    let config = config(
        &upstream.url("/base"),
        &files,
        r#"{ risk = 20, findings = [{ rule_id = "chaos.note", severity = "low", detail = "seen" }] }"#,
        "mode = \"strict\"\ncheckpoint_every = 25",
    );
    let gateway = GatewayProcess::start(&config);
    let token = sign(&clinician_claims());

    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (answered, stop, token, addr) =
                (answered.clone(), stop.clone(), token.clone(), gateway.addr);
            std::thread::spawn(move || {
                // Bounded in count and time; ends early once the gateway is gone.
                for n in 0..2_000 {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(60) {
                        return;
                    }
                    let id = format!("crash-{client}-{n}");
                    match try_get(addr, &id, &token) {
                        Some(status) => {
                            assert_eq!(status, 200, "{id}");
                            answered.lock().unwrap().push(id);
                        }
                        None => return,
                    }
                }
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.lock().unwrap().len() < 150 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut gateway = gateway;
    gateway.kill();
    drop(gateway);
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() >= 150,
        "only {} requests answered before the kill",
        answered.len()
    );

    let (intact, report) = verify_json(&files);
    assert!(
        intact,
        "after SIGKILL, only a torn last line is acceptable: {report:#}"
    );
    assert!(report["problem"].is_null(), "{report:#}");
    let logged = logged_request_ids(&files);
    let logged_set: std::collections::HashSet<&String> = logged.iter().collect();
    for id in &answered {
        assert!(
            logged_set.contains(id),
            "request `{id}` was answered but has no record"
        );
    }
    let seq_before = report["last_seq"].as_u64().unwrap();
    assert_eq!(seq_before, logged.len() as u64);

    // Restart on the same log: the chain goes on from where the killed gateway left it.
    let gateway = GatewayProcess::start(&config);
    for n in 0..20 {
        assert_eq!(
            try_get(gateway.addr, &format!("after-{n}"), &token),
            Some(200)
        );
    }
    drop(gateway);
    let (intact, report) = verify_json(&files);
    assert!(intact && report["problem"].is_null(), "{report:#}");
    assert_eq!(
        report["last_seq"].as_u64(),
        Some(seq_before + 20),
        "{report:#}"
    );
    assert!(
        report["uncovered"].is_null(),
        "a clean stop ends with a checkpoint: {report:#}"
    );
    let logged = logged_request_ids(&files);
    assert_eq!(logged.last().map(String::as_str), Some("after-19"));
}

#[test]
fn a_log_that_cannot_be_written_refuses_requests_with_503_and_recovers() {
    let upstream = TestUpstream::start(Reply::json(BUNDLE));
    let files = audit_files();
    let gateway = GatewayProcess::start(&config(
        &upstream.url("/base"),
        &files,
        "{}",
        "rotate_bytes = 4096",
    ));
    let token = sign(&clinician_claims());
    assert_eq!(
        get(gateway.addr, "/fhir/Patient/pat-123", Some(&token)).status,
        200
    );

    // The open file keeps taking records; the next rotation needs the directory.
    let moved = files.dir.with_extension("moved");
    std::fs::rename(&files.dir, &moved).unwrap();
    let mut refused = None;
    for _ in 0..100 {
        let response = get(gateway.addr, "/fhir/Patient/pat-123", Some(&token));
        if response.status != 200 {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("a request refused once the log cannot rotate");
    assert_eq!(refused.status, 503, "{refused:?}");
    // Operators see it in /metrics.
    let metrics = get(gateway.admin, "/metrics", None).body;
    assert!(
        metric(&metrics, "ehrgate_audit_write_failures_total") >= 1,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "ehrgate_audit_failing"), 1, "{metrics}");
    assert_eq!(refused.rule().as_deref(), Some("audit.unavailable"));
    assert!(
        !refused.body.contains(BUNDLE),
        "the upstream's answer is not released"
    );
    assert!(
        gateway.wait_for_log("audit record not written"),
        "{}",
        gateway.log()
    );

    std::fs::rename(&moved, &files.dir).unwrap();
    assert_eq!(
        get(gateway.addr, "/fhir/Patient/pat-123", Some(&token)).status,
        200
    );
    let metrics = get(gateway.admin, "/metrics", None).body;
    assert_eq!(metric(&metrics, "ehrgate_audit_failing"), 0, "{metrics}");
    let written = metric(&metrics, "ehrgate_audit_records_written_total");
    assert!(written >= 2, "{metrics}");
    assert_eq!(
        metric(&metrics, "ehrgate_audit_durable_seq"),
        written,
        "strict: all fsynced"
    );
    assert_eq!(
        metric(&metrics, "ehrgate_audit_queue_depth"),
        0,
        "{metrics}"
    );
    drop(gateway);
    let (intact, report) = verify_json(&files);
    assert!(intact, "{report:#}");
}

#[test]
fn a_write_whose_client_went_away_is_still_recorded() {
    // The upstream takes its time; the client sends a DELETE and leaves before the answer.
    let upstream = TestUpstream::start(Reply {
        delay: Duration::from_millis(1500),
        ..Reply::json("{}")
    });
    let files = audit_files();
    let gateway = GatewayProcess::start(&config(&upstream.url("/base"), &files, "{}", ""));
    let token = sign(&clinician_claims());
    {
        let mut stream = TcpStream::connect(gateway.addr).expect("connect");
        let request = format!(
            "DELETE /fhir/Patient/pat-123 HTTP/1.1\r\nhost: gateway.test\r\n\
             authorization: Bearer {token}\r\nx-request-id: client-gone-1\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("send");
        std::thread::sleep(Duration::from_millis(300));
        // Dropped here: the connection closes while the upstream is still working.
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.received().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        upstream.received().len(),
        1,
        "the DELETE reached the upstream"
    );
    let mut recorded = false;
    while !recorded && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        recorded = logged_request_ids(&files)
            .iter()
            .any(|id| id == "client-gone-1");
    }
    assert!(
        recorded,
        "the forwarded DELETE has its audit record\n{}",
        gateway.log()
    );
    drop(gateway);
    let (intact, report) = verify_json(&files);
    assert!(intact, "{report:#}");
}

/// Requests of every kind the log records: allowed reads, searches, writes and batches,
/// a policy deny, a rejection, an anonymous capabilities call and break-the-glass.
fn varied_traffic(addr: SocketAddr) {
    let token = sign(&clinician_claims());
    let mut glass = clinician_claims();
    glass["purpose_of_use"] = json!(["BTG"]);
    glass["break_glass_reason"] = json!("trauma bay, patient unresponsive");
    let glass = sign(&glass);
    let fhir = "application/fhir+json";
    let cases: Vec<(u16, crate::support::http::RawResponse)> = vec![
        (
            200,
            get(
                addr,
                "/fhir/Observation?patient=pat-123&category=laboratory",
                Some(&token),
            ),
        ),
        (200, get(addr, "/fhir/Patient/pat-123", Some(&token))),
        (403, get(addr, "/fhir/Patient/pat-666", Some(&token))),
        (401, get(addr, "/fhir/Patient/pat-123", None)),
        (200, get(addr, "/fhir/metadata", None)),
        (
            200,
            get(addr, "/fhir/Patient/pat-123/$everything", Some(&glass)),
        ),
        (
            200,
            send(
                addr,
                "POST",
                "/fhir/Observation",
                Some(&token),
                fhir,
                r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/pat-123"}}"#,
            ),
        ),
        (
            200,
            send(
                addr,
                "POST",
                "/fhir",
                Some(&token),
                fhir,
                &json!({
                    "resourceType": "Bundle",
                    "type": "batch",
                    "entry": [
                        {"request": {"method": "GET", "url": "Observation?patient=pat-123"}},
                        {"request": {"method": "GET", "url": "Patient/pat-124"}},
                    ]
                })
                .to_string(),
            ),
        ),
    ];
    for (expected, response) in cases {
        assert_eq!(response.status, expected, "{response:?}");
    }
}

#[test]
fn the_review_commands_read_what_the_gateway_wrote() {
    let upstream = TestUpstream::start(Reply::json(BUNDLE));
    let files = audit_files();
    let gateway = GatewayProcess::start(&config(
        &upstream.url("/base"),
        &files,
        r#"{ deny_patient = "pat-666", findings = [{ rule_id = "chaos.vip", severity = "high", detail = "VIP chart" }] }"#,
        "mode = \"buffered\"\nfsync_interval_ms = 50",
    ));
    varied_traffic(gateway.addr);
    drop(gateway);
    let dir = files.dir.to_str().unwrap();

    let verified = ehrgate(&[
        "audit",
        "verify",
        "--dir",
        dir,
        "--public-key",
        files.public_key.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{verified:?}");
    assert!(
        text.contains("8 records in 1 file(s)") && text.contains("ok: the log is intact"),
        "{text}"
    );

    let denied = ehrgate(&["audit", "query", "--dir", dir, "--decision", "deny"]);
    let table = String::from_utf8_lossy(&denied.stdout);
    assert!(
        table.starts_with("TIME") && table.contains("chaos.patient") && table.contains("pat-666"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 2, "{table}");
    let shadow = ehrgate(&[
        "audit",
        "query",
        "--dir",
        dir,
        "--rule",
        "trial.would-deny",
        "--json",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&shadow.stdout).lines().count(),
        7,
        "every policy-evaluated request"
    );

    let report = ehrgate(&["audit", "report", "--dir", dir, "--patient", "pat-123"]);
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(report.status.success(), "{report:?}");
    assert!(
        text.contains("Break-the-glass: 1") && text.contains("trauma bay, patient unresponsive"),
        "{text}"
    );
    assert!(
        text.contains("Accounting of disclosures for patient pat-123"),
        "{text}"
    );
    let html_path = files.dir.with_extension("html");
    let html = ehrgate(&[
        "audit",
        "report",
        "--dir",
        dir,
        "--html",
        html_path.to_str().unwrap(),
    ]);
    assert!(html.status.success(), "{html:?}");
    let page = std::fs::read_to_string(&html_path).unwrap();
    assert!(page.contains("<svg") && !page.contains("<script"));

    // The export, in both forms, validated against FHIR R4.
    let (ndjson, bundle) = export_fhir(&files);
    let events = std::fs::read_to_string(&ndjson).unwrap().lines().count();
    // One per patient touched: the batch touched two, metadata and the rejection none.
    assert_eq!(events, 9, "{}", std::fs::read_to_string(&ndjson).unwrap());
    validate_fhir_r4(&ndjson, &bundle, events);
}

/// Exports the log as FHIR AuditEvents, as NDJSON and as a Bundle; the two files' paths.
pub(crate) fn export_fhir(files: &AuditFiles) -> (PathBuf, PathBuf) {
    let dir = files.dir.to_str().unwrap();
    let ndjson = files.dir.with_extension("ndjson");
    let bundle = files.dir.with_extension("bundle.json");
    for (path, bundle_flag) in [(&ndjson, false), (&bundle, true)] {
        let mut args = vec![
            "audit",
            "export",
            "--dir",
            dir,
            "--format",
            "fhir",
            "--out",
            path.to_str().unwrap(),
        ];
        if bundle_flag {
            args.push("--bundle");
        }
        let output = ehrgate(&args);
        assert!(output.status.success(), "{output:?}");
    }
    (ndjson, bundle)
}

/// FHIR R4 validation with `fhir.resources` 6.4.0, the last release whose models are FHIR
/// 4.0.1 (7.x and later are R5 with an R4B subpackage, which is 4.3.0), in a virtual
/// environment this test makes once under `target/test-venv`.
pub(crate) fn validate_fhir_r4(ndjson: &Path, bundle: &Path, expected: usize) {
    let python = fhir_venv();
    let script = r#"
import json, sys
from fhir.resources import __fhir_version__
from fhir.resources.auditevent import AuditEvent
from fhir.resources.bundle import Bundle
assert __fhir_version__ == "4.0.1", __fhir_version__
count = 0
with open(sys.argv[1]) as lines:
    for number, line in enumerate(lines, 1):
        try:
            AuditEvent.parse_obj(json.loads(line))
        except Exception as error:
            sys.exit(f"line {number}: {error}")
        count += 1
with open(sys.argv[2]) as whole:
    bundle = Bundle.parse_obj(json.load(whole))
assert bundle.type == "collection"
assert all(entry.resource.resource_type == "AuditEvent" for entry in bundle.entry)
print(count, len(bundle.entry))
"#;
    let output = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(ndjson)
        .arg(bundle)
        .output()
        .expect("run the venv's python");
    assert!(
        output.status.success(),
        "FHIR R4 validation failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("{expected} {expected}")
    );
}

/// The venv's python, creating the venv and installing the validator the first time.
fn fhir_venv() -> PathBuf {
    const REQUIREMENTS: [&str; 2] = ["fhir.resources==6.4.0", "pydantic[email]>=1.10,<2"];
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_owned();
    let venv = target.join("test-venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".ehrgate-ready");
    let wanted = REQUIREMENTS.join("\n");
    // Test binaries may run at once: one makes the venv, the others wait for it.
    let lock = std::fs::File::create(target.join("test-venv.lock")).unwrap();
    lock.lock().unwrap();
    if std::fs::read_to_string(&ready).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output();
    match created {
        Ok(output) if output.status.success() => {}
        other => panic!(
            "cannot create the test venv at `{}` with `python3 -m venv`: {other:?}\n  help: install python3 with its venv module",
            venv.display()
        ),
    }
    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(REQUIREMENTS)
        .output()
        .expect("run pip");
    assert!(
        installed.status.success(),
        "cannot install {REQUIREMENTS:?} into `{}` (PyPI must be reachable):\n{}",
        venv.display(),
        String::from_utf8_lossy(&installed.stderr)
    );
    std::fs::write(&ready, &wanted).unwrap();
    python
}
