//! Searches (`s`) and the leaks through their parameters (healthcare reference, "known leaks
//! a gateway must close for patient-scoped tokens"): a patient-bound search must be pinned
//! to the launch patient by a parameter its own type defines (each `_type` of a system
//! search on its own), and may name no other patient on any type; `_include` / `_revinclude` only of readable types, never `*`, and
//! `:iterate` only when unbound; chained and `_has:` searches only when pinned; `_filter`,
//! `_query`, `_contained` refused when bound.

use ehrgate_sdk::{Param, Permission};
use ehrgate_sdk::{fhir, search};

use crate::action::{Action, any_grant};
use crate::caller::{Binding, Caller, Notes, Target, other_patient};
use crate::refusal::{self, Refusal};

/// A type-level search, or a compartment search (`Patient/[id]/Observation`, whose patient
/// the host lists among the request's patients).
pub fn check_type_search(
    caller: &Caller<'_>,
    action: &Action<'_>,
    resource_type: &str,
    notes: &mut Notes,
) -> Result<(), Refusal> {
    let grants = caller.grants(Target::Type(resource_type), Permission::Search)?;
    any_grant(&grants, |grant| {
        // SMART v2 granular scopes: the scope applies only to a search restricted the same
        // way, so the server's answer stays inside the grant.
        if !grant.scope.restrictions_carried_by(action.params) {
            let restrictions: Vec<String> = grant
                .scope
                .restrictions
                .iter()
                .map(|r| format!("{}={}", r.name, r.value))
                .collect();
            return Err(Refusal::new(
                refusal::SCOPE,
                format!(
                    "the scope that grants `s` on `{resource_type}` applies only to searches \
                     carrying `{}`",
                    restrictions.join("&")
                ),
            ));
        }
        check_params(caller, action, Some(resource_type), grant.binding, notes)
    })
}

/// A system-level search: `_type` names the types searched (R4 search.html#_type), each of
/// which needs `s`; without `_type` every type is searched.
pub fn check_system_search(
    caller: &Caller<'_>,
    action: &Action<'_>,
    notes: &mut Notes,
) -> Result<(), Refusal> {
    let types = list_values(action.params, "_type");
    if types.is_empty() {
        let grants = caller.grants(Target::EveryType, Permission::Search)?;
        return any_grant(&grants, |grant| match grant.binding {
            Binding::Unbound => check_params(caller, action, None, grant.binding, notes),
            Binding::Patient(patient) => caller.compartment_refusal(
                Refusal::new(
                    refusal::COMPARTMENT,
                    format!(
                        "a search across every type cannot be pinned to the launch patient \
                         `Patient/{patient}`; name the types with `_type`"
                    ),
                ),
                notes,
            ),
        });
    }
    for resource_type in types {
        if !fhir::is_resource_type(resource_type) {
            return Err(Refusal::new(
                refusal::SCOPE,
                format!("`_type` names `{resource_type}`, which is not an R4 resource type"),
            ));
        }
        check_type_search(caller, action, resource_type, notes)?;
    }
    Ok(())
}

