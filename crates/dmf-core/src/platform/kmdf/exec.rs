//! The execution items on the kernel: events, locks, IRQL, clock, pool, trace (the NT layer and
//! `WDFSPINLOCK`/`WDFWAITLOCK`), timers, work items, system threads and the registry.
//!
//! | Item | Calls |
//! |---|---|
//! | [`Event`] | the NT layer's [`NtEvent`](crate::platform::nt::NtEvent): `KeInitializeEvent` / `KeSetEvent` / `KeClearEvent` / `KeReadStateEvent` / `KeWaitForSingleObject` |
//! | [`SpinLock`] | `WdfSpinLockCreate` / `WdfSpinLockAcquire` / `WdfSpinLockRelease` / `WdfObjectDelete` |
//! | [`WaitLock`] | `WdfWaitLockCreate` / `WdfWaitLockAcquire` / `WdfWaitLockRelease` / `WdfObjectDelete` |
//! | IRQL, clock, pool, trace | the NT layer (`KeGetCurrentIrql`, `KeQueryInterruptTime`, `ExAllocatePool2` / `ExFreePoolWithTag`, `DbgPrintEx`) |
//! | [`Timer`] | `WdfTimerCreate` / `WdfTimerStart` / `WdfTimerStop` / `WdfObjectDelete`; `EvtTimerFunc` trampoline |
//! | [`WorkItem`] | `WdfWorkItemCreate` / `WdfWorkItemEnqueue` / `WdfWorkItemFlush` / `WdfObjectDelete`; `EvtWorkItem` trampoline |
//! | [`SystemThread`] | `PsCreateSystemThread` + `ObReferenceObjectByHandle` + `ZwClose` / `KeWaitForSingleObject` / `ObfDereferenceObject` |
//! | [`RegistryKey`] | `WdfDriverOpenParametersRegistryKey` / `WdfRegistryOpenKey` / `WdfRegistryCreateKey` / `WdfDeviceOpenRegistryKey` / `WdfRegistryQueryValue` / `WdfRegistryAssignValue` / `WdfRegistryRemoveValue` / `WdfRegistryRemoveKey` / `ZwEnumerateKey` and `ZwEnumerateValueKey` on `WdfRegistryWdmGetHandle` / `WdfRegistryClose` |
//!
//! # Parents of timers and work items
//! KMDF requires a timer's or work item's `ParentObject` to be a device (or an object whose
//! parent chain reaches one); the contract's constructors take that device (`parent`), and the
//! backend passes its `WDFDEVICE` ([`Device::raw`]) as `ParentObject`. The Rust owner (a Module)
//! deletes the object on drop; WDF deletes it first when the device goes away, so each object's
//! `EvtCleanupCallback` clears the handle the owner holds, and a late drop (or call) does not
//! touch an already deleted object.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ffi::c_void;
use core::mem::size_of;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use core::time::Duration;

use wdk_sys::{
    call_unsafe_wdf_function_binding, _KWAIT_REASON, HANDLE, KEY_BASIC_INFORMATION,
    KEY_VALUE_BASIC_INFORMATION, PVOID, REG_BINARY, REG_DWORD, REG_EXPAND_SZ, REG_MULTI_SZ,
    REG_QWORD, REG_SZ, STATUS_BUFFER_OVERFLOW, STATUS_BUFFER_TOO_SMALL, STATUS_NO_MORE_ENTRIES,
    STATUS_SUCCESS, STATUS_TIMEOUT, ULONG, WDFKEY, WDFOBJECT, WDFSPINLOCK, WDFTIMER, WDFWAITLOCK,
    WDFWORKITEM,
};

use super::device::Device;
use super::wdf::{
    as_object, boolean, context_type, nt_result, object_attributes_init,
    object_attributes_with_context, relative_timeout, string_from_utf16_lossy, timer_config_init,
    workitem_config_init, UnicodeName, FALSE, KERNEL_MODE, WDF_EXECUTION_LEVEL_PASSIVE,
};
use crate::fallible::{
    try_arc, try_box, try_to_vec, try_vec_filled, try_vec_with_capacity, VecExt,
};
use crate::platform::contract::{
    DeviceRegistryKey, EventKind, Irql, PlatformEvent, PlatformIrql, PlatformPool,
    PlatformRegistryKey, PlatformSpinLock, PlatformThread, PlatformTimer, PlatformTrace,
    PlatformWaitLock, PlatformWorkItem, PoolTag, RegistryAccess, RegistryValue, RegistryValueInfo,
    RegistryValueType, Timeout, TimerExecutionLevel, TraceLevel, WaitStatus,
};
use crate::platform::nt::{self, NtCurrentIrql, NtEvent};
use crate::rundown::RundownEvent;
use crate::status::{NtResult, NtStatus};

/// A kernel event: the NT layer's [`NtEvent`] (a `KEVENT` in its own non-paged pool block).
#[derive(Debug)]
pub struct Event(NtEvent);

impl PlatformEvent for Event {
    /// `ExAllocatePool2` + `KeInitializeEvent`: `STATUS_INSUFFICIENT_RESOURCES` when the pool
    /// cannot supply the `KEVENT`'s storage.
    fn new(kind: EventKind, signaled: bool) -> NtResult<Self> {
        NtEvent::new(kind, signaled).map(Event)
    }

