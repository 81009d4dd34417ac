//! State shared through a real `redis-server` on 127.0.0.1: one arithmetic suite run
//! against the in-memory backend and the Redis backend alike, two real gateway processes
//! holding a user to one rate in total, fail-closed refusals while the server is gone and
//! recovery when it returns, and bounded server memory under a million rotating keys.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ehrgate::state::{
    BucketSpec, BucketStatus, MAX_BATCH, MemoryState, MemoryStateLimits, RedisSettings, RedisState,
    StateCall, StateError, StateHandle, StateProvider, StateReply,
};

use crate::support::gateway::GatewayProcess;
use crate::support::guest;
use crate::support::http::get;
use crate::support::redis::RedisServer;
use crate::support::tokens::{clinician_claims, identity_toml, sign};
use crate::support::upstream::{Reply, TestUpstream};

/// 2026-01-05 08:00:00 UTC.
const T0: u64 = 1_767_600_000_000;

fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

fn limits(keys: usize, members: usize) -> MemoryStateLimits {
    MemoryStateLimits {
        buckets: nonzero(keys),
        counters: nonzero(keys),
        distinct_keys: nonzero(keys),
        distinct_members_per_key: nonzero(members),
        distinct_member_budget: nonzero(keys * members),
    }
}

fn settings(server: &RedisServer, prefix: &str) -> RedisSettings {
    toml::from_str(&format!(
        "url = \"{}\"\nkey_prefix = \"{prefix}\"\ntimeout_ms = 500",
        server.url()
    ))
    .expect("settings parse")
}

