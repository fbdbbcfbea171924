//! `Status`: a minimal `NTSTATUS` for the simulator.
//!
//! kmdf-sim does not depend on dmf-core, so it carries its own tiny status type: a transparent
//! `i32` newtype with the handful of `NTSTATUS` values the simulated framework returns. The numbers
//! are those of `ntstatus.h`. Like `NT_SUCCESS`, [`Status::is_success`] is true for every value whose
//! sign bit is clear, so informational values such as [`Status::TIMEOUT`] and [`Status::PENDING`]
//! count as success (see KeWaitForSingleObject: "all return values satisfy NT_SUCCESS").

use core::fmt;

/// An `NTSTATUS` value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Status(pub i32);

/// Reinterprets the bits of an `ntstatus.h` constant (written as `u32`) as the signed `NTSTATUS`.
const fn nt(v: u32) -> Status {
    Status(i32::from_ne_bytes(v.to_ne_bytes()))
}

impl Status {
    /// `STATUS_SUCCESS` (0x00000000).
    pub const SUCCESS: Status = nt(0);
    /// `STATUS_TIMEOUT` (0x00000102): a wait timed out. A success value.
    pub const TIMEOUT: Status = nt(0x102);
    /// `STATUS_PENDING` (0x00000103): the operation completes later. A success value.
    pub const PENDING: Status = nt(0x103);
    /// `STATUS_UNSUCCESSFUL` (0xC0000001).
    pub const UNSUCCESSFUL: Status = nt(0xC000_0001);
    /// `STATUS_INVALID_PARAMETER` (0xC000000D).
    pub const INVALID_PARAMETER: Status = nt(0xC000_000D);
    /// `STATUS_NO_SUCH_DEVICE` (0xC000000E).
    pub const NO_SUCH_DEVICE: Status = nt(0xC000_000E);
    /// `STATUS_INVALID_DEVICE_REQUEST` (0xC0000010).
    pub const INVALID_DEVICE_REQUEST: Status = nt(0xC000_0010);
    /// `STATUS_ACCESS_DENIED` (0xC0000022).
    pub const ACCESS_DENIED: Status = nt(0xC000_0022);
    /// `STATUS_BUFFER_TOO_SMALL` (0xC0000023).
    pub const BUFFER_TOO_SMALL: Status = nt(0xC000_0023);
    /// `STATUS_DELETE_PENDING` (0xC0000056).
    pub const DELETE_PENDING: Status = nt(0xC000_0056);
    /// `STATUS_INSUFFICIENT_RESOURCES` (0xC000009A).
    pub const INSUFFICIENT_RESOURCES: Status = nt(0xC000_009A);
    /// `STATUS_NOT_SUPPORTED` (0xC00000BB).
    pub const NOT_SUPPORTED: Status = nt(0xC000_00BB);
    /// `STATUS_CANCELLED` (0xC0000120).
    pub const CANCELLED: Status = nt(0xC000_0120);
    /// `STATUS_INVALID_DEVICE_STATE` (0xC0000184).
    pub const INVALID_DEVICE_STATE: Status = nt(0xC000_0184);
    /// `STATUS_DEVICE_REMOVED` (0xC00002B6).
    pub const DEVICE_REMOVED: Status = nt(0xC000_02B6);
    /// `STATUS_BUFFER_OVERFLOW` (0x80000005): a warning — the data did not fit; partial data.
    pub const BUFFER_OVERFLOW: Status = nt(0x8000_0005);
    /// `STATUS_NO_MORE_ENTRIES` (0x8000001A): e.g. a manual queue is empty.
    pub const NO_MORE_ENTRIES: Status = nt(0x8000_001A);
    /// `STATUS_OBJECT_NAME_NOT_FOUND` (0xC0000034): an open by a name that does not exist.
    pub const OBJECT_NAME_NOT_FOUND: Status = nt(0xC000_0034);
    /// `STATUS_OBJECT_NAME_COLLISION` (0xC0000035): a name (e.g. a symbolic link) already exists.
    pub const OBJECT_NAME_COLLISION: Status = nt(0xC000_0035);
    /// `STATUS_OBJECT_NAME_INVALID` (0xC0000033): an object name that is not valid (empty).
    pub const OBJECT_NAME_INVALID: Status = nt(0xC000_0033);
    /// `STATUS_OBJECT_PATH_SYNTAX_BAD` (0xC000003B): a name that is not a path from the root.
    pub const OBJECT_PATH_SYNTAX_BAD: Status = nt(0xC000_003B);
    /// `STATUS_IO_TIMEOUT` (0xC00000B5): a synchronous send timed out.
    pub const IO_TIMEOUT: Status = nt(0xC000_00B5);
    /// `STATUS_NOT_FOUND` (0xC0000225).
    pub const NOT_FOUND: Status = nt(0xC000_0225);
    /// `STATUS_WDF_BUSY` (0xC0200204): e.g. `WdfDeviceEnqueueRequest` into a queue that does not
    /// accept requests.
    pub const WDF_BUSY: Status = nt(0xC020_0204);
    /// `STATUS_WDF_PARENT_NOT_SPECIFIED` (0xC0200212): a `Wdf…Create` that needs a parent
    /// object (a timer, a work item) got none.
    pub const WDF_PARENT_NOT_SPECIFIED: Status = nt(0xC020_0212);

