//! One thing a request asks for: the request itself, or one entry of a batch or
//! transaction (healthcare reference: "batch and transaction bundles are checked entry by
//! entry"), and the check for each interaction (SMART v2 permission letter table).

use ehrgate_sdk::fhir::{self, JsonTree};
use ehrgate_sdk::stored::Stored;
use ehrgate_sdk::{Entry, Header, Interaction, Param, Permission, Request};
use serde_json::Value;

use crate::caller::{Binding, Caller, Grant, Notes, Target, other_patient};
use crate::references::Bundle;
use crate::refusal::{self, Refusal};
use crate::{operation, search, write};

/// A request, or one entry of a Bundle, as the checks see it.
pub struct Action<'a> {
    pub interaction: Interaction,
    /// The canonical path, starting with `/` (`/Patient/123/Observation`).
    pub path: &'a str,
    pub resource_type: Option<&'a str>,
    pub resource_id: Option<&'a str>,
    pub operation: Option<&'a str>,
    pub params: &'a [Param],
    /// Patient ids the host found in the path, the parameters and the body.
    pub patients: &'a [String],
    /// The body when the route shows it and it is JSON: the resource a create or update
    /// writes, a patch document, an operation's `Parameters`.
    pub body: Option<&'a Value>,
    /// The Bundle an entry belongs to, to resolve `urn:` references between entries.
    pub bundle: Option<&'a Bundle<'a>>,
    /// The headers the route shows to policies (none for a Bundle entry).
    pub headers: &'a [Header],
    /// What the gateway read of the stored resource before a write by id; `None` when it
    /// did not read it (a route that does not verify owners, a Bundle entry).
    pub stored: Option<Stored<'a>>,
}

impl<'a> Action<'a> {
    pub fn of_request(request: &'a Request, body: Option<&'a Value>) -> Self {
        Action {
            interaction: request.interaction,
            path: &request.path,
            resource_type: request.resource_type.as_deref(),
            resource_id: request.resource_id.as_deref(),
            operation: request.operation.as_deref(),
            params: &request.params,
            patients: &request.patients,
            body,
            bundle: None,
            headers: &request.headers,
            stored: request.stored(),
        }
    }

    pub fn of_entry(
        entry: &'a Entry,
        body: Option<&'a Value>,
        bundle: Option<&'a Bundle<'a>>,
    ) -> Self {
        Action {
            interaction: entry.interaction,
            path: &entry.path,
            resource_type: entry.resource_type.as_deref(),
            resource_id: entry.resource_id.as_deref(),
            operation: entry.operation.as_deref(),
            params: &entry.params,
            patients: &entry.patients,
            body,
            bundle,
            headers: &[],
            stored: None,
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

    /// The value of a header the route shows to policies (lower-case name).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|header| header.name == name)
            .map(|header| header.value.as_str())
    }
}

/// Checks every action of a request: its entries for a batch or transaction, else itself.
pub fn check_request(
    caller: &Caller<'_>,
    request: &Request,
    notes: &mut Notes,
) -> Result<(), Refusal> {
    // Request bodies are small (the route caps them) and every member may matter, so they
    // are read whole; the host has already refused repeated members.
    let body: Option<Value> = request
        .body
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok());
    match request.interaction {
        Interaction::Batch | Interaction::Transaction => {
            let bundle = body
                .as_ref()
                .map(|body| Bundle::new(body, &request.entries));
            let raw_entries = body
                .as_ref()
                .and_then(|bundle| bundle.member("entry"))
                .and_then(JsonTree::items)
                .unwrap_or_default();
            for (index, entry) in request.entries.iter().enumerate() {
                let raw = raw_entries.get(index);
                let resource = raw.and_then(|raw| raw.member("resource"));
                let mut action = Action::of_entry(entry, resource, bundle.as_ref());
                let merged = operation_params(&action);
                if let Some(merged) = &merged {
                    action.params = merged;
                }
                check_entry_shape(entry, raw)
                    .and_then(|()| check(caller, &action, notes))
                    .map_err(|refused| refused.within(&format!("bundle entry {index}")))?;
            }
            Ok(())
        }
        _ => {
            // The gateway has joined a POSTed operation's `Parameters` to the query already.
            let action = Action::of_request(request, body.as_ref());
            check(caller, &action, notes)
        }
    }
}

