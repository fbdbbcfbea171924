//! # IoctlHandler
//!
//! ## Summary
//!
//! Table-driven IOCTL dispatch (C DMF: `Dmf_IoctlHandler.c`, seed MODS-IoctlHandler): the client
//! lists its IOCTLs with their minimum input and output sizes and a handler each; the Module
//! validates every request against the table **before** any handler runs, optionally creates
//! the device interface applications open, and filters who may open it. It replaces both a
//! hand-written `EvtIoDeviceControl` switch and `DMF_Utility_UserModeAccessCreate`.
//!
//! ## Configuration
//!
//! [`IoctlHandlerConfig`] (`DMF_CONFIG_IoctlHandler`):
//! - `table` — an [`IoctlTable`] of [`IoctlEntry`] records (`IoctlHandler_IoctlRecord`):
//!   control code, minimum input size, minimum output size, handler, `administrator_only`;
//! - `access_mode` — [`IoctlAccessMode`] (`AccessModeFilter`): `Default`, `AdministratorOnly`,
//!   `AdministratorOnlyPerIoctl`, `KernelModeOnly`, or `ClientCallback` (the client's
//!   `EvtIoctlHandlerAccessModeFilter`);
//! - `exclusive` — only one handle open at a time (like `WdfDeviceInitSetExclusive`);
//! - `device_interface`, `reference_string` — the interface the Module creates when it opens
//!   (`DeviceInterfaceGuid`, `ReferenceString`); `None` creates none;
//! - `manual_mode` — create the interface only when the client calls `enable(true)`
//!   (`ManualMode`, `DMF_IoctlHandler_IoctlStateSet`);
//! - `kernel_mode_requests_only`, `forward_unhandled_requests`, `post_device_interface_create`
//!   — as in C DMF.
//!
//! ## Methods
//!
//! | Method | C DMF |
//! |---|---|
//! | [`IoctlHandler::enable`] | `DMF_IoctlHandler_IoctlStateSet` |
//! | [`IoctlHandler::is_enabled`] | — (the interface state) |
//! | [`IoctlHandler::handle_device_io_control`] | `DMF_IoctlHandler_IoctlChain`, generalised |
//! | [`IoctlHandler::handle_file_create`], [`IoctlHandler::handle_file_close`], [`IoctlHandler::handle_file_object_deleted`] | — (the file callbacks, for an owner that routes them) |
//!
//! ## Callbacks
//!
//! [`IoctlHandlerFn`] (`EVT_DMF_IoctlHandler_Callback`): `Fn(&mut IoctlCall<'_>) -> IoctlResult`.
//! The [`IoctlCall`] gives the control code, the queue, the request, and the request's own input
//! and output buffers ([`IoctlCall::with_input`], [`IoctlCall::with_output`]: C DMF's
//! `InputBuffer` / `OutputBuffer` arguments), both already checked against the entry's minimums.
//! The handler returns [`IoctlResult::Complete`] (the Module completes the request with that
//! status and information), or takes the request with [`IoctlCall::take`] and returns
//! [`IoctlResult::Pending`] with the token `take` gave it (C DMF's `STATUS_PENDING`: the handler
//! now owns the request). Handlers are closures: what C DMF reaches through the `DMFMODULE`
//! argument (the parent's context) a handler captures.
//!
//! ## Remarks
//!
//! - Validation (C DMF's order): an unknown code is not handled (the next Module, the client,
//!   then DMF's rule: passed down in a filter, `STATUS_NOT_SUPPORTED` in a function driver) —
//!   unless `forward_unhandled_requests`. A known code is always handled: access first — a
//!   user-mode sender with `kernel_mode_requests_only`, or a non-administrator on an
//!   administrator-only code, gets `STATUS_ACCESS_DENIED` — then sizes: an input or output
//!   buffer shorter than the entry's minimum gets `STATUS_BUFFER_TOO_SMALL` (what
//!   `WdfRequestRetrieveInputBuffer` returns); a minimum of 0 passes an empty buffer. Access
//!   comes first so that a caller who may not send a code cannot learn the code's sizes (or that
//!   it exists) from `STATUS_BUFFER_TOO_SMALL`. The handler is never called for a request that
//!   failed validation.
//! - **Access is checked per IOCTL, stricter than C DMF on purpose.** C DMF checks
//!   `AdministratorOnly` at create only, and `AdministratorOnlyPerIoctl` against the file objects
//!   that this Module saw created. Here every IOCTL is checked against who opened its file
//!   object (the administrator flag the platform captured at create, `SeTokenIsAdmin`):
//!   in `AdministratorOnly` mode every code of the table, in `AdministratorOnlyPerIoctl` mode the
//!   `administrator_only` entries. So an administrator-only IOCTL on a handle opened by a
//!   non-administrator is refused with `STATUS_ACCESS_DENIED` whatever Module accepted the create
//!   — e.g. in a filter where a Module before this one accepted it and passed it down, so this
//!   one never saw it. In `ClientCallback` mode the Module remembers the file objects whose create
//!   the client's callback accepted (until they are closed or deleted); for a file object whose
//!   create the callback never saw, it asks the callback at that file's first IOCTL of the
//!   table, with that request, so the client's decision cannot be walked around either.
//! - File create: `AdministratorOnly` refuses non-administrators with `STATUS_ACCESS_DENIED`;
//!   `AdministratorOnlyPerIoctl` lets everyone open and checks per IOCTL; `ClientCallback` asks
//!   the client; `exclusive` refuses a second open with `STATUS_ACCESS_DENIED` (the I/O manager's
//!   status for an exclusive device). Refusals and, in a filter driver, successes go through
//!   `DMF_ModuleRequestCompleteOrForward`: a refused create is completed, an accepted one
//!   passed down. In a function driver an accepted create is left to the client (or DMF, which
//!   succeeds it). Cleanup and close are never taken, so the client still sees them (DMF #129).
//!   The exclusive hold belongs to the file object: it is taken when the Module accepts the
//!   create (never by a create it refuses) and released when that file object is deleted —
//!   at its close, or, if the create is refused after this Module accepted it (by a Module after
//!   this one, the client's create callback, now or later, or a lower driver), when that create
//!   completes: dmf-core's `file_object_deleted` notice, the file object's `EvtCleanupCallback`,
//!   which KMDF runs for a failed create although it sends no cleanup or close for it. So a
//!   refused open never locks others out, wherever the Module sits in the tree. (Why the file
//!   object's deletion and not a tentative hold committed on success: the final status of a
//!   create the client completes later is known only to WDF, and the deletion is the one WDF
//!   notice that comes in both cases.) In a filter the Module also passes the accepted create
//!   down with a completion routine that releases the hold when the lower driver fails it.
//!   The owner of a dynamic instance calls [`IoctlHandler::handle_file_object_deleted`] for the
//!   same effect.
//! - The administrator check uses the token captured at create (`SeTokenIsAdmin`), which the
//!   platform exposes per file object and per request.
//! - The handler works on the request's own buffers: the Module allocates nothing whose size
//!   the caller chooses (an output length of 4 GiB costs nothing) and copies nothing. The
//!   information is clamped to the output length.
//! - **Dynamic use**: one Module type serves both uses, as in C DMF. Added to a device's Modules,
//!   the instance receives the WDF callbacks above (the framework offers it the default queue's
//!   IOCTLs and the file creates and closes). Created dynamically
//!   (`IoctlHandler::with(config).create(&parent)`), it receives none — it is in no dispatch
//!   order — so its owner routes requests to it with the `handle_*` Methods (C DMF's
//!   `DMF_IoctlHandler_IoctlChain`, generalised to creates, closes and file-object deletion); it
//!   creates its interface when created and withdraws it when deleted (`is_dynamic` tells the
//!   Module which it is).
//! - **The `handle_*` Methods work the same on every instance**, dynamic or not, like
//!   `DMF_IoctlHandler_IoctlChain`, which does not ask how its Module was created: each offers
//!   the request exactly as the matching callback does, and returns what the callback would. On an
//!   instance the framework already dispatches to they are for requests the framework does not
//!   offer it — a queue of the client's own, or a request the client received because the Module
//!   left it — and offering a request or file event the Module already saw is harmless: an
//!   unknown code or an accepted create is left to the caller again, and a file's close or
//!   deletion releases nothing twice. Like every Method, they fail (`NotHandled`, or nothing
//!   done) once the Module is closing, leaving the request with the caller.
//! - Not ported: reference-string routing of several instances on one device (the platform's file
//!   object does not expose its file name yet; every file object is this instance's), the
//!   "no default queue" open check (dmf-core creates the default queue after the Modules open).
//! - Open option `OPEN_Create`, DISPATCH lock (the request callbacks may run at DISPATCH_LEVEL).
//!
//! ## Category
//!
//! Driver Patterns (seed MODS-IoctlHandler).
//!
//! # Example
//!
//! A container driver whose only Module answers one IOCTL; an application opens the interface.
//!
//! ```
//! extern crate alloc;
//! use alloc::sync::Arc;
//! use dmf_core::device::container_driver_config;
//! use dmf_core::platform::contract::device::Guid;
//! use dmf_core::platform::simulator;
//! use dmf_core::NtStatus;
//! use dmf_modules::ioctl_handler::{
//!     IoctlEntry, IoctlHandler, IoctlHandlerConfig, IoctlResult, IoctlTable,
//! };
//! use kmdf_sim::io::{Access, AppConfig, Application};
//! use kmdf_sim::pnp::StackSpec;
//!
//! const GUID: Guid = Guid::new(0x1234_5678, 0x9ABC, 0xDEF0, [1, 2, 3, 4, 5, 6, 7, 8]);
//! const IOCTL_SUM: u32 = 0x0022_2000;
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! simulator::install_driver(
//!     &machine,
//!     "summer",
//!     container_driver_config(
//!         |_device, modules| {
//!             let sum = IoctlEntry::new(IOCTL_SUM, 2, 1, |call| {
//!                 // METHOD_BUFFERED: one system buffer, so read the input before writing.
//!                 let read = call.with_input(|input| {
//!                     input.iter().fold(0u8, |a, b| a.wrapping_add(*b))
//!                 });
//!                 let written = read.and_then(|total| call.with_output(|out| out[0] = total));
//!                 match written {
//!                     Ok(()) => IoctlResult::success(1),
//!                     Err(status) => IoctlResult::status(status),
//!                 }
//!             })?;
//!             modules.add(IoctlHandler::with(IoctlHandlerConfig {
//!                 table: IoctlTable::new([sum])?,
//!                 device_interface: Some(GUID),
//!                 ..IoctlHandlerConfig::default()
//!             }));
//!             Ok(())
//!         },
//!         false,
//!     ),
//! );
//! let node = machine.pnp().plug_in(StackSpec::new("ROOT\\SUMMER", "summer")).unwrap();
//! let app = Application::new(&machine, AppConfig::default());
//! let class = simulator::sim_guid(GUID);
//! let handle = app.open_interface(class, Access::READ_WRITE).unwrap();
//! assert_eq!(handle.device_io_control(IOCTL_SUM, &[2, 3], 1).unwrap(), (vec![5], 1));
//! // Too short an input never reaches the handler.
//! assert_eq!(
//!     handle.device_io_control(IOCTL_SUM, &[2], 1).unwrap_err().0,
//!     NtStatus::BUFFER_TOO_SMALL.to_raw()
//! );
//! handle.close();
//! node.remove().unwrap();
//! machine.settle();
//! assert!(machine.verifier().violations().is_empty());
//! ```

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use dmf_core::fallible::{try_arc, try_collect, try_vec_filled, VecExt};
use dmf_core::module::{Dispatched, Handled, IoRequest, ModuleCallbacks, Scope};
use dmf_core::platform::contract::device::{Guid, PlatformDevice};
use dmf_core::platform::contract::io::{
    PlatformFileObject, PlatformRequest, RequestorMode, SendOptions,
};
use dmf_core::platform::{Device, FileObject, Queue, Request};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

/// `EVT_DMF_IoctlHandler_Callback`: handles one validated IOCTL. See the
/// [module documentation](self).
pub type IoctlHandlerFn = Arc<dyn Fn(&mut IoctlCall<'_>) -> IoctlResult + Send + Sync>;

/// `EVT_DMF_IoctlHandler_AccessModeFilter`: decides whether a create may open the interface.
/// `Ok` accepts it (passed down in a filter, left to the client otherwise); `Err(status)`
/// completes it with that status.
pub type IoctlAccessFilterFn = Arc<dyn Fn(&FileObject, &Request) -> NtResult<()> + Send + Sync>;

/// `EVT_DMF_IoctlHandler_PostDeviceInterfaceCreate`: runs once the Module created its device
/// interface (the device, the class and the reference string). An error fails the open.
pub type PostInterfaceCreateFn =
    Arc<dyn Fn(&Device, Guid, Option<&str>) -> NtResult<()> + Send + Sync>;

/// `IoctlHandler_IoctlRecord`: one IOCTL the Module handles.
#[derive(Clone)]
pub struct IoctlEntry {
    /// `IoctlCode`.
    pub code: u32,
    /// `InputBufferMinimumSize`: shorter inputs are `STATUS_BUFFER_TOO_SMALL`.
    pub input_minimum: usize,
    /// `OutputBufferMinimumSize`: shorter outputs are `STATUS_BUFFER_TOO_SMALL`.
    pub output_minimum: usize,
    /// `AdministratorAccessOnly`: only meaningful in [`IoctlAccessMode::AdministratorOnlyPerIoctl`].
    pub administrator_only: bool,
    /// `EvtIoctlHandlerFunction`.
    pub handler: IoctlHandlerFn,
}

impl IoctlEntry {
    /// An entry for `code` with the given minimum sizes and handler.
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES` if the handler cannot be allocated.
    pub fn new(
        code: u32,
        input_minimum: usize,
        output_minimum: usize,
        handler: impl Fn(&mut IoctlCall<'_>) -> IoctlResult + Send + Sync + 'static,
    ) -> NtResult<Self> {
        Ok(IoctlEntry {
            code,
            input_minimum,
            output_minimum,
            administrator_only: false,
            handler: try_arc(handler)?,
        })
    }

    /// Marks the entry administrator-only (`AdministratorAccessOnly = TRUE`).
    #[must_use]
    pub fn administrator_only(mut self) -> Self {
        self.administrator_only = true;
        self
    }

    /// The size check of a request with these buffer lengths: `STATUS_BUFFER_TOO_SMALL` if either
    /// is shorter than its minimum.
    #[inline]
    pub fn validate(&self, input_length: usize, output_length: usize) -> NtResult<()> {
        // `|`, not `||`: both comparisons, no branch between them (the sizes are the caller's
        // and unpredictable).
        #[allow(clippy::needless_bitwise_bool, reason = "one branch, not two")]
        let too_small = (input_length < self.input_minimum) | (output_length < self.output_minimum);
        if too_small {
            Err(NtStatus::BUFFER_TOO_SMALL)
        } else {
            Ok(())
        }
    }
}

impl core::fmt::Debug for IoctlEntry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IoctlEntry")
            .field("code", &format_args!("{:#010X}", self.code))
            .field("input_minimum", &self.input_minimum)
            .field("output_minimum", &self.output_minimum)
            .field("administrator_only", &self.administrator_only)
            .finish_non_exhaustive()
    }
}

/// `IoctlRecords` + `IoctlRecordCount`: the entries, indexed by code. When two entries share a
/// code the first one listed wins (C DMF's linear scan). Cheap to clone.
///
/// Lookup is O(1) and the index is built once, with the table (fallibly): the usual table —
/// codes made by `CTL_CODE` with neighbouring function numbers — gets a direct index on the
/// function bits whose slots hold the entries themselves (one bounds check and one load reach the
/// entry, as a `switch` compiled to a jump table would); any other set of codes an
/// open-addressing hash table (at most half full).
#[derive(Clone, Default)]
pub struct IoctlTable {
    /// `None`: no entries.
    inner: Option<Arc<TableInner>>,
}

/// The entries of an [`IoctlTable`] and their index, shared by its clones.
struct TableInner {
    /// The direct index: slot `(code - base) >> 2` holds the entry of the code with those
    /// function bits (a clone: the handler is shared), `None` if there is none. Empty when the
    /// codes are not dense (then `hashed` indexes them).
    dense: Vec<Option<IoctlEntry>>,
    /// The smallest code, with a direct index.
    base: u32,
    /// The hash index, when the codes are not dense.
    hashed: Option<HashIndex>,
    /// The entries, sorted by code (equal codes in the order listed).
    entries: Vec<IoctlEntry>,
}

/// Linear probing from the code's multiplicative hash (top `32 - shift` bits); a slot is
/// `(code, position + 1)` in the entries, position 0 marks an empty slot.
struct HashIndex {
    shift: u32,
    slots: Vec<(u32, u16)>,
}

/// Fibonacci hashing multiplier (2^32 / φ).
const HASH_MULTIPLIER: u32 = 0x9E37_79B9;

/// The direct index of `entries` (sorted by code) and its base, if their codes are dense enough
/// (the slots at most four times the entries) and no two differ only in their transfer-method
/// bits.
fn dense_index(entries: &[IoctlEntry]) -> NtResult<Option<(u32, Vec<Option<IoctlEntry>>)>> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(None);
    };
    let base = first.code;
    let Some(span) = usize::try_from((last.code - base) >> 2)
        .ok()
        .and_then(|span| span.checked_add(1))
    else {
        return Ok(None);
    };
    if span > entries.len().saturating_mul(4) {
        return Ok(None);
    }
    let mut slots = try_vec_filled(None, span)?;
    Ok(fill_dense(entries, base, &mut slots).map(|()| (base, slots)))
}

/// Fills the direct index `slots` of sorted `entries`; `None` if two codes differ only in the
/// method bits.
fn fill_dense(entries: &[IoctlEntry], base: u32, slots: &mut [Option<IoctlEntry>]) -> Option<()> {
    for entry in entries {
        let slot = slots.get_mut(usize::try_from((entry.code - base) >> 2).ok()?)?;
        match slot {
            None => *slot = Some(entry.clone()),
            // Equal codes: the first listed (sorted first) stays.
            Some(first) if first.code == entry.code => {}
            // Two codes differing only in the method bits: hash them instead.
            Some(_) => return None,
        }
    }
    Some(())
}

/// The hash index of sorted `codes` (the first of equal codes kept).
fn hashed_index(codes: &[u32]) -> NtResult<Option<HashIndex>> {
    let Some(capacity) = codes
        .len()
        .checked_mul(2)
        .map(|c| c.next_power_of_two().max(2))
    else {
        return Ok(None);
    };
    let shift = 32 - capacity.trailing_zeros();
    let mut slots = try_vec_filled((0u32, 0u16), capacity)?;
    Ok(fill_hashed(codes, shift, &mut slots).map(|()| HashIndex { shift, slots }))
}

/// Fills the hash index `slots` (a power of two, more than twice the codes) of sorted `codes`.
fn fill_hashed(codes: &[u32], shift: u32, slots: &mut [(u32, u16)]) -> Option<()> {
    let mask = slots.len() - 1;
    for (position, &code) in codes.iter().enumerate() {
        let mut i = usize::try_from(code.wrapping_mul(HASH_MULTIPLIER) >> shift).ok()?;
        loop {
            let slot = slots.get_mut(i)?;
            if slot.1 == 0 {
                *slot = (code, u16::try_from(position + 1).ok()?);
                break;
            }
            if slot.0 == code {
                break;
            }
            i = (i + 1) & mask;
        }
    }
    Some(())
}

impl IoctlTable {
    /// A table of `entries` (any order).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` with 65 535 entries or more (an index position is 16 bits);
    /// `STATUS_INSUFFICIENT_RESOURCES` if the table cannot be allocated.
    pub fn new(entries: impl IntoIterator<Item = IoctlEntry>) -> NtResult<Self> {
        // Each entry with its place in the list: among equal codes the first listed stays
        // first (an unstable sort allocates nothing), and the index keeps it.
        let mut listed = try_collect(
            entries
                .into_iter()
                .enumerate()
                .map(|(place, entry)| (entry.code, place, entry)),
        )?;
        if listed.len() >= usize::from(u16::MAX) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        if listed.is_empty() {
            return Ok(IoctlTable::default());
        }
        listed.sort_unstable_by_key(|&(code, place, _)| (code, place));
        let entries = try_collect(listed.into_iter().map(|(_, _, entry)| entry))?;
        let inner = if let Some((base, dense)) = dense_index(&entries)? {
            TableInner {
                dense,
                base,
                hashed: None,
                entries,
            }
        } else {
            let codes = try_collect(entries.iter().map(|entry| entry.code))?;
            let hashed = hashed_index(&codes)?.ok_or(NtStatus::INVALID_PARAMETER)?;
            TableInner {
                dense: Vec::new(),
                base: 0,
                hashed: Some(hashed),
                entries,
            }
        };
        Ok(IoctlTable {
            inner: Some(try_arc(inner)?),
        })
    }

    /// How many entries the table has.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    /// The entries, sorted by code.
    pub fn entries(&self) -> &[IoctlEntry] {
        self.inner.as_deref().map_or(&[], |inner| &inner.entries)
    }

    /// The entry for `code` (the first listed, if several).
    #[inline]
    pub fn find(&self, code: u32) -> Option<&IoctlEntry> {
        let inner = self.inner.as_deref()?;
        // The function bits select the slot; the method bits are checked by the comparison.
        let key = usize::try_from(code.wrapping_sub(inner.base) >> 2).ok()?;
        if let Some(Some(entry)) = inner.dense.get(key) {
            if entry.code == code {
                return Some(entry);
            }
        }
        inner.find_hashed(code)
    }

    /// Lookup and size validation in one step (the Module's dispatch before any access to the
    /// request's buffers): `None` for an unknown code, else the entry or
    /// `STATUS_BUFFER_TOO_SMALL`.
    #[inline]
    pub fn lookup(
        &self,
        code: u32,
        input_length: usize,
        output_length: usize,
    ) -> Option<NtResult<&IoctlEntry>> {
        self.find(code)
            .map(|e| e.validate(input_length, output_length).map(|()| e))
    }
}

impl TableInner {
    /// [`IoctlTable::find`] through the hash index, if the table has one.
    #[inline]
    fn find_hashed(&self, code: u32) -> Option<&IoctlEntry> {
        let HashIndex { shift, slots } = self.hashed.as_ref()?;
        let mask = slots.len() - 1;
        let mut i = usize::try_from(code.wrapping_mul(HASH_MULTIPLIER) >> shift).ok()?;
        loop {
            let (c, position) = *slots.get(i)?;
            if position == 0 {
                return None;
            }
            if c == code {
                return self.entries.get(usize::from(position) - 1);
            }
            i = (i + 1) & mask;
        }
    }
}

impl core::fmt::Debug for IoctlTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.entries().iter()).finish()
    }
}

