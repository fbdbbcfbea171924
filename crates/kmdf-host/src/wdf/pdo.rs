//! Bus drivers: child PDOs on kmdf-sim's bus model (`kmdf_sim::pnp::bus`).
//!
//! `WdfPdoInitAllocate` hands the driver a host-owned `PWDFDEVICE_INIT` for kmdf-sim's
//! `DeviceInit::pdo` (registered like a control device's init, so the `WdfDeviceInit…` calls
//! and `WdfDeviceCreate` take it, and `WdfDeviceCreate` or `WdfDeviceInitFree` frees it); the
//! `WdfPdoInit…` calls fill in the child's identity, `WdfFdoAddStaticChild` reports the created
//! PDO, and the PnP manager enumerates it. `WdfPdoMarkMissing` and `WdfPdoRequestEject` are
//! kmdf-sim's `Device::pdo_mark_missing` and `Device::pdo_request_eject`.
//!
//! The static child list's iteration (`WdfFdoLockStaticChildListForIteration` …
//! `WdfFdoUnlockStaticChildListFromIteration`) walks the list as it was when the driver locked
//! it: KMDF defers changes made while the list is locked to the unlock, so the walk never sees a
//! child come or go; a retrieval outside a lock, or an unlock without a lock, stops the run
//! (KMDF's verifier breaks there).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use kmdf_sim::device::{
    Device, DeviceInit, PdoStatus, PnpCapabilities, PowerCapabilities, TriState,
};
use kmdf_sim::pnp::DevicePowerState;
use kmdf_sim::Status;

use super::bindings::status::STATUS_SUCCESS;
use super::bindings::_DEVICE_POWER_STATE::{
    PowerDeviceD0, PowerDeviceD1, PowerDeviceD2, PowerDeviceD3,
};
use super::bindings::_SYSTEM_POWER_STATE::PowerSystemWorking;
use super::bindings::_WDF_RETRIEVE_CHILD_FLAGS::{
    WdfRetrieveMissingChildren, WdfRetrievePendingChildren, WdfRetrievePresentChildren,
};
use super::bindings::_WDF_TRI_STATE::{WdfFalse, WdfTrue};
use super::bindings::{
    DEVICE_POWER_STATE, GUID, LCID, NTSTATUS, PCUNICODE_STRING, PWDFDEVICE_INIT,
    PWDF_DEVICE_PNP_CAPABILITIES, PWDF_DEVICE_POWER_CAPABILITIES, PWDF_DRIVER_GLOBALS, ULONG,
    WDFDEVICE, WDF_DEVICE_PNP_CAPABILITIES, WDF_DEVICE_POWER_CAPABILITIES, WDF_TRI_STATE,
};
use super::device::{allocate_owned_init, device_of, guid_at, payload_of, read_sized, sim_init_of};
use super::objects::{self, Handle};
use super::wdf_exports;
use crate::host::{guard, stop, Stop, UnicodeString};

wdf_exports! {
    WdfPdoInitAllocate => wdf_pdo_init_allocate: PFN_WDFPDOINITALLOCATE,
    WdfPdoInitAssignDeviceID => wdf_pdo_init_assign_device_id: PFN_WDFPDOINITASSIGNDEVICEID,
    WdfPdoInitAssignInstanceID => wdf_pdo_init_assign_instance_id: PFN_WDFPDOINITASSIGNINSTANCEID,
    WdfPdoInitAddHardwareID => wdf_pdo_init_add_hardware_id: PFN_WDFPDOINITADDHARDWAREID,
    WdfPdoInitAddCompatibleID => wdf_pdo_init_add_compatible_id: PFN_WDFPDOINITADDCOMPATIBLEID,
    WdfPdoInitAddDeviceText => wdf_pdo_init_add_device_text: PFN_WDFPDOINITADDDEVICETEXT,
    WdfPdoInitSetDefaultLocale => wdf_pdo_init_set_default_locale: PFN_WDFPDOINITSETDEFAULTLOCALE,
    WdfPdoInitAssignRawDevice => wdf_pdo_init_assign_raw_device: PFN_WDFPDOINITASSIGNRAWDEVICE,
    WdfDeviceSetPnpCapabilities => wdf_device_set_pnp_capabilities: PFN_WDFDEVICESETPNPCAPABILITIES,
    WdfDeviceSetPowerCapabilities => wdf_device_set_power_capabilities: PFN_WDFDEVICESETPOWERCAPABILITIES,
    WdfFdoAddStaticChild => wdf_fdo_add_static_child: PFN_WDFFDOADDSTATICCHILD,
    WdfFdoLockStaticChildListForIteration => wdf_fdo_lock_static_child_list_for_iteration: PFN_WDFFDOLOCKSTATICCHILDLISTFORITERATION,
    WdfFdoRetrieveNextStaticChild => wdf_fdo_retrieve_next_static_child: PFN_WDFFDORETRIEVENEXTSTATICCHILD,
    WdfFdoUnlockStaticChildListFromIteration => wdf_fdo_unlock_static_child_list_from_iteration: PFN_WDFFDOUNLOCKSTATICCHILDLISTFROMITERATION,
    WdfPdoMarkMissing => wdf_pdo_mark_missing: PFN_WDFPDOMARKMISSING,
    WdfPdoRequestEject => wdf_pdo_request_eject: PFN_WDFPDOREQUESTEJECT,
}

