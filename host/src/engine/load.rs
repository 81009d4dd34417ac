//! Loading policy modules: read, hash, compile (or take from the cache), check the imports
//! against what the gateway provides, check the exports against the `policy` world, and run
//! `init` once with the module's config so a bad config stops the load, not a request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};

use super::bindings::PolicyPre;
use super::budget::{CallBudget, ModuleBudget};
use super::invoke::{Export, PolicyFault};
use super::meter::CallMeter;
use super::response_headers::ResponseHeaderAllowList;
use super::signature;
use super::store::StoreData;
use super::{ConfiguredPolicy, PolicyEngine};

/// The interfaces of `wit/policy.wit` a module may import, without their version.
const PROVIDED_INTERFACES: &[&str] = &[
    "ehrgate:policy/state",
    "ehrgate:policy/log",
    "ehrgate:policy/types",
];
/// The contract versions this host speaks: `0.1.x`.
const PROVIDED_VERSION_PREFIX: &str = "0.1.";

/// Why a module could not be loaded. Each names the module and says what would be right.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("policy `{module}`: cannot read `{path}`: {source}")]
    Read {
        module: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "policy `{module}`: `{path}` is not a valid WebAssembly component: {reason}\n\
         help: build it with `cargo build --release --target wasm32-wasip2`"
    )]
    Compile {
        module: String,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "policy `{module}` imports `{import}`, which the gateway does not provide\n\
         help: a policy may import only `ehrgate:policy/state` and `ehrgate:policy/log` \
         (version 0.1.x); WASI imports are allowed but trap when called"
    )]
    UnknownImport { module: String, import: String },
    #[error(
        "policy `{module}` does not implement the `ehrgate:policy/policy@0.1.x` world: {reason}\n\
         help: generate its bindings from `wit/policy.wit` (the sdk does this)"
    )]
    WorldMismatch { module: String, reason: String },
    #[error("policy `{module}`: `{path}` {reason}")]
    Signature {
        module: String,
        path: PathBuf,
        reason: String,
    },
    #[error("policy `{module}` rejected its config: {reason}")]
    ConfigRejected { module: String, reason: String },
    #[error("policy `{module}` failed while checking its config: {fault}")]
    InitFailed { module: String, fault: PolicyFault },
    #[error("policy `{module}`: {reason}")]
    Engine { module: String, reason: String },
}

/// A compiled module, shared by every route that uses the same file.
pub(crate) struct CompiledPolicy {
    pub(crate) sha256: String,
    pub(crate) pre: PolicyPre<StoreData>,
}

/// Compiled modules by SHA-256, so the same file on many routes is compiled once.
#[derive(Default)]
pub(crate) struct CompiledModules {
    by_sha: Mutex<HashMap<String, Arc<CompiledPolicy>>>,
}

/// What to load: a name for errors, logs, the audit log and the state partition, a file,
/// its JSON config, its call budget and the headers its route lets it set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    pub name: String,
    pub path: PathBuf,
    pub config: String,
    /// None: the `[sandbox]` defaults.
    pub budget: Option<CallBudget>,
    pub response_headers: ResponseHeaderAllowList,
}

impl PolicySpec {
    /// A spec with the default budget and only the always-allowed response headers.
    pub fn new(name: &str, path: impl Into<PathBuf>, config: &str) -> Self {
        PolicySpec {
            name: name.to_owned(),
            path: path.into(),
            config: config.to_owned(),
            budget: None,
            response_headers: ResponseHeaderAllowList::default(),
        }
    }
}

