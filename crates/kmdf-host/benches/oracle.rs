//! Costs, C DMF image vs ours, in the same criterion run (docs/cdmf-oracle.md, "Costs"):
//!
//! * `ioctl through the filter`: an administrator application's `IOCTL_OSRUSBFX2_READ_SWITCHES`
//!   through the upper filter to the FX2 driver and back (both filters pass it down) — C DMF's
//!   SwitchBar4 vs our `osrfx2_filter.sys`;
//! * `switch change mirrored`: one switch flipped on the board until the machine is idle again
//!   (the interrupt message, the driver's read of the switches and its write of the light bar) —
//!   C DMF's SwitchBar vs our `switchbar.sys`;
//! * `start and removal`: a second SwitchBar device node plugged in (AddDevice, PrepareHardware,
//!   D0Entry, the Module tree opening on the present FX2 interface) and removed again, the
//!   driver staying loaded for the first node — C DMF's SwitchBar vs our `switchbar.sys`.
//!
//! Each is measured twice: in wall time (criterion's default) and in the process's CPU time
//! (every thread's, `CLOCK_PROCESS_CPUTIME_ID`; the groups named `… (CPU time)`). A flip is a
//! handful of hand-offs between the simulator's threads, so its wall time moves with whatever
//! else the machine runs; the CPU time is the work both drivers cause, and moves far less.
//!
//! Skipped (with a line saying so) when the images are absent: `bash .ci/kmdf-check` builds
//! them.

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod bench {
    use std::path::PathBuf;

    use criterion::measurement::Measurement;
    use criterion::{black_box, Criterion};
    use kmdf_host::host::Driver;
    use kmdf_sim::fx2::driver as fx2;
    use kmdf_sim::fx2::ioctl::IOCTL_OSRUSBFX2_READ_SWITCHES;
    use kmdf_sim::fx2::{Fx2Board, GUID_DEVINTERFACE_OSRUSBFX2};
    use kmdf_sim::io::{Access, AppConfig, Application};
    use kmdf_sim::pnp::StackSpec;
    use kmdf_sim::{ClockMode, Machine};

    /// The image's bytes, or `None` after saying why the bench is skipped.
    fn image(path: &str) -> Option<Vec<u8>> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target")
            .join(path);
        let bytes = std::fs::read(&path).ok();
        if bytes.is_none() {
            println!(
                "SKIPPED: {} is missing (bash .ci/kmdf-check)",
                path.display()
            );
        }
        bytes
    }

    const FILTERS: [(&str, &str); 2] = [
        ("C DMF", "cdmf-oracle/SwitchBar4.sys"),
        ("ours", "kmdf-check/osrfx2_filter.sys"),
    ];
    const SWITCHBARS: [(&str, &str); 2] = [
        ("C DMF", "cdmf-oracle/SwitchBar1.sys"),
        ("ours", "kmdf-check/switchbar.sys"),
    ];

    fn machine() -> Machine {
        Machine::builder().clock(ClockMode::Manual).build()
    }

    /// A machine with the board plugged in under SwitchBar `bytes` (started, mirroring).
    fn switchbar_machine(bytes: &[u8]) -> (Machine, Fx2Board, Driver) {
        let machine = machine();
        let board = Fx2Board::new();
        let driver = Driver::load_bytes(bytes, "switchbar").expect("loads");
        {
            let _bound = machine.enter();
            driver.install(&machine);
            machine
                .pnp()
                .plug_in(StackSpec::new("ROOT\\SWITCHBAR", "switchbar"))
                .expect("SwitchBar starts");
            fx2::install(&machine, &board).expect("the FX2 starts");
        }
        machine.settle();
        (machine, board, driver)
    }

    pub fn ioctl_through_the_filter<M: Measurement>(c: &mut Criterion<M>, suffix: &str) {
        let mut g = c.benchmark_group(format!("ioctl through the filter{suffix}"));
        for (label, path) in FILTERS {
            let Some(bytes) = image(path) else { continue };
            let machine = machine();
            let _bound = machine.enter();
            let board = Fx2Board::new();
            let filter = Driver::load_bytes(&bytes, "osrfx2filter").expect("loads");
            filter.install(&machine);
            let spec = fx2::stack_spec(&machine, &board).upper_filter("osrfx2filter");
            machine.pnp().plug_in(spec).expect("the FX2 stack starts");
            machine.settle();
            let app = Application::new(
                &machine,
                AppConfig {
                    administrator: true,
                    name: "bench.exe".into(),
                },
            );
            let handle = app
                .open_interface(GUID_DEVINTERFACE_OSRUSBFX2, Access::READ_WRITE)
                .expect("an administrator opens the interface");
            g.bench_function(label, |b| {
                b.iter(|| {
                    black_box(
                        handle
                            .device_io_control(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1)
                            .expect("passed down"),
                    )
                });
            });
            handle.close();
            // The image stays mapped: the machine (and its threads) may still hold its code.
            std::mem::forget(filter);
        }
        g.finish();
    }

    pub fn switch_change_mirrored<M: Measurement>(c: &mut Criterion<M>, suffix: &str) {
        let mut g = c.benchmark_group(format!("switch change mirrored{suffix}"));
        for (label, path) in SWITCHBARS {
            let Some(bytes) = image(path) else { continue };
            let (machine, board, driver) = switchbar_machine(&bytes);
            let _bound = machine.enter();
            g.bench_function(label, |b| {
                b.iter(|| {
                    board.flip_switch(1).expect("switch 1");
                    machine.settle();
                    black_box(board.snapshot().bar_graph.raw())
                });
            });
            std::mem::forget(driver);
        }
        g.finish();
    }

    pub fn start_and_removal<M: Measurement>(c: &mut Criterion<M>, suffix: &str) {
        let mut g = c.benchmark_group(format!("start and removal{suffix}"));
        g.sample_size(20);
        for (label, path) in SWITCHBARS {
            let Some(bytes) = image(path) else { continue };
            let (machine, _board, driver) = switchbar_machine(&bytes);
            let _bound = machine.enter();
            let mut n = 0_u32;
            g.bench_function(label, |b| {
                b.iter(|| {
                    n += 1;
                    let second = machine
                        .pnp()
                        .plug_in(StackSpec::new(
                            &format!("ROOT\\SWITCHBAR\\{n}"),
                            "switchbar",
                        ))
                        .expect("a second SwitchBar starts");
                    machine.settle();
                    second.remove().expect("removed");
                    machine.settle();
                });
            });
            std::mem::forget(driver);
        }
        g.finish();
    }
}

