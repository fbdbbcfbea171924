//! Requests (`WDFREQUEST`): parameters, buffers, completion, cancellation, forwarding.
//!
//! # Ownership
//!
//! A [`Request`] is a handle. The framework gives the driver one when it presents a request
//! (`EvtIoRead`, …), when it asks it to stop one (`EvtIoStop`), cancel one (`EvtRequestCancel`)
//! or hands one back (a completion routine). Completing consumes the handle. A handle is valid
//! while its driver owns the request at the stack depth the handle was issued at; completing
//! through a handle that is not — the request was already completed, or passed on — is a
//! [`Rule::RequestCompletedTwice`] violation
//! ([`WdfRequestComplete`]). Reading a buffer of a completed request is
//! [`Rule::DeletedObjectUsed`] ("after completion the
//! handle is invalid", [`WdfRequestComplete`]).
//!
//! Dropping the last handle of the layer that owns the request while it still owns it — not
//! completed, forwarded, sent or requeued, and not cancelable (a cancelable request comes back
//! through its cancel routine) — is a [`Rule::RequestDroppedWithoutCompletion`]
//! violation naming the request (id, `IRP_MJ_…`, IOCTL code) and where the driver took it (the
//! callback and queue, e.g. `taken in EvtIoDeviceControl from queue 'WDFQUEUE #7'`). A second
//! handle the framework gave the driver (`EvtIoStop`, `EvtIoResume`, a cancel routine) may be
//! dropped freely while the first one is kept.
//!
//! # Buffers ([buffer descriptions], [unsafe user buffers])
//!
//! Reads and writes use buffered I/O (a device's I/O type is not modelled): a read's output is a
//! system buffer whose first `Information` bytes the I/O manager copies to the caller at
//! completion; a write's input is a copy of the caller's data. IOCTLs follow the transfer method
//! in bits 1–0 of the control code:
//!
//! * `METHOD_BUFFERED`: one system buffer of max(input, output) length, the input copied in.
//!   [`input_buffer`](Request::input_buffer) and [`with_output_buffer`](Request::with_output_buffer)
//!   are views of that **same** memory: the output view starts with the input, and once the
//!   driver wrote the output, the input is gone. At completion the I/O manager copies
//!   `Information` bytes — never more than the output length — to the caller's output buffer,
//!   unless the status is an error (`NT_ERROR`; a warning such as `STATUS_BUFFER_OVERFLOW`
//!   still copies).
//! * `METHOD_IN_DIRECT` / `METHOD_OUT_DIRECT`: the input is a system buffer; the output view is
//!   the caller's own memory (the MDL's pages, modelled as the very buffer the application
//!   passed): the driver's writes land there at once — visible to the caller before
//!   completion and past `Information` — and nothing is copied back. For IN_DIRECT the driver
//!   reads that buffer as a second input (it starts with the caller's bytes). What is not
//!   modelled: page granularity, the MDL object itself (`WdfRequestRetrieveOutputWdmMdl`), and
//!   the read-only access of IN_DIRECT pages (a driver may write them here).
//! * `METHOD_NEITHER`: the buffers are the caller's user-mode addresses. For a user-mode
//!   `IRP_MJ_DEVICE_CONTROL` the framework gives the driver no buffer through
//!   `Retrieve…Buffer` (`STATUS_INVALID_DEVICE_REQUEST`); the driver takes them in
//!   `EvtIoInCallerContext` ([`set_io_in_caller_context`](super::set_io_in_caller_context)) with
//!   [`retrieve_unsafe_user_input_buffer`](Request::retrieve_unsafe_user_input_buffer) /
//!   [`…_output_buffer`](Request::retrieve_unsafe_user_output_buffer) and must probe and lock
//!   them there ([`probe_and_lock_user_buffer_for_read`](Request::probe_and_lock_user_buffer_for_read)
//!   / [`…_for_write`](Request::probe_and_lock_user_buffer_for_write)), which gives a
//!   [`LockedUserBuffer`] usable in any context until the request completes. Outside that
//!   callback (or from another thread) the unsafe retrieval and the probe fail with
//!   `STATUS_INVALID_DEVICE_REQUEST` — KMDF makes that check under its verifier, which the
//!   simulator always runs. Internal IOCTLs and kernel-mode requestors pass kernel addresses:
//!   their `METHOD_NEITHER` buffers are given through `Retrieve…Buffer` as the sender passed
//!   them (and the unsafe calls refuse internal IOCTLs).
//!
//! Requests drivers build ([`format_for_ioctl`](Request::format_for_ioctl),
//! [`format_for_internal_ioctl`](Request::format_for_internal_ioctl), the synchronous senders
//! of [`IoTarget`]) get the same buffers for their method, as `FxIoTarget::FormatIoctlRequest`
//! builds them for internal and external IOCTLs alike: `METHOD_BUFFERED` one system buffer with
//! `Information` bytes copied back into the creator's output memory, the direct methods the
//! creator's output memory itself, `METHOD_NEITHER` the creator's buffers as given. The
//! creator's [`output`](Request::output) is its own output memory.
//!
//! Asking for a buffer shorter than a minimum, or a zero-length one, fails with
//! `STATUS_BUFFER_TOO_SMALL`; asking for a buffer the request type does not have fails with
//! `STATUS_INVALID_DEVICE_REQUEST` (`WdfRequestRetrieveInputBuffer`/`OutputBuffer`). A view
//! opened inside another view of the same request on the same thread fails with
//! `STATUS_INVALID_DEVICE_STATE` instead of aliasing (or deadlocking on) the buffer.
//!
//! # Cancellation
//!
//! Based on [Canceling I/O Requests], [`WdfRequestMarkCancelableEx`] and [`EvtRequestCancel`].
//!
//! [`mark_cancelable`](Request::mark_cancelable) is `WdfRequestMarkCancelableEx`: it returns
//! `STATUS_CANCELLED` without calling the routine if the request was already cancelled, and
//! `STATUS_INVALID_DEVICE_REQUEST` if the driver does not own it or it is already cancelable.
//! Cancelling an undelivered request completes it with `STATUS_CANCELLED` (or calls the queue's
//! `EvtIoCanceledOnQueue`); a delivered one runs its cancel routine (at the canceller's IRQL,
//! ≤ `DISPATCH_LEVEL`) or only sets [`is_canceled`](Request::is_canceled); a request queued in a
//! stopped target or held by an injected delay is completed with `STATUS_CANCELLED`.
//!
//! # Forwarding
//!
//! Based on [`WdfRequestSend`], [`WDF_REQUEST_SEND_OPTIONS_FLAGS`] and
//! [`WdfRequestFormatRequestUsingCurrentType`].
//!
//! [`send`](Request::send) passes the request to an [`IoTarget`]. With a completion routine
//! ([`set_completion_routine`](Request::set_completion_routine)) the driver gets it back when the
//! lower driver completes it and must complete it itself. Without one, the framework completes
//! it on the driver's behalf when the lower driver does (the pass-through case). With
//! [`SendOptions::send_and_forget`] the driver gives the request up at once: it gets no
//! `EvtIoStop` and must not complete it (not allowed for driver-created requests or remote
//! targets: `STATUS_INVALID_PARAMETER`). A send that does not reach the target returns the
//! failure and leaves the request with the driver, who completes it (`WdfRequestSend` returning
//! FALSE). [`send_synchronously`](Request::send_synchronously) (PASSIVE only) waits, with an
//! optional timeout on the virtual clock (on expiry the request is cancelled and the result is
//! `STATUS_IO_TIMEOUT`).
//!
//! Driver-created requests ([`Request::create`], `WdfRequestCreate`) are formatted with the
//! `format_for_*` methods, sent, returned to the creator's completion routine, and may be
//! [`reuse`](Request::reuse)d (`WdfRequestReuse`) or [`delete`](Request::delete)d.
//!
//! [buffer descriptions]: https://learn.microsoft.com/en-us/windows-hardware/drivers/kernel/buffer-descriptions-for-i-o-control-codes
//! [unsafe user buffers]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfrequest/nf-wdfrequest-wdfrequestretrieveunsafeuserinputbuffer
//! [`WdfRequestComplete`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfrequest/nf-wdfrequest-wdfrequestcomplete
//! [`WdfRequestMarkCancelableEx`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfrequest/nf-wdfrequest-wdfrequestmarkcancelableex
//! [`EvtRequestCancel`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfrequest/nc-wdfrequest-evt_wdf_request_cancel
//! [`WdfRequestSend`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfrequest/nf-wdfrequest-wdfrequestsend
//! [`WDF_REQUEST_SEND_OPTIONS_FLAGS`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfrequest/ne-wdfrequest-_wdf_request_send_options_flags
//! [`WdfRequestFormatRequestUsingCurrentType`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfrequest/nf-wdfrequest-wdfrequestformatrequestusingcurrenttype
//! [Canceling I/O Requests]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/canceling-i-o-requests
//! [`Rule::RequestCompletedTwice`]: crate::verifier::Rule::RequestCompletedTwice
//! [`Rule::DeletedObjectUsed`]: crate::verifier::Rule::DeletedObjectUsed
//! [`Rule::RequestDroppedWithoutCompletion`]: crate::verifier::Rule::RequestDroppedWithoutCompletion

