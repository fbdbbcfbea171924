//! I/O queues (`WDFQUEUE`): dispatch types, power management, driver-initiated state changes.
//!
//! # Delivery ([Dispatching Methods for I/O Requests], [`WDF_IO_QUEUE_CONFIG`])
//!
//! * [`DispatchType::Sequential`] presents one request at a time: the next one only after the
//!   driver completed, requeued or forwarded the current one (a request acknowledged in
//!   `EvtIoStop` with `requeue = false` still counts as presented).
//! * [`DispatchType::Parallel`] presents every request as soon as it arrives, up to
//!   [`QueueConfig::max_presented`] outstanding (`NumberOfPresentedRequests`).
//! * [`DispatchType::Manual`] presents nothing: the driver pulls with
//!   [`Queue::retrieve_next_request`] / [`Queue::retrieve_request_by_file_object`], or looks
//!   through the queue with [`Queue::find_request`] (a [`FoundRequest`] reference, no ownership)
//!   and takes the one it wants with [`Queue::retrieve_found_request`].
//!
//! Each queue has one dispatcher at a time: the thread that finds the queue idle presents
//! requests until none is deliverable; a completion made meanwhile (from inside the callback,
//! or from another thread) makes that dispatcher look again instead of nesting a callback.
//!
//! # Power management
//!
//! Based on [Using Power-Managed I/O Queues], [Power Management for I/O Queues],
//! [Managing I/O Queues], [`EvtIoStop`] and [`EvtIoResume`].
//!
//! [`QueueConfig::power_managed`] `None` means `WdfUseDefault`: power-managed unless the device is
//! a filter. Queues of a [control device](crate::control) are never power-managed, whatever the
//! config says (KMDF forces the setting off for non-PnP devices; "Using Control Device Objects").
//! A power-managed queue presents requests only between the framework's "queues started" step
//! (after `EvtDeviceD0Entry`) and its "queues stopped" step; meanwhile requests are held. A
//! request arriving while the stack idles in Dx (system in S0) powers it up first
//! (`WdfDeviceStopIdle` semantics). When the device leaves D0 the framework calls `EvtIoStop`
//! once per presented, not-yet-completed request with [`StopFlags`] (`Suspend` or `Purge`, plus
//! `Cancelable` if the request is cancelable) and waits until each is completed or
//! stop-acknowledged (with no `EvtIoStop`, until each is completed); on return to D0 it calls
//! `EvtIoResume` for the requests acknowledged with `requeue = false`. Non-power-managed queues
//! present regardless of power.
//!
//! # Driver-initiated state changes ([`WdfIoQueuePurge`], [Managing I/O Queues])
//!
//! [`Queue::stop`] / [`Queue::start`]; [`Queue::purge`] (stop accepting — later arrivals
//! complete with `STATUS_INVALID_DEVICE_STATE` — and cancel undelivered requests with
//! `STATUS_CANCELLED`; presented requests that were sent to a target are cancelled too);
//! [`Queue::drain`] (stop accepting, keep presenting what is queued);
//! [`Queue::stop_and_purge`] (stop presenting, cancel queued and driver-owned requests, keep
//! accepting — arrivals wait for [`Queue::start`]). The `…_synchronously`
//! variants (PASSIVE only) return when no request of the queue is left.
//!
//! [`EvtIoStop`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfio/nc-wdfio-evt_wdf_io_queue_io_stop
//! [`EvtIoResume`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfio/nc-wdfio-evt_wdf_io_queue_io_resume
//! [`WDF_IO_QUEUE_CONFIG`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfio/ns-wdfio-_wdf_io_queue_config
//! [`WdfIoQueuePurge`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfio/nf-wdfio-wdfioqueuepurge
//! [Using Power-Managed I/O Queues]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/using-power-managed-i-o-queues
//! [Power Management for I/O Queues]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/power-management-for-i-o-queues
//! [Dispatching Methods for I/O Requests]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/dispatching-methods-for-i-o-requests
//! [Managing I/O Queues]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/managing-i-o-queues

use core::fmt;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

use super::file::FileObject;
use super::request::{self, handle, Loc, ReqCore, Request, RequestType};
use super::{io_state, trace, wake};
use crate::device::{lock, Device, DeviceInner};
use crate::exec::{require_max_irql, Irql};
use crate::object::{MachineRef, ObjectAttributes, WdfObject};
use crate::pnp::StopAction;
use crate::status::Status;
use crate::verifier::invoke_callback;

/// `WDF_IO_QUEUE_DISPATCH_TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DispatchType {
    /// `WdfIoQueueDispatchSequential`.
    Sequential,
    /// `WdfIoQueueDispatchParallel`.
    Parallel,
    /// `WdfIoQueueDispatchManual`.
    Manual,
}

/// `ActionFlags` of `EvtIoStop` (`WDF_REQUEST_STOP_ACTION_FLAGS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopFlags {
    /// `WdfRequestStopActionSuspend` or `WdfRequestStopActionPurge`.
    pub action: StopAction,
    /// `WdfRequestStopRequestCancelable`: the request is cancelable (unmark it first).
    pub cancelable: bool,
}

impl StopFlags {
    /// The flag bits (`0x1` Suspend, `0x2` Purge, `0x10000000` Cancelable).
    pub fn bits(self) -> u32 {
        let a = match self.action {
            StopAction::Suspend => 0x1,
            StopAction::Purge => 0x2,
        };
        a | if self.cancelable { 0x1000_0000 } else { 0 }
    }
}

