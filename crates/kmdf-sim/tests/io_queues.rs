//! The I/O layer: queues, requests, file objects and applications (kmdf-sequences §5, §6, §11).

#![allow(clippy::many_single_char_names)] // reason: o/r/h/q/m are the test's vocabulary

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kmdf_sim::device::Device;
use kmdf_sim::driver::{self, DriverConfig};
use kmdf_sim::exec::{current_irql, thread_name, Irql, IrqlGuard};
use kmdf_sim::guid::Guid;
use kmdf_sim::io::{
    self, Access, AppConfig, Application, DispatchType, FileConfig, Queue, QueueConfig, Request,
    RequestType, StopFlags,
};
use kmdf_sim::object::ObjectAttributes;
use kmdf_sim::pnp::{DeviceNode, StackSpec, StopAction};
use kmdf_sim::{Machine, Rule, Status, VerifierMode};

const CLASS: Guid = Guid::new(0x1111_2222, 0x3333, 0x4444, [5; 8]);

const fn ctl(function: u32, access: u32) -> u32 {
    (0x22 << 16) | (access << 14) | (function << 2)
}
const IOCTL_ECHO: u32 = ctl(0x800, 0);
const IOCTL_PARK: u32 = ctl(0x801, 0);
const IOCTL_WRITE_ONLY: u32 = ctl(0x802, 2);
const IOCTL_CANCELABLE: u32 = ctl(0x803, 0);

type Held = Arc<Mutex<Vec<Request>>>;
type Log = Arc<Mutex<Vec<String>>>;

fn log(l: &Log, s: impl Into<String>) {
    l.lock().unwrap().push(s.into());
}

fn install(
    m: &Machine,
    name: &'static str,
    filter: bool,
    file: Option<FileConfig>,
    setup: impl Fn(&Device) -> Result<(), Status> + Send + Sync + 'static,
) {
    driver::install(
        m,
        name,
        DriverConfig::new(move |_d, init| {
            if filter {
                init.set_filter();
            }
            if let Some(f) = &file {
                io::set_file_object_config(init, f.clone());
            }
            let dev = Device::create(init, ObjectAttributes::new())?;
            if !filter {
                dev.create_interface(CLASS, None)?;
            }
            setup(&dev)
        }),
    );
}

fn plug(m: &Machine, spec: StackSpec) -> (DeviceNode, String) {
    let node = m.pnp().plug_in(spec).unwrap();
    let link = node.function_device().unwrap().interfaces()[0].clone();
    (node, link)
}

fn app(m: &Machine, admin: bool) -> Application {
    Application::new(
        m,
        AppConfig {
            administrator: admin,
            name: if admin { "admin.exe" } else { "user.exe" }.into(),
        },
    )
}

/// The echo IOCTL handler used by most tests.
fn echo(held: Held) -> impl Fn(&Queue, Request, usize, usize, u32) + Send + Sync + 'static {
    move |_q, req, out, _inl, code| match code {
        IOCTL_ECHO => {
            let data = req.input_buffer(1).unwrap_or_default();
            let n = data.len().min(out);
            match req.with_output_buffer(n.max(1), |b| b[..n].copy_from_slice(&data[..n])) {
                Ok(()) => req.complete_with_information(Status::SUCCESS, n),
                Err(s) => req.complete(s),
            }
        }
        IOCTL_PARK | IOCTL_CANCELABLE => held.lock().unwrap().push(req),
        IOCTL_WRITE_ONLY => req.complete(Status::SUCCESS),
        _ => req.complete(Status::INVALID_DEVICE_REQUEST),
    }
}

fn echo_machine() -> (Machine, DeviceNode, String, Held) {
    let m = Machine::new();
    let held: Held = Arc::default();
    let h2 = Arc::clone(&held);
    install(&m, "fdo", false, None, move |dev| {
        Queue::create(
            dev,
            QueueConfig::new_default(DispatchType::Parallel)
                .on_device_control(echo(Arc::clone(&h2))),
            ObjectAttributes::new(),
        )?;
        Ok(())
    });
    let (node, link) = plug(&m, StackSpec::new("ROOT\\ECHO", "fdo"));
    (m, node, link, held)
}

