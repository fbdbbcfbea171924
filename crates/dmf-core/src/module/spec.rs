//! Adding and creating Modules: [`ModuleSpec`] (what `RingBuffer::with(config)` returns),
//! [`ModuleInit`] (the add list of a client or a parent) and the recursive creation.
//!
//! # Design
//!
//! `ModuleInit::add` only records (CLI-42, Top 25 #12); creation happens when the collection is
//! created (client) or right after the parent's `child_modules_add` returns (children, MOD-50).
//! The spec carries everything C DMF spreads over `DMF_CONFIG_<Name>`, `DMF_MODULE_ATTRIBUTES`
//! and `DMF_MODULE_EVENT_CALLBACKS` (MOD-20…MOD-27): the config (moved in — the Module's private
//! copy, Top 25 #14), `passive_level` (MOD-24), the client's event callbacks (MOD-25) and the
//! Transport creator (MOD-102). Errors are `Result`s, never latched in a void Add: a child list
//! over the parent's limit (MOD-10, Top 25 #18) fails the parent's creation with
//! `STATUS_INSUFFICIENT_RESOURCES`, nothing is dropped silently.
//!
//! Creation of one Module: validate (lock kind, aux-lock count, dynamic rules, transport), build the
//! private cell (config, context, locks), build the object, run `child_modules_add`, check the
//! child limit and the open-option compatibility rule (dmf-upstream §2.5), create the declared
//! children, then call the Transport creator exactly once and create the Transport as one more
//! child (Top 25 #16). Any failure destroys what was created and returns the status.

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
#[must_use = "a Module spec does nothing until it is added or created"]
pub struct ModuleSpec<M> {
    pub(crate) erased: ErasedSpec,
    _m: PhantomData<fn() -> M>,
}

impl<M: Module> core::fmt::Debug for ModuleSpec<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ModuleSpec")
            .field("module", &M::DESCRIPTOR.name)
            .field("passive_level", &self.erased.passive_level)
            .finish_non_exhaustive()
    }
}

fn erase<M: Module>(
    f: impl Fn(&M) -> NtResult<()> + Send + Sync + 'static,
) -> super::object::ObjectFn {
    Box::new(move |object: &Arc<ModuleObject>| f(&handle_of::<M>(object)?))
}

impl<M: Module> ModuleSpec<M> {
    /// `DMF_MODULE_ATTRIBUTES.PassiveLevel` (MOD-24): PASSIVE_LEVEL locks for a
    /// `DISPATCH_MAXIMUM` Module (refused for a `DISPATCH` one).
    pub fn passive_level(mut self, passive: bool) -> Self {
        self.erased.passive_level = passive;
        self
    }

    /// `EvtModuleOnDeviceNotificationOpen` (MOD-25): called before the Module's Open; an error
    /// vetoes the open (Top 25 #7).
    pub fn on_device_notification_open(
        mut self,
        f: impl Fn(&M) -> NtResult<()> + Send + Sync + 'static,
    ) -> Self {
        self.erased.events.notification_open = Some(erase(f));
        self
    }

    /// `EvtModuleOnDeviceNotificationPostOpen`: the Module is open; Methods may be called.
    pub fn on_post_open(mut self, f: impl Fn(&M) + Send + Sync + 'static) -> Self {
        self.erased.events.post_open = Some(erase(move |m: &M| {
            f(m);
            Ok(())
        }));
        self
    }

    /// `EvtModuleOnDeviceNotificationPreClose`: the Module is about to close (Methods still work).
    pub fn on_pre_close(mut self, f: impl Fn(&M) + Send + Sync + 'static) -> Self {
        self.erased.events.pre_close = Some(erase(move |m: &M| {
            f(m);
            Ok(())
        }));
        self
    }

    /// `EvtModuleOnDeviceNotificationClose`: the Module is closed; Methods fail.
    pub fn on_device_notification_close(mut self, f: impl Fn(&M) + Send + Sync + 'static) -> Self {
        self.erased.events.notification_close = Some(erase(move |m: &M| {
            f(m);
            Ok(())
        }));
        self
    }

    /// `DMF_MODULE_ATTRIBUTES.TransportsCreator` (MOD-102): for a `TRANSPORT_REQUIRED` Module,
    /// called exactly once after the Module and its children exist; it must add exactly one Module
    /// that implements `transport_method`.
    pub fn transport(
        mut self,
        creator: impl FnOnce(&mut ModuleInit) -> NtResult<()> + Send + 'static,
    ) -> Self {
        self.erased.transport_creator = Some(Box::new(creator));
        self
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
    let make_cell: MakeCell = Box::new(move |kind, aux| {
        let shared = S::new(&config)?;
        let cell = ModuleCell::<K, Cfg, C, S>::new(
            config,
            ModuleLock::new(kind, C::default())?,
            shared,
            AuxiliaryLocks::new(kind, aux)?,
        );
        Ok(Box::new(cell) as Box<dyn Any + Send + Sync>)
    });
    ModuleSpec {
        erased: ErasedSpec {
            descriptor: const { &M::DESCRIPTOR },
            make_cell,
            callbacks: const { &Shim::<M>::TABLE },
            passive_level: false,
            events: EventCallbacks::default(),
            transport_creator: None,
        },
        _m: PhantomData,
    }
}

/// `PDMFMODULE_INIT`: the list a client (`EvtDmfDeviceModulesAdd`, CLI-40) or a parent
/// (`ChildModulesAdd`, MOD-50) adds Modules to. Adding only records.
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

