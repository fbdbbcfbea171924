//! Stand-in for `wdk-sys` 0.5.2, for the kmdf check on Linux only (see the README beside this
//! crate). The same public paths as the real crate: types and constants at the root, `ntddk::*`
//! for the NT routines, `wdf::*` for the WDF declarations, `call_unsafe_wdf_function_binding!`,
//! the `STATUS_*` and `WDF_NO_*` constants, `NT_SUCCESS` and friends, `WdfFunctions` and
//! `WdfDriverGlobals`. The bindings themselves are generated from Microsoft's KMDF 1.33 headers
//! and mingw-w64's NT headers by `tools/wdk-bindgen`.
#![no_std]
#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    missing_docs,
    clippy::all,
    clippy::pedantic,
    unsafe_op_in_unsafe_fn,
    unnecessary_transmutes
)]

#[doc(hidden)]
pub use wdk_macros as __proc_macros;

pub use crate::constants::*;
pub use crate::types::*;

mod types {
    include!(concat!(env!("OUT_DIR"), "/types.rs"));
}

mod constants {
    use crate::types::*;
    include!(concat!(env!("OUT_DIR"), "/constants.rs"));
    include!(concat!(env!("OUT_DIR"), "/status.rs"));

    // The null "no argument" values of the WDF headers (`#define WDF_NO_OBJECT_ATTRIBUTES
    // (NULL)` and friends), which bindgen does not translate.
    pub const WDF_NO_OBJECT_ATTRIBUTES: PWDF_OBJECT_ATTRIBUTES = core::ptr::null_mut();
    pub const WDF_NO_EVENT_CALLBACK: PVOID = core::ptr::null_mut();
    pub const WDF_NO_HANDLE: PVOID = core::ptr::null_mut();
    pub const WDF_NO_CONTEXT: PVOID = core::ptr::null_mut();
    pub const WDF_NO_SEND_OPTIONS: PVOID = core::ptr::null_mut();
}

/// The NT routines of `ntifs.h`, `ntddk.h` and `ntstrsafe.h`.
pub mod ntddk {
    pub use bindings::*;
    mod bindings {
        use crate::types::*;
        include!(concat!(env!("OUT_DIR"), "/ntddk.rs"));
    }
}

/// The declarations of the WDF headers (the WDF functions are called through
/// [`call_unsafe_wdf_function_binding!`]).
pub mod wdf {
    pub use bindings::*;
    mod bindings {
        use crate::types::*;
        include!(concat!(env!("OUT_DIR"), "/wdf.rs"));
    }
    #[doc(hidden)]
    pub mod __private {
        include!(concat!(env!("OUT_DIR"), "/wdf_function_count.rs"));
    }
}

/// The types and constants of the HID class and parser headers (`hidclass.h`, `hidpi.h`,
/// `hidusage.h`), as the real crate's `hid` feature gives them.
#[cfg(feature = "hid")]
pub mod hid {
    pub use bindings::*;
    mod bindings {
        use crate::types::*;
        include!(concat!(env!("OUT_DIR"), "/hid.rs"));
    }
}

mod macros {
    include!(concat!(
        env!("OUT_DIR"),
        "/call_unsafe_wdf_function_binding.rs"
    ));
}

// The import libraries a KMDF image links against, as the real crate names them: here they are
// the kmdf check's own (`DMF_WDK_LIBS`): ntoskrnl.exe's from the generated declarations,
// WDFLDR.SYS's, and WdfDriverEntry.lib, the project's startup object.
#[cfg(not(any(test, feature = "suppress-wdk-linking")))]
#[link(name = "ntoskrnl", kind = "static", modifiers = "-bundle")]
#[link(name = "WdfLdr", kind = "static", modifiers = "-bundle")]
#[link(name = "WdfDriverEntry", kind = "static", modifiers = "-bundle")]
unsafe extern "C" {}

/// Referenced by MSVC-convention objects that touch floating point; the value is irrelevant.
#[unsafe(no_mangle)]
pub static _fltused: () = ();

/// C++ frame-handler stubs named by the prebuilt `core`/`alloc` unwind tables; never reached with
/// `panic = "abort"`.
#[cfg(panic = "abort")]
#[unsafe(no_mangle)]
pub extern "system" fn __CxxFrameHandler3() -> i32 {
    0
}

#[cfg(panic = "abort")]
#[unsafe(no_mangle)]
pub extern "system" fn __CxxFrameHandler4() -> i32 {
    1
}

#[cfg(panic = "abort")]
#[unsafe(no_mangle)]
pub extern "system" fn __GSHandlerCheck_EH4() -> i32 {
    2
}

/// `NT_SUCCESS`.
#[must_use]
pub const fn NT_SUCCESS(status: NTSTATUS) -> bool {
    status >= 0
}

/// `NT_INFORMATION`.
#[must_use]
pub const fn NT_INFORMATION(status: NTSTATUS) -> bool {
    (status as u32 >> 30) == 1
}

/// `NT_WARNING`.
#[must_use]
pub const fn NT_WARNING(status: NTSTATUS) -> bool {
    (status as u32 >> 30) == 2
}

/// `NT_ERROR`.
#[must_use]
pub const fn NT_ERROR(status: NTSTATUS) -> bool {
    (status as u32 >> 30) == 3
}

/// `PAGED_CODE()`: a debug check that the caller runs at or below `APC_LEVEL`.
#[macro_export]
macro_rules! PAGED_CODE {
    () => {
        debug_assert!(unsafe { $crate::ntddk::KeGetCurrentIrql() <= $crate::APC_LEVEL as u8 });
    };
}
