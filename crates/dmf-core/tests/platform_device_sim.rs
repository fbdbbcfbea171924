//! The device half of the platform contract on the `sim` backend: a driver written only against
//! `dmf_core::platform` (as DMF and client drivers are) is installed on a simulated machine and
//! driven through KMDF's PnP/power sequences by kmdf-sim; plus timers, work items, system threads
//! and the registry.
#![cfg(feature = "sim")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmf_core::platform::contract::device::{
    FailedAction, Guid, PlatformDevice, PlatformDeviceInit, PowerDeviceState,
};
use dmf_core::platform::contract::{
    EventKind, PlatformEvent, PlatformRegistryKey, PlatformThread, PlatformTimer, PlatformWorkItem,
    RegistryValue, TimerExecutionLevel, WaitStatus,
};
use dmf_core::platform::{
    simulator, Device, DriverConfig, PnpPowerCallbacks, PowerPolicyCallbacks, RegistryKey,
    SystemThread, Timer, WorkItem,
};
use dmf_core::NtStatus;
use kmdf_sim::pnp::{NodeState, StackSpec};
use kmdf_sim::{ClockMode, Machine};

const GUID_TEST: Guid = Guid::new(
    0x573E_8C73,
    0x0CB4,
    0x4471,
    [0xA1, 0xBF, 0xFA, 0xB2, 0x6C, 0x31, 0xD3, 0x84],
);

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, entry: impl Into<String>) {
    log.lock().unwrap().push(entry.into());
}

/// A driver written against the platform contract only.
fn recording_driver(log: &Log, fail_prepare: bool) -> DriverConfig {
    let log = Arc::clone(log);
    DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut pnp = PnpPowerCallbacks::default();
            let l = Arc::clone(&log);
            pnp.prepare_hardware = Some(Arc::new(move |_d: &Device, _r| {
                push(&l, "PrepareHardware");
                if fail_prepare {
                    Err(NtStatus::DEVICE_CONFIGURATION_ERROR)
                } else {
                    Ok(())
                }
            }));
            let l = Arc::clone(&log);
            pnp.release_hardware = Some(Arc::new(move |_d: &Device, _r| {
                push(&l, "ReleaseHardware");
                Ok(())
            }));
            let l = Arc::clone(&log);
            pnp.d0_entry = Some(Arc::new(move |d: &Device, previous| {
                assert!(d.is_in_d0() || previous != PowerDeviceState::D0);
                push(&l, format!("D0Entry({previous:?})"));
                Ok(())
            }));
            let l = Arc::clone(&log);
            pnp.d0_exit = Some(Arc::new(move |_d: &Device, target| {
                push(&l, format!("D0Exit({target:?})"));
                Ok(())
            }));
            let l = Arc::clone(&log);
            pnp.self_managed_io_init = Some(Arc::new(move |_d: &Device| {
                push(&l, "SelfManagedIoInit");
                Ok(())
            }));
            let l = Arc::clone(&log);
            pnp.self_managed_io_cleanup = Some(Arc::new(move |_d: &Device| {
                push(&l, "SelfManagedIoCleanup");
            }));
            let l = Arc::clone(&log);
            pnp.query_remove = Some(Arc::new(move |_d: &Device| {
                push(&l, "QueryRemove");
                Ok(())
            }));
            init.set_pnp_power_callbacks(pnp);
            let mut policy = PowerPolicyCallbacks::default();
            let l = Arc::clone(&log);
            policy.arm_wake_from_s0 = Some(Arc::new(move |_d: &Device| {
                push(&l, "ArmWakeFromS0");
                Ok(())
            }));
            init.set_power_policy_callbacks(policy);
            assert!(!init.is_filter());
            let device = init.create_device()?;
            device.create_interface(GUID_TEST, None)?;
            Ok(())
        }),
        unload: None,
    }
}

#[test]
fn a_platform_driver_runs_through_start_power_cycle_and_removal() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let log = Log::default();
    simulator::install_driver(&machine, "recorder", recording_driver(&log, false));
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\RECORDER", "recorder"))
        .unwrap();
    assert_eq!(node.state(), NodeState::Started);
    assert_eq!(
        kmdf_sim::interface::interfaces_of_class(
            &machine,
            dmf_core::platform::simulator::sim_guid(GUID_TEST)
        )
        .len(),
        1,
        "the interface is enabled when the device starts"
    );
    node.idle().unwrap();
    node.wake_from_idle().unwrap();
    node.remove().unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "PrepareHardware",
            "D0Entry(D3Final)",
            "SelfManagedIoInit",
            "D0Exit(D3)",
            "D0Entry(D3)",
            "QueryRemove",
            "D0Exit(D3Final)",
            "ReleaseHardware",
            "SelfManagedIoCleanup",
        ]
    );
    assert!(machine.verifier().violations().is_empty());
}

