//! I/O targets: `WdfIoTarget…` and the `WdfIoTargetFormatRequestFor…` functions.
//!
//! A `WDFIOTARGET` is a kmdf-sim [`IoTarget`]: the device's default target (the next lower
//! driver, `WdfDeviceGetIoTarget`: [`default_target_of`], one handle per device) or a remote
//! target (`WdfIoTargetCreate`, then `WdfIoTargetOpen` by the name of a device interface's
//! symbolic link, as DMF's DeviceInterfaceTarget does, with the driver's
//! `EvtIoTargetQueryRemove` / `RemoveCanceled` / `RemoveComplete`). The format functions record,
//! on a driver-created request, which of the driver's `WDFMEMORY` ranges go down and come back
//! ([`super::request`] builds the kmdf-sim request from them when it is sent). The synchronous
//! senders take `WDF_MEMORY_DESCRIPTOR`s of the buffer and handle types (an MDL is refused with
//! `STATUS_NOT_SUPPORTED`: the host has none).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use kmdf_sim::io::{Access, IoTarget, OpenParams, TargetState, TargetStopAction};
use kmdf_sim::object::WdfObject;
use kmdf_sim::Status;

use super::bindings::status::{
    STATUS_INFO_LENGTH_MISMATCH, STATUS_INVALID_BUFFER_SIZE, STATUS_SUCCESS,
};
use super::bindings::_WDF_IO_TARGET_OPEN_TYPE as open_type;
use super::bindings::_WDF_IO_TARGET_SENT_IO_ACTION::WdfIoTargetCancelSentIo;
use super::bindings::_WDF_IO_TARGET_STATE::{
    WdfIoTargetClosed, WdfIoTargetClosedForQueryRemove, WdfIoTargetDeleted, WdfIoTargetStarted,
    WdfIoTargetStopped,
};
use super::bindings::_WDF_MEMORY_DESCRIPTOR_TYPE as descriptor_type;
use super::bindings::{
    NTSTATUS, PLONGLONG, PULONG_PTR, PWDFMEMORY_OFFSET, PWDF_DRIVER_GLOBALS,
    PWDF_IO_TARGET_OPEN_PARAMS, PWDF_MEMORY_DESCRIPTOR, PWDF_OBJECT_ATTRIBUTES,
    PWDF_REQUEST_SEND_OPTIONS, ULONG, WDFDEVICE, WDFIOTARGET, WDFMEMORY, WDFREQUEST,
    WDF_IO_TARGET_OPEN_PARAMS, WDF_IO_TARGET_SENT_IO_ACTION, WDF_IO_TARGET_STATE,
    WDF_MEMORY_DESCRIPTOR, WDF_REQUEST_SEND_OPTIONS,
};
use super::device::{self, DevicePayload};
use super::objects::{self, Attributes, Handle, Object};
use super::request::{self, Format, FormatKind, MemRange};
use super::{memory, wdf_exports};
use crate::host::{guard, stop, Stop, UnicodeString};

wdf_exports! {
    WdfIoTargetCreate => wdf_io_target_create: PFN_WDFIOTARGETCREATE,
    WdfIoTargetOpen => wdf_io_target_open: PFN_WDFIOTARGETOPEN,
    WdfIoTargetClose => wdf_io_target_close: PFN_WDFIOTARGETCLOSE,
    WdfIoTargetCloseForQueryRemove => wdf_io_target_close_for_query_remove: PFN_WDFIOTARGETCLOSEFORQUERYREMOVE,
    WdfIoTargetStart => wdf_io_target_start: PFN_WDFIOTARGETSTART,
    WdfIoTargetStop => wdf_io_target_stop: PFN_WDFIOTARGETSTOP,
    WdfIoTargetGetState => wdf_io_target_get_state: PFN_WDFIOTARGETGETSTATE,
    WdfIoTargetGetDevice => wdf_io_target_get_device: PFN_WDFIOTARGETGETDEVICE,
    WdfIoTargetFormatRequestForRead => wdf_io_target_format_request_for_read: PFN_WDFIOTARGETFORMATREQUESTFORREAD,
    WdfIoTargetFormatRequestForWrite => wdf_io_target_format_request_for_write: PFN_WDFIOTARGETFORMATREQUESTFORWRITE,
    WdfIoTargetFormatRequestForIoctl => wdf_io_target_format_request_for_ioctl: PFN_WDFIOTARGETFORMATREQUESTFORIOCTL,
    WdfIoTargetFormatRequestForInternalIoctl => wdf_io_target_format_request_for_internal_ioctl: PFN_WDFIOTARGETFORMATREQUESTFORINTERNALIOCTL,
    WdfIoTargetSendIoctlSynchronously => wdf_io_target_send_ioctl_synchronously: PFN_WDFIOTARGETSENDIOCTLSYNCHRONOUSLY,
    WdfIoTargetSendInternalIoctlSynchronously => wdf_io_target_send_internal_ioctl_synchronously: PFN_WDFIOTARGETSENDINTERNALIOCTLSYNCHRONOUSLY,
    WdfIoTargetSendReadSynchronously => wdf_io_target_send_read_synchronously: PFN_WDFIOTARGETSENDREADSYNCHRONOUSLY,
    WdfIoTargetSendWriteSynchronously => wdf_io_target_send_write_synchronously: PFN_WDFIOTARGETSENDWRITESYNCHRONOUSLY,
}

