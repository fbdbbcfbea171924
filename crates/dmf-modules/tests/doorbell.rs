//! Doorbell: unit tests and a stress scenario modelled on C DMF's Tests_* Modules
//! (dmf-upstream §4). The seed lists Doorbell only in the C module table (dmf-upstream §1.2).
#![cfg(feature = "sim")]
#![allow(clippy::missing_panics_doc, clippy::too_many_lines)]

mod task_support;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dmf_core::module::NoParent;
use dmf_core::platform::contract::{EventKind, Irql, PlatformEvent, PlatformIrql};
use dmf_core::platform::{CurrentIrql, Event};
use dmf_core::NtStatus;
use dmf_modules::doorbell::{Doorbell, DoorbellConfig};
use kmdf_sim::exec::SystemThread;
use kmdf_sim::Machine;
use task_support::{assert_clean, device_parent, seed, Rng};

fn counting(runs: &Arc<AtomicU32>) -> DoorbellConfig {
    let runs = Arc::clone(runs);
    DoorbellConfig {
        callback: Arc::new(move |_d: &Doorbell| {
            assert_eq!(CurrentIrql::current(), Irql::Passive);
            runs.fetch_add(1, Ordering::SeqCst);
        }),
    }
}

/// Doorbell: many rings before the work item runs coalesce into one run.
#[test]
fn mods_doorbell_rings_coalesce() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let parent = device_parent(&machine);
    let runs = Arc::new(AtomicU32::new(0));
    let doorbell = Doorbell::with(counting(&runs)).create(&parent).unwrap();
    // Raise to DISPATCH_LEVEL like a DPC would: Ring is allowed there. The workers are held so
    // all ten rings land before the work item can run (on a real machine a worker could pick it
    // up after the first ring).
    let lock = dmf_core::sync::ModuleLock::new(dmf_core::sync::LockKind::Spin, ()).unwrap();
    {
        let _held = machine.pause_queues();
        let _dispatch = lock.lock();
        for _ in 0..10 {
            doorbell.ring().unwrap();
        }
    }
    machine.settle();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    doorbell.ring().unwrap();
    doorbell.flush().unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    doorbell.delete();
    assert_clean(&machine, 0);
}

/// Doorbell: a ring during the callback causes exactly one more run.
#[test]
fn mods_doorbell_ring_during_callback_runs_once_more() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let parent = device_parent(&machine);
    let runs = Arc::new(AtomicU32::new(0));
    let config = {
        let runs = Arc::clone(&runs);
        DoorbellConfig {
            callback: Arc::new(move |d: &Doorbell| {
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    d.ring().unwrap();
                    d.ring().unwrap();
                }
            }),
        }
    };
    let doorbell = Doorbell::with(config).create(&parent).unwrap();
    doorbell.ring().unwrap();
    machine.settle();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    doorbell.delete();
    assert_clean(&machine, 0);
}

