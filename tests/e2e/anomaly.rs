//! The `anomaly` policy through the engine: every detector fires on its pattern and stays
//! quiet on normal traffic, signals combine into the score bands, state errors fail closed,
//! and the distinct-window and counter tables stay bounded under a million rotating keys.
//! Time is the request's `time_ms`: no test sleeps.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{BrokenState, guest, load, patient_search, test_settings};
use ehrgate::engine::{
    ConfiguredPolicy, FindingSeverity, Interaction, ModuleDecision, Param, PolicyEngine,
    PolicySpec, Request,
};
use ehrgate::state::{MemoryState, MemoryStateLimits, StateBackend};

/// Monday 2026-01-05 10:00:00 UTC.
const MONDAY_10_UTC: u64 = 1_767_607_200_000;
const MINUTE: u64 = 60_000;
const HOUR: u64 = 3_600_000;

fn anomaly(config: &str) -> (PolicyEngine, Arc<ConfiguredPolicy>) {
    let engine = PolicyEngine::new(test_settings(), Arc::new(MemoryState::default()))
        .expect("engine starts");
    let policy = load(&engine, "anomaly", "anomaly", config);
    (engine, policy)
}

/// `user` (fhirUser `Practitioner/<user>`, roles `roles`) reads `Patient/<patient>`.
fn read(user: &str, roles: &[&str], patient: &str, time_ms: u64) -> Request {
    let mut request = patient_search();
    request.time_ms = time_ms;
    request.path = format!("/Patient/{patient}");
    request.interaction = Interaction::Read;
    request.resource_type = Some("Patient".into());
    request.resource_id = Some(patient.into());
    request.params.clear();
    request.patients = vec![patient.into()];
    if let Some(principal) = &mut request.principal {
        principal.subject = user.into();
        principal.fhir_user = Some(format!("Practitioner/{user}"));
        principal.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        principal.launch_patient = None;
    }
    request
}

/// `user` searches `Patient?<param>=<value>`.
fn patient_search_by(
    user: &str,
    roles: &[&str],
    param: &str,
    value: &str,
    time_ms: u64,
) -> Request {
    let mut request = read(user, roles, "x", time_ms);
    request.path = "/Patient".into();
    request.interaction = Interaction::SearchType;
    request.resource_id = None;
    request.patients.clear();
    request.params = vec![Param {
        name: param.into(),
        value: value.into(),
    }];
    request
}

fn with_break_glass(mut request: Request) -> Request {
    request.break_glass_reason = Some("unconscious patient in resus".into());
    if let Some(principal) = &mut request.principal {
        principal.purpose_of_use = vec!["BTG".into()];
    }
    request
}

fn decide(policy: &Arc<ConfiguredPolicy>, request: &Request) -> ModuleDecision {
    policy.evaluate(request).expect("evaluates")
}

/// The rule ids of the findings, in order.
fn rules(decision: &ModuleDecision) -> Vec<&str> {
    decision
        .findings
        .iter()
        .map(|f| f.rule_id.as_str())
        .collect()
}

/// Whether `rule` was raised above severity info (a detector firing, not a record).
fn fired(decision: &ModuleDecision, rule: &str) -> bool {
    decision
        .findings
        .iter()
        .any(|f| f.rule_id == rule && f.severity > FindingSeverity::Info)
}

fn quiet(decision: &ModuleDecision) {
    assert!(decision.denial.is_none(), "{decision:?}");
    assert!(decision.findings.is_empty(), "{decision:?}");
    assert_eq!(decision.risk_score, 0);
}

