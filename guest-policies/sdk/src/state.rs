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
use crate::bindings::ehrgate::policy::state::{BucketTake, Call, Reply};

/// The most buckets one [`take_all`] may name.
pub const MAX_TAKE_ALL: usize = 16;

/// The most calls the host runs in one batch; [`Batch::run`] sends longer batches in parts.
pub const MAX_BATCH: usize = 64;

/// What every state call returns outside the gateway.
pub const NOT_IN_GATEWAY: &str = "ehrgate state exists only inside the gateway; test rules that use it with `ehrgate policy test` fixture cases (`state` and `before`)";

/// Outside the gateway (a native `cargo test` of a policy) there is no host to call: every
/// function answers [`NOT_IN_GATEWAY`], which a policy handles like any state failure,
/// instead of aborting the whole test binary.
#[cfg(not(target_arch = "wasm32"))]
mod host {
    use super::{BucketStatus, BucketTake, Call, NOT_IN_GATEWAY, Reply};

    pub fn take_all(_: &[BucketTake], _: u64) -> Result<Vec<BucketStatus>, String> {
        Err(NOT_IN_GATEWAY.to_owned())
    }

    pub fn batch(_: &[Call]) -> Result<Vec<Result<Reply, String>>, String> {
        Err(NOT_IN_GATEWAY.to_owned())
    }

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
    fn lowered(&self, key: &str) -> BucketTake {
        BucketTake {
            key: key.to_owned(),
            capacity: self.capacity,
            refill_tokens: self.refill_tokens,
            refill_period_ms: self.refill_period_ms,
        }
    }

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

/// Takes `cost` tokens from every bucket in `buckets` (each a key and its shape), or from
/// none: when one bucket is short nothing is taken anywhere, so a request refused by one
/// limit costs the caller nothing against the others. The statuses come in the order of
/// `buckets`; when refused every status has `allowed` false, and the short buckets are the
/// ones with a `retry_after_ms` above 0. One host call (one round trip on a shared backend,
/// where it is also one atomic step). At most [`MAX_TAKE_ALL`] buckets, each key once.
///
/// ```no_run
/// use ehrgate_sdk::state::{Bucket, take_all};
///
/// let user = Bucket::per_minute(120, 20);
/// let client = Bucket::per_minute(600, 100);
/// let statuses = take_all(&[("user:dr-a", user), ("client:ward-app", client)], 1);
/// match statuses {
///     Ok(statuses) if statuses[0].allowed => { /* both paid */ }
///     Ok(statuses) => {
///         let short = statuses.iter().position(|s| s.retry_after_ms > 0);
///         // refuse with the limit at `short`
///     }
///     Err(_) => { /* fail closed */ }
/// }
/// ```
pub fn take_all(buckets: &[(&str, Bucket)], cost: u64) -> Result<Vec<BucketStatus>, String> {
    let buckets: Vec<BucketTake> = buckets
        .iter()
        .map(|(key, bucket)| bucket.lowered(key))
        .collect();
    host::take_all(&buckets, cost)
}

/// Several state calls sent to the host together: one host call (one round trip on a
/// shared backend) instead of one each. Calls run in the order they were added; each
/// returns a [`Ticket`] to read its result by after [`Batch::run`]. Use it when the calls do
/// not depend on each other's results.
///
/// ```no_run
/// use ehrgate_sdk::state::Batch;
///
/// let mut batch = Batch::new();
/// let hour = batch.distinct_add("patients-hour:dr-a", "p1", 3_600_000);
/// let searches = batch.counter_add("name-searches:dr-a", 1, 3_600_000);
/// let replies = batch.run();
/// let in_hour = replies.count(hour);
/// let total = replies.count(searches);
/// ```
#[derive(Debug, Default)]
pub struct Batch {
    calls: Vec<Call>,
}

/// Where one call's result will be in a batch's [`Replies`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(usize);

/// The results of a [`Batch`], read by [`Ticket`].
#[derive(Debug)]
pub struct Replies {
    replies: Vec<Result<Reply, String>>,
}

impl Batch {
    pub fn new() -> Self {
        Batch::default()
    }

