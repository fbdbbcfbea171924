//! `kmdf-host <driver.sys> [--service NAME]`: loads a KMDF driver image, binds it to the host,
//! calls its entry point on a kmdf-sim machine and prints what happened.
//!
//! Exit status: 0 when the entry point returned success, 1 when the image could not be loaded
//! (the message lists every import the host lacks), 2 when the host stopped the run (e.g. the
//! driver called a WDF function the host does not implement yet — the expected end of phase 1),
//! 3 when the entry point returned a failure status.

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn main() {
    std::process::exit(run::main());
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn main() {
    eprintln!("kmdf-host runs driver images on x86_64 Linux only");
    std::process::exit(1);
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod run {
    use std::path::{Path, PathBuf};

    use kmdf_host::host::{Driver, Outcome};
    use kmdf_sim::trace::TraceKind;
    use kmdf_sim::{ClockMode, MachineBuilder, VerifierMode};

    const USAGE: &str = "usage: kmdf-host <driver.sys> [--service NAME]";

    pub fn main() -> i32 {
        let mut args = std::env::args().skip(1);
        let mut image = None;
        let mut service = None;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--service" => service = args.next(),
                "-h" | "--help" => {
                    println!("{USAGE}");
                    return 0;
                }
                _ if image.is_none() => image = Some(PathBuf::from(arg)),
                _ => {
                    eprintln!("{USAGE}");
                    return 1;
                }
            }
        }
        let Some(image) = image else {
            eprintln!("{USAGE}");
            return 1;
        };
        let service = service.unwrap_or_else(|| {
            image
                .file_stem()
                .map_or_else(|| "driver".to_owned(), |s| s.to_string_lossy().into_owned())
        });

        let driver = match Driver::load(&image, &service) {
            Ok(driver) => driver,
            Err(e) => {
                eprintln!("kmdf-host: {}: {e}", image.display());
                return 1;
            }
        };
        describe(&driver, &image, &service);

        // AutoAdvance: a wait with a timeout in the driver moves the virtual clock instead of
        // hanging the runner.
        let machine = MachineBuilder::default()
            .name(&service)
            .clock(ClockMode::AutoAdvance)
            .verifier(VerifierMode::Record)
            .build();
        println!(
            "kmdf-host: calling the entry point (FxDriverEntry -> WdfVersionBind -> DriverEntry)"
        );
        let (report, _driver) = driver.call_entry(&machine);
        for event in machine.trace().events() {
            if event.kind == TraceKind::Note && !event.object.is_empty() {
                println!("  [{}] {}: {}", event.thread, event.object, event.text);
            }
        }
        for v in machine.verifier().violations() {
            println!("kmdf-host: verifier: {v}");
        }
        match report.outcome {
            Outcome::Returned(status) if status >= 0 => {
                println!("kmdf-host: DriverEntry returned {status:#010x}");
                0
            }
            Outcome::Returned(status) => {
                eprintln!(
                    "kmdf-host: DriverEntry failed with {:#010x}",
                    status.cast_unsigned()
                );
                3
            }
            Outcome::Stopped(stop) => {
                eprintln!("{}", stop.message);
                2
            }
        }
    }

    /// Prints where the image was mapped, its sections and its bound imports.
    fn describe(driver: &Driver, image: &Path, service: &str) {
        let loaded = driver.image();
        println!(
            "kmdf-host: loaded {} as service '{service}' at {:#x} ({} bytes, preferred base {:#x})",
            image.display(),
            loaded.base(),
            loaded.size(),
            loaded.preferred_base()
        );
        for s in loaded.sections() {
            let flag = |bit: u32, c: char| if s.characteristics & bit != 0 { c } else { '-' };
            println!(
                "  section {:<8} RVA {:#07x} {:>7} bytes  {}{}{}",
                s.name,
                s.virtual_address,
                s.memory_size(),
                flag(kmdf_host::pe::SCN_MEM_READ, 'R'),
                flag(kmdf_host::pe::SCN_MEM_WRITE, 'W'),
                flag(kmdf_host::pe::SCN_MEM_EXECUTE, 'X'),
            );
        }
        let imports = driver.imports();
        println!("kmdf-host: {} imports resolved:", imports.len());
        for i in imports {
            println!("  {}!{}", i.dll, i.name);
        }
    }
}
