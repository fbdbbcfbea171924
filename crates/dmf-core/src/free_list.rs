//! A bounded lock-free free list: the fast path of a Source [`BufferPool`].
//!
//! [`FreeList<T>`] holds up to `capacity` values, each in its own *slot*. A value is pushed with
//! the [`SlotKey`] of a free slot and popped together with that key, so the key is the proof that
//! its slot is empty and nobody else can write it:
//!
//! - [`FreeList::mint`] hands out one key per slot, once in the list's life.
//! - [`FreeList::push`] consumes a key and lists its value; [`FreeList::pop`] returns the most
//!   recently pushed value with its key (a stack: the buffer used last is the one still in cache).
//! - Both are one compare-exchange on the list's head word when nobody holds the list
//!   exclusively, and they never block. A compare-exchange lost to another thread backs off
//!   exponentially (at most 2⁶ pause hints) before retrying, so contending threads take turns on
//!   the head's cache line instead of colliding on it.
//! - [`FreeList::exclusive`] takes the whole list (walking, counting, removing from the middle):
//!   while an [`Exclusive`] lives, `push` and `pop` answer [`Pushed::Busy`] and [`Pop::Busy`]
//!   instead of waiting, so the caller decides how to wait (a Module waits on its own lock, which
//!   the exclusive holder holds).
//!
//! - [`Exclusive::set_closed`] closes the list: from then on `push` and `pop` answer
//!   [`Pushed::Closed`] and [`Pop::Closed`] (and touch nothing) until an exclusive holder opens it
//!   again. This is what lets a Module Method run lock-free *and* without its rundown guard and
//!   still never act on a closed Module: the Module's close shuts the list in the same step that
//!   drains it (ARCHITECTURE.md, "lock-free Methods").
//!
//! Keys are not `Clone`, carry the identity of the list that minted them, and are checked on every
//! push: a key of another list is refused ([`Pushed::Foreign`]) and can never write a slot it does
//! not own. Everything here is safe to call in any order from any thread; the `unsafe` is confined
//! to the slot cells, whose exclusive ownership the keys and the head word establish.
//!
//! The head word is `LOCK (1 bit) | CLOSED (1 bit) | tag (30 bits) | index (32 bits)`. Every change of the head
//! increments the tag, so a pop that read a head, was preempted, and meets the same index again
//! after other pops and pushes (ABA) fails its compare-exchange instead of installing a stale
//! `next`; it would take 2³⁰ head changes inside one pop's window for that to go wrong.
//!
//! loom models every interleaving of two pushers/poppers and an exclusive holder
//! (`tests/loom_free_list.rs`); miri runs the unit tests below and the threaded test
//! (`tests/free_list_threads.rs`).
//!
//! [`BufferPool`]: ../../dmf_modules/buffer_pool/index.html

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::num::NonZeroU64;
use core::sync::atomic::AtomicU64 as IdCounter;

use crate::fallible::{try_boxed_slice, VecExt};
use crate::status::{NtResult, NtStatus};
use crate::sync_facade::{AtomicBool, AtomicU32, AtomicU64, Ordering, UnsafeCell};

/// No slot (an empty list, the end of the chain).
const NIL: u32 = u32::MAX;
/// Set while an [`Exclusive`] holds the list.
const LOCK: u64 = 1 << 63;
/// Set while the list is closed.
const CLOSED: u64 = 1 << 62;
const TAG_ONE: u64 = 1 << 32;
const TAG_MASK: u64 = !LOCK & !CLOSED & !(TAG_ONE - 1);

/// List identities: a key names the list that minted it. Not a modelled atomic (loom does not need
/// to explore id allocation, and a `static` cannot hold one).
static NEXT_LIST_ID: IdCounter = IdCounter::new(1);

fn index_of(word: u64) -> u32 {
    // Truncation intended: the index is the low 32 bits.
    (word & (TAG_ONE - 1)) as u32
}

/// The head word that follows `word`: index `index`, tag incremented, `lock` as given, CLOSED
/// as in `word`.
fn successor(word: u64, index: u32, lock: bool) -> u64 {
    let tag = (word & TAG_MASK).wrapping_add(TAG_ONE) & TAG_MASK;
    tag | (word & CLOSED) | if lock { LOCK } else { 0 } | u64::from(index)
}

