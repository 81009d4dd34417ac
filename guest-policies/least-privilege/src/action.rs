//! One thing a request asks for: the request itself, or one entry of a batch or
//! transaction (healthcare reference: "batch and transaction bundles are checked entry by
//! entry"), and the check for each interaction (SMART v2 permission letter table).

use crate::document::Node;
use ehrgate_sdk::fhir::{self, JsonTree};
use ehrgate_sdk::{Entry, Interaction, Param, Permission, Request};

use crate::caller::{Binding, Caller, Grant, Notes, Target};
use crate::refusal::{self, Refusal};
use crate::{document, operation, search, write};

/// A request, or one entry of a Bundle, as the checks see it.
pub struct Action<'a> {
    pub interaction: Interaction,
    pub resource_type: Option<&'a str>,
    pub resource_id: Option<&'a str>,
    pub operation: Option<&'a str>,
    pub params: &'a [Param],
    /// Patient ids the host found in the path, the parameters and the body.
    pub patients: &'a [String],
    /// The resource a create or update writes, when the route shows bodies to policies.
    pub body: Option<&'a Node<'a>>,
}

impl<'a> Action<'a> {
    pub fn of_request(request: &'a Request, body: Option<&'a Node<'a>>) -> Self {
        Action {
            interaction: request.interaction,
            resource_type: request.resource_type.as_deref(),
            resource_id: request.resource_id.as_deref(),
            operation: request.operation.as_deref(),
            params: &request.params,
            patients: &request.patients,
            body,
        }
    }

    pub fn of_entry(entry: &'a Entry, body: Option<&'a Node<'a>>) -> Self {
        Action {
            interaction: entry.interaction,
            resource_type: entry.resource_type.as_deref(),
            resource_id: entry.resource_id.as_deref(),
            operation: entry.operation.as_deref(),
            params: &entry.params,
            patients: &entry.patients,
            body,
        }
    }

    /// `Type/id`, or `Type`, for messages.
    pub fn describe(&self) -> String {
        match (self.resource_type, self.resource_id) {
            (Some(resource_type), Some(id)) => format!("`{resource_type}/{id}`"),
            (Some(resource_type), None) => format!("`{resource_type}`"),
            _ => "the FHIR base".to_string(),
        }
    }
}

/// Checks every action of a request: its entries for a batch or transaction, else itself.
pub fn check_request(
    caller: &Caller<'_>,
    request: &Request,
    notes: &mut Notes,
) -> Result<(), Refusal> {
    let body: Option<Node<'_>> = request
        .body
        .as_deref()
        .and_then(|text| document::parse(text).ok());
    match request.interaction {
        Interaction::Batch | Interaction::Transaction => {
            for (index, entry) in request.entries.iter().enumerate() {
                let resource = body
                    .as_ref()
                    .and_then(|bundle| bundle.member("entry"))
                    .and_then(JsonTree::items)
                    .and_then(|entries| entries.get(index))
                    .and_then(|entry| entry.member("resource"));
                check(caller, &Action::of_entry(entry, resource), notes)
                    .map_err(|refused| refused.within(&format!("bundle entry {index}")))?;
            }
            Ok(())
        }
        _ => check(caller, &Action::of_request(request, body.as_ref()), notes),
    }
}

