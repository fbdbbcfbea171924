//! The HID class side of a simulated HID collection: a function driver, written against
//! kmdf-sim's public driver API, that answers the HID class IOCTLs and reads of a
//! [`HidDevice`] the way hidclass answers them for a top-level collection's PDO.
//!
//! The collection is a root-enumerated device node (hardware id `HID\VID_xxxx&PID_yyyy`, driver
//! [`HID_DRIVER`]) next to whatever else the machine has — not a child of an FX2 node, so that a
//! test adds as many collections as it wants, with any IDs. It registers
//! `GUID_DEVINTERFACE_HID`. What it answers (codes from `hidclass.h`, see [`super`]):
//!
//! | Request | Answer |
//! |---|---|
//! | `IOCTL_HID_GET_COLLECTION_INFORMATION` | `HID_COLLECTION_INFORMATION` (12 bytes): preparsed size, not polled, VID, PID, version |
//! | `IOCTL_HID_GET_COLLECTION_DESCRIPTOR` | the preparsed data (the simulator's layout, [`parser`](super::parser)) |
//! | `IOCTL_HID_GET_FEATURE` | the feature report whose ID is the first byte of the output buffer (`METHOD_OUT_DIRECT`: the caller's own memory, which `HidD_GetFeature` fills with the report ID) |
//! | `IOCTL_HID_SET_FEATURE` / `IOCTL_HID_SET_OUTPUT_REPORT` | the report from the input buffer (else the output buffer) |
//! | `IOCTL_HID_GET_INPUT_REPORT` | the current input report, if the first byte of the output buffer names it (as GET_FEATURE) |
//! | write | an output report |
//! | read | the next input report; reports that arrive while no read waits are kept (up to 32, hidclass's default ring; the oldest goes) |
//!
//! Report buffers shorter than the caps' report length fail with `STATUS_BUFFER_TOO_SMALL`
//! (hidclass: `STATUS_INVALID_BUFFER_SIZE`). Parked reads wait in a manual, power-managed
//! queue: cancelable, and purged (`STATUS_CANCELLED`) when the collection goes; any left at
//! SelfManagedIoFlush complete with `STATUS_DEVICE_REMOVED`.
//! A GET whose output buffer's byte 0 names no report of that type fails with
//! `STATUS_INVALID_PARAMETER` (the status real hidclass gives there is not modelled: the
//! minidriver and the device decide it). Deviation: one ring per collection rather than per
//! open handle.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use super::device::HidDevice;
use super::parser::{self, Caps};
use super::{
    GUID_DEVINTERFACE_HID, IOCTL_HID_GET_COLLECTION_DESCRIPTOR,
    IOCTL_HID_GET_COLLECTION_INFORMATION, IOCTL_HID_GET_FEATURE, IOCTL_HID_GET_INPUT_REPORT,
    IOCTL_HID_SET_FEATURE, IOCTL_HID_SET_OUTPUT_REPORT,
};
use crate::device::{Device, DeviceInit, Resources};
use crate::driver::{self, Driver, DriverConfig};
use crate::exec::{Irql, IrqlGuard};
use crate::io::{DispatchType, Queue, QueueConfig, Request, RequestType};
use crate::machine::Machine;
use crate::object::ObjectAttributes;
use crate::pnp::{DeviceNode, StackSpec};
use crate::status::Status;
use crate::verifier::invoke_callback;

/// The driver's service name.
pub const HID_DRIVER: &str = "simhid";
/// Input reports kept while no read waits.
pub const INPUT_RING: usize = 32;