/// `IoctlHandler_AccessModeFilter`: who may open the device interface and send IOCTLs.
#[derive(Clone, Default)]
pub enum IoctlAccessMode {
    /// `IoctlHandler_AccessModeDefault`: anyone.
    #[default]
    Default,
    /// `IoctlHandler_AccessModeFilterAdministratorOnly`: only administrators may open.
    AdministratorOnly,
    /// `IoctlHandler_AccessModeFilterAdministratorOnlyPerIoctl`: anyone may open; entries marked
    /// `administrator_only` refuse non-administrators with `STATUS_ACCESS_DENIED`.
    AdministratorOnlyPerIoctl,
    /// `IoctlHandler_AccessModeFilterKernelModeOnly`: the table answers internal IOCTLs
    /// (`IRP_MJ_INTERNAL_DEVICE_CONTROL`) only; device-control requests are not handled.
    KernelModeOnly,
    /// `IoctlHandler_AccessModeFilterClientCallback`: the client decides at create (and, for a
    /// file object whose create this Module never saw, at its first IOCTL of the table).
    ClientCallback(IoctlAccessFilterFn),
}

impl core::fmt::Debug for IoctlAccessMode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            IoctlAccessMode::Default => "Default",
            IoctlAccessMode::AdministratorOnly => "AdministratorOnly",
            IoctlAccessMode::AdministratorOnlyPerIoctl => "AdministratorOnlyPerIoctl",
            IoctlAccessMode::KernelModeOnly => "KernelModeOnly",
            IoctlAccessMode::ClientCallback(_) => "ClientCallback",
        })
    }
}

