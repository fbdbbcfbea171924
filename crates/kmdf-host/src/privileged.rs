//! The two privileged idioms of x64 kernel code, emulated for a user-mode process.
//!
//! Kernel code built with the WDK (and our NT layer, which does what the WDK's inline functions
//! do) uses two things a Linux process may not:
//!
//! * **CR8**, the task-priority register, which *is* the IRQL on x64: `KeGetCurrentIrql` is
//!   `mov rax, cr8`, and the WDK's inline `KeLowerIrql`/`KeRaiseIrql` write it (`mov cr8, rcx`).
//!   In user mode both raise a general-protection fault (`SIGSEGV`).
//! * **`KUSER_SHARED_DATA`** at `0xFFFFF780_00000000`: `KeQueryInterruptTime` is a 64-bit load of
//!   its `InterruptTime` field (+8). That address is in the kernel half, so the load page-faults
//!   (`SIGSEGV` with the address). The compiler folds the load into whatever instruction uses the
//!   value — our images read it with `mul qword ptr [rcx]` — so "recognise a `mov` and write its
//!   register" does not cover it.
//!
//! The emulation, in one `SIGSEGV` handler (installed once per process, chaining to the handler it
//! replaced for every fault it does not own, so Rust's stack-overflow report still works):
//!
//! * A fault whose instruction pointer is inside a loaded image ([`register_image_range`]) and
//!   whose bytes are `mov r64, cr8` / `mov cr8, r64` (`[REX] 0F 20|22 /r` with the REX.R bit or
//!   AMD's `LOCK` alias selecting CR8) is carried out on kmdf-sim's IRQL of the calling thread
//!   (the same per-thread IRQL `KeRaiseIrqlToDpcLevel` and the spin locks use: a read gives
//!   0/1/2, a write raises or lowers through kmdf-sim, so the verifier sees the transition), and
//!   the instruction pointer moves past it.
//! * A fault on an address in the `KUSER_SHARED_DATA` page, from an image: the handler refreshes a
//!   per-thread copy of the page (`InterruptTime` = the machine's virtual clock in 100-ns ticks,
//!   the unit of both), points every general register that holds an address in the real page at
//!   the same offset of the copy, sets the trap flag and resumes. The instruction — whatever it
//!   is — runs once against the copy; the `SIGTRAP` that follows puts back each substituted
//!   register the instruction did not overwrite and clears the trap flag. A `movabs` whose
//!   address is an immediate (`A1 moffs64`, no register to redirect) is emulated directly.
//!
//! * A fault of an image instruction with a `GS` segment prefix (`65`) while the thread's GS base
//!   is 0: x64 kernel code reaches the processor control region through GS — mingw-w64's headers
//!   inline `KeGetCurrentThread` (and so `PsGetCurrentThread`) as `mov rax, gs:[0x188]`, which
//!   C DMF uses to remember a lock's owner. The handler gives the thread its own zeroed `KPCR`
//!   page (`Self` and `CurrentThread` filled in, the thread a zeroed `KTHREAD`-sized block after
//!   it), sets the thread's GS base to it (`arch_prctl`; Linux x86_64 leaves GS to the program)
//!   and retries the instruction, which from then on runs at full speed. The exported
//!   `KeGetCurrentThread`/`PsGetCurrentThread` of [`crate::nt`] answer the same block.
//!
//! Everything else is not ours: the handler chains to the previous one (a default action then
//! ends the process as the fault would have).
//!
//! The handlers run ordinary host code (kmdf-sim's IRQL, the machine's clock, a small allocation).
//! That is sound here because the faults they handle are synchronous and raised by driver code,
//! which never runs inside the host's allocator or a kmdf-sim lock of its own thread: the handler
//! runs as if the driver had called a host routine at that instruction. The image-range table the
//! handler consults first is lock-free.
//!
//! Why emulation and not a change of the NT layer to exported routines: a C driver built with the
//! WDK inlines the same two idioms, so a host that runs "any KMDF image" has to handle them; the
//! shipped binary keeps its single-instruction IRQL read and clock read. The cost is a signal per
//! CR8 access and two per `KUSER_SHARED_DATA` read (see `benches/privileged.rs` and
//! docs/kmdf-host.md for the figures); our images do each only on rare paths (the IRQL check of a
//! wait, the clock of a timeout).

use core::cell::{Cell, RefCell};
use core::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use kmdf_sim::exec::{current_irql, lower_irql, raise_irql, Irql};
use kmdf_sim::Machine;

