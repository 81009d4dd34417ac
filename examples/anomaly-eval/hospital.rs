//! The synthetic hospital: staff with roles and rotas, patients, ward stays, clinic
//! appointments and emergency visits, and the care-team file an operator would export from
//! it. Every number here is an assumption written down in the README section "Rate limiting
//! and anomaly detection" (generator assumptions); none is derived from the detectors.

use std::collections::{BTreeMap, BTreeSet};

use crate::rng::Rng;

pub const MINUTE: u64 = 60_000;
pub const HOUR: u64 = 60 * MINUTE;
pub const DAY: u64 = 24 * HOUR;
/// Monday 2026-01-05 00:00 in the hospital's zone, UTC+1 (CET; no daylight saving in January).
pub const WEEK_START: u64 = 1_767_567_600_000;
pub const UTC_OFFSET_MINUTES: i32 = 60;
pub const DAYS: u64 = 7;

pub const REGISTRY_PATIENTS: usize = 20_000;
pub const WARDS: usize = 8;
pub const BEDS_PER_WARD: usize = 24;
pub const VIP_PATIENTS: usize = 20;
/// VIPs in a ward bed when the week starts, so their care teams open their charts.
pub const VIPS_ADMITTED: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Physician,
    Nurse,
    Emergency,
    Outpatient,
    Registration,
    Coder,
    Pharmacist,
    Export,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Physician => "physician",
            Role::Nurse => "nurse",
            Role::Emergency => "emergency",
            Role::Outpatient => "outpatient",
            Role::Registration => "registration",
            Role::Coder => "him-coder",
            Role::Pharmacist => "pharmacist",
            Role::Export => "bulk-export",
        }
    }

    pub fn client(self) -> &'static str {
        match self {
            Role::Physician | Role::Nurse => "ward-app",
            Role::Emergency => "ed-app",
            Role::Outpatient => "clinic-app",
            Role::Registration => "registration-desk",
            Role::Coder => "coding-app",
            Role::Pharmacist => "pharmacy-app",
            Role::Export => "bulk-export",
        }
    }

    /// Roles that work office hours (the after-hours detector's day-shift roles).
    pub fn is_day_shift(self) -> bool {
        matches!(self, Role::Outpatient | Role::Registration | Role::Coder)
    }
}

pub struct Staff {
    pub id: String,
    pub role: Role,
    pub ward: Option<usize>,
    /// The staff member's own patient record, if they are also a patient here.
    pub own_record: Option<String>,
}

/// A span of work: the person is at work from `start` to `end`.
#[derive(Clone, Copy, Debug)]
pub struct Shift {
    pub staff: usize,
    pub start: u64,
    pub end: u64,
    /// An on-call night: reachable, few accesses.
    pub on_call: bool,
}

pub struct Stay {
    pub ward: usize,
    pub patient: String,
    pub start: u64,
    pub end: u64,
}

pub struct Appointment {
    pub clinician: usize,
    pub patient: String,
    pub time: u64,
}

pub struct EdVisit {
    pub physician: usize,
    pub patient: String,
    pub start: u64,
    pub end: u64,
}

pub struct Hospital {
    pub staff: Vec<Staff>,
    pub shifts: Vec<Shift>,
    pub stays: Vec<Stay>,
    pub appointments: Vec<Appointment>,
    pub follow_ups: BTreeMap<usize, Vec<String>>,
    pub ed_visits: Vec<EdVisit>,
    pub vips: Vec<String>,
    /// Ground truth: which patients each member of staff has a care relationship with
    /// (what the care-team file says, built from stays, appointments and visits).
    pub relations: BTreeMap<usize, BTreeSet<String>>,
}

pub fn patient_id(index: usize) -> String {
    format!("pat-{index:05}")
}

/// Local midnight of day `day` (0 = Monday) plus `minutes`.
pub fn at(day: u64, minutes: u64) -> u64 {
    WEEK_START + day * DAY + minutes * MINUTE
}

