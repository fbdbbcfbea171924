//! Contract items for I/O: requests, queues, file objects, I/O targets and device-interface
//! notifications.
//!
//! | Item | Trait / type | kmdf mapping |
//! |---|---|---|
//! | request | [`PlatformRequest`] | `WDFREQUEST`: `WdfRequestGetParameters`, `WdfRequestRetrieveInputBuffer` / `…OutputBuffer`, `WdfRequestSetInformation`, `WdfRequestComplete(WithInformation)`, `WdfRequestMarkCancelableEx` / `WdfRequestUnmarkCancelable` / `WdfRequestIsCanceled`, `WdfRequestStopAcknowledge`, `WdfRequestForwardToIoQueue`, `WdfRequestRequeue`, `WdfRequestFormatRequestUsingCurrentType`, `WdfIoTargetFormatRequestFor…`, `WdfRequestSetCompletionRoutine`, `WdfRequestSend`, `WdfRequestCancelSentRequest`, `WdfRequestReuse`, `WdfObjectDelete`, `WdfRequestGetRequestorMode`, `WdfRequestGetFileObject` |
//! | queue | [`PlatformQueue`], [`QueueConfig`] | `WDFQUEUE`: `WdfIoQueueCreate` (`WDF_IO_QUEUE_CONFIG`), `WdfIoQueueRetrieveNextRequest`, `WdfIoQueueRetrieveRequestByFileObject`, `WdfIoQueueStart`, `WdfIoQueueStopSynchronously`, `WdfIoQueuePurgeSynchronously`, `WdfIoQueueDrainSynchronously`, `WdfDeviceConfigureRequestDispatching` |
//! | file object | [`PlatformFileObject`], [`FileObjectConfig`] | `WDFFILEOBJECT`, `WdfDeviceInitSetFileObjectConfig` (`EvtDeviceFileCreate`, `EvtFileCleanup`, `EvtFileClose`; the file objects' `EvtCleanupCallback` in its `FileObjectAttributes`) |
//! | I/O target | [`PlatformIoTarget`], [`TargetOpenParams`] | `WDFIOTARGET`: `WdfDeviceGetIoTarget`, `WdfIoTargetCreate`, `WdfIoTargetOpen` (`WDF_IO_TARGET_OPEN_PARAMS_INIT_OPEN_BY_NAME` with `EvtIoTargetQueryRemove` / `…RemoveCanceled` / `…RemoveComplete`), `WdfIoTargetStart` / `Stop` / `CloseForQueryRemove` / `Close`, `WdfRequestCreate`, `WdfIoTargetSendIoctlSynchronously` |
//! | device-interface notification | [`PlatformDevice::register_interface_notification`](super::device::PlatformDevice) | `IoRegisterPlugPlayNotification(EventCategoryDeviceInterfaceChange)` / `IoUnregisterPlugPlayNotificationEx` |
//!
//! The traits name each other through associated types so that one backend's request, queue,
//! file object and target fit together; the platform module re-exports the concrete types
//! (`platform::Request`, `platform::Queue`, …) and instantiated configs.
//!
//! Ownership follows KMDF's rule, written into the types: a [`PlatformRequest`] value is the
//! driver's right to finish the request, and every way of finishing it — completing, forwarding
//! to a queue, requeueing, deleting a driver-created request — consumes it. A forward that fails
//! hands the request back with the status. A request the driver drops without finishing is a
//! leak the simulator's verifier reports at device teardown.

use alloc::string::String;
use alloc::sync::Arc;
use core::time::Duration;

use crate::status::{NtResult, NtStatus};

/// `WDF_REQUEST_TYPE`: the major function of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestType {
    /// `IRP_MJ_CREATE`.
    Create,
    /// `IRP_MJ_CLEANUP`.
    Cleanup,
    /// `IRP_MJ_CLOSE`.
    Close,
    /// `IRP_MJ_READ`.
    Read,
    /// `IRP_MJ_WRITE`.
    Write,
    /// `IRP_MJ_DEVICE_CONTROL`.
    DeviceControl,
    /// `IRP_MJ_INTERNAL_DEVICE_CONTROL`.
    InternalDeviceControl,
}

/// `KPROCESSOR_MODE` of a request's originator (`WdfRequestGetRequestorMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestorMode {
    /// `UserMode`: an application.
    User,
    /// `KernelMode`: a driver.
    Kernel,
}