use core::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::thread::ThreadId;
use std::time::Duration;

use super::file::FileObject;
use super::queue::{self, Queue, QueueCore};
use super::target::{self, IoTarget, TargetCore};
use super::{trace, wake, IO_MANAGER};
use crate::device::{lock, Device};
use crate::exec::{require_max_irql, DriverScope, Irql, Timer, TimerConfig};
use crate::machine::Machine;
use crate::object::{MachineRef, ObjectAttributes, WdfObject};
use crate::status::Status;
use crate::verifier::{invoke_callback, Rule};

/// `WDF_REQUEST_TYPE` (the major function).
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

pub use crate::control::RequestorMode;

/// `WDF_REQUEST_PARAMETERS` (`WdfRequestGetParameters`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestParameters {
    /// The request type.
    pub kind: RequestType,
    /// The I/O control code (IOCTLs), else 0.
    pub ioctl_code: u32,
    /// Bytes in the input buffer (IOCTLs, writes).
    pub input_length: usize,
    /// Bytes in the output buffer (IOCTLs, reads).
    pub output_length: usize,
    /// The byte offset of a read or write.
    pub offset: u64,
}

impl RequestParameters {
    /// The length of the system buffer the I/O manager (or the framework, for a request a driver
    /// formats) allocates from pool for these parameters: `max(input, output)` for a
    /// `METHOD_BUFFERED` IOCTL, the output for a buffered read, the input for the system copy of
    /// a write or a direct/neither IOCTL's input; 0 otherwise.
    pub(crate) fn system_buffer_length(&self) -> usize {
        match self.kind {
            RequestType::Read => self.output_length,
            RequestType::Write => self.input_length,
            RequestType::DeviceControl | RequestType::InternalDeviceControl => {
                if self.ioctl_code & 3 == METHOD_BUFFERED {
                    self.input_length.max(self.output_length)
                } else {
                    self.input_length
                }
            }
            RequestType::Create | RequestType::Cleanup | RequestType::Close => 0,
        }
    }

    /// `STATUS_INSUFFICIENT_RESOURCES` when the system buffer is larger than the pool grants
    /// ([`MAX_ALLOCATION`](crate::pool::MAX_ALLOCATION)): the I/O manager fails such a request
    /// before any driver sees it (its pool allocation fails), and so does the framework when a
    /// driver formats one. Never an abort, whatever length the sender chose.
    pub(crate) fn check_system_buffer(&self) -> Result<(), Status> {
        if self.system_buffer_length() > crate::pool::MAX_ALLOCATION {
            Err(Status::INSUFFICIENT_RESOURCES)
        } else {
            Ok(())
        }
    }

    fn new(kind: RequestType) -> Self {
        RequestParameters {
            kind,
            ioctl_code: 0,
            input_length: 0,
            output_length: 0,
            offset: 0,
        }
    }
}

/// `METHOD_BUFFERED` (bits 1–0 of an I/O control code).
pub const METHOD_BUFFERED: u32 = 0;
/// `METHOD_IN_DIRECT`.
pub const METHOD_IN_DIRECT: u32 = 1;
/// `METHOD_OUT_DIRECT`.
pub const METHOD_OUT_DIRECT: u32 = 2;
/// `METHOD_NEITHER`.
pub const METHOD_NEITHER: u32 = 3;

/// One block of memory a request's data lives in: a system buffer the framework allocated, or
/// the originator's own memory (an application's buffer, reached through an MDL or its
/// user-mode address; a driver's memory for a request it created).
#[derive(Clone, Default)]
pub(crate) struct Mem(Arc<Mutex<Vec<u8>>>);

impl Mem {
    pub(crate) fn new(bytes: Vec<u8>) -> Mem {
        Mem(Arc::new(Mutex::new(bytes)))
    }

    pub(crate) fn snapshot(&self) -> Vec<u8> {
        lock(&self.0).clone()
    }

    /// A copy of the first `len` bytes (fewer if the memory is shorter): what completion hands
    /// the originator, without copying the rest of a large caller buffer.
    fn prefix(&self, len: usize) -> Vec<u8> {
        let memory = lock(&self.0);
        memory[..len.min(memory.len())].to_vec()
    }

    fn same(&self, other: &Mem) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Where a request's buffers are, decided when it is built (see the module docs, "Buffers").
#[derive(Default)]
struct Buffers {
    /// What `WdfRequestRetrieveInputBuffer` describes (`None`: the request has none the
    /// framework may hand out — a user-mode `METHOD_NEITHER` IOCTL).
    input: Option<Mem>,
    /// What `WdfRequestRetrieveOutputBuffer` describes (as `input`).
    output: Option<Mem>,
    /// The user-mode input and output of a `METHOD_NEITHER` IOCTL
    /// (`WdfRequestRetrieveUnsafeUser…Buffer`).
    user: Option<(Mem, Mem)>,
    /// The originator's output memory.
    caller_output: Mem,
    /// Whether completion copies `Information` bytes of `output` into `caller_output` (a
    /// system buffer: buffered reads and `METHOD_BUFFERED` IOCTLs).
    copy_back: bool,
}

impl Buffers {
    /// The buffers of a request with `params` whose originator passes `input` and
    /// `caller_output` (Microsoft's *Buffer Descriptions for I/O Control Codes*;
    /// `FxIoTarget::FormatIoctlRequest` for the requests drivers build, which follows the same
    /// rules).
    fn new(
        params: &RequestParameters,
        input: Vec<u8>,
        caller_output: Mem,
        mode: RequestorMode,
    ) -> Buffers {
        let mut b = Buffers {
            caller_output: caller_output.clone(),
            ..Buffers::default()
        };
        match params.kind {
            RequestType::Read => {
                b.output = Some(Mem::new(vec![0; params.output_length]));
                b.copy_back = true;
            }
            RequestType::Write => b.input = Some(Mem::new(input)),
            RequestType::DeviceControl | RequestType::InternalDeviceControl => {
                match params.ioctl_code & 3 {
                    METHOD_BUFFERED => {
                        let mut system = input;
                        system.resize(params.input_length.max(params.output_length), 0);
                        let system = Mem::new(system);
                        b.input = Some(system.clone());
                        b.output = Some(system);
                        b.copy_back = true;
                    }
                    METHOD_IN_DIRECT | METHOD_OUT_DIRECT => {
                        b.input = Some(Mem::new(input));
                        b.output = Some(caller_output);
                    }
                    _ => {
                        let user = Mem::new(input);
                        // KMDF hands METHOD_NEITHER buffers out only when they are kernel
                        // addresses: internal IOCTLs and kernel-mode requestors
                        // (FxRequest::GetDeviceControlOutputMemoryObject).
                        if mode == RequestorMode::Kernel
                            || params.kind == RequestType::InternalDeviceControl
                        {
                            b.input = Some(user.clone());
                            b.output = Some(caller_output.clone());
                        }
                        b.user = Some((user, caller_output));
                    }
                }
            }
            RequestType::Create | RequestType::Cleanup | RequestType::Close => {}
        }
        b
    }

    /// The I/O manager's (or the framework's, for a driver-created request) copy of a system
    /// buffer back into the originator's output at completion: `Information` bytes, never more
    /// than the output length, unless the status is an error (`NT_ERROR`; warnings such as
    /// `STATUS_BUFFER_OVERFLOW` still copy).
    fn copy_back(&self, status: Status, information: usize, output_length: usize) {
        let Some(system) = self.output.as_ref().filter(|_| self.copy_back) else {
            return;
        };
        if (status.as_u32() >> 30) == 3 || system.same(&self.caller_output) {
            return;
        }
        let src = lock(&system.0);
        let mut dst = lock(&self.caller_output.0);
        let n = information.min(output_length).min(src.len()).min(dst.len());
        dst[..n].copy_from_slice(&src[..n]);
    }
}

/// An open buffer view of a request on one thread; closes it when dropped.
struct ViewGuard<'a>(&'a Mutex<Vec<ThreadId>>, ThreadId);

impl Drop for ViewGuard<'_> {
    fn drop(&mut self) {
        lock(self.0).retain(|t| *t != self.1);
    }
}

/// A user-mode buffer of a `METHOD_NEITHER` request, as `WdfRequestRetrieveUnsafeUserInputBuffer`
/// and `…OutputBuffer` return it: an address in the caller's process, which the driver may use
/// only after probing and locking it
/// ([`probe_and_lock_user_buffer_for_read`](Request::probe_and_lock_user_buffer_for_read) /
/// [`…_for_write`](Request::probe_and_lock_user_buffer_for_write)) in `EvtIoInCallerContext`.
#[derive(Clone)]
pub struct UserBuffer {
    mem: Mem,
    len: usize,
    request: u64,
}

