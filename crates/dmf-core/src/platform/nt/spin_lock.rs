//! Executive spin locks on `KSPIN_LOCK`: [`NtSpinLock`].
//!
//! On x64, `KeAcquireSpinLock(lock, &old)` is a macro over the export `KeAcquireSpinLockRaiseToDpc`,
//! which raises to `DISPATCH_LEVEL`, spins until the lock word is free, and returns the previous
//! IRQL; `KeReleaseSpinLock(lock, old)` (also an export) frees the word and lowers the IRQL back.
//! `KeInitializeSpinLock` is an inline store of 0, so [`NtSpinLock::new`] is a `const fn`.
//!
//! A free `KSPIN_LOCK` is a plain word with no pointer into itself, so the lock need not be pinned;
//! while it is held through a guard, the guard borrows it. The storage must be non-paged (it is
//! touched at `DISPATCH_LEVEL`): put locks in pool or in a driver's static data, not in pageable
//! memory.

use core::cell::UnsafeCell;
use core::marker::PhantomData;

use super::ffi;
use super::irql::KIrql;

/// A `KSPIN_LOCK`.
///
/// Maps to `KeInitializeSpinLock` ([`new`](Self::new)), `KeAcquireSpinLockRaiseToDpc`
/// ([`acquire`](Self::acquire), [`lock`](Self::lock)) and `KeReleaseSpinLock`
/// ([`release`](Self::release), dropping an [`NtSpinLockGuard`]).
pub struct NtSpinLock {
    lock: UnsafeCell<ffi::KSpinLock>,
}

// SAFETY: the lock word is only touched by ntoskrnl's spin-lock routines, which use interlocked
// operations and exist precisely for use from many processors at once.
unsafe impl Send for NtSpinLock {}
// SAFETY: as for `Send`.
unsafe impl Sync for NtSpinLock {}

impl NtSpinLock {
    /// A free spin lock. Maps to `KeInitializeSpinLock` (an inline `*SpinLock = 0` in the x64
    /// headers).
    pub const fn new() -> Self {
        Self {
            lock: UnsafeCell::new(0),
        }
    }

    /// Raises to `DISPATCH_LEVEL`, acquires the lock and returns the previous IRQL. Maps to
    /// `KeAcquireSpinLockRaiseToDpc` (`KeAcquireSpinLock`).
    ///
    /// The returned IRQL must be handed back to [`release`](Self::release); prefer
    /// [`lock`](Self::lock), whose guard does that. `<= DISPATCH_LEVEL`; acquiring a lock the
    /// calling processor already holds deadlocks.
    #[must_use = "the previous IRQL must be passed to `release`"]
    pub fn acquire(&self) -> KIrql {
        debug_assert!(
            super::current_irql() <= KIrql::DISPATCH_LEVEL,
            "KeAcquireSpinLockRaiseToDpc above DISPATCH_LEVEL"
        );
        // SAFETY: `lock` is a live KSPIN_LOCK word, accessed only by ntoskrnl's interlocked
        // spin-lock routines.
        KIrql(unsafe { ffi::KeAcquireSpinLockRaiseToDpc(self.lock.get()) })
    }

    /// Releases the lock and lowers the IRQL to `old_irql`. Maps to `KeReleaseSpinLock`.
    /// `DISPATCH_LEVEL`.
    ///
    /// # Safety
    /// The calling processor must hold this lock through [`acquire`](Self::acquire), and
    /// `old_irql` must be the IRQL that call returned. Releasing a lock someone else holds breaks
    /// their mutual exclusion, and lowering the IRQL below the level other code on this processor
    /// relies on breaks theirs.
    pub unsafe fn release(&self, old_irql: KIrql) {
        // SAFETY: the caller holds the lock and passes the IRQL its acquire returned (contract).
        unsafe { ffi::KeReleaseSpinLock(self.lock.get(), old_irql.0) }
    }

    /// Acquires the lock and returns a guard that releases it (restoring the IRQL) when dropped.
    /// Maps to `KeAcquireSpinLockRaiseToDpc` / `KeReleaseSpinLock`. `<= DISPATCH_LEVEL`.
    pub fn lock(&self) -> NtSpinLockGuard<'_> {
        NtSpinLockGuard {
            lock: self,
            old_irql: self.acquire(),
            _not_send: PhantomData,
        }
    }
}

impl Default for NtSpinLock {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for NtSpinLock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NtSpinLock").finish_non_exhaustive()
    }
}

/// A held [`NtSpinLock`]; dropping it calls `KeReleaseSpinLock` with the IRQL from before the
/// acquire. Not `Send`: a spin lock is released on the processor (and thread) that acquired it.
#[must_use = "dropping the guard releases the spin lock at once"]
pub struct NtSpinLockGuard<'a> {
    lock: &'a NtSpinLock,
    old_irql: KIrql,
    _not_send: PhantomData<*const ()>,
}

impl NtSpinLockGuard<'_> {
    /// The IRQL the lock will restore when the guard drops.
    pub fn old_irql(&self) -> KIrql {
        self.old_irql
    }
}

impl Drop for NtSpinLockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: the guard exists only for an acquire made by `lock` on this thread (it is not
        // Send), is dropped once, and carries that acquire's previous IRQL.
        unsafe { self.lock.release(self.old_irql) }
    }
}

impl core::fmt::Debug for NtSpinLockGuard<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NtSpinLockGuard")
            .field("old_irql", &self.old_irql)
            .finish_non_exhaustive()
    }
}
