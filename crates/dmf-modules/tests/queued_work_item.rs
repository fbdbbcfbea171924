//! QueuedWorkItem (MODS-QueuedWorkitem): unit tests and a stress scenario modelled on C DMF's
//! Tests_* Modules (dmf-upstream §4).
#![cfg(feature = "sim")]
#![allow(clippy::missing_panics_doc, clippy::too_many_lines)]

mod task_support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use dmf_core::module::{ModuleHandle, NoParent};
use dmf_core::platform::contract::{Irql, PlatformIrql};
use dmf_core::platform::CurrentIrql;
use dmf_core::NtStatus;
use dmf_modules::queued_work_item::{QueuedWork, QueuedWorkItem, QueuedWorkItemConfig};
use dmf_modules::scheduled_task::ScheduledTaskResult;
use kmdf_sim::exec::SystemThread;
use kmdf_sim::Machine;
use task_support::{assert_clean, device_parent, seed, Rng};

type Log = Arc<Mutex<Vec<Vec<u8>>>>;

fn logging(log: &Log, count: u32, size: u32, look_aside: bool) -> QueuedWorkItemConfig {
    let log = Arc::clone(log);
    QueuedWorkItemConfig {
        callback: Arc::new(move |_m: &QueuedWorkItem, call: &mut QueuedWork<'_>| {
            assert_eq!(CurrentIrql::current(), Irql::Passive);
            log.lock().unwrap().push(call.buffer().to_vec());
            ScheduledTaskResult::Success
        }),
        buffer_count: count,
        buffer_size: size,
        enable_look_aside: look_aside,
    }
}

/// MODS-QueuedWorkitem: every enqueue runs once, in order, with its own data (no coalescing).
#[test]
fn mods_queued_workitem_runs_once_per_enqueue_in_order() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let parent = device_parent(&machine);
    let log = Log::default();
    let work = QueuedWorkItem::with(logging(&log, 8, 4, false))
        .create(&parent)
        .unwrap();
    for i in 0u8..8 {
        work.enqueue(&[i, i]).unwrap();
    }
    machine.settle();
    let expected: Vec<Vec<u8>> = (0u8..8).map(|i| vec![i, i]).collect();
    assert_eq!(*log.lock().unwrap(), expected);
    work.delete();
    assert_clean(&machine, 0);
}

/// MODS-QueuedWorkitem: invalid input is a status, never a panic.
#[test]
fn mods_queued_workitem_invalid_input_is_a_status() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let parent = device_parent(&machine);
    let log = Log::default();
    assert_eq!(
        QueuedWorkItem::with(logging(&log, 0, 4, false))
            .create(&parent)
            .err(),
        Some(NtStatus::INVALID_PARAMETER),
        "no buffer and no look-aside"
    );
    assert_eq!(
        QueuedWorkItem::with(logging(&log, 1, 4, false))
            .create(&NoParent)
            .err(),
        Some(NtStatus::INVALID_DEVICE_STATE),
        "no device to parent the work item"
    );
    let work = QueuedWorkItem::with(logging(&log, 1, 4, false))
        .create(&parent)
        .unwrap();
    assert_eq!(work.enqueue(&[0; 5]), Err(NtStatus::BUFFER_TOO_SMALL));
    {
        let _held = machine.pause_queues();
        work.enqueue(&[1]).unwrap();
        assert_eq!(
            work.enqueue(&[2]),
            Err(NtStatus::INSUFFICIENT_RESOURCES),
            "the only buffer is queued and the work item has not run yet"
        );
    }
    machine.settle();
    work.enqueue(&[3]).unwrap();
    machine.settle();
    assert_eq!(*log.lock().unwrap(), vec![vec![1], vec![3]]);
    let handle = (*work).clone();
    work.delete();
    assert_eq!(handle.enqueue(&[4]), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(
        handle.enqueue_and_wait(&[4]),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(handle.flush(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_clean(&machine, 0);
}

/// MODS-QueuedWorkitem: look-aside buffers grow past `buffer_count` and go back to the pool.
#[test]
fn mods_queued_workitem_look_aside_grows_and_frees() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let parent = device_parent(&machine);
    let log = Log::default();
    let work = QueuedWorkItem::with(logging(&log, 1, 2, true))
        .create(&parent)
        .unwrap();
    {
        // Hold the workers so all five buffers are queued at once.
        let _held = machine.pause_queues();
        for i in 0u8..5 {
            work.enqueue(&[i]).unwrap();
        }
        assert_eq!(machine.pool().outstanding().len(), 5);
    }
    work.flush().unwrap();
    assert_eq!(log.lock().unwrap().len(), 5);
    assert_eq!(
        machine.pool().outstanding().len(),
        1,
        "only the preallocated one stays"
    );
    work.delete();
    assert_clean(&machine, 0);
}

/// MODS-QueuedWorkitem: EnqueueAndWait returns the status the callback set (StatusSet).
#[test]
fn mods_queued_workitem_enqueue_and_wait_returns_callback_status() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let parent = device_parent(&machine);
    let work = QueuedWorkItem::with(QueuedWorkItemConfig {
        callback: Arc::new(|_m: &QueuedWorkItem, call: &mut QueuedWork<'_>| {
            if call.buffer() == b"bad" {
                call.status_set(NtStatus::DEVICE_BUSY);
                ScheduledTaskResult::Fail
            } else {
                ScheduledTaskResult::Success
            }
        }),
        buffer_count: 2,
        buffer_size: 3,
        enable_look_aside: false,
    })
    .create(&parent)
    .unwrap();
    assert_eq!(work.enqueue_and_wait(b"ok"), Ok(()));
    assert_eq!(work.enqueue_and_wait(b"bad"), Err(NtStatus::DEVICE_BUSY));
    work.delete();
    assert_clean(&machine, 0);
}

