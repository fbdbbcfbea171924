//! # DMF_Rundown
//!
//! ## Summary
//!
//! Rundown management for a resource that is being unregistered while its Methods may still be
//! called or running: the Methods already inside keep running, new ones are refused, and the
//! owner's [`Rundown::end_and_wait`] returns once the last of them has left. It is a reusable "the
//! resource is alive" gate, independent of the Module's own open state.
//!
//! ## Configuration
//!
//! None: create it with `Rundown::with(())`.
//!
//! ## Methods
//!
//! | C DMF | Rust | IRQL |
//! |---|---|---|
//! | `DMF_Rundown_Start` | [`Rundown::start`] | PASSIVE |
//! | `DMF_Rundown_Reference` + `DMF_Rundown_Dereference` | [`Rundown::reference_with`], or [`Rundown::gate`] + [`RundownGate::reference`] (a `#[must_use]` guard; dropping it is Dereference) | ≤ DISPATCH |
//! | `DMF_Rundown_EndAndWait` | [`Rundown::end_and_wait`] | PASSIVE |
//!
//! ## Callbacks
//!
//! None.
//!
//! ## Remarks
//!
//! - Call Start when the resource is created or registered, EndAndWait when it is deleted or
//!   unregistered; References nest around each access.
//! - Reference fails with `STATUS_INVALID_DEVICE_STATE` before the first Start, from the moment
//!   EndAndWait begins, and after it returns; then nothing is held.
//! - EndAndWait blocks until every earlier Reference is released — on an event, never by polling (C
//!   DMF's `Dmf_Rundown.c` polls every 100 ms; what a caller observes is the same). On an object
//!   already run down it returns at once. Start after EndAndWait re-arms it.
//! - Closing the Module ends the rundown if the client forgot, waiting for the references still
//!   held. The gate cannot be re-armed after that: Start fails once the Module is closed.
//! - Built on [`dmf_core::platform::RundownRef`] (`EX_RUNDOWN_REF` semantics), kept in the
//!   Module's shared state. The reference path is lock-free and never blocks:
//!   `reference_with` is a lock-free Method (no Module lock, no Module guard — the reference on the
//!   gate is the protection, and the Module's close runs the gate down), and a
//!   [`RundownGate`] reference touches only the gate.
//! - The guard lives in a [`RundownGate`] the caller holds (a cheap clone of the Module's
//!   rundown object), because a guard returned straight from a Method could not outlive the
//!   Method's own scope. The C-shaped explicit Reference/Dereference pair is not offered: safe
//!   Rust code has no way to release a reference without its guard.
//! - Deviation: EndAndWait does not hold the Module's own Method guard while it waits, so a close
//!   of the Module is never held up by it (close joins the same wait instead).
//!
//! ## Example
//!
//! ```
//! use dmf_core::module::NoParent;
//! use dmf_core::NtStatus;
//! use dmf_modules::rundown::Rundown;
//!
//! let machine = kmdf_sim::Machine::new();
//! let _on = machine.enter();
//! let rundown = Rundown::with(()).create(&NoParent)?;
//!
//! // Nothing is alive before Start.
//! assert_eq!(rundown.reference_with(|| ()), Err(NtStatus::INVALID_DEVICE_STATE));
//! rundown.start()?;
//! let gate = rundown.gate()?;
//! {
//!     let _outer = gate.reference()?;
//!     let _inner = gate.reference()?; // references nest
//! }
//! assert_eq!(rundown.reference_with(|| 42), Ok(42));
//! rundown.end_and_wait()?; // no references out: returns at once
//! assert_eq!(gate.reference().err(), Some(NtStatus::INVALID_DEVICE_STATE)); // run down
//! rundown.start()?; // restart
//! assert!(gate.reference().is_ok());
//! # Ok::<(), NtStatus>(())
//! ```
//!
//! ## Category
//!
//! Task Execution.

use alloc::sync::Arc;

use dmf_core::fallible::try_arc;
use dmf_core::module::{Dispatched, ModuleCallbacks, ModuleShared};
use dmf_core::platform::RundownRef;
use dmf_core::rundown::RundownGuard;
use dmf_core::NtResult;
use dmf_macros::{dmf_callbacks, dmf_module};

/// The `DMF_Rundown` Module: a Start / Reference / Dereference / EndAndWait gate. See the
/// [module documentation](self).
#[dmf_module(crate = ::dmf_core, config = (), shared = Shared, open = Create, lock = Dispatch)]
pub struct Rundown;