    /// `DMF_DmfModuleAdd` (CLI-42): records the Module; the token resolves to its handle after
    /// creation, only through this list's owner.
    pub fn add<M: Module>(&mut self, spec: ModuleSpec<M>) -> Added<M> {
        let index = u16::try_from(self.entries.len()).unwrap_or(u16::MAX);
        if self.entries.try_reserve(1).is_err() {
            self.error.get_or_insert(NtStatus::INSUFFICIENT_RESOURCES);
        } else {
            self.entries.push(spec.erased);
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
    pub(crate) parent: Weak<ModuleObject>,
    pub(crate) device: Option<Arc<DeviceShared>>,
    pub(crate) dynamic: bool,
}

fn validate(spec: &ErasedSpec, dynamic: bool) -> NtResult<LockKind> {
    let d = spec.descriptor;
    let kind = LockKind::for_module(d.options, spec.passive_level)?;
    if usize::from(d.aux_locks) > crate::sync::MAXIMUM_AUXILIARY_LOCKS {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if dynamic && !d.open_option.is_create() {
        // MOD-91, dmf-upstream §2.5: dynamic Modules open on create. They receive no WDF
        // callbacks (Top 25 #15) because they are not in any dispatch order; a Module type that
        // implements some may still be created dynamically, as in C DMF, where such Modules check
        // `DMF_ModuleIsDynamic` (MOD-68) and do without them.
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if d.options.contains(ModuleOptions::TRANSPORT_REQUIRED) != spec.transport_creator.is_some() {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    Ok(kind)
}

fn check_children(parent: &ModuleDescriptor, children: &[ErasedSpec]) -> NtResult<()> {
    if children.len() > usize::from(parent.child_limit) {
        return Err(NtStatus::INSUFFICIENT_RESOURCES);
    }
    for child in children {
        if !OpenOption::compatible_child(parent.open_option, child.descriptor.open_option) {
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

/// Creates every Module of `specs` (each with its subtree); on failure destroys those created.
pub(crate) fn create_all(
    specs: Vec<ErasedSpec>,
    placement: &Placement,
) -> NtResult<Vec<Arc<ModuleObject>>> {
    let mut created = Vec::new();
    created
        .try_reserve_exact(specs.len())
        .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
    for spec in specs {
        match create_tree(spec, placement) {
            Ok(object) => created.push(object),
            Err(status) => {
                destroy_all(&created);
                return Err(status);
            }
        }
    }
    Ok(created)
}

/// `DMF_ModuleCreate` (MOD-60, MOD-61): one Module and its subtree, created but not opened.
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
    let mut flags = 0;
    if placement.dynamic {
        flags |= FLAG_DYNAMIC;
    }
    // DMF_ModuleIsPassiveLevel: a PASSIVE Module, or a DISPATCH_MAXIMUM one the client asked to
    // run at PASSIVE_LEVEL — exactly the Modules whose locks are wait locks.
    if kind == LockKind::Wait {
        flags |= FLAG_PASSIVE;
    }
    let mut failure = None;
    let object = Arc::new_cyclic(|this: &Weak<ModuleObject>| {
        let mut object = ModuleObject::new(
            descriptor,
            callbacks,
            cell,
            this.clone(),
            placement.parent.clone(),
            placement.device.clone(),
            has_events.then(|| Box::new(events)),
            mutable,
            flags,
            next_id(),
        );
        match create_children(&mut object, this, placement, transport_creator) {
            Ok(()) => {}
            Err(status) => {
                object.discard();
                failure = Some(status);
            }
        }
        object
    });
    match failure {
        None => {
            object.trace("create", 0);
            Ok(object)
        }
        Some(status) => Err(status),
    }
}

fn create_children(
    object: &mut ModuleObject,
    this: &Weak<ModuleObject>,
    placement: &Placement,
    transport_creator: Option<TransportCreator>,
) -> NtResult<()> {
    let mut init = ModuleInit::with_owner(object.id);
    if object.implements(CallbackSet::CHILD_MODULES_ADD) {
        object.callbacks.child_modules_add(object, &mut init);
    }
    if let Some(status) = init.error {
        return Err(status);
    }
    check_children(object.descriptor, &init.entries)?;
    let child_placement = Placement {
        parent: this.clone(),
        device: placement.device.clone(),
        dynamic: placement.dynamic,
    };
    let mut children = create_all(core::mem::take(&mut init.entries), &child_placement)?;
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
            check_children(object.descriptor, &entries[..])?;
            let transport = create_tree(entries.remove(0), &child_placement)?;
            Ok(transport)
        })();
        match result {
            Ok(transport) => {
                object.transport = u8::try_from(children.len()).ok();
                children.push(transport);
            }
            Err(status) => {
                destroy_all(&children);
                return Err(status);
            }
        }
    }
    object.children = children.into_boxed_slice();
    Ok(())
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
