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
//!
//! The I/O items (device, queue, request, file object, I/O target, device-interface notification,
//! timer, work item, system thread, registry) are added to this contract together with their
//! kmdf-sim implementation (ARCHITECTURE.md records the plan), so that no contract item exists
//! without a backend that implements it.

use core::time::Duration;

use crate::status::NtResult;

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
    /// Creates an event of `kind`, signalled if `signaled`. Cannot fail (`KeInitializeEvent`
    /// initialises caller-provided storage).
    fn new(kind: EventKind, signaled: bool) -> Self;
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
