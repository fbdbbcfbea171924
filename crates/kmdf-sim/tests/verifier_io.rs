//! Verifier rules about requests that never complete: a request the driver drops without
//! completing it, and a removal that waits for a request forever (bug check 0x9F). Record mode;
//! every test ends on the virtual clock, none can hang.

#![allow(clippy::many_single_char_names)] // reason: o/r/h/q/m are the test's vocabulary

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kmdf_sim::device::Device;
use kmdf_sim::driver::{self, DriverConfig};
use kmdf_sim::guid::Guid;
use kmdf_sim::io::{Access, AppConfig, Application, DispatchType, Queue, QueueConfig, Request};
use kmdf_sim::object::ObjectAttributes;
use kmdf_sim::pnp::{DeviceNode, StackSpec};
use kmdf_sim::verifier::DEFAULT_POWER_WATCHDOG;
use kmdf_sim::{Machine, Rule, Status, VerifierMode};

const CLASS: Guid = Guid::new(0x5151_7373, 0x1111, 0x2222, [9; 8]);
/// `CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS)`.
const IOCTL_LOSE: u32 = 0x0022_2000;

/// What the driver saw: the queue's name and the requests it kept.
#[derive(Default)]
struct Seen {
    queue: Mutex<String>,
    ids: Mutex<Vec<u64>>,
    kept: Mutex<Vec<Request>>,
}

/// A function driver `fdo` whose default queue (parallel; power-managed as `power_managed`
/// says) takes every IOCTL and then either drops it (`keep = false`) or keeps it forever.
fn plug(m: &Machine, power_managed: bool, keep: bool) -> (DeviceNode, String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s = Arc::clone(&seen);
    driver::install(
        m,
        "fdo",
        DriverConfig::new(move |_d, init| {
            let dev = Device::create(init, ObjectAttributes::new())?;
            dev.create_interface(CLASS, None)?;
            let s = Arc::clone(&s);
            Queue::create(
                &dev,
                QueueConfig::new_default(DispatchType::Parallel)
                    .power_managed(power_managed)
                    .on_device_control(move |q, r, _out, _in, _code| {
                        q.name().clone_into(&mut s.queue.lock().unwrap());
                        s.ids.lock().unwrap().push(r.id());
                        if keep {
                            s.kept.lock().unwrap().push(r);
                        } else {
                            drop(r); // the bug: neither completed, forwarded nor requeued
                        }
                    }),
                ObjectAttributes::new(),
            )?;
            Ok(())
        }),
    );
    let node = m
        .pnp()
        .plug_in(StackSpec::new("ROOT\\LOSE", "fdo"))
        .unwrap();
    let link = node.function_device().unwrap().interfaces()[0].clone();
    (node, link, seen)
}

fn app(m: &Machine) -> Application {
    Application::new(
        m,
        AppConfig {
            administrator: false,
            name: "user.exe".into(),
        },
    )
}

/// The driver drops the only handle to a request it was given: reported at once, naming the
/// request (id, major function, control code) and where the driver took it. The request stays
/// outstanding, as in the kernel, until teardown cancels it.
#[test]
fn verifier_request_dropped_without_completion_is_reported() {
    let m = Machine::builder().verifier(VerifierMode::Record).build();
    let (node, link, seen) = plug(&m, false, false);
    let h = app(&m).open(&link, Access::READ_WRITE).unwrap();
    let o = h.device_io_control_overlapped(IOCTL_LOSE, &[], 0).unwrap();
    let id = seen.ids.lock().unwrap()[0];
    let queue = seen.queue.lock().unwrap().clone();

    let v = m
        .verifier()
        .violations_of(Rule::RequestDroppedWithoutCompletion);
    assert_eq!(v.len(), 1, "{:#?}", m.verifier().violations());
    let v = &v[0];
    assert_eq!(v.driver, "fdo");
    assert_eq!(v.object, format!("WDFREQUEST #{id}"));
    assert_eq!(
        v.message,
        format!(
            "WDFREQUEST #{id} (IRP_MJ_DEVICE_CONTROL, IOCTL 0x00222000) taken in \
             EvtIoDeviceControl from queue '{queue}' was dropped without being completed, \
             forwarded or requeued: the driver holds no handle to it any more, so it never \
             completes and the removal of its device would wait for it forever \
             (WdfRequestComplete, WdfRequestForwardToIoQueue, WdfRequestRequeue or \
             WdfRequestSend before letting go)"
        )
    );
    assert!(v.to_string().starts_with(
        "DRIVER_VERIFIER_DETECTED_VIOLATION: RequestDroppedWithoutCompletion: driver 'fdo', "
    ));
    assert!(o.result().is_none(), "the request is still outstanding");

    // The non-power-managed queue does not hold up the removal; teardown cancels the request.
    node.remove().unwrap();
    assert_eq!(o.result().unwrap().unwrap_err(), Status::CANCELLED);
    assert_eq!(
        m.verifier()
            .violations_of(Rule::RequestPendingAtTeardown)
            .len(),
        1
    );
    assert_eq!(m.verifier().violations().len(), 2);
}