/// Kernel address of `KUSER_SHARED_DATA` on x64 (`KI_USER_SHARED_DATA`).
pub const KUSER_SHARED_DATA: usize = 0xFFFF_F780_0000_0000;
/// Offset of `InterruptTime` (a `KSYSTEM_TIME`: `LowPart`, `High1Time`, `High2Time`).
pub const INTERRUPT_TIME_OFFSET: usize = 0x8;
/// Offset of `SystemTime` (a `KSYSTEM_TIME`).
pub const SYSTEM_TIME_OFFSET: usize = 0x14;
/// Bytes of the page the copy holds.
const KUSD_PAGE: usize = 4096;
/// `EFLAGS.TF`, the trap flag.
const TRAP_FLAG: i64 = 0x100;

/// Slots of the image-range table (images loaded at the same time in one process).
const RANGE_SLOTS: usize = 64;

/// Code ranges of loaded images: (start, end) pairs, 0/0 when free. Lock-free so the signal
/// handler can read it whatever other threads are doing.
/// How many faults each emulation handled (CR8 accesses, `KUSER_SHARED_DATA` reads, first GS
/// accesses), for reports and benches.
static EMULATED: [AtomicUsize; 3] = [
    AtomicUsize::new(0),
    AtomicUsize::new(0),
    AtomicUsize::new(0),
];

/// The emulations so far in this process: (CR8 accesses, `KUSER_SHARED_DATA` reads, threads
/// given a processor block through a GS access).
pub fn emulated_counts() -> (usize, usize, usize) {
    (
        EMULATED[0].load(Ordering::Relaxed),
        EMULATED[1].load(Ordering::Relaxed),
        EMULATED[2].load(Ordering::Relaxed),
    )
}

static RANGES: [(AtomicUsize, AtomicUsize); RANGE_SLOTS] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; RANGE_SLOTS];

/// Which slot of [`RANGES`] an image holds; given back by [`unregister_image_range`].
#[derive(Debug)]
pub struct RangeToken(Option<usize>);

impl RangeToken {
    /// A token that holds no slot.
    pub fn none() -> Self {
        RangeToken(None)
    }
}

/// Registers `[start, start + len)` as driver code whose privileged instructions the host
/// emulates, and installs the handlers on first use.
///
/// # Panics
/// When [`RANGE_SLOTS`] images are already registered.
pub fn register_image_range(start: usize, len: usize) -> RangeToken {
    install();
    for (i, (s, e)) in RANGES.iter().enumerate() {
        if s.compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            e.store(start + len, Ordering::Release);
            return RangeToken(Some(i));
        }
    }
    panic!("kmdf-host: more than {RANGE_SLOTS} images loaded at once");
}

/// Forgets a range registered by [`register_image_range`].
pub fn unregister_image_range(token: &RangeToken) {
    if let Some(i) = token.0 {
        RANGES[i].1.store(0, Ordering::Release);
        RANGES[i].0.store(0, Ordering::Release);
    }
}

fn in_image(address: usize) -> bool {
    RANGES.iter().any(|(s, e)| {
        let start = s.load(Ordering::Acquire);
        let end = e.load(Ordering::Acquire);
        start != 0 && (start..end).contains(&address)
    })
}

/// A saved `sigaction`, to chain to.
struct Saved(libc::sigaction);
// SAFETY: written once under `INSTALL` before any reader, then only read; a `sigaction` is plain
// data (a handler address, a mask and flags).
unsafe impl Sync for Saved {}
// SAFETY: as above.
unsafe impl Send for Saved {}

static INSTALL: Once = Once::new();
static PREVIOUS_SEGV: std::sync::OnceLock<Saved> = std::sync::OnceLock::new();
static PREVIOUS_TRAP: std::sync::OnceLock<Saved> = std::sync::OnceLock::new();

/// Installs the `SIGSEGV` and `SIGTRAP` handlers (once per process; later calls do nothing).
pub fn install() {
    INSTALL.call_once(|| {
        let segv = set_handler(libc::SIGSEGV, on_sigsegv);
        let trap = set_handler(libc::SIGTRAP, on_sigtrap);
        let _ = PREVIOUS_SEGV.set(Saved(segv));
        let _ = PREVIOUS_TRAP.set(Saved(trap));
    });
}

type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