#[test]
fn io_ioctl_flows_end_to_end_through_the_default_queue() {
    let (m, _node, link, _held) = echo_machine();
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    let (out, n) = h.device_io_control(IOCTL_ECHO, b"ping", 16).unwrap();
    assert_eq!((out, n), (b"ping".to_vec(), 4));
    assert!(m
        .trace()
        .callbacks_for("fdo")
        .iter()
        .any(|c| c == "EvtIoDeviceControl"));
    h.close();
    assert!(m.verifier().violations().is_empty());
}

#[test]
fn io_function_driver_without_queue_fails_with_invalid_device_request() {
    let m = Machine::new();
    install(&m, "fdo", false, None, |_| Ok(()));
    let (_node, link) = plug(&m, StackSpec::new("ROOT\\BARE", "fdo"));
    // No create callback in a function driver: the create succeeds.
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    assert_eq!(
        h.device_io_control(IOCTL_ECHO, b"x", 1).unwrap_err(),
        Status::INVALID_DEVICE_REQUEST
    );
    assert_eq!(h.read(4).unwrap_err(), Status::INVALID_DEVICE_REQUEST);
}

#[test]
fn io_filter_without_queue_forwards_down_and_defaults_to_non_power_managed() {
    let m = Machine::new();
    let held: Held = Arc::default();
    let h2 = Arc::clone(&held);
    install(&m, "fdo", false, None, move |dev| {
        Queue::create(
            dev,
            QueueConfig::new_default(DispatchType::Parallel)
                .on_device_control(echo(Arc::clone(&h2))),
            ObjectAttributes::new(),
        )?;
        Ok(())
    });
    let filter_queue: Arc<Mutex<Option<Queue>>> = Arc::default();
    let fq = Arc::clone(&filter_queue);
    install(&m, "upper", true, None, move |dev| {
        // A filter queue for reads only: its power-managed default is "no".
        let q = Queue::create(
            dev,
            QueueConfig::new(DispatchType::Parallel)
                .on_read(|_q, r, _| r.complete(Status::SUCCESS)),
            ObjectAttributes::new(),
        )?;
        *fq.lock().unwrap() = Some(q);
        Ok(())
    });
    let (node, link) = plug(&m, StackSpec::new("ROOT\\F", "fdo").upper_filter("upper"));
    assert!(!filter_queue
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .is_power_managed());
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    assert_eq!(h.device_io_control(IOCTL_ECHO, b"ab", 2).unwrap().1, 2);
    // The IOCTL passed the filter (no EvtIo* there) and reached the function driver.
    assert!(m
        .trace()
        .callbacks_for("upper")
        .iter()
        .all(|c| !c.starts_with("EvtIo")));
    assert_eq!(node.stack().len(), 2);
    let fdo = node.function_device().unwrap();
    assert!(fdo.default_queue().unwrap().is_power_managed());
}

#[test]
fn io_routing_zero_length_and_missing_callbacks() {
    let m = Machine::new();
    let seen: Log = Arc::default();
    let s2 = Arc::clone(&seen);
    install(&m, "fdo", false, None, move |dev| {
        let s3 = Arc::clone(&s2);
        let s4 = Arc::clone(&s2);
        Queue::create(
            dev,
            QueueConfig::new_default(DispatchType::Parallel).on_device_control(
                move |_q, r, _, _, _| {
                    log(&s3, "ioctl");
                    r.complete(Status::SUCCESS);
                },
            ),
            ObjectAttributes::new(),
        )?;
        let reads = Queue::create(
            dev,
            QueueConfig::new(DispatchType::Sequential).on_read(move |_q, r, len| {
                log(&s4, format!("read {len}"));
                r.with_output_buffer(len, |b| b.fill(0xAB)).unwrap();
                r.complete_with_information(Status::SUCCESS, len);
            }),
            ObjectAttributes::new(),
        )?;
        dev.configure_request_dispatching(&reads, RequestType::Read)?;
        assert_eq!(
            dev.configure_request_dispatching(&reads, RequestType::Create),
            Err(Status::INVALID_PARAMETER)
        );
        Ok(())
    });
    let (_node, link) = plug(&m, StackSpec::new("ROOT\\R", "fdo"));
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    assert_eq!(h.read(3).unwrap(), vec![0xAB; 3]);
    // Zero-length read: completed by the framework, never presented.
    assert_eq!(h.read(0).unwrap(), Vec::<u8>::new());
    h.device_io_control(IOCTL_ECHO, &[], 0).unwrap();
    // Writes go to the default queue, which has no EvtIoWrite and no EvtIoDefault.
    assert_eq!(h.write(b"w").unwrap_err(), Status::INVALID_DEVICE_REQUEST);
    assert_eq!(*seen.lock().unwrap(), vec!["read 3", "ioctl"]);
}