/// Exponential spinning after a lost compare-exchange: the other thread gets the head's cache
/// line for a while instead of both retrying into each other (bounded: at most 2⁶ pause hints).
struct Backoff(u32);

impl Backoff {
    fn new() -> Self {
        Backoff(0)
    }

    #[cold]
    fn snooze(&mut self) {
        for _ in 0..1_u32 << self.0 {
            core::hint::spin_loop();
        }
        if self.0 < 6 {
            self.0 += 1;
        }
    }
}

struct Slot<T> {
    /// The slot below this one while listed (meaningless otherwise). Atomic because a pop that
    /// lost a race may read it while the slot's new owner rewrites it.
    next: AtomicU32,
    /// `Some` exactly while the slot is listed. Written only by the owner of the slot: the holder
    /// of its key (before the push publishes it), the pop that unlisted it, or an [`Exclusive`].
    value: UnsafeCell<Option<T>>,
}

/// A bounded lock-free free list of `T`. See the [module documentation](self).
pub struct FreeList<T> {
    head: AtomicU64,
    minted: AtomicBool,
    id: NonZeroU64,
    /// `slots.len()`, below `NIL`.
    capacity: u32,
    slots: Box<[Slot<T>]>,
}

// SAFETY: the list owns its values and hands each one to exactly one thread at a time (push moves
// it in, pop moves it out, an `Exclusive` reaches it under the LOCK bit), as a `Mutex<T>` does; so
// sending the list or sharing it between threads needs only `T: Send`.
unsafe impl<T: Send> Send for FreeList<T> {}
// SAFETY: as above: no `&T` is ever given to two threads at once.
unsafe impl<T: Send> Sync for FreeList<T> {}

/// The right to one empty slot of one [`FreeList`]: minted once per slot, consumed by
/// [`FreeList::push`], returned by [`FreeList::pop`]. Not `Clone`; dropping it retires the slot.
#[must_use = "a dropped key retires its slot for the life of the list"]
pub struct SlotKey {
    list: NonZeroU64,
    index: u32,
}

impl SlotKey {
    /// The slot's index (0-based, below the list's capacity).
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl fmt::Debug for SlotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotKey")
            .field("list", &self.list)
            .field("index", &self.index)
            .finish()
    }
}

/// What [`FreeList::pop`] found.
#[derive(Debug)]
pub enum Pop<T> {
    /// The most recently pushed value and its slot's key.
    Item(SlotKey, T),
    /// No value is listed.
    Empty,
    /// An [`Exclusive`] holds the list; nothing was taken.
    Busy,
    /// The list is closed; nothing was taken.
    Closed,
}

/// A push that did not list its value: both are handed back.
#[derive(Debug)]
pub enum Pushed<T> {
    /// An [`Exclusive`] holds the list; retry after it is dropped.
    Busy(SlotKey, T),
    /// The key belongs to another list.
    Foreign(SlotKey, T),
    /// The list is closed.
    Closed(SlotKey, T),
}

impl<T> Pushed<T> {
    /// The key and the value, back in the caller's hands.
    pub fn into_parts(self) -> (SlotKey, T) {
        match self {
            Pushed::Busy(key, value) | Pushed::Foreign(key, value) | Pushed::Closed(key, value) => {
                (key, value)
            }
        }
    }
}

/// The keys of every slot, from [`FreeList::mint`] (an iterator: nothing is allocated).
#[derive(Debug)]
pub struct Keys {
    list: NonZeroU64,
    next: u32,
    end: u32,
}

