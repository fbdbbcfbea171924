//! Devices: `WDFDEVICE_INIT`, `WdfDeviceCreate`, the PnP/power callbacks, and the I/O-layer seam.
//!
//! # Design
//!
//! The PnP manager ([`crate::pnp`]) calls each driver's `EvtDriverDeviceAdd` with a
//! [`DeviceInit`]. The driver fills in its PnP/power callbacks ([`PnpPowerCallbacks`],
//! `WdfDeviceInitSetPnpPowerEventCallbacks`) and power-policy callbacks
//! ([`PowerPolicyCallbacks`], `WdfDeviceInitSetPowerPolicyEventCallbacks`), may mark itself a
//! filter ([`DeviceInit::set_filter`], [`WdfFdoInitSetFilter`]) and then calls
//! [`Device::create`] (`WdfDeviceCreate`), which consumes the init and creates the WDFDEVICE
//! object (a fault point) with the driver's typed context.
//!
//! Every callback is optional. The framework calls them at `PASSIVE_LEVEL` through
//! [`invoke_callback`](crate::verifier::invoke_callback), in the sequences of [`crate::pnp`].
//!
//! A **control device** (non-PnP, `WdfControlDeviceInitAllocate`) starts from
//! [`DeviceInit::control`] instead and goes through the same [`Device::create`]; it has no node
//! and no PnP/power callbacks. See [`crate::control`].
//!
//! # The seam for the I/O layer
//!
//! Queues, file objects and I/O targets are built by a later layer **on top of** devices:
//!
//! * **init-time config**: [`DeviceInit::extension_mut`] stores any `T: Any + Send + Sync`
//!   (e.g. the default queue config, file-object config) while the driver builds the init; at
//!   `WdfDeviceCreate` every such value moves to the device, where [`Device::extension`] (create
//!   on first use) and [`Device::get_extension`] find it by type;
//! * **power hooks**: [`Device::add_power_hook`] registers a [`DevicePowerHook`]; the framework
//!   calls `started` at step 6 of the power-up sequences (start / restart power-managed queues:
//!   [A User Plugs in a Device], [A Device Returns to Its Working State],
//!   [The PnP Manager Redistributes System Resources]), `stopping` at step 2 of the power-down
//!   sequences (stop power-managed queues, `EvtIoStop` with [`StopAction::Suspend`] or
//!   [`StopAction::Purge`]: [A Device Enters a Low-Power State], [A User Unplugs a Device],
//!   [The PnP Manager Redistributes System Resources]) and `removed` once when the device is torn
//!   down, before the WDFDEVICE object is deleted;
//! * **stack access**: [`Device::lower`] (the next-lower device of the stack, `None` at the
//!   bottom, where the PDO/bus is), [`Device::node`], [`Device::driver`], [`Device::is_filter`],
//!   [`Device::is_in_d0`], [`Device::power_state`], [`Device::pnp_state`];
//! * **idle references**: [`Device::stop_idle`] / [`Device::resume_idle`] (`WdfDeviceStopIdle` /
//!   `WdfDeviceResumeIdle`): a request arriving at a power-managed queue while the stack idles in
//!   Dx powers it back up.
//!
//! [`WdfFdoInitSetFilter`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdffdo/nf-wdffdo-wdffdoinitsetfilter
//! [A User Plugs in a Device]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-user-plugs-in-a-device
//! [A User Unplugs a Device]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-user-unplugs-a-device
//! [A Device Enters a Low-Power State]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-device-enters-a-low-power-state
//! [A Device Returns to Its Working State]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/a-device-returns-to-its-working-state
//! [The PnP Manager Redistributes System Resources]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/the-pnp-manager-redistributes-system-resources

use core::fmt;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::control::{ControlState, DeviceSecurity};
use crate::driver::Driver;
use crate::fault::FaultPoint;
use crate::guid::Guid;
use crate::machine::Machine;
use crate::object::{ObjectAttributes, WdfObject};
use crate::pnp::state::{
    DevicePnpState, DevicePowerState, RelationType, SpecialFileType, StackRole, StopAction,
    WdfPowerDeviceState,
};
use crate::status::Status;

/// The device node a device belongs to, as the device layer holds it: type-erased (the PnP
/// layer above reads it back with its own type, in `Device::node`). Empty for a control device.
pub(crate) type NodeSlot = Weak<dyn Any + Send + Sync>;

/// The slot of a device outside every node.
pub(crate) fn no_node() -> NodeSlot {
    Weak::<()>::new()
}

/// A callback taking the device and returning a status (`EvtDeviceSelfManagedIoInit`, …).
pub type DeviceStatusFn = Arc<dyn Fn(&Device) -> Status + Send + Sync>;
/// A callback taking the device, returning nothing (`EvtDeviceSurpriseRemoval`, …).
pub type DeviceFn = Arc<dyn Fn(&Device) + Send + Sync>;
/// A power callback with `PreviousState` / `TargetState` (`EvtDeviceD0Entry`, …).
pub type DevicePowerFn = Arc<dyn Fn(&Device, WdfPowerDeviceState) -> Status + Send + Sync>;
/// `EvtDevicePrepareHardware` / `EvtDeviceReleaseHardware` (the translated resources).
pub type DeviceResourcesFn = Arc<dyn Fn(&Device, &Resources) -> Status + Send + Sync>;
/// `EvtDeviceRelationsQuery`.
pub type DeviceRelationsFn = Arc<dyn Fn(&Device, RelationType) + Send + Sync>;
/// `EvtDeviceUsageNotificationEx` (`NotificationType`, `IsInNotificationPath`).
pub type DeviceUsageFn = Arc<dyn Fn(&Device, SpecialFileType, bool) -> Status + Send + Sync>;
/// `EvtDeviceArmWakeFromSxWithReason` (`DeviceWakeEnabled`, `ChildrenArmedForWake`).
pub type DeviceArmSxReasonFn = Arc<dyn Fn(&Device, bool, bool) -> Status + Send + Sync>;

