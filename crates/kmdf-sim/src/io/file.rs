//! File objects (`WDFFILEOBJECT`): create, cleanup and close.
//!
//! Every handle an [`Application`](super::app::Application) opens — and every remote
//! [`IoTarget`](super::IoTarget) a driver opens — is a [`FileObject`]. Its create request goes to
//! the top of the device stack ([`EvtDeviceFileCreate`], [`EvtFileClose`],
//! [Framework File Objects]):
//!
//! * `EvtDeviceFileCreate` ([`FileConfig::create`]) runs at `PASSIVE_LEVEL` **in the opener's
//!   thread** and completes (or forwards) the create request; a failure fails the open.
//! * With no create callback, a function driver's framework succeeds the create; a filter's
//!   forwards it down.
//! * Closing the handle sends a cleanup request at once (`EvtFileCleanup`) and the close request
//!   (`EvtFileClose`) only after every request of the file object has completed — from a system
//!   worker thread when the last one completes (an arbitrary thread at `PASSIVE_LEVEL`), or at
//!   once on the closing thread if none is outstanding. Cleanup and close are forwarded down by
//!   filters (`AutoForwardCleanupClose`) and succeeded by function drivers.
//! * The file object's `EvtCleanupCallback` ([`FileConfig::object_cleanup`], from the
//!   `FileObjectAttributes` of `WdfDeviceInitSetFileObjectConfig`) runs when the device's
//!   `WDFFILEOBJECT` is deleted: right after `EvtFileClose`, or — for a create that this device's
//!   layer completes with an error status — inside that completion, since the I/O manager sends
//!   no cleanup or close for a failed create (KMDF's create completion deletes the file object).
//!
//! A file object records who opened it: the application's name, whether it runs as an
//! administrator (see [`Request::is_requestor_administrator`](super::Request::is_requestor_administrator)),
//! the requestor mode and the access granted.
//!
//! [`EvtDeviceFileCreate`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_file_create
//! [`EvtFileClose`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_file_close
//! [Framework File Objects]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/framework-file-objects

use core::fmt;
use std::any::Any;
use std::sync::{Arc, Mutex};

use super::app::Access;
use super::request::{
    self, handle, ReqCore, Request, RequestParameters, RequestType, RequestorMode,
};
use super::{dispatch_to_device, file_config, forward_down, IO_MANAGER};
use crate::device::{lock, Device};
use crate::exec::{current_irql, require_max_irql, DriverScope, Irql, WorkItem};
use crate::machine::Machine;
use crate::object::MachineRef;
use crate::status::Status;
use crate::verifier::invoke_callback;

/// `EvtDeviceFileCreate`: device, the create request (complete it), the new file object.
pub type FileCreateFn = Arc<dyn Fn(&Device, Request, &FileObject) + Send + Sync>;
/// `EvtFileCleanup` / `EvtFileClose`.
pub type FileFn = Arc<dyn Fn(&FileObject) + Send + Sync>;

/// `WDF_FILEOBJECT_CONFIG` (set with [`set_file_object_config`](super::set_file_object_config)).
#[derive(Clone, Default)]
pub struct FileConfig {
    /// `EvtDeviceFileCreate`.
    pub create: Option<FileCreateFn>,
    /// `EvtFileCleanup`.
    pub cleanup: Option<FileFn>,
    /// `EvtFileClose`.
    pub close: Option<FileFn>,
    /// The file objects' `EvtCleanupCallback` (`FileObjectAttributes`): the `WDFFILEOBJECT` is
    /// deleted — after `EvtFileClose`, or when its create failed (see the module docs).
    pub object_cleanup: Option<FileFn>,
}

impl fmt::Debug for FileConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileConfig")
            .field("create", &self.create.is_some())
            .field("cleanup", &self.cleanup.is_some())
            .field("close", &self.close.is_some())
            .field("object_cleanup", &self.object_cleanup.is_some())
            .finish()
    }
}

impl FileConfig {
    /// No callbacks (`WDF_FILEOBJECT_CONFIG_INIT` with NULLs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `EvtDeviceFileCreate`.
    #[must_use]
    pub fn on_create(
        mut self,
        f: impl Fn(&Device, Request, &FileObject) + Send + Sync + 'static,
    ) -> Self {
        self.create = Some(Arc::new(f));
        self
    }

    /// Sets `EvtFileCleanup`.
    #[must_use]
    pub fn on_cleanup(mut self, f: impl Fn(&FileObject) + Send + Sync + 'static) -> Self {
        self.cleanup = Some(Arc::new(f));
        self
    }

