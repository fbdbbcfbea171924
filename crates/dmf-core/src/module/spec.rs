//! Adding and creating Modules: [`ModuleSpec`] (what `RingBuffer::with(config)` returns),
//! [`ModuleInit`] (the add list of a client or a parent) and the recursive creation.
//!
//! # Design
//!
//! `ModuleInit::add` only records; creation happens when the collection is created (client) or
//! right after the parent's `child_modules_add` returns (children). The spec carries everything C
//! DMF spreads over `DMF_CONFIG_<Name>`, `DMF_MODULE_ATTRIBUTES` and `DMF_MODULE_EVENT_CALLBACKS`:
//! the config (moved in — the Module's private copy), `passive_level`, the client's event callbacks
//! and the Transport creator. Errors are `Result`s, never latched in a void Add: a child list over
//! the parent's limit fails the parent's creation with `STATUS_INSUFFICIENT_RESOURCES`, nothing is
//! dropped silently. Building a spec allocates (the erased config and callbacks); if an allocation
//! fails, the spec carries the status and the creation it is added to (or the dynamic `create`)
//! fails with it.
//!
//! Creation of one Module: validate (lock kind, aux-lock count, dynamic rules, transport), build the
//! private cell (config, context, locks), build the object, run `child_modules_add`, check the
//! child limit and the open-option compatibility rule (C DMF checks it in `DmfCall.c`'s
//! `DMF_Module_OpenOrRegisterNotificationOnCreate`), create the declared children, then call the
//! Transport creator exactly once and create the Transport as one more child; finally put the
//! object in its `Arc` and link the children to it (children exist before their parent's `Arc`, so
//! their parent link is set last). Any failure destroys what was created and returns the status.

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::any::Any;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, Ordering};

use super::callbacks::{CallbackTable, Shim};
use super::descriptor::{CallbackSet, ModuleDescriptor, OpenOption};
use super::object::{DeviceShared, EventCallbacks, ModuleObject, FLAG_DYNAMIC, FLAG_PASSIVE};
use super::scope::{handle_of, Added, Module, ModuleCell};
use crate::fallible::{try_arc_cyclic, try_box, VecExt};
use crate::status::{NtResult, NtStatus};
use crate::sync::{AuxiliaryLocks, LockKind, ModuleLock, ModuleOptions};

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

pub(crate) fn next_id() -> u32 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

type MakeCell = Box<dyn FnOnce(LockKind, usize) -> NtResult<Box<dyn Any + Send + Sync>> + Send>;
type TransportCreator = Box<dyn FnOnce(&mut ModuleInit) -> NtResult<()> + Send>;

pub(crate) struct ErasedSpec {
    pub(crate) descriptor: &'static ModuleDescriptor,
    make_cell: MakeCell,
    callbacks: &'static CallbackTable,
    passive_level: bool,
    events: EventCallbacks,
    transport_creator: Option<TransportCreator>,
}

/// An add-able Module: `DMF_CONFIG_<Name>_AND_ATTRIBUTES_INIT` plus the attributes, built by the
/// generated `<Name>::with(config)` and refined with the builder methods.
///
/// Building a spec allocates; if an allocation fails the spec carries
/// `STATUS_INSUFFICIENT_RESOURCES`, which fails the collection it is added to (or the dynamic
/// `create`), so the builder methods need no error handling of their own.
#[must_use = "a Module spec does nothing until it is added or created"]
pub struct ModuleSpec<M> {
    /// The erased spec, or the status of the allocation that failed while building it.
    pub(crate) erased: NtResult<ErasedSpec>,
    _m: PhantomData<fn() -> M>,
}

impl<M: Module> core::fmt::Debug for ModuleSpec<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("ModuleSpec");
        d.field("module", &M::DESCRIPTOR.name);
        match &self.erased {
            Ok(erased) => d.field("passive_level", &erased.passive_level),
            Err(status) => d.field("error", status),
        };
        d.finish_non_exhaustive()
    }
}

fn erase<M: Module>(
    f: impl Fn(&M) -> NtResult<()> + Send + Sync + 'static,
) -> NtResult<super::object::ObjectFn> {
    let erased: super::object::ObjectFn =
        try_box(move |object: &Arc<ModuleObject>| f(&handle_of::<M>(object)?))?;
    Ok(erased)
}

impl<M: Module> ModuleSpec<M> {
    /// Applies `change` to the erased spec; a failure replaces the spec with its status.
    fn change(mut self, change: impl FnOnce(&mut ErasedSpec) -> NtResult<()>) -> Self {
        if let Ok(erased) = &mut self.erased {
            if let Err(status) = change(erased) {
                self.erased = Err(status);
            }
        }
        self
    }