/// `WDF_REQUEST_PARAMETERS` (`WdfRequestGetParameters`), flattened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestParameters {
    /// The request type.
    pub kind: RequestType,
    /// `IoControlCode` for IOCTLs, else 0.
    pub ioctl_code: u32,
    /// Bytes in the input buffer (IOCTLs and writes).
    pub input_length: usize,
    /// Bytes in the output buffer (IOCTLs and reads).
    pub output_length: usize,
    /// `DeviceOffset` of a read or write.
    pub offset: u64,
}

/// `WDF_REQUEST_COMPLETION_PARAMS`: how a sent request came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletionParams {
    /// `IoStatus.Status`.
    pub status: NtStatus,
    /// `IoStatus.Information`.
    pub information: usize,
}

/// `WDF_REQUEST_SEND_OPTIONS`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// `WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET` (no completion routine; the request is gone).
    pub send_and_forget: bool,
    /// `WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE`.
    pub ignore_target_state: bool,
    /// `WDF_REQUEST_SEND_OPTION_TIMEOUT` (relative): the framework cancels the request then.
    pub timeout: Option<Duration>,
}

/// `WDF_IO_QUEUE_DISPATCH_TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueDispatch {
    /// One request at a time.
    Sequential,
    /// As many as arrive.
    Parallel,
    /// None: the driver retrieves them.
    Manual,
}

/// `WDF_REQUEST_STOP_ACTION_FLAGS` as `EvtIoStop` receives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopFlags {
    /// `WdfRequestStopActionPurge` (the device is leaving for good) rather than `…Suspend`.
    pub purge: bool,
    /// `WdfRequestStopRequestCancelable`: the request is marked cancelable.
    pub cancelable: bool,
}

/// `WDF_IO_TARGET_STATE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoTargetState {
    /// `WdfIoTargetStarted`.
    Started,
    /// `WdfIoTargetStopped`.
    Stopped,
    /// `WdfIoTargetClosedForQueryRemove`.
    ClosedForQueryRemove,
    /// `WdfIoTargetClosed`.
    Closed,
    /// `WdfIoTargetDeleted`.
    Deleted,
}

/// Arrival or removal of a device interface (`GUID_DEVICE_INTERFACE_ARRIVAL` / `…_REMOVAL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterfaceChange {
    /// An interface of the class was enabled; its symbolic link.
    Arrival(String),
    /// An interface of the class was disabled; its symbolic link.
    Removal(String),
}