impl fmt::Debug for UserBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserBuffer")
            .field("request", &self.request)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl UserBuffer {
    /// The buffer's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The `WDFMEMORY` `WdfRequestProbeAndLockUserBufferFor{Read,Write}` creates: the caller's pages,
/// locked and mapped, usable in any thread context until the request completes (its parent is
/// the request). Using it after completion is [`Rule::DeletedObjectUsed`].
pub struct LockedUserBuffer {
    mem: Mem,
    len: usize,
    writable: bool,
    core: Weak<ReqCore>,
}

impl fmt::Debug for LockedUserBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedUserBuffer")
            .field("len", &self.len)
            .field("writable", &self.writable)
            .finish_non_exhaustive()
    }
}

impl LockedUserBuffer {
    fn check(&self, routine: &str) -> Result<(), Status> {
        let Some(core) = self.core.upgrade() else {
            return Err(Status::INVALID_DEVICE_STATE);
        };
        if matches!(lock(&core.st).loc, Loc::Completed | Loc::Creator) {
            report(
                &core,
                Rule::DeletedObjectUsed,
                &format!("{routine} on a locked user buffer of a request that was completed"),
            );
            return Err(Status::INVALID_DEVICE_STATE);
        }
        Ok(())
    }

    /// The buffer's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `WdfMemoryCopyToBuffer`: a copy of the caller's bytes.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` after the request completed.
    pub fn read(&self) -> Result<Vec<u8>, Status> {
        self.check("WdfMemoryCopyToBuffer")?;
        let m = lock(&self.mem.0);
        Ok(m[..self.len.min(m.len())].to_vec())
    }

    /// `WdfMemoryGetBuffer` for writing: `f` writes the caller's memory directly.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_REQUEST` for a buffer locked for reading only;
    /// `STATUS_INVALID_DEVICE_STATE` after the request completed.
    pub fn with_mut<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, Status> {
        self.check("WdfMemoryGetBuffer")?;
        if !self.writable {
            return Err(Status::INVALID_DEVICE_REQUEST);
        }
        let mut m = lock(&self.mem.0);
        let n = self.len.min(m.len());
        Ok(f(&mut m[..n]))
    }
}

/// `WDF_REQUEST_COMPLETION_PARAMS`: what the lower driver completed the request with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletionParams {
    /// `IoStatus.Status`.
    pub status: Status,
    /// `IoStatus.Information` (bytes transferred).
    pub information: usize,
}

/// `WDF_REQUEST_SEND_OPTIONS` (the flags the simulator models; `SYNCHRONOUS` is
/// [`Request::send_synchronously`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// `WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET`.
    pub send_and_forget: bool,
    /// `WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE`: send even if the target is stopped.
    pub ignore_target_state: bool,
    /// `WDF_REQUEST_SEND_OPTION_TIMEOUT`: cancel the request after this much virtual time.
    pub timeout: Option<Duration>,
}

/// `EVT_WDF_REQUEST_COMPLETION_ROUTINE`.
pub type CompletionFn = Box<dyn FnOnce(Request, CompletionParams) + Send>;
/// `EVT_WDF_REQUEST_CANCEL`.
pub type CancelFn = Box<dyn FnOnce(Request) + Send>;
/// The I/O manager's end of a request: status, information, output buffer.
pub(crate) type DoneFn = Box<dyn FnOnce(Status, usize, Vec<u8>) + Send>;
/// What happens to a delayed request when its delay ends.
pub(crate) type ThenFn = Box<dyn FnOnce(Arc<ReqCore>) + Send>;

/// Where a request is.
pub(crate) enum Loc {
    /// In transit inside the framework.
    Framework,
    /// Waiting in a queue.
    Queued(Weak<QueueCore>),
    /// Owned by the driver of the deepest layer.
    Driver,
    /// Queued inside a stopped I/O target.
    InTarget(Weak<TargetCore>),
    /// Held by an injected delay.
    Delayed,
    /// A driver-created request back with (or not yet sent by) its creator.
    Creator,
    /// Completed to its originator.
    Completed,
}

/// One device the request visited.
pub(crate) struct Layer {
    pub(crate) device: Device,
    pub(crate) queue: Option<Arc<QueueCore>>,
    routine: Option<CompletionFn>,
    forget: bool,
    timer: Option<Timer>,
    /// Where this layer's driver last got the request (the callback, and the queue it came
    /// from), for the verifier's reports.
    taken: Option<String>,
    /// Live handles issued at this layer's depth (see [`Request`]'s `Drop`).
    handles: usize,
    /// Identifies this visit (a layer popped at completion and pushed again by a re-send is a
    /// new visit: handles of the old one do not count for it).
    visit: u64,
}

pub(crate) enum Origin {
    Io(Option<DoneFn>),
    Driver {
        device: Device,
        routine: Option<CompletionFn>,
        object: WdfObject,
        timer: Option<Timer>,
    },
}

pub(crate) struct ReqSt {
    pub(crate) params: RequestParameters,
    buffers: Buffers,
    /// The thread running `EvtIoInCallerContext` with this request, while it runs and the
    /// driver still owns the request there (the only place the unsafe user buffers of a
    /// `METHOD_NEITHER` request may be retrieved).
    in_caller_context: Option<ThreadId>,
    status: Status,
    information: usize,
    mode: RequestorMode,
    pub(crate) file: Option<FileObject>,
    cancelled: bool,
    cancel_routine: Option<CancelFn>,
    next_routine: Option<CompletionFn>,
    origin: Origin,
    pub(crate) layers: Vec<Layer>,
    pub(crate) loc: Loc,
    delay: Option<(Timer, ThenFn)>,
    pub(crate) requeued: bool,
}

/// The shared state of one request.
pub(crate) struct ReqCore {
    pub(crate) id: u64,
    pub(crate) machine: MachineRef,
    pub(crate) st: Mutex<ReqSt>,
    /// Threads with a buffer view of this request open (see [`ReqCore::view`]).
    views: Mutex<Vec<ThreadId>>,
}

impl ReqCore {
    /// A request from the I/O manager (an application or a kernel-mode open of a target).
    pub(crate) fn new_io(
        machine: &Machine,
        params: RequestParameters,
        input: Vec<u8>,
        mode: RequestorMode,
        file: Option<FileObject>,
        caller_output: Mem,
        done: DoneFn,
    ) -> Arc<ReqCore> {
        let buffers = Buffers::new(&params, input, caller_output, mode);
        Arc::new(ReqCore {
            id: crate::exec::context::new_uid(),
            machine: MachineRef::new(machine),
            views: Mutex::new(Vec::new()),
            st: Mutex::new(ReqSt {
                params,
                buffers,
                in_caller_context: None,
                status: Status::PENDING,
                information: 0,
                mode,
                file,
                cancelled: false,
                cancel_routine: None,
                next_routine: None,
                origin: Origin::Io(Some(done)),
                layers: Vec::new(),
                loc: Loc::Framework,
                delay: None,
                requeued: false,
            }),
        })
    }

    pub(crate) fn kind(&self) -> RequestType {
        lock(&self.st).params.kind
    }

    pub(crate) fn name(&self) -> String {
        format!("WDFREQUEST #{}", self.id)
    }

    pub(crate) fn trace(&self, text: &str) {
        trace(&self.machine, None, &self.name(), text);
    }

    pub(crate) fn file(&self) -> Option<FileObject> {
        lock(&self.st).file.clone()
    }
}

/// A request handle (`WDFREQUEST`). See the [module docs](self).
///
/// Dropping the last handle a driver holds on a request it still owns — neither completed,
/// forwarded, sent nor requeued, and not marked cancelable — is a
/// [`Rule::RequestDroppedWithoutCompletion`] violation: the
/// request can then never complete, and the removal of its device would wait for it forever.
pub struct Request {
    pub(crate) core: Arc<ReqCore>,
    depth: usize,
    /// The visit of the layer at `depth` this handle was issued for (0 at depth 0).
    visit: u64,
    /// Given back to the framework ([`Request::release`]): the drop checks nothing.
    released: bool,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.core.id)
            .field("parameters", &self.parameters())
            .finish_non_exhaustive()
    }
}

/// A handle at `depth`, counted in that layer's live handles (caller holds the state lock).
fn issue(core: &Arc<ReqCore>, st: &mut ReqSt, depth: usize) -> Request {
    let mut visit = 0;
    if let Some(l) = depth.checked_sub(1).and_then(|i| st.layers.get_mut(i)) {
        l.handles += 1;
        visit = l.visit;
    }
    Request {
        core: Arc::clone(core),
        depth,
        visit,
        released: false,
    }
}

/// A fresh handle at the request's current depth.
pub(crate) fn handle(core: &Arc<ReqCore>) -> Request {
    let mut st = lock(&core.st);
    let depth = st.layers.len();
    issue(core, &mut st, depth)
}

