//! Finding records: filters over the log, streamed file by file. Each line is first checked
//! for the bytes a match must contain (a user's id, a patient id) before it is parsed, and
//! then parsed into a borrowed view of the few fields filters and tables need, so a query
//! over a million records reads the files once and parses only what may match.
//!
//! Request records and protocol-refusal records share the log; a query reads one kind:
//! [`run`] the request records, [`run_refusals`] the protocol refusals.

use std::borrow::Cow;
use std::io;
use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;

use super::files;
use super::reader::{BadRecord, LineKind, LogReader};
use super::record::AuditDecision;
use super::refusal::{RefusalRecord, is_refusal_line};
use super::time;

/// `--decision`: one of the record's decisions, or `shadow-deny` (a shadow module denied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionFilter {
    Is(AuditDecision),
    ShadowDeny,
}

impl FromStr for DecisionFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "shadow-deny" {
            return Ok(DecisionFilter::ShadowDeny);
        }
        AuditDecision::ALL
            .into_iter()
            .find(|d| d.as_str() == text)
            .map(DecisionFilter::Is)
            .ok_or_else(|| {
                format!(
                    "`{text}` is not a decision; expected one of `allow`, `deny`, `reject`, `policy-error`, `upstream-error`, `shadow-deny`"
                )
            })
    }
}

/// What a record must match. Every filter given must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The principal's subject or `fhirUser`.
    pub user: Option<String>,
    pub patient: Option<String>,
    pub client: Option<String>,
    pub decision: Option<DecisionFilter>,
    /// The deciding rule, a finding's rule or a shadow denial's rule.
    pub rule: Option<String>,
    pub min_risk: Option<u8>,
    /// Records at or after this time (milliseconds since the epoch).
    pub since_ms: Option<u64>,
    /// Records before this time.
    pub until_ms: Option<u64>,
    /// Only records flagged for review.
    pub review: bool,
    /// The client's address as seen on the socket.
    pub source: Option<String>,
}

/// The fields of a record that filters and tables read, borrowed from the line.
#[derive(Debug, Deserialize)]
pub struct RecordView<'a> {
    pub seq: u64,
    #[serde(borrow)]
    pub time: Cow<'a, str>,
    #[serde(borrow)]
    pub request_id: Cow<'a, str>,
    #[serde(borrow)]
    pub source_address: Cow<'a, str>,
    #[serde(borrow)]
    pub principal: Option<PrincipalView<'a>>,
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    #[serde(borrow)]
    pub path: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub interaction: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub resource_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub resource_id: Option<Cow<'a, str>>,
    pub patients: Vec<Cow<'a, str>>,
    pub decision: AuditDecision,
    #[serde(borrow)]
    pub rule: Option<Cow<'a, str>>,
    pub findings: Vec<RuleView<'a>>,
    pub shadow_denials: Vec<RuleView<'a>>,
    pub risk: u8,
    pub review: bool,
    pub status: u16,
}

#[derive(Debug, Deserialize)]
pub struct PrincipalView<'a> {
    #[serde(borrow)]
    pub subject: Cow<'a, str>,
    #[serde(borrow)]
    pub client: Cow<'a, str>,
    #[serde(borrow)]
    pub fhir_user: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct RuleView<'a> {
    #[serde(borrow)]
    pub rule: Cow<'a, str>,
}

impl RecordView<'_> {
    /// `fhirUser` when the token has one, else the subject.
    pub fn user(&self) -> Option<&str> {
        self.principal
            .as_ref()
            .map(|p| p.fhir_user.as_deref().unwrap_or(&p.subject))
    }

    /// `Type/id`, `Type`, or the path.
    pub fn resource(&self) -> String {
        match (&self.resource_type, &self.resource_id) {
            (Some(t), Some(id)) => format!("{t}/{id}"),
            (Some(t), None) => t.to_string(),
            _ => self.path.as_deref().unwrap_or("-").to_owned(),
        }
    }
}

impl Filter {
    /// Whether the raw line may match: it contains every id the filter asks for, as the
    /// writer writes it. A line that may match is parsed and checked with [`Filter::matches`].
    pub fn may_match(&self, line: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(line) else {
            return true;
        };
        let wanted = [
            &self.user,
            &self.patient,
            &self.client,
            &self.rule,
            &self.source,
        ];
        wanted.into_iter().flatten().all(|value| {
            // Values JSON would escape cannot be found as they are; leave those to `matches`.
            let escaped = value
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control());
            escaped || text.contains(&format!("\"{value}\""))
        })
    }

    /// Whether `record` matches every filter.
    pub fn matches(&self, record: &RecordView<'_>) -> bool {
        let principal = record.principal.as_ref();
        if let Some(user) = &self.user
            && !principal.is_some_and(|p| {
                p.subject == user.as_str() || p.fhir_user.as_deref() == Some(user.as_str())
            })
        {
            return false;
        }
        if let Some(client) = &self.client
            && principal.is_none_or(|p| p.client != client.as_str())
        {
            return false;
        }
        if let Some(patient) = &self.patient
            && !record.patients.iter().any(|p| p == patient.as_str())
        {
            return false;
        }
        match self.decision {
            Some(DecisionFilter::Is(decision)) if record.decision != decision => return false,
            Some(DecisionFilter::ShadowDeny) if record.shadow_denials.is_empty() => return false,
            _ => {}
        }
        if let Some(rule) = &self.rule {
            let rule = rule.as_str();
            let found = record.rule.as_deref() == Some(rule)
                || record.findings.iter().any(|f| f.rule == rule)
                || record.shadow_denials.iter().any(|s| s.rule == rule);
            if !found {
                return false;
            }
        }
        if self.min_risk.is_some_and(|min| record.risk < min) {
            return false;
        }
        if self.review && !record.review {
            return false;
        }
        if self
            .source
            .as_ref()
            .is_some_and(|source| record.source_address != source.as_str())
        {
            return false;
        }
        in_range(self.since_ms, self.until_ms, &record.time)
    }
}