/// A Bundle entry's operation parameters: those of its URL and, when its `resource` is a
/// `Parameters` (R4 operations.html#request), those of the body too, since the server reads
/// both (`$export` `_type` or `patient` sent in the body). The gateway joins them for a
/// request, not for an entry. Primitive values as written, Reference values as their
/// `reference`; parts and resources are not parameters. `None` when the body adds nothing.
fn operation_params(action: &Action<'_>) -> Option<Vec<Param>> {
    if action.interaction != Interaction::Operation {
        return None;
    }
    let body = action.body?;
    if body.member("resourceType").and_then(JsonTree::text) != Some("Parameters") {
        return None;
    }
    let mut params = action.params.to_vec();
    for parameter in body.member("parameter").and_then(JsonTree::items)? {
        let (Some(name), Some(members)) = (
            parameter.member("name").and_then(JsonTree::text),
            parameter.as_object(),
        ) else {
            continue;
        };
        for (member, value) in members {
            let Some(kind) = member.strip_prefix("value") else {
                continue;
            };
            let value = match value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                Value::Object(_) if kind == "Reference" => {
                    match value.member("reference").and_then(JsonTree::text) {
                        Some(reference) => reference.to_string(),
                        // An identifier-only patient can only be compared as nobody.
                        None => String::new(),
                    }
                }
                _ => continue,
            };
            params.push(Param {
                name: name.to_string(),
                value,
            });
        }
    }
    (params.len() > action.params.len()).then_some(params)
}

/// What a Bundle entry carries beyond its request line: no conditional create
/// (`request.ifNoneExist`), a `resource` only where the interaction sends one (create,
/// update, patch, a POSTed operation), and a `fullUrl` that is a `urn:uuid:` / `urn:oid:`
/// placeholder or names the entry's own resource, so that no entry can stand in for a
/// resource it is not (R4 bundle.html#references) and `urn:` references resolve to what
/// the entry writes. The gateway refuses the same before any policy runs
/// (`classify.bad-bundle-entry`); the `urn:` resolution in [`crate::references`] relies on
/// it, so it is checked here too.
fn check_entry_shape(entry: &Entry, raw: Option<&Value>) -> Result<(), Refusal> {
    let Some(raw) = raw else {
        return Ok(());
    };
    let action = Action::of_entry(entry, None, None);
    if raw
        .member("request")
        .and_then(|request| request.member("ifNoneExist"))
        .is_some()
    {
        return Err(Refusal::new(
            refusal::INTERACTION,
            format!(
                "the create of {} is conditional (`request.ifNoneExist`): the server answers \
                 with whatever its search matches, which this policy cannot confine",
                action.describe()
            ),
        ));
    }
    let sends_resource = matches!(
        entry.interaction,
        Interaction::Create | Interaction::Update | Interaction::Patch
    ) || (entry.interaction == Interaction::Operation
        && entry.method == "POST");
    if raw.member("resource").is_some() && !sends_resource {
        return Err(Refusal::new(
            refusal::INTERACTION,
            format!(
                "the entry `{} {}` carries a `resource`, which that interaction does not send",
                entry.method, entry.path
            ),
        ));
    }
    let writes = matches!(
        entry.interaction,
        Interaction::Create | Interaction::Update | Interaction::Patch | Interaction::Delete
    );
    if let (true, Some(full_url)) = (writes, raw.member("fullUrl").and_then(JsonTree::text)) {
        let placeholder = full_url.starts_with("urn:uuid:") || full_url.starts_with("urn:oid:");
        let own = match (
            fhir::parse_literal_reference(full_url),
            &entry.resource_type,
        ) {
            (Some((named_type, named_id)), Some(resource_type)) => {
                entry.interaction != Interaction::Create
                    && named_type == resource_type
                    && entry.resource_id.as_deref() == Some(named_id)
            }
            _ => false,
        };
        if !placeholder && !own {
            return Err(Refusal::new(
                refusal::INTERACTION,
                format!(
                    "the `fullUrl` of the entry `{} {}` is neither a `urn:uuid:` / `urn:oid:` \
                     placeholder nor the entry's own resource",
                    entry.method, entry.path
                ),
            ));
        }
    }
    Ok(())
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
            (Binding::Patient(patient), _) => match other_patient(action.patients, patient) {
                None => Ok(()),
                Some(other) => caller.compartment_refusal(
                    Refusal::new(
                        refusal::COMPARTMENT,
                        format!(
                            "the read of {} names `Patient/{other}`, not only the launch \
                             patient `Patient/{patient}`",
                            action.describe()
                        ),
                    ),
                    notes,
                ),
            },
            (Binding::Unbound, _) => Ok(()),
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
        (Binding::Patient(patient), Target::Type(name)) if !fhir::is_compartment_type(name) => {
            match other_patient(action.patients, patient) {
                None => Ok(()),
                Some(other) => caller.compartment_refusal(
                    Refusal::new(
                        refusal::COMPARTMENT,
                        format!(
                            "the history of {} names `Patient/{other}`, not only the launch \
                             patient `Patient/{patient}`",
                            action.describe()
                        ),
                    ),
                    notes,
                ),
            }
        }
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