    fn set(&self) -> bool {
        self.0.set()
    }

    fn clear(&self) {
        self.0.clear();
    }

    fn is_signaled(&self) -> bool {
        self.0.is_signaled()
    }

    fn wait(&self, timeout: Timeout) -> WaitStatus {
        self.0.wait(timeout)
    }
}

impl RundownEvent for Event {
    /// A notification event, not signalled (as [`PlatformEvent::new`], which may fail).
    fn new() -> NtResult<Self> {
        <Event as PlatformEvent>::new(EventKind::Notification, false)
    }

    fn signal(&self) {
        self.0.set();
    }

    fn wait(&self) {
        let status = self.0.wait(None);
        debug_assert_eq!(
            status,
            WaitStatus::Signaled,
            "an infinite wait cannot time out"
        );
    }

    fn reset(&self) {
        self.0.clear();
    }
}

/// The current IRQL (`KeGetCurrentIrql`, the NT layer's CR8 read).
#[derive(Clone, Copy, Debug, Default)]
pub struct CurrentIrql;

impl PlatformIrql for CurrentIrql {
    fn current() -> Irql {
        NtCurrentIrql::current()
    }
}

/// `KeQueryInterruptTime` (the NT layer's clock).
pub type Clock = nt::NtClock;
/// A zeroed non-paged pool block, freed on drop (the NT layer's block).
pub type PoolBuffer = nt::NtPoolBlock;

/// Tagged non-paged pool: `ExAllocatePool2(POOL_FLAG_NON_PAGED, …)` / `ExFreePoolWithTag`, the NT
/// layer's [`NtPool`](nt::NtPool). A type of its own (not an alias) so that, as on the
/// simulator, the contract trait is the only way to call it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pool;

impl PlatformPool for Pool {
    type Block = PoolBuffer;

    fn allocate(tag: PoolTag, size: usize) -> NtResult<PoolBuffer> {
        nt::NtPool::allocate(tag, size)
    }
}

/// Driver tracing: `DbgPrintEx(DPFLTR_IHVDRIVER_ID, …)`, the NT layer's
/// [`NtTrace`](nt::NtTrace).
#[derive(Clone, Copy, Debug, Default)]
pub struct Trace;

impl PlatformTrace for Trace {
    fn trace(level: TraceLevel, source: &str, message: core::fmt::Arguments<'_>) {
        nt::NtTrace::trace(level, source, message);
    }
}

/// Deletes a WDF object (`WdfObjectDelete`).
///
/// # Safety
/// `object` must be a live WDF object the caller owns and may delete.
unsafe fn object_delete(object: WDFOBJECT) {
    // SAFETY: forwarded from the caller.
    unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, object) };
}

/// A `WDFSPINLOCK` parented to the driver, deleted on drop.
#[derive(Debug)]
pub struct SpinLock {
    // INVARIANT: a live WDFSPINLOCK created by `new` and owned by this value.
    handle: WDFSPINLOCK,
}

// SAFETY: a WDFSPINLOCK handle may be used from any thread and processor; WDF synchronises it.
unsafe impl Send for SpinLock {}
// SAFETY: as for `Send`.
unsafe impl Sync for SpinLock {}

impl PlatformSpinLock for SpinLock {
    fn new() -> NtResult<Self> {
        let mut attributes = object_attributes_init();
        let mut handle: WDFSPINLOCK = null_mut();
        // SAFETY: valid attributes and an out pointer to our local.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfSpinLockCreate,
                &raw mut attributes,
                &raw mut handle
            )
        };
        nt_result(status)?;
        Ok(SpinLock { handle })
    }

    fn acquire(&self) {
        // SAFETY: live lock (invariant); WdfSpinLockAcquire is callable at <= DISPATCH_LEVEL.
        unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockAcquire, self.handle) };
    }

    fn release(&self) {
        // SAFETY: live lock (invariant); the contract says only the acquiring thread releases.
        unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockRelease, self.handle) };
    }
}

impl Drop for SpinLock {
    fn drop(&mut self) {
        // SAFETY: we own the lock (invariant); a lock being dropped is not held (`&mut self`).
        unsafe { object_delete(as_object(self.handle)) };
    }
}

/// A `WDFWAITLOCK` parented to the driver, deleted on drop.
#[derive(Debug)]
pub struct WaitLock {
    // INVARIANT: a live WDFWAITLOCK created by `new` and owned by this value.
    handle: WDFWAITLOCK,
}

// SAFETY: a WDFWAITLOCK handle may be used from any thread; WDF synchronises it.
unsafe impl Send for WaitLock {}
// SAFETY: as for `Send`.
unsafe impl Sync for WaitLock {}

