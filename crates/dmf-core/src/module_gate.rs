//! The Method gate of a Module: its life-cycle state word and the rundown that guards its Methods.
//!
//! # Design
//!
//! This is the part of the Module object ([`crate::module`]) that decides whether a Method may
//! run, factored out so that it needs no platform: the state machine (Created → Opening → Opened →
//! Closing → Closed → Opening … → Destroying → Destroyed) in one atomic byte, and the [`Rundown`]
//! that every guarded Method holds (invariant 4). The Module object keeps one `MethodGate` with the
//! platform's lazily created event and calls the steps below at the points of `open`, `close` and
//! destroy; `enter()` and `enter_lock_free()` are [`MethodGate::enter`] and
//! [`MethodGate::enter_lock_free`]. Because the atomics come from the crate's facade, the loom
//! models (`tests/loom_module_gate.rs`) run *this* code, generic over a hand-written event, with
//! every interleaving and memory-order outcome.
//!
//! - A guarded Method (`enter`) takes a rundown reference and nothing else: the rundown is created
//!   run down, `open` re-arms it just before the state becomes Opened, and `close` runs it down
//!   (after the client's PreClose, so Methods still work there) and waits on its event for the
//!   calls in flight. From the moment the wait begins `enter` fails with
//!   `STATUS_INVALID_DEVICE_STATE`; the state word is not consulted (the rundown's own `ACTIVE`
//!   bit is the check, made in the same compare-exchange as the increment).
//! - A lock-free Method (`enter_lock_free`) only checks that the state is Opened at that instant
//!   (one Acquire load) and takes no reference; close does not wait for it (ARCHITECTURE.md,
//!   "lock-free Methods").
//! - Open, close and destroy are each once-only under races: each begins with a compare-exchange
//!   out of the states it may start from (C DMF's close-once guard).

use core::fmt;

use crate::rundown::{Rundown, RundownEvent, RundownGuard};
use crate::status::{NtResult, NtStatus};
use crate::sync_facade::{AtomicU8, Ordering};

/// The life-cycle state of a Module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ModuleState {
    /// Created (DMF resources allocated), never opened.
    Created = 1,
    /// Open is running.
    Opening = 2,
    /// Open; Methods may be called.
    Opened = 3,
    /// Close has begun; new Method calls fail once the rundown wait has begun.
    Closing = 4,
    /// Closed; it may be opened again.
    Closed = 5,
    /// Destroy is running.
    Destroying = 6,
    /// Destroyed; nothing may be called.
    Destroyed = 7,
}

impl ModuleState {
    fn from_u8(v: u8) -> ModuleState {
        match v {
            1 => ModuleState::Created,
            2 => ModuleState::Opening,
            3 => ModuleState::Opened,
            4 => ModuleState::Closing,
            5 => ModuleState::Closed,
            6 => ModuleState::Destroying,
            _ => ModuleState::Destroyed,
        }
    }
}

/// A Module's state word and Method rundown (see the [module documentation](self)).
pub struct MethodGate<E: RundownEvent> {
    state: AtomicU8,
    rundown: Rundown<E>,
}

