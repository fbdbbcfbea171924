//! # RequestTarget
//!
//! ## Summary
//!
//! One-shot requests to an I/O target (C DMF: `Dmf_RequestTarget.c`): synchronous sends that
//! return the output bytes, asynchronous sends whose completion reaches a client callback exactly
//! once, cancellation by an ID that is never reused, and time-outs on the platform clock. The
//! target — a remote target the client opened, or the device's next-lower driver — is handed in
//! with [`RequestTarget::io_target_set`] and taken away with [`RequestTarget::io_target_clear`].
//!
//! ## Configuration
//!
//! None (`config = ()`), as in C DMF. `passive_level(true)` on the spec makes asynchronous
//! completions reach the client at `PASSIVE_LEVEL` through a work item (C DMF's
//! `DmfRequestTargetCompletionOption` *passive*); otherwise they run in the completion context
//! (≤ `DISPATCH_LEVEL`).
//!
//! ## Methods
//!
//! | Method | C DMF | IRQL |
//! |---|---|---|
//! | [`RequestTarget::io_target_set`] | `DMF_RequestTarget_IoTargetSet` | ≤ DISPATCH |
//! | [`RequestTarget::io_target_clear`] | `DMF_RequestTarget_IoTargetClear` | ≤ DISPATCH |
//! | [`send_synchronously`](RequestSender::send_synchronously) | `DMF_RequestTarget_SendSynchronously` | PASSIVE |
//! | [`send`](RequestSender::send) | `DMF_RequestTarget_SendEx` | ≤ DISPATCH |
//! | [`cancel`](RequestSender::cancel) | `DMF_RequestTarget_Cancel` | ≤ DISPATCH |
//! | [`reuse_create`](RequestReuse::reuse_create) | `DMF_RequestTarget_ReuseCreate` | ≤ DISPATCH |
//! | [`reuse_send`](RequestReuse::reuse_send) | `DMF_RequestTarget_ReuseSend` | ≤ DISPATCH |
//! | [`reuse_delete`](RequestReuse::reuse_delete) | `DMF_RequestTarget_ReuseDelete` | PASSIVE |
//!
//! The send, send-synchronously and cancel Methods are the [`RequestSender`] Methods every target
//! Module shares (written once, here); what to send is one [`SendRequest`] — C DMF's
//! `RequestType`, `RequestIoctl`, `RequestBuffer`/`RequestLength`, `ResponseLength` and
//! `RequestTimeoutMilliseconds` in one value. The reuse Methods are the [`RequestReuse`] Methods
//! of the target Modules that have them (also written once, here).
//!
//! ## Callbacks
//!
//! The completion callback of [`send`](RequestSender::send) (`EVT_DMF_RequestTarget_SendCompletion`):
//! `FnOnce(SendCompletion)` with the request ID, the completion status, the information (bytes
//! transferred) and a copy of the output bytes. It runs exactly once per successful `send` —
//! also for a cancelled or timed-out request — and never for a `send` that returned an error.
//! [`reuse_send`](RequestReuse::reuse_send) takes the same callback, with the same guarantee per
//! send.
//!
//! ## Remarks
//!
//! - Every send creates its own request on the target (`WdfRequestCreate`), formats it
//!   (`WdfIoTargetFormatRequestFor…`), sets the completion routine and sends it; the request is
//!   deleted when it comes back. Zero-length input and output buffers are allowed.
//! - A time-out cancels the request (`WDF_REQUEST_SEND_OPTION_TIMEOUT`); a request that came back
//!   `STATUS_CANCELLED` after its deadline without a [`cancel`](RequestSender::cancel) is reported
//!   as `STATUS_IO_TIMEOUT`, as a synchronous send reports it.
//! - Request IDs come from one process-wide, ever-increasing 64-bit counter, so an ID is never
//!   reused even when the platform reuses request handles. `cancel` of an ID that already
//!   completed returns `false` and touches nothing.
//! - Everything a completion needs — the copy of the output bytes, the delivery of the callback
//!   — is allocated when the request is sent: a send that cannot allocate fails with
//!   `STATUS_INSUFFICIENT_RESOURCES` (its callback is then not called), and a completion never
//!   allocates.
//! - A synchronous send is an asynchronous send and a wait: it is tracked like any other request,
//!   so clearing the target or closing the Module cancels it too.
//! - Close refuses new sends, cancels every request in flight and waits until each has completed
//!   and its callback has returned.
//! - Reuse requests ([`reuse_create`](RequestReuse::reuse_create)) are created once on the
//!   current target and kept by the Module; each [`reuse_send`](RequestReuse::reuse_send)
//!   formats and sends that same request again under a new request ID, and the request is
//!   `WdfRequestReuse`d when it comes back. It counts as in flight until its completion callback
//!   has returned (so a resend from inside that callback is refused). `io_target_clear` and close
//!   cancel and delete every reuse request (one in flight is deleted when it comes back); their
//!   IDs are unknown afterwards. C DMF's `ReuseDelete` (≤ DISPATCH) returns `FALSE` and deletes
//!   nothing while the request is in flight; ours (PASSIVE) cancels it and waits for its
//!   callback, so a delete always deletes.
//! - Open option `OPEN_Create`, DISPATCH_MAXIMUM lock, no WDF callbacks: it can be created
//!   dynamically.
//! - **Needs a device.** Its work item (passive-level completions) is a child of the Module's
//!   device (the `ParentObject` of `WdfWorkItemCreate`); a Module without one (a dynamic Module
//!   created without a device-bound parent) fails to open with `STATUS_INVALID_DEVICE_STATE`, as
//!   C DMF's RequestTarget, whose QueuedWorkItem child needs the device, does.
//!
//! ## Category
//!
//! Targets.
//!
//! # Example
//!
//! ```
//! use dmf_core::module::{CollectionConfig, ModuleCollection, ModuleInit};
//! use dmf_core::NtStatus;
//! use dmf_modules::request_target::{RequestSender, RequestTarget, SendRequest};
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! // Its work item is a child of its device: the Module's parent is a device's (empty)
//! // collection, on a device of the simulator.
//! let (_node, device) = dmf_core::platform::simulator::plug_in_device(&machine, "example")?;
//! let config = CollectionConfig { device: Some(device), ..CollectionConfig::default() };
//! let parent = ModuleCollection::create(ModuleInit::new(), config)?;
//! let target = RequestTarget::with(()).create(&parent)?;
//! // Without a target every send fails with STATUS_INVALID_DEVICE_STATE.
//! assert_eq!(
//!     target.send_synchronously(&SendRequest::ioctl(0x22_2000, &[], 1)),
//!     Err(NtStatus::INVALID_DEVICE_STATE)
//! );
//! assert!(!target.cancel(dmf_modules::request_target::RequestId::from_raw(1)));
//! target.delete();
//! # Ok::<(), NtStatus>(())
//! ```

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

