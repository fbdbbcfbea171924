//! # ContinuousRequestTarget
//!
//! ## Summary
//!
//! Keeps `request_count` requests permanently in flight against an I/O target — input streaming
//! such as the OSR FX2's `GET_INTERRUPT_MESSAGE` IOCTL, or reads — and hands every completed one
//! to the client, which says whether to go on (C DMF: `Dmf_ContinuousRequestTarget.c`). On
//! completion the same request is reused, reformatted and sent again unless the client or
//! [`stream_stop`](ContinuousRequestTarget::stream_stop) stopped streaming. It also offers the
//! one-shot sends of [`RequestTarget`](crate::request_target::RequestTarget).
//!
//! ## Configuration
//!
//! [`ContinuousRequestTargetConfig`]:
//! - `request_count` — `ContinuousRequestCount`, the requests kept in flight;
//! - `request_type`, `ioctl_code` — `RequestType`, `ContinuousRequestTargetIoctl`;
//! - `input_buffer_size`, `input_callback` — `BufferInputSize`, `EvtContinuousRequestTargetBufferInput`
//!   (fills the input bytes of each send; none: zero input bytes);
//! - `output_buffer_size`, `output_callback` — `BufferOutputSize`,
//!   `EvtContinuousRequestTargetBufferOutput` (none: continue on success, stop on error);
//! - `mode` — `ContinuousRequestTargetMode`: [`StreamMode::Automatic`] streams between the
//!   Module's D0Entry and D0Exit whenever it has a target; [`StreamMode::Manual`] only between
//!   [`stream_start`](ContinuousRequestTarget::stream_start) and a stop;
//! - `output_buffer_count` — `BufferCountOutput`: spare output buffers (allocated at open) the
//!   client may keep from the output callback ([`StreamCompletion::keep`]) and hands back with
//!   [`buffer_put`](ContinuousRequestTarget::buffer_put);
//! - `cancel_and_resend_request_in_d0_callbacks` — `CancelAndResendRequestInD0Callbacks`: the
//!   stream stops (and is waited for) in the Module's D0Exit and starts again in its D0Entry,
//!   except the D0Entry of the first start (`WdfPowerDeviceD3Final`);
//! - `purge_and_start_target_in_d0_callbacks` — `PurgeAndStartTargetInD0Callbacks`: the target
//!   is stopped with its sent requests cancelled in D0Exit and started again in D0Entry (not at
//!   the first start) — every Module's requests on that target, as in C DMF.
//!
//! With `input_buffer_size` and `output_buffer_size` both 0 the stream runs in *zero-buffer
//! mode*: its requests carry no buffers (a notification IOCTL that only completes), the input
//! callback is not called and the output callback sees no bytes.
//!
//! `passive_level(true)` on the spec (`DMF_MODULE_ATTRIBUTES.PassiveLevel`) delivers completions
//! (stream and one-shot) at `PASSIVE_LEVEL` from a work item, and resends from there; otherwise
//! they run in the completion context (≤ `DISPATCH_LEVEL`).
//!
//! ## Methods
//!
//! | Method | C DMF | IRQL |
//! |---|---|---|
//! | [`ContinuousRequestTarget::io_target_set`] | `DMF_ContinuousRequestTarget_IoTargetSet` | ≤ DISPATCH |
//! | [`ContinuousRequestTarget::io_target_clear`] | `DMF_ContinuousRequestTarget_IoTargetClear` | PASSIVE |
//! | [`ContinuousRequestTarget::stream_start`] | `DMF_ContinuousRequestTarget_Start` | ≤ DISPATCH |
//! | [`ContinuousRequestTarget::stream_stop`] | `DMF_ContinuousRequestTarget_Stop` | ≤ DISPATCH |
//! | [`ContinuousRequestTarget::stop_and_wait`] | `DMF_ContinuousRequestTarget_StopAndWait` | PASSIVE |
//! | [`ContinuousRequestTarget::is_streaming`] | — | ≤ DISPATCH |
//! | [`ContinuousRequestTarget::buffer_put`] | `DMF_ContinuousRequestTarget_BufferPut` | ≤ DISPATCH |
//! | [`send_synchronously`](RequestSender::send_synchronously) | `DMF_ContinuousRequestTarget_SendSynchronously` | PASSIVE |
//! | [`send`](RequestSender::send) | `DMF_ContinuousRequestTarget_Send` / `…SendEx` | ≤ DISPATCH |
//! | [`cancel`](RequestSender::cancel) | `DMF_ContinuousRequestTarget_Cancel` | ≤ DISPATCH |
//! | [`reuse_create`](RequestReuse::reuse_create) | `DMF_ContinuousRequestTarget_ReuseCreate` | ≤ DISPATCH |
//! | [`reuse_send`](RequestReuse::reuse_send) | `DMF_ContinuousRequestTarget_ReuseSend` | ≤ DISPATCH |
//! | [`reuse_delete`](RequestReuse::reuse_delete) | `DMF_ContinuousRequestTarget_ReuseDelete` | PASSIVE |
//!
//! The one-shot sends are the [`RequestSender`] Methods every target Module shares; they take a
//! [`SendRequest`]. The reuse Methods are the [`RequestReuse`] Methods, as RequestTarget's
//! (`Send` and `SendEx` are one Method: the ID it returns may be ignored).
//!
//! ## Callbacks
//!
//! - [`BufferOutputCallback`]: `Fn(&ContinuousRequestTarget, &StreamCompletion<'_>) ->
//!   BufferDisposition` — the completed output bytes, the status and the information of one
//!   stream request; returns [`BufferDisposition::ContinueStreaming`] or
//!   [`BufferDisposition::StopStreaming`] (for that request). Not called once a stop began: a
//!   request cancelled by a stop just ends. C DMF's four dispositions are the two values plus
//!   [`StreamCompletion::keep`]: `…ContinuousRequestTargetAnd…` (the Module keeps the buffer)
//!   is not calling it, `…ClientAnd…` (the client keeps it until `BufferPut`) is calling it.
//! - [`BufferInputCallback`]: `Fn(&ContinuousRequestTarget, &mut [u8]) -> usize` — fills the
//!   input buffer of a stream request before each send, returns the bytes used.
//!
//! ## Remarks
//!
//! - A stream request is resent from a work item, never from inside the target's completion
//!   routine: a target that completes its parked requests in a loop — the OSR FX2 driver's
//!   interrupt completion does — would otherwise get the resent request back in the same loop,
//!   without end. (With `passive_level` the whole completion already runs there.)
//! - Stop is race-free with completion: a request that completes while the stop runs is not
//!   resent, and a resend racing the stop is cancelled by whichever side comes second.
//!   [`stop_and_wait`](ContinuousRequestTarget::stop_and_wait) returns only when no stream
//!   request is in flight and no output callback runs; never call it from the callback.
//! - Stream requests are created at start and deleted when they end; one-shot sends are as in
//!   RequestTarget (IDs never reused, time-outs, exactly-once callbacks). Each stream request's
//!   input and output buffers (`input_buffer_size`, `output_buffer_size`) are allocated at start
//!   and kept until it ends: a running stream allocates nothing.
//! - `io_target_clear` stops streaming, cancels every request and waits for them.
//! - Close does the same, so no request or callback outlives the Module.
//! - Client-kept output buffers: C DMF hands the client the stream request's own pool buffer and
//!   gives the request another one for its resend; here [`StreamCompletion::keep`] copies the
//!   output bytes into one of `output_buffer_count` spare buffers and the request keeps its own
//!   (the bytes borrowed by the callback cannot move while it runs, and a completion never
//!   allocates). The bound is the same as C DMF's `BufferCountOutput` without
//!   `EnableLookAsideOutput` (a look-aside list would allocate in the completion path): when
//!   every spare is kept, `keep` returns `None`, where C DMF's resend would fail and end that
//!   stream request. [`buffer_put`](ContinuousRequestTarget::buffer_put) of another Module's
//!   buffer fails with `STATUS_INVALID_PARAMETER`. Not ported: the per-buffer client contexts
//!   (`BufferContextInputSize`/`…OutputSize`: a Rust client keeps its context next to the
//!   buffer), `BufferCountInput` (input buffers are per request here), the pool types (all
//!   memory is non-paged) and `EnableLookAsideOutput`.
//! - The D0 flags: `CancelAndResendRequestInD0Callbacks` stops and restarts this Module's
//!   stream; `PurgeAndStartTargetInD0Callbacks` acts on the target with
//!   `WdfIoTargetStop(WdfIoTargetCancelSentIo)` / `WdfIoTargetStart` — C DMF purges
//!   (`WdfIoTargetPurge`), which the platform contract does not have yet: with a stop, a request
//!   sent while the device is out of D0 waits in the target and goes down at D0Entry instead of
//!   failing with `STATUS_INVALID_DEVICE_STATE`. C DMF registers its D0 callbacks only when the
//!   purge flag is set (so the cancel-and-resend flag alone does nothing there); each flag works
//!   on its own here. A stream that cannot restart in D0Entry does not fail the power-up.
//! - `io_target_clear` and close also delete every reuse request (one in flight when it comes
//!   back).
//! - Open option `OPEN_Create`, DISPATCH_MAXIMUM lock; it implements D0Entry/D0Exit (automatic
//!   mode), so it cannot be created dynamically on this framework (dynamic Modules may not
//!   implement WDF callbacks) — use manual mode from the client's own callbacks, or a parent.
//! - **Needs a device.** Its work item (resends, passive-level delivery) is a child of the
//!   Module's device (the `ParentObject` of `WdfWorkItemCreate`); in a collection without a
//!   device it fails to open with `STATUS_INVALID_DEVICE_STATE`.
//!
//! ## Category
//!
//! Targets.
//!
//! # Example
//!
//! ```
//! extern crate alloc;
//! use alloc::sync::Arc;
//! use dmf_core::module::{CollectionConfig, ModuleCollection, ModuleInit};
//! use dmf_core::NtStatus;
//! use dmf_modules::continuous_request_target::{
//!     BufferDisposition, ContinuousRequestTarget, ContinuousRequestTargetConfig, StreamMode,
//! };
//! use dmf_modules::request_target::RequestKind;
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! let mut init = ModuleInit::new();
//! let token = init.add(ContinuousRequestTarget::with(ContinuousRequestTargetConfig {
//!     request_count: 2,
//!     request_type: RequestKind::Ioctl,
//!     ioctl_code: 0x22_2000,
//!     output_buffer_size: 1,
//!     output_callback: Some(Arc::new(|_module, completion| {
//!         if completion.status.is_success() {
//!             BufferDisposition::ContinueStreaming
//!         } else {
//!             BufferDisposition::StopStreaming
//!         }
//!     })),
//!     mode: StreamMode::Manual,
//!     ..ContinuousRequestTargetConfig::default()
//! }));
//! // Its work item is a child of its device: a device on the simulator.
//! let (_node, device) = dmf_core::platform::simulator::plug_in_device(&machine, "example")?;
//! let config = CollectionConfig { device: Some(device), ..CollectionConfig::default() };
//! let modules = ModuleCollection::create(init, config)?;
//! let stream = modules.get(token)?;
//! // No target yet: nothing to stream to.
//! assert_eq!(stream.stream_start(), Err(NtStatus::INVALID_DEVICE_STATE));
//! assert!(!stream.is_streaming());
//! modules.destroy();
//! # Ok::<(), NtStatus>(())
//! ```

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use dmf_core::fallible::{try_arc, try_box, try_vec_filled, try_vec_with_capacity, VecExt};
use dmf_core::module::{Dispatched, Method, ModuleCallbacks, PowerDeviceState};
use dmf_core::platform::contract::io::{CompletionParams, PlatformIoTarget, PlatformRequest};
use dmf_core::platform::{IoTarget, Request};
use dmf_core::sync::{LockKind, ModuleLock};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