#[derive(Default)]
struct Devices(Mutex<Vec<HidDevice>>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Reads {
    ring: VecDeque<[u8; 2]>,
    parked: Option<Queue>,
}

/// The collection's device context.
#[derive(Default)]
pub struct HidContext {
    device: Mutex<Option<HidDevice>>,
    reads: Mutex<Reads>,
    hook: Mutex<Option<u64>>,
}

impl HidContext {
    /// The HID device behind this collection (after PrepareHardware).
    pub fn hid_device(&self) -> Option<HidDevice> {
        lock(&self.device).clone()
    }
}

fn ctx(dev: &Device) -> Arc<HidContext> {
    dev.context::<HidContext>()
        .expect("the HID collection has its context")
}

/// The `StackSpec` of a collection for `device` (registers it on the machine and installs the
/// driver package). Add filters to it, then `machine.pnp().plug_in(spec)`.
pub fn stack_spec(machine: &Machine, device: &HidDevice) -> StackSpec {
    let devices = machine.extension(Devices::default);
    let n = {
        let mut d = lock(&devices.0);
        d.push(device.clone());
        d.len() - 1
    };
    if !driver::is_installed(machine, HID_DRIVER) {
        driver::install(machine, HID_DRIVER, DriverConfig::new(device_add));
    }
    let c = device.config();
    StackSpec::new(
        &format!("HID\\VID_{:04X}&PID_{:04X}", c.vendor_id, c.product_id),
        HID_DRIVER,
    )
    .resource(&format!("hid device {n}"))
}

/// Plugs a collection for `device` into `machine` (first start included).
///
/// Errors: the start failure.
pub fn install(machine: &Machine, device: &HidDevice) -> Result<DeviceNode, Status> {
    machine.pnp().plug_in(stack_spec(machine, device))
}

/// `EvtDriverDeviceAdd` of the collection.
///
/// Errors: a failing `WdfDeviceCreate`, queue creation or interface registration.
pub fn device_add(_driver: &Driver, init: &mut DeviceInit) -> Result<(), Status> {
    init.pnp.prepare_hardware = Some(Arc::new(prepare_hardware));
    init.pnp.d0_entry = Some(Arc::new(|dev, _prev| d0_entry(dev)));
    init.pnp.d0_exit = Some(Arc::new(|dev, _target| d0_exit(dev)));
    init.pnp.self_managed_io_flush = Some(Arc::new(self_managed_io_flush));
    let dev = Device::create(init, ObjectAttributes::new().context(HidContext::default()))?;
    Queue::create(
        &dev,
        QueueConfig::new_default(DispatchType::Parallel).on_device_control(ioctl),
        ObjectAttributes::new(),
    )?;
    let read = Queue::create(
        &dev,
        QueueConfig::new(DispatchType::Parallel).on_read(read),
        ObjectAttributes::new(),
    )?;
    dev.configure_request_dispatching(&read, RequestType::Read)?;
    let write = Queue::create(
        &dev,
        QueueConfig::new(DispatchType::Parallel).on_write(write),
        ObjectAttributes::new(),
    )?;
    dev.configure_request_dispatching(&write, RequestType::Write)?;
    let parked = Queue::create(
        &dev,
        QueueConfig::new(DispatchType::Manual),
        ObjectAttributes::new(),
    )?;
    lock(&ctx(&dev).reads).parked = Some(parked);
    dev.create_interface(GUID_DEVINTERFACE_HID, None)?;
    Ok(())
}

fn prepare_hardware(dev: &Device, res: &Resources) -> Status {
    let Some(machine) = dev.machine() else {
        return Status::INVALID_DEVICE_STATE;
    };
    let devices = machine.extension(Devices::default);
    let found = res
        .items
        .iter()
        .find_map(|r| r.strip_prefix("hid device "))
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| lock(&devices.0).get(n).cloned());
    let Some(found) = found else {
        return Status::INVALID_DEVICE_STATE;
    };
    *lock(&ctx(dev).device) = Some(found);
    Status::SUCCESS
}

fn d0_entry(dev: &Device) -> Status {
    let c = ctx(dev);
    let Some(hid) = c.hid_device() else {
        return Status::INVALID_DEVICE_STATE;
    };
    let hook_dev = dev.clone();
    *lock(&c.hook) = Some(hid.on_input(move |report| input_arrived(&hook_dev, report)));
    Status::SUCCESS
}

