//! WDF plumbing shared by the kmdf backend: the `WDF_*_INIT` equivalents, typed object contexts
//! (`WDF_DECLARE_CONTEXT_TYPE`), NTSTATUS conversion and counted strings.
//!
//! # `WDF_*_INIT`
//! The WDK implements `WDF_OBJECT_ATTRIBUTES_INIT`, `WDF_DRIVER_CONFIG_INIT`, … as `FORCEINLINE`
//! functions in the headers, which bindgen cannot translate (windows-drivers-rs issue #242). Each
//! one here is a `const fn` doing what the header does: zero the structure, set `Size` to
//! `sizeof` of the structure *of the KMDF version the driver is built against* (wdk-sys generates
//! the bindings for `target-kmdf-version-minor`), and set the documented defaults. The sizes of the
//! x64 KMDF 1.33 layouts are asserted at compile time, so a wdk-sys built against headers whose
//! structure differs fails to compile here instead of passing a wrong `Size` to WDF (which WDF
//! rejects with `STATUS_INFO_LENGTH_MISMATCH`, or worse, reads past).
//!
//! # Object contexts
//! Every WDF object that carries Rust closures (driver, device, queue, timer, work item, remote
//! I/O target, file object, request) gets one typed context, declared with [`context_type!`]: a
//! static `WDF_OBJECT_CONTEXT_TYPE_INFO` whose `UniqueType` points at itself, as
//! `WDF_DECLARE_CONTEXT_TYPE` generates in C. WDF allocates the context with the object and zeroes
//! it. A context is a [`Slot<T>`]: an "initialised" flag and the Rust value; the flag is false in
//! zeroed memory, so a callback that runs before the creator stored the value sees `None` instead
//! of reading an uninitialised Rust value. The object's `EvtDestroyCallback` drops the value.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::mem::{offset_of, size_of, MaybeUninit};
use core::sync::atomic::{AtomicBool, Ordering};

use alloc::string::String;
use alloc::vec::Vec;

use static_assertions::const_assert_eq;
use wdk_sys::{
    call_unsafe_wdf_function_binding, _MODE, _WDF_EXECUTION_LEVEL, _WDF_FILEOBJECT_CLASS,
    _WDF_IO_QUEUE_DISPATCH_TYPE, _WDF_IO_TARGET_OPEN_TYPE, _WDF_REQUEST_REUSE_FLAGS,
    _WDF_SYNCHRONIZATION_SCOPE, _WDF_TRI_STATE, BOOLEAN, GUID, KPROCESSOR_MODE, NTSTATUS,
    NT_SUCCESS, PDEVICE_OBJECT, ULONG, UNICODE_STRING, WDFOBJECT, WDF_DRIVER_CONFIG,
    WDF_EXECUTION_LEVEL, WDF_FILEOBJECT_CLASS, WDF_FILEOBJECT_CONFIG, WDF_IO_QUEUE_CONFIG,
    WDF_IO_QUEUE_DISPATCH_TYPE, WDF_IO_TARGET_OPEN_PARAMS, WDF_IO_TARGET_OPEN_TYPE,
    WDF_MEMORY_DESCRIPTOR, WDF_OBJECT_ATTRIBUTES, WDF_OBJECT_CONTEXT_TYPE_INFO,
    WDF_PNPPOWER_EVENT_CALLBACKS, WDF_POWER_POLICY_EVENT_CALLBACKS, WDF_REQUEST_PARAMETERS,
    WDF_REQUEST_REUSE_PARAMS, WDF_REQUEST_SEND_OPTIONS, WDF_SYNCHRONIZATION_SCOPE,
    WDF_TIMER_CONFIG, WDF_TRI_STATE, WDF_WORKITEM_CONFIG,
};

use crate::fallible::{try_vec_with_capacity, VecExt};
use crate::status::{NtResult, NtStatus};

// ---------------------------------------------------------------------------------------------
// Enumerators and flags (wdfobject.h, wdftypes.h, wdfdevice.h, wdfio.h, wdfiotarget.h,
// wdfrequest.h, wdm.h). Every value is the generated wdk-sys item: bindgen makes each C enum a
// module of `const`s (`_WDF_TRI_STATE::WdfTrue`) with a type alias (`WDF_TRI_STATE`), and each
// `#define` a plain `const` (`wdk_sys::FILE_OPEN`). The names below only shorten call sites; no
// number is written by hand here (`.ci/check_kmdf_literals.py` checks that).
// ---------------------------------------------------------------------------------------------

/// `WdfExecutionLevelInheritFromParent`.
pub(super) const WDF_EXECUTION_LEVEL_INHERIT: WDF_EXECUTION_LEVEL =
    _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent;
/// `WdfExecutionLevelPassive`.
pub(super) const WDF_EXECUTION_LEVEL_PASSIVE: WDF_EXECUTION_LEVEL =
    _WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive;
/// `WdfSynchronizationScopeInheritFromParent`.
pub(super) const WDF_SYNCHRONIZATION_SCOPE_INHERIT: WDF_SYNCHRONIZATION_SCOPE =
    _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent;
/// `WdfFalse`.
pub(super) const WDF_FALSE: WDF_TRI_STATE = _WDF_TRI_STATE::WdfFalse;
/// `WdfTrue`.
pub(super) const WDF_TRUE: WDF_TRI_STATE = _WDF_TRI_STATE::WdfTrue;
/// `WdfUseDefault`.
pub(super) const WDF_USE_DEFAULT: WDF_TRI_STATE = _WDF_TRI_STATE::WdfUseDefault;
/// `WdfIoQueueDispatchSequential`.
pub(super) const WDF_IO_QUEUE_DISPATCH_SEQUENTIAL: WDF_IO_QUEUE_DISPATCH_TYPE =
    _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchSequential;
/// `WdfIoQueueDispatchParallel`.
pub(super) const WDF_IO_QUEUE_DISPATCH_PARALLEL: WDF_IO_QUEUE_DISPATCH_TYPE =
    _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel;
/// `WdfIoQueueDispatchManual`.
pub(super) const WDF_IO_QUEUE_DISPATCH_MANUAL: WDF_IO_QUEUE_DISPATCH_TYPE =
    _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchManual;
/// `WdfFileObjectWdfCannotUseFsContexts` (what `WDF_FILEOBJECT_CONFIG_INIT` sets).
pub(super) const WDF_FILE_OBJECT_WDF_CANNOT_USE_FS_CONTEXTS: WDF_FILEOBJECT_CLASS =
    _WDF_FILEOBJECT_CLASS::WdfFileObjectWdfCannotUseFsContexts;
/// `WdfIoTargetOpenUseExistingDevice`.
pub(super) const WDF_IO_TARGET_OPEN_USE_EXISTING_DEVICE: WDF_IO_TARGET_OPEN_TYPE =
    _WDF_IO_TARGET_OPEN_TYPE::WdfIoTargetOpenUseExistingDevice;
/// `WdfIoTargetOpenByName`.
pub(super) const WDF_IO_TARGET_OPEN_BY_NAME: WDF_IO_TARGET_OPEN_TYPE =
    _WDF_IO_TARGET_OPEN_TYPE::WdfIoTargetOpenByName;
