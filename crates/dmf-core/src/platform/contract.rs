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
//! | wall clock | [`PlatformWallClock`] | `KeQuerySystemTimePrecise` / `ExSystemTimeToLocalTime` / `RtlTimeToTimeFields` |
//! | named event | [`PlatformNamedEvent`] | `ZwOpenEvent` / `ObReferenceObjectByHandle` + `KeSetEvent` + `ObDereferenceObject` / `ZwClose` |
//! | pool memory | [`PlatformPool`] | `ExAllocatePool2` / `ExFreePoolWithTag` |
//! | trace | [`PlatformTrace`] | `DbgPrintEx` (WPP in C DMF) |
//! | timer | [`PlatformTimer`] | `WdfTimerCreate` (parent: a device) / `WdfTimerStart` / `WdfTimerStop` |
//! | work item | [`PlatformWorkItem`] | `WdfWorkItemCreate` (parent: a device) / `WdfWorkItemEnqueue` / `WdfWorkItemFlush` |
//! | system thread | [`PlatformThread`] | `PsCreateSystemThread` / `KeWaitForSingleObject` |
//! | registry | [`PlatformRegistryKey`] | `WdfDriverOpenParametersRegistryKey` / `WdfRegistryOpenKey` / `WdfRegistryCreateKey` / `WdfDeviceOpenRegistryKey` / `WdfRegistryQueryValue` / `WdfRegistryAssignValue` / `WdfRegistryRemoveValue` / `WdfRegistryRemoveKey` / `ZwEnumerateKey` / `ZwEnumerateValueKey` |
//!
//! The device and I/O items (driver, device, PnP/power callbacks, device interfaces, queue,
//! request, file object, I/O target, device-interface notification) are in [`device`] and [`io`].
//! No contract item exists without a backend that implements it.

use core::time::Duration;

use crate::status::NtResult;

pub mod device;
pub mod hid;
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

/// A time split into calendar fields: `TIME_FIELDS` (what `RtlTimeToTimeFields` fills), and C
/// DMF's `DMF_TIME_FIELDS`, which has the same members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TimeFields {
    /// `Year`: 1601 and later.
    pub year: u16,
    /// `Month`: 1–12.
    pub month: u16,
    /// `Day`: 1–31.
    pub day: u16,
    /// `Hour`: 0–23.
    pub hour: u16,
    /// `Minute`: 0–59.
    pub minute: u16,
    /// `Second`: 0–59.
    pub second: u16,
    /// `Milliseconds`: 0–999.
    pub milliseconds: u16,
    /// `Weekday`: 0 (Sunday) – 6 (Saturday).
    pub weekday: u16,
}

/// The wall clock: system time (UTC), local time and calendar fields. Every routine at any IRQL.
///
/// Times are NT system times: 100-ns intervals since 1601-01-01 00:00 UTC (a `LARGE_INTEGER`).
/// On the simulator the system time is the machine's settable wall clock, which moves with the
/// virtual clock (outside a machine: the host's clock, in UTC).
pub trait PlatformWallClock {
    /// The current system time. Maps to `KeQuerySystemTimePrecise`.
    fn system_time() -> i64;
    /// `system_time` in the system's time zone. Maps to `ExSystemTimeToLocalTime`.
    fn system_time_to_local_time(system_time: i64) -> i64;
    /// `time` as calendar fields. Maps to `RtlTimeToTimeFields`.
    fn time_fields(time: i64) -> TimeFields;
}

