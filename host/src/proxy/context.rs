//! The per-request context: what each phase learned about one request, carried from the
//! first phase to the last. When the request is done it becomes the request's metrics and
//! its audit record, whichever phase decided it.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::engine::{ChainOutcome, Interaction, Principal};
use crate::request::stored::{Condition, Stored};

/// How the request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Still being handled.
    Pending,
    /// Forwarded, and the response released.
    Allowed,
    /// Refused before the policy chain (malformed, ambiguous, over a limit, no identity).
    Rejected { rule_id: String },
    /// Refused by a policy (including `policy-error`), before or after the upstream.
    Denied { module: String, rule_id: String },
    /// Allowed, but the upstream failed or timed out.
    UpstreamFailed { rule_id: String },
}

impl Decision {
    /// The label used in metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Pending => "pending",
            Decision::Allowed => "allow",
            Decision::Rejected { .. } => "reject",
            Decision::Denied { .. } => "deny",
            Decision::UpstreamFailed { .. } => "upstream-error",
        }
    }

    pub fn rule_id(&self) -> Option<&str> {
        match self {
            Decision::Rejected { rule_id }
            | Decision::Denied { rule_id, .. }
            | Decision::UpstreamFailed { rule_id } => Some(rule_id),
            Decision::Pending | Decision::Allowed => None,
        }
    }
}

/// The read of the stored resource before a write by id (`proxy::pre_read`).
#[derive(Debug, Clone)]
pub struct PreRead {
    /// The upstream's status; none when it gave no answer.
    pub status: Option<u16>,
    /// What the read found; none when it was refused (the request's rule says why).
    pub stored: Option<Stored>,
    /// The condition the write was forwarded with.
    pub condition: Option<Condition>,
    pub elapsed: Duration,
}

/// Everything known about one request.
pub struct RequestContext {
    pub id: String,
    pub received_at: SystemTime,
    pub started: Instant,
    pub peer: SocketAddr,
    pub tls: bool,
    pub method: String,
    pub route: Option<String>,
    pub upstream: Option<String>,
    /// The canonical path below the route, once known.
    pub path: Option<String>,
    /// The canonical query as forwarded (form parameters of a `POST _search` included, an
    /// `access_token` parameter removed), once known; none when empty.
    pub query: Option<String>,
    pub principal: Option<Principal>,
    pub break_glass_reason: Option<String>,
    pub interaction: Option<Interaction>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub patients: Vec<String>,
    /// The read of the stored resource before a write by id, when the route made one.
    pub pre_read: Option<PreRead>,
    pub chain: Option<ChainOutcome>,
    pub response_chain: Option<ChainOutcome>,
    pub decision: Decision,
    pub status: u16,
    pub upstream_status: Option<u16>,
    pub policy_time: Duration,
    pub upstream_time: Option<Duration>,
}

impl RequestContext {
    pub fn new(id: String, peer: SocketAddr, tls: bool, method: &str) -> Self {
        RequestContext {
            id,
            received_at: SystemTime::now(),
            started: Instant::now(),
            peer,
            tls,
            method: method.to_owned(),
            route: None,
            upstream: None,
            path: None,
            query: None,
            principal: None,
            break_glass_reason: None,
            interaction: None,
            resource_type: None,
            resource_id: None,
            patients: Vec::new(),
            pre_read: None,
            chain: None,
            response_chain: None,
            decision: Decision::Pending,
            status: 0,
            upstream_status: None,
            policy_time: Duration::ZERO,
            upstream_time: None,
        }
    }

    /// Milliseconds since the Unix epoch when the request arrived.
    pub fn received_ms(&self) -> u64 {
        self.received_at
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    /// Seconds since the Unix epoch when the request arrived (for token checks).
    pub fn received_secs(&self) -> u64 {
        self.received_ms() / 1000
    }
}
