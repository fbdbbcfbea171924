//! Framework-internal storage that costs one pointer until it is needed.
//!
//! # Design
//!
//! Most Modules never have a dynamic child, an in-flight trace ring or a DMF Interface binding, and
//! most are never closed while a Method is in flight. Allocating the lock that guards those lists
//! and the event that a rundown wait sleeps on for every Module made each one cost about 1 KB on
//! the simulator (each platform lock and event is a kmdf-sim object with its own allocations).
//! [`OnceBox`] holds such an object behind one atomic pointer, created on first use; creation is
//! race-free (the first compare-exchange wins, a loser frees its copy), the pointer never changes
//! afterwards, and the object lives until the owner drops.
//!
//! [`LazyEvent`] is the rundown event of a Module (and of an interface binding) in a `OnceBox`.
//! It fits the [`RundownEvent`] contract:
//! - `wait` and `signal` both create the event if it does not exist yet, so whichever of the
//!   waiter and the last releaser comes first creates it and both use the same one;
//! - `reset` of an event never created has nothing to do (a new event is unsignalled);
//! - `signal` touches the `OnceBox` only before it calls the platform event's `signal`, whose own
//!   contract then covers the waiter freeing the object.
//!
//! The platform event binds to the machine of the thread that creates it — the closing thread or
//! the last releaser, both running on the Module's machine in practice. The kernel's own
//! `EX_RUNDOWN_REF` has no permanent event either (the waiter supplies one).

use alloc::boxed::Box;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::platform::Event;
use crate::rundown::{Rundown, RundownEvent};
use crate::status::NtResult;

/// A `T` created on first use, behind one atomic pointer.
pub(crate) struct OnceBox<T> {
    // INVARIANT: null, or a pointer from `Box::into_raw` that is never changed or freed until drop.
    ptr: AtomicPtr<T>,
}

impl<T> OnceBox<T> {
    pub(crate) const fn new() -> Self {
        OnceBox {
            ptr: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The value, if it was created.
    #[inline]
    pub(crate) fn get(&self) -> Option<&T> {
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: by the field's invariant a non-null pointer is a live `Box<T>` owned by `self`
        // that is freed only in `drop` (which needs `&mut self`), so it outlives `&self`. The
        // Acquire load pairs with the Release of the publishing compare-exchange, so the value's
        // initialisation is visible.
        unsafe { p.as_ref() }
    }

    /// The value, created with `init` if it does not exist yet.
    pub(crate) fn get_or_try_init(&self, init: impl FnOnce() -> NtResult<T>) -> NtResult<&T> {
        if let Some(value) = self.get() {
            return Ok(value);
        }
        let fresh = Box::into_raw(Box::new(init()?));
        match self
            .ptr
            .compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            // SAFETY: `fresh` is now the published pointer (see `get`).
            Ok(_) => Ok(unsafe { &*fresh }),
            Err(winner) => {
                // SAFETY: `fresh` came from `Box::into_raw` above and was never published.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: `winner` is the published, non-null pointer (see `get`).
                Ok(unsafe { &*winner })
            }
        }
    }

    /// The value, created with `init` if it does not exist yet (infallible `init`).
    pub(crate) fn get_or_init(&self, init: impl FnOnce() -> T) -> &T {
        match self.get_or_try_init(|| Ok(init())) {
            Ok(value) => value,
            Err(_) => unreachable!("an infallible initialiser failed"),
        }
    }
}

impl<T> Drop for OnceBox<T> {
    fn drop(&mut self) {
        let p = *self.ptr.get_mut();
        if !p.is_null() {
            // SAFETY: a non-null pointer came from `Box::into_raw` and was never freed.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

// SAFETY: a `OnceBox<T>` owns a `T` (like `Box<T>`), handed out only as `&T` to sharers.
unsafe impl<T: Send> Send for OnceBox<T> {}
// SAFETY: sharers get `&T` (needs `T: Sync`) and may create the `T` on their thread and hand it to
// the owner's (needs `T: Send`).
unsafe impl<T: Send + Sync> Sync for OnceBox<T> {}

/// The platform event of a rundown, created on first wait or signal (see the module docs).
pub(crate) struct LazyEvent(OnceBox<Event>);

impl LazyEvent {
    fn event(&self) -> &Event {
        self.0.get_or_init(<Event as RundownEvent>::new)
    }
}

impl RundownEvent for LazyEvent {
    fn new() -> Self {
        LazyEvent(OnceBox::new())
    }

    fn signal(&self) {
        self.event().signal();
    }

    fn wait(&self) {
        self.event().wait();
    }

    fn reset(&self) {
        if let Some(event) = self.0.get() {
            event.reset();
        }
    }
}

/// The rundown that gates a Module's Methods (and an interface binding's calls).
pub(crate) type LazyRundown = Rundown<LazyEvent>;
