//! DMF_AlertableSleep: AS-01…AS-19 and Top 25 #22–#24, plus a scenario modelled on C DMF's
//! Tests_AlertableSleep (one thread sleeps random durations, another aborts at random; the Module
//! is closed under load). Everything runs on the virtual clock.
#![cfg(feature = "sim")]
// reason: scenario closures name their handle `h`, the thread `t`, the Rng `rng`, as Tests_* do.
#![allow(clippy::many_single_char_names)]

mod task_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmf_core::module::NoParent;
use dmf_core::platform::contract::{EventKind, PlatformClock, PlatformEvent, WaitStatus};
use dmf_core::platform::{Clock, Event};
use dmf_core::sync::{LockKind, ModuleLock};
use dmf_core::NtStatus;
use dmf_modules::alertable_sleep::{AlertableSleep, AlertableSleepConfig};
use kmdf_sim::exec::WaitStatus as SimWait;
use task_support::{auto_advance_machine as machine, clean, since, spawn, test_seed, Rng};

fn nap(ms: u64) {
    let event = Event::new(EventKind::Notification, false).unwrap();
    let _ = event.wait(Some(Duration::from_millis(ms)));
}

fn create(count: u32) -> dmf_core::module::DynamicModule<AlertableSleep> {
    AlertableSleep::with(AlertableSleepConfig { event_count: count })
        .create(&NoParent)
        .unwrap()
}

/// AS-03, AS-12, Top 25 #22: success only after the full delay (virtual clock).
#[test]
fn as12_sleep_succeeds_after_the_full_delay() {
    let machine = machine();
    let _on = machine.enter();
    let sleep = create(1);
    let start = Clock::now();
    assert_eq!(sleep.sleep(0, 600_000), Ok(()));
    assert_eq!(since(start), Duration::from_mins(10));
    assert_eq!(sleep.sleep(0, 0), Ok(()));
    drop(sleep);
    clean(&machine);
}

/// AS-04, AS-12, Top 25 #22: a concurrent Abort wakes the sleeper early with STATUS_UNSUCCESSFUL.
#[test]
fn as04_abort_wakes_the_sleeper_early() {
    let machine = machine();
    let _on = machine.enter();
    let sleep = create(1);
    let sleeper = {
        let h = (*sleep).clone();
        spawn(&machine, "sleeper", move || {
            let start = Clock::now();
            assert_eq!(h.sleep(0, 60_000), Err(NtStatus::UNSUCCESSFUL));
            assert_eq!(since(start), Duration::from_secs(1));
        })
    };
    nap(1_000);
    sleep.abort(0);
    assert_eq!(sleeper.wait(None), SimWait::Signaled);
    drop(sleep);
    clean(&machine);
}

/// AS-13, AS-14, AS-16, Top 25 #23: Abort is sticky until ResetForReuse and only for its index.
#[test]
fn as13_abort_is_sticky_until_reset_and_per_index() {
    let machine = machine();
    let _on = machine.enter();
    let sleep = create(3);
    sleep.abort(1);
    for _ in 0..3 {
        let before = Clock::now();
        assert_eq!(sleep.sleep(1, 10_000), Err(NtStatus::UNSUCCESSFUL));
        assert_eq!(Clock::now(), before, "fails without waiting");
    }
    // AS-16: the other slots are untouched.
    let before = Clock::now();
    assert_eq!(sleep.sleep(0, 100), Ok(()));
    assert_eq!(sleep.sleep(2, 100), Ok(()));
    assert_eq!(since(before), Duration::from_millis(200));
    sleep.reset_for_reuse(1);
    let before = Clock::now();
    assert_eq!(sleep.sleep(1, 10_000), Ok(()), "full sleep again");
    assert_eq!(since(before), Duration::from_secs(10));
    drop(sleep);
    clean(&machine);
}