/// `DMF_CONFIG_IoctlHandler`. See the [module documentation](self).
#[derive(Clone, Default)]
#[allow(clippy::struct_excessive_bools)] // reason: C DMF's independent config flags, one field each
pub struct IoctlHandlerConfig {
    /// The IOCTL table.
    pub table: IoctlTable,
    /// `AccessModeFilter` (with `EvtIoctlHandlerAccessModeFilter` in `ClientCallback`).
    pub access_mode: IoctlAccessMode,
    /// Only one open handle at a time; a second create gets `STATUS_ACCESS_DENIED`.
    pub exclusive: bool,
    /// `DeviceInterfaceGuid`: the interface created at open (`None`: no interface).
    pub device_interface: Option<Guid>,
    /// `ReferenceString` of the interface.
    pub reference_string: Option<String>,
    /// `ManualMode`: the interface is created disabled; `enable(true)` enables it.
    pub manual_mode: bool,
    /// `KernelModeRequestsOnly`: user-mode senders of a table IOCTL get `STATUS_ACCESS_DENIED`.
    pub kernel_mode_requests_only: bool,
    /// `ForwardUnhandledRequests`: codes not in the table are passed to the next lower driver.
    pub forward_unhandled_requests: bool,
    /// `PostDeviceInterfaceCreate`.
    pub post_device_interface_create: Option<PostInterfaceCreateFn>,
}

