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
//! Creating one allocates, and an allocation can fail, so each is created where a failure can be
//! reported: the internal lock by the operations that need it (which return `NtResult`), the value
//! of a Module with a trace ring boxed before the Module object is assembled ([`OnceBox::from_box`]).
//!
//! [`LazyEvent`] is the rundown event of a Module (and of an interface binding) in a `OnceBox`.
//! It fits the [`RundownEvent`] contract:
//! - its `new` allocates nothing and never fails, so a Module object or binding costs no event
//!   until it needs one;
//! - the platform event is created by [`LazyEvent::prepare`] before the rundown can have a
//!   waiter: when the Module opens (its Methods can be entered only once it is open, and only an
//!   open Module is closed) and when an interface binding is made, both of which can fail and
//!   report the platform event's `STATUS_INSUFFICIENT_RESOURCES`. A Module that is never opened
//!   never has one;
//! - `wait` and `signal` find it created; should one ever be called on an event never prepared,
//!   it creates the event itself, and while the pool refuses it retries rather than failing
//!   (neither can report an error), so whichever of the waiter and the last releaser comes first
//!   creates it and both use the same one;
//! - `reset` of an event never created has nothing to do (a new event is unsignalled);
//! - `signal` touches the `OnceBox` only before it calls the platform event's `signal`, whose own
//!   contract then covers the waiter freeing the object.
//!
//! The platform event binds to the machine of the thread that creates it — the closing thread or
//! the last releaser, both running on the Module's machine in practice. The kernel's own
//! `EX_RUNDOWN_REF` has no permanent event either (the waiter supplies one).

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::fallible::try_box;
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

    /// A `OnceBox` holding `value` from the start (allocated by the caller, where a failure can be
    /// reported).
    pub(crate) fn from_box(value: Box<T>) -> Self {
        OnceBox {
            ptr: AtomicPtr::new(Box::into_raw(value)),
        }
    }

    /// The value, if it was created.
    #[inline]
    pub(crate) fn get(&self) -> Option<&T> {
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: by the field's invariant a non-null pointer is a live `Box<T>` owned by `self`
        // that is freed only in `drop` (which needs `&mut self`), so it outlives `&self`. The
        // Acquire load pairs with the Release of the publishing compare-exchange, so the value's
        // initialisation is visible (a value given to `from_box` was initialised before `self`
        // existed).
        unsafe { p.as_ref() }
    }

    /// The value, created with `init` if it does not exist yet; `init`'s error, or
    /// `STATUS_INSUFFICIENT_RESOURCES` if the box cannot be allocated.
    pub(crate) fn get_or_try_init(&self, init: impl FnOnce() -> NtResult<T>) -> NtResult<&T> {
        if let Some(value) = self.get() {
            return Ok(value);
        }
        Ok(self.get_or_set(try_box(init()?)?))
    }

    /// The value, `value` (allocated by the caller) if it does not exist yet; otherwise `value`
    /// is dropped.
    pub(crate) fn get_or_set(&self, value: Box<T>) -> &T {
        let fresh = Box::into_raw(value);
        match self
            .ptr
            .compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            // SAFETY: `fresh` is now the published pointer (see `get`).
            Ok(_) => unsafe { &*fresh },
            Err(winner) => {
                // SAFETY: `fresh` came from `Box::into_raw` above and was never published.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: `winner` is the published, non-null pointer (see `get`).
                unsafe { &*winner }
            }
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

/// A `Weak<T>` that is set once, after its owner was built: the parent link of a static child,
/// which is created before its parent's `Arc` exists. Unset, it upgrades to nothing (like a
/// parent still being created).
pub(crate) struct OnceWeak<T> {
    // INVARIANT: null (unset), or a pointer from `Weak::into_raw` whose weak reference `self` owns;
    // never changed once set, released in drop.
    ptr: AtomicPtr<T>,
    // Send and Sync exactly when `Weak<T>` is.
    _weak: PhantomData<Weak<T>>,
}

impl<T> OnceWeak<T> {
    /// An unset link.
    pub(crate) const fn new() -> Self {
        OnceWeak {
            ptr: AtomicPtr::new(ptr::null_mut()),
            _weak: PhantomData,
        }
    }

    /// A link set to `weak` from the start.
    pub(crate) fn with(weak: Weak<T>) -> Self {
        let link = Self::new();
        link.set(weak);
        link
    }

    /// Sets the link; no effect (`weak` is dropped) if it is set already.
    pub(crate) fn set(&self, weak: Weak<T>) {
        let fresh = Weak::into_raw(weak).cast_mut();
        if self
            .ptr
            .compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // SAFETY: `fresh` came from `Weak::into_raw` above and was not published: this
            // takes its weak reference back and releases it.
            drop(unsafe { Weak::from_raw(fresh) });
        }
    }

    /// The target, if the link is set and the target still exists.
    pub(crate) fn upgrade(&self) -> Option<Arc<T>> {
        let p = self.ptr.load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: by the field's invariant `p` came from `Weak::into_raw` and `self` owns that
        // weak reference until drop (which needs `&mut self`); `ManuallyDrop` borrows it without
        // releasing it.
        let weak = ManuallyDrop::new(unsafe { Weak::from_raw(p.cast_const()) });
        weak.upgrade()
    }
}

impl<T> Drop for OnceWeak<T> {
    fn drop(&mut self) {
        let p = *self.ptr.get_mut();
        if !p.is_null() {
            // SAFETY: a non-null pointer came from `Weak::into_raw` and its weak reference, owned
            // by `self`, was never released.
            drop(unsafe { Weak::from_raw(p.cast_const()) });
        }
    }
}

/// The platform event of a rundown, created on first wait or signal (see the module docs).
pub(crate) struct LazyEvent(OnceBox<Event>);

impl LazyEvent {
    /// Creates the event if it does not exist yet. PASSIVE_LEVEL.
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES` if it cannot be allocated.
    pub(crate) fn prepare(&self) -> NtResult<()> {
        self.0
            .get_or_try_init(<Event as RundownEvent>::new)
            .map(|_| ())
    }

    /// The event, prepared by the owner (see the module docs).
    fn event(&self) -> &Event {
        loop {
            if let Ok(event) = self.0.get_or_try_init(<Event as RundownEvent>::new) {
                return event;
            }
            // Not reached by the framework, which prepares the event before the rundown can
            // have a waiter; neither `wait` nor `signal` can fail, so wait for the pool.
            core::hint::spin_loop();
        }
    }
}

impl RundownEvent for LazyEvent {
    /// An empty slot: allocates nothing, so it never fails (the platform event is created by
    /// [`prepare`](LazyEvent::prepare)).
    fn new() -> NtResult<Self> {
        Ok(LazyEvent(OnceBox::new()))
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
