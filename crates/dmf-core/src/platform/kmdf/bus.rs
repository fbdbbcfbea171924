//! Child PDOs of a bus driver on KMDF: `WdfPdoInitAllocate` and the `WdfPdoInit…` identity
//! calls on a PDO's init, `WdfFdoAddStaticChild`, the static child list's iteration,
//! `WdfPdoMarkMissing`, `WdfPdoRequestEject`, `WdfObjectDelete` of a PDO never added, and
//! `WdfDeviceSetPnpCapabilities` / `WdfDeviceSetPowerCapabilities` with the
//! `WDF_DEVICE_*_CAPABILITIES_INIT` equivalents (layouts pinned below).

use core::mem::{offset_of, size_of, zeroed};
use core::ptr::null_mut;

use static_assertions::const_assert_eq;
use wdk_sys::{
    call_unsafe_wdf_function_binding, _DEVICE_POWER_STATE, _SYSTEM_POWER_STATE,
    _WDF_RETRIEVE_CHILD_FLAGS, _WDF_TRI_STATE, DEVICE_POWER_STATE, GUID, ULONG, WDFDEVICE,
    WDF_DEVICE_PNP_CAPABILITIES, WDF_DEVICE_POWER_CAPABILITIES, WDF_TRI_STATE,
};

use super::device::{to_wdk_guid, Device, DeviceInit};
use super::wdf::{as_object, nt_result, UnicodeName};
use crate::platform::contract::device::{
    DevicePowerLevel, Guid, PlatformBus, PlatformPdoInit, PnpCapabilities, PowerCapabilities,
    TriState,
};
use crate::status::{NtResult, NtStatus};

// x64 layouts of KMDF 1.33 (wdfdevice.h): the two structures this file fills.
const_assert_eq!(size_of::<WDF_DEVICE_PNP_CAPABILITIES>(), 48);
const_assert_eq!(offset_of!(WDF_DEVICE_PNP_CAPABILITIES, NoDisplayInUI), 36);
const_assert_eq!(offset_of!(WDF_DEVICE_PNP_CAPABILITIES, Address), 40);
const_assert_eq!(offset_of!(WDF_DEVICE_PNP_CAPABILITIES, UINumber), 44);
const_assert_eq!(size_of::<WDF_DEVICE_POWER_CAPABILITIES>(), 80);
const_assert_eq!(offset_of!(WDF_DEVICE_POWER_CAPABILITIES, DeviceState), 28);
const_assert_eq!(offset_of!(WDF_DEVICE_POWER_CAPABILITIES, DeviceWake), 56);
const_assert_eq!(
    offset_of!(WDF_DEVICE_POWER_CAPABILITIES, IdealDxStateForSx),
    76
);

/// `(ULONG) -1`: "not set" for `Address`, `UINumber` and the latencies.
const NOT_SET: ULONG = ULONG::MAX;

fn structure_size<T>() -> ULONG {
    ULONG::try_from(size_of::<T>()).unwrap_or(ULONG::MAX)
}

fn tri(state: TriState) -> WDF_TRI_STATE {
    match state {
        TriState::False => _WDF_TRI_STATE::WdfFalse,
        TriState::True => _WDF_TRI_STATE::WdfTrue,
        TriState::UseDefault => _WDF_TRI_STATE::WdfUseDefault,
    }
}

fn dx(level: Option<DevicePowerLevel>) -> DEVICE_POWER_STATE {
    match level {
        Some(DevicePowerLevel::D0) => _DEVICE_POWER_STATE::PowerDeviceD0,
        Some(DevicePowerLevel::D1) => _DEVICE_POWER_STATE::PowerDeviceD1,
        Some(DevicePowerLevel::D2) => _DEVICE_POWER_STATE::PowerDeviceD2,
        Some(DevicePowerLevel::D3) => _DEVICE_POWER_STATE::PowerDeviceD3,
        None => _DEVICE_POWER_STATE::PowerDeviceMaximum,
    }
}

