//! # NotifyUserWithRequest
//!
//! ## Summary
//!
//! The *inverted call* (C DMF: `Dmf_NotifyUserWithRequest.c`): an application sends an IOCTL the
//! driver does not answer at once; the driver parks it and completes it when it has something to
//! say. [`NotifyUserWithRequest::request_process`] parks a request (cancelable);
//! [`NotifyUserWithRequest::data_process`] completes the oldest parked request with the event's
//! status and data — or, with no request waiting, keeps the event in a bounded ring until one
//! arrives (the oldest event is overwritten when the ring is full, as C DMF's BufferQueue does).
//!
//! ## Configuration
//!
//! [`NotifyUserWithRequestConfig`] (`DMF_CONFIG_NotifyUserWithRequest`):
//! - `maximum_pending_requests` — how many requests may be parked (more are refused with
//!   `STATUS_INVALID_DEVICE_STATE`, the request handed back to the caller);
//! - `maximum_pending_data_buffers`, `size_of_data_buffer` — the event ring: how many events wait
//!   for a request, and the largest event (0 events: an event no request waits for is lost);
//! - `complete` — optional `EVT_DMF_NotifyUserWithRequeset_Complete`: completes a request with an
//!   event (default: the data is copied to the output buffer, information = its length);
//! - `pending_requests_cancel` — optional `EvtPendingRequestsCancel`: completes a request the
//!   application cancelled (default: `STATUS_CANCELLED`).
//!
//! ## Methods
//!
//! | Method | C DMF | IRQL |
//! |---|---|---|
//! | [`NotifyUserWithRequest::request_process`] | `DMF_NotifyUserWithRequest_RequestProcess` | ≤ DISPATCH |
//! | [`NotifyUserWithRequest::event_request_add`] | `DMF_NotifyUserWithRequest_EventRequestAdd` | ≤ DISPATCH |
//! | [`NotifyUserWithRequest::data_process`] | `DMF_NotifyUserWithRequest_DataProcess` | ≤ DISPATCH |
//! | [`NotifyUserWithRequest::request_return`] | `DMF_NotifyUserWithRequest_RequestReturn` | ≤ DISPATCH |
//! | [`NotifyUserWithRequest::request_return_all`] | `DMF_NotifyUserWithRequest_RequestReturnAll` | ≤ DISPATCH |
//! | [`NotifyUserWithRequest::pending_requests`], [`pending_events`](NotifyUserWithRequest::pending_events) | — | ≤ DISPATCH |
//!
//! ## Callbacks
//!
//! [`NotifyUserCompleteFn`]: `Fn(Request, &[u8], NtStatus)` — it owns the request and must
//! complete it. Called without any lock held, never under the Module's lock.
//!
//! ## Remarks
//!
//! - Parked requests live in a manual, non-power-managed WDF queue of the Module's own (C DMF's
//!   `EventRequestQueue`): they do not hold up power transitions of the default queue, and the
//!   framework cancels them when the application calls `CancelIoEx` or the device is removed
//!   (`EvtIoCanceledOnQueue` → `pending_requests_cancel`, default `STATUS_CANCELLED`). Closing a
//!   handle cancels that file object's requests the same way (`ModuleFileCleanup`; KMDF also
//!   flushes its queues by file object at cleanup). The Module never takes cleanup, so other
//!   Modules and the client see it too.
//! - Close completes everything still parked with `STATUS_CANCELLED` (C DMF's
//!   `RequestReturnAll(NULL, 0, STATUS_CANCELLED)`) and drops the waiting events. The queue
//!   stays with the device (the platform contract has no queue delete; WDF deletes it with the
//!   device).
//! - Event data longer than `size_of_data_buffer` is refused with `STATUS_BUFFER_TOO_SMALL`; a
//!   request whose output buffer is shorter than the event's data completes with
//!   `STATUS_BUFFER_TOO_SMALL` (the event is consumed).
//! - Needs a device (its queue): open fails with `STATUS_INVALID_DEVICE_STATE` without one.
//!   Open option `OPEN_Create`, DISPATCH lock. It implements `ModuleFileCleanup`, so it is a
//!   static Module (dmf-core refuses WDF callbacks on dynamic Modules).
//!
//! ## NotifyUserWithRequestMultiple
//!
//! [`NotifyUserWithRequestMultiple`] (C DMF: `Dmf_NotifyUserWithRequestMultiple.c`) is the same
//! pattern fanned out to every client: each file object opened on the device (that the optional
//! `client_arrival` callback accepts) is a client with its own parked requests and its own event
//! ring; [`NotifyUserWithRequestMultiple::data_broadcast`] gives every client the event, and with
//! `replay_last_message_to_new_clients` a new client starts with the last event broadcast
//! (`ReplayLastMessageToNewClients`). [`NotifyUserWithRequestMultiple::request_process`] parks a
//! request for its own file object's client. C DMF builds this from a NotifyUserWithRequest child
//! per client; here the clients share one manual queue, each finding its requests by file object
//! (`WdfIoQueueRetrieveRequestByFileObject`), so no Module is created per open. A client is
//! recorded when its create reaches the Module: add it before Modules that take creates, and
//! after any that refuse them (a create refused later leaves its client until the Module
//! closes). A create whose client cannot be recorded (no memory for its event ring) fails with
//! `STATUS_INSUFFICIENT_RESOURCES`.
//!
//! ## Category
//!
//! Driver Patterns.
//!
//! # Example
//!
//! An IoctlHandler parks `IOCTL_WAIT`; the driver later reports an event.
//!
//! ```
//! extern crate alloc;
//! use alloc::sync::Arc;
//! use dmf_core::sync::{LockKind, ModuleLock};
//! use dmf_core::device::DmfDeviceInit;
//! use dmf_core::platform::contract::device::{DeviceAttributes, Guid};
//! use dmf_core::platform::contract::io::PlatformRequest;
//! use dmf_core::platform::{simulator, DriverConfig};
//! use dmf_core::NtStatus;
//! use dmf_modules::ioctl_handler::{IoctlEntry, IoctlHandler, IoctlHandlerConfig, IoctlResult, IoctlTable};
//! use dmf_modules::notify_user_with_request::{NotifyUserWithRequest, NotifyUserWithRequestConfig};
//! use kmdf_sim::io::{Access, AppConfig, Application};
//! use kmdf_sim::pnp::StackSpec;
//!
//! const GUID: Guid = Guid::new(0x2468_ACE0, 0x1357, 0x9BDF, [8, 7, 6, 5, 4, 3, 2, 1]);
//! const IOCTL_WAIT: u32 = 0x0022_2010;
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! // The Module handle, once the device has created it (a slot under a platform spin lock).
//! let notify: Arc<ModuleLock<Option<NotifyUserWithRequest>>> =
//!     Arc::new(ModuleLock::new(LockKind::Spin, None).unwrap());
//! let slot = Arc::clone(&notify);
//! let config = DriverConfig {
//!     device_add: Arc::new(move |_driver, init| {
//!         let mut dmf = DmfDeviceInit::new(init);
//!         let parked = Arc::clone(&slot);
//!         let wait = IoctlEntry::new(IOCTL_WAIT, 0, 4, move |call| {
//!             let (request, pended) = call.take().expect("untaken");
//!             let notify = parked.lock().clone().expect("created with the device");
//!             if let Err((request, status)) = notify.request_process(request) {
//!                 request.complete(status);
//!             }
//!             IoctlResult::Pending(pended)
//!         })?;
//!         let token = Arc::new(ModuleLock::new(LockKind::Spin, None)?);
//!         let t = Arc::clone(&token);
//!         dmf.set_modules_add(move |_device, modules| {
//!             let added = modules.add(NotifyUserWithRequest::with(NotifyUserWithRequestConfig {
//!                 maximum_pending_requests: 4,
//!                 maximum_pending_data_buffers: 2,
//!                 size_of_data_buffer: 4,
//!                 ..NotifyUserWithRequestConfig::default()
//!             }));
//!             *t.lock() = Some(added);
//!             modules.add(IoctlHandler::with(IoctlHandlerConfig {
//!                 table: IoctlTable::new([wait.clone()])?,
//!                 device_interface: Some(GUID),
//!                 ..IoctlHandlerConfig::default()
//!             }));
//!             Ok(())
//!         })?;
//!         dmf.create_device(DeviceAttributes::default())?;
//!         let device = dmf.modules_create()?;
//!         let added = (*token.lock()).expect("added in modules_add");
//!         let handle = device.get(added)?;
//!         *slot.lock() = Some(handle);
//!         Ok(())
//!     }),
//!     unload: None,
//! };
//! simulator::install_driver(&machine, "notifier", config);
//! let node = machine.pnp().plug_in(StackSpec::new("ROOT\\NOTIFIER", "notifier")).unwrap();
//! let class = simulator::sim_guid(GUID);
//! let handle = Application::new(&machine, AppConfig::default())
//!     .open_interface(class, Access::READ_WRITE)
//!     .unwrap();
//! let pending = handle.device_io_control_overlapped(IOCTL_WAIT, &[], 4).unwrap();
//! machine.settle();
//! assert!(!pending.is_complete(), "parked until there is news");
//! let module = notify.lock().clone().unwrap();
//! module.data_process(NtStatus::SUCCESS, &[1, 2, 3, 4]).unwrap();
//! assert_eq!(pending.wait(None), Some(Ok((vec![1, 2, 3, 4], 4))));
//! handle.close();
//! node.remove().unwrap();
//! machine.settle();
//! assert!(machine.verifier().violations().is_empty());
//! ```

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use dmf_core::fallible::{try_arc, try_collect, try_to_vec, try_vec_filled, VecExt};
use dmf_core::module::{Dispatched, Handled, ModuleCallbacks};
use dmf_core::platform::contract::device::PlatformDevice;
use dmf_core::platform::contract::io::{
    PlatformFileObject, PlatformQueue, PlatformRequest, QueueDispatch,
};
use dmf_core::platform::{FileObject, Queue, QueueConfig, Request};
use dmf_core::sync::{LockKind, ModuleLock};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

