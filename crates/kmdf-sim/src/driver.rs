//! Drivers: `DriverEntry`, `WdfDriverCreate`, `EvtDriverDeviceAdd`, `EvtDriverUnload`.
//!
//! # Design
//!
//! A driver is a name plus a [`DriverConfig`] (`WDF_DRIVER_CONFIG`): the `EvtDriverDeviceAdd`
//! closure the PnP manager calls with a [`DeviceInit`] for each device node whose stack names the
//! driver, an optional `EvtDriverUnload`, and optional extra `DriverEntry` work. Configs are
//! `Clone` (closures behind `Arc`) because, as on Windows, a driver is an *installed package* that
//! is **loaded on demand** and **unloaded when no device uses it any more**:
//!
//! * [`install`] registers the package (the service key) on a machine;
//! * the PnP manager (or a test, with [`Driver::load`]) loads it: `DriverEntry` runs, creating the
//!   WDFDRIVER object (`WdfDriverCreate`, a fault point) and then the config's `entry` closure;
//!   a failing `DriverEntry` deletes the object and the load fails with its status;
//! * when the last device of the driver is removed, the driver is unloaded: `EvtDriverUnload`,
//!   deletion of the WDFDRIVER object (and its children), then the **pool leak check**
//!   ([`Pool::check_leaks`](crate::pool::Pool::check_leaks)): every allocation still attributed
//!   to the driver is a [`Rule::PoolLeak`](crate::Rule::PoolLeak) violation listing the tags.
//!
//! A driver may also create **control devices** ([`crate::control`]), typically from
//! `DriverEntry` (a config with no `EvtDriverDeviceAdd`, loaded with [`Driver::load`]). They
//! count in [`Driver::device_count`]: a PnP driver stays loaded until it has deleted them, while
//! a driver with only control devices is unloaded by [`Driver::unload`], which deletes them
//! after `EvtDriverUnload`.
//!
//! Per [Reporting Device Failures] a failing function driver `EvtDriverDeviceAdd` fails the device
//! node while a failing filter driver `EvtDriverDeviceAdd` only skips that filter (see
//! [`crate::pnp`]).
//!
//! The `Parameters` registry key (`WdfDriverOpenParametersRegistryKey`) comes from the machine's
//! [`RegistryStore`](crate::registry::RegistryStore) ([`Machine::registry`]).
//!
//! [Reporting Device Failures]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/reporting-device-failures

use core::fmt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::device::{Device, DeviceInit, DeviceInner};
use crate::machine::Machine;
use crate::object::{MachineRef, ObjectAttributes, WdfObject};
use crate::registry::RegistryKey;
use crate::status::Status;
use crate::verifier;

/// `EvtDriverDeviceAdd`: create the device (`Device::create`) from the init, or fail.
pub type DeviceAddFn = Arc<dyn Fn(&Driver, &mut DeviceInit) -> Result<(), Status> + Send + Sync>;
/// `EvtDriverUnload` (and the rest of the driver's unload work).
pub type DriverUnloadFn = Arc<dyn Fn(&Driver) + Send + Sync>;
/// Extra `DriverEntry` work after `WdfDriverCreate` succeeded.
pub type DriverEntryFn = Arc<dyn Fn(&Driver) -> Result<(), Status> + Send + Sync>;

/// `WDF_DRIVER_CONFIG` plus the rest of `DriverEntry`. See the [module docs](self).
#[derive(Clone, Default)]
pub struct DriverConfig {
    /// `EvtDriverDeviceAdd`. A driver without one cannot be in a device stack.
    pub device_add: Option<DeviceAddFn>,
    /// `EvtDriverUnload`.
    pub unload: Option<DriverUnloadFn>,
    /// Extra `DriverEntry` work (runs after `WdfDriverCreate`).
    pub entry: Option<DriverEntryFn>,
    /// The I/O manager's call of the driver object's `DriverUnload` routine, for a driver that
    /// brings its own (a linked image: its startup code and KMDF's unload, which call
    /// `EvtDriverUnload` only if the driver registered one). Runs at unload after `unload`,
    /// without an `EvtDriverUnload` trace of its own.
    pub driver_unload: Option<DriverUnloadFn>,
}

