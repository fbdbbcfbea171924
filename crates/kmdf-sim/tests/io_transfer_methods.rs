//! IOCTL buffers by transfer method (bits 1–0 of the code), as the I/O manager and KMDF give
//! them: `METHOD_BUFFERED` (one system buffer, `Information` bytes copied back),
//! `METHOD_IN_DIRECT`/`METHOD_OUT_DIRECT` (the output is the caller's own memory),
//! `METHOD_NEITHER` (user addresses, reachable only in `EvtIoInCallerContext`), and the
//! requests drivers build for I/O targets (kernel mode, internal IOCTLs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kmdf_sim::device::Device;
use kmdf_sim::driver::{self, DriverConfig};
use kmdf_sim::guid::Guid;
use kmdf_sim::io::{
    self, Access, AppConfig, Application, DispatchType, LockedUserBuffer, Queue, QueueConfig,
    Request, METHOD_BUFFERED, METHOD_IN_DIRECT, METHOD_NEITHER, METHOD_OUT_DIRECT,
};
use kmdf_sim::object::ObjectAttributes;
use kmdf_sim::pnp::{DeviceNode, StackSpec};
use kmdf_sim::{Machine, Status};

const CLASS: Guid = Guid::new(0x7a11_0b0e, 0x1234, 0x5678, [3; 8]);

const fn ctl(function: u32, method: u32) -> u32 {
    (0x22 << 16) | (function << 2) | method
}

/// Reads the input, writes 8 bytes of 0xA0.. to the output, reads the input again.
const IOCTL_BUFFERED: u32 = ctl(0x900, METHOD_BUFFERED);
/// The same, completing with an error after writing.
const IOCTL_BUFFERED_FAIL: u32 = ctl(0x901, METHOD_BUFFERED);
/// Writes the whole output and completes with information 2.
const IOCTL_OUT_DIRECT: u32 = ctl(0x902, METHOD_OUT_DIRECT);
/// Writes the whole output and parks the request (the test completes it).
const IOCTL_OUT_DIRECT_PARK: u32 = ctl(0x903, METHOD_OUT_DIRECT);
/// Reads the "output" (a second input) and reports it in the driver's log.
const IOCTL_IN_DIRECT: u32 = ctl(0x904, METHOD_IN_DIRECT);
/// User addresses: probed and locked in `EvtIoInCallerContext`, used in `EvtIoDeviceControl`.
const IOCTL_NEITHER: u32 = ctl(0x905, METHOD_NEITHER);

type Log = Arc<Mutex<Vec<String>>>;
type Locked = Arc<Mutex<HashMap<u64, (LockedUserBuffer, LockedUserBuffer)>>>;
type Held = Arc<Mutex<Vec<Request>>>;

fn note(l: &Log, s: impl Into<String>) {
    l.lock().unwrap().push(s.into());
}

fn take(l: &Log) -> Vec<String> {
    std::mem::take(&mut *l.lock().unwrap())
}

fn pattern(b: &mut [u8]) {
    for (i, x) in b.iter_mut().enumerate() {
        *x = 0xA0 + u8::try_from(i).unwrap();
    }
}

