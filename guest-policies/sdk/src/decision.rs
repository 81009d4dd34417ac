//! Builders for [`Decision`], so a policy reads as its rules rather than as record literals.

use crate::{Decision, Deny, Finding, Header, Severity, Verdict};

impl Decision {
    /// Let the request through, with no findings and no risk.
    pub fn allow() -> Self {
        Decision {
            verdict: Verdict::Allow,
            findings: Vec::new(),
            risk_score: 0,
            response_headers: Vec::new(),
        }
    }

    /// Refuse the request with an HTTP `status` (400 to 599) naming `rule_id`.
    pub fn deny(status: u16, rule_id: &str, message: &str) -> Self {
        Decision {
            verdict: Verdict::Deny(Deny {
                status,
                rule_id: rule_id.to_owned(),
                message: message.to_owned(),
                retry_after_secs: None,
            }),
            findings: Vec::new(),
            risk_score: 0,
            response_headers: Vec::new(),
        }
    }

    /// Whether this decision lets the request through.
    pub fn is_allow(&self) -> bool {
        matches!(self.verdict, Verdict::Allow)
    }

    /// Adds a finding for the audit record.
    pub fn with_finding(mut self, rule_id: &str, severity: Severity, detail: &str) -> Self {
        self.findings.push(Finding {
            rule_id: rule_id.to_owned(),
            severity,
            detail: detail.to_owned(),
        });
        self
    }

    /// Raises the risk score to at least `score` (capped at 100).
    pub fn with_risk(mut self, score: u8) -> Self {
        self.risk_score = self.risk_score.max(score.min(100));
        self
    }

    /// Adds a response header (lower-case name).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.response_headers.push(Header {
            name: name.to_owned(),
            value: value.to_owned(),
        });
        self
    }

    /// Sets `Retry-After` on a deny; no effect on an allow.
    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        if let Verdict::Deny(deny) = &mut self.verdict {
            deny.retry_after_secs = Some(seconds);
        }
        self
    }
}
