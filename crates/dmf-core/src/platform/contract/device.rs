//! Contract items for drivers, devices, PnP/power callbacks and device interfaces.
//!
//! | Item | Trait / type | kmdf mapping |
//! |---|---|---|
//! | driver | [`PlatformDriver`], [`DriverConfig`] | `WdfDriverCreate` (`WDF_DRIVER_CONFIG` with `EvtDriverDeviceAdd`, `EvtDriverUnload`) |
//! | device init | [`PlatformDeviceInit`] | `WDFDEVICE_INIT`: `WdfDeviceInitSetPnpPowerEventCallbacks`, `WdfDeviceInitSetPowerPolicyEventCallbacks`, `WdfFdoInitSetFilter`, `WdfDeviceCreate` |
//! | device | [`PlatformDevice`] | `WDFDEVICE`: `WdfDeviceSetFailed`, `WdfDeviceStopIdle` / `WdfDeviceResumeIdle`, `WdfDeviceCreateDeviceInterface`, `WdfDeviceSetDeviceInterfaceState` |
//! | PnP/power callbacks | [`PnpPowerCallbacks`] | `WDF_PNPPOWER_EVENT_CALLBACKS` (+ `EvtDeviceQueryRemove`/`QueryStop`/`RelationsQuery`/`UsageNotificationEx`) |
//! | power-policy callbacks | [`PowerPolicyCallbacks`] | `WDF_POWER_POLICY_EVENT_CALLBACKS` |
//! | child PDOs (bus driver) | [`PlatformBus`], [`PlatformPdoInit`], [`PnpCapabilities`], [`PowerCapabilities`] | `WdfPdoInitAllocate`, `WdfPdoInitAssignDeviceID` / `…AssignInstanceID` / `…AddHardwareID` / `…AddCompatibleID` / `…AddDeviceText` / `…SetDefaultLocale` / `…AssignRawDevice`, `WdfFdoAddStaticChild`, `WdfFdoLockStaticChildListForIteration` + `WdfFdoRetrieveNextStaticChild` + `WdfFdoUnlockStaticChildListFromIteration`, `WdfPdoMarkMissing`, `WdfPdoRequestEject`, `WdfObjectDelete`, `WdfDeviceSetPnpCapabilities`, `WdfDeviceSetPowerCapabilities` |
//!
//! The callback structs are generic over the backend's device and resource types; the platform
//! module re-exports them instantiated (`platform::PnpPowerCallbacks`). Callbacks return
//! `NtResult<()>`: `Err(status)` is the failing `NTSTATUS` the KMDF callback would return.

use alloc::string::String;
use alloc::sync::Arc;
use core::fmt;

use super::io::{
    FileObjectConfig, InterfaceChange, PlatformFileObject, PlatformIoTarget, PlatformQueue,
    PlatformRequest, QueueConfig, RequestType,
};
use crate::status::NtResult;

/// A GUID, laid out as the Windows `GUID` structure.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C)]
pub struct Guid {
    /// First 32 bits.
    pub data1: u32,
    /// Next 16 bits.
    pub data2: u16,
    /// Next 16 bits.
    pub data3: u16,
    /// Last 64 bits, as bytes.
    pub data4: [u8; 8],
}

static_assertions::assert_eq_size!(Guid, [u8; 16]);

