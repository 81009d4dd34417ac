//! The host's view of a guest's decision, checked field by field. A guest that returns
//! anything outside the contract (a 200 "deny", an over-long message, a header that would
//! reshape the HTTP message) has failed, and the request is denied with `policy-error`.

use super::bindings::{GuestDecision, GuestVerdict, Severity};
use super::response_headers::ResponseHeaderAllowList;

/// The rule id the host uses for a failed policy; guests may not use it.
pub const POLICY_ERROR_RULE: &str = "policy-error";

const MAX_RULE_ID: usize = 64;
const MAX_TEXT: usize = 1024;
const MAX_FINDINGS: usize = 32;
const MAX_HEADERS: usize = 16;
const MAX_HEADER_NAME: usize = 64;
const MAX_HEADER_VALUE: usize = 256;

/// A refusal, validated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Denial {
    pub status: u16,
    pub rule_id: String,
    pub message: String,
    pub retry_after_secs: Option<u32>,
}

/// A finding, validated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub rule_id: String,
    pub severity: FindingSeverity,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingSeverity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// A module's decision after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleDecision {
    pub denial: Option<Denial>,
    pub findings: Vec<Finding>,
    pub risk_score: u8,
    pub response_headers: Vec<(String, String)>,
}

/// Checks a guest's decision against the contract in `wit/policy.wit`.
/// Response headers must be on the route's allow-list (`allowed`).
pub(crate) fn validate(
    decision: GuestDecision,
    allowed: &ResponseHeaderAllowList,
) -> Result<ModuleDecision, String> {
    let denial = match decision.verdict {
        GuestVerdict::Allow => None,
        GuestVerdict::Deny(deny) => {
            if !(400..=599).contains(&deny.status) {
                return Err(format!("deny status {} is outside 400-599", deny.status));
            }
            check_rule_id(&deny.rule_id)?;
            check_text("deny message", &deny.message)?;
            Some(Denial {
                status: deny.status,
                rule_id: deny.rule_id,
                message: deny.message,
                retry_after_secs: deny.retry_after_secs,
            })
        }
    };
    if decision.findings.len() > MAX_FINDINGS {
        return Err(format!(
            "{} findings; at most {MAX_FINDINGS} are allowed",
            decision.findings.len()
        ));
    }
    let mut findings = Vec::with_capacity(decision.findings.len());
    for finding in decision.findings {
        check_rule_id(&finding.rule_id)?;
        check_text("finding detail", &finding.detail)?;
        findings.push(Finding {
            rule_id: finding.rule_id,
            severity: finding.severity.into(),
            detail: finding.detail,
        });
    }
    if decision.risk_score > 100 {
        return Err(format!("risk score {} is above 100", decision.risk_score));
    }
    if decision.response_headers.len() > MAX_HEADERS {
        return Err(format!(
            "{} response headers; at most {MAX_HEADERS} are allowed",
            decision.response_headers.len()
        ));
    }
    let mut response_headers = Vec::with_capacity(decision.response_headers.len());
    for header in decision.response_headers {
        check_header(&header.name, &header.value, allowed)?;
        response_headers.push((header.name, header.value));
    }
    Ok(ModuleDecision {
        denial,
        findings,
        risk_score: decision.risk_score,
        response_headers,
    })
}

fn check_rule_id(rule_id: &str) -> Result<(), String> {
    let well_formed = !rule_id.is_empty()
        && rule_id.len() <= MAX_RULE_ID
        && rule_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !well_formed {
        return Err(format!(
            "rule id `{}` is not 1-{MAX_RULE_ID} characters of [a-z0-9._-]",
            rule_id.escape_debug()
        ));
    }
    if rule_id == POLICY_ERROR_RULE {
        return Err(format!(
            "rule id `{POLICY_ERROR_RULE}` is reserved for the host"
        ));
    }
    Ok(())
}

fn check_text(what: &str, text: &str) -> Result<(), String> {
    if text.len() > MAX_TEXT {
        return Err(format!(
            "{what} is {} bytes; at most {MAX_TEXT} are allowed",
            text.len()
        ));
    }
    Ok(())
}

