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
//! stop); it runs under the ring's spin lock (at DISPATCH_LEVEL), so it must not call this
//! Module's Methods. The C `Lock` parameter of Enumerate and Reorder is gone: they always lock.
//!
//! ## Remarks
//!
//! - Errors: an item of the wrong size → `STATUS_INVALID_PARAMETER`; full in
//!   `FailIfFullOnWrite` mode → `STATUS_INSUFFICIENT_RESOURCES`; read from an empty ring →
//!   `STATUS_NO_MORE_ENTRIES`; a target buffer too small → `STATUS_BUFFER_TOO_SMALL`; a closed
//!   Module → `STATUS_INVALID_DEVICE_STATE`. A failed call changes nothing.
//! - `read_all` copies every item, oldest first, without removing them.
//! - The storage is tagged pool (`DmfR`), allocated in Open and freed in Close.
//! - **The Methods are lock-free Methods** (`enter_lock_free()`: no rundown reference, so no
//!   two locked read-modify-writes per call). The ring — storage, positions and a `closed` flag —
//!   is the Module's shared state, behind a spin lock of its own (`WDFSPINLOCK`: DISPATCH_LEVEL
//!   while held, on the kernel as on the simulator). Every Method takes that lock and is refused
//!   with `STATUS_INVALID_DEVICE_STATE` if `closed` is set; Open allocates the storage and clears
//!   `closed` under the lock, Close sets `closed` and takes the storage out under the same lock
//!   (then frees it). So Close shuts the Methods out by itself, which is what a lock-free Method
//!   requires: a call racing Close either completes before Close takes the lock or is refused
//!   after it, never half-done, and none touches the storage once Close has returned. A Method
//!   added to this Module follows the same rule: everything it does happens under the ring's
//!   lock, after the `closed` check.
//! - As C DMF's Methods, they still work in the client's PreClose callback: a lock-free Method is
//!   admitted while a guarded one would be (open, or closing before Close's rundown wait).
//! - `write`, `read` and `items_count` are `#[inline]`: with the Module's entry and the spin
//!   lock's uncontended path inlined as well, a call compiles into the caller as the state check,
//!   the lock, the ring's few loads and stores and the copy, with no call in between.
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

use dmf_core::module::{Dispatched, ModuleCallbacks, ModuleShared};
use dmf_core::platform::contract::{PlatformPool, PoolTag};
use dmf_core::platform::{Pool, PoolBuffer};
use dmf_core::sync::{LockKind, ModuleLock};
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
#[dmf_module(crate = ::dmf_core, config = RingBufferConfig, shared = Shared, open = Create, lock = Dispatch)]
pub struct RingBuffer;

/// The Module's shared state (kept from create to destroy): the ring behind its spin lock.
struct Shared {
    ring: ModuleLock<Ring>,
}

impl ModuleShared<RingBufferConfig> for Shared {
    fn new(_config: &RingBufferConfig) -> NtResult<Self> {
        Ok(Shared {
            ring: ModuleLock::new(LockKind::Spin, Ring::default())?,
        })
    }
}

/// The ring, under its spin lock. `closed` (and no storage) outside Open … Close.
///
/// Positions are byte offsets into the storage (multiples of `item_size`, below `total`), so a
/// write or a read finds its slot with an add and a compare, no multiplication or division.
struct Ring {
    /// Set from creation until Open and again by Close: every Method is refused.
    closed: bool,
    /// The config's mode, kept with the positions so that a write needs only the lock.
    mode: RingBufferMode,
    storage: Option<PoolBuffer>,
    item_size: usize,
    item_count: usize,
    /// `item_count * item_size`: the storage's length in bytes.
    total: usize,
    /// Offset of the oldest item.
    read: usize,
    /// Offset of the slot the next item is written to.
    write: usize,
    /// Number of items stored (`<= item_count`).
    count: usize,
}

impl Default for Ring {
    fn default() -> Self {
        Ring {
            closed: true,
            mode: RingBufferMode::default(),
            storage: None,
            item_size: 0,
            item_count: 0,
            total: 0,
            read: 0,
            write: 0,
            count: 0,
        }
    }
}

impl Ring {
    /// The offset one item after `offset` (a slot's offset), wrapping at the end.
    #[inline]
    fn next(&self, offset: usize) -> usize {
        let next = offset + self.item_size;
        if next >= self.total {
            0
        } else {
            next
        }
    }

    /// The item at byte offset `at` (a slot's offset).
    #[inline]
    fn at(&mut self, at: usize) -> NtResult<&mut [u8]> {
        let end = at + self.item_size;
        self.storage
            .as_mut()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?
            .as_mut()
            .get_mut(at..end)
            .ok_or(NtStatus::INTERNAL_ERROR)
    }