/// EvtIoDeviceControl of the test driver.
fn device_control(r: Request, code: u32, log: &Log, locked: &Locked, held: &Held) {
    match code {
        IOCTL_BUFFERED | IOCTL_BUFFERED_FAIL => {
            let before = r.input_buffer(1).unwrap();
            let seen = r
                .with_output_buffer(1, |b| {
                    let seen = b.to_vec();
                    pattern(b);
                    seen
                })
                .unwrap();
            // A view nested in another view of the same request is refused, not a deadlock.
            let nested = r.with_output_buffer(1, |_| r.input_buffer(1)).unwrap();
            let after = r.input_buffer(1).unwrap();
            note(log, format!("before {before:02x?}"));
            note(log, format!("output view {seen:02x?}"));
            note(log, format!("after {after:02x?}"));
            note(log, format!("nested {nested:?}"));
            if code == IOCTL_BUFFERED {
                r.complete_with_information(Status::SUCCESS, 3);
            } else {
                r.complete_with_information(Status::INVALID_PARAMETER, 3);
            }
        }
        IOCTL_OUT_DIRECT | IOCTL_OUT_DIRECT_PARK => {
            let seen = r
                .with_output_buffer(1, |b| {
                    let seen = b.to_vec();
                    pattern(b);
                    seen
                })
                .unwrap();
            note(log, format!("output view {seen:02x?}"));
            note(log, format!("input {:02x?}", r.input_buffer(1).unwrap()));
            if code == IOCTL_OUT_DIRECT {
                r.complete_with_information(Status::SUCCESS, 2);
            } else {
                held.lock().unwrap().push(r);
            }
        }
        IOCTL_IN_DIRECT => {
            let second = r.with_output_buffer(1, |b| b.to_vec()).unwrap();
            note(log, format!("input {:02x?}", r.input_buffer(1).unwrap()));
            note(log, format!("second input {second:02x?}"));
            r.complete_with_information(Status::SUCCESS, 0);
        }
        IOCTL_NEITHER => {
            // No buffers through Retrieve*Buffer, and no unsafe buffers outside the caller's
            // context: only what was locked there.
            note(log, format!("input {:?}", r.input_buffer(1).unwrap_err()));
            note(
                log,
                format!("output {:?}", r.with_output_buffer(1, |_| ()).unwrap_err()),
            );
            note(
                log,
                format!(
                    "unsafe input {:?}",
                    r.retrieve_unsafe_user_input_buffer(1).unwrap_err()
                ),
            );
            note(
                log,
                format!(
                    "unsafe output {:?}",
                    r.retrieve_unsafe_user_output_buffer(1).unwrap_err()
                ),
            );
            let Some((input, output)) = locked.lock().unwrap().remove(&r.id()) else {
                r.complete(Status::INVALID_DEVICE_REQUEST);
                return;
            };
            let data = input.read().unwrap();
            let n = output.with_mut(|b| {
                let n = data.len().min(b.len());
                for (o, i) in b.iter_mut().zip(&data) {
                    *o = i.to_ascii_uppercase();
                }
                n
            });
            note(log, format!("read-only write {:?}", input.with_mut(|_| ())));
            r.complete_with_information(Status::SUCCESS, n.unwrap());
        }
        _ => r.complete(Status::INVALID_DEVICE_REQUEST),
    }
}

/// EvtIoInCallerContext: locks a METHOD_NEITHER request's user buffers, then enqueues every
/// request.
fn in_caller_context(dev: &Device, r: Request, log: &Log, locked: &Locked) {
    if r.parameters().ioctl_code == IOCTL_NEITHER {
        note(log, format!("input {:?}", r.input_buffer(1).unwrap_err()));
        let input = r.retrieve_unsafe_user_input_buffer(1).unwrap();
        let output = r.retrieve_unsafe_user_output_buffer(1).unwrap();
        note(
            log,
            format!("user lengths {} {}", input.len(), output.len()),
        );
        let input = r.probe_and_lock_user_buffer_for_read(&input).unwrap();
        let output = r.probe_and_lock_user_buffer_for_write(&output).unwrap();
        locked.lock().unwrap().insert(r.id(), (input, output));
    } else {
        // Not METHOD_NEITHER: no unsafe user buffers, even here.
        note(
            log,
            format!(
                "unsafe input {:?}",
                r.retrieve_unsafe_user_input_buffer(0).unwrap_err()
            ),
        );
    }
    if let Err((r, s)) = dev.enqueue_request(r) {
        r.complete(s);
    }
}

struct Rig {
    m: Machine,
    node: DeviceNode,
    link: String,
    log: Log,
    held: Held,
}

/// A function driver with the handlers above on a parallel default queue; with
/// `EvtIoInCallerContext` if `caller_context`. Its internal-IOCTL handler echoes and reports
/// the views like the BUFFERED one.
fn rig(caller_context: bool) -> Rig {
    let m = Machine::new();
    let log: Log = Arc::default();
    let locked: Locked = Arc::default();
    let held: Held = Arc::default();
    let (l2, k2, h2) = (Arc::clone(&log), Arc::clone(&locked), Arc::clone(&held));
    driver::install(
        &m,
        "fdo",
        DriverConfig::new(move |_d, init| {
            if caller_context {
                let (l3, k3) = (Arc::clone(&l2), Arc::clone(&k2));
                io::set_io_in_caller_context(init, move |d, r| in_caller_context(d, r, &l3, &k3));
            }
            let dev = Device::create(init, ObjectAttributes::new())?;
            dev.create_interface(CLASS, None)?;
            let (l3, k3, h3) = (Arc::clone(&l2), Arc::clone(&k2), Arc::clone(&h2));
            let l4 = Arc::clone(&l2);
            Queue::create(
                &dev,
                QueueConfig::new_default(DispatchType::Parallel)
                    .on_device_control(move |_q, r, _o, _i, code| {
                        device_control(r, code, &l3, &k3, &h3);
                    })
                    .on_internal_device_control(move |_q, r, _o, _i, _code| {
                        let before = r.input_buffer(1);
                        let _ = r.with_output_buffer(1, pattern);
                        let after = r.input_buffer(1);
                        note(
                            &l4,
                            format!("internal before {before:02x?} after {after:02x?}"),
                        );
                        let n = r.parameters().output_length;
                        r.complete_with_information(Status::SUCCESS, n);
                    }),
                ObjectAttributes::new(),
            )?;
            Ok(())
        }),
    );
    let node = m
        .pnp()
        .plug_in(StackSpec::new("ROOT\\METHODS", "fdo"))
        .unwrap();
    let link = node.function_device().unwrap().interfaces()[0].clone();
    Rig {
        m,
        node,
        link,
        log,
        held,
    }
}

