//! # kmdf-host — a linked KMDF driver image, run in a Linux process on kmdf-sim
//!
//! kmdf-host loads the exact bytes of a KMDF driver (`.sys`, PE32+, x64) into this process and
//! answers its imports with kmdf-sim: the image's `ntoskrnl.exe` routines run on a simulated
//! machine, its `WDFLDR.SYS` binding hands it the KMDF 1.33 function table, and its entry point
//! (`FxDriverEntry` → `WdfVersionBind` → `DriverEntry`) is called with a `DRIVER_OBJECT` and
//! registry path as the I/O manager lays them out. See docs/kmdf-host.md.
//!
//! | Module | What |
//! |---|---|
//! | [`pe`] | the loader: parse, map, relocate, bind imports (one error listing every missing one), protect |
//! | [`nt`] | ntoskrnl.exe: pool, events, spin locks and IRQL, rundown, time, PnP notifications, `DbgPrintEx`, `KeBugCheckEx`, the C memory routines |
//! | [`wdfldr`] | WDFLDR.SYS: `WdfVersionBind`/`WdfVersionUnbind` and the 458-slot function table |
//! | [`privileged`] | the emulation of `mov r64, cr8` / `mov cr8, r64` and `KUSER_SHARED_DATA` reads |
//! | [`oracle`] | C DMF as the oracle: normalised per-step traces of a session, compared with the C image's |
//! | [`host`] | the import table, `DRIVER_OBJECT`, the entry-point call, and how a run ends early ([`host::stop`]) |
//!
//! Phase 1: every WDF function is still a thunk that stops the run with the function's name, so a
//! real image runs until its first WDF call (`WdfDriverCreate` for our samples).
//!
//! The crate is x86_64 Linux only; elsewhere it builds to an empty library.
#![cfg_attr(
    all(target_os = "linux", target_arch = "x86_64"),
    allow(
        clippy::cast_possible_truncation,
        clippy::cast_possible_wrap,
        clippy::cast_sign_loss,
        clippy::cast_lossless,
        reason = "PE fields, register images and NTSTATUS values are fixed-width words the \
                  formats define; every narrowing is of a value the format bounds"
    )
)]

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod host;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod nt;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod oracle;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod pe;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod printf;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod privileged;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod wdf;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod wdfldr;
