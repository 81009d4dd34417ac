//! Reading a small log back: query filters, the report, and the FHIR export.

use serde_json::Value;

use super::*;
use crate::audit::export::{self, ExportFormat};
use crate::audit::query::{self, DecisionFilter, Filter};
use crate::audit::report::{self, ReportOptions};

const RECORDS: u64 = 400;

/// The log of records 0..400 and the records as written (review flags set as the log sets
/// them, with the default threshold).
fn small_log() -> (tempfile::TempDir, PathBuf, Vec<AuditRecord>) {
    let temp = tempfile::tempdir().unwrap();
    let (mut settings, _) = settings(temp.path());
    settings.rotate_bytes = 64 << 10;
    write_records(&settings, 0, RECORDS);
    let expected = (0..RECORDS)
        .map(|i| {
            let mut record = sample_record(i);
            record.flag_for_review(settings.review_risk_threshold);
            record.seq = i + 1;
            record
        })
        .collect();
    (temp, settings.dir, expected)
}

fn matching(dir: &Path, filter: &Filter, limit: Option<u64>) -> Vec<u64> {
    let mut seqs = Vec::new();
    query::run(dir, filter, limit, |record, line| {
        assert!(line.starts_with(b"{\"seq\":"));
        seqs.push(record.seq);
        Ok(true)
    })
    .unwrap();
    seqs
}

fn expected(records: &[AuditRecord], keep: impl Fn(&AuditRecord) -> bool) -> Vec<u64> {
    records.iter().filter(|r| keep(r)).map(|r| r.seq).collect()
}

#[test]
fn query_filters_each_field() {
    let (_temp, dir, records) = small_log();
    let by = |filter: Filter| matching(&dir, &filter, None);
    let subject = |r: &AuditRecord, s: &str| r.principal.as_ref().is_some_and(|p| p.subject == s);

    let user = by(Filter {
        user: Some("user-4".into()),
        ..Filter::default()
    });
    assert_eq!(user, expected(&records, |r| subject(r, "user-4")));
    assert!(!user.is_empty());
    let fhir_user = by(Filter {
        user: Some("Practitioner/user-4".into()),
        ..Filter::default()
    });
    assert_eq!(fhir_user, user, "a user is found by fhirUser too");

    let patient = by(Filter {
        patient: Some("pat-7".into()),
        ..Filter::default()
    });
    assert_eq!(
        patient,
        expected(&records, |r| r.patients.iter().any(|p| p == "pat-7"))
    );
    assert!(patient.len() >= 4);

    let client = by(Filter {
        client: Some("billing-app".into()),
        ..Filter::default()
    });
    assert_eq!(
        client,
        expected(&records, |r| r
            .principal
            .as_ref()
            .is_some_and(|p| p.client == "billing-app"))
    );

    for decision in AuditDecision::ALL {
        let found = by(Filter {
            decision: Some(DecisionFilter::Is(decision)),
            ..Filter::default()
        });
        assert_eq!(
            found,
            expected(&records, |r| r.decision == decision),
            "{decision:?}"
        );
    }
    let shadow = by(Filter {
        decision: Some(DecisionFilter::ShadowDeny),
        ..Filter::default()
    });
    assert_eq!(shadow, expected(&records, |r| !r.shadow_denials.is_empty()));

    let refusing_rule = by(Filter {
        rule: Some("scope.missing".into()),
        ..Filter::default()
    });
    assert_eq!(
        refusing_rule,
        expected(&records, |r| r.rule.as_deref() == Some("scope.missing"))
    );
    let finding_rule = by(Filter {
        rule: Some("anomaly.vip-access".into()),
        ..Filter::default()
    });
    assert_eq!(
        finding_rule,
        expected(&records, |r| r
            .findings
            .iter()
            .any(|f| f.rule == "anomaly.vip-access"))
    );

    let risky = by(Filter {
        min_risk: Some(90),
        ..Filter::default()
    });
    assert_eq!(risky, expected(&records, |r| r.risk >= 90));
    let review = by(Filter {
        review: true,
        ..Filter::default()
    });
    assert_eq!(review, expected(&records, |r| r.review));

    // Records are a minute apart from midnight: 01:00 to 02:00 is records 60..120.
    let hour = by(Filter {
        since_ms: Some(base_ms() + 3_600_000),
        until_ms: Some(base_ms() + 7_200_000),
        ..Filter::default()
    });
    assert_eq!(hour, (61..=120).collect::<Vec<u64>>());

    let combined = by(Filter {
        user: Some("user-4".into()),
        decision: Some(DecisionFilter::Is(AuditDecision::Allow)),
        ..Filter::default()
    });
    assert_eq!(
        combined,
        expected(&records, |r| subject(r, "user-4")
            && r.decision == AuditDecision::Allow)
    );

    assert_eq!(
        matching(&dir, &Filter::default(), Some(7)),
        (1..=7).collect::<Vec<u64>>()
    );
    assert!(
        by(Filter {
            user: Some("nobody".into()),
            ..Filter::default()
        })
        .is_empty()
    );
}

