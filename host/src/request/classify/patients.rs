//! Which patients a request touches: ids from patient-compartment search parameters
//! (FHIR R4 compartmentdefinition-patient.html), from every Patient reference in a written
//! resource, and from the references a patch writes. Extraction reports what it can read
//! and skips what it cannot interpret; policies still see every parameter and decide on the
//! rest.

use serde_json::Value;

use crate::engine::Param;
use crate::request::fhir;

/// Search parameters whose only target type is Patient, so a bare id means `Patient/[id]`
/// (R4 search.html#reference: a bare id is only unambiguous when the parameter has one
/// target type). For the others (`subject` targets Patient, Group, Device, ...) a bare id
/// counts only with the `:Patient` type modifier.
const PATIENT_ONLY_PARAMS: &[&str] = &["patient", "beneficiary"];

/// How deep a written resource is searched for references: far deeper than any R4 resource
/// nests, so a crafted body cannot make the walk costly.
const MAX_REFERENCE_DEPTH: usize = 64;

/// Adds the patients named by `params` for a search on `resource_type`: the values of the
/// type's compartment parameters and of `patient` (also with the `:Patient` modifier), and
/// `_id` on Patient. Chained names (`subject.name`) and other modifiers (`:not`, `:missing`,
/// `:identifier`) do not name a patient by id and are skipped.
pub(super) fn from_params(resource_type: &str, params: &[Param], patients: &mut Vec<String>) {
    from_params_of(resource_type, params, false, patients);
}

/// As [`from_params`], for a type-level operation (`Patient/$export?patient=123`): its
/// parameters are the operation's, not search parameters, and an operation that takes
/// `patient` takes it on every type.
pub(super) fn from_operation_params(
    resource_type: &str,
    params: &[Param],
    patients: &mut Vec<String>,
) {
    from_params_of(resource_type, params, true, patients);
}

fn from_params_of(
    resource_type: &str,
    params: &[Param],
    operation: bool,
    patients: &mut Vec<String>,
) {
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
        // `patient` counts where R4 defines it as a reference to Patient (Observation's
        // `patient` is `subject` narrowed to Patient), even on types whose compartment entry
        // names only `subject`; not on the types that have no such parameter.
        // Names and type modifiers are case-sensitive (R4 search.html): `PATIENT=` is an
        // unknown parameter to the server, not a pin.
        // A server that ignores unknown parameters (search.html#errors,
        // `handling=lenient`) would search every patient where `patient` is not defined.
        let names_patient = (base == "patient"
            && (operation || fhir::defines_patient_param(resource_type)))
            || compartment.contains(&base);
        if !names_patient {
            continue;
        }
        let bare_id_allowed = match modifier {
            None => PATIENT_ONLY_PARAMS.contains(&base),
            Some("Patient") => true,
            Some(_) => continue,
        };
        for value in or_values(&param.value) {
            if let Some(id) = patient_id(value, bare_id_allowed) {
                patients.push(id.to_string());
            }
        }
    }
}

/// Adds the patients a written resource points at: for a Patient, its own `id`; for every
/// type, each Patient reference anywhere in it (`subject`, `performer`, `link.other`,
/// contained resources, extensions...). Counting every reference, not only the compartment
/// elements, means a write that mentions another patient anywhere is seen as touching them.
pub(super) fn from_resource(resource_type: &str, resource: &Value, patients: &mut Vec<String>) {
    if resource_type == "Patient"
        && let Some(id) = resource.get("id").and_then(Value::as_str)
        && fhir::is_valid_id(id)
    {
        patients.push(id.to_string());
    }
    push_all_references(resource, 0, patients);
}

/// Adds the patients a patch writes: every Patient reference in the values of a JSON Patch
/// (RFC 6902; a `/.../reference` path's string value included) or of a FHIRPath Patch
/// (a Parameters resource, R4 fhirpatch.html). `copy` and `move` carry no value; the
/// policies see the patch body and judge them.
pub(super) fn from_patch(patch: &Value, patients: &mut Vec<String>) {
    if let Some(operations) = patch.as_array() {
        for operation in operations {
            // Only `add` and `replace` write a value; `test` compares and `remove` deletes.
            let writes = matches!(
                operation.get("op").and_then(Value::as_str),
                Some("add" | "replace")
            );
            if !writes {
                continue;
            }
            let value = operation.get("value");
            let path = operation
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Some(Value::String(reference)) = value
                && path.ends_with("/reference")
                && let Some(id) = patient_id(reference, false)
            {
                patients.push(id.to_string());
            }
            if let Some(value) = value {
                push_all_references(value, 0, patients);
            }
        }
        return;
    }
    push_all_references(patch, 0, patients);
}

/// Every `reference` string (of a Reference) and `valueReference` under `value`.
fn push_all_references(value: &Value, depth: usize, patients: &mut Vec<String>) {
    if depth > MAX_REFERENCE_DEPTH {
        return;
    }
    match value {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get("reference")
                && let Some(id) = patient_id(reference, false)
            {
                patients.push(id.to_string());
            }
            for child in object.values() {
                push_all_references(child, depth + 1, patients);
            }
        }
        Value::Array(items) => {
            for item in items {
                push_all_references(item, depth + 1, patients);
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
