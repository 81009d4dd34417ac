//! The response hook: every resource a read, search, history, operation, write or Bundle
//! returns, including `search.mode = include` entries, must be one the token may hold (a
//! grant of `r` or `s` on its type whose restrictions it matches, or for what a write
//! returns, the grant of the write), inside the launch patient's compartment when the grant
//! is patient-bound (R4 compartmentdefinition-patient), and cleared for its security
//! labels. Contained resources are checked with their container: labels, and the
//! compartment when they name a patient. A response that must be checked but cannot be read
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
    ) || returned_by(request.interaction).is_some();
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
        // A write answered without a body (`Prefer: return=minimal`) returns nothing; one
        // whose body is not shown (not JSON, or too large) is refused like a read's.
        let nothing_returned = request.interaction.is_write() && response.content_type.is_none();
        if binary_read || nothing_returned {
            return Ok(());
        }
        return Err(Refusal::new(
            refusal::RESPONSE_FORMAT,
            "the response is not JSON this policy can check; request `_format=json`",
        ));
    };
    if request.interaction.is_write() && body.trim().is_empty() {
        return Ok(());
    }
    let document = document::parse(body).map_err(|_| {
        Refusal::new(
            refusal::RESPONSE_FORMAT,
            "the response body is not valid JSON, so it cannot be checked",
        )
    })?;
    let mut checker = Checker {
        caller,
        request,
        grants: GrantCache::default(),
        notes,
        written: None,
    };
    match bundle_entries_by_request(request, &document) {
        // R4 http.html#transaction-response: the response entries answer the request's
        // entries in order. What a read entry returns is checked like any read; what a
        // write entry returns like what a write returns (a conditional create, or a server
        // that answers with something else, may return another patient's resource).
        Some(entries) => {
            for (entry, asked) in entries.iter().zip(&request.entries) {
                if let Some(resource) = entry.member("resource") {
                    checker.written = returned_by(asked.interaction).flatten();
                    checker.walk(resource, Appearance::of_entry(entry), 1)?;
                }
            }
            Ok(())
        }
        None => {
            checker.written = returned_by(request.interaction).flatten();
            checker.walk(&document, Appearance::Plain, 0)
        }
    }
}

/// Interactions whose response holds resources to check: `Some(None)` for what the caller
/// asked to read, `Some(Some(permission))` for what a write returns (the resource as
/// written, or as the server has it), which the grant of the write may hold.
fn returned_by(interaction: Interaction) -> Option<Option<Permission>> {
    match interaction {
        Interaction::Read
        | Interaction::Vread
        | Interaction::HistoryInstance
        | Interaction::HistoryType
        | Interaction::HistorySystem
        | Interaction::SearchType
        | Interaction::SearchSystem
        | Interaction::Operation => Some(None),
        Interaction::Create => Some(Some(Permission::Create)),
        Interaction::Update | Interaction::Patch => Some(Some(Permission::Update)),
        Interaction::Delete => Some(Some(Permission::Delete)),
        Interaction::Capabilities
        | Interaction::Batch
        | Interaction::Transaction
        | Interaction::Other => None,
    }
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

/// A returned resource as messages name it: `Observation/o1`, marked when included or
/// contained.
struct Named<'a> {
    resource_type: &'a str,
    id: &'a str,
    appearance: Appearance,
    contained: bool,
}

impl fmt::Display for Named<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "`{}/{}`", self.resource_type, self.id)?;
        if self.contained {
            formatter.write_str(" (contained)")?;
        } else if self.appearance == Appearance::Include {
            formatter.write_str(" (included)")?;
        }
        Ok(())
    }
}

/// The caller's grants by resource type (and the permission of a write whose answer is
/// checked), computed once per type per response: a search set is mostly one type, and
/// this is the per-resource cost that matters.
#[derive(Default)]
struct GrantCache<'c> {
    by_type: Vec<CachedGrants<'c>>,
}

/// The grants of one type, for a read or for the answer of a write of one permission.
type CachedGrants<'c> = (String, Option<Permission>, Result<Vec<Grant<'c>>, Refusal>);

impl<'c> GrantCache<'c> {
    fn get(
        &mut self,
        caller: &'c Caller<'_>,
        resource_type: &str,
        written: Option<Permission>,
    ) -> Result<&[Grant<'c>], Refusal> {
        let index = match self
            .by_type
            .iter()
            .position(|(name, permission, _)| name == resource_type && *permission == written)
        {
            Some(index) => index,
            None => {
                self.by_type.push((
                    resource_type.to_string(),
                    written,
                    holding_grants(caller, resource_type, written),
                ));
                self.by_type.len() - 1
            }
        };
        match self.by_type.get(index) {
            Some((_, _, Ok(grants))) => Ok(grants),
            Some((_, _, Err(refused))) => Err(refused.clone()),
            None => Err(Refusal::new(
                refusal::RESPONSE_SCOPE,
                "no grants were computed",
            )),
        }
    }
}