/// AS-10, AS-11, Top 25 #24: EventCount bounds; an out-of-range index fails Sleep without waiting
/// and makes Abort/ResetForReuse no-ops.
#[test]
fn as10_as11_index_bounds() {
    let machine = machine();
    let _on = machine.enter();
    for bad in [0, 33, u32::MAX] {
        assert_eq!(
            AlertableSleep::with(AlertableSleepConfig { event_count: bad })
                .create(&NoParent)
                .err(),
            Some(NtStatus::INVALID_PARAMETER),
            "event_count {bad}"
        );
    }
    let sleep = create(32);
    let before = Clock::now();
    assert_eq!(sleep.sleep(32, 1_000), Err(NtStatus::UNSUCCESSFUL));
    assert_eq!(sleep.sleep(u32::MAX, 1_000), Err(NtStatus::UNSUCCESSFUL));
    assert_eq!(Clock::now(), before);
    sleep.abort(32);
    sleep.reset_for_reuse(u32::MAX);
    assert_eq!(sleep.sleep(31, 5), Ok(()));
    drop(sleep);
    clean(&machine);
}

/// AS-15: one sleeper per index; a second concurrent Sleep fails at once.
#[test]
fn as15_one_sleeper_per_index() {
    let machine = machine();
    let _on = machine.enter();
    let sleep = create(1);
    let sleeper = {
        let h = (*sleep).clone();
        spawn(&machine, "sleeper", move || {
            assert_eq!(h.sleep(0, 10_000), Ok(()));
        })
    };
    nap(1_000);
    let before = Clock::now();
    assert_eq!(sleep.sleep(0, 1_000), Err(NtStatus::INVALID_DEVICE_REQUEST));
    assert_eq!(Clock::now(), before);
    assert_eq!(sleeper.wait(None), SimWait::Signaled);
    assert_eq!(sleep.sleep(0, 1), Ok(()), "free again");
    drop(sleep);
    clean(&machine);
}

/// AS-18: Sleep above PASSIVE_LEVEL fails instead of waiting at DISPATCH_LEVEL; Abort and
/// ResetForReuse are fine there.
#[test]
fn as18_sleep_refused_at_dispatch_abort_allowed() {
    let machine = machine();
    let _on = machine.enter();
    let sleep = create(1);
    let spin = ModuleLock::new(LockKind::Spin, ()).unwrap();
    {
        let _dispatch = spin.lock();
        assert_eq!(sleep.sleep(0, 10), Err(NtStatus::INVALID_DEVICE_REQUEST));
        sleep.abort(0);
        sleep.reset_for_reuse(0);
    }
    assert_eq!(sleep.sleep(0, 10), Ok(()));
    drop(sleep);
    clean(&machine);
}