impl Iterator for Keys {
    type Item = SlotKey;
    fn next(&mut self) -> Option<SlotKey> {
        (self.next < self.end).then(|| {
            let key = SlotKey {
                list: self.list,
                index: self.next,
            };
            self.next += 1;
            key
        })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.end - self.next) as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Keys {}

impl<T> FreeList<T> {
    /// An empty list of `capacity` slots (at most `u32::MAX - 1`).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` for a capacity of `u32::MAX` or more,
    /// `STATUS_INSUFFICIENT_RESOURCES` if the slots cannot be allocated.
    pub fn with_capacity(capacity: usize) -> NtResult<Self> {
        let count = match u32::try_from(capacity) {
            Ok(count) if count < NIL => count,
            _ => return Err(NtStatus::INVALID_PARAMETER),
        };
        let mut slots = Vec::new();
        slots.try_reserve_exact_nt(capacity)?;
        slots.extend((0..capacity).map(|_| Slot {
            next: AtomicU32::new(NIL),
            value: UnsafeCell::new(None),
        }));
        Ok(FreeList {
            head: AtomicU64::new(u64::from(NIL)),
            minted: AtomicBool::new(false),
            // Starts at 1 and cannot wrap in practice (2⁶⁴ lists).
            id: NonZeroU64::new(NEXT_LIST_ID.fetch_add(1, core::sync::atomic::Ordering::Relaxed))
                .ok_or(NtStatus::INTERNAL_ERROR)?,
            slots: try_boxed_slice(slots)?,
            capacity: count,
        })
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The keys of every slot, on the first call only (`None` afterwards): each slot has exactly
    /// one key for the life of the list.
    pub fn mint(&self) -> Option<Keys> {
        if self.minted.swap(true, Ordering::Relaxed) {
            return None;
        }
        Some(Keys {
            list: self.id,
            next: 0,
            end: self.capacity,
        })
    }

    fn owns(&self, key: &SlotKey) -> bool {
        key.list == self.id
    }

    /// Lists `value` in `key`'s slot, on top. Lock-free: one compare-exchange unless another
    /// thread changes the head at the same moment.
    ///
    /// # Errors
    ///
    /// [`Pushed::Busy`] while an [`Exclusive`] holds the list, [`Pushed::Closed`] while it is
    /// closed, [`Pushed::Foreign`] for a key of another list; each hands back the key and the
    /// value.
    ///
    /// # Panics
    ///
    /// Never for any use of this API: only if the list's own invariant (a listed slot holds a
    /// value) were broken, which would be a bug in this module.
    #[inline]
    pub fn push(&self, key: SlotKey, value: T) -> Result<(), Pushed<T>> {
        if !self.owns(&key) {
            return Err(Pushed::Foreign(key, value));
        }
        let mut head = self.head.load(Ordering::Relaxed);
        if head & LOCK != 0 {
            return Err(Pushed::Busy(key, value));
        }
        if head & CLOSED != 0 {
            return Err(Pushed::Closed(key, value));
        }
        let slot = &self.slots[key.index as usize];
        let mut backoff = Backoff::new();
        // SAFETY: the key proves the slot is not listed and that no other key names it; a pop
        // that unlisted it finished with the cell before returning the key, and `Exclusive`
        // reaches only listed slots. So nobody else touches the cell until the compare-exchange
        // below publishes it (Release). The cell holds `None` (unlisted), so writing over it
        // without dropping the old value loses nothing.
        slot.value
            .with_mut(|cell| unsafe { core::ptr::write(cell, Some(value)) });
        loop {
            slot.next.store(index_of(head), Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                successor(head, key.index, false),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) if actual & (LOCK | CLOSED) != 0 => {
                    // SAFETY: still unpublished (the compare-exchange failed): the cell is ours.
                    let value = slot.value.with_mut(|cell| unsafe { (*cell).take() });
                    let value = value.expect("written above");
                    return Err(if actual & LOCK != 0 {
                        Pushed::Busy(key, value)
                    } else {
                        Pushed::Closed(key, value)
                    });
                }
                Err(actual) => {
                    backoff.snooze();
                    head = actual;
                }
            }
        }
    }

    /// Unlists the value on top with its slot's key. Lock-free: one compare-exchange unless
    /// another thread changes the head at the same moment.
    ///
    /// # Panics
    ///
    /// Never for any use of this API: only if the list's own invariant (a listed slot holds a
    /// value) were broken, which would be a bug in this module.
    #[inline]
    pub fn pop(&self) -> Pop<T> {
        let mut head = self.head.load(Ordering::Acquire);
        let mut backoff = Backoff::new();
        loop {
            if head & LOCK != 0 {
                return Pop::Busy;
            }
            if head & CLOSED != 0 {
                return Pop::Closed;
            }
            let index = index_of(head);
            if index == NIL {
                return Pop::Empty;
            }
            let slot = &self.slots[index as usize];
            // Possibly stale (the slot may have been popped and re-pushed since `head` was read);
            // then the tag has changed and the compare-exchange fails.
            let next = slot.next.load(Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                successor(head, next, false),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // SAFETY: the compare-exchange unlisted the slot, so this thread alone owns
                    // it; Acquire on the head joins the Release of the push that listed it (each
                    // later head change is a read-modify-write, so the release sequence holds).
                    let value = slot.value.with_mut(|cell| unsafe { (*cell).take() });
                    let key = SlotKey {
                        list: self.id,
                        index,
                    };
                    return Pop::Item(key, value.expect("a listed slot holds a value"));
                }
                Err(actual) => {
                    backoff.snooze();
                    head = actual;
                }
            }
        }
    }

