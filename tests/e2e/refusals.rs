//! Refusals below the request handler, end to end: the real binary with an audit log is sent
//! malformed and smuggling requests over raw TCP, HTTP/2 streams with illegal headers and an
//! illegal frame (prior knowledge), connections over the per-address cap, silent and
//! dribbling connections, and on a TLS listener a client that does not speak TLS. Every
//! refusal is found in the log as a protocol-refusal record with its cause and the socket's
//! peer (or, past the bound, in an aggregate), and in `/metrics`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::audit::{AuditFiles, audit_files, ehrgate, export_fhir, validate_fhir_r4, verify_json};
use crate::support::gateway::GatewayProcess;
use crate::support::guest;
use crate::support::http::get;
use crate::support::tokens::identity_toml;
use crate::support::upstream::{Reply, TestUpstream};

const PATIENT: &str = r#"{"resourceType":"Patient","id":"pat-123"}"#;

fn config(upstream: &TestUpstream, files: &AuditFiles, server: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
{server}

[admin]
listen = "{{admin}}"

[limits]
first_request_timeout_ms = 1500
header_read_timeout_ms = 500
max_connections_per_peer = 4

[[upstreams]]
name = "ehr"
url = "{url}"

[[routes]]
name = "ehr"
prefix = "/fhir"
upstream = "ehr"

[[routes.policies]]
name = "chaos"
module = "{module}"

[audit]
dir = "{dir}"
signing_key = "{key}"
mode = "buffered"
fsync_interval_ms = 50
{extra}
{identity}
"#,
        url = upstream.url(""),
        module = guest("chaos").display(),
        dir = files.dir.display(),
        key = files.signing_key.display(),
        identity = identity_toml(),
    )
}

