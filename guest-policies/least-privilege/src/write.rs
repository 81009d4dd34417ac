//! Writes (`c`, `u`, `d`). Healthcare reference: "writes must reference the launch patient;
//! an update must not move `subject`/`patient`". A patient-bound write of a compartment
//! resource must name the launch patient, and only it, in every patient reference of its
//! compartment elements (checked on the body when the route shows it, and on the patients
//! the host read from it); a reference the gateway cannot place (conditional, `urn:` not in
//! the Bundle, contained, `/`-rooted, identifier-only) refuses the write. Every other
//! reference anywhere in the written resource (`focus`, `basedOn`, `hasMember`, extensions)
//! must be one the server resolves as the gateway reads it: a Patient reference names the
//! launch patient, and forms R4 does not define, absolute URLs off the server's own bases and
//! contained references to nothing are refused. Types outside the
//! compartment that still name a patient (Task `for`, Device `patient`, Binary
//! `securityContext`, ...) may name only the launch patient there.
//!
//! Update, patch and delete change a stored resource, whose owner the request does not
//! show: an update whose body names the launch patient may overwrite another patient's
//! record. Where the gateway read the stored resource first (`verify_write_owner`, see
//! `ehrgate_sdk::stored`), a patient-bound write must find it referencing the launch patient
//! and no one else (an update that creates finds nothing and is judged by its body); where
//! it did not, these writes of those types other than the launch Patient are refused unless
//! `allow_unverified_instance_writes` says the upstream enforces the owner itself. A patch's
//! own document is judged like a written resource.

use ehrgate_sdk::fhir;
use ehrgate_sdk::stored::Stored;
use ehrgate_sdk::{Permission, ResourceScope};

use crate::action::{Action, any_grant};
use crate::caller::{Binding, Caller, Target};
use crate::patch::{self, Finding};
use crate::references::{self, Points, Resolver};
use crate::refusal::{self, Refusal};

/// Whether a patient-bound grant's writes of `resource_type` are confined to its patient:
/// compartment types, and the types outside it whose elements name a patient.
fn holds_patients(resource_type: &str) -> bool {
    !references::patient_paths(resource_type).is_empty()
}

pub fn create(
    caller: &Caller<'_>,
    action: &Action<'_>,
    resource_type: &str,
) -> Result<(), Refusal> {
    let grants = caller.grants(Target::Type(resource_type), Permission::Create)?;
    any_grant(&grants, |grant| {
        check_restrictions_on_body(grant.scope, action, resource_type)?;
        match grant.binding {
            Binding::Patient(patient) if holds_patients(resource_type) => {
                check_written_patients(caller, action, resource_type, patient)
            }
            Binding::Patient(patient) => check_named_patients(action, patient),
            Binding::Unbound => Ok(()),
        }
    })
}

pub fn update(
    caller: &Caller<'_>,
    action: &Action<'_>,
    resource_type: &str,
) -> Result<(), Refusal> {
    let grants = caller.grants(Target::Type(resource_type), Permission::Update)?;
    any_grant(&grants, |grant| {
        check_restrictions_on_body(grant.scope, action, resource_type)?;
        match grant.binding {
            Binding::Patient(patient) if holds_patients(resource_type) => {
                check_own_patient(action, resource_type, patient)?;
                check_stored_owner(caller, action, resource_type, patient, "update")?;
                check_written_patients(caller, action, resource_type, patient)
            }
            Binding::Patient(patient) => check_named_patients(action, patient),
            Binding::Unbound => Ok(()),
        }
    })
}

pub fn patch(caller: &Caller<'_>, action: &Action<'_>, resource_type: &str) -> Result<(), Refusal> {
    let grants = caller.grants(Target::Type(resource_type), Permission::Update)?;
    any_grant(&grants, |grant| {
        refuse_restricted(grant.scope, action, "patch")?;
        match grant.binding {
            Binding::Patient(patient) if holds_patients(resource_type) => {
                check_own_patient(action, resource_type, patient)?;
                check_stored_owner(caller, action, resource_type, patient, "patch")?;
                // The host lists the patients a patch writes into patient elements.
                check_named_patients(action, patient)?;
                check_patch_document(caller, action, resource_type, patient)
            }
            Binding::Patient(patient) => check_named_patients(action, patient),
            Binding::Unbound => Ok(()),
        }
    })
}

