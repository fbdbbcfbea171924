//! # HidTarget
//!
//! ## Summary
//!
//! Waits for a HID top-level collection with the client's vendor ID, product IDs and usage to
//! appear (`GUID_DEVINTERFACE_HID`), opens it as a remote I/O target, and offers its reports:
//! input reports through a read loop into the client's callback, feature reports get and set,
//! output reports, and the collection's preparsed data for the HID parser. Closes the target when
//! the collection goes away and opens the next matching one that arrives (C DMF:
//! `Dmf_HidTarget.c`). The Module is *open* exactly while it has a matching collection open: its
//! Methods fail with `STATUS_INVALID_DEVICE_STATE` otherwise, and the client's PostOpen /
//! PreClose callbacks (`ModuleSpec::on_post_open` / `on_pre_close`) are its arrival and removal
//! notifications.
//!
//! ## Configuration
//!
//! [`HidTargetConfig`]:
//! - `vendor_id` — `VendorId`: the collection's `VendorID` must be this;
//! - `product_ids` — `PidsOfDevicesToOpen` + `PidCount`: the `ProductID` must be one of these
//!   (empty: any);
//! - `vendor_usage_page`, `vendor_usage` — `VendorUsagePage`, `VendorUsage`: the top-level
//!   collection's `UsagePage` and `Usage` (`HidP_GetCaps`) must be these;
//! - `read`, `write` — `OpenMode`;
//! - `on_input_report` — `EvtHidInputReport`: each input report the read loop gets;
//! - `on_device_selection` — `EvtHidTargetDeviceSelectionCallback`: asked after a collection
//!   matched (symbolic link, collection information, preparsed data); `false` skips it;
//! - `pended_input_read_request_count` — `PendedInputReadRequestCount`: the reads
//!   [`input_read_ex`](HidTarget::input_read_ex) keeps pending (1 to
//!   [`MAX_PENDED_INPUT_READS`]).
//!
//! `ShareAccess` is not ported (targets open with share access 0, as DeviceInterfaceTarget's);
//! `ExpectedReportId` is not used by C DMF's matching and is left out;
//! `SkipHidDeviceEnumerationSearch` + `HidTargetToConnect` (open the client's own stack instead
//! of searching) are left out: the platform contract has no way yet to name a device's own
//! collection. C DMF has no version filter: a client that wants one checks `version_number` in
//! `on_device_selection`.
//!
//! ## Methods
//!
//! | Method | C DMF | IRQL |
//! |---|---|---|
//! | [`input_read`](HidTarget::input_read) | `DMF_HidTarget_InputRead` | PASSIVE |
//! | [`input_read_ex`](HidTarget::input_read_ex) | `DMF_HidTarget_InputReadEx` | PASSIVE |
//! | [`input_read_cancel`](HidTarget::input_read_cancel) | `DMF_HidTarget_InputReadCancel` | PASSIVE |
//! | [`feature_get`](HidTarget::feature_get) | `DMF_HidTarget_FeatureGet` / `…FeatureGetWithTimeout` (merged: `timeout`) | PASSIVE |
//! | [`feature_get_asynchronous`](HidTarget::feature_get_asynchronous) | `DMF_HidTarget_FeatureGetAsynchronous` | PASSIVE |
//! | [`feature_set`](HidTarget::feature_set) | `DMF_HidTarget_FeatureSet` / `…FeatureSetWithTimeout` (merged: `timeout`) | PASSIVE |
//! | [`output_report_set`](HidTarget::output_report_set) | `DMF_HidTarget_OutputReportSet` | PASSIVE |
//! | [`input_report_get`](HidTarget::input_report_get) | `DMF_HidTarget_InputReportGet` | PASSIVE |
//! | [`buffer_read`](HidTarget::buffer_read) | `DMF_HidTarget_BufferRead` | PASSIVE |
//! | [`buffer_write`](HidTarget::buffer_write) | `DMF_HidTarget_BufferWrite` | PASSIVE |
//! | [`hid_collection_information_get`](HidTarget::hid_collection_information_get) | `DMF_HidTarget_HidCollectionInformationGet` | ≤ DISPATCH |
//! | [`preparsed_data_get`](HidTarget::preparsed_data_get) | `DMF_HidTarget_PreparsedDataGet` | ≤ DISPATCH |
//! | [`caps_get`](HidTarget::caps_get) | — (`HidP_GetCaps` on the preparsed data, cached) | ≤ DISPATCH |
//! | [`report_create`](HidTarget::report_create) | `DMF_HidTarget_ReportCreate` | ≤ DISPATCH |
//!
//! Left out: `DMF_HidTarget_FeatureSetEx` (it looks the report up through `HidP_GetValueCaps`,
//! which the platform's HID parser does not offer yet). `InputReportGet` is user-mode only in C DMF; here it sends
//! `IOCTL_HID_GET_INPUT_REPORT`, which hidclass answers for kernel callers too.
//!
//! ## Callbacks
//!
//! [`InputReportCallback`] (`EVT_DMF_HidTarget_InputReport`), [`DeviceSelectionCallback`]
//! (`EVT_DMF_HidTarget_DeviceSelectionCallback`), and the client event callbacks of every Module
//! (PostOpen when a matching collection was opened, PreClose before it is closed).
//!
//! ## Remarks
//!
//! - **Matching** (at each arrival while no collection is open, at `PASSIVE_LEVEL`): the
//!   interface is opened, `IOCTL_HID_GET_COLLECTION_INFORMATION` read (a `DescriptorSize` of 0
//!   or above [`MAX_PREPARSED_DATA`] skips it), VID and PID compared,
//!   `IOCTL_HID_GET_COLLECTION_DESCRIPTOR` read into a buffer of `DescriptorSize` bytes,
//!   `HidP_GetCaps` compared with the usage, then the selection callback asked. A collection
//!   that does not match is closed again and forgotten; the preparsed data and caps of the one
//!   that matched are kept until it goes.
//! - **Report sizes come from the caps**: a feature report is `FeatureReportByteLength` bytes,
//!   an input report `InputReportByteLength`; a caller buffer smaller than what it must hold is
//!   `STATUS_BUFFER_TOO_SMALL`, an offset + count beyond the report `STATUS_BUFFER_OVERFLOW`
//!   (C DMF's checks). Every buffer is allocated fallibly, and only at those sizes.
//! - **Feature get/set** build the report with `HidP_InitializeReportForID` (an ID the
//!   collection has no feature report for fails with the parser's
//!   `HIDP_STATUS_REPORT_DOES_NOT_EXIST`). `feature_set` of part of a report reads the report
//!   first (`IOCTL_HID_GET_FEATURE`), as C DMF does, so the other bytes keep their values. As
//!   `HidD_GetFeature` and C DMF do, the initialized report (its ID in byte 0) goes to
//!   `IOCTL_HID_GET_FEATURE` as the output buffer's first bytes
//!   ([`SendRequest::output_prefix`]), where hidclass reads the report ID
//!   (`METHOD_OUT_DIRECT`); `input_report_get` sends the caller's buffer the same way.
//! - **The read loop**: [`input_read`](HidTarget::input_read) sends one read (C DMF: one per
//!   call, the client calls again); [`input_read_ex`](HidTarget::input_read_ex) keeps
//!   `pended_input_read_request_count` reads pending, each sent again as it completes, until
//!   [`input_read_cancel`](HidTarget::input_read_cancel), a removal, or a completion with
//!   `STATUS_CANCELLED`, `STATUS_DEVICE_NOT_CONNECTED`, `STATUS_DEVICE_REMOVED`,
//!   `STATUS_DELETE_PENDING` or `STATUS_NO_SUCH_DEVICE`. Reports reach `on_input_report` in the
//!   completion (`DISPATCH_LEVEL` possible) or, with `passive_level(true)` on the spec, from a
//!   work item at `PASSIVE_LEVEL` (C DMF's InputReadEx hands them to a ThreadedBufferQueue for
//!   that). The loop's reads are the send engine's stream requests (as ContinuousRequestTarget's):
//!   their buffers are allocated when the loop starts and reused, so a running loop never
//!   allocates; a read is sent again from the work item, never from inside the target's
//!   completion; stopping refuses resends and cancels the reads in flight, then waits for them.
//! - **Removal** (interface removed, query-remove, surprise removal, NotificationUnregister):
//!   the Module closes (PreClose runs, then the rundown waits for Methods in flight), the read
//!   loop stops, pending reads are cancelled and waited for, and the target is closed and
//!   deleted. A cancelled query-remove reopens the target and the Module.
//! - Open option `NOTIFY_PrepareHardware` (`NOTIFY_Create` when created dynamically),
//!   DISPATCH_MAXIMUM lock.
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
//! use dmf_modules::hid_target::{HidTarget, HidTargetConfig};
//! use kmdf_sim::hid::{HidDevice, HidDeviceConfig};
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! let (_node, device) = dmf_core::platform::simulator::plug_in_device(&machine, "example")?;
//! let config = CollectionConfig { device: Some(device), ..CollectionConfig::default() };
//! let modules = ModuleCollection::create(ModuleInit::new(), config)?;
//! // Created dynamically (NOTIFY_Create): it registers for HID collections at once. The
//! // FX2-like collection of kmdf-sim: VID 0x0547, vendor page 0xFF00, usage 1.
//! let hid = HidTarget::with(HidTargetConfig::new(0x0547, 0xFF00, 0x01)).create(&modules)?;
//! // No collection has arrived: the Module is closed.
//! assert_eq!(hid.hid_collection_information_get().err(), Some(NtStatus::INVALID_DEVICE_STATE));
//! // One arrives: it matches, and the Module opens.
//! let board = HidDevice::new(HidDeviceConfig::default());
//! let collection = kmdf_sim::hid::driver::install(&machine, &board).unwrap();
//! assert_eq!(hid.hid_collection_information_get()?.product_id, 0x1002);
//! hid.feature_set(2, &[0x0F], 1, 1, None)?; // the light bar: feature report 2, byte 1
//! let mut bar = [0u8; 1];
//! hid.feature_get(2, &mut bar, 1, 1, None)?;
//! assert_eq!((bar, board.light_bar()), ([0x0F], 0x0F));
//! collection.remove().unwrap();
//! assert_eq!(hid.caps_get().err(), Some(NtStatus::INVALID_DEVICE_STATE));
//! drop(hid);
//! modules.destroy();
//! # Ok::<(), NtStatus>(())
//! ```

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::time::Duration;

