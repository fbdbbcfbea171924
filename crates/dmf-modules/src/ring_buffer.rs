//! # DMF_RingBuffer
//!
//! ## Summary
//!
//! A classic ring buffer (MODS-RingBuffer): a fixed number of fixed-size items in one pool
//! allocation with read/write positions, first in first out.
//!
//! ## Configuration
//!
//! [`RingBufferConfig`]`{ item_count, item_size, mode }` (`DMF_CONFIG_RingBuffer`). Both sizes
//! must be non-zero (else creation fails with `STATUS_INVALID_PARAMETER`). [`RingBufferMode`]:
//! `FailIfFullOnWrite` (a write to a full ring fails) or `DeleteOldestIfFullOnWrite` (the oldest
//! item makes room; writes never fail for lack of space).
//!
//! ## Methods
//!
//! | C DMF | Rust |
//! |---|---|
//! | `DMF_RingBuffer_Write` | [`RingBuffer::write`] |
//! | `DMF_RingBuffer_SegmentsWrite` | [`RingBuffer::segments_write`] |
//! | `DMF_RingBuffer_Read` | [`RingBuffer::read`] |
//! | `DMF_RingBuffer_SegmentsRead` | [`RingBuffer::segments_read`] |
//! | `DMF_RingBuffer_ReadAll` | [`RingBuffer::read_all`] |
//! | `DMF_RingBuffer_Enumerate` | [`RingBuffer::enumerate`] |
//! | `DMF_RingBuffer_EnumerateToFindItem` | [`RingBuffer::enumerate_to_find_item`] |
//! | `DMF_RingBuffer_Reorder` | [`RingBuffer::reorder`] |
//! | `DMF_RingBuffer_TotalSizeGet` | [`RingBuffer::total_size_get`] |
//! | — | [`RingBuffer::items_count`] (the number of items stored) |
//!
//! All at `≤ DISPATCH_LEVEL`.
//!
//! ## Callbacks
//!
//! `EVT_DMF_RingBuffer_Enumeration` is a closure `FnMut(&mut [u8]) -> bool` (return `false` to
//! stop); it runs under the Module's spin lock, so it must not call this Module's Methods. The C
//! `Lock` parameter of Enumerate and Reorder is gone: they always lock.
//!
//! ## Remarks
//!
//! - Errors: an item of the wrong size → `STATUS_INVALID_PARAMETER`; full in
//!   `FailIfFullOnWrite` mode → `STATUS_INSUFFICIENT_RESOURCES`; read from an empty ring →
//!   `STATUS_NO_MORE_ENTRIES`; a target buffer too small → `STATUS_BUFFER_TOO_SMALL`; a closed
//!   Module → `STATUS_INVALID_DEVICE_STATE`. A failed call changes nothing.
//! - `read_all` copies every item, oldest first, without removing them.
//! - The storage is tagged pool (`DmfR`), allocated in Open and freed in Close.
//!
//! ## Example
//!
//! ```
//! use dmf_core::module::NoParent;
//! use dmf_core::NtStatus;
//! use dmf_modules::ring_buffer::{RingBuffer, RingBufferConfig, RingBufferMode};
//!
//! let machine = kmdf_sim::Machine::new();
//! let _on = machine.enter();
//! let ring = RingBuffer::with(RingBufferConfig {
//!     item_count: 2,
//!     item_size: 4,
//!     mode: RingBufferMode::DeleteOldestIfFullOnWrite,
//! })
//! .create(&NoParent)?;
//! ring.write(b"one.")?;
//! ring.write(b"two.")?;
//! ring.write(b"three")
//!     .expect_err("an item has exactly item_size bytes");
//! ring.write(b"thr.")?; // full: "one." makes room
//! let mut item = [0; 4];
//! ring.read(&mut item)?;
//! assert_eq!(&item, b"two.");
//! assert_eq!(ring.total_size_get()?, 8);
//! drop(ring);
//! assert!(machine.pool().outstanding().is_empty());
//! # Ok::<(), NtStatus>(())
//! ```
//!
//! ## Category
//!
//! Buffers.

use dmf_core::module::{Dispatched, ModuleCallbacks};
use dmf_core::platform::contract::{PlatformPool, PoolTag};
use dmf_core::platform::{Pool, PoolBuffer};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

