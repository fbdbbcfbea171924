//! Requests: the `WdfRequest…` functions for requests the framework delivers and requests the
//! driver creates and sends.
//!
//! A `WDFREQUEST` is a host object around a kmdf-sim [`Request`] handle (which carries the
//! ownership rules, completion, cancellation and forwarding) — plus what only the C ABI needs:
//! the context of the device's `WdfDeviceInitSetRequestAttributes`, the **host buffers** the
//! driver reads and writes through the pointers `WdfRequestRetrieveInputBuffer` /
//! `…OutputBuffer` return (valid until completion, as WDF says; copied into kmdf-sim's request
//! when the request is completed or sent on, and refreshed from it when a lower driver gives it
//! back), the completion routine and its `WDF_REQUEST_COMPLETION_PARAMS`.
//!
//! **Delivered requests** ([`adopt`]) keep one handle for as long as the driver may see them —
//! forwarded to another queue, requeued or sent with a completion routine, the request comes
//! back with the same handle (and context). The handle is retired (its object deleted: the
//! request attributes' `EvtCleanupCallback` runs) when the driver completes the request, sends
//! it with `WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET`, or sends it without a completion routine
//! and the lower driver completes it (the framework completes it on the driver's behalf).
//!
//! **Driver-created requests** (`WdfRequestCreate`) are formatted by the
//! `WdfIoTargetFormatRequestFor…` functions ([`super::target`]) against the driver's
//! `WDFMEMORY` objects; the kmdf-sim request is made (or re-formatted) when it is sent, with the
//! input read from the driver's memory then, and on completion the output lands in the driver's
//! output memory (`Information` bytes at its offset) before the completion routine runs.
//!
//! One difference from KMDF: a delivered request that the framework completes without the
//! driver's knowledge after it left the driver (cancelled in a manual queue without
//! `EvtIoCanceledOnQueue`, purged) keeps its handle until its device is deleted (the handle's
//! object is a child of the device).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kmdf_sim::io::{
    CompletionParams, IoTarget, Request, RequestParameters, RequestType, RequestorMode,
    SendOptions, METHOD_BUFFERED,
};
use kmdf_sim::object::WdfObject;
use kmdf_sim::Status;

use super::bindings::status::{STATUS_INFO_LENGTH_MISMATCH, STATUS_SUCCESS};
use super::bindings::_MODE::{KernelMode, UserMode};
use super::bindings::_WDF_REQUEST_SEND_OPTIONS_FLAGS::{
    WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE, WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET,
    WDF_REQUEST_SEND_OPTION_SYNCHRONOUS, WDF_REQUEST_SEND_OPTION_TIMEOUT,
};
use super::bindings::_WDF_REQUEST_TYPE::{
    WdfRequestTypeCleanup, WdfRequestTypeClose, WdfRequestTypeCreate, WdfRequestTypeDeviceControl,
    WdfRequestTypeDeviceControlInternal, WdfRequestTypeRead, WdfRequestTypeWrite,
};
use super::bindings::{
    BOOLEAN, KPROCESSOR_MODE, NTSTATUS, PFN_WDF_REQUEST_CANCEL, PFN_WDF_REQUEST_COMPLETION_ROUTINE,
    PVOID, PWDF_DRIVER_GLOBALS, PWDF_OBJECT_ATTRIBUTES, PWDF_REQUEST_COMPLETION_PARAMS,
    PWDF_REQUEST_PARAMETERS, PWDF_REQUEST_REUSE_PARAMS, PWDF_REQUEST_SEND_OPTIONS, ULONG_PTR,
    WDFCONTEXT, WDFFILEOBJECT, WDFIOTARGET, WDFMEMORY, WDFQUEUE, WDFREQUEST,
    WDF_REQUEST_COMPLETION_PARAMS, WDF_REQUEST_PARAMETERS, WDF_REQUEST_REUSE_PARAMS,
    WDF_REQUEST_SEND_OPTIONS, WDF_REQUEST_TYPE,
};
use super::memory::{self, HostBuffer};
use super::objects::{self, Attributes, Handle, Object};
use super::{device, driver, queue, target, wdf_exports};
use crate::host::{guard, stop, Stop};

wdf_exports! {
    WdfRequestCreate => wdf_request_create: PFN_WDFREQUESTCREATE,
    WdfRequestReuse => wdf_request_reuse: PFN_WDFREQUESTREUSE,
    WdfRequestSetCompletionRoutine => wdf_request_set_completion_routine: PFN_WDFREQUESTSETCOMPLETIONROUTINE,
    WdfRequestGetCompletionParams => wdf_request_get_completion_params: PFN_WDFREQUESTGETCOMPLETIONPARAMS,
    WdfRequestSend => wdf_request_send: PFN_WDFREQUESTSEND,
    WdfRequestCancelSentRequest => wdf_request_cancel_sent_request: PFN_WDFREQUESTCANCELSENTREQUEST,
    WdfRequestFormatRequestUsingCurrentType => wdf_request_format_request_using_current_type: PFN_WDFREQUESTFORMATREQUESTUSINGCURRENTTYPE,
    WdfRequestComplete => wdf_request_complete: PFN_WDFREQUESTCOMPLETE,
    WdfRequestCompleteWithInformation => wdf_request_complete_with_information: PFN_WDFREQUESTCOMPLETEWITHINFORMATION,
    WdfRequestGetParameters => wdf_request_get_parameters: PFN_WDFREQUESTGETPARAMETERS,
    WdfRequestRetrieveInputMemory => wdf_request_retrieve_input_memory: PFN_WDFREQUESTRETRIEVEINPUTMEMORY,
    WdfRequestRetrieveOutputMemory => wdf_request_retrieve_output_memory: PFN_WDFREQUESTRETRIEVEOUTPUTMEMORY,
    WdfRequestRetrieveInputBuffer => wdf_request_retrieve_input_buffer: PFN_WDFREQUESTRETRIEVEINPUTBUFFER,
    WdfRequestRetrieveOutputBuffer => wdf_request_retrieve_output_buffer: PFN_WDFREQUESTRETRIEVEOUTPUTBUFFER,
    WdfRequestSetInformation => wdf_request_set_information: PFN_WDFREQUESTSETINFORMATION,
    WdfRequestGetInformation => wdf_request_get_information: PFN_WDFREQUESTGETINFORMATION,
    WdfRequestGetStatus => wdf_request_get_status: PFN_WDFREQUESTGETSTATUS,
    WdfRequestGetFileObject => wdf_request_get_file_object: PFN_WDFREQUESTGETFILEOBJECT,
    WdfRequestGetRequestorMode => wdf_request_get_requestor_mode: PFN_WDFREQUESTGETREQUESTORMODE,
    WdfRequestGetIoQueue => wdf_request_get_io_queue: PFN_WDFREQUESTGETIOQUEUE,
    WdfRequestForwardToIoQueue => wdf_request_forward_to_io_queue: PFN_WDFREQUESTFORWARDTOIOQUEUE,
    WdfRequestRequeue => wdf_request_requeue: PFN_WDFREQUESTREQUEUE,
    WdfRequestMarkCancelable => wdf_request_mark_cancelable: PFN_WDFREQUESTMARKCANCELABLE,
    WdfRequestMarkCancelableEx => wdf_request_mark_cancelable_ex: PFN_WDFREQUESTMARKCANCELABLEEX,
    WdfRequestUnmarkCancelable => wdf_request_unmark_cancelable: PFN_WDFREQUESTUNMARKCANCELABLE,
    WdfRequestIsCanceled => wdf_request_is_canceled: PFN_WDFREQUESTISCANCELED,
    WdfRequestStopAcknowledge => wdf_request_stop_acknowledge: PFN_WDFREQUESTSTOPACKNOWLEDGE,
    WdfRequestAllocateTimer => wdf_request_allocate_timer: PFN_WDFREQUESTALLOCATETIMER,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A range of a driver's `WDFMEMORY` (a memory handle and `WDFMEMORY_OFFSET`, resolved).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MemRange {
    /// The `WDFMEMORY`.
    pub memory: Handle,
    /// `BufferOffset`.
    pub offset: usize,
    /// `BufferLength` (the rest of the memory when no offsets were given).
    pub length: usize,
}

impl MemRange {
    /// A copy of the bytes.
    fn read(&self) -> Vec<u8> {
        let (ptr, len) = memory::region_of(self.memory, "WdfRequestSend");
        let n = self.length.min(len.saturating_sub(self.offset));
        // SAFETY: `[offset, offset + n)` lies inside the memory's buffer (checked against its
        // length), which the driver keeps alive while the request is formatted with it.
        unsafe { core::slice::from_raw_parts(ptr.add(self.offset), n) }.to_vec()
    }

