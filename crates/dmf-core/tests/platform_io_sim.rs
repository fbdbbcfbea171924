//! The I/O half of the platform contract on the `sim` backend: requests, queues, file objects,
//! I/O targets and device-interface notifications, exercised through drivers written only
//! against `dmf_core::platform` (as DMF and client drivers are). kmdf-sim is used directly only
//! for the harness: the machine, plugging and removing devices, power transitions, and
//! applications issuing I/O.
#![cfg(feature = "sim")]
#![allow(
    clippy::too_many_lines,         // reason: each test is one scenario, told from start to end
    clippy::many_single_char_names, // reason: l/p/i/w/h/m are the tests' vocabulary
    clippy::unnecessary_wraps       // reason: `on_*` build the `Option` fields of QueueConfig
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmf_core::platform::contract::device::{Guid, PlatformDevice, PlatformDeviceInit};
use dmf_core::platform::contract::io::{
    CompletionParams, FileCreateFn, FileFn, InterfaceChange, IoControlFn, IoLengthFn, IoRequestFn,
    IoStopFn, IoTargetState, PlatformFileObject, PlatformIoTarget, PlatformQueue, PlatformRequest,
    QueueDispatch, RequestParameters, RequestType, RequestorMode, SendOptions, StopFlags, TargetFn,
    TargetQueryRemoveFn,
};
use dmf_core::platform::{
    simulator, Device, DeviceInit, DriverConfig, FileObject, FileObjectConfig,
    InterfaceNotification, IoTarget, PnpPowerCallbacks, Queue, QueueConfig, Request,
    TargetOpenParams,
};
use dmf_core::{NtResult, NtStatus};
use kmdf_sim::io::{Access, AppConfig, Application};
use kmdf_sim::pnp::{DeviceNode, NodeState, StackSpec, SystemPowerState};
use kmdf_sim::{ClockMode, Machine};

// ------------------------------------------------------------------------------------------
// Harness
// ------------------------------------------------------------------------------------------

const CLASS: Guid = Guid::new(
    0x6D1A_0B7E,
    0x2C4F,
    0x4E61,
    [0x9A, 0x33, 0x51, 0x0C, 0x7B, 0x2E, 0x84, 0x19],
);

const fn ctl(function: u32, access: u32) -> u32 {
    (0x22 << 16) | (access << 14) | (function << 2)
}
/// Echoes the input into the output; `STATUS_BUFFER_TOO_SMALL` if the output is shorter.
const IOCTL_ECHO: u32 = ctl(0x800, 0);
/// Parked by the driver, marked cancelable (the cancel routine completes it `CANCELLED`).
const IOCTL_PARK: u32 = ctl(0x801, 0);
/// Needs an 8-byte input buffer.
const IOCTL_NEEDS_8: u32 = ctl(0x802, 0);
/// Succeeds for administrators only.
const IOCTL_ADMIN_ONLY: u32 = ctl(0x803, 0);
/// Held by the driver without a cancel routine.
const IOCTL_HOLD: u32 = ctl(0x804, 0);
/// An internal IOCTL: the input comes back reversed.
const IOCTL_INTERNAL_REVERSE: u32 = ctl(0x900, 0);

