//! Normal traffic: what each role does on a shift, as FHIR requests. A "chart open" is a
//! `Patient` read followed by one to four searches of the patient's compartment.

use crate::hospital::{DAYS, HOUR, Hospital, MINUTE, REGISTRY_PATIENTS, Role, at, patient_id};
use crate::rng::Rng;

/// The misuse kinds the generator injects, which are also the labels of its requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Volume,
    Burst,
    Vip,
    SelfLookup,
    NoCare,
    AfterHours,
    NameSearch,
    BreakGlass,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Volume,
        Kind::Burst,
        Kind::Vip,
        Kind::SelfLookup,
        Kind::NoCare,
        Kind::AfterHours,
        Kind::NameSearch,
        Kind::BreakGlass,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Volume => "volume",
            Kind::Burst => "burst",
            Kind::Vip => "vip",
            Kind::SelfLookup => "self-lookup",
            Kind::NoCare => "no-care-relationship",
            Kind::AfterHours => "after-hours",
            Kind::NameSearch => "name-search",
            Kind::BreakGlass => "break-glass",
        }
    }

    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

pub enum Action {
    Read(String),
    Search {
        resource: &'static str,
        patient: String,
    },
    NameSearch(Vec<(&'static str, String)>),
    Export,
}

impl Action {
    pub fn patient(&self) -> Option<&str> {
        match self {
            Action::Read(patient) | Action::Search { patient, .. } => Some(patient),
            Action::NameSearch(_) | Action::Export => None,
        }
    }
}

pub struct Event {
    pub time: u64,
    pub staff: usize,
    pub action: Action,
    pub break_glass: bool,
    /// The misuse incident this request belongs to, if any.
    pub incident: Option<usize>,
    /// The misuse kinds this request exhibits (empty for normal traffic).
    pub labels: u16,
}

const CHART_RESOURCES: [&str; 6] = [
    "Observation",
    "MedicationRequest",
    "Condition",
    "DiagnosticReport",
    "DocumentReference",
    "AllergyIntolerance",
];

/// The requests of one chart open, 5-40 s apart, appended to `events`.
pub fn chart_open(
    events: &mut Vec<Event>,
    rng: &mut Rng,
    staff: usize,
    patient: &str,
    time: u64,
    break_glass: bool,
) {
    let mut at_time = time;
    let mut push = |at_time: u64, action: Action| {
        events.push(Event {
            time: at_time,
            staff,
            action,
            break_glass,
            incident: None,
            labels: 0,
        });
    };
    push(at_time, Action::Read(patient.to_owned()));
    for _ in 0..rng.range(1, 4) {
        at_time += rng.range(5, 40) * 1000;
        let resource = CHART_RESOURCES[rng.below(CHART_RESOURCES.len() as u64) as usize];
        push(
            at_time,
            Action::Search {
                resource,
                patient: patient.to_owned(),
            },
        );
    }
}

/// Generates a week of normal traffic.
pub struct Normal<'a> {
    pub hospital: &'a Hospital,
    pub rng: Rng,
    /// A stream of its own for the unexplained opens, so that changing their rate leaves
    /// the rest of the week as it was.
    pub consults: Rng,
    /// The share of clinical chart opens followed by a legitimate open of a patient the
    /// care-team file does not relate to the user (consults, cross-cover, a result for a
    /// patient seen elsewhere).
    pub unexplained_rate: f64,
    pub events: Vec<Event>,
}

impl Normal<'_> {
    pub fn generate(mut self) -> Vec<Event> {
        let hospital = self.hospital;
        for shift in &hospital.shifts {
            let member = &hospital.staff[shift.staff];
            match member.role {
                Role::Nurse => self.nurse(shift.staff, shift.start, shift.end),
                Role::Physician if shift.on_call => {
                    self.on_call(shift.staff, shift.start, shift.end)
                }
                Role::Physician => self.physician(shift.staff, shift.start, shift.end),
                Role::Outpatient => self.outpatient(shift.staff, shift.start, shift.end),
                Role::Coder => self.coder(shift.staff, shift.start, shift.end),
                Role::Pharmacist => self.pharmacist(shift.staff, shift.start, shift.end),
                Role::Registration | Role::Emergency | Role::Export => {}
            }
        }
        self.registration();
        self.emergency();
        self.evenings_at_home();
        if let Some(exporter) = hospital.by_role(Role::Export).first() {
            for day in 0..DAYS {
                self.events.push(Event {
                    time: at(day, 2 * 60),
                    staff: *exporter,
                    action: Action::Export,
                    break_glass: false,
                    incident: None,
                    labels: 0,
                });
            }
        }
        self.events
    }

    /// A clinical chart open, sometimes followed by an unexplained but legitimate one.
    fn clinical_open(&mut self, staff: usize, patient: &str, time: u64) {
        chart_open(&mut self.events, &mut self.rng, staff, patient, time, false);
        if self.consults.chance(self.unexplained_rate) {
            let later = time + self.consults.range(1, 20) * MINUTE;
            let other = self.unrelated_patient(staff, later);
            chart_open(
                &mut self.events,
                &mut self.consults,
                staff,
                &other,
                later,
                false,
            );
        }
    }

