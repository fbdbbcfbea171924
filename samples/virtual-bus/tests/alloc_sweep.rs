//! Allocation-failure sweep of VirtualBus: the 1st, 2nd, 3rd, … allocation (pool or heap, the
//! framework's own included) of the bus loading, an administrator's application plugging board 1
//! in through the control interface (the Pdo Module creates and reports the child, the FX2
//! driver starts on it), an application reading the board's switches, the bus unplugging it,
//! plugging board 2 and the bus unloading with board 2 still on it fails, one per run, until a
//! run reaches no armed failure. Every run ends with a clean verifier verdict and no heap block
//! left (`dmf::core::platform::simulator::alloc_sweep`), and every failure the PnP manager, the
//! applications or VirtualBus itself saw is `STATUS_INSUFFICIENT_RESOURCES` or a status that
//! follows from it; the run in which nothing failed reads the board's switches.
//!
//! One `#[test]` in this binary: heap blocks are counted process-wide.

use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};

use dmf::core::platform::simulator::{alloc_sweep, sim_guid, CountingAllocator};
use dmf::core::NtStatus;
use kmdf_sim::fault::FaultPoint;
use kmdf_sim::fx2::driver as fx2;
use kmdf_sim::fx2::ioctl::IOCTL_OSRUSBFX2_READ_SWITCHES;
use kmdf_sim::fx2::Fx2Board;
use kmdf_sim::io::{Access, AppConfig, Application};
use kmdf_sim::pnp::StackSpec;
use kmdf_sim::trace::TraceKind;
use kmdf_sim::{ClockMode, Machine, Status, VerifierMode};
use virtual_bus::session::{child_instance_id, VIRTUALBUS_DRIVER, VIRTUALBUS_HARDWARE_ID};
use virtual_bus::{
    CHILD_HARDWARE_ID, GUID_DEVINTERFACE_VIRTUALBUS, IOCTL_VIRTUALBUS_PLUG_IN_HARDWARE,
    IOCTL_VIRTUALBUS_UNPLUG_HARDWARE,
};

#[global_allocator]
static HEAP: CountingAllocator = CountingAllocator;

/// Statuses a caller may see when an allocation fails: the allocation's own, and what a device,
/// a child or an interface that did not start, open or appear (or was removed because of it)
/// answers.
const ACCEPTABLE: [NtStatus; 6] = [
    NtStatus::INSUFFICIENT_RESOURCES,
    NtStatus::INVALID_DEVICE_STATE,
    NtStatus::NO_SUCH_DEVICE,
    NtStatus::DELETE_PENDING,
    NtStatus::OBJECT_NAME_NOT_FOUND,
    NtStatus::NOT_FOUND,
];

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

/// Whether VirtualBus's trace note `text` reports a failure with a status it may see here.
fn note_acceptable(text: &str) -> bool {
    let Some((_, rest)) = text.split_once("failed with ") else {
        return true;
    };
    let name = rest.trim();
    ACCEPTABLE.iter().any(|status| status.name() == Some(name))
}

/// An administrator's `enum`: opens the bus's interface and sends `code` with `serial`.
fn bus_ioctl(machine: &Machine, code: u32, serial: u32) -> Result<(), Status> {
    let app = Application::new(
        machine,
        AppConfig {
            administrator: true,
            name: "enum".to_owned(),
        },
    );
    let handle = app.open_interface(sim_guid(GUID_DEVINTERFACE_VIRTUALBUS), Access::READ_WRITE)?;
    let result = handle
        .device_io_control(code, &serial.to_le_bytes(), 0)
        .map(|_| ());
    handle.close();
    result
}

/// An application reads the switches of the board behind child `serial`.
fn read_switches(machine: &Machine, serial: u32) -> Result<u8, Status> {
    let link = machine
        .pnp()
        .nodes()
        .into_iter()
        .find(|n| n.instance_id() == child_instance_id(serial) && n.state().has_stack())
        .and_then(|n| n.function_device())
        .and_then(|d| d.interfaces().into_iter().next())
        .ok_or(Status::OBJECT_NAME_NOT_FOUND)?;
    let app = Application::new(
        machine,
        AppConfig {
            administrator: false,
            name: "reader".to_owned(),
        },
    );
    let handle = app.open(&link, Access::READ)?;
    let read = handle.device_io_control(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1);
    handle.close();
    read.map(|(out, _)| out.first().copied().unwrap_or(0))
}

fn scenario(fail_at: u64, log: &mut Log) -> Machine {
    let machine = Machine::builder()
        .name("virtual-bus-alloc-sweep")
        .clock(ClockMode::Manual)
        .verifier(VerifierMode::Record)
        .build();
    let board1 = Fx2Board::new();
    let board2 = Fx2Board::new();
    let _ = board1.set_switch(3, true);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let _bound = machine.enter();
        virtual_bus::session::install(&machine);
        fx2::install_for_hardware_id(&machine, CHILD_HARDWARE_ID);
        fx2::attach_board(&machine, &child_instance_id(1), &board1);
        fx2::attach_board(&machine, &child_instance_id(2), &board2);
        machine.faults().fail_nth(FaultPoint::Allocation, fail_at);
        // The bus loads.
        let bus = match machine
            .pnp()
            .plug_in(StackSpec::new(VIRTUALBUS_HARDWARE_ID, VIRTUALBUS_DRIVER))
        {
            Ok(node) => Some(node),
            Err(status) => {
                log.status(fail_at, "the bus's start", status);
                None
            }
        };
        // Board 1 is plugged in and read.
        if let Err(status) = bus_ioctl(&machine, IOCTL_VIRTUALBUS_PLUG_IN_HARDWARE, 1) {
            log.status(fail_at, "plugging board 1", status);
        }
        machine.settle();
        let read = read_switches(&machine, 1);
        if let Err(status) = read {
            log.status(fail_at, "reading board 1", status);
        }
        if machine.faults().injected(FaultPoint::Allocation) == 0
            && !(bus.is_some() && read == Ok(0b0000_0100))
        {
            log.line(
                fail_at,
                format_args!("nothing failed, yet board 1 read {read:?}"),
            );
        }
        // Board 1 is unplugged, board 2 plugged in; the bus unloads with board 2 on it.
        if let Err(status) = bus_ioctl(&machine, IOCTL_VIRTUALBUS_UNPLUG_HARDWARE, 1) {
            log.status(fail_at, "unplugging board 1", status);
        }
        if let Err(status) = bus_ioctl(&machine, IOCTL_VIRTUALBUS_PLUG_IN_HARDWARE, 2) {
            log.status(fail_at, "plugging board 2", status);
        }
        machine.settle();
        if let Some(bus) = &bus {
            if let Err(status) = bus.remove() {
                log.status(fail_at, "the bus's removal", status);
            }
        }
        machine.settle();
        for event in machine.trace().events() {
            if event.kind == TraceKind::Note
                && event.object == "VirtualBus"
                && !note_acceptable(&event.text)
            {
                log.line(fail_at, format_args!("VirtualBus: {}", event.text));
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
fn alloc_sweep_virtual_bus_load_plug_read_unplug_unload() {
    let mut log = Log {
        text: String::with_capacity(1 << 16),
        lines: 0,
    };
    let swept = alloc_sweep(|fail_at| scenario(fail_at, &mut log));
    let mut problems = match &swept {
        Ok(report) => {
            assert!(report.heap_checked, "CountingAllocator is installed");
            println!(
                "VirtualBus: {} allocation failure points swept",
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
        "VirtualBus allocation-failure sweep:\n{problems}"
    );
}