    /// Writes `bytes` (as many as fit) at the start of the range.
    fn write(&self, bytes: &[u8]) {
        let (ptr, len) = memory::region_of(self.memory, "WdfRequestSend");
        let n = bytes
            .len()
            .min(self.length)
            .min(len.saturating_sub(self.offset));
        // SAFETY: as in `read`; the host bytes do not overlap the driver's memory.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.add(self.offset), n) };
    }
}

/// What a `WdfIoTargetFormatRequestFor…` call prepared (driver-created requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FormatKind {
    /// `WdfIoTargetFormatRequestForRead`.
    Read,
    /// `WdfIoTargetFormatRequestForWrite`.
    Write,
    /// `WdfIoTargetFormatRequestForIoctl` with the control code.
    Ioctl(u32),
    /// `WdfIoTargetFormatRequestForInternalIoctl` with the control code.
    InternalIoctl(u32),
}

/// A formatted request: what to send, and where the data is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Format {
    /// The request type and control code.
    pub kind: FormatKind,
    /// The target it was formatted for.
    pub target: Handle,
    /// The input memory.
    pub input: Option<MemRange>,
    /// The output memory.
    pub output: Option<MemRange>,
    /// The device offset of a read or write.
    pub device_offset: i64,
}

/// `WDF_REQUEST_COMPLETION_PARAMS`, at a fixed address (the driver gets a pointer to it).
struct Params(Box<WDF_REQUEST_COMPLETION_PARAMS>);

// SAFETY: plain data (handles and a status) the host writes under the request's lock; the
// driver reads it in its completion routine.
unsafe impl Send for Params {}

impl Params {
    fn new() -> Params {
        // SAFETY: WDF_REQUEST_COMPLETION_PARAMS is plain C data; all zeroes is its
        // WDF_REQUEST_COMPLETION_PARAMS_INIT state but for `Size`, set below.
        let mut p: WDF_REQUEST_COMPLETION_PARAMS = unsafe { core::mem::zeroed() };
        p.Size = size_of::<WDF_REQUEST_COMPLETION_PARAMS>() as u32;
        Params(Box::new(p))
    }
}

/// What `Parameters.Create.SecurityContext` points at for a create: the requester's primary
/// token (an administrator's or not, as the application that opened the handle), which
/// `SeTokenIsAdmin` answers for.
struct CreateSecurity {
    context: super::bindings::IO_SECURITY_CONTEXT,
    access: super::bindings::ACCESS_STATE,
}

// SAFETY: plain data and token pointers the host made; the driver reads it during the create.
unsafe impl Send for CreateSecurity {}

/// The host's two tokens (administrator, not), made once.
fn token(administrator: bool) -> *mut core::ffi::c_void {
    static TOKENS: std::sync::OnceLock<(usize, usize)> = std::sync::OnceLock::new();
    let (admin, user) = *TOKENS.get_or_init(|| {
        (
            crate::nt::new_token(true) as usize,
            crate::nt::new_token(false) as usize,
        )
    });
    (if administrator { admin } else { user }) as *mut core::ffi::c_void
}

impl CreateSecurity {
    fn new(administrator: bool) -> Box<CreateSecurity> {
        // SAFETY: IO_SECURITY_CONTEXT and ACCESS_STATE are plain C data; all zeroes is a valid
        // value of both (null pointers, empty strings, no privileges).
        let mut b: Box<CreateSecurity> = Box::new(unsafe { core::mem::zeroed() });
        b.access.SubjectSecurityContext.PrimaryToken = token(administrator);
        b.context.AccessState = &raw mut b.access;
        b
    }
}

/// The mutable state of a `WDFREQUEST`.
struct State {
    /// The kmdf-sim handle while the driver owns the request (None while it is sent, after
    /// completion, or before a driver-created request is first sent).
    sim: Option<Request>,
    /// The handle the request was sent with, while it is at the target (for
    /// `WdfRequestCancelSentRequest` and `WdfRequestGetStatus`).
    sent: Option<Arc<Request>>,
    /// The queue that last presented it.
    queue: Option<Handle>,
    /// The host copies of the input and output buffers (one shared block for a
    /// `METHOD_BUFFERED` IOCTL, as the system buffer is one).
    input: Option<Arc<HostBuffer>>,
    output: Option<Arc<HostBuffer>>,
    /// `WdfRequestRetrieveInputMemory` / `…OutputMemory` objects over them.
    input_memory: Option<Handle>,
    output_memory: Option<Handle>,
    /// `WdfRequestSetCompletionRoutine`.
    routine: PFN_WDF_REQUEST_COMPLETION_ROUTINE,
    context: usize,
    /// The last completion's parameters.
    params: Params,
    /// The last `WdfIoTargetFormatRequestFor…` (driver-created requests).
    format: Option<Format>,
    /// A driver-created request's status and information before its first send.
    status: Status,
    information: usize,
    /// The security context of a create (`Parameters.Create.SecurityContext`).
    security: Option<Box<CreateSecurity>>,
    /// The device a driver-created request's kmdf-sim request belongs to (kmdf-sim parents it
    /// there; the device's deletion deletes it).
    owner: Option<WdfObject>,
}

/// The payload of a `WDFREQUEST`.
pub(crate) struct RequestPayload {
    state: Mutex<State>,
    /// `WdfRequestCreate` made it.
    created: bool,
    /// The kmdf-sim request id of a delivered request.
    id: u64,
}

impl core::fmt::Debug for RequestPayload {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RequestPayload")
            .field("created", &self.created)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Drop for RequestPayload {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if self.created {
            if let Some(sim) = state.sim.take() {
                // The kmdf-sim request is the device's child: when the device was deleted first
                // (the WDFREQUEST's own parent outlived it), the device's deletion already
                // deleted it, as KMDF disposes a request with its parent.
                if !state.owner.as_ref().is_some_and(WdfObject::is_deleted) {
                    let _ = sim.delete();
                }
            }
        }
    }
}

impl RequestPayload {
    fn new(created: bool, id: u64, sim: Option<Request>) -> RequestPayload {
        RequestPayload {
            state: Mutex::new(State {
                sim,
                sent: None,
                queue: None,
                input: None,
                output: None,
                input_memory: None,
                output_memory: None,
                routine: None,
                context: 0,
                params: Params::new(),
                format: None,
                status: Status::SUCCESS,
                information: 0,
                security: None,
                owner: None,
            }),
            created,
            id,
        }
    }
}

/// Delivered requests with a live handle, by kmdf-sim request id.
static DELIVERED: Mutex<Option<HashMap<u64, Handle>>> = Mutex::new(None);

fn delivered_handle(id: u64) -> Option<Arc<Object>> {
    let handle = lock(&DELIVERED)
        .as_ref()
        .and_then(|m| m.get(&id).copied())?;
    objects::get(handle)
}

/// Wraps a request the framework delivers in a `WDFREQUEST` handle (see the
/// [module documentation](self)): the handle the request already has if the driver saw it
/// before (forwarded, requeued, sent and back, `EvtIoStop`), else a new one whose context is the
/// device's `WdfDeviceInitSetRequestAttributes`.
pub(crate) fn adopt(request: Request, device: Option<&device::DevicePayload>) -> Handle {
    if let Some(object) = delivered_handle(request.id()) {
        let payload = payload(&object);
        let mut state = lock(&payload.state);
        // A second handle (EvtIoStop, EvtIoResume, a cancel routine) is dropped while the
        // driver's first one is kept; with none kept (the request was sent on), it is the one.
        let spare = if state.sim.is_none() {
            state.sim = Some(request);
            None
        } else {
            Some(request)
        };
        drop(state);
        drop(spare);
        return object.handle();
    }
    let id = request.id();
    let attributes = device.and_then(|d| d.request_attributes).map(|mut a| {
        // The framework owns a delivered request's place in the tree.
        a.parent = None;
        a
    });
    let pending = match objects::begin("WDFREQUEST", attributes) {
        Ok(p) => p,
        Err(status) => refuse(request, status),
    };
    let parent = device.map(|d| d.sim.object().clone());
    let machine = crate::host::machine("WDFREQUEST");
    let attrs = pending.sim_attributes("WDFREQUEST", parent.as_ref());
    let sim = if let Ok(sim) = WdfObject::create(&machine, "WDFREQUEST", attrs) {
        sim
    } else {
        // The device is being deleted: the request object has no parent then.
        let attrs = pending.sim_attributes("WDFREQUEST", None);
        match WdfObject::create(&machine, "WDFREQUEST", attrs) {
            Ok(sim) => sim,
            Err(status) => refuse(request, status),
        }
    };
    let object = pending.finish(sim, RequestPayload::new(false, id, Some(request)));
    lock(&DELIVERED)
        .get_or_insert_with(HashMap::new)
        .insert(id, object.handle());
    object.handle()
}

