//! # DeviceInterfaceTarget
//!
//! ## Summary
//!
//! Waits for a device interface of a given class to appear, opens it as a remote I/O target and
//! offers the RequestTarget / ContinuousRequestTarget API against it; closes it when the device
//! goes away and reopens it when it comes back (C DMF: `Dmf_DeviceInterfaceTarget.c`). The
//! Module is *open* exactly while it has an open target: its Methods fail with
//! `STATUS_INVALID_DEVICE_STATE` otherwise, and the client's PostOpen / PreClose callbacks
//! (`ModuleSpec::on_post_open` / `on_pre_close`) are its arrival and removal notifications.
//!
//! ## Configuration
//!
//! [`DeviceInterfaceTargetConfig`]:
//! - `interface_guid` — `DeviceInterfaceTargetGuid`;
//! - `read`, `write` — the access the target is opened with (`OpenMode`). `ShareAccess` is not
//!   ported: targets open with share access 0 (`WDF_IO_TARGET_OPEN_PARAMS_INIT_OPEN_BY_NAME`'s,
//!   and C DMF's default config); the platform contract has no share-access field and the
//!   simulator models no sharing;
//! - `stream` — the embedded `ContinuousRequestTargetModuleConfig`: with `Some` (and a non-zero
//!   `request_count`) the Module streams through a ContinuousRequestTarget child; with `None` it
//!   has a RequestTarget child and offers one-shot sends only. With `mode: Automatic` streaming
//!   runs while the target is open and the device is in D0; with `Manual` the client starts it
//!   (typically in PostOpen);
//! - `output_callback` — the stream's output callback, receiving this Module's handle (C DMF
//!   redirects the child's callback through the parent the same way); if `None`, the embedded
//!   config's own callback (receiving the child's handle) is used;
//! - `query_remove` — `EvtDeviceInterfaceTargetOnStateChangeEx` for `QueryRemove` alone: return
//!   `false` to veto the removal of the target's device;
//! - `on_state_change` — `EvtDeviceInterfaceTargetOnStateChangeEx` (and the legacy
//!   `EvtDeviceInterfaceTargetOnStateChange`, merged): every [`TargetStateChange`] of the target
//!   (`Open`, `QueryRemove`, `RemoveCancel`, `RemoveComplete`, `Close`); an `Err` vetoes `Open`
//!   and `QueryRemove`;
//! - `on_pnp_notification` — `EvtDeviceInterfaceTargetOnPnpNotification`: asked at each
//!   arrival whether to open that interface instance (C DMF's `IoTargetOpen` out-parameter).
//!
//! `passive_level(true)` on the spec is passed on to the child: stream and one-shot completions
//! then reach the client at `PASSIVE_LEVEL`.
//!
//! ## Methods
//!
//! | Method | C DMF | IRQL |
//! |---|---|---|
//! | [`send_synchronously`](RequestSender::send_synchronously) | `DMF_DeviceInterfaceTarget_SendSynchronously` | PASSIVE |
//! | [`send`](RequestSender::send) | `DMF_DeviceInterfaceTarget_Send` / `…SendEx` | ≤ DISPATCH |
//! | [`cancel`](RequestSender::cancel) | `DMF_DeviceInterfaceTarget_Cancel` | ≤ DISPATCH |
//! | [`reuse_create`](RequestReuse::reuse_create) | `DMF_DeviceInterfaceTarget_ReuseCreate` | ≤ DISPATCH |
//! | [`reuse_send`](RequestReuse::reuse_send) | `DMF_DeviceInterfaceTarget_ReuseSend` | ≤ DISPATCH |
//! | [`reuse_delete`](RequestReuse::reuse_delete) | `DMF_DeviceInterfaceTarget_ReuseDelete` | PASSIVE |
//! | [`DeviceInterfaceTarget::stream_start`] | `DMF_DeviceInterfaceTarget_StreamStart` | ≤ DISPATCH |
//! | [`DeviceInterfaceTarget::stream_stop`] | `DMF_DeviceInterfaceTarget_StreamStop` | PASSIVE |
//! | [`DeviceInterfaceTarget::buffer_put`] | `DMF_DeviceInterfaceTarget_BufferPut` | ≤ DISPATCH |
//! | [`DeviceInterfaceTarget::get_target`] | `DMF_DeviceInterfaceTarget_Get` | ≤ DISPATCH |
//! | [`DeviceInterfaceTarget::guid_get`] | `DMF_DeviceInterfaceTarget_GuidGet` | ≤ DISPATCH |
//! | [`DeviceInterfaceTarget::symbolic_link`] | — | ≤ DISPATCH |
//!
//! The one-shot sends are the [`RequestSender`] Methods every target Module shares; they take a
//! [`SendRequest`](crate::request_target::SendRequest). The reuse Methods are the
//! [`RequestReuse`] Methods (written once in RequestTarget). Every C DMF Method of the Module is
//! here; `GuidGet` fails while no target is open, as every Method of this Module does (C DMF's
//! answers at any time — the GUID is the client's own config).
//!
//! ## Callbacks
//!
//! [`DeviceInterfaceOutputCallback`] (see the config), [`QueryRemoveCallback`],
//! [`StateChangeCallback`] (`EVT_DMF_DeviceInterfaceTarget_OnStateChange[Ex]`),
//! [`PnpNotificationCallback`] (`EVT_DMF_DeviceInterfaceTarget_OnPnpNotification`), and the
//! client event callbacks of every Module (PostOpen on arrival and after a cancelled removal,
//! PreClose before the target is closed). Order at arrival: `on_pnp_notification`, target
//! opened, `on_state_change(Open)`, Module opened (PostOpen). At removal:
//! `on_state_change(QueryRemove / RemoveComplete / Close)`, then PreClose and the close. After
//! a cancelled removal: reopened, PostOpen, `on_state_change(RemoveCancel)`. `EvtPnpCustom…`
//! (user mode only) is not ported.
//!
//! ## Remarks
//!
//! - NotificationRegister (`NOTIFY_PrepareHardware`; `NOTIFY_Create` when created dynamically,
//!   see below) registers for interface arrival and removal on the Module's device
//!   (`IoRegisterPlugPlayNotification` with existing interfaces included).
//! - **Arrival**: ignored while a target is open (duplicates happen); otherwise a remote target
//!   is created and opened by symbolic link with query-remove / remove-canceled /
//!   remove-complete callbacks, handed to the child, the Module is opened (`notification_open`:
//!   PostOpen runs) and automatic streaming starts.
//! - **Removal** (interface removed, remove-complete without a query — surprise removal —, or
//!   NotificationUnregister): automatic streaming stops and is waited for, the Module is closed
//!   (`notification_close`: PreClose runs, then the rundown waits for Methods in flight), the
//!   child's requests are cancelled and waited for, and the target is closed.
//! - **Query-remove**: the client may veto; otherwise as removal but the target is only closed
//!   for query-remove. **Remove-canceled** reopens it (`TargetOpenParams::reopen`), reopens the
//!   Module and restarts automatic streaming; if the reopen fails the target is dropped and the
//!   Module waits for the next arrival. **Remove-complete** after a query-remove closes it.
//! - The PnP-side events are serialized by a PASSIVE_LEVEL lock of the Module, and a state
//!   (`Idle`, `Open`, `QueryRemoved`) decides what each one does, so nothing closes twice
//!   (C DMF's "close reason").
//! - A Method that sends synchronously holds the Module open; a synchronous request that never
//!   completes (a parked `GET_INTERRUPT_MESSAGE`) holds off a removal, as in C DMF. Prefer
//!   asynchronous sends for requests that may wait: those are cancelled by a removal.
//! - The stream's output buffers can be kept by the client ([`StreamCompletion::keep`],
//!   `output_buffer_count` in the embedded config) and come back with
//!   [`buffer_put`](DeviceInterfaceTarget::buffer_put) while a target is open; put while none
//!   is, it is refused and freed (the stream then has one spare buffer less).
//! - Each arrival creates a new remote target (`WdfIoTargetCreate`); a target given up for good
//!   (removal, a vetoed or failed open, a failed reopen) is closed and deleted
//!   (`WdfObjectDelete`), as C DMF's close does, so targets do not pile up on a long-lived
//!   device. A client that kept the `IoTarget` of [`get_target`](DeviceInterfaceTarget::get_target)
//!   must not use it after PreClose.
//! - **Dynamic use**: as C DMF (`DmfModuleAttributes->DynamicModule`), the open option is chosen
//!   when the Module is created: `NOTIFY_Create` for a dynamic instance. So
//!   `DeviceInterfaceTarget::with(config).create(&parent)` works at any time on a parent bound
//!   to a device (the device's `ModuleCollection`, or a Module's `Scope`): it registers before
//!   `create` returns (an interface already present opens it from inside `create`, PostOpen
//!   included), survives removal and arrival as a static instance does, and deleting (dropping)
//!   the `DynamicModule` unregisters — closing an open target first, PreClose included. The one
//!   difference (`is_dynamic`): it streams in manual mode only (`stream_start` /
//!   `stream_stop`); automatic streaming follows D0Entry/D0Exit, which never reach a dynamic
//!   Module, so an automatic `stream` config fails `create` with `STATUS_INVALID_PARAMETER`.
//! - Open option `NOTIFY_PrepareHardware` (dynamic: `NOTIFY_Create`), DISPATCH_MAXIMUM lock.
//!
//! ## Category
//!
//! Targets.
//!
//! # Example
//!
//! ```
//! use dmf_core::module::{CollectionConfig, ModuleCollection, ModuleInit};
//! use dmf_core::platform::contract::device::Guid;
//! use dmf_core::NtStatus;
//! use dmf_modules::device_interface_target::{DeviceInterfaceTarget, DeviceInterfaceTargetConfig};
//! use dmf_modules::request_target::{RequestSender, SendRequest};
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! let mut init = ModuleInit::new();
//! let token = init.add(DeviceInterfaceTarget::with(DeviceInterfaceTargetConfig::new(
//!     Guid::new(0x573E_8C73, 0x0CB4, 0x4471, [0xA1, 0xBF, 0xFA, 0xB2, 0x6C, 0x31, 0xD3, 0x84]),
//! )));
//! // Its children's work items are children of its device: a device on the simulator.
//! let (_node, device) = dmf_core::platform::simulator::plug_in_device(&machine, "example")?;
//! let config = CollectionConfig { device: Some(device), ..CollectionConfig::default() };
//! let modules = ModuleCollection::create(init, config)?;
//! let target = modules.get(token)?;
//! // No interface has arrived: the Module is closed.
//! assert_eq!(target.get_target().err(), Some(NtStatus::INVALID_DEVICE_STATE));
//! assert_eq!(
//!     target.send_synchronously(&SendRequest::ioctl(0x22_2000, &[], 1)).err(),
//!     Some(NtStatus::INVALID_DEVICE_STATE)
//! );
//! modules.destroy();
//! # Ok::<(), NtStatus>(())
//! ```

