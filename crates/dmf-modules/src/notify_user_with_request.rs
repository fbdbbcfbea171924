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
//!   application cancelled (default: `STATUS_CANCELLED`);
//! - `data_cleanup` — optional `EvtDataCleanup`: sees each event's data when the Module is done
//!   with it;
//! - `time_stamping` — `TimeStamping`: events and parked requests carry their arrival's tick count.
//!
//! Left out: `EnableLookAside` (the event ring would grow by one allocation per event no request
//! takes, sized by nothing the Module bounds — the kernel rule forbids it; the ring overwrites
//! instead) and `ClientDriverProviderName` (user-mode event logging only).
//!
//! ## Methods
//!
//! | Method | C DMF | IRQL |
//! |---|---|---|
//! | [`NotifyUserWithRequest::request_process`] | `DMF_NotifyUserWithRequest_RequestProcess` | ≤ DISPATCH |
//! | [`NotifyUserWithRequest::event_request_add`] | `DMF_NotifyUserWithRequest_EventRequestAdd` | ≤ DISPATCH |
//! | [`NotifyUserWithRequest::data_process`] | `DMF_NotifyUserWithRequest_DataProcess` | ≤ DISPATCH |
//! | [`NotifyUserWithRequest::request_return`] | `DMF_NotifyUserWithRequest_RequestReturn` | ≤ DISPATCH |
//! | [`NotifyUserWithRequest::request_return_ex`] | `DMF_NotifyUserWithRequest_RequestReturnEx` | ≤ DISPATCH |
//! | [`NotifyUserWithRequest::request_return_all`] | `DMF_NotifyUserWithRequest_RequestReturnAll` | ≤ DISPATCH |
//! | [`NotifyDelivery::data_timestamp`] (the callback's argument) | `DMF_NotifyUserWithRequest_DataBufferTimestampGet` | — |
//! | [`NotifyDelivery::request_timestamp`] (the callback's argument) | `DMF_NotifyUserWithRequest_RequestTimestampGet` | — |
//! | [`NotifyUserWithRequest::pending_requests`], [`pending_events`](NotifyUserWithRequest::pending_events) | — | ≤ DISPATCH |
//!
//! ## Callbacks
//!
//! - `complete` → [`NotifyUserDeliverFn`]: `Fn(Request, &NotifyDelivery)` — it owns the request and
//!   must complete it; the [`NotifyDelivery`] holds the event's data and status and, with
//!   `time_stamping`, both time stamps. C DMF's timestamp Methods may be called "only from the
//!   callback" (they read the data buffer's header and the request's context); here the stamps
//!   *are* the callback's argument, so that rule is the type's.
//! - `pending_requests_cancel` → [`NotifyUserCompleteFn`]: `Fn(Request, &[u8], NtStatus)`.
//! - `data_cleanup` → [`NotifyUserDataCleanupFn`]: `Fn(&[u8])`, the event's data.
//!
//! All are called without any lock of the Module held.
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
//! - **Time stamps** are tick counts (`DMF_Time_TickCountGet`: 100-ns units of the interrupt-time
//!   clock since boot; C DMF's Time child reads `KeQueryPerformanceCounter`, whose unit is the
//!   machine's; ours is fixed, so `Time::elapsed_time_*` can measure from them). An event is
//!   stamped by `data_process`, a request when it is parked; the park times of parked requests
//!   are kept by request in room reserved for `maximum_pending_requests` at open (C allocates a
//!   request context per park, which can fail; this cannot).
//! - **`EvtDataCleanup`** runs once for every event `data_process` accepted: after the event
//!   completed a request, or when it is discarded — overwritten by a newer one in a full ring,
//!   kept by no ring (`maximum_pending_data_buffers` 0), or still waiting at close. (C DMF calls
//!   it when the event's buffer goes back to its BufferQueue: after a delivery and at close; an
//!   overwritten event is reused without it, which would skip the cleanup of its data.)
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
use dmf_core::platform::contract::PlatformClock;
use dmf_core::platform::{Clock, FileObject, Queue, QueueConfig, Request};
use dmf_core::sync::{LockKind, ModuleLock};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

/// `EvtPendingRequestsCancel`, and NotifyUserWithRequestMultiple's `CompletionCallback`:
/// completes `request` with an event's data and status (it owns the request).
pub type NotifyUserCompleteFn = Arc<dyn Fn(Request, &[u8], NtStatus) + Send + Sync>;