type Slot<T> = Arc<Mutex<Option<T>>>;
type Held = Arc<Mutex<Vec<Request>>>;
type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, entry: impl Into<String>) {
    log.lock().unwrap().push(entry.into());
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

fn get<T: Clone>(slot: &Slot<T>) -> T {
    slot.lock().unwrap().clone().expect("set by the driver")
}

/// The oldest request a driver holds.
fn take(held: &Held) -> Request {
    held.lock().unwrap().remove(0)
}

fn held_count(held: &Held) -> usize {
    held.lock().unwrap().len()
}

/// An application's status as the platform's.
fn nt(status: kmdf_sim::Status) -> NtStatus {
    NtStatus::from_raw(status.0)
}

fn app_err<T: std::fmt::Debug>(result: Result<T, kmdf_sim::Status>) -> NtStatus {
    nt(result.unwrap_err())
}

fn app(m: &Machine, administrator: bool) -> Application {
    Application::new(
        m,
        AppConfig {
            administrator,
            name: if administrator {
                "admin.exe"
            } else {
                "user.exe"
            }
            .into(),
        },
    )
}

/// A driver whose `EvtDriverDeviceAdd` is `add`, written against the platform only.
fn driver(add: impl Fn(&mut DeviceInit) -> NtResult<()> + Send + Sync + 'static) -> DriverConfig {
    DriverConfig {
        device_add: Arc::new(move |_driver, init: &mut DeviceInit| add(init)),
        unload: None,
    }
}

fn plug(m: &Machine, hardware_id: &str, function: &str, upper: Option<&str>) -> DeviceNode {
    let mut spec = StackSpec::new(hardware_id, function);
    if let Some(filter) = upper {
        spec = spec.upper_filter(filter);
    }
    let node = m.pnp().plug_in(spec).unwrap();
    assert_eq!(node.state(), NodeState::Started);
    node
}

/// The symbolic link of the function device's (only) interface.
fn link_of(node: &DeviceNode) -> String {
    node.function_device().unwrap().interfaces()[0].clone()
}

/// The machine is clean: nothing runs, nothing crashed, the verifier saw no violation.
fn assert_clean(m: &Machine) {
    m.settle();
    assert_eq!(m.crash(), None);
    let violations = m.verifier().violations();
    assert!(violations.is_empty(), "{violations:#?}");
}

fn on_length(
    f: impl Fn(&Queue, Request, usize) + Send + Sync + 'static,
) -> Option<IoLengthFn<Queue, Request>> {
    Some(Arc::new(f))
}

fn on_ioctl(
    f: impl Fn(&Queue, Request, usize, usize, u32) + Send + Sync + 'static,
) -> Option<IoControlFn<Queue, Request>> {
    Some(Arc::new(f))
}

fn on_request(
    f: impl Fn(&Queue, Request) + Send + Sync + 'static,
) -> Option<IoRequestFn<Queue, Request>> {
    Some(Arc::new(f))
}

fn on_stop(
    f: impl Fn(&Queue, Request, StopFlags) + Send + Sync + 'static,
) -> Option<IoStopFn<Queue, Request>> {
    Some(Arc::new(f))
}

/// `IOCTL_ECHO`: the input back in the output.
fn echo(req: Request) {
    let input = match req.with_input_buffer(1, <[u8]>::to_vec) {
        Ok(input) => input,
        Err(status) => {
            req.complete(status);
            return;
        }
    };
    let n = input.len();
    match req.with_output_buffer(n, |out| out[..n].copy_from_slice(&input)) {
        Ok(()) => req.complete_with_information(NtStatus::SUCCESS, n),
        Err(status) => req.complete(status),
    }
}

/// `IOCTL_PARK`: marked cancelable (the routine completes it) and kept.
fn park(req: Request, held: &Held) {
    req.mark_cancelable(|r| r.complete(NtStatus::CANCELLED))
        .expect("not cancelled yet");
    held.lock().unwrap().push(req);
}

/// What the echo function driver saw (requests, as text) and holds.
#[derive(Clone, Default)]
struct Fdo {
    log: Log,
    held: Held,
    devices: Arc<Mutex<Vec<Device>>>,
}

impl Fdo {
    fn device(&self, index: usize) -> Device {
        self.devices.lock().unwrap()[index].clone()
    }
}

/// A function driver exposing `CLASS`: a parallel default queue with IOCTLs (echo, park, hold,
/// internal reverse), reads (0x5A bytes), writes, and an `EvtIoStop` that completes what it
/// holds on removal.
fn install_fdo(m: &Machine, name: &str) -> Fdo {
    let fdo = Fdo::default();
    let f = fdo.clone();
    simulator::install_driver(
        m,
        name,
        driver(move |init| {
            let device = init.create_device()?;
            device.create_interface(CLASS, None)?;
            f.devices.lock().unwrap().push(device.clone());
            let mut config = QueueConfig::new_default(QueueDispatch::Parallel);
            let (log, held) = (Arc::clone(&f.log), Arc::clone(&f.held));
            config.device_control = on_ioctl(move |_q, req, out_len, in_len, code| {
                push(
                    &log,
                    format!(
                        "ioctl {code:#x} in={in_len} out={out_len} {:?} admin={} file={}",
                        req.requestor_mode(),
                        req.is_requestor_administrator(),
                        req.file_object().is_some()
                    ),
                );
                match code {
                    IOCTL_ECHO => echo(req),
                    IOCTL_PARK => park(req, &held),
                    IOCTL_HOLD => held.lock().unwrap().push(req),
                    _ => req.complete(NtStatus::INVALID_DEVICE_REQUEST),
                }
            });
            let log = Arc::clone(&f.log);
            config.internal_device_control = on_ioctl(move |_q, req, out_len, in_len, code| {
                push(
                    &log,
                    format!("internal {code:#x} in={in_len} out={out_len}"),
                );
                let mut input = req.with_input_buffer(1, <[u8]>::to_vec).unwrap_or_default();
                input.reverse();
                let n = input.len();
                match req.with_output_buffer(n, |out| out[..n].copy_from_slice(&input)) {
                    Ok(()) => req.complete_with_information(NtStatus::SUCCESS, n),
                    Err(status) => req.complete(status),
                }
            });
            let log = Arc::clone(&f.log);
            config.read = on_length(move |_q, req, len| {
                push(&log, format!("read {len} at {}", req.parameters().offset));
                match req.with_output_buffer(len, |out| out.fill(0x5A)) {
                    Ok(()) => req.complete_with_information(NtStatus::SUCCESS, len),
                    Err(status) => req.complete(status),
                }
            });
            let log = Arc::clone(&f.log);
            config.write = on_length(move |_q, req, len| {
                let data = req.with_input_buffer(len, <[u8]>::to_vec).unwrap();
                push(
                    &log,
                    format!(
                        "write {:?} at {}",
                        String::from_utf8_lossy(&data),
                        req.parameters().offset
                    ),
                );
                req.complete_with_information(NtStatus::SUCCESS, len);
            });
            let held = Arc::clone(&f.held);
            config.stop = on_stop(move |_q, req, flags| {
                if flags.cancelable && req.unmark_cancelable().is_err() {
                    return; // the cancel routine owns it
                }
                if flags.purge {
                    held.lock().unwrap().retain(|h| h.id() != req.id());
                    req.complete(NtStatus::DEVICE_REMOVED);
                } else {
                    req.stop_acknowledge(true);
                }
            });
            device.create_queue(config)?;
            Ok(())
        }),
    );
    fdo
}

/// An upper filter: IOCTLs go down with a completion routine that adds 100 to the information
/// (and logs the completion parameters), reads are sent and forgotten.
fn install_filter(m: &Machine, name: &str, log: &Log, device_slot: &Slot<Device>) {
    let (log, slot) = (Arc::clone(log), Arc::clone(device_slot));
    simulator::install_driver(
        m,
        name,
        driver(move |init| {
            init.set_filter();
            assert!(init.is_filter());
            let device = init.create_device()?;
            assert!(device.is_filter());
            *slot.lock().unwrap() = Some(device.clone());
            let target = device.io_target();
            let mut config = QueueConfig::new_default(QueueDispatch::Parallel);
            let (t, l) = (target.clone(), Arc::clone(&log));
            config.device_control = on_ioctl(move |_q, req, _out, _in, code| {
                req.format_using_current_type();
                let l = Arc::clone(&l);
                req.set_completion_routine(move |req, params| {
                    push(&l, format!("completion {code:#x} {params:?}"));
                    req.complete_with_information(params.status, params.information + 100);
                });
                if let Err(status) = req.send(&t, SendOptions::default()) {
                    req.complete(status);
                }
            });
            config.read = on_length(move |_q, req, _len| {
                req.format_using_current_type();
                let forget = SendOptions {
                    send_and_forget: true,
                    ..SendOptions::default()
                };
                if let Err(status) = req.send(&target, forget) {
                    req.complete(status);
                }
            });
            device.create_queue(config)?;
            Ok(())
        }),
    );
}

// ------------------------------------------------------------------------------------------
// Queues and requests
// ------------------------------------------------------------------------------------------

#[test]
fn default_queue_presents_reads_writes_and_ioctls_with_parameters_and_buffers() {
    let m = Machine::new();
    let _bound = m.enter();
    let log = Log::default();
    let params: Arc<Mutex<Vec<RequestParameters>>> = Arc::default();
    let ids: Arc<Mutex<Vec<u64>>> = Arc::default();
    let written: Arc<Mutex<Vec<u8>>> = Arc::default();
    let queue_slot: Slot<Queue> = Arc::default();
    let device_slot: Slot<Device> = Arc::default();
    let (l, p, i, w, qs, ds) = (
        Arc::clone(&log),
        Arc::clone(&params),
        Arc::clone(&ids),
        Arc::clone(&written),
        Arc::clone(&queue_slot),
        Arc::clone(&device_slot),
    );
    simulator::install_driver(
        &m,
        "fdo",
        driver(move |init| {
            assert!(!init.is_filter());
            let device = init.create_device()?;
            device.create_interface(CLASS, None)?;
            assert_eq!(device.default_queue(), None);
            let mut config = QueueConfig::new_default(QueueDispatch::Parallel);
            let (l2, p2) = (Arc::clone(&l), Arc::clone(&p));
            config.read = on_length(move |_q, req, len| {
                p2.lock().unwrap().push(req.parameters());
                push(&l2, format!("EvtIoRead {len} {:?}", req.requestor_mode()));
                assert_eq!(
                    req.with_input_buffer(0, |_| ()),
                    Err(NtStatus::INVALID_DEVICE_REQUEST),
                    "a read has no input buffer"
                );
                match req.with_output_buffer(len, |out| {
                    out.fill(0xA5);
                    out.len()
                }) {
                    Ok(n) => req.complete_with_information(NtStatus::SUCCESS, n),
                    Err(status) => req.complete(status),
                }
            });
            let (l2, p2, w2) = (Arc::clone(&l), Arc::clone(&p), Arc::clone(&w));
            config.write = on_length(move |_q, req, len| {
                p2.lock().unwrap().push(req.parameters());
                push(&l2, format!("EvtIoWrite {len}"));
                assert_eq!(
                    req.with_output_buffer(0, |_| ()),
                    Err(NtStatus::INVALID_DEVICE_REQUEST),
                    "a write has no output buffer"
                );
                let data = req.with_input_buffer(len, <[u8]>::to_vec).unwrap();
                w2.lock().unwrap().extend_from_slice(&data);
                req.set_information(len);
                assert_eq!(req.information(), len);
                // `complete` keeps the information already set.
                req.complete(NtStatus::SUCCESS);
            });
            let (l2, p2, i2) = (Arc::clone(&l), Arc::clone(&p), Arc::clone(&i));
            config.device_control = on_ioctl(move |q, req, out_len, in_len, code| {
                assert_eq!(q.dispatch(), QueueDispatch::Parallel);
                p2.lock().unwrap().push(req.parameters());
                i2.lock().unwrap().push(req.id());
                push(
                    &l2,
                    format!("EvtIoDeviceControl {code:#x} {in_len} {out_len}"),
                );
                assert_eq!(
                    req.format_for_ioctl(code, &[], 0),
                    Err(NtStatus::INVALID_DEVICE_STATE),
                    "only a driver-created request can be formatted"
                );
                assert!(req.file_object().is_some());
                assert!(!req.is_requestor_administrator());
                assert!(!req.is_canceled());
                match code {
                    IOCTL_ECHO => echo(req),
                    IOCTL_NEEDS_8 => match req.with_input_buffer(8, <[u8]>::len) {
                        Ok(_) => req.complete(NtStatus::SUCCESS),
                        Err(status) => req.complete(status),
                    },
                    _ => req.complete(NtStatus::INVALID_DEVICE_REQUEST),
                }
            });
            let queue = device.create_queue(config)?;
            assert_eq!(queue.dispatch(), QueueDispatch::Parallel);
            assert_eq!(device.default_queue(), Some(queue.clone()));
            // WdfIoQueueCreate refuses a second default queue and a presenting queue without
            // request callbacks.
            let mut second = QueueConfig::new_default(QueueDispatch::Sequential);
            second.read = on_length(|_q, req, _len| req.complete(NtStatus::SUCCESS));
            assert_eq!(
                device.create_queue(second).unwrap_err(),
                NtStatus::INVALID_PARAMETER
            );
            assert_eq!(
                device
                    .create_queue(QueueConfig::new(QueueDispatch::Parallel))
                    .unwrap_err(),
                NtStatus::INVALID_PARAMETER
            );
            *qs.lock().unwrap() = Some(queue);
            *ds.lock().unwrap() = Some(device);
            Ok(())
        }),
    );
    let node = plug(&m, "ROOT\\DEFAULTQ", "fdo", None);
    let link = link_of(&node);
    let device = get(&device_slot);
    assert_eq!(device.default_queue(), Some(get(&queue_slot)));
    assert!(!device.is_filter());
    let h = app(&m, false).open(&link, Access::READ_WRITE).unwrap();

    assert_eq!(h.read(6).unwrap(), vec![0xA5; 6]);
    assert_eq!(h.write(b"hello").unwrap(), 5);
    assert_eq!(*written.lock().unwrap(), b"hello");
    let op = h
        .device_io_control_overlapped(IOCTL_ECHO, b"ping", 16)
        .unwrap();
    assert_eq!(op.result().unwrap().unwrap(), (b"ping".to_vec(), 4));
    assert_eq!(ids.lock().unwrap().last().copied(), Some(op.request_id()));
    assert_eq!(
        app_err(h.device_io_control(IOCTL_ECHO, b"ping", 2)),
        NtStatus::BUFFER_TOO_SMALL,
        "output shorter than the input"
    );
    assert_eq!(
        app_err(h.device_io_control(IOCTL_NEEDS_8, b"abc", 0)),
        NtStatus::BUFFER_TOO_SMALL
    );
    assert_eq!(
        app_err(h.device_io_control(ctl(0x8FF, 0), &[], 0)),
        NtStatus::INVALID_DEVICE_REQUEST
    );
    // Zero-length reads never reach the driver (AllowZeroLengthRequests is off).
    assert_eq!(h.read(0).unwrap(), Vec::<u8>::new());

    assert_eq!(
        *params.lock().unwrap(),
        [
            RequestParameters {
                kind: RequestType::Read,
                ioctl_code: 0,
                input_length: 0,
                output_length: 6,
                offset: 0,
            },
            RequestParameters {
                kind: RequestType::Write,
                ioctl_code: 0,
                input_length: 5,
                output_length: 0,
                offset: 0,
            },
            RequestParameters {
                kind: RequestType::DeviceControl,
                ioctl_code: IOCTL_ECHO,
                input_length: 4,
                output_length: 16,
                offset: 0,
            },
            RequestParameters {
                kind: RequestType::DeviceControl,
                ioctl_code: IOCTL_ECHO,
                input_length: 4,
                output_length: 2,
                offset: 0,
            },
            RequestParameters {
                kind: RequestType::DeviceControl,
                ioctl_code: IOCTL_NEEDS_8,
                input_length: 3,
                output_length: 0,
                offset: 0,
            },
            RequestParameters {
                kind: RequestType::DeviceControl,
                ioctl_code: ctl(0x8FF, 0),
                input_length: 0,
                output_length: 0,
                offset: 0,
            },
        ]
    );
    assert_eq!(
        entries(&log),
        [
            "EvtIoRead 6 User".to_owned(),
            "EvtIoWrite 5".to_owned(),
            format!("EvtIoDeviceControl {IOCTL_ECHO:#x} 4 16"),
            format!("EvtIoDeviceControl {IOCTL_ECHO:#x} 4 2"),
            format!("EvtIoDeviceControl {IOCTL_NEEDS_8:#x} 3 0"),
            format!("EvtIoDeviceControl {:#x} 0 0", ctl(0x8FF, 0)),
        ]
    );
    let ids = ids.lock().unwrap().clone();
    assert!(
        ids.windows(2).all(|w| w[0] != w[1]),
        "request ids are unique: {ids:?}"
    );
    h.close();
    assert_clean(&m);
}

#[test]
fn manual_queue_forward_retrieve_requeue_and_queue_state_changes() {
    let m = Machine::new();
    let _bound = m.enter();
    let log = Log::default();
    let files: Arc<Mutex<Vec<FileObject>>> = Arc::default();
    let manual_slot: Slot<Queue> = Arc::default();
    let (l, fs, ms) = (
        Arc::clone(&log),
        Arc::clone(&files),
        Arc::clone(&manual_slot),
    );
    simulator::install_driver(
        &m,
        "fdo",
        driver(move |init| {
            let fs = Arc::clone(&fs);
            let create: FileCreateFn<Device, Request, FileObject> =
                Arc::new(move |_d, req, file| {
                    fs.lock().unwrap().push(file.clone());
                    req.complete(NtStatus::SUCCESS);
                });
            init.set_file_object_config(FileObjectConfig {
                create: Some(create),
                ..FileObjectConfig::default()
            });
            let device = init.create_device()?;
            device.create_interface(CLASS, None)?;
            let mut manual = QueueConfig::new(QueueDispatch::Manual);
            let l2 = Arc::clone(&l);
            manual.canceled_on_queue = on_request(move |_q, req| {
                push(&l2, format!("EvtIoCanceledOnQueue {}", req.id()));
                req.complete(NtStatus::CANCELLED);
            });
            let manual = device.create_queue(manual)?;
            assert_eq!(manual.dispatch(), QueueDispatch::Manual);
            *ms.lock().unwrap() = Some(manual.clone());
            let mut config = QueueConfig::new_default(QueueDispatch::Parallel);
            let l2 = Arc::clone(&l);
            config.device_control = on_ioctl(move |_q, req, _out, _in, code| match code {
                IOCTL_PARK => {
                    if let Err((req, status)) = req.forward_to_queue(&manual) {
                        push(&l2, format!("forward refused: {status:?}"));
                        req.complete(status);
                    }
                }
                IOCTL_HOLD => {
                    // A cancelable request cannot be forwarded.
                    req.mark_cancelable(|r| r.complete(NtStatus::CANCELLED))
                        .unwrap();
                    let (req, status) = req.forward_to_queue(&manual).unwrap_err();
                    push(&l2, format!("forward refused: {status:?}"));
                    req.unmark_cancelable().unwrap();
                    req.complete(status);
                }
                _ => req.complete(NtStatus::INVALID_DEVICE_REQUEST),
            });
            device.create_queue(config)?;
            Ok(())
        }),
    );
    let node = plug(&m, "ROOT\\MANUAL", "fdo", None);
    let link = link_of(&node);
    let a = app(&m, false);
    let h1 = a.open(&link, Access::READ_WRITE).unwrap();
    let h2 = a.open(&link, Access::READ_WRITE).unwrap();
    let files = files.lock().unwrap().clone();
    assert_eq!(files.len(), 2);
    assert_ne!(files[0].id(), files[1].id());
    assert_ne!(files[0], files[1]);
    let manual = get(&manual_slot);
    let input = |r: &Request| r.with_input_buffer(1, <[u8]>::to_vec).unwrap();

    let o1 = h1
        .device_io_control_overlapped(IOCTL_PARK, b"1", 0)
        .unwrap();
    let o2 = h2
        .device_io_control_overlapped(IOCTL_PARK, b"2", 0)
        .unwrap();
    let o3 = h1
        .device_io_control_overlapped(IOCTL_PARK, b"3", 0)
        .unwrap();
    assert!(!o1.is_complete() && !o2.is_complete() && !o3.is_complete());

    // By file object: the oldest request of h2's file.
    let r = manual.retrieve_request_by_file_object(&files[1]).unwrap();
    assert_eq!(input(&r), b"2");
    assert_eq!(r.id(), o2.request_id());
    assert_eq!(r.file_object(), Some(files[1].clone()));
    r.complete_with_information(NtStatus::SUCCESS, 0);
    assert_eq!(nt(o2.status().unwrap()), NtStatus::SUCCESS);
    assert_eq!(
        manual
            .retrieve_request_by_file_object(&files[1])
            .unwrap_err(),
        NtStatus::NO_MORE_ENTRIES
    );
    // Next: the oldest; requeued to the head, it is the next one again.
    let r = manual.retrieve_next_request().unwrap();
    assert_eq!(r.id(), o1.request_id());
    r.requeue().map_err(|(_, s)| s).unwrap();
    let r = manual.retrieve_next_request().unwrap();
    assert_eq!((r.id(), input(&r)), (o1.request_id(), b"1".to_vec()));
    r.complete(NtStatus::SUCCESS);
    let r = manual.retrieve_request_by_file_object(&files[0]).unwrap();
    assert_eq!(r.id(), o3.request_id());
    r.complete(NtStatus::SUCCESS);
    assert!(o1.is_complete() && o3.is_complete());
    assert_eq!(
        manual.retrieve_next_request().unwrap_err(),
        NtStatus::NO_MORE_ENTRIES
    );

    // Cancelling a request the driver forwarded: EvtIoCanceledOnQueue gets it.
    let o4 = h2
        .device_io_control_overlapped(IOCTL_PARK, b"4", 0)
        .unwrap();
    assert!(o4.cancel());
    assert_eq!(nt(o4.status().unwrap()), NtStatus::CANCELLED);
    // Forwarding a cancelable request is refused and hands the request back.
    assert_eq!(
        app_err(h1.device_io_control(IOCTL_HOLD, &[], 0)),
        NtStatus::INVALID_DEVICE_REQUEST
    );

    // Stopped: still accepting. Purged: queued requests cancelled (o5, which the driver forwarded
    // here, through EvtIoCanceledOnQueue, kmdf-sequences §6.6), new ones refused.
    manual.stop_synchronously();
    let o5 = h1
        .device_io_control_overlapped(IOCTL_PARK, b"5", 0)
        .unwrap();
    assert!(!o5.is_complete());
    manual.start();
    manual.purge_synchronously();
    assert_eq!(nt(o5.status().unwrap()), NtStatus::CANCELLED);
    assert_eq!(
        app_err(h1.device_io_control(IOCTL_PARK, b"6", 0)),
        NtStatus::INVALID_DEVICE_STATE
    );
    manual.start();
    let o7 = h1
        .device_io_control_overlapped(IOCTL_PARK, b"7", 0)
        .unwrap();
    manual
        .retrieve_next_request()
        .unwrap()
        .complete(NtStatus::SUCCESS);
    assert!(o7.is_complete());
    // Drained: refuses new requests too.
    manual.drain_synchronously();
    assert_eq!(
        app_err(h1.device_io_control(IOCTL_PARK, b"8", 0)),
        NtStatus::INVALID_DEVICE_STATE
    );
    manual.start();

    // A power-managed queue out of D0 hands out nothing.
    node.idle().unwrap();
    assert_eq!(
        manual.retrieve_next_request().unwrap_err(),
        NtStatus::INVALID_DEVICE_STATE
    );
    node.wake_from_idle().unwrap();
    let o9 = h2
        .device_io_control_overlapped(IOCTL_PARK, b"9", 0)
        .unwrap();
    let r = manual.retrieve_next_request().unwrap();
    assert_eq!(input(&r), b"9");
    r.complete_with_information(NtStatus::SUCCESS, 0);
    assert!(o9.is_complete());

    assert_eq!(
        entries(&log),
        [
            format!("EvtIoCanceledOnQueue {}", o4.request_id()),
            format!("forward refused: {:?}", NtStatus::INVALID_DEVICE_REQUEST),
            format!("EvtIoCanceledOnQueue {}", o5.request_id()),
            format!("forward refused: {:?}", NtStatus::INVALID_DEVICE_STATE),
            format!("forward refused: {:?}", NtStatus::INVALID_DEVICE_STATE),
        ]
    );
    h1.close();
    h2.close();
    assert_clean(&m);
}

#[test]
fn cancel_routine_gets_the_request_and_unmark_after_cancel_is_cancelled() {
    let m = Machine::new();
    let _bound = m.enter();
    let log = Log::default();
    let held = Held::default();
    let (l, h) = (Arc::clone(&log), Arc::clone(&held));
    simulator::install_driver(
        &m,
        "fdo",
        driver(move |init| {
            let device = init.create_device()?;
            device.create_interface(CLASS, None)?;
            let mut config = QueueConfig::new_default(QueueDispatch::Parallel);
            let (l, h) = (Arc::clone(&l), Arc::clone(&h));
            config.device_control = on_ioctl(move |_q, req, _out, _in, code| {
                if code == IOCTL_PARK {
                    let l = Arc::clone(&l);
                    req.mark_cancelable(move |req| {
                        push(&l, format!("EvtRequestCancel {}", req.id()));
                        assert!(req.is_canceled());
                        req.complete(NtStatus::CANCELLED);
                    })
                    .unwrap();
                }
                h.lock().unwrap().push(req);
            });
            device.create_queue(config)?;
            Ok(())
        }),
    );
    let node = plug(&m, "ROOT\\CANCEL", "fdo", None);
    let h = app(&m, false)
        .open(&link_of(&node), Access::READ_WRITE)
        .unwrap();

    // Marked cancelable, then the application cancels: the routine owns and completes it.
    let op = h.device_io_control_overlapped(IOCTL_PARK, &[], 0).unwrap();
    let r = take(&held);
    assert!(!r.is_canceled());
    assert!(op.cancel());
    assert_eq!(
        entries(&log),
        [format!("EvtRequestCancel {}", op.request_id())]
    );
    assert_eq!(nt(op.status().unwrap()), NtStatus::CANCELLED);
    assert!(r.is_canceled());
    assert_eq!(r.unmark_cancelable(), Err(NtStatus::CANCELLED));
    drop(r); // the routine completed it: this handle gives nothing up

    // Unmarked before any cancel: the driver completes it normally.
    let op = h.device_io_control_overlapped(IOCTL_PARK, &[], 0).unwrap();
    let r = take(&held);
    assert_eq!(r.unmark_cancelable(), Ok(()));
    r.complete_with_information(NtStatus::SUCCESS, 0);
    assert_eq!(op.result().unwrap().unwrap(), (Vec::new(), 0));

    // Cancelled before being marked: MarkCancelable says so and does not call the routine.
    let op = h.device_io_control_overlapped(IOCTL_HOLD, &[], 0).unwrap();
    let r = take(&held);
    assert!(!op.cancel(), "no cancel routine: only the flag is set");
    assert!(r.is_canceled());
    assert_eq!(
        r.mark_cancelable(|_| panic!("must not run")),
        Err(NtStatus::CANCELLED)
    );
    r.complete(NtStatus::CANCELLED);
    assert_eq!(nt(op.status().unwrap()), NtStatus::CANCELLED);
    assert_eq!(entries(&log).len(), 1);
    h.close();
    assert_clean(&m);
}

#[test]
fn evt_io_stop_and_resume_across_power_cycles_with_stop_acknowledge() {
    let m = Machine::new();
    let _bound = m.enter();
    let log = Log::default();
    let held = Held::default();
    let requeue = Arc::new(AtomicBool::new(false));
    let device_slot: Slot<Device> = Arc::default();
    let (l, h, rq, ds) = (
        Arc::clone(&log),
        Arc::clone(&held),
        Arc::clone(&requeue),
        Arc::clone(&device_slot),
    );
    simulator::install_driver(
        &m,
        "fdo",
        driver(move |init| {
            let mut pnp = PnpPowerCallbacks::default();
            let l2 = Arc::clone(&l);
            pnp.d0_entry = Some(Arc::new(move |_d: &Device, previous| {
                push(&l2, format!("D0Entry({previous:?})"));
                Ok(())
            }));
            let l2 = Arc::clone(&l);
            pnp.d0_exit = Some(Arc::new(move |_d: &Device, target| {
                push(&l2, format!("D0Exit({target:?})"));
                Ok(())
            }));
            init.set_pnp_power_callbacks(pnp);
            let device = init.create_device()?;
            device.create_interface(CLASS, None)?;
            let mut config = QueueConfig::new_default(QueueDispatch::Sequential);
            config.power_managed = Some(true);
            let (l2, h2) = (Arc::clone(&l), Arc::clone(&h));
            config.read = on_length(move |_q, req, len| {
                push(&l2, format!("EvtIoRead {} len={len}", req.id()));
                h2.lock().unwrap().push(req);
            });
            let (l2, h2, rq2) = (Arc::clone(&l), Arc::clone(&h), Arc::clone(&rq));
            config.stop = on_stop(move |_q, req, flags| {
                push(
                    &l2,
                    format!(
                        "EvtIoStop {} purge={} cancelable={}",
                        req.id(),
                        flags.purge,
                        flags.cancelable
                    ),
                );
                if flags.cancelable {
                    assert_eq!(req.unmark_cancelable(), Ok(()));
                }
                if flags.purge {
                    h2.lock().unwrap().retain(|r| r.id() != req.id());
                    req.complete(NtStatus::DEVICE_REMOVED);
                } else if rq2.load(Ordering::SeqCst) {
                    // Back to the queue: the driver's handle is no longer its own.
                    h2.lock().unwrap().retain(|r| r.id() != req.id());
                    req.stop_acknowledge(true);
                } else {
                    req.stop_acknowledge(false);
                }
            });
            let l2 = Arc::clone(&l);
            config.resume = on_request(move |_q, req| {
                push(&l2, format!("EvtIoResume {}", req.id()));
            });
            device.create_queue(config)?;
            *ds.lock().unwrap() = Some(device);
            Ok(())
        }),
    );
    let node = plug(&m, "ROOT\\POWER", "fdo", None);
    let device = get(&device_slot);
    let h = app(&m, false)
        .open(&link_of(&node), Access::READ_WRITE)
        .unwrap();
    log.lock().unwrap().clear();

    // Cycle 1 (system sleep): the presented request is acknowledged and kept, then resumed.
    let a = h.read_overlapped(1).unwrap();
    assert_eq!(held_count(&held), 1);
    m.pnp().system_sleep(SystemPowerState::S3).unwrap();
    assert!(!device.is_in_d0());
    let b = h.read_overlapped(2).unwrap();
    assert_eq!(held_count(&held), 1, "held while out of D0");
    m.pnp().system_resume().unwrap();
    assert!(device.is_in_d0());
    assert_eq!(held_count(&held), 1, "sequential: A is still the driver's");
    let r = take(&held);
    assert_eq!(r.id(), a.request_id());
    r.with_output_buffer(1, |out| out[0] = 7).unwrap();
    r.complete_with_information(NtStatus::SUCCESS, 1);
    assert_eq!(a.result().unwrap().unwrap(), (vec![7], 1));
    assert_eq!(held_count(&held), 1, "B presented after A completed");
    assert_eq!(
        entries(&log),
        [
            format!("EvtIoRead {} len=1", a.request_id()),
            format!("EvtIoStop {} purge=false cancelable=false", a.request_id()),
            "D0Exit(D3)".to_owned(),
            "D0Entry(D3)".to_owned(),
            format!("EvtIoResume {}", a.request_id()),
            format!("EvtIoRead {} len=2", b.request_id()),
        ]
    );

    // Cycle 2 (S0 idle): a cancelable request is unmarked and requeued, then presented again.
    log.lock().unwrap().clear();
    requeue.store(true, Ordering::SeqCst);
    held.lock().unwrap()[0]
        .mark_cancelable(|r| r.complete(NtStatus::CANCELLED))
        .unwrap();
    node.idle().unwrap();
    assert!(!device.is_in_d0());
    assert_eq!(held_count(&held), 0);
    assert!(!b.is_complete());
    node.wake_from_idle().unwrap();
    let r = take(&held);
    assert_eq!(r.id(), b.request_id());
    r.complete_with_information(NtStatus::SUCCESS, 0);
    assert!(b.is_complete());
    assert_eq!(
        entries(&log),
        [
            format!("EvtIoStop {} purge=false cancelable=true", b.request_id()),
            "D0Exit(D3)".to_owned(),
            "D0Entry(D3)".to_owned(),
            format!("EvtIoRead {} len=2", b.request_id()),
        ]
    );

    // Removal: EvtIoStop with the purge flag; the driver completes.
    log.lock().unwrap().clear();
    let c = h.read_overlapped(3).unwrap();
    node.remove().unwrap();
    assert_eq!(nt(c.status().unwrap()), NtStatus::DEVICE_REMOVED);
    assert_eq!(
        entries(&log)[..2],
        [
            format!("EvtIoRead {} len=3", c.request_id()),
            format!("EvtIoStop {} purge=true cancelable=false", c.request_id()),
        ]
    );
    h.close();
    assert_clean(&m);
}

#[test]
fn configure_request_dispatching_routes_request_types_to_queues() {
    let m = Machine::new();
    let _bound = m.enter();
    let log = Log::default();
    let made: Arc<Mutex<Vec<(Device, Queue)>>> = Arc::default();
    let (l, mk) = (Arc::clone(&log), Arc::clone(&made));
    simulator::install_driver(
        &m,
        "fdo",
        driver(move |init| {
            let device = init.create_device()?;
            device.create_interface(CLASS, None)?;
            let mut config = QueueConfig::new_default(QueueDispatch::Parallel);
            config.device_control = on_ioctl(|_q, req, _o, _i, _c| echo(req));
            device.create_queue(config)?;
            let mut reads = QueueConfig::new(QueueDispatch::Sequential);
            let l2 = Arc::clone(&l);
            reads.read = on_length(move |_q, req, len| {
                push(&l2, format!("reads: EvtIoRead {len}"));
                req.with_output_buffer(len, |out| out.fill(0x11)).unwrap();
                req.complete_with_information(NtStatus::SUCCESS, len);
            });
            let reads = device.create_queue(reads)?;
            device.configure_request_dispatching(&reads, RequestType::Read)?;
            let mut writes = QueueConfig::new(QueueDispatch::Parallel);
            writes.power_managed = Some(false);
            let l2 = Arc::clone(&l);
            writes.default = on_request(move |_q, req| {
                let p = req.parameters();
                push(&l2, format!("writes: EvtIoDefault {:?}", p.kind));
                req.complete_with_information(NtStatus::SUCCESS, p.input_length);
            });
            let writes = device.create_queue(writes)?;
            device.configure_request_dispatching(&writes, RequestType::Write)?;
            for kind in [
                RequestType::Create,
                RequestType::Cleanup,
                RequestType::Close,
            ] {
                assert_eq!(
                    device.configure_request_dispatching(&reads, kind),
                    Err(NtStatus::INVALID_PARAMETER),
                    "{kind:?} goes to the file-object callbacks"
                );
            }
            mk.lock().unwrap().push((device, reads));
            Ok(())
        }),
    );
    let node = plug(&m, "ROOT\\ROUTE_A", "fdo", None);
    let _other = plug(&m, "ROOT\\ROUTE_B", "fdo", None);
    let made = made.lock().unwrap().clone();
    assert_eq!(made.len(), 2);
    assert_eq!(
        made[1]
            .0
            .configure_request_dispatching(&made[0].1, RequestType::Read),
        Err(NtStatus::INVALID_PARAMETER),
        "a queue of another device"
    );
    let h = app(&m, false)
        .open(&link_of(&node), Access::READ_WRITE)
        .unwrap();
    assert_eq!(h.read(3).unwrap(), vec![0x11; 3]);
    assert_eq!(h.write(b"xyz").unwrap(), 3);
    assert_eq!(
        h.device_io_control(IOCTL_ECHO, b"io", 2).unwrap(),
        (b"io".to_vec(), 2)
    );
    // The non-power-managed write queue presents while the device idles in Dx; the
    // power-managed read queue brings it back to D0.
    node.idle().unwrap();
    assert_eq!(h.write(b"q").unwrap(), 1);
    assert!(node.is_idle());
    assert_eq!(h.read(1).unwrap(), vec![0x11]);
    assert!(!node.is_idle());
    assert_eq!(
        entries(&log),
        [
            "reads: EvtIoRead 3",
            "writes: EvtIoDefault Write",
            "writes: EvtIoDefault Write",
            "reads: EvtIoRead 1",
        ]
    );
    h.close();
    assert_clean(&m);
}

// ------------------------------------------------------------------------------------------
// File objects
// ------------------------------------------------------------------------------------------

#[test]
fn file_object_callbacks_and_administrator_checks() {
    let m = Machine::new();
    let _bound = m.enter();
    let log = Log::default();
    let held = Held::default();
    let refuse = Arc::new(AtomicBool::new(false));
    let (l, h, rf) = (Arc::clone(&log), Arc::clone(&held), Arc::clone(&refuse));
    simulator::install_driver(
        &m,
        "fdo",
        driver(move |init| {
            let (l1, l2, l3, l4, rf) = (
                Arc::clone(&l),
                Arc::clone(&l),
                Arc::clone(&l),
                Arc::clone(&l),
                Arc::clone(&rf),
            );
            let create: FileCreateFn<Device, Request, FileObject> =
                Arc::new(move |device, req, file| {
                    assert!(!device.is_filter());
                    assert_eq!(req.parameters().kind, RequestType::Create);
                    assert_eq!(req.requestor_mode(), RequestorMode::User);
                    assert_eq!(req.file_object(), Some(file.clone()));
                    assert_eq!(req.is_requestor_administrator(), file.is_administrator());
                    push(
                        &l1,
                        format!("create {} admin={}", file.id(), file.is_administrator()),
                    );
                    if rf.load(Ordering::SeqCst) {
                        req.complete(NtStatus::SHARING_VIOLATION);
                    } else {
                        req.complete(NtStatus::SUCCESS);
                    }
                });
            let cleanup: FileFn<FileObject> =
                Arc::new(move |file| push(&l2, format!("cleanup {}", file.id())));
            let close: FileFn<FileObject> =
                Arc::new(move |file| push(&l3, format!("close {}", file.id())));
            let deleted: FileFn<FileObject> =
                Arc::new(move |file| push(&l4, format!("deleted {}", file.id())));
            init.set_file_object_config(FileObjectConfig {
                create: Some(create),
                cleanup: Some(cleanup),
                close: Some(close),
                deleted: Some(deleted),
            });
            let device = init.create_device()?;
            device.create_interface(CLASS, None)?;
            let mut config = QueueConfig::new_default(QueueDispatch::Parallel);
            let h = Arc::clone(&h);
            config.device_control = on_ioctl(move |_q, req, _o, _i, code| match code {
                IOCTL_ADMIN_ONLY => {
                    let file_admin = req.file_object().is_some_and(|f| f.is_administrator());
                    if req.is_requestor_administrator() && file_admin {
                        req.complete(NtStatus::SUCCESS);
                    } else {
                        req.complete(NtStatus::ACCESS_DENIED);
                    }
                }
                _ => h.lock().unwrap().push(req),
            });
            device.create_queue(config)?;
            Ok(())
        }),
    );
    let node = plug(&m, "ROOT\\FILES", "fdo", None);
    let link = link_of(&node);
    let admin = app(&m, true).open(&link, Access::READ_WRITE).unwrap();
    let user = app(&m, false).open(&link, Access::READ_WRITE).unwrap();
    let admin_id = admin.file_object().id();
    let user_id = user.file_object().id();
    assert_ne!(admin_id, user_id);
    assert_eq!(
        entries(&log),
        [
            format!("create {admin_id} admin=true"),
            format!("create {user_id} admin=false"),
        ]
    );
    assert!(admin.device_io_control(IOCTL_ADMIN_ONLY, &[], 0).is_ok());
    assert_eq!(
        app_err(user.device_io_control(IOCTL_ADMIN_ONLY, &[], 0)),
        NtStatus::ACCESS_DENIED
    );
    // A create the driver fails fails the open; its file object is deleted at once (the file
    // objects' EvtCleanupCallback), with no cleanup or close.
    refuse.store(true, Ordering::SeqCst);
    assert_eq!(
        app_err(app(&m, false).open(&link, Access::READ)),
        NtStatus::SHARING_VIOLATION
    );
    refuse.store(false, Ordering::SeqCst);
    let after = entries(&log);
    assert_eq!(after.len(), 4, "{after:?}");
    let failed = after[2]
        .strip_prefix("create ")
        .and_then(|e| e.strip_suffix(" admin=false"))
        .expect("the refused create")
        .to_owned();
    assert_eq!(after[3], format!("deleted {failed}"));
    log.lock().unwrap().clear();

    // Cleanup at CloseHandle; close only once the file's last request completed.
    let op = user
        .device_io_control_overlapped(IOCTL_HOLD, &[], 0)
        .unwrap();
    user.close();
    assert_eq!(entries(&log), [format!("cleanup {user_id}")]);
    let r = take(&held);
    assert_eq!(r.file_object().map(|f| f.id()), Some(user_id));
    r.complete(NtStatus::SUCCESS);
    assert!(op.is_complete());
    m.settle();
    admin.close();
    assert_eq!(
        entries(&log),
        [
            format!("cleanup {user_id}"),
            format!("close {user_id}"),
            format!("deleted {user_id}"),
            format!("cleanup {admin_id}"),
            format!("close {admin_id}"),
            format!("deleted {admin_id}"),
        ]
    );
    assert_clean(&m);
}

// ------------------------------------------------------------------------------------------
// Filters, the local target and driver-created requests
// ------------------------------------------------------------------------------------------

#[test]
fn filter_passes_requests_down_with_a_completion_routine_and_send_and_forget() {
    let m = Machine::new();
    let _bound = m.enter();
    let fdo = install_fdo(&m, "fdo");
    let filter_log = Log::default();
    let upper: Slot<Device> = Arc::default();
    install_filter(&m, "upper", &filter_log, &upper);
    let node = plug(&m, "ROOT\\FILTERED", "fdo", Some("upper"));
    let upper = get(&upper);
    assert_eq!(upper.io_target().state(), IoTargetState::Started);
    assert_eq!(upper.io_target(), upper.io_target());
    assert_eq!(
        upper.default_queue().map(|q| q.dispatch()),
        Some(QueueDispatch::Parallel)
    );

    let h = app(&m, false)
        .open(&link_of(&node), Access::READ_WRITE)
        .unwrap();
    let (out, information) = h.device_io_control(IOCTL_ECHO, b"abc", 8).unwrap();
    assert_eq!(
        information, 103,
        "the filter's routine saw the lower result"
    );
    assert_eq!(&out[..3], b"abc");
    assert_eq!(
        app_err(h.device_io_control(IOCTL_ECHO, b"abc", 1)),
        NtStatus::BUFFER_TOO_SMALL,
        "the lower failure passes through the routine"
    );
    assert_eq!(h.read(4).unwrap(), vec![0x5A; 4], "sent and forgotten");
    assert_eq!(
        entries(&filter_log),
        [
            format!(
                "completion {IOCTL_ECHO:#x} {:?}",
                CompletionParams {
                    status: NtStatus::SUCCESS,
                    information: 3
                }
            ),
            format!(
                "completion {IOCTL_ECHO:#x} {:?}",
                CompletionParams {
                    status: NtStatus::BUFFER_TOO_SMALL,
                    information: 0
                }
            ),
        ]
    );
    assert_eq!(
        entries(&fdo.log),
        [
            format!("ioctl {IOCTL_ECHO:#x} in=3 out=8 User admin=false file=true"),
            format!("ioctl {IOCTL_ECHO:#x} in=3 out=1 User admin=false file=true"),
            "read 4 at 0".to_owned(),
        ]
    );
    h.close();
    assert_clean(&m);
}

#[test]
fn driver_created_requests_format_send_timeout_cancel_reuse_and_delete() {
    let m = Machine::new();
    let _bound = m.enter();
    let fdo = install_fdo(&m, "fdo");
    let upper: Slot<Device> = Arc::default();
    install_filter(&m, "upper", &Log::default(), &upper);
    let _node = plug(&m, "ROOT\\CREATED", "fdo", Some("upper"));
    let upper = get(&upper);
    let target = upper.io_target();

    let req = target.create_request().unwrap();
    req.format_for_ioctl(IOCTL_ECHO, b"one", 8).unwrap();
    assert_eq!(
        req.parameters(),
        RequestParameters {
            kind: RequestType::DeviceControl,
            ioctl_code: IOCTL_ECHO,
            input_length: 3,
            output_length: 8,
            offset: 0,
        }
    );
    assert_eq!(req.requestor_mode(), RequestorMode::Kernel);
    assert!(
        req.is_requestor_administrator(),
        "kernel mode passes the check"
    );
    assert_eq!(req.file_object(), None);
    assert_eq!(req.send_synchronously(&target, None), NtStatus::SUCCESS);
    assert_eq!(req.status(), NtStatus::SUCCESS);
    assert_eq!(req.information(), 3);
    assert_eq!(
        req.with_output_buffer(3, |out| out[..3].to_vec()),
        Ok(b"one".to_vec())
    );

    req.reuse(NtStatus::SUCCESS).unwrap();
    assert_eq!(req.information(), 0);
    req.format_for_write(b"data", 16).unwrap();
    assert_eq!(req.send_synchronously(&target, None), NtStatus::SUCCESS);
    assert_eq!(req.information(), 4);

    req.reuse(NtStatus::SUCCESS).unwrap();
    req.format_for_read(5, 32).unwrap();
    assert_eq!(req.parameters().kind, RequestType::Read);
    assert_eq!(req.send_synchronously(&target, None), NtStatus::SUCCESS);
    assert_eq!(
        req.with_output_buffer(5, |out| out.to_vec()),
        Ok(vec![0x5A; 5])
    );

    req.reuse(NtStatus::SUCCESS).unwrap();
    req.format_for_internal_ioctl(IOCTL_INTERNAL_REVERSE, b"xyz", 3)
        .unwrap();
    assert_eq!(req.parameters().kind, RequestType::InternalDeviceControl);
    assert_eq!(req.send_synchronously(&target, None), NtStatus::SUCCESS);
    assert_eq!(
        req.with_output_buffer(3, |out| out.to_vec()),
        Ok(b"zyx".to_vec())
    );

    // Asynchronous with a timeout on the virtual clock: cancelled when it expires.
    let done: Slot<(u64, CompletionParams)> = Arc::default();
    let completion = |done: &Slot<(u64, CompletionParams)>| {
        let done = Arc::clone(done);
        move |req: Request, params: CompletionParams| {
            *done.lock().unwrap() = Some((req.id(), params));
        }
    };
    req.reuse(NtStatus::SUCCESS).unwrap();
    req.format_for_ioctl(IOCTL_PARK, &[], 0).unwrap();
    req.set_completion_routine(completion(&done));
    let with_timeout = SendOptions {
        timeout: Some(Duration::from_millis(100)),
        ..SendOptions::default()
    };
    let t0 = m.now();
    req.send(&target, with_timeout).unwrap();
    assert_eq!(held_count(&fdo.held), 1);
    assert_eq!(
        req.reuse(NtStatus::SUCCESS),
        Err(NtStatus::INVALID_DEVICE_STATE),
        "in flight"
    );
    assert_eq!(
        req.format_for_ioctl(IOCTL_ECHO, &[], 0),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    m.advance(Duration::from_millis(99));
    assert!(done.lock().unwrap().is_none());
    m.advance(Duration::from_millis(1));
    assert_eq!(m.now(), t0 + Duration::from_millis(100));
    assert_eq!(
        done.lock().unwrap().take(),
        Some((
            req.id(),
            CompletionParams {
                status: NtStatus::CANCELLED,
                information: 0
            }
        ))
    );
    assert_eq!(req.status(), NtStatus::CANCELLED);
    fdo.held.lock().unwrap().clear(); // completed by its cancel routine

    // WdfRequestCancelSentRequest.
    req.reuse(NtStatus::SUCCESS).unwrap();
    assert!(!req.cancel_sent_request(), "not sent");
    req.format_for_ioctl(IOCTL_PARK, &[], 0).unwrap();
    req.set_completion_routine(completion(&done));
    req.send(&target, SendOptions::default()).unwrap();
    assert!(done.lock().unwrap().is_none());
    assert!(req.cancel_sent_request());
    assert_eq!(
        done.lock().unwrap().take().map(|(_, p)| p.status),
        Some(NtStatus::CANCELLED)
    );
    fdo.held.lock().unwrap().clear();
    req.reuse(NtStatus::SUCCESS).unwrap();
    req.delete().unwrap();

    // Send-and-forget is for requests the driver received, not for its own.
    let own = target.create_request().unwrap();
    own.format_for_ioctl(IOCTL_ECHO, b"x", 1).unwrap();
    let forget = SendOptions {
        send_and_forget: true,
        ..SendOptions::default()
    };
    assert_eq!(own.send(&target, forget), Err(NtStatus::INVALID_PARAMETER));
    own.delete().unwrap();

    // WdfIoTargetSendIoctlSynchronously, external and internal.
    assert_eq!(
        target.send_ioctl_synchronously(IOCTL_ECHO, b"hi", 4, false, None),
        Ok((b"hi".to_vec(), 2))
    );
    assert_eq!(
        target.send_ioctl_synchronously(IOCTL_INTERNAL_REVERSE, b"ab", 2, true, None),
        Ok((b"ba".to_vec(), 2))
    );
    assert_eq!(
        target.send_ioctl_synchronously(ctl(0x8FF, 0), &[], 0, false, None),
        Err(NtStatus::INVALID_DEVICE_REQUEST)
    );
    // Below the function driver is the bus driver, which fails what it does not know.
    assert_eq!(
        fdo.device(0)
            .io_target()
            .send_ioctl_synchronously(IOCTL_ECHO, b"x", 1, false, None),
        Err(NtStatus::INVALID_DEVICE_REQUEST)
    );
    let kinds: Vec<String> = entries(&fdo.log)
        .into_iter()
        .filter(|e| !e.starts_with("ioctl"))
        .collect();
    assert_eq!(
        kinds,
        [
            "write \"data\" at 16".to_owned(),
            "read 5 at 32".to_owned(),
            format!("internal {IOCTL_INTERNAL_REVERSE:#x} in=3 out=3"),
            format!("internal {IOCTL_INTERNAL_REVERSE:#x} in=2 out=2"),
        ]
    );
    assert!(entries(&fdo.log)
        .iter()
        .filter(|e| e.starts_with("ioctl"))
        .all(|e| e.ends_with("Kernel admin=true file=false")));
    assert_clean(&m);
}

#[test]
fn synchronous_sends_time_out_on_the_virtual_clock() {
    let m = Machine::builder().clock(ClockMode::AutoAdvance).build();
    let _bound = m.enter();
    let fdo = install_fdo(&m, "fdo");
    let upper: Slot<Device> = Arc::default();
    install_filter(&m, "upper", &Log::default(), &upper);
    let _node = plug(&m, "ROOT\\TIMEOUT", "fdo", Some("upper"));
    let target = get(&upper).io_target();

    let t0 = m.now();
    assert_eq!(
        target.send_ioctl_synchronously(
            IOCTL_PARK,
            &[],
            0,
            false,
            Some(Duration::from_millis(250))
        ),
        Err(NtStatus::IO_TIMEOUT)
    );
    assert_eq!(m.now(), t0 + Duration::from_millis(250));
    fdo.held.lock().unwrap().clear(); // completed by its cancel routine

    let req = target.create_request().unwrap();
    req.format_for_ioctl(IOCTL_PARK, &[], 0).unwrap();
    assert_eq!(
        req.send_synchronously(&target, Some(Duration::from_secs(1))),
        NtStatus::IO_TIMEOUT
    );
    assert_eq!(m.now(), t0 + Duration::from_millis(1250));
    fdo.held.lock().unwrap().clear();
    req.delete().unwrap();
    assert_clean(&m);
}

// ------------------------------------------------------------------------------------------
// Remote targets and interface notifications
// ------------------------------------------------------------------------------------------

/// What the client driver records and holds.
#[derive(Clone, Default)]
struct Client {
    changes: Arc<Mutex<Vec<InterfaceChange>>>,
    log: Log,
    veto: Arc<AtomicBool>,
    device: Slot<Device>,
    target: Slot<IoTarget>,
    notification: Arc<Mutex<Option<InterfaceNotification>>>,
}

/// A function driver that, in `EvtDeviceSelfManagedIoInit`, registers for `CLASS` arrivals and
/// opens a remote target on the first one, with query-remove (vetoing while `veto` is set),
/// remove-canceled (reopen) and remove-complete (close) callbacks.
fn install_client(m: &Machine) -> Client {
    let client = Client::default();
    let c = client.clone();
    simulator::install_driver(
        m,
        "client",
        driver(move |init| {
            let mut pnp = PnpPowerCallbacks::default();
            let c1 = c.clone();
            pnp.self_managed_io_init = Some(Arc::new(move |device: &Device| {
                let c2 = c1.clone();
                let dev = device.clone();
                let notification = device.register_interface_notification(
                    CLASS,
                    Arc::new(move |change: &InterfaceChange| {
                        c2.changes.lock().unwrap().push(change.clone());
                        let InterfaceChange::Arrival(link) = change else {
                            return;
                        };
                        if c2.target.lock().unwrap().is_some() {
                            return;
                        }
                        let target = dev.create_io_target().unwrap();
                        assert_eq!(target.state(), IoTargetState::Closed);
                        let mut params = TargetOpenParams::by_name(link);
                        let (l, veto) = (Arc::clone(&c2.log), Arc::clone(&c2.veto));
                        let query_remove: TargetQueryRemoveFn<IoTarget> = Arc::new(move |t| {
                            push(&l, "QueryRemove");
                            if veto.load(Ordering::SeqCst) {
                                Err(NtStatus::ACCESS_DENIED)
                            } else {
                                t.close_for_query_remove();
                                Ok(())
                            }
                        });
                        let l = Arc::clone(&c2.log);
                        let remove_canceled: TargetFn<IoTarget> = Arc::new(move |t| {
                            push(&l, "RemoveCanceled");
                            t.open(TargetOpenParams::reopen()).unwrap();
                        });
                        let l = Arc::clone(&c2.log);
                        let remove_complete: TargetFn<IoTarget> = Arc::new(move |t| {
                            push(&l, "RemoveComplete");
                            t.close();
                        });
                        params.query_remove = Some(query_remove);
                        params.remove_canceled = Some(remove_canceled);
                        params.remove_complete = Some(remove_complete);
                        target.open(params).unwrap();
                        *c2.target.lock().unwrap() = Some(target);
                    }),
                )?;
                *c1.notification.lock().unwrap() = Some(notification);
                Ok(())
            }));
            init.set_pnp_power_callbacks(pnp);
            let device = init.create_device()?;
            *c.device.lock().unwrap() = Some(device);
            Ok(())
        }),
    );
    client
}

#[test]
fn remote_target_from_an_interface_arrival_with_query_remove_and_unplug() {
    let m = Machine::new();
    let _bound = m.enter();
    let server = install_fdo(&m, "server");
    let server_a = plug(&m, "ROOT\\SERVER_A", "server", None);
    let link_a = link_of(&server_a);
    let client = install_client(&m);
    let client_node = plug(&m, "ROOT\\CLIENT", "client", None);
    // The existing interface arrives at registration.
    assert_eq!(
        *client.changes.lock().unwrap(),
        [InterfaceChange::Arrival(link_a.clone())]
    );
    let target = get(&client.target);
    let client_device = get(&client.device);
    assert_eq!(target.state(), IoTargetState::Started);
    assert_eq!(
        target.send_ioctl_synchronously(IOCTL_ECHO, b"hi", 4, false, None),
        Ok((b"hi".to_vec(), 2))
    );
    assert_eq!(
        entries(&server.log),
        [format!(
            "ioctl {IOCTL_ECHO:#x} in=2 out=4 Kernel admin=true file=true"
        )]
    );
    // WdfIoTargetOpen errors: an open target, the local target, an unknown name.
    assert_eq!(
        target.open(TargetOpenParams::by_name(&link_a)),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(
        client_device
            .io_target()
            .open(TargetOpenParams::by_name(&link_a)),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    let spare = client_device.create_io_target().unwrap();
    assert_ne!(spare, target);
    assert_eq!(
        spare.open(TargetOpenParams::by_name("\\??\\ROOT#MISSING#0000#{none}")),
        Err(NtStatus::OBJECT_NAME_NOT_FOUND)
    );
    assert_eq!(spare.state(), IoTargetState::Closed);

    // A later arrival is notified too.
    let server_b = plug(&m, "ROOT\\SERVER_B", "server", None);
    let link_b = link_of(&server_b);
    assert_eq!(
        client.changes.lock().unwrap().last(),
        Some(&InterfaceChange::Arrival(link_b.clone()))
    );

    // Query-remove vetoed: the removal fails with the callback's status.
    client.veto.store(true, Ordering::SeqCst);
    assert_eq!(server_a.remove().map_err(nt), Err(NtStatus::ACCESS_DENIED));
    assert_eq!(server_a.state(), NodeState::Started);
    assert_eq!(target.state(), IoTargetState::Started);
    // Allowed, then cancelled: closed for query-remove, then reopened.
    client.veto.store(false, Ordering::SeqCst);
    server_a.query_remove().unwrap();
    assert_eq!(target.state(), IoTargetState::ClosedForQueryRemove);
    assert_eq!(
        target.send_ioctl_synchronously(IOCTL_ECHO, b"x", 1, false, None),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    server_a.cancel_remove().unwrap();
    assert_eq!(target.state(), IoTargetState::Started);
    assert_eq!(
        target.send_ioctl_synchronously(IOCTL_ECHO, b"y", 1, false, None),
        Ok((b"y".to_vec(), 1))
    );

    // Unplug with a request in flight: the server completes it on its way out, the client gets
    // the removal notification and EvtIoTargetRemoveComplete.
    let done: Slot<CompletionParams> = Arc::default();
    let d2 = Arc::clone(&done);
    let req = target.create_request().unwrap();
    req.format_for_ioctl(IOCTL_PARK, &[], 0).unwrap();
    req.set_completion_routine(move |req, params| {
        assert_eq!(req.file_object().map(|f| f.is_administrator()), Some(true));
        *d2.lock().unwrap() = Some(params);
    });
    req.send(&target, SendOptions::default()).unwrap();
    assert_eq!(held_count(&server.held), 1);
    server_a.surprise_remove().unwrap();
    assert_eq!(
        get(&done),
        CompletionParams {
            status: NtStatus::DEVICE_REMOVED,
            information: 0
        }
    );
    assert_eq!(target.state(), IoTargetState::Closed);
    assert_eq!(target.start(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(
        client.changes.lock().unwrap().last(),
        Some(&InterfaceChange::Removal(link_a.clone()))
    );
    assert_eq!(
        entries(&client.log),
        [
            "QueryRemove",
            "QueryRemove",
            "RemoveCanceled",
            "RemoveComplete"
        ]
    );
    req.delete().unwrap();

    // Unregistered: no more notifications.
    let notification = client.notification.lock().unwrap().take().unwrap();
    notification.unregister();
    let seen = client.changes.lock().unwrap().len();
    let _server_c = plug(&m, "ROOT\\SERVER_C", "server", None);
    assert_eq!(client.changes.lock().unwrap().len(), seen);

    // The client's targets go with its device.
    client_node.remove().unwrap();
    assert_eq!(spare.state(), IoTargetState::Deleted);
    assert_eq!(target.state(), IoTargetState::Deleted);
    assert_clean(&m);
}

#[test]
fn io_target_state_transitions() {
    let m = Machine::new();
    let _bound = m.enter();
    let server = install_fdo(&m, "server");
    let server_node = plug(&m, "ROOT\\SERVER", "server", None);
    let link = link_of(&server_node);
    let client = install_client(&m);
    let _client_node = plug(&m, "ROOT\\CLIENT", "client", None);
    let device = get(&client.device);
    assert_eq!(device.io_target().state(), IoTargetState::Started, "local");

    let t = device.create_io_target().unwrap();
    assert_eq!(t.state(), IoTargetState::Closed);
    assert_eq!(t.start(), Err(NtStatus::INVALID_DEVICE_STATE));
    t.open(TargetOpenParams::by_name(&link)).unwrap();
    assert_eq!(t.state(), IoTargetState::Started);
    assert_eq!(t.start(), Ok(()), "already started");

    let done: Slot<CompletionParams> = Arc::default();
    let send = |req: &Request, options: SendOptions| {
        let d = Arc::clone(&done);
        req.set_completion_routine(move |_req, params| *d.lock().unwrap() = Some(params));
        req.send(&t, options)
    };
    let ioctls = || {
        entries(&server.log)
            .iter()
            .filter(|e| e.starts_with("ioctl"))
            .count()
    };

    // Stopped: requests wait inside the target until it starts.
    let req = t.create_request().unwrap();
    req.format_for_ioctl(IOCTL_ECHO, b"q", 4).unwrap();
    t.stop(false);
    assert_eq!(t.state(), IoTargetState::Stopped);
    let before = ioctls();
    send(&req, SendOptions::default()).unwrap();
    assert_eq!(ioctls(), before, "queued in the stopped target");
    assert!(done.lock().unwrap().is_none());
    assert_eq!(t.start(), Ok(()));
    assert_eq!(t.state(), IoTargetState::Started);
    assert_eq!(
        done.lock().unwrap().take(),
        Some(CompletionParams {
            status: NtStatus::SUCCESS,
            information: 1
        })
    );
    // IGNORE_TARGET_STATE goes through a stopped target.
    t.stop(false);
    req.reuse(NtStatus::SUCCESS).unwrap();
    req.format_for_ioctl(IOCTL_ECHO, b"z", 4).unwrap();
    let ignore = SendOptions {
        ignore_target_state: true,
        ..SendOptions::default()
    };
    send(&req, ignore).unwrap();
    assert_eq!(done.lock().unwrap().take().map(|p| p.information), Some(1));
    assert_eq!(t.start(), Ok(()));

    // Stop leaving sent I/O pending, then stop cancelling it.
    req.reuse(NtStatus::SUCCESS).unwrap();
    req.format_for_ioctl(IOCTL_PARK, &[], 0).unwrap();
    send(&req, SendOptions::default()).unwrap();
    t.stop(false);
    assert!(done.lock().unwrap().is_none(), "left pending");
    assert!(!server.held.lock().unwrap()[0].is_canceled());
    t.stop(true);
    assert_eq!(
        done.lock().unwrap().take().map(|p| p.status),
        Some(NtStatus::CANCELLED)
    );
    server.held.lock().unwrap().clear();
    assert_eq!(t.start(), Ok(()));

    // Closed for query-remove and closed refuse to start and to send; reopen / open again.
    t.close_for_query_remove();
    assert_eq!(t.state(), IoTargetState::ClosedForQueryRemove);
    assert_eq!(t.start(), Err(NtStatus::INVALID_DEVICE_STATE));
    req.reuse(NtStatus::SUCCESS).unwrap();
    req.format_for_ioctl(IOCTL_ECHO, b"w", 1).unwrap();
    assert_eq!(
        send(&req, SendOptions::default()),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(req.status(), NtStatus::INVALID_DEVICE_STATE);
    t.open(TargetOpenParams::reopen()).unwrap();
    assert_eq!(t.state(), IoTargetState::Started);
    t.close();
    assert_eq!(t.state(), IoTargetState::Closed);
    assert_eq!(t.start(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(
        t.send_ioctl_synchronously(IOCTL_ECHO, b"v", 1, false, None),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    t.open(TargetOpenParams::by_name(&link)).unwrap();
    assert_eq!(
        t.send_ioctl_synchronously(IOCTL_ECHO, b"v", 1, false, None),
        Ok((b"v".to_vec(), 1))
    );
    req.delete().unwrap();
    t.close();
    // WdfObjectDelete of the remote target: it is gone at once (not only at device deletion);
    // the local target is the framework's and refuses.
    let second = device.create_io_target().unwrap();
    second.open(TargetOpenParams::by_name(&link)).unwrap();
    second.delete().unwrap();
    assert_eq!(second.state(), IoTargetState::Deleted);
    assert_eq!(second.delete(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(
        device.io_target().delete(),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_clean(&m);
}
