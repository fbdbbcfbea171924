//! The driver images — ours (`switchbar.sys`, `osrfx2_filter.sys`, `virtual_bus.sys` (a bus
//! driver with no children yet), from `.ci/kmdf-check`)
//! and Microsoft's C DMF samples (`SwitchBar1.sys`, `SwitchBar4.sys`, from
//! `tools/cdmf-oracle/build.sh`) — installed on a machine, their device node plugged in
//! (`EvtDriverDeviceAdd`, `WdfDeviceCreate`, `EvtDevicePrepareHardware`, `EvtDeviceD0Entry`,
//! `EvtDeviceSelfManagedIoInit`) and removed — orderly (`IRP_MN_REMOVE_DEVICE`) and by surprise
//! (`EvtDeviceSurpriseRemoval` path) — with kmdf-sim's verdict (no violation, no pool block or WDF
//! object left) at the end.
//!
//! Each run is a child process (this test binary, running the ignored test `child_scenario`):
//! a driver thread that calls a WDF function the host does not implement stops the process with
//! the function's name, and the test fails with that message. Every image must show the whole
//! life cycle and end clean. Each image that is absent is `SKIPPED: <reason>`.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::path::PathBuf;
use std::process::Command;

use kmdf_host::host::Driver;
use kmdf_sim::pnp::{NodeState, StackSpec};
use kmdf_sim::{ClockMode, MachineBuilder, VerifierMode};

/// (image folder under `target/`, file, service, plugged in as the FX2 board's upper filter).
const IMAGES: [(&str, &str, &str, bool); 5] = [
    ("kmdf-check", "switchbar.sys", "switchbar", false),
    ("kmdf-check", "osrfx2_filter.sys", "osrfx2filter", true),
    ("kmdf-check", "virtual_bus.sys", "virtualbus", false),
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
/// print what happened, one `key: value` line each (with `KMDF_HOST_DEVICE_TRACE` set, every
/// trace event too, `trace: …`).
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
    if std::env::var_os("KMDF_HOST_DEVICE_TRACE").is_some() {
        for e in machine.trace().events() {
            println!("trace: {:?} {:?} {} {}", e.kind, e.driver, e.object, e.text);
        }
    }
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

/// Asserts a run: it ended (no stop, no fault), the life cycle in order and a clean verdict.
fn check(service: &str, mode: &str, result: Result<Vec<String>, String>) {
    let lines = result.unwrap_or_else(|stop| panic!("{service} ({mode}): stopped: {stop}"));
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
    assert_eq!(value(&lines, "verdict"), "clean", "{service} ({mode})");
}

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
