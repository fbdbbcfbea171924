//! The cost of the privileged-idiom emulation (docs/kmdf-host.md, "Privileged idioms").
//!
//! * `cr8 read, emulated`: `mov rax, cr8; ret` in image code — one SIGSEGV, decoded and carried
//!   out on kmdf-sim's IRQL;
//! * `KUSER_SHARED_DATA read, emulated`: `movabs rcx, 0xFFFFF78000000008; mov rax, [rcx]; ret` —
//!   one SIGSEGV (register redirected to the thread's copy, trap flag set) and one SIGTRAP;
//! * `KeGetCurrentIrql, host call` and `KeQueryInterruptTimePrecise, host call`: what the same
//!   reads cost if the driver called exported routines instead (the alternative: an NT layer that
//!   imports them), through the host's import table.

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod bench {
    use criterion::{black_box, Criterion};
    use kmdf_host::host::resolve;
    use kmdf_host::privileged::{ExecutableCode, KUSER_SHARED_DATA};
    use kmdf_sim::Machine;

    pub fn privileged(c: &mut Criterion) {
        let machine = Machine::new();
        let _bound = machine.enter();
        let mut g = c.benchmark_group("privileged");

        let cr8 = ExecutableCode::new(&[0x44, 0x0F, 0x20, 0xC0, 0xC3]);
        // SAFETY: `mov rax, cr8; ret`: no arguments, returns rax.
        let cr8: extern "win64" fn() -> u64 = unsafe { core::mem::transmute(cr8.address()) };
        g.bench_function("cr8 read, emulated", |b| b.iter(|| black_box(cr8())));

        let mut code = vec![0x48, 0xB9];
        code.extend_from_slice(&((KUSER_SHARED_DATA + 8) as u64).to_le_bytes());
        code.extend_from_slice(&[0x48, 0x8B, 0x01, 0xC3]);
        let kusd = ExecutableCode::new(&code);
        // SAFETY: `movabs rcx, KUSD+8; mov rax, [rcx]; ret`: no arguments, returns rax.
        let kusd: extern "win64" fn() -> u64 = unsafe { core::mem::transmute(kusd.address()) };
        g.bench_function("KUSER_SHARED_DATA read, emulated", |b| {
            b.iter(|| black_box(kusd()));
        });

        let irql = resolve("ntoskrnl.exe", "KeGetCurrentIrql").expect("exported");
        // SAFETY: the host's KeGetCurrentIrql: `KIRQL (void)`, Microsoft x64 convention.
        let irql: extern "win64" fn() -> u8 = unsafe { core::mem::transmute(irql) };
        g.bench_function("KeGetCurrentIrql, host call", |b| {
            b.iter(|| black_box(irql()));
        });

        let time = resolve("ntoskrnl.exe", "KeQueryInterruptTimePrecise").expect("exported");
        // SAFETY: the host's KeQueryInterruptTimePrecise: `ULONG64 (PULONG64)`.
        let time: extern "win64" fn(*mut u64) -> u64 = unsafe { core::mem::transmute(time) };
        g.bench_function("KeQueryInterruptTimePrecise, host call", |b| {
            let mut qpc = 0_u64;
            b.iter(|| black_box(time(&raw mut qpc)));
        });
        g.finish();
    }
}

/// What `criterion_group!` + `criterion_main!` expand to, written out (so the bench needs no
/// undocumented generated items).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn main() {
    let mut criterion = criterion::Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .configure_from_args();
    bench::privileged(&mut criterion);
    criterion.final_summary();
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn main() {}
