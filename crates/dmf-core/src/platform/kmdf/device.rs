//! Drivers, device inits, devices, PnP/power and power-policy callbacks on KMDF.
//!
//! The contract's callbacks are Rust closures; WDF calls C function pointers. Each WDF callback
//! has one `extern "C"` trampoline here that finds the closures in the object's context (the
//! driver's [`DriverState`], the device's [`DeviceState`]) and calls the one for that event,
//! converting handles, enums and statuses. Only the callbacks the driver set are registered with
//! WDF (registering a self-managed-I/O or usage-notification callback changes what WDF does), plus
//! `EvtDeviceD0Entry`/`EvtDeviceD0Exit` always, which track [`PlatformDevice::is_in_d0`].
//!
//! Closures reach the device context before WDF can call them: `WdfDeviceCreate` runs inside
//! `EvtDriverDeviceAdd`, and the PnP manager starts the device only after that returns.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::ffi::c_void;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, Ordering};

use wdk_sys::{
    call_unsafe_wdf_function_binding, _DEVICE_RELATION_TYPE, _WDF_DEVICE_FAILED_ACTION,
    _WDF_POWER_DEVICE_STATE, _WDF_SPECIAL_FILE_TYPE, BOOLEAN, DEVICE_RELATION_TYPE, GUID, NTSTATUS,
    NT_SUCCESS, PCUNICODE_STRING, POWER_ACTION, PWDFDEVICE_INIT, STATUS_SUCCESS, WDFCMRESLIST,
    WDFDEVICE, WDFDRIVER, WDFFILEOBJECT, WDFOBJECT, WDFSTRING, WDF_DEVICE_FAILED_ACTION,
    WDF_POWER_DEVICE_STATE, WDF_REQUEST_TYPE, WDF_SPECIAL_FILE_TYPE,
};

use super::io::{
    self, FileObject, InterfaceNotification, IoTarget, Queue, Request, FILE_CONTEXT,
    REQUEST_CONTEXT,
};
use super::wdf::{
    as_object, boolean, context_type, driver_config_init, fileobject_config_init,
    from_unicode_string, io_target_open_params_init_existing_device, nt_result,
    object_attributes_with_context, pnp_power_event_callbacks_init,
    power_policy_event_callbacks_init, TakeCell, UnicodeName, FALSE, TRUE,
};
use crate::fallible::{try_box, try_string};
use crate::platform::contract::device::{
    DeviceAttributes, DriverConfig as ContractDriverConfig, FailedAction, Guid, PlatformDevice,
    PlatformDeviceInit, PlatformDriver, PnpPowerCallbacks as ContractPnp, PowerDeviceState,
    PowerPolicyCallbacks as ContractPolicy, RelationType, SpecialFileType, SystemPowerAction,
};
use crate::platform::contract::io::{
    FileObjectConfig, InterfaceChange, PlatformIoTarget, QueueConfig, RequestType,
};
use crate::status::{NtResult, NtStatus};

/// `NtResult` to the `NTSTATUS` a WDF callback returns.
pub(super) fn to_ntstatus(result: NtResult<()>) -> NTSTATUS {
    match result {
        Ok(()) => STATUS_SUCCESS,
        Err(status) => status.to_raw(),
    }
}

/// The contract's GUID as the WDK's (same layout: `Guid` is `repr(C)` like `GUID`).
pub(super) fn to_wdk_guid(guid: Guid) -> GUID {
    GUID {
        Data1: guid.data1,
        Data2: guid.data2,
        Data3: guid.data3,
        Data4: guid.data4,
    }
}

/// The WDK's GUID as the contract's.
pub(super) fn from_wdk_guid(guid: GUID) -> Guid {
    Guid::new(guid.Data1, guid.Data2, guid.Data3, guid.Data4)
}

/// `WdfGetDriver()` (`WdfDriverGlobals->Driver`).
pub(super) fn wdf_driver() -> WDFDRIVER {
    // SAFETY: WdfDriverGlobals is set by WdfDriverEntry (FxDriverEntry) before DriverEntry runs and
    // stays valid while the image is loaded; every caller runs inside the driver.
    unsafe { (*wdk_sys::WdfDriverGlobals).Driver }
}

// ---------------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------------

/// What the driver object's context holds.
pub(super) struct DriverState {
    config: DriverConfig,
    name: String,
}

context_type!(
    /// The context of the `WDFDRIVER`.
    DRIVER_CONTEXT: DriverState = c"DmfRsDriver", driver_context_destroy
);

/// A `WDFDRIVER`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Driver {
    handle: WDFDRIVER,
}

// SAFETY: a WDFDRIVER handle is valid on every thread while the driver is loaded.
unsafe impl Send for Driver {}
// SAFETY: as for `Send`.
unsafe impl Sync for Driver {}

impl Driver {
    /// The `WDFDRIVER` handle.
    pub fn raw(&self) -> WDFDRIVER {
        self.handle
    }
}

/// `SDDL_DEVOBJ_SYS_ALL_ADM_ALL` (wdmsec.h): system and administrators only.
static SDDL_SYS_ALL_ADM_ALL: [u16; 27] = ascii_utf16(*b"D:P(A;;GA;;;SY)(A;;GA;;;BA)");
/// `SDDL_DEVOBJ_SYS_ALL_ADM_RWX_WORLD_RW_RES_R` (wdmsec.h): everyone may read and write.
static SDDL_SYS_ALL_ADM_RWX_WORLD_RW_RES_R: [u16; 63] =
    ascii_utf16(*b"D:P(A;;GA;;;SY)(A;;GRGWGX;;;BA)(A;;GRGW;;;WD)(A;;GR;;;RC)\0\0\0\0\0\0");

/// An ASCII string as UTF-16 (trailing NULs are not counted by [`sddl_string`]).
const fn ascii_utf16<const N: usize>(ascii: [u8; N]) -> [u16; N] {
    let mut wide = [0_u16; N];
    let mut i = 0;
    while i < N {
        wide[i] = ascii[i] as u16;
        i += 1;
    }
    wide
}

