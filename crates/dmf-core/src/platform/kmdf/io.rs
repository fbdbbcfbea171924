//! Requests, queues, file objects, I/O targets and device-interface notifications on KMDF.
//!
//! Each method is one WDF (or I/O manager) call plus the conversion of handles, enums and
//! statuses. Closures live in object contexts and are reached from `extern "C"` trampolines:
//!
//! | Object | Context | Trampolines |
//! |---|---|---|
//! | `WDFQUEUE` | [`QueueState`] (the `QueueConfig`) | `EvtIoRead`/`Write`/`DeviceControl`/`InternalDeviceControl`/`Default`/`Stop`/`Resume`/`CanceledOnQueue` |
//! | `WDFREQUEST` (every one: `WdfDeviceInitSetRequestAttributes`, and those `WdfRequestCreate` makes) | [`RequestState`] (zero-valid) | `EvtRequestCancel`, `EvtRequestCompletionRoutine` |
//! | `WDFFILEOBJECT` | [`FileState`] (zero-valid) | `EvtDeviceFileCreate`, `EvtFileCleanup`, `EvtFileClose`, the file objects' `EvtCleanupCallback` (closures in the device context) |
//! | remote `WDFIOTARGET` | [`TargetState`] | `EvtIoTargetQueryRemove`/`RemoveCanceled`/`RemoveComplete` |
//! | PnP notification entry | the boxed closure (`Context`) | `DRIVER_NOTIFICATION_CALLBACK_ROUTINE` |
//!
//! A request's buffers for a driver-created request (`format_for_*`) are `WDFMEMORY` objects
//! parented to the request; formatting again deletes the previous ones, so a reused request does
//! not accumulate memory objects.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::mem::{offset_of, size_of};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use core::time::Duration;

use wdk_sys::{
    call_unsafe_wdf_function_binding, _IO_NOTIFICATION_EVENT_CATEGORY, _POOL_TYPE,
    _WDF_IO_TARGET_SENT_IO_ACTION, _WDF_IO_TARGET_STATE, _WDF_MEMORY_DESCRIPTOR_TYPE,
    _WDF_REQUEST_SEND_OPTIONS_FLAGS, _WDF_REQUEST_STOP_ACTION_FLAGS, _WDF_REQUEST_TYPE,
    DEVICE_INTERFACE_CHANGE_NOTIFICATION, NTSTATUS, NT_SUCCESS, PVOID,
    PWDF_REQUEST_COMPLETION_PARAMS, STATUS_SUCCESS, ULONG, WDFCONTEXT, WDFDEVICE, WDFFILEOBJECT,
    WDFIOTARGET, WDFMEMORY, WDFOBJECT, WDFQUEUE, WDFREQUEST, WDF_IO_TARGET_SENT_IO_ACTION,
    WDF_MEMORY_DESCRIPTOR, WDF_REQUEST_TYPE, WDF_TRI_STATE,
};

use super::device::{
    file_device, from_wdk_guid, to_ntstatus, to_wdk_guid, wdf_driver, with_device_state, Device,
};
use super::wdf::{
    as_object, boolean, context_type, io_queue_config_init, io_target_open_params_init, nt_result,
    object_attributes_init, object_attributes_with_context, relative_timeout,
    request_parameters_init, request_reuse_params_init, request_send_options_init,
    zeroed_context_type, TakeCell, UnicodeName, FALSE, USER_MODE, WDF_FALSE,
    WDF_IO_QUEUE_DISPATCH_MANUAL, WDF_IO_QUEUE_DISPATCH_PARALLEL, WDF_IO_QUEUE_DISPATCH_SEQUENTIAL,
    WDF_TRUE,
};
use crate::fallible::{try_box, try_to_vec, try_vec_filled};
use crate::platform::contract::device::Guid;
use crate::platform::contract::io::{
    CompletionParams, InterfaceChange, IoTargetState, PlatformFileObject, PlatformIoTarget,
    PlatformQueue, PlatformRequest, QueueConfig, QueueDispatch, RequestParameters, RequestType,
    RequestorMode, SendOptions, StopFlags, TargetFn, TargetOpenParams, TargetQueryRemoveFn,
};
use crate::platform::contract::{Irql, PlatformIrql, TraceLevel};
use crate::platform::nt::NtSpinLock;
use crate::status::{NtResult, NtStatus};

/// `NonPagedPoolNx` (`POOL_TYPE`), for `WdfMemoryCreate`.
const NON_PAGED_POOL_NX: wdk_sys::POOL_TYPE = _POOL_TYPE::NonPagedPoolNx;
/// The pool tag of request buffers (`'MfmD'` in C notation).
const MEMORY_TAG: ULONG = u32::from_le_bytes(*b"DmfM");
/// `WDF_REQUEST_SEND_OPTION_TIMEOUT` (`WDF_REQUEST_SEND_OPTIONS_FLAGS`, as the `ULONG` of `Flags`).
const SEND_OPTION_TIMEOUT: ULONG =
    _WDF_REQUEST_SEND_OPTIONS_FLAGS::WDF_REQUEST_SEND_OPTION_TIMEOUT.cast_unsigned();
/// `WDF_REQUEST_SEND_OPTION_SYNCHRONOUS`.
const SEND_OPTION_SYNCHRONOUS: ULONG =
    _WDF_REQUEST_SEND_OPTIONS_FLAGS::WDF_REQUEST_SEND_OPTION_SYNCHRONOUS.cast_unsigned();
/// `WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE`.
const SEND_OPTION_IGNORE_TARGET_STATE: ULONG =
    _WDF_REQUEST_SEND_OPTIONS_FLAGS::WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE.cast_unsigned();
/// `WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET`.
const SEND_OPTION_SEND_AND_FORGET: ULONG =
    _WDF_REQUEST_SEND_OPTIONS_FLAGS::WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET.cast_unsigned();
/// `WdfRequestStopActionPurge` (`WDF_REQUEST_STOP_ACTION_FLAGS`, as `EvtIoStop`'s `ULONG`).
const STOP_ACTION_PURGE: ULONG =
    _WDF_REQUEST_STOP_ACTION_FLAGS::WdfRequestStopActionPurge.cast_unsigned();
/// `WdfRequestStopRequestCancelable`.
const STOP_REQUEST_CANCELABLE: ULONG =
    _WDF_REQUEST_STOP_ACTION_FLAGS::WdfRequestStopRequestCancelable.cast_unsigned();
/// `GENERIC_READ`.
const GENERIC_READ: wdk_sys::ACCESS_MASK = wdk_sys::GENERIC_READ;
/// `GENERIC_WRITE`.
const GENERIC_WRITE: wdk_sys::ACCESS_MASK = wdk_sys::GENERIC_WRITE;
/// No `WDF_REQUEST_SEND_OPTIONS_FLAGS` bit (the header has no name for the empty set).
const NO_SEND_OPTIONS: ULONG = 0; // not a WDF/NT value: the empty flag set

/// The `WDF_REQUEST_TYPE` of a contract request type (the `IRP_MJ_*` codes).
pub(super) fn wdf_request_type(kind: RequestType) -> WDF_REQUEST_TYPE {
    match kind {
        RequestType::Create => _WDF_REQUEST_TYPE::WdfRequestTypeCreate,
        RequestType::Close => _WDF_REQUEST_TYPE::WdfRequestTypeClose,
        RequestType::Read => _WDF_REQUEST_TYPE::WdfRequestTypeRead,
        RequestType::Write => _WDF_REQUEST_TYPE::WdfRequestTypeWrite,
        RequestType::DeviceControl => _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControl,
        RequestType::InternalDeviceControl => {
            _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControlInternal
        }
        RequestType::Cleanup => _WDF_REQUEST_TYPE::WdfRequestTypeCleanup,
    }
}