#[test]
fn decision_filters_parse_with_a_helpful_error() {
    assert_eq!("shadow-deny".parse(), Ok(DecisionFilter::ShadowDeny));
    assert_eq!(
        "policy-error".parse(),
        Ok(DecisionFilter::Is(AuditDecision::PolicyError))
    );
    let error = "denied".parse::<DecisionFilter>().unwrap_err();
    assert!(
        error.starts_with("`denied` is not a decision; expected one of `allow`"),
        "{error}"
    );
}

#[test]
fn the_report_shows_what_needs_review() {
    let (_temp, dir, records) = small_log();
    let options = ReportOptions {
        patient: Some("pat-7".into()),
        limit: 5,
        top: 3,
    };
    let built = report::build(&dir, &options).unwrap();
    assert_eq!(built.records, RECORDS);
    assert_eq!(
        built.flagged.total,
        records.iter().filter(|r| r.review).count() as u64
    );
    assert_eq!(built.flagged.rows.len(), 5);
    assert_eq!(
        built.flagged.rows.last().map(|r| r.seq),
        records.iter().rev().find(|r| r.review).map(|r| r.seq)
    );
    assert_eq!(
        built.break_glass.total,
        records.iter().filter(|r| r.break_glass).count() as u64
    );
    assert!(built.break_glass.total >= 4);
    assert_eq!(built.top_users.len(), 3);
    assert!(
        built
            .top_users
            .windows(2)
            .all(|w| w[0].distinct_patients >= w[1].distinct_patients)
    );
    let denied_rule = |rule: &str| {
        records
            .iter()
            .filter(|r| r.decision != AuditDecision::Allow && r.rule.as_deref() == Some(rule))
            .count() as u64
    };
    for count in &built.denials_by_rule {
        assert_eq!(count.count, denied_rule(&count.rule), "{}", count.rule);
    }
    assert_eq!(
        built.denials_by_rule.iter().map(|c| c.count).sum::<u64>(),
        records
            .iter()
            .filter(|r| r.decision != AuditDecision::Allow)
            .count() as u64
    );
    let accounting = built.patient.as_ref().unwrap();
    let touching: Vec<&AuditRecord> = records
        .iter()
        .filter(|r| r.patients.iter().any(|p| p == "pat-7"))
        .collect();
    assert_eq!(accounting.accesses.len(), touching.len());
    assert_eq!(
        accounting.disclosures,
        touching
            .iter()
            .filter(|r| r.decision == AuditDecision::Allow)
            .count() as u64
    );

    let text = report::text::render(&built);
    for section in [
        "Flagged for review:",
        "Break-the-glass:",
        "Top users by distinct patients",
        "Refusals by rule",
        "compartment.other-patient",
        "Accounting of disclosures for patient pat-7",
        "reason: patient unconscious in ED",
    ] {
        assert!(text.contains(section), "missing `{section}`:\n{text}");
    }

    let html = report::html::render(&built);
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert!(
        html.contains("<style>") && html.matches("<svg").count() == 3,
        "three inline charts"
    );
    for external in ["<script", "<link", "src=", "url(", "@import"] {
        assert!(
            !html.contains(external),
            "the page must be self-contained: found `{external}`"
        );
    }
}

