//! Refusals below the request handler: connections closed at accept (over a connection
//! cap), TLS handshakes that failed or took too long, connections that never delivered a
//! request, requests the HTTP/1 parser answered itself (400, 431), and HTTP/2 streams and
//! connections the gateway reset for a protocol error. None of them reaches the phase driver,
//! so none has a request record; each is counted in `ehrgate_protocol_refusals_total{cause}`
//! and gets an audit record of its own kind (see `audit::refusal`), within the bounds of
//! [`RefusalBounds`] (`limiter`): beyond them, refusals are counted into one aggregate record
//! per peer and interval, so a flood cannot fill the disk.
//!
//! The peer is always the socket's address, never anything the client sent.
//!
//! - `limiter`: which refusals get a record of their own.
//! - `frames`: the HTTP/2 frames the gateway writes, watched for refusing resets.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::metrics::{CauseLabels, Metrics};
use crate::audit::refusal::{REFUSAL_KIND, RefusalAggregate, RefusalRecord};
use crate::audit::settings::RefusalBounds;
use crate::audit::{AuditLog, time};

pub mod frames;
pub mod limiter;

use limiter::{Admission, Aggregate, RefusalLimiter};

/// Longest `detail` kept: the refusing layer's message, cut so nothing unexpected in it can
/// make records large.
const MAX_DETAIL_CHARS: usize = 200;

/// Why a connection or request was refused below the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCause {
    /// Closed at accept: `limits.max_connections` open already.
    TotalLimit,
    /// Closed at accept: `limits.max_connections_per_peer` open from this address already.
    PeerLimit,
    /// No request within `limits.first_request_timeout_ms` of accept (silent, a partial
    /// head, a partial HTTP/2 preface).
    FirstRequestTimeout,
    /// The TLS handshake failed (not TLS, no common version or cipher suite, an alert).
    TlsHandshake,
    /// The TLS handshake took longer than its 10 s.
    TlsHandshakeTimeout,
    /// hyper answered 400 to a request it could not parse: a bad request line, a header with
    /// a NUL, a bare CR or a space before the colon, an invalid `Content-Length` (two
    /// different values, not a number) or `Transfer-Encoding` (`chunked` not last, in
    /// HTTP/1.0).
    Http1Malformed,
    /// hyper answered 431 (or 414 for a URI over 64 KiB): the head was larger than its
    /// buffer or had more headers than it holds.
    Http1HeadTooLarge,
    /// The first request's head did not arrive within `limits.header_read_timeout_ms`.
    Http1HeaderTimeout,
    /// An HTTP/2 stream reset with an error code that blames the client
    /// (`PROTOCOL_ERROR` for illegal headers, `REFUSED_STREAM` over the stream limit, ...).
    Http2StreamReset,
    /// An HTTP/2 connection ended with such a `GOAWAY`.
    Http2GoAway,
}

impl RefusalCause {
    pub const ALL: [RefusalCause; 10] = [
        RefusalCause::TotalLimit,
        RefusalCause::PeerLimit,
        RefusalCause::FirstRequestTimeout,
        RefusalCause::TlsHandshake,
        RefusalCause::TlsHandshakeTimeout,
        RefusalCause::Http1Malformed,
        RefusalCause::Http1HeadTooLarge,
        RefusalCause::Http1HeaderTimeout,
        RefusalCause::Http2StreamReset,
        RefusalCause::Http2GoAway,
    ];

    /// The cause in metrics and records. `total-limit`, `peer-limit` and
    /// `first-request-timeout` are also the causes of the connection metrics.
    pub fn label(self) -> &'static str {
        match self {
            RefusalCause::TotalLimit => "total-limit",
            RefusalCause::PeerLimit => "peer-limit",
            RefusalCause::FirstRequestTimeout => "first-request-timeout",
            RefusalCause::TlsHandshake => "tls-handshake",
            RefusalCause::TlsHandshakeTimeout => "tls-handshake-timeout",
            RefusalCause::Http1Malformed => "http1-malformed",
            RefusalCause::Http1HeadTooLarge => "http1-head-too-large",
            RefusalCause::Http1HeaderTimeout => "http1-header-timeout",
            RefusalCause::Http2StreamReset => "http2-stream-reset",
            RefusalCause::Http2GoAway => "http2-goaway",
        }
    }

    /// What the client was speaking when it was refused.
    pub fn protocol(self) -> &'static str {
        match self {
            RefusalCause::TotalLimit
            | RefusalCause::PeerLimit
            | RefusalCause::FirstRequestTimeout => "tcp",
            RefusalCause::TlsHandshake | RefusalCause::TlsHandshakeTimeout => "tls",
            RefusalCause::Http1Malformed
            | RefusalCause::Http1HeadTooLarge
            | RefusalCause::Http1HeaderTimeout => "http/1.1",
            RefusalCause::Http2StreamReset | RefusalCause::Http2GoAway => "h2",
        }
    }
}

