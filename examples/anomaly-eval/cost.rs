//! What the care-team file costs: the module's config is parsed on every fresh instance, so
//! a large `care_teams` is paid on every request. Measures init + evaluate of one read by a
//! user on no team (a full scan) for files of growing size, in both entry shapes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ehrgate::engine::{Interaction, PolicyEngine, PolicySpec, Principal, Request, SandboxSettings};
use ehrgate::state::MemoryState;
use serde_json::{Value, json};

use crate::report::Table;

const RUNS: usize = 200;

fn read() -> Request {
    Request {
        id: "cost".into(),
        time_ms: crate::hospital::WEEK_START + 10 * crate::hospital::HOUR,
        source_address: "10.0.0.1".into(),
        method: "GET".into(),
        path: "/Patient/pat-99999".into(),
        route: "ehr".into(),
        upstream: "ehr".into(),
        interaction: Interaction::Read,
        resource_type: Some("Patient".into()),
        resource_id: Some("pat-99999".into()),
        version_id: None,
        operation: None,
        params: vec![],
        headers: vec![],
        principal: Some(Principal {
            subject: "dr-nobody".into(),
            client_id: "ward-app".into(),
            issuer: "https://idp.hospital.example".into(),
            roles: vec!["physician".into()],
            scopes: vec!["user/*.rs".into()],
            launch_patient: None,
            launch_encounter: None,
            fhir_user: Some("Practitioner/dr-nobody".into()),
            purpose_of_use: vec!["TREAT".into()],
        }),
        break_glass_reason: None,
        patients: vec!["pat-99999".into()],
        entries: vec![],
        body: None,
    }
}

/// `users` entries of `per_user` patients each.
fn per_user(users: usize, per_user: usize) -> Value {
    let teams: serde_json::Map<String, Value> = (0..users)
        .map(|u| {
            let patients: Vec<String> = (0..per_user)
                .map(|p| format!("pat-{:05}", (u * 7 + p * 13) % 20_000))
                .collect();
            (format!("Practitioner/dr-{u:05}"), json!(patients))
        })
        .collect();
    json!({ "care_teams": teams })
}

/// `teams` team entries of `members` users and `patients` patients each.
fn teams(teams: usize, members: usize, patients: usize) -> Value {
    let entries: serde_json::Map<String, Value> = (0..teams)
        .map(|t| {
            let members: Vec<String> = (0..members)
                .map(|m| format!("Practitioner/dr-{t:03}-{m:02}"))
                .collect();
            let patients: Vec<String> = (0..patients)
                .map(|p| format!("pat-{:05}", (t * patients + p) % 20_000))
                .collect();
            (
                format!("team-{t:03}"),
                json!({"members": members, "patients": patients}),
            )
        })
        .collect();
    json!({ "care_teams": entries })
}

pub fn measure() -> anyhow::Result<()> {
    // A roomy deadline so large files are measured rather than cut off; the table says
    // whether each fits the default 5 ms.
    let settings = SandboxSettings {
        deadline_ms: 1000,
        ..SandboxSettings::default()
    };
    let default_deadline = SandboxSettings::default().deadline_ms;
    let engine = PolicyEngine::new(settings, Arc::new(MemoryState::default()))?;
    let path = PathBuf::from(ehrgate::BUILT_GUESTS_DIR).join("anomaly.wasm");
    let cases: Vec<(String, usize, usize, Value)> = vec![
        ("none".into(), 0, 0, json!({})),
        ("user: [patients]".into(), 100, 100 * 26, per_user(100, 25)),
        ("user: [patients]".into(), 500, 500 * 26, per_user(500, 25)),
        (
            "user: [patients]".into(),
            2000,
            2000 * 26,
            per_user(2000, 25),
        ),
        (
            "user: [patients]".into(),
            8000,
            8000 * 26,
            per_user(8000, 25),
        ),
        (
            "team: {members, patients}".into(),
            10,
            10 * 80,
            teams(10, 20, 60),
        ),
        (
            "team: {members, patients}".into(),
            50,
            50 * 80,
            teams(50, 20, 60),
        ),
        (
            "team: {members, patients}".into(),
            200,
            200 * 80,
            teams(200, 20, 60),
        ),
    ];
    let mut rows = Vec::new();
    for (shape, entries, ids, config) in cases {
        let config = config.to_string();
        let bytes = config.len();
        let policy = engine.load(&PolicySpec {
            name: "anomaly".into(),
            path: path.clone(),
            config,
            budget: None,
            response_headers: Default::default(),
        })?;
        let request = read();
        for _ in 0..20 {
            policy
                .evaluate(&request)
                .map_err(|f| anyhow::anyhow!("{f}"))?;
        }
        let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let started = Instant::now();
            policy
                .evaluate(&request)
                .map_err(|f| anyhow::anyhow!("{f}"))?;
            times.push(started.elapsed());
        }
        times.sort();
        let mean = times.iter().sum::<Duration>() / RUNS as u32;
        let p99 = times[RUNS * 99 / 100 - 1];
        rows.push(vec![
            shape,
            entries.to_string(),
            ids.to_string(),
            format!("{:.0}", bytes as f64 / 1024.0),
            format!("{:.0}", mean.as_secs_f64() * 1e6),
            format!("{:.0}", p99.as_secs_f64() * 1e6),
            if p99 < Duration::from_millis(default_deadline) {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
        ]);
    }
    let table = Table {
        header: vec![
            "care_teams shape".to_owned(),
            "entries".to_owned(),
            "ids".to_owned(),
            "KB".to_owned(),
            "mean µs".to_owned(),
            "p99 µs".to_owned(),
            format!("fits {default_deadline} ms"),
        ],
        rows,
    };
    println!("{}\n\n{}", table.plain(), table.markdown());
    Ok(())
}
