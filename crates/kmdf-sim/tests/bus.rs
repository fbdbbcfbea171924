//! Bus drivers (`pnp::bus`): a driver reports child PDOs on its FDO and the PnP manager
//! enumerates them under its node — children reported in `EvtDriverDeviceAdd` wait for the bus
//! to start, the child's function driver is picked by hardware id, the PDO's callbacks run
//! first on the way up and last on the way down, a failing bus takes its children with it,
//! disable/enable keeps the PDO (flushed, not cleaned up, as KMDF's PDO package does; cleaned
//! up when reported missing), and every misuse of the PDO calls is refused.

use std::sync::{Arc, Mutex};

use kmdf_sim::control::DeviceSecurity;
use kmdf_sim::device::{Device, DeviceInit, PdoStatus};
use kmdf_sim::driver::{self, DriverConfig};
use kmdf_sim::object::ObjectAttributes;
use kmdf_sim::pnp::{FailedAction, NodeState, StackSpec};
use kmdf_sim::trace::TraceKind;
use kmdf_sim::{Machine, Status};

type Pdos = Arc<Mutex<Vec<Device>>>;

/// A PDO init on `fdo` with a device id and one hardware id, PnP callbacks traced.
fn pdo_init(fdo: &Device, id: &str, instance: &str) -> DeviceInit {
    let mut init = DeviceInit::pdo(fdo).unwrap();
    init.pdo_assign_device_id(id).unwrap();
    init.pdo_add_hardware_id(id).unwrap();
    init.pdo_assign_instance_id(instance).unwrap();
    init.pnp.prepare_hardware = Some(Arc::new(|_d, _r| Status::SUCCESS));
    init.pnp.d0_entry = Some(Arc::new(|_d, _p| Status::SUCCESS));
    init.pnp.d0_exit = Some(Arc::new(|_d, _t| Status::SUCCESS));
    init
}

/// A bus driver reporting `ids` as children from its `EvtDriverDeviceAdd`.
fn install_bus(m: &Machine, ids: &'static [&'static str], pdos: &Pdos) {
    let pdos = Arc::clone(pdos);
    driver::install(
        m,
        "bus",
        DriverConfig::new(move |_d, init| {
            init.pnp.d0_entry = Some(Arc::new(|_d, _p| Status::SUCCESS));
            init.pnp.surprise_removal = Some(Arc::new(|_d| {}));
            let fdo = Device::create(init, ObjectAttributes::new())?;
            for (i, id) in ids.iter().enumerate() {
                let mut child = pdo_init(&fdo, id, &i.to_string());
                let pdo = Device::create(&mut child, ObjectAttributes::new())?;
                fdo.add_static_child(&pdo)?;
                assert_eq!(
                    pdo.pdo_status(),
                    Some(PdoStatus::Reported),
                    "not before start"
                );
                pdos.lock().unwrap().push(pdo);
            }
            Ok(())
        }),
    );
}

fn install_function(m: &Machine, name: &str, id: &str) {
    driver::install(
        m,
        name,
        DriverConfig::new(|_d, init| {
            init.pnp.d0_entry = Some(Arc::new(|_d, _p| Status::SUCCESS));
            init.pnp.surprise_removal = Some(Arc::new(|_d| {}));
            Device::create(init, ObjectAttributes::new())?;
            Ok(())
        }),
    );
    driver::bind_hardware_id(m, id, name);
}

