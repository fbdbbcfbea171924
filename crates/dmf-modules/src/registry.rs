//! # DMF_Registry
//!
//! ## Summary
//!
//! Reads, writes, enumerates and deletes registry keys and values: by absolute path
//! (`\Registry\Machine\…`), through the device's PnP keys (hardware and software), the driver's
//! `Parameters` key or an open key; typed reads and writes of every value type DMF uses, with
//! the caller's buffer and `STATUS_BUFFER_TOO_SMALL` plus the size needed when it is short;
//! conditional writes and deletes decided by a client closure; and a tree of keys and values
//! written from the config when the Module opens.
//!
//! ## Configuration
//!
//! [`RegistryConfig`]: `tree`, a list of [`RegistryTree`]s written when the Module opens (what
//! `DMF_Registry_TreeWriteEx` writes; empty by default), and `value_size_maximum`, the largest
//! value the conditional Methods read into memory of their own.
//!
//! ## Methods
//!
//! Keys are [`RegistryKey`]s (`platform::RegistryKey`, a `WDFKEY`), closed when dropped.
//!
//! | C DMF | Rust |
//! |---|---|
//! | `DMF_Registry_HandleOpenByName` | [`Registry::handle_open_by_name`] |
//! | `DMF_Registry_HandleOpenByNameEx` | [`Registry::handle_open_by_name_ex`] (`None`: the device's hardware key) |
//! | `DMF_Registry_HandleOpenByHandle` | [`Registry::handle_open_by_handle`] |
//! | `DMF_Registry_HandleOpenById` | [`Registry::handle_open_by_id`] ([`DeviceRegistryKey`]) |
//! | `DMF_Registry_HandleOpenParametersRegistryKey` | [`Registry::handle_open_parameters_registry_key`] |
//! | `DMF_Registry_HandleClose` | merged into `Drop` of [`RegistryKey`] |
//! | `DMF_Registry_HandleDelete` | [`Registry::handle_delete`] (takes the key: it is closed either way) |
//! | `DMF_Registry_RegistryPathDelete` | [`Registry::registry_path_delete`] |
//! | `DMF_Registry_ValueRead`, `…ReadBinary`, `…ReadString`, `…ReadMultiString` | [`Registry::value_read`], [`Registry::value_read_binary`], [`Registry::value_read_string`], [`Registry::value_read_multi_string`] |
//! | `DMF_Registry_ValueReadDword`, `…ReadQword`, `…AndValidate` | [`Registry::value_read_dword`], [`Registry::value_read_qword`], [`Registry::value_read_dword_and_validate`], [`Registry::value_read_qword_and_validate`] |
//! | `DMF_Registry_ValueWrite`, `…WriteBinary`, `…WriteDword`, `…WriteQword`, `…WriteString`, `…WriteMultiString` | [`Registry::value_write`], [`Registry::value_write_binary`], [`Registry::value_write_dword`], [`Registry::value_write_qword`], [`Registry::value_write_string`], [`Registry::value_write_multi_string`] |
//! | `DMF_Registry_ValueDelete` | [`Registry::value_delete`] |
//! | `DMF_Registry_ValueWriteIfNeeded`, `DMF_Registry_ValueDeleteIfNeeded`, `DMF_Registry_CustomAction` | [`Registry::value_write_if_needed`], [`Registry::value_delete_if_needed`], [`Registry::custom_action`] |
//! | `DMF_Registry_PathAndValue{Read,Write}{,Binary,Dword,Qword,String,MultiString}`, `…ReadDwordAndValidate`, `…ReadQwordAndValidate`, `…Delete` | [`Registry::path_and_value_read`] … [`Registry::path_and_value_delete`] (`None` path: the device's hardware key) |
//! | `DMF_Registry_SubKeysFromHandleEnumerate`, `DMF_Registry_AllSubKeysFromHandleEnumerate` | [`Registry::sub_keys_from_handle_enumerate`], [`Registry::all_sub_keys_from_handle_enumerate`] |
//! | `DMF_Registry_EnumerateKeysFromName`, `DMF_Registry_SubKeysFromPathNameContainingStringEnumerate` | [`Registry::enumerate_keys_from_name`], [`Registry::sub_keys_from_path_name_containing_string_enumerate`] |
//! | — | [`Registry::values_from_handle_enumerate`] (value names; C DMF has none) |
//! | `DMF_Registry_TreeWriteEx` | [`Registry::tree_write_ex`], and the config's `tree` at open |
//! | `DMF_Registry_CallbackWork` | [`Registry::callback_work`] |
//! | `DMF_Registry_TreeWriteDeferred` | left out: see Remarks |
//! | `DMF_Registry_HandleOpenByDeviceInterface` | left out: see Remarks |
//! | `DMF_Registry_ScheduledTaskCallbackContainer` | left out: a ScheduledTask callback that calls the Registry Methods it needs does the same |
//!
//! Every Method at `PASSIVE_LEVEL`.
//!
//! ## Callbacks
//!
//! None of its own: the enumeration and comparison callbacks of C DMF
//! (`EVT_DMF_Registry_KeyEnumerationCallback`, `EVT_DMF_Registry_ValueComparisonCallback`) are
//! closures passed to the Methods; a comparison closure sees the value's data as stored and
//! captures whatever client data it compares with.
//!
//! ## Remarks
//!
//! - **Reads into the caller's buffer.** A read returns the bytes read, as C DMF's `BytesRead`
//!   (for strings: the UTF-16 data with its terminator, in bytes). A buffer too short for the
//!   value is a [`ReadError`] with `STATUS_BUFFER_TOO_SMALL` and the bytes needed (call with an
//!   empty buffer to learn the size). Unlike C DMF, the read checks the value's type: a value of
//!   another type is `STATUS_OBJECT_TYPE_MISMATCH`, and the caller's buffer is left untouched.
//! - **Conditional Methods** read the value into memory they allocate, bounded by the config's
//!   `value_size_maximum` (a larger value is `STATUS_BUFFER_TOO_SMALL`). A value that is absent
//!   is `STATUS_OBJECT_NAME_NOT_FOUND` unless the write is asked to create it, as in C DMF.
//! - **Access.** Reads open keys with [`RegistryAccess::Read`], writes with
//!   [`RegistryAccess::ReadWrite`] (creating the path), deletions of a key with
//!   [`RegistryAccess::All`]; a key opened with too little access refuses the operation with
//!   `STATUS_ACCESS_DENIED`.
//! - **Enumeration** passes names as `&str` of up to [`MAXIMUM_NAME_LENGTH`] UTF-16 units (the
//!   registry's limit for key names); a longer value name ends the enumeration with
//!   `STATUS_BUFFER_OVERFLOW`. The Methods return `Ok(true)` when every entry was visited and
//!   `Ok(false)` when the callback stopped early (C DMF's `TRUE`/`FALSE`); an enumeration that
//!   deletes entries as it goes may skip some (indices move), as in C DMF.
//! - **Trees.** A branch's `prefix` is empty or a relative path starting with `\`; the keys of
//!   every branch are created as needed (C DMF's `Registry_RecursivePathCreate`). The config's
//!   tree is written at open and a failure fails the open.
//! - `DMF_Registry_TreeWriteDeferred` exists in C DMF to wait (polling on a timer) for a hive that
//!   is not loaded yet early in boot; a driver that needs it retries with a ScheduledTask.
//!   `DMF_Registry_HandleOpenByDeviceInterface` needs `IoGetDeviceInterfaces` and
//!   `IoOpenDeviceInterfaceRegistryKey`, which the platform contract does not offer yet.
//! - C DMF's `HandleOpenByName*` with a path are deprecated for WCOS drivers; the device's keys
//!   ([`Registry::handle_open_by_id`]) and the driver's `Parameters` key are the portable ones.
//!
//! ## Example
//!
//! ```
//! use dmf_core::module::NoParent;
//! use dmf_core::NtStatus;
//! use dmf_modules::registry::{Registry, RegistryConfig};
//!
//! let machine = kmdf_sim::Machine::new();
//! let _on = machine.enter();
//! let registry = Registry::with(RegistryConfig::default()).create(&NoParent)?;
//! let path = Some(r"\Registry\Machine\SOFTWARE\Contoso\Widget");
//!
//! registry.path_and_value_write_dword(path, "Speed", 7)?;
//! registry.path_and_value_write_string(path, "Name", "widget")?;
//! assert_eq!(registry.path_and_value_read_dword(path, "Speed")?, 7);
//!
//! // A buffer that is too short reports the size the value needs.
//! let short = registry
//!     .path_and_value_read_string(path, "Name", &mut [0u16; 2])
//!     .unwrap_err();
//! assert_eq!(short.status, NtStatus::BUFFER_TOO_SMALL);
//! assert_eq!(short.bytes_needed, 14); // "widget" and its NUL, in UTF-16
//!
//! registry.registry_path_delete(path.unwrap())?;
//! assert_eq!(
//!     registry.path_and_value_read_dword(path, "Speed"),
//!     Err(NtStatus::OBJECT_NAME_NOT_FOUND)
//! );
//! # Ok::<(), NtStatus>(())
//! ```
//!
//! ## Category
//!
//! Driver Patterns.

