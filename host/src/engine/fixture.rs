//! Fixture-driven policy tests: a TOML file of cases (a request, a caller, optionally the
//! shared state and earlier requests the module has seen, the upstream's response, and the
//! expected decision) run against a compiled policy module through the gateway's own request
//! path — canonicalization, the governing-duplicate check, FHIR classification, the canonical
//! request record — and the engine, so a case passes only if the module decides as expected
//! on exactly what the gateway would show it.
//!
//! The format, for a reviewer who does not read Rust:
//!
//! ```toml
//! config_file = "policy.json"    # optional: the module's config as the gateway has it
//! [config]                       # config keys (over `config_file`'s), as TOML (sent as JSON)
//! backend_clients = ["exporter"]
//! time = "2026-01-06T10:00:00Z"  # optional: when every case happens (UTC); this is the default
//!
//! [[case]]
//! name = "patient app reads its own observations"
//! request = "GET /Observation?patient=123"   # method and target below the FHIR base
//! body = '{"resourceType": "Observation"}'   # optional: writes, Bundles, POST _search forms
//! scopes = "launch/patient patient/Observation.rs"
//! patient = "123"                            # launch patient
//! roles = ["physician"]                      # also: fhir_user, purpose_of_use,
//! client_id = "ward-app"                     #   break_glass_reason, subject, issuer, encounter,
//! route = "ehr"                              #   source_address, anonymous = true
//! time = "2026-01-06T23:30:00Z"              # optional: this case's receive time
//! config = { allow_unverified_instance_writes = true }   # optional per-case override
//! response = { status = 200, body = '{"resourceType": "Bundle", ...}' }
//! # The stored resource the gateway reads before an update, patch or delete by id (status
//! # 200 by default; 404 or 410 for none; anything else fails the read). Without it the case
//! # runs as a route that does not read (`verify_write_owner = "off"`).
//! stored = { body = '{"resourceType": "Observation", "id": "o1", ...}', etag = 'W/"3"' }
//! if_match = 'W/"3"'                         # the client's own If-Match, judged on it
//! forwarded_headers = { if-match = 'W/"3"' } # the condition the write is forwarded with
//! expect = "allow"                           # or { status = 403, rule = "x.y" }
//! findings = [{ rule = "least-privilege.break-glass", severity = "high" }]
//! no_other_findings = true                   # findings not listed above fail the case
//! headers = { retry-after = "6" }            # response headers the decision must set
//! min_risk = 60                              # the decision's risk score is at least this
//! max_risk = 80                              #   and at most this
//!
//! # Shared state the module finds the first time it uses a key (keys as the module
//! # writes them): an empty bucket, a window that has seen members, a counter's total.
//! state = [
//!   { bucket = "global", remaining = 0 },
//!   { distinct = "volume:dr-a", count = 50, ago = "10m" },   # or members = ["p1", "p2"]
//!   { counter = "btg:dr-a", amount = 3, ago = "1h" },      # `ago` counts back from the case
//!   { bucket = "user:x", remaining = 0, optional = true },  # may go unused (an exemption)
//! ]
//! # Earlier requests the module sees first, with the same state: the case's own request
//! # and caller with these keys on top; `{n}` counts 1, 2, 3... (in the request, body,
//! # scopes, subject, client_id, patient, encounter, fhir_user and source_address); the
//! # first is `ago` before the case and each next one `every` later. Their outcomes are
//! # counted, not checked.
//! before = [{ request = "GET /Patient/p{n}", repeat = 50, ago = "30m", every = "10s" }]
//! ```
//!
//! A request the gateway itself refuses before any policy runs (a duplicate `patient`
//! parameter, a malformed Bundle) is expected as that refusal:
//! `expect = { status = 400, rule = "canonical.duplicate-governing-parameter" }`. A
//! precondition the module never reaches fails its case, naming the keys the module used,
//! unless it is `optional`.