/// `EvtIoRead` / `EvtIoWrite`: queue, request, length.
pub type IoLengthFn = Arc<dyn Fn(&Queue, Request, usize) + Send + Sync>;
/// `EvtIoDeviceControl` / `EvtIoInternalDeviceControl`: queue, request, output length, input
/// length, control code.
pub type IoControlFn = Arc<dyn Fn(&Queue, Request, usize, usize, u32) + Send + Sync>;
/// `EvtIoDefault`, `EvtIoResume`, `EvtIoCanceledOnQueue`: queue, request.
pub type IoRequestFn = Arc<dyn Fn(&Queue, Request) + Send + Sync>;
/// `EvtIoStop`: queue, request, action flags.
pub type IoStopFn = Arc<dyn Fn(&Queue, Request, StopFlags) + Send + Sync>;
/// `EvtIoQueueState` (purge/drain done).
pub type QueueStateFn = Box<dyn FnOnce(&Queue) + Send>;

/// `WDF_IO_QUEUE_CONFIG`.
#[derive(Clone)]
pub struct QueueConfig {
    /// The dispatch type.
    pub dispatch: DispatchType,
    /// `DefaultQueue`.
    pub default_queue: bool,
    /// `PowerManaged`: `None` = `WdfUseDefault` (power-managed unless the device is a filter).
    pub power_managed: Option<bool>,
    /// `AllowZeroLengthRequests` (default false: the framework completes zero-length reads and
    /// writes with `STATUS_SUCCESS`).
    pub allow_zero_length_requests: bool,
    /// `Settings.Parallel.NumberOfPresentedRequests` (`None`: no limit).
    pub max_presented: Option<usize>,
    /// `EvtIoRead`.
    pub read: Option<IoLengthFn>,
    /// `EvtIoWrite`.
    pub write: Option<IoLengthFn>,
    /// `EvtIoDeviceControl`.
    pub device_control: Option<IoControlFn>,
    /// `EvtIoInternalDeviceControl`.
    pub internal_device_control: Option<IoControlFn>,
    /// `EvtIoDefault`.
    pub default: Option<IoRequestFn>,
    /// `EvtIoStop`.
    pub stop: Option<IoStopFn>,
    /// `EvtIoResume`.
    pub resume: Option<IoRequestFn>,
    /// `EvtIoCanceledOnQueue`.
    pub canceled_on_queue: Option<IoRequestFn>,
}

impl fmt::Debug for QueueConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueConfig")
            .field("dispatch", &self.dispatch)
            .field("default_queue", &self.default_queue)
            .field("power_managed", &self.power_managed)
            .finish_non_exhaustive()
    }
}

