//! # DefaultTarget
//!
//! ## Summary
//!
//! The RequestTarget / ContinuousRequestTarget API against the device's *default* I/O target —
//! the next lower driver in the stack (`WdfDeviceGetIoTarget`) — for filter drivers (C DMF:
//! `Dmf_DefaultTarget.c`; the SwitchBar3/4 samples). The Module opens in PrepareHardware with the
//! target handed to its child and closes in ReleaseHardware.
//!
//! ## Configuration
//!
//! [`DefaultTargetConfig`]:
//! - `stream` — the embedded `ContinuousRequestTargetModuleConfig`: with `Some` (and a non-zero
//!   `request_count`) a ContinuousRequestTarget child streams (automatic mode: between D0Entry
//!   and D0Exit; manual: `stream_start`/`stream_stop`); with `None` a RequestTarget child does
//!   one-shot sends only;
//! - `output_callback` — the stream's output callback with this Module's handle (overrides the
//!   embedded config's own).
//!
//! `passive_level(true)` on the spec is passed on to the child.
//!
//! ## Methods
//!
//! | Method | C DMF | IRQL |
//! |---|---|---|
//! | [`send_synchronously`](RequestSender::send_synchronously) | `DMF_DefaultTarget_SendSynchronously` | PASSIVE |
//! | [`send`](RequestSender::send) | `DMF_DefaultTarget_Send` / `…SendEx` | ≤ DISPATCH |
//! | [`cancel`](RequestSender::cancel) | `DMF_DefaultTarget_Cancel` | ≤ DISPATCH |
//! | [`reuse_create`](RequestReuse::reuse_create) | `DMF_DefaultTarget_ReuseCreate` | ≤ DISPATCH |
//! | [`reuse_send`](RequestReuse::reuse_send) | `DMF_DefaultTarget_ReuseSend` | ≤ DISPATCH |
//! | [`reuse_delete`](RequestReuse::reuse_delete) | `DMF_DefaultTarget_ReuseDelete` | PASSIVE |
//! | [`DefaultTarget::stream_start`] | `DMF_DefaultTarget_StreamStart` | ≤ DISPATCH |
//! | [`DefaultTarget::stream_stop`] | `DMF_DefaultTarget_StreamStop` | PASSIVE |
//! | [`DefaultTarget::buffer_put`] | `DMF_DefaultTarget_BufferPut` | ≤ DISPATCH |
//! | [`DefaultTarget::get_target`] | `DMF_DefaultTarget_Get` | ≤ DISPATCH |
//!
//! The one-shot sends are the [`RequestSender`] Methods every target Module shares; they take a
//! [`SendRequest`](crate::request_target::SendRequest). The reuse Methods are the
//! [`RequestReuse`] Methods (written once in RequestTarget), forwarded to the child doing the
//! I/O inside this Module's rundown; its reuse requests are deleted when the Module closes
//! (ReleaseHardware). Every C DMF Method of the Module is here.
//!
//! ## Callbacks
//!
//! [`DefaultTargetOutputCallback`] (see the config) and the client event callbacks (PostOpen
//! after PrepareHardware, PreClose before ReleaseHardware).
//!
//! ## Remarks
//!
//! - Open option `NOTIFY_PrepareHardware` as in C DMF: NotificationRegister hands
//!   `device.io_target()` to the child and opens the Module; NotificationUnregister (in
//!   ReleaseHardware) stops streaming, closes the Module (PreClose, rundown) and cancels and
//!   waits for the child's requests.
//! - Automatic streaming starts in the Module's D0Entry and stops (and is waited for) in its
//!   D0Exit, which runs before the lower driver's D0Exit.
//! - The stream's output buffers can be kept by the client as ContinuousRequestTarget's
//!   ([`StreamCompletion::keep`], `output_buffer_count` in the embedded config) and come back
//!   with [`buffer_put`](DefaultTarget::buffer_put); the embedded config's D0 flags
//!   (`CancelAndResendRequestInD0Callbacks`, `PurgeAndStartTargetInD0Callbacks`) act in the
//!   child's D0 callbacks.
//! - DISPATCH_MAXIMUM lock.
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
//! use dmf_modules::default_target::{DefaultTarget, DefaultTargetConfig};
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! let mut init = ModuleInit::new();
//! let token = init.add(DefaultTarget::with(DefaultTargetConfig::default()));
//! // Its children's work items are children of its device: a device on the simulator.
//! let (_node, device) = dmf_core::platform::simulator::plug_in_device(&machine, "example")?;
//! let config = CollectionConfig { device: Some(device), ..CollectionConfig::default() };
//! let modules = ModuleCollection::create(init, config)?;
//! let target = modules.get(token)?;
//! // Opened in PrepareHardware (with a device): not yet.
//! assert_eq!(target.get_target().err(), Some(NtStatus::INVALID_DEVICE_STATE));
//! modules.destroy();
//! # Ok::<(), NtStatus>(())
//! ```