use super::bindings::{FILE_READ_DATA, FILE_WRITE_DATA, GENERIC_ALL, GENERIC_READ, GENERIC_WRITE};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The payload of a `WDFIOTARGET`.
pub(crate) struct TargetPayload {
    /// The kmdf-sim target.
    pub sim: IoTarget,
    /// The `WDFDEVICE` that owns it.
    pub device: Handle,
}

impl core::fmt::Debug for TargetPayload {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TargetPayload")
            .field("sim", &self.sim)
            .field("device", &format_args!("{:#x}", self.device))
            .finish()
    }
}

fn payload(object: &Object) -> &TargetPayload {
    object
        .payload::<TargetPayload>()
        .expect("a WDFIOTARGET carries a TargetPayload")
}

/// The kmdf-sim target of the live `WDFIOTARGET` `handle`, or a stop naming `routine`.
pub(crate) fn sim_of(handle: Handle, routine: &str) -> IoTarget {
    let object = objects::expect_kind(handle, "WDFIOTARGET", routine);
    payload(&object).sim.clone()
}

/// Default targets by device handle (created once per device).
static DEFAULTS: Mutex<Option<HashMap<Handle, Handle>>> = Mutex::new(None);

/// The device's default I/O target — the next lower driver — as a `WDFIOTARGET` handle,
/// created on first use (a child of the device) and the same handle afterwards.
pub(crate) fn default_target_of(device: &Object) -> Handle {
    let existing = lock(&DEFAULTS)
        .as_ref()
        .and_then(|m| m.get(&device.handle()).copied());
    if let Some(handle) = existing.filter(|h| objects::get(*h).is_some()) {
        return handle;
    }
    let Some(dev) = device.payload::<DevicePayload>() else {
        stop(Stop {
            message: format!(
                "kmdf-host: WdfDeviceGetIoTarget on {:#x}, a {} without device state",
                device.handle(),
                device.kind()
            ),
            wdf_function: None,
        });
    };
    let sim = dev.sim.io_target();
    let created = (|| {
        let pending = objects::begin("WDFIOTARGET", None).ok()?;
        let attrs = pending.sim_attributes("WdfDeviceGetIoTarget", Some(device.sim()));
        let machine = dev.sim.machine()?;
        let object = WdfObject::create(&machine, "WDFIOTARGET", attrs).ok()?;
        Some(pending.finish(
            object,
            TargetPayload {
                sim,
                device: device.handle(),
            },
        ))
    })();
    let Some(created) = created else {
        stop(Stop {
            message: format!(
                "kmdf-host: the default I/O target object of WDFDEVICE {:#x} could not be created",
                device.handle()
            ),
            wdf_function: None,
        });
    };
    lock(&DEFAULTS)
        .get_or_insert_with(HashMap::new)
        .insert(device.handle(), created.handle());
    created.handle()
}

/// `WdfIoTargetCreate`: a remote target of the device, closed until `WdfIoTargetOpen` (default
/// parent: the device).
///
/// Errors: `STATUS_INVALID_PARAMETER` for a null `IoTarget`; the attributes' errors; kmdf-sim's.
extern "win64" fn wdf_io_target_create(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    target: *mut WDFIOTARGET,
) -> NTSTATUS {
    guard("WdfIoTargetCreate", || {
        if target.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        let device = device::device_of(device as Handle, "WdfIoTargetCreate");
        let dev = device
            .payload::<DevicePayload>()
            .expect("a WDFDEVICE carries a DevicePayload");
        // SAFETY: the routine's contract: null or the driver's attributes for the call.
        let attributes = match unsafe { Attributes::read(attributes) } {
            Ok(a) => a,
            Err(status) => return status.0,
        };
        let pending = match objects::begin("WDFIOTARGET", attributes) {
            Ok(p) => p,
            Err(status) => return status.0,
        };
        let attrs = pending.sim_attributes("WdfIoTargetCreate", Some(device.sim()));
        let sim = match IoTarget::create(&dev.sim, attrs) {
            Ok(t) => t,
            Err(status) => return status.0,
        };
        let Some(object) = sim.object().cloned() else {
            return Status::INVALID_DEVICE_STATE.0;
        };
        let created = pending.finish(
            object,
            TargetPayload {
                sim,
                device: device.handle(),
            },
        );
        // SAFETY: the driver's out parameter (checked non-null).
        unsafe { target.write(created.as_handle()) };
        STATUS_SUCCESS
    })
}

fn access_of(mask: u32) -> Access {
    Access {
        read: mask & (GENERIC_READ | GENERIC_ALL | FILE_READ_DATA) != 0,
        write: mask & (GENERIC_WRITE | GENERIC_ALL | FILE_WRITE_DATA) != 0,
    }
}