use crate::request_target::sealed::Route;
use crate::request_target::{
    copy_output, RequestKind, RequestReuse, RequestSender, SendRequest, Sender, Work,
};

/// `ContinuousRequestTarget_ModeType`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StreamMode {
    /// Streams only between `stream_start` and a stop.
    #[default]
    Manual,
    /// Streams between the Module's D0Entry and D0Exit whenever it has a target.
    Automatic,
}

/// What the output callback wants done with the stream request
/// (`ContinuousRequestTarget_BufferDisposition`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BufferDisposition {
    /// `…AndContinueStreaming`: resend the request.
    ContinueStreaming,
    /// `…AndStopStreaming`: this request ends.
    StopStreaming,
}

/// One completed stream request as the output callback sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamCompletion<'a> {
    /// The completion status.
    pub status: NtStatus,
    /// The output bytes (at most `information`).
    pub output: &'a [u8],
    /// `IoStatus.Information`.
    pub information: usize,
    /// The Module's spare output buffers, for [`keep`](Self::keep).
    spares: Keeper<'a>,
}

impl StreamCompletion<'_> {
    /// C DMF's `ContinuousRequestTarget_BufferDisposition_ClientAnd…`: the client keeps the
    /// output bytes beyond the callback. Returns them in one of the Module's spare output
    /// buffers (`output_buffer_count` of them, allocated at open), which the client owns until
    /// it hands it back with `buffer_put`
    /// ([`ContinuousRequestTarget::buffer_put`], `DefaultTarget::buffer_put`,
    /// `DeviceInterfaceTarget::buffer_put`). `None` when every spare buffer is kept already (or
    /// the config has none): the client then uses the bytes inside the callback only.
    ///
    /// The stream request itself goes on with its own buffer (the callback's return value still
    /// says whether it is resent), so keeping never allocates and never stalls the stream.
    #[must_use]
    pub fn keep(&self) -> Option<ClientBuffer> {
        self.spares.0?.take(self.output)
    }
}

