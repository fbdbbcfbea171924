//! The platform contract: what DMF needs from the operating system, item by item.
//!
//! Each trait here is implemented by exactly one type of the selected backend and re-exported from
//! [`crate::platform`] under a plain name (`platform::Event`, `platform::SpinLock`, …); Module and
//! driver code names the plain type and is never generic over the platform. The traits exist so
//! that the contract is written down in one place and so the compiler proves every backend
//! implements all of it (see the assertions at the bottom of `platform/mod.rs`).
//!
//! Every item names the WDF or NT routine it maps to on the `kmdf` backend, where the
//! implementation is one call per operation and no logic. The `sim` backend implements the same
//! item on the corresponding kmdf-sim object, which follows the documented KMDF semantics
//! (IRQL rules, completion rules, verifier checks).
//!
//! # The execution items (this file, complete)
//!
//! | Item | Trait | kmdf mapping |
//! |---|---|---|
//! | IRQL | [`PlatformIrql`] | `KeGetCurrentIrql` |
//! | event | [`PlatformEvent`] | `KeInitializeEvent` / `KeSetEvent` / `KeClearEvent` / `KeReadStateEvent` / `KeWaitForSingleObject` |
//! | spin lock | [`PlatformSpinLock`] | `WdfSpinLockCreate` / `WdfSpinLockAcquire` / `WdfSpinLockRelease` |
//! | wait lock | [`PlatformWaitLock`] | `WdfWaitLockCreate` / `WdfWaitLockAcquire` / `WdfWaitLockRelease` |
//! | rundown | [`crate::rundown`] + [`PlatformEvent`] | `ExAcquireRundownProtection` / `ExReleaseRundownProtection` / `ExWaitForRundownProtectionRelease` / `ExReInitializeRundownProtection` |
//! | clock | [`PlatformClock`] | `KeQueryInterruptTime` |
//! | pool memory | [`PlatformPool`] | `ExAllocatePool2` / `ExFreePoolWithTag` |
//! | trace | [`PlatformTrace`] | `DbgPrintEx` (WPP in C DMF) |
//! | timer | [`PlatformTimer`] | `WdfTimerCreate` (parent: a device) / `WdfTimerStart` / `WdfTimerStop` |
//! | work item | [`PlatformWorkItem`] | `WdfWorkItemCreate` (parent: a device) / `WdfWorkItemEnqueue` / `WdfWorkItemFlush` |
//! | system thread | [`PlatformThread`] | `PsCreateSystemThread` / `KeWaitForSingleObject` |
//! | registry | [`PlatformRegistryKey`] | `WdfDriverOpenParametersRegistryKey` / `WdfRegistryQuery…` / `WdfRegistryAssign…` / `WdfRegistryRemoveValue` |
//!
//! The device and I/O items (driver, device, PnP/power callbacks, device interfaces, queue,
//! request, file object, I/O target, device-interface notification) are in [`device`] and [`io`].
//! No contract item exists without a backend that implements it.

use core::time::Duration;

use crate::status::NtResult;

pub mod device;
pub mod io;

/// Interrupt request level of the current processor (the three levels a KMDF driver sees).
///
/// Ordered: `Passive < Apc < Dispatch`. Maps to `KIRQL` (`PASSIVE_LEVEL` 0, `APC_LEVEL` 1,
/// `DISPATCH_LEVEL` 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Irql {
    /// `PASSIVE_LEVEL`: threads run here; may block, may touch paged memory.
    Passive = 0,
    /// `APC_LEVEL`: normal kernel APCs are masked.
    Apc = 1,
    /// `DISPATCH_LEVEL`: spin locks, DPCs and timers; must not block.
    Dispatch = 2,
}

/// The current IRQL. Maps to `KeGetCurrentIrql`.
pub trait PlatformIrql {
    /// The IRQL the calling thread runs at now.
    fn current() -> Irql;
}

/// Kind of a kernel event (`EVENT_TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `NotificationEvent`: setting releases every waiter and the event stays signalled until cleared.
    Notification,
    /// `SynchronizationEvent`: setting releases one waiter and the event resets itself.
    Synchronization,
}