impl PlatformWaitLock for WaitLock {
    fn new() -> NtResult<Self> {
        let mut attributes = object_attributes_init();
        let mut handle: WDFWAITLOCK = null_mut();
        // SAFETY: valid attributes and an out pointer to our local.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfWaitLockCreate,
                &raw mut attributes,
                &raw mut handle
            )
        };
        nt_result(status)?;
        Ok(WaitLock { handle })
    }

    fn acquire(&self, timeout: Timeout) -> WaitStatus {
        let mut interval = relative_timeout(timeout);
        let interval_ptr = interval.as_mut().map_or(null_mut(), core::ptr::from_mut);
        // SAFETY: live lock (invariant); the timeout is null or our local LONGLONG.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(WdfWaitLockAcquire, self.handle, interval_ptr)
        };
        if status == STATUS_TIMEOUT {
            WaitStatus::TimedOut
        } else {
            WaitStatus::Signaled
        }
    }

    fn release(&self) {
        // SAFETY: live lock (invariant); the contract says only the acquiring thread releases.
        unsafe { call_unsafe_wdf_function_binding!(WdfWaitLockRelease, self.handle) };
    }
}

impl Drop for WaitLock {
    fn drop(&mut self) {
        // SAFETY: we own the lock (invariant); it is not held (`&mut self`).
        unsafe { object_delete(as_object(self.handle)) };
    }
}

/// What a timer's or work item's context and its Rust owner share.
pub(super) struct Shared<H> {
    /// The WDF handle; null once the object was deleted (by the owner or by WDF with its parent).
    handle: AtomicPtr<H>,
    /// The driver's callback.
    callback: Box<dyn Fn() + Send + Sync>,
    /// Work items only: queued and not yet started.
    queued: AtomicBool,
}

impl<H> Shared<H> {
    /// The shared state of a timer or work item about to be created (no handle yet), allocated
    /// before the WDF object so that a refusal leaves nothing to delete.
    fn new(callback: impl Fn() + Send + Sync + 'static) -> NtResult<Arc<Self>> {
        let callback: Box<dyn Fn() + Send + Sync> = try_box(callback)?;
        try_arc(Shared {
            handle: AtomicPtr::new(null_mut()),
            callback,
            queued: AtomicBool::new(false),
        })
    }
}

context_type!(
    /// The context of a `WDFTIMER`: the shared state.
    TIMER_CONTEXT: Arc<Shared<wdk_sys::WDFTIMER__>> = c"DmfRsTimer", timer_context_destroy
);
context_type!(
    /// The context of a `WDFWORKITEM`: the shared state.
    WORK_ITEM_CONTEXT: Arc<Shared<wdk_sys::WDFWORKITEM__>> = c"DmfRsWorkItem", work_item_context_destroy
);

/// `EvtTimerFunc`: runs the driver's callback (at DISPATCH_LEVEL, or PASSIVE_LEVEL for a passive
/// timer).
unsafe extern "C" fn evt_timer(timer: WDFTIMER) {
    // SAFETY: WDF passes the live timer this callback was registered for, created with
    // TIMER_CONTEXT.
    if let Some(shared) = unsafe { TIMER_CONTEXT.get(as_object(timer)) } {
        (shared.callback)();
    }
}

/// `EvtCleanupCallback` of a timer or work item: WDF is deleting it; the owner must not.
unsafe extern "C" fn evt_timer_cleanup(object: WDFOBJECT) {
    // SAFETY: WDF passes the live timer, created with TIMER_CONTEXT.
    if let Some(shared) = unsafe { TIMER_CONTEXT.get(object) } {
        shared.handle.store(null_mut(), Ordering::Release);
    }
}

/// A `WDFTIMER` whose `EvtTimerFunc` runs a Rust closure; deleted on drop.
pub struct Timer {
    shared: Arc<Shared<wdk_sys::WDFTIMER__>>,
}

impl core::fmt::Debug for Timer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Timer").finish_non_exhaustive()
    }
}

impl Timer {
    fn handle(&self) -> WDFTIMER {
        self.shared.handle.load(Ordering::Acquire)
    }
}

impl PlatformTimer for Timer {
    type Device = Device;

    fn new(
        parent: &Device,
        _name: &str,
        period: Option<Duration>,
        level: TimerExecutionLevel,
        callback: impl Fn() + Send + Sync + 'static,
    ) -> NtResult<Self> {
        let period_ms = match period {
            None => 0,
            Some(_) if level == TimerExecutionLevel::Passive => {
                return Err(NtStatus::INVALID_PARAMETER)
            }
            Some(p) => match u32::try_from(p.as_millis()) {
                Ok(0) | Err(_) => return Err(NtStatus::INVALID_PARAMETER),
                Ok(ms) => ms,
            },
        };
        let shared = Shared::new(callback)?;
        let mut config = timer_config_init(period_ms);
        config.EvtTimerFunc = Some(evt_timer);
        let mut attributes = object_attributes_with_context(&TIMER_CONTEXT);
        attributes.ParentObject = as_object(parent.raw());
        attributes.EvtCleanupCallback = Some(evt_timer_cleanup);
        if level == TimerExecutionLevel::Passive {
            attributes.ExecutionLevel = WDF_EXECUTION_LEVEL_PASSIVE as _;
        }
        let mut handle: WDFTIMER = null_mut();
        // SAFETY: valid config and attributes; the parent is `parent`'s WDFDEVICE, live while a
        // `Device` exists (the backend's invariant); out pointer to our local.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfTimerCreate,
                &raw mut config,
                &raw mut attributes,
                &raw mut handle
            )
        };
        nt_result(status)?;
        // SAFETY: the timer was just created with TIMER_CONTEXT and cannot fire before `start`.
        unsafe {
            let Some(slot) = TIMER_CONTEXT.slot(as_object(handle)) else {
                object_delete(as_object(handle));
                return Err(NtStatus::INSUFFICIENT_RESOURCES);
            };
            slot.init(shared.clone());
        }
        shared.handle.store(handle, Ordering::Release);
        Ok(Timer { shared })
    }

    fn start(&self, due: Duration) -> bool {
        let handle = self.handle();
        if handle.is_null() {
            return false;
        }
        let due_time = relative_timeout(Some(due)).unwrap_or(0);
        // SAFETY: a live timer (not deleted: the handle is cleared on deletion).
        unsafe { call_unsafe_wdf_function_binding!(WdfTimerStart, handle, due_time) != FALSE }
    }

    fn stop(&self, wait: bool) -> bool {
        let handle = self.handle();
        if handle.is_null() {
            return false;
        }
        // SAFETY: a live timer; with `wait` the caller is at PASSIVE_LEVEL (contract).
        unsafe { call_unsafe_wdf_function_binding!(WdfTimerStop, handle, boolean(wait)) != FALSE }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let handle = self.shared.handle.swap(null_mut(), Ordering::AcqRel);
        if !handle.is_null() {
            // SAFETY: the handle was still set, so WDF has not deleted the timer; we own it.
            // WdfObjectDelete stops the timer; the context (our Arc clone) goes with the object.
            unsafe { object_delete(as_object(handle)) };
        }
    }
}