/// `EVT_DMF_NotifyUserWithRequeset_Complete` / `EvtPendingRequestsCancel`: completes `request`
/// with an event's data and status (it owns the request).
pub type NotifyUserCompleteFn = Arc<dyn Fn(Request, &[u8], NtStatus) + Send + Sync>;

/// `DMF_CONFIG_NotifyUserWithRequest`. See the [module documentation](self).
#[derive(Clone, Default)]
pub struct NotifyUserWithRequestConfig {
    /// `MaximumNumberOfPendingRequests`.
    pub maximum_pending_requests: u32,
    /// `MaximumNumberOfPendingDataBuffers`: events kept while no request waits.
    pub maximum_pending_data_buffers: u32,
    /// `SizeOfDataBuffer`: the largest event.
    pub size_of_data_buffer: usize,
    /// `EventCallbackFunction`: completes a request with an event (default: copy to the output).
    pub complete: Option<NotifyUserCompleteFn>,
    /// `EvtPendingRequestsCancel`: completes a cancelled request (default: `STATUS_CANCELLED`).
    pub pending_requests_cancel: Option<NotifyUserCompleteFn>,
}

impl core::fmt::Debug for NotifyUserWithRequestConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NotifyUserWithRequestConfig")
            .field("maximum_pending_requests", &self.maximum_pending_requests)
            .field(
                "maximum_pending_data_buffers",
                &self.maximum_pending_data_buffers,
            )
            .field("size_of_data_buffer", &self.size_of_data_buffer)
            .field("complete", &self.complete.is_some())
            .field(
                "pending_requests_cancel",
                &self.pending_requests_cancel.is_some(),
            )
            .finish()
    }
}