use dmf_core::fallible::{try_arc, try_box, try_string, try_vec_filled};
use dmf_core::module::{Dispatched, ModuleCallbacks, Scope};
use dmf_core::platform::contract::device::PlatformDevice;
use dmf_core::platform::contract::hid::{
    HidCaps, HidCollectionInformation, HidReportType, PlatformHidParser, GUID_DEVINTERFACE_HID,
    IOCTL_HID_GET_COLLECTION_DESCRIPTOR, IOCTL_HID_GET_COLLECTION_INFORMATION,
    IOCTL_HID_GET_FEATURE, IOCTL_HID_GET_INPUT_REPORT, IOCTL_HID_SET_FEATURE,
    IOCTL_HID_SET_OUTPUT_REPORT,
};
use dmf_core::platform::contract::io::{
    CompletionParams, InterfaceChange, PlatformIoTarget, PlatformRequest,
};
use dmf_core::platform::{
    Device, HidParser, InterfaceNotification, IoTarget, Request, TargetOpenParams,
};
use dmf_core::sync::{LockKind, ModuleLock};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

use crate::request_target::{copy_output, SendRequest, Sender, Work};

/// The most reads [`HidTarget::input_read_ex`] keeps pending.
pub const MAX_PENDED_INPUT_READS: u32 = 64;
/// The largest preparsed data the Module accepts from a collection (bytes).
pub const MAX_PREPARSED_DATA: usize = 64 * 1024;