/// `WDF_PNPPOWER_EVENT_CALLBACKS` (plus QueryRemove/QueryStop/RelationsQuery/UsageNotificationEx).
#[derive(Clone, Default)]
pub struct PnpPowerCallbacks {
    /// `EvtDevicePrepareHardware`.
    pub prepare_hardware: Option<DeviceResourcesFn>,
    /// `EvtDeviceReleaseHardware`.
    pub release_hardware: Option<DeviceResourcesFn>,
    /// `EvtDeviceD0Entry(PreviousState)`.
    pub d0_entry: Option<DevicePowerFn>,
    /// `EvtDeviceD0EntryPostInterruptsEnabled(PreviousState)`.
    pub d0_entry_post_interrupts_enabled: Option<DevicePowerFn>,
    /// `EvtDeviceD0ExitPreInterruptsDisabled(TargetState)`.
    pub d0_exit_pre_interrupts_disabled: Option<DevicePowerFn>,
    /// `EvtDeviceD0Exit(TargetState)`.
    pub d0_exit: Option<DevicePowerFn>,
    /// `EvtDeviceSelfManagedIoInit`.
    pub self_managed_io_init: Option<DeviceStatusFn>,
    /// `EvtDeviceSelfManagedIoRestart`.
    pub self_managed_io_restart: Option<DeviceStatusFn>,
    /// `EvtDeviceSelfManagedIoSuspend`.
    pub self_managed_io_suspend: Option<DeviceStatusFn>,
    /// `EvtDeviceSelfManagedIoFlush`.
    pub self_managed_io_flush: Option<DeviceFn>,
    /// `EvtDeviceSelfManagedIoCleanup`.
    pub self_managed_io_cleanup: Option<DeviceFn>,
    /// `EvtDeviceSurpriseRemoval`.
    pub surprise_removal: Option<DeviceFn>,
    /// `EvtDeviceQueryRemove`: a failure vetoes.
    pub query_remove: Option<DeviceStatusFn>,
    /// `EvtDeviceQueryStop`: a failure vetoes.
    pub query_stop: Option<DeviceStatusFn>,
    /// `EvtDeviceRelationsQuery`.
    pub relations_query: Option<DeviceRelationsFn>,
    /// `EvtDeviceUsageNotificationEx`: a failure vetoes the special file.
    pub usage_notification_ex: Option<DeviceUsageFn>,
}

/// `WDF_POWER_POLICY_EVENT_CALLBACKS` — called for the power policy owner only.
#[derive(Clone, Default)]
pub struct PowerPolicyCallbacks {
    /// `EvtDeviceArmWakeFromS0`: a failure means "not armed" (no Disarm, no failure).
    pub arm_wake_from_s0: Option<DeviceStatusFn>,
    /// `EvtDeviceDisarmWakeFromS0`.
    pub disarm_wake_from_s0: Option<DeviceFn>,
    /// `EvtDeviceWakeFromS0Triggered` (after D0Entry, before DisarmWakeFromS0).
    pub wake_from_s0_triggered: Option<DeviceFn>,
    /// `EvtDeviceArmWakeFromSx` (used when no `…WithReason` is set).
    pub arm_wake_from_sx: Option<DeviceStatusFn>,
    /// `EvtDeviceArmWakeFromSxWithReason`.
    pub arm_wake_from_sx_with_reason: Option<DeviceArmSxReasonFn>,
    /// `EvtDeviceDisarmWakeFromSx`.
    pub disarm_wake_from_sx: Option<DeviceFn>,
    /// `EvtDeviceWakeFromSxTriggered`.
    pub wake_from_sx_triggered: Option<DeviceFn>,
}

/// The hardware resources a device node is started with (raw = translated here). A rebalance
/// assigns a new set with a higher `generation`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Resources {
    /// 0 for the first assignment, +1 per rebalance.
    pub generation: u32,
    /// Descriptions of the resources (e.g. `"memory 0xF0000000+0x1000"`).
    pub items: Vec<String>,
}

/// `WDF_DEVICE_POWER_POLICY_IDLE_SETTINGS` (the part the simulator uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S0IdleSettings {
    /// `IdleCaps == IdleCanWakeFromS0`: arm for wake (EvtDeviceArmWakeFromS0) before idling.
    pub can_wake: bool,
    /// `DxState`: the state entered when idle (default D3).
    pub dx_state: DevicePowerState,
}

impl Default for S0IdleSettings {
    fn default() -> Self {
        S0IdleSettings {
            can_wake: false,
            dx_state: DevicePowerState::D3,
        }
    }
}

