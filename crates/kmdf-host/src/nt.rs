//! ntoskrnl.exe: the kernel routines driver images import, on kmdf-sim's machine.
//!
//! Every routine has the Microsoft x64 calling convention (`extern "win64"`) and the behaviour
//! its reference page documents, carried out on the machine the calling thread is bound to:
//!
//! | Routines | On kmdf-sim |
//! |---|---|
//! | `ExAllocatePool2`, `ExFreePoolWithTag` | the machine's tagged pool (leak tracking per driver, fault injection); the block is freed with the tag it was allocated with or the run stops (bug check `BAD_POOL_CALLER`) |
//! | `KeInitializeEvent`, `KeSetEvent`, `KeClearEvent`, `KeResetEvent`, `KeReadStateEvent`, `KeWaitForSingleObject` | a kmdf-sim event per `KEVENT` address; waits on the virtual clock (`WaitAtDispatch` is the verifier's) |
//! | `KeAcquireSpinLockRaiseToDpc`, `KeReleaseSpinLock` | the driver's `KSPIN_LOCK` word itself (atomically), and kmdf-sim's per-thread IRQL |
//! | `KeRaiseIrqlToDpcLevel`, `KeLowerIrql`, `KeGetCurrentIrql` | kmdf-sim's IRQL (the verifier checks each transition) |
//! | `KeGetCurrentThread`, `PsGetCurrentThread` | a per-thread `KTHREAD` stand-in, the one GS-relative reads see |
//! | `KeGetCurrentProcessorNumberEx` | every host thread is a processor of its own (numbers never shared by two live threads) |
//! | `KeQueryInterruptTimePrecise`, `KeQueryUnbiasedInterruptTime` | the virtual clock in 100-ns ticks |
//! | `ExInitializeRundownProtection` … `ExWaitForRundownProtectionRelease`, `ExReInitializeRundownProtection`, `ExRundownCompleted` | the driver's `EX_RUNDOWN_REF` word (references counted in steps of 2, bit 0 = rundown active), a kmdf-sim event for the waiter |
//! | `IoRegisterPlugPlayNotification`, `IoUnregisterPlugPlayNotificationEx` | kmdf-sim's device-interface notifications (`EventCategoryDeviceInterfaceChange` only) |
//! | `SeTokenIsAdmin` | tokens the host made ([`new_token`]) |
//! | `DbgPrintEx` | the machine's trace (a note per line, on the object `DbgPrintEx`) |
//! | `KeBugCheckEx` | stops the run with the bug check's code and parameters |
//! | `memcpy`, `memmove`, `memset`, `memcmp` | the C library's meaning |
//! | `MmGetSystemRoutineAddress` | the routines of this module by name (C DMF finds `ExAllocatePool2` this way) |
//! | `KeDelayExecutionThread` | a wait on the virtual clock |
//! | `KeWaitForMultipleObjects` | one object, or `WaitAll` one after the other; `WaitAny` on several stops the run (not modelled) |
//! | `RtlInitUnicodeString`, `RtlCompareUnicodeString`, `RtlCompareUnicodeStrings`, `RtlCompareMemory` | their reference pages (case folding is ASCII only) |
//! | `RtlGetVersion` | Windows 10.0.26100, a workstation |
//! | `RtlTimeToTimeFields`, `RtlTimeFieldsToTime`, `ExLocalTimeToSystemTime` | the Gregorian calendar from 1601; the host's time zone is UTC |
//! | `RtlAssert` | stops the run with the failed assertion |
//! | `ObOpenObjectByPointer`, `ZwClose`, `ZwSetSecurityObject` | the host has no handles: `STATUS_NOT_SUPPORTED`, `STATUS_INVALID_HANDLE` |
//! | `strlen`, `strcmp`, `strncpy_s`, `sprintf_s`, `_vsnprintf`, `_vsnwprintf` | the C library's meaning (Microsoft's: `_vsnprintf` returns -1 when the text does not fit; in the wide dialect `%s` is a wide string) |
//! | `DbgPrint`, `ExFreePool` | what drivers written directly on wdk-sys import (wdk's `println!`, wdk-alloc's allocator): a note per line on the object `DbgPrint`; `ExFreePoolWithTag` with the block's own tag |

use core::ffi::{c_char, c_void};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kmdf_sim::exec::{
    current_irql, lower_irql, raise_irql, require_max_irql, ticks_to_duration, Event, EventKind,
    Irql, WaitStatus,
};
use kmdf_sim::guid::Guid;
use kmdf_sim::interface::{
    register_notification, InterfaceChange, InterfaceEvent, NotificationEntry,
};
use kmdf_sim::pool::PoolBlock;
use kmdf_sim::trace::TraceKind;
use kmdf_sim::verifier::{report, Rule};
use kmdf_sim::Machine;

use crate::host::{guard, machine, stop, Stop, UnicodeString};

/// `STATUS_SUCCESS`.
pub const STATUS_SUCCESS: i32 = 0;
/// `STATUS_TIMEOUT`.
pub const STATUS_TIMEOUT: i32 = 0x102;
/// `STATUS_INVALID_PARAMETER`.
pub const STATUS_INVALID_PARAMETER: i32 = 0xC000_000D_u32 as i32;
/// `STATUS_INVALID_DEVICE_STATE`.
pub const STATUS_INVALID_DEVICE_STATE: i32 = 0xC000_0184_u32 as i32;
/// `STATUS_INSUFFICIENT_RESOURCES`.
pub const STATUS_INSUFFICIENT_RESOURCES: i32 = 0xC000_009A_u32 as i32;
/// `POOL_FLAG_RAISE_ON_FAILURE`.
const POOL_FLAG_RAISE_ON_FAILURE: u64 = 0x20;
/// `POOL_FLAG_PAGED`.
const POOL_FLAG_PAGED: u64 = 0x100;
/// x64 pool blocks are 16-byte aligned (`MEMORY_ALLOCATION_ALIGNMENT`).
const POOL_ALIGNMENT: usize = 16;
/// `EventCategoryDeviceInterfaceChange`.
const EVENT_CATEGORY_DEVICE_INTERFACE_CHANGE: i32 = 2;
/// `PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES`.
const INCLUDE_EXISTING_INTERFACES: u32 = 1;
/// `GUID_DEVICE_INTERFACE_ARRIVAL`.
const GUID_DEVICE_INTERFACE_ARRIVAL: Guid = Guid::new(
    0xCB3A_4004,
    0x46F0,
    0x11D0,
    [0xB0, 0x8F, 0x00, 0x60, 0x97, 0x13, 0x05, 0x3F],
);
/// `GUID_DEVICE_INTERFACE_REMOVAL`.
const GUID_DEVICE_INTERFACE_REMOVAL: Guid = Guid::new(
    0xCB3A_4005,
    0x46F0,
    0x11D0,
    [0xB0, 0x8F, 0x00, 0x60, 0x97, 0x13, 0x05, 0x3F],
);

/// A pool block the driver holds.
struct PoolEntry {
    block: PoolBlock,
    tag: u32,
    /// Bytes the driver asked for.
    size: usize,
}

