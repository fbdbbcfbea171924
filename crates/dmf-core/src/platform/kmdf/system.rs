//! The wall clock and named events on the kernel: NT executive and object-manager routines
//! through `wdk_sys::ntddk`.
//!
//! | Item | Calls |
//! |---|---|
//! | [`WallClock`] | `KeQuerySystemTimePrecise` / `ExSystemTimeToLocalTime` / `RtlTimeToTimeFields` |
//! | [`NamedEvent`] | `ZwOpenEvent` (`InitializeObjectAttributes` with `OBJ_KERNEL_HANDLE`) / `ObReferenceObjectByHandle` + `KeSetEvent` + `ObfDereferenceObject` / `ZwClose` |

use core::mem::{offset_of, size_of};
use core::ptr::null_mut;

use static_assertions::const_assert_eq;
use wdk_sys::{HANDLE, KPRIORITY, LARGE_INTEGER, OBJECT_ATTRIBUTES, PVOID, TIME_FIELDS, ULONG};

use super::wdf::{nt_result, UnicodeName, FALSE, KERNEL_MODE};
use crate::platform::contract::{PlatformNamedEvent, PlatformWallClock, TimeFields};
use crate::status::NtResult;

// x64 layouts of wdm.h: a `LARGE_INTEGER` is read and written as its `QuadPart` (an `i64`);
// `TIME_FIELDS` is eight `CSHORT`s; `OBJECT_ATTRIBUTES` is filled member by member below.
const_assert_eq!(size_of::<LARGE_INTEGER>(), size_of::<i64>());
const_assert_eq!(size_of::<TIME_FIELDS>(), 16);
const_assert_eq!(size_of::<OBJECT_ATTRIBUTES>(), 48);
const_assert_eq!(offset_of!(OBJECT_ATTRIBUTES, Length), 0);
const_assert_eq!(offset_of!(OBJECT_ATTRIBUTES, RootDirectory), 8);
const_assert_eq!(offset_of!(OBJECT_ATTRIBUTES, ObjectName), 16);
const_assert_eq!(offset_of!(OBJECT_ATTRIBUTES, Attributes), 24);
const_assert_eq!(offset_of!(OBJECT_ATTRIBUTES, SecurityDescriptor), 32);
const_assert_eq!(offset_of!(OBJECT_ATTRIBUTES, SecurityQualityOfService), 40);

/// `sizeof(OBJECT_ATTRIBUTES)` as the `ULONG` of its `Length` member.
#[allow(
    clippy::cast_possible_truncation,
    reason = "OBJECT_ATTRIBUTES is 48 bytes (asserted above)"
)]
const OBJECT_ATTRIBUTES_LENGTH: ULONG = size_of::<OBJECT_ATTRIBUTES>() as ULONG;

/// `IO_NO_INCREMENT` as the `KPRIORITY` `KeSetEvent` takes.
#[allow(
    clippy::cast_possible_wrap,
    reason = "IO_NO_INCREMENT is 0; the assertion below proves the value survives"
)]
const NO_INCREMENT: KPRIORITY = wdk_sys::IO_NO_INCREMENT as KPRIORITY;
const_assert_eq!(NO_INCREMENT.unsigned_abs(), wdk_sys::IO_NO_INCREMENT);

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct WallClock;

impl PlatformWallClock for WallClock {
    /// `KeQuerySystemTimePrecise` (any IRQL).
    fn system_time() -> i64 {
        let mut time: i64 = 0;
        // SAFETY: an out pointer to our local, a LARGE_INTEGER's size and alignment (asserted).
        unsafe {
            wdk_sys::ntddk::KeQuerySystemTimePrecise((&raw mut time).cast::<LARGE_INTEGER>());
        }
        time
    }

    /// `ExSystemTimeToLocalTime` (any IRQL).
    fn system_time_to_local_time(system_time: i64) -> i64 {
        let mut system = system_time;
        let mut local: i64 = 0;
        // SAFETY: both are our locals with a LARGE_INTEGER's layout (asserted).
        unsafe {
            wdk_sys::ntddk::ExSystemTimeToLocalTime(
                (&raw mut system).cast::<LARGE_INTEGER>(),
                (&raw mut local).cast::<LARGE_INTEGER>(),
            );
        }
        local
    }

