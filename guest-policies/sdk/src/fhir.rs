//! FHIR R4 (4.0.1) facts a policy needs: resource type names, which search parameters put a
//! type in the patient compartment, which elements of a returned resource reference its
//! patient, billing types, and reading references.
//!
//! The tables and the reference parser are the `ehrgate-fhir` crate, which the gateway uses
//! too: the host fills `request.patients` with exactly the code a policy judges with.

pub use ehrgate_fhir::reference::{self, Oddity, Reference, Target, mentioned_ids};
pub use ehrgate_fhir::*;
use serde_json::Value;

/// Read access to a parsed JSON document, so the helpers below work on a
/// `serde_json::Value` and on a policy's own lighter tree alike (a policy that reads large
/// responses may parse them into borrowed strings without allocating).
pub trait JsonTree: Sized {
    /// The member `name` of an object; `None` for anything else.
    fn member(&self, name: &str) -> Option<&Self>;
    /// The text of a string.
    fn text(&self) -> Option<&str>;
    /// The items of an array.
    fn items(&self) -> Option<&[Self]>;
}

impl JsonTree for Value {
    fn member(&self, name: &str) -> Option<&Self> {
        self.get(name)
    }

    fn text(&self) -> Option<&str> {
        self.as_str()
    }

    fn items(&self) -> Option<&[Self]> {
        self.as_array().map(Vec::as_slice)
    }
}

/// A relative literal reference (R4 references.html#literal) split into resource type and
/// id: `Observation/obs-1` or `Observation/obs-1/_history/2` (the version is dropped). The
/// type must be an R4 resource type and the ids must follow the `id` rule. Absolute URLs,
/// contained references (`#x`), `urn:` references and anything else give `None`: where
/// they point is not knowable from the string alone (an absolute URL may name another
/// server). See [`patient_id_of_reference`] for the patient case, which also reads absolute
/// `http(s)` URLs.
///
/// ```
/// use ehrgate_sdk::fhir::parse_reference;
///
/// assert_eq!(parse_reference("Practitioner/dr-adams"), Some(("Practitioner", "dr-adams")));
/// assert_eq!(parse_reference("Observation/hb-1/_history/3"), Some(("Observation", "hb-1")));
/// assert_eq!(parse_reference("https://ehr.example/fhir/Patient/123"), None);
/// assert_eq!(parse_reference("#contained-med"), None);
/// assert_eq!(parse_reference("Patient/123 "), None); // not a valid id
/// ```
pub fn parse_reference(reference: &str) -> Option<(&str, &str)> {
    match Reference::parse(reference) {
        Reference::Relative(target) => Some((target.resource_type, target.id)),
        _ => None,
    }
}

/// The patient id of a reference string: `Patient/123`, `Patient/123/_history/2`, or an
/// absolute `http(s)` URL ending in one of these. Contained (`#x`), logical and other-type
/// references name no patient.
///
/// ```
/// use ehrgate_sdk::fhir::patient_id_of_reference;
///
/// assert_eq!(patient_id_of_reference("Patient/123"), Some("123"));
/// assert_eq!(patient_id_of_reference("https://ehr.example/fhir/Patient/123"), Some("123"));
/// assert_eq!(patient_id_of_reference("Group/cardiology-ward"), None);
/// ```
pub fn patient_id_of_reference(reference: &str) -> Option<&str> {
    match parse_literal_reference(reference)? {
        ("Patient", id) => Some(id),
        _ => None,
    }
}

/// A literal reference (R4 references.html#literal) split into resource type and id:
/// relative as [`parse_reference`] reads it, or an absolute `http(s)` URL whose path ends
/// in `Type/id` or `Type/id/_history/vid`. Anything a server could resolve some other way
/// gives `None`: conditional references (`Patient?identifier=...`), `urn:` placeholders,
/// contained references (`#x`), a leading `/`, `.` or `..` segments, queries and fragments.
///
/// ```
/// use ehrgate_sdk::fhir::parse_literal_reference;
///
/// assert_eq!(parse_literal_reference("Patient/123"), Some(("Patient", "123")));
/// assert_eq!(
///     parse_literal_reference("https://ehr.example/fhir/Observation/o1/_history/2"),
///     Some(("Observation", "o1"))
/// );
/// assert_eq!(parse_literal_reference("/Patient/123"), None);
/// assert_eq!(parse_literal_reference("Patient?identifier=mrn|1"), None);
/// assert_eq!(parse_literal_reference("https://ehr.example/Patient/1/../2"), None);
/// ```
pub fn parse_literal_reference(reference: &str) -> Option<(&str, &str)> {
    let target = Reference::parse(reference).target()?;
    Some((target.resource_type, target.id))
}