/// `EVT_DMF_NotifyUserWithRequest_Complete` of [`NotifyUserWithRequest`]: completes `request`
/// (it owns the request) with what the [`NotifyDelivery`] says.
pub type NotifyUserDeliverFn = Arc<dyn Fn(Request, &NotifyDelivery<'_>) + Send + Sync>;

/// `EvtDataCleanup` (`EVT_DMF_BufferQueue_ReuseCleanup`): the Module is done with an event's
/// data — it completed a request, or it is discarded (overwritten in a full ring, kept by no ring,
/// dropped at close). Called once per event `data_process` accepted, without the Module's locks.
pub type NotifyUserDataCleanupFn = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// What a parked request is completed with: the event and, with `time_stamping`, C DMF's time
/// stamps (tick counts: 100-ns units of the interrupt-time clock since boot, as
/// `Time::tick_count_get` reports them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifyDelivery<'a> {
    /// The event's data (empty for `request_return_ex`).
    pub data: &'a [u8],
    /// The event's status.
    pub status: NtStatus,
    /// `DMF_NotifyUserWithRequest_DataBufferTimestampGet`: when `data_process` received the
    /// event (`None` without `time_stamping`, and for `request_return*`, which has no event).
    pub data_timestamp: Option<i64>,
    /// `DMF_NotifyUserWithRequest_RequestTimestampGet`: when the request was parked (`None`
    /// without `time_stamping`).
    pub request_timestamp: Option<i64>,
}

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
    pub complete: Option<NotifyUserDeliverFn>,
    /// `EvtPendingRequestsCancel`: completes a cancelled request (default: `STATUS_CANCELLED`).
    pub pending_requests_cancel: Option<NotifyUserCompleteFn>,
    /// `EvtDataCleanup`: sees each event's data when the Module is done with it.
    pub data_cleanup: Option<NotifyUserDataCleanupFn>,
    /// `TimeStamping`: events and parked requests carry the tick count of their arrival
    /// ([`NotifyDelivery`]'s time stamps).
    pub time_stamping: bool,
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
            .field("data_cleanup", &self.data_cleanup.is_some())
            .field("time_stamping", &self.time_stamping)
            .finish()
    }
}

/// The tick count of now (`DMF_Time_TickCountGet`: 100-ns units since boot).
fn tick_count() -> i64 {
    i64::try_from(Clock::now().as_nanos() / 100).unwrap_or(i64::MAX)
}

/// The park times of the parked requests, by request ID (`REQUESTCONTEXT.Timestamp`): room for
/// `maximum_pending_requests` reserved at open; an entry is added after the request was admitted
/// and removed before it leaves the count, so the room always suffices.
struct RequestStamps(ModuleLock<Vec<(u64, i64)>>);

impl RequestStamps {
    fn new(capacity: usize) -> NtResult<Self> {
        let mut stamps = Vec::new();
        stamps.try_reserve_exact_nt(capacity)?;
        Ok(RequestStamps(ModuleLock::new(LockKind::Spin, stamps)?))
    }

    fn insert(&self, request: u64, stamp: i64) {
        // Within the reserved room (see above); a refusal would only lose the stamp.
        let _ = self.0.lock().try_push((request, stamp));
    }