fn set_handler(signal: libc::c_int, handler: Handler) -> libc::sigaction {
    // SAFETY: `sigaction` is plain data; all-zero is a valid (empty) value of it.
    let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
    action.sa_sigaction = handler as usize;
    // SA_ONSTACK: run on the thread's alternate stack when it has one (Rust's threads do).
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: as above.
    let mut previous: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: both pointers are to live `sigaction` values; `handler` has the SA_SIGINFO
    // signature and stays valid for the life of the process.
    let rc = unsafe {
        libc::sigemptyset(&raw mut action.sa_mask);
        libc::sigaction(signal, &raw const action, &raw mut previous)
    };
    assert_eq!(rc, 0, "kmdf-host: sigaction({signal}) failed");
    previous
}

/// Calls the handler that was installed before ours, or restores the default action so the
/// faulting instruction, re-executed, ends the process as it would have without us.
fn chain(
    previous: Option<&Saved>,
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let Some(Saved(prev)) = previous else {
        reset_default(signal);
        return;
    };
    let handler = prev.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        reset_default(signal);
    } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed with SA_SIGINFO, so it has this signature;
        // it is called with the arguments the kernel gave us, as the kernel would have.
        let f: Handler = unsafe { core::mem::transmute::<usize, Handler>(handler) };
        f(signal, info, context);
    } else {
        // SAFETY: a handler installed without SA_SIGINFO takes the signal number only.
        let f: extern "C" fn(libc::c_int) =
            unsafe { core::mem::transmute::<usize, extern "C" fn(libc::c_int)>(handler) };
        f(signal);
    }
}

fn reset_default(signal: libc::c_int) {
    // SAFETY: as in `set_handler`; SIG_DFL needs no handler function.
    unsafe {
        let mut action: libc::sigaction = core::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&raw mut action.sa_mask);
        libc::sigaction(signal, &raw const action, core::ptr::null_mut());
    }
}

/// The general registers of a `ucontext_t`, by x86 register number (rax = 0 … r15 = 15).
const GREG_OF_REGISTER: [libc::c_int; 16] = [
    libc::REG_RAX,
    libc::REG_RCX,
    libc::REG_RDX,
    libc::REG_RBX,
    libc::REG_RSP,
    libc::REG_RBP,
    libc::REG_RSI,
    libc::REG_RDI,
    libc::REG_R8,
    libc::REG_R9,
    libc::REG_R10,
    libc::REG_R11,
    libc::REG_R12,
    libc::REG_R13,
    libc::REG_R14,
    libc::REG_R15,
];

/// A decoded CR8 access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cr8Access {
    /// `mov r64, cr8` into register number `reg`.
    Read {
        /// x86 register number (rax = 0 … r15 = 15).
        reg: usize,
        /// Instruction length in bytes.
        len: usize,
    },
    /// `mov cr8, r64` from register number `reg`.
    Write {
        /// x86 register number.
        reg: usize,
        /// Instruction length in bytes.
        len: usize,
    },
}

/// Decodes `mov r64, cr8` / `mov cr8, r64` at the start of `code`: optional `F0` (AMD's
/// alternative encoding of CR8), optional REX, `0F 20` (read) or `0F 22` (write), ModRM. The
/// control register is ModRM.reg + 8·REX.R (+ 8 with the `LOCK` form); ModRM.rm + 8·REX.B is the
/// general register (the `mod` bits are ignored, as the processor ignores them).
pub fn decode_cr8(code: &[u8]) -> Option<Cr8Access> {
    let mut i = 0;
    let mut lock = false;
    if code.first() == Some(&0xF0) {
        lock = true;
        i += 1;
    }
    let mut rex = 0_u8;
    if let Some(&b) = code.get(i) {
        if (0x40..=0x4F).contains(&b) {
            rex = b;
            i += 1;
        }
    }
    if code.get(i) != Some(&0x0F) {
        return None;
    }
    let write = match code.get(i + 1) {
        Some(0x20) => false,
        Some(0x22) => true,
        _ => return None,
    };
    let modrm = *code.get(i + 2)?;
    let cr = usize::from((modrm >> 3) & 7) + if rex & 0x4 != 0 { 8 } else { 0 };
    let cr = cr + if lock { 8 } else { 0 };
    if cr != 8 {
        return None;
    }
    let reg = usize::from(modrm & 7) + if rex & 0x1 != 0 { 8 } else { 0 };
    let len = i + 3;
    Some(if write {
        Cr8Access::Write { reg, len }
    } else {
        Cr8Access::Read { reg, len }
    })
}

