//! Pdo (MOD-PDO; C DMF `Dmf_Pdo.c`, tested by `Dmf_Tests_Pdo.c`): a bus driver written with
//! DMF's client-driver API whose device hosts a Pdo Module, on kmdf-sim's PnP manager: static
//! children at the first D0Entry, plug/unplug by serial number (C's thread action: a pair of
//! children with their own Modules, unplugged after a while), the child function driver's
//! callbacks in KMDF's order after the bus driver's PDO ones, surprise removal of the bus
//! removing the children first, ejection (and its veto), bad inputs, an allocation failing at
//! every step of a plug, a seeded plug/unplug/eject churn checked against a model, and close
//! unplugging a dynamic Module's children. Each scenario ends with a clean machine.
#![cfg(feature = "sim")]
#![allow(clippy::missing_panics_doc, clippy::too_many_lines)]
// The callbacks' signatures are the Pdo config's `fn` types, which return `NtResult`.
#![allow(clippy::unnecessary_wraps)]

mod driver_support;
mod task_support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dmf_core::device::DmfDeviceInit;
use dmf_core::module::{Dispatched, DynamicModule, ModuleCallbacks, ModuleInit, PowerDeviceState};
use dmf_core::platform::contract::device::{
    DeviceAttributes, Guid, PlatformBus, PlatformDeviceInit, PnpCapabilities,
};
use dmf_core::platform::{simulator, Device, DeviceInit, DriverConfig, PnpPowerCallbacks};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};
use dmf_modules::pdo::{
    format_with_serial, IdBuffer, Pdo, PdoConfig, PdoRecord, MAXIMUM_ID_LENGTH,
};
use kmdf_sim::device::{PdoStatus, TriState};
use kmdf_sim::fault::FaultPoint;
use kmdf_sim::pnp::{DeviceNode, NodeState, StackSpec};
use kmdf_sim::trace::TraceKind;
use kmdf_sim::Machine;
use task_support::Rng;

const BUS: &str = "pdobus";
const CHILD: &str = "pdochild";
const KERNEL_ID: &str = "{0ACF873A-242F-4C8B-A97D-8CA4DD9F86F1}\\DmfKTestFunction";
const USER_ID: &str = "{5F30A572-D79D-43EC-BD35-D5556F09CE21}\\DmfUTestFunction";

/// The child function driver: a device whose PnP callbacks are traced by kmdf-sim; its
/// EvtDeviceQueryRemove vetoes while `veto` is set.
fn install_child(machine: &Machine, veto: &'static AtomicBool) {
    simulator::install_driver(
        machine,
        CHILD,
        DriverConfig {
            device_add: Arc::new(move |_driver, init| {
                init.set_pnp_power_callbacks(PnpPowerCallbacks {
                    prepare_hardware: Some(Arc::new(|_d, _r| Ok(()))),
                    release_hardware: Some(Arc::new(|_d, _r| Ok(()))),
                    d0_entry: Some(Arc::new(|_d, _p| Ok(()))),
                    d0_exit: Some(Arc::new(|_d, _t| Ok(()))),
                    self_managed_io_init: Some(Arc::new(|_d| Ok(()))),
                    surprise_removal: Some(Arc::new(|_d| {})),
                    query_remove: Some(Arc::new(move |_d| {
                        if veto.load(Ordering::SeqCst) {
                            Err(NtStatus::UNSUCCESSFUL)
                        } else {
                            Ok(())
                        }
                    })),
                    ..PnpPowerCallbacks::default()
                });
                init.create_device().map(|_| ())
            }),
            unload: None,
        },
    );
    kmdf_sim::driver::bind_hardware_id(machine, KERNEL_ID, CHILD);
    kmdf_sim::driver::bind_hardware_id(machine, USER_ID, CHILD);
}

/// A machine with the child driver installed and a bus driver whose device hosts one Pdo with
/// `config`; returns the started bus node, its device and the Module.
fn bus(config: PdoConfig, veto: &'static AtomicBool) -> (Machine, DeviceNode, Device, Pdo) {
    let machine = Machine::new();
    install_child(&machine, veto);
    let slot = driver_support::install(&machine, BUS, false, move |m| m.add(Pdo::with(config)));
    let node = {
        let _on = machine.enter();
        machine
            .pnp()
            .plug_in(StackSpec::new("ROOT\\PdoBus", BUS))
            .unwrap()
    };
    let (device, pdo) = driver_support::take(&slot);
    (machine, node, device, pdo)
}

/// The child node whose PDO is `pdo`.
fn node_of(bus: &DeviceNode, pdo: &Device) -> DeviceNode {
    bus.children()
        .into_iter()
        .find(|c| c.pdo().as_ref() == Some(pdo.sim()))
        .expect("the PDO has a node")
}

fn present_serials(device: &Device) -> BTreeSet<u32> {
    let mut serials = BTreeSet::new();
    device.for_each_static_child(&mut |child| {
        let instance = child
            .sim()
            .pdo_identity()
            .and_then(|i| i.instance_id.clone())
            .unwrap();
        serials.insert(instance.parse::<u32>().unwrap());
        true
    });
    serials
}

fn assert_clean(machine: &Machine) {
    let violations = machine.verifier().violations();
    assert!(violations.is_empty(), "{violations:?}");
    machine.verdict().expect("no object left, nothing leaked");
}

// ---------------------------------------------------------------- a Module on the child PDO