/// `WDF_DEVICE_PNP_CAPABILITIES_INIT`.
fn pnp_capabilities_init() -> WDF_DEVICE_PNP_CAPABILITIES {
    // SAFETY: a size, tri-states and two ULONGs; zero is valid.
    let mut caps: WDF_DEVICE_PNP_CAPABILITIES = unsafe { zeroed() };
    caps.Size = structure_size::<WDF_DEVICE_PNP_CAPABILITIES>();
    caps.LockSupported = _WDF_TRI_STATE::WdfUseDefault;
    caps.EjectSupported = _WDF_TRI_STATE::WdfUseDefault;
    caps.Removable = _WDF_TRI_STATE::WdfUseDefault;
    caps.DockDevice = _WDF_TRI_STATE::WdfUseDefault;
    caps.UniqueID = _WDF_TRI_STATE::WdfUseDefault;
    caps.SilentInstall = _WDF_TRI_STATE::WdfUseDefault;
    caps.SurpriseRemovalOK = _WDF_TRI_STATE::WdfUseDefault;
    caps.HardwareDisabled = _WDF_TRI_STATE::WdfUseDefault;
    caps.NoDisplayInUI = _WDF_TRI_STATE::WdfUseDefault;
    caps.Address = NOT_SET;
    caps.UINumber = NOT_SET;
    caps
}

/// `WDF_DEVICE_POWER_CAPABILITIES_INIT`.
fn power_capabilities_init() -> WDF_DEVICE_POWER_CAPABILITIES {
    // SAFETY: a size, tri-states, power-state enumerators and ULONGs; zero is valid.
    let mut caps: WDF_DEVICE_POWER_CAPABILITIES = unsafe { zeroed() };
    caps.Size = structure_size::<WDF_DEVICE_POWER_CAPABILITIES>();
    caps.DeviceD1 = _WDF_TRI_STATE::WdfUseDefault;
    caps.DeviceD2 = _WDF_TRI_STATE::WdfUseDefault;
    caps.WakeFromD0 = _WDF_TRI_STATE::WdfUseDefault;
    caps.WakeFromD1 = _WDF_TRI_STATE::WdfUseDefault;
    caps.WakeFromD2 = _WDF_TRI_STATE::WdfUseDefault;
    caps.WakeFromD3 = _WDF_TRI_STATE::WdfUseDefault;
    for state in &mut caps.DeviceState {
        *state = _DEVICE_POWER_STATE::PowerDeviceMaximum;
    }
    caps.DeviceWake = _DEVICE_POWER_STATE::PowerDeviceMaximum;
    caps.SystemWake = _SYSTEM_POWER_STATE::PowerSystemMaximum;
    caps.D1Latency = NOT_SET;
    caps.D2Latency = NOT_SET;
    caps.D3Latency = NOT_SET;
    caps.IdealDxStateForSx = _DEVICE_POWER_STATE::PowerDeviceMaximum;
    caps
}

/// The checks of the contract's id methods, then the live PDO init.
fn checked_init(init: &DeviceInit, id: Option<&str>) -> NtResult<wdk_sys::PWDFDEVICE_INIT> {
    if !init.is_pdo() {
        return Err(NtStatus::INVALID_DEVICE_REQUEST);
    }
    if let Some(id) = id {
        if id.is_empty() || id.contains('\0') {
            return Err(NtStatus::INVALID_PARAMETER);
        }
    }
    let raw = init.raw();
    if raw.is_null() {
        return Err(NtStatus::INVALID_DEVICE_STATE);
    }
    Ok(raw)
}