#[test]
fn io_sequential_presents_one_at_a_time_parallel_presents_all() {
    let m = Machine::new();
    let held: Held = Arc::default();
    let (h1, h2) = (Arc::clone(&held), Arc::clone(&held));
    install(&m, "fdo", false, None, move |dev| {
        let h1 = Arc::clone(&h1);
        let h2 = Arc::clone(&h2);
        let seq = Queue::create(
            dev,
            QueueConfig::new(DispatchType::Sequential)
                .on_read(move |_q, r, _| h1.lock().unwrap().push(r)),
            ObjectAttributes::new(),
        )?;
        dev.configure_request_dispatching(&seq, RequestType::Read)?;
        let par = Queue::create(
            dev,
            QueueConfig::new(DispatchType::Parallel)
                .on_write(move |_q, r, _| h2.lock().unwrap().push(r)),
            ObjectAttributes::new(),
        )?;
        dev.configure_request_dispatching(&par, RequestType::Write)?;
        Ok(())
    });
    let (node, link) = plug(&m, StackSpec::new("ROOT\\S", "fdo"));
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    let reads: Vec<_> = (0..3).map(|_| h.read_overlapped(1).unwrap()).collect();
    assert_eq!(held.lock().unwrap().len(), 1, "sequential: one presented");
    let fdo = node.function_device().unwrap();
    let seq = fdo.queues()[0].clone();
    assert_eq!(seq.status().queued, 2);
    // Completing from inside the test: the next one is presented.
    let r = held.lock().unwrap().pop().unwrap();
    r.complete_with_information(Status::SUCCESS, 1);
    assert!(reads[0].is_complete());
    assert_eq!(held.lock().unwrap().len(), 1);
    let r = held.lock().unwrap().pop().unwrap();
    r.complete(Status::SUCCESS);
    let r = held.lock().unwrap().pop().unwrap();
    r.complete(Status::SUCCESS);
    assert!(reads.iter().all(kmdf_sim::io::PendingIo::is_complete));
    let writes: Vec<_> = (0..3).map(|_| h.write_overlapped(b"x").unwrap()).collect();
    assert_eq!(held.lock().unwrap().len(), 3, "parallel: all presented");
    let all: Vec<Request> = held.lock().unwrap().drain(..).collect();
    for r in all {
        r.complete(Status::SUCCESS);
    }
    assert!(writes.iter().all(kmdf_sim::io::PendingIo::is_complete));
}

