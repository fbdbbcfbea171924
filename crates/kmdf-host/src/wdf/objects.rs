//! WDF object handles, attributes and typed contexts, on kmdf-sim's object tree.
//!
//! Every object the driver sees (`WDFDRIVER`, `WDFDEVICE`, `WDFQUEUE`, a DMF Module's
//! `WDFOBJECT`, …) is a kmdf-sim [`WdfObject`] — which gives it KMDF's parent/child tree,
//! reference counts, two-phase deletion and the verifier's rules — plus a host [`Object`] that
//! holds what only the C ABI needs: the handle value the driver stores, the context blocks its
//! `WDF_OBJECT_ATTRIBUTES` asked for, and the object's kind-specific state (the payload, owned by
//! the file that implements the kind).
//!
//! **Handles** are numbers from a counter, never addresses: a driver that dereferences one
//! faults, and a handle used after its object was destroyed is not in the table, which stops the
//! run with the function's name (KMDF's verifier bug-checks there). **Contexts** are zeroed
//! blocks of `ContextSizeOverride` or `ContextSize` bytes, 16-byte aligned
//! (`MEMORY_ALLOCATION_ALIGNMENT`), found by their type's `UniqueType` as
//! `WdfObjectGetTypedContextWorker` does, and freed right after `EvtDestroyCallback` (kmdf-sim
//! drops its own context at the same point).

use core::any::Any;
use core::ffi::c_void;
use std::alloc::Layout;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use kmdf_sim::object::{ObjectAttributes, WdfObject};
use kmdf_sim::Status;

use super::bindings::status::STATUS_INFO_LENGTH_MISMATCH;
use super::bindings::{
    PCWDF_OBJECT_CONTEXT_TYPE_INFO, PFN_WDF_OBJECT_CONTEXT_CLEANUP, PFN_WDF_OBJECT_CONTEXT_DESTROY,
    PWDF_DRIVER_GLOBALS, PWDF_OBJECT_ATTRIBUTES, WDFOBJECT, WDF_EXECUTION_LEVEL,
    WDF_OBJECT_ATTRIBUTES, WDF_OBJECT_CONTEXT_TYPE_INFO, WDF_SYNCHRONIZATION_SCOPE,
};
use crate::host::{stop, Stop};

/// A WDF handle value as the driver holds it.
pub type Handle = usize;

/// `MEMORY_ALLOCATION_ALIGNMENT` on x64.
const CONTEXT_ALIGNMENT: usize = 16;
/// The largest context the host allocates (a larger request is a driver bug, refused with
/// `STATUS_INSUFFICIENT_RESOURCES` as the pool would).
const MAX_CONTEXT: usize = 64 << 20;

/// One typed context block.
struct Context {
    /// The type's `UniqueType` (the identity `WdfObjectGetTypedContextWorker` compares).
    unique: usize,
    /// The driver's `WDF_OBJECT_CONTEXT_TYPE_INFO` (for `ContextName` in messages).
    info: usize,
    block: *mut u8,
    layout: Layout,
}

// SAFETY: the block is plain memory owned by this entry; the driver synchronises its own use.
unsafe impl Send for Context {}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: allocated in `Context::new` with this layout, freed once (here).
        unsafe { std::alloc::dealloc(self.block, self.layout) };
    }
}

impl Context {
    fn new(info: &ContextType) -> Result<Context, Status> {
        if info.size > MAX_CONTEXT {
            return Err(Status::INSUFFICIENT_RESOURCES);
        }
        let layout = Layout::from_size_align(info.size.max(1), CONTEXT_ALIGNMENT)
            .map_err(|_| Status::INSUFFICIENT_RESOURCES)?;
        // SAFETY: the layout has a non-zero size.
        let block = unsafe { std::alloc::alloc_zeroed(layout) };
        if block.is_null() {
            return Err(Status::INSUFFICIENT_RESOURCES);
        }
        Ok(Context {
            unique: info.unique,
            info: info.info,
            block,
            layout,
        })
    }
}

/// A context type as the driver described it (`WDF_OBJECT_CONTEXT_TYPE_INFO`).
#[derive(Clone, Copy, Debug)]
pub struct ContextType {
    /// The `UniqueType` identity.
    pub unique: usize,
    /// The type info the driver passed.
    pub info: usize,
    /// Bytes to allocate (`ContextSizeOverride` when larger than `ContextSize`).
    pub size: usize,
}