    /// Sets `EvtFileClose`.
    #[must_use]
    pub fn on_close(mut self, f: impl Fn(&FileObject) + Send + Sync + 'static) -> Self {
        self.close = Some(Arc::new(f));
        self
    }

    /// Sets the file objects' `EvtCleanupCallback` (deletion: after close, or a failed create).
    #[must_use]
    pub fn on_object_cleanup(mut self, f: impl Fn(&FileObject) + Send + Sync + 'static) -> Self {
        self.object_cleanup = Some(Arc::new(f));
        self
    }
}

#[derive(Default)]
struct FileSt {
    outstanding: usize,
    cleaned_up: bool,
    close_sent: bool,
    context: Option<Arc<dyn Any + Send + Sync>>,
    close_item: Option<WorkItem>,
}

pub(crate) struct FileCore {
    id: u64,
    machine: MachineRef,
    device: Device,
    administrator: bool,
    access: Access,
    mode: RequestorMode,
    owner: String,
    st: Mutex<FileSt>,
}

/// A file object (`WDFFILEOBJECT`). Cheap to clone; equality is identity.
#[derive(Clone)]
pub struct FileObject(pub(crate) Arc<FileCore>);

impl PartialEq for FileObject {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for FileObject {}

impl fmt::Debug for FileObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileObject")
            .field("id", &self.0.id)
            .field("owner", &self.0.owner)
            .field("administrator", &self.0.administrator)
            .field("access", &self.0.access)
            .finish_non_exhaustive()
    }
}

impl FileObject {
    pub(crate) fn new(
        machine: &Machine,
        device: Device,
        administrator: bool,
        access: Access,
        mode: RequestorMode,
        owner: &str,
    ) -> Self {
        FileObject(Arc::new(FileCore {
            id: crate::exec::context::new_uid(),
            machine: MachineRef::new(machine),
            device,
            administrator,
            access,
            mode,
            owner: owner.to_owned(),
            st: Mutex::new(FileSt::default()),
        }))
    }

    /// A number identifying the file object.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The opener: the application's name, or the driver that opened a remote target.
    pub fn owner(&self) -> &str {
        &self.0.owner
    }

    /// The opener runs as an administrator (always true for kernel-mode opens).
    pub fn is_administrator(&self) -> bool {
        self.0.administrator
    }

    /// The access granted at open.
    pub fn access(&self) -> Access {
        self.0.access
    }

    /// User mode for applications, kernel mode for drivers.
    pub fn requestor_mode(&self) -> RequestorMode {
        self.0.mode
    }

    /// The device the file was opened on (the top of the stack).
    pub fn device(&self) -> &Device {
        &self.0.device
    }

    /// Stores the driver's per-file context (`WdfObjectGetTypedContext` on the file object).
    pub fn set_context<T: Any + Send + Sync>(&self, value: T) {
        lock(&self.0.st).context = Some(Arc::new(value));
    }

