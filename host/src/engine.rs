//! The policy engine: one wasmtime engine for the process, policy modules compiled once and
//! instantiated afresh for every evaluation, and the chains routes run.
//!
//! - [`sandbox`]: limits and the wasmtime configuration (pooling allocator, epoch deadlines).
//! - [`load`]: reading, compiling, checking and configuring modules.
//! - `invoke`: one guest call and the mapping of its failures to [`PolicyFault`]s.
//! - [`verdict`]: checking a guest's decision against the contract.
//! - [`chain`]: combining modules' decisions.

use std::sync::Arc;

use anyhow::Context;
use wasmtime::component::{HasSelf, Linker};

pub mod bindings;
mod cache;
pub mod chain;
pub mod fixture;
mod invoke;
pub mod load;
pub mod sandbox;
pub mod signature;
mod store;
pub mod verdict;

pub use bindings::{Entry, Header, Interaction, Param, Principal, Request, Response};
pub use chain::{ChainDecision, ChainLink, ChainOutcome, Mode, ModuleReport, PolicyChain};
pub use invoke::PolicyFault;
pub use load::{LoadError, PolicySpec};
pub use sandbox::SandboxSettings;
pub use verdict::{Denial, Finding, FindingSeverity, ModuleDecision, POLICY_ERROR_RULE};

use crate::state::StateBackend;
use invoke::CallContext;
use load::{CompiledModules, CompiledPolicy};
use store::StoreData;

/// The process-wide engine. Cheap to clone.
#[derive(Clone)]
pub struct PolicyEngine {
    shared: Arc<EngineShared>,
}

pub(crate) struct EngineShared {
    pub(crate) engine: wasmtime::Engine,
    pub(crate) linker: Linker<StoreData>,
    pub(crate) settings: SandboxSettings,
    pub(crate) state: Arc<dyn StateBackend>,
    pub(crate) permits: sandbox::Permits,
    pub(crate) cache: Option<cache::ArtifactCache>,
    pub(crate) trusted_signers: Vec<ed25519_dalek::VerifyingKey>,
    pub(crate) compiled: CompiledModules,
    _ticker: sandbox::EpochTicker,
}

impl PolicyEngine {
    /// Builds the engine, its linker with the host imports, and starts the epoch ticker.
    pub fn new(settings: SandboxSettings, state: Arc<dyn StateBackend>) -> anyhow::Result<Self> {
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
        let ticker = sandbox::EpochTicker::start(engine.clone())
            .context("cannot start the epoch ticker thread")?;
        Ok(PolicyEngine {
            shared: Arc::new(EngineShared {
                permits: sandbox::Permits::new(settings.max_concurrent_instances),
                engine,
                linker,
                settings,
                state,
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
}

/// A loaded module bound to its config, ready to evaluate requests.
pub struct ConfiguredPolicy {
    /// The name the operator gave it; used in logs, errors and the audit record.
    pub name: Arc<str>,
    /// SHA-256 of the module file, hex.
    pub sha256: String,
    /// Whether its `init` asked for `on-response`.
    pub inspects_response: bool,
    namespace: Arc<str>,
    config: Arc<str>,
    compiled: Arc<CompiledPolicy>,
    shared: Arc<EngineShared>,
}

impl ConfiguredPolicy {
    /// Evaluates `request` in a fresh instance.
    pub fn evaluate(&self, request: &Request) -> Result<ModuleDecision, PolicyFault> {
        let context = self.context_of(request);
        let (_, decision) = invoke::call(
            &self.shared,
            &self.compiled,
            &self.config,
            &context,
            |policy, store, _| policy.call_evaluate(store, request),
        )?;
        verdict::validate(decision).map_err(PolicyFault::BadOutput)
    }

    /// Shows the upstream's `response` to the module, in a fresh instance.
    pub fn on_response(
        &self,
        request: &Request,
        response: &Response,
    ) -> Result<ModuleDecision, PolicyFault> {
        let context = self.context_of(request);
        let (_, decision) = invoke::call(
            &self.shared,
            &self.compiled,
            &self.config,
            &context,
            |policy, store, _| policy.call_on_response(store, request, response),
        )?;
        verdict::validate(decision).map_err(PolicyFault::BadOutput)
    }
}

impl ConfiguredPolicy {
    fn context_of(&self, request: &Request) -> CallContext {
        CallContext {
            module: self.name.clone(),
            namespace: self.namespace.clone(),
            request_id: Arc::from(request.id.as_str()),
            now_ms: request.time_ms,
        }
    }
}