fn status_of(result: Result<(), Status>) -> NTSTATUS {
    result.map_or_else(|status| status.0, |()| STATUS_SUCCESS)
}

/// The kmdf-sim device of the live `WDFDEVICE` `handle`, or a stop naming `routine`.
fn sim_device(handle: WDFDEVICE, routine: &str) -> Device {
    payload_of(&device_of(handle as usize, routine)).sim.clone()
}

/// `WdfPdoInitAllocate`: the init of a child PDO of `ParentDevice` (the bus driver's FDO); NULL
/// when kmdf-sim refuses it (a control device or a PDO as parent, a parent outside a device
/// node, an allocation fault).
extern "win64" fn wdf_pdo_init_allocate(
    _globals: PWDF_DRIVER_GLOBALS,
    parent: WDFDEVICE,
) -> PWDFDEVICE_INIT {
    const ROUTINE: &str = "WdfPdoInitAllocate";
    guard(ROUTINE, || {
        let object = device_of(parent as usize, ROUTINE);
        let payload = payload_of(&object);
        match DeviceInit::pdo(&payload.sim) {
            Ok(init) => allocate_owned_init(init, payload.driver.handle),
            Err(_) => core::ptr::null_mut(),
        }
    })
}

/// Applies `set` to the live PDO init with the string at `id`; `STATUS_INVALID_PARAMETER` for a
/// NULL or unreadable string.
fn with_id(
    init: PWDFDEVICE_INIT,
    id: PCUNICODE_STRING,
    routine: &str,
    set: fn(&mut DeviceInit, &str) -> Result<(), Status>,
) -> NTSTATUS {
    let sim = sim_init_of(init, routine);
    // SAFETY: the routine's contract: null or the driver's UNICODE_STRING for the call.
    let Some(id) = (unsafe { UnicodeString::read(id.cast()) }) else {
        return Status::INVALID_PARAMETER.0;
    };
    status_of(set(sim, &id))
}

/// `WdfPdoInitAssignDeviceID`.
///
/// Errors (kmdf-sim's): `STATUS_INVALID_DEVICE_REQUEST` on an init that is not a PDO's;
/// `STATUS_INVALID_PARAMETER` for an empty id, one with a NUL or longer than
/// `MAX_DEVICE_ID_LEN`.
extern "win64" fn wdf_pdo_init_assign_device_id(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    id: PCUNICODE_STRING,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfPdoInitAssignDeviceID";
    guard(ROUTINE, || {
        with_id(init, id, ROUTINE, DeviceInit::pdo_assign_device_id)
    })
}

/// `WdfPdoInitAssignInstanceID`. Errors as `WdfPdoInitAssignDeviceID`.
extern "win64" fn wdf_pdo_init_assign_instance_id(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    id: PCUNICODE_STRING,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfPdoInitAssignInstanceID";
    guard(ROUTINE, || {
        with_id(init, id, ROUTINE, DeviceInit::pdo_assign_instance_id)
    })
}

/// `WdfPdoInitAddHardwareID`. Errors as `WdfPdoInitAssignDeviceID`.
extern "win64" fn wdf_pdo_init_add_hardware_id(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    id: PCUNICODE_STRING,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfPdoInitAddHardwareID";
    guard(ROUTINE, || {
        with_id(init, id, ROUTINE, DeviceInit::pdo_add_hardware_id)
    })
}

