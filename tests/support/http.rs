//! A raw HTTP/1.1 client for gateway tests: the bytes sent are exactly the bytes written,
//! so canonicalization tests can send what a well-behaved client library never would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The rule id of an OperationOutcome body, if it is one.
    pub fn rule(&self) -> Option<String> {
        let json: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        json["issue"][0]["details"]["coding"][0]["code"]
            .as_str()
            .map(str::to_owned)
    }
}

/// Sends `raw` (which should ask for `Connection: close`) and reads the whole response.
pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).expect("connect to the gateway");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(raw).expect("send");
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    RawResponse {
        status,
        head: head.to_owned(),
        body: if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A GET with optional bearer token, as a well-behaved client sends it.
pub fn get(addr: SocketAddr, target: &str, token: Option<&str>) -> RawResponse {
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let raw = format!(
        "GET {target} HTTP/1.1\r\nhost: gateway.test\r\naccept: application/fhir+json\r\n{auth}connection: close\r\n\r\n"
    );
    send_raw(addr, raw.as_bytes())
}

/// A request with a body.
pub fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    token: Option<&str>,
    content_type: &str,
    body: &str,
) -> RawResponse {
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let raw = format!(
        "{method} {target} HTTP/1.1\r\nhost: gateway.test\r\n{auth}content-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    send_raw(addr, raw.as_bytes())
}
