//! The report as one self-contained HTML page: inline CSS, charts drawn as inline SVG, no
//! scripts and no external assets, so it opens the same on an air-gapped workstation and can
//! be attached to a review ticket as it is.

use std::fmt::Write;

use super::{AccessRow, Report, Rows};

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#1d2433;background:#fff}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2.2rem;border-bottom:1px solid #dde2ea;padding-bottom:.3rem}
.meta{color:#5b6578}.cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:1.2rem 0}
.card{border:1px solid #dde2ea;border-radius:8px;padding:.7rem 1rem;min-width:9rem}
.card b{display:block;font-size:1.5rem}.card.alert{border-color:#d9480f;background:#fff4e6}
table{border-collapse:collapse;width:100%;font-size:12.5px}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eef1f5;vertical-align:top}
th{background:#f5f7fa;font-weight:600}td:first-child{white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums}
.deny,.reject,.policy-error,.upstream-error{color:#c92a2a;font-weight:600}.allow{color:#2b8a3e}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(360px,1fr));gap:1.5rem}
svg text{font:11px system-ui,sans-serif;fill:#1d2433}.none{color:#5b6578;font-style:italic}
";

/// Renders `report` as a complete HTML document.
pub fn render(report: &Report) -> String {
    let mut page = String::with_capacity(64 << 10);
    let period = match (&report.first_time, &report.last_time) {
        (Some(first), Some(last)) => format!("{first} to {last}"),
        _ => "no records".to_owned(),
    };
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>ehrgate audit report</title><style>{STYLE}</style></head><body>\
         <h1>Audit report</h1><p class=\"meta\">{} &middot; {} records &middot; {}</p>",
        escape(&report.dir),
        report.records,
        escape(&period)
    );
    let refused: u64 = report
        .decisions
        .iter()
        .filter(|(d, _)| d.as_str() != "allow")
        .map(|(_, n)| n)
        .sum();
    let _ = write!(page, "<div class=\"cards\">");
    card(
        &mut page,
        "flagged for review",
        report.flagged.total,
        report.flagged.total > 0,
    );
    card(
        &mut page,
        "break-the-glass",
        report.break_glass.total,
        report.break_glass.total > 0,
    );
    card(&mut page, "refused", refused, false);
    card(
        &mut page,
        "allowed",
        report.decisions.get("allow").copied().unwrap_or(0),
        false,
    );
    let _ = write!(page, "</div>");

    let _ = write!(page, "<h2>Activity</h2><div class=\"charts\">");
    let _ = write!(
        page,
        "<figure><figcaption>Requests per day (allowed / refused)</figcaption>"
    );
    page.push_str(&day_chart(report));
    let _ = write!(
        page,
        "</figure><figure><figcaption>Refusals by rule</figcaption>"
    );
    let rules: Vec<(String, u64)> = report
        .denials_by_rule
        .iter()
        .take(10)
        .map(|r| (r.rule.clone(), r.count))
        .collect();
    page.push_str(&bar_chart(&rules, "#c92a2a"));
    let _ = write!(
        page,
        "</figure><figure><figcaption>Top users by distinct patients</figcaption>"
    );
    let users: Vec<(String, u64)> = report
        .top_users
        .iter()
        .map(|u| (u.user.clone(), u.distinct_patients))
        .collect();
    page.push_str(&bar_chart(&users, "#1c7ed6"));
    let _ = write!(page, "</figure></div>");

    rows_section(&mut page, "Flagged for review", &report.flagged);
    rows_section(&mut page, "Break-the-glass uses", &report.break_glass);

    let _ = write!(page, "<h2>Top users by distinct patients</h2>");
    if report.top_users.is_empty() {
        let _ = write!(page, "<p class=\"none\">none</p>");
    } else {
        let _ = write!(
            page,
            "<table><tr><th>user</th><th>distinct patients</th><th>accesses</th></tr>"
        );
        for user in &report.top_users {
            let _ = write!(
                page,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&user.user),
                user.distinct_patients,
                user.accesses
            );
        }
        let _ = write!(page, "</table>");
    }

    let _ = write!(page, "<h2>Refusals by rule</h2>");
    count_table(&mut page, &report.denials_by_rule);
    if !report.shadow_denials_by_rule.is_empty() {
        let _ = write!(page, "<h2>Shadow denials by rule (not enforced)</h2>");
        count_table(&mut page, &report.shadow_denials_by_rule);
    }

    let refusals = &report.protocol_refusals;
    let _ = write!(
        page,
        "<h2>Protocol refusals: {}</h2><p class=\"meta\">Connections and requests refused \
         below the request handler (at accept, in the TLS handshake, by the HTTP parser or an \
         HTTP/2 reset, or silent), in {} record(s) of which {} aggregate(s)</p>",
        refusals.refusals, refusals.records, refusals.aggregates
    );
    if refusals.records > 0 {
        named_table(&mut page, "cause", &refusals.by_cause);
        named_table(&mut page, "source address", &refusals.top_sources);
    }

    if let Some(accounting) = &report.patient {
        let _ = write!(
            page,
            "<h2>Accounting of disclosures: patient {}</h2><p>{} disclosed, {} refused, by {} user(s): {}</p>",
            escape(&accounting.patient),
            accounting.disclosures,
            accounting.refused,
            accounting.users.len(),
            escape(&accounting.users.join(", "))
        );
        access_table(&mut page, &accounting.accesses);
    }
    let _ = writeln!(page, "</body></html>");
    page
}

fn card(page: &mut String, label: &str, value: u64, alert: bool) {
    let class = if alert { "card alert" } else { "card" };
    let _ = write!(
        page,
        "<div class=\"{class}\"><b>{value}</b>{}</div>",
        escape(label)
    );
}

fn rows_section(page: &mut String, title: &str, rows: &Rows) {
    let shown = if rows.total as usize > rows.rows.len() {
        format!(" (latest {} shown)", rows.rows.len())
    } else {
        String::new()
    };
    let _ = write!(
        page,
        "<h2>{}: {}{}</h2>",
        escape(title),
        rows.total,
        escape(&shown)
    );
    access_table(page, &rows.rows);
}

fn access_table(page: &mut String, rows: &[AccessRow]) {
    if rows.is_empty() {
        let _ = write!(page, "<p class=\"none\">none</p>");
        return;
    }
    let _ = write!(
        page,
        "<table><tr><th>time</th><th>user</th><th>client</th><th>purpose</th><th>decision</th>\
         <th>interaction</th><th>resource</th><th>patients</th><th>risk</th><th>why</th><th>request</th></tr>"
    );
    for row in rows {
        let mut why = row.review_reasons.join(", ");
        if let Some(reason) = &row.break_glass_reason {
            if !why.is_empty() {
                why.push_str("; ");
            }
            why.push_str("reason: ");
            why.push_str(reason);
        }
        let decision = match &row.rule {
            Some(rule) if row.decision != "allow" => format!("{} ({rule})", row.decision),
            _ => row.decision.clone(),
        };
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&row.time),
            escape(&row.user),
            escape(&row.client),
            escape(&row.purpose_of_use.join(", ")),
            escape(&row.decision),
            escape(&decision),
            escape(&row.interaction),
            escape(&row.resource),
            escape(&row.patients.join(", ")),
            row.risk,
            escape(&why),
            escape(&row.request_id)
        );
    }
    let _ = write!(page, "</table>");
}

fn count_table(page: &mut String, counts: &[super::RuleCount]) {
    if counts.is_empty() {
        let _ = write!(page, "<p class=\"none\">none</p>");
        return;
    }
    let _ = write!(page, "<table><tr><th>rule</th><th>count</th></tr>");
    for count in counts {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
            escape(&count.rule),
            count.count
        );
    }
    let _ = write!(page, "</table>");
}