/// The shared state: the rundown object, created with the Module in the run-down state (nothing
/// alive until Start), shared with the gates handed out.
struct Shared {
    gate: Arc<RundownRef>,
}

impl ModuleShared<()> for Shared {
    fn new(_config: &()) -> NtResult<Self> {
        Ok(Shared {
            gate: try_arc(RundownRef::new_run_down()?)?,
        })
    }
}

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Rundown {
    fn close(module: &Dispatched<'_, Self>) {
        // End the rundown on the client's behalf, waiting for the references still out. (On an
        // object already run down this returns at once.) This is also what shuts out
        // `reference_with`, a lock-free Method: a reference taken before waits here, one attempted
        // after fails.
        module.shared().gate.wait_for_release();
    }
}

impl Rundown {
    /// The rundown object, for a guarded Method (the guard ends when this returns).
    fn shared_gate(&self) -> NtResult<Arc<RundownRef>> {
        let module = self.enter()?;
        Ok(Arc::clone(&module.shared().gate))
    }

    /// `DMF_Rundown_Start`: makes the resource alive, so References succeed; after an EndAndWait it
    /// re-arms the gate. No effect when already started.
    ///
    /// Fails with `STATUS_INVALID_DEVICE_STATE` while an EndAndWait is still waiting, and once the
    /// Module is closed.
    pub fn start(&self) -> NtResult<()> {
        // Guarded: close must not run down the gate between our check and the re-arm.
        let module = self.enter()?;
        module.shared().gate.reinitialize()
    }

    /// `DMF_Rundown_Reference` … `DMF_Rundown_Dereference` around `f`: runs `f` with the resource
    /// held alive and returns its result; `STATUS_INVALID_DEVICE_STATE` (and `f` not run) before
    /// Start, once EndAndWait has begun, and after the Module closed. Never blocks; callable at
    /// `DISPATCH_LEVEL`.
    ///
    /// A lock-free Method (ARCHITECTURE.md): the reference on the gate is its own protection,
    /// since the Module's close runs the gate down and waits for it.
    pub fn reference_with<R>(&self, f: impl FnOnce() -> R) -> NtResult<R> {
        let shared = self.enter_lock_free()?;
        let _reference = shared.gate.reference()?;
        Ok(f())
    }

    /// The gate through which References are taken as guards ([`RundownGate::reference`]). A
    /// gate stays usable after the Module closed: its References then fail.
    pub fn gate(&self) -> NtResult<RundownGate> {
        Ok(RundownGate {
            rundown: self.shared_gate()?,
        })
    }

    /// `DMF_Rundown_EndAndWait`: refuses new References from now on and waits until every earlier
    /// one is released. On an object already run down (or never started) it returns at once with no
    /// effect. `PASSIVE_LEVEL`.
    ///
    /// Fails with `STATUS_INVALID_DEVICE_STATE` only when the Module is not open (its close has
    /// already ended the rundown).
    pub fn end_and_wait(&self) -> NtResult<()> {
        // The Module's own Method guard is dropped before the wait (see the Remarks).
        let gate = self.shared_gate()?;
        gate.wait_for_release();
        Ok(())
    }
}

/// The reference side of a [`Rundown`]: a cheap clone of its rundown object. Obtained from
/// [`Rundown::gate`].
#[derive(Clone)]
pub struct RundownGate {
    rundown: Arc<RundownRef>,
}

impl core::fmt::Debug for RundownGate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RundownGate")
            .field("run_down", &self.rundown.is_run_down())
            .finish()
    }
}

impl RundownGate {
    /// `DMF_Rundown_Reference`: holds the resource alive until the returned guard drops
    /// (`DMF_Rundown_Dereference`). `STATUS_INVALID_DEVICE_STATE` before Start, once EndAndWait has
    /// begun and after it returned; then nothing is held. Never blocks; callable (and droppable) at
    /// `DISPATCH_LEVEL`.
    pub fn reference(&self) -> NtResult<RundownReference<'_>> {
        Ok(RundownReference {
            _guard: self.rundown.reference()?,
        })
    }
}

/// A successful `DMF_Rundown_Reference`; dropping it is `DMF_Rundown_Dereference`.
#[must_use = "dropping the reference releases the resource at once (DMF_Rundown_Dereference)"]
pub struct RundownReference<'a> {
    _guard: RundownGuard<'a, dmf_core::platform::Event>,
}

impl core::fmt::Debug for RundownReference<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RundownReference")
    }
}
