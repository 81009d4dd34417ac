//! The least-privilege policy: a request passes only when the caller's SMART scopes grant
//! the permission its interaction needs on every type it touches (SMART App Launch v2,
//! scopes-and-launch-context), patient-bound grants stay inside the launch patient's
//! compartment (FHIR R4 compartmentdefinition-patient) through searches, includes, chains,
//! Bundles, operations and writes, the caller's roles permit the route and the resource, and
//! break-the-glass is used only as configured. The response hook checks what actually came
//! back: compartment, scopes and security labels.
//!
//! - [`config`]: the JSON configuration and its checks.
//! - [`caller`]: scopes, roles, bindings and break-the-glass of one caller.
//! - [`action`]: requests and Bundle entries, and the per-interaction checks, with
//!   [`search`], [`write`] (and [`references`] and [`patch`] for what a write references)
//!   and [`operation`].
//! - [`response`] and [`labels`]: the response hook.

use ehrgate_sdk::{Capabilities, Decision, Interaction, Policy, Request, Response, Severity};

mod action;
mod caller;
mod config;
mod document;
mod labels;
mod operation;
mod patch;
mod references;
mod refusal;
mod response;
mod search;
mod write;

use caller::{Caller, Notes};
use config::Config;
use refusal::{Refusal, truncate};

/// The contract caps finding details and messages at 1024 bytes.
const MAX_TEXT: usize = 1024;

struct LeastPrivilege;

impl Policy for LeastPrivilege {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        config::validate(config)
    }

    fn capabilities(_config: &Config) -> Capabilities {
        // Includes, compartment reads and security labels can only be judged on what the
        // upstream returns.
        Capabilities {
            inspect_response: true,
        }
    }

    fn evaluate(config: &Config, request: &Request) -> Decision {
        // The capability statement holds no patient data and clients read it before they
        // have a token (SMART discovery).
        if request.interaction == Interaction::Capabilities {
            return Decision::allow();
        }
        let Some(principal) = &request.principal else {
            return Decision::deny(
                401,
                refusal::AUTHENTICATION,
                "this policy needs an authenticated caller",
            );
        };
        let caller = match Caller::new(config, request, principal) {
            Ok(caller) => caller,
            Err(refused) => return to_decision(Err(refused)),
        };
        let mut notes = Notes::default();
        let outcome = action::check_request(&caller, request, &mut notes);
        decide(&caller, outcome, notes)
    }

    fn on_response(config: &Config, request: &Request, response: &Response) -> Decision {
        let Some(principal) = &request.principal else {
            return Decision::allow();
        };
        let caller = match Caller::new(config, request, principal) {
            Ok(caller) => caller,
            Err(refused) => return to_decision(Err(refused)),
        };
        let mut notes = Notes::default();
        let outcome = response::check_response(&caller, request, response, &mut notes);
        // The request's findings (ignored scopes, break-the-glass declared) are already in
        // the audit record; the response adds only what it lifted or refused.
        let mut decision = to_decision(outcome);
        if !notes.lifted.is_empty() {
            decision = break_glass_finding(decision, &caller, &notes);
        }
        decision
    }
}

/// The decision for a request, with every finding the audit record needs.
fn decide(caller: &Caller<'_>, outcome: Result<(), Refusal>, notes: Notes) -> Decision {
    let mut decision = to_decision(outcome);
    if !caller.scopes.rejected.is_empty() {
        let listed: Vec<String> = caller
            .scopes
            .rejected
            .iter()
            .map(|(scope, error)| format!("`{scope}` ({error})"))
            .collect();
        decision = decision.with_finding(
            refusal::MALFORMED_SCOPE,
            Severity::Low,
            &truncate(format!("ignored scopes: {}", listed.join("; ")), MAX_TEXT),
        );
    }
    let ignored = caller.ignored_system_scopes();
    if ignored > 0 {
        decision = decision.with_finding(
            refusal::SYSTEM_SCOPE,
            Severity::Medium,
            &format!(
                "ignored {ignored} `system/` scope(s) of client `{}`, which is not a backend client",
                truncate(caller.principal.client_id.clone(), 128)
            ),
        );
    }
    if caller.break_glass.is_some() {
        decision = break_glass_finding(decision, caller, &notes);
    }
    decision
}

fn to_decision(outcome: Result<(), Refusal>) -> Decision {
    match outcome {
        Ok(()) => Decision::allow(),
        Err(refused) => {
            let message = truncate(refused.message, MAX_TEXT);
            // Reading another patient's data, or labelled data, or changing another
            // patient's record, is what an intruder with a stolen token tries first; the
            // audit report sorts these to the top.
            let severity = match refused.rule {
                refusal::RESPONSE_COMPARTMENT
                | refusal::SECURITY_LABEL
                | refusal::BREAK_GLASS
                | refusal::STORED_OWNER => Severity::High,
                _ => Severity::Medium,
            };
            Decision::deny(refused.status, refused.rule, &message).with_finding(
                refused.rule,
                severity,
                &message,
            )
        }
    }
}

/// Break-the-glass is always audited as a security alert (DICOM 110113 / 110127
/// "Emergency Override Started"): high when declared, critical when it lifted a refusal.
fn break_glass_finding(decision: Decision, caller: &Caller<'_>, notes: &Notes) -> Decision {
    let subject = truncate(caller.principal.subject.clone(), 128);
    if notes.lifted.is_empty() {
        return decision
            .with_finding(
                refusal::BREAK_GLASS,
                Severity::High,
                &format!("break-the-glass declared by `{subject}`; nothing was lifted"),
            )
            .with_risk(60);
    }
    decision
        .with_finding(
            refusal::BREAK_GLASS,
            Severity::Critical,
            &truncate(
                format!(
                    "break-the-glass by `{subject}` lifted: {}",
                    notes.lifted.join("; ")
                ),
                MAX_TEXT,
            ),
        )
        .with_risk(90)
}

ehrgate_sdk::export_policy!(LeastPrivilege);