#[test]
fn io_power_managed_queue_holds_in_dx_evtiostop_and_evtioresume() {
    let m = Machine::new();
    let held: Held = Arc::default();
    let events: Log = Arc::default();
    let (h1, e1, e2) = (Arc::clone(&held), Arc::clone(&events), Arc::clone(&events));
    let nonpm: Held = Arc::default();
    let n1 = Arc::clone(&nonpm);
    install(&m, "fdo", false, None, move |dev| {
        let h1 = Arc::clone(&h1);
        let (e1, e2) = (Arc::clone(&e1), Arc::clone(&e2));
        Queue::create(
            dev,
            QueueConfig::new_default(DispatchType::Sequential)
                .on_read(move |_q, r, _| h1.lock().unwrap().push(r))
                .on_stop(move |_q, r, flags: StopFlags| {
                    log(&e1, format!("stop {:?} {:#x}", flags.action, flags.bits()));
                    r.stop_acknowledge(false);
                })
                .on_resume(move |_q, _r| log(&e2, "resume")),
            ObjectAttributes::new(),
        )?;
        let n1 = Arc::clone(&n1);
        let q = Queue::create(
            dev,
            QueueConfig::new(DispatchType::Parallel)
                .power_managed(false)
                .on_write(move |_q, r, _| n1.lock().unwrap().push(r)),
            ObjectAttributes::new(),
        )?;
        dev.configure_request_dispatching(&q, RequestType::Write)?;
        Ok(())
    });
    let (node, link) = plug(&m, StackSpec::new("ROOT\\P", "fdo"));
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    let first = h.read_overlapped(1).unwrap();
    assert_eq!(held.lock().unwrap().len(), 1);
    node.idle().unwrap();
    assert_eq!(*events.lock().unwrap(), vec!["stop Suspend 0x1"]);
    // The non-power-managed queue presents in Dx.
    let w = h.write_overlapped(b"x").unwrap();
    assert_eq!(nonpm.lock().unwrap().len(), 1);
    let r = nonpm.lock().unwrap().pop().unwrap();
    r.complete(Status::SUCCESS);
    assert!(w.is_complete());
    node.wake_from_idle().unwrap();
    assert_eq!(events.lock().unwrap().last().unwrap(), "resume");
    let r = held.lock().unwrap().pop().unwrap();
    r.complete(Status::SUCCESS);
    assert!(first.is_complete());
    // A read arriving while idle powers the device up and is presented after D0Entry.
    node.idle().unwrap();
    let second = h.read_overlapped(1).unwrap();
    assert!(!node.is_idle());
    assert_eq!(held.lock().unwrap().len(), 1);
    let r = held.lock().unwrap().pop().unwrap();
    r.complete(Status::SUCCESS);
    assert!(second.is_complete());
    assert!(m.verifier().violations().is_empty());
}

#[test]
fn io_manual_queue_retrieve_next_and_by_file_object() {
    let m = Machine::new();
    let manual: Arc<Mutex<Option<Queue>>> = Arc::default();
    let mq = Arc::clone(&manual);
    install(&m, "fdo", false, None, move |dev| {
        let q = Queue::create(
            dev,
            QueueConfig::new_default(DispatchType::Manual),
            ObjectAttributes::new(),
        )?;
        *mq.lock().unwrap() = Some(q);
        Ok(())
    });
    let (_node, link) = plug(&m, StackSpec::new("ROOT\\M", "fdo"));
    let a = app(&m, false);
    let (h1, h2) = (
        a.open(&link, Access::READ_WRITE).unwrap(),
        a.open(&link, Access::READ_WRITE).unwrap(),
    );
    let o1 = h1
        .device_io_control_overlapped(IOCTL_ECHO, b"1", 1)
        .unwrap();
    let o2 = h2
        .device_io_control_overlapped(IOCTL_ECHO, b"2", 1)
        .unwrap();
    let q = manual.lock().unwrap().clone().unwrap();
    assert_eq!(q.status().queued, 2);
    let r = q.retrieve_request_by_file_object(h2.file_object()).unwrap();
    assert_eq!(r.input_buffer(1).unwrap(), b"2");
    r.complete(Status::SUCCESS);
    assert!(o2.is_complete() && !o1.is_complete());
    let r = q.retrieve_next_request().unwrap();
    r.complete(Status::SUCCESS);
    assert!(o1.is_complete());
    assert_eq!(
        q.retrieve_next_request().unwrap_err(),
        Status::NO_MORE_ENTRIES
    );
}