/// The contract's request type of a `WDF_REQUEST_TYPE` value. Other major functions never reach
/// DMF's queues (they register only these seven); they are reported as internal IOCTLs.
fn request_type(value: WDF_REQUEST_TYPE) -> RequestType {
    match value {
        _WDF_REQUEST_TYPE::WdfRequestTypeCreate => RequestType::Create,
        _WDF_REQUEST_TYPE::WdfRequestTypeClose => RequestType::Close,
        _WDF_REQUEST_TYPE::WdfRequestTypeRead => RequestType::Read,
        _WDF_REQUEST_TYPE::WdfRequestTypeWrite => RequestType::Write,
        _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControl => RequestType::DeviceControl,
        _WDF_REQUEST_TYPE::WdfRequestTypeCleanup => RequestType::Cleanup,
        _ => RequestType::InternalDeviceControl,
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// The context of every request. All fields are atomics or [`TakeCell`]s, so all-zero bytes (what
/// WDF gives a new request) are a valid, empty state.
pub(super) struct RequestState {
    cancel: TakeCell<Box<dyn FnOnce(Request) + Send>>,
    completion: TakeCell<Box<dyn FnOnce(Request, CompletionParams) + Send>>,
    /// The target a driver-created request was created for (null for presented requests).
    target: AtomicPtr<wdk_sys::WDFIOTARGET__>,
    /// The input `WDFMEMORY` of the last `format_for_*`.
    input: AtomicPtr<wdk_sys::WDFMEMORY__>,
    /// The output `WDFMEMORY` of the last `format_for_*`.
    output: AtomicPtr<wdk_sys::WDFMEMORY__>,
    /// A `with_input_buffer`/`with_output_buffer` view is open. For buffered I/O the input and
    /// output buffers are the same system buffer, so at most one view exists at a time (the
    /// simulator holds its request lock for the same span).
    buffer_busy: AtomicBool,
    /// The last `set_completion_routine` could not store its routine (the pool refused it): the
    /// next `send` fails with `STATUS_INSUFFICIENT_RESOURCES` instead of sending a request whose
    /// completion nobody would receive.
    completion_refused: AtomicBool,
}

zeroed_context_type!(
    /// The context of every `WDFREQUEST` (all-zero is a valid [`RequestState`]: atomics and
    /// empty take-cells).
    REQUEST_CONTEXT: RequestState = c"DmfRsRequest", request_context_destroy
);

/// A `WDFREQUEST` the driver owns (see the contract's ownership rule).
#[derive(Debug)]
pub struct Request {
    // INVARIANT: a live request the driver owns (presented to it, or created by it).
    handle: WDFREQUEST,
}

// SAFETY: the driver may complete, forward or send an owned request from any thread.
unsafe impl Send for Request {}
// SAFETY: every `&self` method is a WDF request call (WDF serialises them on the request object)
// or reads the request context's atomics; the only views of request memory (`with_input_buffer`,
// `with_output_buffer`) are exclusive through `RequestState::buffer_busy`.
unsafe impl Sync for Request {}

impl Request {
    /// Wraps a request WDF handed to the driver.
    pub(super) fn from_raw(handle: WDFREQUEST) -> Request {
        Request { handle }
    }

    /// The `WDFREQUEST` handle, for WDF calls the contract does not cover.
    pub fn raw(&self) -> WDFREQUEST {
        self.handle
    }

    fn state(&self) -> Option<&RequestState> {
        // SAFETY: the request is live (invariant) and carries REQUEST_CONTEXT (every request does:
        // device request attributes or `create_request`); the borrow is tied to `self`.
        unsafe { REQUEST_CONTEXT.get(as_object(self.handle)) }
    }

    /// The target of a driver-created request.
    fn own_target(&self) -> NtResult<WDFIOTARGET> {
        let target = self
            .state()
            .map_or(null_mut(), |s| s.target.load(Ordering::Acquire));
        if target.is_null() {
            Err(NtStatus::INVALID_DEVICE_STATE)
        } else {
            Ok(target)
        }
    }

    /// `WdfMemoryCreate` parented to the request, filled from `data` or zeroed (`len` bytes);
    /// null for zero bytes. Replaces (and deletes) the memory previously kept in `slot`.
    fn replace_memory(
        &self,
        slot: &AtomicPtr<wdk_sys::WDFMEMORY__>,
        data: Option<&[u8]>,
        len: usize,
    ) -> NtResult<WDFMEMORY> {
        let mut memory: WDFMEMORY = null_mut();
        if len != 0 {
            let mut attributes = object_attributes_init();
            attributes.ParentObject = as_object(self.handle);
            let mut buffer: PVOID = null_mut();
            // SAFETY: valid attributes (parent: our live request); out pointers to our locals.
            nt_result(unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfMemoryCreate,
                    &raw mut attributes,
                    NON_PAGED_POOL_NX,
                    MEMORY_TAG,
                    len,
                    &raw mut memory,
                    &raw mut buffer
                )
            })?;
            let buffer = buffer.cast::<u8>();
            // SAFETY: WDF returned a fresh buffer of `len` bytes that only we reference.
            unsafe {
                match data {
                    Some(data) => core::ptr::copy_nonoverlapping(data.as_ptr(), buffer, len),
                    None => core::ptr::write_bytes(buffer, 0, len),
                }
            }
        }
        let old = slot.swap(memory, Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: a memory object we created for this request, not in use (the request is
            // being formatted, so it is not in flight).
            unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, as_object(old)) };
        }
        Ok(memory)
    }

    /// Marks a buffer view open until the guard drops; `STATUS_INVALID_DEVICE_STATE` if one is
    /// open already (a nested or concurrent view would alias the buffer).
    fn open_view(&self) -> NtResult<ViewGuard<'_>> {
        let state = self.state().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        if state.buffer_busy.swap(true, Ordering::AcqRel) {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        Ok(ViewGuard(&state.buffer_busy))
    }

    /// `STATUS_INSUFFICIENT_RESOURCES` (once) if the last `set_completion_routine` could not store
    /// its routine: the request must not be sent.
    fn take_completion_refusal(&self) -> NtResult<()> {
        match self.state() {
            Some(state) if state.completion_refused.swap(false, Ordering::AcqRel) => {
                Err(NtStatus::INSUFFICIENT_RESOURCES)
            }
            _ => Ok(()),
        }
    }

    /// The buffer of one of our `WDFMEMORY` objects (`WdfMemoryGetBuffer`).
    fn memory_buffer(memory: WDFMEMORY) -> (*mut u8, usize) {
        let mut size: usize = 0;
        // SAFETY: a live memory object of a live request; out pointer to our local.
        let buffer =
            unsafe { call_unsafe_wdf_function_binding!(WdfMemoryGetBuffer, memory, &raw mut size) };
        (buffer.cast::<u8>(), size)
    }
}

/// An open buffer view of a request; closes it when dropped.
struct ViewGuard<'a>(&'a AtomicBool);

impl Drop for ViewGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// `EvtRequestCancel`: hands the request to the routine `mark_cancelable` stored.
unsafe extern "C" fn evt_request_cancel(request: WDFREQUEST) {
    let request = Request::from_raw(request);
    if let Some(routine) = request.state().and_then(|s| s.cancel.take()) {
        routine(request);
    }
}

/// `EvtRequestCompletionRoutine`: hands the request and its completion to the stored routine.
unsafe extern "C" fn evt_request_completion(
    request: WDFREQUEST,
    _target: WDFIOTARGET,
    _params: PWDF_REQUEST_COMPLETION_PARAMS,
    _context: WDFCONTEXT,
) {
    let request = Request::from_raw(request);
    let params = CompletionParams {
        status: request.status(),
        information: request.information(),
    };
    if let Some(routine) = request.state().and_then(|s| s.completion.take()) {
        routine(request, params);
    }
}

impl PlatformRequest for Request {
    type Queue = Queue;
    type FileObject = FileObject;
    type IoTarget = IoTarget;

    /// The handle value (unique among live requests).
    fn id(&self) -> u64 {
        self.handle.addr() as u64
    }