#[test]
fn children_reported_in_device_add_start_after_the_bus_in_kmdf_order() {
    let m = Machine::new();
    let pdos = Pdos::default();
    install_bus(&m, &["Bus\\A", "Bus\\Unknown"], &pdos);
    install_function(&m, "func", "BUS\\a");
    let bus = m.pnp().plug_in(StackSpec::new("ROOT\\Bus", "bus")).unwrap();
    let children = bus.children();
    assert_eq!(children.len(), 2);
    assert_eq!(children[0].state(), NodeState::Started);
    assert_eq!(children[0].instance_id(), "Bus\\A\\0");
    assert_eq!(children[0].stack().len(), 2, "PDO + function driver");
    assert_eq!(children[0].stack()[0], pdos.lock().unwrap()[0]);
    assert_eq!(
        children[1].state(),
        NodeState::Failed,
        "no driver for its id"
    );
    assert_eq!(children[1].last_status(), Status::NO_SUCH_DEVICE);
    // Power-up: the bus's FDO first (its node), then the child: its PDO, then its FDO.
    let pdo_name = pdos.lock().unwrap()[0].name().to_owned();
    let d0: Vec<String> = m
        .trace()
        .filter(|e| e.kind == TraceKind::Callback && e.text.starts_with("EvtDeviceD0Entry"))
        .into_iter()
        .map(|e| {
            if e.object == pdo_name {
                "pdo".to_owned()
            } else {
                e.driver.unwrap_or_default()
            }
        })
        .collect();
    assert_eq!(d0, ["bus", "pdo", "func"]);
    // Disable/enable keeps the PDO; the child restarts on it.
    children[0].disable().unwrap();
    assert_eq!(
        pdos.lock().unwrap()[0].pdo_status(),
        Some(PdoStatus::Enumerated)
    );
    children[0].enable().unwrap();
    assert_eq!(children[0].state(), NodeState::Started);
    // The bus fails: its children are surprise-removed first, every PDO is deleted.
    m.trace().clear();
    bus.function_device()
        .unwrap()
        .set_failed(FailedAction::NoRestart);
    m.settle();
    assert_eq!(bus.state(), NodeState::Failed);
    assert_eq!(children[0].state(), NodeState::SurpriseRemoved);
    assert_eq!(children[1].state(), NodeState::Removed);
    let surprise: Vec<Option<String>> = m
        .trace()
        .filter(|e| e.kind == TraceKind::Callback && e.text == "EvtDeviceSurpriseRemoval")
        .into_iter()
        .map(|e| e.driver)
        .collect();
    assert_eq!(surprise, [Some("func".to_owned()), Some("bus".to_owned())]);
    assert!(pdos.lock().unwrap().iter().all(|p| p.object().is_deleted()));
    m.verdict().unwrap();
}

#[test]
fn misuse_of_the_pdo_calls_is_refused() {
    let m = Machine::new();
    let pdos = Pdos::default();
    install_bus(&m, &[], &pdos);
    install_bus_named(&m, "other");
    let bus = m.pnp().plug_in(StackSpec::new("ROOT\\Bus", "bus")).unwrap();
    let other = m
        .pnp()
        .plug_in(StackSpec::new("ROOT\\Other", "other"))
        .unwrap();
    let fdo = bus.function_device().unwrap();
    let other_fdo = other.function_device().unwrap();
    let on = m.enter();
    // Not a PDO init, not a PDO parent.
    let mut control_init = DeviceInit::control(fdo.driver(), DeviceSecurity::Everyone);
    control_init.assign_name("\\Device\\BusControl");
    let control = Device::create(&mut control_init, ObjectAttributes::new()).unwrap();
    assert_eq!(
        DeviceInit::pdo(&control).err(),
        Some(Status::INVALID_DEVICE_REQUEST)
    );
    control.object().delete().unwrap();
    let mut init = DeviceInit::pdo(&fdo).unwrap();
    assert_eq!(init.pdo_add_hardware_id(""), Err(Status::INVALID_PARAMETER));
    assert_eq!(
        init.pdo_add_hardware_id("A\0"),
        Err(Status::INVALID_PARAMETER)
    );
    assert_eq!(
        Device::create(&mut init, ObjectAttributes::new()).err(),
        Some(Status::INVALID_DEVICE_STATE),
        "no device id"
    );
    let pdo = Device::create(&mut pdo_init(&fdo, "Bus\\X", "1"), ObjectAttributes::new()).unwrap();
    assert_eq!(
        DeviceInit::pdo(&pdo).err(),
        Some(Status::INVALID_DEVICE_REQUEST)
    );
    assert_eq!(
        other_fdo.add_static_child(&pdo),
        Err(Status::INVALID_PARAMETER)
    );
    assert_eq!(
        fdo.add_static_child(&fdo),
        Err(Status::INVALID_DEVICE_REQUEST)
    );
    assert_eq!(
        pdo.pdo_mark_missing(),
        Err(Status::NO_SUCH_DEVICE),
        "not reported"
    );
    assert_eq!(fdo.pdo_mark_missing(), Err(Status::INVALID_DEVICE_REQUEST));
    pdo.pdo_delete().unwrap();
    assert_eq!(pdo.pdo_delete(), Err(Status::INVALID_DEVICE_STATE));
    let pdo = Device::create(&mut pdo_init(&fdo, "Bus\\X", "2"), ObjectAttributes::new()).unwrap();
    fdo.add_static_child(&pdo).unwrap();
    assert_eq!(
        fdo.add_static_child(&pdo),
        Err(Status::INVALID_DEVICE_STATE)
    );
    assert_eq!(
        pdo.pdo_delete(),
        Err(Status::INVALID_DEVICE_STATE),
        "the PnP manager owns it"
    );
    assert_eq!(fdo.static_children(), std::slice::from_ref(&pdo));
    pdo.pdo_mark_missing().unwrap();
    assert_eq!(pdo.pdo_mark_missing(), Err(Status::NO_SUCH_DEVICE));
    assert!(fdo.static_children().is_empty());
    drop(on);
    bus.remove().unwrap();
    other.remove().unwrap();
    m.verdict().unwrap();
}

