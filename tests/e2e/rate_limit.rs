//! The `rate-limit` policy through the engine: exact rates on the request's clock (no
//! sleeps), costs per interaction, tiers, the draft-ietf-httpapi-ratelimit-headers fields on
//! allows and refusals, the global ceiling under rotating identities, fail-closed state
//! errors, and bounded state under a million rotating keys.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{BrokenState, guest, load, patient_search, test_settings};
use ehrgate::engine::{
    ConfiguredPolicy, Entry, Interaction, ModuleDecision, PolicyEngine, PolicySpec, Request,
};
use ehrgate::state::{BucketSpec, MemoryState, MemoryStateLimits, StateBackend};

/// 2026-01-05 08:00:00 UTC.
const T0: u64 = 1_767_600_000_000;

/// Every bucket roomy except the ones a test sets.
const ROOMY: &str = r#""defaults": {
    "client": {"capacity": 100000, "refill": 100000},
    "user": {"capacity": 100000, "refill": 100000},
    "address": {"capacity": 100000, "refill": 100000}
}, "global": {"capacity": 100000, "refill": 100000, "period_ms": 1000}"#;

fn engine_with_state(state: Arc<dyn StateBackend>) -> PolicyEngine {
    PolicyEngine::new(test_settings(), state).expect("engine starts")
}

fn rate_limit(config: &str) -> (PolicyEngine, Arc<ConfiguredPolicy>) {
    let engine = engine_with_state(Arc::new(MemoryState::default()));
    let policy = load(&engine, "rate-limit", "rate-limit", config);
    (engine, policy)
}

/// A read of `Patient/pat-123` by `user` through client `client` from `address` at `time_ms`.
fn read(user: &str, client: &str, address: &str, time_ms: u64) -> Request {
    let mut request = patient_search();
    request.time_ms = time_ms;
    request.source_address = address.into();
    request.method = "GET".into();
    request.path = "/Patient/pat-123".into();
    request.interaction = Interaction::Read;
    request.resource_type = Some("Patient".into());
    request.resource_id = Some("pat-123".into());
    request.params.clear();
    if let Some(principal) = &mut request.principal {
        principal.subject = user.into();
        principal.client_id = client.into();
    }
    request
}

fn decide(policy: &Arc<ConfiguredPolicy>, request: &Request) -> ModuleDecision {
    policy.evaluate(request).expect("evaluates")
}

fn header<'a>(decision: &'a ModuleDecision, name: &str) -> Option<&'a str> {
    decision
        .response_headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn ratelimit_headers(decision: &ModuleDecision) -> [Option<&str>; 3] {
    [
        header(decision, "ratelimit-limit"),
        header(decision, "ratelimit-remaining"),
        header(decision, "ratelimit-reset"),
    ]
}

fn refused_by(decision: &ModuleDecision) -> Option<(u16, &str)> {
    decision
        .denial
        .as_ref()
        .map(|d| (d.status, d.rule_id.as_str()))
}

#[test]
fn a_user_gets_exactly_the_configured_rate() {
    // 5 tokens of burst, one more every second; a read costs 1.
    let config = format!(
        r#"{{{ROOMY}, "tiers": [{{"name": "tight", "routes": ["ehr"],
            "user": {{"capacity": 5, "refill": 1, "period_ms": 1000}}}}]}}"#
    );
    let (_engine, policy) = rate_limit(&config);
    let mut granted = 0;
    let mut refused = 0;
    // Ask every 100 ms for 60 s of request time.
    for step in 0..=600u64 {
        let decision = decide(
            &policy,
            &read("dr-adams", "ward-app", "192.0.2.1", T0 + step * 100),
        );
        match refused_by(&decision) {
            None => granted += 1,
            Some(refusal) => {
                assert_eq!(refusal, (429, "rate-limit.user"));
                refused += 1;
            }
        }
    }
    // The full bucket (5) plus one token per second for 60 s, the 60th arriving at 60 000 ms.
    assert_eq!(granted, 5 + 60);
    assert_eq!(refused, 601 - 65);
}

