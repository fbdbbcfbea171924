//! Registry: `WdfDriverOpenParametersRegistryKey`, `WdfRegistryClose`,
//! `WdfRegistryQueryValue`, `WdfRegistryQueryULong`, `WdfRegistryAssignValue`,
//! `WdfRegistryAssignULong`, `WdfRegistryRemoveValue`, on kmdf-sim's registry.
//!
//! A `WDFKEY` is a kmdf-sim object of that kind (default parent: the driver) whose payload is
//! the kmdf-sim [`RegistryKey`]; statuses are the ones the kernel's registry routines return
//! (kmdf-sim's [`RegistryError::ntstatus`]). `DesiredAccess` is not enforced (kmdf-sim's keys
//! have no security). Value types kmdf-sim does not model (`REG_LINK`, `REG_NONE`, …) are refused
//! with `STATUS_NOT_SUPPORTED`.

use std::sync::Arc;

use kmdf_sim::object::WdfObject;
use kmdf_sim::registry::{RegistryError, RegistryKey, RegistryValue, RegistryValueType};
use kmdf_sim::Status;

use super::bindings::status::{STATUS_BUFFER_OVERFLOW, STATUS_SUCCESS};
use super::bindings::{
    ACCESS_MASK, NTSTATUS, PCUNICODE_STRING, PULONG, PVOID, PWDF_DRIVER_GLOBALS,
    PWDF_OBJECT_ATTRIBUTES, ULONG, WDFDRIVER, WDFKEY,
};
use super::objects::{self, Attributes, Object};
use super::{driver, wdf_exports};
use crate::host::{guard, machine, UnicodeString};

wdf_exports! {
    WdfDriverOpenParametersRegistryKey => wdf_driver_open_parameters_registry_key: PFN_WDFDRIVEROPENPARAMETERSREGISTRYKEY,
    WdfRegistryClose => wdf_registry_close: PFN_WDFREGISTRYCLOSE,
    WdfRegistryQueryValue => wdf_registry_query_value: PFN_WDFREGISTRYQUERYVALUE,
    WdfRegistryQueryULong => wdf_registry_query_ulong: PFN_WDFREGISTRYQUERYULONG,
    WdfRegistryAssignValue => wdf_registry_assign_value: PFN_WDFREGISTRYASSIGNVALUE,
    WdfRegistryAssignULong => wdf_registry_assign_ulong: PFN_WDFREGISTRYASSIGNULONG,
    WdfRegistryRemoveValue => wdf_registry_remove_value: PFN_WDFREGISTRYREMOVEVALUE,
}

/// The payload of a `WDFKEY`.
#[derive(Debug)]
pub struct KeyPayload(pub RegistryKey);

fn status_of(error: RegistryError) -> NTSTATUS {
    error.ntstatus()
}

/// `WdfDriverOpenParametersRegistryKey`: the driver's `Parameters` key (created if missing).
///
/// Errors: `STATUS_INVALID_PARAMETER` for a NULL out pointer or another driver's handle;
/// `STATUS_INFO_LENGTH_MISMATCH` for attributes of the wrong size; the registry's and kmdf-sim's
/// object creation errors.
extern "win64" fn wdf_driver_open_parameters_registry_key(
    globals: PWDF_DRIVER_GLOBALS,
    driver: WDFDRIVER,
    _access: ACCESS_MASK,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    key: *mut WDFKEY,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfDriverOpenParametersRegistryKey";
    guard(ROUTINE, || {
        if key.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        // SAFETY: the driver's out parameter; KMDF clears it first.
        unsafe { key.write(core::ptr::null_mut()) };
        let host = driver::of_globals(globals, ROUTINE);
        if host.handle != driver as usize {
            return Status::INVALID_PARAMETER.0;
        }
        // SAFETY: null or the driver's attributes for the call.
        let attributes = match unsafe { Attributes::read(attributes) } {
            Ok(a) => a,
            Err(status) => return status.0,
        };
        let opened = match host.sim.open_parameters_key() {
            Ok(k) => k,
            Err(status) => return status.0,
        };
        let pending = match objects::begin("WDFKEY", attributes) {
            Ok(p) => p,
            Err(status) => return status.0,
        };
        let attrs = pending.sim_attributes(ROUTINE, Some(host.sim.object()));
        let sim = match WdfObject::create(&machine(ROUTINE), "WDFKEY", attrs) {
            Ok(sim) => sim,
            Err(status) => return status.0,
        };
        let created = pending.finish(sim, KeyPayload(opened));
        // SAFETY: as above.
        unsafe { key.write(created.as_handle()) };
        STATUS_SUCCESS
    })
}