/// `WdfPdoInitAddCompatibleID`. Errors as `WdfPdoInitAssignDeviceID`.
extern "win64" fn wdf_pdo_init_add_compatible_id(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    id: PCUNICODE_STRING,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfPdoInitAddCompatibleID";
    guard(ROUTINE, || {
        with_id(init, id, ROUTINE, DeviceInit::pdo_add_compatible_id)
    })
}

/// `WdfPdoInitAddDeviceText(DeviceDescription, DeviceLocation, LocaleId)`.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a NULL string; `STATUS_INVALID_DEVICE_REQUEST` on an
/// init that is not a PDO's.
extern "win64" fn wdf_pdo_init_add_device_text(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    description: PCUNICODE_STRING,
    location: PCUNICODE_STRING,
    locale: LCID,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfPdoInitAddDeviceText";
    guard(ROUTINE, || {
        let sim = sim_init_of(init, ROUTINE);
        // SAFETY: the routine's contract: the driver's UNICODE_STRINGs for the call.
        let (description, location) = unsafe {
            (
                UnicodeString::read(description.cast()),
                UnicodeString::read(location.cast()),
            )
        };
        let (Some(description), Some(location)) = (description, location) else {
            return Status::INVALID_PARAMETER.0;
        };
        status_of(sim.pdo_add_device_text(&description, &location, locale))
    })
}

/// `WdfPdoInitSetDefaultLocale`. On an init that is not a PDO's KMDF's verifier breaks in; the
/// host stops.
extern "win64" fn wdf_pdo_init_set_default_locale(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    locale: LCID,
) {
    const ROUTINE: &str = "WdfPdoInitSetDefaultLocale";
    guard(ROUTINE, || {
        let sim = sim_init_of(init, ROUTINE);
        if sim.pdo_set_default_locale(locale).is_err() {
            stop(Stop {
                message: format!(
                    "kmdf-host: the driver called {ROUTINE} on a WDFDEVICE_INIT that is not a \
                     PDO's (WDF_VIOLATION)"
                ),
                wdf_function: None,
            });
        }
    });
}

/// `WdfPdoInitAssignRawDevice(DeviceClassGuid)`.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a NULL GUID; `STATUS_INVALID_DEVICE_REQUEST` on an
/// init that is not a PDO's.
extern "win64" fn wdf_pdo_init_assign_raw_device(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    class: *const GUID,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfPdoInitAssignRawDevice";
    guard(ROUTINE, || {
        let sim = sim_init_of(init, ROUTINE);
        // SAFETY: the routine's contract: null or the driver's GUID.
        let Some(class) = (unsafe { guid_at(class) }) else {
            return Status::INVALID_PARAMETER.0;
        };
        status_of(sim.pdo_assign_raw_device(class))
    })
}

/// `WDF_TRI_STATE` as kmdf-sim's.
fn tri(state: WDF_TRI_STATE) -> TriState {
    if state == WdfFalse {
        TriState::False
    } else if state == WdfTrue {
        TriState::True
    } else {
        TriState::UseDefault
    }
}

/// `(ULONG) -1` means "not set".
fn set_value(value: ULONG) -> Option<u32> {
    (value != ULONG::MAX).then_some(value)
}

/// A `DEVICE_POWER_STATE` as kmdf-sim's (`PowerDeviceUnspecified` / `PowerDeviceMaximum`: not
/// set).
fn dx(state: DEVICE_POWER_STATE) -> Option<DevicePowerState> {
    [
        (PowerDeviceD0, DevicePowerState::D0),
        (PowerDeviceD1, DevicePowerState::D1),
        (PowerDeviceD2, DevicePowerState::D2),
        (PowerDeviceD3, DevicePowerState::D3),
    ]
    .into_iter()
    .find_map(|(header, sim)| (header == state).then_some(sim))
}

