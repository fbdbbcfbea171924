//! The Module collection of one device, and the phase functions the device integration calls.
//!
//! # Design
//!
//! [`ModuleCollection::create`] is `DMF_ModulesCreate` minus the device (C DMF's
//! `DMF_ModuleCollectionCreate` and `DMF_ModuleCollectionPostCreate` in `DmfModuleCollection.c`):
//! it creates every Module the client added (with their subtrees), then opens the `OPEN_Create`
//! Modules and registers the `NOTIFY_Create` ones, children first. If anything fails it closes what
//! it opened, destroys what it created and returns the status — nothing is left half-created or
//! open.
//!
//! Each WDF callback has one method here that calls the Modules in the order
//! [`dispatch_table::row`] gives (invariant 6) and calls the client stand-in ([`ClientCallbacks`],
//! the slot C DMF's Bridge Module fills) before or after the Modules. The phase callbacks also do
//! the automatic open and close each Module's open option prescribes, **in addition to** the
//! Module's own callback — unlike C DMF, where implementing ModulePrepareHardware replaces the
//! generic handler that opens (`DMF_Generic_ModulePrepareHardware` in `DmfGeneric.c`; the same
//! holds for ModuleD0Entry). On the way up a Module's own callback runs first, then the framework
//! opens it (so `prepare_hardware` sees the resources before `open`); on the way down the framework
//! closes it first, then its own callback runs. A failing phase closes (and unregisters) exactly
//! the Modules it opened (and registered), in reverse order, and returns the status: the failing
//! Module's open is never attempted, ReleaseHardware still reaches every Module (WDF calls it after
//! a failed PrepareHardware), and D0Exit is not dispatched after a failed D0Entry (WDF does not
//! call it).
//!
//! # Precomputed orders (the dispatch fast path)
//!
//! The static tree is fixed once the collection exists, so [`ModuleCollection::create`] walks it
//! once per WDF callback, in that callback's row order (the same `walk` over THE table that the DMF
//! rows use at run time), and keeps a flat array of the Modules that take part: those whose
//! [`CallbackSet`] has the callback, plus, for the four phase callbacks, those whose open option
//! acts in that phase. A dispatch is then a loop over one slice of `(object, callback table)` pairs:
//! Modules without the callback are never touched, and there is no recursion, no `TypeId` check
//! and no atomic operation per step. The phase functions run their open-option logic only when
//! some Module in that callback's order has a phase-dependent option (a precomputed flag). The
//! cost is 16 bytes per implemented WDF callback per Module, in one allocation per collection.
//!
//! `OPEN_D0EntrySystemPowerUp` without the system power action in the contract yet: it opens in
//! D0Entry when it is not open (first start, or after a system-sleep close) and closes in D0Exit
//! when the target is `D3Final` or `PrepareForHibernation`.

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use super::callback_list::callback_list;
use super::callbacks::{CallbackTable, Handled, IoRequest};
use super::descriptor::{CallbackSet, OpenOption};
use super::dispatch_table::{self, Callback, ClientOrder, Row, Siblings, Tree, Unhandled};
use super::lifecycle::{self, ClosedDuring};
use super::object::{DeviceShared, ModuleObject, ModuleState, OpenedDuring};
use super::scope::{handle_of, Added, Module};
use super::spec::{boxed_exact, create_all, resolve, ModuleInit, Placement};
use super::Feature;
use crate::fallible::{try_arc, try_boxed_slice, try_vec_with_capacity, VecExt};
use crate::platform::contract::device::{PlatformDevice, PowerDeviceState};
use crate::platform::Resources;
use crate::status::{NtResult, NtStatus};
use crate::sync::{LockKind, ModuleLock};

/// The client driver's place in the dispatch (C DMF's Bridge Module): the device integration
/// forwards to the client's registered WDF callbacks here. Defaults: success / not handled.
pub trait ClientCallbacks: Send + Sync {
    /// Called at the client's position of `callback`'s row. For request callbacks return
    /// `Ok(Handled::Handled)` to take the request.
    fn callback(&self, callback: Callback) -> NtResult<Handled> {
        let _ = callback;
        Ok(Handled::NotHandled)
    }
}

