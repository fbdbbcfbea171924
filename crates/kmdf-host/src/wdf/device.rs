//! Devices: `EvtDriverDeviceAdd` with a `WDFDEVICE_INIT`, the `WdfDeviceInit…` functions,
//! `WdfDeviceCreate` and the `WdfDevice…` functions on a created device.
//!
//! A `PWDFDEVICE_INIT` the driver receives is the address of an [`InitState`] the host owns: for
//! a PnP device, for the duration of `EvtDriverDeviceAdd` (the kmdf-sim [`DeviceInit`] of the
//! node being added); for a control device, from `WdfControlDeviceInitAllocate` until
//! `WdfDeviceCreate` or `WdfDeviceInitFree`. The `WdfDeviceInit…` calls collect into it and
//! `WdfDeviceCreate` applies them: the driver's PnP/power, power-policy and file-object
//! callbacks become kmdf-sim's callbacks (kmdf-sim's PnP engine calls them in KMDF's sequences,
//! traced, with the IRQL and locks checked around them), each calling the driver with the new
//! `WDFDEVICE`. As KMDF does, `WdfDeviceCreate` sets the driver's `PWDFDEVICE_INIT` to NULL; an
//! init pointer the host did not hand out, or one used after `WdfDeviceCreate` consumed it, stops
//! the run (KMDF's verifier breaks there).
//!
//! `EvtDevicePrepareHardware` and `EvtDeviceReleaseHardware` receive NULL `WDFCMRESLIST`
//! handles: kmdf-sim's resources are descriptions, not `CM_RESOURCE_LIST`s, and no image we run
//! reads them (a `WdfCmResourceList…` call on them stops the run, naming the function).
//! `WdfDeviceWdmGetDeviceObject` answers a zeroed `DEVICE_OBJECT`-sized block per device, owned
//! by the device.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use kmdf_sim::control::DeviceSecurity;
use kmdf_sim::device::{Device, DeviceInit, S0IdleSettings};
use kmdf_sim::guid::Guid;
use kmdf_sim::interface::find_interface;
use kmdf_sim::pnp::{
    DevicePowerState, FailedAction, RelationType, SpecialFileType, SystemPowerAction,
    WdfPowerDeviceState,
};
use kmdf_sim::Status;

use super::bindings::status::{
    STATUS_INFO_LENGTH_MISMATCH, STATUS_SUCCESS, STATUS_WDF_PARENT_ASSIGNMENT_NOT_ALLOWED,
};
use super::bindings::_DEVICE_POWER_STATE::{
    PowerDeviceD1, PowerDeviceD2, PowerDeviceD3, PowerDeviceMaximum,
};
use super::bindings::_DEVICE_RELATION_TYPE::{
    BusRelations, EjectionRelations, RemovalRelations, TargetDeviceRelation,
};
use super::bindings::_WDF_DEVICE_FAILED_ACTION::WdfDeviceFailedAttemptRestart;
use super::bindings::_WDF_DEVICE_IO_TYPE::{WdfDeviceIoMaximum, WdfDeviceIoUndefined};
use super::bindings::_WDF_POWER_DEVICE_STATE::{
    WdfPowerDeviceD0, WdfPowerDeviceD1, WdfPowerDeviceD2, WdfPowerDeviceD3, WdfPowerDeviceD3Final,
    WdfPowerDeviceInvalid, WdfPowerDevicePrepareForHibernation,
};
use super::bindings::_WDF_POWER_POLICY_S0_IDLE_CAPABILITIES::{
    IdleCanWakeFromS0, IdleUsbSelectiveSuspend,
};
use super::bindings::_WDF_SPECIAL_FILE_TYPE::{
    WdfSpecialFileBoot, WdfSpecialFileDump, WdfSpecialFileHibernation, WdfSpecialFilePaging,
};
use super::bindings::_WDF_TRI_STATE::WdfFalse;
use super::bindings::POWER_ACTION::{
    PowerActionHibernate, PowerActionNone, PowerActionShutdown, PowerActionSleep,
};
use super::bindings::{
    _DEVICE_OBJECT, BOOLEAN, DEVICE_RELATION_TYPE, GUID, LONG, NTSTATUS, PCCH, PCUNICODE_STRING,
    PDEVICE_OBJECT, PVOID, PWDFDEVICE_INIT, PWDF_DEVICE_POWER_POLICY_IDLE_SETTINGS,
    PWDF_DEVICE_POWER_POLICY_WAKE_SETTINGS, PWDF_DRIVER_GLOBALS, PWDF_FILEOBJECT_CONFIG,
    PWDF_OBJECT_ATTRIBUTES, PWDF_PNPPOWER_EVENT_CALLBACKS, PWDF_POWER_POLICY_EVENT_CALLBACKS,
    UNICODE_STRING, WDFCMRESLIST, WDFDEVICE, WDFDRIVER, WDFIOTARGET, WDFQUEUE, WDFSTRING,
    WDF_DEVICE_FAILED_ACTION, WDF_DEVICE_IO_TYPE, WDF_DEVICE_POWER_POLICY_IDLE_SETTINGS,
    WDF_DEVICE_POWER_POLICY_WAKE_SETTINGS, WDF_FILEOBJECT_CONFIG, WDF_PNPPOWER_EVENT_CALLBACKS,
    WDF_POWER_DEVICE_STATE, WDF_POWER_POLICY_EVENT_CALLBACKS, WDF_SPECIAL_FILE_TYPE,
};
use super::driver::HostDriver;
use super::objects::{self, Attributes, Handle, Object};
use super::{fileobject, string, wdf_exports};
use crate::host::{guard, stop, Stop, UnicodeString};

wdf_exports! {
    WdfFdoInitSetFilter => wdf_fdo_init_set_filter: PFN_WDFFDOINITSETFILTER,
    WdfDeviceInitSetPnpPowerEventCallbacks => wdf_device_init_set_pnp_power_event_callbacks: PFN_WDFDEVICEINITSETPNPPOWEREVENTCALLBACKS,
    WdfDeviceInitSetPowerPolicyEventCallbacks => wdf_device_init_set_power_policy_event_callbacks: PFN_WDFDEVICEINITSETPOWERPOLICYEVENTCALLBACKS,
    WdfDeviceInitSetPowerPolicyOwnership => wdf_device_init_set_power_policy_ownership: PFN_WDFDEVICEINITSETPOWERPOLICYOWNERSHIP,
    WdfDeviceInitSetFileObjectConfig => wdf_device_init_set_file_object_config: PFN_WDFDEVICEINITSETFILEOBJECTCONFIG,
    WdfDeviceInitSetRequestAttributes => wdf_device_init_set_request_attributes: PFN_WDFDEVICEINITSETREQUESTATTRIBUTES,
    WdfDeviceInitSetIoType => wdf_device_init_set_io_type: PFN_WDFDEVICEINITSETIOTYPE,
    WdfDeviceInitSetExclusive => wdf_device_init_set_exclusive: PFN_WDFDEVICEINITSETEXCLUSIVE,
    WdfDeviceInitSetDeviceType => wdf_device_init_set_device_type: PFN_WDFDEVICEINITSETDEVICETYPE,
    WdfDeviceInitAssignName => wdf_device_init_assign_name: PFN_WDFDEVICEINITASSIGNNAME,
    WdfDeviceInitFree => wdf_device_init_free: PFN_WDFDEVICEINITFREE,
    WdfControlDeviceInitAllocate => wdf_control_device_init_allocate: PFN_WDFCONTROLDEVICEINITALLOCATE,
    WdfDeviceCreate => wdf_device_create: PFN_WDFDEVICECREATE,
    WdfControlFinishInitializing => wdf_control_finish_initializing: PFN_WDFCONTROLFINISHINITIALIZING,
    WdfDeviceCreateSymbolicLink => wdf_device_create_symbolic_link: PFN_WDFDEVICECREATESYMBOLICLINK,
    WdfDeviceCreateDeviceInterface => wdf_device_create_device_interface: PFN_WDFDEVICECREATEDEVICEINTERFACE,
    WdfDeviceSetDeviceInterfaceState => wdf_device_set_device_interface_state: PFN_WDFDEVICESETDEVICEINTERFACESTATE,
    WdfDeviceRetrieveDeviceInterfaceString => wdf_device_retrieve_device_interface_string: PFN_WDFDEVICERETRIEVEDEVICEINTERFACESTRING,
    WdfDeviceGetDefaultQueue => wdf_device_get_default_queue: PFN_WDFDEVICEGETDEFAULTQUEUE,
    WdfDeviceGetIoTarget => wdf_device_get_io_target: PFN_WDFDEVICEGETIOTARGET,
    WdfDeviceGetDriver => wdf_device_get_driver: PFN_WDFDEVICEGETDRIVER,
    WdfDeviceGetSystemPowerAction => wdf_device_get_system_power_action: PFN_WDFDEVICEGETSYSTEMPOWERACTION,
    WdfDeviceWdmGetDeviceObject => wdf_device_wdm_get_device_object: PFN_WDFDEVICEWDMGETDEVICEOBJECT,
    WdfDeviceAssignS0IdleSettings => wdf_device_assign_s0_idle_settings: PFN_WDFDEVICEASSIGNS0IDLESETTINGS,
    WdfDeviceAssignSxWakeSettings => wdf_device_assign_sx_wake_settings: PFN_WDFDEVICEASSIGNSXWAKESETTINGS,
    WdfDeviceStopIdleNoTrack => wdf_device_stop_idle_no_track: PFN_WDFDEVICESTOPIDLENOTRACK,
    WdfDeviceResumeIdleNoTrack => wdf_device_resume_idle_no_track: PFN_WDFDEVICERESUMEIDLENOTRACK,
    WdfDeviceStopIdleActual => wdf_device_stop_idle_actual: PFN_WDFDEVICESTOPIDLEACTUAL,
    WdfDeviceResumeIdleActual => wdf_device_resume_idle_actual: PFN_WDFDEVICERESUMEIDLEACTUAL,
    WdfDeviceSetFailed => wdf_device_set_failed: PFN_WDFDEVICESETFAILED,
}

