//! Drivers, devices, PnP/power callbacks and device interfaces on kmdf-sim.
//!
//! Each contract callback is wrapped into the kmdf-sim callback of the same name, converting the
//! device handle and the status; kmdf-sim then calls it in KMDF's documented sequences, at
//! PASSIVE_LEVEL, through its verifier.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;

use kmdf_sim::control::DeviceSecurity;
use kmdf_sim::device::{
    Device as SimDevice, DeviceInit as SimDeviceInit, PnpPowerCallbacks as SimPnp,
    PowerPolicyCallbacks as SimPolicy, Resources as SimResources,
};
use kmdf_sim::driver::{Driver as SimDriver, DriverConfig as SimDriverConfig};
use kmdf_sim::guid::Guid as SimGuid;
use kmdf_sim::object::ObjectAttributes;
use kmdf_sim::pnp::state::{
    FailedAction as SimFailed, RelationType as SimRelation, SpecialFileType as SimSpecial,
    SystemPowerAction as SimPowerAction, WdfPowerDeviceState,
};
use kmdf_sim::pnp::{DeviceNode, StackSpec};
use kmdf_sim::{Machine, Status as SimStatus};

use super::from_sim_status;
use super::io::{
    register_interface_notification, set_file_object_config, to_sim_request_type, FileObject,
    InterfaceNotification, IoTarget, Queue, Request,
};
use crate::platform::contract::device::{
    DeviceAttributes, DeviceFn, DevicePowerFn, DeviceResourcesFn, DeviceResultFn,
    DriverConfig as ContractDriverConfig, FailedAction, Guid, PlatformDevice, PlatformDeviceInit,
    PlatformDriver, PnpPowerCallbacks as ContractPnp, PowerDeviceState,
    PowerPolicyCallbacks as ContractPolicy, RelationType, SpecialFileType, SystemPowerAction,
};
use crate::platform::contract::io::{
    FileObjectConfig, InterfaceChange, PlatformIoTarget, QueueConfig, RequestType,
};
use crate::status::{NtResult, NtStatus};

fn to_sim(result: NtResult<()>) -> SimStatus {
    match result {
        Ok(()) => SimStatus::SUCCESS,
        Err(status) => SimStatus(status.to_raw()),
    }
}

/// A platform GUID as kmdf-sim's: what an application or a PnP query on the simulated machine
/// takes (an interface class a driver registered).
pub const fn sim_guid(guid: Guid) -> SimGuid {
    SimGuid::new(guid.data1, guid.data2, guid.data3, guid.data4)
}

/// kmdf-sim's GUID as the platform's: a class the simulated hardware defines (the OSR FX2's
/// device interface) as a driver names it.
pub const fn platform_guid(guid: SimGuid) -> Guid {
    Guid::new(guid.data1, guid.data2, guid.data3, guid.data4)
}

fn power_state(state: WdfPowerDeviceState) -> PowerDeviceState {
    match state {
        WdfPowerDeviceState::D0 => PowerDeviceState::D0,
        WdfPowerDeviceState::D1 => PowerDeviceState::D1,
        WdfPowerDeviceState::D2 => PowerDeviceState::D2,
        WdfPowerDeviceState::D3 => PowerDeviceState::D3,
        WdfPowerDeviceState::PrepareForHibernation => PowerDeviceState::PrepareForHibernation,
        // `Invalid` is never passed to a driver; D3Final is the documented "first/last" value.
        WdfPowerDeviceState::D3Final | WdfPowerDeviceState::Invalid => PowerDeviceState::D3Final,
    }
}

fn relation(relation: SimRelation) -> RelationType {
    match relation {
        SimRelation::Bus => RelationType::Bus,
        SimRelation::Ejection => RelationType::Ejection,
        SimRelation::Removal => RelationType::Removal,
        SimRelation::TargetDevice => RelationType::TargetDevice,
    }
}

fn special_file(kind: SimSpecial) -> SpecialFileType {
    match kind {
        SimSpecial::Paging => SpecialFileType::Paging,
        SimSpecial::Hibernation => SpecialFileType::Hibernation,
        SimSpecial::Dump => SpecialFileType::Dump,
        SimSpecial::Boot => SpecialFileType::Boot,
    }
}

/// The hardware resources of a start (`WDFCMRESLIST`), as the simulator assigns them.
pub type Resources = SimResources;

/// A `WDFDEVICE` of the simulated machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device(SimDevice);

impl Device {
    /// The kmdf-sim device behind this handle (for simulator-level tests and the I/O layer).
    pub fn sim(&self) -> &SimDevice {
        &self.0
    }

