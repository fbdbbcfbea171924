//! [`OneShot`]: a slot written once and taken once, with no lock and no platform object — how a
//! completion (any thread, up to `DISPATCH_LEVEL`) hands its result to the thread waiting for it.
//!
//! The slot's state word moves `EMPTY → WRITING → FULL → TAKEN`: [`set`](OneShot::set) claims the
//! slot with a compare-exchange, writes the value and publishes it with a release store;
//! [`take`](OneShot::take) claims a published value with an acquire compare-exchange and moves it
//! out. A second `set` gives its value back; a `take` before the value is published, or a second
//! one, gets `None`. A value set and never taken is dropped with the slot. The waiter typically
//! learns that the value is there from an event the completion signals after `set`; the slot does
//! not wait by itself.
//!
//! `tests/loom_one_shot.rs` models a setter racing a taker and two racing setters on this code
//! (with `set` publishing by a relaxed store instead, two of its three models fail).
//!
//! ```
//! use dmf_core::one_shot::OneShot;
//!
//! let slot = OneShot::new();
//! assert_eq!(slot.take(), None);
//! assert_eq!(slot.set(7), Ok(()));
//! assert_eq!(slot.set(8), Err(8));
//! assert_eq!(slot.take(), Some(7));
//! assert_eq!(slot.take(), None);
//! ```

use core::mem::MaybeUninit;

use crate::sync_facade::{AtomicU32, Ordering, UnsafeCell};

const EMPTY: u32 = 0;
const WRITING: u32 = 1;
const FULL: u32 = 2;
const TAKEN: u32 = 3;

/// A slot written once and taken once. See the [module documentation](self).
pub struct OneShot<T> {
    // INVARIANT: `value` is initialised exactly while `state` is FULL (and during the owning
    // thread's write in WRITING / read after TAKEN, which nobody else may touch).
    state: AtomicU32,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value moves from the setting thread to the taking one, so `T: Send` suffices; the
// state word gives each side exclusive access to the cell in turn (see the INVARIANT).
unsafe impl<T: Send> Send for OneShot<T> {}
// SAFETY: as for `Send`: shared use only passes a `T` from one thread to another.
unsafe impl<T: Send> Sync for OneShot<T> {}

impl<T> core::fmt::Debug for OneShot<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OneShot")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T> Default for OneShot<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> OneShot<T> {
    /// An empty slot.
    #[cfg(not(dmf_loom))]
    #[must_use]
    pub const fn new() -> Self {
        OneShot {
            state: AtomicU32::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// An empty slot.
    #[cfg(dmf_loom)]
    #[must_use]
    pub fn new() -> Self {
        OneShot {
            state: AtomicU32::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Stores `value`, once. Any IRQL.
    ///
    /// # Errors
    /// The value back if the slot was already set.
    pub fn set(&self, value: T) -> Result<(), T> {
        if self
            .state
            .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(value);
        }
        self.value.with_mut(|cell| {
            // SAFETY: WRITING is ours alone (the compare-exchange above); nobody reads the cell
            // until the release store below publishes FULL.
            unsafe { (*cell).write(value) };
        });
        self.state.store(FULL, Ordering::Release);
        Ok(())
    }

    /// Moves the value out, once it is set; `None` before that and after a first `take`.
    /// Any IRQL.
    pub fn take(&self) -> Option<T> {
        self.state
            .compare_exchange(FULL, TAKEN, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        Some(self.value.with_mut(|cell| {
            // SAFETY: FULL → TAKEN is ours alone; the acquire pairs with `set`'s release store,
            // so the value is initialised and visible; TAKEN keeps anyone from reading it again.
            unsafe { (*cell).assume_init_read() }
        }))
    }
}

impl<T> Drop for OneShot<T> {
    fn drop(&mut self) {
        if self.state.load(Ordering::Acquire) == FULL {
            self.value.with_mut(|cell| {
                // SAFETY: FULL: the value is initialised and, with `&mut self`, nobody else can
                // take it; dropped once, here.
                unsafe { (*cell).assume_init_drop() };
            });
        }
    }
}
