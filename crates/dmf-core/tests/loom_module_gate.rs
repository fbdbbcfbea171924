//! loom models of a Module's Method gate ([`dmf_core::module_gate::MethodGate`]): guarded Methods
//! (`enter()`) and lock-free Methods (`enter_lock_free()` + a [`FreeList`], BufferPool's Source
//! `get`/`put`) racing the Module's close — every interleaving and memory-order outcome, on the
//! code that ships (the gate's state word and its rundown take their atomics from the crate's
//! facade, which switches to loom's under `--cfg dmf_loom`).
//!
//! Run with
//! `RUSTFLAGS="--cfg dmf_loom" CARGO_TARGET_DIR=target/loom cargo test -p dmf-core --no-default-features --release --test loom_module_gate`.
//!
//! # What is real and what is mirrored
//!
//! The Module object (`module/object.rs`) needs a platform (its locks, its lazily created
//! platform event, the callback tables), so it cannot be built under loom. Its state word and
//! Method rundown are therefore one platform-free type, `MethodGate` (`src/module_gate.rs`), that
//! the object holds and that these models run as is: `enter` (= `Scope` `enter()`,
//! `ModuleHandle::reference`, `transport_call`), `enter_lock_free` (= `enter_lock_free()`),
//! `begin_open`/`cancel_open`/`finish_open`, `begin_close`/`wait_for_methods`/`finish_close`.
//! What the models mirror by hand is only the *sequence* of those steps in the object and in
//! BufferPool, with the platform items replaced:
//!
//! - [`Module::close`] is `ModuleObject::close` (`module/object.rs`): `gate.begin_close()`, the
//!   client's PreClose (here: a guarded Method call on the closing thread, which must still
//!   succeed), `gate.wait_for_methods()`, the Module's own close (here: the teardown of the
//!   protected data), `gate.finish_close()`. [`Module::open`] is `ModuleObject::open`:
//!   `gate.begin_open()`, the Module's own open (here: initialising the protected data),
//!   `gate.finish_open()`.
//! - [`Pool`] is BufferPool's Source pool (`dmf-modules/src/buffer_pool.rs`): `get` = `get` +
//!   `source_get_slow`, `put` = `put_at` + `source_put` + `source_put_slow` +
//!   `source_push_locked`, `close_callback` = the `close` callback (under the Module's lock: take
//!   the list, `set_closed(true)` and drain in the same hold). The Module's lock is a loom `Mutex`
//!   (the platform spin lock in the real code); the platform event is [`LoomEvent`] (a flag and a
//!   condvar under one mutex, like kmdf-sim's `KEVENT`), whose `alive` cell the closer "frees"
//!   after the wait so that a late `signal` is reported.
//!
//! Protected data are loom `UnsafeCell`s: loom reports any access not ordered by happens-before,
//! so a Method that runs (even partly) after close's teardown, or before open's initialisation is
//! visible, fails the model. A closer that waits forever (a lost wakeup) is reported by loom as a
//! deadlock.
//!
//! # Models
//!
//! | Model | Threads | Proves |
//! |---|---|---|
//! | `two_methods_against_close` | 2 callers + closer | each call runs entirely before the teardown (its write is seen by it) or is refused with `STATUS_INVALID_DEVICE_STATE`; a caller that saw Closed is refused; PreClose Methods work; close waits and is always woken |
//! | `two_methods_against_open_and_close` | 2 callers + opener/closer | as above, and a call that runs sees open's initialisation: refused before open, inside open → close, refused after |
//! | `two_closers_and_a_method` | 2 closers + 1 caller | close-once: exactly one closer runs the teardown, the other returns at once; the caller as above |
//! | `two_lock_free_cyclers_against_close` | 2 get/put cyclers + closer | BufferPool Source get/put (fast and slow paths) racing close: every buffer ends exactly once either drained by close or refused back to its caller; a get/put either takes effect before the drain or is refused; nothing is touched after the drain took it |
//!
//! Each model runs with a preemption bound (in its doc, with its release run time); all four take
//! about 25 s together. `LOOM_MAX_PREEMPTIONS`, if set, overrides the bounds.
//!
//! # Mutation checks
//!
//! Each change below was made by hand, the model run with its default bound, and the change
//! reverted; the result is what loom reported.
//!
//! | Mutation | Model | Result |
//! |---|---|---|
//! | close does not wait: `MethodGate::wait_for_methods` made a no-op | `two_methods_against_close` | fails at once: loom "Causality violation: Concurrent read and write accesses" (teardown under a Method) |
//! | TOCTOU acquire: `Rundown::try_acquire` checks `ACTIVE` with its load and then `fetch_add`s (the check apart from the increment) | `two_methods_against_close` | fails: causality violation (the wait saw no reference, the teardown ran under a late Method) |
//! | lost wakeup: `Rundown::release` decides whether to signal from a load taken *before* its `fetch_sub` | `two_methods_against_close` | fails in 0.7 s: loom "deadlock" (the closer blocked on an event nobody signals) |
//! | close order: `finish_close` (Closed) before `wait_for_methods` | `two_methods_against_close` | fails in 1 s: "a caller that saw Closed entered" |
//! | `Rundown::reinitialize`'s final store `Release` → `Relaxed` | `two_methods_against_open_and_close` | fails in 2.4 s: causality violation (a Method read the data before open's initialisation was visible) |
//! | close-once lost: `begin_close` as a load + a store instead of one compare-exchange | `two_closers_and_a_method` | fails at once: both closers pass; the second one's rundown wait refuses the first one's PreClose Method ("a Method in PreClose was refused") |
//! | BufferPool close without `set_closed(true)` (the state check of `enter_lock_free` alone) | `two_lock_free_cyclers_against_close` | fails at once ("the list is not closed after close"); with that assertion also removed, in 2.4 s: "a buffer lost or doubled" (a put that passed the state check before Closing landed after the drain) |
//! | BufferPool close closes the list in a second hold after the drain | `two_lock_free_cyclers_against_close` | fails in 13 s: "a buffer lost or doubled" (a push between the two holds) |
//! | `enter_lock_free` without its state check (always `Ok`) | `two_lock_free_cyclers_against_close` | **passes**, as it should: what shuts a lock-free get/put out is the list's close in the hold that drains it; the state check only refuses early (and is what refuses a Sink pool's lock-free entry, outside this model) |
//!
//! "The state check after instead of before the rundown acquire" does not apply to `enter()`: it
//! reads no state at all; the rundown's `ACTIVE` bit, tested in the same compare-exchange that
//! takes the reference, is the check (the TOCTOU row above is the split version of it).
#![cfg(dmf_loom)]

