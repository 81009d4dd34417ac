//! Which protocol refusals get an audit record of their own and which are counted into an
//! aggregate, within the bounds of [`RefusalBounds`]: per peer and in total per interval, with
//! a peer table of fixed capacity (LRU), so neither the log nor the gateway's memory grows
//! with a flood. Time is passed in (milliseconds since the epoch), so the rules are tested
//! without a clock.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;

use lru::LruCache;

use crate::audit::settings::RefusalBounds;

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Write a record for it.
    Record,
    /// Count it into the peer's aggregate for this interval.
    Count,
}

/// The refusals of one peer (or, with no peer, of peers evicted from the table) in one
/// interval that got no record of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    pub peer: Option<IpAddr>,
    pub from_ms: u64,
    pub until_ms: u64,
    pub causes: BTreeMap<&'static str, u64>,
}

impl Aggregate {
    pub fn count(&self) -> u64 {
        self.causes.values().sum()
    }
}

#[derive(Default)]
struct PeerWindow {
    recorded: u32,
    counted: BTreeMap<&'static str, u64>,
}

/// The per-interval state.
pub struct RefusalLimiter {
    bounds: RefusalBounds,
    window_start_ms: u64,
    recorded: u32,
    peers: LruCache<IpAddr, PeerWindow>,
    /// Counts of peers evicted from the table during this interval.
    evicted: BTreeMap<&'static str, u64>,
}

impl RefusalLimiter {
    pub fn new(bounds: RefusalBounds, now_ms: u64) -> Self {
        let capacity = NonZeroUsize::new(bounds.peers).unwrap_or(NonZeroUsize::MIN);
        RefusalLimiter {
            bounds,
            window_start_ms: now_ms,
            recorded: 0,
            peers: LruCache::new(capacity),
            evicted: BTreeMap::new(),
        }
    }

    /// Decides about one refusal of `peer` for `cause`.
    pub fn admit(&mut self, peer: IpAddr, cause: &'static str) -> Admission {
        if !self.peers.contains(&peer)
            && let Some((_, evicted)) = self.peers.push(peer, PeerWindow::default())
        {
            for (cause, count) in evicted.counted {
                *self.evicted.entry(cause).or_default() += count;
            }
        }
        let Some(window) = self.peers.get_mut(&peer) else {
            return Admission::Count;
        };
        if window.recorded < self.bounds.records_per_peer
            && self.recorded < self.bounds.records_per_interval
        {
            window.recorded += 1;
            self.recorded += 1;
            Admission::Record
        } else {
            *window.counted.entry(cause).or_default() += 1;
            Admission::Count
        }
    }

    /// Whether the interval that began at the window start is over at `now_ms` (or the clock
    /// went back).
    pub fn is_due(&self, now_ms: u64) -> bool {
        now_ms < self.window_start_ms
            || now_ms - self.window_start_ms >= self.bounds.interval.as_millis() as u64
    }

    /// Ends the interval at `now_ms`: the aggregates of every peer that had refusals counted
    /// (then of evicted peers), and a fresh interval from `now_ms`.
    pub fn roll(&mut self, now_ms: u64) -> Vec<Aggregate> {
        let from_ms = self.window_start_ms;
        let mut aggregates: Vec<Aggregate> = Vec::new();
        // Least recently refused first, so the order does not depend on hashing.
        for (peer, window) in self.peers.iter().rev() {
            if !window.counted.is_empty() {
                aggregates.push(Aggregate {
                    peer: Some(*peer),
                    from_ms,
                    until_ms: now_ms,
                    causes: window.counted.clone(),
                });
            }
        }
        if !self.evicted.is_empty() {
            aggregates.push(Aggregate {
                peer: None,
                from_ms,
                until_ms: now_ms,
                causes: std::mem::take(&mut self.evicted),
            });
        }
        self.peers.clear();
        self.recorded = 0;
        self.window_start_ms = now_ms;
        aggregates
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn bounds(per_peer: u32, per_interval: u32, peers: usize) -> RefusalBounds {
        RefusalBounds {
            interval: Duration::from_secs(60),
            records_per_peer: per_peer,
            records_per_interval: per_interval,
            peers,
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_peer_gets_its_records_then_one_aggregate_counting_the_rest_by_cause() {
        let mut limiter = RefusalLimiter::new(bounds(3, 100, 16), 1_000);
        let admitted: Vec<Admission> = (0..10)
            .map(|i| {
                let cause = if i % 2 == 0 { "a" } else { "b" };
                limiter.admit(ip(1), cause)
            })
            .collect();
        assert_eq!(&admitted[..3], &[Admission::Record; 3]);
        assert!(admitted[3..].iter().all(|a| *a == Admission::Count));
        // Another peer is not held back by the first one's flood.
        assert_eq!(limiter.admit(ip(2), "a"), Admission::Record);
        assert!(!limiter.is_due(60_999));
        assert!(limiter.is_due(61_000));
        let aggregates = limiter.roll(61_000);
        assert_eq!(
            aggregates,
            vec![Aggregate {
                peer: Some(ip(1)),
                from_ms: 1_000,
                until_ms: 61_000,
                causes: BTreeMap::from([("a", 3), ("b", 4)]),
            }]
        );
        assert_eq!(aggregates[0].count(), 7);
        // A new interval: records again, and nothing to aggregate.
        assert_eq!(limiter.admit(ip(1), "a"), Admission::Record);
        assert_eq!(limiter.roll(121_000), Vec::new());
    }

    #[test]
    fn the_total_bound_holds_across_peers() {
        let mut limiter = RefusalLimiter::new(bounds(20, 5, 1000), 0);
        let recorded = (0..100)
            .filter(|i| limiter.admit(ip(*i as u8), "a") == Admission::Record)
            .count();
        assert_eq!(recorded, 5);
        let aggregates = limiter.roll(60_000);
        assert_eq!(aggregates.len(), 95);
        assert!(aggregates.iter().all(|a| a.count() == 1));
    }

    #[test]
    fn a_flood_from_many_addresses_writes_at_most_the_bound_and_loses_no_count() {
        let (per_interval, peers) = (10u32, 8usize);
        let mut limiter = RefusalLimiter::new(bounds(2, per_interval, peers), 0);
        let mut recorded = 0u64;
        for i in 0..10_000u32 {
            let peer = IpAddr::from((0x0a00_0000 + i % 500).to_be_bytes());
            if limiter.admit(peer, "peer-limit") == Admission::Record {
                recorded += 1;
            }
        }
        let aggregates = limiter.roll(60_000);
        let records = recorded as usize + aggregates.len();
        assert!(records <= per_interval as usize + peers + 1, "{records}");
        let counted: u64 = aggregates.iter().map(Aggregate::count).sum();
        assert_eq!(recorded + counted, 10_000);
        assert!(aggregates.iter().any(|a| a.peer.is_none()));
    }

    #[test]
    fn a_clock_that_goes_back_ends_the_interval() {
        let limiter = RefusalLimiter::new(bounds(1, 1, 1), 10_000);
        assert!(limiter.is_due(9_000));
    }
}