/// AS-17, Top 25 #24: close aborts every sleeper (STATUS_UNSUCCESSFUL, early) and later Sleeps fail
/// at once.
#[test]
fn as17_close_aborts_every_sleeper() {
    let machine = machine();
    let _on = machine.enter();
    let sleep = create(4);
    let handle = (*sleep).clone();
    let sleepers: Vec<_> = (0..4)
        .map(|i| {
            let h = handle.clone();
            spawn(&machine, &format!("sleeper-{i}"), move || {
                let start = Clock::now();
                assert_eq!(h.sleep(i, 3_600_000), Err(NtStatus::UNSUCCESSFUL));
                assert!(since(start) < Duration::from_hours(1));
            })
        })
        .collect();
    nap(2_000);
    let before = Clock::now();
    sleep.delete();
    assert_eq!(Clock::now(), before, "close is not held up by the sleepers");
    for s in &sleepers {
        assert_eq!(s.wait(None), SimWait::Signaled);
    }
    assert_eq!(handle.sleep(0, 1_000), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(Clock::now(), before);
    handle.abort(0); // no-op, no crash
    handle.reset_for_reuse(0);
    clean(&machine);
}

/// Tests_AlertableSleep scenario (Top 25 #22–#24, AS-12…AS-17): per slot pair, a sleeper sleeps
/// random durations and resets after an interruption; an aborter sleeps random durations on its
/// own slot and aborts the sleeper's slot at random. Invariants: success ⇒ the full delay
/// elapsed; an interruption ⇒ an abort was issued since the sleeper's last reset, or the Module
/// closed. The Module is then closed while sleepers sleep: they see STATUS_UNSUCCESSFUL or
/// STATUS_INVALID_DEVICE_STATE, nothing else; no verifier report, no leak.
#[test]
fn scenario_tests_alertable_sleep_random_aborts_and_close_under_load() {
    const PAIRS: u32 = 2;
    const ITERATIONS: u64 = 150;
    let seed = test_seed(0x5EED_0000_0000_0022);
    let machine = machine();
    let _on = machine.enter();
    let sleep = create(PAIRS * 2);
    let handle = (*sleep).clone();
    let closing = Arc::new(AtomicBool::new(false));
    let half = Arc::new(AtomicU64::new(0));
    let halfway = Arc::new(Event::new(EventKind::Notification, false).unwrap());
    let mut threads = Vec::new();
    for pair in 0..PAIRS {
        // (aborts issued on the sleeper's slot) under one mutex with the abort/reset itself.
        let issued = Arc::new(Mutex::new(0_u64));
        let (sleeper_slot, aborter_slot) = (pair * 2, pair * 2 + 1);
        let mark_half = {
            let (half, halfway) = (Arc::clone(&half), Arc::clone(&halfway));
            move || {
                if half.fetch_add(1, Ordering::SeqCst) + 1 == u64::from(PAIRS) * 2 {
                    halfway.set();
                }
            }
        };
        {
            let (h, issued, closing, mark_half) = (
                handle.clone(),
                Arc::clone(&issued),
                Arc::clone(&closing),
                mark_half.clone(),
            );
            threads.push(spawn(&machine, &format!("sleeper-{pair}"), move || {
                let mut rng = Rng::from_state(seed ^ u64::from(pair));
                let mut acknowledged = *issued.lock().unwrap();
                for n in 0..ITERATIONS {
                    if n == ITERATIONS / 2 {
                        mark_half();
                    }
                    let ms = 1 + rng.below(200);
                    let start = Clock::now();
                    match h.sleep(sleeper_slot, u32::try_from(ms).unwrap()) {
                        Ok(()) => assert!(
                            since(start) >= Duration::from_millis(ms),
                            "seed {seed:#x}: success before the delay"
                        ),
                        Err(NtStatus::UNSUCCESSFUL) => {
                            let issued = issued.lock().unwrap();
                            assert!(
                                *issued > acknowledged || closing.load(Ordering::SeqCst),
                                "seed {seed:#x}: interrupted without an abort"
                            );
                            h.reset_for_reuse(sleeper_slot); // AS-14: from the sleeping thread
                            acknowledged = *issued;
                        }
                        Err(NtStatus::INVALID_DEVICE_STATE) => {
                            assert!(closing.load(Ordering::SeqCst), "seed {seed:#x}");
                            break;
                        }
                        Err(other) => panic!("seed {seed:#x}: unexpected {other:?}"),
                    }
                }
            }));
        }
        {
            let (h, closing) = (handle.clone(), Arc::clone(&closing));
            threads.push(spawn(&machine, &format!("aborter-{pair}"), move || {
                let mut rng = Rng::from_state(seed.rotate_left(7) ^ u64::from(pair));
                for n in 0..ITERATIONS {
                    if n == ITERATIONS / 2 {
                        mark_half();
                    }
                    let ms = u32::try_from(1 + rng.below(150)).unwrap();
                    match h.sleep(aborter_slot, ms) {
                        Ok(()) => {}
                        Err(NtStatus::UNSUCCESSFUL | NtStatus::INVALID_DEVICE_STATE) => {
                            assert!(closing.load(Ordering::SeqCst), "seed {seed:#x}");
                            break;
                        }
                        Err(other) => panic!("seed {seed:#x}: unexpected {other:?}"),
                    }
                    if rng.below(3) == 0 {
                        let mut issued = issued.lock().unwrap();
                        *issued += 1;
                        h.abort(sleeper_slot);
                    }
                }
            }));
        }
    }
    assert_eq!(halfway.wait(None), WaitStatus::Signaled);
    closing.store(true, Ordering::SeqCst);
    sleep.delete(); // close under load
    for t in &threads {
        assert_eq!(t.wait(None), SimWait::Signaled, "seed {seed:#x}");
    }
    assert!(
        machine.crash().is_none(),
        "seed {seed:#x}: {:?}",
        machine.crash()
    );
    clean(&machine);
}