    /// The item `index` places after the oldest (`index < count`).
    fn item(&mut self, index: usize) -> NtResult<&mut [u8]> {
        let mut at = self.read + index * self.item_size;
        if at >= self.total {
            at -= self.total;
        }
        self.at(at)
    }

    /// The slot for a new item, making room per the mode.
    #[inline]
    fn slot_for_write(&mut self) -> NtResult<&mut [u8]> {
        if self.count == self.item_count {
            match self.mode {
                RingBufferMode::FailIfFullOnWrite => return Err(NtStatus::INSUFFICIENT_RESOURCES),
                RingBufferMode::DeleteOldestIfFullOnWrite => self.pop(),
            }
        }
        let at = self.write;
        self.write = self.next(at);
        self.count += 1;
        self.at(at)
    }

    /// Drops the oldest item (`count > 0`).
    #[inline]
    fn pop(&mut self) {
        self.read = self.next(self.read);
        self.count -= 1;
    }
}

/// `target.copy_from_slice(source)` (same lengths), inlined for items of 8 to 64 bytes: two
/// fixed-size copies, of the first and the last `N` bytes (overlapping in the middle), instead
/// of a call to the C library's `memmove` for every item.
#[inline]
fn copy_item(target: &mut [u8], source: &[u8]) {
    let copied = match target.len() {
        _ if target.len() != source.len() => false,
        8..=16 => copy_ends::<8>(target, source),
        17..=32 => copy_ends::<16>(target, source),
        33..=64 => copy_ends::<32>(target, source),
        _ => false,
    };
    if !copied {
        target.copy_from_slice(source);
    }
}

/// Copies the first and the last `N` bytes of `source` (`N <= len <= 2 * N`, the same length as
/// `target`), which together cover it; `false` if the lengths do not allow it.
#[inline]
fn copy_ends<const N: usize>(target: &mut [u8], source: &[u8]) -> bool {
    let len = source.len();
    let Some(tail_at) = len.checked_sub(N) else {
        return false;
    };
    let (Some(Ok(head)), Some(Ok(tail))) = (
        source.get(..N).map(<[u8; N]>::try_from),
        source.get(tail_at..).map(<[u8; N]>::try_from),
    ) else {
        return false;
    };
    if target.len() != len {
        return false;
    }
    if let Some(t) = target.get_mut(..N) {
        t.copy_from_slice(&head);
    }
    if let Some(t) = target.get_mut(tail_at..) {
        t.copy_from_slice(&tail);
    }
    true
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
        *module.shared().ring.lock() = Ring {
            closed: false,
            mode: config.mode,
            storage: Some(storage),
            item_size,
            item_count,
            total,
            read: 0,
            write: 0,
            count: 0,
        };
        Ok(())
    }

    fn close(module: &Dispatched<'_, Self>) {
        // Under the ring's lock: from here every Method is refused (the Methods' only guard).
        let closed = core::mem::take(&mut *module.shared().ring.lock());
        drop(closed); // frees the storage, after the lock is released
    }
}