/// Every patient id a resource's compartment elements reference (see
/// [`patient_reference_paths`]), in document order, with repeats. For a Patient, its own
/// `id` comes first, then its `link.other` references.
///
/// ```
/// use ehrgate_sdk::fhir::resource_patients;
///
/// let observation = serde_json::json!({
///     "resourceType": "Observation",
///     "subject": {"reference": "Patient/123"},
///     "performer": [{"reference": "Practitioner/dr-adams"}, {"reference": "Patient/123"}]
/// });
/// assert_eq!(resource_patients("Observation", &observation), ["123", "123"]);
/// ```
pub fn resource_patients<'a, J: JsonTree>(resource_type: &str, resource: &'a J) -> Vec<&'a str> {
    let mut patients = Vec::new();
    if resource_type == "Patient"
        && let Some(id) = resource.member("id").and_then(J::text)
    {
        patients.push(id);
    }
    for path in patient_reference_paths(resource_type) {
        visit_references(resource, path, &mut |id| patients.push(id));
    }
    patients
}

/// Whether a resource belongs to patient `patient_id`'s compartment (R4
/// compartmentdefinition-patient.html: one compartment parameter referencing the patient
/// suffices). Always false for types outside the compartment.
///
/// ```
/// use ehrgate_sdk::fhir::in_patient_compartment;
///
/// let allergy = serde_json::json!({
///     "resourceType": "AllergyIntolerance",
///     "patient": {"reference": "Patient/123"},
///     "recorder": {"reference": "Practitioner/dr-adams"}
/// });
/// assert!(in_patient_compartment("AllergyIntolerance", &allergy, "123"));
/// assert!(!in_patient_compartment("AllergyIntolerance", &allergy, "456"));
/// ```
pub fn in_patient_compartment<J: JsonTree>(
    resource_type: &str,
    resource: &J,
    patient_id: &str,
) -> bool {
    if resource_type == "Patient" && resource.member("id").and_then(J::text) == Some(patient_id) {
        return true;
    }
    let mut found = false;
    for path in patient_reference_paths(resource_type) {
        visit_references(resource, path, &mut |id| found |= id == patient_id);
        if found {
            return true;
        }
    }
    false
}

/// Walks `path` (`performer.actor`) from `value`, descending into arrays at every step, and
/// calls `found` with the patient id of every `reference` at the end.
fn visit_references<'a, J: JsonTree>(value: &'a J, path: &str, found: &mut dyn FnMut(&'a str)) {
    if let Some(items) = value.items() {
        for item in items {
            visit_references(item, path, found);
        }
        return;
    }
    match path.split_once('.') {
        Some((first, rest)) => {
            if let Some(child) = value.member(first) {
                visit_references(child, rest, found);
            }
        }
        None => {
            if let Some(references) = value.member(path) {
                match references.items() {
                    Some(items) => {
                        for reference in items {
                            visit_reference(reference, found);
                        }
                    }
                    None => visit_reference(references, found),
                }
            }
        }
    }
}