fn irql_from_cr8(value: u64) -> Irql {
    match value & 0xF {
        0 => Irql::Passive,
        1 => Irql::Apc,
        _ => Irql::Dispatch,
    }
}

/// Registers substituted for one `KUSER_SHARED_DATA` access, restored by the `SIGTRAP`.
#[derive(Clone, Copy)]
struct Substitution {
    greg: libc::c_int,
    original: i64,
    substituted: i64,
}

/// `arch_prctl` codes of Linux's `asm/prctl.h`.
const ARCH_SET_GS: libc::c_int = 0x1001;
const ARCH_GET_GS: libc::c_int = 0x1004;
/// The per-thread block GS points at: a `KPCR` page, then the thread's `KTHREAD` stand-in.
const PCR_BLOCK: usize = 0x2000;
/// `KPCR.Self` (x64: the `NT_TIB.Self` slot of the `KPCR` union).
const PCR_SELF: usize = 0x18;
/// `KPCR.CurrentPrcb`.
const PCR_CURRENT_PRCB: usize = 0x20;
/// `KPCR.Prcb`, the embedded `KPRCB`: right after the 0x180-byte public `KPCR`.
const PCR_PRCB: usize = 0x180;
/// `KPRCB.CurrentThread`: mingw-w64's `wdm.h` inlines `KeGetCurrentThread` as
/// `__readgsqword(0x188)`.
const PCR_CURRENT_THREAD: usize = 0x188;

/// A fresh zeroed read-write anonymous mapping of `len` bytes (mmap is async-signal-safe, so the
/// handlers may call this).
fn map_zeroed(len: usize) -> Option<*mut u8> {
    // SAFETY: a fresh anonymous private mapping that overlaps nothing; checked below.
    let raw = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    (raw != libc::MAP_FAILED).then_some(raw.cast())
}

/// This thread's processor-control block (mapped on first use, unmapped when the thread ends).
struct PcrBlock(Cell<*mut u8>);

impl PcrBlock {
    fn block(&self) -> Option<*mut u8> {
        let p = self.0.get();
        if !p.is_null() {
            return Some(p);
        }
        let block = map_zeroed(PCR_BLOCK)?;
        // SAFETY: the three slots lie inside the fresh, writable block.
        unsafe {
            block
                .add(PCR_SELF)
                .cast::<usize>()
                .write_unaligned(block as usize);
            block
                .add(PCR_CURRENT_PRCB)
                .cast::<usize>()
                .write_unaligned(block as usize + PCR_PRCB);
            block
                .add(PCR_CURRENT_THREAD)
                .cast::<usize>()
                .write_unaligned(block as usize + PCR_BLOCK / 2);
        }
        self.0.set(block);
        Some(block)
    }
}

impl Drop for PcrBlock {
    fn drop(&mut self) {
        let p = self.0.get();
        if !p.is_null() {
            // SAFETY: the thread is ending: its GS base goes back to 0 and nothing of it runs
            // driver code any more; `p` is the block this thread mapped.
            unsafe {
                libc::syscall(libc::SYS_arch_prctl, ARCH_SET_GS, 0_usize);
                libc::munmap(p.cast(), PCR_BLOCK);
            }
        }
    }
}

/// The calling thread's `KTHREAD` stand-in (`KeGetCurrentThread`): a zeroed block, one per
/// thread, the same address the GS-relative read of an image returns on this thread.
pub fn current_thread() -> usize {
    PCR.with(PcrBlock::block)
        .map_or(0, |block| block as usize + PCR_BLOCK / 2)
}

/// The thread's GS base.
fn gs_base() -> usize {
    let mut base = 0_usize;
    // SAFETY: ARCH_GET_GS writes the base to the address given, a live local.
    let rc = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_GET_GS, &raw mut base) };
    if rc == 0 {
        base
    } else {
        usize::MAX
    }
}

/// Whether the instruction's legacy prefixes include the GS segment override (`65`).
pub fn has_gs_prefix(code: &[u8]) -> bool {
    code.iter()
        .take_while(|b| {
            matches!(
                b,
                0xF0 | 0xF2 | 0xF3 | 0x2E | 0x36 | 0x3E | 0x26 | 0x64 | 0x65 | 0x66 | 0x67
            )
        })
        .any(|b| *b == 0x65)
}