use dmf_core::fallible::{try_arc, try_box, try_vec_with_capacity, VecExt};
use dmf_core::module::{Dispatched, Module, ModuleCallbacks, Scope};
use dmf_core::one_shot::OneShot;
use dmf_core::platform::contract::io::{
    CompletionParams, PlatformIoTarget, PlatformRequest, SendOptions,
};
use dmf_core::platform::contract::{
    EventKind, Irql, PlatformClock, PlatformEvent, PlatformIrql, PlatformWorkItem,
};
use dmf_core::platform::{Clock, CurrentIrql, Event, IoTarget, Request, WorkItem};
use dmf_core::sync::{LockKind, ModuleLock};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

use self::sealed::Route;

/// The kind of request to send (`ContinuousRequestTarget_RequestType`); a [`SendRequest`]'s
/// constructor names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `IRP_MJ_READ`: `output_length` bytes come back.
    Read,
    /// `IRP_MJ_WRITE`: the input bytes go out.
    Write,
    /// `IRP_MJ_DEVICE_CONTROL` with the given control code.
    Ioctl,
    /// `IRP_MJ_INTERNAL_DEVICE_CONTROL` with the given control code.
    InternalIoctl,
}

/// The ID of an asynchronous send (`RequestTarget_DmfRequestCancel`): unique for the life of
/// the process, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

impl RequestId {
    /// The raw number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// An ID from a raw number (for tables kept by the client).
    pub fn from_raw(raw: u64) -> RequestId {
        RequestId(raw)
    }
}

/// How an asynchronous send came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendCompletion {
    /// The ID [`send`](RequestSender::send) returned.
    pub id: RequestId,
    /// The completion status (`STATUS_IO_TIMEOUT` if the time-out cancelled it).
    pub status: NtStatus,
    /// `IoStatus.Information`: bytes transferred.
    pub information: usize,
    /// The output bytes (at most `information` of them; empty for writes).
    pub output: Vec<u8>,
}

/// The ID of a reuse request ([`RequestReuse::reuse_create`]): unique for the life of the
/// process, never reused. Each [`reuse_send`](RequestReuse::reuse_send) of it gets its own
/// [`RequestId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReuseId(u64);

impl ReuseId {
    /// The raw number.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// `EVT_DMF_RequestTarget_SendCompletion`: runs exactly once per accepted send.
pub type SendCallback = Box<dyn FnOnce(SendCompletion) + Send>;

/// The process-wide request-ID counter (C DMF's `g_ContinuousRequestTargetUniqueId`).
static NEXT_REQUEST_ID: AtomicU64 = AtomicU64::new(1);

/// The process-wide reuse-request-ID counter.
static NEXT_REUSE_ID: AtomicU64 = AtomicU64::new(1);

/// One request to send, described once for every target Module's send Methods
/// ([`RequestTarget`], [`ContinuousRequestTarget`](crate::continuous_request_target::ContinuousRequestTarget),
/// [`DeviceInterfaceTarget`](crate::device_interface_target::DeviceInterfaceTarget),
/// [`DefaultTarget`](crate::default_target::DefaultTarget),
/// [`SelfTarget`](crate::self_target::SelfTarget)).
///
/// It stands for the parameters C DMF's `DMF_RequestTarget_SendSynchronously` /
/// `DMF_RequestTarget_SendEx` (and their twins in the other target Modules) take one by one:
///
/// | C DMF parameter | Here |
/// |---|---|
/// | `RequestType` | the constructor: [`read`](Self::read), [`write`](Self::write), [`ioctl`](Self::ioctl), [`internal_ioctl`](Self::internal_ioctl) (or [`new`](Self::new) with a [`RequestKind`]) |
/// | `RequestIoctl` | the IOCTL constructors' `code` |
/// | `RequestBuffer`, `RequestLength` | `input` (the bytes sent; none for a read) |
/// | `ResponseBuffer`, `ResponseLength` | `output_length` (room for the bytes that come back; none for a write) |
/// | `RequestTimeoutMilliseconds` | [`timeout`](Self::timeout) (none: no time-out) |
/// | what the caller wrote into `ResponseBuffer` before sending | [`output_prefix`](Self::output_prefix) (none: the output starts zeroed) |
///
/// The completion callback of the asynchronous sends (`EVT_DMF_RequestTarget_SendCompletion`)
/// is their own argument.
///
/// A description is checked when it is sent, in one place for every target Module: a length
/// that does not fit the request's `ULONG` length fields (`Parameters.Read.Length`,
/// `Parameters.DeviceIoControl.InputBufferLength`, …) is refused with `STATUS_INVALID_PARAMETER`
/// before anything is allocated or formatted; so is an [`output_prefix`](Self::output_prefix)
/// longer than `output_length`.
///
/// ```
/// use core::time::Duration;
/// use dmf_modules::request_target::SendRequest;
/// use kmdf_sim::fx2::ioctl::IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY;
///
/// let get_bars = SendRequest::ioctl(IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY, &[], 1)
///     .timeout(Duration::from_millis(100));
/// let read = SendRequest::read(64);
/// let write = SendRequest::write(b"hello");
/// # let _ = (get_bars, read, write);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendRequest<'a> {
    kind: RequestKind,
    ioctl_code: u32,
    input: &'a [u8],
    output_length: usize,
    output_prefix: &'a [u8],
    timeout: Option<Duration>,
}

impl<'a> SendRequest<'a> {
    /// A request of `kind` (`RequestType`, chosen at run time — a config's, say): `code` for the
    /// IOCTL kinds, `input` sent (not by a read), room for `output_length` bytes back (not for a
    /// write). What `kind` does not use is dropped, as C DMF ignores it.
    pub const fn new(kind: RequestKind, code: u32, input: &'a [u8], output_length: usize) -> Self {
        let (code, input, output_length) = match kind {
            RequestKind::Read => (0, &[] as &[u8], output_length),
            RequestKind::Write => (0, input, 0),
            RequestKind::Ioctl | RequestKind::InternalIoctl => (code, input, output_length),
        };
        SendRequest {
            kind,
            ioctl_code: code,
            input,
            output_length,
            output_prefix: &[],
            timeout: None,
        }
    }

    /// `IRP_MJ_READ`: up to `output_length` bytes come back.
    pub const fn read(output_length: usize) -> Self {
        Self::new(RequestKind::Read, 0, &[], output_length)
    }

    /// `IRP_MJ_WRITE`: `input` goes out.
    pub const fn write(input: &'a [u8]) -> Self {
        Self::new(RequestKind::Write, 0, input, 0)
    }

    /// `IRP_MJ_DEVICE_CONTROL` with control code `code`: `input` goes out, up to
    /// `output_length` bytes come back.
    pub const fn ioctl(code: u32, input: &'a [u8], output_length: usize) -> Self {
        Self::new(RequestKind::Ioctl, code, input, output_length)
    }

