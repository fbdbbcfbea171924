//! S0 idle on the virtual clock (`WdfDeviceAssignS0IdleSettings` `IdleTimeout`, kmdf-sequences
//! §2.2, §2.3, §2.9, §6.3): the stack powers down after the timeout with no power-managed I/O
//! and no power reference, and comes back to D0 for a request or `WdfDeviceStopIdle`.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kmdf_sim::device::{Device, S0IdleSettings};
use kmdf_sim::driver::{self, DriverConfig};
use kmdf_sim::guid::Guid;
use kmdf_sim::io::{
    Access, AppConfig, Application, DispatchType, Handle, Queue, QueueConfig, Request,
};
use kmdf_sim::object::{live_objects, ObjectAttributes};
use kmdf_sim::pnp::{DeviceNode, DevicePowerState, StackSpec, SystemPowerState};
use kmdf_sim::{Machine, Status};

const CLASS: Guid = Guid::new(0x1D1E_0000, 0x1111, 0x2222, [3; 8]);
const IOCTL_ECHO: u32 = (0x22 << 16) | (0x800 << 2);
const IOCTL_PARK: u32 = (0x22 << 16) | (0x801 << 2);
const IOCTL_MANUAL: u32 = (0x22 << 16) | (0x802 << 2);
const TIMEOUT: Duration = Duration::from_secs(5);

type Held = Arc<Mutex<Vec<Request>>>;

/// A marker hung on the machine: it dies with the machine's core (a leak test).
struct Marker;

struct Rig {
    m: Machine,
    node: DeviceNode,
    h: Handle,
    held: Held,
}

/// A function driver with a power-managed parallel default queue (echo / park) and a
/// non-power-managed manual queue for IOCTL_MANUAL, idle timeout TIMEOUT into `dx`.
fn rig(dx: DevicePowerState) -> Rig {
    let m = Machine::new();
    let held: Held = Arc::default();
    let h2 = Arc::clone(&held);
    driver::install(
        &m,
        "fdo",
        DriverConfig::new(move |_d, init| {
            init.pnp.d0_entry = Some(Arc::new(|_dev: &Device, _prev| Status::SUCCESS));
            init.pnp.d0_exit = Some(Arc::new(|_dev: &Device, _target| Status::SUCCESS));
            let dev = Device::create(init, ObjectAttributes::new())?;
            dev.create_interface(CLASS, None)?;
            dev.assign_s0_idle_settings(S0IdleSettings {
                can_wake: false,
                dx_state: dx,
            });
            dev.assign_s0_idle_timeout(Some(TIMEOUT));
            let manual = Queue::create(
                &dev,
                QueueConfig::new(DispatchType::Manual).power_managed(false),
                ObjectAttributes::new(),
            )?;
            let h2 = Arc::clone(&h2);
            Queue::create(
                &dev,
                QueueConfig::new_default(DispatchType::Parallel).on_device_control(
                    move |_q, r, _o, _i, code| match code {
                        IOCTL_ECHO => r.complete_with_information(Status::SUCCESS, 0),
                        IOCTL_MANUAL => {
                            if let Err((r, s)) = r.forward_to_queue(&manual) {
                                r.complete(s);
                            }
                        }
                        _ => h2.lock().unwrap().push(r),
                    },
                ),
                ObjectAttributes::new(),
            )?;
            Ok(())
        }),
    );
    let node = m
        .pnp()
        .plug_in(StackSpec::new("ROOT\\IDLE", "fdo"))
        .unwrap();
    let h = Application::new(
        &m,
        AppConfig {
            administrator: false,
            name: "idle.exe".into(),
        },
    )
    .open_interface(CLASS, Access::READ_WRITE)
    .unwrap();
    Rig { m, node, h, held }
}

impl Rig {
    fn fdo(&self) -> Device {
        self.node.function_device().unwrap()
    }

    fn d0_exits(&self) -> Vec<String> {
        self.m
            .trace()
            .callbacks_for("fdo")
            .into_iter()
            .filter(|c| c.starts_with("EvtDeviceD0E"))
            .collect()
    }

    fn ms(&self, ms: u64) {
        self.m.advance(Duration::from_millis(ms));
    }
}

#[test]
fn idles_after_the_timeout_and_a_request_brings_it_back() {
    let r = rig(DevicePowerState::D3);
    assert_eq!(r.fdo().s0_idle_timeout(), Some(TIMEOUT));
    r.ms(4_999);
    assert!(!r.node.is_idle());
    assert!(r.fdo().is_in_d0());
    r.ms(1);
    assert!(r.node.is_idle(), "idle exactly at the timeout");
    assert_eq!(r.fdo().power_state(), DevicePowerState::D3);
    assert_eq!(
        r.d0_exits(),
        vec!["EvtDeviceD0Entry(D3Final)", "EvtDeviceD0Exit(D3)"]
    );

    // A request for the power-managed queue: back to D0 first, then delivered.
    r.h.device_io_control(IOCTL_ECHO, &[], 0).unwrap();
    assert!(!r.node.is_idle());
    assert_eq!(
        r.d0_exits(),
        vec![
            "EvtDeviceD0Entry(D3Final)",
            "EvtDeviceD0Exit(D3)",
            "EvtDeviceD0Entry(D3)"
        ]
    );
    let cbs = r.m.trace().callbacks_for("fdo");
    let entry = cbs
        .iter()
        .rposition(|c| c == "EvtDeviceD0Entry(D3)")
        .unwrap();
    let ioctl = cbs.iter().rposition(|c| c == "EvtIoDeviceControl").unwrap();
    assert!(entry < ioctl, "{cbs:?}");
    // And idle again one timeout after that request.
    r.ms(4_999);
    assert!(!r.node.is_idle());
    r.ms(1);
    assert!(r.node.is_idle());
    assert!(r.m.verifier().violations().is_empty());
}