    fn take(&self, request: u64) -> Option<i64> {
        let mut stamps = self.0.lock();
        let index = stamps.iter().position(|(id, _)| *id == request)?;
        Some(stamps.swap_remove(index).1)
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
    /// Each event's tick count when it arrived (0 without time stamping).
    stamps: Vec<i64>,
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
            stamps: try_vec_filled(0, capacity)?,
            data: try_vec_filled(0, bytes)?,
            slot_size,
            head: 0,
            count: 0,
        })
    }

    fn capacity(&self) -> usize {
        self.statuses.len()
    }

    /// An empty ring of capacity 0 (no allocation).
    fn none() -> Self {
        EventRing {
            statuses: Vec::new(),
            lengths: Vec::new(),
            stamps: Vec::new(),
            data: Vec::new(),
            slot_size: 0,
            head: 0,
            count: 0,
        }
    }

    /// The events held, oldest first: their data.
    fn events(&self) -> impl Iterator<Item = &[u8]> {
        let capacity = self.capacity().max(1);
        (0..self.count).map(move |i| {
            let slot = (self.head + i) % capacity;
            let start = slot * self.slot_size;
            &self.data[start..start + self.lengths[slot]]
        })
    }

    /// Appends an event; with the ring full the oldest is overwritten (its data copied to
    /// `evicted` first, as far as `evicted` has room). Returns `Lost` only for a ring of capacity
    /// 0.
    fn push(&mut self, status: NtStatus, data: &[u8], stamp: i64, evicted: &mut [u8]) -> Kept {
        let capacity = self.capacity();
        if capacity == 0 {
            return Kept::Lost;
        }
        let mut kept = Kept::Stored;
        if self.count == capacity {
            let old = self.head;
            let start = old * self.slot_size;
            let length = self.lengths[old].min(evicted.len());
            evicted[..length].copy_from_slice(&self.data[start..start + length]);
            kept = Kept::Evicted(length);
            self.head = (self.head + 1) % capacity;
            self.count -= 1;
        }
        let slot = (self.head + self.count) % capacity;
        self.statuses[slot] = status;
        self.stamps[slot] = stamp;
        self.lengths[slot] = data.len();
        let start = slot * self.slot_size;
        self.data[start..start + data.len()].copy_from_slice(data);
        self.count += 1;
        kept
    }

    /// Takes the oldest event, its data copied into `out` (`slot_size` bytes): its status, its
    /// length and its time stamp.
    fn pop(&mut self, out: &mut [u8]) -> Option<(NtStatus, usize, i64)> {
        if self.count == 0 {
            return None;
        }
        let slot = self.head;
        let start = slot * self.slot_size;
        let length = self.lengths[slot].min(out.len());
        out[..length].copy_from_slice(&self.data[start..start + length]);
        self.head = (self.head + 1) % self.capacity();
        self.count -= 1;
        Some((self.statuses[slot], length, self.stamps[slot]))
    }
}

/// What [`EventRing::push`] did with an event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// Stored.
    Stored,
    /// Kept; the oldest event was overwritten (its data's first `n` bytes copied out).
    Evicted(usize),
    /// Not kept: the ring has no room at all.
    Lost,
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
    complete: Option<NotifyUserDeliverFn>,
    cancel: Option<NotifyUserCompleteFn>,
    cleanup: Option<NotifyUserDataCleanupFn>,
    /// With `time_stamping`: the parked requests' park times.
    stamps: Option<Arc<RequestStamps>>,
}

/// A request taken from the queue with its park time.
struct Retrieved {
    request: Request,
    stamp: Option<i64>,
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
        let stamps = if config.time_stamping {
            Some(try_arc(RequestStamps::new(maximum_pending_requests)?)?)
        } else {
            None
        };
        let mut queue_config = QueueConfig::new(QueueDispatch::Manual);
        queue_config.power_managed = Some(false);
        let (h, cancel) = (Arc::clone(&held), config.pending_requests_cancel.clone());
        let st = stamps.clone();
        // EvtIoCanceledOnQueue: the application cancelled, or the queue was purged.
        queue_config.canceled_on_queue = Some(try_arc(move |_queue: &Queue, request: Request| {
            if let Some(stamps) = &st {
                let _ = stamps.take(request.id());
            }
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
            cleanup: config.data_cleanup.clone(),
            stamps,
        })
    }

    /// The tick count to stamp an event with (0 without time stamping).
    fn data_stamp(&self) -> i64 {
        if self.stamps.is_some() {
            tick_count()
        } else {
            0
        }
    }

    /// Completes `taken` with an event (`data_stamp`: the event's time stamp, if it has one).
    fn deliver(&self, taken: Retrieved, data: &[u8], status: NtStatus, data_stamp: Option<i64>) {
        let timed = self.stamps.is_some();
        match &self.complete {
            Some(complete) => complete(
                taken.request,
                &NotifyDelivery {
                    data,
                    status,
                    data_timestamp: data_stamp.filter(|_| timed),
                    request_timestamp: taken.stamp,
                },
            ),
            None => complete_with_data(taken.request, data, status),
        }
    }

    /// `EvtDataCleanup` on an event's data.
    fn clean(&self, data: &[u8]) {
        if let Some(cleanup) = &self.cleanup {
            cleanup(data);
        }
    }

    /// `WdfIoQueueRetrieveNextRequest` on the parked requests.
    fn retrieve(&self) -> Option<Retrieved> {
        let request = self.queue.retrieve_next_request().ok()?;
        let stamp = self.stamps.as_ref().and_then(|s| s.take(request.id()));
        self.held.fetch_sub(1, Ordering::SeqCst);
        Some(Retrieved { request, stamp })
    }

