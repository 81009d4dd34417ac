//! Several state calls in one: `take-all` (every bucket pays or none does) and `batch`
//! (calls run in order, each with its own result). On the shared backend each is one
//! round trip and one atomic step; in process they are the single calls in a loop, except
//! `take-all`, which holds the bucket table's lock throughout.

use super::{BucketSpec, BucketStatus, StateError};

/// The most buckets one `take-all` may name.
pub const MAX_TAKE_ALL: usize = 16;

/// The most calls one `batch` may hold.
pub const MAX_BATCH: usize = 64;

/// One call of a batch, with its key already behind the module's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateCall {
    Take {
        key: String,
        spec: BucketSpec,
        cost: u64,
    },
    DistinctAdd {
        key: String,
        member: String,
        window_ms: u64,
    },
    DistinctCount {
        key: String,
        window_ms: u64,
    },
    CounterAdd {
        key: String,
        amount: u64,
        window_ms: u64,
    },
}

/// What one call of a batch returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateReply {
    Bucket(BucketStatus),
    Count(u64),
}

/// Refuses a `take-all` of no, too many or repeated buckets, or one with a bucket the
/// single `take` would refuse.
pub(crate) fn check_take_all(buckets: &[(String, BucketSpec)]) -> Result<(), StateError> {
    let count = buckets.len();
    for (index, (key, spec)) in buckets.iter().enumerate() {
        super::check_key(key)?;
        spec.validate().map_err(StateError::InvalidArgument)?;
        if buckets[..index].iter().any(|(earlier, _)| earlier == key) {
            return Err(StateError::InvalidArgument(
                "take-all names the same bucket twice",
            ));
        }
    }
    if count == 0 {
        return Err(StateError::InvalidArgument(
            "take-all needs at least one bucket",
        ));
    }
    if count > MAX_TAKE_ALL {
        return Err(StateError::InvalidArgument(
            "take-all names more than 16 buckets",
        ));
    }
    Ok(())
}

/// Refuses a batch of too many calls.
pub(crate) fn check_batch(count: usize) -> Result<(), StateError> {
    if count > MAX_BATCH {
        return Err(StateError::InvalidArgument(
            "a batch holds at most 64 calls",
        ));
    }
    Ok(())
}

/// The statuses of a refused `take-all`: nothing was taken from any bucket, and a bucket
/// that had enough says so with a `retry_after_ms` of 0.
pub(crate) fn refused_all(mut statuses: Vec<BucketStatus>) -> Vec<BucketStatus> {
    for status in &mut statuses {
        status.allowed = false;
    }
    statuses
}