/// `WdfIoTargetOpenReopen`.
pub(super) const WDF_IO_TARGET_OPEN_REOPEN: WDF_IO_TARGET_OPEN_TYPE =
    _WDF_IO_TARGET_OPEN_TYPE::WdfIoTargetOpenReopen;
/// `FILE_NON_DIRECTORY_FILE` (what `WDF_IO_TARGET_OPEN_PARAMS_INIT_OPEN_BY_NAME` sets).
pub(super) const FILE_NON_DIRECTORY_FILE: ULONG = wdk_sys::FILE_NON_DIRECTORY_FILE;
/// `FILE_OPEN`.
pub(super) const FILE_OPEN: ULONG = wdk_sys::FILE_OPEN;
/// `WDF_REQUEST_REUSE_NO_FLAGS` (an enumerator of `WDF_REQUEST_REUSE_FLAGS`; the `Flags` member
/// is a `ULONG`).
pub(super) const WDF_REQUEST_REUSE_NO_FLAGS: ULONG =
    _WDF_REQUEST_REUSE_FLAGS::WDF_REQUEST_REUSE_NO_FLAGS.cast_unsigned();
/// `FALSE` as a `BOOLEAN`.
#[allow(
    clippy::cast_possible_truncation,
    reason = "FALSE is 0; the assertion below proves the value survives"
)]
pub(super) const FALSE: BOOLEAN = wdk_sys::FALSE as BOOLEAN;
/// `TRUE` as a `BOOLEAN`.
#[allow(
    clippy::cast_possible_truncation,
    reason = "TRUE is 1; the assertion below proves the value survives"
)]
pub(super) const TRUE: BOOLEAN = wdk_sys::TRUE as BOOLEAN;
/// `KernelMode` as the `KPROCESSOR_MODE` (`CCHAR`) the routines take and return.
#[allow(
    clippy::cast_possible_truncation,
    reason = "MODE values are 0..=2; the assertion below proves the value survives"
)]
pub(super) const KERNEL_MODE: KPROCESSOR_MODE = _MODE::KernelMode as KPROCESSOR_MODE;
/// `UserMode` as a `KPROCESSOR_MODE`.
#[allow(
    clippy::cast_possible_truncation,
    reason = "MODE values are 0..=2; the assertion below proves the value survives"
)]
pub(super) const USER_MODE: KPROCESSOR_MODE = _MODE::UserMode as KPROCESSOR_MODE;

/// A Rust `bool` as a `BOOLEAN` ([`TRUE`] or [`FALSE`]).
pub(super) const fn boolean(value: bool) -> BOOLEAN {
    if value {
        TRUE
    } else {
        FALSE
    }
}

// The narrowing casts above lose nothing.
const_assert_eq!(FALSE as u32, wdk_sys::FALSE);
const_assert_eq!(TRUE as u32, wdk_sys::TRUE);
const_assert_eq!(KERNEL_MODE as i32, _MODE::KernelMode);
const_assert_eq!(USER_MODE as i32, _MODE::UserMode);

/// `WDF_STRUCTURE_SIZE` as the `ULONG` the `Size` members take.
#[allow(
    clippy::cast_possible_truncation,
    reason = "WDF structures are a few hundred bytes; the assertions below pin them"
)]
const fn structure_size<T>() -> ULONG {
    size_of::<T>() as ULONG
}

// x64 layouts of KMDF 1.33 (wdfobject.h, wdfdriver.h, wdfdevice.h, wdfio.h, wdftimer.h,
// wdfworkitem.h, wdfrequest.h, wdfiotarget.h, wdfmemory.h, wdm.h): the size of every structure
// the backend fills by hand, and the offset of every member it writes (or reads, for the
// structures WDF fills). A mismatch means wdk-sys was generated from other headers: the `Size`
// members would lie to WDF and the members would land elsewhere. Each line names its structure,
// so a failure says which one differs.
const_assert_eq!(size_of::<WDF_OBJECT_ATTRIBUTES>(), 56);
const_assert_eq!(offset_of!(WDF_OBJECT_ATTRIBUTES, Size), 0);
const_assert_eq!(offset_of!(WDF_OBJECT_ATTRIBUTES, EvtCleanupCallback), 8);
const_assert_eq!(offset_of!(WDF_OBJECT_ATTRIBUTES, EvtDestroyCallback), 16);
const_assert_eq!(offset_of!(WDF_OBJECT_ATTRIBUTES, ExecutionLevel), 24);
const_assert_eq!(offset_of!(WDF_OBJECT_ATTRIBUTES, SynchronizationScope), 28);
const_assert_eq!(offset_of!(WDF_OBJECT_ATTRIBUTES, ParentObject), 32);
const_assert_eq!(offset_of!(WDF_OBJECT_ATTRIBUTES, ContextTypeInfo), 48);

const_assert_eq!(size_of::<WDF_OBJECT_CONTEXT_TYPE_INFO>(), 40);
const_assert_eq!(offset_of!(WDF_OBJECT_CONTEXT_TYPE_INFO, Size), 0);
const_assert_eq!(offset_of!(WDF_OBJECT_CONTEXT_TYPE_INFO, ContextName), 8);
const_assert_eq!(offset_of!(WDF_OBJECT_CONTEXT_TYPE_INFO, ContextSize), 16);
const_assert_eq!(offset_of!(WDF_OBJECT_CONTEXT_TYPE_INFO, UniqueType), 24);

const_assert_eq!(size_of::<WDF_DRIVER_CONFIG>(), 32);
const_assert_eq!(offset_of!(WDF_DRIVER_CONFIG, Size), 0);
const_assert_eq!(offset_of!(WDF_DRIVER_CONFIG, EvtDriverDeviceAdd), 8);
const_assert_eq!(offset_of!(WDF_DRIVER_CONFIG, EvtDriverUnload), 16);