/// How a wait ended. Both values are successes in the NTSTATUS sense
/// (`STATUS_SUCCESS` / `STATUS_TIMEOUT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitStatus {
    /// The object was signalled (`STATUS_SUCCESS`).
    Signaled,
    /// The timeout expired first (`STATUS_TIMEOUT`).
    TimedOut,
}

/// A wait timeout: `None` waits forever; `Some(Duration::ZERO)` only tests the state.
///
/// On the kernel backend this becomes a negative (relative) `LARGE_INTEGER` in 100-ns units.
pub type Timeout = Option<Duration>;

/// A kernel event. Maps to a `KEVENT`: `KeInitializeEvent` (new), `KeSetEvent` (set),
/// `KeClearEvent` (clear), `KeReadStateEvent` (is_signaled), `KeWaitForSingleObject` (wait).
///
/// # Contract
/// `set` must not touch the event's memory after a concurrent `wait` can have returned (KEVENT
/// has this property: the dispatcher lock covers both). Rundown protection relies on it: the
/// waiter may free the protected object — event included — the moment its wait returns.
pub trait PlatformEvent: Sized + Send + Sync {
    /// Creates an event of `kind`, signalled if `signaled`. `KeInitializeEvent` itself cannot
    /// fail, but a `KEVENT` must not move once initialised, so a backend may have to allocate its
    /// storage (the kernel backend takes it from non-paged pool):
    /// `STATUS_INSUFFICIENT_RESOURCES` when that allocation is refused. `≤ DISPATCH_LEVEL`.
    fn new(kind: EventKind, signaled: bool) -> NtResult<Self>;
    /// Signals the event; returns whether it was already signalled. `≤ DISPATCH_LEVEL`.
    fn set(&self) -> bool;
    /// Resets the event to not signalled. `≤ DISPATCH_LEVEL`.
    fn clear(&self);
    /// Whether the event is signalled now.
    fn is_signaled(&self) -> bool;
    /// Waits until the event is signalled or the timeout expires. `≤ APC_LEVEL` unless the timeout
    /// is zero (then `≤ DISPATCH_LEVEL`).
    fn wait(&self, timeout: Timeout) -> WaitStatus;
}

/// A spin lock. Maps to `WDFSPINLOCK`: `WdfSpinLockCreate` (new), `WdfSpinLockAcquire` (acquire,
/// which raises to `DISPATCH_LEVEL`), `WdfSpinLockRelease` (release, which restores the IRQL).
pub trait PlatformSpinLock: Sized + Send + Sync {
    /// Creates the lock (`STATUS_INSUFFICIENT_RESOURCES` when the platform cannot).
    fn new() -> NtResult<Self>;
    /// Acquires the lock at `≤ DISPATCH_LEVEL`, spinning while another thread holds it; the caller
    /// then runs at `DISPATCH_LEVEL`.
    fn acquire(&self);
    /// Releases the lock, restoring the IRQL of the matching `acquire`. Only the acquiring thread
    /// may release.
    fn release(&self);
}

/// A wait lock (a PASSIVE_LEVEL mutex). Maps to `WDFWAITLOCK`: `WdfWaitLockCreate` (new),
/// `WdfWaitLockAcquire` (acquire), `WdfWaitLockRelease` (release).
pub trait PlatformWaitLock: Sized + Send + Sync {
    /// Creates the lock (`STATUS_INSUFFICIENT_RESOURCES` when the platform cannot).
    fn new() -> NtResult<Self>;
    /// Acquires the lock at `PASSIVE_LEVEL`, waiting at most `timeout`. Returns
    /// [`WaitStatus::TimedOut`] (and does not hold the lock) when the timeout expired.
    fn acquire(&self, timeout: Timeout) -> WaitStatus;
    /// Releases the lock. Only the acquiring thread may release.
    fn release(&self);
}

/// The platform's monotonic clock. Maps to `KeQueryInterruptTime` (100-ns units since boot).
///
/// On the simulator this is the virtual clock: it moves when a test advances it.
pub trait PlatformClock {
    /// Time since boot.
    fn now() -> Duration;
}

