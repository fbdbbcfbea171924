//! Rundown protection with `EX_RUNDOWN_REF` semantics: the guard of every Module Method call.
//!
//! # Design
//!
//! An object that other code may still be calling into (a Module being closed, a resource being
//! unregistered) needs three things from its owner's teardown path: new calls must be refused from
//! the moment teardown begins, calls already inside must be allowed to finish, and the owner must
//! learn — without polling — when the last of them has left, so that it can free the object. Windows
//! calls this *run-down protection* (`EX_RUNDOWN_REF`, Microsoft's page *Run-Down Protection*) and
//! C DMF builds `DMF_Rundown` (`Dmf_Rundown.c`) and `DMF_ModuleReference` on the same idea.
//!
//! [`Rundown`] is one machine word plus one blocking event:
//!
//! ```text
//!  usize:  | references (REF_BITS) | waiters (WAITER_BITS) | REINIT | EVENT_OWED | ACTIVE |
//! ```
//!
//! - **references** — guards handed out and not yet dropped.
//! - **`ACTIVE`** — rundown has begun (a wait started, or the object was created run down). While it
//!   is set no acquire succeeds. References can then only go *down*.
//! - **`EVENT_OWED`** — the rundown began while references were outstanding, so the *last* releaser
//!   will signal the event. A wait that arrives later joins that event instead of returning, so no
//!   waiter returns while the last releaser may still be inside [`RundownEvent::signal`].
//! - **waiters** — threads that are inside [`Rundown::wait_for_release`] on the event. While any is
//!   counted, [`Rundown::reinitialize`] refuses: resetting the event under a sleeping waiter could
//!   strand it.
//! - **`REINIT`** — a re-initialisation is resetting the event; it is cleared by storing `0`.
//!
//! The fast paths are lock-free and never block, so they are legal at `DISPATCH_LEVEL`:
//! [`Rundown::acquire`] is one compare-exchange (a second one when other guards are out: the
//! first guesses "no references"), and dropping a [`RundownGuard`] is one `fetch_sub`. Only
//! [`Rundown::wait_for_release`] blocks (≤ `APC_LEVEL`; `PASSIVE_LEVEL` in DMF), and it blocks on
//! the event — it wakes as soon as the last guard drops, where C DMF's `DMF_Rundown_EndAndWait`
//! polls every 100 ms.
//!
//! Two findings from model-checking (loom) shaped the code and are kept as comments where they apply:
//! the waiter waits on the *event*, never on the count reaching zero (a waiter that returned on
//! "count == 0" could free the object while the last releaser is still inside `signal`), and the last
//! releaser issues an `Acquire` fence before signalling, so that every *other* holder's accesses, not
//! only its own, happen-before the owner's teardown (the reason `Arc::drop` has the same fence).
//! `tests/loom_rundown.rs` checks both with two holders and a waiter that tears the object down.
//!
//! The blocking event is supplied by the platform through the [`RundownEvent`] trait; this module
//! knows no OS. On the simulator backend `platform` implements the trait with kmdf-sim's `KEVENT`;
//! on the kernel backend `platform` maps the whole type onto `ExInitializeRundownProtection`,
//! `ExAcquireRundownProtection`, `ExReleaseRundownProtection`, `ExWaitForRundownProtectionRelease` and
//! `ExReInitializeRundownProtection` (each method below says which), and this implementation is the
//! executable specification that backend is tested against.
//!
//! # States
//!
//! | State | How it is reached | `acquire` | `wait_for_release` | `reinitialize` |
//! |---|---|---|---|---|
//! | ready | [`Rundown::new`], `reinitialize` | succeeds | begins rundown | no effect, `Ok` |
//! | running down | wait began with guards out | fails | joins the wait | refused |
//! | run down | last guard dropped / wait found none | fails | returns at once | re-arms |
//!
//! [`Rundown::new_run_down`] starts in "run down", which is what `DMF_Rundown` needs: Reference
//! before Start fails and Start is `reinitialize`.
//!
//! # Example
//!
//! With the platform's event (`platform::RundownRef`, here on kmdf-sim, whose system threads play
//! the callers); `tests/loom_rundown.rs` shows a [`RundownEvent`] written by hand.
//!
//! ```
//! extern crate alloc;
//! use alloc::sync::Arc;
//! use dmf_core::platform::RundownRef;
//! use kmdf_sim::exec::SystemThread;
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! let rundown = Arc::new(RundownRef::new().unwrap());
//!
//! // A Method call: runs only inside a guard.
//! let guard = rundown.acquire().expect("not run down yet");
//! let caller = {
//!     let rundown = Arc::clone(&rundown);
//!     SystemThread::spawn(&machine, "caller", move || {
//!         let _nested = rundown.reference().expect("nested references balance");
//!     })
//!     .unwrap()
//! };
//! caller.wait(None);
//!
//! // Close: refuse new calls, then wait for the one in flight.
//! let closer = {
//!     let rundown = Arc::clone(&rundown);
//!     SystemThread::spawn(&machine, "closer", move || rundown.wait_for_release()).unwrap()
//! };
//! drop(guard); // the last release wakes the closer at once
//! closer.wait(None);
//!
//! assert!(rundown.acquire().is_none()); // no acquire after the wait began
//! rundown.wait_for_release(); // already run down: no effect
//! rundown.reinitialize().unwrap(); // re-arm (ExReInitializeRundownProtection)
//! assert!(rundown.acquire().is_some());
//! ```