/// The process's CPU time (all threads) as a criterion measurement.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod cpu_time {
    use std::time::Duration;

    use criterion::measurement::{Measurement, ValueFormatter};
    use criterion::Throughput;

    /// `CLOCK_PROCESS_CPUTIME_ID`.
    pub struct ProcessCpuTime;

    fn now() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the call; the clock id is a constant
        // every Linux kernel supports.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &raw mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
        Duration::new(
            u64::try_from(ts.tv_sec).unwrap_or(0),
            u32::try_from(ts.tv_nsec).unwrap_or(0),
        )
    }

    impl Measurement for ProcessCpuTime {
        type Intermediate = Duration;
        type Value = Duration;
        fn start(&self) -> Duration {
            now()
        }
        fn end(&self, started: Duration) -> Duration {
            now().saturating_sub(started)
        }
        fn add(&self, a: &Duration, b: &Duration) -> Duration {
            *a + *b
        }
        fn zero(&self) -> Duration {
            Duration::ZERO
        }
        fn to_f64(&self, value: &Duration) -> f64 {
            value.as_secs_f64() * 1e9
        }
        fn formatter(&self) -> &dyn ValueFormatter {
            &Nanoseconds
        }
    }

    /// Prints nanosecond values in ns, µs, ms or s, as criterion's wall-time formatter does.
    struct Nanoseconds;

    impl Nanoseconds {
        fn unit(typical: f64) -> (f64, &'static str) {
            if typical < 1e3 {
                (1.0, "ns")
            } else if typical < 1e6 {
                (1e-3, "µs")
            } else if typical < 1e9 {
                (1e-6, "ms")
            } else {
                (1e-9, "s")
            }
        }
    }

    impl ValueFormatter for Nanoseconds {
        fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
            let (factor, unit) = Self::unit(typical);
            for v in values.iter_mut() {
                *v *= factor;
            }
            unit
        }
        fn scale_throughputs(
            &self,
            _typical: f64,
            throughput: &Throughput,
            values: &mut [f64],
        ) -> &'static str {
            let per = match *throughput {
                Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Elements(n) => {
                    // Element and byte counts per iteration are far below 2^52.
                    f64::from(u32::try_from(n).unwrap_or(u32::MAX))
                }
            };
            for v in values.iter_mut() {
                *v = per * 1e9 / *v;
            }
            "/s"
        }
        fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
            "ns"
        }
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn main() {
    let mut c = criterion::Criterion::default().configure_from_args();
    bench::ioctl_through_the_filter(&mut c, "");
    bench::switch_change_mirrored(&mut c, "");
    bench::start_and_removal(&mut c, "");
    let mut cpu = criterion::Criterion::default()
        .with_measurement(cpu_time::ProcessCpuTime)
        .configure_from_args();
    bench::ioctl_through_the_filter(&mut cpu, " (CPU time)");
    bench::switch_change_mirrored(&mut cpu, " (CPU time)");
    bench::start_and_removal(&mut cpu, " (CPU time)");
    c.final_summary();
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn main() {}
