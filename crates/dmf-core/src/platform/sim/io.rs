//! Requests, queues, file objects, I/O targets and interface notifications on kmdf-sim.
//!
//! Each type wraps the kmdf-sim object of the same name; each method is one kmdf-sim call plus
//! the conversion of statuses and enums, so the simulator's verifier sees exactly what the driver
//! did (a second completion, a request left pending at teardown, a routine called above its
//! IRQL).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::time::Duration;

use kmdf_sim::interface::{
    register_notification, InterfaceChange as SimChange, InterfaceEvent, NotificationEntry,
};
use kmdf_sim::io::request::{
    CompletionParams as SimCompletion, RequestType as SimType, RequestorMode as SimMode,
    SendOptions as SimSend,
};
use kmdf_sim::io::{
    Access, DispatchType, FileConfig, FileObject as SimFile, IoTarget as SimTarget,
    OpenParams as SimOpen, Queue as SimQueue, QueueConfig as SimQueueConfig, Request as SimRequest,
    TargetState, TargetStopAction,
};
use kmdf_sim::object::ObjectAttributes;
use kmdf_sim::pnp::state::StopAction;
use kmdf_sim::Status as SimStatus;

use super::device::{sim_guid, Device, DeviceInit};
use super::from_sim_status;
use crate::platform::contract::device::Guid;
use crate::platform::contract::io::{
    CompletionParams, FileObjectConfig, InterfaceChange, IoTargetState, PlatformFileObject,
    PlatformIoTarget, PlatformQueue, PlatformRequest, QueueConfig, QueueDispatch,
    RequestParameters, RequestType, RequestorMode, SendOptions, StopFlags, TargetOpenParams,
};
use crate::status::{NtResult, NtStatus};

fn status_result(status: SimStatus) -> NtResult<()> {
    if status.is_success() {
        Ok(())
    } else {
        Err(from_sim_status(status))
    }
}

fn to_sim_status(status: NtStatus) -> SimStatus {
    SimStatus(status.to_raw())
}

fn request_type(kind: SimType) -> RequestType {
    match kind {
        SimType::Create => RequestType::Create,
        SimType::Cleanup => RequestType::Cleanup,
        SimType::Close => RequestType::Close,
        SimType::Read => RequestType::Read,
        SimType::Write => RequestType::Write,
        SimType::DeviceControl => RequestType::DeviceControl,
        SimType::InternalDeviceControl => RequestType::InternalDeviceControl,
    }
}

pub(super) fn to_sim_request_type(kind: RequestType) -> SimType {
    match kind {
        RequestType::Create => SimType::Create,
        RequestType::Cleanup => SimType::Cleanup,
        RequestType::Close => SimType::Close,
        RequestType::Read => SimType::Read,
        RequestType::Write => SimType::Write,
        RequestType::DeviceControl => SimType::DeviceControl,
        RequestType::InternalDeviceControl => SimType::InternalDeviceControl,
    }
}

fn completion(params: SimCompletion) -> CompletionParams {
    CompletionParams {
        status: from_sim_status(params.status),
        information: params.information,
    }
}

/// A `WDFREQUEST` of the simulated machine, owned by the driver (see the contract).
#[derive(Debug)]
pub struct Request(SimRequest);

impl Request {
    /// The kmdf-sim request behind this handle.
    pub fn sim(&self) -> &SimRequest {
        &self.0
    }

    /// Wraps a kmdf-sim request (for drivers mixing kmdf-sim-level code with DMF).
    pub fn from_sim(request: SimRequest) -> Request {
        Request(request)
    }
}

impl PlatformRequest for Request {
    type Queue = Queue;
    type FileObject = FileObject;
    type IoTarget = IoTarget;

    fn id(&self) -> u64 {
        self.0.id()
    }

    fn parameters(&self) -> RequestParameters {
        let p = self.0.parameters();
        RequestParameters {
            kind: request_type(p.kind),
            ioctl_code: p.ioctl_code,
            input_length: p.input_length,
            output_length: p.output_length,
            offset: p.offset,
        }
    }

