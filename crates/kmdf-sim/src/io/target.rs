//! I/O targets (`WDFIOTARGET`): the local next-lower driver and remote targets.
//!
//! # Local target ([Controlling a General I/O Target's State])
//!
//! [`Device::io_target`](crate::device::Device::io_target) (`WdfDeviceGetIoTarget`) is the next
//! lower device of the stack; below the lowest device is the bus driver of the PDO, which the
//! simulator models as succeeding create/cleanup/close and failing every other request with
//! `STATUS_INVALID_DEVICE_REQUEST` (a test puts other behaviour there with
//! [`IoTarget::inject_fault`]). A [control device](crate::control) has nothing below it: every
//! request sent to its local target fails with `STATUS_INVALID_DEVICE_REQUEST`. The framework starts it with the device and, when the device is
//! torn down, closes it and cancels what is queued in it or sent through it.
//!
//! # Remote targets
//!
//! Based on [`WdfIoTargetOpen`] and [`WDF_IO_TARGET_OPEN_PARAMS_INIT_OPEN_BY_NAME`].
//!
//! [`IoTarget::create`] then [`IoTarget::open`] with [`OpenParams::by_name`] (a device-interface
//! symbolic link or a symbolic link made with
//! [`Device::create_symbolic_link`](crate::device::Device::create_symbolic_link), `FILE_OPEN`
//! semantics): a missing name fails with `STATUS_NOT_FOUND`, an open
//! target with `STATUS_INVALID_DEVICE_STATE`. Opening sends a kernel-mode create to the top of the
//! target's stack (a [`FileObject`]) and starts the target.
//!
//! [`IoTarget::open_stack_top`] opens a remote target on the top of a device's own stack
//! (`WDF_IO_TARGET_OPEN_PARAMS_INIT_EXISTING_DEVICE` with
//! `IoGetAttachedDeviceReference(WdfDeviceWdmGetDeviceObject(device))`,
//! [`WDF_IO_TARGET_OPEN_PARAMS_INIT_EXISTING_DEVICE`]): no create is sent and the target has no
//! file object; requests sent through it enter the stack at its top device (upper filters first,
//! then the device itself and what is below it) — the top *when it is opened*: opened in the
//! device's own `EvtDriverDeviceAdd`, before upper filters attach, that is the device itself, as
//! with `IoGetAttachedDeviceReference` in WDM. Such a target does not hook target-device-change
//! notifications (choice: KMDF registers them for the file object of a target opened by name; a
//! target on the owner's own stack is torn down with the owner); it is closed with
//! [`IoTarget::close`] and cannot be reopened with [`OpenParams::reopen`].
//!
//! # States ([Controlling a General I/O Target's State])
//!
//! [`TargetState::Started`] sends; [`TargetState::Stopped`] queues requests inside the target
//! (unless `IGNORE_TARGET_STATE` or send-and-forget) until [`IoTarget::start`];
//! [`TargetState::ClosedForQueryRemove`], [`TargetState::Closed`] and [`TargetState::Deleted`]
//! refuse sends with `STATUS_INVALID_DEVICE_STATE`.
//!
//! # Removal of the target's device
//!
//! Based on [Controlling a General I/O Target's State], [`EvtIoTargetQueryRemove`],
//! [`EvtIoTargetRemoveCanceled`] and [`EvtIoTargetRemoveComplete`]. A remote target hooks the
//! target device node's target-device-change notifications:
//!
//! * query-remove → `EvtIoTargetQueryRemove` (which calls
//!   [`close_for_query_remove`](IoTarget::close_for_query_remove) and returns success to allow,
//!   or returns a failure to veto). Without the callback the framework allows and closes for
//!   query-remove itself; it also does so if the callback allowed but left the target open.
//! * remove-cancelled → `EvtIoTargetRemoveCanceled` (which reopens with
//!   [`OpenParams::reopen`]). Without the callback the framework reopens a target it closed for
//!   query-remove (choice: these pages do not state the default; reopening mirrors the default
//!   close).
//! * remove-complete (also after surprise removal) → `EvtIoTargetRemoveComplete` (which
//!   [`close`](IoTarget::close)s). Without it, or if the target is still not closed afterwards,
//!   the framework closes it.
//!
//! [`WdfIoTargetOpen`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfiotarget/nf-wdfiotarget-wdfiotargetopen
//! [`WDF_IO_TARGET_OPEN_PARAMS_INIT_OPEN_BY_NAME`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfiotarget/nf-wdfiotarget-wdf_io_target_open_params_init_open_by_name
//! [`EvtIoTargetQueryRemove`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfiotarget/nc-wdfiotarget-evt_wdf_io_target_query_remove
//! [`EvtIoTargetRemoveCanceled`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfiotarget/nc-wdfiotarget-evt_wdf_io_target_remove_canceled
//! [`EvtIoTargetRemoveComplete`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfiotarget/nc-wdfiotarget-evt_wdf_io_target_remove_complete
//! [`WDF_IO_TARGET_OPEN_PARAMS_INIT_EXISTING_DEVICE`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfiotarget/nf-wdfiotarget-wdf_io_target_open_params_init_existing_device
//! [Controlling a General I/O Target's State]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/controlling-a-general-i-o-target-s-state