/// The host's NT state of one machine (a kmdf-sim machine extension).
#[derive(Default)]
struct NtState {
    /// Driver address → its pool block.
    pool: Mutex<HashMap<usize, PoolEntry>>,
    /// `KEVENT` address → its kmdf-sim event.
    events: Mutex<HashMap<usize, Event>>,
    /// `EX_RUNDOWN_REF` address → the event its waiter blocks on.
    rundown_waits: Mutex<HashMap<usize, Event>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn state(machine: &Machine) -> std::sync::Arc<NtState> {
    machine.extension(NtState::default)
}

fn tag_text(tag: u32) -> String {
    tag.to_le_bytes()
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect()
}

fn raw_irql(irql: Irql) -> u8 {
    irql as u8
}

fn irql_from_raw(raw: u8) -> Irql {
    match raw {
        0 => Irql::Passive,
        1 => Irql::Apc,
        _ => Irql::Dispatch,
    }
}

fn bug_check(text: &str) -> ! {
    stop(Stop {
        message: format!("kmdf-host: {text}"),
        wdf_function: None,
    })
}

// ---- pool ----------------------------------------------------------------------------------

extern "win64" fn ex_allocate_pool2(flags: u64, size: usize, tag: u32) -> *mut c_void {
    guard("ExAllocatePool2", || {
        let machine = machine("ExAllocatePool2");
        let max = if flags & POOL_FLAG_PAGED != 0 {
            Irql::Apc
        } else {
            Irql::Dispatch
        };
        require_max_irql(max, "ExAllocatePool2");
        let tag_bytes = tag.to_le_bytes();
        let mut result = machine.pool().allocate(tag_bytes, size.max(1));
        if let Ok(block) = &mut result {
            if !(block.as_mut_ptr() as usize).is_multiple_of(POOL_ALIGNMENT) {
                // Over-allocate and align (never seen with the system allocator, which aligns
                // blocks of this size to 16 already).
                result = machine
                    .pool()
                    .allocate(tag_bytes, size.max(1) + POOL_ALIGNMENT);
            }
        }
        let Ok(mut block) = result else {
            if flags & POOL_FLAG_RAISE_ON_FAILURE != 0 {
                bug_check(&format!(
                    "ExAllocatePool2(POOL_FLAG_RAISE_ON_FAILURE) of {size} bytes tagged '{}' \
                     failed: the exception it raises is not modelled",
                    tag_text(tag)
                ));
            }
            return core::ptr::null_mut();
        };
        let start = block.as_mut_ptr() as usize;
        let address = start.next_multiple_of(POOL_ALIGNMENT);
        lock(&state(&machine).pool).insert(address, PoolEntry { block, tag, size });
        address as *mut c_void
    })
}

/// Removes the events and rundown waits that lived in `[start, start + len)`.
fn forget_objects_in(state: &NtState, start: usize, len: usize) {
    let inside = |a: &usize| (start..start + len).contains(a);
    lock(&state.events).retain(|a, _| !inside(a));
    lock(&state.rundown_waits).retain(|a, _| !inside(a));
}

extern "win64" fn ex_free_pool_with_tag(p: *mut c_void, tag: u32) {
    guard("ExFreePoolWithTag", || {
        let machine = machine("ExFreePoolWithTag");
        require_max_irql(Irql::Dispatch, "ExFreePoolWithTag");
        let state = state(&machine);
        let entry = lock(&state.pool).remove(&(p as usize));
        let Some(entry) = entry else {
            bug_check(&format!(
                "bug check 0xC2 BAD_POOL_CALLER: ExFreePoolWithTag({p:p}, '{}') frees memory that \
                 is not a pool block the driver holds (freed twice, or never allocated)",
                tag_text(tag)
            ));
        };
        if entry.tag != tag {
            let allocated = tag_text(entry.tag);
            lock(&state.pool).insert(p as usize, entry);
            bug_check(&format!(
                "bug check 0xC2 BAD_POOL_CALLER: ExFreePoolWithTag({p:p}, '{}') frees a block \
                 allocated with tag '{allocated}'",
                tag_text(tag)
            ));
        }
        forget_objects_in(&state, p as usize, entry.size);
        entry.block.free();
    });
}

// ---- events -------------------------------------------------------------------------------

extern "win64" fn ke_initialize_event(event: *mut c_void, kind: i32, signaled: u8) {
    guard("KeInitializeEvent", || {
        let machine = machine("KeInitializeEvent");
        let kind = if kind == 1 {
            EventKind::Synchronization
        } else {
            EventKind::Notification
        };
        let name = format!("KEVENT {event:p}");
        let e = Event::named(&machine, &name, kind, signaled != 0);
        lock(&state(&machine).events).insert(event as usize, e);
    });
}

fn event_at(routine: &str, event: *mut c_void) -> Event {
    let machine = machine(routine);
    let found = lock(&state(&machine).events)
        .get(&(event as usize))
        .cloned();
    found.unwrap_or_else(|| {
        bug_check(&format!(
            "{routine}({event:p}): not a KEVENT initialised with KeInitializeEvent (the host \
             supports waits on events only)"
        ))
    })
}

extern "win64" fn ke_set_event(event: *mut c_void, _increment: i32, _wait: u8) -> i32 {
    guard("KeSetEvent", || {
        require_max_irql(Irql::Dispatch, "KeSetEvent");
        i32::from(event_at("KeSetEvent", event).set())
    })
}

extern "win64" fn ke_clear_event(event: *mut c_void) {
    guard("KeClearEvent", || event_at("KeClearEvent", event).clear());
}

extern "win64" fn ke_reset_event(event: *mut c_void) -> i32 {
    guard("KeResetEvent", || {
        i32::from(event_at("KeResetEvent", event).reset())
    })
}

extern "win64" fn ke_read_state_event(event: *mut c_void) -> i32 {
    guard("KeReadStateEvent", || {
        i32::from(event_at("KeReadStateEvent", event).is_signaled())
    })
}

/// A `LARGE_INTEGER` timeout: null waits forever, 0 only tests, negative is relative (100-ns
/// units), positive is an absolute time (the host's system time counts from boot like the
/// interrupt time).
///
/// # Safety
/// `timeout` is null or points to a readable `i64`.
unsafe fn timeout_of(timeout: *const i64, now_ticks: u64) -> Option<Duration> {
    if timeout.is_null() {
        return None;
    }
    // SAFETY: the caller's contract.
    let t = unsafe { timeout.read_unaligned() };
    Some(match t {
        0 => Duration::ZERO,
        t if t < 0 => ticks_to_duration(t.unsigned_abs()),
        t => ticks_to_duration(t.cast_unsigned().saturating_sub(now_ticks)),
    })
}

extern "win64" fn ke_wait_for_single_object(
    object: *mut c_void,
    _reason: i32,
    _mode: i8,
    _alertable: u8,
    timeout: *const i64,
) -> i32 {
    guard("KeWaitForSingleObject", || {
        let event = event_at("KeWaitForSingleObject", object);
        let now = machine("KeWaitForSingleObject").now_ticks();
        // SAFETY: the routine's contract: `Timeout` is null or points to a LARGE_INTEGER.
        let timeout = unsafe { timeout_of(timeout, now) };
        match event.wait(timeout) {
            WaitStatus::Signaled => STATUS_SUCCESS,
            WaitStatus::TimedOut => STATUS_TIMEOUT,
        }
    })
}

// ---- spin locks and IRQL ------------------------------------------------------------------

static NEXT_THREAD_TOKEN: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// A non-zero value unique to this thread: its spin-lock owner word and processor number.
    static THREAD_TOKEN: Cell<usize> = const { Cell::new(0) };
}

fn thread_token() -> usize {
    THREAD_TOKEN.with(|t| {
        if t.get() == 0 {
            t.set(NEXT_THREAD_TOKEN.fetch_add(1, Ordering::Relaxed));
        }
        t.get()
    })
}

/// The `KSPIN_LOCK` at `lock` as an atomic word.
///
/// # Safety
/// `lock` points to a live, 8-byte aligned `KSPIN_LOCK` that is only accessed atomically while
/// the returned reference is used (the spin-lock routines' contract).
unsafe fn lock_word<'a>(lock: *mut usize) -> &'a AtomicUsize {
    // SAFETY: the caller's contract; `AtomicUsize` has the layout of `usize`.
    unsafe { AtomicUsize::from_ptr(lock) }
}

extern "win64" fn ke_acquire_spin_lock_raise_to_dpc(lock: *mut usize) -> u8 {
    guard("KeAcquireSpinLockRaiseToDpc", || {
        require_max_irql(Irql::Dispatch, "KeAcquireSpinLockRaiseToDpc");
        // SAFETY: the routine's contract: a KSPIN_LOCK initialised by KeInitializeSpinLock.
        let word = unsafe { lock_word(lock) };
        let me = thread_token();
        if word.load(Ordering::Relaxed) == me {
            report(
                Rule::LockRecursiveAcquire,
                "KSPIN_LOCK",
                &format!(
                    "KeAcquireSpinLockRaiseToDpc({lock:p}) by the thread that holds it (a deadlock \
                     on real hardware)"
                ),
            );
            bug_check(&format!(
                "KeAcquireSpinLockRaiseToDpc({lock:p}) by the thread that already holds it"
            ));
        }
        let old = raise_irql(Irql::Dispatch);
        let mut spins = 0_u32;
        while word
            .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) {
                std::thread::yield_now();
            } else {
                core::hint::spin_loop();
            }
        }
        raw_irql(old)
    })
}

extern "win64" fn ke_release_spin_lock(lock: *mut usize, new_irql: u8) {
    guard("KeReleaseSpinLock", || {
        // SAFETY: as in `ke_acquire_spin_lock_raise_to_dpc`.
        let word = unsafe { lock_word(lock) };
        let me = thread_token();
        match word.compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => lower_irql(irql_from_raw(new_irql)),
            Err(0) => report(
                Rule::LockNotHeld,
                "KSPIN_LOCK",
                &format!("KeReleaseSpinLock({lock:p}) of a lock that is not held; ignored"),
            ),
            Err(_) => report(
                Rule::LockReleasedByOtherThread,
                "KSPIN_LOCK",
                &format!(
                    "KeReleaseSpinLock({lock:p}) by a thread other than the one that acquired it; \
                     ignored"
                ),
            ),
        }
    });
}

extern "win64" fn ke_raise_irql_to_dpc_level() -> u8 {
    guard("KeRaiseIrqlToDpcLevel", || {
        raw_irql(raise_irql(Irql::Dispatch))
    })
}

extern "win64" fn ke_lower_irql(new_irql: u8) {
    guard("KeLowerIrql", || lower_irql(irql_from_raw(new_irql)));
}

extern "win64" fn ke_get_current_irql() -> u8 {
    raw_irql(current_irql())
}

/// `KeGetCurrentThread` / `PsGetCurrentThread`: the calling thread's `KTHREAD` stand-in, the
/// same block a GS-relative read of an image gives (see [`crate::privileged`]).
extern "win64" fn ke_get_current_thread() -> usize {
    crate::privileged::current_thread()
}

/// `PROCESSOR_NUMBER`.
#[repr(C)]
struct ProcessorNumber {
    group: u16,
    number: u8,
    reserved: u8,
}

extern "win64" fn ke_get_current_processor_number_ex(number: *mut ProcessorNumber) -> u32 {
    let index = thread_token() - 1;
    if !number.is_null() {
        // SAFETY: the routine's contract: a writable PROCESSOR_NUMBER when not null.
        unsafe {
            number.write_unaligned(ProcessorNumber {
                group: u16::try_from(index / 64).unwrap_or(u16::MAX),
                number: (index % 64) as u8,
                reserved: 0,
            });
        }
    }
    u32::try_from(index).unwrap_or(u32::MAX)
}

