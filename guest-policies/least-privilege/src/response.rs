//! The response hook: every resource a read, search, history, operation or Bundle returns,
//! including `search.mode = include` entries, must be one the token may read (a grant of
//! `r` or `s` on its type whose restrictions it matches), inside the launch patient's
//! compartment when the grant is patient-bound (R4 compartmentdefinition-patient), and
//! cleared for its security labels. A response that must be checked but cannot be read
//! (XML, not JSON) is refused rather than released unseen.

use std::fmt;

use ehrgate_sdk::fhir::{self, JsonTree};
use ehrgate_sdk::{Interaction, Permission, Request, Response};

use crate::caller::{Binding, Caller, Grant, Notes, Target};
use crate::document::{self, Node};
use crate::labels;
use crate::refusal::{self, Refusal};

/// Bundles inside Bundles (batch responses holding search sets) and Parameters parts are
/// followed this deep; deeper nesting is refused rather than released unchecked.
const MAX_DEPTH: usize = 6;

/// How a resource appears in the response (R4 Bundle.entry.search.mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Appearance {
    /// The response itself, or an entry without a search mode.
    Plain,
    /// A search match.
    Match,
    /// Pulled in by `_include` / `_revinclude`.
    Include,
}

impl Appearance {
    fn of_entry(entry: &Node<'_>) -> Self {
        match entry
            .member("search")
            .and_then(|search| search.member("mode"))
            .and_then(JsonTree::text)
        {
            Some("match") => Appearance::Match,
            Some("include") => Appearance::Include,
            _ => Appearance::Plain,
        }
    }
}

/// Checks a response; `Ok` releases it.
pub fn check_response(
    caller: &Caller<'_>,
    request: &Request,
    response: &Response,
    notes: &mut Notes,
) -> Result<(), Refusal> {
    let returns_resources = matches!(
        request.interaction,
        Interaction::Batch | Interaction::Transaction
    ) || returns_what_it_reads(request.interaction);
    // Errors carry OperationOutcomes; 202 is an asynchronous kick-off (Bulk Data), 204 has
    // no body; HEAD (classified as a read) has no body by definition.
    if !returns_resources
        || !(200..300).contains(&response.status)
        || matches!(response.status, 202 | 204)
        || request.method == "HEAD"
    {
        return Ok(());
    }
    let Some(body) = response.body.as_deref() else {
        // R4 http.html#binary: a Binary read returns its raw content type.
        let binary_read = request.resource_type.as_deref() == Some("Binary")
            && matches!(request.interaction, Interaction::Read | Interaction::Vread);
        if binary_read {
            return Ok(());
        }
        return Err(Refusal::new(
            refusal::RESPONSE_FORMAT,
            "the response is not JSON this policy can check; request `_format=json`",
        ));
    };
    let document = document::parse(body).map_err(|_| {
        Refusal::new(
            refusal::RESPONSE_FORMAT,
            "the response body is not valid JSON, so it cannot be checked",
        )
    })?;
    let mut grants = GrantCache::default();
    let mut visit = |resource: &Node<'_>, appearance| {
        check_resource(caller, request, resource, appearance, &mut grants, notes)
    };
    match bundle_entries_by_request(request, &document) {
        // R4 http.html#transaction-response: the response entries answer the request's
        // entries in order. What a write entry returns is what it wrote (checked on the way
        // in, and possibly of a type the token may write but not read); what a read entry
        // returns is checked like any read.
        Some(entries) => {
            for (entry, asked) in entries.iter().zip(&request.entries) {
                if let Some(resource) = entry.member("resource")
                    && returns_what_it_reads(asked.interaction)
                {
                    walk(resource, Appearance::of_entry(entry), 1, &mut visit)?;
                }
            }
            Ok(())
        }
        None => walk(&document, Appearance::Plain, 0, &mut visit),
    }
}

