//! loom model of [`dmf_core::rundown::Rundown`]: every interleaving and memory-order outcome of
//! holders, waiters and re-initialisation, on the same code that ships (the crate's atomics facade
//! switches to loom's atomics under `--cfg dmf_loom`).
//!
//! Run with
//! `RUSTFLAGS="--cfg dmf_loom" cargo test -p dmf-core --release --test loom_rundown`
//! (a separate target directory avoids rebuilding the normal cache).
//!
//! The "protected object" is a loom `UnsafeCell` that holders read and the closer writes right
//! after the wait returns; loom reports any access that is not ordered by happens-before, so a
//! wait that returns too early, or a missing fence, fails the model. The event carries an `alive`
//! cell that `signal` reads and the closer "frees" (writes) after the wait, so a releaser that
//! touches the event after the waiter may return fails the model too. Holders are ≥ 2 on purpose:
//! the missing-`Acquire`-fence bug is invisible with one.
//!
//! The three-thread holder/waiter models run exhaustively; the two largest use a preemption bound
//! ([`LARGE_MODEL_BOUND`]). `LOOM_MAX_PREEMPTIONS`, if set, overrides the bound of every model.
#![cfg(dmf_loom)]

use dmf_core::rundown::Rundown;
use dmf_core::NtStatus;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

#[allow(dead_code)] // every model file includes it; not each uses every item
mod loom_support;
use loom_support::LoomEvent;

/// An object whose Methods run under rundown protection.
struct Module {
    rundown: Rundown<LoomEvent>,
    data: UnsafeCell<u32>,
}

// SAFETY: `data` is only touched through loom's `UnsafeCell`, which checks every access for races;
// the point of the model is to prove the rundown orders them.
unsafe impl Sync for Module {}

impl Module {
    fn new(rundown: Rundown<LoomEvent>) -> Arc<Self> {
        Arc::new(Self {
            rundown,
            data: UnsafeCell::new(1),
        })
    }

    /// A Method: reads the object only under rundown protection.
    fn method(&self) -> bool {
        match self.rundown.acquire() {
            Some(_guard) => {
                // SAFETY: checked by loom against the closer's teardown write.
                self.data
                    .with(|data| assert_ne!(unsafe { *data }, 0, "Method ran after teardown"));
                true
            }
            None => false,
        }
    }

    /// Close: wait for the Methods in flight, then tear the object down.
    fn close_and_tear_down(&self, value: u32) {
        self.rundown.wait_for_release();
        // SAFETY: checked by loom against every Method's read.
        self.data.with_mut(|data| unsafe { *data = value });
    }
}

/// Runs `model` under loom: exhaustively if `default_bound` is `None`, otherwise with at most that
/// many preemptions per execution. `LOOM_MAX_PREEMPTIONS`, if set, overrides either.
fn check<F>(default_bound: Option<usize>, model: F)
where
    F: Fn() + Sync + Send + 'static,
{
    // `Builder::new` reads LOOM_MAX_PREEMPTIONS (and the other LOOM_* knobs) from the environment.
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = default_bound;
    }
    builder.check(model);
}

/// The preemption bound for the two largest models (four rundown phases or three threads on the
/// event): 5 keeps each under ~2 s where exhaustive search takes minutes. The three-thread
/// holder/waiter models run exhaustively. Bugs in this primitive show up within 2–3 preemptions.
const LARGE_MODEL_BOUND: Option<usize> = Some(5);

/// EX-04, EX-06, Top 25 #20: two concurrent holders plus a closer. No Method reads the object after
/// the closer's teardown, and no releaser touches the event after the closer frees it.
#[test]
fn two_holders_and_waiter_then_teardown() {
    check(None, || {
        let module = Module::new(Rundown::new().unwrap());
        let holders: Vec<_> = (0..2)
            .map(|_| {
                let module = Arc::clone(&module);
                thread::spawn(move || {
                    module.method();
                })
            })
            .collect();
        module.close_and_tear_down(0);
        module.rundown.event_for_model().free();
        assert!(module.rundown.acquire().is_none(), "EX-05 after the wait");
        for holder in holders {
            holder.join().unwrap();
        }
    });
}