    /// Takes the whole list, open or closed, or `None` if an [`Exclusive`] already holds it.
    /// Never blocks: it retries only while lock-free pushes and pops change the head under it.
    pub fn exclusive(&self) -> Option<Exclusive<'_, T>> {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            if head & LOCK != 0 {
                return None;
            }
            match self.head.compare_exchange_weak(
                head,
                successor(head, index_of(head), true),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(Exclusive {
                        list: self,
                        top: index_of(head),
                        tag_word: head,
                        closed: head & CLOSED != 0,
                    })
                }
                Err(actual) => head = actual,
            }
        }
    }
}

impl<T> fmt::Debug for FreeList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FreeList")
            .field("id", &self.id)
            .field("capacity", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// What [`Exclusive::visit`]'s callback decides for the value it saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Visit {
    /// Go on to the next value.
    Continue,
    /// Stop here.
    Stop,
    /// Unlist this value (returned by `visit`) and stop.
    RemoveAndStop,
}

/// The whole [`FreeList`], held exclusively: lock-free pushes and pops are refused (`Busy`) until
/// it is dropped. Walks, counts and removes from anywhere in the list.
#[must_use = "dropping the exclusive hold hands the list back to lock-free callers at once"]
pub struct Exclusive<'a, T> {
    list: &'a FreeList<T>,
    /// The top of the stack, kept here while the head word is locked.
    top: u32,
    /// The head word's tag at the time of locking (the successor is stored on drop).
    tag_word: u64,
    /// Whether the list is closed when the hold ends.
    closed: bool,
}

impl<'a, T> Exclusive<'a, T> {
    fn slot(&self, index: u32) -> &Slot<T> {
        &self.list.slots[index as usize]
    }

    /// The number of listed values (a walk: O(n)).
    pub fn len(&self) -> usize {
        let mut n = 0;
        let mut index = self.top;
        while index != NIL {
            n += 1;
            index = self.slot(index).next.load(Ordering::Relaxed);
        }
        n
    }

