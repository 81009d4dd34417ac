//! Replays the week through the real engine and the compiled `anomaly` module, in time
//! order, reloading the module with a fresh care-team file every refresh period as an
//! operator's export job with SIGHUP would.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ehrgate::engine::{
    ConfiguredPolicy, FindingSeverity, Interaction, ModuleDecision, Param, PolicyEngine,
    PolicySpec, Principal, Request, SandboxSettings,
};
use ehrgate::state::MemoryState;

use crate::config::eval_config;
use crate::hospital::{Hospital, Role};
use crate::traffic::{Action, Event, Kind};

/// What the module did with one request.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Band {
    /// No finding above severity info.
    Allow,
    /// Findings recorded, score below the review band.
    Record,
    /// Allowed with an `anomaly.review` finding.
    Review,
    /// Refused with 403 `anomaly.deny`.
    Deny,
}

/// A request the module did not decide: the engine's fault (deadline, ...), which the
/// gateway turns into a `policy-error` refusal.
pub struct Fault {
    pub request: usize,
    pub reason: String,
}

pub struct Outcome {
    /// None when the engine faulted (see [`Replay::faults`]).
    pub band: Option<Band>,
    /// The detectors that fired, as [`Kind`] bits.
    pub fired: u16,
}

pub struct Replay {
    pub outcomes: Vec<Outcome>,
    pub faults: Vec<Fault>,
    pub evaluation_time: Duration,
    pub slowest: Duration,
    pub reloads: usize,
    pub largest_config_bytes: usize,
}

fn module_path() -> PathBuf {
    PathBuf::from(ehrgate::BUILT_GUESTS_DIR).join("anomaly.wasm")
}

pub fn replay(
    hospital: &Hospital,
    events: &[Event],
    refresh_ms: u64,
    deadline_ms: u64,
) -> anyhow::Result<Replay> {
    let settings = SandboxSettings {
        deadline_ms,
        ..SandboxSettings::default()
    };
    let engine = PolicyEngine::new(settings, Arc::new(MemoryState::default()))?;
    let mut policy: Option<(u64, std::sync::Arc<ConfiguredPolicy>)> = None;
    let mut replay = Replay {
        outcomes: Vec::with_capacity(events.len()),
        faults: Vec::new(),
        evaluation_time: Duration::ZERO,
        slowest: Duration::ZERO,
        reloads: 0,
        largest_config_bytes: 0,
    };
    for (index, event) in events.iter().enumerate() {
        let period = event.time / refresh_ms;
        if policy.as_ref().is_none_or(|(loaded, _)| *loaded != period) {
            let config = eval_config(hospital, period * refresh_ms).to_string();
            replay.largest_config_bytes = replay.largest_config_bytes.max(config.len());
            // The same name keeps the same state namespace across reloads, as in the gateway.
            let spec = PolicySpec {
                name: "anomaly".into(),
                path: module_path(),
                config,
                budget: None,
                response_headers: Default::default(),
            };
            let loaded = engine.load(&spec).with_context(|| {
                format!("loading {} (build the guests first)", spec.path.display())
            })?;
            policy = Some((period, loaded));
            replay.reloads += 1;
        }
        let Some((_, policy)) = &policy else {
            anyhow::bail!("no policy loaded");
        };
        let request = request(hospital, event, index);
        let started = Instant::now();
        let decided = policy.evaluate(&request);
        let elapsed = started.elapsed();
        replay.evaluation_time += elapsed;
        replay.slowest = replay.slowest.max(elapsed);
        match decided {
            Ok(decision) => replay.outcomes.push(outcome(&request, &decision)?),
            Err(fault) => {
                replay.faults.push(Fault {
                    request: index,
                    reason: fault.to_string(),
                });
                replay.outcomes.push(Outcome {
                    band: None,
                    fired: 0,
                });
            }
        }
    }
    Ok(replay)
}

