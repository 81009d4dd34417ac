//! The privacy officer's report: what to look at first (accesses flagged for review,
//! break-the-glass uses), who reached the most patients, which rules refused most, and for
//! one patient the accounting of disclosures (45 CFR 164.528): every access to their record,
//! and the protocol refusals (connections and requests refused below the request handler)
//! by cause and by source address. One streaming pass builds a [`Report`]; `text` and `html`
//! render it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::path::Path;

use serde::Serialize;

use super::reader::{BadRecord, LineKind, LogReader};
use super::record::{AuditDecision, AuditRecord};
use super::refusal::{RefusalRecord, is_refusal_line};

pub mod html;
pub mod text;

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Add the accounting of disclosures for this patient.
    pub patient: Option<String>,
    /// Rows kept per list (the most recent); totals count everything.
    pub limit: usize,
    /// Users in the "top users" table.
    pub top: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            patient: None,
            limit: 200,
            top: 10,
        }
    }
}

/// One access, as a report row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessRow {
    pub seq: u64,
    pub time: String,
    pub request_id: String,
    pub user: String,
    pub client: String,
    pub purpose_of_use: Vec<String>,
    pub interaction: String,
    pub resource: String,
    pub patients: Vec<String>,
    pub decision: String,
    pub rule: Option<String>,
    pub status: u16,
    pub risk: u8,
    pub review_reasons: Vec<String>,
    pub break_glass_reason: Option<String>,
}

impl AccessRow {
    fn of(record: &AuditRecord) -> AccessRow {
        let principal = record.principal.as_ref();
        AccessRow {
            seq: record.seq,
            time: record.time.clone(),
            request_id: record.request_id.clone(),
            user: record.user().unwrap_or("anonymous").to_owned(),
            client: principal.map_or_else(|| "-".to_owned(), |p| p.client.clone()),
            purpose_of_use: record.purpose_of_use.clone(),
            interaction: record.interaction.clone().unwrap_or_else(|| "-".into()),
            resource: resource_of(record),
            patients: record.patients.clone(),
            decision: record.decision.as_str().to_owned(),
            rule: record.rule.clone(),
            status: record.status,
            risk: record.risk,
            review_reasons: record.review_reasons.clone(),
            break_glass_reason: record.break_glass_reason.clone(),
        }
    }
}

/// `Type/id`, `Type`, or the path.
pub fn resource_of(record: &AuditRecord) -> String {
    match (&record.resource_type, &record.resource_id) {
        (Some(t), Some(id)) => format!("{t}/{id}"),
        (Some(t), None) => t.clone(),
        _ => record.path.clone().unwrap_or_else(|| "-".into()),
    }
}

/// Rows kept, with the total seen.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rows {
    pub total: u64,
    /// The most recent rows, oldest first.
    pub rows: Vec<AccessRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserReach {
    pub user: String,
    pub distinct_patients: u64,
    pub accesses: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleCount {
    pub rule: String,
    pub count: u64,
}

/// Protocol refusals of one cause, or from one source address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedCount {
    pub name: String,
    pub count: u64,
}

/// Source addresses counted one by one in the report; refusals from further addresses are
/// counted together, so a log of a long distributed flood cannot exhaust the reviewer's
/// memory.
const MAX_REFUSAL_SOURCES: usize = 10_000;
/// Source addresses listed.
const TOP_REFUSAL_SOURCES: usize = 10;

/// Connections and requests refused below the request handler.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RefusalSummary {
    /// Protocol-refusal records (individual and aggregate).
    pub records: u64,
    /// Refusals they stand for (an aggregate counts all of its own).
    pub refusals: u64,
    /// Aggregate records among `records`.
    pub aggregates: u64,
    pub by_cause: Vec<NamedCount>,
    /// The addresses with the most refusals, most first.
    pub top_sources: Vec<NamedCount>,
    /// Distinct source addresses (at most the report's table size; beyond it `(other
    /// addresses)` counts them together).
    pub sources: u64,
}

/// Records of one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayCount {
    pub day: String,
    pub allowed: u64,
    pub refused: u64,
    pub flagged: u64,
}