impl RingBuffer {
    /// A Method's body (a lock-free Method, see the Remarks): `f` runs on the ring under its
    /// spin lock, or the call is `STATUS_INVALID_DEVICE_STATE` if the Module is not open or Close
    /// has shut the ring. The lock is released in one place, after `f`.
    #[allow(
        clippy::inline_always,
        reason = "every Method's entry and lock: as calls they cost more than a 10 ns Method's work"
    )]
    #[inline(always)]
    fn with_ring<R>(&self, f: impl FnOnce(&mut Ring) -> NtResult<R>) -> NtResult<R> {
        let mut ring = self.enter_lock_free()?.ring.lock();
        let result = if ring.closed {
            Err(NtStatus::INVALID_DEVICE_STATE)
        } else {
            f(&mut ring)
        };
        drop(ring);
        result
    }

    /// `DMF_RingBuffer_Write`: appends `item` (exactly `item_size` bytes) as the newest item.
    #[inline]
    pub fn write(&self, item: &[u8]) -> NtResult<()> {
        self.with_ring(|ring| {
            if item.len() != ring.item_size {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            copy_item(ring.slot_for_write()?, item);
            Ok(())
        })
    }

    /// `DMF_RingBuffer_SegmentsWrite`: appends one item assembled from `(source, offset)` pairs:
    /// each source is copied to `offset` within the new item; bytes no segment covers are zero.
    /// A segment beyond the item is `STATUS_INVALID_PARAMETER`.
    pub fn segments_write(&self, segments: &[(&[u8], usize)]) -> NtResult<()> {
        self.with_ring(|ring| {
            let size = ring.item_size;
            if segments
                .iter()
                .any(|(s, offset)| offset.checked_add(s.len()).is_none_or(|end| end > size))
            {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            let slot = ring.slot_for_write()?;
            slot.fill(0);
            for (source, offset) in segments {
                slot[*offset..*offset + source.len()].copy_from_slice(source);
            }
            Ok(())
        })
    }

    /// `DMF_RingBuffer_Read`: moves the oldest item into `target[..item_size]`.
    #[inline]
    pub fn read(&self, target: &mut [u8]) -> NtResult<()> {
        self.with_ring(|ring| {
            let target = target
                .get_mut(..ring.item_size)
                .ok_or(NtStatus::BUFFER_TOO_SMALL)?;
            if ring.count == 0 {
                return Err(NtStatus::NO_MORE_ENTRIES);
            }
            copy_item(target, ring.at(ring.read)?);
            ring.pop();
            Ok(())
        })
    }

    /// `DMF_RingBuffer_SegmentsRead`: moves the oldest item out in pieces: for each
    /// `(target, offset)`, `target` receives the item's bytes from `offset` on. A segment beyond
    /// the item is `STATUS_INVALID_PARAMETER`.
    pub fn segments_read(&self, segments: &mut [(&mut [u8], usize)]) -> NtResult<()> {
        self.with_ring(|ring| {
            let size = ring.item_size;
            if segments
                .iter()
                .any(|(t, offset)| offset.checked_add(t.len()).is_none_or(|end| end > size))
            {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            if ring.count == 0 {
                return Err(NtStatus::NO_MORE_ENTRIES);
            }
            let slot = ring.at(ring.read)?;
            for (target, offset) in segments.iter_mut() {
                let len = target.len();
                target.copy_from_slice(&slot[*offset..*offset + len]);
            }
            ring.pop();
            Ok(())
        })
    }

    /// `DMF_RingBuffer_ReadAll`: copies every item, oldest first, into `target` without removing
    /// them; returns the bytes written. `STATUS_BUFFER_TOO_SMALL` if they do not all fit.
    pub fn read_all(&self, target: &mut [u8]) -> NtResult<usize> {
        self.with_ring(|ring| {
            let size = ring.item_size;
            let bytes = ring.count * size;
            let target = target.get_mut(..bytes).ok_or(NtStatus::BUFFER_TOO_SMALL)?;
            for (i, out) in target.chunks_exact_mut(size).enumerate() {
                out.copy_from_slice(ring.item(i)?);
            }
            Ok(bytes)
        })
    }

    /// `DMF_RingBuffer_Enumerate`: calls `callback` with every item, oldest first, until it
    /// returns `false`. The callback may change the item.
    pub fn enumerate(&self, mut callback: impl FnMut(&mut [u8]) -> bool) -> NtResult<()> {
        self.with_ring(|ring| {
            for i in 0..ring.count {
                if !callback(ring.item(i)?) {
                    break;
                }
            }
            Ok(())
        })
    }

    /// `DMF_RingBuffer_EnumerateToFindItem`: like [`enumerate`](Self::enumerate), but only for
    /// the items whose first `item.len()` bytes equal `item`. An `item` longer than `item_size`
    /// (or empty) is `STATUS_INVALID_PARAMETER`.
    pub fn enumerate_to_find_item(
        &self,
        item: &[u8],
        mut callback: impl FnMut(&mut [u8]) -> bool,
    ) -> NtResult<()> {
        self.with_ring(|ring| {
            if item.is_empty() || item.len() > ring.item_size {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            for i in 0..ring.count {
                let slot = ring.item(i)?;
                if slot.starts_with(item) && !callback(slot) {
                    break;
                }
            }
            Ok(())
        })
    }

    /// `DMF_RingBuffer_Reorder`: moves the items so that the oldest is at the start of the
    /// storage (for a client that writes the raw storage out in order, e.g. a dump).
    pub fn reorder(&self) -> NtResult<()> {
        self.with_ring(|ring| {
            let shift = ring.read;
            ring.storage
                .as_mut()
                .ok_or(NtStatus::INVALID_DEVICE_STATE)?
                .as_mut()
                .rotate_left(shift);
            ring.read = 0;
            ring.write = if ring.count == ring.item_count {
                0
            } else {
                ring.count * ring.item_size
            };
            Ok(())
        })
    }

    /// `DMF_RingBuffer_TotalSizeGet`: `item_count * item_size` in bytes.
    pub fn total_size_get(&self) -> NtResult<usize> {
        self.with_ring(|ring| Ok(ring.total))
    }

    /// The number of items stored now.
    #[inline]
    pub fn items_count(&self) -> NtResult<usize> {
        self.with_ring(|ring| Ok(ring.count))
    }
}