    /// A consult on another ward (7 in 10) or a patient from the registry.
    fn unrelated_patient(&mut self, staff: usize, time: u64) -> String {
        let hospital = self.hospital;
        for _ in 0..50 {
            let candidate = if self.consults.chance(0.7) {
                let ward = self.consults.below(crate::hospital::WARDS as u64) as usize;
                let patients = hospital.ward_patients(ward, time);
                match self.consults.pick(&patients) {
                    Some(p) => (*p).to_owned(),
                    None => continue,
                }
            } else {
                patient_id(self.consults.below(REGISTRY_PATIENTS as u64) as usize)
            };
            if !hospital.related(staff, &candidate) && !hospital.is_vip(&candidate) {
                return candidate;
            }
        }
        patient_id(self.consults.below(REGISTRY_PATIENTS as u64) as usize)
    }

    fn ward_of(&self, staff: usize) -> usize {
        self.hospital.staff[staff].ward.unwrap_or(0)
    }

    /// Handover of the assigned patients in the first 45 minutes, then each of them every
    /// 60-150 minutes (observations, medication rounds).
    fn nurse(&mut self, staff: usize, start: u64, end: u64) {
        let hospital = self.hospital;
        let ward = self.ward_of(staff);
        let on_duty: Vec<usize> = hospital
            .shifts
            .iter()
            .filter(|s| s.start == start && hospital.staff[s.staff].ward == Some(ward))
            .filter(|s| hospital.staff[s.staff].role == Role::Nurse)
            .map(|s| s.staff)
            .collect();
        let position = on_duty.iter().position(|s| *s == staff).unwrap_or(0);
        let patients: Vec<String> = hospital
            .ward_patients(ward, start)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % on_duty.len().max(1) == position)
            .map(|(_, p)| p.to_owned())
            .collect();
        for patient in &patients {
            let mut time = start + self.rng.range(0, 45) * MINUTE;
            while time < end {
                self.clinical_open(staff, patient, time);
                time += self.rng.range(60, 150) * MINUTE;
            }
        }
    }

    /// Morning rounds on their third of the ward, then 8-14 chart opens in the afternoon.
    /// At weekends one physician covers the whole ward once.
    fn physician(&mut self, staff: usize, start: u64, end: u64) {
        let hospital = self.hospital;
        let ward = self.ward_of(staff);
        let patients: Vec<String> = hospital
            .ward_patients(ward, start)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let weekend = end - start < 6 * HOUR;
        let index = hospital.staff[staff]
            .id
            .rsplit('-')
            .next()
            .and_then(|i| i.parse::<usize>().ok())
            .unwrap_or(0);
        let span = end - start;
        for (i, patient) in patients.iter().enumerate() {
            if weekend || i % 3 == index {
                let time = start + 30 * MINUTE + self.rng.below(span / 3);
                self.clinical_open(staff, patient, time);
            }
        }
        if !weekend {
            for _ in 0..self.rng.range(8, 14) {
                if let Some(patient) = self.rng.pick(&patients).cloned() {
                    let time = start + span / 2 + self.rng.below(span / 2 - 30 * MINUTE);
                    self.clinical_open(staff, &patient, time);
                }
            }
        }
    }

    /// Two to five calls in the night about patients of their ward.
    fn on_call(&mut self, staff: usize, start: u64, end: u64) {
        let ward = self.ward_of(staff);
        for _ in 0..self.rng.range(2, 5) {
            let time = start + self.rng.below(end - start - HOUR);
            let patients: Vec<String> = self
                .hospital
                .ward_patients(ward, time)
                .into_iter()
                .map(str::to_owned)
                .collect();
            if let Some(patient) = self.rng.pick(&patients).cloned() {
                self.clinical_open(staff, &patient, time);
            }
        }
    }

    /// Each appointment: preparation before, the visit, and the day's notes before leaving;
    /// plus 4-8 results of follow-up patients.
    fn outpatient(&mut self, staff: usize, start: u64, end: u64) {
        let hospital = self.hospital;
        let today: Vec<(String, u64)> = hospital
            .appointments
            .iter()
            .filter(|a| a.clinician == staff && a.time >= start && a.time < end)
            .map(|a| (a.patient.clone(), a.time))
            .collect();
        for (patient, time) in &today {
            let prep = time - self.rng.range(2, 10) * MINUTE;
            self.clinical_open(staff, patient, prep);
            let visit = time + self.rng.range(5, 20) * MINUTE;
            self.clinical_open(staff, patient, visit);
        }
        let follow_ups = hospital.follow_ups.get(&staff).cloned().unwrap_or_default();
        for _ in 0..self.rng.range(4, 8) {
            if let Some(patient) = self.rng.pick(&follow_ups).cloned() {
                let time = start + self.rng.below(end - start - 30 * MINUTE);
                self.clinical_open(staff, &patient, time);
            }
        }
        for _ in 0..self.rng.range(1, 3) {
            if let Some((patient, _)) = self.rng.pick(&today).cloned() {
                let time = end - self.rng.range(5, 30) * MINUTE;
                self.clinical_open(staff, &patient, time);
            }
        }
    }

    /// 20-30 discharged charts a day, one after another, each opened two to four times.
    fn coder(&mut self, staff: usize, start: u64, end: u64) {
        let hospital = self.hospital;
        let discharged: Vec<String> = hospital
            .stays
            .iter()
            .filter(|s| s.end < start)
            .map(|s| s.patient.clone())
            .collect();
        let mut time = start + self.rng.range(5, 20) * MINUTE;
        for _ in 0..self.rng.range(20, 30) {
            if time >= end {
                break;
            }
            let Some(patient) = self.rng.pick(&discharged).cloned() else {
                break;
            };
            let requests = self.rng.range(2, 4);
            for _ in 0..requests {
                chart_open(
                    &mut self.events,
                    &mut self.rng,
                    staff,
                    &patient,
                    time,
                    false,
                );
                time += self.rng.range(3, 8) * MINUTE;
            }
            time += self.rng.range(2, 6) * MINUTE;
        }
    }

    /// Medication review: about eight inpatients an hour, any ward.
    fn pharmacist(&mut self, staff: usize, start: u64, end: u64) {
        let mut time = start;
        loop {
            time += self.rng.exponential(HOUR as f64 / 8.0) as u64;
            if time >= end {
                break;
            }
            let ward = self.rng.below(crate::hospital::WARDS as u64) as usize;
            let patients: Vec<String> = self
                .hospital
                .ward_patients(ward, time)
                .into_iter()
                .map(str::to_owned)
                .collect();
            if let Some(patient) = self.rng.pick(&patients).cloned() {
                self.clinical_open(staff, &patient, time);
            }
        }
    }

    /// Every appointment is registered 5-15 minutes before by a clerk on duty: one to
    /// three name searches, then the patient's record.
    fn registration(&mut self) {
        let hospital = self.hospital;
        let clerks = hospital.by_role(Role::Registration);
        for appointment in &hospital.appointments {
            let time = appointment.time - self.rng.range(5, 15) * MINUTE;
            let on_duty: Vec<usize> = clerks
                .iter()
                .copied()
                .filter(|c| hospital.on_shift(*c, time))
                .collect();
            let Some(clerk) = self.rng.pick(&on_duty).copied() else {
                continue;
            };
            let surname = format!("surname-{}", self.rng.below(5000));
            let mut searches = vec![vec![
                ("family", surname.clone()),
                ("given", format!("given-{}", self.rng.below(800))),
            ]];
            if self.rng.chance(0.4) {
                searches.push(vec![("name", surname.clone())]);
            }
            if self.rng.chance(0.2) {
                searches.push(vec![
                    ("family", surname),
                    ("birthdate", "1970-01-01".into()),
                ]);
            }
            let mut at_time = time;
            for params in searches {
                self.events.push(Event {
                    time: at_time,
                    staff: clerk,
                    action: Action::NameSearch(params),
                    break_glass: false,
                    incident: None,
                    labels: 0,
                });
                at_time += self.rng.range(10, 60) * 1000;
            }
            chart_open(
                &mut self.events,
                &mut self.rng,
                clerk,
                &appointment.patient,
                at_time,
                false,
            );
        }
    }

    /// Three to six chart opens per visit; 3 visits in 100 need break-the-glass (a
    /// confidential record, an unconscious patient).
    fn emergency(&mut self) {
        let hospital = self.hospital;
        for visit in &hospital.ed_visits {
            let break_glass = self.rng.chance(0.03);
            for _ in 0..self.rng.range(3, 6) {
                let time = visit.start + self.rng.below(visit.end - visit.start);
                chart_open(
                    &mut self.events,
                    &mut self.rng,
                    visit.physician,
                    &visit.patient,
                    time,
                    break_glass,
                );
            }
        }
    }

    /// On one weekday evening in ten, an outpatient clinician checks one to three results
    /// from home between 19:00 and 22:00.
    fn evenings_at_home(&mut self) {
        let hospital = self.hospital;
        for clinician in hospital.by_role(Role::Outpatient) {
            let own: Vec<String> = hospital
                .relations
                .get(&clinician)
                .map(|p| p.iter().cloned().collect())
                .unwrap_or_default();
            for day in 0..5 {
                if !self.rng.chance(0.1) {
                    continue;
                }
                for _ in 0..self.rng.range(1, 3) {
                    if let Some(patient) = self.rng.pick(&own).cloned() {
                        let time = at(day, 19 * 60) + self.rng.below(3 * HOUR);
                        chart_open(
                            &mut self.events,
                            &mut self.rng,
                            clinician,
                            &patient,
                            time,
                            false,
                        );
                    }
                }
            }
        }
    }
}
