//! Detectors about the patient being opened: VIP / restricted patients, self-lookup, and
//! access without a care relationship.

use ehrgate_sdk::Severity;

use super::list;
use crate::access::Access;
use crate::config::{Config, SelfLookup, Vip};
use crate::score::Signal;

/// A listed patient opened without a care relationship. With one, the access is recorded at
/// severity info and weighs nothing: the VIP's own care team must be able to work.
pub fn vip(config: &Vip, access: &Access) -> Option<Signal> {
    let mut explained = Vec::new();
    let mut unexplained = Vec::new();
    for (patient, related) in access.patients.iter().zip(&access.related) {
        if config.patients.iter().any(|listed| listed == patient) {
            if *related {
                explained.push(*patient);
            } else {
                unexplained.push(*patient);
            }
        }
    }
    if !unexplained.is_empty() {
        return Some(Signal {
            rule_id: "anomaly.vip",
            severity: Severity::High,
            weight: config.weight,
            detail: format!(
                "restricted patient {} without a care relationship on file",
                list(&unexplained, 4)
            ),
        });
    }
    (!explained.is_empty()).then(|| Signal {
        rule_id: "anomaly.vip",
        severity: Severity::Info,
        weight: 0,
        detail: format!(
            "restricted patient {} by the care team",
            list(&explained, 4)
        ),
    })
}

/// The caller's own record: by the configured staff-to-patient mapping, or (with
/// `match_ids`) a non-patient `fhirUser` whose id is the patient's.
pub fn self_lookup(config: &SelfLookup, access: &Access) -> Option<Signal> {
    let own_records: Vec<&str> = access
        .identities
        .iter()
        .filter_map(|identity| config.staff_patients.get(*identity))
        .flatten()
        .map(String::as_str)
        .collect();
    let same_id = access
        .fhir_user
        .filter(|_| config.match_ids)
        .and_then(|user| user.split_once('/'))
        .map(|(_, id)| id);
    let found = access
        .patients
        .iter()
        .find(|patient| own_records.contains(patient) || same_id == Some(**patient))?;
    Some(Signal {
        rule_id: "anomaly.self-lookup",
        severity: Severity::High,
        weight: config.weight,
        detail: format!("the caller's own record ({found})"),
    })
}

/// Patients the care-team file does not relate to the caller (Fabbri & LeFevre: accesses a
/// care relationship explains need no review; the unexplained rest does). Not raised for
/// roles exempt from the check, for break-the-glass accesses (the emergency declaration is
/// the explanation, and the break-the-glass detector watches its rate), or without a file.
pub fn no_care_relationship(config: &Config, access: &Access) -> Option<Signal> {
    if config.care_teams.is_empty()
        || access.break_glass
        || access.has_any_role(&config.care_relationship.exempt_roles)
    {
        return None;
    }
    let unexplained: Vec<&str> = access
        .patients
        .iter()
        .zip(&access.related)
        .filter(|(_, related)| !**related)
        .map(|(patient, _)| *patient)
        .collect();
    (!unexplained.is_empty()).then(|| Signal {
        rule_id: "anomaly.no-care-relationship",
        severity: Severity::Medium,
        weight: config.care_relationship.weight,
        detail: format!(
            "no care relationship on file with {}",
            list(&unexplained, 4)
        ),
    })
}
