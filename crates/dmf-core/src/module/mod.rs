//! The Module framework: DMF's Module model — object, tree, open/close, dispatch — without the
//! WDF device (that is the device integration, which calls the phase functions here).
//!
//! # Design
//!
//! A Module author writes a config, a private context, callbacks and Methods; `#[dmf_module]` and
//! `#[dmf_callbacks]` (re-exported by the `dmf` facade) generate the rest:
//!
//! ```
//! use dmf_core::fallible::VecExt;
//! use dmf_core::module::{
//!     CollectionConfig, Dispatched, ModuleCallbacks, ModuleCollection, ModuleHandle, ModuleInit,
//!     PowerDeviceState,
//! };
//! use dmf_core::{NtResult, NtStatus};
//! use dmf_macros::{dmf_callbacks, dmf_module};
//!
//! #[derive(Clone, Debug)]
//! pub struct RingBufferConfig { pub capacity: usize }
//!
//! #[derive(Default)]
//! struct Context { items: Vec<u32> }            // private, reachable only here
//!
//! // In a crate on the `dmf` facade, drop `crate = ::dmf_core`.
//! #[dmf_module(crate = ::dmf_core, config = RingBufferConfig, context = Context, open = D0Entry, lock = Dispatch)]
//! pub struct RingBuffer;                        // a cloneable typed handle
//!
//! #[dmf_callbacks(crate = ::dmf_core)]
//! impl ModuleCallbacks for RingBuffer {
//!     fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
//!         // No enter(): the framework holds the Module open for its callbacks.
//!         let capacity = module.config().capacity;
//!         module.lock().items.try_reserve_nt(capacity)   // every allocation is fallible
//!     }
//! }
//!
//! impl RingBuffer {
//!     pub fn write(&self, item: u32) -> NtResult<()> {
//!         let module = self.enter()?;           // rundown guard; fails unless open
//!         let mut context = module.lock();      // the Module's own lock, its own context
//!         if context.items.len() == module.config().capacity {
//!             return Err(NtStatus::BUFFER_OVERFLOW);
//!         }
//!         context.items.try_push(item)
//!     }
//! }
//!
//! // The device integration drives a collection through the phase functions; here a test does,
//! // on a simulated machine.
//! let machine = kmdf_sim::Machine::new();
//! let _entered = machine.enter();
//! let mut init = ModuleInit::new();
//! let ring = init.add(RingBuffer::with(RingBufferConfig { capacity: 2 }));
//! let modules = ModuleCollection::create(init, CollectionConfig::default())?;
//! let ring = modules.get(ring)?;
//! assert_eq!(ring.write(1), Err(NtStatus::INVALID_DEVICE_STATE)); // OPEN_D0Entry: not yet
//! modules.d0_entry(PowerDeviceState::D3Final)?;
//! ring.write(1)?;
//! ring.write(2)?;
//! assert_eq!(ring.write(3), Err(NtStatus::BUFFER_OVERFLOW));
//! modules.d0_exit(PowerDeviceState::D3)?;               // closes it again
//! assert_eq!(ring.write(4), Err(NtStatus::INVALID_DEVICE_STATE));
//! # Ok::<(), NtStatus>(())
//! ```
//!
//! | Piece | File |
//! |---|---|
//! | THE list of callbacks (everything that enumerates them is generated from it) | `callback_list.rs` |
//! | descriptor, open options (static and dynamic), implemented-callback set | `descriptor.rs` |
//! | the callbacks trait (30 WDF + 8 DMF callbacks), `IoRequest`, the erased table | `callbacks.rs` |
//! | the Module object, state machine, open/close/destroy | `object.rs` |
//! | typed handles, `Method`/`Dispatched` scopes | `scope.rs` |
//! | specs, add lists, creation, child limit, transports | `spec.rs` |
//! | THE dispatch order | `dispatch_table.rs` |
//! | the collection and the phase functions | `collection.rs` |
//! | dynamic Modules | `dynamic.rs` |
//! | DMF Interfaces (protocol/transport binding) | `interface.rs` |
//! | lazily created internals (internal lock, rundown event) | `lazy.rs` |
//!
//! ARCHITECTURE.md "Module framework" records the decisions and the deviations from C DMF.