/// `WdfDeviceSetPnpCapabilities`: the capabilities the device reports (a PDO's to the PnP
/// manager). A NULL structure or one of another `Size` stops the run (KMDF's verifier breaks).
extern "win64" fn wdf_device_set_pnp_capabilities(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    capabilities: PWDF_DEVICE_PNP_CAPABILITIES,
) {
    const ROUTINE: &str = "WdfDeviceSetPnpCapabilities";
    guard(ROUTINE, || {
        let sim = sim_device(device, ROUTINE);
        // SAFETY: the routine's contract: the driver's WDF_DEVICE_PNP_CAPABILITIES (Size first).
        let caps: WDF_DEVICE_PNP_CAPABILITIES =
            unsafe { read_sized(capabilities, ROUTINE, "WDF_DEVICE_PNP_CAPABILITIES") };
        sim.set_pnp_capabilities(PnpCapabilities {
            lock_supported: tri(caps.LockSupported),
            eject_supported: tri(caps.EjectSupported),
            removable: tri(caps.Removable),
            dock_device: tri(caps.DockDevice),
            unique_id: tri(caps.UniqueID),
            silent_install: tri(caps.SilentInstall),
            surprise_removal_ok: tri(caps.SurpriseRemovalOK),
            hardware_disabled: tri(caps.HardwareDisabled),
            no_display_in_ui: tri(caps.NoDisplayInUI),
            address: set_value(caps.Address),
            ui_number: set_value(caps.UINumber),
        });
    });
}

/// `WdfDeviceSetPowerCapabilities`: the fields kmdf-sim models (`DeviceD1`, `DeviceD2`, the
/// `WakeFromDx` tri-states, `DeviceState[S0 ..= S5]`, `DeviceWake`). A NULL structure or one of
/// another `Size` stops the run.
extern "win64" fn wdf_device_set_power_capabilities(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    capabilities: PWDF_DEVICE_POWER_CAPABILITIES,
) {
    const ROUTINE: &str = "WdfDeviceSetPowerCapabilities";
    guard(ROUTINE, || {
        let sim = sim_device(device, ROUTINE);
        // SAFETY: the routine's contract: the driver's WDF_DEVICE_POWER_CAPABILITIES (Size
        // first).
        let caps: WDF_DEVICE_POWER_CAPABILITIES =
            unsafe { read_sized(capabilities, ROUTINE, "WDF_DEVICE_POWER_CAPABILITIES") };
        let working = usize::try_from(PowerSystemWorking).unwrap_or_default();
        let mut device_state = [None; 6];
        for (offset, slot) in device_state.iter_mut().enumerate() {
            *slot = caps.DeviceState.get(working + offset).copied().and_then(dx);
        }
        sim.set_power_capabilities(PowerCapabilities {
            device_d1: tri(caps.DeviceD1),
            device_d2: tri(caps.DeviceD2),
            wake_from_d0: tri(caps.WakeFromD0),
            wake_from_d1: tri(caps.WakeFromD1),
            wake_from_d2: tri(caps.WakeFromD2),
            wake_from_d3: tri(caps.WakeFromD3),
            device_state,
            device_wake: dx(caps.DeviceWake),
        });
    });
}

/// `WdfFdoAddStaticChild`: reports the created PDO `Child` on the bus of `Fdo`.
///
/// Errors (kmdf-sim's): `STATUS_INVALID_DEVICE_REQUEST` if `Child` is not a PDO;
/// `STATUS_INVALID_PARAMETER` if it was allocated on another device;
/// `STATUS_INVALID_DEVICE_STATE` if it was already reported or deleted.
extern "win64" fn wdf_fdo_add_static_child(
    _globals: PWDF_DRIVER_GLOBALS,
    fdo: WDFDEVICE,
    child: WDFDEVICE,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfFdoAddStaticChild";
    guard(ROUTINE, || {
        let fdo = sim_device(fdo, ROUTINE);
        let child = sim_device(child, ROUTINE);
        status_of(fdo.add_static_child(&child))
    })
}

/// An FDO's static child list as the driver locked it: the children at the lock, and how many
/// locks are held.
struct Iteration {
    children: Vec<Device>,
    locks: usize,
}

/// The locked static child lists, by FDO handle.
static ITERATIONS: Mutex<Option<HashMap<Handle, Iteration>>> = Mutex::new(None);

fn iterations() -> MutexGuard<'static, Option<HashMap<Handle, Iteration>>> {
    ITERATIONS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `WdfFdoLockStaticChildListForIteration`: the list stays as it is until the unlock.
extern "win64" fn wdf_fdo_lock_static_child_list_for_iteration(
    _globals: PWDF_DRIVER_GLOBALS,
    fdo: WDFDEVICE,
) {
    const ROUTINE: &str = "WdfFdoLockStaticChildListForIteration";
    guard(ROUTINE, || {
        let sim = sim_device(fdo, ROUTINE);
        let mut all = iterations();
        let entry = all
            .get_or_insert_with(HashMap::new)
            .entry(fdo as Handle)
            .or_insert_with(|| Iteration {
                children: Vec::new(),
                locks: 0,
            });
        if entry.locks == 0 {
            entry.children = sim.static_children();
        }
        entry.locks += 1;
    });
}

