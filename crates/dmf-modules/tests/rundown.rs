//! DMF_Rundown: RD-01…RD-19 and Top 25 #19–#21, plus a scenario modelled on C DMF's stress
//! Modules (dmf-upstream §4): seeded random concurrent callers, the Module closed under load.
#![cfg(feature = "sim")]
// reason: scenario closures name their handle `h`, the thread `t`, the Rng `rng`, as Tests_* do.
#![allow(clippy::many_single_char_names)]

mod task_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dmf_core::module::{ModuleHandle, ModuleState, NoParent};
use dmf_core::platform::contract::{EventKind, PlatformClock, PlatformEvent, WaitStatus};
use dmf_core::platform::{Clock, Event};
use dmf_core::sync::{LockKind, ModuleLock};
use dmf_core::NtStatus;
use dmf_modules::rundown::Rundown;
use kmdf_sim::exec::WaitStatus as SimWait;
use task_support::{auto_advance_machine as machine, clean, since, spawn, test_seed, Rng};

fn nap(ms: u64) {
    let event = Event::new(EventKind::Notification, false).unwrap();
    assert_eq!(
        event.wait(Some(Duration::from_millis(ms))),
        WaitStatus::TimedOut
    );
}

/// RD-10, Top 25 #19: Reference before Start fails with STATUS_INVALID_DEVICE_STATE, nothing held.
#[test]
fn rd10_reference_before_start_fails() {
    let machine = machine();
    let _on = machine.enter();
    let rundown = Rundown::with(()).create(&NoParent).unwrap();
    let gate = rundown.gate().unwrap();
    assert_eq!(gate.reference().err(), Some(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(
        rundown.reference_with(|| unreachable!()),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    // RD-15: EndAndWait on a never-started object returns at once.
    rundown.end_and_wait().unwrap();
    rundown.start().unwrap();
    assert!(gate.reference().is_ok());
    drop(rundown);
    clean(&machine);
}

/// RD-11, RD-14, Top 25 #19/#20: once EndAndWait has begun, References fail; holders inside keep
/// going undisturbed; EndAndWait returns right after the last Dereference (virtual clock, no poll).
#[test]
fn rd11_rd14_end_and_wait_refuses_new_and_drains_old() {
    let machine = machine();
    let _on = machine.enter();
    let rundown = Rundown::with(()).create(&NoParent).unwrap();
    rundown.start().unwrap();
    let entered = Arc::new(Event::new(EventKind::Notification, false).unwrap());
    let released = Arc::new(AtomicBool::new(false));
    let holder = {
        let (gate, entered, released) = (
            rundown.gate().unwrap(),
            Arc::clone(&entered),
            Arc::clone(&released),
        );
        spawn(&machine, "holder", move || {
            let outer = gate.reference().expect("started");
            let inner = gate.reference().expect("nested (RD-07)");
            entered.set();
            nap(30_000);
            drop(inner);
            nap(30_000);
            released.store(true, Ordering::SeqCst);
            drop(outer);
        })
    };
    assert_eq!(entered.wait(None), WaitStatus::Signaled);
    let ending = Arc::new(Event::new(EventKind::Notification, false).unwrap());
    let probe = {
        let (gate, ending) = (rundown.gate().unwrap(), Arc::clone(&ending));
        spawn(&machine, "late-caller", move || {
            assert_eq!(ending.wait(None), WaitStatus::Signaled);
            nap(1_000); // EndAndWait is now waiting
            assert_eq!(
                gate.reference().err(),
                Some(NtStatus::INVALID_DEVICE_STATE),
                "RD-11: refused while EndAndWait waits"
            );
        })
    };
    let start = Clock::now();
    ending.set();
    rundown.end_and_wait().unwrap();
    assert!(
        released.load(Ordering::SeqCst),
        "returned only after the last Dereference"
    );
    assert_eq!(since(start), Duration::from_mins(1), "no polling");
    assert_eq!(
        rundown.reference_with(|| ()),
        Err(NtStatus::INVALID_DEVICE_STATE),
        "RD-11: refused after EndAndWait"
    );
    assert_eq!(holder.wait(None), SimWait::Signaled);
    assert_eq!(probe.wait(None), SimWait::Signaled);
    drop(rundown);
    clean(&machine);
}

/// RD-15, RD-16, RD-07, Top 25 #21: EndAndWait twice is a no-op; Start re-arms; nesting balances.
#[test]
fn rd15_rd16_end_twice_then_restart() {
    let machine = machine();
    let _on = machine.enter();
    let rundown = Rundown::with(()).create(&NoParent).unwrap();
    let gate = rundown.gate().unwrap();
    for round in 0..3 {
        rundown.start().unwrap();
        rundown.start().unwrap(); // already started: no effect
        {
            let a = gate.reference().unwrap();
            let b = gate.reference().unwrap();
            let c = gate.reference().unwrap();
            drop((a, b, c));
        }
        assert_eq!(rundown.reference_with(|| round), Ok(round));
        let before = Clock::now();
        rundown.end_and_wait().unwrap();
        rundown.end_and_wait().unwrap();
        assert_eq!(Clock::now(), before, "no references: returns at once");
        assert_eq!(gate.reference().err(), Some(NtStatus::INVALID_DEVICE_STATE));
    }
    drop(rundown);
    clean(&machine);
}

/// RD-17: closing the Module with References out ends the rundown and waits for them; afterwards
/// every Method fails with STATUS_INVALID_DEVICE_STATE and a gate's References fail.
#[test]
fn rd17_close_without_end_and_wait_waits_for_references() {
    let machine = machine();
    let _on = machine.enter();
    let rundown = Rundown::with(()).create(&NoParent).unwrap();
    rundown.start().unwrap();
    let handle = (*rundown).clone();
    let gate = rundown.gate().unwrap();
    let entered = Arc::new(Event::new(EventKind::Notification, false).unwrap());
    let released = Arc::new(AtomicBool::new(false));
    let holder = {
        let (gate, entered, released) = (gate.clone(), Arc::clone(&entered), Arc::clone(&released));
        spawn(&machine, "holder", move || {
            let r = gate.reference().unwrap();
            entered.set();
            nap(5_000);
            released.store(true, Ordering::SeqCst);
            drop(r);
        })
    };
    assert_eq!(entered.wait(None), WaitStatus::Signaled);
    rundown.delete(); // close: the client forgot EndAndWait
    assert!(released.load(Ordering::SeqCst), "close waited (RD-17)");
    assert_eq!(handle.state(), ModuleState::Destroyed);
    assert_eq!(handle.start(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(handle.end_and_wait(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(gate.reference().err(), Some(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(holder.wait(None), SimWait::Signaled);
    clean(&machine);
}

/// RD-19: Reference and Dereference at DISPATCH_LEVEL (under a spin lock) without a verifier report.
#[test]
fn rd19_reference_at_dispatch_level() {
    let machine = machine();
    let _on = machine.enter();
    let rundown = Rundown::with(()).create(&NoParent).unwrap();
    rundown.start().unwrap();
    let gate = rundown.gate().unwrap();
    let spin = ModuleLock::new(LockKind::Spin, ()).unwrap();
    {
        let _dispatch = spin.lock();
        let r = gate.reference().unwrap();
        drop(r);
        assert_eq!(rundown.reference_with(|| 1), Ok(1));
    }
    rundown.end_and_wait().unwrap();
    drop(rundown);
    clean(&machine);
}

/// Tests_Rundown-style scenario (Top 25 #19–#21, RD-11…RD-17): one owner thread cycles
/// Start → work → EndAndWait → "free" the resource; three callers take References at random and
/// touch the resource while holding them (it must be alive); then the Module is closed while
/// calls are in flight. Invariants: a held Reference always sees the resource alive; failures are
/// only STATUS_INVALID_DEVICE_STATE; no verifier report, no pool leak.
#[test]
fn scenario_tests_rundown_random_callers_and_close_under_load() {
    const CALLERS: u64 = 3;
    const ITERATIONS: u64 = 200;
    let seed = test_seed(0x5EED_0000_0000_0019);
    let machine = machine();
    let _on = machine.enter();
    let rundown = Rundown::with(()).create(&NoParent).unwrap();
    let handle = (*rundown).clone();
    let alive = Arc::new(AtomicBool::new(false));
    let touched = Arc::new(AtomicU64::new(0));
    let half = Arc::new(AtomicU64::new(0));
    let halfway = Arc::new(Event::new(EventKind::Notification, false).unwrap());

    let owner = {
        let (h, alive) = (handle.clone(), Arc::clone(&alive));
        spawn(&machine, "owner", move || {
            let mut rng = Rng::from_state(seed ^ 0xA5A5);
            for _ in 0..ITERATIONS {
                alive.store(true, Ordering::SeqCst); // (re)create the resource
                match h.start() {
                    Ok(()) => {}
                    // The Module is closing: its close ends the rundown (RD-17), so the
                    // resource stays alive for References already granted until then.
                    Err(s) => {
                        assert_eq!(s, NtStatus::INVALID_DEVICE_STATE, "seed {seed:#x}");
                        return;
                    }
                }
                nap(1 + rng.below(20));
                match h.end_and_wait() {
                    Ok(()) => alive.store(false, Ordering::SeqCst), // "free" it
                    Err(s) => {
                        assert_eq!(s, NtStatus::INVALID_DEVICE_STATE, "seed {seed:#x}");
                        return;
                    }
                }
                nap(1 + rng.below(5));
            }
        })
    };
    let callers: Vec<_> = (0..CALLERS)
        .map(|i| {
            let (h, alive, touched, half, halfway) = (
                handle.clone(),
                Arc::clone(&alive),
                Arc::clone(&touched),
                Arc::clone(&half),
                Arc::clone(&halfway),
            );
            spawn(&machine, &format!("caller-{i}"), move || {
                let mut rng = Rng::from_state(seed.wrapping_add(i + 1));
                for n in 0..ITERATIONS {
                    if n == ITERATIONS / 2 && half.fetch_add(1, Ordering::SeqCst) + 1 == CALLERS {
                        halfway.set();
                    }
                    let result = match rng.below(3) {
                        0 => h.reference_with(|| {
                            assert!(alive.load(Ordering::SeqCst), "seed {seed:#x}");
                            touched.fetch_add(1, Ordering::Relaxed);
                        }),
                        1 => h.gate().and_then(|gate| {
                            let outer = gate.reference()?;
                            let inner = gate.reference()?;
                            nap(rng.below(10));
                            assert!(alive.load(Ordering::SeqCst), "seed {seed:#x}");
                            touched.fetch_add(1, Ordering::Relaxed);
                            drop((inner, outer));
                            Ok(())
                        }),
                        _ => {
                            nap(1 + rng.below(10));
                            Ok(())
                        }
                    };
                    if let Err(s) = result {
                        assert_eq!(s, NtStatus::INVALID_DEVICE_STATE, "seed {seed:#x}");
                    }
                }
            })
        })
        .collect();
    assert_eq!(halfway.wait(None), WaitStatus::Signaled);
    rundown.delete(); // close under load
    for t in callers.iter().chain(std::iter::once(&owner)) {
        assert_eq!(t.wait(None), SimWait::Signaled, "seed {seed:#x}");
    }
    assert_eq!(handle.start(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert!(touched.load(Ordering::Relaxed) > 0, "seed {seed:#x}");
    assert!(
        machine.crash().is_none(),
        "seed {seed:#x}: {:?}",
        machine.crash()
    );
    clean(&machine);
}
