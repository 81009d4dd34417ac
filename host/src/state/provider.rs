//! Where each module's state lives: a [`StateProvider`] hands every policy module its own
//! partition. Any single [`StateBackend`] is also a provider that serves every module
//! (behind the module's key namespace), as the fixture runner and tests use it.

use std::sync::Arc;

use super::{StateBackend, StateHandle};

/// Gives each policy module (by its configured name) the state its imports use.
pub trait StateProvider: Send + Sync + 'static {
    fn partition(self: Arc<Self>, module: &str) -> StateHandle;
}

impl<T: StateBackend> StateProvider for T {
    fn partition(self: Arc<Self>, _module: &str) -> StateHandle {
        StateHandle::Local(self)
    }
}

impl StateProvider for dyn StateBackend {
    fn partition(self: Arc<Self>, _module: &str) -> StateHandle {
        StateHandle::Local(self)
    }
}
