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
//! Skipped (with a line saying so) when the images are absent: `bash .ci/kmdf-check` builds
//! them.

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod bench {
    use std::path::PathBuf;

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

    pub fn ioctl_through_the_filter(c: &mut Criterion) {
        let mut g = c.benchmark_group("ioctl through the filter");
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

    pub fn switch_change_mirrored(c: &mut Criterion) {
        let mut g = c.benchmark_group("switch change mirrored");
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

    pub fn start_and_removal(c: &mut Criterion) {
        let mut g = c.benchmark_group("start and removal");
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

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn main() {
    let mut c = criterion::Criterion::default().configure_from_args();
    bench::ioctl_through_the_filter(&mut c);
    bench::switch_change_mirrored(&mut c);
    bench::start_and_removal(&mut c);
    c.final_summary();
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn main() {}
