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
