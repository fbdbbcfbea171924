//! The platform contract on the `sim` backend, and what dmf-core builds on it: module locks and
//! rundown protection running on a simulated machine, under its IRQL rules, virtual clock,
//! pool tracking and verifier.
#![cfg(feature = "sim")]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dmf_core::platform::contract::{
    EventKind, Irql, PlatformClock, PlatformEvent, PlatformIrql, PlatformPool, PlatformSpinLock,
    PlatformTrace, PlatformWaitLock, PoolTag, TraceLevel, WaitStatus,
};
use dmf_core::platform::{Clock, CurrentIrql, Event, Pool, RundownRef, SpinLock, Trace, WaitLock};
use dmf_core::sync::{AuxiliaryLocks, LockKind, ModuleLock, ModuleOptions};
use dmf_core::NtStatus;
use kmdf_sim::exec::{SystemThread, WaitStatus as SimWait};
use kmdf_sim::{ClockMode, Machine, Rule, VerifierMode};

fn spawn(machine: &Machine, name: &str, f: impl FnOnce() + Send + 'static) -> SystemThread {
    SystemThread::spawn(machine, name, f).expect("system thread")
}

#[test]
fn lock_kind_follows_the_module_options() {
    use LockKind::{Spin, Wait};
    let cases = [
        (ModuleOptions::PASSIVE, false, Ok(Wait)),
        (ModuleOptions::PASSIVE, true, Ok(Wait)),
        (ModuleOptions::DISPATCH, false, Ok(Spin)),
        (
            ModuleOptions::DISPATCH,
            true,
            Err(NtStatus::INVALID_PARAMETER),
        ),
        (ModuleOptions::DISPATCH_MAXIMUM, false, Ok(Spin)),
        (ModuleOptions::DISPATCH_MAXIMUM, true, Ok(Wait)),
        (
            ModuleOptions::empty(),
            false,
            Err(NtStatus::INVALID_PARAMETER),
        ),
        (
            ModuleOptions::PASSIVE | ModuleOptions::DISPATCH,
            false,
            Err(NtStatus::INVALID_PARAMETER),
        ),
        (
            ModuleOptions::DISPATCH_MAXIMUM | ModuleOptions::TRANSPORT_REQUIRED,
            true,
            Ok(Wait),
        ),
    ];
    for (options, passive, expected) in cases {
        assert_eq!(
            LockKind::for_module(options, passive),
            expected,
            "{options:?} passive={passive}"
        );
    }
}

#[test]
fn spin_module_lock_raises_to_dispatch_and_restores() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let lock = ModuleLock::new(LockKind::Spin, 7_u32).unwrap();
    assert_eq!(CurrentIrql::current(), Irql::Passive);
    {
        let mut guard = lock.lock();
        assert_eq!(CurrentIrql::current(), Irql::Dispatch);
        *guard += 1;
    }
    assert_eq!(CurrentIrql::current(), Irql::Passive);
    assert_eq!(lock.into_inner(), 8);
    assert!(machine.verifier().violations().is_empty());
}

#[test]
fn wait_module_lock_stays_at_passive() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let lock = ModuleLock::new(LockKind::Wait, String::from("ctx")).unwrap();
    let guard = lock.lock();
    assert_eq!(CurrentIrql::current(), Irql::Passive);
    assert_eq!(guard.as_str(), "ctx");
    drop(guard);
    assert_eq!(lock.kind(), LockKind::Wait);
}

#[test]
fn verifier_wait_module_lock_at_dispatch_is_caught() {
    let machine = Machine::builder().verifier(VerifierMode::Record).build();
    let _bound = machine.enter();
    let outer = ModuleLock::new(LockKind::Spin, ()).unwrap();
    let passive_only = ModuleLock::new(LockKind::Wait, ()).unwrap();
    let spin = outer.lock(); // now at DISPATCH_LEVEL
    drop(passive_only.lock()); // a wait lock may not be taken here
    drop(spin);
    let violations = machine.verifier().violations();
    assert!(
        violations
            .iter()
            .any(|v| v.rule == Rule::IrqlTooHigh && v.message.contains("WdfWaitLockAcquire")),
        "{violations:?}"
    );
}

