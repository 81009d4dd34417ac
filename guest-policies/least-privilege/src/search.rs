//! Searches (`s`) and the leaks through their parameters (healthcare reference, "known leaks
//! a gateway must close for patient-scoped tokens"): a patient-bound search must be pinned
//! to the launch patient; `_include` / `_revinclude` only of readable types, never `*`, and
//! `:iterate` only when unbound; chained and `_has:` searches only when pinned; `_filter`,
//! `_query`, `_contained` refused when bound.

use ehrgate_sdk::{Param, Permission};
use ehrgate_sdk::{fhir, search};

use crate::action::{Action, any_grant};
use crate::caller::{Binding, Caller, Notes, Target, pinned_to};
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
    let compartment_type = resource_type.is_some_and(fhir::is_compartment_type);
    let pinned = compartment_type && pinned_to(action.patients, patient);
    // Chains (`subject.name=`) and reverse chains (`_has:`) ask questions about other
    // resources: answered across compartments they are an oracle, so they need a search
    // already confined to the launch patient.
    if !pinned
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
    if compartment_type && !pinned {
        let problem = if action.patients.is_empty() {
            "is not pinned to"
        } else {
            "names patients other than"
        };
        let pin = if resource_type == Some("Patient") {
            "_id"
        } else {
            "patient"
        };
        caller.compartment_refusal(
            Refusal::new(
                refusal::COMPARTMENT,
                format!(
                    "the search on {} {problem} the launch patient `Patient/{patient}`; expected \
                     `{pin}={patient}` (or another compartment parameter naming it)",
                    action.describe()
                ),
            ),
            notes,
        )?;
    }
    Ok(())
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
