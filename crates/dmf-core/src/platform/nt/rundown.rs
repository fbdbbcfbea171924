//! Rundown protection on `EX_RUNDOWN_REF`: [`NtRundown`].
//!
//! The five `Ex…RundownProtection` routines map one to one onto methods. The type is *not* pinned:
//! an idle `EX_RUNDOWN_REF` is a plain count with no pointer into itself, and the only time it holds
//! a pointer (to the waiter's stack wait block, while a thread is inside
//! `ExWaitForRundownProtectionRelease`) that thread borrows the `NtRundown`, so it cannot move.
//! The kernel updates the count with interlocked operations from any processor, so the storage is
//! an [`UnsafeCell`] that Rust code never reads or writes itself.
//!
//! Acquiring is safe (a reference that is never released only makes the wait block forever);
//! releasing by hand is `unsafe` because a release without its acquire corrupts the count (and,
//! once a waiter is parked, dereferences a garbage wait-block pointer). [`NtRundown::enter`]
//! returns a guard that releases exactly once, which is what ordinary code should use.

use core::cell::UnsafeCell;

use super::ffi;

/// An `EX_RUNDOWN_REF`: rundown protection for an object other code may still be calling into.
///
/// Maps to `ExInitializeRundownProtection` ([`new`](Self::new)), `ExAcquireRundownProtection`
/// ([`acquire`](Self::acquire), [`enter`](Self::enter)), `ExReleaseRundownProtection`
/// ([`release`](Self::release), dropping an [`NtRundownGuard`]), `ExWaitForRundownProtectionRelease`
/// ([`wait`](Self::wait)), `ExReInitializeRundownProtection` ([`reinitialize`](Self::reinitialize))
/// and `ExRundownCompleted` ([`mark_completed`](Self::mark_completed)).
pub struct NtRundown {
    run_ref: UnsafeCell<ffi::ExRundownRef>,
}

// SAFETY: the EX_RUNDOWN_REF is only ever accessed by ntoskrnl's rundown routines, which use
// interlocked operations and are documented for concurrent use from any thread; it holds no
// thread-affine state.
unsafe impl Send for NtRundown {}
// SAFETY: as for `Send`: every `&self` method is one ntoskrnl call designed for concurrent callers.
unsafe impl Sync for NtRundown {}

impl NtRundown {
    /// A new rundown reference, not run down. Maps to `ExInitializeRundownProtection`.
    ///
    /// Any IRQL.
    pub fn new() -> Self {
        let rundown = Self {
            run_ref: UnsafeCell::new(ffi::ExRundownRef::ZERO),
        };
        // SAFETY: the pointer is to our own, live, correctly laid out EX_RUNDOWN_REF; nobody else
        // can see it yet. Returning `rundown` by value afterwards is fine: the idle structure holds
        // no pointer into itself (see the module docs).
        unsafe { ffi::ExInitializeRundownProtection(rundown.run_ref.get()) };
        rundown
    }

    /// Tries to take a reference; `false` once a [`wait`](Self::wait) has begun (or after
    /// [`mark_completed`](Self::mark_completed)). Maps to `ExAcquireRundownProtection`.
    ///
    /// A `true` must be paired with exactly one [`release`](Self::release); prefer
    /// [`enter`](Self::enter), whose guard does that. `<= DISPATCH_LEVEL`.
    #[must_use = "a successful acquire must be released"]
    pub fn acquire(&self) -> bool {
        // SAFETY: `run_ref` is a live EX_RUNDOWN_REF initialised by `new`; the routine is
        // designed for concurrent callers.
        unsafe { ffi::ExAcquireRundownProtection(self.run_ref.get()) != 0 }
    }

