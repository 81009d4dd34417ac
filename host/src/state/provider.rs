//! Where each module's state lives: a [`StateProvider`] hands every policy module its own
//! partition. Any single [`StateBackend`] is also a provider that serves every module
//! (behind the module's key namespace), as the fixture runner and tests use it.

use std::sync::Arc;

use super::StateBackend;

/// Gives each policy module (by its configured name) the backend its state imports use.
pub trait StateProvider: Send + Sync + 'static {
    fn partition(self: Arc<Self>, module: &str) -> Arc<dyn StateBackend>;
}

impl<T: StateBackend> StateProvider for T {
    fn partition(self: Arc<Self>, _module: &str) -> Arc<dyn StateBackend> {
        self
    }
}

impl StateProvider for dyn StateBackend {
    fn partition(self: Arc<Self>, _module: &str) -> Arc<dyn StateBackend> {
        self
    }
}