fn named_table(page: &mut String, heading: &str, counts: &[super::NamedCount]) {
    let _ = write!(
        page,
        "<table><tr><th>{}</th><th>count</th></tr>",
        escape(heading)
    );
    for count in counts {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
            escape(&count.name),
            count.count
        );
    }
    let _ = write!(page, "</table>");
}

/// Horizontal bars, one per labelled value.
fn bar_chart(bars: &[(String, u64)], color: &str) -> String {
    if bars.is_empty() {
        return "<p class=\"none\">none</p>".to_owned();
    }
    let (label_width, bar_width, row_height) = (170.0, 220.0, 22.0);
    let height = row_height * bars.len() as f64 + 8.0;
    let max = bars.iter().map(|(_, v)| *v).max().unwrap_or(1).max(1) as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"100%\" viewBox=\"0 0 {} {height}\">",
        label_width + bar_width + 60.0
    );
    for (index, (label, value)) in bars.iter().enumerate() {
        let y = index as f64 * row_height + 4.0;
        let width = (*value as f64 / max * bar_width).max(1.0);
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_width}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{:.1}\" fill=\"{color}\" rx=\"2\"><title>{}: {value}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\">{value}</text>",
            label_width - 6.0,
            y + 14.0,
            escape(&super::text::clip(label, 26)),
            row_height - 6.0,
            escape(label),
            label_width + width + 4.0,
            y + 14.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Stacked vertical bars per day: allowed below, refused on top.
fn day_chart(report: &Report) -> String {
    let days = &report.per_day;
    if days.is_empty() {
        return "<p class=\"none\">none</p>".to_owned();
    }
    let (width, height, bottom) = (440.0, 180.0, 30.0);
    let plot = height - bottom - 10.0;
    let max = days
        .iter()
        .map(|d| d.allowed + d.refused)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let slot = width / days.len() as f64;
    let bar = (slot * 0.7).max(1.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"100%\" viewBox=\"0 0 {width} {height}\">\
         <line x1=\"0\" y1=\"{0}\" x2=\"{width}\" y2=\"{0}\" stroke=\"#adb5bd\"/>",
        height - bottom
    );
    let label_every = days.len().div_ceil(7).max(1);
    for (index, day) in days.iter().enumerate() {
        let x = index as f64 * slot + (slot - bar) / 2.0;
        let allowed = day.allowed as f64 / max * plot;
        let refused = day.refused as f64 / max * plot;
        let base = height - bottom;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{allowed:.1}\" fill=\"#2b8a3e\"><title>{}: {} allowed</title></rect>\
             <rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{refused:.1}\" fill=\"#c92a2a\"><title>{}: {} refused, {} flagged</title></rect>",
            base - allowed,
            escape(&day.day),
            day.allowed,
            base - allowed - refused,
            escape(&day.day),
            day.refused,
            day.flagged
        );
        if index % label_every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x + bar / 2.0,
                height - bottom + 16.0,
                escape(day.day.get(5..).unwrap_or(&day.day))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}