impl Guid {
    /// Builds a GUID from its fields (`{data1-data2-data3-data4[0..2]-data4[2..8]}`).
    pub const fn new(data1: u32, data2: u16, data3: u16, data4: [u8; 8]) -> Guid {
        Guid {
            data1,
            data2,
            data3,
            data4,
        }
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.data4;
        write!(
            f,
            "{{{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}}}",
            self.data1, self.data2, self.data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `WDF_POWER_DEVICE_STATE`: the `PreviousState` of `EvtDeviceD0Entry` and the `TargetState` of
/// `EvtDeviceD0Exit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PowerDeviceState {
    /// `WdfPowerDeviceD0`.
    D0,
    /// `WdfPowerDeviceD1`.
    D1,
    /// `WdfPowerDeviceD2`.
    D2,
    /// `WdfPowerDeviceD3`.
    D3,
    /// `WdfPowerDeviceD3Final`: first start, removal, shutdown or rebalance.
    D3Final,
    /// `WdfPowerDevicePrepareForHibernation`: on the hibernation path, do not power off.
    PrepareForHibernation,
}

/// `POWER_ACTION`, as `WdfDeviceGetSystemPowerAction` reports it: the system power transition
/// that causes the device's current power transition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SystemPowerAction {
    /// `PowerActionNone`: the device changes power state on its own (idle in S0, wake from
    /// idle, first start, rebalance, removal, surprise removal), or no transition is running.
    #[default]
    None,
    /// `PowerActionSleep`: the system enters (or returns from) sleep, S1–S3.
    Sleep,
    /// `PowerActionHibernate`: the system enters (or returns from) hibernation, S4.
    Hibernate,
    /// `PowerActionShutdown`, `PowerActionShutdownReset` or `PowerActionShutdownOff`: the system
    /// shuts down or restarts, S5.
    Shutdown,
}

impl SystemPowerAction {
    /// `true` while the system leaves (or returns to) S0: any action but `None`.
    pub const fn is_system_transition(self) -> bool {
        !matches!(self, SystemPowerAction::None)
    }
}

/// `WDF_SPECIAL_FILE_TYPE` of `EvtDeviceUsageNotificationEx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecialFileType {
    /// `WdfSpecialFilePaging`.
    Paging,
    /// `WdfSpecialFileHibernation`.
    Hibernation,
    /// `WdfSpecialFileDump`.
    Dump,
    /// `WdfSpecialFileBoot`.
    Boot,
}

/// `DEVICE_RELATION_TYPE` of `EvtDeviceRelationsQuery`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelationType {
    /// `BusRelations`.
    Bus,
    /// `EjectionRelations`.
    Ejection,
    /// `RemovalRelations`.
    Removal,
    /// `TargetDeviceRelation`.
    TargetDevice,
}

/// `WDF_DEVICE_FAILED_ACTION` of `WdfDeviceSetFailed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailedAction {
    /// `WdfDeviceFailedAttemptRestart`.
    AttemptRestart,
    /// `WdfDeviceFailedNoRestart`.
    NoRestart,
}

/// A callback with the device only.
pub type DeviceFn<D> = Arc<dyn Fn(&D) + Send + Sync>;
/// A callback with the device that can fail.
pub type DeviceResultFn<D> = Arc<dyn Fn(&D) -> NtResult<()> + Send + Sync>;
/// A power callback with `PreviousState` / `TargetState`.
pub type DevicePowerFn<D> = Arc<dyn Fn(&D, PowerDeviceState) -> NtResult<()> + Send + Sync>;
/// `EvtDevicePrepareHardware` / `EvtDeviceReleaseHardware` with the translated resources.
pub type DeviceResourcesFn<D, R> = Arc<dyn Fn(&D, &R) -> NtResult<()> + Send + Sync>;
/// `EvtDeviceRelationsQuery`.
pub type DeviceRelationsFn<D> = Arc<dyn Fn(&D, RelationType) + Send + Sync>;
/// `EvtDeviceUsageNotificationEx` (`NotificationType`, `IsInNotificationPath`).
pub type DeviceUsageFn<D> = Arc<dyn Fn(&D, SpecialFileType, bool) -> NtResult<()> + Send + Sync>;
/// `EvtDeviceArmWakeFromSxWithReason` (`DeviceWakeEnabled`, `ChildrenArmedForWake`).
pub type DeviceArmSxFn<D> = Arc<dyn Fn(&D, bool, bool) -> NtResult<()> + Send + Sync>;

