//! Typed handles and the scopes through which a Module reaches its own state.
//!
//! # Design (invariants 4 and 5)
//!
//! `#[dmf_module] pub struct RingBuffer;` makes `RingBuffer` a cloneable handle around the Module
//! object and implements [`Module`] for it. A handle by itself reaches nothing private. Private
//! state is reached through a *scope*:
//!
//! - [`Method<'_, M>`] — what a client-facing Method gets from the generated (private) `enter()`:
//!   it holds a rundown guard, so it exists only while the Module is open, and close waits for it
//!   (as for C DMF's `DMF_ModuleReference`). After close begins `enter()` is
//!   `Err(STATUS_INVALID_DEVICE_STATE)`. `#[must_use]`.
//! - [`Dispatched<'_, M>`] — what every framework callback receives. The framework holds the
//!   Module in the state the callback needs, so no guard is taken; a callback never calls
//!   `enter()`.
//!
//! Both dereference to [`Scope<'_, M>`]. The context, config and locks are reached through a
//! **private** extension trait that `#[dmf_module]` generates in the Module's own Rust module and
//! implements for `Scope<'_, ThatModule>`; it may name the private `Context` because the trait
//! itself is private (no E0446). The erased cell is keyed by a private key type per Module, so a
//! scope of another Module — or the same scope in another Rust module — cannot open it. A scope
//! reaches its own children only by the [`Added`] tokens its `child_modules_add` received; the
//! client reaches only the Modules it added, by the tokens `ModuleInit::add` returned.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::{Any, TypeId};
use core::marker::PhantomData;
use core::ops::Deref;

use super::callbacks::ModuleCallbacks;
use super::descriptor::ModuleDescriptor;
use super::lazy::LazyEvent;
use super::object::{ModuleObject, ModuleState, TraceEntry, FLAG_PASSIVE};
use super::Feature;
use crate::rundown::RundownGuard;
use crate::status::{NtResult, NtStatus};
use crate::sync::{AuxiliaryLocks, ModuleLock, ModuleLockGuard};

/// A Module type: implemented by `#[dmf_module]` for the handle struct.
pub trait Module: ModuleCallbacks + Clone + Send + Sync {
    /// The Module's descriptor.
    const DESCRIPTOR: ModuleDescriptor;
    #[doc(hidden)]
    fn __from_ref(object: ModuleRef) -> Self;
    #[doc(hidden)]
    fn __ref(&self) -> &ModuleRef;
}

/// The shared reference to a Module object that a handle wraps. Opaque.
#[derive(Clone)]
pub struct ModuleRef(pub(crate) Arc<ModuleObject>);

impl core::fmt::Debug for ModuleRef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

/// Builds a typed handle after checking that the object is of that Module type.
pub(crate) fn handle_of<M: Module>(object: &Arc<ModuleObject>) -> NtResult<M> {
    if (object.callbacks.type_id)() == TypeId::of::<M>() {
        Ok(M::__from_ref(ModuleRef(Arc::clone(object))))
    } else {
        Err(NtStatus::INVALID_PARAMETER)
    }
}

/// What every Module handle offers anyone who holds it: no private state.
pub trait ModuleHandle: Module {
    /// `DMF_ModuleReference`: succeeds while the Module is open and holds off
    /// its close until the guard drops; `STATUS_INVALID_DEVICE_STATE` when closing or closed (then
    /// nothing is held, so there is nothing to dereference — by construction).
    fn reference(&self) -> NtResult<ModuleReference<'_>> {
        Ok(ModuleReference {
            _guard: self.__ref().0.gate.enter()?,
        })
    }
    /// The Module's state.
    fn state(&self) -> ModuleState {
        self.__ref().0.state()
    }
    /// `DMF_ModuleIsDynamic`.
    fn is_dynamic(&self) -> bool {
        self.__ref().0.is_dynamic()
    }
    /// The descriptor's name.
    fn module_name(&self) -> &'static str {
        self.__ref().0.descriptor.name
    }
    /// A weak handle: it keeps nothing alive, so a closure or context that stores it (a
    /// notification callback, a child's config) makes no reference cycle with the Module.
    fn downgrade(&self) -> WeakModule<Self> {
        WeakModule {
            object: Arc::downgrade(&self.__ref().0),
            _m: PhantomData,
        }
    }
}

impl<M: Module> ModuleHandle for M {}

