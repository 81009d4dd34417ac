//! The detectors, each a function from an [`Access`] to the signals it raises. Detectors
//! that keep counts (volume, name searches, break-the-glass) use the host's bounded state
//! and return its error, which the module turns into a closed refusal.

mod after_hours;
mod break_glass;
mod name_search;
mod patient;
mod volume;

use ehrgate_sdk::state::Batch;

use crate::access::Access;
use crate::config::Config;
use crate::score::Signal;

/// Every detector's signals for `access`, in a fixed order. The counting detectors' state
/// calls go to the host together, in one batch; any of them failing fails the whole.
pub fn run(config: &Config, access: &Access) -> Result<Vec<Signal>, String> {
    let mut batch = Batch::new();
    let volume = volume::plan(&config.volume, access, &mut batch);
    let name_search = name_search::plan(&config.name_search, access, &mut batch);
    let break_glass = break_glass::plan(&config.break_glass, access, &mut batch);
    let replies = batch.run();
    if let Some(error) = replies.first_error() {
        return Err(error.to_owned());
    }
    let mut signals = Vec::new();
    signals.extend(volume::detect(&config.volume, access, volume, &replies)?);
    if !access.is_patient_user {
        signals.extend(patient::vip(&config.vip, access));
        signals.extend(patient::self_lookup(&config.self_lookup, access));
        signals.extend(patient::no_care_relationship(config, access));
    }
    signals.extend(after_hours::detect(&config.after_hours, access));
    signals.extend(name_search::detect(
        &config.name_search,
        access,
        name_search,
        &replies,
    )?);
    signals.extend(break_glass::detect(
        &config.break_glass,
        break_glass,
        &replies,
    )?);
    Ok(signals)
}

/// `items` joined with `, `, at most `shown` of them, then `and N more`: finding details
/// stay short whatever a Bundle holds.
fn list(items: &[&str], shown: usize) -> String {
    let mut text = items
        .iter()
        .take(shown)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > shown {
        text.push_str(&format!(" and {} more", items.len() - shown));
    }
    text
}