/// A delivered request the host cannot make an object for: KMDF fails the IRP before the
/// driver sees it; here the driver would be called with nothing, so the run stops.
fn refuse(request: Request, status: Status) -> ! {
    request.complete(Status::INSUFFICIENT_RESOURCES);
    stop(Stop {
        message: format!(
            "kmdf-host: the WDFREQUEST object of a delivered request could not be created \
             ({status}); the request was failed with STATUS_INSUFFICIENT_RESOURCES"
        ),
        wdf_function: None,
    })
}

/// Records the queue that presents the request `handle` (`WdfRequestGetIoQueue`).
pub(crate) fn set_queue(handle: Handle, queue: Handle) {
    if let Some(object) = objects::get(handle) {
        lock(&payload(&object).state).queue = Some(queue);
    }
}

fn payload(object: &Object) -> &RequestPayload {
    object
        .payload::<RequestPayload>()
        .expect("a WDFREQUEST carries a RequestPayload")
}

fn expect(request: WDFREQUEST, routine: &str) -> Arc<Object> {
    objects::expect_kind(request as Handle, "WDFREQUEST", routine)
}

/// The handle leaves the driver for good: its object is deleted (cleanup callback, then the
/// handle is gone once no reference is left).
fn retire(object: &Object) {
    let p = payload(object);
    if !p.created {
        if let Some(map) = lock(&DELIVERED).as_mut() {
            if map.get(&p.id) == Some(&object.handle()) {
                map.remove(&p.id);
            }
        }
    }
    let _ = object.sim().delete();
}

/// A stop: the driver used `routine` on a request it does not own (KMDF's verifier bug-checks).
fn not_owned(object: &Object, routine: &str) -> ! {
    stop(Stop {
        message: format!(
            "kmdf-host: the driver called {routine} on WDFREQUEST {:#x}, which it does not own \
             (already completed, sent or forwarded; WDF_VIOLATION)",
            object.handle()
        ),
        wdf_function: None,
    })
}

/// Runs `f` on the driver's kmdf-sim handle (or the one at the target, or `None` for a
/// driver-created request never sent). Only for calls that do not call back into the driver.
fn peek<R>(object: &Object, f: impl FnOnce(Option<&Request>) -> R) -> R {
    let state = lock(&payload(object).state);
    let r = state.sim.as_ref().or(state.sent.as_deref());
    f(r)
}

/// Takes the driver's kmdf-sim handle out (to complete, forward or send it), or stops.
fn take(object: &Object, routine: &str) -> Request {
    let taken = lock(&payload(object).state).sim.take();
    taken.unwrap_or_else(|| not_owned(object, routine))
}

/// Puts a handle back after a call that handed it back.
fn put_back(object: &Object, request: Request) {
    let spare = lock(&payload(object).state).sim.replace(request);
    drop(spare);
}

fn is_buffered(p: &RequestParameters) -> bool {
    matches!(
        p.kind,
        RequestType::DeviceControl | RequestType::InternalDeviceControl
    ) && p.ioctl_code & 3 == METHOD_BUFFERED
}

/// The host copy of the input (`output == false`) or output buffer, made on first use.
///
/// Errors: kmdf-sim's (`STATUS_BUFFER_TOO_SMALL`, `STATUS_INVALID_DEVICE_REQUEST`, …).
fn host_buffer(
    object: &Object,
    output: bool,
    min_len: usize,
    routine: &str,
) -> Result<(Arc<HostBuffer>, usize), Status> {
    let p = payload(object);
    let mut state = lock(&p.state);
    let Some(sim) = state.sim.as_ref() else {
        drop(state);
        not_owned(object, routine);
    };
    let params = sim.parameters();
    let length = if output {
        params.output_length
    } else {
        params.input_length
    };
    // kmdf-sim decides the status (type, method, length); the bytes are copied once.
    let bytes = if output {
        sim.with_output_buffer(min_len, |b| b.to_vec())
    } else {
        sim.input_buffer(min_len)
    }?;
    let existing = if output { &state.output } else { &state.input };
    if let Some(buffer) = existing {
        return Ok((Arc::clone(buffer), length));
    }
    let buffer = if is_buffered(&params) {
        let shared = state.input.clone().or_else(|| state.output.clone());
        shared.unwrap_or_else(|| {
            let system = params.input_length.max(params.output_length);
            Arc::new(HostBuffer::new(&bytes, system))
        })
    } else {
        Arc::new(HostBuffer::new(&bytes, length))
    };
    if is_buffered(&params) {
        state.input = Some(Arc::clone(&buffer));
        state.output = Some(Arc::clone(&buffer));
    } else if output {
        state.output = Some(Arc::clone(&buffer));
    } else {
        state.input = Some(Arc::clone(&buffer));
    }
    Ok((buffer, length))
}

/// Copies the driver's writes to the output host buffer into kmdf-sim's request (before it is
/// completed or sent on).
fn flush_output(state: &State, sim: &Request) {
    if let Some(out) = &state.output {
        let bytes = out.to_vec();
        let _ = sim.with_output_buffer(0, |b| {
            let n = b.len().min(bytes.len());
            b[..n].copy_from_slice(&bytes[..n]);
        });
    }
}

/// Refreshes the host buffers from kmdf-sim's request (a lower driver wrote it).
fn refresh_output(state: &State, sim: &Request) {
    if let Some(out) = &state.output {
        if let Ok(bytes) = sim.with_output_buffer(0, |b| b.to_vec()) {
            out.write(&bytes);
        }
    }
}

/// `WDF_REQUEST_TYPE` of a kmdf-sim request type.
fn wdf_type(kind: RequestType) -> WDF_REQUEST_TYPE {
    match kind {
        RequestType::Create => WdfRequestTypeCreate,
        RequestType::Cleanup => WdfRequestTypeCleanup,
        RequestType::Close => WdfRequestTypeClose,
        RequestType::Read => WdfRequestTypeRead,
        RequestType::Write => WdfRequestTypeWrite,
        RequestType::DeviceControl => WdfRequestTypeDeviceControl,
        RequestType::InternalDeviceControl => WdfRequestTypeDeviceControlInternal,
    }
}

fn complete(request: WDFREQUEST, status: NTSTATUS, information: Option<usize>, routine: &str) {
    let object = expect(request, routine);
    let sim = take(&object, routine);
    {
        let state = lock(&payload(&object).state);
        flush_output(&state, &sim);
    }
    let created = payload(&object).created;
    match information {
        Some(info) => sim.complete_with_information(Status(status), info),
        None => sim.complete(Status(status)),
    }
    if !created {
        retire(&object);
    }
}

/// `WdfRequestComplete`.
extern "win64" fn wdf_request_complete(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    status: NTSTATUS,
) {
    guard("WdfRequestComplete", || {
        complete(request, status, None, "WdfRequestComplete");
    });
}

/// `WdfRequestCompleteWithInformation`.
extern "win64" fn wdf_request_complete_with_information(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    status: NTSTATUS,
    information: ULONG_PTR,
) {
    guard("WdfRequestCompleteWithInformation", || {
        complete(
            request,
            status,
            Some(usize::try_from(information).unwrap_or(usize::MAX)),
            "WdfRequestCompleteWithInformation",
        );
    });
}

/// The parameters of a request: kmdf-sim's, or a driver-created request's format.
fn parameters(object: &Object) -> Option<RequestParameters> {
    let p = payload(object);
    if p.created {
        let format = lock(&p.state).format?;
        let (kind, code) = match format.kind {
            FormatKind::Read => (RequestType::Read, 0),
            FormatKind::Write => (RequestType::Write, 0),
            FormatKind::Ioctl(c) => (RequestType::DeviceControl, c),
            FormatKind::InternalIoctl(c) => (RequestType::InternalDeviceControl, c),
        };
        return Some(RequestParameters {
            kind,
            ioctl_code: code,
            input_length: format.input.map_or(0, |r| r.length),
            output_length: format.output.map_or(0, |r| r.length),
            offset: u64::try_from(format.device_offset).unwrap_or(0),
        });
    }
    peek(object, |r| r.map(Request::parameters))
}