thread_local! {
    static PCR: PcrBlock = const { PcrBlock(Cell::new(core::ptr::null_mut())) };
    static PENDING: RefCell<Vec<Substitution>> = const { RefCell::new(Vec::new()) };
    static COPY: KusdCopy = const { KusdCopy(Cell::new(core::ptr::null_mut())) };
}

/// This thread's copy of the `KUSER_SHARED_DATA` page (mapped on first use, unmapped when the
/// thread ends).
struct KusdCopy(Cell<*mut u8>);

impl KusdCopy {
    fn page(&self) -> Option<*mut u8> {
        let p = self.0.get();
        if !p.is_null() {
            return Some(p);
        }
        let page = map_zeroed(KUSD_PAGE)?;
        self.0.set(page);
        Some(page)
    }
}

impl Drop for KusdCopy {
    fn drop(&mut self) {
        let p = self.0.get();
        if !p.is_null() {
            // SAFETY: `p` is the page this thread mapped in `page`; the thread is ending, so no
            // substituted register of it can point there any more.
            unsafe {
                libc::munmap(p.cast(), KUSD_PAGE);
            }
        }
    }
}

/// Writes a `KSYSTEM_TIME` (`LowPart`, `High1Time`, `High2Time`) at `at` of the copy.
///
/// # Safety
/// `page` is this thread's live copy; `at + 12 <= KUSD_PAGE`.
unsafe fn write_system_time(page: *mut u8, at: usize, value: u64) {
    let low = (value & 0xFFFF_FFFF) as u32;
    let high = (value >> 32) as u32;
    // SAFETY: inside the page (caller); unaligned writes are allowed by `write_unaligned`.
    unsafe {
        page.add(at).cast::<u32>().write_unaligned(low);
        page.add(at + 4).cast::<u32>().write_unaligned(high);
        page.add(at + 8).cast::<u32>().write_unaligned(high);
    }
}

/// The interrupt time a `KUSER_SHARED_DATA` read sees: the calling thread's machine's virtual
/// clock (100-ns ticks since boot), 0 on a thread bound to no machine.
pub fn interrupt_time() -> u64 {
    Machine::current().map_or(0, |m| m.now_ticks())
}

/// Refreshes this thread's copy and returns its address.
fn refresh_copy() -> Option<*mut u8> {
    let page = COPY.with(KusdCopy::page)?;
    let now = interrupt_time();
    // SAFETY: `page` is this thread's live copy, both fields lie inside it.
    unsafe {
        write_system_time(page, INTERRUPT_TIME_OFFSET, now);
        write_system_time(page, SYSTEM_TIME_OFFSET, now);
    }
    Some(page)
}