/// `WdfIoTargetOpen` (PASSIVE): by name (a device interface's symbolic link, or a symbolic
/// link), or reopen with the previous parameters.
///
/// Errors: `STATUS_INFO_LENGTH_MISMATCH` for params of the wrong size;
/// `STATUS_INVALID_PARAMETER` for a missing name or open type; kmdf-sim's
/// (`STATUS_OBJECT_NAME_NOT_FOUND`-like `STATUS_NOT_FOUND` for a name no interface has,
/// `STATUS_INVALID_DEVICE_STATE` for an open target, the failure of the create).
extern "win64" fn wdf_io_target_open(
    _globals: PWDF_DRIVER_GLOBALS,
    target: WDFIOTARGET,
    params: PWDF_IO_TARGET_OPEN_PARAMS,
) -> NTSTATUS {
    guard("WdfIoTargetOpen", || {
        let sim = sim_of(target as Handle, "WdfIoTargetOpen");
        if params.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        // SAFETY: the driver's WDF_IO_TARGET_OPEN_PARAMS for the call (checked non-null).
        let p: &WDF_IO_TARGET_OPEN_PARAMS = unsafe { &*params };
        if p.Size as usize != size_of::<WDF_IO_TARGET_OPEN_PARAMS>() {
            return STATUS_INFO_LENGTH_MISMATCH;
        }
        let handle = target as Handle;
        let open = match p.Type {
            open_type::WdfIoTargetOpenByName => {
                // SAFETY: the driver's UNICODE_STRING inside the params (same layout as the
                // host's `UnicodeString`).
                let name = unsafe {
                    UnicodeString::read((&raw const p.TargetDeviceName).cast::<UnicodeString>())
                };
                let Some(name) = name.filter(|n| !n.is_empty()) else {
                    return Status::INVALID_PARAMETER.0;
                };
                OpenParams::by_name(&name, access_of(p.DesiredAccess))
            }
            open_type::WdfIoTargetOpenReopen => OpenParams::reopen(),
            open_type::WdfIoTargetOpenUseExistingDevice
            | open_type::WdfIoTargetOpenLocalTargetByFile => stop(Stop {
                message: format!(
                    "kmdf-host: WdfIoTargetOpen with open type {} (a WDM device or file object) \
                     is not implemented by the host",
                    p.Type
                ),
                wdf_function: None,
            }),
            _ => return Status::INVALID_PARAMETER.0,
        };
        let mut open = open;
        if let Some(query_remove) = p.EvtIoTargetQueryRemove {
            open = open.on_query_remove(move |_| {
                // SAFETY: the driver's `EVT_WDF_IO_TARGET_QUERY_REMOVE` for its target.
                Status(unsafe { query_remove(handle as WDFIOTARGET) })
            });
        }
        if let Some(canceled) = p.EvtIoTargetRemoveCanceled {
            open = open.on_remove_canceled(move |_| {
                // SAFETY: the driver's `EVT_WDF_IO_TARGET_REMOVE_CANCELED` for its target.
                unsafe { canceled(handle as WDFIOTARGET) };
            });
        }
        if let Some(complete) = p.EvtIoTargetRemoveComplete {
            open = open.on_remove_complete(move |_| {
                // SAFETY: the driver's `EVT_WDF_IO_TARGET_REMOVE_COMPLETE` for its target.
                unsafe { complete(handle as WDFIOTARGET) };
            });
        }
        match sim.open(open) {
            Ok(()) => STATUS_SUCCESS,
            Err(status) => status.0,
        }
    })
}

/// `WdfIoTargetClose`: cancels what is queued or sent, closes the file.
extern "win64" fn wdf_io_target_close(_globals: PWDF_DRIVER_GLOBALS, target: WDFIOTARGET) {
    guard("WdfIoTargetClose", || {
        sim_of(target as Handle, "WdfIoTargetClose").close();
    });
}

/// `WdfIoTargetCloseForQueryRemove`: closes the file, keeping the parameters for a reopen.
extern "win64" fn wdf_io_target_close_for_query_remove(
    _globals: PWDF_DRIVER_GLOBALS,
    target: WDFIOTARGET,
) {
    guard("WdfIoTargetCloseForQueryRemove", || {
        sim_of(target as Handle, "WdfIoTargetCloseForQueryRemove").close_for_query_remove();
    });
}

/// `WdfIoTargetStart`: sends what queued while stopped.
///
/// Errors: `STATUS_INVALID_DEVICE_STATE` for a target that is closed or deleted.
extern "win64" fn wdf_io_target_start(
    _globals: PWDF_DRIVER_GLOBALS,
    target: WDFIOTARGET,
) -> NTSTATUS {
    guard("WdfIoTargetStart", || {
        let sim = sim_of(target as Handle, "WdfIoTargetStart");
        sim.start();
        match sim.state() {
            TargetState::Started => STATUS_SUCCESS,
            _ => Status::INVALID_DEVICE_STATE.0,
        }
    })
}

/// `WdfIoTargetStop`: requests sent from now on wait in the target; sent ones are cancelled
/// (`WdfIoTargetCancelSentIo`) or left pending (the other actions).
extern "win64" fn wdf_io_target_stop(
    _globals: PWDF_DRIVER_GLOBALS,
    target: WDFIOTARGET,
    action: WDF_IO_TARGET_SENT_IO_ACTION,
) {
    guard("WdfIoTargetStop", || {
        let action = if action == WdfIoTargetCancelSentIo {
            TargetStopAction::CancelSentIo
        } else {
            TargetStopAction::LeaveSentIoPending
        };
        sim_of(target as Handle, "WdfIoTargetStop").stop(action);
    });
}

/// `WdfIoTargetGetState`.
extern "win64" fn wdf_io_target_get_state(
    _globals: PWDF_DRIVER_GLOBALS,
    target: WDFIOTARGET,
) -> WDF_IO_TARGET_STATE {
    guard("WdfIoTargetGetState", || {
        match sim_of(target as Handle, "WdfIoTargetGetState").state() {
            TargetState::Started => WdfIoTargetStarted,
            TargetState::Stopped => WdfIoTargetStopped,
            TargetState::ClosedForQueryRemove => WdfIoTargetClosedForQueryRemove,
            TargetState::Closed => WdfIoTargetClosed,
            TargetState::Deleted => WdfIoTargetDeleted,
        }
    })
}