/// A handle at the depth of `device`'s layer (for `EvtIoStop` on a request sent further down).
pub(crate) fn handle_at(core: &Arc<ReqCore>, device: &Device) -> Option<Request> {
    let mut st = lock(&core.st);
    let pos = st.layers.iter().rposition(|l| l.device == *device)?;
    Some(issue(core, &mut st, pos + 1))
}

/// Records where the deepest layer's driver got the request (`EvtIoRead from queue 'q'`, …).
pub(crate) fn set_taken(core: &Arc<ReqCore>, taken: String) {
    if let Some(l) = lock(&core.st).layers.last_mut() {
        l.taken = Some(taken);
    }
}

/// `IRP_MJ_…` of a request type.
fn major_function(kind: RequestType) -> &'static str {
    match kind {
        RequestType::Create => "IRP_MJ_CREATE",
        RequestType::Cleanup => "IRP_MJ_CLEANUP",
        RequestType::Close => "IRP_MJ_CLOSE",
        RequestType::Read => "IRP_MJ_READ",
        RequestType::Write => "IRP_MJ_WRITE",
        RequestType::DeviceControl => "IRP_MJ_DEVICE_CONTROL",
        RequestType::InternalDeviceControl => "IRP_MJ_INTERNAL_DEVICE_CONTROL",
    }
}

/// `WDFREQUEST #12 (IRP_MJ_DEVICE_CONTROL, IOCTL 0x00220004) taken in EvtIoDeviceControl from
/// queue 'q'`: the request, its major function (and control code) and where the driver of the
/// deepest layer got it — for the verifier's reports.
pub(crate) fn describe(core: &ReqCore) -> String {
    let st = lock(&core.st);
    describe_st(core, &st, st.layers.len())
}

fn describe_st(req: &ReqCore, st: &ReqSt, depth: usize) -> String {
    let ioctl = if matches!(
        st.params.kind,
        RequestType::DeviceControl | RequestType::InternalDeviceControl
    ) {
        format!(", IOCTL {:#010x}", st.params.ioctl_code)
    } else {
        String::new()
    };
    let place = match depth.checked_sub(1).and_then(|i| st.layers.get(i)) {
        Some(Layer {
            taken: Some(taken), ..
        }) => format!(" taken in {taken}"),
        Some(l) => format!(" owned by {}", l.device.name()),
        None => String::new(),
    };
    format!(
        "{} ({}{ioctl}){place}",
        req.name(),
        major_function(st.params.kind)
    )
}

/// True while a cancel routine is set.
pub(crate) fn is_cancelable(core: &Arc<ReqCore>) -> bool {
    lock(&core.st).cancel_routine.is_some()
}

/// True while a cancel routine is set (caller holds the state lock).
pub(crate) fn is_cancelable_st(st: &ReqSt) -> bool {
    st.cancel_routine.is_some()
}

/// The request enters (`Some`, the current thread) or leaves (`None`) `EvtIoInCallerContext`.
pub(crate) fn set_in_caller_context(core: &Arc<ReqCore>, thread: Option<ThreadId>) {
    lock(&core.st).in_caller_context = thread;
}

/// The framework hands the request to the deepest layer's driver (file-object callbacks).
pub(crate) fn give_to_driver(core: &Arc<ReqCore>) {
    lock(&core.st).loc = Loc::Driver;
}

/// Replaces the I/O manager's completion of a request built with [`ReqCore::new_io`].
pub(crate) fn set_done(core: &Arc<ReqCore>, done: DoneFn) {
    if let Origin::Io(d) = &mut lock(&core.st).origin {
        *d = Some(done);
    }
}

/// The request enters `device`.
pub(crate) fn push_layer(core: &Arc<ReqCore>, device: &Device) {
    let mut st = lock(&core.st);
    st.layers.push(Layer {
        device: device.clone(),
        queue: None,
        routine: None,
        forget: false,
        timer: None,
        taken: None,
        handles: 0,
        visit: crate::exec::context::new_uid(),
    });
    st.loc = Loc::Framework;
    // A layer below is not in the caller's context of the layer that passed the request on.
    st.in_caller_context = None;
}

/// The deepest layer completes the request (driver or framework on its behalf).
pub(crate) fn complete_layer(core: &Arc<ReqCore>, status: Status, information: usize) {
    let (layer, device, cancel_routine) = {
        let mut st = lock(&core.st);
        st.status = status;
        st.information = information;
        st.in_caller_context = None;
        // Dropped outside the lock, as every driver closure: it may own a handle of this very
        // request, whose drop takes the lock.
        let cancel_routine = st.cancel_routine.take();
        let l = st.layers.pop();
        let d = l.as_ref().map(|l| l.device.name().to_owned());
        (l, d, cancel_routine)
    };
    drop(cancel_routine);
    if let Some(d) = device {
        trace(
            &core.machine,
            None,
            &core.name(),
            &format!("completed by {d} with {status}, information {information}"),
        );
    }
    if let Some(mut l) = layer {
        drop(l.timer.take());
        if let Some(q) = l.queue.take() {
            queue::request_left(&q, core);
        }
        super::file::layer_completed(&l.device, core, status);
    }
    propagate(core);
}

/// Something below the deepest layer (bus driver, fault, stopped target) completes it.
pub(crate) fn complete_from_below(core: &Arc<ReqCore>, status: Status, information: usize) {
    {
        let mut st = lock(&core.st);
        st.status = status;
        st.information = information;
    }
    propagate(core);
}

/// Unwinds the completion up the layers to the origin.
fn propagate(core: &Arc<ReqCore>) {
    propagate_inner(core);
    wake(&core.machine);
}

fn propagate_inner(core: &Arc<ReqCore>) {
    loop {
        let mut st = lock(&core.st);
        let Some(up) = st.layers.last_mut() else {
            break;
        };
        if !up.forget {
            if let Some(r) = up.routine.take() {
                let timer = up.timer.take();
                let driver = up.device.driver().name().to_owned();
                st.loc = Loc::Driver;
                let depth = st.layers.len();
                let params = CompletionParams {
                    status: st.status,
                    information: st.information,
                };
                if let Some(l) = st.layers.last_mut() {
                    l.taken = Some(format!("the CompletionRoutine of {driver}"));
                }
                let handle = issue(core, &mut st, depth);
                drop(st);
                drop(timer);
                invoke_callback(&driver, &core.name(), "CompletionRoutine", || {
                    r(handle, params);
                });
                return;
            }
        }
        let mut l = st.layers.pop().expect("a layer is present");
        let status = st.status;
        drop(st);
        drop(l.timer.take());
        if let Some(q) = l.queue.take() {
            queue::request_left(&q, core);
        }
        // A layer given up (send-and-forget, the framework's own pass-down of a create).
        super::file::layer_completed(&l.device, core, status);
    }
    let mut st = lock(&core.st);
    let params = CompletionParams {
        status: st.status,
        information: st.information,
    };
    st.in_caller_context = None;
    st.buffers
        .copy_back(params.status, params.information, st.params.output_length);
    match &mut st.origin {
        Origin::Io(done) => {
            let done = done.take();
            st.loc = Loc::Completed;
            let out = st.buffers.caller_output.prefix(params.information);
            drop(st);
            core.trace(&format!("completed with {}", params.status));
            if let Some(d) = done {
                d(params.status, params.information, out);
            }
        }
        Origin::Driver {
            device,
            routine,
            timer,
            ..
        } => {
            let r = routine.take();
            let timer = timer.take();
            let driver = device.driver().name().to_owned();
            st.loc = Loc::Creator;
            drop(st);
            drop(timer);
            core.trace(&format!("returned to its creator with {}", params.status));
            if let Some(r) = r {
                let handle = Request {
                    core: Arc::clone(core),
                    depth: 0,
                    visit: 0,
                    released: false,
                };
                invoke_callback(&driver, &core.name(), "CompletionRoutine", || {
                    r(handle, params);
                });
            }
        }
    }
}

/// The framework gives up the deepest layer's ownership (send-and-forget, filter auto-forward).
pub(crate) fn mark_forget(core: &Arc<ReqCore>) {
    let q = {
        let mut st = lock(&core.st);
        st.layers.last_mut().and_then(|l| {
            l.forget = true;
            l.queue.take()
        })
    };
    if let Some(q) = q {
        queue::request_left(&q, core);
    }
}

/// True if the driver of `device` owns the request now.
pub(crate) fn owned_by(core: &Arc<ReqCore>, device: &Device) -> bool {
    let st = lock(&core.st);
    matches!(st.loc, Loc::Driver) && st.layers.last().is_some_and(|l| l.device == *device)
}

pub(crate) fn begin_delay(core: &Arc<ReqCore>, timer: Timer, then: ThenFn) {
    let mut st = lock(&core.st);
    st.loc = Loc::Delayed;
    st.delay = Some((timer, then));
}