fn key_of(handle: WDFKEY, routine: &str) -> Arc<Object> {
    objects::expect_kind(handle as usize, "WDFKEY", routine)
}

fn registry_key(object: &Object) -> &RegistryKey {
    &object
        .payload::<KeyPayload>()
        .expect("a WDFKEY has a KeyPayload")
        .0
}

/// The value name of a registry call.
///
/// # Safety
/// `name` is null or points to a readable `UNICODE_STRING`.
unsafe fn value_name(name: PCUNICODE_STRING) -> Result<String, NTSTATUS> {
    // SAFETY: the caller's contract.
    unsafe { UnicodeString::read(name.cast()) }.ok_or(Status::INVALID_PARAMETER.0)
}

/// The live `WDFKEY` `key` (a stop otherwise, naming `routine`) and the value name `name`.
///
/// # Safety
/// As [`value_name`].
unsafe fn key_and_name(
    key: WDFKEY,
    name: PCUNICODE_STRING,
    routine: &str,
) -> Result<(Arc<Object>, String), NTSTATUS> {
    let object = key_of(key, routine);
    // SAFETY: the caller's contract.
    Ok((object, unsafe { value_name(name) }?))
}

/// `WdfRegistryClose`: deletes the key object.
extern "win64" fn wdf_registry_close(_globals: PWDF_DRIVER_GLOBALS, key: WDFKEY) {
    guard("WdfRegistryClose", || {
        let _ = key_of(key, "WdfRegistryClose").sim().delete();
    });
}

/// `WdfRegistryQueryValue`: copies the value's data (laid out as the kernel stores it) into
/// `Value`, and reports its length and type.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a NULL name, or a NULL `Value` with a nonzero
/// `ValueLength`; `STATUS_OBJECT_NAME_NOT_FOUND`; `STATUS_BUFFER_OVERFLOW` (with the length
/// needed in `ValueLengthQueried` and the type in `ValueType`) when `ValueLength` is too small
/// — how a driver asks for the size.
extern "win64" fn wdf_registry_query_value(
    _globals: PWDF_DRIVER_GLOBALS,
    key: WDFKEY,
    name: PCUNICODE_STRING,
    length: ULONG,
    value: PVOID,
    length_queried: PULONG,
    value_type: PULONG,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfRegistryQueryValue";
    guard(ROUTINE, || {
        // SAFETY: the routine's contract: the driver's UNICODE_STRING.
        let (object, name) = match unsafe { key_and_name(key, name, ROUTINE) } {
            Ok(found) => found,
            Err(status) => return status,
        };
        if value.is_null() && length != 0 {
            return Status::INVALID_PARAMETER.0;
        }
        let found = match registry_key(&object).query_value(&name) {
            Ok(v) => v,
            Err(e) => return status_of(e),
        };
        let bytes = found.to_bytes();
        let needed = ULONG::try_from(bytes.len()).unwrap_or(ULONG::MAX);
        // SAFETY: the driver's optional out parameters.
        unsafe {
            if !length_queried.is_null() {
                length_queried.write_unaligned(needed);
            }
            if !value_type.is_null() {
                value_type.write_unaligned(found.value_type().raw());
            }
        }
        if (length as usize) < bytes.len() {
            return STATUS_BUFFER_OVERFLOW;
        }
        if !bytes.is_empty() {
            // SAFETY: `Value` holds `ValueLength` writable bytes (the routine's contract),
            // at least `bytes.len()`.
            unsafe {
                core::ptr::copy_nonoverlapping(bytes.as_ptr(), value.cast::<u8>(), bytes.len());
            }
        }
        STATUS_SUCCESS
    })
}

/// `WdfRegistryQueryULong`.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a NULL name or out pointer;
/// `STATUS_OBJECT_NAME_NOT_FOUND`; `STATUS_OBJECT_TYPE_MISMATCH` for a value that is not a
/// `REG_DWORD`.
extern "win64" fn wdf_registry_query_ulong(
    _globals: PWDF_DRIVER_GLOBALS,
    key: WDFKEY,
    name: PCUNICODE_STRING,
    value: PULONG,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfRegistryQueryULong";
    guard(ROUTINE, || {
        // SAFETY: the routine's contract: the driver's UNICODE_STRING.
        let (object, name) = match unsafe { key_and_name(key, name, ROUTINE) } {
            Ok(found) => found,
            Err(status) => return status,
        };
        if value.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        match registry_key(&object).query_dword(&name) {
            Ok(v) => {
                // SAFETY: the driver's out parameter (checked non-null).
                unsafe { value.write_unaligned(v) };
                STATUS_SUCCESS
            }
            Err(e) => status_of(e),
        }
    })
}

