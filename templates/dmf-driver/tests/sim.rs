//! The driver on the simulator: installed, a device plugged in, an application's IOCTLs, a
//! system sleep, removal — with the verifier watching.
#![cfg(feature = "sim")]

use dmf::core::platform::simulator;
use kmdf_sim::fault::FaultPoint;
use kmdf_sim::io::{Access, AppConfig, Application, Handle};
use kmdf_sim::pnp::{StackSpec, SystemPowerState};
use kmdf_sim::{Machine, Status, VerifierMode};

use {{crate_name}}::{driver_config, GUID_DEVINTERFACE_COUNTER, IOCTL_COUNTER_GET};

/// The driver's service name, and its device's hardware ID as the INF installs it.
const SERVICE: &str = "{{project-name}}";
const HARDWARE_ID: &str = "ROOT\\{{project-name}}";

fn read(handle: &Handle) -> u32 {
    let (out, _) = handle
        .device_io_control(IOCTL_COUNTER_GET, &[], 4)
        .expect("the Counter Module answers");
    u32::from_le_bytes(out.try_into().expect("4 bytes"))
}

#[test]
fn counts_power_ups_and_answers_its_ioctl() {
    let machine = Machine::new();
    let _bound = machine.enter();
    simulator::install_driver(&machine, SERVICE, driver_config());
    let node = machine
        .pnp()
        .plug_in(StackSpec::new(HARDWARE_ID, SERVICE))
        .expect("the device starts");

    let app = Application::new(&machine, AppConfig::default());
    let handle = app
        .open_interface(
            simulator::sim_guid(GUID_DEVINTERFACE_COUNTER),
            Access::READ_WRITE,
        )
        .expect("the interface is enabled");
    assert_eq!(read(&handle), 1, "one power-up");
    assert_eq!(
        handle.device_io_control(0x0022_2004, &[], 0).unwrap_err(),
        Status::NOT_SUPPORTED,
        "an IOCTL no Module handles is completed by DMF"
    );

    machine
        .pnp()
        .system_sleep(SystemPowerState::S3)
        .expect("sleeps");
    machine.pnp().system_resume().expect("resumes");
    assert_eq!(read(&handle), 2, "the power cycle reached the Module");

    handle.close();
    node.remove().expect("removed");
    machine.settle();
    assert!(machine.verifier().violations().is_empty());
    assert!(machine.pool().outstanding().is_empty());
}

#[test]
fn every_allocation_failure_unwinds_cleanly() {
    // The driver's start and removal with the 1st, 2nd, 3rd … allocation failing, one per run:
    // each run must end with a clean verdict (no bug check, no violation, nothing left).
    let report = simulator::alloc_sweep(|fail_at| {
        let machine = Machine::builder().verifier(VerifierMode::Record).build();
        {
            let _bound = machine.enter();
            simulator::install_driver(&machine, SERVICE, driver_config());
            machine.faults().fail_nth(FaultPoint::Allocation, fail_at);
            if let Ok(node) = machine.pnp().plug_in(StackSpec::new(HARDWARE_ID, SERVICE)) {
                node.remove().expect("removed");
            }
        }
        machine
    })
    .unwrap_or_else(|problems| panic!("{problems}"));
    assert!(report.points > 0, "the start allocates: {report:?}");
}