#[test]
fn io_queue_stop_start_purge_and_drain() {
    let (m, node, link, held) = echo_machine();
    let q = node.function_device().unwrap().default_queue().unwrap();
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    q.stop();
    let o = h.device_io_control_overlapped(IOCTL_ECHO, b"a", 1).unwrap();
    assert!(!o.is_complete());
    q.start();
    assert!(o.is_complete());
    // Purge: undelivered requests cancelled; later arrivals refused.
    q.stop();
    let o = h.device_io_control_overlapped(IOCTL_ECHO, b"a", 1).unwrap();
    let done: Log = Arc::default();
    let d2 = Arc::clone(&done);
    q.purge(Some(Box::new(move |_q| log(&d2, "purged"))));
    assert_eq!(o.result().unwrap().unwrap_err(), Status::CANCELLED);
    assert_eq!(*done.lock().unwrap(), vec!["purged"]);
    assert_eq!(
        h.device_io_control(IOCTL_ECHO, b"a", 1).unwrap_err(),
        Status::INVALID_DEVICE_STATE
    );
    q.start();
    // Drain: queued requests still presented, new ones refused.
    let parked = h.device_io_control_overlapped(IOCTL_PARK, &[], 0).unwrap();
    q.drain(None);
    assert_eq!(
        h.device_io_control(IOCTL_ECHO, b"a", 1).unwrap_err(),
        Status::INVALID_DEVICE_STATE
    );
    let r = held.lock().unwrap().pop().unwrap();
    r.complete(Status::SUCCESS);
    assert!(parked.is_complete());
    q.drain_synchronously();
    q.start();
    assert!(h.device_io_control(IOCTL_ECHO, b"a", 1).is_ok());
}

#[test]
fn io_cancel_undelivered_and_cancelable_requests() {
    let (m, node, link, held) = echo_machine();
    let q = node.function_device().unwrap().default_queue().unwrap();
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    // Undelivered: completed by the framework with STATUS_CANCELLED.
    q.stop();
    let o = h.device_io_control_overlapped(IOCTL_ECHO, b"a", 1).unwrap();
    assert!(o.cancel());
    assert_eq!(o.result().unwrap().unwrap_err(), Status::CANCELLED);
    q.start();
    // Delivered and cancelable: the cancel routine runs and completes it.
    let o = h
        .device_io_control_overlapped(IOCTL_CANCELABLE, &[], 0)
        .unwrap();
    let r = held.lock().unwrap().pop().unwrap();
    let ran: Log = Arc::default();
    let r2 = Arc::clone(&ran);
    assert_eq!(
        r.mark_cancelable(move |req| {
            assert!(current_irql() <= Irql::Dispatch);
            log(&r2, "EvtRequestCancel");
            req.complete(Status::CANCELLED);
        }),
        Status::SUCCESS
    );
    assert_eq!(r.mark_cancelable(|_| {}), Status::INVALID_DEVICE_REQUEST);
    assert!(o.cancel());
    assert_eq!(o.result().unwrap().unwrap_err(), Status::CANCELLED);
    assert_eq!(ran.lock().unwrap().len(), 1);
    assert_eq!(r.unmark_cancelable(), Status::CANCELLED);
    drop(r);
    // Delivered without a cancel routine: only the flag; MarkCancelableEx then returns CANCELLED
    // and does not call the routine.
    let o = h
        .device_io_control_overlapped(IOCTL_CANCELABLE, &[], 0)
        .unwrap();
    let r = held.lock().unwrap().pop().unwrap();
    assert!(!o.cancel());
    assert!(r.is_canceled());
    assert_eq!(
        r.mark_cancelable(|_| panic!("must not run")),
        Status::CANCELLED
    );
    r.complete(Status::CANCELLED);
    assert_eq!(o.result().unwrap().unwrap_err(), Status::CANCELLED);
    assert!(m.verifier().violations().is_empty());
}

#[test]
fn verifier_request_completed_twice() {
    let m = Machine::builder().verifier(VerifierMode::Record).build();
    let held: Held = Arc::default();
    let h2 = Arc::clone(&held);
    install(&m, "fdo", false, None, move |dev| {
        Queue::create(
            dev,
            QueueConfig::new_default(DispatchType::Parallel)
                .on_device_control(echo(Arc::clone(&h2))),
            ObjectAttributes::new(),
        )?;
        Ok(())
    });
    let (_node, link) = plug(&m, StackSpec::new("ROOT\\T", "fdo"));
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    let o = h
        .device_io_control_overlapped(IOCTL_CANCELABLE, &[], 0)
        .unwrap();
    let r = held.lock().unwrap().pop().unwrap();
    // The classic bug: the cancel routine completes, and so does the normal path.
    r.mark_cancelable(|req| req.complete(Status::CANCELLED));
    o.cancel();
    r.complete(Status::SUCCESS);
    let v = m.verifier().violations_of(Rule::RequestCompletedTwice);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].driver, "<no driver>");
    assert_eq!(o.result().unwrap().unwrap_err(), Status::CANCELLED);
}

