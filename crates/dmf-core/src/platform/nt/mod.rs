//! The NT layer: the ntoskrnl.exe routines DMF's kernel backend needs, with safe wrappers.
//!
//! Compiled only with the `nt` feature on a Windows target (`#[cfg(all(feature = "nt",
//! target_os = "windows"))]`), x86_64 only. It is the part of the kernel path that does not need
//! KMDF: rundown protection, events, pool, spin locks, the IRQL, the interrupt-time clock, debug
//! output and bug checks, declared by hand against `ntoskrnl.exe` with `raw-dylib` imports (the
//! private `ffi` module), so it type-checks, lints and *links* on any host with `rust-lld` and no
//! WDK. The later `kmdf` backend builds its rundown, events, pool and spin locks on this layer and
//! makes its WDF calls through wdk-sys; a WDM kernel image (the repository's `kernel-image/`)
//! exercises it on its own and is checked on Linux.
//!
//! | Item | NT routine(s) |
//! |---|---|
//! | [`NtRundown`], [`NtRundownGuard`] | `ExInitializeRundownProtection`, `ExAcquireRundownProtection`, `ExReleaseRundownProtection`, `ExWaitForRundownProtectionRelease`, `ExReInitializeRundownProtection`, `ExRundownCompleted` |
//! | [`NtEvent`] | `KeInitializeEvent`, `KeSetEvent`, `KeClearEvent`, `KeReadStateEvent`, `KeWaitForSingleObject` (storage: `ExAllocatePool2` / `ExFreePoolWithTag`) |
//! | [`NtSpinLock`], [`NtSpinLockGuard`] | `KeInitializeSpinLock` (inline), `KeAcquireSpinLockRaiseToDpc`, `KeReleaseSpinLock` |
//! | [`NtPool`], [`NtPoolBlock`], [`NtPoolAllocator`] | `ExAllocatePool2(POOL_FLAG_NON_PAGED, …)`, `ExFreePoolWithTag` |
//! | [`current_irql`], [`read_cr8`], [`KIrql`], [`NtCurrentIrql`] | `KeGetCurrentIrql` (the export; [`read_cr8`] is the WDK's inline form) |
//! | [`interrupt_time`], [`NtClock`] | `KeQueryInterruptTime` (x64: a read of `KUSER_SHARED_DATA`, not an export) |
//! | [`NtTrace`] | `DbgPrintEx(DPFLTR_IHVDRIVER_ID, …)` |
//! | [`bug_check`] | `KeBugCheckEx` |
//!
//! Where the contract in [`crate::platform::contract`] already fits one call per operation, the
//! layer implements it too (`PlatformPool` for [`NtPool`], `PlatformIrql`, `PlatformClock`,
//! `PlatformTrace`); events and spin locks keep their NT shapes here (a fallible event
//! constructor, an explicit previous IRQL) and are adapted by the backend.
//!
//! # Premise: kernel mode
//! Everything here runs in a kernel-mode image at CPL 0. The safe wrappers rely on it: the kernel
//! address of `KUSER_SHARED_DATA` ([`interrupt_time`]) is only valid there, CR8 ([`read_cr8`]) is
//! only readable there, and the imports only resolve against the kernel. Enabling the feature in
//! user-mode code is a mistake (such an image fails to load, or faults on the first clock read).
//!
//! # What a kernel image must add
//! The layer imports nothing but the routines above. An image built with the prebuilt
//! `x86_64-pc-windows-msvc` core/alloc must also import the CRT helpers that code calls by name
//! (`memcpy`, `memset`, `memmove`, `memcmp`, `strlen`, `__chkstk`, all ntoskrnl exports) and define
//! `_fltused` and a `__CxxFrameHandler3` stub; those belong to the image (wdk-sys defines the stubs
//! itself in a WDK build, so a library defining them would clash).
//!
//! Each wrapper documents the IRQL its routine allows; the wrappers check the stricter rules with
//! `debug_assert!` in debug builds.

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "dmf-core's `nt` layer supports x86_64 only: KeGetCurrentIrql reads CR8 and \
     KeQueryInterruptTime reads KUSER_SHARED_DATA at its x64 address"
);

pub(crate) mod clock;
pub(crate) mod event;
pub(crate) mod ffi;
pub(crate) mod irql;
pub(crate) mod pool;
pub(crate) mod rundown;
pub(crate) mod spin_lock;
pub(crate) mod trace;

pub use clock::{interrupt_time, NtClock, KUSER_SHARED_DATA_INTERRUPT_TIME};
pub use event::{NtEvent, EVENT_POOL_TAG};
pub use irql::{current_irql, read_cr8, KIrql, NtCurrentIrql};
pub use pool::reserve_and_run;
pub use pool::{pool_tag_value, NtPool, NtPoolAllocator, NtPoolBlock, POOL_ALIGNMENT};
pub use rundown::{NtRundown, NtRundownGuard};
pub use spin_lock::{NtSpinLock, NtSpinLockGuard};
pub use trace::{bug_check, dpfltr_level, NtTrace, TRACE_BUFFER_SIZE};
