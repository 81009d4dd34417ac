//! The gateway's state as a whole: per-module partitions in this process, or one Redis /
//! Valkey server shared with the other replicas. Chosen at start by `[state] backend`; a
//! reload resizes the partitions or caps but cannot switch the backend (restart for that).

use std::path::Path;
use std::sync::Arc;

use super::{
    MemoryPartitions, MemoryStateLimits, RedisSettings, RedisState, StateHandle, StateProvider,
};

/// Where every module's state lives.
#[derive(Clone)]
pub enum GatewayState {
    Memory(Arc<MemoryPartitions>),
    Redis(Arc<RedisState>),
}

impl GatewayState {
    /// The backend `redis` names (`None`: in memory), with `totals` and each module's caps.
    /// A Redis backend connects lazily: see [`RedisState::ping`].
    pub fn open(
        totals: MemoryStateLimits,
        redis: Option<&RedisSettings>,
        base_dir: &Path,
        modules: &[(String, Option<MemoryStateLimits>)],
    ) -> anyhow::Result<Self> {
        let state = match redis {
            None => GatewayState::Memory(Arc::new(MemoryPartitions::new(totals))),
            Some(settings) => GatewayState::Redis(RedisState::open(settings, base_dir, totals)?),
        };
        state.configure_with_totals(totals, modules);
        Ok(state)
    }

    /// The backend's name, for logs and metrics.
    pub fn backend(&self) -> &'static str {
        match self {
            GatewayState::Memory(_) => "memory",
            GatewayState::Redis(_) => "redis",
        }
    }

    /// Resizes each module's share, at start and after a reload that loaded.
    pub fn configure_with_totals(
        &self,
        totals: MemoryStateLimits,
        modules: &[(String, Option<MemoryStateLimits>)],
    ) {
        match self {
            GatewayState::Memory(state) => state.configure_with_totals(totals, modules),
            GatewayState::Redis(state) => state.configure_with_totals(totals, modules),
        }
    }

    /// The in-memory partitions, whose entries `/metrics` reports.
    pub fn memory(&self) -> Option<&Arc<MemoryPartitions>> {
        match self {
            GatewayState::Memory(state) => Some(state),
            GatewayState::Redis(_) => None,
        }
    }

    /// The shared server, whose reachability `/readyz` reports.
    pub fn redis(&self) -> Option<&Arc<RedisState>> {
        match self {
            GatewayState::Memory(_) => None,
            GatewayState::Redis(state) => Some(state),
        }
    }
}

impl StateProvider for GatewayState {
    fn partition(self: Arc<Self>, module: &str) -> StateHandle {
        match &*self {
            GatewayState::Memory(state) => state.clone().partition(module),
            GatewayState::Redis(state) => state.clone().partition(module),
        }
    }
}