/// A weak Module handle ([`ModuleHandle::downgrade`]). [`upgrade`](Self::upgrade) gives the
/// handle back while the Module object exists; Methods on it still fail once the Module closes.
pub struct WeakModule<M> {
    object: alloc::sync::Weak<ModuleObject>,
    _m: PhantomData<fn() -> M>,
}

impl<M: Module> WeakModule<M> {
    /// The handle, if the Module object still exists.
    pub fn upgrade(&self) -> Option<M> {
        self.object
            .upgrade()
            .map(|object| M::__from_ref(ModuleRef(object)))
    }
}

impl<M> Clone for WeakModule<M> {
    fn clone(&self) -> Self {
        WeakModule {
            object: self.object.clone(),
            _m: PhantomData,
        }
    }
}

impl<M> core::fmt::Debug for WeakModule<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("WeakModule")
    }
}

/// `DMF_ModuleReference` held; dropping it is `DMF_ModuleDereference`.
#[must_use = "dropping the reference releases the Module at once"]
pub struct ModuleReference<'a> {
    _guard: RundownGuard<'a, LazyEvent>,
}

impl core::fmt::Debug for ModuleReference<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ModuleReference")
    }
}

/// A token for a Module added with `ModuleInit::add`: resolved to the typed handle after creation,
/// by the collection (client) or by the parent's scope (children). Only its owner can resolve it.
pub struct Added<M> {
    pub(crate) owner: u32,
    pub(crate) index: u16,
    _m: PhantomData<fn() -> M>,
}

impl<M> Added<M> {
    pub(crate) fn new(owner: u32, index: u16) -> Self {
        Added {
            owner,
            index,
            _m: PhantomData,
        }
    }
}

impl<M> Clone for Added<M> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<M> Copy for Added<M> {}
impl<M> core::fmt::Debug for Added<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Added({}#{})", self.owner, self.index)
    }
}

/// The common part of [`Method`] and [`Dispatched`]: one Module's own view of itself.
pub struct Scope<'a, M> {
    pub(crate) object: &'a ModuleObject,
    _m: PhantomData<fn() -> M>,
}

impl<M: Module> core::fmt::Debug for Scope<'_, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.object.fmt(f)
    }
}

impl<'a, M: Module> Scope<'a, M> {
    fn new(object: &'a ModuleObject) -> Self {
        Scope {
            object,
            _m: PhantomData,
        }
    }