    /// `true` when nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.top == NIL
    }

    /// `true` if the list is closed (or will be when this hold ends).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Closes (`true`) or opens the list as of the end of this hold. While closed, lock-free
    /// `push` and `pop` refuse ([`Pushed::Closed`], [`Pop::Closed`]); an exclusive holder still
    /// reaches everything (to drain a closing list, to refill an opening one).
    pub fn set_closed(&mut self, closed: bool) {
        self.closed = closed;
    }

    /// [`FreeList::push`] while holding the list.
    ///
    /// # Errors
    ///
    /// [`Pushed::Foreign`] for a key of another list.
    pub fn push(&mut self, key: SlotKey, value: T) -> Result<(), Pushed<T>> {
        if !self.list.owns(&key) {
            return Err(Pushed::Foreign(key, value));
        }
        let slot = self.slot(key.index);
        // SAFETY: the key proves the slot is unlisted and ours (see `FreeList::push`); lock-free
        // callers are locked out, and the LOCK release on drop publishes the write.
        slot.value.with_mut(|cell| unsafe { *cell = Some(value) });
        slot.next.store(self.top, Ordering::Relaxed);
        self.top = key.index;
        Ok(())
    }

    /// [`FreeList::pop`] while holding the list (never `Busy`).
    pub fn pop(&mut self) -> Option<(SlotKey, T)> {
        let index = self.top;
        if index == NIL {
            return None;
        }
        self.top = self.slot(index).next.load(Ordering::Relaxed);
        Some(self.take(index))
    }

    /// Unlists the value of listed slot `index` (already unlinked) and mints its key back.
    fn take(&mut self, index: u32) -> (SlotKey, T) {
        // SAFETY: the slot was listed and the LOCK bit keeps every other thread off listed slots;
        // the Acquire that set LOCK made the pushers' writes visible.
        let value = self
            .slot(index)
            .value
            .with_mut(|cell| unsafe { (*cell).take() });
        let key = SlotKey {
            list: self.list.id,
            index,
        };
        (key, value.expect("a listed slot holds a value"))
    }

    /// Calls `f` on each listed value, top first, until it says stop; returns the value it
    /// removed ([`Visit::RemoveAndStop`]) with its key.
    ///
    /// # Panics
    ///
    /// Never for any use of this API: only if the list's own invariant (a listed slot holds a
    /// value) were broken, which would be a bug in this module.
    pub fn visit(&mut self, mut f: impl FnMut(&mut T) -> Visit) -> Option<(SlotKey, T)> {
        let mut previous = NIL;
        let mut index = self.top;
        while index != NIL {
            let slot = self.slot(index);
            let next = slot.next.load(Ordering::Relaxed);
            let visit = slot.value.with_mut(|cell| {
                // SAFETY: a listed slot under the LOCK bit (see `take`); the `&mut` ends before
                // the cell is touched again.
                let value = unsafe { &mut *cell }
                    .as_mut()
                    .expect("a listed slot holds a value");
                f(value)
            });
            match visit {
                Visit::Continue => {}
                Visit::Stop => return None,
                Visit::RemoveAndStop => {
                    if previous == NIL {
                        self.top = next;
                    } else {
                        self.slot(previous).next.store(next, Ordering::Relaxed);
                    }
                    return Some(self.take(index));
                }
            }
            previous = index;
            index = next;
        }
        None
    }

    /// Unlists every value, top first, with its key.
    pub fn drain(&mut self) -> impl Iterator<Item = (SlotKey, T)> + use<'_, 'a, T> {
        core::iter::from_fn(move || self.pop())
    }
}

impl<T> Drop for Exclusive<'_, T> {
    fn drop(&mut self) {
        // Release: everything done under the hold happens-before the next lock-free pop or
        // exclusive that reads the head. A plain store is enough: with LOCK set, nobody else
        // changes the head.
        let word = successor(self.tag_word, self.top, false) & !CLOSED;
        let word = if self.closed { word | CLOSED } else { word };
        self.list.head.store(word, Ordering::Release);
    }
}

