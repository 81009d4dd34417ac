//! Policies cannot disturb each other: the real gateway with a misbehaving module on one
//! route and a well-behaved one on another. While the noisy module loops, burns CPU, floods
//! state or saturates its own budget, the clean route keeps answering without an error,
//! and a rate-limited user stays limited.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::gateway::GatewayProcess;
use crate::support::guest;
use crate::support::http::get;
use crate::support::tokens::{clinician_claims, identity_toml, sign};
use crate::support::upstream::{Reply, TestUpstream};

const PATIENT: &str = r#"{"resourceType":"Patient","id":"pat-123"}"#;

/// Two routes on one upstream: `/clean` guarded by `clean_config`, `/noisy` by
/// `noisy_config`, each module with a budget of two calls and a short queue, in an instance
/// pool with room for exactly those slots. The default 5 ms deadline: it counts running
/// time, so the loaded test machine must not fail the clean route's calls.
fn config(upstream: &TestUpstream, clean_config: &str, noisy_config: &str, state: &str) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"

[admin]
listen = "{{admin}}"

[limits]
max_concurrent_requests = 4096

[sandbox]
max_concurrent_instances = 4
max_concurrent_calls = 2
max_queued_calls = 8
queue_timeout_ms = 50

[state]
{state}

[[upstreams]]
name = "ehr"
url = "{url}"
timeout_ms = 5000

[[routes]]
name = "clean"
prefix = "/clean"
upstream = "ehr"

[[routes.policies]]
name = "clean"
module = "{module}"
config = {clean_config}

[[routes]]
name = "noisy"
prefix = "/noisy"
upstream = "ehr"

[[routes.policies]]
name = "noisy"
module = "{module}"
config = {noisy_config}
{identity}
"#,
        url = upstream.url(""),
        module = guest("chaos").display(),
        identity = identity_toml(),
    )
}

/// Statuses (with the refusal's rule) of the requests `clients` threads sent to `target`
/// until `stop` was set, at most `limit` each.
fn hammer(
    addr: SocketAddr,
    target: &'static str,
    token: Arc<String>,
    clients: usize,
    limit: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<BTreeMap<String, usize>> {
    std::thread::spawn(move || {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                let (token, stop) = (token.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut seen = BTreeMap::new();
                    for _ in 0..limit {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let response = get(addr, target, Some(&token));
                        let key = format!(
                            "{} {}",
                            response.status,
                            response.rule().unwrap_or_default()
                        );
                        *seen.entry(key).or_insert(0) += 1;
                    }
                    seen
                })
            })
            .collect();
        let mut total = BTreeMap::new();
        for worker in workers {
            for (key, count) in worker.join().expect("client thread") {
                *total.entry(key).or_insert(0) += count;
            }
        }
        total
    })
}

/// Runs `clients` noisy clients for a while and, meanwhile, `clean_requests` requests on
/// the clean route one after another; returns the clean statuses and the noisy tally.
fn clean_beside_noisy(
    gateway: &GatewayProcess,
    clients: usize,
    clean_requests: usize,
) -> (Vec<(u16, String)>, BTreeMap<String, usize>) {
    let token = Arc::new(sign(&clinician_claims()));
    let stop = Arc::new(AtomicBool::new(false));
    let noisy = hammer(
        gateway.addr,
        "/noisy/Patient/pat-123",
        token.clone(),
        clients,
        2_000,
        stop.clone(),
    );
    // Let the noisy route fill its budget first.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut clean = Vec::new();
    for _ in 0..clean_requests {
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let response = get(gateway.addr, "/clean/Patient/pat-123", Some(&token));
        clean.push((response.status, response.body.clone()));
    }
    stop.store(true, Ordering::Relaxed);
    let noisy = noisy.join().expect("noisy clients");
    (clean, noisy)
}

fn assert_all_served(clean: &[(u16, String)], what: &str) {
    assert!(!clean.is_empty());
    let failed: Vec<_> = clean.iter().filter(|(status, _)| *status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} clean requests failed while the noisy module {what}: {:?}",
        failed.len(),
        clean.len(),
        failed.first()
    );
}

fn refused_with(noisy: &BTreeMap<String, usize>, prefix: &str) -> usize {
    noisy
        .iter()
        .filter(|(key, _)| key.starts_with(prefix))
        .map(|(_, count)| count)
        .sum()
}

