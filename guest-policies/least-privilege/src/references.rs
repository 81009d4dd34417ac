//! Where the references of a written resource point, as far as the gateway can tell before
//! the server resolves them (R4 references.html, http.html#trules). A patient-bound write
//! must keep every patient reference of its compartment elements on the launch patient, so
//! a reference the gateway cannot place fails closed: a conditional reference
//! (`Patient?identifier=...`, resolved by a search at the server), a `urn:` placeholder no
//! entry of the Bundle carries, a contained reference, a path starting with `/`, an
//! identifier-only (logical) reference, or anything else that is not a literal reference.

use ehrgate_sdk::fhir::{self, JsonTree};
use ehrgate_sdk::{Entry, Interaction};
use serde_json::Value;

/// Where one reference points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Points<'a> {
    /// `Patient/[id]`, relative or absolute, or a Bundle entry that writes that Patient.
    Patient(&'a str),
    /// A literal reference to a resource of another type.
    Elsewhere,
    /// Not knowable here; the text says why (never the reference itself, which may carry an
    /// identifier such as a record number).
    Unknown(&'static str),
}

/// The entries of the batch or transaction a written resource is part of, to resolve the
/// `urn:uuid:` / `urn:oid:` placeholders its `fullUrl`s declare (R4 bundle.html#references).
#[derive(Default)]
pub struct Bundle<'a> {
    entries: Vec<(&'a str, &'a Entry)>,
}

impl<'a> Bundle<'a> {
    /// The entries of `bundle` (the parsed request body) that declare a `fullUrl`, with the
    /// gateway's classification of each (`entries`, in the same order).
    pub fn new(bundle: &'a Value, entries: &'a [Entry]) -> Self {
        let declared = bundle
            .member("entry")
            .and_then(JsonTree::items)
            .into_iter()
            .flatten()
            .zip(entries)
            .filter_map(|(entry, classified)| {
                let full_url = entry.member("fullUrl").and_then(JsonTree::text)?;
                Some((full_url, classified))
            })
            .collect();
        Bundle { entries: declared }
    }

    /// The one entry that declares `url`; `None` when none does, or several do (which one
    /// a server picks is not knowable).
    fn resolve(&self, url: &str) -> Option<&'a Entry> {
        let mut declaring = self.entries.iter().filter(|(full_url, _)| *full_url == url);
        match (declaring.next(), declaring.next()) {
            (Some((_, entry)), None) => Some(*entry),
            _ => None,
        }
    }
}

/// Where the reference string `reference` points.
pub fn judge_text<'a>(reference: &'a str, bundle: Option<&Bundle<'a>>) -> Points<'a> {
    if reference.contains('?') {
        return Points::Unknown("a conditional reference, which the server resolves by a search");
    }
    if reference.starts_with('#') {
        return Points::Unknown("a reference to a contained resource");
    }
    if reference.starts_with('/') {
        return Points::Unknown("a reference starting with `/`");
    }
    if reference.starts_with("urn:") {
        let Some(entry) = bundle.and_then(|bundle| bundle.resolve(reference)) else {
            return Points::Unknown(
                "a `urn:` reference that no entry of the Bundle declares (or several do)",
            );
        };
        return match (entry.resource_type.as_deref(), entry.interaction) {
            (Some("Patient"), Interaction::Update) => entry.resource_id.as_deref().map_or(
                Points::Unknown("a reference to a Patient the Bundle writes"),
                Points::Patient,
            ),
            (Some("Patient"), _) => Points::Unknown("a reference to a Patient the Bundle creates"),
            (Some(_), Interaction::Create | Interaction::Update) => Points::Elsewhere,
            _ => Points::Unknown("a `urn:` reference to a Bundle entry that writes no resource"),
        };
    }
    match fhir::parse_literal_reference(reference) {
        Some(("Patient", id)) => Points::Patient(id),
        Some(_) => Points::Elsewhere,
        None => Points::Unknown("a reference that is not a literal `Type/id`"),
    }
}

/// Where a Reference element points: `None` when it points nowhere (only a `display`).
pub fn judge<'a>(reference: &'a Value, bundle: Option<&Bundle<'a>>) -> Option<Points<'a>> {
    match reference {
        Value::Null => None,
        Value::Object(members) => match members.get("reference") {
            Some(Value::String(text)) => Some(judge_text(text, bundle)),
            Some(_) => Some(Points::Unknown("a `reference` that is not a string")),
            None if members.contains_key("identifier") => Some(Points::Unknown(
                "a logical reference (an identifier only), which the server may resolve",
            )),
            None => None,
        },
        _ => Some(Points::Unknown("a value that is not a Reference")),
    }
}

/// Calls `found` with every value at the end of `path` (dot-separated element names) from
/// `value`, descending into arrays at every step.
pub fn values_at<'v>(value: &'v Value, path: &[&str], found: &mut dyn FnMut(&'v Value)) {
    if let Value::Array(items) = value {
        for item in items {
            values_at(item, path, found);
        }
        return;
    }
    match path.split_first() {
        None => found(value),
        Some((first, rest)) => {
            if let Some(child) = value.get(first) {
                values_at(child, rest, found);
            }
        }
    }
}

/// The element paths of `resource_type` whose references place a resource with a patient:
/// the compartment paths, or for the few types outside the compartment that name a patient
/// (Task, Device, Binary, ...), those elements.
pub fn patient_paths(resource_type: &str) -> &'static [&'static str] {
    match fhir::patient_reference_paths(resource_type) {
        [] => fhir::patient_link_paths(resource_type),
        paths => paths,
    }
}

