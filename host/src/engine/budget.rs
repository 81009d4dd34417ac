//! Each configured policy's own budget: how many of its calls may run at once, how many may
//! wait for a slot, and for how long. A call that cannot start in time fails closed as
//! `saturated` for that module only: one module's load never takes slots from another's.
//! Counters per module name feed `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::invoke::PolicyFault;

/// A policy's call budget (`[sandbox]` defaults, overridden per `[[routes.policies]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallBudget {
    /// Calls of this policy that may run at once. Each takes one instance slot of the pool.
    pub max_concurrent_calls: u32,
    /// Calls that may wait for a slot; one more is refused at once as `saturated`.
    pub max_queued_calls: u32,
    /// How long a call may wait for a slot before it is refused as `saturated`.
    pub queue_timeout_ms: u64,
}

impl Default for CallBudget {
    fn default() -> Self {
        CallBudget {
            max_concurrent_calls: 4,
            max_queued_calls: 64,
            // Long enough that a burst of legitimate calls waits rather than fails, and that
            // clients hammering a saturated module are refused in few waves (each wave of
            // refusals is HTTP work for the whole gateway); short enough to answer before
            // common client timeouts.
            queue_timeout_ms: 1_000,
        }
    }
}

impl CallBudget {
    /// Every problem with the budget, for `ehrgate check`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_concurrent_calls == 0 || self.max_concurrent_calls > 1024 {
            problems.push(format!(
                "`max_concurrent_calls` is {}; expected 1 to 1024",
                self.max_concurrent_calls
            ));
        }
        if self.max_queued_calls > 100_000 {
            problems.push(format!(
                "`max_queued_calls` is {}; expected 0 to 100000",
                self.max_queued_calls
            ));
        }
        if self.queue_timeout_ms > 60_000 {
            problems.push(format!(
                "`queue_timeout_ms` is {}; expected 0 to 60000",
                self.queue_timeout_ms
            ));
        }
        problems
    }
}

/// A configured policy's slots and queue.
pub(crate) struct ModuleBudget {
    budget: CallBudget,
    slots: Arc<Semaphore>,
    /// Calls of this configured policy waiting now (the stats sum every route's).
    waiting: AtomicU64,
    stats: Arc<ModuleStats>,
}

/// Holding one: the call may run.
pub(crate) struct Admitted {
    _slot: OwnedSemaphorePermit,
    _instance: OwnedSemaphorePermit,
    stats: Arc<ModuleStats>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.stats.running.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ModuleBudget {
    pub(crate) fn new(budget: CallBudget, stats: Arc<ModuleStats>) -> Self {
        ModuleBudget {
            slots: Arc::new(Semaphore::new(budget.max_concurrent_calls as usize)),
            waiting: AtomicU64::new(0),
            budget,
            stats,
        }
    }

    pub(crate) fn stats(&self) -> &Arc<ModuleStats> {
        &self.stats
    }

    /// Waits (bounded) for one of the module's slots and then for an instance of the pool.
    pub(crate) async fn admit(&self, instances: &Arc<Semaphore>) -> Result<Admitted, PolicyFault> {
        let timeout = Duration::from_millis(self.budget.queue_timeout_ms);
        let started = tokio::time::Instant::now();
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                let waiting = self.waiting.fetch_add(1, Ordering::Relaxed);
                self.stats.waiting.fetch_add(1, Ordering::Relaxed);
                let slot = if waiting >= u64::from(self.budget.max_queued_calls) {
                    None
                } else {
                    tokio::time::timeout(timeout, self.slots.clone().acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok)
                };
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
                slot.ok_or(PolicyFault::Saturated)?
            }
        };
        // Instance slots are sized to the sum of every policy's `max_concurrent_calls`
        // (checked at load), so this waits only while a reload's old and new gateways
        // overlap.
        let instance = match instances.clone().try_acquire_owned() {
            Ok(instance) => instance,
            Err(_) => {
                let left = timeout.saturating_sub(started.elapsed());
                tokio::time::timeout(left, instances.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .ok_or(PolicyFault::Saturated)?
            }
        };
        self.stats.running.fetch_add(1, Ordering::Relaxed);
        Ok(Admitted {
            _slot: slot,
            _instance: instance,
            stats: self.stats.clone(),
        })
    }
}