/// What one response is checked against.
struct Checker<'c, 'n> {
    caller: &'c Caller<'c>,
    request: &'c Request,
    grants: GrantCache<'c>,
    notes: &'n mut Notes,
    /// The permission of the write whose answer is being checked, if it is one.
    written: Option<Permission>,
}

/// The binding a resource was released under, which its contained resources share.
#[derive(Clone, Copy)]
enum Released<'c> {
    Unbound,
    Patient(&'c str),
}

impl<'c> Checker<'c, '_> {
    /// Visits every resource of a response, looking inside Bundles, Parameters and
    /// contained resources.
    fn walk(
        &mut self,
        value: &Node<'_>,
        appearance: Appearance,
        depth: usize,
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
                        self.walk(resource, Appearance::of_entry(entry), depth + 1)?;
                    }
                }
                Ok(())
            }
            Some("Parameters") => self.walk_parameters(value.member("parameter"), depth + 1),
            Some("OperationOutcome") => Ok(()),
            Some(_) => {
                let released = self.check_resource(value, appearance)?;
                self.check_contained(value, released, depth + 1)
            }
            None => Err(Refusal::new(
                refusal::RESPONSE_FORMAT,
                "the response holds JSON that is not a FHIR resource",
            )),
        }
    }

    fn walk_parameters(
        &mut self,
        parameters: Option<&Node<'_>>,
        depth: usize,
    ) -> Result<(), Refusal> {
        if depth > MAX_DEPTH {
            return Err(Refusal::new(
                refusal::RESPONSE_FORMAT,
                "the response nests Parameters too deeply to be checked",
            ));
        }
        for parameter in parameters.and_then(JsonTree::items).into_iter().flatten() {
            if let Some(resource) = parameter.member("resource") {
                self.walk(resource, Appearance::Plain, depth + 1)?;
            }
            self.walk_parameters(parameter.member("part"), depth + 1)?;
        }
        Ok(())
    }

    /// One returned resource against the caller's grants, compartment and labels; the
    /// binding it was released under.
    fn check_resource(
        &mut self,
        resource: &Node<'_>,
        appearance: Appearance,
    ) -> Result<Released<'c>, Refusal> {
        let caller = self.caller;
        let request = self.request;
        let (resource_type, named) = name(resource, appearance, false)?;
        let grants = match self.grants.get(caller, resource_type, self.written) {
            Ok(grants) => grants,
            Err(refused) if refused.rule == refusal::SCOPE => {
                return Err(Refusal::new(
                    refusal::RESPONSE_SCOPE,
                    format!("the response holds {named}, which the token may not read"),
                ));
            }
            Err(refused) => return Err(refused),
        };
        // A search match of the searched type was filtered by the search's own parameters,
        // so a granular scope the search carried covers it; anything else must match on
        // its own.
        let searched = request.resource_type.as_deref() == Some(resource_type)
            || request.interaction == Interaction::SearchSystem;
        let filtered_by_search = appearance == Appearance::Match && searched;
        let mut outside_compartment_of = None;
        let mut released = None;
        for grant in grants {
            let restrictions_hold = !grant.scope.is_granular()
                || (filtered_by_search && grant.scope.restrictions_carried_by(&request.params))
                || grant.scope.restrictions_match_resource(resource) == Some(true);
            if !restrictions_hold {
                continue;
            }
            match grant.binding {
                Binding::Unbound => {
                    released = Some(Released::Unbound);
                    break;
                }
                Binding::Patient(patient) if belongs_to(resource_type, resource, patient) => {
                    released = Some(Released::Patient(patient));
                    break;
                }
                Binding::Patient(patient) => {
                    outside_compartment_of.get_or_insert(patient);
                }
            }
        }
        let released = match (released, outside_compartment_of) {
            (Some(released), _) => released,
            (None, None) => {
                return Err(Refusal::new(
                    refusal::RESPONSE_SCOPE,
                    format!(
                        "the response holds {named}, which does not match the search \
                         restrictions of the scopes that grant it"
                    ),
                ));
            }
            (None, Some(patient)) => {
                // Lifted by break-the-glass: what it contains is lifted with it.
                caller.compartment_refusal(outside(&named, patient), self.notes)?;
                Released::Unbound
            }
        };
        labels::check(caller, resource, &named, self.notes)?;
        Ok(released)
    }

    /// The contained resources of a released resource (R4 references.html#contained): they
    /// exist only inside it and were released with it, so the token needs no grant of
    /// their own type, but they are checked for labels, and one that names patients must
    /// name the launch patient when the container was released under a patient binding.
    fn check_contained(
        &mut self,
        container: &Node<'_>,
        released: Released<'c>,
        depth: usize,
    ) -> Result<(), Refusal> {
        let contained = container.member("contained").and_then(JsonTree::items);
        for inner in contained.into_iter().flatten() {
            if depth > MAX_DEPTH {
                return Err(Refusal::new(
                    refusal::RESPONSE_FORMAT,
                    "the response nests contained resources too deeply to be checked",
                ));
            }
            let (resource_type, named) = name(inner, Appearance::Plain, true)?;
            if matches!(resource_type, "Bundle" | "Parameters") {
                // Neither may be contained (R4 references.html#contained); what they hold
                // is checked as anything else returned.
                self.walk(inner, Appearance::Plain, depth + 1)?;
                continue;
            }
            if let Released::Patient(patient) = released
                && names_only_others(resource_type, inner, patient)
            {
                self.caller
                    .compartment_refusal(outside(&named, patient), self.notes)?;
            }
            labels::check(self.caller, inner, &named, self.notes)?;
            self.check_contained(inner, released, depth + 1)?;
        }
        Ok(())
    }
}