/// A `UNICODE_STRING` over a static UTF-16 buffer (up to its first NUL).
fn sddl_string(wide: &'static [u16]) -> wdk_sys::UNICODE_STRING {
    let units = wide.iter().position(|&u| u == 0).unwrap_or(wide.len());
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the SDDL strings are under 64 units"
    )]
    let bytes = (units * core::mem::size_of::<u16>()) as u16;
    // SAFETY: UNICODE_STRING is plain data; zero is valid.
    let mut string: wdk_sys::UNICODE_STRING = unsafe { core::mem::zeroed() };
    string.Length = bytes;
    string.MaximumLength = bytes;
    // WDF only reads the string; the buffer is static.
    string.Buffer = wide.as_ptr().cast_mut();
    string
}

impl PlatformDriver for Driver {
    type DeviceInit = DeviceInit;

    /// `WdfControlDeviceInitAllocate(driver, SDDL)`. A failed allocation gives an init whose
    /// `create_device` fails with `STATUS_INSUFFICIENT_RESOURCES`; an init that creates no device
    /// is freed with `WdfDeviceInitFree` when dropped.
    fn control_device_init(&self, administrators_only: bool) -> DeviceInit {
        let sddl = sddl_string(if administrators_only {
            &SDDL_SYS_ALL_ADM_ALL
        } else {
            &SDDL_SYS_ALL_ADM_RWX_WORLD_RW_RES_R
        });
        // SAFETY: live driver; the SDDL string describes a static buffer.
        let init = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfControlDeviceInitAllocate,
                self.handle,
                &raw const sddl
            )
        };
        let mut device_init = DeviceInit::new(init);
        device_init.control = true;
        device_init.status = if init.is_null() {
            Err(NtStatus::INSUFFICIENT_RESOURCES)
        } else {
            Ok(())
        };
        device_init
    }

    /// The service name: the last component of `DriverEntry`'s registry path.
    fn name(&self) -> &str {
        // SAFETY: the driver object lives while the image is loaded; the context was set by
        // `driver_create` before any `Driver` value existed.
        unsafe { DRIVER_CONTEXT.get(as_object(self.handle)) }
            .map_or("", |state| state.name.as_str())
    }
}

/// `WDF_DRIVER_CONFIG` on this backend.
pub type DriverConfig = ContractDriverConfig<Driver, DeviceInit>;

/// `EvtDriverDeviceAdd`: wraps the `WDFDEVICE_INIT` and runs the driver's device-add closure.
unsafe extern "C" fn evt_driver_device_add(driver: WDFDRIVER, init: PWDFDEVICE_INIT) -> NTSTATUS {
    // SAFETY: WDF passes the driver created by `driver_create`, with DRIVER_CONTEXT.
    let Some(state) = (unsafe { DRIVER_CONTEXT.get(as_object(driver)) }) else {
        return NtStatus::INVALID_DEVICE_STATE.to_raw();
    };
    let device_add = state.config.device_add.clone();
    let mut device_init = DeviceInit::new(init);
    to_ntstatus(device_add(&Driver { handle: driver }, &mut device_init))
}

/// `EvtDriverUnload`: runs the driver's unload closure (the context is dropped afterwards by the
/// destroy callback).
unsafe extern "C" fn evt_driver_unload(driver: WDFDRIVER) {
    // SAFETY: WDF passes the live driver created by `driver_create`.
    if let Some(state) = unsafe { DRIVER_CONTEXT.get(as_object(driver)) } {
        if let Some(unload) = state.config.unload.clone() {
            unload(&Driver { handle: driver });
        }
    }
}

/// `WdfDriverCreate` for `DriverEntry`: the driver object gets a context holding `config`, and
/// WDF's `EvtDriverDeviceAdd` (and `EvtDriverUnload`, when `config` has unload work) go to the
/// trampolines above.
///
/// # Safety
/// Only from `DriverEntry`, with the `DRIVER_OBJECT` and registry path the I/O manager passed
/// (as `*mut c_void` / `*const c_void`, so callers need not name WDK types), once per image.
pub unsafe fn driver_create(
    driver_object: *mut c_void,
    registry_path: *const c_void,
    config: DriverConfig,
) -> NtResult<Driver> {
    let registry_path: PCUNICODE_STRING = registry_path.cast();
    // SAFETY: the I/O manager's registry path is a valid UNICODE_STRING during DriverEntry.
    let path = unsafe { from_unicode_string(registry_path) }?;
    let name = try_string(path.rsplit('\\').next().unwrap_or_default())?;
    let mut attributes = object_attributes_with_context(&DRIVER_CONTEXT);
    let mut wdf_config = driver_config_init();
    wdf_config.EvtDriverDeviceAdd = Some(evt_driver_device_add);
    // As the sim backend does (and as a C driver does): an EvtDriverUnload only for a driver
    // that has unload work. The C DMF oracle showed ours registering one for every driver.
    if config.unload.is_some() {
        wdf_config.EvtDriverUnload = Some(evt_driver_unload);
    }
    let mut handle: WDFDRIVER = null_mut();
    // SAFETY: the caller passes DriverEntry's arguments; attributes and config are valid locals;
    // out pointer to our local.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDriverCreate,
            driver_object.cast::<wdk_sys::DRIVER_OBJECT>(),
            registry_path,
            &raw mut attributes,
            &raw mut wdf_config,
            &raw mut handle
        )
    };
    nt_result(status)?;
    // SAFETY: just created with DRIVER_CONTEXT; no device can be added before DriverEntry returns.
    unsafe {
        DRIVER_CONTEXT
            .slot(as_object(handle))
            .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?
            .init(DriverState { config, name });
    }
    Ok(Driver { handle })
}

// ---------------------------------------------------------------------------------------------
// Device init and device
// ---------------------------------------------------------------------------------------------

/// The translated (and, in PrepareHardware, raw) resource lists of a start (`WDFCMRESLIST`).
#[derive(Debug)]
pub struct Resources {
    raw: WDFCMRESLIST,
    translated: WDFCMRESLIST,
}