#[test]
fn a_failing_platform_callback_fails_the_start_and_still_releases() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let log = Log::default();
    simulator::install_driver(&machine, "failing", recording_driver(&log, true));
    let result = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\FAILING", "failing"));
    let node = machine
        .pnp()
        .find("ROOT\\FAILING")
        .expect("a failed node stays listed");
    assert!(result.is_err() || node.state() != NodeState::Started);
    assert_eq!(
        node.last_status().0,
        NtStatus::DEVICE_CONFIGURATION_ERROR.to_raw(),
        "the driver's NTSTATUS reaches the PnP manager unchanged"
    );
    let log = log.lock().unwrap();
    assert_eq!(log.first().map(String::as_str), Some("PrepareHardware"));
    assert!(log.contains(&"ReleaseHardware".to_owned()), "{log:?}");
    assert!(!log.iter().any(|e| e.starts_with("D0Entry")), "{log:?}");
}

#[test]
fn set_failed_through_the_contract_tears_the_device_down() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let released = Arc::new(Mutex::new(false));
    let device_slot: Arc<Mutex<Option<Device>>> = Arc::default();
    let (slot, r) = (Arc::clone(&device_slot), Arc::clone(&released));
    let config = DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut pnp = PnpPowerCallbacks::default();
            let r = Arc::clone(&r);
            pnp.release_hardware = Some(Arc::new(move |_d: &Device, _r| {
                *r.lock().unwrap() = true;
                Ok(())
            }));
            init.set_pnp_power_callbacks(pnp);
            // The driver keeps its handle, as a real driver keeps its WDFDEVICE.
            *slot.lock().unwrap() = Some(init.create_device()?);
            Ok(())
        }),
        unload: None,
    };
    simulator::install_driver(&machine, "failer", config);
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\FAILER", "failer"))
        .unwrap();
    let device = device_slot.lock().unwrap().clone().unwrap();
    assert!(device.is_in_d0());
    device.set_failed(FailedAction::NoRestart);
    machine.settle();
    assert_ne!(node.state(), NodeState::Started);
    assert!(*released.lock().unwrap(), "teardown releases the hardware");
    assert!(!device.is_in_d0());
}

#[test]
fn timers_run_on_the_virtual_clock() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let (_node, device) = simulator::plug_in_device(&machine, "ticker").unwrap();
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let t = Arc::clone(&ticks);
    let timer = Timer::new(
        &device,
        "heartbeat",
        Some(Duration::from_millis(250)),
        TimerExecutionLevel::Dispatch,
        move || t.lock().unwrap().push(Machine::current().unwrap().now()),
    )
    .unwrap();
    assert!(!timer.start(Duration::from_millis(250)));
    machine.advance(Duration::from_secs(1));
    assert_eq!(
        *ticks.lock().unwrap(),
        [250, 500, 750, 1000].map(Duration::from_millis)
    );
    assert!(timer.stop(true));
    assert_eq!(
        Timer::new(
            &device,
            "bad",
            Some(Duration::from_millis(5)),
            TimerExecutionLevel::Passive,
            || {}
        )
        .err(),
        Some(NtStatus::INVALID_PARAMETER),
        "a passive-level timer cannot be periodic"
    );
}

#[test]
fn work_items_and_threads_run_at_passive() {
    let machine = Machine::builder().clock(ClockMode::AutoAdvance).build();
    let _bound = machine.enter();
    let (_node, device) = simulator::plug_in_device(&machine, "worker").unwrap();
    let runs = Arc::new(Mutex::new(0_u32));
    let r = Arc::clone(&runs);
    let item = WorkItem::new(&device, "work", move || {
        assert_eq!(
            kmdf_sim::exec::current_irql(),
            kmdf_sim::Irql::Passive,
            "work items run at PASSIVE_LEVEL"
        );
        *r.lock().unwrap() += 1;
    })
    .unwrap();
    assert!(item.enqueue());
    item.flush();
    assert_eq!(*runs.lock().unwrap(), 1);
    let thread = SystemThread::spawn("sleeper", || {
        let nap = <dmf_core::platform::Event as PlatformEvent>::new(EventKind::Notification, false)
            .unwrap();
        assert_eq!(
            nap.wait(Some(Duration::from_secs(30))),
            WaitStatus::TimedOut
        );
    })
    .unwrap();
    assert_eq!(thread.wait(None), WaitStatus::Signaled);
    assert_eq!(machine.now(), Duration::from_secs(30));
}