// ---- time ---------------------------------------------------------------------------------

/// A monotonic counter for `KeQueryInterruptTimePrecise`'s performance-counter output.
static QPC: AtomicU64 = AtomicU64::new(0);

extern "win64" fn ke_query_interrupt_time_precise(qpc: *mut u64) -> u64 {
    let now = crate::privileged::interrupt_time();
    if !qpc.is_null() {
        // SAFETY: the routine's contract: a writable ULONG64.
        unsafe { qpc.write_unaligned(QPC.fetch_add(1, Ordering::Relaxed)) };
    }
    now
}

extern "win64" fn ke_query_unbiased_interrupt_time() -> u64 {
    crate::privileged::interrupt_time()
}

// ---- rundown protection -------------------------------------------------------------------

/// `EX_RUNDOWN_REF` bit 0: a rundown is active (or completed); references count in steps of 2.
const RUNDOWN_ACTIVE: usize = 1;
const RUNDOWN_COUNT_INC: usize = 2;

/// # Safety
/// `run_ref` points to a live, aligned `EX_RUNDOWN_REF` accessed only atomically meanwhile.
unsafe fn rundown_word<'a>(run_ref: *mut usize) -> &'a AtomicUsize {
    // SAFETY: the caller's contract.
    unsafe { AtomicUsize::from_ptr(run_ref) }
}

extern "win64" fn ex_initialize_rundown_protection(run_ref: *mut usize) {
    // SAFETY: the routine's contract: a writable EX_RUNDOWN_REF.
    unsafe { rundown_word(run_ref) }.store(0, Ordering::Release);
}

extern "win64" fn ex_re_initialize_rundown_protection(run_ref: *mut usize) {
    ex_initialize_rundown_protection(run_ref);
}

extern "win64" fn ex_rundown_completed(run_ref: *mut usize) {
    // SAFETY: as above.
    unsafe { rundown_word(run_ref) }.store(RUNDOWN_ACTIVE, Ordering::Release);
}

extern "win64" fn ex_acquire_rundown_protection(run_ref: *mut usize) -> u8 {
    // SAFETY: as above.
    let word = unsafe { rundown_word(run_ref) };
    let mut current = word.load(Ordering::Relaxed);
    loop {
        if current & RUNDOWN_ACTIVE != 0 {
            return 0;
        }
        match word.compare_exchange_weak(
            current,
            current + RUNDOWN_COUNT_INC,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => return 1,
            Err(seen) => current = seen,
        }
    }
}

extern "win64" fn ex_release_rundown_protection(run_ref: *mut usize) {
    guard("ExReleaseRundownProtection", || {
        // SAFETY: as above.
        let word = unsafe { rundown_word(run_ref) };
        let mut current = word.load(Ordering::Relaxed);
        let after = loop {
            if current < RUNDOWN_COUNT_INC {
                // On Windows this corrupts the count (or the waiter's wait-block pointer).
                bug_check(&format!(
                    "ExReleaseRundownProtection({run_ref:p}) releases a reference that was never \
                     acquired (EX_RUNDOWN_REF = {current:#x})"
                ));
            }
            match word.compare_exchange_weak(
                current,
                current - RUNDOWN_COUNT_INC,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break current - RUNDOWN_COUNT_INC,
                Err(seen) => current = seen,
            }
        };
        if after == RUNDOWN_ACTIVE {
            // The last reference of a rundown in progress: wake the waiter.
            let machine = machine("ExReleaseRundownProtection");
            let waiter = lock(&state(&machine).rundown_waits)
                .get(&(run_ref as usize))
                .cloned();
            if let Some(event) = waiter {
                event.set();
            }
        }
    });
}

extern "win64" fn ex_wait_for_rundown_protection_release(run_ref: *mut usize) {
    guard("ExWaitForRundownProtectionRelease", || {
        require_max_irql(Irql::Apc, "ExWaitForRundownProtectionRelease");
        let machine = machine("ExWaitForRundownProtectionRelease");
        let event = Event::named(
            &machine,
            &format!("EX_RUNDOWN_REF {run_ref:p}"),
            EventKind::Notification,
            false,
        );
        let state = state(&machine);
        lock(&state.rundown_waits).insert(run_ref as usize, event.clone());
        // SAFETY: as above.
        let word = unsafe { rundown_word(run_ref) };
        let before = word.fetch_or(RUNDOWN_ACTIVE, Ordering::AcqRel);
        if before & !RUNDOWN_ACTIVE != 0 {
            event.wait(None);
        }
        lock(&state.rundown_waits).remove(&(run_ref as usize));
    });
}

// ---- security -----------------------------------------------------------------------------

static TOKENS: Mutex<Option<HashMap<usize, bool>>> = Mutex::new(None);

/// A security token the host hands to a driver (the token of a create's subject context) and
/// `SeTokenIsAdmin` answers for. Lives for the rest of the process.
pub fn new_token(administrator: bool) -> *mut c_void {
    let token = Box::into_raw(Box::new(0_u64)).cast::<c_void>();
    lock(&TOKENS)
        .get_or_insert_with(HashMap::new)
        .insert(token as usize, administrator);
    token
}

extern "win64" fn se_token_is_admin(token: *mut c_void) -> u8 {
    guard("SeTokenIsAdmin", || {
        let admin = lock(&TOKENS)
            .as_ref()
            .and_then(|t| t.get(&(token as usize)).copied());
        match admin {
            Some(admin) => u8::from(admin),
            None => bug_check(&format!(
                "SeTokenIsAdmin({token:p}): not a token the host handed out"
            )),
        }
    })
}

// ---- PnP notifications --------------------------------------------------------------------

/// `DEVICE_INTERFACE_CHANGE_NOTIFICATION`.
#[repr(C)]
struct InterfaceChangeNotification {
    version: u16,
    size: u16,
    event: Guid,
    interface_class_guid: Guid,
    symbolic_link_name: *mut UnicodeString,
}

const _: () = assert!(size_of::<Guid>() == 16 && size_of::<InterfaceChangeNotification>() == 48);

static ENTRIES: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

type PnpCallback = extern "win64" fn(*mut c_void, *mut c_void) -> i32;

extern "win64" fn io_register_plug_play_notification(
    category: i32,
    flags: u32,
    data: *const Guid,
    _driver_object: *mut c_void,
    callback: usize,
    context: *mut c_void,
    entry: *mut *mut c_void,
) -> i32 {
    guard("IoRegisterPlugPlayNotification", || {
        if category != EVENT_CATEGORY_DEVICE_INTERFACE_CHANGE {
            bug_check(&format!(
                "IoRegisterPlugPlayNotification(EventCategory {category}): the host implements \
                 EventCategoryDeviceInterfaceChange only"
            ));
        }
        if data.is_null() || callback == 0 || entry.is_null() {
            return STATUS_INVALID_PARAMETER;
        }
        let machine = machine("IoRegisterPlugPlayNotification");
        // SAFETY: the routine's contract: for this category, `EventCategoryData` is the
        // interface class GUID.
        let class = unsafe { data.read_unaligned() };
        let context = context as usize;
        let registered = register_notification(
            &machine,
            class,
            flags & INCLUDE_EXISTING_INTERFACES != 0,
            move |change: &InterfaceChange| deliver(callback, context, change),
        );
        match registered {
            Ok(registration) => {
                let handle = Box::into_raw(Box::new(registration)).cast::<c_void>();
                lock(&ENTRIES)
                    .get_or_insert_with(HashSet::new)
                    .insert(handle as usize);
                // SAFETY: the routine's contract: a writable PVOID.
                unsafe { entry.write_unaligned(handle) };
                STATUS_SUCCESS
            }
            Err(status) => status.0,
        }
    })
}

/// Calls a driver's `DRIVER_NOTIFICATION_CALLBACK_ROUTINE` with the notification structure.
fn deliver(callback: usize, context: usize, change: &InterfaceChange) {
    let mut link: Vec<u16> = change.symbolic_link.encode_utf16().collect();
    let bytes = u16::try_from(link.len() * 2).unwrap_or(u16::MAX);
    let mut name = UnicodeString {
        length: bytes,
        maximum_length: bytes,
        buffer: link.as_mut_ptr(),
    };
    let mut notification = InterfaceChangeNotification {
        version: 1,
        size: 48,
        event: match change.event {
            InterfaceEvent::Arrival => GUID_DEVICE_INTERFACE_ARRIVAL,
            InterfaceEvent::Removal => GUID_DEVICE_INTERFACE_REMOVAL,
        },
        interface_class_guid: change.class,
        symbolic_link_name: &raw mut name,
    };
    // SAFETY: `callback` is the driver's notification routine, registered with this signature
    // (Microsoft x64 convention); the structure and its string live across the call.
    let routine: PnpCallback = unsafe { core::mem::transmute::<usize, PnpCallback>(callback) };
    let _ = routine((&raw mut notification).cast(), context as *mut c_void);
}