use alloc::string::String;
use alloc::sync::{Arc, Weak};

use dmf_core::fallible::{try_arc, try_string};
use dmf_core::module::{Added, Dispatched, ModuleCallbacks, ModuleInit, PowerDeviceState, Scope};
use dmf_core::platform::contract::device::{Guid, PlatformDevice};
use dmf_core::platform::contract::io::{InterfaceChange, PlatformIoTarget};
use dmf_core::platform::{Device, InterfaceNotification, IoTarget, TargetOpenParams};
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
pub type DeviceInterfaceOutputCallback =
    Arc<dyn Fn(&DeviceInterfaceTarget, &StreamCompletion<'_>) -> BufferDisposition + Send + Sync>;

/// Query-remove of the target's device: `false` vetoes it.
pub type QueryRemoveCallback = Arc<dyn Fn(&DeviceInterfaceTarget) -> bool + Send + Sync>;

/// `DeviceInterfaceTarget_StateType`: what is happening to the target, as the
/// [`StateChangeCallback`] hears it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetStateChange {
    /// `…_Open`: a target was opened; the Module opens next (an `Err` vetoes: the target is
    /// closed again and the Module waits for the next arrival).
    Open,
    /// `…_QueryRemove`: the target's device is asked to go (an `Err` vetoes the removal).
    QueryRemove,
    /// `…_RemoveCancel`: the removal was cancelled; the target was reopened and the Module
    /// opened again.
    RemoveCancel,
    /// `…_RemoveComplete`: the target's device is gone (after a query-remove, or surprise
    /// removal); the Module closes next if it is still open.
    RemoveComplete,
    /// `…_Close`: the Module closes its target for another reason — the interface went away, or
    /// the Module's own NotificationUnregister (its device leaving, a dynamic Module deleted).
    Close,
}

