//! Where the references of a written resource point, as far as the gateway can tell before
//! the server resolves them (R4 references.html, http.html#trules), read with the parser
//! the gateway itself uses (`ehrgate_sdk::fhir::Reference`). A patient-bound write must keep
//! every patient reference on the launch patient, so a reference the gateway cannot place
//! fails closed: a conditional reference (`Patient?identifier=...`, resolved by a search at
//! the server), a `urn:` placeholder no entry of the Bundle carries, a contained reference
//! in a patient element or to nothing contained, an absolute URL on a base that is not one
//! of `own_base_urls`, an identifier-only (logical) reference, and every form R4 does not
//! define (`x/Patient/1`, `Observation/../Patient/1`, `ftp://x/Patient/1`, `/Patient/1`),
//! which lenient servers resolve in their own ways.

use ehrgate_sdk::fhir::{self, JsonTree, Reference};
use ehrgate_sdk::{Entry, Interaction};
use serde_json::Value;

/// How deep a written resource is searched for references: far deeper than any R4 resource
/// nests, so a crafted body cannot make the walk costly (the host uses the same bound).
const MAX_REFERENCE_DEPTH: usize = 64;

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

/// What a reference is resolved against: the Bundle a written resource is part of, and the
/// server's own base URLs (absolute references on them are as good as relative ones).
#[derive(Clone, Copy)]
pub struct Resolver<'a> {
    pub bundle: Option<&'a Bundle<'a>>,
    pub own_bases: &'a [String],
}

impl<'a> Resolver<'a> {
    /// Where the reference string `reference` points.
    pub fn judge_text(&self, reference: &'a str) -> Points<'a> {
        let parsed = Reference::parse(reference);
        if let Some(target) = parsed.local_target(self.own_bases) {
            return if target.resource_type == "Patient" {
                Points::Patient(target.id)
            } else {
                Points::Elsewhere
            };
        }
        match parsed {
            Reference::Absolute { .. } => Points::Unknown(
                "an absolute reference on a base that is not one of the server's own \
                 (`own_base_urls`)",
            ),
            Reference::Conditional { .. } => {
                Points::Unknown("a conditional reference, which the server resolves by a search")
            }
            Reference::Contained(_) => Points::Unknown("a reference to a contained resource"),
            Reference::Placeholder(url) => self.placeholder(url),
            Reference::Odd(oddity) => Points::Unknown(oddity.describe()),
            Reference::Relative(_) => Points::Elsewhere,
        }
    }

    /// Where a Reference element points: `None` when it points nowhere (only a `display`).
    pub fn judge(&self, reference: &'a Value) -> Option<Points<'a>> {
        self.judge_within(reference, &[])
    }

    /// As [`Resolver::judge`], resolving `#id` among `contained` (the resources contained
    /// in the resource the reference is part of).
    pub fn judge_within(&self, reference: &'a Value, contained: &'a [Value]) -> Option<Points<'a>> {
        match reference {
            Value::Null => None,
            Value::Object(members) => match members.get("reference") {
                Some(Value::String(text)) => Some(match Reference::parse(text) {
                    Reference::Contained(id) if !contained.is_empty() => {
                        contained_points(contained, id)
                    }
                    _ => self.judge_text(text),
                }),
                Some(_) => Some(Points::Unknown("a `reference` that is not a string")),
                None if members.contains_key("identifier") => Some(Points::Unknown(
                    "a logical reference (an identifier only), which the server may resolve",
                )),
                None => None,
            },
            _ => Some(Points::Unknown("a value that is not a Reference")),
        }
    }

    /// A `urn:uuid:` / `urn:oid:` placeholder: what the Bundle entry that declares it writes.
    fn placeholder(&self, url: &str) -> Points<'a> {
        let Some(entry) = self.bundle.and_then(|bundle| bundle.resolve(url)) else {
            return Points::Unknown(
                "a `urn:` reference that no entry of the Bundle declares (or several do)",
            );
        };
        match (entry.resource_type.as_deref(), entry.interaction) {
            (Some("Patient"), Interaction::Update) => entry.resource_id.as_deref().map_or(
                Points::Unknown("a reference to a Patient the Bundle writes"),
                Points::Patient,
            ),
            (Some("Patient"), _) => Points::Unknown("a reference to a Patient the Bundle creates"),
            (Some(_), Interaction::Create | Interaction::Update) => Points::Elsewhere,
            _ => Points::Unknown("a `urn:` reference to a Bundle entry that writes no resource"),
        }
    }

    /// Every reference string anywhere in `resource` (extensions, `focus`, `basedOn`,
    /// `hasMember`, contained resources, ...), as `(the element holding it, where it
    /// points)`. A contained reference (`#id`) resolves to the resource's contained resource
    /// of that id: a Patient is nobody the gateway knows, one that is not there is unknown.
    pub fn every_reference(&self, resource: &'a Value, found: &mut dyn FnMut(&'a str, Points<'a>)) {
        let contained = resource.get("contained").and_then(Value::as_array);
        let contained = contained.map(Vec::as_slice).unwrap_or_default();
        self.walk(resource, "", contained, 0, found);
    }

