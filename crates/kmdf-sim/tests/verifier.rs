//! One test per verifier rule, each on a deliberately faulty "driver", in Record mode.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kmdf_sim::exec::{
    raise_irql, Dpc, DriverScope, Event, EventKind, ExecutionLevel, Irql, SpinLock, SystemThread,
    Timer, TimerConfig, WaitLock, WaitStatus, WorkItem,
};
use kmdf_sim::verifier::invoke_callback;
use kmdf_sim::{Machine, Rule, VerifierMode, Violation};

fn recording() -> Machine {
    Machine::builder().verifier(VerifierMode::Record).build()
}

fn only(machine: &Machine, rule: Rule) -> Violation {
    let v = machine.verifier().violations_of(rule);
    assert_eq!(v.len(), 1, "{:#?}", machine.verifier().violations());
    v.into_iter().next().unwrap()
}

#[test]
fn verifier_wait_at_dispatch() {
    let machine = recording();
    let ev = Event::named(&machine, "ready", EventKind::Notification, false);
    let result = Arc::new(Mutex::new(None));
    let r = Arc::clone(&result);
    let _d = DriverScope::enter("faulty");
    let dpc = Dpc::new(&machine, "dpc", move |_| {
        *r.lock().unwrap() = Some(ev.wait(Some(Duration::from_secs(1))));
    });
    dpc.enqueue();
    machine.settle();
    let v = only(&machine, Rule::WaitAtDispatch);
    assert_eq!(v.driver, "faulty");
    assert_eq!(v.object, "ready");
    assert!(
        v.message
            .contains("KeWaitForSingleObject with a nonzero timeout called at DISPATCH_LEVEL"),
        "{v}"
    );
    assert_eq!(
        *result.lock().unwrap(),
        Some(WaitStatus::TimedOut),
        "degrades to a test"
    );
    assert_eq!(machine.now(), Duration::ZERO);
}

#[test]
fn verifier_passive_routine_at_dispatch() {
    let machine = recording();
    let lock = WaitLock::new(&machine, "state");
    let _d = DriverScope::enter("faulty");
    let dpc = Dpc::new(&machine, "dpc", move |_| {
        let _ = lock.acquire(None);
    });
    dpc.enqueue();
    machine.settle();
    let v = only(&machine, Rule::IrqlTooHigh);
    assert_eq!(v.driver, "faulty");
    assert_eq!(
        v.message,
        "WdfWaitLockAcquire called at DISPATCH_LEVEL; allowed ≤ PASSIVE_LEVEL"
    );
    assert!(v.to_string().starts_with(
        "DRIVER_VERIFIER_DETECTED_VIOLATION: IrqlTooHigh: driver 'faulty', object 'WdfWaitLockAcquire': "
    ));
}

#[test]
fn verifier_spin_lock_released_on_other_thread() {
    let machine = recording();
    let lock = Arc::new(SpinLock::new(&machine, "queue-lock"));
    let _bound = machine.enter();
    let _d = DriverScope::enter("faulty");
    // A system thread of the driver acquires the lock (and ends holding it) …
    let l = Arc::clone(&lock);
    let t = SystemThread::spawn(&machine, "acquirer", move || l.acquire()).unwrap();
    assert_eq!(t.wait(None), WaitStatus::Signaled);
    // … and the driver releases it on another thread.
    lock.release();
    let v = only(&machine, Rule::LockReleasedByOtherThread);
    assert_eq!(v.driver, "faulty");
    assert_eq!(v.object, "queue-lock");
    assert!(
        v.message.contains(&format!(
            "WdfSpinLockRelease on spin lock 'queue-lock' by thread '{}', but another thread \
             acquired it",
            kmdf_sim::exec::thread_name()
        )),
        "{v}"
    );
    assert_eq!(kmdf_sim::exec::current_irql(), Irql::Passive, "no effect");
}

#[test]
fn verifier_spin_lock_not_held() {
    let machine = recording();
    let lock = SpinLock::new(&machine, "sl");
    let _bound = machine.enter();
    let _d = DriverScope::enter("faulty");
    lock.release();
    let v = only(&machine, Rule::LockNotHeld);
    assert_eq!(v.driver, "faulty");
    assert!(
        v.message.contains("spin lock 'sl', which is not held"),
        "{v}"
    );
}

#[test]
fn verifier_recursive_acquire() {
    let machine = recording();
    let lock = SpinLock::new(&machine, "sl");
    let _bound = machine.enter();
    let _d = DriverScope::enter("faulty");
    lock.acquire();
    lock.acquire();
    let v = only(&machine, Rule::LockRecursiveAcquire);
    assert!(v.message.contains("already holds it"), "{v}");
    lock.release();
    assert_eq!(kmdf_sim::exec::current_irql(), Irql::Passive);
    assert_eq!(machine.verifier().violations().len(), 1);
}