#[test]
fn volume_fires_above_fifty_distinct_patients_in_an_hour_and_denies() {
    let (_engine, policy) = anomaly("{}");
    // Normal: 30 patients over the hour, each reopened several times.
    for round in 0..4u64 {
        for patient in 0..30u64 {
            let time = MONDAY_10_UTC + round * 15 * MINUTE + patient * 20_000;
            quiet(&decide(
                &policy,
                &read("dr-normal", &["physician"], &format!("p{patient}"), time),
            ));
        }
    }
    // Trawling: one new chart a minute (too slow for the burst detector).
    for patient in 0..50u64 {
        let decision = decide(
            &policy,
            &read(
                "dr-trawl",
                &["physician"],
                &format!("p{patient}"),
                MONDAY_10_UTC + patient * MINUTE,
            ),
        );
        assert!(!fired(&decision, "anomaly.volume"), "patient {patient}");
    }
    let decision = decide(
        &policy,
        &read(
            "dr-trawl",
            &["physician"],
            "p50",
            MONDAY_10_UTC + 50 * MINUTE,
        ),
    );
    assert!(fired(&decision, "anomaly.volume"), "{decision:?}");
    assert!(!fired(&decision, "anomaly.burst"));
    let denial = decision
        .denial
        .as_ref()
        .expect("volume weighs 80: deny band");
    assert_eq!(
        (denial.status, denial.rule_id.as_str()),
        (403, "anomaly.deny")
    );
    assert_eq!(decision.risk_score, 80);
    // An hour after the second chart, the first two have left the window: reopening the
    // first makes 50 again, quiet.
    let later = decide(
        &policy,
        &read(
            "dr-trawl",
            &["physician"],
            "p0",
            MONDAY_10_UTC + 61 * MINUTE + 1,
        ),
    );
    assert!(!fired(&later, "anomaly.volume"), "{later:?}");
}

#[test]
fn volume_respects_role_limits_and_exempt_roles() {
    let config =
        r#"{"volume": {"role_limits": {"him-coder": 200}, "exempt_roles": ["bulk-export"]}}"#;
    let (_engine, policy) = anomaly(config);
    for patient in 0..120u64 {
        let time = MONDAY_10_UTC + patient * 25_000;
        quiet(&decide(
            &policy,
            &read("coder", &["him-coder"], &format!("p{patient}"), time),
        ));
        quiet(&decide(
            &policy,
            &read("exporter", &["bulk-export"], &format!("p{patient}"), time),
        ));
    }
}

#[test]
fn burst_fires_on_fast_trawling_before_the_hourly_limit() {
    let (_engine, policy) = anomaly("{}");
    // 21 charts spread over 30 minutes: normal.
    for patient in 0..21u64 {
        let time = MONDAY_10_UTC + patient * 90_000;
        quiet(&decide(
            &policy,
            &read("dr-steady", &["physician"], &format!("p{patient}"), time),
        ));
    }
    // 21 charts in 100 seconds: the 21st is a burst.
    for patient in 0..20u64 {
        let time = MONDAY_10_UTC + patient * 5_000;
        quiet(&decide(
            &policy,
            &read("dr-script", &["physician"], &format!("p{patient}"), time),
        ));
    }
    let decision = decide(
        &policy,
        &read("dr-script", &["physician"], "p20", MONDAY_10_UTC + 100_000),
    );
    assert_eq!(rules(&decision), ["anomaly.burst"]);
    assert_eq!(
        decision.denial.map(|d| d.rule_id).as_deref(),
        Some("anomaly.deny")
    );
}

#[test]
fn vip_access_without_a_care_relationship_is_flagged_for_review() {
    let config = r#"{
        "vip": {"patients": ["pat-vip"]},
        "care_teams": {"Practitioner/dr-team": ["pat-vip", "pat-1"]},
        "care_relationship": {"weight": 0}
    }"#;
    let (_engine, policy) = anomaly(config);
    let snoop = decide(
        &policy,
        &read("dr-other", &["physician"], "pat-vip", MONDAY_10_UTC),
    );
    assert!(fired(&snoop, "anomaly.vip"));
    assert_eq!(
        rules(&snoop)[0],
        "anomaly.review",
        "60 is in the review band"
    );
    assert!(snoop.denial.is_none());
    assert_eq!(snoop.risk_score, 60);

    // The VIP's own care team: recorded at severity info, no score, no review.
    let team = decide(
        &policy,
        &read("dr-team", &["physician"], "pat-vip", MONDAY_10_UTC),
    );
    assert_eq!(rules(&team), ["anomaly.vip"]);
    assert_eq!(team.findings[0].severity, FindingSeverity::Info);
    assert_eq!(team.risk_score, 0);
    // An ordinary patient: nothing.
    quiet(&decide(
        &policy,
        &read("dr-team", &["physician"], "pat-1", MONDAY_10_UTC),
    ));
}