use core::fmt;

use crate::status::{NtResult, NtStatus};
use crate::sync_facade::{fence, AtomicUsize, Ordering};

/// The blocking event a [`Rundown`] sleeps on, supplied by the platform.
///
/// It is a *notification* (manual-reset) event: once signalled it stays signalled, and releases
/// every current and future waiter, until [`reset`](RundownEvent::reset).
///
/// # Contract
///
/// - [`wait`](RundownEvent::wait) returns only after [`signal`](RundownEvent::signal) was called
///   (no spurious returns: an implementation over a condvar loops on its flag).
/// - **`signal` does not touch the event's memory after a concurrent `wait` can return.** The thread
///   that returns from the wait may free the object that holds the event while the signalling thread
///   is still finishing its call. `KEVENT` (`KeSetEvent`) and a flag plus condvar under one mutex
///   (set the flag and notify while holding the lock) qualify. A separate atomic flag that the waiter
///   checks before sleeping does not.
/// - `signal` and `reset` never block and may be called at `DISPATCH_LEVEL` (the last release of a
///   guard signals, and releases happen at `DISPATCH_LEVEL`); `wait` is called at `PASSIVE_LEVEL`.
/// - `new` returns the event unsignalled. A platform whose event must not move once initialised
///   (`KEVENT` has a self-referencing wait list) keeps it behind a stable address (boxed or pinned),
///   allocated fallibly: `new` reports a refused allocation instead of aborting.
pub trait RundownEvent: Sized {
    /// Creates the event, not signalled. Maps to `KeInitializeEvent(.., NotificationEvent, FALSE)`
    /// (which cannot fail) on storage the platform may have to allocate:
    /// `STATUS_INSUFFICIENT_RESOURCES` when that allocation is refused.
    fn new() -> NtResult<Self>;

    /// Signals the event, releasing every waiter, now and until [`reset`](RundownEvent::reset).
    /// Maps to `KeSetEvent(.., IO_NO_INCREMENT, FALSE)`.
    fn signal(&self);

    /// Blocks the calling thread until the event is signalled; returns at once if it already is.
    /// Maps to `KeWaitForSingleObject(.., Executive, KernelMode, FALSE, NULL)`.
    fn wait(&self);

    /// Returns the event to the unsignalled state. Maps to `KeClearEvent`.
    fn reset(&self);
}

// State word layout (see the module documentation).
/// Rundown has begun: no acquire succeeds (`EX_RUNDOWN_ACTIVE`).
const ACTIVE: usize = 1 << 0;
/// The rundown began with references outstanding: the last releaser signals the event, and every
/// waiter — the one that began the rundown and any that join it — waits on that event.
const EVENT_OWED: usize = 1 << 1;
/// A [`Rundown::reinitialize`] is resetting the event.
const REINIT: usize = 1 << 2;
const WAITER_SHIFT: u32 = 3;
/// Width of the waiter count: far more than the threads that can block on one object.
const WAITER_BITS: u32 = if usize::BITS >= 64 { 24 } else { 8 };
const WAITER_ONE: usize = 1 << WAITER_SHIFT;
const WAITER_MASK: usize = ((1 << WAITER_BITS) - 1) << WAITER_SHIFT;
const REF_SHIFT: u32 = WAITER_SHIFT + WAITER_BITS;
const REF_ONE: usize = 1 << REF_SHIFT;
/// The most references that can be outstanding at once (2^37 − 1 on 64-bit targets).
const REF_MAX: usize = usize::MAX >> REF_SHIFT;

/// The number of references (outstanding guards) recorded in a state word.
const fn refs(state: usize) -> usize {
    state >> REF_SHIFT
}

/// Why an acquire failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AcquireError {
    /// Rundown has begun or finished (or the object was created run down and not yet armed).
    RunDown,
    /// The reference count is at [`REF_MAX`]; the state is unchanged.
    Overflow,
}

