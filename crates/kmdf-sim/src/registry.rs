//! The simulated registry: a tree of keys holding typed values, shared by every simulated machine
//! that is given the same [`RegistryStore`].
//!
//! # Model
//!
//! A [`RegistryStore`] is one registry hive tree behind a mutex, addressed by absolute NT paths
//! such as `\Registry\Machine\System\CurrentControlSet\Services\osrusbfx2\Parameters`. Keys hold
//! subkeys and values; values are typed ([`RegistryValue`]: `REG_DWORD`, `REG_QWORD`, `REG_SZ`,
//! `REG_EXPAND_SZ`, `REG_MULTI_SZ`, `REG_BINARY`). As on Windows, key and value names are case-insensitive and
//! case-preserving: `PARAMETERS` opens the key created as `Parameters`, and enumeration reports
//! the spelling used at creation. Enumeration is sorted by the upper-cased name (Windows sorts
//! subkeys this way; for values it promises no order, so the simulator picks this deterministic
//! one).
//!
//! A [`RegistryKey`] is an open handle: the store plus the key's identity. If the key is deleted,
//! operations on the handle fail with [`RegistryError::KeyDeleted`], even if a key of the same name
//! is created again.
//!
//! # Persistence across simulated reboots
//!
//! The store is independent of any simulated machine and outlives it. A test that wants values to
//! survive a "reboot" builds one store and hands a clone of it (clones share the tree) to each
//! machine it boots in turn. A test that wants to branch — boot twice from the same starting
//! registry, or check that a run left the registry untouched — takes a [`RegistrySnapshot`] with
//! [`RegistryStore::snapshot`] (a deep copy) and builds independent stores from it with
//! [`RegistryStore::from_snapshot`]. Nothing is written to disk.
//!
//! # Well-known keys
//!
//! [`RegistryStore::driver_parameters`] is the per-driver `Parameters` key that
//! `WdfDriverOpenParametersRegistryKey` opens; [`RegistryStore::device_hardware_key`] and
//! [`RegistryStore::device_software_key`] are the per-device keys `WdfDeviceOpenRegistryKey`
//! opens with `PLUGPLAY_REGKEY_DEVICE` and `PLUGPLAY_REGKEY_DRIVER`, found by device instance id.
//!
//! # Errors
//!
//! Every failure is a [`RegistryError`] carrying the NTSTATUS a kernel registry routine returns
//! ([`RegistryError::ntstatus`]): absent key or value → `STATUS_OBJECT_NAME_NOT_FOUND`, short
//! buffer → `STATUS_BUFFER_TOO_SMALL` (with the size needed), wrong type for a typed query →
//! `STATUS_OBJECT_TYPE_MISMATCH`, malformed name or data → `STATUS_INVALID_PARAMETER`, a write
//! through a handle opened for reading (or a key deletion without `DELETE`, [`KeyAccess`]) →
//! `STATUS_ACCESS_DENIED`.
//!
//! ```
//! use kmdf_sim::registry::{RegistryError, RegistryStore, RegistryValue};
//!
//! let store = RegistryStore::new();
//! // First boot: the driver stores a setting.
//! {
//!     let params = store.driver_parameters("osrusbfx2").unwrap();
//!     params.set_value("IdleTimeoutMs", 10_000u32).unwrap();
//! }
//! // Second boot, same store: the setting is still there, under any spelling.
//! let params = store.driver_parameters("OSRUSBFX2").unwrap();
//! assert_eq!(params.query_dword("idletimeoutms"), Ok(10_000));
//! assert_eq!(
//!     params.query_dword("Missing").unwrap_err().ntstatus(),
//!     0xC000_0034_u32 as i32
//! );
//! ```

use core::fmt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Reinterprets an NTSTATUS written as an unsigned literal (as in `ntstatus.h`).
const fn nt(value: u32) -> i32 {
    i32::from_ne_bytes(value.to_ne_bytes())
}

/// `STATUS_OBJECT_NAME_NOT_FOUND`.
pub const STATUS_OBJECT_NAME_NOT_FOUND: i32 = nt(0xC000_0034);
/// `STATUS_BUFFER_TOO_SMALL`.
pub const STATUS_BUFFER_TOO_SMALL: i32 = nt(0xC000_0023);
/// `STATUS_OBJECT_TYPE_MISMATCH`.
pub const STATUS_OBJECT_TYPE_MISMATCH: i32 = nt(0xC000_0024);
/// `STATUS_INVALID_PARAMETER`.
pub const STATUS_INVALID_PARAMETER: i32 = nt(0xC000_000D);
/// `STATUS_KEY_DELETED`.
pub const STATUS_KEY_DELETED: i32 = nt(0xC000_017C);
/// `STATUS_CANNOT_DELETE`.
pub const STATUS_CANNOT_DELETE: i32 = nt(0xC000_0121);
/// `STATUS_ACCESS_DENIED`.
pub const STATUS_ACCESS_DENIED: i32 = nt(0xC000_0022);

/// Longest key-name component, in characters (Windows: 255).
pub const MAX_KEY_NAME_LENGTH: usize = 255;
/// Longest value name, in characters (Windows: 16,383).
pub const MAX_VALUE_NAME_LENGTH: usize = 16_383;