impl Hospital {
    pub fn generate(rng: &Rng) -> Hospital {
        let mut rng = rng.fork(1);
        let staff = staff(&mut rng);
        let vips: Vec<String> = distinct_patients(&mut rng, VIP_PATIENTS, &BTreeSet::new());
        let mut hospital = Hospital {
            shifts: rota(&staff, &mut rng),
            staff,
            stays: Vec::new(),
            appointments: Vec::new(),
            follow_ups: BTreeMap::new(),
            ed_visits: Vec::new(),
            vips,
            relations: BTreeMap::new(),
        };
        hospital.admit(&mut rng);
        hospital.book_clinics(&mut rng);
        hospital.run_emergency_department(&mut rng);
        hospital.relate();
        hospital
    }

    pub fn by_role(&self, role: Role) -> Vec<usize> {
        (0..self.staff.len())
            .filter(|i| self.staff[*i].role == role)
            .collect()
    }

    pub fn related(&self, staff: usize, patient: &str) -> bool {
        self.relations
            .get(&staff)
            .is_some_and(|patients| patients.contains(patient))
    }

    pub fn is_vip(&self, patient: &str) -> bool {
        self.vips.iter().any(|v| v == patient)
    }

    /// Whether `staff` is at work at `time` (a day-shift role outside every shift is the
    /// after-hours fact).
    pub fn on_shift(&self, staff: usize, time: u64) -> bool {
        self.shifts
            .iter()
            .any(|s| s.staff == staff && s.start <= time && time < s.end)
    }

    /// Patients in ward `ward` at `time`.
    pub fn ward_patients(&self, ward: usize, time: u64) -> Vec<&str> {
        self.stays
            .iter()
            .filter(|s| s.ward == ward && s.start <= time && time < s.end)
            .map(|s| s.patient.as_str())
            .collect()
    }

    fn admit(&mut self, rng: &mut Rng) {
        let excluded: BTreeSet<String> = self.vips.iter().cloned().collect();
        for ward in 0..WARDS {
            for bed in 0..BEDS_PER_WARD {
                // The first stay began before the week; stays last 12 h + Exp(mean 4 days),
                // and a bed is empty 2-12 h between patients.
                let mut start = WEEK_START - rng.range(0, 3 * DAY);
                let mut first = true;
                while start < WEEK_START + DAYS * DAY {
                    let length = 12 * HOUR + rng.exponential(4.0 * DAY as f64) as u64;
                    let patient = if first && ward < VIPS_ADMITTED && bed == 0 {
                        self.vips[ward].clone()
                    } else {
                        random_patient(rng, &excluded)
                    };
                    self.stays.push(Stay {
                        ward,
                        patient,
                        start,
                        end: start + length,
                    });
                    start += length + rng.range(2 * HOUR, 12 * HOUR);
                    first = false;
                }
            }
        }
    }

    fn book_clinics(&mut self, rng: &mut Rng) {
        for clinician in self.by_role(Role::Outpatient) {
            // Patients seen in the last 30 days whose results come back this week.
            self.follow_ups
                .insert(clinician, distinct_patients(rng, 40, &BTreeSet::new()));
            for day in 0..5 {
                // 16 half-hour slots, 08:00-12:00 and 13:00-17:00.
                for slot in 0..16u64 {
                    let minutes = 8 * 60 + slot * 30 + if slot >= 8 { 60 } else { 0 };
                    self.appointments.push(Appointment {
                        clinician,
                        patient: patient_id(rng.below(REGISTRY_PATIENTS as u64) as usize),
                        time: at(day, minutes),
                    });
                }
            }
        }
    }

    fn run_emergency_department(&mut self, rng: &mut Rng) {
        let mut time = WEEK_START;
        let end = WEEK_START + DAYS * DAY;
        while time < end {
            let hour = ((time - WEEK_START) / HOUR) % 24;
            // Arrivals: 5 an hour from 08:00 to 22:00, 2 an hour at night.
            let rate = if (8..22).contains(&hour) { 5.0 } else { 2.0 };
            time += rng.exponential(HOUR as f64 / rate) as u64;
            let on_duty: Vec<usize> = self
                .shifts
                .iter()
                .filter(|s| {
                    self.staff[s.staff].role == Role::Emergency && s.start <= time && time < s.end
                })
                .map(|s| s.staff)
                .collect();
            if let Some(physician) = rng.pick(&on_duty) {
                self.ed_visits.push(EdVisit {
                    physician: *physician,
                    patient: patient_id(rng.below(REGISTRY_PATIENTS as u64) as usize),
                    start: time,
                    end: time + rng.range(2 * HOUR, 6 * HOUR),
                });
            }
        }
    }