/// The payload of a `WDFDEVICE` object.
pub struct DevicePayload {
    /// The kmdf-sim device.
    pub sim: Device,
    /// The driver that created it.
    pub driver: Arc<HostDriver>,
    /// `WdfDeviceInitSetRequestAttributes`: the attributes (context) of every request the
    /// framework delivers to the device's queues.
    pub request_attributes: Option<Attributes>,
}

impl core::fmt::Debug for DevicePayload {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DevicePayload").finish_non_exhaustive()
    }
}

/// What the host keeps on a kmdf-sim device besides the payload (a device extension: it moves
/// from the init to the device at `WdfDeviceCreate`).
#[derive(Debug, Default)]
pub struct HostDeviceExtras {
    /// `WdfDeviceInitSetIoType` (`WdfDeviceIoBuffered` when not called).
    pub io_type: Option<WDF_DEVICE_IO_TYPE>,
    /// `WdfDeviceInitSetExclusive`.
    pub exclusive: bool,
    /// The block `WdfDeviceWdmGetDeviceObject` answers (allocated on first use).
    wdm: OnceLock<Box<[u64]>>,
}

/// The live `WDFDEVICE` `handle` (its payload is a [`DevicePayload`]), or a stop naming
/// `routine`.
pub fn device_of(handle: Handle, routine: &str) -> Arc<Object> {
    objects::expect_kind(handle, "WDFDEVICE", routine)
}

/// The [`DevicePayload`] of a device object.
///
/// # Panics
/// Never for an object from [`device_of`] (every `WDFDEVICE` has this payload).
pub fn payload_of(device: &Object) -> &DevicePayload {
    device
        .payload::<DevicePayload>()
        .expect("a WDFDEVICE has a DevicePayload")
}

/// What stands behind a `PWDFDEVICE_INIT`.
pub struct InitState {
    /// The kmdf-sim init (valid while the init is live: the callback's, or `owned`).
    pub sim: *mut DeviceInit,
    /// The driver being called.
    pub driver: usize,
    pnp: Option<WDF_PNPPOWER_EVENT_CALLBACKS>,
    policy: Option<WDF_POWER_POLICY_EVENT_CALLBACKS>,
    file: Option<(WDF_FILEOBJECT_CONFIG, Option<Attributes>)>,
    request_attributes: Option<Attributes>,
    /// `WdfDeviceCreate` succeeded with this init.
    consumed: bool,
    /// The init of a control device (`WdfControlDeviceInitAllocate`), owned here.
    owned: Option<Box<DeviceInit>>,
}

impl core::fmt::Debug for InitState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InitState")
            .field("consumed", &self.consumed)
            .field("control", &self.owned.is_some())
            .finish_non_exhaustive()
    }
}

impl InitState {
    /// The state of an init for `sim`, of the driver `driver`.
    pub fn new(sim: *mut DeviceInit, driver: usize) -> InitState {
        InitState {
            sim,
            driver,
            pnp: None,
            policy: None,
            file: None,
            request_attributes: None,
            consumed: false,
            owned: None,
        }
    }

