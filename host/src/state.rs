//! Bounded shared state behind the guests' `state` imports: token buckets, distinct-member
//! windows and windowed counters.
//!
//! Every table has a capacity with least-recently-used eviction, so a client that rotates
//! keys (user ids, addresses, patients) cannot grow the gateway's memory; the price is that
//! the least recently seen keys are forgotten first. Tables allocate as they fill, never
//! ahead, and each state reports its entries and an estimate of its heap bytes
//! ([`StateStats`]; the formula is on [`MemoryStateLimits`]).
//!
//! State is partitioned by module ([`MemoryPartitions`]): each policy module has its own
//! [`MemoryState`] with its own capacities, so a module that floods its tables can only
//! evict its own keys. A module gets the limits the operator gave it, or else an even share
//! of the `[state]` totals; partitions keep their entries across reloads and are resized.
//! Keys still carry their module's namespace (`<module>/`), which routes them when the
//! partitions stand behind one [`StateBackend`].
//!
//! Time is always passed in by the caller (the request's receive time), so behaviour is
//! deterministic and testable without sleeping. With `[state] backend = "redis"` every
//! replica shares the same state on a Redis or Valkey server ([`RedisState`]); a module's
//! imports reach either through its [`StateHandle`].

mod batch;
mod bucket;
mod counter;
#[cfg(test)]
mod counting_alloc;
mod distinct;
mod footprint;
mod gateway;
mod handle;
mod memory;
mod metrics;
mod partitions;
mod provider;
mod redis;
mod table;

pub use batch::{MAX_BATCH, MAX_TAKE_ALL, StateCall, StateReply};
pub use bucket::{BucketSpec, BucketStatus};
pub use gateway::GatewayState;
pub use handle::StateHandle;
pub use memory::{MemoryState, MemoryStateLimits, StateStats, limits_problems};
pub use metrics::{BackendLabels, CallLabels, StateCallMetrics, state_call_metrics};
pub use partitions::{MemoryPartitions, even_share};
pub use provider::StateProvider;
pub use redis::{RedisPartition, RedisSettings, RedisState};

/// The longest key or member a guest may use, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// The longest key the backend stores: a guest's key behind its module's namespace.
pub const MAX_STORED_KEY_BYTES: usize = 2 * MAX_KEY_BYTES;

/// Why the state backend refused a call. The message is returned to the guest, which is
/// expected to fail closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("key or member is {len} bytes; at most {max} bytes are allowed")]
    KeyTooLong { len: usize, max: usize },
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    #[error("state backend unavailable: {0}")]
    Unavailable(String),
}

/// Shared, bounded state. Implementations must be quick: guests call them synchronously
/// and the epoch deadline does not interrupt host calls.
pub trait StateBackend: Send + Sync + 'static {
    /// Takes `cost` tokens from the bucket `key` shaped by `spec`, at time `now_ms`.
    fn take(
        &self,
        key: &str,
        spec: BucketSpec,
        cost: u64,
        now_ms: u64,
    ) -> Result<BucketStatus, StateError>;

    /// Adds `member` under `key` at `now_ms` and returns the distinct members seen in the
    /// last `window_ms`.
    fn distinct_add(
        &self,
        key: &str,
        member: &str,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<u32, StateError>;

    /// The distinct members seen under `key` in the last `window_ms`.
    fn distinct_count(&self, key: &str, window_ms: u64, now_ms: u64) -> Result<u32, StateError>;

    /// Adds `amount` to counter `key` and returns its total over the last `window_ms`.
    fn counter_add(
        &self,
        key: &str,
        amount: u64,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<u64, StateError>;

    /// Takes `cost` tokens from every bucket in `buckets` or from none: when one is short,
    /// nothing is taken and every status has `allowed` false (a short bucket's
    /// `retry_after_ms` above 0, the others' 0). At most [`MAX_TAKE_ALL`] buckets.
    fn take_all(
        &self,
        buckets: &[(String, BucketSpec)],
        cost: u64,
        now_ms: u64,
    ) -> Result<Vec<BucketStatus>, StateError>;
}

/// Checks a key or member against `max` bytes.
pub fn check_length(key: &str, max: usize) -> Result<(), StateError> {
    if key.len() > max {
        return Err(StateError::KeyTooLong {
            len: key.len(),
            max,
        });
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), StateError> {
    check_length(key, MAX_STORED_KEY_BYTES)
}

fn check_member(member: &str) -> Result<(), StateError> {
    check_length(member, MAX_KEY_BYTES)
}

fn check_window(window_ms: u64) -> Result<(), StateError> {
    if window_ms == 0 {
        return Err(StateError::InvalidArgument("window-ms must be above 0"));
    }
    Ok(())
}
