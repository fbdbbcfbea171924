//! The facade's kernel glue: what [`driver!`](crate::driver) expands to under the `kmdf` backend
//! on Windows (`DriverEntry` → `WdfDriverCreate`).
//!
//! On kmdf-sim a driver is installed with `simulator::install_driver(&machine, name,
//! driver_config())`; in a kernel image the I/O manager calls `DriverEntry`, which
//! `dmf::driver!` defines as a call to [`driver_entry`] with the same `driver_config()`. The WDF
//! call itself (`WdfDriverCreate` with the `EvtDriverDeviceAdd`/`EvtDriverUnload` trampolines and
//! the driver object's context holding the config) is the kmdf backend's
//! `dmf_core::platform::kernel::driver_create`, so every wdk-sys call stays in
//! `dmf-core/src/platform/kmdf/`.
//!
//! Compiled only with feature `kmdf` on a Windows target, and empty when `sim` is also on (the
//! simulator wins, as in dmf-core). Not built in the Linux CI: wdk-sys needs the WDK.
#![cfg(not(feature = "sim"))]

// The kernel image's panic handler (KeBugCheckEx, wdk-panic, as the windows-drivers-rs samples
// declare it) and global allocator, here once for every DMF driver so driver crates name no wdk
// crate (invariant 2). The allocator is dmf-core's `NtPoolAllocator` (ExAllocatePool2, non-paged,
// tag 'HfmD') rather than wdk-alloc's: it also serves the block reservations that make
// `dmf_core::fallible::try_arc` fallible (`Arc::try_new` is not stable Rust).
#[cfg(not(test))]
extern crate wdk_panic;
#[cfg(not(test))]
#[global_allocator]
static GLOBAL_ALLOCATOR: dmf_core::platform::nt::NtPoolAllocator =
    dmf_core::platform::nt::NtPoolAllocator::new(dmf_core::platform::contract::PoolTag(*b"DmfH"));

use core::ffi::c_void;

use dmf_core::platform::contract::{PlatformTrace, TraceLevel};
use dmf_core::platform::{DriverConfig, Trace};

/// `DriverEntry` of a DMF driver: `WdfDriverCreate` with `config` (the driver's
/// `WDF_DRIVER_CONFIG`); returns the `NTSTATUS` for the I/O manager. A failure is traced with
/// `DbgPrintEx` and returned, which unloads the image.
///
/// The pointers are the `PDRIVER_OBJECT` and `PCUNICODE_STRING` the I/O manager passes, typed
/// as `c_void` so the driver crate need not name WDK types.
///
/// # Safety
/// Call only from the image's `DriverEntry`, once, with the arguments the I/O manager passed to
/// it (what `dmf::driver!` generates).
pub unsafe fn driver_entry(
    driver_object: *mut c_void,
    registry_path: *const c_void,
    config: DriverConfig,
) -> i32 {
    // SAFETY: the caller passes DriverEntry's own arguments, once (this function's contract).
    match unsafe { dmf_core::platform::kernel::driver_create(driver_object, registry_path, config) }
    {
        Ok(_) => 0,
        Err(status) => {
            Trace::trace(
                TraceLevel::Error,
                "dmf",
                format_args!("WdfDriverCreate failed: {status:?}"),
            );
            status.to_raw()
        }
    }
}
