//! `dmf_core::fallible::try_arc` in a kernel image relies on `Arc::new` taking a block reserved
//! with [`arc_block_layout`]'s layout (`NtPoolAllocator` serves reservations; `Arc::try_new` is not
//! stable Rust). This test installs a global allocator that serves reservations the same way, on
//! the real standard library, and proves that `Arc::new` and `Arc::new_cyclic` take the reserved
//! block for values of several sizes and alignments, and that the `Arc` frees it with the
//! reserved layout.
#![allow(
    clippy::disallowed_methods,
    reason = "the test calls Arc::new on purpose"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use dmf_core::fallible::arc_block_layout;
use dmf_core::fallible::reservation::{Owner, Reservations};

static RESERVATIONS: Reservations = Reservations::new();
/// The block last reserved, and whether its free came with another layout.
static WATCHED: AtomicUsize = AtomicUsize::new(0);
static WATCHED_SIZE: AtomicUsize = AtomicUsize::new(0);
static WATCHED_ALIGN: AtomicUsize = AtomicUsize::new(0);
static FREED_WITH_OTHER_LAYOUT: AtomicBool = AtomicBool::new(false);
static WATCHED_FREED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static OWNER: Cell<usize> = const { Cell::new(0) };
}
static NEXT_OWNER: AtomicUsize = AtomicUsize::new(1);

fn owner() -> Owner {
    OWNER.with(|o| {
        if o.get() == 0 {
            o.set(NEXT_OWNER.fetch_add(1, Ordering::Relaxed));
        }
        Owner::new(o.get()).unwrap()
    })
}

struct Reserving;

// SAFETY: blocks come from `System` (directly or through a reservation `System` allocated with the
// same layout) and go back to it.
unsafe impl GlobalAlloc for Reserving {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if RESERVATIONS.pending() {
            if let Some(block) = RESERVATIONS.take(owner(), layout) {
                return block.as_ptr();
            }
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ptr as usize == WATCHED.load(Ordering::Relaxed) {
            WATCHED_FREED.store(true, Ordering::Relaxed);
            if layout.size() != WATCHED_SIZE.load(Ordering::Relaxed)
                || layout.align() != WATCHED_ALIGN.load(Ordering::Relaxed)
            {
                FREED_WITH_OTHER_LAYOUT.store(true, Ordering::Relaxed);
            }
        }
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Reserving = Reserving;

/// Reserves a block for `T`'s `Arc`, runs `make`, and checks that the block was taken and is where
/// the `Arc` keeps its value.
fn check<T, A: std::ops::Deref<Target = T>>(make: impl FnOnce() -> A) {
    // One watched block at a time (the tests of this file run in parallel).
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let layout = arc_block_layout::<T>().unwrap();
    // SAFETY: an `Arc` block always has a non-zero size (two counters).
    let block = NonNull::new(unsafe { std::alloc::alloc(layout) }).unwrap();
    WATCHED.store(block.as_ptr() as usize, Ordering::Relaxed);
    WATCHED_SIZE.store(layout.size(), Ordering::Relaxed);
    WATCHED_ALIGN.store(layout.align(), Ordering::Relaxed);
    WATCHED_FREED.store(false, Ordering::Relaxed);
    let ticket = RESERVATIONS.put(owner(), block, layout);
    let arc = make();
    let unused = RESERVATIONS.reclaim(ticket);
    assert_eq!(
        unused,
        None,
        "Arc did not take the block reserved for {}",
        std::any::type_name::<T>()
    );
    let value = (&raw const *arc).addr();
    assert!(
        value > block.as_ptr() as usize && value < block.as_ptr() as usize + layout.size(),
        "the Arc's value lies inside the reserved block"
    );
    drop(arc);
    assert!(
        WATCHED_FREED.load(Ordering::Relaxed),
        "the Arc freed its block"
    );
    assert!(
        !FREED_WITH_OTHER_LAYOUT.load(Ordering::Relaxed),
        "the Arc freed its block with the reserved layout"
    );
}

#[repr(align(32))]
struct Wide([u8; 40]);

#[test]
fn arc_new_takes_the_reserved_block() {
    check::<u8, _>(|| Arc::new(7u8));
    check::<u64, _>(|| Arc::new(7u64));
    check::<[u8; 100], _>(|| Arc::new([1u8; 100]));
    check::<Wide, _>(|| Arc::new(Wide([2; 40])));
    assert_eq!(Arc::new(Wide([3; 40])).0[39], 3);
    check::<(u16, u128), _>(|| Arc::new((1u16, 2u128)));
    check::<Vec<u8>, _>(|| Arc::new(Vec::<u8>::new()));
}

#[test]
fn arc_new_cyclic_takes_the_reserved_block() {
    struct Node {
        this: Weak<Node>,
        value: u32,
    }
    check::<Node, _>(|| {
        Arc::new_cyclic(|this| Node {
            this: this.clone(),
            value: 3,
        })
    });
    let node = Arc::new_cyclic(|this| Node {
        this: this.clone(),
        value: 4,
    });
    assert_eq!(node.this.upgrade().map(|n| n.value), Some(4));
}