extern "win64" fn io_unregister_plug_play_notification_ex(entry: *mut c_void) -> i32 {
    guard("IoUnregisterPlugPlayNotificationEx", || {
        let known = lock(&ENTRIES)
            .as_mut()
            .is_some_and(|e| e.remove(&(entry as usize)));
        if !known {
            return STATUS_INVALID_PARAMETER;
        }
        // SAFETY: `entry` came from `Box::into_raw` in `io_register_plug_play_notification` and
        // was just removed from the set of live entries, so it is reclaimed exactly once.
        let registration = unsafe { Box::from_raw(entry.cast::<NotificationEntry>()) };
        registration.unregister();
        STATUS_SUCCESS
    })
}

// ---- debug output and bug checks ----------------------------------------------------------

/// `DbgPrintEx(ComponentId, Level, Format, ...)`. Variadic arguments in the Microsoft x64
/// convention travel like fixed ones (the first in r9, the rest on the stack), so the routine is
/// declared with eight argument words and the format decides how many it reads.
#[allow(
    clippy::too_many_arguments,
    reason = "the variadic argument words of DbgPrintEx"
)]
extern "win64" fn dbg_print_ex(
    component: u32,
    level: u32,
    format: *const c_char,
    a0: usize,
    a1: usize,
    a2: usize,
    a3: usize,
    a4: usize,
    a5: usize,
    a6: usize,
    a7: usize,
) -> u32 {
    guard("DbgPrintEx", || {
        // SAFETY: the routine's contract: null or a NUL-terminated format whose conversions the
        // argument words match.
        unsafe {
            print_lines(format, [a0, a1, a2, a3, a4, a5, a6, a7], |line| {
                trace_note(component, level, line)
            })
        }
    })
}

/// Formats a `DbgPrint`-family call and records each non-empty line as the note `note` makes of
/// it (object, text); 0 for a null format, else `STATUS_SUCCESS`.
///
/// # Safety
/// `format` is null or a NUL-terminated format whose conversions `args` match.
unsafe fn print_lines(
    format: *const c_char,
    args: [usize; 8],
    note: impl Fn(&str) -> (String, String),
) -> u32 {
    if format.is_null() {
        return 0;
    }
    // SAFETY: the caller's contract: a NUL-terminated format.
    let format = unsafe { core::ffi::CStr::from_ptr(format) }.to_bytes();
    let mut next = args.iter().copied();
    // SAFETY: the caller's contract: the arguments match the format's conversions.
    let text = unsafe { crate::printf::format(format, &mut || next.next().unwrap_or(0)) };
    if let Some(machine) = machine_if_bound() {
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (object, text) = note(line);
            machine.trace().record(TraceKind::Note, &object, &text);
        }
    }
    STATUS_SUCCESS.cast_unsigned()
}

/// `DPFLTR_IHVDRIVER_ID`, the component of third-party drivers' `DbgPrintEx`.
const DPFLTR_IHVDRIVER_ID: u32 = 77;

/// The trace note of one `DbgPrintEx` line: DMF for Rust's driver trace (`Source: message` at
/// `DPFLTR_IHVDRIVER_ID`, level 0–3 for error, warning, information, verbose) becomes a note of
/// `Source` worded as the sim backend records it (`[INFO] message`), so a scenario reads the
/// same trace from the image as from the sim build; any other line is a `DbgPrintEx` note
/// `[component:level] line`.
fn trace_note(component: u32, level: u32, line: &str) -> (String, String) {
    let level_name = match level {
        0 => Some("ERROR"),
        1 => Some("WARNING"),
        2 => Some("INFO"),
        3 => Some("VERBOSE"),
        _ => None,
    };
    if let (DPFLTR_IHVDRIVER_ID, Some(level_name)) = (component, level_name) {
        if let Some((source, message)) = line.split_once(": ") {
            if !source.is_empty() && !source.contains(char::is_whitespace) {
                return (source.to_owned(), format!("[{level_name}] {message}"));
            }
        }
    }
    (
        "DbgPrintEx".to_owned(),
        format!("[{component}:{level}] {line}"),
    )
}

fn machine_if_bound() -> Option<Machine> {
    Machine::current()
}

extern "win64" fn ke_bug_check_ex(code: u32, p1: usize, p2: usize, p3: usize, p4: usize) -> ! {
    bug_check(&format!(
        "the driver bug-checked: KeBugCheckEx({code:#x}, {p1:#x}, {p2:#x}, {p3:#x}, {p4:#x})"
    ))
}

// ---- C library ----------------------------------------------------------------------------

extern "win64" fn nt_memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: memcpy's contract: `n` bytes readable at `src`, writable at `dst`, not overlapping.
    unsafe { core::ptr::copy_nonoverlapping(src, dst, n) };
    dst
}

extern "win64" fn nt_memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: memmove's contract: `n` bytes readable at `src`, writable at `dst`.
    unsafe { core::ptr::copy(src, dst, n) };
    dst
}

extern "win64" fn nt_memset(dst: *mut u8, value: i32, n: usize) -> *mut u8 {
    // SAFETY: memset's contract: `n` writable bytes at `dst`.
    unsafe { core::ptr::write_bytes(dst, value as u8, n) };
    dst
}

extern "win64" fn nt_memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    if n == 0 {
        return 0;
    }
    // SAFETY: memcmp's contract: `n` readable bytes at both.
    let (a, b) = unsafe {
        (
            core::slice::from_raw_parts(a, n),
            core::slice::from_raw_parts(b, n),
        )
    };
    a.iter()
        .zip(b)
        .find(|(x, y)| x != y)
        .map_or(0, |(x, y)| i32::from(*x) - i32::from(*y))
}

// ---- routines C DMF's images import --------------------------------------------------------

/// `STATUS_INVALID_HANDLE`.
pub const STATUS_INVALID_HANDLE: i32 = 0xC000_0008_u32 as i32;
/// `STATUS_NOT_SUPPORTED`.
pub const STATUS_NOT_SUPPORTED: i32 = 0xC000_00BB_u32 as i32;

/// `ExLocalTimeToSystemTime`: the host's time zone is UTC, so local time is system time.
extern "win64" fn ex_local_time_to_system_time(local: *const i64, system: *mut i64) {
    // SAFETY: the routine's contract: two LARGE_INTEGERs.
    unsafe { system.write_unaligned(local.read_unaligned()) };
}

/// `KeDelayExecutionThread`: sleeps on the virtual clock (an event nobody sets, waited on for
/// `Interval`, which is relative when negative).
extern "win64" fn ke_delay_execution_thread(
    _mode: i8,
    _alertable: u8,
    interval: *const i64,
) -> i32 {
    guard("KeDelayExecutionThread", || {
        let machine = machine("KeDelayExecutionThread");
        require_max_irql(Irql::Apc, "KeDelayExecutionThread");
        // SAFETY: the routine's contract: `Interval` points to a LARGE_INTEGER.
        let delay = unsafe { timeout_of(interval, machine.now_ticks()) };
        let Some(delay) = delay else {
            bug_check("KeDelayExecutionThread without an interval");
        };
        let sleep = Event::named(
            &machine,
            "KeDelayExecutionThread",
            EventKind::Notification,
            false,
        );
        let _ = sleep.wait(Some(delay));
        STATUS_SUCCESS
    })
}

/// `KeWaitForMultipleObjects`: one object is `KeWaitForSingleObject`; `WaitAll` waits for each
/// in turn. `WaitAny` on several objects is not modelled yet and stops the run.
#[allow(
    clippy::too_many_arguments,
    reason = "KeWaitForMultipleObjects has eight parameters"
)]
extern "win64" fn ke_wait_for_multiple_objects(
    count: u32,
    objects: *const *mut c_void,
    wait_type: i32,
    reason: i32,
    mode: i8,
    alertable: u8,
    timeout: *const i64,
    _wait_blocks: *mut c_void,
) -> i32 {
    guard("KeWaitForMultipleObjects", || {
        // SAFETY: the routine's contract: `Count` object pointers.
        let objects = unsafe { core::slice::from_raw_parts(objects, count as usize) };
        match (objects, wait_type) {
            ([one], _) => ke_wait_for_single_object(*one, reason, mode, alertable, timeout),
            (all, 0) => {
                for &object in all {
                    let status =
                        ke_wait_for_single_object(object, reason, mode, alertable, timeout);
                    if status != STATUS_SUCCESS {
                        return status;
                    }
                }
                STATUS_SUCCESS
            }
            (any, _) => bug_check(&format!(
                "KeWaitForMultipleObjects(WaitAny) on {} objects is not modelled yet",
                any.len()
            )),
        }
    })
}

/// `MmGetSystemRoutineAddress`: the host's own ntoskrnl.exe routine of that name, or null.
extern "win64" fn mm_get_system_routine_address(name: *const UnicodeString) -> *mut c_void {
    guard("MmGetSystemRoutineAddress", || {
        // SAFETY: the routine's contract: a UNICODE_STRING.
        let Some(name) = (unsafe { UnicodeString::read(name) }) else {
            return core::ptr::null_mut();
        };
        exports()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map_or(core::ptr::null_mut(), |(_, a)| a as *mut c_void)
    })
}

/// `ObOpenObjectByPointer`: the host has no object manager handles; the call fails with
/// `STATUS_NOT_SUPPORTED` (callers treat it as any failure to open).
#[allow(
    clippy::too_many_arguments,
    reason = "ObOpenObjectByPointer has seven parameters"
)]
extern "win64" fn ob_open_object_by_pointer(
    _object: *mut c_void,
    _attributes: u32,
    _access_state: *mut c_void,
    _desired_access: u32,
    _object_type: *mut c_void,
    _mode: i8,
    handle: *mut usize,
) -> i32 {
    if !handle.is_null() {
        // SAFETY: the routine's contract: `Handle` is writable.
        unsafe { handle.write(0) };
    }
    STATUS_NOT_SUPPORTED
}

