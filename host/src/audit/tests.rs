//! Tests of the audit log across its parts: logs written through the real writer, then
//! verified, tampered with, queried, reported on and exported.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "in tests, a failed expectation is a failed test"
)]

mod config;
mod refusals;
mod review;
mod signing;
mod tamper;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;

use super::log::AuditLog;
use super::record::{
    AuditDecision, AuditFinding, AuditPrincipal, AuditRecord, Latencies, Phase, Severity,
    ShadowDenial,
};
use super::settings::{AuditSettings, Durability};
use super::verify::{self, VerifyOptions, VerifyReport};
use super::{keys, time};

/// A key pair in `dir`: the private key's path and the public key.
pub(super) fn key_pair(dir: &Path) -> (PathBuf, VerifyingKey) {
    let key = keys::generate();
    let written = keys::write_key_pair(dir, keys::AUDIT_KEY_NAME, &key, false).unwrap();
    (written.signing_key, key.verifying_key())
}

/// Settings for a buffered log in `dir/log`, with a fresh key in `dir`.
pub(super) fn settings(dir: &Path) -> (AuditSettings, VerifyingKey) {
    let (signing_key, public) = key_pair(dir);
    let mut settings = AuditSettings::new(dir.join("log"), signing_key);
    settings.durability = Durability::Buffered;
    settings.checkpoint_every = 100;
    (settings, public)
}

/// A record as the gateway would build it, varied by `i`: users, patients, decisions,
/// findings, break-the-glass and risk all change with it.
pub(super) fn sample_record(i: u64) -> AuditRecord {
    let decision = match i % 10 {
        0..=6 => AuditDecision::Allow,
        7 => AuditDecision::Deny,
        8 => AuditDecision::Reject,
        _ => AuditDecision::PolicyError,
    };
    let anonymous = decision == AuditDecision::Reject;
    let break_glass = i % 97 == 5;
    let user = i % 20;
    let patients = if i % 11 == 3 {
        Vec::new()
    } else if i % 13 == 4 {
        vec![format!("pat-{}", i % 100), format!("pat-{}", (i + 1) % 100)]
    } else {
        vec![format!("pat-{}", i % 100)]
    };
    let mut findings = Vec::new();
    if i.is_multiple_of(5) {
        findings.push(AuditFinding {
            phase: Phase::Request,
            module: "anomaly".into(),
            rule: "anomaly.after-hours".into(),
            severity: Severity::Low,
            detail: "access at 03:00".into(),
        });
    }
    if i % 50 == 7 {
        findings.push(AuditFinding {
            phase: Phase::Request,
            module: "anomaly".into(),
            rule: "anomaly.vip-access".into(),
            severity: Severity::High,
            detail: "chart of a VIP patient".into(),
        });
    }
    let (module, rule, status) = match decision {
        AuditDecision::Allow => (None, None, 200),
        AuditDecision::Deny => (
            Some("least-privilege".to_owned()),
            Some(
                if i % 20 == 7 {
                    "scope.missing"
                } else {
                    "compartment.other-patient"
                }
                .to_owned(),
            ),
            403,
        ),
        AuditDecision::Reject => (None, Some("identity.missing-token".to_owned()), 401),
        _ => (
            Some("anomaly".to_owned()),
            Some("policy-error".to_owned()),
            500,
        ),
    };
    let (interaction, resource_type, resource_id, path, query) = match i % 4 {
        0 => (
            "read",
            "Patient",
            Some(format!("pat-{}", i % 100)),
            format!("/Patient/pat-{}", i % 100),
            None,
        ),
        1 => (
            "search-type",
            "Observation",
            None,
            "/Observation".to_owned(),
            Some(format!("patient=pat-{}&category=laboratory", i % 100)),
        ),
        2 => (
            "create",
            "Observation",
            None,
            "/Observation".to_owned(),
            None,
        ),
        _ => (
            "update",
            "Condition",
            Some(format!("c-{i}")),
            format!("/Condition/c-{i}"),
            None,
        ),
    };
    AuditRecord {
        seq: 0,
        time: time::format_millis(base_ms() + i * 60_000),
        request_id: format!("req-{i:07}"),
        source_address: "10.1.2.3".into(),
        tls: true,
        principal: (!anonymous).then(|| AuditPrincipal {
            subject: format!("user-{user}"),
            client: if user.is_multiple_of(3) {
                "billing-app"
            } else {
                "ward-app"
            }
            .into(),
            issuer: "https://idp.hospital.test".into(),
            roles: vec!["clinician".into()],
            scopes: vec!["user/Observation.rs".into(), "user/Patient.r".into()],
            fhir_user: user
                .is_multiple_of(2)
                .then(|| format!("Practitioner/user-{user}")),
            launch_patient: None,
        }),
        purpose_of_use: if break_glass {
            vec!["BTG".into()]
        } else if anonymous {
            Vec::new()
        } else {
            vec!["TREAT".into()]
        },
        break_glass,
        break_glass_reason: break_glass.then(|| "patient unconscious in ED".to_owned()),
        route: Some("ehr".into()),
        upstream: Some("ehr".into()),
        method: match interaction {
            "create" => "POST",
            "update" => "PUT",
            _ => "GET",
        }
        .into(),
        path: Some(path),
        query,
        interaction: Some(interaction.into()),
        resource_type: Some(resource_type.into()),
        resource_id,
        patients,
        decision,
        module,
        rule,
        findings,
        shadow_denials: if i % 17 == 2 {
            vec![ShadowDenial {
                phase: Phase::Request,
                module: "rate-limit".into(),
                rule: "rate.user".into(),
                status: 429,
            }]
        } else {
            Vec::new()
        },
        policy_faults: Vec::new(),
        risk: (i * 7 % 101) as u8,
        review: false,
        review_reasons: Vec::new(),
        status,
        upstream_status: (decision == AuditDecision::Allow).then_some(200),
        latency_us: Latencies {
            policy: 120 + i % 50,
            upstream: (decision == AuditDecision::Allow).then_some(2_000 + i % 900),
            total: 2_500 + i % 1000,
        },
        pre_read: None,
        prev_hash: String::new(),
        hash: String::new(),
    }
}

/// Midnight UTC today: sample records are a minute apart from it, so their times agree with
/// the dates in the names of the files they are written to, as in a real log.
pub(super) fn base_ms() -> u64 {
    time::day_of(time::now_millis()) * 86_400_000
}

/// A runtime for the async API.
pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Writes records `from..to` (see [`sample_record`]) through a log opened with `settings`,
/// and closes it.
pub(super) fn write_records(settings: &AuditSettings, from: u64, to: u64) {
    runtime().block_on(async {
        let log = AuditLog::open(settings).unwrap();
        for i in from..to {
            log.append(sample_record(i)).await.unwrap();
        }
        log.flush_and_close().await;
    });
}

pub(super) fn verify_with(dir: &Path, key: &VerifyingKey) -> VerifyReport {
    verify::verify(
        dir,
        &VerifyOptions {
            keys: vec![*key],
            anchors: Vec::new(),
        },
    )
}

/// The lines of every log file, oldest first, with their files.
pub(super) fn all_lines(dir: &Path) -> Vec<(PathBuf, Vec<String>)> {
    super::files::list(dir)
        .unwrap()
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f.path).unwrap();
            (f.path, text.lines().map(str::to_owned).collect())
        })
        .collect()
}

pub(super) const SHORT: Duration = Duration::from_millis(50);