/// Parks inverted-call requests and completes them with events. See the
/// [module documentation](self).
#[dmf_module(crate = dmf_core, config = NotifyUserWithRequestConfig, context = Context, open = Create, lock = Dispatch)]
pub struct NotifyUserWithRequest;

#[derive(Default)]
struct Context {
    shared: Option<Arc<Shared>>,
}

/// Fixed-capacity ring of events: preallocated at open, the oldest overwritten when full.
struct EventRing {
    statuses: Vec<NtStatus>,
    lengths: Vec<usize>,
    data: Vec<u8>,
    slot_size: usize,
    head: usize,
    count: usize,
}

impl EventRing {
    fn new(capacity: usize, slot_size: usize) -> NtResult<Self> {
        let bytes = capacity
            .checked_mul(slot_size)
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        Ok(EventRing {
            statuses: try_vec_filled(NtStatus::SUCCESS, capacity)?,
            lengths: try_vec_filled(0, capacity)?,
            data: try_vec_filled(0, bytes)?,
            slot_size,
            head: 0,
            count: 0,
        })
    }

    fn capacity(&self) -> usize {
        self.statuses.len()
    }

    /// Appends an event; with the ring full the oldest is overwritten. Returns `false` only for a
    /// ring of capacity 0 (the event is lost).
    fn push(&mut self, status: NtStatus, data: &[u8]) -> bool {
        let capacity = self.capacity();
        if capacity == 0 {
            return false;
        }
        if self.count == capacity {
            self.head = (self.head + 1) % capacity;
            self.count -= 1;
        }
        let slot = (self.head + self.count) % capacity;
        self.statuses[slot] = status;
        self.lengths[slot] = data.len();
        let start = slot * self.slot_size;
        self.data[start..start + data.len()].copy_from_slice(data);
        self.count += 1;
        true
    }

    /// Takes the oldest event, its data copied into `out` (`slot_size` bytes): its status and
    /// its length.
    fn pop(&mut self, out: &mut [u8]) -> Option<(NtStatus, usize)> {
        if self.count == 0 {
            return None;
        }
        let slot = self.head;
        let start = slot * self.slot_size;
        let length = self.lengths[slot].min(out.len());
        out[..length].copy_from_slice(&self.data[start..start + length]);
        self.head = (self.head + 1) % self.capacity();
        self.count -= 1;
        Some((self.statuses[slot], length))
    }

    fn clear(&mut self) {
        self.head = 0;
        self.count = 0;
    }
}

