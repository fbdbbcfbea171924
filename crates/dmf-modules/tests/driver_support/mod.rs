//! The client driver of the I/O-target Module tests, written with DMF's client-driver API
//! (`dmf_core::device`, CLI-27): `EvtDriverDeviceAdd` hooks every callback, optionally makes the
//! device a filter, adds one Module in its Modules-add callback and calls `modules_create`; DMF
//! then drives the Module through start, power and removal.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use dmf_core::device::DmfDeviceInit;
use dmf_core::module::{Added, Module, ModuleInit};
use dmf_core::platform::contract::device::DeviceAttributes;
use dmf_core::platform::{simulator, Device, DriverConfig};
use dmf_core::NtStatus;
use kmdf_sim::Machine;

/// Where the device add leaves the client device and the handle of its Module.
pub type Slot<M> = Arc<Mutex<Option<(Device, M)>>>;

/// Installs the client driver as `name` (a filter, `DMF_DmfFdoSetFilter`, when `filter`); `add`
/// adds its one Module. Once a device of it is added, the returned slot holds the device and the
/// Module's handle (see [`take`]).
pub fn install<M: Module + 'static>(
    machine: &Machine,
    name: &str,
    filter: bool,
    add: impl Fn(&mut ModuleInit) -> Added<M> + Send + Sync + 'static,
) -> Slot<M> {
    let add = Arc::new(add);
    let slot = Slot::default();
    let s = Arc::clone(&slot);
    let config = DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            if filter {
                dmf.set_filter();
            }
            let token: Arc<Mutex<Option<Added<M>>>> = Arc::default();
            let (a, t) = (Arc::clone(&add), Arc::clone(&token));
            dmf.set_modules_add(move |_device, modules| {
                *t.lock().unwrap() = Some(a(modules));
                Ok(())
            })?;
            let device = dmf.create_device(DeviceAttributes::default())?;
            let dmf_device = dmf.modules_create()?;
            let token = token
                .lock()
                .unwrap()
                .take()
                .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
            let module = dmf_device.get(token)?;
            *s.lock().unwrap() = Some((device, module));
            Ok(())
        }),
        unload: None,
    };
    simulator::install_driver(machine, name, config);
    slot
}

/// Takes the client device and its Module's handle out of `slot` (panics if no device was added).
pub fn take<M>(slot: &Slot<M>) -> (Device, M) {
    slot.lock()
        .unwrap()
        .take()
        .expect("the client driver added a device")
}