    /// `RtlTimeToTimeFields` (any IRQL).
    fn time_fields(time: i64) -> TimeFields {
        let mut time = time;
        let mut fields = TIME_FIELDS::default();
        // SAFETY: our locals; `time` has a LARGE_INTEGER's layout (asserted).
        unsafe {
            wdk_sys::ntddk::RtlTimeToTimeFields(
                (&raw mut time).cast::<LARGE_INTEGER>(),
                &raw mut fields,
            );
        }
        // Every member RtlTimeToTimeFields writes is non-negative (a year, a month, …).
        let field = |value: i16| u16::try_from(value).unwrap_or_default();
        TimeFields {
            year: field(fields.Year),
            month: field(fields.Month),
            day: field(fields.Day),
            hour: field(fields.Hour),
            minute: field(fields.Minute),
            second: field(fields.Second),
            milliseconds: field(fields.Milliseconds),
            weekday: field(fields.Weekday),
        }
    }
}

/// A kernel handle (`OBJ_KERNEL_HANDLE`) to a named event, opened with `EVENT_MODIFY_STATE`;
/// `ZwClose` on drop.
pub struct NamedEvent {
    // INVARIANT: a kernel handle returned by ZwOpenEvent, closed only by `drop`.
    handle: HANDLE,
}

// SAFETY: a kernel handle is valid in every process context and on any thread; the object
// manager synchronises its use.
unsafe impl Send for NamedEvent {}
// SAFETY: as for `Send`; `set` references the object through the handle table, which is built
// for concurrent use.
unsafe impl Sync for NamedEvent {}

impl core::fmt::Debug for NamedEvent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NamedEvent").finish_non_exhaustive()
    }
}

impl PlatformNamedEvent for NamedEvent {
    /// `InitializeObjectAttributes(&attributes, name, OBJ_KERNEL_HANDLE, NULL, NULL)` and
    /// `ZwOpenEvent(&handle, EVENT_MODIFY_STATE, &attributes)` (`PASSIVE_LEVEL`).
    fn open(name: &str) -> NtResult<Self> {
        let name = UnicodeName::new(name)?;
        // SAFETY: OBJECT_ATTRIBUTES is integers and pointers; zero (null) is valid.
        let mut attributes: OBJECT_ATTRIBUTES = unsafe { core::mem::zeroed() };
        attributes.Length = OBJECT_ATTRIBUTES_LENGTH;
        attributes.RootDirectory = null_mut();
        // ZwOpenEvent only reads the name.
        attributes.ObjectName = name.as_ptr().cast_mut();
        attributes.Attributes = wdk_sys::OBJ_KERNEL_HANDLE;
        attributes.SecurityDescriptor = null_mut();
        attributes.SecurityQualityOfService = null_mut();
        let mut handle: HANDLE = null_mut();
        // SAFETY: out pointer to our local; the attributes and the name they point to live
        // for the call.
        let status = unsafe {
            wdk_sys::ntddk::ZwOpenEvent(
                &raw mut handle,
                wdk_sys::EVENT_MODIFY_STATE,
                &raw mut attributes,
            )
        };
        nt_result(status)?;
        Ok(NamedEvent { handle })
    }

    /// `ObReferenceObjectByHandle(handle, EVENT_MODIFY_STATE, NULL, KernelMode, &event, NULL)`,
    /// `KeSetEvent(event, IO_NO_INCREMENT, FALSE)`, `ObfDereferenceObject(event)`.
    ///
    /// C DMF passes `*ExEventObjectType` as the object type; a null type skips the type check
    /// instead, which loses nothing here (the handle came from `ZwOpenEvent`, which opens event
    /// objects only) and keeps the image free of a data import.
    fn set(&self) -> NtResult<()> {
        let mut event: PVOID = null_mut();
        // SAFETY: our open kernel handle (invariant); a null object type is allowed for a
        // KernelMode reference; out pointer to our local.
        let status = unsafe {
            wdk_sys::ntddk::ObReferenceObjectByHandle(
                self.handle,
                wdk_sys::EVENT_MODIFY_STATE,
                null_mut(),
                KERNEL_MODE,
                &raw mut event,
                null_mut(),
            )
        };
        nt_result(status)?;
        // SAFETY: `event` is the referenced KEVENT of an event object, alive until the
        // dereference below.
        let _ = unsafe {
            wdk_sys::ntddk::KeSetEvent(event.cast::<wdk_sys::KEVENT>(), NO_INCREMENT, FALSE)
        };
        // SAFETY: balances the ObReferenceObjectByHandle above, once.
        let _ = unsafe { wdk_sys::ntddk::ObfDereferenceObject(event) };
        Ok(())
    }
}

impl Drop for NamedEvent {
    fn drop(&mut self) {
        // SAFETY: our open kernel handle (invariant), closed once.
        let _ = unsafe { wdk_sys::ntddk::ZwClose(self.handle) };
    }
}