fn check_header(name: &str, value: &str, allowed: &ResponseHeaderAllowList) -> Result<(), String> {
    let name_ok = !name.is_empty()
        && name.len() <= MAX_HEADER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        return Err(format!(
            "response header name `{}` is not 1-{MAX_HEADER_NAME} characters of [a-z0-9-]",
            name.escape_debug()
        ));
    }
    if !allowed.allows(name) {
        return Err(format!(
            "response header `{name}` is not in the route's `policy_response_headers`"
        ));
    }
    // RFC 9110 §5.5: field values are visible ASCII, spaces and tabs; no CR or LF.
    let value_ok = value.len() <= MAX_HEADER_VALUE
        && value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
    if !value_ok {
        return Err(format!(
            "response header `{name}` has a value that is longer than {MAX_HEADER_VALUE} \
             bytes or not visible ASCII"
        ));
    }
    Ok(())
}

impl From<Severity> for FindingSeverity {
    fn from(severity: Severity) -> Self {
        match severity {
            Severity::Info => FindingSeverity::Info,
            Severity::Low => FindingSeverity::Low,
            Severity::Medium => FindingSeverity::Medium,
            Severity::High => FindingSeverity::High,
            Severity::Critical => FindingSeverity::Critical,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::bindings::{GuestDeny, GuestFinding, Header};
    use super::*;

    fn allow() -> GuestDecision {
        GuestDecision {
            verdict: GuestVerdict::Allow,
            findings: vec![],
            risk_score: 0,
            response_headers: vec![],
        }
    }

    fn deny(status: u16, rule_id: &str) -> GuestDecision {
        GuestDecision {
            verdict: GuestVerdict::Deny(GuestDeny {
                status,
                rule_id: rule_id.into(),
                message: "no".into(),
                retry_after_secs: Some(3),
            }),
            ..allow()
        }
    }

    fn with_header(name: &str, value: &str) -> GuestDecision {
        GuestDecision {
            response_headers: vec![Header {
                name: name.into(),
                value: value.into(),
            }],
            ..allow()
        }
    }

    #[test]
    fn a_well_formed_deny_passes() {
        let decision = validate(
            deny(429, "rate.client"),
            &ResponseHeaderAllowList::default(),
        )
        .ok();
        let denial = decision.and_then(|d| d.denial);
        assert_eq!(
            denial.map(|d| (d.status, d.retry_after_secs)),
            Some((429, Some(3)))
        );
    }

    #[test]
    fn out_of_contract_decisions_are_refused() {
        let bad = [
            deny(200, "x"),
            deny(600, "x"),
            deny(403, ""),
            deny(403, "Upper"),
            deny(403, "has space"),
            deny(403, POLICY_ERROR_RULE),
            deny(403, &"a".repeat(65)),
            GuestDecision {
                risk_score: 101,
                ..allow()
            },
            GuestDecision {
                findings: (0..33)
                    .map(|_| GuestFinding {
                        rule_id: "f".into(),
                        severity: Severity::Info,
                        detail: String::new(),
                    })
                    .collect(),
                ..allow()
            },
            with_header("content-length", "0"),
            with_header("Retry-After", "1"),
            with_header("x-note", "line\r\nset-cookie: a=b"),
            with_header("x-note", &"v".repeat(257)),
        ];
        for decision in bad {
            let shown = format!("{decision:?}");
            assert!(
                validate(decision, &ResponseHeaderAllowList::default()).is_err(),
                "accepted {shown}"
            );
        }
    }

    #[test]
    fn only_listed_headers_pass() {
        let listed = ResponseHeaderAllowList::new(&["x-note".to_owned()]);
        for name in [
            "refresh",
            "access-control-allow-origin",
            "cache-control",
            "x-other",
        ] {
            assert!(validate(with_header(name, "1"), &listed).is_err(), "{name}");
        }
        assert!(validate(with_header("x-note", "fine"), &listed).is_ok());
        assert!(validate(with_header("x-note", "a\r\nset-cookie: a=b"), &listed).is_err());
    }

    #[test]
    fn rate_limit_headers_pass() {
        assert!(
            validate(
                with_header("ratelimit-remaining", "4"),
                &ResponseHeaderAllowList::default()
            )
            .is_ok()
        );
    }
}