use core::fmt;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::app::{Access, IoResult};
use super::file::FileObject;
use super::request::{self, Loc, ReqCore, Request, RequestType, RequestorMode, SendOptions};
use super::{apply_fault, dispatch_to_device, take_fault, IoFaultSpec};
use crate::device::{lock, Device, DeviceInner};
use crate::exec::{require_max_irql, Irql};
use crate::interface::find_interface;
use crate::object::{MachineRef, ObjectAttributes, WdfObject};
use crate::pnp::{DeviceNode, TargetDeviceHook};
use crate::status::Status;
use crate::verifier::invoke_callback;

/// `WDF_IO_TARGET_STATE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetState {
    /// `WdfIoTargetStarted`.
    Started,
    /// `WdfIoTargetStopped`.
    Stopped,
    /// `WdfIoTargetClosedForQueryRemove`.
    ClosedForQueryRemove,
    /// `WdfIoTargetClosed`.
    Closed,
    /// `WdfIoTargetDeleted`.
    Deleted,
}

/// `WDF_IO_TARGET_SENT_IO_ACTION` for [`IoTarget::stop`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetStopAction {
    /// `WdfIoTargetCancelSentIo`.
    CancelSentIo,
    /// `WdfIoTargetLeaveSentIoPending`.
    LeaveSentIoPending,
}

/// `EvtIoTargetQueryRemove`.
pub type TargetQueryRemoveFn = Arc<dyn Fn(&IoTarget) -> Status + Send + Sync>;
/// `EvtIoTargetRemoveCanceled` / `EvtIoTargetRemoveComplete`.
pub type TargetFn = Arc<dyn Fn(&IoTarget) + Send + Sync>;

/// `WDF_IO_TARGET_OPEN_PARAMS`.
#[derive(Clone, Default)]
pub struct OpenParams {
    /// The symbolic link to open (`None`: reopen with the previous parameters).
    pub symbolic_link: Option<String>,
    /// `DesiredAccess`.
    pub access: Access,
    /// `EvtIoTargetQueryRemove`.
    pub query_remove: Option<TargetQueryRemoveFn>,
    /// `EvtIoTargetRemoveCanceled`.
    pub remove_canceled: Option<TargetFn>,
    /// `EvtIoTargetRemoveComplete`.
    pub remove_complete: Option<TargetFn>,
}