impl QueueConfig {
    /// `WDF_IO_QUEUE_CONFIG_INIT`.
    pub fn new(dispatch: DispatchType) -> Self {
        QueueConfig {
            dispatch,
            default_queue: false,
            power_managed: None,
            allow_zero_length_requests: false,
            max_presented: None,
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
    pub fn new_default(dispatch: DispatchType) -> Self {
        QueueConfig {
            default_queue: true,
            ..Self::new(dispatch)
        }
    }

    /// Sets `PowerManaged`.
    #[must_use]
    pub fn power_managed(mut self, on: bool) -> Self {
        self.power_managed = Some(on);
        self
    }

    /// Sets `AllowZeroLengthRequests`.
    #[must_use]
    pub fn allow_zero_length_requests(mut self, on: bool) -> Self {
        self.allow_zero_length_requests = on;
        self
    }

    /// Sets `EvtIoRead`.
    #[must_use]
    pub fn on_read(mut self, f: impl Fn(&Queue, Request, usize) + Send + Sync + 'static) -> Self {
        self.read = Some(Arc::new(f));
        self
    }

    /// Sets `EvtIoWrite`.
    #[must_use]
    pub fn on_write(mut self, f: impl Fn(&Queue, Request, usize) + Send + Sync + 'static) -> Self {
        self.write = Some(Arc::new(f));
        self
    }

    /// Sets `EvtIoDeviceControl`.
    #[must_use]
    pub fn on_device_control(
        mut self,
        f: impl Fn(&Queue, Request, usize, usize, u32) + Send + Sync + 'static,
    ) -> Self {
        self.device_control = Some(Arc::new(f));
        self
    }

    /// Sets `EvtIoInternalDeviceControl`.
    #[must_use]
    pub fn on_internal_device_control(
        mut self,
        f: impl Fn(&Queue, Request, usize, usize, u32) + Send + Sync + 'static,
    ) -> Self {
        self.internal_device_control = Some(Arc::new(f));
        self
    }

    /// Sets `EvtIoDefault`.
    #[must_use]
    pub fn on_default(mut self, f: impl Fn(&Queue, Request) + Send + Sync + 'static) -> Self {
        self.default = Some(Arc::new(f));
        self
    }

    /// Sets `EvtIoStop`.
    #[must_use]
    pub fn on_stop(
        mut self,
        f: impl Fn(&Queue, Request, StopFlags) + Send + Sync + 'static,
    ) -> Self {
        self.stop = Some(Arc::new(f));
        self
    }

    /// Sets `EvtIoResume`.
    #[must_use]
    pub fn on_resume(mut self, f: impl Fn(&Queue, Request) + Send + Sync + 'static) -> Self {
        self.resume = Some(Arc::new(f));
        self
    }

    /// Sets `EvtIoCanceledOnQueue`.
    #[must_use]
    pub fn on_canceled_on_queue(
        mut self,
        f: impl Fn(&Queue, Request) + Send + Sync + 'static,
    ) -> Self {
        self.canceled_on_queue = Some(Arc::new(f));
        self
    }

    fn has_callback(&self) -> bool {
        self.read.is_some()
            || self.write.is_some()
            || self.device_control.is_some()
            || self.internal_device_control.is_some()
            || self.default.is_some()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Accept {
    Open,
    Draining,
    Purged,
}

#[allow(clippy::struct_excessive_bools)] // reason: independent state flags, not a mode
struct QueueSt {
    pending: VecDeque<Arc<ReqCore>>,
    in_flight: Vec<Arc<ReqCore>>,
    acked: Vec<u64>,
    driver_stopped: bool,
    power_on: bool,
    accept: Accept,
    dispatching: bool,
    more: bool,
    idle_callbacks: Vec<QueueStateFn>,
    /// `WdfIoQueueStopAndPurge` callbacks: run once the driver owns no request of the queue
    /// (requests still waiting in the stopped queue do not count).
    owned_idle_callbacks: Vec<QueueStateFn>,
}

pub(crate) struct QueueCore {
    object: WdfObject,
    machine: MachineRef,
    device: Weak<DeviceInner>,
    config: QueueConfig,
    power_managed: bool,
    st: Mutex<QueueSt>,
}

/// A queue handle (`WDFQUEUE`). Cheap to clone; equality is identity.
#[derive(Clone)]
pub struct Queue(pub(crate) Arc<QueueCore>);

impl PartialEq for Queue {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Queue {}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name())
            .field("status", &self.status())
            .finish()
    }
}

/// A snapshot of a queue (`WdfIoQueueGetState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueStatus {
    /// Requests waiting in the queue.
    pub queued: usize,
    /// Requests presented to (or retrieved by) the driver and not yet completed.
    pub driver_owned: usize,
    /// The queue accepts new requests (not purged or draining).
    pub accepting: bool,
    /// The driver has not stopped the queue.
    pub started: bool,
    /// Power-managed queues: the device is in D0 and the queue runs (always true otherwise).
    pub powered: bool,
}

/// A request found by [`Queue::find_request`] (`WdfIoQueueFindRequest`): a **reference** on a
/// request that is still in its queue, not ownership. It cannot be completed; read its
/// parameters, pass it to [`Queue::retrieve_found_request`] or back to
/// [`Queue::find_request`]. Dropping it is the `WdfObjectDereference` the driver owes.
pub struct FoundRequest {
    core: Arc<ReqCore>,
    queue: Weak<QueueCore>,
}

impl fmt::Debug for FoundRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FoundRequest")
            .field("id", &self.core.id)
            .field("parameters", &self.parameters())
            .finish_non_exhaustive()
    }
}

impl FoundRequest {
    /// The request's id (as [`Request::id`]).
    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// The request's parameters (`WDF_REQUEST_PARAMETERS`).
    pub fn parameters(&self) -> request::RequestParameters {
        lock(&self.core.st).params
    }

    /// The request type.
    pub fn kind(&self) -> RequestType {
        self.core.kind()
    }

    /// The file object the request was sent on.
    pub fn file_object(&self) -> Option<FileObject> {
        self.core.file()
    }

    /// True while the request still waits in the queue it was found in.
    pub fn is_queued(&self) -> bool {
        self.queue.upgrade().is_some_and(|q| {
            lock(&q.st)
                .pending
                .iter()
                .any(|c| Arc::ptr_eq(c, &self.core))
        })
    }
}

impl Queue {
    /// `WdfIoQueueCreate`: a queue of `device` (its WDFQUEUE object is a child of the device; a
    /// fault point).
    ///
    /// Errors: `STATUS_INVALID_PARAMETER` for a presenting queue without any request callback or a
    /// second default queue; `STATUS_INSUFFICIENT_RESOURCES` (fault injection);
    /// `STATUS_INVALID_DEVICE_STATE` if the device is deleted.
    pub fn create(
        device: &Device,
        config: QueueConfig,
        attrs: ObjectAttributes,
    ) -> Result<Queue, Status> {
        if config.dispatch != DispatchType::Manual && !config.has_callback() {
            return Err(Status::INVALID_PARAMETER);
        }
        let io = io_state(device);
        if config.default_queue && lock(&io.default_queue).is_some() {
            return Err(Status::INVALID_PARAMETER);
        }
        let machine = device.machine().ok_or(Status::INVALID_DEVICE_STATE)?;
        let mut attrs = attrs;
        attrs.parent = Some(device.object().clone());
        let object = WdfObject::create(&machine, "WDFQUEUE", attrs)?;
        // KMDF forces queues of a non-PnP (control) device to non-power-managed.
        let power_managed =
            !device.is_control() && config.power_managed.unwrap_or(!device.is_filter());
        let power_on = !power_managed || device.is_in_d0();
        let core = Arc::new(QueueCore {
            object,
            machine: MachineRef::new(&machine),
            device: Arc::downgrade(&device.0),
            power_managed,
            st: Mutex::new(QueueSt {
                pending: VecDeque::new(),
                in_flight: Vec::new(),
                acked: Vec::new(),
                driver_stopped: false,
                power_on,
                accept: Accept::Open,
                dispatching: false,
                more: false,
                idle_callbacks: Vec::new(),
                owned_idle_callbacks: Vec::new(),
            }),
            config,
        });
        if core.config.default_queue {
            *lock(&io.default_queue) = Some(Arc::clone(&core));
        }
        lock(&io.queues).push(Arc::clone(&core));
        Ok(Queue(core))
    }