/// The general registers of `context`.
///
/// # Safety
/// `context` is the `ucontext_t` the kernel passed to a signal handler running now.
unsafe fn gregs<'a>(context: *mut libc::c_void) -> &'a mut [libc::greg_t; 23] {
    // SAFETY: the caller's contract; the handler has exclusive use of its context.
    unsafe { &mut (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs }
}

extern "C" fn on_sigsegv(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // A panic must not unwind out of a signal handler: `guard` turns it into a stop of the run
    // (a kmdf-sim bug check in Panic mode, e.g. an invalid IRQL transition through CR8).
    let handled = crate::host::guard("the privileged-instruction emulation", || {
        // SAFETY: the kernel passes a valid `siginfo_t` and `ucontext_t` to an SA_SIGINFO handler.
        unsafe { emulate_fault(info, context) }
    });
    if !handled {
        chain(PREVIOUS_SEGV.get(), signal, info, context);
    }
}

/// Emulates the fault if it is one of ours; false to chain.
///
/// # Safety
/// `info` and `context` are the live arguments of a `SIGSEGV` handler on this thread.
unsafe fn emulate_fault(info: *mut libc::siginfo_t, context: *mut libc::c_void) -> bool {
    // SAFETY: the caller's contract.
    let regs = unsafe { gregs(context) };
    let rip = regs[libc::REG_RIP as usize] as usize;
    if !in_image(rip) {
        return false;
    }
    // SAFETY: `rip` lies in a registered, mapped image whose code pages are readable; an
    // instruction is at most 15 bytes, and a shorter tail at the end of the image is clamped by
    // `code_at`.
    let code = unsafe { code_at(rip) };
    if let Some(access) = decode_cr8(code) {
        EMULATED[0].fetch_add(1, Ordering::Relaxed);
        match access {
            Cr8Access::Read { reg, len } => {
                regs[GREG_OF_REGISTER[reg] as usize] = current_irql() as i64;
                regs[libc::REG_RIP as usize] += len as i64;
            }
            Cr8Access::Write { reg, len } => {
                let new = irql_from_cr8(regs[GREG_OF_REGISTER[reg] as usize] as u64);
                if new >= current_irql() {
                    raise_irql(new);
                } else {
                    lower_irql(new);
                }
                regs[libc::REG_RIP as usize] += len as i64;
            }
        }
        return true;
    }
    if has_gs_prefix(code) {
        // A GS-relative access before the thread has its processor block: give it one and
        // retry. With GS set, a fault is not ours.
        if gs_base() != 0 {
            return false;
        }
        let Some(block) = PCR.with(PcrBlock::block) else {
            return false;
        };
        // SAFETY: sets this thread's GS base (the Linux x86_64 ABI leaves GS unused) to the
        // block just mapped, which lives until the thread ends.
        let rc = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SET_GS, block as usize) };
        EMULATED[2].fetch_add(1, Ordering::Relaxed);
        return rc == 0;
    }
    // SAFETY: a SIGSEGV's siginfo carries the faulting address (0 for a general-protection fault).
    let address = unsafe { (*info).si_addr() } as usize;
    if !(KUSER_SHARED_DATA..KUSER_SHARED_DATA + KUSD_PAGE).contains(&address) {
        return false;
    }
    let Some(copy) = refresh_copy() else {
        return false;
    };
    EMULATED[1].fetch_add(1, Ordering::Relaxed);
    // `movabs rax/eax, [moffs64]`: the address is an immediate; emulate the load.
    if let Some((width, len)) = decode_moffs_load(code) {
        let offset = address - KUSER_SHARED_DATA;
        if offset + width > KUSD_PAGE {
            return false;
        }
        // SAFETY: `offset + width` lies inside this thread's copy.
        let value = unsafe {
            if width == 8 {
                copy.add(offset).cast::<u64>().read_unaligned()
            } else {
                u64::from(copy.add(offset).cast::<u32>().read_unaligned())
            }
        };
        regs[libc::REG_RAX as usize] = value as i64;
        regs[libc::REG_RIP as usize] += len as i64;
        return true;
    }
    let mut substituted = Vec::new();
    for (number, &greg) in GREG_OF_REGISTER.iter().enumerate() {
        if number == 4 {
            continue; // rsp never holds it
        }
        let value = regs[greg as usize] as usize;
        if (KUSER_SHARED_DATA..=KUSER_SHARED_DATA + KUSD_PAGE).contains(&value) {
            let new = (copy as usize + (value - KUSER_SHARED_DATA)) as i64;
            substituted.push(Substitution {
                greg,
                original: value as i64,
                substituted: new,
            });
            regs[greg as usize] = new;
        }
    }
    if substituted.is_empty() {
        return false;
    }
    PENDING.with(|p| *p.borrow_mut() = substituted);
    regs[libc::REG_EFL as usize] |= TRAP_FLAG;
    true
}

/// The bytes at `rip` (at most 15, fewer at the end of the image).
///
/// # Safety
/// `rip` lies inside a registered image's mapping.
unsafe fn code_at<'a>(rip: usize) -> &'a [u8] {
    let end = RANGES
        .iter()
        .map(|(s, e)| (s.load(Ordering::Acquire), e.load(Ordering::Acquire)))
        .find(|(s, e)| *s != 0 && (*s..*e).contains(&rip))
        .map_or(rip, |(_, e)| e);
    let len = (end - rip).min(15);
    // SAFETY: `rip..rip + len` lies inside the image (clamped to its end); its code is readable.
    unsafe { core::slice::from_raw_parts(rip as *const u8, len) }
}

/// `[REX.W] A1 moffs64`: a load of rax (8 bytes with REX.W, else eax) from an immediate address.
fn decode_moffs_load(code: &[u8]) -> Option<(usize, usize)> {
    match code {
        [0x48, 0xA1, ..] if code.len() >= 10 => Some((8, 10)),
        [0xA1, ..] if code.len() >= 9 => Some((4, 9)),
        _ => None,
    }
}

extern "C" fn on_sigtrap(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let pending = PENDING.with(|p| core::mem::take(&mut *p.borrow_mut()));
    if pending.is_empty() {
        chain(PREVIOUS_TRAP.get(), signal, info, context);
        return;
    }
    // SAFETY: the kernel passes a valid `ucontext_t` to an SA_SIGINFO handler.
    let regs = unsafe { gregs(context) };
    for s in pending {
        // A register the instruction wrote keeps what it wrote.
        if regs[s.greg as usize] == s.substituted {
            regs[s.greg as usize] = s.original;
        }
    }
    regs[libc::REG_EFL as usize] &= !TRAP_FLAG;
}