#[test]
fn activity_restarts_the_count_and_outstanding_requests_keep_it_in_d0() {
    let r = rig(DevicePowerState::D2);
    // A request every 3 s for a minute: never idle.
    for _ in 0..20 {
        r.ms(3_000);
        r.h.device_io_control(IOCTL_ECHO, &[], 0).unwrap();
        assert!(!r.node.is_idle());
    }
    r.ms(5_000);
    assert!(r.node.is_idle());
    assert_eq!(r.fdo().power_state(), DevicePowerState::D2);
    assert!(r.d0_exits().contains(&"EvtDeviceD0Exit(D2)".to_owned()));

    // A request the driver holds (presented by the power-managed queue) keeps it in D0.
    let o =
        r.h.device_io_control_overlapped(IOCTL_PARK, &[], 0)
            .unwrap();
    assert!(!r.node.is_idle());
    r.ms(60_000);
    assert!(!r.node.is_idle() && r.fdo().is_in_d0());
    r.held
        .lock()
        .unwrap()
        .pop()
        .unwrap()
        .complete(Status::SUCCESS);
    assert!(o.is_complete());
    r.ms(4_999);
    assert!(!r.node.is_idle());
    r.ms(1);
    assert!(r.node.is_idle());

    // A request parked in a non-power-managed queue does not count (it wakes the stack on its
    // way through the power-managed default queue, though).
    let parked =
        r.h.device_io_control_overlapped(IOCTL_MANUAL, &[], 0)
            .unwrap();
    assert!(!parked.is_complete());
    r.ms(5_000);
    assert!(r.node.is_idle());
    assert!(!parked.is_complete());
    assert!(r.m.verifier().violations().is_empty());
}

#[test]
fn power_references_hold_d0_and_stop_idle_wakes_the_stack() {
    let r = rig(DevicePowerState::D3);
    let dev = r.fdo();
    let _g = r.m.enter();
    dev.stop_idle().unwrap();
    r.ms(60_000);
    assert!(!r.node.is_idle());
    dev.resume_idle();
    r.ms(4_999);
    assert!(!r.node.is_idle());
    r.ms(1);
    assert!(r.node.is_idle());
    // WdfDeviceStopIdle in Dx: back to D0 before it returns (PASSIVE, outside PnP).
    dev.stop_idle().unwrap();
    assert!(!r.node.is_idle() && dev.is_in_d0());
    r.ms(10_000);
    assert!(!r.node.is_idle());
    dev.resume_idle();
    r.ms(5_000);
    assert!(r.node.is_idle());
    // Turning the timeout off: no automatic idling after the next wake.
    dev.assign_s0_idle_timeout(None);
    r.h.device_io_control(IOCTL_ECHO, &[], 0).unwrap();
    r.ms(60_000);
    assert!(!r.node.is_idle());
    // And on again: counts from now.
    dev.assign_s0_idle_timeout(Some(Duration::from_secs(1)));
    r.ms(1_000);
    assert!(r.node.is_idle());
    assert!(r.m.verifier().violations().is_empty());
}

#[test]
fn no_idle_while_the_system_sleeps_and_none_after_removal() {
    let r = rig(DevicePowerState::D3);
    r.ms(2_000);
    r.m.pnp().system_sleep(SystemPowerState::S3).unwrap();
    r.ms(60_000);
    assert!(!r.node.is_idle(), "asleep with the system, not idle");
    r.m.pnp().system_resume().unwrap();
    assert!(r.fdo().is_in_d0());
    r.ms(5_000);
    assert!(r.node.is_idle(), "counts again from the return to D0");

    // Removal; the idle timer dies with the stack and nothing leaks, not even the machine.
    let Rig { m, node, h, held } = r;
    let alive: Weak<Marker> = Arc::downgrade(&m.extension(|| Marker));
    h.device_io_control(IOCTL_ECHO, &[], 0).unwrap();
    node.remove().unwrap();
    m.advance(Duration::from_mins(1));
    assert!(!node.is_idle());
    assert!(live_objects(&m).is_empty(), "{:?}", live_objects(&m));
    assert!(m.verifier().violations().is_empty());
    drop((h, held, node));
    drop(m);
    assert!(
        alive.upgrade().is_none(),
        "the idle timer leaked the machine"
    );
}
