//! Name-search trawling: many `Patient` searches by name in an hour means looking people
//! up (a neighbour, a celebrity) rather than treating the patient in front of you
//! (healthcare.md, "name-search trawling").

use ehrgate_sdk::state::{Batch, Replies, Ticket};
use ehrgate_sdk::{Interaction, Param, Severity};

use crate::access::Access;
use crate::config::NameSearch;
use crate::score::Signal;

/// Adds this access's name searches to the user's counter in `batch`, if it made any.
pub fn plan(config: &NameSearch, access: &Access, batch: &mut Batch) -> Option<Ticket> {
    let request = access.request;
    let mut searches = u64::from(is_name_search(
        config,
        request.interaction,
        request.resource_type.as_deref(),
        &request.params,
    ));
    for entry in &request.entries {
        searches += u64::from(is_name_search(
            config,
            entry.interaction,
            entry.resource_type.as_deref(),
            &entry.params,
        ));
    }
    (searches > 0).then(|| {
        batch.counter_add(
            &access.user_key("name-searches"),
            searches,
            config.window_ms,
        )
    })
}

pub fn detect(
    config: &NameSearch,
    access: &Access,
    planned: Option<Ticket>,
    replies: &Replies,
) -> Result<Option<Signal>, String> {
    let Some(ticket) = planned else {
        return Ok(None);
    };
    let total = replies.count(ticket)?;
    let limit = config
        .role_limits
        .iter()
        .filter(|(role, _)| access.principal.has_role(role))
        .map(|(_, limit)| *limit)
        .max()
        .unwrap_or(config.max_searches);
    Ok((total > limit).then(|| Signal {
        rule_id: "anomaly.name-search",
        severity: Severity::Medium,
        weight: config.weight,
        detail: format!(
            "{total} patient name searches in {} min (limit {limit})",
            config.window_ms / 60_000
        ),
    }))
}

/// `Patient?name=...` (any configured name parameter, with or without a modifier), or a
/// system search `?_type=Patient&name=...`.
fn is_name_search(
    config: &NameSearch,
    interaction: Interaction,
    resource_type: Option<&str>,
    params: &[Param],
) -> bool {
    let searches_patients = match interaction {
        Interaction::SearchType => resource_type == Some("Patient"),
        Interaction::SearchSystem => params
            .iter()
            .any(|p| p.name == "_type" && p.value.split(',').any(|t| t == "Patient")),
        _ => false,
    };
    searches_patients
        && params.iter().any(|p| {
            let name = p.name.split_once(':').map_or(p.name.as_str(), |(n, _)| n);
            config.params.iter().any(|listed| listed == name)
        })
}
