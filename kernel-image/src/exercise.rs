//! What `DriverEntry` runs: every wrapper of dmf-core's NT layer, each result checked.
//!
//! A failed check does not panic (that would bug-check the machine); it returns the step's name
//! so `DriverEntry` can print it and fail the load with `STATUS_UNSUCCESSFUL`.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::time::Duration;

use dmf_core::platform::contract::{EventKind, PoolTag, TraceLevel, WaitStatus};
use dmf_core::platform::nt::{
    current_irql, interrupt_time, KIrql, NtEvent, NtPool, NtRundown, NtSpinLock, NtTrace,
};

/// The tag of the image's direct pool allocations (`'KfmD'` in C notation).
pub const DIRECT_POOL_TAG: PoolTag = PoolTag(*b"DmfK");

/// What `DriverEntry` hands to `DriverUnload`.
pub struct DriverState {
    /// Guards the state; `DriverUnload` runs it down before freeing.
    pub rundown: NtRundown,
    /// Signalled by `DriverUnload` once the rundown is complete.
    pub unloading: NtEvent,
    /// A pool block kept for the driver's lifetime (freed with its tag at unload).
    pub block: dmf_core::platform::nt::NtPoolBlock,
}

/// The name of the check that failed.
pub type Failure = &'static str;

fn check(condition: bool, step: Failure) -> Result<(), Failure> {
    if condition {
        Ok(())
    } else {
        Err(step)
    }
}

fn say(message: core::fmt::Arguments<'_>) {
    NtTrace::trace(TraceLevel::Error, "dmf-kernel-image", message);
}

/// A spin lock in the image's data section: non-paged, as a spin lock must be.
static SPIN_LOCK: NtSpinLock = NtSpinLock::new();

/// Runs every step; on success returns the state `DriverUnload` tears down.
pub fn run() -> Result<Box<DriverState>, Failure> {
    irql_and_clock()?;
    rundown()?;
    events()?;
    spin_lock()?;
    pool()?;
    global_allocator()?;
    driver_state()
}

fn irql_and_clock() -> Result<(), Failure> {
    let irql = current_irql();
    say(format_args!("KeGetCurrentIrql (CR8) = {}", irql.0));
    check(
        irql == KIrql::PASSIVE_LEVEL,
        "DriverEntry runs at PASSIVE_LEVEL",
    )?;
    let t0 = interrupt_time();
    let t1 = interrupt_time();
    say(format_args!("KeQueryInterruptTime = {t0} (100 ns)"));
    check(t1 >= t0, "interrupt time never goes backwards")
}

fn rundown() -> Result<(), Failure> {
    let mut rundown = NtRundown::new();
    check(
        rundown.acquire(),
        "ExAcquireRundownProtection on a fresh rundown",
    )?;
    // SAFETY: releases the reference the successful acquire above took.
    unsafe { rundown.release() };
    {
        let first = rundown.enter();
        let second = rundown.enter();
        check(first.is_some() && second.is_some(), "two guards at once")?;
    }
    rundown.wait();
    check(
        !rundown.acquire(),
        "acquire fails after ExWaitForRundownProtectionRelease",
    )?;
    check(rundown.enter().is_none(), "enter fails after the wait")?;
    rundown.wait(); // already run down: returns at once, no error
    rundown.reinitialize();
    check(
        rundown.acquire(),
        "acquire succeeds after ExReInitializeRundownProtection",
    )?;
    // SAFETY: releases the reference the successful acquire above took.
    unsafe { rundown.release() };
    rundown.mark_completed();
    check(!rundown.acquire(), "acquire fails after ExRundownCompleted")?;
    say(format_args!(
        "rundown: acquire/release/wait/reinitialize/completed ok"
    ));
    Ok(())
}

