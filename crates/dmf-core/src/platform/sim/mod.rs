//! The `sim` backend: the platform contract on kmdf-sim, the user-mode KMDF.
//!
//! Each item wraps the kmdf-sim object that plays the same KMDF/NT object, so DMF code running on a
//! simulated machine gets that machine's IRQL rules, virtual clock, pool tracking, trace and
//! verifier — the same checks a driver gets under Driver Verifier. Objects bind to the machine of
//! the calling thread (`kmdf_sim::Machine::current()`), which every simulated driver callback,
//! system thread, work item and entered test thread has.
//!
//! Outside any machine (a plain `#[test]` that never entered one) events fall back to a wall-clock
//! event, so rundown protection still works; locks and pool allocations refuse with
//! `STATUS_INVALID_DEVICE_STATE`, because their checks need a machine.
//!
//! This is the only module of dmf-core that names `std` (ARCHITECTURE.md, invariant 1).
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    reason = "the simulator adapter runs in a user-mode process on std; the kernel allocation rule \
              (dmf_core::fallible) is for code that runs in a kernel image"
)]

extern crate std;

use alloc::format;
use core::time::Duration;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use kmdf_sim::exec::event::{Event as SimEvent, EventKind as SimEventKind, WaitStatus as SimWait};
use kmdf_sim::exec::irql::{current_irql, Irql as SimIrql};
use kmdf_sim::exec::lock::{SpinLock as SimSpinLock, WaitLock as SimWaitLock};
use kmdf_sim::pool::PoolBlock;
use kmdf_sim::trace::TraceKind;
use kmdf_sim::Machine;

use super::contract::{
    EventKind, Irql, PlatformClock, PlatformEvent, PlatformIrql, PlatformPool, PlatformSpinLock,
    PlatformTrace, PlatformWaitLock, PoolTag, Timeout, TraceLevel, WaitStatus,
};
use crate::rundown::RundownEvent;

mod bus;
mod device;
pub mod diagram;
mod exec;
mod hid;
mod io;
pub mod module_events;
mod sweep;
mod system;

use crate::status::{NtResult, NtStatus};
pub use device::{
    install_driver, load_driver, platform_guid, plug_in_device, sim_guid, Device, DeviceInit,
    Driver, Resources,
};
pub use exec::{RegistryKey, SystemThread, Timer, WorkItem};
pub use hid::HidParser;
pub use io::{FileObject, InterfaceNotification, IoTarget, Queue, Request};
pub use sweep::{alloc_sweep, live_heap_blocks, CountingAllocator, SweepReport, SWEEP_RUN_LIMIT};
pub use system::{NamedEvent, WallClock};

fn current_machine() -> NtResult<Machine> {
    Machine::current().ok_or(NtStatus::INVALID_DEVICE_STATE)
}

fn from_sim_status(status: kmdf_sim::Status) -> NtStatus {
    NtStatus::from_raw(status.0)
}

/// The current IRQL of the calling simulated thread (`KeGetCurrentIrql`).
#[derive(Debug)]
pub struct CurrentIrql;

impl PlatformIrql for CurrentIrql {
    fn current() -> Irql {
        match current_irql() {
            SimIrql::Passive => Irql::Passive,
            SimIrql::Apc => Irql::Apc,
            SimIrql::Dispatch => Irql::Dispatch,
        }
    }
}

/// A kernel event (`KEVENT`) on the simulated machine, or on the wall clock outside one.
pub struct Event(EventImpl);

enum EventImpl {
    Sim(SimEvent),
    WallClock {
        kind: EventKind,
        signaled: Mutex<bool>,
        waiters: Condvar,
    },
}

impl PlatformEvent for Event {
    /// Never fails: the simulated `KEVENT` (or the wall-clock event) lives on the process heap.
    fn new(kind: EventKind, signaled: bool) -> NtResult<Self> {
        Ok(match Machine::current() {
            Some(machine) => {
                let sim_kind = match kind {
                    EventKind::Notification => SimEventKind::Notification,
                    EventKind::Synchronization => SimEventKind::Synchronization,
                };
                Event(EventImpl::Sim(SimEvent::named(
                    &machine,
                    "DMF event",
                    sim_kind,
                    signaled,
                )))
            }
            None => Event(EventImpl::WallClock {
                kind,
                signaled: Mutex::new(signaled),
                waiters: Condvar::new(),
            }),
        })
    }

    fn set(&self) -> bool {
        match &self.0 {
            EventImpl::Sim(event) => event.set(),
            EventImpl::WallClock {
                signaled, waiters, ..
            } => {
                // The flag and the wake-up happen under one lock: `set` is done with the event
                // before a waiter can return (the contract rundown relies on).
                let mut state = signaled.lock().unwrap_or_else(PoisonError::into_inner);
                let was = *state;
                *state = true;
                waiters.notify_all();
                was
            }
        }
    }

    fn clear(&self) {
        match &self.0 {
            EventImpl::Sim(event) => event.clear(),
            EventImpl::WallClock { signaled, .. } => {
                *signaled.lock().unwrap_or_else(PoisonError::into_inner) = false;
            }
        }
    }

    fn is_signaled(&self) -> bool {
        match &self.0 {
            EventImpl::Sim(event) => event.is_signaled(),
            EventImpl::WallClock { signaled, .. } => {
                *signaled.lock().unwrap_or_else(PoisonError::into_inner)
            }
        }
    }