/// `WdfRequestGetParameters`: `WDF_REQUEST_PARAMETERS` filled for the request's type (a
/// structure whose `Size` is wrong is left untouched, as KMDF does).
extern "win64" fn wdf_request_get_parameters(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    out: PWDF_REQUEST_PARAMETERS,
) {
    guard("WdfRequestGetParameters", || {
        let object = expect(request, "WdfRequestGetParameters");
        if out.is_null() {
            return;
        }
        // SAFETY: the driver's WDF_REQUEST_PARAMETERS for the call (checked non-null).
        let out = unsafe { &mut *out };
        if usize::from(out.Size) != size_of::<WDF_REQUEST_PARAMETERS>() {
            return;
        }
        let Some(p) = parameters(&object) else {
            return;
        };
        // SAFETY: all zeroes is a valid WDF_REQUEST_PARAMETERS (plain C data).
        let mut filled: WDF_REQUEST_PARAMETERS = unsafe { core::mem::zeroed() };
        filled.Size = out.Size;
        filled.Type = wdf_type(p.kind);
        match p.kind {
            RequestType::Read => {
                filled.Parameters.Read.Length = p.output_length;
                filled.Parameters.Read.DeviceOffset = i64::try_from(p.offset).unwrap_or(0);
            }
            RequestType::Write => {
                filled.Parameters.Write.Length = p.input_length;
                filled.Parameters.Write.DeviceOffset = i64::try_from(p.offset).unwrap_or(0);
            }
            RequestType::DeviceControl | RequestType::InternalDeviceControl => {
                filled.Parameters.DeviceIoControl.OutputBufferLength = p.output_length;
                filled.Parameters.DeviceIoControl.InputBufferLength = p.input_length;
                filled.Parameters.DeviceIoControl.IoControlCode = p.ioctl_code;
            }
            RequestType::Create => {
                let administrator = peek(&object, |r| {
                    r.is_some_and(Request::is_requestor_administrator)
                });
                let mut state = lock(&payload(&object).state);
                let security = state
                    .security
                    .get_or_insert_with(|| CreateSecurity::new(administrator));
                filled.Parameters.Create.SecurityContext = &raw mut security.context;
            }
            RequestType::Cleanup | RequestType::Close => {}
        }
        *out = filled;
    });
}

/// The buffer `output` selects of a received request, or of a driver-created one (its memory).
fn retrieve_buffer(
    request: WDFREQUEST,
    output: bool,
    min_len: usize,
    routine: &str,
) -> Result<(*mut u8, usize), Status> {
    let object = expect(request, routine);
    let p = payload(&object);
    if p.created {
        let range = lock(&p.state)
            .format
            .and_then(|f| if output { f.output } else { f.input })
            .ok_or(Status::INVALID_DEVICE_REQUEST)?;
        if range.length == 0 || range.length < min_len {
            return Err(Status::BUFFER_TOO_SMALL);
        }
        let (ptr, _) = memory::region_of(range.memory, routine);
        return Ok((ptr.wrapping_add(range.offset), range.length));
    }
    let (buffer, length) = host_buffer(&object, output, min_len, routine)?;
    Ok((buffer.ptr(), length))
}

fn retrieve_buffer_out(
    request: WDFREQUEST,
    output: bool,
    min_len: usize,
    buffer: *mut PVOID,
    length: *mut usize,
    routine: &str,
) -> NTSTATUS {
    if buffer.is_null() {
        return Status::INVALID_PARAMETER.0;
    }
    match retrieve_buffer(request, output, min_len, routine) {
        Ok((ptr, len)) => {
            // SAFETY: the driver's out parameters (`Buffer` checked; `Length` optional).
            unsafe {
                buffer.write(ptr.cast());
                if !length.is_null() {
                    length.write(len);
                }
            }
            STATUS_SUCCESS
        }
        Err(status) => {
            // SAFETY: as above.
            unsafe {
                buffer.write(core::ptr::null_mut());
                if !length.is_null() {
                    length.write(0);
                }
            }
            status.0
        }
    }
}

/// `WdfRequestRetrieveInputBuffer`: the input buffer (a host copy valid until completion; with
/// `METHOD_BUFFERED` the same block as the output buffer).
extern "win64" fn wdf_request_retrieve_input_buffer(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    min_len: usize,
    buffer: *mut PVOID,
    length: *mut usize,
) -> NTSTATUS {
    guard("WdfRequestRetrieveInputBuffer", || {
        retrieve_buffer_out(
            request,
            false,
            min_len,
            buffer,
            length,
            "WdfRequestRetrieveInputBuffer",
        )
    })
}

/// `WdfRequestRetrieveOutputBuffer`: the output buffer; what the driver writes there reaches
/// the requester when it completes the request.
extern "win64" fn wdf_request_retrieve_output_buffer(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    min_len: usize,
    buffer: *mut PVOID,
    length: *mut usize,
) -> NTSTATUS {
    guard("WdfRequestRetrieveOutputBuffer", || {
        retrieve_buffer_out(
            request,
            true,
            min_len,
            buffer,
            length,
            "WdfRequestRetrieveOutputBuffer",
        )
    })
}

fn retrieve_memory(
    request: WDFREQUEST,
    output: bool,
    out: *mut WDFMEMORY,
    routine: &str,
) -> NTSTATUS {
    if out.is_null() {
        return Status::INVALID_PARAMETER.0;
    }
    let object = expect(request, routine);
    let p = payload(&object);
    let result = if p.created {
        lock(&p.state)
            .format
            .and_then(|f| if output { f.output } else { f.input })
            .map(|r| r.memory)
            .ok_or(Status::INVALID_DEVICE_REQUEST)
    } else {
        let cached = {
            let state = lock(&p.state);
            if output {
                state.output_memory
            } else {
                state.input_memory
            }
        };
        match cached {
            Some(memory) => Ok(memory),
            None => host_buffer(&object, output, 0, routine).and_then(|(buffer, length)| {
                let machine = crate::host::machine(routine);
                let memory = memory::wrap(&machine, buffer.ptr(), length, buffer, object.sim())
                    .ok_or(Status::INSUFFICIENT_RESOURCES)?;
                let mut state = lock(&p.state);
                if output {
                    state.output_memory = Some(memory);
                } else {
                    state.input_memory = Some(memory);
                }
                Ok(memory)
            }),
        }
    };
    match result {
        Ok(memory) => {
            // SAFETY: the driver's out parameter (checked non-null).
            unsafe { out.write(memory as WDFMEMORY) };
            STATUS_SUCCESS
        }
        Err(status) => {
            // SAFETY: as above.
            unsafe { out.write(core::ptr::null_mut()) };
            status.0
        }
    }
}

/// `WdfRequestRetrieveInputMemory`: a `WDFMEMORY` (child of the request) over the input buffer.
extern "win64" fn wdf_request_retrieve_input_memory(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    memory: *mut WDFMEMORY,
) -> NTSTATUS {
    guard("WdfRequestRetrieveInputMemory", || {
        retrieve_memory(request, false, memory, "WdfRequestRetrieveInputMemory")
    })
}

/// `WdfRequestRetrieveOutputMemory`: a `WDFMEMORY` (child of the request) over the output
/// buffer.
extern "win64" fn wdf_request_retrieve_output_memory(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    memory: *mut WDFMEMORY,
) -> NTSTATUS {
    guard("WdfRequestRetrieveOutputMemory", || {
        retrieve_memory(request, true, memory, "WdfRequestRetrieveOutputMemory")
    })
}

/// `WdfRequestSetInformation`.
extern "win64" fn wdf_request_set_information(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    information: ULONG_PTR,
) {
    guard("WdfRequestSetInformation", || {
        let object = expect(request, "WdfRequestSetInformation");
        let information = usize::try_from(information).unwrap_or(usize::MAX);
        let mut state = lock(&payload(&object).state);
        match state.sim.as_ref() {
            Some(sim) => sim.set_information(information),
            None => state.information = information,
        }
    });
}

