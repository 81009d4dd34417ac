//! Which patients a request touches: ids from patient-compartment search parameters
//! (FHIR R4 compartmentdefinition-patient.html), from references in a written resource, and
//! from a JSON Patch. Extraction reports what it can read and skips what it cannot
//! interpret; policies still see every parameter and decide on the rest.

use serde_json::Value;

use crate::engine::Param;
use crate::request::fhir;

/// Search parameters whose only target type is Patient, so a bare id means `Patient/[id]`
/// (R4 search.html#reference: a bare id is only unambiguous when the parameter has one
/// target type). For the others (`subject` targets Patient, Group, Device, ...) a bare id
/// counts only with the `:Patient` type modifier.
const PATIENT_ONLY_PARAMS: &[&str] = &["patient", "beneficiary"];

/// The top-level reference elements that point a written resource at its patient.
const REFERENCE_ELEMENTS: &[&str] = &["subject", "patient", "beneficiary"];

/// Adds the patients named by `params` for a search on `resource_type`: the values of the
/// type's compartment parameters and of `patient` (also with the `:Patient` modifier), and
/// `_id` on Patient. Chained names (`subject.name`) and other modifiers (`:not`, `:missing`,
/// `:identifier`) do not name a patient by id and are skipped.
pub(super) fn from_params(resource_type: &str, params: &[Param], patients: &mut Vec<String>) {
    let compartment = fhir::patient_compartment_params(resource_type);
    for param in params {
        if param.name.contains('.') {
            continue;
        }
        let (base, modifier) = match param.name.split_once(':') {
            Some((base, modifier)) => (base, Some(modifier)),
            None => (param.name.as_str(), None),
        };
        if resource_type == "Patient" && base == "_id" {
            // `_id` is a token of bare ids (search.html#id); with a modifier it no longer
            // names exactly these patients.
            if modifier.is_none() {
                let ids = or_values(&param.value).into_iter();
                patients.extend(ids.filter(|id| fhir::is_valid_id(id)).map(str::to_string));
            }
            continue;
        }
        // `patient` counts on every type: R4 defines it wherever it exists as a reference to
        // Patient (Observation's `patient` is `subject` narrowed to Patient), even on types
        // whose compartment entry names only `subject`.
        let names_patient = base.eq_ignore_ascii_case("patient")
            || compartment
                .iter()
                .any(|name| name.eq_ignore_ascii_case(base));
        if !names_patient {
            continue;
        }
        let bare_id_allowed = match modifier {
            None => PATIENT_ONLY_PARAMS
                .iter()
                .any(|name| name.eq_ignore_ascii_case(base)),
            Some(modifier) if modifier.eq_ignore_ascii_case("Patient") => true,
            Some(_) => continue,
        };
        for value in or_values(&param.value) {
            if let Some(id) = patient_id(value, bare_id_allowed) {
                patients.push(id.to_string());
            }
        }
    }
}

/// Adds the patients a resource body points at: for a compartment type, the `reference` of
/// its top-level `subject`, `patient` and `beneficiary` elements (single or repeated); for a
/// Patient, its own `id` and its `link.other` references.
pub(super) fn from_resource(resource_type: &str, resource: &Value, patients: &mut Vec<String>) {
    if fhir::patient_compartment_params(resource_type).is_empty() {
        return;
    }
    if resource_type == "Patient" {
        if let Some(id) = resource.get("id").and_then(Value::as_str)
            && fhir::is_valid_id(id)
        {
            patients.push(id.to_string());
        }
        for link in resource
            .get("link")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            push_references(link.get("other"), false, patients);
        }
    }
    for element in REFERENCE_ELEMENTS {
        push_references(resource.get(*element), false, patients);
    }
}

/// Adds the patients a JSON Patch (RFC 6902) writes into `subject`, `patient` or
/// `beneficiary`. Other patch formats (FHIRPath Patch, a Parameters resource) add nothing:
/// their target is the path's resource, which the policies see.
pub(super) fn from_json_patch(resource_type: &str, patch: &Value, patients: &mut Vec<String>) {
    if fhir::patient_compartment_params(resource_type).is_empty() {
        return;
    }
    let Some(operations) = patch.as_array() else {
        return;
    };
    for operation in operations {
        let writes = matches!(
            operation.get("op").and_then(Value::as_str),
            Some("add" | "replace")
        );
        let Some(path) = operation.get("path").and_then(Value::as_str) else {
            continue;
        };
        let mut pointer = path.strip_prefix('/').unwrap_or_default().split('/');
        let element = pointer.next().unwrap_or_default();
        if !writes || !REFERENCE_ELEMENTS.contains(&element) {
            continue;
        }
        // `/subject/reference` sets the reference string itself.
        let string_is_reference = path.ends_with("/reference");
        push_references(operation.get("value"), string_is_reference, patients);
    }
}

/// Adds the patient of a Reference, of each Reference in an array, or of a reference string
/// when `string_is_reference`.
fn push_references(value: Option<&Value>, string_is_reference: bool, patients: &mut Vec<String>) {
    let mut push = |reference: Option<&str>| {
        if let Some(id) = reference.and_then(|reference| patient_id(reference, false)) {
            patients.push(id.to_string());
        }
    };
    match value {
        Some(Value::String(reference)) if string_is_reference => push(Some(reference)),
        Some(Value::Object(object)) => push(object.get("reference").and_then(Value::as_str)),
        Some(Value::Array(items)) => {
            for item in items {
                push(item.get("reference").and_then(Value::as_str));
            }
        }
        _ => {}
    }
}

/// The patient id of a reference: `Patient/123`, `Patient/123/_history/2`, an absolute URL
/// ending in one of these, or (when `bare_id_allowed`) a bare `123`.
pub(super) fn patient_id(reference: &str, bare_id_allowed: bool) -> Option<&str> {
    if bare_id_allowed && fhir::is_valid_id(reference) {
        return Some(reference);
    }
    let relative = match absolute_rest(reference) {
        Some(rest) => rest.rfind("/Patient/").and_then(|at| rest.get(at + 1..))?,
        None => reference,
    };
    let mut parts = relative.strip_prefix("Patient/")?.split('/');
    let id = parts.next().filter(|id| fhir::is_valid_id(id))?;
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => Some(id),
        (Some("_history"), Some(version), None) if fhir::is_valid_id(version) => Some(id),
        _ => None,
    }
}

/// The part after `http://` or `https://`, for an absolute reference.
fn absolute_rest(reference: &str) -> Option<&str> {
    let (scheme, rest) = reference.split_once("://")?;
    (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")).then_some(rest)
}

/// The values of a FHIR OR list (search.html#combining): split on `,` except where escaped
/// as `\,` (search.html#escaping). Escaped values keep their backslash and so never pass as
/// ids.
pub(super) fn or_values(value: &str) -> Vec<&str> {
    let mut values = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (index, character) in value.char_indices() {
        match character {
            '\\' if !escaped => escaped = true,
            ',' if !escaped => {
                values.push(value.get(start..index).unwrap_or_default());
                start = index + 1;
            }
            _ => escaped = false,
        }
    }
    values.push(value.get(start..).unwrap_or_default());
    values
}