fn install_bus_named(m: &Machine, name: &str) {
    driver::install(
        m,
        name,
        DriverConfig::new(|_d, init| {
            Device::create(init, ObjectAttributes::new())?;
            Ok(())
        }),
    );
}

#[test]
fn a_child_list_creates_reported_children_and_removes_missing_ones() {
    let m = Machine::new();
    driver::install(
        &m,
        "dynbus",
        DriverConfig::new(|_d, init| {
            init.pnp.surprise_removal = Some(Arc::new(|_d| {}));
            let fdo = Device::create(init, ObjectAttributes::new())?;
            fdo.create_child_list(|fdo, id, child| {
                assert!(
                    fdo.static_children().is_empty(),
                    "a child list is not the static one"
                );
                let hardware_id = format!("DynBus\\{id}");
                child.pdo_assign_device_id(&hardware_id)?;
                child.pdo_add_hardware_id(&hardware_id)?;
                child.pdo_assign_instance_id(id)?;
                if id == "Refused" {
                    return Err(Status::INSUFFICIENT_RESOURCES);
                }
                Device::create(child, ObjectAttributes::new()).map(|_| ())
            })?;
            assert_eq!(
                fdo.create_child_list(|_, _, _| Ok(())),
                Err(Status::INVALID_DEVICE_STATE)
            );
            Ok(())
        }),
    );
    install_function(&m, "func", "DynBus\\A");
    install_function(&m, "funcb", "DynBus\\B");
    let bus = m
        .pnp()
        .plug_in(StackSpec::new("ROOT\\DynBus", "dynbus"))
        .unwrap();
    let fdo = bus.function_device().unwrap();
    let on = m.enter();
    fdo.child_list_add_or_update_as_present("A").unwrap();
    fdo.child_list_add_or_update_as_present("A").unwrap();
    fdo.child_list_add_or_update_as_present("Refused").unwrap();
    assert_eq!(
        bus.children().len(),
        1,
        "one child per description; the refused one dropped"
    );
    let a = bus.children()[0].clone();
    assert_eq!(a.state(), NodeState::Started);
    assert_eq!(a.instance_id(), "DynBus\\A\\A");
    let pdo_a = fdo.child_list_retrieve_pdo("A").unwrap();
    assert_eq!(a.pdo().as_ref(), Some(&pdo_a));
    assert!(fdo.child_list_retrieve_pdo("Refused").is_none());
    let created: Vec<String> = m
        .trace()
        .filter(|e| e.kind == TraceKind::Callback && e.text == "EvtChildListCreateDevice")
        .into_iter()
        .map(|e| e.text)
        .collect();
    assert_eq!(created.len(), 2, "A and the refused one");
    fdo.child_list_update_as_missing("A").unwrap();
    assert_eq!(a.state(), NodeState::SurpriseRemoved);
    assert!(pdo_a.object().is_deleted());
    assert_eq!(
        fdo.child_list_update_as_missing("A"),
        Err(Status::NO_SUCH_DEVICE)
    );
    fdo.child_list_add_or_update_as_present("B").unwrap();
    let b = bus.children()[1].clone();
    assert_eq!(b.state(), NodeState::Started);
    drop(on);
    bus.surprise_remove().unwrap();
    assert_eq!(b.state(), NodeState::SurpriseRemoved);
    m.verdict().unwrap();
}

