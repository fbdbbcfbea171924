//! Stack (dmf-upstream §1.2 Dmf_Stack.c on a BufferQueue child, §4 Tests_Stack): unit tests of
//! Push (bounded and unbounded) / Pop / Depth / Flush, and the randomized concurrent scenario with
//! close in flight.
#![cfg(feature = "sim")]
#![allow(clippy::too_many_lines)]

mod buffers_common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffers_common::{assert_clean, nap, seeds, spawn, Failures, Rng, SeedGuard};
use dmf_core::module::{DynamicModule, NoParent};
use dmf_core::platform::contract::{EventKind, PlatformEvent};
use dmf_core::platform::Event;
use dmf_core::NtStatus;
use dmf_modules::stack::{Stack, StackConfig};
use kmdf_sim::{ClockMode, Machine};

fn stack(depth: u32, unbounded: bool) -> DynamicModule<Stack> {
    Stack::with(StackConfig {
        element_size: 8,
        depth,
        unbounded,
    })
    .create(&NoParent)
    .expect("stack")
}

fn pop(stack: &Stack) -> Result<u64, NtStatus> {
    let mut out = [0_u8; 8];
    stack.pop(&mut out).map(|()| u64::from_le_bytes(out))
}

/// Tests_Stack: a bounded stack is LIFO, refuses a push when full, and Depth follows.
#[test]
fn mods_stack_bounded_push_pop_is_lifo() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let s = stack(3, false);
    for v in 1..=3_u64 {
        s.push(&v.to_le_bytes()).unwrap();
    }
    assert_eq!(
        s.push(&4_u64.to_le_bytes()),
        Err(NtStatus::UNSUCCESSFUL),
        "full"
    );
    assert_eq!(s.depth(), Ok(3));
    assert_eq!((pop(&s), pop(&s)), (Ok(3), Ok(2)));
    s.push(&5_u64.to_le_bytes()).unwrap();
    assert_eq!(
        (pop(&s), pop(&s), pop(&s)),
        (Ok(5), Ok(1), Err(NtStatus::UNSUCCESSFUL))
    );
    assert_eq!(s.depth(), Ok(0));
    s.delete();
    assert_clean(&machine);
}

/// Tests_Stack: an unbounded stack grows past its depth and shrinks back (lookaside).
#[test]
fn mods_stack_unbounded_grows_past_depth() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let s = stack(2, true);
    for v in 0..10_u64 {
        s.push(&v.to_le_bytes()).unwrap();
    }
    assert_eq!(s.depth(), Ok(10));
    assert_eq!(machine.pool().outstanding().len(), 10);
    for v in (0..10_u64).rev() {
        assert_eq!(pop(&s), Ok(v));
    }
    assert_eq!(
        machine.pool().outstanding().len(),
        2,
        "extra elements freed"
    );
    s.delete();
    assert_clean(&machine);
}

