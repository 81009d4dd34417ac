//! What a request costs in tokens, from its FHIR interaction.

use ehrgate_sdk::{Interaction, Request};

use crate::config::Costs;

/// The tokens `request` takes from each of its buckets. A batch or transaction costs the sum
/// of its entries (at least 1): a Bundle of 100 searches is 100 searches' work upstream.
pub fn request_cost(costs: &Costs, request: &Request) -> u64 {
    match request.interaction {
        Interaction::Batch | Interaction::Transaction => request
            .entries
            .iter()
            .map(|entry| interaction_cost(costs, entry.interaction, entry.operation.as_deref()))
            .fold(0u64, u64::saturating_add)
            .max(1),
        interaction => interaction_cost(costs, interaction, request.operation.as_deref()),
    }
}

fn interaction_cost(costs: &Costs, interaction: Interaction, operation: Option<&str>) -> u64 {
    match interaction {
        Interaction::Read => costs.read,
        Interaction::Vread => costs.vread,
        Interaction::SearchType | Interaction::SearchSystem => costs.search,
        Interaction::HistoryInstance | Interaction::HistoryType | Interaction::HistorySystem => {
            costs.history
        }
        Interaction::Create => costs.create,
        Interaction::Update => costs.update,
        Interaction::Patch => costs.patch,
        Interaction::Delete => costs.delete,
        Interaction::Capabilities => costs.capabilities,
        Interaction::Operation => {
            operation.map_or(costs.operation, |name| costs.of_operation(name))
        }
        // Bundles do not nest (FHIR R4 http.html#transaction); an entry that claims to be
        // one is not a FHIR interaction.
        Interaction::Batch | Interaction::Transaction | Interaction::Other => costs.other,
    }
}
