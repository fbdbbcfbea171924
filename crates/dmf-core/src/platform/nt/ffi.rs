//! The raw ntoskrnl.exe declarations of the NT layer, and the layouts they take.
//!
//! Every routine is imported with `#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers =
//! "+verbatim")]`: rustc writes the import library itself at the final link, so a kernel image
//! links on any host with `rust-lld` and no WDK. `+verbatim` keeps the DLL name `ntoskrnl.exe`
//! (without it the import would name `ntoskrnl.exe.dll`, which no loader resolves).
//!
//! On x64, `"system"` and `"C"` are the same calling convention; the WDK's `NTAPI`/`FASTCALL`
//! annotations change nothing there. The variadic `DbgPrintEx` is declared `"C"`.
//!
//! `KeGetCurrentIrql`, which the WDK headers implement inline on x64 (a CR8 read), is imported
//! from ntoskrnl.exe instead (see [`super::irql`] for why).
//!
//! Routines the WDK headers implement inline on x64, and which are therefore *not* imported:
//! - `KeQueryInterruptTime` — reads `KUSER_SHARED_DATA.InterruptTime` (see [`super::clock`]).
//! - `KeInitializeSpinLock` — stores 0 (see [`super::spin_lock`]).
//! - `KeAcquireSpinLock(lock, &old)` — a macro for `*old = KeAcquireSpinLockRaiseToDpc(lock)`;
//!   on x64 `KeAcquireSpinLockRaiseToDpc` and `KeReleaseSpinLock` are ntoskrnl exports (on x86 the
//!   `Kf…` forms in hal.dll were used instead).
//!
//! The layouts are checked at compile time against the sizes of the x64 WDK headers (they were
//! confirmed against mingw-w64's `ddk/wdm.h` with a C compiler).
//!
//! This layer is built without any WDK crate (the standalone kernel image has none), so its
//! constants and layouts are written here by hand. Whenever the kmdf backend is compiled, each of
//! them — the constants below, `ExRundownRef`/`KEvent`/`KSpinLock`, and the numbers of the other
//! modules (`KIrql`'s levels, `POOL_ALIGNMENT`, `dpfltr_level`'s levels,
//! `KUSER_SHARED_DATA_INTERRUPT_TIME`) — is compared with the generated wdk-sys item at compile
//! time, in `platform/kmdf/pins.rs` (there, because only the kmdf backend may name wdk-sys:
//! invariant 2).

use core::ffi::c_void;

use static_assertions::{assert_eq_size, const_assert_eq};

/// `EX_RUNDOWN_REF`: `union { ULONG_PTR Count; PVOID Ptr; }`, opaque to drivers.
///
/// Idle, it is a plain count (0 after `ExInitializeRundownProtection`). While a thread is inside
/// `ExWaitForRundownProtectionRelease` it holds a pointer to that thread's wait block.
#[repr(C)]
pub(crate) struct ExRundownRef {
    count: usize,
}

impl ExRundownRef {
    /// The value `ExInitializeRundownProtection` writes; used only as the pre-init placeholder.
    pub(crate) const ZERO: Self = Self { count: 0 };
}

/// `KEVENT`: a `DISPATCHER_HEADER` (type, signal state, and the `WaitListHead` `LIST_ENTRY`).
///
/// Opaque here; only ntoskrnl touches its fields. The empty `WaitListHead` points at itself, so an
/// initialised `KEVENT` must never move (see [`super::event`]).
#[repr(C)]
pub(crate) struct KEvent {
    header: [u64; 3],
}

/// `KSPIN_LOCK`: `ULONG_PTR`, 0 when free.
pub(crate) type KSpinLock = usize;

assert_eq_size!(ExRundownRef, [u8; 8]);
assert_eq_size!(KEvent, [u8; 24]);
const_assert_eq!(core::mem::align_of::<KEvent>(), 8);
assert_eq_size!(KSpinLock, usize);

/// `EVENT_TYPE::NotificationEvent`.
pub(crate) const NOTIFICATION_EVENT: i32 = 0;
/// `EVENT_TYPE::SynchronizationEvent`.
pub(crate) const SYNCHRONIZATION_EVENT: i32 = 1;
/// `KWAIT_REASON::Executive`: the wait reason drivers use.
pub(crate) const EXECUTIVE: i32 = 0;
/// `KPROCESSOR_MODE::KernelMode`.
pub(crate) const KERNEL_MODE: i8 = 0;
/// `IO_NO_INCREMENT`: no priority boost for the thread a `KeSetEvent` wakes.
pub(crate) const IO_NO_INCREMENT: i32 = 0;
/// `STATUS_TIMEOUT`, the other success `KeWaitForSingleObject` returns.
pub(crate) const STATUS_TIMEOUT: i32 = 0x102;
/// `POOL_FLAG_UNINITIALIZED`: `ExAllocatePool2` skips zeroing.
pub(crate) const POOL_FLAG_UNINITIALIZED: u64 = 0x0000_0002;
/// `POOL_FLAG_NON_PAGED`: non-paged, non-executable pool (`NonPagedPoolNx`).
pub(crate) const POOL_FLAG_NON_PAGED: u64 = 0x0000_0040;
/// `DPFLTR_IHVDRIVER_ID`: the `DbgPrintEx` component for third-party drivers.
pub(crate) const DPFLTR_IHVDRIVER_ID: u32 = 77;

