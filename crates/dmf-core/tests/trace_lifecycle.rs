//! The Module lifecycle trace (docs/trace.md): every creation, open, close, registration and
//! destruction of a Module is a `DMF` line of the machine's trace naming the phase, read back by
//! `simulator::module_lines`; `dmf_core::trace!`; and the sequence diagram drawn from a trace.
#![cfg(feature = "sim")]

use std::time::Duration;

use dmf_core::device::container_driver_config;
use dmf_core::module::{Dispatched, ModuleCallbacks, ModuleInit, NoParent};
use dmf_core::platform::simulator::{
    self, module_events, module_lines, ModuleAction, ModuleEvent, SequenceDiagram,
};
use dmf_core::platform::Device;
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};
use kmdf_sim::exec::Irql;
use kmdf_sim::pnp::{NodeState, StackSpec, SystemPowerState};
use kmdf_sim::trace::{TraceEvent, TraceKind};
use kmdf_sim::Machine;

/// Opens in D0Entry; its child opens in PrepareHardware.
#[dmf_module(crate = ::dmf_core, config = bool, open = D0Entry, lock = Dispatch)]
struct Parent;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Parent {
    fn child_modules_add(_m: &Dispatched<'_, Self>, init: &mut ModuleInit) {
        init.add(Child::with(()));
    }
    fn open(m: &Dispatched<'_, Self>) -> NtResult<()> {
        // `true`: refuse (the open-failure line).
        if *m.config() {
            Err(NtStatus::DEVICE_NOT_READY)
        } else {
            Ok(())
        }
    }
}

#[dmf_module(crate = ::dmf_core, config = (), open = PrepareHardware, lock = Dispatch)]
struct Child;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Child {}

#[dmf_module(crate = ::dmf_core, config = (), open = Create, lock = Passive)]
struct Dyn;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Dyn {}

fn install(machine: &Machine, refuse_open: bool) {
    simulator::install_driver(
        machine,
        "lifecycle",
        container_driver_config(
            move |_device: &Device, modules: &mut ModuleInit| {
                modules.add(Parent::with(refuse_open));
                Ok(())
            },
            false,
        ),
    );
}

#[test]
fn each_open_and_close_names_the_phase_that_caused_it() {
    let machine = Machine::new();
    let _bound = machine.enter();
    install(&machine, false);
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\LIFECYCLE", "lifecycle"))
        .unwrap();
    assert_eq!(node.state(), NodeState::Started);
    assert_eq!(
        module_lines(&machine, "lifecycle"),
        [
            "Module Parent/Child created",
            "Module Parent created",
            "Module Parent/Child opened (PrepareHardware)",
            "Module Parent opened (D0Entry)",
        ]
    );
    // A system sleep: D0Exit closes what D0Entry opened; the return opens it again.
    machine.trace().clear();
    machine.pnp().system_sleep(SystemPowerState::S3).unwrap();
    machine.pnp().system_resume().unwrap();
    assert_eq!(
        module_lines(&machine, "lifecycle"),
        [
            "Module Parent closed (D0Exit)",
            "Module Parent opened (D0Entry)"
        ]
    );
    machine.trace().clear();
    node.remove().unwrap();
    machine.settle();
    assert_eq!(
        module_lines(&machine, "lifecycle"),
        [
            "Module Parent closed (D0Exit)",
            "Module Parent/Child closed (ReleaseHardware)",
            "Module Parent/Child destroyed",
            "Module Parent destroyed",
        ]
    );
    // The parsed form: the driver, the Module, the phase.
    let events = module_events(&machine);
    assert_eq!(events[1].name(), "Child");
    assert_eq!(events[1].path, "Parent/Child");
    assert_eq!(events[1].action, ModuleAction::Closed);
    assert_eq!(events[1].during.as_deref(), Some("ReleaseHardware"));
    assert_eq!(events[1].driver.as_deref(), Some("lifecycle"));
    assert!(machine.verifier().violations().is_empty());
}

#[test]
fn a_refused_open_is_a_line_with_its_status_and_the_phase_unwinds() {
    let machine = Machine::new();
    let _bound = machine.enter();
    install(&machine, true);
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\LIFECYCLE", "lifecycle"));
    assert!(node.is_err() || node.as_ref().is_ok_and(|n| n.state() != NodeState::Started));
    let lines = module_lines(&machine, "lifecycle");
    assert!(
        lines.contains(&"Module Parent open failed (D0Entry) STATUS_DEVICE_NOT_READY".to_owned()),
        "{lines:#?}"
    );
    let failed = module_events(&machine)
        .into_iter()
        .find(|e| e.action == ModuleAction::OpenFailed)
        .unwrap();
    assert_eq!(failed.status.as_deref(), Some("STATUS_DEVICE_NOT_READY"));
    // The failed start releases the hardware: the child closes, then both are destroyed.
    let tail = &lines[lines.len() - 3..];
    assert_eq!(
        tail,
        [
            "Module Parent/Child closed (ReleaseHardware)",
            "Module Parent/Child destroyed",
            "Module Parent destroyed",
        ]
    );
}

