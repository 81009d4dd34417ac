//! What a patch document writes into a resource's patient elements. Two formats reach the
//! gateway (R4 http.html#patch): JSON Patch (RFC 6902, a JSON array of operations) and
//! FHIRPath Patch (a `Parameters` resource of `operation` parameters, R4 fhirpatch.html).
//! Every operation that writes into a patient element, or above one, has its value judged
//! like the same element of a written resource; an operation whose value cannot be seen
//! (`copy` and `move` into such an element), a path that cannot be read, or a document in
//! any other format fails closed.

use serde_json::{Map, Value};

use crate::references::{self, Points, Resolver};

/// Why a patch cannot be checked, or where one of its references points.
#[derive(Debug, PartialEq, Eq)]
pub enum Finding {
    /// A reference to `Patient/[id]` written into the element.
    Patient(&'static str, String),
    /// A reference written into the element that the gateway cannot place; why.
    Unknown(&'static str, &'static str),
    /// The patch cannot be judged; the text says why.
    Unreadable(String),
}

impl Finding {
    fn of(element: &'static str, points: Points<'_>) -> Option<Self> {
        match points {
            Points::Patient(id) => Some(Finding::Patient(element, id.to_string())),
            Points::Elsewhere => None,
            Points::Unknown(why) => Some(Finding::Unknown(element, why)),
        }
    }
}

/// Judges every operation of `patch` that touches a patient element of `resource_type`.
pub fn examine<'a>(
    resource_type: &str,
    patch: &'a Value,
    resolver: &Resolver<'a>,
    found: &mut dyn FnMut(Finding),
) {
    match patch {
        Value::Array(operations) => {
            for (index, operation) in operations.iter().enumerate() {
                json_patch_operation(resource_type, index, operation, resolver, found);
            }
        }
        Value::Object(members)
            if members.get("resourceType").and_then(Value::as_str) == Some("Parameters") =>
        {
            let parameters = members.get("parameter").and_then(Value::as_array);
            for (index, parameter) in parameters.into_iter().flatten().enumerate() {
                fhirpath_patch_operation(resource_type, index, parameter, resolver, found);
            }
        }
        _ => found(Finding::Unreadable(
            "the patch is neither a JSON Patch nor a FHIRPath Patch (`Parameters`)".to_string(),
        )),
    }
}

/// How a written element relates to one patient path.
enum Overlap<'p> {
    /// The element is the patient path or lies above it: the value holds the references
    /// found by following the rest of the path (`performer` for `performer.actor`).
    Above(&'p [&'p str]),
    /// The element lies inside a Reference of the path: the next element name.
    Inside(&'p str),
    /// Unrelated.
    None,
}

fn overlap<'p>(written: &[&'p str], path: &'p [&'p str]) -> Overlap<'p> {
    let shared = written
        .iter()
        .zip(path)
        .take_while(|(written, path)| written == path)
        .count();
    if shared == written.len() {
        return Overlap::Above(path.get(shared..).unwrap_or_default());
    }
    if shared == path.len() {
        return written
            .get(shared)
            .map_or(Overlap::None, |next| Overlap::Inside(next));
    }
    Overlap::None
}

/// Judges `value` written at `written` (element names, array positions left out) for every
/// patient path of `resource_type`. `text_value` is the value as a reference string, when it
/// is a primitive.
fn judge_written<'v>(
    resource_type: &str,
    written: &[&str],
    value: Option<&'v Value>,
    text_value: Option<&'v str>,
    resolver: &Resolver<'v>,
    found: &mut dyn FnMut(Finding),
) {
    for path in references::patient_paths(resource_type) {
        let segments: Vec<&str> = path.split('.').collect();
        match overlap(written, &segments) {
            Overlap::None => {}
            Overlap::Above(rest) => {
                let Some(value) = value else {
                    found(Finding::Unreadable(format!(
                        "it writes a value the gateway cannot read into `{path}`"
                    )));
                    continue;
                };
                if written.is_empty() && rest == segments.as_slice() {
                    // The whole resource is replaced: judge it as a written resource once.
                    continue;
                }
                references::values_at(value, rest, &mut |reference| {
                    if let Some(points) = resolver.judge(reference) {
                        found_points(found, path, points);
                    }
                });
            }
            Overlap::Inside("reference") => match text_value {
                Some(text) => found_points(found, path, resolver.judge_text(text)),
                None => found(Finding::Unreadable(format!(
                    "it writes a `reference` of `{path}` that is not a string"
                ))),
            },
            Overlap::Inside("identifier") => found(Finding::Unknown(
                path,
                "a logical reference (an identifier only), which the server may resolve",
            )),
            Overlap::Inside(_) => {}
        }
    }
    if written.is_empty() {
        match value {
            Some(resource) => references::resource_references(
                resource_type,
                resource,
                resolver,
                &mut |path, points| found_points(found, path, points),
            ),
            None => found(Finding::Unreadable(
                "it replaces the whole resource with a value the gateway cannot read".to_string(),
            )),
        }
    }
    // Every reference the operation writes, into any element (`focus`, `basedOn`,
    // extensions): it must be one the server resolves as the gateway reads it.
    if let Some(value) = value {
        resolver.every_reference(value, &mut |_, points| {
            found_points(found, WRITTEN_ELEMENT, points);
        });
    }
    if written.last() == Some(&"reference")
        && let Some(text) = text_value
    {
        found_points(found, WRITTEN_ELEMENT, resolver.judge_text(text));
    }
}