/// `EVT_DMF_DeviceInterfaceTarget_OnStateChangeEx` (and `…OnStateChange`, merged: a callback
/// that never vetoes returns `Ok(())`): called at `PASSIVE_LEVEL`, serialized with the other
/// PnP events of the Module. Its `Err` vetoes [`TargetStateChange::Open`] and
/// [`TargetStateChange::QueryRemove`]; for the others it is ignored.
pub type StateChangeCallback =
    Arc<dyn Fn(&DeviceInterfaceTarget, TargetStateChange) -> NtResult<()> + Send + Sync>;

/// `EVT_DMF_DeviceInterfaceTarget_OnPnpNotification`: an interface of the class arrived at this
/// symbolic link while no target is open; `true` opens it (C DMF's `IoTargetOpen`
/// out-parameter), `false` ignores this arrival.
pub type PnpNotificationCallback = Arc<dyn Fn(&DeviceInterfaceTarget, &str) -> bool + Send + Sync>;

/// `DMF_CONFIG_DeviceInterfaceTarget`.
#[derive(Clone)]
pub struct DeviceInterfaceTargetConfig {
    /// `DeviceInterfaceTargetGuid`.
    pub interface_guid: Guid,
    /// Open the target for reading.
    pub read: bool,
    /// Open the target for writing.
    pub write: bool,
    /// `ContinuousRequestTargetModuleConfig` (`None`: one-shot sends only).
    pub stream: Option<ContinuousRequestTargetConfig>,
    /// The stream's output callback with this Module's handle (overrides the embedded one).
    pub output_callback: Option<DeviceInterfaceOutputCallback>,
    /// `EvtDeviceInterfaceTargetOnStateChangeEx(QueryRemove)`: `false` vetoes.
    pub query_remove: Option<QueryRemoveCallback>,
    /// `EvtDeviceInterfaceTargetOnStateChangeEx` / `EvtDeviceInterfaceTargetOnStateChange`.
    pub on_state_change: Option<StateChangeCallback>,
    /// `EvtDeviceInterfaceTargetOnPnpNotification`.
    pub on_pnp_notification: Option<PnpNotificationCallback>,
}