/// Rundown protection with `EX_RUNDOWN_REF` semantics.
///
/// See the [module documentation](self) for the design and an example.
///
/// # Invariants
///
/// - After [`wait_for_release`](Self::wait_for_release) has begun, no acquire succeeds until
///   [`reinitialize`](Self::reinitialize).
/// - `wait_for_release` returns only after every [`RundownGuard`] handed out earlier has been
///   dropped, and after the last releaser has finished with the event.
/// - No operation, however misused or raced, leaves the state word inconsistent: the refusals are
///   return values, never partial updates.
pub struct Rundown<E: RundownEvent> {
    // INVARIANT (on every value the word takes):
    // - !ACTIVE ⇒ EVENT_OWED, REINIT and waiters are all clear (only references are counted);
    // - ACTIVE ∧ references > 0 ⇒ EVENT_OWED and at least one counted waiter (references can only
    //   fall once ACTIVE is set, and the waiter that set ACTIVE with references out counted itself);
    // - waiters > 0 ⇒ ACTIVE ∧ EVENT_OWED;
    // - REINIT ⇒ ACTIVE ∧ references == 0 ∧ waiters == 0.
    state: AtomicUsize,
    event: E,
}

/// Proof of rundown protection: while it lives, the protected object will not be run down.
///
/// Obtained from [`Rundown::acquire`] or [`Rundown::reference`]; dropping it releases the protection
/// (maps to `ExReleaseRundownProtection`, `DMF_Rundown_Dereference`). It may be dropped on another
/// thread and at `DISPATCH_LEVEL`; the drop never blocks.
#[must_use = "dropping the guard releases rundown protection immediately"]
pub struct RundownGuard<'a, E: RundownEvent> {
    rundown: &'a Rundown<E>,
}

impl<E: RundownEvent> Rundown<E> {
    /// Creates rundown protection in the *ready* state: acquires succeed.
    ///
    /// Maps to `ExInitializeRundownProtection`.
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES` if the event cannot be created ([`RundownEvent::new`]).
    pub fn new() -> NtResult<Self> {
        Self::with_state(0)
    }

    /// Creates rundown protection in the *run-down* state: acquires fail until
    /// [`reinitialize`](Self::reinitialize) arms it, and a wait returns at once.
    ///
    /// This is `DMF_Rundown` before `DMF_Rundown_Start`: Reference fails with
    /// `STATUS_INVALID_DEVICE_STATE` and Start is `reinitialize`. On the kernel
    /// backend it maps to `ExInitializeRundownProtection` followed by `ExRundownCompleted`.
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES` if the event cannot be created ([`RundownEvent::new`]).
    pub fn new_run_down() -> NtResult<Self> {
        Self::with_state(ACTIVE)
    }

    fn with_state(state: usize) -> NtResult<Self> {
        Ok(Self {
            state: AtomicUsize::new(state),
            event: E::new()?,
        })
    }