const_assert_eq!(size_of::<WDF_PNPPOWER_EVENT_CALLBACKS>(), 144);
const_assert_eq!(offset_of!(WDF_PNPPOWER_EVENT_CALLBACKS, Size), 0);
const_assert_eq!(
    offset_of!(WDF_PNPPOWER_EVENT_CALLBACKS, EvtDeviceD0Entry),
    8
);
const_assert_eq!(
    offset_of!(
        WDF_PNPPOWER_EVENT_CALLBACKS,
        EvtDeviceD0EntryPostInterruptsEnabled
    ),
    16
);
const_assert_eq!(
    offset_of!(WDF_PNPPOWER_EVENT_CALLBACKS, EvtDeviceD0Exit),
    24
);
const_assert_eq!(
    offset_of!(
        WDF_PNPPOWER_EVENT_CALLBACKS,
        EvtDeviceD0ExitPreInterruptsDisabled
    ),
    32
);
const_assert_eq!(
    offset_of!(WDF_PNPPOWER_EVENT_CALLBACKS, EvtDevicePrepareHardware),
    40
);
const_assert_eq!(
    offset_of!(WDF_PNPPOWER_EVENT_CALLBACKS, EvtDeviceReleaseHardware),
    48
);
const_assert_eq!(
    offset_of!(WDF_PNPPOWER_EVENT_CALLBACKS, EvtDeviceSelfManagedIoCleanup),
    56
);
const_assert_eq!(
    offset_of!(WDF_PNPPOWER_EVENT_CALLBACKS, EvtDeviceSelfManagedIoFlush),
    64
);
const_assert_eq!(
    offset_of!(WDF_PNPPOWER_EVENT_CALLBACKS, EvtDeviceSelfManagedIoInit),
    72
);
const_assert_eq!(
    offset_of!(WDF_PNPPOWER_EVENT_CALLBACKS, EvtDeviceSelfManagedIoSuspend),
    80
);
const_assert_eq!(
    offset_of!(WDF_PNPPOWER_EVENT_CALLBACKS, EvtDeviceSelfManagedIoRestart),
    88
);
const_assert_eq!(
    offset_of!(WDF_PNPPOWER_EVENT_CALLBACKS, EvtDeviceSurpriseRemoval),
    96
);
const_assert_eq!(
    offset_of!(WDF_PNPPOWER_EVENT_CALLBACKS, EvtDeviceQueryRemove),
    104
);
const_assert_eq!(
    offset_of!(WDF_PNPPOWER_EVENT_CALLBACKS, EvtDeviceQueryStop),
    112
);
const_assert_eq!(
    offset_of!(WDF_PNPPOWER_EVENT_CALLBACKS, EvtDeviceRelationsQuery),
    128
);
const_assert_eq!(
    offset_of!(WDF_PNPPOWER_EVENT_CALLBACKS, EvtDeviceUsageNotificationEx),
    136
);

const_assert_eq!(size_of::<WDF_POWER_POLICY_EVENT_CALLBACKS>(), 64);
const_assert_eq!(offset_of!(WDF_POWER_POLICY_EVENT_CALLBACKS, Size), 0);
const_assert_eq!(
    offset_of!(WDF_POWER_POLICY_EVENT_CALLBACKS, EvtDeviceArmWakeFromS0),
    8
);
const_assert_eq!(
    offset_of!(WDF_POWER_POLICY_EVENT_CALLBACKS, EvtDeviceDisarmWakeFromS0),
    16
);
const_assert_eq!(
    offset_of!(
        WDF_POWER_POLICY_EVENT_CALLBACKS,
        EvtDeviceWakeFromS0Triggered
    ),
    24
);
const_assert_eq!(
    offset_of!(WDF_POWER_POLICY_EVENT_CALLBACKS, EvtDeviceDisarmWakeFromSx),
    40
);
const_assert_eq!(
    offset_of!(
        WDF_POWER_POLICY_EVENT_CALLBACKS,
        EvtDeviceWakeFromSxTriggered
    ),
    48
);
const_assert_eq!(
    offset_of!(
        WDF_POWER_POLICY_EVENT_CALLBACKS,
        EvtDeviceArmWakeFromSxWithReason
    ),
    56
);

const_assert_eq!(size_of::<WDF_FILEOBJECT_CONFIG>(), 40);
const_assert_eq!(offset_of!(WDF_FILEOBJECT_CONFIG, Size), 0);
const_assert_eq!(offset_of!(WDF_FILEOBJECT_CONFIG, EvtDeviceFileCreate), 8);
const_assert_eq!(offset_of!(WDF_FILEOBJECT_CONFIG, EvtFileClose), 16);
const_assert_eq!(offset_of!(WDF_FILEOBJECT_CONFIG, EvtFileCleanup), 24);
const_assert_eq!(
    offset_of!(WDF_FILEOBJECT_CONFIG, AutoForwardCleanupClose),
    32
);
const_assert_eq!(offset_of!(WDF_FILEOBJECT_CONFIG, FileObjectClass), 36);

const_assert_eq!(size_of::<WDF_IO_QUEUE_CONFIG>(), 96);
const_assert_eq!(offset_of!(WDF_IO_QUEUE_CONFIG, Size), 0);
const_assert_eq!(offset_of!(WDF_IO_QUEUE_CONFIG, DispatchType), 4);
const_assert_eq!(offset_of!(WDF_IO_QUEUE_CONFIG, PowerManaged), 8);
const_assert_eq!(offset_of!(WDF_IO_QUEUE_CONFIG, AllowZeroLengthRequests), 12);
const_assert_eq!(offset_of!(WDF_IO_QUEUE_CONFIG, DefaultQueue), 13);
const_assert_eq!(offset_of!(WDF_IO_QUEUE_CONFIG, EvtIoDefault), 16);
const_assert_eq!(offset_of!(WDF_IO_QUEUE_CONFIG, EvtIoRead), 24);
const_assert_eq!(offset_of!(WDF_IO_QUEUE_CONFIG, EvtIoWrite), 32);
const_assert_eq!(offset_of!(WDF_IO_QUEUE_CONFIG, EvtIoDeviceControl), 40);
const_assert_eq!(
    offset_of!(WDF_IO_QUEUE_CONFIG, EvtIoInternalDeviceControl),
    48
);
const_assert_eq!(offset_of!(WDF_IO_QUEUE_CONFIG, EvtIoStop), 56);
const_assert_eq!(offset_of!(WDF_IO_QUEUE_CONFIG, EvtIoResume), 64);
const_assert_eq!(offset_of!(WDF_IO_QUEUE_CONFIG, EvtIoCanceledOnQueue), 72);
const_assert_eq!(offset_of!(WDF_IO_QUEUE_CONFIG, Settings), 80);

const_assert_eq!(size_of::<WDF_TIMER_CONFIG>(), 40);
const_assert_eq!(offset_of!(WDF_TIMER_CONFIG, Size), 0);
const_assert_eq!(offset_of!(WDF_TIMER_CONFIG, EvtTimerFunc), 8);
const_assert_eq!(offset_of!(WDF_TIMER_CONFIG, Period), 16);
const_assert_eq!(offset_of!(WDF_TIMER_CONFIG, AutomaticSerialization), 20);
const_assert_eq!(offset_of!(WDF_TIMER_CONFIG, TolerableDelay), 24);
const_assert_eq!(offset_of!(WDF_TIMER_CONFIG, UseHighResolutionTimer), 32);

const_assert_eq!(size_of::<WDF_WORKITEM_CONFIG>(), 24);
const_assert_eq!(offset_of!(WDF_WORKITEM_CONFIG, Size), 0);
const_assert_eq!(offset_of!(WDF_WORKITEM_CONFIG, EvtWorkItemFunc), 8);
const_assert_eq!(offset_of!(WDF_WORKITEM_CONFIG, AutomaticSerialization), 16);

const_assert_eq!(size_of::<WDF_REQUEST_PARAMETERS>(), 40);
const_assert_eq!(offset_of!(WDF_REQUEST_PARAMETERS, Size), 0);
const_assert_eq!(offset_of!(WDF_REQUEST_PARAMETERS, Type), 4);
const_assert_eq!(offset_of!(WDF_REQUEST_PARAMETERS, Parameters), 8);

