//! Work items, DPCs, events, locks, system threads, settle and shutdown.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kmdf_sim::exec::{
    current_irql, Dpc, Event, EventKind, ExecutionLevel, Irql, SpinLock, SystemThread, Timer,
    TimerConfig, WaitLock, WaitStatus, WorkItem,
};
use kmdf_sim::{ClockMode, Machine, Status};

#[test]
fn work_items_run_fifo_at_passive_and_are_not_queued_twice() {
    let machine = Machine::builder().worker_threads(1).build();
    let log = Arc::new(Mutex::new(Vec::new()));
    let make = |name: &str| {
        let log = Arc::clone(&log);
        WorkItem::new(&machine, name, move |w| {
            assert_eq!(current_irql(), Irql::Passive);
            log.lock().unwrap().push(w.name().to_owned());
        })
    };
    let (a, b, c) = (make("a"), make("b"), make("c"));
    // Hold the only worker so the queue fills deterministically.
    let gate = Event::new(&machine, EventKind::Notification, false);
    let g = gate.clone();
    let blocker = WorkItem::new(&machine, "blocker", move |_| {
        g.wait(None);
    });
    assert!(blocker.enqueue());
    machine.settle();
    assert!(a.enqueue());
    assert!(b.enqueue());
    assert!(!a.enqueue(), "already queued: not queued again");
    assert!(c.enqueue());
    gate.set();
    machine.settle();
    assert_eq!(*log.lock().unwrap(), ["a", "b", "c"]);
    assert!(a.enqueue(), "dequeued: may be queued again");
    a.flush();
    assert_eq!(log.lock().unwrap().len(), 4);
}

#[test]
fn paused_queues_hold_work_items_and_dpcs_until_the_guard_drops() {
    let machine = Machine::new();
    let runs = Arc::new(AtomicU32::new(0));
    let (r1, r2) = (Arc::clone(&runs), Arc::clone(&runs));
    let work = WorkItem::new(&machine, "w", move |_| {
        r1.fetch_add(1, Ordering::SeqCst);
    });
    let dpc = Dpc::new(&machine, "d", move |_| {
        r2.fetch_add(10, Ordering::SeqCst);
    });
    let outer = machine.pause_queues();
    let inner = machine.pause_queues();
    assert!(work.enqueue());
    assert!(dpc.enqueue());
    machine.settle();
    machine.advance(Duration::from_secs(1));
    assert_eq!(runs.load(Ordering::SeqCst), 0, "nothing runs while paused");
    assert!(!work.enqueue(), "still queued: coalesced");
    drop(inner);
    machine.settle();
    assert_eq!(runs.load(Ordering::SeqCst), 0, "guards nest");
    drop(outer);
    machine.settle();
    assert_eq!(runs.load(Ordering::SeqCst), 11);
}