#[test]
fn self_lookup_fires_on_the_callers_own_record() {
    let config = r#"{"self_lookup": {"staff_patients": {"Practitioner/dr-adams": ["pat-77"]}}}"#;
    let (_engine, policy) = anomaly(config);
    let own = decide(
        &policy,
        &read("dr-adams", &["physician"], "pat-77", MONDAY_10_UTC),
    );
    assert!(fired(&own, "anomaly.self-lookup"), "{own:?}");
    assert_eq!(own.risk_score, 60);
    quiet(&decide(
        &policy,
        &read("dr-adams", &["physician"], "pat-78", MONDAY_10_UTC),
    ));
    quiet(&decide(
        &policy,
        &read("dr-baker", &["physician"], "pat-77", MONDAY_10_UTC),
    ));

    // Matching ids, when the operator says ids are shared across resource types.
    let (_engine, policy) = anomaly(r#"{"self_lookup": {"match_ids": true}}"#);
    let own = decide(
        &policy,
        &read("emp-1001", &["nurse"], "emp-1001", MONDAY_10_UTC),
    );
    assert!(fired(&own, "anomaly.self-lookup"));
    // A patient reading their own record through a portal app is not self-lookup.
    let mut portal = read("emp-1001", &[], "emp-1001", MONDAY_10_UTC);
    if let Some(p) = &mut portal.principal {
        p.fhir_user = Some("Patient/emp-1001".into());
    }
    quiet(&decide(&policy, &portal));
}

#[test]
fn no_care_relationship_fires_outside_the_care_teams() {
    let config = r#"{
        "care_teams": {
            "Practitioner/dr-adams": ["pat-1", "pat-2"],
            "ward-4b": {"members": ["Practitioner/nurse-kim", "dr-baker"], "patients": ["pat-3"]}
        },
        "care_relationship": {"exempt_roles": ["registration"]}
    }"#;
    let (_engine, policy) = anomaly(config);
    quiet(&decide(
        &policy,
        &read("dr-adams", &["physician"], "pat-2", MONDAY_10_UTC),
    ));
    quiet(&decide(
        &policy,
        &read("nurse-kim", &["nurse"], "pat-3", MONDAY_10_UTC),
    ));
    // Team members may be named by token subject as well as by fhirUser.
    quiet(&decide(
        &policy,
        &read("dr-baker", &["physician"], "pat-3", MONDAY_10_UTC),
    ));

    let stranger = decide(
        &policy,
        &read("dr-adams", &["physician"], "pat-3", MONDAY_10_UTC),
    );
    assert!(fired(&stranger, "anomaly.no-care-relationship"));
    assert!(stranger.findings[1].detail.contains("pat-3"));
    assert_eq!(stranger.risk_score, 45);
    assert_eq!(rules(&stranger)[0], "anomaly.review");

    // A search across two patients names the unexplained one.
    let mut search = read("dr-adams", &["physician"], "pat-1", MONDAY_10_UTC);
    search.interaction = Interaction::SearchType;
    search.patients = vec!["pat-1".into(), "pat-9".into()];
    let decision = decide(&policy, &search);
    assert!(
        decision.findings[1].detail.ends_with("pat-9"),
        "{decision:?}"
    );

    // Exempt roles and break-the-glass are not checked.
    quiet(&decide(
        &policy,
        &read("clerk-1", &["registration"], "pat-3", MONDAY_10_UTC),
    ));
    quiet(&decide(
        &policy,
        &with_break_glass(read("dr-adams", &["physician"], "pat-5", MONDAY_10_UTC)),
    ));
}