    /// `WdfRequestGetParameters`.
    fn parameters(&self) -> RequestParameters {
        let mut params = request_parameters_init();
        // SAFETY: live request; out pointer to our local of the right size.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestGetParameters,
                self.handle,
                &raw mut params
            );
        };
        let kind = request_type(params.Type);
        let (ioctl_code, input_length, output_length, offset) = match kind {
            // SAFETY: WDF filled the union member of the request's type.
            RequestType::DeviceControl | RequestType::InternalDeviceControl => unsafe {
                let p = params.Parameters.DeviceIoControl;
                (
                    p.IoControlCode,
                    p.InputBufferLength,
                    p.OutputBufferLength,
                    0,
                )
            },
            // SAFETY: as above.
            RequestType::Read => unsafe {
                let p = params.Parameters.Read;
                (0, 0, p.Length, u64::try_from(p.DeviceOffset).unwrap_or(0))
            },
            // SAFETY: as above.
            RequestType::Write => unsafe {
                let p = params.Parameters.Write;
                (0, p.Length, 0, u64::try_from(p.DeviceOffset).unwrap_or(0))
            },
            _ => (0, 0, 0, 0),
        };
        RequestParameters {
            kind,
            ioctl_code,
            input_length,
            output_length,
            offset,
        }
    }

    /// `WdfRequestGetRequestorMode`.
    fn requestor_mode(&self) -> RequestorMode {
        // SAFETY: live request.
        let mode =
            unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetRequestorMode, self.handle) };
        if mode == USER_MODE {
            RequestorMode::User
        } else {
            RequestorMode::Kernel
        }
    }

    /// The file object's administrator flag (captured at create); kernel-mode requestors without
    /// a file object count as trusted.
    fn is_requestor_administrator(&self) -> bool {
        match self.file_object() {
            Some(file) => file.is_administrator(),
            None => self.requestor_mode() == RequestorMode::Kernel,
        }
    }

    /// `WdfRequestGetFileObject`.
    fn file_object(&self) -> Option<FileObject> {
        // SAFETY: live request.
        let file =
            unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetFileObject, self.handle) };
        (!file.is_null()).then_some(FileObject { handle: file })
    }

    /// `WdfRequestRetrieveInputBuffer`, or `WdfMemoryGetBuffer` of the input memory of a
    /// driver-created request.
    fn with_input_buffer<R>(&self, min_len: usize, f: impl FnOnce(&[u8]) -> R) -> NtResult<R> {
        let _view = self.open_view()?;
        let own = self
            .state()
            .map_or(null_mut(), |s| s.input.load(Ordering::Acquire));
        let (buffer, len) = if own.is_null() {
            let mut buffer: PVOID = null_mut();
            let mut len: usize = 0;
            // SAFETY: live request; out pointers to our locals.
            nt_result(unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfRequestRetrieveInputBuffer,
                    self.handle,
                    min_len,
                    &raw mut buffer,
                    &raw mut len
                )
            })?;
            (buffer.cast::<u8>(), len)
        } else {
            Self::memory_buffer(own)
        };
        if len < min_len {
            return Err(NtStatus::BUFFER_TOO_SMALL);
        }
        if buffer.is_null() || len == 0 {
            return Ok(f(&[]));
        }
        // SAFETY: WDF describes `len` readable bytes at `buffer`, valid while the driver owns the
        // request (it does while `&self` lives); `_view` excludes a mutable view during `f`.
        Ok(f(unsafe { core::slice::from_raw_parts(buffer, len) }))
    }

    /// `WdfRequestRetrieveOutputBuffer`, or `WdfMemoryGetBuffer` of the output memory of a
    /// driver-created request.
    fn with_output_buffer<R>(&self, min_len: usize, f: impl FnOnce(&mut [u8]) -> R) -> NtResult<R> {
        let _view = self.open_view()?;
        let own = self
            .state()
            .map_or(null_mut(), |s| s.output.load(Ordering::Acquire));
        let (buffer, len) = if own.is_null() {
            let mut buffer: PVOID = null_mut();
            let mut len: usize = 0;
            // SAFETY: live request; out pointers to our locals.
            nt_result(unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfRequestRetrieveOutputBuffer,
                    self.handle,
                    min_len,
                    &raw mut buffer,
                    &raw mut len
                )
            })?;
            (buffer.cast::<u8>(), len)
        } else {
            Self::memory_buffer(own)
        };
        if len < min_len {
            return Err(NtStatus::BUFFER_TOO_SMALL);
        }
        if buffer.is_null() || len == 0 {
            return Ok(f(&mut []));
        }
        // SAFETY: WDF describes `len` writable bytes at `buffer`, valid while the driver owns the
        // request; `_view` makes this the only view of the request's buffers during `f`.
        Ok(f(unsafe { core::slice::from_raw_parts_mut(buffer, len) }))
    }

    /// `WdfRequestSetInformation`.
    fn set_information(&self, information: usize) {
        // SAFETY: live request.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestSetInformation,
                self.handle,
                information as _
            );
        };
    }

    /// `WdfRequestGetInformation`.
    fn information(&self) -> usize {
        // SAFETY: live request.
        let information =
            unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetInformation, self.handle) };
        usize::try_from(information).unwrap_or(usize::MAX)
    }

    /// `WdfRequestGetStatus`.
    fn status(&self) -> NtStatus {
        // SAFETY: live request.
        NtStatus::from_raw(unsafe {
            call_unsafe_wdf_function_binding!(WdfRequestGetStatus, self.handle)
        })
    }

    /// `WdfRequestComplete`.
    fn complete(self, status: NtStatus) {
        // SAFETY: the driver owns the request (invariant) and gives it up here (`self` consumed).
        unsafe {
            call_unsafe_wdf_function_binding!(WdfRequestComplete, self.handle, status.to_raw());
        };
    }

    /// `WdfRequestCompleteWithInformation`.
    fn complete_with_information(self, status: NtStatus, information: usize) {
        // SAFETY: as for `complete`.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestCompleteWithInformation,
                self.handle,
                status.to_raw(),
                information as _
            );
        }
    }

    /// `WdfRequestMarkCancelableEx` with the `EvtRequestCancel` trampoline; the routine waits in
    /// the request context.
    fn mark_cancelable(&self, routine: impl FnOnce(Request) + Send + 'static) -> NtResult<()> {
        let state = self.state().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let routine: Box<dyn FnOnce(Request) + Send> = try_box(routine)?;
        // Stored first: the cancel routine can run the moment the request is cancelable.
        state.cancel.put(try_box(routine)?);
        // SAFETY: live request the driver owns; the trampoline matches PFN_WDF_REQUEST_CANCEL.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestMarkCancelableEx,
                self.handle,
                Some(evt_request_cancel)
            )
        };
        if !NT_SUCCESS(status) {
            drop(state.cancel.take());
        }
        nt_result(status)
    }

    /// `WdfRequestUnmarkCancelable`: on success the stored routine is dropped; with
    /// `STATUS_CANCELLED` the routine runs (or ran) and owns the request.
    fn unmark_cancelable(&self) -> NtResult<()> {
        // SAFETY: live request the driver marked cancelable.
        let status =
            unsafe { call_unsafe_wdf_function_binding!(WdfRequestUnmarkCancelable, self.handle) };
        if NT_SUCCESS(status) {
            if let Some(state) = self.state() {
                drop(state.cancel.take());
            }
        }
        nt_result(status)
    }

    /// `WdfRequestIsCanceled`.
    fn is_canceled(&self) -> bool {
        // SAFETY: live request.
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestIsCanceled, self.handle) != FALSE }
    }

    /// `WdfRequestStopAcknowledge`.
    fn stop_acknowledge(&self, requeue: bool) {
        // SAFETY: live request, from EvtIoStop (contract of the caller).
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestStopAcknowledge,
                self.handle,
                boolean(requeue)
            );
        };
    }

    /// `WdfRequestForwardToIoQueue`.
    fn forward_to_queue(self, queue: &Queue) -> Result<(), (Request, NtStatus)> {
        // SAFETY: live request the driver owns; live queue.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(WdfRequestForwardToIoQueue, self.handle, queue.handle)
        };
        match nt_result(status) {
            Ok(()) => Ok(()),
            Err(status) => Err((self, status)),
        }
    }

    /// `WdfRequestRequeue`.
    fn requeue(self) -> Result<(), (Request, NtStatus)> {
        // SAFETY: live request the driver owns, from a manual queue (contract of the caller).
        let status = unsafe { call_unsafe_wdf_function_binding!(WdfRequestRequeue, self.handle) };
        match nt_result(status) {
            Ok(()) => Ok(()),
            Err(status) => Err((self, status)),
        }
    }

    /// `WdfRequestFormatRequestUsingCurrentType`.
    fn format_using_current_type(&self) {
        // SAFETY: live request the driver owns.
        unsafe {
            call_unsafe_wdf_function_binding!(WdfRequestFormatRequestUsingCurrentType, self.handle);
        };
    }

    /// `WdfMemoryCreate` ×2 + `WdfIoTargetFormatRequestForIoctl`.
    fn format_for_ioctl(&self, code: u32, input: &[u8], output_length: usize) -> NtResult<()> {
        let target = self.own_target()?;
        let state = self.state().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let input = self.replace_memory(&state.input, Some(input), input.len())?;
        let output = self.replace_memory(&state.output, None, output_length)?;
        // SAFETY: live target and request; memories parented to the request; no offsets.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoTargetFormatRequestForIoctl,
                target,
                self.handle,
                code,
                input,
                null_mut(),
                output,
                null_mut()
            )
        })
    }

    /// `WdfMemoryCreate` ×2 + `WdfIoTargetFormatRequestForInternalIoctl`.
    fn format_for_internal_ioctl(
        &self,
        code: u32,
        input: &[u8],
        output_length: usize,
    ) -> NtResult<()> {
        let target = self.own_target()?;
        let state = self.state().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let input = self.replace_memory(&state.input, Some(input), input.len())?;
        let output = self.replace_memory(&state.output, None, output_length)?;
        // SAFETY: as for `format_for_ioctl`.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoTargetFormatRequestForInternalIoctl,
                target,
                self.handle,
                code,
                input,
                null_mut(),
                output,
                null_mut()
            )
        })
    }

    /// `WdfMemoryCreate` + `WdfIoTargetFormatRequestForRead`.
    fn format_for_read(&self, length: usize, offset: u64) -> NtResult<()> {
        let target = self.own_target()?;
        let state = self.state().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        self.replace_memory(&state.input, None, 0)?;
        let output = self.replace_memory(&state.output, None, length)?;
        let mut device_offset = i64::try_from(offset).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        // SAFETY: live target and request; the offset is our local for the call.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoTargetFormatRequestForRead,
                target,
                self.handle,
                output,
                null_mut(),
                &raw mut device_offset
            )
        })
    }

    /// `WdfMemoryCreate` + `WdfIoTargetFormatRequestForWrite`.
    fn format_for_write(&self, data: &[u8], offset: u64) -> NtResult<()> {
        let target = self.own_target()?;
        let state = self.state().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let input = self.replace_memory(&state.input, Some(data), data.len())?;
        self.replace_memory(&state.output, None, 0)?;
        let mut device_offset = i64::try_from(offset).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        // SAFETY: as for `format_for_read`.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoTargetFormatRequestForWrite,
                target,
                self.handle,
                input,
                null_mut(),
                &raw mut device_offset
            )
        })
    }

    /// `WdfRequestSetCompletionRoutine` with the completion trampoline. The contract's method
    /// cannot fail: when the pool refuses to store the routine, the previous routine is dropped
    /// and the next `send` (or `send_synchronously`) fails with `STATUS_INSUFFICIENT_RESOURCES`
    /// without sending, so the driver still owns the request and completes it.
    fn set_completion_routine(
        &self,
        routine: impl FnOnce(Request, CompletionParams) + Send + 'static,
    ) {
        let Some(state) = self.state() else { return };
        let stored = try_box(routine).and_then(|routine| {
            let routine: Box<dyn FnOnce(Request, CompletionParams) + Send> = routine;
            try_box(routine)
        });
        let Ok(routine) = stored else {
            drop(state.completion.take());
            state.completion_refused.store(true, Ordering::Release);
            return;
        };
        state.completion_refused.store(false, Ordering::Release);
        state.completion.put(routine);
        // SAFETY: live request the driver owns; the trampoline matches
        // PFN_WDF_REQUEST_COMPLETION_ROUTINE; no completion context.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestSetCompletionRoutine,
                self.handle,
                Some(evt_request_completion),
                null_mut()
            );
        }
    }

    /// `WdfRequestSend` (`WDF_REQUEST_SEND_OPTIONS` from `options`); on `FALSE`,
    /// `WdfRequestGetStatus`. `STATUS_INSUFFICIENT_RESOURCES`, without sending, when the last
    /// `set_completion_routine` could not store its routine.
    fn send(&self, target: &IoTarget, options: SendOptions) -> NtResult<()> {
        self.take_completion_refusal()?;
        let mut flags = NO_SEND_OPTIONS;
        if options.send_and_forget {
            flags |= SEND_OPTION_SEND_AND_FORGET;
        }
        if options.ignore_target_state {
            flags |= SEND_OPTION_IGNORE_TARGET_STATE;
        }
        let timeout = relative_timeout(options.timeout);
        if timeout.is_some() {
            flags |= SEND_OPTION_TIMEOUT;
        }
        let mut wdf_options = request_send_options_init(flags, timeout.unwrap_or(0));
        // SAFETY: live request and target; options valid for the call.
        let sent = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestSend,
                self.handle,
                target.handle,
                &raw mut wdf_options
            )
        };
        if sent == FALSE {
            Err(self.status())
        } else {
            Ok(())
        }
    }

    /// `WdfRequestSend` with `WDF_REQUEST_SEND_OPTION_SYNCHRONOUS`, then `WdfRequestGetStatus`
    /// (`STATUS_INSUFFICIENT_RESOURCES`, without sending, as for `send`).
    fn send_synchronously(&self, target: &IoTarget, timeout: Option<Duration>) -> NtStatus {
        if let Err(status) = self.take_completion_refusal() {
            return status;
        }
        let timeout = relative_timeout(timeout);
        let mut flags = SEND_OPTION_SYNCHRONOUS;
        if timeout.is_some() {
            flags |= SEND_OPTION_TIMEOUT;
        }
        let mut wdf_options = request_send_options_init(flags, timeout.unwrap_or(0));
        // SAFETY: live request and target; options valid for the call; PASSIVE_LEVEL (contract).
        let _sent = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestSend,
                self.handle,
                target.handle,
                &raw mut wdf_options
            )
        };
        self.status()
    }

    /// `WdfRequestCancelSentRequest`.
    fn cancel_sent_request(&self) -> bool {
        // SAFETY: live request (sent by this driver: contract of the caller).
        unsafe {
            call_unsafe_wdf_function_binding!(WdfRequestCancelSentRequest, self.handle) != FALSE
        }
    }

    /// `WdfRequestReuse` of a driver-created request.
    fn reuse(&self, status: NtStatus) -> NtResult<()> {
        self.own_target()?;
        let mut params = request_reuse_params_init(status.to_raw());
        // SAFETY: live driver-created request, not in flight (contract of the caller).
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(WdfRequestReuse, self.handle, &raw mut params)
        })
    }

    /// `WdfObjectDelete` of a driver-created request.
    fn delete(self) -> NtResult<()> {
        self.own_target()?;
        // SAFETY: a driver-created request the driver owns (checked) and gives up here.
        unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, as_object(self.handle)) };
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Queues
// ---------------------------------------------------------------------------------------------