    /// `IRP_MJ_INTERNAL_DEVICE_CONTROL` with control code `code`: as [`ioctl`](Self::ioctl).
    pub const fn internal_ioctl(code: u32, input: &'a [u8], output_length: usize) -> Self {
        Self::new(RequestKind::InternalIoctl, code, input, output_length)
    }

    /// `RequestTimeoutMilliseconds`: the request is cancelled if it has not come back after
    /// `timeout` and reports `STATUS_IO_TIMEOUT` (`None`, the default: no time-out).
    #[must_use]
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.timeout = timeout.into();
        self
    }

    /// The first bytes of the output buffer, written into it after the request is formatted and
    /// before it is sent (the rest stays zeroed) — what a caller who fills its `ResponseBuffer`
    /// before sending does: `HidD_GetFeature` and C DMF's `DMF_HidTarget_FeatureGet` put the
    /// report ID in byte 0 of the output of `IOCTL_HID_GET_FEATURE`, where hidclass reads it.
    ///
    /// The target sees these bytes when the output buffer is the sender's memory itself: IOCTLs
    /// with `METHOD_IN_DIRECT`, `METHOD_OUT_DIRECT` or (kernel callers) `METHOD_NEITHER`. A
    /// `METHOD_BUFFERED` IOCTL or a buffered read gets a system buffer the framework fills from
    /// the input only, as in the kernel. A prefix longer than the output (`output_length`; a
    /// write has none) is refused with `STATUS_INVALID_PARAMETER` when the request is sent.
    #[must_use]
    pub const fn output_prefix(mut self, prefix: &'a [u8]) -> Self {
        self.output_prefix = prefix;
        self
    }

    /// The one check of a description's values: its lengths fit the request's `ULONG` length
    /// fields, and the output prefix fits the output.
    fn check(&self) -> NtResult<()> {
        let fits = |length: usize| u32::try_from(length).is_ok();
        if fits(self.input.len())
            && fits(self.output_length)
            && self.output_prefix.len() <= self.output_length
        {
            Ok(())
        } else {
            Err(NtStatus::INVALID_PARAMETER)
        }
    }

    /// The room a send needs for its output bytes, once the description is checked.
    fn output_room(&self) -> NtResult<usize> {
        self.check()?;
        Ok(self.output_length)
    }

    /// Formats a driver-created request as described (`WdfIoTargetFormatRequestFor…`), once the
    /// description is checked, then writes the output prefix into the output memory the
    /// formatting gave it (`WdfMemoryGetBuffer` of that memory in the kernel).
    pub(crate) fn format(&self, request: &Request) -> NtResult<()> {
        self.check()?;
        match self.kind {
            RequestKind::Read => request.format_for_read(self.output_length, 0),
            RequestKind::Write => request.format_for_write(self.input, 0),
            RequestKind::Ioctl => {
                request.format_for_ioctl(self.ioctl_code, self.input, self.output_length)
            }
            RequestKind::InternalIoctl => {
                request.format_for_internal_ioctl(self.ioctl_code, self.input, self.output_length)
            }
        }?;
        let prefix = self.output_prefix;
        if prefix.is_empty() {
            return Ok(());
        }
        request.with_output_buffer(prefix.len(), |buffer| {
            buffer[..prefix.len()].copy_from_slice(prefix);
        })
    }
}

/// Copies the output bytes of a request that came back (at most `information`) into `out`;
/// returns how many. Nothing is allocated: `out` was sized when the request was sent.
pub(crate) fn copy_output(request: &Request, information: usize, out: &mut [u8]) -> usize {
    if request.parameters().output_length == 0 || information == 0 || out.is_empty() {
        return 0;
    }
    request
        .with_output_buffer(0, |buffer| {
            let copied = information.min(buffer.len()).min(out.len());
            out[..copied].copy_from_slice(&buffer[..copied]);
            copied
        })
        .unwrap_or(0)
}

/// Appends the output bytes of a request that came back (at most `information`, at most the
/// room `out` was given when the request was sent) to `out`. Nothing is allocated: the room was
/// reserved at send time (reserved, not filled — a large `output_length` costs no time until the
/// bytes come back).
fn append_output(request: &Request, information: usize, out: &mut Vec<u8>) {
    if request.parameters().output_length == 0 || information == 0 {
        return;
    }
    let room = out.capacity() - out.len();
    let _ = request.with_output_buffer(0, |buffer| {
        let copied = information.min(buffer.len()).min(room);
        // Within the reserved room: this cannot allocate, so it cannot fail.
        let _ = out.try_extend_from_slice(&buffer[..copied]);
    });
}

/// What becomes of a reuse request whose send never reached the target: it goes back to its
/// reuse entry instead of being deleted.
type Keep = Box<dyn FnOnce(Request) + Send + Sync>;

/// One request in flight, shared between its sender and cancellers. The sender's completion
/// routine gets the request back by value and deletes (or reuses) it; a send that never reached
/// the target (`reclaim`, set until the request is handed to the target) is deleted (or handed
/// to `keep`) by whoever drops the last reference.
struct Slot {
    /// `None` only while the slot is dropped.
    request: Option<Request>,
    reclaim: AtomicBool,
    keep: Option<Keep>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.reclaim.load(Ordering::Acquire) {
            return;
        }
        if let Some(request) = self.request.take() {
            match self.keep.take() {
                Some(keep) => keep(request),
                None => {
                    let _ = request.delete();
                }
            }
        }
    }
}

impl Slot {
    /// `WdfRequestCancelSentRequest` on the request.
    fn cancel(&self) {
        if let Some(request) = &self.request {
            request.cancel_sent_request();
        }
    }
}

struct Entry {
    id: u64,
    slot: Arc<Slot>,
    cancel: bool,
    stream: bool,
    /// The reuse request this send is, if any.
    reuse: Option<u64>,
}

/// A reuse request kept by the sender (C DMF's `PendingReuseRequests`).
struct ReuseEntry {
    id: u64,
    /// The request while it is at rest; `None` while a send of it is in flight (until its
    /// completion callback returned).
    request: Option<Request>,
    /// Deleted (or cleared): the request is deleted when it comes back.
    doomed: bool,
    /// Set while the request is at rest.
    idle: Arc<Event>,
}

/// Work a completion hands to the delivery context (the work item at `PASSIVE_LEVEL`, or the
/// completion context itself). It is allocated when its request is sent, so that a completion
/// never allocates.
pub(crate) trait Work: Send {
    /// Runs the work (and frees it).
    fn run(self: Box<Self>);
}

/// Work deferred to `PASSIVE_LEVEL`.
pub(crate) type Deferred = Box<dyn Work>;

