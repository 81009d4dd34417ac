//! One guest call: a fresh store and instance from the module's `InstancePre`, `init` with
//! its config, then the export the caller wants, all under the call's running-time deadline,
//! wall-clock backstop, memory and stack limits. Whatever goes wrong becomes a
//! [`PolicyFault`] with its cause.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

use super::EngineShared;
use super::bindings::{Capabilities, GuestDecision, Request, Response};
use super::load::CompiledPolicy;
use super::meter::CallMeter;
use super::pool::FIRST_SLICE;
use super::sandbox::EPOCH_TICK;
use super::store::{GuestLimiter, Stop, StoreData};
use crate::state::StateHandle;

/// Why a guest call produced no decision. The request is denied with `policy-error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyFault {
    #[error("ran past its deadline of {0} ms of running time")]
    Deadline(u64),
    #[error("did not finish within the wall-clock limit of {0} ms (the machine was saturated)")]
    WallLimit(u64),
    #[error("reached its memory limit: {0}")]
    MemoryLimit(String),
    #[error("overflowed its stack (recursion too deep)")]
    StackOverflow,
    #[error("panicked: {0}")]
    Panic(String),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("returned a decision outside the contract: {0}")]
    BadOutput(String),
    #[error("passed more than {0} bytes to the host in one call")]
    TooMuchData(usize),
    #[error("rejected its config: {0}")]
    ConfigRejected(String),
    #[error("found no free slot in its call budget in time (too many concurrent calls)")]
    Saturated,
}

impl PolicyFault {
    /// A short stable name for metrics and the audit log.
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyFault::Deadline(_) => "deadline",
            PolicyFault::WallLimit(_) => "wall-limit",
            PolicyFault::MemoryLimit(_) => "memory-limit",
            PolicyFault::StackOverflow => "stack-overflow",
            PolicyFault::Panic(_) => "panic",
            PolicyFault::Trap(_) => "trap",
            PolicyFault::BadOutput(_) => "bad-output",
            PolicyFault::TooMuchData(_) => "too-much-data",
            PolicyFault::ConfigRejected(_) => "config-rejected",
            PolicyFault::Saturated => "saturated",
        }
    }

    /// Whether retrying later may succeed (the gateway was busy rather than the module
    /// broken), which makes the refusal a 503 with `Retry-After` instead of a 500.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PolicyFault::Deadline(_) | PolicyFault::WallLimit(_) | PolicyFault::Saturated
        )
    }
}

/// Who is calling, for which request, and against which state.
pub(crate) struct CallContext {
    pub(crate) module: Arc<str>,
    /// `<module>/`, prefixed to the module's state keys; made once per module.
    pub(crate) namespace: Arc<str>,
    pub(crate) state: StateHandle,
    pub(crate) request_id: Arc<str>,
    pub(crate) now_ms: u64,
    /// Running time the call may use.
    pub(crate) deadline: Duration,
    /// Whether the call is a module's load check: the operator's action, once, so it keeps
    /// its thread's priority and has no wall-clock limit (its running time is still
    /// bounded by the load deadline).
    pub(crate) loading: bool,
}

/// The export to call after `init`.
pub(crate) enum Export<'a> {
    /// `init` alone (loading a module).
    Init,
    Evaluate(&'a Request),
    OnResponse(&'a Request, &'a Response),
}

/// What a call produced, and the running time it used.
pub(crate) struct Called {
    pub(crate) result: Result<(Capabilities, Option<GuestDecision>), PolicyFault>,
    pub(crate) running: Duration,
    /// Guest log messages dropped over the per-call cap.
    pub(crate) dropped_logs: usize,
}