/// The parameter checks of a search on `resource_type` (`None`: every type) under one grant.
fn check_params(
    caller: &Caller<'_>,
    action: &Action<'_>,
    resource_type: Option<&str>,
    binding: Binding<'_>,
    notes: &mut Notes,
) -> Result<(), Refusal> {
    check_includes(caller, action.params, binding)?;
    check_reverse_chain_types(caller, action.params)?;
    let Binding::Patient(patient) = binding else {
        return Ok(());
    };
    if let Some(param) = action.params.iter().find(|param| {
        caller
            .config
            .refused_search_params
            .iter()
            .any(|refused| refused == base_name(&param.name))
    }) {
        return Err(Refusal::new(
            refusal::SEARCH_PARAMETER,
            format!(
                "search parameter `{}` is refused for patient-bound tokens: the gateway cannot \
                 tell which patients it reaches",
                param.name
            ),
        ));
    }
    // Compartment types, and the types outside it whose resources still name their patient
    // (Task `for`, Device `patient`, ...): a patient-bound search of either must be pinned,
    // or it would count or list everybody's (`Task?code=x&_summary=count`).
    let must_pin = resource_type.is_some_and(|name| {
        fhir::is_compartment_type(name) || !fhir::patient_link_params(name).is_empty()
    });
    let confinement = resource_type.map_or(Confinement::Unpinned, |resource_type| {
        confinement(resource_type, action, patient)
    });
    let pinned = must_pin && confinement == Confinement::Pinned;
    // Chains (`subject.name=`) and reverse chains (`_has:`) ask questions about other
    // resources: answered across compartments they are an oracle, so they need a search
    // already confined to the launch patient. One that names another patient (the host
    // lists the patients of their last link) is refused below as naming them.
    let names_other = matches!(confinement, Confinement::Other(_));
    if !pinned
        && !names_other
        && let Some(param) = action
            .params
            .iter()
            .find(|param| param.name.contains('.') || param.name.starts_with("_has:"))
    {
        caller.compartment_refusal(
            Refusal::new(
                refusal::CHAIN,
                format!(
                    "chained or `_has` parameter `{}` needs a search pinned to the launch \
                     patient `Patient/{patient}`",
                    param.name
                ),
            ),
            notes,
        )?;
    }
    // Any type, in the compartment or not (a `Device?patient=`, a `Patient/456/Device`),
    // may name only the launch patient; a compartment type must also be pinned to it.
    let searched = resource_type.map_or_else(|| action.describe(), |name| format!("`{name}`"));
    let problem = match confinement {
        Confinement::Other(other) => format!(
            "the search on {searched} names `Patient/{other}`, not only the launch patient \
             `Patient/{patient}`"
        ),
        Confinement::Unpinned if must_pin => {
            let pin = match resource_type {
                Some("Patient") => format!("_id={patient}"),
                Some(name) if !fhir::defines_patient_param(name) => {
                    let first = fhir::patient_compartment_params(name)
                        .first()
                        .copied()
                        .unwrap_or("subject");
                    format!("{first}=Patient/{patient}")
                }
                _ => format!("patient={patient}"),
            };
            format!(
                "the search on {searched} is not pinned to the launch patient \
                 `Patient/{patient}`; expected `{pin}` (or another compartment parameter of \
                 the type naming it)"
            )
        }
        Confinement::Unpinned | Confinement::Pinned => return Ok(()),
    };
    caller.compartment_refusal(Refusal::new(refusal::COMPARTMENT, problem), notes)
}

/// Whether a search on `resource_type` is confined to `patient`.
#[derive(Debug, PartialEq, Eq)]
pub enum Confinement {
    /// At least one parameter (or the compartment path) confines it, and every one that
    /// does names only the launch patient.
    Pinned,
    /// Nothing confines it.
    Unpinned,
    /// It names another patient (in a confining parameter, the compartment path or the
    /// patients the host found).
    Other(String),
}

/// Whether `base` references the patient of a `resource_type` search: one of the type's
/// compartment parameters, `patient` where R4 defines it for the type, and the parameters
/// of the types outside the compartment that name a patient (Task `patient`, `subject`).
/// Names are case-sensitive (R4 search.html): a server reads `PATIENT=` as an unknown
/// parameter, not as a pin.
fn names_patient(resource_type: &str, base: &str) -> bool {
    fhir::patient_compartment_params(resource_type).contains(&base)
        || (base == "patient" && fhir::defines_patient_param(resource_type))
        || fhir::patient_link_params(resource_type).contains(&base)
}

/// How far the parameters (and a compartment path, `Patient/[id]/[type]`) of a search on
/// `resource_type` confine it to `patient`, computed for that type: in a system search each
/// `_type` is judged on its own, so `_id=123` pins the Patient part and nothing else. A
/// parameter confines only when every one of its `,` alternatives (OR, search.html
/// #combining) names a patient: `subject=Patient/123,456` also matches whatever a server
/// makes of the bare `456`. A bare id counts only where the parameter targets Patient
/// alone (`patient`, `beneficiary`) or with the `:Patient` modifier; other modifiers
/// (`:not`, `:missing`, `:identifier`) and chains confine nothing. Separate parameters are
/// AND-ed, so one that confines suffices.
pub fn confinement(resource_type: &str, action: &Action<'_>, patient: &str) -> Confinement {
    let mut named: Vec<&str> = Vec::new();
    let mut confining = 0_usize;
    let mut confining_others = false;
    if let Some(id) = compartment_path_patient(action.path, resource_type) {
        confining += 1;
        named.push(id);
    }
    for param in action.params {
        if param.name.contains('.') {
            continue;
        }
        let (base, modifier) = search::split_modifier(&param.name);
        let bare_allowed = if resource_type == "Patient" && base == "_id" {
            if modifier.is_some() {
                continue;
            }
            true
        } else if names_patient(resource_type, base) {
            match modifier {
                None => matches!(base, "patient" | "beneficiary"),
                Some("Patient") => true,
                Some(_) => continue,
            }
        } else {
            continue;
        };
        let mut all_resolve = true;
        let before = named.len();
        for value in search::split_unescaped(&param.value, ',') {
            match patient_of_value(value, bare_allowed) {
                Some(id) => named.push(id),
                None => all_resolve = false,
            }
        }
        if all_resolve {
            confining += 1;
            confining_others |= named
                .get(before..)
                .unwrap_or_default()
                .iter()
                .any(|id| *id != patient);
        }
    }
    if let Some(other) = named
        .iter()
        .copied()
        .find(|id| *id != patient)
        .or_else(|| other_patient(action.patients, patient))
    {
        return Confinement::Other(other.to_string());
    }
    if confining > 0 && !confining_others {
        Confinement::Pinned
    } else {
        Confinement::Unpinned
    }
}

