//! Simulated user-mode applications: handles, synchronous and overlapped I/O.
//!
//! A test plays an application with [`Application::new`]: it opens a handle on a device
//! interface (by symbolic link, or by class GUID — the first enabled instance, like
//! `SetupDiGetClassDevs` + `CreateFile`), then calls [`Handle::device_io_control`],
//! [`Handle::read`] and [`Handle::write`] synchronously, or their `…_overlapped` forms, which
//! return a [`PendingIo`] to wait on (with a timeout on the virtual clock) or cancel
//! (`CancelIoEx`). [`Handle::close`] (or dropping the handle) is `CloseHandle`: cleanup now,
//! close after the handle's last request completed.
//!
//! The output buffer is the application's memory: [`Handle::device_io_control_buffer`] passes
//! one with contents of the caller's choosing and returns all of it as it is after completion
//! ([`PendingIo::caller_output`] shows it at any time). What reaches it depends on the IOCTL's
//! transfer method (see the [request docs](super::request#buffers)): with `METHOD_BUFFERED`
//! the I/O manager copies `Information` bytes of the system buffer into it at completion, with
//! the direct methods the driver writes it in place. The plain [`Handle::device_io_control`]
//! passes a zero-filled buffer and returns its first `Information` bytes.
//!
//! # What the I/O manager checks
//!
//! As [Defining I/O Control Codes] and [Controlling Device Access in KMDF Drivers] describe:
//!
//! * An IOCTL is sent only if the handle was granted the access bits of its code (bits 15–14:
//!   `FILE_READ_ACCESS` needs read access, `FILE_WRITE_ACCESS` write access); otherwise the call
//!   fails with `STATUS_ACCESS_DENIED` and no driver sees it. Reads need read access, writes
//!   write access.
//! * The application's administrator flag ([`AppConfig::administrator`]) travels with the file
//!   object; drivers read it as [`FileObject::is_administrator`] or
//!   [`Request::is_requestor_administrator`](super::Request::is_requestor_administrator) — the
//!   simulator's stand-in for a token check with [`SeSinglePrivilegeCheck`]. Security descriptors
//!   (SDDL) are modelled for [control devices](crate::control) only
//!   ([`DeviceSecurity`](crate::control::DeviceSecurity): an admin-only control device refuses a
//!   non-administrator's open with `STATUS_ACCESS_DENIED`); otherwise an admin-only driver
//!   checks the flag in `EvtDeviceFileCreate` (the opener's thread, where such a check belongs)
//!   and fails the open.
//!
//! Synchronous calls block the calling thread (bound to the machine for the call) until the
//! request completes: a call that a driver pends forever never returns — use the overlapped form
//! for requests that wait for an event.
//!
//! [Defining I/O Control Codes]: https://learn.microsoft.com/en-us/windows-hardware/drivers/kernel/defining-i-o-control-codes
//! [Controlling Device Access in KMDF Drivers]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/controlling-device-access-in-kmdf-drivers
//! [`SeSinglePrivilegeCheck`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/ntddk/nf-ntddk-sesingleprivilegecheck

use core::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::dispatch_to_device;
use super::file::FileObject;
use super::request::{self, Mem, ReqCore, RequestParameters, RequestType, RequestorMode};
use crate::device::lock;
use crate::exec::{EventKind, NamedEvent};
use crate::guid::Guid;
use crate::interface::{find_interface, interfaces_of_class};
use crate::machine::Machine;
use crate::object::bind;
use crate::status::Status;

/// The session the simulated applications run in (the first interactive session).
pub const APPLICATION_SESSION: u32 = 1;

/// Where a user-mode event name lives in the object manager's namespace: `Global\X` in
/// `\BaseNamedObjects\X`, `Local\X` and a bare `X` in the application's session,
/// `\Sessions\1\BaseNamedObjects\X` ([`APPLICATION_SESSION`]). A kernel-mode `ZwOpenEvent`
/// names the event by this path.
///
/// # Errors
///
/// `STATUS_OBJECT_NAME_INVALID` for an empty name (or an empty name after the prefix).
pub fn event_object_name(name: &str) -> Result<String, Status> {
    let path = if let Some(rest) = name.strip_prefix("Global\\") {
        (!rest.is_empty()).then(|| format!("\\BaseNamedObjects\\{rest}"))
    } else {
        let rest = name.strip_prefix("Local\\").unwrap_or(name);
        (!rest.is_empty())
            .then(|| format!("\\Sessions\\{APPLICATION_SESSION}\\BaseNamedObjects\\{rest}"))
    };
    path.ok_or(Status::OBJECT_NAME_INVALID)
}

/// Output bytes (truncated to the information) and the information (bytes transferred).
pub type IoResult = (Vec<u8>, usize);