/// Tests_Stack: Flush empties the stack; wrong sizes are errors, not panics; after close every
/// Method is STATUS_INVALID_DEVICE_STATE.
#[test]
fn mods_stack_flush_sizes_and_close() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let s = stack(4, false);
    for v in 0..4_u64 {
        s.push(&v.to_le_bytes()).unwrap();
    }
    s.flush().unwrap();
    assert_eq!(s.depth(), Ok(0));
    assert_eq!(s.push(&[1, 2, 3]), Err(NtStatus::INVALID_PARAMETER));
    s.push(&9_u64.to_le_bytes()).unwrap();
    assert_eq!(s.pop(&mut [0_u8; 4]), Err(NtStatus::BUFFER_TOO_SMALL));
    let mut big = [0_u8; 16];
    s.pop(&mut big).unwrap();
    assert_eq!(big[0], 9);
    assert!(Stack::with(StackConfig {
        element_size: 0,
        depth: 1,
        unbounded: false
    })
    .create(&NoParent)
    .is_err());
    let handle: Stack = (*s).clone();
    s.delete();
    assert_eq!(handle.depth(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(
        handle.push(&1_u64.to_le_bytes()),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(pop(&handle), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(handle.flush(), Err(NtStatus::INVALID_DEVICE_STATE));
    drop(handle);
    assert_clean(&machine);
}

/// Tests_Stack (dmf-upstream §4): threads push unique values, pop, read the depth and flush at
/// random on a bounded and an unbounded stack; every popped value was pushed and is popped at
/// most once, a bounded stack never exceeds its depth, and the stack is closed in flight.
#[test]
fn tests_stack_scenario_random_concurrent_callers_and_close_in_flight() {
    for seed in seeds() {
        stack_scenario(seed, false);
        stack_scenario(seed, true);
    }
}

const THREADS: u64 = 3;
const DEPTH: u32 = 6;

fn stack_scenario(seed: u64, unbounded: bool) {
    let _seed = SeedGuard(
        if unbounded {
            "tests_stack_scenario(unbounded)"
        } else {
            "tests_stack_scenario(bounded)"
        },
        seed,
    );
    let machine = Machine::builder().clock(ClockMode::AutoAdvance).build();
    let _bound = machine.enter();
    let s = stack(DEPTH, unbounded);
    let failures = Failures::default();
    let closed = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let halfway = Arc::new(Event::new(EventKind::Notification, false).unwrap());
    let pushed = Arc::new(Mutex::new(HashSet::new()));
    let popped = Arc::new(Mutex::new(HashSet::new()));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (s, failures, closed, refused, halfway, pushed, popped) = (
                (*s).clone(),
                failures.clone(),
                Arc::clone(&closed),
                Arc::clone(&refused),
                Arc::clone(&halfway),
                Arc::clone(&pushed),
                Arc::clone(&popped),
            );
            spawn(&machine, &format!("stack-caller-{t}"), move || {
                let mut rng = Rng::new(seed ^ (t + 1).wrapping_mul(0xBF58_476D));
                let mut sequence = 0_u64;
                for i in 0..400 {
                    if i == 150 {
                        halfway.set();
                    }
                    let was_closed = closed.load(Ordering::SeqCst);
                    let fail = |what: &str| failures.record(format!("thread {t} iter {i}: {what}"));
                    let check = |result: Result<(), NtStatus>, what: &str| match result {
                        Ok(()) if was_closed => fail(&format!("{what} succeeded after close")),
                        Ok(()) => {}
                        Err(NtStatus::INVALID_DEVICE_STATE) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(NtStatus::UNSUCCESSFUL) if !was_closed => {}
                        Err(status) => fail(&format!("{what}: {status:?}")),
                    };
                    match rng.below(10) {
                        0..=3 => {
                            let value = (t << 32) | sequence;
                            sequence += 1;
                            pushed.lock().unwrap().insert(value);
                            check(s.push(&value.to_le_bytes()), "push");
                        }
                        4..=6 => match pop(&s) {
                            Ok(value) => {
                                check(Ok(()), "pop");
                                if !pushed.lock().unwrap().contains(&value) {
                                    fail(&format!("popped {value:#x}, never pushed"));
                                }
                                if !popped.lock().unwrap().insert(value) {
                                    fail(&format!("popped {value:#x} twice"));
                                }
                            }
                            Err(status) => check(Err(status), "pop"),
                        },
                        7 => match s.depth() {
                            Ok(n) if !unbounded && n > DEPTH as usize => {
                                fail(&format!("depth {n} > StackDepth {DEPTH}"));
                            }
                            result => check(result.map(|_| ()), "depth"),
                        },
                        8 if rng.below(4) == 0 => check(s.flush(), "flush"),
                        _ => nap(Duration::from_micros(rng.below(100))),
                    }
                }
            })
        })
        .collect();
    halfway.wait(None);
    s.delete();
    closed.store(true, Ordering::SeqCst);
    for thread in &threads {
        thread.wait(None);
    }
    failures.check("tests_stack_scenario", seed);
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "seed {seed}: close was not in flight"
    );
    assert_clean(&machine);
}
