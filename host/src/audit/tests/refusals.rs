//! Protocol-refusal records in a log beside request records: they are chained and verified
//! like every record, request queries and reports of requests are unchanged by them, and the
//! refusal query, the report's refusal summary and the export read them.

use std::collections::BTreeMap;

use serde_json::Value;

use super::*;
use crate::audit::export::{self, ExportFormat};
use crate::audit::query::{self, Filter, RefusalFilter};
use crate::audit::refusal::{REFUSAL_KIND, RefusalAggregate, RefusalRecord};
use crate::audit::report::{self, ReportOptions};

fn refusal(i: u64) -> RefusalRecord {
    RefusalRecord {
        seq: 0,
        kind: REFUSAL_KIND.into(),
        time: time::format_millis(base_ms() + i * 1000),
        source_address: Some(format!("192.0.2.{}", i % 3)),
        source_port: Some(40_000 + i as u16),
        tls: false,
        protocol: Some("http/1.1".into()),
        cause: Some(
            if i.is_multiple_of(2) {
                "http1-malformed"
            } else {
                "http1-head-too-large"
            }
            .into(),
        ),
        status: Some(if i.is_multiple_of(2) { 400 } else { 431 }),
        detail: Some("invalid content-length parsed".into()),
        aggregate: None,
        prev_hash: String::new(),
        hash: String::new(),
    }
}

fn aggregate() -> RefusalRecord {
    RefusalRecord {
        source_port: None,
        protocol: None,
        cause: None,
        status: None,
        detail: None,
        aggregate: Some(RefusalAggregate {
            until: time::format_millis(base_ms() + 60_000),
            count: 57,
            causes: BTreeMap::from([
                ("http1-malformed".to_owned(), 40),
                ("peer-limit".to_owned(), 17),
            ]),
        }),
        ..refusal(0)
    }
}

/// Ten request records, six individual refusals and one aggregate, interleaved.
fn mixed_log() -> (tempfile::TempDir, PathBuf, VerifyingKey) {
    let temp = tempfile::tempdir().unwrap();
    let (settings, public) = settings(temp.path());
    runtime().block_on(async {
        let log = AuditLog::open(&settings).unwrap();
        for i in 0..10 {
            log.append(sample_record(i)).await.unwrap();
            if i % 2 == 1 {
                log.append_refusal(refusal(i)).await.unwrap();
            }
        }
        log.append_refusal(refusal(10)).await.unwrap();
        log.append_refusal(aggregate()).await.unwrap();
        log.flush_and_close().await;
    });
    (temp, settings.dir, public)
}

#[test]
fn refusal_records_are_in_the_chain_and_the_log_verifies() {
    let (_temp, dir, public) = mixed_log();
    let report = verify_with(&dir, &public);
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 17);
    let lines: Vec<String> = all_lines(&dir).into_iter().flat_map(|(_, l)| l).collect();
    let refusals: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"kind\":\"protocol-refusal\""))
        .collect();
    assert_eq!(refusals.len(), 7);
    assert!(
        refusals[0].starts_with("{\"seq\":3,\"kind\":\"protocol-refusal\",\"time\":"),
        "{}",
        refusals[0]
    );

    // An edited refusal record is caught like an edited request record.
    let (file, _) = &all_lines(&dir)[0];
    let text = std::fs::read_to_string(file).unwrap();
    std::fs::write(file, text.replacen("192.0.2.1", "192.0.2.9", 1)).unwrap();
    let report = verify_with(&dir, &public);
    assert!(!report.is_intact(), "{report:?}");
}

#[test]
fn queries_read_one_kind_of_record() {
    let (_temp, dir, _) = mixed_log();
    let mut requests = 0;
    let stats = query::run(&dir, &Filter::default(), None, |_, _| {
        requests += 1;
        Ok(true)
    })
    .unwrap();
    assert_eq!((requests, stats.records), (10, 10));

    let by = |filter: RefusalFilter| {
        let mut seqs = Vec::new();
        query::run_refusals(&dir, &filter, None, |record, line| {
            assert!(line.starts_with(b"{\"seq\":"));
            seqs.push((record.seq, record.count()));
            Ok(true)
        })
        .unwrap();
        seqs
    };
    assert_eq!(by(RefusalFilter::default()).len(), 7);
    let source = by(RefusalFilter {
        source: Some("192.0.2.0".into()),
        ..RefusalFilter::default()
    });
    // Refusals 3 and 9, and the aggregate (refusal 0's address).
    assert_eq!(source.len(), 3, "{source:?}");
    let peer_limit = by(RefusalFilter {
        cause: Some("peer-limit".into()),
        ..RefusalFilter::default()
    });
    assert_eq!(peer_limit, vec![(17, 57)]);
    let too_large = by(RefusalFilter {
        cause: Some("http1-head-too-large".into()),
        ..RefusalFilter::default()
    });
    assert_eq!(too_large.len(), 5);
}

#[test]
fn the_report_counts_refusals_by_cause_and_source() {
    let (_temp, dir, _) = mixed_log();
    let report = report::build(&dir, &ReportOptions::default()).unwrap();
    assert_eq!(report.records, 10, "request records only");
    let refusals = &report.protocol_refusals;
    assert_eq!(
        (refusals.records, refusals.refusals, refusals.aggregates),
        (7, 6 + 57, 1)
    );
    let cause = |name: &str| {
        refusals
            .by_cause
            .iter()
            .find(|c| c.name == name)
            .map_or(0, |c| c.count)
    };
    assert_eq!(cause("http1-malformed"), 1 + 40);
    assert_eq!(cause("http1-head-too-large"), 5);
    assert_eq!(cause("peer-limit"), 17);
    assert_eq!(refusals.top_sources[0].name, "192.0.2.0");
    assert_eq!(refusals.top_sources[0].count, 2 + 57);
    let text = report::text::render(&report);
    assert!(text.contains("Protocol refusals"), "{text}");
    assert!(report::html::render(&report).contains("Protocol refusals: 63"));
}

#[test]
fn the_export_makes_a_security_alert_per_refusal_record() {
    let (_temp, dir, _) = mixed_log();
    let mut out = Vec::new();
    let stats = export::export(&dir, ExportFormat::Ndjson, &mut out).unwrap();
    assert_eq!(stats.records, 17);
    let events: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let alerts: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"]["code"] == "110113" && e["outcome"] == "4")
        .filter(|e| e["agent"][0]["type"]["coding"][0]["code"] == "110153")
        .collect();
    assert_eq!(alerts.len(), 7);
    let single = alerts[0];
    assert_eq!(single["agent"][0]["network"]["address"], "192.0.2.1");
    assert_eq!(single["subtype"][0]["code"], "http1-head-too-large");
    assert!(single["period"].is_null());
    let aggregate = alerts[6];
    assert_eq!(
        aggregate["period"]["end"],
        time::format_millis(base_ms() + 60_000)
    );
    assert!(
        aggregate["outcomeDesc"]
            .as_str()
            .unwrap()
            .contains("http1-malformed=40 peer-limit=17")
    );
}