/// Every access to one patient's record.
#[derive(Debug, Clone, Serialize)]
pub struct Accounting {
    pub patient: String,
    pub disclosures: u64,
    pub refused: u64,
    pub users: Vec<String>,
    pub accesses: Vec<AccessRow>,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dir: String,
    pub records: u64,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    pub decisions: BTreeMap<String, u64>,
    pub flagged: Rows,
    pub break_glass: Rows,
    pub top_users: Vec<UserReach>,
    pub denials_by_rule: Vec<RuleCount>,
    pub shadow_denials_by_rule: Vec<RuleCount>,
    pub per_day: Vec<DayCount>,
    pub patient: Option<Accounting>,
    pub protocol_refusals: RefusalSummary,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read the log: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    BadRecord(#[from] BadRecord),
}

/// Reads the log in `dir` once and builds the report.
pub fn build(dir: &Path, options: &ReportOptions) -> Result<Report, ReportError> {
    let mut builder = Builder::new(options);
    let mut reader = LogReader::open(dir)?;
    while let Some(line) = reader.next_line()? {
        if line.kind != LineKind::Record {
            continue;
        }
        if is_refusal_line(line.bytes) {
            let record: RefusalRecord = line.parse()?;
            builder.add_refusal(&record);
            continue;
        }
        let record: AuditRecord = line.parse()?;
        builder.add(&record);
    }
    Ok(builder.finish(dir))
}

/// Accumulates records into a report.
pub struct Builder<'a> {
    options: &'a ReportOptions,
    records: u64,
    first_time: Option<String>,
    last_time: Option<String>,
    decisions: BTreeMap<String, u64>,
    flagged: (u64, VecDeque<AccessRow>),
    break_glass: (u64, VecDeque<AccessRow>),
    reach: HashMap<String, (HashSet<String>, u64)>,
    denials: HashMap<String, u64>,
    shadow_denials: HashMap<String, u64>,
    per_day: BTreeMap<String, DayCount>,
    patient: Option<Accounting>,
    refusals: RefusalCounts,
}

#[derive(Default)]
struct RefusalCounts {
    records: u64,
    refusals: u64,
    aggregates: u64,
    by_cause: HashMap<String, u64>,
    by_source: HashMap<String, u64>,
}