/// `WDF_PNPPOWER_EVENT_CALLBACKS` plus the query/relations/usage callbacks. Every one is optional.
pub struct PnpPowerCallbacks<D, R> {
    /// `EvtDevicePrepareHardware`.
    pub prepare_hardware: Option<DeviceResourcesFn<D, R>>,
    /// `EvtDeviceReleaseHardware`.
    pub release_hardware: Option<DeviceResourcesFn<D, R>>,
    /// `EvtDeviceD0Entry(PreviousState)`.
    pub d0_entry: Option<DevicePowerFn<D>>,
    /// `EvtDeviceD0EntryPostInterruptsEnabled(PreviousState)`.
    pub d0_entry_post_interrupts_enabled: Option<DevicePowerFn<D>>,
    /// `EvtDeviceD0ExitPreInterruptsDisabled(TargetState)`.
    pub d0_exit_pre_interrupts_disabled: Option<DevicePowerFn<D>>,
    /// `EvtDeviceD0Exit(TargetState)`.
    pub d0_exit: Option<DevicePowerFn<D>>,
    /// `EvtDeviceSelfManagedIoInit`.
    pub self_managed_io_init: Option<DeviceResultFn<D>>,
    /// `EvtDeviceSelfManagedIoRestart`.
    pub self_managed_io_restart: Option<DeviceResultFn<D>>,
    /// `EvtDeviceSelfManagedIoSuspend`.
    pub self_managed_io_suspend: Option<DeviceResultFn<D>>,
    /// `EvtDeviceSelfManagedIoFlush`.
    pub self_managed_io_flush: Option<DeviceFn<D>>,
    /// `EvtDeviceSelfManagedIoCleanup`.
    pub self_managed_io_cleanup: Option<DeviceFn<D>>,
    /// `EvtDeviceSurpriseRemoval`.
    pub surprise_removal: Option<DeviceFn<D>>,
    /// `EvtDeviceQueryRemove`: an error vetoes the removal.
    pub query_remove: Option<DeviceResultFn<D>>,
    /// `EvtDeviceQueryStop`: an error vetoes the stop.
    pub query_stop: Option<DeviceResultFn<D>>,
    /// `EvtDeviceRelationsQuery`.
    pub relations_query: Option<DeviceRelationsFn<D>>,
    /// `EvtDeviceUsageNotificationEx`: an error vetoes the special file.
    pub usage_notification_ex: Option<DeviceUsageFn<D>>,
}

impl<D, R> Default for PnpPowerCallbacks<D, R> {
    fn default() -> Self {
        PnpPowerCallbacks {
            prepare_hardware: None,
            release_hardware: None,
            d0_entry: None,
            d0_entry_post_interrupts_enabled: None,
            d0_exit_pre_interrupts_disabled: None,
            d0_exit: None,
            self_managed_io_init: None,
            self_managed_io_restart: None,
            self_managed_io_suspend: None,
            self_managed_io_flush: None,
            self_managed_io_cleanup: None,
            surprise_removal: None,
            query_remove: None,
            query_stop: None,
            relations_query: None,
            usage_notification_ex: None,
        }
    }
}

impl<D, R> Clone for PnpPowerCallbacks<D, R> {
    fn clone(&self) -> Self {
        PnpPowerCallbacks {
            prepare_hardware: self.prepare_hardware.clone(),
            release_hardware: self.release_hardware.clone(),
            d0_entry: self.d0_entry.clone(),
            d0_entry_post_interrupts_enabled: self.d0_entry_post_interrupts_enabled.clone(),
            d0_exit_pre_interrupts_disabled: self.d0_exit_pre_interrupts_disabled.clone(),
            d0_exit: self.d0_exit.clone(),
            self_managed_io_init: self.self_managed_io_init.clone(),
            self_managed_io_restart: self.self_managed_io_restart.clone(),
            self_managed_io_suspend: self.self_managed_io_suspend.clone(),
            self_managed_io_flush: self.self_managed_io_flush.clone(),
            self_managed_io_cleanup: self.self_managed_io_cleanup.clone(),
            surprise_removal: self.surprise_removal.clone(),
            query_remove: self.query_remove.clone(),
            query_stop: self.query_stop.clone(),
            relations_query: self.relations_query.clone(),
            usage_notification_ex: self.usage_notification_ex.clone(),
        }
    }
}

