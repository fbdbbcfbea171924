//! The Module framework: DMF's Module model — object, tree, open/close, dispatch — without the
//! WDF device (that is the device integration, which calls the phase functions here).
//!
//! # Design
//!
//! A Module author writes a config, a private context, callbacks and Methods; `#[dmf_module]` and
//! `#[dmf_callbacks]` (re-exported by the `dmf` facade) generate the rest:
//!
//! ```ignore
//! #[dmf_module(config = RingBufferConfig, context = Context, open = Create, lock = Dispatch)]
//! pub struct RingBuffer;                        // a cloneable typed handle
//!
//! #[derive(Default)]
//! struct Context { items: Vec<u32> }            // private, reachable only here
//!
//! #[dmf_callbacks]
//! impl ModuleCallbacks for RingBuffer {
//!     fn open(module: &Dispatched<'_, Self>) -> NtResult<()> { /* no enter(): held open */ Ok(()) }
//! }
//!
//! impl RingBuffer {
//!     pub fn write(&self, item: u32) -> NtResult<()> {
//!         let module = self.enter()?;           // rundown guard; fails once closing
//!         module.lock().items.push(item);       // the Module's own lock, its own context
//!         Ok(())
//!     }
//! }
//! ```
//!
//! | Piece | File | Seed IDs |
//! |---|---|---|
//! | descriptor, open options, implemented-callback set | `descriptor.rs` | MOD-30…MOD-41 |
//! | the callbacks trait (29 WDF + DMF callbacks) | `callbacks.rs` | MOD-34, MOD-35, DSP-20…48 |
//! | the Module object, state machine, open/close/destroy | `object.rs` | MOD-01…MOD-09, MOD-52…56, MOD-62…67 |
//! | typed handles, `Method`/`Dispatched` scopes | `scope.rs` | MOD-05, MOD-12, MOD-21, MOD-22, MOD-80 |
//! | specs, add lists, creation, child limit, transports | `spec.rs` | CLI-42, MOD-10, MOD-50, MOD-60, MOD-102 |
//! | THE dispatch order | `dispatch_table.rs` | DSP-01…DSP-10 |
//! | the collection and the phase functions | `collection.rs` | CLI-22, CLI-25, Top 25 #1–#9, #12, #13 |
//! | dynamic Modules | `dynamic.rs` | MOD-91…MOD-95 |
//! | DMF Interfaces (protocol/transport binding) | `interface.rs` | dmf-upstream §2.11 |
//!
//! ARCHITECTURE.md "Module framework" records the decisions and the deviations from C DMF.

mod callbacks;
mod collection;
mod descriptor;
pub mod dispatch_table;
mod dynamic;
pub mod interface;
mod object;
mod scope;
mod spec;

pub use callbacks::{Handled, IoctlRequest, ModuleCallbacks, Opaque};
pub use collection::{ClientCallbacks, CollectionConfig, ModuleCollection, RequestDisposition};
pub use descriptor::{CallbackSet, ModuleDescriptor, OpenOption, DEFAULT_CHILD_LIMIT};
pub use dynamic::{DynamicModule, DynamicParent, DynamicParentRef, NoParent};
pub use object::{ModuleState, OpenedDuring, TraceEntry};
pub use scope::{
    Added, Dispatched, Method, Module, ModuleHandle, ModuleRef, ModuleReference, Scope,
};
pub use spec::{ModuleInit, ModuleSpec};

pub use crate::platform::contract::device::{PowerDeviceState, RelationType, SpecialFileType};
pub use crate::sync::{ModuleLockGuard, ModuleOptions};

/// Framework-owned feature Modules (MOD-110): looked up by [`Scope::feature`] and
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
    /// does), reachable from every Module of the collection by `feature`.
    pub fn add_feature<M: Module>(&mut self, feature: Feature, spec: ModuleSpec<M>) -> Added<M> {
        let token = self.add(spec);
        self.features.push((feature, token.index));
        token
    }
}

/// What `#[dmf_module]` expansions name. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use super::scope::{enter, notification_close, notification_open, ModuleCell};
    pub use super::spec::spec;
    pub use crate::status::NtResult;

    /// `size_of` of the Module object (for the memory measurement of the dispatch bench).
    pub const MODULE_OBJECT_SIZE: usize = core::mem::size_of::<super::object::ModuleObject>();
}
