//! What the gateway tells an HTTP/2 client when it refuses a stream or the connection.
//!
//! h2 answers a stream with illegal headers (a connection-specific header such as
//! `connection` or `transfer-encoding`, `te` other than `trailers`, pseudo-headers out of
//! place or repeated), a content length its DATA contradicts, or a stream over the
//! concurrency limit with `RST_STREAM` and goes on serving the connection: the request never
//! reaches the gateway's handler, and neither hyper nor h2 reports it. A connection-level
//! violation ends with `GOAWAY`. So the gateway watches the frames it writes itself
//! ([`FrameWatch`] behind [`Watched`], the connection's I/O): a `RST_STREAM` or `GOAWAY` whose
//! error code says the client broke the protocol (RFC 9113 §7) is a refusal. Codes that are
//! no refusal (`NO_ERROR` after an early response, `CANCEL`, `INTERNAL_ERROR`) are ignored.
//!
//! An HTTP/1 connection is told apart by the first byte the gateway writes: `H` of
//! `HTTP/1.1`, where an HTTP/2 server starts with a SETTINGS frame whose first byte (the high
//! byte of its length) is 0. From then on its writes pass through untouched.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const FRAME_HEADER_LEN: usize = 9;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;

/// A refusal the gateway sent on an HTTP/2 connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentRefusal {
    StreamReset { stream: u32, code: u32 },
    GoAway { code: u32 },
}

/// The name of an HTTP/2 error code that refuses the client (RFC 9113 §7), or `None` for
/// the codes that are no refusal.
pub fn refusal_code_name(code: u32) -> Option<&'static str> {
    match code {
        0x1 => Some("PROTOCOL_ERROR"),
        0x3 => Some("FLOW_CONTROL_ERROR"),
        0x4 => Some("SETTINGS_TIMEOUT"),
        0x5 => Some("STREAM_CLOSED"),
        0x6 => Some("FRAME_SIZE_ERROR"),
        0x7 => Some("REFUSED_STREAM"),
        0x9 => Some("COMPRESSION_ERROR"),
        0xb => Some("ENHANCE_YOUR_CALM"),
        // NO_ERROR, INTERNAL_ERROR, CANCEL, CONNECT_ERROR, INADEQUATE_SECURITY,
        // HTTP_1_1_REQUIRED and unknown codes.
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing written yet.
    Unknown,
    /// An HTTP/1 connection: nothing to watch.
    Http1,
    /// Reading a frame header.
    Header,
    /// Inside a frame's payload.
    Payload,
}

/// Follows the frames of the byte stream the gateway writes to one HTTP/2 connection.
#[derive(Debug)]
pub struct FrameWatch {
    state: State,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    kind: u8,
    stream: u32,
    remaining: usize,
    /// The first payload bytes of RST_STREAM (4: the code) and GOAWAY (8: last stream, code).
    captured: [u8; 8],
    captured_len: usize,
    wanted: usize,
}

impl Default for FrameWatch {
    fn default() -> Self {
        FrameWatch {
            state: State::Unknown,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            kind: 0,
            stream: 0,
            remaining: 0,
            captured: [0; 8],
            captured_len: 0,
            wanted: 0,
        }
    }
}

impl FrameWatch {
    /// Follows `bytes`, written in order after the bytes seen before, and calls `sent` for
    /// every refusal among the frames they complete.
    pub fn written(&mut self, mut bytes: &[u8], sent: &mut impl FnMut(SentRefusal)) {
        while let Some(&first) = bytes.first() {
            match self.state {
                State::Unknown => {
                    self.state = if first == b'H' {
                        State::Http1
                    } else {
                        State::Header
                    };
                }
                State::Http1 => return,
                State::Header => {
                    let take = (FRAME_HEADER_LEN - self.header_len).min(bytes.len());
                    self.header[self.header_len..self.header_len + take]
                        .copy_from_slice(&bytes[..take]);
                    self.header_len += take;
                    bytes = &bytes[take..];
                    if self.header_len == FRAME_HEADER_LEN {
                        self.start_payload(sent);
                    }
                }
                State::Payload => {
                    let take = self.remaining.min(bytes.len());
                    let capture = (self.wanted - self.captured_len).min(take);
                    self.captured[self.captured_len..self.captured_len + capture]
                        .copy_from_slice(&bytes[..capture]);
                    self.captured_len += capture;
                    self.remaining -= take;
                    bytes = &bytes[take..];
                    if self.remaining == 0 {
                        self.finish_frame(sent);
                    }
                }
            }
        }
    }

