//! More of the I/O layer and of object lifetimes: `WdfIoQueueFindRequest` +
//! `WdfIoQueueRetrieveFoundRequest`, `WdfIoQueueStopAndPurge`, `EvtIoInCallerContext` +
//! `WdfDeviceEnqueueRequest`, no leaks after `WdfDeviceSetFailed` or a deferred close, and
//! application handles at removal (kmdf-sequences §2.5, §6.1, §6.4, §6.6, §7.3, §11).

#![allow(clippy::many_single_char_names)] // reason: o/r/h/q/m are the test's vocabulary

use std::sync::{Arc, Mutex, Weak};

use kmdf_sim::device::Device;
use kmdf_sim::driver::{self, DriverConfig};
use kmdf_sim::exec::{current_irql, thread_name, Irql};
use kmdf_sim::guid::Guid;
use kmdf_sim::io::{
    self, Access, AppConfig, Application, DispatchType, FileConfig, IoTarget, OpenParams, Queue,
    QueueConfig, Request, TargetState,
};
use kmdf_sim::object::{live_objects, ObjectAttributes};
use kmdf_sim::pnp::{DeviceNode, FailedAction, NodeState, StackSpec};
use kmdf_sim::{Machine, Status};

const CLASS: Guid = Guid::new(0x5151_7272, 0x3333, 0x4444, [9; 8]);

const fn ctl(function: u32) -> u32 {
    (0x22 << 16) | (function << 2)
}
const IOCTL_ECHO: u32 = ctl(0x800);
const IOCTL_PARK: u32 = ctl(0x801);
const IOCTL_CANCELABLE: u32 = ctl(0x802);
const IOCTL_ADMIN_ONLY: u32 = ctl(0x803);

type Held = Arc<Mutex<Vec<Request>>>;
type Log = Arc<Mutex<Vec<String>>>;

fn log(l: &Log, s: impl Into<String>) {
    l.lock().unwrap().push(s.into());
}

fn take(l: &Log) -> Vec<String> {
    std::mem::take(&mut *l.lock().unwrap())
}

/// A marker hung on the machine: it dies with the machine's core (a leak test).
struct Marker;

fn marker(m: &Machine) -> Weak<Marker> {
    Arc::downgrade(&m.extension(|| Marker))
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

/// IOCTL handler: echo completes, park holds, cancelable parks with a cancel routine.
fn handler(held: Held) -> impl Fn(&Queue, Request, usize, usize, u32) + Send + Sync + 'static {
    move |_q, r, _o, _i, code| match code {
        IOCTL_ECHO | IOCTL_ADMIN_ONLY => {
            let data = r.input_buffer(1).unwrap_or_default();
            let n = data.len();
            let _ = r.with_output_buffer(n.max(1), |b| b[..n].copy_from_slice(&data));
            r.complete_with_information(Status::SUCCESS, n);
        }
        IOCTL_CANCELABLE => {
            assert_eq!(
                r.mark_cancelable(|r| r.complete(Status::CANCELLED)),
                Status::SUCCESS
            );
            held.lock().unwrap().push(r);
        }
        _ => held.lock().unwrap().push(r),
    }
}

/// Installs a function driver `name` with interface CLASS; `setup` creates its queues.
fn install(
    m: &Machine,
    name: &'static str,
    file: Option<FileConfig>,
    in_caller: Option<io::IoInCallerContextFn>,
    setup: impl Fn(&Device) -> Result<(), Status> + Send + Sync + 'static,
) {
    driver::install(
        m,
        name,
        DriverConfig::new(move |_d, init| {
            if let Some(f) = &file {
                io::set_file_object_config(init, f.clone());
            }
            if let Some(f) = &in_caller {
                let f = Arc::clone(f);
                io::set_io_in_caller_context(init, move |d, r| f(d, r));
            }
            let dev = Device::create(init, ObjectAttributes::new())?;
            dev.create_interface(CLASS, None)?;
            setup(&dev)
        }),
    );
}