/// The spare output buffers of a Module as a stream completion carries them (compared equal
/// and printed as a name only: they are not part of what a completion says).
#[derive(Clone, Copy)]
struct Keeper<'a>(Option<&'a Spares>);

impl PartialEq for Keeper<'_> {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for Keeper<'_> {}

impl core::fmt::Debug for Keeper<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Keeper")
    }
}

/// An output buffer the client kept from the output callback ([`StreamCompletion::keep`]):
/// the output bytes, owned by the client until it hands the buffer back with `buffer_put`
/// (`DMF_ContinuousRequestTarget_BufferPut`). Dropping it instead frees it; the Module then
/// has one spare buffer less.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientBuffer {
    bytes: Vec<u8>,
    len: usize,
    /// The pool (one per Module instance) the buffer belongs to.
    pool: u64,
}

impl core::ops::Deref for ClientBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl core::ops::DerefMut for ClientBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len]
    }
}

/// The process-wide spare-pool counter: a [`ClientBuffer`] names its pool by this number.
static NEXT_POOL: AtomicU64 = AtomicU64::new(1);

/// `BufferCountOutput` spare output buffers (C DMF's `BufferPoolOutput`), allocated at open.
struct Spares {
    id: u64,
    free: ModuleLock<Vec<Vec<u8>>>,
}

