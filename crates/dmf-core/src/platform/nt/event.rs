//! Kernel events on `KEVENT`: [`NtEvent`].
//!
//! # Why the `KEVENT` lives in its own pool block
//! A `KEVENT` begins with a `DISPATCHER_HEADER` whose `WaitListHead` is a doubly linked
//! `LIST_ENTRY`: initialised empty, it points at *itself*, and every thread waiting on the event
//! links its wait block into it. Moving an initialised `KEVENT` (as Rust moves any value on return
//! or assignment) would leave those pointers aimed at the old address — list corruption that the
//! kernel detects only later, as a bug check. So the event is initialised in place, in storage
//! that never moves: a tagged non-paged pool block owned by the [`NtEvent`] (`Box` would also
//! pin it, but a pool block is fallible instead of aborting, is non-paged whatever the global
//! allocator is, and is tagged). Non-paged, because `KeSetEvent` touches the event at
//! `DISPATCH_LEVEL`. The handle itself can move freely.

use core::ffi::c_void;
use core::time::Duration;

use super::ffi;
use super::pool::{NtPool, NtPoolBlock};
use crate::platform::contract::{EventKind, PoolTag, Timeout, WaitStatus};
use crate::status::NtResult;

/// The pool tag of event storage (`'EfmD'` in C notation).
pub const EVENT_POOL_TAG: PoolTag = PoolTag(*b"DmfE");

/// A `KEVENT` in its own non-paged pool block.
///
/// Maps to `KeInitializeEvent` ([`new`](Self::new)), `KeSetEvent` ([`set`](Self::set)),
/// `KeClearEvent` ([`clear`](Self::clear)), `KeReadStateEvent` ([`is_signaled`](Self::is_signaled))
/// and `KeWaitForSingleObject` ([`wait`](Self::wait)); the storage is freed with
/// `ExFreePoolWithTag` on drop (no waiter can exist then: waiting borrows the event).
pub struct NtEvent {
    // INVARIANT: a pool block of at least 24 bytes, 16-aligned, holding a KEVENT initialised by
    // `KeInitializeEvent`; it never moves and is only accessed through ntoskrnl's event routines.
    storage: NtPoolBlock,
}

// SAFETY: a KEVENT is a dispatcher object: ntoskrnl serialises every operation on it with the
// dispatcher lock, from any thread and processor. It has no thread affinity.
unsafe impl Send for NtEvent {}
// SAFETY: as for `Send`; all `&self` methods are single ntoskrnl calls built for concurrent use.
unsafe impl Sync for NtEvent {}

impl NtEvent {
    /// Allocates and initialises an event of `kind`, signalled if `signaled`. Maps to
    /// `ExAllocatePool2` + `KeInitializeEvent` (`NotificationEvent` / `SynchronizationEvent`).
    /// `STATUS_INSUFFICIENT_RESOURCES` if the pool is exhausted. `<= DISPATCH_LEVEL`.
    pub fn new(kind: EventKind, signaled: bool) -> NtResult<Self> {
        let storage = NtPool::allocate(EVENT_POOL_TAG, core::mem::size_of::<ffi::KEvent>())?;
        let event_type = match kind {
            EventKind::Notification => ffi::NOTIFICATION_EVENT,
            EventKind::Synchronization => ffi::SYNCHRONIZATION_EVENT,
        };
        let event = Self { storage };
        // SAFETY: the block is ours, large enough and 16-aligned (pool alignment) for a KEVENT,
        // and will not move; KeInitializeEvent initialises it in place before any other use.
        unsafe { ffi::KeInitializeEvent(event.raw(), event_type, u8::from(signaled)) };
        Ok(event)
    }

    /// The `PRKEVENT`, for ntoskrnl routines that take a dispatcher object.
    pub fn as_raw(&self) -> *mut c_void {
        self.storage.as_ptr().cast::<c_void>()
    }