/// A four-character pool tag, as written in C (`'BfmD'` is written here as `PoolTag(*b"DmfB")`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolTag(pub [u8; 4]);

/// Tagged pool memory. Maps to `ExAllocatePool2(POOL_FLAG_NON_PAGED, size, tag)` (allocate, which
/// zeroes) and `ExFreePoolWithTag` (dropping the block).
pub trait PlatformPool {
    /// An owned, zeroed allocation; freed when dropped.
    type Block: AsRef<[u8]> + AsMut<[u8]> + Send;
    /// Allocates `size` zeroed bytes from non-paged pool under `tag`
    /// (`STATUS_INSUFFICIENT_RESOURCES` when the pool cannot).
    fn allocate(tag: PoolTag, size: usize) -> NtResult<Self::Block>;

    /// Asked before each heap allocation made through [`crate::fallible`] (the framework's and the
    /// Modules' own `Box`, `Arc` and `Vec` growth): `Err` refuses it. In a kernel image the pool
    /// itself refuses, so the default admits everything; kmdf-sim makes it a fault point of the
    /// machine's fault injector, counted with pool allocations, so tests can fail any allocation.
    fn admit_heap_allocation() -> NtResult<()> {
        Ok(())
    }
}

/// Severity of a trace message (the `TRACE_LEVEL_*` values of WPP / `DPFLTR_*_LEVEL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TraceLevel {
    /// `TRACE_LEVEL_ERROR`.
    Error,
    /// `TRACE_LEVEL_WARNING`.
    Warning,
    /// `TRACE_LEVEL_INFORMATION`.
    Information,
    /// `TRACE_LEVEL_VERBOSE`.
    Verbose,
}

/// Driver tracing. Maps to `DbgPrintEx(DPFLTR_IHVDRIVER_ID, level, …)`; on the simulator each
/// message becomes an entry of the machine's trace.
pub trait PlatformTrace {
    /// Records `message` from `source` (a Module or driver name) at `level`.
    fn trace(level: TraceLevel, source: &str, message: core::fmt::Arguments<'_>);
}

/// Execution level of a timer callback (`WDF_EXECUTION_LEVEL` of a `WDFTIMER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerExecutionLevel {
    /// The callback runs in a DPC at `DISPATCH_LEVEL` (the default).
    Dispatch,
    /// The callback runs from a work item at `PASSIVE_LEVEL` (one-shot timers only).
    Passive,
}

/// A timer (`WDFTIMER`). Maps to `WdfTimerCreate` (new), `WdfTimerStart` (start, with a relative
/// due time), `WdfTimerStop` (stop); dropping it is `WdfObjectDelete`.
///
/// **Parent.** A timer belongs to a device: `parent` is the `ParentObject` of `WdfTimerCreate`,
/// which KMDF requires to be a device (or an object whose parent chain reaches one). When the
/// framework deletes that device (its removal) it deletes the timer too — stopped, a running
/// callback waited for. Dropping the timer after that is harmless and `stop` does nothing;
/// `start` is a use of a deleted object (reported by kmdf-sim's verifier, ignored by the kmdf
/// backend).
///
/// Code without a device (a dynamic Module created without a device-bound parent) cannot create
/// a timer, as in C DMF, where the `WdfTimerCreate` of such a Module fails.
pub trait PlatformTimer: Sized + Send + Sync {
    /// The platform's device type (`WDFDEVICE`), the timer's parent.
    type Device: device::PlatformDevice;
    /// Creates a timer of `parent` whose `callback` runs at `level`, once (`period` `None`) or
    /// every `period`. A passive-level periodic timer is `STATUS_INVALID_PARAMETER`, as in KMDF.
    /// A deleted `parent` is refused (`STATUS_INVALID_DEVICE_STATE` on kmdf-sim; on KMDF the
    /// handle of a deleted device must not be used at all).
    fn new(
        parent: &Self::Device,
        name: &str,
        period: Option<Duration>,
        level: TimerExecutionLevel,
        callback: impl Fn() + Send + Sync + 'static,
    ) -> NtResult<Self>;
    /// Starts (or restarts) the timer `due` from now; returns whether it was already queued.
    /// `≤ DISPATCH_LEVEL`.
    fn start(&self, due: Duration) -> bool;
    /// Stops the timer; returns whether it was queued. With `wait`, also waits for a running
    /// callback (`PASSIVE_LEVEL`, never from the timer's own callback).
    fn stop(&self, wait: bool) -> bool;
}

