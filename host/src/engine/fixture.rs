//! Fixture-driven policy tests: a TOML file of cases (a request, a caller, optionally the
//! upstream's response, and the expected decision) run against a compiled policy module
//! through the gateway's own request path — canonicalization, the governing-duplicate check,
//! FHIR classification, the canonical request record — and the engine, so a case passes only
//! if the module decides as expected on exactly what the gateway would show it.
//!
//! The format, for a reviewer who does not read Rust:
//!
//! ```toml
//! [config]                       # the module's config, as a TOML table (sent as JSON)
//! backend_clients = ["exporter"]
//!
//! [[case]]
//! name = "patient app reads its own observations"
//! request = "GET /Observation?patient=123"   # method and target below the FHIR base
//! body = '{"resourceType": "Observation"}'   # optional: writes, Bundles, POST _search forms
//! scopes = "launch/patient patient/Observation.rs"
//! patient = "123"                            # launch patient
//! roles = ["physician"]                      # also: fhir_user, purpose_of_use,
//! client_id = "ward-app"                     #   break_glass_reason, subject, encounter,
//! route = "ehr"                              #   anonymous = true (no principal at all)
//! config = { allow_unverified_instance_writes = true }   # optional per-case override
//! response = { status = 200, body = '{"resourceType": "Bundle", ...}' }
//! expect = "allow"                           # or { status = 403, rule = "x.y" }
//! findings = [{ rule = "least-privilege.break-glass", severity = "high" }]
//! ```
//!
//! A request the gateway itself refuses before any policy runs (a duplicate `patient`
//! parameter, a malformed Bundle) is expected as that refusal:
//! `expect = { status = 400, rule = "canonical.duplicate-governing-parameter" }`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::{
    ConfiguredPolicy, Header, ModuleDecision, Param, PolicyEngine, PolicySpec, Principal, Request,
    Response,
};
use crate::config::LimitsConfig;
use crate::engine::chain::fault_denial;
use crate::request::Rejection;
use crate::request::canonical::{self, CanonicalTarget};
use crate::request::classify::{self, Classification};

/// A parsed fixture file.
#[derive(Debug, Clone)]
pub struct FixtureFile {
    pub path: PathBuf,
    /// The module's config for every case, as JSON.
    pub config: serde_json::Map<String, serde_json::Value>,
    pub cases: Vec<FixtureCase>,
}

/// One case as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureCase {
    pub name: String,
    /// `METHOD /target?query`, the target below the route's FHIR base.
    pub request: String,
    #[serde(default)]
    pub body: Option<String>,
    /// Whether the route shows the body to policies (`policy_body`); default true.
    #[serde(default = "yes")]
    pub show_body: bool,
    #[serde(default = "default_route")]
    pub route: String,
    /// No principal at all (an anonymous route).
    #[serde(default)]
    pub anonymous: bool,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// Space-separated, as in the token's `scope` claim.
    #[serde(default)]
    pub scopes: String,
    /// The launch patient.
    #[serde(default)]
    pub patient: Option<String>,
    #[serde(default)]
    pub encounter: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub fhir_user: Option<String>,
    #[serde(default)]
    pub purpose_of_use: Vec<String>,
    #[serde(default)]
    pub break_glass_reason: Option<String>,
    /// Top-level config keys that replace the file's for this case.
    #[serde(default)]
    pub config: Option<toml::Table>,
    #[serde(default)]
    pub response: Option<FixtureResponse>,
    pub expect: toml::Value,
    #[serde(default)]
    pub findings: Vec<ExpectedFinding>,
}

/// The upstream's response, for modules that inspect responses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureResponse {
    pub status: u16,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default = "fhir_json")]
    pub content_type: String,
}

/// A finding the decision must carry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedFinding {
    pub rule: String,
    /// `info`, `low`, `medium`, `high` or `critical`; any when absent.
    #[serde(default)]
    pub severity: Option<String>,
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    /// `allow`, or `403 least-privilege.scope`.
    pub expected: String,
    pub actual: String,
    /// The request, both outcomes, the message and the findings, one per line.
    pub detail: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    config: toml::Table,
    #[serde(default, rename = "case")]
    cases: Vec<FixtureCase>,
}

fn yes() -> bool {
    true
}
fn default_route() -> String {
    "ehr".to_string()
}
fn fhir_json() -> String {
    "application/fhir+json".to_string()
}

