//! Client protocols: TLS with HTTP/2 and HTTP/1.1 chosen by ALPN, HTTP/2 with prior
//! knowledge on a plain listener, and HTTP/2's `:authority` checked against `Host`. Upstream
//! protocols: TLS to an `https://` upstream, verified against the configured CA.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::support::gateway::GatewayProcess;
use crate::support::guest;
use crate::support::tokens::{clinician_claims, identity_toml, sign};
use crate::support::upstream::{Reply, TestUpstream};

const BODY: &str = r#"{"resourceType":"Patient","id":"pat-123"}"#;

fn tls_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tls")
}

fn config(upstream: &TestUpstream, tls: bool) -> String {
    config_with(upstream, tls, "")
}

/// The configuration with `upstream_keys` added to the upstream's table.
fn config_with(upstream: &TestUpstream, tls: bool, upstream_keys: &str) -> String {
    let tls = if tls {
        format!(
            "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            tls_dir().join("gateway.cert.pem").display(),
            tls_dir().join("gateway.key.pem").display()
        )
    } else {
        String::new()
    };
    format!(
        r#"
[server]
listen = "{{listen}}"
{tls}

[[upstreams]]
name = "ehr"
url = "{}"
{upstream_keys}

[[routes]]
name = "ehr"
prefix = "/fhir"
upstream = "ehr"

[[routes.policies]]
name = "chaos"
module = "{}"
{}
"#,
        upstream.url("/r4"),
        guest("chaos").display(),
        identity_toml()
    )
}

fn tls_connector(alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(tls_dir().join("ca.cert.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn request(uri: &str, host: Option<&str>) -> Request<Empty<Bytes>> {
    let mut builder = Request::builder().uri(uri).header(
        "authorization",
        format!("Bearer {}", sign(&clinician_claims())),
    );
    if let Some(host) = host {
        builder = builder.header("host", host);
    }
    builder.body(Empty::new()).unwrap()
}

#[test]
fn tls_negotiates_http2_and_forwards_as_https() {
    let upstream = TestUpstream::start(Reply::json(BODY));
    let gateway = GatewayProcess::start(&config(&upstream, true));
    runtime().block_on(async {
        let tcp = TcpStream::connect(gateway.addr).await.unwrap();
        let tls = tls_connector(&[b"h2", b"http/1.1"])
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(connection);
        let response = sender
            .send_request(request("https://localhost/fhir/Patient/pat-123", None))
            .await
            .unwrap();
        assert_eq!(response.version(), Version::HTTP_2);
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, BODY.as_bytes());
    });
    let received = upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].request_line(),
        "GET /r4/Patient/pat-123 HTTP/1.1"
    );
    assert_eq!(received[0].header("x-forwarded-proto"), Some("https"));
}

#[test]
fn tls_serves_http1_when_the_client_asks_for_it() {
    let upstream = TestUpstream::start(Reply::json(BODY));
    let gateway = GatewayProcess::start(&config(&upstream, true));
    runtime().block_on(async {
        let tcp = TcpStream::connect(gateway.addr).await.unwrap();
        let tls = tls_connector(&[b"http/1.1"])
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(connection);
        let response = sender
            .send_request(request("/fhir/Patient/pat-123", Some("localhost")))
            .await
            .unwrap();
        assert_eq!(response.version(), Version::HTTP_11);
        assert_eq!(response.status(), 200);
    });
}

#[test]
fn plain_http2_with_prior_knowledge_works_and_authority_must_match_host() {
    let upstream = TestUpstream::start(Reply::json(BODY));
    let gateway = GatewayProcess::start(&config(&upstream, false));
    runtime().block_on(async {
        let tcp = TcpStream::connect(gateway.addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(connection);
        let response = sender
            .send_request(request("http://gateway.test/fhir/Patient/pat-123", None))
            .await
            .unwrap();
        assert_eq!(
            (response.version(), response.status().as_u16()),
            (Version::HTTP_2, 200)
        );

        // `:authority` says one host, `Host` another: ambiguous, refused.
        let response = sender
            .send_request(request(
                "http://gateway.test/fhir/Patient/pat-123",
                Some("evil.test"),
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("headers.host-mismatch"));
    });
    assert_eq!(upstream.received().len(), 1);
}

#[test]
fn an_https_upstream_is_reached_over_tls_and_its_certificate_is_verified() {
    let upstream = TestUpstream::start_tls(
        Reply::json(BODY),
        &tls_dir().join("gateway.cert.pem"),
        &tls_dir().join("gateway.key.pem"),
    );
    assert!(upstream.url("/r4").starts_with("https://127.0.0.1:"));
    let ca = format!("ca_file = \"{}\"", tls_dir().join("ca.cert.pem").display());
    let gateway = GatewayProcess::start(&config_with(&upstream, false, &ca));
    let token = sign(&clinician_claims());
    let response = crate::support::http::get(gateway.addr, "/fhir/Patient/pat-123", Some(&token));
    assert_eq!(response.status, 200, "{response:?}\n{}", gateway.log());
    assert!(response.body.contains("pat-123"), "{response:?}");
    let received = upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].request_line(),
        "GET /r4/Patient/pat-123 HTTP/1.1"
    );
    assert_eq!(
        received[0].header("host"),
        Some(upstream.addr.to_string().as_str())
    );
}

#[test]
fn an_https_upstream_whose_certificate_does_not_chain_to_the_ca_is_not_sent_the_request() {
    let upstream = TestUpstream::start_tls(
        Reply::json(BODY),
        &tls_dir().join("gateway.cert.pem"),
        &tls_dir().join("gateway.key.pem"),
    );
    // Trusting the leaf certificate itself is not trusting the CA that issued it.
    let wrong_ca = format!(
        "ca_file = \"{}\"",
        tls_dir().join("gateway.cert.pem").display()
    );
    let gateway = GatewayProcess::start(&config_with(&upstream, false, &wrong_ca));
    let token = sign(&clinician_claims());
    let response = crate::support::http::get(gateway.addr, "/fhir/Patient/pat-123", Some(&token));
    assert_eq!(response.status, 502, "{response:?}");
    assert_eq!(response.rule().as_deref(), Some("upstream.unreachable"));
    assert!(!response.body.contains("pat-123"));
    assert!(
        upstream.received().is_empty(),
        "no request crossed the unverified connection"
    );
}
