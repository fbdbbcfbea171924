//! `NTSTATUS` for DMF: the status values the framework and its Modules return.
//!
//! Every fallible operation in DMF for Rust returns an [`NtResult<T>`], whose error is an
//! [`NtStatus`] a caller can act on — the same numbers a C driver sees (taken from `ntstatus.h`),
//! so a status logged by a Rust driver reads the same in WinDbg as one logged by C DMF. There is
//! no panic on bad input anywhere in the framework: bad input is an `NtStatus`.
//!
//! An `NTSTATUS` is a 32-bit value whose top two bits give its severity
//! ([`Severity::Success`], [`Severity::Informational`], [`Severity::Warning`],
//! [`Severity::Error`]); `NT_SUCCESS(s)` is "not negative", so success and informational values are
//! successes and warnings and errors are failures ([`NtStatus::is_success`]).
//!
//! ```
//! use dmf_core::status::{NtResult, NtStatus};
//!
//! fn parse(len: usize) -> NtResult<u32> {
//!     if len < 4 {
//!         return Err(NtStatus::BUFFER_TOO_SMALL);
//!     }
//!     Ok(42)
//! }
//!
//! assert_eq!(parse(2), Err(NtStatus::BUFFER_TOO_SMALL));
//! assert_eq!(format!("{:?}", NtStatus::BUFFER_TOO_SMALL), "STATUS_BUFFER_TOO_SMALL");
//! assert!(NtStatus::PENDING.is_success());
//! assert!(NtStatus::BUFFER_TOO_SMALL.is_error());
//! assert_eq!(NtStatus::from_raw(0xC000_0184_u32 as i32), NtStatus::INVALID_DEVICE_STATE);
//! ```

use core::fmt;

/// Result of a DMF operation: the value, or the `NTSTATUS` that explains the failure.
pub type NtResult<T> = Result<T, NtStatus>;

/// The severity encoded in the top two bits of an `NTSTATUS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// `STATUS_SEVERITY_SUCCESS` (0).
    Success,
    /// `STATUS_SEVERITY_INFORMATIONAL` (1).
    Informational,
    /// `STATUS_SEVERITY_WARNING` (2).
    Warning,
    /// `STATUS_SEVERITY_ERROR` (3).
    Error,
}

/// An `NTSTATUS` value: a transparent `i32`, layout-compatible with the C type.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct NtStatus(i32);

static_assertions::assert_eq_size!(NtStatus, i32);
static_assertions::assert_eq_align!(NtStatus, i32);

