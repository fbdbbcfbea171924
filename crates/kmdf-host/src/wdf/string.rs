//! Strings: `WdfStringCreate`, `WdfStringGetUnicodeString`.
//!
//! A `WDFSTRING` is a kmdf-sim object of that kind (default parent: the driver) whose payload
//! owns the UTF-16 text. `WdfStringGetUnicodeString` describes that buffer, which stays where it
//! is while the `WDFSTRING` lives and is not assigned again (`WdfDeviceRetrieveDeviceInterfaceString`
//! assigns: the buffer described before is then replaced, as KMDF reallocates it).

use std::sync::{Mutex, MutexGuard, PoisonError};

use kmdf_sim::object::WdfObject;
use kmdf_sim::Status;

use super::bindings::status::STATUS_SUCCESS;
use super::bindings::{
    NTSTATUS, PCUNICODE_STRING, PUNICODE_STRING, PWDF_DRIVER_GLOBALS, PWDF_OBJECT_ATTRIBUTES,
    UNICODE_STRING, WDFSTRING,
};
use super::objects::{self, Attributes, Object};
use super::{driver, wdf_exports};
use crate::host::{guard, machine};

wdf_exports! {
    WdfStringCreate => wdf_string_create: PFN_WDFSTRINGCREATE,
    WdfStringGetUnicodeString => wdf_string_get_unicode_string: PFN_WDFSTRINGGETUNICODESTRING,
}

/// The payload of a `WDFSTRING`: its UTF-16 text (no terminator counted; one NUL kept after it).
#[derive(Debug, Default)]
pub struct StringPayload {
    text: Mutex<Vec<u16>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The largest string a `UNICODE_STRING` describes, in UTF-16 units (its `Length` is 16 bits).
const MAX_UNITS: usize = (u16::MAX as usize - 1) / 2;

impl StringPayload {
    fn set(&self, units: &[u16]) -> Result<(), Status> {
        if units.len() > MAX_UNITS {
            return Err(Status::INVALID_PARAMETER);
        }
        let mut text = Vec::with_capacity(units.len() + 1);
        text.extend_from_slice(units);
        text.push(0);
        *lock(&self.text) = text;
        Ok(())
    }

    /// The text, for tests and messages.
    pub fn text(&self) -> String {
        let text = lock(&self.text);
        String::from_utf16_lossy(&text[..text.len().saturating_sub(1)])
    }

