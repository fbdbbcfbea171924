//! The three real driver images `.ci/kmdf-check` links (SwitchBar, the OSR FX2 upper filter and
//! the VirtualBus bus driver):
//! they load (every import resolved by the host), their entry point runs —
//! `FxDriverEntry` → `WdfVersionBind` → `DriverEntry` → `WdfDriverCreate` — to success, and they
//! unload (`DriverUnload` → `EvtDriverUnload` → `WdfVersionUnbind`). The same for Microsoft's C
//! DMF samples. Without the images (a fresh clone that has not run `.ci/kmdf-check`) each test
//! prints `SKIPPED: <reason>` and passes. `KMDF_HOST_IMAGES` names another folder to take the
//! images from.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::path::PathBuf;
use std::process::Command;

use kmdf_host::host::{Driver, Outcome};
use kmdf_sim::{ClockMode, MachineBuilder, VerifierMode};

/// The images `.ci/kmdf-check` links.
const IMAGES: [&str; 3] = ["switchbar.sys", "osrfx2_filter.sys", "virtual_bus.sys"];

/// The image, or `None` after printing why the test is skipped.
fn image(file: &str) -> Option<PathBuf> {
    // KMDF_HOST_IMAGES: another folder holding the images (default: where the kmdf check
    // writes them).
    let folder = std::env::var_os("KMDF_HOST_IMAGES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/kmdf-check"),
        PathBuf::from,
    );
    let path = folder.join(file);
    if path.is_file() {
        Some(path)
    } else {
        println!(
            "SKIPPED: {} is missing (run `bash .ci/kmdf-check` to link the driver images)",
            path.display()
        );
        None
    }
}

#[test]
fn both_images_load_with_every_import_resolved() {
    for file in IMAGES {
        let Some(path) = image(file) else { continue };
        let driver = Driver::load(&path, "loadtest").unwrap_or_else(|e| panic!("{file}: {e}"));
        let dlls: Vec<&str> = driver.imports().iter().map(|i| i.dll.as_str()).collect();
        assert!(dlls.contains(&"ntoskrnl.exe"), "{file}: {dlls:?}");
        assert!(
            dlls.iter()
                .all(|d| *d == "ntoskrnl.exe" || *d == "WDFLDR.SYS"),
            "{file}: {dlls:?}"
        );
        let wdfldr: Vec<&str> = driver
            .imports()
            .iter()
            .filter(|i| i.dll == "WDFLDR.SYS")
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(wdfldr, ["WdfVersionBind", "WdfVersionUnbind"], "{file}");
        // Bound: each IAT slot holds the host routine of that name, not the hint/name RVA.
        for import in driver.imports() {
            let slot = driver.image().read_u64(import.iat_rva).unwrap();
            assert_eq!(
                Some(usize::try_from(slot).unwrap()),
                kmdf_host::host::resolve(&import.dll, &import.name),
                "{file}: {}!{}",
                import.dll,
                import.name
            );
        }
        // Relocated: the image does not sit at its preferred base.
        assert_ne!(
            driver.image().base() as u64,
            driver.image().preferred_base()
        );
    }
}

/// Runs `driver`'s entry point on a fresh machine: bound to KMDF 1.33, `DriverEntry` returns
/// success after `WdfDriverCreate`, no violation; then unloads the driver: `DriverUnload` (the
/// startup code's, then KMDF's: `EvtDriverUnload`, the driver object's cleanup) and
/// `WdfVersionUnbind`.
fn entry_succeeds_and_unloads(driver: Driver, file: &str, service: &str) {
    let machine = MachineBuilder::default()
        .clock(ClockMode::AutoAdvance)
        .verifier(VerifierMode::Record)
        .build();
    let (report, driver) = driver.call_entry(&machine);
    assert_eq!(report.outcome, Outcome::Returned(0), "{file}");
    let driver = driver.expect("a run that returned gives the driver back");
    assert!(kmdf_host::wdfldr::is_implemented("WdfDriverCreate"));
    assert_eq!(
        machine.trace().callbacks_for(service),
        ["DriverEntry"],
        "{file}"
    );
    let loaded = kmdf_sim::driver::Driver::loaded(&machine, service).expect("loaded");
    {
        let _bound = machine.enter();
        loaded.unload().expect("the driver unloads");
    }
    let notes = machine
        .trace()
        .texts(kmdf_sim::trace::TraceKind::Note, "WDFLDR");
    assert_eq!(
        notes,
        [
            format!("WdfVersionBind: {service} bound to KMDF 1.33 (458 functions)"),
            "WdfVersionUnbind".to_owned()
        ],
        "{file}"
    );
    assert!(
        machine.verifier().violations().is_empty(),
        "{file}: {:?}",
        machine.verifier().violations()
    );
    drop(driver);
}

#[test]
fn the_entry_point_succeeds_and_the_driver_unloads() {
    for file in IMAGES {
        let Some(path) = image(file) else { continue };
        let service = file.trim_end_matches(".sys");
        let driver = Driver::load(&path, service).unwrap();
        entry_succeeds_and_unloads(driver, file, service);
    }
}

#[test]
fn the_runner_reports_the_entry_point() {
    for file in IMAGES {
        let Some(path) = image(file) else { continue };
        let imports = Driver::load(&path, "count").unwrap().imports().len();
        let out = Command::new(env!("CARGO_BIN_EXE_kmdf-host"))
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{file}: {stdout}\n{stderr}");
        assert_eq!(
            stdout.lines().last(),
            Some("kmdf-host: DriverEntry returned 0x00000000"),
            "{file}: {stdout}"
        );
        assert!(
            stdout.contains(&format!("kmdf-host: {imports} imports resolved:")),
            "{file}: {stdout}"
        );
        assert!(
            stdout.contains("WDFLDR: WdfVersionBind:"),
            "{file}: {stdout}"
        );
    }
}