/// How a collection is set up (what `DMFDEVICE_INIT` carries that is not about WDF).
#[derive(Default, Clone)]
pub struct CollectionConfig {
    /// `DMF_DmfFdoSetFilter` was called: `is_in_filter_driver` is `true` and unhandled
    /// requests pass down.
    pub filter: bool,
    /// The client's callbacks.
    pub client: Option<Arc<dyn ClientCallbacks>>,
    /// The device the Modules belong to (`DMF_ParentDeviceGet`); the device integration sets it.
    pub device: Option<crate::platform::Device>,
    /// `DMF_DmfControlDeviceInitSetClientDriverDevice`: for a collection on a filter
    /// driver's control device, the filter's own device (`DMF_FilterDeviceGet`).
    pub filter_device: Option<crate::platform::Device>,
}

impl core::fmt::Debug for CollectionConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CollectionConfig")
            .field("filter", &self.filter)
            .field("client", &self.client.is_some())
            .field("device", &self.device)
            .field("filter_device", &self.filter_device)
            .finish()
    }
}

/// What became of a request after the dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestDisposition {
    /// A Module or the client took it (and owns its completion).
    Handled,
    /// Nobody took it: apply this policy.
    Unhandled(Unhandled),
}

/// The Modules of one device (C DMF's Module Collection).
pub struct ModuleCollection {
    owner: u32,
    modules: Box<[Arc<ModuleObject>]>,
    pub(crate) device: Arc<DeviceShared>,
    client: Option<Arc<dyn ClientCallbacks>>,
    orders: Orders,
    pub(crate) dynamic: Arc<ModuleLock<Vec<Arc<ModuleObject>>>>,
    in_d0: AtomicBool,
    destroyed: AtomicBool,
}

impl core::fmt::Debug for ModuleCollection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ModuleCollection")
            .field("modules", &self.modules)
            .field("filter", &self.device.filter)
            .finish_non_exhaustive()
    }
}

/// Walks `list` in `row`'s order, calling `f` on each Module; stops at the first error.
#[inline]
fn walk<F>(list: &[Arc<ModuleObject>], row: Row, f: &mut F) -> NtResult<()>
where
    F: FnMut(&Arc<ModuleObject>) -> NtResult<()>,
{
    match row.siblings {
        Siblings::Forward => {
            for object in list {
                visit(object, row, f)?;
            }
        }
        Siblings::Backward => {
            for object in list.iter().rev() {
                visit(object, row, f)?;
            }
        }
    }
    Ok(())
}

#[inline]
fn visit<F>(object: &Arc<ModuleObject>, row: Row, f: &mut F) -> NtResult<()>
where
    F: FnMut(&Arc<ModuleObject>) -> NtResult<()>,
{
    match row.tree {
        Tree::ChildrenFirst => {
            walk(&object.children, row, f)?;
            f(object)
        }
        Tree::ParentFirst => {
            f(object)?;
            walk(&object.children, row, f)
        }
    }
}

/// One step of a precomputed dispatch order.
struct Step {
    object: Arc<ModuleObject>,
    table: &'static CallbackTable,
}

const CALLBACKS: usize = dispatch_table::ALL.len();

/// The flat dispatch order of every WDF callback (see the module docs).
struct Orders {
    steps: Box<[Step]>,
    /// `steps[start..end]` of each callback, indexed by `Callback as usize`.
    ranges: [(u32, u32); CALLBACKS],
    /// Some Module in the callback's order has an open option that acts in that phase.
    phase: [bool; CALLBACKS],
}