/// Work whose input comes with the completion: allocated when the request is sent
/// ([`Job::new`]), given its input when the request comes back ([`Job::arm`]).
struct Job<T, F> {
    input: Option<T>,
    work: F,
}

impl<T, F: FnOnce(T)> Job<T, F> {
    /// The work, not yet armed.
    fn new(work: F) -> NtResult<Box<Self>> {
        try_box(Job { input: None, work })
    }

    /// The work with its input, ready to run.
    #[allow(
        clippy::unnecessary_box_returns,
        reason = "the block allocated at send time is handed on: the completion allocates nothing"
    )]
    fn arm(mut self: Box<Self>, input: T) -> Box<Self> {
        self.input = Some(input);
        self
    }
}

impl<T: Send, F: FnOnce(T) + Send> Work for Job<T, F> {
    fn run(self: Box<Self>) {
        let Job { input, work } = *self;
        // Always armed: a job runs only once its completion gave it its input.
        if let Some(input) = input {
            work(input);
        }
    }
}

#[derive(Default)]
struct SenderState {
    target: Option<IoTarget>,
    closed: bool,
    entries: Vec<Entry>,
    /// Sent and not yet finished (completion callback included).
    outstanding: usize,
    deferred: VecDeque<Deferred>,
    draining: bool,
    reuse: Vec<ReuseEntry>,
    stream: StreamPhase,
    stream_active: usize,
}

/// Where streaming stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum StreamPhase {
    /// No stream request is active.
    #[default]
    Idle,
    /// Stream requests are resent as they complete.
    Running,
    /// Stream requests end as they complete.
    Stopping,
}

/// The send engine of the target Modules (RequestTarget, ContinuousRequestTarget): the target,
/// the requests in flight (for cancel, close and stop), the work item for passive-level delivery
/// and stream resends, and the streaming counters. Lives from the owning Module's open to its close.
///
/// Declared in the seal of [`RequestSender`], whose routes hand it out: nominally public there,
/// it cannot be named outside this crate.
pub(crate) use sealed::Sender;

impl Sender {
    /// The sender of `module` (RequestTarget's or ContinuousRequestTarget's, at open): its work
    /// item is a child of the Module's device (`STATUS_INVALID_DEVICE_STATE` without one), and
    /// a `passive_level` Module gets its completions from that work item at `PASSIVE_LEVEL`.
    pub(crate) fn open<M: Module>(module: &Scope<'_, M>) -> NtResult<Arc<Sender>> {
        let (device, name) = (module.require_device()?, module.name());
        let passive = module.is_passive_level();
        let state = ModuleLock::new(LockKind::Spin, SenderState::default())?;
        // The work item finds its sender through this slot, filled once the sender exists.
        let this = try_arc(ModuleLock::new(LockKind::Spin, Weak::<Sender>::new())?)?;
        let slot = Arc::clone(&this);
        let work_item = WorkItem::new(device, name, move || {
            let sender = slot.lock().upgrade();
            if let Some(sender) = sender {
                sender.drain();
            }
        })?;
        let sender = try_arc(Sender {
            state,
            idle: Event::new(EventKind::Notification, true)?,
            stream_idle: Event::new(EventKind::Notification, true)?,
            work_item: Some(work_item),
            passive,
        })?;
        *this.lock() = Arc::downgrade(&sender);
        Ok(sender)
    }

    /// `IoTargetSet` / `IoTargetClear` (`None`).
    pub(crate) fn set_target(&self, target: Option<IoTarget>) {
        self.state.lock().target = target;
    }

    /// The current target.
    pub(crate) fn target(&self) -> Option<IoTarget> {
        self.state.lock().target.clone()
    }

    /// `IoTargetClear`: no target from now on; cancels every request in flight and deletes every
    /// reuse request (one in flight when it comes back).
    pub(crate) fn clear(&self) {
        self.set_target(None);
        self.cancel_all();
        self.reuse_delete_all();
    }

    /// Refuses sends from now on (close).
    fn refuse(&self) {
        self.state.lock().closed = true;
    }

    /// Sends `request` (driver-created, formatted) on `target`; `on_complete` gets it back with
    /// its ID, whether it was cancelled on purpose, and the completion. `on_complete` must call
    /// [`finish`](Self::finish) once it (and any deferred work) is done.
    pub(crate) fn start(
        self: &Arc<Self>,
        request: Request,
        target: &IoTarget,
        timeout: Option<Duration>,
        stream: bool,
        on_complete: impl FnOnce(u64, bool, Request, CompletionParams) + Send + 'static,
    ) -> NtResult<u64> {
        self.start_with(request, target, timeout, stream, None, on_complete)
    }