pub fn delete(
    caller: &Caller<'_>,
    action: &Action<'_>,
    resource_type: &str,
) -> Result<(), Refusal> {
    let grants = caller.grants(Target::Type(resource_type), Permission::Delete)?;
    any_grant(&grants, |grant| {
        refuse_restricted(grant.scope, action, "delete")?;
        match grant.binding {
            Binding::Patient(patient) if holds_patients(resource_type) => {
                check_own_patient(action, resource_type, patient)?;
                check_stored_owner(caller, action, resource_type, patient, "delete")
            }
            Binding::Patient(patient) => check_named_patients(action, patient),
            Binding::Unbound => Ok(()),
        }
    })
}

/// A write of the Patient resource itself must be the launch patient's.
fn check_own_patient(
    action: &Action<'_>,
    resource_type: &str,
    patient: &str,
) -> Result<(), Refusal> {
    match action.resource_id {
        Some(id) if resource_type == "Patient" && id != patient => Err(Refusal::new(
            refusal::WRITE_PATIENT,
            format!(
                "{} is not the launch patient `Patient/{patient}`",
                action.describe()
            ),
        )),
        _ => Ok(()),
    }
}

/// The stored resource a patient-bound update, patch or delete changes must be the launch
/// patient's: as the gateway read it, referencing `patient` and no other patient (a
/// compartment resource at least once). Without the read, its owner is unseen, and only the
/// launch Patient itself (its id is its owner) or `allow_unverified_instance_writes` lets the
/// write through.
fn check_stored_owner(
    caller: &Caller<'_>,
    action: &Action<'_>,
    resource_type: &str,
    patient: &str,
    verb: &str,
) -> Result<(), Refusal> {
    match &action.stored {
        Some(Stored::Found { patients, .. }) => {
            if let Some(other) = patients.iter().find(|found| **found != patient) {
                return Err(Refusal::new(
                    refusal::STORED_OWNER,
                    format!(
                        "the stored {} references `Patient/{other}`, not only the launch \
                         patient `Patient/{patient}`, so a patient-bound token may not {verb} it",
                        action.describe()
                    ),
                ));
            }
            if patients.is_empty() && fhir::is_compartment_type(resource_type) {
                return Err(Refusal::new(
                    refusal::STORED_OWNER,
                    format!(
                        "the stored {} references no patient, so it is not in the launch \
                         patient `Patient/{patient}`'s compartment and a patient-bound token \
                         may not {verb} it",
                        action.describe()
                    ),
                ));
            }
            Ok(())
        }
        // An update that creates the resource: its body is all there is to judge.
        Some(Stored::Absent) => Ok(()),
        None if resource_type == "Patient" || caller.config.allow_unverified_instance_writes => {
            Ok(())
        }
        None => Err(Refusal::new(
            refusal::WRITE_PATIENT,
            format!(
                "the gateway did not read which patient owns {} before the {verb}, so \
                 patient-bound tokens may not {verb} it (send it on its own, not in a Bundle, \
                 on a route that verifies write owners)",
                action.describe()
            ),
        )),
    }
}

/// The patients the host found in the request (path, parameters, body) must all be
/// `patient`, whatever the type.
fn check_named_patients(action: &Action<'_>, patient: &str) -> Result<(), Refusal> {
    match action.patients.iter().find(|found| *found != patient) {
        Some(other) => Err(moves_to(action, other, patient)),
        None => Ok(()),
    }
}

