//! `WdfDeviceGetSystemPowerAction` ([`Device::system_power_action`]) read from inside the
//! driver's power callbacks: the action of the system transition while the stack powers down for
//! it (S3, S4 on and off the hibernation path, S5) or comes back from it, `PowerActionNone` for
//! every transition the device makes on its own (S0 idle, start, rebalance, removal, surprise
//! removal, a failure teardown).

use std::sync::{Arc, Mutex};

use kmdf_sim::device::{Device, DeviceInit, S0IdleSettings};
use kmdf_sim::driver::{self, DriverConfig};
use kmdf_sim::object::ObjectAttributes;
use kmdf_sim::pnp::{
    DeviceNode, DevicePowerState, NodeState, StackSpec, SystemPowerAction, SystemPowerState,
    WdfPowerDeviceState,
};
use kmdf_sim::{Machine, Status};

/// (driver, callback with its state argument, what `system_power_action` returned there).
type Log = Arc<Mutex<Vec<(String, String, SystemPowerAction)>>>;

struct Rig {
    m: Machine,
    log: Log,
    /// When set, the function driver's EvtDeviceSelfManagedIoSuspend fails with it.
    fail_suspend: Arc<Mutex<Option<Status>>>,
}

fn config(
    name: &'static str,
    log: &Log,
    fail_suspend: &Arc<Mutex<Option<Status>>>,
) -> DriverConfig {
    let log = Arc::clone(log);
    let fail_suspend = Arc::clone(fail_suspend);
    DriverConfig::new(move |_drv, init: &mut DeviceInit| {
        if name != "fdo" {
            init.set_filter();
        }
        let record = |cb: &'static str| {
            let log = Arc::clone(&log);
            move |d: &Device, s: WdfPowerDeviceState| {
                log.lock().unwrap().push((
                    name.to_owned(),
                    format!("{cb}({s})"),
                    d.system_power_action(),
                ));
                Status::SUCCESS
            }
        };
        let plain = |cb: &'static str| {
            let log = Arc::clone(&log);
            move |d: &Device| {
                log.lock()
                    .unwrap()
                    .push((name.to_owned(), cb.to_owned(), d.system_power_action()));
            }
        };
        let p = &mut init.pnp;
        p.d0_entry = Some(Arc::new(record("D0Entry")));
        p.d0_exit_pre_interrupts_disabled = Some(Arc::new(record("D0ExitPreInterruptsDisabled")));
        p.d0_exit = Some(Arc::new(record("D0Exit")));
        p.self_managed_io_suspend = {
            let fail_suspend = Arc::clone(&fail_suspend);
            Some(Arc::new(move |_d: &Device| {
                match *fail_suspend.lock().unwrap() {
                    Some(s) if name == "fdo" => s,
                    _ => Status::SUCCESS,
                }
            }))
        };
        let pp = &mut init.power_policy;
        pp.arm_wake_from_sx = {
            let plain = plain("ArmWakeFromSx");
            Some(Arc::new(move |d: &Device| {
                plain(d);
                Status::SUCCESS
            }))
        };
        pp.disarm_wake_from_sx = Some(Arc::new(plain("DisarmWakeFromSx")));
        pp.wake_from_sx_triggered = Some(Arc::new(plain("WakeFromSxTriggered")));
        let dev = Device::create(init, ObjectAttributes::new())?;
        if name == "fdo" {
            dev.assign_s0_idle_settings(S0IdleSettings {
                can_wake: false,
                dx_state: DevicePowerState::D3,
            });
            dev.assign_sx_wake_settings(true);
        }
        Ok(())
    })
}

impl Rig {
    fn new() -> Rig {
        let m = Machine::new();
        let log: Log = Arc::default();
        let fail_suspend = Arc::default();
        for d in ["fdo", "upper"] {
            driver::install(&m, d, config(d, &log, &fail_suspend));
        }
        Rig {
            m,
            log,
            fail_suspend,
        }
    }