    fn start_payload(&mut self, sent: &mut impl FnMut(SentRefusal)) {
        let header = &self.header;
        self.remaining =
            (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2]);
        self.kind = header[3];
        self.stream =
            u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        self.wanted = match self.kind {
            RST_STREAM => 4,
            GOAWAY => 8,
            _ => 0,
        }
        .min(self.remaining);
        self.captured_len = 0;
        self.state = State::Payload;
        if self.remaining == 0 {
            self.finish_frame(sent);
        }
    }

    fn finish_frame(&mut self, sent: &mut impl FnMut(SentRefusal)) {
        let word = |at: usize, captured: &[u8; 8]| {
            u32::from_be_bytes([
                captured[at],
                captured[at + 1],
                captured[at + 2],
                captured[at + 3],
            ])
        };
        match (self.kind, self.captured_len) {
            (RST_STREAM, 4) => {
                let code = word(0, &self.captured);
                if refusal_code_name(code).is_some() {
                    sent(SentRefusal::StreamReset {
                        stream: self.stream,
                        code,
                    });
                }
            }
            (GOAWAY, 8) => {
                let code = word(4, &self.captured);
                if refusal_code_name(code).is_some() {
                    sent(SentRefusal::GoAway { code });
                }
            }
            _ => {}
        }
        self.header_len = 0;
        self.state = State::Header;
    }
}

/// A connection's I/O with the gateway's writes followed by a [`FrameWatch`]; `on_refusal`
/// hears of every refusal sent.
pub struct Watched<T, F> {
    inner: T,
    watch: FrameWatch,
    on_refusal: F,
}

impl<T, F: FnMut(SentRefusal)> Watched<T, F> {
    pub fn new(inner: T, on_refusal: F) -> Self {
        Watched {
            inner,
            watch: FrameWatch::default(),
            on_refusal,
        }
    }

    fn seen(&mut self, written: &[u8]) {
        if self.watch.state != State::Http1 {
            self.watch.written(written, &mut self.on_refusal);
        }
    }
}

impl<T: AsyncRead + Unpin, F: Unpin> AsyncRead for Watched<T, F> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin, F: FnMut(SentRefusal) + Unpin> AsyncWrite for Watched<T, F> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = polled {
            this.seen(&buf[..written.min(buf.len())]);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = polled {
            let mut left = written;
            for buf in bufs {
                if left == 0 {
                    break;
                }
                let take = left.min(buf.len());
                this.seen(&buf[..take]);
                left -= take;
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut bytes = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, 0];
        bytes.extend_from_slice(&stream.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    /// What the watch reports for `bytes` written in pieces of `piece` bytes.
    fn refusals(bytes: &[u8], piece: usize) -> Vec<SentRefusal> {
        let mut watch = FrameWatch::default();
        let mut found = Vec::new();
        for chunk in bytes.chunks(piece) {
            watch.written(chunk, &mut |r| found.push(r));
        }
        found
    }

    #[test]
    fn refusing_resets_and_goaways_are_found_however_the_writes_split_them() {
        let mut bytes = frame(0x4, 0, &[0, 3, 0, 0, 0, 128]); // SETTINGS
        bytes.extend(frame(0x1, 1, &[0x88])); // HEADERS
        bytes.extend(frame(0x0, 1, &[b'x'; 300])); // DATA
        bytes.extend(frame(RST_STREAM, 3, &1u32.to_be_bytes())); // PROTOCOL_ERROR
        bytes.extend(frame(RST_STREAM, 5, &0u32.to_be_bytes())); // NO_ERROR: no refusal
        bytes.extend(frame(RST_STREAM, 7, &8u32.to_be_bytes())); // CANCEL: no refusal
        bytes.extend(frame(0x6, 0, &[0; 8])); // PING
        let mut goaway = 3u32.to_be_bytes().to_vec();
        goaway.extend_from_slice(&0xbu32.to_be_bytes());
        goaway.extend_from_slice(b"debug data");
        bytes.extend(frame(GOAWAY, 0, &goaway)); // ENHANCE_YOUR_CALM
        let expected = vec![
            SentRefusal::StreamReset { stream: 3, code: 1 },
            SentRefusal::GoAway { code: 0xb },
        ];
        for piece in [1, 2, 5, 9, 10, 64, bytes.len()] {
            assert_eq!(refusals(&bytes, piece), expected, "pieces of {piece}");
        }
    }

    #[test]
    fn http1_writes_are_not_read_as_frames() {
        let mut bytes = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n".to_vec();
        bytes.extend(frame(RST_STREAM, 1, &1u32.to_be_bytes()));
        assert_eq!(refusals(&bytes, 7), Vec::new());
    }

    #[test]
    fn only_codes_that_blame_the_client_are_refusals() {
        assert_eq!(refusal_code_name(0x1), Some("PROTOCOL_ERROR"));
        assert_eq!(refusal_code_name(0x7), Some("REFUSED_STREAM"));
        for code in [0x0, 0x2, 0x8, 0xa, 0xc, 0xd, 0xff] {
            assert_eq!(refusal_code_name(code), None, "{code:#x}");
        }
    }
}
