//! `WDFIOTARGET`: [`IoTarget`] (the device's local target or a remote one), the remote targets'
//! context [`TargetState`], and the `EvtIoTarget*` removal trampolines.

use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;

use wdk_sys::{
    call_unsafe_wdf_function_binding, _WDF_IO_TARGET_SENT_IO_ACTION, _WDF_IO_TARGET_STATE,
    _WDF_MEMORY_DESCRIPTOR_TYPE, NTSTATUS, ULONG, WDFIOTARGET, WDFREQUEST,
    WDF_IO_TARGET_SENT_IO_ACTION, WDF_MEMORY_DESCRIPTOR,
};

use super::request::{NO_SEND_OPTIONS, SEND_OPTION_TIMEOUT};
use super::{Request, REQUEST_CONTEXT, TARGET_CONTEXT};
use crate::fallible::{try_to_vec, try_vec_filled};
use crate::platform::contract::io::{
    IoTargetState, PlatformIoTarget, TargetFn, TargetOpenParams, TargetQueryRemoveFn,
};
use crate::platform::kmdf::device::{to_ntstatus, Device};
use crate::platform::kmdf::wdf::{
    as_object, io_target_open_params_init, nt_result, object_attributes_with_context,
    relative_timeout, request_send_options_init, UnicodeName,
};
use crate::platform::nt::NtSpinLock;
use crate::status::{NtResult, NtStatus};

/// `GENERIC_READ`.
const GENERIC_READ: wdk_sys::ACCESS_MASK = wdk_sys::GENERIC_READ;
/// `GENERIC_WRITE`.
const GENERIC_WRITE: wdk_sys::ACCESS_MASK = wdk_sys::GENERIC_WRITE;

/// The removal callbacks of the last `open` by name.
#[derive(Default)]
struct TargetCallbacks {
    query_remove: Option<TargetQueryRemoveFn<IoTarget>>,
    remove_canceled: Option<TargetFn<IoTarget>>,
    remove_complete: Option<TargetFn<IoTarget>>,
}

/// The context of a remote target the backend created.
pub(in crate::platform::kmdf) struct TargetState {
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

/// A `WDFIOTARGET`: the device's local target or a remote one the driver created.
#[derive(Clone, Debug)]
pub struct IoTarget {
    pub(super) handle: WDFIOTARGET,
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
    pub(in crate::platform::kmdf) fn from_local(handle: WDFIOTARGET) -> IoTarget {
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
