//! `[audit]` in the gateway's config: defaults, paths relative to the file, and every problem
//! named with its key.

use super::*;
use crate::config;

fn parse(dir: &Path, audit: &str) -> Result<Option<AuditSettings>, String> {
    let source = format!(
        "[server]\nlisten = \"127.0.0.1:1\"\n\n[[upstreams]]\nname = \"ehr\"\nurl = \"http://127.0.0.1:2\"\n\n\
         [[routes]]\nname = \"ehr\"\nprefix = \"/fhir\"\nupstream = \"ehr\"\n\n[audit]\n{audit}\n"
    );
    config::parse(&source, &dir.join("gateway.toml"))
        .map(|c| c.audit)
        .map_err(|e| e.to_string())
}

#[test]
fn defaults_apply_and_paths_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    key_pair(&dir.path().join("keys"));
    let settings = parse(
        dir.path(),
        "dir = \"audit\"\nsigning_key = \"keys/audit-signing.key\"",
    )
    .unwrap()
    .unwrap();
    let mut expected = AuditSettings::new(
        dir.path().join("audit"),
        dir.path().join("keys/audit-signing.key"),
    );
    expected.durability = Durability::Strict;
    assert_eq!(settings, expected);
    assert_eq!(parse(dir.path(), "").unwrap(), None, "no `dir`: no log");
}

#[test]
fn every_key_is_read() {
    let dir = tempfile::tempdir().unwrap();
    key_pair(&dir.path().join("keys"));
    let settings = parse(
        dir.path(),
        "dir = \"/var/log/ehrgate\"\nsigning_key = \"keys/audit-signing.key\"\nmode = \"buffered\"\n\
         checkpoint_every = 10\ncheckpoint_secs = 5\nrotate_bytes = 65536\nfsync_interval_ms = 20\n\
         queue_capacity = 64\nreview_risk_threshold = 50",
    )
    .unwrap()
    .unwrap();
    assert_eq!(settings.dir, PathBuf::from("/var/log/ehrgate"));
    assert_eq!(settings.durability, Durability::Buffered);
    assert_eq!(
        (settings.checkpoint_every, settings.checkpoint_interval),
        (10, Duration::from_secs(5))
    );
    assert_eq!(
        (settings.rotate_bytes, settings.fsync_interval),
        (65536, Duration::from_millis(20))
    );
    assert_eq!(
        (settings.queue_capacity, settings.review_risk_threshold),
        (64, 50)
    );
}

#[test]
fn problems_name_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-key.pem"), "hello").unwrap();
    let cases = [
        (
            "dir = \"audit\"",
            "`audit.dir` is set but `audit.signing_key` is not",
        ),
        (
            "signing_key = \"k\"",
            "`audit.signing_key` is set but `audit.dir` is not",
        ),
        (
            "dir = \"audit\"\nsigning_key = \"missing.key\"",
            "`audit.signing_key`: cannot read",
        ),
        (
            "dir = \"audit\"\nsigning_key = \"not-a-key.pem\"",
            "is not an Ed25519 private key in PKCS#8 PEM form",
        ),
        (
            "dir = \"a\"\nsigning_key = \"not-a-key.pem\"\nreview_risk_threshold = 101",
            "`audit.review_risk_threshold` is 101; expected 0 to 100",
        ),
        (
            "dir = \"a\"\nsigning_key = \"not-a-key.pem\"\ncheckpoint_every = 0",
            "`audit.checkpoint_every` is 0; expected 1",
        ),
        (
            "dir = \"a\"\nsigning_key = \"not-a-key.pem\"\nfsync_interval_ms = 5",
            "`audit.fsync_interval_ms` is set but `audit.mode` is `strict`",
        ),
        (
            "dir = \"a\"\nmode = \"sometimes\"",
            "unknown variant `sometimes`",
        ),
        ("dir = \"a\"\nretention = 6", "unknown field `retention`"),
        (
            "refusal_interval_secs = 0",
            "`audit.refusal_interval_secs` is 0; expected 1 to 86400",
        ),
        (
            "refusal_peers = 0",
            "`audit.refusal_peers` is 0; expected 1 to 1000000",
        ),
        (
            "refusal_records_per_peer = 2000000",
            "help: these bound how many protocol refusals get an audit record of their own",
        ),
    ];
    for (audit, expected) in cases {
        let errors = parse(dir.path(), audit).unwrap_err();
        assert!(errors.contains(expected), "{audit}\n{errors}");
    }
    let errors = parse(dir.path(), "dir = \"audit\"\nsigning_key = \"missing.key\"").unwrap_err();
    assert!(
        errors.contains("gateway.toml:15:")
            && errors.contains("help: make a key pair with `ehrgate keygen"),
        "names the line and the fix: {errors}"
    );
}
