//! Cases for FHIR classification: every interaction shape, the rejected shapes and bodies,
//! patient extraction from paths, parameters and bodies, and batch/transaction entries.

use http::Method;
use serde_json::{Value, json};

use super::*;
use crate::request::canonical::canonicalize_target;

use Interaction::{
    Batch, Capabilities, Create, Delete, HistoryInstance, HistorySystem, HistoryType, Operation,
    Other, Patch, Read, SearchSystem, SearchType, Transaction, Update, Vread,
};

const MAX_ENTRIES: usize = 10;

fn run(method: &str, target: &str, body: Option<&str>) -> Result<Classification, Rejection> {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let target = canonicalize_target(target)?;
    classify(&method, &target, body.map(str::as_bytes), MAX_ENTRIES)
}

fn post_bundle(bundle: &Value) -> Result<Classification, Rejection> {
    run("POST", "/", Some(&bundle.to_string()))
}

/// method, target below the FHIR base, interaction, resource type, id, version, operation.
type Shape = (
    &'static str,
    &'static str,
    Interaction,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

#[rustfmt::skip]
const SHAPES: &[Shape] = &[
    // System level
    ("GET", "/", SearchSystem, None, None, None, None),
    ("HEAD", "/?_type=Patient", SearchSystem, None, None, None, None),
    ("DELETE", "/", Other, None, None, None, None),
    ("GET", "/metadata", Capabilities, None, None, None, None),
    ("POST", "/metadata", Other, None, None, None, None),
    ("GET", "/_history", HistorySystem, None, None, None, None),
    ("POST", "/_history", Other, None, None, None, None),
    ("POST", "/_search", SearchSystem, None, None, None, None),
    ("GET", "/_search", Other, None, None, None, None),
    ("GET", "/$export", Operation, None, None, None, Some("export")),
    ("POST", "/$convert", Operation, None, None, None, Some("convert")),
    ("DELETE", "/$export", Other, None, None, None, Some("export")),
    // Type level
    ("GET", "/Patient", SearchType, Some("Patient"), None, None, None),
    ("HEAD", "/Observation?code=1234-5", SearchType, Some("Observation"), None, None, None),
    ("POST", "/Observation", Create, Some("Observation"), None, None, None),
    ("PUT", "/Observation?identifier=x", Other, Some("Observation"), None, None, None),
    ("DELETE", "/Observation?code=1", Other, Some("Observation"), None, None, None),
    ("PATCH", "/Observation", Other, Some("Observation"), None, None, None),
    ("POST", "/Observation/_search", SearchType, Some("Observation"), None, None, None),
    ("GET", "/Observation/_search", Other, Some("Observation"), None, None, None),
    ("GET", "/Observation/_history", HistoryType, Some("Observation"), None, None, None),
    ("POST", "/Patient/$match", Operation, Some("Patient"), None, None, Some("match")),
    ("GET", "/Observation/$lastn", Operation, Some("Observation"), None, None, Some("lastn")),
    ("GET", "/Group/g1/$export", Operation, Some("Group"), Some("g1"), None, Some("export")),
    // Instance level
    ("GET", "/Patient/123", Read, Some("Patient"), Some("123"), None, None),
    ("HEAD", "/Patient/123", Read, Some("Patient"), Some("123"), None, None),
    ("PUT", "/Patient/123", Update, Some("Patient"), Some("123"), None, None),
    ("PATCH", "/Patient/123", Patch, Some("Patient"), Some("123"), None, None),
    ("DELETE", "/Patient/123", Delete, Some("Patient"), Some("123"), None, None),
    ("POST", "/Patient/123", Other, Some("Patient"), Some("123"), None, None),
    ("GET", "/Observation/a-B.9", Read, Some("Observation"), Some("a-B.9"), None, None),
    ("GET", "/Patient/123/_history", HistoryInstance, Some("Patient"), Some("123"), None, None),
    ("DELETE", "/Patient/123/_history", Other, Some("Patient"), Some("123"), None, None),
    ("GET", "/Patient/123/_history/2", Vread, Some("Patient"), Some("123"), Some("2"), None),
    ("PUT", "/Patient/123/_history/2", Other, Some("Patient"), Some("123"), Some("2"), None),
    ("GET", "/Patient/123/$everything", Operation, Some("Patient"), Some("123"), None, Some("everything")),
    ("POST", "/Patient/123/$everything", Operation, Some("Patient"), Some("123"), None, Some("everything")),
    ("PUT", "/Patient/123/$everything", Other, Some("Patient"), Some("123"), None, Some("everything")),
    // Patient compartment search (http.html#search)
    ("GET", "/Patient/123/Observation", SearchType, Some("Observation"), None, None, None),
    ("POST", "/Patient/123/Observation/_search", SearchType, Some("Observation"), None, None, None),
    ("GET", "/Patient/123/Observation/_search", Other, Some("Observation"), None, None, None),
    // Shapes FHIR does not define, or types R4 does not have
    ("GET", "/Patient/123/Observation/9", Other, None, None, None, None),
    ("GET", "/Patient/123/*", Other, None, None, None, None),
    ("GET", "/Encounter/5/Observation", Other, None, None, None, None),
    ("GET", "/Observation/1/_history/2/extra", Other, None, None, None, None),
    ("GET", "/Foo/123", Other, None, None, None, None),
    ("GET", "/Foo/bad_id", Other, None, None, None, None),
    ("GET", "/billing/invoices/2024", Other, None, None, None, None),
    ("GET", "/_foo", Other, None, None, None, None),
];

#[test]
fn shapes() {
    for (method, target, interaction, resource_type, id, version, operation) in SHAPES {
        let context = format!("{method} {target}");
        let classified =
            run(method, target, None).unwrap_or_else(|error| panic!("{context}: {error}"));
        assert_eq!(classified.interaction, *interaction, "{context}");
        assert_eq!(
            classified.resource_type.as_deref(),
            *resource_type,
            "{context}"
        );
        assert_eq!(classified.resource_id.as_deref(), *id, "{context}");
        assert_eq!(classified.version_id.as_deref(), *version, "{context}");
        assert_eq!(classified.operation.as_deref(), *operation, "{context}");
        assert!(classified.entries.is_empty(), "{context}");
    }
}

/// method, target, body, status, rule.
#[rustfmt::skip]
const REJECTED: &[(&str, &str, Option<&str>, u16, &str)] = &[
    ("GET", "/patient/123", None, 400, "classify.resource-type-case"),
    ("GET", "/OBSERVATION", None, 400, "classify.resource-type-case"),
    ("GET", "/Patient/123/observation", None, 400, "classify.resource-type-case"),
    ("GET", "/Patient/a_b", None, 400, "classify.bad-id"),
    ("GET", "/Patient/a%20b", None, 400, "classify.bad-id"),
    ("GET", "/Patient/%C3%A9", None, 400, "classify.bad-id"),
    ("GET", "/Patient/12345678901234567890123456789012345678901234567890123456789012345", None, 400, "classify.bad-id"),
    ("GET", "/Patient/123/_history/v%201", None, 400, "classify.bad-id"),
    ("GET", "/Observation/_history/2", None, 400, "classify.bad-id"),
    ("GET", "/$", None, 400, "classify.bad-operation"),
    ("GET", "/Patient/$ev%20il", None, 400, "classify.bad-operation"),
    ("GET", "/Patient/1/$a:b", None, 400, "classify.bad-operation"),
    ("POST", "/", None, 400, "classify.bad-bundle"),
    ("POST", "/", Some("{}"), 400, "classify.bad-bundle"),
    ("POST", "/", Some("<Bundle xmlns=\"http://hl7.org/fhir\"/>"), 400, "classify.bad-bundle"),
    ("POST", "/", Some(r#"{"resourceType":"Patient","type":"batch"}"#), 400, "classify.bad-bundle"),
    ("POST", "/", Some(r#"{"resourceType":"Bundle","type":"collection"}"#), 400, "classify.bad-bundle"),
    ("POST", "/", Some(r#"{"resourceType":"Bundle"}"#), 400, "classify.bad-bundle"),
    ("POST", "/", Some(r#"{"resourceType":"Bundle","type":"batch","entry":{}}"#), 400, "classify.bad-bundle"),
    ("POST", "/", Some(r#"{"resourceType":"Bundle","type":"batch"} trailing"#), 400, "classify.bad-bundle"),
    ("POST", "/", Some(r#"{"resourceType":"Bundle","type":"batch","type":"transaction"}"#), 400, "classify.duplicate-json-key"),
    ("POST", "/Observation", Some("<Observation xmlns=\"http://hl7.org/fhir\"/>"), 415, "classify.unsupported-body"),
    ("PATCH", "/Observation/1", Some("<diff/>"), 415, "classify.unsupported-body"),
    ("POST", "/Observation", Some(r#"{"resourceType":"Patient"}"#), 400, "classify.body-type-mismatch"),
    ("POST", "/Observation", Some(r#"{"subject":{"reference":"Patient/1"}}"#), 400, "classify.body-type-mismatch"),
    ("PUT", "/Observation/1", Some(r#"["not","a","resource"]"#), 400, "classify.body-type-mismatch"),
    ("PUT", "/Patient/1", Some(r#"{"resourceType":"Patient","id":"2"}"#), 400, "classify.body-id-mismatch"),
    ("PUT", "/Patient/1", Some(r#"{"resourceType":"Patient","id":1}"#), 400, "classify.body-id-mismatch"),
    ("POST", "/Observation", Some(r#"{"resourceType":"Observation","subject":{"reference":"Patient/1"},"subject":{"reference":"Patient/2"}}"#), 400, "classify.duplicate-json-key"),
    ("PUT", "/Observation/1", Some(r#"{"resourceType":"Observation","id":"1","subject":{"reference":"Patient/1","reference":"Patient/2"}}"#), 400, "classify.duplicate-json-key"),
];

#[test]
fn rejected_shapes_and_bodies() {
    for (method, target, body, status, rule_id) in REJECTED {
        let context = format!("{method} {target} {body:?}");
        match run(method, target, *body) {
            Ok(classified) => panic!("{context}: accepted as {classified:?}"),
            Err(rejection) => {
                assert_eq!(
                    rejection.rule_id, *rule_id,
                    "{context}: {}",
                    rejection.message
                );
                assert_eq!(rejection.status, *status, "{context}");
                let message = &rejection.message;
                assert!(message.starts_with(|c: char| c.is_lowercase()), "{message}");
                assert!(
                    message.contains("expected") && !message.ends_with('.'),
                    "{message}"
                );
            }
        }
    }
}

#[test]
fn wrong_case_names_the_right_spelling() {
    let rejection = run("GET", "/explanationofbenefit/1", None).unwrap_err();
    assert_eq!(
        rejection.message,
        "resource type `explanationofbenefit` is spelled with the wrong case; expected \
         `ExplanationOfBenefit`"
    );
}

#[test]
fn bodies_that_need_no_reading() {
    // Binary is written as raw content (http.html#binary); an update without an id and a
    // create without a body are left to the server to judge.
    let cases: &[(&str, &str, Option<&str>, Interaction)] = &[
        ("POST", "/Binary", Some("%PDF-1.4 raw bytes"), Create),
        ("PUT", "/Binary/b1", Some("\u{0}\u{1}"), Update),
        (
            "PUT",
            "/Patient/1",
            Some(r#"{"resourceType":"Patient"}"#),
            Update,
        ),
        ("POST", "/Observation", None, Create),
        ("POST", "/Observation", Some(""), Create),
        (
            "GET",
            "/Observation",
            Some("ignored: searches have no resource body"),
            SearchType,
        ),
    ];
    for (method, target, body, interaction) in cases {
        let classified =
            run(method, target, *body).unwrap_or_else(|error| panic!("{target}: {error}"));
        assert_eq!(classified.interaction, *interaction, "{method} {target}");
    }
}

/// method, target, body, patients.
#[rustfmt::skip]
const PATIENTS: &[(&str, &str, Option<&str>, &[&str])] = &[
    // From the path
    ("GET", "/Patient/123", None, &["123"]),
    ("DELETE", "/Patient/31", None, &["31"]),
    ("GET", "/Patient/123/_history/4", None, &["123"]),
    ("GET", "/Patient/123/$everything", None, &["123"]),
    ("GET", "/Patient/123/Observation?code=x", None, &["123"]),
    ("GET", "/Patient/123/Observation?subject=Patient/456", None, &["123", "456"]),
    ("GET", "/Observation/9", None, &[]),
    ("GET", "/Patient", None, &[]),
    // From search parameters (compartmentdefinition-patient, search.html#reference)
    ("GET", "/Observation?patient=123", None, &["123"]),
    ("GET", "/Observation?patient=Patient/123", None, &["123"]),
    ("GET", "/Observation?patient:Patient=123", None, &["123"]),
    ("GET", "/Observation?subject=Patient/123", None, &["123"]),
    ("GET", "/Observation?subject=123", None, &[]),
    ("GET", "/Observation?subject:Patient=123", None, &["123"]),
    ("GET", "/Observation?subject:Group=5", None, &[]),
    ("GET", "/Observation?subject=Group/5", None, &[]),
    ("GET", "/Observation?patient=1,2,Patient/3", None, &["1", "2", "3"]),
    ("GET", "/Observation?patient=Patient%2F7", None, &["7"]),
    ("GET", "/Observation?subject=https://ehr.example/fhir/Patient/8", None, &["8"]),
    ("GET", "/Observation?subject=https://ehr.example/fhir/Patient/8/_history/3", None, &["8"]),
    ("GET", "/Observation?subject=Patient/8/_history/3", None, &["8"]),
    // Forms a strict reader refuses still name whoever a lenient server could resolve.
    ("GET", "/Observation?subject=ftp://ehr.example/Patient/8", None, &["8"]),
    ("GET", "/Observation?subject=x/Patient/8", None, &["8"]),
    ("GET", "/Observation?patient:not=9", None, &[]),
    ("GET", "/Observation?patient:missing=true", None, &[]),
    ("GET", "/Observation?subject.name=smith", None, &[]),
    ("GET", "/Observation?subject:Patient.name=smith", None, &[]),
    // The last link of chains and `_has` (search.html#has) names patients too.
    ("GET", "/Patient?_id=1&_has:Observation:patient:performer=Patient/2", None, &["1", "2"]),
    ("GET", "/Patient?_id=1&_has:Observation:patient:patient=2", None, &["1", "2"]),
    ("GET", "/Patient?_id=1&_has:Group:member:member=2", None, &["1"]),
    ("GET", "/Patient?_id=1&_has:Group:member:member:Patient=2", None, &["1", "2"]),
    ("GET", "/Patient?_id=1&_has:Observation:patient:_has:Observation:has-member:subject=Patient/3", None, &["1", "3"]),
    ("GET", "/Patient?_id=1&_has:Observation:patient:code=x", None, &["1"]),
    ("GET", "/Observation?patient=1&subject:Patient._id=2", None, &["1", "2"]),
    ("GET", "/Observation?patient=1&subject.link=Patient/3", None, &["1", "3"]),
    ("GET", "/Observation?patient=1&subject.name=Patient", None, &["1"]),
    ("GET", "/Observation?performer=Patient/4", None, &["4"]),
    ("GET", "/Observation?code=Patient/5", None, &[]),
    ("GET", "/Observation?patient=a%5C,b", None, &[]),
    ("GET", "/Observation?patient=Patient/1/extra", None, &["1"]),
    ("GET", "/Observation?patient=urn:uuid:2f3a", None, &[]),
    ("GET", "/Observation?patient=1&code=x&performer=Patient/2", None, &["1", "2"]),
    ("GET", "/Patient?_id=1,2", None, &["1", "2"]),
    ("GET", "/Patient?_id:not=1", None, &[]),
    ("GET", "/Patient?link=Patient/5", None, &["5"]),
    ("GET", "/Patient?name=smith", None, &[]),
    ("GET", "/Coverage?beneficiary=11", None, &["11"]),
    ("GET", "/Coverage?subscriber=11", None, &[]),
    ("GET", "/Coverage?subscriber=Patient/11", None, &["11"]),
    ("GET", "/Claim?patient=12&payee=Patient/13", None, &["12", "13"]),
    ("GET", "/Encounter?patient=2,2,1", None, &["1", "2"]),
    ("GET", "/?_type=Observation,Condition&patient=5", None, &["5"]),
    ("GET", "/?patient=5", None, &[]),
    ("POST", "/Observation/_search?patient=3", None, &["3"]),
    ("GET", "/Observation/$lastn?patient=4", None, &["4"]),
    ("DELETE", "/Observation?patient=6", None, &["6"]),
    // From written bodies
    ("POST", "/Observation", Some(r#"{"resourceType":"Observation","subject":{"reference":"Patient/20"}}"#), &["20"]),
    ("POST", "/Observation", Some(r#"{"resourceType":"Observation","subject":{"reference":"https://ehr.example/fhir/Patient/20"}}"#), &["20"]),
    ("POST", "/Observation", Some(r#"{"resourceType":"Observation","subject":{"reference":"Group/1"}}"#), &[]),
    ("POST", "/Observation?patient=99", Some(r#"{"resourceType":"Observation","subject":{"reference":"Patient/20"}}"#), &["20", "99"]),
    ("PUT", "/Observation/1", Some(r#"{"resourceType":"Observation","id":"1","subject":{"reference":"Patient/21"}}"#), &["21"]),
    ("POST", "/Coverage", Some(r#"{"resourceType":"Coverage","beneficiary":{"reference":"Patient/22"}}"#), &["22"]),
    ("POST", "/Account", Some(r#"{"resourceType":"Account","subject":[{"reference":"Patient/23"},{"reference":"Patient/24"}]}"#), &["23", "24"]),
    ("POST", "/Claim", Some(r#"{"resourceType":"Claim","patient":{"reference":"Patient/32"}}"#), &["32"]),
    ("PUT", "/Patient/25", Some(r#"{"resourceType":"Patient","id":"25"}"#), &["25"]),
    ("POST", "/Patient", Some(r#"{"resourceType":"Patient","id":"26","link":[{"other":{"reference":"Patient/27"}}]}"#), &["26", "27"]),
    // Every Patient reference in a written resource counts, compartment element or not.
    ("POST", "/Practitioner", Some(r#"{"resourceType":"Practitioner","subject":{"reference":"Patient/1"}}"#), &["1"]),
    ("POST", "/Observation", Some(r#"{"resourceType":"Observation","subject":{"reference":"Patient/1"},"performer":[{"reference":"Patient/2"}],"contained":[{"resourceType":"Observation","subject":{"reference":"Patient/3"}}]}"#), &["1", "2", "3"]),
    ("POST", "/Device", Some(r#"{"resourceType":"Device","patient":{"reference":"Patient/4"}}"#), &["4"]),
    // Every form the security review wrote through, in every reference-bearing element.
    ("POST", "/Observation", Some(r#"{"resourceType":"Observation","subject":{"reference":"Patient/1"},"focus":[{"reference":"x/Patient/2"}],"derivedFrom":[{"reference":"a/b/Patient/3"}],"basedOn":[{"reference":"Observation/../Patient/4"}],"hasMember":[{"reference":"ftp://x/Patient/5"}],"partOf":[{"reference":"https://elsewhere.example/Patient/6"}]}"#), &["1", "2", "3", "4", "5", "6"]),
    ("POST", "/Observation", Some(r##"{"resourceType":"Observation","subject":{"reference":"Patient?identifier=mrn|9"},"focus":[{"reference":"#c1"},{"reference":"urn:uuid:1b2c"}]}"##), &[]),
    ("PATCH", "/Observation/2", Some(r#"[{"op":"add","path":"/performer/-","value":{"reference":"Patient/31"}}]"#), &["31"]),
    ("PATCH", "/Observation/2", Some(r#"{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Observation.subject"},{"name":"value","valueReference":{"reference":"Patient/32"}}]}]}"#), &["32"]),
    // Types without a `patient` search parameter are not pinned by one (a lenient server
    // ignores it and searches everybody).
    ("GET", "/Patient?patient=5&family=x", None, &[]),
    // Parameter names and type modifiers are case-sensitive: these are unknown parameters.
    ("GET", "/Observation?PATIENT=9", None, &[]),
    ("GET", "/Observation?subject:patient=9", None, &[]),
    ("GET", "/Observation?subject:Patient=9", None, &["9"]),
    ("GET", "/AdverseEvent?patient=5", None, &[]),
    ("GET", "/AdverseEvent?subject=Patient/5", None, &["5"]),
    // A system search is pinned only to patients every listed type is pinned to.
    ("GET", "/?_type=Patient,Observation&_id=6", None, &[]),
    ("GET", "/?_type=Observation,Condition&patient=7", None, &["7"]),
    ("GET", "/?_type=Patient,Observation&patient=8", None, &[]),
    ("PATCH", "/Observation/2", Some(r#"[{"op":"replace","path":"/subject","value":{"reference":"Patient/28"}}]"#), &["28"]),
    ("PATCH", "/Observation/2", Some(r#"[{"op":"replace","path":"/subject/reference","value":"Patient/29"}]"#), &["29"]),
    ("PATCH", "/Observation/2", Some(r#"[{"op":"test","path":"/subject/reference","value":"Patient/29"}]"#), &[]),
    ("PATCH", "/Observation/2", Some(r#"[{"op":"add","path":"/subject/display","value":"Patient/29"}]"#), &[]),
    ("PATCH", "/Patient/30", Some(r#"[{"op":"replace","path":"/active","value":false}]"#), &["30"]),
    ("PATCH", "/Patient/30", Some(r#"{"resourceType":"Parameters","parameter":[]}"#), &["30"]),
];

#[test]
fn patients() {
    for (method, target, body, patients) in PATIENTS {
        let context = format!("{method} {target} {body:?}");
        let classified =
            run(method, target, *body).unwrap_or_else(|error| panic!("{context}: {error}"));
        assert_eq!(classified.patients, *patients, "{context}");
    }
}

/// method, canonical path, interaction, resource type, id, patients.
type EntryExpectation = (
    &'static str,
    &'static str,
    Interaction,
    Option<&'static str>,
    Option<&'static str>,
    &'static [&'static str],
);

fn entry(method: &str, url: &str) -> Value {
    json!({ "request": { "method": method, "url": url } })
}

fn entry_with(method: &str, url: &str, resource: Value) -> Value {
    json!({ "resource": resource, "request": { "method": method, "url": url } })
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({ "resourceType": "Bundle", "type": kind, "entry": entries })
}

#[test]
fn batch_entries_are_classified_one_by_one() {
    let classified = post_bundle(&bundle(
        "batch",
        vec![
            entry("GET", "Patient/1"),
            entry("GET", "Observation?patient=2&code=http://loinc.org|1234-5"),
            entry_with(
                "POST",
                "Observation",
                json!({"resourceType": "Observation", "subject": {"reference": "Patient/3"}}),
            ),
            entry_with(
                "PUT",
                "Patient/4",
                json!({"resourceType": "Patient", "id": "4"}),
            ),
            entry("DELETE", "Observation/5"),
            entry("HEAD", "metadata"),
            entry_with(
                "PATCH",
                "Patient/6",
                json!({"resourceType": "Binary", "contentType": "application/json-patch+json"}),
            ),
        ],
    ))
    .unwrap();
    assert_eq!(classified.interaction, Batch);
    assert_eq!(classified.resource_type, None);
    assert_eq!(classified.patients, ["1", "2", "3", "4", "6"]);
    #[rustfmt::skip]
    let expected: &[EntryExpectation] = &[
        ("GET", "/Patient/1", Read, Some("Patient"), Some("1"), &["1"]),
        ("GET", "/Observation", SearchType, Some("Observation"), None, &["2"]),
        ("POST", "/Observation", Create, Some("Observation"), None, &["3"]),
        ("PUT", "/Patient/4", Update, Some("Patient"), Some("4"), &["4"]),
        ("DELETE", "/Observation/5", Delete, Some("Observation"), Some("5"), &[]),
        ("HEAD", "/metadata", Capabilities, None, None, &[]),
        ("PATCH", "/Patient/6", Patch, Some("Patient"), Some("6"), &["6"]),
    ];
    assert_eq!(classified.entries.len(), expected.len());
    for (entry, (method, path, interaction, resource_type, id, patients)) in
        classified.entries.iter().zip(expected)
    {
        assert_eq!(entry.method, *method);
        assert_eq!(entry.path, *path);
        assert_eq!(entry.interaction, *interaction, "{path}");
        assert_eq!(entry.resource_type.as_deref(), *resource_type, "{path}");
        assert_eq!(entry.resource_id.as_deref(), *id, "{path}");
        assert_eq!(entry.patients, *patients, "{path}");
    }
    let search = &classified.entries[1];
    let params: Vec<(&str, &str)> = search
        .params
        .iter()
        .map(|param| (param.name.as_str(), param.value.as_str()))
        .collect();
    assert_eq!(
        params,
        [("patient", "2"), ("code", "http://loinc.org|1234-5")]
    );
}

#[test]
fn transaction_and_empty_bundles() {
    let classified = post_bundle(&bundle("transaction", vec![entry("GET", "Patient/1")])).unwrap();
    assert_eq!(classified.interaction, Transaction);
    assert_eq!(classified.patients, ["1"]);

    let empty = post_bundle(&json!({"resourceType": "Bundle", "type": "batch"})).unwrap();
    assert_eq!(empty.interaction, Batch);
    assert!(empty.entries.is_empty() && empty.patients.is_empty());
}

#[test]
fn a_forbidden_looking_entry_is_visible_among_harmless_ones() {
    let classified = post_bundle(&bundle(
        "batch",
        vec![
            entry("GET", "metadata"),
            entry("GET", "Patient/999/$everything"),
            entry("GET", "Practitioner/7"),
        ],
    ))
    .unwrap();
    let everything = &classified.entries[1];
    assert_eq!(everything.interaction, Operation);
    assert_eq!(everything.operation.as_deref(), Some("everything"));
    assert_eq!(everything.path, "/Patient/999/$everything");
    assert_eq!(classified.patients, ["999"]);
}

#[test]
fn bundle_size_is_bounded() {
    let at_limit = bundle("batch", vec![entry("GET", "Patient/1"); MAX_ENTRIES]);
    assert_eq!(post_bundle(&at_limit).unwrap().entries.len(), MAX_ENTRIES);

    let over = bundle("batch", vec![entry("GET", "Patient/1"); MAX_ENTRIES + 1]);
    let rejection = post_bundle(&over).unwrap_err();
    assert_eq!(rejection.status, 413);
    assert_eq!(rejection.rule_id, "classify.too-many-entries");
    assert_eq!(
        rejection.message,
        "the Bundle has 11 entries; expected at most 10"
    );
}

#[test]
fn bad_entries_reject_the_whole_bundle() {
    let nested = bundle("batch", vec![entry("GET", "Patient/1")]);
    #[rustfmt::skip]
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "classify.bad-bundle-entry"),
        (json!({"request": "GET Patient/1"}), "classify.bad-bundle-entry"),
        (json!({"request": {"url": "Patient/1"}}), "classify.bad-bundle-entry"),
        (json!({"request": {"method": "get", "url": "Patient/1"}}), "classify.bad-bundle-entry"),
        (json!({"request": {"method": "OPTIONS", "url": "Patient/1"}}), "classify.bad-bundle-entry"),
        (json!({"request": {"method": "GET"}}), "classify.bad-bundle-entry"),
        (json!({"request": {"method": "GET", "url": 7}}), "classify.bad-bundle-entry"),
        (entry("GET", "https://other.example/fhir/Patient/1"), "classify.bad-entry-url"),
        (entry("GET", "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"), "classify.bad-entry-url"),
        (entry("GET", "/Patient/1"), "classify.bad-entry-url"),
        (entry("GET", "//other.example/Patient/1"), "classify.bad-entry-url"),
        (entry("GET", "Patient/../Practitioner/1"), "classify.bad-entry-url"),
        (entry("GET", "Patient%2F1"), "canonical.encoded-separator"),
        (entry("GET", "Patient/1#x"), "canonical.fragment"),
        (entry("GET", "Observation?patient=1&patient=2"), "canonical.duplicate-governing-parameter"),
        (entry("GET", "Observation?_method=DELETE"), "canonical.method-override"),
        (entry("GET", "patient/1"), "classify.resource-type-case"),
        (entry("GET", "Patient/a_b"), "classify.bad-id"),
        (entry_with("POST", "", nested.clone()), "classify.nested-bundle"),
        (entry_with("POST", "?x=1", nested), "classify.nested-bundle"),
        (entry_with("PUT", "Patient/1", json!({"resourceType": "Patient", "id": "2"})), "classify.body-id-mismatch"),
        (entry_with("POST", "Observation", json!({"resourceType": "Patient"})), "classify.body-type-mismatch"),
        // Conditional creates search with criteria no policy sees.
        (json!({"resource": {"resourceType": "Observation"}, "request": {"method": "POST", "url": "Observation", "ifNoneExist": "patient=2"}}), "classify.bad-bundle-entry"),
        // A resource on an entry that does not write one (a server may create it anyway).
        (entry_with("POST", "Observation/_search?patient=1", json!({"resourceType": "Observation"})), "classify.bad-bundle-entry"),
        (entry_with("GET", "Observation/1", json!({"resourceType": "Observation"})), "classify.bad-bundle-entry"),
        (entry_with("DELETE", "Observation/1", json!({"resourceType": "Observation"})), "classify.bad-bundle-entry"),
        // A POST entry's fullUrl must be a placeholder, not an alias of a real resource.
        (json!({"fullUrl": "Patient/1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}), "classify.bad-bundle-entry"),
        (json!({"fullUrl": "https://ehr.example/fhir/Patient/1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}), "classify.bad-bundle-entry"),
        (json!({"fullUrl": "urn:uuid:1/Patient/2", "resource": {"resourceType": "Patient", "id": "2"}, "request": {"method": "PUT", "url": "Patient/3"}}), "classify.body-id-mismatch"),
        (json!({"fullUrl": "https://ehr.example/fhir/Patient/9", "resource": {"resourceType": "Patient", "id": "3"}, "request": {"method": "PUT", "url": "Patient/3"}}), "classify.bad-bundle-entry"),
    ];
    for (bad, rule_id) in cases {
        let shown = bad.to_string();
        let body = bundle("transaction", vec![entry("GET", "metadata"), bad]);
        let rejection = post_bundle(&body).unwrap_err();
        assert_eq!(rejection.rule_id, rule_id, "{shown}: {}", rejection.message);
        assert_eq!(rejection.status, 400, "{shown}");
        assert!(
            rejection.message.starts_with("bundle entry 1: "),
            "{shown}: {}",
            rejection.message
        );
        assert!(
            rejection.message.contains("expected"),
            "{}",
            rejection.message
        );
    }
}

#[test]
fn duplicate_members_inside_entries_are_refused() {
    let body = r#"{"resourceType":"Bundle","type":"batch","entry":[
        {"request":{"method":"GET","url":"Patient/1","url":"Patient/2"}}]}"#;
    let rejection = run("POST", "/", Some(body)).unwrap_err();
    assert_eq!(rejection.rule_id, "classify.duplicate-json-key");
}

#[test]
fn or_lists_honour_fhir_escapes() {
    #[rustfmt::skip]
    let cases: &[(&str, &[&str])] = &[
        ("1", &["1"]),
        ("1,2", &["1", "2"]),
        ("", &[""]),
        ("1,", &["1", ""]),
        ("a\\,b,c", &["a\\,b", "c"]),
        ("a\\\\,b", &["a\\\\", "b"]),
    ];
    for (value, expected) in cases {
        assert_eq!(patients::or_values(value), *expected, "{value}");
    }
}

#[test]
fn strict_json() {
    assert!(json::parse(br#"{"a":[1,2.5,"x",null,true,{"b":{}}]}"#).is_ok());
    assert!(matches!(
        json::parse(br#"{"a":{"b":1,"b":2}}"#),
        Err(json::JsonError::DuplicateKey(_))
    ));
    assert!(matches!(
        json::parse(b"{\"a\":"),
        Err(json::JsonError::Syntax(_))
    ));
    let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
    assert!(matches!(
        json::parse(deep.as_bytes()),
        Err(json::JsonError::Syntax(_))
    ));
}

#[test]
fn placeholders_and_self_naming_full_urls_are_accepted() {
    let entries = vec![
        json!({"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}),
        json!({"fullUrl": "urn:oid:1.2.3", "resource": {"resourceType": "Observation"}, "request": {"method": "POST", "url": "Observation"}}),
        json!({"fullUrl": "https://ehr.example/fhir/Patient/3", "resource": {"resourceType": "Patient", "id": "3"}, "request": {"method": "PUT", "url": "Patient/3"}}),
    ];
    let classified = post_bundle(&bundle("transaction", entries)).unwrap();
    assert_eq!(classified.entries.len(), 3);
}