    fn sim(&mut self) -> &mut DeviceInit {
        // SAFETY: `sim` points at the callback's init (live while the state is registered, see
        // `device_add`) or into `owned`.
        unsafe { &mut *self.sim }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The addresses of the inits the driver may use now.
static LIVE_INITS: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn register_init(p: *mut InitState) {
    lock(&LIVE_INITS)
        .get_or_insert_with(HashSet::new)
        .insert(p as usize);
}

fn unregister_init(p: *mut InitState) {
    if let Some(set) = lock(&LIVE_INITS).as_mut() {
        set.remove(&(p as usize));
    }
}

/// The live init `p`, or a stop naming `routine` (a pointer the host did not hand out, a freed
/// control init, or an init of a device add that returned).
fn init_of<'a>(p: PWDFDEVICE_INIT, routine: &str) -> &'a mut InitState {
    let live = lock(&LIVE_INITS)
        .as_ref()
        .is_some_and(|set| set.contains(&(p as usize)));
    if !live {
        stop(Stop {
            message: format!(
                "kmdf-host: the driver passed {routine} the WDFDEVICE_INIT {p:p}, which is not \
                 a live device init (WDF_VIOLATION)"
            ),
            wdf_function: None,
        });
    }
    // SAFETY: registered inits are `InitState`s alive until unregistered (a device add's frame,
    // or a control init's box), used by the driver's thread.
    unsafe { &mut *p.cast::<InitState>() }
}

/// [`init_of`], refusing an init `WdfDeviceCreate` already consumed.
fn open_init<'a>(p: PWDFDEVICE_INIT, routine: &str) -> &'a mut InitState {
    let state = init_of(p, routine);
    if state.consumed {
        stop(Stop {
            message: format!(
                "kmdf-host: the driver passed {routine} a WDFDEVICE_INIT that WdfDeviceCreate \
                 already consumed (WDF_VIOLATION)"
            ),
            wdf_function: None,
        });
    }
    state
}

/// kmdf-sim's `AddDevice` for a host driver: `EvtDriverDeviceAdd(Driver, DeviceInit)`.
///
/// Errors: the callback's failure status; `STATUS_INVALID_DEVICE_STATE` for a driver that
/// registered no `EvtDriverDeviceAdd`.
pub(crate) fn device_add(host: &HostDriver, init: &mut DeviceInit) -> Result<(), Status> {
    let Some(add) = host.device_add else {
        return Err(Status::INVALID_DEVICE_STATE);
    };
    let mut state = InitState::new(init, host.handle);
    let p: *mut InitState = &raw mut state;
    register_init(p);
    // SAFETY: the driver's `EVT_WDF_DRIVER_DEVICE_ADD`, called with its WDFDRIVER and a
    // WDFDEVICE_INIT that stays valid for the call (`state` lives on this frame).
    let status = unsafe { add(host.handle as WDFDRIVER, p.cast()) };
    unregister_init(p);
    if status >= 0 {
        Ok(())
    } else {
        Err(Status(status))
    }
}

/// Reads a versioned structure the driver passes: null or a `Size` other than the 1.33
/// structure's is a driver bug KMDF's verifier breaks on; the host stops.
///
/// # Safety
/// `p` is null or points to a readable `T` whose first field is its `ULONG Size`.
pub(crate) unsafe fn read_sized<T: Copy>(p: *const T, routine: &str, what: &str) -> T {
    if p.is_null() {
        stop(Stop {
            message: format!("kmdf-host: the driver passed {routine} a NULL {what}"),
            wdf_function: None,
        });
    }
    // SAFETY: the caller's contract; the Size field is the first ULONG.
    let size = unsafe { p.cast::<u32>().read_unaligned() } as usize;
    if size != size_of::<T>() {
        stop(Stop {
            message: format!(
                "kmdf-host: the driver passed {routine} a {what} of Size {size}, expected {} \
                 (KMDF 1.33)",
                size_of::<T>()
            ),
            wdf_function: None,
        });
    }
    // SAFETY: as above, `Size` bytes are readable.
    unsafe { p.read_unaligned() }
}

/// `WdfFdoInitSetFilter`.
extern "win64" fn wdf_fdo_init_set_filter(_globals: PWDF_DRIVER_GLOBALS, init: PWDFDEVICE_INIT) {
    guard("WdfFdoInitSetFilter", || {
        open_init(init, "WdfFdoInitSetFilter").sim().set_filter();
    });
}

/// `WdfDeviceInitSetPnpPowerEventCallbacks`: kept until `WdfDeviceCreate`.
extern "win64" fn wdf_device_init_set_pnp_power_event_callbacks(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    callbacks: PWDF_PNPPOWER_EVENT_CALLBACKS,
) {
    const ROUTINE: &str = "WdfDeviceInitSetPnpPowerEventCallbacks";
    guard(ROUTINE, || {
        let state = open_init(init, ROUTINE);
        // SAFETY: the routine's contract: the driver's structure for the call.
        state.pnp = Some(unsafe { read_sized(callbacks, ROUTINE, "WDF_PNPPOWER_EVENT_CALLBACKS") });
    });
}

/// `WdfDeviceInitSetPowerPolicyEventCallbacks`: kept until `WdfDeviceCreate`.
extern "win64" fn wdf_device_init_set_power_policy_event_callbacks(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    callbacks: PWDF_POWER_POLICY_EVENT_CALLBACKS,
) {
    const ROUTINE: &str = "WdfDeviceInitSetPowerPolicyEventCallbacks";
    guard(ROUTINE, || {
        let state = open_init(init, ROUTINE);
        // SAFETY: the routine's contract: the driver's structure for the call.
        state.policy =
            Some(unsafe { read_sized(callbacks, ROUTINE, "WDF_POWER_POLICY_EVENT_CALLBACKS") });
    });
}

/// `WdfDeviceInitSetPowerPolicyOwnership`.
extern "win64" fn wdf_device_init_set_power_policy_ownership(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    owner: BOOLEAN,
) {
    guard("WdfDeviceInitSetPowerPolicyOwnership", || {
        open_init(init, "WdfDeviceInitSetPowerPolicyOwnership")
            .sim()
            .set_power_policy_ownership(owner != 0);
    });
}

/// `WdfDeviceInitSetFileObjectConfig`: the config and the file objects' attributes (context,
/// cleanup), kept until `WdfDeviceCreate`. Attributes of the wrong size are a driver bug (the
/// routine returns nothing): the host stops.
extern "win64" fn wdf_device_init_set_file_object_config(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    config: PWDF_FILEOBJECT_CONFIG,
    attributes: PWDF_OBJECT_ATTRIBUTES,
) {
    const ROUTINE: &str = "WdfDeviceInitSetFileObjectConfig";
    guard(ROUTINE, || {
        let state = open_init(init, ROUTINE);
        // SAFETY: the routine's contract: the driver's structure for the call.
        let config = unsafe { read_sized(config, ROUTINE, "WDF_FILEOBJECT_CONFIG") };
        // SAFETY: as above: null or the driver's attributes.
        let attributes = unsafe { Attributes::read(attributes) }
            .unwrap_or_else(|status| bad_attributes(ROUTINE, status));
        state.file = Some((config, attributes));
    });
}

fn bad_attributes(routine: &str, status: Status) -> ! {
    stop(Stop {
        message: format!(
            "kmdf-host: the driver passed {routine} invalid WDF_OBJECT_ATTRIBUTES ({status:?})"
        ),
        wdf_function: None,
    })
}

/// `WdfDeviceInitSetRequestAttributes`: the context of every request delivered to the device.
extern "win64" fn wdf_device_init_set_request_attributes(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    attributes: PWDF_OBJECT_ATTRIBUTES,
) {
    const ROUTINE: &str = "WdfDeviceInitSetRequestAttributes";
    guard(ROUTINE, || {
        let state = open_init(init, ROUTINE);
        // SAFETY: the routine's contract: the driver's attributes for the call.
        let attributes = unsafe { Attributes::read(attributes) }
            .unwrap_or_else(|status| bad_attributes(ROUTINE, status));
        state.request_attributes = attributes;
    });
}

/// `WdfDeviceInitSetIoType`: recorded on the device (kmdf-sim hands the driver its buffers
/// whatever the method).
extern "win64" fn wdf_device_init_set_io_type(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    io_type: WDF_DEVICE_IO_TYPE,
) {
    guard("WdfDeviceInitSetIoType", || {
        let state = open_init(init, "WdfDeviceInitSetIoType");
        if io_type <= WdfDeviceIoUndefined || io_type >= WdfDeviceIoMaximum {
            stop(Stop {
                message: format!(
                    "kmdf-host: the driver passed WdfDeviceInitSetIoType the invalid \
                     WDF_DEVICE_IO_TYPE {io_type}"
                ),
                wdf_function: None,
            });
        }
        state.sim().extension_mut::<HostDeviceExtras>().io_type = Some(io_type);
    });
}

/// `WdfDeviceInitSetExclusive`: recorded on the device.
extern "win64" fn wdf_device_init_set_exclusive(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    exclusive: BOOLEAN,
) {
    guard("WdfDeviceInitSetExclusive", || {
        open_init(init, "WdfDeviceInitSetExclusive")
            .sim()
            .extension_mut::<HostDeviceExtras>()
            .exclusive = exclusive != 0;
    });
}

/// `WdfDeviceInitSetDeviceType`.
extern "win64" fn wdf_device_init_set_device_type(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    device_type: super::bindings::ULONG,
) {
    guard("WdfDeviceInitSetDeviceType", || {
        open_init(init, "WdfDeviceInitSetDeviceType")
            .sim()
            .set_device_type(device_type);
    });
}

/// `WdfDeviceInitAssignName`: the device object's name (a NULL name is refused here: kmdf-sim
/// has no way to clear one).
///
/// Errors: `STATUS_INVALID_PARAMETER` for a NULL name.
extern "win64" fn wdf_device_init_assign_name(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    name: PCUNICODE_STRING,
) -> NTSTATUS {
    guard("WdfDeviceInitAssignName", || {
        let state = open_init(init, "WdfDeviceInitAssignName");
        // SAFETY: the routine's contract: null or the driver's UNICODE_STRING.
        let Some(name) = (unsafe { UnicodeString::read(name.cast()) }) else {
            return Status::INVALID_PARAMETER.0;
        };
        state.sim().assign_name(&name);
        STATUS_SUCCESS
    })
}

/// `WdfControlDeviceInitAllocate`: a control device's init (its SDDL string reduced to
/// kmdf-sim's two descriptors); NULL for an SDDL string other than those two or a driver handle
/// that is not the caller's.
extern "win64" fn wdf_control_device_init_allocate(
    globals: PWDF_DRIVER_GLOBALS,
    driver: WDFDRIVER,
    sddl: *const UNICODE_STRING,
) -> PWDFDEVICE_INIT {
    const ROUTINE: &str = "WdfControlDeviceInitAllocate";
    guard(ROUTINE, || {
        let host = super::driver::of_globals(globals, ROUTINE);
        if host.handle != driver as usize {
            return core::ptr::null_mut();
        }
        // SAFETY: the routine's contract: the driver's UNICODE_STRING.
        let Some(sddl) = (unsafe { UnicodeString::read(sddl.cast()) }) else {
            return core::ptr::null_mut();
        };
        let security = [DeviceSecurity::AdministratorsOnly, DeviceSecurity::Everyone]
            .into_iter()
            .find(|s| s.sddl() == sddl);
        let Some(security) = security else {
            return core::ptr::null_mut();
        };
        let mut owned = Box::new(DeviceInit::control(&host.sim, security));
        let mut state = Box::new(InitState::new(&raw mut *owned, host.handle));
        state.owned = Some(owned);
        let p = Box::into_raw(state);
        register_init(p);
        p.cast()
    })
}

/// Frees a control init (`WdfDeviceInitFree`, or `WdfDeviceCreate` done with it).
fn free_control_init(p: *mut InitState) {
    unregister_init(p);
    // SAFETY: `p` came from `Box::into_raw` in `wdf_control_device_init_allocate` and was
    // registered until now; it is freed once (unregistered first).
    drop(unsafe { Box::from_raw(p) });
}

/// `WdfDeviceInitFree`: frees a control init the driver did not create a device with. On the
/// init of `EvtDriverDeviceAdd` (the framework's) it does nothing, as in KMDF.
extern "win64" fn wdf_device_init_free(_globals: PWDF_DRIVER_GLOBALS, init: PWDFDEVICE_INIT) {
    guard("WdfDeviceInitFree", || {
        let state = init_of(init, "WdfDeviceInitFree");
        if state.owned.is_some() {
            free_control_init(init.cast());
        }
    });
}

/// Maps kmdf-sim's `WDF_POWER_DEVICE_STATE`.
pub fn power_state(state: WdfPowerDeviceState) -> WDF_POWER_DEVICE_STATE {
    match state {
        WdfPowerDeviceState::Invalid => WdfPowerDeviceInvalid,
        WdfPowerDeviceState::D0 => WdfPowerDeviceD0,
        WdfPowerDeviceState::D1 => WdfPowerDeviceD1,
        WdfPowerDeviceState::D2 => WdfPowerDeviceD2,
        WdfPowerDeviceState::D3 => WdfPowerDeviceD3,
        WdfPowerDeviceState::D3Final => WdfPowerDeviceD3Final,
        WdfPowerDeviceState::PrepareForHibernation => WdfPowerDevicePrepareForHibernation,
    }
}

fn relation_type(relation: RelationType) -> DEVICE_RELATION_TYPE {
    match relation {
        RelationType::Bus => BusRelations,
        RelationType::Ejection => EjectionRelations,
        RelationType::Removal => RemovalRelations,
        RelationType::TargetDevice => TargetDeviceRelation,
    }
}

fn special_file(kind: SpecialFileType) -> WDF_SPECIAL_FILE_TYPE {
    match kind {
        SpecialFileType::Paging => WdfSpecialFilePaging,
        SpecialFileType::Hibernation => WdfSpecialFileHibernation,
        SpecialFileType::Dump => WdfSpecialFileDump,
        SpecialFileType::Boot => WdfSpecialFileBoot,
    }
}

/// `POWER_ACTION` of kmdf-sim's system power action.
pub fn power_action(action: SystemPowerAction) -> super::bindings::POWER_ACTION::Type {
    match action {
        SystemPowerAction::None => PowerActionNone,
        SystemPowerAction::Sleep => PowerActionSleep,
        SystemPowerAction::Hibernate => PowerActionHibernate,
        SystemPowerAction::Shutdown => PowerActionShutdown,
    }
}

/// Wires a driver callback taking only the `WDFDEVICE` into a kmdf-sim callback slot: `status`
/// for one returning `NTSTATUS`, `unit` for one returning nothing.
macro_rules! device_callback {
    ($slot:expr, $source:expr, $handle:expr, status) => {
        if let Some(f) = $source {
            let handle = $handle;
            $slot = Some(Arc::new(move |_| {
                // SAFETY: the driver's callback, called with the WDFDEVICE being created, which
                // is alive while kmdf-sim calls the device's callbacks.
                Status(unsafe { f(handle as WDFDEVICE) })
            }));
        }
    };
    ($slot:expr, $source:expr, $handle:expr, unit) => {
        if let Some(f) = $source {
            let handle = $handle;
            $slot = Some(Arc::new(move |_| {
                // SAFETY: as for `status` above.
                unsafe { f(handle as WDFDEVICE) }
            }));
        }
    };
}

/// The driver's PnP/power callbacks as kmdf-sim's, each calling the driver with `handle`.
#[allow(
    clippy::too_many_lines,
    reason = "one arm per WDF_PNPPOWER_EVENT_CALLBACKS member"
)]
fn apply_pnp(init: &mut DeviceInit, cb: &WDF_PNPPOWER_EVENT_CALLBACKS, handle: Handle) {
    let pnp = &mut init.pnp;
    // Each closure below calls one of the driver's `EVT_WDF_DEVICE_*` callbacks with the
    // WDFDEVICE being created (alive while kmdf-sim calls its callbacks) and arguments of the
    // callback's header type.
    if let Some(f) = cb.EvtDevicePrepareHardware {
        pnp.prepare_hardware = Some(Arc::new(move |_, _| {
            // SAFETY: see above; the resource lists are NULL (module documentation).
            Status(unsafe { f(handle as WDFDEVICE, no_resources(), no_resources()) })
        }));
    }
    if let Some(f) = cb.EvtDeviceReleaseHardware {
        pnp.release_hardware = Some(Arc::new(move |_, _| {
            // SAFETY: see above.
            Status(unsafe { f(handle as WDFDEVICE, no_resources()) })
        }));
    }
    if let Some(f) = cb.EvtDeviceD0Entry {
        pnp.d0_entry = Some(Arc::new(move |_, previous| {
            // SAFETY: see above.
            Status(unsafe { f(handle as WDFDEVICE, power_state(previous)) })
        }));
    }
    if let Some(f) = cb.EvtDeviceD0EntryPostInterruptsEnabled {
        pnp.d0_entry_post_interrupts_enabled = Some(Arc::new(move |_, previous| {
            // SAFETY: see above.
            Status(unsafe { f(handle as WDFDEVICE, power_state(previous)) })
        }));
    }
    if let Some(f) = cb.EvtDeviceD0ExitPreInterruptsDisabled {
        pnp.d0_exit_pre_interrupts_disabled = Some(Arc::new(move |_, target| {
            // SAFETY: see above.
            Status(unsafe { f(handle as WDFDEVICE, power_state(target)) })
        }));
    }
    if let Some(f) = cb.EvtDeviceD0Exit {
        pnp.d0_exit = Some(Arc::new(move |_, target| {
            // SAFETY: see above.
            Status(unsafe { f(handle as WDFDEVICE, power_state(target)) })
        }));
    }
    device_callback!(
        pnp.self_managed_io_init,
        cb.EvtDeviceSelfManagedIoInit,
        handle,
        status
    );
    device_callback!(
        pnp.self_managed_io_restart,
        cb.EvtDeviceSelfManagedIoRestart,
        handle,
        status
    );
    device_callback!(
        pnp.self_managed_io_suspend,
        cb.EvtDeviceSelfManagedIoSuspend,
        handle,
        status
    );
    device_callback!(
        pnp.self_managed_io_flush,
        cb.EvtDeviceSelfManagedIoFlush,
        handle,
        unit
    );
    device_callback!(
        pnp.self_managed_io_cleanup,
        cb.EvtDeviceSelfManagedIoCleanup,
        handle,
        unit
    );
    device_callback!(
        pnp.surprise_removal,
        cb.EvtDeviceSurpriseRemoval,
        handle,
        unit
    );
    device_callback!(pnp.query_remove, cb.EvtDeviceQueryRemove, handle, status);
    device_callback!(pnp.query_stop, cb.EvtDeviceQueryStop, handle, status);
    if let Some(f) = cb.EvtDeviceRelationsQuery {
        pnp.relations_query = Some(Arc::new(move |_, relation| {
            // SAFETY: see above.
            unsafe { f(handle as WDFDEVICE, relation_type(relation)) }
        }));
    }
    if let Some(f) = cb.EvtDeviceUsageNotificationEx {
        pnp.usage_notification_ex = Some(Arc::new(move |_, kind, in_path| {
            // SAFETY: see above.
            Status(unsafe { f(handle as WDFDEVICE, special_file(kind), u8::from(in_path)) })
        }));
    } else if let Some(f) = cb.EvtDeviceUsageNotification {
        // The older callback cannot veto: kmdf-sim's Ex form succeeds after it.
        pnp.usage_notification_ex = Some(Arc::new(move |_, kind, in_path| {
            // SAFETY: see above.
            unsafe { f(handle as WDFDEVICE, special_file(kind), u8::from(in_path)) };
            Status::SUCCESS
        }));
    }
}