/// `WDF_POWER_POLICY_EVENT_CALLBACKS` (called for the power-policy owner only).
pub struct PowerPolicyCallbacks<D> {
    /// `EvtDeviceArmWakeFromS0`: an error means "not armed" (no disarm, no device failure).
    pub arm_wake_from_s0: Option<DeviceResultFn<D>>,
    /// `EvtDeviceDisarmWakeFromS0`.
    pub disarm_wake_from_s0: Option<DeviceFn<D>>,
    /// `EvtDeviceWakeFromS0Triggered`.
    pub wake_from_s0_triggered: Option<DeviceFn<D>>,
    /// `EvtDeviceArmWakeFromSxWithReason`.
    pub arm_wake_from_sx_with_reason: Option<DeviceArmSxFn<D>>,
    /// `EvtDeviceDisarmWakeFromSx`.
    pub disarm_wake_from_sx: Option<DeviceFn<D>>,
    /// `EvtDeviceWakeFromSxTriggered`.
    pub wake_from_sx_triggered: Option<DeviceFn<D>>,
}

impl<D> Default for PowerPolicyCallbacks<D> {
    fn default() -> Self {
        PowerPolicyCallbacks {
            arm_wake_from_s0: None,
            disarm_wake_from_s0: None,
            wake_from_s0_triggered: None,
            arm_wake_from_sx_with_reason: None,
            disarm_wake_from_sx: None,
            wake_from_sx_triggered: None,
        }
    }
}

impl<D> Clone for PowerPolicyCallbacks<D> {
    fn clone(&self) -> Self {
        PowerPolicyCallbacks {
            arm_wake_from_s0: self.arm_wake_from_s0.clone(),
            disarm_wake_from_s0: self.disarm_wake_from_s0.clone(),
            wake_from_s0_triggered: self.wake_from_s0_triggered.clone(),
            arm_wake_from_sx_with_reason: self.arm_wake_from_sx_with_reason.clone(),
            disarm_wake_from_sx: self.disarm_wake_from_sx.clone(),
            wake_from_sx_triggered: self.wake_from_sx_triggered.clone(),
        }
    }
}

