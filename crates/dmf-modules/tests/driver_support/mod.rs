//! The client driver of the I/O-target Module tests, written with DMF's client-driver API
//! (`dmf_core::device`, CLI-27): `EvtDriverDeviceAdd` hooks every callback, optionally makes the
//! device a filter, adds one Module in its Modules-add callback and calls `modules_create`; DMF
//! then drives the Module through start, power and removal.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use dmf_core::device::{DmfDevice, DmfDeviceInit};
use dmf_core::module::{Added, Module, ModuleInit};
use dmf_core::platform::contract::device::DeviceAttributes;
use dmf_core::platform::{simulator, Device, DriverConfig, PnpPowerCallbacks};
use dmf_core::NtStatus;
use kmdf_sim::Machine;

/// Where the device add leaves the client device and the handle of its Module.
pub type Slot<M> = Arc<Mutex<Option<(Device, M)>>>;

/// When the client device's Modules are closed and destroyed on removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Teardown {
    /// DMF's own: in the device's cleanup callback.
    Dmf,
    /// Earlier, from the client's `EvtDeviceSelfManagedIoCleanup`. The Modules opened on Create
    /// (RequestTarget, ContinuousRequestTarget) close only at destroy, and the tests that remove
    /// the device with requests still in flight need that close to cancel them while the
    /// WDFREQUESTs are alive: by the device's cleanup callback WDF has already cleaned up the
    /// device's children (the I/O target and its requests), and the cancel would touch deleted
    /// objects (a `DeletedObjectUsed` verifier violation).
    SelfManagedIoCleanup,
}

/// Installs the client driver as `name` (a filter, `DMF_DmfFdoSetFilter`, when `filter`); `add`
/// adds its one Module. Once a device of it is added, the returned slot holds the device and the
/// Module's handle (see [`take`]).
pub fn install<M: Module + 'static>(
    machine: &Machine,
    name: &str,
    filter: bool,
    teardown: Teardown,
    add: impl Fn(&mut ModuleInit) -> Added<M> + Send + Sync + 'static,
) -> Slot<M> {
    let add = Arc::new(add);
    let slot = Slot::default();
    let s = Arc::clone(&slot);
    let config = DriverConfig {
        device_add: Arc::new(move |_driver, init| {
            let mut dmf = DmfDeviceInit::new(init);
            let created: Arc<Mutex<Option<DmfDevice>>> = Arc::default();
            if teardown == Teardown::SelfManagedIoCleanup {
                let c = Arc::clone(&created);
                dmf.hook_pnp_power_callbacks(Some(PnpPowerCallbacks {
                    self_managed_io_cleanup: Some(Arc::new(move |_d: &Device| {
                        if let Some(dmf_device) = c.lock().unwrap().take() {
                            dmf_device.collection().destroy();
                        }
                    })),
                    ..PnpPowerCallbacks::default()
                }));
            }
            if filter {
                dmf.set_filter();
            }
            let token: Arc<Mutex<Option<Added<M>>>> = Arc::default();
            let (a, t) = (Arc::clone(&add), Arc::clone(&token));
            dmf.set_modules_add(move |_device, modules| {
                *t.lock().unwrap() = Some(a(modules));
                Ok(())
            });
            let device = dmf.create_device(DeviceAttributes::default())?;
            let dmf_device = dmf.modules_create()?;
            let token = token
                .lock()
                .unwrap()
                .take()
                .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
            let module = dmf_device.get(token)?;
            if teardown == Teardown::SelfManagedIoCleanup {
                *created.lock().unwrap() = Some(dmf_device);
            }
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