/// What the Module's Methods and callbacks share; lives from open to close.
struct Shared {
    /// `EventRequestQueue`: a manual, non-power-managed queue holding the parked requests, so
    /// that power transitions do not wait for them and the framework cancels them.
    queue: Queue,
    /// `EventCountHeld`: requests in the queue (shared with the queue's cancel callback).
    held: Arc<AtomicUsize>,
    /// The event ring. Its lock also orders "no request → keep the event" against "new
    /// request → look for an event".
    events: ModuleLock<EventRing>,
    maximum_pending_requests: usize,
    size_of_data_buffer: usize,
    complete: Option<NotifyUserCompleteFn>,
    cancel: Option<NotifyUserCompleteFn>,
}

/// The default completion: the data into the output buffer, information = its length.
fn complete_with_data(request: Request, data: &[u8], status: NtStatus) {
    if data.is_empty() || status.is_error() {
        request.complete(status);
        return;
    }
    let copied = request.with_output_buffer(data.len(), |out| {
        out[..data.len()].copy_from_slice(data);
    });
    match copied {
        Ok(()) => request.complete_with_information(status, data.len()),
        Err(error) => request.complete(error),
    }
}

fn cancel_complete(cancel: Option<&NotifyUserCompleteFn>, request: Request) {
    match cancel {
        Some(cancel) => cancel(request, &[], NtStatus::CANCELLED),
        None => request.complete(NtStatus::CANCELLED),
    }
}

impl Shared {
    fn create(m: &Dispatched<'_, NotifyUserWithRequest>) -> NtResult<Arc<Shared>> {
        let config = m.config();
        let device = m.device().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let maximum_pending_requests = usize::try_from(config.maximum_pending_requests)
            .map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let events = usize::try_from(config.maximum_pending_data_buffers)
            .map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let events = ModuleLock::new(
            LockKind::Spin,
            EventRing::new(events, config.size_of_data_buffer)?,
        )?;
        let held = try_arc(AtomicUsize::new(0))?;
        let mut queue_config = QueueConfig::new(QueueDispatch::Manual);
        queue_config.power_managed = Some(false);
        let (h, cancel) = (Arc::clone(&held), config.pending_requests_cancel.clone());
        // EvtIoCanceledOnQueue: the application cancelled, or the queue was purged.
        queue_config.canceled_on_queue = Some(try_arc(move |_queue: &Queue, request: Request| {
            h.fetch_sub(1, Ordering::SeqCst);
            cancel_complete(cancel.as_ref(), request);
        })?);
        let queue = device.create_queue(queue_config)?;
        try_arc(Shared {
            queue,
            held,
            events,
            maximum_pending_requests,
            size_of_data_buffer: config.size_of_data_buffer,
            complete: config.complete.clone(),
            cancel: config.pending_requests_cancel.clone(),
        })
    }

    fn deliver(&self, request: Request, data: &[u8], status: NtStatus) {
        match &self.complete {
            Some(complete) => complete(request, data, status),
            None => complete_with_data(request, data, status),
        }
    }

    /// `WdfIoQueueRetrieveNextRequest` on the parked requests.
    fn retrieve(&self) -> Option<Request> {
        let request = self.queue.retrieve_next_request().ok()?;
        self.held.fetch_sub(1, Ordering::SeqCst);
        Some(request)
    }

    /// `DMF_NotifyUserWithRequest_EventRequestAdd`.
    fn park(&self, request: Request) -> Result<(), (Request, NtStatus)> {
        if self.held.fetch_add(1, Ordering::SeqCst) >= self.maximum_pending_requests {
            self.held.fetch_sub(1, Ordering::SeqCst);
            return Err((request, NtStatus::INVALID_DEVICE_STATE));
        }
        request.forward_to_queue(&self.queue).inspect_err(|_| {
            self.held.fetch_sub(1, Ordering::SeqCst);
        })
    }

    /// Room for one event's data, for [`pump`](Self::pump): allocated before anything changes.
    fn scratch(&self) -> NtResult<Vec<u8>> {
        try_vec_filled(0, self.size_of_data_buffer)
    }

