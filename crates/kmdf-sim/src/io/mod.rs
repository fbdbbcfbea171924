//! The I/O layer: requests, queues, file objects, I/O targets and simulated applications.
//!
//! # Design
//!
//! A request ([`Request`]) is one I/O operation — an IRP — travelling through a device stack.
//! Its state lives in a shared core; a [`Request`] value is a *handle* to it, owned by whoever
//! holds it (the framework hands a fresh handle to each driver callback that receives the
//! request). Completion consumes the handle. A handle remembers the stack depth it was issued
//! at, so a stale handle — a second completion, or a completion by a driver that already passed
//! the request on — is caught by the verifier ([`Rule::RequestCompletedTwice`]).
//!
//! ## The path of a request
//!
//! 1. An [`Application`] (the I/O manager side) opens a handle on a device
//!    interface — a create request carrying a new [`FileObject`] goes to the **top** of the
//!    interface's device stack — or on a symbolic link (a [control device](crate::control)
//!    receives the create itself: it is in no stack), and then issues reads, writes and IOCTLs.
//!    The I/O manager checks the access bits of an IOCTL code against the access granted to the
//!    handle ([Defining I/O Control Codes]) before sending anything.
//! 2. Entering a device ([`Device`]), a request first meets any test-injected [`IoFault`], then the
//!    device's routing ([Creating I/O Queues], [`WDF_IO_QUEUE_CONFIG`],
//!    [`WdfFdoInitSetFilter`]): creates, cleanups and closes go to the file-object callbacks
//!    ([`FileConfig`]); other types first to the driver's `EvtIoInCallerContext` if it set one
//!    ([`set_io_in_caller_context`]; on the sender's thread, handing the request back with
//!    [`Device::enqueue_request`]), then to the queue set with
//!    [`Device::configure_request_dispatching`], else to the default queue. With no queue, a
//!    function driver's framework completes the request with `STATUS_INVALID_DEVICE_REQUEST` while
//!    a filter's framework forwards it to the next lower driver.
//! 3. A [`Queue`] presents requests to the driver per its dispatch type
//!    ([Dispatching Methods for I/O Requests]), holds them while stopped or — power-managed —
//!    while the device is out of D0 ([Using Power-Managed I/O Queues],
//!    [Power Management for I/O Queues], [Managing I/O Queues]), and calls `EvtIoStop` /
//!    `EvtIoResume` through the PnP engine's power hooks ([`DevicePowerHook`]).
//! 4. The driver completes the request, parks it (another queue, its own context), or sends it down
//!    through an [`IoTarget`] ([`WdfRequestSend`],
//!    [`WdfRequestFormatRequestUsingCurrentType`]): the device's local target reaches the next
//!    lower device of the stack (at the bottom: the bus driver of the PDO, which succeeds creates,
//!    cleanups and closes and fails everything else with `STATUS_INVALID_DEVICE_REQUEST`); a remote
//!    target reaches the top of another stack opened by a device-interface symbolic link
//!    ([Controlling a General I/O Target's State], [`WdfIoTargetOpen`],
//!    [`EvtIoTargetRemoveComplete`]).
//! 5. Completion unwinds the stack: each layer that set a completion routine gets the request
//!    back (and must complete it); layers without one are completed by the framework; layers
//!    that used send-and-forget are skipped. The last completion reaches the origin — the
//!    application's pending operation, or the completion routine of a driver-created request.
//!
//! ## Threads and IRQL
//!
//! Everything runs on the thread that caused it: an application's thread delivers its own request
//! into the driver at `PASSIVE_LEVEL`; a completion from a DPC delivers the next request of a
//! sequential queue at `DISPATCH_LEVEL` (both are allowed: `EvtIo*` run at ≤ `DISPATCH_LEVEL`,
//! [`EvtIoRead`]). Each queue has one dispatcher at a time, so a completion made from inside
//! `EvtIoRead` does not nest the next `EvtIoRead`; it is presented when the first returns. The
//! IRQL limits that the routines' reference pages state are checked with
//! [`require_max_irql`](crate::exec::require_max_irql).
//!
//! ## Removal rule (a choice: the WDF documentation leaves it open)
//!
//! * Leaving D0 for removal (`EvtIoStop` with [`StopAction::Purge`](crate::pnp::StopAction)):
//!   power-managed queues stop, undelivered requests are completed with `STATUS_CANCELLED`, new
//!   arrivals are completed with `STATUS_INVALID_DEVICE_STATE` (the [`WdfIoQueuePurge`] rule),
//!   and the framework waits until each delivered request is completed or stop-acknowledged —
//!   at most the verifier's power watchdog of virtual time (default ten minutes): then the wait
//!   is a [`Rule::PowerStateFailure`] (reads like bug check 0x9F) naming the requests it waits
//!   for and where the driver took them, and the removal goes on (see [`crate::verifier`]).
//! * A driver that drops its last handle to a request it owns, without completing, forwarding or
//!   requeuing it, is told at the drop ([`Rule::RequestDroppedWithoutCompletion`]); the request
//!   stays outstanding, as in the kernel.
//! * When the device is torn down (after `EvtDeviceSelfManagedIoFlush`/`Cleanup` — so a driver can
//!   still complete parked requests there, as the FX2 sample does with `STATUS_DEVICE_REMOVED`):
//!   every queue is purged the same way, the local I/O target is closed (its queued requests
//!   cancelled, sent ones cancelled), and every request the driver still owns is a
//!   [`Rule::RequestPendingAtTeardown`] violation; the framework then completes it with
//!   `STATUS_CANCELLED` so that the application is not left hanging.
//! * A request sent to a device that is already torn down (an application handle left open
//!   after an unplug) is completed with `STATUS_DEVICE_REMOVED` without reaching any driver —
//!   except the cleanup and close of a handle on a deleted **control device**
//!   ([`crate::control`]), which still reach `EvtFileCleanup` / `EvtFileClose`.
//!
//! ## Modules
//!
//! * [`request`] — [`Request`], parameters, buffers, completion, cancellation, forwarding,
//!   driver-created requests and reuse;
//! * [`queue`] — [`Queue`], [`QueueConfig`], dispatching and power management;
//! * [`file`](mod@file) — [`FileObject`], [`FileConfig`];
//! * [`target`] — [`IoTarget`], send options, remote targets and their PnP notifications;
//! * [`app`] — [`Application`], handles and overlapped operations;
//! * fault injection — [`IoFault`], [`inject_fault`], [`IoTarget::inject_fault`].
//!
//! [Defining I/O Control Codes]: https://learn.microsoft.com/en-us/windows-hardware/drivers/kernel/defining-i-o-control-codes
//! [Using Power-Managed I/O Queues]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/using-power-managed-i-o-queues
//! [Power Management for I/O Queues]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/power-management-for-i-o-queues
//! [Dispatching Methods for I/O Requests]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/dispatching-methods-for-i-o-requests
//! [Creating I/O Queues]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/creating-i-o-queues
//! [Managing I/O Queues]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/managing-i-o-queues
//! [Controlling a General I/O Target's State]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/controlling-a-general-i-o-target-s-state
//! [`EvtIoRead`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfio/nc-wdfio-evt_wdf_io_queue_io_read
//! [`WDF_IO_QUEUE_CONFIG`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfio/ns-wdfio-_wdf_io_queue_config
//! [`WdfIoQueuePurge`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfio/nf-wdfio-wdfioqueuepurge
//! [`WdfRequestSend`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfrequest/nf-wdfrequest-wdfrequestsend
//! [`WdfRequestFormatRequestUsingCurrentType`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfrequest/nf-wdfrequest-wdfrequestformatrequestusingcurrenttype
//! [`WdfFdoInitSetFilter`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdffdo/nf-wdffdo-wdffdoinitsetfilter
//! [`WdfIoTargetOpen`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfiotarget/nf-wdfiotarget-wdfiotargetopen
//! [`EvtIoTargetRemoveComplete`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfiotarget/nc-wdfiotarget-evt_wdf_io_target_remove_complete
//! [`Application`]: app::Application
//! [`DevicePowerHook`]: crate::device::DevicePowerHook
//! [`Rule::RequestCompletedTwice`]: crate::verifier::Rule::RequestCompletedTwice
//! [`Rule::RequestPendingAtTeardown`]: crate::verifier::Rule::RequestPendingAtTeardown
//! [`Rule::PowerStateFailure`]: crate::verifier::Rule::PowerStateFailure
//! [`Rule::RequestDroppedWithoutCompletion`]: crate::verifier::Rule::RequestDroppedWithoutCompletion