/// `EVT_DMF_HidTarget_InputReport`: an input report (its ID byte first).
pub type InputReportCallback = Arc<dyn Fn(&HidTarget, &[u8]) + Send + Sync>;

/// `EVT_DMF_HidTarget_DeviceSelectionCallback`: a collection matched the config; `true` opens
/// it. Arguments: the symbolic link, the collection information and the preparsed data. Called
/// at `PASSIVE_LEVEL` before the Module opens (its Methods do not work yet).
pub type DeviceSelectionCallback =
    Arc<dyn Fn(&HidTarget, &str, &HidCollectionInformation, &[u8]) -> bool + Send + Sync>;

/// `DMF_CONFIG_HidTarget`.
#[derive(Clone)]
pub struct HidTargetConfig {
    /// `VendorId`.
    pub vendor_id: u16,
    /// `PidsOfDevicesToOpen` (its length is `PidCount`; empty: any product).
    pub product_ids: &'static [u16],
    /// `VendorUsagePage`.
    pub vendor_usage_page: u16,
    /// `VendorUsage`.
    pub vendor_usage: u16,
    /// `OpenMode`: read access.
    pub read: bool,
    /// `OpenMode`: write access.
    pub write: bool,
    /// `EvtHidInputReport`.
    pub on_input_report: Option<InputReportCallback>,
    /// `EvtHidTargetDeviceSelectionCallback`.
    pub on_device_selection: Option<DeviceSelectionCallback>,
    /// `PendedInputReadRequestCount`.
    pub pended_input_read_request_count: u32,
}

impl HidTargetConfig {
    /// A config matching `vendor_id` (any product) and the collection usage
    /// (`usage_page`, `usage`): read/write access, one pended read, no callbacks.
    pub fn new(vendor_id: u16, usage_page: u16, usage: u16) -> Self {
        HidTargetConfig {
            vendor_id,
            product_ids: &[],
            vendor_usage_page: usage_page,
            vendor_usage: usage,
            read: true,
            write: true,
            on_input_report: None,
            on_device_selection: None,
            pended_input_read_request_count: 1,
        }
    }
}

impl core::fmt::Debug for HidTargetConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HidTargetConfig")
            .field("vendor_id", &self.vendor_id)
            .field("product_ids", &self.product_ids)
            .field("vendor_usage_page", &self.vendor_usage_page)
            .field("vendor_usage", &self.vendor_usage)
            .field("pended", &self.pended_input_read_request_count)
            .finish_non_exhaustive()
    }
}

/// A HID collection found by VID/PID/usage, surviving removal. See the
/// [module documentation](self).
#[dmf_module(crate = dmf_core, config = HidTargetConfig, context = Context, open = NotifyPrepareHardware, dynamic_open = NotifyCreate, lock = DispatchMaximum)]
pub struct HidTarget;

#[derive(Default)]
struct Context {
    hub: Option<Arc<Hub>>,
}

/// What the open collection is.
struct Opened {
    link: String,
    preparsed: Vec<u8>,
    caps: HidCaps,
    info: HidCollectionInformation,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Open,
    QueryRemoved,
}

struct HubState {
    handle: Option<HidTarget>,
    device: Option<Device>,
    sender: Option<Arc<Sender>>,
    notification: Option<InterfaceNotification>,
    target: Option<IoTarget>,
    opened: Option<Arc<Opened>>,
    phase: Phase,
}

/// What the Module, its notification, its target's callbacks and its reads share. The handle
/// inside is cleared at unregister and destroy, breaking the cycle Module → hub → handle.
struct Hub {
    /// Serializes arrival, removal, query-remove, remove-canceled/complete and unregister.
    pnp: ModuleLock<()>,
    state: ModuleLock<HubState>,
    config: HidTargetConfig,
}

/// A read completion that ends the loop.
fn gone(status: NtStatus) -> bool {
    [
        NtStatus::CANCELLED,
        NtStatus::DEVICE_NOT_CONNECTED,
        NtStatus::DEVICE_REMOVED,
        NtStatus::DELETE_PENDING,
        NtStatus::NO_SUCH_DEVICE,
    ]
    .contains(&status)
}

/// Gives an opened target up for good (close, delete).
fn discard(target: &IoTarget) {
    target.close();
    let _ = target.delete();
}

impl Hub {
    fn on_change(self: &Arc<Self>, change: &InterfaceChange) {
        match change {
            InterfaceChange::Arrival(link) => self.arrival(link),
            InterfaceChange::Removal(link) => self.removal(Some(link)),
        }
    }

