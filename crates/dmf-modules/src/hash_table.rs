//! # DMF_HashTable
//!
//! ## Summary
//!
//! A fixed-capacity hash table of byte-string keys and values. All storage is allocated when the
//! Module opens; nothing is allocated afterwards.
//!
//! ## Configuration
//!
//! [`HashTableConfig`] (`DMF_CONFIG_HashTable`): `maximum_key_length`, `maximum_value_length`
//! (bytes), `maximum_table_size` (pairs; not zero) and an optional client hash function
//! (`EvtHashTableHashCalculate`; the default is 64-bit FNV-1a, as in C DMF). Zero limits fail
//! creation with `STATUS_INVALID_PARAMETER`.
//!
//! ## Methods
//!
//! | C DMF | Rust |
//! |---|---|
//! | `DMF_HashTable_Write` | [`HashTable::write`] |
//! | `DMF_HashTable_Read` | [`HashTable::read`] |
//! | `DMF_HashTable_Find` / `DMF_HashTable_FindEx` | [`HashTable::find`] (the closure carries any context) |
//! | `DMF_HashTable_Enumerate` | [`HashTable::enumerate`] |
//!
//! All at `≤ DISPATCH_LEVEL`.
//!
//! ## Callbacks
//!
//! - `EVT_DMF_HashTable_HashCalculate`: [`HashTableConfig::hash`], a `fn(&[u8]) -> usize`.
//! - `EVT_DMF_HashTable_Find(Ex)`: the closure of [`HashTable::find`], given the key, the value
//!   slot (`maximum_value_length` bytes) and the value's length, both changeable.
//! - `EVT_DMF_HashTable_Enumerate`: the closure of [`HashTable::enumerate`]; `false` stops.
//!
//! Callbacks run under the Module's spin lock: they must not call this Module's Methods.
//!
//! ## Remarks
//!
//! - A key that is empty or longer than `maximum_key_length`, or a value longer than
//!   `maximum_value_length`, is `STATUS_INVALID_PARAMETER`. A new key in a full table is
//!   `STATUS_INSUFFICIENT_RESOURCES`; writing an existing key replaces its value (C DMF).
//! - Read: `STATUS_NOT_FOUND` for an absent key, `STATUS_BUFFER_TOO_SMALL` when the value does
//!   not fit the buffer.
//! - Find adds an absent key with an empty value before calling the closure (C DMF). A closure
//!   that sets a length beyond the slot leaves the value unchanged and Find returns
//!   `STATUS_INVALID_PARAMETER`.
//! - Keys and values live in one tagged pool block (`DmfH`), freed when the Module closes.
//!
//! ## Example
//!
//! ```
//! use dmf_core::module::NoParent;
//! use dmf_core::NtStatus;
//! use dmf_modules::hash_table::{HashTable, HashTableConfig};
//!
//! let machine = kmdf_sim::Machine::new();
//! let _on = machine.enter();
//! let table = HashTable::with(HashTableConfig {
//!     maximum_key_length: 8,
//!     maximum_value_length: 4,
//!     maximum_table_size: 16,
//!     hash: None,
//! })
//! .create(&NoParent)?;
//! table.write(b"speed", &[1, 2])?;
//! let mut value = [0; 4];
//! assert_eq!(table.read(b"speed", &mut value)?, 2);
//! table.find(b"hits", |_key, value, length| {
//!     value[0] += 1; // absent: added empty first
//!     *length = 1;
//! })?;
//! assert_eq!(table.read(b"hits", &mut value)?, 1);
//! assert_eq!(table.write(b"far too long", &[]), Err(NtStatus::INVALID_PARAMETER));
//! # Ok::<(), NtStatus>(())
//! ```
//!
//! ## Category
//!
//! Data Structures.

use alloc::vec::Vec;

