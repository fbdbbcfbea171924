//! # DMF_Pdo
//!
//! ## Summary
//!
//! Creates child PDOs (Physical Device Objects) on the bus device it belongs to: the children
//! listed in its config when the device first enters D0, and more at run time with
//! [`Pdo::device_plug`] / [`Pdo::device_plug_ex`]; it reports them missing
//! ([`Pdo::device_unplug`], by serial number, all of them) and ejects them. The PnP manager
//! loads each child's function driver by the child's hardware ids. A child can host its own
//! DMF Module tree ([`PdoRecord::modules_add`]).
//!
//! ## Configuration
//!
//! [`PdoConfig`] (`DMF_CONFIG_Pdo`):
//!
//! | C DMF | Rust | |
//! |---|---|---|
//! | `PdoRecords`, `PdoRecordCount` | [`PdoConfig::pdo_records`] | at most [`PDO_MAXIMUM_RECORDS`] |
//! | `InstanceIdProvidedByClient` | merged: a record's [`PdoRecord::instance_id`] is used when it has one | |
//! | `InstanceIdFormatString` | [`PdoConfig::instance_id_format_string`] | `printf`-style, the serial number its one argument |
//! | `DeviceLocation` | [`PdoConfig::device_location`] | |
//! | `EvtPdoPnpCapabilities` / `EvtPdoPowerCapabilities` | [`PdoConfig::evt_pdo_pnp_capabilities`] / [`PdoConfig::evt_pdo_power_capabilities`] | |
//! | `EvtPdoQueryInterfaceAdd` | [`PdoConfig::evt_pdo_query_interface_add`] | |
//! | `EvtPdoHardwareIdFormat` / `EvtPdoCompatibleIdFormat` | [`PdoConfig::evt_pdo_hardware_id_format`] / [`PdoConfig::evt_pdo_compatible_id_format`] | write into an [`IdBuffer`] |
//! | `EvtPdoPreCreate` / `EvtPdoPostCreate` | [`PdoConfig::evt_pdo_pre_create`] / [`PdoConfig::evt_pdo_post_create`] | |
//!
//! [`PdoRecord`] (`PDO_RECORD`): hardware ids (1 to [`PDO_RECORD_MAXIMUM_NUMBER_OF_HARDWARE_IDS`]),
//! compatible ids (up to [`PDO_RECORD_MAXIMUM_NUMBER_OF_COMPAT_IDS`]), description (a format
//! with the serial number as its argument, like C's), serial number, `EvtPdoIsPdoRequired`,
//! raw device (`RawDevice` + `RawDeviceClassGuid` in one `Option`), the PDO's Modules
//! (`EnableDmf` + `EvtDmfDeviceModulesAdd` in one `Option`), address (`UseAddress` + `Address`),
//! instance id. Every id, the instance id and the formatted description are at most
//! [`MAXIMUM_ID_LENGTH`] UTF-16 units (C's buffers); longer, empty or NUL-carrying ids, or too
//! many of them, are `STATUS_INVALID_PARAMETER`.
//!
//! ## Methods
//!
//! | C DMF | Rust |
//! |---|---|
//! | `DMF_Pdo_DevicePlug` | [`Pdo::device_plug`] |
//! | `DMF_Pdo_DevicePlugEx` | [`Pdo::device_plug_ex`] |
//! | `DMF_Pdo_DeviceUnplug` | [`Pdo::device_unplug`] |
//! | `DMF_Pdo_DeviceUnPlugEx` | [`Pdo::device_unplug_ex`] |
//! | `DMF_Pdo_DeviceUnplugUsingSerialNumber` | [`Pdo::device_unplug_using_serial_number`] |
//! | `DMF_Pdo_DeviceUnplugAll` | [`Pdo::device_unplug_all`] |
//! | `DMF_Pdo_DeviceEject` | [`Pdo::device_eject`] |
//! | `DMF_Pdo_DeviceEjectUsingSerialNumber` | [`Pdo::device_eject_using_serial_number`] |
//!
//! All at `PASSIVE_LEVEL`.
//!
//! ## Callbacks
//!
//! The config's (above) and each record's `is_pdo_required`, `modules_add`. The Module itself
//! implements `ModuleOpen` (checks the config's records: a bad one fails the open with
//! `STATUS_INVALID_PARAMETER`), `ModuleD0Entry` (plugs them the first time) and `ModuleClose`.
//!
//! ## Remarks
//!
//! - Each child is created as C DMF's `Pdo_PdoEx` does: `WdfPdoInitAllocate`, raw device,
//!   hardware ids (the first also the device id), compatible ids, instance id, device text
//!   (description and location, `en-US`) and default locale, the client's PreCreate,
//!   `WdfDeviceCreate` (with DMF's hooks and the record's Modules when it has them), PostCreate,
//!   PnP capabilities (`UINumber` = serial number, the record's address, then the client's
//!   callback), power capabilities (C's defaults: no D1, wake from D3, D3 in every sleep state,
//!   then the client's callback), QueryInterfaceAdd, `WdfFdoAddStaticChild`. A failing step
//!   deletes the PDO; nothing is left behind.
//! - The config's records are plugged in the device's first D0Entry (C DMF does it from a child
//!   ScheduledTask run in D0Entry), each record asked `is_pdo_required(PreviousState)` first.
//!   If one fails the rest wait for the next D0Entry (C's ScheduledTask retries then); records
//!   already present are not plugged twice.
//! - `device_plug` refuses a serial number in use; `device_plug_ex` a serial number in use with
//!   one of the record's hardware ids (C's uniqueness rules); both `STATUS_INVALID_PARAMETER`.
//!   Plugs are serialised by the Module's lock, so two racing plugs cannot both pass the check.
//! - `device_unplug` and `device_eject` take only a PDO this Module's device reported
//!   (`STATUS_INVALID_PARAMETER` otherwise; C passes any handle to WDF). The serial-number and
//!   hardware-id Methods return `STATUS_NOT_FOUND` when nothing matches, as C does.
//! - A dynamic Pdo reports missing, at its close, the children it plugged that are still
//!   present. One in the device's tree closes when the device is removed, after the PnP manager
//!   has removed the children, and leaves them to it (as C DMF, which has no close).
//! - Left out: `DeviceProperties` (`WdfDeviceAssignProperty` from an `IRP_MN_DEVICE_ENUMERATED`
//!   preprocess routine: neither the contract nor kmdf-sim models device properties or WDM IRP
//!   preprocessing), `CustomClientContext` (the PDO's own Modules or PostCreate hold client
//!   state in Rust). The callbacks are plain `fn` pointers: the config is copied without an
//!   allocation; they get the Module's handle as C's get `DMFMODULE`.
//!
//! ## Example
//!
//! A bus driver whose device reports one child at its first D0Entry; the child's function
//! driver is found by the child's hardware id.
//!
//! ```
//! extern crate alloc;
//! use alloc::sync::Arc;
//! use dmf_core::device::DmfDeviceInit;
//! use dmf_core::platform::contract::device::{DeviceAttributes, PlatformDeviceInit};
//! use dmf_core::platform::{simulator, DriverConfig};
//! use dmf_modules::pdo::{Pdo, PdoConfig, PdoRecord};
//! use kmdf_sim::pnp::{NodeState, StackSpec};
//!
//! static CHILDREN: [PdoRecord<'static>; 1] = [PdoRecord {
//!     hardware_ids: &["DmfBus\\Child"],
//!     description: "Child %u",
//!     serial_number: 7,
//!     ..PdoRecord::EMPTY
//! }];
//!
//! # fn main() {
//! let machine = kmdf_sim::Machine::new();
//! let _on = machine.enter();
//! // The bus driver: one Pdo Module listing one child.
//! simulator::install_driver(&machine, "bus", DriverConfig {
//!     device_add: Arc::new(|_driver, init| {
//!         let mut dmf = DmfDeviceInit::new(init);
//!         dmf.set_modules_add(|_device, modules| {
//!             modules.add(Pdo::with(PdoConfig { pdo_records: &CHILDREN, ..PdoConfig::default() }));
//!             Ok(())
//!         })?;
//!         dmf.create_device(DeviceAttributes::default())?;
//!         dmf.modules_create().map(|_| ())
//!     }),
//!     unload: None,
//! });
//! // The child's function driver, found by the child's hardware id (its INF's models line).
//! simulator::install_driver(&machine, "child", DriverConfig {
//!     device_add: Arc::new(|_driver, init| init.create_device().map(|_| ())),
//!     unload: None,
//! });
//! kmdf_sim::driver::bind_hardware_id(&machine, "DmfBus\\Child", "child");
//!
//! let bus = machine.pnp().plug_in(StackSpec::new("ROOT\\Bus", "bus")).unwrap();
//! let child = bus.children()[0].clone();
//! assert_eq!(child.state(), NodeState::Started);
//! assert_eq!(child.instance_id(), "DmfBus\\Child\\7");
//! bus.remove().unwrap(); // the child goes first
//! assert_eq!(child.state(), NodeState::Removed);
//! assert!(machine.verdict().is_ok());
//! # }
//! ```
//!
//! ## Category
//!
//! Driver Patterns.

