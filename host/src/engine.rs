//! The policy engine: one wasmtime engine for the process, policy modules compiled once and
//! instantiated afresh for every evaluation on the engine pool's threads, and the chains
//! routes run.
//!
//! - [`sandbox`]: limits and the wasmtime configuration (pooling allocator, epoch ticks).
//! - `pool` and `meter`: the threads policy calls run on, apart from HTTP, and the running
//!   time each call is charged.
//! - [`budget`]: each configured policy's slots and queue.
//! - [`load`]: reading, compiling, checking and configuring modules.
//! - `invoke`: one guest call and the mapping of its failures to [`PolicyFault`]s.
//! - [`verdict`] and [`response_headers`]: checking a guest's decision against the contract
//!   and the route's header allow-list.
//! - [`chain`]: combining modules' decisions.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, Linker};

pub mod bindings;
pub mod budget;
mod cache;
pub mod chain;
pub mod fixture;
mod invoke;
pub mod load;
mod meter;
mod pool;
pub mod response_headers;
pub mod sandbox;
mod scheduling;
pub mod signature;
mod store;
pub mod verdict;

pub use bindings::{Entry, Header, Interaction, Param, Principal, Request, Response};
pub use budget::{CallBudget, ModuleStatsSnapshot};
pub use chain::{ChainDecision, ChainLink, ChainOutcome, Mode, ModuleReport, PolicyChain};
pub use invoke::PolicyFault;
pub use load::{LoadError, PolicySpec};
pub use response_headers::ResponseHeaderAllowList;
pub use sandbox::SandboxSettings;
pub use verdict::{Denial, Finding, FindingSeverity, ModuleDecision, POLICY_ERROR_RULE};

use crate::state::{StateHandle, StateProvider};
use budget::{ModuleBudget, StatsByModule};
use invoke::{CallContext, Export};
use load::{CompiledModules, CompiledPolicy};
use meter::CallMeter;
use store::StoreData;

/// The process-wide engine. Cheap to clone.
#[derive(Clone)]
pub struct PolicyEngine {
    shared: Arc<EngineShared>,
}

/// Gives each module its state partition.
type PartitionOf = dyn Fn(&str) -> StateHandle + Send + Sync;

pub(crate) struct EngineShared {
    pub(crate) engine: wasmtime::Engine,
    pub(crate) linker: Linker<StoreData>,
    pub(crate) settings: SandboxSettings,
    partition_of: Box<PartitionOf>,
    /// The pool's instance slots; every call holds one while it runs.
    pub(crate) instances: Arc<Semaphore>,
    pool: pool::EnginePool,
    stats: StatsByModule,
    pub(crate) cache: Option<cache::ArtifactCache>,
    pub(crate) trusted_signers: Vec<ed25519_dalek::VerifyingKey>,
    pub(crate) compiled: CompiledModules,
    _ticker: sandbox::EpochTicker,
}

impl PolicyEngine {
    /// Builds the engine, its linker with the host imports, the engine pool, and starts the
    /// epoch ticker. `state` gives each module its partition: a
    /// [`MemoryPartitions`](crate::state::MemoryPartitions) keeps modules apart, a single
    /// backend (tests, the fixture runner) serves every module behind its namespace.
    pub fn new<S: StateProvider + ?Sized>(
        settings: SandboxSettings,
        state: Arc<S>,
    ) -> anyhow::Result<Self> {
        let problems = settings.problems();
        if !problems.is_empty() {
            anyhow::bail!("invalid sandbox settings: {}", problems.join("; "));
        }
        let engine = wasmtime::Engine::new(&settings.wasmtime_config())
            .map_err(anyhow::Error::from)
            .context("cannot create the WebAssembly engine")?;
        let mut linker = Linker::new(&engine);
        bindings::Policy::add_to_linker::<StoreData, HasSelf<StoreData>>(&mut linker, |data| data)
            .map_err(anyhow::Error::from)?;
        let trusted_signers = settings
            .trusted_signers
            .iter()
            .map(|path| crate::audit::keys::read_public_key(path))
            .collect::<Result<Vec<_>, _>>()
            .context("cannot read a `trusted_signers` key")?;
        let cache = match &settings.cache_dir {
            Some(dir) => Some(cache::ArtifactCache::open(dir)?),
            None => None,
        };
        let pool = pool::EnginePool::start(settings.pool_threads())
            .context("cannot start the policy threads")?;
        let ticker = sandbox::EpochTicker::start(engine.clone())
            .context("cannot start the epoch ticker thread")?;
        Ok(PolicyEngine {
            shared: Arc::new(EngineShared {
                instances: Arc::new(Semaphore::new(settings.max_concurrent_instances as usize)),
                partition_of: Box::new(move |module| state.clone().partition(module)),
                pool,
                stats: StatsByModule::default(),
                engine,
                linker,
                settings,
                cache,
                trusted_signers,
                compiled: CompiledModules::default(),
                _ticker: ticker,
            }),
        })
    }

    pub fn settings(&self) -> &SandboxSettings {
        &self.shared.settings
    }

