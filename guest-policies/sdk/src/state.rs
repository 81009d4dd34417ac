//! The host's bounded shared state: token buckets, distinct-member windows and windowed
//! counters. Keys are namespaced per module by the host. Every function returns an error
//! string when the host refuses the call (an over-long key, a zero capacity); a policy should
//! fail closed on it.

use crate::bindings::ehrgate::policy::state as host;
pub use crate::bindings::ehrgate::policy::state::BucketStatus;

/// A token bucket's shape: `capacity` tokens, refilled by `refill_tokens` every
/// `refill_period_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub capacity: u64,
    pub refill_tokens: u64,
    pub refill_period_ms: u64,
}

impl Bucket {
    /// `per_minute` tokens a minute with bursts of up to `burst`.
    pub fn per_minute(per_minute: u64, burst: u64) -> Self {
        Bucket {
            capacity: burst,
            refill_tokens: per_minute,
            refill_period_ms: 60_000,
        }
    }

    /// Takes `cost` tokens from the bucket `key`.
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
pub fn distinct_add(key: &str, member: &str, window_ms: u64) -> Result<u32, String> {
    host::distinct_add(key, member, window_ms)
}

/// The distinct members seen under `key` in the last `window_ms`.
pub fn distinct_count(key: &str, window_ms: u64) -> Result<u32, String> {
    host::distinct_count(key, window_ms)
}

/// Adds `amount` to counter `key` and returns its total over the last `window_ms`.
pub fn counter_add(key: &str, amount: u64, window_ms: u64) -> Result<u64, String> {
    host::counter_add(key, amount, window_ms)
}
