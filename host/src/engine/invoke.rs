//! One guest call: a fresh store and instance from the module's `InstancePre`, `init` with
//! its config, then the export the caller wants, all under the call's deadline, memory and
//! stack limits. Whatever goes wrong becomes a [`PolicyFault`] with its cause.

use std::sync::Arc;

use wasmtime::Store;

use super::EngineShared;
use super::bindings::{Capabilities, Policy};
use super::load::CompiledPolicy;
use super::sandbox::SandboxSettings;
use super::store::{GuestLimiter, StoreData};

/// Why a guest call produced no decision. The request is denied with `policy-error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyFault {
    #[error("ran past its deadline of {0} ms")]
    Deadline(u64),
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
    #[error("found no free instance slot within its deadline (too many concurrent calls)")]
    Saturated,
}

impl PolicyFault {
    /// A short stable name for metrics and the audit log.
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyFault::Deadline(_) => "deadline",
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
        matches!(self, PolicyFault::Deadline(_) | PolicyFault::Saturated)
    }
}

/// Who is calling and for which request.
pub(crate) struct CallContext {
    pub(crate) module: Arc<str>,
    /// `<module>/`, prefixed to the module's state keys; made once per module.
    pub(crate) namespace: Arc<str>,
    pub(crate) request_id: Arc<str>,
    pub(crate) now_ms: u64,
}

enum Step<R> {
    Rejected(String),
    Done(Capabilities, R),
}

/// Instantiates `compiled` afresh, calls `init(config)` and then `body`.
pub(crate) fn call<R>(
    shared: &EngineShared,
    compiled: &CompiledPolicy,
    config: &str,
    context: &CallContext,
    body: impl FnOnce(&Policy, &mut Store<StoreData>, &Capabilities) -> wasmtime::Result<R>,
) -> Result<(Capabilities, R), PolicyFault> {
    let settings = &shared.settings;
    let deadline = std::time::Duration::from_millis(settings.deadline_ms);
    let Some(_permit) = shared.permits.acquire(deadline) else {
        return Err(PolicyFault::Saturated);
    };
    let data = StoreData::new(
        GuestLimiter::new(settings.max_memory_bytes, settings.max_table_elements),
        shared.state.clone(),
        context.module.clone(),
        context.namespace.clone(),
        context.request_id.clone(),
        context.now_ms,
        settings.max_log_messages,
    );
    let mut store = Store::new(&shared.engine, data);
    store.limiter(|data| &mut data.limiter);
    store.set_epoch_deadline(settings.deadline_ticks());
    store.set_hostcall_fuel(settings.hostcall_bytes);

    let outcome = (|| -> wasmtime::Result<Step<R>> {
        let policy = compiled.pre.instantiate(&mut store)?;
        let capabilities = match policy.call_init(&mut store, config)? {
            Ok(capabilities) => capabilities,
            Err(reason) => return Ok(Step::Rejected(reason)),
        };
        let result = body(&policy, &mut store, &capabilities)?;
        Ok(Step::Done(capabilities, result))
    })();
    match outcome {
        Ok(Step::Done(capabilities, result)) => Ok((capabilities, result)),
        Ok(Step::Rejected(reason)) => Err(PolicyFault::ConfigRejected(reason)),
        Err(error) => Err(classify(&error, store.data(), settings)),
    }
}

/// Names the cause of a failed call from the error and what the store saw.
fn classify(error: &wasmtime::Error, data: &StoreData, settings: &SandboxSettings) -> PolicyFault {
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
        Some(wasmtime::Trap::Interrupt) => PolicyFault::Deadline(settings.deadline_ms),
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
