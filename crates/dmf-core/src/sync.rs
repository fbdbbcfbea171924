//! Module locks: each Module's own default lock and up to four auxiliary locks.
//!
//! C DMF gives every Module one default lock plus `NumberOfAuxiliaryLocks` (0…4) more, all of one
//! kind chosen by the Module's options: `DMF_MODULE_OPTIONS_PASSIVE` Modules get wait locks
//! (`WDFWAITLOCK`, PASSIVE_LEVEL only), `DMF_MODULE_OPTIONS_DISPATCH` Modules get spin locks
//! (`WDFSPINLOCK`, which raise to DISPATCH_LEVEL), and `DMF_MODULE_OPTIONS_DISPATCH_MAXIMUM`
//! Modules let the client choose per instance through `DMF_MODULE_ATTRIBUTES.PassiveLevel`
//! (`DMF_SynchronizationCreate` in C DMF's `DmfHelpers.c`). [`LockKind::for_module`] encodes
//! that rule.
//!
//! In Rust the lock owns what it protects: a [`ModuleLock<T>`] wraps the data (normally the
//! Module's context) and [`ModuleLock::lock`] returns a guard through which alone the data is
//! reached. Both lock kinds sit behind the one guard type, so Module code does not change when a
//! client picks PASSIVE_LEVEL for a DISPATCH_MAXIMUM Module. The guard is `#[must_use]` and not
//! `Send`: a lock is released by the thread that acquired it, which is what KMDF requires (and
//! kmdf-sim's verifier checks).
//!
//! "A Module may lock only itself" (C DMF asserts it at run time since PR #185) holds here by
//! construction: a Module's locks are private fields of its own object, and no API hands them to
//! another Module.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use crate::fallible::VecExt;
use crate::platform::contract::{PlatformSpinLock, PlatformWaitLock, WaitStatus};
use crate::platform::{SpinLock, WaitLock};
use crate::status::{NtResult, NtStatus};

bitflags::bitflags! {
    /// Module options (`DMF_MODULE_OPTIONS_*`). Exactly one of `PASSIVE`, `DISPATCH` and
    /// `DISPATCH_MAXIMUM` must be set.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct ModuleOptions: u32 {
        /// `DMF_MODULE_OPTIONS_PASSIVE`: the Module runs at PASSIVE_LEVEL; its locks are wait locks.
        const PASSIVE = 0x0000_0001;
        /// `DMF_MODULE_OPTIONS_DISPATCH`: Methods may run at DISPATCH_LEVEL; its locks are spin locks.
        const DISPATCH = 0x0000_0002;
        /// `DMF_MODULE_OPTIONS_DISPATCH_MAXIMUM`: DISPATCH unless the client asks for PASSIVE_LEVEL.
        const DISPATCH_MAXIMUM = 0x0000_0004;
        /// `DMF_MODULE_OPTIONS_TRANSPORT_REQUIRED`: the client must add a Transport Module.
        const TRANSPORT_REQUIRED = 0x0000_0008;
    }
}

/// The kind of a Module's locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockKind {
    /// Spin locks (`WDFSPINLOCK`): holding one runs at DISPATCH_LEVEL.
    Spin,
    /// Wait locks (`WDFWAITLOCK`): PASSIVE_LEVEL only; the holder may block.
    Wait,
}

/// The most auxiliary locks a Module may have (`DMF_MAXIMUM_AUXILIARY_LOCKS`).
pub const MAXIMUM_AUXILIARY_LOCKS: usize = 4;

impl LockKind {
    /// The lock kind for a Module with `options` whose client asked for PASSIVE_LEVEL
    /// (`DMF_MODULE_ATTRIBUTES.PassiveLevel`) or not.
    ///
    /// - `PASSIVE` → [`LockKind::Wait`], whatever the client asked.
    /// - `DISPATCH` → [`LockKind::Spin`]; asking for PASSIVE_LEVEL fails with
    ///   `STATUS_INVALID_PARAMETER` (the Module was not written for it).
    /// - `DISPATCH_MAXIMUM` → [`LockKind::Wait`] if the client asked for PASSIVE_LEVEL, else
    ///   [`LockKind::Spin`].
    /// - none or several of the three → `STATUS_INVALID_PARAMETER`.
    pub fn for_module(options: ModuleOptions, client_passive_level: bool) -> NtResult<LockKind> {
        let level = options
            & (ModuleOptions::PASSIVE | ModuleOptions::DISPATCH | ModuleOptions::DISPATCH_MAXIMUM);
        if level == ModuleOptions::PASSIVE {
            Ok(LockKind::Wait)
        } else if level == ModuleOptions::DISPATCH {
            if client_passive_level {
                Err(NtStatus::INVALID_PARAMETER)
            } else {
                Ok(LockKind::Spin)
            }
        } else if level == ModuleOptions::DISPATCH_MAXIMUM {
            Ok(if client_passive_level {
                LockKind::Wait
            } else {
                LockKind::Spin
            })
        } else {
            Err(NtStatus::INVALID_PARAMETER)
        }
    }
}

enum RawLock {
    Spin(SpinLock),
    Wait(WaitLock),
}

