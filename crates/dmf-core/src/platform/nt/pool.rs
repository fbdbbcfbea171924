//! Tagged pool memory: [`NtPool`], [`NtPoolBlock`] and the [`NtPoolAllocator`] `GlobalAlloc`.
//!
//! All allocations come from `ExAllocatePool2(POOL_FLAG_NON_PAGED, …)`: non-paged, non-executable
//! pool (`NonPagedPoolNx`), usable at `<= DISPATCH_LEVEL`, and freed with `ExFreePoolWithTag`
//! under the same tag (a mismatched tag bug-checks when the pool is tag-protected). Pool blocks on
//! x64 are 16-byte aligned (`MEMORY_ALLOCATION_ALIGNMENT`); the allocator over-allocates for
//! stricter alignments.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use core::ptr::NonNull;

use super::ffi;
use crate::fallible::reservation::{Owner, Reservations};
use crate::platform::contract::{PlatformPool, PoolTag};
use crate::status::{NtResult, NtStatus};

/// Alignment of every x64 pool block (`MEMORY_ALLOCATION_ALIGNMENT`).
pub const POOL_ALIGNMENT: usize = 16;

/// The `ULONG` value of a pool tag, as C's multi-character literal gives it: the contract writes
/// `'BfmD'` as `PoolTag(*b"DmfB")` (the bytes as they appear in memory and in pool dumps), which
/// is `0x4266_6D44` read little-endian.
pub const fn pool_tag_value(tag: PoolTag) -> u32 {
    u32::from_le_bytes(tag.0)
}

/// Tagged non-paged pool. Maps to `ExAllocatePool2` / `ExFreePoolWithTag`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NtPool;

impl NtPool {
    /// Allocates `size` zeroed bytes of non-paged pool under `tag`. Maps to
    /// `ExAllocatePool2(POOL_FLAG_NON_PAGED, size, tag)` (which zeroes); the block is freed with
    /// `ExFreePoolWithTag(p, tag)` when dropped. `STATUS_INSUFFICIENT_RESOURCES` when the pool
    /// cannot. A zero `size` still allocates one byte, so every block is a real pool block.
    /// `<= DISPATCH_LEVEL`.
    pub fn allocate(tag: PoolTag, size: usize) -> NtResult<NtPoolBlock> {
        let tag = pool_tag_value(tag);
        // SAFETY: plain FFI call with valid flags; it returns null or a fresh block of at least
        // `max(size, 1)` bytes that nobody else references.
        let raw = unsafe { ffi::ExAllocatePool2(ffi::POOL_FLAG_NON_PAGED, size.max(1), tag) };
        let ptr = NonNull::new(raw.cast::<u8>()).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        Ok(NtPoolBlock {
            ptr,
            len: size,
            tag,
        })
    }
}

impl PlatformPool for NtPool {
    type Block = NtPoolBlock;

    /// [`NtPool::allocate`].
    fn allocate(tag: PoolTag, size: usize) -> NtResult<NtPoolBlock> {
        NtPool::allocate(tag, size)
    }
}

/// An owned, zero-initialised block of non-paged pool; `ExFreePoolWithTag` frees it on drop.
pub struct NtPoolBlock {
    // INVARIANT: points to a live pool block of at least `max(len, 1)` bytes allocated with `tag`,
    // owned by this value alone; its bytes are initialised (ExAllocatePool2 zeroed them).
    ptr: NonNull<u8>,
    len: usize,
    tag: u32,
}

// SAFETY: the block is plain owned memory (like `Box<[u8]>`); non-paged pool may be used and freed
// from any thread.
unsafe impl Send for NtPoolBlock {}
// SAFETY: `&NtPoolBlock` only hands out `&[u8]`; mutation needs `&mut`.
unsafe impl Sync for NtPoolBlock {}

impl NtPoolBlock {
    /// Size in bytes, as requested.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the block was requested with size 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tag the block was allocated (and will be freed) with.
    pub fn tag(&self) -> PoolTag {
        PoolTag(self.tag.to_le_bytes())
    }

