//! FHIR classification: which RESTful interaction a request performs, on which resource type,
//! id and version, which operation it invokes, and which patients it touches, decided from
//! the method, the canonical target below the route's FHIR base and the body (FHIR R4
//! http.html). Batch and transaction bundles are classified entry by entry (`bundle`).
//!
//! The classifier never guesses: a shape it does not know becomes `Interaction::Other` (which
//! policies deny), and a spelling a server might read differently is rejected.

use crate::engine::{Entry, Interaction, Param};
use crate::request::Rejection;
use crate::request::canonical::CanonicalTarget;
use crate::request::fhir::{self, TypeName};

use body::{Body, bundle_body, check_resource_id, check_resource_type, resource_body};
use shape::{Shape, interaction, shape};

mod body;
mod bundle;
mod json;
mod patients;
mod shape;
#[cfg(test)]
mod tests;

/// What a request does, as far as the gateway can tell.
#[derive(Debug, Clone)]
pub struct Classification {
    pub interaction: Interaction,
    /// The resource type the interaction acts on: the path's type, or for a compartment
    /// search (`Patient/1/Observation`) the searched type. `None` for system-level
    /// interactions and for paths that name no R4 resource type.
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// The version id of a `vread`.
    pub version_id: Option<String>,
    /// The operation name without `$`.
    pub operation: Option<String>,
    /// Patient ids (bare ids, `123`, not `Patient/123`), sorted and unique.
    pub patients: Vec<String>,
    /// For batch and transaction, every entry in Bundle order; empty otherwise.
    pub entries: Vec<Entry>,
}

/// Classifies a request from its method, its canonical target *below the route's FHIR base*
/// (segments like `["Patient", "123"]`), its params (query plus the form parameters of a
/// `POST _search`, already merged by the caller) and the body (for create, update, patch,
/// batch and transaction; `None` when absent).
///
/// Repeated governing parameters of the request itself are the caller's to check
/// (`canonical::check_governing_duplicates`); those of batch entries are checked here.
pub fn classify(
    method: &http::Method,
    target: &CanonicalTarget,
    body: Option<&[u8]>,
    max_batch_entries: usize,
) -> Result<Classification, Rejection> {
    let body = match body {
        Some(bytes) if !bytes.is_empty() => Body::Raw(bytes),
        _ => Body::Absent,
    };
    classify_request(
        method.as_str(),
        &target.segments,
        &target.params,
        body,
        Level::Request { max_batch_entries },
    )
}

/// Whether a request is top-level (and may be a batch) or an entry of a batch.
#[derive(Debug, Clone, Copy)]
enum Level {
    Request { max_batch_entries: usize },
    BundleEntry,
}