/// EX-05, RD-11, Top 25 #19: once the wait has begun no acquire succeeds; an acquire that did
/// succeed (before the wait began) keeps the closer waiting until its guard drops.
#[test]
fn no_acquire_succeeds_after_wait_began() {
    check(None, || {
        let module = Module::new(Rundown::new().unwrap());
        let first = module.rundown.acquire().expect("ready");
        let closer = {
            let module = Arc::clone(&module);
            thread::spawn(move || module.close_and_tear_down(0))
        };
        let late = {
            let module = Arc::clone(&module);
            thread::spawn(move || {
                let began = module.rundown.is_run_down();
                let guard = module.rundown.acquire();
                if began {
                    assert!(guard.is_none(), "acquire succeeded after the wait began");
                }
                if guard.is_some() {
                    // SAFETY: checked by loom against the closer's teardown write.
                    module.data.with(|data| assert_ne!(unsafe { *data }, 0));
                }
            })
        };
        drop(first);
        late.join().unwrap();
        closer.join().unwrap();
        assert!(module.rundown.is_run_down());
    });
}

/// RD-03, RD-10, RD-16, Top 25 #21: created run down → Start (`reinitialize`) → a holder → wait →
/// teardown → re-arm → a holder → wait → teardown. The second rundown must wait again (the event
/// was reset) and every holder's read is ordered before the teardown that follows it.
#[test]
fn reinitialize_acquire_wait_cycle() {
    check(LARGE_MODEL_BOUND, || {
        let module = Module::new(Rundown::new_run_down().unwrap());
        assert!(
            module.rundown.acquire().is_none(),
            "RD-10: Reference before Start"
        );
        assert_eq!(module.rundown.reinitialize(), Ok(()));
        let mut holders = Vec::new();
        for value in [2, 3] {
            let holder = Arc::clone(&module);
            holders.push(thread::spawn(move || {
                holder.method();
            }));
            module.close_and_tear_down(value);
            assert!(module.rundown.acquire().is_none());
            if value == 2 {
                assert_eq!(
                    module.rundown.reinitialize(),
                    Ok(()),
                    "RD-16: re-arm after the wait"
                );
            }
        }
        module.rundown.event_for_model().free();
        for holder in holders {
            holder.join().unwrap();
        }
    });
}

/// EX-08 from two threads: a second waiter joins a rundown in progress; whichever waiter returns
/// may free the object or the event, so neither may return while a holder is inside or the last
/// releaser is still signalling.
#[test]
fn two_waiters_and_a_holder() {
    check(LARGE_MODEL_BOUND, || {
        let module = Module::new(Rundown::new().unwrap());
        let guard = module.rundown.acquire().expect("ready");
        let first = {
            let module = Arc::clone(&module);
            thread::spawn(move || module.close_and_tear_down(0))
        };
        let second = {
            let module = Arc::clone(&module);
            thread::spawn(move || {
                module.rundown.wait_for_release();
                module.rundown.event_for_model().free();
            })
        };
        // The holder's read, then its release (which may be the one that signals).
        // SAFETY: checked by loom against the first waiter's teardown write.
        module.data.with(|data| assert_ne!(unsafe { *data }, 0));
        drop(guard);
        first.join().unwrap();
        second.join().unwrap();
    });
}

/// Misuse: `reinitialize` racing a wait with a holder out is refused or re-arms, but never strands
/// the waiter (loom reports a deadlock) or corrupts the state.
#[test]
fn reinitialize_racing_a_wait() {
    check(None, || {
        let module = Module::new(Rundown::new().unwrap());
        let guard = module.rundown.acquire().expect("ready");
        let waiter = {
            let module = Arc::clone(&module);
            thread::spawn(move || module.rundown.wait_for_release())
        };
        let rearm = {
            let module = Arc::clone(&module);
            thread::spawn(move || match module.rundown.reinitialize() {
                Ok(()) | Err(NtStatus::INVALID_DEVICE_STATE) => {}
                Err(other) => panic!("unexpected {other:?}"),
            })
        };
        drop(guard);
        waiter.join().unwrap();
        rearm.join().unwrap();
        // Whatever the interleaving, the object is now either run down or ready with no guards:
        // one more rundown completes without waiting, and then acquires fail.
        module.rundown.wait_for_release();
        assert!(module.rundown.acquire().is_none());
        assert_eq!(module.rundown.reinitialize(), Ok(()));
        assert!(module.rundown.acquire().is_some());
    });
}