/// The context of a queue the backend created: its callbacks and dispatch type.
pub(super) struct QueueState {
    config: QueueConfig<Queue, Request>,
}

context_type!(
    /// The context of every `WDFQUEUE` the backend creates.
    QUEUE_CONTEXT: QueueState = c"DmfRsQueue", queue_context_destroy
);

/// A `WDFQUEUE`: a copyable handle, equality is identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    handle: WDFQUEUE,
}

// SAFETY: a WDFQUEUE handle may be used from any thread while the queue exists.
unsafe impl Send for Queue {}
// SAFETY: as for `Send`.
unsafe impl Sync for Queue {}

impl Queue {
    pub(super) fn from_raw(handle: WDFQUEUE) -> Queue {
        Queue { handle }
    }

    /// The `WDFQUEUE` handle.
    pub fn raw(&self) -> WDFQUEUE {
        self.handle
    }

    /// `WdfIoQueueCreate` on `device` (`WDF_IO_QUEUE_CONFIG` from `config`, trampolines for the
    /// callbacks set, the config kept in the queue's context).
    ///
    /// # Errors
    ///
    /// What `WdfIoQueueCreate` returns (`STATUS_INVALID_PARAMETER`, `STATUS_WDF_…`,
    /// `STATUS_INSUFFICIENT_RESOURCES`).
    pub fn create(device: &Device, config: QueueConfig<Queue, Request>) -> NtResult<Queue> {
        let dispatch = match config.dispatch {
            QueueDispatch::Sequential => WDF_IO_QUEUE_DISPATCH_SEQUENTIAL,
            QueueDispatch::Parallel => WDF_IO_QUEUE_DISPATCH_PARALLEL,
            QueueDispatch::Manual => WDF_IO_QUEUE_DISPATCH_MANUAL,
        };
        let mut wdf = io_queue_config_init(dispatch, config.default_queue);
        if let Some(power_managed) = config.power_managed {
            let power_managed: WDF_TRI_STATE = if power_managed { WDF_TRUE } else { WDF_FALSE };
            wdf.PowerManaged = power_managed;
        }
        wdf.AllowZeroLengthRequests = boolean(config.allow_zero_length_requests);
        if config.read.is_some() {
            wdf.EvtIoRead = Some(evt_io_read);
        }
        if config.write.is_some() {
            wdf.EvtIoWrite = Some(evt_io_write);
        }
        if config.device_control.is_some() {
            wdf.EvtIoDeviceControl = Some(evt_io_device_control);
        }
        if config.internal_device_control.is_some() {
            wdf.EvtIoInternalDeviceControl = Some(evt_io_internal_device_control);
        }
        if config.default.is_some() {
            wdf.EvtIoDefault = Some(evt_io_default);
        }
        if config.stop.is_some() {
            wdf.EvtIoStop = Some(evt_io_stop);
        }
        if config.resume.is_some() {
            wdf.EvtIoResume = Some(evt_io_resume);
        }
        if config.canceled_on_queue.is_some() {
            wdf.EvtIoCanceledOnQueue = Some(evt_io_canceled_on_queue);
        }
        let mut attributes = object_attributes_with_context(&QUEUE_CONTEXT);
        let mut handle: WDFQUEUE = null_mut();
        // SAFETY: live device; valid config and attributes; out pointer to our local.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoQueueCreate,
                device.raw(),
                &raw mut wdf,
                &raw mut attributes,
                &raw mut handle
            )
        })?;
        // SAFETY: just created with QUEUE_CONTEXT. Requests reach a new queue only after the
        // device starts (default queue created in EvtDriverDeviceAdd) or after the driver routes
        // them to it (dispatching, forwarding) — both after this returns; a request presented
        // before is completed with STATUS_INVALID_DEVICE_STATE by the trampolines.
        unsafe {
            QUEUE_CONTEXT
                .slot(as_object(handle))
                .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?
                .init(QueueState { config });
        }
        Ok(Queue { handle })
    }
}