#[test]
fn refusals_carry_retry_after_and_ratelimit_headers() {
    let config = format!(
        r#"{{{ROOMY}, "tiers": [{{"name": "tight", "routes": ["ehr"],
            "user": {{"capacity": 5, "refill": 1, "period_ms": 1000}}}}]}}"#
    );
    let (_engine, policy) = rate_limit(&config);
    let first = decide(&policy, &read("dr-adams", "ward-app", "192.0.2.1", T0));
    assert!(first.denial.is_none());
    // The user bucket is the one closest to empty: 4 of 5 left, full again in 1 s.
    assert_eq!(ratelimit_headers(&first), [Some("5"), Some("4"), Some("1")]);
    for _ in 0..4 {
        decide(&policy, &read("dr-adams", "ward-app", "192.0.2.1", T0));
    }

    // 400 ms later 0.4 of a token has refilled: the next whole one is 600 ms away.
    let refused = decide(
        &policy,
        &read("dr-adams", "ward-app", "192.0.2.1", T0 + 400),
    );
    let denial = refused.denial.as_ref().expect("refused");
    assert_eq!(denial.status, 429);
    assert_eq!(denial.rule_id, "rate-limit.user");
    assert_eq!(denial.retry_after_secs, Some(1));
    // Full again in 5 s - 0.4 s = 4.6 s, sent as 5 (delta-seconds, rounded up).
    assert_eq!(
        ratelimit_headers(&refused),
        [Some("5"), Some("0"), Some("5")]
    );
    assert_eq!(refused.findings[0].rule_id, "rate-limit.user");

    // With 3 tokens short (cost 2 searches on an empty bucket), Retry-After is 2 s.
    let mut search = read("dr-adams", "ward-app", "192.0.2.1", T0 + 400);
    search.interaction = Interaction::SearchType;
    let denial = decide(&policy, &search).denial.expect("refused");
    assert_eq!(denial.retry_after_secs, Some(2));

    // Other users are not affected.
    let other = decide(
        &policy,
        &read("dr-baker", "ward-app", "192.0.2.1", T0 + 400),
    );
    assert_eq!(ratelimit_headers(&other), [Some("5"), Some("4"), Some("1")]);
}

#[test]
fn costs_follow_the_interaction() {
    let config = format!(
        r#"{{{ROOMY}, "tiers": [{{"name": "tight", "routes": ["ehr"],
            "user": {{"capacity": 40, "refill": 1, "period_ms": 60000}}}}],
            "costs": {{"operations": {{"lastn": 3}}}}}}"#
    );
    let (_engine, policy) = rate_limit(&config);
    let remaining_after = |request: &Request| {
        header(&decide(&policy, request), "ratelimit-remaining").map(str::to_owned)
    };
    let base = read("dr-adams", "ward-app", "192.0.2.1", T0);
    assert_eq!(remaining_after(&base).as_deref(), Some("39"), "read: 1");
    let mut search = base.clone();
    search.interaction = Interaction::SearchType;
    assert_eq!(remaining_after(&search).as_deref(), Some("37"), "search: 2");
    let mut lastn = base.clone();
    lastn.interaction = Interaction::Operation;
    lastn.operation = Some("lastn".into());
    assert_eq!(
        remaining_after(&lastn).as_deref(),
        Some("34"),
        "configured: 3"
    );
    let mut export = base.clone();
    export.interaction = Interaction::Operation;
    export.operation = Some("export".into());
    assert_eq!(
        remaining_after(&export).as_deref(),
        Some("14"),
        "$export: 20"
    );
    let mut batch = base.clone();
    batch.interaction = Interaction::Batch;
    batch.entries = vec![entry(Interaction::Read), entry(Interaction::SearchType)];
    assert_eq!(
        remaining_after(&batch).as_deref(),
        Some("11"),
        "bundle: 1 + 2"
    );
    // 11 left: a second $export does not fit and takes nothing.
    let denial = decide(&policy, &export).denial.expect("refused");
    assert_eq!(denial.rule_id, "rate-limit.user");
    assert_eq!(remaining_after(&base).as_deref(), Some("10"));
}