/// `ZwClose`: no handle the host hands out exists.
extern "win64" fn zw_close(_handle: usize) -> i32 {
    STATUS_INVALID_HANDLE
}

/// `ZwSetSecurityObject`: no handle the host hands out exists.
extern "win64" fn zw_set_security_object(
    _handle: usize,
    _info: u32,
    _descriptor: *mut c_void,
) -> i32 {
    STATUS_INVALID_HANDLE
}

/// `RtlAssert`: a failed assertion in the driver stops the run with its text.
extern "win64" fn rtl_assert(
    assertion: *const c_char,
    file: *const c_char,
    line: u32,
    message: *const c_char,
) {
    // SAFETY: the routine's contract: NUL-terminated strings or null.
    let text = |p: *const c_char| unsafe { c_text(p) };
    bug_check(&format!(
        "the driver's assertion failed: {} ({}:{line}){}",
        text(assertion),
        text(file),
        if message.is_null() {
            String::new()
        } else {
            format!(": {}", text(message))
        }
    ))
}

/// The text of a NUL-terminated string, or "" for null.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string.
unsafe fn c_text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the caller's contract.
    unsafe { core::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

/// `RtlCompareMemory`: how many leading bytes are equal.
extern "win64" fn rtl_compare_memory(a: *const u8, b: *const u8, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    // SAFETY: the routine's contract: `Length` readable bytes at both.
    let (a, b) = unsafe {
        (
            core::slice::from_raw_parts(a, n),
            core::slice::from_raw_parts(b, n),
        )
    };
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The UTF-16 units of a counted string.
///
/// # Safety
/// `p` points to `chars` readable units (or `chars` is 0).
unsafe fn units<'a>(p: *const u16, chars: usize) -> &'a [u16] {
    if chars == 0 || p.is_null() {
        return &[];
    }
    // SAFETY: the caller's contract.
    unsafe { core::slice::from_raw_parts(p, chars) }
}

fn upcase(u: u16) -> u16 {
    char::from_u32(u32::from(u))
        .filter(char::is_ascii_lowercase)
        .map_or(u, |c| c.to_ascii_uppercase() as u16)
}

fn compare_units(a: &[u16], b: &[u16], case_insensitive: bool) -> i32 {
    let fold = |u: u16| if case_insensitive { upcase(u) } else { u };
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (fold(*x), fold(*y));
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    match a.len().cmp(&b.len()) {
        core::cmp::Ordering::Less => -1,
        core::cmp::Ordering::Equal => 0,
        core::cmp::Ordering::Greater => 1,
    }
}

/// `RtlCompareUnicodeStrings` (lengths in characters). Case folding is ASCII only.
extern "win64" fn rtl_compare_unicode_strings(
    a: *const u16,
    a_chars: usize,
    b: *const u16,
    b_chars: usize,
    case_insensitive: u8,
) -> i32 {
    // SAFETY: the routine's contract: counted strings.
    let (a, b) = unsafe { (units(a, a_chars), units(b, b_chars)) };
    compare_units(a, b, case_insensitive != 0)
}

/// `RtlCompareUnicodeString`. Case folding is ASCII only.
extern "win64" fn rtl_compare_unicode_string(
    a: *const UnicodeString,
    b: *const UnicodeString,
    case_insensitive: u8,
) -> i32 {
    // SAFETY: the routine's contract: two UNICODE_STRINGs.
    let (a, b) = unsafe { (&*a, &*b) };
    rtl_compare_unicode_strings(
        a.buffer,
        usize::from(a.length / 2),
        b.buffer,
        usize::from(b.length / 2),
        case_insensitive,
    )
}

/// `RtlInitUnicodeString`.
extern "win64" fn rtl_init_unicode_string(destination: *mut UnicodeString, source: *const u16) {
    let mut chars = 0usize;
    if !source.is_null() {
        // SAFETY: the routine's contract: a NUL-terminated wide string.
        while unsafe { source.add(chars).read() } != 0 {
            chars += 1;
        }
    }
    let bytes = u16::try_from(chars * 2).unwrap_or(0xFFFC);
    // SAFETY: the routine's contract: a writable UNICODE_STRING.
    unsafe {
        destination.write(UnicodeString {
            length: bytes,
            maximum_length: if source.is_null() { 0 } else { bytes + 2 },
            buffer: source.cast_mut(),
        });
    }
}

/// `RTL_OSVERSIONINFOW` (and the first fields of `RTL_OSVERSIONINFOEXW`).
#[repr(C)]
struct OsVersionInfo {
    size: u32,
    major: u32,
    minor: u32,
    build: u32,
    platform: u32,
    csd_version: [u16; 128],
}

/// `sizeof(RTL_OSVERSIONINFOEXW)`.
const OS_VERSION_INFO_EX_SIZE: u32 = 284;

/// `RtlGetVersion`: Windows 10.0.26100 (Windows 11 24H2), a workstation.
extern "win64" fn rtl_get_version(info: *mut OsVersionInfo) -> i32 {
    // SAFETY: the routine's contract: `dwOSVersionInfoSize` says which structure `info` is.
    unsafe {
        let size = (*info).size;
        if size < core::mem::size_of::<OsVersionInfo>() as u32 {
            return STATUS_INVALID_PARAMETER;
        }
        (*info).major = 10;
        (*info).minor = 0;
        (*info).build = 26100;
        (*info).platform = 2; // VER_PLATFORM_WIN32_NT
        (*info).csd_version = [0; 128];
        if size >= OS_VERSION_INFO_EX_SIZE {
            // wServicePackMajor, wServicePackMinor, wSuiteMask, wProductType, wReserved.
            let ex = info.cast::<u8>().add(core::mem::size_of::<OsVersionInfo>());
            core::ptr::write_bytes(ex, 0, 8);
            ex.add(6).write(1); // VER_NT_WORKSTATION
        }
    }
    STATUS_SUCCESS
}

/// `TIME_FIELDS`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimeFields {
    year: i16,
    month: i16,
    day: i16,
    hour: i16,
    minute: i16,
    second: i16,
    milliseconds: i16,
    weekday: i16,
}

/// 100-ns ticks per day.
const TICKS_PER_DAY: i64 = 864_000_000_000;
/// Days from 1601-01-01 (the system time's origin) to 1970-01-01.
const DAYS_1601_TO_1970: i64 = 134_774;

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `RtlTimeToTimeFields`.
extern "win64" fn rtl_time_to_time_fields(time: *const i64, fields: *mut TimeFields) {
    // SAFETY: the routine's contract: a LARGE_INTEGER.
    let ticks = unsafe { time.read_unaligned() };
    let days = ticks.div_euclid(TICKS_PER_DAY);
    let rest = ticks.rem_euclid(TICKS_PER_DAY);
    let (year, month, day) = civil_from_days(days - DAYS_1601_TO_1970);
    let ms = rest / 10_000;
    let out = TimeFields {
        year: year as i16,
        month: month as i16,
        day: day as i16,
        hour: (ms / 3_600_000) as i16,
        minute: (ms / 60_000 % 60) as i16,
        second: (ms / 1000 % 60) as i16,
        milliseconds: (ms % 1000) as i16,
        // 1601-01-01 was a Monday (weekday 1, Sunday = 0).
        weekday: ((days + 1).rem_euclid(7)) as i16,
    };
    // SAFETY: the routine's contract: a writable TIME_FIELDS.
    unsafe { fields.write_unaligned(out) };
}

/// `RtlTimeFieldsToTime`: FALSE for a field out of range (the weekday is ignored).
extern "win64" fn rtl_time_fields_to_time(fields: *const TimeFields, time: *mut i64) -> u8 {
    // SAFETY: the routine's contract: a TIME_FIELDS.
    let f = unsafe { fields.read_unaligned() };
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let (y, m, d) = (i64::from(f.year), i64::from(f.month), i64::from(f.day));
    let month_days = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let valid = y >= 1601
        && (1..=12).contains(&m)
        && d >= 1
        && d <= month_days[(m - 1) as usize]
        && (0..24).contains(&f.hour)
        && (0..60).contains(&f.minute)
        && (0..60).contains(&f.second)
        && (0..1000).contains(&f.milliseconds);
    if !valid {
        return 0;
    }
    let days = days_from_civil(y, m, d) + DAYS_1601_TO_1970;
    let ms = ((i64::from(f.hour) * 60 + i64::from(f.minute)) * 60 + i64::from(f.second)) * 1000
        + i64::from(f.milliseconds);
    // SAFETY: the routine's contract: a writable LARGE_INTEGER.
    unsafe { time.write_unaligned(days * TICKS_PER_DAY + ms * 10_000) };
    1
}

/// `strlen`.
extern "win64" fn nt_strlen(s: *const c_char) -> usize {
    // SAFETY: the routine's contract: a NUL-terminated string.
    unsafe { core::ffi::CStr::from_ptr(s) }.to_bytes().len()
}

/// `strcmp`.
extern "win64" fn nt_strcmp(a: *const c_char, b: *const c_char) -> i32 {
    // SAFETY: the routine's contract: NUL-terminated strings.
    let (a, b) = unsafe {
        (
            core::ffi::CStr::from_ptr(a).to_bytes_with_nul(),
            core::ffi::CStr::from_ptr(b).to_bytes_with_nul(),
        )
    };
    a.iter()
        .zip(b)
        .find(|(x, y)| x != y)
        .map_or(0, |(x, y)| i32::from(*x) - i32::from(*y))
}

/// `_TRUNCATE`.
const TRUNCATE: usize = usize::MAX;
/// `EINVAL`, `ERANGE`, `STRUNCATE`.
const EINVAL: i32 = 22;
const ERANGE: i32 = 34;
const STRUNCATE: i32 = 80;

/// `strncpy_s`: copies at most `count` characters of `src` and terminates; `_TRUNCATE` truncates
/// to fit (`STRUNCATE`), otherwise a copy that does not fit empties `dest` (`ERANGE`).
extern "win64" fn nt_strncpy_s(
    dest: *mut u8,
    size: usize,
    src: *const c_char,
    count: usize,
) -> i32 {
    if dest.is_null() || size == 0 {
        return EINVAL;
    }
    if src.is_null() {
        // SAFETY: `size` > 0 writable bytes at `dest`.
        unsafe { dest.write(0) };
        return EINVAL;
    }
    // SAFETY: the routine's contract: a NUL-terminated source.
    let s = unsafe { core::ffi::CStr::from_ptr(src) }.to_bytes();
    let wanted = s.len().min(count);
    let (n, status) = if wanted < size {
        (wanted, 0)
    } else if count == TRUNCATE {
        (size - 1, STRUNCATE)
    } else {
        // SAFETY: `size` > 0 writable bytes at `dest`.
        unsafe { dest.write(0) };
        return ERANGE;
    };
    // SAFETY: `n` + 1 <= `size` writable bytes at `dest`, `n` readable at `src`.
    unsafe {
        core::ptr::copy_nonoverlapping(s.as_ptr(), dest, n);
        dest.add(n).write(0);
    }
    status
}

/// Writes `units` into a buffer of `count` elements with `_vsnprintf`'s rules: the length when
/// it fits (terminated if there is room), -1 when it does not (no terminator).
///
/// # Safety
/// `buffer` has `count` writable elements of `T`.
unsafe fn write_counted<T: Copy + Default>(buffer: *mut T, count: usize, units: &[T]) -> i32 {
    let n = units.len().min(count);
    // SAFETY: the caller's contract.
    unsafe { core::ptr::copy_nonoverlapping(units.as_ptr(), buffer, n) };
    match units.len().cmp(&count) {
        core::cmp::Ordering::Less => {
            // SAFETY: `units.len()` < `count`.
            unsafe { buffer.add(units.len()).write(T::default()) };
            i32::try_from(units.len()).unwrap_or(i32::MAX)
        }
        core::cmp::Ordering::Equal => i32::try_from(units.len()).unwrap_or(i32::MAX),
        core::cmp::Ordering::Greater => -1,
    }
}

/// Argument words from an x64 `va_list` (a pointer to consecutive 8-byte slots).
fn va_words(va: *const usize) -> impl FnMut() -> usize {
    let mut i = 0;
    move || {
        // SAFETY: the printf contract: the format reads as many words as were passed.
        let w = unsafe { va.add(i).read_unaligned() };
        i += 1;
        w
    }
}

/// `_vsnprintf`.
extern "win64" fn nt_vsnprintf(
    buffer: *mut u8,
    count: usize,
    format: *const c_char,
    va: *const usize,
) -> i32 {
    // SAFETY: the routine's contract: a NUL-terminated format whose conversions match `va`.
    let text = unsafe {
        let format = core::ffi::CStr::from_ptr(format).to_bytes();
        crate::printf::format(format, &mut va_words(va))
    };
    // SAFETY: the routine's contract: `count` writable bytes.
    unsafe { write_counted(buffer, count, text.as_bytes()) }
}

/// `_vsnwprintf`: the wide dialect, where `%s` is a wide string.
extern "win64" fn nt_vsnwprintf(
    buffer: *mut u16,
    count: usize,
    format: *const u16,
    va: *const usize,
) -> i32 {
    let mut chars = 0usize;
    // SAFETY: the routine's contract: a NUL-terminated wide format.
    while unsafe { format.add(chars).read() } != 0 {
        chars += 1;
    }
    // SAFETY: `chars` readable units.
    let wide = String::from_utf16_lossy(unsafe { units(format, chars) });
    let narrow = wide_format_to_narrow(&wide);
    // SAFETY: the routine's contract: the conversions match `va`.
    let text = unsafe { crate::printf::format(narrow.as_bytes(), &mut va_words(va)) };
    let out: Vec<u16> = text.encode_utf16().collect();
    // SAFETY: the routine's contract: `count` writable units.
    unsafe { write_counted(buffer, count, &out) }
}

/// A wide-printf format in the narrow dialect: an unmodified `%s`/`%c` becomes `%ws`/`%wc`.
fn wide_format_to_narrow(format: &str) -> String {
    let mut out = String::with_capacity(format.len() + 8);
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '%' {
            continue;
        }
        let mut modified = false;
        while let Some(&n) = chars.peek() {
            if n == '%' && !modified {
                out.push(n);
                chars.next();
                break;
            }
            if n.is_ascii_alphabetic() && !matches!(n, 'h' | 'l' | 'w' | 'I' | 'z') {
                if !modified && matches!(n, 's' | 'c') {
                    out.push('w');
                }
                out.push(n);
                chars.next();
                break;
            }
            modified |= matches!(n, 'h' | 'l' | 'w' | 'I' | 'z');
            out.push(n);
            chars.next();
        }
    }
    out
}