impl Resources {
    /// The raw list (null in ReleaseHardware, where WDF passes only the translated one).
    pub fn raw(&self) -> WDFCMRESLIST {
        self.raw
    }

    /// The translated list.
    pub fn translated(&self) -> WDFCMRESLIST {
        self.translated
    }

    /// `WdfCmResourceListGetCount` of the translated list.
    pub fn count(&self) -> u32 {
        if self.translated.is_null() {
            return 0;
        }
        // SAFETY: a list WDF passed to the running PrepareHardware/ReleaseHardware callback.
        unsafe { call_unsafe_wdf_function_binding!(WdfCmResourceListGetCount, self.translated) }
    }
}

/// What a device object's context holds: the driver's callbacks and state.
pub(super) struct DeviceState {
    pnp: ContractPnp<Device, Resources>,
    policy: ContractPolicy<Device>,
    pub(super) file: FileObjectConfig<Device, Request, FileObject>,
    user_context: Option<Arc<dyn core::any::Any + Send + Sync>>,
    cleanup: TakeCell<Box<dyn FnOnce() + Send>>,
    filter: bool,
    control: bool,
    deleted: AtomicBool,
    in_d0: AtomicBool,
}

context_type!(
    /// The context of every `WDFDEVICE` the backend creates.
    DEVICE_CONTEXT: DeviceState = c"DmfRsDevice", device_context_destroy
);

/// `EvtCleanupCallback` of a device: runs the attributes' cleanup closure.
unsafe extern "C" fn evt_device_cleanup(object: WDFOBJECT) {
    // SAFETY: WDF passes the live device, created with DEVICE_CONTEXT.
    if let Some(state) = unsafe { DEVICE_CONTEXT.get(object) } {
        if let Some(cleanup) = state.cleanup.take() {
            cleanup();
        }
    }
}

/// The device state of `device`, if the backend created it.
///
/// # Safety
/// `device` must be a live device passed by WDF to a callback; the reference must not outlive
/// the callback.
unsafe fn state<'a>(device: WDFDEVICE) -> Option<&'a DeviceState> {
    // SAFETY: forwarded.
    unsafe { DEVICE_CONTEXT.get(as_object(device)) }
}

/// `WDFDEVICE_INIT` as `EvtDriverDeviceAdd` receives it, with the callbacks set so far (moved
/// into the device context by `create_device`).
pub struct DeviceInit {
    // INVARIANT: the init WDF passed to EvtDriverDeviceAdd, until WdfDeviceCreate consumed it
    // (then null).
    raw: PWDFDEVICE_INIT,
    pnp: ContractPnp<Device, Resources>,
    policy: ContractPolicy<Device>,
    file: FileObjectConfig<Device, Request, FileObject>,
    filter: bool,
    /// A control-device init (`WdfControlDeviceInitAllocate`): the driver owns it until
    /// `WdfDeviceCreate` and frees it otherwise; PnP/power calls are not made on it.
    control: bool,
    /// A PDO's init (`WdfPdoInitAllocate`): the driver owns it until `WdfDeviceCreate` and frees
    /// it otherwise.
    pdo: bool,
    /// The first failure of a call whose contract method returns nothing (`assign_name`), or of
    /// the allocation; `create_device` reports it.
    status: NtResult<()>,
}

impl Drop for DeviceInit {
    fn drop(&mut self) {
        if (self.control || self.pdo) && !self.raw.is_null() {
            // SAFETY: a control-device or PDO init the driver allocated and WdfDeviceCreate did not
            // consume (invariant: `raw` is nulled on success), freed once.
            unsafe { call_unsafe_wdf_function_binding!(WdfDeviceInitFree, self.raw) };
        }
    }
}

impl core::fmt::Debug for DeviceInit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceInit")
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl DeviceInit {
    fn new(raw: PWDFDEVICE_INIT) -> Self {
        DeviceInit {
            raw,
            pnp: ContractPnp::default(),
            policy: ContractPolicy::default(),
            file: FileObjectConfig::default(),
            filter: false,
            control: false,
            pdo: false,
            status: Ok(()),
        }
    }

    /// The init `WdfPdoInitAllocate` returned (non-null), owned by the driver until
    /// `WdfDeviceCreate`.
    pub(super) fn new_pdo(raw: PWDFDEVICE_INIT) -> Self {
        let mut init = DeviceInit::new(raw);
        init.pdo = true;
        init
    }

    /// Whether this is a PDO's init.
    pub(super) fn is_pdo(&self) -> bool {
        self.pdo
    }

    /// The `PWDFDEVICE_INIT` (null after the device was created), for WDF calls the contract
    /// does not cover (`WdfDeviceInitSetIoType`, `WdfDeviceInitAssignName`, …).
    pub fn raw(&self) -> PWDFDEVICE_INIT {
        self.raw
    }
}

impl PlatformDeviceInit for DeviceInit {
    type Device = Device;