    fn walk(
        &self,
        value: &'a Value,
        element: &'a str,
        contained: &'a [Value],
        depth: usize,
        found: &mut dyn FnMut(&'a str, Points<'a>),
    ) {
        if depth > MAX_REFERENCE_DEPTH {
            found(
                element,
                Points::Unknown("a resource nested too deep to check"),
            );
            return;
        }
        match value {
            Value::Object(members) => {
                if let Some(Value::String(text)) = members.get("reference") {
                    let points = match Reference::parse(text) {
                        Reference::Contained("") => Points::Elsewhere,
                        Reference::Contained(id) => contained_points(contained, id),
                        _ => self.judge_text(text),
                    };
                    found(element, points);
                }
                for (name, child) in members {
                    self.walk(child, name, contained, depth + 1, found);
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(item, element, contained, depth + 1, found);
                }
            }
            _ => {}
        }
    }
}

/// Where `#id` points among a resource's contained resources: a Patient is nobody the
/// gateway knows, a resource of another type names no patient (its own references are
/// judged where it is contained), and one that is not there cannot be placed.
fn contained_points<'a>(contained: &'a [Value], id: &str) -> Points<'a> {
    let target = contained
        .iter()
        .find(|inner| inner.get("id").and_then(Value::as_str) == Some(id));
    match target
        .and_then(|inner| inner.get("resourceType"))
        .and_then(Value::as_str)
    {
        Some("Patient") => Points::Unknown("a reference to a contained Patient"),
        Some(_) => Points::Elsewhere,
        None => Points::Unknown("a reference to a contained resource that is not there"),
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
    resolver: &Resolver<'a>,
    found: &mut dyn FnMut(&'static str, Points<'a>),
) {
    let contained = resource.get("contained").and_then(Value::as_array);
    let contained = contained.map(Vec::as_slice).unwrap_or_default();
    for path in patient_paths(resource_type) {
        let segments: Vec<&str> = path.split('.').collect();
        values_at(resource, &segments, &mut |reference| {
            if let Some(points) = resolver.judge_within(reference, contained) {
                found(path, points);
            }
        });
    }
    for inner in contained {
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
                if let Some(points) = resolver.judge_within(reference, contained) {
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
            // The forms the security review wrote into another patient's record.
            ("x/Patient/456", Points::Unknown("")),
            ("a/b/Patient/456", Points::Unknown("")),
            ("Observation/../Patient/456", Points::Unknown("")),
            ("ftp://x/Patient/456", Points::Unknown("")),
            (
                "https://elsewhere.example/fhir/Patient/456",
                Points::Unknown(""),
            ),
            (
                "https://ehr.example/fhir/x/Patient/456",
                Points::Unknown(""),
            ),
        ];
        let own = ["https://ehr.example/fhir".to_string()];
        let resolver = Resolver {
            bundle: None,
            own_bases: &own,
        };
        for (reference, expected) in cases {
            let found = resolver.judge_text(reference);
            match expected {
                Points::Unknown(_) => assert!(matches!(found, Points::Unknown(_)), "{reference}"),
                _ => assert_eq!(found, *expected, "{reference}"),
            }
        }
    }

    const NOWHERE: Resolver<'static> = Resolver {
        bundle: None,
        own_bases: &[],
    };

    #[test]
    fn reference_elements() {
        assert_eq!(NOWHERE.judge(&json!({"display": "Dr. A"})), None);
        assert!(matches!(
            NOWHERE.judge(&json!({"identifier": {"system": "mrn", "value": "456"}})),
            Some(Points::Unknown(_))
        ));
        assert!(matches!(
            NOWHERE.judge(&json!("Patient/1")),
            Some(Points::Unknown(_))
        ));
        assert_eq!(
            NOWHERE.judge(&json!({"reference": "Patient/1"})),
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
        let resolver = Resolver {
            bundle: Some(&bundle),
            own_bases: &[],
        };
        let judged = |reference| resolver.judge_text(reference);
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
        resource_references(
            "DiagnosticReport",
            &report,
            &NOWHERE,
            &mut |path, points| {
                found.push((path, points));
            },
        );
        assert_eq!(found.len(), 3);
        assert_eq!(found[0], ("subject", Points::Patient("123")));
        assert_eq!(found[1], ("contained", Points::Patient("456")));
        assert_eq!(found[2].0, "contained");
        assert!(matches!(found[2].1, Points::Unknown(_)));
    }

    #[test]
    fn every_reference_anywhere_is_judged_and_contained_ones_resolve() {
        let observation = json!({
            "resourceType": "Observation",
            "subject": {"reference": "Patient/123"},
            "focus": [{"reference": "x/Patient/456"}],
            "hasMember": [{"reference": "Observation/o2"}],
            "performer": [{"reference": "#pr1"}],
            "derivedFrom": [{"reference": "#gone"}],
            "basedOn": [{"reference": "#p1"}],
            "extension": [{"url": "http://x", "valueReference": {"reference": "Patient/789"}}],
            "contained": [
                {"resourceType": "Practitioner", "id": "pr1"},
                {"resourceType": "Patient", "id": "p1"}
            ]
        });
        let mut found = Vec::new();
        NOWHERE.every_reference(&observation, &mut |element, points| {
            found.push((element, points));
        });
        let of = |element: &str| {
            found
                .iter()
                .find(|(name, _)| *name == element)
                .map(|(_, points)| *points)
        };
        assert_eq!(of("subject"), Some(Points::Patient("123")));
        assert!(matches!(of("focus"), Some(Points::Unknown(_))));
        assert_eq!(of("hasMember"), Some(Points::Elsewhere));
        assert_eq!(of("performer"), Some(Points::Elsewhere));
        assert!(matches!(of("derivedFrom"), Some(Points::Unknown(_))));
        assert!(matches!(of("basedOn"), Some(Points::Unknown(_))));
        assert_eq!(of("valueReference"), Some(Points::Patient("789")));
        assert_eq!(found.len(), 7);
    }
}