#[test]
fn after_hours_fires_for_day_shift_roles_outside_their_hours() {
    // Working hours 07:00-19:00 in UTC+1: 10:00 UTC is 11:00 local.
    let config = r#"{"after_hours": {"roles": ["outpatient"], "start": "07:00", "end": "19:00",
                                      "utc_offset_minutes": 60}}"#;
    let (_engine, policy) = anomaly(config);
    quiet(&decide(
        &policy,
        &read("dr-clinic", &["outpatient"], "p1", MONDAY_10_UTC),
    ));
    // 18:59 local is inside, 19:00 outside.
    quiet(&decide(
        &policy,
        &read(
            "dr-clinic",
            &["outpatient"],
            "p1",
            MONDAY_10_UTC + 7 * HOUR + 59 * MINUTE,
        ),
    ));
    let evening = decide(
        &policy,
        &read("dr-clinic", &["outpatient"], "p1", MONDAY_10_UTC + 8 * HOUR),
    );
    assert!(fired(&evening, "anomaly.after-hours"));
    assert!(
        evening.findings[0].detail.contains("at 19:00 local"),
        "{evening:?}"
    );
    // Weak alone: recorded, below the review band.
    assert_eq!(evening.risk_score, 20);
    assert!(evening.denial.is_none() && !rules(&evening).contains(&"anomaly.review"));

    let night = decide(
        &policy,
        &read(
            "dr-clinic",
            &["outpatient"],
            "p1",
            MONDAY_10_UTC + 16 * HOUR,
        ),
    );
    assert!(night.findings[0].detail.contains("at 03:00 local"));
    // Saturday 11:00 local.
    let saturday = decide(
        &policy,
        &read(
            "dr-clinic",
            &["outpatient"],
            "p1",
            MONDAY_10_UTC + 5 * 24 * HOUR,
        ),
    );
    assert!(
        saturday.findings[0].detail.contains("on a weekend"),
        "{saturday:?}"
    );
    // Roles that work around the clock are not judged by the clock.
    quiet(&decide(
        &policy,
        &read("nurse-night", &["nurse"], "p1", MONDAY_10_UTC + 16 * HOUR),
    ));
}

#[test]
fn name_search_trawling_fires_above_twenty_an_hour() {
    let config = r#"{"name_search": {"role_limits": {"registration": 60}}}"#;
    let (_engine, policy) = anomaly(config);
    let params = ["name", "family", "given:exact", "phonetic"];
    for i in 0..20u64 {
        let param = params[(i % 4) as usize];
        let request = patient_search_by(
            "dr-curious",
            &["physician"],
            param,
            "smith",
            MONDAY_10_UTC + i * MINUTE,
        );
        quiet(&decide(&policy, &request));
    }
    let request = patient_search_by(
        "dr-curious",
        &["physician"],
        "name",
        "jones",
        MONDAY_10_UTC + 20 * MINUTE,
    );
    let decision = decide(&policy, &request);
    assert_eq!(rules(&decision), ["anomaly.review", "anomaly.name-search"]);
    assert!(
        decision.findings[1]
            .detail
            .starts_with("21 patient name searches")
    );

    // Other searches do not count; a registration desk has its own limit.
    for i in 0..30u64 {
        let time = MONDAY_10_UTC + i * MINUTE;
        quiet(&decide(
            &policy,
            &patient_search_by("dr-busy", &["physician"], "identifier", "mrn|1", time),
        ));
        quiet(&decide(
            &policy,
            &patient_search_by("clerk-1", &["registration"], "family", "lee", time),
        ));
    }
    let mut observation_search =
        patient_search_by("dr-busy", &["physician"], "name", "x", MONDAY_10_UTC);
    observation_search.resource_type = Some("Observation".into());
    quiet(&decide(&policy, &observation_search));
}