/// `WdfRequestGetInformation`.
extern "win64" fn wdf_request_get_information(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> ULONG_PTR {
    guard("WdfRequestGetInformation", || {
        let object = expect(request, "WdfRequestGetInformation");
        let state = lock(&payload(&object).state);
        let information = match state.sim.as_ref().or(state.sent.as_deref()) {
            Some(sim) => sim.information(),
            None => state.information,
        };
        u64::try_from(information).unwrap_or(u64::MAX)
    })
}

/// `WdfRequestGetStatus`: the status of the last completion (`STATUS_PENDING` while sent), or
/// of a send that failed.
extern "win64" fn wdf_request_get_status(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> NTSTATUS {
    guard("WdfRequestGetStatus", || {
        let object = expect(request, "WdfRequestGetStatus");
        let state = lock(&payload(&object).state);
        match state.sim.as_ref().or(state.sent.as_deref()) {
            Some(sim) => sim.status().0,
            None => state.status.0,
        }
    })
}

/// `WdfRequestGetFileObject`: the `WDFFILEOBJECT` the request was sent on, or null.
extern "win64" fn wdf_request_get_file_object(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> WDFFILEOBJECT {
    guard("WdfRequestGetFileObject", || {
        let object = expect(request, "WdfRequestGetFileObject");
        let file = peek(&object, |r| r.and_then(Request::file_object));
        file.and_then(|f| super::fileobject::handle_of(&f))
            .map_or(core::ptr::null_mut(), |h| h as WDFFILEOBJECT)
    })
}

/// `WdfRequestGetRequestorMode`: `UserMode` for an application's request, else `KernelMode`.
extern "win64" fn wdf_request_get_requestor_mode(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> KPROCESSOR_MODE {
    guard("WdfRequestGetRequestorMode", || {
        let object = expect(request, "WdfRequestGetRequestorMode");
        let mode = peek(&object, |r| r.map(Request::requestor_mode));
        let mode = if mode == Some(RequestorMode::User) {
            UserMode
        } else {
            KernelMode
        };
        KPROCESSOR_MODE::try_from(mode).unwrap_or_default()
    })
}

/// `WdfRequestGetIoQueue`: the queue that presented the request (null for a driver-created
/// one).
extern "win64" fn wdf_request_get_io_queue(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> WDFQUEUE {
    guard("WdfRequestGetIoQueue", || {
        let object = expect(request, "WdfRequestGetIoQueue");
        let queue = lock(&payload(&object).state).queue;
        queue.map_or(core::ptr::null_mut(), |q| q as WDFQUEUE)
    })
}

/// `WdfRequestForwardToIoQueue`.
///
/// Errors: kmdf-sim's (`STATUS_INVALID_DEVICE_REQUEST` for a request the driver does not own,
/// that is cancelable or a queue of another device; `STATUS_INVALID_DEVICE_STATE` for a queue
/// that does not accept requests).
extern "win64" fn wdf_request_forward_to_io_queue(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    destination: WDFQUEUE,
) -> NTSTATUS {
    guard("WdfRequestForwardToIoQueue", || {
        let object = expect(request, "WdfRequestForwardToIoQueue");
        let queue = queue::sim_of(destination as Handle, "WdfRequestForwardToIoQueue");
        let sim = take(&object, "WdfRequestForwardToIoQueue");
        match sim.forward_to_queue(&queue) {
            Ok(()) => STATUS_SUCCESS,
            Err((sim, status)) => {
                put_back(&object, sim);
                status.0
            }
        }
    })
}

/// `WdfRequestRequeue`: back to the head of the queue that presented it.
extern "win64" fn wdf_request_requeue(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> NTSTATUS {
    guard("WdfRequestRequeue", || {
        let object = expect(request, "WdfRequestRequeue");
        let sim = take(&object, "WdfRequestRequeue");
        match sim.requeue() {
            Ok(()) => STATUS_SUCCESS,
            Err((sim, status)) => {
                put_back(&object, sim);
                status.0
            }
        }
    })
}

/// Marks the request cancelable with the driver's `EvtRequestCancel`.
fn mark_cancelable(object: &Arc<Object>, cancel: PFN_WDF_REQUEST_CANCEL, routine: &str) -> Status {
    let Some(cancel) = cancel else {
        return Status::INVALID_PARAMETER;
    };
    let handle = object.handle();
    let state = lock(&payload(object).state);
    let Some(sim) = state.sim.as_ref() else {
        drop(state);
        not_owned(object, routine);
    };
    sim.mark_cancelable(move |request| {
        let Some(object) = objects::get(handle) else {
            return;
        };
        // The cancel routine's handle becomes the driver's (it completes the request).
        put_back(&object, request);
        // SAFETY: the driver's `EVT_WDF_REQUEST_CANCEL`, with the request it marked.
        unsafe { cancel(handle as WDFREQUEST) };
    })
}

/// `WdfRequestMarkCancelable`: as `…Ex`, but a request already cancelled gets its cancel routine
/// called at once.
extern "win64" fn wdf_request_mark_cancelable(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    cancel: PFN_WDF_REQUEST_CANCEL,
) {
    guard("WdfRequestMarkCancelable", || {
        let object = expect(request, "WdfRequestMarkCancelable");
        let status = mark_cancelable(&object, cancel, "WdfRequestMarkCancelable");
        if status == Status::CANCELLED {
            if let Some(cancel) = cancel {
                // SAFETY: the driver's `EVT_WDF_REQUEST_CANCEL` for a request already
                // cancelled, which it owns.
                unsafe { cancel(request) };
            }
        }
    });
}

/// `WdfRequestMarkCancelableEx`: `STATUS_CANCELLED` (routine not called) for a request already
/// cancelled.
extern "win64" fn wdf_request_mark_cancelable_ex(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    cancel: PFN_WDF_REQUEST_CANCEL,
) -> NTSTATUS {
    guard("WdfRequestMarkCancelableEx", || {
        let object = expect(request, "WdfRequestMarkCancelableEx");
        mark_cancelable(&object, cancel, "WdfRequestMarkCancelableEx").0
    })
}

/// `WdfRequestUnmarkCancelable`: `STATUS_CANCELLED` when the cancel routine already runs (it
/// completes the request).
extern "win64" fn wdf_request_unmark_cancelable(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> NTSTATUS {
    guard("WdfRequestUnmarkCancelable", || {
        let object = expect(request, "WdfRequestUnmarkCancelable");
        let state = lock(&payload(&object).state);
        match state.sim.as_ref() {
            Some(sim) => sim.unmark_cancelable().0,
            None => Status::INVALID_DEVICE_REQUEST.0,
        }
    })
}

/// `WdfRequestIsCanceled`.
extern "win64" fn wdf_request_is_canceled(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> BOOLEAN {
    guard("WdfRequestIsCanceled", || {
        let object = expect(request, "WdfRequestIsCanceled");
        BOOLEAN::from(peek(&object, |r| r.is_some_and(Request::is_canceled)))
    })
}

/// `WdfRequestStopAcknowledge` from `EvtIoStop`.
extern "win64" fn wdf_request_stop_acknowledge(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    requeue: BOOLEAN,
) {
    guard("WdfRequestStopAcknowledge", || {
        let object = expect(request, "WdfRequestStopAcknowledge");
        let sim = take(&object, "WdfRequestStopAcknowledge");
        sim.stop_acknowledge(requeue != 0);
        if requeue == 0 {
            put_back(&object, sim);
        }
    });
}

/// `WdfRequestCreate`: a request the driver formats and sends (default parent: the driver).
///
/// Errors: `STATUS_INVALID_PARAMETER` for a null `Request`; the attributes' errors.
extern "win64" fn wdf_request_create(
    globals: PWDF_DRIVER_GLOBALS,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    _io_target: WDFIOTARGET,
    request: *mut WDFREQUEST,
) -> NTSTATUS {
    guard("WdfRequestCreate", || {
        if request.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        let driver = driver::of_globals(globals, "WdfRequestCreate");
        // SAFETY: the routine's contract: null or the driver's attributes for the call.
        let attributes = match unsafe { Attributes::read(attributes) } {
            Ok(a) => a,
            Err(status) => return status.0,
        };
        let pending = match objects::begin("WDFREQUEST", attributes) {
            Ok(p) => p,
            Err(status) => return status.0,
        };
        let attrs = pending.sim_attributes("WdfRequestCreate", Some(driver.sim.object()));
        let Some(machine) = driver.sim.machine() else {
            return Status::INVALID_DEVICE_STATE.0;
        };
        let sim = match WdfObject::create(&machine, "WDFREQUEST", attrs) {
            Ok(sim) => sim,
            Err(status) => return status.0,
        };
        let object = pending.finish(sim, RequestPayload::new(true, 0, None));
        // SAFETY: the driver's out parameter (checked non-null).
        unsafe { request.write(object.as_handle()) };
        STATUS_SUCCESS
    })
}

/// Records a `WdfIoTargetFormatRequestFor…` on `request` ([`super::target`]).
///
/// Errors: `STATUS_INVALID_DEVICE_REQUEST` for a delivered request (the host formats only
/// driver-created ones) or one that is sent.
pub(crate) fn set_format(request: WDFREQUEST, format: Format, routine: &str) -> Result<(), Status> {
    let object = expect(request, routine);
    let p = payload(&object);
    if !p.created {
        return Err(Status::INVALID_DEVICE_REQUEST);
    }
    let mut state = lock(&p.state);
    if state.sent.is_some() {
        return Err(Status::INVALID_DEVICE_STATE);
    }
    state.format = Some(format);
    Ok(())
}

/// `WdfRequestReuse`: a driver-created request back from its target is reset (status from
/// `WDF_REQUEST_REUSE_PARAMS`, information 0, completion routine cleared) to be formatted and
/// sent again.
///
/// Errors: `STATUS_INFO_LENGTH_MISMATCH` for params of the wrong size;
/// `STATUS_INVALID_DEVICE_STATE` while it is sent; `STATUS_NOT_SUPPORTED` for
/// `WDF_REQUEST_REUSE_SET_NEW_IRP` (no IRPs on the host).
extern "win64" fn wdf_request_reuse(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    params: PWDF_REQUEST_REUSE_PARAMS,
) -> NTSTATUS {
    guard("WdfRequestReuse", || {
        let object = expect(request, "WdfRequestReuse");
        if params.is_null() {
            return Status::INVALID_PARAMETER.0;
        }
        // SAFETY: the driver's WDF_REQUEST_REUSE_PARAMS for the call (checked non-null).
        let params: WDF_REQUEST_REUSE_PARAMS = unsafe { params.read() };
        if params.Size as usize != size_of::<WDF_REQUEST_REUSE_PARAMS>() {
            return STATUS_INFO_LENGTH_MISMATCH;
        }
        if params.Flags
            & super::bindings::_WDF_REQUEST_REUSE_FLAGS::WDF_REQUEST_REUSE_SET_NEW_IRP as u32
            != 0
        {
            return Status::NOT_SUPPORTED.0;
        }
        let p = payload(&object);
        let mut state = lock(&p.state);
        if state.sent.is_some() {
            return Status::INVALID_DEVICE_STATE.0;
        }
        let result = match state.sim.as_ref() {
            Some(sim) => sim.reuse(Status(params.Status)),
            None if p.created => Ok(()),
            None => Err(Status::INVALID_DEVICE_STATE),
        };
        if let Err(status) = result {
            return status.0;
        }
        state.status = Status(params.Status);
        state.information = 0;
        state.routine = None;
        state.context = 0;
        state.params = Params::new();
        STATUS_SUCCESS
    })
}

/// `WdfRequestSetCompletionRoutine`: called when the target completes the request sent next
/// (null removes it).
extern "win64" fn wdf_request_set_completion_routine(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    routine: PFN_WDF_REQUEST_COMPLETION_ROUTINE,
    context: WDFCONTEXT,
) {
    guard("WdfRequestSetCompletionRoutine", || {
        let object = expect(request, "WdfRequestSetCompletionRoutine");
        let mut state = lock(&payload(&object).state);
        state.routine = routine;
        state.context = context as usize;
    });
}

/// `WdfRequestGetCompletionParams`: a copy of the last completion's parameters.
extern "win64" fn wdf_request_get_completion_params(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    params: PWDF_REQUEST_COMPLETION_PARAMS,
) {
    guard("WdfRequestGetCompletionParams", || {
        let object = expect(request, "WdfRequestGetCompletionParams");
        if params.is_null() {
            return;
        }
        let state = lock(&payload(&object).state);
        // SAFETY: the driver's WDF_REQUEST_COMPLETION_PARAMS (checked non-null).
        unsafe { params.write(*state.params.0) };
    });
}

/// `WdfRequestFormatRequestUsingCurrentType`: the request goes on with its own parameters.
extern "win64" fn wdf_request_format_request_using_current_type(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) {
    guard("WdfRequestFormatRequestUsingCurrentType", || {
        let object = expect(request, "WdfRequestFormatRequestUsingCurrentType");
        peek(&object, |r| {
            if let Some(r) = r {
                r.format_using_current_type();
            }
        });
    });
}

/// `WDF_REQUEST_SEND_OPTIONS`, read.
struct SendFlags {
    options: SendOptions,
    synchronous: bool,
}

/// Reads the driver's send options.
///
/// # Safety
/// `options` is null or points to the driver's `WDF_REQUEST_SEND_OPTIONS` for the call.
unsafe fn send_flags(options: PWDF_REQUEST_SEND_OPTIONS) -> Result<SendFlags, Status> {
    let mut flags = SendFlags {
        options: SendOptions::default(),
        synchronous: false,
    };
    if options.is_null() {
        return Ok(flags);
    }
    // SAFETY: the caller's contract.
    let o: WDF_REQUEST_SEND_OPTIONS = unsafe { options.read() };
    if o.Size as usize != size_of::<WDF_REQUEST_SEND_OPTIONS>() {
        return Err(Status(STATUS_INFO_LENGTH_MISMATCH));
    }
    let has = |flag: i32| o.Flags & (flag as u32) != 0;
    flags.options.send_and_forget = has(WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET);
    flags.options.ignore_target_state = has(WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE);
    flags.synchronous = has(WDF_REQUEST_SEND_OPTION_SYNCHRONOUS);
    if has(WDF_REQUEST_SEND_OPTION_TIMEOUT) && o.Timeout != 0 {
        flags.options.timeout = Some(timeout_of(o.Timeout));
    }
    Ok(flags)
}

/// A WDF timeout (100-ns units; negative: relative, positive: absolute system time, taken
/// here from the machine's boot) as a virtual-clock duration.
pub(crate) fn timeout_of(timeout: i64) -> Duration {
    let ticks = if timeout < 0 {
        timeout.unsigned_abs()
    } else {
        let now = crate::host::machine("WDF_REQUEST_SEND_OPTIONS").now();
        let now = u64::try_from(now.as_nanos() / 100).unwrap_or(u64::MAX);
        timeout.unsigned_abs().saturating_sub(now)
    };
    Duration::from_nanos(ticks.saturating_mul(100))
}

/// `WdfRequestSend`: TRUE when the request reached the target (synchronously: when it completed
/// with success); otherwise FALSE and `WdfRequestGetStatus` says why.
extern "win64" fn wdf_request_send(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    target: WDFIOTARGET,
    options: PWDF_REQUEST_SEND_OPTIONS,
) -> BOOLEAN {
    guard("WdfRequestSend", || {
        let object = expect(request, "WdfRequestSend");
        let target_sim = target::sim_of(target as Handle, "WdfRequestSend");
        // SAFETY: the routine's contract: null or the driver's options for the call.
        let flags = match unsafe { send_flags(options) } {
            Ok(f) => f,
            Err(status) => {
                set_failed(&object, status);
                return 0;
            }
        };
        match send(&object, target as Handle, &target_sim, &flags) {
            Ok(()) => 1,
            Err(status) => {
                set_failed(&object, status);
                0
            }
        }
    })
}

/// A send that failed before the request left: the status `WdfRequestGetStatus` returns.
fn set_failed(object: &Object, status: Status) {
    let mut state = lock(&payload(object).state);
    if state.sim.is_none() {
        state.status = status;
    }
}

/// Sends the request (see the [module documentation](self)).
fn send(
    object: &Arc<Object>,
    target: Handle,
    target_sim: &IoTarget,
    flags: &SendFlags,
) -> Result<(), Status> {
    let p = payload(object);
    let handle = object.handle();
    let sim = if p.created {
        prepare_created(object, target_sim)?
    } else {
        take(object, "WdfRequestSend")
    };
    if !p.created {
        flush_output(&lock(&p.state), &sim);
    }
    if flags.synchronous {
        let status = sim.send_synchronously(target_sim, flags.options.timeout);
        let mut state = lock(&p.state);
        if !p.created {
            refresh_output(&state, &sim);
        }
        if let Some(format) = state.format.filter(|_| p.created) {
            deliver_output(&format, &sim);
        }
        state.sim = Some(sim);
        drop(state);
        return if status.is_success() {
            Ok(())
        } else {
            Err(status)
        };
    }
    let forget = flags.options.send_and_forget;
    // Set (under the request's lock) when this send comes back: a completion that runs before
    // `send` returns finds no `sent` handle to drop, and this send must not leave one.
    let back = Arc::new(AtomicBool::new(false));
    if !forget {
        let back = Arc::clone(&back);
        sim.set_completion_routine(move |returned, params| {
            on_completion(handle, target, &back, returned, params);
        });
    }
    match sim.send(target_sim, flags.options) {
        Ok(()) => {
            if forget {
                drop(sim);
                retire(object);
            } else {
                let mut state = lock(&p.state);
                if back.load(Ordering::SeqCst) {
                    drop(state);
                    drop(sim);
                } else {
                    state.sent = Some(Arc::new(sim));
                }
            }
            Ok(())
        }
        Err(status) => {
            put_back(object, sim);
            Err(status)
        }
    }
}

/// A driver-created request about to be sent: its kmdf-sim request (made on first send, by the
/// target's device) formatted from the driver's memory now.
fn prepare_created(object: &Object, target_sim: &IoTarget) -> Result<Request, Status> {
    let p = payload(object);
    let (format, existing) = {
        let mut state = lock(&p.state);
        if state.sent.is_some() {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        (state.format, state.sim.take())
    };
    let Some(format) = format else {
        if let Some(sim) = existing {
            put_back(object, sim);
        }
        return Err(Status::INVALID_DEVICE_REQUEST);
    };
    let sim = if let Some(sim) = existing {
        sim
    } else {
        let owner = target_sim.owner().ok_or(Status::INVALID_DEVICE_STATE)?;
        let created = Request::create(&owner)?;
        lock(&p.state).owner = Some(owner.object().clone());
        created
    };
    let input = format.input.map(|r| r.read()).unwrap_or_default();
    let output_len = format.output.map_or(0, |r| r.length);
    let offset = u64::try_from(format.device_offset).unwrap_or(0);
    let formatted = match format.kind {
        FormatKind::Read => sim.format_for_read(output_len, offset),
        FormatKind::Write => sim.format_for_write(&input, offset),
        FormatKind::Ioctl(code) => sim.format_for_ioctl(code, &input, output_len),
        FormatKind::InternalIoctl(code) => sim.format_for_internal_ioctl(code, &input, output_len),
    };
    if let Err(status) = formatted {
        put_back(object, sim);
        return Err(status);
    }
    Ok(sim)
}

/// The output of a driver-created request lands in the driver's output memory: `Information`
/// bytes at its offset.
fn deliver_output(format: &Format, sim: &Request) {
    let Some(range) = format.output else {
        return;
    };
    let information = sim.information();
    let bytes = sim.output();
    range.write(&bytes[..information.min(bytes.len())]);
}

/// kmdf-sim gives a sent request back: the host state is brought up to date and the driver's
/// completion routine runs (or, for a delivered request sent without one, the framework
/// completes it on the driver's behalf).
fn on_completion(
    handle: Handle,
    target: Handle,
    back: &AtomicBool,
    returned: Request,
    params: CompletionParams,
) {
    let Some(object) = objects::get(handle) else {
        // The driver deleted the request while it was sent: nothing to tell.
        return;
    };
    let p = payload(&object);
    let (routine, context, params_ptr) = {
        let mut state = lock(&p.state);
        back.store(true, Ordering::SeqCst);
        let sent = state.sent.take();
        let kind = if p.created {
            let format = state.format;
            if let Some(format) = &format {
                deliver_output(format, &returned);
            }
            format.map(|f| f.kind)
        } else {
            refresh_output(&state, &returned);
            None
        };
        let request_type = match (kind, returned.parameters()) {
            (Some(FormatKind::Read), _) => WdfRequestTypeRead,
            (Some(FormatKind::Write), _) => WdfRequestTypeWrite,
            (Some(FormatKind::Ioctl(_)), _) => WdfRequestTypeDeviceControl,
            (Some(FormatKind::InternalIoctl(_)), _) => WdfRequestTypeDeviceControlInternal,
            (None, p) => wdf_type(p.kind),
        };
        fill_params(&mut state, request_type, &returned, params);
        let params_ptr: *mut WDF_REQUEST_COMPLETION_PARAMS = &raw mut *state.params.0;
        let routine = state.routine;
        let context = state.context;
        if routine.is_some() || p.created {
            state.sim = Some(returned);
            drop(state);
            drop(sent);
            (routine, context, params_ptr)
        } else {
            drop(state);
            drop(sent);
            // No completion routine: the framework completes it for the driver.
            returned.complete_with_information(params.status, params.information);
            retire(&object);
            return;
        }
    };
    if let Some(routine) = routine {
        // SAFETY: the driver's `EVT_WDF_REQUEST_COMPLETION_ROUTINE` with the request it sent,
        // the target it sent it to, parameters that live in the request's payload (valid until
        // the request is reused or deleted) and its own context.
        unsafe {
            routine(
                handle as WDFREQUEST,
                target as WDFIOTARGET,
                params_ptr,
                context as WDFCONTEXT,
            );
        }
    }
}

/// Fills `WDF_REQUEST_COMPLETION_PARAMS` for a completion.
fn fill_params(
    state: &mut State,
    request_type: WDF_REQUEST_TYPE,
    request: &Request,
    done: CompletionParams,
) {
    let mut p = Params::new();
    let out = &mut *p.0;
    out.Type = request_type;
    out.IoStatus.__bindgen_anon_1.Status = done.status.0;
    out.IoStatus.Information = u64::try_from(done.information).unwrap_or(u64::MAX);
    let null: WDFMEMORY = core::ptr::null_mut();
    let (input, output) = match state.format {
        Some(f) => (
            f.input
                .map_or((null, 0), |r| (r.memory as WDFMEMORY, r.offset)),
            f.output
                .map_or((null, 0), |r| (r.memory as WDFMEMORY, r.offset)),
        ),
        None => (
            (state.input_memory.map_or(null, |m| m as WDFMEMORY), 0),
            (state.output_memory.map_or(null, |m| m as WDFMEMORY), 0),
        ),
    };
    let params = request.parameters();
    match params.kind {
        RequestType::Read => {
            out.Parameters.Read.Buffer = output.0;
            out.Parameters.Read.Offset = output.1;
            out.Parameters.Read.Length = done.information;
        }
        RequestType::Write => {
            out.Parameters.Write.Buffer = input.0;
            out.Parameters.Write.Offset = input.1;
            out.Parameters.Write.Length = done.information;
        }
        RequestType::DeviceControl | RequestType::InternalDeviceControl => {
            out.Parameters.Ioctl.IoControlCode = params.ioctl_code;
            out.Parameters.Ioctl.Input.Buffer = input.0;
            out.Parameters.Ioctl.Input.Offset = input.1;
            out.Parameters.Ioctl.Output.Buffer = output.0;
            out.Parameters.Ioctl.Output.Offset = output.1;
            out.Parameters.Ioctl.Output.Length = done.information;
        }
        RequestType::Create | RequestType::Cleanup | RequestType::Close => {}
    }
    state.params = p;
}

/// `WdfRequestAllocateTimer`: KMDF allocates the timer of a later send with
/// `WDF_REQUEST_SEND_OPTION_TIMEOUT` ahead of time so that the send cannot fail for want of
/// memory; kmdf-sim makes that timer when the request is sent, so there is nothing to allocate.
extern "win64" fn wdf_request_allocate_timer(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> NTSTATUS {
    guard("WdfRequestAllocateTimer", || {
        let _ = expect(request, "WdfRequestAllocateTimer");
        STATUS_SUCCESS
    })
}

/// `WdfRequestCancelSentRequest`: TRUE if a cancellation reached the request where it is.
extern "win64" fn wdf_request_cancel_sent_request(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> BOOLEAN {
    guard("WdfRequestCancelSentRequest", || {
        let object = expect(request, "WdfRequestCancelSentRequest");
        let sent = lock(&payload(&object).state).sent.clone();
        BOOLEAN::from(sent.is_some_and(|s| s.cancel_sent_request()))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    //! A test driver whose default queue echoes IOCTLs, reads and writes through the C ABI, an
    //! application talking to it, and driver-created requests sent to it.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use kmdf_sim::guid::Guid;
    use kmdf_sim::io::{Access, AppConfig, Application};

    use super::super::bindings::_WDF_IO_QUEUE_DISPATCH_TYPE as dispatch_type;
    use super::super::bindings::_WDF_TRI_STATE::WdfUseDefault;
    use super::super::bindings::{
        GUID, PFN_WDFDEVICECREATE, PFN_WDFDEVICECREATEDEVICEINTERFACE, PWDFDEVICE_INIT, WDFDEVICE,
        WDFDRIVER, WDF_IO_QUEUE_CONFIG,
    };
    use super::super::device::testing::{wdf, TestDriver};
    use super::*;

    /// The interface of the test device.
    pub(crate) const GUID_ECHO: Guid =
        Guid::new(0x4856_494F, 0x0001, 0x0002, [3, 4, 5, 6, 7, 8, 9, 10]);
    /// Echoes the input, each byte inverted (`METHOD_BUFFERED`).
    pub(crate) const IOCTL_INVERT: u32 = (0x22 << 16) | (0x800 << 2);
    /// Asks for a 100-byte output buffer: fails with what `WdfRequestRetrieveOutputBuffer` said.
    pub(crate) const IOCTL_TOO_SMALL: u32 = (0x22 << 16) | (0x801 << 2);
    /// Parks the request in the manual queue.
    pub(crate) const IOCTL_PARK: u32 = (0x22 << 16) | (0x802 << 2);

    /// The manual queue of the last test device.
    pub(crate) static MANUAL: AtomicUsize = AtomicUsize::new(0);
    /// The last test device.
    pub(crate) static DEVICE: AtomicUsize = AtomicUsize::new(0);
    /// Serialises the tests that use the statics above.
    pub(crate) static SERIAL: Mutex<()> = Mutex::new(());

    const NO_GLOBALS: PWDF_DRIVER_GLOBALS = core::ptr::null_mut();

    pub(crate) fn queue_config(dispatch: i32, default: bool) -> WDF_IO_QUEUE_CONFIG {
        // SAFETY: plain data; WDF_IO_QUEUE_CONFIG_INIT zeroes it first.
        let mut c: WDF_IO_QUEUE_CONFIG = unsafe { core::mem::zeroed() };
        c.Size = u32::try_from(size_of::<WDF_IO_QUEUE_CONFIG>()).unwrap();
        c.DispatchType = dispatch;
        c.PowerManaged = WdfUseDefault;
        c.DefaultQueue = u8::from(default);
        c.Settings.Parallel.NumberOfPresentedRequests = u32::MAX;
        c
    }

    extern "win64" fn evt_io_device_control(
        _queue: WDFQUEUE,
        request: WDFREQUEST,
        output_length: usize,
        input_length: usize,
        code: u32,
    ) {
        // SAFETY: plain data; WDF_REQUEST_PARAMETERS_INIT.
        let mut p: WDF_REQUEST_PARAMETERS = unsafe { core::mem::zeroed() };
        p.Size = u16::try_from(size_of::<WDF_REQUEST_PARAMETERS>()).unwrap();
        wdf_request_get_parameters(NO_GLOBALS, request, &raw mut p);
        assert_eq!(p.Type, WdfRequestTypeDeviceControl);
        // SAFETY: the DeviceIoControl member of an IOCTL's parameters.
        unsafe {
            assert_eq!(p.Parameters.DeviceIoControl.IoControlCode, code);
            assert_eq!(p.Parameters.DeviceIoControl.InputBufferLength, input_length);
            assert_eq!(
                p.Parameters.DeviceIoControl.OutputBufferLength,
                output_length
            );
        }
        let mut input: PVOID = core::ptr::null_mut();
        let mut output: PVOID = core::ptr::null_mut();
        let (mut in_len, mut out_len) = (0_usize, 0_usize);
        match code {
            IOCTL_INVERT => {
                let s = wdf_request_retrieve_input_buffer(
                    NO_GLOBALS,
                    request,
                    1,
                    &raw mut input,
                    &raw mut in_len,
                );
                assert_eq!(s, STATUS_SUCCESS);
                let s = wdf_request_retrieve_output_buffer(
                    NO_GLOBALS,
                    request,
                    in_len,
                    &raw mut output,
                    &raw mut out_len,
                );
                assert_eq!(s, STATUS_SUCCESS);
                // METHOD_BUFFERED: one system buffer.
                assert_eq!(input, output);
                for i in 0..in_len {
                    // SAFETY: the system buffer holds max(in, out) >= in_len bytes.
                    unsafe { *output.cast::<u8>().add(i) = !*input.cast::<u8>().add(i) };
                }
                wdf_request_complete_with_information(
                    NO_GLOBALS,
                    request,
                    STATUS_SUCCESS,
                    in_len as u64,
                );
            }
            IOCTL_TOO_SMALL => {
                let s = wdf_request_retrieve_output_buffer(
                    NO_GLOBALS,
                    request,
                    100,
                    &raw mut output,
                    &raw mut out_len,
                );
                assert!(output.is_null());
                wdf_request_complete(NO_GLOBALS, request, s);
            }
            IOCTL_PARK => {
                let manual = MANUAL.load(Ordering::SeqCst);
                let s = wdf_request_forward_to_io_queue(NO_GLOBALS, request, manual as WDFQUEUE);
                assert_eq!(s, STATUS_SUCCESS);
            }
            _ => wdf_request_complete(NO_GLOBALS, request, Status::INVALID_DEVICE_REQUEST.0),
        }
    }

    extern "win64" fn evt_io_read(queue: WDFQUEUE, request: WDFREQUEST, length: usize) {
        assert_eq!(wdf_request_get_io_queue(NO_GLOBALS, request), queue);
        let mut memory: WDFMEMORY = core::ptr::null_mut();
        let s = wdf_request_retrieve_output_memory(NO_GLOBALS, request, &raw mut memory);
        assert_eq!(s, STATUS_SUCCESS);
        let data: Vec<u8> = (0..length)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let copy: super::super::bindings::PFN_WDFMEMORYCOPYFROMBUFFER =
            wdf("WdfMemoryCopyFromBuffer");
        // SAFETY: the request's output memory and a local buffer of `length` bytes.
        let s = unsafe {
            copy.unwrap()(
                NO_GLOBALS,
                memory,
                0,
                data.as_ptr().cast_mut().cast(),
                length,
            )
        };
        assert_eq!(s, STATUS_SUCCESS);
        wdf_request_set_information(NO_GLOBALS, request, length as u64);
        assert_eq!(
            wdf_request_get_information(NO_GLOBALS, request),
            length as u64
        );
        wdf_request_complete(NO_GLOBALS, request, STATUS_SUCCESS);
    }

    /// `EvtDriverDeviceAdd` of the echo driver: a device with the echo interface, a parallel
    /// default queue and a manual queue.
    pub(crate) fn echo_device_add(
        globals: PWDF_DRIVER_GLOBALS,
        _driver: WDFDRIVER,
        init: PWDFDEVICE_INIT,
    ) -> NTSTATUS {
        let create: PFN_WDFDEVICECREATE = wdf("WdfDeviceCreate");
        let interface: PFN_WDFDEVICECREATEDEVICEINTERFACE = wdf("WdfDeviceCreateDeviceInterface");
        let mut init = init;
        let mut device: WDFDEVICE = core::ptr::null_mut();
        // SAFETY: live locals; the init of this device add.
        let s = unsafe {
            create.unwrap()(
                globals,
                &raw mut init,
                core::ptr::null_mut(),
                &raw mut device,
            )
        };
        assert_eq!(s, STATUS_SUCCESS);
        let guid = GUID {
            Data1: GUID_ECHO.data1,
            Data2: GUID_ECHO.data2,
            Data3: GUID_ECHO.data3,
            Data4: GUID_ECHO.data4,
        };
        // SAFETY: live locals.
        let s = unsafe { interface.unwrap()(globals, device, &raw const guid, core::ptr::null()) };
        assert_eq!(s, STATUS_SUCCESS);
        let mut config = queue_config(dispatch_type::WdfIoQueueDispatchParallel, true);
        config.EvtIoDeviceControl = Some(evt_io_device_control);
        config.EvtIoRead = Some(evt_io_read);
        let mut queue: WDFQUEUE = core::ptr::null_mut();
        let s = queue::tests::create_queue(globals, device, &mut config, &mut queue);
        assert_eq!(s, STATUS_SUCCESS);
        let mut manual = queue_config(dispatch_type::WdfIoQueueDispatchManual, false);
        let mut mq: WDFQUEUE = core::ptr::null_mut();
        let s = queue::tests::create_queue(globals, device, &mut manual, &mut mq);
        assert_eq!(s, STATUS_SUCCESS);
        MANUAL.store(mq as usize, Ordering::SeqCst);
        DEVICE.store(device as usize, Ordering::SeqCst);
        STATUS_SUCCESS
    }

    fn link(driver: &TestDriver) -> String {
        kmdf_sim::interface::interfaces_of_class(&driver.machine, GUID_ECHO)
            .pop()
            .expect("the echo interface is enabled")
    }

    #[test]
    fn an_application_s_requests_reach_the_queue_and_complete_with_the_driver_s_buffers() {
        let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let driver = TestDriver::load("hioecho", echo_device_add);
        let (_node, _device) = driver.plug_in();
        let _bound = driver.machine.enter();
        let app = Application::new(&driver.machine, AppConfig::default());
        let handle = app.open(&link(&driver), Access::READ_WRITE).unwrap();

        // METHOD_BUFFERED: what the driver wrote in the (shared) system buffer comes back.
        let (out, n) = handle
            .device_io_control(IOCTL_INVERT, &[0x0F, 0xF0, 0x55], 3)
            .unwrap();
        assert_eq!((out, n), (vec![0xF0, 0x0F, 0xAA], 3));

        // A minimum the buffer does not meet: STATUS_BUFFER_TOO_SMALL from the retrieval.
        assert_eq!(
            handle.device_io_control(IOCTL_TOO_SMALL, &[], 4),
            Err(Status::BUFFER_TOO_SMALL)
        );

        // A read through the request's output WDFMEMORY and WdfRequestSetInformation.
        let data = handle.read(300).unwrap();
        assert_eq!(data.len(), 300);
        assert_eq!(data[260], 9);

        // Forwarded to the manual queue, retrieved from it and completed there.
        let pending = handle
            .device_io_control_overlapped(IOCTL_PARK, &[1], 1)
            .unwrap();
        assert!(!pending.is_complete());
        let manual = MANUAL.load(Ordering::SeqCst) as WDFQUEUE;
        let mut request: WDFREQUEST = core::ptr::null_mut();
        assert_eq!(queue::tests::retrieve(manual, &mut request), STATUS_SUCCESS);
        assert_eq!(wdf_request_get_io_queue(NO_GLOBALS, request), manual);
        assert_eq!(wdf_request_is_canceled(NO_GLOBALS, request), 0);
        assert_eq!(
            wdf_request_get_requestor_mode(NO_GLOBALS, request),
            i8::try_from(UserMode).unwrap()
        );
        assert!(!wdf_request_get_file_object(NO_GLOBALS, request).is_null());
        assert_eq!(
            wdf_request_get_status(NO_GLOBALS, request),
            Status::PENDING.0
        );
        let mut none: WDFREQUEST = core::ptr::null_mut();
        assert_eq!(
            queue::tests::retrieve(manual, &mut none),
            Status::NO_MORE_ENTRIES.0
        );
        assert!(none.is_null());
        wdf_request_complete_with_information(NO_GLOBALS, request, STATUS_SUCCESS, 1);
        assert_eq!(pending.result(), Some(Ok((vec![1], 1))));
        drop(handle);
        drop(pending);
        driver.machine.settle();
    }
}