pub mod app;
pub mod file;
pub mod queue;
pub mod request;
pub mod target;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::device::{lock, Device, DeviceInit, DevicePowerHook};
use crate::exec::{DriverScope, Timer, TimerConfig};
use crate::object::MachineRef;
use crate::pnp::StopAction;
use crate::status::Status;
use crate::trace::TraceKind;
use crate::verifier::invoke_callback;

pub use app::{
    event_object_name, Access, AppConfig, Application, Handle, IoResult, PendingIo,
    APPLICATION_SESSION,
};
pub use file::{FileConfig, FileObject};
pub use queue::{DispatchType, FoundRequest, Queue, QueueConfig, QueueStatus, StopFlags};
pub use request::{
    CompletionParams, LockedUserBuffer, Request, RequestParameters, RequestType, RequestorMode,
    SendOptions, UserBuffer, METHOD_BUFFERED, METHOD_IN_DIRECT, METHOD_NEITHER, METHOD_OUT_DIRECT,
};
pub use target::{IoTarget, OpenParams, TargetState, TargetStopAction};

use request::ReqCore;

/// The driver name the framework's own work (faults, the I/O manager) is attributed to.
pub(crate) const IO_MANAGER: &str = "I/O manager";

/// What an injected fault does to a request (see [`inject_fault`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoFault {
    /// The request is completed at once with this status, as if the driver below had failed it.
    Fail(Status),
    /// The request is held for this much virtual time, then continues on its way (a slow lower
    /// driver). Cancelling it meanwhile completes it with `STATUS_CANCELLED`.
    Delay(Duration),
}