use core::fmt::Write as _;

use dmf_core::device::DmfDeviceInit;
use dmf_core::fallible::{try_arc, try_string};
use dmf_core::module::{Dispatched, ModuleCallbacks, ModuleInit, PowerDeviceState};
use dmf_core::platform::contract::device::{
    DeviceAttributes, DevicePowerLevel, Guid, PlatformBus, PlatformDevice, PlatformDeviceInit,
    PlatformPdoInit, PnpCapabilities, PowerCapabilities, TriState,
};
use dmf_core::platform::{Device, DeviceInit};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

/// `PDO_RECORD_MAXIMUM_NUMBER_OF_HARDWARE_IDS`.
pub const PDO_RECORD_MAXIMUM_NUMBER_OF_HARDWARE_IDS: usize = 8;
/// `PDO_RECORD_MAXIMUM_NUMBER_OF_COMPAT_IDS`.
pub const PDO_RECORD_MAXIMUM_NUMBER_OF_COMPAT_IDS: usize = 8;
/// C DMF's `MAXIMUM_ID_LENGTH`: the longest id, instance id or formatted description, in UTF-16
/// units.
pub const MAXIMUM_ID_LENGTH: usize = 80;
/// The most records a config may list.
pub const PDO_MAXIMUM_RECORDS: usize = 64;
/// The locale of the device text: `MAKELCID(MAKELANGID(LANG_ENGLISH, SUBLANG_ENGLISH_US),
/// SORT_DEFAULT)`, as C DMF sets it.
pub const LOCALE_EN_US: u32 = 0x0409;

