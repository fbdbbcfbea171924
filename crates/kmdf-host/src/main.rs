//! `kmdf-host <driver.sys> [--service NAME] [--session switchbar|filter]`: loads a KMDF driver
//! image, binds it to the host, and either calls its entry point on a kmdf-sim machine and prints
//! what happened, or (`--session`) plays one of the samples' scripted sessions on the simulated
//! OSR FX2 board with the image as the sample's driver, printing each step's board picture and
//! the verifier's verdict as the samples' main jobs do.
//!
//! Exit status: 0 when the entry point returned success (or the session ended with a clean
//! verdict), 1 when the image could not be loaded (the message lists every import the host
//! lacks), 2 when the host stopped the run (e.g. the driver called a WDF function the host does
//! not implement yet), 3 when the entry point returned a failure status, 4 when a session's
//! verdict was not clean.

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

    const USAGE: &str =
        "usage: kmdf-host <driver.sys> [--service NAME] [--session switchbar|filter]\n\
                         \x20      kmdf-host --compare switchbar|filter [--c C.sys] [--ours OURS.sys]";

    pub fn main() -> i32 {
        let all: Vec<String> = std::env::args().skip(1).collect();
        if all.first().map(String::as_str) == Some("--compare") {
            return compare(&all[1..]);
        }
        let mut args = std::env::args().skip(1);
        let mut image = None;
        let mut service = None;
        let mut session = None;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--service" => service = args.next(),
                "--session" => session = args.next(),
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
        if let Some(session) = session {
            return run_session(&image, &session);
        }
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

    /// Plays the sample session `name` with the image at `path` as the sample's driver.
    fn run_session(path: &Path, name: &str) -> i32 {
        let service = match name {
            "switchbar" => "switchbar",
            "filter" => osrfx2_filter::session::FILTER,
            _ => {
                eprintln!("{USAGE}");
                return 1;
            }
        };
        let driver = match Driver::load(path, service) {
            Ok(driver) => driver,
            Err(e) => {
                eprintln!("kmdf-host: {}: {e}", path.display());
                return 1;
            }
        };
        println!(
            "kmdf-host: the {name} session with {} as the driver package '{service}'",
            path.display()
        );
        println!();
        let install = |machine: &kmdf_sim::Machine| driver.install(machine);
        let (steps, verdict) = if name == "switchbar" {
            let s = switchbar::session::Session::scripted_with(false, &install);
            let steps: Vec<_> = s
                .steps
                .iter()
                .map(|st| (st.title.clone(), st.trace.clone(), st.picture.clone()))
                .collect();
            (steps, s.verdict())
        } else {
            let s = osrfx2_filter::session::Session::scripted_with(&install);
            let steps: Vec<_> = s
                .steps
                .iter()
                .map(|st| (st.title.clone(), st.trace.clone(), st.picture.clone()))
                .collect();
            (steps, s.verdict())
        };
        for (i, (title, trace, picture)) in steps.iter().enumerate() {
            println!("── {}. {title} ──", i + 1);
            for line in trace {
                println!("  {line}");
            }
            for line in picture.lines() {
                println!("    {line}");
            }
            println!();
        }
        // The image stays mapped until the process ends (its objects are gone with the machine).
        std::mem::forget(driver);
        match verdict {
            Ok(summary) => {
                println!("{summary}");
                0
            }
            Err(problems) => {
                println!("the verifier found problems:\n{problems}");
                4
            }
        }
    }

    /// `--compare <scenario> [--c C.sys] [--ours OURS.sys]`: the scenario with Microsoft's C DMF
    /// image, our image and our sim build, compared step by step (kmdf_host::oracle); exit 0
    /// when every difference between the C image and ours is documented in docs/cdmf-oracle.md,
    /// 5 otherwise.
    fn compare(args: &[String]) -> i32 {
        use kmdf_host::oracle;
        let Some(scenario) = args.first() else {
            eprintln!("{USAGE}");
            return 1;
        };
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let Some(chosen) = oracle::SCENARIOS
            .iter()
            .find(|s| s.name == scenario.as_str())
        else {
            eprintln!("{USAGE}");
            return 1;
        };
        let default_c = root.join("target/cdmf-oracle").join(chosen.c_image);
        let default_ours = root.join("target/kmdf-check").join(chosen.our_image);
        let service = chosen.service;
        let mut c_path = default_c;
        let mut ours_path = default_ours;
        let mut rest = args[1..].iter();
        while let Some(flag) = rest.next() {
            match (flag.as_str(), rest.next()) {
                ("--c", Some(p)) => c_path = PathBuf::from(p),
                ("--ours", Some(p)) => ours_path = PathBuf::from(p),
                _ => {
                    eprintln!("{USAGE}");
                    return 1;
                }
            }
        }
        let load = |path: &Path| match Driver::load(path, service) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("kmdf-host: {}: {e}", path.display());
                None
            }
        };
        let (Some(c_driver), Some(our_driver)) = (load(&c_path), load(&ours_path)) else {
            return 1;
        };
        let c = (chosen.run)("C DMF image", &|m: &kmdf_sim::Machine| c_driver.install(m));
        let ours = (chosen.run)("our image", &|m: &kmdf_sim::Machine| our_driver.install(m));
        let sim = (chosen.run)("our sim build", &chosen.sim_install);
        // The images stay mapped until the process ends.
        std::mem::forget(c_driver);
        std::mem::forget(our_driver);
        let differences = oracle::compare(&c, &ours);
        print!(
            "{}",
            oracle::report(scenario, &[&c, &ours, &sim], &differences)
        );
        let doc = std::fs::read_to_string(root.join("docs/cdmf-oracle.md")).unwrap_or_default();
        let deviations = oracle::documented(&doc);
        let undocumented: Vec<_> = differences
            .iter()
            .filter(|d| !oracle::is_documented(scenario, d, &deviations))
            .collect();
        let image_vs_sim = oracle::compare(&ours, &sim).len();
        println!(
            "cdmf-oracle: {scenario}: {} steps compared, {} differences ({} documented, {} not); our image vs our sim build: {image_vs_sim} differences",
            c.steps.len().max(ours.steps.len()),
            differences.len(),
            differences.len() - undocumented.len(),
            undocumented.len()
        );
        for d in &undocumented {
            println!(
                "undocumented: `{scenario}` step {} `{}` ({}): C: {} | ours: {}",
                d.step,
                d.aspect.name(),
                d.title,
                d.c,
                d.ours
            );
        }
        if undocumented.is_empty() && c.verdict.is_ok() && ours.verdict.is_ok() {
            0
        } else {
            5
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