/// MODS-QueuedWorkitem: close flushes — calls accepted before close run before it returns, and
/// the Module holds no reference to itself afterwards (its context is dropped).
#[test]
fn mods_queued_workitem_close_flushes() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let parent = device_parent(&machine);
    let log = Log::default();
    let work = QueuedWorkItem::with(logging(&log, 4, 1, false))
        .create(&parent)
        .unwrap();
    for i in 0u8..4 {
        work.enqueue(&[i]).unwrap();
    }
    let weak_probe = Arc::downgrade(&log);
    work.delete();
    assert_eq!(log.lock().unwrap().len(), 4);
    drop(log);
    assert!(
        weak_probe.upgrade().is_none(),
        "the config's callback was released: no reference cycle"
    );
    assert_clean(&machine, 0);
}

/// MODS-QueuedWorkitem stress: three system threads enqueue / enqueue-and-wait / flush at random
/// while one of them closes the Module. Invariants: each accepted call ran exactly once, in its
/// caller's order, at PASSIVE_LEVEL, never two at a time; after close every call fails with
/// STATUS_INVALID_DEVICE_STATE; no verifier violation, no pool leaked.
#[test]
fn mods_queued_workitem_stress_concurrent_callers_and_close() {
    for round in 0..4u64 {
        let seed = seed("mods_queued_workitem_stress", 0x5EED_0000 + round);
        stress(seed);
    }
}

fn stress(seed: u64) {
    const CALLERS: u8 = 3;
    const ITERATIONS: u32 = 150;
    let machine = Machine::new();
    let _bound = machine.enter();
    let parent = device_parent(&machine);
    let log = Log::default();
    let busy = Arc::new(AtomicBool::new(false));
    let config = {
        let (log, busy) = (Arc::clone(&log), Arc::clone(&busy));
        QueuedWorkItemConfig {
            callback: Arc::new(move |_m: &QueuedWorkItem, call: &mut QueuedWork<'_>| {
                assert_eq!(CurrentIrql::current(), Irql::Passive, "seed {seed}");
                assert!(!busy.swap(true, Ordering::SeqCst), "seed {seed}: overlap");
                log.lock().unwrap().push(call.buffer().to_vec());
                busy.store(false, Ordering::SeqCst);
                ScheduledTaskResult::Success
            }),
            buffer_count: 4,
            buffer_size: 5,
            enable_look_aside: seed.is_multiple_of(2),
        }
    };
    let owner = Arc::new(Mutex::new(Some(
        QueuedWorkItem::with(config).create(&parent).unwrap(),
    )));
    let handle = owner
        .lock()
        .unwrap()
        .as_ref()
        .map(|m| (**m).clone())
        .unwrap();
    let mut rng = Rng::new(seed);
    let close_at = u32::try_from(rng.below(u64::from(ITERATIONS))).unwrap();
    let accepted = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let closed = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU32::new(0));
    let threads: Vec<SystemThread> = (0..CALLERS)
        .map(|caller| {
            let (handle, owner, accepted, closed, refused) = (
                handle.clone(),
                Arc::clone(&owner),
                Arc::clone(&accepted),
                Arc::clone(&closed),
                Arc::clone(&refused),
            );
            let mut rng = Rng::new(seed ^ (u64::from(caller) << 32));
            SystemThread::spawn(&machine, &format!("caller-{caller}"), move || {
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
                    let mut data = vec![caller];
                    data.extend_from_slice(&i.to_le_bytes());
                    let action = rng.below(8);
                    let result = match action {
                        0 => handle.flush(),
                        1 | 2 => handle.enqueue_and_wait(&data),
                        _ => handle.enqueue(&data),
                    };
                    match result {
                        Ok(()) => {
                            assert!(!was_closed, "seed {seed}: a call succeeded after close");
                            if action != 0 {
                                accepted.lock().unwrap().push(data);
                            }
                        }
                        Err(NtStatus::INVALID_DEVICE_STATE) => {
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(NtStatus::INSUFFICIENT_RESOURCES) => {}
                        Err(other) => panic!("seed {seed}: unexpected {other:?}"),
                    }
                }
            })
            .unwrap()
        })
        .collect();
    for thread in &threads {
        thread.wait(None);
    }
    assert!(closed.load(Ordering::SeqCst));
    assert_eq!(handle.state(), dmf_core::module::ModuleState::Destroyed);
    // Every accepted enqueue ran exactly once; per caller in order.
    let ran = log.lock().unwrap().clone();
    let mut accepted = accepted.lock().unwrap().clone();
    let mut ran_sorted = ran.clone();
    ran_sorted.sort();
    accepted.sort();
    assert_eq!(
        ran_sorted, accepted,
        "seed {seed}: the calls that ran are not exactly the accepted ones"
    );
    assert!(refused.load(Ordering::SeqCst) > 0 || close_at + 1 >= ITERATIONS);
    let ran_set: std::collections::BTreeSet<_> = ran.iter().cloned().collect();
    assert_eq!(ran_set.len(), ran.len(), "seed {seed}: a call ran twice");
    for caller in 0..CALLERS {
        let seqs: Vec<u32> = ran
            .iter()
            .filter(|d| d[0] == caller)
            .map(|d| u32::from_le_bytes([d[1], d[2], d[3], d[4]]))
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}: caller {caller} out of order: {seqs:?}"
        );
    }
    drop(handle);
    assert_clean(&machine, seed);
}