#[test]
fn html_escapes_what_the_log_holds() {
    let options = ReportOptions::default();
    let mut built = report::Builder::new(&options);
    let mut record = sample_record(5);
    record.break_glass_reason = Some("<script>alert(1)</script>".into());
    record.flag_for_review(70);
    built.add(&record);
    let html = report::html::render(&built.finish(Path::new("/var/log/<audit>")));
    assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
    assert!(html.contains("/var/log/&lt;audit&gt;"));
}

#[test]
fn export_writes_one_audit_event_per_patient_touched() {
    let (_temp, dir, records) = small_log();
    let mut ndjson = Vec::new();
    let stats = export::export(&dir, ExportFormat::Ndjson, &mut ndjson).unwrap();
    let events: Vec<Value> = String::from_utf8(ndjson)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected_events: usize = records.iter().map(|r| r.patients.len().max(1)).sum();
    assert_eq!(
        (stats.records, stats.events as usize, events.len()),
        (RECORDS, expected_events, expected_events)
    );

    let mut ids = std::collections::HashSet::new();
    for event in &events {
        assert_eq!(event["resourceType"], "AuditEvent");
        assert!(
            ids.insert(event["id"].as_str().unwrap().to_owned()),
            "ids are unique"
        );
        assert!(!event["agent"].as_array().unwrap().is_empty());
        assert!(event["recorded"].as_str().unwrap().ends_with('Z'));
        assert!(["0", "4", "8"].contains(&event["outcome"].as_str().unwrap()));
        let patients = event["entity"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["role"]["code"] == "1")
            .count();
        assert!(patients <= 1);
    }

    // Record 1: a search by a user for one patient, with a query.
    let search: Vec<&Value> = events
        .iter()
        .filter(|e| e["entity"][1]["detail"][0]["valueString"] == "req-0000001")
        .collect();
    assert_eq!(search.len(), 1);
    let event = search[0];
    assert_eq!(event["type"]["code"], "rest");
    assert_eq!(event["subtype"][0]["code"], "search-type");
    assert_eq!(event["action"], "R");
    assert_eq!(event["entity"][0]["what"]["reference"], "Patient/pat-1");
    assert_eq!(event["entity"][1]["role"]["code"], "24");
    assert_eq!(
        event["entity"][1]["query"],
        "cGF0aWVudD1wYXQtMSZjYXRlZ29yeT1sYWJvcmF0b3J5"
    );
    assert_eq!(event["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
    assert_eq!(event["agent"][1]["network"]["address"], "10.1.2.3");

    // Record 5: break-the-glass, a security alert with the override subtype and the reason.
    let glass = events
        .iter()
        .find(|e| e["entity"][1]["detail"][0]["valueString"] == "req-0000005")
        .unwrap();
    assert_eq!(glass["type"]["code"], "110113");
    assert_eq!(glass["subtype"][0]["code"], "110127");
    assert_eq!(
        glass["purposeOfEvent"][0]["text"],
        "patient unconscious in ED"
    );

    // A request that touched two patients: two events, one patient each.
    let two = records.iter().find(|r| r.patients.len() == 2).unwrap();
    let for_two: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["entity"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["detail"][0]["valueString"] == two.request_id.as_str())
        })
        .collect();
    assert_eq!(for_two.len(), 2);

    let mut bundle = Vec::new();
    export::export(&dir, ExportFormat::Bundle, &mut bundle).unwrap();
    let bundle: Value = serde_json::from_slice(&bundle).unwrap();
    assert_eq!(
        (bundle["resourceType"].as_str(), bundle["type"].as_str()),
        (Some("Bundle"), Some("collection"))
    );
    assert_eq!(bundle["entry"].as_array().unwrap().len(), expected_events);
}