/// The `WDF_RETRIEVE_CHILD_FLAGS` bit that selects a child in `status`: present (enumerated),
/// pending (reported, not enumerated yet) or missing.
fn retrieve_flag(status: Option<PdoStatus>) -> ULONG {
    let flag = match status {
        Some(PdoStatus::Enumerated) => WdfRetrievePresentChildren,
        Some(PdoStatus::Reported) => WdfRetrievePendingChildren,
        Some(PdoStatus::Missing) => WdfRetrieveMissingChildren,
        Some(PdoStatus::Created) | None => 0,
    };
    ULONG::try_from(flag).unwrap_or_default()
}

/// `WdfFdoRetrieveNextStaticChild(Fdo, PreviousChild, Flags)`: the child after `PreviousChild`
/// (the first for NULL) in the locked list whose state `Flags` selects; NULL at the end, or when
/// `PreviousChild` is not in the list.
extern "win64" fn wdf_fdo_retrieve_next_static_child(
    _globals: PWDF_DRIVER_GLOBALS,
    fdo: WDFDEVICE,
    previous: WDFDEVICE,
    flags: ULONG,
) -> WDFDEVICE {
    const ROUTINE: &str = "WdfFdoRetrieveNextStaticChild";
    guard(ROUTINE, || {
        device_of(fdo as usize, ROUTINE);
        let previous = (!previous.is_null()).then(|| sim_device(previous, ROUTINE));
        let children = iterations()
            .as_ref()
            .and_then(|all| all.get(&(fdo as Handle)))
            .filter(|it| it.locks > 0)
            .map(|it| it.children.clone());
        let Some(children) = children else {
            stop(Stop {
                message: format!(
                    "kmdf-host: the driver called {ROUTINE} without \
                     WdfFdoLockStaticChildListForIteration (WDF_VIOLATION)"
                ),
                wdf_function: None,
            });
        };
        let start = match previous {
            None => 0,
            Some(previous) => match children.iter().position(|c| *c == previous) {
                Some(at) => at + 1,
                None => return core::ptr::null_mut(),
            },
        };
        children
            .iter()
            .skip(start)
            .filter(|child| flags & retrieve_flag(child.pdo_status()) != 0)
            .find_map(|child| objects::of_sim(child.object()))
            .map_or(core::ptr::null_mut(), |object| object.as_handle())
    })
}

/// `WdfFdoUnlockStaticChildListFromIteration`.
extern "win64" fn wdf_fdo_unlock_static_child_list_from_iteration(
    _globals: PWDF_DRIVER_GLOBALS,
    fdo: WDFDEVICE,
) {
    const ROUTINE: &str = "WdfFdoUnlockStaticChildListFromIteration";
    guard(ROUTINE, || {
        device_of(fdo as usize, ROUTINE);
        let mut all = iterations();
        let map = all.get_or_insert_with(HashMap::new);
        let Some(entry) = map.get_mut(&(fdo as Handle)).filter(|it| it.locks > 0) else {
            drop(all);
            stop(Stop {
                message: format!(
                    "kmdf-host: the driver called {ROUTINE} on a static child list it had not \
                     locked (WDF_VIOLATION)"
                ),
                wdf_function: None,
            });
        };
        entry.locks -= 1;
        if entry.locks == 0 {
            map.remove(&(fdo as Handle));
        }
    });
}

/// `WdfPdoMarkMissing`: the child is gone (its stack is surprise-removed, its PDO deleted).
///
/// Errors (kmdf-sim's): `STATUS_INVALID_DEVICE_REQUEST` if the device is not a PDO;
/// `STATUS_NO_SUCH_DEVICE` if it was never reported or is already missing.
extern "win64" fn wdf_pdo_mark_missing(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfPdoMarkMissing";
    guard(ROUTINE, || {
        status_of(sim_device(device, ROUTINE).pdo_mark_missing())
    })
}

/// `WdfPdoRequestEject`: asks the PnP manager to eject the child.
extern "win64" fn wdf_pdo_request_eject(_globals: PWDF_DRIVER_GLOBALS, device: WDFDEVICE) {
    const ROUTINE: &str = "WdfPdoRequestEject";
    guard(ROUTINE, || sim_device(device, ROUTINE).pdo_request_eject());
}