fn redis_handle(server: &RedisServer, prefix: &str, limits: MemoryStateLimits) -> StateHandle {
    let state =
        RedisState::open(&settings(server, prefix), Path::new("."), limits).expect("client opens");
    state.configure(&[("m".to_string(), None)]);
    state.partition("m")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

const TEN_PER_SECOND: BucketSpec = BucketSpec {
    capacity: 10,
    refill_tokens: 10,
    refill_period_ms: 1000,
};

/// The arithmetic every backend must give, exactly as the in-memory one does.
async fn arithmetic_suite(state: &StateHandle, name: &str) {
    let take = |key: &'static str, spec: BucketSpec, cost: u64, now: u64| async move {
        state.take(key, spec, cost, now).await.expect("take")
    };
    // A bucket starts full and drains to exactly its capacity.
    let mut granted = 0;
    for _ in 0..25 {
        granted += usize::from(take("drain", TEN_PER_SECOND, 1, T0).await.allowed);
    }
    assert_eq!(granted, 10, "{name}: drain");
    // Refill is continuous and exact: one token per 100 ms.
    let status = take("drain", TEN_PER_SECOND, 1, T0 + 99).await;
    assert!(!status.allowed, "{name}");
    assert_eq!(status.retry_after_ms, 1, "{name}");
    assert!(
        take("drain", TEN_PER_SECOND, 1, T0 + 100).await.allowed,
        "{name}"
    );
    assert!(
        !take("drain", TEN_PER_SECOND, 1, T0 + 100).await.allowed,
        "{name}"
    );
    // Remaining, retry-after and reset.
    assert_eq!(
        take("report", TEN_PER_SECOND, 4, T0).await,
        BucketStatus {
            allowed: true,
            limit: 10,
            remaining: 6,
            retry_after_ms: 0,
            reset_ms: 400,
        },
        "{name}"
    );
    let refused = take("report", TEN_PER_SECOND, 8, T0).await;
    assert!(!refused.allowed, "{name}");
    assert_eq!(refused.remaining, 6, "{name}: a refused take takes nothing");
    assert_eq!(refused.retry_after_ms, 200, "{name}");
    // A cost above capacity is never granted.
    let never = take("never", TEN_PER_SECOND, 11, T0).await;
    assert!(!never.allowed && never.retry_after_ms == u64::MAX, "{name}");
    // Time going backwards refills nothing.
    for _ in 0..10 {
        take("back", TEN_PER_SECOND, 1, T0 + 5_000).await;
    }
    assert!(
        !take("back", TEN_PER_SECOND, 1, T0 + 4_000).await.allowed,
        "{name}"
    );
    assert!(
        !take("back", TEN_PER_SECOND, 1, T0 + 5_050).await.allowed,
        "{name}"
    );
    assert!(
        take("back", TEN_PER_SECOND, 1, T0 + 5_100).await.allowed,
        "{name}"
    );
    // The exact long-run rate: 7 tokens every 3 s asked every 12 ms for 60 s.
    let seven = BucketSpec {
        capacity: 7,
        refill_tokens: 7,
        refill_period_ms: 3000,
    };
    let mut granted = 0;
    let mut now = T0;
    while now <= T0 + 60_000 {
        granted += usize::from(take("seven", seven, 1, now).await.allowed);
        now += 12;
    }
    assert_eq!(granted, 7 + 140, "{name}: long run");
    // A new shape keeps the level within the new capacity.
    let smaller = BucketSpec {
        capacity: 3,
        ..TEN_PER_SECOND
    };
    take("shape", TEN_PER_SECOND, 1, T0).await;
    let mut granted = 0;
    for _ in 0..10 {
        granted += usize::from(take("shape", smaller, 1, T0).await.allowed);
    }
    assert_eq!(granted, 3, "{name}: reshaped");

    // Distinct members slide with the window.
    let hour = 3_600_000;
    let add = |member: &'static str, now: u64| async move {
        state
            .distinct_add("u", member, hour, now)
            .await
            .expect("add")
    };
    assert_eq!(add("p1", T0).await, 1, "{name}");
    assert_eq!(add("p2", T0 + 1_000).await, 2, "{name}");
    assert_eq!(add("p1", T0 + 2_000).await, 2, "{name}");
    let count =
        |now: u64| async move { state.distinct_count("u", hour, now).await.expect("count") };
    assert_eq!(count(T0 + hour + 1_500).await, 1, "{name}");
    assert_eq!(count(T0 + hour + 2_000).await, 0, "{name}");
    // A window keeps at most its member cap (4 here).
    for (i, member) in ["a", "b", "c", "d", "e", "f"].into_iter().enumerate() {
        let counted = state
            .distinct_add("capped", member, hour, T0 + i as u64)
            .await
            .expect("add");
        assert_eq!(counted, (i as u32 + 1).min(4), "{name}: member cap");
    }

    // Counters sum their sixteen slots over the window, and restart on a new window.
    let minute = 60_000;
    let mut total = 0;
    for i in 0..10 {
        total = state
            .counter_add("c", 2, minute, T0 + i * 1_000)
            .await
            .expect("counter");
    }
    assert_eq!(total, 20, "{name}");
    let later = state
        .counter_add("c", 1, minute, T0 + 9_000 + 2 * minute)
        .await
        .expect("counter");
    assert_eq!(later, 1, "{name}: old slots leave the window");
    assert_eq!(
        state
            .counter_add("c", 5, 2 * minute, T0)
            .await
            .expect("counter"),
        5,
        "{name}: a new window starts afresh"
    );

    // The shared backend's key index orders keys by request time, the in-memory one by
    // use: from here on time moves forward, as it does between real requests.
    const AT: u64 = T0 + 200_000;

    // take-all: every bucket pays, or none does; the short one says when it could.
    let three = BucketSpec {
        capacity: 3,
        ..TEN_PER_SECOND
    };
    let buckets = [
        ("all-a".to_owned(), TEN_PER_SECOND),
        ("all-b".to_owned(), three),
    ];
    let paid = state.take_all(&buckets, 2, AT).await.expect("take-all");
    assert!(paid.iter().all(|s| s.allowed), "{name}: {paid:?}");
    assert_eq!(
        (paid[0].remaining, paid[1].remaining),
        (8, 1),
        "{name}: both paid"
    );
    let refused = state.take_all(&buckets, 2, AT).await.expect("take-all");
    assert!(refused.iter().all(|s| !s.allowed), "{name}: {refused:?}");
    assert_eq!(
        (refused[0].retry_after_ms, refused[1].retry_after_ms),
        (0, 100),
        "{name}: only the short bucket waits"
    );
    assert_eq!(
        take("all-a", TEN_PER_SECOND, 0, AT).await.remaining,
        8,
        "{name}: a refused take-all takes nothing"
    );
    let paid = state
        .take_all(&buckets, 2, AT + 100)
        .await
        .expect("take-all");
    assert!(paid.iter().all(|s| s.allowed), "{name}: refilled {paid:?}");
    let twice = [
        ("all-a".to_owned(), TEN_PER_SECOND),
        ("all-a".to_owned(), three),
    ];
    assert!(
        matches!(
            state.take_all(&twice, 1, AT).await,
            Err(StateError::InvalidArgument(_))
        ),
        "{name}: a bucket named twice"
    );
    assert!(
        state.take_all(&[], 1, AT).await.is_err(),
        "{name}: no bucket"
    );

    // A batch runs its calls in order, each with its own result; a refused call does not
    // stop the others.
    let calls = [
        StateCall::Take {
            key: "batch-b".into(),
            spec: TEN_PER_SECOND,
            cost: 4,
        },
        StateCall::DistinctAdd {
            key: "batch-d".into(),
            member: "p1".into(),
            window_ms: hour,
        },
        StateCall::DistinctAdd {
            key: "batch-d".into(),
            member: "p2".into(),
            window_ms: hour,
        },
        StateCall::DistinctCount {
            key: "batch-d".into(),
            window_ms: hour,
        },
        StateCall::CounterAdd {
            key: "batch-c".into(),
            amount: 3,
            window_ms: minute,
        },
        StateCall::Take {
            key: "x".repeat(600),
            spec: TEN_PER_SECOND,
            cost: 1,
        },
        StateCall::CounterAdd {
            key: "batch-c".into(),
            amount: 4,
            window_ms: minute,
        },
    ];
    let replies = state.batch(&calls, AT).await.expect("batch");
    assert_eq!(replies.len(), calls.len(), "{name}");
    match &replies[0] {
        Ok(StateReply::Bucket(status)) => assert_eq!(status.remaining, 6, "{name}"),
        other => panic!("{name}: a take answered {other:?}"),
    }
    let counts: Vec<Option<u64>> = replies[1..]
        .iter()
        .map(|reply| match reply {
            Ok(StateReply::Count(count)) => Some(*count),
            _ => None,
        })
        .collect();
    assert_eq!(
        counts,
        [Some(1), Some(2), Some(2), Some(3), None, Some(7)],
        "{name}: {replies:?}"
    );
    assert!(
        matches!(replies[5], Err(StateError::KeyTooLong { .. })),
        "{name}"
    );
    let too_many = vec![calls[4].clone(); MAX_BATCH + 1];
    assert!(state.batch(&too_many, AT).await.is_err(), "{name}");
    assert_eq!(
        state
            .counter_add("batch-c", 0, minute, AT)
            .await
            .expect("counter"),
        7,
        "{name}: a refused batch runs nothing"
    );

    // Key caps: past its cap of buckets the least recently used key is forgotten (and so
    // full again), the others are kept.
    let later = T0 + 300_000;
    for (i, key) in ["k1", "k2", "k3", "k4", "k5"].into_iter().enumerate() {
        take_static(state, key, later + i as u64).await;
    }
    let at = later + 10;
    assert_eq!(
        state
            .take("k5", TEN_PER_SECOND, 0, at)
            .await
            .expect("take")
            .remaining,
        0,
        "{name}: a recent key is kept"
    );
    assert_eq!(
        state
            .take("k1", TEN_PER_SECOND, 0, at)
            .await
            .expect("take")
            .remaining,
        10,
        "{name}: the least recently used key was evicted"
    );
}