#[test]
fn a_dynamic_module_opens_on_its_creation_and_closes_on_its_deletion() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let module = Dyn::with(()).create(&NoParent).unwrap();
    drop(module);
    let lines: Vec<String> = module_events(&machine)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "Module Dyn created",
            "Module Dyn opened (Create)",
            "Module Dyn closed (Destroy)",
            "Module Dyn destroyed",
        ]
    );
}

#[test]
fn the_trace_macro_writes_a_note_of_its_source_at_its_level() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let count = 3;
    dmf_core::trace!("Sample", "count {count}");
    dmf_core::trace!(Warning, "Sample", "late by {} ms", 5);
    dmf_core::trace!(Error, "Sample", "gone");
    assert_eq!(
        machine.trace().texts(TraceKind::Note, "Sample"),
        ["[INFO] count 3", "[WARNING] late by 5 ms", "[ERROR] gone"]
    );
    assert_eq!(
        simulator::strip_level("[WARNING] late by 5 ms"),
        "late by 5 ms"
    );
    assert_eq!(simulator::strip_level("[not a level] x"), "[not a level] x");
}

fn event(seq: u64, kind: TraceKind, driver: Option<&str>, object: &str, text: &str) -> TraceEvent {
    TraceEvent {
        seq,
        time: Duration::from_millis(seq),
        thread: "t".into(),
        irql: Irql::Passive,
        driver: driver.map(Into::into),
        kind,
        object: object.into(),
        text: text.into(),
    }
}

#[test]
fn a_line_without_level_prefix_parses_too() {
    // kmdf-host records a linked image's `DbgPrintEx` line `DMF: Module …` this way.
    let e = event(
        7,
        TraceKind::Note,
        Some("d"),
        "DMF",
        "Module A/B unregistered (ReleaseHardware)",
    );
    let parsed = ModuleEvent::parse(&e).unwrap();
    assert_eq!(
        (
            parsed.path.as_str(),
            parsed.action,
            parsed.during.as_deref()
        ),
        ("A/B", ModuleAction::Unregistered, Some("ReleaseHardware"))
    );
    // Another source's note is not a Module line.
    let other = event(8, TraceKind::Note, Some("d"), "Sample", "Module A created");
    assert_eq!(ModuleEvent::parse(&other), None);
}

#[test]
fn the_diagram_collapses_repeats_and_stops_at_its_limit() {
    let mut events = vec![
        event(
            1,
            TraceKind::Callback,
            Some("drv"),
            "WDFDEVICE drv#0",
            "EvtDevicePrepareHardware",
        ),
        event(
            2,
            TraceKind::Note,
            Some("drv"),
            "DMF",
            "[INFO] Module M opened (PrepareHardware)",
        ),
    ];
    for seq in 3..6 {
        events.push(event(
            seq,
            TraceKind::Callback,
            Some("drv"),
            "WDFDEVICE drv#0",
            "EvtDeviceD0Entry(D0)",
        ));
    }
    events.push(event(
        6,
        TraceKind::Request,
        Some("drv"),
        "WDFREQUEST #9",
        "sent to WDFIOTARGET drv#0 (IOCTL 0x55006018)",
    ));
    events.push(event(
        7,
        TraceKind::Request,
        None,
        "WDFREQUEST #9",
        "queued in WDFQUEUE low#0",
    ));
    events.push(event(
        8,
        TraceKind::Request,
        None,
        "WDFREQUEST #9",
        "completed by WDFDEVICE low#0 with STATUS_SUCCESS, information 1",
    ));
    let d = SequenceDiagram::from_events(&events, &[(2, "start"), (8, "run")]);
    assert_eq!(d.lifelines(), ["KMDF", "drv", "M", "low"]);
    assert_eq!(
        d.lines(),
        [
            "== 1. start",
            "KMDF -> drv: EvtDevicePrepareHardware",
            "drv -> M: opened (PrepareHardware)",
            "== 2. run",
            "KMDF -> drv: EvtDeviceD0Entry(D0) ×3",
            "drv -> low: IOCTL_OSRUSBFX2_READ_SWITCHES",
            "low --> drv: STATUS_SUCCESS",
        ]
    );
    let mermaid = d.mermaid();
    assert!(mermaid.starts_with("sequenceDiagram\n    participant L0 as KMDF\n"));
    assert!(mermaid.contains("    L1->>L2: opened (PrepareHardware)\n"));
    assert!(mermaid.contains("    L3-->>L1: STATUS_SUCCESS\n"));
    let svg = d.svg();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.contains(">EvtDeviceD0Entry(D0) ×3</text>"));

    // Capped at 3 items: the rest is counted in a closing note.
    let capped = SequenceDiagram::with_limit(&events, &[], 3);
    assert_eq!(capped.omitted(), 2);
    assert_eq!(
        capped.lines().last().unwrap(),
        "== … 2 more events not drawn (the picture stops at 3 items)"
    );
    assert_eq!(
        d.render_for(std::path::Path::new("x.md")).unwrap(),
        format!("```mermaid\n{mermaid}```\n")
    );
    assert_eq!(d.render_for(std::path::Path::new("x.png")), None);
}
