//! Stand-in for `wdk-alloc` 0.4.2, for the kmdf check on Linux only: `WdkAllocator`, a
//! `GlobalAlloc` on non-paged pool (`ExAllocatePool2` with the tag `rust`, `ExFreePool`).
#![no_std]

use core::alloc::{GlobalAlloc, Layout};

use wdk_sys::ntddk::{ExAllocatePool2, ExFreePool};
use wdk_sys::{POOL_FLAG_NON_PAGED, SIZE_T, ULONG};

/// The kernel pool as Rust's global allocator.
pub struct WdkAllocator;

const RUST_TAG: ULONG = u32::from_ne_bytes(*b"rust");

// SAFETY: ExAllocatePool2 returns non-paged memory aligned to 16 bytes (x64 pool alignment) or
// null, and ExFreePool releases exactly what it returned.
unsafe impl GlobalAlloc for WdkAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: any size may be requested; null is returned on failure.
        unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, layout.size() as SIZE_T, RUST_TAG) }.cast()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above (GlobalAlloc's contract).
        unsafe { ExFreePool(ptr.cast()) }
    }
}