/// How a refusal names an element outside the patient paths that a patch writes into.
const WRITTEN_ELEMENT: &str = "a written element";

/// Element names of a JSON Pointer (RFC 6901) into a resource, array positions (digits and
/// `-`) left out; `None` when it is not a pointer.
fn pointer_elements(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    let mut elements = Vec::new();
    for token in rest.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        if token == "-" || (!token.is_empty() && token.bytes().all(|byte| byte.is_ascii_digit())) {
            continue;
        }
        elements.push(token);
    }
    Some(elements)
}

fn json_patch_operation<'a>(
    resource_type: &str,
    index: usize,
    operation: &'a Value,
    resolver: &Resolver<'a>,
    found: &mut dyn FnMut(Finding),
) {
    let op = operation
        .get("op")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(written) = operation
        .get("path")
        .and_then(Value::as_str)
        .and_then(pointer_elements)
    else {
        found(Finding::Unreadable(format!(
            "operation {index} has no JSON Pointer `path`"
        )));
        return;
    };
    let written: Vec<&str> = written.iter().map(String::as_str).collect();
    match op {
        "remove" | "test" => {}
        "add" | "replace" => {
            let value = operation.get("value");
            judge_written(
                resource_type,
                &written,
                value,
                value.and_then(Value::as_str),
                resolver,
                found,
            );
        }
        // The value copied or moved is the stored resource's, which the gateway cannot see.
        "copy" | "move" => {
            for path in references::patient_paths(resource_type) {
                let segments: Vec<&str> = path.split('.').collect();
                let hidden = match overlap(&written, &segments) {
                    Overlap::Above(_) => true,
                    Overlap::Inside(next) => matches!(next, "reference" | "identifier"),
                    Overlap::None => false,
                };
                if hidden {
                    found(Finding::Unreadable(format!(
                        "operation {index} (`{op}`) writes a stored value the gateway cannot \
                         see into `{path}`"
                    )));
                }
            }
        }
        _ => found(Finding::Unreadable(format!(
            "operation {index} is not a JSON Patch operation"
        ))),
    }
}

/// A FHIRPath Patch `path` the gateway can follow: the resource type (or `%resource`), then
/// element names, each optionally indexed (`Observation.performer[0]`). Functions, filters
/// and type casts give `None`.
fn fhirpath_elements<'p>(path: &'p str, resource_type: &str) -> Option<Vec<&'p str>> {
    let mut parts = path.split('.');
    let first = parts.next()?;
    if first != resource_type && first != "%resource" {
        return None;
    }
    let mut elements = Vec::new();
    for part in parts {
        let name = match part.split_once('[') {
            Some((name, index)) => {
                let digits = index.strip_suffix(']')?;
                if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                    return None;
                }
                name
            }
            None => part,
        };
        let mut bytes = name.bytes();
        let valid = bytes.next().is_some_and(|byte| byte.is_ascii_alphabetic())
            && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
        if !valid {
            return None;
        }
        elements.push(name);
    }
    Some(elements)
}

/// The parts of one FHIRPath Patch operation by name.
fn part<'a>(parts: &'a [Value], name: &str) -> Option<&'a Value> {
    parts
        .iter()
        .find(|part| part.get("name").and_then(Value::as_str) == Some(name))
}

/// A `value[x]` of a Parameters parameter (or part), and its text when it is a primitive.
fn parameter_value(parameter: &Value) -> (Option<&Value>, Option<&str>) {
    let value = parameter.as_object().and_then(|members| {
        members
            .iter()
            .find(|(name, _)| name.starts_with("value"))
            .map(|(_, value)| value)
    });
    (value, value.and_then(Value::as_str))
}

