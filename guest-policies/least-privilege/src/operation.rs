//! Operations (R4 operations.html): `$everything` needs `rs` on every type it can return
//! and, bound, the launch patient; Bulk Data `$export` needs `_type` within the granted types
//! and the right scope context, and Group exports only of configured Groups; any other
//! operation is refused unless the config lists it with the permissions it needs.

use ehrgate_sdk::fhir;
use ehrgate_sdk::{Permission, Permissions};

use crate::action::Action;
use crate::caller::{Binding, Caller, Notes, Target, other_patient};
use crate::config::{Context, lists_context};
use crate::references;
use crate::refusal::{self, Refusal};
use crate::search::{Confinement, confinement, list_values};

/// `rs`: what `$everything` and `$export` need on each type they return (healthcare
/// reference; SMART v1 `.read`).
const READ_AND_SEARCH: Permissions = Permissions::READ_AND_SEARCH;

pub fn check(caller: &Caller<'_>, action: &Action<'_>, notes: &mut Notes) -> Result<(), Refusal> {
    let name = action.operation.unwrap_or_default();
    match name {
        "everything" => everything(caller, action, notes),
        "export" => export(caller, action, notes),
        _ => match caller.config.operations.get(name) {
            Some(letters) => listed(caller, action, name, letters.0, notes),
            None => Err(Refusal::new(
                refusal::OPERATION,
                format!("operation `${name}` is not allowed by this policy"),
            )),
        },
    }
}

/// What an operation needs: permissions on targets, from unrestricted scopes (a granular
/// scope cannot restrict what an operation returns), optionally only of some contexts.
struct Need<'a> {
    operation: &'a str,
    permissions: Permissions,
    contexts: Option<&'a [Context]>,
    missing_rule: &'static str,
}

/// The binding under which the caller holds everything `need` asks for on `targets`:
/// unbound when unbound grants cover every target, else the patient the bound ones are
/// confined to.
fn binding_for<'c>(
    caller: &'c Caller<'_>,
    targets: &[Target<'_>],
    need: &Need<'_>,
) -> Result<Binding<'c>, Refusal> {
    let mut bound_to = None;
    for target in targets {
        for permission in Permission::ALL {
            if !need.permissions.contains(permission) {
                continue;
            }
            let described = match target {
                Target::Type(name) => format!("`{name}`"),
                Target::EveryType => "every type (`*`)".to_string(),
            };
            let missing = || {
                Refusal::new(
                    need.missing_rule,
                    format!(
                        "`${}` needs `{}` on {described} from a scope without restrictions",
                        need.operation,
                        permission.letter()
                    ),
                )
            };
            let grants = match caller.grants(*target, permission) {
                Ok(grants) => grants,
                Err(refused) if refused.rule == refusal::SCOPE => return Err(missing()),
                Err(refused) => return Err(refused),
            };
            let unrestricted: Vec<_> = grants
                .iter()
                .filter(|grant| !grant.scope.is_granular())
                .collect();
            if unrestricted.is_empty() {
                return Err(missing());
            }
            let usable: Vec<_> = unrestricted
                .into_iter()
                .filter(|grant| {
                    need.contexts
                        .is_none_or(|contexts| lists_context(contexts, grant.scope.context))
                })
                .collect();
            if usable.is_empty() {
                return Err(Refusal::new(
                    refusal::EXPORT_CONTEXT,
                    format!(
                        "`${}` here needs scopes of context {}",
                        need.operation,
                        describe_contexts(need.contexts.unwrap_or_default())
                    ),
                ));
            }
            if !usable.iter().any(|grant| grant.binding == Binding::Unbound) {
                bound_to = bound_to.or(usable.iter().find_map(|grant| match grant.binding {
                    Binding::Patient(patient) => Some(patient),
                    Binding::Unbound => None,
                }));
            }
        }
    }
    Ok(bound_to.map_or(Binding::Unbound, Binding::Patient))
}

fn describe_contexts(contexts: &[Context]) -> String {
    let names: Vec<&str> = contexts
        .iter()
        .map(|context| match context {
            Context::Patient => "`patient/`",
            Context::User => "`user/`",
            Context::System => "`system/`",
        })
        .collect();
    names.join(" or ")
}