/// A work item (`WDFWORKITEM`): its callback runs at `PASSIVE_LEVEL` on a system worker thread.
/// Maps to `WdfWorkItemCreate` (new), `WdfWorkItemEnqueue` (enqueue), `WdfWorkItemFlush` (flush);
/// dropping it is `WdfObjectDelete`.
///
/// **Parent.** As for [`PlatformTimer`]: `parent` is the `ParentObject` of `WdfWorkItemCreate`, a
/// device; the framework deletes the work item with that device (a queued run skipped, a running
/// callback waited for). Dropping it after that is harmless and `flush` does nothing; `enqueue`
/// is a use of a deleted object (reported by kmdf-sim's verifier, ignored by the kmdf backend).
pub trait PlatformWorkItem: Sized + Send + Sync {
    /// The platform's device type (`WDFDEVICE`), the work item's parent.
    type Device: device::PlatformDevice;
    /// Creates a work item of `parent`. A deleted `parent` is refused as by
    /// [`PlatformTimer::new`].
    fn new(
        parent: &Self::Device,
        name: &str,
        callback: impl Fn() + Send + Sync + 'static,
    ) -> NtResult<Self>;
    /// Queues the work item unless it is already queued (`≤ DISPATCH_LEVEL`); returns whether it
    /// was queued now.
    fn enqueue(&self) -> bool;
    /// Waits until the work item is not queued and its callback is not running (`PASSIVE_LEVEL`).
    fn flush(&self);
}

/// A system thread. Maps to `PsCreateSystemThread` (spawn) and `KeWaitForSingleObject` on the
/// thread object (wait).
pub trait PlatformThread: Sized + Send + Sync {
    /// Starts `start` on a new system thread at `PASSIVE_LEVEL`.
    fn spawn(name: &str, start: impl FnOnce() + Send + 'static) -> NtResult<Self>;
    /// Waits for the thread to terminate.
    fn wait(&self, timeout: Timeout) -> WaitStatus;
}

/// A registry value as DMF reads and writes it (`REG_DWORD`, `REG_QWORD`, `REG_SZ`, `REG_BINARY`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryValue {
    /// `REG_DWORD`.
    Dword(u32),
    /// `REG_QWORD`.
    Qword(u64),
    /// `REG_SZ`.
    String(alloc::string::String),
    /// `REG_BINARY`.
    Binary(alloc::vec::Vec<u8>),
}

/// An open registry key (`WDFKEY`). Maps to `WdfRegistryQueryValue` / `WdfRegistryQueryULong` /
/// `WdfRegistryQueryUnicodeString` (query), `WdfRegistryAssignValue` / `…AssignULong` (set),
/// `WdfRegistryRemoveValue` (delete), `WdfRegistryClose` (drop).
///
/// Errors use the registry's statuses: `STATUS_OBJECT_NAME_NOT_FOUND` for a missing value,
/// `STATUS_OBJECT_TYPE_MISMATCH` for a value of another type.
pub trait PlatformRegistryKey: Sized + Send + Sync {
    /// Opens the driver's `Parameters` key (`WdfDriverOpenParametersRegistryKey`) for the driver
    /// named `driver`.
    fn open_driver_parameters(driver: &str) -> NtResult<Self>;
    /// Reads value `name`.
    fn query(&self, name: &str) -> NtResult<RegistryValue>;
    /// Writes value `name`, replacing any value of any type.
    fn set(&self, name: &str, value: RegistryValue) -> NtResult<()>;
    /// Deletes value `name`.
    fn delete(&self, name: &str) -> NtResult<()>;
}
