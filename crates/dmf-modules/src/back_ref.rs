//! The way back from a work item's or timer's callback to the state that owns the work item or
//! timer.
//!
//! The callback is fixed when the platform object is created, and the object is a field of the
//! state, so the callback cannot be handed the state's `Arc` directly. It holds a [`BackRef`]
//! instead, which the Module sets once the `Arc` exists. (Not `Arc::new_cyclic`: in a kernel image
//! its closure must only assemble the value, and creating a work item or timer allocates.)

use alloc::sync::{Arc, Weak};

use dmf_core::fallible::try_arc;
use dmf_core::sync::{LockKind, ModuleLock};
use dmf_core::NtResult;

/// A `Weak` to the owning state, empty until [`set`](Self::set). ≤ DISPATCH_LEVEL.
pub(crate) struct BackRef<T>(ModuleLock<Weak<T>>);

impl<T> BackRef<T> {
    /// An empty back reference, to be captured by the callback before the platform object is
    /// created. `STATUS_INSUFFICIENT_RESOURCES` if it cannot be allocated.
    pub(crate) fn new() -> NtResult<Arc<Self>> {
        try_arc(BackRef(ModuleLock::new(LockKind::Spin, Weak::new())?))
    }

    /// Points the back reference at `state` (no allocation).
    pub(crate) fn set(&self, state: &Arc<T>) {
        *self.0.lock() = Arc::downgrade(state);
    }

    /// The state, while it lives.
    pub(crate) fn upgrade(&self) -> Option<Arc<T>> {
        self.0.lock().upgrade()
    }
}