fn classify_request(
    method: &str,
    segments: &[String],
    params: &[Param],
    body: Body<'_>,
    level: Level,
) -> Result<Classification, Rejection> {
    let shape = shape(segments)?;
    let mut classification = Classification {
        interaction: interaction(method, shape),
        resource_type: None,
        resource_id: None,
        version_id: None,
        operation: None,
        patients: Vec::new(),
        entries: Vec::new(),
    };
    let mut patients = Vec::new();
    let mut search_type = None;
    let mut operation_type = None;
    match shape {
        Shape::Root if method == "POST" => {
            let Level::Request { max_batch_entries } = level else {
                return Err(Rejection::bad_request(
                    "classify.nested-bundle",
                    "the entry posts to the FHIR base, which would nest a Bundle; expected a \
                     request below the base",
                ));
            };
            let bundle = bundle_body(body)?;
            let (interaction, entries) = bundle::classify_bundle(&bundle, max_batch_entries)?;
            classification.interaction = interaction;
            for entry in &entries {
                patients.extend(entry.patients.iter().cloned());
            }
            classification.entries = entries;
        }
        Shape::Root | Shape::SystemSearch => {
            // R4 search.html#_type: a system search narrowed by `_type` searches those types,
            // with their parameters. A patient counts only if the parameters pin every listed
            // type to them: a parameter one type defines and another does not is ignored by a
            // lenient server for the second type, which is then searched unpinned.
            let mut pinned: Option<Vec<String>> = None;
            for param in params.iter().filter(|param| param.name == "_type") {
                for name in patients::or_values(&param.value) {
                    let mut for_type = Vec::new();
                    if let TypeName::Known(resource_type) = fhir::resource_type(name) {
                        patients::from_params(resource_type, params, &mut for_type);
                    }
                    pinned = Some(match pinned {
                        None => for_type,
                        Some(so_far) => so_far
                            .into_iter()
                            .filter(|patient| for_type.contains(patient))
                            .collect(),
                    });
                }
            }
            patients.extend(pinned.unwrap_or_default());
        }
        Shape::Metadata | Shape::SystemHistory | Shape::Unrecognized => {}
        Shape::SystemOperation(operation) => {
            classification.operation = Some(operation.to_string());
        }
        Shape::Type(resource_type)
        | Shape::TypeSearch(resource_type)
        | Shape::TypeHistory(resource_type) => {
            classification.resource_type = Some(resource_type.to_string());
            search_type = Some(resource_type);
        }
        Shape::TypeOperation(resource_type, operation) => {
            classification.resource_type = Some(resource_type.to_string());
            classification.operation = Some(operation.to_string());
            operation_type = Some(resource_type);
        }
        Shape::Instance(resource_type, id) | Shape::InstanceHistory(resource_type, id) => {
            set_instance(&mut classification, &mut patients, resource_type, id);
        }
        Shape::Version(resource_type, id, version) => {
            set_instance(&mut classification, &mut patients, resource_type, id);
            classification.version_id = Some(version.to_string());
        }
        Shape::InstanceOperation(resource_type, id, operation) => {
            set_instance(&mut classification, &mut patients, resource_type, id);
            classification.operation = Some(operation.to_string());
        }
        Shape::Compartment {
            patient,
            resource_type,
            ..
        } => {
            classification.resource_type = Some(resource_type.to_string());
            patients.push(patient.to_string());
            search_type = Some(resource_type);
        }
    }
    // Type-level requests carry search criteria in their parameters: a search, a type-level
    // operation such as `Observation/$lastn?patient=1`, or a conditional write that the
    // policies see as `Other`.
    if let Some(resource_type) = search_type {
        patients::from_params(resource_type, params, &mut patients);
    }
    if let Some(resource_type) = operation_type {
        patients::from_operation_params(resource_type, params, &mut patients);
    }
    match (classification.interaction, shape) {
        (Interaction::Create, Shape::Type(resource_type)) => {
            if let Some(resource) = resource_body(resource_type, body)? {
                check_resource_type(&resource, resource_type)?;
                patients::from_resource(resource_type, &resource, &mut patients);
            }
        }
        (Interaction::Update, Shape::Instance(resource_type, id)) => {
            if let Some(resource) = resource_body(resource_type, body)? {
                check_resource_type(&resource, resource_type)?;
                check_resource_id(&resource, id)?;
                patients::from_resource(resource_type, &resource, &mut patients);
            }
        }
        (Interaction::Patch, Shape::Instance(resource_type, _)) => {
            if let Some(patch) = resource_body(resource_type, body)? {
                patients::from_patch(&patch, &mut patients);
            }
        }
        _ => {}
    }
    patients.sort_unstable();
    patients.dedup();
    classification.patients = patients;
    Ok(classification)
}

/// The patients a stored resource belongs to, as the gateway reads them from a written one:
/// for a Patient its own id, and every Patient reference anywhere in it. Sorted and unique.
/// The pre-read of a write by id (`request::stored`) uses it on what the upstream holds.
pub fn stored_patients(resource_type: &str, resource: &serde_json::Value) -> Vec<String> {
    let mut found = Vec::new();
    patients::from_resource(resource_type, resource, &mut found);
    found.sort_unstable();
    found.dedup();
    found
}

/// The patient id of a literal reference (`Patient/123`, or an absolute URL ending in it),
/// as the classifier reads references.
pub fn patient_of_reference(reference: &str) -> Option<&str> {
    let target = fhir::Reference::parse(reference).target()?;
    (target.resource_type == "Patient").then_some(target.id)
}

fn set_instance(
    classification: &mut Classification,
    patients: &mut Vec<String>,
    resource_type: &str,
    id: &str,
) {
    classification.resource_type = Some(resource_type.to_string());
    classification.resource_id = Some(id.to_string());
    if resource_type == "Patient" {
        patients.push(id.to_string());
    }
}