/// Instantiates `compiled` afresh, calls `init(config)` and then `export`, charging the
/// call's running time to `meter` (the engine job it runs in).
pub(crate) async fn call(
    shared: &EngineShared,
    compiled: &CompiledPolicy,
    config: &str,
    context: &CallContext,
    meter: &Arc<CallMeter>,
    export: Export<'_>,
) -> Called {
    let settings = &shared.settings;
    let data = StoreData::new(
        GuestLimiter::new(settings.max_memory_bytes, settings.max_table_elements),
        context.state.clone(),
        context.module.clone(),
        context.namespace.clone(),
        context.request_id.clone(),
        context.now_ms,
        settings.max_log_messages,
    );
    let mut store = Store::new(&shared.engine, data);
    store.limiter(|data| &mut data.limiter);
    store.set_hostcall_fuel(settings.hostcall_bytes);
    let begun = meter.running();
    let deadline = context.deadline;
    let wall_limit = if context.loading {
        Duration::MAX
    } else {
        Duration::from_millis(settings.wall_limit_ms)
    };
    let demotable = !context.loading;
    let started = Instant::now();
    let watch = meter.clone();
    // The kernel charges interrupt work to whichever thread it interrupts (without
    // CONFIG_IRQ_TIME_ACCOUNTING), so one burst of it can make a short call look long. A
    // guest is stopped only when it has run its deadline *and* has been seen running at
    // as many ticks: a loop is stopped on time, a 20 µs call hit by a 5 ms interrupt is not.
    let deadline_ticks = deadline.as_millis().div_ceil(EPOCH_TICK.as_millis().max(1));
    let mut ticks_seen: u128 = 0;
    // Runs at every epoch tick while the guest runs: stop it at its limits, and past its
    // first slice make it yield at every tick so the pool can move it to the long-call
    // threads and share them between long calls.
    store.epoch_deadline_callback(move |mut store| {
        ticks_seen += 1;
        let ran = watch.running().saturating_sub(begun);
        if ran >= deadline && ticks_seen >= deadline_ticks {
            store.data_mut().stopped = Some(Stop::Deadline);
            return Ok(UpdateDeadline::Interrupt);
        }
        if started.elapsed() >= wall_limit {
            store.data_mut().stopped = Some(Stop::WallLimit);
            return Ok(UpdateDeadline::Interrupt);
        }
        if demotable && (ran >= FIRST_SLICE || watch.is_demoted()) {
            watch.demote();
            watch.mark_yield();
            return Ok(UpdateDeadline::Yield(1));
        }
        Ok(UpdateDeadline::Continue(1))
    });
    // A job already demoted (its module ran long last time) hands the guest to the
    // long-call threads at its first epoch check, once the instance is set up here.
    store.set_epoch_deadline(if meter.is_demoted() { 0 } else { 1 });

    let outcome = run(&mut store, compiled, config, export).await;
    let running = meter.running().saturating_sub(begun);
    let result = match outcome {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(reason)) => Err(PolicyFault::ConfigRejected(reason)),
        Err(error) => Err(classify(&error, store.data(), context, settings)),
    };
    let dropped_logs = store.data().log.dropped;
    if meter.is_demoted() {
        // Tearing the instance down may take the kernel's memory-map lock; a low-priority
        // thread preempted while holding it would stall every thread of the process.
        shared.pool.release(store);
    }
    Called {
        result,
        running,
        dropped_logs,
    }
}

/// `init` then the export; the inner error is `init` refusing its config.
async fn run(
    store: &mut Store<StoreData>,
    compiled: &CompiledPolicy,
    config: &str,
    export: Export<'_>,
) -> wasmtime::Result<Result<(Capabilities, Option<GuestDecision>), String>> {
    let policy = compiled.pre.instantiate_async(&mut *store).await?;
    let capabilities = match policy.call_init(&mut *store, config).await? {
        Ok(capabilities) => capabilities,
        Err(reason) => return Ok(Err(reason)),
    };
    let decision = match export {
        Export::Init => None,
        Export::Evaluate(request) => Some(policy.call_evaluate(&mut *store, request).await?),
        Export::OnResponse(request, response) => Some(
            policy
                .call_on_response(&mut *store, request, response)
                .await?,
        ),
    };
    Ok(Ok((capabilities, decision)))
}

/// Names the cause of a failed call from the error and what the store saw.
fn classify(
    error: &wasmtime::Error,
    data: &StoreData,
    context: &CallContext,
    settings: &super::SandboxSettings,
) -> PolicyFault {
    if data.limiter.memory_refused {
        return PolicyFault::MemoryLimit(format!("{error:#}"));
    }
    // wasmtime's error for exhausted hostcall fuel is a private type; its message is stable
    // and is all there is to match on.
    if error
        .chain()
        .any(|e| e.to_string().contains("fuel allocated for hostcalls"))
    {
        return PolicyFault::TooMuchData(settings.hostcall_bytes);
    }
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => match data.stopped {
            Some(Stop::WallLimit) => PolicyFault::WallLimit(settings.wall_limit_ms),
            _ => PolicyFault::Deadline(context.deadline.as_millis() as u64),
        },
        Some(wasmtime::Trap::StackOverflow) => PolicyFault::StackOverflow,
        Some(wasmtime::Trap::UnreachableCodeReached) => match &data.log.last_error {
            // The sdk's panic hook logs `panic: <message>` just before the abort traps.
            Some(message) if message.starts_with("panic: ") => {
                PolicyFault::Panic(message["panic: ".len()..].to_owned())
            }
            _ => PolicyFault::Trap(error.to_string()),
        },
        Some(trap) => PolicyFault::Trap(trap.to_string()),
        None => PolicyFault::Trap(format!("{error:#}")),
    }
}
