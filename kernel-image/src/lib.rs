//! A small WDM kernel image that exercises dmf-core's NT layer (`dmf_core::platform::nt`).
//!
//! `DriverEntry` runs every wrapper of the layer once — rundown protection, events, spin locks,
//! tagged pool directly and through the [`NtPoolAllocator`] global allocator, the IRQL, the
//! interrupt-time clock and `DbgPrintEx` — checks each result, prints one line per step, keeps a
//! small state for `DriverUnload` and returns `STATUS_SUCCESS` (or `STATUS_UNSUCCESSFUL` naming the
//! failed step). `DriverUnload` runs that state down and frees it.
//!
//! The image is linked on Linux with rust-lld (`.cargo/config.toml`) and verified by
//! `.ci/check_kernel_image.py`; `docs/kernel-image.md` says what that proves and what it cannot.
#![no_std]

extern crate alloc;

mod exercise;
mod runtime;

use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};

use alloc::boxed::Box;
use dmf_core::platform::contract::{PoolTag, TraceLevel};
use dmf_core::platform::nt::{bug_check, NtPoolAllocator, NtTrace};
use dmf_core::NtStatus;

use exercise::DriverState;

/// Every `alloc` allocation of the image: non-paged pool tagged `'0fmD'`.
#[global_allocator]
static ALLOCATOR: NtPoolAllocator = NtPoolAllocator::new(PoolTag(*b"Dmf0"));

/// The bug-check code of a Rust panic in this image (a driver-private code; parameter 1 is the
/// source line of the panic).
const PANIC_BUG_CHECK: u32 = 0xD0F0_0001;

/// `PDRIVER_UNLOAD`.
type DriverUnloadFn = unsafe extern "system" fn(driver: *mut c_void);

/// The x64 `DRIVER_OBJECT` up to `DriverUnload`, the only field this image writes. The first 13
/// words are `Type`/`Size`, `DeviceObject`, `Flags`, `DriverStart`, `DriverSize`,
/// `DriverSection`, `DriverExtension`, `DriverName` (two words), `HardwareDatabase`,
/// `FastIoDispatch`, `DriverInit` and `DriverStartIo`.
#[repr(C)]
struct DriverObjectPrefix {
    head: [usize; 13],
    driver_unload: Option<DriverUnloadFn>,
}

// `DriverUnload` is at 0x68 in the x64 DRIVER_OBJECT (confirmed against mingw-w64's ddk/wdm.h).
const _: () = assert!(core::mem::offset_of!(DriverObjectPrefix, driver_unload) == 0x68);

/// The state `DriverEntry` hands to `DriverUnload` (a leaked `Box`, or null).
static STATE: AtomicPtr<DriverState> = AtomicPtr::new(core::ptr::null_mut());

fn trace(level: TraceLevel, message: core::fmt::Arguments<'_>) {
    NtTrace::trace(level, "dmf-kernel-image", message);
}

/// The driver's entry point (`/ENTRY:DriverEntry`).
///
/// # Safety
/// Called once by the I/O manager at `PASSIVE_LEVEL`, with `driver` pointing to this driver's
/// `DRIVER_OBJECT`.
#[unsafe(export_name = "DriverEntry")]
pub unsafe extern "system" fn driver_entry(
    driver: *mut c_void,
    _registry_path: *const c_void,
) -> i32 {
    trace(TraceLevel::Error, format_args!("DriverEntry {driver:p}"));
    #[cfg(feature = "foreign-import")]
    foreign::stall();
    match exercise::run() {
        Ok(state) => {
            STATE.store(Box::into_raw(state), Ordering::Release);
            let object = driver.cast::<DriverObjectPrefix>();
            // SAFETY: `driver` is our live, pointer-aligned DRIVER_OBJECT (the caller's contract),
            // whose layout starts with `DriverObjectPrefix`; DriverEntry is where the driver sets
            // DriverUnload. Only that field is written, through a raw place (no reference).
            unsafe { (&raw mut (*object).driver_unload).write(Some(driver_unload)) };
            trace(
                TraceLevel::Error,
                format_args!("DriverEntry: all NT-layer checks passed"),
            );
            NtStatus::SUCCESS.to_raw()
        }
        Err(step) => {
            trace(
                TraceLevel::Error,
                format_args!("DriverEntry: check failed: {step}"),
            );
            NtStatus::UNSUCCESSFUL.to_raw()
        }
    }
}

/// `DriverUnload`: runs the driver state down (`ExWaitForRundownProtectionRelease`) and frees it.
///
/// # Safety
/// Called once by the I/O manager at `PASSIVE_LEVEL`, after a successful `DriverEntry`.
unsafe extern "system" fn driver_unload(_driver: *mut c_void) {
    let state = STATE.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if state.is_null() {
        return;
    }
    // SAFETY: `state` came from `Box::into_raw` in DriverEntry and was taken out of STATE exactly
    // once (the swap), so this is its only owner.
    let state = unsafe { Box::from_raw(state) };
    // DriverEntry kept one reference open; give it back, then run down.
    // SAFETY: `exercise::driver_state` took one successful acquire for exactly this release.
    unsafe { state.rundown.release() };
    state.rundown.wait();
    state.unloading.set();
    trace(
        TraceLevel::Error,
        format_args!(
            "DriverUnload: run down, freeing {} pool bytes",
            state.block.len()
        ),
    );
    drop(state); // ExFreePoolWithTag for the block, the event storage and the Box
}

#[cfg(feature = "foreign-import")]
mod foreign {
    //! Negative control for the image check: an import from hal.dll.

    #[link(name = "hal.dll", kind = "raw-dylib", modifiers = "+verbatim")]
    unsafe extern "system" {
        /// `VOID KeStallExecutionProcessor(ULONG MicroSeconds)` (hal.dll).
        fn KeStallExecutionProcessor(microseconds: u32);
    }

    pub(super) fn stall() {
        // SAFETY: a busy wait of one microsecond; no memory is involved.
        unsafe { KeStallExecutionProcessor(1) }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let line = info
        .location()
        .map_or(0, |location| location.line() as usize);
    bug_check(PANIC_BUG_CHECK, [line, 0, 0, 0])
}
