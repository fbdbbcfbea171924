//! The current IRQL: `KeGetCurrentIrql`, read the way the x64 WDK inlines it.
//!
//! The x64 WDK headers implement `KeGetCurrentIrql` as an inline intrinsic that reads the CR8
//! register (the task-priority register, whose low four bits *are* the IRQL: `PASSIVE_LEVEL` 0,
//! `APC_LEVEL` 1, `DISPATCH_LEVEL` 2, device IRQLs above). This module reads CR8 the same way,
//! with one `mov` instruction, as every C driver built with the WDK does. (ntoskrnl.exe also
//! exports a `KeGetCurrentIrql` routine, which a driver could import instead at the cost of a
//! call; kmdf-host, which runs linked images in a Linux process, emulates the CR8 read.)

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

/// The current IRQL. Maps to `KeGetCurrentIrql` (the x64 CR8 read, see [`read_cr8`]).
///
/// Callable at any IRQL.
#[inline]
pub fn current_irql() -> KIrql {
    // SAFETY: the NT layer runs only in kernel-mode images (the premise of the `nt` feature, see
    // the module docs of `platform::nt`), so this executes at CPL 0.
    let cr8 = unsafe { read_cr8() };
    // CR8 bits 63:4 are reserved and read as zero; the IRQL is bits 3:0.
    KIrql((cr8 & 0xF) as u8)
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