/// A fault with its filter: which request type it applies to and how many times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoFaultSpec {
    /// The fault.
    pub fault: IoFault,
    /// Only requests of this type (`None`: every type).
    pub only: Option<RequestType>,
    /// How many requests it applies to (`None`: every one until cleared).
    pub times: Option<u32>,
}

impl IoFaultSpec {
    /// Fail every request with `status`.
    pub fn fail(status: Status) -> Self {
        IoFaultSpec {
            fault: IoFault::Fail(status),
            only: None,
            times: None,
        }
    }

    /// Hold every request for `delay` of virtual time.
    pub fn delay(delay: Duration) -> Self {
        IoFaultSpec {
            fault: IoFault::Delay(delay),
            only: None,
            times: None,
        }
    }

    /// Only requests of `kind`.
    #[must_use]
    pub fn only(mut self, kind: RequestType) -> Self {
        self.only = Some(kind);
        self
    }

    /// Only the next `n` matching requests.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }
}

/// Takes the first matching fault of `faults` (counting down `times`).
pub(crate) fn take_fault(faults: &Mutex<Vec<IoFaultSpec>>, kind: RequestType) -> Option<IoFault> {
    let mut f = lock(faults);
    let pos = f.iter().position(|s| s.only.is_none_or(|k| k == kind))?;
    let spec = &mut f[pos];
    let fault = spec.fault;
    if let Some(n) = spec.times.as_mut() {
        *n = n.saturating_sub(1);
        if *n == 0 {
            f.remove(pos);
        }
    }
    Some(fault)
}

/// Applies `fault` to a request entering a layer; `then` continues it after a delay.
pub(crate) fn apply_fault(
    core: &Arc<ReqCore>,
    fault: IoFault,
    where_: &str,
    then: Box<dyn FnOnce(Arc<ReqCore>) + Send>,
) {
    core.trace(&format!("fault injected at {where_}: {fault:?}"));
    match fault {
        IoFault::Fail(s) => request::complete_from_below(core, s, 0),
        IoFault::Delay(d) => {
            let Some(machine) = core.machine.machine() else {
                return;
            };
            let weak = Arc::downgrade(core);
            let timer = {
                let _scope = DriverScope::enter(IO_MANAGER);
                Timer::new(
                    &machine,
                    TimerConfig::one_shot("I/O fault delay"),
                    move |_t| {
                        if let Some(core) = weak.upgrade() {
                            if let Some(next) = request::end_delay(&core) {
                                next(core);
                            }
                        }
                    },
                )
            };
            let Ok(timer) = timer else {
                then(Arc::clone(core));
                return;
            };
            timer.start(d);
            request::begin_delay(core, timer, then);
        }
    }
}