impl core::fmt::Debug for IoctlHandlerConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IoctlHandlerConfig")
            .field("table", &self.table)
            .field("access_mode", &self.access_mode)
            .field("exclusive", &self.exclusive)
            .field("device_interface", &self.device_interface)
            .field("reference_string", &self.reference_string)
            .field("manual_mode", &self.manual_mode)
            .field("kernel_mode_requests_only", &self.kernel_mode_requests_only)
            .field(
                "forward_unhandled_requests",
                &self.forward_unhandled_requests,
            )
            .finish_non_exhaustive()
    }
}

/// Proof that a handler took its request ([`IoctlCall::take`]); only [`IoctlResult::Pending`]
/// consumes it, so "pending" cannot be returned for a request the Module still holds.
#[derive(Debug)]
#[must_use = "return it as IoctlResult::Pending"]
pub struct Pended(());

/// What a handler did with its request (`NTSTATUS` + `*BytesReturned` in C DMF).
#[derive(Debug)]
#[must_use]
pub enum IoctlResult {
    /// Complete the request with `status`, `information` bytes of the output returned.
    Complete {
        /// The completion status.
        status: NtStatus,
        /// `BytesReturned` (clamped to the output length).
        information: usize,
    },
    /// `STATUS_PENDING`: the handler took the request and will complete it.
    Pending(Pended),
}