    /// `WdfDeviceInitSetPnpPowerEventCallbacks` with a trampoline for each closure set, plus
    /// D0Entry/D0Exit (always, to track D0).
    fn set_pnp_power_callbacks(&mut self, callbacks: ContractPnp<Device, Resources>) {
        let mut wdf = pnp_power_event_callbacks_init();
        wdf.EvtDeviceD0Entry = Some(evt_d0_entry);
        wdf.EvtDeviceD0Exit = Some(evt_d0_exit);
        if callbacks.prepare_hardware.is_some() {
            wdf.EvtDevicePrepareHardware = Some(evt_prepare_hardware);
        }
        if callbacks.release_hardware.is_some() {
            wdf.EvtDeviceReleaseHardware = Some(evt_release_hardware);
        }
        if callbacks.d0_entry_post_interrupts_enabled.is_some() {
            wdf.EvtDeviceD0EntryPostInterruptsEnabled = Some(evt_d0_entry_post_interrupts_enabled);
        }
        if callbacks.d0_exit_pre_interrupts_disabled.is_some() {
            wdf.EvtDeviceD0ExitPreInterruptsDisabled = Some(evt_d0_exit_pre_interrupts_disabled);
        }
        if callbacks.self_managed_io_init.is_some() {
            wdf.EvtDeviceSelfManagedIoInit = Some(evt_self_managed_io_init);
        }
        if callbacks.self_managed_io_restart.is_some() {
            wdf.EvtDeviceSelfManagedIoRestart = Some(evt_self_managed_io_restart);
        }
        if callbacks.self_managed_io_suspend.is_some() {
            wdf.EvtDeviceSelfManagedIoSuspend = Some(evt_self_managed_io_suspend);
        }
        if callbacks.self_managed_io_flush.is_some() {
            wdf.EvtDeviceSelfManagedIoFlush = Some(evt_self_managed_io_flush);
        }
        if callbacks.self_managed_io_cleanup.is_some() {
            wdf.EvtDeviceSelfManagedIoCleanup = Some(evt_self_managed_io_cleanup);
        }
        if callbacks.surprise_removal.is_some() {
            wdf.EvtDeviceSurpriseRemoval = Some(evt_surprise_removal);
        }
        if callbacks.query_remove.is_some() {
            wdf.EvtDeviceQueryRemove = Some(evt_query_remove);
        }
        if callbacks.query_stop.is_some() {
            wdf.EvtDeviceQueryStop = Some(evt_query_stop);
        }
        if callbacks.relations_query.is_some() {
            wdf.EvtDeviceRelationsQuery = Some(evt_relations_query);
        }
        if callbacks.usage_notification_ex.is_some() {
            wdf.EvtDeviceUsageNotificationEx = Some(evt_usage_notification_ex);
        }
        self.pnp = callbacks;
        if !self.raw.is_null() && !self.control {
            // SAFETY: the init is live until WdfDeviceCreate (invariant; checked non-null); WDF
            // copies the structure.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfDeviceInitSetPnpPowerEventCallbacks,
                    self.raw,
                    &raw mut wdf
                );
            }
        }
    }

    /// `WdfDeviceInitSetPowerPolicyEventCallbacks` with a trampoline for each closure set (not
    /// called at all when none is set, as a non-policy-owner driver would do).
    fn set_power_policy_callbacks(&mut self, callbacks: ContractPolicy<Device>) {
        let mut wdf = power_policy_event_callbacks_init();
        let mut any = false;
        if callbacks.arm_wake_from_s0.is_some() {
            wdf.EvtDeviceArmWakeFromS0 = Some(evt_arm_wake_from_s0);
            any = true;
        }
        if callbacks.disarm_wake_from_s0.is_some() {
            wdf.EvtDeviceDisarmWakeFromS0 = Some(evt_disarm_wake_from_s0);
            any = true;
        }
        if callbacks.wake_from_s0_triggered.is_some() {
            wdf.EvtDeviceWakeFromS0Triggered = Some(evt_wake_from_s0_triggered);
            any = true;
        }
        if callbacks.arm_wake_from_sx_with_reason.is_some() {
            wdf.EvtDeviceArmWakeFromSxWithReason = Some(evt_arm_wake_from_sx_with_reason);
            any = true;
        }
        if callbacks.disarm_wake_from_sx.is_some() {
            wdf.EvtDeviceDisarmWakeFromSx = Some(evt_disarm_wake_from_sx);
            any = true;
        }
        if callbacks.wake_from_sx_triggered.is_some() {
            wdf.EvtDeviceWakeFromSxTriggered = Some(evt_wake_from_sx_triggered);
            any = true;
        }
        self.policy = callbacks;
        if any && !self.raw.is_null() && !self.control {
            // SAFETY: live init (invariant, checked); WDF copies the structure.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfDeviceInitSetPowerPolicyEventCallbacks,
                    self.raw,
                    &raw mut wdf
                );
            }
        }
    }

    /// `WdfDeviceInitSetFileObjectConfig`: trampolines for the closures set, and a context on
    /// every file object (its administrator flag, captured in EvtDeviceFileCreate) whose
    /// attributes carry the `deleted` closure as the file objects' `EvtCleanupCallback`.
    fn set_file_object_config(&mut self, config: FileObjectConfig<Device, Request, FileObject>) {
        let mut wdf = fileobject_config_init();
        if config.create.is_some() {
            wdf.EvtDeviceFileCreate = Some(io::evt_device_file_create);
        }
        if config.cleanup.is_some() {
            wdf.EvtFileCleanup = Some(io::evt_file_cleanup);
        }
        if config.close.is_some() {
            wdf.EvtFileClose = Some(io::evt_file_close);
        }
        let mut attributes = FILE_CONTEXT.attributes();
        if config.deleted.is_some() {
            attributes.EvtCleanupCallback = Some(io::evt_file_object_cleanup);
        }
        self.file = config;
        if !self.raw.is_null() {
            // SAFETY: live init (invariant, checked); WDF copies both structures.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfDeviceInitSetFileObjectConfig,
                    self.raw,
                    &raw mut wdf,
                    &raw mut attributes
                );
            }
        }
    }

    /// `WdfFdoInitSetFilter`.
    fn set_filter(&mut self) {
        if !self.raw.is_null() && !self.control {
            // SAFETY: live init (invariant, checked).
            unsafe { call_unsafe_wdf_function_binding!(WdfFdoInitSetFilter, self.raw) };
        }
        self.filter = true;
    }

    /// `WdfDeviceInitAssignName`; a failure is reported by `create_device`.
    fn assign_name(&mut self, name: &str) {
        if self.raw.is_null() {
            return;
        }
        let result = UnicodeName::new(name).and_then(|name| {
            // SAFETY: live init (checked); WDF copies the name.
            nt_result(unsafe {
                call_unsafe_wdf_function_binding!(WdfDeviceInitAssignName, self.raw, name.as_ptr())
            })
        });
        if self.status.is_ok() {
            self.status = result;
        }
    }

    fn is_filter(&self) -> bool {
        self.filter
    }

    fn create_device(&mut self) -> NtResult<Device> {
        self.create_device_with(DeviceAttributes::default())
    }

    /// `WdfDeviceInitSetRequestAttributes` (every request gets the backend's request context),
    /// then `WdfDeviceCreate` with the device context and `EvtCleanupCallback`.
    fn create_device_with(&mut self, attributes: DeviceAttributes) -> NtResult<Device> {
        self.status?;
        if self.raw.is_null() {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        // Allocated before the device exists, so that a refusal leaves nothing to undo.
        let cleanup = TakeCell::new();
        if let Some(f) = attributes.cleanup {
            cleanup.put(try_box(f)?);
        }
        let mut request_attributes = REQUEST_CONTEXT.attributes();
        // SAFETY: live init (checked); WDF copies the attributes.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceInitSetRequestAttributes,
                self.raw,
                &raw mut request_attributes
            );
        }
        let mut wdf_attributes = object_attributes_with_context(&DEVICE_CONTEXT);
        wdf_attributes.EvtCleanupCallback = Some(evt_device_cleanup);
        let mut init = self.raw;
        let mut handle: WDFDEVICE = null_mut();
        // SAFETY: `init` is the live init; WdfDeviceCreate consumes it on success (sets it null)
        // and leaves it to WDF on failure; attributes valid; out pointer to our local.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceCreate,
                &raw mut init,
                &raw mut wdf_attributes,
                &raw mut handle
            )
        };
        nt_result(status)?;
        self.raw = null_mut();
        let state = DeviceState {
            pnp: core::mem::take(&mut self.pnp),
            policy: core::mem::take(&mut self.policy),
            file: core::mem::take(&mut self.file),
            user_context: attributes.context,
            cleanup,
            filter: self.filter,
            control: self.control,
            deleted: AtomicBool::new(false),
            in_d0: AtomicBool::new(false),
        };
        // SAFETY: the device was just created with DEVICE_CONTEXT; WDF calls none of its PnP,
        // power or file callbacks before EvtDriverDeviceAdd returns (module doc).
        unsafe {
            DEVICE_CONTEXT
                .slot(as_object(handle))
                .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?
                .init(state);
        }
        Ok(Device { handle })
    }
}

