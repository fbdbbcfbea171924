//! The `kmdf` backend: the platform contract on real KMDF, through wdk-sys.
//!
//! Compiled only with feature `kmdf` on a Windows target (`platform/mod.rs`). A driver author
//! builds it on Windows with the WDK or eWDK (wdk-sys generates its bindings from the WDK headers
//! at build time); the Linux CI checks it with `.ci/kmdf-check`, against bindings generated from
//! Microsoft's KMDF 1.33 headers (see `docs/kmdf-backend.md` for the review table of every
//! contract item and its WDF/NT call, and `docs/deploy.md` for running a driver).
//!
//! Each contract operation is one WDF call through `wdk_sys::call_unsafe_wdf_function_binding!`
//! (or one NT call: the NT layer `platform::nt` for rundown, events, pool, IRQL, clock and trace;
//! `wdk_sys::ntddk` for system threads, PnP notifications and token checks), plus the conversion
//! of handles, enums and statuses. Every WDF/NT enumerator, flag, status and structure size is
//! the generated wdk-sys item, never a number written here (`.ci/check_kmdf_literals.py`); the
//! x64 KMDF 1.33 layouts of the structures the backend fills are pinned in `wdf.rs`. Where the
//! contract asks for something WDF does not keep (a queue's dispatch type, whether a work item is
//! queued, whether the device is in D0), the backend keeps the bit itself; each such place says
//! so.
//!
//! | File | Contract items |
//! |---|---|
//! | `wdf.rs` | `WDF_*_INIT` as `const fn`s (sizes and member offsets asserted), the enumerator and flag names call sites use, typed object contexts, counted strings |
//! | `exec.rs` | event, spin lock, wait lock, IRQL, clock, pool, trace, timer, work item, system thread, registry |
//! | `device.rs` | driver (`DriverEntry` → `WdfDriverCreate`), device init, device, PnP/power and power-policy trampolines |
//! | `bus.rs` | child PDOs of a bus driver: the PDO init's identity calls, static children, mark missing, eject, capabilities |
//! | `io/` | one file per object: request, queue, file object, I/O target, device-interface notification, each with its trampolines (`io/mod.rs`: their object contexts) |
//! | `system.rs` | wall clock, named event (NT routines) |
//! | `hid.rs` | HID parser (`hidparse.sys`, raw-dylib) |
//! | `pins.rs` | no contract item: compile-time checks of dmf-core's hand-copied WDK values (`NtStatus`, the NT layer) against wdk-sys |
//!
//! # How closures reach WDF callbacks
//! WDF callbacks are C function pointers with a handle; the contract's callbacks are Rust
//! closures. Each object that has closures gets a typed WDF object context (`wdf.rs`) holding
//! them, and one `extern "C"` trampoline per WDF callback reads the context of the handle it is
//! given and calls the closure. The context's value is dropped by the object's
//! `EvtDestroyCallback`, so the closures live exactly as long as the WDF object.

mod bus;
mod device;
mod exec;
mod hid;
mod io;
mod pins;
mod system;
mod wdf;

pub use device::{driver_create, Device, DeviceInit, Driver, Resources};
pub use exec::{
    Clock, CurrentIrql, Event, Pool, PoolBuffer, RegistryKey, SpinLock, SystemThread, Timer, Trace,
    WaitLock, WorkItem,
};
pub use hid::HidParser;
pub use io::{FileObject, InterfaceNotification, IoTarget, Queue, Request};
pub use system::{NamedEvent, WallClock};
