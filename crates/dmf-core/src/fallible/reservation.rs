//! One-shot block reservations a global allocator hands out before asking the pool: how
//! [`try_arc`](super::try_arc) makes `Arc::new` infallible in a kernel image.
//!
//! An owner (in the kernel: the current processor, at `DISPATCH_LEVEL`) [`put`](Reservations::put)s
//! a block it allocated; the next allocation *by the same owner* with exactly that layout
//! [`take`](Reservations::take)s it instead of calling the pool; the owner then
//! [`reclaim`](Reservations::reclaim)s the slot, getting the block back if it was not taken. A
//! slot is only ever read or written by its owner; other owners compare the owner word and move
//! on, so the only shared memory is that word and the count of slots in use (which lets an
//! allocator with no reservation pending skip the table with one load).

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Slots in a table: owners that can hold a reservation at the same time. An owner that finds
/// every slot taken waits for one (slots are held for the length of one allocation).
pub const SLOTS: usize = 64;

/// An owner's identity: any non-zero value unique among concurrent owners.
pub type Owner = core::num::NonZeroUsize;

#[derive(Debug)]
struct Slot {
    /// 0 when free, else the owner.
    owner: AtomicUsize,
    /// The reserved block; null once taken. Only the owner touches it.
    block: AtomicPtr<u8>,
    size: AtomicUsize,
    align: AtomicUsize,
}

impl Slot {
    const fn free() -> Slot {
        Slot {
            owner: AtomicUsize::new(0),
            block: AtomicPtr::new(core::ptr::null_mut()),
            size: AtomicUsize::new(0),
            align: AtomicUsize::new(0),
        }
    }
}

/// A table of reservations, one per concurrent owner (a `static` of the global allocator).
#[derive(Debug)]
pub struct Reservations {
    slots: [Slot; SLOTS],
    in_use: AtomicUsize,
}

impl Default for Reservations {
    fn default() -> Self {
        Self::new()
    }
}

/// A slot [`Reservations::put`] filled; give it back with [`Reservations::reclaim`].
#[derive(Debug)]
#[must_use = "a reservation holds its slot until it is reclaimed"]
pub struct Ticket {
    slot: usize,
}

impl Reservations {
    /// An empty table.
    pub const fn new() -> Self {
        Reservations {
            slots: [const { Slot::free() }; SLOTS],
            in_use: AtomicUsize::new(0),
        }
    }

    /// Reserves `block` (of `layout`) for `owner`'s next allocation of exactly `layout`. Waits
    /// (spins) while all [`SLOTS`] are in use. `owner` must not already hold a slot.
    pub fn put(&self, owner: Owner, block: NonNull<u8>, layout: Layout) -> Ticket {
        loop {
            for (index, slot) in self.slots.iter().enumerate() {
                if slot
                    .owner
                    .compare_exchange(0, owner.get(), Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    slot.block.store(block.as_ptr(), Ordering::Relaxed);
                    slot.size.store(layout.size(), Ordering::Relaxed);
                    slot.align.store(layout.align(), Ordering::Relaxed);
                    self.in_use.fetch_add(1, Ordering::Relaxed);
                    return Ticket { slot: index };
                }
            }
            core::hint::spin_loop();
        }
    }

    /// Whether any owner holds a reservation: an allocator with nothing pending skips
    /// [`take`](Self::take) (and finding out who it is) with this one load. An owner always sees
    /// its own reservation here.
    pub fn pending(&self) -> bool {
        self.in_use.load(Ordering::Relaxed) != 0
    }

    /// Called by the allocator: `owner`'s reserved block if it has one of exactly `layout` and
    /// has not handed it out yet.
    pub fn take(&self, owner: Owner, layout: Layout) -> Option<NonNull<u8>> {
        if !self.pending() {
            return None;
        }
        let slot = self
            .slots
            .iter()
            .find(|slot| slot.owner.load(Ordering::Relaxed) == owner.get())?;
        if slot.size.load(Ordering::Relaxed) != layout.size()
            || slot.align.load(Ordering::Relaxed) != layout.align()
        {
            return None;
        }
        NonNull::new(slot.block.swap(core::ptr::null_mut(), Ordering::Relaxed))
    }

    /// Frees the slot; returns the block if the allocator did not hand it out (the caller frees
    /// it with the layout it reserved).
    #[allow(
        clippy::needless_pass_by_value,
        reason = "taking the ticket makes a second reclaim of the slot impossible"
    )]
    pub fn reclaim(&self, ticket: Ticket) -> Option<NonNull<u8>> {
        let slot = &self.slots[ticket.slot];
        let block = slot.block.swap(core::ptr::null_mut(), Ordering::Relaxed);
        self.in_use.fetch_sub(1, Ordering::Relaxed);
        slot.owner.store(0, Ordering::Release);
        NonNull::new(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(n: usize) -> Owner {
        Owner::new(n).unwrap()
    }

    #[test]
    fn only_the_owner_and_the_exact_layout_take_the_block() {
        let table = Reservations::new();
        let mut backing = [0u64; 3];
        let block = NonNull::from(&mut backing).cast::<u8>();
        let layout = Layout::new::<[u64; 3]>();
        assert_eq!(table.take(owner(1), layout), None);
        let ticket = table.put(owner(1), block, layout);
        assert_eq!(table.take(owner(2), layout), None, "another owner");
        assert_eq!(
            table.take(owner(1), Layout::new::<[u64; 2]>()),
            None,
            "another size"
        );
        assert_eq!(
            table.take(owner(1), Layout::new::<[u8; 24]>()),
            None,
            "another align"
        );
        assert_eq!(table.take(owner(1), layout), Some(block));
        assert_eq!(table.take(owner(1), layout), None, "handed out once");
        assert_eq!(table.reclaim(ticket), None, "taken, nothing to free");
        let ticket = table.put(owner(2), block, layout);
        assert_eq!(
            table.reclaim(ticket),
            Some(block),
            "not taken: back to the owner"
        );
        assert_eq!(table.take(owner(2), layout), None, "slot free again");
    }

    #[test]
    fn every_slot_can_be_held_at_once() {
        let table = Reservations::new();
        let mut backing = [0u8; 1];
        let block = NonNull::from(&mut backing).cast::<u8>();
        let layout = Layout::new::<u8>();
        let tickets: [Ticket; SLOTS] =
            core::array::from_fn(|i| table.put(owner(i + 1), block, layout));
        for (i, ticket) in tickets.into_iter().enumerate() {
            assert_eq!(table.take(owner(i + 1), layout), Some(block));
            assert_eq!(table.reclaim(ticket), None);
        }
    }
}