/// Doorbell: close serves an accepted ring; afterwards Ring fails with a status.
#[test]
fn mods_doorbell_close_serves_accepted_ring() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let parent = device_parent(&machine);
    let runs = Arc::new(AtomicU32::new(0));
    let doorbell = Doorbell::with(counting(&runs)).create(&parent).unwrap();
    doorbell.ring().unwrap();
    let handle = (*doorbell).clone();
    doorbell.delete();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(handle.ring(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(handle.flush(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_clean(&machine, 0);
}

/// Doorbell stress: system threads ring (at PASSIVE and DISPATCH) and flush at random while one
/// of them closes the Module. Invariants: callbacks at PASSIVE_LEVEL and never overlapping; after a
/// caller's flush returns, a run has started after that caller's last ring; every accepted ring is
/// followed by a run; after close Ring fails with STATUS_INVALID_DEVICE_STATE.
#[test]
fn mods_doorbell_stress_concurrent_callers_and_close() {
    for round in 0..4u64 {
        stress(seed("mods_doorbell_stress", 0xD00B_0000 + round));
    }
}

fn stress(seed: u64) {
    const CALLERS: u8 = 3;
    const ITERATIONS: u32 = 200;
    let machine = Machine::new();
    let _bound = machine.enter();
    let parent = device_parent(&machine);
    // Rings are numbered before they are made; a run records the highest number issued when it
    // started: every ring numbered at or below that is served.
    let issued = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicBool::new(false));
    let config = {
        let (issued, served, busy) = (Arc::clone(&issued), Arc::clone(&served), Arc::clone(&busy));
        DoorbellConfig {
            callback: Arc::new(move |_d: &Doorbell| {
                assert_eq!(CurrentIrql::current(), Irql::Passive, "seed {seed}");
                assert!(!busy.swap(true, Ordering::SeqCst), "seed {seed}: overlap");
                served.fetch_max(issued.load(Ordering::SeqCst), Ordering::SeqCst);
                let nap = Event::new(EventKind::Notification, false).unwrap();
                let _ = nap.wait(Some(std::time::Duration::ZERO));
                busy.store(false, Ordering::SeqCst);
            }),
        }
    };
    let owner = Arc::new(Mutex::new(Some(
        Doorbell::with(config).create(&parent).unwrap(),
    )));
    let handle = owner
        .lock()
        .unwrap()
        .as_ref()
        .map(|m| (**m).clone())
        .unwrap();
    let close_at = u32::try_from(Rng::new(seed).below(u64::from(ITERATIONS))).unwrap();
    let closed = Arc::new(AtomicBool::new(false));
    let last_accepted = Arc::new(AtomicU64::new(0));
    let threads: Vec<SystemThread> = (0..CALLERS)
        .map(|caller| {
            let (handle, owner, closed, issued, served, last_accepted) = (
                handle.clone(),
                Arc::clone(&owner),
                Arc::clone(&closed),
                Arc::clone(&issued),
                Arc::clone(&served),
                Arc::clone(&last_accepted),
            );
            let mut rng = Rng::new(seed ^ (u64::from(caller) << 32));
            SystemThread::spawn(&machine, &format!("caller-{caller}"), move || {
                let lock =
                    dmf_core::sync::ModuleLock::new(dmf_core::sync::LockKind::Spin, ()).unwrap();
                let mut my_last = 0;
                for i in 0..ITERATIONS {
                    if caller == 0 && i == close_at {
                        let module = owner.lock().unwrap().take();
                        drop(module);
                        // Set only once the close has completed: a call that starts after
                        // this point must be refused.
                        closed.store(true, Ordering::SeqCst);
                        continue;
                    }
                    let was_closed = closed.load(Ordering::SeqCst);
                    match rng.below(5) {
                        0 => match handle.flush() {
                            Ok(()) => assert!(
                                served.load(Ordering::SeqCst) >= my_last,
                                "seed {seed}: flush returned before ring {my_last} was served"
                            ),
                            Err(status) => {
                                assert_eq!(status, NtStatus::INVALID_DEVICE_STATE, "seed {seed}");
                            }
                        },
                        action => {
                            let number = issued.fetch_add(1, Ordering::SeqCst) + 1;
                            let result = if action == 1 {
                                let _dispatch = lock.lock();
                                handle.ring()
                            } else {
                                handle.ring()
                            };
                            match result {
                                Ok(()) => {
                                    assert!(!was_closed, "seed {seed}: ring after close");
                                    my_last = number;
                                    last_accepted.fetch_max(number, Ordering::SeqCst);
                                }
                                Err(status) => {
                                    assert_eq!(
                                        status,
                                        NtStatus::INVALID_DEVICE_STATE,
                                        "seed {seed}"
                                    );
                                }
                            }
                        }
                    }
                }
            })
            .unwrap()
        })
        .collect();
    for thread in &threads {
        thread.wait(None);
    }
    assert!(
        served.load(Ordering::SeqCst) >= last_accepted.load(Ordering::SeqCst),
        "seed {seed}: an accepted ring was never served"
    );
    drop(handle);
    assert_clean(&machine, seed);
}

/// Doorbell without a device (a dynamic Module created without a device-bound parent): its work
/// item has no parent device, so it fails to open with a status, as in C DMF — and nothing is
/// left behind.
#[test]
fn mods_doorbell_without_a_device_fails_with_a_status() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let runs = Arc::new(AtomicU32::new(0));
    assert_eq!(
        Doorbell::with(counting(&runs)).create(&NoParent).err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_clean(&machine, 0);
}