use dmf_core::fallible::{try_vec_filled, try_vec_with_capacity, VecExt};
use dmf_core::module::{DynamicParent, ModuleCallbacks};
use dmf_core::platform::contract::{PlatformRegistryKey, RegistryValueInfo};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

pub use dmf_core::platform::contract::{DeviceRegistryKey, RegistryAccess, RegistryValueType};
pub use dmf_core::platform::RegistryKey;

use crate::string::{multi_sz_build, multi_sz_size};

/// The longest name the enumeration Methods pass, in UTF-16 units (the registry's limit for a
/// key name).
pub const MAXIMUM_NAME_LENGTH: usize = 255;

/// The default [`RegistryConfig::value_size_maximum`]: 64 KiB.
pub const DEFAULT_VALUE_SIZE_MAXIMUM: usize = 64 * 1024;

/// One value of a [`RegistryBranch`] (C DMF's `Registry_Entry`, built with its
/// `Registry_TABLE_ENTRY_REG_*` macros).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryEntry {
    /// The value's name.
    pub name: &'static str,
    /// The value.
    pub value: RegistryEntryValue,
}

/// The data of a [`RegistryEntry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryEntryValue {
    /// `REG_DWORD`.
    Dword(u32),
    /// `REG_QWORD`.
    Qword(u64),
    /// `REG_SZ`.
    String(&'static str),
    /// `REG_MULTI_SZ`.
    MultiString(&'static [&'static str]),
    /// `REG_BINARY`.
    Binary(&'static [u8]),
}