/// Counts what reaches a Module hosted by a child PDO.
#[derive(Debug, Default)]
struct Counters {
    opens: AtomicUsize,
    d0_entries: AtomicUsize,
    closes: AtomicUsize,
}

#[dmf_module(crate = ::dmf_core, config = &'static Counters, open = Create, lock = Passive)]
struct Marker;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Marker {
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        module.config().opens.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn d0_entry(module: &Dispatched<'_, Self>, _previous: PowerDeviceState) -> NtResult<()> {
        module.config().d0_entries.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn close(module: &Dispatched<'_, Self>) {
        module.config().closes.fetch_add(1, Ordering::SeqCst);
    }
}

static PAIR_COUNTERS: Counters = Counters {
    opens: AtomicUsize::new(0),
    d0_entries: AtomicUsize::new(0),
    closes: AtomicUsize::new(0),
};

fn pair_modules(_device: &Device, modules: &mut ModuleInit) -> NtResult<()> {
    modules.add(Marker::with(&PAIR_COUNTERS));
    Ok(())
}

// ---------------------------------------------------------------- static children

static NEVER_REQUIRED_CALLS: AtomicUsize = AtomicUsize::new(0);

fn never_required(_pdo: &Pdo, previous: PowerDeviceState) -> bool {
    assert_eq!(
        previous,
        PowerDeviceState::D3Final,
        "asked in the first D0Entry"
    );
    NEVER_REQUIRED_CALLS.fetch_add(1, Ordering::SeqCst);
    false
}

fn hardware_id_format(_pdo: &Pdo, out: &mut IdBuffer, format: &str) -> NtResult<()> {
    // The record's ids carry a `%u` placeholder for the bus number (C's use of the callback).
    format_with_serial(format, 3, out)
}

fn pnp_caps(_pdo: &Pdo, caps: &mut PnpCapabilities) {
    caps.removable = dmf_core::platform::contract::device::TriState::True;
    caps.surprise_removal_ok = dmf_core::platform::contract::device::TriState::True;
}

static STATIC_RECORDS: [PdoRecord<'static>; 3] = [
    PdoRecord {
        hardware_ids: &[KERNEL_ID, "DmfBus%u\\Any"],
        compatible_ids: &["DmfBus\\Compatible"],
        description: "Kernel test function %u",
        serial_number: 1,
        address: Some(0x10),
        ..PdoRecord::EMPTY
    },
    PdoRecord {
        hardware_ids: &[USER_ID],
        description: "User test function",
        serial_number: 2,
        instance_id: Some("UserInstance"),
        ..PdoRecord::EMPTY
    },
    PdoRecord {
        hardware_ids: &["DmfBus\\NeverRequired"],
        description: "never",
        serial_number: 3,
        is_pdo_required: Some(never_required),
        ..PdoRecord::EMPTY
    },
];

static NO_VETO: AtomicBool = AtomicBool::new(false);

#[test]
fn static_children_are_plugged_at_the_first_d0_entry_with_their_identity() {
    let (machine, bus_node, device, pdo) = bus(
        PdoConfig {
            pdo_records: &STATIC_RECORDS,
            instance_id_format_string: "%04u",
            device_location: "DMF test bus",
            evt_pdo_hardware_id_format: Some(hardware_id_format),
            evt_pdo_pnp_capabilities: Some(pnp_caps),
            ..PdoConfig::default()
        },
        &NO_VETO,
    );
    let on = machine.enter();
    assert_eq!(NEVER_REQUIRED_CALLS.load(Ordering::SeqCst), 1);
    let children = bus_node.children();
    assert_eq!(children.len(), 2, "the third record is not required");
    for child in &children {
        assert_eq!(child.state(), NodeState::Started);
        assert_eq!(child.parent().as_ref(), Some(&bus_node));
    }
    // Record 1: ids (the second formatted by the client), instance id from the config's
    // format, description formatted with the serial number, location, en-US, capabilities.
    let first = children[0].pdo().unwrap();
    let identity = first.pdo_identity().unwrap();
    assert_eq!(identity.device_id.as_deref(), Some(KERNEL_ID));
    assert_eq!(identity.hardware_ids, [KERNEL_ID, "DmfBus3\\Any"]);
    assert_eq!(identity.compatible_ids, ["DmfBus\\Compatible"]);
    assert_eq!(identity.instance_id.as_deref(), Some("0001"));
    assert_eq!(identity.texts.len(), 1);
    assert_eq!(identity.texts[0].description, "Kernel test function 1");
    assert_eq!(identity.texts[0].location, "DMF test bus");
    assert_eq!(identity.texts[0].locale, 0x0409);
    assert_eq!(identity.default_locale, Some(0x0409));
    assert_eq!(children[0].instance_id(), format!("{KERNEL_ID}\\0001"));
    let caps = first.pnp_capabilities().unwrap();
    assert_eq!(caps.ui_number, Some(1));
    assert_eq!(caps.address, Some(0x10));
    assert_eq!(caps.removable, TriState::True);
    assert_eq!(caps.eject_supported, TriState::UseDefault);
    let power = first.power_capabilities().unwrap();
    assert_eq!(power.device_d1, TriState::False);
    assert_eq!(power.wake_from_d3, TriState::True);
    assert_eq!(
        power.device_state[3],
        Some(kmdf_sim::pnp::DevicePowerState::D3)
    );
    // Record 2: the client's instance id.
    let second = children[1].pdo().unwrap();
    assert_eq!(
        second.pdo_identity().unwrap().instance_id.as_deref(),
        Some("UserInstance")
    );
    // Both are the bus device's static children, its own function driver on each.
    assert_eq!(device.sim().static_children().len(), 2);
    assert!(children
        .iter()
        .all(|c| c.function_device().unwrap().driver().name() == CHILD));
    // A later D0Entry does not plug them again.
    bus_node.idle().unwrap();
    bus_node.wake_from_idle().unwrap();
    assert_eq!(bus_node.children().len(), 2);
    assert_eq!(
        pdo.device_plug(&[KERNEL_ID], &[], "dup", 1),
        Err(NtStatus::INVALID_PARAMETER)
    );
    bus_node.remove().unwrap();
    assert!(children.iter().all(|c| c.state() == NodeState::Removed));
    assert_eq!(first.pdo_status(), Some(PdoStatus::Missing));
    drop(on);
    assert_clean(&machine);
}

// ---------------------------------------------------------------- KMDF order

#[test]
fn child_function_driver_runs_after_the_bus_drivers_pdo_in_kmdf_order() {
    fn traced_pdo(_pdo: &Pdo, init: &mut DeviceInit, _record: &PdoRecord<'_>) -> NtResult<()> {
        // The bus driver's own PDO callbacks (a PDO without Modules).
        init.set_pnp_power_callbacks(PnpPowerCallbacks {
            prepare_hardware: Some(Arc::new(|_d, _r| Ok(()))),
            d0_entry: Some(Arc::new(|_d, _p| Ok(()))),
            d0_exit: Some(Arc::new(|_d, _t| Ok(()))),
            release_hardware: Some(Arc::new(|_d, _r| Ok(()))),
            surprise_removal: Some(Arc::new(|_d| {})),
            ..PnpPowerCallbacks::default()
        });
        Ok(())
    }
    let (machine, bus_node, _device, pdo) = bus(
        PdoConfig {
            evt_pdo_pre_create: Some(traced_pdo),
            ..PdoConfig::default()
        },
        &NO_VETO,
    );
    let on = machine.enter();
    machine.trace().clear();
    let child_pdo = pdo.device_plug(&[KERNEL_ID], &[], "Child %u", 5).unwrap();
    let pdo_name = child_pdo.sim().name().to_owned();
    let child = node_of(&bus_node, &child_pdo);
    let fdo_name = child.function_device().unwrap().name().to_owned();
    let calls = |machine: &Machine| -> Vec<String> {
        machine
            .trace()
            .filter(|e| {
                e.kind == TraceKind::Callback
                    && (e.object == pdo_name
                        || e.object == fdo_name
                        || e.object.starts_with("DRIVER"))
            })
            .into_iter()
            .map(|e| {
                let who = if e.object == pdo_name {
                    "PDO"
                } else if e.object == fdo_name {
                    "FDO"
                } else {
                    "DRIVER"
                };
                format!("{who} {}", e.text)
            })
            .collect()
    };
    assert_eq!(
        calls(&machine),
        [
            // The child's function driver is loaded for the child's hardware id.
            "DRIVER DriverEntry",
            "DRIVER EvtDriverDeviceAdd",
            "PDO EvtDevicePrepareHardware",
            "PDO EvtDeviceD0Entry(D3Final)",
            "FDO EvtDevicePrepareHardware",
            "FDO EvtDeviceD0Entry(D3Final)",
            "FDO EvtDeviceSelfManagedIoInit",
        ]
    );
    machine.trace().clear();
    // Unplug = surprise removal: the function driver first, the bus driver's PDO last.
    pdo.device_unplug(&child_pdo).unwrap();
    assert_eq!(child.state(), NodeState::SurpriseRemoved);
    assert_eq!(
        calls(&machine),
        [
            "FDO EvtDeviceSurpriseRemoval",
            "FDO EvtDeviceD0Exit(D3Final)",
            "FDO EvtDeviceReleaseHardware",
            "PDO EvtDeviceSurpriseRemoval",
            "PDO EvtDeviceD0Exit(D3Final)",
            "PDO EvtDeviceReleaseHardware",
        ]
    );
    assert_eq!(child_pdo.sim().pdo_status(), Some(PdoStatus::Missing));
    assert!(child_pdo.sim().object().is_deleted());
    bus_node.remove().unwrap();
    drop(on);
    assert_clean(&machine);
}

// ---------------------------------------------------------------- C's thread action

#[test]
fn a_pair_with_their_own_modules_plugs_and_unplugs_by_serial_number() {
    let (machine, bus_node, device, pdo) = bus(PdoConfig::default(), &NO_VETO);
    let on = machine.enter();
    let kernel = PdoRecord {
        hardware_ids: &[KERNEL_ID],
        description: "DMF Test Function Driver (Kernel)",
        serial_number: 1,
        modules_add: Some(pair_modules),
        ..PdoRecord::EMPTY
    };
    let user = PdoRecord {
        hardware_ids: &[USER_ID],
        description: "DMF Test Function Driver (User)",
        serial_number: 2,
        modules_add: Some(pair_modules),
        ..PdoRecord::EMPTY
    };
    let first = pdo.device_plug_ex(&kernel).unwrap();
    let second = pdo.device_plug_ex(&user).unwrap();
    assert_eq!(present_serials(&device), BTreeSet::from([1, 2]));
    assert_eq!(PAIR_COUNTERS.opens.load(Ordering::SeqCst), 2);
    assert_eq!(
        PAIR_COUNTERS.d0_entries.load(Ordering::SeqCst),
        2,
        "each PDO's Modules saw D0Entry"
    );
    // The same serial number with the same hardware id is refused; another id is not.
    assert_eq!(
        pdo.device_plug_ex(&kernel),
        Err(NtStatus::INVALID_PARAMETER)
    );
    let other_id = PdoRecord {
        hardware_ids: &["DmfBus\\Other"],
        serial_number: 1,
        ..kernel
    };
    let third = pdo.device_plug_ex(&other_id).unwrap();
    assert_eq!(
        node_of(&bus_node, &third).state(),
        NodeState::Failed,
        "no driver for that id"
    );
    assert_eq!(
        node_of(&bus_node, &third).last_status(),
        kmdf_sim::Status::NO_SUCH_DEVICE
    );
    // DevicePlug refuses any serial number in use.
    assert_eq!(
        pdo.device_plug(&["DmfBus\\Fresh"], &[], "x", 2),
        Err(NtStatus::INVALID_PARAMETER)
    );

    pdo.device_unplug_ex("DMFBUS\\OTHER", 1).unwrap();
    assert_eq!(third.sim().pdo_status(), Some(PdoStatus::Missing));
    pdo.device_unplug_using_serial_number(1).unwrap();
    assert_eq!(
        node_of(&bus_node, &first).state(),
        NodeState::SurpriseRemoved
    );
    assert_eq!(
        pdo.device_unplug_using_serial_number(1),
        Err(NtStatus::NOT_FOUND)
    );
    assert_eq!(
        pdo.device_unplug(&first),
        Err(NtStatus::INVALID_PARAMETER),
        "already gone"
    );
    pdo.device_unplug(&second).unwrap();
    assert_eq!(PAIR_COUNTERS.opens.load(Ordering::SeqCst), 3);
    assert_eq!(
        PAIR_COUNTERS.closes.load(Ordering::SeqCst),
        3,
        "each PDO's Modules closed"
    );
    assert!(present_serials(&device).is_empty());
    // C's test reuses the serial numbers after the unplug.
    pdo.device_plug_ex(&kernel).unwrap();
    pdo.device_unplug_all().unwrap();
    assert!(present_serials(&device).is_empty());
    assert_eq!(pdo.device_unplug_all(), Ok(()), "nothing to unplug");
    bus_node.remove().unwrap();
    drop(on);
    assert_clean(&machine);
}

static KEPT_COUNTERS: Counters = Counters {
    opens: AtomicUsize::new(0),
    d0_entries: AtomicUsize::new(0),
    closes: AtomicUsize::new(0),
};

fn kept_modules(_device: &Device, modules: &mut ModuleInit) -> NtResult<()> {
    modules.add(Marker::with(&KEPT_COUNTERS));
    Ok(())
}

/// A child disabled and enabled again keeps its PDO's Module tree: as in KMDF, a PDO its bus
/// still reports gets EvtDeviceSelfManagedIoFlush but not EvtDeviceSelfManagedIoCleanup (where
/// DMF destroys a device's Modules) on the way down, and EvtDeviceSelfManagedIoRestart on the
/// way up; its Modules see D0Entry again and are closed only when the child is unplugged.
#[test]
fn a_disabled_then_enabled_child_keeps_its_pdos_modules() {
    let (machine, bus_node, _device, pdo) = bus(PdoConfig::default(), &NO_VETO);
    let on = machine.enter();
    let record = PdoRecord {
        hardware_ids: &[KERNEL_ID],
        description: "DMF Test Function Driver (Kernel)",
        serial_number: 7,
        modules_add: Some(kept_modules),
        ..PdoRecord::EMPTY
    };
    let child_pdo = pdo.device_plug_ex(&record).unwrap();
    let child = node_of(&bus_node, &child_pdo);
    assert_eq!(child.state(), NodeState::Started);
    assert_eq!(KEPT_COUNTERS.opens.load(Ordering::SeqCst), 1);
    assert_eq!(KEPT_COUNTERS.d0_entries.load(Ordering::SeqCst), 1);

    child.disable().unwrap();
    assert_eq!(child.state(), NodeState::Disabled);
    assert_eq!(
        KEPT_COUNTERS.closes.load(Ordering::SeqCst),
        0,
        "no Cleanup on the kept PDO: its Modules live on"
    );
    child.enable().unwrap();
    assert_eq!(child.state(), NodeState::Started);
    assert_eq!(child.pdo().as_ref(), Some(child_pdo.sim()));
    assert_eq!(
        KEPT_COUNTERS.d0_entries.load(Ordering::SeqCst),
        2,
        "the same Module tree saw the restart's D0Entry"
    );
    assert_eq!(
        KEPT_COUNTERS.opens.load(Ordering::SeqCst),
        1,
        "not recreated"
    );
    let restarts = machine
        .trace()
        .filter(|e| {
            e.kind == TraceKind::Callback
                && e.object == child_pdo.sim().name()
                && e.text.starts_with("EvtDeviceSelfManagedIo")
        })
        .into_iter()
        .map(|e| e.text)
        .collect::<Vec<_>>();
    assert_eq!(
        restarts,
        [
            "EvtDeviceSelfManagedIoInit",
            "EvtDeviceSelfManagedIoSuspend",
            "EvtDeviceSelfManagedIoFlush",
            "EvtDeviceSelfManagedIoRestart",
        ]
    );

    // Disabled again, then unplugged: the PDO is cleaned up, its Modules closed.
    child.disable().unwrap();
    pdo.device_unplug(&child_pdo).unwrap();
    assert_eq!(child_pdo.sim().pdo_status(), Some(PdoStatus::Missing));
    assert_eq!(KEPT_COUNTERS.closes.load(Ordering::SeqCst), 1);
    bus_node.remove().unwrap();
    drop(on);
    assert_clean(&machine);
}

// ---------------------------------------------------------------- bus removal

#[test]
fn surprise_removal_of_the_bus_removes_its_children_first() {
    let (machine, bus_node, device, pdo) = bus(PdoConfig::default(), &NO_VETO);
    let on = machine.enter();
    let a = pdo.device_plug(&[KERNEL_ID], &[], "A", 1).unwrap();
    let b = pdo.device_plug(&[USER_ID], &[], "B", 2).unwrap();
    let raw = pdo
        .device_plug_ex(&PdoRecord {
            hardware_ids: &["DmfBus\\RawOnly"],
            description: "raw",
            serial_number: 3,
            raw_device_class: Some(Guid::new(1, 2, 3, [4; 8])),
            ..PdoRecord::EMPTY
        })
        .unwrap();
    let raw_node = node_of(&bus_node, &raw);
    assert_eq!(
        raw_node.state(),
        NodeState::Started,
        "a raw PDO starts without a driver"
    );
    assert_eq!(raw_node.stack().len(), 1);
    assert!(raw.sim().is_power_policy_owner());
    let bus_fdo = device.sim().name().to_owned();
    machine.trace().clear();
    bus_node.surprise_remove().unwrap();
    let surprise: Vec<(Option<String>, String)> = machine
        .trace()
        .filter(|e| e.kind == TraceKind::Callback && e.text == "EvtDeviceSurpriseRemoval")
        .into_iter()
        .map(|e| (e.driver.clone(), e.object.clone()))
        .collect();
    assert_eq!(surprise.len(), 3, "{surprise:?}");
    assert_eq!(surprise[0].0.as_deref(), Some(CHILD));
    assert_eq!(surprise[1].0.as_deref(), Some(CHILD));
    assert_eq!(surprise[2].1, bus_fdo, "the bus device last");
    for child in bus_node.children() {
        assert_eq!(child.state(), NodeState::SurpriseRemoved);
    }
    assert!(a.sim().object().is_deleted() && b.sim().object().is_deleted());
    assert!(raw.sim().object().is_deleted());
    drop(on);
    assert_clean(&machine);
}

// ---------------------------------------------------------------- eject

static VETO: AtomicBool = AtomicBool::new(false);

#[test]
fn eject_removes_the_child_in_order_unless_its_driver_vetoes() {
    let (machine, bus_node, _device, pdo) = bus(PdoConfig::default(), &VETO);
    let on = machine.enter();
    let child = pdo.device_plug(&[KERNEL_ID], &[], "A", 1).unwrap();
    let node = node_of(&bus_node, &child);
    VETO.store(true, Ordering::SeqCst);
    pdo.device_eject(&child).unwrap();
    assert_eq!(
        node.state(),
        NodeState::Started,
        "vetoed by EvtDeviceQueryRemove"
    );
    assert_eq!(child.sim().pdo_status(), Some(PdoStatus::Enumerated));
    VETO.store(false, Ordering::SeqCst);
    machine.trace().clear();
    pdo.device_eject_using_serial_number(1).unwrap();
    assert_eq!(node.state(), NodeState::Removed);
    let calls = machine.trace().callbacks_for(CHILD);
    assert_eq!(
        calls,
        [
            "EvtDeviceQueryRemove",
            "EvtDeviceD0Exit(D3Final)",
            "EvtDeviceReleaseHardware"
        ]
    );
    assert_eq!(child.sim().pdo_status(), Some(PdoStatus::Missing));
    assert_eq!(
        pdo.device_eject_using_serial_number(1),
        Err(NtStatus::NOT_FOUND)
    );
    assert_eq!(pdo.device_eject(&child), Err(NtStatus::INVALID_PARAMETER));
    bus_node.remove().unwrap();
    drop(on);
    assert_clean(&machine);
}

// ---------------------------------------------------------------- bad inputs

#[test]
fn bad_inputs_are_refused_with_invalid_parameter_and_leave_nothing() {
    let (machine, bus_node, device, pdo) = bus(PdoConfig::default(), &NO_VETO);
    let on = machine.enter();
    let long = "X".repeat(MAXIMUM_ID_LENGTH + 1);
    let nine: Vec<&str> = (0..9).map(|_| "DmfBus\\Id").collect();
    let cases: Vec<(&str, NtResult<Device>)> = vec![
        ("no hardware id", pdo.device_plug(&[], &[], "x", 1)),
        ("nine hardware ids", pdo.device_plug(&nine, &[], "x", 1)),
        (
            "nine compatible ids",
            pdo.device_plug(&["A"], &nine, "x", 1),
        ),
        ("id too long", pdo.device_plug(&[&long], &[], "x", 1)),
        ("empty id", pdo.device_plug(&[""], &[], "x", 1)),
        ("NUL in id", pdo.device_plug(&["A\0B"], &[], "x", 1)),
        (
            "description too long",
            pdo.device_plug(&["A"], &[], &long, 1),
        ),
        ("unknown conversion", pdo.device_plug(&["A"], &[], "%s", 1)),
        ("two arguments", pdo.device_plug(&["A"], &[], "%u%u", 1)),
        ("dangling %", pdo.device_plug(&["A"], &[], "50%", 1)),
        (
            "instance id too long",
            pdo.device_plug_ex(&PdoRecord {
                hardware_ids: &["A"],
                instance_id: Some(&long),
                ..PdoRecord::EMPTY
            }),
        ),
    ];
    for (what, result) in cases {
        assert_eq!(result.err(), Some(NtStatus::INVALID_PARAMETER), "{what}");
    }
    assert!(bus_node.children().is_empty());
    assert!(device.sim().static_children().is_empty());
    // A device that is not one of its children.
    assert_eq!(pdo.device_unplug(&device), Err(NtStatus::INVALID_PARAMETER));
    assert_eq!(pdo.device_eject(&device), Err(NtStatus::INVALID_PARAMETER));
    // The format helper on its own.
    let mut out = IdBuffer::default();
    format_with_serial("Board %04X (%%) #%lu", 0x2a, &mut out).unwrap_err();
    format_with_serial("Board %04X (%%)", 0x2a, &mut out).unwrap();
    assert_eq!(out.as_str(), "Board 002A (%)");
    bus_node.remove().unwrap();
    // After close every Method is refused.
    assert_eq!(
        pdo.device_plug(&["A"], &[], "x", 1).err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(pdo.device_unplug_all(), Err(NtStatus::INVALID_DEVICE_STATE));
    drop(on);
    assert_clean(&machine);
}

static TOO_MANY: [PdoRecord<'static>; 65] = [PdoRecord {
    hardware_ids: &["A"],
    ..PdoRecord::EMPTY
}; 65];

#[test]
fn a_config_with_too_many_records_fails_the_device_add() {
    let machine = Machine::new();
    let _slot = driver_support::install(&machine, BUS, false, |m| {
        m.add(Pdo::with(PdoConfig {
            pdo_records: &TOO_MANY,
            ..PdoConfig::default()
        }))
    });
    let on = machine.enter();
    let node = machine.pnp().plug_in(StackSpec::new("ROOT\\PdoBus", BUS));
    assert_eq!(node.err(), Some(kmdf_sim::Status::INVALID_PARAMETER));
    drop(on);
    assert_clean(&machine);
}

// ---------------------------------------------------------------- allocation failure

/// Fails the Nth allocation, then the Nth object creation, of a plug with Modules on the PDO,
/// for every N until the plug no longer reaches it: each failing plug returns the refusal and
/// leaves no child, no PDO, no Module behind.
#[test]
fn an_allocation_or_object_creation_failing_mid_plug_leaves_nothing() {
    static COUNTERS: Counters = Counters {
        opens: AtomicUsize::new(0),
        d0_entries: AtomicUsize::new(0),
        closes: AtomicUsize::new(0),
    };
    fn modules(_device: &Device, modules: &mut ModuleInit) -> NtResult<()> {
        modules.add(Marker::with(&COUNTERS));
        Ok(())
    }
    let (machine, bus_node, device, pdo) = bus(PdoConfig::default(), &NO_VETO);
    let on = machine.enter();
    let record = PdoRecord {
        hardware_ids: &[KERNEL_ID, "DmfBus\\Second"],
        compatible_ids: &["DmfBus\\Compatible"],
        description: "Child %u",
        serial_number: 9,
        modules_add: Some(modules),
        ..PdoRecord::EMPTY
    };
    for point in [FaultPoint::Allocation, FaultPoint::ObjectCreation] {
        let mut failures = 0;
        for n in 1..=400 {
            machine.faults().fail_nth(point, n);
            let result = pdo.device_plug_ex(&record);
            let injected = machine.faults().injected(point);
            machine.faults().disarm(point);
            match result {
                Err(status) => {
                    assert!(
                        injected > 0,
                        "{point:?} #{n}: {status:?} without an injected fault"
                    );
                    failures += 1;
                    let started = bus_node
                        .children()
                        .into_iter()
                        .filter(|c| c.state() == NodeState::Started)
                        .count();
                    assert_eq!(started, 0, "{point:?} #{n}");
                    assert!(device.sim().static_children().is_empty(), "{point:?} #{n}");
                    assert_eq!(
                        COUNTERS.opens.load(Ordering::SeqCst),
                        COUNTERS.closes.load(Ordering::SeqCst),
                        "{point:?} #{n}: the PDO's Modules were destroyed"
                    );
                }
                Ok(child) => {
                    if injected == 0 {
                        pdo.device_unplug(&child).unwrap();
                        break;
                    }
                    // The fault hit the child's own stack (its driver or start): the PDO was
                    // reported; the child node failed. Unplug it and go on.
                    pdo.device_unplug(&child).unwrap();
                    failures += 1;
                }
            }
            assert!(n < 400, "the sweep ends");
        }
        assert!(
            failures > 3,
            "{point:?}: the plug has failure points ({failures})"
        );
    }
    assert_eq!(
        COUNTERS.opens.load(Ordering::SeqCst),
        COUNTERS.closes.load(Ordering::SeqCst)
    );
    bus_node.remove().unwrap();
    drop(on);
    assert_clean(&machine);
}

static RETRY_FAILED_ONCE: AtomicBool = AtomicBool::new(false);

/// Fails the user child's id the first time it is formatted.
fn fail_user_id_once(_pdo: &Pdo, out: &mut IdBuffer, id: &str) -> NtResult<()> {
    if id == USER_ID && !RETRY_FAILED_ONCE.swap(true, Ordering::SeqCst) {
        return Err(NtStatus::INSUFFICIENT_RESOURCES);
    }
    out.push_str(id)
}

static RETRY_RECORDS: [PdoRecord<'static>; 2] = [
    PdoRecord {
        hardware_ids: &[KERNEL_ID],
        description: "first",
        serial_number: 1,
        ..PdoRecord::EMPTY
    },
    PdoRecord {
        hardware_ids: &[USER_ID],
        description: "second",
        serial_number: 2,
        ..PdoRecord::EMPTY
    },
];

/// A static record failing in the first D0Entry is plugged at the next one (C's ScheduledTask
/// retries), without plugging the first record twice; the bus's D0Entry itself succeeds.
#[test]
fn a_static_record_that_fails_is_plugged_at_the_next_d0_entry() {
    let (machine, bus_node, device, _pdo) = bus(
        PdoConfig {
            pdo_records: &RETRY_RECORDS,
            evt_pdo_hardware_id_format: Some(fail_user_id_once),
            ..PdoConfig::default()
        },
        &NO_VETO,
    );
    let on = machine.enter();
    assert!(RETRY_FAILED_ONCE.load(Ordering::SeqCst));
    assert_eq!(bus_node.state(), NodeState::Started);
    assert_eq!(present_serials(&device), BTreeSet::from([1]));
    bus_node.idle().unwrap();
    bus_node.wake_from_idle().unwrap();
    assert_eq!(present_serials(&device), BTreeSet::from([1, 2]));
    assert_eq!(
        bus_node.children().len(),
        2,
        "the first record was not plugged twice"
    );
    bus_node.remove().unwrap();
    drop(on);
    assert_clean(&machine);
}

// ---------------------------------------------------------------- seeded churn

/// C's two threads plugging and unplugging pairs, as a seeded sequence of plugs, unplugs (by
/// handle, serial number, hardware id, all), ejects and bus idle/wake cycles, checked after
/// every step against a model of the present serial numbers.
#[test]
fn seeded_plug_unplug_eject_churn_matches_the_model() {
    static CHURN: Counters = Counters {
        opens: AtomicUsize::new(0),
        d0_entries: AtomicUsize::new(0),
        closes: AtomicUsize::new(0),
    };
    fn modules(_device: &Device, modules: &mut ModuleInit) -> NtResult<()> {
        modules.add(Marker::with(&CHURN));
        Ok(())
    }
    let seed = task_support::seed("pdo churn", 0x5EED_F0D0);
    let (machine, bus_node, device, pdo) = bus(PdoConfig::default(), &NO_VETO);
    let on = machine.enter();
    let mut rng = Rng::new(seed);
    let mut model: BTreeSet<u32> = BTreeSet::new();
    let handles: Mutex<Vec<(u32, Device)>> = Mutex::new(Vec::new());
    for step in 0..300 {
        let serial = u32::try_from(rng.below(6)).unwrap() + 1;
        let id = if serial % 2 == 1 { KERNEL_ID } else { USER_ID };
        match rng.below(10) {
            0..=3 => {
                let record = PdoRecord {
                    hardware_ids: &[id],
                    description: "churn %u",
                    serial_number: serial,
                    modules_add: (rng.below(2) == 0).then_some(modules as _),
                    ..PdoRecord::EMPTY
                };
                let result = pdo.device_plug_ex(&record);
                if model.insert(serial) {
                    let child =
                        result.unwrap_or_else(|s| panic!("step {step}: plug {serial}: {s:?}"));
                    handles.lock().unwrap().push((serial, child));
                } else {
                    assert_eq!(
                        result.err(),
                        Some(NtStatus::INVALID_PARAMETER),
                        "step {step}"
                    );
                }
            }
            4 => {
                let result = pdo.device_unplug_using_serial_number(serial);
                let expected = if model.remove(&serial) {
                    Ok(())
                } else {
                    Err(NtStatus::NOT_FOUND)
                };
                assert_eq!(result, expected, "step {step}");
            }
            5 => {
                let result = pdo.device_unplug_ex(id, serial);
                let expected = if model.remove(&serial) {
                    Ok(())
                } else {
                    Err(NtStatus::NOT_FOUND)
                };
                assert_eq!(result, expected, "step {step}");
            }
            6 => {
                let picked = handles
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(s, _)| *s == serial)
                    .cloned();
                if let Some((_, child)) = picked {
                    let result = pdo.device_unplug(&child);
                    if model.remove(&serial) {
                        result.unwrap();
                    } else {
                        assert_eq!(result, Err(NtStatus::INVALID_PARAMETER), "step {step}");
                    }
                }
            }
            7 => {
                let result = pdo.device_eject_using_serial_number(serial);
                let expected = if model.remove(&serial) {
                    Ok(())
                } else {
                    Err(NtStatus::NOT_FOUND)
                };
                assert_eq!(result, expected, "step {step}");
            }
            8 => {
                bus_node.idle().unwrap();
                bus_node.wake_from_idle().unwrap();
            }
            _ => {
                if rng.below(4) == 0 {
                    pdo.device_unplug_all().unwrap();
                    model.clear();
                }
            }
        }
        handles
            .lock()
            .unwrap()
            .retain(|(s, d)| model.contains(s) || !d.sim().object().is_deleted());
        assert_eq!(
            present_serials(&device),
            model,
            "step {step} (seed {seed:#x})"
        );
        let started = bus_node
            .children()
            .iter()
            .filter(|c| c.state() == NodeState::Started)
            .count();
        assert_eq!(started, model.len(), "step {step}");
    }
    pdo.device_unplug_all().unwrap();
    assert_eq!(
        CHURN.opens.load(Ordering::SeqCst),
        CHURN.closes.load(Ordering::SeqCst)
    );
    bus_node.remove().unwrap();
    drop(on);
    assert_clean(&machine);
}