impl fmt::Debug for DriverConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverConfig")
            .field("device_add", &self.device_add.is_some())
            .field("unload", &self.unload.is_some())
            .field("entry", &self.entry.is_some())
            .field("driver_unload", &self.driver_unload.is_some())
            .finish()
    }
}

impl DriverConfig {
    /// A config with `EvtDriverDeviceAdd` (`WDF_DRIVER_CONFIG_INIT`).
    pub fn new(
        device_add: impl Fn(&Driver, &mut DeviceInit) -> Result<(), Status> + Send + Sync + 'static,
    ) -> Self {
        DriverConfig {
            device_add: Some(Arc::new(device_add)),
            unload: None,
            entry: None,
            driver_unload: None,
        }
    }

    /// Sets `EvtDriverUnload`.
    #[must_use]
    pub fn on_unload(mut self, f: impl Fn(&Driver) + Send + Sync + 'static) -> Self {
        self.unload = Some(Arc::new(f));
        self
    }

    /// Sets the driver object's `DriverUnload` routine (see [`DriverConfig::driver_unload`]).
    #[must_use]
    pub fn on_driver_unload(mut self, f: impl Fn(&Driver) + Send + Sync + 'static) -> Self {
        self.driver_unload = Some(Arc::new(f));
        self
    }

    /// Sets extra `DriverEntry` work.
    #[must_use]
    pub fn on_entry(
        mut self,
        f: impl Fn(&Driver) -> Result<(), Status> + Send + Sync + 'static,
    ) -> Self {
        self.entry = Some(Arc::new(f));
        self
    }
}

/// Per-machine driver table: installed packages and loaded drivers.
#[derive(Default)]
struct DriverTable {
    inner: Mutex<TableInner>,
}

#[derive(Default)]
struct TableInner {
    installed: BTreeMap<String, DriverConfig>,
    loaded: BTreeMap<String, Driver>,
    /// The INF models: hardware or compatible id (upper case) → driver name.
    models: BTreeMap<String, String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn table(machine: &Machine) -> Arc<DriverTable> {
    machine.extension(DriverTable::default)
}

/// Installs a driver package on `machine` (its service): device stacks can then name it and the
/// PnP manager loads it on demand. Installing again replaces the config for the next load.
pub fn install(machine: &Machine, name: &str, config: DriverConfig) {
    lock(&table(machine).inner)
        .installed
        .insert(name.to_owned(), config);
}

/// Names `driver` as the function driver of devices whose hardware id or compatible id is
/// `id` (the models line of the package's INF; ids compare case-insensitively). The PnP manager
/// reads it when a bus driver reports a child: the child's hardware ids in order, then its
/// compatible ids, pick the first package that names one. Binding an id again replaces it.
pub fn bind_hardware_id(machine: &Machine, id: &str, driver: &str) {
    lock(&table(machine).inner)
        .models
        .insert(id.to_ascii_uppercase(), driver.to_owned());
}

/// The function driver for a device with these ids (see [`bind_hardware_id`]): the first
/// hardware id with a package, else the first compatible id with one.
pub fn driver_for_ids(
    machine: &Machine,
    hardware_ids: &[String],
    compatible_ids: &[String],
) -> Option<String> {
    let t = table(machine);
    let inner = lock(&t.inner);
    hardware_ids
        .iter()
        .chain(compatible_ids)
        .find_map(|id| inner.models.get(&id.to_ascii_uppercase()).cloned())
}

/// True if a package named `name` is installed.
pub fn is_installed(machine: &Machine, name: &str) -> bool {
    lock(&table(machine).inner).installed.contains_key(name)
}

struct DriverInner {
    name: String,
    machine: MachineRef,
    object: WdfObject,
    config: DriverConfig,
    st: Mutex<DriverState>,
}

#[derive(Default)]
struct DriverState {
    devices: usize,
    unloaded: bool,
    /// At least one PnP device was created: the driver unloads when its last device goes.
    pnp_ever: bool,
    /// The control devices not yet deleted (weak: a device holds its driver).
    controls: Vec<Weak<DeviceInner>>,
}

/// A loaded driver (`WDFDRIVER`). Cheap to clone; equality is identity.
#[derive(Clone)]
pub struct Driver(Arc<DriverInner>);

impl PartialEq for Driver {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Driver {}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("name", &self.0.name)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// Loads `name` with `config` (also installing it): `DriverEntry` → `WdfDriverCreate` → the
    /// config's `entry`. Returns the loaded driver if it is already loaded.
    ///
    /// Errors: the status of a failing `DriverEntry`; `STATUS_INSUFFICIENT_RESOURCES` when
    /// fault injection fails the WDFDRIVER creation.
    pub fn load(machine: &Machine, name: &str, config: DriverConfig) -> Result<Driver, Status> {
        install(machine, name, config);
        Self::load_installed(machine, name)
    }