impl<'a> Builder<'a> {
    pub fn new(options: &'a ReportOptions) -> Builder<'a> {
        Builder {
            options,
            records: 0,
            first_time: None,
            last_time: None,
            decisions: AuditDecision::ALL
                .iter()
                .map(|d| (d.as_str().to_owned(), 0))
                .collect(),
            flagged: (0, VecDeque::new()),
            break_glass: (0, VecDeque::new()),
            reach: HashMap::new(),
            denials: HashMap::new(),
            shadow_denials: HashMap::new(),
            per_day: BTreeMap::new(),
            patient: options.patient.as_ref().map(|patient| Accounting {
                patient: patient.clone(),
                disclosures: 0,
                refused: 0,
                users: Vec::new(),
                accesses: Vec::new(),
            }),
            refusals: RefusalCounts::default(),
        }
    }

    /// Counts a protocol-refusal record.
    pub fn add_refusal(&mut self, record: &RefusalRecord) {
        let counts = &mut self.refusals;
        counts.records += 1;
        counts.refusals += record.count();
        if record.aggregate.is_some() {
            counts.aggregates += 1;
        }
        for (cause, count) in record.causes() {
            *counts.by_cause.entry(cause.to_owned()).or_default() += count;
        }
        let source = match &record.source_address {
            Some(address)
                if counts.by_source.len() < MAX_REFUSAL_SOURCES
                    || counts.by_source.contains_key(address) =>
            {
                address.clone()
            }
            _ => "(other addresses)".to_owned(),
        };
        *counts.by_source.entry(source).or_default() += record.count();
    }

    pub fn add(&mut self, record: &AuditRecord) {
        self.records += 1;
        if self.first_time.is_none() {
            self.first_time = Some(record.time.clone());
        }
        self.last_time = Some(record.time.clone());
        *self
            .decisions
            .entry(record.decision.as_str().to_owned())
            .or_default() += 1;
        let allowed = record.decision == AuditDecision::Allow;
        let day = record.time.get(..10).unwrap_or("").to_owned();
        let per_day = self.per_day.entry(day.clone()).or_insert(DayCount {
            day,
            allowed: 0,
            refused: 0,
            flagged: 0,
        });
        if allowed {
            per_day.allowed += 1;
        } else {
            per_day.refused += 1;
        }
        if record.review {
            per_day.flagged += 1;
            keep(&mut self.flagged, record, self.options.limit);
        }
        if record.break_glass {
            keep(&mut self.break_glass, record, self.options.limit);
        }
        if let Some(user) = record.user() {
            let (patients, accesses) = self.reach.entry(user.to_owned()).or_default();
            *accesses += 1;
            if allowed {
                for patient in &record.patients {
                    if !patients.contains(patient) {
                        patients.insert(patient.clone());
                    }
                }
            }
        }
        if !allowed && let Some(rule) = &record.rule {
            *self.denials.entry(rule.clone()).or_default() += 1;
        }
        for shadow in &record.shadow_denials {
            *self.shadow_denials.entry(shadow.rule.clone()).or_default() += 1;
        }
        if let Some(accounting) = &mut self.patient
            && record.patients.contains(&accounting.patient)
        {
            if allowed {
                accounting.disclosures += 1;
            } else {
                accounting.refused += 1;
            }
            let user = record.user().unwrap_or("anonymous");
            if !accounting.users.iter().any(|u| u == user) {
                accounting.users.push(user.to_owned());
            }
            accounting.accesses.push(AccessRow::of(record));
        }
    }

    pub fn finish(self, dir: &Path) -> Report {
        let mut top_users: Vec<UserReach> = self
            .reach
            .into_iter()
            .map(|(user, (patients, accesses))| UserReach {
                user,
                distinct_patients: patients.len() as u64,
                accesses,
            })
            .collect();
        top_users.sort_by(|a, b| {
            b.distinct_patients
                .cmp(&a.distinct_patients)
                .then(b.accesses.cmp(&a.accesses))
                .then(a.user.cmp(&b.user))
        });
        top_users.truncate(self.options.top);
        Report {
            dir: dir.display().to_string(),
            records: self.records,
            first_time: self.first_time,
            last_time: self.last_time,
            decisions: self.decisions,
            flagged: rows(self.flagged),
            break_glass: rows(self.break_glass),
            top_users,
            denials_by_rule: counted(self.denials),
            shadow_denials_by_rule: counted(self.shadow_denials),
            per_day: self.per_day.into_values().collect(),
            patient: self.patient,
            protocol_refusals: summarize(self.refusals),
        }
    }
}

fn summarize(counts: RefusalCounts) -> RefusalSummary {
    let named = |map: HashMap<String, u64>| {
        let mut named: Vec<NamedCount> = map
            .into_iter()
            .map(|(name, count)| NamedCount { name, count })
            .collect();
        named.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
        named
    };
    let sources = counts.by_source.len() as u64;
    let mut top_sources = named(counts.by_source);
    top_sources.truncate(TOP_REFUSAL_SOURCES);
    RefusalSummary {
        records: counts.records,
        refusals: counts.refusals,
        aggregates: counts.aggregates,
        by_cause: named(counts.by_cause),
        top_sources,
        sources,
    }
}

fn keep(kept: &mut (u64, VecDeque<AccessRow>), record: &AuditRecord, limit: usize) {
    kept.0 += 1;
    if limit == 0 {
        return;
    }
    if kept.1.len() == limit {
        kept.1.pop_front();
    }
    kept.1.push_back(AccessRow::of(record));
}

fn rows((total, rows): (u64, VecDeque<AccessRow>)) -> Rows {
    Rows {
        total,
        rows: rows.into(),
    }
}

fn counted(counts: HashMap<String, u64>) -> Vec<RuleCount> {
    let mut counted: Vec<RuleCount> = counts
        .into_iter()
        .map(|(rule, count)| RuleCount { rule, count })
        .collect();
    counted.sort_by(|a, b| b.count.cmp(&a.count).then(a.rule.cmp(&b.rule)));
    counted
}