/// Checks one action against the SMART v2 letter for its interaction:
/// `c` create; `r` read, vread, instance history; `u` update, patch; `d` delete;
/// `s` type and system search and history.
pub fn check(caller: &Caller<'_>, action: &Action<'_>, notes: &mut Notes) -> Result<(), Refusal> {
    let resource_type = action.resource_type;
    match (action.interaction, resource_type) {
        (Interaction::Capabilities, _) => Ok(()),
        (Interaction::Operation, _) => operation::check(caller, action, notes),
        (Interaction::SearchType, Some(resource_type)) => {
            search::check_type_search(caller, action, resource_type, notes)
        }
        (Interaction::SearchSystem, _) => search::check_system_search(caller, action, notes),
        (Interaction::HistoryType, Some(resource_type)) => {
            unpinnable(caller, action, Target::Type(resource_type), notes)
        }
        (Interaction::HistorySystem, _) => unpinnable(caller, action, Target::EveryType, notes),
        (
            Interaction::Read | Interaction::Vread | Interaction::HistoryInstance,
            Some(resource_type),
        ) => read_instance(caller, action, resource_type, notes),
        (Interaction::Create, Some(resource_type)) => write::create(caller, action, resource_type),
        (Interaction::Update, Some(resource_type)) => write::update(caller, action, resource_type),
        (Interaction::Patch, Some(resource_type)) => write::patch(caller, action, resource_type),
        (Interaction::Delete, Some(resource_type)) => write::delete(caller, action, resource_type),
        _ => Err(Refusal::new(
            refusal::INTERACTION,
            format!(
                "the request on {} is not a FHIR interaction this policy understands \
                 (conditional writes and unknown paths are refused)",
                action.describe()
            ),
        )),
    }
}

/// Tries each grant in order and allows on the first that passes `check`; otherwise
/// returns the first grant's refusal (grants come best first, so it is the most telling).
pub fn any_grant<'g>(
    grants: &[Grant<'g>],
    mut check: impl FnMut(&Grant<'g>) -> Result<(), Refusal>,
) -> Result<(), Refusal> {
    let mut first_refusal = None;
    for grant in grants {
        match check(grant) {
            Ok(()) => return Ok(()),
            Err(refused) => {
                first_refusal.get_or_insert(refused);
            }
        }
    }
    Err(first_refusal.unwrap_or_else(|| Refusal::new(refusal::SCOPE, "no scope applies")))
}

/// Read, vread and instance history (`r`). A patient-bound grant reads only the launch
/// Patient itself; other compartment resources are checked in the response, where their
/// subject is visible. A granular grant applies only when its restrictions can be checked
/// on the returned resource.
fn read_instance(
    caller: &Caller<'_>,
    action: &Action<'_>,
    resource_type: &str,
    notes: &mut Notes,
) -> Result<(), Refusal> {
    let grants = caller.grants(Target::Type(resource_type), Permission::Read)?;
    any_grant(&grants, |grant| {
        if !grant.scope.restrictions_checkable_on_resources() {
            return Err(Refusal::new(
                refusal::SCOPE,
                format!(
                    "the only scopes that grant `r` on `{resource_type}` are restricted by \
                     search parameters this policy cannot check on a read"
                ),
            ));
        }
        match (grant.binding, action.resource_id) {
            (Binding::Patient(patient), Some(id))
                if resource_type == "Patient" && id != patient =>
            {
                caller.compartment_refusal(
                    Refusal::new(
                        refusal::COMPARTMENT,
                        format!(
                            "{} is not the launch patient `Patient/{patient}`",
                            action.describe()
                        ),
                    ),
                    notes,
                )
            }
            _ => Ok(()),
        }
    })
}

/// Type and system history (`s`): the history of a type has no search parameters to pin
/// it to a patient (R4 http.html#history), so a patient-bound grant reaches only
/// non-compartment types that way.
fn unpinnable(
    caller: &Caller<'_>,
    action: &Action<'_>,
    target: Target<'_>,
    notes: &mut Notes,
) -> Result<(), Refusal> {
    let grants = caller.grants(target, Permission::Search)?;
    any_grant(&grants, |grant| match (grant.binding, target) {
        (Binding::Unbound, _) => Ok(()),
        (Binding::Patient(_), Target::Type(name)) if !fhir::is_compartment_type(name) => Ok(()),
        (Binding::Patient(patient), _) => caller.compartment_refusal(
            Refusal::new(
                refusal::COMPARTMENT,
                format!(
                    "the history of {} cannot be confined to the launch patient \
                     `Patient/{patient}`",
                    match target {
                        Target::Type(_) => action.describe(),
                        Target::EveryType => "the whole server".to_string(),
                    }
                ),
            ),
            notes,
        ),
    })
}