const_assert_eq!(size_of::<WDF_REQUEST_SEND_OPTIONS>(), 16);
const_assert_eq!(offset_of!(WDF_REQUEST_SEND_OPTIONS, Size), 0);
const_assert_eq!(offset_of!(WDF_REQUEST_SEND_OPTIONS, Flags), 4);
const_assert_eq!(offset_of!(WDF_REQUEST_SEND_OPTIONS, Timeout), 8);

const_assert_eq!(size_of::<WDF_REQUEST_REUSE_PARAMS>(), 24);
const_assert_eq!(offset_of!(WDF_REQUEST_REUSE_PARAMS, Size), 0);
const_assert_eq!(offset_of!(WDF_REQUEST_REUSE_PARAMS, Flags), 4);
const_assert_eq!(offset_of!(WDF_REQUEST_REUSE_PARAMS, Status), 8);

const_assert_eq!(size_of::<WDF_IO_TARGET_OPEN_PARAMS>(), 136);
const_assert_eq!(offset_of!(WDF_IO_TARGET_OPEN_PARAMS, Size), 0);
const_assert_eq!(offset_of!(WDF_IO_TARGET_OPEN_PARAMS, Type), 4);
const_assert_eq!(
    offset_of!(WDF_IO_TARGET_OPEN_PARAMS, EvtIoTargetQueryRemove),
    8
);
const_assert_eq!(
    offset_of!(WDF_IO_TARGET_OPEN_PARAMS, EvtIoTargetRemoveCanceled),
    16
);
const_assert_eq!(
    offset_of!(WDF_IO_TARGET_OPEN_PARAMS, EvtIoTargetRemoveComplete),
    24
);
const_assert_eq!(
    offset_of!(WDF_IO_TARGET_OPEN_PARAMS, TargetDeviceObject),
    32
);
const_assert_eq!(offset_of!(WDF_IO_TARGET_OPEN_PARAMS, TargetDeviceName), 48);
const_assert_eq!(offset_of!(WDF_IO_TARGET_OPEN_PARAMS, DesiredAccess), 64);
const_assert_eq!(offset_of!(WDF_IO_TARGET_OPEN_PARAMS, CreateDisposition), 76);
const_assert_eq!(offset_of!(WDF_IO_TARGET_OPEN_PARAMS, CreateOptions), 80);

const_assert_eq!(size_of::<WDF_MEMORY_DESCRIPTOR>(), 24);
const_assert_eq!(offset_of!(WDF_MEMORY_DESCRIPTOR, Type), 0);
const_assert_eq!(offset_of!(WDF_MEMORY_DESCRIPTOR, u), 8);

const_assert_eq!(size_of::<UNICODE_STRING>(), 16);
const_assert_eq!(offset_of!(UNICODE_STRING, Length), 0);
const_assert_eq!(offset_of!(UNICODE_STRING, MaximumLength), 2);
const_assert_eq!(offset_of!(UNICODE_STRING, Buffer), 8);

const_assert_eq!(size_of::<GUID>(), 16);
const_assert_eq!(offset_of!(GUID, Data1), 0);
const_assert_eq!(offset_of!(GUID, Data2), 4);
const_assert_eq!(offset_of!(GUID, Data3), 6);
const_assert_eq!(offset_of!(GUID, Data4), 8);

/// A zeroed WDF structure: what every `WDF_*_INIT` starts with (`RtlZeroMemory`).
///
/// # Safety
/// `T` must be a bindgen WDF structure, for which all-zero bytes are a valid value (integers,
/// raw pointers, `Option<fn>` and unions of those).
const unsafe fn zeroed<T>() -> T {
    // SAFETY: the caller guarantees that all-zero is a valid `T`.
    unsafe { core::mem::zeroed() }
}

/// `WDF_OBJECT_ATTRIBUTES_INIT`: size set, both scopes `InheritFromParent`, no context.
pub(super) const fn object_attributes_init() -> WDF_OBJECT_ATTRIBUTES {
    // SAFETY: WDF_OBJECT_ATTRIBUTES is integers, pointers and optional callbacks.
    let mut attributes: WDF_OBJECT_ATTRIBUTES = unsafe { zeroed() };
    attributes.Size = structure_size::<WDF_OBJECT_ATTRIBUTES>();
    attributes.ExecutionLevel = WDF_EXECUTION_LEVEL_INHERIT;
    attributes.SynchronizationScope = WDF_SYNCHRONIZATION_SCOPE_INHERIT;
    attributes
}

/// `WDF_OBJECT_ATTRIBUTES_INIT_CONTEXT_TYPE`: [`object_attributes_init`] with the context type
/// (`ContextTypeInfo = &info.UniqueType`) and the destroy callback that drops the context.
pub(super) fn object_attributes_with_context<T>(
    info: &'static ContextType<T>,
) -> WDF_OBJECT_ATTRIBUTES {
    let mut attributes = object_attributes_init();
    attributes.ContextTypeInfo = info.unique();
    attributes.EvtDestroyCallback = Some(info.destroy);
    attributes
}

/// `WDF_DRIVER_CONFIG_INIT`.
pub(super) const fn driver_config_init() -> WDF_DRIVER_CONFIG {
    // SAFETY: WDF_DRIVER_CONFIG is integers and optional callbacks.
    let mut config: WDF_DRIVER_CONFIG = unsafe { zeroed() };
    config.Size = structure_size::<WDF_DRIVER_CONFIG>();
    config
}

/// `WDF_PNPPOWER_EVENT_CALLBACKS_INIT`.
pub(super) const fn pnp_power_event_callbacks_init() -> WDF_PNPPOWER_EVENT_CALLBACKS {
    // SAFETY: a size and optional callbacks.
    let mut callbacks: WDF_PNPPOWER_EVENT_CALLBACKS = unsafe { zeroed() };
    callbacks.Size = structure_size::<WDF_PNPPOWER_EVENT_CALLBACKS>();
    callbacks
}

/// `WDF_POWER_POLICY_EVENT_CALLBACKS_INIT`.
pub(super) const fn power_policy_event_callbacks_init() -> WDF_POWER_POLICY_EVENT_CALLBACKS {
    // SAFETY: a size and optional callbacks.
    let mut callbacks: WDF_POWER_POLICY_EVENT_CALLBACKS = unsafe { zeroed() };
    callbacks.Size = structure_size::<WDF_POWER_POLICY_EVENT_CALLBACKS>();
    callbacks
}

/// `WDF_FILEOBJECT_CONFIG_INIT` (callbacks set by the caller): `AutoForwardCleanupClose =
/// WdfUseDefault`, `FileObjectClass = WdfFileObjectWdfCannotUseFsContexts`.
pub(super) const fn fileobject_config_init() -> WDF_FILEOBJECT_CONFIG {
    // SAFETY: integers and optional callbacks.
    let mut config: WDF_FILEOBJECT_CONFIG = unsafe { zeroed() };
    config.Size = structure_size::<WDF_FILEOBJECT_CONFIG>();
    config.AutoForwardCleanupClose = WDF_USE_DEFAULT;
    config.FileObjectClass = WDF_FILE_OBJECT_WDF_CANNOT_USE_FS_CONTEXTS;
    config
}

