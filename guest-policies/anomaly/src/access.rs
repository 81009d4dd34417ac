//! What the detectors judge: who is asking, which patients the request touches, and which
//! of them the care-team file explains. Built once per request.

use ehrgate_sdk::keys::state_key;
use ehrgate_sdk::{Principal, Request};

use crate::config::Config;

/// Patients counted per request by the detectors that keep state. A Bundle may name many;
/// past this the rest are not counted, which keeps the host calls per request bounded (and a
/// 64-patient bundle is far beyond every default threshold anyway). The checks that need no
/// state (restricted patients, self-lookup, care relationship) see every patient, so padding
/// a request cannot hide one from them.
pub const MAX_COUNTED_PATIENTS: usize = 64;

/// One request as the detectors see it.
pub struct Access<'a> {
    pub request: &'a Request,
    pub principal: &'a Principal,
    /// The caller's identities as the config may name them: `fhirUser` as the token has it,
    /// its relative `Type/id` form when the token has an absolute URL, then the subject.
    pub identities: Vec<&'a str>,
    /// `fhirUser` as a relative `Type/id` reference.
    pub fhir_user: Option<&'a str>,
    /// The request's patients and its Bundle entries', unique and sorted.
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
        let mut identities = Vec::with_capacity(3);
        let fhir_user = principal.fhir_user.as_deref().map(relative_reference);
        if let Some(token_form) = &principal.fhir_user {
            identities.push(token_form.as_str());
        }
        if let Some(relative) = fhir_user.filter(|r| Some(*r) != principal.fhir_user.as_deref()) {
            identities.push(relative);
        }
        identities.push(principal.subject.as_str());

        let mut patients: Vec<&str> = request.patients.iter().map(String::as_str).collect();
        for entry in &request.entries {
            patients.extend(entry.patients.iter().map(String::as_str));
        }
        patients.sort_unstable();
        patients.dedup();

        let related = patients
            .iter()
            .map(|patient| config.care_teams.related(&identities, patient))
            .collect();
        let is_patient_user = fhir_user
            .is_some_and(|user| user.starts_with("Patient/") || user.starts_with("RelatedPerson/"));
        Access {
            request,
            principal,
            identities,
            fhir_user,
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

    /// The patients the stateful detectors count: the first [`MAX_COUNTED_PATIENTS`].
    pub fn counted_patients(&self) -> &[&'a str] {
        &self.patients[..self.patients.len().min(MAX_COUNTED_PATIENTS)]
    }

    /// The state key of `kind` for this caller. Subjects are unique per issuer only, so the
    /// issuer (configured, not free text) is part of the key.
    pub fn user_key(&self, kind: &str) -> String {
        state_key(
            &format!("{kind}:{}", self.principal.issuer),
            &self.principal.subject,
        )
    }
}

/// `Type/id` of a reference that may be an absolute URL (SMART App Launch: `fhirUser` is
/// "a relative or absolute URL"): `https://ehr.example/fhir/Practitioner/7` becomes
/// `Practitioner/7`; a relative reference, or anything else, is returned as it is.
pub fn relative_reference(reference: &str) -> &str {
    let Some((scheme, rest)) = reference.split_once("://") else {
        return reference;
    };
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return reference;
    }
    let path = rest.split(['?', '#']).next().unwrap_or(rest);
    let mut segments = path.rsplitn(3, '/');
    match (segments.next(), segments.next(), segments.next()) {
        (Some(id), Some(kind), Some(_))
            if !id.is_empty() && ehrgate_sdk::fhir::is_resource_type(kind) =>
        {
            path.get(path.len() - id.len() - 1 - kind.len()..)
                .unwrap_or(reference)
        }
        _ => reference,
    }
}

#[cfg(test)]
mod tests {
    use super::relative_reference;

    #[test]
    fn absolute_fhir_users_become_relative_references() {
        assert_eq!(relative_reference("Practitioner/7"), "Practitioner/7");
        assert_eq!(
            relative_reference("https://ehr.example/fhir/Practitioner/7"),
            "Practitioner/7"
        );
        assert_eq!(
            relative_reference("https://ehr.example/fhir/Patient/pat-555"),
            "Patient/pat-555"
        );
        assert_eq!(
            relative_reference("HTTP://ehr.example/Patient/1?x=y"),
            "Patient/1"
        );
        // Not a FHIR resource URL: left as written, so it matches nothing it should not.
        assert_eq!(
            relative_reference("https://idp.example/users/7"),
            "https://idp.example/users/7"
        );
        assert_eq!(relative_reference("urn:uuid:1234"), "urn:uuid:1234");
        assert_eq!(
            relative_reference("https://ehr.example/Patient/"),
            "https://ehr.example/Patient/"
        );
    }
}