/// `Patient/[id]/$everything` and `Encounter/[id]/$everything` (R4 patient-operation-everything,
/// encounter-operation-everything): `rs` on the instance's type and on every type it can
/// return (`_type` narrows them). Bound, only the launch patient's own record; the type-level
/// form returns every patient's and is refused.
fn everything(caller: &Caller<'_>, action: &Action<'_>, notes: &mut Notes) -> Result<(), Refusal> {
    let resource_type = match action.resource_type {
        Some(resource_type @ ("Patient" | "Encounter")) => resource_type,
        _ => {
            return Err(Refusal::new(
                refusal::OPERATION,
                "`$everything` is defined on Patient and Encounter only",
            ));
        }
    };
    let requested = list_values(action.params, "_type");
    if let Some(unknown) = requested.iter().find(|name| !fhir::is_resource_type(name)) {
        return Err(Refusal::new(
            refusal::OPERATION,
            format!("`_type` names `{unknown}`, which is not an R4 resource type"),
        ));
    }
    let mut targets = vec![Target::Type(resource_type)];
    match (&caller.config.everything_types, requested.is_empty()) {
        (_, false) => targets.extend(requested.iter().map(|name| Target::Type(name))),
        (Some(configured), true) => {
            targets.extend(configured.iter().map(|name| Target::Type(name.as_str())));
        }
        (None, true) => targets.extend(
            fhir::RESOURCE_TYPES
                .iter()
                .filter(|name| fhir::is_compartment_type(name))
                .map(|name| Target::Type(name)),
        ),
    }
    let need = Need {
        operation: "everything",
        permissions: READ_AND_SEARCH,
        contexts: None,
        missing_rule: refusal::OPERATION,
    };
    let Binding::Patient(patient) = binding_for(caller, &targets, &need)? else {
        return Ok(());
    };
    let problem = match (resource_type, action.resource_id) {
        ("Patient", Some(id)) if id != patient => {
            format!("{} is not the launch patient", action.describe())
        }
        _ if other_patient(action.patients, patient).is_some() => format!(
            "`$everything` on {} names another patient than the launch patient",
            action.describe()
        ),
        ("Patient", Some(_)) => return Ok(()),
        // Checked in the response: the Encounter's subject is not visible before it.
        ("Encounter", Some(_)) => return Ok(()),
        _ => format!(
            "type-level `{resource_type}/$everything` returns every patient's records, not only \
             the launch patient's"
        ),
    };
    caller.compartment_refusal(
        Refusal::new(
            refusal::COMPARTMENT,
            format!("{problem} (`Patient/{patient}`)"),
        ),
        notes,
    )
}

/// Bulk Data `$export` kick-off (hl7.org/fhir/uv/bulkdata, export.html): system-level and
/// Group-level exports need `system/` scopes (SMART Backend Services); Patient-level exports
/// need one of the configured contexts. Every `_type` (and `_typeFilter` type) needs `rs`;
/// no `_type` means every type, which needs a `*` scope.
fn export(caller: &Caller<'_>, action: &Action<'_>, notes: &mut Notes) -> Result<(), Refusal> {
    const SYSTEM: &[Context] = &[Context::System];
    let contexts: &[Context] = match (action.resource_type, action.resource_id) {
        (None, None) => SYSTEM,
        (Some("Group"), Some(group)) => {
            let groups = &caller.config.export.group_ids;
            if !groups
                .iter()
                .any(|allowed| allowed == "*" || allowed == group)
            {
                return Err(Refusal::new(
                    refusal::EXPORT_GROUP,
                    format!("`Group/{group}` is not a Group this policy lets clients export"),
                ));
            }
            SYSTEM
        }
        (Some("Patient"), None) => &caller.config.export.patient_level_contexts,
        _ => {
            return Err(Refusal::new(
                refusal::OPERATION,
                format!(
                    "`$export` on {} is not a Bulk Data kick-off (expected `/$export`, \
                     `/Patient/$export` or `/Group/[id]/$export`)",
                    action.describe()
                ),
            ));
        }
    };
    let types = list_values(action.params, "_type");
    for name in &types {
        if !fhir::is_resource_type(name) {
            return Err(Refusal::new(
                refusal::EXPORT_TYPE,
                format!("`_type` names `{name}`, which is not an R4 resource type"),
            ));
        }
    }
    for filter in list_values(action.params, "_typeFilter") {
        let filtered = filter.split('?').next().unwrap_or_default();
        let listed = types.is_empty() || types.contains(&filtered);
        if !fhir::is_resource_type(filtered) || !listed {
            return Err(Refusal::new(
                refusal::EXPORT_TYPE,
                format!("`_typeFilter` names `{filtered}`, which is not among the exported types"),
            ));
        }
    }
    let targets: Vec<Target<'_>> = if types.is_empty() {
        vec![Target::EveryType]
    } else {
        types.iter().map(|name| Target::Type(name)).collect()
    };
    let need = Need {
        operation: "export",
        permissions: READ_AND_SEARCH,
        contexts: Some(contexts),
        missing_rule: refusal::EXPORT_TYPE,
    };
    let Binding::Patient(patient) = binding_for(caller, &targets, &need)? else {
        return Ok(());
    };
    let problem = match export_confinement(action, patient) {
        Confinement::Pinned => return Ok(()),
        Confinement::Unpinned => "must be pinned with".to_string(),
        Confinement::Other(other) => {
            format!("names `Patient/{other}`; it must name only the launch patient, as")
        }
    };
    caller.compartment_refusal(
        Refusal::new(
            refusal::COMPARTMENT,
            format!(
                "a Patient-level export by a patient-bound token {problem} `patient={patient}`"
            ),
        ),
        notes,
    )
}