#[test]
fn verifier_wait_lock_released_on_other_thread() {
    let machine = recording();
    let lock = Arc::new(WaitLock::new(&machine, "wl"));
    let _bound = machine.enter();
    let _d = DriverScope::enter("faulty");
    let _ = lock.acquire(None);
    let l = Arc::clone(&lock);
    let t = SystemThread::spawn(&machine, "other", move || l.release()).unwrap();
    t.wait(None);
    let v = only(&machine, Rule::LockReleasedByOtherThread);
    assert!(v.message.contains("wait lock 'wl'"), "{v}");
    lock.release();
}

#[test]
fn verifier_lock_held_on_callback_return() {
    let machine = recording();
    let lock = Arc::new(WaitLock::new(&machine, "state"));
    let l = Arc::clone(&lock);
    let _d = DriverScope::enter("faulty");
    let work = WorkItem::new(&machine, "work", move |_| {
        let _ = l.acquire(None); // and forgets to release
    });
    work.enqueue();
    machine.settle();
    let v = only(&machine, Rule::LockHeldOnCallbackReturn);
    assert_eq!(v.driver, "faulty");
    assert_eq!(v.object, "work");
    assert!(
        v.message
            .contains("EvtWorkItem returned while still holding wait lock 'state'"),
        "{v}"
    );
}

#[test]
fn verifier_irql_not_restored_on_callback_return() {
    let machine = recording();
    let _bound = machine.enter();
    invoke_callback("faulty", "device", "EvtDeviceD0Entry", || {
        raise_irql(Irql::Dispatch);
    });
    let v = only(&machine, Rule::IrqlNotRestoredOnCallbackReturn);
    assert_eq!(v.driver, "faulty");
    assert_eq!(v.object, "device");
    assert!(
        v.message.contains(
            "EvtDeviceD0Entry returned at DISPATCH_LEVEL but was called at PASSIVE_LEVEL"
        ),
        "{v}"
    );
    assert_eq!(kmdf_sim::exec::current_irql(), Irql::Passive, "put back");
}

#[test]
fn verifier_spin_lock_held_on_callback_return_in_dpc() {
    let machine = recording();
    let lock = Arc::new(SpinLock::new(&machine, "leaked"));
    let l = Arc::clone(&lock);
    let _d = DriverScope::enter("faulty");
    let dpc = Dpc::new(&machine, "dpc", move |_| l.acquire());
    dpc.enqueue();
    machine.settle();
    let v = only(&machine, Rule::LockHeldOnCallbackReturn);
    assert!(v
        .message
        .contains("EvtDpcFunc returned while still holding spin lock 'leaked'"));
}

/// More locks than the thread's inline held-lock list keeps (8), released out of order: the
/// held-on-return report names exactly the locks left held, in acquisition order; once they are
/// released they are off the list (a callback that takes them again is reported again).
#[test]
fn verifier_many_locks_held_released_out_of_order() {
    let machine = recording();
    let _bound = machine.enter();
    let locks: Vec<SpinLock> = (0..11)
        .map(|i| SpinLock::new(&machine, &format!("l{i}")))
        .collect();
    let leaked = |v: &Violation| {
        v.message.contains(
            "EvtDeviceD0Entry returned while still holding spin lock 'l3', spin lock 'l9';",
        )
    };
    invoke_callback("faulty", "device", "EvtDeviceD0Entry", || {
        for lock in &locks {
            lock.acquire();
        }
        // Lock 0 last: it restores the IRQL the callback was called at.
        for i in [10, 5, 8, 1, 7, 2, 4, 6, 0] {
            locks[i].release();
        }
    });
    let v = only(&machine, Rule::LockHeldOnCallbackReturn);
    assert!(leaked(&v), "{v}");
    locks[9].release();
    locks[3].release();
    kmdf_sim::exec::lower_irql(Irql::Passive);
    invoke_callback("faulty", "device", "EvtDeviceD0Entry", || {
        locks[3].acquire();
        locks[9].acquire();
        locks[4].acquire();
        locks[4].release();
    });
    let v = machine
        .verifier()
        .violations_of(Rule::LockHeldOnCallbackReturn);
    assert_eq!(v.len(), 2, "{v:#?}");
    assert!(leaked(&v[1]), "{}", v[1]);
    assert_eq!(
        machine.verifier().violations().len(),
        3,
        "and the IRQL left raised"
    );
    locks[9].release();
    locks[3].release();
}

#[test]
fn verifier_timer_stop_wait_in_own_callback() {
    let machine = recording();
    let stopped = Arc::new(Mutex::new(None));
    let s = Arc::clone(&stopped);
    let _d = DriverScope::enter("faulty");
    let timer = Timer::new(
        &machine,
        TimerConfig::one_shot("watchdog").execution_level(ExecutionLevel::Passive),
        move |t| {
            *s.lock().unwrap() = Some(t.stop(true));
        },
    )
    .unwrap();
    timer.start(Duration::from_millis(1));
    machine.advance(Duration::from_millis(1));
    let v = only(&machine, Rule::TimerStopWaitInOwnCallback);
    assert_eq!(v.driver, "faulty");
    assert_eq!(v.object, "watchdog");
    assert!(
        v.message
            .contains("from the EvtTimerFunc of timer 'watchdog' itself"),
        "{v}"
    );
    assert_eq!(
        *stopped.lock().unwrap(),
        Some(false),
        "returned without deadlock"
    );
}