    /// The Module's name.
    pub fn name(&self) -> &'static str {
        self.object.descriptor.name
    }

    /// `DMF_ModuleIsDynamic`.
    pub fn is_dynamic(&self) -> bool {
        self.object.is_dynamic()
    }

    /// `DMF_ModuleIsPassiveLevel`.
    pub fn is_passive_level(&self) -> bool {
        self.object.flags & FLAG_PASSIVE != 0
    }

    /// `DMF_ModuleRequestCompleteOrForward`, for Modules that handle a request but let it
    /// continue on success (IoctlHandler's create check): a failure status completes the
    /// request; success passes it down to the next lower driver in a filter and completes it
    /// otherwise. Returns `true` if the request was completed, `false` if it was forwarded. A
    /// forward the lower target refuses completes the request with the refusal status (and
    /// returns `true`).
    pub fn request_complete_or_forward(
        &self,
        request: crate::platform::Request,
        status: crate::NtStatus,
    ) -> bool {
        use crate::platform::contract::io::PlatformRequest;
        match self.device() {
            Some(device) if status.is_success() && self.is_in_filter_driver() => {
                !crate::platform::pass_down(request, device)
            }
            _ => {
                request.complete(status);
                true
            }
        }
    }

    /// `DMF_ModuleIsInFilterDriver`.
    pub fn is_in_filter_driver(&self) -> bool {
        self.object.device.as_ref().is_some_and(|d| d.filter)
    }

    /// `DMF_ParentDeviceGet` / `DMF_AttachedDeviceGet`: the `WDFDEVICE` of the Module's collection;
    /// `None` for a dynamic Module created without a device-bound parent.
    pub fn device(&self) -> Option<&crate::platform::Device> {
        self.object.device.as_ref().and_then(|d| d.device.as_ref())
    }

    /// The device that parents the Module's timers and work items ([`device`](Self::device), the
    /// `ParentObject` of `WdfTimerCreate`/`WdfWorkItemCreate`; see
    /// [`PlatformTimer`](crate::platform::contract::PlatformTimer)).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` for a Module without a device (a dynamic Module created
    /// without a device-bound parent, or a collection created without one), the status the
    /// Modules that need their device return (KMDF refuses a timer or work item whose parent
    /// chain has no device, so C DMF's Module fails there too).
    pub fn require_device(&self) -> crate::NtResult<&crate::platform::Device> {
        self.device().ok_or(crate::NtStatus::INVALID_DEVICE_STATE)
    }

    /// `DMF_FilterDeviceGet`: the filter driver's own device — the collection's device in
    /// a filter, or the device given to `set_client_driver_device` for Modules on a filter's
    /// control device; `None` outside filter drivers.
    pub fn filter_device(&self) -> Option<&crate::platform::Device> {
        let shared = self.object.device.as_ref()?;
        match (&shared.filter_device, shared.filter) {
            (Some(fdo), _) => Some(fdo),
            (None, true) => shared.device.as_ref(),
            (None, false) => None,
        }
    }

    /// The Module's own handle (to hand to an asynchronous notification, e.g.). Fails during
    /// `child_modules_add`, before the object is complete.
    pub fn handle(&self) -> NtResult<M> {
        let this = self
            .object
            .this
            .upgrade()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        handle_of(&this)
    }

    /// One of this Module's own children, by the token its `child_modules_add` received.
    pub fn child<C: Module>(&self, token: Added<C>) -> NtResult<C> {
        if token.owner != self.object.id {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let child = self
            .object
            .children
            .get(usize::from(token.index))
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        handle_of(child)
    }

    /// The parent Module's name; `None` for a top-level or parentless Module.
    pub fn parent_name(&self) -> Option<&'static str> {
        self.object.parent.upgrade().map(|p| p.descriptor.name)
    }

    /// How many static children (a Transport included) this Module has.
    pub fn child_count(&self) -> usize {
        self.object.children.len()
    }

    /// `DMF_ModuleTransportCall`: calls the Transport child's
    /// `transport_method` inside its rundown guard; `STATUS_NOT_FOUND` without a Transport.
    pub fn transport_call(&self, message: u32, input: &[u8], output: &mut [u8]) -> NtResult<usize> {
        let index = self.object.transport.ok_or(NtStatus::NOT_FOUND)?;
        let transport = &self.object.children[usize::from(index)];
        let _guard = transport.gate.enter()?;
        transport
            .callbacks
            .transport_method(transport, message, input, output)
    }

    /// `DMF_FeatureModuleGetFromModule`: the device's feature Module, if enabled and of
    /// type `F`. Dynamic Modules have no features.
    pub fn feature<F: Module>(&self, feature: Feature) -> Option<F> {
        if self.object.is_dynamic() {
            return None;
        }
        super::collection::feature_lookup(self.object.device.as_ref()?, feature)
    }

    /// Records an event in the Module's in-flight trace ring (no-op without one).
    pub fn trace(&self, event: &'static str, argument: u64) {
        self.object.trace(event, argument);
    }

    /// `DMF_InFlightRecorderGet`: a copy of the trace ring, oldest first.
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES` if the copy cannot be allocated.
    pub fn trace_entries(&self) -> NtResult<Vec<TraceEntry>> {
        self.object.trace_snapshot()
    }

    /// Opens the private cell. Only code that names the Module's private key type can call it,
    /// which is the extension trait `#[dmf_module]` generates.
    #[doc(hidden)]
    pub fn __cell<K: 'static, Cfg: Send + Sync + 'static, C: Send + 'static, S: 'static>(
        &self,
    ) -> &'a ModuleCell<K, Cfg, C, S> {
        assert!(
            self.object.cell_type == TypeId::of::<ModuleCell<K, Cfg, C, S>>(),
            "a Module's cell is opened only with its own key"
        );
        let cell: &'a (dyn Any + Send + Sync) = &*self.object.cell;
        // SAFETY: `cell_type` is the `TypeId` of the boxed value, taken from it when the object
        // was built (the box is never replaced), and it equals the `TypeId` of
        // `ModuleCell<K, Cfg, C, S>` (asserted above); so the trait object's data pointer points
        // to a live `ModuleCell<K, Cfg, C, S>` borrowed for `'a`. This is `Any::downcast_ref`
        // with its type check against the stored id instead of a virtual `type_id` call.
        unsafe { &*core::ptr::from_ref(cell).cast::<ModuleCell<K, Cfg, C, S>>() }
    }
}