#[test]
fn verifier_request_pending_at_teardown() {
    let m = Machine::builder().verifier(VerifierMode::Record).build();
    let held: Held = Arc::default();
    let h2 = Arc::clone(&held);
    install(&m, "fdo", false, None, move |dev| {
        let h2 = Arc::clone(&h2);
        Queue::create(
            dev,
            QueueConfig::new_default(DispatchType::Parallel)
                .power_managed(false)
                .on_device_control(move |_q, r, _, _, _| h2.lock().unwrap().push(r)),
            ObjectAttributes::new(),
        )?;
        Ok(())
    });
    let (node, link) = plug(&m, StackSpec::new("ROOT\\L", "fdo"));
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    let o = h.device_io_control_overlapped(IOCTL_ECHO, &[], 0).unwrap();
    node.remove().unwrap();
    let v = m.verifier().violations_of(Rule::RequestPendingAtTeardown);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].driver, "fdo");
    assert_eq!(o.result().unwrap().unwrap_err(), Status::CANCELLED);
    // The driver's stale handle is now a double completion.
    let r = held.lock().unwrap().pop().unwrap();
    r.complete(Status::SUCCESS);
    assert_eq!(
        m.verifier()
            .violations_of(Rule::RequestCompletedTwice)
            .len(),
        1
    );
}

#[test]
fn io_file_create_cleanup_close_order_and_admin_check() {
    let m = Machine::new();
    let events: Log = Arc::default();
    let (e1, e2, e3) = (
        Arc::clone(&events),
        Arc::clone(&events),
        Arc::clone(&events),
    );
    let held: Held = Arc::default();
    let h2 = Arc::clone(&held);
    let file = FileConfig::new()
        .on_create(move |_dev, req, file| {
            assert_eq!(current_irql(), Irql::Passive);
            log(&e1, format!("create on {}", thread_name()));
            if file.is_administrator() && req.is_requestor_administrator() {
                req.complete(Status::SUCCESS);
            } else {
                req.complete(Status::ACCESS_DENIED);
            }
        })
        .on_cleanup(move |_f| log(&e2, "cleanup"))
        .on_close(move |_f| {
            assert_eq!(current_irql(), Irql::Passive);
            log(&e3, "close");
        });
    install(&m, "fdo", false, Some(file), move |dev| {
        Queue::create(
            dev,
            QueueConfig::new_default(DispatchType::Parallel)
                .on_device_control(echo(Arc::clone(&h2))),
            ObjectAttributes::new(),
        )?;
        Ok(())
    });
    let (_node, link) = plug(&m, StackSpec::new("ROOT\\A", "fdo"));
    assert_eq!(
        app(&m, false).open(&link, Access::READ).unwrap_err(),
        Status::ACCESS_DENIED
    );
    let h = app(&m, true).open(&link, Access::READ_WRITE).unwrap();
    let o = h.device_io_control_overlapped(IOCTL_PARK, &[], 0).unwrap();
    h.close();
    // Cleanup at once, close only after the outstanding request completed.
    assert_eq!(events.lock().unwrap().last().unwrap(), "cleanup");
    let r = held.lock().unwrap().pop().unwrap();
    r.complete(Status::SUCCESS);
    assert!(o.is_complete());
    m.settle();
    let ev = events.lock().unwrap().clone();
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert!(ev[0].starts_with("create on ") && ev[1].starts_with("create on "));
    assert_eq!(&ev[2..], ["cleanup", "close"]);
    assert_eq!(
        ev[0],
        format!("create on {}", thread_name()),
        "the opener's thread"
    );
}

