//! The least-privilege policy against its conformance table
//! (`tests/conformance/least-privilege.toml`) and the README's worked example
//! (`tests/conformance/least-privilege-example.toml` with `examples/policies/least-privilege.json`):
//! every case runs through the gateway's request path and the compiled module, and a test
//! lists every case that decided otherwise. Also: the example config loads, and config
//! mistakes stop the load with their reason.

use std::path::{Path, PathBuf};

use crate::support::{engine, guest, test_settings};
use ehrgate::engine::PolicySpec;
use ehrgate::engine::fixture::{FixtureFile, FixtureRunner, load_fixture_file};

/// The issue asks for at least this many cases, so a table that loses cases fails loudly.
const MIN_CASES: usize = 150;

fn repository_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Runs a fixture file and fails listing every case that decided otherwise.
fn assert_all_pass(fixtures: &FixtureFile) {
    let runner = FixtureRunner::new(test_settings()).expect("engine starts");
    let results = runner.run(&guest("least-privilege"), fixtures);
    let failures: Vec<String> = results
        .iter()
        .filter(|result| !result.passed)
        .map(|result| result.detail.clone())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases of `{}` failed:\n\n{}",
        failures.len(),
        results.len(),
        fixtures.path.display(),
        failures.join("\n")
    );
}

#[test]
fn the_conformance_table_passes() {
    let table = repository_file("tests/conformance/least-privilege.toml");
    let fixtures = load_fixture_file(&table).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        fixtures.cases.len() >= MIN_CASES,
        "the table has {} cases; expected at least {MIN_CASES}",
        fixtures.cases.len()
    );
    assert_all_pass(&fixtures);
}

#[test]
fn the_readme_example_decides_as_documented() {
    let table = repository_file("tests/conformance/least-privilege-example.toml");
    let fixtures = load_fixture_file(&table).unwrap_or_else(|e| panic!("{e}"));
    assert_all_pass(&fixtures);
}

#[test]
fn the_example_config_loads_and_bad_configs_are_refused_with_their_reason() {
    let engine = engine();
    let config =
        std::fs::read_to_string(repository_file("examples/policies/least-privilege.json")).unwrap();
    let spec = |config: &str| PolicySpec {
        name: "least-privilege".into(),
        path: guest("least-privilege"),
        config: config.into(),
        budget: None,
        response_headers: Default::default(),
    };
    let loaded = engine
        .load(&spec(&config))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.inspects_response);
    for (config, expected) in [
        (
            r#"{"backend_client": []}"#,
            "unknown field `backend_client`",
        ),
        (
            r#"{"roles": {"x": {"resource_types": ["Observation"], "permissions": "sr"}}}"#,
            "permissions out of order",
        ),
        (r#"{"operations": {"everything": "rs"}}"#, "built in"),
    ] {
        match engine.load(&spec(config)) {
            Ok(_) => panic!("{config} was accepted"),
            Err(error) => {
                let message = error.to_string();
                assert!(message.contains(expected), "{config}: {message}");
            }
        }
    }
}