/// The I/O layer's view of a device's power transitions. See the [module docs](self).
/// Hooks run on the PnP thread at `PASSIVE_LEVEL` (framework code, not a driver callback); they
/// may wait (e.g. for outstanding requests to be acknowledged).
pub trait DevicePowerHook: Send + Sync {
    /// Step 6 of the power-up sequences: the framework starts (first start) or restarts
    /// power-managed queues. Runs before `EvtDeviceSelfManagedIoInit`/`Restart`.
    fn started(&self, device: &Device) {
        let _ = device;
    }
    /// Step 2 of the power-down sequences: stop power-managed queues, `EvtIoStop` per outstanding
    /// request with `action`. Runs after `EvtDeviceSelfManagedIoSuspend` except on surprise
    /// removal (before it, only if the device was in D0).
    fn stopping(&self, device: &Device, action: StopAction) {
        let _ = (device, action);
    }
    /// The device is torn down (after `EvtDeviceSelfManagedIoCleanup`, before the WDFDEVICE
    /// object and its children are deleted): purge and delete queues, fail pending requests.
    fn removed(&self, device: &Device) {
        let _ = device;
    }
    /// True while the layer has I/O that keeps the device out of S0 idle
    /// ([Supporting Idle Power-Down]: a request waiting in, or presented by, a power-managed
    /// queue). May be called at `DISPATCH_LEVEL`; must not call into the PnP engine.
    ///
    /// [Supporting Idle Power-Down]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/supporting-idle-power-down
    fn busy(&self, device: &Device) -> bool {
        let _ = device;
        false
    }
    /// The whole stack of the device's node finished its first start (every device ran its
    /// power-up list, `EvtDeviceSelfManagedIoInit` included), before the node reads started:
    /// the interface layer enables the device's interfaces here.
    fn stack_started(&self, device: &Device) {
        let _ = device;
    }
    /// The device is leaving: its node is being removed, disabled, surprise-removed or torn down
    /// after a failure — before the removal callbacks run, and once more just before the
    /// device objects are deleted — or a control device is being deleted (before its I/O is
    /// torn down). The interface layer disables the device's interfaces here (and removes a
    /// control device's symbolic link).
    fn leaving(&self, device: &Device) {
        let _ = device;
    }
}

/// The longest device, hardware, compatible or instance id the simulator takes, in characters
/// (`MAX_DEVICE_ID_LEN`, 200, from cfgmgr32.h).
pub const MAX_DEVICE_ID_LENGTH: usize = 200;

/// One `WdfPdoInitAddDeviceText` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceText {
    /// `DeviceDescription`.
    pub description: String,
    /// `DeviceLocation`.
    pub location: String,
    /// `LocaleId`.
    pub locale: u32,
}

/// A child device's identity as its bus driver set it on the PDO's init.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PdoIdentity {
    /// `WdfPdoInitAssignDeviceID`.
    pub device_id: Option<String>,
    /// `WdfPdoInitAssignInstanceID`.
    pub instance_id: Option<String>,
    /// `WdfPdoInitAddHardwareID`, in order.
    pub hardware_ids: Vec<String>,
    /// `WdfPdoInitAddCompatibleID`, in order.
    pub compatible_ids: Vec<String>,
    /// `WdfPdoInitAddDeviceText`.
    pub texts: Vec<DeviceText>,
    /// `WdfPdoInitSetDefaultLocale`.
    pub default_locale: Option<u32>,
    /// `WdfPdoInitAssignRawDevice`'s class.
    pub raw_class: Option<Guid>,
}

/// `WDF_TRI_STATE`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TriState {
    /// `WdfFalse`.
    False,
    /// `WdfTrue`.
    True,
    /// `WdfUseDefault`.
    #[default]
    UseDefault,
}

/// `WDF_DEVICE_PNP_CAPABILITIES` (`WdfDeviceSetPnpCapabilities`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PnpCapabilities {
    /// `LockSupported`.
    pub lock_supported: TriState,
    /// `EjectSupported`.
    pub eject_supported: TriState,
    /// `Removable`.
    pub removable: TriState,
    /// `DockDevice`.
    pub dock_device: TriState,
    /// `UniqueID`.
    pub unique_id: TriState,
    /// `SilentInstall`.
    pub silent_install: TriState,
    /// `SurpriseRemovalOK`.
    pub surprise_removal_ok: TriState,
    /// `HardwareDisabled`.
    pub hardware_disabled: TriState,
    /// `NoDisplayInUI`.
    pub no_display_in_ui: TriState,
    /// `Address` (`None`: `(ULONG) -1`, not set).
    pub address: Option<u32>,
    /// `UINumber` (`None`: `(ULONG) -1`, not set).
    pub ui_number: Option<u32>,
}

/// `WDF_DEVICE_POWER_CAPABILITIES` (`WdfDeviceSetPowerCapabilities`), the fields a bus driver
/// usually sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PowerCapabilities {
    /// `DeviceD1`.
    pub device_d1: TriState,
    /// `DeviceD2`.
    pub device_d2: TriState,
    /// `WakeFromD0`.
    pub wake_from_d0: TriState,
    /// `WakeFromD1`.
    pub wake_from_d1: TriState,
    /// `WakeFromD2`.
    pub wake_from_d2: TriState,
    /// `WakeFromD3`.
    pub wake_from_d3: TriState,
    /// `DeviceState[PowerSystemWorking ..= PowerSystemShutdown]` (S0, S1, S2, S3, S4, S5;
    /// `None`: `PowerDeviceMaximum`, not set).
    pub device_state: [Option<DevicePowerState>; 6],
    /// `DeviceWake` (`None`: not set).
    pub device_wake: Option<DevicePowerState>,
}

