//! The writer: group commit in strict mode, checkpoints by count and time, rotation, the
//! chain across files and restarts, crash recovery, and failure.

use std::io::Write;
use std::sync::Arc;

use super::*;
use crate::audit::files;
use crate::audit::log::AuditError;

#[test]
fn strict_appends_from_many_tasks_all_land_in_one_unbroken_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (mut settings, public) = settings(dir.path());
    settings.durability = Durability::Strict;
    settings.checkpoint_every = 50;
    let log = Arc::new(AuditLog::open(&settings).unwrap());
    runtime().block_on(async {
        let mut tasks = Vec::new();
        for task in 0..16u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..40 {
                    log.append(sample_record(task * 1000 + i)).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        log.flush_and_close().await;
    });
    let now = log.watch().snapshot();
    assert_eq!(now.records_written, 640);
    assert_eq!(now.durable_seq, 640);
    assert_eq!(
        (now.queue_depth, now.write_failures, now.failing),
        (0, 0, false)
    );
    assert!(
        now.fsyncs >= 1 && now.fsyncs <= 640,
        "group commit: at most one fsync per record, {now:?}"
    );
    assert!(now.checkpoints >= 13, "{now:?}");
    let report = verify_with(&settings.dir, &public);
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 640);
    assert_eq!(report.last_seq, 640);
    assert!(report.checkpoints >= 13, "{report:?}");
    assert_eq!(report.uncovered, None, "closing writes a final checkpoint");
    assert_eq!(report.anchors, vec![files::HEAD_FILE.to_owned()]);
    let head = files::read_head_file(&settings.dir.join(files::HEAD_FILE))
        .unwrap()
        .unwrap();
    assert_eq!(head.seq, 640);
}

#[test]
fn every_line_has_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, _) = settings(dir.path());
    write_records(&settings, 0, 3);
    let lines = &all_lines(&settings.dir)[0].1;
    let start = format!(
        "{{\"seq\":1,\"time\":\"{}\",\"request_id\":\"req-0000000\"",
        time::format_millis(base_ms())
    );
    assert!(lines[0].starts_with(&start), "{}", lines[0]);
    assert!(lines[0].contains(&format!("\"prev_hash\":\"{}\"", "0".repeat(64))));
    // hash = SHA-256(prev || line without its hash member), written by hand here.
    for pair in lines.windows(2).take(2) {
        let (first, second) = (&pair[0], &pair[1]);
        let hash = &first[first.len() - 66..first.len() - 2];
        let canonical = format!("{}}}", &first[..first.len() - 75]);
        let prev = crate::audit::chain::parse_hash(
            &first[first.find("\"prev_hash\":\"").unwrap() + 13..][..64],
        )
        .unwrap();
        assert_eq!(
            hex::encode(crate::audit::chain::record_hash(
                &prev,
                canonical.as_bytes()
            )),
            hash
        );
        assert!(second.contains(&format!("\"prev_hash\":\"{hash}\"")));
    }
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("{\"checkpoint\":{\"seq\":3,\"head_hash\":\""),
        "{last}"
    );
}

#[test]
fn a_checkpoint_is_written_after_the_interval_without_closing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut settings, public) = settings(dir.path());
    settings.checkpoint_every = 1_000_000;
    settings.checkpoint_interval = SHORT;
    settings.fsync_interval = SHORT;
    let rt = runtime();
    let log = rt.block_on(async {
        let log = AuditLog::open(&settings).unwrap();
        for i in 0..5 {
            log.append(sample_record(i)).await.unwrap();
        }
        log
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let report = verify_with(&settings.dir, &public);
        if report.checkpoints == 1 && report.records == 5 {
            assert!(
                report.is_intact() && report.uncovered.is_none(),
                "{report:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no timed checkpoint: {report:?}"
        );
        std::thread::sleep(SHORT);
    }
    rt.block_on(log.flush_and_close());
}

#[test]
fn files_rotate_by_size_and_the_chain_continues_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut settings, public) = settings(dir.path());
    settings.rotate_bytes = 16 << 10;
    write_records(&settings, 0, 300);
    let files = files::list(&settings.dir).unwrap();
    assert!(files.len() >= 5, "{files:?}");
    for (path, lines) in all_lines(&settings.dir) {
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= 16 << 10, "{} is {size} bytes", path.display());
        assert!(
            lines.last().unwrap().starts_with("{\"checkpoint\""),
            "{} ends without a checkpoint",
            path.display()
        );
    }
    let report = verify_with(&settings.dir, &public);
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.records, report.files), (300, files.len()));
}

#[test]
fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, public) = settings(dir.path());
    write_records(&settings, 0, 120);
    write_records(&settings, 120, 250);
    let report = verify_with(&settings.dir, &public);
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.last_seq, 250);
}