    /// Loads the installed package `name`, or returns it if already loaded.
    ///
    /// Errors: `STATUS_NO_SUCH_DEVICE` if no package of that name is installed; else as
    /// [`load`](Self::load).
    pub fn load_installed(machine: &Machine, name: &str) -> Result<Driver, Status> {
        let table = table(machine);
        let config = {
            let t = lock(&table.inner);
            if let Some(d) = t.loaded.get(name) {
                return Ok(d.clone());
            }
            t.installed
                .get(name)
                .cloned()
                .ok_or(Status::NO_SUCH_DEVICE)?
        };
        let _g = crate::object::bind(machine);
        let driver =
            verifier::invoke_callback(name, &format!("DRIVER {name}"), "DriverEntry", || {
                let object =
                    WdfObject::create_for(machine, name, "WDFDRIVER", ObjectAttributes::new())?;
                let driver = Driver(Arc::new(DriverInner {
                    name: name.to_owned(),
                    machine: MachineRef::new(machine),
                    object,
                    config: config.clone(),
                    st: Mutex::new(DriverState::default()),
                }));
                if let Some(entry) = &config.entry {
                    if let Err(st) = entry(&driver) {
                        // Control devices a failed DriverEntry left behind go with it.
                        for dev in driver.control_devices() {
                            let _ = dev.object().delete();
                        }
                        let _ = driver.0.object.delete();
                        return Err(st);
                    }
                }
                Ok(driver)
            });
        match driver {
            Ok(d) => {
                lock(&table.inner).loaded.insert(name.to_owned(), d.clone());
                machine.trace().record_for(
                    crate::trace::TraceKind::State,
                    Some(name),
                    &format!("DRIVER {name}"),
                    "loaded",
                );
                Ok(d)
            }
            Err(st) => {
                machine.pool().check_leaks(name);
                Err(st)
            }
        }
    }

    /// The loaded driver `name` on `machine`, if any.
    pub fn loaded(machine: &Machine, name: &str) -> Option<Driver> {
        lock(&table(machine).inner).loaded.get(name).cloned()
    }

    /// The driver's name (its service name).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The WDFDRIVER object (parent for driver-wide objects).
    pub fn object(&self) -> &WdfObject {
        &self.0.object
    }

    /// The machine the driver is loaded on, while it runs.
    pub fn machine(&self) -> Option<Machine> {
        self.0.machine.machine()
    }

    /// The config the driver was loaded with.
    pub fn config(&self) -> &DriverConfig {
        &self.0.config
    }

    /// Number of device objects of this driver that are not yet removed (PnP devices and
    /// control devices).
    pub fn device_count(&self) -> usize {
        lock(&self.0.st).devices
    }

    /// The control devices of this driver that are not yet deleted, oldest first (see
    /// [`crate::control`]).
    pub fn control_devices(&self) -> Vec<Device> {
        lock(&self.0.st)
            .controls
            .iter()
            .filter_map(Weak::upgrade)
            .map(Device)
            .filter(|d| !d.object().is_deleted())
            .collect()
    }

    /// True once unloaded.
    pub fn is_unloaded(&self) -> bool {
        lock(&self.0.st).unloaded
    }