/// The patient of a compartment search path (`/Patient/[id]/[type]`, `/_search` for POST)
/// on `resource_type`.
fn compartment_path_patient<'p>(path: &'p str, resource_type: &str) -> Option<&'p str> {
    let mut segments = path.strip_prefix('/')?.split('/');
    let (Some("Patient"), Some(id), Some(searched)) =
        (segments.next(), segments.next(), segments.next())
    else {
        return None;
    };
    let rest = segments.next();
    (searched == resource_type
        && fhir::is_valid_id(id)
        && matches!(rest, None | Some("_search"))
        && segments.next().is_none())
    .then_some(id)
}

/// The patient id one search value names: `Patient/[id]` (relative, versioned or absolute),
/// or a bare id where `bare_allowed`.
fn patient_of_value(value: &str, bare_allowed: bool) -> Option<&str> {
    if bare_allowed && fhir::is_valid_id(value) {
        return Some(value);
    }
    match fhir::parse_literal_reference(value)? {
        ("Patient", id) => Some(id),
        _ => None,
    }
}

/// `_include` and `_revinclude` (R4 search.html#include): every named type must be one the
/// token may read; `*` (any type, any parameter) is refused because its types cannot be
/// known; `:iterate` (`:recurse` in older servers) follows references transitively and is
/// refused for patient-bound grants. Included resources are checked again in the response.
fn check_includes(
    caller: &Caller<'_>,
    params: &[Param],
    binding: Binding<'_>,
) -> Result<(), Refusal> {
    for param in params {
        let (base, modifier) = match param.name.split_once(':') {
            Some((base, modifier)) => (base, Some(modifier)),
            None => (param.name.as_str(), None),
        };
        let reverse = match base {
            "_include" => false,
            "_revinclude" => true,
            _ => continue,
        };
        let refuse = |why: String| {
            Err(Refusal::new(
                refusal::INCLUDE,
                format!("`{}={}` {why}", param.name, param.value),
            ))
        };
        match modifier {
            None => {}
            Some("iterate" | "recurse") if binding == Binding::Unbound => {}
            Some("iterate" | "recurse") => {
                return refuse(
                    "follows references transitively, which patient-bound tokens may not"
                        .to_string(),
                );
            }
            Some(other) => return refuse(format!("has the unknown modifier `:{other}`")),
        }
        for value in param.value.split(',') {
            let mut parts = value.split(':');
            let source = parts.next().unwrap_or_default();
            let search_param = parts.next().unwrap_or_default();
            let target = parts.next();
            if source == "*" || search_param == "*" || search_param.is_empty() {
                return refuse("includes any type; name the type and parameter".to_string());
            }
            if !fhir::is_resource_type(source) || parts.next().is_some() {
                return refuse("is not `Type:parameter[:targetType]`".to_string());
            }
            let included = if reverse { Some(source) } else { target };
            if let Some(included) = included {
                if !fhir::is_resource_type(included) {
                    return refuse(format!("names `{included}`, which is not an R4 type"));
                }
                if !caller.may_read(included) {
                    return refuse(format!(
                        "includes `{included}`, which the token may not read"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `_has:Type:reference:parameter` (R4 search.html#has) searches `Type`: the token must be
/// allowed to search it, or the answer leaks what it may not read.
fn check_reverse_chain_types(caller: &Caller<'_>, params: &[Param]) -> Result<(), Refusal> {
    for param in params {
        let mut rest = param.name.as_str();
        while let Some(at) = rest.find("_has:") {
            let after = rest.get(at + 5..).unwrap_or_default();
            let searched = after.split(':').next().unwrap_or_default();
            if !fhir::is_resource_type(searched) || !caller.may_read(searched) {
                return Err(Refusal::new(
                    refusal::CHAIN,
                    format!(
                        "`{}` searches `{searched}`, which the token may not read",
                        param.name
                    ),
                ));
            }
            rest = after;
        }
    }
    Ok(())
}

/// The parameter a name refers to, without modifiers (`_contained:x` -> `_contained`).
fn base_name(name: &str) -> &str {
    name.split([':', '.']).next().unwrap_or(name)
}

/// Every comma-separated value of every parameter `name`, empty values dropped. An escaped
/// `\,` does not separate (FHIR R4 search.html#escaping): the value keeps it, as the server
/// reads it.
pub fn list_values<'a>(params: &'a [Param], name: &str) -> Vec<&'a str> {
    params
        .iter()
        .filter(|param| param.name == name)
        .flat_map(|param| search::split_unescaped(&param.value, ','))
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use ehrgate_sdk::{Interaction, testing};

    use super::*;

    fn confinement_of(path: &str, pairs: &[(&str, &str)], host: &[&str]) -> Confinement {
        let mut request = testing::request(Interaction::SearchType, Some("Observation"));
        request.path = path.to_string();
        request.params = testing::params(pairs);
        request.patients = host.iter().map(|id| id.to_string()).collect();
        let resource_type = path.rsplit('/').next().unwrap_or_default();
        let resource_type = if resource_type == "_search" {
            "Observation"
        } else {
            resource_type
        };
        confinement(resource_type, &Action::of_request(&request, None), "123")
    }

    #[test]
    fn searches_are_confined_by_the_parameters_their_type_defines() {
        use Confinement::{Other, Pinned, Unpinned};
        // path, parameters, the patients the host found, expected
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            &'a [&'a str],
            Confinement,
        );
        let cases: &[Case<'_>] = &[
            ("/Observation", &[("patient", "123")], &["123"], Pinned),
            (
                "/Observation",
                &[("subject", "Patient/123")],
                &["123"],
                Pinned,
            ),
            (
                "/Observation",
                &[("subject:Patient", "123")],
                &["123"],
                Pinned,
            ),
            ("/Observation", &[("subject", "123")], &[], Unpinned),
            (
                "/Observation",
                &[("subject", "Patient/123,456")],
                &["123"],
                Unpinned,
            ),
            ("/Observation", &[("PATIENT", "123")], &["123"], Unpinned),
            (
                "/Observation",
                &[("subject:patient", "123")],
                &["123"],
                Unpinned,
            ),
            (
                "/Observation",
                &[("patient:missing", "false")],
                &[],
                Unpinned,
            ),
            (
                "/Observation",
                &[("patient", "123"), ("performer", "Patient/456")],
                &["123", "456"],
                Other("456".into()),
            ),
            (
                "/Observation",
                &[("patient", "123,456")],
                &["123", "456"],
                Other("456".into()),
            ),
            (
                "/Observation",
                &[("patient", "123")],
                &["123", "456"],
                Other("456".into()),
            ),
            (
                "/Patient/123/Observation",
                &[("code", "x")],
                &["123"],
                Pinned,
            ),
            (
                "/Patient/123/Observation/_search",
                &[("code", "x")],
                &["123"],
                Pinned,
            ),
            (
                "/Patient/456/Observation",
                &[("patient", "123")],
                &["123", "456"],
                Other("456".into()),
            ),
            ("/Patient", &[("patient", "123")], &[], Unpinned),
            ("/Patient", &[("_id", "123")], &["123"], Pinned),
            ("/Patient", &[("_id:not", "456")], &[], Unpinned),
            ("/AdverseEvent", &[("patient", "123")], &[], Unpinned),
            (
                "/AdverseEvent",
                &[("subject", "Patient/123")],
                &["123"],
                Pinned,
            ),
            (
                "/Device",
                &[("patient", "456")],
                &["456"],
                Other("456".into()),
            ),
            (
                "/Task",
                &[("subject", "Patient/456")],
                &[],
                Other("456".into()),
            ),
        ];
        for (path, pairs, host, expected) in cases {
            assert_eq!(
                confinement_of(path, pairs, host),
                *expected,
                "{path} {pairs:?}"
            );
        }
    }
}
