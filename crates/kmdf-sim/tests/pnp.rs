//! PnP/power scenarios over a stack of a lower filter, a function driver and an upper filter:
//! every test asserts the full callback sequence (kmdf-sequences §2–§4).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kmdf_sim::device::{Device, DeviceInit, DevicePowerHook, S0IdleSettings};
use kmdf_sim::driver::{self, DriverConfig};
use kmdf_sim::object::{live_objects, ObjectAttributes};
use kmdf_sim::pnp::{
    DevicePowerState, FailedAction, NodeState, RelationType, SpecialFileType, StackSpec,
    StopAction, SystemPowerState, TargetDeviceHook,
};
use kmdf_sim::trace::TraceKind;
use kmdf_sim::{Machine, Status};

const DRIVERS: [&str; 3] = ["lower", "fdo", "upper"];

/// Statuses to return: (driver, callback) → status.
type Knobs = Arc<Mutex<HashMap<(String, String), Status>>>;

fn knob(k: &Knobs, d: &str, cb: &str) -> Status {
    k.lock()
        .unwrap()
        .get(&(d.to_owned(), cb.to_owned()))
        .copied()
        .unwrap_or(Status::SUCCESS)
}

struct Hook(String);

impl DevicePowerHook for Hook {
    fn started(&self, _dev: &Device) {
        kmdf_sim::Machine::current()
            .unwrap()
            .trace()
            .note(&format!("{} hook started", self.0));
    }
    fn stopping(&self, _dev: &Device, action: StopAction) {
        kmdf_sim::Machine::current()
            .unwrap()
            .trace()
            .note(&format!("{} hook stopping {action:?}", self.0));
    }
    fn removed(&self, _dev: &Device) {
        kmdf_sim::Machine::current()
            .unwrap()
            .trace()
            .note(&format!("{} hook removed", self.0));
    }
}

fn config(name: &'static str, k: &Knobs) -> DriverConfig {
    let k = Arc::clone(k);
    DriverConfig::new(move |_drv, init: &mut DeviceInit| {
        let s = knob(&k, name, "DeviceAdd");
        if !s.is_success() {
            return Err(s);
        }
        if name != "fdo" {
            init.set_filter();
        }
        macro_rules! st {
            ($cb:literal) => {{
                let k = Arc::clone(&k);
                Some(Arc::new(move |_d: &Device| knob(&k, name, $cb)))
            }};
        }
        macro_rules! pw {
            ($cb:literal) => {{
                let k = Arc::clone(&k);
                Some(Arc::new(move |_d: &Device, _s| knob(&k, name, $cb)))
            }};
        }
        macro_rules! vd {
            () => {
                Some(Arc::new(|_d: &Device| {}))
            };
        }
        let p = &mut init.pnp;
        p.prepare_hardware = {
            let k = Arc::clone(&k);
            Some(Arc::new(move |_d: &Device, _r: &_| {
                knob(&k, name, "PrepareHardware")
            }))
        };
        p.release_hardware = Some(Arc::new(|_d: &Device, _r: &_| Status::SUCCESS));
        p.d0_entry = pw!("D0Entry");
        p.d0_entry_post_interrupts_enabled = pw!("PostInterrupts");
        p.d0_exit_pre_interrupts_disabled = pw!("PreInterrupts");
        p.d0_exit = pw!("D0Exit");
        p.self_managed_io_init = st!("SmioInit");
        p.self_managed_io_restart = st!("SmioRestart");
        p.self_managed_io_suspend = st!("SmioSuspend");
        p.self_managed_io_flush = vd!();
        p.self_managed_io_cleanup = vd!();
        p.surprise_removal = vd!();
        p.query_remove = st!("QueryRemove");
        p.query_stop = st!("QueryStop");
        p.relations_query = Some(Arc::new(|_d: &Device, _k| {}));
        p.usage_notification_ex = {
            let k = Arc::clone(&k);
            Some(Arc::new(move |_d: &Device, _t, _p| knob(&k, name, "Usage")))
        };
        let pp = &mut init.power_policy;
        pp.arm_wake_from_s0 = st!("ArmS0");
        pp.disarm_wake_from_s0 = vd!();
        pp.wake_from_s0_triggered = vd!();
        pp.arm_wake_from_sx_with_reason = {
            let k = Arc::clone(&k);
            Some(Arc::new(move |_d: &Device, _a, _b| knob(&k, name, "ArmSx")))
        };
        pp.disarm_wake_from_sx = vd!();
        pp.wake_from_sx_triggered = vd!();
        let dev = Device::create(init, ObjectAttributes::new())?;
        dev.add_power_hook(Arc::new(Hook(name.to_owned())));
        if name == "fdo" {
            dev.assign_s0_idle_settings(S0IdleSettings {
                can_wake: true,
                dx_state: DevicePowerState::D3,
            });
            dev.assign_sx_wake_settings(true);
        }
        Ok(())
    })
}