/// `EvtWorkItem`: runs the driver's callback at PASSIVE_LEVEL.
unsafe extern "C" fn evt_work_item(item: WDFWORKITEM) {
    // SAFETY: WDF passes the live work item, created with WORK_ITEM_CONTEXT.
    if let Some(shared) = unsafe { WORK_ITEM_CONTEXT.get(as_object(item)) } {
        shared.queued.store(false, Ordering::Release);
        (shared.callback)();
    }
}

/// `EvtCleanupCallback` of a work item.
unsafe extern "C" fn evt_work_item_cleanup(object: WDFOBJECT) {
    // SAFETY: WDF passes the live work item, created with WORK_ITEM_CONTEXT.
    if let Some(shared) = unsafe { WORK_ITEM_CONTEXT.get(object) } {
        shared.handle.store(null_mut(), Ordering::Release);
    }
}

/// A `WDFWORKITEM` whose `EvtWorkItem` runs a Rust closure; deleted on drop.
pub struct WorkItem {
    shared: Arc<Shared<wdk_sys::WDFWORKITEM__>>,
}

impl core::fmt::Debug for WorkItem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WorkItem").finish_non_exhaustive()
    }
}

impl PlatformWorkItem for WorkItem {
    type Device = Device;

    fn new(
        parent: &Device,
        _name: &str,
        callback: impl Fn() + Send + Sync + 'static,
    ) -> NtResult<Self> {
        let shared = Shared::new(callback)?;
        let mut config = workitem_config_init();
        config.EvtWorkItemFunc = Some(evt_work_item);
        let mut attributes = object_attributes_with_context(&WORK_ITEM_CONTEXT);
        attributes.ParentObject = as_object(parent.raw());
        attributes.EvtCleanupCallback = Some(evt_work_item_cleanup);
        let mut handle: WDFWORKITEM = null_mut();
        // SAFETY: valid config and attributes; the parent is `parent`'s WDFDEVICE, live while a
        // `Device` exists (the backend's invariant); out pointer to our local.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfWorkItemCreate,
                &raw mut config,
                &raw mut attributes,
                &raw mut handle
            )
        };
        nt_result(status)?;
        // SAFETY: just created with WORK_ITEM_CONTEXT; it cannot run before `enqueue`.
        unsafe {
            let Some(slot) = WORK_ITEM_CONTEXT.slot(as_object(handle)) else {
                object_delete(as_object(handle));
                return Err(NtStatus::INSUFFICIENT_RESOURCES);
            };
            slot.init(shared.clone());
        }
        shared.handle.store(handle, Ordering::Release);
        Ok(WorkItem { shared })
    }

    /// `WdfWorkItemEnqueue`. WDF does not report whether the item was already queued (it then
    /// does nothing); the backend keeps that bit, cleared when the callback starts.
    fn enqueue(&self) -> bool {
        let handle = self.shared.handle.load(Ordering::Acquire);
        if handle.is_null() || self.shared.queued.swap(true, Ordering::AcqRel) {
            return false;
        }
        // SAFETY: a live work item; WdfWorkItemEnqueue is callable at <= DISPATCH_LEVEL.
        unsafe { call_unsafe_wdf_function_binding!(WdfWorkItemEnqueue, handle) };
        true
    }

    fn flush(&self) {
        let handle = self.shared.handle.load(Ordering::Acquire);
        if !handle.is_null() {
            // SAFETY: a live work item; the caller is at PASSIVE_LEVEL (contract).
            unsafe { call_unsafe_wdf_function_binding!(WdfWorkItemFlush, handle) };
        }
    }
}

impl Drop for WorkItem {
    fn drop(&mut self) {
        let handle = self.shared.handle.swap(null_mut(), Ordering::AcqRel);
        if !handle.is_null() {
            // SAFETY: not deleted by WDF yet (the handle was set); we own it. WdfObjectDelete
            // waits for a running callback of a work item (documented for WdfWorkItemFlush/Delete
            // at PASSIVE_LEVEL).
            unsafe { object_delete(as_object(handle)) };
        }
    }
}