impl Spares {
    /// `count` buffers of `size` bytes, both bounded by the config.
    fn new(count: u32, size: usize) -> NtResult<Spares> {
        let count = usize::try_from(count).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let mut free = try_vec_with_capacity(count)?;
        for _ in 0..count {
            free.try_push(try_vec_filled(0u8, size)?)?;
        }
        Ok(Spares {
            id: NEXT_POOL.fetch_add(1, Ordering::Relaxed),
            free: ModuleLock::new(LockKind::Spin, free)?,
        })
    }

    /// A spare buffer holding a copy of `bytes` (at most its size); `None` if none is left.
    fn take(&self, bytes: &[u8]) -> Option<ClientBuffer> {
        let mut buffer = self.free.lock().pop()?;
        let len = bytes.len().min(buffer.len());
        buffer[..len].copy_from_slice(&bytes[..len]);
        Some(ClientBuffer {
            bytes: buffer,
            len,
            pool: self.id,
        })
    }

    /// A kept buffer comes back; `STATUS_INVALID_PARAMETER` (and it is freed) if it is not
    /// one of these.
    fn put(&self, buffer: ClientBuffer) -> NtResult<()> {
        if buffer.pool != self.id {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let mut free = self.free.lock();
        // Within the capacity reserved at open (only that many buffers carry this pool's ID):
        // this never allocates.
        if free.len() < free.capacity() {
            free.try_push(buffer.bytes)?;
        }
        Ok(())
    }
}

/// `EVT_DMF_ContinuousRequestTarget_BufferOutput`.
pub type BufferOutputCallback =
    Arc<dyn Fn(&ContinuousRequestTarget, &StreamCompletion<'_>) -> BufferDisposition + Send + Sync>;

/// `EVT_DMF_ContinuousRequestTarget_BufferInput`: fills the input buffer, returns the length.
pub type BufferInputCallback =
    Arc<dyn Fn(&ContinuousRequestTarget, &mut [u8]) -> usize + Send + Sync>;

/// `DMF_CONFIG_ContinuousRequestTarget`.
#[derive(Clone)]
pub struct ContinuousRequestTargetConfig {
    /// `ContinuousRequestCount`: stream requests kept in flight (0: one-shot sends only).
    pub request_count: u32,
    /// `RequestType`.
    pub request_type: RequestKind,
    /// `ContinuousRequestTargetIoctl` (IOCTL request types).
    pub ioctl_code: u32,
    /// `BufferInputSize`.
    pub input_buffer_size: usize,
    /// `EvtContinuousRequestTargetBufferInput`.
    pub input_callback: Option<BufferInputCallback>,
    /// `BufferOutputSize`.
    pub output_buffer_size: usize,
    /// `EvtContinuousRequestTargetBufferOutput`.
    pub output_callback: Option<BufferOutputCallback>,
    /// `ContinuousRequestTargetMode`.
    pub mode: StreamMode,
    /// `BufferCountOutput`: spare output buffers, allocated at open, that the client may keep
    /// from the output callback ([`StreamCompletion::keep`]) and hands back with
    /// [`buffer_put`](ContinuousRequestTarget::buffer_put) (0: none).
    pub output_buffer_count: u32,
    /// `PurgeAndStartTargetInD0Callbacks`: the target is stopped with its sent requests
    /// cancelled in the Module's D0Exit and started again in its D0Entry (not at the first
    /// start). It acts on the target, so on every Module sending through it.
    pub purge_and_start_target_in_d0_callbacks: bool,
    /// `CancelAndResendRequestInD0Callbacks`: streaming stops (and is waited for) in the
    /// Module's D0Exit and starts again in its D0Entry (not at the first start). It acts on
    /// this Module's own requests only.
    pub cancel_and_resend_request_in_d0_callbacks: bool,
}

impl Default for ContinuousRequestTargetConfig {
    fn default() -> Self {
        ContinuousRequestTargetConfig {
            request_count: 0,
            request_type: RequestKind::Ioctl,
            ioctl_code: 0,
            input_buffer_size: 0,
            input_callback: None,
            output_buffer_size: 0,
            output_callback: None,
            mode: StreamMode::Manual,
            output_buffer_count: 0,
            purge_and_start_target_in_d0_callbacks: false,
            cancel_and_resend_request_in_d0_callbacks: false,
        }
    }
}

impl core::fmt::Debug for ContinuousRequestTargetConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ContinuousRequestTargetConfig")
            .field("request_count", &self.request_count)
            .field("request_type", &self.request_type)
            .field("ioctl_code", &self.ioctl_code)
            .field("input_buffer_size", &self.input_buffer_size)
            .field("output_buffer_size", &self.output_buffer_size)
            .field("mode", &self.mode)
            .field("output_buffer_count", &self.output_buffer_count)
            .field(
                "purge_and_start_target_in_d0_callbacks",
                &self.purge_and_start_target_in_d0_callbacks,
            )
            .field(
                "cancel_and_resend_request_in_d0_callbacks",
                &self.cancel_and_resend_request_in_d0_callbacks,
            )
            .finish_non_exhaustive()
    }
}