    fn open_params(self: &Arc<Self>, link: &str) -> NtResult<TargetOpenParams> {
        let weak = Arc::downgrade(self);
        let query_remove = try_arc(move |_t: &IoTarget| {
            weak.upgrade().map_or(Ok(()), |hub| {
                hub.query_removal();
                Ok(())
            })
        })?;
        let weak: Weak<Hub> = Arc::downgrade(self);
        let remove_canceled = try_arc(move |_t: &IoTarget| {
            if let Some(hub) = weak.upgrade() {
                hub.remove_canceled();
            }
        })?;
        let weak: Weak<Hub> = Arc::downgrade(self);
        let remove_complete = try_arc(move |_t: &IoTarget| {
            if let Some(hub) = weak.upgrade() {
                hub.removal(None);
            }
        })?;
        Ok(TargetOpenParams {
            symbolic_link: Some(try_string(link)?),
            read: self.config.read,
            write: self.config.write,
            query_remove: Some(query_remove),
            remove_canceled: Some(remove_canceled),
            remove_complete: Some(remove_complete),
        })
    }

    /// `HidTarget_MatchCheckForRemote`: the collection at `target` if it matches the config.
    fn probe(&self, handle: &HidTarget, target: &IoTarget, link: &str) -> NtResult<Option<Opened>> {
        let config = &self.config;
        let (bytes, n) = target.send_ioctl_synchronously(
            IOCTL_HID_GET_COLLECTION_INFORMATION,
            &[],
            HidCollectionInformation::SIZE,
            false,
            None,
        )?;
        let info = bytes
            .get(..n)
            .and_then(HidCollectionInformation::from_bytes)
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        let size =
            usize::try_from(info.descriptor_size).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        if size == 0 || size > MAX_PREPARSED_DATA {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        if info.vendor_id != config.vendor_id
            || !(config.product_ids.is_empty() || config.product_ids.contains(&info.product_id))
        {
            return Ok(None);
        }
        let (mut preparsed, n) = target.send_ioctl_synchronously(
            IOCTL_HID_GET_COLLECTION_DESCRIPTOR,
            &[],
            size,
            false,
            None,
        )?;
        preparsed.truncate(n);
        let caps = HidParser::get_caps(&preparsed)?;
        if caps.usage != config.vendor_usage || caps.usage_page != config.vendor_usage_page {
            return Ok(None);
        }
        if let Some(select) = &config.on_device_selection {
            if !select(handle, link, &info, &preparsed) {
                return Ok(None);
            }
        }
        Ok(Some(Opened {
            link: try_string(link)?,
            preparsed,
            caps,
            info,
        }))
    }

    /// An interface arrived: open it if nothing is open and it matches.
    fn arrival(self: &Arc<Self>, link: &str) {
        let _pnp = self.pnp.lock();
        let (device, handle) = {
            let state = self.state.lock();
            if state.phase != Phase::Idle {
                return;
            }
            match (&state.device, &state.handle) {
                (Some(d), Some(h)) => (d.clone(), h.clone()),
                _ => return,
            }
        };
        let Ok(params) = self.open_params(link) else {
            return;
        };
        let Ok(target) = device.create_io_target() else {
            return;
        };
        if target.open(params).is_err() {
            let _ = target.delete();
            return;
        }
        // Not matching, not answering, or no memory: given up.
        let Ok(Some(opened)) = self.probe(&handle, &target, link) else {
            discard(&target);
            return;
        };
        let Ok(opened) = try_arc(opened) else {
            discard(&target);
            return;
        };
        {
            let mut state = self.state.lock();
            state.target = Some(target.clone());
            state.opened = Some(opened);
        }
        self.open_module(&handle, &target);
    }

    /// Hands the target to the send engine and opens the Module (PostOpen runs).
    fn open_module(&self, handle: &HidTarget, target: &IoTarget) {
        let sender = {
            let mut state = self.state.lock();
            state.phase = Phase::Open;
            state.sender.clone()
        };
        let opened = match &sender {
            Some(sender) => {
                sender.set_target(Some(target.clone()));
                handle.notification_open()
            }
            None => Err(NtStatus::INVALID_DEVICE_STATE),
        };
        if opened.is_err() {
            if let Some(sender) = &sender {
                sender.clear();
            }
            target.close();
            if let Some(sender) = &sender {
                sender.wait_idle();
            }
            discard(target);
            self.forget();
        }
    }

    fn forget(&self) {
        let mut state = self.state.lock();
        state.target = None;
        state.opened = None;
        state.phase = Phase::Idle;
    }

    /// Closes the Module (PreClose, rundown), stops the read loop, closes `target` (for
    /// query-remove: `for_query`) and waits for the reads. The target is closed before the wait:
    /// closing cancels what was sent, and refuses a read the loop sends again in a completion
    /// that raced with the stop, so the wait always ends.
    fn close_module(&self, handle: &HidTarget, target: Option<&IoTarget>, for_query: bool) {
        handle.notification_close();
        let sender = self.state.lock().sender.clone();
        if let Some(sender) = &sender {
            sender.stream_stop();
            sender.clear();
        }
        match (target, for_query) {
            (Some(target), true) => target.close_for_query_remove(),
            (Some(target), false) => target.close(),
            (None, _) => {}
        }
        if let Some(sender) = sender {
            sender.stream_wait();
            sender.wait_idle();
        }
    }

    /// Interface removal (`link`), remove-complete or unregister (`None`): close for good.
    fn removal(&self, link: Option<&str>) {
        let _pnp = self.pnp.lock();
        let (phase, target, handle) = {
            let state = self.state.lock();
            if let (Some(link), Some(opened)) = (link, &state.opened) {
                if !opened.link.eq_ignore_ascii_case(link) {
                    return;
                }
            }
            (state.phase, state.target.clone(), state.handle.clone())
        };
        match (phase, handle) {
            (Phase::Idle, _) => return,
            (Phase::Open, Some(handle)) => self.close_module(&handle, target.as_ref(), false),
            _ => {}
        }
        if let Some(target) = target {
            discard(&target);
        }
        self.forget();
    }

    /// `EvtIoTargetQueryRemove`: close the Module, close the target for query-remove.
    fn query_removal(&self) {
        let _pnp = self.pnp.lock();
        let (target, handle) = {
            let state = self.state.lock();
            if state.phase != Phase::Open {
                return;
            }
            (state.target.clone(), state.handle.clone())
        };
        match handle {
            Some(handle) => self.close_module(&handle, target.as_ref(), true),
            None => {
                if let Some(target) = target {
                    target.close_for_query_remove();
                }
            }
        }
        self.state.lock().phase = Phase::QueryRemoved;
    }

    /// `EvtIoTargetRemoveCanceled`: reopen the target and the Module.
    fn remove_canceled(&self) {
        let _pnp = self.pnp.lock();
        let (target, handle) = {
            let state = self.state.lock();
            if state.phase != Phase::QueryRemoved {
                return;
            }
            (state.target.clone(), state.handle.clone())
        };
        let Some(target) = target else {
            return;
        };
        if let (Ok(()), Some(handle)) = (target.open(TargetOpenParams::reopen()), handle) {
            self.open_module(&handle, &target);
        } else {
            discard(&target);
            self.forget();
        }
    }

    fn detach(&self) {
        let mut state = self.state.lock();
        state.handle = None;
        state.device = None;
    }

    /// `input_read`'s one read.
    fn send_read(self: &Arc<Self>, sender: &Arc<Sender>, length: usize) -> NtResult<()> {
        let weak = Arc::downgrade(self);
        sender
            .send(&SendRequest::read(length), false, move |completion| {
                if let Some(hub) = weak.upgrade() {
                    let n = completion.information.min(completion.output.len());
                    if completion.status.is_success() {
                        hub.report(&completion.output[..n]);
                    }
                }
            })
            .map(|_| ())
    }

    /// An input report for the client (while the collection is open).
    fn report(&self, report: &[u8]) {
        let handle = {
            let state = self.state.lock();
            if state.phase != Phase::Open {
                return;
            }
            state.handle.clone()
        };
        if let (Some(handle), Some(callback)) = (handle, &self.config.on_input_report) {
            callback(&handle, report);
        }
    }
}

/// Where a loop read stands between its completion and its resend.
enum Step {
    /// In flight (or not yet sent).
    Sent,
    /// Came back: for the client, in the delivery context.
    Completed(Request, CompletionParams),
    /// To be sent again, from the work item.
    Resend(Request, IoTarget),
}

/// One read of the loop: its buffer and state, allocated when the loop starts and carried from
/// send to completion to resend until it ends (a running loop never allocates) — the send
/// engine's stream requests, as ContinuousRequestTarget's.
struct LoopRead {
    hub: Weak<Hub>,
    sender: Arc<Sender>,
    output: Vec<u8>,
    step: Step,
}

impl LoopRead {
    fn new(hub: &Arc<Hub>, sender: &Arc<Sender>, length: usize) -> NtResult<Box<LoopRead>> {
        try_box(LoopRead {
            hub: Arc::downgrade(hub),
            sender: Arc::clone(sender),
            output: try_vec_filled(0, length)?,
            step: Step::Sent,
        })
    }