    fn requestor_mode(&self) -> RequestorMode {
        match self.0.requestor_mode() {
            SimMode::User => RequestorMode::User,
            SimMode::Kernel => RequestorMode::Kernel,
        }
    }

    fn is_requestor_administrator(&self) -> bool {
        self.0.is_requestor_administrator()
    }

    fn file_object(&self) -> Option<FileObject> {
        self.0.file_object().map(FileObject)
    }

    /// kmdf-sim's views are the request's own memory (one system buffer for `METHOD_BUFFERED`,
    /// the caller's memory for the output of `METHOD_*_DIRECT`); a view nested in another view
    /// of the same request fails with `STATUS_INVALID_DEVICE_STATE`, as in the kernel backend.
    fn with_input_buffer<R>(&self, min_len: usize, f: impl FnOnce(&[u8]) -> R) -> NtResult<R> {
        self.0
            .with_input_buffer(min_len, f)
            .map_err(from_sim_status)
    }

    fn with_output_buffer<R>(&self, min_len: usize, f: impl FnOnce(&mut [u8]) -> R) -> NtResult<R> {
        self.0
            .with_output_buffer(min_len, f)
            .map_err(from_sim_status)
    }

    fn set_information(&self, information: usize) {
        self.0.set_information(information);
    }

    fn information(&self) -> usize {
        self.0.information()
    }

    fn status(&self) -> NtStatus {
        from_sim_status(self.0.status())
    }

    fn complete(self, status: NtStatus) {
        self.0.complete(to_sim_status(status));
    }

    fn complete_with_information(self, status: NtStatus, information: usize) {
        self.0
            .complete_with_information(to_sim_status(status), information);
    }

    fn mark_cancelable(&self, routine: impl FnOnce(Request) + Send + 'static) -> NtResult<()> {
        status_result(self.0.mark_cancelable(move |r| routine(Request(r))))
    }

    fn unmark_cancelable(&self) -> NtResult<()> {
        status_result(self.0.unmark_cancelable())
    }

    fn is_canceled(&self) -> bool {
        self.0.is_canceled()
    }

    fn stop_acknowledge(&self, requeue: bool) {
        self.0.stop_acknowledge(requeue);
    }

    fn forward_to_queue(self, queue: &Queue) -> Result<(), (Request, NtStatus)> {
        self.0
            .forward_to_queue(&queue.0)
            .map_err(|(r, s)| (Request(r), from_sim_status(s)))
    }

    fn requeue(self) -> Result<(), (Request, NtStatus)> {
        self.0
            .requeue()
            .map_err(|(r, s)| (Request(r), from_sim_status(s)))
    }

    fn format_using_current_type(&self) {
        self.0.format_using_current_type();
    }

    fn format_for_ioctl(&self, code: u32, input: &[u8], output_length: usize) -> NtResult<()> {
        self.0
            .format_for_ioctl(code, input, output_length)
            .map_err(from_sim_status)
    }

    fn format_for_internal_ioctl(
        &self,
        code: u32,
        input: &[u8],
        output_length: usize,
    ) -> NtResult<()> {
        self.0
            .format_for_internal_ioctl(code, input, output_length)
            .map_err(from_sim_status)
    }

    fn format_for_read(&self, length: usize, offset: u64) -> NtResult<()> {
        self.0
            .format_for_read(length, offset)
            .map_err(from_sim_status)
    }

    fn format_for_write(&self, data: &[u8], offset: u64) -> NtResult<()> {
        self.0
            .format_for_write(data, offset)
            .map_err(from_sim_status)
    }

    fn set_completion_routine(
        &self,
        routine: impl FnOnce(Request, CompletionParams) + Send + 'static,
    ) {
        self.0
            .set_completion_routine(move |r, p| routine(Request(r), completion(p)));
    }

    fn send(&self, target: &IoTarget, options: SendOptions) -> NtResult<()> {
        self.0
            .send(
                &target.0,
                SimSend {
                    send_and_forget: options.send_and_forget,
                    ignore_target_state: options.ignore_target_state,
                    timeout: options.timeout,
                },
            )
            .map_err(from_sim_status)
    }