#[test]
fn module_lock_excludes_concurrent_holders() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let lock = Arc::new(ModuleLock::new(LockKind::Spin, 0_u64).unwrap());
    let threads: Vec<_> = (0..3)
        .map(|i| {
            let lock = Arc::clone(&lock);
            spawn(&machine, &format!("incrementer-{i}"), move || {
                for _ in 0..500 {
                    let mut guard = lock.lock();
                    let seen = *guard;
                    std::hint::spin_loop();
                    *guard = seen + 1;
                }
            })
        })
        .collect();
    for thread in &threads {
        assert_eq!(thread.wait(None), SimWait::Signaled);
    }
    assert_eq!(*lock.lock(), 1500);
    assert!(machine.verifier().violations().is_empty());
}

#[test]
fn auxiliary_locks_are_bounded_and_indexed() {
    let machine = Machine::new();
    let _bound = machine.enter();
    assert_eq!(
        AuxiliaryLocks::new(LockKind::Spin, 5).unwrap_err(),
        NtStatus::INVALID_PARAMETER
    );
    let aux = AuxiliaryLocks::new(LockKind::Wait, 4).unwrap();
    assert_eq!(aux.count(), 4);
    drop(aux.lock(3).unwrap());
    assert_eq!(aux.lock(4).err(), Some(NtStatus::INVALID_PARAMETER));
    let none = AuxiliaryLocks::new(LockKind::Spin, 0).unwrap();
    assert_eq!(none.lock(0).err(), Some(NtStatus::INVALID_PARAMETER));
}