fn plug(m: &Machine, id: &str, driver: &str) -> (DeviceNode, String) {
    let node = m.pnp().plug_in(StackSpec::new(id, driver)).unwrap();
    let link = node.function_device().unwrap().interfaces()[0].clone();
    (node, link)
}

/// A machine whose function driver has one manual default queue.
fn manual_machine() -> (Machine, DeviceNode, String, Queue) {
    let m = Machine::new();
    let slot: Arc<Mutex<Option<Queue>>> = Arc::default();
    let s2 = Arc::clone(&slot);
    install(&m, "fdo", None, None, move |dev| {
        let q = Queue::create(
            dev,
            QueueConfig::new_default(DispatchType::Manual),
            ObjectAttributes::new(),
        )?;
        *s2.lock().unwrap() = Some(q);
        Ok(())
    });
    let (node, link) = plug(&m, "ROOT\\MANUAL", "fdo");
    let q = slot.lock().unwrap().clone().unwrap();
    (m, node, link, q)
}

// ---------------------------------------------------------------------------------------------
// WdfIoQueueFindRequest / WdfIoQueueRetrieveFoundRequest

#[test]
fn find_request_by_file_object_and_after_a_found_one_then_retrieve_it() {
    let (m, _node, link, q) = manual_machine();
    let a = app(&m, false);
    let (h1, h2) = (
        a.open(&link, Access::READ_WRITE).unwrap(),
        a.open(&link, Access::READ_WRITE).unwrap(),
    );
    let o1 = h1
        .device_io_control_overlapped(IOCTL_ECHO, b"1", 1)
        .unwrap();
    let o2 = h2
        .device_io_control_overlapped(IOCTL_PARK, b"2", 1)
        .unwrap();
    let o3 = h1
        .device_io_control_overlapped(IOCTL_ECHO, b"3", 1)
        .unwrap();
    assert_eq!(q.status().queued, 3);

    // Iterate over h1's requests: the first, then the next after it, then the end.
    let f1 = h1.file_object();
    let first = q.find_request(None, Some(f1)).unwrap();
    assert_eq!(first.id(), o1.request_id());
    assert_eq!(first.file_object().as_ref(), Some(f1));
    let third = q.find_request(Some(&first), Some(f1)).unwrap();
    assert_eq!(third.id(), o3.request_id());
    assert_eq!(
        q.find_request(Some(&third), Some(f1)).unwrap_err(),
        Status::NO_MORE_ENTRIES
    );
    // Without a file filter: every request, in queue order.
    let any = q.find_request(None, None).unwrap();
    assert_eq!(any.id(), o1.request_id());
    let second = q.find_request(Some(&any), None).unwrap();
    assert_eq!(second.id(), o2.request_id());
    assert_eq!(second.parameters().ioctl_code, IOCTL_PARK);
    assert_eq!(second.kind(), io::RequestType::DeviceControl);
    drop(any);

    // Finding does not take the request out of the queue nor give ownership.
    assert_eq!(q.status().queued, 3);
    assert_eq!(q.status().driver_owned, 0);
    assert!(third.is_queued());

    // Retrieve the third one (out of order): the driver owns it now.
    let r = q.retrieve_found_request(&third).unwrap();
    assert_eq!(r.id(), o3.request_id());
    assert_eq!(r.input_buffer(1).unwrap(), b"3");
    assert!(!third.is_queued());
    assert_eq!(q.status().driver_owned, 1);
    r.complete(Status::SUCCESS);
    assert!(o3.is_complete() && !o1.is_complete());
    // A found request that left the queue: not found any more, for both calls.
    assert_eq!(
        q.retrieve_found_request(&third).unwrap_err(),
        Status::NOT_FOUND
    );
    assert_eq!(
        q.find_request(Some(&third), None).unwrap_err(),
        Status::NOT_FOUND
    );
    // Cancelled while found: the retrieve fails with STATUS_NOT_FOUND.
    assert!(o2.cancel());
    assert_eq!(o2.result().unwrap().unwrap_err(), Status::CANCELLED);
    assert_eq!(
        q.retrieve_found_request(&second).unwrap_err(),
        Status::NOT_FOUND
    );
    drop((first, second, third));
    q.retrieve_next_request().unwrap().complete(Status::SUCCESS);
    assert!(o1.is_complete());
    assert_eq!(
        q.find_request(None, None).unwrap_err(),
        Status::NO_MORE_ENTRIES
    );
    assert!(m.verifier().violations().is_empty());
}