impl DeviceInterfaceTargetConfig {
    /// A config for `interface_guid`: read/write access, no streaming, no callbacks.
    pub fn new(interface_guid: Guid) -> Self {
        DeviceInterfaceTargetConfig {
            interface_guid,
            read: true,
            write: true,
            stream: None,
            output_callback: None,
            query_remove: None,
            on_state_change: None,
            on_pnp_notification: None,
        }
    }
}

impl core::fmt::Debug for DeviceInterfaceTargetConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceInterfaceTargetConfig")
            .field("interface_guid", &self.interface_guid)
            .field("read", &self.read)
            .field("write", &self.write)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// A remote target found by device interface, surviving removal. Open option
/// `NOTIFY_PrepareHardware`; created dynamically, `NOTIFY_Create` (as C DMF chooses at create
/// time). See the [module documentation](self).
#[dmf_module(crate = dmf_core, config = DeviceInterfaceTargetConfig, context = Context, open = NotifyPrepareHardware, dynamic_open = NotifyCreate, lock = DispatchMaximum)]
pub struct DeviceInterfaceTarget;

#[derive(Default)]
struct Context {
    stream: Option<Added<ContinuousRequestTarget>>,
    single: Option<Added<RequestTarget>>,
    hub: Option<Arc<Hub>>,
    /// Why ChildModulesAdd could not make the hub: NotificationRegister fails with it.
    failure: Option<NtStatus>,
}

/// Where the target stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No target.
    Idle,
    /// Target open, Module open.
    Open,
    /// Closed for query-remove: the target waits for remove-canceled or remove-complete.
    QueryRemoved,
}

struct HubState {
    handle: Option<DeviceInterfaceTarget>,
    device: Option<Device>,
    sink: Option<Sink>,
    notification: Option<InterfaceNotification>,
    link: Option<String>,
    target: Option<IoTarget>,
    phase: Phase,
    in_d0: bool,
}

/// What the Module, its notification and its target's callbacks share (they cannot enter the
/// Module while it is closed). The handle inside is cleared at unregister and destroy, which
/// breaks the cycle Module → context → hub → handle.
struct Hub {
    /// Serializes arrival, removal, query-remove, remove-canceled/complete and unregister.
    pnp: ModuleLock<()>,
    state: ModuleLock<HubState>,
    guid: Guid,
    read: bool,
    write: bool,
    automatic: bool,
    query_remove: Option<QueryRemoveCallback>,
    on_state_change: Option<StateChangeCallback>,
    on_pnp_notification: Option<PnpNotificationCallback>,
}

impl Hub {
    /// Tells the client's state callback (if any) about `change`; its verdict (`Ok` without
    /// a callback).
    fn state_change(
        &self,
        handle: &DeviceInterfaceTarget,
        change: TargetStateChange,
    ) -> NtResult<()> {
        self.on_state_change
            .as_ref()
            .map_or(Ok(()), |callback| callback(handle, change))
    }

    fn snapshot(&self) -> Option<(DeviceInterfaceTarget, Sink)> {
        let state = self.state.lock();
        Some((state.handle.clone()?, state.sink.clone()?))
    }

    fn on_change(self: &Arc<Self>, change: &InterfaceChange) {
        match change {
            InterfaceChange::Arrival(link) => self.arrival(link),
            InterfaceChange::Removal(link) => self.removal(Some(link), TargetStateChange::Close),
        }
    }