async fn take_static(state: &StateHandle, key: &str, now: u64) {
    state
        .take(key, TEN_PER_SECOND, 10, now)
        .await
        .expect("take");
}

#[test]
fn the_same_arithmetic_suite_passes_in_memory_and_on_redis() {
    let server = RedisServer::start();
    let runtime = runtime();
    // Four keys of each kind (the suite's key-cap check), four members per window; a few
    // more keys would never be evicted in the suite's other steps, which use their own.
    let memory = StateHandle::Local(Arc::new(MemoryState::new(limits(4, 4))));
    runtime.block_on(arithmetic_suite(&memory, "memory"));
    let _entered = runtime.enter();
    let redis = redis_handle(&server, "suite:", limits(4, 4));
    runtime.block_on(arithmetic_suite(&redis, "redis"));
    // Every key has a time to live: nothing the suite wrote stays for ever.
    let keys = server.command(&["--scan", "--pattern", "suite:*"]);
    assert!(!keys.trim().is_empty());
    for key in keys.lines() {
        let ttl: i64 = server.command(&["PTTL", key]).trim().parse().unwrap_or(-9);
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
}

#[test]
fn a_million_rotating_keys_leave_the_server_bounded() {
    let server = RedisServer::start();
    let runtime = runtime();
    let cap = 10_000;
    let _entered = runtime.enter();
    let state = redis_handle(&server, "rot:", limits(cap, 16));
    let before = server.info_number("used_memory");
    let keys: usize = 1_000_000;
    let started = Instant::now();
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        let workers = 64;
        for worker in 0..workers {
            let state = state.clone();
            tasks.spawn(async move {
                let mut key = String::new();
                for i in (worker..keys).step_by(workers) {
                    key.clear();
                    key.push_str("user:");
                    key.push_str(&i.to_string());
                    state
                        .take(&key, TEN_PER_SECOND, 1, T0 + i as u64)
                        .await
                        .expect("take");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("worker");
        }
    });
    assert!(started.elapsed() < Duration::from_secs(600));
    let dbsize: usize = server
        .command(&["DBSIZE"])
        .trim()
        .parse()
        .unwrap_or(usize::MAX);
    // The cap of buckets, plus the module's index of them.
    assert!(dbsize <= cap + 1, "DBSIZE {dbsize} above the cap {cap}");
    // The README's estimate: at most 400 bytes per bucket key with its index entry (353
    // measured with these keys).
    let grown = server.info_number("used_memory").saturating_sub(before);
    eprintln!(
        "{keys} rotating keys: DBSIZE {dbsize}, used_memory +{grown} B ({} B per kept key), {:?}",
        grown / cap as u64,
        started.elapsed()
    );
    assert!(
        grown <= (cap as u64) * 400 + 1024 * 1024,
        "used_memory grew {grown} bytes for {cap} buckets"
    );
}

const PATIENT: &str = r#"{"resourceType":"Patient","id":"pat-123"}"#;

/// The rate-limit module: a user's bucket holds 10 and refills one an hour.
fn rate_limit_policy() -> String {
    format!(
        r#"name = "rate-limit"
module = "{}"
config = {{ defaults = {{ client = {{ capacity = 1000, refill = 1000 }}, user = {{ capacity = 10, refill = 1, period_ms = 3600000 }}, address = {{ capacity = 1000, refill = 1000 }} }}, global = {{ capacity = 100000, refill = 100000, period_ms = 1000 }} }}"#,
        guest("rate-limit").display()
    )
}

fn gateway_config(upstream: &TestUpstream, server: &RedisServer, policy: &str) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"

[admin]
listen = "{{admin}}"

[state]
backend = "redis"

[state.redis]
url = "{redis}"
key_prefix = "replicas:"
timeout_ms = 200

[[upstreams]]
name = "ehr"
url = "{url}"

[[routes]]
name = "ehr"
prefix = "/fhir"
upstream = "ehr"

[[routes.policies]]
{policy}
{identity}
"#,
        redis = server.url(),
        url = upstream.url(""),
        identity = identity_toml(),
    )
}

