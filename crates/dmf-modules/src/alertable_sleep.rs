//! # DMF_AlertableSleep
//!
//! ## Summary
//!
//! Interruptible delays: a thread sleeps on one of the Module's event slots for a number of
//! milliseconds, and another thread can cut the sleep short — for example when the device leaves D0
//! — with [`AlertableSleep::abort`]. Meant for long delays (10 s or more).
//!
//! ## Configuration
//!
//! [`AlertableSleepConfig`]`{ event_count }`: how many independent slots to create,
//! `1 ..= `[`ALERTABLE_SLEEP_MAXIMUM_TIMERS`] (32). Each slot delays one thread at a time. An
//! out-of-range count fails the Module's creation with `STATUS_INVALID_PARAMETER` (C DMF asserts in
//! Open).
//!
//! ## Methods
//!
//! | C DMF | Rust | IRQL |
//! |---|---|---|
//! | `DMF_AlertableSleep_Sleep` | [`AlertableSleep::sleep`] | PASSIVE |
//! | `DMF_AlertableSleep_Abort` | [`AlertableSleep::abort`] | ≤ DISPATCH |
//! | `DMF_AlertableSleep_ResetForReuse` | [`AlertableSleep::reset_for_reuse`] | ≤ DISPATCH |
//!
//! ## Callbacks
//!
//! None.
//!
//! ## Remarks
//!
//! - Sleep returns `Ok(())` after the full delay, `Err(STATUS_UNSUCCESSFUL)` when it was
//!   interrupted by Abort or by the Module's close.
//! - Abort is sticky: every later Sleep on that slot fails at once until ResetForReuse. It never
//!   affects another slot. Call ResetForReuse from the sleeping thread, not the aborting one.
//! - An index `>= event_count` makes Sleep fail at once with `STATUS_UNSUCCESSFUL`; Abort and
//!   ResetForReuse ignore it.
//! - One thread per slot: a second concurrent Sleep on a busy slot fails at once with
//!   `STATUS_INVALID_DEVICE_REQUEST` (C DMF asserts). Sleep above `PASSIVE_LEVEL` fails the same
//!   way instead of waiting at DISPATCH_LEVEL.
//! - Close aborts every slot, waking every sleeper with `STATUS_UNSUCCESSFUL`. After close, every
//!   Method fails at once with `STATUS_INVALID_DEVICE_STATE` (the framework's rule for all Modules;
//!   C DMF returns `STATUS_UNSUCCESSFUL` there — both fail without waiting).
//! - Design: a sleeper does not hold the Module's Method guard while it waits, only its slot's
//!   event (shared, so it outlives the Module). The framework's close waits for Methods in flight
//!   before calling the Module's Close; a sleeper holding the guard would hold the close up for
//!   its whole delay, and Close could never abort it.
//! - The wait uses the platform event on the simulator's virtual clock. C DMF waits alertably
//!   (`DMF_Portable_EventWaitForSingleObject` with `Alertable = TRUE`); the simulator has no APCs,
//!   so that has no observable effect here.
//!
//! ## Example
//!
//! ```
//! use core::time::Duration;
//! use dmf_core::module::NoParent;
//! use dmf_core::platform::contract::PlatformClock;
//! use dmf_core::platform::Clock;
//! use dmf_core::NtStatus;
//! use dmf_modules::alertable_sleep::{AlertableSleep, AlertableSleepConfig};
//!
//! let machine = kmdf_sim::Machine::builder()
//!     .clock(kmdf_sim::ClockMode::AutoAdvance)
//!     .build();
//! let _on = machine.enter();
//! let sleep = AlertableSleep::with(AlertableSleepConfig { event_count: 2 }).create(&NoParent)?;
//!
//! sleep.sleep(0, 10_000)?; // ten virtual seconds, at once in real time
//! assert_eq!(Clock::now(), Duration::from_secs(10));
//! sleep.abort(1);
//! assert_eq!(sleep.sleep(1, 10_000), Err(NtStatus::UNSUCCESSFUL)); // sticky abort
//! sleep.reset_for_reuse(1);
//! sleep.sleep(1, 1)?;
//! assert_eq!(sleep.sleep(2, 1), Err(NtStatus::UNSUCCESSFUL)); // out of range
//! # Ok::<(), NtStatus>(())
//! ```
//!
//! ## Category
//!
//! Task Execution.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::time::Duration;

use dmf_core::fallible::{try_arc, try_vec_with_capacity, VecExt};
use dmf_core::module::{Dispatched, ModuleCallbacks};
use dmf_core::platform::contract::{EventKind, Irql, PlatformEvent, PlatformIrql, WaitStatus};
use dmf_core::platform::{CurrentIrql, Event};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

/// `ALERTABLE_SLEEP_MAXIMUM_TIMERS`: the most slots one Module may have.
pub const ALERTABLE_SLEEP_MAXIMUM_TIMERS: u32 = 32;

