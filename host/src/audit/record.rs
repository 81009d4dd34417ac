//! The audit record: everything a privacy officer needs about one decision, built from the
//! request's context when the response is ready. The field order here is the order of the
//! keys in the log (part of the canonical bytes, see the `audit` module), so new fields go
//! before `prev_hash`, and existing fields are never reordered.

use serde::{Deserialize, Serialize};

use super::time;
use crate::engine::{ChainOutcome, FindingSeverity, Interaction, Mode, POLICY_ERROR_RULE};
use crate::proxy::context::{Decision, RequestContext};
use crate::request::stored::Stored;

/// The purpose-of-use code of break-the-glass access (v3-ActReason `BTG`).
pub const BREAK_GLASS_PURPOSE: &str = "BTG";

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1, set by the writer.
    #[serde(default)]
    pub seq: u64,
    /// When the request arrived, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub time: String,
    pub request_id: String,
    /// The client's IP address as seen on the socket.
    pub source_address: String,
    pub tls: bool,
    /// The verified caller; none for anonymous requests and requests refused before the
    /// token was verified.
    pub principal: Option<AuditPrincipal>,
    /// Purpose-of-use codes from the token (`TREAT`, `HPAYMT`, `BTG`, ...).
    pub purpose_of_use: Vec<String>,
    /// Whether the caller broke the glass (purpose `BTG` or a break-the-glass reason).
    pub break_glass: bool,
    pub break_glass_reason: Option<String>,
    pub route: Option<String>,
    pub upstream: Option<String>,
    pub method: String,
    /// The canonical path below the route's prefix.
    pub path: Option<String>,
    /// The canonical query as forwarded (access tokens removed).
    pub query: Option<String>,
    /// The FHIR interaction, as named in `wit/policy.wit` (`read`, `search-type`, ...).
    pub interaction: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// Patient ids the request touches, sorted and unique.
    pub patients: Vec<String>,
    pub decision: AuditDecision,
    /// The module that denied (for `deny` and `policy-error`).
    pub module: Option<String>,
    /// The rule that refused (every decision but `allow`).
    pub rule: Option<String>,
    /// Every finding of every module, request chain first, then response chain.
    pub findings: Vec<AuditFinding>,
    /// Modules in shadow mode that would have denied.
    pub shadow_denials: Vec<ShadowDenial>,
    /// Modules that failed, with the cause (never shown to the client).
    pub policy_faults: Vec<PolicyFaultRecord>,
    /// The highest risk score of the enforced modules, 0 to 100.
    pub risk: u8,
    /// Whether a person should look at this access, and why.
    pub review: bool,
    pub review_reasons: Vec<String>,
    /// The status the client received.
    pub status: u16,
    pub upstream_status: Option<u16>,
    pub latency_us: Latencies,
    /// The read of the stored resource before an update, patch or delete by id, when the
    /// route made one (`verify_write_owner`); absent otherwise, so records of other requests
    /// are as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_read: Option<AuditPreRead>,
    /// The previous record's `hash` (64 zero digits for the first record), set by the writer.
    #[serde(default)]
    pub prev_hash: String,
    /// SHA-256 over the previous hash and this record's canonical bytes; empty until written.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

/// The caller, from the verified token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPrincipal {
    pub subject: String,
    pub client: String,
    pub issuer: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    pub fhir_user: Option<String>,
    pub launch_patient: Option<String>,
}

/// How the request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditDecision {
    /// Forwarded and answered.
    Allow,
    /// Refused by a policy.
    Deny,
    /// Refused before the policy chain (malformed, over a limit, no valid token).
    Reject,
    /// Refused because a policy module failed.
    PolicyError,
    /// Allowed, but the upstream failed or timed out.
    UpstreamError,
}

impl AuditDecision {
    pub const ALL: [AuditDecision; 5] = [
        AuditDecision::Allow,
        AuditDecision::Deny,
        AuditDecision::Reject,
        AuditDecision::PolicyError,
        AuditDecision::UpstreamError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditDecision::Allow => "allow",
            AuditDecision::Deny => "deny",
            AuditDecision::Reject => "reject",
            AuditDecision::PolicyError => "policy-error",
            AuditDecision::UpstreamError => "upstream-error",
        }
    }
}