#[test]
fn an_image_with_missing_imports_is_refused_by_the_runner_with_one_list() {
    let Some(path) = image("switchbar.sys") else {
        return;
    };
    // Rename two imports in a copy of the real image: the runner must list both and run nothing.
    let mut bytes = std::fs::read(&path).unwrap();
    for (from, to) in [
        (&b"KeSetEvent\0"[..], &b"KeXetEvent\0"[..]),
        (&b"WdfVersionUnbind\0"[..], &b"WdfVersionUnbinX\0"[..]),
    ] {
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .expect("import name in the image");
        bytes[at..at + to.len()].copy_from_slice(to);
    }
    let err = Driver::load_bytes(&bytes, "renamed").unwrap_err();
    assert_eq!(
        err,
        kmdf_host::pe::LoadError::MissingImports(vec![
            ("ntoskrnl.exe".to_owned(), "KeXetEvent".to_owned()),
            ("WDFLDR.SYS".to_owned(), "WdfVersionUnbinX".to_owned()),
        ])
    );
    let copy = std::env::temp_dir().join(format!("kmdf-host-renamed-{}.sys", std::process::id()));
    std::fs::write(&copy, &bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kmdf-host"))
        .arg(&copy)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&copy);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the image imports 2 routine(s) the host does not provide: ntoskrnl.exe!KeXetEvent \
             WDFLDR.SYS!WdfVersionUnbinX"
        ),
        "{stderr}"
    );
}

/// Microsoft's own C DMF samples, built by `tools/cdmf-oracle/build.sh` into
/// `target/cdmf-oracle` (`CDMF_ORACLE_IMAGES` names another folder): SwitchBar1 (one
/// DeviceInterfaceTarget) and SwitchBar4 (the upper filter: DefaultTarget + IoctlHandler). Every
/// import resolves, `FxDriverEntry` → `WdfVersionBind` → `DriverEntry` → `WdfDriverCreate`
/// succeeds and the driver unloads, as for our images. Skipped when the images are absent.
#[test]
fn c_dmf_samples_load_run_their_entry_point_and_unload() {
    let folder = std::env::var_os("CDMF_ORACLE_IMAGES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/cdmf-oracle"),
        PathBuf::from,
    );
    for (file, service) in [
        ("SwitchBar1.sys", "SwitchBar1"),
        ("SwitchBar4.sys", "SwitchBar4"),
    ] {
        let path = folder.join(file);
        if !path.is_file() {
            println!(
                "SKIPPED: {} is missing (built by tools/cdmf-oracle/build.sh from C DMF's source)",
                path.display()
            );
            continue;
        }
        let driver = Driver::load(&path, service).unwrap_or_else(|e| panic!("{file}: {e}"));
        let wdfldr: Vec<&str> = driver
            .imports()
            .iter()
            .filter(|i| i.dll == "WDFLDR.SYS")
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(wdfldr, ["WdfVersionBind", "WdfVersionUnbind"], "{file}");
        for import in driver.imports() {
            assert!(
                import.dll == "ntoskrnl.exe" || import.dll == "WDFLDR.SYS",
                "{file}: {}!{}",
                import.dll,
                import.name
            );
            let slot = driver.image().read_u64(import.iat_rva).unwrap();
            assert_eq!(
                Some(usize::try_from(slot).unwrap()),
                kmdf_host::host::resolve(&import.dll, &import.name),
                "{file}: {}!{}",
                import.dll,
                import.name
            );
        }
        // C DMF finds ExAllocatePool2 at run time, through MmGetSystemRoutineAddress.
        let names: Vec<&str> = driver.imports().iter().map(|i| i.name.as_str()).collect();
        assert!(
            names.contains(&"MmGetSystemRoutineAddress"),
            "{file}: {names:?}"
        );
        entry_succeeds_and_unloads(driver, file, service);
    }
}

/// The WDM kernel image of `kernel-image/` (no KMDF: `DriverEntry` exercises dmf-core's NT layer
/// directly, CR8 and `KUSER_SHARED_DATA` reads included) runs to completion on the host. Built by
/// `.ci/run`'s kernel-image step; skipped when absent.
#[test]
fn the_wdm_kernel_image_runs_to_completion() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../kernel-image/target/x86_64-pc-windows-msvc/release/dmf_kernel_image.dll");
    if !path.is_file() {
        println!(
            "SKIPPED: {} is missing (built by the kernel-image step of .ci/run)",
            path.display()
        );
        return;
    }
    let driver = Driver::load(&path, "dmf_kernel_image").unwrap();
    let machine = MachineBuilder::default()
        .clock(ClockMode::AutoAdvance)
        .verifier(VerifierMode::Record)
        .build();
    let (report, driver) = driver.call_entry(&machine);
    assert_eq!(report.outcome, Outcome::Returned(0));
    assert!(driver.is_some());
    // Its `DbgPrintEx(DPFLTR_IHVDRIVER_ID, 0, "dmf-kernel-image: …")` lines are notes of
    // `dmf-kernel-image` at level 0 (DPFLTR_ERROR_LEVEL).
    let lines = machine
        .trace()
        .texts(kmdf_sim::trace::TraceKind::Note, "dmf-kernel-image");
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("KeGetCurrentIrql (CR8) = 0")),
        "{lines:#?}"
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("[ERROR] DriverEntry: all NT-layer checks passed"),
        "{lines:#?}"
    );
    assert!(machine.verifier().violations().is_empty());
}
