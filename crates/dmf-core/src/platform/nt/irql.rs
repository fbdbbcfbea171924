//! The current IRQL: `KeGetCurrentIrql`, the ntoskrnl.exe export.
//!
//! The x64 WDK headers implement `KeGetCurrentIrql` as an inline intrinsic that reads the CR8
//! register (the task-priority register, whose low four bits *are* the IRQL: `PASSIVE_LEVEL` 0,
//! `APC_LEVEL` 1, `DISPATCH_LEVEL` 2, device IRQLs above); ntoskrnl.exe also exports a
//! `KeGetCurrentIrql` routine, which windows-drivers-rs' `wdk-sys` binds. [`current_irql`] calls
//! the export: on Windows the call costs a few nanoseconds more than the one `mov`, which no
//! driver path can measure, and an image that runs on kmdf-host (a Linux process, where CR8 is
//! privileged) answers it with a plain function instead of a trapped and emulated instruction
//! (≈ 2.6 µs each, one per `PASSIVE_LEVEL` check before a wait). [`read_cr8`] stays for code
//! that wants the instruction itself.

use core::arch::asm;

use crate::platform::contract::{Irql, PlatformIrql};

/// A raw `KIRQL` (0‥15 on x64), as `KeAcquireSpinLockRaiseToDpc` returns it and
/// `KeReleaseSpinLock` takes it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct KIrql(pub u8);

impl KIrql {
    /// `PASSIVE_LEVEL`.
    pub const PASSIVE_LEVEL: KIrql = KIrql(0);
    /// `APC_LEVEL`.
    pub const APC_LEVEL: KIrql = KIrql(1);
    /// `DISPATCH_LEVEL`.
    pub const DISPATCH_LEVEL: KIrql = KIrql(2);

    /// The contract's [`Irql`]. Device IRQLs (above `DISPATCH_LEVEL`, only seen in interrupt
    /// service routines) are reported as [`Irql::Dispatch`], the highest level the contract names:
    /// every "must not block / must be at most X" rule that holds at `DISPATCH_LEVEL` holds there too.
    pub const fn to_irql(self) -> Irql {
        match self.0 {
            0 => Irql::Passive,
            1 => Irql::Apc,
            _ => Irql::Dispatch,
        }
    }
}

/// Reads CR8, the x64 task-priority register, which holds the current IRQL.
///
/// This is what the WDK's x64 `KeGetCurrentIrql` intrinsic compiles to (`mov rax, cr8`).
///
/// # Safety
/// The caller must run in kernel mode (CPL 0). In user mode the instruction is privileged and
/// raises a general-protection fault (`STATUS_PRIVILEGED_INSTRUCTION`).
#[inline]
pub unsafe fn read_cr8() -> u64 {
    let value: u64;
    // SAFETY: the caller guarantees CPL 0, where reading CR8 is allowed; the instruction reads a
    // register only — no memory, no stack, no flags.
    unsafe {
        asm!("mov {}, cr8", out(reg) value, options(nomem, nostack, preserves_flags));
    }
    value
}

/// The current IRQL. Maps to `KeGetCurrentIrql` (the ntoskrnl.exe export; see the module docs).
///
/// Callable at any IRQL.
#[inline]
pub fn current_irql() -> KIrql {
    // SAFETY: `KeGetCurrentIrql` takes no argument and may be called at any IRQL; the NT layer
    // runs only in kernel-mode images, where the import resolves (the premise of the `nt`
    // feature, see the module docs of `platform::nt`).
    KIrql(unsafe { super::ffi::KeGetCurrentIrql() })
}

/// The contract's IRQL item on the NT layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct NtCurrentIrql;

impl PlatformIrql for NtCurrentIrql {
    /// `KeGetCurrentIrql`, mapped onto the contract's three levels ([`KIrql::to_irql`]).
    fn current() -> Irql {
        current_irql().to_irql()
    }
}