    fn push(&mut self, call: Call) -> Ticket {
        self.calls.push(call);
        Ticket(self.calls.len() - 1)
    }

    /// [`Bucket::take`], batched.
    pub fn take(&mut self, key: &str, bucket: Bucket, cost: u64) -> Ticket {
        self.push(Call::Take((bucket.lowered(key), cost)))
    }

    /// [`distinct_add`], batched.
    pub fn distinct_add(&mut self, key: &str, member: &str, window_ms: u64) -> Ticket {
        self.push(Call::DistinctAdd((
            key.to_owned(),
            member.to_owned(),
            window_ms,
        )))
    }

    /// [`distinct_count`], batched.
    pub fn distinct_count(&mut self, key: &str, window_ms: u64) -> Ticket {
        self.push(Call::DistinctCount((key.to_owned(), window_ms)))
    }

    /// [`counter_add`], batched.
    pub fn counter_add(&mut self, key: &str, amount: u64, window_ms: u64) -> Ticket {
        self.push(Call::CounterAdd((key.to_owned(), amount, window_ms)))
    }

    /// How many calls the batch holds.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Sends the calls: one host call per [`MAX_BATCH`] of them, none for an empty batch.
    /// A call the host refused, or every call of a part the host could not run (the
    /// backend is unavailable), reads as an error through its ticket.
    pub fn run(self) -> Replies {
        let mut replies = Vec::with_capacity(self.calls.len());
        for part in self.calls.chunks(MAX_BATCH) {
            match host::batch(part) {
                Ok(results) if results.len() == part.len() => replies.extend(results),
                Ok(results) => replies.extend(part.iter().map(|_| {
                    Err(format!(
                        "the host answered {} of {} state calls",
                        results.len(),
                        part.len()
                    ))
                })),
                Err(error) => replies.extend(part.iter().map(|_| Err(error.clone()))),
            }
        }
        Replies { replies }
    }
}

impl Replies {
    fn get(&self, ticket: Ticket) -> Result<&Reply, String> {
        match self.replies.get(ticket.0) {
            Some(Ok(reply)) => Ok(reply),
            Some(Err(error)) => Err(error.clone()),
            None => Err("no such call in this batch".to_owned()),
        }
    }

    /// The first error among the calls, if any: a policy that must fail closed when any
    /// of its state calls failed checks this once.
    pub fn first_error(&self) -> Option<&str> {
        self.replies
            .iter()
            .find_map(|reply| reply.as_ref().err().map(String::as_str))
    }

    /// The status of a batched take.
    pub fn bucket(&self, ticket: Ticket) -> Result<BucketStatus, String> {
        match self.get(ticket)? {
            Reply::Bucket(status) => Ok(*status),
            Reply::Count(_) => Err("this call was not a take".to_owned()),
        }
    }

    /// The count of a batched distinct-add, distinct-count or counter-add.
    pub fn count(&self, ticket: Ticket) -> Result<u64, String> {
        match self.get(ticket)? {
            Reply::Count(count) => Ok(*count),
            Reply::Bucket(_) => Err("this call was a take".to_owned()),
        }
    }
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

    #[test]
    fn outside_the_gateway_a_batch_reads_as_errors_by_ticket() {
        let mut batch = Batch::new();
        let calls: Vec<Ticket> = (0..70)
            .map(|i| batch.counter_add(&format!("k{i}"), 1, 1000))
            .collect();
        let take = batch.take("user:dr-a", Bucket::per_minute(60, 10), 1);
        assert_eq!(batch.len(), 71);
        let replies = batch.run();
        assert_eq!(replies.count(calls[69]), Err(NOT_IN_GATEWAY.to_owned()));
        assert_eq!(replies.bucket(take).unwrap_err(), NOT_IN_GATEWAY);
        assert_eq!(replies.first_error(), Some(NOT_IN_GATEWAY));
        assert!(Batch::new().run().count(Ticket(0)).is_err());
        assert_eq!(Batch::new().run().first_error(), None);
        let all = take_all(&[("a", Bucket::per_minute(1, 1))], 1);
        assert_eq!(all.unwrap_err(), NOT_IN_GATEWAY);
    }
}