    /// The care relationships on file: ward teams to their ward's patients, pharmacists to
    /// every inpatient, coders to discharged patients (their worklist), clinicians to their
    /// appointments and follow-ups, emergency physicians to their visits. Registration has
    /// none (the role is exempt from the care-relationship check).
    fn relate(&mut self) {
        let mut relations: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        for stay in &self.stays {
            for (index, member) in self.staff.iter().enumerate() {
                if member.ward == Some(stay.ward)
                    || member.role == Role::Pharmacist
                    || member.role == Role::Coder
                {
                    relations
                        .entry(index)
                        .or_default()
                        .insert(stay.patient.clone());
                }
            }
        }
        for appointment in &self.appointments {
            relations
                .entry(appointment.clinician)
                .or_default()
                .insert(appointment.patient.clone());
        }
        for (clinician, patients) in &self.follow_ups {
            relations
                .entry(*clinician)
                .or_default()
                .extend(patients.iter().cloned());
        }
        for visit in &self.ed_visits {
            relations
                .entry(visit.physician)
                .or_default()
                .insert(visit.patient.clone());
        }
        self.relations = relations;
    }
}

/// A registry patient outside `excluded` (which is always far smaller than the registry).
pub fn random_patient(rng: &mut Rng, excluded: &BTreeSet<String>) -> String {
    let mut id = patient_id(rng.below(REGISTRY_PATIENTS as u64) as usize);
    for _ in 0..100 {
        if !excluded.contains(&id) {
            break;
        }
        id = patient_id(rng.below(REGISTRY_PATIENTS as u64) as usize);
    }
    id
}

/// `count` distinct registry patients outside `excluded`.
pub fn distinct_patients(rng: &mut Rng, count: usize, excluded: &BTreeSet<String>) -> Vec<String> {
    let mut chosen = BTreeSet::new();
    let mut ordered = Vec::with_capacity(count);
    // Bounded: the registry is far larger than any request for patients.
    for _ in 0..count * 100 {
        if ordered.len() == count {
            break;
        }
        let id = patient_id(rng.below(REGISTRY_PATIENTS as u64) as usize);
        if !excluded.contains(&id) && chosen.insert(id.clone()) {
            ordered.push(id);
        }
    }
    ordered
}

fn staff(rng: &mut Rng) -> Vec<Staff> {
    let mut staff = Vec::new();
    let mut add = |id: String, role: Role, ward: Option<usize>| {
        staff.push(Staff {
            id,
            role,
            ward,
            own_record: None,
        });
    };
    for ward in 0..WARDS {
        for i in 0..3 {
            add(format!("dr-w{ward}-{i}"), Role::Physician, Some(ward));
        }
        for i in 0..15 {
            add(format!("rn-w{ward}-{i:02}"), Role::Nurse, Some(ward));
        }
    }
    for i in 0..6 {
        add(format!("dr-ed-{i}"), Role::Emergency, None);
    }
    for i in 0..8 {
        add(format!("dr-clinic-{i}"), Role::Outpatient, None);
    }
    for i in 0..6 {
        add(format!("clerk-{i}"), Role::Registration, None);
    }
    for i in 0..4 {
        add(format!("coder-{i}"), Role::Coder, None);
    }
    for i in 0..6 {
        add(format!("pharm-{i}"), Role::Pharmacist, None);
    }
    add("svc-bulk-export".into(), Role::Export, None);
    // About one in ten staff are also patients of the hospital (HR / master patient index).
    let mut taken = BTreeSet::new();
    for member in staff.iter_mut().filter(|m| m.role != Role::Export) {
        if rng.chance(0.1) {
            let record = random_patient(rng, &taken);
            taken.insert(record.clone());
            member.own_record = Some(record);
        }
    }
    staff
}