#[test]
fn dpc_is_coalesced_when_already_queued() {
    let machine = Machine::new();
    let runs = Arc::new(AtomicU32::new(0));
    let r = Arc::clone(&runs);
    let target = Arc::new(Dpc::new(&machine, "target", move |_| {
        assert_eq!(current_irql(), Irql::Dispatch);
        r.fetch_add(1, Ordering::SeqCst);
    }));
    let results = Arc::new(Mutex::new(Vec::new()));
    let (t, res) = (Arc::clone(&target), Arc::clone(&results));
    // The DPC thread is busy with `isr` while it enqueues `target` three times.
    let isr = Dpc::new(&machine, "isr", move |_| {
        let mut res = res.lock().unwrap();
        for _ in 0..3 {
            res.push(t.enqueue());
        }
    });
    assert!(isr.enqueue());
    machine.settle();
    assert_eq!(*results.lock().unwrap(), [true, false, false]);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(target.enqueue());
    machine.settle();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn timer_stop_wait_waits_for_the_running_callback() {
    let machine = Machine::new();
    let entered = Event::new(&machine, EventKind::Notification, false);
    let release = Event::new(&machine, EventKind::Notification, false);
    let finished = Arc::new(AtomicBool::new(false));
    let (en, rel, fin) = (entered.clone(), release.clone(), Arc::clone(&finished));
    let timer = Arc::new(
        Timer::new(
            &machine,
            TimerConfig::one_shot("slow").execution_level(ExecutionLevel::Passive),
            move |_| {
                en.set();
                rel.wait(None);
                fin.store(true, Ordering::SeqCst);
            },
        )
        .unwrap(),
    );
    timer.start(Duration::ZERO);
    machine.settle();
    assert!(entered.is_signaled());
    let stopped = Arc::new(AtomicBool::new(false));
    let (t, s, fin) = (
        Arc::clone(&timer),
        Arc::clone(&stopped),
        Arc::clone(&finished),
    );
    let stop_thread = SystemThread::spawn(&machine, "stopper", move || {
        assert!(!t.stop(true), "it already fired: not queued");
        assert!(
            fin.load(Ordering::SeqCst),
            "stop(wait) returned before the callback did"
        );
        s.store(true, Ordering::SeqCst);
    })
    .unwrap();
    machine.settle();
    assert!(
        !stopped.load(Ordering::SeqCst),
        "stop(wait) must still be waiting"
    );
    release.set();
    machine.settle();
    assert!(stopped.load(Ordering::SeqCst));
    assert!(stop_thread.is_terminated());
}

#[test]
fn settle_waits_for_a_chain_of_threads() {
    let machine = Machine::new();
    let go = Event::new(&machine, EventKind::Notification, false);
    let e1 = Event::new(&machine, EventKind::Synchronization, false);
    let e2 = Event::new(&machine, EventKind::Synchronization, false);
    let done = Arc::new(AtomicU32::new(0));
    let (g, a1) = (go.clone(), e1.clone());
    let t0 = SystemThread::spawn(&machine, "t0", move || {
        g.wait(None);
        a1.set();
    })
    .unwrap();
    let (b1, a2) = (e1.clone(), e2.clone());
    let t1 = SystemThread::spawn(&machine, "t1", move || {
        b1.wait(None);
        a2.set();
    })
    .unwrap();
    let (b2, d) = (e2.clone(), Arc::clone(&done));
    let t2 = SystemThread::spawn(&machine, "t2", move || {
        b2.wait(None);
        d.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    machine.settle();
    assert_eq!(done.load(Ordering::SeqCst), 0);
    assert!(!t0.is_terminated() && !t1.is_terminated() && !t2.is_terminated());
    go.set();
    machine.settle();
    assert_eq!(done.load(Ordering::SeqCst), 1);
    assert!(t0.is_terminated() && t1.is_terminated() && t2.is_terminated());
    assert!(
        !e1.is_signaled() && !e2.is_signaled(),
        "synchronization events auto-reset"
    );
}

#[test]
fn event_semantics() {
    let machine = Machine::new();
    let n = Event::new(&machine, EventKind::Notification, false);
    assert_eq!(n.wait(Some(Duration::ZERO)), WaitStatus::TimedOut);
    assert!(!n.set());
    assert!(n.set(), "set returns the previous state");
    assert_eq!(n.wait(Some(Duration::ZERO)), WaitStatus::Signaled);
    assert!(n.is_signaled(), "notification events stay signaled");
    assert!(n.reset());
    assert!(!n.reset());
    n.set();
    n.clear();
    assert!(!n.is_signaled());
    assert_eq!(WaitStatus::TimedOut.to_status(), Status::TIMEOUT);
    assert!(WaitStatus::TimedOut.to_status().is_success());

    // A synchronization event releases one waiter per set.
    let s = Event::new(&machine, EventKind::Synchronization, false);
    let woken = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..2)
        .map(|i| {
            let (s, w) = (s.clone(), Arc::clone(&woken));
            SystemThread::spawn(&machine, &format!("sync{i}"), move || {
                s.wait(None);
                w.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap()
        })
        .collect();
    machine.settle();
    s.set();
    machine.settle();
    assert_eq!(woken.load(Ordering::SeqCst), 1);
    assert!(!s.is_signaled());
    s.set();
    machine.settle();
    assert_eq!(woken.load(Ordering::SeqCst), 2);
    assert!(threads.iter().all(SystemThread::is_terminated));

    // A notification event releases every waiter.
    let all = Event::new(&machine, EventKind::Notification, false);
    let count = Arc::new(AtomicU32::new(0));
    for i in 0..3 {
        let (a, c) = (all.clone(), Arc::clone(&count));
        SystemThread::spawn(&machine, &format!("n{i}"), move || {
            a.wait(None);
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    machine.settle();
    all.set();
    machine.settle();
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[test]
fn spin_lock_raises_and_restores_irql() {
    let machine = Machine::new();
    let lock = SpinLock::new(&machine, "sl");
    assert_eq!(current_irql(), Irql::Passive);
    {
        let _g = lock.lock();
        assert_eq!(current_irql(), Irql::Dispatch);
        assert!(lock.is_held_by_current_thread());
    }
    assert_eq!(current_irql(), Irql::Passive);
    assert!(!lock.is_held_by_current_thread());
    assert!(machine.verifier().violations().is_empty());
}

#[test]
fn wait_lock_times_out_on_the_virtual_clock() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let lock = Arc::new(WaitLock::new(&machine, "wl"));
    assert_eq!(lock.acquire(None), Status::SUCCESS);
    assert_eq!(
        current_irql(),
        Irql::Passive,
        "a wait lock does not change the IRQL"
    );
    let seen = Arc::new(Mutex::new(None));
    let (l, s) = (Arc::clone(&lock), Arc::clone(&seen));
    let contender = SystemThread::spawn(&machine, "contender", move || {
        let status = l.acquire(Some(Duration::from_secs(1)));
        let now = Machine::current().unwrap().now();
        *s.lock().unwrap() = Some((status, now));
        if status == Status::SUCCESS {
            l.release();
        }
    })
    .unwrap();
    machine.advance(Duration::from_secs(2));
    assert!(contender.is_terminated());
    assert_eq!(
        *seen.lock().unwrap(),
        Some((Status::TIMEOUT, Duration::from_secs(1)))
    );
    // Released: a second contender gets it at once.
    lock.release();
    let l = Arc::clone(&lock);
    let got = SystemThread::spawn(&machine, "second", move || {
        let g = l.try_lock_for(Duration::from_secs(1));
        assert!(g.is_some());
    })
    .unwrap();
    assert_eq!(got.wait(None), WaitStatus::Signaled);
    assert!(machine.verifier().violations().is_empty());
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn shutdown_unwinds_blocked_system_threads_and_joins_workers() {
    let machine = Machine::builder().clock(ClockMode::AutoAdvance).build();
    let never = Event::new(&machine, EventKind::Notification, false);
    let dropped = Arc::new(AtomicBool::new(false));
    let d = Arc::clone(&dropped);
    let stuck = SystemThread::spawn(&machine, "stuck", move || {
        let _flag = SetOnDrop(d);
        never.wait(None);
    })
    .unwrap();
    machine.settle();
    machine.shutdown();
    assert!(stuck.is_terminated());
    assert!(dropped.load(Ordering::SeqCst), "the thread was unwound");
    assert!(machine.is_shut_down());
    assert_eq!(
        SystemThread::spawn(&machine, "late", || {}).unwrap_err(),
        Status::INVALID_DEVICE_STATE
    );
}

#[test]
fn dropping_the_last_handle_stops_the_machine() {
    let machine = Machine::new();
    let weak_flag = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&weak_flag);
    let work = WorkItem::new(&machine, "w", move |_| {
        f.store(Machine::current().is_some(), Ordering::SeqCst);
    });
    work.enqueue();
    work.flush();
    assert!(
        weak_flag.load(Ordering::SeqCst),
        "callbacks can reach their machine"
    );
    drop(work);
    drop(machine); // joins the DPC and worker threads; returning at all is the test
}

#[test]
fn extensions_are_per_machine() {
    #[derive(Default)]
    struct Devices(Mutex<Vec<String>>);
    let m1 = Machine::new();
    let m2 = Machine::new();
    m1.extension(Devices::default)
        .0
        .lock()
        .unwrap()
        .push("fx2".into());
    assert_eq!(m1.extension(Devices::default).0.lock().unwrap().len(), 1);
    assert!(m2.extension(Devices::default).0.lock().unwrap().is_empty());
}

#[test]
fn trace_records_callbacks_with_context_and_renders() {
    let machine = Machine::new();
    let _d = kmdf_sim::exec::DriverScope::enter("demo");
    let dpc = Dpc::new(&machine, "dpc0", |_| {});
    let work = WorkItem::new(&machine, "work0", |_| {});
    machine.advance(Duration::from_millis(3));
    dpc.enqueue();
    machine.settle();
    work.enqueue();
    machine.settle();
    machine.trace().note("done");
    assert_eq!(
        machine.trace().callbacks_for("demo"),
        ["EvtDpcFunc", "EvtWorkItem"]
    );
    let events = machine.trace().events();
    assert_eq!(events[0].irql, Irql::Dispatch);
    assert_eq!(events[0].thread, "dpc");
    assert_eq!(events[0].time, Duration::from_millis(3));
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    let text = machine.trace().render();
    assert!(text.contains("DISPATCH_LEVEL"), "{text}");
    assert!(text.contains("3.000"), "{text}");
    machine.trace().clear();
    assert!(machine.trace().events().is_empty());
}

#[test]
fn generic_wait_until_and_notify() {
    let machine = Machine::builder().clock(ClockMode::AutoAdvance).build();
    let _bound = machine.enter();
    let pending = Arc::new(AtomicU32::new(2));
    let p = Arc::clone(&pending);
    let timer = Timer::new(&machine, TimerConfig::periodic("completer", 5), move |_| {
        let m = Machine::current().unwrap();
        m.notify(|| {
            let _ = p.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        });
    })
    .unwrap();
    timer.start(Duration::from_millis(5));
    let status = machine.wait_until("WdfIoTargetSendIoctlSynchronously", "target", None, || {
        pending.load(Ordering::SeqCst) == 0
    });
    assert_eq!(status, WaitStatus::Signaled);
    assert_eq!(machine.now(), Duration::from_millis(10));
    let status = machine.wait_until("test", "never", Some(Duration::from_millis(7)), || false);
    assert_eq!(status, WaitStatus::TimedOut);
    assert_eq!(machine.now(), Duration::from_millis(17));
}