    /// The `UNICODE_STRING` describing the buffer.
    fn describe(&self) -> UNICODE_STRING {
        let mut text = lock(&self.text);
        if text.is_empty() {
            text.push(0);
        }
        let units = text.len() - 1;
        // At most MAX_UNITS units (checked by `set`): the byte counts fit 16 bits.
        let length = u16::try_from(units * 2).unwrap_or(u16::MAX - 1);
        UNICODE_STRING {
            Length: length,
            MaximumLength: length.saturating_add(2),
            Buffer: text.as_mut_ptr(),
        }
    }
}

/// Replaces the text of the `WDFSTRING` `object` with `text`.
///
/// Errors: `STATUS_INVALID_PARAMETER` for a text a `UNICODE_STRING` cannot describe.
///
/// # Panics
/// Never for an object of kind `WDFSTRING`.
pub(crate) fn assign(object: &Object, text: &str) -> Result<(), Status> {
    let units: Vec<u16> = text.encode_utf16().collect();
    object
        .payload::<StringPayload>()
        .expect("a WDFSTRING has a StringPayload")
        .set(&units)
}

/// The UTF-16 units of a driver's `UNICODE_STRING`, checked as KMDF checks one: an odd length
/// or one above `MaximumLength`, or a NULL buffer with a nonzero length, is
/// `STATUS_INVALID_PARAMETER`.
///
/// # Safety
/// `s` points to a readable `UNICODE_STRING` whose buffer holds `Length` readable bytes.
unsafe fn units_of(s: PCUNICODE_STRING) -> Result<Vec<u16>, Status> {
    // SAFETY: the caller's contract.
    let s = unsafe { s.read_unaligned() };
    if s.Length % 2 != 0 || s.MaximumLength % 2 != 0 || s.Length > s.MaximumLength {
        return Err(Status::INVALID_PARAMETER);
    }
    if s.Length == 0 {
        return Ok(Vec::new());
    }
    if s.Buffer.is_null() {
        return Err(Status::INVALID_PARAMETER);
    }
    // SAFETY: as above: `Length` bytes of UTF-16 at `Buffer`.
    let units = unsafe { core::slice::from_raw_parts(s.Buffer, usize::from(s.Length / 2)) };
    Ok(units.to_vec())
}

/// `WdfStringCreate`: a string object holding a copy of `UnicodeString` (empty if NULL).
///
/// Errors: `STATUS_INVALID_PARAMETER` for a NULL out pointer or an invalid `UNICODE_STRING`;
/// `STATUS_INFO_LENGTH_MISMATCH` for attributes of the wrong size; kmdf-sim's object creation
/// errors.
extern "win64" fn wdf_string_create(
    globals: PWDF_DRIVER_GLOBALS,
    unicode: PCUNICODE_STRING,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    string: *mut WDFSTRING,
) -> NTSTATUS {
    const ROUTINE: &str = "WdfStringCreate";
    guard(ROUTINE, || {
        if string.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        let driver = driver::of_globals(globals, ROUTINE);
        let units = if unicode.is_null() {
            Vec::new()
        } else {
            // SAFETY: the routine's contract: the driver's UNICODE_STRING.
            match unsafe { units_of(unicode) } {
                Ok(u) => u,
                Err(status) => return status.0,
            }
        };
        // SAFETY: null or the driver's attributes for the call.
        let attributes = match unsafe { Attributes::read(attributes) } {
            Ok(a) => a,
            Err(status) => return status.0,
        };
        let payload = StringPayload::default();
        if let Err(status) = payload.set(&units) {
            return status.0;
        }
        let pending = match objects::begin("WDFSTRING", attributes) {
            Ok(p) => p,
            Err(status) => return status.0,
        };
        let attrs = pending.sim_attributes(ROUTINE, Some(driver.sim.object()));
        let sim = match WdfObject::create(&machine(ROUTINE), "WDFSTRING", attrs) {
            Ok(sim) => sim,
            Err(status) => return status.0,
        };
        let created = pending.finish(sim, payload);
        // SAFETY: the driver's out parameter (checked non-null above).
        unsafe { string.write(created.as_handle()) };
        STATUS_SUCCESS
    })
}

/// `WdfStringGetUnicodeString`: describes the string's buffer (valid while the `WDFSTRING`
/// lives and is not assigned again). A NULL `UnicodeString` is a driver bug KMDF's verifier
/// breaks on: the host ignores the call.
extern "win64" fn wdf_string_get_unicode_string(
    _globals: PWDF_DRIVER_GLOBALS,
    string: WDFSTRING,
    unicode: PUNICODE_STRING,
) {
    guard("WdfStringGetUnicodeString", || {
        let object =
            objects::expect_kind(string as usize, "WDFSTRING", "WdfStringGetUnicodeString");
        if unicode.is_null() {
            return;
        }
        let described = object
            .payload::<StringPayload>()
            .map(StringPayload::describe);
        if let Some(described) = described {
            // SAFETY: the driver's UNICODE_STRING to fill (checked non-null).
            unsafe { unicode.write_unaligned(described) };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unicode_string_is_checked_as_kmdf_checks_it() {
        let mut text: Vec<u16> = "abc".encode_utf16().collect();
        let mut s = UNICODE_STRING {
            Length: 6,
            MaximumLength: 6,
            Buffer: text.as_mut_ptr(),
        };
        // Every call below reads at most `Length` bytes of `text` (6), or refuses first.
        let read = |s: &UNICODE_STRING| {
            // SAFETY: see above.
            unsafe { units_of(s) }
        };
        assert_eq!(read(&s), Ok(text.clone()));
        s.Length = 5;
        assert_eq!(read(&s), Err(Status::INVALID_PARAMETER));
        s.Length = 8;
        assert_eq!(read(&s), Err(Status::INVALID_PARAMETER));
        s.Length = 2;
        s.Buffer = core::ptr::null_mut();
        assert_eq!(read(&s), Err(Status::INVALID_PARAMETER));
        s.Length = 0;
        assert_eq!(read(&s), Ok(Vec::new()));
    }

    #[test]
    fn the_payload_describes_a_terminated_buffer() {
        let payload = StringPayload::default();
        payload
            .set(&"\\??\\X".encode_utf16().collect::<Vec<_>>())
            .unwrap();
        let s = payload.describe();
        assert_eq!((s.Length, s.MaximumLength), (10, 12));
        // SAFETY: the payload's buffer holds Length + 2 bytes while `payload` lives.
        let units = unsafe { core::slice::from_raw_parts(s.Buffer, 6) };
        assert_eq!(units[5], 0);
        assert_eq!(payload.text(), "\\??\\X");
        assert_eq!(
            payload.set(&vec![0x41; MAX_UNITS + 1]),
            Err(Status::INVALID_PARAMETER)
        );
    }
}