/// Ends a delay (timer fired or cancel): the continuation, if the request was still delayed.
pub(crate) fn end_delay(core: &Arc<ReqCore>) -> Option<ThenFn> {
    let taken = {
        let mut st = lock(&core.st);
        if !matches!(st.loc, Loc::Delayed) {
            return None;
        }
        st.loc = Loc::Framework;
        st.delay.take()
    };
    let (timer, then) = taken?;
    drop(timer);
    Some(then)
}

/// Cancels the request wherever it is (`IoCancelIrp`). True if something was cancelled.
pub(crate) fn cancel(core: &Arc<ReqCore>) -> bool {
    lock(&core.st).cancelled = true;
    core.trace("cancel requested");
    for _ in 0..1000 {
        enum At {
            Queue(Option<Arc<QueueCore>>),
            Driver,
            Target(Option<Arc<TargetCore>>),
            Delayed,
            Other,
        }
        let at = match &lock(&core.st).loc {
            Loc::Queued(w) => At::Queue(w.upgrade()),
            Loc::Driver => At::Driver,
            Loc::InTarget(w) => At::Target(w.upgrade()),
            Loc::Delayed => At::Delayed,
            _ => At::Other,
        };
        match at {
            At::Queue(Some(q)) => {
                if queue::remove_pending(&q, core) {
                    queue::canceled_on_queue(&q, core);
                    return true;
                }
            }
            At::Target(Some(t)) => {
                if target::remove_queued(&t, core) {
                    complete_from_below(core, Status::CANCELLED, 0);
                    return true;
                }
            }
            At::Driver => {
                let (routine, driver) = {
                    let mut st = lock(&core.st);
                    let d = st
                        .layers
                        .last()
                        .map(|l| l.device.driver().name().to_owned());
                    (st.cancel_routine.take(), d)
                };
                let Some(r) = routine else {
                    return false;
                };
                let h = handle(core);
                invoke_callback(
                    &driver.unwrap_or_else(|| IO_MANAGER.to_owned()),
                    &core.name(),
                    "EvtRequestCancel",
                    || r(h),
                );
                return true;
            }
            At::Delayed => {
                if let Some(then) = end_delay(core) {
                    drop(then);
                    complete_from_below(core, Status::CANCELLED, 0);
                    return true;
                }
            }
            At::Queue(None) | At::Target(None) | At::Other => return false,
        }
        std::thread::yield_now();
    }
    false
}

fn report(core: &ReqCore, rule: Rule, text: &str) {
    if let Some(c) = core.machine.core() {
        c.verifier.report(rule, &core.name(), text);
    }
}

impl Drop for Request {
    /// The driver lets go of a handle. If it was the last handle of the layer that owns the
    /// request, and the request is still owned there, nobody can complete it any more: a
    /// [`Rule::RequestDroppedWithoutCompletion`] violation. In Record mode the request stays
    /// outstanding, as in the kernel (removal then waits for it until the power watchdog, see
    /// [`Verifier::power_watchdog`](crate::verifier::Verifier::power_watchdog), and teardown
    /// completes it with `STATUS_CANCELLED`).
    fn drop(&mut self) {
        let (text, driver) = {
            let mut guard = lock(&self.core.st);
            let st = &mut *guard;
            let Some(layer) = self
                .depth
                .checked_sub(1)
                .and_then(|i| st.layers.get_mut(i))
                .filter(|l| l.visit == self.visit)
            else {
                return;
            };
            layer.handles = layer.handles.saturating_sub(1);
            // A cancelable request is not lost: its cancel routine gets a handle and completes
            // it (a driver may keep a parked request only through its cancel routine).
            if self.released || layer.handles > 0 || st.cancel_routine.is_some() || !self.owns(st) {
                return;
            }
            let driver = st.layers[self.depth - 1].device.driver().name().to_owned();
            (describe_st(&self.core, st, self.depth), driver)
        };
        let Some(core) = self.core.machine.core() else {
            return;
        };
        if core.sched.lock().shutdown {
            return; // the machine is going away: its drivers' state is dropped wholesale
        }
        self.core
            .trace("the driver dropped its last handle without completing the request");
        core.verifier.report_for(
            Rule::RequestDroppedWithoutCompletion,
            &driver,
            &self.core.name(),
            &format!(
                "{text} was dropped without being completed, forwarded or requeued: the \
                 driver holds no handle to it any more, so it never completes and the removal \
                 of its device would wait for it forever (WdfRequestComplete, \
                 WdfRequestForwardToIoQueue, WdfRequestRequeue or WdfRequestSend before \
                 letting go)"
            ),
        );
    }
}

impl Request {
    /// The framework takes the request back from the driver (`WdfDeviceEnqueueRequest`,
    /// forwarding to a queue): the handle goes away without the drop check.
    pub(crate) fn release(mut self) -> Arc<ReqCore> {
        self.released = true;
        lock(&self.core.st).in_caller_context = None;
        Arc::clone(&self.core)
    }

    /// True if this handle's driver owns the request now.
    pub(crate) fn owns(&self, st: &ReqSt) -> bool {
        st.layers.len() == self.depth
            && match st.loc {
                Loc::Driver => self.depth > 0 || matches!(st.origin, Origin::Driver { .. }),
                Loc::Creator => self.depth == 0,
                _ => false,
            }
    }

    /// A number identifying the request (unique per process).
    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// `WdfRequestGetParameters`.
    pub fn parameters(&self) -> RequestParameters {
        lock(&self.core.st).params
    }

    /// The request type.
    pub fn kind(&self) -> RequestType {
        self.core.kind()
    }

    /// `WdfRequestGetRequestorMode`.
    pub fn requestor_mode(&self) -> RequestorMode {
        lock(&self.core.st).mode
    }

    /// `WdfRequestGetFileObject`.
    pub fn file_object(&self) -> Option<FileObject> {
        self.core.file()
    }

    /// Whether the originator is an administrator — the simulator's stand-in for
    /// [`SeSinglePrivilegeCheck`]`(…, UserMode)` on the requester's token
    /// ([Controlling Device Access in KMDF Drivers]): true for kernel-mode requests (the check
    /// always passes for `KernelMode`), else the administrator flag of the application that
    /// opened the file object.
    ///
    /// [`SeSinglePrivilegeCheck`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/ntddk/nf-ntddk-sesingleprivilegecheck
    /// [Controlling Device Access in KMDF Drivers]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/controlling-device-access-in-kmdf-drivers
    pub fn is_requestor_administrator(&self) -> bool {
        let st = lock(&self.core.st);
        st.mode == RequestorMode::Kernel
            || st.file.as_ref().is_some_and(FileObject::is_administrator)
    }