    /// Completes parked requests with waiting events, oldest with oldest, while both exist;
    /// `scratch` (from [`scratch`](Self::scratch)) holds each event's data.
    fn pump(&self, scratch: &mut [u8]) {
        loop {
            let (request, status, length) = {
                let mut events = self.events.lock();
                if events.count == 0 {
                    return;
                }
                let Some(request) = self.retrieve() else {
                    return;
                };
                let (status, length) = events.pop(scratch).unwrap_or((NtStatus::SUCCESS, 0));
                (request, status, length)
            };
            self.deliver(request, &scratch[..length], status);
        }
    }
}

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for NotifyUserWithRequest {
    fn open(m: &Dispatched<'_, Self>) -> NtResult<()> {
        let shared = Shared::create(m)?;
        m.lock().shared = Some(shared);
        Ok(())
    }

    fn close(m: &Dispatched<'_, Self>) {
        let shared = m.lock().shared.take();
        if let Some(shared) = shared {
            // C DMF: RequestReturnAll(NULL, 0, STATUS_CANCELLED).
            while let Some(request) = shared.retrieve() {
                request.complete(NtStatus::CANCELLED);
            }
            shared.events.lock().clear();
        }
    }

    fn file_cleanup(m: &Dispatched<'_, Self>, file: &FileObject) -> Handled {
        // WDF cancels its queues' requests of a file at cleanup; doing it here too is harmless
        // where it has (nothing is left) and needed where it has not.
        let shared = m.lock().shared.clone();
        if let Some(shared) = shared {
            while let Ok(request) = shared.queue.retrieve_request_by_file_object(file) {
                shared.held.fetch_sub(1, Ordering::SeqCst);
                cancel_complete(shared.cancel.as_ref(), request);
            }
        }
        Handled::NotHandled
    }
}

impl NotifyUserWithRequest {
    /// Runs `f` on the shared state inside the Method's rundown guard.
    fn with_shared<R>(&self, f: impl FnOnce(&Shared) -> R) -> NtResult<R> {
        let m = self.enter()?;
        let shared = m.lock().shared.clone();
        let shared = shared.ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let result = f(&shared);
        drop(m);
        Ok(result)
    }

    /// `DMF_NotifyUserWithRequest_RequestProcess`: parks `request` and, if an event waits,
    /// completes the oldest parked request with it.
    ///
    /// # Errors
    ///
    /// The request comes back with `STATUS_INVALID_DEVICE_STATE` when `maximum_pending_requests`
    /// are parked or the Module is closing, `STATUS_INSUFFICIENT_RESOURCES` when the room to
    /// copy a waiting event cannot be allocated; the caller completes it.
    pub fn request_process(&self, request: Request) -> Result<(), (Request, NtStatus)> {
        self.park(request, true)
    }

    /// `DMF_NotifyUserWithRequest_EventRequestAdd`: parks `request` without looking at waiting
    /// events (the next `data_process` or `request_process` delivers them).
    ///
    /// # Errors
    ///
    /// As [`request_process`](Self::request_process).
    pub fn event_request_add(&self, request: Request) -> Result<(), (Request, NtStatus)> {
        self.park(request, false)
    }

    fn park(&self, request: Request, pump: bool) -> Result<(), (Request, NtStatus)> {
        let m = match self.enter() {
            Ok(m) => m,
            Err(status) => return Err((request, status)),
        };
        let shared = m.lock().shared.clone();
        let Some(shared) = shared else {
            return Err((request, NtStatus::INVALID_DEVICE_STATE));
        };
        if !pump {
            shared.park(request)?;
            drop(m);
            return Ok(());
        }
        let mut scratch = match shared.scratch() {
            Ok(scratch) => scratch,
            Err(status) => return Err((request, status)),
        };
        shared.park(request)?;
        shared.pump(&mut scratch);
        drop(m);
        Ok(())
    }

    /// `DMF_NotifyUserWithRequest_DataProcess`: an event. It completes the oldest parked request
    /// (`complete`, or the data copied into its output buffer); with none parked it waits in the
    /// ring (the oldest waiting event is overwritten when the ring is full; with a ring of 0 it
    /// is lost).
    ///
    /// # Errors
    ///
    /// `STATUS_BUFFER_TOO_SMALL` if `data` is longer than `size_of_data_buffer`;
    /// `STATUS_INVALID_DEVICE_STATE` once closing; `STATUS_INSUFFICIENT_RESOURCES` when the room
    /// to copy a waiting event cannot be allocated (the event is then not kept).
    pub fn data_process(&self, status: NtStatus, data: &[u8]) -> NtResult<()> {
        self.with_shared(|shared| {
            if data.len() > shared.size_of_data_buffer {
                return Err(NtStatus::BUFFER_TOO_SMALL);
            }
            let mut scratch = shared.scratch()?;
            let direct = {
                let mut events = shared.events.lock();
                if events.count == 0 {
                    // No backlog: straight to a waiting request if there is one, else keep it
                    // (under the lock, so a request parked meanwhile finds it in its pump).
                    let direct = shared.retrieve();
                    if direct.is_none() {
                        let _kept = events.push(status, data);
                    }
                    direct
                } else {
                    let _kept = events.push(status, data);
                    None
                }
            };
            match direct {
                Some(request) => shared.deliver(request, data, status),
                None => shared.pump(&mut scratch),
            }
            Ok(())
        })?
    }

