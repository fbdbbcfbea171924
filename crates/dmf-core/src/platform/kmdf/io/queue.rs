//! `WDFQUEUE`: [`Queue`], its context [`QueueState`], and the `EvtIo*` trampolines.

use core::ptr::null_mut;

use wdk_sys::{
    call_unsafe_wdf_function_binding, _WDF_REQUEST_STOP_ACTION_FLAGS, ULONG, WDFQUEUE, WDFREQUEST,
    WDF_TRI_STATE,
};

use super::{FileObject, Request, QUEUE_CONTEXT};
use crate::platform::contract::io::{
    PlatformQueue, PlatformRequest, QueueConfig, QueueDispatch, StopFlags,
};
use crate::platform::kmdf::device::Device;
use crate::platform::kmdf::wdf::{
    as_object, boolean, io_queue_config_init, nt_result, object_attributes_with_context, WDF_FALSE,
    WDF_IO_QUEUE_DISPATCH_MANUAL, WDF_IO_QUEUE_DISPATCH_PARALLEL, WDF_IO_QUEUE_DISPATCH_SEQUENTIAL,
    WDF_TRUE,
};
use crate::status::{NtResult, NtStatus};

/// `WdfRequestStopActionPurge` (`WDF_REQUEST_STOP_ACTION_FLAGS`, as `EvtIoStop`'s `ULONG`).
const STOP_ACTION_PURGE: ULONG =
    _WDF_REQUEST_STOP_ACTION_FLAGS::WdfRequestStopActionPurge.cast_unsigned();
/// `WdfRequestStopRequestCancelable`.
const STOP_REQUEST_CANCELABLE: ULONG =
    _WDF_REQUEST_STOP_ACTION_FLAGS::WdfRequestStopRequestCancelable.cast_unsigned();

/// The context of a queue the backend created: its callbacks and dispatch type.
pub(in crate::platform::kmdf) struct QueueState {
    config: QueueConfig<Queue, Request>,
}

/// A `WDFQUEUE`: a copyable handle, equality is identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    pub(super) handle: WDFQUEUE,
}

// SAFETY: a WDFQUEUE handle may be used from any thread while the queue exists.
unsafe impl Send for Queue {}
// SAFETY: as for `Send`.
unsafe impl Sync for Queue {}

impl Queue {
    pub(in crate::platform::kmdf) fn from_raw(handle: WDFQUEUE) -> Queue {
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