/// A framework device object (`WDFDEVICE`): cheap to clone, equality is identity.
pub trait PlatformDevice: Clone + Send + Sync + 'static {
    /// The translated hardware resources handed to PrepareHardware/ReleaseHardware
    /// (`WDFCMRESLIST`).
    type Resources;
    /// `WdfObjectGetTypedContext`: the device context set at creation, if it has type `T`.
    fn context<T: core::any::Any + Send + Sync>(&self) -> Option<Arc<T>>;
    /// Whether `WdfFdoInitSetFilter` was called for this device.
    fn is_filter(&self) -> bool;
    /// Whether the device is in D0 now.
    fn is_in_d0(&self) -> bool;
    /// `WdfDeviceGetSystemPowerAction`: the system power transition behind the device's current
    /// power transition — meaningful in the power-down callbacks (D0ExitPreInterruptsDisabled,
    /// D0Exit, …) and the power-up callbacks of the return (D0Entry, …); `None` when the device
    /// changes power state on its own or no transition runs.
    fn system_power_action(&self) -> SystemPowerAction;
    /// `WdfDeviceSetFailed`.
    fn set_failed(&self, action: FailedAction);
    /// `WdfDeviceStopIdle(device, TRUE)`: keep the device in D0 (powering it up if it idles).
    fn stop_idle(&self) -> NtResult<()>;
    /// `WdfDeviceResumeIdle`: balances one `stop_idle`.
    fn resume_idle(&self);
    /// `WdfDeviceCreateDeviceInterface`: registers an interface of `class` (enabled when the
    /// device starts); returns its symbolic link name.
    fn create_interface(&self, class: Guid, reference: Option<&str>) -> NtResult<String>;
    /// `WdfDeviceSetDeviceInterfaceState`.
    fn set_interface_state(&self, class: Guid, reference: Option<&str>, enabled: bool);
    /// Whether this is a control device (`WdfControlDeviceInitAllocate`).
    fn is_control(&self) -> bool;
    /// `WdfDeviceCreateSymbolicLink` (e.g. `\\DosDevices\\MyControl`).
    ///
    /// # Errors
    ///
    /// `STATUS_OBJECT_NAME_COLLISION` for a link in use; `STATUS_INVALID_DEVICE_STATE` for an
    /// unnamed device.
    fn create_symbolic_link(&self, link: &str) -> NtResult<()>;
    /// `WdfControlFinishInitializing`: applications can open the control device from now on.
    fn finish_initializing(&self);
    /// `WdfObjectDelete` of a control device (PnP devices are deleted by the PnP manager).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` for a PnP device or a device already deleted.
    fn delete(&self) -> NtResult<()>;

    /// The backend's request (`WDFREQUEST`).
    type Request: PlatformRequest<
        Queue = Self::Queue,
        FileObject = Self::FileObject,
        IoTarget = Self::IoTarget,
    >;
    /// The backend's queue (`WDFQUEUE`).
    type Queue: PlatformQueue<Request = Self::Request>;
    /// The backend's file object (`WDFFILEOBJECT`).
    type FileObject: PlatformFileObject;
    /// The backend's I/O target (`WDFIOTARGET`).
    type IoTarget: PlatformIoTarget<Request = Self::Request>;
    /// A device-interface notification registration; dropping it unregisters.
    type InterfaceNotification: Send + Sync;

    /// `WdfIoQueueCreate` on this device.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` for a presenting queue without a request callback or a second
    /// default queue; `STATUS_INSUFFICIENT_RESOURCES`.
    fn create_queue(
        &self,
        config: QueueConfig<Self::Queue, Self::Request>,
    ) -> NtResult<Self::Queue>;
    /// `WdfDeviceGetDefaultQueue`.
    fn default_queue(&self) -> Option<Self::Queue>;
    /// `WdfDeviceConfigureRequestDispatching`.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` for create/cleanup/close or a queue of another device.
    fn configure_request_dispatching(&self, queue: &Self::Queue, kind: RequestType)
        -> NtResult<()>;
    /// `WdfDeviceGetIoTarget`: the local target (the next lower driver).
    fn io_target(&self) -> Self::IoTarget;
    /// `WdfIoTargetCreate`: a remote target owned by this device, closed until opened.
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES`; `STATUS_INVALID_DEVICE_STATE` for a deleted device.
    fn create_io_target(&self) -> NtResult<Self::IoTarget>;
    /// `WdfIoTargetCreate` + `WdfIoTargetOpen` with `WDF_IO_TARGET_OPEN_PARAMS_INIT_EXISTING_DEVICE`
    /// on `IoGetAttachedDeviceReference(WdfDeviceWdmGetDeviceObject(device))`: a remote target
    /// owned by this device, open and started on the *top of this device's own stack* (upper
    /// filters first, then this device). No `IRP_MJ_CREATE` is sent and the target has no file
    /// object; it is not reopened after a query-remove ([`TargetOpenParams::reopen`] does not
    /// apply). The caller closes and deletes it (`PlatformIoTarget::delete`).
    ///
    /// [`TargetOpenParams::reopen`]: crate::platform::contract::io::TargetOpenParams::reopen
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES`; `STATUS_INVALID_DEVICE_STATE` for a deleted or removed
    /// device; the status of a failed open (the created target is deleted then).
    fn create_stack_top_target(&self) -> NtResult<Self::IoTarget>;
    /// `IoRegisterPlugPlayNotification(EventCategoryDeviceInterfaceChange,
    /// PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES)`: `callback` runs at PASSIVE_LEVEL
    /// for every interface of `class` that is enabled now or later, and for each removal.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` above PASSIVE_LEVEL or for a deleted device.
    fn register_interface_notification(
        &self,
        class: Guid,
        callback: Arc<dyn Fn(&InterfaceChange) + Send + Sync>,
    ) -> NtResult<Self::InterfaceNotification>;
}