/// `DMF_CONFIG_AlertableSleep`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertableSleepConfig {
    /// Number of independent slots (events), `1 ..= 32`; each delays one thread at a time.
    pub event_count: u32,
}

/// The `DMF_AlertableSleep` Module: interruptible sleeps. See the [module documentation](self).
#[dmf_module(crate = ::dmf_core, config = AlertableSleepConfig, context = Context, open = Create, lock = Dispatch)]
pub struct AlertableSleep;

struct Slot {
    /// A synchronization (auto-reset) event, shared with the thread sleeping on it.
    event: Arc<Event>,
    /// `DoNotWait`: set by Abort, cleared by ResetForReuse.
    do_not_wait: bool,
    /// `CurrentlyWaiting`.
    waiting: bool,
}

#[derive(Default)]
struct Context {
    slots: Vec<Slot>,
    closing: bool,
}

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for AlertableSleep {
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        let count = module.config().event_count;
        if count == 0 || count > ALERTABLE_SLEEP_MAXIMUM_TIMERS {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let mut slots = try_vec_with_capacity(count as usize)?;
        for _ in 0..count {
            slots.try_push(Slot {
                event: try_arc(Event::new(EventKind::Synchronization, false)?)?,
                do_not_wait: false,
                waiting: false,
            })?;
        }
        let mut context = module.lock();
        context.slots = slots;
        context.closing = false;
        Ok(())
    }

    fn close(module: &Dispatched<'_, Self>) {
        // Closing, then abort every slot; sleepers wake with STATUS_UNSUCCESSFUL.
        let mut context = module.lock();
        context.closing = true;
        for slot in &mut context.slots {
            slot.do_not_wait = true;
            slot.event.set();
        }
    }
}

impl AlertableSleep {
    /// `DMF_AlertableSleep_Sleep`: sleeps `milliseconds` on slot `index`.
    ///
    /// `Ok(())` once the full delay elapsed; `Err(STATUS_UNSUCCESSFUL)` when interrupted by
    /// [`abort`](Self::abort) or close, at once when the slot is aborted or `index` is out of
    /// range; `Err(STATUS_INVALID_DEVICE_REQUEST)` at once when another thread sleeps on the slot
    /// or the caller is above `PASSIVE_LEVEL`; `Err(STATUS_INVALID_DEVICE_STATE)` once the Module
    /// is closed.
    pub fn sleep(&self, index: u32, milliseconds: u32) -> NtResult<()> {
        let event = {
            let module = self.enter()?;
            if CurrentIrql::current() != Irql::Passive {
                return Err(NtStatus::INVALID_DEVICE_REQUEST);
            }
            let mut context = module.lock();
            if context.closing {
                return Err(NtStatus::UNSUCCESSFUL);
            }
            let slot = usize::try_from(index)
                .ok()
                .and_then(|i| context.slots.get_mut(i))
                .ok_or(NtStatus::UNSUCCESSFUL)?;
            if slot.waiting {
                return Err(NtStatus::INVALID_DEVICE_REQUEST);
            }
            if slot.do_not_wait {
                return Err(NtStatus::UNSUCCESSFUL);
            }
            slot.waiting = true;
            Arc::clone(&slot.event)
            // The lock and the Method guard drop here: the wait holds neither (see Remarks).
        };
        let status = event.wait(Some(Duration::from_millis(u64::from(milliseconds))));
        // Clear CurrentlyWaiting unless the Module closed meanwhile (then nothing uses it again).
        if let Ok(module) = self.enter() {
            if let Some(slot) = module.lock().slots.get_mut(index as usize) {
                slot.waiting = false;
            }
        }
        match status {
            WaitStatus::TimedOut => Ok(()),
            WaitStatus::Signaled => Err(NtStatus::UNSUCCESSFUL),
        }
    }

    /// `DMF_AlertableSleep_Abort`: wakes the thread sleeping on slot `index` (its Sleep fails) and
    /// makes every later Sleep on it fail at once until [`reset_for_reuse`](Self::reset_for_reuse).
    /// Safe whether or not anyone sleeps there; no effect for an out-of-range index or a closed
    /// Module (close aborted every slot).
    pub fn abort(&self, index: u32) {
        let Ok(module) = self.enter() else { return };
        let mut context = module.lock();
        if let Some(slot) = context.slots.get_mut(index as usize) {
            slot.do_not_wait = true;
            slot.event.set();
        }
    }

    /// `DMF_AlertableSleep_ResetForReuse`: clears the abort of slot `index` and resets its event,
    /// so the next Sleep waits again. Call it from the thread that sleeps on the slot. No effect
    /// for an out-of-range index or a closed Module.
    pub fn reset_for_reuse(&self, index: u32) {
        let Ok(module) = self.enter() else { return };
        let mut context = module.lock();
        if context.closing {
            return;
        }
        if let Some(slot) = context.slots.get_mut(index as usize) {
            slot.do_not_wait = false;
            slot.event.clear();
        }
    }
}