/// A named kernel event opened for signalling: an event that another component — typically a
/// user-mode application, with `CreateEvent` — created in the object manager's namespace.
/// Maps to `ZwOpenEvent(EVENT_MODIFY_STATE, {name, OBJ_KERNEL_HANDLE})` (open),
/// `ObReferenceObjectByHandle` + `KeSetEvent` + `ObDereferenceObject` (set) and `ZwClose`
/// (drop). All at `PASSIVE_LEVEL`.
///
/// The handle is a kernel handle (`OBJ_KERNEL_HANDLE`): usable from any process context, and not
/// visible to user mode. The event lives as long as any handle to it is open, this one included.
pub trait PlatformNamedEvent: Sized + Send + Sync {
    /// Opens the event `name`, a full object-manager path (`\BaseNamedObjects\Name` for a
    /// user-mode `Global\Name`, `\Sessions\<n>\BaseNamedObjects\Name` for a session's).
    /// `STATUS_OBJECT_NAME_NOT_FOUND` when no such event exists; a name that is not a path is
    /// refused as `ZwOpenEvent` refuses it (`STATUS_OBJECT_PATH_SYNTAX_BAD`,
    /// `STATUS_OBJECT_NAME_INVALID`); `STATUS_INSUFFICIENT_RESOURCES` when the name's copy
    /// cannot be allocated.
    fn open(name: &str) -> NtResult<Self>;
    /// Signals the event (priority increment 0, no wait follows). Errors are those of
    /// `ObReferenceObjectByHandle` on the handle.
    fn set(&self) -> NtResult<()>;
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

/// A registry value as DMF reads and writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryValue {
    /// `REG_DWORD`.
    Dword(u32),
    /// `REG_QWORD`.
    Qword(u64),
    /// `REG_SZ` (no embedded NUL).
    String(alloc::string::String),
    /// `REG_EXPAND_SZ` (no embedded NUL; stored unexpanded).
    ExpandString(alloc::string::String),
    /// `REG_MULTI_SZ`: the strings, none empty or with an embedded NUL.
    MultiString(alloc::vec::Vec<alloc::string::String>),
    /// `REG_BINARY`.
    Binary(alloc::vec::Vec<u8>),
}

impl RegistryValue {
    /// The value's type.
    pub const fn value_type(&self) -> RegistryValueType {
        match self {
            RegistryValue::Dword(_) => RegistryValueType::Dword,
            RegistryValue::Qword(_) => RegistryValueType::Qword,
            RegistryValue::String(_) => RegistryValueType::String,
            RegistryValue::ExpandString(_) => RegistryValueType::ExpandString,
            RegistryValue::MultiString(_) => RegistryValueType::MultiString,
            RegistryValue::Binary(_) => RegistryValueType::Binary,
        }
    }
}

/// The type of a registry value (the `REG_*` types DMF reads and writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegistryValueType {
    /// `REG_SZ`: a NUL-terminated UTF-16 string.
    String,
    /// `REG_EXPAND_SZ`: a NUL-terminated UTF-16 string holding `%VARIABLE%` references.
    ExpandString,
    /// `REG_BINARY`: bytes.
    Binary,
    /// `REG_DWORD`: 4 bytes, little-endian.
    Dword,
    /// `REG_MULTI_SZ`: NUL-terminated UTF-16 strings followed by one more NUL.
    MultiString,
    /// `REG_QWORD`: 8 bytes, little-endian.
    Qword,
}

/// The rights a key is opened with (the `DesiredAccess` of `WdfRegistryOpenKey` and friends).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegistryAccess {
    /// `KEY_READ`: query, enumerate, open subkeys.
    Read,
    /// `KEY_READ | KEY_WRITE`: also set and delete values, create subkeys.
    ReadWrite,
    /// `KEY_ALL_ACCESS`: also delete the key itself.
    All,
}

/// A key the PnP manager keeps for a device (`WdfDeviceOpenRegistryKey`'s `DeviceInstanceKeyType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceRegistryKey {
    /// `PLUGPLAY_REGKEY_DEVICE`: the hardware key (`…\Enum\<instance>\Device Parameters`).
    Hardware,
    /// `PLUGPLAY_REGKEY_DRIVER`: the software key (`…\Control\Class\<class>\<nnnn>`).
    Software,
}

/// What [`PlatformRegistryKey::query_into`] found: the value's type and the size of its data in
/// bytes (the data was copied only when `length` fits the buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegistryValueInfo {
    /// The value's type; `None` for a type outside [`RegistryValueType`] (`REG_NONE`, …).
    pub value_type: Option<RegistryValueType>,
    /// The size of the value's data in bytes, as stored.
    pub length: usize,
}

