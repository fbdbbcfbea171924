//! IRQL: the interrupt request level of the calling thread.
//!
//! The simulator models the three software levels a KMDF driver sees: `PASSIVE_LEVEL`,
//! `APC_LEVEL` and `DISPATCH_LEVEL`. The level is **per OS thread** (thread-local state), like the
//! per-processor IRQL of a real CPU while a thread runs on it: a spin lock raises it to
//! `DISPATCH_LEVEL` (`WdfSpinLockAcquire`), the machine's DPC thread calls `EvtDpcFunc` and
//! dispatch-level `EvtTimerFunc` at `DISPATCH_LEVEL`, system worker threads call
//! `EvtWorkItem` at `PASSIVE_LEVEL` (as Microsoft's pages of these callbacks say).
//!
//! Routines whose Microsoft reference page states an IRQL limit (the *Requirements* table's
//! "IRQL" row) call [`require_max_irql`], which reports an [`Rule::IrqlTooHigh`] violation naming
//! the routine.

use crate::exec::context;
pub use crate::exec::context::Irql;
use crate::verifier::{self, Rule};

/// The IRQL of the calling thread (`KeGetCurrentIrql`). Threads start at `PASSIVE_LEVEL`.
pub fn current_irql() -> Irql {
    context::irql()
}

/// Raises the calling thread's IRQL to `new` and returns the previous level (`KeRaiseIrql`).
/// Raising to a lower level is a verifier violation ([`Rule::InvalidIrqlTransition`]); the IRQL is
/// then left unchanged.
pub fn raise_irql(new: Irql) -> Irql {
    let old = current_irql();
    if new < old {
        verifier::report(
            Rule::InvalidIrqlTransition,
            "KeRaiseIrql",
            &format!("KeRaiseIrql to {new} called at {old}; the new IRQL must not be lower"),
        );
        return old;
    }
    context::set_irql(new);
    old
}

/// Lowers the calling thread's IRQL to `new` (`KeLowerIrql`). Lowering to a higher level is a
/// verifier violation ([`Rule::InvalidIrqlTransition`]); the IRQL is then left unchanged.
pub fn lower_irql(new: Irql) {
    let cur = current_irql();
    if new > cur {
        verifier::report(
            Rule::InvalidIrqlTransition,
            "KeLowerIrql",
            &format!("KeLowerIrql to {new} called at {cur}; the new IRQL must not be higher"),
        );
        return;
    }
    context::set_irql(new);
}

/// Raises the IRQL for a scope; dropping the guard lowers it back to the saved level.
#[must_use = "the IRQL is lowered again when the guard drops"]
#[derive(Debug)]
pub struct IrqlGuard {
    saved: Irql,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl IrqlGuard {
    /// Raises to `new` (see [`raise_irql`]).
    pub fn raise(new: Irql) -> Self {
        IrqlGuard {
            saved: raise_irql(new),
            _not_send: core::marker::PhantomData,
        }
    }

    /// The level that is restored on drop.
    pub fn saved(&self) -> Irql {
        self.saved
    }
}

impl Drop for IrqlGuard {
    fn drop(&mut self) {
        lower_irql(self.saved);
    }
}

/// Checks that the calling thread runs at or below `max` before `routine` does its work.
///
/// On violation reports [`Rule::IrqlTooHigh`] with a message like
/// `WdfWaitLockAcquire called at DISPATCH_LEVEL; allowed ≤ PASSIVE_LEVEL` and returns false, so
/// the caller can fall back to a safe behaviour in `Record` mode.
pub fn require_max_irql(max: Irql, routine: &str) -> bool {
    check_max_irql(current_irql(), max, routine)
}

/// [`require_max_irql`] for a caller that has already read the IRQL (`cur`), e.g. a spin lock
/// that reads and raises it in one thread-local access.
#[inline]
pub(crate) fn check_max_irql(cur: Irql, max: Irql, routine: &str) -> bool {
    if cur <= max {
        return true;
    }
    report_irql_too_high(cur, max, routine);
    false
}

#[cold]
#[inline(never)]
fn report_irql_too_high(cur: Irql, max: Irql, routine: &str) {
    verifier::report(
        Rule::IrqlTooHigh,
        routine,
        &format!("{routine} called at {cur}; allowed ≤ {max}"),
    );
}
