//! The state imports through the engine: buckets and distinct counts persist across
//! requests in the host, namespaced per module, driven by the request's clock.

use crate::support::{chaos_request, engine, load};
use ehrgate::engine::ConfiguredPolicy;

fn bucket_take(policy: &std::sync::Arc<ConfiguredPolicy>, time_ms: u64) -> Option<u16> {
    let mut request = chaos_request("bucket");
    request.time_ms = time_ms;
    let decision = policy.evaluate(&request).expect("evaluates");
    decision.denial.map(|d| d.status)
}

#[test]
fn token_buckets_live_in_the_host_between_fresh_instances() {
    let engine = engine();
    let chaos = load(&engine, "chaos", "chaos", "{}");
    // The fixture's bucket: capacity 2, one token a second.
    assert_eq!(bucket_take(&chaos, 10_000), None);
    assert_eq!(bucket_take(&chaos, 10_000), None);
    assert_eq!(bucket_take(&chaos, 10_000), Some(429));
    assert_eq!(bucket_take(&chaos, 10_999), Some(429));
    assert_eq!(bucket_take(&chaos, 11_000), None);

    let mut request = chaos_request("bucket");
    request.time_ms = 11_000;
    let denial = chaos.evaluate(&request).unwrap().denial.unwrap();
    assert_eq!(denial.retry_after_secs, Some(1));
}

#[test]
fn modules_do_not_share_state() {
    let engine = engine();
    let one = load(&engine, "one", "chaos", "{}");
    let two = load(&engine, "two", "chaos", "{}");
    assert_eq!(bucket_take(&one, 0), None);
    assert_eq!(bucket_take(&one, 0), None);
    assert_eq!(bucket_take(&one, 0), Some(429));
    assert_eq!(bucket_take(&two, 0), None, "`two` has its own bucket");
}

#[test]
fn distinct_counts_follow_the_patients_a_user_touches() {
    let engine = engine();
    let chaos = load(&engine, "chaos", "chaos", "{}");
    let counts: Vec<String> = ["p1", "p2", "p1", "p3"]
        .iter()
        .enumerate()
        .map(|(i, patient)| {
            let mut request = chaos_request("distinct");
            request.patients = vec![(*patient).into()];
            request.time_ms = 1_000 + i as u64;
            chaos.evaluate(&request).unwrap().findings[0].detail.clone()
        })
        .collect();
    assert_eq!(counts, ["1", "2", "2", "3"]);
}