/// Live counters of one module name (summed over the routes that use it).
#[derive(Debug, Default)]
pub struct ModuleStats {
    running: AtomicU64,
    waiting: AtomicU64,
    log_dropped: AtomicU64,
    /// Whether the module's last call ran past its first slice: its next call starts on
    /// the long-call threads instead of taking a first-slice thread for a slice first.
    runs_long: AtomicBool,
}

impl ModuleStats {
    /// Records how long a call ran, for where the module's next call starts.
    pub(crate) fn note_running(&self, running: Duration) {
        self.runs_long
            .store(running >= super::pool::FIRST_SLICE, Ordering::Relaxed);
    }

    pub(crate) fn runs_long(&self) -> bool {
        self.runs_long.load(Ordering::Relaxed)
    }

    pub(crate) fn count_dropped_logs(&self, dropped: usize) {
        if dropped > 0 {
            self.log_dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> ModuleStatsSnapshot {
        ModuleStatsSnapshot {
            running: self.running.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            log_dropped: self.log_dropped.load(Ordering::Relaxed),
        }
    }
}

/// What `/metrics` shows of a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleStatsSnapshot {
    /// Calls running now.
    pub running: u64,
    /// Calls waiting for a slot now.
    pub waiting: u64,
    /// Guest log messages dropped (over `max_log_messages` per call) since start.
    pub log_dropped: u64,
}

/// Stats by module name, kept across reloads.
#[derive(Default)]
pub(crate) struct StatsByModule {
    by_name: Mutex<BTreeMap<String, Arc<ModuleStats>>>,
}

impl StatsByModule {
    pub(crate) fn of(&self, module: &str) -> Arc<ModuleStats> {
        let mut by_name = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        by_name.entry(module.to_owned()).or_default().clone()
    }

    pub(crate) fn snapshot(&self) -> Vec<(String, ModuleStatsSnapshot)> {
        let by_name = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        by_name
            .iter()
            .map(|(name, stats)| (name.clone(), stats.snapshot()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(concurrent: u32, queued: u32) -> ModuleBudget {
        ModuleBudget::new(
            CallBudget {
                max_concurrent_calls: concurrent,
                max_queued_calls: queued,
                queue_timeout_ms: 20,
            },
            Arc::default(),
        )
    }

    #[tokio::test]
    async fn calls_beyond_the_slots_wait_then_fail_as_saturated() {
        let instances = Arc::new(Semaphore::new(10));
        let module = budget(1, 1);
        let first = module.admit(&instances).await;
        assert!(first.is_ok());
        assert_eq!(module.stats().snapshot().running, 1);
        assert_eq!(
            module.admit(&instances).await.err(),
            Some(PolicyFault::Saturated)
        );
        drop(first);
        assert!(module.admit(&instances).await.is_ok());
        assert_eq!(module.stats().snapshot().running, 0);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let instances = Arc::new(Semaphore::new(10));
        let module = budget(1, 0);
        let _held = module.admit(&instances).await;
        let started = std::time::Instant::now();
        assert_eq!(
            module.admit(&instances).await.err(),
            Some(PolicyFault::Saturated)
        );
        assert!(started.elapsed() < Duration::from_millis(15));
    }

    #[tokio::test]
    async fn one_module_full_leaves_another_free() {
        let instances = Arc::new(Semaphore::new(10));
        let (busy, quiet) = (budget(1, 0), budget(1, 0));
        let _held = busy.admit(&instances).await;
        assert!(busy.admit(&instances).await.is_err());
        assert!(quiet.admit(&instances).await.is_ok());
    }
}