impl IoctlResult {
    /// `STATUS_SUCCESS` with `information` output bytes.
    pub const fn success(information: usize) -> Self {
        IoctlResult::Complete {
            status: NtStatus::SUCCESS,
            information,
        }
    }

    /// `status` with no output.
    pub const fn status(status: NtStatus) -> Self {
        IoctlResult::Complete {
            status,
            information: 0,
        }
    }
}

/// One validated IOCTL as its handler sees it.
///
/// The buffers are the request's own (`WdfRequestRetrieveInputBuffer` /
/// `…OutputBuffer`): the Module allocates nothing sized by the caller and copies nothing.
pub struct IoctlCall<'a> {
    code: u32,
    queue: Option<&'a Queue>,
    request: Option<Request>,
    input_length: usize,
    output_length: usize,
    input_minimum: usize,
    output_minimum: usize,
}

impl core::fmt::Debug for IoctlCall<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IoctlCall")
            .field("code", &format_args!("{:#010X}", self.code))
            .field("input", &self.input_length)
            .field("output", &self.output_length)
            .field("taken", &self.request.is_none())
            .finish_non_exhaustive()
    }
}

impl<'a> IoctlCall<'a> {
    /// `IoControlCode`.
    pub fn code(&self) -> u32 {
        self.code
    }

    /// The queue that presented the request (`None` when the owner of a dynamic instance routed
    /// a request without one).
    pub fn queue(&self) -> Option<&'a Queue> {
        self.queue
    }

    /// The request while the handler has not taken it (its requestor, file object, …).
    pub fn request(&self) -> Option<&Request> {
        self.request.as_ref()
    }

    /// `InputBufferLength`: at least the entry's minimum.
    pub fn input_length(&self) -> usize {
        self.input_length
    }

    /// `OutputBufferLength`: at least the entry's minimum.
    pub fn output_length(&self) -> usize {
        self.output_length
    }

    /// Runs `f` on the request's input buffer (`WdfRequestRetrieveInputBuffer`): at least the
    /// entry's minimum, empty when the minimum is 0 and the sender passed none.
    ///
    /// With `METHOD_BUFFERED` the input and the output are one system buffer: read the input
    /// before writing the output, and do not nest the two views (both platforms refuse a view
    /// nested in another view of the same request with `STATUS_INVALID_DEVICE_STATE`).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` once the handler took the request; the platform's status
    /// for a buffer it cannot map.
    pub fn with_input<R>(&self, f: impl FnOnce(&[u8]) -> R) -> NtResult<R> {
        let request = self
            .request
            .as_ref()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        if self.input_length == 0 {
            return Ok(f(&[]));
        }
        let mut f = Some(f);
        match request.with_input_buffer(self.input_minimum, |buffer| f.take().map(|f| f(buffer))) {
            Ok(Some(result)) => Ok(result),
            // C DMF: a minimum of 0 passes an empty buffer instead of failing.
            Err(NtStatus::BUFFER_TOO_SMALL) if self.input_minimum == 0 => {
                f.take().map(|f| f(&[])).ok_or(NtStatus::INTERNAL_ERROR)
            }
            Ok(None) => Err(NtStatus::INTERNAL_ERROR),
            Err(status) => Err(status),
        }
    }

    /// Runs `f` on the request's output buffer (`WdfRequestRetrieveOutputBuffer`), the request's
    /// full output length (at least the entry's minimum). What `f` writes is the request's
    /// output: the first `information` bytes reach the sender when the handler completes with a
    /// non-error status. See [`with_input`](Self::with_input) for `METHOD_BUFFERED`.
    ///
    /// # Errors
    ///
    /// As [`with_input`](Self::with_input).
    pub fn with_output<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> NtResult<R> {
        let request = self
            .request
            .as_ref()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        if self.output_length == 0 {
            return Ok(f(&mut []));
        }
        let mut f = Some(f);
        match request.with_output_buffer(self.output_minimum, |buffer| f.take().map(|f| f(buffer)))
        {
            Ok(Some(result)) => Ok(result),
            Err(NtStatus::BUFFER_TOO_SMALL) if self.output_minimum == 0 => {
                f.take().map(|f| f(&mut [])).ok_or(NtStatus::INTERNAL_ERROR)
            }
            Ok(None) => Err(NtStatus::INTERNAL_ERROR),
            Err(status) => Err(status),
        }
    }

    /// Takes the request to complete it later: return [`IoctlResult::Pending`] with the token.
    /// What the handler wrote to the output is already in the request; the Module ignores
    /// whatever the handler returns: the request is the handler's.
    pub fn take(&mut self) -> Option<(Request, Pended)> {
        self.request.take().map(|r| (r, Pended(())))
    }
}