    /// [`start`](Self::start); `reuse` names the reuse request being sent and what to do with it
    /// if the send fails (instead of deleting it).
    ///
    /// Whatever fails before the request reaches the target — an allocation included — deletes
    /// the request (or hands it to `keep`).
    fn start_with(
        self: &Arc<Self>,
        request: Request,
        target: &IoTarget,
        timeout: Option<Duration>,
        stream: bool,
        reuse: Option<(u64, Keep)>,
        on_complete: impl FnOnce(u64, bool, Request, CompletionParams) + Send + 'static,
    ) -> NtResult<u64> {
        let id = NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed);
        let (reuse, keep) = match reuse {
            Some((reuse, keep)) => (Some(reuse), Some(keep)),
            None => (None, None),
        };
        // Refused, the slot is dropped and reclaims the request.
        let slot = try_arc(Slot {
            request: Some(request),
            reclaim: AtomicBool::new(true),
            keep,
        })?;
        let Some(request) = &slot.request else {
            return Err(NtStatus::INTERNAL_ERROR);
        };
        {
            let mut state = self.state.lock();
            if state.closed || (stream && state.stream == StreamPhase::Stopping) {
                drop(state);
                return Err(if stream {
                    NtStatus::CANCELLED
                } else {
                    NtStatus::INVALID_DEVICE_STATE
                });
            }
            // Room for the completion's deferred work: the completion never allocates.
            Self::reserve_deferred(&mut state)?;
            state.entries.try_push(Entry {
                id,
                slot: Arc::clone(&slot),
                cancel: false,
                stream,
                reuse,
            })?;
            state.outstanding += 1;
            if state.outstanding == 1 {
                self.idle.clear();
            }
        }
        let me = Arc::clone(self);
        request.set_completion_routine(move |request, params| {
            let cancelled = me.remove_entry(id);
            on_complete(id, cancelled, request, params);
        });
        let options = SendOptions {
            timeout,
            ..SendOptions::default()
        };
        // From here the request belongs to the target unless the send is refused.
        slot.reclaim.store(false, Ordering::Release);
        match request.send(target, options) {
            Ok(()) => {
                // A cancel, close or stream stop that ran before the request reached the target
                // found nothing to cancel: cancel it now.
                let cancel = {
                    let state = self.state.lock();
                    state.entries.iter().any(|e| {
                        e.id == id
                            && (e.cancel
                                || state.closed
                                || (e.stream && state.stream == StreamPhase::Stopping))
                    })
                };
                if cancel {
                    slot.cancel();
                }
                Ok(id)
            }
            Err(status) => {
                self.remove_entry(id);
                slot.reclaim.store(true, Ordering::Release);
                drop(slot);
                self.finish();
                Err(status)
            }
        }
    }

    /// Makes room in the deferred-work queue for one more outstanding request. Each outstanding
    /// request has at most one piece of deferred work queued at a time, so with room for every
    /// outstanding request [`defer`](Self::defer) never allocates.
    fn reserve_deferred(state: &mut SenderState) -> NtResult<()> {
        let wanted = state.outstanding + 1;
        let additional = wanted.saturating_sub(state.deferred.len());
        state
            .deferred
            .try_reserve(additional)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)
    }

    /// Forgets a request that came back; returns whether it was cancelled on purpose.
    fn remove_entry(&self, id: u64) -> bool {
        let mut state = self.state.lock();
        match state.entries.iter().position(|e| e.id == id) {
            Some(index) => state.entries.swap_remove(index).cancel,
            None => false,
        }
    }

    /// One outstanding request is done (its callback returned).
    pub(crate) fn finish(&self) {
        let mut state = self.state.lock();
        state.outstanding -= 1;
        if state.outstanding == 0 {
            self.idle.set();
        }
    }

    /// `DMF_RequestTarget_Cancel`: true if the request was still in flight.
    pub(crate) fn cancel(&self, id: u64) -> bool {
        self.cancel_where(|e| e.id == id)
    }

    /// Cancels the first request in flight `matches` picks; true if there was one.
    fn cancel_where(&self, matches: impl Fn(&Entry) -> bool) -> bool {
        let slot = {
            let mut state = self.state.lock();
            let Some(entry) = state.entries.iter_mut().find(|e| matches(e)) else {
                return false;
            };
            entry.cancel = true;
            Arc::clone(&entry.slot)
        };
        slot.cancel();
        true
    }

    /// Cancels every request in flight (`streams_only`: the stream requests), one at a time
    /// (nothing to allocate). A request marked cancelled already was cancelled by whoever marked
    /// it, or is cancelled by its sender once it reached the target.
    fn cancel_matching(&self, streams_only: bool) {
        while self.cancel_where(|e| !e.cancel && (!streams_only || e.stream)) {}
    }

    /// Cancels every request in flight.
    pub(crate) fn cancel_all(&self) {
        self.cancel_matching(false);
    }

    /// Waits until nothing is outstanding (`PASSIVE_LEVEL`; never from a completion callback).
    pub(crate) fn wait_idle(&self) {
        let _ = self.idle.wait(None);
    }

    /// Close: refuse sends, cancel everything, wait for it, flush the work item, delete the
    /// reuse requests, drop the target.
    pub(crate) fn close(&self) {
        self.refuse();
        self.cancel_all();
        self.wait_idle();
        if let Some(work_item) = &self.work_item {
            work_item.flush();
        }
        self.reuse_delete_all();
        self.set_target(None);
    }

    /// Whether completions are delivered at `PASSIVE_LEVEL` from the work item.
    pub(crate) fn is_passive(&self) -> bool {
        self.passive
    }

    /// Runs `work` now, or from the work item at `PASSIVE_LEVEL` for a passive sender.
    pub(crate) fn deliver(&self, work: Deferred) {
        if self.passive {
            self.defer(work);
        } else {
            work.run();
        }
    }

    /// Runs `work` — of a request still outstanding — from the work item at `PASSIVE_LEVEL`,
    /// after the work queued before it.
    pub(crate) fn defer(&self, work: Deferred) {
        let Some(work_item) = &self.work_item else {
            work.run();
            return;
        };
        let mut state = self.state.lock();
        if state.deferred.len() == state.deferred.capacity() {
            // Not reached: the request's send reserved room for its work (`reserve_deferred`).
            // Running it here beats losing it.
            drop(state);
            work.run();
            return;
        }
        #[allow(
            clippy::disallowed_methods,
            reason = "capacity reserved when the request was sent"
        )]
        state.deferred.push_back(work);
        let idle = !state.draining;
        // Enqueued after the lock is released: the work item's first act is to take it, and a
        // worker thread that starts at once would otherwise spin on it. The work stays queued in
        // `deferred` either way: a drain in progress takes it, or this enqueue starts one.
        drop(state);
        if idle {
            work_item.enqueue();
        }
    }

    /// The work item: runs deferred work in order, one at a time.
    fn drain(&self) {
        {
            let mut state = self.state.lock();
            if state.draining {
                return;
            }
            state.draining = true;
        }
        loop {
            let work = {
                let mut state = self.state.lock();
                if let Some(work) = state.deferred.pop_front() {
                    work
                } else {
                    state.draining = false;
                    return;
                }
            };
            work.run();
        }
    }

    /// Sends one request for a client: `callback` gets the completion (`inline`: in the
    /// completion context even for a passive sender — for waiters). What the completion needs
    /// (the output buffer, the delivery) is allocated here: a completion never allocates.
    pub(crate) fn send(
        self: &Arc<Self>,
        description: &SendRequest<'_>,
        inline: bool,
        callback: impl FnOnce(SendCompletion) + Send + 'static,
    ) -> NtResult<RequestId> {
        let target = {
            let state = self.state.lock();
            if state.closed {
                return Err(NtStatus::INVALID_DEVICE_STATE);
            }
            state.target.clone().ok_or(NtStatus::INVALID_DEVICE_STATE)?
        };
        let output = try_vec_with_capacity::<u8>(description.output_room()?)?;
        let sender = Arc::clone(self);
        let job = Job::new(move |completion| {
            callback(completion);
            sender.finish();
        })?;
        let request = target.create_request()?;
        let me = Arc::clone(self);
        self.launch(
            request,
            &target,
            description,
            None,
            output,
            move |completion, request| {
                let _ = request.delete();
                let job = job.arm(completion);
                if inline {
                    job.run();
                } else {
                    me.deliver(job);
                }
            },
        )
    }

    /// Formats a client's `request` as `description` and sends it on `target` (as
    /// [`start_with`](Self::start_with), `reuse` included: a request that cannot be formatted is
    /// deleted or handed to `keep`); `done` gets the completion — its output bytes in `output`,
    /// reserved when it was sent — and the request back.
    fn launch(
        self: &Arc<Self>,
        request: Request,
        target: &IoTarget,
        description: &SendRequest<'_>,
        reuse: Option<(u64, Keep)>,
        output: Vec<u8>,
        done: impl FnOnce(SendCompletion, Request) + Send + 'static,
    ) -> NtResult<RequestId> {
        if let Err(status) = description.format(&request) {
            match reuse {
                Some((_, keep)) => keep(request),
                None => {
                    let _ = request.delete();
                }
            }
            return Err(status);
        }
        let timeout = description.timeout;
        let deadline = timeout.map(|t| Clock::now().saturating_add(t));
        self.start_with(
            request,
            target,
            timeout,
            false,
            reuse,
            move |id, cancelled, request, params| {
                let completion = completion_of(id, cancelled, deadline, &request, &params, output);
                done(completion, request);
            },
        )
        .map(RequestId)
    }

    /// `SendSynchronously` (`PASSIVE_LEVEL`): the output bytes and the information.
    pub(crate) fn send_synchronously(
        self: &Arc<Self>,
        description: &SendRequest<'_>,
    ) -> NtResult<(Vec<u8>, usize)> {
        if CurrentIrql::current() != Irql::Passive {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        let waiter = try_arc(Waiter {
            done: Event::new(EventKind::Notification, false)?,
            result: OneShot::new(),
        })?;
        let w = Arc::clone(&waiter);
        self.send(description, true, move |completion| {
            // One completion per send: the slot is empty here.
            let _ = w.result.set(completion);
            w.done.set();
        })?;
        let _ = waiter.done.wait(None);
        let completion = waiter.result.take().ok_or(NtStatus::INTERNAL_ERROR)?;
        if completion.status.is_success() {
            Ok((completion.output, completion.information))
        } else {
            Err(completion.status)
        }
    }

    // ------------------------------------------------------------------ reuse requests

    /// `ReuseCreate`: a request created on the current target, kept at rest.
    pub(crate) fn reuse_create(&self) -> NtResult<u64> {
        let target = {
            let state = self.state.lock();
            if state.closed {
                return Err(NtStatus::INVALID_DEVICE_STATE);
            }
            state.target.clone().ok_or(NtStatus::INVALID_DEVICE_STATE)?
        };
        let idle = try_arc(Event::new(EventKind::Notification, true)?)?;
        let request = target.create_request()?;
        let id = NEXT_REUSE_ID.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock();
        if state.closed || state.target.is_none() {
            // Closed or cleared meanwhile: it would never be deleted.
            drop(state);
            let _ = request.delete();
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        // The entry goes in first, the request once it is in (under the same lock): a refused
        // entry leaves the request in hand, to delete.
        let index = state.reuse.len();
        let added = state.reuse.try_push(ReuseEntry {
            id,
            request: None,
            doomed: false,
            idle,
        });
        if let Err(status) = added {
            drop(state);
            let _ = request.delete();
            return Err(status);
        }
        state.reuse[index].request = Some(request);
        Ok(id)
    }

    /// `ReuseSend`: formats and sends reuse request `reuse` on the current target; `callback`
    /// gets the completion, after which the request is at rest again.
    pub(crate) fn reuse_send(
        self: &Arc<Self>,
        reuse: u64,
        description: &SendRequest<'_>,
        callback: impl FnOnce(SendCompletion) + Send + 'static,
    ) -> NtResult<RequestId> {
        // Allocated before the request leaves its entry: a completion never allocates.
        let output = try_vec_with_capacity::<u8>(description.output_room()?)?;
        let keeper = Arc::clone(self);
        let keep: Keep = try_box(move |request| keeper.reuse_return(reuse, request))?;
        let sender = Arc::clone(self);
        let job = Job::new(move |(completion, request): (SendCompletion, Request)| {
            callback(completion);
            sender.reuse_return(reuse, request);
            sender.finish();
        })?;
        let (target, request) = {
            let mut state = self.state.lock();
            if state.closed {
                return Err(NtStatus::INVALID_DEVICE_STATE);
            }
            let target = state.target.clone();
            let Some(entry) = state.reuse.iter_mut().find(|e| e.id == reuse && !e.doomed) else {
                drop(state);
                return Err(NtStatus::INVALID_PARAMETER);
            };
            let Some(target) = target else {
                drop(state);
                return Err(NtStatus::INVALID_DEVICE_STATE);
            };
            // In flight (its callback included).
            let Some(request) = entry.request.take() else {
                drop(state);
                return Err(NtStatus::INVALID_DEVICE_STATE);
            };
            entry.idle.clear();
            (target, request)
        };
        let me = Arc::clone(self);
        self.launch(
            request,
            &target,
            description,
            Some((reuse, keep)),
            output,
            move |completion, request| {
                let _ = request.reuse(NtStatus::SUCCESS);
                me.deliver(job.arm((completion, request)));
            },
        )
    }

    /// A reuse request is at rest again: back into its entry, or deleted if the entry is doomed
    /// or gone.
    fn reuse_return(&self, reuse: u64, request: Request) {
        let mut state = self.state.lock();
        let Some(index) = state.reuse.iter().position(|e| e.id == reuse) else {
            drop(state);
            let _ = request.delete();
            return;
        };
        if state.reuse[index].doomed {
            let entry = state.reuse.swap_remove(index);
            drop(state);
            let _ = request.delete();
            entry.idle.set();
        } else {
            let entry = &mut state.reuse[index];
            entry.request = Some(request);
            entry.idle.set();
        }
    }

    /// `ReuseDelete` (`PASSIVE_LEVEL`): cancels reuse request `reuse` if in flight, waits until
    /// its callback returned, deletes it.
    pub(crate) fn reuse_delete(&self, reuse: u64) -> NtResult<()> {
        if CurrentIrql::current() != Irql::Passive {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        let idle = {
            let mut state = self.state.lock();
            let Some(index) = state.reuse.iter().position(|e| e.id == reuse && !e.doomed) else {
                return Err(NtStatus::INVALID_PARAMETER);
            };
            if state.reuse[index].request.is_some() {
                let entry = state.reuse.swap_remove(index);
                drop(state);
                if let Some(request) = entry.request {
                    let _ = request.delete();
                }
                return Ok(());
            }
            state.reuse[index].doomed = true;
            Arc::clone(&state.reuse[index].idle)
        };
        self.cancel_where(|e| e.reuse == Some(reuse));
        let _ = idle.wait(None);
        Ok(())
    }

    /// Deletes every reuse request: those at rest now, those in flight when they come back
    /// (they were cancelled with everything else). All are doomed at once; those at rest are
    /// then taken out and deleted one at a time (nothing to allocate).
    fn reuse_delete_all(&self) {
        {
            let mut state = self.state.lock();
            for entry in &mut state.reuse {
                entry.doomed = true;
            }
        }
        loop {
            let request = {
                let mut state = self.state.lock();
                let Some(index) = state
                    .reuse
                    .iter()
                    .position(|e| e.doomed && e.request.is_some())
                else {
                    return;
                };
                state.reuse.swap_remove(index).request
            };
            if let Some(request) = request {
                let _ = request.delete();
            }
        }
    }

    // ------------------------------------------------------------------ streaming counters

    /// Marks streaming started with `count` requests; `Err(STATUS_DEVICE_BUSY)` while a stop is
    /// in progress, `Ok(false)` if it was already running.
    pub(crate) fn stream_begin(&self, count: usize) -> NtResult<bool> {
        let mut state = self.state.lock();
        if state.closed || state.target.is_none() {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        match state.stream {
            StreamPhase::Running => return Ok(false),
            StreamPhase::Stopping => return Err(NtStatus::DEVICE_BUSY),
            StreamPhase::Idle => {}
        }
        state.stream = StreamPhase::Running;
        state.stream_active = count;
        self.stream_idle.clear();
        Ok(true)
    }

    /// One stream request ended (stopped, failed to resend, or never sent).
    pub(crate) fn stream_end_one(&self) {
        let mut state = self.state.lock();
        state.stream_active -= 1;
        if state.stream_active == 0 {
            state.stream = StreamPhase::Idle;
            self.stream_idle.set();
        }
    }

    /// Whether streaming is stopping (no resend).
    pub(crate) fn stream_stopping(&self) -> bool {
        let state = self.state.lock();
        state.stream == StreamPhase::Stopping || state.closed
    }

    /// Whether streaming runs.
    pub(crate) fn stream_running(&self) -> bool {
        self.state.lock().stream != StreamPhase::Idle
    }

    /// `StreamStop`: no resend from now on; cancels the stream requests in flight.
    pub(crate) fn stream_stop(&self) {
        {
            let mut state = self.state.lock();
            if state.stream != StreamPhase::Running {
                return;
            }
            state.stream = StreamPhase::Stopping;
        }
        self.cancel_matching(true);
    }

    /// Waits until no stream request is active (`PASSIVE_LEVEL`; never from a callback).
    pub(crate) fn stream_wait(&self) {
        let _ = self.stream_idle.wait(None);
    }
}

/// The completion of send `id` (`STATUS_IO_TIMEOUT` for a request cancelled by its deadline);
/// its output bytes are copied into `output`, allocated when the request was sent.
fn completion_of(
    id: u64,
    cancelled: bool,
    deadline: Option<Duration>,
    request: &Request,
    params: &CompletionParams,
    mut output: Vec<u8>,
) -> SendCompletion {
    let timed_out = params.status == NtStatus::CANCELLED
        && !cancelled
        && deadline.is_some_and(|d| Clock::now() >= d);
    append_output(request, params.information, &mut output);
    SendCompletion {
        id: RequestId(id),
        status: if timed_out {
            NtStatus::IO_TIMEOUT
        } else {
            params.status
        },
        information: params.information,
        output,
    }
}

struct Waiter {
    done: Event,
    /// The completion, handed over without a lock (a `ModuleLock` here cost a WDF spin lock per
    /// synchronous send).
    result: OneShot<SendCompletion>,
}

/// One-shot requests to an I/O target. See the [module documentation](self).
#[dmf_module(crate = dmf_core, config = (), context = Context, open = Create, lock = DispatchMaximum)]
pub struct RequestTarget;

#[derive(Default)]
struct Context {
    sender: Option<Arc<Sender>>,
}

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for RequestTarget {
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        module.lock().sender = Some(Sender::open(module)?);
        Ok(())
    }

    fn close(module: &Dispatched<'_, Self>) {
        let sender = module.lock().sender.take();
        if let Some(sender) = sender {
            sender.close();
        }
    }
}

/// The one-shot send Methods every target Module offers — [`RequestTarget`],
/// [`ContinuousRequestTarget`](crate::continuous_request_target::ContinuousRequestTarget),
/// [`DefaultTarget`](crate::default_target::DefaultTarget),
/// [`SelfTarget`](crate::self_target::SelfTarget) and
/// [`DeviceInterfaceTarget`](crate::device_interface_target::DeviceInterfaceTarget): C DMF's
/// `DMF_<Module>_SendSynchronously`, `DMF_<Module>_SendEx` and `DMF_<Module>_Cancel`, written
/// once. Each call enters the Module (a Method under its rundown: it fails with
/// `STATUS_INVALID_DEVICE_STATE` unless the Module is open) and, for the Modules that forward to
/// a RequestTarget or ContinuousRequestTarget child, that child, whose send engine does the
/// I/O. Implemented by those Modules only (sealed).
///
/// ```
/// # use dmf_core::NtResult;
/// use dmf_modules::default_target::DefaultTarget;
/// use dmf_modules::request_target::{RequestSender, SendRequest};
/// use kmdf_sim::fx2::ioctl::IOCTL_OSRUSBFX2_READ_SWITCHES;
///
/// fn switches(target: &DefaultTarget) -> NtResult<u8> {
///     let (bytes, read) = target.send_synchronously(&SendRequest::ioctl(
///         IOCTL_OSRUSBFX2_READ_SWITCHES,
///         &[],
///         1,
///     ))?;
///     Ok(if read >= 1 { bytes[0] } else { 0 })
/// }
/// ```
pub trait RequestSender: sealed::Route {
    /// `DMF_<Module>_SendSynchronously` (`PASSIVE_LEVEL`): sends `request` and waits for it (at
    /// most its time-out). Returns the output bytes (at most the information) and the
    /// information. A Module that forwards holds itself open meanwhile: a synchronous request
    /// that never completes holds off its close, as in C DMF.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open with a target (or above PASSIVE_LEVEL);
    /// `STATUS_INVALID_PARAMETER` for a length a request cannot carry ([`SendRequest`]);
    /// `STATUS_INSUFFICIENT_RESOURCES` if the wait's event cannot be created;
    /// the completion status; `STATUS_IO_TIMEOUT` when the time-out expired.
    fn send_synchronously(&self, request: &SendRequest<'_>) -> NtResult<(Vec<u8>, usize)> {
        self.route(|sender| sender.send_synchronously(request))
    }

    /// `DMF_<Module>_SendEx`: sends `request` and returns at once with its ID; `callback`
    /// (`EVT_DMF_RequestTarget_SendCompletion`) runs exactly once when it comes back —
    /// cancelled, timed-out and removal-cancelled requests included.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open with a target; `STATUS_INVALID_PARAMETER` for a
    /// length a request cannot carry ([`SendRequest`]); the status of a send that did not reach
    /// the target (the callback is then not called).
    fn send(
        &self,
        request: &SendRequest<'_>,
        callback: impl FnOnce(SendCompletion) + Send + 'static,
    ) -> NtResult<RequestId> {
        self.route(|sender| sender.send(request, false, callback))
    }

    /// `DMF_<Module>_Cancel`: asks the target to cancel request `id`; `true` if it was still in
    /// flight (its callback then reports how it ended). IDs of completed requests are ignored;
    /// `false` once the Module is closed.
    fn cancel(&self, id: RequestId) -> bool {
        self.route(|sender| Ok(sender.cancel(id.0)))
            .unwrap_or(false)
    }
}

/// The seal of [`RequestSender`]: how a target Module reaches the send engine doing its I/O.
pub(crate) mod sealed {
    use super::{Arc, Event, ModuleLock, NtResult, SenderState, WorkItem};

    /// The send engine (see its `impl`).
    pub struct Sender {
        pub(in crate::request_target) state: ModuleLock<SenderState>,
        /// Set while nothing is outstanding.
        pub(in crate::request_target) idle: Event,
        /// Set while no stream request is active.
        pub(in crate::request_target) stream_idle: Event,
        pub(in crate::request_target) work_item: Option<WorkItem>,
        /// Completions are delivered from the work item.
        pub(in crate::request_target) passive: bool,
    }

    pub trait Route {
        /// Enters the Module (and the child doing its I/O, if it forwards) and runs `f` on the
        /// send engine inside.
        fn route<R>(&self, f: impl FnOnce(&Arc<Sender>) -> NtResult<R>) -> NtResult<R>;
    }
}

/// Every Method of RequestTarget enters the Module and runs on its send engine.
impl Route for RequestTarget {
    fn route<R>(&self, f: impl FnOnce(&Arc<Sender>) -> NtResult<R>) -> NtResult<R> {
        let module = self.enter()?;
        let sender = module.lock().sender.clone();
        f(&sender.ok_or(NtStatus::INVALID_DEVICE_STATE)?)
    }
}

impl RequestSender for RequestTarget {}

impl RequestTarget {
    /// `DMF_RequestTarget_IoTargetSet`: sends go to `target` from now on.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open.
    pub fn io_target_set(&self, target: IoTarget) -> NtResult<()> {
        self.route(|sender| {
            sender.set_target(Some(target));
            Ok(())
        })
    }

    /// `DMF_RequestTarget_IoTargetClear`: no target from now on (sends fail with
    /// `STATUS_INVALID_DEVICE_STATE`); the requests in flight are cancelled and every reuse
    /// request is deleted (one in flight when it comes back).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open.
    pub fn io_target_clear(&self) -> NtResult<()> {
        self.route(|sender| {
            sender.clear();
            Ok(())
        })
    }

    /// `io_target_clear`, then waits until every request in flight came back (`PASSIVE_LEVEL`).
    pub(crate) fn clear_and_wait(&self) -> NtResult<()> {
        self.route(|sender| {
            sender.clear();
            sender.wait_idle();
            Ok(())
        })
    }
}

/// The reuse-request Methods of the target Modules that send on a target they were given or
/// found — [`RequestTarget`],
/// [`ContinuousRequestTarget`](crate::continuous_request_target::ContinuousRequestTarget),
/// [`DefaultTarget`](crate::default_target::DefaultTarget) and
/// [`DeviceInterfaceTarget`](crate::device_interface_target::DeviceInterfaceTarget): C DMF's
/// `DMF_<Module>_ReuseCreate`, `DMF_<Module>_ReuseSend` and `DMF_<Module>_ReuseDelete`, written
/// once. A client creates a request once, sends it as often as it likes (the request is
/// `WdfRequestReuse`d when it comes back) and deletes it. Each call enters the Module (and the
/// child doing its I/O, for the Modules that forward), like the [`RequestSender`] Methods.
///
/// A [`ReuseId`] belongs to the Module that created it, on the target it had then: an ID of
/// another Module, one already deleted, or one whose target was cleared (or, for
/// DeviceInterfaceTarget, removed) is refused with `STATUS_INVALID_PARAMETER`, never acted on.
/// Close cancels a reuse request in flight, waits until its callback has returned, and deletes
/// every reuse request. Implemented by those Modules only (sealed).
///
/// ```
/// # use dmf_core::NtResult;
/// use dmf_modules::default_target::DefaultTarget;
/// use dmf_modules::request_target::{RequestReuse, SendRequest};
/// use kmdf_sim::fx2::ioctl::IOCTL_OSRUSBFX2_READ_SWITCHES;
///
/// fn poll_twice(target: &DefaultTarget) -> NtResult<()> {
///     let reuse = target.reuse_create()?;
///     for _ in 0..2 {
///         // One send at a time: a second one while the first is in flight is refused.
///         let sent = target.reuse_send(
///             reuse,
///             &SendRequest::ioctl(IOCTL_OSRUSBFX2_READ_SWITCHES, &[], 1),
///             |completion| { let _ = completion.output; },
///         );
///         if sent.is_err() { break; }
///     }
///     target.reuse_delete(reuse)
/// }
/// ```
pub trait RequestReuse: sealed::Route {
    /// `DMF_<Module>_ReuseCreate`: creates one request on the current target and keeps it
    /// for [`reuse_send`](Self::reuse_send). It lives until [`reuse_delete`](Self::reuse_delete),
    /// until the Module's target is cleared (`IoTargetClear`; for DeviceInterfaceTarget, the
    /// target's removal) or until close.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open with a target; `STATUS_INSUFFICIENT_RESOURCES` if
    /// the request or its idle event cannot be created.
    fn reuse_create(&self) -> NtResult<ReuseId> {
        self.route(|sender| sender.reuse_create().map(ReuseId))
    }

    /// `DMF_<Module>_ReuseSend`: formats reuse request `id` as `request` and sends it to
    /// the current target, like [`send`](RequestSender::send): it returns at once with a new
    /// request ID (for [`cancel`](RequestSender::cancel)) and `callback` runs exactly once when
    /// it comes back. The request is then reused and can be sent again once `callback` has
    /// returned.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` for an unknown (or deleted) `id`, or a length a request cannot
    /// carry ([`SendRequest`]); `STATUS_INVALID_DEVICE_STATE` unless open with a target, or while
    /// a send of `id` is in flight (its callback included); the status of a send that did not
    /// reach the target (the callback is then not called and the request can be sent again).
    fn reuse_send(
        &self,
        id: ReuseId,
        request: &SendRequest<'_>,
        callback: impl FnOnce(SendCompletion) + Send + 'static,
    ) -> NtResult<RequestId> {
        self.route(|sender| sender.reuse_send(id.0, request, callback))
    }

    /// `DMF_<Module>_ReuseDelete` (`PASSIVE_LEVEL`): deletes reuse request `id`; if a send
    /// of it is in flight it is cancelled first and this waits until its callback has returned
    /// (so never call it from that callback).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` for an unknown (or already deleted) `id`;
    /// `STATUS_INVALID_DEVICE_STATE` unless open, or above `PASSIVE_LEVEL`.
    fn reuse_delete(&self, id: ReuseId) -> NtResult<()> {
        self.route(|sender| sender.reuse_delete(id.0))
    }
}

impl RequestReuse for RequestTarget {}