/// A `WDFDEVICE`: a copyable handle, equality is identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    handle: WDFDEVICE,
}

// SAFETY: a WDFDEVICE handle may be used from any thread while the device exists; the contract's
// methods are WDF calls built for that.
unsafe impl Send for Device {}
// SAFETY: as for `Send`.
unsafe impl Sync for Device {}

impl Device {
    /// Wraps a device handle WDF passed to a callback.
    pub(super) fn from_raw(handle: WDFDEVICE) -> Device {
        Device { handle }
    }

    /// The `WDFDEVICE` handle, for WDF calls the contract does not cover.
    pub fn raw(&self) -> WDFDEVICE {
        self.handle
    }

    /// Records that the driver deleted the device; false if it was already recorded (a second
    /// `WdfObjectDelete`) or the device is not the backend's.
    pub(super) fn mark_deleted(&self) -> bool {
        self.state()
            .is_some_and(|state| !state.deleted.swap(true, Ordering::AcqRel))
    }

    fn state(&self) -> Option<&DeviceState> {
        // SAFETY: a `Device` exists only for a live device (created by the backend or passed by
        // WDF to a callback), and the borrow is tied to `self`.
        unsafe { state(self.handle) }
    }
}

impl PlatformDevice for Device {
    type Resources = Resources;
    type Request = Request;
    type Queue = Queue;
    type FileObject = FileObject;
    type IoTarget = IoTarget;
    type InterfaceNotification = InterfaceNotification;