/// `WDF_IO_QUEUE_CONFIG_INIT` / `…_INIT_DEFAULT_QUEUE`: `PowerManaged = WdfUseDefault`, and for a
/// parallel queue `Settings.Parallel.NumberOfPresentedRequests = (ULONG)-1` (unlimited).
pub(super) fn io_queue_config_init(
    dispatch: WDF_IO_QUEUE_DISPATCH_TYPE,
    default_queue: bool,
) -> WDF_IO_QUEUE_CONFIG {
    // SAFETY: integers, optional callbacks, a union of one ULONG, and a handle.
    let mut config: WDF_IO_QUEUE_CONFIG = unsafe { zeroed() };
    config.Size = structure_size::<WDF_IO_QUEUE_CONFIG>();
    config.PowerManaged = WDF_USE_DEFAULT;
    config.DefaultQueue = boolean(default_queue);
    config.DispatchType = dispatch;
    if dispatch == WDF_IO_QUEUE_DISPATCH_PARALLEL {
        #[allow(
            unused_unsafe,
            reason = "whether a nested union-field write needs `unsafe` varies"
        )]
        // SAFETY: a plain write of a `ULONG` member of the `Settings` union (no drop, no read).
        unsafe {
            config.Settings.Parallel.NumberOfPresentedRequests = ULONG::MAX;
        }
    }
    config
}

/// `WDF_TIMER_CONFIG_INIT` (`period_ms == 0`) / `WDF_TIMER_CONFIG_INIT_PERIODIC`, without
/// automatic serialization (DMF does its own locking). `TolerableDelay` (no tolerance) and
/// `UseHighResolutionTimer` (`FALSE`) keep the zero of the `RtlZeroMemory` the header starts with.
pub(super) const fn timer_config_init(period_ms: ULONG) -> WDF_TIMER_CONFIG {
    // SAFETY: integers and an optional callback.
    let mut config: WDF_TIMER_CONFIG = unsafe { zeroed() };
    config.Size = structure_size::<WDF_TIMER_CONFIG>();
    config.Period = period_ms;
    config.AutomaticSerialization = FALSE;
    config
}

/// `WDF_WORKITEM_CONFIG_INIT`, without automatic serialization.
pub(super) const fn workitem_config_init() -> WDF_WORKITEM_CONFIG {
    // SAFETY: integers and an optional callback.
    let mut config: WDF_WORKITEM_CONFIG = unsafe { zeroed() };
    config.Size = structure_size::<WDF_WORKITEM_CONFIG>();
    config.AutomaticSerialization = FALSE;
    config
}

/// `WDF_REQUEST_PARAMETERS_INIT`.
pub(super) const fn request_parameters_init() -> WDF_REQUEST_PARAMETERS {
    // SAFETY: integers and a union of integer/pointer structs.
    let mut parameters: WDF_REQUEST_PARAMETERS = unsafe { zeroed() };
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the structure is 40 bytes (asserted above); `Size` is a USHORT here"
    )]
    {
        parameters.Size = size_of::<WDF_REQUEST_PARAMETERS>() as wdk_sys::USHORT;
    }
    parameters
}

/// `WDF_REQUEST_SEND_OPTIONS_INIT(flags)` plus `WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT`.
pub(super) const fn request_send_options_init(
    flags: ULONG,
    timeout: i64,
) -> WDF_REQUEST_SEND_OPTIONS {
    // SAFETY: integers.
    let mut options: WDF_REQUEST_SEND_OPTIONS = unsafe { zeroed() };
    options.Size = structure_size::<WDF_REQUEST_SEND_OPTIONS>();
    options.Flags = flags;
    options.Timeout = timeout;
    options
}

/// `WDF_REQUEST_REUSE_PARAMS_INIT(params, WDF_REQUEST_REUSE_NO_FLAGS, status)`.
pub(super) const fn request_reuse_params_init(status: NTSTATUS) -> WDF_REQUEST_REUSE_PARAMS {
    // SAFETY: integers and a null IRP pointer.
    let mut params: WDF_REQUEST_REUSE_PARAMS = unsafe { zeroed() };
    params.Size = structure_size::<WDF_REQUEST_REUSE_PARAMS>();
    params.Flags = WDF_REQUEST_REUSE_NO_FLAGS;
    params.Status = status;
    params
}

/// `WDF_IO_TARGET_OPEN_PARAMS_INIT_OPEN_BY_NAME` (`name` is copied by value, as the header does;
/// its buffer must outlive `WdfIoTargetOpen`) or, with `None`, `…_INIT_REOPEN`.
pub(super) fn io_target_open_params_init(
    name: Option<&UNICODE_STRING>,
    desired_access: u32,
) -> WDF_IO_TARGET_OPEN_PARAMS {
    // SAFETY: integers, pointers, optional callbacks and a UNICODE_STRING (length + pointer).
    let mut params: WDF_IO_TARGET_OPEN_PARAMS = unsafe { zeroed() };
    params.Size = structure_size::<WDF_IO_TARGET_OPEN_PARAMS>();
    match name {
        Some(name) => {
            params.Type = WDF_IO_TARGET_OPEN_BY_NAME;
            params.TargetDeviceName = *name;
            params.DesiredAccess = desired_access;
            params.CreateOptions = FILE_NON_DIRECTORY_FILE;
            params.CreateDisposition = FILE_OPEN;
        }
        None => params.Type = WDF_IO_TARGET_OPEN_REOPEN,
    }
    params
}

/// `WDF_IO_TARGET_OPEN_PARAMS_INIT_EXISTING_DEVICE`: open on a device object the caller holds a
/// reference to for the duration of `WdfIoTargetOpen` (WDF takes its own).
pub(super) fn io_target_open_params_init_existing_device(
    device: PDEVICE_OBJECT,
) -> WDF_IO_TARGET_OPEN_PARAMS {
    // SAFETY: integers, pointers, optional callbacks and a UNICODE_STRING (length + pointer).
    let mut params: WDF_IO_TARGET_OPEN_PARAMS = unsafe { zeroed() };
    params.Size = structure_size::<WDF_IO_TARGET_OPEN_PARAMS>();
    params.Type = WDF_IO_TARGET_OPEN_USE_EXISTING_DEVICE;
    params.TargetDeviceObject = device;
    params
}

/// A relative `LONGLONG` timeout for WDF/NT waits: `None` → no timeout pointer; `Some(d)` → the
/// NT layer's relative interval (minus `d` in 100-ns units, rounded up so a non-zero duration
/// never becomes a state test).
pub(super) fn relative_timeout(timeout: Option<core::time::Duration>) -> Option<i64> {
    timeout.map(crate::platform::nt::event::relative_interval)
}

/// `NT_SUCCESS` as a `Result`.
pub(super) fn nt_result(status: NTSTATUS) -> NtResult<()> {
    if NT_SUCCESS(status) {
        Ok(())
    } else {
        Err(NtStatus::from_raw(status))
    }
}

/// A UTF-16 copy of a Rust string and the `UNICODE_STRING` describing it (`RtlInitUnicodeString`
/// without the terminator requirement). Keep the value alive while WDF or NT uses the string.
pub(super) struct UnicodeName {
    // INVARIANT: `string.Buffer` points into `buffer`, `string.Length` is its size in bytes.
    buffer: Vec<u16>,
    string: UNICODE_STRING,
}