    /// Sends the read: `request` again (reused), or a new one. On failure the request is gone.
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
        if let Err(status) = SendRequest::read(self.output.len()).format(&request) {
            let _ = request.delete();
            return Err(status);
        }
        let sender = Arc::clone(&self.sender);
        sender
            .start(
                request,
                target,
                None,
                true,
                move |_id, _cancelled, request, params| {
                    let sender = Arc::clone(&self.sender);
                    self.step = Step::Completed(request, params);
                    sender.deliver(self);
                },
            )
            .map(|_| ())
    }

    /// The read came back (in the delivery context): the report to the client, then the next
    /// read — unless the loop stops or the collection is gone.
    fn completed(mut self: Box<Self>, request: Request, params: CompletionParams) {
        let sender = Arc::clone(&self.sender);
        let stopping = sender.stream_stopping();
        if !stopping && params.status.is_success() {
            let n = copy_output(&request, params.information, &mut self.output);
            if let Some(hub) = self.hub.upgrade() {
                hub.report(&self.output[..n]);
            }
        }
        let target = sender.target();
        match target {
            Some(target) if !stopping && !gone(params.status) => {
                if sender.is_passive() {
                    self.resend(request, &target);
                } else {
                    // Never from inside the target's completion (a target completing its
                    // waiting reads in a loop would get this one back in the same loop).
                    self.step = Step::Resend(request, target);
                    sender.defer(self);
                }
            }
            _ => {
                let _ = request.delete();
                sender.stream_end_one();
                sender.finish();
            }
        }
    }

    fn resend(self: Box<Self>, request: Request, target: &IoTarget) {
        let sender = Arc::clone(&self.sender);
        if self.send(Some(request), target).is_err() {
            sender.stream_end_one();
        }
        sender.finish();
    }
}

impl Work for LoopRead {
    fn run(mut self: Box<Self>) {
        match core::mem::replace(&mut self.step, Step::Sent) {
            Step::Completed(request, params) => self.completed(request, params),
            Step::Resend(request, target) => self.resend(request, &target),
            // Not reached: a loop read is delivered or deferred with its next step.
            Step::Sent => {}
        }
    }
}