#[test]
fn io_access_bits_are_checked_before_any_driver_sees_the_ioctl() {
    let (m, _node, link, _held) = echo_machine();
    let h = app(&m, false).open(&link, Access::READ).unwrap();
    let before = m.trace().callbacks_for("fdo").len();
    assert_eq!(
        h.device_io_control(IOCTL_WRITE_ONLY, &[], 0).unwrap_err(),
        Status::ACCESS_DENIED
    );
    assert_eq!(m.trace().callbacks_for("fdo").len(), before);
    let hw = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    assert!(hw.device_io_control(IOCTL_WRITE_ONLY, &[], 0).is_ok());
    assert_eq!(
        h.file_object().requestor_mode(),
        kmdf_sim::io::RequestorMode::User
    );
}

#[test]
fn io_buffer_rules_and_irql_limits() {
    let m = Machine::builder().verifier(VerifierMode::Record).build();
    let results: Log = Arc::default();
    let r2 = Arc::clone(&results);
    install(&m, "fdo", false, None, move |dev| {
        let r2 = Arc::clone(&r2);
        Queue::create(
            dev,
            QueueConfig::new_default(DispatchType::Parallel).on_device_control(
                move |q, req, _, _, _| {
                    log(&r2, format!("{:?}", req.input_buffer(8).unwrap_err()));
                    log(
                        &r2,
                        format!("{:?}", req.with_output_buffer(1, |_| ()).unwrap_err()),
                    );
                    let target = q.device().unwrap().io_target();
                    let _irql = IrqlGuard::raise(Irql::Dispatch);
                    log(&r2, format!("{:?}", req.send_synchronously(&target, None)));
                    req.complete(Status::SUCCESS);
                },
            ),
            ObjectAttributes::new(),
        )?;
        Ok(())
    });
    let (_node, link) = plug(&m, StackSpec::new("ROOT\\B", "fdo"));
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    h.device_io_control(IOCTL_ECHO, b"abc", 0).unwrap();
    assert_eq!(
        *results.lock().unwrap(),
        vec![
            "STATUS_BUFFER_TOO_SMALL",
            "STATUS_BUFFER_TOO_SMALL",
            "STATUS_INVALID_DEVICE_STATE"
        ]
    );
    assert_eq!(m.verifier().violations_of(Rule::IrqlTooHigh).len(), 1);
}

#[test]
fn io_evtiostop_purge_on_removal_and_late_arrivals() {
    let m = Machine::new();
    let held: Held = Arc::default();
    let events: Log = Arc::default();
    let (h1, e1) = (Arc::clone(&held), Arc::clone(&events));
    install(&m, "fdo", false, None, move |dev| {
        let h1 = Arc::clone(&h1);
        let e1 = Arc::clone(&e1);
        Queue::create(
            dev,
            QueueConfig::new_default(DispatchType::Sequential)
                .on_device_control(move |_q, r, _, _, _| h1.lock().unwrap().push(r))
                .on_stop(move |_q, r, flags| {
                    log(&e1, format!("{:?}", flags.action));
                    assert_eq!(flags.action, StopAction::Purge);
                    r.complete(Status::CANCELLED);
                }),
            ObjectAttributes::new(),
        )?;
        Ok(())
    });
    let (node, link) = plug(&m, StackSpec::new("ROOT\\E", "fdo"));
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    let a = h.device_io_control_overlapped(IOCTL_ECHO, &[], 0).unwrap();
    let b = h.device_io_control_overlapped(IOCTL_ECHO, &[], 0).unwrap();
    node.remove().unwrap();
    assert_eq!(*events.lock().unwrap(), vec!["Purge"]);
    assert_eq!(a.result().unwrap().unwrap_err(), Status::CANCELLED);
    assert_eq!(
        b.result().unwrap().unwrap_err(),
        Status::CANCELLED,
        "undelivered"
    );
    held.lock().unwrap().clear();
    assert_eq!(
        h.device_io_control(IOCTL_ECHO, &[], 0).unwrap_err(),
        Status::DEVICE_REMOVED
    );
    let _ = Duration::ZERO;
}