#[test]
fn find_request_only_on_manual_queues() {
    let m = Machine::new();
    let held: Held = Arc::default();
    let h2 = Arc::clone(&held);
    install(&m, "fdo", None, None, move |dev| {
        Queue::create(
            dev,
            QueueConfig::new_default(DispatchType::Parallel)
                .on_device_control(handler(Arc::clone(&h2))),
            ObjectAttributes::new(),
        )?;
        Ok(())
    });
    let (node, _link) = plug(&m, "ROOT\\PAR", "fdo");
    let q = node.function_device().unwrap().default_queue().unwrap();
    assert_eq!(
        q.find_request(None, None).unwrap_err(),
        Status::INVALID_DEVICE_REQUEST
    );
}

// ---------------------------------------------------------------------------------------------
// WdfIoQueueStopAndPurge

#[test]
fn stop_and_purge_cancels_queued_and_owned_requests_and_keeps_accepting() {
    let m = Machine::new();
    let held: Held = Arc::default();
    let h2 = Arc::clone(&held);
    let canceled_on_queue: Log = Arc::default();
    let c2 = Arc::clone(&canceled_on_queue);
    install(&m, "fdo", None, None, move |dev| {
        let c2 = Arc::clone(&c2);
        Queue::create(
            dev,
            QueueConfig::new_default(DispatchType::Sequential)
                .on_device_control(handler(Arc::clone(&h2)))
                .on_canceled_on_queue(move |_q, r| {
                    log(&c2, format!("canceled on queue #{}", r.id()));
                    r.complete(Status::CANCELLED);
                }),
            ObjectAttributes::new(),
        )?;
        Ok(())
    });
    let (node, link) = plug(&m, "ROOT\\SP", "fdo");
    let q = node.function_device().unwrap().default_queue().unwrap();
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();

    // The driver owns a cancelable request; two more wait in the (sequential) queue, one of
    // them put back there by the driver (requeue), so EvtIoCanceledOnQueue applies to it.
    let owned = h
        .device_io_control_overlapped(IOCTL_CANCELABLE, &[], 0)
        .unwrap();
    let waiting = h.device_io_control_overlapped(IOCTL_ECHO, b"w", 1).unwrap();
    assert_eq!(q.status().queued, 1);
    assert_eq!(q.status().driver_owned, 1);

    let done: Log = Arc::default();
    let d2 = Arc::clone(&done);
    q.stop_and_purge(Some(Box::new(move |_q| log(&d2, "EvtIoQueueState"))));
    assert_eq!(owned.result().unwrap().unwrap_err(), Status::CANCELLED);
    assert_eq!(waiting.result().unwrap().unwrap_err(), Status::CANCELLED);
    assert!(
        take(&canceled_on_queue).is_empty(),
        "not requeued by the driver"
    );
    assert_eq!(take(&done), vec!["EvtIoQueueState"]);
    held.lock().unwrap().clear();

    // Still accepting, but stopped: a new request waits until start.
    let later = h.device_io_control_overlapped(IOCTL_ECHO, b"l", 1).unwrap();
    let st = q.status();
    assert!(st.accepting && !st.started);
    assert_eq!(st.queued, 1);
    assert!(!later.is_complete());
    q.start();
    assert_eq!(later.result().unwrap().unwrap().0, b"l".to_vec());

    // A non-cancelable owned request (one the driver requeued once, then got again) is only
    // marked cancelled; the state callback waits for the driver to complete it, even though a
    // new request waits in the stopped queue.
    let parked = h.device_io_control_overlapped(IOCTL_PARK, &[], 0).unwrap();
    let second = h.device_io_control_overlapped(IOCTL_PARK, &[], 0).unwrap();
    let r = held.lock().unwrap().pop().unwrap();
    assert_eq!(r.id(), parked.request_id());
    // Requeue to the head while stopped (else the sequential queue presents it right back).
    q.stop();
    r.requeue().unwrap();
    assert_eq!(q.status().queued, 2);
    q.start();
    let first_again = held.lock().unwrap().pop().unwrap();
    assert_eq!(first_again.id(), parked.request_id());
    let d2 = Arc::clone(&done);
    q.stop_and_purge(Some(Box::new(move |_q| log(&d2, "EvtIoQueueState"))));
    assert!(first_again.is_canceled());
    assert!(!parked.is_complete());
    assert_eq!(
        second.result().unwrap().unwrap_err(),
        Status::CANCELLED,
        "the undelivered one"
    );
    assert!(take(&canceled_on_queue).is_empty());
    let after = h.device_io_control_overlapped(IOCTL_ECHO, b"a", 1).unwrap();
    assert!(take(&done).is_empty(), "the driver still owns one");
    first_again.complete(Status::CANCELLED);
    assert_eq!(take(&done), vec!["EvtIoQueueState"]);
    assert!(!after.is_complete(), "held until start");
    // Synchronous form with nothing owned returns at once.
    {
        let _g = m.enter();
        q.stop_and_purge_synchronously();
    }
    assert_eq!(after.result().unwrap().unwrap_err(), Status::CANCELLED);
    q.start();
    assert_eq!(
        h.device_io_control(IOCTL_ECHO, b"z", 1).unwrap().0,
        b"z".to_vec()
    );
    assert!(m.verifier().violations().is_empty());
}