/// One refusal.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub peer: SocketAddr,
    pub cause: RefusalCause,
    /// The status the client was answered with, if any.
    pub status: Option<u16>,
    pub detail: Option<String>,
}

impl Refusal {
    pub fn new(peer: SocketAddr, cause: RefusalCause) -> Self {
        Refusal {
            peer,
            cause,
            status: None,
            detail: None,
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_detail(mut self, detail: impl std::fmt::Display) -> Self {
        let detail = detail.to_string();
        self.detail = Some(match detail.char_indices().nth(MAX_DETAIL_CHARS) {
            Some((cut, _)) => format!("{}…", &detail[..cut]),
            None => detail,
        });
        self
    }
}

/// The refusal in a connection's error, if it is one: what hyper answered itself (HTTP/1
/// parse errors) or a header timeout before any request. Other errors (the client went
/// away, an I/O error, HTTP/2 errors, which [`frames`] sees) are not refusals.
pub fn of_connection_error(
    error: &(dyn StdError + 'static),
    peer: SocketAddr,
    requests_started: bool,
) -> Option<Refusal> {
    let error = error.downcast_ref::<hyper::Error>()?;
    // hyper's public predicates name the class; its message (documented as unstable
    // wording) is kept as the detail for people, and tells the 414 from the 431.
    let refusal = if error.is_parse_too_large() {
        let status = if error.to_string() == "URI too long" {
            414
        } else {
            431
        };
        Refusal::new(peer, RefusalCause::Http1HeadTooLarge).with_status(status)
    } else if error.is_parse() {
        Refusal::new(peer, RefusalCause::Http1Malformed).with_status(400)
    } else if error.is_timeout() && !requests_started {
        // On a connection that served requests, the same timeout closes an idle keep-alive
        // connection, which is no refusal.
        Refusal::new(peer, RefusalCause::Http1HeaderTimeout)
    } else {
        return None;
    };
    Some(refusal.with_detail(error))
}

/// The refusal in a failed TLS handshake, unless the client just went away.
pub fn of_tls_error(error: &std::io::Error, peer: SocketAddr) -> Option<Refusal> {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => None,
        _ => Some(Refusal::new(peer, RefusalCause::TlsHandshake).with_detail(error)),
    }
}

/// The refusal an HTTP/2 frame the gateway sent stands for.
pub fn of_sent_frame(sent: frames::SentRefusal, peer: SocketAddr) -> Refusal {
    let name = |code| frames::refusal_code_name(code).unwrap_or("unknown");
    match sent {
        frames::SentRefusal::StreamReset { stream, code } => {
            Refusal::new(peer, RefusalCause::Http2StreamReset)
                .with_detail(format_args!("RST_STREAM {} on stream {stream}", name(code)))
        }
        frames::SentRefusal::GoAway { code } => Refusal::new(peer, RefusalCause::Http2GoAway)
            .with_detail(format_args!("GOAWAY {}", name(code))),
    }
}

/// A connection's I/O with the HTTP/2 frames the gateway writes watched for the streams and
/// connections it refuses ([`frames`]), each reported to `refusals` as `peer`'s.
pub fn watch<T>(
    io: T,
    refusals: Arc<Refusals>,
    peer: SocketAddr,
) -> frames::Watched<T, impl FnMut(frames::SentRefusal) + Unpin> {
    frames::Watched::new(io, move |sent| {
        refusals.refuse(of_sent_frame(sent, peer));
    })
}

/// The counters of `/metrics`.
#[derive(Clone)]
struct Counters {
    refusals: Family<CauseLabels, Counter>,
    aggregated: Family<CauseLabels, Counter>,
    lost: Counter,
}

/// Counts, bounds and records refusals. Shared by every connection.
pub struct Refusals {
    tls: bool,
    limiter: Mutex<RefusalLimiter>,
    /// Records for the writer task; none without an audit log.
    records: Option<mpsc::Sender<RefusalRecord>>,
    counters: Counters,
}

/// The task that appends refusal records and closes each interval; [`RefusalWriter::finish`]
/// writes the last aggregates, before the audit log is closed.
pub struct RefusalWriter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RefusalWriter {
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Starts the refusal bookkeeping for a listener (`tls` whether it serves TLS), with records
/// appended to `audit` when there is one (otherwise only the process log has them).
pub fn start(
    bounds: RefusalBounds,
    tls: bool,
    metrics: &Metrics,
    audit: Option<AuditLog>,
) -> (Arc<Refusals>, RefusalWriter) {
    // Individual records are at most `records_per_interval` an interval; more queued than
    // that means the log has stalled, and those are counted as lost instead of held.
    let (sender, receiver) = mpsc::channel(bounds.records_per_interval.max(1) as usize);
    let refusals = Arc::new(Refusals {
        tls,
        limiter: Mutex::new(RefusalLimiter::new(bounds, time::now_millis())),
        records: audit.is_some().then_some(sender),
        counters: Counters {
            refusals: metrics.protocol_refusals.clone(),
            aggregated: metrics.protocol_refusals_aggregated.clone(),
            lost: metrics.protocol_refusal_records_lost.clone(),
        },
    });
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(run(refusals.clone(), receiver, audit, bounds, stopped));
    (refusals, RefusalWriter { stop, task })
}

impl Refusals {
    /// Counts `refusal` and records it, or counts it into its peer's aggregate.
    pub fn refuse(&self, refusal: Refusal) {
        let cause = CauseLabels {
            cause: refusal.cause.label(),
        };
        self.counters.refusals.get_or_create(&cause).inc();
        let admission = self
            .limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(refusal.peer.ip(), refusal.cause.label());
        if admission == Admission::Count {
            self.counters.aggregated.get_or_create(&cause).inc();
            return;
        }
        tracing::info!(
            target: "ehrgate::refusal",
            peer = %refusal.peer,
            cause = refusal.cause.label(),
            status = refusal.status.unwrap_or(0),
            detail = refusal.detail.as_deref().unwrap_or("-"),
            "protocol refusal"
        );
        if let Some(records) = &self.records
            && let Err(error) = records.try_send(self.record_of(refusal))
        {
            self.lost(&error.into_inner());
        }
    }

    fn record_of(&self, refusal: Refusal) -> RefusalRecord {
        RefusalRecord {
            seq: 0,
            kind: REFUSAL_KIND.to_owned(),
            time: time::format_millis(time::now_millis()),
            source_address: Some(refusal.peer.ip().to_string()),
            source_port: Some(refusal.peer.port()),
            tls: self.tls,
            protocol: Some(refusal.cause.protocol().to_owned()),
            cause: Some(refusal.cause.label().to_owned()),
            status: refusal.status,
            detail: refusal.detail,
            aggregate: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    fn aggregate_record(&self, aggregate: &Aggregate) -> RefusalRecord {
        RefusalRecord {
            seq: 0,
            kind: REFUSAL_KIND.to_owned(),
            time: time::format_millis(aggregate.from_ms),
            source_address: aggregate.peer.map(|peer| peer.to_string()),
            source_port: None,
            tls: self.tls,
            protocol: None,
            cause: None,
            status: None,
            detail: None,
            aggregate: Some(RefusalAggregate {
                until: time::format_millis(aggregate.until_ms),
                count: aggregate.count(),
                causes: aggregate
                    .causes
                    .iter()
                    .map(|(cause, count)| ((*cause).to_owned(), *count))
                    .collect(),
            }),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// The aggregates of the interval, if it is over (`force`: whether or not).
    fn roll(&self, force: bool) -> Vec<RefusalRecord> {
        let now = time::now_millis();
        let aggregates = {
            let mut limiter = self.limiter.lock().unwrap_or_else(PoisonError::into_inner);
            if !force && !limiter.is_due(now) {
                return Vec::new();
            }
            limiter.roll(now)
        };
        aggregates
            .iter()
            .map(|aggregate| {
                let record = self.aggregate_record(aggregate);
                tracing::info!(
                    target: "ehrgate::refusal",
                    peer = record.source_address.as_deref().unwrap_or("(other addresses)"),
                    count = aggregate.count(),
                    "protocol refusals without records of their own, aggregated"
                );
                record
            })
            .collect()
    }

    /// A record the audit log did not take: it goes to the process log instead.
    fn lost(&self, record: &RefusalRecord) {
        self.counters.lost.inc();
        let record = serde_json::to_string(record).unwrap_or_default();
        tracing::error!(
            target: "ehrgate::audit",
            %record,
            "protocol-refusal record not written"
        );
    }
}

async fn run(
    refusals: Arc<Refusals>,
    mut receiver: mpsc::Receiver<RefusalRecord>,
    audit: Option<AuditLog>,
    bounds: RefusalBounds,
    mut stopped: oneshot::Receiver<()>,
) {
    let append = |record: RefusalRecord| {
        let (refusals, audit) = (&refusals, &audit);
        async move {
            if let Some(audit) = audit
                && audit.append_refusal(record.clone()).await.is_err()
            {
                refusals.lost(&record);
            }
        }
    };
    let mut tick = tokio::time::interval(bounds.interval.min(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = receiver.recv() => match received {
                Some(record) => append(record).await,
                None => break,
            },
            _ = tick.tick() => {
                for record in refusals.roll(false) {
                    append(record).await;
                }
            }
            _ = &mut stopped => break,
        }
    }
    while let Ok(record) = receiver.try_recv() {
        append(record).await;
    }
    for record in refusals.roll(true) {
        append(record).await;
    }
}
