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
//!   [`stream_start`](ContinuousRequestTarget::stream_start) and a stop.
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
//! | [`send_synchronously`](RequestSender::send_synchronously) | `DMF_ContinuousRequestTarget_SendSynchronously` | PASSIVE |
//! | [`send`](RequestSender::send) | `DMF_ContinuousRequestTarget_SendEx` | ≤ DISPATCH |
//! | [`cancel`](RequestSender::cancel) | `DMF_ContinuousRequestTarget_Cancel` | ≤ DISPATCH |
//!
//! The one-shot sends are the [`RequestSender`] Methods every target Module shares; they take a
//! [`SendRequest`].
//!
//! ## Callbacks
//!
//! - [`BufferOutputCallback`]: `Fn(&ContinuousRequestTarget, &StreamCompletion<'_>) ->
//!   BufferDisposition` — the completed output bytes, the status and the information of one
//!   stream request; returns [`BufferDisposition::ContinueStreaming`] or
//!   [`BufferDisposition::StopStreaming`] (for that request). Not called once a stop began: a
//!   request cancelled by a stop just ends.
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
//! - C DMF's buffer pools (client-kept output buffers, `BufferPut`) are not ported: the callback
//!   sees the output bytes, which the Module owns.
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

use dmf_core::fallible::{try_arc, try_box, try_vec_filled};
use dmf_core::module::{Dispatched, Method, ModuleCallbacks, PowerDeviceState};
use dmf_core::platform::contract::io::{CompletionParams, PlatformIoTarget, PlatformRequest};
use dmf_core::platform::{IoTarget, Request};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

use crate::request_target::sealed::Route;
use crate::request_target::{copy_output, RequestKind, RequestSender, SendRequest, Sender, Work};

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
        let used = match &shared.config.input_callback {
            Some(fill) => fill(&shared.handle, &mut self.input).min(self.input.len()),
            None => 0,
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

    fn d0_entry(module: &Dispatched<'_, Self>, _previous: PowerDeviceState) -> NtResult<()> {
        let shared = {
            let mut context = module.lock();
            context.in_d0 = true;
            context.shared.clone()
        };
        if module.config().mode == StreamMode::Automatic {
            if let Some(shared) = shared {
                if shared.sender.target().is_some() {
                    // A target that refuses the stream does not fail the power-up.
                    let _ = shared.start();
                }
            }
        }
        Ok(())
    }

    fn d0_exit(module: &Dispatched<'_, Self>, _target: PowerDeviceState) -> NtResult<()> {
        let shared = {
            let mut context = module.lock();
            context.in_d0 = false;
            context.shared.clone()
        };
        if module.config().mode == StreamMode::Automatic {
            if let Some(shared) = shared {
                shared.stop_and_wait(false);
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
        shared.sender.set_target(None);
        shared.sender.cancel_all();
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