/// The start routine of every system thread: runs the boxed closure, then terminates.
unsafe extern "C" fn system_thread_start(context: PVOID) {
    // SAFETY: `spawn` passed a `Box<Box<dyn FnOnce>>` leaked with `Box::into_raw`, received here
    // exactly once.
    let start = unsafe { Box::from_raw(context.cast::<Box<dyn FnOnce() + Send>>()) };
    start();
    // SAFETY: called on the system thread itself, at PASSIVE_LEVEL, holding no locks.
    let _ = unsafe { wdk_sys::ntddk::PsTerminateSystemThread(STATUS_SUCCESS) };
}

/// A system thread (`PsCreateSystemThread`), referenced by its `ETHREAD` so it can be waited on.
pub struct SystemThread {
    // INVARIANT: a referenced PETHREAD (ObReferenceObjectByHandle), dereferenced on drop.
    thread: PVOID,
}

// SAFETY: a referenced thread object may be waited on and dereferenced from any thread.
unsafe impl Send for SystemThread {}
// SAFETY: as for `Send`; `wait` is KeWaitForSingleObject, built for concurrent use.
unsafe impl Sync for SystemThread {}

impl core::fmt::Debug for SystemThread {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SystemThread").finish_non_exhaustive()
    }
}

impl PlatformThread for SystemThread {
    fn spawn(_name: &str, start: impl FnOnce() + Send + 'static) -> NtResult<Self> {
        let start: Box<dyn FnOnce() + Send> = try_box(start)?;
        let context = Box::into_raw(try_box(start)?);
        let mut handle: HANDLE = null_mut();
        // SAFETY: out pointer to our local; no object attributes (kernel handle by default for a
        // system thread in the system process), no process, no client id; the start routine takes
        // ownership of `context` if the thread starts.
        let status = unsafe {
            wdk_sys::ntddk::PsCreateSystemThread(
                &raw mut handle,
                wdk_sys::THREAD_ALL_ACCESS,
                null_mut(),
                null_mut(),
                null_mut(),
                Some(system_thread_start),
                context.cast::<c_void>(),
            )
        };
        if let Err(error) = nt_result(status) {
            // SAFETY: the thread was not created, so the closure is still ours.
            drop(unsafe { Box::from_raw(context) });
            return Err(error);
        }
        let mut thread: PVOID = null_mut();
        // SAFETY: `handle` is the kernel handle just returned; a null object type is allowed for
        // a KernelMode reference (and avoids importing the `PsThreadType` data export); out
        // pointer to our local.
        let status = unsafe {
            wdk_sys::ntddk::ObReferenceObjectByHandle(
                handle,
                wdk_sys::SYNCHRONIZE,
                null_mut(),
                KERNEL_MODE,
                &raw mut thread,
                null_mut(),
            )
        };
        // SAFETY: we own the handle; the thread keeps running without it.
        let _ = unsafe { wdk_sys::ntddk::ZwClose(handle) };
        nt_result(status)?;
        Ok(SystemThread { thread })
    }

    fn wait(&self, timeout: Timeout) -> WaitStatus {
        let mut interval = relative_timeout(timeout);
        let interval_ptr = interval.as_mut().map_or(null_mut(), core::ptr::from_mut);
        // SAFETY: a referenced thread object (invariant); the timeout is null or our local
        // LARGE_INTEGER (an i64).
        let status = unsafe {
            wdk_sys::ntddk::KeWaitForSingleObject(
                self.thread,
                _KWAIT_REASON::Executive,
                KERNEL_MODE,
                FALSE,
                interval_ptr.cast::<wdk_sys::LARGE_INTEGER>(),
            )
        };
        if status == STATUS_TIMEOUT {
            WaitStatus::TimedOut
        } else {
            WaitStatus::Signaled
        }
    }
}

impl Drop for SystemThread {
    fn drop(&mut self) {
        // SAFETY: balances the ObReferenceObjectByHandle of `spawn` (invariant), once.
        let _ = unsafe { wdk_sys::ntddk::ObfDereferenceObject(self.thread) };
    }
}

/// `KEY_READ | KEY_WRITE`.
const KEY_READ_WRITE: wdk_sys::ACCESS_MASK = wdk_sys::KEY_READ | wdk_sys::KEY_WRITE;

/// The `ACCESS_MASK` of a [`RegistryAccess`].
fn access_mask(access: RegistryAccess) -> wdk_sys::ACCESS_MASK {
    match access {
        RegistryAccess::Read => wdk_sys::KEY_READ,
        RegistryAccess::ReadWrite => KEY_READ_WRITE,
        RegistryAccess::All => wdk_sys::KEY_ALL_ACCESS,
    }
}

/// The `REG_*` number of a [`RegistryValueType`].
fn reg_type(value_type: RegistryValueType) -> ULONG {
    match value_type {
        RegistryValueType::String => REG_SZ,
        RegistryValueType::ExpandString => REG_EXPAND_SZ,
        RegistryValueType::Binary => REG_BINARY,
        RegistryValueType::Dword => REG_DWORD,
        RegistryValueType::MultiString => REG_MULTI_SZ,
        RegistryValueType::Qword => REG_QWORD,
    }
}

