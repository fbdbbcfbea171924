//! # DeviceInterfaceMultipleTarget
//!
//! ## Summary
//!
//! Opens *every* instance of a device interface class as a remote I/O target — one target per
//! arrived instance, each with its own stream when a stream is configured — and offers the
//! RequestTarget / ContinuousRequestTarget API against a chosen one (C DMF:
//! `Dmf_DeviceInterfaceMultipleTarget.c`). Where [DeviceInterfaceTarget](crate::device_interface_target)
//! opens one instance, this Module opens them all and names each by a [`Target`] handle. The
//! Module is *open* while at least one target is open: its Methods fail with
//! `STATUS_INVALID_DEVICE_STATE` otherwise, and the client's PostOpen / PreClose callbacks
//! (`ModuleSpec::on_post_open` / `on_pre_close`) say that the first target opened and that the
//! last one went.
//!
//! ## Configuration
//!
//! [`DeviceInterfaceMultipleTargetConfig`]:
//! - `interface_guid` — `DeviceInterfaceMultipleTargetGuid`;
//! - `read`, `write` — the access each target is opened with (`OpenMode`). `ShareAccess` is not
//!   ported, as in DeviceInterfaceTarget (the platform contract has no share-access field);
//! - `stream` — the embedded `ContinuousRequestTargetModuleConfig`: with `Some` (and a non-zero
//!   `request_count`) every target streams through its own ContinuousRequestTarget; with `None`
//!   each target has a RequestTarget and offers one-shot sends only. With `mode: Automatic` a
//!   target streams while it is open and the device is in D0; with `Manual` the client starts
//!   each target's stream ([`stream_start`](DeviceInterfaceMultipleTarget::stream_start),
//!   typically from the `Open` state change);
//! - `output_callback` — the streams' output callback, receiving this Module's handle and the
//!   [`Target`] whose stream request completed (C DMF redirects each child's callback through
//!   the parent the same way); if `None`, the embedded config's own callback (receiving the
//!   per-target child's handle) is used;
//! - `on_state_change` — `EvtDeviceInterfaceMultipleTargetOnStateChangeEx` (and the legacy
//!   `EvtDeviceInterfaceMultipleTargetOnStateChange`, merged): every [`TargetStateChange`] of
//!   each target with its [`Target`]; an `Err` vetoes `Open` and `QueryRemove`;
//! - `on_pnp_notification` — `EvtDeviceInterfaceMultipleTargetOnPnpNotification`: asked at each
//!   arrival of an instance not open yet whether to open it (C DMF's `IoTargetOpen`
//!   out-parameter);
//! - `maximum_targets` — the most targets open at once (C DMF has no bound: its target list
//!   grows with every arrival). Each target is a set of fallible allocations (its entry, its
//!   child Module, its remote target); an arrival beyond the bound, or one whose allocation
//!   fails, is not opened, leaves the other targets working and is traced
//!   (`DeviceInterfaceMultipleTarget` source, warning level). Default
//!   [`DEFAULT_MAXIMUM_TARGETS`]; 0 fails NotificationRegister with
//!   `STATUS_INVALID_PARAMETER`.
//!
//! `passive_level(true)` on the spec is passed on to the per-target children: stream and
//! one-shot completions then reach the client at `PASSIVE_LEVEL`.
//!
//! ## Methods
//!
//! | Method | C DMF | IRQL |
//! |---|---|---|
//! | [`at`](DeviceInterfaceMultipleTarget::at)`(target).`[`send_synchronously`](RequestSender::send_synchronously) | `DMF_DeviceInterfaceMultipleTarget_SendSynchronously` | PASSIVE |
//! | [`at`](DeviceInterfaceMultipleTarget::at)`(target).`[`send`](RequestSender::send) | `DMF_DeviceInterfaceMultipleTarget_Send` / `…SendEx` | ≤ DISPATCH |
//! | [`at`](DeviceInterfaceMultipleTarget::at)`(target).`[`cancel`](RequestSender::cancel) | `DMF_DeviceInterfaceMultipleTarget_Cancel` | ≤ DISPATCH |
//! | [`at`](DeviceInterfaceMultipleTarget::at)`(target).`[`reuse_create`](RequestReuse::reuse_create) | `DMF_DeviceInterfaceMultipleTarget_ReuseCreate` | ≤ DISPATCH |
//! | [`at`](DeviceInterfaceMultipleTarget::at)`(target).`[`reuse_send`](RequestReuse::reuse_send) | `DMF_DeviceInterfaceMultipleTarget_ReuseSend` | ≤ DISPATCH |
//! | [`at`](DeviceInterfaceMultipleTarget::at)`(target).`[`reuse_delete`](RequestReuse::reuse_delete) | `DMF_DeviceInterfaceMultipleTarget_ReuseDelete` | PASSIVE |
//! | [`DeviceInterfaceMultipleTarget::stream_start`] | `DMF_DeviceInterfaceMultipleTarget_StreamStart` | ≤ DISPATCH |
//! | [`DeviceInterfaceMultipleTarget::stream_stop`] | `DMF_DeviceInterfaceMultipleTarget_StreamStop` | PASSIVE |
//! | [`DeviceInterfaceMultipleTarget::buffer_put`] | `DMF_DeviceInterfaceMultipleTarget_BufferPut` | ≤ DISPATCH |
//! | [`DeviceInterfaceMultipleTarget::get`] | `DMF_DeviceInterfaceMultipleTarget_Get` | ≤ DISPATCH |
//! | [`DeviceInterfaceMultipleTarget::guid_get`] | `DMF_DeviceInterfaceMultipleTarget_GuidGet` | ≤ DISPATCH |
//! | [`DeviceInterfaceMultipleTarget::target_reference`] | `DMF_DeviceInterfaceMultipleTarget_TargetReference` / `…TargetDereference` (the guard's drop) | ≤ DISPATCH |
//! | [`DeviceInterfaceMultipleTarget::targets`] | — (C DMF's client learns its targets from the `Open` state change only) | ≤ DISPATCH |
//! | [`DeviceInterfaceMultipleTarget::is_streaming`], [`symbolic_link`](DeviceInterfaceMultipleTarget::symbolic_link) | — | ≤ DISPATCH |
//!
//! The sends are the [`RequestSender`] and [`RequestReuse`] Methods every target Module shares,
//! on the [`TargetRef`] that [`at`](DeviceInterfaceMultipleTarget::at) names (C DMF's `Target`
//! parameter). Every C DMF Method of the Module is here. A [`Target`] is a checked handle: once
//! its instance left (or it was never this Module's), every Method given it fails with
//! `STATUS_INVALID_HANDLE`; while its device is query-removed, with
//! `STATUS_INVALID_DEVICE_STATE`. `GuidGet` fails while no target is open, as every Method of
//! this Module does.
//!
//! ## Callbacks
//!
//! [`OutputCallback`] (see the config), [`StateChangeCallback`]
//! (`EVT_DMF_DeviceInterfaceMultipleTarget_OnStateChange[Ex]`), [`PnpNotificationCallback`]
//! (`EVT_DMF_DeviceInterfaceMultipleTarget_OnPnpNotification`), and the client event callbacks
//! of every Module. Order at an arrival: `on_pnp_notification`, target opened and listed, the
//! Module opened if it was closed (PostOpen), automatic streaming started,
//! `on_state_change(Open)` (Methods on the new target work inside it; a veto closes the target
//! again, and the Module too if it was the only one). At a removal:
//! `on_state_change(QueryRemove / RemoveComplete / Close)` while the target can still be used,
//! then the target is torn down, and PreClose and the close follow if it was the last one. After
//! a cancelled removal: reopened, the Module opened if it was closed, `on_state_change(RemoveCancel)`.
//! `EvtPnpCustom…` (user mode only) is not ported.
//!
//! ## Remarks
//!
//! - NotificationRegister (`NOTIFY_PrepareHardware`; `NOTIFY_Create` when created dynamically)
//!   registers for interface arrival and removal on the Module's device, existing interfaces
//!   included (`ModuleOpenOption` is this choice; `PnpRegisterWhen_D0Entry` is not ported).
//! - **Arrival** of an instance not yet open (duplicates are ignored, by symbolic link): a remote
//!   target is created and opened by symbolic link with its own query-remove / remove-canceled /
//!   remove-complete callbacks, a ContinuousRequestTarget (or RequestTarget) is created for it
//!   as a dynamic child (C DMF's `DMF_ContinuousRequestTarget_Create` per target) and given the
//!   target.
//! - **Removal** of one instance (interface removed, remove-complete without a query — surprise
//!   removal): that target's automatic stream stops and is waited for, its requests are
//!   cancelled and waited for, its child is deleted (waiting for its Methods in flight) and the
//!   remote target is closed and deleted. The other targets go on.
//! - **Query-remove** of one instance: the client may veto; otherwise that target is stopped as
//!   at removal but kept, closed for query-remove. **Remove-canceled** reopens it
//!   (`TargetOpenParams::reopen`) and restarts its automatic stream; if the reopen fails the
//!   target is dropped. **Remove-complete** after a query-remove drops it.
//! - **Close of the Module** (NotificationUnregister: its device leaving, a dynamic Module
//!   deleted) closes every target as at removal (`Close` for each open one), so that nothing is
//!   in flight and nothing is left.
//! - The PnP-side events are serialized by a PASSIVE_LEVEL lock of the Module.
//! - A synchronous send holds the Module open; a removal of its target cancels it (the target's
//!   requests are cancelled before the waits).
//! - The streams' output buffers can be kept by the client ([`StreamCompletion::keep`],
//!   `output_buffer_count` in the embedded config; each target has its own spares) and come back
//!   with [`buffer_put`](DeviceInterfaceMultipleTarget::buffer_put) to the target that handed
//!   them out; put to a target that left, the buffer is refused and freed.
//! - The per-target children hang off a private child Module of this one that is open from
//!   create to destroy (so they can be created while this Module is closed); the children's
//!   work items are children of the device.
//! - **Dynamic use**: as DeviceInterfaceTarget — `NOTIFY_Create`, manual streaming only (an
//!   automatic `stream` config fails `create` with `STATUS_INVALID_PARAMETER`).
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
//! use dmf_modules::device_interface_multiple_target::{
//!     DeviceInterfaceMultipleTarget, DeviceInterfaceMultipleTargetConfig, Target,
//! };
//! use dmf_modules::request_target::{RequestSender, SendRequest};
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! let mut config = DeviceInterfaceMultipleTargetConfig::new(Guid::new(
//!     0x573E_8C73, 0x0CB4, 0x4471, [0xA1, 0xBF, 0xFA, 0xB2, 0x6C, 0x31, 0xD3, 0x84],
//! ));
//! config.maximum_targets = 4;
//! let mut init = ModuleInit::new();
//! let token = init.add(DeviceInterfaceMultipleTarget::with(config));
//! let (_node, device) = dmf_core::platform::simulator::plug_in_device(&machine, "example")?;
//! let modules =
//!     ModuleCollection::create(init, CollectionConfig { device: Some(device), ..Default::default() })?;
//! let targets = modules.get(token)?;
//! // No interface has arrived: the Module is closed, and no target is listed.
//! let mut listed = [Target::default(); 4];
//! assert_eq!(targets.targets(&mut listed).err(), Some(NtStatus::INVALID_DEVICE_STATE));
//! assert_eq!(
//!     targets.at(listed[0]).send_synchronously(&SendRequest::ioctl(0x22_2000, &[], 1)).err(),
//!     Some(NtStatus::INVALID_DEVICE_STATE)
//! );
//! modules.destroy();
//! # Ok::<(), NtStatus>(())
//! ```

use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use dmf_core::fallible::{try_arc, try_string, VecExt};
use dmf_core::module::{
    Added, Dispatched, DynamicModule, ModuleCallbacks, ModuleHandle, ModuleInit, PowerDeviceState,
    Scope,
};
use dmf_core::platform::contract::device::{Guid, PlatformDevice};
use dmf_core::platform::contract::io::{InterfaceChange, PlatformIoTarget};
use dmf_core::platform::contract::{PlatformTrace, TraceLevel};
use dmf_core::platform::{Device, InterfaceNotification, IoTarget, TargetOpenParams, Trace};
use dmf_core::sync::{LockKind, ModuleLock};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

use crate::continuous_request_target::{
    BufferDisposition, BufferOutputCallback, ClientBuffer, ContinuousRequestTarget,
    ContinuousRequestTargetConfig, StreamCompletion, StreamMode,
};
pub use crate::device_interface_target::TargetStateChange;
use crate::request_target::sealed::Route;
use crate::request_target::{RequestReuse, RequestSender, RequestTarget, Sender};
use crate::target_sink::Sink;

/// The trace source of this Module's warnings.
const TRACE_SOURCE: &str = "DeviceInterfaceMultipleTarget";

/// The default of [`DeviceInterfaceMultipleTargetConfig::maximum_targets`].
pub const DEFAULT_MAXIMUM_TARGETS: usize = 16;

/// The process-wide target counter: a [`Target`] is never reused.
static NEXT_TARGET: AtomicU64 = AtomicU64::new(1);

/// `DeviceInterfaceMultipleTarget_Target`: one open instance of the interface. A checked handle
/// (unique for the life of the process, never reused): once its instance left, Methods given it
/// fail with `STATUS_INVALID_HANDLE`. `Target::default()` names no target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target(u64);

impl Target {
    /// The raw number (0 for `Target::default()`).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The streams' output callback, with this Module's handle and the target of the stream.
pub type OutputCallback = Arc<
    dyn Fn(&DeviceInterfaceMultipleTarget, Target, &StreamCompletion<'_>) -> BufferDisposition
        + Send
        + Sync,
>;

/// `EVT_DMF_DeviceInterfaceMultipleTarget_OnStateChangeEx` (and `…OnStateChange`, merged: a
/// callback that never vetoes returns `Ok(())`): called at `PASSIVE_LEVEL`, serialized with the
/// other PnP events of the Module, for one target. Its `Err` vetoes
/// [`TargetStateChange::Open`] (the target is closed again) and [`TargetStateChange::QueryRemove`];
/// for the others it is ignored.
pub type StateChangeCallback = Arc<
    dyn Fn(&DeviceInterfaceMultipleTarget, Target, TargetStateChange) -> NtResult<()> + Send + Sync,
>;

/// `EVT_DMF_DeviceInterfaceMultipleTarget_OnPnpNotification`: an instance of the class arrived
/// at this symbolic link and is not open; `true` opens it, `false` ignores this arrival.
pub type PnpNotificationCallback =
    Arc<dyn Fn(&DeviceInterfaceMultipleTarget, &str) -> bool + Send + Sync>;

/// `DMF_CONFIG_DeviceInterfaceMultipleTarget`.
#[derive(Clone)]
pub struct DeviceInterfaceMultipleTargetConfig {
    /// `DeviceInterfaceMultipleTargetGuid`.
    pub interface_guid: Guid,
    /// Open the targets for reading.
    pub read: bool,
    /// Open the targets for writing.
    pub write: bool,
    /// `ContinuousRequestTargetModuleConfig` (`None`: one-shot sends only).
    pub stream: Option<ContinuousRequestTargetConfig>,
    /// The streams' output callback with this Module's handle and the target (overrides the
    /// embedded one).
    pub output_callback: Option<OutputCallback>,
    /// `EvtDeviceInterfaceMultipleTargetOnStateChangeEx` / `…OnStateChange`.
    pub on_state_change: Option<StateChangeCallback>,
    /// `EvtDeviceInterfaceMultipleTargetOnPnpNotification`.
    pub on_pnp_notification: Option<PnpNotificationCallback>,
    /// The most targets open at once (no C DMF field; see the module documentation).
    pub maximum_targets: usize,
}

impl DeviceInterfaceMultipleTargetConfig {
    /// A config for `interface_guid`: read/write access, no streaming, no callbacks,
    /// [`DEFAULT_MAXIMUM_TARGETS`].
    pub fn new(interface_guid: Guid) -> Self {
        DeviceInterfaceMultipleTargetConfig {
            interface_guid,
            read: true,
            write: true,
            stream: None,
            output_callback: None,
            on_state_change: None,
            on_pnp_notification: None,
            maximum_targets: DEFAULT_MAXIMUM_TARGETS,
        }
    }
}

impl core::fmt::Debug for DeviceInterfaceMultipleTargetConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceInterfaceMultipleTargetConfig")
            .field("interface_guid", &self.interface_guid)
            .field("read", &self.read)
            .field("write", &self.write)
            .field("stream", &self.stream)
            .field("maximum_targets", &self.maximum_targets)
            .finish_non_exhaustive()
    }
}

/// Remote targets found by device interface, one per instance, surviving removal. Open option
/// `NOTIFY_PrepareHardware`; created dynamically, `NOTIFY_Create`. See the
/// [module documentation](self).
#[dmf_module(crate = dmf_core, config = DeviceInterfaceMultipleTargetConfig, context = Context, open = NotifyPrepareHardware, dynamic_open = NotifyCreate, lock = DispatchMaximum)]
pub struct DeviceInterfaceMultipleTarget;

/// The private child that owns the per-target children: open from create to destroy, so that
/// a target's child can be created while the Module itself is closed.
#[dmf_module(crate = dmf_core, config = (), context = (), open = Create, lock = Dispatch)]
struct TargetOwner;

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for TargetOwner {}

impl TargetOwner {
    /// Creates `spec` as a dynamic child of this Module.
    fn create<M: dmf_core::module::Module>(
        &self,
        spec: dmf_core::module::ModuleSpec<M>,
    ) -> NtResult<DynamicModule<M>> {
        let module = self.enter()?;
        spec.create(&*module)
    }
}

#[derive(Default)]
struct Context {
    owner: Option<Added<TargetOwner>>,
    hub: Option<Arc<Hub>>,
    /// Why ChildModulesAdd could not make the hub: NotificationRegister fails with it.
    failure: Option<NtStatus>,
}

/// Where one target stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Open: Methods reach it.
    Open,
    /// Closed for query-remove: waits for remove-canceled or remove-complete.
    QueryRemoved,
}

/// The per-target child Module that owns the I/O.
enum Child {
    Stream(DynamicModule<ContinuousRequestTarget>),
    Single(DynamicModule<RequestTarget>),
}

impl Child {
    fn sink(&self) -> Sink {
        match self {
            Child::Stream(child) => Sink::Stream((**child).clone()),
            Child::Single(child) => Sink::Single((**child).clone()),
        }
    }
}

/// One target.
struct Entry {
    id: u64,
    link: String,
    target: IoTarget,
    phase: Phase,
    sink: Sink,
    child: Child,
}

struct HubState {
    handle: Option<DeviceInterfaceMultipleTarget>,
    owner: Option<TargetOwner>,
    device: Option<Device>,
    notification: Option<InterfaceNotification>,
    entries: Vec<Entry>,
    /// Whether this hub opened the Module (at least one target was open).
    module_open: bool,
    in_d0: bool,
}

/// What the Module, its notification and its targets' callbacks share (they cannot enter the
/// Module while it is closed). The handles inside are cleared at unregister and destroy, which
/// breaks the cycle Module → context → hub → handle.
struct Hub {
    /// Serializes arrivals, removals, query-removes, remove-canceled/complete, unregister and
    /// the power callbacks' walks over the targets.
    pnp: ModuleLock<()>,
    state: ModuleLock<HubState>,
    guid: Guid,
    /// The access the targets are opened with: read, write.
    access: (bool, bool),
    automatic: bool,
    maximum: usize,
    passive: bool,
    /// The per-target stream config (mode manual: the hub runs automatic streaming).
    stream: Option<ContinuousRequestTargetConfig>,
    output_callback: Option<OutputCallback>,
    on_state_change: Option<StateChangeCallback>,
    on_pnp_notification: Option<PnpNotificationCallback>,
}

/// Traces a target that could not be opened.
fn trace_failure(what: &str, link: &str, status: NtStatus) {
    Trace::trace(
        TraceLevel::Warning,
        TRACE_SOURCE,
        format_args!("interface instance {link} not opened: {what} failed with {status:?}"),
    );
}

/// Gives a remote target up for good: `WdfIoTargetClose` + `WdfObjectDelete`.
fn discard(target: &IoTarget) {
    if target.delete().is_err() {
        target.close();
    }
}

impl Hub {
    fn state_change(
        &self,
        handle: &DeviceInterfaceMultipleTarget,
        id: u64,
        change: TargetStateChange,
    ) -> NtResult<()> {
        self.on_state_change
            .as_ref()
            .map_or(Ok(()), |callback| callback(handle, Target(id), change))
    }

    fn handle(&self) -> Option<DeviceInterfaceMultipleTarget> {
        self.state.lock().handle.clone()
    }

    fn on_change(self: &Arc<Self>, change: &InterfaceChange) {
        match change {
            InterfaceChange::Arrival(link) => self.arrival(link),
            InterfaceChange::Removal(link) => {
                let _pnp = self.pnp.lock();
                let id = {
                    let state = self.state.lock();
                    state
                        .entries
                        .iter()
                        .find(|e| e.link.eq_ignore_ascii_case(link))
                        .map(|e| e.id)
                };
                if let Some(id) = id {
                    self.removal(id, TargetStateChange::Close, true);
                }
            }
        }
    }

    /// An instance arrived: open it unless it is open already or the client declines.
    fn arrival(self: &Arc<Self>, link: &str) {
        let _pnp = self.pnp.lock();
        let (device, handle, owner) = {
            let state = self.state.lock();
            if state
                .entries
                .iter()
                .any(|e| e.link.eq_ignore_ascii_case(link))
            {
                return;
            }
            match (&state.device, &state.handle, &state.owner) {
                (Some(d), Some(h), Some(o)) => (d.clone(), h.clone(), o.clone()),
                _ => return,
            }
        };
        // The client decides whether this instance is opened (no lock but the PnP one held).
        if !self
            .on_pnp_notification
            .as_ref()
            .is_none_or(|callback| callback(&handle, link))
        {
            return;
        }
        // Room for the entry first, so that listing it cannot fail once the target is made.
        let room = {
            let mut state = self.state.lock();
            if state.entries.len() >= self.maximum {
                Err(("maximum_targets", NtStatus::INSUFFICIENT_RESOURCES))
            } else {
                state
                    .entries
                    .try_reserve_nt(1)
                    .map_err(|s| ("allocating its entry", s))
            }
        };
        if let Err((what, status)) = room {
            trace_failure(what, link, status);
            return;
        }
        let id = NEXT_TARGET.fetch_add(1, Ordering::Relaxed);
        let entry = match self.target_create(&device, &owner, link, id) {
            Ok(entry) => entry,
            Err((what, status)) => {
                trace_failure(what, link, status);
                return;
            }
        };
        let sink = entry.sink.clone();
        let unlisted = {
            let mut state = self.state.lock();
            if state.entries.len() < state.entries.capacity() {
                // Within the capacity reserved above: does not allocate, cannot fail.
                let _ = state.entries.try_push(entry);
                None
            } else {
                Some(entry)
            }
        };
        if let Some(entry) = unlisted {
            // Not reached (the room was reserved under the PnP lock); torn down outside the lock.
            self.teardown(entry);
            trace_failure("listing the target", link, NtStatus::INSUFFICIENT_RESOURCES);
            return;
        }
        if !self.module_open_if_closed(&handle) {
            // The client's PostOpen refused (or the Module is going): give the target up.
            self.take_and_teardown(id);
            return;
        }
        if self.automatic && self.state.lock().in_d0 {
            if let Ok(stream) = sink.stream() {
                let _ = stream.stream_start();
            }
        }
        if self
            .state_change(&handle, id, TargetStateChange::Open)
            .is_err()
        {
            // Vetoed: the target goes again (no Close: it was never open for the client).
            self.take_and_teardown(id);
            self.module_close_if_idle(&handle);
        }
    }

    /// Creates and opens the remote target at `link`, and its child doing the I/O; on failure
    /// what failed and why, with nothing left behind.
    fn target_create(
        self: &Arc<Self>,
        device: &Device,
        owner: &TargetOwner,
        link: &str,
        id: u64,
    ) -> Result<Entry, (&'static str, NtStatus)> {
        // Allocated before the target is created: nothing is left half done.
        let (params, kept) = self
            .open_params(link, id)
            .map_err(|s| ("allocating its parameters", s))?;
        let target = device
            .create_io_target()
            .map_err(|s| ("WdfIoTargetCreate", s))?;
        if let Err(status) = target.open(params) {
            discard(&target);
            return Err(("WdfIoTargetOpen", status));
        }
        let child = match self.child_create(owner, id) {
            Ok(child) => child,
            Err(status) => {
                discard(&target);
                return Err(("creating its child Module", status));
            }
        };
        let sink = child.sink();
        if let Err(status) = sink.set_target(target.clone()) {
            drop(child);
            discard(&target);
            return Err(("IoTargetSet", status));
        }
        Ok(Entry {
            id,
            link: kept,
            target,
            phase: Phase::Open,
            sink,
            child,
        })
    }

    /// The per-target child: a ContinuousRequestTarget (its output callback redirected to the
    /// client's with this Module's handle and the target) or a RequestTarget.
    fn child_create(self: &Arc<Self>, owner: &TargetOwner, id: u64) -> NtResult<Child> {
        if let Some(stream) = &self.stream {
            let mut config = stream.clone();
            if let Some(callback) = self.output_callback.clone() {
                let weak = Arc::downgrade(self);
                let redirected: BufferOutputCallback = try_arc(
                    move |_child: &ContinuousRequestTarget, completion: &StreamCompletion<'_>| {
                        match weak.upgrade().and_then(|hub| hub.handle()) {
                            Some(handle) => callback(&handle, Target(id), completion),
                            None => BufferDisposition::StopStreaming,
                        }
                    },
                )?;
                config.output_callback = Some(redirected);
            }
            let spec = ContinuousRequestTarget::with(config).passive_level(self.passive);
            Ok(Child::Stream(owner.create(spec)?))
        } else {
            let spec = RequestTarget::with(()).passive_level(self.passive);
            Ok(Child::Single(owner.create(spec)?))
        }
    }

    /// The open parameters of the instance at `link` (this hub's access and the target `id`'s
    /// callbacks), and a copy of `link` to keep.
    fn open_params(self: &Arc<Self>, link: &str, id: u64) -> NtResult<(TargetOpenParams, String)> {
        let weak: Weak<Hub> = Arc::downgrade(self);
        let query_remove = try_arc(move |_t: &IoTarget| {
            weak.upgrade().map_or(Ok(()), |hub| hub.query_removal(id))
        })?;
        let weak: Weak<Hub> = Arc::downgrade(self);
        let remove_canceled = try_arc(move |_t: &IoTarget| {
            if let Some(hub) = weak.upgrade() {
                hub.remove_canceled(id);
            }
        })?;
        let weak: Weak<Hub> = Arc::downgrade(self);
        let remove_complete = try_arc(move |_t: &IoTarget| {
            if let Some(hub) = weak.upgrade() {
                let _pnp = hub.pnp.lock();
                hub.removal(id, TargetStateChange::RemoveComplete, false);
            }
        })?;
        let params = TargetOpenParams {
            symbolic_link: Some(try_string(link)?),
            read: self.access.0,
            write: self.access.1,
            query_remove: Some(query_remove),
            remove_canceled: Some(remove_canceled),
            remove_complete: Some(remove_complete),
        };
        Ok((params, try_string(link)?))
    }

    /// Opens the Module (PostOpen runs) unless it is open; whether it is open now.
    fn module_open_if_closed(&self, handle: &DeviceInterfaceMultipleTarget) -> bool {
        if self.state.lock().module_open {
            return true;
        }
        // Open before PostOpen runs, so that the client's PostOpen reaches the target.
        self.state.lock().module_open = true;
        if handle.notification_open().is_ok() {
            true
        } else {
            self.state.lock().module_open = false;
            false
        }
    }

    /// Closes the Module (PreClose, then the rundown waits for Methods in flight) when no
    /// target is open any more.
    fn module_close_if_idle(&self, handle: &DeviceInterfaceMultipleTarget) {
        let close = {
            let mut state = self.state.lock();
            let idle = !state.entries.iter().any(|e| e.phase == Phase::Open);
            let close = state.module_open && idle;
            if close {
                state.module_open = false;
            }
            close
        };
        if close {
            handle.notification_close();
        }
    }

    /// Takes target `id` out of the list (Methods given it fail from now on) and tears it down.
    fn take_and_teardown(&self, id: u64) {
        let entry = {
            let mut state = self.state.lock();
            let index = state.entries.iter().position(|e| e.id == id);
            index.map(|index| state.entries.swap_remove(index))
        };
        if let Some(entry) = entry {
            self.teardown(entry);
        }
    }

    /// Stops a target's I/O and waits for it, deletes its child (waiting for its Methods in
    /// flight) and closes and deletes the remote target.
    fn teardown(&self, entry: Entry) {
        let Entry {
            target,
            phase,
            sink,
            child,
            ..
        } = entry;
        if phase == Phase::Open && self.automatic {
            if let Ok(stream) = sink.stream() {
                let _ = stream.stop_and_wait();
            }
        }
        // Cancels every request (synchronous ones included), waits for them.
        sink.clear_and_wait();
        drop(sink);
        drop(child);
        discard(&target);
    }

    /// The target `id` and its phase.
    fn find(&self, id: u64) -> Option<(Phase, Sink, IoTarget)> {
        let state = self.state.lock();
        state
            .entries
            .iter()
            .find(|e| e.id == id)
            .map(|e| (e.phase, e.sink.clone(), e.target.clone()))
    }

    /// Removal of target `id` for good (interface removed, remove-complete, unregister);
    /// `change` is what the client hears (`Close` or `RemoveComplete`) if the target was open.
    /// A query-removed target reports `RemoveComplete` when its instance went (`announce_gone`
    /// or remove-complete), nothing at unregister. Called with the PnP lock held.
    fn removal(&self, id: u64, change: TargetStateChange, announce_gone: bool) {
        let Some((phase, _, _)) = self.find(id) else {
            return;
        };
        let Some(handle) = self.handle() else {
            return;
        };
        match phase {
            // Before the target goes, so that the client stops using it.
            Phase::Open => {
                let _ = self.state_change(&handle, id, change);
            }
            Phase::QueryRemoved => {
                if announce_gone || change == TargetStateChange::RemoveComplete {
                    let _ = self.state_change(&handle, id, TargetStateChange::RemoveComplete);
                }
            }
        }
        self.take_and_teardown(id);
        self.module_close_if_idle(&handle);
    }

    /// `EvtIoTargetQueryRemove` of target `id`: the client may veto; otherwise stop it and
    /// close it for query-remove.
    fn query_removal(&self, id: u64) -> NtResult<()> {
        let _pnp = self.pnp.lock();
        let Some((Phase::Open, sink, target)) = self.find(id) else {
            return Ok(());
        };
        let Some(handle) = self.handle() else {
            return Ok(());
        };
        if self
            .state_change(&handle, id, TargetStateChange::QueryRemove)
            .is_err()
        {
            return Err(NtStatus::UNSUCCESSFUL);
        }
        if self.automatic {
            if let Ok(stream) = sink.stream() {
                let _ = stream.stop_and_wait();
            }
        }
        self.set_phase(id, Phase::QueryRemoved);
        sink.clear_and_wait();
        target.close_for_query_remove();
        self.module_close_if_idle(&handle);
        Ok(())
    }

    fn set_phase(&self, id: u64, phase: Phase) {
        let mut state = self.state.lock();
        if let Some(entry) = state.entries.iter_mut().find(|e| e.id == id) {
            entry.phase = phase;
        }
    }

    /// `EvtIoTargetRemoveCanceled` of target `id`: reopen it (and the Module if it was closed).
    fn remove_canceled(&self, id: u64) {
        let _pnp = self.pnp.lock();
        let Some((Phase::QueryRemoved, sink, target)) = self.find(id) else {
            return;
        };
        let Some(handle) = self.handle() else {
            return;
        };
        let reopened = target
            .open(TargetOpenParams::reopen())
            .and_then(|()| sink.set_target(target.clone()));
        if reopened.is_err() {
            // Dropped without a word, as C DMF does.
            self.take_and_teardown(id);
            return;
        }
        self.set_phase(id, Phase::Open);
        if !self.module_open_if_closed(&handle) {
            self.take_and_teardown(id);
            return;
        }
        if self.automatic && self.state.lock().in_d0 {
            if let Ok(stream) = sink.stream() {
                let _ = stream.stream_start();
            }
        }
        let _ = self.state_change(&handle, id, TargetStateChange::RemoveCancel);
    }

    /// Closes every target (NotificationUnregister).
    fn close_all(&self) {
        let _pnp = self.pnp.lock();
        loop {
            let first = self.state.lock().entries.first().map(|e| e.id);
            let Some(id) = first else {
                break;
            };
            self.removal(id, TargetStateChange::Close, false);
        }
        // No target left: close the Module if the last removal could not (no handle).
        let close = core::mem::take(&mut self.state.lock().module_open);
        if close {
            if let Some(handle) = self.handle() {
                handle.notification_close();
            }
        }
    }

    /// The sink of every open target, one at a time (the PnP lock held: the list is stable).
    fn for_each_open(&self, mut f: impl FnMut(&Sink)) {
        let _pnp = self.pnp.lock();
        let mut index = 0;
        loop {
            let sink = {
                let state = self.state.lock();
                match state.entries.get(index) {
                    None => break,
                    Some(e) => (e.phase == Phase::Open).then(|| e.sink.clone()),
                }
            };
            if let Some(sink) = sink {
                f(&sink);
            }
            index += 1;
        }
    }

    fn detach(&self) {
        let mut state = self.state.lock();
        state.handle = None;
        state.owner = None;
        state.device = None;
    }

    /// An open target's sink and remote target: `STATUS_INVALID_HANDLE` for a target not
    /// listed, `STATUS_INVALID_DEVICE_STATE` for one query-removed.
    fn open_target(&self, target: Target) -> NtResult<(Sink, IoTarget)> {
        match self.find(target.0) {
            None => Err(NtStatus::INVALID_HANDLE),
            Some((Phase::QueryRemoved, _, _)) => Err(NtStatus::INVALID_DEVICE_STATE),
            Some((Phase::Open, sink, io)) => Ok((sink, io)),
        }
    }
}

