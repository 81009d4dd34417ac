//! Audit log cost: chaining one record (criterion), then records per second through the
//! writer in strict mode (group commit, 1 to 256 concurrent appenders) and buffered mode,
//! and `ehrgate audit query` / `verify` times on a log of a million records, which is
//! generated once into `target/audit-bench-1m`.
//!
//!     cargo bench -p ehrgate --bench audit

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark that cannot set up has nothing to report"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::Criterion;
use ehrgate::audit::chain::{self, ChainHead};
use ehrgate::audit::record::{
    AuditDecision, AuditFinding, AuditPrincipal, Latencies, Phase, Severity,
};
use ehrgate::audit::{AuditLog, AuditRecord, AuditSettings, Durability, keys, time};

const MILLION: u64 = 1_000_000;

/// A record like the gateway writes for a clinician's search: about 900 bytes.
fn record(i: u64) -> AuditRecord {
    let denied = i % 10 == 7;
    AuditRecord {
        seq: 0,
        time: time::format_millis(time::now_millis()),
        request_id: format!("0b6c5d1e-8f7a-4c1b-9a0e-{i:012}"),
        source_address: "10.20.30.40".into(),
        tls: true,
        principal: Some(AuditPrincipal {
            subject: format!("user-{}", i % 500),
            client: "ward-app".into(),
            issuer: "https://idp.hospital.example".into(),
            roles: vec!["clinician".into()],
            scopes: vec![
                "launch/patient".into(),
                "patient/Observation.rs".into(),
                "patient/Patient.r".into(),
            ],
            fhir_user: Some(format!("Practitioner/user-{}", i % 500)),
            launch_patient: Some(format!("pat-{}", i % 20_000)),
        }),
        purpose_of_use: vec!["TREAT".into()],
        break_glass: false,
        break_glass_reason: None,
        route: Some("ehr".into()),
        upstream: Some("ehr".into()),
        method: "GET".into(),
        path: Some("/Observation".into()),
        query: Some(format!(
            "patient=pat-{}&category=laboratory&_count=50",
            i % 20_000
        )),
        interaction: Some("search-type".into()),
        resource_type: Some("Observation".into()),
        resource_id: None,
        patients: vec![format!("pat-{}", i % 20_000)],
        decision: if denied {
            AuditDecision::Deny
        } else {
            AuditDecision::Allow
        },
        module: denied.then(|| "least-privilege".to_owned()),
        rule: denied.then(|| "scope.missing".to_owned()),
        findings: vec![AuditFinding {
            phase: Phase::Request,
            module: "anomaly".into(),
            rule: "anomaly.after-hours".into(),
            severity: Severity::Low,
            detail: "access outside the user's usual hours".into(),
        }],
        shadow_denials: Vec::new(),
        policy_faults: Vec::new(),
        risk: (i % 100) as u8,
        review: false,
        review_reasons: Vec::new(),
        status: if denied { 403 } else { 200 },
        upstream_status: (!denied).then_some(200),
        latency_us: Latencies {
            policy: 180,
            upstream: (!denied).then_some(2_400),
            total: 2_750,
        },
        pre_read: None,
        prev_hash: String::new(),
        hash: String::new(),
    }
}

fn settings(dir: &Path, durability: Durability) -> AuditSettings {
    let key = keys::generate();
    let written =
        keys::write_key_pair(&dir.join("keys"), keys::AUDIT_KEY_NAME, &key, true).unwrap();
    let mut settings = AuditSettings::new(dir.join("log"), written.signing_key);
    settings.durability = durability;
    settings
}

/// Records per second with `appenders` tasks appending for about `window`.
fn throughput(durability: Durability, appenders: usize, window: Duration) -> (u64, f64) {
    let temp = tempfile::tempdir().unwrap();
    let settings = settings(temp.path(), durability);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let log = AuditLog::open(&settings).unwrap();
        let started = Instant::now();
        let tasks: Vec<_> = (0..appenders)
            .map(|task| {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut written = 0u64;
                    while started.elapsed() < window {
                        for _ in 0..64 {
                            log.append(record(task as u64 * 1_000_000_000 + written))
                                .await
                                .unwrap();
                            written += 1;
                        }
                    }
                    written
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        // Buffered records count once they are on disk.
        log.flush_and_close().await;
        let elapsed = started.elapsed().as_secs_f64();
        (total, total as f64 / elapsed)
    })
}