#[test]
fn a_request_that_can_never_fit_is_refused_by_cost() {
    let config = format!(
        r#"{{{ROOMY}, "tiers": [{{"name": "tight", "routes": ["ehr"],
            "user": {{"capacity": 20, "refill": 20}}}}]}}"#
    );
    let (_engine, policy) = rate_limit(&config);
    let mut batch = read("dr-adams", "ward-app", "192.0.2.1", T0);
    batch.interaction = Interaction::Transaction;
    batch.entries = (0..11).map(|_| entry(Interaction::SearchType)).collect();
    let denial = decide(&policy, &batch).denial.expect("refused");
    assert_eq!(
        (denial.status, denial.rule_id.as_str()),
        (413, "rate-limit.cost")
    );
    assert!(
        denial.message.contains("costs 22 tokens"),
        "{}",
        denial.message
    );

    // An operation the tier's buckets are too small for is not available to it at all.
    let mut export = read("dr-adams", "ward-app", "192.0.2.1", T0);
    export.interaction = Interaction::Operation;
    export.operation = Some("export".into());
    let config = format!(
        r#"{{{ROOMY}, "tiers": [{{"name": "tight", "routes": ["ehr"],
            "user": {{"capacity": 10, "refill": 10}}}}]}}"#
    );
    let (_engine, policy) = rate_limit(&config);
    let denial = decide(&policy, &export).denial.expect("refused");
    assert_eq!(
        (denial.status, denial.rule_id.as_str()),
        (403, "rate-limit.cost")
    );
}

fn entry(interaction: Interaction) -> Entry {
    Entry {
        method: "GET".into(),
        path: "/Observation".into(),
        interaction,
        resource_type: Some("Observation".into()),
        resource_id: None,
        operation: None,
        params: vec![],
        patients: vec!["pat-123".into()],
    }
}

#[test]
fn tiers_by_role_client_and_route_pick_the_bucket_shapes() {
    let config = r#"{
        "defaults": {"client": {"capacity": 600, "refill": 300},
                     "user": {"capacity": 120, "refill": 60},
                     "address": {"capacity": 300, "refill": 150}},
        "tiers": [
            {"name": "bulk-export", "roles": ["bulk-export"], "clients": ["export-svc"],
             "client": {"capacity": 2000, "refill": 100}, "user": {"capacity": 2000, "refill": 100},
             "address": {"capacity": 2000, "refill": 100}},
            {"name": "billing", "routes": ["billing"], "user": {"capacity": 30, "refill": 30}}
        ],
        "routes": {"billing": {"capacity": 1000, "refill": 500}}
    }"#;
    let (_engine, policy) = rate_limit(config);
    let limit_of =
        |request: &Request| header(&decide(&policy, request), "ratelimit-limit").map(str::to_owned);
    let clinician = read("dr-adams", "ward-app", "192.0.2.1", T0);
    assert_eq!(
        limit_of(&clinician).as_deref(),
        Some("120"),
        "default user bucket"
    );

    let mut exporter = read("svc-export", "export-svc", "192.0.2.9", T0);
    if let Some(p) = &mut exporter.principal {
        p.roles = vec!["bulk-export".into()];
    }
    // The bulk tier's buckets hold as much as the global default (2000, 1000/s), which the
    // clinician's read has already drawn from: the global bucket is closest to empty.
    let decision = decide(&policy, &exporter);
    assert_eq!(header(&decision, "ratelimit-limit"), Some("2000"));
    assert_eq!(header(&decision, "ratelimit-remaining"), Some("1998"));

    // The role alone is not enough: every listed criterion must match.
    let mut impostor = exporter.clone();
    if let Some(p) = &mut impostor.principal {
        p.client_id = "ward-app".into();
        p.subject = "someone".into();
    }
    assert_eq!(limit_of(&impostor).as_deref(), Some("120"));

    let mut billing = read("clerk-1", "billing-app", "192.0.2.3", T0);
    billing.route = "billing".into();
    assert_eq!(
        limit_of(&billing).as_deref(),
        Some("30"),
        "billing tier by route"
    );
}

