//! Sandbox settings and the wasmtime configuration they produce: the pooling allocator, the
//! epoch ticker that lets deadlines be checked while guests run, and the defaults of every
//! policy's call budget.
//!
//! Figures behind the defaults are in `shared/reference/wasmtime.md`: a fresh instance per
//! request costs about 8.5 µs with the pool tuned as below, against 34 µs with default pool
//! knobs and 46-60 µs without a pool.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::budget::CallBudget;

/// How often the epoch ticker advances the engine's epoch: how often a running guest's
/// time is checked against its deadline and a long call yields its thread.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Per-call limits for guests and the size of the instance pool.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSettings {
    /// Running time one guest call (init plus evaluate) may use, in milliseconds: the CPU
    /// time the module itself ran, checked every millisecond. A guest that has run this long
    /// is stopped and the request denied with `policy-error` (fault `deadline`). Time spent
    /// waiting for a core or a slot does not count, so a busy gateway does not fail good
    /// calls.
    pub deadline_ms: u64,
    /// Running time `init` may use when a module is loaded (start and reload), where a
    /// module may build tables from a large config once.
    pub load_deadline_ms: u64,
    /// Wall-clock time after which a call that has not finished is stopped (fault
    /// `wall-limit`, a 503): a backstop for calls that ran past their first millisecond and
    /// then got almost no CPU on a saturated machine.
    pub wall_limit_ms: u64,
    /// Threads that run policy calls (and as many low-priority threads for long calls).
    /// 0: one per core.
    pub threads: usize,
    /// Default of each policy's `max_concurrent_calls`: its calls that may run at once.
    pub max_concurrent_calls: u32,
    /// Default of each policy's `max_queued_calls`: its calls that may wait for a slot.
    pub max_queued_calls: u32,
    /// Default of each policy's `queue_timeout_ms`: how long a call may wait for a slot
    /// before it fails closed as `saturated`.
    pub queue_timeout_ms: u64,
    /// Largest linear memory a guest may grow to. Each pool slot is this large.
    pub max_memory_bytes: usize,
    /// Largest WebAssembly stack a guest may use; deeper recursion traps.
    pub max_stack_bytes: usize,
    /// Largest table a guest may grow to, in elements.
    pub max_table_elements: usize,
    /// Instances that may exist at once (the pool's size). Must be at least the sum of every
    /// configured policy's `max_concurrent_calls`, so no policy waits for another's slots.
    /// Each slot reserves address space, not memory.
    pub max_concurrent_instances: u32,
    /// Bytes a guest may pass to one host import call (keys, log messages).
    pub hostcall_bytes: usize,
    /// Log messages a guest may write per call; the rest are dropped and counted.
    pub max_log_messages: usize,
    /// Where precompiled modules are cached (created with mode 0700). None: compile on
    /// every start.
    pub cache_dir: Option<PathBuf>,
    /// Load only modules with a valid detached signature (`<module>.sig`, made by
    /// `ehrgate policy sign`) from one of `trusted_signers`.
    pub require_signed_modules: bool,
    /// Public keys (PEM, from `ehrgate keygen --name policy-signing`) whose module
    /// signatures are accepted.
    pub trusted_signers: Vec<PathBuf>,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            deadline_ms: 5,
            load_deadline_ms: 1_000,
            wall_limit_ms: 1_000,
            threads: 0,
            max_concurrent_calls: CallBudget::default().max_concurrent_calls,
            max_queued_calls: CallBudget::default().max_queued_calls,
            queue_timeout_ms: CallBudget::default().queue_timeout_ms,
            max_memory_bytes: 32 << 20,
            max_stack_bytes: 256 << 10,
            max_table_elements: 10_000,
            max_concurrent_instances: 64,
            hostcall_bytes: 64 << 10,
            max_log_messages: 16,
            cache_dir: None,
            require_signed_modules: false,
            trusted_signers: Vec::new(),
        }
    }
}