    /// Acquires rundown protection, or returns `None` once rundown has begun.
    ///
    /// Never blocks; callable at `DISPATCH_LEVEL`. Fails (and takes no reference) once
    /// [`wait_for_release`](Self::wait_for_release) has begun or finished, on an
    /// object created with [`new_run_down`](Self::new_run_down) and not yet re-armed, and if
    /// the reference count is at its maximum (the state is then unchanged). Guards nest: each
    /// successful acquire needs its own drop.
    ///
    /// Maps to `ExAcquireRundownProtection` (`FALSE` is `None`). Use [`reference`](Self::reference)
    /// where an `NTSTATUS` is wanted.
    #[inline]
    pub fn acquire(&self) -> Option<RundownGuard<'_, E>> {
        self.try_acquire().ok()
    }

    /// Acquires rundown protection for a DMF Method call: [`acquire`](Self::acquire) with an
    /// `NTSTATUS`.
    ///
    /// Returns `STATUS_INVALID_DEVICE_STATE` once rundown has begun or finished, or before the first
    /// [`reinitialize`](Self::reinitialize) of an object created run down, and
    /// `STATUS_INSUFFICIENT_RESOURCES` if the reference count is at its maximum. On
    /// failure no reference is held.
    ///
    /// Maps to `DMF_Rundown_Reference` / `DMF_ModuleReference`, i.e. `ExAcquireRundownProtection`
    /// with `FALSE` turned into `STATUS_INVALID_DEVICE_STATE`.
    #[inline]
    pub fn reference(&self) -> NtResult<RundownGuard<'_, E>> {
        self.try_acquire().map_err(|error| match error {
            AcquireError::RunDown => NtStatus::INVALID_DEVICE_STATE,
            AcquireError::Overflow => NtStatus::INSUFFICIENT_RESOURCES,
        })
    }

    #[inline]
    fn try_acquire(&self) -> Result<RundownGuard<'_, E>, AcquireError> {
        // No load first: the first compare-exchange guesses "ready, no references" (the usual
        // state of an object nobody is inside) and, when the guess is wrong, returns the real
        // state for the next attempt: one locked instruction, not a load and then one.
        let mut current = 0;
        loop {
            // Checked and incremented in ONE compare-exchange: a check followed by a separate
            // increment would let an acquire slip in after the wait began (TOCTOU).
            if current & ACTIVE != 0 {
                return Err(AcquireError::RunDown);
            }
            if refs(current) == REF_MAX {
                return Err(AcquireError::Overflow);
            }
            // Acquire: pairs with the Release store of `reinitialize`, so the holder sees the object
            // as the owner set it up before arming.
            match self.state.compare_exchange_weak(
                current,
                current + REF_ONE,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(RundownGuard { rundown: self }),
                Err(actual) => current = actual,
            }
        }
    }

    /// Releases one reference. Called only by [`RundownGuard::drop`], so it is always balanced.
    #[inline]
    fn release(&self) {
        // Release: this holder's accesses to the object happen-before whoever observes the drop.
        let previous = self.state.fetch_sub(REF_ONE, Ordering::Release);
        debug_assert_ne!(refs(previous), 0, "rundown reference released twice");
        if previous & ACTIVE != 0 && refs(previous) == 1 {
            debug_assert_ne!(previous & EVENT_OWED, 0);
            // The last reference of a rundown in progress. Acquire fence (as in `Arc::drop`): it
            // joins the release sequence of every *other* holder's `fetch_sub`, so their accesses —
            // not only ours — happen-before the signal and therefore before the owner's teardown.
            fence(Ordering::Acquire);
            // The waiter is counted and blocked on the event, so the event is alive here; by the
            // event's contract `signal` stops touching it before the waiter can return.
            self.event.signal();
        }
    }

    /// Begins rundown and blocks until every guard handed out earlier has been dropped.
    ///
    /// - From the moment it begins, no acquire succeeds.
    /// - With nothing outstanding it marks the object run down and returns at once without touching
    ///   the event.
    /// - Otherwise it sleeps on the event until the last guard drops: no polling, the
    ///   last release wakes it. Holders already inside are undisturbed.
    /// - On an object already run down it has no effect and is no error, and it
    ///   returns at once.
    /// - If a rundown with guards outstanding is already in progress (a second caller, on another
    ///   thread), it joins that wait and returns only when the first one would: whoever returns may
    ///   free the object.
    ///
    /// After it returns the owner may tear the object down. Blocks, so `PASSIVE_LEVEL` only
    /// (`≤ APC_LEVEL` for the kernel routine).
    ///
    /// Maps to `ExWaitForRundownProtectionRelease` (and to `DMF_Rundown_EndAndWait`).
    pub fn wait_for_release(&self) {
        // Acquire on every read below: with references at zero the value read is the last link in
        // the release sequence of every holder's `fetch_sub`, so their accesses happen-before ours.
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let next = if current & ACTIVE == 0 {
                if current == 0 {
                    // nothing outstanding: mark run down and return without waiting.
                    ACTIVE
                } else {
                    // Begin rundown with references out: the last releaser owes a signal, and we
                    // count ourselves as a waiter (reinitialize must not reset the event under us).
                    current | ACTIVE | EVENT_OWED | WAITER_ONE
                }
            } else if current & EVENT_OWED == 0 || current & REINIT != 0 {
                // already run down (no references were out when it began, or a
                // reinitialize is re-arming it): no effect, no error.
                return;
            } else if current & WAITER_MASK == WAITER_MASK {
                // More waiters than the count can hold (2^24 − 1 on 64-bit targets): wait uncounted.
                // The only cost is that a *racing* reinitialize could reset the event before this
                // thread observes it; it cannot corrupt the state.
                self.event.wait();
                return;
            } else {
                // A rundown with references out is in progress or has just drained: join its event
                // rather than returning while the last releaser may still be inside `signal`.
                current + WAITER_ONE
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) if next == ACTIVE => return,
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        // Wait on the EVENT, never on the count: a waiter that returned when the count reached zero
        // could free the object while the last releaser is still inside `signal` (use after free).
        self.event.wait();
        // Release: our use of the event happens-before a later reinitialize resets it.
        self.state.fetch_sub(WAITER_ONE, Ordering::Release);
    }

    /// Re-arms run-down protection after a rundown, so acquires succeed again.
    ///
    /// - On a run-down object with no wait in progress: resets the event and returns to the ready
    ///   state. This is also `DMF_Rundown_Start` on an object created with
    ///   [`new_run_down`](Self::new_run_down).
    /// - On an object that is already ready (never run down, or re-armed already): no effect, `Ok`;
    ///   guards outstanding are untouched (C DMF's Start would overwrite the count; this does not).
    /// - While a wait is in progress — guards still outstanding, or a waiter not yet returned from
    ///   the event — or while another `reinitialize` is re-arming: refused with
    ///   `STATUS_INVALID_DEVICE_STATE`, state unchanged. Resetting the event under a sleeping waiter
    ///   could strand it.
    ///
    /// Never blocks.
    ///
    /// Maps to `ExReInitializeRundownProtection` (and to `DMF_Rundown_Start`).
    pub fn reinitialize(&self) -> NtResult<()> {
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            if current & ACTIVE == 0 {
                return Ok(());
            }
            if refs(current) != 0 || current & (WAITER_MASK | REINIT) != 0 {
                return Err(NtStatus::INVALID_DEVICE_STATE);
            }
            // Acquire: pairs with the last waiter's Release decrement, so its use of the event (and
            // the releaser's signal before it) happen-before our reset.
            match self.state.compare_exchange_weak(
                current,
                current | REINIT,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        // REINIT is set: acquires still fail (ACTIVE), late waiters return at once instead of
        // sleeping on the event, and other reinitializes are refused, so nobody uses the event now.
        self.event.reset();
        // Release: the reset (and the owner's re-initialisation of the object) happen-before any
        // acquire that sees the ready state.
        self.state.store(0, Ordering::Release);
        Ok(())
    }

    /// Whether rundown has begun or finished, so that [`acquire`](Self::acquire) would fail.
    ///
    /// A snapshot for diagnostics and assertions: by the time the caller looks at it, another
    /// thread may have changed the answer (except that, without a `reinitialize`, `true` stays true).
    pub fn is_run_down(&self) -> bool {
        self.state.load(Ordering::Acquire) & ACTIVE != 0
    }

    /// The event, for an owner whose event is created lazily: the Module framework makes it
    /// ready, fallibly, before the rundown can have a waiter. Not for signalling.
    #[cfg(any(feature = "sim", all(feature = "kmdf", windows)))]
    pub(crate) fn event(&self) -> &E {
        &self.event
    }

    /// The event, for loom models that "free" it after the wait to catch a late `signal`.
    /// Exists only in `--cfg dmf_loom` builds: signalling it by hand would break the invariants.
    #[cfg(dmf_loom)]
    #[doc(hidden)]
    pub fn event_for_model(&self) -> &E {
        &self.event
    }
}

