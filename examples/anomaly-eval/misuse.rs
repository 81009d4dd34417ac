//! Injected misuse, one kind at a time, each request labelled with its incident and with
//! every misuse kind it exhibits (a trawl through strangers' charts is also access without
//! a care relationship). Labels come from the generator's own world (who is on which care
//! team, who works when), never from the detectors.

use std::collections::BTreeSet;

use crate::hospital::{DAYS, HOUR, Hospital, MINUTE, Role, at, random_patient};
use crate::rng::Rng;
use crate::traffic::{Action, Event, Kind, chart_open};

pub struct Incident {
    pub kind: Kind,
}

/// `per_kind` incidents of every kind, appended to `events`.
pub fn inject(
    hospital: &Hospital,
    rng: &Rng,
    per_kind: usize,
    events: &mut Vec<Event>,
) -> Vec<Incident> {
    let mut incidents = Vec::new();
    for (stream, kind) in Kind::ALL.into_iter().enumerate() {
        // One stream per kind: the incidents of one kind do not depend on another's.
        let mut rng = rng.fork(100 + stream as u64);
        for _ in 0..per_kind {
            let id = incidents.len();
            let mut new_events = Vec::new();
            if incident(hospital, &mut rng, kind, &mut new_events).is_none() {
                continue;
            }
            for mut event in new_events {
                event.incident = Some(id);
                event.labels = kind.bit() | facts(hospital, &event);
                events.push(event);
            }
            incidents.push(Incident { kind });
        }
    }
    incidents
}

/// The other misuse kinds a misuse request exhibits.
fn facts(hospital: &Hospital, event: &Event) -> u16 {
    let mut labels = 0;
    if let Some(patient) = event.action.patient() {
        let related = hospital.related(event.staff, patient);
        if !related {
            labels |= Kind::NoCare.bit();
            if hospital.is_vip(patient) {
                labels |= Kind::Vip.bit();
            }
        }
    }
    if hospital.staff[event.staff].role.is_day_shift()
        && !hospital.on_shift(event.staff, event.time)
    {
        labels |= Kind::AfterHours.bit();
    }
    labels
}

/// Everyone who uses the EHR as a person (not the bulk-export service).
fn people(hospital: &Hospital) -> Vec<usize> {
    (0..hospital.staff.len())
        .filter(|i| hospital.staff[*i].role != Role::Export)
        .collect()
}

/// A time in one of `staff`'s (non on-call) shifts, at least an hour before its end, in a
/// shift that ends a few hours before the week does (so the incident is inside the week).
fn during_shift(hospital: &Hospital, rng: &mut Rng, staff: usize) -> Option<u64> {
    let shifts: Vec<_> = hospital
        .shifts
        .iter()
        .filter(|s| s.staff == staff && !s.on_call && s.end - s.start > 2 * HOUR)
        .filter(|s| s.end + 4 * HOUR <= at(DAYS, 0))
        .collect();
    let shift = rng.pick(&shifts)?;
    Some(shift.start + rng.below(shift.end - shift.start - HOUR))
}

/// A registry patient `staff` has no care relationship with and who is not a VIP.
fn stranger(hospital: &Hospital, rng: &mut Rng, staff: usize) -> String {
    let vips: BTreeSet<String> = hospital.vips.iter().cloned().collect();
    let mut patient = random_patient(rng, &vips);
    for _ in 0..50 {
        if !hospital.related(staff, &patient) {
            break;
        }
        patient = random_patient(rng, &vips);
    }
    patient
}

fn push(events: &mut Vec<Event>, time: u64, staff: usize, action: Action, break_glass: bool) {
    events.push(Event {
        time,
        staff,
        action,
        break_glass,
        incident: None,
        labels: 0,
    });
}