/// `WdfObjectDelete` of a PDO the bus driver created but never reported
/// (`WdfFdoAddStaticChild`): kmdf-sim's `Device::pdo_delete` (the device is deleted and its
/// driver released). False for any other object, which `WdfObjectDelete` deletes as usual.
pub(crate) fn delete_unreported_pdo(object: &objects::Object) -> bool {
    if object.kind() != "WDFDEVICE" {
        return false;
    }
    let sim = &payload_of(object).sim;
    if sim.pdo_status() != Some(PdoStatus::Created) {
        return false;
    }
    let _ = sim.pdo_delete();
    true
}

#[cfg(test)]
mod tests {
    use kmdf_sim::pnp::NodeState;

    use super::super::bindings::_WDF_RETRIEVE_CHILD_FLAGS::WdfRetrieveAddedChildren;
    use super::super::bindings::_WDF_TRI_STATE::WdfUseDefault;
    use super::super::bindings::{PFN_WDFDEVICECREATE, PFN_WDFOBJECTDELETE, WDFOBJECT};
    use super::super::device::testing::{create_device, wdf, TestDriver};
    use super::*;

    /// A driver's `UNICODE_STRING` for `text` (the buffer leaked: test data).
    fn unicode(text: &str) -> UnicodeString {
        let buffer: &'static mut [u16] =
            Box::leak(text.encode_utf16().collect::<Vec<_>>().into_boxed_slice());
        let bytes = u16::try_from(buffer.len() * 2).unwrap();
        UnicodeString {
            length: bytes,
            maximum_length: bytes,
            buffer: buffer.as_mut_ptr(),
        }
    }

    fn size_of_ulong<T>() -> ULONG {
        ULONG::try_from(size_of::<T>()).unwrap()
    }

    /// A raw child PDO `serial` of `fdo`, created (not yet added) with its identity.
    fn create_child(globals: PWDF_DRIVER_GLOBALS, fdo: WDFDEVICE, serial: &str) -> WDFDEVICE {
        let mut init = wdf_pdo_init_allocate(globals, fdo);
        assert!(!init.is_null());
        let device_id = unicode("PDOBUS\\Child");
        let instance_id = unicode(serial);
        let compatible = unicode("PDOBUS\\AnyChild");
        let (description, location) = (unicode("A child"), unicode("Slot"));
        assert_eq!(
            wdf_pdo_init_assign_device_id(globals, init, (&raw const device_id).cast()),
            STATUS_SUCCESS
        );
        assert_eq!(
            wdf_pdo_init_add_hardware_id(globals, init, (&raw const device_id).cast()),
            STATUS_SUCCESS
        );
        assert_eq!(
            wdf_pdo_init_add_compatible_id(globals, init, (&raw const compatible).cast()),
            STATUS_SUCCESS
        );
        assert_eq!(
            wdf_pdo_init_assign_instance_id(globals, init, (&raw const instance_id).cast()),
            STATUS_SUCCESS
        );
        assert_eq!(
            wdf_pdo_init_add_device_text(
                globals,
                init,
                (&raw const description).cast(),
                (&raw const location).cast(),
                0x409
            ),
            STATUS_SUCCESS
        );
        wdf_pdo_init_set_default_locale(globals, init, 0x409);
        // SAFETY: plain data.
        let class: GUID = unsafe { core::mem::zeroed() };
        assert_eq!(
            wdf_pdo_init_assign_raw_device(globals, init, &raw const class),
            STATUS_SUCCESS
        );
        assert_eq!(
            wdf_pdo_init_assign_device_id(globals, init, core::ptr::null()),
            Status::INVALID_PARAMETER.0
        );
        let create: PFN_WDFDEVICECREATE = wdf("WdfDeviceCreate");
        let mut child: WDFDEVICE = core::ptr::null_mut();
        // SAFETY: live locals; the PDO init allocated above.
        let status = unsafe {
            create.unwrap()(
                globals,
                &raw mut init,
                core::ptr::null_mut(),
                &raw mut child,
            )
        };
        assert_eq!(status, STATUS_SUCCESS);
        assert!(init.is_null(), "WdfDeviceCreate consumes the init");
        child
    }

