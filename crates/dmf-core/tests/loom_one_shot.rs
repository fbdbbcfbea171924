//! loom model of [`dmf_core::one_shot::OneShot`]: every interleaving and memory-order outcome of a
//! setter racing a taker, and of two setters racing each other and a taker, on the code that
//! ships (the crate's facade switches the slot's atomic and cell to loom's under
//! `--cfg dmf_loom`).
//!
//! Run with
//! `RUSTFLAGS="--cfg dmf_loom" cargo test -p dmf-core --no-default-features --release --test loom_one_shot`.
//!
//! The value is a loom-tracked box: a take that read it before the setter's write was visible is
//! an unsynchronised access loom reports, and every model checks the value arrives exactly once
//! (nothing lost, nothing doubled) and is dropped once.
#![cfg(dmf_loom)]

use dmf_core::one_shot::OneShot;
use loom::sync::Arc;
use loom::thread;

#[test]
fn a_setter_and_a_taker() {
    loom::model(|| {
        let slot = Arc::new(OneShot::new());
        let setter = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || slot.set(Box::new(41_u32)).is_ok())
        };
        let early = slot.take();
        assert!(setter.join().unwrap());
        let late = slot.take();
        // Exactly one of the two takes has the value, intact.
        match (early, late) {
            (Some(v), None) | (None, Some(v)) => assert_eq!(*v, 41),
            other => panic!("the value arrived {other:?}"),
        }
        assert!(slot.take().is_none());
    });
}

#[test]
fn two_setters_and_a_taker() {
    loom::model(|| {
        let slot = Arc::new(OneShot::new());
        let spawn = |v: u32| {
            let slot = Arc::clone(&slot);
            thread::spawn(move || slot.set(Box::new(v)).map_err(|b| *b))
        };
        let (a, b) = (spawn(1), spawn(2));
        let taken = slot.take();
        let (ra, rb) = (a.join().unwrap(), b.join().unwrap());
        // One setter wins and one gets its value back.
        let winner = match (ra, rb) {
            (Ok(()), Err(2)) => 1,
            (Err(1), Ok(())) => 2,
            other => panic!("both or neither set: {other:?}"),
        };
        let value = taken
            .or_else(|| slot.take())
            .expect("the winner's value is there");
        assert_eq!(*value, winner);
        assert!(slot.take().is_none());
    });
}

#[test]
fn a_value_never_taken_is_dropped_with_the_slot() {
    loom::model(|| {
        let slot = Arc::new(OneShot::new());
        let setter = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || slot.set(loom::sync::Arc::new(5_u8)).is_ok())
        };
        assert!(setter.join().unwrap());
        drop(slot); // loom reports a leaked loom Arc at the end of the model
    });
}