fn app(m: &Machine) -> Application {
    Application::new(
        m,
        AppConfig {
            administrator: false,
            name: "app.exe".into(),
        },
    )
}

#[test]
fn buffered_input_and_output_are_one_system_buffer_and_information_bytes_are_copied_back() {
    let r = rig(false);
    let h = app(&r.m).open(&r.link, Access::READ_WRITE).unwrap();

    // Output longer than the input: the system buffer is max(4, 8) bytes, the input copied in.
    let mut out = [0xCC; 8];
    let n = h
        .device_io_control_buffer(IOCTL_BUFFERED, b"abcd", &mut out)
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        take(&r.log),
        [
            "before [61, 62, 63, 64]",
            // The output view is the same memory: it starts with the input, zero-filled.
            "output view [61, 62, 63, 64, 00, 00, 00, 00]",
            // The classic pitfall: writing the output overwrote the input.
            "after [a0, a1, a2, a3]",
            "nested Err(STATUS_INVALID_DEVICE_STATE)",
        ]
    );
    // Only `Information` bytes reach the caller; the rest of its buffer is untouched.
    assert_eq!(out, [0xA0, 0xA1, 0xA2, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC]);

    // Input longer than the output: each view has its own length over the one buffer.
    let mut out = [0xCC; 2];
    let n = h
        .device_io_control_buffer(IOCTL_BUFFERED, b"abcdef", &mut out)
        .unwrap();
    assert_eq!(n, 3, "the information is the driver's");
    let log = take(&r.log);
    assert_eq!(log[1], "output view [61, 62]");
    assert_eq!(log[2], "after [a0, a1, 63, 64, 65, 66]");
    // Never more than the output length is copied back, whatever the information says.
    assert_eq!(out, [0xA0, 0xA1]);

    // An error status: nothing is copied back.
    let mut out = [0xCC; 4];
    assert_eq!(
        h.device_io_control_buffer(IOCTL_BUFFERED_FAIL, b"ab", &mut out),
        Err(Status::INVALID_PARAMETER)
    );
    assert_eq!(out, [0xCC; 4]);

    // The plain form returns the information's bytes of the caller's buffer.
    let (bytes, n) = h.device_io_control(IOCTL_BUFFERED, b"xy", 5).unwrap();
    assert_eq!((bytes, n), (vec![0xA0, 0xA1, 0xA2], 3));
}

#[test]
fn direct_output_is_the_callers_memory_written_in_place_past_the_information() {
    let r = rig(false);
    let h = app(&r.m).open(&r.link, Access::READ_WRITE).unwrap();

    // OUT_DIRECT: the driver's output view is the caller's buffer, with the caller's bytes; the
    // input is a separate system buffer that the output write leaves alone.
    let mut out = [0xCC; 6];
    let n = h
        .device_io_control_buffer(IOCTL_OUT_DIRECT, b"in", &mut out)
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        take(&r.log),
        ["output view [cc, cc, cc, cc, cc, cc]", "input [69, 6e]"]
    );
    // Everything the driver wrote is in the caller's memory, past `Information` too (with
    // METHOD_BUFFERED only 2 bytes would have been copied back).
    assert_eq!(out, [0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5]);

    // The write is visible before completion: the MDL maps the caller's pages.
    let p = h
        .device_io_control_buffer_overlapped(IOCTL_OUT_DIRECT_PARK, b"in", vec![0; 3])
        .unwrap();
    assert!(!p.is_complete());
    assert_eq!(p.caller_output(), [0xA0, 0xA1, 0xA2]);
    let parked = r.held.lock().unwrap().pop().unwrap();
    parked.complete_with_information(Status::SUCCESS, 1);
    assert_eq!(p.wait(None).unwrap().unwrap(), (vec![0xA0], 1));
    assert_eq!(p.caller_output(), [0xA0, 0xA1, 0xA2]);
    take(&r.log);

    // IN_DIRECT: the "output" buffer carries the caller's data to the driver (a second input).
    let mut out = *b"payload";
    let n = h
        .device_io_control_buffer(IOCTL_IN_DIRECT, b"hdr", &mut out)
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(
        take(&r.log),
        [
            "input [68, 64, 72]",
            "second input [70, 61, 79, 6c, 6f, 61, 64]"
        ]
    );
    assert_eq!(&out, b"payload");
}