/// Init-time I/O settings stored in the [`DeviceInit`] (moved to the device at
/// `WdfDeviceCreate`).
#[derive(Default)]
pub(crate) struct IoInit {
    pub(crate) file: Option<FileConfig>,
    pub(crate) in_caller_context: Option<IoInCallerContextFn>,
}

/// `EvtIoInCallerContext`: the device and the request, which the driver owns — it must complete
/// it or hand it to the framework with [`Device::enqueue_request`].
pub type IoInCallerContextFn = Arc<dyn Fn(&Device, Request) + Send + Sync>;

/// `WdfDeviceInitSetFileObjectConfig`: the file-object callbacks of the device being built.
pub fn set_file_object_config(init: &mut DeviceInit, config: FileConfig) {
    init.extension_mut::<IoInit>().file = Some(config);
}

/// `WdfDeviceInitSetIoInCallerContextCallback`: `EvtIoInCallerContext` of the device being
/// built ([Managing I/O Queues], [Controlling Device Access in KMDF Drivers]).
///
/// Every read, write and (internal) device-control request entering the device meets this
/// callback **before** any queue — on the thread that sent it (an application's own thread at
/// `PASSIVE_LEVEL`, the right place for a check of the caller's identity or for mapping its
/// buffers), even while the device idles in Dx or its queues are stopped. The driver owns the
/// request there and must either complete it or give it back with
/// [`Device::enqueue_request`] (`WdfDeviceEnqueueRequest`), which routes it like an arriving
/// request. Create, cleanup and close go to the file-object callbacks as before.
///
/// [Managing I/O Queues]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/managing-i-o-queues
/// [Controlling Device Access in KMDF Drivers]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/controlling-device-access-in-kmdf-drivers
pub fn set_io_in_caller_context(
    init: &mut DeviceInit,
    f: impl Fn(&Device, Request) + Send + Sync + 'static,
) {
    init.extension_mut::<IoInit>().in_caller_context = Some(Arc::new(f));
}

/// Per-device I/O state (a device extension).
#[derive(Default)]
pub(crate) struct IoState {
    hooked: AtomicBool,
    pub(crate) removed: AtomicBool,
    pub(crate) queues: Mutex<Vec<Arc<queue::QueueCore>>>,
    pub(crate) default_queue: Mutex<Option<Arc<queue::QueueCore>>>,
    pub(crate) routes: Mutex<HashMap<RequestType, Arc<queue::QueueCore>>>,
    pub(crate) local_target: Mutex<Option<IoTarget>>,
    pub(crate) tracked: Mutex<Vec<Weak<ReqCore>>>,
    pub(crate) faults: Mutex<Vec<IoFaultSpec>>,
}

struct IoHook;

impl DevicePowerHook for IoHook {
    fn started(&self, device: &Device) {
        queue::power_started(device);
    }

    fn stopping(&self, device: &Device, action: StopAction) {
        queue::power_stopping(device, action);
    }

    fn removed(&self, device: &Device) {
        device_removed(device);
    }

    fn busy(&self, device: &Device) -> bool {
        queue::power_managed_busy(device)
    }
}

/// The I/O state of `device`, registering the power hook on first use.
pub(crate) fn io_state(device: &Device) -> Arc<IoState> {
    let st = device.extension(IoState::default);
    if !st.hooked.swap(true, Ordering::SeqCst) {
        device.add_power_hook(Arc::new(IoHook));
    }
    st
}

/// The file-object config of `device`.
pub(crate) fn file_config(device: &Device) -> Option<FileConfig> {
    device
        .get_extension::<IoInit>()
        .and_then(|i| i.file.clone())
}

/// The `EvtIoInCallerContext` of `device`.
fn in_caller_context(device: &Device) -> Option<IoInCallerContextFn> {
    device
        .get_extension::<IoInit>()
        .and_then(|i| i.in_caller_context.clone())
}