/// A Method's scope: the Module is open and stays so while this lives (rundown guard).
#[must_use = "the scope is the rundown guard: dropping it ends the Method's protection"]
pub struct Method<'a, M> {
    scope: Scope<'a, M>,
    _guard: RundownGuard<'a, LazyEvent>,
}

impl<'a, M> Deref for Method<'a, M> {
    type Target = Scope<'a, M>;
    fn deref(&self) -> &Scope<'a, M> {
        &self.scope
    }
}

impl<M: Module> core::fmt::Debug for Method<'_, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Method").field(&self.scope).finish()
    }
}

/// A framework callback's scope: the framework holds the Module, no guard is needed.
pub struct Dispatched<'a, M> {
    scope: Scope<'a, M>,
}

impl<'a, M: Module> Dispatched<'a, M> {
    #[inline]
    pub(crate) fn new(object: &'a ModuleObject) -> Self {
        Dispatched {
            scope: Scope::new(object),
        }
    }
}

impl<'a, M> Deref for Dispatched<'a, M> {
    type Target = Scope<'a, M>;
    fn deref(&self) -> &Scope<'a, M> {
        &self.scope
    }
}

impl<M: Module> core::fmt::Debug for Dispatched<'_, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Dispatched").field(&self.scope).finish()
    }
}

/// The private cell of one Module: its config copy, its context behind its lock, its auxiliary
/// locks. `K` is the Module's private key type.
#[doc(hidden)]
pub struct ModuleCell<K, Cfg, C, S = ()> {
    config: Cfg,
    context: ModuleLock<C>,
    shared: S,
    aux: AuxiliaryLocks,
    _key: PhantomData<fn() -> K>,
}

impl<K, Cfg, C, S> ModuleCell<K, Cfg, C, S> {
    pub(crate) fn new(config: Cfg, context: ModuleLock<C>, shared: S, aux: AuxiliaryLocks) -> Self {
        ModuleCell {
            config,
            context,
            shared,
            aux,
            _key: PhantomData,
        }
    }
    /// `DMF_CONFIG_GET`.
    pub fn config(&self) -> &Cfg {
        &self.config
    }
    /// `DMF_ModuleLock` + `DMF_CONTEXT_GET`.
    pub fn lock(&self) -> ModuleLockGuard<'_, C> {
        self.context.lock()
    }
    /// The shared state ([`ModuleShared`](super::ModuleShared)), without the lock.
    pub fn shared(&self) -> &S {
        &self.shared
    }
    /// `DMF_ModuleAuxiliaryLock`.
    pub fn aux_lock(&self, index: usize) -> NtResult<ModuleLockGuard<'_, ()>> {
        self.aux.lock(index)
    }
}

/// `enter()`: the rundown-guarded Method scope.
#[doc(hidden)]
#[inline]
pub fn enter<M: Module>(handle: &M) -> NtResult<Method<'_, M>> {
    let object = &handle.__ref().0;
    let guard = object.gate.enter()?;
    Ok(Method {
        scope: Scope::new(object),
        _guard: guard,
    })
}

/// `enter_lock_free()`: a lock-free Method's entry. No rundown guard: it returns the Module's
/// shared state if the Module is open at this instant and `STATUS_INVALID_DEVICE_STATE`
/// otherwise. Whatever the Method then does must be a step the Module's close shuts out on its
/// own (a closable lock-free structure such as `FreeList`), because close does not wait for it
/// (ARCHITECTURE.md, "lock-free Methods"). The shared state itself lives as long as the handle,
/// so the reference is always valid.
#[doc(hidden)]
#[inline]
pub fn enter_lock_free<M, K, Cfg, C, S>(handle: &M) -> NtResult<&S>
where
    M: Module,
    K: 'static,
    Cfg: Send + Sync + 'static,
    C: Send + 'static,
    S: 'static,
{
    let object = &handle.__ref().0;
    object.gate.enter_lock_free()?;
    Ok(Scope::<M>::new(object).__cell::<K, Cfg, C, S>().shared())
}

/// `DMF_ModuleNotificationOpen` / `DMF_ModuleOpen`.
#[doc(hidden)]
pub fn notification_open<M: Module>(handle: &M) -> NtResult<()> {
    ModuleObject::open(&handle.__ref().0, super::object::OpenedDuring::Manual)
}

/// `DMF_ModuleNotificationClose` / `DMF_ModuleClose`.
#[doc(hidden)]
pub fn notification_close<M: Module>(handle: &M) {
    ModuleObject::close(&handle.__ref().0, super::lifecycle::ClosedDuring::Manual);
}