/// `WdfIoTargetGetDevice`: the device that owns the target.
extern "win64" fn wdf_io_target_get_device(
    _globals: PWDF_DRIVER_GLOBALS,
    target: WDFIOTARGET,
) -> WDFDEVICE {
    guard("WdfIoTargetGetDevice", || {
        let object = objects::expect_kind(target as Handle, "WDFIOTARGET", "WdfIoTargetGetDevice");
        payload(&object).device as WDFDEVICE
    })
}

/// The range of `memory` that `offsets` selects (all of it without offsets); `None` for no
/// memory.
///
/// Errors: `STATUS_INVALID_BUFFER_SIZE` for a range outside the memory or of zero length.
fn mem_range(
    memory: WDFMEMORY,
    offsets: PWDFMEMORY_OFFSET,
    routine: &str,
) -> Result<Option<MemRange>, Status> {
    if memory.is_null() {
        return Ok(None);
    }
    let (_, len) = memory::region_of(memory as Handle, routine);
    if offsets.is_null() {
        return Ok(Some(MemRange {
            memory: memory as Handle,
            offset: 0,
            length: len,
        }));
    }
    // SAFETY: the driver's WDFMEMORY_OFFSET for the call (checked non-null).
    let o = unsafe { offsets.read() };
    let length = if o.BufferLength == 0 {
        len.saturating_sub(o.BufferOffset)
    } else {
        o.BufferLength
    };
    match o.BufferOffset.checked_add(length) {
        Some(end) if end <= len && length > 0 => Ok(Some(MemRange {
            memory: memory as Handle,
            offset: o.BufferOffset,
            length,
        })),
        _ => Err(Status(STATUS_INVALID_BUFFER_SIZE)),
    }
}

/// Records the format on the request (see [`request::set_format`]).
fn format(
    target: WDFIOTARGET,
    request: WDFREQUEST,
    kind: FormatKind,
    input: (WDFMEMORY, PWDFMEMORY_OFFSET),
    output: (WDFMEMORY, PWDFMEMORY_OFFSET),
    device_offset: PLONGLONG,
    routine: &str,
) -> NTSTATUS {
    let _ = sim_of(target as Handle, routine);
    let input = match mem_range(input.0, input.1, routine) {
        Ok(r) => r,
        Err(status) => return status.0,
    };
    let output = match mem_range(output.0, output.1, routine) {
        Ok(r) => r,
        Err(status) => return status.0,
    };
    let device_offset = if device_offset.is_null() {
        0
    } else {
        // SAFETY: the driver's optional LONGLONG (checked non-null).
        unsafe { device_offset.read() }
    };
    let format = Format {
        kind,
        target: target as Handle,
        input,
        output,
        device_offset,
    };
    match request::set_format(request, format, routine) {
        Ok(()) => STATUS_SUCCESS,
        Err(status) => status.0,
    }
}

/// `WdfIoTargetFormatRequestForRead`: the read lands in `OutputBuffer` (at its offset) when the
/// request completes.
extern "win64" fn wdf_io_target_format_request_for_read(
    _globals: PWDF_DRIVER_GLOBALS,
    target: WDFIOTARGET,
    request: WDFREQUEST,
    output: WDFMEMORY,
    output_offset: PWDFMEMORY_OFFSET,
    device_offset: PLONGLONG,
) -> NTSTATUS {
    guard("WdfIoTargetFormatRequestForRead", || {
        format(
            target,
            request,
            FormatKind::Read,
            (core::ptr::null_mut(), core::ptr::null_mut()),
            (output, output_offset),
            device_offset,
            "WdfIoTargetFormatRequestForRead",
        )
    })
}

/// `WdfIoTargetFormatRequestForWrite`: the bytes of `InputBuffer` (read when it is sent).
extern "win64" fn wdf_io_target_format_request_for_write(
    _globals: PWDF_DRIVER_GLOBALS,
    target: WDFIOTARGET,
    request: WDFREQUEST,
    input: WDFMEMORY,
    input_offset: PWDFMEMORY_OFFSET,
    device_offset: PLONGLONG,
) -> NTSTATUS {
    guard("WdfIoTargetFormatRequestForWrite", || {
        format(
            target,
            request,
            FormatKind::Write,
            (input, input_offset),
            (core::ptr::null_mut(), core::ptr::null_mut()),
            device_offset,
            "WdfIoTargetFormatRequestForWrite",
        )
    })
}

/// `WdfIoTargetFormatRequestForIoctl`.
extern "win64" fn wdf_io_target_format_request_for_ioctl(
    _globals: PWDF_DRIVER_GLOBALS,
    target: WDFIOTARGET,
    request: WDFREQUEST,
    code: ULONG,
    input: WDFMEMORY,
    input_offset: PWDFMEMORY_OFFSET,
    output: WDFMEMORY,
    output_offset: PWDFMEMORY_OFFSET,
) -> NTSTATUS {
    guard("WdfIoTargetFormatRequestForIoctl", || {
        format(
            target,
            request,
            FormatKind::Ioctl(code),
            (input, input_offset),
            (output, output_offset),
            core::ptr::null_mut(),
            "WdfIoTargetFormatRequestForIoctl",
        )
    })
}