#[test]
fn verifier_timer_stop_wait_at_dispatch() {
    let machine = recording();
    let _d = DriverScope::enter("faulty");
    let timer = Timer::new(&machine, TimerConfig::one_shot("t"), |t| {
        t.stop(true);
    })
    .unwrap();
    timer.start(Duration::ZERO);
    machine.settle();
    let v = only(&machine, Rule::IrqlTooHigh);
    assert_eq!(
        v.message,
        "WdfTimerStop(Wait = TRUE) called at DISPATCH_LEVEL; allowed ≤ PASSIVE_LEVEL"
    );
}

#[test]
fn verifier_deleted_object_used() {
    let machine = recording();
    let _d = DriverScope::enter("faulty");
    let timer = Timer::new(&machine, TimerConfig::one_shot("gone"), |_| {}).unwrap();
    timer.delete();
    assert!(!timer.start(Duration::from_millis(1)));
    let work = WorkItem::new(&machine, "gone-work", |_| {});
    work.delete();
    assert!(!work.enqueue());
    let v = machine.verifier().violations_of(Rule::DeletedObjectUsed);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].driver, "faulty");
    assert_eq!(
        v[0].message,
        "WdfTimerStart called on 'gone' after the object was deleted"
    );
    assert_eq!(v[1].object, "gone-work");
}

#[test]
fn verifier_invalid_irql_transition() {
    let machine = recording();
    let _bound = machine.enter();
    let _d = DriverScope::enter("faulty");
    kmdf_sim::exec::lower_irql(Irql::Dispatch);
    let v = only(&machine, Rule::InvalidIrqlTransition);
    assert!(v
        .message
        .contains("KeLowerIrql to DISPATCH_LEVEL called at PASSIVE_LEVEL"));
    assert_eq!(kmdf_sim::exec::current_irql(), Irql::Passive);
}

#[test]
fn verifier_pool_leak_listed_by_tag() {
    let machine = recording();
    let pool = machine.pool();
    let kept = {
        let _d = DriverScope::enter("leaky");
        let a = pool.allocate(b"DmfB", 16).unwrap();
        let b = pool.allocate(b"DmfB", 32).unwrap();
        let c = pool.allocate(b"DmfX", 8).unwrap();
        pool.allocate(b"DmfY", 100).unwrap().free();
        (a, b, c)
    };
    let other = {
        let _d = DriverScope::enter("tidy");
        pool.allocate(b"Tidy", 4).unwrap()
    };
    let leaks = pool.check_leaks("leaky");
    assert_eq!(leaks.len(), 2);
    let v = only(&machine, Rule::PoolLeak);
    assert_eq!(v.driver, "leaky");
    assert_eq!(
        v.message,
        "3 pool allocation(s) still outstanding at driver unload: \
         tag 'DmfB': 2 block(s), 48 bytes; tag 'DmfX': 1 block(s), 8 bytes"
    );
    drop(other);
    assert!(pool.check_leaks("tidy").is_empty());
    drop(kept);
    assert!(pool.outstanding().is_empty());
}

#[test]
fn verifier_panic_mode_bug_checks_at_the_point_of_the_bug() {
    let machine = Machine::new(); // Panic mode is the default
    let _bound = machine.enter();
    let ev = Event::named(&machine, "ready", EventKind::Notification, false);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _d = DriverScope::enter("crashy");
        let _irql = kmdf_sim::exec::IrqlGuard::raise(Irql::Dispatch);
        ev.wait(None);
    }));
    let payload = caught.expect_err("a violation in Panic mode is a bug check");
    let text = payload.downcast_ref::<String>().unwrap();
    assert!(
        text.starts_with(
            "DRIVER_VERIFIER_DETECTED_VIOLATION: WaitAtDispatch: driver 'crashy', object 'ready': "
        ),
        "{text}"
    );
    assert_eq!(
        machine.verifier().violations().len(),
        1,
        "recorded before panicking"
    );
    assert_eq!(kmdf_sim::exec::current_irql(), Irql::Passive);
}

#[test]
fn verifier_panic_in_a_callback_crashes_the_machine() {
    let machine = Machine::new();
    let ev = Event::named(&machine, "ready", EventKind::Notification, false);
    let _d = DriverScope::enter("crashy");
    let dpc = Dpc::new(&machine, "dpc", move |_| {
        ev.wait(None);
    });
    dpc.enqueue();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| machine.settle()));
    let payload = caught.expect_err("settle reports the bug check");
    let text = payload.downcast_ref::<String>().unwrap();
    assert!(
        text.contains("DRIVER_VERIFIER_DETECTED_VIOLATION: WaitAtDispatch: driver 'crashy'"),
        "{text}"
    );
    assert!(machine.crash().is_some());
}