/// One incident of `kind`; returns who did it.
fn incident(
    hospital: &Hospital,
    rng: &mut Rng,
    kind: Kind,
    events: &mut Vec<Event>,
) -> Option<usize> {
    let candidates: Vec<usize> = match kind {
        Kind::SelfLookup => people(hospital)
            .into_iter()
            .filter(|i| hospital.staff[*i].own_record.is_some())
            .collect(),
        Kind::AfterHours => people(hospital)
            .into_iter()
            .filter(|i| hospital.staff[*i].role.is_day_shift())
            .collect(),
        Kind::BreakGlass => people(hospital)
            .into_iter()
            .filter(|i| matches!(hospital.staff[*i].role, Role::Emergency | Role::Physician))
            .collect(),
        _ => people(hospital),
    };
    let staff = *rng.pick(&candidates)?;
    match kind {
        // A person clicking through strangers' charts: 60-150 of them, 20-75 s apart.
        Kind::Volume => {
            let mut time = during_shift(hospital, rng, staff)?;
            for _ in 0..rng.range(60, 150) {
                let patient = stranger(hospital, rng, staff);
                push(events, time, staff, Action::Read(patient), false);
                time += rng.range(20, 75) * 1000;
            }
        }
        // A script pulling 25-60 strangers' records, 2-10 s apart.
        Kind::Burst => {
            let mut time = during_shift(hospital, rng, staff)?;
            for _ in 0..rng.range(25, 60) {
                let patient = stranger(hospital, rng, staff);
                push(events, time, staff, Action::Read(patient), false);
                time += rng.range(2, 10) * 1000;
            }
        }
        // A VIP's chart opened by someone not on their care team.
        Kind::Vip => {
            let time = during_shift(hospital, rng, staff)?;
            let unrelated: Vec<&String> = hospital
                .vips
                .iter()
                .filter(|v| !hospital.related(staff, v))
                .collect();
            let vip = (*rng.pick(&unrelated)?).clone();
            chart_open(events, rng, staff, &vip, time, false);
        }
        Kind::SelfLookup => {
            let time = during_shift(hospital, rng, staff)?;
            let own = hospital.staff[staff].own_record.clone()?;
            chart_open(events, rng, staff, &own, time, false);
        }
        // Snooping on a neighbour or relative: one or two charts, minutes apart.
        Kind::NoCare => {
            let mut time = during_shift(hospital, rng, staff)?;
            for _ in 0..rng.range(1, 2) {
                let patient = stranger(hospital, rng, staff);
                chart_open(events, rng, staff, &patient, time, false);
                time += rng.range(2, 15) * MINUTE;
            }
        }
        // A day-shift account used at night or at the weekend, on one to three patients,
        // half of them the user's own.
        Kind::AfterHours => {
            let mut time = if rng.chance(0.6) {
                at(rng.below(5), 21 * 60 + rng.below(8 * 60))
            } else {
                at(5 + rng.below(2), 10 * 60 + rng.below(8 * 60))
            };
            let own: Vec<String> = hospital
                .relations
                .get(&staff)
                .map(|p| p.iter().cloned().collect())
                .unwrap_or_default();
            for _ in 0..rng.range(1, 3) {
                let patient = match rng.pick(&own) {
                    Some(p) if rng.chance(0.5) => p.clone(),
                    _ => stranger(hospital, rng, staff),
                };
                chart_open(events, rng, staff, &patient, time, false);
                time += rng.range(3, 20) * MINUTE;
            }
        }
        // Looking people up by name: 25-60 searches in 20-60 minutes, a fifth of them
        // followed by opening a result.
        Kind::NameSearch => {
            let mut time = during_shift(hospital, rng, staff)?;
            let searches = rng.range(25, 60);
            let gap = rng.range(20, 60) * MINUTE / searches;
            for _ in 0..searches {
                let surname = format!("surname-{}", rng.below(5000));
                let params = match rng.below(3) {
                    0 => vec![("name", surname)],
                    1 => vec![("family", surname)],
                    _ => vec![
                        ("family", surname),
                        ("given", format!("given-{}", rng.below(800))),
                    ],
                };
                push(events, time, staff, Action::NameSearch(params), false);
                if rng.chance(0.2) {
                    let patient = stranger(hospital, rng, staff);
                    push(events, time + 10_000, staff, Action::Read(patient), false);
                }
                time += gap;
            }
        }
        // Emergency access declared on patient after patient: 4-8 in 1-10 hours.
        Kind::BreakGlass => {
            let mut time = during_shift(hospital, rng, staff)?;
            let patients = rng.range(4, 8);
            let gap = rng.range(HOUR, 10 * HOUR) / patients;
            for _ in 0..patients {
                let patient = stranger(hospital, rng, staff);
                chart_open(events, rng, staff, &patient, time, true);
                time += gap;
            }
        }
    }
    // Every incident stays inside the week.
    events.retain(|e| e.time < at(DAYS, 0));
    (!events.is_empty()).then_some(staff)
}