impl ContextType {
    /// The type `info` describes, with `size_override` (0: none).
    ///
    /// # Safety
    /// `info` is null or points to a `WDF_OBJECT_CONTEXT_TYPE_INFO` the driver keeps alive (they
    /// are `static` in every driver: `WDF_DECLARE_CONTEXT_TYPE`).
    pub unsafe fn read(
        info: PCWDF_OBJECT_CONTEXT_TYPE_INFO,
        size_override: usize,
    ) -> Result<Option<ContextType>, Status> {
        if info.is_null() {
            return Ok(None);
        }
        // SAFETY: the caller's contract.
        let unique = unsafe { unique_type(info) };
        // SAFETY: as above.
        let declared = unsafe { &*info };
        if declared.Size as usize != size_of::<WDF_OBJECT_CONTEXT_TYPE_INFO>() {
            return Err(Status(STATUS_INFO_LENGTH_MISMATCH));
        }
        if size_override != 0 && size_override < declared.ContextSize {
            // wdfobject.h: "ContextSizeOverride … must be greater than or equal to ContextSize".
            return Err(Status::INVALID_PARAMETER);
        }
        Ok(Some(ContextType {
            unique,
            info: info as usize,
            size: declared.ContextSize.max(size_override),
        }))
    }

    /// The `ContextName` of the type, for messages.
    pub fn name(&self) -> String {
        // SAFETY: `info` was read from a live type info (see `read`).
        unsafe { context_name(self.info as PCWDF_OBJECT_CONTEXT_TYPE_INFO) }
    }
}

/// The identity a context type is compared by: `EvtDriverGetUniqueContextType()`'s answer if the
/// type has one, else `UniqueType`, else the info itself (KMDF's `FxObject` rule).
///
/// # Safety
/// `info` points to a live `WDF_OBJECT_CONTEXT_TYPE_INFO`.
unsafe fn unique_type(info: PCWDF_OBJECT_CONTEXT_TYPE_INFO) -> usize {
    // SAFETY: the caller's contract.
    let declared = unsafe { &*info };
    let mut resolved = info;
    if let Some(get) = declared.EvtDriverGetUniqueContextType {
        // SAFETY: the driver's callback, `PCWDF_OBJECT_CONTEXT_TYPE_INFO (void)`.
        let got = unsafe { get() };
        if !got.is_null() {
            resolved = got;
        }
    }
    // SAFETY: `resolved` is the driver's info or what its callback returned (a static info).
    let unique = unsafe { (*resolved).UniqueType };
    if unique.is_null() {
        resolved as usize
    } else {
        unique as usize
    }
}

