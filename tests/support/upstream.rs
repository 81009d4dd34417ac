//! A real upstream for gateway tests: an HTTP/1.1 server on 127.0.0.1 (plain, or over TLS
//! with a given certificate) that records every request exactly as it arrived on the wire and
//! answers with a configured response, or with a script of responses in order. It serves
//! keep-alive connections (the gateway pools them) and stops when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request line and headers, exactly as sent, up to and including the blank line.
    pub head: String,
    pub body: Vec<u8>,
}

impl Received {
    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    /// The value of header `name` (case-insensitive), if present once or more (first).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// What the upstream answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status line's version, `HTTP/1.1` unless a test needs an older server.
    pub version: &'static str,
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub delay: Duration,
    /// Further response headers (`etag`, ...).
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(body: &str) -> Self {
        Reply {
            version: "HTTP/1.1",
            status: 200,
            content_type: "application/fhir+json",
            body: body.to_owned(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    /// A reply with status `status`.
    pub fn status(status: u16, body: &str) -> Self {
        Reply {
            status,
            ..Reply::json(body)
        }
    }

    /// The same reply with header `name` added.
    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// The replies of an upstream: each request takes the next one, and the last one answers
/// every request after it.
#[derive(Debug)]
struct Script {
    replies: Vec<Reply>,
    next: usize,
}

impl Script {
    fn take(&mut self) -> Reply {
        let index = self.next.min(self.replies.len().saturating_sub(1));
        self.next += 1;
        self.replies
            .get(index)
            .cloned()
            .unwrap_or_else(|| Reply::json("{}"))
    }
}

pub struct TestUpstream {
    pub addr: SocketAddr,
    /// `http` or `https`.
    scheme: &'static str,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestUpstream {
    pub fn start(reply: Reply) -> Self {
        Self::start_with(vec![reply], None)
    }

    /// An upstream that answers its requests with `replies` in order (the last one repeats).
    pub fn start_script(replies: Vec<Reply>) -> Self {
        Self::start_with(replies, None)
    }

    /// An upstream that speaks TLS with the certificate chain and key in these PEM files.
    pub fn start_tls(reply: Reply, cert: &std::path::Path, key: &std::path::Path) -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("read the certificate")
            .collect::<Result<_, _>>()
            .expect("parse the certificate");
        let key = PrivateKeyDer::from_pem_file(key).expect("read the key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("certificate and key");
        Self::start_with(vec![reply], Some(Arc::new(config)))
    }

    fn start_with(replies: Vec<Reply>, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let received = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(Mutex::new(Script { replies, next: 0 }));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, p, s) = (received.clone(), reply.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (r, p, s) = (r.clone(), p.clone(), s.clone());
                        let tls = tls.clone();
                        std::thread::spawn(move || {
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                            match tls.map(rustls::ServerConnection::new) {
                                None => serve(stream, r, p, s),
                                Some(Ok(connection)) => {
                                    serve(rustls::StreamOwned::new(connection, stream), r, p, s)
                                }
                                Some(Err(_)) => {}
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        TestUpstream {
            addr,
            scheme,
            received,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, base: &str) -> String {
        format!("{}://{}{base}", self.scheme, self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve<S: Read + Write>(
    stream: S,
    received: Arc<Mutex<Vec<Received>>>,
    reply: Arc<Mutex<Script>>,
    stop: Arc<AtomicBool>,
) {
    let mut reader = BufReader::new(stream);
    // Bounded: a test's connection handles at most this many requests.
    for _ in 0..10_000 {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => {
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                Err(_) if !stop.load(Ordering::Relaxed) && head.is_empty() => continue,
                Err(_) => return,
            }
        }
        let length = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(mut all) = received.lock() {
            all.push(Received { head, body });
        }
        let reply = reply
            .lock()
            .map(|mut script| script.take())
            .unwrap_or_else(|_| Reply::json("{}"));
        std::thread::sleep(reply.delay);
        let extra: String = reply
            .headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        let response = format!(
            "{} {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\nx-upstream: test\r\n{extra}\r\n{}",
            reply.version,
            reply.status,
            reply.content_type,
            reply.body.len(),
            reply.body
        );
        let writer = reader.get_mut();
        if writer.write_all(response.as_bytes()).is_err() || writer.flush().is_err() {
            return;
        }
    }
}