impl<E: RundownEvent> fmt::Debug for Rundown<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.load(Ordering::Relaxed);
        f.debug_struct("Rundown")
            .field("references", &refs(state))
            .field("active", &(state & ACTIVE != 0))
            .field("event_owed", &(state & EVENT_OWED != 0))
            .field("waiters", &((state & WAITER_MASK) >> WAITER_SHIFT))
            .field("reinitializing", &(state & REINIT != 0))
            .finish_non_exhaustive()
    }
}

impl<E: RundownEvent> Drop for RundownGuard<'_, E> {
    /// Releases the protection. Maps to `ExReleaseRundownProtection` / `DMF_Rundown_Dereference`.
    #[inline]
    fn drop(&mut self) {
        self.rundown.release();
    }
}

impl<E: RundownEvent> fmt::Debug for RundownGuard<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RundownGuard").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(dmf_loom)))]
mod tests {
    //! Unit tests, named after the spec items they pin down. Multi-threaded tests synchronise with
    //! channels and with [`TestEvent::wait_for_waiters`] (a condvar), never with sleeps, and keep
    //! thread counts and loops small so they run under miri.

    use super::*;
    use std::sync::mpsc::{self, TryRecvError};
    use std::sync::{Arc, Condvar, Mutex};
    use std::thread;

    #[derive(Default)]
    struct EventState {
        signalled: bool,
        /// Threads currently inside `wait`.
        waiting: usize,
        /// Calls of `signal` and of `wait` so far.
        signals: usize,
        waits: usize,
    }

    /// A std notification event that also lets a test block until N threads are inside `wait`.
    struct TestEvent {
        state: Mutex<EventState>,
        changed: Condvar,
    }

    impl RundownEvent for TestEvent {
        fn new() -> NtResult<Self> {
            Ok(Self {
                state: Mutex::new(EventState::default()),
                changed: Condvar::new(),
            })
        }

        fn signal(&self) {
            let mut state = self.state.lock().unwrap();
            state.signalled = true;
            state.signals += 1;
            self.changed.notify_all();
        }

        fn wait(&self) {
            let mut state = self.state.lock().unwrap();
            state.waiting += 1;
            state.waits += 1;
            self.changed.notify_all();
            while !state.signalled {
                state = self.changed.wait(state).unwrap();
            }
            state.waiting -= 1;
        }

