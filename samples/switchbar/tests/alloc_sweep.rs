//! Allocation-failure sweep of SwitchBar: the 1st, 2nd, 3rd, … allocation (pool or heap, the
//! framework's own included) of SwitchBar loading, the OSR FX2 board arriving (PostOpen: stream
//! start and the first mirror), a switch flip reaching SwitchBar, the board unplugged mid-stream
//! and SwitchBar unloading fails, one per run, until a run reaches no armed failure. Every run
//! ends with a clean verifier verdict and no heap block left
//! (`dmf::core::platform::simulator::alloc_sweep`), and every failure the PnP manager or SwitchBar
//! itself saw is `STATUS_INSUFFICIENT_RESOURCES` or a status that follows from it; the run in
//! which nothing failed mirrors the switches on the light bar.
//!
//! One `#[test]` in this binary: heap blocks are counted process-wide.

use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};

use dmf::core::platform::simulator::{alloc_sweep, CountingAllocator};
use dmf::core::NtStatus;
use kmdf_sim::fault::FaultPoint;
use kmdf_sim::fx2::driver as fx2;
use kmdf_sim::fx2::Fx2Board;
use kmdf_sim::pnp::StackSpec;
use kmdf_sim::trace::TraceKind;
use kmdf_sim::{ClockMode, Machine, Status, VerifierMode};
use switchbar::{bar_for_switches, BOARD_WIRING};

#[global_allocator]
static HEAP: CountingAllocator = CountingAllocator;

/// Statuses a caller may see when an allocation fails: the allocation's own, and what a device or
/// a target that did not start or open (or was closed because of it) answers.
const ACCEPTABLE: [NtStatus; 4] = [
    NtStatus::INSUFFICIENT_RESOURCES,
    NtStatus::INVALID_DEVICE_STATE,
    NtStatus::NO_SUCH_DEVICE,
    NtStatus::DELETE_PENDING,
];

/// What the stream request may also come back with when the board is pulled.
const REMOVAL: [NtStatus; 2] = [NtStatus::CANCELLED, NtStatus::DEVICE_REMOVED];

/// Problems of the runs, written into memory reserved before the sweep (a run that found nothing
/// wrong allocates nothing here, so the heap count of a run stays its own).
struct Log {
    text: String,
    lines: usize,
}

impl Log {
    fn line(&mut self, fail_at: u64, what: std::fmt::Arguments<'_>) {
        self.lines += 1;
        if self.lines <= 40 {
            let _ = writeln!(self.text, "allocation {fail_at}: {what}");
        }
    }

    fn status(&mut self, fail_at: u64, what: &str, status: Status) {
        let status = NtStatus::from_raw(status.0);
        if !ACCEPTABLE.contains(&status) {
            self.line(fail_at, format_args!("{what} failed with {status:?}"));
        }
    }
}

/// Whether SwitchBar's trace note `text` reports a failure with a status it may see here.
fn note_acceptable(text: &str) -> bool {
    let Some((_, rest)) = text.split_once("failed with ") else {
        return true;
    };
    let name = rest.split(':').next().unwrap_or(rest).trim();
    let removal = text.contains("interrupt message failed");
    ACCEPTABLE
        .iter()
        .chain(if removal { &REMOVAL[..] } else { &[] })
        .any(|status| status.name() == Some(name))
}

fn scenario(fail_at: u64, log: &mut Log) -> Machine {
    let machine = Machine::builder()
        .name("switchbar-alloc-sweep")
        .clock(ClockMode::Manual)
        .verifier(VerifierMode::Record)
        .build();
    let board = Fx2Board::new();
    // On the desk, not yet connected; switch 1 on.
    board.unplug();
    let _ = board.set_switch(1, true);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let _bound = machine.enter();
        dmf::core::platform::simulator::install_driver(
            &machine,
            "switchbar",
            switchbar::driver_config(),
        );
        machine.faults().fail_nth(FaultPoint::Allocation, fail_at);
        // SwitchBar loads: its device starts and waits for the FX2 interface.
        let switchbar = match machine
            .pnp()
            .plug_in(StackSpec::new("ROOT\\SWITCHBAR", "switchbar"))
        {
            Ok(node) => Some(node),
            Err(status) => {
                log.status(fail_at, "SwitchBar's start", status);
                None
            }
        };
        // The board is plugged in: arrival → PostOpen → stream start and the first mirror.
        let fx2 = match fx2::install(&machine, &board) {
            Ok(node) => Some(node),
            Err(status) => {
                log.status(fail_at, "the FX2's start", status);
                None
            }
        };
        machine.settle();
        // A flip: the interrupt message reaches SwitchBar, which mirrors the switches.
        let _ = board.flip_switch(2);
        machine.settle();
        let mirrored = board.snapshot().bar_graph.raw()
            == bar_for_switches(board.switches().raw(), BOARD_WIRING);
        if machine.faults().injected(FaultPoint::Allocation) == 0
            && !(switchbar.is_some() && fx2.is_some() && mirrored)
        {
            log.line(
                fail_at,
                format_args!("nothing failed, yet the flip was not mirrored on the light bar"),
            );
        }
        // Unplugged mid-stream (surprise removal), then SwitchBar unloads.
        board.unplug();
        if let Some(fx2) = &fx2 {
            if let Err(status) = fx2.surprise_remove() {
                log.status(fail_at, "the FX2's surprise removal", status);
            }
        }
        machine.settle();
        if let Some(switchbar) = &switchbar {
            if let Err(status) = switchbar.remove() {
                log.status(fail_at, "SwitchBar's removal", status);
            }
        }
        machine.settle();
        for event in machine.trace().events() {
            if event.kind == TraceKind::Note
                && event.object == "SwitchBar"
                && !note_acceptable(&event.text)
            {
                log.line(fail_at, format_args!("SwitchBar: {}", event.text));
            }
        }
    }));
    if let Err(payload) = outcome {
        if machine.crash().is_none() {
            let text = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("a panic");
            log.line(fail_at, format_args!("the scenario panicked: {text}"));
        }
    }
    machine
}

#[test]
fn alloc_sweep_switchbar_load_arrival_flip_unplug_unload() {
    let mut log = Log {
        text: String::with_capacity(1 << 16),
        lines: 0,
    };
    let swept = alloc_sweep(|fail_at| scenario(fail_at, &mut log));
    let mut problems = match &swept {
        Ok(report) => {
            assert!(report.heap_checked, "CountingAllocator is installed");
            println!(
                "SwitchBar: {} allocation failure points swept",
                report.points
            );
            if report.points == 0 {
                "the scenario reaches no allocation fault point\n".to_owned()
            } else {
                String::new()
            }
        }
        Err(failures) => failures.clone(),
    };
    problems.push_str(&log.text);
    if log.lines > 40 {
        let _ = writeln!(problems, "… and {} more", log.lines - 40);
    }
    assert!(
        problems.is_empty(),
        "SwitchBar allocation-failure sweep:\n{problems}"
    );
}