    /// An interface arrived: open it unless a target is open already.
    fn arrival(self: &Arc<Self>, link: &str) {
        let _pnp = self.pnp.lock();
        let (device, handle, sink) = {
            let state = self.state.lock();
            if state.link.is_some() || state.phase != Phase::Idle {
                return;
            }
            match (&state.device, &state.handle, &state.sink) {
                (Some(d), Some(h), Some(s)) => (d.clone(), h.clone(), s.clone()),
                _ => return,
            }
        };
        // The client decides whether this instance is opened (no lock is held).
        if !self
            .on_pnp_notification
            .as_ref()
            .is_none_or(|callback| callback(&handle, link))
        {
            return;
        }
        // Everything is allocated before the target is created: an interface that arrives
        // while memory is short is not opened, and nothing is left half done.
        let Ok((params, kept)) = self.open_params(link) else {
            return;
        };
        let Ok(target) = device.create_io_target() else {
            return;
        };
        if target.open(params).is_err() {
            // Never opened: only the object goes.
            let _ = target.delete();
            return;
        }
        if self.state_change(&handle, TargetStateChange::Open).is_err() {
            // Vetoed by the client: the target goes again, the Module stays closed.
            discard(&target);
            return;
        }
        {
            let mut state = self.state.lock();
            state.link = Some(kept);
            state.target = Some(target.clone());
        }
        self.open_module(&handle, &sink, &target);
    }

    /// The open parameters of the interface at `link` (this hub's access and target
    /// callbacks), and a copy of `link` to keep.
    fn open_params(self: &Arc<Self>, link: &str) -> NtResult<(TargetOpenParams, String)> {
        let weak = Arc::downgrade(self);
        let query_remove =
            try_arc(move |_t: &IoTarget| weak.upgrade().map_or(Ok(()), |hub| hub.query_removal()))?;
        let weak: Weak<Hub> = Arc::downgrade(self);
        let remove_canceled = try_arc(move |_t: &IoTarget| {
            if let Some(hub) = weak.upgrade() {
                hub.remove_canceled();
            }
        })?;
        let weak: Weak<Hub> = Arc::downgrade(self);
        let remove_complete = try_arc(move |_t: &IoTarget| {
            if let Some(hub) = weak.upgrade() {
                hub.removal(None, TargetStateChange::RemoveComplete);
            }
        })?;
        let params = TargetOpenParams {
            symbolic_link: Some(try_string(link)?),
            read: self.read,
            write: self.write,
            query_remove: Some(query_remove),
            remove_canceled: Some(remove_canceled),
            remove_complete: Some(remove_complete),
        };
        Ok((params, try_string(link)?))
    }

    /// Hands the open target to the child and opens the Module (PostOpen runs).
    fn open_module(&self, handle: &DeviceInterfaceTarget, sink: &Sink, target: &IoTarget) {
        // Open before PostOpen runs, so that the client's PostOpen can use `get_target`.
        self.state.lock().phase = Phase::Open;
        let opened = sink
            .set_target(target.clone())
            .and_then(|()| handle.notification_open());
        if opened.is_ok() {
            let start = self.automatic && self.state.lock().in_d0;
            if start {
                if let Ok(stream) = sink.stream() {
                    let _ = stream.stream_start();
                }
            }
        } else {
            // Vetoed by the client (or no child): give the target up.
            sink.clear_and_wait();
            discard(target);
            self.forget();
        }
    }

    fn forget(&self) {
        let mut state = self.state.lock();
        state.link = None;
        state.target = None;
        state.phase = Phase::Idle;
    }

    /// Stops automatic streaming, closes the Module (PreClose, rundown), stops the child's I/O.
    fn close_module(&self, handle: &DeviceInterfaceTarget, sink: &Sink) {
        if self.automatic {
            if let Ok(stream) = sink.stream() {
                let _ = stream.stop_and_wait();
            }
        }
        handle.notification_close();
        sink.clear_and_wait();
    }

