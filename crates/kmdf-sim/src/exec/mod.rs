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
//! | [`Event`] | KEVENT: `KeInitializeEvent`, `KeSetEvent`, `KeWaitForSingleObject` | — |
//! | [`SpinLock`] | WDFSPINLOCK (`WdfSpinLockAcquire`): raises to DISPATCH_LEVEL | — |
//! | [`WaitLock`] | WDFWAITLOCK (`WdfWaitLockAcquire`): PASSIVE only | — |
//! | [`Timer`] | WDFTIMER (`WdfTimerCreate`, `WdfTimerStart`, `WdfTimerStop`, `EvtTimerFunc`), a child of a device | DPC thread at DISPATCH, or a worker at PASSIVE |
//! | [`WorkItem`] | WDFWORKITEM (`WdfWorkItemCreate`, `WdfWorkItemEnqueue`, `EvtWorkItem`), a child of a device | a system worker thread at PASSIVE |
//! | [`Dpc`] | WDFDPC (`WdfDpcEnqueue`, `EvtDpcFunc`) | the DPC thread at DISPATCH |
//! | [`SystemThread`] | `PsCreateSystemThread`, `PsTerminateSystemThread` | its own thread at PASSIVE |
//! | [`NamedEvent`] | a named KEVENT: `ZwCreateEvent`, `ZwOpenEvent`, `ZwClose` (and user-mode `CreateEvent`) | — |
//! | [`wall_clock`] | `KeQuerySystemTimePrecise`, `ExSystemTimeToLocalTime`, `RtlTimeToTimeFields` | — |
//!
//! Callbacks are boxed closures that receive a borrowed handle of their object (so a timer can
//! restart itself); they are invoked through
//! [`invoke_callback`](crate::verifier::invoke_callback), which attributes, traces and checks them.
//! Misuse that KMDF documents as a bug (waiting at DISPATCH_LEVEL, releasing a lock on the wrong
//! thread, WdfTimerStop(Wait = TRUE) inside the timer's own callback, …) is reported to the
//! [verifier](crate::verifier) instead of deadlocking.
//!
//! ## Two layers in one module
//!
//! [`clock`], [`context`] (the per-thread state, [`Irql`] included) and the internal scheduler
//! are the **dispatcher**, the bottom of the simulator: they know nothing of the machine, the
//! verifier or the object tree, and every layer builds on them. The primitives — [`Event`],
//! the locks, [`Timer`], [`WorkItem`], [`Dpc`], [`SystemThread`] and the IRQL routines of
//! [`irql`] that report to the verifier — are the **execution** layer, above the machine and the
//! object tree (a timer or work item made by `WdfTimerCreate` / `WdfWorkItemCreate` is a WDF
//! object under a device). DPCs, work items and timers share one implementation of a queued
//! driver callback.

pub(crate) mod callback;
pub mod clock;
pub mod context;
pub mod dpc;
pub mod event;
pub mod irql;
pub mod lock;
pub mod named_event;
pub(crate) mod sched;
pub mod thread;
pub mod timer;
pub mod wall_clock;
pub mod workitem;

pub use clock::{duration_to_ticks, ticks_to_duration, ClockMode};
pub use context::{current_driver, thread_name, DriverScope};
pub use dpc::Dpc;
pub use event::{Event, EventKind, WaitStatus};
pub use irql::{current_irql, lower_irql, raise_irql, require_max_irql, Irql, IrqlGuard};
pub use lock::{SpinLock, SpinLockGuard, WaitLock, WaitLockGuard};
pub use named_event::NamedEvent;
pub use thread::SystemThread;
pub use timer::{ExecutionLevel, Timer, TimerConfig};
pub use wall_clock::TimeFields;
pub use workitem::WorkItem;

use std::sync::Mutex;

/// Locks a simulator-internal mutex, ignoring poisoning (state is consistent at every unlock).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