    fn send_synchronously(&self, target: &IoTarget, timeout: Option<Duration>) -> NtStatus {
        from_sim_status(self.0.send_synchronously(&target.0, timeout))
    }

    fn cancel_sent_request(&self) -> bool {
        self.0.cancel_sent_request()
    }

    fn reuse(&self, status: NtStatus) -> NtResult<()> {
        self.0.reuse(to_sim_status(status)).map_err(from_sim_status)
    }

    fn delete(self) -> NtResult<()> {
        self.0.delete().map_err(from_sim_status)
    }
}

/// A `WDFQUEUE` of the simulated machine.
#[derive(Clone, Debug)]
pub struct Queue(SimQueue);

impl Queue {
    /// The kmdf-sim queue behind this handle.
    pub fn sim(&self) -> &SimQueue {
        &self.0
    }

    pub(super) fn from_sim(queue: SimQueue) -> Queue {
        Queue(queue)
    }

    /// `WdfIoQueueCreate` on `device`.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` for a presenting queue without a request callback or a second
    /// default queue; `STATUS_INSUFFICIENT_RESOURCES`; `STATUS_INVALID_DEVICE_STATE` for a deleted
    /// device.
    pub fn create(device: &Device, config: QueueConfig<Queue, Request>) -> NtResult<Queue> {
        SimQueue::create(
            device.sim(),
            wrap_queue_config(config),
            ObjectAttributes::new(),
        )
        .map(Queue)
        .map_err(from_sim_status)
    }
}

impl PartialEq for Queue {
    fn eq(&self, other: &Self) -> bool {
        self.0.object() == other.0.object()
    }
}

impl Eq for Queue {}

fn wrap_queue_config(config: QueueConfig<Queue, Request>) -> SimQueueConfig {
    let dispatch = match config.dispatch {
        QueueDispatch::Sequential => DispatchType::Sequential,
        QueueDispatch::Parallel => DispatchType::Parallel,
        QueueDispatch::Manual => DispatchType::Manual,
    };
    let mut sim = if config.default_queue {
        SimQueueConfig::new_default(dispatch)
    } else {
        SimQueueConfig::new(dispatch)
    };
    sim.power_managed = config.power_managed;
    sim.allow_zero_length_requests = config.allow_zero_length_requests;
    if let Some(f) = config.read {
        sim = sim.on_read(move |q, r, l| f(&Queue(q.clone()), Request(r), l));
    }
    if let Some(f) = config.write {
        sim = sim.on_write(move |q, r, l| f(&Queue(q.clone()), Request(r), l));
    }
    if let Some(f) = config.device_control {
        sim = sim.on_device_control(move |q, r, o, i, c| f(&Queue(q.clone()), Request(r), o, i, c));
    }
    if let Some(f) = config.internal_device_control {
        sim = sim.on_internal_device_control(move |q, r, o, i, c| {
            f(&Queue(q.clone()), Request(r), o, i, c);
        });
    }
    if let Some(f) = config.default {
        sim = sim.on_default(move |q, r| f(&Queue(q.clone()), Request(r)));
    }
    if let Some(f) = config.stop {
        sim = sim.on_stop(move |q, r, flags| {
            f(
                &Queue(q.clone()),
                Request(r),
                StopFlags {
                    purge: flags.action == StopAction::Purge,
                    cancelable: flags.cancelable,
                },
            );
        });
    }
    if let Some(f) = config.resume {
        sim = sim.on_resume(move |q, r| f(&Queue(q.clone()), Request(r)));
    }
    if let Some(f) = config.canceled_on_queue {
        sim = sim.on_canceled_on_queue(move |q, r| f(&Queue(q.clone()), Request(r)));
    }
    sim
}

impl PlatformQueue for Queue {
    type Request = Request;

    fn dispatch(&self) -> QueueDispatch {
        match self.0.dispatch_type() {
            DispatchType::Sequential => QueueDispatch::Sequential,
            DispatchType::Parallel => QueueDispatch::Parallel,
            DispatchType::Manual => QueueDispatch::Manual,
        }
    }

    fn retrieve_next_request(&self) -> NtResult<Request> {
        self.0
            .retrieve_next_request()
            .map(Request)
            .map_err(from_sim_status)
    }