#[test]
fn stop_and_purge_gives_driver_requeued_requests_to_evt_io_canceled_on_queue() {
    requeued_request_cancelled_on_the_queue(|q| q.stop_and_purge(None));
}

/// `WdfIoQueuePurge` (kmdf-sequences §6.6): a request the driver forwarded to the queue goes to
/// EvtIoCanceledOnQueue as with StopAndPurge (it used to be completed with STATUS_CANCELLED
/// behind the driver's back).
#[test]
fn purge_gives_driver_requeued_requests_to_evt_io_canceled_on_queue() {
    requeued_request_cancelled_on_the_queue(|q| q.purge(None));
}

/// A request forwarded by the driver into a manual queue with EvtIoCanceledOnQueue, then `purge`.
fn requeued_request_cancelled_on_the_queue(purge: impl Fn(&Queue)) {
    let m = Machine::new();
    let manual: Arc<Mutex<Option<Queue>>> = Arc::default();
    let mq = Arc::clone(&manual);
    let events: Log = Arc::default();
    let e2 = Arc::clone(&events);
    install(&m, "fdo", None, None, move |dev| {
        let mq2 = Arc::clone(&mq);
        let park = Queue::create(
            dev,
            QueueConfig::new(DispatchType::Manual).on_canceled_on_queue({
                let e2 = Arc::clone(&e2);
                move |_q, r| {
                    log(&e2, "EvtIoCanceledOnQueue");
                    r.complete(Status::CANCELLED);
                }
            }),
            ObjectAttributes::new(),
        )?;
        *mq.lock().unwrap() = Some(park);
        Queue::create(
            dev,
            QueueConfig::new_default(DispatchType::Parallel).on_device_control(
                move |_q, r, _, _, _| {
                    let park = mq2.lock().unwrap().clone().unwrap();
                    r.forward_to_queue(&park).map_err(|(_, s)| s).unwrap();
                },
            ),
            ObjectAttributes::new(),
        )?;
        Ok(())
    });
    let (_node, link) = plug(&m, "ROOT\\FWD", "fdo");
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    let o = h.device_io_control_overlapped(IOCTL_PARK, &[], 0).unwrap();
    let park = manual.lock().unwrap().clone().unwrap();
    assert_eq!(park.status().queued, 1);
    purge(&park);
    assert_eq!(take(&events), vec!["EvtIoCanceledOnQueue"]);
    assert_eq!(o.result().unwrap().unwrap_err(), Status::CANCELLED);
    assert!(m.verifier().violations().is_empty());
}

