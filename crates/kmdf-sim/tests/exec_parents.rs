//! Timers and work items as children of a device (`WdfTimerCreate` / `WdfWorkItemCreate` with a
//! `ParentObject`, kmdf-sequences §8.1, §8.2, §2.10): the framework deletes them with their device,
//! the owner's later delete is harmless, and a parent that is missing, not a device or already
//! deleted is refused.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kmdf_sim::device::Device;
use kmdf_sim::driver::{self, DriverConfig};
use kmdf_sim::exec::{
    DriverScope, Event, EventKind, ExecutionLevel, SystemThread, Timer, TimerConfig, WorkItem,
};
use kmdf_sim::object::{live_objects, ObjectAttributes, ObjectState, WdfObject};
use kmdf_sim::pnp::{DeviceNode, StackSpec};
use kmdf_sim::{Machine, Rule, Status, VerifierMode};

type Log = Arc<Mutex<Vec<String>>>;

/// Installs driver "par", whose device add creates a device (its cleanup logged as
/// `cleanup device <n>`) and keeps it in the returned list.
fn install(machine: &Machine, log: &Log) -> Arc<Mutex<Vec<Device>>> {
    let devices: Arc<Mutex<Vec<Device>>> = Arc::default();
    let (d, l) = (Arc::clone(&devices), Arc::clone(log));
    driver::install(
        machine,
        "par",
        DriverConfig::new(move |_driver, init| {
            let mut list = d.lock().unwrap();
            let n = list.len();
            let l = Arc::clone(&l);
            let device = Device::create(
                init,
                ObjectAttributes::new()
                    .on_cleanup(move |_| l.lock().unwrap().push(format!("cleanup device {n}"))),
            )?;
            list.push(device);
            Ok(())
        }),
    );
    devices
}

/// Plugs in one device of "par" and returns its node and device.
fn plug(machine: &Machine, devices: &Arc<Mutex<Vec<Device>>>, id: &str) -> (DeviceNode, Device) {
    let node = machine
        .pnp()
        .plug_in(StackSpec::new(id, "par"))
        .expect("the device starts");
    let device = devices.lock().unwrap().last().cloned().unwrap();
    (node, device)
}

/// Attributes parented to `parent` whose cleanup is logged as `cleanup <name>`.
fn child_of(parent: &WdfObject, log: &Log, name: &str) -> ObjectAttributes {
    let (l, n) = (Arc::clone(log), name.to_owned());
    ObjectAttributes::new()
        .parent(parent)
        .on_cleanup(move |_| l.lock().unwrap().push(format!("cleanup {n}")))
}

/// A periodic timer (every 10 ms) of `device` counting its runs.
fn ticking(device: &Device, log: &Log, name: &str, runs: &Arc<AtomicU32>) -> Timer {
    let r = Arc::clone(runs);
    Timer::create(
        TimerConfig::periodic(name, 10),
        child_of(device.object(), log, name),
        move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        },
    )
    .expect("a timer parented to a live device")
}

/// A work item of `device` counting its runs.
fn counting(device: &Device, log: &Log, name: &str, runs: &Arc<AtomicU32>) -> WorkItem {
    let r = Arc::clone(runs);
    WorkItem::create(name, child_of(device.object(), log, name), move |_| {
        r.fetch_add(1, Ordering::SeqCst);
    })
    .expect("a work item parented to a live device")
}