/// Where a PDO is in its bus driver's hands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PdoStatus {
    /// Created, not yet reported (`WdfFdoAddStaticChild` not called).
    Created,
    /// Reported with `WdfFdoAddStaticChild`; the PnP manager has not enumerated it yet.
    Reported,
    /// Enumerated: it has a device node.
    Enumerated,
    /// Reported missing (`WdfPdoMarkMissing`, ejected, or its parent went away); deleted.
    Missing,
}

/// A PDO's part of a device: its identity, parent, node and reported capabilities.
pub(crate) struct PdoInner {
    pub(crate) parent: Weak<DeviceInner>,
    pub(crate) identity: PdoIdentity,
    pub(crate) node: Mutex<NodeSlot>,
    pub(crate) status: Mutex<PdoStatus>,
    pub(crate) pnp_caps: Mutex<Option<PnpCapabilities>>,
    pub(crate) power_caps: Mutex<Option<PowerCapabilities>>,
}

/// `WDFDEVICE_INIT`: what a driver sets up in `EvtDriverDeviceAdd` before `WdfDeviceCreate`.
pub struct DeviceInit {
    /// The PnP/power callbacks.
    pub pnp: PnpPowerCallbacks,
    /// The power-policy callbacks (used if the device is the power policy owner).
    pub power_policy: PowerPolicyCallbacks,
    filter: bool,
    ppo: Option<bool>,
    name: Option<String>,
    device_type: u32,
    extensions: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    driver: Driver,
    pub(crate) node: NodeSlot,
    role: StackRole,
    created: Option<Device>,
    control: Option<DeviceSecurity>,
    pdo: Option<PdoSetup>,
}

/// What `WdfPdoInitAllocate` and the `WdfPdoInit…` calls record until `WdfDeviceCreate`.
struct PdoSetup {
    parent: Weak<DeviceInner>,
    identity: PdoIdentity,
}

impl fmt::Debug for DeviceInit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceInit")
            .field("driver", &self.driver.name())
            .field("role", &self.role)
            .field("filter", &self.filter)
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

/// `FILE_DEVICE_UNKNOWN`, the default device type.
pub const FILE_DEVICE_UNKNOWN: u32 = 0x22;

impl DeviceInit {
    pub(crate) fn new(driver: Driver, node: NodeSlot, role: StackRole) -> Self {
        DeviceInit {
            pnp: PnpPowerCallbacks::default(),
            power_policy: PowerPolicyCallbacks::default(),
            filter: false,
            ppo: None,
            name: None,
            device_type: FILE_DEVICE_UNKNOWN,
            extensions: HashMap::new(),
            driver,
            node,
            role,
            created: None,
            control: None,
            pdo: None,
        }
    }

    /// `WdfControlDeviceInitAllocate(Driver, SDDLString)`: the init of a **control device** (a
    /// non-PnP WDFDEVICE of `driver`, outside any device stack) whose security descriptor is
    /// `security`. Build it like any init — [`assign_name`](Self::assign_name) (a control device
    /// should be named: only a named one can get a symbolic link),
    /// [`set_device_type`](Self::set_device_type),
    /// [`io::set_file_object_config`](crate::io::set_file_object_config),
    /// [`io::set_io_in_caller_context`](crate::io::set_io_in_caller_context) — then call
    /// [`Device::create`], [`Device::create_symbolic_link`] and
    /// [`Device::finish_initializing`]. See [`crate::control`] for the whole life cycle.
    ///
    /// KMDF lets a control init take only the init methods listed in "Using Control Device
    /// Objects"; the PnP/power and power-policy callbacks are not among them. Callbacks put in
    /// [`pnp`](Self::pnp) / [`power_policy`](Self::power_policy) anyway, and
    /// [`set_filter`](Self::set_filter) / [`set_power_policy_ownership`](Self::set_power_policy_ownership),
    /// are **ignored**: a control device has no PnP/power package, so they are never called.
    pub fn control(driver: &Driver, security: DeviceSecurity) -> DeviceInit {
        DeviceInit {
            pnp: PnpPowerCallbacks::default(),
            power_policy: PowerPolicyCallbacks::default(),
            filter: false,
            ppo: None,
            name: None,
            device_type: FILE_DEVICE_UNKNOWN,
            extensions: HashMap::new(),
            driver: driver.clone(),
            node: no_node(),
            role: StackRole::Function,
            created: None,
            control: Some(security),
            pdo: None,
        }
    }