/// Reads and checks a fixture file.
pub fn load_fixture_file(path: &Path) -> Result<FixtureFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let raw: RawFile = toml::from_str(&text)
        .map_err(|e| format!("`{}` is not a fixture file: {e}", path.display()))?;
    let config = to_json_object(raw.config);
    let mut names = std::collections::HashSet::new();
    for case in &raw.cases {
        if !names.insert(case.name.as_str()) {
            return Err(format!(
                "`{}`: two cases are named `{}`\nhelp: give every case its own name",
                path.display(),
                case.name
            ));
        }
        expectation(&case.expect)
            .map_err(|e| format!("`{}`: case `{}`: `expect` {e}", path.display(), case.name))?;
        split_request_line(&case.request)
            .map_err(|e| format!("`{}`: case `{}`: {e}", path.display(), case.name))?;
    }
    Ok(FixtureFile {
        path: path.to_path_buf(),
        config,
        cases: raw.cases,
    })
}

/// Runs every case against the module at `module_path`, in file order.
pub fn run(engine: &PolicyEngine, module_path: &Path, fixtures: &FixtureFile) -> Vec<CaseResult> {
    let module_name = module_path.file_stem().map_or_else(
        || "policy".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
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
                    engine
                        .load(&PolicySpec {
                            name: module_name.clone(),
                            path: module_path.to_path_buf(),
                            config,
                        })
                        .map(Arc::new)
                        .map_err(|e| e.to_string())
                })
                .clone();
            run_case(index, case, policy)
        })
        .collect()
}

fn to_json_object(table: toml::Table) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(table) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

/// What happened to a request, in the short form cases are written in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Allow,
    Refuse { status: u16, rule: String },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Allow => f.write_str("allow"),
            Outcome::Refuse { status, rule } => write!(f, "{status} {rule}"),
        }
    }
}

fn expectation(expect: &toml::Value) -> Result<Outcome, String> {
    match expect {
        toml::Value::String(word) if word == "allow" => Ok(Outcome::Allow),
        toml::Value::Table(table) => {
            let status = table
                .get("status")
                .and_then(toml::Value::as_integer)
                .and_then(|status| u16::try_from(status).ok())
                .filter(|status| (400..=599).contains(status));
            let rule = table.get("rule").and_then(toml::Value::as_str);
            match (status, rule, table.len()) {
                (Some(status), Some(rule), 2) => Ok(Outcome::Refuse {
                    status,
                    rule: rule.to_string(),
                }),
                _ => Err("must be `{ status = 4xx/5xx, rule = \"...\" }`".to_string()),
            }
        }
        _ => Err("must be `\"allow\"` or `{ status = 403, rule = \"...\" }`".to_string()),
    }
}

fn split_request_line(line: &str) -> Result<(http::Method, &str), String> {
    let (method, target) = line
        .split_once(' ')
        .ok_or_else(|| format!("`request` `{line}` is not `METHOD /target`"))?;
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("`request` `{line}` has no valid method"))?;
    Ok((method, target.trim()))
}

/// Everything one case produced.
struct Evaluated {
    outcome: Outcome,
    message: String,
    findings: Vec<String>,
    decisions: Vec<ModuleDecision>,
}

fn run_case(
    index: usize,
    case: &FixtureCase,
    policy: Result<Arc<ConfiguredPolicy>, String>,
) -> CaseResult {
    let expected = expectation(&case.expect);
    let evaluated = policy.and_then(|policy| evaluate_case(index, case, &policy));
    let expected_text = match &expected {
        Ok(outcome) => outcome.to_string(),
        Err(e) => format!("(invalid: {e})"),
    };
    let (passed, actual_text, mut detail) = match (&expected, &evaluated) {
        (Ok(expected), Ok(evaluated)) => {
            let missing = missing_findings(&case.findings, &evaluated.decisions);
            let passed = *expected == evaluated.outcome && missing.is_empty();
            let mut detail = String::new();
            if !evaluated.message.is_empty() {
                detail.push_str(&format!("  message:  {}\n", evaluated.message));
            }
            for finding in &evaluated.findings {
                detail.push_str(&format!("  finding:  {finding}\n"));
            }
            for finding in missing {
                detail.push_str(&format!("  missing finding: {finding}\n"));
            }
            (passed, evaluated.outcome.to_string(), detail)
        }
        (_, Err(error)) => (
            false,
            "(error)".to_string(),
            format!("  error:    {error}\n"),
        ),
        (Err(_), Ok(evaluated)) => (false, evaluated.outcome.to_string(), String::new()),
    };
    detail.insert_str(
        0,
        &format!(
            "case `{}`\n  request:  {}\n  expected: {expected_text}\n  actual:   {actual_text}\n",
            case.name, case.request
        ),
    );
    CaseResult {
        name: case.name.clone(),
        passed,
        expected: expected_text,
        actual: actual_text,
        detail,
    }
}