/// Desired / granted access of a handle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Access {
    /// `GENERIC_READ` / `FILE_READ_DATA`.
    pub read: bool,
    /// `GENERIC_WRITE` / `FILE_WRITE_DATA`.
    pub write: bool,
}

impl Access {
    /// No data access.
    pub const NONE: Access = Access {
        read: false,
        write: false,
    };
    /// Read only.
    pub const READ: Access = Access {
        read: true,
        write: false,
    };
    /// Write only.
    pub const WRITE: Access = Access {
        read: false,
        write: true,
    };
    /// Read and write.
    pub const READ_WRITE: Access = Access {
        read: true,
        write: true,
    };

    /// True if this access includes the `FILE_*_ACCESS` bits (bits 15–14) of an IOCTL code.
    pub fn allows_ioctl(self, code: u32) -> bool {
        let bits = (code >> 14) & 3;
        (bits & 1 == 0 || self.read) && (bits & 2 == 0 || self.write)
    }
}

/// Who the application is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppConfig {
    /// Runs elevated (member of Administrators with the token enabled).
    pub administrator: bool,
    /// A name for traces and file objects.
    pub name: String,
}

/// A simulated user-mode application.
#[derive(Clone)]
pub struct Application {
    machine: Machine,
    config: AppConfig,
}

impl fmt::Debug for Application {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// An application on `machine`.
    pub fn new(machine: &Machine, config: AppConfig) -> Self {
        Application {
            machine: machine.clone(),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// `CreateEventW(NULL, manual_reset, initial_state, name)`: creates the named event `name`
    /// (a Win32 name, placed by [`event_object_name`]), or opens it if it exists
    /// ([`NamedEvent::existed`]). Wait on it with [`NamedEvent::wait`] (virtual clock); close it
    /// with [`NamedEvent::close`] (`CloseHandle`).
    ///
    /// # Errors
    ///
    /// `STATUS_OBJECT_NAME_INVALID` for an empty name.
    pub fn create_event(
        &self,
        name: &str,
        manual_reset: bool,
        initial_state: bool,
    ) -> Result<NamedEvent, Status> {
        let _g = bind(&self.machine);
        let kind = if manual_reset {
            EventKind::Notification
        } else {
            EventKind::Synchronization
        };
        NamedEvent::create(
            &self.machine,
            &event_object_name(name)?,
            kind,
            initial_state,
        )
    }

    /// `OpenEventW(SYNCHRONIZE | EVENT_MODIFY_STATE, FALSE, name)`: a handle to the existing
    /// named event `name` (a Win32 name).
    ///
    /// # Errors
    ///
    /// `STATUS_OBJECT_NAME_NOT_FOUND` when it does not exist; `STATUS_OBJECT_NAME_INVALID` for an
    /// empty name.
    pub fn open_event(&self, name: &str) -> Result<NamedEvent, Status> {
        let _g = bind(&self.machine);
        NamedEvent::open(&self.machine, &event_object_name(name)?)
    }

    /// `CreateFile(symbolic_link, access, OPEN_EXISTING)`: sends a create to the top of the
    /// interface's device stack and waits for it. `symbolic_link` may also be a link made with
    /// [`Device::create_symbolic_link`](crate::device::Device::create_symbolic_link) (e.g.
    /// `\DosDevices\MyCtl` of a [control device](crate::control), which receives the create
    /// itself).
    ///
    /// Errors: `STATUS_OBJECT_NAME_NOT_FOUND` if no enabled interface or symbolic link has that
    /// name; for a control device `STATUS_NO_SUCH_DEVICE` before
    /// [`Device::finish_initializing`](crate::device::Device::finish_initializing) and
    /// `STATUS_ACCESS_DENIED` if its [`DeviceSecurity`](crate::control::DeviceSecurity) refuses
    /// this application; the status the driver failed the create with.
    pub fn open(&self, symbolic_link: &str, access: Access) -> Result<Handle, Status> {
        let _g = bind(&self.machine);
        let top = if let Some(info) = find_interface(&self.machine, symbolic_link) {
            info.device
                .node()
                .and_then(|n| n.stack().last().cloned())
                .unwrap_or(info.device)
        } else {
            crate::interface::resolve_link(
                &self.machine,
                symbolic_link,
                self.config.administrator,
                RequestorMode::User,
            )?
            .ok_or(Status::OBJECT_NAME_NOT_FOUND)?
        };
        let file = FileObject::new(
            &self.machine,
            top,
            self.config.administrator,
            access,
            RequestorMode::User,
            &self.config.name,
        );
        let s = file.send_simple(RequestType::Create);
        if !s.is_success() {
            return Err(s);
        }
        Ok(Handle {
            machine: self.machine.clone(),
            file,
            closed: false,
        })
    }

    /// Opens the first enabled interface of `class` (in symbolic-link order).
    ///
    /// Errors: `STATUS_OBJECT_NAME_NOT_FOUND` if none is enabled; else as [`open`](Self::open).
    pub fn open_interface(&self, class: Guid, access: Access) -> Result<Handle, Status> {
        let link = interfaces_of_class(&self.machine, class)
            .into_iter()
            .next()
            .ok_or(Status::OBJECT_NAME_NOT_FOUND)?;
        self.open(&link, access)
    }
}

/// An open handle.
pub struct Handle {
    machine: Machine,
    file: FileObject,
    closed: bool,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

struct OpCore {
    req: Arc<ReqCore>,
    result: Mutex<Option<(Status, usize, Vec<u8>)>>,
}

/// An overlapped operation in progress.
pub struct PendingIo {
    machine: Machine,
    op: Arc<OpCore>,
    /// The application's output buffer.
    caller_output: Mem,
}

impl fmt::Debug for PendingIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingIo")
            .field("request", &self.op.req.id)
            .field("complete", &self.is_complete())
            .finish_non_exhaustive()
    }
}

fn to_result(r: &(Status, usize, Vec<u8>)) -> Result<IoResult, Status> {
    if r.0.is_success() {
        Ok((r.2.clone(), r.1))
    } else {
        Err(r.0)
    }
}

impl PendingIo {
    /// The request's id (as drivers see it in [`Request::id`](super::Request::id)).
    pub fn request_id(&self) -> u64 {
        self.op.req.id
    }