/// A blocking connection from `source` (a 127.0.0.0/8 address) to `addr`.
fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((source, 0)))
            .expect("bind a loopback source address");
        socket.connect(addr).await.expect("connect")
    });
    let stream = stream.into_std().expect("std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

/// Sends `raw` on a fresh connection from `source`, reads until the gateway closes it, and
/// returns the local port (the record's `source_port`) and the status line's code (0: none).
fn send_from(source: [u8; 4], addr: SocketAddr, raw: &[u8]) -> (u16, u16) {
    let mut stream = connect_from(source, addr);
    let port = stream.local_addr().expect("local addr").port();
    let _ = stream.write_all(raw);
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (port, status)
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A GET's header block (HPACK, no Huffman, nothing indexed) with one more header field as
/// the client spells it.
fn h2_headers(name: &str, value: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    for (index, value) in [(4u8, "/fhir/Patient/pat-123"), (1, "gateway.test")] {
        block.push(index); // literal without indexing, indexed name (:path, :authority)
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block.push(0x00); // literal without indexing, new name
    block.push(name.len() as u8);
    block.extend_from_slice(name.as_bytes());
    block.push(value.len() as u8);
    block.extend_from_slice(value.as_bytes());
    block
}

/// Reads frames from `stream` until `done` says so or 10 s pass; returns (type, stream,
/// first payload word) of every RST_STREAM and GOAWAY read.
fn h2_read(
    stream: &mut TcpStream,
    done: impl Fn(&[(u8, u32, u32)]) -> bool,
) -> Vec<(u8, u32, u32)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    while !done(&seen) && Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        while buffer.len() >= 9 {
            let len = (usize::from(buffer[0]) << 16)
                | (usize::from(buffer[1]) << 8)
                | usize::from(buffer[2]);
            if buffer.len() < 9 + len {
                break;
            }
            let kind = buffer[3];
            let id = u32::from_be_bytes([buffer[5], buffer[6], buffer[7], buffer[8]]);
            let payload = &buffer[9..9 + len];
            let code = |at: usize| {
                u32::from_be_bytes([
                    payload[at],
                    payload[at + 1],
                    payload[at + 2],
                    payload[at + 3],
                ])
            };
            match kind {
                0x3 if len >= 4 => seen.push((kind, id, code(0))),
                0x7 if len >= 8 => seen.push((kind, id, code(4))),
                _ => {}
            }
            buffer.drain(..9 + len);
        }
    }
    seen
}

/// The protocol-refusal records in the log, through `audit query --refusals --json`.
fn refusal_records(files: &AuditFiles) -> Vec<Value> {
    let output = ehrgate(&[
        "audit",
        "query",
        "--dir",
        files.dir.to_str().unwrap(),
        "--refusals",
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The value of the series `name` (with its labels) in a Prometheus exposition; 0 if absent.
fn metric(exposition: &str, name: &str) -> u64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

/// Reads `/metrics` until `ready` holds for it (bounded).
fn metrics_when(gateway: &GatewayProcess, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = get(gateway.admin, "/metrics", None).body;
        if ready(&metrics) || Instant::now() >= deadline {
            return metrics;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn refusals_total(cause: &str) -> String {
    format!("ehrgate_protocol_refusals_total{{cause=\"{cause}\"}}")
}

const MALFORMED: &[(&str, &[u8])] = &[
    ("bad request line", b"GET /fhir/Patient/pat-123 HTTP/1.1 junk\r\nhost: gateway.test\r\n\r\n"),
    ("control byte in the method", b"G\x01T /fhir/Patient/pat-123 HTTP/1.1\r\nhost: gateway.test\r\n\r\n"),
    ("NUL in a header value", b"GET /fhir/Patient/pat-123 HTTP/1.1\r\nhost: gateway.test\r\nx-a: a\x00b\r\n\r\n"),
    ("CR in a header value", b"GET /fhir/Patient/pat-123 HTTP/1.1\r\nhost: gateway.test\r\nx-a: a\rb\r\n\r\n"),
    ("space before the colon", b"POST /fhir/Patient HTTP/1.1\r\nhost: gateway.test\r\ntransfer-encoding : chunked\r\ncontent-length: 4\r\n\r\nabcd"),
    ("two different lengths", b"POST /fhir/Patient HTTP/1.1\r\nhost: gateway.test\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcde"),
    ("a length that is no number", b"POST /fhir/Patient HTTP/1.1\r\nhost: gateway.test\r\ncontent-length: 4a\r\n\r\nabcd"),
    ("chunked not last", b"POST /fhir/Patient HTTP/1.1\r\nhost: gateway.test\r\ntransfer-encoding: chunked, identity\r\ncontent-length: 4\r\n\r\nabcd"),
    ("chunked in HTTP/1.0", b"POST /fhir/Patient HTTP/1.0\r\nhost: gateway.test\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"),
];

#[test]
fn every_refusal_below_the_handler_has_a_record_with_its_peer_and_a_counter() {
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    let files = audit_files();
    let gateway = GatewayProcess::start(&config(&upstream, &files, "", ""));
    let addr = gateway.addr;
    // (local port, cause, status) of every refusal sent.
    let mut expected: Vec<(u16, &str, Option<u64>)> = Vec::new();

    for (what, raw) in MALFORMED {
        let (port, status) = send_from([127, 0, 0, 1], addr, raw);
        assert_eq!(status, 400, "{what}\n{}", gateway.log());
        expected.push((port, "http1-malformed", Some(400)));
    }
    let mut oversize =
        b"GET /fhir/Patient/pat-123 HTTP/1.1\r\nhost: gateway.test\r\nx-big: ".to_vec();
    oversize.extend(std::iter::repeat_n(b'a', 40 << 10));
    oversize.extend_from_slice(b"\r\n\r\n");
    let (port, status) = send_from([127, 0, 0, 1], addr, &oversize);
    assert_eq!(status, 431);
    expected.push((port, "http1-head-too-large", Some(431)));

    // A head that starts and then stalls: hyper's header timeout (500 ms here).
    let (port, _) = send_from(
        [127, 0, 0, 1],
        addr,
        b"GET /fhir/Patient/pat-123 HTTP/1.1\r\nhost: gat",
    );
    expected.push((port, "http1-header-timeout", None));

    // Invalid chunked framing in a head that parses is the handler's to refuse: a request
    // record (rule `limits.body-read`), not a protocol refusal.
    let (_, status) = send_from(
        [127, 0, 0, 1],
        addr,
        b"POST /fhir/Patient HTTP/1.1\r\nhost: gateway.test\r\nx-request-id: bad-chunks\r\n\
          transfer-encoding: chunked\r\ncontent-type: application/fhir+json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    );
    assert_eq!(status, 400);

    // HTTP/2 with prior knowledge: two streams with illegal headers, each reset with
    // PROTOCOL_ERROR while the connection goes on; then an illegal frame ends a connection.
    let mut h2 = connect_from([127, 0, 0, 5], addr);
    let h2_port = h2.local_addr().unwrap().port();
    let mut bytes = H2_PREFACE.to_vec();
    bytes.extend(h2_frame(0x4, 0, 0, &[]));
    bytes.extend(h2_frame(
        0x1,
        0x5,
        1,
        &h2_headers("connection", "keep-alive"),
    ));
    bytes.extend(h2_frame(0x1, 0x5, 3, &h2_headers("te", "gzip")));
    h2.write_all(&bytes).unwrap();
    let resets = h2_read(&mut h2, |seen| {
        seen.iter().filter(|f| f.0 == 0x3).count() >= 2
    });
    assert_eq!(
        resets,
        vec![(0x3, 1, 0x1), (0x3, 3, 0x1)],
        "{}",
        gateway.log()
    );
    drop(h2);
    expected.push((h2_port, "http2-stream-reset", None));
    expected.push((h2_port, "http2-stream-reset", None));
    let mut h2 = connect_from([127, 0, 0, 5], addr);
    let goaway_port = h2.local_addr().unwrap().port();
    let mut bytes = H2_PREFACE.to_vec();
    bytes.extend(h2_frame(0x4, 0, 0, &[]));
    bytes.extend(h2_frame(0x0, 0, 0, b"data on stream 0")); // RFC 9113 §6.1
    h2.write_all(&bytes).unwrap();
    let goaway = h2_read(&mut h2, |seen| seen.iter().any(|f| f.0 == 0x7));
    assert_eq!(goaway, vec![(0x7, 0, 0x1)]);
    drop(h2);
    expected.push((goaway_port, "http2-goaway", None));

    // Six silent connections from one address with a cap of four: two are closed at accept,
    // four after the first-request timeout.
    let silent: Vec<TcpStream> = (0..6).map(|_| connect_from([127, 0, 0, 6], addr)).collect();
    let metrics = metrics_when(&gateway, |m| {
        metric(m, &refusals_total("first-request-timeout")) >= 4
            && metric(m, &refusals_total("http2-goaway")) >= 1
    });
    for stream in &silent {
        let port = stream.local_addr().unwrap().port();
        // Which two were refused at accept is the scheduler's business; both causes are
        // counted below.
        expected.push((port, "silent", None));
    }

    for (cause, count) in [
        ("http1-malformed", MALFORMED.len() as u64),
        ("http1-head-too-large", 1),
        ("http1-header-timeout", 1),
        ("http2-stream-reset", 2),
        ("http2-goaway", 1),
        ("peer-limit", 2),
        ("first-request-timeout", 4),
    ] {
        assert_eq!(
            metric(&metrics, &refusals_total(cause)),
            count,
            "{cause}\n{metrics}"
        );
    }
    drop(silent);
    drop(gateway);

    // One record per refusal, with its cause and peer.
    let records = refusal_records(&files);
    assert!(
        records.iter().all(|r| r["aggregate"].is_null()),
        "{records:#?}"
    );
    let mut by_port: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for record in &records {
        assert_eq!(record["kind"], "protocol-refusal");
        by_port
            .entry(record["source_port"].as_u64().unwrap())
            .or_default()
            .push(record);
    }
    assert_eq!(records.len(), expected.len(), "{records:#?}");
    for (port, cause, status) in &expected {
        let found = by_port
            .get(&u64::from(*port))
            .unwrap_or_else(|| panic!("no record for port {port} ({cause}):\n{records:#?}"));
        let record = found[0];
        match *cause {
            "silent" => {
                assert_eq!(record["source_address"], "127.0.0.6");
                let cause = record["cause"].as_str().unwrap();
                assert!(
                    cause == "peer-limit" || cause == "first-request-timeout",
                    "{record}"
                );
            }
            cause => {
                assert!(
                    found.iter().all(|r| r["cause"] == cause),
                    "{port}: {found:#?}"
                );
                assert_eq!(record["status"].as_u64(), *status, "{record}");
                assert!(
                    record["source_address"]
                        .as_str()
                        .unwrap()
                        .starts_with("127.0.0.")
                );
            }
        }
    }
    let resets: Vec<&str> = by_port[&u64::from(h2_port)]
        .iter()
        .map(|r| r["detail"].as_str().unwrap())
        .collect();
    assert_eq!(
        resets,
        [
            "RST_STREAM PROTOCOL_ERROR on stream 1",
            "RST_STREAM PROTOCOL_ERROR on stream 3"
        ]
    );

    // The chunked body's refusal is the handler's request record.
    let output = ehrgate(&[
        "audit",
        "query",
        "--dir",
        files.dir.to_str().unwrap(),
        "--json",
    ]);
    let requests: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0]["request_id"], "bad-chunks");
    assert_eq!(requests[0]["rule"], "limits.body-read");

    // The chain holds both kinds, and the review commands read them.
    let (intact, report) = verify_json(&files);
    assert!(intact, "{report:#}");
    assert_eq!(report["records"].as_u64(), Some(records.len() as u64 + 1));
    let summary = ehrgate(&["audit", "report", "--dir", files.dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&summary.stdout);
    assert!(
        text.contains(&format!(
            "Protocol refusals (below the request handler): {}",
            records.len()
        )),
        "{text}"
    );
    export_validates(&files, records.len() + 1);
}

/// The FHIR export of the log, in both forms, validated as R4.
fn export_validates(files: &AuditFiles, events: usize) {
    let (ndjson, bundle) = export_fhir(files);
    validate_fhir_r4(&ndjson, &bundle, events);
}

#[test]
fn a_client_that_does_not_speak_tls_is_a_refused_handshake() {
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    let files = audit_files();
    let tls_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tls");
    let server = format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        tls_dir.join("gateway.cert.pem").display(),
        tls_dir.join("gateway.key.pem").display()
    );
    let gateway = GatewayProcess::start(&config(&upstream, &files, &server, ""));
    let (port, _) = send_from(
        [127, 0, 0, 7],
        gateway.addr,
        b"GET /fhir/Patient/pat-123 HTTP/1.1\r\nhost: gateway.test\r\n\r\n",
    );
    let metrics = metrics_when(&gateway, |m| {
        metric(m, &refusals_total("tls-handshake")) >= 1
    });
    assert_eq!(
        metric(&metrics, &refusals_total("tls-handshake")),
        1,
        "{metrics}"
    );
    drop(gateway);
    let records = refusal_records(&files);
    assert_eq!(records.len(), 1, "{records:#?}");
    let record = &records[0];
    assert_eq!(record["cause"], "tls-handshake");
    assert_eq!(record["protocol"], "tls");
    assert_eq!(record["tls"], true);
    assert_eq!(record["source_address"], "127.0.0.7");
    assert_eq!(record["source_port"].as_u64(), Some(u64::from(port)));
    assert!(!record["detail"].as_str().unwrap().is_empty());
}

#[test]
fn a_flood_beyond_the_bound_is_one_aggregate_not_a_record_each() {
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    let files = audit_files();
    let gateway = GatewayProcess::start(&config(
        &upstream,
        &files,
        "",
        "refusal_records_per_peer = 3\nrefusal_interval_secs = 3600",
    ));
    const FLOOD: u64 = 40;
    for _ in 0..FLOOD {
        let (_, status) = send_from([127, 0, 0, 8], gateway.addr, MALFORMED[3].1);
        assert_eq!(status, 400);
    }
    // Another address is not held back by the flood.
    let (_, status) = send_from([127, 0, 0, 9], gateway.addr, MALFORMED[3].1);
    assert_eq!(status, 400);
    let malformed = refusals_total("http1-malformed");
    let aggregated = "ehrgate_protocol_refusals_aggregated_total{cause=\"http1-malformed\"}";
    let metrics = metrics_when(&gateway, |m| metric(m, &malformed) > FLOOD);
    assert_eq!(metric(&metrics, &malformed), FLOOD + 1, "{metrics}");
    assert_eq!(metric(&metrics, aggregated), FLOOD - 3, "{metrics}");
    // Stopping ends the interval: the aggregate is written before the log is sealed.
    drop(gateway);

    let records = refusal_records(&files);
    let flooder: Vec<&Value> = records
        .iter()
        .filter(|r| r["source_address"] == "127.0.0.8")
        .collect();
    assert_eq!(flooder.len(), 4, "{records:#?}");
    let individual = flooder.iter().filter(|r| r["aggregate"].is_null()).count();
    assert_eq!(individual, 3);
    let aggregate = &flooder[3]["aggregate"];
    assert_eq!(aggregate["count"].as_u64(), Some(FLOOD - 3), "{aggregate}");
    assert_eq!(
        aggregate["causes"]["http1-malformed"].as_u64(),
        Some(FLOOD - 3)
    );
    assert!(flooder[3]["source_port"].is_null());
    assert_eq!(
        records
            .iter()
            .filter(|r| r["source_address"] == "127.0.0.9")
            .count(),
        1
    );
    let (intact, report) = verify_json(&files);
    assert!(intact, "{report:#}");
    // The refusal view of `audit query` tells the aggregate apart.
    let table = ehrgate(&[
        "audit",
        "query",
        "--dir",
        files.dir.to_str().unwrap(),
        "--refusals",
        "--source",
        "127.0.0.8",
        "--cause",
        "http1-malformed",
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("aggregate") && text.contains("http1-malformed=37"),
        "{text}"
    );
}
