//! The sandbox contains misbehaving guests: each failure becomes a fault with its cause,
//! and the same module serves the next request normally.

use std::io::Write;

use crate::support::{
    chaos_request, engine, engine_with, guest, load, patient_search, test_settings,
};
use ehrgate::engine::{LoadError, PolicyFault, PolicySpec, SandboxSettings};

fn fault_of(behaviour: &str) -> PolicyFault {
    let engine = engine();
    let chaos = load(&engine, "chaos", "chaos", "{}");
    let fault = match chaos.evaluate(&chaos_request(behaviour)) {
        Ok(decision) => panic!("`{behaviour}` was contained as a decision: {decision:?}"),
        Err(fault) => fault,
    };
    // The module keeps serving: a fresh instance per request, nothing poisoned.
    let next = chaos
        .evaluate(&patient_search())
        .expect("next request evaluates");
    assert_eq!(next.denial, None, "after `{behaviour}`");
    fault
}

#[test]
fn an_infinite_loop_hits_the_deadline() {
    let settings = SandboxSettings {
        deadline_ms: 20,
        ..test_settings()
    };
    let engine = engine_with(settings);
    let chaos = load(&engine, "chaos", "chaos", "{}");
    let started = std::time::Instant::now();
    assert_eq!(
        chaos.evaluate(&chaos_request("loop")),
        Err(PolicyFault::Deadline(20))
    );
    // Generous bound: the point is that it stopped, not how fast.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(chaos.evaluate(&patient_search()).is_ok());
}

#[test]
fn unbounded_memory_growth_hits_the_memory_limit() {
    let fault = fault_of("grow");
    assert!(matches!(fault, PolicyFault::MemoryLimit(_)), "{fault:?}");
    assert_eq!(fault.kind(), "memory-limit");
}

#[test]
fn deep_recursion_overflows_the_stack() {
    assert_eq!(fault_of("recurse"), PolicyFault::StackOverflow);
}

#[test]
fn a_panic_is_reported_with_its_message() {
    match fault_of("panic") {
        PolicyFault::Panic(message) => {
            assert!(
                message.contains("chaos fixture panicked on request"),
                "{message}"
            )
        }
        other => panic!("expected a panic fault, got {other:?}"),
    }
}

#[test]
fn a_huge_output_string_is_refused_at_the_boundary() {
    // An 8 MiB deny message: refused while being copied out, before the host allocates it.
    let cap = test_settings().hostcall_bytes;
    assert_eq!(fault_of("huge"), PolicyFault::TooMuchData(cap));
}

#[test]
fn a_huge_host_call_is_refused() {
    let cap = test_settings().hostcall_bytes;
    assert_eq!(fault_of("huge-log"), PolicyFault::TooMuchData(cap));
}

#[test]
fn an_over_long_message_within_the_byte_cap_is_bad_output() {
    let settings = SandboxSettings {
        hostcall_bytes: 64 << 20,
        ..test_settings()
    };
    let engine = engine_with(settings);
    let chaos = load(&engine, "chaos", "chaos", "{}");
    match chaos.evaluate(&chaos_request("huge")) {
        Err(PolicyFault::BadOutput(reason)) => {
            assert!(reason.contains("8388608 bytes"), "{reason}")
        }
        other => panic!("expected bad output, got {other:?}"),
    }
}

#[test]
fn decisions_outside_the_contract_are_bad_output() {
    for behaviour in ["bad-status", "bad-rule", "bad-header"] {
        let fault = fault_of(behaviour);
        assert!(
            matches!(fault, PolicyFault::BadOutput(_)),
            "{behaviour}: {fault:?}"
        );
    }
}