fn events() -> Result<(), Failure> {
    let zero = Some(Duration::ZERO);
    let notification =
        NtEvent::new(EventKind::Notification, false).map_err(|_| "KeInitializeEvent storage")?;
    check(!notification.is_signaled(), "a new event is not signalled")?;
    check(
        notification.wait(zero) == WaitStatus::TimedOut,
        "zero-timeout wait on a clear event times out",
    )?;
    check(
        !notification.set(),
        "KeSetEvent reports the event was clear",
    )?;
    check(
        notification.is_signaled(),
        "KeReadStateEvent after KeSetEvent",
    )?;
    check(
        notification.wait(zero) == WaitStatus::Signaled,
        "zero-timeout wait on a set event",
    )?;
    check(
        notification.is_signaled(),
        "a notification event stays signalled",
    )?;
    notification.clear();
    check(!notification.is_signaled(), "KeClearEvent")?;

    let synchronization =
        NtEvent::new(EventKind::Synchronization, true).map_err(|_| "KeInitializeEvent storage")?;
    check(
        synchronization.wait(zero) == WaitStatus::Signaled,
        "zero-timeout wait on a set synchronization event",
    )?;
    check(
        !synchronization.is_signaled(),
        "a satisfied wait resets a synchronization event",
    )?;
    say(format_args!("events: set/clear/read/wait(0) ok"));
    Ok(())
}

fn spin_lock() -> Result<(), Failure> {
    let before = current_irql();
    let old = SPIN_LOCK.acquire();
    let held = current_irql();
    // SAFETY: this thread holds SPIN_LOCK through the acquire above, and `old` is its result.
    unsafe { SPIN_LOCK.release(old) };
    check(
        old == before,
        "KeAcquireSpinLockRaiseToDpc returns the previous IRQL",
    )?;
    check(
        held == KIrql::DISPATCH_LEVEL,
        "holding a spin lock runs at DISPATCH_LEVEL",
    )?;
    check(
        current_irql() == before,
        "KeReleaseSpinLock restores the IRQL",
    )?;
    {
        let guard = SPIN_LOCK.lock();
        check(
            current_irql() == KIrql::DISPATCH_LEVEL && guard.old_irql() == before,
            "spin-lock guard",
        )?;
    }
    check(
        current_irql() == before,
        "dropping the guard restores the IRQL",
    )?;
    say(format_args!(
        "spin lock: raise to DISPATCH_LEVEL and restore ok"
    ));
    Ok(())
}

fn pool() -> Result<(), Failure> {
    let mut block =
        NtPool::allocate(DIRECT_POOL_TAG, 100).map_err(|_| "ExAllocatePool2 (direct)")?;
    check(
        block.len() == 100 && block.tag() == DIRECT_POOL_TAG,
        "pool block size and tag",
    )?;
    check(
        block.as_ref().iter().all(|&b| b == 0),
        "ExAllocatePool2 zeroes",
    )?;
    check(
        block.as_ptr().addr() % 16 == 0,
        "pool blocks are 16-byte aligned",
    )?;
    for (i, byte) in block.as_mut().iter_mut().enumerate() {
        *byte = i.to_le_bytes()[0];
    }
    check(block.as_ref()[99] == 99, "pool block is writable")?;
    drop(block); // ExFreePoolWithTag(p, 'KfmD')
    say(format_args!(
        "pool: ExAllocatePool2/ExFreePoolWithTag with a tag ok"
    ));
    Ok(())
}

#[repr(C, align(64))]
struct CacheLine([u8; 64]);

fn global_allocator() -> Result<(), Failure> {
    let mut numbers = Vec::new();
    for n in 0..1000u32 {
        numbers.push(n); // grows by realloc through the pool allocator
    }
    check(
        numbers.iter().map(|&n| u64::from(n)).sum::<u64>() == 499_500,
        "Vec through the pool allocator",
    )?;
    let zeroed = alloc::vec![0u8; 5000]; // alloc_zeroed
    check(
        zeroed.iter().all(|&b| b == 0),
        "alloc_zeroed through the pool allocator",
    )?;
    let line = Box::new(CacheLine([7; 64])); // over-aligned: offset inside a larger block
    check(
        core::ptr::from_ref(&*line).addr() % 64 == 0 && line.0[63] == 7,
        "over-aligned Box",
    )?;
    say(format_args!(
        "global allocator: Vec/Box/zeroed/over-aligned ok"
    ));
    Ok(())
}

fn driver_state() -> Result<Box<DriverState>, Failure> {
    let state = Box::new(DriverState {
        rundown: NtRundown::new(),
        unloading: NtEvent::new(EventKind::Notification, false).map_err(|_| "unload event")?,
        block: NtPool::allocate(DIRECT_POOL_TAG, 32).map_err(|_| "state pool block")?,
    });
    // One reference stays open until DriverUnload releases it.
    check(state.rundown.acquire(), "driver-state rundown is open")?;
    Ok(state)
}