    fn retrieve_request_by_file_object(&self, file: &FileObject) -> NtResult<Request> {
        self.0
            .retrieve_request_by_file_object(&file.0)
            .map(Request)
            .map_err(from_sim_status)
    }

    fn start(&self) {
        self.0.start();
    }

    fn stop_synchronously(&self) {
        self.0.stop_synchronously();
    }

    fn purge_synchronously(&self) {
        self.0.purge_synchronously();
    }

    fn drain_synchronously(&self) {
        self.0.drain_synchronously();
    }
}

/// A `WDFFILEOBJECT` of the simulated machine.
#[derive(Clone, Debug)]
pub struct FileObject(SimFile);

impl FileObject {
    /// The kmdf-sim file object behind this handle.
    pub fn sim(&self) -> &SimFile {
        &self.0
    }
}

impl PartialEq for FileObject {
    fn eq(&self, other: &Self) -> bool {
        self.0.id() == other.0.id()
    }
}

impl Eq for FileObject {}

impl PlatformFileObject for FileObject {
    fn id(&self) -> u64 {
        self.0.id()
    }

    fn is_administrator(&self) -> bool {
        self.0.is_administrator()
    }
}

pub(super) fn wrap_file_config(
    config: FileObjectConfig<Device, Request, FileObject>,
) -> FileConfig {
    let mut sim = FileConfig::new();
    if let Some(f) = config.create {
        sim = sim.on_create(move |d, r, file| {
            f(
                &Device::from_sim(d.clone()),
                Request(r),
                &FileObject(file.clone()),
            );
        });
    }
    if let Some(f) = config.cleanup {
        sim = sim.on_cleanup(move |file| f(&FileObject(file.clone())));
    }
    if let Some(f) = config.close {
        sim = sim.on_close(move |file| f(&FileObject(file.clone())));
    }
    if let Some(f) = config.deleted {
        sim = sim.on_object_cleanup(move |file| f(&FileObject(file.clone())));
    }
    sim
}

/// Sets the file-object callbacks on a device-init (`WdfDeviceInitSetFileObjectConfig`).
pub(super) fn set_file_object_config(
    init: &mut DeviceInit,
    config: FileObjectConfig<Device, Request, FileObject>,
) {
    kmdf_sim::io::set_file_object_config(init.sim_mut(), wrap_file_config(config));
}

/// A `WDFIOTARGET` of the simulated machine.
#[derive(Clone, Debug)]
pub struct IoTarget(SimTarget);

impl IoTarget {
    /// The kmdf-sim target behind this handle.
    pub fn sim(&self) -> &SimTarget {
        &self.0
    }

    pub(super) fn from_sim(target: SimTarget) -> IoTarget {
        IoTarget(target)
    }