    /// `WdfPdoInitAllocate(ParentDevice)`: the init of a **child device's PDO**, which the bus
    /// driver owning `parent` (its FDO) creates and reports. Fill in its identity with the
    /// `pdo_*` methods (`WdfPdoInitAssignDeviceID`, `WdfPdoInitAddHardwareID`, …) and its
    /// callbacks, call [`Device::create`], then report it with
    /// [`Device::add_static_child`](crate::device::Device::add_static_child) on `parent`; see
    /// [`crate::pnp`] for what the PnP manager then does with it.
    ///
    /// Errors: `STATUS_INSUFFICIENT_RESOURCES` (allocation fault point; KMDF returns `NULL`);
    /// `STATUS_INVALID_DEVICE_REQUEST` for a control device or a PDO as `parent`;
    /// `STATUS_INVALID_DEVICE_STATE` for a deleted `parent` or one outside a device node.
    pub fn pdo(parent: &Device) -> Result<DeviceInit, Status> {
        if parent.is_control() || parent.0.pdo.is_some() {
            return Err(Status::INVALID_DEVICE_REQUEST);
        }
        parent.object().ensure_alive("WdfPdoInitAllocate")?;
        if parent.0.node.upgrade().is_none() {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        let machine = parent.machine().ok_or(Status::INVALID_DEVICE_STATE)?;
        if machine.faults().should_fail(FaultPoint::Allocation) {
            return Err(Status::INSUFFICIENT_RESOURCES);
        }
        let mut init = DeviceInit::new(parent.driver().clone(), no_node(), StackRole::Bus);
        init.pdo = Some(PdoSetup {
            parent: Arc::downgrade(&parent.0),
            identity: PdoIdentity::default(),
        });
        Ok(init)
    }

    /// True for an init made by [`pdo`](Self::pdo).
    pub fn is_pdo(&self) -> bool {
        self.pdo.is_some()
    }

    fn pdo_identity(&mut self) -> Result<&mut PdoIdentity, Status> {
        if self.created.is_some() {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        self.pdo
            .as_mut()
            .map(|setup| &mut setup.identity)
            .ok_or(Status::INVALID_DEVICE_REQUEST)
    }

    fn checked_id(id: &str) -> Result<String, Status> {
        if id.is_empty() || id.contains('\0') || id.chars().count() > MAX_DEVICE_ID_LENGTH {
            return Err(Status::INVALID_PARAMETER);
        }
        Ok(id.to_owned())
    }

    /// `WdfPdoInitAssignDeviceID`: the device id (usually the first hardware id).
    ///
    /// Errors: `STATUS_INVALID_DEVICE_REQUEST` on an init that is not a PDO's;
    /// `STATUS_INVALID_PARAMETER` for an empty id, one with a NUL or longer than
    /// [`MAX_DEVICE_ID_LENGTH`]; `STATUS_INVALID_DEVICE_STATE` after `WdfDeviceCreate`.
    pub fn pdo_assign_device_id(&mut self, id: &str) -> Result<(), Status> {
        let id = Self::checked_id(id)?;
        self.pdo_identity()?.device_id = Some(id);
        Ok(())
    }

    /// `WdfPdoInitAssignInstanceID`. Errors as [`pdo_assign_device_id`](Self::pdo_assign_device_id).
    pub fn pdo_assign_instance_id(&mut self, id: &str) -> Result<(), Status> {
        let id = Self::checked_id(id)?;
        self.pdo_identity()?.instance_id = Some(id);
        Ok(())
    }

    /// `WdfPdoInitAddHardwareID` (most specific first). Errors as
    /// [`pdo_assign_device_id`](Self::pdo_assign_device_id).
    pub fn pdo_add_hardware_id(&mut self, id: &str) -> Result<(), Status> {
        let id = Self::checked_id(id)?;
        self.pdo_identity()?.hardware_ids.push(id);
        Ok(())
    }

    /// `WdfPdoInitAddCompatibleID`. Errors as [`pdo_assign_device_id`](Self::pdo_assign_device_id).
    pub fn pdo_add_compatible_id(&mut self, id: &str) -> Result<(), Status> {
        let id = Self::checked_id(id)?;
        self.pdo_identity()?.compatible_ids.push(id);
        Ok(())
    }

    /// `WdfPdoInitAddDeviceText(DeviceDescription, DeviceLocation, LocaleId)`.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_REQUEST` on an init that is not a PDO's;
    /// `STATUS_INVALID_DEVICE_STATE` after `WdfDeviceCreate`.
    pub fn pdo_add_device_text(
        &mut self,
        description: &str,
        location: &str,
        locale: u32,
    ) -> Result<(), Status> {
        self.pdo_identity()?.texts.push(DeviceText {
            description: description.to_owned(),
            location: location.to_owned(),
            locale,
        });
        Ok(())
    }

    /// `WdfPdoInitSetDefaultLocale`. Errors as [`pdo_add_device_text`](Self::pdo_add_device_text).
    pub fn pdo_set_default_locale(&mut self, locale: u32) -> Result<(), Status> {
        self.pdo_identity()?.default_locale = Some(locale);
        Ok(())
    }

    /// `WdfPdoInitAssignRawDevice(DeviceClassGuid)`: the PDO runs in raw mode — it starts
    /// without a function driver when none matches its ids and owns power policy.
    /// Errors as [`pdo_add_device_text`](Self::pdo_add_device_text).
    pub fn pdo_assign_raw_device(&mut self, class: Guid) -> Result<(), Status> {
        self.pdo_identity()?.raw_class = Some(class);
        Ok(())
    }

    /// True for an init made by [`control`](Self::control).
    pub fn is_control(&self) -> bool {
        self.control.is_some()
    }

    /// `WdfFdoInitSetFilter`: this device is a filter — requests it does not handle are forwarded
    /// to the next lower driver, and its queues default to non-power-managed (the I/O layer reads
    /// [`Device::is_filter`]).
    pub fn set_filter(&mut self) {
        self.filter = true;
    }

    /// True after [`set_filter`](Self::set_filter).
    pub fn is_filter(&self) -> bool {
        self.filter
    }

    /// `WdfDeviceInitSetPowerPolicyOwnership`. Default: the function driver owns power policy,
    /// filters do not.
    pub fn set_power_policy_ownership(&mut self, owner: bool) {
        self.ppo = Some(owner);
    }

    /// `WdfDeviceInitAssignName` (e.g. `\Device\OsrUsbFx2_0`).
    pub fn assign_name(&mut self, name: &str) {
        self.name = Some(name.to_owned());
    }

    /// `WdfDeviceInitSetDeviceType` (default [`FILE_DEVICE_UNKNOWN`]).
    pub fn set_device_type(&mut self, device_type: u32) {
        self.device_type = device_type;
    }

    /// The driver whose `EvtDriverDeviceAdd` runs.
    pub fn driver(&self) -> &Driver {
        &self.driver
    }

    /// The driver's role in the stack.
    pub fn role(&self) -> StackRole {
        self.role
    }

    /// The init-time extension of type `T`, created with `T::default()` on first use (the I/O
    /// layer stores its queue/file-object config here).
    ///
    /// # Panics
    ///
    /// Never: the map only stores values under their own `TypeId`.
    pub fn extension_mut<T: Any + Send + Sync + Default>(&mut self) -> &mut T {
        self.extensions
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()))
            .downcast_mut::<T>()
            .expect("extension stored under its own TypeId")
    }

