//! The I/O layer: forwarding, local and remote I/O targets, driver-created requests, fault
//! injection and unplug with I/O in flight (kmdf-sequences §6.8, §7).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kmdf_sim::device::Device;
use kmdf_sim::driver::{self, DriverConfig};
use kmdf_sim::exec::current_irql;
use kmdf_sim::guid::Guid;
use kmdf_sim::io::{
    self, Access, AppConfig, Application, DispatchType, IoFaultSpec, IoTarget, OpenParams, Queue,
    QueueConfig, Request, RequestType, SendOptions, TargetState, TargetStopAction,
};
use kmdf_sim::object::ObjectAttributes;
use kmdf_sim::pnp::{DeviceNode, NodeState, StackSpec};
use kmdf_sim::{ClockMode, Irql, Machine, Status};

const CLASS: Guid = Guid::new(0x5555_6666, 0x7777, 0x8888, [9; 8]);
const IOCTL_ECHO: u32 = (0x22 << 16) | (0x800 << 2);
const IOCTL_PARK: u32 = (0x22 << 16) | (0x801 << 2);

type Held = Arc<Mutex<Vec<Request>>>;

fn app(m: &Machine) -> Application {
    Application::new(
        m,
        AppConfig {
            administrator: false,
            name: "app.exe".into(),
        },
    )
}

/// A function driver: echo / park IOCTLs on a parallel default queue, interface CLASS.
fn install_fdo(m: &Machine, held: &Held) {
    let held = Arc::clone(held);
    driver::install(
        m,
        "fdo",
        DriverConfig::new(move |_d, init| {
            let dev = Device::create(init, ObjectAttributes::new())?;
            dev.create_interface(CLASS, None)?;
            let held = Arc::clone(&held);
            Queue::create(
                &dev,
                QueueConfig::new_default(DispatchType::Parallel)
                    .on_device_control(move |_q, r, _o, _i, code| {
                        if code == IOCTL_PARK {
                            held.lock().unwrap().push(r);
                            return;
                        }
                        let data = r.input_buffer(1).unwrap_or_default();
                        let n = data.len();
                        let _ = r.with_output_buffer(n.max(1), |b| b[..n].copy_from_slice(&data));
                        r.complete_with_information(Status::SUCCESS, n);
                    })
                    .on_stop(fdo_io_stop),
                ObjectAttributes::new(),
            )?;
            Ok(())
        }),
    );
}

/// EvtIoStop of the function driver's queue: on removal it completes what it holds.
fn fdo_io_stop(_q: &Queue, r: Request, flags: kmdf_sim::io::StopFlags) {
    if flags.action == kmdf_sim::pnp::StopAction::Purge {
        r.complete(Status::DEVICE_REMOVED);
    } else {
        r.stop_acknowledge(true);
    }
}

/// An upper filter whose default queue forwards IOCTLs with a completion routine that adds 100
/// to the information, and reads send-and-forget.
fn install_forwarding_filter(m: &Machine) {
    driver::install(
        m,
        "upper",
        DriverConfig::new(|_d, init| {
            init.set_filter();
            let dev = Device::create(init, ObjectAttributes::new())?;
            Queue::create(
                &dev,
                QueueConfig::new_default(DispatchType::Parallel)
                    .on_device_control(|q, r, _, _, _| {
                        let target = q.device().unwrap().io_target();
                        r.format_using_current_type();
                        r.set_completion_routine(|r, params| {
                            assert!(current_irql() <= Irql::Dispatch);
                            r.complete_with_information(params.status, params.information + 100);
                        });
                        if let Err(s) = r.send(&target, SendOptions::default()) {
                            r.complete(s);
                        }
                    })
                    .on_read(|q, r, _| {
                        let target = q.device().unwrap().io_target();
                        let opts = SendOptions {
                            send_and_forget: true,
                            ..SendOptions::default()
                        };
                        r.send(&target, opts).unwrap();
                    }),
                ObjectAttributes::new(),
            )?;
            Ok(())
        }),
    );
}

