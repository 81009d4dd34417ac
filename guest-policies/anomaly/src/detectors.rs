//! The detectors, each a function from an [`Access`] to the signals it raises. Detectors
//! that keep counts (volume, name searches, break-the-glass) use the host's bounded state
//! and return its error, which the module turns into a closed refusal.

mod after_hours;
mod break_glass;
mod name_search;
mod patient;
mod volume;

use crate::access::Access;
use crate::config::Config;
use crate::score::Signal;

/// Every detector's signals for `access`, in a fixed order.
pub fn run(config: &Config, access: &Access) -> Result<Vec<Signal>, String> {
    let mut signals = Vec::new();
    signals.extend(volume::detect(&config.volume, access)?);
    if !access.is_patient_user {
        signals.extend(patient::vip(&config.vip, access));
        signals.extend(patient::self_lookup(&config.self_lookup, access));
        signals.extend(patient::no_care_relationship(config, access));
    }
    signals.extend(after_hours::detect(&config.after_hours, access));
    signals.extend(name_search::detect(&config.name_search, access)?);
    signals.extend(break_glass::detect(&config.break_glass, access)?);
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