/// Why a registry operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegistryError {
    /// The key or value does not exist (`STATUS_OBJECT_NAME_NOT_FOUND`).
    NotFound,
    /// The caller's buffer cannot hold the data (`STATUS_BUFFER_TOO_SMALL`).
    BufferTooSmall {
        /// Bytes needed.
        required: usize,
    },
    /// The value exists with another type (`STATUS_OBJECT_TYPE_MISMATCH`).
    TypeMismatch {
        /// The type the caller asked for.
        expected: RegistryValueType,
        /// The type stored.
        found: RegistryValueType,
    },
    /// A malformed path, name or value (`STATUS_INVALID_PARAMETER`).
    InvalidParameter,
    /// The handle's key has been deleted (`STATUS_KEY_DELETED`).
    KeyDeleted,
    /// The key still has subkeys; use [`RegistryStore::delete_tree`] (`STATUS_CANNOT_DELETE`).
    HasSubkeys,
    /// The handle was opened without the right the operation needs (`STATUS_ACCESS_DENIED`):
    /// a write through a [`KeyAccess::Read`] handle, a key deletion without [`KeyAccess::All`].
    AccessDenied,
}

/// The rights a handle was opened with, as the `ACCESS_MASK` of `ZwOpenKey`/`ZwCreateKey`
/// groups them. The store's own constructors open with [`KeyAccess::All`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum KeyAccess {
    /// `KEY_READ`: query values, enumerate, open subkeys.
    Read,
    /// `KEY_READ | KEY_WRITE`: also set and delete values and create subkeys.
    ReadWrite,
    /// `KEY_ALL_ACCESS`: also delete the key itself (`DELETE`).
    #[default]
    All,
}

impl KeyAccess {
    /// Whether values may be set or deleted and subkeys created through the handle.
    pub const fn can_write(self) -> bool {
        matches!(self, KeyAccess::ReadWrite | KeyAccess::All)
    }

    /// Whether the key itself may be deleted through the handle.
    pub const fn can_delete(self) -> bool {
        matches!(self, KeyAccess::All)
    }
}

impl RegistryError {
    /// The NTSTATUS a kernel registry routine returns for this failure.
    pub const fn ntstatus(&self) -> i32 {
        match self {
            RegistryError::NotFound => STATUS_OBJECT_NAME_NOT_FOUND,
            RegistryError::BufferTooSmall { .. } => STATUS_BUFFER_TOO_SMALL,
            RegistryError::TypeMismatch { .. } => STATUS_OBJECT_TYPE_MISMATCH,
            RegistryError::InvalidParameter => STATUS_INVALID_PARAMETER,
            RegistryError::KeyDeleted => STATUS_KEY_DELETED,
            RegistryError::HasSubkeys => STATUS_CANNOT_DELETE,
            RegistryError::AccessDenied => STATUS_ACCESS_DENIED,
        }
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::NotFound => f.write_str("registry key or value not found"),
            RegistryError::BufferTooSmall { required } => {
                write!(f, "buffer too small: the value needs {required} bytes")
            }
            RegistryError::TypeMismatch { expected, found } => {
                write!(f, "registry value is {found}, not {expected}")
            }
            RegistryError::InvalidParameter => f.write_str("invalid registry path, name or data"),
            RegistryError::KeyDeleted => f.write_str("registry key has been deleted"),
            RegistryError::HasSubkeys => f.write_str("registry key has subkeys"),
            RegistryError::AccessDenied => f.write_str("registry handle lacks the access needed"),
        }
    }
}

impl std::error::Error for RegistryError {}

/// A registry value's type, numbered as the `REG_*` constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum RegistryValueType {
    /// `REG_SZ` (1).
    Sz = 1,
    /// `REG_EXPAND_SZ` (2): a string with `%VARIABLE%` references, stored as is (the registry
    /// does not expand it; readers do).
    ExpandSz = 2,
    /// `REG_BINARY` (3).
    Binary = 3,
    /// `REG_DWORD` (4).
    Dword = 4,
    /// `REG_MULTI_SZ` (7).
    MultiSz = 7,
    /// `REG_QWORD` (11).
    Qword = 11,
}

impl RegistryValueType {
    /// The type numbered `raw`, if it is one the simulator supports.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => RegistryValueType::Sz,
            2 => RegistryValueType::ExpandSz,
            3 => RegistryValueType::Binary,
            4 => RegistryValueType::Dword,
            7 => RegistryValueType::MultiSz,
            11 => RegistryValueType::Qword,
            _ => return None,
        })
    }

    /// The `REG_*` number.
    pub const fn raw(self) -> u32 {
        self as u32
    }
}

impl fmt::Display for RegistryValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegistryValueType::Sz => "REG_SZ",
            RegistryValueType::ExpandSz => "REG_EXPAND_SZ",
            RegistryValueType::Binary => "REG_BINARY",
            RegistryValueType::Dword => "REG_DWORD",
            RegistryValueType::MultiSz => "REG_MULTI_SZ",
            RegistryValueType::Qword => "REG_QWORD",
        })
    }
}

/// A typed registry value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegistryValue {
    /// `REG_DWORD`.
    Dword(u32),
    /// `REG_QWORD`.
    Qword(u64),
    /// `REG_SZ` (no embedded NUL).
    Sz(String),
    /// `REG_EXPAND_SZ` (no embedded NUL).
    ExpandSz(String),
    /// `REG_MULTI_SZ` (no string empty or with an embedded NUL).
    MultiSz(Vec<String>),
    /// `REG_BINARY`.
    Binary(Vec<u8>),
}