mod file;
mod gateway_path;
mod outcome;
mod state;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub use file::{
    Call, FixtureCase, FixtureFile, FixtureResponse, FixtureStored, Precondition, PresetState,
    Prior, load_fixture_file,
};

use self::file::{split_request_line, to_json_object};
use self::gateway_path::{canonical_request, policy_request};
use self::outcome::{
    Outcome, header_differences, missing_findings, response_headers, severity_name,
    unexpected_findings,
};
use self::state::CaseState;
use super::{
    ConfiguredPolicy, ModuleDecision, PolicyEngine, PolicySpec, Response, SandboxSettings,
};
use crate::engine::chain::fault_denial;
use crate::request::stored::{self, StoredResponse, VerifyWriteOwner};

/// Runs fixture files: an engine whose shared state starts empty for every case.
pub struct FixtureRunner {
    engine: PolicyEngine,
    state: Arc<CaseState>,
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    /// `allow`, or `403 least-privilege.scope`.
    pub expected: String,
    pub actual: String,
    /// The request, both outcomes, the message, the findings and what differed, one per line.
    pub detail: String,
}

/// Everything one request produced.
struct Evaluated {
    /// What the gateway made of the request: interaction, target and patients.
    classified: String,
    outcome: Outcome,
    message: String,
    decisions: Vec<ModuleDecision>,
    /// The condition headers the gateway would forward the write with.
    forwarded: BTreeMap<String, String>,
}

impl Evaluated {
    /// The decision's risk score: the highest any module gave.
    fn risk(&self) -> u8 {
        self.decisions
            .iter()
            .map(|d| d.risk_score)
            .max()
            .unwrap_or(0)
    }
}

/// What a case's earlier requests came to.
#[derive(Default)]
struct PriorTally {
    sent: u32,
    allowed: u32,
    refused: BTreeMap<String, u32>,
}

impl std::fmt::Display for PriorTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} earlier requests: {} allowed",
            self.sent, self.allowed
        )?;
        for (outcome, count) in &self.refused {
            write!(f, ", {count} x {outcome}")?;
        }
        Ok(())
    }
}

impl FixtureRunner {
    pub fn new(settings: SandboxSettings) -> anyhow::Result<Self> {
        let state = Arc::new(CaseState::default());
        let engine = PolicyEngine::new(settings, state.clone())?;
        Ok(FixtureRunner { engine, state })
    }