/// Table-driven IOCTL handling with access control; see the [module documentation](self).
///
/// One type for both uses: added to a device's Modules it receives the WDF callbacks; created
/// dynamically (`IoctlHandler::with(config).create(&parent)`) it receives none and its owner
/// routes requests to it with the `handle_*` Methods.
#[dmf_module(crate = dmf_core, config = IoctlHandlerConfig, context = Context, open = Create, lock = Dispatch)]
pub struct IoctlHandler;

/// The Module's state.
#[derive(Default)]
struct Context {
    /// `IsDeviceInterfaceCreated`.
    interface_created: bool,
    /// The interface is enabled (created and not disabled by `enable(false)`).
    enabled: bool,
    /// With `exclusive`: the file object that holds the device open.
    exclusive_owner: Option<u64>,
    /// In `ClientCallback` mode: the file objects whose create the client's callback accepted,
    /// until they are closed or deleted.
    approved: Vec<u64>,
}

impl core::fmt::Debug for Context {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Context")
            .field("interface_created", &self.interface_created)
            .field("enabled", &self.enabled)
            .field("exclusive_owner", &self.exclusive_owner)
            .field("approved", &self.approved.len())
            .finish()
    }
}

/// The Module's scope, as the callbacks (`Dispatched`) and the Methods (`Method`) both deref to.
type Handler<'a> = Scope<'a, IoctlHandler>;

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for IoctlHandler {
    fn open(m: &Dispatched<'_, Self>) -> NtResult<()> {
        open(m)
    }

    fn close(m: &Dispatched<'_, Self>) {
        close(m);
    }

    fn device_io_control(m: &Dispatched<'_, Self>, io: &mut IoRequest<'_>) -> Handled {
        let config = m.config();
        if matches!(config.access_mode, IoctlAccessMode::KernelModeOnly) {
            return Handled::NotHandled;
        }
        dispatch(m, config, io)
    }

    fn internal_device_io_control(m: &Dispatched<'_, Self>, io: &mut IoRequest<'_>) -> Handled {
        let config = m.config();
        if !matches!(config.access_mode, IoctlAccessMode::KernelModeOnly) {
            return Handled::NotHandled;
        }
        dispatch(m, config, io)
    }

    fn file_create(m: &Dispatched<'_, Self>, io: &mut IoRequest<'_>, file: &FileObject) -> Handled {
        file_create(m, io, file)
    }

    fn file_close(m: &Dispatched<'_, Self>, file: &FileObject) -> Handled {
        // The exclusive hold lasts until close, as the I/O manager's does. Never taken, so the
        // client sees it (DMF #129).
        file_close(m, file);
        Handled::NotHandled
    }

    fn file_object_deleted(m: &Dispatched<'_, Self>, file: &FileObject) {
        // After close (released there already), or a create refused after this Module accepted
        // it: the file object never opened, and no close will come for it.
        file_close(m, file);
    }
}

impl IoctlHandler {
    /// `DMF_IoctlHandler_IoctlStateSet`: enables or disables the device interface (creating it
    /// the first time in manual mode). Existing handles stay open.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` once closing or without a device; the interface creation's
    /// status.
    pub fn enable(&self, enable: bool) -> NtResult<()> {
        let m = self.enter()?;
        state_set(&m, enable)
    }

    /// Whether the device interface is enabled.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` once closing.
    pub fn is_enabled(&self) -> NtResult<bool> {
        let m = self.enter()?;
        let enabled = m.lock().enabled;
        Ok(enabled)
    }

    /// `DMF_IoctlHandler_IoctlChain`, generalised: offers a device-control request (or, in
    /// `KernelModeOnly` mode, an internal one) to the table, exactly as the Module's
    /// `EvtIoDeviceControl` does: `Handled` if it took the request (completed, pended by a
    /// handler, refused or forwarded); `NotHandled` leaves it in `io` (unknown code, or the Module
    /// is closing). Works the same on every instance; see the module documentation's Remarks.
    pub fn handle_device_io_control(&self, io: &mut IoRequest<'_>) -> Handled {
        let Ok(m) = self.enter() else {
            return Handled::NotHandled;
        };
        dispatch(&m, m.config(), io)
    }

    /// Offers a create, as the Module's `ModuleFileCreate`: `Handled` if it completed (refused)
    /// or forwarded it; `NotHandled` leaves an accepted create to the caller (or the Module is
    /// closing).
    pub fn handle_file_create(&self, io: &mut IoRequest<'_>, file: &FileObject) -> Handled {
        let Ok(m) = self.enter() else {
            return Handled::NotHandled;
        };
        file_create(&m, io, file)
    }