    /// The init-time extension of type `T`, if set.
    pub fn extension<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.extensions
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref::<T>())
    }

    /// The device created from this init, if `Device::create` succeeded.
    pub fn created_device(&self) -> Option<&Device> {
        self.created.as_ref()
    }

    pub(crate) fn take_created(&mut self) -> Option<Device> {
        self.created.take()
    }
}

/// Mutable per-device state, owned by the PnP engine.
#[derive(Default)]
#[allow(clippy::struct_excessive_bools)] // reason: independent lifecycle flags, not a mode
pub(crate) struct DeviceState {
    pub(crate) pnp: DevicePnpState,
    pub(crate) power: DevicePowerState,
    pub(crate) prepared: bool,
    pub(crate) smio_initialized: bool,
    /// EvtDeviceSelfManagedIoFlush ran on a removal that kept the device (a disabled child's
    /// PDO); EvtDeviceSelfManagedIoCleanup is pending until the PDO is reported missing (KMDF's
    /// self-managed-I/O state machine in its Flushed state).
    pub(crate) smio_flushed: bool,
    pub(crate) ever_started: bool,
    pub(crate) armed_s0: bool,
    pub(crate) armed_sx: bool,
    pub(crate) idle: S0IdleSettings,
    pub(crate) sx_wake: bool,
    pub(crate) power_refs: usize,
    pub(crate) idle_timeout: Option<std::time::Duration>,
    pub(crate) removed_hooks_run: bool,
}

pub(crate) struct DeviceInner {
    object: WdfObject,
    driver: Driver,
    pub(crate) node: NodeSlot,
    role: StackRole,
    filter: bool,
    ppo: bool,
    name: Option<String>,
    device_type: u32,
    pub(crate) pnp: PnpPowerCallbacks,
    pub(crate) policy: PowerPolicyCallbacks,
    pub(crate) st: Mutex<DeviceState>,
    extensions: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    hooks: Mutex<Vec<Arc<dyn DevicePowerHook>>>,
    pub(crate) control: Option<ControlState>,
    pub(crate) pdo: Option<PdoInner>,
}