impl SandboxSettings {
    /// Every problem with the settings, for `ehrgate check`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.deadline_ms == 0 || self.deadline_ms > 10_000 {
            problems.push(format!(
                "`deadline_ms` is {}; expected 1 to 10000",
                self.deadline_ms
            ));
        }
        if self.load_deadline_ms == 0 || self.load_deadline_ms > 60_000 {
            problems.push(format!(
                "`load_deadline_ms` is {}; expected 1 to 60000",
                self.load_deadline_ms
            ));
        }
        if self.wall_limit_ms < self.deadline_ms || self.wall_limit_ms > 600_000 {
            problems.push(format!(
                "`wall_limit_ms` is {}; expected `deadline_ms` ({}) to 600000",
                self.wall_limit_ms, self.deadline_ms
            ));
        }
        if self.threads > 256 {
            problems.push(format!("`threads` is {}; expected 0 to 256", self.threads));
        }
        problems.extend(self.default_budget().problems());
        if self.max_memory_bytes < (1 << 20) || self.max_memory_bytes > (1 << 30) {
            problems.push(format!(
                "`max_memory_bytes` is {}; expected 1 MiB to 1 GiB",
                self.max_memory_bytes
            ));
        }
        if self.max_stack_bytes < (16 << 10) || self.max_stack_bytes > (8 << 20) {
            problems.push(format!(
                "`max_stack_bytes` is {}; expected 16 KiB to 8 MiB",
                self.max_stack_bytes
            ));
        }
        if self.max_concurrent_instances == 0 || self.max_concurrent_instances > 10_000 {
            problems.push(format!(
                "`max_concurrent_instances` is {}; expected 1 to 10000",
                self.max_concurrent_instances
            ));
        }
        if self.hostcall_bytes < 1024 {
            problems.push(format!(
                "`hostcall_bytes` is {}; expected at least 1024",
                self.hostcall_bytes
            ));
        }
        if self.require_signed_modules && self.trusted_signers.is_empty() {
            problems.push(
                "`require_signed_modules` is true but `trusted_signers` is empty: no module could load"
                    .to_owned(),
            );
        }
        problems
    }

    /// The budget of a policy that does not set its own.
    pub fn default_budget(&self) -> CallBudget {
        CallBudget {
            max_concurrent_calls: self.max_concurrent_calls,
            max_queued_calls: self.max_queued_calls,
            queue_timeout_ms: self.queue_timeout_ms,
        }
    }

    /// Threads per class of the engine pool.
    pub(crate) fn pool_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// The wasmtime configuration for these settings.
    pub(crate) fn wasmtime_config(&self) -> wasmtime::Config {
        let instances = self.max_concurrent_instances;
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            // A Rust guest is one core module plus a few shims for its imports.
            .total_core_instances(instances.saturating_mul(8))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(4))
            .max_memories_per_component(2)
            .max_tables_per_component(8)
            .max_core_instances_per_component(32)
            .total_stacks(instances)
            .max_memory_size(self.max_memory_bytes)
            .table_elements(self.max_table_elements)
            // Keep the first pages of a slot resident between instances instead of giving
            // them back to the kernel and faulting them in again: 34 µs -> 8.5 µs a request.
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(64 << 10)
            .pagemap_scan(if host_has_swap() {
                // wasmtime 48's pagemap_scan can leave a swapped-out dirty page un-reset
                // (fixed in 50.0.1): only use it on hosts without swap.
                wasmtime::Enabled::No
            } else {
                wasmtime::Enabled::Auto
            });

        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(self.max_stack_bytes)
            // Guest calls run on fibers; the host's imports get the space above the guest's
            // own stack limit.
            .async_stack_size(self.max_stack_bytes + (1 << 20))
            .concurrency_support(false)
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        config
    }
}

/// Whether the host has any swap device configured.
fn host_has_swap() -> bool {
    match std::fs::read_to_string("/proc/swaps") {
        // The first line is a header.
        Ok(swaps) => swaps.lines().skip(1).any(|line| !line.trim().is_empty()),
        // No /proc (not Linux): pagemap_scan is unavailable anyway.
        Err(_) => true,
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on its own thread, until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: wasmtime::Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ehrgate-epoch".into())
            .spawn(move || {
                if let Err(error) = super::scheduling::set_policy(super::scheduling::Policy::RealTime) {
                    tracing::debug!(
                        %error,
                        "the epoch ticker keeps the normal priority (SCHED_FIFO needs CAP_SYS_NICE); \
                         deadlines may be checked late on a saturated machine"
                    );
                }
                while !stop_flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(SandboxSettings::default().problems().is_empty());
    }

    #[test]
    fn every_bad_setting_is_reported() {
        let settings = SandboxSettings {
            deadline_ms: 0,
            max_memory_bytes: 10,
            max_stack_bytes: 1,
            max_concurrent_instances: 0,
            hostcall_bytes: 3,
            max_concurrent_calls: 0,
            ..SandboxSettings::default()
        };
        assert_eq!(settings.problems().len(), 6);
    }
}