    /// The device the queue belongs to.
    pub fn device(&self) -> Option<Device> {
        self.0.device.upgrade().map(Device)
    }

    /// The WDFQUEUE object.
    pub fn object(&self) -> &WdfObject {
        &self.0.object
    }

    /// The object's trace name.
    pub fn name(&self) -> &str {
        self.0.object.name()
    }

    /// True if the queue is power-managed.
    pub fn is_power_managed(&self) -> bool {
        self.0.power_managed
    }

    /// The dispatch type.
    pub fn dispatch_type(&self) -> DispatchType {
        self.0.config.dispatch
    }

    /// `WdfIoQueueGetState`.
    pub fn status(&self) -> QueueStatus {
        let st = lock(&self.0.st);
        QueueStatus {
            queued: st.pending.len(),
            driver_owned: st.in_flight.len(),
            accepting: st.accept == Accept::Open,
            started: !st.driver_stopped,
            powered: st.power_on,
        }
    }

    fn retrieve(
        &self,
        routine: &str,
        pick: impl Fn(&Arc<ReqCore>) -> bool,
    ) -> Result<Request, Status> {
        if !require_max_irql(Irql::Dispatch, routine) {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        let core = {
            let mut st = lock(&self.0.st);
            if !st.power_on {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            let pos = st.pending.iter().position(&pick);
            let Some(core) = pos.and_then(|p| st.pending.remove(p)) else {
                return Err(Status::NO_MORE_ENTRIES);
            };
            st.in_flight.push(Arc::clone(&core));
            core
        };
        {
            let mut rs = lock(&core.st);
            rs.loc = Loc::Driver;
            if let Some(l) = rs.layers.last_mut() {
                l.queue = Some(Arc::clone(&self.0));
            }
        }
        core.trace(&format!("retrieved from {}", self.name()));
        request::set_taken(&core, format!("{routine} from queue '{}'", self.name()));
        Ok(handle(&core))
    }

    /// `WdfIoQueueRetrieveNextRequest`: the oldest queued request (the driver owns it).
    ///
    /// Errors: `STATUS_NO_MORE_ENTRIES` if the queue is empty; `STATUS_INVALID_DEVICE_STATE` for
    /// a power-managed queue while the device is out of D0.
    pub fn retrieve_next_request(&self) -> Result<Request, Status> {
        self.retrieve("WdfIoQueueRetrieveNextRequest", |_| true)
    }

    /// `WdfIoQueueRetrieveRequestByFileObject`: the oldest queued request of `file`.
    ///
    /// Errors: as [`retrieve_next_request`](Self::retrieve_next_request).
    pub fn retrieve_request_by_file_object(&self, file: &FileObject) -> Result<Request, Status> {
        self.retrieve("WdfIoQueueRetrieveRequestByFileObject", |c| {
            c.file().as_ref() == Some(file)
        })
    }

    /// `WdfIoQueueFindRequest` (≤ `DISPATCH_LEVEL`, manual queues only): finds the next queued
    /// request — the first one when `after` is `None`, else the first one **after** `after` —
    /// that belongs to `file` (any file when `None`), **without** taking it out of the queue or
    /// giving the driver ownership. The returned [`FoundRequest`] holds a reference on the request
    /// (dropping it is the `WdfObjectDereference` the driver owes); pass it to
    /// [`retrieve_found_request`](Self::retrieve_found_request) to take the request, or back as
    /// `after` to continue the search. Its parameters are readable meanwhile
    /// (`WDF_REQUEST_PARAMETERS` out-argument).
    ///
    /// Errors: `STATUS_NOT_FOUND` if `after` is no longer in the queue (retrieved, cancelled,
    /// purged); `STATUS_NO_MORE_ENTRIES` at the end of the queue without a match;
    /// `STATUS_INVALID_DEVICE_REQUEST` for a queue that is not manual;
    /// `STATUS_INVALID_DEVICE_STATE` above `DISPATCH_LEVEL`.
    pub fn find_request(
        &self,
        after: Option<&FoundRequest>,
        file: Option<&FileObject>,
    ) -> Result<FoundRequest, Status> {
        if !require_max_irql(Irql::Dispatch, "WdfIoQueueFindRequest") {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        if self.0.config.dispatch != DispatchType::Manual {
            return Err(Status::INVALID_DEVICE_REQUEST);
        }
        let st = lock(&self.0.st);
        let start = match after {
            None => 0,
            Some(a) => {
                st.pending
                    .iter()
                    .position(|c| Arc::ptr_eq(c, &a.core))
                    .ok_or(Status::NOT_FOUND)?
                    + 1
            }
        };
        st.pending
            .iter()
            .skip(start)
            .find(|c| file.is_none() || c.file().as_ref() == file)
            .map(|c| FoundRequest {
                core: Arc::clone(c),
                queue: Arc::downgrade(&self.0),
            })
            .ok_or(Status::NO_MORE_ENTRIES)
    }

    /// `WdfIoQueueRetrieveFoundRequest` (≤ `DISPATCH_LEVEL`): takes the request found by
    /// [`find_request`](Self::find_request) out of the queue; the driver owns it. `found` stays
    /// valid (it only carries the reference) and is dropped by the caller.
    ///
    /// Errors: `STATUS_NOT_FOUND` if the request is no longer in this queue (retrieved, cancelled
    /// or purged meanwhile); `STATUS_INVALID_DEVICE_STATE` for a power-managed queue while the
    /// device is out of D0, or above `DISPATCH_LEVEL`.
    pub fn retrieve_found_request(&self, found: &FoundRequest) -> Result<Request, Status> {
        if !require_max_irql(Irql::Dispatch, "WdfIoQueueRetrieveFoundRequest") {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        let target = Arc::clone(&found.core);
        match self.retrieve("WdfIoQueueRetrieveFoundRequest", |c| {
            Arc::ptr_eq(c, &target)
        }) {
            Err(s) if s == Status::NO_MORE_ENTRIES => Err(Status::NOT_FOUND),
            r => r,
        }
    }

    /// `WdfIoQueueStopAndPurge` (KMDF ≥ 1.11): stop presenting (as [`stop`](Self::stop)),
    /// cancel every request waiting in the queue (`EvtIoCanceledOnQueue` for requests the driver
    /// put there, else completion with `STATUS_CANCELLED`), and cancel the requests the driver
    /// owns (cancelable ones get `EvtRequestCancel`; ones sent to a target are cancelled there).
    /// Unlike [`purge`](Self::purge) the queue **keeps accepting**: new arrivals wait until
    /// [`start`](Self::start). `done` (`EvtIoQueueState`) runs once the driver owns no request
    /// of the queue.
    pub fn stop_and_purge(&self, done: Option<QueueStateFn>) {
        self.trace("stop and purge");
        let (pending, owned) = {
            let mut st = lock(&self.0.st);
            st.driver_stopped = true;
            if let Some(d) = done {
                st.owned_idle_callbacks.push(d);
            }
            let pending: Vec<_> = st.pending.drain(..).collect();
            (pending, st.in_flight.clone())
        };
        for core in pending {
            canceled_on_queue(&self.0, &core);
        }
        for core in owned {
            request::cancel(&core);
        }
        check_idle(&self.0);
    }

    /// `WdfIoQueueStopAndPurgeSynchronously` (PASSIVE): [`stop_and_purge`](Self::stop_and_purge),
    /// then wait until the driver owns no request of the queue.
    pub fn stop_and_purge_synchronously(&self) {
        self.stop_and_purge(None);
        self.wait_for(
            |st| st.in_flight.is_empty(),
            "WdfIoQueueStopAndPurgeSynchronously",
        );
    }

    /// `WdfIoQueueStop`: stop presenting; keep accepting.
    pub fn stop(&self) {
        lock(&self.0.st).driver_stopped = true;
        self.trace("stopped by the driver");
    }

    /// `WdfIoQueueStopSynchronously` (PASSIVE): stop, then wait until the driver owns no request
    /// of the queue.
    pub fn stop_synchronously(&self) {
        self.stop();
        self.wait_for(|st| st.in_flight.is_empty(), "WdfIoQueueStopSynchronously");
    }

    /// `WdfIoQueueStart`: accept and present again (after stop, purge or drain).
    pub fn start(&self) {
        {
            let mut st = lock(&self.0.st);
            st.driver_stopped = false;
            st.accept = Accept::Open;
        }
        self.trace("started by the driver");
        kick(&self.0);
    }

    /// `WdfIoQueuePurge`: see the [module docs](self). `done` (`EvtIoQueueState`) runs once no
    /// request of the queue is left.
    pub fn purge(&self, done: Option<QueueStateFn>) {
        self.trace("purge");
        let (pending, sent) = {
            let mut st = lock(&self.0.st);
            st.accept = Accept::Purged;
            if let Some(d) = done {
                st.idle_callbacks.push(d);
            }
            let pending: Vec<_> = st.pending.drain(..).collect();
            (pending, st.in_flight.clone())
        };
        for core in pending {
            // A request the driver requeued goes to EvtIoCanceledOnQueue if the queue has one
            // (its documented role); any other is completed with STATUS_CANCELLED.
            canceled_on_queue(&self.0, &core);
        }
        for core in sent {
            let below = {
                let rs = lock(&core.st);
                !matches!(rs.loc, Loc::Driver)
            };
            if below {
                request::cancel(&core);
            }
        }
        check_idle(&self.0);
        activity_done(&self.0);
    }

    /// `WdfIoQueuePurgeSynchronously` (PASSIVE): purge, cancel driver-owned cancelable requests,
    /// wait until no request of the queue is left.
    pub fn purge_synchronously(&self) {
        self.purge(None);
        let owned = lock(&self.0.st).in_flight.clone();
        for core in owned {
            request::cancel(&core);
        }
        self.wait_for(
            |st| st.in_flight.is_empty() && st.pending.is_empty(),
            "WdfIoQueuePurgeSynchronously",
        );
    }

    /// `WdfIoQueueDrain`: stop accepting; queued requests are still presented. `done` runs once
    /// no request of the queue is left.
    pub fn drain(&self, done: Option<QueueStateFn>) {
        {
            let mut st = lock(&self.0.st);
            st.accept = Accept::Draining;
            if let Some(d) = done {
                st.idle_callbacks.push(d);
            }
        }
        self.trace("drain");
        kick(&self.0);
        check_idle(&self.0);
    }

    /// `WdfIoQueueDrainSynchronously` (PASSIVE).
    pub fn drain_synchronously(&self) {
        self.drain(None);
        self.wait_for(
            |st| st.in_flight.is_empty() && st.pending.is_empty(),
            "WdfIoQueueDrainSynchronously",
        );
    }

    /// A synchronous queue routine's wait, under the power watchdog (crate::verifier): these
    /// run in PnP/power callbacks (`EvtDeviceSelfManagedIoFlush`, `EvtDeviceD0Exit`, …), where a
    /// wait that never ends is bug check 0x9F; elsewhere it would hang the calling thread. Either
    /// way it is reported, naming the requests still waited for; in Record mode the routine then
    /// returns.
    fn wait_for(&self, cond: impl Fn(&QueueSt) -> bool, routine: &str) {
        if !require_max_irql(Irql::Passive, routine) {
            return;
        }
        let Some(m) = self.0.machine.machine() else {
            return;
        };
        let q = Arc::clone(&self.0);
        if !m.wait_under_watchdog(routine, self.name(), || cond(&lock(&q.st))) {
            let waiting: Vec<_> = {
                let st = lock(&q.st);
                st.in_flight
                    .iter()
                    .chain(st.pending.iter())
                    .cloned()
                    .collect()
            };
            report_stuck(
                &m,
                &q,
                &format!("{routine} on queue '{}'", self.name()),
                &waiting,
            );
        }
    }

    fn trace(&self, text: &str) {
        trace(
            &self.0.machine,
            Some(self.0.object.driver_name()),
            self.name(),
            text,
        );
    }
}

fn can_deliver(q: &QueueCore, st: &QueueSt) -> bool {
    if st.driver_stopped || !st.power_on || st.accept == Accept::Purged || st.pending.is_empty() {
        return false;
    }
    match q.config.dispatch {
        DispatchType::Sequential => st.in_flight.is_empty(),
        DispatchType::Parallel => q
            .config
            .max_presented
            .is_none_or(|m| st.in_flight.len() < m),
        DispatchType::Manual => false,
    }
}

/// Presents deliverable requests; one dispatcher per queue at a time.
pub(crate) fn kick(q: &Arc<QueueCore>) {
    {
        let mut st = lock(&q.st);
        if st.dispatching {
            st.more = true;
            return;
        }
        st.dispatching = true;
    }
    loop {
        let next = {
            let mut st = lock(&q.st);
            st.more = false;
            if can_deliver(q, &st) {
                let core = st.pending.pop_front().expect("non-empty");
                st.in_flight.push(Arc::clone(&core));
                Some(core)
            } else {
                None
            }
        };
        if let Some(core) = next {
            deliver(q, &core);
            continue;
        }
        let mut st = lock(&q.st);
        if st.more {
            continue;
        }
        st.dispatching = false;
        break;
    }
}

fn deliver(q: &Arc<QueueCore>, core: &Arc<ReqCore>) {
    let params = {
        let mut rs = lock(&core.st);
        rs.loc = Loc::Driver;
        if let Some(l) = rs.layers.last_mut() {
            l.queue = Some(Arc::clone(q));
        }
        rs.params
    };
    let queue = Queue(Arc::clone(q));
    let driver = q.object.driver_name().to_owned();
    let name = q.object.name().to_owned();
    let taken = |label: &str| request::set_taken(core, format!("{label} from queue '{name}'"));
    let cfg = &q.config;
    match params.kind {
        RequestType::Read | RequestType::Write => {
            let (f, label) = if params.kind == RequestType::Read {
                (cfg.read.as_ref(), "EvtIoRead")
            } else {
                (cfg.write.as_ref(), "EvtIoWrite")
            };
            let len = if params.kind == RequestType::Read {
                params.output_length
            } else {
                params.input_length
            };
            if let Some(f) = f {
                taken(label);
                let h = handle(core);
                invoke_callback(&driver, &name, label, || f(&queue, h, len));
                return;
            }
        }
        RequestType::DeviceControl | RequestType::InternalDeviceControl => {
            let (f, label) = if params.kind == RequestType::DeviceControl {
                (cfg.device_control.as_ref(), "EvtIoDeviceControl")
            } else {
                (
                    cfg.internal_device_control.as_ref(),
                    "EvtIoInternalDeviceControl",
                )
            };
            if let Some(f) = f {
                taken(label);
                let h = handle(core);
                invoke_callback(&driver, &name, label, || {
                    f(
                        &queue,
                        h,
                        params.output_length,
                        params.input_length,
                        params.ioctl_code,
                    );
                });
                return;
            }
        }
        RequestType::Create | RequestType::Cleanup | RequestType::Close => {}
    }
    if let Some(f) = &cfg.default {
        taken("EvtIoDefault");
        let h = handle(core);
        invoke_callback(&driver, &name, "EvtIoDefault", || f(&queue, h));
        return;
    }
    request::complete_layer(core, Status::INVALID_DEVICE_REQUEST, 0);
}

/// True if the queue accepts new requests.
pub(crate) fn accepts(q: &Arc<QueueCore>) -> bool {
    lock(&q.st).accept == Accept::Open
}

/// A request arrives at the queue (routing, forwarding or requeue by the driver).
pub(crate) fn enqueue(q: &Arc<QueueCore>, core: &Arc<ReqCore>, requeued: bool) {
    if !accepts(q) {
        request::complete_layer(core, Status::INVALID_DEVICE_STATE, 0);
        return;
    }
    let params = lock(&core.st).params;
    let zero = match params.kind {
        RequestType::Read => params.output_length == 0,
        RequestType::Write => params.input_length == 0,
        _ => false,
    };
    if zero && !q.config.allow_zero_length_requests {
        request::complete_layer(core, Status::SUCCESS, 0);
        return;
    }
    {
        let mut rs = lock(&core.st);
        rs.loc = Loc::Queued(Arc::downgrade(q));
        rs.requeued |= requeued;
    }
    let need_power = {
        let mut st = lock(&q.st);
        st.pending.push_back(Arc::clone(core));
        q.power_managed && !st.power_on
    };
    core.trace(&format!("queued in {}", q.object.name()));
    if need_power {
        if let Some(dev) = q.device.upgrade().map(Device) {
            if dev.node().is_some_and(|n| n.is_idle()) && dev.stop_idle().is_ok() {
                dev.resume_idle();
            }
        }
    }
    kick(q);
}

/// A request presented by the queue is no longer the driver's at this queue (completed,
/// forwarded, sent-and-forgotten).
pub(crate) fn request_left(q: &Arc<QueueCore>, core: &Arc<ReqCore>) {
    {
        let mut st = lock(&q.st);
        st.in_flight.retain(|c| !Arc::ptr_eq(c, core));
        st.acked.retain(|id| *id != core.id);
    }
    kick(q);
    check_idle(q);
    activity_done(q);
    wake(&q.machine);
}

/// A power-managed queue may have become empty: the device's S0 idle count may start.
fn activity_done(q: &Arc<QueueCore>) {
    if !q.power_managed {
        return;
    }
    let empty = {
        let st = lock(&q.st);
        st.pending.is_empty() && st.in_flight.is_empty()
    };
    if empty {
        if let Some(dev) = q.device.upgrade().map(Device) {
            dev.idle_activity_done();
        }
    }
}

/// True if a power-managed queue of `device` holds or presented a request (S0 idle condition of
/// Microsoft's *Supporting Idle Power-Down*).
pub(crate) fn power_managed_busy(device: &Device) -> bool {
    power_queues(device).iter().any(|q| {
        let st = lock(&q.st);
        !st.pending.is_empty() || !st.in_flight.is_empty()
    })
}

fn check_idle(q: &Arc<QueueCore>) {
    let callbacks = {
        let mut st = lock(&q.st);
        let mut cbs = Vec::new();
        if st.in_flight.is_empty() {
            cbs.append(&mut st.owned_idle_callbacks);
            if st.pending.is_empty() {
                cbs.append(&mut st.idle_callbacks);
            }
        }
        cbs
    };
    if callbacks.is_empty() {
        return;
    }
    let queue = Queue(Arc::clone(q));
    for cb in callbacks {
        invoke_callback(
            q.object.driver_name(),
            q.object.name(),
            "EvtIoQueueState",
            || cb(&queue),
        );
    }
}

/// Removes an undelivered request (cancellation); false if it is not waiting here.
pub(crate) fn remove_pending(q: &Arc<QueueCore>, core: &Arc<ReqCore>) -> bool {
    let mut st = lock(&q.st);
    let pos = st.pending.iter().position(|c| Arc::ptr_eq(c, core));
    pos.and_then(|p| st.pending.remove(p)).is_some()
}

/// An undelivered request was cancelled: `EvtIoCanceledOnQueue` for a request the driver put
/// there, else completion with `STATUS_CANCELLED`.
pub(crate) fn canceled_on_queue(q: &Arc<QueueCore>, core: &Arc<ReqCore>) {
    let requeued = lock(&core.st).requeued;
    if let (Some(f), true) = (&q.config.canceled_on_queue, requeued) {
        {
            let mut rs = lock(&core.st);
            rs.loc = Loc::Driver;
            if let Some(l) = rs.layers.last_mut() {
                l.queue = Some(Arc::clone(q));
            }
        }
        lock(&q.st).in_flight.push(Arc::clone(core));
        let queue = Queue(Arc::clone(q));
        request::set_taken(
            core,
            format!("EvtIoCanceledOnQueue from queue '{}'", q.object.name()),
        );
        let h = handle(core);
        invoke_callback(
            q.object.driver_name(),
            q.object.name(),
            "EvtIoCanceledOnQueue",
            || f(&queue, h),
        );
    } else {
        request::complete_layer(core, Status::CANCELLED, 0);
        activity_done(q);
    }
}

/// `WdfRequestStopAcknowledge(requeue = TRUE)` / `WdfRequestRequeue`: back to the head.
pub(crate) fn requeue_front(q: &Arc<QueueCore>, core: &Arc<ReqCore>) {
    lock(&core.st).loc = Loc::Queued(Arc::downgrade(q));
    {
        let mut st = lock(&q.st);
        st.in_flight.retain(|c| !Arc::ptr_eq(c, core));
        st.acked.retain(|id| *id != core.id);
        st.pending.push_front(Arc::clone(core));
    }
    core.trace(&format!("requeued in {}", q.object.name()));
    kick(q);
    wake(&q.machine);
}

/// `WdfRequestStopAcknowledge(requeue = FALSE)`.
pub(crate) fn ack_no_requeue(q: &Arc<QueueCore>, core: &Arc<ReqCore>) {
    {
        let mut st = lock(&q.st);
        if !st.acked.contains(&core.id) {
            st.acked.push(core.id);
        }
    }
    core.trace("stop acknowledged (kept by the driver)");
    wake(&q.machine);
}

fn power_queues(device: &Device) -> Vec<Arc<QueueCore>> {
    lock(&io_state(device).queues)
        .iter()
        .filter(|q| q.power_managed)
        .cloned()
        .collect()
}

/// The framework's "queues started" step.
pub(crate) fn power_started(device: &Device) {
    for q in power_queues(device) {
        let resume: Vec<Arc<ReqCore>> = {
            let mut st = lock(&q.st);
            st.power_on = true;
            let acked = std::mem::take(&mut st.acked);
            st.in_flight
                .iter()
                .filter(|c| acked.contains(&c.id))
                .cloned()
                .collect()
        };
        if let Some(f) = &q.config.resume {
            let queue = Queue(Arc::clone(&q));
            for core in resume {
                let h = request::handle(&core);
                invoke_callback(
                    q.object.driver_name(),
                    q.object.name(),
                    "EvtIoResume",
                    || f(&queue, h),
                );
            }
        }
        kick(&q);
    }
}

/// The framework's "queues stopped" step: `EvtIoStop`, then wait (see the module docs).
pub(crate) fn power_stopping(device: &Device, action: StopAction) {
    for q in power_queues(device) {
        let (pending, presented) = {
            let mut st = lock(&q.st);
            st.power_on = false;
            let pending: Vec<_> = if action == StopAction::Purge {
                st.accept = Accept::Purged;
                st.pending.drain(..).collect()
            } else {
                Vec::new()
            };
            let acked = st.acked.clone();
            let presented: Vec<_> = st
                .in_flight
                .iter()
                .filter(|c| !acked.contains(&c.id))
                .cloned()
                .collect();
            (pending, presented)
        };
        for core in pending {
            request::complete_layer(&core, Status::CANCELLED, 0);
        }
        if let Some(f) = &q.config.stop {
            let queue = Queue(Arc::clone(&q));
            for core in presented {
                let Some(h) = request::handle_at(&core, device) else {
                    continue;
                };
                let cancelable = request::is_cancelable(&core);
                let flags = StopFlags { action, cancelable };
                invoke_callback(
                    q.object.driver_name(),
                    q.object.name(),
                    &format!("EvtIoStop({action:?})"),
                    || f(&queue, h, flags),
                );
            }
        }
        if let Some(m) = q.machine.machine() {
            let qq = Arc::clone(&q);
            let stopped = m.wait_under_watchdog("EvtIoStop", q.object.name(), || {
                let st = lock(&qq.st);
                st.in_flight.iter().all(|c| st.acked.contains(&c.id))
            });
            if !stopped {
                let waiting: Vec<_> = {
                    let st = lock(&q.st);
                    st.in_flight
                        .iter()
                        .filter(|c| !st.acked.contains(&c.id))
                        .cloned()
                        .collect()
                };
                let transition = match action {
                    StopAction::Purge => "device removal",
                    StopAction::Suspend => "power-down",
                };
                report_stuck(
                    &m,
                    &q,
                    &format!(
                        "the {transition} of {}: queue '{}' stop (EvtIoStop({action:?}))",
                        device.name(),
                        q.object.name()
                    ),
                    &waiting,
                );
            }
        }
    }
}

/// Reports a framework wait that reached the power watchdog: `what` is still waiting for
/// `waiting` (see crate::verifier, "The power watchdog").
fn report_stuck(m: &crate::Machine, q: &QueueCore, what: &str, waiting: &[Arc<ReqCore>]) {
    let bound = m
        .verifier()
        .power_watchdog()
        .map_or_else(|| "the watchdog".to_owned(), |d| format!("{d:?}"));
    let list = if waiting.is_empty() {
        "nothing any more (it ended as the watchdog fired)".to_owned()
    } else {
        waiting
            .iter()
            .map(|c| request::describe(c))
            .collect::<Vec<_>>()
            .join("; ")
    };
    m.verifier().report_for(
        crate::verifier::Rule::PowerStateFailure,
        q.object.driver_name(),
        q.object.name(),
        &format!(
            "{what} did not finish within {bound} of virtual time: waiting for {list}, neither \
             completed nor stop-acknowledged (a device object has been blocking an IRP for too \
             long: bug check 0x9F, parameter 1 = 0x3)"
        ),
    );
}

/// Removal: purge the queue (undelivered → `STATUS_CANCELLED`, late arrivals → invalid state).
pub(crate) fn purge_for_removal(q: &Arc<QueueCore>) {
    let pending: Vec<_> = {
        let mut st = lock(&q.st);
        st.accept = Accept::Purged;
        st.pending.drain(..).collect()
    };
    for core in pending {
        request::complete_layer(&core, Status::CANCELLED, 0);
    }
    check_idle(q);
}