fn d0_exit(dev: &Device) -> Status {
    let c = ctx(dev);
    if let (Some(hid), Some(id)) = (c.hid_device(), lock(&c.hook).take()) {
        hid.remove_hook(id);
    }
    Status::SUCCESS
}

fn complete_read(req: Request, report: [u8; 2]) {
    match req.with_output_buffer(report.len(), |b| b[..report.len()].copy_from_slice(&report)) {
        Ok(()) => req.complete_with_information(Status::SUCCESS, report.len()),
        Err(s) => req.complete(s),
    }
}

/// An input report from the device (at `DISPATCH_LEVEL`): the oldest parked read gets it, or
/// the ring keeps it.
fn input_arrived(dev: &Device, report: [u8; 2]) {
    let Some(machine) = dev.machine() else {
        return;
    };
    let _bound = machine.enter();
    invoke_callback(HID_DRIVER, dev.name(), "HidInputReport", || {
        let _irql = IrqlGuard::raise(Irql::Dispatch);
        let c = ctx(dev);
        let waiting = {
            let mut reads = lock(&c.reads);
            let got = reads
                .parked
                .as_ref()
                .and_then(|q| q.retrieve_next_request().ok());
            if got.is_none() {
                if reads.ring.len() == INPUT_RING {
                    reads.ring.pop_front();
                }
                reads.ring.push_back(report);
            }
            got
        };
        // Completed outside the lock: the sender's completion routine may send the next read.
        if let Some(req) = waiting {
            complete_read(req, report);
        }
    });
}

fn self_managed_io_flush(dev: &Device) {
    let c = ctx(dev);
    let parked = lock(&c.reads).parked.clone();
    if let Some(q) = parked {
        while let Ok(req) = q.retrieve_next_request() {
            req.complete(Status::DEVICE_REMOVED);
        }
    }
    lock(&c.reads).ring.clear();
}

fn caps_of(hid: &HidDevice) -> Caps {
    parser::get_caps(&hid.preparsed_data()).unwrap_or_default()
}

/// A read: the oldest kept report, or parked until one arrives.
fn read(queue: &Queue, req: Request, len: usize) {
    let Some(dev) = queue.device() else {
        req.complete(Status::INVALID_DEVICE_STATE);
        return;
    };
    let c = ctx(&dev);
    let Some(hid) = c.hid_device() else {
        req.complete(Status::INVALID_DEVICE_STATE);
        return;
    };
    if len < usize::from(caps_of(&hid).input_report_byte_length) {
        req.complete(Status::BUFFER_TOO_SMALL);
        return;
    }
    let outcome = {
        let mut reads = lock(&c.reads);
        match reads.ring.pop_front() {
            Some(report) => Ok((req, report)),
            None => match reads.parked.clone() {
                Some(q) => Err(req.forward_to_queue(&q)),
                None => Err(Err((req, Status::INVALID_DEVICE_STATE))),
            },
        }
    };
    match outcome {
        Ok((req, report)) => complete_read(req, report),
        Err(Ok(())) => {}
        Err(Err((req, s))) => req.complete(s),
    }
}

/// A write: an output report (as hidclass sends a write to the device as an output report).
fn write(queue: &Queue, req: Request, len: usize) {
    let hid = queue.device().and_then(|d| ctx(&d).hid_device());
    let Some(hid) = hid else {
        req.complete(Status::INVALID_DEVICE_STATE);
        return;
    };
    if len < usize::from(caps_of(&hid).output_report_byte_length) {
        req.complete(Status::BUFFER_TOO_SMALL);
        return;
    }
    match req
        .input_buffer(1)
        .and_then(|report| hid.set_output(&report))
    {
        Ok(()) => req.complete_with_information(Status::SUCCESS, len),
        Err(s) => req.complete(s),
    }
}

