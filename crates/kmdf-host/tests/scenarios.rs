//! Scenarios beyond the samples' sessions, on linked driver images:
//!
//! * a minimal KMDF driver written on wdk-sys alone (`tools/kmdf-echo`, no DMF) runs on the host
//!   like the DMF images: an application opens its interface, echoes IOCTLs (fitting, output too
//!   small, unknown code), writes and reads back, and the node is removed;
//! * removal with I/O in flight: SwitchBar's node removed while its continuous reader's
//!   interrupt request is pending in the FX2 driver (the request is cancelled, the Module
//!   closes); the echo device removed while an application's read is parked in its manual queue
//!   (the framework purges it: `STATUS_CANCELLED`);
//! * failed starts: kmdf-sim's fault injection fails the 1st, 2nd, 3rd, … WDF object creation
//!   and pool allocation of an image's `EvtDriverDeviceAdd` / `EvtDevicePrepareHardware`, one per
//!   run, until a start succeeds with nothing failed: every failing run ends with the node
//!   failed, nothing of the driver left and no violation (every failure path of the linked bytes
//!   is proven).
//!
//! Each scenario runs in a child process (this test binary, re-run on one test): a host stop off
//! the entry-point thread ends the process. Each is skipped with `SKIPPED: <reason>` when its
//! image is absent (`bash .ci/kmdf-check` links them; `KMDF_HOST_IMAGES` names another folder).
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::path::{Path, PathBuf};
use std::process::Command;

use kmdf_host::host::Driver;
use kmdf_host::wdf::bindings::{self, status as nt};
use kmdf_sim::fault::FaultPoint;
use kmdf_sim::fx2::driver as fx2;
use kmdf_sim::fx2::Fx2Board;
use kmdf_sim::guid::Guid;
use kmdf_sim::io::{Access, AppConfig, Application};
use kmdf_sim::pnp::{NodeState, StackSpec};
use kmdf_sim::trace::{TraceEvent, TraceKind};
use kmdf_sim::{ClockMode, Machine, MachineBuilder, Status, VerifierMode};

/// Set in the child: which test to run.
const CHILD: &str = "KMDF_HOST_SCENARIO_CHILD";

/// The echo driver's service and hardware ID.
const ECHO: &str = "kmdf_echo";
const ECHO_HARDWARE_ID: &str = "ROOT\\KMDF_ECHO";

/// `GUID_DEVINTERFACE_KMDF_ECHO` of `tools/kmdf-echo` (the driver's interface class).
const ECHO_INTERFACE: Guid = Guid::new(
    0x5B3C_1F4E,
    0x7A2D,
    0x4E8B,
    [0x9C, 0x61, 0x2F, 0x0D, 0x8E, 0x4A, 0x7B, 0x93],
);

/// `IOCTL_KMDF_ECHO`: `CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS)`
/// (`FILE_ANY_ACCESS` adds no bits).
const IOCTL_KMDF_ECHO: u32 =
    (bindings::FILE_DEVICE_UNKNOWN << 16) | (0x800 << 2) | bindings::METHOD_BUFFERED;

/// The echo driver's buffer size (`ECHO_BUFFER_SIZE`).
const ECHO_BUFFER_SIZE: usize = 64;