/// A `WDFREQUEST` the driver owns. See the module doc for the ownership rule.
pub trait PlatformRequest: Sized + Send + 'static {
    /// The backend's queue.
    type Queue: PlatformQueue<Request = Self>;
    /// The backend's file object.
    type FileObject: PlatformFileObject;
    /// The backend's I/O target.
    type IoTarget: PlatformIoTarget<Request = Self>;

    /// A number unique among the machine's live requests (for traces).
    fn id(&self) -> u64;
    /// `WdfRequestGetParameters`.
    fn parameters(&self) -> RequestParameters;
    /// `WdfRequestGetRequestorMode`.
    fn requestor_mode(&self) -> RequestorMode;
    /// Whether the originator's token is an administrator's (`SeTokenIsAdmin` on the subject
    /// context captured at create time; what C DMF's IoctlHandler checks).
    fn is_requestor_administrator(&self) -> bool;
    /// `WdfRequestGetFileObject`.
    fn file_object(&self) -> Option<Self::FileObject>;
    /// `WdfRequestRetrieveInputBuffer(min_len)`: `f` sees the input buffer.
    ///
    /// # Errors
    ///
    /// `STATUS_BUFFER_TOO_SMALL` if it is shorter than `min_len`; `STATUS_INVALID_DEVICE_REQUEST`
    /// for a request type without one (and for a user-mode `METHOD_NEITHER` IOCTL, whose
    /// buffers are user addresses); `STATUS_INVALID_DEVICE_STATE` when called inside `f` of
    /// another buffer view of the same request (with `METHOD_BUFFERED` the input and output are
    /// one buffer: a nested view would alias it).
    fn with_input_buffer<R>(&self, min_len: usize, f: impl FnOnce(&[u8]) -> R) -> NtResult<R>;
    /// `WdfRequestRetrieveOutputBuffer(min_len)`: `f` fills the output buffer.
    ///
    /// # Errors
    ///
    /// As [`with_input_buffer`](Self::with_input_buffer).
    fn with_output_buffer<R>(&self, min_len: usize, f: impl FnOnce(&mut [u8]) -> R) -> NtResult<R>;
    /// `WdfRequestSetInformation`.
    fn set_information(&self, information: usize);
    /// `WdfRequestGetInformation`.
    fn information(&self) -> usize;
    /// `WdfRequestGetStatus`.
    fn status(&self) -> NtStatus;
    /// `WdfRequestComplete`.
    fn complete(self, status: NtStatus);
    /// `WdfRequestCompleteWithInformation`.
    fn complete_with_information(self, status: NtStatus, information: usize);
    /// `WdfRequestMarkCancelableEx`: `routine` gets the request back if it is cancelled.
    ///
    /// # Errors
    ///
    /// `STATUS_CANCELLED` if it was already cancelled: the routine is not called and the driver
    /// still owns the request (complete it).
    fn mark_cancelable(&self, routine: impl FnOnce(Self) + Send + 'static) -> NtResult<()>;
    /// `WdfRequestUnmarkCancelable`.
    ///
    /// # Errors
    ///
    /// `STATUS_CANCELLED` if the cancel routine runs or has run: it owns the request now.
    fn unmark_cancelable(&self) -> NtResult<()>;
    /// `WdfRequestIsCanceled`.
    fn is_canceled(&self) -> bool;
    /// `WdfRequestStopAcknowledge` (from `EvtIoStop`).
    fn stop_acknowledge(&self, requeue: bool);
    /// `WdfRequestForwardToIoQueue`.
    ///
    /// # Errors
    ///
    /// The request comes back with the status when the queue refuses it.
    fn forward_to_queue(self, queue: &Self::Queue) -> Result<(), (Self, NtStatus)>;
    /// `WdfRequestRequeue` (to the head of its manual queue).
    ///
    /// # Errors
    ///
    /// As [`forward_to_queue`](Self::forward_to_queue).
    fn requeue(self) -> Result<(), (Self, NtStatus)>;
    /// `WdfRequestFormatRequestUsingCurrentType` (before passing a request down unchanged).
    fn format_using_current_type(&self);
    /// `WdfIoTargetFormatRequestForIoctl` on a driver-created request.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` if the request is not the driver's own or is in flight.
    fn format_for_ioctl(&self, code: u32, input: &[u8], output_length: usize) -> NtResult<()>;
    /// `WdfIoTargetFormatRequestForInternalIoctl`.
    ///
    /// # Errors
    ///
    /// As [`format_for_ioctl`](Self::format_for_ioctl).
    fn format_for_internal_ioctl(
        &self,
        code: u32,
        input: &[u8],
        output_length: usize,
    ) -> NtResult<()>;
    /// `WdfIoTargetFormatRequestForRead`.
    ///
    /// # Errors
    ///
    /// As [`format_for_ioctl`](Self::format_for_ioctl).
    fn format_for_read(&self, length: usize, offset: u64) -> NtResult<()>;
    /// `WdfIoTargetFormatRequestForWrite`.
    ///
    /// # Errors
    ///
    /// As [`format_for_ioctl`](Self::format_for_ioctl).
    fn format_for_write(&self, data: &[u8], offset: u64) -> NtResult<()>;
    /// `WdfRequestSetCompletionRoutine`: `routine` gets the request back when the lower driver
    /// completes it (it must then complete or reuse it).
    fn set_completion_routine(&self, routine: impl FnOnce(Self, CompletionParams) + Send + 'static);
    /// `WdfRequestSend`. With `send_and_forget` the driver loses the request on success.
    ///
    /// # Errors
    ///
    /// The status `WdfRequestGetStatus` gives after a failed send (the driver still owns it).
    fn send(&self, target: &Self::IoTarget, options: SendOptions) -> NtResult<()>;
    /// `WdfRequestSend` with `WDF_REQUEST_SEND_OPTION_SYNCHRONOUS`: the completion status.
    fn send_synchronously(&self, target: &Self::IoTarget, timeout: Option<Duration>) -> NtStatus;
    /// `WdfRequestCancelSentRequest`.
    fn cancel_sent_request(&self) -> bool;
    /// `WdfRequestReuse` of a driver-created request.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` if it is not reusable now (in flight, or not the driver's
    /// own).
    fn reuse(&self, status: NtStatus) -> NtResult<()>;
    /// `WdfObjectDelete` of a driver-created request.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` if it is not the driver's own or is in flight.
    fn delete(self) -> NtResult<()>;
}

/// A `WDFQUEUE`.
pub trait PlatformQueue: Clone + Send + Sync + 'static {
    /// The backend's request.
    type Request: PlatformRequest<Queue = Self>;

    /// `WdfIoQueueGetState`'s dispatch type.
    fn dispatch(&self) -> QueueDispatch;
    /// `WdfIoQueueRetrieveNextRequest` (manual queues).
    ///
    /// # Errors
    ///
    /// `STATUS_NO_MORE_ENTRIES` when empty; `STATUS_WDF_PAUSED` / `INVALID_DEVICE_STATE` when
    /// stopped.
    fn retrieve_next_request(&self) -> NtResult<Self::Request>;
    /// `WdfIoQueueRetrieveRequestByFileObject`.
    ///
    /// # Errors
    ///
    /// As [`retrieve_next_request`](Self::retrieve_next_request).
    fn retrieve_request_by_file_object(
        &self,
        file: &<Self::Request as PlatformRequest>::FileObject,
    ) -> NtResult<Self::Request>;
    /// `WdfIoQueueStart`.
    fn start(&self);
    /// `WdfIoQueueStopSynchronously`.
    fn stop_synchronously(&self);
    /// `WdfIoQueuePurgeSynchronously`.
    fn purge_synchronously(&self);
    /// `WdfIoQueueDrainSynchronously`.
    fn drain_synchronously(&self);
}