use dmf_core::free_list::{FreeList, Pop, Pushed, SlotKey};
use dmf_core::module_gate::{MethodGate, ModuleState};
use dmf_core::NtStatus;
use loom::cell::UnsafeCell;
use loom::sync::{Arc, Mutex};
use loom::thread;

#[allow(dead_code)] // every model file includes it; not each uses every item
mod loom_support;
use loom_support::{LoomEvent, Tracked};

/// Runs `model` under loom with at most `default_bound` preemptions per execution (`None`:
/// exhaustive). `LOOM_MAX_PREEMPTIONS`, if set, overrides it.
fn check(default_bound: Option<usize>, model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = default_bound;
    }
    // The lock-free callers' compare-exchange loops and the closer's event wait need room.
    builder.max_branches = 100_000;
    builder.check(model);
}

// ---------------------------------------------------------------------------------------------
// Guarded Methods
// ---------------------------------------------------------------------------------------------

/// A Module with guarded Methods: its gate, the data its Methods use (valid while `1`, torn down
/// to `0`) and one counter per caller that the Method writes and the teardown reads.
struct Module {
    gate: MethodGate<LoomEvent>,
    data: UnsafeCell<u32>,
    calls: [UnsafeCell<u32>; 2],
    teardowns: UnsafeCell<u32>,
}

// SAFETY: the cells are touched only through loom's `UnsafeCell`, which checks every access for
// races; proving that the gate orders them is the point of the models.
unsafe impl Sync for Module {}
// SAFETY: as above.
unsafe impl Send for Module {}

impl Module {
    /// A Module in state Created (`data` not yet initialised: `0`).
    fn created() -> Arc<Self> {
        Arc::new(Module {
            gate: MethodGate::new().unwrap(),
            data: UnsafeCell::new(0),
            calls: [UnsafeCell::new(0), UnsafeCell::new(0)],
            teardowns: UnsafeCell::new(0),
        })
    }

    /// A Module already opened on this thread.
    fn opened() -> Arc<Self> {
        let module = Self::created();
        module.open().expect("Created → Opened");
        module
    }

