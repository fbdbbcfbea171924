//! Kernel events (KEVENT) and waits.
//!
//! Semantics of [`KeInitializeEvent`] / [`KeSetEvent`] / `KeResetEvent` / `KeClearEvent` /
//! [`KeWaitForSingleObject`]:
//!
//! * a [`EventKind::Notification`] event releases every waiter when set and stays signaled until
//!   cleared; a [`EventKind::Synchronization`] event satisfies one wait and resets itself;
//! * [`Event::set`] returns the previous state;
//! * [`Event::wait`] with `None` waits forever, with a zero timeout only tests, otherwise times
//!   out on the **virtual clock** with [`WaitStatus::TimedOut`] (`STATUS_TIMEOUT`, which is an
//!   `NT_SUCCESS` value);
//! * a wait with a nonzero or no timeout at DISPATCH_LEVEL is a
//!   [`WaitAtDispatch`](crate::verifier::Rule::WaitAtDispatch) violation.
//!
//! The state lives under the machine's dispatcher lock, and waiters sleep on its condition
//! variable, like a KEVENT under the kernel dispatcher lock. In particular [`Event::set`] changes
//! the flag and wakes waiters while holding that lock, and a waiter can only return after it has
//! re-acquired the lock — so `set` never touches the event after a concurrent waiter can return.
//! A rundown primitive (free the object when the waiter returns) can rely on this.
//!
//! [`KeInitializeEvent`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdm/nf-wdm-keinitializeevent
//! [`KeSetEvent`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdm/nf-wdm-kesetevent
//! [`KeWaitForSingleObject`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdm/nf-wdm-kewaitforsingleobject

use core::time::Duration;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use crate::exec::sched::WaitStatus;
use crate::machine::{checked_wait, Core, Machine};

/// The two KEVENT types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `NotificationEvent`: manual reset; releases all waiters.
    Notification,
    /// `SynchronizationEvent`: auto reset; satisfies one wait.
    Synchronization,
}

struct EventInner {
    core: Arc<Core>,
    name: String,
    kind: EventKind,
    /// Written only under the dispatcher lock.
    signaled: AtomicBool,
}

/// A kernel event. Clones are handles to the same event.
#[derive(Clone)]
pub struct Event {
    inner: Arc<EventInner>,
}

impl core::fmt::Debug for Event {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.inner.name)
            .field("kind", &self.inner.kind)
            .field("signaled", &self.is_signaled())
            .finish()
    }
}

impl Event {
    /// `KeInitializeEvent` on `machine` (any IRQL).
    pub fn new(machine: &Machine, kind: EventKind, initially_signaled: bool) -> Self {
        Self::named(machine, "event", kind, initially_signaled)
    }

    /// Like [`Event::new`], with a name used in violations.
    pub fn named(machine: &Machine, name: &str, kind: EventKind, initially_signaled: bool) -> Self {
        Event {
            inner: Arc::new(EventInner {
                core: Arc::clone(machine.core()),
                name: name.to_owned(),
                kind,
                signaled: AtomicBool::new(initially_signaled),
            }),
        }
    }

    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        self.inner.kind
    }

    /// `KeSetEvent`: signals the event and returns whether it was already signaled. Wakes all
    /// waiters of a notification event, one wait of a synchronization event. ≤ DISPATCH_LEVEL.
    pub fn set(&self) -> bool {
        let core = &self.inner.core;
        let mut st = core.sched.lock();
        let was = self.inner.signaled.swap(true, Ordering::Relaxed);
        if !was {
            core.sched.wake_all(&mut st);
        }
        was
    }

    /// `KeClearEvent`: sets the event to not signaled.
    pub fn clear(&self) {
        let _st = self.inner.core.sched.lock();
        self.inner.signaled.store(false, Ordering::Relaxed);
    }

    /// `KeResetEvent`: sets the event to not signaled and returns whether it was signaled.
    pub fn reset(&self) -> bool {
        let _st = self.inner.core.sched.lock();
        self.inner.signaled.swap(false, Ordering::Relaxed)
    }

    /// `KeReadStateEvent`: whether the event is signaled now.
    pub fn is_signaled(&self) -> bool {
        self.inner.signaled.load(Ordering::Relaxed)
    }

    /// `KeWaitForSingleObject` on the event. `None` waits forever; `Some(Duration::ZERO)` only
    /// tests; otherwise times out after `timeout` of virtual time. A satisfied wait on a
    /// synchronization event resets it.
    pub fn wait(&self, timeout: Option<Duration>) -> WaitStatus {
        let inner = &self.inner;
        let auto_reset = inner.kind == EventKind::Synchronization;
        checked_wait(
            &inner.core,
            "KeWaitForSingleObject",
            &inner.name,
            timeout,
            &mut |_st| {
                if auto_reset {
                    inner.signaled.swap(false, Ordering::Relaxed)
                } else {
                    inner.signaled.load(Ordering::Relaxed)
                }
            },
        )
    }
}