    /// The start of the block; valid for `len` bytes (at least one) while `self` lives, 16-byte
    /// aligned. Writing through it while a `&[u8]` from [`as_ref`](AsRef::as_ref) is alive is
    /// undefined behaviour, as for any raw pointer into owned memory.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl AsRef<[u8]> for NtPoolBlock {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: by the invariant the block holds `len` initialised bytes we own; the shared
        // borrow of `self` keeps them alive and unmutated for the slice's lifetime.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl AsMut<[u8]> for NtPoolBlock {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `as_ref`, and `&mut self` makes the slice the only access.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for NtPoolBlock {
    fn drop(&mut self) {
        // SAFETY: by the invariant `ptr` is our pool block, allocated with `tag` and not freed yet;
        // nothing borrows it any more.
        unsafe { ffi::ExFreePoolWithTag(self.ptr.as_ptr().cast::<c_void>(), self.tag) }
    }
}

impl core::fmt::Debug for NtPoolBlock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NtPoolBlock")
            .field("len", &self.len)
            .field("tag", &self.tag())
            .finish_non_exhaustive()
    }
}

/// A [`GlobalAlloc`] on tagged non-paged pool, for `alloc` (`Box`, `Vec`, …) in a kernel image:
///
/// ```ignore
/// #[global_allocator]
/// static ALLOCATOR: NtPoolAllocator = NtPoolAllocator::new(PoolTag(*b"Drv0"));
/// ```
///
/// Maps to `ExAllocatePool2(POOL_FLAG_NON_PAGED [| POOL_FLAG_UNINITIALIZED], …)` and
/// `ExFreePoolWithTag`. Alignments up to 16 are served directly; larger ones over-allocate by the
/// alignment and keep the pool block's address in the word just below the aligned pointer. Every
/// `alloc`, `Box::new` or `Vec` growth is then a pool call, legal at `<= DISPATCH_LEVEL`.
#[derive(Clone, Copy, Debug)]
pub struct NtPoolAllocator {
    tag: u32,
}

impl NtPoolAllocator {
    /// An allocator that tags every block with `tag`.
    pub const fn new(tag: PoolTag) -> Self {
        Self {
            tag: pool_tag_value(tag),
        }
    }

    /// Allocates for `layout` with `flags`; null on failure.
    fn allocate(&self, layout: Layout, flags: u64) -> *mut u8 {
        let size = layout.size().max(1);
        if layout.align() <= POOL_ALIGNMENT {
            // SAFETY: plain FFI call; returns null or a fresh 16-byte-aligned block of `size`.
            return unsafe { ffi::ExAllocatePool2(flags, size, self.tag) }.cast::<u8>();
        }
        let align = layout.align();
        let Some(total) = size.checked_add(align) else {
            return core::ptr::null_mut();
        };
        // SAFETY: plain FFI call; returns null or a fresh 16-byte-aligned block of `total`.
        let raw = unsafe { ffi::ExAllocatePool2(flags, total, self.tag) }.cast::<u8>();
        if raw.is_null() {
            return raw;
        }
        // `raw` is 16-aligned and `align` a power of two > 16, so the offset is in [16, align]:
        // room for the header word below the result, and `offset + size <= total`.
        let offset = align - (raw.addr() & (align - 1));
        // SAFETY: `offset <= align`, so the result and the `size` bytes after it stay in the block.
        let aligned = unsafe { raw.add(offset) };
        // SAFETY: `offset >= 16`, so the word below `aligned` is inside the block and 8-aligned
        // (`aligned` is `align`-aligned); we own the block.
        unsafe { header_slot(aligned).write(raw) };
        aligned
    }
}

/// The word just below an over-aligned allocation, where [`NtPoolAllocator`] keeps the pool
/// block's address.
#[allow(
    clippy::cast_ptr_alignment,
    reason = "only called on pointers aligned to more than 16 bytes, so the slot below is 8-aligned"
)]
fn header_slot(aligned: *mut u8) -> *mut *mut u8 {
    aligned.cast::<*mut u8>().wrapping_sub(1)
}