    /// `DMF_MODULE_ATTRIBUTES.PassiveLevel`: PASSIVE_LEVEL locks for a
    /// `DISPATCH_MAXIMUM` Module (refused for a `DISPATCH` one).
    pub fn passive_level(self, passive: bool) -> Self {
        self.change(|erased| {
            erased.passive_level = passive;
            Ok(())
        })
    }

    /// `EvtModuleOnDeviceNotificationOpen`: called before the Module's Open; an error
    /// vetoes the open.
    pub fn on_device_notification_open(
        self,
        f: impl Fn(&M) -> NtResult<()> + Send + Sync + 'static,
    ) -> Self {
        self.change(|erased| {
            erased.events.notification_open = Some(erase(f)?);
            Ok(())
        })
    }

    /// `EvtModuleOnDeviceNotificationPostOpen`: the Module is open; Methods may be called.
    pub fn on_post_open(self, f: impl Fn(&M) + Send + Sync + 'static) -> Self {
        self.change(|erased| {
            erased.events.post_open = Some(erase(move |m: &M| {
                f(m);
                Ok(())
            })?);
            Ok(())
        })
    }

    /// `EvtModuleOnDeviceNotificationPreClose`: the Module is about to close (Methods still work).
    pub fn on_pre_close(self, f: impl Fn(&M) + Send + Sync + 'static) -> Self {
        self.change(|erased| {
            erased.events.pre_close = Some(erase(move |m: &M| {
                f(m);
                Ok(())
            })?);
            Ok(())
        })
    }

    /// `EvtModuleOnDeviceNotificationClose`: the Module is closed; Methods fail.
    pub fn on_device_notification_close(self, f: impl Fn(&M) + Send + Sync + 'static) -> Self {
        self.change(|erased| {
            erased.events.notification_close = Some(erase(move |m: &M| {
                f(m);
                Ok(())
            })?);
            Ok(())
        })
    }

    /// `DMF_MODULE_ATTRIBUTES.TransportsCreator`: for a `TRANSPORT_REQUIRED` Module,
    /// called exactly once after the Module and its children exist; it must add exactly one Module
    /// that implements `transport_method`.
    pub fn transport(
        self,
        creator: impl FnOnce(&mut ModuleInit) -> NtResult<()> + Send + 'static,
    ) -> Self {
        self.change(|erased| {
            let creator: TransportCreator = try_box(creator)?;
            erased.transport_creator = Some(creator);
            Ok(())
        })
    }
}

/// Builds the spec of Module `M` with config `Cfg`, context `C` (from `Default`) and private key
/// `K`. Called by the `with` function `#[dmf_module]` generates.
#[doc(hidden)]
pub fn spec<M, Cfg, C, S, K>(config: Cfg) -> ModuleSpec<M>
where
    M: Module,
    Cfg: Send + Sync + 'static,
    C: Default + Send + 'static,
    S: super::ModuleShared<Cfg>,
    K: 'static,
{
    let make_cell = try_box(
        move |kind: LockKind, aux: usize| -> NtResult<Box<dyn Any + Send + Sync>> {
            let shared = S::new(&config)?;
            let cell = ModuleCell::<K, Cfg, C, S>::new(
                config,
                ModuleLock::new(kind, C::default())?,
                shared,
                AuxiliaryLocks::new(kind, aux)?,
            );
            let cell: Box<dyn Any + Send + Sync> = try_box(cell)?;
            Ok(cell)
        },
    );
    ModuleSpec {
        erased: make_cell.map(|make_cell| ErasedSpec {
            descriptor: const { &M::DESCRIPTOR },
            make_cell,
            callbacks: const { &Shim::<M>::TABLE },
            passive_level: false,
            events: EventCallbacks::default(),
            transport_creator: None,
        }),
        _m: PhantomData,
    }
}

/// `PDMFMODULE_INIT`: the list a client (`EvtDmfDeviceModulesAdd`) or a parent
/// (`ChildModulesAdd`) adds Modules to. Adding only records.
pub struct ModuleInit {
    pub(crate) owner: u32,
    pub(crate) entries: Vec<ErasedSpec>,
    pub(crate) features: Vec<(super::Feature, u16)>,
    pub(crate) error: Option<NtStatus>,
}