    fn context<T: core::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.state()?.user_context.clone()?.downcast::<T>().ok()
    }

    fn is_filter(&self) -> bool {
        self.state().is_some_and(|s| s.filter)
    }

    fn is_in_d0(&self) -> bool {
        self.state()
            .is_some_and(|s| s.in_d0.load(Ordering::Acquire))
    }

    /// `WdfDeviceGetSystemPowerAction`.
    fn system_power_action(&self) -> SystemPowerAction {
        // SAFETY: live device; the routine only reads the device's power state machine.
        let action = unsafe {
            call_unsafe_wdf_function_binding!(WdfDeviceGetSystemPowerAction, self.handle)
        };
        match action {
            POWER_ACTION::PowerActionSleep => SystemPowerAction::Sleep,
            POWER_ACTION::PowerActionHibernate => SystemPowerAction::Hibernate,
            POWER_ACTION::PowerActionShutdown
            | POWER_ACTION::PowerActionShutdownReset
            | POWER_ACTION::PowerActionShutdownOff => SystemPowerAction::Shutdown,
            // PowerActionNone, PowerActionReserved, PowerActionWarmEject and unknown values.
            _ => SystemPowerAction::None,
        }
    }

    /// `WdfDeviceSetFailed`.
    fn set_failed(&self, action: FailedAction) {
        let action: WDF_DEVICE_FAILED_ACTION = match action {
            FailedAction::AttemptRestart => {
                _WDF_DEVICE_FAILED_ACTION::WdfDeviceFailedAttemptRestart
            }
            FailedAction::NoRestart => _WDF_DEVICE_FAILED_ACTION::WdfDeviceFailedNoRestart,
        };
        // SAFETY: live device.
        unsafe { call_unsafe_wdf_function_binding!(WdfDeviceSetFailed, self.handle, action) };
    }

    /// `WdfDeviceStopIdle(device, TRUE)` (the table entry `WdfDeviceStopIdleNoTrack`).
    fn stop_idle(&self) -> NtResult<()> {
        // SAFETY: live device; waiting for D0 requires PASSIVE_LEVEL (contract of the caller).
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(WdfDeviceStopIdleNoTrack, self.handle, TRUE)
        })
    }

    /// `WdfDeviceResumeIdle` (the table entry `WdfDeviceResumeIdleNoTrack`).
    fn resume_idle(&self) {
        // SAFETY: live device; balances a successful `stop_idle` (contract of the caller).
        unsafe { call_unsafe_wdf_function_binding!(WdfDeviceResumeIdleNoTrack, self.handle) };
    }

    /// `WdfDeviceCreateDeviceInterface`, then `WdfStringCreate` +
    /// `WdfDeviceRetrieveDeviceInterfaceString` + `WdfStringGetUnicodeString` for the symbolic
    /// link (empty if WDF cannot tell it yet).
    fn create_interface(&self, class: Guid, reference: Option<&str>) -> NtResult<String> {
        let guid = to_wdk_guid(class);
        let reference = reference.map(UnicodeName::new).transpose()?;
        let reference_ptr = reference
            .as_ref()
            .map_or(core::ptr::null(), UnicodeName::as_ptr);
        // SAFETY: live device; GUID and name valid for the call.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceCreateDeviceInterface,
                self.handle,
                &raw const guid,
                reference_ptr
            )
        })?;
        let mut string: WDFSTRING = null_mut();
        // SAFETY: no initial string, no attributes; out pointer to our local.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfStringCreate,
                core::ptr::null(),
                wdk_sys::WDF_NO_OBJECT_ATTRIBUTES,
                &raw mut string
            )
        };
        if nt_result(status).is_err() {
            return Ok(String::new());
        }
        // SAFETY: live device and string; GUID and name valid for the call.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceRetrieveDeviceInterfaceString,
                self.handle,
                &raw const guid,
                reference_ptr,
                string
            )
        };
        let mut link = Ok(String::new());
        if nt_result(status).is_ok() {
            // SAFETY: UNICODE_STRING is plain data; zero is valid.
            let mut unicode: wdk_sys::UNICODE_STRING = unsafe { core::mem::zeroed() };
            // SAFETY: live string; out pointer to our local.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfStringGetUnicodeString,
                    string,
                    &raw mut unicode
                );
            };
            // SAFETY: WDF filled a UNICODE_STRING describing the string object's buffer, alive
            // until the object is deleted below.
            link = unsafe { from_unicode_string(&raw const unicode) };
        }
        // SAFETY: the string object is ours.
        unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, as_object(string)) };
        link
    }

    /// `WdfDeviceSetDeviceInterfaceState`.
    fn set_interface_state(&self, class: Guid, reference: Option<&str>, enabled: bool) {
        let guid = to_wdk_guid(class);
        let Ok(reference) = reference.map(UnicodeName::new).transpose() else {
            return;
        };
        let reference_ptr = reference
            .as_ref()
            .map_or(core::ptr::null(), UnicodeName::as_ptr);
        // SAFETY: live device; GUID and name valid for the call.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceSetDeviceInterfaceState,
                self.handle,
                &raw const guid,
                reference_ptr,
                boolean(enabled)
            );
        }
    }

    fn is_control(&self) -> bool {
        self.state().is_some_and(|s| s.control)
    }

    /// `WdfDeviceCreateSymbolicLink`.
    fn create_symbolic_link(&self, link: &str) -> NtResult<()> {
        let link = UnicodeName::new(link)?;
        // SAFETY: live device; the name is valid for the call (WDF copies it).
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceCreateSymbolicLink,
                self.handle,
                link.as_ptr()
            )
        })
    }

    /// `WdfControlFinishInitializing` (control devices only; a PnP device is left alone).
    fn finish_initializing(&self) {
        if self.is_control() {
            // SAFETY: a live control device.
            unsafe { call_unsafe_wdf_function_binding!(WdfControlFinishInitializing, self.handle) };
        }
    }

    /// `WdfObjectDelete` of a control device, once.
    fn delete(&self) -> NtResult<()> {
        let state = self.state().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        if !state.control || state.deleted.swap(true, Ordering::AcqRel) {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        // SAFETY: a live control device the driver created and has not deleted (checked).
        unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, as_object(self.handle)) };
        Ok(())
    }

    fn create_queue(&self, config: QueueConfig<Queue, Request>) -> NtResult<Queue> {
        Queue::create(self, config)
    }

    /// `WdfDeviceGetDefaultQueue`.
    fn default_queue(&self) -> Option<Queue> {
        // SAFETY: live device.
        let queue =
            unsafe { call_unsafe_wdf_function_binding!(WdfDeviceGetDefaultQueue, self.handle) };
        (!queue.is_null()).then(|| Queue::from_raw(queue))
    }

    /// `WdfDeviceConfigureRequestDispatching`.
    fn configure_request_dispatching(&self, queue: &Queue, kind: RequestType) -> NtResult<()> {
        let wdf_type: WDF_REQUEST_TYPE = match kind {
            RequestType::Cleanup | RequestType::Close => return Err(NtStatus::INVALID_PARAMETER),
            other => io::wdf_request_type(other),
        };
        // SAFETY: live device and queue.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceConfigureRequestDispatching,
                self.handle,
                queue.raw(),
                wdf_type
            )
        })
    }

    /// `WdfDeviceGetIoTarget`.
    fn io_target(&self) -> IoTarget {
        // SAFETY: live device.
        let target =
            unsafe { call_unsafe_wdf_function_binding!(WdfDeviceGetIoTarget, self.handle) };
        IoTarget::from_local(target)
    }

    fn create_io_target(&self) -> NtResult<IoTarget> {
        IoTarget::create(self)
    }

    /// `WdfIoTargetCreate` + `WdfIoTargetOpen` with `WDF_IO_TARGET_OPEN_PARAMS_INIT_EXISTING_DEVICE`
    /// on `IoGetAttachedDeviceReference(WdfDeviceWdmGetDeviceObject(device))`; the reference is
    /// released with `ObDereferenceObject` after the open (WDF takes its own). On failure the
    /// created target is deleted.
    fn create_stack_top_target(&self) -> NtResult<IoTarget> {
        let target = IoTarget::create(self)?;
        // SAFETY: live device; WDM device object of a WDF device (never null for a created one).
        let device_object =
            unsafe { call_unsafe_wdf_function_binding!(WdfDeviceWdmGetDeviceObject, self.handle) };
        if device_object.is_null() {
            let _ = target.delete();
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        // SAFETY: a live device object at PASSIVE_LEVEL; the returned top of its stack is
        // referenced and released below.
        let top = unsafe { wdk_sys::ntddk::IoGetAttachedDeviceReference(device_object) };
        let mut params = io_target_open_params_init_existing_device(top);
        // SAFETY: live remote target created above; params valid for the call.
        let opened = nt_result(unsafe {
            call_unsafe_wdf_function_binding!(WdfIoTargetOpen, target.raw(), &raw mut params)
        });
        // SAFETY: balances IoGetAttachedDeviceReference, once; the open took its own reference.
        let _ = unsafe { wdk_sys::ntddk::ObfDereferenceObject(top.cast::<c_void>()) };
        if let Err(status) = opened {
            let _ = target.delete();
            return Err(status);
        }
        Ok(target)
    }

    fn register_interface_notification(
        &self,
        class: Guid,
        callback: Arc<dyn Fn(&InterfaceChange) + Send + Sync>,
    ) -> NtResult<InterfaceNotification> {
        io::register_interface_notification(class, callback)
    }
}

