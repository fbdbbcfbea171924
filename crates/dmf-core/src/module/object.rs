//! The Module object: the framework-internal, `Arc`-shared instance behind every typed handle.
//!
//! # Design
//!
//! C DMF's `DMF_OBJECT` (`DmfIncludeInternal.h`) becomes [`ModuleObject`]. Everything a Module
//! author must not see directly lives here, type-erased so one object type serves every Module:
//!
//! - the descriptor (`&'static`, generated as a `const` by `#[dmf_module]`);
//! - the callbacks, as a `&'static` table of function pointers generated per Module type
//!   (`CallbackTable` in `callbacks.rs`; no allocation), which also identifies the handle type;
//! - one erased *cell* holding the private copy of the config, the context behind the Module's own
//!   lock and its auxiliary locks. The cell's type includes a private *key* type generated per
//!   Module, so only code that can name the key — the Module's own Rust module — can open it
//!   (invariant 5);
//! - the state machine (Created → Opening → Opened → Closing → Closed → Opening … → Destroying →
//!   Destroyed) as an atomic, so open/close/destroy are each once-only under races (C DMF's
//!   close-once guard, the `ModuleClosed` flag `DMF_Internal_Close` tests and sets in
//!   `DmfInternal.c`);
//! - "opened during" / "registered during" as enums ([`OpenedDuring`]), so a failing phase closes
//!   exactly what it opened (C DMF's `ModuleOpenedDuring`);
//! - the rundown that gates Methods (invariant 4): `open` re-arms it, `close` waits on it. Its
//!   event is created by the first `open` (which can fail; `lazy.rs`). State word and rundown are
//!   one [`MethodGate`] (`module_gate.rs`, no platform, so the loom models run it);
//! - the static children (fixed at creation, so dispatch walks them without a lock), a weak parent
//!   link (set once the parent's object exists: children are created first), the device-wide
//!   shared data (filter flag, feature Modules), and, behind one spin lock,
//!   the dynamic children, the DMF Interface bindings and the optional in-flight trace ring
//!   (`InFlightRecorderSize`).
//!
//! # Memory
//!
//! The framework's part of a Module is this object (one `Arc` allocation, about 120 bytes on
//! 64-bit targets) plus the private cell (config, context, the Module's own lock, aux locks). The
//! internal lock that guards the dynamic children, bindings and trace ring is a *platform* spin lock
//! like the Module's own lock — so the IRQL rules and the verifier apply to it too, and it is sound
//! at DISPATCH_LEVEL on the kernel, which a bare `core` spin lock that does not raise IRQL is not —
//! but it is created only when first needed: at creation for a Module with a trace ring, and on the
//! first dynamic child or interface binding otherwise. It is framework-internal and never held
//! across a callback (each use is a push, a removal or a copy). Likewise the rundown's event.
//! C DMF makes the same trade for its internal locks (native `KSPIN_LOCK`s rather than WDF handles:
//! `DMF_GENERIC_SPINLOCK` in `DmfIncludeInternal.h`).
//!
//! # Open and close
//!
//! `open`: Created/Closed → Opening; the rundown's event is made ready (the first open creates it;
//! `STATUS_INSUFFICIENT_RESOURCES` if it cannot); client `OnDeviceNotificationOpen` (may veto); Module `open`;
//! rundown re-armed; → Opened; client `PostOpen`. A failure returns the Module to its previous
//! state with Methods still refused. `close`: Opened → Closing (a second closer returns at once);
//! client `PreClose` (Methods still work, as in C DMF's code); rundown wait (new Method calls fail
//! with `STATUS_INVALID_DEVICE_STATE`, calls in flight finish); Module `close`; → Closed; client
//! `OnDeviceNotificationClose`.

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::any::{Any, TypeId};
use core::sync::atomic::{AtomicU8, Ordering};

pub use crate::module_gate::ModuleState;

use super::callbacks::CallbackTable;
use super::descriptor::{CallbackSet, ModuleDescriptor, OpenOption};
use super::interface::ErasedBinding;
use super::lazy::{LazyEvent, OnceBox, OnceWeak};
use super::lifecycle::{self, ClosedDuring, Event};
use super::Feature;
use crate::fallible::{try_box, try_boxed_slice, try_collect, try_to_vec, try_vec_filled};
use crate::module_gate::MethodGate;
use crate::status::NtResult;
use crate::sync::{LockKind, ModuleLock};

/// When a Module was opened (or registered for notifications): C DMF's `ModuleOpenedDuring`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpenedDuring {
    /// Not open (not registered).
    Nothing = 0,
    /// By the Module itself (`notification_open`, a NOTIFY Module).
    Manual = 1,
    /// Right after creation.
    Create = 2,
    /// In PrepareHardware.
    PrepareHardware = 3,
    /// In D0Entry.
    D0Entry = 4,
    /// In D0Entry on system power-up.
    D0EntrySystemPowerUp = 5,
}