/// Values written under one key (C DMF's `Registry_Branch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryBranch {
    /// `""` for the tree's key itself, or `\`-prefixed path below it
    /// (`BranchValueNamePrefix`).
    pub prefix: &'static str,
    /// The values.
    pub entries: &'static [RegistryEntry],
}

/// Branches under one absolute path (C DMF's `Registry_Tree`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryTree {
    /// The absolute path of the tree's key (`\Registry\Machine\…`).
    pub path: &'static str,
    /// The branches.
    pub branches: &'static [RegistryBranch],
}

/// The Registry Module's config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Written when the Module opens (with [`Registry::tree_write_ex`]'s rules).
    pub tree: &'static [RegistryTree],
    /// The largest value, in bytes, the conditional Methods read into memory of their own.
    pub value_size_maximum: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            tree: &[],
            value_size_maximum: DEFAULT_VALUE_SIZE_MAXIMUM,
        }
    }
}

/// Why a read into the caller's buffer failed: the status, and for `STATUS_BUFFER_TOO_SMALL` the
/// bytes the value needs (C DMF's `BytesRead` on failure; 0 for other failures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadError {
    /// The status.
    pub status: NtStatus,
    /// The size of the value in bytes when `status` is `STATUS_BUFFER_TOO_SMALL`, else 0.
    pub bytes_needed: usize,
}

impl From<NtStatus> for ReadError {
    fn from(status: NtStatus) -> Self {
        ReadError {
            status,
            bytes_needed: 0,
        }
    }
}

impl From<ReadError> for NtStatus {
    fn from(error: ReadError) -> Self {
        error.status
    }
}

/// The `DMF_Registry` Module. See the [module documentation](self).
#[dmf_module(crate = ::dmf_core, config = RegistryConfig, open = Create, lock = Passive)]
pub struct Registry;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for Registry {
    fn open(module: &dmf_core::module::Dispatched<'_, Self>) -> NtResult<()> {
        tree_write(module.config().tree)
    }
}

// ---------------------------------------------------------------------------------------------
// The work, on keys (no Module state is needed; the Methods guard these).
// ---------------------------------------------------------------------------------------------

fn to_units(bytes: &[u8], out: &mut [u16]) {
    for (unit, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *unit = u16::from_le_bytes([pair[0], pair[1]]);
    }
}

/// The value's type and size; `STATUS_OBJECT_TYPE_MISMATCH` unless it is `expected`.
fn typed_info(key: &RegistryKey, name: &str, expected: RegistryValueType) -> NtResult<usize> {
    let info = key.query_into(name, &mut [])?;
    if info.value_type == Some(expected) {
        Ok(info.length)
    } else {
        Err(NtStatus::OBJECT_TYPE_MISMATCH)
    }
}

/// Reads `name` (of type `expected`) into `buffer`; the bytes read.
fn read_bytes(
    key: &RegistryKey,
    name: &str,
    expected: RegistryValueType,
    buffer: &mut [u8],
) -> Result<usize, ReadError> {
    let length = typed_info(key, name, expected)?;
    if length > buffer.len() {
        return Err(ReadError {
            status: NtStatus::BUFFER_TOO_SMALL,
            bytes_needed: length,
        });
    }
    let info = key.query_into(name, buffer)?;
    check_reread(info, expected, buffer.len())
}

/// The value changed between the size query and the read: report what it is now.
fn check_reread(
    info: RegistryValueInfo,
    expected: RegistryValueType,
    room: usize,
) -> Result<usize, ReadError> {
    if info.value_type != Some(expected) {
        return Err(NtStatus::OBJECT_TYPE_MISMATCH.into());
    }
    if info.length > room {
        return Err(ReadError {
            status: NtStatus::BUFFER_TOO_SMALL,
            bytes_needed: info.length,
        });
    }
    Ok(info.length)
}

/// Reads a UTF-16 value (`REG_SZ`, `REG_MULTI_SZ`) into `buffer`; the bytes read. The data goes
/// through memory of the value's size, which is at most the caller's buffer.
fn read_units(
    key: &RegistryKey,
    name: &str,
    expected: RegistryValueType,
    buffer: &mut [u16],
) -> Result<usize, ReadError> {
    let room = buffer.len().saturating_mul(2);
    let length = typed_info(key, name, expected)?;
    if length > room {
        return Err(ReadError {
            status: NtStatus::BUFFER_TOO_SMALL,
            bytes_needed: length,
        });
    }
    let mut bytes = try_vec_filled(0_u8, length)?;
    let info = key.query_into(name, &mut bytes)?;
    let read = check_reread(info, expected, length)?;
    to_units(&bytes[..read], buffer);
    Ok(read)
}

fn read_fixed<const N: usize>(
    key: &RegistryKey,
    name: &str,
    expected: RegistryValueType,
) -> NtResult<[u8; N]> {
    let mut data = [0_u8; N];
    let read = read_bytes(key, name, expected, &mut data).map_err(NtStatus::from)?;
    if read == N {
        Ok(data)
    } else {
        Err(NtStatus::OBJECT_TYPE_MISMATCH)
    }
}