impl UnicodeName {
    /// Converts `text`. Names longer than a `UNICODE_STRING` can describe (32 767 UTF-16 units)
    /// are `STATUS_NAME_TOO_LONG`; `STATUS_INSUFFICIENT_RESOURCES` when the pool refuses the copy.
    pub(super) fn new(text: &str) -> NtResult<Self> {
        let units = text.encode_utf16().count();
        let bytes = units * size_of::<u16>();
        let too_long = |_| NtStatus::from_raw(wdk_sys::STATUS_NAME_TOO_LONG);
        let length = u16::try_from(bytes).map_err(too_long)?;
        let maximum = u16::try_from(bytes + size_of::<u16>()).map_err(too_long)?;
        let mut buffer: Vec<u16> = try_vec_with_capacity(units + 1)?;
        for unit in text.encode_utf16().chain([0]) {
            buffer.try_push(unit)?;
        }
        // SAFETY: UNICODE_STRING is two USHORTs and a pointer; zero is valid.
        let mut string: UNICODE_STRING = unsafe { zeroed() };
        string.Length = length;
        string.MaximumLength = maximum;
        string.Buffer = buffer.as_mut_ptr();
        Ok(Self { buffer, string })
    }

    /// The `PCUNICODE_STRING` for a call: valid while `self` lives and stays where it is (the
    /// characters are on the heap; the `UNICODE_STRING` header is inside `self`).
    pub(super) fn as_ptr(&self) -> *const UNICODE_STRING {
        debug_assert!(!self.buffer.is_empty());
        &raw const self.string
    }

    /// The `UNICODE_STRING` by value (its buffer stays owned by `self`).
    pub(super) fn get(&self) -> &UNICODE_STRING {
        &self.string
    }
}

/// A `UNICODE_STRING` as a Rust string (lossy for unpaired surrogates).
///
/// # Errors
///
/// `STATUS_INSUFFICIENT_RESOURCES` when the pool refuses the string.
///
/// # Safety
/// `string` must be null or point to a valid `UNICODE_STRING` whose buffer holds `Length` bytes.
pub(super) unsafe fn from_unicode_string(string: *const UNICODE_STRING) -> NtResult<String> {
    if string.is_null() {
        return Ok(String::new());
    }
    // SAFETY: the caller guarantees a valid UNICODE_STRING.
    let string = unsafe { &*string };
    if string.Buffer.is_null() || string.Length == 0 {
        return Ok(String::new());
    }
    // SAFETY: the caller guarantees `Length` valid bytes at `Buffer` (UTF-16 units, 2-aligned).
    let units = unsafe {
        core::slice::from_raw_parts(string.Buffer, usize::from(string.Length) / size_of::<u16>())
    };
    string_from_utf16_lossy(units.iter().copied())
}

/// `String::from_utf16_lossy` into a string allocated fallibly, exactly sized (unpaired
/// surrogates become U+FFFD).
///
/// # Errors
///
/// `STATUS_INSUFFICIENT_RESOURCES` when the pool refuses the string.
pub(super) fn string_from_utf16_lossy(
    units: impl Iterator<Item = u16> + Clone,
) -> NtResult<String> {
    fn chars(units: impl Iterator<Item = u16>) -> impl Iterator<Item = char> {
        char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
    }
    let length = chars(units.clone()).map(char::len_utf8).sum();
    let mut bytes: Vec<u8> = try_vec_with_capacity(length)?;
    let mut encoded = [0_u8; 4];
    for c in chars(units) {
        bytes.try_extend_from_slice(c.encode_utf8(&mut encoded).as_bytes())?;
    }
    // Valid UTF-8 by construction (each piece is a `char` encoded by `encode_utf8`).
    String::from_utf8(bytes).map_err(|_| NtStatus::UNSUCCESSFUL)
}

// ---------------------------------------------------------------------------------------------
// Typed object contexts.
// ---------------------------------------------------------------------------------------------

/// The context memory of one object: zeroed by WDF (so `ready` starts false), filled once by the
/// creator with [`Slot::init`], dropped by the object's `EvtDestroyCallback`.
#[repr(C)]
pub(super) struct Slot<T> {
    ready: AtomicBool,
    value: UnsafeCell<MaybeUninit<T>>,
}

impl<T> Slot<T> {
    /// Stores the value.
    ///
    /// # Safety
    /// Called once per object, by its creator, before anything else can call [`get`](Self::get)
    /// expecting the value (callbacks that run earlier see `None`).
    pub(super) unsafe fn init(&self, value: T) {
        // SAFETY: nobody reads the value before `ready` is set (Release below, Acquire in `get`),
        // and `init` runs once (caller), so this write races with nothing.
        unsafe { (*self.value.get()).write(value) };
        self.ready.store(true, Ordering::Release);
    }

    /// The value, once initialised.
    pub(super) fn get(&self) -> Option<&T> {
        if self.ready.load(Ordering::Acquire) {
            // SAFETY: `ready` is set only after the value was written (`init`), and it is dropped
            // only in the destroy callback, after which WDF calls nothing else on the object.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }

    /// Drops the value if it was initialised.
    ///
    /// # Safety
    /// Only from the object's `EvtDestroyCallback`: no other reference to the value exists then.
    pub(super) unsafe fn drop_value(&self) {
        if self.ready.swap(false, Ordering::AcqRel) {
            // SAFETY: initialised (`ready` was set), and the caller guarantees exclusivity.
            unsafe { (*self.value.get()).assume_init_drop() };
        }
    }
}

/// A `WDF_OBJECT_CONTEXT_TYPE_INFO` for contexts of type `Slot<T>`, plus its destroy callback.
/// Declared as a `static` with [`context_type!`].
#[repr(C)]
pub(super) struct ContextType<T: 'static> {
    info: WDF_OBJECT_CONTEXT_TYPE_INFO,
    destroy: unsafe extern "C" fn(WDFOBJECT),
    _slot: core::marker::PhantomData<fn() -> T>,
}

// SAFETY: the info is immutable after static initialisation (WDF only reads it) and holds
// pointers to static data only.
unsafe impl<T> Sync for ContextType<T> {}

impl<T: 'static> ContextType<T> {
    /// Builds the type info (`WDF_DECLARE_CONTEXT_TYPE_WITH_NAME`): `name` NUL-terminated,
    /// `unique` the address of this very info (what C's `UniqueType` holds).
    pub(super) const fn new(
        name: &'static core::ffi::CStr,
        unique: *const WDF_OBJECT_CONTEXT_TYPE_INFO,
        destroy: unsafe extern "C" fn(WDFOBJECT),
    ) -> Self {
        // SAFETY: WDF_OBJECT_CONTEXT_TYPE_INFO is integers, pointers and an optional callback.
        let mut info: WDF_OBJECT_CONTEXT_TYPE_INFO = unsafe { zeroed() };
        info.Size = structure_size::<WDF_OBJECT_CONTEXT_TYPE_INFO>();
        info.ContextName = name.as_ptr().cast();
        info.ContextSize = size_of::<Slot<T>>();
        info.UniqueType = unique;
        Self {
            info,
            destroy,
            _slot: core::marker::PhantomData,
        }
    }