/// # Safety
/// `info` is null or points to a live `WDF_OBJECT_CONTEXT_TYPE_INFO`.
unsafe fn context_name(info: PCWDF_OBJECT_CONTEXT_TYPE_INFO) -> String {
    if info.is_null() {
        return "?".to_owned();
    }
    // SAFETY: the caller's contract; `ContextName` is a NUL-terminated static string.
    let name = unsafe { (*info).ContextName };
    if name.is_null() {
        return "?".to_owned();
    }
    // SAFETY: as above; read stops at the NUL or after 128 bytes.
    let bytes: Vec<u8> = (0..128)
        .map(|i| unsafe { name.cast::<u8>().add(i).read() })
        .take_while(|b| *b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `WDF_OBJECT_ATTRIBUTES`, read.
#[derive(Clone, Copy, Debug)]
pub struct Attributes {
    /// `EvtCleanupCallback`.
    pub cleanup: PFN_WDF_OBJECT_CONTEXT_CLEANUP,
    /// `EvtDestroyCallback`.
    pub destroy: PFN_WDF_OBJECT_CONTEXT_DESTROY,
    /// `ExecutionLevel`.
    pub execution_level: WDF_EXECUTION_LEVEL,
    /// `SynchronizationScope`.
    pub synchronization_scope: WDF_SYNCHRONIZATION_SCOPE,
    /// `ParentObject`.
    pub parent: Option<Handle>,
    /// The context type.
    pub context: Option<ContextType>,
}

impl Attributes {
    /// The attributes at `p` (null: none).
    ///
    /// Errors: `STATUS_INFO_LENGTH_MISMATCH` when `Size` is not `sizeof(WDF_OBJECT_ATTRIBUTES)`;
    /// `STATUS_INVALID_PARAMETER` for a context size override below the type's size.
    ///
    /// # Safety
    /// `p` is null or points to a `WDF_OBJECT_ATTRIBUTES` the driver owns for the call.
    pub unsafe fn read(p: PWDF_OBJECT_ATTRIBUTES) -> Result<Option<Attributes>, Status> {
        if p.is_null() {
            return Ok(None);
        }
        // SAFETY: the caller's contract.
        let a: &WDF_OBJECT_ATTRIBUTES = unsafe { &*p };
        if a.Size as usize != size_of::<WDF_OBJECT_ATTRIBUTES>() {
            return Err(Status(STATUS_INFO_LENGTH_MISMATCH));
        }
        // SAFETY: the type info of live attributes is a static of the driver.
        let context = unsafe { ContextType::read(a.ContextTypeInfo, a.ContextSizeOverride) }?;
        Ok(Some(Attributes {
            cleanup: a.EvtCleanupCallback,
            destroy: a.EvtDestroyCallback,
            execution_level: a.ExecutionLevel,
            synchronization_scope: a.SynchronizationScope,
            parent: (!a.ParentObject.is_null()).then_some(a.ParentObject as Handle),
            context,
        }))
    }
}

/// The host half of a WDF object. See the [module documentation](self).
pub struct Object {
    handle: Handle,
    kind: &'static str,
    sim: OnceLock<WdfObject>,
    contexts: Mutex<Vec<Context>>,
    payload: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl core::fmt::Debug for Object {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Object")
            .field("handle", &format_args!("{:#x}", self.handle))
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// What a kmdf-sim object carries to find its host object again.
#[derive(Debug)]
pub struct HandleTag(pub Handle);

impl Object {
    /// The handle the driver holds.
    pub fn handle(&self) -> Handle {
        self.handle
    }

    /// The handle as the type the WDF function returns (`WDFDEVICE`, `WDFQUEUE`, …).
    pub fn as_handle<T>(&self) -> *mut T {
        self.handle as *mut T
    }

    /// `WDFDEVICE`, `WDFQUEUE`, ….
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The kmdf-sim object.
    ///
    /// # Panics
    /// Never for an object in the table (it is inserted with its sim object).
    pub fn sim(&self) -> &WdfObject {
        self.sim
            .get()
            .expect("an object in the table has its sim object")
    }

    /// The kind-specific state, if it is a `T`.
    pub fn payload<T: Any>(&self) -> Option<&T> {
        self.payload.get().and_then(|p| p.downcast_ref::<T>())
    }

    /// The context of the type `unique`, if the object has one.
    pub fn context(&self, unique: usize) -> Option<*mut c_void> {
        lock(&self.contexts)
            .iter()
            .find(|c| c.unique == unique)
            .map(|c| c.block.cast())
    }

    /// Adds a context of `info` (`WdfObjectAllocateContext`); the existing one if the object
    /// already has one of that type (`STATUS_OBJECT_NAME_EXISTS` semantics: the caller reports).
    pub fn add_context(&self, info: &ContextType) -> Result<(*mut c_void, bool), Status> {
        let mut contexts = lock(&self.contexts);
        if let Some(c) = contexts.iter().find(|c| c.unique == info.unique) {
            return Ok((c.block.cast(), false));
        }
        let context = Context::new(info)?;
        let block = context.block.cast();
        contexts.push(context);
        Ok((block, true))
    }

    /// The `ContextName`s of the object's contexts (for messages).
    pub fn context_names(&self) -> Vec<String> {
        lock(&self.contexts)
            .iter()
            // SAFETY: `info` is the driver's static type info.
            .map(|c| unsafe { context_name(c.info as PCWDF_OBJECT_CONTEXT_TYPE_INFO) })
            .collect()
    }

    fn owns_context(&self, block: usize) -> bool {
        lock(&self.contexts)
            .iter()
            .any(|c| c.block as usize == block)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every live object of the process, by handle.
static TABLE: Mutex<Option<HashMap<Handle, Arc<Object>>>> = Mutex::new(None);
/// The next handle: far from any address the process maps, 64-byte steps like KMDF's objects.
static NEXT: AtomicUsize = AtomicUsize::new(0x0000_7A00_0000_0000);

fn table() -> MutexGuard<'static, Option<HashMap<Handle, Arc<Object>>>> {
    lock(&TABLE)
}

/// The live object `handle`, if any.
pub fn get(handle: Handle) -> Option<Arc<Object>> {
    table().as_ref().and_then(|t| t.get(&handle).cloned())
}

/// The live object `handle`, or a stop: the driver passed `routine` a handle that is not a live
/// object (KMDF's verifier bug-checks with `WDF_VIOLATION` here).
pub fn expect(handle: Handle, routine: &str) -> Arc<Object> {
    get(handle).unwrap_or_else(|| {
        stop(Stop {
            message: format!(
                "kmdf-host: the driver passed {routine} the handle {handle:#x}, which is not a \
                 live WDF object (WDF_VIOLATION: invalid or deleted handle)"
            ),
            wdf_function: None,
        })
    })
}

/// The live object `handle` of kind `kind`, or a stop naming `routine` (a handle of another
/// kind is `WDF_VIOLATION` too).
pub fn expect_kind(handle: Handle, kind: &str, routine: &str) -> Arc<Object> {
    let object = expect(handle, routine);
    if object.kind != kind {
        stop(Stop {
            message: format!(
                "kmdf-host: the driver passed {routine} a {} ({handle:#x}) where a {kind} is \
                 required (WDF_VIOLATION)",
                object.kind
            ),
            wdf_function: None,
        });
    }
    object
}

/// The host object of a kmdf-sim object created through this module.
pub fn of_sim(sim: &WdfObject) -> Option<Arc<Object>> {
    sim.context::<HandleTag>().and_then(|tag| get(tag.0))
}

/// The object owning the context block `block` (`WdfObjectContextGetObject`).
pub fn owner_of_context(block: usize) -> Option<Arc<Object>> {
    table()
        .as_ref()
        .and_then(|t| t.values().find(|o| o.owns_context(block)).cloned())
}

/// Live objects by kind (for reports and tests).
pub fn live_count(kind: &str) -> usize {
    table()
        .as_ref()
        .map_or(0, |t| t.values().filter(|o| o.kind == kind).count())
}

/// An object being created: its handle and contexts exist, its kmdf-sim object does not yet.
/// Dropped without [`finish`](Pending::finish), it frees what it allocated.
#[derive(Debug)]
pub struct Pending {
    object: Arc<Object>,
    attributes: Option<Attributes>,
}

/// Starts creating an object of `kind` with the driver's `attributes`: a fresh handle and the
/// context block its attributes ask for.
pub fn begin(kind: &'static str, attributes: Option<Attributes>) -> Result<Pending, Status> {
    let handle = NEXT.fetch_add(0x40, Ordering::Relaxed);
    let mut contexts = Vec::new();
    if let Some(context) = attributes.as_ref().and_then(|a| a.context) {
        contexts.push(Context::new(&context)?);
    }
    Ok(Pending {
        object: Arc::new(Object {
            handle,
            kind,
            sim: OnceLock::new(),
            contexts: Mutex::new(contexts),
            payload: OnceLock::new(),
        }),
        attributes,
    })
}

impl Pending {
    /// The handle the object will have.
    pub fn handle(&self) -> Handle {
        self.object.handle
    }

    /// The first context block (what `WdfObjectGetTypedContext` will return), if any.
    pub fn first_context(&self) -> Option<*mut c_void> {
        lock(&self.object.contexts).first().map(|c| c.block.cast())
    }

    /// kmdf-sim attributes for the object: the parent the driver named (resolved to its kmdf-sim
    /// object; `default_parent` otherwise), the handle tag, a trace name, and cleanup and destroy
    /// callbacks that call the driver's and then retire the handle. A parent handle that is not
    /// a live object stops the run naming `routine` (a driver bug KMDF's verifier reports).
    pub fn sim_attributes(
        &self,
        routine: &str,
        default_parent: Option<&WdfObject>,
    ) -> ObjectAttributes {
        let handle = self.object.handle;
        let mut attrs = ObjectAttributes::new().context(HandleTag(handle));
        match self.attributes.as_ref().and_then(|a| a.parent) {
            Some(parent) => attrs = attrs.parent(expect(parent, routine).sim()),
            None => {
                if let Some(parent) = default_parent {
                    attrs = attrs.parent(parent);
                }
            }
        }
        let cleanup = self.attributes.as_ref().and_then(|a| a.cleanup);
        let destroy = self.attributes.as_ref().and_then(|a| a.destroy);
        if let Some(cleanup) = cleanup {
            attrs = attrs.on_cleanup(move |_| {
                // SAFETY: the driver's `EVT_WDF_OBJECT_CONTEXT_CLEANUP`, called once with the
                // object's handle while the object (and its context) is alive.
                unsafe { cleanup(handle as WDFOBJECT) };
            });
        }
        attrs.on_destroy(move |_| {
            if let Some(destroy) = destroy {
                // SAFETY: the driver's `EVT_WDF_OBJECT_CONTEXT_DESTROY`, called once; the
                // context is freed only after it returns.
                unsafe { destroy(handle as WDFOBJECT) };
            }
            retire(handle);
        })
    }

    /// Completes the creation: the object enters the table with its kmdf-sim object and
    /// payload.
    pub fn finish(self, sim: WdfObject, payload: impl Any + Send + Sync) -> Arc<Object> {
        let object = self.object;
        let _ = object.sim.set(sim);
        let _ = object.payload.set(Box::new(payload));
        table()
            .get_or_insert_with(HashMap::new)
            .insert(object.handle, Arc::clone(&object));
        object
    }
}

/// Takes `handle` out of the table (its object was destroyed); its contexts are freed with the
/// last reference to the object.
pub fn retire_handle(handle: Handle) {
    retire(handle);
}

fn retire(handle: Handle) {
    let object = table().as_mut().and_then(|t| t.remove(&handle));
    drop(object);
}

/// The driver globals value a WDF function received, checked against the bindings.
pub fn globals_ok(globals: PWDF_DRIVER_GLOBALS) -> bool {
    crate::wdfldr::is_bound(globals.cast())
}