fn plug(m: &Machine, spec: StackSpec) -> (DeviceNode, String) {
    let node = m.pnp().plug_in(spec).unwrap();
    let link = node.function_device().unwrap().interfaces()[0].clone();
    (node, link)
}

#[test]
fn io_forward_with_completion_routine_and_send_and_forget() {
    let m = Machine::new();
    let held: Held = Arc::default();
    install_fdo(&m, &held);
    install_forwarding_filter(&m);
    let (_node, link) = plug(&m, StackSpec::new("ROOT\\X", "fdo").upper_filter("upper"));
    let h = app(&m).open(&link, Access::READ_WRITE).unwrap();
    let (out, n) = h.device_io_control(IOCTL_ECHO, b"abc", 8).unwrap();
    assert_eq!(
        n, 103,
        "the filter's completion routine saw the lower result"
    );
    assert_eq!(
        &out[..3],
        b"abc",
        "output truncated to min(information, length)"
    );
    // The read is sent and forgotten; the function driver has no read handler.
    assert_eq!(h.read(1).unwrap_err(), Status::INVALID_DEVICE_REQUEST);
    let cbs = m.trace().callbacks_for("upper");
    assert!(cbs.iter().any(|c| c == "CompletionRoutine"));
    assert!(m.verifier().violations().is_empty());
}

#[test]
fn io_local_target_at_bottom_reaches_the_bus_driver_and_stop_queues_requests() {
    let m = Machine::new();
    let held: Held = Arc::default();
    install_fdo(&m, &held);
    install_forwarding_filter(&m);
    let (node, link) = plug(&m, StackSpec::new("ROOT\\Y", "fdo").upper_filter("upper"));
    let fdo = node.function_device().unwrap();
    let upper = node.device("upper").unwrap();
    assert_eq!(upper.io_target().target_device(), Some(fdo.clone()));
    assert_eq!(fdo.io_target().target_device(), None);
    // The bus driver below the function driver fails unknown requests.
    let _g = m.enter();
    assert_eq!(
        fdo.io_target()
            .send_ioctl_synchronously(IOCTL_ECHO, b"x", 1, None)
            .unwrap_err(),
        Status::INVALID_DEVICE_REQUEST
    );
    // A stopped target holds requests until started.
    let t = upper.io_target();
    t.stop(TargetStopAction::LeaveSentIoPending);
    assert_eq!(t.state(), TargetState::Stopped);
    let h = app(&m).open(&link, Access::READ_WRITE).unwrap();
    let o = h.device_io_control_overlapped(IOCTL_ECHO, b"q", 4).unwrap();
    assert!(!o.is_complete());
    t.start();
    assert_eq!(o.result().unwrap().unwrap().1, 101);
}

#[test]
fn io_driver_created_request_send_sync_and_reuse() {
    let m = Machine::new();
    let held: Held = Arc::default();
    install_fdo(&m, &held);
    driver::install(
        &m,
        "upper",
        DriverConfig::new(|_d, init| {
            init.set_filter();
            Device::create(init, ObjectAttributes::new())?;
            Ok(())
        }),
    );
    let (node, _link) = plug(&m, StackSpec::new("ROOT\\Z", "fdo").upper_filter("upper"));
    let upper = node.device("upper").unwrap();
    let target = upper.io_target();
    let _g = m.enter();
    let req = Request::create(&upper).unwrap();
    req.format_for_ioctl(IOCTL_ECHO, b"one", 8).unwrap();
    assert_eq!(req.send_synchronously(&target, None), Status::SUCCESS);
    assert_eq!(req.information(), 3);
    assert_eq!(&req.output()[..3], b"one");
    // Reuse for an asynchronous send with a completion routine.
    req.reuse(Status::SUCCESS).unwrap();
    req.format_for_ioctl(IOCTL_PARK, &[], 0).unwrap();
    let seen: Arc<Mutex<Option<Status>>> = Arc::default();
    let s2 = Arc::clone(&seen);
    req.set_completion_routine(move |r, p| {
        *s2.lock().unwrap() = Some(p.status);
        drop(r);
    });
    req.send(&target, SendOptions::default()).unwrap();
    assert_eq!(
        req.reuse(Status::SUCCESS),
        Err(Status::INVALID_DEVICE_STATE),
        "still sent"
    );
    // Cancel the sent request: the function driver completes it with CANCELLED.
    assert!(
        !req.cancel_sent_request(),
        "no cancel routine in the lower driver"
    );
    let r = held.lock().unwrap().pop().unwrap();
    assert!(r.is_canceled());
    r.complete(Status::CANCELLED);
    assert_eq!(*seen.lock().unwrap(), Some(Status::CANCELLED));
    req.reuse(Status::SUCCESS).unwrap();
    req.delete().unwrap();
    // Send-and-forget is not allowed for driver-created requests.
    let req = Request::create(&upper).unwrap();
    let opts = SendOptions {
        send_and_forget: true,
        ..SendOptions::default()
    };
    assert_eq!(req.send(&target, opts), Err(Status::INVALID_PARAMETER));
}