/// `EvtIoRead` / `EvtIoWrite`: queue, request, length.
pub type IoLengthFn<Q, R> = Arc<dyn Fn(&Q, R, usize) + Send + Sync>;
/// `EvtIoDeviceControl` / `EvtIoInternalDeviceControl`: queue, request, output length, input
/// length, control code.
pub type IoControlFn<Q, R> = Arc<dyn Fn(&Q, R, usize, usize, u32) + Send + Sync>;
/// `EvtIoDefault` / `EvtIoResume` / `EvtIoCanceledOnQueue`.
pub type IoRequestFn<Q, R> = Arc<dyn Fn(&Q, R) + Send + Sync>;
/// `EvtIoStop`: a second handle on a request the driver already owns (acknowledge it, or
/// complete it through either handle; dropping this one gives nothing up).
pub type IoStopFn<Q, R> = Arc<dyn Fn(&Q, R, StopFlags) + Send + Sync>;

/// `WDF_IO_QUEUE_CONFIG`.
pub struct QueueConfig<Q, R> {
    /// The dispatch type.
    pub dispatch: QueueDispatch,
    /// `WDF_IO_QUEUE_CONFIG_INIT_DEFAULT_QUEUE`: the device's default queue.
    pub default_queue: bool,
    /// `PowerManaged` (`None`: `WdfUseDefault` — power-managed unless in a filter).
    pub power_managed: Option<bool>,
    /// `AllowZeroLengthRequests`.
    pub allow_zero_length_requests: bool,
    /// `EvtIoRead`.
    pub read: Option<IoLengthFn<Q, R>>,
    /// `EvtIoWrite`.
    pub write: Option<IoLengthFn<Q, R>>,
    /// `EvtIoDeviceControl`.
    pub device_control: Option<IoControlFn<Q, R>>,
    /// `EvtIoInternalDeviceControl`.
    pub internal_device_control: Option<IoControlFn<Q, R>>,
    /// `EvtIoDefault`.
    pub default: Option<IoRequestFn<Q, R>>,
    /// `EvtIoStop`.
    pub stop: Option<IoStopFn<Q, R>>,
    /// `EvtIoResume`.
    pub resume: Option<IoRequestFn<Q, R>>,
    /// `EvtIoCanceledOnQueue`.
    pub canceled_on_queue: Option<IoRequestFn<Q, R>>,
}

