//! The execution core: IRQL, thread context, the virtual clock, and the kernel/WDF primitives
//! that run driver code — events, locks, timers, work items, DPCs and system threads.
//!
//! ## Design
//!
//! Simulated code runs on real OS threads: test threads bound with
//! [`Machine::enter`](crate::Machine::enter), system threads ([`SystemThread`]), and per machine one
//! DPC thread plus a small pool of system worker threads. Each machine has one *dispatcher lock*
//! protecting its scheduler accounting: which bound thread is running or blocked (and until which
//! virtual deadline), the DPC queue, the system work queue, the timer queue and the state of every
//! waitable object. Every simulator wait goes through it, which is what makes
//! [`Machine::settle`](crate::Machine::settle) exact and lets the [virtual clock](clock) jump over
//! idle time.
//!
//! | Primitive | KMDF/WDM counterpart | Callback context |
//! |---|---|---|
//! | [`Event`] | KEVENT, KeSetEvent, KeWaitForSingleObject (K1–K3) | — |
//! | [`SpinLock`] | WDFSPINLOCK (D55): raises to DISPATCH_LEVEL | — |
//! | [`WaitLock`] | WDFWAITLOCK (D54): PASSIVE only | — |
//! | [`Timer`] | WDFTIMER (D41–D45), a child of a device | DPC thread at DISPATCH, or a worker at PASSIVE |
//! | [`WorkItem`] | WDFWORKITEM (D46–D48), a child of a device | a system worker thread at PASSIVE |
//! | [`Dpc`] | WDFDPC (D49) | the DPC thread at DISPATCH |
//! | [`SystemThread`] | PsCreateSystemThread (K4, K5) | its own thread at PASSIVE |
//!
//! Callbacks are boxed closures that receive a borrowed handle of their object (so a timer can
//! restart itself); they are invoked through
//! [`invoke_callback`](crate::verifier::invoke_callback), which attributes, traces and checks them.
//! Misuse that KMDF documents as a bug (waiting at DISPATCH_LEVEL, releasing a lock on the wrong
//! thread, WdfTimerStop(Wait = TRUE) inside the timer's own callback, …) is reported to the
//! [verifier](crate::verifier) instead of deadlocking.

pub mod clock;
pub mod context;
pub mod dpc;
pub mod event;
pub mod irql;
pub mod lock;
pub(crate) mod sched;
pub mod thread;
pub mod timer;
pub mod workitem;

pub use clock::{duration_to_ticks, ticks_to_duration, ClockMode};
pub use context::{current_driver, thread_name, DriverScope};
pub use dpc::Dpc;
pub use event::{Event, EventKind, WaitStatus};
pub use irql::{current_irql, lower_irql, raise_irql, require_max_irql, Irql, IrqlGuard};
pub use lock::{SpinLock, SpinLockGuard, WaitLock, WaitLockGuard};
pub use thread::SystemThread;
pub use timer::{ExecutionLevel, Timer, TimerConfig};
pub use workitem::WorkItem;

use core::time::Duration;
use std::sync::Mutex;

use crate::machine::{Core, Machine};
use crate::object::{ObjectAttributes, WdfObject};
use crate::status::Status;
use crate::verifier::Rule;
use sched::SchedState;

/// A simulator wait with the KeWaitForSingleObject IRQL rule (K1): a zero timeout only tests and
/// is allowed up to DISPATCH_LEVEL; any other wait above APC_LEVEL is a
/// [`Rule::WaitAtDispatch`] violation, after which the wait degrades to a test.
pub(crate) fn checked_wait(
    core: &Core,
    routine: &str,
    object: &str,
    timeout: Option<Duration>,
    cond: &mut dyn FnMut(&mut SchedState) -> bool,
) -> WaitStatus {
    let mut relative = timeout.map(duration_to_ticks);
    if relative != Some(0) && current_irql() > Irql::Apc {
        let what = if timeout.is_none() {
            "without a timeout"
        } else {
            "with a nonzero timeout"
        };
        core.verifier.report(
            Rule::WaitAtDispatch,
            object,
            &format!(
                "{routine} {what} called at {}; only a zero timeout (a test of the state) is \
                 allowed at DISPATCH_LEVEL",
                current_irql()
            ),
        );
        relative = Some(0);
    }
    let st = core.sched.lock();
    let deadline = relative.map(|t| core.now().saturating_add(t));
    let (_st, satisfied) = core.sched.block_until(st, deadline, cond);
    if satisfied {
        WaitStatus::Signaled
    } else {
        WaitStatus::TimedOut
    }
}