/// In Panic mode (the default) the drop is the bug check: the test fails at the driver's drop,
/// with the report's text, instead of hanging later in the removal.
#[test]
fn verifier_request_dropped_without_completion_bug_checks_at_the_drop() {
    let m = Machine::new();
    let (_node, link, _seen) = plug(&m, true, false);
    let h = app(&m).open(&link, Access::READ_WRITE).unwrap();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = h.device_io_control_overlapped(IOCTL_LOSE, &[], 0);
    }))
    .unwrap_err();
    let text = panic.downcast_ref::<String>().unwrap();
    assert!(
        text.starts_with(
            "DRIVER_VERIFIER_DETECTED_VIOLATION: RequestDroppedWithoutCompletion: driver 'fdo', \
             object 'WDFREQUEST #"
        ) && text.contains("(IRP_MJ_DEVICE_CONTROL, IOCTL 0x00222000) taken in EvtIoDeviceControl"),
        "{text}"
    );
    // Leave the machine without removing the device (the request is still outstanding).
    m.verifier().set_mode(VerifierMode::Record);
}

/// A removal that waits for a request the driver never completes (kept, no `EvtIoStop`) is
/// reported like bug check 0x9F once the power watchdog's ten minutes of virtual time have
/// passed — on a Manual clock, which advances by itself because nothing else could end the
/// wait — naming the stuck operation and the request; the removal then finishes.
#[test]
fn verifier_stuck_removal_reported_as_bugcheck_9f() {
    let m = Machine::builder().verifier(VerifierMode::Record).build();
    assert_eq!(m.verifier().power_watchdog(), Some(DEFAULT_POWER_WATCHDOG));
    assert_eq!(DEFAULT_POWER_WATCHDOG, Duration::from_mins(10));
    let (node, link, seen) = plug(&m, true, true);
    let h = app(&m).open(&link, Access::READ_WRITE).unwrap();
    let o = h.device_io_control_overlapped(IOCTL_LOSE, &[], 0).unwrap();
    let id = seen.ids.lock().unwrap()[0];
    let queue = seen.queue.lock().unwrap().clone();
    let device = node.function_device().unwrap().name().to_owned();
    assert_eq!(m.now(), Duration::ZERO);

    node.remove().unwrap();

    assert_eq!(
        m.now(),
        DEFAULT_POWER_WATCHDOG,
        "the removal waited exactly the bound"
    );
    let v = m.verifier().violations_of(Rule::PowerStateFailure);
    assert_eq!(v.len(), 1, "{:#?}", m.verifier().violations());
    let v = &v[0];
    assert_eq!(v.driver, "fdo");
    assert_eq!(v.object, queue);
    assert_eq!(
        v.message,
        format!(
            "the device removal of {device}: queue '{queue}' stop (EvtIoStop(Purge)) did not \
             finish within 600s of virtual time: waiting for WDFREQUEST #{id} \
             (IRP_MJ_DEVICE_CONTROL, IOCTL 0x00222000) taken in EvtIoDeviceControl from queue \
             '{queue}', neither completed nor stop-acknowledged (a device object has been \
             blocking an IRP for too long: bug check 0x9F, parameter 1 = 0x3)"
        )
    );
    assert!(v.to_string().starts_with(
        "DRIVER_POWER_STATE_FAILURE (0x9F): PowerStateFailure: driver 'fdo', object '"
    ));
    // The removal went on: teardown flagged and cancelled the request.
    assert_eq!(o.result().unwrap().unwrap_err(), Status::CANCELLED);
    assert_eq!(
        m.verifier()
            .violations_of(Rule::RequestPendingAtTeardown)
            .len(),
        1
    );
    // The driver's handle is stale now: dropping it is no further violation.
    drop(seen.kept.lock().unwrap().pop());
    assert_eq!(m.verifier().violations().len(), 2);
}

/// The bound is configurable; a short one ends a stuck power-down (idle to Dx) the same way.
#[test]
fn verifier_stuck_power_down_reported_with_a_configured_watchdog() {
    let m = Machine::builder()
        .verifier(VerifierMode::Record)
        .power_watchdog(Some(Duration::from_secs(30)))
        .build();
    let (node, link, seen) = plug(&m, true, true);
    let h = app(&m).open(&link, Access::READ_WRITE).unwrap();
    let _o = h.device_io_control_overlapped(IOCTL_LOSE, &[], 0).unwrap();
    let _ = node.idle();
    assert_eq!(m.now(), Duration::from_secs(30));
    let v = m.verifier().violations_of(Rule::PowerStateFailure);
    assert_eq!(v.len(), 1, "{:#?}", m.verifier().violations());
    assert!(
        v[0].message.starts_with("the power-down of ")
            && v[0]
                .message
                .contains("stop (EvtIoStop(Suspend)) did not finish within 30s"),
        "{}",
        v[0]
    );
    m.verifier().set_power_watchdog(None);
    assert_eq!(m.verifier().power_watchdog(), None);
    // Complete the kept request so that nothing is left outstanding.
    seen.kept
        .lock()
        .unwrap()
        .pop()
        .unwrap()
        .complete(Status::SUCCESS);
}
