//! The atomics facade: the one place in dmf-core that names an atomic type.
//!
//! Lock-free code in this crate (today [`crate::rundown`]) imports its atomics from here, never from
//! `core::sync::atomic` directly. A normal build gets `core`'s atomics; a build with
//! `RUSTFLAGS="--cfg dmf_loom"` gets loom's instrumented ones, so the loom model tests in
//! `tests/loom_*.rs` explore every interleaving and memory-order outcome of the *same* code that
//! ships. The cfg is namespaced (`dmf_loom`, not `loom`) so that flipping it does not switch any
//! other crate in the dependency graph into its own loom mode.

#[cfg(dmf_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicUsize, Ordering};

#[cfg(not(dmf_loom))]
pub(crate) use core::sync::atomic::{fence, AtomicUsize, Ordering};
