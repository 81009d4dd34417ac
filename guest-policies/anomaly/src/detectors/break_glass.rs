//! Break-the-glass above a per-user rate. Each use is allowed and audited as an emergency
//! override (DICOM 110113 / 110127, healthcare.md "break-the-glass"); one user declaring
//! emergencies on patient after patient is the pattern that needs a person to look.

use ehrgate_sdk::keys::state_member;
use ehrgate_sdk::{Severity, state};

use crate::access::Access;
use crate::config::BreakGlass;
use crate::score::Signal;

pub fn detect(config: &BreakGlass, access: &Access) -> Result<Option<Signal>, String> {
    if !access.break_glass || access.patients.is_empty() {
        return Ok(None);
    }
    let key = access.user_key("break-glass");
    let mut patients = 0;
    for patient in access.counted_patients() {
        patients = state::distinct_add(&key, &state_member(patient), config.window_ms)?;
    }
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