#[test]
fn io_fault_injection_fail_delay_and_sync_timeout() {
    let m = Machine::builder().clock(ClockMode::AutoAdvance).build();
    let held: Held = Arc::default();
    install_fdo(&m, &held);
    let (node, link) = plug(&m, StackSpec::new("ROOT\\F", "fdo"));
    let fdo = node.function_device().unwrap();
    let h = app(&m).open(&link, Access::READ_WRITE).unwrap();
    io::inject_fault(
        &fdo,
        IoFaultSpec::fail(Status::INSUFFICIENT_RESOURCES)
            .only(RequestType::DeviceControl)
            .times(1),
    );
    assert_eq!(
        h.device_io_control(IOCTL_ECHO, b"a", 1).unwrap_err(),
        Status::INSUFFICIENT_RESOURCES
    );
    assert!(
        h.device_io_control(IOCTL_ECHO, b"a", 1).is_ok(),
        "only once"
    );
    // A 50 ms delay: the operation is pending until virtual time passes.
    io::inject_fault(&fdo, IoFaultSpec::delay(Duration::from_millis(50)).times(1));
    let t0 = m.now();
    let o = h.device_io_control_overlapped(IOCTL_ECHO, b"d", 1).unwrap();
    assert!(!o.is_complete());
    assert!(o.wait(Some(Duration::from_millis(10))).is_none());
    assert_eq!(o.wait(None).unwrap().unwrap().1, 1);
    assert!(m.now() >= t0 + Duration::from_millis(50));
    // A synchronous send with a timeout shorter than the delay: STATUS_IO_TIMEOUT.
    let other = m.pnp().plug_in(StackSpec::new("ROOT\\G", "fdo")).unwrap();
    let client = other.function_device().unwrap();
    let _g = m.enter();
    let remote = IoTarget::create(&client, ObjectAttributes::new()).unwrap();
    remote
        .open(OpenParams::by_name(&link, Access::READ_WRITE))
        .unwrap();
    io::inject_fault(&fdo, IoFaultSpec::delay(Duration::from_secs(5)).times(1));
    assert_eq!(
        remote
            .send_ioctl_synchronously(IOCTL_ECHO, b"x", 1, Some(Duration::from_millis(100)))
            .unwrap_err(),
        Status::IO_TIMEOUT
    );
    // A fault on the target itself.
    remote.inject_fault(IoFaultSpec::fail(Status::DEVICE_REMOVED).times(1));
    assert_eq!(
        remote
            .send_ioctl_synchronously(IOCTL_ECHO, b"x", 1, None)
            .unwrap_err(),
        Status::DEVICE_REMOVED
    );
    assert!(m.verifier().violations().is_empty());
}