/// `WdfRegistryAssignValue`: sets the value from data laid out as the kernel stores it.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a NULL name, a NULL `Value` with a nonzero length or
/// data that does not decode as `ValueType`; `STATUS_NOT_SUPPORTED` for a type kmdf-sim does not
/// model.
extern "win64" fn wdf_registry_assign_value(
    _globals: PWDF_DRIVER_GLOBALS,
    key: WDFKEY,
    name: PCUNICODE_STRING,
    value_type: ULONG,
    length: ULONG,
    value: PVOID,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfRegistryAssignValue";
    guard(ROUTINE, || {
        // SAFETY: the routine's contract: the driver's UNICODE_STRING.
        let (object, name) = match unsafe { key_and_name(key, name, ROUTINE) } {
            Ok(found) => found,
            Err(status) => return status,
        };
        let Some(kind) = RegistryValueType::from_raw(value_type) else {
            return Status::NOT_SUPPORTED.0;
        };
        let bytes = if length == 0 {
            Vec::new()
        } else if value.is_null() {
            return Status::INVALID_PARAMETER.0;
        } else {
            // SAFETY: `Value` holds `ValueLength` readable bytes (the routine's contract).
            unsafe { core::slice::from_raw_parts(value.cast::<u8>(), length as usize) }.to_vec()
        };
        let decoded = match RegistryValue::from_bytes(kind, &bytes) {
            Ok(v) => v,
            Err(e) => return status_of(e),
        };
        registry_key(&object)
            .set_value(&name, decoded)
            .map_or_else(status_of, |()| STATUS_SUCCESS)
    })
}

/// `WdfRegistryAssignULong`: a `REG_DWORD`.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a NULL name; the registry's.
extern "win64" fn wdf_registry_assign_ulong(
    _globals: PWDF_DRIVER_GLOBALS,
    key: WDFKEY,
    name: PCUNICODE_STRING,
    value: ULONG,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfRegistryAssignULong";
    guard(ROUTINE, || {
        // SAFETY: the routine's contract: the driver's UNICODE_STRING.
        let (object, name) = match unsafe { key_and_name(key, name, ROUTINE) } {
            Ok(found) => found,
            Err(status) => return status,
        };
        registry_key(&object)
            .set_value(&name, value)
            .map_or_else(status_of, |()| STATUS_SUCCESS)
    })
}

