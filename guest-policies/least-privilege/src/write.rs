//! Writes (`c`, `u`, `d`). Healthcare reference: "writes must reference the launch patient;
//! an update must not move `subject`/`patient`". A patient-bound write of a compartment
//! resource must name the launch patient, and only it, in every patient reference of its
//! compartment elements (checked on the body when the route shows it, and on the patients
//! the host read from it). Patch and delete change a stored resource whose owner the
//! gateway cannot see, so they are refused for compartment types other than the launch
//! Patient unless `allow_unverified_instance_writes` says the upstream enforces it.

use ehrgate_sdk::fhir;
use ehrgate_sdk::{Permission, ResourceScope};

use crate::action::{Action, any_grant};
use crate::caller::{Binding, Caller, Target};
use crate::refusal::{self, Refusal};

pub fn create(
    caller: &Caller<'_>,
    action: &Action<'_>,
    resource_type: &str,
) -> Result<(), Refusal> {
    let grants = caller.grants(Target::Type(resource_type), Permission::Create)?;
    any_grant(&grants, |grant| {
        check_restrictions_on_body(grant.scope, action, resource_type)?;
        match grant.binding {
            Binding::Patient(patient) if fhir::is_compartment_type(resource_type) => {
                check_written_patients(action, resource_type, patient)
            }
            _ => Ok(()),
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
            Binding::Patient(patient) if fhir::is_compartment_type(resource_type) => {
                check_own_patient(action, resource_type, patient)?;
                check_written_patients(action, resource_type, patient)
            }
            _ => Ok(()),
        }
    })
}

pub fn patch(caller: &Caller<'_>, action: &Action<'_>, resource_type: &str) -> Result<(), Refusal> {
    let grants = caller.grants(Target::Type(resource_type), Permission::Update)?;
    any_grant(&grants, |grant| {
        refuse_restricted(grant.scope, action, "patch")?;
        match grant.binding {
            Binding::Patient(patient) if fhir::is_compartment_type(resource_type) => {
                check_own_patient(action, resource_type, patient)?;
                check_unseen_owner(caller, action, resource_type, "patch")?;
                // The host lists the patients a JSON Patch writes into `subject`/`patient`.
                match action.patients.iter().find(|found| *found != patient) {
                    Some(other) => Err(moves_to(action, other, patient)),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
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
            Binding::Patient(patient) if fhir::is_compartment_type(resource_type) => {
                check_own_patient(action, resource_type, patient)?;
                check_unseen_owner(caller, action, resource_type, "delete")
            }
            _ => Ok(()),
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

/// Patch and delete of a compartment resource other than the launch Patient: its stored
/// version's patient is not visible before the change.
fn check_unseen_owner(
    caller: &Caller<'_>,
    action: &Action<'_>,
    resource_type: &str,
    verb: &str,
) -> Result<(), Refusal> {
    if resource_type == "Patient" || caller.config.allow_unverified_instance_writes {
        return Ok(());
    }
    Err(Refusal::new(
        refusal::WRITE_PATIENT,
        format!(
            "the gateway cannot see which patient owns {} before the {verb}, so patient-bound \
             tokens may not {verb} it",
            action.describe()
        ),
    ))
}

/// Every patient the written resource references through its compartment elements must be
/// `patient`, and at least one must be.
fn check_written_patients(
    action: &Action<'_>,
    resource_type: &str,
    patient: &str,
) -> Result<(), Refusal> {
    let from_body = action
        .body
        .map(|body| fhir::resource_patients(resource_type, body))
        .unwrap_or_default();
    let mut written = action
        .patients
        .iter()
        .map(String::as_str)
        .chain(from_body)
        .peekable();
    if written.peek().is_none() {
        return Err(Refusal::new(
            refusal::WRITE_PATIENT,
            format!(
                "the written {} does not reference the launch patient `Patient/{patient}`",
                action.describe()
            ),
        ));
    }
    match written.find(|found| *found != patient) {
        Some(other) => Err(moves_to(action, other, patient)),
        None => Ok(()),
    }
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