    /// `ModuleObject::open`: begin_open, the Module's own open (initialise the data), finish_open.
    fn open(&self) -> Result<(), NtStatus> {
        let _previous = self.gate.begin_open()?;
        // SAFETY: checked by loom against every Method's access.
        self.data.with_mut(|data| unsafe { *data = 1 });
        self.gate.finish_open();
        Ok(())
    }

    /// A guarded Method of caller `who`: `enter()`, use the data, record the call, leave.
    /// Returns whether it ran; a refusal must be `STATUS_INVALID_DEVICE_STATE`.
    fn method(&self, who: usize) -> bool {
        match self.gate.enter() {
            Ok(_guard) => {
                self.data.with(|data| {
                    // SAFETY: checked by loom against open's initialisation and close's teardown.
                    let value = unsafe { *data };
                    assert_eq!(value, 1, "Method ran outside open → teardown");
                });
                // SAFETY: only caller `who` and the teardown touch this cell; loom checks them.
                self.calls[who].with_mut(|calls| unsafe { *calls += 1 });
                true
            }
            Err(status) => {
                assert_eq!(status, NtStatus::INVALID_DEVICE_STATE);
                false
            }
        }
    }

    /// A caller: looks at the state, calls the Method; a call after Closed was seen is refused.
    fn caller(&self, who: usize) -> u32 {
        let seen = self.gate.state();
        let ran = self.method(who);
        if seen == ModuleState::Closed {
            assert!(!ran, "a caller that saw Closed entered");
        }
        u32::from(ran)
    }

    /// `ModuleObject::close`: begin_close (close-once), PreClose (a Method on this thread still
    /// works), wait for the Methods in flight, the Module's own close (teardown), finish_close.
    /// Returns the calls the teardown found (every call that ran), or `None` for a second closer.
    fn close(&self) -> Option<u32> {
        if !self.gate.begin_close() {
            return None;
        }
        // PreClose: Methods still work (C DMF's code order).
        match self.gate.enter() {
            Ok(_guard) => {}
            Err(status) => panic!("a Method in PreClose was refused: {status:?}"),
        }
        self.gate.wait_for_methods();
        let mut seen = 0;
        // SAFETY: checked by loom against every Method's access; the wait must order them.
        unsafe {
            self.data.with_mut(|data| *data = 0);
            for calls in &self.calls {
                seen += calls.with(|calls| *calls);
            }
            self.teardowns.with_mut(|teardowns| {
                *teardowns += 1;
                assert_eq!(*teardowns, 1, "torn down twice");
            });
        }
        self.gate.event_for_model().free();
        self.gate.finish_close();
        Some(seen)
    }

    /// After every thread has joined: closed, and every Method refused.
    fn assert_closed(&self) {
        assert_eq!(self.gate.state(), ModuleState::Closed);
        assert_eq!(
            self.gate.enter().err(),
            Some(NtStatus::INVALID_DEVICE_STATE)
        );
        assert_eq!(
            self.gate.enter_lock_free(),
            Err(NtStatus::INVALID_DEVICE_STATE)
        );
    }
}

fn spawn_callers(module: &Arc<Module>) -> Vec<thread::JoinHandle<u32>> {
    (0..2)
        .map(|who| {
            let module = Arc::clone(module);
            thread::spawn(move || module.caller(who))
        })
        .collect()
}

/// Invariant 4, EX-04/EX-06, Top 25 #10/#19/#20: two callers and a closer on an open Module.
/// Each call either runs entirely before the teardown (the teardown sees its count, loom sees its
/// accesses ordered before) or is refused with `STATUS_INVALID_DEVICE_STATE`; a caller that saw
/// Closed is refused; the closer's wait always ends (no lost wakeup: loom reports a deadlock).
/// Preemption bound 3 (≈ 8 s in release; exhaustive search takes minutes).
#[test]
fn two_methods_against_close() {
    check(Some(3), || {
        let module = Module::opened();
        let callers = spawn_callers(&module);
        let seen = module.close().expect("the only closer");
        let ran: u32 = callers.into_iter().map(|c| c.join().unwrap()).sum();
        assert_eq!(seen, ran, "the teardown missed a call that ran");
        module.assert_closed();
    });
}

/// Open and close against two callers that start while the Module is only Created: a call runs
/// only between open (its initialisation visible) and close's teardown, else it is refused.
/// Preemption bound 2 (≈ 7 s in release; 3 takes ≈ 43 s).
#[test]
fn two_methods_against_open_and_close() {
    check(Some(2), || {
        let module = Module::created();
        let callers = spawn_callers(&module);
        module.open().expect("Created → Opened");
        let seen = module.close().expect("the only closer");
        let ran: u32 = callers.into_iter().map(|c| c.join().unwrap()).sum();
        assert_eq!(seen, ran, "the teardown missed a call that ran");
        module.assert_closed();
    });
}

