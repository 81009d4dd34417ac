//! Token bucket arithmetic, exact in integers.
//!
//! The level is kept in units of `1 / refill_period_ms` of a token: every elapsed
//! millisecond adds `refill_tokens` units and a whole token is `refill_period_ms` units, so
//! refill never rounds and a bucket grants exactly the configured rate over any interval.

/// A bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSpec {
    pub capacity: u64,
    pub refill_tokens: u64,
    pub refill_period_ms: u64,
}

/// The outcome of a take, as the WIT `bucket-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketStatus {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    pub retry_after_ms: u64,
    pub reset_ms: u64,
}

/// One bucket's state.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    spec: BucketSpec,
    units: u128,
    updated_ms: u64,
}

impl BucketSpec {
    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        if self.capacity == 0 {
            return Err("capacity must be above 0");
        }
        if self.refill_tokens == 0 {
            return Err("refill-tokens must be above 0");
        }
        if self.refill_period_ms == 0 {
            return Err("refill-period-ms must be above 0");
        }
        Ok(())
    }

    fn full_units(&self) -> u128 {
        u128::from(self.capacity) * u128::from(self.refill_period_ms)
    }
}

impl TokenBucket {
    /// A new bucket starts full.
    pub(crate) fn new(spec: BucketSpec, now_ms: u64) -> Self {
        TokenBucket {
            spec,
            units: spec.full_units(),
            updated_ms: now_ms,
        }
    }

    /// Refills for the time since the last call, then takes `cost` tokens if there are
    /// enough. Time that goes backwards (requests handled out of order) refills nothing.
    pub(crate) fn take(&mut self, spec: BucketSpec, cost: u64, now_ms: u64) -> BucketStatus {
        if spec != self.spec {
            // The operator changed the limit: keep the level, clamped to the new capacity.
            let tokens = self.units / u128::from(self.spec.refill_period_ms);
            self.spec = spec;
            self.units = (tokens * u128::from(spec.refill_period_ms)).min(spec.full_units());
        }
        let elapsed = now_ms.saturating_sub(self.updated_ms);
        self.updated_ms = self.updated_ms.max(now_ms);
        let full = spec.full_units();
        let refill = u128::from(elapsed).saturating_mul(u128::from(spec.refill_tokens));
        self.units = self.units.saturating_add(refill).min(full);

        let needed = u128::from(cost) * u128::from(spec.refill_period_ms);
        let allowed = cost <= spec.capacity && self.units >= needed;
        if allowed {
            self.units -= needed;
        }
        let rate = u128::from(spec.refill_tokens);
        let retry_after_ms = if allowed || cost > spec.capacity {
            0
        } else {
            saturate((needed - self.units).div_ceil(rate))
        };
        BucketStatus {
            allowed,
            limit: spec.capacity,
            remaining: saturate(self.units / u128::from(spec.refill_period_ms)),
            retry_after_ms: if cost > spec.capacity {
                u64::MAX
            } else {
                retry_after_ms
            },
            reset_ms: saturate((full - self.units).div_ceil(rate)),
        }
    }
}

impl TokenBucket {
    /// What [`TokenBucket::take`] would answer, without changing the bucket.
    pub(crate) fn peek(&self, spec: BucketSpec, cost: u64, now_ms: u64) -> BucketStatus {
        self.clone().take(spec, cost, now_ms)
    }
}

fn saturate(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_PER_SECOND: BucketSpec = BucketSpec {
        capacity: 10,
        refill_tokens: 10,
        refill_period_ms: 1000,
    };

    #[test]
    fn starts_full_and_drains_to_exactly_capacity() {
        let mut bucket = TokenBucket::new(TEN_PER_SECOND, 0);
        let granted = (0..25)
            .filter(|_| bucket.take(TEN_PER_SECOND, 1, 0).allowed)
            .count();
        assert_eq!(granted, 10);
    }

    #[test]
    fn refills_continuously_without_rounding() {
        let mut bucket = TokenBucket::new(TEN_PER_SECOND, 0);
        for _ in 0..10 {
            assert!(bucket.take(TEN_PER_SECOND, 1, 0).allowed);
        }
        // 10 tokens per 1000 ms is one token per 100 ms: at 99 ms there is none yet.
        let status = bucket.take(TEN_PER_SECOND, 1, 99);
        assert!(!status.allowed);
        assert_eq!(status.retry_after_ms, 1);
        assert!(bucket.take(TEN_PER_SECOND, 1, 100).allowed);
        assert!(!bucket.take(TEN_PER_SECOND, 1, 100).allowed);
    }

    #[test]
    fn grants_exactly_the_rate_over_a_long_run() {
        // 7 tokens every 3 seconds, asked every 12 ms for 60 s: 7 (initial) + 60/3*7; the
        // 140th refilled token completes at exactly 60 000 ms, which is asked for.
        let spec = BucketSpec {
            capacity: 7,
            refill_tokens: 7,
            refill_period_ms: 3000,
        };
        let mut bucket = TokenBucket::new(spec, 0);
        let mut granted = 0;
        let mut now = 0;
        while now <= 60_000 {
            if bucket.take(spec, 1, now).allowed {
                granted += 1;
            }
            now += 12;
        }
        assert_eq!(granted, 7 + 140);
    }

    #[test]
    fn reports_remaining_retry_and_reset() {
        let mut bucket = TokenBucket::new(TEN_PER_SECOND, 1_000);
        let status = bucket.take(TEN_PER_SECOND, 4, 1_000);
        assert_eq!(
            status,
            BucketStatus {
                allowed: true,
                limit: 10,
                remaining: 6,
                retry_after_ms: 0,
                reset_ms: 400,
            }
        );
        let status = bucket.take(TEN_PER_SECOND, 8, 1_000);
        assert!(!status.allowed);
        assert_eq!(status.remaining, 6, "a refused take takes nothing");
        assert_eq!(status.retry_after_ms, 200);
    }

    #[test]
    fn cost_above_capacity_is_never_allowed() {
        let mut bucket = TokenBucket::new(TEN_PER_SECOND, 0);
        let status = bucket.take(TEN_PER_SECOND, 11, 1_000_000);
        assert!(!status.allowed);
        assert_eq!(status.retry_after_ms, u64::MAX);
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let mut bucket = TokenBucket::new(TEN_PER_SECOND, 5_000);
        for _ in 0..10 {
            bucket.take(TEN_PER_SECOND, 1, 5_000);
        }
        assert!(!bucket.take(TEN_PER_SECOND, 1, 4_000).allowed);
        assert!(!bucket.take(TEN_PER_SECOND, 1, 5_050).allowed);
        assert!(bucket.take(TEN_PER_SECOND, 1, 5_100).allowed);
    }

    #[test]
    fn a_new_shape_keeps_the_level_within_the_new_capacity() {
        let mut bucket = TokenBucket::new(TEN_PER_SECOND, 0);
        let smaller = BucketSpec {
            capacity: 3,
            ..TEN_PER_SECOND
        };
        let granted = (0..10)
            .filter(|_| bucket.take(smaller, 1, 0).allowed)
            .count();
        assert_eq!(granted, 3);
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let spec = BucketSpec {
            capacity: u64::MAX,
            refill_tokens: u64::MAX,
            refill_period_ms: u64::MAX,
        };
        let mut bucket = TokenBucket::new(spec, 0);
        let status = bucket.take(spec, u64::MAX, u64::MAX);
        assert!(status.allowed);
        assert_eq!(status.remaining, 0);
    }
}