#[test]
fn wasi_calls_trap_because_the_sandbox_has_no_wasi() {
    match fault_of("stdout") {
        PolicyFault::Trap(cause) => assert!(cause.contains("wasi:"), "{cause}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn no_guest_state_survives_between_requests() {
    let engine = engine();
    let chaos = load(&engine, "chaos", "chaos", "{}");
    for _ in 0..3 {
        let decision = chaos.evaluate(&chaos_request("static-counter")).unwrap();
        assert_eq!(decision.findings[0].detail, "1");
    }
}

#[test]
fn the_request_crosses_the_boundary_intact() {
    let engine = engine();
    let chaos = load(&engine, "chaos", "chaos", "{}");
    let decision = chaos.evaluate(&chaos_request("echo")).unwrap();
    assert_eq!(
        decision.findings[0].detail,
        "GET /Observation Interaction::SearchType Observation [patient=pat-123&category=laboratory&_count=50] \
         [pat-123] dr-adams|ward-app|launch/patient patient/Observation.rs patient/Patient.r \
         openid fhirUser|pat-123"
    );
}

#[test]
fn a_module_importing_what_the_host_lacks_is_refused_at_load() {
    let engine = engine();
    let spec = PolicySpec {
        name: "bad".into(),
        path: guest("bad-import"),
        config: "{}".into(),
        budget: None,
        response_headers: Default::default(),
    };
    match engine.load(&spec) {
        Err(LoadError::UnknownImport { module, import }) => {
            assert_eq!(module, "bad");
            assert!(import.starts_with("ehrgate:fixture/exfiltrate"), "{import}");
        }
        Err(other) => panic!("expected an unknown-import error, got {other}"),
        Ok(_) => panic!("a module with a foreign import loaded"),
    }
    let message = engine
        .load(&spec)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("help:"), "{message}");
}

#[test]
fn a_module_that_rejects_its_config_is_refused_at_load() {
    let engine = engine();
    for (config, expected) in [
        (r#"{"reject": true}"#, "refuses its config"),
        (r#"{"verdict": "maybe"}"#, "`verdict` is `maybe`"),
        (r#"{"verdikt": "allow"}"#, "unknown field `verdikt`"),
        ("not json", "invalid config"),
    ] {
        let spec = PolicySpec {
            name: "chaos".into(),
            path: guest("chaos"),
            config: config.into(),
            budget: None,
            response_headers: Default::default(),
        };
        match engine.load(&spec) {
            Err(LoadError::ConfigRejected { module, reason }) => {
                assert_eq!(module, "chaos");
                assert!(reason.contains(expected), "{config}: {reason}");
            }
            Err(other) => panic!("{config}: expected a config rejection, got {other}"),
            Ok(_) => panic!("{config}: accepted"),
        }
    }
    // The same engine still loads and runs a good config.
    let chaos = load(&engine, "chaos", "chaos", "{}");
    assert!(chaos.evaluate(&patient_search()).is_ok());
}

#[test]
fn a_file_that_is_not_a_component_is_refused_at_load() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"\0asm\x01\0\0\0garbage").unwrap();
    let spec = PolicySpec {
        name: "junk".into(),
        path: file.path().to_owned(),
        config: "{}".into(),
        budget: None,
        response_headers: Default::default(),
    };
    let error = engine().load(&spec).err().expect("junk is refused");
    assert!(matches!(error, LoadError::Compile { .. }), "{error}");
    let missing = PolicySpec {
        path: "/nonexistent/policy.wasm".into(),
        ..spec
    };
    let error = engine()
        .load(&missing)
        .err()
        .expect("a missing file is refused");
    assert!(matches!(error, LoadError::Read { .. }), "{error}");
}

#[test]
fn precompiled_modules_are_cached_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let settings = SandboxSettings {
        cache_dir: Some(cache.clone()),
        ..test_settings()
    };
    let first = engine_with(settings.clone());
    let chaos = load(&first, "chaos", "chaos", "{}");
    assert!(chaos.evaluate(&patient_search()).is_ok());
    let artifacts: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert_eq!(artifacts.len(), 1);
    let name = artifacts[0].file_name().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&chaos.sha256) && name.ends_with(".cwasm"),
        "{name}"
    );

    // A second engine with the same settings loads the artifact.
    let second = engine_with(settings.clone());
    assert!(
        load(&second, "chaos", "chaos", "{}")
            .evaluate(&patient_search())
            .is_ok()
    );

    // A corrupted artifact is replaced, not trusted.
    std::fs::write(artifacts[0].path(), b"corrupt").unwrap();
    let third = engine_with(settings);
    assert!(
        load(&third, "chaos", "chaos", "{}")
            .evaluate(&patient_search())
            .is_ok()
    );
    assert_ne!(std::fs::read(artifacts[0].path()).unwrap(), b"corrupt");
}

#[test]
fn a_cache_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let settings = SandboxSettings {
        cache_dir: Some(dir.path().to_owned()),
        ..test_settings()
    };
    let error = ehrgate::engine::PolicyEngine::new(
        settings,
        std::sync::Arc::new(ehrgate::state::MemoryState::default()),
    )
    .err()
    .expect("refused");
    assert!(
        error.to_string().contains("writable by group or others"),
        "{error}"
    );
}