    /// Wraps a kmdf-sim device.
    pub fn from_sim(device: SimDevice) -> Device {
        Device(device)
    }
}

impl PlatformDevice for Device {
    type Resources = Resources;
    type Request = Request;
    type Queue = Queue;
    type FileObject = FileObject;
    type IoTarget = IoTarget;
    type InterfaceNotification = InterfaceNotification;

    fn create_queue(&self, config: QueueConfig<Queue, Request>) -> NtResult<Queue> {
        Queue::create(self, config)
    }

    fn default_queue(&self) -> Option<Queue> {
        self.0.default_queue().map(Queue::from_sim)
    }

    fn configure_request_dispatching(&self, queue: &Queue, kind: RequestType) -> NtResult<()> {
        self.0
            .configure_request_dispatching(queue.sim(), to_sim_request_type(kind))
            .map_err(from_sim_status)
    }

    fn io_target(&self) -> IoTarget {
        IoTarget::from_sim(self.0.io_target())
    }

    fn create_io_target(&self) -> NtResult<IoTarget> {
        IoTarget::create(self)
    }

    fn create_stack_top_target(&self) -> NtResult<IoTarget> {
        let target = IoTarget::create(self)?;
        if let Err(s) = target.sim().open_stack_top(&self.0) {
            let _ = target.delete();
            return Err(from_sim_status(s));
        }
        Ok(target)
    }

    fn register_interface_notification(
        &self,
        class: Guid,
        callback: Arc<dyn Fn(&InterfaceChange) + Send + Sync>,
    ) -> NtResult<InterfaceNotification> {
        register_interface_notification(self, class, callback)
    }

    fn is_control(&self) -> bool {
        self.0.is_control()
    }

    fn create_symbolic_link(&self, link: &str) -> NtResult<()> {
        self.0.create_symbolic_link(link).map_err(from_sim_status)
    }

    fn finish_initializing(&self) {
        self.0.finish_initializing();
    }

    fn delete(&self) -> NtResult<()> {
        // A second WdfObjectDelete is a bug check on Windows; refuse it here instead.
        if !self.0.is_control() || self.0.object().is_deleted() {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        self.0.object().delete().map_err(from_sim_status)
    }

    fn context<T: core::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.0.context::<T>()
    }

    fn is_filter(&self) -> bool {
        self.0.is_filter()
    }

    fn is_in_d0(&self) -> bool {
        self.0.is_in_d0()
    }

    fn system_power_action(&self) -> SystemPowerAction {
        match self.0.system_power_action() {
            SimPowerAction::None => SystemPowerAction::None,
            SimPowerAction::Sleep => SystemPowerAction::Sleep,
            SimPowerAction::Hibernate => SystemPowerAction::Hibernate,
            SimPowerAction::Shutdown => SystemPowerAction::Shutdown,
        }
    }

    fn set_failed(&self, action: FailedAction) {
        self.0.set_failed(match action {
            FailedAction::AttemptRestart => SimFailed::AttemptRestart,
            FailedAction::NoRestart => SimFailed::NoRestart,
        });
    }

    fn stop_idle(&self) -> NtResult<()> {
        self.0.stop_idle().map_err(from_sim_status)
    }

    fn resume_idle(&self) {
        self.0.resume_idle();
    }

    fn create_interface(&self, class: Guid, reference: Option<&str>) -> NtResult<String> {
        self.0
            .create_interface(sim_guid(class), reference)
            .map_err(from_sim_status)
    }

    fn set_interface_state(&self, class: Guid, reference: Option<&str>, enabled: bool) {
        // A device without that interface is a driver bug KMDF ignores silently; so do we.
        let _ = self
            .0
            .set_interface_state(sim_guid(class), reference, enabled);
    }
}

/// `WDFDEVICE_INIT` of the simulated machine, as `EvtDriverDeviceAdd` receives it.
#[repr(transparent)]
pub struct DeviceInit(SimDeviceInit);

impl DeviceInit {
    /// Views kmdf-sim's init as the platform's.
    fn from_sim_mut(init: &mut SimDeviceInit) -> &mut DeviceInit {
        let init: *mut SimDeviceInit = init;
        // SAFETY: `DeviceInit` is `#[repr(transparent)]` over `SimDeviceInit`, so the two have the
        // same layout and the cast pointer is valid and aligned; the returned borrow has the
        // input's lifetime and exclusivity.
        unsafe { &mut *init.cast::<DeviceInit>() }
    }

    /// The kmdf-sim init behind this one (for simulator-level extensions: the I/O layer's
    /// queue and file-object configuration).
    pub fn sim_mut(&mut self) -> &mut SimDeviceInit {
        &mut self.0
    }

