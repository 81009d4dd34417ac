//! ehrgate policy `rate-limit`: token buckets per user, OAuth client (both keyed with the
//! token's issuer), source address and route, with tiers by role, client, issuer and route, a
//! cost per FHIR interaction, and a global ceiling that holds when an attacker rotates
//! identities and addresses. Anonymous requests have a ceiling of their own instead, so
//! unauthenticated traffic cannot use up what authenticated callers depend on.
//!
//! Buckets live in the host's bounded state (LRU tables with fixed capacity), so rotating
//! keys cannot grow memory; a forgotten bucket comes back full, which is why the global
//! bucket exists. Responses carry `ratelimit-limit`, `ratelimit-remaining` and
//! `ratelimit-reset` (draft-ietf-httpapi-ratelimit-headers-06) for the bucket closest to
//! empty, on allows and on 429 refusals alike, so clients can slow down before they are
//! refused. Any state error fails closed with 503.

mod config;
mod cost;
mod limiter;
mod network;

use ehrgate_sdk::state::BucketStatus;
use ehrgate_sdk::{Decision, Interaction, Level, Policy, Request, Severity};

use config::Config;
use limiter::{Dimension, Outcome};

/// The rule id of a refusal because the state backend failed.
const STATE_UNAVAILABLE_RULE: &str = "rate-limit.state-unavailable";
/// The rule id of a request that costs more than a bucket can hold.
const COST_RULE: &str = "rate-limit.cost";

struct RateLimit;

impl Policy for RateLimit {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        config.validate()
    }

    fn evaluate(config: &Config, request: &Request) -> Decision {
        let cost = cost::request_cost(&config.costs, request);
        let limits = limiter::limits_for(config, request);
        match limiter::take_all(&limits, cost) {
            Ok(Outcome::Allowed(status)) => with_ratelimit_headers(Decision::allow(), &status),
            Ok(Outcome::Refused(status, dimension)) => refused(&status, dimension, cost),
            Ok(Outcome::TooCostly {
                capacity,
                dimension,
            }) => too_costly(request, cost, capacity, dimension),
            Err(error) => state_unavailable(&error),
        }
    }
}

/// A request that costs more than one of its buckets can ever hold: a Bundle too large for
/// the caller's tier (413, split it), or an operation the tier's buckets are too small for
/// (403: the operator sized them so, for example to keep interactive users off `$export`).
fn too_costly(request: &Request, cost: u64, capacity: u64, dimension: Dimension) -> Decision {
    let is_bundle = matches!(
        request.interaction,
        Interaction::Batch | Interaction::Transaction
    );
    let (status, help) = if is_bundle {
        (413, "split the bundle")
    } else {
        (403, "it is not available to this caller")
    };
    Decision::deny(
        status,
        COST_RULE,
        &format!(
            "this request costs {cost} tokens, more than the {} limit holds ({capacity}); {help}",
            dimension.name()
        ),
    )
}

fn refused(status: &BucketStatus, dimension: Dimension, cost: u64) -> Decision {
    // A Retry-After of 0 would invite an immediate retry storm: at least one second.
    let retry_after_secs = u32::try_from(status.retry_after_ms.div_ceil(1000))
        .unwrap_or(u32::MAX)
        .max(1);
    let severity = match dimension {
        // A shared limit running dry is an operational event, not one caller's excess.
        Dimension::Global | Dimension::Route | Dimension::Anonymous => Severity::Medium,
        _ => Severity::Low,
    };
    let decision = Decision::deny(
        429,
        dimension.rule_id(),
        &format!(
            "too many requests (the {} limit); retry after {retry_after_secs} s",
            dimension.name()
        ),
    )
    .with_retry_after(retry_after_secs)
    .with_finding(
        dimension.rule_id(),
        severity,
        &format!(
            "{} bucket: cost {cost}, {} of {} tokens left, retry after {retry_after_secs} s",
            dimension.name(),
            status.remaining,
            status.limit
        ),
    );
    with_ratelimit_headers(decision, status)
}

/// The three fields of draft-ietf-httpapi-ratelimit-headers-06 (lower case, as the WIT
/// requires): quota units in the bucket, units left, and delta-seconds until it is full.
fn with_ratelimit_headers(decision: Decision, status: &BucketStatus) -> Decision {
    decision
        .with_header("ratelimit-limit", &status.limit.to_string())
        .with_header("ratelimit-remaining", &status.remaining.to_string())
        .with_header(
            "ratelimit-reset",
            &status.reset_ms.div_ceil(1000).to_string(),
        )
}

fn state_unavailable(error: &str) -> Decision {
    ehrgate_sdk::log(Level::Warn, &format!("rate-limit state error: {error}"));
    let mut detail = error.to_owned();
    if detail.len() > 512 {
        let mut cut = 512;
        while !detail.is_char_boundary(cut) {
            cut -= 1;
        }
        detail.truncate(cut);
    }
    Decision::deny(
        503,
        STATE_UNAVAILABLE_RULE,
        "the rate limit cannot be checked right now",
    )
    .with_retry_after(1)
    .with_finding(STATE_UNAVAILABLE_RULE, Severity::High, &detail)
}

ehrgate_sdk::export_policy!(RateLimit);