/// An open registry key (`WDFKEY`). Maps to `WdfDriverOpenParametersRegistryKey`,
/// `WdfRegistryOpenKey` / `WdfRegistryCreateKey` (by path, or relative to a parent key),
/// `WdfDeviceOpenRegistryKey` (open), `WdfRegistryQueryValue` (query), `WdfRegistryAssignValue`
/// (set), `WdfRegistryRemoveValue` (delete a value), `WdfRegistryRemoveKey` (delete the key),
/// `ZwEnumerateKey` / `ZwEnumerateValueKey` on `WdfRegistryWdmGetHandle` (enumerate) and
/// `WdfRegistryClose` (drop). Every operation at `PASSIVE_LEVEL`.
///
/// Errors use the registry's statuses: `STATUS_OBJECT_NAME_NOT_FOUND` for a missing key or value,
/// `STATUS_OBJECT_TYPE_MISMATCH` for a value of another type, `STATUS_ACCESS_DENIED` for an
/// operation the key's [`RegistryAccess`] does not allow, `STATUS_CANNOT_DELETE` for deleting a
/// key that has subkeys, `STATUS_INVALID_PARAMETER` for a malformed path, name or value.
pub trait PlatformRegistryKey: Sized + Send + Sync {
    /// The device whose PnP keys [`open_device_key`](Self::open_device_key) opens.
    type Device;
    /// Opens the driver's `Parameters` key (`WdfDriverOpenParametersRegistryKey`, `KEY_READ |
    /// KEY_WRITE`) for the driver named `driver`.
    fn open_driver_parameters(driver: &str) -> NtResult<Self>;
    /// Opens the key at the absolute path `path` (`\Registry\Machine\…`): `WdfRegistryOpenKey`
    /// with no parent, or, with `create`, `WdfRegistryCreateKey` (`REG_OPTION_NON_VOLATILE`),
    /// which creates the missing keys along the path.
    fn open_path(path: &str, access: RegistryAccess, create: bool) -> NtResult<Self>;
    /// Opens one of `device`'s PnP keys (`WdfDeviceOpenRegistryKey`).
    fn open_device_key(
        device: &Self::Device,
        which: DeviceRegistryKey,
        access: RegistryAccess,
    ) -> NtResult<Self>;
    /// Opens the subkey at `path` relative to this key (`WdfRegistryOpenKey` /
    /// `WdfRegistryCreateKey` with this key as `ParentKey`).
    fn open_subkey(&self, path: &str, access: RegistryAccess, create: bool) -> NtResult<Self>;
    /// Reads value `name`.
    fn query(&self, name: &str) -> NtResult<RegistryValue>;
    /// Reads value `name`'s data as stored (`WdfRegistryQueryValue`) into `buffer` if it fits;
    /// returns its type and length either way (a length above `buffer.len()` means nothing was
    /// copied). `buffer` may be empty, to learn the size.
    fn query_into(&self, name: &str, buffer: &mut [u8]) -> NtResult<RegistryValueInfo>;
    /// Writes value `name`, replacing any value of any type.
    fn set(&self, name: &str, value: RegistryValue) -> NtResult<()>;
    /// Writes value `name` from data laid out as stored (`WdfRegistryAssignValue`): strings are
    /// UTF-16LE with their terminators, integers little-endian of their exact size.
    fn set_raw(&self, name: &str, value_type: RegistryValueType, data: &[u8]) -> NtResult<()>;
    /// Deletes value `name`.
    fn delete(&self, name: &str) -> NtResult<()>;
    /// Deletes this key (`WdfRegistryRemoveKey`, which also closes it); needs
    /// [`RegistryAccess::All`] and a key without subkeys.
    fn delete_key(self) -> NtResult<()>;
    /// Writes the name of subkey `index` (`ZwEnumerateKey`, `KeyBasicInformation`) into `name`
    /// as UTF-16 and returns its length in units; `None` past the last subkey
    /// (`STATUS_NO_MORE_ENTRIES`). `STATUS_BUFFER_OVERFLOW` if `name` is too short.
    fn subkey_name(&self, index: u32, name: &mut [u16]) -> NtResult<Option<usize>>;
    /// As [`subkey_name`](Self::subkey_name) for the name of value `index` (`ZwEnumerateValueKey`,
    /// `KeyValueBasicInformation`).
    fn value_name(&self, index: u32, name: &mut [u16]) -> NtResult<Option<usize>>;
}
