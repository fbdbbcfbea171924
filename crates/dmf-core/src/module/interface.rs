//! DMF Interfaces: binding a Protocol Module to a Transport Module at run time (C DMF's
//! `DMF_INTERFACE_BIND`, implemented in `DmfInterfaceInternal.c`), with Rust types in place of C
//! DMF's declaration and bind-data structures.
//!
//! # Design
//!
//! An *interface* is a type implementing [`Interface`] (C DMF's `Dmf_Interface_<Name>.h`). It names
//! - the **transport methods** the protocol calls, as a trait-object type (`dyn MyTransport`): C's
//!   transport declaration data, a table of function pointers, becomes a Rust vtable;
//! - the **bind data** each side hands the other during the bind ([`Interface::ProtocolData`],
//!   [`Interface::TransportData`]).
//!
//! A Protocol Module implements [`InterfaceProtocol<I>`], a Transport Module
//! [`InterfaceTransport<I>`]; each callback receives the Module's own [`Dispatched`] scope, like
//! every framework callback. Both Modules are created independently by the client (or by a common
//! parent) and bound with [`bind`] (`DMF_INTERFACE_BIND`), which only compiles for a protocol and a
//! transport of the same interface:
//!
//! 1. refuse a duplicate binding (same protocol, transport and interface:
//!    `STATUS_OBJECT_NAME_COLLISION`), a Module bound to itself (`STATUS_INVALID_PARAMETER`) or a
//!    Module being destroyed (`STATUS_INVALID_DEVICE_STATE`); record the binding in both Modules;
//!    state **Opening**;
//! 2. exchange the bind data: `protocol_data` (protocol) → `bind` (transport, returns its bind data
//!    and its method table) → `bind` (protocol; an error undoes the transport's bind);
//! 3. state **Opened** — calls are accepted from here on;
//! 4. `post_bind` on the protocol, then on the transport.
//!
//! The protocol calls the transport through its [`Binding<I>`] with [`Binding::call`]: each call
//! holds a reference on the binding (a rundown guard, as for a Module Method), so unbinding waits
//! for it. [`Binding::unbind`] (`DMF_INTERFACE_UNBIND`) runs: state **Closing**; `pre_unbind` on the
//! protocol, then on the transport (calls still work, like PreClose); wait until the calls in
//! flight have returned — new calls fail with `STATUS_INVALID_DEVICE_STATE` — without polling;
//! `unbind` on the protocol, then on the transport; the binding leaves both Modules; state
//! **Closed**. Unbinding runs once however many threads ask. Destroying either Module unbinds all
//! of its interfaces first (before it closes).
//!
//! Interfaces stack: a Module may be the transport of one interface and the protocol of another
//! (its transport methods calling onward through its own binding).
//!
//! # Ownership
//!
//! Each bound Module holds the binding; a [`Binding<I>`] handle holds it weakly, so keeping a
//! handle in a context after the unbind keeps nothing alive — calls through it just fail. The
//! method table (typically holding the transport's handle) is freed when the unbind removed the
//! binding from both Modules and the last call in flight has returned.
//!
//! Bind and the destruction of one of the two Modules must not race (bind in PrepareHardware or
//! D0Entry, as C DMF clients do; the framework destroys Modules after ReleaseHardware): a binding
//! made concurrently with a Module's destruction is still unbound when that Module is destroyed.
//!
//! # Example
//!
//! ```
//! use dmf_core::module::interface::{self, Binding, Interface, InterfaceProtocol, InterfaceTransport};
//! use dmf_core::module::{CollectionConfig, Dispatched, ModuleCallbacks, ModuleCollection, ModuleInit};
//! use dmf_core::NtResult;
//! use dmf_macros::{dmf_callbacks, dmf_module};
//!
//! /// The interface: what the transport offers the protocol.
//! pub trait Echo: Send + Sync {
//!     fn echo(&self, value: u32) -> NtResult<u32>;
//! }
//! pub struct EchoInterface;
//! impl Interface for EchoInterface {
//!     const NAME: &'static str = "Echo";
//!     type Transport = dyn Echo;
//!     type ProtocolData = ();
//!     type TransportData = u32; // e.g. the transport's maximum value
//! }
//!
//! #[dmf_module(crate = ::dmf_core, config = (), open = Create, lock = Dispatch)]
//! pub struct EchoTransport;
//! #[dmf_callbacks(crate = ::dmf_core)]
//! impl ModuleCallbacks for EchoTransport {}
//! impl Echo for EchoTransport {
//!     fn echo(&self, value: u32) -> NtResult<u32> {
//!         let _module = self.enter()?; // the transport's own Method guard
//!         Ok(value)
//!     }
//! }
//! impl InterfaceTransport<EchoInterface> for EchoTransport {
//!     fn bind(m: &Dispatched<'_, Self>, _: &()) -> NtResult<(u32, Box<dyn Echo>)> {
//!         // Fallible, like every allocation after DriverEntry.
//!         let methods: Box<dyn Echo> = dmf_core::fallible::try_box(m.handle()?)?;
//!         Ok((100, methods))
//!     }
//! }
//!
//! #[derive(Default)]
//! struct Context { binding: Option<Binding<EchoInterface>> }
//!
//! #[dmf_module(crate = ::dmf_core, config = (), context = Context, open = Create, lock = Dispatch)]
//! pub struct Client;
//! #[dmf_callbacks(crate = ::dmf_core)]
//! impl ModuleCallbacks for Client {}
//! impl InterfaceProtocol<EchoInterface> for Client {
//!     fn protocol_data(_: &Dispatched<'_, Self>) {}
//!     fn post_bind(m: &Dispatched<'_, Self>, binding: &Binding<EchoInterface>) {
//!         m.lock().binding = Some(binding.clone());
//!     }
//!     fn unbind(m: &Dispatched<'_, Self>) {
//!         m.lock().binding = None;
//!     }
//! }
//! impl Client {
//!     pub fn ask(&self, value: u32) -> NtResult<u32> {
//!         let module = self.enter()?;
//!         let binding = module.lock().binding.clone();
//!         binding.ok_or(dmf_core::NtStatus::NOT_FOUND)?.call(|t| t.echo(value))
//!     }
//! }
//!
//! let machine = kmdf_sim::Machine::new();
//! let _entered = machine.enter();
//! let mut init = ModuleInit::new();
//! let (client, transport) = (init.add(Client::with(())), init.add(EchoTransport::with(())));
//! let collection = ModuleCollection::create(init, CollectionConfig::default())?;
//! let (client, transport) = (collection.get(client)?, collection.get(transport)?);
//! let binding = interface::bind::<EchoInterface, _, _>(&client, &transport)?;
//! assert_eq!(client.ask(7), Ok(7));
//! binding.unbind();
//! assert!(client.ask(7).is_err());
//! # Ok::<(), dmf_core::NtStatus>(())
//! ```

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use core::any::{Any, TypeId};
use core::sync::atomic::{AtomicU8, Ordering};