/// Close-once: two closers race; exactly one tears the Module down (after waiting for the
/// caller), the other returns at once. Preemption bound 4 (≈ 2 s in release).
#[test]
fn two_closers_and_a_method() {
    check(Some(4), || {
        let module = Module::opened();
        let caller = {
            let module = Arc::clone(&module);
            thread::spawn(move || module.caller(0))
        };
        let other = {
            let module = Arc::clone(&module);
            thread::spawn(move || module.close())
        };
        let mine = module.close();
        let theirs = other.join().unwrap();
        let ran = caller.join().unwrap();
        match (mine, theirs) {
            (Some(seen), None) | (None, Some(seen)) => assert_eq!(seen, ran),
            (mine, theirs) => panic!("close ran {mine:?} and {theirs:?}"),
        }
        // The losing closer may return before the winner finished; after both joined: Closed.
        module.assert_closed();
    });
}

// ---------------------------------------------------------------------------------------------
// Lock-free Methods: BufferPool's Source get/put racing close
// ---------------------------------------------------------------------------------------------

/// BufferPool's Source pool: the gate, the Module's lock (a loom `Mutex` for the platform spin
/// lock; it guards the spare keys, as `ctx.spare_keys`) and the free list in the shared state.
struct Pool {
    gate: MethodGate<LoomEvent>,
    lock: Mutex<Vec<SlotKey>>,
    free: FreeList<Tracked>,
}

// SAFETY: the event's `alive` cell is touched only through loom's `UnsafeCell`, which checks every
// access for races (as `Module`'s cells are).
unsafe impl Sync for Pool {}

type PutRefused = (NtStatus, SlotKey, Tracked);

impl Pool {
    /// A pool of `n` buffers, opened: list filled and opened under the lock, as the `open`
    /// callback does, then `finish_open`.
    fn opened(n: u32) -> Arc<Self> {
        let pool = Pool {
            gate: MethodGate::new().unwrap(),
            lock: Mutex::new(Vec::new()),
            free: FreeList::with_capacity(n as usize).unwrap(),
        };
        pool.gate.begin_open().expect("Created → Opening");
        {
            let _ctx = pool.lock.lock().unwrap();
            let mut list = pool.free.exclusive().expect("nobody else holds the list");
            list.set_closed(false);
            for key in pool.free.mint().expect("first open") {
                let id = key.index();
                list.push(key, Tracked::new(id)).unwrap();
            }
        }
        pool.gate.finish_open();
        Arc::new(pool)
    }

    /// `get` + `source_get_slow`.
    fn get(&self) -> Result<(SlotKey, Tracked), NtStatus> {
        self.gate.enter_lock_free()?;
        if let Pop::Item(key, buffer) = self.free.pop() {
            return Ok((key, buffer));
        }
        match self.free.pop() {
            Pop::Item(key, buffer) => Ok((key, buffer)),
            Pop::Empty => Err(NtStatus::UNSUCCESSFUL),
            Pop::Closed => Err(NtStatus::INVALID_DEVICE_STATE),
            Pop::Busy => {
                let _method = self.gate.enter()?;
                let _ctx = self.lock.lock().unwrap();
                let mut list = self.free.exclusive().ok_or(NtStatus::INTERNAL_ERROR)?;
                if list.is_closed() {
                    return Err(NtStatus::INVALID_DEVICE_STATE);
                }
                list.pop().ok_or(NtStatus::UNSUCCESSFUL)
            }
        }
    }

    /// `put_at` + `source_put` + `source_put_slow` + `source_push_locked`.
    fn put(&self, key: SlotKey, buffer: Tracked) -> Result<(), PutRefused> {
        if let Err(status) = self.gate.enter_lock_free() {
            return Err((status, key, buffer));
        }
        let refused = match self.free.push(key, buffer) {
            Ok(()) => return Ok(()),
            Err(refused) => refused,
        };
        let refused = match refused {
            Pushed::Busy(key, buffer) => match self.push_locked(key, buffer) {
                Ok(()) => return Ok(()),
                Err(refused) => refused,
            },
            refused => refused,
        };
        let status = match refused {
            Pushed::Closed(..) => NtStatus::INVALID_DEVICE_STATE,
            Pushed::Foreign(..) => NtStatus::INVALID_PARAMETER,
            Pushed::Busy(..) => NtStatus::INTERNAL_ERROR,
        };
        let (key, buffer) = refused.into_parts();
        Err((status, key, buffer))
    }