    /// True once the request completed.
    pub fn is_complete(&self) -> bool {
        lock(&self.op.result).is_some()
    }

    /// The result, if complete.
    pub fn result(&self) -> Option<Result<IoResult, Status>> {
        lock(&self.op.result).as_ref().map(to_result)
    }

    /// The completion status, if complete (also for successes, e.g. `STATUS_SUCCESS`).
    pub fn status(&self) -> Option<Status> {
        lock(&self.op.result).as_ref().map(|r| r.0)
    }

    /// `GetOverlappedResultEx`: waits up to `timeout` of virtual time (`None`: forever) and
    /// returns the result, or `None` if it is still pending.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Result<IoResult, Status>> {
        let _g = bind(&self.machine);
        let op = Arc::clone(&self.op);
        let _ = self
            .machine
            .wait_until("GetOverlappedResultEx", &op.req.name(), timeout, || {
                lock(&op.result).is_some()
            });
        self.result()
    }

    /// The application's output buffer as it is now, all of it. A driver writes it directly
    /// with `METHOD_IN_DIRECT`/`METHOD_OUT_DIRECT` (through the MDL: visible before completion,
    /// and past the information); with `METHOD_BUFFERED` and buffered reads the I/O manager
    /// copies the information's bytes of the system buffer into it at completion (not for an
    /// error status).
    pub fn caller_output(&self) -> Vec<u8> {
        self.caller_output.snapshot()
    }

    /// `CancelIoEx` for this operation: true if a cancellation reached the request (a driver
    /// that does not watch for cancellation may still complete it normally).
    pub fn cancel(&self) -> bool {
        let _g = bind(&self.machine);
        !self.is_complete() && request::cancel(&self.op.req)
    }
}

impl Handle {
    /// The handle's file object.
    pub fn file_object(&self) -> &FileObject {
        &self.file
    }

    fn issue(
        &self,
        params: RequestParameters,
        input: Vec<u8>,
        caller_output: Vec<u8>,
        access_ok: bool,
    ) -> Result<PendingIo, Status> {
        if !access_ok {
            return Err(Status::ACCESS_DENIED);
        }
        params.check_system_buffer()?;
        let _g = bind(&self.machine);
        let caller_output = Mem::new(caller_output);
        let op = Arc::new(OpCore {
            req: ReqCore::new_io(
                &self.machine,
                params,
                input,
                RequestorMode::User,
                Some(self.file.clone()),
                caller_output.clone(),
                Box::new(|_, _, _| {}),
            ),
            result: Mutex::new(None),
        });
        let done_op = Arc::downgrade(&op);
        let file = self.file.clone();
        request::set_done(
            &op.req,
            Box::new(move |s, info, out| {
                if let Some(op) = done_op.upgrade() {
                    *lock(&op.result) = Some((s, info, out));
                }
                file.io_done();
            }),
        );
        self.file.io_started();
        op.req.trace(&format!(
            "issued by {}: {:?} {:#010X}",
            self.file.owner(),
            params.kind,
            params.ioctl_code
        ));
        dispatch_to_device(self.file.device(), &op.req);
        Ok(PendingIo {
            machine: self.machine.clone(),
            op,
            caller_output,
        })
    }