/// `WDF_OBJECT_ATTRIBUTES` for `WdfDeviceCreate`: the device context and `EvtCleanupCallback`.
#[derive(Default)]
pub struct DeviceAttributes {
    /// The device context (`WDF_OBJECT_ATTRIBUTES_INIT_CONTEXT_TYPE`), read back with
    /// [`PlatformDevice::context`].
    pub context: Option<Arc<dyn core::any::Any + Send + Sync>>,
    /// `EvtCleanupCallback`: runs once when the device object is deleted (after removal).
    pub cleanup: Option<alloc::boxed::Box<dyn FnOnce() + Send>>,
}

impl fmt::Debug for DeviceAttributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAttributes")
            .field("context", &self.context.is_some())
            .field("cleanup", &self.cleanup.is_some())
            .finish()
    }
}

/// `WDFDEVICE_INIT` as DMF and the client fill it in `EvtDriverDeviceAdd`.
pub trait PlatformDeviceInit {
    /// The device this init creates.
    type Device: PlatformDevice;
    /// `WdfDeviceInitSetPnpPowerEventCallbacks` (replaces any earlier set).
    fn set_pnp_power_callbacks(
        &mut self,
        callbacks: PnpPowerCallbacks<Self::Device, <Self::Device as PlatformDevice>::Resources>,
    );
    /// `WdfDeviceInitSetPowerPolicyEventCallbacks` (replaces any earlier set).
    fn set_power_policy_callbacks(&mut self, callbacks: PowerPolicyCallbacks<Self::Device>);
    /// `WdfDeviceInitSetFileObjectConfig`.
    fn set_file_object_config(
        &mut self,
        config: FileObjectConfig<
            Self::Device,
            <Self::Device as PlatformDevice>::Request,
            <Self::Device as PlatformDevice>::FileObject,
        >,
    );
    /// `WdfFdoInitSetFilter`.
    fn set_filter(&mut self);
    /// `WdfDeviceInitAssignName` (`\\Device\\Name`; control devices need one for a symbolic
    /// link).
    fn assign_name(&mut self, name: &str);
    /// Whether `set_filter` was called.
    fn is_filter(&self) -> bool;
    /// `WdfDeviceCreate`: creates the device (once per init).
    fn create_device(&mut self) -> NtResult<Self::Device>;
    /// `WdfDeviceCreate` with attributes (device context, cleanup callback).
    ///
    /// # Errors
    ///
    /// As `create_device`.
    fn create_device_with(&mut self, attributes: DeviceAttributes) -> NtResult<Self::Device>;
}

/// `EvtDriverUnload`.
pub type DriverUnloadFn<Drv> = Arc<dyn Fn(&Drv) + Send + Sync>;

/// `EvtDriverDeviceAdd`.
pub type DeviceAddFn<Drv, Init> = Arc<dyn Fn(&Drv, &mut Init) -> NtResult<()> + Send + Sync>;

/// `WDF_DRIVER_CONFIG`: what `WdfDriverCreate` needs from `DriverEntry`.
pub struct DriverConfig<Drv, Init> {
    /// `EvtDriverDeviceAdd`.
    pub device_add: DeviceAddFn<Drv, Init>,
    /// `EvtDriverUnload`, if any.
    pub unload: Option<DriverUnloadFn<Drv>>,
}