/// Every patient the written resource references through its patient elements (and those
/// of its contained resources) must be `patient`; a reference that cannot be placed refuses
/// the write; and a compartment resource must reference the launch patient at least once.
fn check_written_patients(
    caller: &Caller<'_>,
    action: &Action<'_>,
    resource_type: &str,
    patient: &str,
) -> Result<(), Refusal> {
    let resolver = resolver(caller, action);
    // The host adds the stored resource's patients to `patients` (they are checked in
    // `check_stored_owner`); what the write itself references is read from the body when it
    // is shown, so an update that drops its patient is not passed by the stored one's.
    let stored: &[&str] = match (&action.stored, action.body) {
        (Some(Stored::Found { patients, .. }), Some(_)) => patients,
        _ => &[],
    };
    let mut written: Vec<&str> = action
        .patients
        .iter()
        .map(String::as_str)
        .filter(|found| !stored.contains(found))
        .collect();
    if let Some(body) = action.body {
        if resource_type == "Patient"
            && let Some(id) = body.get("id").and_then(serde_json::Value::as_str)
        {
            written.push(id);
        }
        let mut unplaced = None;
        references::resource_references(resource_type, body, &resolver, &mut |path, points| {
            match points {
                Points::Patient(id) => written.push(id),
                Points::Elsewhere => {}
                Points::Unknown(why) => {
                    unplaced.get_or_insert((path, why));
                }
            }
        });
        if let Some((path, why)) = unplaced {
            return Err(unplaceable(action, path, why, patient));
        }
        resolver.every_reference(body, &mut |element, points| match points {
            Points::Patient(id) => written.push(id),
            Points::Elsewhere => {}
            Points::Unknown(why) => {
                unplaced.get_or_insert((element, why));
            }
        });
        if let Some((element, why)) = unplaced {
            return Err(unplaceable(action, element, why, patient));
        }
    }
    if let Some(other) = written.iter().find(|found| **found != patient) {
        return Err(moves_to(action, other, patient));
    }
    // Types outside the compartment need not name a patient at all.
    if written.is_empty() && fhir::is_compartment_type(resource_type) {
        return Err(Refusal::new(
            refusal::WRITE_PATIENT,
            format!(
                "the written {} does not reference the launch patient `Patient/{patient}`",
                action.describe()
            ),
        ));
    }
    // Raw Binary content carries its security context in a header (R4 http.html#binary).
    if resource_type == "Binary"
        && let Some(context) = action.header("x-security-context")
    {
        match resolver.judge_text(context) {
            Points::Patient(id) if id != patient => return Err(moves_to(action, id, patient)),
            Points::Unknown(why) => {
                return Err(unplaceable(action, "X-Security-Context", why, patient));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A patch document must write nothing into a patient element but references to the
/// launch patient (or to resources of other types); one the gateway cannot read is refused.
/// Without the document (a route that hides bodies) only the host's patients are checked.
fn check_patch_document(
    caller: &Caller<'_>,
    action: &Action<'_>,
    resource_type: &str,
    patient: &str,
) -> Result<(), Refusal> {
    let Some(document) = action.body else {
        return Ok(());
    };
    let mut refused = None;
    let resolver = resolver(caller, action);
    patch::examine(resource_type, document, &resolver, &mut |finding| {
        if refused.is_some() {
            return;
        }
        refused = match finding {
            Finding::Patient(_, id) if id == patient => None,
            Finding::Patient(_, id) => Some(moves_to(action, &id, patient)),
            Finding::Unknown(path, why) => Some(unplaceable(action, path, why, patient)),
            Finding::Unreadable(why) => Some(Refusal::new(
                refusal::WRITE_PATIENT,
                format!(
                    "the patch of {} cannot be checked against the launch patient \
                     `Patient/{patient}`: {why}",
                    action.describe()
                ),
            )),
        };
    });
    refused.map_or(Ok(()), Err)
}

/// References of `action` resolve against its Bundle and the configured server bases.
fn resolver<'a>(caller: &'a Caller<'_>, action: &Action<'a>) -> Resolver<'a> {
    Resolver {
        bundle: action.bundle,
        own_bases: &caller.config.own_base_urls,
    }
}

fn unplaceable(action: &Action<'_>, path: &str, why: &str, patient: &str) -> Refusal {
    Refusal::new(
        refusal::WRITE_PATIENT,
        format!(
            "`{path}` of the write of {} holds {why}, so the gateway cannot tell whether it \
             stays with the launch patient `Patient/{patient}`",
            action.describe()
        ),
    )
}

fn moves_to(action: &Action<'_>, other: &str, patient: &str) -> Refusal {
    Refusal::new(
        refusal::WRITE_PATIENT,
        format!(
            "the write of {} references `Patient/{other}`, not only the launch patient \
             `Patient/{patient}`",
            action.describe()
        ),
    )
}

/// A granular grant covers a create or update only when the body satisfies its
/// restrictions (the same token match the response hook applies to reads).
fn check_restrictions_on_body(
    scope: &ResourceScope,
    action: &Action<'_>,
    resource_type: &str,
) -> Result<(), Refusal> {
    if !scope.is_granular() {
        return Ok(());
    }
    let matches = action
        .body
        .and_then(|body| scope.restrictions_match_resource(body));
    match matches {
        Some(true) => Ok(()),
        Some(false) => Err(Refusal::new(
            refusal::SCOPE,
            format!(
                "the written `{resource_type}` does not match the search restrictions of the \
                 only scope that grants the write"
            ),
        )),
        None => Err(Refusal::new(
            refusal::SCOPE,
            format!(
                "the only scope that grants the write of `{resource_type}` is restricted, and \
                 the written resource cannot be checked against it"
            ),
        )),
    }
}

/// A granular grant never covers a patch or delete: the stored resource is not visible.
fn refuse_restricted(
    scope: &ResourceScope,
    action: &Action<'_>,
    verb: &str,
) -> Result<(), Refusal> {
    if !scope.is_granular() {
        return Ok(());
    }
    Err(Refusal::new(
        refusal::SCOPE,
        format!(
            "the only scope that grants the {verb} of {} is restricted by search parameters, \
             which cannot be checked on a stored resource",
            action.describe()
        ),
    ))
}