    fn wait(&self, timeout: Timeout) -> WaitStatus {
        match &self.0 {
            EventImpl::Sim(event) => match event.wait(timeout) {
                SimWait::Signaled => WaitStatus::Signaled,
                SimWait::TimedOut => WaitStatus::TimedOut,
            },
            EventImpl::WallClock {
                kind,
                signaled,
                waiters,
            } => {
                let deadline = timeout.map(|t| Instant::now() + t);
                let mut state = signaled.lock().unwrap_or_else(PoisonError::into_inner);
                while !*state {
                    match deadline {
                        None => state = waiters.wait(state).unwrap_or_else(PoisonError::into_inner),
                        Some(deadline) => {
                            let now = Instant::now();
                            if now >= deadline {
                                return WaitStatus::TimedOut;
                            }
                            state = waiters
                                .wait_timeout(state, deadline - now)
                                .unwrap_or_else(PoisonError::into_inner)
                                .0;
                        }
                    }
                }
                if *kind == EventKind::Synchronization {
                    *state = false;
                }
                WaitStatus::Signaled
            }
        }
    }
}

impl RundownEvent for Event {
    /// A notification event, not signalled; never fails (as [`PlatformEvent::new`]).
    fn new() -> NtResult<Self> {
        <Event as PlatformEvent>::new(EventKind::Notification, false)
    }

    fn signal(&self) {
        PlatformEvent::set(self);
    }

    fn wait(&self) {
        let status = PlatformEvent::wait(self, None);
        debug_assert_eq!(
            status,
            WaitStatus::Signaled,
            "an infinite wait cannot time out"
        );
    }

    fn reset(&self) {
        PlatformEvent::clear(self);
    }
}

impl core::fmt::Debug for Event {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Event")
            .field("signaled", &self.is_signaled())
            .finish_non_exhaustive()
    }
}

/// A spin lock (`WDFSPINLOCK`) on the simulated machine: raises to DISPATCH_LEVEL while held and
/// is checked by the verifier (release on another thread, recursion, held on callback return).
#[derive(Debug)]
pub struct SpinLock(SimSpinLock);

impl PlatformSpinLock for SpinLock {
    fn new() -> NtResult<Self> {
        Ok(SpinLock(SimSpinLock::new(
            &current_machine()?,
            "DMF spin lock",
        )))
    }

    // Inlined: a Module's lock is this forwarding plus kmdf-sim's lock, called on every
    // locked Method.
    #[inline]
    fn acquire(&self) {
        self.0.acquire();
    }

    #[inline]
    fn release(&self) {
        self.0.release();
    }
}

/// A wait lock (`WDFWAITLOCK`) on the simulated machine: PASSIVE_LEVEL only, waits on the
/// virtual clock.
#[derive(Debug)]
pub struct WaitLock(SimWaitLock);

impl PlatformWaitLock for WaitLock {
    fn new() -> NtResult<Self> {
        Ok(WaitLock(SimWaitLock::new(
            &current_machine()?,
            "DMF wait lock",
        )))
    }

    fn acquire(&self, timeout: Timeout) -> WaitStatus {
        let status = self.0.acquire(timeout);
        if from_sim_status(status) == NtStatus::TIMEOUT {
            WaitStatus::TimedOut
        } else {
            WaitStatus::Signaled
        }
    }

    fn release(&self) {
        self.0.release();
    }
}

/// The machine's virtual clock (`KeQueryInterruptTime`); the wall clock since first use outside a
/// machine.
#[derive(Debug)]
pub struct Clock;

impl PlatformClock for Clock {
    fn now() -> Duration {
        static START: OnceLock<Instant> = OnceLock::new();
        if let Some(machine) = Machine::current() {
            machine.now()
        } else {
            START.get_or_init(Instant::now).elapsed()
        }
    }
}

/// Tagged pool on the simulated machine (`ExAllocatePool2` / `ExFreePoolWithTag`): allocations are
/// tracked per driver and tag, leaks are reported at driver unload, and fault injection can fail
/// them.
#[derive(Debug)]
pub struct Pool;

/// A zeroed pool allocation; returned to the pool when dropped.
#[derive(Debug)]
pub struct PoolBuffer(PoolBlock);

impl AsRef<[u8]> for PoolBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl AsMut<[u8]> for PoolBuffer {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl PlatformPool for Pool {
    type Block = PoolBuffer;

    fn allocate(tag: PoolTag, size: usize) -> NtResult<PoolBuffer> {
        let machine = current_machine()?;
        machine
            .pool()
            .allocate(kmdf_sim::pool::PoolTag(tag.0), size)
            .map(PoolBuffer)
            .map_err(from_sim_status)
    }

    /// A fault point of the current machine's fault injector (`FaultPoint::Allocation`, the
    /// counter pool allocations use); admitted outside a machine.
    fn admit_heap_allocation() -> NtResult<()> {
        match Machine::current() {
            Some(machine)
                if machine
                    .faults()
                    .should_fail(kmdf_sim::fault::FaultPoint::Allocation) =>
            {
                Err(NtStatus::INSUFFICIENT_RESOURCES)
            }
            _ => Ok(()),
        }
    }
}

/// Driver tracing into the machine's trace (`DbgPrintEx`); dropped outside a machine.
#[derive(Debug)]
pub struct Trace;

impl PlatformTrace for Trace {
    fn trace(level: TraceLevel, source: &str, message: core::fmt::Arguments<'_>) {
        if let Some(machine) = Machine::current() {
            let level = match level {
                TraceLevel::Error => "ERROR",
                TraceLevel::Warning => "WARNING",
                TraceLevel::Information => "INFO",
                TraceLevel::Verbose => "VERBOSE",
            };
            machine
                .trace()
                .record(TraceKind::Note, source, &format!("[{level}] {message}"));
        }
    }
}