/// A FHIRPath Patch value as the JSON of the element it becomes: a `value[x]`, or for a
/// complex value (R4 fhirpatch.html, "parts") an object of its named parts.
fn value_as_json(value_part: &Value) -> Option<Value> {
    if let (Some(value), _) = parameter_value(value_part) {
        return Some(value.clone());
    }
    let parts = value_part.get("part")?.as_array()?;
    let mut object = Map::new();
    for inner in parts {
        let name = inner.get("name")?.as_str()?;
        let value = value_as_json(inner)?;
        match object.get_mut(name) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                object.insert(name.to_string(), value);
            }
        }
    }
    Some(Value::Object(object))
}

fn fhirpath_patch_operation<'a>(
    resource_type: &str,
    index: usize,
    parameter: &'a Value,
    resolver: &Resolver<'a>,
    found: &mut dyn FnMut(Finding),
) {
    if parameter.get("name").and_then(Value::as_str) != Some("operation") {
        found(Finding::Unreadable(format!(
            "parameter {index} is not a FHIRPath Patch `operation`"
        )));
        return;
    }
    let parts = parameter
        .get("part")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let text = |name: &str| part(parts, name).and_then(|p| parameter_value(p).1);
    let kind = text("type").unwrap_or_default();
    let Some(mut written) = text("path").and_then(|path| fhirpath_elements(path, resource_type))
    else {
        found(Finding::Unreadable(format!(
            "operation {index} has a `path` the gateway cannot follow (only `Type.element[n]...`)"
        )));
        return;
    };
    match kind {
        "delete" | "move" => {}
        "add" | "insert" | "replace" => {
            if kind == "add" {
                match text("name") {
                    Some(name) => written.push(name),
                    None => {
                        found(Finding::Unreadable(format!(
                            "operation {index} (`add`) has no `name`"
                        )));
                        return;
                    }
                }
            }
            let Some(value_part) = part(parts, "value") else {
                found(Finding::Unreadable(format!(
                    "operation {index} (`{kind}`) has no `value`"
                )));
                return;
            };
            let text_value = parameter_value(value_part).1;
            let value = value_as_json(value_part);
            judge_written(
                resource_type,
                &written,
                value.as_ref(),
                text_value,
                resolver,
                found,
            );
        }
        _ => found(Finding::Unreadable(format!(
            "operation {index} is not a FHIRPath Patch operation"
        ))),
    }
}

