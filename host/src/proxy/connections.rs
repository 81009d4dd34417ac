//! Connections that say nothing are closed, and no peer can hold every descriptor.
//!
//! - **Admission**: open connections are capped in total (by default three quarters of the
//!   process's descriptor limit, so the admin listener, upstream connections and the audit
//!   log always have descriptors) and per peer address. A connection over a cap is closed
//!   at once and counted.
//! - **Watchdog**: a connection must deliver its first request within
//!   `first_request_timeout_ms` of being accepted (this covers a silent client, a partial
//!   HTTP/2 preface, a preface and then nothing, and dribbled headers), and a keep-alive or
//!   HTTP/2 connection with no request in flight is closed after `idle_timeout_ms`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    TotalLimit,
    PeerLimit,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::TotalLimit => "total-limit",
            Refused::PeerLimit => "peer-limit",
        }
    }
}

/// Counts open connections, in total and per peer address.
pub struct ConnectionLimits {
    max_total: usize,
    max_per_peer: usize,
    open: AtomicUsize,
    by_peer: Mutex<HashMap<IpAddr, usize>>,
}

/// Holding one: the connection counts against the limits until dropped.
pub struct Admitted {
    limits: Arc<ConnectionLimits>,
    peer: IpAddr,
}

impl ConnectionLimits {
    /// `max_total` 0: three quarters of the soft descriptor limit (at least 16).
    pub fn new(max_total: usize, max_per_peer: usize) -> Self {
        ConnectionLimits {
            max_total: if max_total == 0 {
                default_total()
            } else {
                max_total
            },
            max_per_peer: max_per_peer.max(1),
            open: AtomicUsize::new(0),
            by_peer: Mutex::new(HashMap::new()),
        }
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Admits a connection from `peer`, or says which limit it is over.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, Refused> {
        let mut by_peer = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        if self.open.load(Ordering::Relaxed) >= self.max_total {
            return Err(Refused::TotalLimit);
        }
        let count = by_peer.entry(peer).or_insert(0);
        if *count >= self.max_per_peer {
            return Err(Refused::PeerLimit);
        }
        *count += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(Admitted {
            limits: self.clone(),
            peer,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut by_peer = self
            .limits
            .by_peer
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = by_peer.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                by_peer.remove(&self.peer);
            }
        }
        self.limits.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Three quarters of the soft `RLIMIT_NOFILE`, at least 16; 10,000 when it cannot be read.
fn default_total() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    match limit {
        Some(soft) => usize::try_from(soft - soft / 4)
            .unwrap_or(usize::MAX)
            .max(16),
        None => 10_000,
    }
}

/// What a connection's requests have done, for its watchdog.
#[derive(Default)]
pub struct Activity {
    started: AtomicU64,
    in_flight: AtomicU64,
    /// Milliseconds after the connection opened when its last request finished.
    last_done_ms: AtomicU64,
}

/// Marks a request in flight on its connection until dropped.
pub struct InFlight {
    activity: Arc<Activity>,
    opened: Instant,
}

impl Activity {
    /// Whether a request has begun on the connection.
    pub fn has_started(&self) -> bool {
        self.started.load(Ordering::Relaxed) > 0
    }

    pub fn begin(self: &Arc<Self>, opened: Instant) -> InFlight {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            activity: self.clone(),
            opened,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let done = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.last_done_ms.store(done, Ordering::Relaxed);
        self.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// No request within `first_request_timeout_ms` of accept.
    NoFirstRequest,
    /// No request in flight for `idle_timeout_ms`.
    Idle,
}

impl Silence {
    pub fn label(self) -> &'static str {
        match self {
            Silence::NoFirstRequest => "first-request-timeout",
            Silence::Idle => "idle-timeout",
        }
    }
}

/// Resolves when the connection opened at `opened` has been silent too long.
pub async fn watchdog(
    activity: Arc<Activity>,
    opened: Instant,
    first_request: Duration,
    idle: Duration,
) -> Silence {
    loop {
        let started = activity.started.load(Ordering::Relaxed) > 0;
        let deadline = if !started {
            opened + first_request
        } else if activity.in_flight.load(Ordering::Relaxed) > 0 {
            // A request is running: it has its own read and upstream timeouts.
            Instant::now() + idle
        } else {
            opened + Duration::from_millis(activity.last_done_ms.load(Ordering::Relaxed)) + idle
        };
        if Instant::now() >= deadline {
            return if started {
                Silence::Idle
            } else {
                Silence::NoFirstRequest
            };
        }
        // Woken at the deadline, the loop looks again: a request may have come meanwhile.
        tokio::time::sleep_until(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_per_peer_and_in_total() {
        let limits = Arc::new(ConnectionLimits::new(3, 2));
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let first = limits.admit(a);
        let second = limits.admit(a);
        assert!(first.is_ok() && second.is_ok());
        assert_eq!(limits.admit(a).err(), Some(Refused::PeerLimit));
        let third = limits.admit(b);
        assert!(third.is_ok());
        assert_eq!(limits.admit(b).err(), Some(Refused::TotalLimit));
        drop(first);
        let again = limits.admit(a);
        assert!(again.is_ok());
        assert_eq!(limits.open(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_after_the_first_request_timeout() {
        let activity = Arc::new(Activity::default());
        let opened = Instant::now();
        let silence = watchdog(
            activity,
            opened,
            Duration::from_secs(10),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(silence, Silence::NoFirstRequest);
        assert_eq!(opened.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_after_its_last_request_plus_the_idle_timeout() {
        let activity = Arc::new(Activity::default());
        let opened = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(activity.begin(opened));
        let silence = watchdog(
            activity,
            opened,
            Duration::from_secs(10),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(silence, Silence::Idle);
        assert_eq!(opened.elapsed(), Duration::from_secs(62));
    }
}
