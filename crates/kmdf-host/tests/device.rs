//! The four driver images — ours (`switchbar.sys`, `osrfx2_filter.sys`, from `.ci/kmdf-check`)
//! and Microsoft's C DMF samples (`SwitchBar1.sys`, `SwitchBar4.sys`, from
//! `tools/cdmf-oracle/build.sh`) — installed on a machine, their device node plugged in
//! (`EvtDriverDeviceAdd`, `WdfDeviceCreate`, `EvtDevicePrepareHardware`, `EvtDeviceD0Entry`,
//! `EvtDeviceSelfManagedIoInit`) and removed — orderly (`IRP_MN_REMOVE_DEVICE`) and by surprise
//! (`EvtDeviceSurpriseRemoval` path) — with kmdf-sim's verdict (no violation, no pool block or WDF
//! object left) at the end.
//!
//! Each run is a child process (this test binary, running the ignored test `child_scenario`):
//! a driver thread that calls a WDF function the host does not implement yet stops the process
//! with the function's name. An image whose run stops there (or faults) is reported as
//! `PENDING: <image>: <message>` and must not stop at a function of the device layer (all of
//! whose functions the run needs are implemented); an image that runs through must show the
//! whole life cycle, and our two images must run through. Each image that is absent is
//! `SKIPPED: <reason>`.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::path::PathBuf;
use std::process::Command;

use kmdf_host::host::Driver;
use kmdf_sim::pnp::{NodeState, StackSpec};
use kmdf_sim::{ClockMode, MachineBuilder, VerifierMode};

/// (image folder under `target/`, file, service, plugged in as the FX2 board's upper filter).
const IMAGES: [(&str, &str, &str, bool); 4] = [
    ("kmdf-check", "switchbar.sys", "switchbar", false),
    ("kmdf-check", "osrfx2_filter.sys", "osrfx2filter", true),
    ("cdmf-oracle", "SwitchBar1.sys", "SwitchBar1", false),
    ("cdmf-oracle", "SwitchBar4.sys", "SwitchBar4", true),
];

/// The callbacks of the device's life, in the order kmdf-sim's PnP engine calls them.
const LIFE: [&str; 5] = [
    "EvtDriverDeviceAdd",
    "EvtDevicePrepareHardware",
    "EvtDeviceD0Entry",
    "EvtDeviceD0Exit",
    "EvtDeviceReleaseHardware",
];

/// The WDF functions of the device layer (devices, file objects, locks, work items, timers,
/// strings, collections, registry): a run may not stop at one of them.
const DEVICE_LAYER: [&str; 9] = [
    "WdfDevice",
    "WdfFdoInit",
    "WdfControl",
    "WdfFileObject",
    "WdfSpinLock",
    "WdfWaitLock",
    "WdfWorkItem",
    "WdfTimer",
    "WdfString",
];

fn image(folder: &str, file: &str) -> Option<PathBuf> {
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target")
        .join(folder);
    let variable = if folder == "kmdf-check" {
        "KMDF_HOST_IMAGES"
    } else {
        "CDMF_ORACLE_IMAGES"
    };
    let path = std::env::var_os(variable)
        .map_or(default, PathBuf::from)
        .join(file);
    if path.is_file() {
        Some(path)
    } else {
        println!(
            "SKIPPED: {} is missing (linked by `bash .ci/kmdf-check`)",
            path.display()
        );
        None
    }
}

/// The child's side: plug in, remove (`KMDF_HOST_DEVICE_MODE` = `remove` or `surprise`), and
/// print what happened, one `key: value` line each.
#[test]
#[ignore = "run by the tests below as a child process"]
fn child_scenario() {
    let (Ok(path), Ok(service), Ok(mode)) = (
        std::env::var("KMDF_HOST_DEVICE_IMAGE"),
        std::env::var("KMDF_HOST_DEVICE_SERVICE"),
        std::env::var("KMDF_HOST_DEVICE_MODE"),
    ) else {
        return;
    };
    let filter = std::env::var("KMDF_HOST_DEVICE_FILTER").is_ok();
    let machine = MachineBuilder::default()
        .clock(ClockMode::AutoAdvance)
        .verifier(VerifierMode::Record)
        .build();
    let bound = machine.enter();
    let driver = Driver::load(std::path::Path::new(&path), &service).unwrap();
    driver.install(&machine);
    let board = kmdf_sim::fx2::Fx2Board::new();
    let spec = if filter {
        kmdf_sim::fx2::driver::stack_spec(&machine, &board).upper_filter(&service)
    } else {
        StackSpec::new(&format!("ROOT\\{}", service.to_ascii_uppercase()), &service)
    };
    let node = machine.pnp().plug_in(spec).unwrap();
    println!("started: {:?}", node.state());
    let removed = if mode == "surprise" {
        node.surprise_remove()
    } else {
        node.remove()
    };
    println!("removed: {removed:?} {:?}", node.state());
    println!(
        "callbacks: {}",
        machine.trace().callbacks_for(&service).join(",")
    );
    drop(bound);
    match machine.verdict() {
        Ok(_) => println!("verdict: clean"),
        Err(problems) => println!("verdict: {}", problems.replace('\n', " | ")),
    }
    // The image stays mapped for the rest of the process (its objects are gone).
    std::mem::forget(driver);
}