impl<Drv, Init> Clone for DriverConfig<Drv, Init> {
    fn clone(&self) -> Self {
        DriverConfig {
            device_add: self.device_add.clone(),
            unload: self.unload.clone(),
        }
    }
}

/// The framework driver object (`WDFDRIVER`).
pub trait PlatformDriver: Clone + Send + Sync + 'static {
    /// The device init its `EvtDriverDeviceAdd` receives.
    type DeviceInit: PlatformDeviceInit;
    /// The driver's name (its service name).
    fn name(&self) -> &str;
    /// `WdfControlDeviceInitAllocate`: an init for a control device (a non-PnP `WDFDEVICE` that
    /// applications open by its symbolic link). `administrators_only` picks
    /// `SDDL_DEVOBJ_SYS_ALL_ADM_ALL`; otherwise `SDDL_DEVOBJ_SYS_ALL_ADM_RWX_WORLD_RW_RES_R`.
    /// PnP, power and power-policy callbacks set on it are never called.
    fn control_device_init(&self, administrators_only: bool) -> Self::DeviceInit;
}

/// `WDF_TRI_STATE`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TriState {
    /// `WdfFalse`.
    False,
    /// `WdfTrue`.
    True,
    /// `WdfUseDefault`: the framework (or the bus) decides.
    #[default]
    UseDefault,
}

/// `DEVICE_POWER_STATE` (a device's Dx, as the power capabilities name it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DevicePowerLevel {
    /// `PowerDeviceD0`.
    D0,
    /// `PowerDeviceD1`.
    D1,
    /// `PowerDeviceD2`.
    D2,
    /// `PowerDeviceD3`.
    D3,
}

/// `WDF_DEVICE_PNP_CAPABILITIES` (`WDF_DEVICE_PNP_CAPABILITIES_INIT`: every flag `UseDefault`,
/// no address, no UI number), what `WdfDeviceSetPnpCapabilities` reports for a PDO.
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
    /// `Address` (`None`: left at `(ULONG) -1`).
    pub address: Option<u32>,
    /// `UINumber` (`None`: left at `(ULONG) -1`).
    pub ui_number: Option<u32>,
}

/// `WDF_DEVICE_POWER_CAPABILITIES` (`WDF_DEVICE_POWER_CAPABILITIES_INIT`: flags `UseDefault`,
/// states `PowerDeviceMaximum`), the fields a bus driver sets for its PDO with
/// `WdfDeviceSetPowerCapabilities`.
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
    /// `DeviceState[PowerSystemWorking ..= PowerSystemShutdown]`: S0, S1, S2, S3, S4, S5
    /// (`None`: `PowerDeviceMaximum`, the framework's default).
    pub device_state: [Option<DevicePowerLevel>; 6],
    /// `DeviceWake` (`None`: `PowerDeviceMaximum`).
    pub device_wake: Option<DevicePowerLevel>,
}