impl<Q, R> QueueConfig<Q, R> {
    /// `WDF_IO_QUEUE_CONFIG_INIT`: a non-default queue without callbacks.
    pub fn new(dispatch: QueueDispatch) -> Self {
        QueueConfig {
            dispatch,
            default_queue: false,
            power_managed: None,
            allow_zero_length_requests: false,
            read: None,
            write: None,
            device_control: None,
            internal_device_control: None,
            default: None,
            stop: None,
            resume: None,
            canceled_on_queue: None,
        }
    }

    /// `WDF_IO_QUEUE_CONFIG_INIT_DEFAULT_QUEUE`.
    pub fn new_default(dispatch: QueueDispatch) -> Self {
        QueueConfig {
            default_queue: true,
            ..Self::new(dispatch)
        }
    }
}

impl<Q, R> Clone for QueueConfig<Q, R> {
    fn clone(&self) -> Self {
        QueueConfig {
            dispatch: self.dispatch,
            default_queue: self.default_queue,
            power_managed: self.power_managed,
            allow_zero_length_requests: self.allow_zero_length_requests,
            read: self.read.clone(),
            write: self.write.clone(),
            device_control: self.device_control.clone(),
            internal_device_control: self.internal_device_control.clone(),
            default: self.default.clone(),
            stop: self.stop.clone(),
            resume: self.resume.clone(),
            canceled_on_queue: self.canceled_on_queue.clone(),
        }
    }
}

impl<Q, R> core::fmt::Debug for QueueConfig<Q, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("QueueConfig")
            .field("dispatch", &self.dispatch)
            .field("default_queue", &self.default_queue)
            .field("power_managed", &self.power_managed)
            .finish_non_exhaustive()
    }
}

/// A `WDFFILEOBJECT`.
pub trait PlatformFileObject: Clone + Send + Sync + 'static {
    /// A number unique among the machine's file objects (for tables keyed by handle).
    fn id(&self) -> u64;
    /// Whether the opener's token is an administrator's (`SeTokenIsAdmin`, captured at create).
    fn is_administrator(&self) -> bool;
}

/// `EvtDeviceFileCreate`: device, the create request (the driver completes it), the new file.
pub type FileCreateFn<D, R, F> = Arc<dyn Fn(&D, R, &F) + Send + Sync>;
/// `EvtFileCleanup` / `EvtFileClose`.
pub type FileFn<F> = Arc<dyn Fn(&F) + Send + Sync>;

/// `WDF_FILEOBJECT_CONFIG`.
pub struct FileObjectConfig<D, R, F> {
    /// `EvtDeviceFileCreate` (`None`: the framework succeeds the create, or passes it down in a
    /// filter).
    pub create: Option<FileCreateFn<D, R, F>>,
    /// `EvtFileCleanup`.
    pub cleanup: Option<FileFn<F>>,
    /// `EvtFileClose`.
    pub close: Option<FileFn<F>>,
    /// The file objects' `EvtCleanupCallback` (in the `FileObjectAttributes` of
    /// `WdfDeviceInitSetFileObjectConfig`): the `WDFFILEOBJECT` is being deleted. That is right
    /// after `EvtFileClose` for a file that opened, and — the point of this item — for a create
    /// that completed with an error status, at that completion (KMDF deletes the file object
    /// when the create fails; the I/O manager sends no cleanup or close for it). So every file
    /// object that reached `EvtDeviceFileCreate` gets this exactly once, whether it opened or
    /// not. It may run inside the call that completes the create, at `IRQL <= DISPATCH_LEVEL`.
    pub deleted: Option<FileFn<F>>,
}

impl<D, R, F> Default for FileObjectConfig<D, R, F> {
    fn default() -> Self {
        FileObjectConfig {
            create: None,
            cleanup: None,
            close: None,
            deleted: None,
        }
    }
}

impl<D, R, F> Clone for FileObjectConfig<D, R, F> {
    fn clone(&self) -> Self {
        FileObjectConfig {
            create: self.create.clone(),
            cleanup: self.cleanup.clone(),
            close: self.close.clone(),
            deleted: self.deleted.clone(),
        }
    }
}

/// `EvtIoTargetQueryRemove`: `Ok` lets the removal proceed (the target is closed for query
/// remove first), `Err` vetoes it.
pub type TargetQueryRemoveFn<T> = Arc<dyn Fn(&T) -> NtResult<()> + Send + Sync>;
/// `EvtIoTargetRemoveCanceled` / `EvtIoTargetRemoveComplete`.
pub type TargetFn<T> = Arc<dyn Fn(&T) + Send + Sync>;