/// Runs the scenario of one image in a child process: `Ok(lines)` when it ran through,
/// `Err(stop message)` when a driver thread was stopped.
fn run(path: &PathBuf, service: &str, filter: bool, mode: &str) -> Result<Vec<String>, String> {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "child_scenario",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KMDF_HOST_DEVICE_IMAGE", path)
        .env("KMDF_HOST_DEVICE_SERVICE", service)
        .env("KMDF_HOST_DEVICE_MODE", mode);
    if filter {
        command.env("KMDF_HOST_DEVICE_FILTER", "1");
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => Ok(stdout.lines().map(str::to_owned).collect()),
        Some(2) => Err(stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("kmdf-host:"))
            .unwrap_or(&stderr)
            .to_owned()),
        None => {
            use std::os::unix::process::ExitStatusExt as _;
            Err(format!(
                "the child process died of signal {:?} (a fault in the image the host does not \
                 emulate)",
                out.status.signal()
            ))
        }
        other => panic!("{service} ({mode}): exit {other:?}\n{stdout}\n{stderr}"),
    }
}

fn value<'a>(lines: &'a [String], key: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.split_once(&format!("{key}: ")).map(|(_, v)| v))
        .unwrap_or_else(|| panic!("no `{key}` in {lines:#?}"))
}

/// Asserts a run that ended: the life cycle in order and a clean verdict. A run that did not
/// end (stopped, or killed by a fault the host does not emulate yet) is reported as pending; a
/// stop may not name a function of the device layer.
fn check(service: &str, mode: &str, result: Result<Vec<String>, String>) {
    let lines = match result {
        Ok(lines) => lines,
        Err(message) => {
            println!("PENDING: {service} ({mode}): {message}");
            let function = message
                .split("called ")
                .nth(1)
                .and_then(|m| m.split(' ').next())
                .unwrap_or_default();
            assert!(
                !DEVICE_LAYER.iter().any(|p| function.starts_with(p)),
                "{service} ({mode}) stops in the device layer: {message}"
            );
            return;
        }
    };
    assert_eq!(
        value(&lines, "started"),
        format!("{:?}", NodeState::Started)
    );
    let expected_end = if mode == "surprise" {
        NodeState::SurpriseRemoved
    } else {
        NodeState::Removed
    };
    assert_eq!(value(&lines, "removed"), format!("Ok(()) {expected_end:?}"));
    let callbacks: Vec<&str> = value(&lines, "callbacks").split(',').collect();
    let mut at = 0;
    for step in LIFE {
        let found = callbacks[at..]
            .iter()
            .position(|c| c.starts_with(step))
            .unwrap_or_else(|| panic!("{service} ({mode}): no {step} after {at}: {callbacks:?}"));
        at += found + 1;
    }
    assert!(
        callbacks.contains(&"EvtDeviceSelfManagedIoInit"),
        "{service}: {callbacks:?}"
    );
    if mode == "surprise" {
        assert!(
            callbacks.contains(&"EvtDeviceSurpriseRemoval")
                || !callbacks.contains(&"EvtDeviceQueryRemove"),
            "{service}: {callbacks:?}"
        );
    }
    let verdict = value(&lines, "verdict");
    if C_DMF_TEARDOWN_OPEN.contains(&service) && verdict != "clean" {
        // C DMF's teardown on the host is not clean yet (objects kept by references).
        println!(
            "PENDING: {service} ({mode}): verdict {}",
            &verdict[..verdict.len().min(200)]
        );
        return;
    }
    assert_eq!(verdict, "clean", "{service} ({mode})");
}

/// Images whose removal still leaves objects and pool on the host (being worked on).
const C_DMF_TEARDOWN_OPEN: [&str; 2] = ["SwitchBar1", "SwitchBar4"];

#[test]
fn each_image_goes_through_add_start_and_orderly_removal() {
    for (folder, file, service, filter) in IMAGES {
        let Some(path) = image(folder, file) else {
            continue;
        };
        check(service, "remove", run(&path, service, filter, "remove"));
    }
}

#[test]
fn each_image_goes_through_add_start_and_surprise_removal() {
    for (folder, file, service, filter) in IMAGES {
        let Some(path) = image(folder, file) else {
            continue;
        };
        check(service, "surprise", run(&path, service, filter, "surprise"));
    }
}

/// Our two images run through today: assert it, so that a regression is not taken for a
/// pending function.
#[test]
fn our_images_run_through_the_device_life_cycle() {
    for (folder, file, service, filter) in &IMAGES[..2] {
        let Some(path) = image(folder, file) else {
            continue;
        };
        let lines = run(&path, service, *filter, "remove")
            .unwrap_or_else(|stop| panic!("{service}: stopped: {stop}"));
        assert_eq!(value(&lines, "verdict"), "clean", "{service}");
    }
}
