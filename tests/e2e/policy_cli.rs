//! `ehrgate policy`: the shipped conformance tables pass through `policy test`; a case whose
//! expectation is wrong, or whose state precondition the module never uses, fails with what
//! differed and a non-zero exit; signatures are required when configured; a policy made by
//! `policy new` builds, passes its cases and inspects.

use std::process::Command;

use crate::support::gateway::binary;
use crate::support::guest;

fn policy_test(module: &str, fixtures: &std::path::Path) -> (bool, String) {
    let output = Command::new(binary())
        .args(["policy", "test"])
        .arg(guest(module))
        .arg(fixtures)
        .output()
        .expect("run ehrgate policy test");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// The shipped policies' conformance tables, the module each is for, and the fewest cases
/// each must keep (so a table that loses cases fails loudly).
const CONFORMANCE_TABLES: &[(&str, &str, usize)] = &[
    ("least-privilege", "least-privilege.toml", 304),
    ("least-privilege", "least-privilege-example.toml", 10),
    ("least-privilege", "least-privilege-attacks.toml", 100),
    ("rate-limit", "rate-limit.toml", 50),
    ("anomaly", "anomaly.toml", 60),
];

#[test]
fn the_shipped_conformance_tables_pass_through_the_cli() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance");
    for (module, table, fewest) in CONFORMANCE_TABLES {
        let (success, stdout) = policy_test(module, &dir.join(table));
        assert!(success, "{table}:\n{stdout}");
        let passed: usize = stdout
            .lines()
            .last()
            .and_then(|line| line.strip_suffix(" passed, 0 failed"))
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| panic!("{table}: no summary line:\n{stdout}"));
        assert!(
            passed >= *fewest,
            "{table}: {passed} cases passed; expected at least {fewest}"
        );
    }
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
    let (success, stdout) = policy_test("least-privilege", &fixtures);
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

#[test]
fn unused_preconditions_and_wrong_headers_fail_with_what_the_module_did() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixtures = dir.path().join("cases.toml");
    std::fs::write(
        &fixtures,
        r#"
[config]
defaults = { user = { capacity = 10, refill = 10 } }

[[case]]
name = "a precondition whose key has a typo"
request = "GET /Patient/p1"
state = [{ bucket = "user:default:user-1", remaining = 0 }]
expect = { status = 429, rule = "rate-limit.user" }

[[case]]
name = "a wrong header value"
request = "GET /Patient/p1"
expect = "allow"
headers = { ratelimit-remaining = "10" }

[[case]]
name = "the right key empties the bucket"
request = "GET /Patient/p1"
state = [{ bucket = "user:default:https://idp.fixture.example:user-1", remaining = 0 }]
expect = { status = 429, rule = "rate-limit.user" }
"#,
    )
    .expect("write fixtures");
    let (success, stdout) = policy_test("rate-limit", &fixtures);
    assert!(!success, "{stdout}");
    assert!(
        stdout.contains(
            "precondition bucket `user:default:user-1` with 0 tokens left was never used by the \
             module; it used bucket `user:default:https://idp.fixture.example:user-1`"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("header ratelimit-remaining: expected `10`, got `9`"),
        "{stdout}"
    );
    assert!(stdout.contains("allow (and 1 difference)"), "{stdout}");
    assert!(stdout.contains("1 passed, 2 failed"), "{stdout}");

    // The same run for machines: one JSON object per case, the same exit status.
    let output = Command::new(binary())
        .args(["policy", "test", "--json"])
        .arg(guest("rate-limit"))
        .arg(&fixtures)
        .output()
        .expect("run ehrgate policy test --json");
    assert!(!output.status.success());
    let cases: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let passed: Vec<bool> = cases.iter().map(|c| c["passed"] == true).collect();
    assert_eq!(passed, [false, false, true]);
    assert_eq!(cases[0]["expected"], "429 rate-limit.user");
    assert_eq!(cases[1]["actual"], "allow (and 1 difference)");
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
    assert!(
        text.contains("warning: no `[[identity.issuers]]`")
            && text.contains("ok (1 route, 1 policy loaded)"),
        "a loadable config still names what it probably did not mean: {text}"
    );

    // `inspect --trusted` gates on the signature: verified with the signer's key, exit 1
    // with another one.
    let inspect = |keys: &str| {
        let public = path(keys).join("policy-signing.pub");
        ehrgate(&[
            "policy".as_ref(),
            "inspect".as_ref(),
            module.as_os_str(),
            "--trusted".as_ref(),
            public.as_os_str(),
        ])
    };
    let (ok, text) = inspect("trusted");
    assert!(ok && text.contains(", verified"), "{text}");
    let (ok, text) = inspect("other");
    assert!(
        !ok && text.contains("which is none of the --trusted keys"),
        "{text}"
    );

    // Only components are signed: a core module or a stray file is refused.
    let core = path("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write core module");
    let key = path("trusted").join("policy-signing.key");
    let (ok, text) = ehrgate(&[
        "policy".as_ref(),
        "sign".as_ref(),
        core.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
    ]);
    assert!(
        !ok && text.contains("is a core WebAssembly module, not a component"),
        "{text}"
    );
    assert!(!path("core.wasm.sig").exists());

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
fn a_new_policy_from_the_template_passes_its_unit_tests_builds_passes_its_cases_and_inspects() {
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
    // Its unit tests run natively, as the template's Cargo.toml says.
    let unit_tests = Command::new(&cargo)
        .current_dir(&crate_dir)
        .args(["test", "--target-dir"])
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("cargo test");
    let unit_output = String::from_utf8_lossy(&unit_tests.stdout);
    assert!(
        unit_tests.status.success() && unit_output.contains("test result: ok. 4 passed"),
        "{unit_output}\n{}",
        String::from_utf8_lossy(&unit_tests.stderr)
    );
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
        text.contains("world    ehrgate:policy/policy@0.1.1"),
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