use super::lazy::{LazyRundown, OnceBox};
use super::object::{ModuleObject, ModuleState};
use super::scope::{Dispatched, Module, Scope};
use crate::fallible::{try_arc_cyclic, try_box, VecExt};
use crate::status::{NtResult, NtStatus};

/// A DMF Interface declaration (C DMF: `DMF_INTERFACE_PROTOCOL_<Name>_DECLARATION_DATA`,
/// `…_TRANSPORT_…` and the bind data). Implemented on a marker type.
pub trait Interface: Sized + 'static {
    /// The interface's name, for diagnostics.
    const NAME: &'static str;
    /// The transport methods the protocol calls: normally a trait-object type, `dyn MyTransport`.
    type Transport: ?Sized + Send + Sync + 'static;
    /// What the protocol hands the transport when binding (`…_PROTOCOL_BIND_DATA`).
    type ProtocolData: Send + Sync + 'static;
    /// What the transport hands back (`…_TRANSPORT_BIND_DATA`).
    type TransportData: Send + Sync + 'static;
}

/// The Protocol side of interface `I` (`DMF_INTERFACE_PROTOCOL_<Name>_DESCRIPTOR`).
#[allow(unused_variables)]
pub trait InterfaceProtocol<I: Interface>: Module {
    /// `ProtocolBind`, first half: the bind data for the transport.
    fn protocol_data(module: &Dispatched<'_, Self>) -> I::ProtocolData;
    /// `ProtocolBind`, second half: the transport's bind data; an error fails the bind (and undoes
    /// the transport's bind).
    fn bind(module: &Dispatched<'_, Self>, transport: &I::TransportData) -> NtResult<()> {
        Ok(())
    }
    /// `ProtocolPostBind`: the binding is open; keep `binding` to call the transport.
    fn post_bind(module: &Dispatched<'_, Self>, binding: &Binding<I>) {}
    /// `ProtocolPreUnbind`: the binding is closing; calls still work.
    fn pre_unbind(module: &Dispatched<'_, Self>, binding: &Binding<I>) {}
    /// `ProtocolUnbind`: no call is in flight any more and new ones fail.
    fn unbind(module: &Dispatched<'_, Self>) {}
}

/// The Transport side of interface `I` (`DMF_INTERFACE_TRANSPORT_<Name>_DESCRIPTOR`).
#[allow(unused_variables)]
pub trait InterfaceTransport<I: Interface>: Module {
    /// `TransportBind`: accepts the protocol's bind data and returns the transport's bind data and
    /// the method table the protocol will call (typically the Module's own handle, boxed).
    #[allow(clippy::type_complexity)]
    fn bind(
        module: &Dispatched<'_, Self>,
        protocol: &I::ProtocolData,
    ) -> NtResult<(I::TransportData, Box<I::Transport>)>;
    /// `TransportPostBind`.
    fn post_bind(module: &Dispatched<'_, Self>) {}
    /// `TransportPreUnbind`: calls still work.
    fn pre_unbind(module: &Dispatched<'_, Self>) {}
    /// `TransportUnbind`: no call is in flight any more.
    fn unbind(module: &Dispatched<'_, Self>) {}
}

/// The state of a binding (`DMF_INTERFACE_STATE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BindingState {
    /// The bind data is being exchanged; calls are refused.
    Opening = 1,
    /// Bound: calls are accepted.
    Opened = 2,
    /// Unbinding: `pre_unbind`, then the drain of the calls in flight, then `unbind`.
    Closing = 3,
    /// Unbound (or the bind failed): calls fail.
    Closed = 4,
}

impl BindingState {
    fn from_u8(v: u8) -> BindingState {
        match v {
            1 => BindingState::Opening,
            2 => BindingState::Opened,
            3 => BindingState::Closing,
            _ => BindingState::Closed,
        }
    }
}

/// What a Module's binding list holds: any interface's binding, erased.
pub(crate) trait ErasedBinding: Send + Sync {
    /// `DMF_INTERFACE_UNBIND`; once only.
    fn unbind(&self);
    /// The binding's state.
    fn state(&self) -> BindingState;
    /// The interface type.
    fn interface(&self) -> TypeId;
    /// `true` if `object` is this binding's protocol.
    fn has_protocol(&self, object: &ModuleObject) -> bool;
    /// `true` if `object` is this binding's transport.
    fn has_transport(&self, object: &ModuleObject) -> bool;
    /// For the typed lookup.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// The protocol's and transport's unbind callbacks, erased.
struct Hooks<I: Interface> {
    pre_unbind_protocol: fn(&ModuleObject, &Binding<I>),
    unbind_protocol: fn(&ModuleObject),
    pre_unbind_transport: fn(&ModuleObject),
    unbind_transport: fn(&ModuleObject),
}

fn protocol_pre_unbind<I: Interface, P: InterfaceProtocol<I>>(o: &ModuleObject, b: &Binding<I>) {
    P::pre_unbind(&Dispatched::new(o), b);
}
fn protocol_unbind<I: Interface, P: InterfaceProtocol<I>>(o: &ModuleObject) {
    P::unbind(&Dispatched::new(o));
}
fn transport_pre_unbind<I: Interface, T: InterfaceTransport<I>>(o: &ModuleObject) {
    T::pre_unbind(&Dispatched::new(o));
}
fn transport_unbind<I: Interface, T: InterfaceTransport<I>>(o: &ModuleObject) {
    T::unbind(&Dispatched::new(o));
}

/// One binding (C DMF's `DMFINTERFACE` object).
struct BindingCore<I: Interface> {
    state: AtomicU8,
    /// The interface reference count: one reference per call in flight.
    rundown: LazyRundown,
    /// Set once, by the bind, before the rundown is armed; read only under a rundown guard.
    methods: OnceBox<Box<I::Transport>>,
    protocol: Weak<ModuleObject>,
    transport: Weak<ModuleObject>,
    hooks: Hooks<I>,
    this: Weak<BindingCore<I>>,
}

impl<I: Interface> BindingCore<I> {
    fn handle(&self) -> Binding<I> {
        Binding {
            core: self.this.clone(),
        }
    }

    /// Removes this binding from `object`'s list.
    fn leave(&self, object: &ModuleObject) {
        if let Some(mutable) = object.mutable_if_any() {
            let me: *const Self = self;
            mutable
                .lock()
                .bindings
                .retain(|b| !core::ptr::addr_eq(Arc::as_ptr(b), me));
        }
    }
}

impl<I: Interface> ErasedBinding for BindingCore<I> {
    fn unbind(&self) {
        if self
            .state
            .compare_exchange(
                BindingState::Opened as u8,
                BindingState::Closing as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return;
        }
        let protocol = self.protocol.upgrade();
        let transport = self.transport.upgrade();
        let binding = self.handle();
        if let Some(p) = &protocol {
            (self.hooks.pre_unbind_protocol)(p, &binding);
        }
        if let Some(t) = &transport {
            (self.hooks.pre_unbind_transport)(t);
        }
        // New calls fail from here; the calls in flight finish (no polling).
        self.rundown.wait_for_release();
        if let Some(p) = &protocol {
            (self.hooks.unbind_protocol)(p);
        }
        if let Some(t) = &transport {
            (self.hooks.unbind_transport)(t);
        }
        self.state
            .store(BindingState::Closed as u8, Ordering::Release);
        if let Some(p) = &protocol {
            self.leave(p);
        }
        if let Some(t) = &transport {
            self.leave(t);
        }
    }

    fn state(&self) -> BindingState {
        BindingState::from_u8(self.state.load(Ordering::Acquire))
    }

    fn interface(&self) -> TypeId {
        TypeId::of::<I>()
    }

    fn has_protocol(&self, object: &ModuleObject) -> bool {
        core::ptr::eq(self.protocol.as_ptr(), object)
    }

    fn has_transport(&self, object: &ModuleObject) -> bool {
        core::ptr::eq(self.transport.as_ptr(), object)
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// The protocol's handle on a binding of interface `I`: cloneable, weak (see the module docs).
pub struct Binding<I: Interface> {
    core: Weak<BindingCore<I>>,
}

impl<I: Interface> Clone for Binding<I> {
    fn clone(&self) -> Self {
        Binding {
            core: self.core.clone(),
        }
    }
}

impl<I: Interface> core::fmt::Debug for Binding<I> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Binding")
            .field("interface", &I::NAME)
            .field("state", &self.state())
            .finish()
    }
}

impl<I: Interface> Binding<I> {
    /// Calls the transport's methods under a reference on the binding (C DMF's interface
    /// reference count): `STATUS_INVALID_DEVICE_STATE` unless the binding is open, and once
    /// unbinding has begun to wait for calls in flight. The unbind waits for this call to return.
    #[inline]
    pub fn call<R>(&self, f: impl FnOnce(&I::Transport) -> NtResult<R>) -> NtResult<R> {
        let core = self.core.upgrade().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let _reference = core.rundown.reference()?;
        let methods = core.methods.get().ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        f(methods)
    }

    /// The binding's state ([`BindingState::Closed`] once it is gone).
    pub fn state(&self) -> BindingState {
        self.core
            .upgrade()
            .map_or(BindingState::Closed, |core| core.state())
    }

    /// `DMF_INTERFACE_UNBIND`: pre-unbind both, wait for the calls in flight, unbind both. Returns
    /// at once if the binding is not open (or another thread is unbinding it). PASSIVE_LEVEL.
    pub fn unbind(&self) {
        if let Some(core) = self.core.upgrade() {
            ErasedBinding::unbind(&*core);
        }
    }
}

/// `DMF_INTERFACE_BIND(protocol, transport, I)`: binds `protocol` to `transport` for interface
/// `I` (see the module docs for the sequence and the errors). PASSIVE_LEVEL.
pub fn bind<I, P, T>(protocol: &P, transport: &T) -> NtResult<Binding<I>>
where
    I: Interface,
    P: InterfaceProtocol<I>,
    T: InterfaceTransport<I>,
{
    let p = &protocol.__ref().0;
    let t = &transport.__ref().0;
    if Arc::ptr_eq(p, t) {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let dying =
        |o: &ModuleObject| matches!(o.state(), ModuleState::Destroying | ModuleState::Destroyed);
    if dying(p) || dying(t) {
        return Err(NtStatus::INVALID_DEVICE_STATE);
    }
    // The event the unbind's wait sleeps on is made ready now, where a failure can be reported.
    let rundown = LazyRundown::new_run_down()?;
    rundown.event().prepare()?;
    // The closure only assembles.
    let core: Arc<BindingCore<I>> = try_arc_cyclic(|this| BindingCore {
        state: AtomicU8::new(BindingState::Opening as u8),
        rundown,
        methods: OnceBox::new(),
        protocol: Arc::downgrade(p),
        transport: Arc::downgrade(t),
        hooks: Hooks {
            pre_unbind_protocol: protocol_pre_unbind::<I, P>,
            unbind_protocol: protocol_unbind::<I, P>,
            pre_unbind_transport: transport_pre_unbind::<I, T>,
            unbind_transport: transport_unbind::<I, T>,
        },
        this: this.clone(),
    })?;
    let erased: Arc<dyn ErasedBinding> = core.clone();
    // Record in both Modules; the duplicate check and the insertion are one step under the
    // protocol's lock, so two racing binds of the same pair cannot both succeed.
    {
        let mut list = p.mutable()?.lock();
        let duplicate = list
            .bindings
            .iter()
            .any(|b| b.interface() == TypeId::of::<I>() && b.has_transport(t) && b.has_protocol(p));
        if duplicate {
            return Err(NtStatus::OBJECT_NAME_COLLISION);
        }
        list.bindings.try_push(Arc::clone(&erased))?;
    }
    let recorded = t
        .mutable()
        .and_then(|m| m.lock().bindings.try_push(Arc::clone(&erased)));
    let fail = |status: NtStatus| {
        core.state
            .store(BindingState::Closed as u8, Ordering::Release);
        core.leave(p);
        core.leave(t);
        Err(status)
    };
    if let Err(status) = recorded {
        return fail(status);
    }
    // The bind-data exchange (Opening).
    let protocol_data = P::protocol_data(&Dispatched::new(p));
    let (transport_data, methods) = match T::bind(&Dispatched::new(t), &protocol_data) {
        Ok(pair) => pair,
        Err(status) => return fail(status),
    };
    let methods = match try_box(methods) {
        Ok(methods) => methods,
        Err(status) => {
            T::unbind(&Dispatched::new(t));
            return fail(status);
        }
    };
    if let Err(status) = <P as InterfaceProtocol<I>>::bind(&Dispatched::new(p), &transport_data) {
        T::unbind(&Dispatched::new(t));
        return fail(status);
    }
    core.methods.get_or_set(methods);
    // INVARIANT: nobody waits on a binding that was never opened, so arming cannot be refused.
    let armed = core.rundown.reinitialize();
    debug_assert!(armed.is_ok());
    core.state
        .store(BindingState::Opened as u8, Ordering::Release);
    let binding = core.handle();
    P::post_bind(&Dispatched::new(p), &binding);
    T::post_bind(&Dispatched::new(t));
    Ok(binding)
}

/// Unbinds every interface `object` is bound by, as protocol or transport (Module destruction).
/// Without a copy of the list (nothing is allocated): each round unbinds the first binding that
/// is still open, which leaves the open state for good, until none is left.
pub(crate) fn unbind_all(object: &ModuleObject) {
    let Some(mutable) = object.mutable_if_any() else {
        return;
    };
    loop {
        let open = mutable
            .lock()
            .bindings
            .iter()
            .find(|b| b.state() == BindingState::Opened)
            .cloned();
        match open {
            Some(binding) => binding.unbind(),
            None => return,
        }
    }
}

impl<M: Module> Scope<'_, M> {
    /// The open binding of interface `I` in which this Module is the protocol, if any (the first,
    /// if it is bound to several transports).
    pub fn interface<I: Interface>(&self) -> Option<Binding<I>> {
        let mutable = self.object.mutable_if_any()?;
        let found = mutable
            .lock()
            .bindings
            .iter()
            .find(|b| b.interface() == TypeId::of::<I>() && b.has_protocol(self.object))
            .cloned()?;
        let core = found.into_any().downcast::<BindingCore<I>>().ok()?;
        Some(core.handle())
    }
}