// SAFETY: `alloc`/`alloc_zeroed` return null or a block of at least `layout.size()` bytes aligned
// to `layout.align()` (pool blocks are 16-aligned; larger alignments are produced by offsetting
// inside an over-sized block), never handed out twice; `dealloc` frees exactly the pool block
// `alloc` obtained, with the same tag. ExAllocatePool2/ExFreePoolWithTag are thread-safe. A block
// `alloc` hands out from the reservations was allocated by this same allocator (through
// `alloc::alloc::alloc` in `reserve_and_run`) with exactly the requested layout, and is taken out of
// the table as it is handed out, so it too is handed out once and freed by `dealloc` as usual.
unsafe impl GlobalAlloc for NtPoolAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if RESERVATIONS.pending() {
            if let Some(block) = RESERVATIONS.take(current_owner(), layout) {
                return block.as_ptr();
            }
        }
        self.allocate(
            layout,
            ffi::POOL_FLAG_NON_PAGED | ffi::POOL_FLAG_UNINITIALIZED,
        )
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.allocate(layout, ffi::POOL_FLAG_NON_PAGED)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let block = if layout.align() <= POOL_ALIGNMENT {
            ptr
        } else {
            // SAFETY: `ptr` came from `allocate` with this (over-aligned) layout, which stored the
            // pool block's address in the word just below it.
            unsafe { header_slot(ptr).read() }
        };
        // SAFETY: `block` is the pool block `allocate` got from ExAllocatePool2 with `self.tag`;
        // GlobalAlloc's contract says it is freed once.
        unsafe { ffi::ExFreePoolWithTag(block.cast::<c_void>(), self.tag) }
    }
}

/// The reservations of the image's [`NtPoolAllocator`]: blocks `dmf_core::fallible::try_arc`
/// allocated (fallibly) for the `Arc::new` it is about to run on this processor.
static RESERVATIONS: Reservations = Reservations::new();

/// The reservation owner for the current processor: its system-wide index + 1. Meaningful at
/// `>= DISPATCH_LEVEL`, where the thread cannot move to another processor.
fn current_owner() -> Owner {
    // SAFETY: plain FFI call; a null `PROCESSOR_NUMBER` pointer is allowed.
    let index = unsafe { ffi::KeGetCurrentProcessorNumberEx(core::ptr::null_mut()) };
    // `u32` to `usize` is lossless on x64, and `index + 1` cannot be zero.
    Owner::new(index as usize + 1).unwrap_or(Owner::MIN)
}

/// Runs `make`, which allocates one block of `layout` through the global allocator, so that this
/// allocation cannot fail: the block is allocated first — `STATUS_INSUFFICIENT_RESOURCES` if the
/// pool refuses — and reserved for this processor; [`NtPoolAllocator`] hands it to the next
/// allocation of exactly `layout` made here. `make` runs at `DISPATCH_LEVEL` (so no other thread or
/// DPC can run on the processor and take the block); the IRQL is restored afterwards. If `make`
/// did not take the block (its allocation had another layout) the block is freed.
///
/// The global allocator must be an [`NtPoolAllocator`] (what `dmf::driver!` images declare);
/// with another one the reservation goes unused and `make`'s allocation is an ordinary one.
/// Callable at `<= DISPATCH_LEVEL`. This is how `dmf_core::fallible::try_arc` works in a kernel
/// image.
///
/// # Errors
/// `STATUS_INSUFFICIENT_RESOURCES` when the pool refuses the block (then `make` does not run).
pub fn reserve_and_run<R>(layout: Layout, make: impl FnOnce() -> R) -> NtResult<R> {
    if layout.size() == 0 {
        return Ok(make());
    }
    // SAFETY: `layout` has a non-zero size.
    let block = NonNull::new(unsafe { alloc::alloc::alloc(layout) })
        .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
    // SAFETY: plain FFI call; callers run at `<= DISPATCH_LEVEL` (every allocation does).
    let previous = unsafe { ffi::KeRaiseIrqlToDpcLevel() };
    let ticket = RESERVATIONS.put(current_owner(), block, layout);
    let result = make();
    let unused = RESERVATIONS.reclaim(ticket);
    // SAFETY: back to the IRQL `KeRaiseIrqlToDpcLevel` returned, on the same processor.
    unsafe { ffi::KeLowerIrql(previous) };
    if let Some(unused) = unused {
        // SAFETY: `unused` is the block allocated above with `layout`, never handed out.
        unsafe { alloc::alloc::dealloc(unused.as_ptr(), layout) };
    }
    Ok(result)
}
