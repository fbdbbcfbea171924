//! `WDFREQUEST`: [`Request`], its context [`RequestState`], and the `EvtRequestCancel` and
//! `EvtRequestCompletionRoutine` trampolines.
//!
//! A request's buffers for a driver-created request (`format_for_*`) are `WDFMEMORY` objects
//! parented to the request; formatting again deletes the previous ones, so a reused request does

use alloc::boxed::Box;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use core::time::Duration;

use wdk_sys::{
    call_unsafe_wdf_function_binding, _POOL_TYPE, _WDF_REQUEST_SEND_OPTIONS_FLAGS,
    _WDF_REQUEST_TYPE, NT_SUCCESS, PVOID, PWDF_REQUEST_COMPLETION_PARAMS, ULONG, WDFCONTEXT,
    WDFIOTARGET, WDFMEMORY, WDFREQUEST, WDF_REQUEST_TYPE,
};

use super::{FileObject, IoTarget, Queue, REQUEST_CONTEXT};
use crate::fallible::try_box;
use crate::platform::contract::io::{
    CompletionParams, PlatformFileObject, PlatformRequest, RequestParameters, RequestType,
    RequestorMode, SendOptions,
};
use crate::platform::kmdf::wdf::{
    as_object, boolean, nt_result, object_attributes_init, relative_timeout,
    request_parameters_init, request_reuse_params_init, request_send_options_init, OnceCell,
    TakeCell, ThinOnce, FALSE, USER_MODE,
};
use crate::status::{NtResult, NtStatus};

/// Which of a request's two buffers.
#[derive(Clone, Copy)]
enum Direction {
    Input,
    Output,
}

/// `NonPagedPoolNx` (`POOL_TYPE`), for `WdfMemoryCreate`.
const NON_PAGED_POOL_NX: wdk_sys::POOL_TYPE = _POOL_TYPE::NonPagedPoolNx;
/// The pool tag of request buffers (`'MfmD'` in C notation).
const MEMORY_TAG: ULONG = u32::from_le_bytes(*b"DmfM");
/// `WDF_REQUEST_SEND_OPTION_TIMEOUT` (`WDF_REQUEST_SEND_OPTIONS_FLAGS`, as the `ULONG` of `Flags`).
pub(super) const SEND_OPTION_TIMEOUT: ULONG =
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
/// No `WDF_REQUEST_SEND_OPTIONS_FLAGS` bit (the header has no name for the empty set).
pub(super) const NO_SEND_OPTIONS: ULONG = 0; // not a WDF/NT value: the empty flag set

/// The `WDF_REQUEST_TYPE` of a contract request type (the `IRP_MJ_*` codes).
pub(in crate::platform::kmdf) fn wdf_request_type(kind: RequestType) -> WDF_REQUEST_TYPE {
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

/// The context of every request. All fields are atomics or [`TakeCell`]s, so all-zero bytes (what
/// WDF gives a new request) are a valid, empty state.
pub(in crate::platform::kmdf) struct RequestState {
    cancel: TakeCell<Box<dyn FnOnce(Request) + Send>>,
    completion: OnceCell<(Request, CompletionParams)>,
    /// The target a driver-created request was created for (null for presented requests).
    pub(super) target: AtomicPtr<wdk_sys::WDFIOTARGET__>,
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
    pub(in crate::platform::kmdf) fn from_raw(handle: WDFREQUEST) -> Request {
        Request { handle }
    }

    /// The `WDFREQUEST` handle, for WDF calls the contract does not cover.
    pub fn raw(&self) -> WDFREQUEST {
        self.handle
    }

    pub(super) fn state(&self) -> Option<&RequestState> {
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

    /// The request's memory of `len` bytes in `slot`, filled from `data` or zeroed; null for zero
    /// bytes. The memory already in `slot` is reused when it has exactly `len` bytes (a reused
    /// request formatted again, as a stream's is: no `WdfMemoryCreate`/`WdfObjectDelete` pair per
    /// send); otherwise it is replaced (and deleted) by a new `WdfMemoryCreate` parented to the
    /// request.
    fn replace_memory(
        &self,
        slot: &AtomicPtr<wdk_sys::WDFMEMORY__>,
        data: Option<&[u8]>,
        len: usize,
    ) -> NtResult<WDFMEMORY> {
        let kept = slot.load(Ordering::Acquire);
        if len != 0 && !kept.is_null() {
            let mut size: usize = 0;
            // SAFETY: a live memory object we created for this request; out pointer to our
            // local. The request is being formatted, so the memory is not in use.
            let buffer = unsafe {
                call_unsafe_wdf_function_binding!(WdfMemoryGetBuffer, kept, &raw mut size)
            }
            .cast::<u8>();
            if size == len && !buffer.is_null() {
                // SAFETY: `buffer` holds `len` bytes that only this request's formatting touches.
                unsafe {
                    match data {
                        Some(data) => core::ptr::copy_nonoverlapping(data.as_ptr(), buffer, len),
                        None => core::ptr::write_bytes(buffer, 0, len),
                    }
                }
                return Ok(kept);
            }
        }
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

    /// The input or output buffer of the request and its length, at least `min_len` bytes
    /// (`STATUS_BUFFER_TOO_SMALL` otherwise): `WdfRequestRetrieve{Input,Output}Buffer`, or
    /// `WdfMemoryGetBuffer` of the memory a driver-created request was formatted with. The caller
    /// holds the request's buffer view.
    fn buffer(&self, direction: Direction, min_len: usize) -> NtResult<(*mut u8, usize)> {
        let own = self.state().map_or(null_mut(), |s| match direction {
            Direction::Input => s.input.load(Ordering::Acquire),
            Direction::Output => s.output.load(Ordering::Acquire),
        });
        let (buffer, len) = if own.is_null() {
            let mut buffer: PVOID = null_mut();
            let mut len: usize = 0;
            // SAFETY: live request; out pointers to our locals.
            nt_result(unsafe {
                match direction {
                    Direction::Input => call_unsafe_wdf_function_binding!(
                        WdfRequestRetrieveInputBuffer,
                        self.handle,
                        min_len,
                        &raw mut buffer,
                        &raw mut len
                    ),
                    Direction::Output => call_unsafe_wdf_function_binding!(
                        WdfRequestRetrieveOutputBuffer,
                        self.handle,
                        min_len,
                        &raw mut buffer,
                        &raw mut len
                    ),
                }
            })?;
            (buffer.cast::<u8>(), len)
        } else {
            Self::memory_buffer(own)
        };
        if len < min_len {
            return Err(NtStatus::BUFFER_TOO_SMALL);
        }
        Ok((buffer, len))
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
        routine.call((request, params));
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
        let (buffer, len) = self.buffer(Direction::Input, min_len)?;
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
        let (buffer, len) = self.buffer(Direction::Output, min_len)?;
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
        // One allocation (closure and its call/drop functions), not a box of a `Box<dyn FnOnce>`.
        let stored = ThinOnce::try_new(move |(request, params)| routine(request, params));
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