        fn reset(&self) {
            self.state.lock().unwrap().signalled = false;
        }
    }

    impl TestEvent {
        /// Blocks until at least `count` threads are inside `wait`.
        fn wait_for_waiters(&self, count: usize) {
            let mut state = self.state.lock().unwrap();
            while state.waiting < count {
                state = self.changed.wait(state).unwrap();
            }
        }

        fn counts(&self) -> (usize, usize, bool) {
            let state = self.state.lock().unwrap();
            (state.signals, state.waits, state.signalled)
        }
    }

    type TestRundown = Rundown<TestEvent>;

    fn references(rundown: &TestRundown) -> usize {
        refs(rundown.state.load(Ordering::Relaxed))
    }

    /// Spawns a thread that calls `wait_for_release` and reports on the channel when it returns.
    fn spawn_waiter(rundown: &Arc<TestRundown>) -> (thread::JoinHandle<()>, mpsc::Receiver<()>) {
        let (done_tx, done_rx) = mpsc::channel();
        let rundown = Arc::clone(rundown);
        let handle = thread::spawn(move || {
            rundown.wait_for_release();
            done_tx.send(()).unwrap();
        });
        (handle, done_rx)
    }

    /// a fresh object is ready; acquire succeeds, `reference` gives `Ok`, drop releases.
    #[test]
    fn ex13_new_is_ready_and_guards_release_on_drop() {
        let rundown = TestRundown::new().unwrap();
        assert!(!rundown.is_run_down());
        let guard = rundown.acquire().expect("ready");
        assert_eq!(references(&rundown), 1);
        drop(guard);
        let guard = rundown.reference().expect("ready");
        assert_eq!(references(&rundown), 1);
        drop(guard);
        assert_eq!(references(&rundown), 0);
        assert_eq!(rundown.state.load(Ordering::Relaxed), 0);
    }

    /// EX-07, RD-14 step 2: with nothing outstanding the wait returns at once, marks
    /// the object run down and never touches the event.
    #[test]
    fn ex07_wait_with_nothing_outstanding_returns_at_once() {
        let rundown = TestRundown::new().unwrap();
        rundown.wait_for_release();
        assert!(rundown.is_run_down());
        assert_eq!(rundown.event.counts(), (0, 0, false));
        assert_eq!(rundown.state.load(Ordering::Relaxed), ACTIVE);
    }

    /// after the wait finished no acquire succeeds and no reference is
    /// taken; `reference` says `STATUS_INVALID_DEVICE_STATE`.
    #[test]
    fn ex05_rd11_acquire_fails_after_wait_finished() {
        let rundown = TestRundown::new().unwrap();
        rundown.wait_for_release();
        assert!(rundown.acquire().is_none());
        assert_eq!(
            rundown.reference().err(),
            Some(NtStatus::INVALID_DEVICE_STATE)
        );
        assert_eq!(references(&rundown), 0);
        assert_eq!(rundown.state.load(Ordering::Relaxed), ACTIVE);
    }

    /// a second wait on a run-down object has no effect and is no error.
    #[test]
    fn ex08_rd15_second_wait_has_no_effect() {
        let rundown = TestRundown::new().unwrap();
        rundown.wait_for_release();
        let before = rundown.state.load(Ordering::Relaxed);
        rundown.wait_for_release();
        rundown.wait_for_release();
        assert_eq!(rundown.state.load(Ordering::Relaxed), before);
        assert_eq!(rundown.event.counts(), (0, 0, false));
    }

    /// created run down (DMF_Rundown before Start), Reference fails with
    /// `STATUS_INVALID_DEVICE_STATE` and EndAndWait returns at once.
    #[test]
    fn rd10_reference_before_start_fails() {
        let rundown = TestRundown::new_run_down().unwrap();
        assert!(rundown.is_run_down());
        assert!(rundown.acquire().is_none());
        assert_eq!(
            rundown.reference().err(),
            Some(NtStatus::INVALID_DEVICE_STATE)
        );
        rundown.wait_for_release();
        assert_eq!(rundown.event.counts(), (0, 0, false));
    }

    /// Start (`reinitialize`) arms an object created run down, and
    /// re-arms one after EndAndWait; the cycle repeats.
    #[test]
    fn rd03_rd16_start_arms_and_restart_rearms() {
        let rundown = TestRundown::new_run_down().unwrap();
        for _ in 0..3 {
            assert_eq!(rundown.reinitialize(), Ok(()));
            assert!(!rundown.is_run_down());
            drop(rundown.reference().expect("armed"));
            rundown.wait_for_release();
            assert!(rundown.acquire().is_none());
        }
    }