/// `WdfIoTargetFormatRequestForInternalIoctl`.
extern "win64" fn wdf_io_target_format_request_for_internal_ioctl(
    _globals: PWDF_DRIVER_GLOBALS,
    target: WDFIOTARGET,
    request: WDFREQUEST,
    code: ULONG,
    input: WDFMEMORY,
    input_offset: PWDFMEMORY_OFFSET,
    output: WDFMEMORY,
    output_offset: PWDFMEMORY_OFFSET,
) -> NTSTATUS {
    guard("WdfIoTargetFormatRequestForInternalIoctl", || {
        format(
            target,
            request,
            FormatKind::InternalIoctl(code),
            (input, input_offset),
            (output, output_offset),
            core::ptr::null_mut(),
            "WdfIoTargetFormatRequestForInternalIoctl",
        )
    })
}

/// The buffer a `WDF_MEMORY_DESCRIPTOR` describes: `(address, length)`, `None` for no
/// descriptor.
///
/// Errors: `STATUS_NOT_SUPPORTED` for an MDL; `STATUS_INVALID_PARAMETER` for an unknown type
/// or a null buffer; the memory range's errors.
fn descriptor(
    d: PWDF_MEMORY_DESCRIPTOR,
    routine: &str,
) -> Result<Option<(*mut u8, usize)>, Status> {
    if d.is_null() {
        return Ok(None);
    }
    // SAFETY: the driver's WDF_MEMORY_DESCRIPTOR for the call (checked non-null).
    let d: WDF_MEMORY_DESCRIPTOR = unsafe { d.read() };
    match d.Type {
        descriptor_type::WdfMemoryDescriptorTypeBuffer => {
            // SAFETY: the `BufferType` member is the one a buffer descriptor sets.
            let b = unsafe { d.u.BufferType };
            if b.Buffer.is_null() {
                return Err(Status::INVALID_PARAMETER);
            }
            Ok(Some((b.Buffer.cast(), b.Length as usize)))
        }
        descriptor_type::WdfMemoryDescriptorTypeHandle => {
            // SAFETY: the `HandleType` member is the one a handle descriptor sets.
            let h = unsafe { d.u.HandleType };
            let Some(range) = mem_range(h.Memory, h.Offsets, routine)? else {
                return Err(Status::INVALID_PARAMETER);
            };
            let (ptr, _) = memory::region_of(range.memory, routine);
            Ok(Some((ptr.wrapping_add(range.offset), range.length)))
        }
        descriptor_type::WdfMemoryDescriptorTypeMdl => Err(Status::NOT_SUPPORTED),
        _ => Err(Status::INVALID_PARAMETER),
    }
}

fn bytes_of(region: Option<(*mut u8, usize)>) -> Vec<u8> {
    region.map_or_else(Vec::new, |(ptr, len)| {
        // SAFETY: a region a descriptor names: the driver's buffer, valid for the call.
        unsafe { core::slice::from_raw_parts(ptr, len) }.to_vec()
    })
}

/// The timeout of the optional send options (only `WDF_REQUEST_SEND_OPTION_TIMEOUT` matters
/// for a synchronous send).
fn sync_timeout(options: PWDF_REQUEST_SEND_OPTIONS) -> Result<Option<std::time::Duration>, Status> {
    if options.is_null() {
        return Ok(None);
    }
    // SAFETY: the driver's WDF_REQUEST_SEND_OPTIONS for the call (checked non-null).
    let o: WDF_REQUEST_SEND_OPTIONS = unsafe { options.read() };
    if o.Size as usize != size_of::<WDF_REQUEST_SEND_OPTIONS>() {
        return Err(Status(STATUS_INFO_LENGTH_MISMATCH));
    }
    let timeout_flag =
        super::bindings::_WDF_REQUEST_SEND_OPTIONS_FLAGS::WDF_REQUEST_SEND_OPTION_TIMEOUT as u32;
    Ok((o.Flags & timeout_flag != 0 && o.Timeout != 0).then(|| request::timeout_of(o.Timeout)))
}

/// What a synchronous send does.
#[derive(Clone, Copy)]
enum SyncKind {
    Ioctl(u32),
    InternalIoctl(u32),
    Read,
    Write,
}

/// The synchronous senders: a request of the target's device carries the descriptors' bytes;
/// the output lands in the output descriptor's buffer; `BytesReturned` gets the information.
/// (A `Request` the driver passes is not used: the host sends its own.)
fn send_synchronously(
    target: WDFIOTARGET,
    kind: SyncKind,
    input: PWDF_MEMORY_DESCRIPTOR,
    output: PWDF_MEMORY_DESCRIPTOR,
    options: PWDF_REQUEST_SEND_OPTIONS,
    bytes: PULONG_PTR,
    routine: &str,
) -> NTSTATUS {
    let sim = sim_of(target as Handle, routine);
    let run = || -> Result<usize, Status> {
        let timeout = sync_timeout(options)?;
        let input = descriptor(input, routine)?;
        let output = descriptor(output, routine)?;
        let data = bytes_of(input);
        let out_len = output.map_or(0, |(_, len)| len);
        let (returned, information) = match kind {
            SyncKind::Ioctl(code) => sim.send_ioctl_synchronously(code, &data, out_len, timeout)?,
            SyncKind::InternalIoctl(code) => {
                sim.send_internal_ioctl_synchronously(code, &data, out_len, timeout)?
            }
            SyncKind::Read => sim.send_read_synchronously(out_len, timeout)?,
            SyncKind::Write => (Vec::new(), sim.send_write_synchronously(&data, timeout)?),
        };
        if let Some((ptr, len)) = output {
            let n = returned.len().min(len);
            // SAFETY: the output descriptor's buffer, `len` bytes, the driver's for the call.
            unsafe { core::ptr::copy_nonoverlapping(returned.as_ptr(), ptr, n) };
        }
        Ok(information)
    };
    let (status, information) = match run() {
        Ok(information) => (STATUS_SUCCESS, information),
        Err(status) => (status.0, 0),
    };
    if !bytes.is_null() {
        // SAFETY: the driver's optional out parameter.
        unsafe { bytes.write(u64::try_from(information).unwrap_or(u64::MAX)) };
    }
    status
}