/// A text of at most [`MAXIMUM_ID_LENGTH`] UTF-16 units in a fixed buffer (no allocation): what
/// the id-format callbacks write into (C's `FormattedIdBuffer`). Writing past the bound fails.
#[derive(Clone)]
pub struct IdBuffer {
    bytes: [u8; MAXIMUM_ID_LENGTH * 3],
    len: usize,
    units: usize,
}

impl Default for IdBuffer {
    fn default() -> Self {
        IdBuffer {
            bytes: [0; MAXIMUM_ID_LENGTH * 3],
            len: 0,
            units: 0,
        }
    }
}

impl core::fmt::Debug for IdBuffer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl IdBuffer {
    /// The text written so far.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }

    /// Empties the buffer.
    pub fn clear(&mut self) {
        self.len = 0;
        self.units = 0;
    }

    /// Appends `text`.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` if the result would exceed [`MAXIMUM_ID_LENGTH`] UTF-16 units
    /// (the buffer keeps what it had).
    pub fn push_str(&mut self, text: &str) -> NtResult<()> {
        let units = text.encode_utf16().count();
        let end = self.len + text.len();
        if self.units + units > MAXIMUM_ID_LENGTH || end > self.bytes.len() {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        self.bytes[self.len..end].copy_from_slice(text.as_bytes());
        self.len = end;
        self.units += units;
        Ok(())
    }
}

impl core::fmt::Write for IdBuffer {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.push_str(s).map_err(|_| core::fmt::Error)
    }
}

