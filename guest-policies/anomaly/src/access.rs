//! What the detectors judge: who is asking, which patients the request touches, and which
//! of them the care-team file explains. Built once per request.

use ehrgate_sdk::{Principal, Request};

use crate::config::Config;

/// Patients considered per request. A Bundle may name many; past this the rest are not
/// counted, which keeps the host calls per request bounded (and a 64-patient bundle is far
/// beyond every default threshold anyway).
const MAX_PATIENTS: usize = 64;

/// One request as the detectors see it.
pub struct Access<'a> {
    pub request: &'a Request,
    pub principal: &'a Principal,
    /// The caller's identities as the config may name them: `fhirUser`, then subject.
    pub identities: Vec<&'a str>,
    /// The request's patients and its Bundle entries', unique, at most [`MAX_PATIENTS`].
    pub patients: Vec<&'a str>,
    /// Whether the caller declared break-the-glass (purpose of use `BTG`, or a reason).
    pub break_glass: bool,
    /// Whether the caller is a patient or a patient's representative (a portal app), to
    /// whom staff detectors do not apply.
    pub is_patient_user: bool,
    /// For each of `patients`: whether the care-team file relates the caller to it. All
    /// false when there is no care-team file.
    pub related: Vec<bool>,
}

impl<'a> Access<'a> {
    pub fn new(config: &Config, request: &'a Request, principal: &'a Principal) -> Self {
        let mut identities = Vec::with_capacity(2);
        if let Some(fhir_user) = &principal.fhir_user {
            identities.push(fhir_user.as_str());
        }
        identities.push(principal.subject.as_str());

        let mut patients: Vec<&str> = request.patients.iter().map(String::as_str).collect();
        for entry in &request.entries {
            patients.extend(entry.patients.iter().map(String::as_str));
        }
        patients.sort_unstable();
        patients.dedup();
        patients.truncate(MAX_PATIENTS);

        let related = patients
            .iter()
            .map(|patient| config.care_teams.related(&identities, patient))
            .collect();
        let is_patient_user = principal
            .fhir_user
            .as_deref()
            .is_some_and(|user| user.starts_with("Patient/") || user.starts_with("RelatedPerson/"));
        Access {
            request,
            principal,
            identities,
            patients,
            break_glass: principal.has_purpose("BTG") || request.break_glass_reason.is_some(),
            is_patient_user,
            related,
        }
    }

    /// Whether the caller holds any of `roles`.
    pub fn has_any_role(&self, roles: &[String]) -> bool {
        roles.iter().any(|role| self.principal.has_role(role))
    }

    /// The subject, which keys the per-user state.
    pub fn subject(&self) -> &str {
        &self.principal.subject
    }
}