/// The parent of `Timer::new`/`WorkItem::new` (`ParentObject`): removing a device deletes its
/// timer and work item — the timer stops, a queued run of the work item is skipped — while those
/// of another device keep running; the owners' late drops are harmless, and a removed device
/// parents nothing (`STATUS_INVALID_DEVICE_STATE`).
#[test]
fn timers_and_work_items_go_away_with_their_parent_device() {
    let machine = Machine::builder()
        .verifier(kmdf_sim::VerifierMode::Record)
        .build();
    let _bound = machine.enter();
    let (node_a, device_a) = simulator::plug_in_device(&machine, "parent-a").unwrap();
    let (node_b, device_b) = simulator::plug_in_device(&machine, "parent-b").unwrap();
    let counter = |runs: &Arc<Mutex<u32>>| {
        let r = Arc::clone(runs);
        move || *r.lock().unwrap() += 1
    };
    let (ticks_a, ticks_b) = (Arc::default(), Arc::default());
    let (work_a, work_b) = (Arc::default(), Arc::default());
    let period = Some(Duration::from_millis(10));
    let dispatch = TimerExecutionLevel::Dispatch;
    let timer_a = Timer::new(&device_a, "a", period, dispatch, counter(&ticks_a)).unwrap();
    let timer_b = Timer::new(&device_b, "b", period, dispatch, counter(&ticks_b)).unwrap();
    let item_a = WorkItem::new(&device_a, "a", counter(&work_a)).unwrap();
    let item_b = WorkItem::new(&device_b, "b", counter(&work_b)).unwrap();
    timer_a.start(Duration::from_millis(10));
    timer_b.start(Duration::from_millis(10));
    machine.advance(Duration::from_millis(20));
    assert_eq!((*ticks_a.lock().unwrap(), *ticks_b.lock().unwrap()), (2, 2));

    let paused = machine.pause_queues();
    assert!(item_a.enqueue());
    node_a.remove().unwrap();
    drop(paused);
    machine.advance(Duration::from_millis(20));
    assert_eq!(*ticks_a.lock().unwrap(), 2, "device A's timer went with A");
    assert_eq!(*ticks_b.lock().unwrap(), 4, "device B's timer still runs");
    assert_eq!(
        *work_a.lock().unwrap(),
        0,
        "A's queued work item was deleted with A"
    );
    assert!(!timer_a.stop(true), "a deleted timer is not queued");
    item_a.flush();
    assert!(item_b.enqueue());
    item_b.flush();
    assert_eq!(*work_b.lock().unwrap(), 1);
    drop((timer_a, item_a));
    assert!(
        machine.verifier().violations().is_empty(),
        "late drops are harmless: {:?}",
        machine.verifier().violations()
    );

    assert_eq!(
        Timer::new(&device_a, "late", None, dispatch, || {}).err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(
        WorkItem::new(&device_a, "late", || {}).err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(
        machine.verifier().violations().len(),
        2,
        "creating a child of a deleted device is a deleted-object use"
    );
    drop((timer_b, item_b));
    node_b.remove().unwrap();
    assert!(
        kmdf_sim::object::live_objects(&machine).is_empty(),
        "{:?}",
        kmdf_sim::object::live_objects(&machine)
    );
}

#[test]
fn registry_parameters_persist_across_a_simulated_reboot() {
    let store = kmdf_sim::registry::RegistryStore::new();
    for boot in 0..2_u32 {
        let machine = Machine::new();
        machine.use_registry(&store);
        let _bound = machine.enter();
        let key = RegistryKey::open_driver_parameters("persist").unwrap();
        if boot == 0 {
            assert_eq!(
                key.query("Runs").err(),
                Some(NtStatus::OBJECT_NAME_NOT_FOUND)
            );
            key.set("Runs", RegistryValue::Dword(1)).unwrap();
            key.set("Name", RegistryValue::String("dmf".into()))
                .unwrap();
        } else {
            assert_eq!(key.query("Runs").unwrap(), RegistryValue::Dword(1));
            assert_eq!(
                key.query("Name").unwrap(),
                RegistryValue::String("dmf".into())
            );
            key.delete("Runs").unwrap();
            assert_eq!(
                key.query("Runs").err(),
                Some(NtStatus::OBJECT_NAME_NOT_FOUND)
            );
        }
    }
}