/// The [`RegistryValueType`] of a `REG_*` number, if it is one DMF reads.
fn value_type_of(kind: ULONG) -> Option<RegistryValueType> {
    Some(match kind {
        REG_SZ => RegistryValueType::String,
        REG_EXPAND_SZ => RegistryValueType::ExpandString,
        REG_BINARY => RegistryValueType::Binary,
        REG_DWORD => RegistryValueType::Dword,
        REG_MULTI_SZ => RegistryValueType::MultiString,
        REG_QWORD => RegistryValueType::Qword,
        _ => return None,
    })
}

/// An open `WDFKEY`, closed on drop.
pub struct RegistryKey {
    // INVARIANT: an open WDFKEY (opened by one of the `open_*` functions), closed only by `drop`
    // or deleted by `delete_key` (which then forgets `self`).
    key: WDFKEY,
}

// SAFETY: a WDFKEY may be used from any thread at PASSIVE_LEVEL; the registry synchronises.
unsafe impl Send for RegistryKey {}
// SAFETY: as for `Send`.
unsafe impl Sync for RegistryKey {}

impl core::fmt::Debug for RegistryKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RegistryKey").finish_non_exhaustive()
    }
}

impl RegistryKey {
    /// `WdfRegistryOpenKey` / `WdfRegistryCreateKey` below `parent` (null: `name` is absolute).
    fn open_below(
        parent: WDFKEY,
        name: &str,
        access: RegistryAccess,
        create: bool,
    ) -> NtResult<Self> {
        let name = UnicodeName::new(name)?;
        let mut key: WDFKEY = null_mut();
        let status = if create {
            // SAFETY: `parent` is null or an open key (callers); a valid name; no disposition
            // wanted; no attributes; out pointer to our local.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfRegistryCreateKey,
                    parent,
                    name.as_ptr(),
                    access_mask(access),
                    wdk_sys::REG_OPTION_NON_VOLATILE,
                    null_mut(),
                    wdk_sys::WDF_NO_OBJECT_ATTRIBUTES,
                    &raw mut key
                )
            }
        } else {
            // SAFETY: as above.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfRegistryOpenKey,
                    parent,
                    name.as_ptr(),
                    access_mask(access),
                    wdk_sys::WDF_NO_OBJECT_ATTRIBUTES,
                    &raw mut key
                )
            }
        };
        nt_result(status)?;
        Ok(RegistryKey { key })
    }

    /// `ZwEnumerateKey` / `ZwEnumerateValueKey` (`enumerate`) on the key's WDM handle into a
    /// buffer holding the `…BASIC_INFORMATION` header (`NameLength` at `length_offset`, `Name` at
    /// `name_offset`) and `name.len()` units; copies the name out.
    fn enumerate_name(
        &self,
        name: &mut [u16],
        length_offset: usize,
        name_offset: usize,
        enumerate: impl FnOnce(HANDLE, PVOID, ULONG, &mut ULONG) -> wdk_sys::NTSTATUS,
    ) -> NtResult<Option<usize>> {
        let bytes = name_offset + core::mem::size_of_val(name);
        let mut buffer: Vec<u64> = try_vec_filled(0, bytes.div_ceil(size_of::<u64>()))?;
        let length = ULONG::try_from(buffer.len() * size_of::<u64>())
            .map_err(|_| NtStatus::INVALID_PARAMETER)?;
        // SAFETY: open key (invariant).
        let handle =
            unsafe { call_unsafe_wdf_function_binding!(WdfRegistryWdmGetHandle, self.key) };
        let mut result: ULONG = 0;
        let status = enumerate(
            handle,
            buffer.as_mut_ptr().cast::<c_void>(),
            length,
            &mut result,
        );
        if status == STATUS_NO_MORE_ENTRIES {
            return Ok(None);
        }
        if status == STATUS_BUFFER_OVERFLOW || status == STATUS_BUFFER_TOO_SMALL {
            return Err(NtStatus::BUFFER_OVERFLOW);
        }
        nt_result(status)?;
        let raw: Vec<u8> =
            crate::fallible::try_collect(buffer.iter().flat_map(|word| word.to_le_bytes()))?;
        let field = raw
            .get(length_offset..length_offset + size_of::<ULONG>())
            .ok_or(NtStatus::BUFFER_OVERFLOW)?;
        let name_bytes = ULONG::from_le_bytes([field[0], field[1], field[2], field[3]]) as usize;
        let raw_name = raw
            .get(name_offset..name_offset + name_bytes)
            .ok_or(NtStatus::BUFFER_OVERFLOW)?;
        let units = name_bytes / size_of::<u16>();
        let out = name.get_mut(..units).ok_or(NtStatus::BUFFER_OVERFLOW)?;
        for (unit, pair) in out.iter_mut().zip(raw_name.chunks_exact(size_of::<u16>())) {
            *unit = u16::from_le_bytes([pair[0], pair[1]]);
        }
        Ok(Some(units))
    }
}

impl PlatformRegistryKey for RegistryKey {
    type Device = Device;