    const NAMES: [(Status, &'static str); 25] = [
        (Status::SUCCESS, "STATUS_SUCCESS"),
        (Status::TIMEOUT, "STATUS_TIMEOUT"),
        (Status::PENDING, "STATUS_PENDING"),
        (Status::UNSUCCESSFUL, "STATUS_UNSUCCESSFUL"),
        (Status::INVALID_PARAMETER, "STATUS_INVALID_PARAMETER"),
        (Status::NO_SUCH_DEVICE, "STATUS_NO_SUCH_DEVICE"),
        (
            Status::INVALID_DEVICE_REQUEST,
            "STATUS_INVALID_DEVICE_REQUEST",
        ),
        (Status::ACCESS_DENIED, "STATUS_ACCESS_DENIED"),
        (Status::BUFFER_TOO_SMALL, "STATUS_BUFFER_TOO_SMALL"),
        (Status::DELETE_PENDING, "STATUS_DELETE_PENDING"),
        (
            Status::INSUFFICIENT_RESOURCES,
            "STATUS_INSUFFICIENT_RESOURCES",
        ),
        (Status::NOT_SUPPORTED, "STATUS_NOT_SUPPORTED"),
        (Status::CANCELLED, "STATUS_CANCELLED"),
        (Status::INVALID_DEVICE_STATE, "STATUS_INVALID_DEVICE_STATE"),
        (Status::DEVICE_REMOVED, "STATUS_DEVICE_REMOVED"),
        (Status::BUFFER_OVERFLOW, "STATUS_BUFFER_OVERFLOW"),
        (Status::NO_MORE_ENTRIES, "STATUS_NO_MORE_ENTRIES"),
        (
            Status::OBJECT_NAME_NOT_FOUND,
            "STATUS_OBJECT_NAME_NOT_FOUND",
        ),
        (
            Status::OBJECT_NAME_COLLISION,
            "STATUS_OBJECT_NAME_COLLISION",
        ),
        (Status::OBJECT_NAME_INVALID, "STATUS_OBJECT_NAME_INVALID"),
        (
            Status::OBJECT_PATH_SYNTAX_BAD,
            "STATUS_OBJECT_PATH_SYNTAX_BAD",
        ),
        (Status::IO_TIMEOUT, "STATUS_IO_TIMEOUT"),
        (Status::NOT_FOUND, "STATUS_NOT_FOUND"),
        (Status::WDF_BUSY, "STATUS_WDF_BUSY"),
        (
            Status::WDF_PARENT_NOT_SPECIFIED,
            "STATUS_WDF_PARENT_NOT_SPECIFIED",
        ),
    ];

    /// `NT_SUCCESS`: true for success and informational values (sign bit clear).
    pub const fn is_success(self) -> bool {
        self.0 >= 0
    }

    /// The value as the unsigned 32-bit number `ntstatus.h` writes.
    pub const fn as_u32(self) -> u32 {
        u32::from_ne_bytes(self.0.to_ne_bytes())
    }

    /// The `ntstatus.h` name of the value, if it is one of the constants above.
    pub fn name(self) -> Option<&'static str> {
        Self::NAMES
            .iter()
            .find(|(s, _)| *s == self)
            .map(|(_, n)| *n)
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Status({:#010X})", self.as_u32()),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::Status;

    #[test]
    fn values_names_and_success() {
        assert_eq!(Status::UNSUCCESSFUL.as_u32(), 0xC000_0001);
        assert_eq!(Status::DEVICE_REMOVED.as_u32(), 0xC000_02B6);
        assert!(Status::SUCCESS.is_success());
        assert!(Status::TIMEOUT.is_success());
        assert!(Status::PENDING.is_success());
        assert!(!Status::CANCELLED.is_success());
        assert_eq!(format!("{:?}", Status::TIMEOUT), "STATUS_TIMEOUT");
        assert_eq!(format!("{:?}", Status(0x1234)), "Status(0x00001234)");
    }
}