#[test]
fn break_the_glass_fires_above_three_patients_a_day() {
    let (_engine, policy) = anomaly("{}");
    for (i, patient) in ["p1", "p2", "p2", "p3"].iter().enumerate() {
        let time = MONDAY_10_UTC + i as u64 * HOUR;
        quiet(&decide(
            &policy,
            &with_break_glass(read("dr-er", &["emergency"], patient, time)),
        ));
    }
    let fourth = decide(
        &policy,
        &with_break_glass(read(
            "dr-er",
            &["emergency"],
            "p4",
            MONDAY_10_UTC + 5 * HOUR,
        )),
    );
    assert_eq!(
        rules(&fourth),
        ["anomaly.review", "anomaly.break-glass-rate"]
    );
    // A day after the third (p2 was last opened an hour after p1), only p4 is left.
    let next_day = decide(
        &policy,
        &with_break_glass(read(
            "dr-er",
            &["emergency"],
            "p5",
            MONDAY_10_UTC + 27 * HOUR + 1,
        )),
    );
    assert!(
        !fired(&next_day, "anomaly.break-glass-rate"),
        "{next_day:?}"
    );
}

#[test]
fn weak_signals_combine_into_the_review_band() {
    let config = r#"{
        "care_teams": {"Practitioner/dr-clinic": ["pat-1"]},
        "after_hours": {"roles": ["outpatient"]}
    }"#;
    let (_engine, policy) = anomaly(config);
    // 23:00 UTC: after hours (20) and no care relationship (45) give 56.
    let decision = decide(
        &policy,
        &read(
            "dr-clinic",
            &["outpatient"],
            "pat-2",
            MONDAY_10_UTC + 13 * HOUR,
        ),
    );
    assert_eq!(
        rules(&decision),
        [
            "anomaly.review",
            "anomaly.no-care-relationship",
            "anomaly.after-hours"
        ]
    );
    assert_eq!(decision.risk_score, 56);
    assert!(decision.findings[0].detail.starts_with("risk 56"));
    assert!(decision.denial.is_none());
    // With the deny band lowered, the same access is refused.
    let config = r#"{
        "care_teams": {"Practitioner/dr-clinic": ["pat-1"]},
        "after_hours": {"roles": ["outpatient"]},
        "bands": {"review": 30, "deny": 50}
    }"#;
    let (_engine, policy) = anomaly(config);
    let decision = decide(
        &policy,
        &read(
            "dr-clinic",
            &["outpatient"],
            "pat-2",
            MONDAY_10_UTC + 13 * HOUR,
        ),
    );
    assert_eq!(decision.denial.map(|d| d.status), Some(403));
}

#[test]
fn anonymous_requests_are_not_judged() {
    let (_engine, policy) = anomaly("{}");
    let mut request = read("x", &[], "p1", MONDAY_10_UTC);
    request.principal = None;
    quiet(&decide(&policy, &request));
}

#[test]
fn a_state_error_fails_closed() {
    let engine = PolicyEngine::new(test_settings(), Arc::new(BrokenState)).expect("engine starts");
    let policy = load(&engine, "anomaly", "anomaly", "{}");
    let denial = decide(
        &policy,
        &read("dr-adams", &["physician"], "p1", MONDAY_10_UTC),
    )
    .denial
    .expect("refused");
    assert_eq!(
        (
            denial.status,
            denial.rule_id.as_str(),
            denial.retry_after_secs
        ),
        (503, "anomaly.state-unavailable", Some(1))
    );
}