    /// `WdfDriverOpenParametersRegistryKey(WdfGetDriver(), KEY_READ | KEY_WRITE)`. A kernel
    /// image holds one driver, so `_driver` is not needed to find it.
    fn open_driver_parameters(_driver: &str) -> NtResult<Self> {
        let driver = super::device::wdf_driver();
        let mut key: WDFKEY = null_mut();
        // SAFETY: the driver object of this image; no attributes; out pointer to our local.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDriverOpenParametersRegistryKey,
                driver,
                KEY_READ_WRITE,
                wdk_sys::WDF_NO_OBJECT_ATTRIBUTES,
                &raw mut key
            )
        };
        nt_result(status)?;
        Ok(RegistryKey { key })
    }

    /// `WdfRegistryOpenKey(NULL, …)` / `WdfRegistryCreateKey(NULL, …, REG_OPTION_NON_VOLATILE)`.
    fn open_path(path: &str, access: RegistryAccess, create: bool) -> NtResult<Self> {
        Self::open_below(null_mut(), path, access, create)
    }

    /// `WdfDeviceOpenRegistryKey(device, PLUGPLAY_REGKEY_DEVICE | PLUGPLAY_REGKEY_DRIVER, …)`.
    fn open_device_key(
        device: &Device,
        which: DeviceRegistryKey,
        access: RegistryAccess,
    ) -> NtResult<Self> {
        let kind = match which {
            DeviceRegistryKey::Hardware => wdk_sys::PLUGPLAY_REGKEY_DEVICE,
            DeviceRegistryKey::Software => wdk_sys::PLUGPLAY_REGKEY_DRIVER,
        };
        let mut key: WDFKEY = null_mut();
        // SAFETY: a live device (the reference); no attributes; out pointer to our local.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceOpenRegistryKey,
                device.raw(),
                kind,
                access_mask(access),
                wdk_sys::WDF_NO_OBJECT_ATTRIBUTES,
                &raw mut key
            )
        };
        nt_result(status)?;
        Ok(RegistryKey { key })
    }

    /// `WdfRegistryOpenKey` / `WdfRegistryCreateKey` with this key as `ParentKey`.
    fn open_subkey(&self, path: &str, access: RegistryAccess, create: bool) -> NtResult<Self> {
        Self::open_below(self.key, path, access, create)
    }

    /// `WdfRegistryQueryValue`, once for the size (`STATUS_BUFFER_OVERFLOW`) and once for the data.
    fn query(&self, name: &str) -> NtResult<RegistryValue> {
        let info = self.query_into(name, &mut [])?;
        let mut data = try_vec_filled(0_u8, info.length)?;
        let info = self.query_into(name, &mut data)?;
        if info.length > data.len() {
            // The value grew between the two calls.
            return Err(NtStatus::BUFFER_OVERFLOW);
        }
        data.truncate(info.length);
        let units = || {
            data.chunks_exact(size_of::<u16>())
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
        };
        match info.value_type {
            Some(RegistryValueType::Dword) if data.len() == size_of::<u32>() => {
                Ok(RegistryValue::Dword(u32::from_le_bytes([
                    data[0], data[1], data[2], data[3],
                ])))
            }
            Some(RegistryValueType::Qword) if data.len() == size_of::<u64>() => {
                let mut bytes = [0_u8; size_of::<u64>()];
                bytes.copy_from_slice(&data);
                Ok(RegistryValue::Qword(u64::from_le_bytes(bytes)))
            }
            Some(RegistryValueType::String) => Ok(RegistryValue::String(string_from_utf16_lossy(
                units().take_while(|&u| u != 0),
            )?)),
            Some(RegistryValueType::ExpandString) => Ok(RegistryValue::ExpandString(
                string_from_utf16_lossy(units().take_while(|&u| u != 0))?,
            )),
            Some(RegistryValueType::MultiString) => {
                let all: Vec<u16> = crate::fallible::try_collect(units())?;
                let mut list = Vec::new();
                for piece in all.split(|&u| u == 0) {
                    if piece.is_empty() {
                        break;
                    }
                    list.try_push(string_from_utf16_lossy(piece.iter().copied())?)?;
                }
                Ok(RegistryValue::MultiString(list))
            }
            Some(RegistryValueType::Binary) => Ok(RegistryValue::Binary(data)),
            _ => Err(NtStatus::OBJECT_TYPE_MISMATCH),
        }
    }

    /// `WdfRegistryQueryValue` with the caller's buffer: `STATUS_BUFFER_OVERFLOW` (the length and
    /// type are still reported) means it did not fit.
    fn query_into(&self, name: &str, buffer: &mut [u8]) -> NtResult<RegistryValueInfo> {
        let name = UnicodeName::new(name)?;
        let length = ULONG::try_from(buffer.len()).unwrap_or(ULONG::MAX);
        let data = if buffer.is_empty() {
            null_mut()
        } else {
            buffer.as_mut_ptr().cast::<c_void>()
        };
        let mut queried: ULONG = 0;
        let mut kind: ULONG = 0;
        // SAFETY: open key (invariant); a valid name; `data` holds `length` writable bytes (or is
        // null with length 0); out pointers to our locals.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRegistryQueryValue,
                self.key,
                name.as_ptr(),
                length,
                data,
                &raw mut queried,
                &raw mut kind
            )
        };
        if status != STATUS_BUFFER_OVERFLOW {
            nt_result(status)?;
        }
        Ok(RegistryValueInfo {
            value_type: value_type_of(kind),
            length: queried as usize,
        })
    }

    /// `WdfRegistryAssignValue` with the value's type and bytes.
    fn set(&self, name: &str, value: RegistryValue) -> NtResult<()> {
        let value_type = value.value_type();
        let data = match value {
            RegistryValue::Dword(v) => try_to_vec(&v.to_le_bytes())?,
            RegistryValue::Qword(v) => try_to_vec(&v.to_le_bytes())?,
            RegistryValue::String(s) | RegistryValue::ExpandString(s) => reg_sz_bytes(&s)?,
            RegistryValue::MultiString(list) => reg_multi_sz_bytes(&list)?,
            RegistryValue::Binary(b) => b,
        };
        self.set_raw(name, value_type, &data)
    }

    /// `WdfRegistryAssignValue`.
    fn set_raw(&self, name: &str, value_type: RegistryValueType, data: &[u8]) -> NtResult<()> {
        let name = UnicodeName::new(name)?;
        let length = ULONG::try_from(data.len()).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        // SAFETY: open key (invariant); valid name; `data` holds `length` bytes, only read.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRegistryAssignValue,
                self.key,
                name.as_ptr(),
                reg_type(value_type),
                length,
                data.as_ptr().cast_mut().cast::<c_void>()
            )
        };
        nt_result(status)
    }

    fn delete(&self, name: &str) -> NtResult<()> {
        let name = UnicodeName::new(name)?;
        // SAFETY: open key (invariant); valid name.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(WdfRegistryRemoveValue, self.key, name.as_ptr())
        };
        nt_result(status)
    }

    /// `WdfRegistryRemoveKey`: on success the framework has closed the key (no
    /// `WdfRegistryClose` may follow); on failure it stays open and is closed by the drop.
    fn delete_key(self) -> NtResult<()> {
        // SAFETY: open key (invariant).
        let status = unsafe { call_unsafe_wdf_function_binding!(WdfRegistryRemoveKey, self.key) };
        nt_result(status)?;
        core::mem::forget(self);
        Ok(())
    }

    /// `ZwEnumerateKey(WdfRegistryWdmGetHandle(key), index, KeyBasicInformation, …)`.
    fn subkey_name(&self, index: u32, name: &mut [u16]) -> NtResult<Option<usize>> {
        self.enumerate_name(
            name,
            core::mem::offset_of!(KEY_BASIC_INFORMATION, NameLength),
            core::mem::offset_of!(KEY_BASIC_INFORMATION, Name),
            |handle, buffer, length, result| {
                // SAFETY: the key's WDM handle; `buffer` holds `length` writable bytes, 8-aligned;
                // `result` is ours.
                unsafe {
                    wdk_sys::ntddk::ZwEnumerateKey(
                        handle,
                        index,
                        wdk_sys::_KEY_INFORMATION_CLASS::KeyBasicInformation,
                        buffer,
                        length,
                        result,
                    )
                }
            },
        )
    }

    /// `ZwEnumerateValueKey(WdfRegistryWdmGetHandle(key), index, KeyValueBasicInformation, …)`.
    fn value_name(&self, index: u32, name: &mut [u16]) -> NtResult<Option<usize>> {
        self.enumerate_name(
            name,
            core::mem::offset_of!(KEY_VALUE_BASIC_INFORMATION, NameLength),
            core::mem::offset_of!(KEY_VALUE_BASIC_INFORMATION, Name),
            |handle, buffer, length, result| {
                // SAFETY: as in `subkey_name`.
                unsafe {
                    wdk_sys::ntddk::ZwEnumerateValueKey(
                        handle,
                        index,
                        wdk_sys::_KEY_VALUE_INFORMATION_CLASS::KeyValueBasicInformation,
                        buffer,
                        length,
                        result,
                    )
                }
            },
        )
    }
}