    /// `WdfIoTargetCreate` on `device`: a remote target, closed until [`open`](PlatformIoTarget::open).
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES`; `STATUS_INVALID_DEVICE_STATE` for a deleted device.
    pub fn create(device: &Device) -> NtResult<IoTarget> {
        SimTarget::create(device.sim(), ObjectAttributes::new())
            .map(IoTarget)
            .map_err(from_sim_status)
    }
}

impl PartialEq for IoTarget {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name()
    }
}

impl Eq for IoTarget {}

impl PlatformIoTarget for IoTarget {
    type Request = Request;

    fn state(&self) -> IoTargetState {
        match self.0.state() {
            TargetState::Started => IoTargetState::Started,
            TargetState::Stopped => IoTargetState::Stopped,
            TargetState::ClosedForQueryRemove => IoTargetState::ClosedForQueryRemove,
            TargetState::Closed => IoTargetState::Closed,
            TargetState::Deleted => IoTargetState::Deleted,
        }
    }

    fn open(&self, params: TargetOpenParams<IoTarget>) -> NtResult<()> {
        let mut sim = match &params.symbolic_link {
            Some(link) => SimOpen::by_name(
                link,
                Access {
                    read: params.read,
                    write: params.write,
                },
            ),
            None => SimOpen::reopen(),
        };
        if let Some(f) = params.query_remove {
            sim = sim.on_query_remove(move |t| match f(&IoTarget(t.clone())) {
                Ok(()) => SimStatus::SUCCESS,
                Err(status) => to_sim_status(status),
            });
        }
        if let Some(f) = params.remove_canceled {
            sim = sim.on_remove_canceled(move |t| f(&IoTarget(t.clone())));
        }
        if let Some(f) = params.remove_complete {
            sim = sim.on_remove_complete(move |t| f(&IoTarget(t.clone())));
        }
        // kmdf-sim answers an unknown name with STATUS_NOT_FOUND; WdfIoTargetOpen (and the
        // contract) say STATUS_OBJECT_NAME_NOT_FOUND, as ZwCreateFile does.
        self.0.open(sim).map_err(|status| {
            if status == SimStatus::NOT_FOUND {
                NtStatus::OBJECT_NAME_NOT_FOUND
            } else {
                from_sim_status(status)
            }
        })
    }

    fn start(&self) -> NtResult<()> {
        match self.0.state() {
            TargetState::Closed | TargetState::ClosedForQueryRemove | TargetState::Deleted => {
                Err(NtStatus::INVALID_DEVICE_STATE)
            }
            _ => {
                self.0.start();
                Ok(())
            }
        }
    }

    fn stop(&self, cancel_sent: bool) {
        self.0.stop(if cancel_sent {
            TargetStopAction::CancelSentIo
        } else {
            TargetStopAction::LeaveSentIoPending
        });
    }

    fn close_for_query_remove(&self) {
        self.0.close_for_query_remove();
    }

    fn close(&self) {
        self.0.close();
    }

    fn delete(&self) -> NtResult<()> {
        let object = self.0.object().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        if self.0.state() == TargetState::Deleted {
            // A second WdfObjectDelete is a bug check on Windows; refuse it here instead.
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        self.0.close();
        object.delete().map_err(from_sim_status)
    }

    fn create_request(&self) -> NtResult<Request> {
        let device = self.0.owner().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        SimRequest::create(&device)
            .map(Request)
            .map_err(from_sim_status)
    }

    fn send_ioctl_synchronously(
        &self,
        code: u32,
        input: &[u8],
        output_length: usize,
        internal: bool,
        timeout: Option<Duration>,
    ) -> NtResult<(Vec<u8>, usize)> {
        let result = if internal {
            self.0
                .send_internal_ioctl_synchronously(code, input, output_length, timeout)
        } else {
            self.0
                .send_ioctl_synchronously(code, input, output_length, timeout)
        };
        result.map_err(from_sim_status)
    }
}

/// A registration for device-interface arrival and removal (`IoRegisterPlugPlayNotification`);
/// unregistered by [`unregister`](Self::unregister) or on drop. Unregistering waits for a
/// callback in progress on another thread.
#[derive(Debug)]
pub struct InterfaceNotification(Option<NotificationEntry>);

impl InterfaceNotification {
    /// `IoUnregisterPlugPlayNotificationEx`.
    pub fn unregister(mut self) {
        if let Some(entry) = self.0.take() {
            entry.unregister();
        }
    }
}

impl Drop for InterfaceNotification {
    fn drop(&mut self) {
        if let Some(entry) = self.0.take() {
            entry.unregister();
        }
    }
}

/// The callback of an interface notification.
pub type InterfaceChangeFn = Arc<dyn Fn(&InterfaceChange) + Send + Sync>;

pub(super) fn register_interface_notification(
    device: &Device,
    class: Guid,
    callback: InterfaceChangeFn,
) -> NtResult<InterfaceNotification> {
    let machine = device
        .sim()
        .machine()
        .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
    let callback: Box<dyn Fn(&SimChange) + Send + Sync> = Box::new(move |change: &SimChange| {
        let change = match change.event {
            InterfaceEvent::Arrival => InterfaceChange::Arrival(change.symbolic_link.clone()),
            InterfaceEvent::Removal => InterfaceChange::Removal(change.symbolic_link.clone()),
        };
        callback(&change);
    });
    register_notification(&machine, sim_guid(class), true, callback)
        .map(|entry| InterfaceNotification(Some(entry)))
        .map_err(from_sim_status)
}
