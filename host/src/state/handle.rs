//! A module's state as its imports reach it: in this process ([`StateBackend`]) or on a
//! Redis / Valkey server shared by every replica ([`RedisState`]). The in-process calls
//! return at once; the Redis calls wait on the network without holding a thread (the
//! imports are async host functions).

use std::sync::Arc;
use std::time::Instant;

use super::batch::check_batch;
use super::metrics::{Backend, Operation, record_call};
use super::redis::RedisPartition;
use super::{BucketSpec, BucketStatus, StateBackend, StateCall, StateError, StateReply};

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

    /// Takes `cost` from every bucket in `buckets` or from none (see
    /// [`StateBackend::take_all`]); one round trip on a shared backend.
    pub async fn take_all(
        &self,
        buckets: &[(String, BucketSpec)],
        cost: u64,
        now_ms: u64,
    ) -> Result<Vec<BucketStatus>, StateError> {
        match self {
            StateHandle::Local(state) => {
                local(Operation::TakeAll, || state.take_all(buckets, cost, now_ms))
            }
            StateHandle::Redis(state) => state.take_all(buckets, cost, now_ms).await,
        }
    }

    /// Runs `calls` in order, each with its own result; one round trip on a shared
    /// backend. Refused whole past [`super::MAX_BATCH`] calls.
    pub async fn batch(
        &self,
        calls: &[StateCall],
        now_ms: u64,
    ) -> Result<Vec<Result<StateReply, StateError>>, StateError> {
        match self {
            StateHandle::Local(state) => {
                check_batch(calls.len())?;
                Ok(calls
                    .iter()
                    .map(|call| run_local(&**state, call, now_ms))
                    .collect())
            }
            StateHandle::Redis(state) => state.batch(calls, now_ms).await,
        }
    }
}

/// One call of a batch on an in-process backend.
fn run_local(
    state: &dyn StateBackend,
    call: &StateCall,
    now_ms: u64,
) -> Result<StateReply, StateError> {
    match call {
        StateCall::Take { key, spec, cost } => local(Operation::Take, || {
            state
                .take(key, *spec, *cost, now_ms)
                .map(StateReply::Bucket)
        }),
        StateCall::DistinctAdd {
            key,
            member,
            window_ms,
        } => local(Operation::DistinctAdd, || {
            state
                .distinct_add(key, member, *window_ms, now_ms)
                .map(|count| StateReply::Count(count.into()))
        }),
        StateCall::DistinctCount { key, window_ms } => local(Operation::DistinctCount, || {
            state
                .distinct_count(key, *window_ms, now_ms)
                .map(|count| StateReply::Count(count.into()))
        }),
        StateCall::CounterAdd {
            key,
            amount,
            window_ms,
        } => local(Operation::CounterAdd, || {
            state
                .counter_add(key, *amount, *window_ms, now_ms)
                .map(StateReply::Count)
        }),
    }
}