/// The `REG_SZ` bytes of `text`: UTF-16LE with the terminating NUL.
fn reg_sz_bytes(text: &str) -> NtResult<Vec<u8>> {
    let units = text.encode_utf16().count() + 1;
    let mut bytes = try_vec_with_capacity(units * size_of::<u16>())?;
    for unit in text.encode_utf16().chain([0]) {
        bytes.try_extend_from_slice(&unit.to_le_bytes())?;
    }
    Ok(bytes)
}

/// The `REG_MULTI_SZ` bytes of `list`: each string UTF-16LE with its NUL, then one more NUL.
fn reg_multi_sz_bytes(list: &[alloc::string::String]) -> NtResult<Vec<u8>> {
    let units: usize = list
        .iter()
        .map(|s| s.encode_utf16().count() + 1)
        .sum::<usize>()
        + 1;
    let mut bytes = try_vec_with_capacity(units * size_of::<u16>())?;
    for text in list {
        for unit in text.encode_utf16().chain([0]) {
            bytes.try_extend_from_slice(&unit.to_le_bytes())?;
        }
    }
    bytes.try_extend_from_slice(&0_u16.to_le_bytes())?;
    Ok(bytes)
}

impl Drop for RegistryKey {
    fn drop(&mut self) {
        // SAFETY: open key (invariant), closed once.
        unsafe { call_unsafe_wdf_function_binding!(WdfRegistryClose, self.key) };
    }
}
