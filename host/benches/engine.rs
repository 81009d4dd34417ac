//! Policy evaluation cost: one module and a chain of three on a realistic request, a fresh
//! instance per evaluation (store + instantiate + init + evaluate + drop), run on the
//! calling thread (the engine's own work); and the chain of three once more through the
//! engine pool, as the gateway runs it (hand-off to a policy thread and back included).
//!
//! Criterion drives the runs; every single evaluation is also timed so the bench can print
//! the median and the 99th percentile per evaluation, which criterion does not report.
//!
//!     cargo bench -p ehrgate --bench engine

#![allow(
    clippy::panic,
    reason = "a benchmark that cannot set up has nothing to report"
)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::Criterion;
use ehrgate::engine::{
    ChainLink, Header, Interaction, Mode, Param, PolicyChain, PolicyEngine, PolicySpec, Principal,
    Request, SandboxSettings,
};
use ehrgate::state::MemoryState;

/// Per-evaluation samples by benchmark name, for the percentile table.
type Samples = Arc<Mutex<Vec<(String, usize, Vec<Duration>)>>>;

fn guest(name: &str) -> PathBuf {
    PathBuf::from(ehrgate::BUILT_GUESTS_DIR).join(format!("{name}.wasm"))
}

fn request() -> Request {
    let param = |name: &str, value: &str| Param {
        name: name.into(),
        value: value.into(),
    };
    let header = |name: &str, value: &str| Header {
        name: name.into(),
        value: value.into(),
    };
    Request {
        id: "0b6c5d1e-8f7a-4c1b-9a0e-3f2d1c4b5a69".into(),
        time_ms: 1_767_225_600_000,
        source_address: "10.20.30.40".into(),
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
            param("patient", "pat-123"),
            param("category", "laboratory"),
            param("date", "ge2025-01-01"),
            param("_count", "50"),
        ],
        headers: vec![
            header("accept", "application/fhir+json"),
            header("user-agent", "fhirclient/4.2"),
        ],
        principal: Some(Principal {
            subject: "dr-adams".into(),
            client_id: "ward-app".into(),
            issuer: "https://idp.hospital.example".into(),
            roles: vec!["clinician".into()],
            scopes: vec![
                "launch/patient".into(),
                "patient/Observation.rs".into(),
                "patient/Patient.r".into(),
                "patient/Condition.rs".into(),
            ],
            launch_patient: Some("pat-123".into()),
            launch_encounter: None,
            fhir_user: Some("Practitioner/dr-adams".into()),
            purpose_of_use: vec!["TREAT".into()],
        }),
        break_glass_reason: None,
        patients: vec!["pat-123".into()],
        entries: vec![],
        body: None,
    }
}

fn engine() -> PolicyEngine {
    PolicyEngine::new(SandboxSettings::default(), Arc::new(MemoryState::default()))
        .unwrap_or_else(|e| panic!("engine: {e:#}"))
}

fn link(engine: &PolicyEngine, name: &str, crate_name: &str, config: &str) -> ChainLink {
    let spec = PolicySpec {
        name: name.into(),
        path: guest(crate_name),
        config: config.into(),
        budget: None,
        response_headers: Default::default(),
    };
    let policy = engine
        .load(&spec)
        .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    ChainLink {
        policy,
        mode: Mode::Enforce,
    }
}

/// The chains measured: (name, modules, through the engine pool).
fn chains(engine: &PolicyEngine) -> Vec<(&'static str, PolicyChain, bool)> {
    let config = r#"{"findings":[{"rule_id":"bench.note","severity":"info","detail":"ok"}]}"#;
    let least_privilege = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/policies/least-privilege.json"),
    )
    .unwrap_or_else(|e| panic!("example config: {e}"));
    vec![
        (
            "one policy",
            PolicyChain::new(vec![link(engine, "a", "chaos", config)]),
            false,
        ),
        (
            "chain of three",
            PolicyChain::new(vec![
                link(engine, "a", "chaos", config),
                link(engine, "b", "chaos", config),
                link(engine, "c", "chaos", config),
            ]),
            false,
        ),
        (
            "chain of three, through the engine pool",
            PolicyChain::new(vec![
                link(engine, "a", "chaos", config),
                link(engine, "b", "chaos", config),
                link(engine, "c", "chaos", config),
            ]),
            true,
        ),
        (
            "least-privilege, example config",
            PolicyChain::new(vec![link(
                engine,
                "least-privilege",
                "least_privilege",
                &least_privilege,
            )]),
            false,
        ),
        (
            "least-privilege, minimal config",
            PolicyChain::new(vec![link(
                engine,
                "least-privilege",
                "least_privilege",
                "{}",
            )]),
            false,
        ),
    ]
}

fn bench_chains(c: &mut Criterion, samples: &Samples) {
    let engine = engine();
    let request = request();
    let mut group = c.benchmark_group("evaluate");
    for (name, chain, through_pool) in chains(&engine) {
        let modules = chain.links().len();
        let mut collected = Vec::new();
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let started = Instant::now();
                    let outcome = if through_pool {
                        chain.evaluate_blocking(&request)
                    } else {
                        chain.evaluate_in_place(&request)
                    };
                    let elapsed = started.elapsed();
                    std::hint::black_box(outcome);
                    total += elapsed;
                    if collected.len() < 2_000_000 {
                        collected.push(elapsed);
                    }
                }
                total
            })
        });
        if let Ok(mut all) = samples.lock() {
            all.push((name.to_owned(), modules, collected));
        }
    }
    group.finish();
}

fn print_table(samples: &Samples) {
    let Ok(mut all) = samples.lock() else { return };
    println!();
    println!(
        "| chain | modules | evaluations | median | p99 | median per module | p99 per module |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, modules, durations) in all.iter_mut() {
        durations.sort_unstable();
        if durations.is_empty() {
            continue;
        }
        let at = |q: f64| durations[((durations.len() as f64 - 1.0) * q).round() as usize];
        let (median, p99) = (at(0.5), at(0.99));
        let per = *modules as u32;
        println!(
            "| {name} | {modules} | {} | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs |",
            durations.len(),
            micros(median),
            micros(p99),
            micros(median / per),
            micros(p99 / per),
        );
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let samples: Samples = Arc::default();
    let mut criterion = Criterion::default()
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    bench_chains(&mut criterion, &samples);
    criterion.final_summary();
    print_table(&samples);
}