fn missing_findings(expected: &[ExpectedFinding], decisions: &[ModuleDecision]) -> Vec<String> {
    expected
        .iter()
        .filter(|wanted| {
            !decisions.iter().flat_map(|d| &d.findings).any(|found| {
                found.rule_id == wanted.rule
                    && wanted
                        .severity
                        .as_deref()
                        .is_none_or(|severity| severity_name(found) == severity)
            })
        })
        .map(|wanted| match &wanted.severity {
            Some(severity) => format!("{} ({severity})", wanted.rule),
            None => wanted.rule.clone(),
        })
        .collect()
}

fn severity_name(finding: &super::Finding) -> String {
    serde_json::to_value(finding.severity)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The gateway's path for one case: canonicalize, check governing duplicates, classify,
/// build the policy request, evaluate, and show the response when the module asks.
fn evaluate_case(
    index: usize,
    case: &FixtureCase,
    policy: &ConfiguredPolicy,
) -> Result<Evaluated, String> {
    let (method, raw_target) = split_request_line(&case.request)?;
    let body = case.body.as_deref().map(str::as_bytes);
    let (target, classification) = match canonical_request(&method, raw_target, body) {
        Ok(found) => found,
        Err(rejection) => {
            return Ok(Evaluated {
                outcome: Outcome::Refuse {
                    status: rejection.status,
                    rule: rejection.rule_id.to_string(),
                },
                message: rejection.message,
                findings: Vec::new(),
                decisions: Vec::new(),
            });
        }
    };
    let request = policy_request(index, case, &method, &target, &classification, body);
    let mut decisions = Vec::new();
    let first = decide(policy, policy.evaluate(&request), &mut decisions);
    let outcome = match (&first, &case.response) {
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
    let findings = decisions
        .iter()
        .flat_map(|d| &d.findings)
        .map(|f| format!("{} ({}): {}", f.rule_id, severity_name(f), f.detail))
        .collect();
    Ok(Evaluated {
        outcome,
        message,
        findings,
        decisions,
    })
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

/// Canonicalization and classification exactly as the gateway's phases run them: the
/// target, the form parameters of a `POST _search`, the bearer-token parameter dropped, the
/// governing-duplicate check, then classification with the default batch limit.
fn canonical_request(
    method: &http::Method,
    raw_target: &str,
    body: Option<&[u8]>,
) -> Result<(CanonicalTarget, Classification), Rejection> {
    let mut target = canonical::canonicalize_target(raw_target)?;
    let is_post_search =
        method == http::Method::POST && target.segments.last().is_some_and(|s| s == "_search");
    if is_post_search {
        let form = canonical::parse_form(body.unwrap_or_default())?;
        target.params.extend(form);
    }
    target.params.retain(|p| p.name != "access_token");
    canonical::check_governing_duplicates(&target.params)?;
    let classification = classify::classify(
        method,
        &target,
        body,
        LimitsConfig::default().max_batch_entries,
    )?;
    Ok((target, classification))
}

/// Builds the canonical request record for a case. It mirrors `policy_request` in
/// `proxy/phases.rs` field by field; the two must stay in step, or fixtures would test a
/// request the gateway never sends.
fn policy_request(
    index: usize,
    case: &FixtureCase,
    method: &http::Method,
    target: &CanonicalTarget,
    classification: &Classification,
    body: Option<&[u8]>,
) -> Request {
    let principal = (!case.anonymous).then(|| Principal {
        subject: case.subject.clone().unwrap_or_else(|| "user-1".to_string()),
        client_id: case.client_id.clone().unwrap_or_else(|| "app".to_string()),
        issuer: "https://idp.fixture.example".to_string(),
        roles: case.roles.clone(),
        scopes: case.scopes.split_whitespace().map(str::to_string).collect(),
        launch_patient: case.patient.clone(),
        launch_encounter: case.encounter.clone(),
        fhir_user: case.fhir_user.clone(),
        purpose_of_use: case.purpose_of_use.clone(),
    });
    // The identity phase drops blank reasons (`request/identity/claims.rs`).
    let break_glass_reason = case
        .break_glass_reason
        .clone()
        .filter(|reason| !case.anonymous && !reason.trim().is_empty());
    let body = if case.show_body {
        body.and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_owned)
    } else {
        None
    };
    Request {
        id: format!("fixture-{index}"),
        time_ms: 1_767_225_600_000,
        source_address: "127.0.0.1".to_string(),
        method: method.as_str().to_owned(),
        path: target.path.clone(),
        route: case.route.clone(),
        upstream: case.route.clone(),
        interaction: classification.interaction,
        resource_type: classification.resource_type.clone(),
        resource_id: classification.resource_id.clone(),
        version_id: classification.version_id.clone(),
        operation: classification.operation.clone(),
        params: target
            .params
            .iter()
            .map(|p| Param {
                name: p.name.clone(),
                value: p.value.clone(),
            })
            .collect(),
        headers: Vec::<Header>::new(),
        principal,
        break_glass_reason,
        patients: classification.patients.clone(),
        entries: classification.entries.clone(),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<FixtureFile, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("cases.toml");
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        load_fixture_file(&path)
    }

    #[test]
    fn a_file_loads_with_its_config_and_cases() {
        let file = load(
            r#"
            [config]
            roles = { nurse = { resource_types = ["clinical"], permissions = "rs" } }

            [[case]]
            name = "a"
            request = "GET /Patient/1"
            expect = "allow"

            [[case]]
            name = "b"
            request = "POST /Observation"
            body = '{"resourceType": "Observation"}'
            expect = { status = 403, rule = "x.y" }
            findings = [{ rule = "x.z", severity = "high" }]
            [case.response]
            status = 200
            "#,
        )
        .unwrap();
        assert_eq!(file.cases.len(), 2);
        assert_eq!(file.config["roles"]["nurse"]["permissions"], "rs");
        assert_eq!(expectation(&file.cases[0].expect), Ok(Outcome::Allow));
        assert_eq!(
            expectation(&file.cases[1].expect).map(|o| o.to_string()),
            Ok("403 x.y".to_string())
        );
        assert_eq!(file.cases[1].route, "ehr");
        assert!(file.cases[1].show_body);
    }

    #[test]
    fn mistakes_in_a_file_name_the_case() {
        let cases: &[(&str, &str)] = &[
            (
                "[[case]]\nname = \"a\"\nrequest = \"GET /\"\nexpect = \"deny\"",
                "case `a`: `expect` must be",
            ),
            (
                "[[case]]\nname = \"a\"\nrequest = \"GET /\"\nexpect = { status = 200, rule = \"x\" }",
                "case `a`: `expect` must be",
            ),
            (
                "[[case]]\nname = \"a\"\nrequest = \"/Patient\"\nexpect = \"allow\"",
                "case `a`: `request` `/Patient` is not `METHOD /target`",
            ),
            (
                "[[case]]\nname = \"a\"\nrequest = \"GET /\"\nexpect = \"allow\"\n\
                 [[case]]\nname = \"a\"\nrequest = \"GET /\"\nexpect = \"allow\"",
                "two cases are named `a`",
            ),
            (
                "[[case]]\nname = \"a\"\nrequest = \"GET /\"\nexpect = \"allow\"\nscope = \"x\"",
                "unknown field `scope`",
            ),
        ];
        for (text, expected) in cases {
            match load(text) {
                Ok(_) => panic!("{text} loaded"),
                Err(message) => assert!(message.contains(expected), "{text}: {message}"),
            }
        }
    }

    #[test]
    fn the_gateway_path_refuses_what_the_gateway_refuses() {
        let refused = |method: http::Method, target: &str, body: Option<&str>| {
            canonical_request(&method, target, body.map(str::as_bytes))
                .err()
                .map(|rejection| rejection.rule_id)
        };
        assert_eq!(
            refused(http::Method::GET, "/Observation?patient=1&patient=2", None),
            Some("canonical.duplicate-governing-parameter")
        );
        assert_eq!(
            refused(
                http::Method::POST,
                "/Observation/_search?patient=1",
                Some("patient=2")
            ),
            Some("canonical.duplicate-governing-parameter")
        );
        assert_eq!(
            refused(http::Method::GET, "/patient/1", None),
            Some("classify.resource-type-case")
        );
        assert_eq!(
            refused(http::Method::GET, "/Observation?patient=1", None),
            None
        );
    }
}