    /// `ModuleFileClose`: releases the exclusive hold of `file` (and, in `ClientCallback` mode,
    /// forgets the client's acceptance of it).
    pub fn handle_file_close(&self, file: &FileObject) {
        if let Ok(m) = self.enter() {
            file_close(&m, file);
        }
    }

    /// The file object is deleted (its `EvtCleanupCallback`: after its close, or because its
    /// create failed after this Module accepted it): releases the exclusive hold of `file`, as
    /// the Module's `file_object_deleted` callback does.
    pub fn handle_file_object_deleted(&self, file: &FileObject) {
        if let Ok(m) = self.enter() {
            file_close(&m, file);
        }
    }
}

fn open(m: &Handler<'_>) -> NtResult<()> {
    let config = m.config();
    if config.device_interface.is_some() && !config.manual_mode {
        create_or_enable_interface(m)?;
    }
    Ok(())
}

fn close(m: &Handler<'_>) {
    let created = {
        let mut ctx = m.lock();
        ctx.exclusive_owner = None;
        ctx.approved.clear();
        core::mem::replace(&mut ctx.enabled, false) && ctx.interface_created
    };
    // A dynamic handler can go while its device stays: its interface goes with it. (One the
    // framework dispatches to closes with its device, whose interfaces go anyway.)
    if created && m.is_dynamic() {
        let config = m.config();
        if let (Some(device), Some(guid)) = (m.device(), config.device_interface) {
            device.set_interface_state(guid, config.reference_string.as_deref(), false);
        }
    }
}

fn create_or_enable_interface(m: &Handler<'_>) -> NtResult<()> {
    let config = m.config();
    let Some(guid) = config.device_interface else {
        m.lock().enabled = true;
        return Ok(());
    };
    let device = m.device().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
    let reference = config.reference_string.as_deref();
    let created = m.lock().interface_created;
    if created {
        device.set_interface_state(guid, reference, true);
    } else {
        match device.create_interface(guid, reference) {
            Ok(_) => {}
            // Registered by an earlier instance on this device (a dynamic handler created again):
            // interfaces cannot be deleted, only enabled again.
            Err(NtStatus::INVALID_PARAMETER | NtStatus::OBJECT_NAME_COLLISION) => {
                device.set_interface_state(guid, reference, true);
            }
            Err(status) => return Err(status),
        }
        m.lock().interface_created = true;
        if let Some(post) = &config.post_device_interface_create {
            post(device, guid, reference)?;
        }
    }
    m.lock().enabled = true;
    Ok(())
}

fn state_set(m: &Handler<'_>, enable: bool) -> NtResult<()> {
    if enable {
        return create_or_enable_interface(m);
    }
    let created = {
        let mut ctx = m.lock();
        ctx.enabled = false;
        ctx.interface_created
    };
    let config = m.config();
    if let (true, Some(guid)) = (created, config.device_interface) {
        let device = m.device().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        device.set_interface_state(guid, config.reference_string.as_deref(), false);
    }
    Ok(())
}

/// `DMF_IoctlHandler_ModuleDeviceIoControl`: the checks in order — code, requestor mode,
/// administrator (before the sizes, so a refused caller learns nothing of the entry), sizes —
/// then the handler, on the request's own buffers.
#[inline]
fn dispatch(m: &Handler<'_>, config: &IoctlHandlerConfig, io: &mut IoRequest<'_>) -> Handled {
    let params = io.parameters();
    let Some(entry) = config.table.find(params.ioctl_code) else {
        return not_in_table(m, config, io);
    };
    let Some(request) = io.take() else {
        return Handled::NotHandled;
    };
    // A known code is handled whatever the outcome (C DMF).
    if let Err(status) = check_access(config, entry, &request)
        .and_then(|()| client_acceptance(m, config, &request))
        .and_then(|()| entry.validate(params.input_length, params.output_length))
    {
        request.complete(status);
        return Handled::Handled;
    }
    let mut call = IoctlCall {
        code: params.ioctl_code,
        queue: io.queue(),
        request: Some(request),
        input_length: params.input_length,
        output_length: params.output_length,
        input_minimum: entry.input_minimum,
        output_minimum: entry.output_minimum,
    };
    let result = (entry.handler)(&mut call);
    let Some(request) = call.request.take() else {
        // The handler took it (pending, or finished it itself).
        return Handled::Handled;
    };
    match result {
        IoctlResult::Complete {
            status,
            information,
        } => {
            if status.is_error() {
                request.complete(status);
            } else {
                request.complete_with_information(status, information.min(params.output_length));
            }
        }
        IoctlResult::Pending(_) => {
            // Unreachable: `Pended` comes only from `take`, which empties the call.
            request.complete(NtStatus::INTERNAL_ERROR);
        }
    }
    Handled::Handled
}

/// A code the table does not have: passed down with `forward_unhandled_requests`, else left for
/// the next Module.
#[cold]
fn not_in_table(m: &Handler<'_>, config: &IoctlHandlerConfig, io: &mut IoRequest<'_>) -> Handled {
    if config.forward_unhandled_requests {
        if let Some(request) = io.take() {
            forward(m, request);
            return Handled::Handled;
        }
    }
    Handled::NotHandled
}

/// Who may send `entry`, checked on every IOCTL against the file object's opener (the
/// administrator flag the platform captured at create), whichever Module accepted the create:
/// `STATUS_ACCESS_DENIED` for a user-mode sender with `kernel_mode_requests_only`, and for a
/// non-administrator in `AdministratorOnly` mode or on an `administrator_only` entry in
/// `AdministratorOnlyPerIoctl` mode.
#[inline]
fn check_access(
    config: &IoctlHandlerConfig,
    entry: &IoctlEntry,
    request: &Request,
) -> NtResult<()> {
    if config.kernel_mode_requests_only && request.requestor_mode() != RequestorMode::Kernel {
        return Err(NtStatus::ACCESS_DENIED);
    }
    let administrator_only = match config.access_mode {
        IoctlAccessMode::AdministratorOnly => true,
        IoctlAccessMode::AdministratorOnlyPerIoctl => entry.administrator_only,
        IoctlAccessMode::Default
        | IoctlAccessMode::KernelModeOnly
        | IoctlAccessMode::ClientCallback(_) => false,
    };
    if administrator_only && !request.is_requestor_administrator() {
        return Err(NtStatus::ACCESS_DENIED);
    }
    Ok(())
}