    /// `source_push_locked`: under the rundown guard and the Module's lock.
    fn push_locked(&self, key: SlotKey, buffer: Tracked) -> Result<(), Pushed<Tracked>> {
        let Ok(_method) = self.gate.enter() else {
            return Err(Pushed::Closed(key, buffer));
        };
        let _ctx = self.lock.lock().unwrap();
        match self.free.exclusive() {
            Some(list) if list.is_closed() => Err(Pushed::Closed(key, buffer)),
            Some(mut list) => list.push(key, buffer),
            None => Err(Pushed::Busy(key, buffer)),
        }
    }

    /// `ModuleObject::close` with BufferPool's `close` callback as the Module's own close:
    /// Closing, wait for guarded Methods, then under the lock take the list, close it and drain
    /// it in the same hold; Closed. Returns the ids drained.
    fn close(&self) -> Vec<u32> {
        assert!(self.gate.begin_close(), "the only closer");
        self.gate.wait_for_methods();
        let mut drained = Vec::new();
        {
            let mut ctx = self.lock.lock().unwrap();
            if let Some(mut list) = self.free.exclusive() {
                list.set_closed(true);
                for (key, buffer) in list.drain() {
                    assert_eq!(key.index(), buffer.id, "a buffer under another slot's key");
                    buffer.touch();
                    drained.push(buffer.id);
                    ctx.push(key);
                }
            }
        }
        self.gate.event_for_model().free();
        self.gate.finish_close();
        drained
    }
}

/// What one cycler ended with: the buffer its put was refused for (it keeps it), if any.
fn get_put_cycle(pool: &Pool) -> Option<u32> {
    let seen = pool.gate.state();
    let (key, buffer) = match pool.get() {
        Ok(got) => got,
        Err(status) => {
            // Refused (closed or closing), or the other cycler holds every buffer.
            assert!(
                status == NtStatus::INVALID_DEVICE_STATE || status == NtStatus::UNSUCCESSFUL,
                "get: {status:?}"
            );
            return None;
        }
    };
    assert_ne!(
        seen,
        ModuleState::Closed,
        "a get after Closed took a buffer"
    );
    buffer.touch();
    match pool.put(key, buffer) {
        Ok(()) => None,
        Err((status, _key, buffer)) => {
            assert_eq!(
                status,
                NtStatus::INVALID_DEVICE_STATE,
                "put refused for {status:?}"
            );
            // The refused buffer is back in the caller's hands: it may still use it.
            buffer.touch();
            Some(buffer.id)
        }
    }
}

/// Invariant 4's lock-free exception: two lock-free callers, each a BufferPool Source `get` then
/// `put` (fast and slow paths, the state check of `enter_lock_free` first), race a closer that
/// runs the real close order — Closing, rundown wait, then under the Module's lock close + drain
/// the list in one hold, Closed. Every buffer ends exactly once, either drained or refused back
/// to its caller (nothing lost, nothing doubled); no buffer is touched after the drain took it
/// (loom); after close every get and put is refused. Preemption bound 3 (≈ 6 s in release; 4
/// takes ≈ 34 s).
#[test]
fn two_lock_free_cyclers_against_close() {
    check(Some(3), || {
        let pool = Pool::opened(2);
        let cyclers: Vec<_> = (0..2)
            .map(|_| {
                let pool = Arc::clone(&pool);
                thread::spawn(move || get_put_cycle(&pool))
            })
            .collect();
        let mut all = pool.close();
        let drained = all.len();
        for cycler in cyclers {
            all.extend(cycler.join().unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, [0, 1], "a buffer lost or doubled");
        let leaked = pool
            .free
            .exclusive()
            .expect("nobody holds the list at the end")
            .len();
        assert_eq!(
            leaked, 0,
            "a buffer landed in the list after close drained it"
        );
        assert_eq!(pool.get().err(), Some(NtStatus::INVALID_DEVICE_STATE));
        assert!(
            matches!(pool.free.pop(), Pop::Closed),
            "the list is not closed after close"
        );
        // Close kept the key of every buffer it drained; a refused caller keeps its own.
        assert_eq!(pool.lock.lock().unwrap().len(), drained);
    });
}