    fn plug(&self) -> DeviceNode {
        let node = self
            .m
            .pnp()
            .plug_in(StackSpec::new("ROOT\\POWERACTION", "fdo").upper_filter("upper"))
            .unwrap();
        // The first start: the system starts up, no system power action.
        assert_eq!(
            self.take(),
            log(&[
                ("fdo", "D0Entry(D3Final)", SystemPowerAction::None),
                ("upper", "D0Entry(D3Final)", SystemPowerAction::None),
            ])
        );
        node
    }

    fn take(&self) -> Vec<(String, String, SystemPowerAction)> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

fn log(v: &[(&str, &str, SystemPowerAction)]) -> Vec<(String, String, SystemPowerAction)> {
    v.iter()
        .map(|(d, cb, a)| ((*d).to_owned(), (*cb).to_owned(), *a))
        .collect()
}

/// The power-down of the two-device stack (upper first) with `target` and `action`; the
/// function driver (power policy owner, Sx wake enabled) arms for Sx wake when `arm`.
fn down(
    target: &str,
    action: SystemPowerAction,
    arm: bool,
) -> Vec<(String, String, SystemPowerAction)> {
    let pre = format!("D0ExitPreInterruptsDisabled({target})");
    let exit = format!("D0Exit({target})");
    let mut v = log(&[("upper", &pre, action), ("upper", &exit, action)]);
    if arm {
        v.extend(log(&[("fdo", "ArmWakeFromSx", action)]));
    }
    v.extend(log(&[("fdo", &pre, action), ("fdo", &exit, action)]));
    v
}

/// The return to D0 of the two-device stack (fdo first) from D3 with `action`.
fn up(action: SystemPowerAction, triggered: bool) -> Vec<(String, String, SystemPowerAction)> {
    let mut v = log(&[("fdo", "D0Entry(D3)", action)]);
    if triggered {
        v.extend(log(&[("fdo", "WakeFromSxTriggered", action)]));
    }
    v.extend(log(&[
        ("fdo", "DisarmWakeFromSx", action),
        ("upper", "D0Entry(D3)", action),
    ]));
    v
}

#[test]
fn s3_sleep_reports_sleep_down_and_back_and_none_after() {
    let r = Rig::new();
    let node = r.plug();
    let fdo = node.function_device().unwrap();
    r.m.pnp().system_sleep(SystemPowerState::S3).unwrap();
    assert_eq!(r.take(), down("D3", SystemPowerAction::Sleep, true));
    // Between the transitions (system asleep, nothing of this device running): none.
    assert_eq!(fdo.system_power_action(), SystemPowerAction::None);
    r.m.pnp().system_resume().unwrap();
    assert_eq!(r.take(), up(SystemPowerAction::Sleep, false));
    assert_eq!(fdo.system_power_action(), SystemPowerAction::None);
    assert_eq!(node.system_power_action(), SystemPowerAction::None);
}

#[test]
fn s3_wake_signal_reports_sleep_in_wake_from_sx_triggered() {
    let r = Rig::new();
    let node = r.plug();
    r.m.pnp().system_sleep(SystemPowerState::S3).unwrap();
    r.take();
    node.signal_wake().unwrap();
    assert_eq!(r.take(), up(SystemPowerAction::Sleep, true));
}

#[test]
fn s4_off_the_hibernation_path_reports_hibernate() {
    let r = Rig::new();
    let _node = r.plug();
    r.m.pnp().system_sleep(SystemPowerState::S4).unwrap();
    assert_eq!(r.take(), down("D3", SystemPowerAction::Hibernate, true));
    r.m.pnp().system_resume().unwrap();
    assert_eq!(r.take(), up(SystemPowerAction::Hibernate, false));
}

#[test]
fn s4_on_the_hibernation_path_reports_hibernate() {
    let r = Rig::new();
    let node = r.plug();
    node.set_hibernation_path(true);
    r.m.pnp().system_sleep(SystemPowerState::S4).unwrap();
    assert_eq!(
        r.take(),
        down("PrepareForHibernation", SystemPowerAction::Hibernate, true)
    );
    r.m.pnp().system_resume().unwrap();
    assert_eq!(r.take(), up(SystemPowerAction::Hibernate, false));
}

#[test]
fn shutdown_reports_shutdown() {
    let r = Rig::new();
    let _node = r.plug();
    r.m.pnp().shutdown().unwrap();
    assert_eq!(
        r.take(),
        down("D3Final", SystemPowerAction::Shutdown, false)
    );
}

#[test]
fn s0_idle_and_its_return_report_none() {
    let r = Rig::new();
    let node = r.plug();
    node.idle().unwrap();
    assert_eq!(r.take(), down("D3", SystemPowerAction::None, false));
    // A system sleep while idle runs nothing for this stack; the return leaves it in Dx.
    r.m.pnp().system_sleep(SystemPowerState::S3).unwrap();
    r.m.pnp().system_resume().unwrap();
    assert_eq!(r.take(), log(&[]));
    node.wake_from_idle().unwrap();
    assert_eq!(
        r.take(),
        log(&[
            ("fdo", "D0Entry(D3)", SystemPowerAction::None),
            ("upper", "D0Entry(D3)", SystemPowerAction::None),
        ])
    );
}

#[test]
fn remove_rebalance_and_surprise_removal_report_none() {
    let r = Rig::new();
    let node = r.plug();
    node.rebalance().unwrap();
    assert_eq!(
        r.take(),
        cat(
            down("D3Final", SystemPowerAction::None, false),
            log(&[
                ("fdo", "D0Entry(D3Final)", SystemPowerAction::None),
                ("upper", "D0Entry(D3Final)", SystemPowerAction::None),
            ])
        )
    );
    node.remove().unwrap();
    assert_eq!(r.take(), down("D3Final", SystemPowerAction::None, false));
    assert_eq!(node.state(), NodeState::Removed);

    let node = r.plug();
    node.surprise_remove().unwrap();
    assert_eq!(r.take(), down("D3Final", SystemPowerAction::None, false));
}

#[test]
fn a_failure_during_system_sleep_tears_down_with_none() {
    let r = Rig::new();
    let node = r.plug();
    *r.fail_suspend.lock().unwrap() = Some(Status::UNSUCCESSFUL);
    r.m.pnp().system_sleep(SystemPowerState::S3).unwrap();
    // The upper filter powered down for the sleep; the function driver's SelfManagedIoSuspend
    // failed, and the stack's surprise-removal teardown is no part of the system transition.
    assert_eq!(
        r.take(),
        cat(
            log(&[
                (
                    "upper",
                    "D0ExitPreInterruptsDisabled(D3)",
                    SystemPowerAction::Sleep
                ),
                ("upper", "D0Exit(D3)", SystemPowerAction::Sleep),
            ]),
            log(&[
                (
                    "fdo",
                    "D0ExitPreInterruptsDisabled(D3Final)",
                    SystemPowerAction::None
                ),
                ("fdo", "D0Exit(D3Final)", SystemPowerAction::None),
            ])
        )
    );
    assert_eq!(node.state(), NodeState::Failed);
    assert_eq!(node.system_power_action(), SystemPowerAction::None);
}

#[test]
fn power_action_raw_values_are_wdm_power_action() {
    assert_eq!(SystemPowerAction::None.as_raw(), 0);
    assert_eq!(SystemPowerAction::Sleep.as_raw(), 2);
    assert_eq!(SystemPowerAction::Hibernate.as_raw(), 3);
    assert_eq!(SystemPowerAction::Shutdown.as_raw(), 4);
    assert_eq!(
        SystemPowerAction::entering(SystemPowerState::S5),
        SystemPowerAction::Shutdown
    );
    assert_eq!(
        SystemPowerAction::entering(SystemPowerState::S0),
        SystemPowerAction::None
    );
}

fn cat<T>(mut a: Vec<T>, b: Vec<T>) -> Vec<T> {
    a.extend(b);
    a
}
