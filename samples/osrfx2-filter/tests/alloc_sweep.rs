//! Allocation-failure sweep of the OSR FX2 filter: the 1st, 2nd, 3rd, … allocation (pool or
//! heap, the framework's own included) of starting the FX2 stack with the filter, opening it,
//! sending the first IOCTLs and removing it fails, one per run, until a run reaches no armed
//! failure. Every run ends with a clean verifier verdict and no heap block left
//! (`dmf::core::platform::simulator::alloc_sweep`), and every failure an application or the PnP
//! manager sees is `STATUS_INSUFFICIENT_RESOURCES` or a status that follows from a device that
//! did not start.
//!
//! One `#[test]` in this binary: heap blocks are counted process-wide.

use std::collections::BTreeMap;

use dmf::core::platform::simulator::{alloc_sweep, CountingAllocator};
use kmdf_sim::fault::FaultPoint;
use kmdf_sim::fx2::driver as fx2;
use kmdf_sim::fx2::ioctl::{IOCTL_OSRUSBFX2_READ_SWITCHES, IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY};
use kmdf_sim::fx2::{Fx2Board, GUID_DEVINTERFACE_OSRUSBFX2};
use kmdf_sim::io::{Access, AppConfig, Application};
use kmdf_sim::{Machine, Status};

#[global_allocator]
static HEAP: CountingAllocator = CountingAllocator;

const FILTER: &str = "osrfx2filter";

/// Statuses a caller may see when an allocation of the filter's stack fails: the allocation's own,
/// and what a device that failed to start (or was removed because of it) answers.
fn acceptable(status: Status) -> bool {
    matches!(
        status,
        Status::INSUFFICIENT_RESOURCES
            | Status::NO_SUCH_DEVICE
            | Status::INVALID_DEVICE_STATE
            | Status::DELETE_PENDING
    )
}

/// Every failure a caller saw: (failing allocation, step, status). Reserved up front, so recording
/// one does not allocate while the sweep counts a run's heap blocks.
type Seen = Vec<(u64, &'static str, Status)>;

fn scenario(fail_at: u64, seen: &mut Seen) -> Machine {
    let machine = Machine::builder().name("filter-alloc-sweep").build();
    let board = Fx2Board::new();
    let mut check = |what: &'static str, status: Status| {
        assert!(
            seen.len() < seen.capacity(),
            "room reserved for every failure"
        );
        seen.push((fail_at, what, status));
    };
    let bound = machine.enter();
    dmf::core::platform::simulator::install_driver(
        &machine,
        FILTER,
        osrfx2_filter::driver_config(),
    );
    machine.faults().fail_nth(FaultPoint::Allocation, fail_at);
    let spec = fx2::stack_spec(&machine, &board).upper_filter(FILTER);
    match machine.pnp().plug_in(spec) {
        Err(status) => check("start", status),
        Ok(node) => {
            let app = Application::new(
                &machine,
                AppConfig {
                    administrator: true,
                    name: "admin".to_owned(),
                },
            );
            match app.open_interface(GUID_DEVINTERFACE_OSRUSBFX2, Access::READ_WRITE) {
                Err(status) => check("open", status),
                Ok(handle) => {
                    for (code, input, output) in [
                        (IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY, &[0x5Au8][..], 0),
                        (IOCTL_OSRUSBFX2_READ_SWITCHES, &[][..], 1),
                    ] {
                        if let Err(status) = handle.device_io_control(code, input, output) {
                            check("IOCTL", status);
                        }
                    }
                    handle.close();
                }
            }
            if let Err(status) = node.remove() {
                check("removal", status);
            }
        }
    }
    drop(bound);
    // A filter whose EvtDriverDeviceAdd fails is skipped by the PnP manager, with no PnP error:
    // the board then works without the filter (recorded as a failure of the filter's start).
    let skipped = machine
        .trace()
        .events()
        .iter()
        .any(|e| e.text.starts_with("filter osrfx2filter skipped"));
    if skipped {
        seen.push((fail_at, "filter skipped", Status::INSUFFICIENT_RESOURCES));
    }
    machine
}

#[test]
fn alloc_sweep_osrfx2_filter_start_open_first_ioctls_remove() {
    let mut seen = Seen::with_capacity(10_000);
    let report =
        alloc_sweep(|fail_at| scenario(fail_at, &mut seen)).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.heap_checked);
    let unexpected: Vec<_> = seen
        .iter()
        .filter(|(_, _, status)| !acceptable(*status))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    let mut failures = BTreeMap::<String, u32>::new();
    for (_, what, status) in &seen {
        *failures.entry(format!("{what}: {status:?}")).or_default() += 1;
    }
    println!(
        "osrfx2-filter: {} allocation failure points swept; failures seen: {failures:?}",
        report.points
    );
    // The failures reach the callers: some starts and some IOCTLs fail with the allocation's
    // status (the rest are absorbed where the driver has a fallback, e.g. a trace line).
    assert!(report.points >= 50, "start, open and the IOCTLs allocate");
    assert!(failures.contains_key("start: STATUS_INSUFFICIENT_RESOURCES"));
    assert!(failures.contains_key("filter skipped: STATUS_INSUFFICIENT_RESOURCES"));
}