use alloc::sync::Arc;

use dmf_core::fallible::try_arc;
use dmf_core::module::{
    Added, Dispatched, Method, ModuleCallbacks, ModuleInit, PowerDeviceState, Scope,
};
use dmf_core::platform::contract::device::PlatformDevice;
use dmf_core::platform::IoTarget;
use dmf_core::sync::{LockKind, ModuleLock};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

use crate::continuous_request_target::{
    BufferDisposition, BufferOutputCallback, ClientBuffer, ContinuousRequestTarget,
    ContinuousRequestTargetConfig, StreamCompletion, StreamMode,
};
use crate::request_target::sealed::Route;
use crate::request_target::{RequestReuse, RequestSender, RequestTarget, Sender};
use crate::target_sink::Sink;

/// The stream's output callback, with this Module's handle.
pub type DefaultTargetOutputCallback =
    Arc<dyn Fn(&DefaultTarget, &StreamCompletion<'_>) -> BufferDisposition + Send + Sync>;

/// `DMF_CONFIG_DefaultTarget`.
#[derive(Clone, Default)]
pub struct DefaultTargetConfig {
    /// `ContinuousRequestTargetModuleConfig` (`None`: one-shot sends only).
    pub stream: Option<ContinuousRequestTargetConfig>,
    /// The stream's output callback with this Module's handle (overrides the embedded one).
    pub output_callback: Option<DefaultTargetOutputCallback>,
}

impl core::fmt::Debug for DefaultTargetConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DefaultTargetConfig")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// Requests to the next lower driver. See the [module documentation](self).
#[dmf_module(crate = dmf_core, config = DefaultTargetConfig, context = Context, open = NotifyPrepareHardware, lock = DispatchMaximum)]
pub struct DefaultTarget;

#[derive(Default)]
struct Context {
    stream: Option<Added<ContinuousRequestTarget>>,
    single: Option<Added<RequestTarget>>,
    /// This Module's handle for the redirected output callback (set while registered).
    this: Option<Arc<ModuleLock<Option<DefaultTarget>>>>,
    target: Option<IoTarget>,
    /// Why ChildModulesAdd could not redirect the output callback: NotificationRegister fails
    /// with it (the client's callback would never run).
    failure: Option<NtStatus>,
}

/// The stream child's output callback, redirected to `callback` with this Module's handle (from
/// `this`, set while registered).
fn redirect(
    callback: DefaultTargetOutputCallback,
) -> NtResult<(Arc<ModuleLock<Option<DefaultTarget>>>, BufferOutputCallback)> {
    let this = try_arc(ModuleLock::new(LockKind::Spin, None)?)?;
    let weak = Arc::downgrade(&this);
    let redirected = try_arc(
        move |_child: &ContinuousRequestTarget, completion: &StreamCompletion<'_>| {
            let handle = weak.upgrade().and_then(|this| this.lock().clone());
            match handle {
                Some(handle) => callback(&handle, completion),
                None => BufferDisposition::StopStreaming,
            }
        },
    )?;
    Ok((this, redirected))
}

fn sink(module: &Scope<'_, DefaultTarget>) -> NtResult<Sink> {
    let (stream, single) = {
        let context = module.lock();
        (context.stream, context.single)
    };
    Sink::of(module, stream, single)
}

