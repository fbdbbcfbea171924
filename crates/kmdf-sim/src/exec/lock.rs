//! Framework locks: WDFSPINLOCK and WDFWAITLOCK.
//!
//! * [`SpinLock`] (WdfSpinLockAcquire/Release, D55): acquire at ≤ DISPATCH_LEVEL raises the
//!   calling thread to DISPATCH_LEVEL and saves the previous IRQL in the lock; release restores
//!   it. Mutual exclusion is real (other OS threads block).
//! * [`WaitLock`] (WdfWaitLockAcquire/Release, D54): PASSIVE_LEVEL only (a zero timeout only
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
use std::sync::{Arc, Condvar, Mutex};

use crate::exec::context::{self, new_uid};
use crate::exec::irql::{require_max_irql, Irql};
use crate::exec::{checked_wait, lock};
use crate::machine::{Core, Machine};
use crate::status::Status;
use crate::verifier::Rule;

/// A misuse found under the lock's internal mutex, reported after it is released.
fn report(core: &Core, rule: Rule, object: &str, message: &str) {
    core.verifier.report(rule, object, message);
}

#[derive(Debug, Default)]
struct SpinState {
    owner: Option<u64>,
    saved_irql: Irql,
}

/// A framework spin lock (WDFSPINLOCK).
pub struct SpinLock {
    core: Arc<Core>,
    id: u64,
    name: String,
    state: Mutex<SpinState>,
    freed: Condvar,
}

impl core::fmt::Debug for SpinLock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SpinLock")
            .field("name", &self.name)
            .field("owner", &lock(&self.state).owner)
            .finish_non_exhaustive()
    }
}

impl SpinLock {
    /// `WdfSpinLockCreate` on `machine`; `name` appears in violations.
    pub fn new(machine: &Machine, name: &str) -> Self {
        SpinLock {
            core: Arc::clone(machine.core()),
            id: new_uid(),
            name: name.to_owned(),
            state: Mutex::new(SpinState::default()),
            freed: Condvar::new(),
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True if the calling thread holds the lock.
    pub fn is_held_by_current_thread(&self) -> bool {
        lock(&self.state).owner == Some(context::thread_uid())
    }

    /// `WdfSpinLockAcquire`: raises to DISPATCH_LEVEL and acquires the lock.
    pub fn acquire(&self) {
        require_max_irql(Irql::Dispatch, "WdfSpinLockAcquire");
        let me = context::thread_uid();
        let mut s = lock(&self.state);
        if s.owner == Some(me) {
            drop(s);
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
            return;
        }
        let old = context::irql();
        context::set_irql(Irql::Dispatch);
        while s.owner.is_some() {
            s = self
                .freed
                .wait(s)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        s.owner = Some(me);
        s.saved_irql = old;
        drop(s);
        context::push_held(self.id, format!("spin lock '{}'", self.name));
    }

    /// `WdfSpinLockRelease`: releases the lock and restores the IRQL saved by `acquire`.
    pub fn release(&self) {
        let me = context::thread_uid();
        let mut s = lock(&self.state);
        match s.owner {
            None => {
                drop(s);
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
            }
            Some(owner) if owner != me => {
                drop(s);
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
            Some(_) => {
                s.owner = None;
                let saved = s.saved_irql;
                drop(s);
                self.freed.notify_one();
                context::remove_held(self.id);
                context::set_irql(saved);
            }
        }
    }

    /// Acquires the lock for a scope (RAII form of [`acquire`](Self::acquire)).
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

impl WaitLock {
    /// `WdfWaitLockCreate` on `machine`; `name` appears in violations.
    pub fn new(machine: &Machine, name: &str) -> Self {
        WaitLock {
            core: Arc::clone(machine.core()),
            id: new_uid(),
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
            context::push_held(self.id, format!("wait lock '{}'", self.name));
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