#[test]
fn a_looping_module_stops_only_its_own_route() {
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    let gateway = GatewayProcess::start(&config(&upstream, "{}", r#"{ behaviour = "loop" }"#, ""));
    let (clean, noisy) = clean_beside_noisy(&gateway, 8, 60);
    assert_all_served(&clean, "looped");
    // Every noisy request was refused: stopped at its deadline or past its budget.
    assert_eq!(refused_with(&noisy, "200"), 0, "{noisy:?}");
    assert!(refused_with(&noisy, "503 policy-error") > 0, "{noisy:?}");
    let metrics = get(gateway.admin, "/metrics", None).body;
    // Stopped at its deadline, or, when the test machine is saturated and its long-call
    // threads get no core, at the wall-clock backstop.
    assert!(
        metrics.contains(r#"ehrgate_policy_faults_total{module="noisy",kind="deadline"}"#)
            || metrics.contains(r#"ehrgate_policy_faults_total{module="noisy",kind="wall-limit"}"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains(r#"module="clean",kind="#),
        "the clean module had faults: {metrics}"
    );
}

#[test]
fn a_module_that_burns_cpu_saturates_only_its_own_budget() {
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    // Legal but slow: about a few milliseconds of work per call in a release build, more
    // in a debug one; the deadline is roomy so that the calls finish.
    let gateway = GatewayProcess::start(
        &config(
            &upstream,
            "{}",
            r#"{ behaviour = "burn", burn_iterations = 3000000 }"#,
            "",
        )
        // Calls past their first millisecond run only on idle CPU: on a test machine busy
        // with other tests they may take seconds of wall time, which this test allows.
        .replace(
            "[sandbox]\n",
            "[sandbox]\ndeadline_ms = 500\nwall_limit_ms = 10000\n",
        ),
    );
    let (clean, noisy) = clean_beside_noisy(&gateway, 16, 60);
    assert_all_served(&clean, "burned CPU");
    assert!(refused_with(&noisy, "200") > 0, "{noisy:?}");
    assert!(
        refused_with(&noisy, "503 policy-error") > 0,
        "16 clients never filled a budget of 2 calls and 8 queued: {noisy:?}"
    );
    let metrics = get(gateway.admin, "/metrics", None).body;
    assert!(
        metrics.contains(r#"ehrgate_policy_faults_total{module="noisy",kind="saturated"}"#),
        "{metrics}"
    );
}

#[test]
fn a_rate_limited_user_stays_limited_while_another_module_floods_state() {
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    // A bucket of two tokens per user that refills once an hour, and a module that inserts
    // 200 new keys into every table on every call, against tables of 500 keys in all.
    let gateway = GatewayProcess::start(
        &config(
            &upstream,
            r#"{ behaviour = "bucket", bucket_period_ms = 3600000 }"#,
            r#"{ behaviour = "flood", flood_keys = 200 }"#,
            "buckets = 500\ncounters = 500\ndistinct_keys = 500\ndistinct_members_per_key = 10\ndistinct_member_budget = 500",
        )
        // The flood's calls run long and so only on idle CPU; the test is about memory.
        .replace(
            "[sandbox]\n",
            "[sandbox]\ndeadline_ms = 1000\nwall_limit_ms = 60000\n",
        ),
    );
    let token = sign(&clinician_claims());
    let statuses: Vec<u16> = (0..3)
        .map(|_| get(gateway.addr, "/clean/Patient/pat-123", Some(&token)).status)
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    for _ in 0..20 {
        let response = get(gateway.addr, "/noisy/Patient/pat-123", Some(&token));
        assert_eq!(response.status, 200, "{response:?}");
    }
    let response = get(gateway.addr, "/clean/Patient/pat-123", Some(&token));
    assert_eq!(
        response.status, 429,
        "the flood evicted the user's bucket: {response:?}"
    );
}

/// The sum of a metric's samples whose line starts with `prefix`.
fn metric_sum(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

#[test]
fn a_state_flood_fills_its_partition_and_stays_within_the_memory_estimate() {
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    // The default `[state]` totals, shared by two modules: the flooder may hold 50,000
    // buckets, 50,000 counters and 25,000 distinct windows.
    let gateway = GatewayProcess::start(
        &config(
            &upstream,
            "{}",
            r#"{ behaviour = "flood", flood_keys = 1000 }"#,
            "",
        )
        // The flood's calls run long and so only on idle CPU; the test is about memory.
        .replace(
            "[sandbox]\n",
            "[sandbox]\ndeadline_ms = 1000\nwall_limit_ms = 60000\n",
        ),
    );
    let token = sign(&clinician_claims());
    assert_eq!(
        get(gateway.addr, "/clean/Patient/pat-123", Some(&token)).status,
        200
    );
    let before = gateway.rss_bytes();
    for _ in 0..60 {
        let response = get(gateway.addr, "/noisy/Patient/pat-123", Some(&token));
        assert_eq!(response.status, 200, "{response:?}");
    }
    let after = gateway.rss_bytes();
    let metrics = get(gateway.admin, "/metrics", None).body;
    let held = |table: &str| {
        metric_sum(
            &metrics,
            &format!(r#"ehrgate_state_entries{{module="noisy",table="{table}"}}"#),
        )
    };
    let capacity = |table: &str| {
        metric_sum(
            &metrics,
            &format!(r#"ehrgate_state_capacity{{module="noisy",table="{table}"}}"#),
        )
    };
    for table in ["buckets", "counters", "distinct_windows"] {
        assert_eq!(held(table), capacity(table), "{table} not full: {metrics}");
    }
    assert_eq!(capacity("buckets"), 50_000, "an even share of the totals");
    let estimate = metric_sum(&metrics, "ehrgate_state_max_estimated_bytes{");
    let grown = after.saturating_sub(before);
    assert!(
        grown <= estimate,
        "RSS grew by {grown} bytes, more than the state estimate of {estimate} bytes"
    );
}

#[test]
fn a_policy_sets_only_the_response_headers_its_route_allows() {
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    let gateway = GatewayProcess::start(
        &config(
            &upstream,
            r#"{ headers = [["x-policy-notice", "reviewed"], ["ratelimit-remaining", "7"]] }"#,
            r#"{ headers = [["refresh", "0; url=https://evil.example/phish"]] }"#,
            "",
        )
        .replace(
            "prefix = \"/clean\"\nupstream = \"ehr\"\n",
            "prefix = \"/clean\"\nupstream = \"ehr\"\npolicy_response_headers = [\"x-policy-notice\"]\n",
        ),
    );
    let token = sign(&clinician_claims());
    let allowed = get(gateway.addr, "/clean/Patient/pat-123", Some(&token));
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.header("x-policy-notice"), Some("reviewed"));
    assert_eq!(allowed.header("ratelimit-remaining"), Some("7"));
    let refused = get(gateway.addr, "/noisy/Patient/pat-123", Some(&token));
    assert_eq!(
        (refused.status, refused.rule().as_deref()),
        (500, Some("policy-error")),
        "{refused:?}"
    );
    assert_eq!(refused.header("refresh"), None);
    assert!(
        upstream.received().len() == 1,
        "the refused request was forwarded"
    );
    let metrics = get(gateway.admin, "/metrics", None).body;
    assert!(
        metrics.contains(r#"ehrgate_policy_faults_total{module="noisy",kind="bad-output"} 1"#),
        "{metrics}"
    );
}

#[test]
fn guest_log_lines_are_escaped_capped_and_counted() {
    let upstream = TestUpstream::start(Reply::json(PATIENT));
    let gateway = GatewayProcess::start(&config(
        &upstream,
        "{}",
        r#"{ behaviour = "log-spam" }"#,
        "",
    ));
    let token = sign(&clinician_claims());
    let response = get(gateway.addr, "/noisy/Patient/pat-123", Some(&token));
    assert_eq!(response.status, 200, "{response:?}");
    let metrics = get(gateway.admin, "/metrics", None).body;
    // 40 lines against the default cap of 16 per call.
    assert!(
        metrics.contains(r#"ehrgate_policy_guest_log_dropped_total{module="noisy"} 24"#),
        "{metrics}"
    );
    assert!(gateway.wait_for_log("spam 15"));
    let log = gateway.log();
    assert!(!log.contains("spam 16"), "a line past the cap was logged");
    assert!(
        !log.lines().any(|line| line.starts_with("forged line")),
        "a guest's newline started a line of its own"
    );
}
