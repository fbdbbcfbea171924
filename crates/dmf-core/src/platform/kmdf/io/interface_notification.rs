//! Device-interface arrival and removal notifications: [`InterfaceNotification`], a PnP
//! notification entry (`IoRegisterPlugPlayNotification`) whose context is the boxed closure, and
//! its `DRIVER_NOTIFICATION_CALLBACK_ROUTINE`.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::ffi::c_void;
use core::mem::{offset_of, size_of};
use core::ptr::null_mut;

use wdk_sys::{
    call_unsafe_wdf_function_binding, _IO_NOTIFICATION_EVENT_CATEGORY,
    DEVICE_INTERFACE_CHANGE_NOTIFICATION, NTSTATUS, PVOID, STATUS_SUCCESS, ULONG,
};

use crate::fallible::try_box;
use crate::platform::contract::device::Guid;
use crate::platform::contract::io::InterfaceChange;
use crate::platform::contract::{Irql, PlatformIrql, TraceLevel};
use crate::platform::kmdf::device::{from_wdk_guid, to_wdk_guid, wdf_driver};
use crate::platform::kmdf::exec::CurrentIrql;
use crate::platform::kmdf::wdf::{from_unicode_string, nt_result};
use crate::status::{NtResult, NtStatus};

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
        let link = match from_unicode_string(notification.SymbolicLinkName) {
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
pub(in crate::platform::kmdf) fn register_interface_notification(
    class: Guid,
    callback: InterfaceChangeFn,
) -> NtResult<InterfaceNotification> {
    if CurrentIrql::current() != Irql::Passive {
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