/// Formats `format` with `serial` as its one `printf` argument into `out`: `%u`, `%d`, `%i`,
/// `%x`, `%X` (an optional `0` flag, width and `l`), and `%%`. What `RtlUnicodeStringPrintf`
/// does with C DMF's description and instance-id formats.
///
/// # Errors
///
/// `STATUS_INVALID_PARAMETER` for another conversion, a second argument, or a result longer than
/// [`MAXIMUM_ID_LENGTH`].
pub fn format_with_serial(format: &str, serial: u32, out: &mut IdBuffer) -> NtResult<()> {
    out.clear();
    let mut used = false;
    let mut rest = format;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at])?;
        let spec = &rest[at + 1..];
        let mut chars = spec.char_indices().peekable();
        let mut zero = false;
        let mut width = 0usize;
        if let Some((_, '0')) = chars.peek() {
            zero = true;
            chars.next();
        }
        while let Some(&(_, c)) = chars.peek() {
            let Some(d) = c.to_digit(10) else { break };
            width = width * 10 + d as usize;
            if width > MAXIMUM_ID_LENGTH {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            chars.next();
        }
        if let Some((_, 'l')) = chars.peek() {
            chars.next();
        }
        let Some((end, conversion)) = chars.next() else {
            return Err(NtStatus::INVALID_PARAMETER);
        };
        let result = match conversion {
            '%' => out.push_str("%").map_err(|_| core::fmt::Error),
            'u' | 'd' | 'i' | 'x' | 'X' if !used => {
                used = true;
                match (conversion, zero) {
                    ('x', true) => write!(out, "{serial:0width$x}"),
                    ('x', false) => write!(out, "{serial:width$x}"),
                    ('X', true) => write!(out, "{serial:0width$X}"),
                    ('X', false) => write!(out, "{serial:width$X}"),
                    (_, true) => write!(out, "{serial:0width$}"),
                    (_, false) => write!(out, "{serial:width$}"),
                }
            }
            _ => return Err(NtStatus::INVALID_PARAMETER),
        };
        result.map_err(|_| NtStatus::INVALID_PARAMETER)?;
        rest = &spec[end + conversion.len_utf8()..];
    }
    out.push_str(rest)
}

/// `EVT_DMF_Pdo_IsPdoRequired`: whether a config record is plugged at this D0Entry.
pub type IsPdoRequiredFn = fn(&Pdo, PowerDeviceState) -> bool;
/// `EVT_DMF_DEVICE_MODULES_ADD` of a child PDO: adds the PDO's own Modules.
pub type PdoModulesAddFn = fn(&Device, &mut ModuleInit) -> NtResult<()>;
/// `EVT_DMF_Pdo_DevicePnpCapabilities`.
pub type PnpCapabilitiesFn = fn(&Pdo, &mut PnpCapabilities);
/// `EVT_DMF_Pdo_DevicePowerCapabilities`.
pub type PowerCapabilitiesFn = fn(&Pdo, &mut PowerCapabilities);
/// `EVT_DMF_Pdo_DeviceQueryInterfaceAdd`.
pub type QueryInterfaceAddFn = fn(&Pdo, &Device) -> NtResult<()>;
/// `EVT_DMF_Pdo_DeviceIdentifierFormat`: writes the id for `format` (a record's hardware or
/// compatible id) into the buffer.
pub type IdentifierFormatFn = fn(&Pdo, &mut IdBuffer, &str) -> NtResult<()>;
/// `EVT_DMF_Pdo_PreCreate`: on the PDO's `WDFDEVICE_INIT` before `WdfDeviceCreate`.
pub type PreCreateFn = fn(&Pdo, &mut DeviceInit, &PdoRecord<'_>) -> NtResult<()>;
/// `EVT_DMF_Pdo_PostCreate`: on the created PDO.
pub type PostCreateFn = fn(&Pdo, &Device, &PdoRecord<'_>) -> NtResult<()>;

/// `PDO_RECORD`: one child. See the [module documentation](self).
#[derive(Clone, Copy, Debug)]
pub struct PdoRecord<'a> {
    /// `HardwareIds` / `HardwareIdsCount`: 1 to
    /// [`PDO_RECORD_MAXIMUM_NUMBER_OF_HARDWARE_IDS`]; the first is also the device id.
    pub hardware_ids: &'a [&'a str],
    /// `CompatibleIds` / `CompatibleIdsCount`: up to
    /// [`PDO_RECORD_MAXIMUM_NUMBER_OF_COMPAT_IDS`].
    pub compatible_ids: &'a [&'a str],
    /// `Description`: a format whose one argument is the serial number (`"Board %u"`).
    pub description: &'a str,
    /// `SerialNumber`: also the default instance id and `UINumber`.
    pub serial_number: u32,
    /// `EvtPdoIsPdoRequired` (config records only).
    pub is_pdo_required: Option<IsPdoRequiredFn>,
    /// `RawDevice` + `RawDeviceClassGuid`: `Some(class)` makes a raw PDO.
    pub raw_device_class: Option<Guid>,
    /// `EnableDmf` + `EvtDmfDeviceModulesAdd`: the PDO's own Modules.
    pub modules_add: Option<PdoModulesAddFn>,
    /// `UseAddress` + `Address`.
    pub address: Option<u32>,
    /// `InstanceId` (used when set; else the config's format of the serial number).
    pub instance_id: Option<&'a str>,
}