impl PlatformPdoInit for DeviceInit {
    /// `WdfPdoInitAssignDeviceID`.
    fn assign_device_id(&mut self, id: &str) -> NtResult<()> {
        let raw = checked_init(self, Some(id))?;
        let id = UnicodeName::new(id)?;
        // SAFETY: a live PDO init (checked); WDF copies the string.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(WdfPdoInitAssignDeviceID, raw, id.as_ptr())
        })
    }

    /// `WdfPdoInitAssignInstanceID`.
    fn assign_instance_id(&mut self, id: &str) -> NtResult<()> {
        let raw = checked_init(self, Some(id))?;
        let id = UnicodeName::new(id)?;
        // SAFETY: a live PDO init (checked); WDF copies the string.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(WdfPdoInitAssignInstanceID, raw, id.as_ptr())
        })
    }

    /// `WdfPdoInitAddHardwareID`.
    fn add_hardware_id(&mut self, id: &str) -> NtResult<()> {
        let raw = checked_init(self, Some(id))?;
        let id = UnicodeName::new(id)?;
        // SAFETY: a live PDO init (checked); WDF copies the string.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(WdfPdoInitAddHardwareID, raw, id.as_ptr())
        })
    }

    /// `WdfPdoInitAddCompatibleID`.
    fn add_compatible_id(&mut self, id: &str) -> NtResult<()> {
        let raw = checked_init(self, Some(id))?;
        let id = UnicodeName::new(id)?;
        // SAFETY: a live PDO init (checked); WDF copies the string.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(WdfPdoInitAddCompatibleID, raw, id.as_ptr())
        })
    }

    /// `WdfPdoInitAddDeviceText`.
    fn add_device_text(&mut self, description: &str, location: &str, locale: u32) -> NtResult<()> {
        let raw = checked_init(self, None)?;
        let description = UnicodeName::new(description)?;
        let location = UnicodeName::new(location)?;
        // SAFETY: a live PDO init (checked); WDF copies both strings.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(
                WdfPdoInitAddDeviceText,
                raw,
                description.as_ptr(),
                location.as_ptr(),
                locale
            )
        })
    }

    /// `WdfPdoInitSetDefaultLocale`.
    fn set_default_locale(&mut self, locale: u32) {
        if let Ok(raw) = checked_init(self, None) {
            // SAFETY: a live PDO init (checked).
            unsafe { call_unsafe_wdf_function_binding!(WdfPdoInitSetDefaultLocale, raw, locale) };
        }
    }

    /// `WdfPdoInitAssignRawDevice`.
    fn assign_raw_device(&mut self, class: Guid) -> NtResult<()> {
        let raw = checked_init(self, None)?;
        let class: GUID = to_wdk_guid(class);
        // SAFETY: a live PDO init (checked); WDF copies the GUID.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(WdfPdoInitAssignRawDevice, raw, &raw const class)
        })
    }
}

impl PlatformBus for Device {
    type PdoInit = DeviceInit;