/// Finds the queue's state and runs `f`, or completes the request with
/// `STATUS_INVALID_DEVICE_STATE` when the queue has none.
///
/// # Safety
/// `queue` and `request` must be the live handles WDF passed to the running queue callback.
unsafe fn dispatch_to(
    queue: WDFQUEUE,
    request: WDFREQUEST,
    f: impl FnOnce(&QueueConfig<Queue, Request>, &Queue, Request) -> bool,
) {
    let request = Request::from_raw(request);
    // SAFETY: WDF passes the live queue of the callback.
    match unsafe { QUEUE_CONTEXT.get(as_object(queue)) } {
        Some(state) => {
            let _ = f(&state.config, &Queue::from_raw(queue), request);
        }
        None => request.complete(NtStatus::INVALID_DEVICE_STATE),
    }
}

/// `EvtIoRead`.
unsafe extern "C" fn evt_io_read(queue: WDFQUEUE, request: WDFREQUEST, length: usize) {
    // SAFETY: WDF passes the live queue and the request it presents.
    unsafe {
        dispatch_to(queue, request, |c, q, r| {
            c.read.as_ref().map(|cb| cb(q, r, length)).is_some()
        });
    }
}

/// `EvtIoWrite`.
unsafe extern "C" fn evt_io_write(queue: WDFQUEUE, request: WDFREQUEST, length: usize) {
    // SAFETY: WDF passes the live queue and the request it presents.
    unsafe {
        dispatch_to(queue, request, |c, q, r| {
            c.write.as_ref().map(|cb| cb(q, r, length)).is_some()
        });
    }
}

/// `EvtIoDeviceControl`.
unsafe extern "C" fn evt_io_device_control(
    queue: WDFQUEUE,
    request: WDFREQUEST,
    output_length: usize,
    input_length: usize,
    code: ULONG,
) {
    // SAFETY: WDF passes the live queue and the request it presents.
    unsafe {
        dispatch_to(queue, request, |c, q, r| {
            c.device_control
                .as_ref()
                .map(|cb| cb(q, r, output_length, input_length, code))
                .is_some()
        });
    }
}

/// `EvtIoInternalDeviceControl`.
unsafe extern "C" fn evt_io_internal_device_control(
    queue: WDFQUEUE,
    request: WDFREQUEST,
    output_length: usize,
    input_length: usize,
    code: ULONG,
) {
    // SAFETY: WDF passes the live queue and the request it presents.
    unsafe {
        dispatch_to(queue, request, |c, q, r| {
            c.internal_device_control
                .as_ref()
                .map(|cb| cb(q, r, output_length, input_length, code))
                .is_some()
        });
    }
}

/// `EvtIoDefault`.
unsafe extern "C" fn evt_io_default(queue: WDFQUEUE, request: WDFREQUEST) {
    // SAFETY: WDF passes the live queue and the request it presents.
    unsafe {
        dispatch_to(queue, request, |c, q, r| {
            c.default.as_ref().map(|cb| cb(q, r)).is_some()
        });
    };
}

/// `EvtIoResume`.
unsafe extern "C" fn evt_io_resume(queue: WDFQUEUE, request: WDFREQUEST) {
    // SAFETY: WDF passes the live queue and a request the driver owns.
    unsafe {
        dispatch_to(queue, request, |c, q, r| {
            c.resume.as_ref().map(|cb| cb(q, r)).is_some()
        });
    };
}

/// `EvtIoCanceledOnQueue`.
unsafe extern "C" fn evt_io_canceled_on_queue(queue: WDFQUEUE, request: WDFREQUEST) {
    // SAFETY: WDF passes the live queue and the cancelled request it hands back.
    unsafe {
        dispatch_to(queue, request, |c, q, r| {
            c.canceled_on_queue.as_ref().map(|cb| cb(q, r)).is_some()
        });
    }
}

/// `EvtIoStop`: a second handle on a request the driver owns (the contract's `IoStopFn`); a queue
/// without state leaves the request alone (it belongs to the driver already).
unsafe extern "C" fn evt_io_stop(queue: WDFQUEUE, request: WDFREQUEST, action_flags: ULONG) {
    let flags = StopFlags {
        purge: action_flags & STOP_ACTION_PURGE != 0,
        cancelable: action_flags & STOP_REQUEST_CANCELABLE != 0,
    };
    // SAFETY: WDF passes the live queue of the callback.
    if let Some(state) = unsafe { QUEUE_CONTEXT.get(as_object(queue)) } {
        if let Some(cb) = state.config.stop.as_ref() {
            cb(&Queue::from_raw(queue), Request::from_raw(request), flags);
        }
    }
}

impl PlatformQueue for Queue {
    type Request = Request;

    /// The dispatch type given at creation (WDF has no getter for it; `WdfIoQueueGetState`
    /// reports state bits only). Parallel for a queue the backend did not create.
    fn dispatch(&self) -> QueueDispatch {
        // SAFETY: live queue; a queue without QUEUE_CONTEXT yields None.
        unsafe { QUEUE_CONTEXT.get(as_object(self.handle)) }
            .map_or(QueueDispatch::Parallel, |s| s.config.dispatch)
    }

    /// `WdfIoQueueRetrieveNextRequest`.
    fn retrieve_next_request(&self) -> NtResult<Request> {
        let mut request: WDFREQUEST = null_mut();
        // SAFETY: live queue; out pointer to our local.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoQueueRetrieveNextRequest,
                self.handle,
                &raw mut request
            )
        })?;
        Ok(Request::from_raw(request))
    }

    /// `WdfIoQueueRetrieveRequestByFileObject`.
    fn retrieve_request_by_file_object(&self, file: &FileObject) -> NtResult<Request> {
        let mut request: WDFREQUEST = null_mut();
        // SAFETY: live queue and file object; out pointer to our local.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoQueueRetrieveRequestByFileObject,
                self.handle,
                file.handle,
                &raw mut request
            )
        })?;
        Ok(Request::from_raw(request))
    }

    /// `WdfIoQueueStart`.
    fn start(&self) {
        // SAFETY: live queue.
        unsafe { call_unsafe_wdf_function_binding!(WdfIoQueueStart, self.handle) };
    }

    /// `WdfIoQueueStopSynchronously`.
    fn stop_synchronously(&self) {
        // SAFETY: live queue; PASSIVE_LEVEL (contract of the caller).
        unsafe { call_unsafe_wdf_function_binding!(WdfIoQueueStopSynchronously, self.handle) };
    }

    /// `WdfIoQueuePurgeSynchronously`.
    fn purge_synchronously(&self) {
        // SAFETY: live queue; PASSIVE_LEVEL (contract of the caller).
        unsafe { call_unsafe_wdf_function_binding!(WdfIoQueuePurgeSynchronously, self.handle) };
    }

    /// `WdfIoQueueDrainSynchronously`.
    fn drain_synchronously(&self) {
        // SAFETY: live queue; PASSIVE_LEVEL (contract of the caller).
        unsafe { call_unsafe_wdf_function_binding!(WdfIoQueueDrainSynchronously, self.handle) };
    }
}

// ---------------------------------------------------------------------------------------------
// File objects
// ---------------------------------------------------------------------------------------------

/// The context of every file object (all-zero: not an administrator).
pub(super) struct FileState {
    administrator: AtomicBool,
}

