//! Volume: distinct patients per user in a sliding hour, and in a short burst window.
//!
//! Trawling through many charts is the most common form of bulk misuse, and the count of
//! distinct patients (not of requests: a clinician reopens the same chart all day) is what
//! separates it from heavy but normal work (healthcare.md, "volume"; Boxwala et al., JAMIA
//! 2011, count distinct patients per user among their strongest features).

use ehrgate_sdk::Severity;
use ehrgate_sdk::keys::state_member;
use ehrgate_sdk::state::{Batch, Replies, Ticket};

use crate::access::Access;
use crate::config::Volume;
use crate::score::Signal;

/// The window counts a batch will answer: each window's count after the last patient.
pub struct Planned {
    hour: Ticket,
    burst: Ticket,
}

/// Adds this access's patients to both windows in `batch`.
pub fn plan(config: &Volume, access: &Access, batch: &mut Batch) -> Option<Planned> {
    if access.patients.is_empty() || access.has_any_role(&config.exempt_roles) {
        return None;
    }
    // Two keys: a distinct window forgets everything older than the window it is asked
    // about, so one key cannot serve an hour and five minutes at once.
    let hour_key = access.user_key("patients-hour");
    let burst_key = access.user_key("patients-burst");
    let mut planned = None;
    for patient in access.counted_patients() {
        let member = state_member(patient);
        planned = Some(Planned {
            hour: batch.distinct_add(&hour_key, &member, config.window_ms),
            burst: batch.distinct_add(&burst_key, &member, config.burst_window_ms),
        });
    }
    planned
}

pub fn detect(
    config: &Volume,
    access: &Access,
    planned: Option<Planned>,
    replies: &Replies,
) -> Result<Vec<Signal>, String> {
    let Some(planned) = planned else {
        return Ok(Vec::new());
    };
    let in_hour = u32::try_from(replies.count(planned.hour)?).unwrap_or(u32::MAX);
    let in_burst = u32::try_from(replies.count(planned.burst)?).unwrap_or(u32::MAX);
    let limit = config
        .role_limits
        .iter()
        .filter(|(role, _)| access.principal.has_role(role))
        .map(|(_, limit)| *limit)
        .max()
        .unwrap_or(config.max_distinct_patients);
    let mut signals = Vec::new();
    if in_hour > limit {
        signals.push(Signal {
            rule_id: "anomaly.volume",
            severity: Severity::High,
            weight: config.weight,
            detail: format!(
                "{in_hour} distinct patients in {} min (limit {limit})",
                config.window_ms / 60_000
            ),
        });
    }
    if in_burst > config.burst_max_distinct_patients {
        signals.push(Signal {
            rule_id: "anomaly.burst",
            severity: Severity::High,
            weight: config.burst_weight,
            detail: format!(
                "{in_burst} distinct patients in {} s (limit {})",
                config.burst_window_ms / 1000,
                config.burst_max_distinct_patients
            ),
        });
    }
    Ok(signals)
}