// ---------------------------------------------------------------------------------------------
// EvtIoInCallerContext + WdfDeviceEnqueueRequest

#[test]
fn in_caller_context_sees_each_request_on_the_callers_thread_before_any_queue() {
    let m = Machine::new();
    let held: Held = Arc::default();
    let h2 = Arc::clone(&held);
    let seen: Log = Arc::default();
    let s2 = Arc::clone(&seen);
    let in_caller: io::IoInCallerContextFn = Arc::new(move |dev: &Device, r: Request| {
        assert_eq!(current_irql(), Irql::Passive);
        log(
            &s2,
            format!("{} {:#x}", thread_name(), r.parameters().ioctl_code),
        );
        // The caller's identity is checked here, in its own context (kmdf-sequences §11).
        if r.parameters().ioctl_code == IOCTL_ADMIN_ONLY && !r.is_requestor_administrator() {
            r.complete(Status::ACCESS_DENIED);
            return;
        }
        if let Err((r, s)) = dev.enqueue_request(r) {
            r.complete(s);
        }
    });
    install(&m, "fdo", None, Some(in_caller), move |dev| {
        Queue::create(
            dev,
            QueueConfig::new_default(DispatchType::Parallel)
                .on_device_control(handler(Arc::clone(&h2))),
            ObjectAttributes::new(),
        )?;
        Ok(())
    });
    let (node, link) = plug(&m, "ROOT\\ICC", "fdo");
    let me = thread_name();
    let user = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    let admin = app(&m, true).open(&link, Access::READ_WRITE).unwrap();
    assert!(
        take(&seen).is_empty(),
        "creates go to the file-object callbacks"
    );

    assert_eq!(
        user.device_io_control(IOCTL_ECHO, b"hi", 4).unwrap().0,
        b"hi".to_vec()
    );
    assert_eq!(
        user.device_io_control(IOCTL_ADMIN_ONLY, b"x", 1)
            .unwrap_err(),
        Status::ACCESS_DENIED
    );
    assert_eq!(
        admin
            .device_io_control(IOCTL_ADMIN_ONLY, b"y", 1)
            .unwrap()
            .0,
        b"y".to_vec()
    );
    assert_eq!(
        take(&seen),
        vec![
            format!("{me} {IOCTL_ECHO:#x}"),
            format!("{me} {IOCTL_ADMIN_ONLY:#x}"),
            format!("{me} {IOCTL_ADMIN_ONLY:#x}"),
        ]
    );
    let cbs = m.trace().callbacks_for("fdo");
    let icc = cbs.iter().filter(|c| *c == "EvtIoInCallerContext").count();
    let ioctl = cbs.iter().filter(|c| *c == "EvtIoDeviceControl").count();
    assert_eq!((icc, ioctl), (3, 2));

    // Stopped queue: the callback still runs at once; the request waits in the queue.
    let q = node.function_device().unwrap().default_queue().unwrap();
    q.stop();
    let o = user
        .device_io_control_overlapped(IOCTL_ECHO, b"s", 1)
        .unwrap();
    assert_eq!(take(&seen).len(), 1);
    assert!(!o.is_complete());
    assert_eq!(q.status().queued, 1);
    // Enqueued by the driver: cancelling it in the queue completes it (no EvtIoCanceledOnQueue).
    assert!(o.cancel());
    assert_eq!(o.result().unwrap().unwrap_err(), Status::CANCELLED);
    q.start();

    // A purged queue refuses: WdfDeviceEnqueueRequest fails with STATUS_WDF_BUSY.
    q.purge(None);
    assert_eq!(
        user.device_io_control(IOCTL_ECHO, b"p", 1).unwrap_err(),
        Status::WDF_BUSY
    );
    q.start();
    user.close();
    admin.close();
    assert!(m.verifier().violations().is_empty());
}