zeroed_context_type!(
    /// The context of every `WDFFILEOBJECT` (all-zero is a valid [`FileState`]).
    FILE_CONTEXT: FileState = c"DmfRsFile", file_context_destroy
);

/// A `WDFFILEOBJECT`: a copyable handle, equality is identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileObject {
    handle: WDFFILEOBJECT,
}

// SAFETY: a WDFFILEOBJECT handle may be used from any thread while the file is open.
unsafe impl Send for FileObject {}
// SAFETY: as for `Send`.
unsafe impl Sync for FileObject {}

impl FileObject {
    /// The `WDFFILEOBJECT` handle.
    pub fn raw(&self) -> WDFFILEOBJECT {
        self.handle
    }
}

impl PlatformFileObject for FileObject {
    /// The handle value.
    fn id(&self) -> u64 {
        self.handle.addr() as u64
    }

    /// Captured in `EvtDeviceFileCreate` (`SeTokenIsAdmin` on the create's subject context);
    /// false when the driver registered no create callback.
    fn is_administrator(&self) -> bool {
        // SAFETY: live file object; it carries FILE_CONTEXT when the device set a file config.
        unsafe { FILE_CONTEXT.get(as_object(self.handle)) }
            .is_some_and(|s| s.administrator.load(Ordering::Acquire))
    }
}

/// Whether the creator of a file is an administrator: `SeTokenIsAdmin` on the token of the
/// create request's subject security context (what `SeQuerySubjectContextToken` picks: the
/// client token when impersonating, else the primary token).
///
/// # Safety
/// `request` must be the live create request of `EvtDeviceFileCreate`.
unsafe fn creator_is_administrator(request: WDFREQUEST) -> bool {
    let mut params = request_parameters_init();
    // SAFETY: live request; out pointer to our local.
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetParameters, request, &raw mut params) };
    // SAFETY: a create request's parameters hold the `Create` member, whose security context, its
    // access state and subject context the I/O manager keeps valid for the create.
    unsafe {
        let security = params.Parameters.Create.SecurityContext;
        if security.is_null() || (*security).AccessState.is_null() {
            return false;
        }
        let subject = &(*(*security).AccessState).SubjectSecurityContext;
        let token = if subject.ClientToken.is_null() {
            subject.PrimaryToken
        } else {
            subject.ClientToken
        };
        !token.is_null() && wdk_sys::ntddk::SeTokenIsAdmin(token) != FALSE
    }
}

/// `EvtDeviceFileCreate`: records the administrator flag, then runs the driver's callback (which
/// completes the create request).
pub(super) unsafe extern "C" fn evt_device_file_create(
    device: WDFDEVICE,
    request: WDFREQUEST,
    file: WDFFILEOBJECT,
) {
    // SAFETY: WDF passes the live create request and new file object.
    unsafe {
        let administrator = creator_is_administrator(request);
        if let Some(state) = FILE_CONTEXT.get(as_object(file)) {
            state.administrator.store(administrator, Ordering::Release);
        }
    }
    let mut request = Some(Request::from_raw(request));
    let file = FileObject { handle: file };
    // SAFETY: WDF passes the live device of the callback.
    unsafe {
        with_device_state(device, (), |s, d| {
            if let (Some(cb), Some(r)) = (s.file.create.as_ref(), request.take()) {
                cb(d, r, &file);
            }
        });
    }
    // Only without device state (not a device of this backend): the create must still complete.
    if let Some(request) = request {
        request.complete(NtStatus::INVALID_DEVICE_STATE);
    }
}

/// `EvtFileCleanup`.
pub(super) unsafe extern "C" fn evt_file_cleanup(file: WDFFILEOBJECT) {
    // SAFETY: WDF passes the live file object; its device is live while it exists.
    unsafe {
        with_device_state(file_device(file), (), |s, _| {
            if let Some(cb) = s.file.cleanup.as_ref() {
                cb(&FileObject { handle: file });
            }
        });
    }
}

/// `EvtFileClose`.
pub(super) unsafe extern "C" fn evt_file_close(file: WDFFILEOBJECT) {
    // SAFETY: WDF passes the live file object; its device is live while it exists.
    unsafe {
        with_device_state(file_device(file), (), |s, _| {
            if let Some(cb) = s.file.close.as_ref() {
                cb(&FileObject { handle: file });
            }
        });
    }
}

/// The file objects' `EvtCleanupCallback` (`FileObjectAttributes`): the `WDFFILEOBJECT` is being
/// deleted — after `EvtFileClose`, or when its create completed with an error status (KMDF's
/// create completion deletes it; no cleanup or close follows).
pub(super) unsafe extern "C" fn evt_file_object_cleanup(object: WDFOBJECT) {
    let file: WDFFILEOBJECT = object.cast();
    // SAFETY: WDF passes the file object being deleted, valid until the callback returns; its
    // device outlives its file objects.
    unsafe {
        with_device_state(file_device(file), (), |s, _| {
            if let Some(cb) = s.file.deleted.as_ref() {
                cb(&FileObject { handle: file });
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// I/O targets
// ---------------------------------------------------------------------------------------------

/// The removal callbacks of the last `open` by name.
#[derive(Default)]
struct TargetCallbacks {
    query_remove: Option<TargetQueryRemoveFn<IoTarget>>,
    remove_canceled: Option<TargetFn<IoTarget>>,
    remove_complete: Option<TargetFn<IoTarget>>,
}

/// The context of a remote target the backend created.
pub(super) struct TargetState {
    lock: NtSpinLock,
    // INVARIANT: accessed only under `lock`.
    callbacks: UnsafeCell<TargetCallbacks>,
    deleted: AtomicBool,
}

impl TargetState {
    /// Runs `f` on the callbacks under the lock (never call a driver callback inside `f`).
    fn with_callbacks<R>(&self, f: impl FnOnce(&mut TargetCallbacks) -> R) -> R {
        let _guard = self.lock.lock();
        // SAFETY: the lock is held, so this is the only access (invariant).
        f(unsafe { &mut *self.callbacks.get() })
    }
}

context_type!(
    /// The context of every remote `WDFIOTARGET` the backend creates.
    TARGET_CONTEXT: TargetState = c"DmfRsIoTarget", target_context_destroy
);

/// A `WDFIOTARGET`: the device's local target or a remote one the driver created.
#[derive(Clone, Debug)]
pub struct IoTarget {
    handle: WDFIOTARGET,
    remote: bool,
}

impl PartialEq for IoTarget {
    fn eq(&self, other: &Self) -> bool {
        self.handle == other.handle
    }
}

impl Eq for IoTarget {}

// SAFETY: a WDFIOTARGET handle may be used from any thread while the target exists.
unsafe impl Send for IoTarget {}
// SAFETY: as for `Send`.
unsafe impl Sync for IoTarget {}

impl IoTarget {
    pub(super) fn from_local(handle: WDFIOTARGET) -> IoTarget {
        IoTarget {
            handle,
            remote: false,
        }
    }

    /// The `WDFIOTARGET` handle.
    pub fn raw(&self) -> WDFIOTARGET {
        self.handle
    }

    /// `WdfIoTargetCreate` on `device` (parented to it), closed until opened.
    ///
    /// # Errors
    ///
    /// What `WdfIoTargetCreate` returns.
    pub fn create(device: &Device) -> NtResult<IoTarget> {
        let mut attributes = object_attributes_with_context(&TARGET_CONTEXT);
        attributes.ParentObject = as_object(device.raw());
        let mut handle: WDFIOTARGET = null_mut();
        // SAFETY: live device; valid attributes; out pointer to our local.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoTargetCreate,
                device.raw(),
                &raw mut attributes,
                &raw mut handle
            )
        })?;
        // SAFETY: just created with TARGET_CONTEXT; closed, so no callback can run yet.
        unsafe {
            TARGET_CONTEXT
                .slot(as_object(handle))
                .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?
                .init(TargetState {
                    lock: NtSpinLock::new(),
                    callbacks: UnsafeCell::new(TargetCallbacks::default()),
                    deleted: AtomicBool::new(false),
                });
        }
        Ok(IoTarget {
            handle,
            remote: true,
        })
    }

    fn backend_state(&self) -> Option<&TargetState> {
        // SAFETY: live target; only remote targets the backend created carry TARGET_CONTEXT.
        self.remote
            .then(|| unsafe { TARGET_CONTEXT.get(as_object(self.handle)) })
            .flatten()
    }
}

/// The backend's state of a target WDF passes to a callback.
///
/// # Safety
/// `target` must be the live target of the running callback.
unsafe fn target_callbacks(target: WDFIOTARGET) -> TargetCallbacks {
    // SAFETY: forwarded.
    match unsafe { TARGET_CONTEXT.get(as_object(target)) } {
        Some(state) => state.with_callbacks(|c| TargetCallbacks {
            query_remove: c.query_remove.clone(),
            remove_canceled: c.remove_canceled.clone(),
            remove_complete: c.remove_complete.clone(),
        }),
        None => TargetCallbacks::default(),
    }
}

/// `EvtIoTargetQueryRemove`: the driver's callback; on success the target is closed for the
/// query-remove (`WdfIoTargetCloseForQueryRemove`), as the contract says.
unsafe extern "C" fn evt_target_query_remove(target: WDFIOTARGET) -> NTSTATUS {
    // SAFETY: WDF passes the live target of the callback.
    let callbacks = unsafe { target_callbacks(target) };
    let io_target = IoTarget {
        handle: target,
        remote: true,
    };
    let result = callbacks.query_remove.map_or(Ok(()), |cb| cb(&io_target));
    if result.is_ok() {
        io_target.close_for_query_remove();
    }
    to_ntstatus(result)
}

/// `EvtIoTargetRemoveCanceled`.
unsafe extern "C" fn evt_target_remove_canceled(target: WDFIOTARGET) {
    // SAFETY: WDF passes the live target of the callback.
    if let Some(cb) = unsafe { target_callbacks(target) }.remove_canceled {
        cb(&IoTarget {
            handle: target,
            remote: true,
        });
    }
}

/// `EvtIoTargetRemoveComplete`.
unsafe extern "C" fn evt_target_remove_complete(target: WDFIOTARGET) {
    // SAFETY: WDF passes the live target of the callback.
    if let Some(cb) = unsafe { target_callbacks(target) }.remove_complete {
        cb(&IoTarget {
            handle: target,
            remote: true,
        });
    }
}

/// A `WDF_MEMORY_DESCRIPTOR_INIT_BUFFER`.
fn buffer_descriptor(buffer: *mut u8, length: usize) -> NtResult<WDF_MEMORY_DESCRIPTOR> {
    let length = ULONG::try_from(length).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    // SAFETY: WDF_MEMORY_DESCRIPTOR is an enum value and a union of pointers/integers.
    let mut descriptor: WDF_MEMORY_DESCRIPTOR = unsafe { core::mem::zeroed() };
    descriptor.Type = _WDF_MEMORY_DESCRIPTOR_TYPE::WdfMemoryDescriptorTypeBuffer;
    #[allow(
        unused_unsafe,
        reason = "whether a nested union-field write needs `unsafe` varies"
    )]
    // SAFETY: plain writes of the `BufferType` member of the union.
    unsafe {
        descriptor.u.BufferType.Buffer = buffer.cast::<c_void>();
        descriptor.u.BufferType.Length = length;
    }
    Ok(descriptor)
}