/// Makes `fault` apply to requests entering `device` (before its queues and file callbacks):
/// the test stands in for a misbehaving or slow driver at that device.
pub fn inject_fault(device: &Device, fault: IoFaultSpec) {
    lock(&io_state(device).faults).push(fault);
}

/// Removes every fault injected on `device`.
pub fn clear_faults(device: &Device) {
    lock(&io_state(device).faults).clear();
}

impl Device {
    /// `WdfDeviceConfigureRequestDispatching`: requests of `kind` go to `queue` instead of the
    /// default queue.
    ///
    /// Errors: `STATUS_INVALID_PARAMETER` for create/cleanup/close (routed to the file-object
    /// callbacks here), or a queue of another device.
    pub fn configure_request_dispatching(
        &self,
        queue: &Queue,
        kind: RequestType,
    ) -> Result<(), Status> {
        if matches!(
            kind,
            RequestType::Create | RequestType::Cleanup | RequestType::Close
        ) || queue.device().as_ref() != Some(self)
        {
            return Err(Status::INVALID_PARAMETER);
        }
        lock(&io_state(self).routes).insert(kind, Arc::clone(&queue.0));
        Ok(())
    }

    /// `WdfDeviceEnqueueRequest` (≤ `DISPATCH_LEVEL`; from `EvtIoInCallerContext`, see
    /// [`set_io_in_caller_context`]): hands a request the driver owns back to the framework,
    /// which puts it in the queue configured for its type with
    /// [`configure_request_dispatching`](Self::configure_request_dispatching), else in the
    /// default queue; with no queue a filter's framework sends it to the next lower driver.
    /// The request counts as put there by the driver (`EvtIoCanceledOnQueue` applies). It may be
    /// presented — and completed — before this returns.
    ///
    /// Errors (the request is handed back; the driver must complete it):
    /// `STATUS_INVALID_DEVICE_REQUEST` if the driver of this device does not own the request,
    /// it is still cancelable, or a function driver has no queue for it; `STATUS_WDF_BUSY` if
    /// the queue does not accept requests (purged or draining).
    pub fn enqueue_request(&self, request: Request) -> Result<(), (Request, Status)> {
        if !crate::exec::require_max_irql(crate::exec::Irql::Dispatch, "WdfDeviceEnqueueRequest") {
            return Err((request, Status::INVALID_DEVICE_STATE));
        }
        let core = Arc::clone(&request.core);
        let kind = {
            let st = lock(&core.st);
            let mine = request.owns(&st)
                && st
                    .layers
                    .last()
                    .is_some_and(|l| l.device == *self && l.queue.is_none());
            if !mine || request::is_cancelable_st(&st) {
                drop(st);
                return Err((request, Status::INVALID_DEVICE_REQUEST));
            }
            st.params.kind
        };
        let io = io_state(self);
        let q = lock(&io.routes)
            .get(&kind)
            .cloned()
            .or_else(|| lock(&io.default_queue).clone());
        match q {
            Some(q) => {
                if !queue::accepts(&q) {
                    return Err((request, Status::WDF_BUSY));
                }
                request.release();
                lock(&core.st).requeued = true;
                queue::enqueue(&q, &core, true);
                Ok(())
            }
            None if self.is_filter() => {
                request.release();
                forward_down(self, &core);
                Ok(())
            }
            None => Err((request, Status::INVALID_DEVICE_REQUEST)),
        }
    }

    /// `WdfDeviceGetDefaultQueue`.
    pub fn default_queue(&self) -> Option<Queue> {
        lock(&io_state(self).default_queue).clone().map(Queue)
    }

    /// `WdfDeviceGetIoTarget`: the local I/O target — the next lower driver of the stack.
    pub fn io_target(&self) -> IoTarget {
        let st = io_state(self);
        let mut t = lock(&st.local_target);
        t.get_or_insert_with(|| IoTarget::local(self)).clone()
    }

    /// The device's queues, in creation order.
    pub fn queues(&self) -> Vec<Queue> {
        lock(&io_state(self).queues)
            .iter()
            .cloned()
            .map(Queue)
            .collect()
    }
}