#[test]
fn the_global_ceiling_holds_when_every_request_is_a_new_identity() {
    // Every request rotates user, client and address, so each one finds its own buckets
    // full: only the global ceiling can stop them.
    let config = r#"{
        "defaults": {"client": {"capacity": 20, "refill": 1},
                     "user": {"capacity": 20, "refill": 1},
                     "address": {"capacity": 20, "refill": 1}},
        "global": {"capacity": 50, "refill": 10, "period_ms": 1000}
    }"#;
    let (_engine, policy) = rate_limit(config);
    let attack = |i: u64, time_ms: u64| {
        let address = format!("198.51.{}.{}", (i / 250) % 250, i % 250);
        read(
            &format!("user-{i}"),
            &format!("client-{i}"),
            &address,
            time_ms,
        )
    };
    let mut granted = 0;
    for i in 0..200 {
        let decision = decide(&policy, &attack(i, T0));
        match refused_by(&decision) {
            None => granted += 1,
            Some(refusal) => assert_eq!(refusal, (429, "rate-limit.global")),
        }
    }
    assert_eq!(granted, 50, "exactly the global capacity");
    // One second later exactly 10 more, whoever asks.
    let granted_later = (200..400)
        .filter(|i| decide(&policy, &attack(*i, T0 + 1000)).denial.is_none())
        .count();
    assert_eq!(granted_later, 10);
    let refused = decide(&policy, &attack(400, T0 + 1000));
    assert_eq!(
        ratelimit_headers(&refused),
        [Some("50"), Some("0"), Some("5")]
    );
}

#[test]
fn a_refused_request_takes_nothing_from_the_shared_buckets() {
    let config = r#"{
        "defaults": {"client": {"capacity": 1000, "refill": 1},
                     "user": {"capacity": 20, "refill": 1},
                     "address": {"capacity": 1000, "refill": 1}},
        "global": {"capacity": 30, "refill": 1, "period_ms": 60000}
    }"#;
    let (_engine, policy) = rate_limit(config);
    // One noisy user hammers: 20 pass, 80 are refused by the user bucket.
    let noisy = (0..100)
        .filter(|_| {
            decide(&policy, &read("noisy", "app", "192.0.2.1", T0))
                .denial
                .is_none()
        })
        .count();
    assert_eq!(noisy, 20);
    // The global ceiling lost only the 20 that passed: 10 remain for everyone else.
    let others = (0..20)
        .filter(|i| {
            decide(&policy, &read(&format!("u{i}"), "app", "192.0.2.2", T0))
                .denial
                .is_none()
        })
        .count();
    assert_eq!(others, 10);
}

#[test]
fn addresses_in_trusted_networks_skip_the_address_bucket_and_ipv6_counts_per_prefix() {
    let config = r#"{
        "defaults": {"client": {"capacity": 1000, "refill": 1},
                     "user": {"capacity": 1000, "refill": 1},
                     "address": {"capacity": 20, "refill": 1}},
        "trusted_networks": ["10.0.0.0/8"]
    }"#;
    let (_engine, policy) = rate_limit(config);
    let granted = |address: &str, rotate_suffix: bool| {
        (0..40)
            .filter(|i| {
                let address = if rotate_suffix {
                    format!("{address}{i:x}")
                } else {
                    address.to_owned()
                };
                decide(&policy, &read(&format!("u{i}"), "app", &address, T0))
                    .denial
                    .is_none()
            })
            .count()
    };
    assert_eq!(
        granted("10.1.2.3", false),
        40,
        "hospital NAT: no address bucket"
    );
    assert_eq!(granted("192.0.2.7", false), 20);
    // 40 addresses inside one /64 share its bucket.
    assert_eq!(granted("2001:db8:5:6:1::", true), 20);
}

#[test]
fn a_state_error_fails_closed() {
    let engine = engine_with_state(Arc::new(BrokenState));
    let policy = load(&engine, "rate-limit", "rate-limit", "{}");
    let decision = decide(&policy, &read("dr-adams", "ward-app", "192.0.2.1", T0));
    let denial = decision.denial.expect("refused");
    assert_eq!(
        (
            denial.status,
            denial.rule_id.as_str(),
            denial.retry_after_secs
        ),
        (503, "rate-limit.state-unavailable", Some(1))
    );
    assert!(decision.findings[0].detail.contains("connection refused"));
}

