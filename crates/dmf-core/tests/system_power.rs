//! The system-power rule of `OPEN_D0EntrySystemPowerUp` (Top 25 #6, MOD-40) on a simulated
//! machine: such a Module closes in the D0Exit of every system transition out of S0 — sleep (S3),
//! hibernation (S4, on and off the hibernation path), shutdown (S5) — and reopens in the D0Entry of
//! the return; a device that idles in S0 keeps it open. The Module also records
//! `WdfDeviceGetSystemPowerAction` as its D0Exit and D0Entry see it.
#![cfg(feature = "sim")]

use std::sync::{Arc, Mutex};

use dmf_core::device::container_driver_config;
use dmf_core::module::{Dispatched, ModuleCallbacks, PowerDeviceState, SystemPowerAction};
use dmf_core::platform::contract::device::PlatformDevice;
use dmf_core::platform::{simulator, Device};
use dmf_core::NtResult;
use dmf_macros::{dmf_callbacks, dmf_module};
use kmdf_sim::pnp::{DeviceNode, NodeState, StackSpec, SystemPowerState};
use kmdf_sim::Machine;

type Log = Arc<Mutex<Vec<String>>>;

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

/// A Module that opens on system power-up and records what happens to it.
#[dmf_module(crate = ::dmf_core, config = Log, open = D0EntrySystemPowerUp, lock = Dispatch)]
struct PowerUp;

fn record(m: &Dispatched<'_, PowerUp>, entry: String) {
    m.config().lock().unwrap().push(entry);
}

fn action(m: &Dispatched<'_, PowerUp>) -> SystemPowerAction {
    m.device()
        .map_or(SystemPowerAction::None, PlatformDevice::system_power_action)
}

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for PowerUp {
    fn open(m: &Dispatched<'_, Self>) -> NtResult<()> {
        record(m, "open".to_owned());
        Ok(())
    }
    fn close(m: &Dispatched<'_, Self>) {
        record(m, "close".to_owned());
    }
    fn d0_entry(m: &Dispatched<'_, Self>, previous: PowerDeviceState) -> NtResult<()> {
        record(m, format!("d0_entry({previous:?}, {:?})", action(m)));
        Ok(())
    }
    fn d0_exit(m: &Dispatched<'_, Self>, target: PowerDeviceState) -> NtResult<()> {
        record(m, format!("d0_exit({target:?}, {:?})", action(m)));
        Ok(())
    }
}

/// A container driver with one `PowerUp` Module, plugged in and started.
fn start(machine: &Machine, log: &Log) -> DeviceNode {
    let l = Arc::clone(log);
    simulator::install_driver(
        machine,
        "powerup",
        container_driver_config(
            move |_device: &Device, modules| {
                modules.add(PowerUp::with(Arc::clone(&l)));
                Ok(())
            },
            false,
        ),
    );
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\POWERUP", "powerup"))
        .unwrap();
    assert_eq!(node.state(), NodeState::Started);
    assert_eq!(
        take(log),
        ["d0_entry(D3Final, None)", "open"],
        "first start opens it"
    );
    node
}

fn assert_clean(machine: &Machine) {
    machine.settle();
    assert_eq!(machine.crash(), None);
    assert!(machine.verifier().violations().is_empty());
    assert!(machine.pool().outstanding().is_empty());
}

/// Sleep (S3): closed on the way down, reopened on the way back.
#[test]
fn a_system_sleep_closes_and_the_return_reopens() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let log = Log::default();
    let node = start(&machine, &log);
    machine.pnp().system_sleep(SystemPowerState::S3).unwrap();
    assert_eq!(take(&log), ["close", "d0_exit(D3, Sleep)"]);
    machine.pnp().system_resume().unwrap();
    assert_eq!(take(&log), ["d0_entry(D3, Sleep)", "open"]);
    node.remove().unwrap();
    assert_eq!(take(&log), ["close", "d0_exit(D3Final, None)"]);
    assert_clean(&machine);
}

/// Hibernation (S4): closed on the way down, whatever the D0Exit target, reopened on the return.
fn hibernate(on_hibernation_path: bool, target: &str) {
    let machine = Machine::new();
    let _bound = machine.enter();
    let log = Log::default();
    let node = start(&machine, &log);
    node.set_hibernation_path(on_hibernation_path);
    machine.pnp().system_sleep(SystemPowerState::S4).unwrap();
    assert_eq!(
        take(&log),
        ["close".to_owned(), format!("d0_exit({target}, Hibernate)")]
    );
    machine.pnp().system_resume().unwrap();
    assert_eq!(take(&log), ["d0_entry(D3, Hibernate)", "open"]);
    node.remove().unwrap();
    take(&log);
    assert_clean(&machine);
}

/// A device off the hibernation path powers down to D3.
#[test]
fn a_hibernation_closes_a_device_off_the_hibernation_path() {
    hibernate(false, "D3");
}

/// A device on the hibernation path gets `PrepareForHibernation`.
#[test]
fn a_hibernation_closes_a_device_on_the_hibernation_path() {
    hibernate(true, "PrepareForHibernation");
}

/// Shutdown (S5): closed in the last D0Exit.
#[test]
fn a_shutdown_closes() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let log = Log::default();
    let _node = start(&machine, &log);
    machine.pnp().shutdown().unwrap();
    let seen = take(&log);
    assert_eq!(
        seen[..2],
        ["close", "d0_exit(D3Final, Shutdown)"],
        "{seen:?}"
    );
    assert_clean(&machine);
}

/// Idle in S0: the device powers down and up again, the system stays in S0, the Module stays
/// open throughout (no close, no second open).
#[test]
fn an_idle_power_down_in_s0_keeps_it_open() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let log = Log::default();
    let node = start(&machine, &log);
    node.idle().unwrap();
    assert_eq!(take(&log), ["d0_exit(D3, None)"]);
    node.wake_from_idle().unwrap();
    assert_eq!(take(&log), ["d0_entry(D3, None)"]);
    node.remove().unwrap();
    assert_eq!(take(&log), ["close", "d0_exit(D3Final, None)"]);
    assert_clean(&machine);
}