/// A request enters `device` (from the I/O manager or a driver above).
pub(crate) fn dispatch_to_device(device: &Device, core: &Arc<ReqCore>) {
    let st = io_state(device);
    let kind = core.kind();
    if let Some(fault) = take_fault(&st.faults, kind) {
        let dev = device.clone();
        apply_fault(
            core,
            fault,
            device.name(),
            Box::new(move |core| dispatch_inner(&dev, &core)),
        );
        return;
    }
    dispatch_inner(device, core);
}

fn dispatch_inner(device: &Device, core: &Arc<ReqCore>) {
    let st = io_state(device);
    request::push_layer(core, device);
    lock(&st.tracked).push(Arc::downgrade(core));
    let kind = core.kind();
    if st.removed.load(Ordering::SeqCst) || device.object().is_deleted() {
        // A deleted control device still runs the cleanup and close of handles opened before
        // (its WDM device object lives until they are closed; see crate::control).
        if device.is_control() && matches!(kind, RequestType::Cleanup | RequestType::Close) {
            file::dispatch(device, core, kind);
        } else {
            request::complete_layer(core, Status::DEVICE_REMOVED, 0);
        }
        return;
    }
    match kind {
        RequestType::Create | RequestType::Cleanup | RequestType::Close => {
            file::dispatch(device, core, kind);
        }
        _ => {
            if let Some(f) = in_caller_context(device) {
                request::give_to_driver(core);
                request::set_taken(core, format!("EvtIoInCallerContext of {}", device.name()));
                let h = request::handle(core);
                request::set_in_caller_context(core, Some(std::thread::current().id()));
                invoke_callback(
                    device.driver().name(),
                    device.name(),
                    "EvtIoInCallerContext",
                    || f(device, h),
                );
                request::set_in_caller_context(core, None);
                return;
            }
            let q = lock(&st.routes)
                .get(&kind)
                .cloned()
                .or_else(|| lock(&st.default_queue).clone());
            match q {
                Some(q) => queue::enqueue(&q, core, false),
                None if device.is_filter() => forward_down(device, core),
                None => request::complete_layer(core, Status::INVALID_DEVICE_REQUEST, 0),
            }
        }
    }
}

/// The framework forwards a request it does not handle to the next lower driver (filters).
pub(crate) fn forward_down(device: &Device, core: &Arc<ReqCore>) {
    request::mark_forget(core);
    let target = device.io_target();
    let opts = SendOptions {
        send_and_forget: true,
        ignore_target_state: true,
        timeout: None,
    };
    if let Err(s) = target::submit(&target, core, opts) {
        request::complete_from_below(core, s, 0);
    }
}

/// The device is torn down: purge queues, close the local target, flag requests still owned.
fn device_removed(device: &Device) {
    let st = io_state(device);
    st.removed.store(true, Ordering::SeqCst);
    let local = lock(&st.local_target).clone();
    if let Some(t) = local {
        t.close_internal(true);
    }
    let queues = lock(&st.queues).clone();
    for q in &queues {
        queue::purge_for_removal(q);
    }
    let tracked: Vec<Arc<ReqCore>> = lock(&st.tracked)
        .drain(..)
        .filter_map(|w| w.upgrade())
        .collect();
    for core in tracked {
        if request::owned_by(&core, device) {
            let Some(machine) = device.machine() else {
                continue;
            };
            machine.verifier().report_for(
                crate::verifier::Rule::RequestPendingAtTeardown,
                device.driver().name(),
                &core.name(),
                &format!(
                    "{} was still owned by the driver when {} was torn down; every request \
                     must be completed (or cancelled) before removal finishes — the framework \
                     completes it with STATUS_CANCELLED",
                    core.name(),
                    device.name()
                ),
            );
            request::complete_layer(&core, Status::CANCELLED, 0);
        }
    }
}

/// Records an I/O event in the trace of the machine behind `m`.
pub(crate) fn trace(m: &MachineRef, driver: Option<&str>, object: &str, text: &str) {
    if let Some(core) = m.core() {
        core.trace
            .record_for(TraceKind::Request, driver, object, text);
    }
}

/// Wakes every simulator wait of the machine behind `m` to re-check its condition. Must not be
/// called while holding an I/O-layer mutex (waits read those under the dispatcher lock).
pub(crate) fn wake(m: &MachineRef) {
    if let Some(core) = m.core() {
        let mut st = core.sched.lock();
        core.sched.wake_all(&mut st);
    }
}
