//! Break-the-glass above a per-user rate. Each use is allowed and audited as an emergency
//! override (DICOM 110113 / 110127, healthcare.md "break-the-glass"); one user declaring
//! emergencies on patient after patient is the pattern that needs a person to look.

use ehrgate_sdk::Severity;
use ehrgate_sdk::keys::state_member;
use ehrgate_sdk::state::{Batch, Replies, Ticket};

use crate::access::Access;
use crate::config::BreakGlass;
use crate::score::Signal;

/// Adds this access's patients to the user's break-the-glass window in `batch`, when the
/// access declares an emergency; the ticket answers the count after the last patient.
pub fn plan(config: &BreakGlass, access: &Access, batch: &mut Batch) -> Option<Ticket> {
    if !access.break_glass || access.patients.is_empty() {
        return None;
    }
    let key = access.user_key("break-glass");
    access
        .counted_patients()
        .iter()
        .map(|patient| batch.distinct_add(&key, &state_member(patient), config.window_ms))
        .last()
}

pub fn detect(
    config: &BreakGlass,
    planned: Option<Ticket>,
    replies: &Replies,
) -> Result<Option<Signal>, String> {
    let Some(ticket) = planned else {
        return Ok(None);
    };
    let patients = u32::try_from(replies.count(ticket)?).unwrap_or(u32::MAX);
    Ok((patients > config.max_patients).then(|| Signal {
        rule_id: "anomaly.break-glass-rate",
        severity: Severity::High,
        weight: config.weight,
        detail: format!(
            "break-the-glass on {patients} distinct patients in {} h (limit {})",
            config.window_ms / 3_600_000,
            config.max_patients
        ),
    }))
}