use dmf_core::fallible::{try_vec_filled, VecExt};
use dmf_core::module::{Dispatched, ModuleCallbacks};
use dmf_core::platform::contract::{PlatformPool, PoolTag};
use dmf_core::platform::{Pool, PoolBuffer};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

/// The pool tag of the table's key and value storage.
pub const HASH_TABLE_POOL_TAG: PoolTag = PoolTag(*b"DmfH");

/// `DMF_CONFIG_HashTable`.
#[derive(Clone, Copy, Debug, Default)]
pub struct HashTableConfig {
    /// Maximum key length in bytes.
    pub maximum_key_length: u32,
    /// Maximum value length in bytes.
    pub maximum_value_length: u32,
    /// Maximum number of key-value pairs; not zero.
    pub maximum_table_size: u32,
    /// `EvtHashTableHashCalculate`: replaces the default FNV-1a hash.
    pub hash: Option<fn(&[u8]) -> usize>,
}

/// The default hash: 64-bit FNV-1a (truncated to `usize` on 32-bit targets).
pub fn fnv1a(key: &[u8]) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    #[allow(clippy::cast_possible_truncation)] // reason: a hash may be truncated
    let hash = hash as usize;
    hash
}

/// The `DMF_HashTable` Module. See the [module documentation](self).
#[dmf_module(crate = ::dmf_core, config = HashTableConfig, context = Context, open = Create, lock = Dispatch)]
pub struct HashTable;

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Entry {
    key_length: usize,
    value_length: usize,
    /// Next entry in the same bucket, or `NONE`.
    next: u32,
}

#[derive(Default)]
struct Context {
    /// Entry `i` owns bytes `i * stride ..`: key (`key_max`), then value (`value_max`).
    storage: Option<PoolBuffer>,
    entries: Vec<Entry>,
    buckets: Vec<u32>,
    key_max: usize,
    value_max: usize,
    capacity: usize,
}

impl Context {
    fn stride(&self) -> usize {
        self.key_max + self.value_max
    }

    fn bytes(&mut self, index: u32) -> NtResult<(&mut [u8], &mut [u8])> {
        let (stride, key_max) = (self.stride(), self.key_max);
        let storage = self
            .storage
            .as_mut()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let start = index as usize * stride;
        Ok(storage.as_mut()[start..start + stride].split_at_mut(key_max))
    }

    fn lookup(&mut self, bucket: usize, key: &[u8]) -> NtResult<Option<u32>> {
        let mut index = self.buckets[bucket];
        while index != NONE {
            let entry = self.entries[index as usize];
            if entry.key_length == key.len() && &self.bytes(index)?.0[..key.len()] == key {
                return Ok(Some(index));
            }
            index = entry.next;
        }
        Ok(None)
    }