impl OpenedDuring {
    fn from_u8(v: u8) -> OpenedDuring {
        match v {
            1 => OpenedDuring::Manual,
            2 => OpenedDuring::Create,
            3 => OpenedDuring::PrepareHardware,
            4 => OpenedDuring::D0Entry,
            5 => OpenedDuring::D0EntrySystemPowerUp,
            _ => OpenedDuring::Nothing,
        }
    }
}

/// A client event callback, erased: it rebuilds the typed handle from the object.
pub(crate) type ObjectFn = Box<dyn Fn(&Arc<ModuleObject>) -> NtResult<()> + Send + Sync>;

/// `DMF_MODULE_EVENT_CALLBACKS`, erased.
#[derive(Default)]
pub(crate) struct EventCallbacks {
    pub(crate) notification_open: Option<ObjectFn>,
    pub(crate) post_open: Option<ObjectFn>,
    pub(crate) pre_close: Option<ObjectFn>,
    pub(crate) notification_close: Option<ObjectFn>,
}

/// Device-wide data every Module of a collection shares.
pub(crate) struct DeviceShared {
    pub(crate) filter: bool,
    /// The `WDFDEVICE` the collection belongs to (`None` for a collection made without one, as
    /// the framework's own tests do).
    pub(crate) device: Option<crate::platform::Device>,
    /// The filter driver's FDO when the collection belongs to its control device.
    pub(crate) filter_device: Option<crate::platform::Device>,
    pub(crate) features: ModuleLock<Vec<(Feature, Weak<ModuleObject>)>>,
}

/// One in-flight trace entry: a static event name and an argument.
pub type TraceEntry = (&'static str, u64);

/// The last `trace_capacity` entries. Every slot is made at creation, so recording an entry
/// (possibly at DISPATCH_LEVEL) allocates nothing.
pub(crate) struct TraceRing {
    entries: Box<[TraceEntry]>,
    /// The slot written next.
    next: usize,
    /// Every slot has been written: the oldest entry is at `next`.
    wrapped: bool,
}

#[derive(Default)]
pub(crate) struct Mutable {
    pub(crate) dynamic_children: Vec<Arc<ModuleObject>>,
    pub(crate) trace: Option<TraceRing>,
    /// The DMF Interface bindings this Module is the protocol or the transport of.
    pub(crate) bindings: Vec<Arc<dyn ErasedBinding>>,
}

pub(crate) const FLAG_DYNAMIC: u8 = 1;
pub(crate) const FLAG_PASSIVE: u8 = 2;

/// The Module object (see the module docs).
pub struct ModuleObject {
    pub(crate) descriptor: &'static ModuleDescriptor,
    pub(crate) callbacks: &'static CallbackTable,
    pub(crate) cell: Box<dyn Any + Send + Sync>,
    /// `cell`'s concrete type, read once at creation: `Scope::__cell` compares against it
    /// instead of calling `Any::type_id` through the vtable on every Method.
    pub(crate) cell_type: TypeId,
    /// The state word and the rundown that gates Methods.
    pub(crate) gate: MethodGate<LazyEvent>,
    pub(crate) children: Box<[Arc<ModuleObject>]>,
    pub(crate) parent: OnceWeak<ModuleObject>,
    pub(crate) this: Weak<ModuleObject>,
    pub(crate) device: Option<Arc<DeviceShared>>,
    pub(crate) events: Option<Box<EventCallbacks>>,
    mutable: OnceBox<ModuleLock<Mutable>>,
    pub(crate) id: u32,
    opened_during: AtomicU8,
    registered_during: AtomicU8,
    pub(crate) flags: u8,
    pub(crate) transport: Option<u8>,
}

impl core::fmt::Debug for ModuleObject {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.descriptor.name)
            .field("state", &self.state())
            .field("children", &self.children.len())
            .finish_non_exhaustive()
    }
}