impl<T> fmt::Debug for Exclusive<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exclusive")
            .field("list", &self.list)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::sync::Arc;
    use alloc::vec;

    fn filled(n: usize) -> FreeList<u32> {
        let list = FreeList::with_capacity(n).unwrap();
        for key in list.mint().unwrap() {
            let value = key.index() * 10;
            list.push(key, value).unwrap();
        }
        list
    }

    #[test]
    fn push_pop_is_last_in_first_out_and_keys_come_back() {
        let list = filled(3);
        let Pop::Item(key, value) = list.pop() else {
            panic!("empty")
        };
        assert_eq!((key.index(), value), (2, 20));
        let Pop::Item(key1, value1) = list.pop() else {
            panic!("empty")
        };
        assert_eq!(value1, 10);
        list.push(key, 99).unwrap();
        assert!(matches!(list.pop(), Pop::Item(k, 99) if k.index() == 2));
        list.push(key1, 11).unwrap();
        assert!(matches!(list.pop(), Pop::Item(_, 11)));
        assert!(matches!(list.pop(), Pop::Item(_, 0)));
        assert!(matches!(list.pop(), Pop::Empty));
    }

    #[test]
    fn keys_are_minted_once_and_foreign_keys_are_refused() {
        let a = FreeList::<u8>::with_capacity(2).unwrap();
        let b = FreeList::<u8>::with_capacity(2).unwrap();
        let keys: Vec<_> = a.mint().unwrap().collect();
        assert_eq!(keys.len(), 2);
        assert!(a.mint().is_none());
        let key = keys.into_iter().next().unwrap();
        let Err(Pushed::Foreign(key, 7)) = b.push(key, 7) else {
            panic!("foreign key accepted")
        };
        a.push(key, 7).unwrap();
        let mut ex = b.exclusive().unwrap();
        let Pop::Item(key, _) = a.pop() else { panic!() };
        assert!(matches!(ex.push(key, 1), Err(Pushed::Foreign(_, 1))));
    }

    #[test]
    fn capacity_limits() {
        assert_eq!(
            FreeList::<u8>::with_capacity(u32::MAX as usize).unwrap_err(),
            NtStatus::INVALID_PARAMETER
        );
        let empty = FreeList::<u8>::with_capacity(0).unwrap();
        assert_eq!(empty.mint().unwrap().count(), 0);
        assert!(matches!(empty.pop(), Pop::Empty));
    }

    #[test]
    fn exclusive_refuses_lock_free_callers_and_hands_back() {
        let list = filled(4);
        let Pop::Item(key, value) = list.pop() else {
            panic!()
        };
        let mut ex = list.exclusive().unwrap();
        assert!(list.exclusive().is_none());
        assert!(matches!(list.pop(), Pop::Busy));
        let Err(Pushed::Busy(key, value)) = list.push(key, value) else {
            panic!("push while held")
        };
        assert_eq!(ex.len(), 3);
        ex.push(key, value).unwrap();
        assert_eq!(ex.len(), 4);
        drop(ex);
        assert!(matches!(list.pop(), Pop::Item(_, 30)));
    }

    #[test]
    fn a_closed_list_refuses_lock_free_callers_until_opened() {
        let list = filled(2);
        let Pop::Item(key, value) = list.pop() else {
            panic!()
        };
        let mut ex = list.exclusive().unwrap();
        assert!(!ex.is_closed());
        ex.set_closed(true);
        let drained: Vec<u32> = ex.drain().map(|(_, v)| v).collect();
        assert_eq!(drained, [0]);
        drop(ex);
        assert!(matches!(list.pop(), Pop::Closed));
        let Err(Pushed::Closed(key, value)) = list.push(key, value) else {
            panic!("push into a closed list")
        };
        // An exclusive holder still works on a closed list, and the state survives the hold.
        let ex = list.exclusive().unwrap();
        assert!(ex.is_closed());
        assert!(ex.is_empty());
        drop(ex);
        assert!(matches!(list.pop(), Pop::Closed));
        let mut ex = list.exclusive().unwrap();
        ex.set_closed(false);
        ex.push(key, value).unwrap();
        drop(ex);
        assert!(matches!(list.pop(), Pop::Item(_, 10)));
        assert!(matches!(list.pop(), Pop::Empty));
    }

    #[test]
    fn visit_removes_from_the_middle_and_stops() {
        let list = filled(5); // top first: 40 30 20 10 0
        let mut ex = list.exclusive().unwrap();
        let mut seen = vec![];
        let removed = ex.visit(|v| {
            seen.push(*v);
            if *v == 20 {
                Visit::RemoveAndStop
            } else {
                *v += 1;
                Visit::Continue
            }
        });
        assert_eq!(seen, [40, 30, 20]);
        let (key, value) = removed.unwrap();
        assert_eq!((key.index(), value), (2, 20));
        assert_eq!(ex.visit(|_| Visit::Stop).map(|(_, v)| v), None);
        let rest: Vec<u32> = ex.drain().map(|(_, v)| v).collect();
        assert_eq!(rest, [41, 31, 10, 0]);
        // A single value: removing it empties the list.
        ex.push(key, 1).unwrap();
        assert!(ex.visit(|_| Visit::RemoveAndStop).is_some());
        assert!(ex.is_empty());
    }

    #[test]
    fn dropping_the_list_drops_listed_values_only() {
        let tracker = Arc::new(());
        let list = FreeList::with_capacity(3).unwrap();
        let mut keys = list.mint().unwrap();
        list.push(keys.next().unwrap(), Arc::clone(&tracker))
            .unwrap();
        list.push(keys.next().unwrap(), Arc::clone(&tracker))
            .unwrap();
        let Pop::Item(_key, held) = list.pop() else {
            panic!()
        };
        assert_eq!(Arc::strong_count(&tracker), 3);
        drop(list);
        assert_eq!(Arc::strong_count(&tracker), 2);
        drop(held);
        assert_eq!(Arc::strong_count(&tracker), 1);
    }
}