/// The driver's power-policy callbacks as kmdf-sim's.
fn apply_policy(init: &mut DeviceInit, cb: &WDF_POWER_POLICY_EVENT_CALLBACKS, handle: Handle) {
    let policy = &mut init.power_policy;
    // Each closure calls one of the driver's `EVT_WDF_DEVICE_*WAKE*` callbacks with the
    // WDFDEVICE being created (alive while kmdf-sim calls its callbacks).
    device_callback!(
        policy.arm_wake_from_s0,
        cb.EvtDeviceArmWakeFromS0,
        handle,
        status
    );
    device_callback!(
        policy.disarm_wake_from_s0,
        cb.EvtDeviceDisarmWakeFromS0,
        handle,
        unit
    );
    device_callback!(
        policy.wake_from_s0_triggered,
        cb.EvtDeviceWakeFromS0Triggered,
        handle,
        unit
    );
    device_callback!(
        policy.arm_wake_from_sx,
        cb.EvtDeviceArmWakeFromSx,
        handle,
        status
    );
    if let Some(f) = cb.EvtDeviceArmWakeFromSxWithReason {
        policy.arm_wake_from_sx_with_reason = Some(Arc::new(move |_, wake, children| {
            // SAFETY: see above.
            Status(unsafe { f(handle as WDFDEVICE, u8::from(wake), u8::from(children)) })
        }));
    }
    device_callback!(
        policy.disarm_wake_from_sx,
        cb.EvtDeviceDisarmWakeFromSx,
        handle,
        unit
    );
    device_callback!(
        policy.wake_from_sx_triggered,
        cb.EvtDeviceWakeFromSxTriggered,
        handle,
        unit
    );
}

/// The `WDFCMRESLIST` the hardware callbacks receive: NULL (module documentation).
fn no_resources() -> WDFCMRESLIST {
    core::ptr::null_mut()
}

/// `WdfDeviceCreate`: creates the `WDFDEVICE` (context and callbacks from `DeviceAttributes`)
/// from the init, applies what the init collected, and sets `*DeviceInit` to NULL.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a NULL `DeviceInit`, `*DeviceInit` or `Device`;
/// `STATUS_INFO_LENGTH_MISMATCH` for attributes of the wrong size;
/// `STATUS_WDF_PARENT_ASSIGNMENT_NOT_ALLOWED` for attributes naming a parent; kmdf-sim's
/// `Device::create` errors (`STATUS_INSUFFICIENT_RESOURCES` by fault injection,
/// `STATUS_OBJECT_NAME_COLLISION` for a control device's name in use).
extern "win64" fn wdf_device_create(
    _globals: PWDF_DRIVER_GLOBALS,
    device_init: *mut PWDFDEVICE_INIT,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    device_out: *mut WDFDEVICE,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfDeviceCreate";
    guard(ROUTINE, || {
        if device_init.is_null() || device_out.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        // SAFETY: the driver's `PWDFDEVICE_INIT*` (checked non-null).
        let init = unsafe { device_init.read() };
        if init.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        let state = open_init(init, ROUTINE);
        // SAFETY: the routine's contract: null or the driver's attributes for the call.
        let attributes = match unsafe { Attributes::read(attributes) } {
            Ok(a) => a,
            Err(status) => return status.0,
        };
        if attributes.as_ref().is_some_and(|a| a.parent.is_some()) {
            return STATUS_WDF_PARENT_ASSIGNMENT_NOT_ALLOWED;
        }
        let host = driver_of(state.driver, ROUTINE);
        let pending = match objects::begin("WDFDEVICE", attributes) {
            Ok(p) => p,
            Err(status) => return status.0,
        };
        let handle = pending.handle();
        let (pnp, policy, file) = (state.pnp, state.policy, state.file);
        let request_attributes = state.request_attributes;
        let sim_init = state.sim();
        if let Some(cb) = pnp.as_ref() {
            apply_pnp(sim_init, cb, handle);
        }
        if let Some(cb) = policy.as_ref() {
            apply_policy(sim_init, cb, handle);
        }
        let (file_config, file_attributes) = file.map_or((None, None), |(c, a)| (Some(c), a));
        kmdf_sim::io::set_file_object_config(
            sim_init,
            fileobject::file_config(handle, file_config.as_ref(), file_attributes),
        );
        let attrs = pending.sim_attributes(ROUTINE, None);
        let sim = match Device::create(sim_init, attrs) {
            Ok(d) => d,
            Err(status) => return status.0,
        };
        pending.finish(
            sim.object().clone(),
            DevicePayload {
                sim,
                driver: host,
                request_attributes,
            },
        );
        state.consumed = true;
        if state.owned.is_some() {
            free_control_init(init.cast());
        }
        // SAFETY: the driver's out parameters (checked non-null above).
        unsafe {
            device_init.write(core::ptr::null_mut());
            device_out.write(handle as WDFDEVICE);
        }
        STATUS_SUCCESS
    })
}

/// The host state of the `WDFDRIVER` `handle`.
fn driver_of(handle: Handle, routine: &str) -> Arc<HostDriver> {
    let object = objects::expect_kind(handle, "WDFDRIVER", routine);
    object
        .payload::<Arc<HostDriver>>()
        .cloned()
        .unwrap_or_else(|| {
            stop(Stop {
                message: format!("kmdf-host: {routine}: the WDFDRIVER has no driver state"),
                wdf_function: None,
            })
        })
}

/// `WdfControlFinishInitializing`: the control device accepts I/O.
extern "win64" fn wdf_control_finish_initializing(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
) {
    guard("WdfControlFinishInitializing", || {
        let object = device_of(device as usize, "WdfControlFinishInitializing");
        payload_of(&object).sim.finish_initializing();
    });
}

/// `WdfDeviceCreateSymbolicLink`.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a NULL name; kmdf-sim's (`STATUS_INVALID_DEVICE_STATE`
/// for an unnamed device, `STATUS_OBJECT_NAME_COLLISION`, …).
extern "win64" fn wdf_device_create_symbolic_link(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    name: PCUNICODE_STRING,
) -> NTSTATUS {
    guard("WdfDeviceCreateSymbolicLink", || {
        let object = device_of(device as usize, "WdfDeviceCreateSymbolicLink");
        // SAFETY: the routine's contract: the driver's UNICODE_STRING.
        let Some(link) = (unsafe { UnicodeString::read(name.cast()) }) else {
            return Status::INVALID_PARAMETER.0;
        };
        match payload_of(&object).sim.create_symbolic_link(&link) {
            Ok(()) => STATUS_SUCCESS,
            Err(status) => status.0,
        }
    })
}