/// A few bytes of machine code in an executable mapping registered as image code: what the
/// tests and the bench run the emulation on.
#[derive(Debug)]
pub struct ExecutableCode {
    // INVARIANT: a live mapping of `len` bytes owned by this value, readable and executable.
    base: *mut u8,
    len: usize,
    range: RangeToken,
}

// SAFETY: read-only executable memory with no thread affinity.
unsafe impl Send for ExecutableCode {}
// SAFETY: as above; nothing mutates it after `new`.
unsafe impl Sync for ExecutableCode {}

impl ExecutableCode {
    /// Maps `code` executable and registers it as image code.
    ///
    /// # Panics
    /// When the system refuses the mapping.
    pub fn new(code: &[u8]) -> Self {
        let len = code.len().div_ceil(KUSD_PAGE).max(1) * KUSD_PAGE;
        // SAFETY: a fresh anonymous private mapping; checked below.
        let raw = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(raw, libc::MAP_FAILED, "mmap of a code page failed");
        let base = raw.cast::<u8>();
        // SAFETY: `code.len() <= len` bytes of the fresh writable mapping; then the whole mapping
        // becomes read + execute (no reference into it is live).
        unsafe {
            core::ptr::copy_nonoverlapping(code.as_ptr(), base, code.len());
            assert_eq!(
                libc::mprotect(raw, len, libc::PROT_READ | libc::PROT_EXEC),
                0,
                "mprotect of a code page failed"
            );
        }
        let range = register_image_range(base as usize, len);
        ExecutableCode { base, len, range }
    }

    /// The code's address (to transmute into the function type it implements).
    pub fn address(&self) -> usize {
        self.base as usize
    }
}