/// A child device's identity on its PDO's init (`WdfPdoInit…`), set by the bus driver between
/// [`PlatformBus::pdo_init_allocate`] and [`PlatformDeviceInit::create_device_with`].
pub trait PlatformPdoInit {
    /// `WdfPdoInitAssignDeviceID`: required before the PDO is created.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_REQUEST` on an init that is not a PDO's; `STATUS_INVALID_PARAMETER`
    /// for an empty id or one containing a NUL; `STATUS_INSUFFICIENT_RESOURCES`.
    fn assign_device_id(&mut self, id: &str) -> NtResult<()>;
    /// `WdfPdoInitAssignInstanceID`.
    ///
    /// # Errors
    ///
    /// As [`assign_device_id`](Self::assign_device_id).
    fn assign_instance_id(&mut self, id: &str) -> NtResult<()>;
    /// `WdfPdoInitAddHardwareID` (most specific first).
    ///
    /// # Errors
    ///
    /// As [`assign_device_id`](Self::assign_device_id).
    fn add_hardware_id(&mut self, id: &str) -> NtResult<()>;
    /// `WdfPdoInitAddCompatibleID`.
    ///
    /// # Errors
    ///
    /// As [`assign_device_id`](Self::assign_device_id).
    fn add_compatible_id(&mut self, id: &str) -> NtResult<()>;
    /// `WdfPdoInitAddDeviceText(DeviceDescription, DeviceLocation, LocaleId)`.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_REQUEST` on an init that is not a PDO's;
    /// `STATUS_INSUFFICIENT_RESOURCES`.
    fn add_device_text(&mut self, description: &str, location: &str, locale: u32) -> NtResult<()>;
    /// `WdfPdoInitSetDefaultLocale`.
    fn set_default_locale(&mut self, locale: u32);
    /// `WdfPdoInitAssignRawDevice(DeviceClassGuid)`: the PDO can run without a function driver
    /// (raw mode) and owns power policy then.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_REQUEST` on an init that is not a PDO's.
    fn assign_raw_device(&mut self, class: Guid) -> NtResult<()>;
}

/// A bus driver's side of its device (the FDO) and of the PDOs it reports (static
/// enumeration).
pub trait PlatformBus: PlatformDevice {
    /// The init a PDO is built from: a device init that also takes the `WdfPdoInit…` calls.
    type PdoInit: PlatformPdoInit + PlatformDeviceInit<Device = Self>;
    /// `WdfPdoInitAllocate(self)`: the init of a child PDO of this FDO. Dropping it without
    /// creating the device is `WdfDeviceInitFree`.
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES` (KMDF returns `NULL`); `STATUS_INVALID_DEVICE_REQUEST` on
    /// a control device or a PDO.
    fn pdo_init_allocate(&self) -> NtResult<Self::PdoInit>;
    /// `WdfFdoAddStaticChild(self, pdo)`: reports `pdo` as a child; the PnP manager enumerates
    /// it (loads its function driver by its hardware ids) once this device is started.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` / `STATUS_INVALID_DEVICE_REQUEST` for a device that is not
    /// a PDO of this FDO; `STATUS_INVALID_DEVICE_STATE` if it was already added.
    fn add_static_child(&self, pdo: &Self) -> NtResult<()>;
    /// Visits the static children added and not yet reported missing
    /// (`WdfFdoLockStaticChildListForIteration`, `WdfFdoRetrieveNextStaticChild` with
    /// `WdfRetrieveAddedChildren`, `WdfFdoUnlockStaticChildListFromIteration`) until `visit`
    /// returns `false`. `visit` must not add or remove children of this device.
    fn for_each_static_child(&self, visit: &mut dyn FnMut(&Self) -> bool);
    /// `WdfPdoMarkMissing` on a PDO: the child is gone (surprise removal of its stack, then the
    /// PDO is deleted).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_REQUEST` if this is not a PDO; `STATUS_NO_SUCH_DEVICE` if it is
    /// not an added child (never added, or already missing).
    fn pdo_mark_missing(&self) -> NtResult<()>;
    /// `WdfPdoRequestEject` on a PDO: asks the PnP manager to eject the child.
    fn pdo_request_eject(&self);
    /// `WdfObjectDelete` of a PDO that was created but never added as a child (the bus driver's
    /// undo of `WdfDeviceCreate` when a later step of setting it up fails).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` for a device that is not such a PDO.
    fn pdo_delete(&self) -> NtResult<()>;
    /// `WdfDeviceSetPnpCapabilities`.
    fn set_pnp_capabilities(&self, capabilities: &PnpCapabilities);
    /// `WdfDeviceSetPowerCapabilities`.
    fn set_power_capabilities(&self, capabilities: &PowerCapabilities);
}