    /// `DMF_NotifyUserWithRequest_RequestReturn`: completes the oldest parked request now with
    /// `status` and `data`, bypassing the event ring. Returns whether there was one.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` once closing.
    pub fn request_return(&self, status: NtStatus, data: &[u8]) -> NtResult<bool> {
        self.with_shared(|shared| match shared.retrieve() {
            Some(request) => {
                shared.deliver(request, data, status);
                true
            }
            None => false,
        })
    }

    /// `DMF_NotifyUserWithRequest_RequestReturnAll`: completes every parked request with
    /// `status` and `data`. Returns how many.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` once closing.
    pub fn request_return_all(&self, status: NtStatus, data: &[u8]) -> NtResult<usize> {
        self.with_shared(|shared| {
            let mut count = 0;
            while let Some(request) = shared.retrieve() {
                shared.deliver(request, data, status);
                count += 1;
            }
            count
        })
    }

    /// How many requests are parked.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` once closing.
    pub fn pending_requests(&self) -> NtResult<usize> {
        self.with_shared(|shared| shared.held.load(Ordering::SeqCst))
    }

    /// How many events wait for a request.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` once closing.
    pub fn pending_events(&self) -> NtResult<usize> {
        self.with_shared(|shared| shared.events.lock().count)
    }
}

/// `EVT_DMF_NotifyUserWithRequestMultiple_ArrivalCallback`: `Ok` makes the file object a client;
/// an error leaves it without notifications (its open is not refused).
pub type ClientArrivalFn = Arc<dyn Fn(&FileObject) -> NtResult<()> + Send + Sync>;
/// `EVT_DMF_NotifyUserWithRequestMultiple_DepartureCallback`: a client's handle was closed.
pub type ClientDepartureFn = Arc<dyn Fn(&FileObject) + Send + Sync>;

/// `DMF_CONFIG_NotifyUserWithRequestMultiple`. See the [module documentation](self).
#[derive(Clone, Default)]
pub struct NotifyUserWithRequestMultipleConfig {
    /// `MaximumNumberOfPendingRequests`, per client.
    pub maximum_pending_requests: u32,
    /// `MaximumNumberOfPendingDataBuffers`, per client.
    pub maximum_pending_data_buffers: u32,
    /// `SizeOfDataBuffer`.
    pub size_of_data_buffer: usize,
    /// `CompletionCallback` (default: the data copied to the output buffer).
    pub complete: Option<NotifyUserCompleteFn>,
    /// `EvtClientArrivalCallback`.
    pub client_arrival: Option<ClientArrivalFn>,
    /// `EvtClientDepartureCallback` (only for accepted clients).
    pub client_departure: Option<ClientDepartureFn>,
    /// `ModeType.Modes.ReplayLastMessageToNewClients`.
    pub replay_last_message_to_new_clients: bool,
}

impl core::fmt::Debug for NotifyUserWithRequestMultipleConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NotifyUserWithRequestMultipleConfig")
            .field("maximum_pending_requests", &self.maximum_pending_requests)
            .field(
                "maximum_pending_data_buffers",
                &self.maximum_pending_data_buffers,
            )
            .field("size_of_data_buffer", &self.size_of_data_buffer)
            .field(
                "replay_last_message_to_new_clients",
                &self.replay_last_message_to_new_clients,
            )
            .finish_non_exhaustive()
    }
}

/// NotifyUserWithRequest for every open handle at once. See the [module documentation](self).
#[dmf_module(crate = dmf_core, config = NotifyUserWithRequestMultipleConfig, context = MultipleContext, open = Create, lock = Dispatch)]
pub struct NotifyUserWithRequestMultiple;

#[derive(Default)]
struct MultipleContext {
    shared: Option<Arc<MultipleShared>>,
}

/// One client: its file object, its parked-request count, its events.
struct Client {
    /// The file object's ID (the sort key of [`Clients::by_file`]).
    id: u64,
    file: FileObject,
    held: usize,
    events: EventRing,
}

struct Clients {
    /// Sorted by file-object ID.
    by_file: Vec<Client>,
    /// The last event broadcast (for replay): status, data.
    last: Option<(NtStatus, Vec<u8>)>,
}

impl Clients {
    /// The client of file object `file`.
    fn get_mut(&mut self, file: u64) -> Option<&mut Client> {
        let index = self.by_file.binary_search_by_key(&file, |c| c.id).ok()?;
        self.by_file.get_mut(index)
    }

    /// Records `client` (replacing one of the same file object). Refused, nothing changes.
    fn insert(&mut self, client: Client) -> NtResult<()> {
        match self.by_file.binary_search_by_key(&client.id, |c| c.id) {
            Ok(index) => {
                self.by_file[index] = client;
                Ok(())
            }
            Err(index) => self.by_file.try_insert(index, client),
        }
    }

    /// Forgets the client of file object `file`.
    fn remove(&mut self, file: u64) -> Option<Client> {
        let index = self.by_file.binary_search_by_key(&file, |c| c.id).ok()?;
        Some(self.by_file.remove(index))
    }
}