/// Every patient reference of a resource's patient elements (and of its contained
/// resources'), as `(element path, where it points)`. A contained Patient counts as a
/// patient of its own (`Unknown`): it is nobody the gateway knows.
pub fn resource_references<'a>(
    resource_type: &str,
    resource: &'a Value,
    bundle: Option<&Bundle<'a>>,
    found: &mut dyn FnMut(&'static str, Points<'a>),
) {
    for path in patient_paths(resource_type) {
        let segments: Vec<&str> = path.split('.').collect();
        values_at(resource, &segments, &mut |reference| {
            if let Some(points) = judge(reference, bundle) {
                found(path, points);
            }
        });
    }
    let contained = resource.get("contained").and_then(Value::as_array);
    for inner in contained.into_iter().flatten() {
        let Some(inner_type) = inner.get("resourceType").and_then(Value::as_str) else {
            found(
                "contained",
                Points::Unknown("a contained resource without a type"),
            );
            continue;
        };
        if inner_type == "Patient" {
            found("contained", Points::Unknown("a contained Patient"));
        }
        // Contained resources do not contain others (R4 references.html#contained).
        for path in patient_paths(inner_type) {
            let segments: Vec<&str> = path.split('.').collect();
            values_at(inner, &segments, &mut |reference| {
                if let Some(points) = judge(reference, bundle) {
                    found("contained", points);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reference_strings() {
        let cases: &[(&str, Points<'_>)] = &[
            ("Patient/123", Points::Patient("123")),
            ("Patient/123/_history/2", Points::Patient("123")),
            (
                "https://ehr.example/fhir/Patient/123",
                Points::Patient("123"),
            ),
            ("Practitioner/p1", Points::Elsewhere),
            ("Patient?identifier=mrn|456", Points::Unknown("")),
            ("/Patient/456", Points::Unknown("")),
            ("#p1", Points::Unknown("")),
            (
                "urn:uuid:9b3c0d6e-1111-4c1a-9d61-7a3c54a2a0f1",
                Points::Unknown(""),
            ),
            ("Patient/456 ", Points::Unknown("")),
            (
                "https://ehr.example/Patient/123/../456",
                Points::Unknown(""),
            ),
            ("mailto:x@example.org", Points::Unknown("")),
            ("456", Points::Unknown("")),
        ];
        for (reference, expected) in cases {
            let found = judge_text(reference, None);
            match expected {
                Points::Unknown(_) => assert!(matches!(found, Points::Unknown(_)), "{reference}"),
                _ => assert_eq!(found, *expected, "{reference}"),
            }
        }
    }

    #[test]
    fn reference_elements() {
        assert_eq!(judge(&json!({"display": "Dr. A"}), None), None);
        assert!(matches!(
            judge(
                &json!({"identifier": {"system": "mrn", "value": "456"}}),
                None
            ),
            Some(Points::Unknown(_))
        ));
        assert!(matches!(
            judge(&json!("Patient/1"), None),
            Some(Points::Unknown(_))
        ));
        assert_eq!(
            judge(&json!({"reference": "Patient/1"}), None),
            Some(Points::Patient("1"))
        );
    }

    #[test]
    fn bundle_placeholders_resolve_to_what_their_entry_writes() {
        let entry = |interaction, resource_type: &str, id: Option<&str>| Entry {
            method: "POST".into(),
            path: format!("/{resource_type}"),
            interaction,
            resource_type: Some(resource_type.into()),
            resource_id: id.map(Into::into),
            operation: None,
            params: Vec::new(),
            patients: Vec::new(),
        };
        let entries = [
            entry(Interaction::Update, "Patient", Some("123")),
            entry(Interaction::Create, "Patient", None),
            entry(Interaction::Create, "Practitioner", None),
            entry(Interaction::Create, "Device", None),
            entry(Interaction::Create, "Device", None),
        ];
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:a"}, {"fullUrl": "urn:uuid:b"}, {"fullUrl": "urn:uuid:c"},
            {"fullUrl": "urn:uuid:d"}, {"fullUrl": "urn:uuid:d"}
        ]});
        let bundle = Bundle::new(&bundle, &entries);
        let judged = |reference| judge_text(reference, Some(&bundle));
        assert_eq!(judged("urn:uuid:a"), Points::Patient("123"));
        assert!(matches!(judged("urn:uuid:b"), Points::Unknown(_)));
        assert_eq!(judged("urn:uuid:c"), Points::Elsewhere);
        assert!(matches!(judged("urn:uuid:d"), Points::Unknown(_)));
        assert!(matches!(judged("urn:uuid:e"), Points::Unknown(_)));
    }

    #[test]
    fn contained_resources_count() {
        let report = json!({
            "resourceType": "DiagnosticReport",
            "subject": {"reference": "Patient/123"},
            "contained": [
                {"resourceType": "Observation", "id": "c1", "subject": {"reference": "Patient/456"}},
                {"resourceType": "Patient", "id": "p1"}
            ]
        });
        let mut found = Vec::new();
        resource_references("DiagnosticReport", &report, None, &mut |path, points| {
            found.push((path, points));
        });
        assert_eq!(found.len(), 3);
        assert_eq!(found[0], ("subject", Points::Patient("123")));
        assert_eq!(found[1], ("contained", Points::Patient("456")));
        assert_eq!(found[2].0, "contained");
        assert!(matches!(found[2].1, Points::Unknown(_)));
    }
}