impl fmt::Debug for OpenParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenParams")
            .field("symbolic_link", &self.symbolic_link)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl OpenParams {
    /// `WDF_IO_TARGET_OPEN_PARAMS_INIT_OPEN_BY_NAME`.
    pub fn by_name(symbolic_link: &str, access: Access) -> Self {
        OpenParams {
            symbolic_link: Some(symbolic_link.to_owned()),
            access,
            ..Self::default()
        }
    }

    /// `WDF_IO_TARGET_OPEN_PARAMS_INIT_REOPEN`.
    pub fn reopen() -> Self {
        Self::default()
    }

    /// Sets `EvtIoTargetQueryRemove`.
    #[must_use]
    pub fn on_query_remove(
        mut self,
        f: impl Fn(&IoTarget) -> Status + Send + Sync + 'static,
    ) -> Self {
        self.query_remove = Some(Arc::new(f));
        self
    }

    /// Sets `EvtIoTargetRemoveCanceled`.
    #[must_use]
    pub fn on_remove_canceled(mut self, f: impl Fn(&IoTarget) + Send + Sync + 'static) -> Self {
        self.remove_canceled = Some(Arc::new(f));
        self
    }

    /// Sets `EvtIoTargetRemoveComplete`.
    #[must_use]
    pub fn on_remove_complete(mut self, f: impl Fn(&IoTarget) + Send + Sync + 'static) -> Self {
        self.remove_complete = Some(Arc::new(f));
        self
    }
}

struct Remote {
    device: Device,
    /// `None` for a target opened on an existing device ([`IoTarget::open_stack_top`]).
    file: Option<FileObject>,
}

struct TargetSt {
    state: TargetState,
    queued: VecDeque<Arc<ReqCore>>,
    sent: Vec<Weak<ReqCore>>,
    remote: Option<Remote>,
    params: Option<OpenParams>,
    hook: Option<(DeviceNode, u64)>,
}

pub(crate) struct TargetCore {
    object: Option<WdfObject>,
    machine: Option<MachineRef>,
    owner: Weak<DeviceInner>,
    local: bool,
    name: String,
    st: Mutex<TargetSt>,
    faults: Mutex<Vec<IoFaultSpec>>,
}

/// An I/O target handle. Cheap to clone; equality is identity.
#[derive(Clone)]
pub struct IoTarget(pub(crate) Arc<TargetCore>);