/// Device A's removal deletes A's timer and work item (stopped, a queued run skipped, their
/// cleanup before the device's, both destroyed) while B's keep working; the owners' later delete
/// and drop are harmless (no violation, no second cleanup) and nothing is left at the end.
#[test]
fn timers_and_work_items_are_deleted_with_their_device_only() {
    let machine = Machine::builder().verifier(VerifierMode::Record).build();
    let log: Log = Arc::default();
    let devices = install(&machine, &log);
    let (node_a, dev_a) = plug(&machine, &devices, "ROOT\\PAR\\A");
    let (node_b, dev_b) = plug(&machine, &devices, "ROOT\\PAR\\B");
    let _driver = DriverScope::enter("par");
    let (ticks_a, ticks_b) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (work_a, work_b) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let timer_a = ticking(&dev_a, &log, "timer A", &ticks_a);
    let item_a = counting(&dev_a, &log, "work A", &work_a);
    let timer_b = ticking(&dev_b, &log, "timer B", &ticks_b);
    let item_b = counting(&dev_b, &log, "work B", &work_b);
    assert_eq!(timer_a.object().unwrap().kind(), "WDFTIMER");
    assert_eq!(item_a.object().unwrap().kind(), "WDFWORKITEM");
    assert_eq!(
        timer_a.object().unwrap().parent().as_ref(),
        Some(dev_a.object())
    );
    assert_eq!(dev_a.object().children().len(), 2);

    timer_a.start(Duration::from_millis(10));
    timer_b.start(Duration::from_millis(10));
    machine.advance(Duration::from_millis(30));
    assert_eq!(ticks_a.load(Ordering::SeqCst), 3);
    assert_eq!(ticks_b.load(Ordering::SeqCst), 3);

    // A's work item is still queued when A goes away: the framework skips that run.
    let paused = machine.pause_queues();
    assert!(item_a.enqueue());
    node_a.remove().unwrap();
    drop(paused);
    machine.settle();
    assert_eq!(
        work_a.load(Ordering::SeqCst),
        0,
        "a deleted item's queued run is skipped"
    );
    assert!(timer_a.is_deleted() && item_a.is_deleted());
    assert!(!timer_a.is_queued(), "the framework stopped A's timer");
    assert_eq!(timer_a.object().unwrap().state(), ObjectState::Destroyed);
    assert_eq!(item_a.object().unwrap().state(), ObjectState::Destroyed);
    assert_eq!(
        *log.lock().unwrap(),
        ["cleanup work A", "cleanup timer A", "cleanup device 0"],
        "children (newest first) are cleaned up before their device"
    );

    // B is untouched: its timer keeps ticking, its work item runs.
    machine.advance(Duration::from_millis(30));
    assert_eq!(
        ticks_a.load(Ordering::SeqCst),
        3,
        "A's timer no longer fires"
    );
    assert_eq!(ticks_b.load(Ordering::SeqCst), 6);
    assert!(item_b.enqueue());
    item_b.flush();
    assert_eq!(work_b.load(Ordering::SeqCst), 1);
    assert!(!timer_b.is_deleted() && !item_b.is_deleted());

    // The owners delete A's objects late: nothing happens, nothing is reported.
    timer_a.delete();
    drop(timer_a);
    drop(item_a);
    assert!(
        machine.verifier().violations().is_empty(),
        "{:?}",
        machine.verifier().violations()
    );
    assert_eq!(log.lock().unwrap().len(), 3, "no second cleanup");

    // B's owners delete theirs before B goes: the usual order, each cleaned up once.
    drop(timer_b);
    drop(item_b);
    node_b.remove().unwrap();
    assert_eq!(
        log.lock().unwrap()[3..],
        ["cleanup timer B", "cleanup work B", "cleanup device 1"]
    );
    assert!(machine.verifier().violations().is_empty());
    assert!(
        live_objects(&machine).is_empty(),
        "{:?}",
        live_objects(&machine)
    );
}

/// Removing a device waits for a running work-item callback of the device before the item's
/// cleanup callback and the device's (D50).
#[test]
fn device_removal_waits_for_a_running_work_item_callback() {
    let machine = Machine::builder().verifier(VerifierMode::Record).build();
    let log: Log = Arc::default();
    let devices = install(&machine, &log);
    let (node, dev) = plug(&machine, &devices, "ROOT\\PAR\\W");
    let entered = Event::new(&machine, EventKind::Notification, false);
    let release = Event::new(&machine, EventKind::Notification, false);
    let (en, rel, l) = (entered.clone(), release.clone(), Arc::clone(&log));
    let item = WorkItem::create("slow", child_of(dev.object(), &log, "slow"), move |_| {
        en.set();
        rel.wait(None);
        l.lock().unwrap().push("callback returns".to_owned());
    })
    .unwrap();
    assert!(item.enqueue());
    machine.settle();
    assert!(entered.is_signaled());
    let removed = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&removed);
    let removal = SystemThread::spawn(&machine, "remover", move || {
        node.remove().unwrap();
        r.store(true, Ordering::SeqCst);
    })
    .unwrap();
    machine.settle();
    assert!(
        !removed.load(Ordering::SeqCst),
        "the removal waits for the running callback"
    );
    assert!(
        log.lock().unwrap().is_empty(),
        "no cleanup before the callback returned"
    );
    release.set();
    machine.settle();
    assert!(removed.load(Ordering::SeqCst) && removal.is_terminated());
    assert_eq!(
        *log.lock().unwrap(),
        ["callback returns", "cleanup slow", "cleanup device 0"]
    );
    drop(item);
    assert!(machine.verifier().violations().is_empty());
}