// ---------------------------------------------------------------------------------------------
// PnP/power trampolines
// ---------------------------------------------------------------------------------------------

/// `WDF_POWER_DEVICE_STATE` to the contract's (`WdfPowerDeviceInvalid` and unknown values are
/// reported as D3Final, the "first/last" value).
fn power_state(state: WDF_POWER_DEVICE_STATE) -> PowerDeviceState {
    match state {
        _WDF_POWER_DEVICE_STATE::WdfPowerDeviceD0 => PowerDeviceState::D0,
        _WDF_POWER_DEVICE_STATE::WdfPowerDeviceD1 => PowerDeviceState::D1,
        _WDF_POWER_DEVICE_STATE::WdfPowerDeviceD2 => PowerDeviceState::D2,
        _WDF_POWER_DEVICE_STATE::WdfPowerDeviceD3 => PowerDeviceState::D3,
        _WDF_POWER_DEVICE_STATE::WdfPowerDevicePrepareForHibernation => {
            PowerDeviceState::PrepareForHibernation
        }
        // WdfPowerDeviceD3Final, WdfPowerDeviceInvalid and unknown values.
        _ => PowerDeviceState::D3Final,
    }
}

/// Runs `f` with the device state and handle; `default` when the device has no backend state.
///
/// # Safety
/// `device` must be the live device WDF passed to the running callback.
unsafe fn with_state<R>(
    device: WDFDEVICE,
    default: R,
    f: impl FnOnce(&DeviceState, &Device) -> R,
) -> R {
    // SAFETY: forwarded; the reference does not escape `f`.
    match unsafe { state(device) } {
        Some(state) => f(state, &Device::from_raw(device)),
        None => default,
    }
}

/// Generates a trampoline for a `fn(WDFDEVICE) -> NTSTATUS` callback held in a `DeviceResultFn`.
macro_rules! device_result_trampoline {
    ($name:ident, $group:ident . $field:ident) => {
        unsafe extern "C" fn $name(device: WDFDEVICE) -> NTSTATUS {
            // SAFETY: WDF passes the live device of the callback.
            unsafe {
                with_state(device, STATUS_SUCCESS, |s, d| {
                    s.$group
                        .$field
                        .as_ref()
                        .map_or(STATUS_SUCCESS, |cb| to_ntstatus(cb(d)))
                })
            }
        }
    };
}

/// Generates a trampoline for a `fn(WDFDEVICE)` callback held in a `DeviceFn`.
macro_rules! device_trampoline {
    ($name:ident, $group:ident . $field:ident) => {
        unsafe extern "C" fn $name(device: WDFDEVICE) {
            // SAFETY: WDF passes the live device of the callback.
            unsafe {
                with_state(device, (), |s, d| {
                    if let Some(cb) = s.$group.$field.as_ref() {
                        cb(d);
                    }
                });
            }
        }
    };
}

/// Generates a trampoline for a power callback with `PreviousState`/`TargetState`.
macro_rules! device_power_trampoline {
    ($name:ident, $field:ident) => {
        unsafe extern "C" fn $name(device: WDFDEVICE, power: WDF_POWER_DEVICE_STATE) -> NTSTATUS {
            // SAFETY: WDF passes the live device of the callback.
            unsafe {
                with_state(device, STATUS_SUCCESS, |s, d| {
                    s.pnp
                        .$field
                        .as_ref()
                        .map_or(STATUS_SUCCESS, |cb| to_ntstatus(cb(d, power_state(power))))
                })
            }
        }
    };
}

device_power_trampoline!(
    evt_d0_entry_post_interrupts_enabled,
    d0_entry_post_interrupts_enabled
);
device_power_trampoline!(
    evt_d0_exit_pre_interrupts_disabled,
    d0_exit_pre_interrupts_disabled
);
device_result_trampoline!(evt_self_managed_io_init, pnp.self_managed_io_init);
device_result_trampoline!(evt_self_managed_io_restart, pnp.self_managed_io_restart);
device_result_trampoline!(evt_self_managed_io_suspend, pnp.self_managed_io_suspend);
device_trampoline!(evt_self_managed_io_flush, pnp.self_managed_io_flush);
device_trampoline!(evt_self_managed_io_cleanup, pnp.self_managed_io_cleanup);
device_trampoline!(evt_surprise_removal, pnp.surprise_removal);
device_result_trampoline!(evt_query_remove, pnp.query_remove);
device_result_trampoline!(evt_query_stop, pnp.query_stop);
device_result_trampoline!(evt_arm_wake_from_s0, policy.arm_wake_from_s0);
device_trampoline!(evt_disarm_wake_from_s0, policy.disarm_wake_from_s0);
device_trampoline!(evt_wake_from_s0_triggered, policy.wake_from_s0_triggered);
device_trampoline!(evt_disarm_wake_from_sx, policy.disarm_wake_from_sx);
device_trampoline!(evt_wake_from_sx_triggered, policy.wake_from_sx_triggered);