/// `sprintf_s(buffer, size, format, ...)`: the text and its length, or an empty buffer and -1
/// when it does not fit. Variadic words travel like fixed ones (see `DbgPrintEx`).
#[allow(
    clippy::too_many_arguments,
    reason = "the variadic argument words of sprintf_s"
)]
extern "win64" fn nt_sprintf_s(
    buffer: *mut u8,
    size: usize,
    format: *const c_char,
    a0: usize,
    a1: usize,
    a2: usize,
    a3: usize,
    a4: usize,
    a5: usize,
    a6: usize,
    a7: usize,
) -> i32 {
    if buffer.is_null() || size == 0 || format.is_null() {
        return -1;
    }
    let args = [a0, a1, a2, a3, a4, a5, a6, a7];
    let mut next = args.iter().copied();
    // SAFETY: the routine's contract: a NUL-terminated format whose conversions match.
    let text = unsafe {
        let format = core::ffi::CStr::from_ptr(format).to_bytes();
        crate::printf::format(format, &mut || next.next().unwrap_or(0))
    };
    if text.len() >= size {
        // SAFETY: `size` > 0 writable bytes.
        unsafe { buffer.write(0) };
        return -1;
    }
    // SAFETY: `text.len()` + 1 <= `size` writable bytes.
    unsafe { write_counted(buffer, size, text.as_bytes()) }
}

/// The routines of this module by export name.
pub fn exports() -> Vec<(&'static str, usize)> {
    let mut all = core_exports();
    all.extend(c_dmf_exports());
    all.extend(wdk_exports());
    all
}

/// `(export name, routine address)` pairs: `routines![Name => function, …]`.
macro_rules! routines {
    ($($name:ident => $routine:expr),* $(,)?) => {
        vec![$((stringify!($name), $routine as *const () as usize)),*]
    };
}

/// The routines our images import.
fn core_exports() -> Vec<(&'static str, usize)> {
    routines![
        DbgPrintEx => dbg_print_ex,
        ExAllocatePool2 => ex_allocate_pool2,
        ExFreePoolWithTag => ex_free_pool_with_tag,
        KeBugCheckEx => ke_bug_check_ex,
        KeInitializeEvent => ke_initialize_event,
        KeSetEvent => ke_set_event,
        KeClearEvent => ke_clear_event,
        KeResetEvent => ke_reset_event,
        KeReadStateEvent => ke_read_state_event,
        KeWaitForSingleObject => ke_wait_for_single_object,
        KeAcquireSpinLockRaiseToDpc => ke_acquire_spin_lock_raise_to_dpc,
        KeReleaseSpinLock => ke_release_spin_lock,
        KeRaiseIrqlToDpcLevel => ke_raise_irql_to_dpc_level,
        KeLowerIrql => ke_lower_irql,
        KeGetCurrentIrql => ke_get_current_irql,
        KeGetCurrentThread => ke_get_current_thread,
        PsGetCurrentThread => ke_get_current_thread,
        KeGetCurrentProcessorNumberEx => ke_get_current_processor_number_ex,
        KeQueryInterruptTimePrecise => ke_query_interrupt_time_precise,
        KeQueryUnbiasedInterruptTime => ke_query_unbiased_interrupt_time,
        ExInitializeRundownProtection => ex_initialize_rundown_protection,
        ExReInitializeRundownProtection => ex_re_initialize_rundown_protection,
        ExRundownCompleted => ex_rundown_completed,
        ExAcquireRundownProtection => ex_acquire_rundown_protection,
        ExReleaseRundownProtection => ex_release_rundown_protection,
        ExWaitForRundownProtectionRelease => ex_wait_for_rundown_protection_release,
        SeTokenIsAdmin => se_token_is_admin,
        IoRegisterPlugPlayNotification => io_register_plug_play_notification,
        IoUnregisterPlugPlayNotificationEx => io_unregister_plug_play_notification_ex,
        memcpy => nt_memcpy,
        memmove => nt_memmove,
        memset => nt_memset,
        memcmp => nt_memcmp,
    ]
}