#[test]
fn enqueue_request_without_a_queue_and_ownership_rules() {
    let m = Machine::new();
    let stash: Held = Arc::default();
    let s2 = Arc::clone(&stash);
    let in_caller: io::IoInCallerContextFn = Arc::new(move |dev: &Device, r: Request| {
        if r.parameters().ioctl_code == IOCTL_PARK {
            // Kept by the driver (its own context) and completed later.
            s2.lock().unwrap().push(r);
            return;
        }
        // A function driver without queues: STATUS_INVALID_DEVICE_REQUEST, handed back.
        match dev.enqueue_request(r) {
            Err((r, s)) => r.complete(s),
            Ok(()) => panic!("no queue to enqueue into"),
        }
    });
    install(&m, "fdo", None, Some(in_caller), |_| Ok(()));
    let (node, link) = plug(&m, "ROOT\\NOQ", "fdo");
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    assert_eq!(
        h.device_io_control(IOCTL_ECHO, b"x", 1).unwrap_err(),
        Status::INVALID_DEVICE_REQUEST
    );
    let o = h.device_io_control_overlapped(IOCTL_PARK, &[], 0).unwrap();
    let r = stash.lock().unwrap().pop().unwrap();
    // A cancelable request cannot be enqueued.
    assert_eq!(
        r.mark_cancelable(|r| r.complete(Status::CANCELLED)),
        Status::SUCCESS
    );
    let dev = node.function_device().unwrap();
    let (r, s) = dev.enqueue_request(r).unwrap_err();
    assert_eq!(s, Status::INVALID_DEVICE_REQUEST);
    assert_eq!(r.unmark_cancelable(), Status::SUCCESS);
    r.complete_with_information(Status::SUCCESS, 0);
    assert!(o.result().unwrap().is_ok());
    assert!(m.verifier().violations().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Leaks

#[test]
fn set_failed_leaves_no_objects_pool_or_machine_behind() {
    for action in [FailedAction::NoRestart, FailedAction::AttemptRestart] {
        let m = Machine::new();
        let alive = marker(&m);
        install(&m, "fdo", None, None, |_| Ok(()));
        let (node, _link) = plug(&m, "ROOT\\F", "fdo");
        node.function_device().unwrap().set_failed(action);
        m.settle();
        if action == FailedAction::NoRestart {
            assert_eq!(node.state(), NodeState::Failed);
            assert!(live_objects(&m).is_empty(), "{:?}", live_objects(&m));
        } else {
            assert_eq!(node.state(), NodeState::Started);
            assert_eq!(node.restart_count(), 1);
            node.remove().unwrap();
            assert!(live_objects(&m).is_empty(), "{:?}", live_objects(&m));
        }
        assert!(m.pool().outstanding().is_empty());
        assert!(m.verifier().violations().is_empty());
        drop(node);
        drop(m);
        assert!(
            alive.upgrade().is_none(),
            "{action:?}: the machine leaked through the PnP work item"
        );
    }
}

#[test]
fn deferred_close_does_not_leak_the_machine() {
    let m = Machine::new();
    let alive = marker(&m);
    let held: Held = Arc::default();
    let h2 = Arc::clone(&held);
    let closes: Log = Arc::default();
    let c2 = Arc::clone(&closes);
    let file = FileConfig::new().on_close(move |_f| log(&c2, "EvtFileClose"));
    install(&m, "fdo", Some(file), None, move |dev| {
        Queue::create(
            dev,
            QueueConfig::new_default(DispatchType::Parallel)
                .on_device_control(handler(Arc::clone(&h2))),
            ObjectAttributes::new(),
        )?;
        Ok(())
    });
    let (node, link) = plug(&m, "ROOT\\DC", "fdo");
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    let o = h.device_io_control_overlapped(IOCTL_PARK, &[], 0).unwrap();
    h.close();
    assert!(
        take(&closes).is_empty(),
        "close waits for the parked request"
    );
    held.lock()
        .unwrap()
        .pop()
        .unwrap()
        .complete(Status::SUCCESS);
    m.settle();
    assert!(o.is_complete());
    assert_eq!(take(&closes), vec!["EvtFileClose"]);
    node.remove().unwrap();
    drop((node, o));
    drop(m);
    assert!(alive.upgrade().is_none(), "the deferred close leaked");
}

// ---------------------------------------------------------------------------------------------
// Handles at removal

#[test]
fn open_application_handle_does_not_veto_removal_and_fails_later_with_device_removed() {
    let m = Machine::new();
    let alive = marker(&m);
    let events: Log = Arc::default();
    let e2 = Arc::clone(&events);
    let e3 = Arc::clone(&events);
    let file = FileConfig::new()
        .on_cleanup(move |f| log(&e2, format!("EvtFileCleanup {}", f.owner())))
        .on_close(move |f| log(&e3, format!("EvtFileClose {}", f.owner())));
    let held: Held = Arc::default();
    let h2 = Arc::clone(&held);
    let e4 = Arc::clone(&events);
    driver::install(
        &m,
        "server",
        DriverConfig::new(move |_d, init| {
            io::set_file_object_config(init, file.clone());
            let e4 = Arc::clone(&e4);
            init.pnp.query_remove = Some(Arc::new(move |_dev: &Device| {
                log(&e4, "EvtDeviceQueryRemove");
                Status::SUCCESS
            }));
            let dev = Device::create(init, ObjectAttributes::new())?;
            dev.create_interface(CLASS, None)?;
            Queue::create(
                &dev,
                QueueConfig::new_default(DispatchType::Parallel)
                    .on_device_control(handler(Arc::clone(&h2))),
                ObjectAttributes::new(),
            )?;
            Ok(())
        }),
    );
    install(&m, "client", None, None, |_| Ok(()));
    let (server, link) = plug(&m, "ROOT\\SERVER", "server");
    let (client_node, _) = plug(&m, "ROOT\\CLIENT", "client");
    let client = client_node.function_device().unwrap();

    // An application handle and a driver's remote target, both open on the server.
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    let target = {
        let _g = m.enter();
        let t = IoTarget::create(&client, ObjectAttributes::new()).unwrap();
        t.open(OpenParams::by_name(&link, Access::READ_WRITE))
            .unwrap();
        t
    };
    assert_eq!(
        h.device_io_control(IOCTL_ECHO, b"ok", 2).unwrap().0,
        b"ok".to_vec()
    );
    let pending = h.device_io_control_overlapped(IOCTL_ECHO, b"p", 1).unwrap();
    assert!(pending.is_complete());
    take(&events);

    // Query-remove: the remote target closes its handle (cleanup + close reach the server)
    // before EvtDeviceQueryRemove; the application's open handle vetoes nothing.
    server.remove().unwrap();
    assert_eq!(server.state(), NodeState::Removed);
    assert_eq!(target.state(), TargetState::Closed);
    let ev = take(&events);
    assert_eq!(
        ev,
        vec![
            "EvtFileCleanup client".to_owned(),
            "EvtFileClose client".to_owned(),
            "EvtDeviceQueryRemove".to_owned(),
        ]
    );

    // The application learns of the removal on its next request, which reaches no driver.
    assert_eq!(
        h.device_io_control(IOCTL_ECHO, b"x", 1).unwrap_err(),
        Status::DEVICE_REMOVED
    );
    assert_eq!(h.read(4).unwrap_err(), Status::DEVICE_REMOVED);
    // Closing the stale handle is harmless: no callback into the removed driver.
    h.close();
    assert!(take(&events).is_empty());
    assert!(
        app(&m, false).open(&link, Access::READ).is_err(),
        "the interface is gone"
    );
    let left: Vec<_> = live_objects(&m)
        .into_iter()
        .filter(|(_, driver)| driver == "server")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(m.verifier().violations().is_empty());
    drop((target, client, client_node, server, pending));
    drop(m);
    assert!(alive.upgrade().is_none(), "a handle kept the machine alive");
}