impl PlatformIoTarget for IoTarget {
    type Request = Request;

    /// `WdfIoTargetGetState`.
    fn state(&self) -> IoTargetState {
        // SAFETY: live target.
        let state = unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetGetState, self.handle) };
        match state {
            _WDF_IO_TARGET_STATE::WdfIoTargetStarted => IoTargetState::Started,
            _WDF_IO_TARGET_STATE::WdfIoTargetStopped => IoTargetState::Stopped,
            _WDF_IO_TARGET_STATE::WdfIoTargetClosedForQueryRemove => {
                IoTargetState::ClosedForQueryRemove
            }
            _WDF_IO_TARGET_STATE::WdfIoTargetDeleted => IoTargetState::Deleted,
            // WdfIoTargetClosed; also WdfIoTargetPurged (the contract has no purged state and the
            // backend never purges: a purged target fails new requests, as a closed one does) and
            // WdfIoTargetStateUndefined.
            _ => IoTargetState::Closed,
        }
    }

    /// `WdfIoTargetOpen` (`WDF_IO_TARGET_OPEN_PARAMS_INIT_OPEN_BY_NAME` with the removal
    /// trampolines for the callbacks set, or `…_INIT_REOPEN`, which keeps them).
    fn open(&self, params: TargetOpenParams<IoTarget>) -> NtResult<()> {
        let state = self.backend_state().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let name = params
            .symbolic_link
            .as_deref()
            .map(UnicodeName::new)
            .transpose()?;
        let mut access: wdk_sys::ACCESS_MASK = 0; // not a WDF/NT value: no access bits yet
        if params.read {
            access |= GENERIC_READ;
        }
        if params.write {
            access |= GENERIC_WRITE;
        }
        let mut wdf = io_target_open_params_init(name.as_ref().map(UnicodeName::get), access);
        if name.is_some() {
            if params.query_remove.is_some() {
                wdf.EvtIoTargetQueryRemove = Some(evt_target_query_remove);
            }
            if params.remove_canceled.is_some() {
                wdf.EvtIoTargetRemoveCanceled = Some(evt_target_remove_canceled);
            }
            if params.remove_complete.is_some() {
                wdf.EvtIoTargetRemoveComplete = Some(evt_target_remove_complete);
            }
            let old = state.with_callbacks(|c| {
                core::mem::replace(
                    c,
                    TargetCallbacks {
                        query_remove: params.query_remove,
                        remove_canceled: params.remove_canceled,
                        remove_complete: params.remove_complete,
                    },
                )
            });
            drop(old);
        }
        // SAFETY: live remote target; params valid; `name` (the buffer TargetDeviceName points
        // into) lives across the call.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(WdfIoTargetOpen, self.handle, &raw mut wdf)
        })
    }

    /// `WdfIoTargetStart`.
    fn start(&self) -> NtResult<()> {
        // SAFETY: live target.
        nt_result(unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetStart, self.handle) })
    }

    /// `WdfIoTargetStop(WdfIoTargetCancelSentIo | WdfIoTargetLeaveSentIoPending)`.
    fn stop(&self, cancel_sent: bool) {
        let action: WDF_IO_TARGET_SENT_IO_ACTION = if cancel_sent {
            _WDF_IO_TARGET_SENT_IO_ACTION::WdfIoTargetCancelSentIo
        } else {
            _WDF_IO_TARGET_SENT_IO_ACTION::WdfIoTargetLeaveSentIoPending
        };
        // SAFETY: live target.
        unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetStop, self.handle, action) };
    }

    /// `WdfIoTargetCloseForQueryRemove`.
    fn close_for_query_remove(&self) {
        // SAFETY: live target.
        unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetCloseForQueryRemove, self.handle) };
    }

    /// `WdfIoTargetClose`.
    fn close(&self) {
        // SAFETY: live target.
        unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetClose, self.handle) };
    }

    /// `WdfObjectDelete` of a remote target (once).
    fn delete(&self) -> NtResult<()> {
        let state = self.backend_state().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        if state.deleted.swap(true, Ordering::AcqRel) {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        // SAFETY: a remote target the driver created and has not deleted (checked above).
        unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, as_object(self.handle)) };
        Ok(())
    }

    /// `WdfRequestCreate` for this target, with the backend's request context.
    fn create_request(&self) -> NtResult<Request> {
        let mut attributes = REQUEST_CONTEXT.attributes();
        let mut handle: WDFREQUEST = null_mut();
        // SAFETY: live target; valid attributes; out pointer to our local.
        nt_result(unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestCreate,
                &raw mut attributes,
                self.handle,
                &raw mut handle
            )
        })?;
        let request = Request::from_raw(handle);
        if let Some(state) = request.state() {
            state.target.store(self.handle, Ordering::Release);
        }
        Ok(request)
    }

    /// `WdfIoTargetSendIoctlSynchronously` / `WdfIoTargetSendInternalIoctlSynchronously` with
    /// buffer descriptors; the output is cut to the bytes returned.
    fn send_ioctl_synchronously(
        &self,
        code: u32,
        input: &[u8],
        output_length: usize,
        internal: bool,
        timeout: Option<Duration>,
    ) -> NtResult<(Vec<u8>, usize)> {
        let mut input_copy = try_to_vec(input)?;
        let mut output = try_vec_filled(0_u8, output_length)?;
        let mut input_descriptor = buffer_descriptor(input_copy.as_mut_ptr(), input_copy.len())?;
        let mut output_descriptor = buffer_descriptor(output.as_mut_ptr(), output.len())?;
        let input_ptr = if input_copy.is_empty() {
            null_mut()
        } else {
            core::ptr::from_mut(&mut input_descriptor)
        };
        let output_ptr = if output.is_empty() {
            null_mut()
        } else {
            core::ptr::from_mut(&mut output_descriptor)
        };
        let timeout = relative_timeout(timeout);
        let flags = if timeout.is_some() {
            SEND_OPTION_TIMEOUT
        } else {
            NO_SEND_OPTIONS
        };
        let mut options = request_send_options_init(flags, timeout.unwrap_or(0));
        let mut returned: u64 = 0;
        // SAFETY: live target; the descriptors describe our buffers, alive across the
        // synchronous call; options and out pointer are our locals; PASSIVE_LEVEL (contract).
        let status = unsafe {
            if internal {
                call_unsafe_wdf_function_binding!(
                    WdfIoTargetSendInternalIoctlSynchronously,
                    self.handle,
                    null_mut(),
                    code,
                    input_ptr,
                    output_ptr,
                    &raw mut options,
                    &raw mut returned
                )
            } else {
                call_unsafe_wdf_function_binding!(
                    WdfIoTargetSendIoctlSynchronously,
                    self.handle,
                    null_mut(),
                    code,
                    input_ptr,
                    output_ptr,
                    &raw mut options,
                    &raw mut returned
                )
            }
        };
        nt_result(status)?;
        let information = usize::try_from(returned).unwrap_or(usize::MAX);
        output.truncate(information.min(output.len()));
        Ok((output, information))
    }
}