    /// `WdfDriverOpenParametersRegistryKey`: the driver's `Parameters` key in the machine's
    /// registry (created if missing).
    ///
    /// Errors: the registry status; `STATUS_INVALID_DEVICE_STATE` after the machine stopped.
    pub fn open_parameters_key(&self) -> Result<RegistryKey, Status> {
        let machine = self.machine().ok_or(Status::INVALID_DEVICE_STATE)?;
        machine
            .registry()
            .driver_parameters(&self.0.name)
            .map_err(|e| Status(e.ntstatus()))
    }

    /// A device of this driver was created (called by the device layer).
    pub(crate) fn device_added(&self) {
        let mut st = lock(&self.0.st);
        st.devices += 1;
        st.pnp_ever = true;
    }

    /// A control device of this driver was created.
    pub(crate) fn control_added(&self, device: &Device) {
        let mut st = lock(&self.0.st);
        st.devices += 1;
        st.controls.push(Arc::downgrade(&device.0));
    }

    /// A control device of this driver was deleted. A PnP driver (one that created PnP
    /// devices) unloads when this was its last device; a driver with only control devices stays
    /// loaded until [`unload`](Self::unload) (a legacy driver is stopped, not unloaded by
    /// deleting its devices).
    pub(crate) fn control_removed(&self, device: &Device) {
        let last = {
            let mut st = lock(&self.0.st);
            st.devices = st.devices.saturating_sub(1);
            st.controls
                .retain(|w| w.upgrade().is_some_and(|d| !Arc::ptr_eq(&d, &device.0)));
            st.devices == 0 && st.pnp_ever && !st.unloaded
        };
        if last {
            let _ = self.unload();
        }
    }

    /// A device of this driver was removed; the driver unloads when it was the last one.
    pub(crate) fn device_removed(&self) {
        let last = {
            let mut st = lock(&self.0.st);
            st.devices = st.devices.saturating_sub(1);
            st.devices == 0
        };
        if last {
            let _ = self.unload();
        }
    }

    /// Unloads the driver: `EvtDriverUnload`, then the framework deletes the driver's remaining
    /// control devices ("Using Control Device Objects": for a driver without PnP devices the
    /// framework deletes them after `EvtDriverUnload` returns), then the WDFDRIVER object, then
    /// the pool leak check (a [`Rule::PoolLeak`](crate::Rule::PoolLeak) violation lists every
    /// leaked tag).
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` while a PnP device of the driver exists, while a
    /// control device of the driver has open handles (Windows keeps such an unload pending until
    /// they are closed; the simulator refuses it — close them and call again), or when already
    /// unloaded.
    pub fn unload(&self) -> Result<(), Status> {
        {
            let mut st = lock(&self.0.st);
            let controls: Vec<Device> = st
                .controls
                .iter()
                .filter_map(Weak::upgrade)
                .map(Device)
                .filter(|d| !d.object().is_deleted())
                .collect();
            if st.unloaded
                || st.devices > controls.len()
                || controls.iter().any(|d| crate::control::open_handles(d) > 0)
            {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            st.unloaded = true;
        }
        let Some(machine) = self.machine() else {
            return Ok(());
        };
        let _g = crate::object::bind(&machine);
        lock(&table(&machine).inner).loaded.remove(&self.0.name);
        let object = self.0.object.name().to_owned();
        if let Some(unload) = &self.0.config.unload {
            verifier::invoke_callback(&self.0.name, &object, "EvtDriverUnload", || unload(self));
        }
        if let Some(driver_unload) = &self.0.config.driver_unload {
            let _scope = crate::exec::DriverScope::enter(&self.0.name);
            driver_unload(self);
        }
        for dev in self.control_devices() {
            let _ = dev.object().delete();
        }
        let _ = self.0.object.delete();
        machine.trace().record_for(
            crate::trace::TraceKind::State,
            Some(&self.0.name),
            &format!("DRIVER {}", self.0.name),
            "unloaded",
        );
        machine.pool().check_leaks(&self.0.name);
        Ok(())
    }
}