impl PdoRecord<'static> {
    /// A record with no ids and every option off, for `..PdoRecord::EMPTY`.
    pub const EMPTY: PdoRecord<'static> = PdoRecord {
        hardware_ids: &[],
        compatible_ids: &[],
        description: "",
        serial_number: 0,
        is_pdo_required: None,
        raw_device_class: None,
        modules_add: None,
        address: None,
        instance_id: None,
    };
}

/// `DMF_CONFIG_Pdo`. See the [module documentation](self).
#[derive(Clone, Copy, Debug)]
pub struct PdoConfig {
    /// `PdoRecords` / `PdoRecordCount`: the children plugged at the first D0Entry (at most
    /// [`PDO_MAXIMUM_RECORDS`]).
    pub pdo_records: &'static [PdoRecord<'static>],
    /// `InstanceIdFormatString` (default `"%u"`).
    pub instance_id_format_string: &'static str,
    /// `DeviceLocation`.
    pub device_location: &'static str,
    /// `EvtPdoPnpCapabilities`.
    pub evt_pdo_pnp_capabilities: Option<PnpCapabilitiesFn>,
    /// `EvtPdoPowerCapabilities`.
    pub evt_pdo_power_capabilities: Option<PowerCapabilitiesFn>,
    /// `EvtPdoQueryInterfaceAdd`.
    pub evt_pdo_query_interface_add: Option<QueryInterfaceAddFn>,
    /// `EvtPdoHardwareIdFormat`.
    pub evt_pdo_hardware_id_format: Option<IdentifierFormatFn>,
    /// `EvtPdoCompatibleIdFormat`.
    pub evt_pdo_compatible_id_format: Option<IdentifierFormatFn>,
    /// `EvtPdoPreCreate`.
    pub evt_pdo_pre_create: Option<PreCreateFn>,
    /// `EvtPdoPostCreate`.
    pub evt_pdo_post_create: Option<PostCreateFn>,
}

impl Default for PdoConfig {
    fn default() -> Self {
        PdoConfig {
            pdo_records: &[],
            instance_id_format_string: "%u",
            device_location: "",
            evt_pdo_pnp_capabilities: None,
            evt_pdo_power_capabilities: None,
            evt_pdo_query_interface_add: None,
            evt_pdo_hardware_id_format: None,
            evt_pdo_compatible_id_format: None,
            evt_pdo_pre_create: None,
            evt_pdo_post_create: None,
        }
    }
}

/// C's `PDO_DEVICE_DATA`: the context of each PDO this Module creates.
struct PdoData {
    serial_number: u32,
    /// The first hardware id as given (before formatting), what `DeviceUnPlugEx` and
    /// `DevicePlugEx` compare.
    hardware_id: alloc::string::String,
    /// The creating Module (its config's address), so close reports only its own children.
    owner: usize,
}

/// The Module context.
#[derive(Default)]
pub struct PdoContext {
    /// The config's records have all been plugged.
    static_done: bool,
}

/// The `DMF_Pdo` Module. See the [module documentation](self).
#[dmf_module(crate = ::dmf_core, config = PdoConfig, context = PdoContext, open = Create, lock = Passive)]
pub struct Pdo;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Pdo {
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        let config = module.config();
        if config.pdo_records.len() > PDO_MAXIMUM_RECORDS {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        for record in config.pdo_records {
            check_record(record)?;
        }
        Ok(())
    }

    fn d0_entry(module: &Dispatched<'_, Self>, previous: PowerDeviceState) -> NtResult<()> {
        let Some(device) = module.device() else {
            return Ok(());
        };
        let handle = module.handle()?;
        let owner = owner_of(module.config());
        let config = *module.config();
        let mut context = module.lock();
        if context.static_done {
            return Ok(());
        }
        for record in config.pdo_records {
            if record
                .is_pdo_required
                .is_some_and(|required| !required(&handle, previous))
            {
                continue;
            }
            if find_child(device, |data| {
                data.serial_number == record.serial_number
                    && record.hardware_ids.first() == Some(&data.hardware_id.as_str())
            })
            .is_some()
            {
                continue; // plugged by an earlier, partly failed, D0Entry
            }
            if plug(&handle, &config, device, record, owner).is_err() {
                // C's ScheduledTask retries at the next D0Entry; D0Entry itself succeeds.
                return Ok(());
            }
        }
        context.static_done = true;
        Ok(())
    }