#[test]
fn two_replicas_sharing_redis_hold_a_user_to_one_rate_and_fail_closed_without_it() {
    let mut server = RedisServer::start();
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    let config = gateway_config(&upstream, &server, &rate_limit_policy());
    let replicas = [
        GatewayProcess::start(&config),
        GatewayProcess::start(&config),
    ];
    let token = sign(&clinician_claims());
    let status = |replica: usize| {
        get(
            replicas[replica].addr,
            "/fhir/Patient/pat-123",
            Some(&token),
        )
        .status
    };
    // The user's bucket holds 10 and refills one an hour: alternating replicas, exactly 10
    // pass in total and the 11th is refused by whichever replica it reaches.
    let statuses: Vec<u16> = (0..11).map(|i| status(i % 2)).collect();
    assert_eq!(&statuses[..10], &[200; 10], "{statuses:?}");
    assert_eq!(statuses[10], 429, "{statuses:?}");
    assert_eq!(status(1), 429);
    assert_eq!(upstream.received().len(), 10);
    let ready = get(replicas[0].admin, "/readyz", None);
    assert_eq!(ready.status, 200);
    assert!(ready.body.contains("state: redis"), "{}", ready.body);

    // The server goes away: every request is refused, nothing is forwarded unchecked, and
    // the replicas report themselves not ready.
    server.stop();
    let mut claims = clinician_claims();
    claims["sub"] = serde_json::json!("dr-second");
    let second = sign(&claims);
    for replica in &replicas {
        let refused = get(replica.addr, "/fhir/Patient/pat-123", Some(&second));
        assert_eq!(refused.status, 503, "{}", refused.body);
        assert_eq!(get(replica.admin, "/readyz", None).status, 503);
    }
    assert_eq!(
        upstream.received().len(),
        10,
        "nothing forwarded without state"
    );
    let metrics = get(replicas[0].admin, "/metrics", None).body;
    assert!(
        metrics.contains("ehrgate_state_call_errors_total{backend=\"redis\""),
        "{metrics}"
    );

    // It comes back on the same address: the replicas recover without a restart.
    let _server = RedisServer::start_on(server.addr);
    let started = Instant::now();
    let mut recovered = false;
    while started.elapsed() < Duration::from_secs(30) {
        if get(replicas[1].addr, "/fhir/Patient/pat-123", Some(&second)).status == 200 {
            recovered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        recovered,
        "the replica did not recover after the server returned"
    );
    assert_eq!(get(replicas[0].admin, "/readyz", None).status, 200);
}

#[test]
fn an_insider_alternating_between_replicas_is_caught_by_the_shared_volume_window() {
    let server = RedisServer::start();
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    let policy = format!(
        r#"name = "anomaly"
module = "{}"
config = {{ volume = {{ max_distinct_patients = 6, burst_max_distinct_patients = 1000 }} }}"#,
        guest("anomaly").display()
    );
    let config = gateway_config(&upstream, &server, &policy);
    let replicas = [
        GatewayProcess::start(&config),
        GatewayProcess::start(&config),
    ];
    let token = sign(&clinician_claims());
    // Six charts spread over both replicas: each replica alone has seen three.
    for patient in 0..6 {
        let response = get(
            replicas[patient % 2].addr,
            &format!("/fhir/Patient/p{patient}"),
            Some(&token),
        );
        assert_eq!(response.status, 200, "chart {patient}: {}", response.body);
    }
    // The seventh distinct patient crosses the shared window on either replica.
    for replica in &replicas {
        let response = get(replica.addr, "/fhir/Patient/p6", Some(&token));
        assert_eq!(response.status, 403, "{}", response.body);
        assert_eq!(
            response.rule().as_deref(),
            Some("anomaly.deny"),
            "{}",
            response.body
        );
    }
}
