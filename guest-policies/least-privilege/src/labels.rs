//! Security labels (R4 security-labels.html): a returned resource whose `meta.security`
//! carries a restricting confidentiality code (v3-Confidentiality R, V) or a sensitivity
//! code (v3-ActCode ETH, HIV, PSY, SDV, ...) reaches only callers with a configured role or
//! purpose of use, or a break-the-glass that lifts labels. The codes never appear in a
//! message: that a record is labelled HIV is itself protected information.

use std::fmt;

use ehrgate_sdk::fhir::JsonTree;

use crate::document::Node;

use crate::caller::{Caller, Notes};
use crate::refusal::{self, Refusal};

const CONFIDENTIALITY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

/// What kind of restricting label a resource carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Restriction {
    Confidentiality,
    Sensitivity,
}

/// The most telling restricting label of `resource`, if any.
fn restriction(caller: &Caller<'_>, resource: &Node<'_>) -> Option<Restriction> {
    let labels = caller.config.security_labels.confidentiality_codes.iter();
    let sensitivity = &caller.config.security_labels.sensitivity_codes;
    let security = resource.member("meta")?.member("security")?.items()?;
    let mut found = None;
    for label in security {
        let Some(code) = label.member("code").and_then(JsonTree::text) else {
            continue;
        };
        let system = label.member("system").and_then(JsonTree::text);
        // Confidentiality codes are single letters that other systems reuse; they count in
        // their own system, or with none. Sensitivity codes count in any system.
        let confidential = system.is_none_or(|system| system == CONFIDENTIALITY_SYSTEM)
            && labels.clone().any(|listed| listed == code);
        if confidential {
            return Some(Restriction::Confidentiality);
        }
        if sensitivity.iter().any(|listed| listed == code) {
            found = Some(Restriction::Sensitivity);
        }
    }
    found
}

/// Checks one returned resource's labels against the caller.
pub fn check(
    caller: &Caller<'_>,
    resource: &Node<'_>,
    describe: &dyn fmt::Display,
    notes: &mut Notes,
) -> Result<(), Refusal> {
    let Some(restriction) = restriction(caller, resource) else {
        return Ok(());
    };
    let config = &caller.config.security_labels;
    let permitted = caller.has_any_role(&config.roles)
        || caller
            .principal
            .purpose_of_use
            .iter()
            .any(|purpose| config.purposes.contains(purpose));
    if permitted {
        return Ok(());
    }
    let kind = match restriction {
        Restriction::Confidentiality => "a restricting confidentiality label",
        Restriction::Sensitivity => "a sensitivity label",
    };
    let refused = Refusal::new(
        refusal::SECURITY_LABEL,
        format!(
            "{describe} carries {kind} that the caller's roles and purpose of use do not cover"
        ),
    );
    match caller.break_glass {
        Some(glass) if glass.lifts_labels => {
            notes.lifted.push(refused.message);
            Ok(())
        }
        _ => Err(refused),
    }
}