impl PolicyEngine {
    /// Loads a module and checks its config with `init`.
    /// Must not be called from an async task (it waits for `init`).
    pub fn load(&self, spec: &PolicySpec) -> Result<Arc<ConfiguredPolicy>, LoadError> {
        let module = spec.name.clone();
        let bytes = std::fs::read(&spec.path).map_err(|source| LoadError::Read {
            module: module.clone(),
            path: spec.path.clone(),
            source,
        })?;
        if self.shared.settings.require_signed_modules {
            signature::verify_file(&spec.path, &bytes, &self.shared.trusted_signers).map_err(
                |reason| LoadError::Signature {
                    module: module.clone(),
                    path: spec.path.clone(),
                    reason,
                },
            )?;
        }
        let compiled = self.compile(&module, &spec.path, &bytes)?;
        let name: Arc<str> = Arc::from(spec.name.as_str());
        let shared = &self.shared;
        let budget = spec
            .budget
            .unwrap_or_else(|| shared.settings.default_budget());
        let mut policy = ConfiguredPolicy {
            namespace: Arc::from(format!("{name}/")),
            state: (shared.partition_of)(&name),
            budget: ModuleBudget::new(budget, shared.stats.of(&name)),
            response_headers: spec.response_headers.clone(),
            name,
            sha256: compiled.sha256.clone(),
            compiled,
            config: Arc::from(spec.config.as_str()),
            inspects_response: false,
            shared: shared.clone(),
        };
        // `init` once on the pool with the load deadline, so a bad config stops the load.
        let meter = Arc::new(CallMeter::default());
        let job_meter = meter.clone();
        let checked = Arc::new(policy);
        let job_policy = checked.clone();
        let initialized = shared
            .pool
            .submit(
                meter,
                async move { job_policy.call(&job_meter, Export::Init).await.0 },
                false,
            )
            .blocking_recv()
            .unwrap_or_else(|_| Err(super::engine_stopped()));
        let capabilities = initialized
            .map(|(capabilities, _)| capabilities)
            .map_err(|fault| match fault {
                PolicyFault::ConfigRejected(reason) => LoadError::ConfigRejected {
                    module: module.clone(),
                    reason,
                },
                fault => LoadError::InitFailed {
                    module: module.clone(),
                    fault,
                },
            })?;
        policy = Arc::into_inner(checked).ok_or_else(|| LoadError::Engine {
            module: module.clone(),
            reason: "the load check still holds the module".to_owned(),
        })?;
        policy.inspects_response = capabilities.inspect_response;
        Ok(Arc::new(policy))
    }

    fn compile(
        &self,
        module: &str,
        path: &Path,
        bytes: &[u8],
    ) -> Result<Arc<CompiledPolicy>, LoadError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let modules = &self.shared.compiled;
        if let Some(found) = lock(&modules.by_sha).get(&sha256) {
            return Ok(found.clone());
        }
        let engine = &self.shared.engine;
        let component = match &self.shared.cache {
            Some(cache) => cache.load_or_compile(engine, &sha256, bytes),
            None => Component::new(engine, bytes).map_err(anyhow::Error::from),
        }
        .map_err(|e| LoadError::Compile {
            module: module.to_owned(),
            path: path.to_owned(),
            reason: format!("{e:#}"),
        })?;
        check_imports(module, engine, &component)?;

        let mut linker: Linker<StoreData> = self.shared.linker.clone();
        // WASI imports (a wasm32-wasip2 Rust guest has them whether or not it uses them)
        // become functions that trap: the guest gets no filesystem, network, environment
        // or clock, and one that tries fails closed.
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| LoadError::Engine {
                module: module.to_owned(),
                reason: format!("{e:#}"),
            })?;
        let instance_pre =
            linker
                .instantiate_pre(&component)
                .map_err(|e| LoadError::WorldMismatch {
                    module: module.to_owned(),
                    reason: format!("{e:#}"),
                })?;
        let pre = PolicyPre::new(instance_pre).map_err(|e| LoadError::WorldMismatch {
            module: module.to_owned(),
            reason: format!("{e:#}"),
        })?;
        let compiled = Arc::new(CompiledPolicy { sha256, pre });
        lock(&modules.by_sha).insert(compiled.sha256.clone(), compiled.clone());
        Ok(compiled)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Refuses any import that is neither ours (`ehrgate:policy/*@0.1.x`) nor WASI.
fn check_imports(
    module: &str,
    engine: &wasmtime::Engine,
    component: &Component,
) -> Result<(), LoadError> {
    for (import, _) in component.component_type().imports(engine) {
        if import.starts_with("wasi:") {
            continue;
        }
        let provided = import.split_once('@').is_some_and(|(interface, version)| {
            PROVIDED_INTERFACES.contains(&interface) && version.starts_with(PROVIDED_VERSION_PREFIX)
        });
        if !provided {
            return Err(LoadError::UnknownImport {
                module: module.to_owned(),
                import: import.to_owned(),
            });
        }
    }
    Ok(())
}