    fn insert(&mut self, bucket: usize, key: &[u8]) -> NtResult<u32> {
        if self.entries.len() == self.capacity {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        let index = u32::try_from(self.entries.len()).map_err(|_| NtStatus::INTERNAL_ERROR)?;
        self.bytes(index)?.0[..key.len()].copy_from_slice(key);
        // Within the capacity reserved at open: no allocation.
        self.entries.try_push(Entry {
            key_length: key.len(),
            value_length: 0,
            next: self.buckets[bucket],
        })?;
        self.buckets[bucket] = index;
        Ok(index)
    }
}

/// A key must be 1 ..= `maximum_key_length` bytes.
fn check_key(key: &[u8], key_max: usize) -> NtResult<()> {
    if key.is_empty() || key.len() > key_max {
        Err(NtStatus::INVALID_PARAMETER)
    } else {
        Ok(())
    }
}

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for HashTable {
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        let config = *module.config();
        let to_usize = |v: u32| usize::try_from(v).map_err(|_| NtStatus::INVALID_PARAMETER);
        let (key_max, value_max, capacity) = (
            to_usize(config.maximum_key_length)?,
            to_usize(config.maximum_value_length)?,
            to_usize(config.maximum_table_size)?,
        );
        if key_max == 0 || value_max == 0 || capacity == 0 || capacity == NONE as usize {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let bytes = (key_max + value_max)
            .checked_mul(capacity)
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        let storage = Pool::allocate(HASH_TABLE_POOL_TAG, bytes)?;
        let mut entries = Vec::new();
        entries.try_reserve_exact_nt(capacity)?;
        let buckets = try_vec_filled(NONE, capacity)?;
        *module.lock() = Context {
            storage: Some(storage),
            entries,
            buckets,
            key_max,
            value_max,
            capacity,
        };
        Ok(())
    }

    fn close(module: &Dispatched<'_, Self>) {
        *module.lock() = Context::default(); // frees the storage
    }
}

impl HashTable {
    /// `DMF_HashTable_Write`: stores `value` under `key`, replacing an existing value.
    pub fn write(&self, key: &[u8], value: &[u8]) -> NtResult<()> {
        let module = self.enter()?;
        let hash = module.config().hash.unwrap_or(fnv1a);
        let mut context = module.lock();
        check_key(key, context.key_max)?;
        if value.len() > context.value_max {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let bucket = hash(key) % context.capacity;
        let index = match context.lookup(bucket, key)? {
            Some(index) => index,
            None => context.insert(bucket, key)?,
        };
        context.bytes(index)?.1[..value.len()].copy_from_slice(value);
        context.entries[index as usize].value_length = value.len();
        Ok(())
    }

    /// `DMF_HashTable_Read`: copies the value of `key` into `value`; returns its length.
    pub fn read(&self, key: &[u8], value: &mut [u8]) -> NtResult<usize> {
        let module = self.enter()?;
        let hash = module.config().hash.unwrap_or(fnv1a);
        let mut context = module.lock();
        check_key(key, context.key_max)?;
        let bucket = hash(key) % context.capacity;
        let index = context.lookup(bucket, key)?.ok_or(NtStatus::NOT_FOUND)?;
        let length = context.entries[index as usize].value_length;
        if value.len() < length {
            return Err(NtStatus::BUFFER_TOO_SMALL);
        }
        value[..length].copy_from_slice(&context.bytes(index)?.1[..length]);
        Ok(length)
    }

    /// `DMF_HashTable_Find` / `DMF_HashTable_FindEx`: calls `callback(key, value_slot,
    /// &mut value_length)` for `key`, adding it with an empty value first when absent. The
    /// callback may change the value and its length (at most `maximum_value_length`).
    pub fn find(
        &self,
        key: &[u8],
        callback: impl FnOnce(&[u8], &mut [u8], &mut usize),
    ) -> NtResult<()> {
        let module = self.enter()?;
        let hash = module.config().hash.unwrap_or(fnv1a);
        let mut context = module.lock();
        check_key(key, context.key_max)?;
        let bucket = hash(key) % context.capacity;
        let index = match context.lookup(bucket, key)? {
            Some(index) => index,
            None => context.insert(bucket, key)?,
        };
        let old = context.entries[index as usize].value_length;
        let mut length = old;
        let (stored_key, value) = context.bytes(index)?;
        callback(&stored_key[..key.len()], value, &mut length);
        if length > value.len() {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        context.entries[index as usize].value_length = length;
        Ok(())
    }

    /// `DMF_HashTable_Enumerate`: calls `callback(key, value)` for every pair until it returns
    /// `false`.
    pub fn enumerate(&self, mut callback: impl FnMut(&[u8], &[u8]) -> bool) -> NtResult<()> {
        let module = self.enter()?;
        let mut context = module.lock();
        for index in 0..context.entries.len() {
            let entry = context.entries[index];
            #[allow(clippy::cast_possible_truncation)] // reason: index < capacity < u32::MAX
            let (key, value) = context.bytes(index as u32)?;
            if !callback(&key[..entry.key_length], &value[..entry.value_length]) {
                break;
            }
        }
        Ok(())
    }
}