/// Streaming requests plus one-shot sends to an I/O target. See the
/// [module documentation](self).
#[dmf_module(crate = dmf_core, config = ContinuousRequestTargetConfig, context = Context, open = Create, lock = DispatchMaximum)]
pub struct ContinuousRequestTarget;

#[derive(Default)]
struct Context {
    shared: Option<Arc<Shared>>,
    in_d0: bool,
}

/// What the Module, its stream requests and their completions share; lives from open to close.
struct Shared {
    handle: ContinuousRequestTarget,
    sender: Arc<Sender>,
    config: ContinuousRequestTargetConfig,
    spares: Spares,
}

impl Shared {
    /// `DMF_ContinuousRequestTarget_Start`.
    fn start(self: &Arc<Self>) -> NtResult<()> {
        let count =
            usize::try_from(self.config.request_count).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        if count == 0 {
            return Err(NtStatus::INVALID_DEVICE_REQUEST);
        }
        let target = self.sender.target().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        if !self.sender.stream_begin(count)? {
            return Ok(());
        }
        let mut failure = None;
        for _ in 0..count {
            if let Err(status) = Stream::new(self).and_then(|stream| stream.send(None, &target)) {
                self.sender.stream_end_one();
                failure.get_or_insert(status);
            }
        }
        match failure {
            None => Ok(()),
            Some(status) => {
                self.sender.stream_stop();
                Err(status)
            }
        }
    }