pub(crate) mod callback_list;
mod callbacks;
mod collection;
mod descriptor;
pub mod dispatch_table;
mod dynamic;
pub mod interface;
mod lazy;
pub mod lifecycle;
mod object;
mod scope;
mod spec;

pub use callbacks::{Handled, IoRequest, ModuleCallbacks};
pub use collection::{ClientCallbacks, CollectionConfig, ModuleCollection, RequestDisposition};
pub use descriptor::{CallbackSet, ModuleDescriptor, OpenOption, DEFAULT_CHILD_LIMIT};
pub use dynamic::{DynamicModule, DynamicParent, DynamicParentRef, NoParent};
pub use interface::{Binding, BindingState, Interface, InterfaceProtocol, InterfaceTransport};
pub use object::{ModuleState, OpenedDuring, TraceEntry};
pub use scope::{
    Added, Dispatched, Method, Module, ModuleHandle, ModuleRef, ModuleReference, Scope, WeakModule,
};
pub use spec::{ModuleInit, ModuleSpec};

pub use crate::platform::contract::device::{
    PowerDeviceState, RelationType, SpecialFileType, SystemPowerAction,
};
pub use crate::sync::{ModuleLockGuard, ModuleOptions};

/// A Module's **shared state**: what its Methods reach *without* taking the Module's lock —
/// atomics and lock-free structures (C DMF Modules keep such fields in their context and use
/// `Interlocked*` on them; in Rust the context is behind the lock, so they live here).
///
/// Declared with `#[dmf_module(shared = T, …)]`; built from the Module's config when the Module is
/// created (a failure fails the create with that status), reached through `module.shared()` in
/// the Module's own code only (like its context), and dropped when the Module is destroyed.
/// It outlives every open/close cycle: what must start fresh at open is reset in the open callback.
/// Methods still run inside their rundown guard; the shared state only spares them the lock.
pub trait ModuleShared<Cfg>: Send + Sync + Sized + 'static {
    /// Builds the state for a Module created with `config`.
    ///
    /// # Errors
    ///
    /// Any status; the Module's create fails with it.
    fn new(config: &Cfg) -> crate::NtResult<Self>;
}

/// No shared state (the default).
impl<Cfg> ModuleShared<Cfg> for () {
    fn new(_config: &Cfg) -> crate::NtResult<()> {
        Ok(())
    }
}

/// Framework-owned feature Modules: looked up by [`Scope::feature`] and
/// [`ModuleCollection::feature`]; none is enabled unless the client adds one with
/// [`ModuleInit::add_feature`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Feature {
    /// `DmfFeature_BranchTrack`.
    BranchTrack,
    /// `DmfFeature_LiveKernelDump`.
    LiveKernelDump,
}

impl ModuleInit {
    /// Adds a feature Module (C DMF inserts them for the client; here the device integration
    /// does), reachable from every Module of the collection by `feature`. Like
    /// [`add`](Self::add), a failed allocation fails the creation.
    pub fn add_feature<M: Module>(&mut self, feature: Feature, spec: ModuleSpec<M>) -> Added<M> {
        use crate::fallible::VecExt;
        let token = self.add(spec);
        if let Err(status) = self.features.try_push((feature, token.index)) {
            self.error.get_or_insert(status);
        }
        token
    }
}

/// What `#[dmf_module]` expansions name. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use super::scope::{
        enter, enter_lock_free, notification_close, notification_open, ModuleCell,
    };
    pub use super::spec::spec;
    pub use crate::status::NtResult;

    /// `size_of` of the Module object (for the memory measurement of the dispatch bench).
    pub const MODULE_OBJECT_SIZE: usize = core::mem::size_of::<super::object::ModuleObject>();
}