fn found_points(found: &mut dyn FnMut(Finding), element: &'static str, points: Points<'_>) {
    if let Some(finding) = Finding::of(element, points) {
        found(finding);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn findings(resource_type: &str, patch: &Value) -> Vec<Finding> {
        let mut found = Vec::new();
        let resolver = Resolver {
            bundle: None,
            own_bases: &[],
        };
        examine(resource_type, patch, &resolver, &mut |finding| {
            found.push(finding)
        });
        found
    }

    /// The patients found, each once (a reference in a patient element is found along its
    /// path and again by the walk over every written reference).
    fn patients(found: &[Finding]) -> Vec<&str> {
        let mut patients: Vec<&str> = Vec::new();
        for finding in found {
            if let Finding::Patient(_, id) = finding
                && !patients.contains(&id.as_str())
            {
                patients.push(id);
            }
        }
        patients
    }

    fn refused(found: &[Finding]) -> bool {
        found
            .iter()
            .any(|finding| matches!(finding, Finding::Unknown(..) | Finding::Unreadable(_)))
    }

    #[test]
    fn pointers_and_paths() {
        assert_eq!(pointer_elements(""), Some(Vec::new()));
        assert_eq!(
            pointer_elements("/performer/0/actor"),
            Some(vec!["performer".to_string(), "actor".to_string()])
        );
        assert_eq!(
            pointer_elements("/performer/-"),
            Some(vec!["performer".to_string()])
        );
        assert_eq!(
            pointer_elements("/a~1b~0c"),
            Some(vec!["a/b~c".to_string()])
        );
        assert_eq!(pointer_elements("subject"), None);
        assert_eq!(
            fhirpath_elements("Observation.performer[1].display", "Observation"),
            Some(vec!["performer", "display"])
        );
        assert_eq!(
            fhirpath_elements("%resource.subject", "Observation"),
            Some(vec!["subject"])
        );
        assert_eq!(
            fhirpath_elements("Observation", "Observation"),
            Some(Vec::new())
        );
        for unreadable in [
            "Condition.subject",
            "Observation.subject.resolve()",
            "Observation.performer.where(reference = 'x')",
            "Observation.performer[]",
            "Observation..subject",
        ] {
            assert_eq!(
                fhirpath_elements(unreadable, "Observation"),
                None,
                "{unreadable}"
            );
        }
    }

    #[test]
    fn json_patch_values_are_judged_along_the_patient_paths() {
        let found = findings(
            "Procedure",
            &json!([
                {"op": "add", "path": "/performer/-", "value": {"actor": {"reference": "Patient/456"}}},
                {"op": "replace", "path": "/subject/reference", "value": "Patient/123"},
                {"op": "replace", "path": "/performer/0/actor", "value": {"reference": "Practitioner/p"}},
                {"op": "replace", "path": "/status", "value": "completed"},
                {"op": "remove", "path": "/subject"}
            ]),
        );
        assert_eq!(patients(&found), ["456", "123"]);
        assert!(!refused(&found));
        // The whole resource replaced: judged as a written resource.
        let found = findings(
            "Observation",
            &json!([{"op": "replace", "path": "", "value": {"resourceType": "Observation", "subject": {"reference": "Patient/456"}}}]),
        );
        assert_eq!(patients(&found), ["456"]);
        for refused_patch in [
            json!([{"op": "copy", "from": "/performer/0", "path": "/subject"}]),
            json!([{"op": "move", "from": "/focus/0", "path": "/performer/0/reference"}]),
            json!([{"op": "add", "path": "/subject/identifier", "value": {"value": "MRN-456"}}]),
            json!([{"op": "replace", "path": "/subject", "value": {"reference": "Patient?identifier=x"}}]),
            json!([{"op": "replace", "path": "/subject/reference", "value": 7}]),
            json!([{"op": "frobnicate", "path": "/status"}]),
            json!([{"op": "add", "path": "subject", "value": {}}]),
            json!({"subject": {"reference": "Patient/123"}}),
        ] {
            assert!(
                refused(&findings("Observation", &refused_patch)),
                "{refused_patch}"
            );
        }
        assert!(!refused(&findings(
            "Observation",
            &json!([{"op": "copy", "from": "/subject/display", "path": "/note/0/text"}, {"op": "move", "from": "/subject", "path": "/focus/0"}])
        )));
    }

    #[test]
    fn fhirpath_patch_values_are_judged_along_the_patient_paths() {
        let operation = |parts: Value| json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": parts}]});
        let found = findings(
            "Patient",
            &operation(json!([
                {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"},
                {"name": "name", "valueString": "link"},
                {"name": "value", "part": [{"name": "other", "valueReference": {"reference": "Patient/456"}}, {"name": "type", "valueCode": "seealso"}]}
            ])),
        );
        assert_eq!(patients(&found), ["456"]);
        let found = findings(
            "Observation",
            &operation(json!([
                {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Observation.subject.reference"},
                {"name": "value", "valueString": "Patient/789"}
            ])),
        );
        assert_eq!(patients(&found), ["789"]);
        let found = findings(
            "Observation",
            &operation(json!([
                {"name": "type", "valueCode": "insert"}, {"name": "path", "valueString": "Observation.performer"},
                {"name": "index", "valueInteger": 0},
                {"name": "value", "valueReference": {"reference": "Practitioner/p"}}
            ])),
        );
        assert!(found.is_empty());
        for refused_patch in [
            operation(
                json!([{"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Observation.subject.where(true)"}, {"name": "value", "valueReference": {"reference": "Patient/123"}}]),
            ),
            operation(
                json!([{"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Observation.subject"}]),
            ),
            operation(
                json!([{"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Observation"}, {"name": "value", "valueReference": {"reference": "Patient/123"}}]),
            ),
            operation(
                json!([{"name": "type", "valueCode": "upsert"}, {"name": "path", "valueString": "Observation.status"}]),
            ),
            json!({"resourceType": "Parameters", "parameter": [{"name": "not-an-operation"}]}),
        ] {
            assert!(
                refused(&findings("Observation", &refused_patch)),
                "{refused_patch}"
            );
        }
        assert!(!refused(&findings(
            "Observation",
            &operation(
                json!([{"name": "type", "valueCode": "delete"}, {"name": "path", "valueString": "Observation.performer[0]"}])
            )
        )));
    }

    #[test]
    fn references_written_outside_the_patient_paths_are_judged_too() {
        let refused_forms = [
            json!([{"op": "add", "path": "/focus/-", "value": {"reference": "x/Patient/456"}}]),
            json!([{"op": "replace", "path": "/basedOn/0/reference", "value": "ftp://x/Patient/4"}]),
            json!([{"op": "add", "path": "/extension/-", "value": {"url": "http://x",
                "valueReference": {"reference": "Observation/../Patient/456"}}}]),
        ];
        for patch in refused_forms {
            assert!(refused(&findings("Observation", &patch)), "{patch}");
        }
        let other_patient =
            json!([{"op": "add", "path": "/focus/-", "value": {"reference": "Patient/456"}}]);
        assert_eq!(patients(&findings("Observation", &other_patient)), ["456"]);
        let plain =
            json!([{"op": "add", "path": "/hasMember/-", "value": {"reference": "Observation/2"}}]);
        assert!(findings("Observation", &plain).is_empty());
    }
}