    fn check_buffer_access(&self, st: &ReqSt, routine: &str) -> Result<(), Status> {
        if !require_max_irql(Irql::Dispatch, routine) {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        if matches!(st.loc, Loc::Completed) {
            report(
                &self.core,
                Rule::DeletedObjectUsed,
                &format!("{routine} on a request that was already completed"),
            );
            return Err(Status::INVALID_DEVICE_STATE);
        }
        Ok(())
    }

    /// The memory and length of the input (`output == false`) or output view this handle sees:
    /// the request's buffers, or the creator's own output memory for a driver-created request.
    fn view_of(&self, st: &ReqSt, output: bool) -> Result<(Mem, usize), Status> {
        let (ok, mem, len) = if output {
            let ok = matches!(
                st.params.kind,
                RequestType::Read | RequestType::DeviceControl | RequestType::InternalDeviceControl
            );
            let mem = if self.depth == 0 {
                Some(st.buffers.caller_output.clone())
            } else {
                st.buffers.output.clone()
            };
            (ok, mem, st.params.output_length)
        } else {
            let ok = matches!(
                st.params.kind,
                RequestType::Write
                    | RequestType::DeviceControl
                    | RequestType::InternalDeviceControl
            );
            (ok, st.buffers.input.clone(), st.params.input_length)
        };
        if !ok {
            return Err(Status::INVALID_DEVICE_REQUEST);
        }
        // KMDF checks the length before the transfer method (FxRequest::GetMemoryObject).
        if len == 0 {
            return Err(Status::BUFFER_TOO_SMALL);
        }
        mem.map(|m| (m, len)).ok_or(Status::INVALID_DEVICE_REQUEST)
    }

    /// Runs `f` on the view `output` selects, refusing a view nested in another view of this
    /// request on the same thread (`STATUS_INVALID_DEVICE_STATE`): with `METHOD_BUFFERED` the
    /// input and output are one buffer, so a nested view would alias it.
    fn with_view<R>(
        &self,
        output: bool,
        min_len: usize,
        routine: &str,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, Status> {
        let (mem, len) = {
            let st = lock(&self.core.st);
            self.check_buffer_access(&st, routine)?;
            self.view_of(&st, output)?
        };
        if len < min_len {
            return Err(Status::BUFFER_TOO_SMALL);
        }
        let me = std::thread::current().id();
        {
            let mut views = lock(&self.core.views);
            if views.contains(&me) {
                drop(views);
                self.core.trace(&format!(
                    "{routine} while another buffer view of the request is open on this \
                     thread: refused (the views may alias one buffer)"
                ));
                return Err(Status::INVALID_DEVICE_STATE);
            }
            views.push(me);
        }
        let _close = ViewGuard(&self.core.views, me);
        let mut bytes = lock(&mem.0);
        let n = len.min(bytes.len());
        Ok(f(&mut bytes[..n]))
    }

    /// `WdfRequestRetrieveInputBuffer`: a copy of the input buffer (writes, IOCTLs). With
    /// `METHOD_BUFFERED` it is the one system buffer the output shares: once the driver wrote
    /// the output, the input is gone.
    ///
    /// Errors: `STATUS_BUFFER_TOO_SMALL` if it is empty or shorter than `min_len`;
    /// `STATUS_INVALID_DEVICE_REQUEST` for a request type without one, and for a `METHOD_NEITHER`
    /// IOCTL from user mode (see [`retrieve_unsafe_user_input_buffer`](Self::retrieve_unsafe_user_input_buffer));
    /// `STATUS_INVALID_DEVICE_STATE` inside another buffer view of the request.
    pub fn input_buffer(&self, min_len: usize) -> Result<Vec<u8>, Status> {
        self.with_view(false, min_len, "WdfRequestRetrieveInputBuffer", |b| {
            b.to_vec()
        })
    }

    /// `WdfRequestRetrieveInputBuffer`: runs `f` on the input buffer in place.
    ///
    /// Errors: as [`input_buffer`](Self::input_buffer).
    pub fn with_input_buffer<R>(
        &self,
        min_len: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, Status> {
        self.with_view(false, min_len, "WdfRequestRetrieveInputBuffer", |b| f(b))
    }

    /// `WdfRequestRetrieveOutputBuffer`: runs `f` on the output buffer (reads, IOCTLs) — the
    /// system buffer (`METHOD_BUFFERED`, shared with the input; buffered reads) or the caller's
    /// own memory (`METHOD_IN_DIRECT`/`METHOD_OUT_DIRECT`, where IN_DIRECT's "output" is a
    /// second input the driver reads).
    ///
    /// Errors: as [`input_buffer`](Self::input_buffer).
    pub fn with_output_buffer<R>(
        &self,
        min_len: usize,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, Status> {
        self.with_view(true, min_len, "WdfRequestRetrieveOutputBuffer", f)
    }

    /// A copy of the output buffer (e.g. what a target returned into a driver-created request:
    /// for the creator, its own output memory after the framework's copy-back).
    pub fn output(&self) -> Vec<u8> {
        let st = lock(&self.core.st);
        if self.depth == 0 {
            return st.buffers.caller_output.snapshot();
        }
        st.buffers
            .output
            .as_ref()
            .map(Mem::snapshot)
            .unwrap_or_default()
    }

    /// The unsafe user buffer `output` selects, for `routine`.
    fn unsafe_user_buffer(
        &self,
        output: bool,
        min_len: usize,
        routine: &str,
    ) -> Result<UserBuffer, Status> {
        if !require_max_irql(Irql::Passive, routine) {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        let st = lock(&self.core.st);
        self.check_buffer_access(&st, routine)?;
        if !self.in_caller_context(&st) {
            drop(st);
            self.core.trace(&format!(
                "{routine} outside EvtIoInCallerContext: refused with STATUS_INVALID_DEVICE_REQUEST"
            ));
            return Err(Status::INVALID_DEVICE_REQUEST);
        }
        let Some((input, out)) = st
            .buffers
            .user
            .as_ref()
            .filter(|_| st.params.kind == RequestType::DeviceControl)
        else {
            return Err(Status::INVALID_DEVICE_REQUEST);
        };
        let (mem, len) = if output {
            (out.clone(), st.params.output_length)
        } else {
            (input.clone(), st.params.input_length)
        };
        if len < min_len {
            return Err(Status::BUFFER_TOO_SMALL);
        }
        Ok(UserBuffer {
            mem,
            len,
            request: self.core.id,
        })
    }

    /// True while this handle's driver holds the request in `EvtIoInCallerContext`, on that
    /// callback's thread.
    fn in_caller_context(&self, st: &ReqSt) -> bool {
        self.owns(st) && st.in_caller_context == Some(std::thread::current().id())
    }

    /// `WdfRequestRetrieveUnsafeUserInputBuffer` (PASSIVE): the caller's user-mode input address
    /// of a `METHOD_NEITHER` IOCTL (`Type3InputBuffer`). Valid only in `EvtIoInCallerContext`
    /// (the caller's process); probe and lock it there before use.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_REQUEST` outside `EvtIoInCallerContext` (the check KMDF's
    /// verifier makes, always on here), and for a request that is not a `METHOD_NEITHER`
    /// `IRP_MJ_DEVICE_CONTROL` (internal IOCTLs included: their buffers are kernel addresses,
    /// retrieved with [`input_buffer`](Self::input_buffer)); `STATUS_BUFFER_TOO_SMALL` below
    /// `min_len`.
    pub fn retrieve_unsafe_user_input_buffer(&self, min_len: usize) -> Result<UserBuffer, Status> {
        self.unsafe_user_buffer(false, min_len, "WdfRequestRetrieveUnsafeUserInputBuffer")
    }

    /// `WdfRequestRetrieveUnsafeUserOutputBuffer` (PASSIVE): the caller's user-mode output
    /// address (`Irp->UserBuffer`) of a `METHOD_NEITHER` IOCTL.
    ///
    /// Errors: as [`retrieve_unsafe_user_input_buffer`](Self::retrieve_unsafe_user_input_buffer).
    pub fn retrieve_unsafe_user_output_buffer(&self, min_len: usize) -> Result<UserBuffer, Status> {
        self.unsafe_user_buffer(true, min_len, "WdfRequestRetrieveUnsafeUserOutputBuffer")
    }

    fn probe_and_lock(
        &self,
        buffer: &UserBuffer,
        writable: bool,
        routine: &str,
    ) -> Result<LockedUserBuffer, Status> {
        if !require_max_irql(Irql::Passive, routine) {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        let st = lock(&self.core.st);
        self.check_buffer_access(&st, routine)?;
        if !self.in_caller_context(&st) {
            return Err(Status::INVALID_DEVICE_REQUEST);
        }
        // The simulator's user addresses are always valid; one of another request stands in
        // for an address the probe rejects.
        if buffer.request != self.core.id {
            return Err(Status::INVALID_PARAMETER);
        }
        Ok(LockedUserBuffer {
            mem: buffer.mem.clone(),
            len: buffer.len,
            writable,
            core: Arc::downgrade(&self.core),
        })
    }

    /// `WdfRequestProbeAndLockUserBufferForRead` (PASSIVE, in `EvtIoInCallerContext`): locks a
    /// user buffer of this request for reading; the memory stays usable, from any context,
    /// until the request completes.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_REQUEST` outside `EvtIoInCallerContext`;
    /// `STATUS_INVALID_PARAMETER` for a buffer of another request.
    pub fn probe_and_lock_user_buffer_for_read(
        &self,
        buffer: &UserBuffer,
    ) -> Result<LockedUserBuffer, Status> {
        self.probe_and_lock(buffer, false, "WdfRequestProbeAndLockUserBufferForRead")
    }

    /// `WdfRequestProbeAndLockUserBufferForWrite`: as
    /// [`probe_and_lock_user_buffer_for_read`](Self::probe_and_lock_user_buffer_for_read), for
    /// reading and writing.
    ///
    /// Errors: as `probe_and_lock_user_buffer_for_read`.
    pub fn probe_and_lock_user_buffer_for_write(
        &self,
        buffer: &UserBuffer,
    ) -> Result<LockedUserBuffer, Status> {
        self.probe_and_lock(buffer, true, "WdfRequestProbeAndLockUserBufferForWrite")
    }

    /// `WdfRequestSetInformation`.
    pub fn set_information(&self, information: usize) {
        lock(&self.core.st).information = information;
    }

    /// `WdfRequestGetInformation`.
    pub fn information(&self) -> usize {
        lock(&self.core.st).information
    }

    /// `WdfRequestGetStatus`: the status the request was last completed with (`STATUS_PENDING`
    /// while in progress).
    pub fn status(&self) -> Status {
        lock(&self.core.st).status
    }

    /// `WdfRequestComplete` (≤ `DISPATCH_LEVEL`), keeping the information already set.
    pub fn complete(self, status: Status) {
        let info = self.information();
        self.complete_with_information(status, info);
    }

    /// `WdfRequestCompleteWithInformation` (≤ `DISPATCH_LEVEL`).
    pub fn complete_with_information(self, status: Status, information: usize) {
        if !require_max_irql(Irql::Dispatch, "WdfRequestComplete") {
            return;
        }
        let (ok, created) = {
            let st = lock(&self.core.st);
            let created = self.depth == 0 && matches!(st.origin, Origin::Driver { .. });
            (self.owns(&st) && !created, created)
        };
        if !ok {
            let why = if created {
                "a driver-created request is never completed by its creator (reuse or delete it)"
            } else {
                "the request was already completed (or passed on) through another handle"
            };
            report(
                &self.core,
                Rule::RequestCompletedTwice,
                &format!(
                    "WdfRequestComplete({status}): {why}; a request is completed exactly once"
                ),
            );
            return;
        }
        complete_layer(&self.core, status, information);
    }

    /// `WdfRequestMarkCancelableEx` (≤ `DISPATCH_LEVEL`). See the [module docs](self).
    pub fn mark_cancelable(&self, routine: impl FnOnce(Request) + Send + 'static) -> Status {
        if !require_max_irql(Irql::Dispatch, "WdfRequestMarkCancelableEx") {
            return Status::INVALID_DEVICE_STATE;
        }
        let mut st = lock(&self.core.st);
        if !self.owns(&st) || st.cancel_routine.is_some() {
            return Status::INVALID_DEVICE_REQUEST;
        }
        if st.cancelled {
            return Status::CANCELLED;
        }
        st.cancel_routine = Some(Box::new(routine));
        Status::SUCCESS
    }

    /// `WdfRequestUnmarkCancelable`: `STATUS_SUCCESS`, or `STATUS_CANCELLED` if the cancel
    /// routine already ran or runs (it completes the request: the caller must not), or
    /// `STATUS_INVALID_DEVICE_REQUEST` if the request was not cancelable.
    pub fn unmark_cancelable(&self) -> Status {
        let mut st = lock(&self.core.st);
        let routine = st.cancel_routine.take();
        let cancelled = st.cancelled;
        drop(st); // before the routine (see `complete_layer`)
        if routine.is_some() {
            Status::SUCCESS
        } else if cancelled {
            Status::CANCELLED
        } else {
            Status::INVALID_DEVICE_REQUEST
        }
    }

    /// `WdfRequestIsCanceled`.
    pub fn is_canceled(&self) -> bool {
        lock(&self.core.st).cancelled
    }

    /// `WdfRequestStopAcknowledge` from `EvtIoStop`: `requeue` puts the request back at the head
    /// of its queue (the driver must not touch it any more); otherwise the driver keeps it and
    /// gets `EvtIoResume` when the device returns to D0.
    pub fn stop_acknowledge(&self, requeue: bool) {
        let q = {
            let st = lock(&self.core.st);
            if requeue && !self.owns(&st) {
                return;
            }
            self.depth
                .checked_sub(1)
                .and_then(|i| st.layers.get(i))
                .and_then(|l| l.queue.clone())
        };
        let Some(q) = q else {
            return;
        };
        if requeue {
            let mut st = lock(&self.core.st);
            let routine = st.cancel_routine.take();
            if let Some(l) = st.layers.last_mut() {
                l.queue = None;
            }
            drop(st);
            drop(routine);
            queue::requeue_front(&q, &self.core);
        } else {
            queue::ack_no_requeue(&q, &self.core);
        }
    }

    /// `WdfRequestForwardToIoQueue`: moves the request into another queue of the same device.
    ///
    /// Errors (the request is handed back): `STATUS_INVALID_DEVICE_REQUEST` if the driver does
    /// not own it, it is still cancelable, or the queue belongs to another device;
    /// `STATUS_INVALID_DEVICE_STATE` if the queue does not accept requests.
    pub fn forward_to_queue(self, queue: &Queue) -> Result<(), (Request, Status)> {
        let old = {
            let mut st = lock(&self.core.st);
            let same_device = st
                .layers
                .last()
                .is_some_and(|l| queue.device().as_ref() == Some(&l.device));
            if !self.owns(&st) || st.cancel_routine.is_some() || !same_device {
                drop(st);
                return Err((self, Status::INVALID_DEVICE_REQUEST));
            }
            if !queue::accepts(&queue.0) {
                drop(st);
                return Err((self, Status::INVALID_DEVICE_STATE));
            }
            st.requeued = true;
            st.layers.last_mut().and_then(|l| l.queue.take())
        };
        let core = self.release();
        if let Some(q) = old {
            queue::request_left(&q, &core);
        }
        queue::enqueue(&queue.0, &core, true);
        Ok(())
    }

    /// `WdfRequestRequeue`: back to the head of the queue that presented it.
    ///
    /// Errors: as [`forward_to_queue`](Self::forward_to_queue); also if it came from no queue.
    pub fn requeue(self) -> Result<(), (Request, Status)> {
        let q = {
            let mut st = lock(&self.core.st);
            if !self.owns(&st) || st.cancel_routine.is_some() {
                drop(st);
                return Err((self, Status::INVALID_DEVICE_REQUEST));
            }
            st.requeued = true;
            st.layers.last_mut().and_then(|l| l.queue.take())
        };
        let Some(q) = q else {
            return Err((self, Status::INVALID_DEVICE_REQUEST));
        };
        let core = self.release();
        queue::requeue_front(&q, &core);
        Ok(())
    }

    /// `WdfRequestFormatRequestUsingCurrentType` (≤ `DISPATCH_LEVEL`): the request is passed on
    /// unchanged (the simulator keeps one parameter set per request).
    pub fn format_using_current_type(&self) {
        let _ = require_max_irql(Irql::Dispatch, "WdfRequestFormatRequestUsingCurrentType");
    }

    /// `WdfRequestSetCompletionRoutine`: called (≤ `DISPATCH_LEVEL`) when the target completes
    /// the request sent next.
    pub fn set_completion_routine(
        &self,
        routine: impl FnOnce(Request, CompletionParams) + Send + 'static,
    ) {
        let old = lock(&self.core.st).next_routine.replace(Box::new(routine));
        drop(old);
    }

    /// `WdfRequestSend` (asynchronous; ≤ `DISPATCH_LEVEL`). See the [module docs](self). The
    /// trace records the send with the sending driver and what is sent (`sent to WDFIOTARGET x#0
    /// (IOCTL 0x00220004)`).
    ///
    /// Errors: the status of a send that did not reach the target (the driver still owns the
    /// request and completes it); `STATUS_INVALID_DEVICE_REQUEST` if the driver does not own it;
    /// `STATUS_INVALID_PARAMETER` for a send-and-forget that is not allowed.
    pub fn send(&self, target: &IoTarget, options: SendOptions) -> Result<(), Status> {
        if !require_max_irql(Irql::Dispatch, "WdfRequestSend") {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        self.send_inner(target, options, None)
    }

    fn send_inner(
        &self,
        target: &IoTarget,
        options: SendOptions,
        sync: Option<CompletionFn>,
    ) -> Result<(), Status> {
        let forget_queue = {
            let mut st = lock(&self.core.st);
            if !self.owns(&st) {
                return Err(Status::INVALID_DEVICE_REQUEST);
            }
            let created = self.depth == 0;
            if options.send_and_forget && (created || target.is_remote() || sync.is_some()) {
                return Err(Status::INVALID_PARAMETER);
            }
            let routine = sync.or_else(|| st.next_routine.take());
            let q = if created {
                if let Origin::Driver { routine: r, .. } = &mut st.origin {
                    *r = routine;
                }
                None
            } else {
                let l = st.layers.last_mut().expect("owned at depth > 0");
                l.routine = routine;
                l.forget = options.send_and_forget;
                if options.send_and_forget {
                    l.queue.clone()
                } else {
                    None
                }
            };
            if target.is_remote() {
                st.file = target.file_object();
            }
            st.status = Status::PENDING;
            st.loc = Loc::Framework;
            q
        };
        let what = describe_sent(&self.parameters());
        let sender = crate::exec::context::current_driver();
        let forgotten = if options.send_and_forget {
            " and forgotten"
        } else {
            ""
        };
        trace(
            &self.core.machine,
            sender.as_deref(),
            &self.core.name(),
            &format!("sent to {} ({what}){forgotten}", target.name()),
        );
        let timer = options.timeout.and_then(|t| self.timeout_timer(t));
        if let Some(timer) = timer {
            let mut st = lock(&self.core.st);
            if self.depth == 0 {
                if let Origin::Driver { timer: slot, .. } = &mut st.origin {
                    *slot = Some(timer);
                }
            } else if let Some(l) = st.layers.get_mut(self.depth - 1) {
                l.timer = Some(timer);
            }
        }
        match target::submit(target, &self.core, options) {
            Ok(()) => {
                if let Some(q) = forget_queue {
                    queue::request_left(&q, &self.core);
                }
                Ok(())
            }
            Err(s) => {
                let timer = {
                    let mut guard = lock(&self.core.st);
                    let st = &mut *guard;
                    st.status = s;
                    st.loc = if self.depth == 0 {
                        Loc::Creator
                    } else {
                        Loc::Driver
                    };
                    if self.depth == 0 {
                        if let Origin::Driver { routine, timer, .. } = &mut st.origin {
                            st.next_routine = routine.take();
                            timer.take()
                        } else {
                            None
                        }
                    } else {
                        let l = st.layers.last_mut().expect("owned at depth > 0");
                        l.forget = false;
                        let r = l.routine.take();
                        let t = l.timer.take();
                        st.next_routine = r;
                        t
                    }
                };
                drop(timer);
                Err(s)
            }
        }
    }

    fn timeout_timer(&self, timeout: Duration) -> Option<Timer> {
        let machine = self.core.machine.machine()?;
        let weak = Arc::downgrade(&self.core);
        let _scope = DriverScope::enter(IO_MANAGER);
        let timer = Timer::new(&machine, TimerConfig::one_shot("send timeout"), move |_t| {
            if let Some(core) = weak.upgrade() {
                core.trace("send timeout expired");
                cancel(&core);
            }
        })
        .ok()?;
        timer.start(timeout);
        Some(timer)
    }

    /// `WdfRequestSend` with `WDF_REQUEST_SEND_OPTION_SYNCHRONOUS` (PASSIVE only): returns the
    /// status the target completed the request with (`STATUS_IO_TIMEOUT` if `timeout` of
    /// virtual time passed first: the request is then cancelled and waited for). The driver
    /// owns the request again afterwards.
    pub fn send_synchronously(&self, target: &IoTarget, timeout: Option<Duration>) -> Status {
        if !require_max_irql(Irql::Passive, "WdfRequestSend(SYNCHRONOUS)") {
            return Status::INVALID_DEVICE_STATE;
        }
        let Some(machine) = self.core.machine.machine() else {
            return Status::INVALID_DEVICE_STATE;
        };
        let slot: Arc<Mutex<Option<Status>>> = Arc::new(Mutex::new(None));
        let s2 = Arc::clone(&slot);
        let routine: CompletionFn = Box::new(move |req, params| {
            *lock(&s2) = Some(params.status);
            drop(req);
        });
        if let Err(s) = self.send_inner(target, SendOptions::default(), Some(routine)) {
            return s;
        }
        let name = self.core.name();
        let w = machine.wait_until("WdfRequestSend(SYNCHRONOUS)", &name, timeout, || {
            lock(&slot).is_some()
        });
        if w.is_signaled() {
            return lock(&slot).unwrap_or(Status::UNSUCCESSFUL);
        }
        self.core.trace("synchronous send timed out: cancelling");
        cancel(&self.core);
        let _ = machine.wait_until("WdfRequestSend(SYNCHRONOUS)", &name, None, || {
            lock(&slot).is_some()
        });
        lock(&self.core.st).status = Status::IO_TIMEOUT;
        Status::IO_TIMEOUT
    }

    /// `WdfRequestCancelSentRequest` (≤ `DISPATCH_LEVEL`): asks the target to cancel the request
    /// this driver sent. True if a cancellation was delivered somewhere.
    pub fn cancel_sent_request(&self) -> bool {
        if !require_max_irql(Irql::Dispatch, "WdfRequestCancelSentRequest") {
            return false;
        }
        let sent = {
            let st = lock(&self.core.st);
            st.layers.len() > self.depth || !matches!(st.loc, Loc::Driver | Loc::Creator)
        };
        sent && cancel(&self.core)
    }

    /// `WdfRequestCreate`: a driver-created request, parented to `device` (a fault point).
    ///
    /// Errors: `STATUS_INSUFFICIENT_RESOURCES` (fault injection); `STATUS_INVALID_DEVICE_STATE`
    /// if the device is deleted or its machine gone.
    pub fn create(device: &Device) -> Result<Request, Status> {
        let machine = device.machine().ok_or(Status::INVALID_DEVICE_STATE)?;
        let object = WdfObject::create(
            &machine,
            "WDFREQUEST",
            ObjectAttributes::new().parent(device.object()),
        )?;
        let core = Arc::new(ReqCore {
            id: crate::exec::context::new_uid(),
            machine: MachineRef::new(&machine),
            views: Mutex::new(Vec::new()),
            st: Mutex::new(ReqSt {
                params: RequestParameters::new(RequestType::DeviceControl),
                buffers: Buffers::default(),
                in_caller_context: None,
                status: Status::SUCCESS,
                information: 0,
                mode: RequestorMode::Kernel,
                file: None,
                cancelled: false,
                cancel_routine: None,
                next_routine: None,
                origin: Origin::Driver {
                    device: device.clone(),
                    routine: None,
                    object,
                    timer: None,
                },
                layers: Vec::new(),
                loc: Loc::Creator,
                delay: None,
                requeued: false,
            }),
        });
        Ok(Request {
            core,
            depth: 0,
            visit: 0,
            released: false,
        })
    }

    fn format(
        &self,
        params: RequestParameters,
        input: &[u8],
        output_len: usize,
    ) -> Result<(), Status> {
        let mut st = lock(&self.core.st);
        if !(self.depth == 0 && matches!(st.loc, Loc::Creator)) {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        // The output memory (WdfMemoryCreate): a length the pool would refuse is refused with a
        // status, never an abort (the sender chose it).
        if output_len > crate::pool::MAX_ALLOCATION {
            return Err(Status::INSUFFICIENT_RESOURCES);
        }
        params.check_system_buffer()?;
        st.buffers = Buffers::new(
            &params,
            input.to_vec(),
            Mem::new(vec![0; output_len]),
            RequestorMode::Kernel,
        );
        st.params = params;
        Ok(())
    }

    /// `WdfIoTargetFormatRequestForIoctl` on a driver-created request (not while it is sent).
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` if it is not a driver-created request at rest.
    pub fn format_for_ioctl(
        &self,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<(), Status> {
        let mut p = RequestParameters::new(RequestType::DeviceControl);
        p.ioctl_code = code;
        p.input_length = input.len();
        p.output_length = output_len;
        self.format(p, input, output_len)
    }

    /// `WdfIoTargetFormatRequestForInternalIoctl`.
    ///
    /// Errors: as [`format_for_ioctl`](Self::format_for_ioctl).
    pub fn format_for_internal_ioctl(
        &self,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<(), Status> {
        let mut p = RequestParameters::new(RequestType::InternalDeviceControl);
        p.ioctl_code = code;
        p.input_length = input.len();
        p.output_length = output_len;
        self.format(p, input, output_len)
    }

    /// `WdfIoTargetFormatRequestForRead`.
    ///
    /// Errors: as [`format_for_ioctl`](Self::format_for_ioctl).
    pub fn format_for_read(&self, length: usize, offset: u64) -> Result<(), Status> {
        let mut p = RequestParameters::new(RequestType::Read);
        p.output_length = length;
        p.offset = offset;
        self.format(p, &[], length)
    }

    /// `WdfIoTargetFormatRequestForWrite`.
    ///
    /// Errors: as [`format_for_ioctl`](Self::format_for_ioctl).
    pub fn format_for_write(&self, data: &[u8], offset: u64) -> Result<(), Status> {
        let mut p = RequestParameters::new(RequestType::Write);
        p.input_length = data.len();
        p.offset = offset;
        self.format(p, data, 0)
    }

    /// `WdfRequestReuse`: resets a driver-created request that came back (status set to
    /// `status`, information 0, cancel state cleared) so it can be formatted and sent again.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` while it is sent (or for a received request).
    pub fn reuse(&self, status: Status) -> Result<(), Status> {
        let mut st = lock(&self.core.st);
        if !(self.depth == 0 && matches!(st.loc, Loc::Creator)) {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        st.status = status;
        st.information = 0;
        st.cancelled = false;
        let routines = (st.cancel_routine.take(), st.next_routine.take());
        drop(st);
        drop(routines);
        Ok(())
    }

    /// `WdfObjectDelete` on a driver-created request at rest.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` while it is sent or for a received request.
    pub fn delete(self) -> Result<(), Status> {
        let obj = {
            let st = lock(&self.core.st);
            match (&st.origin, &st.loc) {
                (Origin::Driver { object, .. }, Loc::Creator) if self.depth == 0 => object.clone(),
                _ => return Err(Status::INVALID_DEVICE_STATE),
            }
        };
        obj.delete()
    }
}

/// What a request carries, for the trace: `IOCTL 0x…`, `read N bytes`, ….
fn describe_sent(p: &RequestParameters) -> String {
    match p.kind {
        RequestType::DeviceControl => format!("IOCTL {:#010x}", p.ioctl_code),
        RequestType::InternalDeviceControl => format!("internal IOCTL {:#010x}", p.ioctl_code),
        RequestType::Read => format!("read {} bytes", p.output_length),
        RequestType::Write => format!("write {} bytes", p.input_length),
        other => format!("{other:?}"),
    }
}