#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    /// `KIRQL KeGetCurrentIrql(VOID)`. Any IRQL.
    pub(crate) fn KeGetCurrentIrql() -> u8;
    /// `VOID ExInitializeRundownProtection(PEX_RUNDOWN_REF RunRef)`. Any IRQL.
    pub(crate) fn ExInitializeRundownProtection(run_ref: *mut ExRundownRef);
    /// `BOOLEAN ExAcquireRundownProtection(PEX_RUNDOWN_REF RunRef)`. `<= DISPATCH_LEVEL`.
    pub(crate) fn ExAcquireRundownProtection(run_ref: *mut ExRundownRef) -> u8;
    /// `VOID ExReleaseRundownProtection(PEX_RUNDOWN_REF RunRef)`. `<= DISPATCH_LEVEL`.
    pub(crate) fn ExReleaseRundownProtection(run_ref: *mut ExRundownRef);
    /// `VOID ExWaitForRundownProtectionRelease(PEX_RUNDOWN_REF RunRef)`. `<= APC_LEVEL`.
    pub(crate) fn ExWaitForRundownProtectionRelease(run_ref: *mut ExRundownRef);
    /// `VOID ExReInitializeRundownProtection(PEX_RUNDOWN_REF RunRef)`. Any IRQL.
    pub(crate) fn ExReInitializeRundownProtection(run_ref: *mut ExRundownRef);
    /// `VOID ExRundownCompleted(PEX_RUNDOWN_REF RunRef)`. Any IRQL.
    pub(crate) fn ExRundownCompleted(run_ref: *mut ExRundownRef);

    /// `VOID KeInitializeEvent(PRKEVENT Event, EVENT_TYPE Type, BOOLEAN State)`. Any IRQL.
    pub(crate) fn KeInitializeEvent(event: *mut KEvent, event_type: i32, state: u8);
    /// `LONG KeSetEvent(PRKEVENT Event, KPRIORITY Increment, BOOLEAN Wait)`. `<= DISPATCH_LEVEL`.
    pub(crate) fn KeSetEvent(event: *mut KEvent, increment: i32, wait: u8) -> i32;
    /// `VOID KeClearEvent(PRKEVENT Event)`. `<= DISPATCH_LEVEL`.
    pub(crate) fn KeClearEvent(event: *mut KEvent);
    /// `LONG KeReadStateEvent(PRKEVENT Event)`. `<= DISPATCH_LEVEL`.
    pub(crate) fn KeReadStateEvent(event: *mut KEvent) -> i32;
    /// `NTSTATUS KeWaitForSingleObject(PVOID Object, KWAIT_REASON WaitReason,
    /// KPROCESSOR_MODE WaitMode, BOOLEAN Alertable, PLARGE_INTEGER Timeout)`.
    /// `<= APC_LEVEL`, or `<= DISPATCH_LEVEL` with a zero timeout.
    pub(crate) fn KeWaitForSingleObject(
        object: *mut c_void,
        wait_reason: i32,
        wait_mode: i8,
        alertable: u8,
        timeout: *mut i64,
    ) -> i32;

    /// `PVOID ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag)` (Windows 10
    /// 2004 and later). `<= DISPATCH_LEVEL` for non-paged pool.
    pub(crate) fn ExAllocatePool2(flags: u64, number_of_bytes: usize, tag: u32) -> *mut c_void;
    /// `VOID ExFreePoolWithTag(PVOID P, ULONG Tag)`. `<= DISPATCH_LEVEL` for non-paged pool.
    pub(crate) fn ExFreePoolWithTag(p: *mut c_void, tag: u32);

    /// `KIRQL KeAcquireSpinLockRaiseToDpc(PKSPIN_LOCK SpinLock)` (x64 export; `KeAcquireSpinLock`
    /// is a macro over it). `<= DISPATCH_LEVEL`.
    pub(crate) fn KeAcquireSpinLockRaiseToDpc(spin_lock: *mut KSpinLock) -> u8;
    /// `VOID KeReleaseSpinLock(PKSPIN_LOCK SpinLock, KIRQL NewIrql)` (x64 export).
    /// `DISPATCH_LEVEL`.
    pub(crate) fn KeReleaseSpinLock(spin_lock: *mut KSpinLock, new_irql: u8);

    /// `KIRQL KeRaiseIrqlToDpcLevel(VOID)` (x64 export). `<= DISPATCH_LEVEL`.
    pub(crate) fn KeRaiseIrqlToDpcLevel() -> u8;
    /// `VOID KeLowerIrql(KIRQL NewIrql)` (x64 export): back to the IRQL a raise returned.
    pub(crate) fn KeLowerIrql(new_irql: u8);
    /// `ULONG KeGetCurrentProcessorNumberEx(PPROCESSOR_NUMBER ProcNumber)`: the system-wide
    /// index of the current processor (`ProcNumber` may be null). Any IRQL; stable only at
    /// `>= DISPATCH_LEVEL`.
    pub(crate) fn KeGetCurrentProcessorNumberEx(proc_number: *mut c_void) -> u32;

    /// `VOID KeBugCheckEx(ULONG BugCheckCode, ULONG_PTR P1, ULONG_PTR P2, ULONG_PTR P3,
    /// ULONG_PTR P4)`: stops the system. Any IRQL.
    pub(crate) fn KeBugCheckEx(code: u32, p1: usize, p2: usize, p3: usize, p4: usize) -> !;
}

#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    /// `ULONG DbgPrintEx(ULONG ComponentId, ULONG Level, PCSTR Format, ...)`. Any IRQL for
    /// formats without Unicode conversions (this layer only passes `%s`).
    pub(crate) fn DbgPrintEx(component_id: u32, level: u32, format: *const u8, ...) -> u32;
}