/// The bookkeeping shared by DPCs, timers and work items.
#[derive(Debug, Default)]
pub(crate) struct CallbackState {
    /// In the DPC or work queue (DPC, work item) or with an expiry pending there (timer).
    pub(crate) queued: bool,
    /// Callbacks running now.
    pub(crate) running: u32,
    /// Threads running them (to detect calls from inside the own callback).
    pub(crate) running_on: Vec<u64>,
    /// Deleted: queued entries are skipped, new use is a violation.
    pub(crate) deleted: bool,
}

impl CallbackState {
    /// Under the dispatcher lock, when dequeued.
    pub(crate) fn begin(state: &Mutex<CallbackState>) -> bool {
        let mut s = lock(state);
        s.queued = false;
        if s.deleted {
            return false;
        }
        s.running += 1;
        s.running_on.push(context::thread_uid());
        true
    }

    /// Under the dispatcher lock, after the callback returned.
    pub(crate) fn end(state: &Mutex<CallbackState>) {
        let mut s = lock(state);
        s.running = s.running.saturating_sub(1);
        let me = context::thread_uid();
        if let Some(pos) = s.running_on.iter().position(|&u| u == me) {
            s.running_on.remove(pos);
        }
    }

    /// Is the calling thread inside this object's callback?
    pub(crate) fn in_own_callback(state: &Mutex<CallbackState>) -> bool {
        lock(state).running_on.contains(&context::thread_uid())
    }
}

/// Locks a simulator-internal mutex, ignoring poisoning (state is consistent at every unlock).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Deletes a DPC, timer or work item: marks it deleted (queued runs are skipped) and, when
/// possible, waits for running callbacks. It cannot wait from inside its own callback or above
/// PASSIVE_LEVEL; then it returns at once and the running callback finishes on its own.
pub(crate) fn delete_callback_object(
    core: &Core,
    state: &Mutex<CallbackState>,
    on_delete: &mut dyn FnMut(&mut SchedState),
) {
    let st = core.sched.lock();
    let mut st = st;
    {
        let mut s = lock(state);
        if s.deleted {
            return;
        }
        s.deleted = true;
    }
    on_delete(&mut st);
    if CallbackState::in_own_callback(state) || current_irql() > Irql::Passive {
        return;
    }
    let _ = core
        .sched
        .block_until(st, None, &mut |st| st.shutdown || lock(state).running == 0);
}

/// The object half of `WdfTimerCreate` / `WdfWorkItemCreate`: a `kind` object under
/// `attrs.parent`, which is mandatory and must be a device or lead to one (kmdf-sequences §8.1).
///
/// Errors: `STATUS_WDF_PARENT_NOT_SPECIFIED` without a parent; `STATUS_INVALID_DEVICE_REQUEST`
/// when no device is in the parent chain; `STATUS_INVALID_DEVICE_STATE` when the parent is
/// deleted (a [`Rule::DeletedObjectUsed`] violation too) or its machine is gone;
/// `STATUS_INSUFFICIENT_RESOURCES` (fault injection).
pub(crate) fn create_parented_object(
    attrs: ObjectAttributes,
    kind: &str,
) -> Result<(Machine, WdfObject), Status> {
    let parent = attrs
        .parent
        .clone()
        .ok_or(Status::WDF_PARENT_NOT_SPECIFIED)?;
    if parent.device_ancestor().is_none() {
        return Err(Status::INVALID_DEVICE_REQUEST);
    }
    let machine = parent.machine().ok_or(Status::INVALID_DEVICE_STATE)?;
    let object = WdfObject::create(&machine, kind, attrs)?;
    Ok((machine, object))
}

/// Reports use of a deleted object.
pub(crate) fn report_deleted(core: &Core, object: &str, routine: &str) {
    core.verifier.report(
        Rule::DeletedObjectUsed,
        object,
        &format!("{routine} called on '{object}' after the object was deleted"),
    );
}
