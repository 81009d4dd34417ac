//! The `anomaly` module config the hospital's operator would write: the default thresholds,
//! the hospital's lists (VIPs, staff who are patients, day-shift and exempt roles) and the
//! care-team file as known at a moment (it is re-exported and reloaded periodically).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::hospital::{DAY, Hospital, Role, UTC_OFFSET_MINUTES, WARDS, WEEK_START};

fn user(hospital: &Hospital, staff: usize) -> String {
    format!("Practitioner/{}", hospital.staff[staff].id)
}

/// The config with the care-team file as exported at `as_of`: stays and emergency visits
/// that have begun, discharges for the coding worklist, the clinics' schedules up to the
/// end of that day.
pub fn eval_config(hospital: &Hospital, as_of: u64) -> Value {
    let end_of_day = WEEK_START + ((as_of - WEEK_START) / DAY + 1) * DAY;
    let mut care_teams = serde_json::Map::new();
    let mut inpatients = BTreeSet::new();
    for ward in 0..WARDS {
        let members: Vec<String> = (0..hospital.staff.len())
            .filter(|i| hospital.staff[*i].ward == Some(ward))
            .map(|i| user(hospital, i))
            .collect();
        let patients: BTreeSet<&str> = hospital
            .stays
            .iter()
            .filter(|s| s.ward == ward && s.start <= as_of)
            .map(|s| s.patient.as_str())
            .collect();
        inpatients.extend(patients.iter().copied());
        care_teams.insert(
            format!("ward-{ward}"),
            json!({"members": members, "patients": patients}),
        );
    }
    let pharmacists: Vec<String> = hospital
        .by_role(Role::Pharmacist)
        .into_iter()
        .map(|i| user(hospital, i))
        .collect();
    care_teams.insert(
        "pharmacy".into(),
        json!({"members": pharmacists, "patients": inpatients}),
    );
    // The coding worklist: every discharged patient.
    let coders: Vec<String> = hospital
        .by_role(Role::Coder)
        .into_iter()
        .map(|i| user(hospital, i))
        .collect();
    let discharged: BTreeSet<&str> = hospital
        .stays
        .iter()
        .filter(|s| s.end <= as_of)
        .map(|s| s.patient.as_str())
        .collect();
    care_teams.insert(
        "him-coding".into(),
        json!({"members": coders, "patients": discharged}),
    );
    let mut own_patients: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    for appointment in hospital.appointments.iter().filter(|a| a.time < end_of_day) {
        own_patients
            .entry(appointment.clinician)
            .or_default()
            .insert(&appointment.patient);
    }
    for (clinician, patients) in &hospital.follow_ups {
        own_patients
            .entry(*clinician)
            .or_default()
            .extend(patients.iter().map(String::as_str));
    }
    for visit in hospital.ed_visits.iter().filter(|v| v.start <= as_of) {
        own_patients
            .entry(visit.physician)
            .or_default()
            .insert(&visit.patient);
    }
    for (staff, patients) in own_patients {
        care_teams.insert(user(hospital, staff), json!(patients));
    }
    let staff_patients: BTreeMap<String, Vec<&str>> = (0..hospital.staff.len())
        .filter_map(|i| {
            let record = hospital.staff[i].own_record.as_deref()?;
            Some((user(hospital, i), vec![record]))
        })
        .collect();
    json!({
        "vip": {"patients": hospital.vips},
        "self_lookup": {"staff_patients": staff_patients},
        "care_teams": care_teams,
        "care_relationship": {
            "exempt_roles": ["registration", "emergency", "bulk-export"]
        },
        "volume": {"exempt_roles": ["bulk-export"]},
        "after_hours": {
            "roles": ["outpatient", "registration", "him-coder"],
            "utc_offset_minutes": UTC_OFFSET_MINUTES
        }
    })
}