fn hub(module: &Scope<'_, HidTarget>) -> NtResult<Arc<Hub>> {
    module
        .lock()
        .hub
        .clone()
        .ok_or(NtStatus::INVALID_DEVICE_STATE)
}

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for HidTarget {
    /// Registers for `GUID_DEVINTERFACE_HID` (existing collections arrive from inside).
    fn notification_register(module: &Dispatched<'_, Self>) -> NtResult<()> {
        let config = module.config();
        if config.pended_input_read_request_count > MAX_PENDED_INPUT_READS {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let device = module
            .device()
            .cloned()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let sender = Sender::open(module)?;
        let hub = try_arc(Hub {
            pnp: ModuleLock::new(LockKind::Wait, ())?,
            state: ModuleLock::new(
                LockKind::Spin,
                HubState {
                    handle: Some(module.handle()?),
                    device: Some(device.clone()),
                    sender: Some(sender),
                    notification: None,
                    target: None,
                    opened: None,
                    phase: Phase::Idle,
                },
            )?,
            config: config.clone(),
        })?;
        let weak = Arc::downgrade(&hub);
        let on_change = try_arc(move |change: &InterfaceChange| {
            if let Some(hub) = weak.upgrade() {
                hub.on_change(change);
            }
        })?;
        module.lock().hub = Some(Arc::clone(&hub));
        match device.register_interface_notification(GUID_DEVINTERFACE_HID, on_change) {
            Ok(notification) => {
                hub.state.lock().notification = Some(notification);
                Ok(())
            }
            Err(status) => {
                hub.detach();
                let sender = hub.state.lock().sender.take();
                if let Some(sender) = sender {
                    sender.close();
                }
                module.lock().hub = None;
                Err(status)
            }
        }
    }

    /// No notification after it; closes an open collection.
    fn notification_unregister(module: &Dispatched<'_, Self>) {
        let Ok(hub) = hub(module) else {
            return;
        };
        let notification = hub.state.lock().notification.take();
        if let Some(notification) = notification {
            notification.unregister();
        }
        hub.removal(None);
        let sender = hub.state.lock().sender.take();
        if let Some(sender) = sender {
            sender.close();
        }
        hub.detach();
    }

    fn destroy(module: &Dispatched<'_, Self>) {
        let hub = module.lock().hub.take();
        if let Some(hub) = hub {
            hub.detach();
        }
    }
}

impl HidTarget {
    /// Enters the Module and runs `f` on the hub, the open collection and the send engine.
    fn with_open<R>(
        &self,
        f: impl FnOnce(&Arc<Hub>, &Opened, &Arc<Sender>) -> NtResult<R>,
    ) -> NtResult<R> {
        let module = self.enter()?;
        let hub = hub(&module)?;
        let (opened, sender) = {
            let state = hub.state.lock();
            (state.opened.clone(), state.sender.clone())
        };
        match (opened, sender) {
            (Some(opened), Some(sender)) => f(&hub, &opened, &sender),
            _ => Err(NtStatus::INVALID_DEVICE_STATE),
        }
    }

    /// `DMF_HidTarget_InputRead`: sends one input-report read; its report goes to
    /// `on_input_report` when it completes.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no collection is open; `STATUS_INVALID_DEVICE_REQUEST`
    /// without `on_input_report` or for a collection without input reports;
    /// `STATUS_INSUFFICIENT_RESOURCES`.
    pub fn input_read(&self) -> NtResult<()> {
        self.with_open(|hub, opened, sender| {
            let length = usize::from(opened.caps.input_report_byte_length);
            if hub.config.on_input_report.is_none() || length == 0 {
                return Err(NtStatus::INVALID_DEVICE_REQUEST);
            }
            hub.send_read(sender, length)
        })
    }

    /// `DMF_HidTarget_InputReadEx`: starts the read loop (`pended_input_read_request_count`
    /// reads pending, each sent again as it completes). Starting it while it runs does nothing.
    ///
    /// # Errors
    ///
    /// As [`input_read`](Self::input_read); `STATUS_INVALID_PARAMETER` for a count of 0;
    /// `STATUS_DEVICE_BUSY` while a stop is in progress. If not all reads could be sent, the
    /// loop is stopped and the error returned.
    pub fn input_read_ex(&self) -> NtResult<()> {
        self.with_open(|hub, opened, sender| {
            let length = usize::from(opened.caps.input_report_byte_length);
            if hub.config.on_input_report.is_none() || length == 0 {
                return Err(NtStatus::INVALID_DEVICE_REQUEST);
            }
            let count = usize::try_from(hub.config.pended_input_read_request_count)
                .map_err(|_| NtStatus::INVALID_PARAMETER)?;
            if count == 0 {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            let target = sender.target().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
            if !sender.stream_begin(count)? {
                return Ok(());
            }
            let mut failure = None;
            for _ in 0..count {
                if let Err(status) =
                    LoopRead::new(hub, sender, length).and_then(|read| read.send(None, &target))
                {
                    sender.stream_end_one();
                    failure.get_or_insert(status);
                }
            }
            match failure {
                None => Ok(()),
                Some(status) => {
                    sender.stream_stop();
                    Err(status)
                }
            }
        })
    }

    /// `DMF_HidTarget_InputReadCancel`: stops the read loop, cancels its pending reads and waits
    /// for them (`PASSIVE_LEVEL`; never from `on_input_report`).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no collection is open.
    pub fn input_read_cancel(&self) -> NtResult<()> {
        self.with_open(|_hub, _opened, sender| {
            sender.stream_stop();
            sender.stream_wait();
            Ok(())
        })
    }

    /// Whether the read loop runs.
    pub fn is_reading(&self) -> bool {
        self.with_open(|_hub, _, sender| Ok(sender.stream_running()))
            .unwrap_or(false)
    }

    /// A zeroed report of `kind` for `report_id`, of the caps' length for that type.
    fn report_for(opened: &Opened, kind: HidReportType, report_id: u8) -> NtResult<Vec<u8>> {
        let length = usize::from(opened.caps.report_length(kind));
        if length == 0 {
            return Err(NtStatus::INVALID_DEVICE_REQUEST);
        }
        let mut report = try_vec_filled(0_u8, length)?;
        HidParser::initialize_report_for_id(kind, report_id, &opened.preparsed, &mut report)?;
        Ok(report)
    }

    /// Reads feature report `report_id` into a report buffer of the caps' length.
    fn feature_read(
        opened: &Opened,
        sender: &Arc<Sender>,
        report_id: u8,
        timeout: Option<Duration>,
    ) -> NtResult<Vec<u8>> {
        let report = Self::report_for(opened, HidReportType::Feature, report_id)?;
        let (mut out, n) = sender.send_synchronously(
            &SendRequest::ioctl(IOCTL_HID_GET_FEATURE, &[], report.len())
                .output_prefix(&report)
                .timeout(timeout),
        )?;
        out.truncate(n);
        Ok(out)
    }

    /// `DMF_HidTarget_FeatureGet` / `DMF_HidTarget_FeatureGetWithTimeout`: reads feature report
    /// `report_id` and copies its bytes `offset .. offset + count` to the start of `buffer`.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no collection is open; `STATUS_BUFFER_TOO_SMALL` if
    /// `count` exceeds `buffer`; `STATUS_BUFFER_OVERFLOW` if `offset + count` exceeds the feature
    /// report; the parser's status for an unknown report; the request's status (`STATUS_IO_TIMEOUT`
    /// after `timeout`).
    pub fn feature_get(
        &self,
        report_id: u8,
        buffer: &mut [u8],
        offset: usize,
        count: usize,
        timeout: Option<Duration>,
    ) -> NtResult<()> {
        if count > buffer.len() {
            return Err(NtStatus::BUFFER_TOO_SMALL);
        }
        self.with_open(|_hub, opened, sender| {
            let report = Self::feature_read(opened, sender, report_id, timeout)?;
            let end = offset.checked_add(count).ok_or(NtStatus::BUFFER_OVERFLOW)?;
            if end > usize::from(opened.caps.feature_report_byte_length) {
                return Err(NtStatus::BUFFER_OVERFLOW);
            }
            let source = report.get(offset..end).ok_or(NtStatus::BUFFER_OVERFLOW)?;
            buffer[..count].copy_from_slice(source);
            Ok(())
        })
    }

    /// `DMF_HidTarget_FeatureGetAsynchronous`: sends a read of feature report `report_id`;
    /// `callback` (`EVT_DMF_HidTarget_FeatureGetAsynchronousSendCompletion`, its client context
    /// being whatever it captures) gets the completion status and the report bytes, exactly
    /// once — in the completion, or at `PASSIVE_LEVEL` with `passive_level(true)` — also when a
    /// removal cancels the request.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no collection is open; the parser's status for an
    /// unknown report; `STATUS_INSUFFICIENT_RESOURCES`. On an error `callback` is not called.
    pub fn feature_get_asynchronous(
        &self,
        report_id: u8,
        callback: impl FnOnce(&HidTarget, NtStatus, &[u8]) + Send + 'static,
    ) -> NtResult<()> {
        self.with_open(|hub, opened, sender| {
            let report = Self::report_for(opened, HidReportType::Feature, report_id)?;
            let handle = hub
                .state
                .lock()
                .handle
                .clone()
                .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
            sender
                .send(
                    &SendRequest::ioctl(IOCTL_HID_GET_FEATURE, &[], report.len())
                        .output_prefix(&report),
                    false,
                    move |completion| {
                        let n = completion.information.min(completion.output.len());
                        callback(&handle, completion.status, &completion.output[..n]);
                    },
                )
                .map(|_| ())
        })
    }

    /// `DMF_HidTarget_FeatureSet` / `DMF_HidTarget_FeatureSetWithTimeout`: writes the first
    /// `count` bytes of `buffer` at `offset` of feature report `report_id` and sends it. A
    /// report not covered whole is read first, so its other bytes keep their values.
    ///
    /// # Errors
    ///
    /// As [`feature_get`](Self::feature_get).
    pub fn feature_set(
        &self,
        report_id: u8,
        buffer: &[u8],
        offset: usize,
        count: usize,
        timeout: Option<Duration>,
    ) -> NtResult<()> {
        if count > buffer.len() {
            return Err(NtStatus::BUFFER_TOO_SMALL);
        }
        self.with_open(|_hub, opened, sender| {
            let length = usize::from(opened.caps.feature_report_byte_length);
            let end = offset.checked_add(count).ok_or(NtStatus::BUFFER_OVERFLOW)?;
            if end > length {
                return Err(NtStatus::BUFFER_OVERFLOW);
            }
            let mut report = if end < length || offset > 0 {
                let mut current = Self::feature_read(opened, sender, report_id, timeout)?;
                if current.len() != length {
                    // A short answer: start from a clean report instead.
                    current = Self::report_for(opened, HidReportType::Feature, report_id)?;
                }
                current
            } else {
                Self::report_for(opened, HidReportType::Feature, report_id)?
            };
            report[offset..end].copy_from_slice(&buffer[..count]);
            sender
                .send_synchronously(
                    &SendRequest::ioctl(IOCTL_HID_SET_FEATURE, &report, 0).timeout(timeout),
                )
                .map(|_| ())
        })
    }

    /// `DMF_HidTarget_OutputReportSet`: sends `report` (its ID byte first) as an output report.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no collection is open; `STATUS_INVALID_DEVICE_REQUEST`
    /// for a collection without output reports; `STATUS_BUFFER_TOO_SMALL` for a report shorter
    /// than the caps' output length; the request's status.
    pub fn output_report_set(&self, report: &[u8], timeout: Option<Duration>) -> NtResult<()> {
        self.with_open(|_hub, opened, sender| {
            let length = usize::from(opened.caps.output_report_byte_length);
            if length == 0 {
                return Err(NtStatus::INVALID_DEVICE_REQUEST);
            }
            if report.len() < length {
                return Err(NtStatus::BUFFER_TOO_SMALL);
            }
            sender
                .send_synchronously(
                    &SendRequest::ioctl(IOCTL_HID_SET_OUTPUT_REPORT, &report[..length], 0)
                        .timeout(timeout),
                )
                .map(|_| ())
        })
    }

    /// `DMF_HidTarget_InputReportGet`: the collection's current input report
    /// (`IOCTL_HID_GET_INPUT_REPORT`) into `buffer`; the bytes written. As in C DMF (whose
    /// client passes a report from `DMF_HidTarget_ReportCreate`), byte 0 of `buffer` names the
    /// report: the first input-report-length bytes of `buffer` go out as the request's output
    /// buffer, where hidclass reads the report ID ([`report_create`](Self::report_create) of
    /// [`HidReportType::Input`] makes one).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no collection is open; `STATUS_BUFFER_TOO_SMALL` if
    /// `buffer` is shorter than the caps' input length; the request's status (hidclass refuses
    /// an ID the collection has no input report for).
    pub fn input_report_get(&self, buffer: &mut [u8]) -> NtResult<usize> {
        self.with_open(|_hub, opened, sender| {
            let length = usize::from(opened.caps.input_report_byte_length);
            if buffer.len() < length {
                return Err(NtStatus::BUFFER_TOO_SMALL);
            }
            // As `HidD_GetInputReport`: the caller's report (its ID in byte 0) goes out in the
            // output buffer, where hidclass reads the ID.
            let (out, n) = sender.send_synchronously(
                &SendRequest::ioctl(IOCTL_HID_GET_INPUT_REPORT, &[], length)
                    .output_prefix(&buffer[..length]),
            )?;
            let n = n.min(out.len()).min(buffer.len());
            buffer[..n].copy_from_slice(&out[..n]);
            Ok(n)
        })
    }

    /// `DMF_HidTarget_BufferRead`: one synchronous read of the next input report into `buffer`;
    /// the bytes read.
    ///
    /// # Errors
    ///
    /// As [`input_report_get`](Self::input_report_get) (`STATUS_IO_TIMEOUT` after `timeout`).
    pub fn buffer_read(&self, buffer: &mut [u8], timeout: Option<Duration>) -> NtResult<usize> {
        self.with_open(|_hub, opened, sender| {
            let length = usize::from(opened.caps.input_report_byte_length);
            if buffer.len() < length {
                return Err(NtStatus::BUFFER_TOO_SMALL);
            }
            let (out, n) =
                sender.send_synchronously(&SendRequest::read(length).timeout(timeout))?;
            let n = n.min(out.len());
            buffer[..n].copy_from_slice(&out[..n]);
            Ok(n)
        })
    }

    /// `DMF_HidTarget_BufferWrite`: one synchronous write of `buffer` (an output report, ID byte
    /// first); the bytes written.
    ///
    /// # Errors
    ///
    /// As [`output_report_set`](Self::output_report_set).
    pub fn buffer_write(&self, buffer: &[u8], timeout: Option<Duration>) -> NtResult<usize> {
        self.with_open(|_hub, opened, sender| {
            let length = usize::from(opened.caps.output_report_byte_length);
            if length == 0 {
                return Err(NtStatus::INVALID_DEVICE_REQUEST);
            }
            if buffer.len() < length {
                return Err(NtStatus::BUFFER_TOO_SMALL);
            }
            sender
                .send_synchronously(&SendRequest::write(&buffer[..length]).timeout(timeout))
                .map(|(_, n)| n)
        })
    }

    /// `DMF_HidTarget_HidCollectionInformationGet`.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no collection is open.
    pub fn hid_collection_information_get(&self) -> NtResult<HidCollectionInformation> {
        self.with_open(|_hub, opened, _| Ok(opened.info))
    }

    /// The collection's `HIDP_CAPS` (read once at the match).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no collection is open.
    pub fn caps_get(&self) -> NtResult<HidCaps> {
        self.with_open(|_hub, opened, _| Ok(opened.caps))
    }

    /// `DMF_HidTarget_PreparsedDataGet`: runs `f` on the collection's preparsed data (for the
    /// [`HidParser`] routines), inside the Module's rundown — the data is the Module's and lives
    /// only while the collection is open, so it is lent, not handed out.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no collection is open.
    pub fn preparsed_data_get<R>(&self, f: impl FnOnce(&[u8]) -> R) -> NtResult<R> {
        self.with_open(|_hub, opened, _| Ok(f(&opened.preparsed)))
    }

    /// `DMF_HidTarget_ReportCreate`: a report of `kind` for `report_id`, of the caps' length,
    /// initialized by `HidP_InitializeReportForID`.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` while no collection is open; `STATUS_INVALID_DEVICE_REQUEST`
    /// for a type the collection has no reports of; the parser's status for an unknown ID;
    /// `STATUS_INSUFFICIENT_RESOURCES`.
    pub fn report_create(&self, kind: HidReportType, report_id: u8) -> NtResult<Vec<u8>> {
        self.with_open(|_hub, opened, _| Self::report_for(opened, kind, report_id))
    }
}