    /// Live counters per module name, for `/metrics`.
    pub fn module_stats(&self) -> Vec<(String, ModuleStatsSnapshot)> {
        self.shared.stats.snapshot()
    }
}

/// A loaded module bound to its config and its route's limits, ready to evaluate requests.
pub struct ConfiguredPolicy {
    /// The name the operator gave it; used in logs, errors and the audit record.
    pub name: Arc<str>,
    /// SHA-256 of the module file, hex.
    pub sha256: String,
    /// Whether its `init` asked for `on-response`.
    pub inspects_response: bool,
    namespace: Arc<str>,
    config: Arc<str>,
    state: StateHandle,
    budget: ModuleBudget,
    response_headers: ResponseHeaderAllowList,
    compiled: Arc<CompiledPolicy>,
    shared: Arc<EngineShared>,
}

/// What one call of a module produced, with the running time it used.
pub(crate) struct Evaluation {
    pub(crate) result: Result<ModuleDecision, PolicyFault>,
    pub(crate) running: Duration,
}

impl ConfiguredPolicy {
    /// Evaluates `request` in a fresh instance, on the engine pool, waiting for the result.
    /// For tools and tests; the gateway runs whole chains with [`PolicyChain::evaluate`].
    /// Must not be called from an async task (it blocks).
    pub fn evaluate(self: &Arc<Self>, request: &Request) -> Result<ModuleDecision, PolicyFault> {
        let (policy, request) = (self.clone(), request.clone());
        let meter = Arc::new(CallMeter::default());
        let job_meter = meter.clone();
        self.run_blocking(meter, async move {
            policy.decide(&job_meter, Export::Evaluate(&request)).await
        })
    }

    /// Shows the upstream's `response` to the module, in a fresh instance; as
    /// [`evaluate`](Self::evaluate).
    pub fn on_response(
        self: &Arc<Self>,
        request: &Request,
        response: &Response,
    ) -> Result<ModuleDecision, PolicyFault> {
        let (policy, request, response) = (self.clone(), request.clone(), response.clone());
        let meter = Arc::new(CallMeter::default());
        let job_meter = meter.clone();
        self.run_blocking(meter, async move {
            policy
                .decide(&job_meter, Export::OnResponse(&request, &response))
                .await
        })
    }

    fn run_blocking(
        &self,
        meter: Arc<CallMeter>,
        job: impl Future<Output = Evaluation> + Send + 'static,
    ) -> Result<ModuleDecision, PolicyFault> {
        self.shared
            .pool
            .submit(meter, async move { job.await.result }, self.runs_long())
            .blocking_recv()
            .unwrap_or_else(|_| Err(engine_stopped()))
    }

    /// Whether the module's last call ran past its first slice.
    pub(crate) fn runs_long(&self) -> bool {
        self.budget.stats().runs_long()
    }

    /// One call that must produce a decision, validated against the contract and the
    /// route's header allow-list.
    pub(crate) async fn decide(&self, meter: &Arc<CallMeter>, export: Export<'_>) -> Evaluation {
        let (result, running) = self.call(meter, export).await;
        self.budget.stats().note_running(running);
        let result = result.and_then(|(_, decision)| match decision {
            Some(decision) => {
                verdict::validate(decision, &self.response_headers).map_err(PolicyFault::BadOutput)
            }
            None => Err(PolicyFault::Trap(
                "the module returned no decision".to_owned(),
            )),
        });
        Evaluation { result, running }
    }

    /// One call of the module, admitted by its budget, within the engine job metered by
    /// `meter`; `init` at load runs under the roomier load deadline.
    pub(crate) async fn call(
        &self,
        meter: &Arc<CallMeter>,
        export: Export<'_>,
    ) -> (
        Result<(bindings::Capabilities, Option<bindings::GuestDecision>), PolicyFault>,
        Duration,
    ) {
        let settings = &self.shared.settings;
        let (request_id, now_ms, deadline_ms) = match &export {
            Export::Init => ("load", 0, settings.load_deadline_ms),
            Export::Evaluate(request) | Export::OnResponse(request, _) => {
                (request.id.as_str(), request.time_ms, settings.deadline_ms)
            }
        };
        let _admitted = match self.budget.admit(&self.shared.instances).await {
            Ok(admitted) => admitted,
            Err(fault) => return (Err(fault), Duration::ZERO),
        };
        let context = CallContext {
            module: self.name.clone(),
            namespace: self.namespace.clone(),
            state: self.state.clone(),
            request_id: Arc::from(request_id),
            now_ms,
            deadline: Duration::from_millis(deadline_ms),
            loading: matches!(export, Export::Init),
        };
        let called = invoke::call(
            &self.shared,
            &self.compiled,
            &self.config,
            &context,
            meter,
            export,
        )
        .await;
        self.budget.stats().count_dropped_logs(called.dropped_logs);
        (called.result, called.running)
    }
}

/// The fault of a call whose engine job never reported back (the pool shut down).
fn engine_stopped() -> PolicyFault {
    PolicyFault::Trap("the policy engine stopped before the call finished".to_owned())
}