/// Which chain a finding, shadow denial or fault came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Request,
    Response,
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl From<FindingSeverity> for Severity {
    fn from(severity: FindingSeverity) -> Self {
        match severity {
            FindingSeverity::Info => Severity::Info,
            FindingSeverity::Low => Severity::Low,
            FindingSeverity::Medium => Severity::Medium,
            FindingSeverity::High => Severity::High,
            FindingSeverity::Critical => Severity::Critical,
        }
    }
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFinding {
    pub phase: Phase,
    pub module: String,
    pub rule: String,
    pub severity: Severity,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowDenial {
    pub phase: Phase,
    pub module: String,
    pub rule: String,
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFaultRecord {
    pub phase: Phase,
    pub module: String,
    /// A stable name: `deadline`, `memory-limit`, `trap`, `panic`, ...
    pub kind: String,
    pub cause: String,
    /// Whether the module was in shadow mode (its failure did not refuse the request).
    pub shadow: bool,
}

/// What the gateway read of the stored resource before a write by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPreRead {
    /// The upstream's status for the read; none when it did not answer.
    pub status: Option<u16>,
    /// `found`, `absent`, or `refused` (the record's `rule` says why).
    pub outcome: String,
    /// The version read, when the upstream gave one.
    pub version: Option<String>,
    /// The patients the stored resource references (they are in `patients` too).
    pub patients: Vec<String>,
    /// The condition the write was forwarded with (`If-Match: W/"3"`, `If-None-Match: *`).
    pub condition: Option<String>,
    pub latency_us: u64,
}

/// Time spent, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latencies {
    pub policy: u64,
    pub upstream: Option<u64>,
    pub total: u64,
}

impl AuditRecord {
    /// The record of a finished request. `seq`, `prev_hash` and `hash` are the writer's;
    /// `review` is set by [`AuditRecord::flag_for_review`], which the log calls with its
    /// configured threshold.
    pub fn from_context(context: &RequestContext) -> AuditRecord {
        let principal = context.principal.as_ref();
        let purpose_of_use = principal.map_or_else(Vec::new, |p| p.purpose_of_use.clone());
        let break_glass = context.break_glass_reason.is_some()
            || purpose_of_use.iter().any(|p| p == BREAK_GLASS_PURPOSE);
        let (decision, module, rule) = decision_of(&context.decision);
        let chains = [
            (Phase::Request, context.chain.as_ref()),
            (Phase::Response, context.response_chain.as_ref()),
        ];
        let mut findings = Vec::new();
        let mut shadow_denials = Vec::new();
        let mut policy_faults = Vec::new();
        let mut risk = 0;
        for (phase, outcome) in chains {
            if let Some(outcome) = outcome {
                collect(
                    phase,
                    outcome,
                    &mut findings,
                    &mut shadow_denials,
                    &mut policy_faults,
                );
                risk = risk.max(outcome.risk_score);
            }
        }
        let micros = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        AuditRecord {
            seq: 0,
            time: time::format_millis(context.received_ms()),
            request_id: context.id.clone(),
            source_address: context.peer.ip().to_string(),
            tls: context.tls,
            principal: principal.map(|p| AuditPrincipal {
                subject: p.subject.clone(),
                client: p.client_id.clone(),
                issuer: p.issuer.clone(),
                roles: p.roles.clone(),
                scopes: p.scopes.clone(),
                fhir_user: p.fhir_user.clone(),
                launch_patient: p.launch_patient.clone(),
            }),
            purpose_of_use,
            break_glass,
            break_glass_reason: context.break_glass_reason.clone(),
            route: context.route.clone(),
            upstream: context.upstream.clone(),
            method: context.method.clone(),
            path: context.path.clone(),
            query: context.query.clone(),
            interaction: context.interaction.map(|i| interaction_code(i).to_owned()),
            resource_type: context.resource_type.clone(),
            resource_id: context.resource_id.clone(),
            patients: context.patients.clone(),
            decision,
            module,
            rule,
            findings,
            shadow_denials,
            policy_faults,
            risk,
            review: false,
            review_reasons: Vec::new(),
            status: context.status,
            upstream_status: context.upstream_status,
            latency_us: Latencies {
                policy: micros(context.policy_time),
                upstream: context.upstream_time.map(micros),
                total: micros(context.started.elapsed()),
            },
            pre_read: context.pre_read.as_ref().map(|read| AuditPreRead {
                status: read.status,
                outcome: match &read.stored {
                    Some(Stored::Found { .. }) => "found",
                    Some(Stored::Absent) => "absent",
                    None => "refused",
                }
                .to_owned(),
                version: read
                    .stored
                    .as_ref()
                    .and_then(Stored::version)
                    .map(str::to_owned),
                patients: read
                    .stored
                    .as_ref()
                    .map_or_else(Vec::new, |stored| stored.patients().to_vec()),
                condition: read.condition.as_ref().map(ToString::to_string),
                latency_us: micros(read.elapsed),
            }),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// Flags the record for review when a finding is high or critical, when the caller broke
    /// the glass (healthcare.md: "allowed but audited as a security alert and flagged for
    /// review"), or when the risk score reaches `risk_threshold`.
    pub fn flag_for_review(&mut self, risk_threshold: u8) {
        let mut reasons = Vec::new();
        if self.break_glass {
            reasons.push("break-the-glass".to_owned());
        }
        for finding in &self.findings {
            if finding.severity >= Severity::High {
                reasons.push(format!(
                    "{}-finding:{}",
                    finding.severity.as_str(),
                    finding.rule
                ));
            }
        }
        if self.risk >= risk_threshold {
            reasons.push(format!("risk:{}", self.risk));
        }
        self.review = !reasons.is_empty();
        self.review_reasons = reasons;
    }

    /// The user as a reviewer knows them: `fhirUser` when the token has one, else the subject.
    pub fn user(&self) -> Option<&str> {
        self.principal
            .as_ref()
            .map(|p| p.fhir_user.as_deref().unwrap_or(&p.subject))
    }
}

fn decision_of(decision: &Decision) -> (AuditDecision, Option<String>, Option<String>) {
    match decision {
        Decision::Allowed => (AuditDecision::Allow, None, None),
        Decision::Denied { module, rule_id } if rule_id == POLICY_ERROR_RULE => (
            AuditDecision::PolicyError,
            Some(module.clone()),
            Some(rule_id.clone()),
        ),
        Decision::Denied { module, rule_id } => (
            AuditDecision::Deny,
            Some(module.clone()),
            Some(rule_id.clone()),
        ),
        Decision::Rejected { rule_id } => (AuditDecision::Reject, None, Some(rule_id.clone())),
        Decision::UpstreamFailed { rule_id } => {
            (AuditDecision::UpstreamError, None, Some(rule_id.clone()))
        }
        // `handle` decides every request before it is recorded; a pending one was refused.
        Decision::Pending => (AuditDecision::Reject, None, None),
    }
}

fn collect(
    phase: Phase,
    outcome: &ChainOutcome,
    findings: &mut Vec<AuditFinding>,
    shadow_denials: &mut Vec<ShadowDenial>,
    policy_faults: &mut Vec<PolicyFaultRecord>,
) {
    for (module, finding) in outcome.findings() {
        findings.push(AuditFinding {
            phase,
            module: module.to_owned(),
            rule: finding.rule_id.clone(),
            severity: finding.severity.into(),
            detail: finding.detail.clone(),
        });
    }
    for (module, denial) in outcome.shadow_denials() {
        shadow_denials.push(ShadowDenial {
            phase,
            module: module.to_owned(),
            rule: denial.rule_id,
            status: denial.status,
        });
    }
    for report in &outcome.reports {
        if let Err(fault) = &report.result {
            policy_faults.push(PolicyFaultRecord {
                phase,
                module: report.module.to_string(),
                kind: fault.kind().to_owned(),
                cause: fault.to_string(),
                shadow: report.mode == Mode::Shadow,
            });
        }
    }
}

/// The interaction's name in `wit/policy.wit`, which is also its FHIR R4
/// `restful-interaction` code (except `other`).
pub fn interaction_code(interaction: Interaction) -> &'static str {
    match interaction {
        Interaction::Read => "read",
        Interaction::Vread => "vread",
        Interaction::Update => "update",
        Interaction::Patch => "patch",
        Interaction::Delete => "delete",
        Interaction::HistoryInstance => "history-instance",
        Interaction::HistoryType => "history-type",
        Interaction::HistorySystem => "history-system",
        Interaction::Create => "create",
        Interaction::SearchType => "search-type",
        Interaction::SearchSystem => "search-system",
        Interaction::Capabilities => "capabilities",
        Interaction::Batch => "batch",
        Interaction::Transaction => "transaction",
        Interaction::Operation => "operation",
        Interaction::Other => "other",
    }
}