    /// Wraps a kmdf-sim init the driver allocated (`WdfPdoInitAllocate`).
    pub(super) fn from_sim(init: SimDeviceInit) -> DeviceInit {
        DeviceInit(init)
    }
}

impl core::fmt::Debug for DeviceInit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(&self.0, f)
    }
}

fn wrap_pnp(callbacks: ContractPnp<Device, Resources>) -> SimPnp {
    fn plain(cb: Option<DeviceFn<Device>>) -> Option<kmdf_sim::device::DeviceFn> {
        cb.map(|cb| -> kmdf_sim::device::DeviceFn {
            Arc::new(move |d: &SimDevice| cb(&Device(d.clone())))
        })
    }
    fn result(cb: Option<DeviceResultFn<Device>>) -> Option<kmdf_sim::device::DeviceStatusFn> {
        cb.map(|cb| -> kmdf_sim::device::DeviceStatusFn {
            Arc::new(move |d: &SimDevice| to_sim(cb(&Device(d.clone()))))
        })
    }
    fn power(cb: Option<DevicePowerFn<Device>>) -> Option<kmdf_sim::device::DevicePowerFn> {
        cb.map(|cb| -> kmdf_sim::device::DevicePowerFn {
            Arc::new(move |d: &SimDevice, s| to_sim(cb(&Device(d.clone()), power_state(s))))
        })
    }
    fn resources(
        cb: Option<DeviceResourcesFn<Device, Resources>>,
    ) -> Option<kmdf_sim::device::DeviceResourcesFn> {
        cb.map(|cb| -> kmdf_sim::device::DeviceResourcesFn {
            Arc::new(move |d: &SimDevice, r: &SimResources| to_sim(cb(&Device(d.clone()), r)))
        })
    }
    SimPnp {
        prepare_hardware: resources(callbacks.prepare_hardware),
        release_hardware: resources(callbacks.release_hardware),
        d0_entry: power(callbacks.d0_entry),
        d0_entry_post_interrupts_enabled: power(callbacks.d0_entry_post_interrupts_enabled),
        d0_exit_pre_interrupts_disabled: power(callbacks.d0_exit_pre_interrupts_disabled),
        d0_exit: power(callbacks.d0_exit),
        self_managed_io_init: result(callbacks.self_managed_io_init),
        self_managed_io_restart: result(callbacks.self_managed_io_restart),
        self_managed_io_suspend: result(callbacks.self_managed_io_suspend),
        self_managed_io_flush: plain(callbacks.self_managed_io_flush),
        self_managed_io_cleanup: plain(callbacks.self_managed_io_cleanup),
        surprise_removal: plain(callbacks.surprise_removal),
        query_remove: result(callbacks.query_remove),
        query_stop: result(callbacks.query_stop),
        relations_query: callbacks.relations_query.map(
            |cb| -> kmdf_sim::device::DeviceRelationsFn {
                Arc::new(move |d: &SimDevice, r| cb(&Device(d.clone()), relation(r)))
            },
        ),
        usage_notification_ex: callbacks.usage_notification_ex.map(
            |cb| -> kmdf_sim::device::DeviceUsageFn {
                Arc::new(move |d: &SimDevice, kind, in_path| {
                    to_sim(cb(&Device(d.clone()), special_file(kind), in_path))
                })
            },
        ),
    }
}

fn wrap_policy(callbacks: ContractPolicy<Device>) -> SimPolicy {
    let plain = |cb: Option<DeviceFn<Device>>| {
        cb.map(|cb| -> kmdf_sim::device::DeviceFn {
            Arc::new(move |d: &SimDevice| cb(&Device(d.clone())))
        })
    };
    SimPolicy {
        arm_wake_from_s0: callbacks.arm_wake_from_s0.map(
            |cb| -> kmdf_sim::device::DeviceStatusFn {
                Arc::new(move |d: &SimDevice| to_sim(cb(&Device(d.clone()))))
            },
        ),
        disarm_wake_from_s0: plain(callbacks.disarm_wake_from_s0),
        wake_from_s0_triggered: plain(callbacks.wake_from_s0_triggered),
        arm_wake_from_sx: None,
        arm_wake_from_sx_with_reason: callbacks.arm_wake_from_sx_with_reason.map(
            |cb| -> kmdf_sim::device::DeviceArmSxReasonFn {
                Arc::new(move |d: &SimDevice, wake, children| {
                    to_sim(cb(&Device(d.clone()), wake, children))
                })
            },
        ),
        disarm_wake_from_sx: plain(callbacks.disarm_wake_from_sx),
        wake_from_sx_triggered: plain(callbacks.wake_from_sx_triggered),
    }
}