/// A lock of one of the two kinds that owns the data it protects.
///
/// Maps to `DMF_ModuleLock` / `DMF_ModuleUnlock` (default lock) and `DMF_ModuleAuxiliaryLock` /
/// `…Unlock`, i.e. `WdfSpinLockAcquire`/`Release` or `WdfWaitLockAcquire`/`Release`.
pub struct ModuleLock<T: ?Sized> {
    raw: RawLock,
    data: UnsafeCell<T>,
}

// SAFETY: the data is only reached through a guard, and a guard exists only while the platform
// lock is held, so at most one thread touches `T` at a time; moving `T` between threads needs
// `T: Send`.
unsafe impl<T: ?Sized + Send> Send for ModuleLock<T> {}
// SAFETY: as above — shared access to the lock hands out `&mut T` only under mutual exclusion.
unsafe impl<T: ?Sized + Send> Sync for ModuleLock<T> {}

impl<T> ModuleLock<T> {
    /// Creates a lock of `kind` protecting `value`.
    pub fn new(kind: LockKind, value: T) -> NtResult<Self> {
        let raw = match kind {
            LockKind::Spin => RawLock::Spin(SpinLock::new()?),
            LockKind::Wait => RawLock::Wait(WaitLock::new()?),
        };
        Ok(ModuleLock {
            raw,
            data: UnsafeCell::new(value),
        })
    }

    /// Consumes the lock and returns the data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> ModuleLock<T> {
    /// The kind of this lock.
    pub fn kind(&self) -> LockKind {
        match self.raw {
            RawLock::Spin(_) => LockKind::Spin,
            RawLock::Wait(_) => LockKind::Wait,
        }
    }

    /// Acquires the lock and returns the guard through which the data is reached.
    ///
    /// A spin lock raises the caller to DISPATCH_LEVEL until the guard is dropped (callable at
    /// `≤ DISPATCH_LEVEL`); a wait lock is PASSIVE_LEVEL only and may block.
    #[inline]
    pub fn lock(&self) -> ModuleLockGuard<'_, T> {
        match &self.raw {
            RawLock::Spin(lock) => lock.acquire(),
            RawLock::Wait(lock) => {
                let status = lock.acquire(None);
                // INVARIANT: an infinite wait cannot time out.
                debug_assert_eq!(status, WaitStatus::Signaled);
            }
        }
        ModuleLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Mutable access without locking: `&mut self` proves nobody else can hold the lock.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    #[inline]
    fn unlock(&self) {
        match &self.raw {
            RawLock::Spin(lock) => lock.release(),
            RawLock::Wait(lock) => lock.release(),
        }
    }
}

impl<T: ?Sized> core::fmt::Debug for ModuleLock<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ModuleLock")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

/// Proof that a [`ModuleLock`] is held; dereferences to the protected data and releases the lock
/// when dropped. Not `Send`: the acquiring thread releases.
#[must_use = "dropping the guard releases the Module lock at once"]
pub struct ModuleLockGuard<'a, T: ?Sized> {
    lock: &'a ModuleLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing `&ModuleLockGuard` across threads only gives `&T`, which is fine for `T: Sync`
// (as for the standard library's `MutexGuard`).
unsafe impl<T: ?Sized + Sync> Sync for ModuleLockGuard<'_, T> {}

impl<T: ?Sized> Deref for ModuleLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held, so no other reference to the data
        // is live (every access goes through a guard).
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for ModuleLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access through this guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for ModuleLockGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

/// A Module's auxiliary locks (0…[`MAXIMUM_AUXILIARY_LOCKS`]), all of the Module's lock kind.
///
/// Maps to `DMF_ModuleAuxiliaryLock(module, index)` / `DMF_ModuleAuxiliaryUnlock`.
pub struct AuxiliaryLocks {
    // A boxed slice, not a `Vec`: one word less in every Module, nothing allocated for none.
    locks: alloc::boxed::Box<[ModuleLock<()>]>,
}

impl AuxiliaryLocks {
    /// Creates `count` auxiliary locks of `kind`; more than four is `STATUS_INVALID_PARAMETER`.
    pub fn new(kind: LockKind, count: usize) -> NtResult<Self> {
        if count > MAXIMUM_AUXILIARY_LOCKS {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let mut locks = alloc::vec::Vec::new();
        locks.try_reserve_exact_nt(count)?;
        for _ in 0..count {
            locks.try_push(ModuleLock::new(kind, ())?)?;
        }
        Ok(AuxiliaryLocks {
            locks: crate::fallible::try_boxed_slice(locks)?,
        })
    }

    /// How many auxiliary locks there are.
    pub fn count(&self) -> usize {
        self.locks.len()
    }

    /// Acquires auxiliary lock `index`; an index past the count is `STATUS_INVALID_PARAMETER`.
    pub fn lock(&self, index: usize) -> NtResult<ModuleLockGuard<'_, ()>> {
        self.locks
            .get(index)
            .map(ModuleLock::lock)
            .ok_or(NtStatus::INVALID_PARAMETER)
    }
}

impl core::fmt::Debug for AuxiliaryLocks {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AuxiliaryLocks")
            .field("count", &self.count())
            .finish()
    }
}