    fn sync(p: Result<PendingIo, Status>) -> Result<IoResult, Status> {
        p?.wait(None).unwrap_or(Err(Status::UNSUCCESSFUL))
    }

    /// Overlapped `DeviceIoControl` with a zero-filled output buffer of `output_len` bytes.
    ///
    /// Errors: `STATUS_ACCESS_DENIED` if the handle lacks the code's access bits.
    pub fn device_io_control_overlapped(
        &self,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<PendingIo, Status> {
        self.device_io_control_buffer_overlapped(code, input, vec![0; output_len])
    }

    /// Overlapped `DeviceIoControl` whose output buffer is `output`, the application's own
    /// memory with its current contents (a `METHOD_IN_DIRECT` driver reads them;
    /// [`PendingIo::caller_output`] shows the buffer at any time). See the
    /// [I/O module docs](super) for what each transfer method does with it.
    ///
    /// Errors: `STATUS_ACCESS_DENIED` if the handle lacks the code's access bits.
    pub fn device_io_control_buffer_overlapped(
        &self,
        code: u32,
        input: &[u8],
        output: Vec<u8>,
    ) -> Result<PendingIo, Status> {
        let params = RequestParameters {
            kind: RequestType::DeviceControl,
            ioctl_code: code,
            input_length: input.len(),
            output_length: output.len(),
            offset: 0,
        };
        self.issue(
            params,
            input.to_vec(),
            output,
            self.file.access().allows_ioctl(code),
        )
    }

    /// Synchronous `DeviceIoControl(code, input, output)` on the application's own `output`
    /// buffer: on return `output` holds what the caller's memory holds after completion (all of
    /// it, not only the information's bytes); the result is the information
    /// (`lpBytesReturned`).
    ///
    /// Errors: `STATUS_ACCESS_DENIED` (access bits); the completion status (`output` is updated
    /// all the same: a direct-I/O driver may have written it).
    pub fn device_io_control_buffer(
        &self,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, Status> {
        let p = self.device_io_control_buffer_overlapped(code, input, output.to_vec())?;
        let r = p.wait(None).unwrap_or(Err(Status::UNSUCCESSFUL));
        output.copy_from_slice(&p.caller_output());
        r.map(|(_, n)| n)
    }

    /// Synchronous `DeviceIoControl`: the output (truncated to the information) and the
    /// information.
    ///
    /// Errors: `STATUS_ACCESS_DENIED` (access bits); the completion status.
    pub fn device_io_control(
        &self,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<IoResult, Status> {
        Self::sync(self.device_io_control_overlapped(code, input, output_len))
    }

    /// Overlapped `ReadFile` of `len` bytes.
    ///
    /// Errors: `STATUS_ACCESS_DENIED` without read access.
    pub fn read_overlapped(&self, len: usize) -> Result<PendingIo, Status> {
        let params = RequestParameters {
            kind: RequestType::Read,
            ioctl_code: 0,
            input_length: 0,
            output_length: len,
            offset: 0,
        };
        self.issue(params, Vec::new(), vec![0; len], self.file.access().read)
    }

    /// Synchronous `ReadFile`: the bytes read.
    ///
    /// Errors: `STATUS_ACCESS_DENIED`; the completion status.
    pub fn read(&self, len: usize) -> Result<Vec<u8>, Status> {
        Self::sync(self.read_overlapped(len)).map(|(d, _)| d)
    }

    /// Overlapped `WriteFile`.
    ///
    /// Errors: `STATUS_ACCESS_DENIED` without write access.
    pub fn write_overlapped(&self, data: &[u8]) -> Result<PendingIo, Status> {
        let params = RequestParameters {
            kind: RequestType::Write,
            ioctl_code: 0,
            input_length: data.len(),
            output_length: 0,
            offset: 0,
        };
        self.issue(params, data.to_vec(), Vec::new(), self.file.access().write)
    }

    /// Synchronous `WriteFile`: the bytes written (the information).
    ///
    /// Errors: `STATUS_ACCESS_DENIED`; the completion status.
    pub fn write(&self, data: &[u8]) -> Result<usize, Status> {
        Self::sync(self.write_overlapped(data)).map(|(_, n)| n)
    }

    /// `CloseHandle`: cleanup now; close once the handle's requests have completed.
    pub fn close(mut self) {
        self.close_inner();
    }

    fn close_inner(&mut self) {
        if std::mem::replace(&mut self.closed, true) || self.machine.is_shut_down() {
            return;
        }
        let _g = bind(&self.machine);
        self.file.close_handle();
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.close_inner();
        }
    }
}
