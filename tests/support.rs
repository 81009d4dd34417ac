//! Shared helpers for the cross-component tests: paths to the built guest modules, engines
//! with test-friendly limits, and realistic canonical requests.

// Included with `#[path]` from the test binary, so submodule paths are spelled out.
#[path = "support/gateway.rs"]
pub mod gateway;
#[path = "support/http.rs"]
pub mod http;
#[path = "support/redis.rs"]
pub mod redis;
#[path = "support/tokens.rs"]
pub mod tokens;
#[path = "support/upstream.rs"]
pub mod upstream;

use std::path::PathBuf;
use std::sync::Arc;

use ehrgate::engine::{
    ConfiguredPolicy, Header, Interaction, Param, PolicyEngine, PolicySpec, Principal, Request,
    SandboxSettings,
};
use ehrgate::state::{BucketSpec, BucketStatus, MemoryState, StateBackend, StateError};

/// The path of a guest module built by `host/build.rs`, by crate name (`chaos`).
pub fn guest(crate_name: &str) -> PathBuf {
    let path = PathBuf::from(ehrgate::BUILT_GUESTS_DIR)
        .join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(
        path.exists(),
        "guest module `{}` is missing: build the workspace without EHRGATE_SKIP_GUEST_BUILD",
        path.display()
    );
    path
}

/// Sandbox settings for tests: the production defaults with a deadline roomy enough for the
/// unoptimized host side of debug builds (the deadline counts running time, so a loaded
/// machine no longer matters).
pub fn test_settings() -> SandboxSettings {
    SandboxSettings {
        deadline_ms: 200,
        ..SandboxSettings::default()
    }
}

/// An engine with in-memory state.
pub fn engine() -> PolicyEngine {
    engine_with(test_settings())
}

pub fn engine_with(settings: SandboxSettings) -> PolicyEngine {
    PolicyEngine::new(settings, Arc::new(MemoryState::default())).expect("engine starts")
}

/// Loads guest `crate_name` under `name` with `config` (JSON).
pub fn load(
    engine: &PolicyEngine,
    name: &str,
    crate_name: &str,
    config: &str,
) -> Arc<ConfiguredPolicy> {
    let spec = PolicySpec {
        name: name.to_owned(),
        path: guest(crate_name),
        config: config.to_owned(),
        budget: None,
        response_headers: Default::default(),
    };
    match engine.load(&spec) {
        Ok(policy) => policy,
        Err(e) => panic!("loading `{name}` failed: {e}"),
    }
}

/// A clinician's patient-scoped search, as the gateway would canonicalize it: the kind of
/// request policies see most.
pub fn patient_search() -> Request {
    Request {
        id: "req-0001".into(),
        time_ms: 1_767_225_600_000,
        source_address: "127.0.0.1".into(),
        method: "GET".into(),
        path: "/Observation".into(),
        route: "ehr".into(),
        upstream: "ehr".into(),
        interaction: Interaction::SearchType,
        resource_type: Some("Observation".into()),
        resource_id: None,
        version_id: None,
        operation: None,
        params: vec![
            Param {
                name: "patient".into(),
                value: "pat-123".into(),
            },
            Param {
                name: "category".into(),
                value: "laboratory".into(),
            },
            Param {
                name: "_count".into(),
                value: "50".into(),
            },
        ],
        headers: vec![
            Header {
                name: "accept".into(),
                value: "application/fhir+json".into(),
            },
            Header {
                name: "user-agent".into(),
                value: "fhirclient/4.2".into(),
            },
        ],
        principal: Some(Principal {
            subject: "dr-adams".into(),
            client_id: "ward-app".into(),
            issuer: "https://idp.hospital.example".into(),
            roles: vec!["clinician".into(), "physician".into()],
            scopes: vec![
                "launch/patient".into(),
                "patient/Observation.rs".into(),
                "patient/Patient.r".into(),
                "openid".into(),
                "fhirUser".into(),
            ],
            launch_patient: Some("pat-123".into()),
            launch_encounter: Some("enc-9".into()),
            fhir_user: Some("Practitioner/dr-adams".into()),
            purpose_of_use: vec!["TREAT".into()],
        }),
        break_glass_reason: None,
        patients: vec!["pat-123".into()],
        entries: vec![],
        body: None,
    }
}

/// `patient_search` with the chaos fixture's `x-chaos` header set to `behaviour`.
pub fn chaos_request(behaviour: &str) -> Request {
    let mut request = patient_search();
    request.headers.push(Header {
        name: "x-chaos".into(),
        value: behaviour.into(),
    });
    request
}

/// A backend whose every call fails, as an unreachable Redis would.
pub struct BrokenState;

impl StateBackend for BrokenState {
    fn take(&self, _: &str, _: BucketSpec, _: u64, _: u64) -> Result<BucketStatus, StateError> {
        Err(refused())
    }
    fn distinct_add(&self, _: &str, _: &str, _: u64, _: u64) -> Result<u32, StateError> {
        Err(refused())
    }
    fn distinct_count(&self, _: &str, _: u64, _: u64) -> Result<u32, StateError> {
        Err(refused())
    }
    fn counter_add(&self, _: &str, _: u64, _: u64, _: u64) -> Result<u64, StateError> {
        Err(refused())
    }
    fn take_all(
        &self,
        _: &[(String, BucketSpec)],
        _: u64,
        _: u64,
    ) -> Result<Vec<BucketStatus>, StateError> {
        Err(refused())
    }
}

fn refused() -> StateError {
    StateError::Unavailable("connection refused".into())
}