/// The log the commands are timed on: a million records written once (through the writer,
/// buffered) into `target/audit-bench-1m` and reused; a small one in `scratch` when the bench
/// only runs as a test.
fn record_log(records: u64, scratch: &Path) -> (PathBuf, PathBuf) {
    let root = if records == MILLION {
        Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("audit-bench-1m")
    } else {
        scratch.to_owned()
    };
    let ready = root.join("ready");
    let dir = root.join("log");
    let public_key = root
        .join("keys")
        .join(format!("{}.pub", keys::AUDIT_KEY_NAME));
    if ready.exists() {
        return (dir, public_key);
    }
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let mut settings = settings(&root, Durability::Buffered);
    settings.rotate_bytes = 256 << 20;
    eprintln!("writing {records} records to {} (once)", dir.display());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let log = AuditLog::open(&settings).unwrap();
        for i in 0..records {
            log.append(record(i)).await.unwrap();
        }
        log.flush_and_close().await;
    });
    std::fs::write(&ready, b"").unwrap();
    (dir, public_key)
}

/// Runs the real `ehrgate` binary and returns its wall time.
fn timed(args: &[&str]) -> Duration {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_ehrgate"))
        .args(args)
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

fn bench_chaining(c: &mut Criterion) {
    let mut out = Vec::with_capacity(4096);
    let mut head = ChainHead::GENESIS;
    let mut template = record(1);
    c.bench_function("chain one record (serialize + SHA-256)", |b| {
        b.iter(|| {
            out.clear();
            head = chain::append_line(&mut template, &head, &mut out).unwrap();
            std::hint::black_box(&out);
        })
    });
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test` every part runs once, small, so the
    // bench is checked without a million-record log or seconds of fsyncs.
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let mut criterion = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_chaining(&mut criterion);
    criterion.final_summary();

    let window = Duration::from_millis(if measuring { 3000 } else { 100 });
    let appender_counts: &[usize] = if measuring { &[1, 8, 64, 256] } else { &[1, 8] };
    let mut rows = Vec::new();
    for &appenders in appender_counts {
        rows.push((
            "strict",
            appenders,
            throughput(Durability::Strict, appenders, window),
        ));
    }
    for appenders in [1, 8] {
        rows.push((
            "buffered",
            appenders,
            throughput(Durability::Buffered, appenders, window),
        ));
    }
    println!();
    println!("| mode | concurrent appenders | records | records/s |");
    println!("|---|---|---|---|");
    for (mode, appenders, (records, rate)) in &rows {
        println!("| {mode} | {appenders} | {records} | {rate:.0} |");
    }

    let scratch = tempfile::tempdir().unwrap();
    let records = if measuring { MILLION } else { 2_000 };
    let (dir, public_key) = record_log(records, scratch.path());
    let dir = dir.to_str().unwrap();
    let public_key = public_key.to_str().unwrap();
    let size: u64 = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let runs: [(&str, Vec<&str>); 5] = [
        (
            "query --patient pat-4242 (50 matches)",
            vec![
                "audit",
                "query",
                "--dir",
                dir,
                "--patient",
                "pat-4242",
                "--json",
            ],
        ),
        (
            "query --user Practitioner/user-7 --decision deny",
            vec![
                "audit",
                "query",
                "--dir",
                dir,
                "--user",
                "Practitioner/user-7",
                "--decision",
                "deny",
            ],
        ),
        (
            "query --min-risk 99 (every record parsed)",
            vec!["audit", "query", "--dir", dir, "--min-risk", "99", "--json"],
        ),
        (
            "verify",
            vec!["audit", "verify", "--dir", dir, "--public-key", public_key],
        ),
        ("report", vec!["audit", "report", "--dir", dir]),
    ];
    println!();
    println!(
        "| command on {records} records ({:.0} MiB) | wall time |",
        size as f64 / (1u64 << 20) as f64
    );
    println!("|---|---|");
    for (name, args) in runs {
        let mut times: Vec<Duration> = (0..if measuring { 3 } else { 1 })
            .map(|_| timed(&args))
            .collect();
        times.sort();
        println!("| {name} | {:.2} s |", times[times.len() / 2].as_secs_f64());
    }
}