/// Declares the named status values once: the constants, the name table `Debug` prints from, and
/// [`for_each_nt_status!`], the list of `(NAME, STATUS_NAME)` pairs for code that checks the
/// values against another source (the kmdf backend compares each with the WDK headers' value at
/// compile time, `platform/kmdf/pins.rs`; this module itself names no WDK crate).
///
/// Each entry is `NAME (STATUS_NAME) = value;`: the constant's name, the C name in `ntstatus.h`,
/// and the value as `ntstatus.h` writes it. `$d` is a `$` token, so that the generated
/// `macro_rules!` can declare its own metavariable.
macro_rules! nt_statuses {
    ($d:tt $( $(#[$doc:meta])* $name:ident ($cname:ident) = $value:literal; )*) => {
        impl NtStatus {
            $(
                $(#[$doc])*
                #[allow(clippy::cast_possible_wrap)] // NTSTATUS literals are written unsigned, as in ntstatus.h
                pub const $name: NtStatus = NtStatus($value as u32 as i32);
            )*
        }

        /// `(value, "STATUS_NAME")` for every named status, in declaration order.
        const NAMES: &[(NtStatus, &str)] = &[
            $( (NtStatus::$name, stringify!($cname)), )*
        ];

        /// Calls `$callback! { (NAME, STATUS_NAME) … }` with every named status, in declaration
        /// order: `NAME` is the associated constant of [`NtStatus`], `STATUS_NAME` its C name.
        #[doc(hidden)]
        #[allow(unused_macros, reason = "used only by the kmdf backend's compile-time checks")]
        macro_rules! for_each_nt_status {
            ($d callback:ident) => {
                $d callback! { $( ($name, $cname) )* }
            };
        }
        #[allow(unused_imports, reason = "used only by the kmdf backend's compile-time checks")]
        pub(crate) use for_each_nt_status;
    };
}

nt_statuses! {
    $
    /// `STATUS_SUCCESS`: the operation completed successfully.
    SUCCESS (STATUS_SUCCESS) = 0x0000_0000;
    /// `STATUS_WAIT_1`: the second object of a multiple-object wait was signalled.
    WAIT_1 (STATUS_WAIT_1) = 0x0000_0001;
    /// `STATUS_ABANDONED`: a wait was satisfied by an abandoned mutant.
    ABANDONED (STATUS_ABANDONED) = 0x0000_0080;
    /// `STATUS_USER_APC`: a wait was ended by a user-mode APC.
    USER_APC (STATUS_USER_APC) = 0x0000_00C0;
    /// `STATUS_ALERTED`: an alertable wait was alerted.
    ALERTED (STATUS_ALERTED) = 0x0000_0101;
    /// `STATUS_TIMEOUT`: a wait ended because its timeout expired (a success code).
    TIMEOUT (STATUS_TIMEOUT) = 0x0000_0102;
    /// `STATUS_PENDING`: the operation will complete later.
    PENDING (STATUS_PENDING) = 0x0000_0103;
    /// `STATUS_REPARSE`: the object name must be reparsed.
    REPARSE (STATUS_REPARSE) = 0x0000_0104;
    /// `STATUS_MORE_ENTRIES`: more entries are available than were returned.
    MORE_ENTRIES (STATUS_MORE_ENTRIES) = 0x0000_0105;
    /// `STATUS_OBJECT_NAME_EXISTS`: the object already existed and was opened (informational).
    OBJECT_NAME_EXISTS (STATUS_OBJECT_NAME_EXISTS) = 0x4000_0000;
    /// `STATUS_BUFFER_OVERFLOW`: the data did not fit; what fit was returned (a warning).
    BUFFER_OVERFLOW (STATUS_BUFFER_OVERFLOW) = 0x8000_0005;
    /// `STATUS_DEVICE_BUSY`: the device is busy (a warning).
    DEVICE_BUSY (STATUS_DEVICE_BUSY) = 0x8000_0011;
    /// `STATUS_NO_MORE_ENTRIES`: an enumeration has no more entries (a warning).
    NO_MORE_ENTRIES (STATUS_NO_MORE_ENTRIES) = 0x8000_001A;
    /// `STATUS_UNSUCCESSFUL`: the operation failed.
    UNSUCCESSFUL (STATUS_UNSUCCESSFUL) = 0xC000_0001;
    /// `STATUS_NOT_IMPLEMENTED`: the requested operation is not implemented.
    NOT_IMPLEMENTED (STATUS_NOT_IMPLEMENTED) = 0xC000_0002;
    /// `STATUS_INFO_LENGTH_MISMATCH`: the information length does not match the class.
    INFO_LENGTH_MISMATCH (STATUS_INFO_LENGTH_MISMATCH) = 0xC000_0004;
    /// `STATUS_INVALID_HANDLE`: the handle is not valid.
    INVALID_HANDLE (STATUS_INVALID_HANDLE) = 0xC000_0008;
    /// `STATUS_INVALID_PARAMETER`: a parameter is not valid.
    INVALID_PARAMETER (STATUS_INVALID_PARAMETER) = 0xC000_000D;
    /// `STATUS_NO_SUCH_DEVICE`: the device does not exist.
    NO_SUCH_DEVICE (STATUS_NO_SUCH_DEVICE) = 0xC000_000E;
    /// `STATUS_INVALID_DEVICE_REQUEST`: the request is not valid for this device.
    INVALID_DEVICE_REQUEST (STATUS_INVALID_DEVICE_REQUEST) = 0xC000_0010;
    /// `STATUS_END_OF_FILE`: the end of the data was reached.
    END_OF_FILE (STATUS_END_OF_FILE) = 0xC000_0011;
    /// `STATUS_NO_MEMORY`: not enough virtual memory.
    NO_MEMORY (STATUS_NO_MEMORY) = 0xC000_0017;
    /// `STATUS_ACCESS_DENIED`: the caller lacks the access the operation requires.
    ACCESS_DENIED (STATUS_ACCESS_DENIED) = 0xC000_0022;
    /// `STATUS_BUFFER_TOO_SMALL`: the buffer is too small for the data.
    BUFFER_TOO_SMALL (STATUS_BUFFER_TOO_SMALL) = 0xC000_0023;
    /// `STATUS_OBJECT_TYPE_MISMATCH`: the object is not of the expected type.
    OBJECT_TYPE_MISMATCH (STATUS_OBJECT_TYPE_MISMATCH) = 0xC000_0024;
    /// `STATUS_OBJECT_NAME_NOT_FOUND`: no object has that name.
    OBJECT_NAME_NOT_FOUND (STATUS_OBJECT_NAME_NOT_FOUND) = 0xC000_0034;
    /// `STATUS_OBJECT_NAME_COLLISION`: an object with that name already exists.
    OBJECT_NAME_COLLISION (STATUS_OBJECT_NAME_COLLISION) = 0xC000_0035;
    /// `STATUS_DATA_ERROR`: a data error occurred.
    DATA_ERROR (STATUS_DATA_ERROR) = 0xC000_003E;
    /// `STATUS_SHARING_VIOLATION`: the object is opened exclusively by someone else.
    SHARING_VIOLATION (STATUS_SHARING_VIOLATION) = 0xC000_0043;
    /// `STATUS_QUOTA_EXCEEDED`: a quota was exceeded.
    QUOTA_EXCEEDED (STATUS_QUOTA_EXCEEDED) = 0xC000_0044;
    /// `STATUS_DELETE_PENDING`: the object is being deleted.
    DELETE_PENDING (STATUS_DELETE_PENDING) = 0xC000_0056;
    /// `STATUS_PRIVILEGE_NOT_HELD`: the caller does not hold a required privilege.
    PRIVILEGE_NOT_HELD (STATUS_PRIVILEGE_NOT_HELD) = 0xC000_0061;
    /// `STATUS_INTEGER_OVERFLOW`: an integer computation overflowed.
    INTEGER_OVERFLOW (STATUS_INTEGER_OVERFLOW) = 0xC000_0095;
    /// `STATUS_INSUFFICIENT_RESOURCES`: not enough system resources (pool, handles, …).
    INSUFFICIENT_RESOURCES (STATUS_INSUFFICIENT_RESOURCES) = 0xC000_009A;
    /// `STATUS_DEVICE_DATA_ERROR`: the device reported a data error.
    DEVICE_DATA_ERROR (STATUS_DEVICE_DATA_ERROR) = 0xC000_009C;
    /// `STATUS_DEVICE_NOT_CONNECTED`: the device is not connected.
    DEVICE_NOT_CONNECTED (STATUS_DEVICE_NOT_CONNECTED) = 0xC000_009D;
    /// `STATUS_DEVICE_POWER_FAILURE`: the device failed a power transition.
    DEVICE_POWER_FAILURE (STATUS_DEVICE_POWER_FAILURE) = 0xC000_009E;
    /// `STATUS_DEVICE_NOT_READY`: the device is not ready.
    DEVICE_NOT_READY (STATUS_DEVICE_NOT_READY) = 0xC000_00A3;
    /// `STATUS_IO_TIMEOUT`: an I/O operation timed out.
    IO_TIMEOUT (STATUS_IO_TIMEOUT) = 0xC000_00B5;
    /// `STATUS_NOT_SUPPORTED`: the request is not supported.
    NOT_SUPPORTED (STATUS_NOT_SUPPORTED) = 0xC000_00BB;
    /// `STATUS_DEVICE_DOES_NOT_EXIST`: the device does not exist.
    DEVICE_DOES_NOT_EXIST (STATUS_DEVICE_DOES_NOT_EXIST) = 0xC000_00C0;
    /// `STATUS_REQUEST_NOT_ACCEPTED`: the request was not accepted.
    REQUEST_NOT_ACCEPTED (STATUS_REQUEST_NOT_ACCEPTED) = 0xC000_00D0;
    /// `STATUS_INTERNAL_ERROR`: an internal error occurred.
    INTERNAL_ERROR (STATUS_INTERNAL_ERROR) = 0xC000_00E5;
    /// `STATUS_INVALID_USER_BUFFER`: a user buffer is not valid.
    INVALID_USER_BUFFER (STATUS_INVALID_USER_BUFFER) = 0xC000_00E8;
    /// `STATUS_CANCELLED`: the operation was cancelled.
    CANCELLED (STATUS_CANCELLED) = 0xC000_0120;
    /// `STATUS_FILE_CLOSED`: the file handle was closed.
    FILE_CLOSED (STATUS_FILE_CLOSED) = 0xC000_0128;
    /// `STATUS_DEVICE_CONFIGURATION_ERROR`: the device is misconfigured.
    DEVICE_CONFIGURATION_ERROR (STATUS_DEVICE_CONFIGURATION_ERROR) = 0xC000_0182;
    /// `STATUS_INVALID_DEVICE_STATE`: the device (or Module) is not in a state that allows it.
    INVALID_DEVICE_STATE (STATUS_INVALID_DEVICE_STATE) = 0xC000_0184;
    /// `STATUS_IO_DEVICE_ERROR`: an I/O error occurred on the device.
    IO_DEVICE_ERROR (STATUS_IO_DEVICE_ERROR) = 0xC000_0185;
    /// `STATUS_INVALID_BUFFER_SIZE`: the buffer size is not valid for the operation.
    INVALID_BUFFER_SIZE (STATUS_INVALID_BUFFER_SIZE) = 0xC000_0206;
    /// `STATUS_NOT_FOUND`: the object was not found.
    NOT_FOUND (STATUS_NOT_FOUND) = 0xC000_0225;
    /// `STATUS_RETRY`: the operation should be retried.
    RETRY (STATUS_RETRY) = 0xC000_022D;
    /// `STATUS_DEVICE_REMOVED`: the device has been removed.
    DEVICE_REMOVED (STATUS_DEVICE_REMOVED) = 0xC000_02B6;
    /// `STATUS_POWER_STATE_INVALID`: the device is in a power state that does not allow it.
    POWER_STATE_INVALID (STATUS_POWER_STATE_INVALID) = 0xC000_02D3;
}

impl NtStatus {
    /// `STATUS_WAIT_0`: the first object of a wait was signalled (the same value as SUCCESS).
    pub const WAIT_0: NtStatus = NtStatus::SUCCESS;

    /// Wraps a raw `NTSTATUS` (any value is allowed; unknown values print in hex).
    #[inline]
    pub const fn from_raw(raw: i32) -> Self {
        NtStatus(raw)
    }

    /// The raw `NTSTATUS` value.
    #[inline]
    pub const fn to_raw(self) -> i32 {
        self.0
    }

    /// The raw value as the unsigned number `ntstatus.h` writes.
    #[inline]
    #[allow(clippy::cast_sign_loss)] // reinterpretation of the same 32 bits, by definition
    pub const fn to_bits(self) -> u32 {
        self.0 as u32
    }

    /// `NT_SUCCESS`: success and informational values (the value is not negative).
    #[inline]
    pub const fn is_success(self) -> bool {
        self.0 >= 0
    }

    /// `NT_INFORMATION`: the severity is informational.
    #[inline]
    pub const fn is_information(self) -> bool {
        matches!(self.severity(), Severity::Informational)
    }

    /// `NT_WARNING`: the severity is warning.
    #[inline]
    pub const fn is_warning(self) -> bool {
        matches!(self.severity(), Severity::Warning)
    }

    /// `NT_ERROR`: the severity is error.
    #[inline]
    pub const fn is_error(self) -> bool {
        matches!(self.severity(), Severity::Error)
    }

    /// The severity in the top two bits.
    #[inline]
    pub const fn severity(self) -> Severity {
        match self.to_bits() >> 30 {
            0 => Severity::Success,
            1 => Severity::Informational,
            2 => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// The facility field (bits 16..28).
    #[inline]
    pub const fn facility(self) -> u16 {
        ((self.to_bits() >> 16) & 0x0FFF) as u16
    }

    /// The code field (bits 0..16).
    #[inline]
    pub const fn code(self) -> u16 {
        (self.to_bits() & 0xFFFF) as u16
    }

    /// `Ok(())` for a success value (as `NT_SUCCESS` decides), `Err(self)` otherwise.
    #[inline]
    pub const fn ok(self) -> NtResult<()> {
        if self.is_success() {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// The `STATUS_…` name of a known value, or `None`.
    pub fn name(self) -> Option<&'static str> {
        NAMES
            .iter()
            .find(|(status, _)| *status == self)
            .map(|(_, name)| *name)
    }

    /// The status a result stands for: SUCCESS for `Ok`, the error otherwise.
    #[inline]
    pub fn from_result<T>(result: &NtResult<T>) -> NtStatus {
        match result {
            Ok(_) => NtStatus::SUCCESS,
            Err(status) => *status,
        }
    }
}

impl Default for NtStatus {
    fn default() -> Self {
        NtStatus::SUCCESS
    }
}

impl fmt::Debug for NtStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "NTSTATUS({:#010X})", self.to_bits()),
        }
    }
}

impl fmt::Display for NtStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({:#010X})", self.to_bits()),
            None => write!(f, "NTSTATUS {:#010X}", self.to_bits()),
        }
    }
}

impl From<NtStatus> for i32 {
    fn from(status: NtStatus) -> i32 {
        status.0
    }
}

impl From<i32> for NtStatus {
    fn from(raw: i32) -> NtStatus {
        NtStatus(raw)
    }
}

impl<T> From<NtResult<T>> for NtStatus {
    fn from(result: NtResult<T>) -> NtStatus {
        NtStatus::from_result(&result)
    }
}

impl core::error::Error for NtStatus {}

#[cfg(test)]
#[allow(clippy::cast_possible_wrap)] // tests write NTSTATUS values unsigned, as ntstatus.h does
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn values_match_ntstatus_h() {
        let expected: &[(NtStatus, u32)] = &[
            (NtStatus::SUCCESS, 0x0000_0000),
            (NtStatus::TIMEOUT, 0x0000_0102),
            (NtStatus::PENDING, 0x0000_0103),
            (NtStatus::NO_MORE_ENTRIES, 0x8000_001A),
            (NtStatus::UNSUCCESSFUL, 0xC000_0001),
            (NtStatus::INVALID_PARAMETER, 0xC000_000D),
            (NtStatus::ACCESS_DENIED, 0xC000_0022),
            (NtStatus::BUFFER_TOO_SMALL, 0xC000_0023),
            (NtStatus::DELETE_PENDING, 0xC000_0056),
            (NtStatus::INSUFFICIENT_RESOURCES, 0xC000_009A),
            (NtStatus::DEVICE_NOT_CONNECTED, 0xC000_009D),
            (NtStatus::NOT_SUPPORTED, 0xC000_00BB),
            (NtStatus::CANCELLED, 0xC000_0120),
            (NtStatus::INVALID_DEVICE_STATE, 0xC000_0184),
            (NtStatus::INVALID_BUFFER_SIZE, 0xC000_0206),
            (NtStatus::NOT_FOUND, 0xC000_0225),
        ];
        for (status, bits) in expected {
            assert_eq!(status.to_bits(), *bits, "{status:?}");
        }
    }

    #[test]
    fn names_are_unique_and_prefixed() {
        for (i, (status, name)) in NAMES.iter().enumerate() {
            assert!(name.starts_with("STATUS_"), "{name}");
            for (other, other_name) in &NAMES[i + 1..] {
                assert_ne!(status, other, "{name} and {other_name} share a value");
            }
        }
    }

    #[test]
    fn for_each_nt_status_lists_every_name_with_its_c_name() {
        macro_rules! collect {
            ($( ($name:ident, $cname:ident) )*) => {
                &[$( (NtStatus::$name, stringify!($name), stringify!($cname)) ),*]
            };
        }
        let listed: &[(NtStatus, &str, &str)] = for_each_nt_status!(collect);
        assert_eq!(listed.len(), NAMES.len());
        for ((status, name, cname), (named, printed)) in listed.iter().zip(NAMES) {
            assert_eq!(status, named);
            assert_eq!(*cname, *printed);
            assert_eq!(cname.strip_prefix("STATUS_"), Some(*name), "{cname}");
        }
    }

    #[test]
    fn severity_and_success() {
        assert_eq!(NtStatus::SUCCESS.severity(), Severity::Success);
        assert_eq!(
            NtStatus::OBJECT_NAME_EXISTS.severity(),
            Severity::Informational
        );
        assert_eq!(NtStatus::NO_MORE_ENTRIES.severity(), Severity::Warning);
        assert_eq!(NtStatus::NOT_FOUND.severity(), Severity::Error);
        assert!(NtStatus::TIMEOUT.is_success());
        assert!(
            NtStatus::OBJECT_NAME_EXISTS.is_success()
                && NtStatus::OBJECT_NAME_EXISTS.is_information()
        );
        assert!(!NtStatus::BUFFER_OVERFLOW.is_success() && NtStatus::BUFFER_OVERFLOW.is_warning());
        assert!(NtStatus::CANCELLED.is_error());
        assert_eq!(NtStatus::INVALID_DEVICE_STATE.code(), 0x0184);
        assert_eq!(NtStatus::INVALID_DEVICE_STATE.facility(), 0);
        assert_eq!(NtStatus::from_raw(0xC00D_0001_u32 as i32).facility(), 0x00D);
    }

    #[test]
    fn debug_prints_the_name_or_hex() {
        assert_eq!(format!("{:?}", NtStatus::CANCELLED), "STATUS_CANCELLED");
        assert_eq!(
            format!("{:?}", NtStatus::from_raw(0x1234)),
            "NTSTATUS(0x00001234)"
        );
        assert_eq!(
            format!("{}", NtStatus::NOT_SUPPORTED),
            "STATUS_NOT_SUPPORTED (0xC00000BB)"
        );
        assert_eq!(format!("{:?}", NtStatus::WAIT_0), "STATUS_SUCCESS");
    }

    #[test]
    fn result_conversions() {
        assert_eq!(NtStatus::SUCCESS.ok(), Ok(()));
        assert_eq!(NtStatus::PENDING.ok(), Ok(()));
        assert_eq!(NtStatus::NOT_FOUND.ok(), Err(NtStatus::NOT_FOUND));
        let ok: NtResult<u8> = Ok(1);
        let err: NtResult<u8> = Err(NtStatus::CANCELLED);
        assert_eq!(NtStatus::from(ok), NtStatus::SUCCESS);
        assert_eq!(NtStatus::from(err), NtStatus::CANCELLED);
        assert_eq!(i32::from(NtStatus::UNSUCCESSFUL), 0xC000_0001_u32 as i32);
        assert_eq!(NtStatus::from(-1_073_741_823), NtStatus::UNSUCCESSFUL);
    }
}
