//! Requests, queues, file objects, I/O targets and device-interface notifications on KMDF: one
//! file per object.
//!
//! Each method is one WDF (or I/O manager) call plus the conversion of handles, enums and
//! statuses. Closures live in object contexts and are reached from `extern "C"` trampolines:
//!
//! | Object | File | Context | Trampolines |
//! |---|---|---|---|
//! | `WDFQUEUE` | `queue.rs` | [`QueueState`] (the `QueueConfig`) | `EvtIoRead`/`Write`/`DeviceControl`/`InternalDeviceControl`/`Default`/`Stop`/`Resume`/`CanceledOnQueue` |
//! | `WDFREQUEST` (every one: `WdfDeviceInitSetRequestAttributes`, and those `WdfRequestCreate` makes) | `request.rs` | [`RequestState`] (zero-valid) | `EvtRequestCancel`, `EvtRequestCompletionRoutine` |
//! | `WDFFILEOBJECT` | `file_object.rs` | [`FileState`] (zero-valid) | `EvtDeviceFileCreate`, `EvtFileCleanup`, `EvtFileClose`, the file objects' `EvtCleanupCallback` (closures in the device context) |
//! | remote `WDFIOTARGET` | `target.rs` | [`TargetState`] | `EvtIoTargetQueryRemove`/`RemoveCanceled`/`RemoveComplete` |
//! | PnP notification entry | `interface_notification.rs` | the boxed closure (`Context`) | `DRIVER_NOTIFICATION_CALLBACK_ROUTINE` |
//!
//! The four WDF object context types are declared here rather than beside their objects: the
//! context macros of `wdf.rs` declare their statics `pub(super)`, and here that is the whole
//! backend (`device.rs` sets the request and file-object contexts on the device).

mod file_object;
mod interface_notification;
mod queue;
mod request;
mod target;

pub use file_object::FileObject;
pub(super) use file_object::{
    evt_device_file_create, evt_file_cleanup, evt_file_close, evt_file_object_cleanup,
};
pub(super) use interface_notification::register_interface_notification;
pub use interface_notification::InterfaceNotification;
pub use queue::Queue;
pub(super) use request::wdf_request_type;
pub use request::Request;
pub use target::IoTarget;

use super::wdf::{context_type, zeroed_context_type};
use file_object::FileState;
use queue::QueueState;
use request::RequestState;
use target::TargetState;

zeroed_context_type!(
    /// The context of every `WDFREQUEST` (all-zero is a valid [`RequestState`]: atomics and
    /// empty take-cells).
    REQUEST_CONTEXT: RequestState = c"DmfRsRequest", request_context_destroy
);

context_type!(
    /// The context of every `WDFQUEUE` the backend creates.
    QUEUE_CONTEXT: QueueState = c"DmfRsQueue", queue_context_destroy
);

zeroed_context_type!(
    /// The context of every `WDFFILEOBJECT` (all-zero is a valid [`FileState`]).
    FILE_CONTEXT: FileState = c"DmfRsFile", file_context_destroy
);

context_type!(
    /// The context of every remote `WDFIOTARGET` the backend creates.
    TARGET_CONTEXT: TargetState = c"DmfRsIoTarget", target_context_destroy
);