impl<E: RundownEvent> MethodGate<E> {
    /// A gate in state Created, its rundown run down: every Method is refused until `open`.
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES` if the rundown's event cannot be created
    /// ([`RundownEvent::new`]; the Module object's lazily created event never fails here).
    pub fn new() -> NtResult<Self> {
        Ok(MethodGate {
            state: AtomicU8::new(ModuleState::Created as u8),
            rundown: Rundown::new_run_down()?,
        })
    }

    /// The current state.
    #[inline]
    pub fn state(&self) -> ModuleState {
        ModuleState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// `enter()` / `DMF_ModuleReference`: a rundown reference, or `STATUS_INVALID_DEVICE_STATE`
    /// before the first open and from the moment close's rundown wait begins.
    #[inline]
    pub fn enter(&self) -> NtResult<RundownGuard<'_, E>> {
        self.rundown.reference()
    }

    /// `enter_lock_free()`: `Ok` while a guarded Method would be admitted — the Module is Opened,
    /// or Closing but close's rundown wait has not begun (the client's PreClose, where C DMF lets
    /// Methods run) — else `STATUS_INVALID_DEVICE_STATE`. Takes nothing that close waits for.
    #[inline]
    pub fn enter_lock_free(&self) -> NtResult<()> {
        match self.state() {
            ModuleState::Opened => Ok(()),
            ModuleState::Closing if !self.rundown.is_run_down() => Ok(()),
            _ => Err(NtStatus::INVALID_DEVICE_STATE),
        }
    }

    /// Open, first step: Created or Closed → Opening. Returns the state to go back to if the open
    /// fails ([`cancel_open`](Self::cancel_open)); `STATUS_INVALID_DEVICE_STATE` from any other
    /// state or if another thread moved the state first.
    pub fn begin_open(&self) -> NtResult<ModuleState> {
        let previous = self.state.load(Ordering::Acquire);
        if previous != ModuleState::Created as u8 && previous != ModuleState::Closed as u8 {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        self.state
            .compare_exchange(
                previous,
                ModuleState::Opening as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(|_| ModuleState::from_u8(previous))
            .map_err(|_| NtStatus::INVALID_DEVICE_STATE)
    }

    /// A failed open: back to `previous` (from [`begin_open`](Self::begin_open)), Methods still
    /// refused.
    pub fn cancel_open(&self, previous: ModuleState) {
        self.state.store(previous as u8, Ordering::Release);
    }

    /// Open, last step: re-arm the rundown (guarded Methods succeed from here), then Opened
    /// (lock-free Methods succeed from here).
    pub fn finish_open(&self) {
        // INVARIANT: nobody waits on a Module that is not open, so re-arming cannot be refused.
        let rearmed = self.rundown.reinitialize();
        debug_assert!(rearmed.is_ok());
        self.state
            .store(ModuleState::Opened as u8, Ordering::Release);
    }

    /// Close, first step: Opened → Closing. `false` if the Module was not open or another closer
    /// won (close-once); then the caller does nothing more.
    pub fn begin_close(&self) -> bool {
        self.state
            .compare_exchange(
                ModuleState::Opened as u8,
                ModuleState::Closing as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Close, second step (after the client's PreClose): refuse new guarded Methods and block on
    /// the rundown's event until the last one in flight has left. Afterwards the Module may be
    /// torn down.
    pub fn wait_for_methods(&self) {
        self.rundown.wait_for_release();
    }

    /// Close, last step (after the Module's own close): Closing → Closed.
    pub fn finish_close(&self) {
        self.state
            .store(ModuleState::Closed as u8, Ordering::Release);
    }

    /// Destroy, first step: Created or Closed → Destroying. `false` from any other state (open, or
    /// destroyed or being destroyed by another thread).
    pub fn begin_destroy(&self) -> bool {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            if current != ModuleState::Created as u8 && current != ModuleState::Closed as u8 {
                return false;
            }
            match self.state.compare_exchange(
                current,
                ModuleState::Destroying as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }

    /// Destroy, last step, and the state of a Module whose creation failed half-way: Destroyed.
    pub fn finish_destroy(&self) {
        self.state
            .store(ModuleState::Destroyed as u8, Ordering::Release);
    }

    /// The rundown's event, for the Module object to make ready before the Module opens.
    #[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
    pub(crate) fn event(&self) -> &E {
        self.rundown.event()
    }

    /// The rundown's event, for loom models that "free" it after the wait.
    #[cfg(dmf_loom)]
    #[doc(hidden)]
    pub fn event_for_model(&self) -> &E {
        self.rundown.event_for_model()
    }
}

impl<E: RundownEvent> fmt::Debug for MethodGate<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MethodGate")
            .field("state", &self.state())
            .field("rundown", &self.rundown)
            .finish()
    }
}