/// The report a set/get names: the input buffer if the sender gave one, else the output buffer.
fn report_in(req: &Request) -> Result<Vec<u8>, Status> {
    match req.input_buffer(1) {
        Ok(b) => Ok(b),
        Err(_) => req.with_output_buffer(1, |b| b.to_vec()),
    }
}

/// The report ID a GET names: byte 0 of the output buffer (hidclass reads it there; the
/// input buffer is ignored).
fn report_id_out(req: &Request) -> Result<u8, Status> {
    req.with_output_buffer(1, |b| b[0])
}

fn write_out(req: &Request, data: &[u8], min: usize) -> (Status, usize) {
    match req.with_output_buffer(min.max(data.len()), |b| {
        b.fill(0);
        b[..data.len()].copy_from_slice(data);
    }) {
        Ok(()) => (Status::SUCCESS, min.max(data.len())),
        Err(s) => (s, 0),
    }
}

/// Sets a report on the device.
type SetReport = fn(&HidDevice, &[u8]) -> Result<(), Status>;

/// `EvtIoDeviceControl`: the HID class IOCTLs.
fn ioctl(queue: &Queue, req: Request, out_len: usize, _in_len: usize, code: u32) {
    let hid = queue.device().and_then(|d| ctx(&d).hid_device());
    let Some(hid) = hid else {
        req.complete(Status::INVALID_DEVICE_STATE);
        return;
    };
    let caps = caps_of(&hid);
    let (status, info) = match code {
        IOCTL_HID_GET_COLLECTION_INFORMATION => {
            let c = hid.config();
            let mut info = [0u8; 12];
            let size = u32::try_from(hid.preparsed_data().len()).unwrap_or(0);
            info[0..4].copy_from_slice(&size.to_le_bytes());
            info[6..8].copy_from_slice(&c.vendor_id.to_le_bytes());
            info[8..10].copy_from_slice(&c.product_id.to_le_bytes());
            info[10..12].copy_from_slice(&c.version_number.to_le_bytes());
            write_out(&req, &info, info.len())
        }
        IOCTL_HID_GET_COLLECTION_DESCRIPTOR => {
            let pp = hid.preparsed_data();
            write_out(&req, &pp, pp.len())
        }
        IOCTL_HID_GET_FEATURE => {
            let len = usize::from(caps.feature_report_byte_length);
            if out_len < len {
                (Status::BUFFER_TOO_SMALL, 0)
            } else {
                match report_id_out(&req).and_then(|id| hid.feature(id)) {
                    Ok(report) => write_out(&req, &report, len),
                    Err(s) => (s, 0),
                }
            }
        }
        IOCTL_HID_SET_FEATURE | IOCTL_HID_SET_OUTPUT_REPORT => {
            let (len, set): (usize, SetReport) = if code == IOCTL_HID_SET_FEATURE {
                (usize::from(caps.feature_report_byte_length), |h, r| {
                    h.set_feature(r)
                })
            } else {
                (usize::from(caps.output_report_byte_length), |h, r| {
                    h.set_output(r)
                })
            };
            match report_in(&req) {
                Ok(report) if report.len() < len => (Status::BUFFER_TOO_SMALL, 0),
                Ok(report) => (
                    set(&hid, &report).map_or_else(|s| s, |()| Status::SUCCESS),
                    0,
                ),
                Err(s) => (s, 0),
            }
        }
        IOCTL_HID_GET_INPUT_REPORT => {
            let len = usize::from(caps.input_report_byte_length);
            if out_len < len {
                (Status::BUFFER_TOO_SMALL, 0)
            } else {
                let report = hid.input_report();
                match report_id_out(&req) {
                    Ok(id) if id == report[0] => write_out(&req, &report, len),
                    Ok(_) => (Status::INVALID_PARAMETER, 0),
                    Err(s) => (s, 0),
                }
            }
        }
        _ => (Status::INVALID_DEVICE_REQUEST, 0),
    };
    req.complete_with_information(status, info);
}