/// In `ClientCallback` mode, whether the client accepts the IOCTL's file object: yes if its
/// callback accepted the file's create; for a file object whose create it never saw (another
/// Module accepted it first), the callback is asked now, with this request, and its answer
/// remembered when it accepts. `STATUS_ACCESS_DENIED` without a file object; the callback's
/// refusal; `STATUS_INSUFFICIENT_RESOURCES` when the acceptance cannot be remembered.
#[inline]
fn client_acceptance(
    m: &Handler<'_>,
    config: &IoctlHandlerConfig,
    request: &Request,
) -> NtResult<()> {
    let IoctlAccessMode::ClientCallback(filter) = &config.access_mode else {
        return Ok(());
    };
    let file = request.file_object().ok_or(NtStatus::ACCESS_DENIED)?;
    if m.lock().approved.contains(&file.id()) {
        return Ok(());
    }
    filter(&file, request)?;
    approve(m, file.id())
}

/// Remembers that the client's callback accepted `file` (once, however often it is offered).
fn approve(m: &Handler<'_>, file: u64) -> NtResult<()> {
    let mut ctx = m.lock();
    if !ctx.approved.contains(&file) {
        ctx.approved.try_push(file)?;
    }
    Ok(())
}

/// `IoctlHandler_RequestForward`: send-and-forget to the next lower driver; a refused send
/// completes the request with the refusal.
fn forward(m: &Handler<'_>, request: Request) {
    let Some(device) = m.device() else {
        request.complete(NtStatus::INVALID_DEVICE_STATE);
        return;
    };
    let _ = dmf_core::device::pass_down(request, device);
}

/// `DMF_IoctlHandler_FileCreate`.
fn file_create(m: &Handler<'_>, io: &mut IoRequest<'_>, file: &FileObject) -> Handled {
    let config = m.config();
    let verdict = match &config.access_mode {
        IoctlAccessMode::Default
        | IoctlAccessMode::KernelModeOnly
        | IoctlAccessMode::AdministratorOnlyPerIoctl => Ok(()),
        IoctlAccessMode::AdministratorOnly => {
            if file.is_administrator() {
                Ok(())
            } else {
                Err(NtStatus::ACCESS_DENIED)
            }
        }
        IoctlAccessMode::ClientCallback(filter) => match io.request() {
            Some(request) => filter(file, request),
            None => return Handled::NotHandled,
        },
    };
    // Remembered once the client's callback accepts the create; forgotten if this Module then
    // refuses it, and at the file object's close or deletion. A refused allocation refuses the
    // create and changes nothing.
    let client_decides = matches!(config.access_mode, IoctlAccessMode::ClientCallback(_));
    let verdict = verdict.and_then(|()| {
        if client_decides {
            approve(m, file.id())?;
        }
        Ok(())
    });
    // Taken only once this Module accepts the create (never by a create it refuses).
    let mut took_hold = false;
    let verdict = verdict.and_then(|()| {
        if !config.exclusive {
            return Ok(());
        }
        let mut ctx = m.lock();
        match ctx.exclusive_owner {
            Some(owner) if owner != file.id() => Err(NtStatus::ACCESS_DENIED),
            Some(_) => Ok(()),
            None => {
                ctx.exclusive_owner = Some(file.id());
                took_hold = true;
                Ok(())
            }
        }
    });
    if verdict.is_err() && client_decides {
        forget_approval(m, file.id());
    }
    match verdict {
        // An accepted create in a function driver is left to the client (or DMF's success).
        Ok(()) if !m.is_in_filter_driver() => Handled::NotHandled,
        Ok(()) if took_hold => {
            let Some(request) = io.take() else {
                release_hold(m, file.id());
                return Handled::NotHandled;
            };
            forward_create(m, request, file.id());
            Handled::Handled
        }
        _ => {
            let Some(request) = io.take() else {
                return Handled::NotHandled;
            };
            let status = verdict.err().unwrap_or(NtStatus::SUCCESS);
            let _completed = m.request_complete_or_forward(request, status);
            Handled::Handled
        }
    }
}

/// A create that took the exclusive hold, in a filter: passed down with a completion routine
/// so that the hold is released when the lower driver fails the create (the hold belongs to an
/// opened file object only).
fn forward_create(m: &Handler<'_>, request: Request, file: u64) {
    let (Some(device), Ok(handle)) = (m.device(), m.handle()) else {
        release_hold(m, file);
        request.complete(NtStatus::INVALID_DEVICE_STATE);
        return;
    };
    request.format_using_current_type();
    request.set_completion_routine(move |request, params| {
        if !params.status.is_success() {
            // The same Module entered again through its handle (a Method: it may be closing).
            if let Ok(m) = handle.enter() {
                release_hold(&m, file);
            }
        }
        request.complete_with_information(params.status, params.information);
    });
    if let Err(status) = request.send(&device.io_target(), SendOptions::default()) {
        release_hold(m, file);
        request.complete(status);
    }
}

/// Ends `file`'s exclusive hold, if it has it.
fn release_hold(m: &Handler<'_>, file: u64) {
    let mut ctx = m.lock();
    if ctx.exclusive_owner == Some(file) {
        ctx.exclusive_owner = None;
    }
}

/// `DMF_IoctlHandler_FileClose`, and the file object's deletion: the exclusive hold and the
/// client's acceptance end when the file object goes.
fn file_close(m: &Handler<'_>, file: &FileObject) {
    let config = m.config();
    if config.exclusive {
        release_hold(m, file.id());
    }
    if matches!(config.access_mode, IoctlAccessMode::ClientCallback(_)) {
        forget_approval(m, file.id());
    }
}

/// Forgets that the client's callback accepted `file`'s create.
fn forget_approval(m: &Handler<'_>, file: u64) {
    let mut ctx = m.lock();
    if let Some(at) = ctx.approved.iter().position(|&id| id == file) {
        ctx.approved.swap_remove(at);
    }
}