fn read_dword(key: &RegistryKey, name: &str) -> NtResult<u32> {
    read_fixed::<4>(key, name, RegistryValueType::Dword).map(u32::from_le_bytes)
}

fn read_qword(key: &RegistryKey, name: &str) -> NtResult<u64> {
    read_fixed::<8>(key, name, RegistryValueType::Qword).map(u64::from_le_bytes)
}

fn validate<T: PartialOrd + Copy>(value: T, minimum: T, maximum: T) -> NtResult<T> {
    if value < minimum || value > maximum {
        Err(NtStatus::INVALID_DEVICE_REQUEST)
    } else {
        Ok(value)
    }
}

/// UTF-16LE bytes of `units`.
fn unit_bytes(units: impl Iterator<Item = u16> + Clone) -> NtResult<alloc::vec::Vec<u8>> {
    let mut bytes = try_vec_with_capacity(units.clone().count().saturating_mul(2))?;
    for unit in units {
        bytes.try_extend_from_slice(&unit.to_le_bytes())?;
    }
    Ok(bytes)
}

fn write_string(key: &RegistryKey, name: &str, text: &str) -> NtResult<()> {
    if text.contains('\0') {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let bytes = unit_bytes(text.encode_utf16().chain([0]))?;
    key.set_raw(name, RegistryValueType::String, &bytes)
}

fn write_multi_string(key: &RegistryKey, name: &str, strings: &[&str]) -> NtResult<()> {
    let mut units = try_vec_filled(0_u16, multi_sz_size(strings))?;
    let used = multi_sz_build(strings, &mut units)?;
    let bytes = unit_bytes(units[..used].iter().copied())?;
    key.set_raw(name, RegistryValueType::MultiString, &bytes)
}

fn write_entry(key: &RegistryKey, entry: &RegistryEntry) -> NtResult<()> {
    match entry.value {
        RegistryEntryValue::Dword(v) => {
            key.set_raw(entry.name, RegistryValueType::Dword, &v.to_le_bytes())
        }
        RegistryEntryValue::Qword(v) => {
            key.set_raw(entry.name, RegistryValueType::Qword, &v.to_le_bytes())
        }
        RegistryEntryValue::String(s) => write_string(key, entry.name, s),
        RegistryEntryValue::MultiString(list) => write_multi_string(key, entry.name, list),
        RegistryEntryValue::Binary(b) => key.set_raw(entry.name, RegistryValueType::Binary, b),
    }
}

fn tree_write(trees: &[RegistryTree]) -> NtResult<()> {
    for tree in trees {
        for branch in tree.branches {
            let root = RegistryKey::open_path(tree.path, RegistryAccess::ReadWrite, true)?;
            let key = match branch.prefix {
                "" => root,
                prefix => {
                    let below = prefix
                        .strip_prefix('\\')
                        .ok_or(NtStatus::INVALID_PARAMETER)?;
                    root.open_subkey(below, RegistryAccess::ReadWrite, true)?
                }
            };
            for entry in branch.entries {
                write_entry(&key, entry)?;
            }
        }
    }
    Ok(())
}

/// Calls `callback(key, name)` for each subkey of `key`: `Ok(true)` if it never returned false.
fn enumerate_names(
    key: &RegistryKey,
    values: bool,
    mut callback: impl FnMut(&str) -> NtResult<bool>,
) -> NtResult<bool> {
    let mut units = try_vec_filled(0_u16, MAXIMUM_NAME_LENGTH)?;
    let mut narrow = try_vec_filled(0_u8, MAXIMUM_NAME_LENGTH * 3 + 1)?;
    let mut index: u32 = 0;
    loop {
        let found = if values {
            key.value_name(index, &mut units)?
        } else {
            key.subkey_name(index, &mut units)?
        };
        let Some(length) = found else {
            return Ok(true);
        };
        let name = crate::string::wide_to_narrow(&units[..length], &mut narrow)?;
        if !callback(name)? {
            return Ok(false);
        }
        index = index.checked_add(1).ok_or(NtStatus::INTEGER_OVERFLOW)?;
    }
}

/// Reads `name` into memory bounded by `maximum`: `None` if absent.
fn read_for_compare(
    key: &RegistryKey,
    name: &str,
    maximum: usize,
) -> NtResult<Option<alloc::vec::Vec<u8>>> {
    let info = match key.query_into(name, &mut []) {
        Ok(info) => info,
        Err(status) if status == NtStatus::OBJECT_NAME_NOT_FOUND => return Ok(None),
        Err(status) => return Err(status),
    };
    if info.length > maximum {
        return Err(NtStatus::BUFFER_TOO_SMALL);
    }
    let mut data = try_vec_filled(0_u8, info.length)?;
    let again = key.query_into(name, &mut data)?;
    if again.length > data.len() {
        return Err(NtStatus::BUFFER_TOO_SMALL);
    }
    data.truncate(again.length);
    Ok(Some(data))
}

// ---------------------------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------------------------

impl Registry {
    /// `DMF_Registry_CallbackWork`: creates a Registry Module under `parent`, calls `work` with
    /// it, then closes and destroys it; `work`'s status (or the creation's).
    pub fn callback_work(
        parent: &(impl DynamicParent + ?Sized),
        work: impl FnOnce(&Registry) -> NtResult<()>,
    ) -> NtResult<()> {
        let registry = Registry::with(RegistryConfig::default()).create(parent)?;
        let result = work(&registry);
        registry.delete();
        result
    }

    // ----- opening keys ---------------------------------------------------------------------

    /// `DMF_Registry_HandleOpenByName`: opens the existing key at the absolute `path` with
    /// [`RegistryAccess::All`].
    pub fn handle_open_by_name(&self, path: &str) -> NtResult<RegistryKey> {
        let _module = self.enter()?;
        RegistryKey::open_path(path, RegistryAccess::All, false)
    }

    /// `DMF_Registry_HandleOpenByNameEx`: opens (with `create`, creating) the key at the absolute
    /// `path`, or with `None` the device's hardware key (`PLUGPLAY_REGKEY_DEVICE`; then `create`
    /// does not apply).
    ///
    /// # Errors
    ///
    /// The registry's status; `STATUS_INVALID_DEVICE_STATE` for `None` in a Module without a
    /// device.
    pub fn handle_open_by_name_ex(
        &self,
        path: Option<&str>,
        access: RegistryAccess,
        create: bool,
    ) -> NtResult<RegistryKey> {
        let module = self.enter()?;
        match path {
            Some(path) => RegistryKey::open_path(path, access, create),
            None => RegistryKey::open_device_key(
                module.require_device()?,
                DeviceRegistryKey::Hardware,
                access,
            ),
        }
    }

    /// `DMF_Registry_HandleOpenByHandle`: opens (with `try_to_create`, creating) the subkey
    /// `name` of `key` with [`RegistryAccess::All`].
    pub fn handle_open_by_handle(
        &self,
        key: &RegistryKey,
        name: &str,
        try_to_create: bool,
    ) -> NtResult<RegistryKey> {
        let _module = self.enter()?;
        key.open_subkey(name, RegistryAccess::All, try_to_create)
    }

    /// `DMF_Registry_HandleOpenById`: opens one of the device's PnP keys
    /// (`WdfDeviceOpenRegistryKey`).
    ///
    /// # Errors
    ///
    /// The registry's status; `STATUS_INVALID_DEVICE_STATE` in a Module without a device.
    pub fn handle_open_by_id(
        &self,
        which: DeviceRegistryKey,
        access: RegistryAccess,
    ) -> NtResult<RegistryKey> {
        let module = self.enter()?;
        RegistryKey::open_device_key(module.require_device()?, which, access)
    }

    /// `DMF_Registry_HandleOpenParametersRegistryKey`: the driver's `Parameters` key
    /// (`KEY_READ | KEY_WRITE`). `driver` is the driver's service name (what
    /// `PlatformDriver::name` returns); a kernel image finds its own driver without it.
    pub fn handle_open_parameters_registry_key(&self, driver: &str) -> NtResult<RegistryKey> {
        let _module = self.enter()?;
        RegistryKey::open_driver_parameters(driver)
    }

    /// `DMF_Registry_HandleDelete`: deletes `key` (opened with [`RegistryAccess::All`], without
    /// subkeys). The key is closed whatever the outcome.
    pub fn handle_delete(&self, key: RegistryKey) -> NtResult<()> {
        let _module = self.enter()?;
        key.delete_key()
    }

    /// `DMF_Registry_RegistryPathDelete`: deletes the key at the absolute `path` (it must have no
    /// subkeys).
    pub fn registry_path_delete(&self, path: &str) -> NtResult<()> {
        let _module = self.enter()?;
        RegistryKey::open_path(path, RegistryAccess::All, false)?.delete_key()
    }

    // ----- values through a key ---------------------------------------------------------------

    /// `DMF_Registry_ValueRead`: reads value `name`, which must be of `value_type`, into `buffer`
    /// as stored; the bytes read.
    ///
    /// # Errors
    ///
    /// `STATUS_OBJECT_NAME_NOT_FOUND`; `STATUS_OBJECT_TYPE_MISMATCH`; `STATUS_BUFFER_TOO_SMALL`
    /// with [`ReadError::bytes_needed`].
    pub fn value_read(
        &self,
        key: &RegistryKey,
        name: &str,
        value_type: RegistryValueType,
        buffer: &mut [u8],
    ) -> Result<usize, ReadError> {
        let _module = self.enter()?;
        read_bytes(key, name, value_type, buffer)
    }

    /// `DMF_Registry_ValueReadBinary`: [`value_read`](Self::value_read) of a `REG_BINARY`.
    pub fn value_read_binary(
        &self,
        key: &RegistryKey,
        name: &str,
        buffer: &mut [u8],
    ) -> Result<usize, ReadError> {
        self.value_read(key, name, RegistryValueType::Binary, buffer)
    }

    /// `DMF_Registry_ValueReadString`: a `REG_SZ` into `buffer` (UTF-16, with its terminator as
    /// stored); the bytes read. Errors as [`value_read`](Self::value_read).
    pub fn value_read_string(
        &self,
        key: &RegistryKey,
        name: &str,
        buffer: &mut [u16],
    ) -> Result<usize, ReadError> {
        let _module = self.enter()?;
        read_units(key, name, RegistryValueType::String, buffer)
    }

    /// `DMF_Registry_ValueReadMultiString`: a `REG_MULTI_SZ` into `buffer` (parse it with
    /// [`crate::string::multi_sz_iter`]); the bytes read. Errors as
    /// [`value_read`](Self::value_read).
    pub fn value_read_multi_string(
        &self,
        key: &RegistryKey,
        name: &str,
        buffer: &mut [u16],
    ) -> Result<usize, ReadError> {
        let _module = self.enter()?;
        read_units(key, name, RegistryValueType::MultiString, buffer)
    }

    /// `DMF_Registry_ValueReadDword`: a `REG_DWORD`.
    pub fn value_read_dword(&self, key: &RegistryKey, name: &str) -> NtResult<u32> {
        let _module = self.enter()?;
        read_dword(key, name)
    }

    /// `DMF_Registry_ValueReadDwordAndValidate`: a `REG_DWORD` within `minimum..=maximum`;
    /// `STATUS_INVALID_DEVICE_REQUEST` outside it.
    pub fn value_read_dword_and_validate(
        &self,
        key: &RegistryKey,
        name: &str,
        minimum: u32,
        maximum: u32,
    ) -> NtResult<u32> {
        validate(self.value_read_dword(key, name)?, minimum, maximum)
    }

    /// `DMF_Registry_ValueReadQword`: a `REG_QWORD`.
    pub fn value_read_qword(&self, key: &RegistryKey, name: &str) -> NtResult<u64> {
        let _module = self.enter()?;
        read_qword(key, name)
    }

    /// `DMF_Registry_ValueReadQwordAndValidate`: a `REG_QWORD` within `minimum..=maximum`;
    /// `STATUS_INVALID_DEVICE_REQUEST` outside it.
    pub fn value_read_qword_and_validate(
        &self,
        key: &RegistryKey,
        name: &str,
        minimum: u64,
        maximum: u64,
    ) -> NtResult<u64> {
        validate(self.value_read_qword(key, name)?, minimum, maximum)
    }

    /// `DMF_Registry_ValueWrite`: writes value `name` of `value_type` from `data` laid out as
    /// stored (`STATUS_INVALID_PARAMETER` for data that is not a value of that type, such as a
    /// `REG_DWORD` that is not 4 bytes).
    pub fn value_write(
        &self,
        key: &RegistryKey,
        name: &str,
        value_type: RegistryValueType,
        data: &[u8],
    ) -> NtResult<()> {
        let _module = self.enter()?;
        key.set_raw(name, value_type, data)
    }

    /// `DMF_Registry_ValueWriteBinary`.
    pub fn value_write_binary(&self, key: &RegistryKey, name: &str, data: &[u8]) -> NtResult<()> {
        self.value_write(key, name, RegistryValueType::Binary, data)
    }

    /// `DMF_Registry_ValueWriteDword`.
    pub fn value_write_dword(&self, key: &RegistryKey, name: &str, value: u32) -> NtResult<()> {
        self.value_write(key, name, RegistryValueType::Dword, &value.to_le_bytes())
    }

    /// `DMF_Registry_ValueWriteQword`.
    pub fn value_write_qword(&self, key: &RegistryKey, name: &str, value: u64) -> NtResult<()> {
        self.value_write(key, name, RegistryValueType::Qword, &value.to_le_bytes())
    }

    /// `DMF_Registry_ValueWriteString`: a `REG_SZ` (`STATUS_INVALID_PARAMETER` if `text` holds a
    /// NUL).
    pub fn value_write_string(&self, key: &RegistryKey, name: &str, text: &str) -> NtResult<()> {
        let _module = self.enter()?;
        write_string(key, name, text)
    }

    /// `DMF_Registry_ValueWriteMultiString`: a `REG_MULTI_SZ` of `strings`
    /// (`STATUS_INVALID_PARAMETER` for an empty string or one holding a NUL).
    pub fn value_write_multi_string(
        &self,
        key: &RegistryKey,
        name: &str,
        strings: &[&str],
    ) -> NtResult<()> {
        let _module = self.enter()?;
        write_multi_string(key, name, strings)
    }

    /// `DMF_Registry_ValueDelete`.
    pub fn value_delete(&self, key: &RegistryKey, name: &str) -> NtResult<()> {
        let _module = self.enter()?;
        key.delete(name)
    }

    /// `DMF_Registry_ValueWriteIfNeeded`: writes `data` as value `name` if `compare` (given the
    /// stored data) returns true; if the value is absent, writes it when `write_if_not_found`
    /// and otherwise fails with `STATUS_OBJECT_NAME_NOT_FOUND`.
    pub fn value_write_if_needed(
        &self,
        key: &RegistryKey,
        name: &str,
        value_type: RegistryValueType,
        data: &[u8],
        compare: impl FnOnce(&[u8]) -> bool,
        write_if_not_found: bool,
    ) -> NtResult<()> {
        let module = self.enter()?;
        match read_for_compare(key, name, module.config().value_size_maximum)? {
            None if write_if_not_found => key.set_raw(name, value_type, data),
            None => Err(NtStatus::OBJECT_NAME_NOT_FOUND),
            Some(stored) if compare(&stored) => key.set_raw(name, value_type, data),
            Some(_) => Ok(()),
        }
    }

    /// `DMF_Registry_ValueDeleteIfNeeded`: deletes value `name` if `compare` (given the stored
    /// data) returns true; `STATUS_OBJECT_NAME_NOT_FOUND` if it is absent.
    pub fn value_delete_if_needed(
        &self,
        key: &RegistryKey,
        name: &str,
        compare: impl FnOnce(&[u8]) -> bool,
    ) -> NtResult<()> {
        let module = self.enter()?;
        match read_for_compare(key, name, module.config().value_size_maximum)? {
            None => Err(NtStatus::OBJECT_NAME_NOT_FOUND),
            Some(stored) if compare(&stored) => key.delete(name),
            Some(_) => Ok(()),
        }
    }

    /// `DMF_Registry_CustomAction`: calls `action` with value `name`'s stored data; success if it
    /// returns true, `STATUS_UNSUCCESSFUL` if false, `STATUS_OBJECT_NAME_NOT_FOUND` if the value
    /// is absent.
    pub fn custom_action(
        &self,
        key: &RegistryKey,
        name: &str,
        action: impl FnOnce(&[u8]) -> bool,
    ) -> NtResult<()> {
        let module = self.enter()?;
        match read_for_compare(key, name, module.config().value_size_maximum)? {
            None => Err(NtStatus::OBJECT_NAME_NOT_FOUND),
            Some(stored) if action(&stored) => Ok(()),
            Some(_) => Err(NtStatus::UNSUCCESSFUL),
        }
    }

    // ----- values by path ---------------------------------------------------------------------

    fn open_for(
        &self,
        path: Option<&str>,
        access: RegistryAccess,
        create: bool,
    ) -> NtResult<RegistryKey> {
        self.handle_open_by_name_ex(path, access, create)
    }

    /// `DMF_Registry_PathAndValueRead`: [`value_read`](Self::value_read) from the key at `path`
    /// (`None`: the device's hardware key), opened for reading.
    pub fn path_and_value_read(
        &self,
        path: Option<&str>,
        name: &str,
        value_type: RegistryValueType,
        buffer: &mut [u8],
    ) -> Result<usize, ReadError> {
        let key = self.open_for(path, RegistryAccess::Read, false)?;
        self.value_read(&key, name, value_type, buffer)
    }

    /// `DMF_Registry_PathAndValueReadBinary`.
    pub fn path_and_value_read_binary(
        &self,
        path: Option<&str>,
        name: &str,
        buffer: &mut [u8],
    ) -> Result<usize, ReadError> {
        self.path_and_value_read(path, name, RegistryValueType::Binary, buffer)
    }

    /// `DMF_Registry_PathAndValueReadString`.
    pub fn path_and_value_read_string(
        &self,
        path: Option<&str>,
        name: &str,
        buffer: &mut [u16],
    ) -> Result<usize, ReadError> {
        let key = self.open_for(path, RegistryAccess::Read, false)?;
        self.value_read_string(&key, name, buffer)
    }

    /// `DMF_Registry_PathAndValueReadMultiString`.
    pub fn path_and_value_read_multi_string(
        &self,
        path: Option<&str>,
        name: &str,
        buffer: &mut [u16],
    ) -> Result<usize, ReadError> {
        let key = self.open_for(path, RegistryAccess::Read, false)?;
        self.value_read_multi_string(&key, name, buffer)
    }

    /// `DMF_Registry_PathAndValueReadDword`.
    pub fn path_and_value_read_dword(&self, path: Option<&str>, name: &str) -> NtResult<u32> {
        let key = self.open_for(path, RegistryAccess::Read, false)?;
        self.value_read_dword(&key, name)
    }

    /// `DMF_Registry_PathAndValueReadDwordAndValidate`.
    pub fn path_and_value_read_dword_and_validate(
        &self,
        path: Option<&str>,
        name: &str,
        minimum: u32,
        maximum: u32,
    ) -> NtResult<u32> {
        validate(
            self.path_and_value_read_dword(path, name)?,
            minimum,
            maximum,
        )
    }

    /// `DMF_Registry_PathAndValueReadQword`.
    pub fn path_and_value_read_qword(&self, path: Option<&str>, name: &str) -> NtResult<u64> {
        let key = self.open_for(path, RegistryAccess::Read, false)?;
        self.value_read_qword(&key, name)
    }

    /// `DMF_Registry_PathAndValueReadQwordAndValidate`.
    pub fn path_and_value_read_qword_and_validate(
        &self,
        path: Option<&str>,
        name: &str,
        minimum: u64,
        maximum: u64,
    ) -> NtResult<u64> {
        validate(
            self.path_and_value_read_qword(path, name)?,
            minimum,
            maximum,
        )
    }

    /// `DMF_Registry_PathAndValueWrite`: [`value_write`](Self::value_write) to the key at `path`
    /// (`None`: the device's hardware key), created with its parents if missing.
    pub fn path_and_value_write(
        &self,
        path: Option<&str>,
        name: &str,
        value_type: RegistryValueType,
        data: &[u8],
    ) -> NtResult<()> {
        let key = self.open_for(path, RegistryAccess::ReadWrite, true)?;
        self.value_write(&key, name, value_type, data)
    }

    /// `DMF_Registry_PathAndValueWriteBinary`.
    pub fn path_and_value_write_binary(
        &self,
        path: Option<&str>,
        name: &str,
        data: &[u8],
    ) -> NtResult<()> {
        self.path_and_value_write(path, name, RegistryValueType::Binary, data)
    }

    /// `DMF_Registry_PathAndValueWriteDword`.
    pub fn path_and_value_write_dword(
        &self,
        path: Option<&str>,
        name: &str,
        value: u32,
    ) -> NtResult<()> {
        self.path_and_value_write(path, name, RegistryValueType::Dword, &value.to_le_bytes())
    }

    /// `DMF_Registry_PathAndValueWriteQword`.
    pub fn path_and_value_write_qword(
        &self,
        path: Option<&str>,
        name: &str,
        value: u64,
    ) -> NtResult<()> {
        self.path_and_value_write(path, name, RegistryValueType::Qword, &value.to_le_bytes())
    }

    /// `DMF_Registry_PathAndValueWriteString`.
    pub fn path_and_value_write_string(
        &self,
        path: Option<&str>,
        name: &str,
        text: &str,
    ) -> NtResult<()> {
        let key = self.open_for(path, RegistryAccess::ReadWrite, true)?;
        self.value_write_string(&key, name, text)
    }

    /// `DMF_Registry_PathAndValueWriteMultiString`.
    pub fn path_and_value_write_multi_string(
        &self,
        path: Option<&str>,
        name: &str,
        strings: &[&str],
    ) -> NtResult<()> {
        let key = self.open_for(path, RegistryAccess::ReadWrite, true)?;
        self.value_write_multi_string(&key, name, strings)
    }

    /// `DMF_Registry_PathAndValueDelete`: deletes value `name` of the existing key at `path`
    /// (`None`: the device's hardware key).
    pub fn path_and_value_delete(&self, path: Option<&str>, name: &str) -> NtResult<()> {
        let key = self.open_for(path, RegistryAccess::ReadWrite, false)?;
        self.value_delete(&key, name)
    }

    // ----- enumeration ------------------------------------------------------------------------

    /// `DMF_Registry_SubKeysFromHandleEnumerate`: calls `callback(key, subkey_name)` for each
    /// subkey of `key` until it returns false; `Ok(true)` if it never did.
    pub fn sub_keys_from_handle_enumerate(
        &self,
        key: &RegistryKey,
        mut callback: impl FnMut(&RegistryKey, &str) -> bool,
    ) -> NtResult<bool> {
        let _module = self.enter()?;
        enumerate_names(key, false, |name| Ok(callback(key, name)))
    }

    /// `DMF_Registry_AllSubKeysFromHandleEnumerate`: as
    /// [`sub_keys_from_handle_enumerate`](Self::sub_keys_from_handle_enumerate), but the callback
    /// receives each subkey opened ([`RegistryAccess::All`]).
    pub fn all_sub_keys_from_handle_enumerate(
        &self,
        key: &RegistryKey,
        mut callback: impl FnMut(&RegistryKey, &str) -> bool,
    ) -> NtResult<bool> {
        let _module = self.enter()?;
        enumerate_names(key, false, |name| {
            let subkey = key.open_subkey(name, RegistryAccess::All, false)?;
            Ok(callback(&subkey, name))
        })
    }

    /// `DMF_Registry_EnumerateKeysFromName`: as
    /// [`sub_keys_from_handle_enumerate`](Self::sub_keys_from_handle_enumerate) on the key at the
    /// absolute `path`, opened for reading.
    pub fn enumerate_keys_from_name(
        &self,
        path: &str,
        mut callback: impl FnMut(&RegistryKey, &str) -> bool,
    ) -> NtResult<bool> {
        let _module = self.enter()?;
        let key = RegistryKey::open_path(path, RegistryAccess::Read, false)?;
        enumerate_names(&key, false, |name| Ok(callback(&key, name)))
    }

    /// `DMF_Registry_SubKeysFromPathNameContainingStringEnumerate`: calls `callback(subkey,
    /// name)` with each subkey of the key at `path` whose name contains `look_for`
    /// (case-sensitive), opened ([`RegistryAccess::All`]).
    pub fn sub_keys_from_path_name_containing_string_enumerate(
        &self,
        path: &str,
        look_for: &str,
        mut callback: impl FnMut(&RegistryKey, &str) -> bool,
    ) -> NtResult<bool> {
        let _module = self.enter()?;
        let key = RegistryKey::open_path(path, RegistryAccess::Read, false)?;
        enumerate_names(&key, false, |name| {
            if !name.contains(look_for) {
                return Ok(true);
            }
            let subkey = key.open_subkey(name, RegistryAccess::All, false)?;
            Ok(callback(&subkey, name))
        })
    }

    /// Calls `callback(value_name)` for each value of `key` until it returns false; `Ok(true)` if
    /// it never did (C DMF has no value enumeration; `ZwEnumerateValueKey`).
    pub fn values_from_handle_enumerate(
        &self,
        key: &RegistryKey,
        mut callback: impl FnMut(&str) -> bool,
    ) -> NtResult<bool> {
        let _module = self.enter()?;
        enumerate_names(key, true, |name| Ok(callback(name)))
    }

    // ----- trees ------------------------------------------------------------------------------

    /// `DMF_Registry_TreeWriteEx`: writes every value of every branch of `trees`, creating keys
    /// as needed; stops at the first failure (what was written stays).
    ///
    /// # Errors
    ///
    /// The registry's status; `STATUS_INVALID_PARAMETER` for a branch prefix that is neither
    /// empty nor starts with `\`.
    pub fn tree_write_ex(&self, trees: &[RegistryTree]) -> NtResult<()> {
        let _module = self.enter()?;
        tree_write(trees)
    }
}