impl RegistryValue {
    /// The value's type.
    pub const fn value_type(&self) -> RegistryValueType {
        match self {
            RegistryValue::Dword(_) => RegistryValueType::Dword,
            RegistryValue::Qword(_) => RegistryValueType::Qword,
            RegistryValue::Sz(_) => RegistryValueType::Sz,
            RegistryValue::ExpandSz(_) => RegistryValueType::ExpandSz,
            RegistryValue::MultiSz(_) => RegistryValueType::MultiSz,
            RegistryValue::Binary(_) => RegistryValueType::Binary,
        }
    }

    /// Whether the value can be stored: strings have no NUL, multi-strings no empty entry.
    pub fn is_valid(&self) -> bool {
        match self {
            RegistryValue::Sz(s) | RegistryValue::ExpandSz(s) => !s.contains('\0'),
            RegistryValue::MultiSz(list) => list.iter().all(|s| !s.is_empty() && !s.contains('\0')),
            RegistryValue::Dword(_) | RegistryValue::Qword(_) | RegistryValue::Binary(_) => true,
        }
    }

    /// The data as Windows stores it: integers little-endian, strings UTF-16LE with a terminating
    /// NUL, multi-strings each NUL-terminated plus a final NUL.
    pub fn to_bytes(&self) -> Vec<u8> {
        fn utf16(s: &str, out: &mut Vec<u8>) {
            for unit in s.encode_utf16().chain([0]) {
                out.extend_from_slice(&unit.to_le_bytes());
            }
        }
        match self {
            RegistryValue::Dword(v) => v.to_le_bytes().to_vec(),
            RegistryValue::Qword(v) => v.to_le_bytes().to_vec(),
            RegistryValue::Sz(s) | RegistryValue::ExpandSz(s) => {
                let mut out = Vec::with_capacity(2 * (s.len() + 1));
                utf16(s, &mut out);
                out
            }
            RegistryValue::MultiSz(list) => {
                let mut out = Vec::new();
                for s in list {
                    utf16(s, &mut out);
                }
                out.extend_from_slice(&[0, 0]);
                out
            }
            RegistryValue::Binary(bytes) => bytes.clone(),
        }
    }

    /// Decodes data stored as [`to_bytes`](Self::to_bytes) writes it. Integers need their exact
    /// size; strings need whole UTF-16 units of valid UTF-16 (a missing terminator is tolerated,
    /// as Windows tolerates it).
    pub fn from_bytes(value_type: RegistryValueType, bytes: &[u8]) -> Result<Self, RegistryError> {
        fn units(bytes: &[u8]) -> Result<Vec<u16>, RegistryError> {
            if !bytes.len().is_multiple_of(2) {
                return Err(RegistryError::InvalidParameter);
            }
            Ok(bytes
                .chunks_exact(2)
                .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
                .collect())
        }
        fn string(units: &[u16]) -> Result<String, RegistryError> {
            String::from_utf16(units).map_err(|_| RegistryError::InvalidParameter)
        }
        let value = match value_type {
            RegistryValueType::Dword => RegistryValue::Dword(u32::from_le_bytes(
                bytes
                    .try_into()
                    .map_err(|_| RegistryError::InvalidParameter)?,
            )),
            RegistryValueType::Qword => RegistryValue::Qword(u64::from_le_bytes(
                bytes
                    .try_into()
                    .map_err(|_| RegistryError::InvalidParameter)?,
            )),
            RegistryValueType::Binary => RegistryValue::Binary(bytes.to_vec()),
            RegistryValueType::Sz | RegistryValueType::ExpandSz => {
                let units = units(bytes)?;
                let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
                if units[end..].iter().any(|&u| u != 0) {
                    return Err(RegistryError::InvalidParameter);
                }
                let text = string(&units[..end])?;
                if value_type == RegistryValueType::Sz {
                    RegistryValue::Sz(text)
                } else {
                    RegistryValue::ExpandSz(text)
                }
            }
            RegistryValueType::MultiSz => {
                let units = units(bytes)?;
                let mut list = Vec::new();
                // Strings end at a NUL; an empty string (two NULs in a row) ends the list.
                for piece in units.split(|&u| u == 0) {
                    if piece.is_empty() {
                        break;
                    }
                    list.push(string(piece)?);
                }
                RegistryValue::MultiSz(list)
            }
        };
        Ok(value)
    }
}

impl From<u32> for RegistryValue {
    fn from(v: u32) -> Self {
        RegistryValue::Dword(v)
    }
}

impl From<u64> for RegistryValue {
    fn from(v: u64) -> Self {
        RegistryValue::Qword(v)
    }
}

impl From<&str> for RegistryValue {
    fn from(v: &str) -> Self {
        RegistryValue::Sz(v.to_owned())
    }
}

impl From<String> for RegistryValue {
    fn from(v: String) -> Self {
        RegistryValue::Sz(v)
    }
}

impl From<Vec<String>> for RegistryValue {
    fn from(v: Vec<String>) -> Self {
        RegistryValue::MultiSz(v)
    }
}

impl From<&[u8]> for RegistryValue {
    fn from(v: &[u8]) -> Self {
        RegistryValue::Binary(v.to_vec())
    }
}

impl From<Vec<u8>> for RegistryValue {
    fn from(v: Vec<u8>) -> Self {
        RegistryValue::Binary(v)
    }
}