    /// Stops streaming and waits for it; cancels the one-shot requests too and waits for them
    /// when `everything`.
    fn stop_and_wait(&self, everything: bool) {
        self.sender.stream_stop();
        self.sender.stream_wait();
        if everything {
            self.sender.cancel_all();
            self.sender.wait_idle();
        }
    }
}

/// Where a stream request stands between its completion and its resend.
enum Step {
    /// In flight (or not yet sent).
    Sent,
    /// Came back: for the output callback, in the delivery context.
    Completed(Request, CompletionParams),
    /// To be sent again, from the work item.
    Resend(Request, IoTarget),
}

/// One stream request's buffers and state, allocated at start and carried from send to
/// completion to resend until the request ends: a running stream never allocates.
struct Stream {
    shared: Arc<Shared>,
    /// `BufferInputSize` bytes, filled by the input callback before each send.
    input: Vec<u8>,
    /// `BufferOutputSize` bytes: the output of the request that came back.
    output: Vec<u8>,
    step: Step,
}

impl Stream {
    fn new(shared: &Arc<Shared>) -> NtResult<Box<Stream>> {
        let input = try_vec_filled(0, shared.config.input_buffer_size)?;
        let output = try_vec_filled(0, shared.config.output_buffer_size)?;
        try_box(Stream {
            shared: Arc::clone(shared),
            input,
            output,
            step: Step::Sent,
        })
    }

    /// Sends the stream request: `request` again (reused), or a new one. On failure the request
    /// is gone (deleted).
    fn send(mut self: Box<Self>, request: Option<Request>, target: &IoTarget) -> NtResult<()> {
        let request = match request {
            Some(request) => {
                if let Err(status) = request.reuse(NtStatus::SUCCESS) {
                    let _ = request.delete();
                    return Err(status);
                }
                request
            }
            None => target.create_request()?,
        };
        let shared = Arc::clone(&self.shared);
        self.input.fill(0);
        // Zero-buffer mode (no input bytes configured): nothing to fill, no callback.
        let used = match &shared.config.input_callback {
            Some(fill) if !self.input.is_empty() => {
                fill(&shared.handle, &mut self.input).min(self.input.len())
            }
            _ => 0,
        };
        let description = SendRequest::new(
            shared.config.request_type,
            shared.config.ioctl_code,
            &self.input[..used],
            shared.config.output_buffer_size,
        );
        if let Err(status) = description.format(&request) {
            let _ = request.delete();
            return Err(status);
        }
        let sender = Arc::clone(&shared.sender);
        shared
            .sender
            .start(
                request,
                target,
                None,
                true,
                move |_id, _cancelled, request, params| {
                    self.step = Step::Completed(request, params);
                    sender.deliver(self);
                },
            )
            .map(|_| ())
    }