#[test]
fn config_mistakes_stop_the_load_with_a_clear_message() {
    let engine = PolicyEngine::new(test_settings(), Arc::new(MemoryState::default()))
        .expect("engine starts");
    let refused = |config: &str| {
        let spec = PolicySpec {
            name: "anomaly".into(),
            path: guest("anomaly"),
            config: config.into(),
            budget: None,
            response_headers: Default::default(),
        };
        engine.load(&spec).err().expect("refused").to_string()
    };
    let error = refused(r#"{"care_teams": {"ward-1": {"members": ["a"]}}}"#);
    assert!(
        error.contains("needs both `members` and `patients`"),
        "{error}"
    );
    let error = refused(r#"{"after_hours": {"start": "7am"}}"#);
    assert!(error.contains("expected `HH:MM`"), "{error}");
    let error = refused(r#"{"bands": {"review": 90, "deny": 10}}"#);
    assert!(
        error.contains("expected 1 <= review <= deny <= 100"),
        "{error}"
    );
}

#[test]
fn the_example_config_loads_and_explains_its_care_teams() {
    let (_engine, policy) = anomaly(include_str!("../../examples/policies/anomaly.json"));
    // pat-00017 is a VIP on dr-clinic-1's list: recorded, not flagged.
    let team = decide(
        &policy,
        &read("dr-clinic-1", &["outpatient"], "pat-00017", MONDAY_10_UTC),
    );
    assert_eq!(rules(&team), ["anomaly.vip"]);
    assert_eq!(team.risk_score, 0);
    let snoop = decide(
        &policy,
        &read("rn-kim", &["nurse"], "pat-00017", MONDAY_10_UTC),
    );
    assert_eq!(
        rules(&snoop),
        [
            "anomaly.review",
            "anomaly.vip",
            "anomaly.no-care-relationship"
        ]
    );
    assert_eq!(snoop.risk_score, 78);
    // rn-kim's own record, named by subject in `staff_patients`.
    let own = decide(
        &policy,
        &read("rn-kim", &["nurse"], "pat-05550", MONDAY_10_UTC),
    );
    assert!(fired(&own, "anomaly.self-lookup"), "{own:?}");
}

fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("non-zero")
}

#[test]
fn window_and_counter_state_stays_bounded_under_a_million_rotating_keys() {
    let started = Instant::now();
    let limits = MemoryStateLimits {
        counters: nonzero(1000),
        distinct_keys: nonzero(500),
        distinct_members_per_key: nonzero(64),
        distinct_member_budget: nonzero(5000),
        ..MemoryStateLimits::default()
    };
    let state = Arc::new(MemoryState::new(limits));
    let engine = PolicyEngine::new(test_settings(), state.clone()).expect("engine starts");
    let policy = load(&engine, "anomaly", "anomaly", "{}");
    // Through the module: every request a new user (two distinct windows each) and a name
    // search (one counter each), and one user touching ever new patients.
    for i in 0..600u64 {
        let time = MONDAY_10_UTC + i;
        decide(
            &policy,
            &read(&format!("user-{i}"), &["physician"], &format!("p{i}"), time),
        );
        decide(
            &policy,
            &patient_search_by(&format!("user-{i}"), &["physician"], "name", "x", time),
        );
        decide(
            &policy,
            &read("insider", &["him-coder"], &format!("p{i}"), time),
        );
    }
    let (_, counters, windows, members) = state.sizes();
    assert_eq!(counters, 600);
    assert_eq!(windows, 500, "the distinct-window table is at capacity");
    assert!(members <= 5000, "{members} members");
    let insider = decide(
        &policy,
        &read("insider", &["him-coder"], "p-last", MONDAY_10_UTC + 600),
    );
    assert!(
        insider
            .findings
            .iter()
            .any(|f| f.detail.starts_with("64 distinct patients")),
        "a window saturates at its member cap: {insider:?}"
    );

    // Straight into the host state with the module's key shapes, a million times.
    for i in 0..1_000_000u64 {
        let time = MONDAY_10_UTC + i;
        let user = format!("user-{i}");
        state
            .distinct_add(
                &format!("anomaly/patients-hour:{user}"),
                &format!("p{i}"),
                HOUR,
                time,
            )
            .expect("distinct-add");
        state
            .counter_add(&format!("anomaly/name-searches:{user}"), 1, HOUR, time)
            .expect("counter-add");
    }
    let (_, counters, windows, members) = state.sizes();
    assert_eq!((counters, windows), (1000, 500));
    assert!(members <= 5000, "{members} members");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