    /// Loads the module with the file's config, as every case without its own config
    /// does: a module that cannot load fails the whole file with one message.
    pub fn check_module(&self, module_path: &Path, fixtures: &FixtureFile) -> Result<(), String> {
        self.engine
            .load(&PolicySpec::new(
                &module_name(module_path),
                module_path,
                &serde_json::Value::Object(fixtures.config.clone()).to_string(),
            ))
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Runs every case against the module at `module_path`, in file order.
    pub fn run(&self, module_path: &Path, fixtures: &FixtureFile) -> Vec<CaseResult> {
        let module_name = module_name(module_path);
        // One load per distinct config: most cases share the file's.
        let mut loaded: BTreeMap<String, Result<Arc<ConfiguredPolicy>, String>> = BTreeMap::new();
        fixtures
            .cases
            .iter()
            .enumerate()
            .map(|(index, case)| {
                let mut config = fixtures.config.clone();
                if let Some(overrides) = &case.config {
                    config.extend(to_json_object(overrides.clone()));
                }
                let config = serde_json::Value::Object(config).to_string();
                let policy = loaded
                    .entry(config.clone())
                    .or_insert_with(|| {
                        self.engine
                            .load(&PolicySpec::new(&module_name, module_path, &config))
                            .map_err(|e| e.to_string())
                    })
                    .clone();
                self.run_case(index, case, policy)
            })
            .collect()
    }

    fn run_case(
        &self,
        index: usize,
        case: &FixtureCase,
        policy: Result<Arc<ConfiguredPolicy>, String>,
    ) -> CaseResult {
        let expected = case.expect.to_string();
        let mut detail = format!(
            "case `{}`\n  request:  {}\n  expected: {expected}\n",
            case.name, case.call.request
        );
        let ran = policy.and_then(|policy| self.evaluate_case(index, case, &policy));
        let (passed, actual) = match ran {
            Err(error) => {
                detail.push_str(&format!("  actual:   (error)\n  error:    {error}\n"));
                (false, "(error)".to_string())
            }
            Ok((evaluated, tally, unused)) => {
                let actual = evaluated.outcome.to_string();
                detail.push_str(&format!("  actual:   {actual}\n"));
                detail.push_str(&format!("  gateway:  {}\n", evaluated.classified));
                if tally.sent > 0 {
                    detail.push_str(&format!("  before:   {tally}\n"));
                }
                if !evaluated.message.is_empty() {
                    detail.push_str(&format!("  message:  {}\n", evaluated.message));
                }
                if evaluated.risk() > 0 {
                    detail.push_str(&format!("  risk:     {}\n", evaluated.risk()));
                }
                for finding in evaluated.decisions.iter().flat_map(|d| &d.findings) {
                    detail.push_str(&format!(
                        "  finding:  {} ({}): {}\n",
                        finding.rule_id,
                        severity_name(finding),
                        finding.detail
                    ));
                }
                let problems = differences(case, &evaluated, unused);
                for problem in &problems {
                    detail.push_str(&format!("  differs:  {problem}\n"));
                }
                let passed = case.expect == evaluated.outcome && problems.is_empty();
                let actual = match problems.len() {
                    0 => actual,
                    1 => format!("{actual} (and 1 difference)"),
                    n => format!("{actual} (and {n} differences)"),
                };
                (passed, actual)
            }
        };
        CaseResult {
            name: case.name.clone(),
            passed,
            expected,
            actual,
            detail,
        }
    }

    /// Arms the case's state, sends its earlier requests, then the case itself.
    fn evaluate_case(
        &self,
        index: usize,
        case: &FixtureCase,
        policy: &Arc<ConfiguredPolicy>,
    ) -> Result<(Evaluated, PriorTally, Vec<String>), String> {
        self.state
            .begin(&format!("{}/", policy.name), case.time_ms, &case.state);
        let mut tally = PriorTally::default();
        for (which, prior) in case.before.iter().enumerate() {
            for n in 1..=prior.repeat {
                let (call, at) = prior.nth(n, case.time_ms);
                file::check_call_values(&call).map_err(|e| format!("earlier request {n}: {e}"))?;
                let id = format!("fixture-{index}-before-{which}-{n}");
                let evaluated = evaluate_call(policy, &call, at, id, None, None)
                    .map_err(|e| format!("earlier request `{}`: {e}", call.request))?;
                tally.sent += 1;
                match evaluated.outcome {
                    Outcome::Allow => tally.allowed += 1,
                    refused => *tally.refused.entry(refused.to_string()).or_default() += 1,
                }
            }
        }
        let id = format!("fixture-{index}");
        let evaluated = evaluate_call(
            policy,
            &case.call,
            case.time_ms,
            id,
            case.response.as_ref(),
            case.stored.as_ref(),
        )?;
        Ok((evaluated, tally, self.state.unused()))
    }
}

/// The name a module is loaded under (and its state namespaced by): its file stem.
fn module_name(path: &Path) -> String {
    path.file_stem().map_or_else(
        || "policy".to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// Everything about a case's result other than its outcome that is not as expected.
fn differences(case: &FixtureCase, evaluated: &Evaluated, unused: Vec<String>) -> Vec<String> {
    let mut problems: Vec<String> = missing_findings(&case.findings, &evaluated.decisions)
        .into_iter()
        .map(|finding| format!("missing finding {finding}"))
        .collect();
    problems.extend(header_differences(
        &case.headers,
        &response_headers(&evaluated.decisions),
    ));
    if case.no_other_findings {
        problems.extend(
            unexpected_findings(&case.findings, &evaluated.decisions)
                .into_iter()
                .map(|finding| format!("finding {finding} was not expected")),
        );
    }
    let risk = evaluated.risk();
    if let Some(minimum) = case.min_risk.filter(|minimum| risk < *minimum) {
        problems.push(format!("risk: expected at least {minimum}, got {risk}"));
    }
    if let Some(maximum) = case.max_risk.filter(|maximum| risk > *maximum) {
        problems.push(format!("risk: expected at most {maximum}, got {risk}"));
    }
    for (name, value) in &case.forwarded_headers {
        match evaluated.forwarded.get(name) {
            Some(sent) if sent == value => {}
            _ if evaluated.outcome != Outcome::Allow => {
                problems.push(format!("forwarded `{name}`: nothing was forwarded"));
            }
            Some(sent) => problems.push(format!(
                "forwarded `{name}`: expected `{value}`, the gateway sends `{sent}`"
            )),
            None => problems.push(format!(
                "forwarded `{name}`: expected `{value}`, the gateway sends none"
            )),
        }
    }
    problems.extend(unused);
    problems
}

/// A request the gateway refuses before any policy runs.
fn refused_by_gateway(classified: String, rejection: crate::request::Rejection) -> Evaluated {
    Evaluated {
        classified,
        outcome: Outcome::Refuse {
            status: rejection.status,
            rule: rejection.rule_id.to_string(),
        },
        message: rejection.message,
        decisions: Vec::new(),
        forwarded: BTreeMap::new(),
    }
}

/// The gateway's path for one request: canonicalize, check governing duplicates, classify,
/// read the stored resource of a write by id when the case gives one, build the policy
/// request, evaluate, and show the response when the module asks.
fn evaluate_call(
    policy: &Arc<ConfiguredPolicy>,
    call: &Call,
    time_ms: u64,
    id: String,
    response: Option<&FixtureResponse>,
    stored_case: Option<&FixtureStored>,
) -> Result<Evaluated, String> {
    let (method, raw_target) = split_request_line(&call.request)?;
    let body = call.body.as_deref().map(str::as_bytes);
    let (target, classification) = match canonical_request(&method, raw_target, body) {
        Ok(found) => found,
        Err(rejection) => {
            return Ok(refused_by_gateway(
                "refused before any policy ran".to_string(),
                rejection,
            ));
        }
    };
    let mut request = policy_request(id, call, time_ms, &method, &target, &classification, body);
    let mut forwarded = BTreeMap::new();
    let mut stored_note = String::new();
    let mut nothing = None;
    if let Some(stored_case) = stored_case {
        // The case says what the upstream holds, so the gateway read it: whichever route
        // mode made it read, the judgement is the same.
        let Some(stored_target) = stored::target(
            VerifyWriteOwner::All,
            &classification,
            request.principal.as_ref(),
        ) else {
            return Err(format!(
                "`stored` is given, but the gateway reads no stored resource before `{}` \
                 (only before an update, patch or delete by id of a type that can belong to a \
                 patient, by a caller with a token)",
                call.request
            ));
        };
        let judged = stored::judge(
            &stored_target,
            StoredResponse {
                status: stored_case.status,
                etag: stored_case.etag.as_deref(),
                body: stored_case.body.as_deref().unwrap_or_default().as_bytes(),
            },
        );
        let found = match judged {
            Ok(found) => found,
            Err(rejection) => {
                return Ok(refused_by_gateway(
                    format!("{}, stored: read refused", describe(&request)),
                    rejection,
                ));
            }
        };
        request.patients = stored::merge_patients(&request.patients, &found);
        stored_note = format!(", stored: {}", stored::describe(&found));
        let mut client = http::HeaderMap::new();
        if let Some(if_match) = &call.if_match {
            let value = http::HeaderValue::from_str(if_match)
                .map_err(|_| format!("`if_match` `{if_match}` is not a header value"))?;
            client.insert(http::header::IF_MATCH, value);
        }
        match stored::condition(&stored_target, &found, &client) {
            Ok(condition) => {
                if let Some(condition) = condition {
                    let (name, value) = condition.header();
                    forwarded.insert(name.to_owned(), value);
                }
            }
            Err(rejection) => {
                return Ok(refused_by_gateway(
                    format!("{}{stored_note}", describe(&request)),
                    rejection,
                ));
            }
        }
        request.headers.extend(stored::policy_headers(&found));
        nothing = stored::nothing_to_change(&stored_target, &found);
    }
    let classified = format!("{}{stored_note}", describe(&request));
    let mut decisions = Vec::new();
    let first = decide(policy, policy.evaluate(&request), &mut decisions);
    let outcome = match (&first, response) {
        (Outcome::Allow, Some(response)) if policy.inspects_response => {
            let shown = Response {
                status: response.status,
                content_type: Some(response.content_type.clone()),
                // As the gateway does: bodies are shown only when they are JSON.
                body: response
                    .body
                    .clone()
                    .filter(|_| response.content_type.contains("json")),
            };
            decide(policy, policy.on_response(&request, &shown), &mut decisions)
        }
        _ => first,
    };
    let message = decisions
        .iter()
        .find_map(|d| d.denial.as_ref().map(|denial| denial.message.clone()))
        .unwrap_or_default();
    // The gateway answers a patch or delete of nothing itself, once the policies allowed it.
    let (outcome, message) = match (outcome, nothing) {
        (Outcome::Allow, Some(rejection)) => (
            Outcome::Refuse {
                status: rejection.status,
                rule: rejection.rule_id.to_string(),
            },
            rejection.message,
        ),
        (outcome, _) => (outcome, message),
    };
    if outcome != Outcome::Allow {
        forwarded.clear();
    }
    Ok(Evaluated {
        classified,
        outcome,
        message,
        decisions,
        forwarded,
    })
}

/// `search-type Observation, patients p1` — how the gateway classified a request, so a case
/// that fails because of its request line (a route prefix left in, a misspelled type) shows
/// why.
fn describe(request: &super::Request) -> String {
    let mut text = crate::audit::record::interaction_code(request.interaction).to_string();
    if let Some(resource_type) = &request.resource_type {
        text.push(' ');
        text.push_str(resource_type);
        if let Some(id) = &request.resource_id {
            text.push('/');
            text.push_str(id);
        }
    }
    if let Some(operation) = &request.operation {
        text.push_str(&format!(" ${operation}"));
    }
    let mut patients: Vec<&str> = request.patients.iter().map(String::as_str).collect();
    patients.extend(
        request
            .entries
            .iter()
            .flat_map(|e| e.patients.iter().map(String::as_str)),
    );
    if patients.is_empty() {
        text.push_str(", no patient");
    } else {
        text.push_str(&format!(", patients {}", patients.join(" ")));
    }
    text
}

fn decide(
    policy: &ConfiguredPolicy,
    result: Result<ModuleDecision, super::PolicyFault>,
    decisions: &mut Vec<ModuleDecision>,
) -> Outcome {
    match result {
        Ok(decision) => {
            let outcome = match &decision.denial {
                None => Outcome::Allow,
                Some(denial) => Outcome::Refuse {
                    status: denial.status,
                    rule: denial.rule_id.clone(),
                },
            };
            decisions.push(decision);
            outcome
        }
        Err(fault) => {
            let denial = fault_denial(&policy.name, &fault);
            decisions.push(ModuleDecision {
                denial: Some(denial.clone()),
                findings: Vec::new(),
                risk_score: 0,
                response_headers: Vec::new(),
            });
            Outcome::Refuse {
                status: denial.status,
                rule: format!("{} ({fault})", denial.rule_id),
            }
        }
    }
}

#[cfg(test)]
mod tests;
