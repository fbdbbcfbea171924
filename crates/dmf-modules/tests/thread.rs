//! Thread (MODS-Thread): unit tests and a stress scenario modelled on C DMF's Tests_* Modules
//! (dmf-upstream §4).
#![cfg(feature = "sim")]
#![allow(clippy::missing_panics_doc, clippy::too_many_lines)]

mod task_support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmf_core::module::{CollectionConfig, ModuleCollection, ModuleInit, NoParent};
use dmf_core::platform::contract::{EventKind, Irql, PlatformEvent, PlatformIrql};
use dmf_core::platform::{CurrentIrql, Event};
use dmf_core::NtStatus;
use dmf_modules::thread::{Thread, ThreadCallback, ThreadConfig, ThreadControl};
use kmdf_sim::exec::SystemThread;
use kmdf_sim::{ClockMode, Machine};
use task_support::{assert_clean, seed, Rng};

#[derive(Default)]
struct Counts {
    pre: AtomicU32,
    work: AtomicU32,
    post: AtomicU32,
    /// Between pre and post.
    inside: AtomicBool,
}

fn dmf_control(counts: &Arc<Counts>) -> ThreadConfig {
    let (a, b, c) = (Arc::clone(counts), Arc::clone(counts), Arc::clone(counts));
    ThreadConfig {
        control: ThreadControl::Dmf {
            pre: Some(Arc::new(move |_t: &Thread| {
                assert_eq!(CurrentIrql::current(), Irql::Passive);
                assert!(!a.inside.swap(true, Ordering::SeqCst), "pre twice");
                a.pre.fetch_add(1, Ordering::SeqCst);
            })),
            work: Arc::new(move |_t: &Thread| {
                assert_eq!(CurrentIrql::current(), Irql::Passive);
                assert!(b.inside.load(Ordering::SeqCst), "work outside pre/post");
                b.work.fetch_add(1, Ordering::SeqCst);
            }),
            post: Some(Arc::new(move |_t: &Thread| {
                assert!(c.inside.swap(false, Ordering::SeqCst), "post without pre");
                c.post.fetch_add(1, Ordering::SeqCst);
            })),
        },
    }
}

/// MODS-Thread: DMF-controlled — pre once, work per WorkReady, post at stop; restartable.
#[test]
fn mods_thread_dmf_control_pre_work_post() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let counts = Arc::new(Counts::default());
    let thread = Thread::with(dmf_control(&counts))
        .create(&NoParent)
        .unwrap();
    thread.start().unwrap();
    assert_eq!(
        thread.start(),
        Err(NtStatus::INVALID_DEVICE_STATE),
        "already running"
    );
    assert!(!thread.is_stop_pending());
    machine.settle();
    assert_eq!(counts.pre.load(Ordering::SeqCst), 1);
    thread.work_ready().unwrap();
    machine.settle();
    thread.work_ready().unwrap();
    machine.settle();
    assert_eq!(counts.work.load(Ordering::SeqCst), 2);
    thread.stop().unwrap();
    assert_eq!(counts.post.load(Ordering::SeqCst), 1);
    thread.stop().unwrap();
    thread.start().unwrap();
    machine.settle();
    assert_eq!(
        counts.work.load(Ordering::SeqCst),
        2,
        "no spurious work after restart"
    );
    thread.stop().unwrap();
    assert_eq!(counts.pre.load(Ordering::SeqCst), 2);
    assert_eq!(counts.post.load(Ordering::SeqCst), 2);
    thread.delete();
    assert_clean(&machine, 0);
}

