//! Compile-time pins of the numbers dmf-core writes by hand outside this backend, against the
//! generated wdk-sys items.
//!
//! Two parts of dmf-core cannot name wdk-sys and so keep their own copies of WDK values:
//! - `crate::status`: the [`NtStatus`] constants (platform-independent code, invariant 2), copied
//!   from `ntstatus.h`;
//! - `platform::nt`: the NT layer's hand declarations (`nt/ffi.rs`), which the standalone WDM
//!   kernel image builds without any WDK.
//!
//! Whenever the kmdf backend is compiled, every one of those values and layouts is compared here
//! with the bindings generated from the WDK headers; a difference is a compile error that names
//! the item. (The assertions live in the backend, not in `platform/nt/`, because only the backend
//! may name wdk-sys: invariant 2.)

use core::mem::{offset_of, size_of};

use static_assertions::{assert_eq_align, assert_eq_size, assert_type_eq_all, const_assert_eq};
use wdk_sys::{_DPFLTR_TYPE, _EVENT_TYPE, _KWAIT_REASON, _MODE};

use crate::platform::contract::TraceLevel;
use crate::platform::nt::{self, ffi, KIrql};
use crate::status::NtStatus;

// ---------------------------------------------------------------------------------------------
// NtStatus: every named constant equals the headers' STATUS_… value.
// ---------------------------------------------------------------------------------------------

/// One `const` assertion per named status; its message names the status.
macro_rules! pin_nt_statuses {
    ($( ($name:ident, $cname:ident) )*) => {
        $(
            const _: () = assert!(
                NtStatus::$name.to_raw() == wdk_sys::$cname,
                concat!(
                    stringify!($cname),
                    " differs between dmf-core (status.rs) and the KMDF headers"
                )
            );
        )*
    };
}

crate::status::for_each_nt_status!(pin_nt_statuses);

// ---------------------------------------------------------------------------------------------
// The NT layer (`platform/nt/ffi.rs` and the constants of its modules).
// ---------------------------------------------------------------------------------------------

// Layouts: EX_RUNDOWN_REF, KEVENT, KSPIN_LOCK.
assert_eq_size!(ffi::ExRundownRef, wdk_sys::EX_RUNDOWN_REF);
assert_eq_align!(ffi::ExRundownRef, wdk_sys::EX_RUNDOWN_REF);
assert_eq_size!(ffi::KEvent, wdk_sys::KEVENT);
assert_eq_align!(ffi::KEvent, wdk_sys::KEVENT);
assert_eq_size!(ffi::KSpinLock, wdk_sys::KSPIN_LOCK);
assert_eq_align!(ffi::KSpinLock, wdk_sys::KSPIN_LOCK);

// Enumerators: EVENT_TYPE, KWAIT_REASON, KPROCESSOR_MODE.
const_assert_eq!(ffi::NOTIFICATION_EVENT, _EVENT_TYPE::NotificationEvent);
const_assert_eq!(
    ffi::SYNCHRONIZATION_EVENT,
    _EVENT_TYPE::SynchronizationEvent
);
const_assert_eq!(ffi::EXECUTIVE, _KWAIT_REASON::Executive);
const_assert_eq!(ffi::KERNEL_MODE as i32, _MODE::KernelMode);
assert_type_eq_all!(i8, wdk_sys::KPROCESSOR_MODE);

// IO_NO_INCREMENT (a KPRIORITY), STATUS_TIMEOUT.
const_assert_eq!(ffi::IO_NO_INCREMENT as i64, wdk_sys::IO_NO_INCREMENT as i64);
assert_type_eq_all!(i32, wdk_sys::KPRIORITY);
const_assert_eq!(ffi::STATUS_TIMEOUT, wdk_sys::STATUS_TIMEOUT);

// Pool: POOL_FLAGS bits, MEMORY_ALLOCATION_ALIGNMENT.
const_assert_eq!(
    ffi::POOL_FLAG_UNINITIALIZED,
    wdk_sys::POOL_FLAG_UNINITIALIZED
);
const_assert_eq!(ffi::POOL_FLAG_NON_PAGED, wdk_sys::POOL_FLAG_NON_PAGED);
assert_type_eq_all!(u64, wdk_sys::POOL_FLAGS);
const_assert_eq!(
    nt::POOL_ALIGNMENT as u64,
    wdk_sys::MEMORY_ALLOCATION_ALIGNMENT as u64
);

// DbgPrintEx: the component and the levels `dpfltr_level` maps the contract's levels to.
const_assert_eq!(
    ffi::DPFLTR_IHVDRIVER_ID as i64,
    _DPFLTR_TYPE::DPFLTR_IHVDRIVER_ID as i64
);
const_assert_eq!(
    nt::dpfltr_level(TraceLevel::Error),
    wdk_sys::DPFLTR_ERROR_LEVEL
);
const_assert_eq!(
    nt::dpfltr_level(TraceLevel::Warning),
    wdk_sys::DPFLTR_WARNING_LEVEL
);
const_assert_eq!(
    nt::dpfltr_level(TraceLevel::Information),
    wdk_sys::DPFLTR_TRACE_LEVEL
);
const_assert_eq!(
    nt::dpfltr_level(TraceLevel::Verbose),
    wdk_sys::DPFLTR_INFO_LEVEL
);

// IRQLs (KIRQL is a UCHAR).
const_assert_eq!(KIrql::PASSIVE_LEVEL.0 as u32, wdk_sys::PASSIVE_LEVEL);
const_assert_eq!(KIrql::APC_LEVEL.0 as u32, wdk_sys::APC_LEVEL);
const_assert_eq!(KIrql::DISPATCH_LEVEL.0 as u32, wdk_sys::DISPATCH_LEVEL);
assert_type_eq_all!(u8, wdk_sys::KIRQL);

// KeQueryInterruptTime's field: KI_USER_SHARED_DATA + offsetof(KUSER_SHARED_DATA, InterruptTime),
// whose first eight bytes are LowPart and High1Time (the one 64-bit load of `nt::interrupt_time`).
const_assert_eq!(
    nt::KUSER_SHARED_DATA_INTERRUPT_TIME as u64,
    wdk_sys::KI_USER_SHARED_DATA.cast_unsigned()
        + offset_of!(wdk_sys::KUSER_SHARED_DATA, InterruptTime) as u64
);
const_assert_eq!(offset_of!(wdk_sys::KSYSTEM_TIME, LowPart), 0);
const_assert_eq!(
    offset_of!(wdk_sys::KSYSTEM_TIME, High1Time),
    size_of::<wdk_sys::ULONG>()
);