    /// The `PCWDF_OBJECT_CONTEXT_TYPE_INFO` for attributes and `WdfObjectGetTypedContextWorker`.
    pub(super) fn unique(&self) -> *const WDF_OBJECT_CONTEXT_TYPE_INFO {
        self.info.UniqueType
    }

    /// `WdfObjectGetTypedContext`: the slot of `object`.
    ///
    /// # Safety
    /// `object` must be a live WDF object created with this context type; the returned reference
    /// must not outlive it.
    pub(super) unsafe fn slot<'a>(&self, object: WDFOBJECT) -> Option<&'a Slot<T>> {
        // SAFETY: `object` is live (caller); the type info is static.
        let context = unsafe {
            call_unsafe_wdf_function_binding!(WdfObjectGetTypedContextWorker, object, self.unique())
        };
        // SAFETY: WDF returns the object's context of exactly this type (ContextSize =
        // size_of::<Slot<T>>(), aligned to MEMORY_ALLOCATION_ALIGNMENT) or null; it lives as long
        // as the object (caller).
        unsafe { context.cast::<Slot<T>>().as_ref() }
    }

    /// The initialised value in `object`'s context.
    ///
    /// # Safety
    /// As [`slot`](Self::slot).
    pub(super) unsafe fn get<'a>(&self, object: WDFOBJECT) -> Option<&'a T> {
        // SAFETY: forwarded.
        unsafe { self.slot(object) }.and_then(Slot::get)
    }
}