/// `true` if `object`'s open option (or ResourcesAssign) makes it act in phase `callback`.
fn phase_relevant(object: &ModuleObject, callback: Callback) -> bool {
    let option = object.open_option();
    match callback {
        Callback::PrepareHardware => {
            matches!(
                option,
                OpenOption::PrepareHardware | OpenOption::NotifyPrepareHardware
            ) || (!option.is_create() && object.implements(CallbackSet::RESOURCES_ASSIGN))
        }
        Callback::ReleaseHardware => matches!(
            option,
            OpenOption::PrepareHardware | OpenOption::NotifyPrepareHardware
        ),
        Callback::D0Entry | Callback::D0Exit => matches!(
            option,
            OpenOption::D0Entry | OpenOption::D0EntrySystemPowerUp | OpenOption::NotifyD0Entry
        ),
        _ => false,
    }
}

impl Orders {
    /// Derives the flat order of every WDF callback from THE table by walking the tree once per
    /// callback in its row's order.
    fn build(modules: &[Arc<ModuleObject>]) -> NtResult<Orders> {
        let mut steps: Vec<Step> = Vec::new();
        let mut ranges = [(0, 0); CALLBACKS];
        let mut phase = [false; CALLBACKS];
        let too_many = |_| NtStatus::INSUFFICIENT_RESOURCES;
        for callback in dispatch_table::ALL {
            let index = callback as usize;
            let start = u32::try_from(steps.len()).map_err(too_many)?;
            let want = callback.flag();
            if want.intersects(CallbackSet::WDF) {
                walk(modules, dispatch_table::row(callback), &mut |object| {
                    let relevant = phase_relevant(object, callback);
                    if relevant || object.implements(want) {
                        phase[index] |= relevant;
                        steps.try_push(Step {
                            object: Arc::clone(object),
                            table: object.callbacks,
                        })?;
                    }
                    Ok(())
                })?;
            }
            ranges[index] = (start, u32::try_from(steps.len()).map_err(too_many)?);
        }
        Ok(Orders {
            steps: try_boxed_slice(steps)?,
            ranges,
            phase,
        })
    }

    #[inline]
    fn of(&self, callback: Callback) -> &[Step] {
        let (start, end) = self.ranges[callback as usize];
        &self.steps[start as usize..end as usize]
    }
}

/// What one phase opened and registered, to be undone exactly on failure.
#[derive(Default)]
pub(crate) struct PhaseLog {
    opened: Vec<Arc<ModuleObject>>,
    registered: Vec<Arc<ModuleObject>>,
}

impl PhaseLog {
    fn open(&mut self, object: &Arc<ModuleObject>, during: OpenedDuring) -> NtResult<()> {
        // Room in the log first, so that the push after the open does not allocate; should it
        // fail anyway, the open is undone rather than left unlogged.
        self.opened.try_reserve_nt(1)?;
        ModuleObject::open(object, during)?;
        if let Err(status) = self.opened.try_push(Arc::clone(object)) {
            ModuleObject::close(object, ClosedDuring::Unwind);
            return Err(status);
        }
        Ok(())
    }

    fn register(&mut self, object: &Arc<ModuleObject>, during: OpenedDuring) -> NtResult<()> {
        self.registered.try_reserve_nt(1)?;
        ModuleObject::register(object, during)?;
        if let Err(status) = self.registered.try_push(Arc::clone(object)) {
            ModuleObject::unregister(object, ClosedDuring::Unwind);
            return Err(status);
        }
        Ok(())
    }

    /// Undoes the phase: unregister, then close, each in reverse order (parent first).
    pub(crate) fn unwind(self) {
        for object in self.registered.iter().rev() {
            ModuleObject::unregister(object, ClosedDuring::Unwind);
        }
        for object in self.opened.iter().rev() {
            ModuleObject::close(object, ClosedDuring::Unwind);
        }
    }
}

/// Opens `OPEN_Create` / registers `NOTIFY_Create` Modules of `list`, children first (PostCreate).
pub(crate) fn open_on_create(list: &[Arc<ModuleObject>], log: &mut PhaseLog) -> NtResult<()> {
    walk(
        list,
        dispatch_table::row(Callback::Open),
        &mut |object| match object.open_option() {
            OpenOption::Create => log.open(object, OpenedDuring::Create),
            OpenOption::NotifyCreate => log.register(object, OpenedDuring::Create),
            _ => Ok(()),
        },
    )
}

