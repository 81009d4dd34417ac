//! Precision and recall per detector, and the confusion of truth against action, as plain
//! and markdown tables.

use std::collections::BTreeMap;

use crate::misuse::Incident;
use crate::replay::{Band, Outcome};
use crate::traffic::{Event, Kind};

/// The goal of issue 5.
const RECALL_GOAL: f64 = 0.95;
const PRECISION_GOAL: f64 = 0.9;

pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn plain(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r.get(c).map_or(0, String::len))
                    .chain([self.header[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, width))| {
                    if c == 0 {
                        format!("{cell:<width$}")
                    } else {
                        format!("{cell:>width$}")
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        let mut out = line(&self.header);
        out.push('\n');
        out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
        for row in &self.rows {
            out.push('\n');
            out.push_str(&line(row));
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("| {} |\n", self.header.join(" | "));
        let align: Vec<&str> = (0..self.header.len())
            .map(|c| if c == 0 { "---" } else { "---:" })
            .collect();
        out.push_str(&format!("| {} |", align.join(" | ")));
        for row in &self.rows {
            out.push_str(&format!("\n| {} |", row.join(" | ")));
        }
        out
    }
}

/// The labels that make a detector's alert a true one: the volume and burst detectors both
/// look for bulk trawling.
fn accepted(kind: Kind) -> u16 {
    match kind {
        Kind::Volume | Kind::Burst => Kind::Volume.bit() | Kind::Burst.bit(),
        other => other.bit(),
    }
}

fn ratio(numerator: usize, denominator: usize) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

fn show(value: Option<f64>) -> String {
    value.map_or("-".to_owned(), |v| format!("{v:.3}"))
}

/// The window a per-user counting detector reports on (the module's defaults, which the
/// evaluation keeps); None for detectors that judge each request on its own.
fn window_ms(kind: Kind) -> Option<u64> {
    match kind {
        Kind::Volume | Kind::NameSearch => Some(3_600_000),
        Kind::Burst => Some(300_000),
        Kind::BreakGlass => Some(86_400_000),
        _ => None,
    }
}

/// Every user's misuse requests: time and labels.
fn misuse_by_user(events: &[Event]) -> BTreeMap<usize, Vec<(u64, u16)>> {
    let mut by_user: BTreeMap<usize, Vec<(u64, u16)>> = BTreeMap::new();
    for event in events.iter().filter(|e| e.labels != 0) {
        by_user
            .entry(event.staff)
            .or_default()
            .push((event.time, event.labels));
    }
    by_user
}

/// Whether an alert of `kind` on `event` is true. Strictly, the request must exhibit the
/// kind. For a counting detector it is also true when the window it reports on (this user's
/// last hour, five minutes or day) holds injected misuse of its kind: "this user opened
/// more than 50 charts in the last hour" stays true, and caused by the trawl, on the
/// user's ordinary requests right after it.
fn true_alert(
    kind: Kind,
    event: &Event,
    misuse_by_user: &BTreeMap<usize, Vec<(u64, u16)>>,
    strict: bool,
) -> bool {
    if event.labels & accepted(kind) != 0 {
        return true;
    }
    let Some(window) = window_ms(kind).filter(|_| !strict) else {
        return false;
    };
    misuse_by_user.get(&event.staff).is_some_and(|misuse| {
        misuse.iter().any(|(time, labels)| {
            *time <= event.time && event.time < time + window && labels & accepted(kind) != 0
        })
    })
}

/// Per detector: incidents of its kind it caught (recall), and its alerts that were true
/// (precision, and strict precision counting only the request's own labels).
pub fn detectors(events: &[Event], outcomes: &[Outcome], incidents: &[Incident]) -> Table {
    let misuse_by_user = misuse_by_user(events);
    let mut rows = Vec::new();
    for kind in Kind::ALL {
        let of_kind: Vec<usize> = (0..incidents.len())
            .filter(|i| incidents[*i].kind == kind)
            .collect();
        let detected = of_kind
            .iter()
            .filter(|i| {
                events
                    .iter()
                    .zip(outcomes)
                    .any(|(e, o)| e.incident == Some(**i) && o.fired & kind.bit() != 0)
            })
            .count();
        let alerts: Vec<&Event> = events
            .iter()
            .zip(outcomes)
            .filter(|(_, o)| o.fired & kind.bit() != 0)
            .map(|(e, _)| e)
            .collect();
        let count = |strict: bool| {
            alerts
                .iter()
                .filter(|e| true_alert(kind, e, &misuse_by_user, strict))
                .count()
        };
        let (true_alerts, strictly_true) = (count(false), count(true));
        let recall = ratio(detected, of_kind.len());
        let precision = ratio(true_alerts, alerts.len());
        let met = recall.is_some_and(|r| r >= RECALL_GOAL)
            && precision.is_some_and(|p| p >= PRECISION_GOAL);
        rows.push(vec![
            kind.name().to_owned(),
            of_kind.len().to_string(),
            detected.to_string(),
            show(recall),
            alerts.len().to_string(),
            true_alerts.to_string(),
            show(precision),
            show(ratio(strictly_true, alerts.len())),
            if met { "yes" } else { "no" }.to_owned(),
        ]);
    }
    Table {
        header: [
            "detector",
            "incidents",
            "detected",
            "recall",
            "alerts",
            "true alerts",
            "precision",
            "strict precision",
            "goal met",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows,
    }
}

/// Requests by truth (misuse or normal) and by what the module did.
pub fn confusion(events: &[Event], outcomes: &[Outcome]) -> Table {
    let bands = [Band::Allow, Band::Record, Band::Review, Band::Deny];
    let row = |name: &str, misuse: bool| {
        let mut cells = vec![name.to_owned()];
        let mut total = 0;
        for band in bands {
            let count = events
                .iter()
                .zip(outcomes)
                .filter(|(e, o)| (e.labels != 0) == misuse && o.band == Some(band))
                .count();
            total += count;
            cells.push(count.to_string());
        }
        cells.push(total.to_string());
        cells
    };
    Table {
        header: [
            "requests",
            "allow",
            "allow + record",
            "allow + review",
            "deny",
            "total",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows: vec![row("misuse", true), row("normal", false)],
    }
}

/// Incidents by kind: flagged (some request reviewed or denied), only recorded, or missed.
pub fn incidents(events: &[Event], outcomes: &[Outcome], incidents: &[Incident]) -> Table {
    let mut rows = Vec::new();
    let mut totals = [0usize; 4];
    for kind in Kind::ALL {
        let mut counts = [0usize; 4];
        for (id, incident) in incidents.iter().enumerate() {
            if incident.kind != kind {
                continue;
            }
            let strongest = events
                .iter()
                .zip(outcomes)
                .filter(|(e, _)| e.incident == Some(id))
                .filter_map(|(_, o)| o.band)
                .max()
                .unwrap_or(Band::Allow);
            let column = match strongest {
                Band::Deny => 0,
                Band::Review => 1,
                Band::Record => 2,
                Band::Allow => 3,
            };
            counts[column] += 1;
        }
        for (total, count) in totals.iter_mut().zip(counts) {
            *total += count;
        }
        let mut row = vec![kind.name().to_owned()];
        row.extend(counts.iter().map(ToString::to_string));
        rows.push(row);
    }
    let mut row = vec!["all".to_owned()];
    row.extend(totals.iter().map(ToString::to_string));
    rows.push(row);
    Table {
        header: ["incidents", "denied", "reviewed", "recorded only", "missed"]
            .map(str::to_owned)
            .to_vec(),
        rows,
    }
}

/// One line on the review queue: how many normal requests it flags and how many of the
/// flags are misuse.
pub fn review_queue(events: &[Event], outcomes: &[Outcome]) -> String {
    let flagged: Vec<&Event> = events
        .iter()
        .zip(outcomes)
        .filter(|(_, o)| o.band >= Some(Band::Review))
        .map(|(e, _)| e)
        .collect();
    let misuse = flagged.iter().filter(|e| e.labels != 0).count();
    let normal_total = events.iter().filter(|e| e.labels == 0).count();
    format!(
        "review queue (review or deny): {} requests, precision {}; {} of {} normal requests flagged ({:.2}%)",
        flagged.len(),
        show(ratio(misuse, flagged.len())),
        flagged.len() - misuse,
        normal_total,
        100.0 * (flagged.len() - misuse) as f64 / normal_total.max(1) as f64
    )
}

/// Where each detector's false alerts come from: by the caller's role, and whether the
/// caller also committed injected misuse that week.
pub fn false_alerts(
    hospital: &crate::hospital::Hospital,
    events: &[Event],
    outcomes: &[Outcome],
) -> Table {
    use std::collections::BTreeSet;
    let misuse_by_user = misuse_by_user(events);
    let actors: BTreeSet<usize> = events
        .iter()
        .filter(|e| e.incident.is_some())
        .map(|e| e.staff)
        .collect();
    let mut rows = Vec::new();
    for kind in Kind::ALL {
        let mut by_cause: BTreeMap<String, usize> = BTreeMap::new();
        for (event, outcome) in events.iter().zip(outcomes) {
            if outcome.fired & kind.bit() == 0 || true_alert(kind, event, &misuse_by_user, false) {
                continue;
            }
            let role = hospital.staff[event.staff].role.name();
            let cause = if actors.contains(&event.staff) {
                format!("{role} (misuse actor)")
            } else {
                let lagging = event
                    .action
                    .patient()
                    .is_some_and(|p| hospital.related(event.staff, p));
                if kind == Kind::NoCare && lagging {
                    format!("{role} (file not yet reloaded)")
                } else {
                    role.to_owned()
                }
            };
            *by_cause.entry(cause).or_default() += 1;
        }
        let causes: Vec<String> = by_cause
            .into_iter()
            .map(|(cause, count)| format!("{cause}: {count}"))
            .collect();
        if !causes.is_empty() {
            rows.push(vec![kind.name().to_owned(), causes.join(", ")]);
        }
    }
    Table {
        header: vec!["detector".to_owned(), "false alerts by caller".to_owned()],
        rows,
    }
}

/// The incidents no detector of their kind caught, with who and when.
pub fn missed(
    hospital: &crate::hospital::Hospital,
    events: &[Event],
    outcomes: &[Outcome],
    incidents: &[Incident],
) -> Vec<String> {
    let mut lines = Vec::new();
    for (id, incident) in incidents.iter().enumerate() {
        let own: Vec<(&Event, &Outcome)> = events
            .iter()
            .zip(outcomes)
            .filter(|(e, _)| e.incident == Some(id))
            .collect();
        if own.iter().any(|(_, o)| o.fired & incident.kind.bit() != 0) {
            continue;
        }
        let first = own.first().map(|(e, _)| e);
        lines.push(format!(
            "{} incident {id}: {} requests by {} ({}), first at +{:.1} h, fired: {:?}",
            incident.kind.name(),
            own.len(),
            first.map_or("-", |e| hospital.staff[e.staff].id.as_str()),
            first.map_or("-", |e| hospital.staff[e.staff].role.name()),
            first.map_or(0.0, |e| (e.time - crate::hospital::WEEK_START) as f64
                / 3.6e6),
            own.iter()
                .flat_map(|(_, o)| Kind::ALL.into_iter().filter(|k| o.fired & k.bit() != 0))
                .map(Kind::name)
                .collect::<std::collections::BTreeSet<_>>()
        ));
    }
    lines
}