struct MultipleShared {
    queue: Queue,
    clients: Arc<ModuleLock<Clients>>,
    maximum_pending_requests: usize,
    maximum_pending_data_buffers: usize,
    size_of_data_buffer: usize,
    complete: Option<NotifyUserCompleteFn>,
}

impl MultipleShared {
    fn create(m: &Dispatched<'_, NotifyUserWithRequestMultiple>) -> NtResult<Arc<Self>> {
        let config = m.config();
        let device = m.device().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let clients = try_arc(ModuleLock::new(
            LockKind::Spin,
            Clients {
                by_file: Vec::new(),
                last: None,
            },
        )?)?;
        let mut queue_config = QueueConfig::new(QueueDispatch::Manual);
        queue_config.power_managed = Some(false);
        let c = Arc::clone(&clients);
        queue_config.canceled_on_queue = Some(try_arc(move |_queue: &Queue, request: Request| {
            if let Some(file) = request.file_object() {
                if let Some(client) = c.lock().get_mut(file.id()) {
                    client.held = client.held.saturating_sub(1);
                }
            }
            request.complete(NtStatus::CANCELLED);
        })?);
        let queue = device.create_queue(queue_config)?;
        try_arc(MultipleShared {
            queue,
            clients,
            maximum_pending_requests: usize::try_from(config.maximum_pending_requests)
                .map_err(|_| NtStatus::INVALID_PARAMETER)?,
            maximum_pending_data_buffers: usize::try_from(config.maximum_pending_data_buffers)
                .map_err(|_| NtStatus::INVALID_PARAMETER)?,
            size_of_data_buffer: config.size_of_data_buffer,
            complete: config.complete.clone(),
        })
    }

    fn deliver(&self, request: Request, data: &[u8], status: NtStatus) {
        match &self.complete {
            Some(complete) => complete(request, data, status),
            None => complete_with_data(request, data, status),
        }
    }

    /// A parked request of `client` (its count kept).
    fn retrieve(&self, client: &mut Client) -> Option<Request> {
        let request = self
            .queue
            .retrieve_request_by_file_object(&client.file)
            .ok()?;
        client.held = client.held.saturating_sub(1);
        Some(request)
    }

    /// Completes `file`'s parked requests with its waiting events while both exist; `scratch`
    /// (`size_of_data_buffer` bytes, allocated before anything changed) holds each event's data.
    fn pump(&self, file: u64, scratch: &mut [u8]) {
        loop {
            let (request, status, length) = {
                let mut clients = self.clients.lock();
                let Some(client) = clients.get_mut(file) else {
                    return;
                };
                if client.events.count == 0 {
                    return;
                }
                let Some(request) = self.retrieve(client) else {
                    return;
                };
                let (status, length) = client.events.pop(scratch).unwrap_or((NtStatus::SUCCESS, 0));
                (request, status, length)
            };
            self.deliver(request, &scratch[..length], status);
        }
    }
}

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for NotifyUserWithRequestMultiple {
    fn open(m: &Dispatched<'_, Self>) -> NtResult<()> {
        let shared = MultipleShared::create(m)?;
        m.lock().shared = Some(shared);
        Ok(())
    }

    fn close(m: &Dispatched<'_, Self>) {
        let shared = m.lock().shared.take();
        if let Some(shared) = shared {
            while let Ok(request) = shared.queue.retrieve_next_request() {
                request.complete(NtStatus::CANCELLED);
            }
            let mut clients = shared.clients.lock();
            clients.by_file.clear();
            clients.last = None;
        }
    }

    fn file_create(
        m: &Dispatched<'_, Self>,
        io: &mut dmf_core::module::IoRequest<'_>,
        file: &FileObject,
    ) -> Handled {
        let shared = m.lock().shared.clone();
        let Some(shared) = shared else {
            return Handled::NotHandled;
        };
        let mut events = match EventRing::new(
            shared.maximum_pending_data_buffers,
            shared.size_of_data_buffer,
        ) {
            Ok(events) => events,
            // A client that could not be recorded would never be notified: its open fails.
            Err(NtStatus::INSUFFICIENT_RESOURCES) => {
                return io.complete(NtStatus::INSUFFICIENT_RESOURCES)
            }
            // A configuration the ring refuses (its size overflows): no notifications.
            Err(_) => return Handled::NotHandled,
        };
        if let Some(arrival) = &m.config().client_arrival {
            if arrival(file).is_err() {
                return Handled::NotHandled;
            }
        }
        let recorded = {
            let mut clients = shared.clients.lock();
            if m.config().replay_last_message_to_new_clients {
                if let Some((status, data)) = &clients.last {
                    let _kept = events.push(*status, data);
                }
            }
            clients.insert(Client {
                id: file.id(),
                file: file.clone(),
                held: 0,
                events,
            })
        };
        match recorded {
            Ok(()) => Handled::NotHandled,
            Err(status) => {
                // Accepted by the client, but the open fails: its departure balances the arrival.
                if let Some(departure) = &m.config().client_departure {
                    departure(file);
                }
                io.complete(status)
            }
        }
    }

    fn file_cleanup(m: &Dispatched<'_, Self>, file: &FileObject) -> Handled {
        let shared = m.lock().shared.clone();
        let Some(shared) = shared else {
            return Handled::NotHandled;
        };
        while let Ok(request) = shared.queue.retrieve_request_by_file_object(file) {
            request.complete(NtStatus::CANCELLED);
        }
        let removed = shared.clients.lock().remove(file.id());
        if let (Some(_), Some(departure)) = (removed, &m.config().client_departure) {
            departure(file);
        }
        Handled::NotHandled
    }
}