/// The GUID at `p` as kmdf-sim's.
///
/// # Safety
/// `p` is null or points to a readable `GUID`.
pub(crate) unsafe fn guid_at(p: *const GUID) -> Option<Guid> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller's contract.
    let g = unsafe { p.read_unaligned() };
    Some(Guid::new(g.Data1, g.Data2, g.Data3, g.Data4))
}

/// The optional reference string of an interface call.
///
/// # Safety
/// `p` is null or points to a readable `UNICODE_STRING`.
unsafe fn reference_at(p: PCUNICODE_STRING) -> Option<String> {
    // SAFETY: the caller's contract.
    unsafe { UnicodeString::read(p.cast()) }
}

/// `WdfDeviceCreateDeviceInterface`: registered with kmdf-sim, enabled when the stack starts.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a NULL GUID; kmdf-sim's (`STATUS_INVALID_PARAMETER`
/// for a second registration of the same class and reference string,
/// `STATUS_INVALID_DEVICE_REQUEST` on a control device).
extern "win64" fn wdf_device_create_device_interface(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    class: *const GUID,
    reference: PCUNICODE_STRING,
) -> NTSTATUS {
    guard("WdfDeviceCreateDeviceInterface", || {
        let object = device_of(device as usize, "WdfDeviceCreateDeviceInterface");
        // SAFETY: the routine's contract: the driver's GUID and optional string.
        let (Some(class), reference) = (unsafe { guid_at(class) }, unsafe {
            reference_at(reference)
        }) else {
            return Status::INVALID_PARAMETER.0;
        };
        match payload_of(&object)
            .sim
            .create_interface(class, reference.as_deref())
        {
            Ok(_) => STATUS_SUCCESS,
            Err(status) => status.0,
        }
    })
}

/// `WdfDeviceSetDeviceInterfaceState`. An interface the device did not register is a driver
/// bug KMDF only traces; the host ignores the call too.
extern "win64" fn wdf_device_set_device_interface_state(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    class: *const GUID,
    reference: PCUNICODE_STRING,
    enable: BOOLEAN,
) {
    guard("WdfDeviceSetDeviceInterfaceState", || {
        let object = device_of(device as usize, "WdfDeviceSetDeviceInterfaceState");
        // SAFETY: the routine's contract: the driver's GUID and optional string.
        let (Some(class), reference) = (unsafe { guid_at(class) }, unsafe {
            reference_at(reference)
        }) else {
            return;
        };
        let _ =
            payload_of(&object)
                .sim
                .set_interface_state(class, reference.as_deref(), enable != 0);
    });
}

/// The symbolic link of `device`'s interface (`class`, `reference`), enabled or not.
fn interface_link(device: &Device, class: Guid, reference: Option<&str>) -> Option<String> {
    let machine = device.machine()?;
    let links = device.interfaces();
    // An enabled interface is known by its link; a disabled one is found by registering it
    // again, which kmdf-sim refuses for a registered (class, reference) pair: only compare.
    links.into_iter().find(|link| {
        find_interface(&machine, link).map_or_else(
            || link_matches(link, class, reference),
            |info| info.class == class && info.reference.as_deref() == reference,
        )
    })
}

/// Whether `link` names an interface of `class` with `reference` (kmdf-sim's link format:
/// `…#{class}` with `\reference` appended).
fn link_matches(link: &str, class: Guid, reference: Option<&str>) -> bool {
    let class_text = format!("#{class}").to_ascii_lowercase();
    let lower = link.to_ascii_lowercase();
    match reference {
        Some(r) => lower.ends_with(&format!("{class_text}\\{}", r.to_ascii_lowercase())),
        None => lower.ends_with(&class_text),
    }
}

/// `WdfDeviceRetrieveDeviceInterfaceString`: the interface's symbolic link, into a `WDFSTRING`.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a NULL GUID; `STATUS_INVALID_DEVICE_REQUEST` when the
/// device registered no such interface (KMDF's answer).
extern "win64" fn wdf_device_retrieve_device_interface_string(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    class: *const GUID,
    reference: PCUNICODE_STRING,
    string: WDFSTRING,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfDeviceRetrieveDeviceInterfaceString";
    guard(ROUTINE, || {
        let object = device_of(device as usize, ROUTINE);
        let target = objects::expect_kind(string as usize, "WDFSTRING", ROUTINE);
        // SAFETY: the routine's contract: the driver's GUID and optional string.
        let (Some(class), reference) = (unsafe { guid_at(class) }, unsafe {
            reference_at(reference)
        }) else {
            return Status::INVALID_PARAMETER.0;
        };
        match interface_link(&payload_of(&object).sim, class, reference.as_deref()) {
            Some(link) => string::assign(&target, &link).map_or_else(|s| s.0, |()| STATUS_SUCCESS),
            None => Status::INVALID_DEVICE_REQUEST.0,
        }
    })
}

/// `WdfDeviceGetDefaultQueue`: the queue created with `DefaultQueue = TRUE`, or NULL.
extern "win64" fn wdf_device_get_default_queue(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
) -> WDFQUEUE {
    guard("WdfDeviceGetDefaultQueue", || {
        let object = device_of(device as usize, "WdfDeviceGetDefaultQueue");
        payload_of(&object)
            .sim
            .default_queue()
            .and_then(|q| objects::of_sim(q.object()))
            .map_or(core::ptr::null_mut(), |q| q.as_handle())
    })
}

/// `WdfDeviceGetIoTarget`: the device's local I/O target (the next lower driver), as a
/// `WDFIOTARGET` (the I/O target layer wraps kmdf-sim's).
extern "win64" fn wdf_device_get_io_target(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
) -> WDFIOTARGET {
    guard("WdfDeviceGetIoTarget", || {
        let object = device_of(device as usize, "WdfDeviceGetIoTarget");
        super::target::default_target_of(&object) as WDFIOTARGET
    })
}

/// `WdfDeviceGetDriver`.
extern "win64" fn wdf_device_get_driver(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
) -> WDFDRIVER {
    guard("WdfDeviceGetDriver", || {
        let object = device_of(device as usize, "WdfDeviceGetDriver");
        payload_of(&object).driver.handle as WDFDRIVER
    })
}

/// `WdfDeviceGetSystemPowerAction`.
extern "win64" fn wdf_device_get_system_power_action(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
) -> super::bindings::POWER_ACTION::Type {
    guard("WdfDeviceGetSystemPowerAction", || {
        let object = device_of(device as usize, "WdfDeviceGetSystemPowerAction");
        power_action(payload_of(&object).sim.system_power_action())
    })
}

/// `WdfDeviceWdmGetDeviceObject`: a zeroed `DEVICE_OBJECT`-sized block, one per device, valid
/// while the device lives (the host has no WDM device objects).
extern "win64" fn wdf_device_wdm_get_device_object(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
) -> PDEVICE_OBJECT {
    guard("WdfDeviceWdmGetDeviceObject", || {
        let object = device_of(device as usize, "WdfDeviceWdmGetDeviceObject");
        let extras = payload_of(&object).sim.extension(HostDeviceExtras::default);
        let block = extras
            .wdm
            .get_or_init(|| vec![0_u64; size_of::<_DEVICE_OBJECT>().div_ceil(8)].into());
        block.as_ptr().cast_mut().cast()
    })
}

/// `WdfDeviceAssignS0IdleSettings`: the idle capability, Dx state and timeout (`Enabled =
/// WdfFalse` turns automatic idling off).
///
/// Errors: `STATUS_INFO_LENGTH_MISMATCH` for a settings `Size` other than KMDF 1.33's;
/// `STATUS_INVALID_PARAMETER` for NULL settings or a Dx state that is not D1–D3;
/// `STATUS_INVALID_DEVICE_REQUEST` on a device that is not the power policy owner.
extern "win64" fn wdf_device_assign_s0_idle_settings(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    settings: PWDF_DEVICE_POWER_POLICY_IDLE_SETTINGS,
) -> NTSTATUS {
    guard("WdfDeviceAssignS0IdleSettings", || {
        let object = device_of(device as usize, "WdfDeviceAssignS0IdleSettings");
        if settings.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        // SAFETY: the routine's contract: the driver's settings for the call.
        let s: WDF_DEVICE_POWER_POLICY_IDLE_SETTINGS = unsafe { settings.read_unaligned() };
        if s.Size as usize != size_of::<WDF_DEVICE_POWER_POLICY_IDLE_SETTINGS>() {
            return STATUS_INFO_LENGTH_MISMATCH;
        }
        let sim = &payload_of(&object).sim;
        if !sim.is_power_policy_owner() {
            return Status::INVALID_DEVICE_REQUEST.0;
        }
        let dx_state = if s.DxState == PowerDeviceD1 {
            DevicePowerState::D1
        } else if s.DxState == PowerDeviceD2 {
            DevicePowerState::D2
        } else if s.DxState == PowerDeviceD3 || s.DxState == PowerDeviceMaximum {
            // PowerDeviceMaximum: "the framework uses the deepest state the device supports".
            DevicePowerState::D3
        } else {
            return Status::INVALID_PARAMETER.0;
        };
        sim.assign_s0_idle_settings(S0IdleSettings {
            can_wake: s.IdleCaps == IdleCanWakeFromS0 || s.IdleCaps == IdleUsbSelectiveSuspend,
            dx_state,
        });
        let timeout = (s.Enabled != WdfFalse).then(|| {
            // IdleTimeout 0 (IdleTimeoutDefaultValue): KMDF's default of five seconds.
            let ms = if s.IdleTimeout == 0 {
                5000
            } else {
                s.IdleTimeout
            };
            core::time::Duration::from_millis(u64::from(ms))
        });
        sim.assign_s0_idle_timeout(timeout);
        STATUS_SUCCESS
    })
}