/// The same for a passive-level timer whose callback runs at the removal.
#[test]
fn device_removal_waits_for_a_running_timer_callback() {
    let machine = Machine::builder().verifier(VerifierMode::Record).build();
    let log: Log = Arc::default();
    let devices = install(&machine, &log);
    let (node, dev) = plug(&machine, &devices, "ROOT\\PAR\\T");
    let entered = Event::new(&machine, EventKind::Notification, false);
    let release = Event::new(&machine, EventKind::Notification, false);
    let (en, rel, l) = (entered.clone(), release.clone(), Arc::clone(&log));
    let timer = Timer::create(
        TimerConfig::one_shot("slow").execution_level(ExecutionLevel::Passive),
        child_of(dev.object(), &log, "slow"),
        move |_| {
            en.set();
            rel.wait(None);
            l.lock().unwrap().push("callback returns".to_owned());
        },
    )
    .unwrap();
    timer.start(Duration::ZERO);
    machine.settle();
    assert!(entered.is_signaled());
    let removed = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&removed);
    let removal = SystemThread::spawn(&machine, "remover", move || {
        node.remove().unwrap();
        r.store(true, Ordering::SeqCst);
    })
    .unwrap();
    machine.settle();
    assert!(
        !removed.load(Ordering::SeqCst),
        "the removal waits for the callback"
    );
    release.set();
    machine.settle();
    assert!(removed.load(Ordering::SeqCst) && removal.is_terminated());
    assert_eq!(
        *log.lock().unwrap(),
        ["callback returns", "cleanup slow", "cleanup device 0"]
    );
    drop(timer);
    assert!(machine.verifier().violations().is_empty());
}

/// `WdfTimerCreate`/`WdfWorkItemCreate` refuse a missing parent, a parent chain without a
/// device, and a deleted (removed) device — the last also a deleted-object violation; a child of
/// a device's child (a chain that leads to a device) is accepted.
#[test]
fn creation_needs_a_live_device_in_the_parent_chain() {
    let machine = Machine::builder().verifier(VerifierMode::Record).build();
    let log: Log = Arc::default();
    let devices = install(&machine, &log);
    let (node, dev) = plug(&machine, &devices, "ROOT\\PAR\\X");
    let one_shot = || TimerConfig::one_shot("t");

    assert_eq!(
        Timer::create(one_shot(), ObjectAttributes::new(), |_| {}).err(),
        Some(Status::WDF_PARENT_NOT_SPECIFIED)
    );
    assert_eq!(
        WorkItem::create("w", ObjectAttributes::new(), |_| {}).err(),
        Some(Status::WDF_PARENT_NOT_SPECIFIED)
    );
    let loose = WdfObject::create(&machine, "WDFOBJECT", ObjectAttributes::new()).unwrap();
    assert_eq!(
        Timer::create(one_shot(), ObjectAttributes::new().parent(&loose), |_| {}).err(),
        Some(Status::INVALID_DEVICE_REQUEST),
        "no device in the parent chain"
    );
    assert_eq!(
        WorkItem::create("w", ObjectAttributes::new().parent(&loose), |_| {}).err(),
        Some(Status::INVALID_DEVICE_REQUEST)
    );
    loose.delete().unwrap();
    let memory = WdfObject::create(
        &machine,
        "WDFMEMORY",
        ObjectAttributes::new().parent(dev.object()),
    )
    .unwrap();
    let nested = Timer::create(one_shot(), ObjectAttributes::new().parent(&memory), |_| {})
        .expect("a chain that leads to a device");
    assert_eq!(
        nested.object().unwrap().device_ancestor().as_ref(),
        Some(dev.object())
    );
    drop(nested);
    assert!(machine.verifier().violations().is_empty());

    node.remove().unwrap();
    assert!(dev.object().is_deleted());
    assert_eq!(
        Timer::create(
            one_shot(),
            ObjectAttributes::new().parent(dev.object()),
            |_| {}
        )
        .err(),
        Some(Status::INVALID_DEVICE_STATE),
        "a removed device parents no timer"
    );
    assert_eq!(
        WorkItem::create("w", ObjectAttributes::new().parent(dev.object()), |_| {}).err(),
        Some(Status::INVALID_DEVICE_STATE)
    );
    let violations = machine.verifier().violations();
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(violations.iter().all(|v| v.rule == Rule::DeletedObjectUsed));
    assert!(
        live_objects(&machine).is_empty(),
        "{:?}",
        live_objects(&machine)
    );
}

/// Using a timer or work item the framework deleted with its device (other than deleting it) is a
/// deleted-object violation, as on KMDF.
#[test]
fn use_after_the_device_deleted_the_timer_is_reported() {
    let machine = Machine::builder().verifier(VerifierMode::Record).build();
    let log: Log = Arc::default();
    let devices = install(&machine, &log);
    let (node, dev) = plug(&machine, &devices, "ROOT\\PAR\\U");
    let runs = Arc::new(AtomicU32::new(0));
    let timer = ticking(&dev, &log, "late timer", &runs);
    let item = counting(&dev, &log, "late work", &runs);
    node.remove().unwrap();
    assert!(!timer.start(Duration::from_millis(1)));
    assert!(!item.enqueue());
    machine.advance(Duration::from_millis(20));
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let violations = machine.verifier().violations();
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(violations.iter().all(|v| v.rule == Rule::DeletedObjectUsed));
}