/// Bulk Data `patient` (export.html, query or `Parameters` body, merged into the params):
/// every value must be the launch patient, and there must be one.
fn export_confinement(action: &Action<'_>, patient: &str) -> Confinement {
    let mut pinned = false;
    for param in action.params {
        let (base, modifier) = ehrgate_sdk::search::split_modifier(&param.name);
        if base != "patient" {
            continue;
        }
        for value in ehrgate_sdk::search::split_unescaped(&param.value, ',') {
            let id = match (modifier, fhir::patient_id_of_reference(value)) {
                (None, Some(id)) => id,
                (None, None) if fhir::is_valid_id(value) => value,
                _ => return Confinement::Unpinned,
            };
            if id != patient {
                return Confinement::Other(id.to_string());
            }
            pinned = true;
        }
    }
    if let Some(other) = other_patient(action.patients, patient) {
        return Confinement::Other(other.to_string());
    }
    if pinned {
        Confinement::Pinned
    } else {
        Confinement::Unpinned
    }
}

/// An operation the config lists with the permissions it needs on its resource type. Bound,
/// the instance-level form on Patient needs the launch patient, on another resource that may
/// belong to a patient only an operation that answers with the instance itself (see
/// [`returns_the_instance`]), the type-level form on a compartment type must be pinned to
/// it, no form may name another patient, and the system-level form cannot be confined.
/// `$graphql` queries reach across resources and are never allowed for bound grants.
fn listed(
    caller: &Caller<'_>,
    action: &Action<'_>,
    name: &str,
    permissions: Permissions,
    notes: &mut Notes,
) -> Result<(), Refusal> {
    let target = action.resource_type.map_or(Target::EveryType, Target::Type);
    let need = Need {
        operation: name,
        permissions,
        contexts: None,
        missing_rule: refusal::OPERATION,
    };
    let Binding::Patient(patient) = binding_for(caller, &[target], &need)? else {
        return Ok(());
    };
    if name == "graphql" {
        return Err(Refusal::new(
            refusal::OPERATION,
            "`$graphql` queries cannot be confined to the launch patient's compartment",
        ));
    }
    let problem = match (action.resource_type, action.resource_id) {
        (None, _) => "is not confined to",
        (Some("Patient"), Some(id)) if id != patient => "is not confined to",
        _ if other_patient(action.patients, patient).is_some() => "names another patient than",
        (Some("Patient"), Some(_)) => return Ok(()),
        // Another patient's resource, unless the response is the instance itself, where
        // the response hook sees whose it is. `$meta`, `$meta-delete` or `$validate` answer
        // with a Meta or an OperationOutcome: they would read or change another patient's
        // resource unseen.
        (Some(resource_type), Some(_)) if !references::patient_paths(resource_type).is_empty() => {
            if returns_the_instance(name, resource_type, action) {
                return Ok(());
            }
            "does not return the instance, so the gateway cannot check that it belongs to"
        }
        (Some(_), Some(_)) => return Ok(()),
        (Some(resource_type), None) => match confinement(resource_type, action, patient) {
            Confinement::Pinned => return Ok(()),
            Confinement::Unpinned if !fhir::is_compartment_type(resource_type) => return Ok(()),
            Confinement::Unpinned => "is not confined to",
            Confinement::Other(_) => "names another patient than",
        },
    };
    caller.compartment_refusal(
        Refusal::new(
            refusal::COMPARTMENT,
            format!(
                "`${name}` on {} {problem} the launch patient `Patient/{patient}`",
                action.describe()
            ),
        ),
        notes,
    )
}

/// Instance operations on a patient's resources (other than the Patient) that answer with
/// the instance itself, so that the response hook can place it: `Composition/[id]/$document`
/// (R4 composition-operation-document: a document Bundle whose first entry is the
/// Composition, every entry checked), unless it also stores the document (`persist=true`).
/// Every other instance operation on such a resource is refused for patient-bound tokens.
fn returns_the_instance(name: &str, resource_type: &str, action: &Action<'_>) -> bool {
    match (name, resource_type) {
        ("document", "Composition") => !action
            .params
            .iter()
            .any(|param| param.name.starts_with("persist") && param.value != "false"),
        _ => false,
    }
}