    /// The request came back (in the delivery context).
    fn completed(mut self: Box<Self>, request: Request, params: CompletionParams) {
        let shared = Arc::clone(&self.shared);
        let disposition = if shared.sender.stream_stopping() {
            BufferDisposition::StopStreaming
        } else {
            let copied = copy_output(&request, params.information, &mut self.output);
            let completion = StreamCompletion {
                status: params.status,
                output: &self.output[..copied],
                information: params.information,
                spares: Keeper(Some(&shared.spares)),
            };
            match &shared.config.output_callback {
                Some(callback) => callback(&shared.handle, &completion),
                None if params.status.is_success() => BufferDisposition::ContinueStreaming,
                None => BufferDisposition::StopStreaming,
            }
        };
        let target = shared.sender.target();
        if let (BufferDisposition::ContinueStreaming, Some(target)) = (disposition, target) {
            if shared.sender.is_passive() {
                // Already on the work item, outside the target's completion.
                self.resend(request, &target);
            } else {
                // Never from inside the target's completion: a target that completes its
                // parked requests in a loop (the FX2 driver does) would get the resent
                // request back in the same loop, forever.
                self.step = Step::Resend(request, target);
                shared.sender.defer(self);
            }
        } else {
            let _ = request.delete();
            shared.sender.stream_end_one();
            shared.sender.finish();
        }
    }

    /// Sends the request again; the one that came back is done.
    fn resend(self: Box<Self>, request: Request, target: &IoTarget) {
        let sender = Arc::clone(&self.shared.sender);
        if self.send(Some(request), target).is_err() {
            sender.stream_end_one();
        }
        sender.finish();
    }
}

impl Work for Stream {
    fn run(mut self: Box<Self>) {
        match core::mem::replace(&mut self.step, Step::Sent) {
            Step::Completed(request, params) => self.completed(request, params),
            Step::Resend(request, target) => self.resend(request, &target),
            // Not reached: a stream request is delivered or deferred with its next step.
            Step::Sent => {}
        }
    }
}

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for ContinuousRequestTarget {
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        let shared = try_arc(Shared {
            handle: module.handle()?,
            sender: Sender::open(module)?,
            config: module.config().clone(),
            spares: Spares::new(
                module.config().output_buffer_count,
                module.config().output_buffer_size,
            )?,
        })?;
        module.lock().shared = Some(shared);
        Ok(())
    }

    fn close(module: &Dispatched<'_, Self>) {
        let shared = module.lock().shared.take();
        if let Some(shared) = shared {
            shared.sender.stream_stop();
            shared.sender.close();
        }
    }

    fn d0_entry(module: &Dispatched<'_, Self>, previous: PowerDeviceState) -> NtResult<()> {
        let shared = {
            let mut context = module.lock();
            context.in_d0 = true;
            context.shared.clone()
        };
        let config = module.config();
        let Some(shared) = shared else {
            return Ok(());
        };
        let Some(target) = shared.sender.target() else {
            return Ok(());
        };
        // The D0 flags act on a return to D0, not on the first start.
        let resume = previous != PowerDeviceState::D3Final;
        if resume && config.purge_and_start_target_in_d0_callbacks {
            // Before the stream restarts, so that it goes to a started target.
            let _ = target.start();
        }
        if config.mode == StreamMode::Automatic
            || (resume && config.cancel_and_resend_request_in_d0_callbacks)
        {
            // A target that refuses the stream does not fail the power-up.
            let _ = shared.start();
        }
        Ok(())
    }

    fn d0_exit(module: &Dispatched<'_, Self>, _target: PowerDeviceState) -> NtResult<()> {
        let shared = {
            let mut context = module.lock();
            context.in_d0 = false;
            context.shared.clone()
        };
        let config = module.config();
        if let Some(shared) = shared {
            if config.mode == StreamMode::Automatic
                || config.cancel_and_resend_request_in_d0_callbacks
            {
                shared.stop_and_wait(false);
            }
            if config.purge_and_start_target_in_d0_callbacks {
                if let Some(target) = shared.sender.target() {
                    target.stop(true);
                }
            }
        }
        Ok(())
    }
}