/// Declares a context type: `context_type!(NAME: Type = "Name", destroy_fn);` creates the static
/// `NAME: ContextType<Type>` and the `EvtDestroyCallback` `destroy_fn` that drops the value.
macro_rules! context_type {
    ($(#[$meta:meta])* $name:ident: $ty:ty = $cname:literal, $destroy:ident) => {
        $(#[$meta])*
        #[link_section = ".data"]
        pub(super) static $name: $crate::platform::kmdf::wdf::ContextType<$ty> =
            $crate::platform::kmdf::wdf::ContextType::new(
                $cname,
                // The info's own address, as WDF_DECLARE_CONTEXT_TYPE sets `UniqueType`.
                core::ptr::addr_of!($name).cast::<wdk_sys::WDF_OBJECT_CONTEXT_TYPE_INFO>(),
                $destroy,
            );

        /// `EvtDestroyCallback`: drops the Rust value in the object's context.
        unsafe extern "C" fn $destroy(object: wdk_sys::WDFOBJECT) {
            // SAFETY: WDF calls the destroy callback once, when the object's memory is about to
            // be freed: the object is still valid and nothing else uses its context any more.
            unsafe {
                if let Some(slot) = $name.slot(object) {
                    slot.drop_value();
                }
            }
        }
    };
}
pub(super) use context_type;

/// A WDF handle as an opaque `WDFOBJECT`.
pub(super) fn as_object<T>(handle: *mut T) -> WDFOBJECT {
    handle.cast::<c_void>().cast()
}

/// A slot for one boxed value that can be put and taken atomically; all-zero bytes are the empty
/// cell, so it is valid in WDF-zeroed context memory without initialisation.
#[repr(transparent)]
pub(super) struct TakeCell<T> {
    // INVARIANT: null, or a pointer from `Box::into_raw` owned by the cell.
    ptr: core::sync::atomic::AtomicPtr<T>,
}

impl<T> TakeCell<T> {
    /// An empty cell.
    pub(super) const fn new() -> Self {
        Self {
            ptr: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// Stores `value`, dropping the value it held before.
    pub(super) fn put(&self, value: alloc::boxed::Box<T>) {
        let old = self
            .ptr
            .swap(alloc::boxed::Box::into_raw(value), Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: `old` came from `Box::into_raw` (invariant) and the swap made it ours.
            drop(unsafe { alloc::boxed::Box::from_raw(old) });
        }
    }

    /// Takes the value out, leaving the cell empty.
    pub(super) fn take(&self) -> Option<alloc::boxed::Box<T>> {
        let old = self.ptr.swap(core::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: non-null values come from `Box::into_raw` (invariant); the swap made it ours.
        (!old.is_null()).then(|| unsafe { alloc::boxed::Box::from_raw(old) })
    }
}

impl<T> Drop for TakeCell<T> {
    fn drop(&mut self) {
        drop(self.take());
    }
}

/// The header of a [`ThinOnce`] block: how to call, and how to drop, the closure that follows it.
#[repr(C)]
struct OnceHeader<A> {
    call: unsafe fn(*mut OnceHeader<A>, A),
    drop: unsafe fn(*mut OnceHeader<A>),
}

/// A [`ThinOnce`] block: the header, then the closure (`repr(C)`: the header is at offset 0).
#[repr(C)]
struct OnceBlock<A, F> {
    header: OnceHeader<A>,
    f: F,
}

/// `call` of a block of closure type `F`: takes the block back and runs the closure.
///
/// # Safety
/// `header` is the address of a block of `F` from `Box::into_raw`, owned by the caller.
unsafe fn call_block<A, F: FnOnce(A)>(header: *mut OnceHeader<A>, argument: A) {
    // SAFETY: the caller's contract; the header is the block's first field (`repr(C)`), so the
    // block's address is the header's.
    let block = unsafe { alloc::boxed::Box::from_raw(header.cast::<OnceBlock<A, F>>()) };
    (block.f)(argument);
}

/// `drop` of a block of closure type `F`.
///
/// # Safety
/// As for [`call_block`].
unsafe fn drop_block<A, F>(header: *mut OnceHeader<A>) {
    // SAFETY: as in `call_block`.
    drop(unsafe { alloc::boxed::Box::from_raw(header.cast::<OnceBlock<A, F>>()) });
}

/// A `FnOnce(A)` in **one** pool allocation behind a thin pointer, so an atomic slot
/// ([`OnceCell`]) can hold it: a `Box<dyn FnOnce>` is a fat pointer and would need a second box.
/// A completion routine is stored for every request sent, so the second allocation was one per
/// send.
pub(super) struct ThinOnce<A> {
    // INVARIANT: the header of a block from `Box::into_raw(Box<OnceBlock<A, F>>)` whose functions
    // are `call_block::<A, F>` / `drop_block::<A, F>`, for an `F: Send`; owned by this value.
    header: core::ptr::NonNull<OnceHeader<A>>,
}

// SAFETY: the closure is `Send` (required by `try_new`); the value owns the block alone.
unsafe impl<A> Send for ThinOnce<A> {}

impl<A> ThinOnce<A> {
    /// Boxes `f` (`STATUS_INSUFFICIENT_RESOURCES` when the pool refuses).
    pub(super) fn try_new<F: FnOnce(A) + Send + 'static>(f: F) -> NtResult<Self> {
        let block = crate::fallible::try_box(OnceBlock {
            header: OnceHeader {
                call: call_block::<A, F>,
                drop: drop_block::<A, F>,
            },
            f,
        })?;
        let header = alloc::boxed::Box::into_raw(block).cast::<OnceHeader<A>>();
        // SAFETY: `Box::into_raw` never returns null.
        let header = unsafe { core::ptr::NonNull::new_unchecked(header) };
        Ok(Self { header })
    }

    /// Runs the closure (consuming it).
    pub(super) fn call(self, argument: A) {
        let header = self.header.as_ptr();
        core::mem::forget(self);
        // SAFETY: the invariant: `call` is the block's own `call_block`, and the block is ours
        // (`forget` keeps `Drop` from freeing it too).
        unsafe { ((*header).call)(header, argument) };
    }

    fn into_raw(self) -> *mut OnceHeader<A> {
        let header = self.header.as_ptr();
        core::mem::forget(self);
        header
    }

    /// # Safety
    /// `header` is non-null and came from [`into_raw`](Self::into_raw), and is owned by the caller.
    unsafe fn from_raw(header: *mut OnceHeader<A>) -> Self {
        // SAFETY: the caller's contract: non-null.
        let header = unsafe { core::ptr::NonNull::new_unchecked(header) };
        Self { header }
    }
}

impl<A> Drop for ThinOnce<A> {
    fn drop(&mut self) {
        let header = self.header.as_ptr();
        // SAFETY: the invariant: `drop` is the block's own `drop_block`; dropped once, here.
        unsafe { ((*header).drop)(header) };
    }
}

/// A [`TakeCell`] for a [`ThinOnce`]: one atomic pointer; all-zero bytes are the empty cell.
#[repr(transparent)]
pub(super) struct OnceCell<A> {
    // INVARIANT: null, or a pointer from `ThinOnce::into_raw` owned by the cell.
    ptr: core::sync::atomic::AtomicPtr<OnceHeader<A>>,
}

impl<A> OnceCell<A> {
    /// Stores `value`, dropping the closure it held before.
    pub(super) fn put(&self, value: ThinOnce<A>) {
        let old = self.ptr.swap(value.into_raw(), Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: `old` came from `ThinOnce::into_raw` (invariant) and the swap made it ours.
            drop(unsafe { ThinOnce::from_raw(old) });
        }
    }

    /// Takes the closure out, leaving the cell empty.
    pub(super) fn take(&self) -> Option<ThinOnce<A>> {
        let old = self.ptr.swap(core::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: non-null values come from `ThinOnce::into_raw` (invariant); the swap made it
        // ours.
        (!old.is_null()).then(|| unsafe { ThinOnce::from_raw(old) })
    }
}

impl<A> Drop for OnceCell<A> {
    fn drop(&mut self) {
        drop(self.take());
    }
}

/// A context type whose value is valid as all-zero bytes (atomics, null pointers, [`TakeCell`]s):
/// no initialisation step, so it also works for objects WDF creates itself (the requests it
/// presents, the file objects it opens). The destroy callback drops the value in place.
#[repr(C)]
pub(super) struct ZeroedContextType<T: 'static> {
    info: WDF_OBJECT_CONTEXT_TYPE_INFO,
    destroy: unsafe extern "C" fn(WDFOBJECT),
    _value: core::marker::PhantomData<fn() -> T>,
}

// SAFETY: as for `ContextType`: immutable after static initialisation, pointers to statics only.
unsafe impl<T> Sync for ZeroedContextType<T> {}

impl<T: 'static> ZeroedContextType<T> {
    /// Builds the type info, as [`ContextType::new`] does, for a context of exactly `T`.
    ///
    /// # Safety
    /// All-zero bytes must be a valid `T`.
    pub(super) const unsafe fn new(
        name: &'static core::ffi::CStr,
        unique: *const WDF_OBJECT_CONTEXT_TYPE_INFO,
        destroy: unsafe extern "C" fn(WDFOBJECT),
    ) -> Self {
        // SAFETY: integers, pointers and an optional callback.
        let mut info: WDF_OBJECT_CONTEXT_TYPE_INFO = unsafe { zeroed() };
        info.Size = structure_size::<WDF_OBJECT_CONTEXT_TYPE_INFO>();
        info.ContextName = name.as_ptr().cast();
        info.ContextSize = size_of::<T>();
        info.UniqueType = unique;
        Self {
            info,
            destroy,
            _value: core::marker::PhantomData,
        }
    }

    /// The `PCWDF_OBJECT_CONTEXT_TYPE_INFO`.
    pub(super) fn unique(&self) -> *const WDF_OBJECT_CONTEXT_TYPE_INFO {
        self.info.UniqueType
    }

    /// Attributes with this context and its destroy callback.
    pub(super) fn attributes(&'static self) -> WDF_OBJECT_ATTRIBUTES {
        let mut attributes = object_attributes_init();
        attributes.ContextTypeInfo = self.unique();
        attributes.EvtDestroyCallback = Some(self.destroy);
        attributes
    }

    /// The context of `object` (zeroed by WDF at creation, so always a valid `T`).
    ///
    /// # Safety
    /// `object` must be a live WDF object created with this context type; the reference must
    /// not outlive it.
    pub(super) unsafe fn get<'a>(&self, object: WDFOBJECT) -> Option<&'a T> {
        // SAFETY: forwarded; WDF returns the object's zero-initialised context of
        // `size_of::<T>()` bytes (all-zero is a valid `T`: `new`'s contract), aligned, or null.
        unsafe { self.get_ptr(object).as_ref() }
    }

    /// The context of `object` as a raw pointer (null if it has none).
    ///
    /// # Safety
    /// `object` must be a live WDF object created with this context type.
    pub(super) unsafe fn get_ptr(&self, object: WDFOBJECT) -> *mut T {
        // SAFETY: `object` is live (caller); the type info is static.
        let context = unsafe {
            call_unsafe_wdf_function_binding!(WdfObjectGetTypedContextWorker, object, self.unique())
        };
        context.cast::<T>()
    }
}

/// Declares a zero-valid context type (see [`ZeroedContextType`]).
macro_rules! zeroed_context_type {
    ($(#[$meta:meta])* $name:ident: $ty:ty = $cname:literal, $destroy:ident) => {
        $(#[$meta])*
        #[link_section = ".data"]
        // SAFETY: `new` needs all-zero bytes to be a valid `$ty`; the declaring module documents it.
        pub(super) static $name: $crate::platform::kmdf::wdf::ZeroedContextType<$ty> = unsafe {
            $crate::platform::kmdf::wdf::ZeroedContextType::new(
                $cname,
                core::ptr::addr_of!($name).cast::<wdk_sys::WDF_OBJECT_CONTEXT_TYPE_INFO>(),
                $destroy,
            )
        };

        /// `EvtDestroyCallback`: drops the context value in place.
        unsafe extern "C" fn $destroy(object: wdk_sys::WDFOBJECT) {
            // SAFETY: WDF calls the destroy callback once, when nothing else uses the object; the
            // context holds a valid value (zeroed or written since), dropped exactly once here.
            unsafe {
                let value = $name.get_ptr(object);
                if !value.is_null() {
                    core::ptr::drop_in_place(value);
                }
            }
        }
    };
}
pub(super) use zeroed_context_type;
