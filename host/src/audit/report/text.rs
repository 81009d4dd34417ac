//! The report as plain text for a terminal: sections in the order a reviewer works through
//! them, each a small table.

use std::fmt::Write;

use super::{AccessRow, Report, Rows};

/// Renders `report`.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let period = match (&report.first_time, &report.last_time) {
        (Some(first), Some(last)) => format!("{first} to {last}"),
        _ => "no records".to_owned(),
    };
    let _ = writeln!(out, "Audit report for {}", report.dir);
    let _ = writeln!(out, "{} records, {period}", report.records);
    let decisions: Vec<String> = report
        .decisions
        .iter()
        .map(|(decision, count)| format!("{decision} {count}"))
        .collect();
    let _ = writeln!(out, "decisions: {}", decisions.join(", "));

    section(&mut out, "Flagged for review", &report.flagged);
    section(&mut out, "Break-the-glass", &report.break_glass);

    let _ = writeln!(out, "\nTop users by distinct patients (allowed accesses)");
    if report.top_users.is_empty() {
        let _ = writeln!(out, "  none");
    } else {
        let _ = writeln!(out, "  {:<40} {:>9} {:>9}", "USER", "PATIENTS", "ACCESSES");
        for user in &report.top_users {
            let _ = writeln!(
                out,
                "  {:<40} {:>9} {:>9}",
                clip(&user.user, 40),
                user.distinct_patients,
                user.accesses
            );
        }
    }

    let _ = writeln!(out, "\nRefusals by rule");
    counts(&mut out, &report.denials_by_rule);
    if !report.shadow_denials_by_rule.is_empty() {
        let _ = writeln!(out, "\nShadow denials by rule (not enforced)");
        counts(&mut out, &report.shadow_denials_by_rule);
    }

    let refusals = &report.protocol_refusals;
    let _ = writeln!(
        out,
        "\nProtocol refusals (below the request handler): {} in {} record(s), {} aggregate(s)",
        refusals.refusals, refusals.records, refusals.aggregates
    );
    if refusals.records > 0 {
        let _ = writeln!(out, "  by cause");
        for count in &refusals.by_cause {
            let _ = writeln!(out, "    {:<38} {:>9}", clip(&count.name, 38), count.count);
        }
        let _ = writeln!(
            out,
            "  by source address ({} address(es))",
            refusals.sources
        );
        for count in &refusals.top_sources {
            let _ = writeln!(out, "    {:<38} {:>9}", clip(&count.name, 38), count.count);
        }
    }

    if let Some(accounting) = &report.patient {
        let _ = writeln!(
            out,
            "\nAccounting of disclosures for patient {}: {} disclosed, {} refused, {} user(s)",
            accounting.patient,
            accounting.disclosures,
            accounting.refused,
            accounting.users.len()
        );
        if accounting.accesses.is_empty() {
            let _ = writeln!(out, "  none");
        } else {
            header(&mut out);
            for row in &accounting.accesses {
                access(&mut out, row);
            }
        }
    }
    out
}

fn section(out: &mut String, title: &str, rows: &Rows) {
    let shown = if rows.total as usize > rows.rows.len() {
        format!(" (latest {} shown)", rows.rows.len())
    } else {
        String::new()
    };
    let _ = writeln!(out, "\n{title}: {}{shown}", rows.total);
    if rows.rows.is_empty() {
        return;
    }
    header(out);
    for row in &rows.rows {
        access(out, row);
    }
}

fn header(out: &mut String) {
    let _ = writeln!(
        out,
        "  {:<24} {:<28} {:<14} {:<10} {:<34} {:<28} {:<12} {:>4}  WHY",
        "TIME", "USER", "CLIENT", "PURPOSE", "DECISION", "RESOURCE", "PATIENTS", "RISK"
    );
}

fn access(out: &mut String, row: &AccessRow) {
    let mut why = row.review_reasons.join(", ");
    if let Some(reason) = &row.break_glass_reason {
        if !why.is_empty() {
            why.push_str("; ");
        }
        let _ = write!(why, "reason: {reason}");
    }
    let decision = match &row.rule {
        Some(rule) if row.decision != "allow" => format!("{} {rule}", row.decision),
        _ => row.decision.clone(),
    };
    let _ = writeln!(
        out,
        "  {:<24} {:<28} {:<14} {:<10} {:<34} {:<28} {:<12} {:>4}  {}",
        row.time,
        clip(&row.user, 28),
        clip(&row.client, 14),
        clip(&row.purpose_of_use.join(","), 10),
        clip(&decision, 34),
        clip(&format!("{} {}", row.interaction, row.resource), 28),
        clip(&row.patients.join(","), 12),
        row.risk,
        why
    );
}

fn counts(out: &mut String, counts: &[super::RuleCount]) {
    if counts.is_empty() {
        let _ = writeln!(out, "  none");
        return;
    }
    for count in counts {
        let _ = writeln!(out, "  {:<40} {:>9}", clip(&count.rule, 40), count.count);
    }
}

/// At most `width` characters, with `…` when cut.
pub fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(width.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}