// ---------------------------------------------------------------- close

/// A dynamic Pdo on a bus device: its close reports missing the children it plugged, not the
/// ones another Pdo on the same device plugged.
#[test]
fn close_unplugs_the_modules_own_children() {
    type Slot = Arc<Mutex<Option<(Device, dmf_core::device::DmfDevice)>>>;
    let machine = Machine::new();
    install_child(&machine, &NO_VETO);
    let slot: Slot = Slot::default();
    let s = Arc::clone(&slot);
    simulator::install_driver(
        &machine,
        BUS,
        DriverConfig {
            device_add: Arc::new(move |_driver, init| {
                let mut dmf = DmfDeviceInit::new(init);
                let device = dmf.create_device(DeviceAttributes::default())?;
                let dmf_device = dmf.modules_create()?;
                *s.lock().unwrap() = Some((device, dmf_device));
                Ok(())
            }),
            unload: None,
        },
    );
    let on = machine.enter();
    let bus_node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\PdoBus", BUS))
        .unwrap();
    let (device, dmf_device) = slot.lock().unwrap().take().unwrap();
    let first: DynamicModule<Pdo> = Pdo::with(PdoConfig::default())
        .create(dmf_device.collection())
        .unwrap();
    let second: DynamicModule<Pdo> = Pdo::with(PdoConfig::default())
        .create(dmf_device.collection())
        .unwrap();
    first.device_plug(&[KERNEL_ID], &[], "a", 1).unwrap();
    first.device_plug(&[KERNEL_ID], &[], "b", 2).unwrap();
    second.device_plug(&[USER_ID], &[], "c", 3).unwrap();
    assert_eq!(present_serials(&device), BTreeSet::from([1, 2, 3]));
    drop(first);
    assert_eq!(present_serials(&device), BTreeSet::from([3]));
    drop(second);
    assert!(present_serials(&device).is_empty());
    bus_node.remove().unwrap();
    drop(dmf_device);
    drop(on);
    assert_clean(&machine);
}