/// `WdfDeviceAssignSxWakeSettings`: arm for wake from Sx (`Enabled != WdfFalse`).
///
/// Errors: `STATUS_INFO_LENGTH_MISMATCH`; `STATUS_INVALID_PARAMETER` for NULL settings;
/// `STATUS_INVALID_DEVICE_REQUEST` on a device that is not the power policy owner.
extern "win64" fn wdf_device_assign_sx_wake_settings(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    settings: PWDF_DEVICE_POWER_POLICY_WAKE_SETTINGS,
) -> NTSTATUS {
    guard("WdfDeviceAssignSxWakeSettings", || {
        let object = device_of(device as usize, "WdfDeviceAssignSxWakeSettings");
        if settings.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        // SAFETY: the routine's contract: the driver's settings for the call.
        let s: WDF_DEVICE_POWER_POLICY_WAKE_SETTINGS = unsafe { settings.read_unaligned() };
        if s.Size as usize != size_of::<WDF_DEVICE_POWER_POLICY_WAKE_SETTINGS>() {
            return STATUS_INFO_LENGTH_MISMATCH;
        }
        let sim = &payload_of(&object).sim;
        if !sim.is_power_policy_owner() {
            return Status::INVALID_DEVICE_REQUEST.0;
        }
        sim.assign_sx_wake_settings(s.Enabled != WdfFalse);
        STATUS_SUCCESS
    })
}

fn stop_idle(device: WDFDEVICE, routine: &str) -> NTSTATUS {
    let object = device_of(device as usize, routine);
    match payload_of(&object).sim.stop_idle() {
        Ok(()) => STATUS_SUCCESS,
        Err(status) => status.0,
    }
}

fn resume_idle(device: WDFDEVICE, routine: &str) {
    let object = device_of(device as usize, routine);
    payload_of(&object).sim.resume_idle();
}

/// `WdfDeviceStopIdleNoTrack` (`WdfDeviceStopIdle` without reference tracking): a power
/// reference; the device returns to D0 if it idles (kmdf-sim brings it back before returning
/// when called at `PASSIVE_LEVEL`, so `WaitForD0` needs nothing more).
///
/// Errors: `STATUS_INVALID_DEVICE_STATE` for a deleted device or one without a node.
extern "win64" fn wdf_device_stop_idle_no_track(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    _wait_for_d0: BOOLEAN,
) -> NTSTATUS {
    guard("WdfDeviceStopIdleNoTrack", || {
        stop_idle(device, "WdfDeviceStopIdleNoTrack")
    })
}

/// `WdfDeviceResumeIdleNoTrack`.
extern "win64" fn wdf_device_resume_idle_no_track(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
) {
    guard("WdfDeviceResumeIdleNoTrack", || {
        resume_idle(device, "WdfDeviceResumeIdleNoTrack");
    });
}

/// `WdfDeviceStopIdleActual` (`WdfDeviceStopIdle`): as `WdfDeviceStopIdleNoTrack`; the tag,
/// line and file are not tracked.
extern "win64" fn wdf_device_stop_idle_actual(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    _wait_for_d0: BOOLEAN,
    _tag: PVOID,
    _line: LONG,
    _file: PCCH,
) -> NTSTATUS {
    guard("WdfDeviceStopIdleActual", || {
        stop_idle(device, "WdfDeviceStopIdleActual")
    })
}

/// `WdfDeviceResumeIdleActual` (`WdfDeviceResumeIdle`).
extern "win64" fn wdf_device_resume_idle_actual(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    _tag: PVOID,
    _line: LONG,
    _file: PCCH,
) {
    guard("WdfDeviceResumeIdleActual", || {
        resume_idle(device, "WdfDeviceResumeIdleActual");
    });
}

/// `WdfDeviceSetFailed`.
extern "win64" fn wdf_device_set_failed(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    action: WDF_DEVICE_FAILED_ACTION,
) {
    guard("WdfDeviceSetFailed", || {
        let object = device_of(device as usize, "WdfDeviceSetFailed");
        let action = if action == WdfDeviceFailedAttemptRestart {
            FailedAction::AttemptRestart
        } else {
            FailedAction::NoRestart
        };
        payload_of(&object).sim.set_failed(action);
    });
}

/// A host-owned init (`WdfPdoInitAllocate`): registered like a control init, freed by
/// `WdfDeviceCreate` (which consumes it) or `WdfDeviceInitFree`.
pub(crate) fn allocate_owned_init(sim: DeviceInit, driver: Handle) -> PWDFDEVICE_INIT {
    let mut owned = Box::new(sim);
    let mut state = Box::new(InitState::new(&raw mut *owned, driver));
    state.owned = Some(owned);
    let p = Box::into_raw(state);
    register_init(p);
    p.cast()
}

/// The kmdf-sim init behind the live, unconsumed init `p`, or a stop naming `routine`.
pub(crate) fn sim_init_of<'a>(p: PWDFDEVICE_INIT, routine: &str) -> &'a mut DeviceInit {
    let state: &'a mut InitState = open_init(p, routine);
    // SAFETY: as `InitState::sim`: the init is registered (checked), so `sim` is live.
    unsafe { &mut *state.sim }
}

/// A test driver written against the C ABI (as an image is), for the unit tests of the device,
/// lock, timer, work item, string, collection and registry functions: it calls the host through
/// its function table, on a machine of its own.
#[cfg(test)]
pub(crate) mod testing {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::{Mutex, PoisonError};

    use kmdf_sim::pnp::{DeviceNode, StackSpec};
    use kmdf_sim::{ClockMode, Machine, VerifierMode};

    use super::super::bindings::status::STATUS_SUCCESS;
    use super::super::bindings::{
        NTSTATUS, PFN_WDFDEVICECREATE, PFN_WDFDRIVERCREATE, PWDFDEVICE_INIT, PWDF_DRIVER_GLOBALS,
        WDFDEVICE, WDFDRIVER, WDFOBJECT, WDF_DRIVER_CONFIG, WDF_OBJECT_ATTRIBUTES,
    };
    use crate::host::{DriverObject, UnicodeString};
    use crate::wdfldr::WdfDriverGlobals;

    /// What a test driver's `EvtDriverDeviceAdd` does.
    pub(crate) type DeviceAdd = fn(PWDF_DRIVER_GLOBALS, WDFDRIVER, PWDFDEVICE_INIT) -> NTSTATUS;

    /// The host's implementation of `name`, as the driver's function table gives it.
    pub(crate) fn wdf<T: Copy>(name: &str) -> T {
        let address = super::super::implemented()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map_or_else(|| panic!("{name} is not implemented"), |(_, a)| a);
        assert_eq!(size_of::<T>(), size_of::<usize>());
        // SAFETY: `T` is the `PFN_` type of `name` (an `Option` of a function pointer) and
        // `address` the host's implementation of that type.
        unsafe { core::mem::transmute_copy::<usize, T>(&address) }
    }

    /// `WDF_OBJECT_ATTRIBUTES_INIT`, with `parent`.
    pub(crate) fn attributes(parent: Option<usize>) -> WDF_OBJECT_ATTRIBUTES {
        // SAFETY: plain data; all-zero is valid and WDF_OBJECT_ATTRIBUTES_INIT fills it.
        let mut a: WDF_OBJECT_ATTRIBUTES = unsafe { core::mem::zeroed() };
        a.Size = u32::try_from(size_of::<WDF_OBJECT_ATTRIBUTES>()).unwrap();
        a.ExecutionLevel =
            super::super::bindings::_WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent;
        a.SynchronizationScope =
            super::super::bindings::_WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent;
        a.ParentObject = parent.map_or(core::ptr::null_mut(), |p| p as WDFOBJECT);
        a
    }

    /// The driver's `EvtDriverDeviceAdd` per WDFDRIVER.
    static ADDS: Mutex<Option<HashMap<usize, (usize, DeviceAdd)>>> = Mutex::new(None);

    thread_local! {
        static LOADING: RefCell<Option<(usize, DeviceAdd)>> = const { RefCell::new(None) };
    }

    /// `WdfDeviceCreate` with no attributes: the default `EvtDriverDeviceAdd`.
    pub(crate) fn create_device(
        globals: PWDF_DRIVER_GLOBALS,
        _driver: WDFDRIVER,
        init: PWDFDEVICE_INIT,
    ) -> NTSTATUS {
        let create: PFN_WDFDEVICECREATE = wdf("WdfDeviceCreate");
        let mut init = init;
        let mut device: WDFDEVICE = core::ptr::null_mut();
        // SAFETY: live locals; the init of this device add.
        unsafe {
            create.unwrap()(
                globals,
                &raw mut init,
                core::ptr::null_mut(),
                &raw mut device,
            )
        }
    }