    /// `WdfPdoInitAllocate`.
    fn pdo_init_allocate(&self) -> NtResult<DeviceInit> {
        // SAFETY: a live device of this driver.
        let raw = unsafe { call_unsafe_wdf_function_binding!(WdfPdoInitAllocate, self.raw()) };
        if raw.is_null() {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        Ok(DeviceInit::new_pdo(raw))
    }

    /// `WdfFdoAddStaticChild`.
    fn add_static_child(&self, pdo: &Device) -> NtResult<()> {
        // SAFETY: two live devices of this driver.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(WdfFdoAddStaticChild, self.raw(), pdo.raw())
        })
    }

    /// `WdfFdoLockStaticChildListForIteration`, `WdfFdoRetrieveNextStaticChild`
    /// (`WdfRetrieveAddedChildren`) until `visit` stops or the list ends,
    /// `WdfFdoUnlockStaticChildListFromIteration`.
    fn for_each_static_child(&self, visit: &mut dyn FnMut(&Device) -> bool) {
        let fdo = self.raw();
        let flags = ULONG::try_from(_WDF_RETRIEVE_CHILD_FLAGS::WdfRetrieveAddedChildren)
            .unwrap_or_default();
        // SAFETY: a live FDO; the list stays locked until the unlock below.
        unsafe { call_unsafe_wdf_function_binding!(WdfFdoLockStaticChildListForIteration, fdo) };
        let mut previous: WDFDEVICE = null_mut();
        loop {
            // SAFETY: the list is locked; `previous` is null or the child returned last.
            let child = unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfFdoRetrieveNextStaticChild,
                    fdo,
                    previous,
                    flags
                )
            };
            if child.is_null() || !visit(&Device::from_raw(child)) {
                break;
            }
            previous = child;
        }
        // SAFETY: the lock taken above.
        unsafe { call_unsafe_wdf_function_binding!(WdfFdoUnlockStaticChildListFromIteration, fdo) };
    }

    /// `WdfPdoMarkMissing`.
    fn pdo_mark_missing(&self) -> NtResult<()> {
        // SAFETY: a live device; WDF checks that it is a PDO.
        nt_result(unsafe { call_unsafe_wdf_function_binding!(WdfPdoMarkMissing, self.raw()) })
    }

    /// `WdfPdoRequestEject`.
    fn pdo_request_eject(&self) {
        // SAFETY: a live device; WDF checks that it is a PDO.
        unsafe { call_unsafe_wdf_function_binding!(WdfPdoRequestEject, self.raw()) };
    }

    /// `WdfObjectDelete` of the PDO, once.
    fn pdo_delete(&self) -> NtResult<()> {
        if !self.mark_deleted() {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        // SAFETY: a live PDO the driver created and has not deleted (checked).
        unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, as_object(self.raw())) };
        Ok(())
    }

    /// `WdfDeviceSetPnpCapabilities`.
    fn set_pnp_capabilities(&self, capabilities: &PnpCapabilities) {
        let mut caps = pnp_capabilities_init();
        caps.LockSupported = tri(capabilities.lock_supported);
        caps.EjectSupported = tri(capabilities.eject_supported);
        caps.Removable = tri(capabilities.removable);
        caps.DockDevice = tri(capabilities.dock_device);
        caps.UniqueID = tri(capabilities.unique_id);
        caps.SilentInstall = tri(capabilities.silent_install);
        caps.SurpriseRemovalOK = tri(capabilities.surprise_removal_ok);
        caps.HardwareDisabled = tri(capabilities.hardware_disabled);
        caps.NoDisplayInUI = tri(capabilities.no_display_in_ui);
        caps.Address = capabilities.address.unwrap_or(NOT_SET);
        caps.UINumber = capabilities.ui_number.unwrap_or(NOT_SET);
        // SAFETY: a live device; WDF copies the structure.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceSetPnpCapabilities,
                self.raw(),
                &raw mut caps
            );
        }
    }

    /// `WdfDeviceSetPowerCapabilities`.
    fn set_power_capabilities(&self, capabilities: &PowerCapabilities) {
        let mut caps = power_capabilities_init();
        caps.DeviceD1 = tri(capabilities.device_d1);
        caps.DeviceD2 = tri(capabilities.device_d2);
        caps.WakeFromD0 = tri(capabilities.wake_from_d0);
        caps.WakeFromD1 = tri(capabilities.wake_from_d1);
        caps.WakeFromD2 = tri(capabilities.wake_from_d2);
        caps.WakeFromD3 = tri(capabilities.wake_from_d3);
        let working = usize::try_from(_SYSTEM_POWER_STATE::PowerSystemWorking).unwrap_or_default();
        for (offset, level) in capabilities.device_state.iter().enumerate() {
            // S0 … S5 are PowerSystemWorking … PowerSystemShutdown.
            if let Some(slot) = caps.DeviceState.get_mut(working + offset) {
                *slot = dx(*level);
            }
        }
        caps.DeviceWake = dx(capabilities.device_wake);
        // SAFETY: a live device; WDF copies the structure.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceSetPowerCapabilities,
                self.raw(),
                &raw mut caps
            );
        }
    }
}