impl fmt::Display for RegistryValue {
    /// `REG_DWORD 0x0000000A (10)`, `REG_SZ "text"`, `REG_MULTI_SZ ["a", "b"]`, `REG_BINARY 01 02`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.value_type())?;
        match self {
            RegistryValue::Dword(v) => write!(f, "0x{v:08X} ({v})"),
            RegistryValue::Qword(v) => write!(f, "0x{v:016X} ({v})"),
            RegistryValue::Sz(s) | RegistryValue::ExpandSz(s) => write!(f, "{s:?}"),
            RegistryValue::MultiSz(list) => write!(f, "{list:?}"),
            RegistryValue::Binary(bytes) => {
                let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
                f.write_str(&hex.join(" "))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tree
// ---------------------------------------------------------------------------------------------

/// A name folded for case-insensitive comparison: each character upper-cased when that gives one
/// character (Windows' simple up-case table does not expand `ß` to `SS`).
fn fold(name: &str) -> String {
    name.chars()
        .map(|c| {
            let mut upper = c.to_uppercase();
            match (upper.next(), upper.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

#[derive(Clone, Debug)]
struct Node {
    /// Identity, unique within a store; a handle remembers it to detect deletion.
    id: u64,
    /// The name as first spelled.
    name: String,
    /// Folded name → (name as first spelled, value).
    values: BTreeMap<String, (String, RegistryValue)>,
    /// Folded name → subkey.
    subkeys: BTreeMap<String, Node>,
}

impl PartialEq for Node {
    /// Structural equality; identities are ignored.
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.values == other.values && self.subkeys == other.subkeys
    }
}

impl Eq for Node {}

impl Node {
    fn new(id: u64, name: &str) -> Self {
        Self {
            id,
            name: name.to_owned(),
            values: BTreeMap::new(),
            subkeys: BTreeMap::new(),
        }
    }

    fn dump(&self, path: &str, out: &mut String) {
        use fmt::Write as _;
        let _ = writeln!(out, "[{path}]");
        for (name, value) in self.values.values() {
            let shown = if name.is_empty() { "@" } else { name };
            let _ = writeln!(out, "  {shown} = {value}");
        }
        for child in self.subkeys.values() {
            child.dump(&format!("{path}\\{}", child.name), out);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Tree {
    /// The nameless root above `\Registry`.
    root: Node,
    next_id: u64,
}

impl Tree {
    fn new() -> Self {
        Self {
            root: Node::new(0, ""),
            next_id: 1,
        }
    }

    /// The node at `path` (folded components), if it exists.
    fn node(&self, path: &[String]) -> Option<&Node> {
        path.iter()
            .try_fold(&self.root, |node, part| node.subkeys.get(part))
    }

    fn node_mut(&mut self, path: &[String]) -> Option<&mut Node> {
        path.iter()
            .try_fold(&mut self.root, |node, part| node.subkeys.get_mut(part))
    }

    /// The node a handle names, or `KeyDeleted` if it (or an ancestor) was deleted since.
    fn handle_node(&self, key: &KeyPath) -> Result<&Node, RegistryError> {
        match self.node(&key.folded) {
            Some(node) if node.id == key.id => Ok(node),
            _ => Err(RegistryError::KeyDeleted),
        }
    }

    fn handle_node_mut(&mut self, key: &KeyPath) -> Result<&mut Node, RegistryError> {
        match self.node_mut(&key.folded) {
            Some(node) if node.id == key.id => Ok(node),
            _ => Err(RegistryError::KeyDeleted),
        }
    }

    /// Creates the missing keys along `parts` below `base` (folded path of an existing node).
    fn create(&mut self, base: &[String], parts: &[&str]) -> Result<KeyPath, RegistryError> {
        let mut next_id = self.next_id;
        let mut folded = base.to_vec();
        let mut node = self.node_mut(base).ok_or(RegistryError::KeyDeleted)?;
        for part in parts {
            let key = fold(part);
            node = node.subkeys.entry(key.clone()).or_insert_with(|| {
                next_id += 1;
                Node::new(next_id - 1, part)
            });
            folded.push(key);
        }
        let id = node.id;
        self.next_id = next_id;
        Ok(KeyPath { folded, id })
    }

    /// Removes the node at `path` (non-empty); `recursive` allows subkeys.
    fn delete(&mut self, path: &[String], recursive: bool) -> Result<(), RegistryError> {
        let (last, parent) = path.split_last().ok_or(RegistryError::InvalidParameter)?;
        let parent = self.node_mut(parent).ok_or(RegistryError::NotFound)?;
        let node = parent.subkeys.get(last).ok_or(RegistryError::NotFound)?;
        if !recursive && !node.subkeys.is_empty() {
            return Err(RegistryError::HasSubkeys);
        }
        parent.subkeys.remove(last);
        Ok(())
    }
}

/// Splits a key path into components: separated by `\`, none empty or longer than
/// [`MAX_KEY_NAME_LENGTH`]. An absolute path (for the store) must start with `\`.
fn split_path(path: &str, absolute: bool) -> Result<Vec<&str>, RegistryError> {
    let rest = if absolute {
        path.strip_prefix('\\')
            .ok_or(RegistryError::InvalidParameter)?
    } else {
        path
    };
    let parts: Vec<&str> = rest.split('\\').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || p.chars().count() > MAX_KEY_NAME_LENGTH)
    {
        return Err(RegistryError::InvalidParameter);
    }
    Ok(parts)
}

fn check_value_name(name: &str) -> Result<(), RegistryError> {
    if name.chars().count() > MAX_VALUE_NAME_LENGTH || name.contains('\0') {
        Err(RegistryError::InvalidParameter)
    } else {
        Ok(())
    }
}

/// A key's identity inside a store.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyPath {
    folded: Vec<String>,
    id: u64,
}

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

/// The root of the machine hive's services, device and class keys.
const CURRENT_CONTROL_SET: &str = r"\Registry\Machine\System\CurrentControlSet";

/// A simulated registry (cloneable: clones share one tree; thread-safe). See the module docs.
#[derive(Clone, Debug)]
pub struct RegistryStore {
    tree: Arc<Mutex<Tree>>,
}

impl Default for RegistryStore {
    fn default() -> Self {
        Self::new()
    }
}

/// A deep copy of a registry, from [`RegistryStore::snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrySnapshot {
    tree: Tree,
}

impl fmt::Display for RegistrySnapshot {
    /// Every key with its values, one key per `[path]` header, in sorted order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for child in self.tree.root.subkeys.values() {
            child.dump(&format!("\\{}", child.name), &mut out);
        }
        f.write_str(&out)
    }
}

impl RegistryStore {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            tree: Arc::new(Mutex::new(Tree::new())),
        }
    }

    /// A new, independent store holding a copy of `snapshot`.
    pub fn from_snapshot(snapshot: &RegistrySnapshot) -> Self {
        Self {
            tree: Arc::new(Mutex::new(snapshot.tree.clone())),
        }
    }

    /// A deep copy of the whole registry as it is now.
    pub fn snapshot(&self) -> RegistrySnapshot {
        RegistrySnapshot {
            tree: self.lock().clone(),
        }
    }

    /// Whether `other` is a clone of this store (shares its tree).
    pub fn same_store(&self, other: &RegistryStore) -> bool {
        Arc::ptr_eq(&self.tree, &other.tree)
    }

    fn lock(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn handle(&self, path: KeyPath) -> RegistryKey {
        RegistryKey {
            store: self.clone(),
            path,
            access: KeyAccess::All,
        }
    }

    /// Opens the key at absolute `path`, creating it and any missing parents (`ZwCreateKey`).
    pub fn create_key(&self, path: &str) -> Result<RegistryKey, RegistryError> {
        let parts = split_path(path, true)?;
        let key = self.lock().create(&[], &parts)?;
        Ok(self.handle(key))
    }

    /// Opens the existing key at absolute `path` (`ZwOpenKey`); `NotFound` if it is absent.
    pub fn open_key(&self, path: &str) -> Result<RegistryKey, RegistryError> {
        let folded: Vec<String> = split_path(path, true)?.into_iter().map(fold).collect();
        let id = self.lock().node(&folded).ok_or(RegistryError::NotFound)?.id;
        Ok(self.handle(KeyPath { folded, id }))
    }

    /// Whether a key exists at absolute `path`.
    pub fn key_exists(&self, path: &str) -> bool {
        self.open_key(path).is_ok()
    }

    /// Deletes the key at absolute `path` with its values; fails with `HasSubkeys` if it has any.
    pub fn delete_key(&self, path: &str) -> Result<(), RegistryError> {
        let folded: Vec<String> = split_path(path, true)?.into_iter().map(fold).collect();
        self.lock().delete(&folded, false)
    }

    /// Deletes the key at absolute `path` and everything below it.
    pub fn delete_tree(&self, path: &str) -> Result<(), RegistryError> {
        let folded: Vec<String> = split_path(path, true)?.into_iter().map(fold).collect();
        self.lock().delete(&folded, true)
    }

    /// `\Registry\Machine\System\CurrentControlSet\Services\<driver>\Parameters`.
    pub fn driver_parameters_path(driver: &str) -> String {
        format!("{CURRENT_CONTROL_SET}\\Services\\{driver}\\Parameters")
    }

    /// Opens (creating if needed) the driver's `Parameters` key, as
    /// `WdfDriverOpenParametersRegistryKey` does. `driver` is the service name.
    pub fn driver_parameters(&self, driver: &str) -> Result<RegistryKey, RegistryError> {
        if driver.is_empty() || driver.contains('\\') {
            return Err(RegistryError::InvalidParameter);
        }
        self.create_key(&Self::driver_parameters_path(driver))
    }

    /// `\Registry\Machine\System\CurrentControlSet\Enum\<instance id>` — the device's instance
    /// key, where PnP keeps `ClassGUID` and `Driver`.
    pub fn device_instance_path(instance_id: &str) -> String {
        format!("{CURRENT_CONTROL_SET}\\Enum\\{instance_id}")
    }

    /// `…\Enum\<instance id>\Device Parameters` — the device's hardware key.
    pub fn device_hardware_key_path(instance_id: &str) -> String {
        format!(
            "{}\\Device Parameters",
            Self::device_instance_path(instance_id)
        )
    }

    /// Opens (creating if needed) the device's hardware key (`PLUGPLAY_REGKEY_DEVICE`). The
    /// instance id's own `\` separators are path separators, as on Windows
    /// (`USB\VID_0547&PID_1002\5&1` is three keys below `Enum`).
    pub fn device_hardware_key(&self, instance_id: &str) -> Result<RegistryKey, RegistryError> {
        self.create_key(&Self::device_hardware_key_path(instance_id))
    }

    /// Opens (creating if needed) the device's software ("driver") key (`PLUGPLAY_REGKEY_DRIVER`),
    /// `…\Control\Class\<class guid>\<nnnn>`, the way PnP finds it: through the `Driver` value
    /// (`<class guid>\<nnnn>`) of the device's instance key. If there is none yet, one is allocated
    /// — the class is the instance key's `ClassGUID` string (the null GUID if absent), `<nnnn>` the
    /// lowest free four-digit index — and recorded in `Driver`, so the same device finds the same
    /// key after a simulated reboot.
    pub fn device_software_key(&self, instance_id: &str) -> Result<RegistryKey, RegistryError> {
        let class_root = format!("{CURRENT_CONTROL_SET}\\Control\\Class");
        let instance = self.create_key(&Self::device_instance_path(instance_id))?;
        match instance.query_value("Driver") {
            Ok(RegistryValue::Sz(driver)) => {
                return self.create_key(&format!("{class_root}\\{driver}"));
            }
            Ok(_) | Err(RegistryError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let class = match instance.query_value("ClassGUID") {
            Ok(RegistryValue::Sz(class)) => class,
            _ => crate::guid::Guid::NULL.to_string(),
        };
        // Hold the lock across choosing the index and creating the key, so two devices racing
        // here cannot be given the same index.
        let mut tree = self.lock();
        let class_path = format!("{class_root}\\{class}");
        let class_parts = split_path(&class_path, true)?;
        let class_key = tree.create(&[], &class_parts)?;
        let taken = tree
            .node(&class_key.folded)
            .map(|node| node.subkeys.len())
            .unwrap_or_default();
        let index = (0..=taken)
            .map(|i| format!("{i:04}"))
            .find(|name| {
                tree.node(&class_key.folded)
                    .is_some_and(|node| !node.subkeys.contains_key(name))
            })
            .ok_or(RegistryError::InvalidParameter)?;
        let key = tree.create(&class_key.folded, &[index.as_str()])?;
        let instance_node = tree.handle_node_mut(&instance.path)?;
        let driver = format!("{class}\\{index}");
        instance_node.values.insert(
            fold("Driver"),
            ("Driver".to_owned(), RegistryValue::Sz(driver)),
        );
        drop(tree);
        Ok(self.handle(key))
    }
}

// ---------------------------------------------------------------------------------------------
// Open keys
// ---------------------------------------------------------------------------------------------

/// An open registry key (a handle: cheap to clone; the key itself lives in the store).
#[derive(Clone, Debug)]
pub struct RegistryKey {
    store: RegistryStore,
    path: KeyPath,
    access: KeyAccess,
}

impl RegistryKey {
    /// The key's absolute path, spelled as the keys were created; `KeyDeleted` if it is gone.
    pub fn path(&self) -> Result<String, RegistryError> {
        let tree = self.store.lock();
        tree.handle_node(&self.path)?;
        let mut node = &tree.root;
        let mut out = String::new();
        for part in &self.path.folded {
            node = node.subkeys.get(part).ok_or(RegistryError::KeyDeleted)?;
            out.push('\\');
            out.push_str(&node.name);
        }
        Ok(out)
    }

    /// The store this key lives in.
    pub fn store(&self) -> &RegistryStore {
        &self.store
    }

    fn with_node<T>(
        &self,
        f: impl FnOnce(&Node) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let tree = self.store.lock();
        f(tree.handle_node(&self.path)?)
    }

    fn with_node_mut<T>(
        &self,
        f: impl FnOnce(&mut Node) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        if !self.access.can_write() {
            return Err(RegistryError::AccessDenied);
        }
        let mut tree = self.store.lock();
        f(tree.handle_node_mut(&self.path)?)
    }

    /// The rights this handle was opened with.
    pub fn access(&self) -> KeyAccess {
        self.access
    }

    /// The same key through a handle with `access` instead (as if opened again with that
    /// `ACCESS_MASK`; the registry has no security descriptors, so any access is granted).
    #[must_use]
    pub fn with_access(mut self, access: KeyAccess) -> RegistryKey {
        self.access = access;
        self
    }

    /// Opens (creating if needed) the subkey at relative `path` (`\`-separated). Needs a handle
    /// that may write (`KEY_CREATE_SUB_KEY`): `AccessDenied` through a [`KeyAccess::Read`] one.
    pub fn create_subkey(&self, path: &str) -> Result<RegistryKey, RegistryError> {
        let parts = split_path(path, false)?;
        if !self.access.can_write() {
            return Err(RegistryError::AccessDenied);
        }
        let mut tree = self.store.lock();
        tree.handle_node(&self.path)?;
        let key = tree.create(&self.path.folded, &parts)?;
        drop(tree);
        Ok(self.store.handle(key))
    }

    /// Opens the existing subkey at relative `path`; `NotFound` if it is absent.
    pub fn open_subkey(&self, path: &str) -> Result<RegistryKey, RegistryError> {
        let parts = split_path(path, false)?;
        let mut folded = self.path.folded.clone();
        folded.extend(parts.into_iter().map(fold));
        let tree = self.store.lock();
        tree.handle_node(&self.path)?;
        let id = tree.node(&folded).ok_or(RegistryError::NotFound)?.id;
        drop(tree);
        Ok(self.store.handle(KeyPath { folded, id }))
    }

    /// Sets value `name` (`""` is the key's default value), replacing any value of any type. The
    /// name keeps the spelling it was first created with.
    pub fn set_value(
        &self,
        name: &str,
        value: impl Into<RegistryValue>,
    ) -> Result<(), RegistryError> {
        check_value_name(name)?;
        let value = value.into();
        if !value.is_valid() {
            return Err(RegistryError::InvalidParameter);
        }
        self.with_node_mut(|node| {
            node.values
                .entry(fold(name))
                .and_modify(|(_, v)| *v = value.clone())
                .or_insert_with(|| (name.to_owned(), value.clone()));
            Ok(())
        })
    }

    /// The value `name`; `NotFound` if absent.
    pub fn query_value(&self, name: &str) -> Result<RegistryValue, RegistryError> {
        check_value_name(name)?;
        self.with_node(|node| {
            node.values
                .get(&fold(name))
                .map(|(_, v)| v.clone())
                .ok_or(RegistryError::NotFound)
        })
    }

    /// Copies value `name`'s data, as [`RegistryValue::to_bytes`] lays it out, into `buffer`
    /// (`ZwQueryValueKey` with partial information): returns the type and the length written, or
    /// `BufferTooSmall { required }` — call with an empty buffer to learn the size.
    pub fn query_value_into(
        &self,
        name: &str,
        buffer: &mut [u8],
    ) -> Result<(RegistryValueType, usize), RegistryError> {
        let value = self.query_value(name)?;
        let bytes = value.to_bytes();
        let target = buffer
            .get_mut(..bytes.len())
            .ok_or(RegistryError::BufferTooSmall {
                required: bytes.len(),
            })?;
        target.copy_from_slice(&bytes);
        Ok((value.value_type(), bytes.len()))
    }

    fn typed<T>(
        &self,
        name: &str,
        expected: RegistryValueType,
        pick: impl FnOnce(RegistryValue) -> Option<T>,
    ) -> Result<T, RegistryError> {
        let value = self.query_value(name)?;
        let found = value.value_type();
        pick(value).ok_or(RegistryError::TypeMismatch { expected, found })
    }

    /// A `REG_DWORD` value (`WdfRegistryQueryULong`); `TypeMismatch` for any other type.
    pub fn query_dword(&self, name: &str) -> Result<u32, RegistryError> {
        self.typed(name, RegistryValueType::Dword, |v| match v {
            RegistryValue::Dword(x) => Some(x),
            _ => None,
        })
    }

    /// A `REG_QWORD` value; `TypeMismatch` for any other type.
    pub fn query_qword(&self, name: &str) -> Result<u64, RegistryError> {
        self.typed(name, RegistryValueType::Qword, |v| match v {
            RegistryValue::Qword(x) => Some(x),
            _ => None,
        })
    }

    /// A `REG_SZ` value (`WdfRegistryQueryString`); `TypeMismatch` for any other type.
    pub fn query_string(&self, name: &str) -> Result<String, RegistryError> {
        self.typed(name, RegistryValueType::Sz, |v| match v {
            RegistryValue::Sz(x) => Some(x),
            _ => None,
        })
    }

    /// A `REG_MULTI_SZ` value (`WdfRegistryQueryMultiString`); `TypeMismatch` for any other type.
    pub fn query_multi_string(&self, name: &str) -> Result<Vec<String>, RegistryError> {
        self.typed(name, RegistryValueType::MultiSz, |v| match v {
            RegistryValue::MultiSz(x) => Some(x),
            _ => None,
        })
    }

    /// A `REG_BINARY` value; `TypeMismatch` for any other type.
    pub fn query_binary(&self, name: &str) -> Result<Vec<u8>, RegistryError> {
        self.typed(name, RegistryValueType::Binary, |v| match v {
            RegistryValue::Binary(x) => Some(x),
            _ => None,
        })
    }

    /// Deletes value `name`; `NotFound` if absent.
    pub fn delete_value(&self, name: &str) -> Result<(), RegistryError> {
        check_value_name(name)?;
        self.with_node_mut(|node| {
            node.values
                .remove(&fold(name))
                .map(|_| ())
                .ok_or(RegistryError::NotFound)
        })
    }

    /// All values as `(name, value)`, sorted by upper-cased name.
    pub fn values(&self) -> Result<Vec<(String, RegistryValue)>, RegistryError> {
        self.with_node(|node| Ok(node.values.values().cloned().collect()))
    }

    /// All value names, sorted by upper-cased name.
    pub fn value_names(&self) -> Result<Vec<String>, RegistryError> {
        self.with_node(|node| Ok(node.values.values().map(|(n, _)| n.clone()).collect()))
    }

    /// The names of the direct subkeys, sorted by upper-cased name.
    pub fn subkeys(&self) -> Result<Vec<String>, RegistryError> {
        self.with_node(|node| Ok(node.subkeys.values().map(|k| k.name.clone()).collect()))
    }

    /// The name of direct subkey `index` in enumeration order (`ZwEnumerateKey`), `None` past
    /// the last one.
    pub fn subkey_at(&self, index: usize) -> Result<Option<String>, RegistryError> {
        self.with_node(|node| Ok(node.subkeys.values().nth(index).map(|k| k.name.clone())))
    }

    /// The name and value of value `index` in enumeration order (`ZwEnumerateValueKey`), `None`
    /// past the last one.
    pub fn value_at(&self, index: usize) -> Result<Option<(String, RegistryValue)>, RegistryError> {
        self.with_node(|node| Ok(node.values.values().nth(index).cloned()))
    }

    /// Deletes this key (`ZwDeleteKey`); fails with `HasSubkeys` if it has any, `AccessDenied`
    /// unless the handle has [`KeyAccess::All`]. The handle, and every other handle to the key,
    /// then reports `KeyDeleted`.
    pub fn delete(&self) -> Result<(), RegistryError> {
        if !self.access.can_delete() {
            return Err(RegistryError::AccessDenied);
        }
        let mut tree = self.store.lock();
        tree.handle_node(&self.path)?;
        tree.delete(&self.path.folded, false)
    }
}

// ---------------------------------------------------------------------------------------------
// The machine's registry (an addition kept here so machine.rs stays the exec layer's file).
// ---------------------------------------------------------------------------------------------

/// The registry attached to one machine (a [`crate::Machine::extension`]).
struct MachineRegistry(Mutex<RegistryStore>);

impl crate::Machine {
    /// The machine's registry. A machine starts with an empty store of its own; call
    /// [`use_registry`](Self::use_registry) before loading drivers to share one (a "reboot" test
    /// hands the same store to a second machine).
    pub fn registry(&self) -> RegistryStore {
        let reg = self.extension(|| MachineRegistry(Mutex::new(RegistryStore::new())));
        let store = reg
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        store.clone()
    }

    /// Makes `store` the machine's registry (clones share one tree).
    pub fn use_registry(&self, store: &RegistryStore) {
        let reg = self.extension(|| MachineRegistry(Mutex::new(RegistryStore::new())));
        *reg.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = store.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_ntstatus_numbers() {
        assert_eq!(RegistryError::NotFound.ntstatus(), nt(0xC000_0034));
        assert_eq!(
            RegistryError::BufferTooSmall { required: 1 }.ntstatus(),
            nt(0xC000_0023)
        );
        assert_eq!(
            RegistryError::TypeMismatch {
                expected: RegistryValueType::Dword,
                found: RegistryValueType::Sz
            }
            .ntstatus(),
            nt(0xC000_0024)
        );
        assert_eq!(RegistryError::InvalidParameter.ntstatus(), nt(0xC000_000D));
        assert!(RegistryError::NotFound.ntstatus() < 0);
    }

    #[test]
    fn registry_value_bytes_round_trip() {
        let values = [
            RegistryValue::Dword(0x1234_5678),
            RegistryValue::Qword(u64::MAX - 1),
            RegistryValue::Sz("héllo".into()),
            RegistryValue::Sz(String::new()),
            RegistryValue::MultiSz(vec!["a".into(), "bc".into()]),
            RegistryValue::MultiSz(vec![]),
            RegistryValue::Binary(vec![0, 1, 2]),
        ];
        for value in values {
            let bytes = value.to_bytes();
            assert_eq!(
                RegistryValue::from_bytes(value.value_type(), &bytes),
                Ok(value.clone())
            );
        }
        assert_eq!(
            RegistryValue::Sz("ab".into()).to_bytes(),
            [b'a', 0, b'b', 0, 0, 0]
        );
        assert_eq!(
            RegistryValue::from_bytes(RegistryValueType::Dword, &[1, 2, 3]),
            Err(RegistryError::InvalidParameter)
        );
        assert_eq!(
            RegistryValue::from_bytes(RegistryValueType::Sz, b"a"),
            Err(RegistryError::InvalidParameter)
        );
        assert_eq!(
            RegistryValue::from_bytes(RegistryValueType::Sz, &[0x00, 0xD8]),
            Err(RegistryError::InvalidParameter)
        );
    }

    #[test]
    fn registry_access_and_enumeration_by_index() {
        let store = RegistryStore::new();
        let key = store.create_key(r"\Registry\Machine\Test").unwrap();
        key.set_value("b", RegistryValue::ExpandSz("%x%".into()))
            .unwrap();
        key.set_value("A", 1_u32).unwrap();
        key.create_subkey("Zeta").unwrap();
        key.create_subkey("alpha").unwrap();
        // Enumeration order is the upper-cased names'; past the end is `None`.
        assert_eq!(key.value_at(0).unwrap().unwrap().0, "A");
        assert_eq!(
            key.value_at(1).unwrap(),
            Some(("b".to_owned(), RegistryValue::ExpandSz("%x%".into())))
        );
        assert_eq!(key.value_at(2), Ok(None));
        assert_eq!(key.subkey_at(0), Ok(Some("alpha".to_owned())));
        assert_eq!(key.subkey_at(1), Ok(Some("Zeta".to_owned())));
        assert_eq!(key.subkey_at(2), Ok(None));
        // REG_EXPAND_SZ is stored as written, type 2.
        assert_eq!(RegistryValueType::ExpandSz.raw(), 2);
        assert_eq!(
            RegistryValue::from_bytes(RegistryValueType::ExpandSz, &[b'a', 0, 0, 0]),
            Ok(RegistryValue::ExpandSz("a".into()))
        );
        // Access: a read handle reads but neither writes nor creates; deletion needs All.
        let read = key.clone().with_access(KeyAccess::Read);
        assert_eq!(read.query_dword("a"), Ok(1));
        assert_eq!(read.set_value("c", 2_u32), Err(RegistryError::AccessDenied));
        assert_eq!(read.delete_value("A"), Err(RegistryError::AccessDenied));
        assert_eq!(
            read.create_subkey("New").err(),
            Some(RegistryError::AccessDenied)
        );
        let alpha = key.open_subkey("ALPHA").unwrap();
        assert_eq!(
            alpha.clone().with_access(KeyAccess::ReadWrite).delete(),
            Err(RegistryError::AccessDenied)
        );
        assert_eq!(alpha.delete(), Ok(()));
        assert_eq!(RegistryError::AccessDenied.ntstatus(), nt(0xC000_0022));
    }

    #[test]
    fn registry_fold_is_simple_upcase() {
        assert_eq!(fold("Parameters"), "PARAMETERS");
        assert_eq!(fold("straße"), "STRAßE");
    }
}