#[test]
fn io_remote_target_open_errors_and_default_removal_handling() {
    let m = Machine::new();
    let held: Held = Arc::default();
    install_fdo(&m, &held);
    let (server, link) = plug(&m, StackSpec::new("ROOT\\SERVER", "fdo"));
    let client_node = m
        .pnp()
        .plug_in(StackSpec::new("ROOT\\CLIENT", "fdo"))
        .unwrap();
    let client = client_node.function_device().unwrap();
    let _g = m.enter();
    let t = IoTarget::create(&client, ObjectAttributes::new()).unwrap();
    assert_eq!(
        t.open(OpenParams::by_name("\\??\\missing", Access::READ)),
        Err(Status::NOT_FOUND)
    );
    t.open(OpenParams::by_name(&link, Access::READ_WRITE))
        .unwrap();
    assert_eq!(
        t.open(OpenParams::by_name(&link, Access::READ)),
        Err(Status::INVALID_DEVICE_STATE)
    );
    assert_eq!(t.state(), TargetState::Started);
    let (out, n) = t
        .send_ioctl_synchronously(IOCTL_ECHO, b"hi", 4, None)
        .unwrap();
    assert_eq!((out, n), (b"hi".to_vec(), 2));
    // No callbacks: query-remove closes for query-remove, cancel reopens, removal closes.
    server.query_remove().unwrap();
    assert_eq!(t.state(), TargetState::ClosedForQueryRemove);
    assert_eq!(
        t.send_ioctl_synchronously(IOCTL_ECHO, b"x", 1, None)
            .unwrap_err(),
        Status::INVALID_DEVICE_STATE
    );
    server.cancel_remove().unwrap();
    assert_eq!(t.state(), TargetState::Started);
    server.remove().unwrap();
    assert_eq!(t.state(), TargetState::Closed);
    assert_eq!(server.state(), NodeState::Removed);
}

#[test]
fn io_remote_target_callbacks_veto_reopen_and_close() {
    let m = Machine::new();
    let held: Held = Arc::default();
    install_fdo(&m, &held);
    let (server, link) = plug(&m, StackSpec::new("ROOT\\SERVER", "fdo"));
    let client_node = m
        .pnp()
        .plug_in(StackSpec::new("ROOT\\CLIENT", "fdo"))
        .unwrap();
    let client = client_node.function_device().unwrap();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let veto = Arc::new(Mutex::new(true));
    let _g = m.enter();
    let t = IoTarget::create(&client, ObjectAttributes::new()).unwrap();
    let (l1, l2, l3, v) = (
        Arc::clone(&log),
        Arc::clone(&log),
        Arc::clone(&log),
        Arc::clone(&veto),
    );
    let params = OpenParams::by_name(&link, Access::READ_WRITE)
        .on_query_remove(move |t| {
            assert_eq!(current_irql(), Irql::Passive);
            l1.lock().unwrap().push("query-remove".into());
            if *v.lock().unwrap() {
                Status::UNSUCCESSFUL
            } else {
                t.close_for_query_remove();
                Status::SUCCESS
            }
        })
        .on_remove_canceled(move |t| {
            l2.lock().unwrap().push("remove-canceled".into());
            t.open(OpenParams::reopen()).unwrap();
        })
        .on_remove_complete(move |t| {
            l3.lock().unwrap().push("remove-complete".into());
            t.close();
        });
    t.open(params).unwrap();
    // A parked request in the server is cancelled when the target closes for good.
    let req = Request::create(&client).unwrap();
    req.format_for_ioctl(IOCTL_PARK, &[], 0).unwrap();
    req.send(&t, SendOptions::default()).unwrap();
    assert_eq!(server.remove(), Err(Status::UNSUCCESSFUL), "vetoed");
    assert_eq!(server.state(), NodeState::Started);
    *veto.lock().unwrap() = false;
    server.query_remove().unwrap();
    server.cancel_remove().unwrap();
    assert_eq!(t.state(), TargetState::Started);
    let parked = held.lock().unwrap().pop().unwrap();
    parked.complete(Status::SUCCESS);
    server.remove().unwrap();
    assert_eq!(t.state(), TargetState::Closed);
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "query-remove",
            "query-remove",
            "remove-canceled",
            "query-remove",
            "remove-complete"
        ]
    );
    let cbs = m.trace().callbacks_for("fdo");
    assert!(cbs.iter().any(|c| c == "EvtIoTargetRemoveComplete"));
}

