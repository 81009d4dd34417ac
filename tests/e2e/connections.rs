//! Connections that say nothing are closed, and a flood of them from one address leaves the
//! gateway serving: the real binary with its descriptor limit lowered to 256, a few hundred
//! silent connections from 127.0.0.2, and requests and health checks from 127.0.0.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::gateway::GatewayProcess;
use crate::support::guest;
use crate::support::http::get;
use crate::support::tokens::{clinician_claims, identity_toml, sign};
use crate::support::upstream::{Reply, TestUpstream};

const PATIENT: &str = r#"{"resourceType":"Patient","id":"pat-123"}"#;

fn config(upstream: &TestUpstream) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"

[admin]
listen = "{{admin}}"

[limits]
first_request_timeout_ms = 1000
idle_timeout_ms = 1500
max_connections_per_peer = 100

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
{identity}
"#,
        url = upstream.url(""),
        module = guest("chaos").display(),
        identity = identity_toml(),
    )
}

/// The runtime the silent connections live on: a stream stays usable only while the
/// runtime it was opened on does.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Opens `count` TCP connections to `addr` from 127.0.0.2 that send `first` and then
/// nothing.
fn silent_connections(
    runtime: &tokio::runtime::Runtime,
    addr: SocketAddr,
    count: usize,
    first: &[u8],
) -> Vec<tokio::net::TcpStream> {
    runtime.block_on(async {
        let mut streams = Vec::new();
        for _ in 0..count {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(SocketAddr::from(([127, 0, 0, 2], 0)))
                .expect("bind 127.0.0.2");
            let mut stream = socket.connect(addr).await.expect("connect");
            if !first.is_empty() {
                tokio::io::AsyncWriteExt::write_all(&mut stream, first)
                    .await
                    .expect("write");
            }
            streams.push(stream);
        }
        streams
    })
}

/// How many of `streams` the gateway closed (end of stream or reset) within `limit`.
fn closed_within(
    runtime: &tokio::runtime::Runtime,
    streams: Vec<tokio::net::TcpStream>,
    limit: Duration,
) -> usize {
    runtime.block_on(async {
        let waits = streams.into_iter().map(|mut stream| async move {
            let mut buffer = [0u8; 256];
            loop {
                match tokio::time::timeout(
                    limit,
                    tokio::io::AsyncReadExt::read(&mut stream, &mut buffer),
                )
                .await
                {
                    Ok(Ok(0)) | Ok(Err(_)) => return true,
                    // An HTTP/2 server speaks first (SETTINGS); keep reading.
                    Ok(Ok(_)) => continue,
                    Err(_) => return false,
                }
            }
        });
        let mut closed = 0;
        for wait in waits {
            if wait.await {
                closed += 1;
            }
        }
        closed
    })
}

fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

#[test]
fn silent_connections_are_closed_and_the_gateway_keeps_serving() {
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    let gateway = GatewayProcess::start_with_nofile(&config(&upstream), Some(256));
    let token = sign(&clinician_claims());
    // 300 silent connections from one address: 100 held (its cap), the rest closed at once.
    let runtime = runtime();
    let silent = silent_connections(&runtime, gateway.addr, 300, b"");
    for _ in 0..10 {
        assert_eq!(
            get(gateway.addr, "/fhir/Patient/pat-123", Some(&token)).status,
            200
        );
        assert_eq!(get(gateway.admin, "/healthz", None).status, 200);
    }
    let started = Instant::now();
    // Within the first-request timeout (1 s) and generous slack, every one is closed.
    assert_eq!(
        closed_within(&runtime, silent, Duration::from_secs(10)),
        300
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Every one was refused at accept (over the per-address cap) or closed by the
    // watchdog; the counters follow the closes by a moment, so read them until they do.
    let refused = r#"ehrgate_connections_refused_total{cause="peer-limit"}"#;
    let closed = r#"ehrgate_connections_closed_total{cause="first-request-timeout"}"#;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut metrics = get(gateway.admin, "/metrics", None).body;
    while metric(&metrics, refused) + metric(&metrics, closed) < 300 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        metrics = get(gateway.admin, "/metrics", None).body;
    }
    assert_eq!(
        metric(&metrics, refused) + metric(&metrics, closed),
        300,
        "{metrics}"
    );
    assert!(metric(&metrics, refused) > 0, "{metrics}");
    assert!(metric(&metrics, closed) >= 100, "{metrics}");
}

#[test]
fn a_partial_http2_preface_and_an_idle_keep_alive_connection_are_closed() {
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    let gateway = GatewayProcess::start(&config(&upstream));
    let runtime = runtime();
    let partial = silent_connections(&runtime, gateway.addr, 3, b"PRI * HTTP/2.0\r\n");
    let preface = silent_connections(
        &runtime,
        gateway.addr,
        3,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    );
    assert_eq!(closed_within(&runtime, partial, Duration::from_secs(10)), 3);
    assert_eq!(closed_within(&runtime, preface, Duration::from_secs(10)), 3);

    // One request on a keep-alive connection, then silence: closed after the idle timeout.
    let token = sign(&clinician_claims());
    let mut stream = TcpStream::connect(gateway.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET /fhir/Patient/pat-123 HTTP/1.1\r\nhost: gateway.test\r\nauthorization: Bearer {token}\r\n\r\n"
    )
    .expect("send");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let closed = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(_) => break false,
        }
    };
    assert!(
        String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&received)
    );
    assert!(closed, "the idle keep-alive connection was not closed");
    let metrics = get(gateway.admin, "/metrics", None).body;
    assert!(
        metric(
            &metrics,
            r#"ehrgate_connections_closed_total{cause="idle-timeout"}"#
        ) >= 1,
        "{metrics}"
    );
}