    /// Interface removal (`link`), remove-complete or unregister (`None`): close for good;
    /// `change` is what the client's state callback hears (`Close` or `RemoveComplete`).
    fn removal(&self, link: Option<&str>, change: TargetStateChange) {
        let _pnp = self.pnp.lock();
        let (phase, target) = {
            let state = self.state.lock();
            if let (Some(link), Some(current)) = (link, &state.link) {
                if !current.eq_ignore_ascii_case(link) {
                    return;
                }
            }
            (state.phase, state.target.clone())
        };
        match phase {
            Phase::Idle => return,
            Phase::Open => {
                if let Some((handle, sink)) = self.snapshot() {
                    // Before the Module closes, so that the client stops using it.
                    let _ = self.state_change(&handle, change);
                    self.close_module(&handle, &sink);
                }
            }
            Phase::QueryRemoved => {
                // Closed at the query already: the interface going away or remove-complete
                // completes the removal (NotificationUnregister meanwhile says nothing more, as
                // C DMF's close reason has it).
                let handle = self.state.lock().handle.clone();
                let completes = link.is_some() || change == TargetStateChange::RemoveComplete;
                if let (true, Some(handle)) = (completes, handle) {
                    let _ = self.state_change(&handle, TargetStateChange::RemoveComplete);
                }
            }
        }
        if let Some(target) = target {
            discard(&target);
        }
        self.forget();
    }

    /// `EvtIoTargetQueryRemove`: the client may veto; otherwise close for query-remove.
    fn query_removal(&self) -> NtResult<()> {
        let _pnp = self.pnp.lock();
        let target = {
            let state = self.state.lock();
            if state.phase != Phase::Open {
                return Ok(());
            }
            state.target.clone()
        };
        let Some((handle, sink)) = self.snapshot() else {
            return Ok(());
        };
        // No callback: accept.
        if !self
            .query_remove
            .as_ref()
            .is_none_or(|callback| callback(&handle))
        {
            return Err(NtStatus::UNSUCCESSFUL);
        }
        self.state_change(&handle, TargetStateChange::QueryRemove)?;
        self.close_module(&handle, &sink);
        if let Some(target) = target {
            target.close_for_query_remove();
        }
        self.state.lock().phase = Phase::QueryRemoved;
        Ok(())
    }

    /// `EvtIoTargetRemoveCanceled`: reopen the target and the Module.
    fn remove_canceled(&self) {
        let _pnp = self.pnp.lock();
        let target = {
            let state = self.state.lock();
            if state.phase != Phase::QueryRemoved {
                return;
            }
            state.target.clone()
        };
        let Some(target) = target else {
            return;
        };
        let snapshot = self.snapshot();
        if let (Ok(()), Some((handle, sink))) = (target.open(TargetOpenParams::reopen()), snapshot)
        {
            self.open_module(&handle, &sink, &target);
            if self.state.lock().phase == Phase::Open {
                let _ = self.state_change(&handle, TargetStateChange::RemoveCancel);
            }
        } else {
            discard(&target);
            self.forget();
        }
    }

    /// Drops what points back at the Module.
    fn detach(&self) {
        let mut state = self.state.lock();
        state.handle = None;
        state.device = None;
        state.sink = None;
    }

    /// The child doing the I/O (`STATUS_INVALID_DEVICE_STATE` while not registered).
    fn sink(&self) -> NtResult<Sink> {
        self.state
            .lock()
            .sink
            .clone()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)
    }

    /// `DMF_DeviceInterfaceTarget_Get`.
    fn get_target(&self) -> NtResult<IoTarget> {
        let state = self.state.lock();
        match state.phase {
            Phase::Open => state.target.clone().ok_or(NtStatus::INVALID_DEVICE_STATE),
            _ => Err(NtStatus::INVALID_DEVICE_STATE),
        }
    }

    fn symbolic_link(&self) -> NtResult<String> {
        let state = self.state.lock();
        try_string(
            state
                .link
                .as_deref()
                .ok_or(NtStatus::INVALID_DEVICE_STATE)?,
        )
    }
}

/// Gives an opened remote target up for good: `WdfIoTargetClose`, then `WdfObjectDelete`, as
/// C DMF's close does (each arrival creates a new one).
fn discard(target: &IoTarget) {
    target.close();
    // Refused only for a target deleted already: nothing more to do.
    let _ = target.delete();
}

fn hub(module: &Scope<'_, DeviceInterfaceTarget>) -> NtResult<Arc<Hub>> {
    module
        .lock()
        .hub
        .clone()
        .ok_or(NtStatus::INVALID_DEVICE_STATE)
}