/// `EvtDeviceD0Entry`: the driver's callback, then "in D0" on success.
unsafe extern "C" fn evt_d0_entry(device: WDFDEVICE, previous: WDF_POWER_DEVICE_STATE) -> NTSTATUS {
    // SAFETY: WDF passes the live device of the callback.
    unsafe {
        with_state(device, STATUS_SUCCESS, |s, d| {
            let status = s.pnp.d0_entry.as_ref().map_or(STATUS_SUCCESS, |cb| {
                to_ntstatus(cb(d, power_state(previous)))
            });
            if NT_SUCCESS(status) {
                s.in_d0.store(true, Ordering::Release);
            }
            status
        })
    }
}

/// `EvtDeviceD0Exit`: "not in D0", then the driver's callback.
unsafe extern "C" fn evt_d0_exit(device: WDFDEVICE, target: WDF_POWER_DEVICE_STATE) -> NTSTATUS {
    // SAFETY: WDF passes the live device of the callback.
    unsafe {
        with_state(device, STATUS_SUCCESS, |s, d| {
            s.in_d0.store(false, Ordering::Release);
            s.pnp
                .d0_exit
                .as_ref()
                .map_or(STATUS_SUCCESS, |cb| to_ntstatus(cb(d, power_state(target))))
        })
    }
}

/// `EvtDevicePrepareHardware(device, raw, translated)`.
unsafe extern "C" fn evt_prepare_hardware(
    device: WDFDEVICE,
    raw: WDFCMRESLIST,
    translated: WDFCMRESLIST,
) -> NTSTATUS {
    let resources = Resources { raw, translated };
    // SAFETY: WDF passes the live device and lists of the callback.
    unsafe {
        with_state(device, STATUS_SUCCESS, |s, d| {
            s.pnp
                .prepare_hardware
                .as_ref()
                .map_or(STATUS_SUCCESS, |cb| to_ntstatus(cb(d, &resources)))
        })
    }
}

/// `EvtDeviceReleaseHardware(device, translated)`.
unsafe extern "C" fn evt_release_hardware(device: WDFDEVICE, translated: WDFCMRESLIST) -> NTSTATUS {
    let resources = Resources {
        raw: null_mut(),
        translated,
    };
    // SAFETY: WDF passes the live device and list of the callback.
    unsafe {
        with_state(device, STATUS_SUCCESS, |s, d| {
            s.pnp
                .release_hardware
                .as_ref()
                .map_or(STATUS_SUCCESS, |cb| to_ntstatus(cb(d, &resources)))
        })
    }
}

/// `EvtDeviceRelationsQuery`: relation types the contract does not name (`PowerRelations`,
/// `SingleBusRelations`, `TransportRelations`) are not passed on.
unsafe extern "C" fn evt_relations_query(device: WDFDEVICE, relation: DEVICE_RELATION_TYPE) {
    let relation = match relation {
        _DEVICE_RELATION_TYPE::BusRelations => RelationType::Bus,
        _DEVICE_RELATION_TYPE::EjectionRelations => RelationType::Ejection,
        _DEVICE_RELATION_TYPE::RemovalRelations => RelationType::Removal,
        _DEVICE_RELATION_TYPE::TargetDeviceRelation => RelationType::TargetDevice,
        _ => return,
    };
    // SAFETY: WDF passes the live device of the callback.
    unsafe {
        with_state(device, (), |s, d| {
            if let Some(cb) = s.pnp.relations_query.as_ref() {
                cb(d, relation);
            }
        });
    }
}

/// `EvtDeviceUsageNotificationEx`.
unsafe extern "C" fn evt_usage_notification_ex(
    device: WDFDEVICE,
    kind: WDF_SPECIAL_FILE_TYPE,
    in_path: BOOLEAN,
) -> NTSTATUS {
    let kind = match kind {
        _WDF_SPECIAL_FILE_TYPE::WdfSpecialFilePaging => SpecialFileType::Paging,
        _WDF_SPECIAL_FILE_TYPE::WdfSpecialFileHibernation => SpecialFileType::Hibernation,
        _WDF_SPECIAL_FILE_TYPE::WdfSpecialFileDump => SpecialFileType::Dump,
        _WDF_SPECIAL_FILE_TYPE::WdfSpecialFileBoot => SpecialFileType::Boot,
        _ => return STATUS_SUCCESS,
    };
    // SAFETY: WDF passes the live device of the callback.
    unsafe {
        with_state(device, STATUS_SUCCESS, |s, d| {
            s.pnp
                .usage_notification_ex
                .as_ref()
                .map_or(STATUS_SUCCESS, |cb| {
                    to_ntstatus(cb(d, kind, in_path != FALSE))
                })
        })
    }
}

/// `EvtDeviceArmWakeFromSxWithReason`.
unsafe extern "C" fn evt_arm_wake_from_sx_with_reason(
    device: WDFDEVICE,
    device_wake_enabled: BOOLEAN,
    children_armed_for_wake: BOOLEAN,
) -> NTSTATUS {
    // SAFETY: WDF passes the live device of the callback.
    unsafe {
        with_state(device, STATUS_SUCCESS, |s, d| {
            s.policy
                .arm_wake_from_sx_with_reason
                .as_ref()
                .map_or(STATUS_SUCCESS, |cb| {
                    to_ntstatus(cb(
                        d,
                        device_wake_enabled != FALSE,
                        children_armed_for_wake != FALSE,
                    ))
                })
        })
    }
}

/// The device a file object belongs to (`WdfFileObjectGetDevice`).
///
/// # Safety
/// `file` must be a live file object passed by WDF to a callback.
pub(super) unsafe fn file_device(file: WDFFILEOBJECT) -> WDFDEVICE {
    // SAFETY: forwarded.
    unsafe { call_unsafe_wdf_function_binding!(WdfFileObjectGetDevice, file) }
}

/// Runs `f` with the device state of `device` (for the file-object trampolines in `io/file_object.rs`).
///
/// # Safety
/// As [`with_state`].
pub(super) unsafe fn with_device_state<R>(
    device: WDFDEVICE,
    default: R,
    f: impl FnOnce(&DeviceState, &Device) -> R,
) -> R {
    // SAFETY: forwarded.
    unsafe { with_state(device, default, f) }
}