/// `WdfIoTargetSendIoctlSynchronously` (PASSIVE).
extern "win64" fn wdf_io_target_send_ioctl_synchronously(
    _globals: PWDF_DRIVER_GLOBALS,
    target: WDFIOTARGET,
    _request: WDFREQUEST,
    code: ULONG,
    input: PWDF_MEMORY_DESCRIPTOR,
    output: PWDF_MEMORY_DESCRIPTOR,
    options: PWDF_REQUEST_SEND_OPTIONS,
    bytes: PULONG_PTR,
) -> NTSTATUS {
    guard("WdfIoTargetSendIoctlSynchronously", || {
        send_synchronously(
            target,
            SyncKind::Ioctl(code),
            input,
            output,
            options,
            bytes,
            "WdfIoTargetSendIoctlSynchronously",
        )
    })
}

/// `WdfIoTargetSendInternalIoctlSynchronously` (PASSIVE).
extern "win64" fn wdf_io_target_send_internal_ioctl_synchronously(
    _globals: PWDF_DRIVER_GLOBALS,
    target: WDFIOTARGET,
    _request: WDFREQUEST,
    code: ULONG,
    input: PWDF_MEMORY_DESCRIPTOR,
    output: PWDF_MEMORY_DESCRIPTOR,
    options: PWDF_REQUEST_SEND_OPTIONS,
    bytes: PULONG_PTR,
) -> NTSTATUS {
    guard("WdfIoTargetSendInternalIoctlSynchronously", || {
        send_synchronously(
            target,
            SyncKind::InternalIoctl(code),
            input,
            output,
            options,
            bytes,
            "WdfIoTargetSendInternalIoctlSynchronously",
        )
    })
}

/// `WdfIoTargetSendReadSynchronously` (PASSIVE; the device offset is not modelled).
extern "win64" fn wdf_io_target_send_read_synchronously(
    _globals: PWDF_DRIVER_GLOBALS,
    target: WDFIOTARGET,
    _request: WDFREQUEST,
    output: PWDF_MEMORY_DESCRIPTOR,
    _device_offset: PLONGLONG,
    options: PWDF_REQUEST_SEND_OPTIONS,
    bytes: PULONG_PTR,
) -> NTSTATUS {
    guard("WdfIoTargetSendReadSynchronously", || {
        send_synchronously(
            target,
            SyncKind::Read,
            core::ptr::null_mut(),
            output,
            options,
            bytes,
            "WdfIoTargetSendReadSynchronously",
        )
    })
}

