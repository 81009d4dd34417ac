//! Builders for [`Decision`], so a policy reads as its rules rather than as record literals.

use crate::{Decision, Deny, Finding, Header, Severity, Verdict};

impl Decision {
    /// Let the request through, with no findings and no risk.
    ///
    /// ```
    /// use ehrgate_sdk::Decision;
    ///
    /// let decision = Decision::allow();
    /// assert!(decision.is_allow());
    /// assert!(decision.findings.is_empty() && decision.risk_score == 0);
    /// ```
    pub fn allow() -> Self {
        Decision {
            verdict: Verdict::Allow,
            findings: Vec::new(),
            risk_score: 0,
            response_headers: Vec::new(),
        }
    }

    /// Refuse the request with an HTTP `status` (400 to 599) naming `rule_id` (1 to 64
    /// characters of `[a-z0-9._-]`). The client sees `rule_id` and `message` in an
    /// OperationOutcome, so neither may carry protected data.
    ///
    /// ```
    /// use ehrgate_sdk::{Decision, Verdict};
    ///
    /// let decision = Decision::deny(
    ///     403,
    ///     "ward-only.off-ward",
    ///     "residents may open only the charts of patients on their ward",
    /// );
    /// assert!(!decision.is_allow());
    /// assert!(matches!(&decision.verdict, Verdict::Deny(deny) if deny.status == 403));
    /// ```
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
    ///
    /// ```
    /// use ehrgate_sdk::Decision;
    ///
    /// assert!(Decision::allow().is_allow());
    /// assert!(!Decision::deny(401, "auth.no-token", "a bearer token is required").is_allow());
    /// ```
    pub fn is_allow(&self) -> bool {
        matches!(self.verdict, Verdict::Allow)
    }

    /// Adds a finding for the audit record (at most 32 per decision; `detail` at most 1024
    /// bytes, ids but no protected data). An allow with findings lets the request through and
    /// still tells the auditor what was noticed.
    ///
    /// ```
    /// use ehrgate_sdk::{Decision, Severity};
    ///
    /// let decision = Decision::allow().with_finding(
    ///     "anomaly.vip-access",
    ///     Severity::High,
    ///     "Practitioner/dr-adams opened VIP chart Patient/123",
    /// );
    /// assert!(decision.is_allow());
    /// assert_eq!(decision.findings[0].rule_id, "anomaly.vip-access");
    /// ```
    pub fn with_finding(mut self, rule_id: &str, severity: Severity, detail: &str) -> Self {
        self.findings.push(Finding {
            rule_id: rule_id.to_owned(),
            severity,
            detail: detail.to_owned(),
        });
        self
    }

    /// Raises the risk score to at least `score` (capped at 100); never lowers it.
    ///
    /// ```
    /// use ehrgate_sdk::Decision;
    ///
    /// // An after-hours chart opening (40), then a bulk export (70).
    /// let decision = Decision::allow().with_risk(40).with_risk(70).with_risk(20);
    /// assert_eq!(decision.risk_score, 70);
    /// assert_eq!(Decision::allow().with_risk(250).risk_score, 100);
    /// ```
    pub fn with_risk(mut self, score: u8) -> Self {
        self.risk_score = self.risk_score.max(score.min(100));
        self
    }

    /// Adds a response header (lower-case name of `[a-z0-9-]`, value at most 256 bytes; at
    /// most 16). Headers that shape the HTTP message (`content-length`, `set-cookie`, ...)
    /// are refused by the host as a policy error.
    ///
    /// ```
    /// use ehrgate_sdk::Decision;
    ///
    /// let decision = Decision::allow().with_header("ratelimit-remaining", "41");
    /// assert_eq!(decision.response_headers[0].name, "ratelimit-remaining");
    /// ```
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.response_headers.push(Header {
            name: name.to_owned(),
            value: value.to_owned(),
        });
        self
    }

    /// Sets `Retry-After` on a deny; no effect on an allow.
    ///
    /// ```
    /// use ehrgate_sdk::{Decision, Verdict};
    ///
    /// let decision = Decision::deny(429, "rate-limit.user", "too many chart openings")
    ///     .with_retry_after(30);
    /// assert!(matches!(&decision.verdict, Verdict::Deny(deny) if deny.retry_after_secs == Some(30)));
    /// assert!(Decision::allow().with_retry_after(30).is_allow());
    /// ```
    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        if let Verdict::Deny(deny) = &mut self.verdict {
            deny.retry_after_secs = Some(seconds);
        }
        self
    }
}