    /// The per-file context, if it is a `T`.
    pub fn context<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        lock(&self.0.st)
            .context
            .clone()
            .and_then(|c| c.downcast::<T>().ok())
    }

    /// Requests of this file object not yet completed.
    pub fn outstanding_requests(&self) -> usize {
        lock(&self.0.st).outstanding
    }

    pub(crate) fn io_started(&self) {
        lock(&self.0.st).outstanding += 1;
    }

    /// A request of this file completed; the deferred close goes out after the last one.
    pub(crate) fn io_done(&self) {
        let send = {
            let mut st = lock(&self.0.st);
            st.outstanding = st.outstanding.saturating_sub(1);
            st.cleaned_up && st.outstanding == 0 && !std::mem::replace(&mut st.close_sent, true)
        };
        if send {
            self.defer_close();
        }
    }

    fn defer_close(&self) {
        let Some(machine) = self.0.machine.machine() else {
            return;
        };
        let me = self.clone();
        let item = {
            let _scope = DriverScope::enter(IO_MANAGER);
            WorkItem::new(&machine, "IRP_MJ_CLOSE", move |_w| {
                // Release the file's hold on this item (file → item → closure → file would be a
                // reference cycle keeping the device and the machine alive); deleting an item
                // from its own callback does not wait for itself.
                let item = lock(&me.0.st).close_item.take();
                me.send_close();
                drop(item);
            })
        };
        // Stored before it is queued, so that its callback finds it to release.
        let mut st = lock(&self.0.st);
        st.close_item.insert(item).enqueue();
    }

    /// Sends a cleanup or close request for this file and returns once it completed (creates,
    /// cleanups and closes never wait on time: a driver that pends one blocks the closer).
    pub(crate) fn send_simple(&self, kind: RequestType) -> Status {
        let Some(machine) = self.0.machine.machine() else {
            return Status::INVALID_DEVICE_STATE;
        };
        let slot: Arc<Mutex<Option<Status>>> = Arc::new(Mutex::new(None));
        let s2 = Arc::clone(&slot);
        let core = ReqCore::new_io(
            &machine,
            RequestParameters {
                kind,
                ioctl_code: 0,
                input_length: 0,
                output_length: 0,
                offset: 0,
            },
            Vec::new(),
            self.0.mode,
            Some(self.clone()),
            super::request::Mem::default(),
            Box::new(move |s, _, _| *lock(&s2) = Some(s)),
        );
        dispatch_to_device(&self.0.device, &core);
        let _ = machine.wait_until("IoCallDriver", &format!("{kind:?}"), None, || {
            lock(&slot).is_some()
        });
        let s = lock(&slot).unwrap_or(Status::UNSUCCESSFUL);
        match kind {
            RequestType::Create if s.is_success() => crate::control::handle_opened(&self.0.device),
            RequestType::Close => crate::control::handle_closed(&self.0.device),
            _ => {}
        }
        s
    }

    fn send_close(&self) {
        let _ = self.send_simple(RequestType::Close);
    }

    /// The handle is closed: cleanup now, close once no request is outstanding.
    pub(crate) fn close_handle(&self) {
        let _ = self.send_simple(RequestType::Cleanup);
        let now = {
            let mut st = lock(&self.0.st);
            st.cleaned_up = true;
            st.outstanding == 0 && !std::mem::replace(&mut st.close_sent, true)
        };
        if now {
            if current_irql() == Irql::Passive {
                self.send_close();
            } else {
                self.defer_close();
            }
        }
    }
}

/// A create, cleanup or close request at `device`.
pub(crate) fn dispatch(device: &Device, core: &Arc<ReqCore>, kind: RequestType) {
    let cfg = file_config(device).unwrap_or_default();
    let Some(file) = core.file() else {
        request::complete_layer(core, Status::INVALID_DEVICE_REQUEST, 0);
        return;
    };
    let driver = device.driver().name().to_owned();
    match kind {
        RequestType::Create => {
            if let Some(f) = cfg.create {
                if !require_max_irql(Irql::Passive, "EvtDeviceFileCreate") {
                    request::complete_layer(core, Status::INVALID_DEVICE_STATE, 0);
                    return;
                }
                request::give_to_driver(core);
                request::set_taken(core, format!("EvtDeviceFileCreate of {}", device.name()));
                let h = handle(core);
                invoke_callback(&driver, device.name(), "EvtDeviceFileCreate", || {
                    f(device, h, &file);
                });
                return;
            }
        }
        RequestType::Cleanup => {
            if let Some(f) = cfg.cleanup {
                invoke_callback(&driver, device.name(), "EvtFileCleanup", || f(&file));
            }
        }
        _ => {
            if let Some(f) = cfg.close {
                invoke_callback(&driver, device.name(), "EvtFileClose", || f(&file));
            }
            // KMDF deletes the WDFFILEOBJECT after EvtFileClose.
            if let Some(f) = cfg.object_cleanup {
                invoke_callback(&driver, device.name(), "EvtCleanupCallback", || f(&file));
            }
        }
    }
    if device.is_filter() {
        forward_down(device, core);
    } else {
        request::complete_layer(core, Status::SUCCESS, 0);
    }
}

/// `device`'s layer of `core` is done with `status`: for a create that failed there, KMDF's
/// create completion deletes the device's `WDFFILEOBJECT` (no cleanup or close will come), so its
/// `EvtCleanupCallback` runs now, in the completing thread.
pub(crate) fn layer_completed(device: &Device, core: &Arc<ReqCore>, status: Status) {
    if status.is_success() || core.kind() != RequestType::Create {
        return;
    }
    let (Some(f), Some(file)) = (
        file_config(device).and_then(|c| c.object_cleanup),
        core.file(),
    ) else {
        return;
    };
    invoke_callback(
        device.driver().name(),
        device.name(),
        "EvtCleanupCallback",
        || f(&file),
    );
}