    extern "win64" fn device_add(driver: WDFDRIVER, init: PWDFDEVICE_INIT) -> NTSTATUS {
        let entry = ADDS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|m| m.get(&(driver as usize)).copied());
        entry.map_or(STATUS_SUCCESS, |(globals, add)| {
            add(globals as PWDF_DRIVER_GLOBALS, driver, init)
        })
    }

    extern "win64" fn driver_entry(object: *mut DriverObject, path: *mut UnicodeString) -> i32 {
        let (globals, add) = LOADING.with(|l| l.borrow().expect("a test driver is loading"));
        let create: PFN_WDFDRIVERCREATE = wdf("WdfDriverCreate");
        // SAFETY: plain data (WDF_DRIVER_CONFIG_INIT zeroes it first).
        let mut config: WDF_DRIVER_CONFIG = unsafe { core::mem::zeroed() };
        config.Size = u32::try_from(size_of::<WDF_DRIVER_CONFIG>()).unwrap();
        config.EvtDriverDeviceAdd = Some(device_add);
        let mut driver: WDFDRIVER = core::ptr::null_mut();
        // SAFETY: live locals and the entry point's own arguments.
        let status = unsafe {
            create.unwrap()(
                globals as PWDF_DRIVER_GLOBALS,
                object.cast(),
                path.cast(),
                core::ptr::null_mut(),
                &raw mut config,
                &raw mut driver,
            )
        };
        if status >= 0 {
            ADDS.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(HashMap::new)
                .insert(driver as usize, (globals, add));
        }
        status
    }

    /// A loaded test driver.
    pub(crate) struct TestDriver {
        /// Its machine (Manual clock, verifier recording).
        pub(crate) machine: Machine,
        /// The globals it was bound with.
        pub(crate) globals: PWDF_DRIVER_GLOBALS,
        /// Its WDFDRIVER.
        pub(crate) driver: usize,
        /// Its service name.
        pub(crate) service: String,
    }

    impl TestDriver {
        /// Installs and loads the test driver `service` (on the calling thread, which it binds
        /// to the machine for the caller's `machine.enter()`).
        pub(crate) fn load(service: &str, add: DeviceAdd) -> TestDriver {
            let globals = Box::into_raw(Box::new(WdfDriverGlobals {
                driver: core::ptr::null_mut(),
                driver_flags: 0,
                driver_tag: 0,
                driver_name: [0; 32],
                displace_driver_unload: 0,
            }));
            let machine = Machine::builder()
                .clock(ClockMode::Manual)
                .verifier(VerifierMode::Record)
                .build();
            // SAFETY: DRIVER_OBJECT is plain data for the host; zero is a valid start.
            let object: *mut DriverObject = Box::into_raw(Box::new(unsafe { core::mem::zeroed() }));
            let text: &'static mut [u16] = Box::leak(
                format!("\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\{service}")
                    .encode_utf16()
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            );
            let bytes = u16::try_from(text.len() * 2).unwrap();
            let path = Box::into_raw(Box::new(UnicodeString {
                length: bytes,
                maximum_length: bytes,
                buffer: text.as_mut_ptr(),
            }));
            super::super::driver::install(&machine, service, driver_entry, object, path);
            LOADING.with(|l| *l.borrow_mut() = Some((globals as usize, add)));
            {
                let _bound = machine.enter();
                kmdf_sim::driver::Driver::load_installed(&machine, service)
                    .expect("the test driver's DriverEntry succeeds");
            }
            LOADING.with(|l| l.borrow_mut().take());
            // SAFETY: the allocation above, filled by WdfDriverCreate.
            let driver = unsafe { (*globals).driver } as usize;
            TestDriver {
                machine,
                globals: globals.cast(),
                driver,
                service: service.to_owned(),
            }
        }

        /// Plugs in a root-enumerated node driven by this driver: the node and its WDFDEVICE.
        pub(crate) fn plug_in(&self) -> (DeviceNode, usize) {
            let _bound = self.machine.enter();
            let node = self
                .machine
                .pnp()
                .plug_in(StackSpec::new(
                    &format!("ROOT\\{}", self.service.to_ascii_uppercase()),
                    &self.service,
                ))
                .expect("the test node starts");
            let device = node
                .device(&self.service)
                .and_then(|d| super::super::objects::of_sim(d.object()))
                .expect("the test driver created a WDFDEVICE")
                .handle();
            (node, device)
        }
    }
}

#[cfg(test)]
mod tests {
    use core::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use kmdf_sim::pnp::NodeState;

    use super::super::bindings::status::STATUS_INVALID_DEVICE_REQUEST;
    use super::super::bindings::{
        PFN_WDFSTRINGCREATE, PFN_WDFSTRINGGETUNICODESTRING, WDFOBJECT, WDF_OBJECT_CONTEXT_TYPE_INFO,
    };
    use super::testing::{attributes, create_device, wdf, TestDriver};
    use super::*;

    #[test]
    fn the_structures_have_their_kmdf_1_33_x64_sizes() {
        assert_eq!(size_of::<WDF_PNPPOWER_EVENT_CALLBACKS>(), 8 + 17 * 8);
        assert_eq!(size_of::<WDF_POWER_POLICY_EVENT_CALLBACKS>(), 8 + 7 * 8);
        assert_eq!(size_of::<WDF_FILEOBJECT_CONFIG>(), 40);
        assert_eq!(size_of::<WDF_DEVICE_POWER_POLICY_IDLE_SETTINGS>(), 36);
        assert_eq!(size_of::<WDF_DEVICE_POWER_POLICY_WAKE_SETTINGS>(), 20);
        assert_eq!(size_of::<_DEVICE_OBJECT>(), 328);
        assert_eq!(size_of::<GUID>(), 16);
        assert_eq!(size_of::<UNICODE_STRING>(), 16);
    }