#[test]
fn a_torn_last_line_is_skipped_and_a_new_file_started() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, public) = settings(dir.path());
    write_records(&settings, 0, 10);
    let newest = files::list(&settings.dir).unwrap().pop().unwrap();
    let torn = b"{\"seq\":11,\"time\":\"2026-01-01T00:";
    std::fs::OpenOptions::new()
        .append(true)
        .open(&newest.path)
        .unwrap()
        .write_all(torn)
        .unwrap();

    let report = verify_with(&settings.dir, &public);
    assert!(
        report.is_intact(),
        "a torn line is not tampering: {report:?}"
    );
    assert_eq!(report.torn.len(), 1);
    assert_eq!(report.torn[0].bytes, torn.len() as u64);

    write_records(&settings, 10, 20);
    let after = files::list(&settings.dir).unwrap();
    assert_eq!(after.len(), 2, "a new file after the torn one: {after:?}");
    assert!(
        std::fs::read(&newest.path).unwrap().ends_with(torn),
        "nothing appended after a torn line"
    );
    let report = verify_with(&settings.dir, &public);
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.last_seq, report.torn.len()), (20, 1));
}

#[test]
fn strict_appends_fail_when_the_log_cannot_be_written_and_recover_when_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let (mut settings, public) = settings(dir.path());
    settings.durability = Durability::Strict;
    settings.rotate_bytes = 4096;
    let rt = runtime();
    let log = AuditLog::open(&settings).unwrap();
    rt.block_on(async {
        for i in 0..20 {
            log.append(sample_record(i)).await.unwrap();
        }
    });
    // Rotation needs a new file in a directory that is gone.
    let moved = dir.path().join("moved");
    std::fs::rename(&settings.dir, &moved).unwrap();
    let failed = rt.block_on(async {
        let mut failed = None;
        for i in 20..40 {
            if let Err(error) = log.append(sample_record(i)).await {
                failed = Some(error);
                break;
            }
        }
        failed
    });
    assert!(matches!(failed, Some(AuditError::Write(_))), "{failed:?}");
    let failing = log.watch().snapshot();
    assert!(
        failing.failing && failing.write_failures >= 1,
        "{failing:?}"
    );
    std::fs::rename(&moved, &settings.dir).unwrap();
    rt.block_on(async {
        log.append(sample_record(99)).await.unwrap();
        let recovered = log.watch().snapshot();
        assert!(!recovered.failing, "{recovered:?}");
        assert!(
            recovered.files_started > failing.files_started,
            "{recovered:?}"
        );
        log.flush_and_close().await;
        assert_eq!(
            log.append(sample_record(100)).await,
            Err(AuditError::Closed)
        );
    });
    let report = verify_with(&settings.dir, &public);
    assert!(report.is_intact(), "{report:?}");
}

#[test]
fn appends_after_closing_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, _) = settings(dir.path());
    runtime().block_on(async {
        let log = AuditLog::open(&settings).unwrap();
        log.flush_and_close().await;
        assert_eq!(log.append(sample_record(1)).await, Err(AuditError::Closed));
    });
}

#[test]
fn review_flags_follow_findings_break_the_glass_and_risk() {
    let mut record = sample_record(1);
    record.risk = 69;
    record.flag_for_review(70);
    assert!(!record.review);
    record.risk = 70;
    record.flag_for_review(70);
    assert_eq!(record.review_reasons, vec!["risk:70"]);
    let mut high = sample_record(57);
    high.risk = 0;
    high.flag_for_review(70);
    assert_eq!(high.review_reasons, vec!["high-finding:anomaly.vip-access"]);
    let mut glass = sample_record(5);
    glass.risk = 0;
    glass.flag_for_review(70);
    assert_eq!(glass.review_reasons, vec!["break-the-glass"]);
}

#[test]
fn buffered_records_survive_a_failed_write_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (mut settings, public) = settings(dir.path());
    settings.rotate_bytes = 4096;
    let rt = runtime();
    let log = AuditLog::open(&settings).unwrap();
    rt.block_on(async {
        for i in 0..20 {
            log.append(sample_record(i)).await.unwrap();
        }
    });
    let moved = dir.path().join("moved");
    std::fs::rename(&settings.dir, &moved).unwrap();
    rt.block_on(async {
        for i in 20..40 {
            log.append(sample_record(i)).await.unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    std::fs::rename(&moved, &settings.dir).unwrap();
    rt.block_on(async {
        for i in 40..50 {
            log.append(sample_record(i)).await.unwrap();
        }
        log.flush_and_close().await;
    });
    let report = verify_with(&settings.dir, &public);
    assert!(report.is_intact(), "{report:?}");
    let ids: Vec<String> = all_lines(&settings.dir)
        .into_iter()
        .flat_map(|(_, lines)| lines)
        .filter(|l| l.starts_with("{\"seq\""))
        .map(|l| serde_json::from_str::<AuditRecord>(&l).unwrap().request_id)
        .collect();
    let expected: Vec<String> = (0..50).map(|i| sample_record(i).request_id).collect();
    assert_eq!(ids, expected, "every record once, in order");
}