    #[allow(
        clippy::cast_ptr_alignment,
        reason = "pool blocks are 16-byte aligned (MEMORY_ALLOCATION_ALIGNMENT), KEVENT needs 8"
    )]
    fn raw(&self) -> *mut ffi::KEvent {
        self.storage.as_ptr().cast::<ffi::KEvent>()
    }

    /// Signals the event; returns whether it was signalled before. Maps to
    /// `KeSetEvent(event, IO_NO_INCREMENT, FALSE)`. `<= DISPATCH_LEVEL`.
    ///
    /// As the contract requires, ntoskrnl does not touch the event after a waiter it releases can
    /// have returned (both run under the dispatcher lock).
    pub fn set(&self) -> bool {
        // SAFETY: by the invariant `raw()` is a live, initialised, unmoving KEVENT.
        unsafe { ffi::KeSetEvent(self.raw(), ffi::IO_NO_INCREMENT, 0) != 0 }
    }

    /// Resets the event to not signalled. Maps to `KeClearEvent`. `<= DISPATCH_LEVEL`.
    pub fn clear(&self) {
        // SAFETY: by the invariant `raw()` is a live, initialised, unmoving KEVENT.
        unsafe { ffi::KeClearEvent(self.raw()) }
    }

    /// Whether the event is signalled now. Maps to `KeReadStateEvent`. `<= DISPATCH_LEVEL`.
    pub fn is_signaled(&self) -> bool {
        // SAFETY: by the invariant `raw()` is a live, initialised, unmoving KEVENT.
        unsafe { ffi::KeReadStateEvent(self.raw()) != 0 }
    }

    /// Waits until the event is signalled or `timeout` expires. Maps to
    /// `KeWaitForSingleObject(event, Executive, KernelMode, FALSE, timeout)`, with `None` as a
    /// null timeout (forever) and `Some(d)` as a relative (negative) interval in 100-ns units.
    ///
    /// `<= APC_LEVEL`; `<= DISPATCH_LEVEL` when the timeout is zero (a state test).
    pub fn wait(&self, timeout: Timeout) -> WaitStatus {
        debug_assert!(
            timeout == Some(Duration::ZERO) || super::current_irql() <= super::KIrql::APC_LEVEL,
            "KeWaitForSingleObject with a non-zero timeout above APC_LEVEL"
        );
        let mut interval = timeout.map(relative_interval);
        let interval_ptr = interval
            .as_mut()
            .map_or(core::ptr::null_mut(), core::ptr::from_mut);
        // SAFETY: `raw()` is a live KEVENT (invariant) that the `&self` borrow keeps alive during
        // the wait; `interval_ptr` is null or points to our local LARGE_INTEGER for the call.
        let status = unsafe {
            ffi::KeWaitForSingleObject(
                self.as_raw(),
                ffi::EXECUTIVE,
                ffi::KERNEL_MODE,
                0,
                interval_ptr,
            )
        };
        // A non-alertable kernel-mode wait returns STATUS_SUCCESS or STATUS_TIMEOUT only.
        if status == ffi::STATUS_TIMEOUT {
            WaitStatus::TimedOut
        } else {
            WaitStatus::Signaled
        }
    }
}

/// A relative `LARGE_INTEGER` timeout: minus the duration in 100-ns units, rounded up so that a
/// non-zero duration never becomes a zero-timeout state test (saturating). The one conversion of
/// the NT layer and the kmdf backend (`KeWaitForSingleObject`, `WdfTimerStart`, WDF send and
/// wait timeouts).
pub(crate) fn relative_interval(duration: Duration) -> i64 {
    let ticks = duration
        .as_nanos()
        .div_ceil(u128::from(super::clock::NANOSECONDS_PER_TICK));
    -i64::try_from(ticks).unwrap_or(i64::MAX)
}

impl core::fmt::Debug for NtEvent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NtEvent")
            .field("signaled", &self.is_signaled())
            .finish()
    }
}