#[test]
fn config_mistakes_stop_the_load_with_a_clear_message() {
    let engine = engine_with_state(Arc::new(MemoryState::default()));
    let spec = PolicySpec {
        name: "rate-limit".into(),
        path: guest("rate-limit"),
        config: r#"{"defaults": {"user": {"capacity": 1, "refill": 5}},
                    "trusted_networks": ["10.0.0.0/8"]}"#
            .into(),
        budget: None,
        response_headers: Default::default(),
    };
    let error = engine.load(&spec).err().expect("refused").to_string();
    assert!(error.contains("`defaults.user.capacity` is 1,"), "{error}");
    assert!(error.contains("`costs.search`"), "{error}");
    let spec = PolicySpec {
        config: r#"{"trusted_networks": ["10.0.0.0/40"]}"#.into(),
        ..spec
    };
    let error = engine.load(&spec).err().expect("refused").to_string();
    assert!(error.contains("expected /0 to /32"), "{error}");
}

#[test]
fn the_example_config_loads_and_keeps_exporters_in_their_tier() {
    let (_engine, policy) = rate_limit(include_str!("../../examples/policies/rate-limit.json"));
    let mut export = read("svc-export", "population-health-export", "10.1.2.3", T0);
    export.interaction = Interaction::Operation;
    export.operation = Some("export".into());
    if let Some(p) = &mut export.principal {
        p.roles = vec!["bulk-export".into()];
    }
    // 200 tokens at 20 an export: ten, then the hourly refill (100 an hour, 5 exports).
    let granted = (0..12)
        .filter(|_| decide(&policy, &export).denial.is_none())
        .count();
    assert_eq!(granted, 10);
    let refused = decide(&policy, &export);
    // User, client and address buckets are all empty; the most specific is named.
    assert_eq!(refused_by(&refused), Some((429, "rate-limit.user")));
    // 20 tokens at 100 an hour take 12 minutes.
    assert_eq!(refused.denial.and_then(|d| d.retry_after_secs), Some(720));
}

fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("non-zero")
}

#[test]
fn bucket_state_stays_bounded_under_a_million_rotating_keys() {
    let started = Instant::now();
    let state = Arc::new(MemoryState::new(MemoryStateLimits {
        buckets: nonzero(1000),
        ..MemoryStateLimits::default()
    }));
    let engine = engine_with_state(state.clone());
    let policy = load(&engine, "rate-limit", "rate-limit", "{}");
    // Through the module: every request a new user, client and address (three buckets
    // each, plus the global one).
    for i in 0..1000u64 {
        let address = format!("203.0.{}.{}", i / 250, i % 250);
        let request = read(
            &format!("user-{i}"),
            &format!("client-{i}"),
            &address,
            T0 + i,
        );
        decide(&policy, &request);
    }
    assert_eq!(state.sizes().0, 1000, "the bucket table is at capacity");

    // Straight into the host state, with the keys the module writes (namespace included),
    // a million times: the table stays at its capacity.
    let spec = BucketSpec {
        capacity: 300,
        refill_tokens: 120,
        refill_period_ms: 60_000,
    };
    let issuer = "https://idp.hospital.example";
    for i in 0..1_000_000u64 {
        let key = match i % 3 {
            0 => format!("rate-limit/user:default:{issuer}:user-{i}"),
            1 => format!("rate-limit/client:default:client-{i}"),
            _ => format!(
                "rate-limit/address:default:198.{}.{}.{}",
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            ),
        };
        state.take(&key, spec, 1, T0 + i).expect("take");
    }
    assert_eq!(state.sizes().0, 1000);
    // The module still works, and a forgotten bucket comes back full.
    let decision = decide(
        &policy,
        &read("user-0", "client-0", "203.0.0.0", T0 + 2_000_000),
    );
    assert!(decision.denial.is_none());
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