fn image(file: &str) -> Option<PathBuf> {
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

/// Runs `scenario` on the image `file` in a child process; panics with the child's output when
/// it fails (a failed assertion, a host stop, a fault).
fn in_child(test: &str, file: &str, scenario: fn(&Path)) {
    let Some(path) = image(file) else { return };
    if std::env::var(CHILD).as_deref() == Ok(test) {
        scenario(&path);
        return;
    }
    if std::env::var_os(CHILD).is_some() {
        return; // a child runs only its own scenario
    }
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{test} on {file}: exit {:?}\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    // What the child printed (the sweep's counts), for the log of the run.
    // (libtest prints the test's name on the line where its output starts.)
    for line in stdout
        .lines()
        .filter_map(|l| l.find("scenario:").map(|i| &l[i..]))
    {
        println!("{line}");
    }
}

fn machine() -> Machine {
    MachineBuilder::default()
        .clock(ClockMode::AutoAdvance)
        .verifier(VerifierMode::Record)
        .build()
}

/// Loads `path` as `service` and installs it on `machine`. The image stays mapped while the
/// returned driver (and the machine's package) lives; a scenario keeps it for the rest of the
/// process (`mem::forget`), a sweep drops it with the run's machine.
#[must_use]
fn install(machine: &Machine, path: &Path, service: &str) -> Driver {
    let driver = Driver::load(path, service).expect("the image loads");
    driver.install(machine);
    driver
}

/// The machine's verdict, asserted clean.
fn assert_clean(machine: &Machine, what: &str) {
    if let Err(problems) = machine.verdict() {
        panic!("{what}: the verdict is not clean:\n{problems}");
    }
}

fn echo_app(machine: &Machine) -> Application {
    Application::new(
        machine,
        AppConfig {
            administrator: false,
            name: "echo application".to_owned(),
        },
    )
}

fn status(raw: i32) -> Status {
    Status(raw)
}

// ---- (a) the echo driver ---------------------------------------------------------------------

fn echo_session(path: &Path) {
    let machine = machine();
    let bound = machine.enter();
    std::mem::forget(install(&machine, path, ECHO));
    let node = machine
        .pnp()
        .plug_in(StackSpec::new(ECHO_HARDWARE_ID, ECHO))
        .expect("the echo device starts");
    assert_eq!(node.state(), NodeState::Started);

    let app = echo_app(&machine);
    let handle = app
        .open_interface(ECHO_INTERFACE, Access::READ_WRITE)
        .expect("the echo interface opens");
    // The echo IOCTL: the input comes back in the output.
    let (out, information) = handle
        .device_io_control(IOCTL_KMDF_ECHO, b"hello, host", 16)
        .expect("the echo IOCTL");
    assert_eq!((out.as_slice(), information), (&b"hello, host"[..], 11));
    // An output smaller than the input.
    assert_eq!(
        handle.device_io_control(IOCTL_KMDF_ECHO, b"hello, host", 4),
        Err(status(nt::STATUS_BUFFER_TOO_SMALL))
    );
    // An unknown IOCTL.
    assert_eq!(
        handle.device_io_control(IOCTL_KMDF_ECHO + 4, b"x", 1),
        Err(status(nt::STATUS_INVALID_DEVICE_REQUEST))
    );
    // A read before anything was written waits in the driver's manual queue; the first write
    // completes it with its bytes.
    let early = handle.read_overlapped(32).expect("the early read");
    machine.settle();
    assert!(!early.is_complete(), "the early read waits for a write");
    // Write, then read back (a shorter read gets the first bytes).
    assert_eq!(handle.write(b"through the linked bytes"), Ok(24));
    assert_eq!(
        early.wait(None),
        Some(Ok((b"through the linked bytes".to_vec(), 24)))
    );
    assert_eq!(
        handle.read(ECHO_BUFFER_SIZE).expect("the read"),
        b"through the linked bytes"
    );
    assert_eq!(handle.read(7).expect("the short read"), b"through");
    // A write longer than the device's buffer.
    assert_eq!(
        handle.write(&[0xAA; ECHO_BUFFER_SIZE + 1]),
        Err(status(nt::STATUS_INVALID_BUFFER_SIZE))
    );
    assert_eq!(handle.read(3).expect("the read after"), b"thr");
    handle.close();

    node.remove().expect("the removal");
    assert_eq!(node.state(), NodeState::Removed);
    drop(bound);
    assert_clean(&machine, "the echo session");
    let prints = machine.trace().texts(TraceKind::Note, "DbgPrint");
    for expected in ["EvtDeviceD0Entry", "EvtDeviceD0Exit", "EvtDriverUnload"] {
        assert!(
            prints.iter().any(|p| p.contains(expected)),
            "no DbgPrint of {expected}: {prints:?}"
        );
    }
    let callbacks = machine.trace().callbacks_for(ECHO);
    for expected in [
        "EvtDriverDeviceAdd",
        "EvtDevicePrepareHardware",
        "EvtIoDeviceControl",
        "EvtIoWrite",
        "EvtIoRead",
        "EvtDeviceReleaseHardware",
    ] {
        assert!(
            callbacks.iter().any(|c| c.starts_with(expected)),
            "no {expected}: {callbacks:?}"
        );
    }
    println!(
        "scenario: echo: {} callbacks of kmdf_echo, DbgPrint: {prints:?}",
        callbacks.len()
    );
}

#[test]
fn echo_driver_on_wdk_sys_alone_echoes_writes_reads_and_is_removed() {
    in_child(
        "echo_driver_on_wdk_sys_alone_echoes_writes_reads_and_is_removed",
        "kmdf_echo.sys",
        echo_session,
    );
}

// ---- (b) removal with I/O in flight --------------------------------------------------------------

/// The echo device removed while an application's read is parked in its manual queue: the
/// framework purges the queue at removal and the read completes with `STATUS_CANCELLED`; another
/// parked read cancelled by the application (`CancelIoEx`) before that.
fn echo_removed_with_a_parked_read(path: &Path) {
    let machine = machine();
    let bound = machine.enter();
    std::mem::forget(install(&machine, path, ECHO));
    let node = machine
        .pnp()
        .plug_in(StackSpec::new(ECHO_HARDWARE_ID, ECHO))
        .expect("the echo device starts");
    let app = echo_app(&machine);
    let handle = app
        .open_interface(ECHO_INTERFACE, Access::READ_WRITE)
        .expect("the echo interface opens");
    let parked = handle.read_overlapped(16).expect("the parked read");
    let cancelled = handle.read_overlapped(16).expect("the read to cancel");
    machine.settle();
    assert!(!parked.is_complete() && !cancelled.is_complete());
    assert!(cancelled.cancel(), "CancelIoEx finds the parked read");
    assert_eq!(cancelled.wait(None), Some(Err(Status::CANCELLED)));
    assert!(!parked.is_complete());

    node.remove().expect("the removal");
    assert_eq!(node.state(), NodeState::Removed);
    assert_eq!(parked.wait(None), Some(Err(Status::CANCELLED)));
    handle.close();
    drop(bound);
    assert_clean(&machine, "the echo removal with a parked read");
    println!("scenario: echo removed with a read parked: the read completed with STATUS_CANCELLED");
}

#[test]
fn echo_device_removed_with_an_application_read_parked() {
    in_child(
        "echo_device_removed_with_an_application_read_parked",
        "kmdf_echo.sys",
        echo_removed_with_a_parked_read,
    );
}

/// The requests (trace objects) `driver` sent with `ioctl` whose completion is not in `events`.
fn pending_requests(events: &[TraceEvent], driver: &str, ioctl: u32) -> Vec<String> {
    let sent = format!("(IOCTL {ioctl:#010x})");
    events
        .iter()
        .filter(|e| {
            e.kind == TraceKind::Request
                && e.driver.as_deref() == Some(driver)
                && e.text.starts_with("sent to ")
                && e.text.ends_with(&sent)
        })
        .map(|e| e.object.clone())
        .filter(|request| {
            !events.iter().any(|e| {
                e.kind == TraceKind::Request
                    && &e.object == request
                    && e.text.starts_with("completed by ")
            })
        })
        .collect()
}

/// SwitchBar's own node removed (not the FX2's) while its continuous reader's interrupt request
/// is pending in the FX2 driver: SwitchBar's DeviceInterfaceTarget stops streaming (the request
/// is cancelled, the FX2 driver completes it with `STATUS_CANCELLED`, SwitchBar's completion
/// routine sees it), closes its target and SwitchBar unloads; the FX2 board keeps working.
fn switchbar_removed_with_its_read_pending(path: &Path) {
    let machine = machine();
    let bound = machine.enter();
    std::mem::forget(install(&machine, path, "switchbar"));
    let board = Fx2Board::new();
    let fx2_node = fx2::install(&machine, &board).expect("the FX2 board starts");
    let switchbar = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\SWITCHBAR", "switchbar"))
        .expect("SwitchBar starts");
    machine.settle();
    let interrupt = kmdf_sim::fx2::ioctl::IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE;
    let before = machine.trace().events();
    let pending = pending_requests(&before, "switchbar", interrupt);
    assert_eq!(
        pending.len(),
        1,
        "one interrupt request in flight: {pending:?}"
    );
    let request = &pending[0];
    assert!(
        before
            .iter()
            .any(|e| &e.object == request && e.text.starts_with("queued in WDFQUEUE osrusbfx2")),
        "{request} waits in the FX2 driver's queue"
    );

    switchbar.remove().expect("SwitchBar's removal");
    assert_eq!(switchbar.state(), NodeState::Removed);
    machine.settle();
    let after = machine.trace().events();
    let after = &after[before.len()..];
    let has = |object: &str, text: &str| {
        after
            .iter()
            .any(|e| e.object.starts_with(object) && e.text.starts_with(text))
    };
    assert!(has(request, "cancel requested"), "{request} is cancelled");
    assert!(
        has(
            request,
            "completed by WDFDEVICE osrusbfx2#0 with STATUS_CANCELLED"
        ),
        "the FX2 driver completes {request} as cancelled"
    );
    assert!(
        has(request, "CompletionRoutine"),
        "SwitchBar's completion routine sees {request}"
    );
    assert!(has("WDFIOTARGET switchbar", "Closed"), "the target closes");
    assert!(has("DRIVER switchbar", "unloaded"), "SwitchBar unloads");
    assert!(pending_requests(&machine.trace().events(), "switchbar", interrupt).is_empty());

    // The board goes on without SwitchBar: a flip reaches no one, the bar stays as it was.
    let bar = board.snapshot().bar_graph.raw();
    let _ = board.flip_switch(4);
    machine.settle();
    assert_eq!(board.snapshot().bar_graph.raw(), bar);
    fx2_node.remove().expect("the FX2's removal");
    drop(bound);
    assert_clean(&machine, "SwitchBar removed with its read pending");
    println!(
        "scenario: SwitchBar removed with {request} pending in the FX2 driver: cancelled, \
         completed, target closed, driver unloaded"
    );
}

#[test]
fn switchbar_image_removed_while_its_read_is_pending_in_the_fx2_driver() {
    in_child(
        "switchbar_image_removed_while_its_read_is_pending_in_the_fx2_driver",
        "switchbar.sys",
        switchbar_removed_with_its_read_pending,
    );
}

// ---- (c) failed starts: an allocation-failure sweep of an image's start -----------------------

/// Upper bound on the runs of one sweep (a start that keeps reaching new fault points past it is
/// a failure of the test, not an endless loop).
const SWEEP_LIMIT: u64 = 400;

/// One start of `service` on a fresh machine whose `n`th `point` after `DriverEntry` fails.
/// Returns where the failure was injected (the driver's last callback before it), or `None`
/// when the start reached fewer than `n` calls at `point`. Panics when the run does not end
/// with the node started (then removed) or failed, and a clean verdict.
fn start_with_failure(
    path: &Path,
    service: &str,
    spec: &dyn Fn(&Machine) -> StackSpec,
    point: FaultPoint,
    n: u64,
) -> Option<String> {
    let machine = machine();
    let bound = machine.enter();
    let driver = install(&machine, path, service);
    kmdf_sim::driver::Driver::load_installed(&machine, service).expect("DriverEntry succeeds");
    let spec = spec(&machine);
    let hardware_id = spec.hardware_id.clone();
    machine.faults().fail_nth(point, n);
    let started = machine.pnp().plug_in(spec);
    let injected = machine.faults().injected(point) > 0;
    machine.faults().disarm(point);
    let what = format!("{service}, {point:?} {n} failing");
    let node = machine
        .pnp()
        .find(&hardware_id)
        .expect("the node is listed");
    match started {
        Ok(node) => {
            // Started (nothing failed, or a failure the driver tolerates): an orderly removal.
            node.remove()
                .unwrap_or_else(|s| panic!("{what}: the removal failed with {s}"));
            assert_eq!(node.state(), NodeState::Removed, "{what}");
        }
        Err(status) => {
            assert!(
                injected,
                "{what}: the start failed with {status}, nothing injected"
            );
            assert_eq!(
                node.state(),
                NodeState::Failed,
                "{what}: failed with {status}"
            );
            assert_eq!(node.last_status(), status, "{what}");
        }
    }
    drop(bound);
    if let Err(problems) = machine.verdict() {
        panic!("{what}: the verdict is not clean:\n{problems}");
    }
    assert!(
        kmdf_sim::driver::Driver::loaded(&machine, service).is_none(),
        "{what}: the driver is still loaded"
    );
    if !injected {
        drop(machine);
        drop(driver);
        return None;
    }
    let events = machine.trace().events();
    let at = events
        .iter()
        .position(|e| e.kind == TraceKind::Note && e.text.starts_with("injected failure"))
        .expect("the injection is traced");
    let callback = events[..at]
        .iter()
        .rev()
        .find(|e| e.kind == TraceKind::Callback && e.driver.as_deref() == Some(service))
        .map_or_else(|| "?".to_owned(), |e| e.text.clone());
    let outcome = if node.state() == NodeState::Failed {
        "start failed"
    } else {
        "tolerated"
    };
    // The driver is unloaded and nothing of it is left: its image can go (at most 64 images are
    // mapped at once).
    drop(machine);
    drop(driver);
    Some(format!("{callback} ({outcome})"))
}

/// Sweeps `point` over the start of `service`: n = 1, 2, … until a start reaches no injected
/// failure. Prints a summary line and returns the number of runs.
fn sweep(
    path: &Path,
    service: &str,
    spec: &dyn Fn(&Machine) -> StackSpec,
    point: FaultPoint,
) -> u64 {
    let mut places: Vec<(String, u64)> = Vec::new();
    let mut n = 1;
    while let Some(place) = start_with_failure(path, service, spec, point, n) {
        match places.iter_mut().find(|(p, _)| *p == place) {
            Some((_, count)) => *count += 1,
            None => places.push((place, 1)),
        }
        n += 1;
        assert!(
            n <= SWEEP_LIMIT,
            "{service}: {point:?} sweep past {SWEEP_LIMIT} runs"
        );
    }
    let places: Vec<String> = places.iter().map(|(p, c)| format!("{c} in {p}")).collect();
    println!(
        "scenario: sweep of {service}'s start, {point:?}: {n} runs, {} failures injected: {}",
        n - 1,
        places.join(", ")
    );
    n
}

fn echo_start_sweep(path: &Path) {
    let spec = |_: &Machine| StackSpec::new(ECHO_HARDWARE_ID, ECHO);
    let objects = sweep(path, ECHO, &spec, FaultPoint::ObjectCreation);
    let allocations = sweep(path, ECHO, &spec, FaultPoint::Allocation);
    // The echo driver creates its device, spin lock and two queues, and allocates its buffer:
    // each fails its start once.
    assert!(objects > 4, "{objects} runs");
    assert!(allocations > 1, "{allocations} runs");
}

#[test]
fn echo_image_start_fails_cleanly_at_every_object_creation_and_allocation() {
    in_child(
        "echo_image_start_fails_cleanly_at_every_object_creation_and_allocation",
        "kmdf_echo.sys",
        echo_start_sweep,
    );
}

fn switchbar_start_sweep(path: &Path) {
    let spec = |_: &Machine| StackSpec::new("ROOT\\SWITCHBAR", "switchbar");
    let objects = sweep(path, "switchbar", &spec, FaultPoint::ObjectCreation);
    let allocations = sweep(path, "switchbar", &spec, FaultPoint::Allocation);
    assert!(
        objects > 1 && allocations > 1,
        "{objects}, {allocations} runs"
    );
}

#[test]
fn switchbar_image_start_fails_cleanly_at_every_object_creation_and_allocation() {
    in_child(
        "switchbar_image_start_fails_cleanly_at_every_object_creation_and_allocation",
        "switchbar.sys",
        switchbar_start_sweep,
    );
}