/// The hub of a Module with `config`, and the stream child's output callback redirected to the
/// client's with this Module's handle (when both are configured).
fn hub_create(
    config: &DeviceInterfaceTargetConfig,
) -> NtResult<(Arc<Hub>, Option<BufferOutputCallback>)> {
    let automatic = config
        .stream
        .as_ref()
        .is_some_and(|s| s.request_count > 0 && s.mode == StreamMode::Automatic);
    let pnp = ModuleLock::new(LockKind::Wait, ())?;
    let state = ModuleLock::new(
        LockKind::Spin,
        HubState {
            handle: None,
            device: None,
            sink: None,
            notification: None,
            link: None,
            target: None,
            phase: Phase::Idle,
            in_d0: false,
        },
    )?;
    let hub = try_arc(Hub {
        pnp,
        state,
        guid: config.interface_guid,
        read: config.read,
        write: config.write,
        automatic,
        query_remove: config.query_remove.clone(),
        on_state_change: config.on_state_change.clone(),
        on_pnp_notification: config.on_pnp_notification.clone(),
    })?;
    let streams = config.stream.as_ref().is_some_and(|s| s.request_count > 0);
    let redirected = match (streams, config.output_callback.clone()) {
        (true, Some(callback)) => {
            let weak = Arc::downgrade(&hub);
            let redirected: BufferOutputCallback = try_arc(
                move |_child: &ContinuousRequestTarget, completion: &StreamCompletion<'_>| {
                    let handle = weak
                        .upgrade()
                        .and_then(|hub| hub.state.lock().handle.clone());
                    match handle {
                        Some(handle) => callback(&handle, completion),
                        None => BufferDisposition::StopStreaming,
                    }
                },
            )?;
            Some(redirected)
        }
        _ => None,
    };
    Ok((hub, redirected))
}

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for DeviceInterfaceTarget {
    /// The hub, and the child doing the I/O. Without its hub (no memory) no child is added and
    /// the Module fails NotificationRegister with the allocation's status.
    fn child_modules_add(module: &Dispatched<'_, Self>, init: &mut ModuleInit) {
        let config = module.config();
        let passive = module.is_passive_level();
        let (hub, redirected) = match hub_create(config) {
            Ok(created) => created,
            Err(status) => {
                module.lock().failure = Some(status);
                return;
            }
        };
        let mut context = module.lock();
        match config.stream.as_ref().filter(|s| s.request_count > 0) {
            Some(stream) => {
                let mut child = stream.clone();
                // The parent runs automatic streaming (C DMF: "implemented by the parent").
                child.mode = StreamMode::Manual;
                if let Some(redirected) = redirected {
                    child.output_callback = Some(redirected);
                }
                context.stream =
                    Some(init.add(ContinuousRequestTarget::with(child).passive_level(passive)));
            }
            None => {
                context.single = Some(init.add(RequestTarget::with(()).passive_level(passive)));
            }
        }
        context.hub = Some(hub);
    }

    /// Registers for the interface (existing ones arrive from inside).
    fn notification_register(module: &Dispatched<'_, Self>) -> NtResult<()> {
        if let Some(status) = module.lock().failure {
            return Err(status);
        }
        let hub = hub(module)?;
        // Automatic streaming follows D0Entry/D0Exit, which never reach a dynamic Module: a
        // dynamic Module streams in manual mode only.
        if hub.automatic && module.is_dynamic() {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let device = module
            .device()
            .cloned()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let (stream, single) = {
            let context = module.lock();
            (context.stream, context.single)
        };
        let sink = Sink::of(module, stream, single)?;
        let weak = Arc::downgrade(&hub);
        let on_change = try_arc(move |change: &InterfaceChange| {
            if let Some(hub) = weak.upgrade() {
                hub.on_change(change);
            }
        })?;
        {
            let mut state = hub.state.lock();
            state.handle = Some(module.handle()?);
            state.device = Some(device.clone());
            state.sink = Some(sink);
        }
        // Existing interfaces arrive from inside this call: no lock is held here.
        let notification = device.register_interface_notification(hub.guid, on_change);
        match notification {
            Ok(notification) => {
                hub.state.lock().notification = Some(notification);
                Ok(())
            }
            Err(status) => {
                hub.detach();
                Err(status)
            }
        }
    }

    /// No callback after it; closes an open target.
    fn notification_unregister(module: &Dispatched<'_, Self>) {
        let Ok(hub) = hub(module) else {
            return;
        };
        // No callback runs after this (it waits for one in progress): taken out of the lock.
        let notification = hub.state.lock().notification.take();
        if let Some(notification) = notification {
            notification.unregister();
        }
        hub.removal(None, TargetStateChange::Close);
        hub.detach();
    }

    fn d0_entry(module: &Dispatched<'_, Self>, _previous: PowerDeviceState) -> NtResult<()> {
        if let Ok(hub) = hub(module) {
            let start = {
                let mut state = hub.state.lock();
                state.in_d0 = true;
                hub.automatic && state.phase == Phase::Open
            };
            if start {
                if let Some((_, Sink::Stream(stream))) = hub.snapshot() {
                    let _ = stream.stream_start();
                }
            }
        }
        Ok(())
    }

    fn d0_exit(module: &Dispatched<'_, Self>, _target: PowerDeviceState) -> NtResult<()> {
        if let Ok(hub) = hub(module) {
            hub.state.lock().in_d0 = false;
            if hub.automatic {
                if let Some((_, Sink::Stream(stream))) = hub.snapshot() {
                    let _ = stream.stop_and_wait();
                }
            }
        }
        Ok(())
    }

    fn destroy(module: &Dispatched<'_, Self>) {
        let hub = module.lock().hub.take();
        if let Some(hub) = hub {
            hub.detach();
        }
    }
}

/// Each Method enters the Module (rundown-guarded, so it fails while no target is open) and runs
/// on the hub.
impl DeviceInterfaceTarget {
    /// Enters the Module and runs `f` on its hub inside the Method.
    fn with_hub<R>(&self, f: impl FnOnce(&Hub) -> NtResult<R>) -> NtResult<R> {
        let module = self.enter()?;
        let hub = hub(&module)?;
        f(&hub)
    }

    /// `DMF_DeviceInterfaceTarget_StreamStart`.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no target is open; `STATUS_INVALID_DEVICE_REQUEST`
    /// without a stream config; as ContinuousRequestTarget's otherwise.
    pub fn stream_start(&self) -> NtResult<()> {
        self.with_hub(|hub| hub.sink()?.stream()?.stream_start())
    }

    /// `DMF_DeviceInterfaceTarget_StreamStop` (`PASSIVE_LEVEL`, never from the output callback):
    /// stops streaming and waits until no stream request is in flight.
    ///
    /// # Errors
    ///
    /// As [`stream_start`](Self::stream_start).
    pub fn stream_stop(&self) -> NtResult<()> {
        self.with_hub(|hub| hub.sink()?.stream()?.stop_and_wait())
    }

    /// Whether stream requests are active.
    pub fn is_streaming(&self) -> bool {
        self.with_hub(|hub| Ok(hub.sink()?.is_streaming()))
            .unwrap_or(false)
    }

    /// `DMF_DeviceInterfaceTarget_Get`: the open remote target. Hold a
    /// [`reference`](dmf_core::module::ModuleHandle::reference) while using it.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no target is open.
    pub fn get_target(&self) -> NtResult<IoTarget> {
        self.with_hub(Hub::get_target)
    }

    /// `DMF_DeviceInterfaceTarget_GuidGet`: the device interface class this Module opens
    /// (`DeviceInterfaceTargetGuid` of its config).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no target is open (as every Method of this Module).
    pub fn guid_get(&self) -> NtResult<Guid> {
        self.with_hub(|hub| Ok(hub.guid))
    }

    /// `DMF_DeviceInterfaceTarget_BufferPut`: hands back an output buffer the client kept with
    /// [`StreamCompletion::keep`] (see [`ContinuousRequestTarget::buffer_put`]).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no target is open; `STATUS_INVALID_DEVICE_REQUEST`
    /// without a stream config; `STATUS_INVALID_PARAMETER` for a buffer this Module did not hand
    /// out. Either way the buffer is freed.
    pub fn buffer_put(&self, buffer: ClientBuffer) -> NtResult<()> {
        self.with_hub(|hub| hub.sink()?.stream()?.buffer_put(buffer))
    }

    /// The symbolic link of the open target.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no target is open.
    pub fn symbolic_link(&self) -> NtResult<String> {
        self.with_hub(Hub::symbolic_link)
    }
}

/// `DMF_DeviceInterfaceTarget_SendSynchronously`, `DMF_DeviceInterfaceTarget_SendEx`,
/// `DMF_DeviceInterfaceTarget_Cancel`: forwarded to the child doing the I/O, inside this
/// Module's rundown; a removal cancels the asynchronous requests (their callbacks still run
/// once).
impl RequestSender for DeviceInterfaceTarget {}

/// `DMF_DeviceInterfaceTarget_ReuseCreate`, `DMF_DeviceInterfaceTarget_ReuseSend`,
/// `DMF_DeviceInterfaceTarget_ReuseDelete`: forwarded to the child doing the I/O, inside this
/// Module's rundown; a removal of the target deletes every reuse request (one in flight is
/// cancelled first, its callback still runs once), and their IDs are refused afterwards.
impl RequestReuse for DeviceInterfaceTarget {}

impl Route for DeviceInterfaceTarget {
    fn route<R>(&self, f: impl FnOnce(&Arc<Sender>) -> NtResult<R>) -> NtResult<R> {
        self.with_hub(|hub| hub.sink()?.route(f))
    }
}