/// The further routines C DMF's images import.
fn c_dmf_exports() -> Vec<(&'static str, usize)> {
    routines![
        ExLocalTimeToSystemTime => ex_local_time_to_system_time,
        KeDelayExecutionThread => ke_delay_execution_thread,
        KeWaitForMultipleObjects => ke_wait_for_multiple_objects,
        MmGetSystemRoutineAddress => mm_get_system_routine_address,
        ObOpenObjectByPointer => ob_open_object_by_pointer,
        RtlAssert => rtl_assert,
        RtlCompareMemory => rtl_compare_memory,
        RtlCompareUnicodeString => rtl_compare_unicode_string,
        RtlCompareUnicodeStrings => rtl_compare_unicode_strings,
        RtlGetVersion => rtl_get_version,
        RtlInitUnicodeString => rtl_init_unicode_string,
        RtlTimeFieldsToTime => rtl_time_fields_to_time,
        RtlTimeToTimeFields => rtl_time_to_time_fields,
        ZwClose => zw_close,
        ZwSetSecurityObject => zw_set_security_object,
        _vsnprintf => nt_vsnprintf,
        _vsnwprintf => nt_vsnwprintf,
        sprintf_s => nt_sprintf_s,
        strcmp => nt_strcmp,
        strlen => nt_strlen,
        strncpy_s => nt_strncpy_s,
    ]
}

/// The further routines of drivers written directly on wdk-sys (wdk's `println!` prints with
/// `DbgPrint`, wdk-alloc frees with `ExFreePool`).
fn wdk_exports() -> Vec<(&'static str, usize)> {
    routines![
        DbgPrint => dbg_print,
        ExFreePool => ex_free_pool,
    ]
}

/// `DbgPrint(Format, ...)`: as [`dbg_print_ex`] (the variadic words after the format), each line
/// a note of the object `DbgPrint`, as printed.
#[allow(
    clippy::too_many_arguments,
    reason = "the variadic argument words of DbgPrint"
)]
extern "win64" fn dbg_print(
    format: *const c_char,
    a0: usize,
    a1: usize,
    a2: usize,
    a3: usize,
    a4: usize,
    a5: usize,
    a6: usize,
    a7: usize,
) -> u32 {
    guard("DbgPrint", || {
        // SAFETY: the routine's contract: null or a NUL-terminated format whose conversions the
        // argument words match.
        unsafe {
            print_lines(format, [a0, a1, a2, a3, a4, a5, a6, a7], |line| {
                ("DbgPrint".to_owned(), line.to_owned())
            })
        }
    })
}