    #[test]
    fn kmdf_sim_values_map_to_the_headers_enumerators() {
        assert_eq!(
            power_state(WdfPowerDeviceState::D3Final),
            WdfPowerDeviceD3Final
        );
        assert_eq!(power_state(WdfPowerDeviceState::D0), WdfPowerDeviceD0);
        assert_eq!(
            power_action(SystemPowerAction::Hibernate),
            PowerActionHibernate
        );
        assert_eq!(relation_type(RelationType::Removal), RemovalRelations);
        assert_eq!(special_file(SpecialFileType::Dump), WdfSpecialFileDump);
        let class = Guid::new(0x1234_5678, 0x9abc, 0xdef0, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(link_matches(
            &format!("\\??\\ROOT#X#0000#{class}"),
            class,
            None
        ));
        assert!(link_matches(
            &format!("\\??\\ROOT#X#0000#{class}\\Ref"),
            class,
            Some("ref")
        ));
        assert!(!link_matches(
            &format!("\\??\\ROOT#X#0000#{class}"),
            class,
            Some("ref")
        ));
    }

    static CALLS: Mutex<Vec<String>> = Mutex::new(Vec::new());
    static CONTEXT: AtomicUsize = AtomicUsize::new(0);
    static STATUSES: Mutex<Vec<i32>> = Mutex::new(Vec::new());

    fn call(text: &str) {
        CALLS.lock().unwrap().push(text.to_owned());
    }

    struct TypeInfo(WDF_OBJECT_CONTEXT_TYPE_INFO);
    // SAFETY: read-only; its pointers are to statics.
    unsafe impl Sync for TypeInfo {}
    static DEVICE_CONTEXT: TypeInfo = TypeInfo(WDF_OBJECT_CONTEXT_TYPE_INFO {
        Size: size_of::<WDF_OBJECT_CONTEXT_TYPE_INFO>() as u32,
        ContextName: c"DEVICE_CONTEXT".as_ptr(),
        ContextSize: 24,
        UniqueType: &raw const DEVICE_CONTEXT.0,
        EvtDriverGetUniqueContextType: None,
    });

    static CLASS: GUID = GUID {
        Data1: 0x5f3a_0c1e,
        Data2: 0x1d2b,
        Data3: 0x4c5d,
        Data4: [0x8e, 0x9f, 0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5],
    };

    extern "win64" fn prepare(_d: WDFDEVICE, raw: WDFCMRESLIST, translated: WDFCMRESLIST) -> i32 {
        assert!(raw.is_null() && translated.is_null());
        call("PrepareHardware");
        STATUS_SUCCESS
    }
    extern "win64" fn release(_d: WDFDEVICE, _t: WDFCMRESLIST) -> i32 {
        call("ReleaseHardware");
        STATUS_SUCCESS
    }
    extern "win64" fn d0_entry(_d: WDFDEVICE, previous: WDF_POWER_DEVICE_STATE) -> i32 {
        call(&format!("D0Entry({previous})"));
        STATUS_SUCCESS
    }
    extern "win64" fn d0_exit(_d: WDFDEVICE, target: WDF_POWER_DEVICE_STATE) -> i32 {
        call(&format!("D0Exit({target})"));
        STATUS_SUCCESS
    }
    extern "win64" fn smio_init(_d: WDFDEVICE) -> i32 {
        call("SelfManagedIoInit");
        STATUS_SUCCESS
    }
    extern "win64" fn smio_cleanup(_d: WDFDEVICE) {
        call("SelfManagedIoCleanup");
    }
    extern "win64" fn device_cleanup(_o: WDFOBJECT) {
        call("EvtCleanupCallback");
    }

    /// `EvtDriverDeviceAdd` of the life-cycle test: callbacks, a context, an interface, and the
    /// error statuses of the init and device functions.
    #[allow(
        clippy::too_many_lines,
        reason = "one driver routine, step by step, as a C driver's"
    )]
    fn add_with_callbacks(
        globals: PWDF_DRIVER_GLOBALS,
        _driver: WDFDRIVER,
        init: PWDFDEVICE_INIT,
    ) -> NTSTATUS {
        // SAFETY: plain data (WDF_PNPPOWER_EVENT_CALLBACKS_INIT zeroes it).
        let mut pnp: WDF_PNPPOWER_EVENT_CALLBACKS = unsafe { core::mem::zeroed() };
        pnp.Size = size_of::<WDF_PNPPOWER_EVENT_CALLBACKS>() as u32;
        pnp.EvtDevicePrepareHardware = Some(prepare);
        pnp.EvtDeviceReleaseHardware = Some(release);
        pnp.EvtDeviceD0Entry = Some(d0_entry);
        pnp.EvtDeviceD0Exit = Some(d0_exit);
        pnp.EvtDeviceSelfManagedIoInit = Some(smio_init);
        pnp.EvtDeviceSelfManagedIoCleanup = Some(smio_cleanup);
        wdf_device_init_set_pnp_power_event_callbacks(globals, init, &raw mut pnp);
        let mut statuses = Vec::new();
        // WdfDeviceInitAssignName(NULL) is refused.
        statuses.push(wdf_device_init_assign_name(
            globals,
            init,
            core::ptr::null(),
        ));
        // WdfDeviceCreate: NULL out pointer, attributes with a parent, of the wrong size.
        let mut p = init;
        statuses.push(wdf_device_create(
            globals,
            &raw mut p,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        ));
        let mut device: WDFDEVICE = core::ptr::null_mut();
        let mut attrs = attributes(Some(0x1234));
        statuses.push(wdf_device_create(
            globals,
            &raw mut p,
            &raw mut attrs,
            &raw mut device,
        ));
        let mut attrs = attributes(None);
        attrs.Size -= 8;
        statuses.push(wdf_device_create(
            globals,
            &raw mut p,
            &raw mut attrs,
            &raw mut device,
        ));
        let mut attrs = attributes(None);
        attrs.ContextTypeInfo = &raw const DEVICE_CONTEXT.0;
        attrs.EvtCleanupCallback = Some(device_cleanup);
        let status = wdf_device_create(globals, &raw mut p, &raw mut attrs, &raw mut device);
        assert_eq!(status, STATUS_SUCCESS);
        assert!(p.is_null(), "WdfDeviceCreate sets the init pointer to NULL");
        let object = objects::get(device as usize).unwrap();
        CONTEXT.store(
            object
                .context(DEVICE_CONTEXT.0.UniqueType as usize)
                .unwrap() as usize,
            Ordering::SeqCst,
        );
        // An interface, its string, and one the device did not register.
        assert_eq!(
            wdf_device_create_device_interface(
                globals,
                device,
                &raw const CLASS,
                core::ptr::null()
            ),
            STATUS_SUCCESS
        );
        let create: PFN_WDFSTRINGCREATE = wdf("WdfStringCreate");
        let mut string: WDFSTRING = core::ptr::null_mut();
        let mut string_attrs = attributes(Some(device as usize));
        // SAFETY: live locals.
        let status = unsafe {
            create.unwrap()(
                globals,
                core::ptr::null(),
                &raw mut string_attrs,
                &raw mut string,
            )
        };
        assert_eq!(status, STATUS_SUCCESS);
        assert_eq!(
            wdf_device_retrieve_device_interface_string(
                globals,
                device,
                &raw const CLASS,
                core::ptr::null(),
                string
            ),
            STATUS_SUCCESS
        );
        let get: PFN_WDFSTRINGGETUNICODESTRING = wdf("WdfStringGetUnicodeString");
        // SAFETY: plain data, filled by the call.
        let mut text: UNICODE_STRING = unsafe { core::mem::zeroed() };
        // SAFETY: live locals.
        unsafe { get.unwrap()(globals, string, &raw mut text) };
        // SAFETY: the WDFSTRING's buffer, valid while it lives.
        let link = unsafe { UnicodeString::read((&raw const text).cast()) }.unwrap();
        call(&format!("link {}", link.to_ascii_lowercase()));
        let mut other = CLASS;
        other.Data1 ^= 1;
        statuses.push(wdf_device_retrieve_device_interface_string(
            globals,
            device,
            &raw const other,
            core::ptr::null(),
            string,
        ));
        // The power policy owner may assign idle settings; a wrong Size is refused.
        // SAFETY: plain data.
        let mut idle: WDF_DEVICE_POWER_POLICY_IDLE_SETTINGS = unsafe { core::mem::zeroed() };
        idle.Size = 4;
        statuses.push(wdf_device_assign_s0_idle_settings(
            globals,
            device,
            &raw mut idle,
        ));
        // SAFETY: the test driver's globals, filled by WdfDriverCreate.
        let handle = unsafe { (*globals.cast::<crate::wdfldr::WdfDriverGlobals>()).driver };
        assert_eq!(wdf_device_get_driver(globals, device).cast(), handle);
        assert!(!wdf_device_wdm_get_device_object(globals, device).is_null());
        assert_eq!(
            wdf_device_get_system_power_action(globals, device),
            PowerActionNone
        );
        assert!(wdf_device_get_default_queue(globals, device).is_null());
        *STATUSES.lock().unwrap() = statuses;
        STATUS_SUCCESS
    }

    #[test]
    fn a_device_goes_through_add_start_and_removal_with_the_drivers_callbacks() {
        let driver = TestDriver::load("hdevlife", add_with_callbacks);
        let (node, device) = driver.plug_in();
        assert_eq!(node.state(), NodeState::Started);
        assert_eq!(
            *STATUSES.lock().unwrap(),
            [
                Status::INVALID_PARAMETER.0,
                Status::INVALID_PARAMETER.0,
                STATUS_WDF_PARENT_ASSIGNMENT_NOT_ALLOWED,
                STATUS_INFO_LENGTH_MISMATCH,
                STATUS_INVALID_DEVICE_REQUEST,
                STATUS_INFO_LENGTH_MISMATCH,
            ]
        );
        let context = CONTEXT.load(Ordering::SeqCst);
        assert!(context != 0 && context.is_multiple_of(16));
        let class = Guid::new(CLASS.Data1, CLASS.Data2, CLASS.Data3, CLASS.Data4);
        let link = kmdf_sim::interface::interfaces_of_class(&driver.machine, class);
        assert_eq!(link.len(), 1, "the interface is enabled at start");
        {
            let _bound = driver.machine.enter();
            node.remove().unwrap();
        }
        let calls = CALLS.lock().unwrap().clone();
        assert_eq!(
            calls,
            [
                format!("link {}", link[0].to_ascii_lowercase()),
                "PrepareHardware".to_owned(),
                format!("D0Entry({WdfPowerDeviceD3Final})"),
                "SelfManagedIoInit".to_owned(),
                format!("D0Exit({WdfPowerDeviceD3Final})"),
                "ReleaseHardware".to_owned(),
                "SelfManagedIoCleanup".to_owned(),
                "EvtCleanupCallback".to_owned(),
            ]
        );
        assert!(
            objects::get(device).is_none(),
            "the WDFDEVICE handle is retired"
        );
        assert_eq!(driver.machine.verdict().map(|_| ()), Ok(()));
    }

    #[test]
    fn a_control_device_init_is_allocated_created_and_freed() {
        let driver = TestDriver::load("hdevctl", create_device);
        let bound = driver.machine.enter();
        let g = driver.globals;
        let d = driver.driver as WDFDRIVER;
        let sddl: Vec<u16> = DeviceSecurity::Everyone.sddl().encode_utf16().collect();
        let bytes = u16::try_from(sddl.len() * 2).unwrap();
        let sddl = UNICODE_STRING {
            Length: bytes,
            MaximumLength: bytes,
            Buffer: sddl.as_ptr().cast_mut(),
        };
        // Another driver's handle gets no init.
        assert!(wdf_control_device_init_allocate(
            g,
            (driver.driver + 0x40) as WDFDRIVER,
            &raw const sddl
        )
        .is_null());
        // Freed without a device.
        let init = wdf_control_device_init_allocate(g, d, &raw const sddl);
        assert!(!init.is_null());
        wdf_device_init_free(g, init);
        // Named, created, finished, with a symbolic link.
        let mut init = wdf_control_device_init_allocate(g, d, &raw const sddl);
        let name: Vec<u16> = "\\Device\\HdevCtl".encode_utf16().collect();
        let name = UNICODE_STRING {
            Length: u16::try_from(name.len() * 2).unwrap(),
            MaximumLength: u16::try_from(name.len() * 2).unwrap(),
            Buffer: name.as_ptr().cast_mut(),
        };
        assert_eq!(
            wdf_device_init_assign_name(g, init, &raw const name),
            STATUS_SUCCESS
        );
        wdf_device_init_set_exclusive(g, init, 1);
        let mut device: WDFDEVICE = core::ptr::null_mut();
        assert_eq!(
            wdf_device_create(g, &raw mut init, core::ptr::null_mut(), &raw mut device),
            STATUS_SUCCESS
        );
        assert!(init.is_null());
        let link: Vec<u16> = "\\DosDevices\\HdevCtl".encode_utf16().collect();
        let link = UNICODE_STRING {
            Length: u16::try_from(link.len() * 2).unwrap(),
            MaximumLength: u16::try_from(link.len() * 2).unwrap(),
            Buffer: link.as_ptr().cast_mut(),
        };
        assert_eq!(
            wdf_device_create_symbolic_link(g, device, &raw const link),
            STATUS_SUCCESS
        );
        assert_eq!(
            wdf_device_create_symbolic_link(g, device, core::ptr::null()),
            Status::INVALID_PARAMETER.0
        );
        wdf_control_finish_initializing(g, device);
        let object = device_of(device as usize, "test");
        assert!(payload_of(&object).sim.is_control());
        assert!(
            payload_of(&object)
                .sim
                .extension(HostDeviceExtras::default)
                .exclusive
        );
        // A control device has no interfaces and no node to idle.
        assert_eq!(
            wdf_device_create_device_interface(g, device, &raw const CLASS, core::ptr::null()),
            Status::INVALID_DEVICE_REQUEST.0
        );
        assert_eq!(
            wdf_device_stop_idle_no_track(g, device, 0),
            Status::INVALID_DEVICE_STATE.0
        );
        let _ = object.sim().delete();
        drop(object);
        assert!(objects::get(device as usize).is_none());
        drop(bound);
        let loaded = kmdf_sim::driver::Driver::loaded(&driver.machine, "hdevctl").unwrap();
        {
            let _bound = driver.machine.enter();
            loaded.unload().unwrap();
        }
        assert_eq!(driver.machine.verdict().map(|_| ()), Ok(()));
    }
}