impl core::fmt::Debug for ModuleInit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ModuleInit")
            .field("modules", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Default for ModuleInit {
    fn default() -> Self {
        Self::new()
    }
}

impl ModuleInit {
    /// An empty add list for a client's collection.
    pub fn new() -> ModuleInit {
        Self::with_owner(next_id())
    }

    pub(crate) fn with_owner(owner: u32) -> ModuleInit {
        ModuleInit {
            owner,
            entries: Vec::new(),
            features: Vec::new(),
            error: None,
        }
    }

    /// `DMF_DmfModuleAdd`: records the Module; the token resolves to its handle after
    /// creation, only through this list's owner. A spec whose building failed, or a list that
    /// cannot grow, records `STATUS_INSUFFICIENT_RESOURCES`, which fails the creation.
    pub fn add<M: Module>(&mut self, spec: ModuleSpec<M>) -> Added<M> {
        let index = u16::try_from(self.entries.len()).unwrap_or(u16::MAX);
        if let Err(status) = spec.erased.and_then(|erased| self.entries.try_push(erased)) {
            self.error.get_or_insert(status);
        }
        Added::new(self.owner, index)
    }

    /// How many Modules were added.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` if nothing was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Where a new Module sits.
#[derive(Clone)]
pub(crate) struct Placement {
    /// `None` for a static child: its parent links it once the parent's own `Arc` exists.
    pub(crate) parent: Option<Weak<ModuleObject>>,
    pub(crate) device: Option<Arc<DeviceShared>>,
    pub(crate) dynamic: bool,
}

fn validate(spec: &ErasedSpec, dynamic: bool) -> NtResult<LockKind> {
    let d = spec.descriptor;
    let kind = LockKind::for_module(d.options, spec.passive_level)?;
    if usize::from(d.aux_locks) > crate::sync::MAXIMUM_AUXILIARY_LOCKS {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if dynamic && !d.dynamic_open_option.is_create() {
        // Dynamic Modules open on create: C DMF's `DMF_ModuleCreate` (`DmfCore.c`) refuses a
        // dynamic Module whose open option is not `OPEN_Create` or `NOTIFY_Create`. They receive
        // no WDF callbacks because they are not in any dispatch order; a Module type that
        // implements some may still be created dynamically, as in C DMF, where such Modules check
        // `DMF_ModuleIsDynamic` and do without them.
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if d.options.contains(ModuleOptions::TRANSPORT_REQUIRED) != spec.transport_creator.is_some() {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    Ok(kind)
}

fn check_children(parent: &ModuleObject, children: &[ErasedSpec]) -> NtResult<()> {
    if children.len() > usize::from(parent.descriptor.child_limit) {
        return Err(NtStatus::INSUFFICIENT_RESOURCES);
    }
    // The children of a dynamic Module are dynamic too.
    let dynamic = parent.is_dynamic();
    for child in children {
        if !OpenOption::compatible_child(
            parent.open_option(),
            child.descriptor.open_option_for(dynamic),
        ) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
    }
    Ok(())
}

fn destroy_all(created: &[Arc<ModuleObject>]) {
    for object in created {
        ModuleObject::destroy_tree(object);
    }
}

/// `vec` as a boxed slice; when that needs an allocation that fails, `vec` comes back with the
/// status, for the caller to unwind (created Modules are destroyed, never just dropped). A vector
/// reserved exactly and filled has no spare capacity and converts without allocating.
pub(crate) fn boxed_exact<T>(vec: Vec<T>) -> Result<Box<[T]>, (NtStatus, Vec<T>)> {
    let exact = if vec.capacity() == vec.len() {
        vec
    } else {
        let mut exact = Vec::new();
        match exact.try_reserve_exact_nt(vec.len()) {
            Ok(()) if exact.capacity() == vec.len() => {
                exact.extend(vec);
                exact
            }
            // The allocator gave more than asked: shrinking could reallocate, which must not fail.
            Ok(()) => return Err((NtStatus::INSUFFICIENT_RESOURCES, vec)),
            Err(status) => return Err((status, vec)),
        }
    };
    #[allow(
        clippy::disallowed_methods,
        reason = "no spare capacity: into_boxed_slice does not reallocate"
    )]
    let boxed = exact.into_boxed_slice();
    Ok(boxed)
}

/// Creates every Module of `specs` (each with its subtree); on failure destroys those created.
/// The result has no spare capacity.
pub(crate) fn create_all(
    specs: Vec<ErasedSpec>,
    placement: &Placement,
) -> NtResult<Vec<Arc<ModuleObject>>> {
    let mut created = Vec::new();
    created.try_reserve_exact_nt(specs.len())?;
    for spec in specs {
        // The push does not allocate (room reserved above); should it fail anyway, the Module
        // is destroyed with the others rather than dropped.
        let kept = create_tree(spec, placement).and_then(|object| {
            created
                .try_push(Arc::clone(&object))
                .inspect_err(|_| ModuleObject::destroy_tree(&object))
        });
        if let Err(status) = kept {
            destroy_all(&created);
            return Err(status);
        }
    }
    Ok(created)
}

/// `DMF_ModuleCreate`: one Module and its subtree, created but not opened.
pub(crate) fn create_tree(spec: ErasedSpec, placement: &Placement) -> NtResult<Arc<ModuleObject>> {
    let kind = validate(&spec, placement.dynamic)?;
    let ErasedSpec {
        descriptor,
        make_cell,
        callbacks,
        passive_level: _,
        events,
        transport_creator,
    } = spec;
    let cell = make_cell(kind, usize::from(descriptor.aux_locks))?;
    let mutable = ModuleObject::new_mutable(descriptor)?;
    let has_events = events.notification_open.is_some()
        || events.post_open.is_some()
        || events.pre_close.is_some()
        || events.notification_close.is_some();
    let events = if has_events {
        Some(try_box(events)?)
    } else {
        None
    };
    let mut flags = 0;
    if placement.dynamic {
        flags |= FLAG_DYNAMIC;
    }
    // DMF_ModuleIsPassiveLevel: a PASSIVE Module, or a DISPATCH_MAXIMUM one the client asked to
    // run at PASSIVE_LEVEL — exactly the Modules whose locks are wait locks.
    if kind == LockKind::Wait {
        flags |= FLAG_PASSIVE;
    }
    let mut object = ModuleObject::new(
        descriptor,
        callbacks,
        cell,
        placement.parent.clone(),
        placement.device.clone(),
        events,
        mutable,
        flags,
        next_id(),
    )?;
    let mut children = match create_children(&object, placement, transport_creator) {
        Ok((children, transport)) => {
            object.transport = transport;
            children
        }
        Err(status) => {
            object.discard();
            return Err(status);
        }
    };
    // The closure only assembles: everything was allocated and created above. The children stay
    // here until it runs, so that they can be destroyed if the `Arc` cannot be allocated.
    let object = match try_arc_cyclic(|this: &Weak<ModuleObject>| {
        object.this = this.clone();
        object.children = core::mem::take(&mut children);
        object
    }) {
        Ok(object) => object,
        Err(status) => {
            destroy_all(&children);
            return Err(status);
        }
    };
    for child in &*object.children {
        child.parent.set(Arc::downgrade(&object));
    }
    object.trace("create", 0);
    Ok(object)
}

/// A Module's static children.
type Children = Box<[Arc<ModuleObject>]>;

/// Runs `object`'s `child_modules_add` and the Transport creator and creates the children they
/// add: the children (Transport last) and the Transport's index. On failure nothing is left
/// created.
fn create_children(
    object: &ModuleObject,
    placement: &Placement,
    transport_creator: Option<TransportCreator>,
) -> NtResult<(Children, Option<u8>)> {
    let mut init = ModuleInit::with_owner(object.id);
    if object.implements(CallbackSet::CHILD_MODULES_ADD) {
        object.callbacks.child_modules_add(object, &mut init);
    }
    if let Some(status) = init.error {
        return Err(status);
    }
    check_children(object, &init.entries)?;
    let child_placement = Placement {
        parent: None,
        device: placement.device.clone(),
        dynamic: placement.dynamic,
    };
    let mut children = create_all(core::mem::take(&mut init.entries), &child_placement)?;
    let mut transport_index = None;
    if let Some(creator) = transport_creator {
        let result = (|| {
            let mut transport_init = ModuleInit::with_owner(object.id);
            creator(&mut transport_init)?;
            if let Some(status) = transport_init.error {
                return Err(status);
            }
            let mut entries = transport_init.entries;
            if entries.len() != 1
                || !entries[0]
                    .descriptor
                    .callbacks
                    .contains(CallbackSet::TRANSPORT_METHOD)
            {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            if children.len() + 1 > usize::from(object.descriptor.child_limit) {
                return Err(NtStatus::INSUFFICIENT_RESOURCES);
            }
            check_children(object, &entries[..])?;
            // Room for the Transport before it is created, so that keeping it does not
            // allocate; should it fail anyway, the Transport is destroyed rather than dropped.
            children.try_reserve_exact_nt(1)?;
            let transport = create_tree(entries.remove(0), &child_placement)?;
            let index = u8::try_from(children.len()).ok();
            children
                .try_push(Arc::clone(&transport))
                .inspect_err(|_| ModuleObject::destroy_tree(&transport))?;
            Ok(index)
        })();
        match result {
            Ok(index) => transport_index = index,
            Err(status) => {
                destroy_all(&children);
                return Err(status);
            }
        }
    }
    match boxed_exact(children) {
        Ok(children) => Ok((children, transport_index)),
        Err((status, children)) => {
            destroy_all(&children);
            Err(status)
        }
    }
}

/// Resolves a token against a list of created Modules owned by `owner`.
pub(crate) fn resolve<M: Module>(
    owner: u32,
    list: &[Arc<ModuleObject>],
    token: Added<M>,
) -> NtResult<M> {
    if token.owner != owner {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    handle_of(
        list.get(usize::from(token.index))
            .ok_or(NtStatus::INVALID_PARAMETER)?,
    )
}