/// A framework device object (`WDFDEVICE`): FDO or filter DO of one device node. Cheap to clone;
/// equality is identity.
#[derive(Clone)]
pub struct Device(pub(crate) Arc<DeviceInner>);

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Device {}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("name", &self.0.object.name())
            .field("pnp", &self.pnp_state())
            .field("power", &self.power_state())
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Device {
    /// `WdfDeviceCreate`: creates the WDFDEVICE from `init` (consumed: a second call fails) with
    /// `attrs` (context, cleanup/destroy callbacks; a device has no parent).
    ///
    /// For a control init ([`DeviceInit::control`]) this creates a control device: no device
    /// node, no PnP/power callbacks, queues never power-managed, I/O refused until
    /// [`finish_initializing`](Self::finish_initializing); see [`crate::control`].
    ///
    /// Errors: `STATUS_INSUFFICIENT_RESOURCES` (fault injection); `STATUS_INVALID_DEVICE_STATE`
    /// if `init` was already used; `STATUS_INVALID_PARAMETER` if `attrs` names a parent;
    /// `STATUS_OBJECT_NAME_COLLISION` if a control init's name is already taken.
    pub fn create(init: &mut DeviceInit, attrs: ObjectAttributes) -> Result<Device, Status> {
        if init.created.is_some() {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        if attrs.parent.is_some() {
            return Err(Status::INVALID_PARAMETER);
        }
        let machine = init.driver.machine().ok_or(Status::INVALID_DEVICE_STATE)?;
        if let Some(setup) = &init.pdo {
            // KMDF refuses a PDO without a device id, and one whose parent is gone.
            if setup.identity.device_id.is_none() || setup.parent.upgrade().is_none() {
                return Err(Status::INVALID_DEVICE_STATE);
            }
        }
        if let Some(security) = init.control {
            return crate::control::create(init, security, &machine, attrs);
        }
        let object = WdfObject::create_for(&machine, init.driver.name(), "WDFDEVICE", attrs)?;
        let extensions = init
            .extensions
            .drain()
            .map(|(k, v)| (k, Arc::from(v)))
            .collect();
        let raw = init
            .pdo
            .as_ref()
            .is_some_and(|p| p.identity.raw_class.is_some());
        let ppo = init
            .ppo
            .unwrap_or((init.role == StackRole::Function && !init.filter) || raw);
        let pdo = init.pdo.as_ref().map(|setup| PdoInner {
            parent: setup.parent.clone(),
            identity: setup.identity.clone(),
            node: Mutex::new(no_node()),
            status: Mutex::new(PdoStatus::Created),
            pnp_caps: Mutex::new(None),
            power_caps: Mutex::new(None),
        });
        let device = Device(Arc::new(DeviceInner {
            object,
            driver: init.driver.clone(),
            node: init.node.clone(),
            role: init.role,
            filter: init.filter,
            ppo,
            name: init.name.clone(),
            device_type: init.device_type,
            pnp: init.pnp.clone(),
            policy: init.power_policy.clone(),
            st: Mutex::new(DeviceState::default()),
            extensions: Mutex::new(extensions),
            hooks: Mutex::new(Vec::new()),
            control: None,
            pdo,
        }));
        init.driver.device_added();
        init.created = Some(device.clone());
        Ok(device)
    }

    /// Builds the `DeviceInner` of a control device (called by [`crate::control::create`]).
    pub(crate) fn new_control(
        init: &mut DeviceInit,
        object: WdfObject,
        name: String,
        control: ControlState,
    ) -> Device {
        let extensions = init
            .extensions
            .drain()
            .map(|(k, v)| (k, Arc::from(v)))
            .collect();
        let st = DeviceState {
            power: DevicePowerState::D0,
            ..DeviceState::default()
        };
        Device(Arc::new(DeviceInner {
            object,
            driver: init.driver.clone(),
            node: no_node(),
            role: StackRole::Function,
            filter: false,
            ppo: false,
            name: Some(name),
            device_type: init.device_type,
            pnp: PnpPowerCallbacks::default(),
            policy: PowerPolicyCallbacks::default(),
            st: Mutex::new(st),
            extensions: Mutex::new(extensions),
            hooks: Mutex::new(Vec::new()),
            control: Some(control),
            pdo: None,
        }))
    }

    pub(crate) fn init_name(init: &DeviceInit) -> Option<String> {
        init.name.clone()
    }

    pub(crate) fn set_created(init: &mut DeviceInit, device: &Device) {
        init.created = Some(device.clone());
    }

    /// The WDFDEVICE object (parent for queues, timers, … of the device).
    pub fn object(&self) -> &WdfObject {
        &self.0.object
    }

    /// The object's trace name, e.g. `WDFDEVICE switchbar#0`.
    pub fn name(&self) -> &str {
        self.0.object.name()
    }

    /// The typed context set at creation.
    pub fn context<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.0.object.context::<T>()
    }

    /// The driver of this device object.
    pub fn driver(&self) -> &Driver {
        &self.0.driver
    }

    /// The machine, while it runs.
    pub fn machine(&self) -> Option<Machine> {
        self.0.object.machine()
    }

    /// The driver's role in the stack.
    pub fn role(&self) -> StackRole {
        self.0.role
    }

    /// `WdfFdoInitSetFilter` was called.
    pub fn is_filter(&self) -> bool {
        self.0.filter
    }

    /// This device is the stack's power policy owner.
    pub fn is_power_policy_owner(&self) -> bool {
        self.0.ppo
    }

    /// The name given with [`DeviceInit::assign_name`].
    pub fn device_name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    /// The device type.
    pub fn device_type(&self) -> u32 {
        self.0.device_type
    }

    /// The current power state.
    pub fn power_state(&self) -> DevicePowerState {
        lock(&self.0.st).power
    }

    /// True in D0.
    pub fn is_in_d0(&self) -> bool {
        self.power_state() == DevicePowerState::D0
    }

    /// The PnP state of this device object.
    pub fn pnp_state(&self) -> DevicePnpState {
        lock(&self.0.st).pnp
    }

    /// True while armed for wake from S0 (ArmWakeFromS0 succeeded, no Disarm yet).
    pub fn is_armed_for_wake(&self) -> bool {
        let st = lock(&self.0.st);
        st.armed_s0 || st.armed_sx
    }

    /// A device extension of type `T` (created by `init` on first use; values stored in
    /// [`DeviceInit::extension_mut`] are already here).
    ///
    /// # Panics
    ///
    /// Never: the map only stores values under their own `TypeId`.
    pub fn extension<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        let mut map = lock(&self.0.extensions);
        let entry = map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(init()) as Arc<dyn Any + Send + Sync>);
        Arc::clone(entry)
            .downcast::<T>()
            .unwrap_or_else(|_| unreachable!("extension stored under its own TypeId"))
    }

    /// The device extension of type `T`, if present.
    pub fn get_extension<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        lock(&self.0.extensions)
            .get(&TypeId::of::<T>())
            .and_then(|e| Arc::clone(e).downcast::<T>().ok())
    }

    /// Registers a power hook (see [`DevicePowerHook`]). Hooks run in registration order.
    pub fn add_power_hook(&self, hook: Arc<dyn DevicePowerHook>) {
        lock(&self.0.hooks).push(hook);
    }

    pub(crate) fn hooks(&self) -> Vec<Arc<dyn DevicePowerHook>> {
        lock(&self.0.hooks).clone()
    }

    /// Runs every power hook's [`stack_started`](DevicePowerHook::stack_started).
    pub(crate) fn hooks_stack_started(&self) {
        for h in self.hooks() {
            h.stack_started(self);
        }
    }

    /// Runs every power hook's [`leaving`](DevicePowerHook::leaving).
    pub(crate) fn hooks_leaving(&self) {
        for h in self.hooks() {
            h.leaving(self);
        }
    }

    /// Records a [`TraceKind::State`](crate::trace::TraceKind::State) event of this device.
    pub(crate) fn trace_state(&self, text: &str) {
        if let Some(m) = self.machine() {
            m.trace().record_for(
                crate::trace::TraceKind::State,
                Some(self.driver().name()),
                self.name(),
                text,
            );
        }
    }

    pub(crate) fn hooks_removed(&self) {
        let run = {
            let mut st = lock(&self.0.st);
            !std::mem::replace(&mut st.removed_hooks_run, true)
        };
        if run {
            for h in self.hooks() {
                h.removed(self);
            }
        }
    }

    /// True for a PDO a bus driver created ([`DeviceInit::pdo`]).
    pub fn is_pdo(&self) -> bool {
        self.0.pdo.is_some()
    }

    /// A PDO's identity (`None` for other devices).
    pub fn pdo_identity(&self) -> Option<&PdoIdentity> {
        self.0.pdo.as_ref().map(|p| &p.identity)
    }

    /// Where a PDO is in its bus driver's hands (`None` for other devices).
    pub fn pdo_status(&self) -> Option<PdoStatus> {
        self.0.pdo.as_ref().map(|p| *lock(&p.status))
    }

    /// A PDO's parent: the bus driver's FDO it was allocated on (`WdfPdoGetParent`).
    pub fn pdo_parent(&self) -> Option<Device> {
        self.0
            .pdo
            .as_ref()
            .and_then(|p| p.parent.upgrade())
            .map(Device)
    }

    /// `WdfDeviceSetPnpCapabilities` (a PDO reports them to the PnP manager).
    pub fn set_pnp_capabilities(&self, caps: PnpCapabilities) {
        if let Some(p) = &self.0.pdo {
            *lock(&p.pnp_caps) = Some(caps);
        } else {
            self.trace_state("WdfDeviceSetPnpCapabilities on a device that is not a PDO: ignored");
        }
    }

    /// The capabilities set with [`set_pnp_capabilities`](Self::set_pnp_capabilities).
    pub fn pnp_capabilities(&self) -> Option<PnpCapabilities> {
        self.0.pdo.as_ref().and_then(|p| *lock(&p.pnp_caps))
    }

    /// `WdfDeviceSetPowerCapabilities`.
    pub fn set_power_capabilities(&self, caps: PowerCapabilities) {
        if let Some(p) = &self.0.pdo {
            *lock(&p.power_caps) = Some(caps);
        } else {
            self.trace_state(
                "WdfDeviceSetPowerCapabilities on a device that is not a PDO: ignored",
            );
        }
    }

    /// The capabilities set with [`set_power_capabilities`](Self::set_power_capabilities).
    pub fn power_capabilities(&self) -> Option<PowerCapabilities> {
        self.0.pdo.as_ref().and_then(|p| *lock(&p.power_caps))
    }

    /// `WdfDeviceAssignS0IdleSettings` (power policy owner).
    pub fn assign_s0_idle_settings(&self, settings: S0IdleSettings) {
        lock(&self.0.st).idle = settings;
    }

    /// The S0 idle timeout set with [`assign_s0_idle_timeout`](Self::assign_s0_idle_timeout).
    pub fn s0_idle_timeout(&self) -> Option<std::time::Duration> {
        lock(&self.0.st).idle_timeout
    }

    /// True while a power hook reports I/O that keeps the device out of S0 idle.
    pub(crate) fn power_managed_io_pending(&self) -> bool {
        self.hooks().iter().any(|h| h.busy(self))
    }

    /// `WdfDeviceAssignSxWakeSettings`: arm for wake from Sx when the system sleeps.
    pub fn assign_sx_wake_settings(&self, enabled: bool) {
        lock(&self.0.st).sx_wake = enabled;
    }

    /// Power references held ([`stop_idle`](Self::stop_idle) not yet matched).
    pub fn power_references(&self) -> usize {
        lock(&self.0.st).power_refs
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, DeviceState> {
        lock(&self.0.st)
    }
}