    /// The children the locked list gives with `flags`.
    fn iterate(globals: PWDF_DRIVER_GLOBALS, fdo: WDFDEVICE, flags: ULONG) -> Vec<WDFDEVICE> {
        wdf_fdo_lock_static_child_list_for_iteration(globals, fdo);
        let mut children = Vec::new();
        let mut previous: WDFDEVICE = core::ptr::null_mut();
        loop {
            let child = wdf_fdo_retrieve_next_static_child(globals, fdo, previous, flags);
            if child.is_null() {
                break;
            }
            children.push(child);
            previous = child;
        }
        wdf_fdo_unlock_static_child_list_from_iteration(globals, fdo);
        children
    }

    /// The bus node's children that are started.
    fn started(node: &kmdf_sim::pnp::DeviceNode) -> usize {
        node.children()
            .iter()
            .filter(|child| child.state() == NodeState::Started)
            .count()
    }

    #[test]
    fn a_bus_driver_reports_iterates_and_removes_its_children() {
        let driver = TestDriver::load("hpdobus", create_device);
        let (node, fdo) = driver.plug_in();
        let (globals, fdo) = (driver.globals, fdo as WDFDEVICE);
        let bound = driver.machine.enter();
        let first = create_child(globals, fdo, "1");
        let second = create_child(globals, fdo, "2");
        let unused = create_child(globals, fdo, "3");
        let added = ULONG::try_from(WdfRetrieveAddedChildren).unwrap();
        assert!(iterate(globals, fdo, added).is_empty());

        // SAFETY: plain data; WDF_DEVICE_PNP_CAPABILITIES_INIT's values below.
        let mut pnp: WDF_DEVICE_PNP_CAPABILITIES = unsafe { core::mem::zeroed() };
        pnp.Size = size_of_ulong::<WDF_DEVICE_PNP_CAPABILITIES>();
        pnp.LockSupported = WdfUseDefault;
        pnp.EjectSupported = WdfTrue;
        pnp.Removable = WdfTrue;
        pnp.DockDevice = WdfUseDefault;
        pnp.UniqueID = WdfFalse;
        pnp.SilentInstall = WdfUseDefault;
        pnp.SurpriseRemovalOK = WdfTrue;
        pnp.HardwareDisabled = WdfUseDefault;
        pnp.NoDisplayInUI = WdfUseDefault;
        pnp.Address = 1;
        pnp.UINumber = ULONG::MAX;
        wdf_device_set_pnp_capabilities(globals, first, &raw mut pnp);
        // SAFETY: plain data; WDF_DEVICE_POWER_CAPABILITIES_INIT's values below.
        let mut power: WDF_DEVICE_POWER_CAPABILITIES = unsafe { core::mem::zeroed() };
        power.Size = size_of_ulong::<WDF_DEVICE_POWER_CAPABILITIES>();
        power.DeviceD1 = WdfTrue;
        for state in &mut power.DeviceState {
            *state = super::super::bindings::_DEVICE_POWER_STATE::PowerDeviceMaximum;
        }
        power.DeviceState[usize::try_from(PowerSystemWorking).unwrap()] = PowerDeviceD0;
        power.DeviceWake = PowerDeviceD2;
        wdf_device_set_power_capabilities(globals, first, &raw mut power);
        let sim_first = sim_device(first, "test");
        let pnp = sim_first.pnp_capabilities().unwrap();
        assert_eq!(
            (pnp.eject_supported, pnp.unique_id, pnp.lock_supported),
            (TriState::True, TriState::False, TriState::UseDefault)
        );
        assert_eq!((pnp.address, pnp.ui_number), (Some(1), None));
        let power = sim_first.power_capabilities().unwrap();
        assert_eq!(power.device_d1, TriState::True);
        assert_eq!(power.device_state[0], Some(DevicePowerState::D0));
        assert_eq!(power.device_state[1], None);
        assert_eq!(power.device_wake, Some(DevicePowerState::D2));
        let identity = sim_first.pdo_identity().unwrap();
        assert_eq!(identity.device_id.as_deref(), Some("PDOBUS\\Child"));
        assert_eq!(identity.instance_id.as_deref(), Some("1"));
        assert_eq!(identity.compatible_ids, ["PDOBUS\\AnyChild"]);
        assert_eq!(identity.texts.len(), 1);
        assert_eq!(identity.default_locale, Some(0x409));

        // Reported: enumerated (raw, no function driver) and started.
        assert_eq!(
            wdf_fdo_add_static_child(globals, fdo, first),
            STATUS_SUCCESS
        );
        assert_eq!(
            wdf_fdo_add_static_child(globals, fdo, second),
            STATUS_SUCCESS
        );
        assert_eq!(
            wdf_fdo_add_static_child(globals, fdo, first),
            Status::INVALID_DEVICE_STATE.0
        );
        assert_eq!(node.children().len(), 2);
        assert!(node
            .children()
            .iter()
            .all(|child| child.state() == NodeState::Started));
        assert_eq!(iterate(globals, fdo, added), [first, second]);
        let missing = ULONG::try_from(WdfRetrieveMissingChildren).unwrap();
        assert!(iterate(globals, fdo, missing).is_empty());

        // The list as locked: a child marked missing meanwhile is still walked.
        wdf_fdo_lock_static_child_list_for_iteration(globals, fdo);
        let at_lock =
            wdf_fdo_retrieve_next_static_child(globals, fdo, core::ptr::null_mut(), added);
        assert_eq!(at_lock, first);
        wdf_fdo_unlock_static_child_list_from_iteration(globals, fdo);

        assert_eq!(wdf_pdo_mark_missing(globals, first), STATUS_SUCCESS);
        assert_eq!(started(&node), 1);
        assert_eq!(iterate(globals, fdo, added), [second]);
        wdf_pdo_request_eject(globals, second);
        assert_eq!(started(&node), 0);
        assert!(iterate(globals, fdo, added).is_empty());

        // A PDO never added: not missing; the driver deletes it.
        assert_eq!(
            wdf_pdo_mark_missing(globals, unused),
            Status::NO_SUCH_DEVICE.0
        );
        let delete: PFN_WDFOBJECTDELETE = wdf("WdfObjectDelete");
        // SAFETY: a live PDO of this driver.
        unsafe { delete.unwrap()(globals, unused as WDFOBJECT) };
        node.remove().unwrap();
        drop(bound);
        assert_eq!(driver.machine.verdict().map(|_| ()), Ok(()));
    }

