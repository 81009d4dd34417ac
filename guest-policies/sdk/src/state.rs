//! The host's bounded shared state: token buckets, distinct-member windows and windowed
//! counters. Keys are namespaced per module by the host. Every function returns an error
//! string when the host refuses the call (an over-long key, a zero capacity); a policy should
//! fail closed on it.
//!
//! These call the host, so they work only inside the gateway: the examples here compile but
//! do not run. In a native unit test every call returns [`NOT_IN_GATEWAY`] (the rule then
//! takes its fail-closed path); test rules that depend on state with fixture cases, whose
//! `state` and `before` keys set what the module finds.

#[cfg(target_arch = "wasm32")]
use crate::bindings::ehrgate::policy::state as host;
pub use crate::bindings::ehrgate::policy::state::BucketStatus;

/// What every state call returns outside the gateway.
pub const NOT_IN_GATEWAY: &str = "ehrgate state exists only inside the gateway; test rules that use it with `ehrgate policy test` fixture cases (`state` and `before`)";

/// Outside the gateway (a native `cargo test` of a policy) there is no host to call: every
/// function answers [`NOT_IN_GATEWAY`], which a policy handles like any state failure,
/// instead of aborting the whole test binary.
#[cfg(not(target_arch = "wasm32"))]
mod host {
    use super::{BucketStatus, NOT_IN_GATEWAY};

    pub fn take(_: &str, _: u64, _: u64, _: u64, _: u64) -> Result<BucketStatus, String> {
        Err(NOT_IN_GATEWAY.to_owned())
    }

    pub fn distinct_add(_: &str, _: &str, _: u64) -> Result<u32, String> {
        Err(NOT_IN_GATEWAY.to_owned())
    }

    pub fn distinct_count(_: &str, _: u64) -> Result<u32, String> {
        Err(NOT_IN_GATEWAY.to_owned())
    }

    pub fn counter_add(_: &str, _: u64, _: u64) -> Result<u64, String> {
        Err(NOT_IN_GATEWAY.to_owned())
    }
}

/// A token bucket's shape: `capacity` tokens, refilled by `refill_tokens` every
/// `refill_period_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// The most tokens the bucket holds: the largest burst.
    pub capacity: u64,
    /// Tokens added every `refill_period_ms`, continuously (a fraction of them sooner).
    pub refill_tokens: u64,
    /// The refill period in milliseconds.
    pub refill_period_ms: u64,
}

impl Bucket {
    /// `per_minute` tokens a minute with bursts of up to `burst`.
    ///
    /// ```
    /// use ehrgate_sdk::state::Bucket;
    ///
    /// let per_user = Bucket::per_minute(120, 20);
    /// assert_eq!((per_user.capacity, per_user.refill_tokens), (20, 120));
    /// ```
    pub fn per_minute(per_minute: u64, burst: u64) -> Self {
        Bucket {
            capacity: burst,
            refill_tokens: per_minute,
            refill_period_ms: 60_000,
        }
    }

    /// Takes `cost` tokens from the bucket `key`. A bucket seen for the first time starts
    /// full; a `cost` above the capacity is never allowed.
    ///
    /// ```no_run
    /// use ehrgate_sdk::keys::state_key;
    /// use ehrgate_sdk::state::Bucket;
    /// use ehrgate_sdk::{Decision, Request};
    ///
    /// fn limit(request: &Request) -> Decision {
    ///     let key = state_key("user", request.subject());
    ///     match Bucket::per_minute(120, 20).take(&key, 1) {
    ///         Ok(status) if status.allowed => Decision::allow()
    ///             .with_header("ratelimit-remaining", &status.remaining.to_string()),
    ///         Ok(status) => {
    ///             let seconds = u32::try_from(status.retry_after_ms.div_ceil(1000));
    ///             Decision::deny(429, "rate-limit.user", "too many requests")
    ///                 .with_retry_after(seconds.unwrap_or(u32::MAX))
    ///         }
    ///         // Fail closed: a refused state call must not let the request through.
    ///         Err(_) => Decision::deny(503, "rate-limit.state", "rate limit unavailable"),
    ///     }
    /// }
    /// ```
    pub fn take(&self, key: &str, cost: u64) -> Result<BucketStatus, String> {
        host::take(
            key,
            self.capacity,
            self.refill_tokens,
            self.refill_period_ms,
            cost,
        )
    }
}

/// Records `member` under `key` and returns the distinct members seen in the last
/// `window_ms`, this one included.
///
/// ```no_run
/// use ehrgate_sdk::keys::{state_key, state_member};
/// use ehrgate_sdk::state::distinct_add;
/// use ehrgate_sdk::{Decision, Request, Severity};
///
/// // Flag a user who opens more than 50 different charts in an hour.
/// fn chart_volume(request: &Request) -> Decision {
///     let key = state_key("patients-per-hour", request.subject());
///     let mut decision = Decision::allow();
///     for patient in &request.patients {
///         match distinct_add(&key, &state_member(patient), 3_600_000) {
///             Ok(count) if count > 50 => {
///                 decision = decision.with_risk(60).with_finding(
///                     "anomaly.volume",
///                     Severity::Medium,
///                     &format!("{count} distinct patients in the last hour"),
///                 );
///             }
///             Ok(_) => {}
///             Err(_) => return Decision::deny(503, "anomaly.state", "state unavailable"),
///         }
///     }
///     decision
/// }
/// ```
pub fn distinct_add(key: &str, member: &str, window_ms: u64) -> Result<u32, String> {
    host::distinct_add(key, member, window_ms)
}

/// The distinct members seen under `key` in the last `window_ms`.
pub fn distinct_count(key: &str, window_ms: u64) -> Result<u32, String> {
    host::distinct_count(key, window_ms)
}

/// Adds `amount` to counter `key` and returns its total over the last `window_ms`.
///
/// ```no_run
/// use ehrgate_sdk::keys::state_key;
/// use ehrgate_sdk::state::counter_add;
///
/// // Failed break-the-glass attempts by one user over a day.
/// let failures = counter_add(&state_key("btg-failures", "dr-adams"), 1, 86_400_000);
/// if failures.is_ok_and(|total| total >= 3) {
///     // notify, raise the risk, or deny
/// }
/// ```
pub fn counter_add(key: &str, amount: u64, window_ms: u64) -> Result<u64, String> {
    host::counter_add(key, amount, window_ms)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn outside_the_gateway_state_calls_fail_with_a_reason() {
        assert_eq!(
            distinct_add("patients:dr-a", "p1", 3_600_000),
            Err(NOT_IN_GATEWAY.to_owned())
        );
        let error = Bucket::per_minute(60, 10).take("user:dr-a", 1).unwrap_err();
        assert!(error.contains("ehrgate policy test"), "{error}");
    }
}