impl ModuleObject {
    /// The object, without children and without its `this` link (both set when its `Arc` is
    /// made). `parent` is `None` for a static child, whose parent sets the link once the parent's
    /// own `Arc` exists.
    ///
    /// # Errors
    ///
    /// Those of [`MethodGate::new`]; the gate's lazily created event allocates nothing here, so
    /// there are none in practice.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        descriptor: &'static ModuleDescriptor,
        callbacks: &'static CallbackTable,
        cell: Box<dyn Any + Send + Sync>,
        parent: Option<Weak<ModuleObject>>,
        device: Option<Arc<DeviceShared>>,
        events: Option<Box<EventCallbacks>>,
        mutable: Option<Box<ModuleLock<Mutable>>>,
        flags: u8,
        id: u32,
    ) -> NtResult<ModuleObject> {
        Ok(ModuleObject {
            descriptor,
            callbacks,
            cell_type: (*cell).type_id(),
            cell,
            gate: MethodGate::new()?,
            children: Box::default(),
            parent: parent.map_or_else(OnceWeak::new, OnceWeak::with),
            this: Weak::new(),
            device,
            events,
            mutable: mutable.map_or_else(OnceBox::new, OnceBox::from_box),
            id,
            opened_during: AtomicU8::new(0),
            registered_during: AtomicU8::new(0),
            flags,
            transport: None,
        })
    }

    /// The lock-protected mutable part for a Module with `descriptor`, if it needs one from the
    /// start (a trace ring, which may be written at DISPATCH_LEVEL where nothing is created),
    /// boxed for the object's `OnceBox`.
    pub(crate) fn new_mutable(
        descriptor: &ModuleDescriptor,
    ) -> NtResult<Option<Box<ModuleLock<Mutable>>>> {
        if descriptor.trace_capacity == 0 {
            return Ok(None);
        }
        let entries = try_vec_filled(("", 0), usize::from(descriptor.trace_capacity))?;
        let trace = TraceRing {
            entries: try_boxed_slice(entries)?,
            next: 0,
            wrapped: false,
        };
        let mutable = ModuleLock::new(
            LockKind::Spin,
            Mutable {
                trace: Some(trace),
                ..Mutable::default()
            },
        )?;
        try_box(mutable).map(Some)
    }

    /// The mutable part, created on first use (PASSIVE_LEVEL: it creates a platform lock).
    pub(crate) fn mutable(&self) -> NtResult<&ModuleLock<Mutable>> {
        self.mutable
            .get_or_try_init(|| ModuleLock::new(LockKind::Spin, Mutable::default()))
    }

    /// The mutable part, if it exists (nothing to do otherwise).
    pub(crate) fn mutable_if_any(&self) -> Option<&ModuleLock<Mutable>> {
        self.mutable.get()
    }

    /// The current state.
    #[inline]
    pub fn state(&self) -> ModuleState {
        self.gate.state()
    }

    pub(crate) fn opened_during(&self) -> OpenedDuring {
        OpenedDuring::from_u8(self.opened_during.load(Ordering::Acquire))
    }

    pub(crate) fn registered_during(&self) -> OpenedDuring {
        OpenedDuring::from_u8(self.registered_during.load(Ordering::Acquire))
    }

    #[inline]
    pub(crate) fn implements(&self, callback: CallbackSet) -> bool {
        self.descriptor.callbacks.intersects(callback)
    }

    pub(crate) fn is_dynamic(&self) -> bool {
        self.flags & FLAG_DYNAMIC != 0
    }

    /// This instance's open option (a dynamic one's may differ from the static one's).
    pub(crate) fn open_option(&self) -> OpenOption {
        self.descriptor.open_option_for(self.is_dynamic())
    }

    /// Records an in-flight trace entry (no-op without a trace ring).
    pub(crate) fn trace(&self, event: &'static str, argument: u64) {
        if self.descriptor.trace_capacity == 0 {
            return;
        }
        let Some(mutable) = self.mutable.get() else {
            return;
        };
        let mut m = mutable.lock();
        if let Some(ring) = m.trace.as_mut() {
            if let Some(slot) = ring.entries.get_mut(ring.next) {
                *slot = (event, argument);
                ring.next += 1;
                if ring.next == ring.entries.len() {
                    ring.next = 0;
                    ring.wrapped = true;
                }
            }
        }
    }

    /// The trace ring, oldest first; `STATUS_INSUFFICIENT_RESOURCES` if the copy cannot be
    /// allocated.
    pub(crate) fn trace_snapshot(&self) -> NtResult<Vec<TraceEntry>> {
        let Some(mutable) = self.mutable.get() else {
            return Ok(Vec::new());
        };
        let m = mutable.lock();
        match m.trace.as_ref() {
            None => Ok(Vec::new()),
            Some(ring) => {
                // Before `next`: the newest entries (all of them until the ring wraps); from
                // `next` on: the oldest ones, once it has wrapped.
                let (newest, oldest) = ring.entries.split_at(ring.next);
                if ring.wrapped {
                    try_collect(oldest.iter().chain(newest).copied())
                } else {
                    try_to_vec(newest)
                }
            }
        }
    }

    fn event(
        this: &Arc<ModuleObject>,
        pick: fn(&EventCallbacks) -> Option<&ObjectFn>,
    ) -> NtResult<()> {
        match this.events.as_deref().and_then(pick) {
            Some(f) => f(this),
            None => Ok(()),
        }
    }

    /// `DMF_Internal_Open` on this one Module (not its children).
    pub(crate) fn open(this: &Arc<ModuleObject>, during: OpenedDuring) -> NtResult<()> {
        let previous = this.gate.begin_open()?;
        // The event close's rundown wait sleeps on: created here, where a failure can be
        // reported, so that no wait or signal has to create it.
        let result = this
            .gate
            .event()
            .prepare()
            .and_then(|()| Self::event(this, |e| e.notification_open.as_ref()))
            .and_then(|()| {
                if this.implements(CallbackSet::OPEN) {
                    this.callbacks.open(this)
                } else {
                    Ok(())
                }
            });
        if let Err(status) = result {
            this.trace("open failed", u64::from(status.to_bits()));
            lifecycle::record(this, Event::OpenFailed(during, status));
            this.gate.cancel_open(previous);
            return Err(status);
        }
        this.opened_during.store(during as u8, Ordering::Release);
        // Re-arms the rundown, then Opened.
        this.gate.finish_open();
        this.trace("open", during as u64);
        lifecycle::record(this, Event::Opened(during));
        let _ = Self::event(this, |e| e.post_open.as_ref());
        Ok(())
    }

    /// `DMF_Internal_Close` on this one Module, by the phase `during`; returns `false` if it was
    /// not open (close-once).
    pub(crate) fn close(this: &Arc<ModuleObject>, during: ClosedDuring) -> bool {
        if !this.gate.begin_close() {
            return false;
        }
        let _ = Self::event(this, |e| e.pre_close.as_ref());
        this.gate.wait_for_methods();
        if this.implements(CallbackSet::CLOSE) {
            this.callbacks.close(this);
        }
        this.opened_during.store(0, Ordering::Release);
        this.gate.finish_close();
        this.trace("close", 0);
        lifecycle::record(this, Event::Closed(during));
        let _ = Self::event(this, |e| e.notification_close.as_ref());
        true
    }

    /// NotificationRegister on this one Module.
    pub(crate) fn register(this: &Arc<ModuleObject>, during: OpenedDuring) -> NtResult<()> {
        if this.registered_during() != OpenedDuring::Nothing {
            return Ok(());
        }
        if this.implements(CallbackSet::NOTIFICATION_REGISTER) {
            this.callbacks.notification_register(this)?;
        }
        this.registered_during
            .store(during as u8, Ordering::Release);
        this.trace("register", during as u64);
        lifecycle::record(this, Event::Registered(during));
        Ok(())
    }

    /// NotificationUnregister on this one Module, by the phase `during`, then close it if its
    /// notification left it open.
    pub(crate) fn unregister(this: &Arc<ModuleObject>, during: ClosedDuring) {
        if this.registered_during.swap(0, Ordering::AcqRel) == 0 {
            return;
        }
        if this.implements(CallbackSet::NOTIFICATION_UNREGISTER) {
            this.callbacks.notification_unregister(this);
        }
        this.trace("unregister", 0);
        lifecycle::record(this, Event::Unregistered(during));
        Self::close(this, during);
    }

    /// Closes (parent first, children backward) and unregisters the whole tree, dynamic children
    /// included: the first half of destruction.
    pub(crate) fn close_tree(this: &Arc<ModuleObject>) {
        super::interface::unbind_all(this);
        Self::unregister(this, ClosedDuring::Destroy);
        Self::close(this, ClosedDuring::Destroy);
        let dynamic = this
            .mutable_if_any()
            .map(|m| core::mem::take(&mut m.lock().dynamic_children))
            .unwrap_or_default();
        for child in dynamic.iter().rev() {
            Self::close_tree(child);
            Self::destroy_tree(child);
        }
        for child in this.children.iter().rev() {
            Self::close_tree(child);
        }
    }

    /// Destroys the tree, children first, each Module exactly once.
    pub(crate) fn destroy_tree(this: &Arc<ModuleObject>) {
        for child in &*this.children {
            Self::destroy_tree(child);
        }
        // Destroying a Module unbinds its interfaces (as C DMF's `DMF_ModuleInterfacesUnbind` does
        // from `DmfCore.c`); `close_tree` already did unless a binding was made after it.
        super::interface::unbind_all(this);
        if !this.gate.begin_destroy() {
            return;
        }
        if this.implements(CallbackSet::DESTROY) {
            this.callbacks.destroy(this);
        }
        this.trace("destroy", 0);
        lifecycle::record(this, Event::Destroyed);
        this.gate.finish_destroy();
    }

    /// Marks a Module whose creation failed half-way as destroyed without calling it.
    pub(crate) fn discard(&self) {
        self.gate.finish_destroy();
    }
}