    /// Releases a reference taken by [`acquire`](Self::acquire). Maps to
    /// `ExReleaseRundownProtection`. If a waiter is parked and this is the last reference, the
    /// waiter is woken. `<= DISPATCH_LEVEL`.
    ///
    /// # Safety
    /// The caller must own one successful `acquire` on this object that has not been released yet
    /// and was taken after the last [`reinitialize`](Self::reinitialize) /
    /// [`mark_completed`](Self::mark_completed). Releasing a reference that was never taken
    /// corrupts the count and can make ntoskrnl follow a garbage wait-block pointer.
    pub unsafe fn release(&self) {
        // SAFETY: the caller owns an outstanding reference (contract above), so the count has
        // one to give back; `run_ref` is live.
        unsafe { ffi::ExReleaseRundownProtection(self.run_ref.get()) }
    }

    /// Takes a reference and returns a guard that releases it when dropped; `None` once rundown
    /// has begun. Maps to `ExAcquireRundownProtection` / `ExReleaseRundownProtection`.
    /// `<= DISPATCH_LEVEL`.
    pub fn enter(&self) -> Option<NtRundownGuard<'_>> {
        // Not `then_some(guard)`: that builds the guard even when the acquire failed, and its
        // drop would release a reference that was never taken.
        if self.acquire() {
            Some(NtRundownGuard { rundown: self })
        } else {
            None
        }
    }

    /// Runs the object down: from now on every acquire fails; returns once every reference taken
    /// before has been released. Maps to `ExWaitForRundownProtectionRelease`.
    ///
    /// Waiting on an object that is already run down returns at once (no error). Only one thread
    /// should wait: a second concurrent waiter finds the object "already run down" and returns at
    /// once, possibly before the holders are gone. Must not be called while the calling thread
    /// holds a reference (it would wait for itself). `<= APC_LEVEL`.
    pub fn wait(&self) {
        debug_assert!(
            super::current_irql() <= super::KIrql::APC_LEVEL,
            "ExWaitForRundownProtectionRelease above APC_LEVEL"
        );
        // SAFETY: `run_ref` is live and stays so for the whole wait, because `&self` borrows it;
        // while we wait it holds a pointer to our stack wait block, which ntoskrnl clears before
        // the call returns.
        unsafe { ffi::ExWaitForRundownProtectionRelease(self.run_ref.get()) }
    }

    /// Re-arms a run-down object so acquires succeed again. Maps to
    /// `ExReInitializeRundownProtection`.
    ///
    /// Meant for after [`wait`](Self::wait) returned. `&mut self` proves no guard and no waiter
    /// exists; references taken with [`acquire`](Self::acquire) and not yet released are
    /// forgotten (their `release` would then be a contract violation). Any IRQL.
    pub fn reinitialize(&mut self) {
        // SAFETY: exclusive access: no other thread is inside a rundown routine on this object.
        unsafe { ffi::ExReInitializeRundownProtection(self.run_ref.get_mut()) }
    }

    /// Marks the object run down without waiting (acquires fail from now on). Maps to
    /// `ExRundownCompleted`.
    ///
    /// `&mut self` proves no guard and no waiter exists. Any IRQL.
    pub fn mark_completed(&mut self) {
        // SAFETY: exclusive access: no other thread is inside a rundown routine on this object.
        unsafe { ffi::ExRundownCompleted(self.run_ref.get_mut()) }
    }
}

impl Default for NtRundown {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for NtRundown {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NtRundown").finish_non_exhaustive()
    }
}

/// One reference on an [`NtRundown`]; dropping it calls `ExReleaseRundownProtection`.
#[must_use = "dropping the guard releases the rundown reference at once"]
pub struct NtRundownGuard<'a> {
    rundown: &'a NtRundown,
}

impl Drop for NtRundownGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: a guard exists only for a successful acquire (`NtRundown::enter`) and is dropped
        // once; `reinitialize`/`mark_completed` need `&mut NtRundown`, impossible while it lives.
        unsafe { self.rundown.release() }
    }
}

impl core::fmt::Debug for NtRundownGuard<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NtRundownGuard").finish_non_exhaustive()
    }
}