/// MODS-Thread: client-controlled — the client loops until IsStopPending; close stops it.
#[test]
fn mods_thread_client_control_stops_on_close() {
    let machine = Machine::builder().clock(ClockMode::AutoAdvance).build();
    let _bound = machine.enter();
    let loops = Arc::new(AtomicU32::new(0));
    let function: ThreadCallback = {
        let loops = Arc::clone(&loops);
        Arc::new(move |thread: &Thread| {
            let nap = Event::new(EventKind::Notification, false).unwrap();
            while !thread.is_stop_pending() {
                loops.fetch_add(1, Ordering::SeqCst);
                let _ = nap.wait(Some(Duration::from_millis(10)));
            }
        })
    };
    let mut init = ModuleInit::new();
    let token = init.add(Thread::with(ThreadConfig {
        control: ThreadControl::Client { function },
    }));
    let device = ModuleCollection::create(init, CollectionConfig::default()).unwrap();
    let thread = device.get(token).unwrap();
    thread.start().unwrap();
    let nap = Event::new(EventKind::Notification, false).unwrap();
    let _ = nap.wait(Some(Duration::from_millis(100)));
    assert!(loops.load(Ordering::SeqCst) >= 5);
    device.destroy();
    assert!(thread.is_stop_pending(), "closed");
    assert_eq!(thread.start(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(thread.work_ready(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(thread.stop(), Err(NtStatus::INVALID_DEVICE_STATE));
    drop(thread);
    assert_clean(&machine, 0);
}

/// MODS-Thread: close of a running DMF-controlled thread runs post and joins the thread; no
/// reference cycle remains.
#[test]
fn mods_thread_close_joins_running_thread() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let counts = Arc::new(Counts::default());
    let thread = Thread::with(dmf_control(&counts))
        .create(&NoParent)
        .unwrap();
    thread.start().unwrap();
    thread.work_ready().unwrap();
    let probe = Arc::downgrade(&counts);
    thread.delete();
    assert_eq!(counts.post.load(Ordering::SeqCst), 1);
    drop(counts);
    assert!(
        probe.upgrade().is_none(),
        "the config's callbacks were released"
    );
    assert_clean(&machine, 0);
}

/// MODS-Thread stress: system threads start / stop / work-ready / poll at random while one of them
/// closes the Module. Invariants: pre and post alternate and balance, work only between them, all
/// at PASSIVE_LEVEL; after close every Method fails with STATUS_INVALID_DEVICE_STATE and
/// `is_stop_pending` is true; no thread left running, no verifier violation.
#[test]
fn mods_thread_stress_concurrent_callers_and_close() {
    for round in 0..4u64 {
        stress(seed("mods_thread_stress", 0x7EAD_0000 + round));
    }
}

fn stress(seed: u64) {
    const CALLERS: u8 = 3;
    const ITERATIONS: u32 = 120;
    let machine = Machine::new();
    let _bound = machine.enter();
    let counts = Arc::new(Counts::default());
    let owner = Arc::new(Mutex::new(Some(
        Thread::with(dmf_control(&counts))
            .create(&NoParent)
            .unwrap(),
    )));
    let handle = owner
        .lock()
        .unwrap()
        .as_ref()
        .map(|m| (**m).clone())
        .unwrap();
    let close_at = u32::try_from(Rng::new(seed).below(u64::from(ITERATIONS))).unwrap();
    let closed = Arc::new(AtomicBool::new(false));
    let starts = Arc::new(AtomicU32::new(0));
    let threads: Vec<SystemThread> = (0..CALLERS)
        .map(|caller| {
            let (handle, owner, closed, starts) = (
                handle.clone(),
                Arc::clone(&owner),
                Arc::clone(&closed),
                Arc::clone(&starts),
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
                    let result = match rng.below(6) {
                        0 => handle.start().inspect(|()| {
                            starts.fetch_add(1, Ordering::SeqCst);
                        }),
                        1 => handle.stop(),
                        2 => {
                            let pending = handle.is_stop_pending();
                            assert!(!was_closed || pending, "seed {seed}");
                            Ok(())
                        }
                        _ => handle.work_ready(),
                    };
                    if let Err(status) = result {
                        assert_eq!(status, NtStatus::INVALID_DEVICE_STATE, "seed {seed}");
                    }
                    if was_closed {
                        assert_eq!(
                            handle.work_ready(),
                            Err(NtStatus::INVALID_DEVICE_STATE),
                            "seed {seed}"
                        );
                    }
                }
            })
            .unwrap()
        })
        .collect();
    for thread in &threads {
        thread.wait(None);
    }
    let starts = starts.load(Ordering::SeqCst);
    assert_eq!(counts.pre.load(Ordering::SeqCst), starts, "seed {seed}");
    assert_eq!(counts.post.load(Ordering::SeqCst), starts, "seed {seed}");
    assert!(
        !counts.inside.load(Ordering::SeqCst),
        "seed {seed}: a thread still runs"
    );
    drop(handle);
    assert_clean(&machine, seed);
}
