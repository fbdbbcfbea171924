//! The atomics facade: the one place in dmf-core that names an atomic type.
//!
//! Lock-free code in this crate ([`crate::rundown`], [`crate::free_list`]) imports its atomics and
//! its shared cells from here, never from `core` directly. A normal build gets `core`'s atomics;
//! a build with `RUSTFLAGS="--cfg dmf_loom"` gets loom's instrumented ones, so the loom model tests
//! in `tests/loom_*.rs` explore every interleaving and memory-order outcome of the *same* code that
//! ships. The cfg is namespaced (`dmf_loom`, not `loom`) so that flipping it does not switch any
//! other crate in the dependency graph into its own loom mode.

#[cfg(dmf_loom)]
pub(crate) use loom::cell::UnsafeCell;
#[cfg(dmf_loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

#[cfg(not(dmf_loom))]
pub(crate) use core::sync::atomic::{
    fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
// Only the Module's Method gate uses it, which exists where the Module framework does.
#[cfg(all(not(dmf_loom), any(feature = "sim", all(feature = "kmdf", windows))))]
pub(crate) use core::sync::atomic::AtomicU8;

/// `core::cell::UnsafeCell` with loom's access API (`with_mut`), so the lock-free code reads the
/// same under both builds and loom can check every access to the cell.
#[cfg(not(dmf_loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(dmf_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        UnsafeCell(core::cell::UnsafeCell::new(value))
    }

    /// Calls `f` with a raw pointer to the contents; what the caller may do with it is the
    /// caller's `SAFETY` argument.
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