/// `ExFreePool(P)`: `ExFreePoolWithTag` with the tag the block was allocated with; a block the
/// driver does not hold is bug check `BAD_POOL_CALLER`.
extern "win64" fn ex_free_pool(p: *mut c_void) {
    let tag = guard("ExFreePool", || {
        let machine = machine("ExFreePool");
        lock(&state(&machine).pool)
            .get(&(p as usize))
            .map(|e| e.tag)
    });
    match tag {
        Some(tag) => ex_free_pool_with_tag(p, tag),
        None => bug_check(&format!(
            "bug check 0xC2 BAD_POOL_CALLER: ExFreePool({p:p}) frees memory that is not a pool \
             block the driver holds (freed twice, or never allocated)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmdf_sim::{ClockMode, MachineBuilder, VerifierMode};

    #[test]
    fn ex_free_pool_frees_with_the_blocks_tag_and_dbg_print_goes_to_the_trace() {
        let machine = recording_machine();
        let _bound = machine.enter();
        let p = ex_allocate_pool2(0x40, 24, u32::from_le_bytes(*b"rust"));
        assert!(!p.is_null());
        assert_eq!(machine.pool().outstanding().len(), 1);
        ex_free_pool(p);
        assert!(machine.pool().outstanding().is_empty());
        dbg_print(c"echo: D0Entry from %d\n".as_ptr(), 5, 0, 0, 0, 0, 0, 0, 0);
        assert_eq!(
            machine.trace().texts(TraceKind::Note, "DbgPrint"),
            ["echo: D0Entry from 5"]
        );
    }

    /// A machine whose clock jumps to the next deadline when every bound thread waits.
    fn recording_machine() -> Machine {
        MachineBuilder::default()
            .verifier(VerifierMode::Record)
            .clock(ClockMode::AutoAdvance)
            .build()
    }

    #[test]
    fn pool_blocks_are_tracked_aligned_and_freed_by_tag() {
        let machine = recording_machine();
        let _bound = machine.enter();
        let tag = u32::from_le_bytes(*b"DmfT");
        let p = ex_allocate_pool2(0x40, 24, tag);
        assert!(!p.is_null());
        assert_eq!(p as usize % 16, 0);
        // SAFETY: 24 fresh bytes of the block.
        assert!(unsafe { core::slice::from_raw_parts(p.cast::<u8>(), 24) }
            .iter()
            .all(|&b| b == 0));
        let outstanding = machine.pool().outstanding();
        assert_eq!(outstanding.len(), 1);
        assert_eq!(outstanding[0].tag.0, *b"DmfT");
        ex_free_pool_with_tag(p, tag);
        assert!(machine.pool().outstanding().is_empty());
    }

    #[test]
    fn events_wait_on_the_virtual_clock() {
        let machine = recording_machine();
        let _bound = machine.enter();
        let mut kevent = [0_u64; 3];
        let e = kevent.as_mut_ptr().cast::<c_void>();
        ke_initialize_event(e, 0, 0);
        assert_eq!(ke_read_state_event(e), 0);
        let timeout = -10_000_i64; // 1 ms, relative
        assert_eq!(
            ke_wait_for_single_object(e, 0, 0, 0, &raw const timeout),
            STATUS_TIMEOUT
        );
        assert_eq!(ke_set_event(e, 0, 0), 0);
        assert_eq!(
            ke_wait_for_single_object(e, 0, 0, 0, core::ptr::null()),
            STATUS_SUCCESS
        );
        ke_clear_event(e);
        assert_eq!(ke_read_state_event(e), 0);
    }

    #[test]
    fn spin_locks_raise_and_restore_the_irql() {
        let machine = recording_machine();
        let _bound = machine.enter();
        let mut word = 0_usize;
        let old = ke_acquire_spin_lock_raise_to_dpc(&raw mut word);
        assert_eq!(old, 0);
        assert_eq!(current_irql(), Irql::Dispatch);
        assert_ne!(word, 0);
        ke_release_spin_lock(&raw mut word, old);
        assert_eq!(word, 0);
        assert_eq!(current_irql(), Irql::Passive);
        assert_eq!(ke_raise_irql_to_dpc_level(), 0);
        assert_eq!(ke_get_current_irql(), 2);
        ke_lower_irql(0);
        assert_eq!(ke_get_current_irql(), 0);
        assert!(machine.verifier().violations().is_empty());
    }

    #[test]
    fn rundown_refuses_after_the_wait_and_wakes_the_waiter() {
        let machine = recording_machine();
        let _bound = machine.enter();
        let word = std::ptr::from_mut::<usize>(Box::leak(Box::new(0_usize))) as usize;
        ex_initialize_rundown_protection(word as *mut usize);
        assert_eq!(ex_acquire_rundown_protection(word as *mut usize), 1);
        let m = machine.clone();
        let releaser = std::thread::spawn(move || {
            let _bound = m.enter();
            // Let the waiter block first, on the virtual clock.
            m.advance(Duration::from_millis(1));
            ex_release_rundown_protection(word as *mut usize);
        });
        ex_wait_for_rundown_protection_release(word as *mut usize);
        releaser.join().unwrap();
        assert_eq!(ex_acquire_rundown_protection(word as *mut usize), 0);
        ex_re_initialize_rundown_protection(word as *mut usize);
        assert_eq!(ex_acquire_rundown_protection(word as *mut usize), 1);
    }

    #[test]
    fn processor_numbers_differ_between_threads() {
        let mut here = ProcessorNumber {
            group: 9,
            number: 9,
            reserved: 9,
        };
        let a = ke_get_current_processor_number_ex(&raw mut here);
        assert_eq!(u32::from(here.number) + 64 * u32::from(here.group), a);
        let b = std::thread::spawn(|| ke_get_current_processor_number_ex(core::ptr::null_mut()))
            .join()
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(a, ke_get_current_processor_number_ex(core::ptr::null_mut()));
    }

    #[test]
    fn memory_routines_follow_the_c_library() {
        let mut a = *b"abcdef";
        let b = *b"abcxef";
        assert!(nt_memcmp(a.as_ptr(), b.as_ptr(), 6) < 0);
        assert_eq!(nt_memcmp(a.as_ptr(), b.as_ptr(), 3), 0);
        nt_memmove(a.as_mut_ptr().wrapping_add(1), a.as_ptr(), 3);
        assert_eq!(&a, b"aabcef");
        nt_memset(a.as_mut_ptr(), i32::from(b'z'), 2);
        nt_memcpy(a.as_mut_ptr().wrapping_add(4), b"!?".as_ptr(), 2);
        assert_eq!(&a, b"zzbc!?");
    }

    #[test]
    fn dbg_print_ex_goes_to_the_trace() {
        let machine = recording_machine();
        let _bound = machine.enter();
        let name = c"switchbar";
        dbg_print_ex(
            77,
            0,
            c"%s: %d lights, %#x\n".as_ptr(),
            name.as_ptr() as usize,
            8,
            0xFF,
            0,
            0,
            0,
            0,
            0,
        );
        let notes = machine.trace().texts(TraceKind::Note, "switchbar");
        assert_eq!(notes, ["[ERROR] 8 lights, 0xff"]);
        // Not the driver-trace shape: recorded as printed.
        dbg_print_ex(0, 3, c"no source here\n".as_ptr(), 0, 0, 0, 0, 0, 0, 0, 0);
        dbg_print_ex(
            77,
            9,
            c"SwitchBar: level 9\n".as_ptr(),
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        );
        let notes = machine.trace().texts(TraceKind::Note, "DbgPrintEx");
        assert_eq!(notes, ["[0:3] no source here", "[77:9] SwitchBar: level 9"]);
    }

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain([0]).collect()
    }

    #[test]
    fn mm_get_system_routine_address_finds_the_host_routines_by_name() {
        let machine = recording_machine();
        let _bound = machine.enter();
        let name = wide("ExAllocatePool2");
        let mut u = UnicodeString {
            length: 0,
            maximum_length: 0,
            buffer: core::ptr::null_mut(),
        };
        rtl_init_unicode_string(&raw mut u, name.as_ptr());
        assert_eq!((u.length, u.maximum_length), (30, 32));
        assert_eq!(
            mm_get_system_routine_address(&raw const u) as usize,
            ex_allocate_pool2 as *const () as usize
        );
        let missing = wide("ExAllocatePoolZero");
        rtl_init_unicode_string(&raw mut u, missing.as_ptr());
        assert!(mm_get_system_routine_address(&raw const u).is_null());
    }

    #[test]
    fn unicode_strings_compare_by_units_and_ascii_case() {
        let (a, b) = (wide("DeviceA"), wide("deviceb"));
        assert!(rtl_compare_unicode_strings(a.as_ptr(), 7, b.as_ptr(), 7, 0) < 0);
        assert!(rtl_compare_unicode_strings(a.as_ptr(), 7, b.as_ptr(), 7, 1) < 0);
        assert_eq!(
            rtl_compare_unicode_strings(a.as_ptr(), 6, b.as_ptr(), 6, 1),
            0
        );
        assert_eq!(
            rtl_compare_unicode_strings(a.as_ptr(), 5, b.as_ptr(), 6, 1),
            -1
        );
        let mut ua = UnicodeString {
            length: 12,
            maximum_length: 16,
            buffer: a.as_ptr().cast_mut(),
        };
        let ub = UnicodeString {
            length: 12,
            maximum_length: 16,
            buffer: b.as_ptr().cast_mut(),
        };
        assert_eq!(
            rtl_compare_unicode_string(&raw const ua, &raw const ub, 1),
            0
        );
        assert_ne!(
            rtl_compare_unicode_string(&raw const ua, &raw const ub, 0),
            0
        );
        ua.length = 14;
        assert_eq!(
            rtl_compare_unicode_string(&raw const ua, &raw const ub, 1),
            1
        );
        assert_eq!(rtl_compare_memory(b"abcd".as_ptr(), b"abxd".as_ptr(), 4), 2);
    }

    #[test]
    fn time_fields_round_trip_through_system_time() {
        // 2026-12-07 20:36:55.123, a Monday.
        let f = TimeFields {
            year: 2026,
            month: 12,
            day: 7,
            hour: 20,
            minute: 36,
            second: 55,
            milliseconds: 123,
            weekday: 0,
        };
        let mut t = 0i64;
        assert_eq!(rtl_time_fields_to_time(&raw const f, &raw mut t), 1);
        // Its Unix time in milliseconds, in 100-ns ticks, plus the 1601 origin.
        let unix_ms = 1_796_675_815_123_i64;
        assert_eq!(t, unix_ms * 10_000 + DAYS_1601_TO_1970 * TICKS_PER_DAY);
        let mut back = TimeFields {
            year: 0,
            month: 0,
            day: 0,
            hour: 0,
            minute: 0,
            second: 0,
            milliseconds: 0,
            weekday: 0,
        };
        rtl_time_to_time_fields(&raw const t, &raw mut back);
        assert_eq!(back, TimeFields { weekday: 1, ..f });
        let mut local = 0i64;
        ex_local_time_to_system_time(&raw const t, &raw mut local);
        assert_eq!(local, t);
        let bad = TimeFields {
            day: 31,
            month: 11,
            ..f
        };
        assert_eq!(rtl_time_fields_to_time(&raw const bad, &raw mut t), 0);
    }

    #[test]
    fn string_routines_follow_the_c_library() {
        assert_eq!(nt_strlen(c"DmfK".as_ptr()), 4);
        assert_eq!(nt_strcmp(c"abc".as_ptr(), c"abc".as_ptr()), 0);
        assert!(nt_strcmp(c"ab".as_ptr(), c"abc".as_ptr()) < 0);
        let mut buf = [0xAAu8; 6];
        assert_eq!(nt_strncpy_s(buf.as_mut_ptr(), 6, c"Switch".as_ptr(), 3), 0);
        assert_eq!(&buf[..4], b"Swi\0");
        assert_eq!(
            nt_strncpy_s(buf.as_mut_ptr(), 6, c"SwitchBar".as_ptr(), TRUNCATE),
            STRUNCATE
        );
        assert_eq!(&buf, b"Switc\0");
        assert_eq!(
            nt_strncpy_s(buf.as_mut_ptr(), 6, c"SwitchBar".as_ptr(), 9),
            ERANGE
        );
        assert_eq!(buf[0], 0);
        let mut out = [0xAAu8; 16];
        let n = nt_sprintf_s(
            out.as_mut_ptr(),
            16,
            c"%s-%d".as_ptr(),
            c"Bar".as_ptr() as usize,
            4,
            0,
            0,
            0,
            0,
            0,
            0,
        );
        assert_eq!(n, 5);
        assert_eq!(&out[..6], b"Bar-4\0");
        let n = nt_sprintf_s(
            out.as_mut_ptr(),
            4,
            c"%d".as_ptr(),
            12345,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        );
        assert_eq!((n, out[0]), (-1, 0));
    }

    #[test]
    fn vsnprintf_reads_a_va_list_and_reports_truncation() {
        let va = [c"lights".as_ptr() as usize, 8usize];
        let mut out = [0xAAu8; 12];
        let n = nt_vsnprintf(
            out.as_mut_ptr(),
            12,
            c"%d %s".as_ptr(),
            [8usize, va[0]].as_ptr(),
        );
        assert_eq!(n, 8);
        assert_eq!(&out[..9], b"8 lights\0");
        assert_eq!(
            nt_vsnprintf(out.as_mut_ptr(), 4, c"%s".as_ptr(), va.as_ptr()),
            -1
        );
        assert_eq!(&out[..4], b"ligh");
        // Wide: %s is a wide string.
        let name = wide("Bar");
        let format = wide("%s=%d");
        let mut w = [0u16; 8];
        let va = [name.as_ptr() as usize, 4];
        assert_eq!(
            nt_vsnwprintf(w.as_mut_ptr(), 8, format.as_ptr(), va.as_ptr()),
            5
        );
        assert_eq!(String::from_utf16_lossy(&w[..5]), "Bar=4");
        assert_eq!(w[5], 0);
        assert_eq!(
            wide_format_to_narrow("%-8s %ls %hs %c %%s"),
            "%-8ws %ls %hs %wc %%s"
        );
    }

    #[test]
    fn rtl_get_version_reports_windows_10_or_later() {
        let mut info = [0u32; 71]; // RTL_OSVERSIONINFOEXW: 284 bytes
        info[0] = OS_VERSION_INFO_EX_SIZE;
        assert_eq!(rtl_get_version(info.as_mut_ptr().cast()), STATUS_SUCCESS);
        assert_eq!(&info[1..5], &[10, 0, 26100, 2]);
        let product_type = info.as_ptr().cast::<u8>().wrapping_add(276 + 6);
        // SAFETY: inside `info`.
        assert_eq!(unsafe { product_type.read() }, 1);
    }

    #[test]
    fn a_delay_advances_the_virtual_clock() {
        let machine = recording_machine();
        let _bound = machine.enter();
        let before = machine.now_ticks();
        let ten_ms = -100_000i64;
        assert_eq!(
            ke_delay_execution_thread(0, 0, &raw const ten_ms),
            STATUS_SUCCESS
        );
        assert!(machine.now_ticks() >= before + 100_000);
    }

    #[test]
    fn handles_the_host_does_not_have_fail_cleanly() {
        let mut handle = 7usize;
        assert_eq!(
            ob_open_object_by_pointer(
                core::ptr::null_mut(),
                0,
                core::ptr::null_mut(),
                0,
                core::ptr::null_mut(),
                0,
                &raw mut handle
            ),
            STATUS_NOT_SUPPORTED
        );
        assert_eq!(handle, 0);
        assert_eq!(zw_close(handle), STATUS_INVALID_HANDLE);
        assert_eq!(
            zw_set_security_object(handle, 4, core::ptr::null_mut()),
            STATUS_INVALID_HANDLE
        );
    }
}