    /// An init the driver allocated and then frees without creating a device.
    #[test]
    fn a_pdo_init_can_be_freed_unused() {
        let driver = TestDriver::load("hpdofree", create_device);
        let (node, fdo) = driver.plug_in();
        let globals = driver.globals;
        let bound = driver.machine.enter();
        let init = wdf_pdo_init_allocate(globals, fdo as WDFDEVICE);
        assert!(!init.is_null());
        let free: super::super::bindings::PFN_WDFDEVICEINITFREE = wdf("WdfDeviceInitFree");
        // SAFETY: the init allocated above, never used.
        unsafe { free.unwrap()(globals, init) };
        node.remove().unwrap();
        drop(bound);
        assert_eq!(driver.machine.verdict().map(|_| ()), Ok(()));
    }

    #[test]
    fn the_capability_structures_have_their_kmdf_1_33_x64_sizes() {
        assert_eq!(size_of::<WDF_DEVICE_PNP_CAPABILITIES>(), 48);
        assert_eq!(size_of::<WDF_DEVICE_POWER_CAPABILITIES>(), 80);
    }

    #[test]
    fn the_headers_values_map_to_kmdf_sims() {
        assert_eq!(tri(WdfTrue), TriState::True);
        assert_eq!(tri(WdfFalse), TriState::False);
        assert_eq!(
            tri(super::super::bindings::_WDF_TRI_STATE::WdfUseDefault),
            TriState::UseDefault
        );
        assert_eq!(set_value(ULONG::MAX), None);
        assert_eq!(set_value(3), Some(3));
        assert_eq!(dx(PowerDeviceD2), Some(DevicePowerState::D2));
        assert_eq!(
            dx(super::super::bindings::_DEVICE_POWER_STATE::PowerDeviceMaximum),
            None
        );
        let added = ULONG::try_from(
            super::super::bindings::_WDF_RETRIEVE_CHILD_FLAGS::WdfRetrieveAddedChildren,
        )
        .unwrap();
        assert_ne!(added & retrieve_flag(Some(PdoStatus::Enumerated)), 0);
        assert_ne!(added & retrieve_flag(Some(PdoStatus::Reported)), 0);
        assert_eq!(added & retrieve_flag(Some(PdoStatus::Missing)), 0);
        assert_eq!(retrieve_flag(Some(PdoStatus::Created)), 0);
    }
}