#[test]
fn neither_buffers_are_user_addresses_reachable_only_in_the_callers_context() {
    let r = rig(true);
    let h = app(&r.m).open(&r.link, Access::READ_WRITE).unwrap();

    let mut out = [0xCC; 8];
    let n = h
        .device_io_control_buffer(IOCTL_NEITHER, b"neither", &mut out)
        .unwrap();
    assert_eq!(n, 7);
    assert_eq!(&out, b"NEITHER\xCC");
    assert_eq!(
        take(&r.log),
        [
            // EvtIoInCallerContext: no safe buffers for user addresses, the unsafe ones given.
            "input STATUS_INVALID_DEVICE_REQUEST",
            "user lengths 7 8",
            // EvtIoDeviceControl (arbitrary context): neither kind is given.
            "input STATUS_INVALID_DEVICE_REQUEST",
            "output STATUS_INVALID_DEVICE_REQUEST",
            "unsafe input STATUS_INVALID_DEVICE_REQUEST",
            "unsafe output STATUS_INVALID_DEVICE_REQUEST",
            "read-only write Err(STATUS_INVALID_DEVICE_REQUEST)",
        ]
    );

    // Without EvtIoInCallerContext a METHOD_NEITHER IOCTL's buffers are out of reach.
    let plain = rig(false);
    let h = app(&plain.m).open(&plain.link, Access::READ_WRITE).unwrap();
    let mut out = [0xCC; 1];
    assert_eq!(
        h.device_io_control_buffer(IOCTL_NEITHER, b"x", &mut out),
        Err(Status::INVALID_DEVICE_REQUEST)
    );
    assert_eq!(out, [0xCC]);
    let log = take(&plain.log);
    assert_eq!(
        log[..4],
        [
            "input STATUS_INVALID_DEVICE_REQUEST",
            "output STATUS_INVALID_DEVICE_REQUEST",
            "unsafe input STATUS_INVALID_DEVICE_REQUEST",
            "unsafe output STATUS_INVALID_DEVICE_REQUEST",
        ]
    );
}

#[test]
fn unsafe_user_buffers_are_refused_for_other_methods_even_in_the_callers_context() {
    let r = rig(true);
    let h = app(&r.m).open(&r.link, Access::READ_WRITE).unwrap();
    let mut out = [0; 4];
    h.device_io_control_buffer(IOCTL_BUFFERED, b"ab", &mut out)
        .unwrap();
    assert_eq!(
        take(&r.log)[0],
        "unsafe input STATUS_INVALID_DEVICE_REQUEST"
    );
}

#[test]
fn driver_built_requests_follow_the_method_and_kernel_neither_buffers_are_given() {
    let r = rig(false);
    let fdo = r.node.function_device().unwrap();
    let _g = r.m.enter();
    // The local target of the function driver is the bus driver; send to the function driver
    // through a remote target opened on its interface instead.
    let t = io::IoTarget::create(&fdo, ObjectAttributes::new()).unwrap();
    t.open(io::OpenParams::by_name(&r.link, Access::READ_WRITE))
        .unwrap();

    // Internal METHOD_BUFFERED: KMDF formats one system buffer (FxIoTarget::FormatIoctlRequest).
    let (out, n) = t
        .send_internal_ioctl_synchronously(ctl(0x910, METHOD_BUFFERED), b"abcd", 2, None)
        .unwrap();
    assert_eq!((out, n), (vec![0xA0, 0xA1], 2));
    assert_eq!(
        take(&r.log),
        ["internal before Ok([61, 62, 63, 64]) after Ok([a0, a1, 63, 64])"]
    );

    // Internal METHOD_NEITHER: the sender's buffers as given, retrievable (kernel addresses),
    // separate.
    let (out, n) = t
        .send_internal_ioctl_synchronously(ctl(0x911, METHOD_NEITHER), b"abcd", 2, None)
        .unwrap();
    assert_eq!((out, n), (vec![0xA0, 0xA1], 2));
    assert_eq!(
        take(&r.log),
        ["internal before Ok([61, 62, 63, 64]) after Ok([61, 62, 63, 64])"]
    );
}