#[test]
fn locks_and_pool_need_a_machine() {
    // A thread bound to no simulated machine: the checks cannot run, so creation is refused.
    assert_eq!(SpinLock::new().err(), Some(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(WaitLock::new().err(), Some(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(
        Pool::allocate(PoolTag(*b"Test"), 16).err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    assert!(ModuleLock::new(LockKind::Spin, ()).is_err());
}

#[test]
fn events_work_on_the_virtual_clock() {
    let machine = Machine::builder().clock(ClockMode::AutoAdvance).build();
    let _bound = machine.enter();
    let event = Event::new(EventKind::Synchronization, false).unwrap();
    let real = Instant::now();
    // A 10-minute wait that nobody satisfies times out on the virtual clock at once.
    assert_eq!(
        event.wait(Some(Duration::from_mins(10))),
        WaitStatus::TimedOut
    );
    assert_eq!(Clock::now(), Duration::from_mins(10));
    assert!(real.elapsed() < Duration::from_secs(10));
    assert!(!event.set());
    assert!(event.is_signaled());
    assert_eq!(event.wait(Some(Duration::ZERO)), WaitStatus::Signaled);
    assert!(
        !event.is_signaled(),
        "a synchronization event resets on a satisfied wait"
    );
}

#[test]
fn events_outside_a_machine_use_the_wall_clock() {
    let event = Event::new(EventKind::Notification, false).unwrap();
    assert_eq!(
        event.wait(Some(Duration::from_millis(1))),
        WaitStatus::TimedOut
    );
    assert!(!event.set());
    assert!(event.set(), "already signalled");
    assert_eq!(event.wait(None), WaitStatus::Signaled);
    assert!(event.is_signaled(), "a notification event stays signalled");
    event.clear();
    assert!(!event.is_signaled());
}

#[test]
fn pool_allocations_are_tagged_and_tracked() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let mut block = Pool::allocate(PoolTag(*b"DmfT"), 64).unwrap();
    assert_eq!(block.as_ref().len(), 64);
    assert!(block.as_ref().iter().all(|&b| b == 0));
    block.as_mut()[0] = 1;
    let usage = machine.pool().outstanding_by_tag(None);
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].tag.0, *b"DmfT");
    assert_eq!(usage[0].bytes, 64);
    drop(block);
    assert!(machine.pool().outstanding().is_empty());
}

#[test]
fn pool_allocation_failure_is_injectable() {
    let machine = Machine::new();
    let _bound = machine.enter();
    machine
        .faults()
        .fail_nth(kmdf_sim::fault::FaultPoint::Allocation, 2);
    let first = Pool::allocate(PoolTag(*b"DmfA"), 8);
    let second = Pool::allocate(PoolTag(*b"DmfA"), 8);
    assert!(first.is_ok());
    assert_eq!(second.err(), Some(NtStatus::INSUFFICIENT_RESOURCES));
}

#[test]
fn trace_messages_reach_the_machine_trace() {
    let machine = Machine::new();
    let _bound = machine.enter();
    Trace::trace(
        TraceLevel::Warning,
        "RingBuffer",
        format_args!("full at {} items", 8),
    );
    let texts: Vec<String> = machine
        .trace()
        .events()
        .into_iter()
        .map(|e| e.text)
        .collect();
    assert!(
        texts.iter().any(|t| t == "[WARNING] full at 8 items"),
        "{texts:?}"
    );
}

/// EX-06 / RD-20 on the simulator: the closer blocks on the machine's event (not a poll) until the
/// holder — a system thread that sleeps for a minute of virtual time — drops its guard.
#[test]
fn rundown_waits_for_a_holder_on_the_virtual_clock() {
    let machine = Machine::builder().clock(ClockMode::AutoAdvance).build();
    let _bound = machine.enter();
    let rundown = Arc::new(RundownRef::new().unwrap());
    let entered = Arc::new(Event::new(EventKind::Notification, false).unwrap());
    let released = Arc::new(AtomicBool::new(false));
    let holder = {
        let (rundown, entered, released) = (
            Arc::clone(&rundown),
            Arc::clone(&entered),
            Arc::clone(&released),
        );
        spawn(&machine, "method-caller", move || {
            let guard = rundown.reference().expect("open");
            entered.set();
            let nap = Event::new(EventKind::Notification, false).unwrap();
            assert_eq!(nap.wait(Some(Duration::from_mins(1))), WaitStatus::TimedOut);
            released.store(true, Ordering::SeqCst);
            drop(guard);
        })
    };
    assert_eq!(entered.wait(None), WaitStatus::Signaled);
    let real = Instant::now();
    rundown.wait_for_release();
    assert!(
        released.load(Ordering::SeqCst),
        "returned only after the guard was dropped"
    );
    assert_eq!(Clock::now(), Duration::from_mins(1));
    assert!(real.elapsed() < Duration::from_secs(10));
    assert_eq!(
        rundown.reference().err(),
        Some(NtStatus::INVALID_DEVICE_STATE),
        "EX-05"
    );
    assert_eq!(holder.wait(None), SimWait::Signaled);
}

/// Guards may be taken and dropped at DISPATCH_LEVEL (RD-19): under a held spin lock.
#[test]
fn rundown_acquire_and_release_at_dispatch() {
    let machine = Machine::builder().verifier(VerifierMode::Record).build();
    let _bound = machine.enter();
    let rundown = RundownRef::new().unwrap();
    let lock = ModuleLock::new(LockKind::Spin, ()).unwrap();
    let counter = AtomicU64::new(0);
    {
        let _spin = lock.lock();
        assert_eq!(CurrentIrql::current(), Irql::Dispatch);
        let guard = rundown.reference().unwrap();
        counter.fetch_add(1, Ordering::Relaxed);
        drop(guard);
    }
    rundown.wait_for_release();
    assert_eq!(counter.load(Ordering::Relaxed), 1);
    assert!(machine.verifier().violations().is_empty());
}