/// Every PnP callback of the removal and restart paths on `init`, so the trace shows them.
fn all_pnp_callbacks(init: &mut DeviceInit) {
    init.pnp.prepare_hardware = Some(Arc::new(|_d, _r| Status::SUCCESS));
    init.pnp.release_hardware = Some(Arc::new(|_d, _r| Status::SUCCESS));
    init.pnp.d0_entry = Some(Arc::new(|_d, _p| Status::SUCCESS));
    init.pnp.d0_exit = Some(Arc::new(|_d, _t| Status::SUCCESS));
    init.pnp.self_managed_io_init = Some(Arc::new(|_d| Status::SUCCESS));
    init.pnp.self_managed_io_restart = Some(Arc::new(|_d| Status::SUCCESS));
    init.pnp.self_managed_io_suspend = Some(Arc::new(|_d| Status::SUCCESS));
    init.pnp.self_managed_io_flush = Some(Arc::new(|_d| {}));
    init.pnp.self_managed_io_cleanup = Some(Arc::new(|_d| {}));
}

/// A bus driver (`pdobus`, FDO without callbacks) reporting `ids` as children whose PDOs have
/// every PnP callback, and a function driver `pdofunc` (every PnP callback) for them.
fn install_traced_bus(m: &Machine, ids: &'static [&'static str], pdos: &Pdos) {
    let pdos = Arc::clone(pdos);
    driver::install(
        m,
        "pdobus",
        DriverConfig::new(move |_d, init| {
            let fdo = Device::create(init, ObjectAttributes::new())?;
            for (i, id) in ids.iter().enumerate() {
                let mut child = pdo_init(&fdo, id, &i.to_string());
                all_pnp_callbacks(&mut child);
                let pdo = Device::create(&mut child, ObjectAttributes::new())?;
                fdo.add_static_child(&pdo)?;
                pdos.lock().unwrap().push(pdo);
            }
            Ok(())
        }),
    );
    driver::install(
        m,
        "pdofunc",
        DriverConfig::new(|_d, init| {
            all_pnp_callbacks(init);
            Device::create(init, ObjectAttributes::new())?;
            Ok(())
        }),
    );
    for id in ids {
        driver::bind_hardware_id(m, id, "pdofunc");
    }
}

const REMOVE_TO_FLUSH: [&str; 4] = [
    "EvtDeviceSelfManagedIoSuspend",
    "EvtDeviceD0Exit(D3Final)",
    "EvtDeviceReleaseHardware",
    "EvtDeviceSelfManagedIoFlush",
];