fn outcome(request: &Request, decision: &ModuleDecision) -> anyhow::Result<Outcome> {
    let mut fired = 0;
    let mut review = false;
    for finding in &decision.findings {
        if finding.rule_id == "anomaly.review" {
            review = true;
        } else if finding.severity > FindingSeverity::Info
            && let Some(kind) = kind_of_rule(&finding.rule_id)
        {
            fired |= kind.bit();
        }
    }
    let band = match &decision.denial {
        Some(denial) if denial.rule_id == "anomaly.deny" => Band::Deny,
        Some(denial) => anyhow::bail!(
            "request {}: unexpected refusal {} `{}`: {}",
            request.id,
            denial.status,
            denial.rule_id,
            denial.message
        ),
        None if review => Band::Review,
        None if fired != 0 => Band::Record,
        None => Band::Allow,
    };
    Ok(Outcome {
        band: Some(band),
        fired,
    })
}

/// The detector behind a rule id.
pub fn kind_of_rule(rule_id: &str) -> Option<Kind> {
    Some(match rule_id {
        "anomaly.volume" => Kind::Volume,
        "anomaly.burst" => Kind::Burst,
        "anomaly.vip" => Kind::Vip,
        "anomaly.self-lookup" => Kind::SelfLookup,
        "anomaly.no-care-relationship" => Kind::NoCare,
        "anomaly.after-hours" => Kind::AfterHours,
        "anomaly.name-search" => Kind::NameSearch,
        "anomaly.break-glass-rate" => Kind::BreakGlass,
        _ => return None,
    })
}

/// The canonical request the gateway would build for `event`.
fn request(hospital: &Hospital, event: &Event, index: usize) -> Request {
    let staff = &hospital.staff[event.staff];
    let (method, path, interaction, resource_type, resource_id, operation, params, patients) =
        match &event.action {
            Action::Read(patient) => (
                "GET",
                format!("/Patient/{patient}"),
                Interaction::Read,
                Some("Patient"),
                Some(patient.clone()),
                None,
                vec![],
                vec![patient.clone()],
            ),
            Action::Search { resource, patient } => (
                "GET",
                format!("/{resource}"),
                Interaction::SearchType,
                Some(*resource),
                None,
                None,
                vec![param("patient", patient)],
                vec![patient.clone()],
            ),
            Action::NameSearch(search) => (
                "GET",
                "/Patient".to_owned(),
                Interaction::SearchType,
                Some("Patient"),
                None,
                None,
                search.iter().map(|(n, v)| param(n, v)).collect(),
                vec![],
            ),
            Action::Export => (
                "GET",
                "/$export".to_owned(),
                Interaction::Operation,
                None,
                None,
                Some("export".to_owned()),
                vec![],
                vec![],
            ),
        };
    let is_person = staff.role != Role::Export;
    Request {
        id: format!("eval-{index}"),
        time_ms: event.time,
        source_address: format!("10.20.{}.{}", event.staff / 200, event.staff % 200 + 1),
        method: method.into(),
        path,
        route: "ehr".into(),
        upstream: "ehr".into(),
        interaction,
        resource_type: resource_type.map(str::to_owned),
        resource_id,
        version_id: None,
        operation,
        params,
        headers: vec![],
        principal: Some(Principal {
            subject: staff.id.clone(),
            client_id: staff.role.client().into(),
            issuer: "https://idp.hospital.example".into(),
            roles: vec![staff.role.name().into()],
            scopes: vec![
                if is_person {
                    "user/*.rs"
                } else {
                    "system/*.rs"
                }
                .into(),
            ],
            launch_patient: None,
            launch_encounter: None,
            fhir_user: is_person.then(|| format!("Practitioner/{}", staff.id)),
            purpose_of_use: vec![if event.break_glass { "BTG" } else { "TREAT" }.into()],
        }),
        break_glass_reason: event.break_glass.then(|| "emergency".to_owned()),
        patients,
        entries: vec![],
        body: None,
    }
}

fn param(name: &str, value: &str) -> Param {
    Param {
        name: name.into(),
        value: value.into(),
    }
}