// ---------------------------------------------------------------------------------------------
// Device-interface notifications
// ---------------------------------------------------------------------------------------------

// `GUID_DEVICE_INTERFACE_ARRIVAL` / `…_REMOVAL` are `DEFINE_GUID`s of wdmguid.h: without
// `INITGUID` the headers declare them as data in a library (wdmguid.lib), so the bindings hold no
// value for them. They are written out here, from wdmguid.h.
/// `GUID_DEVICE_INTERFACE_ARRIVAL` (wdmguid.h: `{CB3A4004-46F0-11D0-B08F-00609713053F}`).
const GUID_DEVICE_INTERFACE_ARRIVAL: Guid = Guid::new(
    0xCB3A_4004, // not in the bindings: wdmguid.h data (see above)
    0x46F0,      // not in the bindings: (as above)
    0x11D0,      // not in the bindings: (as above)
    [0xB0, 0x8F, 0x00, 0x60, 0x97, 0x13, 0x05, 0x3F], // not in the bindings: (as above)
);
/// `GUID_DEVICE_INTERFACE_REMOVAL` (wdmguid.h: `{CB3A4005-46F0-11D0-B08F-00609713053F}`).
const GUID_DEVICE_INTERFACE_REMOVAL: Guid = Guid::new(
    0xCB3A_4005, // not in the bindings: wdmguid.h data (see above)
    0x46F0,      // not in the bindings: (as above)
    0x11D0,      // not in the bindings: (as above)
    [0xB0, 0x8F, 0x00, 0x60, 0x97, 0x13, 0x05, 0x3F], // not in the bindings: (as above)
);
/// `EventCategoryDeviceInterfaceChange`.
const EVENT_CATEGORY_DEVICE_INTERFACE_CHANGE: wdk_sys::IO_NOTIFICATION_EVENT_CATEGORY =
    _IO_NOTIFICATION_EVENT_CATEGORY::EventCategoryDeviceInterfaceChange;
/// `PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES`.
const PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES: ULONG =
    wdk_sys::PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES;

// The members of `DEVICE_INTERFACE_CHANGE_NOTIFICATION` (wdm.h) the callback reads, x64.
static_assertions::const_assert_eq!(size_of::<DEVICE_INTERFACE_CHANGE_NOTIFICATION>(), 48);
static_assertions::const_assert_eq!(offset_of!(DEVICE_INTERFACE_CHANGE_NOTIFICATION, Event), 4);
static_assertions::const_assert_eq!(
    offset_of!(DEVICE_INTERFACE_CHANGE_NOTIFICATION, SymbolicLinkName),
    40
);

/// The closure a registration calls.
type InterfaceChangeFn = Arc<dyn Fn(&InterfaceChange) + Send + Sync>;

/// `DRIVER_NOTIFICATION_CALLBACK_ROUTINE` for interface changes: runs the registration's closure.
unsafe extern "C" fn interface_change_callback(notification: PVOID, context: PVOID) -> NTSTATUS {
    // SAFETY: the PnP manager passes a DEVICE_INTERFACE_CHANGE_NOTIFICATION for this category,
    // valid during the call, and the context the registration gave (a live `InterfaceChangeFn`
    // until IoUnregisterPlugPlayNotificationEx returned, which waits for running callbacks).
    unsafe {
        let notification = &*notification.cast::<DEVICE_INTERFACE_CHANGE_NOTIFICATION>();
        let callback = &*context.cast::<InterfaceChangeFn>();
        // The pool refused the copy of the link: this notification is lost (traced). The PnP
        // manager acts on the status of target-device query-removes only.
        let link = match super::wdf::from_unicode_string(notification.SymbolicLinkName) {
            Ok(link) => link,
            Err(status) => {
                crate::platform::nt::NtTrace::trace(
                    TraceLevel::Error,
                    "DmfRs",
                    format_args!("device-interface notification dropped: {status:?}"),
                );
                return STATUS_SUCCESS;
            }
        };
        let event = from_wdk_guid(notification.Event);
        if event == GUID_DEVICE_INTERFACE_ARRIVAL {
            callback(&InterfaceChange::Arrival(link));
        } else if event == GUID_DEVICE_INTERFACE_REMOVAL {
            callback(&InterfaceChange::Removal(link));
        }
    }
    STATUS_SUCCESS
}

/// A registration for device-interface arrival and removal (`IoRegisterPlugPlayNotification`);
/// unregistered by [`unregister`](Self::unregister) or on drop (`IoUnregisterPlugPlayNotificationEx`,
/// which waits for a callback in progress).
pub struct InterfaceNotification {
    // INVARIANT: `entry` is a live registration whose context is `context` (a leaked
    // `Box<InterfaceChangeFn>`), both released together, once.
    entry: PVOID,
    context: *mut InterfaceChangeFn,
}

// SAFETY: the registration may be removed from any thread at PASSIVE_LEVEL; the closure is
// `Send + Sync`.
unsafe impl Send for InterfaceNotification {}
// SAFETY: `&InterfaceNotification` exposes nothing.
unsafe impl Sync for InterfaceNotification {}

impl core::fmt::Debug for InterfaceNotification {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InterfaceNotification")
            .finish_non_exhaustive()
    }
}

impl InterfaceNotification {
    /// `IoUnregisterPlugPlayNotificationEx`.
    pub fn unregister(self) {
        drop(self);
    }
}

impl Drop for InterfaceNotification {
    fn drop(&mut self) {
        // SAFETY: a live registration (invariant), removed once; afterwards no callback runs, so
        // the context can be freed.
        unsafe {
            let _ = wdk_sys::ntddk::IoUnregisterPlugPlayNotificationEx(self.entry);
            drop(Box::from_raw(self.context));
        }
    }
}

/// `IoRegisterPlugPlayNotification(EventCategoryDeviceInterfaceChange,
/// PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES, class, WdfDriverWdmGetDriverObject(…))`.
pub(super) fn register_interface_notification(
    class: Guid,
    callback: InterfaceChangeFn,
) -> NtResult<InterfaceNotification> {
    if super::exec::CurrentIrql::current() != Irql::Passive {
        return Err(NtStatus::INVALID_DEVICE_STATE);
    }
    let mut guid = to_wdk_guid(class);
    // SAFETY: this image's driver.
    let driver_object =
        unsafe { call_unsafe_wdf_function_binding!(WdfDriverWdmGetDriverObject, wdf_driver()) };
    let context = Box::into_raw(try_box(callback)?);
    let mut entry: PVOID = null_mut();
    // SAFETY: PASSIVE_LEVEL (checked); the GUID is copied by the call; the callback matches
    // DRIVER_NOTIFICATION_CALLBACK_ROUTINE; `context` stays alive until unregistration.
    let status = unsafe {
        wdk_sys::ntddk::IoRegisterPlugPlayNotification(
            EVENT_CATEGORY_DEVICE_INTERFACE_CHANGE,
            PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES,
            core::ptr::from_mut(&mut guid).cast::<c_void>(),
            driver_object,
            Some(interface_change_callback),
            context.cast::<c_void>(),
            &raw mut entry,
        )
    };
    if let Err(error) = nt_result(status) {
        // SAFETY: not registered, so the context is still ours alone.
        drop(unsafe { Box::from_raw(context) });
        return Err(error);
    }
    Ok(InterfaceNotification { entry, context })
}