impl NotifyUserWithRequestMultiple {
    /// `DMF_NotifyUserWithRequestMultiple_RequestProcess`: parks `request` for its file object's
    /// client and, if that client has an event waiting, completes its oldest request with it.
    ///
    /// # Errors
    ///
    /// The request comes back with `STATUS_INVALID_DEVICE_REQUEST` if its file object is not a
    /// client, `STATUS_INVALID_DEVICE_STATE` when the client has `maximum_pending_requests`
    /// parked or the Module is closing, `STATUS_INSUFFICIENT_RESOURCES` when the room to copy a
    /// waiting event cannot be allocated; the caller completes it.
    pub fn request_process(&self, request: Request) -> Result<(), (Request, NtStatus)> {
        let m = match self.enter() {
            Ok(m) => m,
            Err(status) => return Err((request, status)),
        };
        let shared = m.lock().shared.clone();
        let Some(shared) = shared else {
            return Err((request, NtStatus::INVALID_DEVICE_STATE));
        };
        let Some(file) = request.file_object().map(|f| f.id()) else {
            return Err((request, NtStatus::INVALID_DEVICE_REQUEST));
        };
        let mut scratch = match try_vec_filled(0, shared.size_of_data_buffer) {
            Ok(scratch) => scratch,
            Err(status) => return Err((request, status)),
        };
        {
            let mut clients = shared.clients.lock();
            let Some(client) = clients.get_mut(file) else {
                return Err((request, NtStatus::INVALID_DEVICE_REQUEST));
            };
            if client.held >= shared.maximum_pending_requests {
                return Err((request, NtStatus::INVALID_DEVICE_STATE));
            }
            client.held += 1;
        }
        if let Err(refused) = request.forward_to_queue(&shared.queue) {
            if let Some(client) = shared.clients.lock().get_mut(file) {
                client.held = client.held.saturating_sub(1);
            }
            return Err(refused);
        }
        shared.pump(file, &mut scratch);
        drop(m);
        Ok(())
    }

    /// `DMF_NotifyUserWithRequestMultiple_DataBroadcast`: every client gets the event — its
    /// oldest parked request completes with it, or it waits in the client's ring.
    ///
    /// # Errors
    ///
    /// `STATUS_BUFFER_TOO_SMALL` if `data` is longer than `size_of_data_buffer`;
    /// `STATUS_INVALID_DEVICE_STATE` once closing; `STATUS_INSUFFICIENT_RESOURCES` (no client
    /// got the event) when the copy kept for replay or the list of waiting requests cannot be
    /// allocated.
    pub fn data_broadcast(&self, data: &[u8], status: NtStatus) -> NtResult<()> {
        let m = self.enter()?;
        let shared = m.lock().shared.clone();
        let shared = shared.ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        if data.len() > shared.size_of_data_buffer {
            return Err(NtStatus::BUFFER_TOO_SMALL);
        }
        let last = try_to_vec(data)?;
        let ready = {
            let mut clients = shared.clients.lock();
            // A place for a request of every client before any is taken from the queue.
            let mut ready = try_collect(clients.by_file.iter().map(|_| None))?;
            for (client, place) in clients.by_file.iter_mut().zip(ready.iter_mut()) {
                if client.events.count == 0 {
                    *place = shared.retrieve(client);
                }
                if place.is_none() {
                    let _kept = client.events.push(status, data);
                }
            }
            clients.last = Some((status, last));
            ready
        };
        for request in ready.into_iter().flatten() {
            shared.deliver(request, data, status);
        }
        drop(m);
        Ok(())
    }

    /// How many clients are connected.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` once closing.
    pub fn clients(&self) -> NtResult<usize> {
        let m = self.enter()?;
        let shared = m.lock().shared.clone();
        let shared = shared.ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let count = shared.clients.lock().by_file.len();
        Ok(count)
    }
}