    fn close(module: &Dispatched<'_, Self>) {
        // A Module in the device's tree closes when the device is removed, after the PnP
        // manager removed its children: only a dynamic one can close with children present.
        if !module.is_dynamic() {
            return;
        }
        let Some(device) = module.device() else {
            return;
        };
        let owner = owner_of(module.config());
        // Each pass reports one child missing; a child leaves the added list when it is
        // missing, so the passes are bounded by the number of children.
        while let Some(child) = find_child(device, |data| data.owner == owner) {
            if child.pdo_mark_missing().is_err() {
                break;
            }
        }
    }
}

/// The Module's identity for [`PdoData::owner`]: the address of its config copy, which stays
/// where it is while the Module exists.
fn owner_of(config: &PdoConfig) -> usize {
    core::ptr::from_ref(config) as usize
}

fn check_id(id: &str) -> NtResult<()> {
    if id.is_empty() || id.contains('\0') || id.encode_utf16().count() > MAXIMUM_ID_LENGTH {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    Ok(())
}

/// The bounds of a record (C's `_In_reads_` counts and `MAXIMUM_ID_LENGTH` buffers).
fn check_record(record: &PdoRecord<'_>) -> NtResult<()> {
    if record.hardware_ids.is_empty()
        || record.hardware_ids.len() > PDO_RECORD_MAXIMUM_NUMBER_OF_HARDWARE_IDS
        || record.compatible_ids.len() > PDO_RECORD_MAXIMUM_NUMBER_OF_COMPAT_IDS
    {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    for id in record.hardware_ids.iter().chain(record.compatible_ids) {
        check_id(id)?;
    }
    if let Some(instance) = record.instance_id {
        check_id(instance)?;
    }
    if record.description.contains('\0') {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    Ok(())
}

/// The first added child with this Module's context that `matches`.
fn find_child(device: &Device, mut matches: impl FnMut(&PdoData) -> bool) -> Option<Device> {
    let mut found = None;
    device.for_each_static_child(&mut |child| {
        if child
            .context::<PdoData>()
            .is_some_and(|data| matches(&data))
        {
            found = Some(child.clone());
            false
        } else {
            true
        }
    });
    found
}

/// Whether `child` is an added child of `device`.
fn is_child(device: &Device, child: &Device) -> bool {
    let mut found = false;
    device.for_each_static_child(&mut |c| {
        found = c == child;
        !found
    });
    found
}

/// The identifier `id` after the client's format callback, if any, into `buffer`.
fn format_id<'b>(
    pdo: &Pdo,
    callback: Option<IdentifierFormatFn>,
    id: &'b str,
    buffer: &'b mut IdBuffer,
) -> NtResult<&'b str> {
    match callback {
        Some(format) => {
            buffer.clear();
            format(pdo, buffer, id)?;
            check_id(buffer.as_str())?;
            Ok(buffer.as_str())
        }
        None => Ok(id),
    }
}

/// C DMF's default power capabilities of a child.
fn default_power_capabilities() -> PowerCapabilities {
    PowerCapabilities {
        device_d1: TriState::False,
        wake_from_d1: TriState::False,
        wake_from_d3: TriState::True,
        device_wake: Some(DevicePowerLevel::D3),
        device_state: [
            Some(DevicePowerLevel::D0),
            Some(DevicePowerLevel::D3),
            Some(DevicePowerLevel::D3),
            Some(DevicePowerLevel::D3),
            Some(DevicePowerLevel::D3),
            Some(DevicePowerLevel::D3),
        ],
        ..PowerCapabilities::default()
    }
}

/// Sets a PDO's identity on its init (C's `Pdo_PdoEx` up to PreCreate).
fn fill_init(
    pdo: &Pdo,
    config: &PdoConfig,
    init: &mut DeviceInit,
    record: &PdoRecord<'_>,
) -> NtResult<()> {
    if let Some(class) = record.raw_device_class {
        init.assign_raw_device(class)?;
    }
    let mut buffer = IdBuffer::default();
    for (index, id) in record.hardware_ids.iter().enumerate() {
        let id = format_id(pdo, config.evt_pdo_hardware_id_format, id, &mut buffer)?;
        init.add_hardware_id(id)?;
        if index == 0 {
            init.assign_device_id(id)?;
        }
    }
    for id in record.compatible_ids {
        let id = format_id(pdo, config.evt_pdo_compatible_id_format, id, &mut buffer)?;
        init.add_compatible_id(id)?;
    }
    if let Some(instance) = record.instance_id {
        init.assign_instance_id(instance)?;
    } else {
        format_with_serial(
            config.instance_id_format_string,
            record.serial_number,
            &mut buffer,
        )?;
        check_id(buffer.as_str())?;
        init.assign_instance_id(buffer.as_str())?;
    }
    format_with_serial(record.description, record.serial_number, &mut buffer)?;
    init.add_device_text(buffer.as_str(), config.device_location, LOCALE_EN_US)?;
    init.set_default_locale(LOCALE_EN_US);
    Ok(())
}

/// Creates one child and reports it (C's `Pdo_PdoEx` with no preallocated init).
fn plug(
    pdo: &Pdo,
    config: &PdoConfig,
    device: &Device,
    record: &PdoRecord<'_>,
    owner: usize,
) -> NtResult<Device> {
    check_record(record)?;
    let data = try_arc(PdoData {
        serial_number: record.serial_number,
        hardware_id: try_string(record.hardware_ids[0])?,
        owner,
    })?;
    let mut init = device.pdo_init_allocate()?;
    fill_init(pdo, config, &mut init, record)?;
    if let Some(pre_create) = config.evt_pdo_pre_create {
        pre_create(pdo, &mut init, record)?;
    }
    let attributes = DeviceAttributes {
        context: Some(data),
        cleanup: None,
    };
    let child = match record.modules_add {
        Some(modules_add) => {
            let mut dmf = DmfDeviceInit::new(&mut init);
            dmf.hook_pnp_power_callbacks(None);
            dmf.hook_power_policy_callbacks(None);
            dmf.hook_file_object_config(None);
            dmf.set_modules_add(modules_add)?;
            let child = dmf.create_device(attributes)?;
            if let Err(status) = dmf.modules_create() {
                let _ = child.pdo_delete();
                return Err(status);
            }
            child
        }
        None => init.create_device_with(attributes)?,
    };
    if let Err(status) = finish(pdo, config, device, &child, record) {
        let _ = child.pdo_delete();
        return Err(status);
    }
    Ok(child)
}

/// After `WdfDeviceCreate`: PostCreate, capabilities, QueryInterfaceAdd, `WdfFdoAddStaticChild`.
fn finish(
    pdo: &Pdo,
    config: &PdoConfig,
    device: &Device,
    child: &Device,
    record: &PdoRecord<'_>,
) -> NtResult<()> {
    if let Some(post_create) = config.evt_pdo_post_create {
        post_create(pdo, child, record)?;
    }
    let mut pnp = PnpCapabilities {
        ui_number: Some(record.serial_number),
        address: record.address,
        ..PnpCapabilities::default()
    };
    if let Some(callback) = config.evt_pdo_pnp_capabilities {
        callback(pdo, &mut pnp);
    }
    child.set_pnp_capabilities(&pnp);
    let mut power = default_power_capabilities();
    if let Some(callback) = config.evt_pdo_power_capabilities {
        callback(pdo, &mut power);
    }
    child.set_power_capabilities(&power);
    if let Some(query_interface_add) = config.evt_pdo_query_interface_add {
        query_interface_add(pdo, child)?;
    }
    device.add_static_child(child)
}

impl Pdo {
    /// `DMF_Pdo_DevicePlug`: creates and reports a child with these ids, description (a
    /// format of the serial number) and serial number; returns its PDO.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` for a serial number in use or ids out of bounds (see the
    /// [module documentation](self)); a failing WDF call's status (nothing is left created);
    /// `STATUS_INVALID_DEVICE_STATE` after close or for a Module without a device.
    pub fn device_plug(
        &self,
        hardware_ids: &[&str],
        compatible_ids: &[&str],
        description: &str,
        serial_number: u32,
    ) -> NtResult<Device> {
        let record = PdoRecord {
            hardware_ids,
            compatible_ids,
            description,
            serial_number,
            is_pdo_required: None,
            raw_device_class: None,
            modules_add: None,
            address: None,
            instance_id: None,
        };
        self.plug_checked(&record, |data| data.serial_number == serial_number)
    }

    /// `DMF_Pdo_DevicePlugEx`: creates and reports the child `record` describes (with its own
    /// Modules, raw, …); returns its PDO.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` when a child with the record's serial number has one of its
    /// hardware ids, or the record is out of bounds; otherwise as
    /// [`device_plug`](Self::device_plug).
    pub fn device_plug_ex(&self, record: &PdoRecord<'_>) -> NtResult<Device> {
        self.plug_checked(record, |data| {
            data.serial_number == record.serial_number
                && record.hardware_ids.contains(&data.hardware_id.as_str())
        })
    }

    fn plug_checked(
        &self,
        record: &PdoRecord<'_>,
        duplicate: impl FnMut(&PdoData) -> bool,
    ) -> NtResult<Device> {
        let module = self.enter()?;
        check_record(record)?;
        let device = module.require_device()?;
        let config = *module.config();
        let owner = owner_of(module.config());
        // Serialises plugs: the uniqueness check and the report are one step.
        let _context = module.lock();
        if find_child(device, duplicate).is_some() {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        plug(self, &config, device, record, owner)
    }

    /// `DMF_Pdo_DeviceUnplug`: reports `child` missing (its stack is surprise-removed and the
    /// PDO deleted).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` if `child` is not a present child of this Module's device;
    /// `WdfPdoMarkMissing`'s failure; `STATUS_INVALID_DEVICE_STATE` after close.
    pub fn device_unplug(&self, child: &Device) -> NtResult<()> {
        let module = self.enter()?;
        let device = module.require_device()?;
        if !is_child(device, child) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        child.pdo_mark_missing()
    }

    /// `DMF_Pdo_DeviceUnplugAll`: reports every child missing (stops at the first failure).
    ///
    /// # Errors
    ///
    /// The first `WdfPdoMarkMissing` failure; `STATUS_INVALID_DEVICE_STATE` after close.
    pub fn device_unplug_all(&self) -> NtResult<()> {
        let module = self.enter()?;
        let device = module.require_device()?;
        let mut result = Ok(());
        device.for_each_static_child(&mut |child| {
            result = child.pdo_mark_missing();
            result.is_ok()
        });
        result
    }

    /// `DMF_Pdo_DeviceUnPlugEx`: reports missing the child with this first hardware id
    /// (compared case-insensitively, as `RtlEqualUnicodeString(…, TRUE)`) and serial number.
    ///
    /// # Errors
    ///
    /// `STATUS_NOT_FOUND` if none matches; `WdfPdoMarkMissing`'s failure;
    /// `STATUS_INVALID_DEVICE_STATE` after close.
    pub fn device_unplug_ex(&self, hardware_id: &str, serial_number: u32) -> NtResult<()> {
        let module = self.enter()?;
        let device = module.require_device()?;
        let child = find_child(device, |data| {
            data.serial_number == serial_number
                && data.hardware_id.eq_ignore_ascii_case(hardware_id)
        })
        .ok_or(NtStatus::NOT_FOUND)?;
        child.pdo_mark_missing()
    }

    /// `DMF_Pdo_DeviceUnplugUsingSerialNumber`: reports missing the first child with this
    /// serial number.
    ///
    /// # Errors
    ///
    /// `STATUS_NOT_FOUND` if none has it; `WdfPdoMarkMissing`'s failure;
    /// `STATUS_INVALID_DEVICE_STATE` after close.
    pub fn device_unplug_using_serial_number(&self, serial_number: u32) -> NtResult<()> {
        let module = self.enter()?;
        let device = module.require_device()?;
        let child = find_child(device, |data| data.serial_number == serial_number)
            .ok_or(NtStatus::NOT_FOUND)?;
        child.pdo_mark_missing()
    }

    /// `DMF_Pdo_DeviceEject`: asks the PnP manager to eject `child` (`WdfPdoRequestEject`);
    /// its drivers may veto.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` if `child` is not a present child of this Module's device;
    /// `STATUS_INVALID_DEVICE_STATE` after close.
    pub fn device_eject(&self, child: &Device) -> NtResult<()> {
        let module = self.enter()?;
        let device = module.require_device()?;
        if !is_child(device, child) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        child.pdo_request_eject();
        Ok(())
    }

    /// `DMF_Pdo_DeviceEjectUsingSerialNumber`: ejects the first child with this serial number.
    ///
    /// # Errors
    ///
    /// `STATUS_NOT_FOUND` if none has it; `STATUS_INVALID_DEVICE_STATE` after close.
    pub fn device_eject_using_serial_number(&self, serial_number: u32) -> NtResult<()> {
        let module = self.enter()?;
        let device = module.require_device()?;
        let child = find_child(device, |data| data.serial_number == serial_number)
            .ok_or(NtStatus::NOT_FOUND)?;
        child.pdo_request_eject();
        Ok(())
    }
}