    /// `DMF_NotifyUserWithRequest_EventRequestAdd`.
    fn park(&self, request: Request) -> Result<(), (Request, NtStatus)> {
        if self.held.fetch_add(1, Ordering::SeqCst) >= self.maximum_pending_requests {
            self.held.fetch_sub(1, Ordering::SeqCst);
            return Err((request, NtStatus::INVALID_DEVICE_STATE));
        }
        let id = request.id();
        if let Some(stamps) = &self.stamps {
            stamps.insert(id, tick_count());
        }
        request.forward_to_queue(&self.queue).inspect_err(|_| {
            if let Some(stamps) = &self.stamps {
                let _ = stamps.take(id);
            }
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
            let (taken, status, length, stamp) = {
                let mut events = self.events.lock();
                if events.count == 0 {
                    return;
                }
                let Some(taken) = self.retrieve() else {
                    return;
                };
                let (status, length, stamp) =
                    events.pop(scratch).unwrap_or((NtStatus::SUCCESS, 0, 0));
                (taken, status, length, stamp)
            };
            self.deliver(taken, &scratch[..length], status, Some(stamp));
            self.clean(&scratch[..length]);
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
            while let Some(taken) = shared.retrieve() {
                taken.request.complete(NtStatus::CANCELLED);
            }
            // C DMF's BufferQueue flushes at close: `EvtDataCleanup` sees every waiting event.
            let ring = core::mem::replace(&mut *shared.events.lock(), EventRing::none());
            for data in ring.events() {
                shared.clean(data);
            }
        }
    }

    fn file_cleanup(m: &Dispatched<'_, Self>, file: &FileObject) -> Handled {
        // WDF cancels its queues' requests of a file at cleanup; doing it here too is harmless
        // where it has (nothing is left) and needed where it has not.
        let shared = m.lock().shared.clone();
        if let Some(shared) = shared {
            while let Ok(request) = shared.queue.retrieve_request_by_file_object(file) {
                if let Some(stamps) = &shared.stamps {
                    let _ = stamps.take(request.id());
                }
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
            // Where an overwritten event's data goes for `EvtDataCleanup`.
            let mut evicted = if shared.cleanup.is_some() {
                shared.scratch()?
            } else {
                Vec::new()
            };
            let stamp = shared.data_stamp();
            let (direct, kept) = {
                let mut events = shared.events.lock();
                if events.count == 0 {
                    // No backlog: straight to a waiting request if there is one, else keep it
                    // (under the lock, so a request parked meanwhile finds it in its pump).
                    match shared.retrieve() {
                        Some(taken) => (Some(taken), Kept::Stored),
                        None => (None, events.push(status, data, stamp, &mut evicted)),
                    }
                } else {
                    (None, events.push(status, data, stamp, &mut evicted))
                }
            };
            match kept {
                Kept::Stored => {}
                Kept::Evicted(length) => shared.clean(&evicted[..length]),
                Kept::Lost => shared.clean(data),
            }
            match direct {
                Some(taken) => {
                    shared.deliver(taken, data, status, Some(stamp));
                    shared.clean(data);
                }
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
            Some(taken) => {
                shared.deliver(taken, data, status, None);
                true
            }
            None => false,
        })
    }

    /// `DMF_NotifyUserWithRequest_RequestReturnEx`: hands the oldest parked request to `fill`,
    /// which completes it itself (C's `EventCallbackFunction`) — for a client that does not know
    /// whether a request waits and keeps its data until one comes. `fill` gets `status` and, with
    /// `time_stamping`, the request's park time in the [`NotifyDelivery`] (no data).
    ///
    /// # Errors
    ///
    /// `STATUS_UNSUCCESSFUL` when no request is parked (`fill` is not called);
    /// `STATUS_INVALID_DEVICE_STATE` once closing.
    pub fn request_return_ex(
        &self,
        status: NtStatus,
        fill: impl FnOnce(Request, &NotifyDelivery<'_>),
    ) -> NtResult<()> {
        self.with_shared(|shared| {
            let taken = shared.retrieve().ok_or(NtStatus::UNSUCCESSFUL)?;
            fill(
                taken.request,
                &NotifyDelivery {
                    data: &[],
                    status,
                    data_timestamp: None,
                    request_timestamp: taken.stamp,
                },
            );
            Ok(())
        })?
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
            while let Some(taken) = shared.retrieve() {
                shared.deliver(taken, data, status, None);
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
                let (status, length, _) =
                    client
                        .events
                        .pop(scratch)
                        .unwrap_or((NtStatus::SUCCESS, 0, 0));
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
                    let _kept = events.push(*status, data, 0, &mut []);
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
                    let _kept = client.events.push(status, data, 0, &mut []);
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