/// A resource's type, checked, and its name for messages.
fn name<'r>(
    resource: &'r Node<'_>,
    appearance: Appearance,
    contained: bool,
) -> Result<(&'r str, Named<'r>), Refusal> {
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
        appearance,
        contained,
    };
    if !fhir::is_resource_type(resource_type) {
        return Err(Refusal::new(
            refusal::RESPONSE_SCOPE,
            "the response holds a resource of a type that is not an R4 resource type",
        ));
    }
    Ok((resource_type, named))
}

fn outside(named: &Named<'_>, patient: &str) -> Refusal {
    Refusal::new(
        refusal::RESPONSE_COMPARTMENT,
        format!(
            "the response holds {named}, which is outside the compartment of the launch \
             patient `Patient/{patient}`"
        ),
    )
}

/// Whether a resource a patient-bound grant reaches belongs to `patient`: for a compartment
/// type, one of its compartment elements references the patient (R4
/// compartmentdefinition-patient); for a type outside the compartment that still names a
/// patient (Task `for`, Device `patient`, Binary `securityContext`, ...), it names nothing
/// there or names the patient; any other type is shared data.
fn belongs_to(resource_type: &str, resource: &Node<'_>, patient: &str) -> bool {
    if fhir::is_compartment_type(resource_type) {
        return fhir::in_patient_compartment(resource_type, resource, patient);
    }
    let mut names_anything = false;
    let mut names_patient = false;
    for path in fhir::patient_link_paths(resource_type) {
        let segments: Vec<&str> = path.split('.').collect();
        node_values_at(resource, &segments, &mut |reference| {
            if let Some(text) = reference.member("reference").and_then(JsonTree::text) {
                names_anything = true;
                names_patient |= fhir::patient_id_of_reference(text) == Some(patient);
            }
        });
    }
    !names_anything || names_patient
}

/// Whether a contained resource names patients (its own id for a Patient, the references
/// of its patient elements) and none of them is `patient`.
fn names_only_others(resource_type: &str, resource: &Node<'_>, patient: &str) -> bool {
    let mut named = fhir::resource_patients(resource_type, resource);
    for path in fhir::patient_link_paths(resource_type) {
        let segments: Vec<&str> = path.split('.').collect();
        node_values_at(resource, &segments, &mut |reference| {
            if let Some(id) = reference
                .member("reference")
                .and_then(JsonTree::text)
                .and_then(fhir::patient_id_of_reference)
            {
                named.push(id);
            }
        });
    }
    !named.is_empty() && !named.contains(&patient)
}

/// `references::values_at` over the response's pruned tree.
fn node_values_at<'v>(value: &'v Node<'v>, path: &[&str], found: &mut dyn FnMut(&'v Node<'v>)) {
    if let Some(items) = value.items() {
        for item in items {
            node_values_at(item, path, found);
        }
        return;
    }
    match path.split_first() {
        None => found(value),
        Some((first, rest)) => {
            if let Some(child) = value.member(first) {
                node_values_at(child, rest, found);
            }
        }
    }
}

/// Grants of `r` or `s` on a type, either of which lets a token hold resources of that
/// type, and for what a write returns, the grants of the write's permission.
fn holding_grants<'c>(
    caller: &'c Caller<'_>,
    resource_type: &str,
    written: Option<Permission>,
) -> Result<Vec<Grant<'c>>, Refusal> {
    let target = Target::Type(resource_type);
    let mut permissions = vec![Permission::Read, Permission::Search];
    permissions.extend(written);
    let mut grants = Vec::new();
    let mut first_refusal = None;
    for permission in permissions {
        match caller.grants(target, permission) {
            Ok(found) => grants.extend(found),
            Err(refused) => {
                first_refusal.get_or_insert(refused);
            }
        }
    }
    match first_refusal {
        Some(refused) if grants.is_empty() => Err(refused),
        _ => {
            // Unbound grants first, as `Caller::grants` orders them.
            grants.sort_by_key(|grant| {
                (grant.binding != Binding::Unbound, grant.scope.is_granular())
            });
            Ok(grants)
        }
    }
}