/// `WDF_IO_TARGET_OPEN_PARAMS` (`…_INIT_OPEN_BY_NAME` or `…_INIT_REOPEN`).
pub struct TargetOpenParams<T> {
    /// The symbolic link to open (`None`: reopen what was last opened).
    pub symbolic_link: Option<String>,
    /// `DesiredAccess`: read.
    pub read: bool,
    /// `DesiredAccess`: write.
    pub write: bool,
    /// `EvtIoTargetQueryRemove`.
    pub query_remove: Option<TargetQueryRemoveFn<T>>,
    /// `EvtIoTargetRemoveCanceled`.
    pub remove_canceled: Option<TargetFn<T>>,
    /// `EvtIoTargetRemoveComplete`.
    pub remove_complete: Option<TargetFn<T>>,
}

impl<T> TargetOpenParams<T> {
    /// `WDF_IO_TARGET_OPEN_PARAMS_INIT_OPEN_BY_NAME` with read/write access.
    pub fn by_name(symbolic_link: &str) -> Self {
        TargetOpenParams {
            symbolic_link: Some(String::from(symbolic_link)),
            read: true,
            write: true,
            query_remove: None,
            remove_canceled: None,
            remove_complete: None,
        }
    }

    /// `WDF_IO_TARGET_OPEN_PARAMS_INIT_REOPEN` (after a cancelled query-remove).
    pub fn reopen() -> Self {
        TargetOpenParams {
            symbolic_link: None,
            ..Self::by_name("")
        }
    }
}

impl<T> Clone for TargetOpenParams<T> {
    fn clone(&self) -> Self {
        TargetOpenParams {
            symbolic_link: self.symbolic_link.clone(),
            read: self.read,
            write: self.write,
            query_remove: self.query_remove.clone(),
            remove_canceled: self.remove_canceled.clone(),
            remove_complete: self.remove_complete.clone(),
        }
    }
}

impl<T> core::fmt::Debug for TargetOpenParams<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TargetOpenParams")
            .field("symbolic_link", &self.symbolic_link)
            .field("read", &self.read)
            .field("write", &self.write)
            .finish_non_exhaustive()
    }
}

/// A `WDFIOTARGET`: the device's local target (the next lower driver) or a remote one.
pub trait PlatformIoTarget: Clone + Send + Sync + 'static {
    /// The backend's request.
    type Request: PlatformRequest<IoTarget = Self>;

    /// `WdfIoTargetGetState`.
    fn state(&self) -> IoTargetState;
    /// `WdfIoTargetOpen`.
    ///
    /// # Errors
    ///
    /// `STATUS_OBJECT_NAME_NOT_FOUND` for an unknown link, `STATUS_DELETE_PENDING` for a device
    /// being removed, `STATUS_INVALID_DEVICE_STATE` for an open target or a local one.
    fn open(&self, params: TargetOpenParams<Self>) -> NtResult<()>;
    /// `WdfIoTargetStart`.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` if it is closed.
    fn start(&self) -> NtResult<()>;
    /// `WdfIoTargetStop(WdfIoTargetCancelSentIo)` when `cancel_sent` is set, else
    /// `…LeaveSentIoPending` (sent requests stay with the target below; it does not wait).
    fn stop(&self, cancel_sent: bool);
    /// `WdfIoTargetCloseForQueryRemove`.
    fn close_for_query_remove(&self);
    /// `WdfIoTargetClose`.
    fn close(&self);
    /// `WdfObjectDelete` of a remote target the driver created: closes it (cancelling what it
    /// still holds) and deletes the object. The target must not be used afterwards.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` for the device's local target (the framework owns it) or a
    /// target already deleted.
    fn delete(&self) -> NtResult<()>;
    /// `WdfRequestCreate` with this target as the request's target.
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES`.
    fn create_request(&self) -> NtResult<Self::Request>;
    /// `WdfIoTargetSendIoctlSynchronously`: the output bytes and the information.
    ///
    /// # Errors
    ///
    /// The completion status when it is not a success.
    fn send_ioctl_synchronously(
        &self,
        code: u32,
        input: &[u8],
        output_length: usize,
        internal: bool,
        timeout: Option<Duration>,
    ) -> NtResult<(alloc::vec::Vec<u8>, usize)>;
}