/// `WdfRegistryRemoveValue`.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a NULL name; `STATUS_OBJECT_NAME_NOT_FOUND`.
extern "win64" fn wdf_registry_remove_value(
    _globals: PWDF_DRIVER_GLOBALS,
    key: WDFKEY,
    name: PCUNICODE_STRING,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfRegistryRemoveValue";
    guard(ROUTINE, || {
        // SAFETY: the routine's contract: the driver's UNICODE_STRING.
        let (object, name) = match unsafe { key_and_name(key, name, ROUTINE) } {
            Ok(found) => found,
            Err(status) => return status,
        };
        registry_key(&object)
            .delete_value(&name)
            .map_or_else(status_of, |()| STATUS_SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::super::bindings::status::{
        STATUS_OBJECT_NAME_NOT_FOUND, STATUS_OBJECT_TYPE_MISMATCH,
    };
    use super::super::bindings::UNICODE_STRING;
    use super::super::device::testing::{create_device, TestDriver};
    use super::*;

    /// A `UNICODE_STRING` over `text` (kept alive by the caller).
    fn unicode(text: &[u16]) -> UNICODE_STRING {
        let bytes = u16::try_from(text.len() * 2).unwrap();
        UNICODE_STRING {
            Length: bytes,
            MaximumLength: bytes,
            Buffer: text.as_ptr().cast_mut(),
        }
    }

    #[test]
    #[allow(
        clippy::too_many_lines,
        reason = "one scenario over every value type and status"
    )]
    fn the_parameters_key_stores_and_answers_values_with_the_kernels_statuses() {
        let driver = TestDriver::load("hdevreg", create_device);
        let g = driver.globals;
        let _bound = driver.machine.enter();
        let mut key: WDFKEY = core::ptr::null_mut();
        let d = driver.driver as WDFDRIVER;
        assert_eq!(
            wdf_driver_open_parameters_registry_key(
                g,
                d,
                0,
                core::ptr::null_mut(),
                core::ptr::null_mut()
            ),
            Status::INVALID_PARAMETER.0
        );
        assert_eq!(
            wdf_driver_open_parameters_registry_key(g, d, 0, core::ptr::null_mut(), &raw mut key),
            STATUS_SUCCESS
        );
        let name_units: Vec<u16> = "Threshold".encode_utf16().collect();
        let name = unicode(&name_units);
        let mut out = 0_u32;
        assert_eq!(
            wdf_registry_query_ulong(g, key, &raw const name, &raw mut out),
            STATUS_OBJECT_NAME_NOT_FOUND
        );
        assert_eq!(
            wdf_registry_assign_ulong(g, key, &raw const name, 42),
            STATUS_SUCCESS
        );
        assert_eq!(
            wdf_registry_query_ulong(g, key, &raw const name, &raw mut out),
            STATUS_SUCCESS
        );
        assert_eq!(out, 42);
        // The size first, then the data.
        let (mut length, mut kind) = (0_u32, 0_u32);
        assert_eq!(
            wdf_registry_query_value(
                g,
                key,
                &raw const name,
                0,
                core::ptr::null_mut(),
                &raw mut length,
                &raw mut kind
            ),
            STATUS_BUFFER_OVERFLOW
        );
        assert_eq!((length, kind), (4, RegistryValueType::Dword.raw()));
        let mut data = [0_u8; 8];
        assert_eq!(
            wdf_registry_query_value(
                g,
                key,
                &raw const name,
                8,
                data.as_mut_ptr().cast(),
                &raw mut length,
                &raw mut kind
            ),
            STATUS_SUCCESS
        );
        assert_eq!(&data[..4], &42_u32.to_le_bytes());
        assert_eq!(
            wdf_registry_query_value(
                g,
                key,
                &raw const name,
                4,
                core::ptr::null_mut(),
                &raw mut length,
                &raw mut kind
            ),
            Status::INVALID_PARAMETER.0
        );
        // A string value: QueryULong refuses its type.
        let text: Vec<u8> = "on\0".encode_utf16().flat_map(u16::to_le_bytes).collect();
        let text_len = u32::try_from(text.len()).unwrap();
        assert_eq!(
            wdf_registry_assign_value(
                g,
                key,
                &raw const name,
                RegistryValueType::Sz.raw(),
                text_len,
                text.as_ptr().cast_mut().cast()
            ),
            STATUS_SUCCESS
        );
        assert_eq!(
            wdf_registry_query_ulong(g, key, &raw const name, &raw mut out),
            STATUS_OBJECT_TYPE_MISMATCH
        );
        // REG_LINK (6) is not modelled; a DWORD of the wrong length does not decode.
        assert_eq!(
            wdf_registry_assign_value(
                g,
                key,
                &raw const name,
                6,
                text_len,
                text.as_ptr().cast_mut().cast()
            ),
            Status::NOT_SUPPORTED.0
        );
        assert_eq!(
            wdf_registry_assign_value(
                g,
                key,
                &raw const name,
                RegistryValueType::Dword.raw(),
                3,
                text.as_ptr().cast_mut().cast()
            ),
            Status::INVALID_PARAMETER.0
        );
        assert_eq!(
            wdf_registry_remove_value(g, key, &raw const name),
            STATUS_SUCCESS
        );
        assert_eq!(
            wdf_registry_remove_value(g, key, &raw const name),
            STATUS_OBJECT_NAME_NOT_FOUND
        );
        assert_eq!(
            wdf_registry_assign_ulong(g, key, core::ptr::null(), 1),
            Status::INVALID_PARAMETER.0
        );
        wdf_registry_close(g, key);
        assert!(objects::get(key as usize).is_none());
        // The value persists in the machine's registry.
        assert_eq!(
            wdf_driver_open_parameters_registry_key(g, d, 0, core::ptr::null_mut(), &raw mut key),
            STATUS_SUCCESS
        );
        assert_eq!(
            wdf_registry_assign_ulong(g, key, &raw const name, 7),
            STATUS_SUCCESS
        );
        wdf_registry_close(g, key);
        let stored = driver
            .machine
            .registry()
            .driver_parameters("hdevreg")
            .unwrap()
            .query_dword("Threshold");
        assert_eq!(stored, Ok(7));
    }
}