/// Interactions whose response holds resources the caller asked to read.
fn returns_what_it_reads(interaction: Interaction) -> bool {
    matches!(
        interaction,
        Interaction::Read
            | Interaction::Vread
            | Interaction::HistoryInstance
            | Interaction::HistoryType
            | Interaction::HistorySystem
            | Interaction::SearchType
            | Interaction::SearchSystem
            | Interaction::Operation
    )
}

/// The entries of a batch or transaction response when they line up one to one with the
/// request's entries; `None` otherwise, and every resource of the response is checked.
fn bundle_entries_by_request<'d>(
    request: &Request,
    document: &'d Node<'d>,
) -> Option<&'d [Node<'d>]> {
    if !matches!(
        request.interaction,
        Interaction::Batch | Interaction::Transaction
    ) {
        return None;
    }
    let is_response_bundle = matches!(
        document.member("type").and_then(JsonTree::text),
        Some("batch-response" | "transaction-response")
    ) && document.member("resourceType").and_then(JsonTree::text)
        == Some("Bundle");
    let entries = document.member("entry").and_then(JsonTree::items)?;
    (is_response_bundle && entries.len() == request.entries.len()).then_some(entries)
}

/// A returned resource as messages name it: `Observation/o1`, marked when included.
struct Named<'a> {
    resource_type: &'a str,
    id: &'a str,
    included: bool,
}

impl fmt::Display for Named<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "`{}/{}`", self.resource_type, self.id)?;
        if self.included {
            formatter.write_str(" (included)")?;
        }
        Ok(())
    }
}

/// The caller's read grants by resource type, computed once per type per response: a
/// search set is mostly one type, and this is the per-resource cost that matters.
#[derive(Default)]
struct GrantCache<'c> {
    by_type: Vec<(String, Result<Vec<Grant<'c>>, Refusal>)>,
}

impl<'c> GrantCache<'c> {
    fn get(
        &mut self,
        caller: &'c Caller<'_>,
        resource_type: &str,
    ) -> Result<&[Grant<'c>], Refusal> {
        let index = match self
            .by_type
            .iter()
            .position(|(name, _)| name == resource_type)
        {
            Some(index) => index,
            None => {
                self.by_type.push((
                    resource_type.to_string(),
                    readable_grants(caller, resource_type),
                ));
                self.by_type.len() - 1
            }
        };
        match self.by_type.get(index) {
            Some((_, Ok(grants))) => Ok(grants),
            Some((_, Err(refused))) => Err(refused.clone()),
            None => Err(Refusal::new(
                refusal::RESPONSE_SCOPE,
                "no grants were computed",
            )),
        }
    }
}

