//! A module's state as its imports reach it: in this process ([`StateBackend`]) or on a
//! Redis / Valkey server shared by every replica ([`RedisState`]). The in-process calls
//! return at once; the Redis calls wait on the network without holding a thread (the
//! imports are async host functions).

use std::sync::Arc;
use std::time::Instant;

use super::metrics::{Backend, Operation, record_call};
use super::redis::RedisPartition;
use super::{BucketSpec, BucketStatus, StateBackend, StateError};

/// Runs an in-process call and counts it (Redis calls are counted where they wait).
fn local<T>(
    operation: Operation,
    call: impl FnOnce() -> Result<T, StateError>,
) -> Result<T, StateError> {
    let started = Instant::now();
    let result = call();
    record_call(
        Backend::Memory,
        operation,
        started.elapsed(),
        result.is_err(),
    );
    result
}

/// Where one module's state lives; cheap to clone.
#[derive(Clone)]
pub enum StateHandle {
    Local(Arc<dyn StateBackend>),
    Redis(Arc<RedisPartition>),
}

impl StateHandle {
    /// Takes `cost` tokens from the bucket `key` shaped by `spec`, at time `now_ms`.
    pub async fn take(
        &self,
        key: &str,
        spec: BucketSpec,
        cost: u64,
        now_ms: u64,
    ) -> Result<BucketStatus, StateError> {
        match self {
            StateHandle::Local(state) => {
                local(Operation::Take, || state.take(key, spec, cost, now_ms))
            }
            StateHandle::Redis(state) => state.take(key, spec, cost, now_ms).await,
        }
    }

    /// Adds `member` under `key` at `now_ms`; the distinct members of the last `window_ms`.
    pub async fn distinct_add(
        &self,
        key: &str,
        member: &str,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<u32, StateError> {
        match self {
            StateHandle::Local(state) => local(Operation::DistinctAdd, || {
                state.distinct_add(key, member, window_ms, now_ms)
            }),
            StateHandle::Redis(state) => state.distinct_add(key, member, window_ms, now_ms).await,
        }
    }

    /// The distinct members seen under `key` in the last `window_ms`.
    pub async fn distinct_count(
        &self,
        key: &str,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<u32, StateError> {
        match self {
            StateHandle::Local(state) => local(Operation::DistinctCount, || {
                state.distinct_count(key, window_ms, now_ms)
            }),
            StateHandle::Redis(state) => state.distinct_count(key, window_ms, now_ms).await,
        }
    }

    /// Adds `amount` to counter `key`; its total over the last `window_ms`.
    pub async fn counter_add(
        &self,
        key: &str,
        amount: u64,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<u64, StateError> {
        match self {
            StateHandle::Local(state) => local(Operation::CounterAdd, || {
                state.counter_add(key, amount, window_ms, now_ms)
            }),
            StateHandle::Redis(state) => state.counter_add(key, amount, window_ms, now_ms).await,
        }
    }
}