    /// re-arming after a rundown that *did* wait resets the event, so the next rundown waits
    /// again instead of seeing the stale signal.
    #[test]
    fn rd16_reinitialize_resets_the_event() {
        let rundown = Arc::new(TestRundown::new().unwrap());
        for round in 1..=2 {
            let guard = rundown.acquire().expect("armed");
            let (waiter, done) = spawn_waiter(&rundown);
            rundown.event.wait_for_waiters(1);
            assert_eq!(done.try_recv(), Err(TryRecvError::Empty));
            drop(guard);
            done.recv().unwrap();
            waiter.join().unwrap();
            assert_eq!(rundown.event.counts(), (round, round, true));
            assert_eq!(rundown.reinitialize(), Ok(()));
            assert_eq!(rundown.event.counts(), (round, round, false));
        }
    }

    /// (misuse): `reinitialize` on a ready object with guards out has no effect; the guards
    /// still balance and a later rundown works.
    #[test]
    fn rd16_reinitialize_on_ready_object_has_no_effect() {
        let rundown = TestRundown::new().unwrap();
        let guard = rundown.acquire().expect("ready");
        assert_eq!(rundown.reinitialize(), Ok(()));
        assert_eq!(references(&rundown), 1);
        drop(guard);
        rundown.wait_for_release();
        assert!(rundown.is_run_down());
    }

    /// nested references count up and down and balance, in either
    /// drop order; afterwards the wait returns at once.
    #[test]
    fn rd07_rd12_rd13_nested_references_balance() {
        let rundown = TestRundown::new().unwrap();
        let outer = rundown.reference().expect("ready");
        let inner = rundown.reference().expect("nested");
        let innermost = rundown.acquire().expect("nested");
        assert_eq!(references(&rundown), 3);
        drop(inner);
        assert_eq!(references(&rundown), 2);
        drop(outer);
        drop(innermost);
        assert_eq!(rundown.state.load(Ordering::Relaxed), 0);
        rundown.wait_for_release();
        assert_eq!(rundown.event.counts(), (0, 0, false));
    }

    /// Count overflow is refused without changing the state.
    #[test]
    fn acquire_at_maximum_count_fails_without_corrupting_state() {
        let rundown = TestRundown::with_state(REF_MAX << REF_SHIFT).unwrap();
        let before = rundown.state.load(Ordering::Relaxed);
        assert!(rundown.acquire().is_none());
        assert_eq!(
            rundown.reference().err(),
            Some(NtStatus::INSUFFICIENT_RESOURCES)
        );
        assert_eq!(rundown.state.load(Ordering::Relaxed), before);
        assert!(!rundown.is_run_down());
        // One below the maximum: the last slot can be taken and released.
        let rundown = TestRundown::with_state((REF_MAX - 1) << REF_SHIFT).unwrap();
        let guard = rundown.acquire().expect("last slot");
        assert!(rundown.acquire().is_none());
        drop(guard);
        assert_eq!(references(&rundown), REF_MAX - 1);
    }

    /// two holders on other threads keep running
    /// while the wait is in progress; new acquires fail at once; the wait returns only after the
    /// second holder drops, and the last release signals exactly once.
    #[test]
    fn ex06_wait_returns_only_after_every_earlier_guard_drops() {
        let rundown = Arc::new(TestRundown::new().unwrap());
        let (acquired_tx, acquired_rx) = mpsc::channel();
        let mut release_txs = Vec::new();
        let mut holders = Vec::new();
        for _ in 0..2 {
            let (release_tx, release_rx) = mpsc::channel::<()>();
            release_txs.push(release_tx);
            let rundown = Arc::clone(&rundown);
            let acquired_tx = acquired_tx.clone();
            holders.push(thread::spawn(move || {
                let guard = rundown.acquire().expect("before the wait");
                acquired_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                // a Method already inside keeps running; a nested reference now fails.
                assert!(rundown.is_run_down());
                assert!(rundown.acquire().is_none());
                drop(guard);
            }));
        }
        acquired_rx.recv().unwrap();
        acquired_rx.recv().unwrap();

        let (waiter, done) = spawn_waiter(&rundown);
        rundown.event.wait_for_waiters(1);
        assert_eq!(
            rundown.acquire().map(drop),
            None,
            "EX-05: no acquire after the wait began"
        );
        assert_eq!(
            rundown.reference().err(),
            Some(NtStatus::INVALID_DEVICE_STATE)
        );

        let mut holders = holders.into_iter();
        release_txs[0].send(()).unwrap();
        holders.next().unwrap().join().unwrap();
        assert_eq!(
            done.try_recv(),
            Err(TryRecvError::Empty),
            "one guard is still out"
        );
        assert_eq!(rundown.event.counts(), (0, 1, false));

        release_txs[1].send(()).unwrap();
        holders.next().unwrap().join().unwrap();
        done.recv().unwrap();
        waiter.join().unwrap();
        assert_eq!(rundown.event.counts(), (1, 1, true));
        assert_eq!(rundown.state.load(Ordering::Relaxed) & !EVENT_OWED, ACTIVE);
    }