fn visit_reference<'a, J: JsonTree>(reference: &'a J, found: &mut dyn FnMut(&'a str)) {
    if let Some(id) = reference
        .member("reference")
        .and_then(J::text)
        .and_then(patient_id_of_reference)
    {
        found(id);
    }
}
#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn references() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Patient/123", Some("123")),
            ("Patient/123/_history/4", Some("123")),
            ("https://ehr.example/fhir/Patient/a-1", Some("a-1")),
            ("HTTP://ehr.example/Patient/7", Some("7")),
            ("Patient/", None),
            ("Patient/1/2", None),
            ("Patient/a_b", None),
            ("Group/1", None),
            ("#contained", None),
            ("urn:uuid:Patient/1", None),
            ("123", None),
        ];
        for (reference, expected) in cases {
            assert_eq!(patient_id_of_reference(reference), *expected, "{reference}");
        }
    }

    #[test]
    fn relative_references() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("Patient/123", Some(("Patient", "123"))),
            ("Observation/a.b-1", Some(("Observation", "a.b-1"))),
            ("Observation/1/_history/2", Some(("Observation", "1"))),
            ("Observation/1/_history/", None),
            ("Observation/1/_history", None),
            ("Observation/1/_history/2/x", None),
            ("Observation/1/history/2", None),
            ("Observation/1/", None),
            ("Observation/", None),
            ("Observation", None),
            ("observation/1", None),
            ("Foo/1", None),
            ("/Patient/1", None),
            ("Patient/1?x=y", None),
            ("https://ehr.example/fhir/Patient/1", None),
            ("#med-1", None),
            ("urn:uuid:6e7b0c5a-0000-4000-8000-000000000000", None),
            ("", None),
        ];
        for (reference, expected) in cases {
            assert_eq!(parse_reference(reference), *expected, "{reference}");
        }
        // The `id` rule caps ids at 64 characters.
        let longest = "7".repeat(64);
        let reference = format!("Patient/{longest}");
        assert_eq!(
            parse_reference(&reference),
            Some(("Patient", longest.as_str()))
        );
        assert_eq!(parse_reference(&format!("{reference}7")), None);
    }

    #[test]
    fn patients_of_resources() {
        let procedure = json!({
            "resourceType": "Procedure",
            "subject": {"reference": "Patient/1"},
            "performer": [
                {"actor": {"reference": "Practitioner/9"}},
                {"actor": {"reference": "Patient/2"}}
            ]
        });
        assert_eq!(resource_patients("Procedure", &procedure), ["1", "2"]);
        assert!(in_patient_compartment("Procedure", &procedure, "2"));
        assert!(!in_patient_compartment("Procedure", &procedure, "9"));

        let coverage = json!({
            "resourceType": "Coverage",
            "beneficiary": {"reference": "Patient/1"},
            "payor": [{"reference": "Organization/ins"}, {"reference": "Patient/3"}]
        });
        assert_eq!(resource_patients("Coverage", &coverage), ["1", "3"]);

        let patient = json!({
            "resourceType": "Patient",
            "id": "1",
            "link": [{"other": {"reference": "Patient/5"}, "type": "seealso"}]
        });
        assert_eq!(resource_patients("Patient", &patient), ["1", "5"]);

        let practitioner = json!({"resourceType": "Practitioner", "id": "1"});
        assert!(resource_patients("Practitioner", &practitioner).is_empty());
        assert!(!in_patient_compartment("Practitioner", &practitioner, "1"));

        // A subject element of the wrong shape names nobody rather than failing.
        let odd = json!({"resourceType": "Observation", "subject": "Patient/1"});
        assert!(resource_patients("Observation", &odd).is_empty());
    }

    #[test]
    fn literal_references() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("Patient/123", Some(("Patient", "123"))),
            (
                "https://ehr.example/fhir/Patient/123",
                Some(("Patient", "123")),
            ),
            (
                "HTTP://ehr.example/Observation/o1/_history/2",
                Some(("Observation", "o1")),
            ),
            ("https://ehr.example/Patient/123/_history", None),
            ("https://ehr.example/fhir/Patient/123?x=1", None),
            ("https://ehr.example/fhir/Patient/123#p", None),
            ("https://ehr.example/fhir/../Patient/123", None),
            ("https://ehr.example//Patient/123", None),
            ("https://Patient/123", None),
            ("ftp://ehr.example/Patient/123", None),
            ("urn:uuid:6e7b0c5a-0000-4000-8000-000000000000", None),
            ("/Patient/123", None),
            ("Patient?identifier=mrn|1", None),
            ("#p1", None),
        ];
        for (reference, expected) in cases {
            assert_eq!(parse_literal_reference(reference), *expected, "{reference}");
        }
    }
}
