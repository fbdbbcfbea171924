//! Framework locks: WDFSPINLOCK and WDFWAITLOCK.
//!
//! * [`SpinLock`] (`WdfSpinLockAcquire` / `WdfSpinLockRelease`): acquire at ≤ DISPATCH_LEVEL raises the
//!   calling thread to DISPATCH_LEVEL and saves the previous IRQL in the lock; release restores
//!   it. Mutual exclusion is real (other OS threads block).
//! * [`WaitLock`] (`WdfWaitLockAcquire` / `WdfWaitLockRelease`): PASSIVE_LEVEL only (a zero timeout only
//!   tests and is allowed below DISPATCH_LEVEL); does not change the IRQL; acquire with an
//!   optional timeout returns `STATUS_SUCCESS` or `STATUS_TIMEOUT` on the virtual clock. Waiting
//!   for a wait lock is a simulator wait (it counts for `settle` and AutoAdvance).
//!
//! Both offer the raw WDF-shaped API (`acquire` / `release`), so the verifier can catch misuse:
//! releasing on another thread than the acquirer
//! ([`Rule::LockReleasedByOtherThread`]),
//! releasing a lock that is not held (`LockNotHeld`), and acquiring a lock the thread already
//! holds (`LockRecursiveAcquire`). Each misuse is reported and the offending call has no effect.
//! The RAII guards (`lock()`) are the convenient form; they are `!Send`, since a lock is released
//! by the thread that acquired it. Held locks are tracked per thread, so
//! [`invoke_callback`](crate::verifier::invoke_callback) can report a lock still held when a
//! callback returns.

use core::marker::PhantomData;
use core::time::Duration;
use std::sync::{Arc, Mutex};

use crate::exec::context::{self, new_uid, ReleaseRefused, SpinWord};
use crate::exec::irql::{check_max_irql, require_max_irql, Irql};
use crate::exec::lock;
use crate::machine::{checked_wait, Core, Machine};
use crate::status::Status;
use crate::verifier::Rule;

/// A misuse found under the lock's internal mutex, reported after it is released.
fn report(core: &Core, rule: Rule, object: &str, message: &str) {
    core.verifier.report(rule, object, message);
}

/// A framework spin lock (WDFSPINLOCK).
///
/// The lock word is an atomic holder id and saved IRQL (0 = free), so the uncontended
/// acquire/release pair costs a compare-exchange and a store plus the IRQL and held-lock
/// bookkeeping, one thread-local access each way, inlined into the caller. The verifier's checks
/// stay on, and a Module's lock on the simulator costs a little less than an uncontended
/// `std::sync::Mutex` (bench `lock`). A
/// contended acquirer spins (then yields), as a processor spins on a `KSPIN_LOCK`: it is
/// "running" for `settle` and AutoAdvance, like a real spinning CPU.
pub struct SpinLock {
    core: Arc<Core>,
    id: u64,
    name: String,
    /// The lock word: holder and saved IRQL.
    word: SpinWord,
}

impl core::fmt::Debug for SpinLock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SpinLock")
            .field("name", &self.name)
            .field("owner", &self.word.owner())
            .finish_non_exhaustive()
    }
}

impl Drop for SpinLock {
    fn drop(&mut self) {
        context::unregister_lock(self.id);
    }
}

impl SpinLock {
    /// `WdfSpinLockCreate` on `machine`; `name` appears in violations.
    pub fn new(machine: &Machine, name: &str) -> Self {
        let id = new_uid();
        context::register_lock(id, format!("spin lock '{name}'"));
        SpinLock {
            core: Arc::clone(machine.core()),
            id,
            name: name.to_owned(),
            word: SpinWord::default(),
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True if the calling thread holds the lock.
    pub fn is_held_by_current_thread(&self) -> bool {
        self.word.owner() == Some(context::thread_uid())
    }

    /// `WdfSpinLockAcquire`: raises to DISPATCH_LEVEL and acquires the lock.
    ///
    /// The uncontended path is inlined into the caller: it reads and writes the thread's state
    /// (id, IRQL, held locks) in one thread-local access around one compare-exchange; the checks
    /// stay on, and everything rarer (contention, a misuse and its report) is out of line.
    #[inline]
    pub fn acquire(&self) {
        match self.word.try_acquire(self.id) {
            Some(old) => {
                check_max_irql(old, Irql::Dispatch, "WdfSpinLockAcquire");
            }
            None => self.acquire_slow(),
        }
    }

    /// `WdfSpinLockRelease`: releases the lock and restores the IRQL saved by `acquire`.
    #[inline]
    pub fn release(&self) {
        if !self.word.try_release(self.id) {
            self.release_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn acquire_slow(&self) {
        let old = match self.word.acquire_slow(self.id) {
            Ok(old) => old,
            Err(old) => {
                self.report_recursive_acquire();
                old
            }
        };
        check_max_irql(old, Irql::Dispatch, "WdfSpinLockAcquire");
    }

    #[cold]
    #[inline(never)]
    fn release_slow(&self) {
        if let Err(refused) = self.word.release_slow(self.id) {
            self.report_bad_release(refused);
        }
    }

    fn report_recursive_acquire(&self) {
        report(
            &self.core,
            Rule::LockRecursiveAcquire,
            &self.name,
            &format!(
                "WdfSpinLockAcquire on spin lock '{}' by the thread that already holds it \
                 (a deadlock on real hardware); the call is ignored",
                self.name
            ),
        );
    }

    /// A release by a thread that does not hold the lock.
    fn report_bad_release(&self, refused: ReleaseRefused) {
        if refused == ReleaseRefused::NotHeld {
            report(
                &self.core,
                Rule::LockNotHeld,
                &self.name,
                &format!(
                    "WdfSpinLockRelease on spin lock '{}', which is not held; the call is \
                     ignored",
                    self.name
                ),
            );
        } else {
            report(
                &self.core,
                Rule::LockReleasedByOtherThread,
                &self.name,
                &format!(
                    "WdfSpinLockRelease on spin lock '{}' by thread '{}', but another thread \
                     acquired it; a spin lock must be released by its acquirer; the call is \
                     ignored",
                    self.name,
                    context::thread_name()
                ),
            );
        }
    }

    /// Acquires the lock for a scope (RAII form of [`acquire`](Self::acquire)).
    #[inline]
    pub fn lock(&self) -> SpinLockGuard<'_> {
        self.acquire();
        SpinLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }
}

/// Holds a [`SpinLock`]; releases it on drop. Not `Send`.
#[must_use = "the lock is released when the guard drops"]
#[derive(Debug)]
pub struct SpinLockGuard<'a> {
    lock: &'a SpinLock,
    _not_send: PhantomData<*const ()>,
}

impl Drop for SpinLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.lock.release();
    }
}

