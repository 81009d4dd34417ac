//! `ehrgate policy test`: the conformance table passes through the CLI, and a case whose
//! expectation is wrong fails with the expected and actual outcomes and a non-zero exit.

use std::process::Command;

use crate::support::gateway::binary;
use crate::support::guest;

fn policy_test(fixtures: &std::path::Path) -> (bool, String) {
    let output = Command::new(binary())
        .args(["policy", "test"])
        .arg(guest("least-privilege"))
        .arg(fixtures)
        .output()
        .expect("run ehrgate policy test");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn the_conformance_table_passes_through_the_cli() {
    let table = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/conformance/least-privilege.toml");
    let (success, stdout) = policy_test(&table);
    assert!(success, "{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[test]
fn a_wrong_expectation_fails_with_a_diff_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixtures = dir.path().join("cases.toml");
    std::fs::write(
        &fixtures,
        r#"
config = {}

[[case]]
name = "own observations are readable"
request = "GET /Observation?patient=p1"
scopes = "patient/Observation.rs"
patient = "p1"
expect = "allow"

[[case]]
name = "a deliberately wrong expectation"
request = "GET /Observation?patient=p2"
scopes = "patient/Observation.rs"
patient = "p1"
expect = "allow"
"#,
    )
    .expect("write fixtures");
    let (success, stdout) = policy_test(&fixtures);
    assert!(!success, "{stdout}");
    assert!(
        stdout.contains("FAIL   a deliberately wrong expectation"),
        "{stdout}"
    );
    assert!(
        stdout.contains("403 least-privilege.compartment"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");
}

/// Runs `ehrgate` with `args`; returns (success, stdout + stderr).
fn ehrgate(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let output = Command::new(binary())
        .args(args)
        .output()
        .expect("run ehrgate");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn unsigned_tampered_and_foreign_modules_are_refused_when_signatures_are_required() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    let os = |p: &std::path::Path| p.as_os_str().to_owned();
    for (name, keys) in [("policy-signing", "trusted"), ("policy-signing", "other")] {
        let out = path(keys);
        let (ok, text) = ehrgate(&[
            "keygen".as_ref(),
            "--name".as_ref(),
            name.as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        assert!(ok, "{text}");
    }
    let module = path("chaos.wasm");
    std::fs::copy(guest("chaos"), &module).expect("copy module");
    std::fs::write(
        path("gateway.toml"),
        r#"
[server]
listen = "127.0.0.1:0"

[sandbox]
require_signed_modules = true
trusted_signers = ["trusted/policy-signing.pub"]

[[upstreams]]
name = "ehr"
url = "http://127.0.0.1:9/fhir"

[[routes]]
name = "ehr"
prefix = "/fhir"
upstream = "ehr"

[[routes.policies]]
name = "chaos"
module = "chaos.wasm"
"#,
    )
    .expect("write config");
    let check = || {
        ehrgate(&[
            "check".as_ref(),
            "--config".as_ref(),
            os(&path("gateway.toml")).as_os_str(),
        ])
    };
    let sign = |key: &str| {
        let key = path(key).join("policy-signing.key");
        ehrgate(&[
            "policy".as_ref(),
            "sign".as_ref(),
            module.as_os_str(),
            "--key".as_ref(),
            key.as_os_str(),
        ])
    };

    let (ok, text) = check();
    assert!(!ok && text.contains("is not signed"), "unsigned: {text}");

    let (ok, text) = sign("other");
    assert!(ok, "{text}");
    let (ok, text) = check();
    assert!(
        !ok && text.contains("not among `trusted_signers`"),
        "foreign key: {text}"
    );

    let (ok, text) = sign("trusted");
    assert!(ok, "{text}");
    let (ok, text) = check();
    assert!(ok, "signed: {text}");

    let mut bytes = std::fs::read(&module).expect("read module");
    bytes.push(0);
    std::fs::write(&module, bytes).expect("tamper");
    let (ok, text) = check();
    assert!(
        !ok && text.contains("was changed after it was signed"),
        "tampered: {text}"
    );
}

#[test]
fn a_new_policy_from_the_template_builds_passes_its_cases_and_inspects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crate_dir = dir.path().join("ward-only");
    let (ok, text) = ehrgate(&[
        "policy".as_ref(),
        "new".as_ref(),
        "ward-only".as_ref(),
        "--dir".as_ref(),
        crate_dir.as_os_str(),
    ]);
    assert!(ok, "{text}");
    // Build it as an author would, sharing the guest build's target directory so the
    // dependencies are not compiled again.
    let target = std::path::Path::new(ehrgate::BUILT_GUESTS_DIR)
        .ancestors()
        .nth(2)
        .expect("target dir")
        .to_owned();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let build = Command::new(cargo)
        .current_dir(&crate_dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("cargo build");
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let module = target.join("wasm32-wasip2/release/ward_only.wasm");
    let (ok, text) = ehrgate(&[
        "policy".as_ref(),
        "test".as_ref(),
        module.as_os_str(),
        crate_dir.join("cases.toml").as_os_str(),
    ]);
    assert!(ok && text.contains("3 passed, 0 failed"), "{text}");

    let (ok, text) = ehrgate(&["policy".as_ref(), "inspect".as_ref(), module.as_os_str()]);
    assert!(ok, "{text}");
    assert!(
        text.contains("world    ehrgate:policy/policy@0.1.0"),
        "{text}"
    );
    assert!(
        text.contains("exports  init, evaluate, on-response"),
        "{text}"
    );
    assert!(text.contains("signed   no"), "{text}");

    // Refuses to overwrite.
    let (ok, text) = ehrgate(&[
        "policy".as_ref(),
        "new".as_ref(),
        "ward-only".as_ref(),
        "--dir".as_ref(),
        crate_dir.as_os_str(),
    ]);
    assert!(!ok && text.contains("already exists"), "{text}");
}
