//! The policy chain of a route: modules in order, each in `enforce` or `shadow` mode. Every
//! module sees the same canonical request and every module runs, so the audit record has
//! every module's findings; the first enforced deny decides. A module that fails (trap,
//! deadline, memory, bad output) is an enforced deny with rule `policy-error`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ConfiguredPolicy;
use super::bindings::{Request, Response};
use super::invoke::PolicyFault;
use super::verdict::{Denial, Finding, ModuleDecision, POLICY_ERROR_RULE};

/// Whether a module's deny is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Its deny refuses the request.
    #[default]
    Enforce,
    /// It is evaluated and audited; its deny is recorded as a shadow deny and not enforced.
    /// For trying a new policy on live traffic.
    Shadow,
}

/// One module of a chain.
#[derive(Clone)]
pub struct ChainLink {
    pub policy: Arc<ConfiguredPolicy>,
    pub mode: Mode,
}

/// An ordered list of modules.
#[derive(Clone, Default)]
pub struct PolicyChain {
    links: Vec<ChainLink>,
}

/// What one module said about one request.
#[derive(Debug, Clone)]
pub struct ModuleReport {
    pub module: Arc<str>,
    pub mode: Mode,
    pub result: Result<ModuleDecision, PolicyFault>,
    pub elapsed: Duration,
}

impl ModuleReport {
    /// The refusal this module asks for: its deny, or `policy-error` when it failed.
    pub fn denial(&self) -> Option<Denial> {
        match &self.result {
            Ok(decision) => decision.denial.clone(),
            Err(fault) => Some(fault_denial(&self.module, fault)),
        }
    }

    /// Findings the module reported (none when it failed).
    pub fn findings(&self) -> &[Finding] {
        match &self.result {
            Ok(decision) => &decision.findings,
            Err(_) => &[],
        }
    }
}

/// The chain's combined decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainDecision {
    Allow,
    Deny { module: Arc<str>, denial: Denial },
}

/// Everything the chain produced for one request.
#[derive(Debug, Clone)]
pub struct ChainOutcome {
    pub decision: ChainDecision,
    /// One report per module, in chain order.
    pub reports: Vec<ModuleReport>,
    /// The highest risk score of the enforced modules.
    pub risk_score: u8,
    /// Headers for the client: on a deny, the denying module's; on an allow, every
    /// enforced module's, in chain order.
    pub response_headers: Vec<(String, String)>,
}

impl ChainOutcome {
    /// Every finding with the module that reported it.
    pub fn findings(&self) -> impl Iterator<Item = (&str, &Finding)> {
        self.reports
            .iter()
            .flat_map(|r| r.findings().iter().map(move |f| (&*r.module, f)))
    }

    /// Modules in shadow mode that would have denied, with their denial.
    pub fn shadow_denials(&self) -> impl Iterator<Item = (&str, Denial)> {
        self.reports
            .iter()
            .filter(|r| r.mode == Mode::Shadow)
            .filter_map(|r| r.denial().map(|d| (&*r.module, d)))
    }
}

/// The refusal for a failed module. The cause goes to the log and the audit record, not to
/// the client: a panic message may quote request data.
pub fn fault_denial(module: &str, fault: &PolicyFault) -> Denial {
    Denial {
        status: if fault.is_transient() { 503 } else { 500 },
        rule_id: POLICY_ERROR_RULE.to_owned(),
        message: format!("policy `{module}` failed, so the request was refused"),
        retry_after_secs: fault.is_transient().then_some(1),
    }
}

impl PolicyChain {
    pub fn new(links: Vec<ChainLink>) -> Self {
        PolicyChain { links }
    }

    pub fn links(&self) -> &[ChainLink] {
        &self.links
    }

    /// Whether any module wants to see the upstream's response.
    pub fn inspects_response(&self) -> bool {
        self.links.iter().any(|l| l.policy.inspects_response)
    }

    /// Runs every module on `request`.
    pub fn evaluate(&self, request: &Request) -> ChainOutcome {
        self.run(self.links.iter(), |policy| policy.evaluate(request))
    }

    /// Runs `on-response` of the modules that asked for it.
    pub fn on_response(&self, request: &Request, response: &Response) -> ChainOutcome {
        let inspecting = self.links.iter().filter(|l| l.policy.inspects_response);
        self.run(inspecting, |policy| policy.on_response(request, response))
    }

    fn run<'a>(
        &self,
        links: impl Iterator<Item = &'a ChainLink>,
        call: impl Fn(&ConfiguredPolicy) -> Result<ModuleDecision, PolicyFault>,
    ) -> ChainOutcome {
        let mut reports = Vec::with_capacity(self.links.len());
        for link in links {
            let started = Instant::now();
            let result = call(&link.policy);
            if let Err(fault) = &result {
                tracing::warn!(
                    module = %link.policy.name,
                    fault = fault.kind(),
                    cause = %fault,
                    "policy module failed"
                );
            }
            reports.push(ModuleReport {
                module: link.policy.name.clone(),
                mode: link.mode,
                result,
                elapsed: started.elapsed(),
            });
        }
        combine(reports)
    }
}

/// First enforced deny wins; risk is the enforced maximum.
fn combine(reports: Vec<ModuleReport>) -> ChainOutcome {
    let enforced = || reports.iter().filter(|r| r.mode == Mode::Enforce);
    let deciding = enforced().find_map(|r| r.denial().map(|d| (r, d)));
    let risk_score = enforced()
        .filter_map(|r| r.result.as_ref().ok())
        .map(|d| d.risk_score)
        .max()
        .unwrap_or(0);
    let headers_of = |r: &ModuleReport| match &r.result {
        Ok(decision) => decision.response_headers.clone(),
        Err(_) => Vec::new(),
    };
    let (decision, response_headers) = match deciding {
        Some((report, denial)) => (
            ChainDecision::Deny {
                module: report.module.clone(),
                denial,
            },
            headers_of(report),
        ),
        None => (
            ChainDecision::Allow,
            enforced().flat_map(headers_of).collect(),
        ),
    };
    ChainOutcome {
        decision,
        reports,
        risk_score,
        response_headers,
    }
}