impl PartialEq for IoTarget {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for IoTarget {}

impl fmt::Debug for IoTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoTarget")
            .field("name", &self.0.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl IoTarget {
    pub(crate) fn local(device: &Device) -> IoTarget {
        IoTarget(Arc::new(TargetCore {
            object: None,
            machine: device.machine().as_ref().map(MachineRef::new),
            owner: Arc::downgrade(&device.0),
            local: true,
            name: format!("local target of {}", device.name()),
            st: Mutex::new(TargetSt {
                state: TargetState::Started,
                queued: VecDeque::new(),
                sent: Vec::new(),
                remote: None,
                params: None,
                hook: None,
            }),
            faults: Mutex::new(Vec::new()),
        }))
    }

    /// `WdfIoTargetCreate`: a remote target owned by `device` (closed until
    /// [`open`](Self::open); its WDFIOTARGET object is a child of the device, a fault point).
    ///
    /// Errors: `STATUS_INSUFFICIENT_RESOURCES` (fault injection); `STATUS_INVALID_DEVICE_STATE`
    /// if the device is deleted.
    pub fn create(device: &Device, attrs: ObjectAttributes) -> Result<IoTarget, Status> {
        let machine = device.machine().ok_or(Status::INVALID_DEVICE_STATE)?;
        let mut attrs = attrs;
        attrs.parent = Some(device.object().clone());
        let object = WdfObject::create(&machine, "WDFIOTARGET", attrs)?;
        let name = object.name().to_owned();
        Ok(IoTarget(Arc::new(TargetCore {
            object: Some(object),
            machine: Some(MachineRef::new(&machine)),
            owner: Arc::downgrade(&device.0),
            local: false,
            name,
            st: Mutex::new(TargetSt {
                state: TargetState::Closed,
                queued: VecDeque::new(),
                sent: Vec::new(),
                remote: None,
                params: None,
                hook: None,
            }),
            faults: Mutex::new(Vec::new()),
        })))
    }

    /// The trace name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// True for a remote target.
    pub fn is_remote(&self) -> bool {
        !self.0.local
    }

    /// The WDFIOTARGET object of a remote target.
    pub fn object(&self) -> Option<&WdfObject> {
        self.0.object.as_ref()
    }

    /// The device that owns the target.
    pub fn owner(&self) -> Option<Device> {
        self.0.owner.upgrade().map(Device)
    }

    /// The device requests go to: the next lower device (local; `None` at the bottom) or the top
    /// of the opened stack (remote; `None` while closed).
    pub fn target_device(&self) -> Option<Device> {
        if self.0.local {
            self.owner().and_then(|d| d.lower())
        } else {
            lock(&self.0.st).remote.as_ref().map(|r| r.device.clone())
        }
    }

    /// The file object of an open remote target.
    pub fn file_object(&self) -> Option<FileObject> {
        lock(&self.0.st)
            .remote
            .as_ref()
            .and_then(|r| r.file.clone())
    }

    /// `WdfIoTargetGetState`.
    pub fn state(&self) -> TargetState {
        if self.0.object.as_ref().is_some_and(WdfObject::is_deleted) {
            return TargetState::Deleted;
        }
        lock(&self.0.st).state
    }

    /// Makes `fault` apply to requests sent through this target (a misbehaving or slow driver
    /// below).
    pub fn inject_fault(&self, fault: IoFaultSpec) {
        lock(&self.0.faults).push(fault);
    }

    /// Removes the faults injected on this target.
    pub fn clear_faults(&self) {
        lock(&self.0.faults).clear();
    }

    fn trace(&self, text: &str) {
        if let Some(m) = &self.0.machine {
            super::trace(m, None, &self.0.name, text);
        }
    }

    fn driver_name(&self) -> String {
        self.owner().map_or_else(
            || super::IO_MANAGER.to_owned(),
            |d| d.driver().name().to_owned(),
        )
    }

    /// `WdfIoTargetOpen` (PASSIVE). See the [module docs](self).
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` if open (or local); `STATUS_NOT_FOUND` if no enabled
    /// interface has the name; `STATUS_INVALID_PARAMETER` for a reopen that was never opened;
    /// the status of a failed create.
    pub fn open(&self, params: OpenParams) -> Result<(), Status> {
        if !require_max_irql(Irql::Passive, "WdfIoTargetOpen") || self.0.local {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        let machine = self
            .0
            .machine
            .as_ref()
            .and_then(MachineRef::machine)
            .ok_or(Status::INVALID_DEVICE_STATE)?;
        let params = {
            let st = lock(&self.0.st);
            if matches!(st.state, TargetState::Started | TargetState::Stopped) {
                return Err(Status::INVALID_DEVICE_STATE);
            }
            if params.symbolic_link.is_some() {
                params
            } else {
                st.params.clone().ok_or(Status::INVALID_PARAMETER)?
            }
        };
        let link = params.symbolic_link.clone().unwrap_or_default();
        let (top, node) = if let Some(info) = find_interface(&machine, &link) {
            let node = info.device.node();
            let top = node
                .as_ref()
                .and_then(|n| n.stack().last().cloned())
                .unwrap_or(info.device);
            (top, node)
        } else {
            // A symbolic link (WdfDeviceCreateSymbolicLink), e.g. of a control device.
            let dev = crate::interface::resolve_link(&machine, &link, true, RequestorMode::Kernel)?
                .ok_or(Status::NOT_FOUND)?;
            let node = dev.node();
            (dev, node)
        };
        let file = FileObject::new(
            &machine,
            top.clone(),
            true,
            params.access,
            RequestorMode::Kernel,
            &self.driver_name(),
        );
        let s = file.send_simple(RequestType::Create);
        if !s.is_success() {
            return Err(s);
        }
        let need_hook = lock(&self.0.st).hook.is_none();
        let hook = match (need_hook, node) {
            (true, Some(n)) => {
                let id = n.register_target_hook(Arc::new(RemoteHook(Arc::downgrade(&self.0))));
                Some((n, id))
            }
            _ => None,
        };
        let mut st = lock(&self.0.st);
        st.remote = Some(Remote {
            device: top,
            file: Some(file),
        });
        st.params = Some(params);
        if hook.is_some() {
            st.hook = hook;
        }
        st.state = TargetState::Started;
        drop(st);
        self.trace(&format!("opened {link}"));
        Ok(())
    }

    /// `WdfIoTargetOpen` with `WDF_IO_TARGET_OPEN_PARAMS_INIT_EXISTING_DEVICE` on
    /// `IoGetAttachedDeviceReference(WdfDeviceWdmGetDeviceObject(device))` (PASSIVE): opens this
    /// remote target on the top of `device`'s own stack without a create (no file object) and
    /// starts it. See the [module docs](self).
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` if open (or local), if `device` is deleted or
    /// removed, or if the machine is gone.
    pub fn open_stack_top(&self, device: &Device) -> Result<(), Status> {
        if !require_max_irql(Irql::Passive, "WdfIoTargetOpen") || self.0.local {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        if self
            .0
            .machine
            .as_ref()
            .and_then(MachineRef::machine)
            .is_none()
            || device.object().is_deleted()
            || super::io_state(device)
                .removed
                .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        // A device still in its EvtDriverDeviceAdd is attached but nothing is above it yet (the
        // simulator adds it to the node's stack when the add returns): it is the top itself.
        let top = device
            .node()
            .map(|n| n.stack())
            .filter(|stack| stack.contains(device))
            .and_then(|stack| stack.last().cloned())
            .unwrap_or_else(|| device.clone());
        let mut st = lock(&self.0.st);
        if matches!(st.state, TargetState::Started | TargetState::Stopped) {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        let name = top.name().to_owned();
        st.remote = Some(Remote {
            device: top,
            file: None,
        });
        // Nothing to reopen: a reopen needs the parameters of an open by name.
        st.params = None;
        st.state = TargetState::Started;
        drop(st);
        self.trace(&format!(
            "opened on the top of the stack ({name}), no create"
        ));
        Ok(())
    }

    /// `WdfIoTargetStop`: requests sent from now on queue inside the target; sent ones are
    /// cancelled or left pending.
    pub fn stop(&self, action: TargetStopAction) {
        let sent = {
            let mut st = lock(&self.0.st);
            if st.state == TargetState::Started {
                st.state = TargetState::Stopped;
            }
            live(&mut st.sent)
        };
        if action == TargetStopAction::CancelSentIo {
            for c in sent {
                request::cancel(&c);
            }
        }
    }

    /// `WdfIoTargetStart`: sends what queued while stopped.
    pub fn start(&self) {
        let queued: Vec<_> = {
            let mut st = lock(&self.0.st);
            if st.state != TargetState::Stopped {
                return;
            }
            st.state = TargetState::Started;
            st.queued.drain(..).collect()
        };
        for c in queued {
            deliver(self, &c);
        }
    }

    /// `WdfIoTargetCloseForQueryRemove`: closes the file but keeps the parameters for a reopen.
    pub fn close_for_query_remove(&self) {
        self.shut(TargetState::ClosedForQueryRemove);
    }

    /// `WdfIoTargetClose`: cancels queued and sent requests, closes the file, forgets the
    /// notification hook.
    pub fn close(&self) {
        self.shut(TargetState::Closed);
        let hook = lock(&self.0.st).hook.take();
        if let Some((node, id)) = hook {
            node.unregister_target_hook(id);
        }
    }

    pub(crate) fn close_internal(&self, _removal: bool) {
        self.shut(TargetState::Closed);
    }

    fn shut(&self, to: TargetState) {
        let (queued, sent, remote) = {
            let mut st = lock(&self.0.st);
            st.state = to;
            let q: Vec<_> = st.queued.drain(..).collect();
            (q, live(&mut st.sent), st.remote.take())
        };
        for c in queued {
            request::complete_from_below(&c, Status::CANCELLED, 0);
        }
        for c in sent {
            request::cancel(&c);
        }
        if let Some(file) = remote.and_then(|r| r.file) {
            file.close_handle();
        }
        self.trace(&format!("{to:?}"));
    }

    fn sync_send(
        &self,
        format: impl FnOnce(&Request) -> Result<(), Status>,
        timeout: Option<Duration>,
    ) -> Result<IoResult, Status> {
        if !require_max_irql(Irql::Passive, "WdfIoTargetSend…Synchronously") {
            return Err(Status::INVALID_DEVICE_STATE);
        }
        let owner = self.owner().ok_or(Status::INVALID_DEVICE_STATE)?;
        let req = Request::create(&owner)?;
        format(&req)?;
        let s = req.send_synchronously(self, timeout);
        let info = req.information();
        let mut out = req.output();
        out.truncate(info.min(out.len()));
        let _ = req.delete();
        if s.is_success() {
            Ok((out, info))
        } else {
            Err(s)
        }
    }

    /// `WdfIoTargetSendIoctlSynchronously` (PASSIVE): output bytes and information.
    ///
    /// Errors: the completion status; `STATUS_IO_TIMEOUT` after `timeout` of virtual time.
    pub fn send_ioctl_synchronously(
        &self,
        code: u32,
        input: &[u8],
        output_len: usize,
        timeout: Option<Duration>,
    ) -> Result<IoResult, Status> {
        self.sync_send(|r| r.format_for_ioctl(code, input, output_len), timeout)
    }

    /// `WdfIoTargetSendInternalIoctlSynchronously` (PASSIVE).
    ///
    /// Errors: as [`send_ioctl_synchronously`](Self::send_ioctl_synchronously).
    pub fn send_internal_ioctl_synchronously(
        &self,
        code: u32,
        input: &[u8],
        output_len: usize,
        timeout: Option<Duration>,
    ) -> Result<IoResult, Status> {
        self.sync_send(
            |r| r.format_for_internal_ioctl(code, input, output_len),
            timeout,
        )
    }

    /// `WdfIoTargetSendReadSynchronously` (PASSIVE).
    ///
    /// Errors: as [`send_ioctl_synchronously`](Self::send_ioctl_synchronously).
    pub fn send_read_synchronously(
        &self,
        length: usize,
        timeout: Option<Duration>,
    ) -> Result<IoResult, Status> {
        self.sync_send(|r| r.format_for_read(length, 0), timeout)
    }

    /// `WdfIoTargetSendWriteSynchronously` (PASSIVE): returns the bytes written.
    ///
    /// Errors: as [`send_ioctl_synchronously`](Self::send_ioctl_synchronously).
    pub fn send_write_synchronously(
        &self,
        data: &[u8],
        timeout: Option<Duration>,
    ) -> Result<usize, Status> {
        self.sync_send(|r| r.format_for_write(data, 0), timeout)
            .map(|(_, n)| n)
    }
}

fn live(sent: &mut Vec<Weak<ReqCore>>) -> Vec<Arc<ReqCore>> {
    sent.retain(|w| w.strong_count() > 0);
    sent.iter().filter_map(Weak::upgrade).collect()
}

/// A request is sent through `t`.
pub(crate) fn submit(t: &IoTarget, core: &Arc<ReqCore>, opts: SendOptions) -> Result<(), Status> {
    let bypass = opts.ignore_target_state || opts.send_and_forget;
    {
        let mut st = lock(&t.0.st);
        match st.state {
            TargetState::Started => {}
            TargetState::Stopped if bypass => {}
            TargetState::Stopped => {
                st.queued.push_back(Arc::clone(core));
                st.sent.push(Arc::downgrade(core));
                drop(st);
                lock(&core.st).loc = Loc::InTarget(Arc::downgrade(&t.0));
                core.trace(&format!("queued in stopped {}", t.0.name));
                return Ok(());
            }
            _ => return Err(Status::INVALID_DEVICE_STATE),
        }
        st.sent.retain(|w| w.strong_count() > 0);
        st.sent.push(Arc::downgrade(core));
    }
    if let Some(fault) = take_fault(&t.0.faults, core.kind()) {
        let t2 = t.clone();
        apply_fault(core, fault, &t.0.name, Box::new(move |c| deliver(&t2, &c)));
        return Ok(());
    }
    deliver(t, core);
    Ok(())
}

fn deliver(t: &IoTarget, core: &Arc<ReqCore>) {
    if let Some(dev) = t.target_device() {
        dispatch_to_device(&dev, core);
    } else if t.0.local && t.owner().is_some_and(|d| d.is_control()) {
        // A control device has nothing below it (KMDF gives it no local target at all).
        let s = Status::INVALID_DEVICE_REQUEST;
        core.trace(&format!("no device below a control device: {s}"));
        request::complete_from_below(core, s, 0);
    } else {
        // The bus driver of the PDO.
        let s = match core.kind() {
            RequestType::Create | RequestType::Cleanup | RequestType::Close => Status::SUCCESS,
            _ => Status::INVALID_DEVICE_REQUEST,
        };
        core.trace(&format!("completed by the bus driver with {s}"));
        request::complete_from_below(core, s, 0);
    }
}

/// Removes a request queued in a stopped target (cancellation).
pub(crate) fn remove_queued(t: &Arc<TargetCore>, core: &Arc<ReqCore>) -> bool {
    let mut st = lock(&t.st);
    let pos = st.queued.iter().position(|c| Arc::ptr_eq(c, core));
    pos.and_then(|p| st.queued.remove(p)).is_some()
}

struct RemoteHook(Weak<TargetCore>);

impl RemoteHook {
    fn target(&self) -> Option<IoTarget> {
        self.0.upgrade().map(IoTarget)
    }
}

impl TargetDeviceHook for RemoteHook {
    fn query_remove(&self, _node: &DeviceNode) -> Status {
        let Some(t) = self.target() else {
            return Status::SUCCESS;
        };
        if !matches!(t.state(), TargetState::Started | TargetState::Stopped) {
            return Status::SUCCESS;
        }
        let cb = lock(&t.0.st)
            .params
            .as_ref()
            .and_then(|p| p.query_remove.clone());
        if let Some(f) = cb {
            let s = invoke_callback(
                &t.driver_name(),
                &t.0.name,
                "EvtIoTargetQueryRemove",
                || f(&t),
            );
            if !s.is_success() {
                return s;
            }
        }
        if matches!(t.state(), TargetState::Started | TargetState::Stopped) {
            t.close_for_query_remove();
        }
        Status::SUCCESS
    }

    fn remove_canceled(&self, _node: &DeviceNode) {
        let Some(t) = self.target() else {
            return;
        };
        let cb = lock(&t.0.st)
            .params
            .as_ref()
            .and_then(|p| p.remove_canceled.clone());
        if let Some(f) = cb {
            invoke_callback(
                &t.driver_name(),
                &t.0.name,
                "EvtIoTargetRemoveCanceled",
                || {
                    f(&t);
                },
            );
        } else if t.state() == TargetState::ClosedForQueryRemove {
            let _ = t.open(OpenParams::reopen());
        }
    }

    fn remove_complete(&self, _node: &DeviceNode) {
        let Some(t) = self.target() else {
            return;
        };
        let cb = lock(&t.0.st)
            .params
            .as_ref()
            .and_then(|p| p.remove_complete.clone());
        if let Some(f) = cb {
            invoke_callback(
                &t.driver_name(),
                &t.0.name,
                "EvtIoTargetRemoveComplete",
                || {
                    f(&t);
                },
            );
        }
        if t.state() != TargetState::Closed {
            t.close();
        }
    }
}