/// The pool tag of the ring's storage.
pub const RING_BUFFER_POOL_TAG: PoolTag = PoolTag(*b"DmfR");

/// `RingBuffer_ModeType`: what a write to a full ring does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RingBufferMode {
    /// `RingBuffer_Mode_FailIfFullOnWrite`: the write fails until an item is read.
    #[default]
    FailIfFullOnWrite,
    /// `RingBuffer_Mode_DeleteOldestIfFullOnWrite`: the oldest item is discarded.
    DeleteOldestIfFullOnWrite,
}

/// `DMF_CONFIG_RingBuffer`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingBufferConfig {
    /// Maximum number of items stored.
    pub item_count: u32,
    /// Size in bytes of every item.
    pub item_size: u32,
    /// Behaviour when full.
    pub mode: RingBufferMode,
}

/// The `DMF_RingBuffer` Module. See the [module documentation](self).
#[dmf_module(crate = ::dmf_core, config = RingBufferConfig, context = Context, open = Create, lock = Dispatch)]
pub struct RingBuffer;

#[derive(Default)]
struct Context {
    storage: Option<PoolBuffer>,
    item_size: usize,
    item_count: usize,
    /// Index of the oldest item.
    read: usize,
    /// Number of items stored.
    count: usize,
}

impl Context {
    fn slot(&mut self, index: usize) -> NtResult<&mut [u8]> {
        let size = self.item_size;
        let storage = self
            .storage
            .as_mut()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let start = (index % self.item_count) * size;
        Ok(&mut storage.as_mut()[start..start + size])
    }

    /// The slot for a new item, making room per the mode.
    fn slot_for_write(&mut self, mode: RingBufferMode) -> NtResult<&mut [u8]> {
        if self.count == self.item_count {
            match mode {
                RingBufferMode::FailIfFullOnWrite => return Err(NtStatus::INSUFFICIENT_RESOURCES),
                RingBufferMode::DeleteOldestIfFullOnWrite => {
                    self.read = (self.read + 1) % self.item_count;
                    self.count -= 1;
                }
            }
        }
        let index = self.read + self.count;
        self.count += 1;
        self.slot(index)
    }

    fn pop(&mut self) {
        self.read = (self.read + 1) % self.item_count;
        self.count -= 1;
    }
}

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for RingBuffer {
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        let config = *module.config();
        let item_size =
            usize::try_from(config.item_size).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let item_count =
            usize::try_from(config.item_count).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        if item_size == 0 || item_count == 0 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let total = item_size
            .checked_mul(item_count)
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        let storage = Pool::allocate(RING_BUFFER_POOL_TAG, total)?;
        *module.lock() = Context {
            storage: Some(storage),
            item_size,
            item_count,
            read: 0,
            count: 0,
        };
        Ok(())
    }

    fn close(module: &Dispatched<'_, Self>) {
        *module.lock() = Context::default(); // frees the storage
    }
}