impl ContinuousRequestTarget {
    fn shared(&self) -> NtResult<(Method<'_, ContinuousRequestTarget>, Arc<Shared>)> {
        let module = self.enter()?;
        let shared = module.lock().shared.clone();
        Ok((module, shared.ok_or(NtStatus::INVALID_DEVICE_STATE)?))
    }

    /// `DMF_ContinuousRequestTarget_IoTargetSet`: requests go to `target` from now on. In
    /// automatic mode, streaming starts if the device is in D0.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open.
    pub fn io_target_set(&self, target: IoTarget) -> NtResult<()> {
        let (module, shared) = self.shared()?;
        shared.sender.set_target(Some(target));
        let in_d0 = module.lock().in_d0;
        if in_d0 && module.config().mode == StreamMode::Automatic {
            let _ = shared.start();
        }
        Ok(())
    }

    /// `DMF_ContinuousRequestTarget_IoTargetClear` (`PASSIVE_LEVEL`): stops streaming, cancels
    /// every request in flight, waits for them, and forgets the target.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open.
    pub fn io_target_clear(&self) -> NtResult<()> {
        let (_module, shared) = self.shared()?;
        shared.sender.stream_stop();
        shared.sender.stream_wait();
        // Forgets the target, cancels the one-shot requests, deletes the reuse requests.
        shared.sender.clear();
        shared.sender.wait_idle();
        Ok(())
    }

    /// `DMF_ContinuousRequestTarget_Start`: sends `request_count` stream requests. Starting a
    /// running stream does nothing.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open with a target; `STATUS_DEVICE_BUSY` while a stop
    /// is still running; `STATUS_INVALID_DEVICE_REQUEST` with `request_count` 0; the status of a
    /// request that could not be sent (streaming is then stopped).
    pub fn stream_start(&self) -> NtResult<()> {
        let (_module, shared) = self.shared()?;
        shared.start()
    }

    /// `DMF_ContinuousRequestTarget_Stop`: no stream request is resent from now on; those in
    /// flight are cancelled. Returns at once.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open.
    pub fn stream_stop(&self) -> NtResult<()> {
        let (_module, shared) = self.shared()?;
        shared.sender.stream_stop();
        Ok(())
    }

    /// `DMF_ContinuousRequestTarget_StopAndWait` (`PASSIVE_LEVEL`, never from the output
    /// callback): stops streaming and returns when no stream request is in flight and no
    /// output callback runs.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open.
    pub fn stop_and_wait(&self) -> NtResult<()> {
        let (_module, shared) = self.shared()?;
        shared.stop_and_wait(false);
        Ok(())
    }

    /// Whether stream requests are active (a stop may be in progress).
    pub fn is_streaming(&self) -> bool {
        self.shared()
            .is_ok_and(|(_module, shared)| shared.sender.stream_running())
    }

    /// `DMF_ContinuousRequestTarget_BufferPut`: hands back an output buffer the client kept
    /// with [`StreamCompletion::keep`]; it can be kept again.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` for a buffer this Module instance did not hand out;
    /// `STATUS_INVALID_DEVICE_STATE` unless open. Either way the buffer is freed.
    pub fn buffer_put(&self, buffer: ClientBuffer) -> NtResult<()> {
        let (_module, shared) = self.shared()?;
        shared.spares.put(buffer)
    }
}

impl Route for ContinuousRequestTarget {
    fn route<R>(&self, f: impl FnOnce(&Arc<Sender>) -> NtResult<R>) -> NtResult<R> {
        let (_module, shared) = self.shared()?;
        f(&shared.sender)
    }
}

/// `DMF_ContinuousRequestTarget_SendSynchronously`, `DMF_ContinuousRequestTarget_SendEx`,
/// `DMF_ContinuousRequestTarget_Cancel`.
impl RequestSender for ContinuousRequestTarget {}

/// `DMF_ContinuousRequestTarget_ReuseCreate`, `DMF_ContinuousRequestTarget_ReuseSend`,
/// `DMF_ContinuousRequestTarget_ReuseDelete`.
impl RequestReuse for ContinuousRequestTarget {}