/// A framework wait lock (WDFWAITLOCK).
pub struct WaitLock {
    core: Arc<Core>,
    id: u64,
    name: String,
    /// Written only under the dispatcher lock.
    owner: Mutex<Option<u64>>,
}

impl core::fmt::Debug for WaitLock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WaitLock")
            .field("name", &self.name)
            .field("owner", &*lock(&self.owner))
            .finish_non_exhaustive()
    }
}

impl Drop for WaitLock {
    fn drop(&mut self) {
        context::unregister_lock(self.id);
    }
}

impl WaitLock {
    /// `WdfWaitLockCreate` on `machine`; `name` appears in violations.
    pub fn new(machine: &Machine, name: &str) -> Self {
        let id = new_uid();
        context::register_lock(id, format!("wait lock '{name}'"));
        WaitLock {
            core: Arc::clone(machine.core()),
            id,
            name: name.to_owned(),
            owner: Mutex::new(None),
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True if the calling thread holds the lock.
    pub fn is_held_by_current_thread(&self) -> bool {
        *lock(&self.owner) == Some(context::thread_uid())
    }

    /// `WdfWaitLockAcquire`: `None` waits forever, `Some(Duration::ZERO)` only tries. Returns
    /// `STATUS_SUCCESS` (acquired) or `STATUS_TIMEOUT`. PASSIVE_LEVEL (below DISPATCH_LEVEL for a
    /// zero timeout); above that the call is reported and only tries.
    pub fn acquire(&self, timeout: Option<Duration>) -> Status {
        let max = if timeout == Some(Duration::ZERO) {
            Irql::Apc
        } else {
            Irql::Passive
        };
        let mut timeout = timeout;
        if !require_max_irql(max, "WdfWaitLockAcquire") {
            timeout = Some(Duration::ZERO);
        }
        let me = context::thread_uid();
        if *lock(&self.owner) == Some(me) {
            report(
                &self.core,
                Rule::LockRecursiveAcquire,
                &self.name,
                &format!(
                    "WdfWaitLockAcquire on wait lock '{}' by the thread that already holds it \
                     (a deadlock on real hardware); the call is ignored",
                    self.name
                ),
            );
            return Status::SUCCESS;
        }
        let result = checked_wait(
            &self.core,
            "WdfWaitLockAcquire",
            &self.name,
            timeout,
            &mut |_st| {
                let mut owner = lock(&self.owner);
                if owner.is_none() {
                    *owner = Some(me);
                    true
                } else {
                    false
                }
            },
        );
        if result.is_signaled() {
            context::push_held(self.id);
        }
        result.to_status()
    }

    /// `WdfWaitLockRelease`.
    pub fn release(&self) {
        let me = context::thread_uid();
        let mut st = self.core.sched.lock();
        let mut owner = lock(&self.owner);
        match *owner {
            Some(o) if o == me => {
                *owner = None;
                drop(owner);
                self.core.sched.wake_all(&mut st);
                drop(st);
                context::remove_held(self.id);
            }
            other => {
                drop(owner);
                drop(st);
                let (rule, what) = if other.is_none() {
                    (Rule::LockNotHeld, "which is not held".to_owned())
                } else {
                    (
                        Rule::LockReleasedByOtherThread,
                        format!(
                            "by thread '{}', but another thread acquired it",
                            context::thread_name()
                        ),
                    )
                };
                report(
                    &self.core,
                    rule,
                    &self.name,
                    &format!(
                        "WdfWaitLockRelease on wait lock '{}' {what}; the call is ignored",
                        self.name
                    ),
                );
            }
        }
    }

    /// Acquires the lock for a scope, waiting forever (RAII form of [`acquire`](Self::acquire)).
    pub fn lock(&self) -> WaitLockGuard<'_> {
        let _ = self.acquire(None);
        WaitLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Tries to acquire the lock within `timeout` of virtual time.
    pub fn try_lock_for(&self, timeout: Duration) -> Option<WaitLockGuard<'_>> {
        (self.acquire(Some(timeout)) == Status::SUCCESS).then_some(WaitLockGuard {
            lock: self,
            _not_send: PhantomData,
        })
    }
}

/// Holds a [`WaitLock`]; releases it on drop. Not `Send`.
#[must_use = "the lock is released when the guard drops"]
#[derive(Debug)]
pub struct WaitLockGuard<'a> {
    lock: &'a WaitLock,
    _not_send: PhantomData<*const ()>,
}

impl Drop for WaitLockGuard<'_> {
    fn drop(&mut self) {
        self.lock.release();
    }
}