fn hub(module: &Scope<'_, DeviceInterfaceMultipleTarget>) -> NtResult<Arc<Hub>> {
    module
        .lock()
        .hub
        .clone()
        .ok_or(NtStatus::INVALID_DEVICE_STATE)
}

fn hub_create(config: &DeviceInterfaceMultipleTargetConfig, passive: bool) -> NtResult<Arc<Hub>> {
    let stream = config
        .stream
        .as_ref()
        .filter(|s| s.request_count > 0)
        .map(|s| {
            let mut child = s.clone();
            // The hub runs automatic streaming (C DMF: "implemented by the parent").
            child.mode = StreamMode::Manual;
            child
        });
    let automatic = config
        .stream
        .as_ref()
        .is_some_and(|s| s.request_count > 0 && s.mode == StreamMode::Automatic);
    let pnp = ModuleLock::new(LockKind::Wait, ())?;
    let state = ModuleLock::new(
        LockKind::Spin,
        HubState {
            handle: None,
            owner: None,
            device: None,
            notification: None,
            entries: Vec::new(),
            module_open: false,
            in_d0: false,
        },
    )?;
    try_arc(Hub {
        pnp,
        state,
        guid: config.interface_guid,
        access: (config.read, config.write),
        automatic,
        maximum: config.maximum_targets,
        passive,
        stream,
        output_callback: config.output_callback.clone(),
        on_state_change: config.on_state_change.clone(),
        on_pnp_notification: config.on_pnp_notification.clone(),
    })
}

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for DeviceInterfaceMultipleTarget {
    /// The hub, and the owner of the per-target children. Without its hub (no memory) the
    /// Module fails NotificationRegister with the allocation's status.
    fn child_modules_add(module: &Dispatched<'_, Self>, init: &mut ModuleInit) {
        let passive = module.is_passive_level();
        match hub_create(module.config(), passive) {
            Ok(hub) => {
                let mut context = module.lock();
                context.hub = Some(hub);
                context.owner = Some(init.add(TargetOwner::with(())));
            }
            Err(status) => module.lock().failure = Some(status),
        }
    }

    /// Registers for the interface (existing instances arrive from inside).
    fn notification_register(module: &Dispatched<'_, Self>) -> NtResult<()> {
        if let Some(status) = module.lock().failure {
            return Err(status);
        }
        if module.config().maximum_targets == 0 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let hub = hub(module)?;
        // Automatic streaming follows D0Entry/D0Exit, which never reach a dynamic Module.
        if hub.automatic && module.is_dynamic() {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let device = module
            .device()
            .cloned()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let token = module.lock().owner.ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let owner = module.child(token)?;
        let weak = Arc::downgrade(&hub);
        let on_change = try_arc(move |change: &InterfaceChange| {
            if let Some(hub) = weak.upgrade() {
                hub.on_change(change);
            }
        })?;
        {
            let mut state = hub.state.lock();
            state.handle = Some(module.handle()?);
            state.owner = Some(owner);
            state.device = Some(device.clone());
        }
        // Existing instances arrive from inside this call: no lock is held here.
        match device.register_interface_notification(hub.guid, on_change) {
            Ok(notification) => {
                hub.state.lock().notification = Some(notification);
                Ok(())
            }
            Err(status) => {
                hub.close_all();
                hub.detach();
                Err(status)
            }
        }
    }

    /// No arrival after it; closes every target.
    fn notification_unregister(module: &Dispatched<'_, Self>) {
        let Ok(hub) = hub(module) else {
            return;
        };
        // No callback runs after this (it waits for one in progress): taken out of the lock.
        let notification = hub.state.lock().notification.take();
        if let Some(notification) = notification {
            notification.unregister();
        }
        hub.close_all();
        hub.detach();
    }

    fn d0_entry(module: &Dispatched<'_, Self>, _previous: PowerDeviceState) -> NtResult<()> {
        if let Ok(hub) = hub(module) {
            hub.state.lock().in_d0 = true;
            if hub.automatic {
                hub.for_each_open(|sink| {
                    if let Ok(stream) = sink.stream() {
                        let _ = stream.stream_start();
                    }
                });
            }
        }
        Ok(())
    }

    fn d0_exit(module: &Dispatched<'_, Self>, _target: PowerDeviceState) -> NtResult<()> {
        if let Ok(hub) = hub(module) {
            hub.state.lock().in_d0 = false;
            if hub.automatic {
                hub.for_each_open(|sink| {
                    if let Ok(stream) = sink.stream() {
                        let _ = stream.stop_and_wait();
                    }
                });
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

/// Each Method enters the Module (rundown-guarded, so it fails while no target is open) and
/// runs on the hub.
impl DeviceInterfaceMultipleTarget {
    fn with_hub<R>(&self, f: impl FnOnce(&Hub) -> NtResult<R>) -> NtResult<R> {
        let module = self.enter()?;
        let hub = hub(&module)?;
        f(&hub)
    }

    /// Enters the Module and runs `f` on the sink and remote target of `target`.
    fn with_target<R>(
        &self,
        target: Target,
        f: impl FnOnce(&Sink, &IoTarget) -> NtResult<R>,
    ) -> NtResult<R> {
        self.with_hub(|hub| {
            let (sink, io) = hub.open_target(target)?;
            f(&sink, &io)
        })
    }

    /// The send Methods on `target` (C DMF's `Target` parameter): the [`RequestSender`] and
    /// [`RequestReuse`] Methods of the returned [`TargetRef`]. Naming a target checks nothing;
    /// each Method does.
    pub fn at(&self, target: Target) -> TargetRef<'_> {
        TargetRef {
            module: self,
            target,
        }
    }

    /// The open targets: writes the first `into.len()` of them into `into` and returns how
    /// many are open (C DMF's client learns them from the `Open` state change only).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no target is open.
    pub fn targets(&self, into: &mut [Target]) -> NtResult<usize> {
        self.with_hub(|hub| {
            let state = hub.state.lock();
            let open = state.entries.iter().filter(|e| e.phase == Phase::Open);
            let mut count = 0;
            for (index, entry) in open.enumerate() {
                if let Some(slot) = into.get_mut(index) {
                    *slot = Target(entry.id);
                }
                count += 1;
            }
            Ok(count)
        })
    }

    /// `DMF_DeviceInterfaceMultipleTarget_StreamStart` on `target`.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no target is open or `target` is query-removed;
    /// `STATUS_INVALID_HANDLE` for a target that left; `STATUS_INVALID_DEVICE_REQUEST` without
    /// a stream config; as ContinuousRequestTarget's otherwise.
    pub fn stream_start(&self, target: Target) -> NtResult<()> {
        self.with_target(target, |sink, _| sink.stream()?.stream_start())
    }

    /// `DMF_DeviceInterfaceMultipleTarget_StreamStop` on `target` (`PASSIVE_LEVEL`, never from
    /// the output callback): stops its stream and waits until no stream request of it is in
    /// flight.
    ///
    /// # Errors
    ///
    /// As [`stream_start`](Self::stream_start).
    pub fn stream_stop(&self, target: Target) -> NtResult<()> {
        self.with_target(target, |sink, _| sink.stream()?.stop_and_wait())
    }

    /// Whether `target`'s stream requests are active (`false` for a target that is not open).
    pub fn is_streaming(&self, target: Target) -> bool {
        self.with_target(target, |sink, _| Ok(sink.is_streaming()))
            .unwrap_or(false)
    }

    /// `DMF_DeviceInterfaceMultipleTarget_Get`: `target`'s remote target. Hold a
    /// [`target_reference`](Self::target_reference) while using it.
    ///
    /// # Errors
    ///
    /// As [`stream_start`](Self::stream_start) (without the stream config's).
    pub fn get(&self, target: Target) -> NtResult<IoTarget> {
        self.with_target(target, |_, io| Ok(io.clone()))
    }

    /// `DMF_DeviceInterfaceMultipleTarget_TargetReference` … `…_TargetDereference`: runs `f`
    /// with `target`'s remote target while holding off the target's close (a removal of it
    /// waits until `f` returns). Keep `f` short.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn target_reference<R>(
        &self,
        target: Target,
        f: impl FnOnce(&IoTarget) -> R,
    ) -> NtResult<R> {
        self.with_target(target, |sink, io| {
            // The child's rundown: its close (the target's teardown) waits for it.
            let _reference = match sink {
                Sink::Stream(s) => s.reference()?,
                Sink::Single(s) => s.reference()?,
            };
            Ok(f(io))
        })
    }

    /// `DMF_DeviceInterfaceMultipleTarget_GuidGet`: the device interface class this Module
    /// opens.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no target is open (as every Method of this Module).
    pub fn guid_get(&self) -> NtResult<Guid> {
        self.with_hub(|hub| Ok(hub.guid))
    }

    /// `DMF_DeviceInterfaceMultipleTarget_BufferPut`: hands back to `target` an output buffer
    /// the client kept from its stream with [`StreamCompletion::keep`].
    ///
    /// # Errors
    ///
    /// As [`stream_start`](Self::stream_start); `STATUS_INVALID_PARAMETER` for a buffer `target`
    /// did not hand out. Either way the buffer is freed.
    pub fn buffer_put(&self, target: Target, buffer: ClientBuffer) -> NtResult<()> {
        self.with_target(target, |sink, _| sink.stream()?.buffer_put(buffer))
    }

    /// The symbolic link `target` was opened by.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn symbolic_link(&self, target: Target) -> NtResult<String> {
        self.with_hub(|hub| {
            hub.open_target(target)?;
            let state = hub.state.lock();
            let entry = state.entries.iter().find(|e| e.id == target.0);
            try_string(&entry.ok_or(NtStatus::INVALID_HANDLE)?.link)
        })
    }
}

/// One target of a [`DeviceInterfaceMultipleTarget`], as [`at`](DeviceInterfaceMultipleTarget::at)
/// names it: the [`RequestSender`] and [`RequestReuse`] Methods on it.
#[derive(Clone, Copy, Debug)]
pub struct TargetRef<'a> {
    module: &'a DeviceInterfaceMultipleTarget,
    target: Target,
}

impl TargetRef<'_> {
    /// The target this names.
    pub fn target(&self) -> Target {
        self.target
    }
}

/// `DMF_DeviceInterfaceMultipleTarget_SendSynchronously`, `…_Send`, `…_SendEx`, `…_Cancel`:
/// forwarded to the target's child, inside this Module's rundown and the child's; a removal of
/// the target cancels its requests (their callbacks still run once). Errors as every
/// [`RequestSender`], and `STATUS_INVALID_HANDLE` for a target that left.
impl RequestSender for TargetRef<'_> {}

/// `DMF_DeviceInterfaceMultipleTarget_ReuseCreate`, `…_ReuseSend`, `…_ReuseDelete`: forwarded to
/// the target's child; a removal of the target deletes its reuse requests.
impl RequestReuse for TargetRef<'_> {}

impl Route for TargetRef<'_> {
    fn route<R>(&self, f: impl FnOnce(&Arc<Sender>) -> NtResult<R>) -> NtResult<R> {
        self.module
            .with_target(self.target, |sink, _| sink.route(f))
    }
}