    /// from two threads: a second waiter joins a rundown in progress and, like the first,
    /// returns only after the last guard drops; afterwards a third wait returns at once.
    #[test]
    fn ex08_two_concurrent_waiters_both_wait_for_the_drain() {
        let rundown = Arc::new(TestRundown::new().unwrap());
        let guard = rundown.acquire().expect("ready");
        let (first, first_done) = spawn_waiter(&rundown);
        let (second, second_done) = spawn_waiter(&rundown);
        rundown.event.wait_for_waiters(2);
        assert_eq!(first_done.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(second_done.try_recv(), Err(TryRecvError::Empty));
        drop(guard);
        first_done.recv().unwrap();
        second_done.recv().unwrap();
        first.join().unwrap();
        second.join().unwrap();
        assert_eq!(rundown.event.counts(), (1, 2, true));
        // Drained by a release: a late waiter joins the (signalled) event and returns at once.
        rundown.wait_for_release();
        assert_eq!(rundown.state.load(Ordering::Relaxed), ACTIVE | EVENT_OWED);
    }

    /// (misuse): `reinitialize` while a wait is in progress is refused with
    /// `STATUS_INVALID_DEVICE_STATE` and changes nothing; once the wait returns it succeeds.
    #[test]
    fn rd16_reinitialize_during_wait_is_refused() {
        let rundown = Arc::new(TestRundown::new().unwrap());
        let guard = rundown.acquire().expect("ready");
        let (waiter, done) = spawn_waiter(&rundown);
        rundown.event.wait_for_waiters(1);
        let before = rundown.state.load(Ordering::Relaxed);
        assert_eq!(rundown.reinitialize(), Err(NtStatus::INVALID_DEVICE_STATE));
        assert_eq!(rundown.state.load(Ordering::Relaxed), before);
        assert!(rundown.acquire().is_none());
        drop(guard);
        done.recv().unwrap();
        waiter.join().unwrap();
        assert_eq!(rundown.reinitialize(), Ok(()));
        assert_eq!(rundown.state.load(Ordering::Relaxed), 0);
    }

    /// `reinitialize` after the drain but before the waiter has returned (the waiter is still
    /// counted) is refused; the waiter is not stranded.
    #[test]
    fn reinitialize_refused_while_drained_waiter_is_still_counted() {
        let rundown = TestRundown::with_state(ACTIVE | EVENT_OWED | WAITER_ONE).unwrap();
        assert_eq!(rundown.reinitialize(), Err(NtStatus::INVALID_DEVICE_STATE));
        let rundown = TestRundown::with_state(ACTIVE | REINIT).unwrap();
        assert_eq!(rundown.reinitialize(), Err(NtStatus::INVALID_DEVICE_STATE));
        // A wait racing a reinitialize that is re-arming returns at once (already run down).
        rundown.wait_for_release();
        assert_eq!(rundown.event.counts(), (0, 0, false));
    }

    /// guards are `Send`; a release on another thread wakes the waiter.
    #[test]
    fn rd19_guard_released_on_another_thread() {
        let rundown = Arc::new(TestRundown::new().unwrap());
        let (waiter, done) = {
            let guard_holder = Arc::clone(&rundown);
            let (guard_tx, guard_rx) = mpsc::channel::<()>();
            let releaser = thread::spawn(move || {
                let guard = guard_holder.acquire().expect("ready");
                guard_tx.send(()).unwrap();
                thread::scope(|scope| {
                    // Move the guard to yet another thread and drop it there.
                    scope.spawn(move || drop(guard));
                });
            });
            guard_rx.recv().unwrap();
            let waiter = spawn_waiter(&rundown);
            releaser.join().unwrap();
            waiter
        };
        done.recv().unwrap();
        waiter.join().unwrap();
        assert_eq!(references(&rundown), 0);
        assert!(rundown.is_run_down());
    }

    #[test]
    fn debug_output_names_the_fields() {
        let rundown = TestRundown::new().unwrap();
        let guard = rundown.acquire().expect("ready");
        let text = format!("{rundown:?} {guard:?}");
        assert!(text.contains("references: 1"), "{text}");
        assert!(text.contains("active: false"), "{text}");
        assert!(text.ends_with(".. } RundownGuard { .. }"), "{text}");
        assert!(text.contains("RundownGuard"), "{text}");
    }
}