/// C's two work threads: each plugs its own pair of children (their own Modules on them),
/// waits a seeded while, unplugs them, in a bounded loop, while the other does the same; at the
/// end nothing is plugged and every child Module opened was closed.
#[test]
fn two_threads_plug_and_unplug_pairs_concurrently() {
    static THREADED: Counters = Counters {
        opens: AtomicUsize::new(0),
        d0_entries: AtomicUsize::new(0),
        closes: AtomicUsize::new(0),
    };
    fn modules(_device: &Device, modules: &mut ModuleInit) -> NtResult<()> {
        modules.add(Marker::with(&THREADED));
        Ok(())
    }
    let (machine, bus_node, device, pdo) = bus(PdoConfig::default(), &NO_VETO);
    let pdo = Arc::new(pdo);
    let workers: Vec<_> = (0..2_u32)
        .map(|thread| {
            let (machine, pdo) = (machine.clone(), Arc::clone(&pdo));
            std::thread::spawn(move || {
                let _on = machine.enter();
                let mut rng = Rng::new(0xC0FF_EE00 + u64::from(thread));
                let pair = [thread * 2 + 1, thread * 2 + 2];
                for round in 0..25 {
                    let kernel = PdoRecord {
                        hardware_ids: &[KERNEL_ID],
                        description: "kernel %u",
                        serial_number: pair[0],
                        modules_add: Some(modules),
                        ..PdoRecord::EMPTY
                    };
                    let user = PdoRecord {
                        hardware_ids: &[USER_ID],
                        description: "user %u",
                        serial_number: pair[1],
                        modules_add: Some(modules),
                        ..PdoRecord::EMPTY
                    };
                    let a = pdo.device_plug_ex(&kernel).unwrap();
                    let b = pdo.device_plug_ex(&user).unwrap();
                    for _ in 0..rng.below(4) {
                        std::thread::yield_now();
                    }
                    pdo.device_unplug(&a)
                        .unwrap_or_else(|s| panic!("thread {thread} round {round}: {s:?}"));
                    pdo.device_unplug(&b).unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let on = machine.enter();
    assert!(present_serials(&device).is_empty());
    assert_eq!(THREADED.opens.load(Ordering::SeqCst), 100);
    assert_eq!(THREADED.closes.load(Ordering::SeqCst), 100);
    bus_node.remove().unwrap();
    drop(on);
    assert_clean(&machine);
}