#[test]
fn io_surprise_removal_with_io_in_flight_completes_everything() {
    let m = Machine::new();
    let held: Held = Arc::default();
    install_fdo(&m, &held);
    install_forwarding_filter(&m);
    let (node, link) = plug(&m, StackSpec::new("ROOT\\U", "fdo").upper_filter("upper"));
    let h = app(&m).open(&link, Access::READ_WRITE).unwrap();
    let fdo = node.function_device().unwrap();
    // One request parked by the function driver (forwarded through the filter), one held by a
    // slow lower driver, one undelivered in a stopped queue.
    let parked = h.device_io_control_overlapped(IOCTL_PARK, &[], 0).unwrap();
    io::inject_fault(&fdo, IoFaultSpec::delay(Duration::from_mins(1)).times(1));
    let delayed = h.device_io_control_overlapped(IOCTL_ECHO, b"d", 1).unwrap();
    fdo.default_queue().unwrap().stop();
    let queued = h.device_io_control_overlapped(IOCTL_ECHO, b"q", 1).unwrap();
    // EvtIoStop(Purge) completes the parked request; the rest is cancelled by the framework.
    node.surprise_remove().unwrap();
    held.lock().unwrap().clear();
    assert!(delayed.is_complete() && queued.is_complete() && parked.is_complete());
    assert_eq!(parked.status(), Some(Status::DEVICE_REMOVED));
    assert_eq!(queued.status(), Some(Status::CANCELLED));
    assert_eq!(delayed.status(), Some(Status::CANCELLED));
    h.close();
    m.settle();
    assert_eq!(node.state(), NodeState::SurpriseRemoved);
}

#[test]
fn io_stack_top_target_enters_own_stack_at_the_top_without_a_create() {
    let m = Machine::new();
    let held: Held = Arc::default();
    install_fdo(&m, &held);
    install_forwarding_filter(&m);
    let (node, _link) = plug(
        &m,
        StackSpec::new("ROOT\\SELF", "fdo").upper_filter("upper"),
    );
    let fdo = node.function_device().unwrap();
    let upper = node.device("upper").unwrap();
    // Every create entering the top of the stack fails: opening on the existing device sends none.
    io::inject_fault(
        &upper,
        IoFaultSpec::fail(Status::ACCESS_DENIED).only(RequestType::Create),
    );
    let bound = m.enter();
    let t = IoTarget::create(&fdo, ObjectAttributes::new()).unwrap();
    t.open_stack_top(&fdo).unwrap();
    assert_eq!(t.state(), TargetState::Started);
    assert_eq!(t.target_device(), Some(upper.clone()), "the top, not fdo");
    assert!(t.file_object().is_none());
    assert_eq!(t.open_stack_top(&fdo), Err(Status::INVALID_DEVICE_STATE));
    // The IOCTL enters at the upper filter (its completion routine adds 100), then reaches fdo.
    let (out, n) = t
        .send_ioctl_synchronously(IOCTL_ECHO, b"hi", 8, None)
        .unwrap();
    assert_eq!(n, 102);
    assert_eq!(&out[..2], b"hi");
    assert!(m
        .trace()
        .callbacks_for("upper")
        .iter()
        .any(|c| c == "CompletionRoutine"));
    // No reopen parameters; close refuses further sends.
    t.close();
    assert_eq!(t.open(OpenParams::reopen()), Err(Status::INVALID_PARAMETER));
    assert_eq!(
        t.send_ioctl_synchronously(IOCTL_ECHO, b"x", 1, None)
            .unwrap_err(),
        Status::INVALID_DEVICE_STATE
    );
    t.object().unwrap().delete().unwrap();
    drop(bound);
    node.remove().unwrap();
    assert!(m.verifier().violations().is_empty());
}
