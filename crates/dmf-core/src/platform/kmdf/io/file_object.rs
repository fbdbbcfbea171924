//! `WDFFILEOBJECT`: [`FileObject`], its context [`FileState`], and the file-object trampolines
//! (`EvtDeviceFileCreate`, `EvtFileCleanup`, `EvtFileClose`, `EvtCleanupCallback`; their closures
//! live in the device context).

use core::sync::atomic::{AtomicBool, Ordering};

use wdk_sys::{call_unsafe_wdf_function_binding, WDFDEVICE, WDFFILEOBJECT, WDFOBJECT, WDFREQUEST};

use super::{Request, FILE_CONTEXT};
use crate::platform::contract::io::{PlatformFileObject, PlatformRequest};
use crate::platform::kmdf::device::{file_device, with_device_state};
use crate::platform::kmdf::wdf::{as_object, request_parameters_init, FALSE};
use crate::status::NtStatus;

/// The context of every file object (all-zero: not an administrator).
pub(in crate::platform::kmdf) struct FileState {
    administrator: AtomicBool,
}

/// A `WDFFILEOBJECT`: a copyable handle, equality is identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileObject {
    pub(super) handle: WDFFILEOBJECT,
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
pub(in crate::platform::kmdf) unsafe extern "C" fn evt_device_file_create(
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
pub(in crate::platform::kmdf) unsafe extern "C" fn evt_file_cleanup(file: WDFFILEOBJECT) {
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
pub(in crate::platform::kmdf) unsafe extern "C" fn evt_file_close(file: WDFFILEOBJECT) {
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
pub(in crate::platform::kmdf) unsafe extern "C" fn evt_file_object_cleanup(object: WDFOBJECT) {
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