/// Records the feature Modules in the device's registry (made with room for all of them).
fn register_features(
    device: &DeviceShared,
    features: &[(Feature, u16)],
    modules: &[Arc<ModuleObject>],
) -> NtResult<()> {
    let mut registry = device.features.lock();
    for &(feature, index) in features {
        if let Some(object) = modules.get(usize::from(index)) {
            registry.try_push((feature, Arc::downgrade(object)))?;
        }
    }
    Ok(())
}

pub(crate) fn feature_lookup<F: Module>(device: &DeviceShared, feature: Feature) -> Option<F> {
    let features = device.features.lock();
    let object = features
        .iter()
        .find(|(f, _)| *f == feature)
        .and_then(|(_, weak)| weak.upgrade())?;
    drop(features);
    handle_of(&object).ok()
}

/// Generates the collection's dispatcher of every callback marked `auto` in the list.
macro_rules! dispatchers {
    (() module { $($m:tt)* } dispatched { $($d:tt)* } wdf { $($w:tt)* }) => {
        dispatchers!(@each $($w)*);
    };
    (@each $(
        $(#[$doc:meta])* $name:ident $variant:ident $flag:ident [$result:ident $collection:ident $device:ident]
        ($($args:tt)*) -> $ret:ty = $default:expr;
    )*) => {
        $(dispatchers!(@one [$result $collection] $(#[$doc])* $name $variant ($($args)*));)*
    };
    (@one [status auto] $(#[$doc:meta])* $name:ident $variant:ident ($($arg:ident : $ty:ty),*)) => {
        $(#[$doc])*
        ///
        /// Dispatched in its row of the dispatch table; a failure stops the walk.
        pub fn $name(&self $(, $arg: $ty)*) -> NtResult<()> {
            // The order holds only Modules that implement the callback.
            self.run(Callback::$variant, |s| s.table.$name(&s.object $(, $arg)*))
        }
    };
    (@one [void auto] $(#[$doc:meta])* $name:ident $variant:ident ($($arg:ident : $ty:ty),*)) => {
        $(#[$doc])*
        ///
        /// Dispatched in its row of the dispatch table.
        pub fn $name(&self $(, $arg: $ty)*) {
            let _ = self.run(Callback::$variant, |s| {
                s.table.$name(&s.object $(, $arg)*);
                Ok(())
            });
        }
    };
    (@one [request auto] $(#[$doc:meta])* $name:ident $variant:ident
        ($io:ident : $io_ty:ty $(, $arg:ident : $ty:ty)*)) => {
        $(#[$doc])*
        ///
        /// Dispatched in its row of the dispatch table: first taker wins.
        pub fn $name(&self, $io: $io_ty $(, $arg: $ty)*) -> RequestDisposition {
            self.run_request(Callback::$variant, $io, |s, $io| {
                s.table.$name(&s.object, $io $(, $arg)*)
            })
        }
    };
    (@one [file auto] $(#[$doc:meta])* $name:ident $variant:ident ($($arg:ident : $ty:ty),*)) => {
        $(#[$doc])*
        ///
        /// Dispatched in its row of the dispatch table: first taker wins.
        pub fn $name(&self $(, $arg: $ty)*) -> RequestDisposition {
            self.run_file(Callback::$variant, |s| s.table.$name(&s.object $(, $arg)*))
        }
    };
    (@one [$result:ident own] $($rest:tt)*) => {};
}

impl ModuleCollection {
    /// `DMF_ModulesCreate`: creates the Modules added to `init`, then opens/registers the
    /// `*_Create` ones. On failure nothing is left created or open.
    pub fn create(init: ModuleInit, config: CollectionConfig) -> NtResult<ModuleCollection> {
        if let Some(status) = init.error {
            return Err(status);
        }
        let ModuleInit {
            owner,
            entries,
            features,
            ..
        } = init;
        // Everything the collection keeps is allocated before a Module is opened, so that nothing
        // can fail after an open.
        let device = try_arc(DeviceShared {
            filter: config.filter,
            device: config.device.clone(),
            filter_device: config.filter_device.clone(),
            features: ModuleLock::new(LockKind::Spin, try_vec_with_capacity(features.len())?)?,
        })?;
        let dynamic = try_arc(ModuleLock::new(LockKind::Spin, Vec::new())?)?;
        let placement = Placement {
            parent: Some(Weak::new()),
            device: Some(Arc::clone(&device)),
            dynamic: false,
        };
        let modules = match boxed_exact(create_all(entries, &placement)?) {
            Ok(modules) => modules,
            Err((status, modules)) => {
                for object in &modules {
                    ModuleObject::destroy_tree(object);
                }
                return Err(status);
            }
        };
        for object in &*modules {
            lifecycle::record_created_tree(object);
        }
        let mut log = PhaseLog::default();
        let orders = Orders::build(&modules)
            .and_then(|orders| register_features(&device, &features, &modules).map(|()| orders))
            .and_then(|orders| open_on_create(&modules, &mut log).map(|()| orders));
        let orders = match orders {
            Ok(orders) => orders,
            Err(status) => {
                log.unwind();
                for object in modules.iter().rev() {
                    ModuleObject::close_tree(object);
                }
                for object in &*modules {
                    ModuleObject::destroy_tree(object);
                }
                return Err(status);
            }
        };
        Ok(ModuleCollection {
            owner,
            modules,
            device,
            client: config.client,
            orders,
            dynamic,
            in_d0: AtomicBool::new(false),
            destroyed: AtomicBool::new(false),
        })
    }

    /// The device the collection belongs to, if it was created with one.
    pub fn device(&self) -> Option<&crate::platform::Device> {
        self.device.device.as_ref()
    }

    /// The handle of a Module the client added (`ResultantDmfModule`).
    pub fn get<M: Module>(&self, token: Added<M>) -> NtResult<M> {
        resolve(self.owner, &self.modules, token)
    }

    /// How many top-level Modules there are.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// `true` without Modules.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// `DMF_ModuleIsInFilterDriver` at device level.
    pub fn is_in_filter_driver(&self) -> bool {
        self.device.filter
    }

    /// `DMF_FeatureModuleGetFromDevice`: `None` when the feature is not enabled.
    pub fn feature<F: Module>(&self, feature: Feature) -> Option<F> {
        feature_lookup(&self.device, feature)
    }

    fn client(&self, callback: Callback) -> NtResult<Handled> {
        match &self.client {
            Some(client) => client.callback(callback),
            None => Ok(Handled::NotHandled),
        }
    }

    /// Dispatches `callback`: the client at its row's place, the Modules in the precomputed order;
    /// stops at the first error.
    #[inline]
    fn run<F>(&self, callback: Callback, mut f: F) -> NtResult<()>
    where
        F: FnMut(&Step) -> NtResult<()>,
    {
        let row = dispatch_table::row(callback);
        if row.client == ClientOrder::BeforeModules {
            let _ = self.client(callback)?;
        }
        for step in self.orders.of(callback) {
            f(step)?;
        }
        if row.client == ClientOrder::AfterModules {
            let _ = self.client(callback)?;
        }
        Ok(())
    }

    /// A request row: Modules in order until one takes the request (or says it handled it, which
    /// completes it with success — see [`IoRequest`]), then the client stand-in, then the
    /// unhandled-request rule for the caller to apply to what is left in `io`.
    #[inline]
    fn run_request<F>(
        &self,
        callback: Callback,
        io: &mut IoRequest<'_>,
        mut f: F,
    ) -> RequestDisposition
    where
        F: FnMut(&Step, &mut IoRequest<'_>) -> Handled,
    {
        debug_assert!(dispatch_table::row(callback).first_taker_wins);
        for step in self.orders.of(callback) {
            if f(step, io) == Handled::Handled || io.is_taken() {
                let _ = io.complete(NtStatus::SUCCESS);
                return RequestDisposition::Handled;
            }
        }
        if self.client(callback) == Ok(Handled::Handled) {
            let _ = io.complete(NtStatus::SUCCESS);
            return RequestDisposition::Handled;
        }
        self.unhandled(callback)
    }

    /// A file-object row without a request (cleanup, close): first taker wins.
    #[inline]
    fn run_file<F>(&self, callback: Callback, mut f: F) -> RequestDisposition
    where
        F: FnMut(&Step) -> Handled,
    {
        debug_assert!(dispatch_table::row(callback).first_taker_wins);
        if self
            .orders
            .of(callback)
            .iter()
            .any(|step| f(step) == Handled::Handled)
            || self.client(callback) == Ok(Handled::Handled)
        {
            return RequestDisposition::Handled;
        }
        self.unhandled(callback)
    }

    fn unhandled(&self, callback: Callback) -> RequestDisposition {
        match dispatch_table::unhandled(callback, self.device.filter) {
            Some(policy) => RequestDisposition::Unhandled(policy),
            None => RequestDisposition::Unhandled(Unhandled::Complete(NtStatus::NOT_SUPPORTED)),
        }
    }

    /// `EvtDevicePrepareHardware`: per Module, children first: ResourcesAssign
    /// (unless `*_Create`), its own PrepareHardware, then the automatic open (`OPEN_PrepareHardware`)
    /// or NotificationRegister (`NOTIFY_PrepareHardware`). On failure the phase's opens are undone.
    pub fn prepare_hardware(&self, resources: &Resources) -> NtResult<()> {
        let mut log = PhaseLog::default();
        let result = self.run(Callback::PrepareHardware, |s| {
            let o = &s.object;
            let option = o.open_option();
            if !option.is_create() && o.implements(CallbackSet::RESOURCES_ASSIGN) {
                s.table.resources_assign(o, resources)?;
            }
            if o.implements(CallbackSet::PREPARE_HARDWARE) {
                s.table.prepare_hardware(o, resources)?;
            }
            match option {
                OpenOption::PrepareHardware => log.open(o, OpenedDuring::PrepareHardware),
                OpenOption::NotifyPrepareHardware => log.register(o, OpenedDuring::PrepareHardware),
                _ => Ok(()),
            }
        });
        if result.is_err() {
            log.unwind();
        }
        result
    }

    /// `EvtDeviceReleaseHardware`: client first, then parent first and backward: the
    /// automatic unregister/close of what PrepareHardware opened, then the Module's own callback.
    /// Reaches every Module even after a failed PrepareHardware.
    pub fn release_hardware(&self, resources: &Resources) -> NtResult<()> {
        self.in_d0.store(false, Ordering::Release);
        self.run(Callback::ReleaseHardware, |s| {
            let o = &s.object;
            if o.registered_during() == OpenedDuring::PrepareHardware {
                ModuleObject::unregister(o, ClosedDuring::ReleaseHardware);
            }
            if o.opened_during() == OpenedDuring::PrepareHardware {
                ModuleObject::close(o, ClosedDuring::ReleaseHardware);
            }
            if o.implements(CallbackSet::RELEASE_HARDWARE) {
                s.table.release_hardware(o, resources)?;
            }
            Ok(())
        })
    }

    /// `EvtDeviceD0Entry`: per Module, children first: its own D0Entry, then the
    /// automatic open (`OPEN_D0Entry`, `OPEN_D0EntrySystemPowerUp` when not open) or register
    /// (`NOTIFY_D0Entry`). On failure the phase's opens are undone and no D0Exit follows.
    pub fn d0_entry(&self, previous: PowerDeviceState) -> NtResult<()> {
        if !self.orders.phase[Callback::D0Entry as usize] {
            // No Module opens or registers in D0Entry: only the Modules' own callbacks.
            let result = self.run(Callback::D0Entry, |s| s.table.d0_entry(&s.object, previous));
            if result.is_ok() {
                self.in_d0.store(true, Ordering::Release);
            }
            return result;
        }
        let mut log = PhaseLog::default();
        let result = self.run(Callback::D0Entry, |s| {
            let o = &s.object;
            if o.implements(CallbackSet::D0_ENTRY) {
                s.table.d0_entry(o, previous)?;
            }
            match o.open_option() {
                OpenOption::D0Entry => log.open(o, OpenedDuring::D0Entry),
                OpenOption::D0EntrySystemPowerUp if o.state() != ModuleState::Opened => {
                    log.open(o, OpenedDuring::D0EntrySystemPowerUp)
                }
                OpenOption::NotifyD0Entry => log.register(o, OpenedDuring::D0Entry),
                _ => Ok(()),
            }
        });
        match result {
            Ok(()) => self.in_d0.store(true, Ordering::Release),
            Err(_) => log.unwind(),
        }
        result
    }

    /// `EvtDeviceD0Exit`: client first, then parent first and backward: the automatic
    /// unregister/close (`NOTIFY_D0Entry`, `OPEN_D0Entry`, and `OPEN_D0EntrySystemPowerUp` when
    /// the device powers down for good or the system leaves S0 — see below), then the Module's
    /// own D0Exit. Nothing is dispatched unless a D0Entry succeeded.
    ///
    /// `OPEN_D0EntrySystemPowerUp` Modules close when `target` is `D3Final` (removal, stop,
    /// shutdown) or `PrepareForHibernation`, or when `WdfDeviceGetSystemPowerAction` reports a
    /// system transition (sleep, hibernate, shutdown): as DMF's documentation says, "when the
    /// Client Driver receives an EvtDeviceD0Exit callback while the system is transitioning from
    /// S0 to Sx". They reopen in the D0Entry of the return. A device that idles in S0 keeps them
    /// open. (C DMF's code closes them only on D3Final and hibernation; a Module written for this
    /// option expects the documented rule.)
    pub fn d0_exit(&self, target: PowerDeviceState) -> NtResult<()> {
        if !self.in_d0.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let system = matches!(
            target,
            PowerDeviceState::D3Final | PowerDeviceState::PrepareForHibernation
        ) || self
            .device
            .device
            .as_ref()
            .is_some_and(|device| device.system_power_action().is_system_transition());
        if !self.orders.phase[Callback::D0Exit as usize] {
            return self.run(Callback::D0Exit, |s| s.table.d0_exit(&s.object, target));
        }
        self.run(Callback::D0Exit, |s| {
            let o = &s.object;
            if o.registered_during() == OpenedDuring::D0Entry {
                ModuleObject::unregister(o, ClosedDuring::D0Exit);
            }
            match o.opened_during() {
                OpenedDuring::D0Entry => {
                    ModuleObject::close(o, ClosedDuring::D0Exit);
                }
                OpenedDuring::D0EntrySystemPowerUp if system => {
                    ModuleObject::close(o, ClosedDuring::D0Exit);
                }
                _ => {}
            }
            if o.implements(CallbackSet::D0_EXIT) {
                s.table.d0_exit(o, target)?;
            }
            Ok(())
        })
    }

    callback_list!(dispatchers!());

    /// The collection cleanup: closes every Module (last to first, parent first; dynamic Modules
    /// parented to the device too) and then destroys them (first to first, children first), each
    /// exactly once. Also run on drop.
    pub fn destroy(&self) {
        if self.destroyed.swap(true, Ordering::AcqRel) {
            return;
        }
        let dynamic = core::mem::take(&mut *self.dynamic.lock());
        for object in dynamic.iter().rev() {
            ModuleObject::close_tree(object);
            ModuleObject::destroy_tree(object);
        }
        for object in self.modules.iter().rev() {
            ModuleObject::close_tree(object);
        }
        for object in &*self.modules {
            ModuleObject::destroy_tree(object);
        }
    }
}

impl Drop for ModuleCollection {
    fn drop(&mut self) {
        self.destroy();
    }
}