/// `WdfIoTargetSendWriteSynchronously` (PASSIVE; the device offset is not modelled).
extern "win64" fn wdf_io_target_send_write_synchronously(
    _globals: PWDF_DRIVER_GLOBALS,
    target: WDFIOTARGET,
    _request: WDFREQUEST,
    input: PWDF_MEMORY_DESCRIPTOR,
    _device_offset: PLONGLONG,
    options: PWDF_REQUEST_SEND_OPTIONS,
    bytes: PULONG_PTR,
) -> NTSTATUS {
    guard("WdfIoTargetSendWriteSynchronously", || {
        send_synchronously(
            target,
            SyncKind::Write,
            input,
            core::ptr::null_mut(),
            options,
            bytes,
            "WdfIoTargetSendWriteSynchronously",
        )
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::{Mutex, PoisonError};

    use super::super::bindings::_WDF_REQUEST_SEND_OPTIONS_FLAGS::WDF_REQUEST_SEND_OPTION_TIMEOUT;
    use super::super::bindings::{
        PFN_WDFMEMORYCREATE, PFN_WDFMEMORYGETBUFFER, PFN_WDFREQUESTCREATE, PFN_WDFREQUESTGETSTATUS,
        PFN_WDFREQUESTREUSE, PFN_WDFREQUESTSEND, PFN_WDFREQUESTSETCOMPLETIONROUTINE, PVOID,
        PWDF_REQUEST_COMPLETION_PARAMS, UNICODE_STRING, WDFCONTEXT, WDFMEMORY_OFFSET,
        WDF_REQUEST_REUSE_PARAMS,
    };
    use super::super::device::testing::{wdf, TestDriver};
    use super::super::request::tests::{echo_device_add, DEVICE, GUID_ECHO, IOCTL_INVERT, SERIAL};
    use super::*;

    /// What the completion routine saw: (status, information, output length, context).
    static COMPLETED: Mutex<Vec<(i32, u64, usize, usize)>> = Mutex::new(Vec::new());

    extern "win64" fn completion(
        _request: WDFREQUEST,
        _target: WDFIOTARGET,
        params: PWDF_REQUEST_COMPLETION_PARAMS,
        context: WDFCONTEXT,
    ) {
        // SAFETY: the parameters the host passes, valid for the call; an IOCTL's.
        let p = unsafe { &*params };
        // SAFETY: as above.
        let (status, length) = unsafe {
            (
                p.IoStatus.__bindgen_anon_1.Status,
                p.Parameters.Ioctl.Output.Length,
            )
        };
        COMPLETED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((status, p.IoStatus.Information, length, context as usize));
    }

    fn memory(g: PWDF_DRIVER_GLOBALS, size: usize) -> (WDFMEMORY, *mut u8) {
        let create: PFN_WDFMEMORYCREATE = wdf("WdfMemoryCreate");
        let mut m: WDFMEMORY = core::ptr::null_mut();
        let mut b: PVOID = core::ptr::null_mut();
        // SAFETY: live locals.
        let s = unsafe {
            create.unwrap()(
                g,
                core::ptr::null_mut(),
                0,
                u32::from_le_bytes(*b"hioT"),
                size,
                &raw mut m,
                &raw mut b,
            )
        };
        assert_eq!(s, STATUS_SUCCESS);
        (m, b.cast())
    }

    fn open_params(name: &mut Vec<u16>) -> WDF_IO_TARGET_OPEN_PARAMS {
        // SAFETY: plain data; WDF_IO_TARGET_OPEN_PARAMS_INIT_OPEN_BY_NAME zeroes it first.
        let mut p: WDF_IO_TARGET_OPEN_PARAMS = unsafe { core::mem::zeroed() };
        p.Size = u32::try_from(size_of::<WDF_IO_TARGET_OPEN_PARAMS>()).unwrap();
        p.Type = open_type::WdfIoTargetOpenByName;
        p.DesiredAccess = GENERIC_READ | GENERIC_WRITE;
        let bytes = u16::try_from(name.len() * 2).unwrap();
        p.TargetDeviceName = UNICODE_STRING {
            Length: bytes,
            MaximumLength: bytes,
            Buffer: name.as_mut_ptr(),
        };
        p
    }

    #[test]
    #[allow(
        clippy::too_many_lines,
        reason = "one scenario: open, send, reuse, send again, synchronously, close"
    )]
    fn driver_created_requests_go_to_a_target_opened_by_name_and_come_back_into_its_memory() {
        let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let driver = TestDriver::load("hiotarget", echo_device_add);
        let (_node, _) = driver.plug_in();
        let _bound = driver.machine.enter();
        let g = driver.globals;
        let device = DEVICE.load(Ordering::SeqCst) as WDFDEVICE;

        let mut target: WDFIOTARGET = core::ptr::null_mut();
        assert_eq!(
            wdf_io_target_create(g, device, core::ptr::null_mut(), &raw mut target),
            STATUS_SUCCESS
        );
        assert_eq!(wdf_io_target_get_state(g, target), WdfIoTargetClosed);
        assert_eq!(wdf_io_target_get_device(g, target), device);

        // Open by name: a wrong size, a name nobody has, then the echo interface.
        let mut missing: Vec<u16> = "\\??\\NOBODY#{0}".encode_utf16().collect();
        let mut p = open_params(&mut missing);
        p.Size -= 8;
        assert_eq!(
            wdf_io_target_open(g, target, &raw mut p),
            STATUS_INFO_LENGTH_MISMATCH
        );
        let mut p = open_params(&mut missing);
        assert_eq!(
            wdf_io_target_open(g, target, &raw mut p),
            Status::NOT_FOUND.0
        );
        let link = kmdf_sim::interface::interfaces_of_class(&driver.machine, GUID_ECHO)
            .pop()
            .unwrap();
        let mut name: Vec<u16> = link.encode_utf16().collect();
        let mut p = open_params(&mut name);
        assert_eq!(wdf_io_target_open(g, target, &raw mut p), STATUS_SUCCESS);
        assert_eq!(wdf_io_target_get_state(g, target), WdfIoTargetStarted);

        // A request formatted with the driver's memory; the output lands in its memory.
        let (input, in_buf) = memory(g, 4);
        let (output, out_buf) = memory(g, 8);
        // SAFETY: the 4-byte pool buffer of `input`.
        unsafe { core::ptr::copy_nonoverlapping([1_u8, 2, 3, 4].as_ptr(), in_buf, 4) };
        let create: PFN_WDFREQUESTCREATE = wdf("WdfRequestCreate");
        let mut request: WDFREQUEST = core::ptr::null_mut();
        // SAFETY: live locals.
        let created =
            unsafe { create.unwrap()(g, core::ptr::null_mut(), target, &raw mut request) };
        assert_eq!(created, STATUS_SUCCESS);
        let mut out_offset = WDFMEMORY_OFFSET {
            BufferOffset: 4,
            BufferLength: 4,
        };
        let mut past_end = WDFMEMORY_OFFSET {
            BufferOffset: 6,
            BufferLength: 4,
        };
        assert_eq!(
            wdf_io_target_format_request_for_ioctl(
                g,
                target,
                request,
                IOCTL_INVERT,
                input,
                core::ptr::null_mut(),
                output,
                &raw mut past_end
            ),
            STATUS_INVALID_BUFFER_SIZE
        );
        assert_eq!(
            wdf_io_target_format_request_for_ioctl(
                g,
                target,
                request,
                IOCTL_INVERT,
                input,
                core::ptr::null_mut(),
                output,
                &raw mut out_offset
            ),
            STATUS_SUCCESS
        );
        let set: PFN_WDFREQUESTSETCOMPLETIONROUTINE = wdf("WdfRequestSetCompletionRoutine");
        let send: PFN_WDFREQUESTSEND = wdf("WdfRequestSend");
        let status: PFN_WDFREQUESTGETSTATUS = wdf("WdfRequestGetStatus");
        let reuse: PFN_WDFREQUESTREUSE = wdf("WdfRequestReuse");
        // SAFETY: live handles and locals throughout.
        unsafe {
            set.unwrap()(g, request, Some(completion), 0x55 as WDFCONTEXT);
            assert_eq!(send.unwrap()(g, request, target, core::ptr::null_mut()), 1);
            assert_eq!(
                COMPLETED
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop(),
                Some((STATUS_SUCCESS, 4, 4, 0x55))
            );
            assert_eq!(
                core::slice::from_raw_parts(out_buf, 8),
                &[0, 0, 0, 0, 0xFE, 0xFD, 0xFC, 0xFB]
            );
            assert_eq!(status.unwrap()(g, request), STATUS_SUCCESS);

            // Reused and sent again with a timeout option.
            let mut rp = WDF_REQUEST_REUSE_PARAMS {
                Size: 8,
                Flags: 0,
                Status: 0,
                NewIrp: core::ptr::null_mut(),
            };
            assert_eq!(
                reuse.unwrap()(g, request, &raw mut rp),
                STATUS_INFO_LENGTH_MISMATCH
            );
            rp.Size = u32::try_from(size_of::<WDF_REQUEST_REUSE_PARAMS>()).unwrap();
            rp.Status = Status::PENDING.0;
            assert_eq!(reuse.unwrap()(g, request, &raw mut rp), STATUS_SUCCESS);
            assert_eq!(status.unwrap()(g, request), Status::PENDING.0);
            *in_buf = 0xF0;
            let mut options = WDF_REQUEST_SEND_OPTIONS {
                Size: u32::try_from(size_of::<WDF_REQUEST_SEND_OPTIONS>()).unwrap(),
                Flags: WDF_REQUEST_SEND_OPTION_TIMEOUT as u32,
                Timeout: -10_000_000,
            };
            assert_eq!(send.unwrap()(g, request, target, &raw mut options), 1);
            assert_eq!(*out_buf.add(4), 0x0F);

            // Synchronously, with buffer descriptors.
            let mut data = [0x11_u8, 0x22];
            let mut out = [0_u8; 2];
            let mut d_in: WDF_MEMORY_DESCRIPTOR = core::mem::zeroed();
            d_in.Type = descriptor_type::WdfMemoryDescriptorTypeBuffer;
            d_in.u.BufferType.Buffer = data.as_mut_ptr().cast();
            d_in.u.BufferType.Length = 2;
            let mut d_out = d_in;
            d_out.u.BufferType.Buffer = out.as_mut_ptr().cast();
            let mut bytes = 0_u64;
            assert_eq!(
                wdf_io_target_send_ioctl_synchronously(
                    g,
                    target,
                    core::ptr::null_mut(),
                    IOCTL_INVERT,
                    &raw mut d_in,
                    &raw mut d_out,
                    core::ptr::null_mut(),
                    &raw mut bytes
                ),
                STATUS_SUCCESS
            );
            assert_eq!((out, bytes), ([0xEE, 0xDD], 2));
            let mut d_mdl = d_in;
            d_mdl.Type = descriptor_type::WdfMemoryDescriptorTypeMdl;
            assert_eq!(
                wdf_io_target_send_ioctl_synchronously(
                    g,
                    target,
                    core::ptr::null_mut(),
                    IOCTL_INVERT,
                    &raw mut d_mdl,
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    &raw mut bytes
                ),
                Status::NOT_SUPPORTED.0
            );

            // Closed: a send fails and the request keeps the status.
            wdf_io_target_close(g, target);
            assert_eq!(wdf_io_target_get_state(g, target), WdfIoTargetClosed);
            let mut rp = WDF_REQUEST_REUSE_PARAMS {
                Size: u32::try_from(size_of::<WDF_REQUEST_REUSE_PARAMS>()).unwrap(),
                Flags: 0,
                Status: 0,
                NewIrp: core::ptr::null_mut(),
            };
            assert_eq!(reuse.unwrap()(g, request, &raw mut rp), STATUS_SUCCESS);
            assert_eq!(send.unwrap()(g, request, target, core::ptr::null_mut()), 0);
            assert_eq!(status.unwrap()(g, request), Status::INVALID_DEVICE_STATE.0);
        }
        let get: PFN_WDFMEMORYGETBUFFER = wdf("WdfMemoryGetBuffer");
        let mut size = 0_usize;
        // SAFETY: a live memory object and a local.
        let got = unsafe { get.unwrap()(g, output, &raw mut size) };
        assert_eq!(got.cast::<u8>(), out_buf);
        assert_eq!(size, 8);
        // The pool block is tagged as asked.
        assert!(driver
            .machine
            .pool()
            .outstanding()
            .iter()
            .any(|a| a.tag == kmdf_sim::pool::PoolTag(*b"hioT") && a.size == 8));
        let delete: super::super::bindings::PFN_WDFOBJECTDELETE = wdf("WdfObjectDelete");
        // SAFETY: live handles the test created.
        unsafe {
            delete.unwrap()(g, request.cast());
            delete.unwrap()(g, input.cast());
            delete.unwrap()(g, output.cast());
        }
        assert!(!driver
            .machine
            .pool()
            .outstanding()
            .iter()
            .any(|a| a.tag == kmdf_sim::pool::PoolTag(*b"hioT")));
    }
}
