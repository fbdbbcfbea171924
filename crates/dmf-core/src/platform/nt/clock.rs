//! The interrupt-time clock: `KeQueryInterruptTime`, which on x64 is not an ntoskrnl export.
//!
//! The x64 WDK headers define `KeQueryInterruptTime()` as a volatile 64-bit read of
//! `KUSER_SHARED_DATA.InterruptTime` at its fixed kernel address `0xFFFFF78000000008`
//! (`KI_USER_SHARED_DATA` + 8). The kernel's clock interrupt updates that field; on x64 the low
//! part and the first high part (`LowPart`, `High1Time`) are written by one aligned 64-bit store,
//! so one aligned 64-bit load always sees a consistent value (the 32-bit loop that compares
//! `High1Time` with `High2Time` is only needed on x86). The value counts 100-ns units since boot,
//! includes time spent in sleep and hibernation (`KeQueryUnbiasedInterruptTime` would not), and
//! never goes backwards.
//!
//! (`KeQueryInterruptTimePrecise` is an export and more precise, but costs a call and a
//! timer read; the contract's clock only needs the tick-granular value.)

use core::time::Duration;

use crate::platform::contract::PlatformClock;

/// Kernel-mode address of `KUSER_SHARED_DATA.InterruptTime` on x64.
pub const KUSER_SHARED_DATA_INTERRUPT_TIME: usize = 0xFFFF_F780_0000_0008;

/// Nanoseconds per tick of the NT time base: interrupt time and `LARGE_INTEGER` intervals count
/// 100-ns units (a unit of the time base, not an enumerator the headers define).
pub(crate) const NANOSECONDS_PER_TICK: u64 = 100;

/// Interrupt time in 100-ns units since boot. Maps to `KeQueryInterruptTime`.
///
/// Callable at any IRQL.
#[inline]
pub fn interrupt_time() -> u64 {
    let field = core::ptr::with_exposed_provenance::<u64>(KUSER_SHARED_DATA_INTERRUPT_TIME);
    // SAFETY: in kernel mode (the premise of the `nt` feature) KUSER_SHARED_DATA is mapped
    // read-only at this fixed address in every x64 address space from early boot; the field is
    // 8-byte aligned and written by the kernel with single 64-bit stores, so a volatile 64-bit
    // load is valid and untorn. It is never a Rust allocation, so no Rust aliasing rule applies.
    unsafe { core::ptr::read_volatile(field) }
}

/// The contract's clock item on the NT layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct NtClock;

impl PlatformClock for NtClock {
    /// `KeQueryInterruptTime` as a [`Duration`] since boot.
    fn now() -> Duration {
        Duration::from_nanos(interrupt_time().saturating_mul(NANOSECONDS_PER_TICK))
    }
}