/// KMDF (Windows Driver Frameworks source, `fxpkgpdo.cpp`): a PDO removed while its bus still
/// reports it waits after EvtDeviceSelfManagedIoFlush — no EvtDeviceSelfManagedIoCleanup, not
/// deleted — and a new start from there runs EvtDeviceSelfManagedIoRestart
/// (`selfmanagediostatemachine.cpp`: Flushed → Restarting). The function driver above it is
/// torn down and added again as usual.
#[test]
fn a_disabled_childs_pdo_is_flushed_kept_and_restarted() {
    let m = Machine::new();
    let pdos = Pdos::default();
    install_traced_bus(&m, &["PdoBus\\A"], &pdos);
    let bus = m
        .pnp()
        .plug_in(StackSpec::new("ROOT\\PdoBus", "pdobus"))
        .unwrap();
    let child = bus.children()[0].clone();
    assert_eq!(child.state(), NodeState::Started);
    let pdo = pdos.lock().unwrap()[0].clone();
    assert_eq!(
        m.trace().callbacks_for("pdobus"),
        [
            "DriverEntry",
            "EvtDriverDeviceAdd",
            "EvtDevicePrepareHardware",
            "EvtDeviceD0Entry(D3Final)",
            "EvtDeviceSelfManagedIoInit",
        ],
        "the bus FDO's add, then the PDO's first start"
    );
    let func = child.device("pdofunc").unwrap();

    // 1. Disable: the PDO gets the removal list up to Flush, no Cleanup, and stays.
    m.trace().clear();
    child.disable().unwrap();
    assert_eq!(child.state(), NodeState::Disabled);
    assert_eq!(m.trace().callbacks_for("pdobus"), REMOVE_TO_FLUSH);
    let mut full_remove = REMOVE_TO_FLUSH.to_vec();
    full_remove.push("EvtDeviceSelfManagedIoCleanup");
    assert_eq!(
        m.trace().callbacks_for("pdofunc"),
        full_remove,
        "the function driver is torn down as before"
    );
    assert!(func.object().is_deleted());
    assert!(!pdo.object().is_deleted());
    assert_eq!(pdo.pdo_status(), Some(PdoStatus::Enumerated));

    // 2. Enable: the PDO starts again with Restart (not Init); the function driver is added
    // and started anew.
    m.trace().clear();
    child.enable().unwrap();
    assert_eq!(child.state(), NodeState::Started);
    assert_eq!(
        m.trace().callbacks_for("pdobus"),
        [
            "EvtDevicePrepareHardware",
            "EvtDeviceD0Entry(D3Final)",
            "EvtDeviceSelfManagedIoRestart",
        ]
    );
    assert_eq!(
        m.trace().callbacks_for("pdofunc"),
        [
            "DriverEntry", // unloaded with its last device, loaded again
            "EvtDriverDeviceAdd",
            "EvtDevicePrepareHardware",
            "EvtDeviceD0Entry(D3Final)",
            "EvtDeviceSelfManagedIoInit",
        ]
    );
    assert_eq!(child.stack()[0], pdo);

    // A second round behaves the same.
    m.trace().clear();
    child.disable().unwrap();
    child.enable().unwrap();
    assert_eq!(
        m.trace().callbacks_for("pdobus"),
        [
            &REMOVE_TO_FLUSH[..],
            &[
                "EvtDevicePrepareHardware",
                "EvtDeviceD0Entry(D3Final)",
                "EvtDeviceSelfManagedIoRestart",
            ],
        ]
        .concat()
    );

    // Removed for good from the started state: the whole list, Cleanup once, PDO deleted.
    m.trace().clear();
    child.remove().unwrap();
    assert_eq!(child.state(), NodeState::Removed);
    assert_eq!(m.trace().callbacks_for("pdobus"), full_remove);
    assert!(pdo.object().is_deleted());
    bus.remove().unwrap();
    m.verdict().unwrap();
}

/// A disabled (flushed) child's PDO reported missing — `WdfPdoMarkMissing`, an eject, or its
/// bus removed — gets its EvtDeviceSelfManagedIoCleanup before it is deleted, once (KMDF runs a
/// removed PDO's cleanup only when it is reported missing, `fxpkgpdo.cpp`).
#[test]
fn a_disabled_childs_pdo_reported_missing_is_cleaned_up_then_deleted() {
    let m = Machine::new();
    let pdos = Pdos::default();
    install_traced_bus(&m, &["PdoBus\\A", "PdoBus\\B", "PdoBus\\C"], &pdos);
    let bus = m
        .pnp()
        .plug_in(StackSpec::new("ROOT\\PdoBus", "pdobus"))
        .unwrap();
    let children = bus.children();
    assert_eq!(children.len(), 3);
    for child in &children {
        child.disable().unwrap();
    }
    let pdos: Vec<Device> = pdos.lock().unwrap().clone();

    // WdfPdoMarkMissing.
    m.trace().clear();
    {
        let _on = m.enter();
        pdos[0].pdo_mark_missing().unwrap();
    }
    assert_eq!(
        m.trace().callbacks_for("pdobus"),
        ["EvtDeviceSelfManagedIoCleanup"]
    );
    assert!(pdos[0].object().is_deleted());
    assert_eq!(children[0].state(), NodeState::Removed);

    // WdfPdoRequestEject.
    m.trace().clear();
    {
        let _on = m.enter();
        pdos[1].pdo_request_eject();
    }
    assert_eq!(
        m.trace().callbacks_for("pdobus"),
        ["EvtDeviceSelfManagedIoCleanup"]
    );
    assert!(pdos[1].object().is_deleted());

    // The bus removed: the disabled child's PDO is cleaned up, then deleted.
    m.trace().clear();
    bus.remove().unwrap();
    assert_eq!(
        m.trace().callbacks_for("pdobus"),
        ["EvtDeviceSelfManagedIoCleanup"],
        "the bus FDO has no callbacks"
    );
    assert!(pdos[2].object().is_deleted());
    assert_eq!(children[2].state(), NodeState::Removed);
    m.verdict().unwrap();
}