impl PlatformDeviceInit for DeviceInit {
    type Device = Device;

    fn set_pnp_power_callbacks(&mut self, callbacks: ContractPnp<Device, Resources>) {
        self.0.pnp = wrap_pnp(callbacks);
    }

    fn set_power_policy_callbacks(&mut self, callbacks: ContractPolicy<Device>) {
        self.0.power_policy = wrap_policy(callbacks);
    }

    fn set_file_object_config(&mut self, config: FileObjectConfig<Device, Request, FileObject>) {
        set_file_object_config(self, config);
    }

    fn set_filter(&mut self) {
        self.0.set_filter();
    }

    fn assign_name(&mut self, name: &str) {
        self.0.assign_name(name);
    }

    fn is_filter(&self) -> bool {
        self.0.is_filter()
    }

    fn create_device(&mut self) -> NtResult<Device> {
        self.create_device_with(DeviceAttributes::default())
    }

    fn create_device_with(&mut self, attributes: DeviceAttributes) -> NtResult<Device> {
        let mut attrs = ObjectAttributes::new();
        attrs.context = attributes.context;
        if let Some(cleanup) = attributes.cleanup {
            attrs = attrs.on_cleanup(move |_| cleanup());
        }
        SimDevice::create(&mut self.0, attrs)
            .map(Device)
            .map_err(from_sim_status)
    }
}

/// A `WDFDRIVER` of the simulated machine.
#[derive(Clone, Debug)]
pub struct Driver(SimDriver);

impl Driver {
    /// The kmdf-sim driver behind this handle.
    pub fn sim(&self) -> &SimDriver {
        &self.0
    }
}

impl PlatformDriver for Driver {
    type DeviceInit = DeviceInit;

    fn name(&self) -> &str {
        self.0.name()
    }

    fn control_device_init(&self, administrators_only: bool) -> DeviceInit {
        DeviceInit(SimDeviceInit::control(
            &self.0,
            if administrators_only {
                DeviceSecurity::AdministratorsOnly
            } else {
                DeviceSecurity::Everyone
            },
        ))
    }
}

/// `WDF_DRIVER_CONFIG` on this backend.
pub type DriverConfig = ContractDriverConfig<Driver, DeviceInit>;

fn wrap_driver_config(config: DriverConfig) -> SimDriverConfig {
    let device_add = config.device_add;
    let mut sim = SimDriverConfig::new(move |driver: &SimDriver, init: &mut SimDeviceInit| {
        device_add(&Driver(driver.clone()), DeviceInit::from_sim_mut(init))
            .map_err(|status| SimStatus(status.to_raw()))
    });
    if let Some(unload) = config.unload {
        sim = sim.on_unload(move |driver: &SimDriver| unload(&Driver(driver.clone())));
    }
    sim
}

/// Installs a driver package on the simulated machine, as the PnP manager will find it when a
/// device node names it (the simulator's equivalent of `pnputil /add-driver`). The driver is
/// loaded (DriverEntry → `WdfDriverCreate`) when a device needs it.
pub fn install_driver(machine: &Machine, name: &str, config: DriverConfig) {
    kmdf_sim::driver::install(machine, name, wrap_driver_config(config));
}

/// Plugs in a device of `driver`, a minimal function driver installed by this call (its
/// `EvtDriverDeviceAdd` only creates the device), and returns the started device with its node
/// (`node.remove()` removes it). For tests and examples of code that needs a device but is not a
/// driver of its own — Modules whose timers and work items are children of their device.
///
/// # Errors
///
/// The status of the failed device add or start.
pub fn plug_in_device(machine: &Machine, driver: &str) -> NtResult<(DeviceNode, Device)> {
    install_driver(
        machine,
        driver,
        DriverConfig {
            device_add: Arc::new(|_driver, init| init.create_device().map(|_device| ())),
            unload: None,
        },
    );
    let node = machine
        .pnp()
        .plug_in(StackSpec::new(&format!("ROOT\\{driver}"), driver))
        .map_err(from_sim_status)?;
    let device = node
        .function_device()
        .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
    Ok((node, Device(device)))
}

/// Loads a driver now (DriverEntry → `WdfDriverCreate`), installing it first; for drivers that
/// create no PnP device (control-device and dynamic-Module-only drivers).
pub fn load_driver(machine: &Machine, name: &str, config: DriverConfig) -> NtResult<Driver> {
    SimDriver::load(machine, name, wrap_driver_config(config))
        .map(Driver)
        .map_err(from_sim_status)
}