/// Whether `at` (a record's time) is in `[since, until)`; an unreadable time is not.
fn in_range(since_ms: Option<u64>, until_ms: Option<u64>, at: &str) -> bool {
    if since_ms.is_none() && until_ms.is_none() {
        return true;
    }
    let Some(at) = time::parse(at) else {
        return false;
    };
    since_ms.is_none_or(|since| at >= since) && until_ms.is_none_or(|until| at < until)
}

/// What a protocol-refusal record must match. Every filter given must match.
#[derive(Debug, Clone, Default)]
pub struct RefusalFilter {
    /// The peer's address.
    pub source: Option<String>,
    /// A cause (`http1-malformed`, ...): an individual record's, or one an aggregate counts.
    pub cause: Option<String>,
    /// Records at or after this time (an aggregate's: its interval's start).
    pub since_ms: Option<u64>,
    /// Records before this time.
    pub until_ms: Option<u64>,
}

impl RefusalFilter {
    pub fn matches(&self, record: &RefusalRecord) -> bool {
        if let Some(source) = &self.source
            && record.source_address.as_deref() != Some(source.as_str())
        {
            return false;
        }
        if let Some(cause) = &self.cause
            && !record.causes().iter().any(|(c, _)| c == cause)
        {
            return false;
        }
        in_range(self.since_ms, self.until_ms, &record.time)
    }
}

/// Why a query stopped.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("cannot read the log: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    BadRecord(#[from] BadRecord),
}

/// What a query went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryStats {
    pub files: usize,
    pub records: u64,
    pub matched: u64,
}

/// Streams the records in `dir` that match `filter`, oldest first, calling `found` with
/// each record's view and its line; stops after `limit` matches or when `found` returns
/// `false`. Files entirely outside the time range are skipped by their names.
pub fn run(
    dir: &Path,
    filter: &Filter,
    limit: Option<u64>,
    mut found: impl FnMut(&RecordView<'_>, &[u8]) -> io::Result<bool>,
) -> Result<QueryStats, QueryError> {
    let (mut reader, mut stats) = reader_in_range(dir, filter.since_ms, filter.until_ms)?;
    while let Some(line) = reader.next_line()? {
        if line.kind != LineKind::Record || is_refusal_line(line.bytes) {
            continue;
        }
        stats.records += 1;
        if !filter.may_match(line.bytes) {
            continue;
        }
        let view: RecordView<'_> = line.parse()?;
        if !filter.matches(&view) {
            continue;
        }
        stats.matched += 1;
        if !found(&view, line.bytes)? || limit.is_some_and(|limit| stats.matched >= limit) {
            break;
        }
    }
    Ok(stats)
}

/// Streams the protocol-refusal records in `dir` that match `filter`, oldest first, as
/// [`run`] does for request records.
pub fn run_refusals(
    dir: &Path,
    filter: &RefusalFilter,
    limit: Option<u64>,
    mut found: impl FnMut(&RefusalRecord, &[u8]) -> io::Result<bool>,
) -> Result<QueryStats, QueryError> {
    let (mut reader, mut stats) = reader_in_range(dir, filter.since_ms, filter.until_ms)?;
    while let Some(line) = reader.next_line()? {
        if line.kind != LineKind::Record || !is_refusal_line(line.bytes) {
            continue;
        }
        stats.records += 1;
        let record: RefusalRecord = line.parse()?;
        if !filter.matches(&record) {
            continue;
        }
        stats.matched += 1;
        if !found(&record, line.bytes)? || limit.is_some_and(|limit| stats.matched >= limit) {
            break;
        }
    }
    Ok(stats)
}

/// A reader of the files that may hold records in `[since, until)`.
fn reader_in_range(
    dir: &Path,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
) -> io::Result<(LogReader, QueryStats)> {
    let mut log_files = files::list(dir)?;
    // The writer appends to a file only on the UTC day in its name, and a record is written
    // after its request arrived: a file of day D holds records of day D, and perhaps of the
    // end of day D-1 (a request that arrived before midnight and was written after it, or a
    // refusal aggregate whose interval began before midnight).
    let since_day = since_ms.map(time::day_of);
    let until_day = until_ms.map(time::day_of);
    log_files.retain(|f| {
        since_day.is_none_or(|since| f.day >= since)
            && until_day.is_none_or(|until| f.day <= until + 1)
    });
    let stats = QueryStats {
        files: log_files.len(),
        ..QueryStats::default()
    };
    Ok((LogReader::with_files(log_files), stats))
}