/// Visits every resource of a response, looking inside Bundles and Parameters.
fn walk(
    value: &Node<'_>,
    appearance: Appearance,
    depth: usize,
    visit: &mut dyn FnMut(&Node<'_>, Appearance) -> Result<(), Refusal>,
) -> Result<(), Refusal> {
    if depth > MAX_DEPTH {
        return Err(Refusal::new(
            refusal::RESPONSE_FORMAT,
            "the response nests Bundles too deeply to be checked",
        ));
    }
    match value.member("resourceType").and_then(JsonTree::text) {
        Some("Bundle") => {
            let entries = value.member("entry").and_then(JsonTree::items);
            for entry in entries.into_iter().flatten() {
                if let Some(resource) = entry.member("resource") {
                    walk(resource, Appearance::of_entry(entry), depth + 1, visit)?;
                }
            }
            Ok(())
        }
        Some("Parameters") => walk_parameters(value.member("parameter"), depth + 1, visit),
        Some("OperationOutcome") => Ok(()),
        Some(_) => visit(value, appearance),
        None => Err(Refusal::new(
            refusal::RESPONSE_FORMAT,
            "the response holds JSON that is not a FHIR resource",
        )),
    }
}

fn walk_parameters(
    parameters: Option<&Node<'_>>,
    depth: usize,
    visit: &mut dyn FnMut(&Node<'_>, Appearance) -> Result<(), Refusal>,
) -> Result<(), Refusal> {
    if depth > MAX_DEPTH {
        return Err(Refusal::new(
            refusal::RESPONSE_FORMAT,
            "the response nests Parameters too deeply to be checked",
        ));
    }
    for parameter in parameters.and_then(JsonTree::items).into_iter().flatten() {
        if let Some(resource) = parameter.member("resource") {
            walk(resource, Appearance::Plain, depth + 1, visit)?;
        }
        walk_parameters(parameter.member("part"), depth + 1, visit)?;
    }
    Ok(())
}

/// One returned resource against the caller's grants, compartment and labels.
fn check_resource<'c>(
    caller: &'c Caller<'_>,
    request: &Request,
    resource: &Node<'_>,
    appearance: Appearance,
    cache: &mut GrantCache<'c>,
    notes: &mut Notes,
) -> Result<(), Refusal> {
    let resource_type = resource
        .member("resourceType")
        .and_then(JsonTree::text)
        .unwrap_or_default();
    let named = Named {
        resource_type,
        id: resource
            .member("id")
            .and_then(JsonTree::text)
            .filter(|id| fhir::is_valid_id(id))
            .unwrap_or("(no id)"),
        included: appearance == Appearance::Include,
    };
    if !fhir::is_resource_type(resource_type) {
        return Err(Refusal::new(
            refusal::RESPONSE_SCOPE,
            "the response holds a resource of a type that is not an R4 resource type",
        ));
    }
    let grants = match cache.get(caller, resource_type) {
        Ok(grants) => grants,
        Err(refused) if refused.rule == refusal::SCOPE => {
            return Err(Refusal::new(
                refusal::RESPONSE_SCOPE,
                format!("the response holds {named}, which the token may not read"),
            ));
        }
        Err(refused) => return Err(refused),
    };
    // A search match of the searched type was filtered by the search's own parameters, so a
    // granular scope the search carried covers it; anything else must match on its own.
    let searched = request.resource_type.as_deref() == Some(resource_type)
        || request.interaction == Interaction::SearchSystem;
    let filtered_by_search = appearance == Appearance::Match && searched;
    let mut outside_compartment_of = None;
    for grant in grants {
        let restrictions_hold = !grant.scope.is_granular()
            || (filtered_by_search && grant.scope.restrictions_carried_by(&request.params))
            || grant.scope.restrictions_match_resource(resource) == Some(true);
        if !restrictions_hold {
            continue;
        }
        match grant.binding {
            Binding::Unbound => return labels::check(caller, resource, &named, notes),
            Binding::Patient(patient)
                if !fhir::is_compartment_type(resource_type)
                    || fhir::in_patient_compartment(resource_type, resource, patient) =>
            {
                return labels::check(caller, resource, &named, notes);
            }
            Binding::Patient(patient) => {
                outside_compartment_of.get_or_insert(patient);
            }
        }
    }
    let Some(patient) = outside_compartment_of else {
        return Err(Refusal::new(
            refusal::RESPONSE_SCOPE,
            format!(
                "the response holds {named}, which does not match the search restrictions \
                 of the scopes that grant it"
            ),
        ));
    };
    caller.compartment_refusal(
        Refusal::new(
            refusal::RESPONSE_COMPARTMENT,
            format!(
                "the response holds {named}, which is outside the compartment of the launch \
                 patient `Patient/{patient}`"
            ),
        ),
        notes,
    )?;
    labels::check(caller, resource, &named, notes)
}

/// Grants of `r` or `s` on a type: either lets a token hold resources of that type.
fn readable_grants<'c>(
    caller: &'c Caller<'_>,
    resource_type: &str,
) -> Result<Vec<Grant<'c>>, Refusal> {
    let target = Target::Type(resource_type);
    match (
        caller.grants(target, Permission::Read),
        caller.grants(target, Permission::Search),
    ) {
        (Ok(mut read), Ok(search)) => {
            read.extend(search);
            Ok(read)
        }
        (Ok(grants), Err(_)) | (Err(_), Ok(grants)) => Ok(grants),
        (Err(refused), Err(_)) => Err(refused),
    }
}