struct Rig {
    m: Machine,
    k: Knobs,
}

impl Rig {
    fn new() -> Rig {
        let m = Machine::new();
        let k: Knobs = Arc::default();
        for d in DRIVERS {
            driver::install(&m, d, config(d, &k));
        }
        Rig { m, k }
    }

    fn fail(&self, d: &str, cb: &str, s: Status) {
        self.k
            .lock()
            .unwrap()
            .insert((d.to_owned(), cb.to_owned()), s);
    }

    fn spec() -> StackSpec {
        StackSpec::new("ROOT\\SIM", "fdo")
            .lower_filter("lower")
            .upper_filter("upper")
            .resource("irq 5")
    }

    fn plug(&self) -> kmdf_sim::pnp::DeviceNode {
        let n = self.m.pnp().plug_in(Rig::spec()).expect("start");
        self.m.trace().clear();
        n
    }

    /// The stack's callbacks and hook events since the last clear, as "driver:Callback".
    fn seq(&self) -> Vec<String> {
        let v = self
            .m
            .trace()
            .events()
            .into_iter()
            .filter_map(|e| match e.kind {
                TraceKind::Callback => {
                    let d = e.driver?;
                    DRIVERS
                        .contains(&d.as_str())
                        .then(|| format!("{d}:{}", e.text))
                }
                TraceKind::Note if e.text.contains(" hook ") => {
                    let (d, rest) = e.text.split_once(" hook ")?;
                    Some(format!("{d}:[{rest}]"))
                }
                _ => None,
            })
            .collect();
        self.m.trace().clear();
        v
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

fn first_up(d: &str) -> Vec<String> {
    s(&[
        "EvtDevicePrepareHardware",
        "EvtDeviceD0Entry(D3Final)",
        "EvtDeviceD0EntryPostInterruptsEnabled(D3Final)",
        "[started]",
        "EvtDeviceSelfManagedIoInit",
    ])
    .into_iter()
    .map(|c| format!("{d}:{c}"))
    .collect()
}

fn removal(d: &str) -> Vec<String> {
    s(&[
        "EvtDeviceSelfManagedIoSuspend",
        "[stopping Purge]",
        "EvtDeviceD0ExitPreInterruptsDisabled(D3Final)",
        "EvtDeviceD0Exit(D3Final)",
        "EvtDeviceReleaseHardware",
        "EvtDeviceSelfManagedIoFlush",
        "EvtDeviceSelfManagedIoCleanup",
    ])
    .into_iter()
    .map(|c| format!("{d}:{c}"))
    .collect()
}

fn removed_hooks() -> Vec<String> {
    s(&["upper:[removed]", "fdo:[removed]", "lower:[removed]"])
}

fn cat(parts: Vec<Vec<String>>) -> Vec<String> {
    parts.into_iter().flatten().collect()
}

fn assert_all_gone(r: &Rig) {
    assert!(live_objects(&r.m).is_empty(), "{:?}", live_objects(&r.m));
    for d in DRIVERS {
        assert!(
            kmdf_sim::driver::Driver::loaded(&r.m, d).is_none(),
            "{d} still loaded"
        );
    }
}

#[test]
fn pnp_first_start() {
    let r = Rig::new();
    let node = r.m.pnp().plug_in(Rig::spec()).unwrap();
    let expected = cat(vec![
        s(&["lower:DriverEntry", "lower:EvtDriverDeviceAdd"]),
        s(&["fdo:DriverEntry", "fdo:EvtDriverDeviceAdd"]),
        s(&["upper:DriverEntry", "upper:EvtDriverDeviceAdd"]),
        first_up("lower"),
        first_up("fdo"),
        first_up("upper"),
    ]);
    assert_eq!(r.seq(), expected);
    assert_eq!(node.state(), NodeState::Started);
    let stack = node.stack();
    assert_eq!(stack.len(), 3);
    assert!(stack.iter().all(Device::is_in_d0));
    assert!(stack[0].is_filter() && !stack[1].is_filter() && stack[2].is_filter());
    assert!(stack[1].is_power_policy_owner() && !stack[0].is_power_policy_owner());
    assert_eq!(stack[2].lower(), Some(stack[1].clone()));
    assert_eq!(stack[0].lower(), None);
    assert_eq!(stack[1].node(), Some(node.clone()));
    assert_eq!(stack[1].driver().name(), "fdo");
    assert!(r.m.verifier().violations().is_empty());
}

fn rebalance_down(d: &str) -> Vec<String> {
    s(&[
        "EvtDeviceSelfManagedIoSuspend",
        "[stopping Suspend]",
        "EvtDeviceD0ExitPreInterruptsDisabled(D3Final)",
        "EvtDeviceD0Exit(D3Final)",
        "EvtDeviceReleaseHardware",
    ])
    .into_iter()
    .map(|c| format!("{d}:{c}"))
    .collect()
}

fn rebalance_up(d: &str) -> Vec<String> {
    s(&[
        "EvtDevicePrepareHardware",
        "EvtDeviceD0Entry(D3Final)",
        "EvtDeviceD0EntryPostInterruptsEnabled(D3Final)",
        "[started]",
        "EvtDeviceSelfManagedIoRestart",
    ])
    .into_iter()
    .map(|c| format!("{d}:{c}"))
    .collect()
}

#[test]
fn pnp_rebalance_restart_and_query_stop_veto() {
    let r = Rig::new();
    let node = r.plug();
    node.rebalance().unwrap();
    let expected = cat(vec![
        s(&[
            "upper:EvtDeviceQueryStop",
            "fdo:EvtDeviceQueryStop",
            "lower:EvtDeviceQueryStop",
        ]),
        rebalance_down("upper"),
        rebalance_down("fdo"),
        rebalance_down("lower"),
        rebalance_up("lower"),
        rebalance_up("fdo"),
        rebalance_up("upper"),
    ]);
    assert_eq!(r.seq(), expected);
    assert_eq!(node.resources().generation, 1);
    assert_eq!(node.state(), NodeState::Started);

    // Veto by the function driver: nothing else runs.
    r.fail("fdo", "QueryStop", Status::UNSUCCESSFUL);
    assert_eq!(node.rebalance(), Err(Status::UNSUCCESSFUL));
    assert_eq!(
        r.seq(),
        s(&["upper:EvtDeviceQueryStop", "fdo:EvtDeviceQueryStop"])
    );
    assert_eq!(node.state(), NodeState::Started);
    assert_eq!(node.resources().generation, 1);
}

fn dx_down(d: &str, target: &str, arm: Option<&str>) -> Vec<String> {
    let mut v = vec![
        format!("{d}:EvtDeviceSelfManagedIoSuspend"),
        format!("{d}:[stopping Suspend]"),
    ];
    if let Some(a) = arm {
        v.push(format!("{d}:{a}"));
    }
    v.push(format!(
        "{d}:EvtDeviceD0ExitPreInterruptsDisabled({target})"
    ));
    v.push(format!("{d}:EvtDeviceD0Exit({target})"));
    v
}

fn dx_up(d: &str, prev: &str, wake: &[&str]) -> Vec<String> {
    let mut v = vec![
        format!("{d}:EvtDeviceD0Entry({prev})"),
        format!("{d}:EvtDeviceD0EntryPostInterruptsEnabled({prev})"),
    ];
    v.extend(wake.iter().map(|w| format!("{d}:{w}")));
    v.push(format!("{d}:[started]"));
    v.push(format!("{d}:EvtDeviceSelfManagedIoRestart"));
    v
}

#[test]
fn pnp_idle_d3_and_back() {
    let r = Rig::new();
    let node = r.plug();
    node.idle().unwrap();
    assert_eq!(
        r.seq(),
        cat(vec![
            dx_down("upper", "D3", None),
            dx_down("fdo", "D3", Some("EvtDeviceArmWakeFromS0")),
            dx_down("lower", "D3", None),
        ])
    );
    assert!(node.is_idle());
    assert!(node
        .stack()
        .iter()
        .all(|d| d.power_state() == DevicePowerState::D3));
    // A power reference (e.g. a request arriving at a power-managed queue) wakes it.
    node.function_device().unwrap().stop_idle().unwrap();
    assert_eq!(
        r.seq(),
        cat(vec![
            dx_up("lower", "D3", &[]),
            dx_up("fdo", "D3", &["EvtDeviceDisarmWakeFromS0"]),
            dx_up("upper", "D3", &[]),
        ])
    );
    assert!(!node.is_idle());
    // Idle is refused while the reference is held.
    assert_eq!(node.idle(), Err(Status::INVALID_DEVICE_STATE));
    node.function_device().unwrap().resume_idle();
    node.idle().unwrap();
    node.wake_from_idle().unwrap();
    assert!(node.stack().iter().all(Device::is_in_d0));
}

#[test]
fn pnp_system_sleep_s3_and_resume() {
    let r = Rig::new();
    let node = r.plug();
    r.m.pnp().system_sleep(SystemPowerState::S3).unwrap();
    assert_eq!(
        r.seq(),
        cat(vec![
            dx_down("upper", "D3", None),
            dx_down("fdo", "D3", Some("EvtDeviceArmWakeFromSxWithReason")),
            dx_down("lower", "D3", None),
        ])
    );
    assert_eq!(r.m.pnp().system_state(), SystemPowerState::S3);
    r.m.pnp().system_resume().unwrap();
    assert_eq!(
        r.seq(),
        cat(vec![
            dx_up("lower", "D3", &[]),
            dx_up("fdo", "D3", &["EvtDeviceDisarmWakeFromSx"]),
            dx_up("upper", "D3", &[]),
        ])
    );
    assert_eq!(node.state(), NodeState::Started);
}

#[test]
fn pnp_hibernate_s4_d3_or_prepare_for_hibernation() {
    let r = Rig::new();
    let node = r.plug();
    // Not on the hibernation path: D3.
    r.m.pnp().system_sleep(SystemPowerState::S4).unwrap();
    assert_eq!(
        r.seq(),
        cat(vec![
            dx_down("upper", "D3", None),
            dx_down("fdo", "D3", Some("EvtDeviceArmWakeFromSxWithReason")),
            dx_down("lower", "D3", None),
        ])
    );
    r.m.pnp().system_resume().unwrap();
    r.seq();
    // On the hibernation path: PrepareForHibernation; resume passes D3.
    node.set_hibernation_path(true);
    r.m.pnp().system_sleep(SystemPowerState::S4).unwrap();
    assert_eq!(
        r.seq(),
        cat(vec![
            dx_down("upper", "PrepareForHibernation", None),
            dx_down(
                "fdo",
                "PrepareForHibernation",
                Some("EvtDeviceArmWakeFromSxWithReason")
            ),
            dx_down("lower", "PrepareForHibernation", None),
        ])
    );
    r.m.pnp().system_resume().unwrap();
    assert_eq!(
        r.seq(),
        cat(vec![
            dx_up("lower", "D3", &[]),
            dx_up("fdo", "D3", &["EvtDeviceDisarmWakeFromSx"]),
            dx_up("upper", "D3", &[]),
        ])
    );
}

#[test]
fn pnp_shutdown_d3final_without_release() {
    let r = Rig::new();
    let _node = r.plug();
    r.m.pnp().shutdown().unwrap();
    let down = |d: &str| {
        s(&[
            "EvtDeviceSelfManagedIoSuspend",
            "[stopping Suspend]",
            "EvtDeviceD0ExitPreInterruptsDisabled(D3Final)",
            "EvtDeviceD0Exit(D3Final)",
        ])
        .into_iter()
        .map(|c| format!("{d}:{c}"))
        .collect::<Vec<_>>()
    };
    assert_eq!(
        r.seq(),
        cat(vec![down("upper"), down("fdo"), down("lower")])
    );
}

#[derive(Default)]
struct TargetLog {
    events: Mutex<Vec<&'static str>>,
    veto: bool,
}

impl TargetDeviceHook for TargetLog {
    fn query_remove(&self, _n: &kmdf_sim::pnp::DeviceNode) -> Status {
        self.events.lock().unwrap().push("query-remove");
        if self.veto {
            Status::UNSUCCESSFUL
        } else {
            Status::SUCCESS
        }
    }
    fn remove_canceled(&self, _n: &kmdf_sim::pnp::DeviceNode) {
        self.events.lock().unwrap().push("remove-canceled");
    }
    fn remove_complete(&self, _n: &kmdf_sim::pnp::DeviceNode) {
        self.events.lock().unwrap().push("remove-complete");
    }
}

fn query_removes() -> Vec<String> {
    s(&[
        "upper:EvtDeviceQueryRemove",
        "fdo:EvtDeviceQueryRemove",
        "lower:EvtDeviceQueryRemove",
    ])
}

#[test]
fn pnp_query_remove_then_remove_cancel() {
    let r = Rig::new();
    let node = r.plug();
    let log = Arc::new(TargetLog::default());
    node.register_target_hook(log.clone());
    node.query_remove().unwrap();
    assert_eq!(node.state(), NodeState::QueryRemovePending);
    node.cancel_remove().unwrap();
    assert_eq!(r.seq(), query_removes());
    assert_eq!(node.state(), NodeState::Started);
    assert_eq!(
        *log.events.lock().unwrap(),
        ["query-remove", "remove-canceled"]
    );
    assert!(node.stack().iter().all(Device::is_in_d0));
}

#[test]
fn pnp_query_remove_veto() {
    let r = Rig::new();
    let node = r.plug();
    let log = Arc::new(TargetLog::default());
    node.register_target_hook(log.clone());
    r.fail("fdo", "QueryRemove", Status::UNSUCCESSFUL);
    assert_eq!(node.remove(), Err(Status::UNSUCCESSFUL));
    assert_eq!(
        r.seq(),
        s(&["upper:EvtDeviceQueryRemove", "fdo:EvtDeviceQueryRemove"])
    );
    assert_eq!(node.state(), NodeState::Started);
    assert_eq!(
        *log.events.lock().unwrap(),
        ["query-remove", "remove-canceled"]
    );
    // A target hook can veto too; then no driver is asked.
    let vetoer = Arc::new(TargetLog {
        veto: true,
        ..TargetLog::default()
    });
    node.register_target_hook(vetoer);
    assert_eq!(node.remove(), Err(Status::UNSUCCESSFUL));
    assert!(r.seq().is_empty());
}

#[test]
fn pnp_orderly_remove() {
    let r = Rig::new();
    let node = r.plug();
    let log = Arc::new(TargetLog::default());
    node.register_target_hook(log.clone());
    node.remove().unwrap();
    assert_eq!(
        r.seq(),
        cat(vec![
            query_removes(),
            removal("upper"),
            removal("fdo"),
            removal("lower"),
            removed_hooks(),
        ])
    );
    assert_eq!(node.state(), NodeState::Removed);
    assert!(node.stack().is_empty());
    assert_eq!(
        *log.events.lock().unwrap(),
        ["query-remove", "remove-complete"]
    );
    assert_all_gone(&r);
}

#[test]
fn pnp_disable_and_enable() {
    let r = Rig::new();
    let node = r.plug();
    node.disable().unwrap();
    assert_eq!(node.state(), NodeState::Disabled);
    r.seq();
    node.enable().unwrap();
    let seq = r.seq();
    assert!(
        seq.contains(&"fdo:EvtDeviceSelfManagedIoInit".to_owned()),
        "{seq:?}"
    );
    assert_eq!(node.state(), NodeState::Started);
}

fn surprise_in_d0(d: &str) -> Vec<String> {
    s(&[
        "EvtDeviceSurpriseRemoval",
        "[stopping Purge]",
        "EvtDeviceSelfManagedIoSuspend",
        "EvtDeviceD0ExitPreInterruptsDisabled(D3Final)",
        "EvtDeviceD0Exit(D3Final)",
        "EvtDeviceReleaseHardware",
        "EvtDeviceSelfManagedIoFlush",
        "EvtDeviceSelfManagedIoCleanup",
    ])
    .into_iter()
    .map(|c| format!("{d}:{c}"))
    .collect()
}

fn surprise_in_dx(d: &str) -> Vec<String> {
    s(&[
        "EvtDeviceSurpriseRemoval",
        "EvtDeviceReleaseHardware",
        "EvtDeviceSelfManagedIoFlush",
        "EvtDeviceSelfManagedIoCleanup",
    ])
    .into_iter()
    .map(|c| format!("{d}:{c}"))
    .collect()
}

#[test]
fn pnp_surprise_removal_in_d0() {
    let r = Rig::new();
    let node = r.plug();
    let log = Arc::new(TargetLog::default());
    node.register_target_hook(log.clone());
    node.surprise_remove().unwrap();
    assert_eq!(
        r.seq(),
        cat(vec![
            surprise_in_d0("upper"),
            surprise_in_d0("fdo"),
            surprise_in_d0("lower"),
            removed_hooks(),
        ])
    );
    assert_eq!(node.state(), NodeState::SurpriseRemoved);
    assert_eq!(*log.events.lock().unwrap(), ["remove-complete"]);
    assert_all_gone(&r);
}

#[test]
fn pnp_surprise_removal_in_dx() {
    let r = Rig::new();
    let node = r.plug();
    node.idle().unwrap();
    r.seq();
    node.surprise_remove().unwrap();
    assert_eq!(
        r.seq(),
        cat(vec![
            surprise_in_dx("upper"),
            surprise_in_dx("fdo"),
            surprise_in_dx("lower"),
            removed_hooks(),
        ])
    );
    assert_all_gone(&r);
}

#[test]
fn pnp_prepare_hardware_fails() {
    let r = Rig::new();
    r.fail("fdo", "PrepareHardware", Status::INSUFFICIENT_RESOURCES);
    assert_eq!(
        r.m.pnp().plug_in(Rig::spec()).unwrap_err(),
        Status::INSUFFICIENT_RESOURCES
    );
    let seq: Vec<String> = r
        .seq()
        .into_iter()
        .filter(|c| !c.contains("DriverEntry") && !c.contains("DeviceAdd"))
        .collect();
    assert_eq!(
        seq,
        cat(vec![
            first_up("lower"),
            s(&[
                "fdo:EvtDevicePrepareHardware",
                "fdo:EvtDeviceReleaseHardware"
            ]),
            removal("lower"),
            removed_hooks(),
        ])
    );
    let node = r.m.pnp().find("ROOT\\SIM").unwrap();
    assert_eq!(node.state(), NodeState::Failed);
    assert_eq!(node.last_status(), Status::INSUFFICIENT_RESOURCES);
    assert_all_gone(&r);
}

#[test]
fn pnp_d0_entry_fails_at_first_start() {
    let r = Rig::new();
    r.fail("fdo", "D0Entry", Status::UNSUCCESSFUL);
    assert!(r.m.pnp().plug_in(Rig::spec()).is_err());
    let seq: Vec<String> = r
        .seq()
        .into_iter()
        .filter(|c| !c.contains("DriverEntry") && !c.contains("DeviceAdd"))
        .collect();
    // Orderly path, no D0Exit for the failing driver.
    assert_eq!(
        seq,
        cat(vec![
            first_up("lower"),
            s(&[
                "fdo:EvtDevicePrepareHardware",
                "fdo:EvtDeviceD0Entry(D3Final)",
                "fdo:EvtDeviceReleaseHardware",
            ]),
            removal("lower"),
            removed_hooks(),
        ])
    );
    assert_all_gone(&r);
}

#[test]
fn pnp_d0_entry_fails_on_return_from_low_power() {
    let r = Rig::new();
    let node = r.plug();
    node.idle().unwrap();
    r.seq();
    r.fail("fdo", "D0Entry", Status::UNSUCCESSFUL);
    assert_eq!(node.wake_from_idle(), Err(Status::UNSUCCESSFUL));
    // Surprise-removal path; the failing driver gets no D0Exit.
    assert_eq!(
        r.seq(),
        cat(vec![
            s(&[
                "lower:EvtDeviceD0Entry(D3)",
                "lower:EvtDeviceD0EntryPostInterruptsEnabled(D3)",
                "lower:[started]",
                "lower:EvtDeviceSelfManagedIoRestart",
                "fdo:EvtDeviceD0Entry(D3)",
            ]),
            surprise_in_dx("upper"),
            surprise_in_dx("fdo"),
            surprise_in_d0("lower"),
            removed_hooks(),
        ])
    );
    assert_eq!(node.state(), NodeState::Failed);
    assert_all_gone(&r);
}

#[test]
fn pnp_self_managed_io_init_fails() {
    let r = Rig::new();
    r.fail("fdo", "SmioInit", Status::UNSUCCESSFUL);
    assert!(r.m.pnp().plug_in(Rig::spec()).is_err());
    let seq: Vec<String> = r
        .seq()
        .into_iter()
        .filter(|c| !c.contains("DriverEntry") && !c.contains("DeviceAdd"))
        .collect();
    assert_eq!(
        seq,
        cat(vec![
            first_up("lower"),
            first_up("fdo"),
            s(&[
                "fdo:[stopping Purge]",
                "fdo:EvtDeviceD0ExitPreInterruptsDisabled(D3Final)",
                "fdo:EvtDeviceD0Exit(D3Final)",
                "fdo:EvtDeviceReleaseHardware",
                "fdo:EvtDeviceSelfManagedIoFlush",
                "fdo:EvtDeviceSelfManagedIoCleanup",
            ]),
            removal("lower"),
            removed_hooks(),
        ])
    );
    assert_all_gone(&r);
}

#[test]
fn pnp_arm_wake_from_s0_fails() {
    let r = Rig::new();
    let node = r.plug();
    r.fail("fdo", "ArmS0", Status::UNSUCCESSFUL);
    node.idle().unwrap();
    assert_eq!(
        r.seq(),
        cat(vec![
            dx_down("upper", "D3", None),
            dx_down("fdo", "D3", Some("EvtDeviceArmWakeFromS0")),
            dx_down("lower", "D3", None),
        ])
    );
    assert!(!node.function_device().unwrap().is_armed_for_wake());
    // Not armed: a wake signal is refused; waking by a power reference has no Disarm.
    assert_eq!(node.signal_wake(), Err(Status::INVALID_DEVICE_STATE));
    node.wake_from_idle().unwrap();
    assert_eq!(
        r.seq(),
        cat(vec![
            dx_up("lower", "D3", &[]),
            dx_up("fdo", "D3", &[]),
            dx_up("upper", "D3", &[])
        ])
    );
    assert_eq!(node.state(), NodeState::Started);
}

#[test]
fn pnp_wake_from_s0_triggered() {
    let r = Rig::new();
    let node = r.plug();
    node.idle().unwrap();
    r.seq();
    node.signal_wake().unwrap();
    assert_eq!(
        r.seq(),
        cat(vec![
            dx_up("lower", "D3", &[]),
            dx_up(
                "fdo",
                "D3",
                &["EvtDeviceWakeFromS0Triggered", "EvtDeviceDisarmWakeFromS0"]
            ),
            dx_up("upper", "D3", &[]),
        ])
    );
}

#[test]
fn pnp_wake_from_sx_triggered() {
    let r = Rig::new();
    let node = r.plug();
    r.m.pnp().system_sleep(SystemPowerState::S3).unwrap();
    r.seq();
    node.signal_wake().unwrap();
    assert_eq!(r.m.pnp().system_state(), SystemPowerState::S0);
    assert_eq!(
        r.seq(),
        cat(vec![
            dx_up("lower", "D3", &[]),
            dx_up(
                "fdo",
                "D3",
                &["EvtDeviceWakeFromSxTriggered", "EvtDeviceDisarmWakeFromSx"]
            ),
            dx_up("upper", "D3", &[]),
        ])
    );
}

#[test]
fn pnp_set_failed_no_restart_and_attempt_restart() {
    let r = Rig::new();
    let node = r.plug();
    node.function_device()
        .unwrap()
        .set_failed(FailedAction::NoRestart);
    r.m.settle();
    assert_eq!(
        r.seq(),
        cat(vec![
            surprise_in_d0("upper"),
            surprise_in_d0("fdo"),
            surprise_in_d0("lower"),
            removed_hooks(),
        ])
    );
    assert_eq!(node.state(), NodeState::Failed);
    assert_all_gone(&r);

    // AttemptRestart: torn down, then re-enumerated and started again (SelfManagedIoInit again).
    let r = Rig::new();
    let node = r.plug();
    node.device("lower")
        .unwrap()
        .set_failed(FailedAction::AttemptRestart);
    r.m.settle();
    let seq = r.seq();
    let restart = cat(vec![
        s(&["lower:DriverEntry", "lower:EvtDriverDeviceAdd"]),
        s(&["fdo:DriverEntry", "fdo:EvtDriverDeviceAdd"]),
        s(&["upper:DriverEntry", "upper:EvtDriverDeviceAdd"]),
        first_up("lower"),
        first_up("fdo"),
        first_up("upper"),
    ]);
    assert!(seq.ends_with(&restart), "{seq:#?}");
    assert_eq!(node.state(), NodeState::Started);
    assert_eq!(node.restart_count(), 1);
}

#[test]
fn pnp_set_failed_from_a_callback_runs_after_the_operation() {
    let m = Machine::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    driver::install(
        &m,
        "failing",
        DriverConfig::new(move |_d, init| {
            let c = Arc::clone(&c);
            init.pnp.self_managed_io_init = Some(Arc::new(move |dev: &Device| {
                c.fetch_add(1, Ordering::SeqCst);
                dev.set_failed(FailedAction::NoRestart);
                Status::SUCCESS
            }));
            Device::create(init, ObjectAttributes::new())?;
            Ok(())
        }),
    );
    let node = m
        .pnp()
        .plug_in(StackSpec::new("ROOT\\F", "failing"))
        .unwrap();
    assert_eq!(node.state(), NodeState::Failed);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn pnp_relations_query_and_usage_notification() {
    let r = Rig::new();
    let node = r.plug();
    node.query_relations(RelationType::Removal).unwrap();
    node.usage_notification(SpecialFileType::Paging, true)
        .unwrap();
    assert_eq!(
        r.seq(),
        s(&[
            "upper:EvtDeviceRelationsQuery(Removal)",
            "fdo:EvtDeviceRelationsQuery(Removal)",
            "lower:EvtDeviceRelationsQuery(Removal)",
            "upper:EvtDeviceUsageNotificationEx(Paging, true)",
            "fdo:EvtDeviceUsageNotificationEx(Paging, true)",
            "lower:EvtDeviceUsageNotificationEx(Paging, true)",
        ])
    );
    // A paging file in the path vetoes removal.
    assert_eq!(node.remove(), Err(Status::UNSUCCESSFUL));
    node.usage_notification(SpecialFileType::Paging, false)
        .unwrap();
    r.seq();
    // A failing driver: the ones already notified are called back with the opposite value.
    r.fail("fdo", "Usage", Status::UNSUCCESSFUL);
    assert_eq!(
        node.usage_notification(SpecialFileType::Dump, true),
        Err(Status::UNSUCCESSFUL)
    );
    assert_eq!(
        r.seq(),
        s(&[
            "upper:EvtDeviceUsageNotificationEx(Dump, true)",
            "fdo:EvtDeviceUsageNotificationEx(Dump, true)",
            "upper:EvtDeviceUsageNotificationEx(Dump, false)",
        ])
    );
    node.remove().unwrap();
}

#[test]
fn pnp_post_interrupts_enabled_and_pre_interrupts_disabled_order() {
    let r = Rig::new();
    let node = r.plug();
    node.idle().unwrap();
    node.wake_from_idle().unwrap();
    let fdo: Vec<String> = r
        .seq()
        .into_iter()
        .filter(|c| c.starts_with("fdo:EvtDeviceD0"))
        .collect();
    assert_eq!(
        fdo,
        s(&[
            "fdo:EvtDeviceD0ExitPreInterruptsDisabled(D3)",
            "fdo:EvtDeviceD0Exit(D3)",
            "fdo:EvtDeviceD0Entry(D3)",
            "fdo:EvtDeviceD0EntryPostInterruptsEnabled(D3)",
        ])
    );
}

#[test]
fn pnp_filter_device_add_failure_skips_filter_function_failure_fails_node() {
    let r = Rig::new();
    r.fail("upper", "DeviceAdd", Status::UNSUCCESSFUL);
    let node = r.m.pnp().plug_in(Rig::spec()).unwrap();
    assert_eq!(node.stack().len(), 2);
    assert!(kmdf_sim::driver::Driver::loaded(&r.m, "upper").is_none());
    node.remove().unwrap();

    let r = Rig::new();
    r.fail("fdo", "DeviceAdd", Status::UNSUCCESSFUL);
    assert_eq!(
        r.m.pnp().plug_in(Rig::spec()).unwrap_err(),
        Status::UNSUCCESSFUL
    );
    assert_all_gone(&r);
}

#[test]
fn pnp_callbacks_run_at_passive_and_lock_leaks_are_caught() {
    let m = Machine::builder()
        .verifier(kmdf_sim::VerifierMode::Record)
        .build();
    driver::install(
        &m,
        "leaky",
        DriverConfig::new(|_d, init| {
            init.pnp.d0_entry = Some(Arc::new(|_dev: &Device, _p| {
                assert_eq!(kmdf_sim::exec::current_irql(), kmdf_sim::Irql::Passive);
                let _ = kmdf_sim::exec::raise_irql(kmdf_sim::Irql::Dispatch);
                Status::SUCCESS
            }));
            Device::create(init, ObjectAttributes::new())?;
            Ok(())
        }),
    );
    m.pnp().plug_in(StackSpec::new("ROOT\\L", "leaky")).unwrap();
    let v = m
        .verifier()
        .violations_of(kmdf_sim::Rule::IrqlNotRestoredOnCallbackReturn);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].driver, "leaky");
}

#[test]
fn pnp_bus_child_removed_with_parent() {
    let r = Rig::new();
    let bus = r.plug();
    let child =
        r.m.pnp()
            .plug_in_child(&bus, StackSpec::new("BUS\\CHILD", "fdo"))
            .unwrap();
    assert_eq!(child.parent(), Some(bus.clone()));
    bus.surprise_remove().unwrap();
    assert_eq!(child.state(), NodeState::SurpriseRemoved);
    assert_eq!(bus.state(), NodeState::SurpriseRemoved);
    assert_all_gone(&r);
}