/// Who works when. Office roles work weekdays with start jitter and overtime; wards, the
/// emergency department and pharmacy work around the clock.
fn rota(staff: &[Staff], rng: &mut Rng) -> Vec<Shift> {
    let mut shifts = Vec::new();
    let mut office = |shifts: &mut Vec<Shift>, index: usize, day: u64, from: u64, to: u64| {
        // Start up to 15 minutes early; stay Exp(mean 15 min) late, at most 90 minutes.
        let start = at(day, from) - rng.range(0, 15) * MINUTE;
        let overtime = (rng.exponential(15.0) as u64).min(90);
        shifts.push(Shift {
            staff: index,
            start,
            end: at(day, to + overtime),
            on_call: false,
        });
    };
    for (index, member) in staff.iter().enumerate() {
        for day in 0..DAYS {
            let weekday = day < 5;
            match member.role {
                Role::Outpatient if weekday => office(&mut shifts, index, day, 8 * 60, 17 * 60),
                Role::Coder if weekday => office(&mut shifts, index, day, 8 * 60, 16 * 60 + 30),
                Role::Registration if weekday => {
                    let (from, to) = if index % 2 == 0 { (7, 13) } else { (13, 19) };
                    office(&mut shifts, index, day, from * 60, to * 60);
                }
                _ => {}
            }
        }
    }
    let ids_of = |role: Role| -> Vec<usize> {
        (0..staff.len())
            .filter(|i| staff[*i].role == role)
            .collect()
    };
    for ward in 0..WARDS {
        let physicians: Vec<usize> = ids_of(Role::Physician)
            .into_iter()
            .filter(|i| staff[*i].ward == Some(ward))
            .collect();
        let nurses: Vec<usize> = ids_of(Role::Nurse)
            .into_iter()
            .filter(|i| staff[*i].ward == Some(ward))
            .collect();
        for day in 0..DAYS {
            for (k, physician) in physicians.iter().enumerate() {
                if day < 5 {
                    shifts.push(fixed(*physician, day, 8 * 60, 18 * 60, false));
                } else if (day as usize + ward) % physicians.len() == k {
                    shifts.push(fixed(*physician, day, 9 * 60, 13 * 60, false));
                }
                if (day as usize + k).is_multiple_of(physicians.len()) {
                    // On call from 18:00 to 08:00 the next morning.
                    shifts.push(fixed(*physician, day, 18 * 60, 32 * 60, true));
                }
            }
            // Five nurses per shift type; each works five days of seven.
            for (k, nurse) in nurses.iter().enumerate() {
                let off = (k as u64 + ward as u64) % 7;
                if day == off || day == (off + 1) % 7 {
                    continue;
                }
                let (from, to) = [(7, 15), (15, 23), (23, 31)][k / 5];
                shifts.push(fixed(*nurse, day, from * 60, to * 60, false));
            }
        }
    }
    let emergency = ids_of(Role::Emergency);
    let pharmacists = ids_of(Role::Pharmacist);
    for day in 0..DAYS {
        for half in 0..2u64 {
            let slot = (day * 2 + half) as usize;
            for k in 0..2 {
                let physician = emergency[(slot * 2 + k) % emergency.len()];
                let from = 8 * 60 + half * 12 * 60;
                shifts.push(fixed(physician, day, from, from + 12 * 60, false));
            }
        }
        for third in 0..3u64 {
            let pharmacist = pharmacists[((day * 3 + third) as usize) % pharmacists.len()];
            let from = 7 * 60 + third * 8 * 60;
            shifts.push(fixed(pharmacist, day, from, from + 8 * 60, false));
        }
    }
    shifts.sort_by_key(|s| (s.start, s.staff));
    shifts
}

fn fixed(staff: usize, day: u64, from: u64, to: u64, on_call: bool) -> Shift {
    Shift {
        staff,
        start: at(day, from),
        end: at(day, to),
        on_call,
    }
}