impl Drop for ExecutableCode {
    fn drop(&mut self) {
        unregister_image_range(&self.range);
        // SAFETY: the mapping this value owns; no caller can still run it (they borrowed `self`).
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmdf_sim::exec::IrqlGuard;
    use std::time::Duration;

    #[test]
    fn gs_relative_reads_see_the_thread_block() {
        install();
        // mov rax, gs:[0x188]; ret
        let read =
            ExecutableCode::new(&[0x65, 0x48, 0x8B, 0x04, 0x25, 0x88, 0x01, 0x00, 0x00, 0xC3]);
        // SAFETY: the bytes above are a complete function returning rax.
        let f: extern "win64" fn() -> usize = unsafe { core::mem::transmute(read.address()) };
        // Two threads at once (a block is unmapped when its thread ends, and may be reused).
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let run = |barrier: std::sync::Arc<std::sync::Barrier>| {
            std::thread::spawn(move || {
                let seen = (f(), f(), current_thread());
                barrier.wait();
                seen
            })
        };
        let (a, b) = (run(barrier.clone()), run(barrier));
        let (first, second) = (a.join().unwrap(), b.join().unwrap());
        assert_ne!(first.0, 0);
        assert_eq!(first.0, first.1, "the same thread block each time");
        assert_eq!(first.0, first.2, "the export answers the same block");
        assert_ne!(first.0, second.0, "one block per thread");
        assert!(has_gs_prefix(&[0xF0, 0x65, 0x48]));
        assert!(!has_gs_prefix(&[0x48, 0x65]));
    }

    #[test]
    fn decodes_cr8_forms() {
        // mov rax, cr8
        assert_eq!(
            decode_cr8(&[0x44, 0x0F, 0x20, 0xC0]),
            Some(Cr8Access::Read { reg: 0, len: 4 })
        );
        // mov r9, cr8
        assert_eq!(
            decode_cr8(&[0x45, 0x0F, 0x20, 0xC1]),
            Some(Cr8Access::Read { reg: 9, len: 4 })
        );
        // mov cr8, rcx
        assert_eq!(
            decode_cr8(&[0x44, 0x0F, 0x22, 0xC1]),
            Some(Cr8Access::Write { reg: 1, len: 4 })
        );
        // AMD's lock form: lock mov rax, cr0 = mov rax, cr8
        assert_eq!(
            decode_cr8(&[0xF0, 0x0F, 0x20, 0xC0]),
            Some(Cr8Access::Read { reg: 0, len: 4 })
        );
        // mov rax, cr3 is not emulated
        assert_eq!(decode_cr8(&[0x0F, 0x20, 0xD8]), None);
        assert_eq!(decode_cr8(&[0x44, 0x0F]), None);
    }

    #[test]
    fn cr8_reads_and_writes_follow_the_thread_irql() {
        // mov rax, cr8; ret
        let read = ExecutableCode::new(&[0x44, 0x0F, 0x20, 0xC0, 0xC3]);
        // SAFETY: the code above takes no arguments and returns rax.
        let read: extern "win64" fn() -> u64 = unsafe { core::mem::transmute(read.address()) };
        // mov cr8, rcx; ret
        let write = ExecutableCode::new(&[0x44, 0x0F, 0x22, 0xC1, 0xC3]);
        // SAFETY: the code above takes its argument in rcx and returns nothing.
        let write: extern "win64" fn(u64) = unsafe { core::mem::transmute(write.address()) };
        assert_eq!(read(), 0);
        {
            let _g = IrqlGuard::raise(Irql::Dispatch);
            assert_eq!(read(), 2);
        }
        assert_eq!(current_irql(), Irql::Passive);
        write(2);
        assert_eq!(current_irql(), Irql::Dispatch);
        assert_eq!(read(), 2);
        write(0);
        assert_eq!(current_irql(), Irql::Passive);
    }

    #[test]
    fn kuser_shared_data_reads_see_the_virtual_clock() {
        let machine = Machine::new();
        let _bound = machine.enter();
        machine.advance(Duration::from_millis(1500));
        // movabs rcx, 0xFFFFF78000000008; mov rax, [rcx]; ret
        let mut load = vec![0x48, 0xB9];
        load.extend_from_slice(&((KUSER_SHARED_DATA + 8) as u64).to_le_bytes());
        load.extend_from_slice(&[0x48, 0x8B, 0x01, 0xC3]);
        let load = ExecutableCode::new(&load);
        // SAFETY: no arguments, returns rax.
        let load: extern "win64" fn() -> u64 = unsafe { core::mem::transmute(load.address()) };
        assert_eq!(load(), 15_000_000);
        // What our images do: movabs rdx, KUSD+8; mov eax, 100; mul qword ptr [rdx]; ret
        // (mul writes rdx: the substituted base register must keep the product's high half).
        let mut mul = vec![0x48, 0xBA];
        mul.extend_from_slice(&((KUSER_SHARED_DATA + 8) as u64).to_le_bytes());
        mul.extend_from_slice(&[0xB8, 100, 0, 0, 0, 0x48, 0xF7, 0x22, 0x48, 0x89, 0xD1, 0xC3]);
        // (mov rcx, rdx before ret is only there so the high half is observable: unused here)
        let mul = ExecutableCode::new(&mul);
        // SAFETY: no arguments, returns rax.
        let mul: extern "win64" fn() -> u64 = unsafe { core::mem::transmute(mul.address()) };
        machine.advance(Duration::from_millis(500));
        assert_eq!(mul(), 20_000_000 * 100);
        // movabs rax, [KUSD+8]; ret
        let mut moffs = vec![0x48, 0xA1];
        moffs.extend_from_slice(&((KUSER_SHARED_DATA + 8) as u64).to_le_bytes());
        moffs.push(0xC3);
        let moffs = ExecutableCode::new(&moffs);
        // SAFETY: no arguments, returns rax.
        let moffs: extern "win64" fn() -> u64 = unsafe { core::mem::transmute(moffs.address()) };
        assert_eq!(moffs(), 20_000_000);
    }

    #[test]
    fn a_register_keeps_its_kernel_address_after_the_read() {
        let machine = Machine::new();
        let _bound = machine.enter();
        // movabs rcx, KUSD+8; mov rax, [rcx]; mov rax, rcx; ret  → returns rcx after the load
        let mut code = vec![0x48, 0xB9];
        code.extend_from_slice(&((KUSER_SHARED_DATA + 8) as u64).to_le_bytes());
        code.extend_from_slice(&[0x48, 0x8B, 0x01, 0x48, 0x89, 0xC8, 0xC3]);
        let code = ExecutableCode::new(&code);
        // SAFETY: no arguments, returns rax.
        let f: extern "win64" fn() -> u64 = unsafe { core::mem::transmute(code.address()) };
        assert_eq!(f(), (KUSER_SHARED_DATA + 8) as u64);
    }
}
