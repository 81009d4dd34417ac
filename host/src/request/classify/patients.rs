//! Which patients a request touches: ids from patient-compartment search parameters
//! (FHIR R4 compartmentdefinition-patient.html) and from the last link of chained and
//! `_has` parameters, from every Patient reference in a written resource, and from the
//! references a patch writes. References are read with the parser policies use
//! (`ehrgate_fhir::reference`); a form a strict reader refuses (`x/Patient/456`,
//! `Observation/../Patient/456`) still counts every patient a lenient server could resolve
//! it to. Extraction reports what it can read and skips what it cannot interpret; policies
//! still see every parameter and decide on the rest.

use serde_json::Value;

use ehrgate_fhir::search::{LastLink, last_link};

use crate::engine::Param;
use crate::request::fhir::{self, Reference};

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
        if let Some(link) = last_link(&param.name) {
            from_last_link(link, &param.value, patients);
            continue;
        }
        if param.name.contains('.') || param.name.starts_with("_has:") {
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
            push_patients_of(value, bare_id_allowed, patients);
        }
    }
}

/// Adds the patients the value of a chained or `_has` parameter names (R4 search.html#has:
/// `Patient?_id=123&_has:Observation:patient:performer=Patient/456` asks a question about
/// patient 456): every Patient reference among its values, and bare ids where the last
/// parameter targets Patient alone (`patient`, `beneficiary`, `:Patient`, `_id` on Patient).
fn from_last_link(link: LastLink<'_>, value: &str, patients: &mut Vec<String>) {
    let bare_id_allowed = match link.modifier {
        None => {
            PATIENT_ONLY_PARAMS.contains(&link.parameter)
                || (link.parameter == "_id" && link.resource_type == Some("Patient"))
        }
        Some(modifier) => modifier == "Patient",
    };
    for value in or_values(value) {
        push_patients_of(value, bare_id_allowed, patients);
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
            {
                push_patients_of(reference, false, patients);
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
            if let Some(Value::String(reference)) = object.get("reference") {
                push_patients_of(reference, false, patients);
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

/// Adds the patients `reference` names: the target of a literal `Patient` reference
/// (relative or absolute), every patient a lenient server could resolve an odd form to, or
/// (when `bare_id_allowed`) a bare id. Conditional, contained and `urn:` references name
/// nobody the gateway can see.
pub(super) fn push_patients_of(reference: &str, bare_id_allowed: bool, patients: &mut Vec<String>) {
    if bare_id_allowed && fhir::is_valid_id(reference) {
        patients.push(reference.to_string());
        return;
    }
    match Reference::parse(reference) {
        Reference::Relative(target) | Reference::Absolute { target, .. } => {
            if target.resource_type == "Patient" {
                patients.push(target.id.to_string());
            }
        }
        Reference::Odd(_) => {
            patients.extend(fhir::mentioned_ids(reference, "Patient").map(str::to_string));
        }
        Reference::Contained(_) | Reference::Placeholder(_) | Reference::Conditional { .. } => {}
    }
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