impl RingBuffer {
    /// `DMF_RingBuffer_Write`: appends `item` (exactly `item_size` bytes) as the newest item.
    pub fn write(&self, item: &[u8]) -> NtResult<()> {
        let module = self.enter()?;
        let mode = module.config().mode;
        let mut context = module.lock();
        if item.len() != context.item_size {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        context.slot_for_write(mode)?.copy_from_slice(item);
        Ok(())
    }

    /// `DMF_RingBuffer_SegmentsWrite`: appends one item assembled from `(source, offset)` pairs:
    /// each source is copied to `offset` within the new item; bytes no segment covers are zero.
    /// A segment beyond the item is `STATUS_INVALID_PARAMETER`.
    pub fn segments_write(&self, segments: &[(&[u8], usize)]) -> NtResult<()> {
        let module = self.enter()?;
        let mode = module.config().mode;
        let mut context = module.lock();
        let size = context.item_size;
        if segments
            .iter()
            .any(|(s, offset)| offset.checked_add(s.len()).is_none_or(|end| end > size))
        {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let slot = context.slot_for_write(mode)?;
        slot.fill(0);
        for (source, offset) in segments {
            slot[*offset..*offset + source.len()].copy_from_slice(source);
        }
        Ok(())
    }

    /// `DMF_RingBuffer_Read`: moves the oldest item into `target[..item_size]`.
    pub fn read(&self, target: &mut [u8]) -> NtResult<()> {
        let module = self.enter()?;
        let mut context = module.lock();
        let size = context.item_size;
        if target.len() < size {
            return Err(NtStatus::BUFFER_TOO_SMALL);
        }
        if context.count == 0 {
            return Err(NtStatus::NO_MORE_ENTRIES);
        }
        let read = context.read;
        target[..size].copy_from_slice(context.slot(read)?);
        context.pop();
        Ok(())
    }

    /// `DMF_RingBuffer_SegmentsRead`: moves the oldest item out in pieces: for each
    /// `(target, offset)`, `target` receives the item's bytes from `offset` on. A segment beyond
    /// the item is `STATUS_INVALID_PARAMETER`.
    pub fn segments_read(&self, segments: &mut [(&mut [u8], usize)]) -> NtResult<()> {
        let module = self.enter()?;
        let mut context = module.lock();
        let size = context.item_size;
        if segments
            .iter()
            .any(|(t, offset)| offset.checked_add(t.len()).is_none_or(|end| end > size))
        {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        if context.count == 0 {
            return Err(NtStatus::NO_MORE_ENTRIES);
        }
        let read = context.read;
        let slot = context.slot(read)?;
        for (target, offset) in segments.iter_mut() {
            let len = target.len();
            target.copy_from_slice(&slot[*offset..*offset + len]);
        }
        context.pop();
        Ok(())
    }

    /// `DMF_RingBuffer_ReadAll`: copies every item, oldest first, into `target` without removing
    /// them; returns the bytes written. `STATUS_BUFFER_TOO_SMALL` if they do not all fit.
    pub fn read_all(&self, target: &mut [u8]) -> NtResult<usize> {
        let module = self.enter()?;
        let mut context = module.lock();
        let size = context.item_size;
        let bytes = context.count * size;
        if target.len() < bytes {
            return Err(NtStatus::BUFFER_TOO_SMALL);
        }
        for i in 0..context.count {
            let index = context.read + i;
            target[i * size..(i + 1) * size].copy_from_slice(context.slot(index)?);
        }
        Ok(bytes)
    }

    /// `DMF_RingBuffer_Enumerate`: calls `callback` with every item, oldest first, until it
    /// returns `false`. The callback may change the item.
    pub fn enumerate(&self, mut callback: impl FnMut(&mut [u8]) -> bool) -> NtResult<()> {
        let module = self.enter()?;
        let mut context = module.lock();
        for i in 0..context.count {
            let index = context.read + i;
            if !callback(context.slot(index)?) {
                break;
            }
        }
        Ok(())
    }

    /// `DMF_RingBuffer_EnumerateToFindItem`: like [`enumerate`](Self::enumerate), but only for
    /// the items whose first `item.len()` bytes equal `item`. An `item` longer than `item_size`
    /// (or empty) is `STATUS_INVALID_PARAMETER`.
    pub fn enumerate_to_find_item(
        &self,
        item: &[u8],
        mut callback: impl FnMut(&mut [u8]) -> bool,
    ) -> NtResult<()> {
        let module = self.enter()?;
        let mut context = module.lock();
        if item.is_empty() || item.len() > context.item_size {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        for i in 0..context.count {
            let index = context.read + i;
            let slot = context.slot(index)?;
            if slot.starts_with(item) && !callback(slot) {
                break;
            }
        }
        Ok(())
    }

    /// `DMF_RingBuffer_Reorder`: moves the items so that the oldest is at the start of the
    /// storage (for a client that writes the raw storage out in order, e.g. a dump).
    pub fn reorder(&self) -> NtResult<()> {
        let module = self.enter()?;
        let mut context = module.lock();
        let shift = context.read * context.item_size;
        context
            .storage
            .as_mut()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?
            .as_mut()
            .rotate_left(shift);
        context.read = 0;
        Ok(())
    }

    /// `DMF_RingBuffer_TotalSizeGet`: `item_count * item_size` in bytes.
    pub fn total_size_get(&self) -> NtResult<usize> {
        let module = self.enter()?;
        let context = module.lock();
        Ok(context.item_count * context.item_size)
    }

    /// The number of items stored now.
    pub fn items_count(&self) -> NtResult<usize> {
        let module = self.enter()?;
        let count = module.lock().count;
        Ok(count)
    }
}