fn automatic(module: &Scope<'_, DefaultTarget>) -> bool {
    module
        .config()
        .stream
        .as_ref()
        .is_some_and(|s| s.request_count > 0 && s.mode == StreamMode::Automatic)
}

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for DefaultTarget {
    fn child_modules_add(module: &Dispatched<'_, Self>, init: &mut ModuleInit) {
        let config = module.config();
        let passive = module.is_passive_level();
        let mut context = module.lock();
        match config.stream.as_ref().filter(|s| s.request_count > 0) {
            Some(stream) => {
                let mut child = stream.clone();
                // This Module runs automatic streaming, around the lower driver's power state.
                child.mode = StreamMode::Manual;
                if let Some(callback) = config.output_callback.clone() {
                    match redirect(callback) {
                        Ok((this, redirected)) => {
                            child.output_callback = Some(redirected);
                            context.this = Some(this);
                        }
                        Err(status) => context.failure = Some(status),
                    }
                }
                context.stream =
                    Some(init.add(ContinuousRequestTarget::with(child).passive_level(passive)));
            }
            None => {
                context.single = Some(init.add(RequestTarget::with(()).passive_level(passive)));
            }
        }
    }

    fn notification_register(module: &Dispatched<'_, Self>) -> NtResult<()> {
        if let Some(status) = module.lock().failure {
            return Err(status);
        }
        let target = module
            .device()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?
            .io_target();
        sink(module)?.set_target(target.clone())?;
        let handle = module.handle()?;
        {
            let mut context = module.lock();
            context.target = Some(target);
            if let Some(this) = &context.this {
                *this.lock() = Some(handle.clone());
            }
        }
        handle.notification_open()
    }

    fn notification_unregister(module: &Dispatched<'_, Self>) {
        let Ok(sink) = sink(module) else {
            return;
        };
        if automatic(module) {
            if let Ok(stream) = sink.stream() {
                let _ = stream.stop_and_wait();
            }
        }
        if let Ok(handle) = module.handle() {
            handle.notification_close();
        }
        sink.clear_and_wait();
        let mut context = module.lock();
        context.target = None;
        if let Some(this) = &context.this {
            *this.lock() = None;
        }
    }

    fn d0_entry(module: &Dispatched<'_, Self>, _previous: PowerDeviceState) -> NtResult<()> {
        if automatic(module) && module.lock().target.is_some() {
            if let Ok(Sink::Stream(stream)) = sink(module) {
                // A lower driver that refuses the stream does not fail the power-up.
                let _ = stream.stream_start();
            }
        }
        Ok(())
    }

    fn d0_exit(module: &Dispatched<'_, Self>, _target: PowerDeviceState) -> NtResult<()> {
        if automatic(module) {
            if let Ok(Sink::Stream(stream)) = sink(module) {
                let _ = stream.stop_and_wait();
            }
        }
        Ok(())
    }

    fn destroy(module: &Dispatched<'_, Self>) {
        if let Some(this) = module.lock().this.take() {
            *this.lock() = None;
        }
    }
}

impl DefaultTarget {
    fn sink(&self) -> NtResult<(Method<'_, DefaultTarget>, Sink)> {
        let module = self.enter()?;
        let sink = sink(&module)?;
        Ok((module, sink))
    }

    /// `DMF_DefaultTarget_StreamStart`.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open; `STATUS_INVALID_DEVICE_REQUEST` without a
    /// stream config; as ContinuousRequestTarget's otherwise.
    pub fn stream_start(&self) -> NtResult<()> {
        let (_module, sink) = self.sink()?;
        sink.stream()?.stream_start()
    }

    /// `DMF_DefaultTarget_StreamStop` (`PASSIVE_LEVEL`, never from the output callback): stops
    /// streaming and waits until no stream request is in flight.
    ///
    /// # Errors
    ///
    /// As [`stream_start`](Self::stream_start).
    pub fn stream_stop(&self) -> NtResult<()> {
        let (_module, sink) = self.sink()?;
        sink.stream()?.stop_and_wait()
    }

    /// Whether stream requests are active.
    pub fn is_streaming(&self) -> bool {
        self.sink().is_ok_and(|(_module, sink)| sink.is_streaming())
    }

    /// `DMF_DefaultTarget_BufferPut`: hands back an output buffer the client kept with
    /// [`StreamCompletion::keep`] (see
    /// [`ContinuousRequestTarget::buffer_put`]).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open; `STATUS_INVALID_DEVICE_REQUEST` without a
    /// stream config; `STATUS_INVALID_PARAMETER` for a buffer this Module did not hand out.
    /// Either way the buffer is freed.
    pub fn buffer_put(&self, buffer: ClientBuffer) -> NtResult<()> {
        let (_module, sink) = self.sink()?;
        sink.stream()?.buffer_put(buffer)
    }

    /// `DMF_DefaultTarget_Get`: the default (next lower) target.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open.
    pub fn get_target(&self) -> NtResult<IoTarget> {
        let module = self.enter()?;
        let target = module.lock().target.clone();
        target.ok_or(NtStatus::INVALID_DEVICE_STATE)
    }
}

impl Route for DefaultTarget {
    fn route<R>(&self, f: impl FnOnce(&Arc<Sender>) -> NtResult<R>) -> NtResult<R> {
        let (_module, sink) = self.sink()?;
        sink.route(f)
    }
}

/// `DMF_DefaultTarget_SendSynchronously`, `DMF_DefaultTarget_SendEx`, `DMF_DefaultTarget_Cancel`:
/// forwarded to the child doing the I/O, inside this Module's rundown.
impl RequestSender for DefaultTarget {}

/// `DMF_DefaultTarget_ReuseCreate`, `DMF_DefaultTarget_ReuseSend`, `DMF_DefaultTarget_ReuseDelete`:
/// forwarded to the child doing the I/O, inside this Module's rundown.
impl RequestReuse for DefaultTarget {}
