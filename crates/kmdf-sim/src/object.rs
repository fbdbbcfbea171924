//! WDF objects: the parent/child tree, reference counts, typed contexts, cleanup and destroy.
//!
//! # Design
//!
//! Every framework object (WDFDRIVER, WDFDEVICE, and later queues, requests, targets, …) is a
//! [`WdfObject`]: a cheap-to-clone handle (`Arc` inside) carrying
//!
//! * a readable **name** for traces and violations, `"{KIND} {driver}#{n}"` (e.g.
//!   `WDFDEVICE switchbar#0`), numbered per machine, kind and driver, or a name the creator chose;
//! * the owning **driver** (the calling thread's current driver at creation);
//! * a **parent** (weak) and its **children** (strong): deleting an object deletes its children;
//! * a **reference count** — the framework holds one creation reference until the object is
//!   deleted; [`WdfObject::reference`]/[`WdfObject::dereference`] are `WdfObjectReference` /
//!   `WdfObjectDereference`;
//! * a typed **context** set at creation (`WDF_OBJECT_ATTRIBUTES.ContextTypeInfo`), stored as
//!   `Arc<dyn Any + Send + Sync>` and read back with [`WdfObject::context`];
//! * optional `EvtCleanupCallback` / `EvtDestroyCallback`.
//!
//! # Deletion order
//!
//! As described by [`EvtCleanupCallback`], [`EvtDestroyCallback`] and Microsoft's
//! [Power-Down and Removal Sequence for a Function or Filter Driver].
//!
//! `WdfObjectDelete` (or the framework deleting a device) runs in two phases:
//!
//! 1. **Cleanup**, depth first, **children before their parent**: each object's
//!    `EvtCleanupCallback` runs and the object is marked deleted. An object with framework state
//!    is torn down by the framework first: a timer is stopped and a work item unqueued, and their
//!    running callbacks are waited for, before the driver's [`EvtCleanupCallback`]; so a
//!    device's removal deletes its timers and work items (see [`Timer::create`] and
//!    [`WorkItem::create`]).
//! 2. **Release** of the creation reference, again children first. An object is **destroyed**
//!    (its `EvtDestroyCallback` runs, then its context is dropped) when it is deleted, its
//!    reference count is 0 **and all its children are destroyed or let go** — so a parent's
//!    destroy follows the destroy of every child nobody references, and an extra reference
//!    taken with `reference()` delays the destroy until the matching `dereference()`. As in
//!    KMDF (`FxObject::DeletedAndDisposedWorkerLocked`: `DestroyChildren`, then the object's own
//!    release), a parent does not wait for a child that an extra reference keeps alive: once the
//!    children have released their creation references the parent lets go of them, and such a
//!    child is destroyed at its last `dereference()`, after its parent (a driver that needs the
//!    parent until then references the parent itself, as C DMF does for a dynamic Module).
//!
//! Callbacks run through [`invoke_callback`](crate::verifier::invoke_callback), attributed to the
//! owning driver, and are traced (`EvtCleanupCallback`, `EvtDestroyCallback`). State changes are
//! traced as [`TraceKind::State`] events (`created`, `deleted`, `destroyed`).
//!
//! # Use after delete
//!
//! Calling a method on a deleted object (deleting it again, creating a child under it, reading its
//! context after it was destroyed, or any framework method that calls [`WdfObject::ensure_alive`])
//! is reported as [`Rule::DeletedObjectUsed`], naming the calling driver (or the owner when no
//! driver code runs) and the object. In Record mode the call then fails with
//! `STATUS_INVALID_DEVICE_STATE` or returns nothing.
//!
//! # Fault injection
//!
//! [`WdfObject::create`] asks the machine's fault injector at
//! [`FaultPoint::ObjectCreation`]; an injected failure returns `STATUS_INSUFFICIENT_RESOURCES`,
//! like a failed `WdfObjectCreate`/`WdfDeviceCreate`.
//!
//! [`Timer::create`]: crate::exec::Timer::create
//! [`WorkItem::create`]: crate::exec::WorkItem::create
//! [`EvtCleanupCallback`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfobject/nc-wdfobject-evt_wdf_object_context_cleanup
//! [`EvtDestroyCallback`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfobject/nc-wdfobject-evt_wdf_object_context_destroy
//! [Power-Down and Removal Sequence for a Function or Filter Driver]: https://learn.microsoft.com/en-us/windows-hardware/drivers/wdf/power-down-and-removal-sequence-for-a-function-or-filter-driver

use core::fmt;
use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::exec::context;
use crate::fault::FaultPoint;
use crate::machine::{Core, Machine};
use crate::status::Status;
use crate::trace::TraceKind;
use crate::verifier::{self, Rule, NO_DRIVER};

/// An object's `EvtCleanupCallback` or `EvtDestroyCallback`.
pub type ObjectCallback = Box<dyn FnOnce(&WdfObject) + Send>;

/// `WDF_OBJECT_ATTRIBUTES`: parent, context, cleanup and destroy callbacks, and an optional name.
#[derive(Default)]
pub struct ObjectAttributes {
    /// The parent object (`ParentObject`). `None`: the creator decides (devices have none; most
    /// objects default to the device or driver).
    pub parent: Option<WdfObject>,
    /// The typed context (`ContextTypeInfo`), readable with [`WdfObject::context`].
    pub context: Option<Arc<dyn Any + Send + Sync>>,
    /// `EvtCleanupCallback`.
    pub cleanup: Option<ObjectCallback>,
    /// `EvtDestroyCallback`.
    pub destroy: Option<ObjectCallback>,
    /// A name for traces instead of the generated `"{KIND} {driver}#{n}"`.
    pub name: Option<String>,
}

impl fmt::Debug for ObjectAttributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectAttributes")
            .field("parent", &self.parent.as_ref().map(WdfObject::name))
            .field("context", &self.context.is_some())
            .field("cleanup", &self.cleanup.is_some())
            .field("destroy", &self.destroy.is_some())
            .field("name", &self.name)
            .finish()
    }
}

impl ObjectAttributes {
    /// Empty attributes (`WDF_OBJECT_ATTRIBUTES_INIT`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the parent.
    #[must_use]
    pub fn parent(mut self, parent: &WdfObject) -> Self {
        self.parent = Some(parent.clone());
        self
    }

    /// Sets the typed context.
    #[must_use]
    pub fn context<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.context = Some(Arc::new(value));
        self
    }

    /// Sets `EvtCleanupCallback`.
    #[must_use]
    pub fn on_cleanup(mut self, f: impl FnOnce(&WdfObject) + Send + 'static) -> Self {
        self.cleanup = Some(Box::new(f));
        self
    }

    /// Sets `EvtDestroyCallback`.
    #[must_use]
    pub fn on_destroy(mut self, f: impl FnOnce(&WdfObject) + Send + 'static) -> Self {
        self.destroy = Some(Box::new(f));
        self
    }

    /// Sets the trace name.
    #[must_use]
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }
}

/// The lifecycle stage of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectState {
    /// Created and not deleted.
    Alive,
    /// Deleted (cleanup ran); waiting for references or children before destroy.
    Deleted,
    /// Destroyed: the destroy callback ran and the context was dropped.
    Destroyed,
}

struct ObjState {
    state: ObjectState,
    /// The driver called `WdfObjectDelete` (a framework or parent deletion does not count).
    delete_called: bool,
    refs: usize,
    creation_ref_held: bool,
    children: Vec<WdfObject>,
    cleanup: Option<ObjectCallback>,
    destroy: Option<ObjectCallback>,
    context: Option<Arc<dyn Any + Send + Sync>>,
    delete_hook: Option<Arc<dyn DeleteHook>>,
    framework_cleanup: Option<FrameworkCleanup>,
}

/// The framework's own teardown of an object, run in its cleanup phase before the driver's
/// `EvtCleanupCallback` (a timer is stopped and its running callback waited for).
type FrameworkCleanup = Box<dyn FnOnce() + Send>;

/// Framework work around `WdfObjectDelete` of one object (a control device's teardown): `before`
/// runs before the cleanup phase, `after` once both phases are done. Called once, on the thread
/// that deletes the object.
pub(crate) trait DeleteHook: Send + Sync {
    fn before(&self, object: &WdfObject);
    fn after(&self, object: &WdfObject);
}

struct ObjectInner {
    id: u64,
    kind: String,
    name: String,
    driver: String,
    machine: MachineRef,
    parent: Option<Weak<ObjectInner>>,
    st: Mutex<ObjState>,
}

/// A WDF object handle. Cheap to clone; equality is identity. See the [module docs](self).
#[derive(Clone)]
pub struct WdfObject(Arc<ObjectInner>);

impl PartialEq for WdfObject {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for WdfObject {}

impl fmt::Debug for WdfObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WdfObject")
            .field("name", &self.0.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// Per-machine object bookkeeping: name counters and the set of objects not yet destroyed.
#[derive(Default)]
struct ObjectTable {
    inner: Mutex<TableInner>,
}

#[derive(Default)]
struct TableInner {
    counters: HashMap<(String, String), u64>,
    live: BTreeMap<u64, (String, String)>,
}

fn table(machine: &Machine) -> Arc<ObjectTable> {
    machine.extension(ObjectTable::default)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The objects of `machine` that are not yet destroyed, as `(name, driver)`, oldest first. A test
/// that tears everything down asserts this is empty (nothing leaked).
pub fn live_objects(machine: &Machine) -> Vec<(String, String)> {
    lock(&table(machine).inner).live.values().cloned().collect()
}

impl Machine {
    /// The end-of-test verdict, what Driver Verifier would say at unload: settles, then lists
    /// a bug check, every verifier violation, every pool allocation still outstanding and every
    /// WDF object still alive. `Ok` carries a one-line summary when there is nothing to report.
    ///
    /// # Errors
    ///
    /// The problems, one per line.
    ///
    /// # Panics
    ///
    /// As [`settle`](Self::settle), except that a bug check is reported, not raised.
    pub fn verdict(&self) -> Result<String, String> {
        use std::fmt::Write as _;
        let settled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.settle()));
        let mut problems = String::new();
        if let Some(crash) = self.crash() {
            let _ = writeln!(problems, "bug check: {crash}");
        } else if settled.is_err() {
            let _ = writeln!(problems, "the machine did not settle");
        }
        for v in self.verifier().violations() {
            let _ = writeln!(problems, "verifier: {v:?}");
        }
        for a in self.pool().outstanding() {
            let _ = writeln!(problems, "pool leak: {a:?}");
        }
        for (kind, name) in live_objects(self) {
            let _ = writeln!(problems, "object left: {kind} {name}");
        }
        if problems.is_empty() {
            Ok(format!(
                "verifier: no violations, no IRQL errors, no pool or WDF object left ({} trace \
                 events, {:.3} ms of virtual time)",
                self.trace().events().len(),
                self.now().as_secs_f64() * 1000.0
            ))
        } else {
            Err(problems)
        }
    }
}

/// The objects of `driver` on `machine` that are not yet destroyed, by name, oldest first.
pub fn live_objects_of(machine: &Machine, driver: &str) -> Vec<String> {
    live_objects(machine)
        .into_iter()
        .filter(|(_, d)| d == driver)
        .map(|(n, _)| n)
        .collect()
}

impl WdfObject {
    /// Creates an object of `kind` (e.g. `"WDFMEMORY"`) owned by the calling thread's current
    /// driver (`WdfObjectCreate` and the creation half of every `Wdf…Create`).
    ///
    /// Errors: `STATUS_INSUFFICIENT_RESOURCES` when fault injection fails this creation;
    /// `STATUS_INVALID_DEVICE_STATE` when the parent is deleted (also a
    /// [`Rule::DeletedObjectUsed`] violation).
    pub fn create(machine: &Machine, kind: &str, attrs: ObjectAttributes) -> Result<Self, Status> {
        let driver = context::current_driver().unwrap_or_else(|| NO_DRIVER.to_owned());
        Self::create_for(machine, &driver, kind, attrs)
    }

    /// As [`create`](Self::create), owned by `driver` (the framework creating an object on a
    /// driver's behalf).
    pub fn create_for(
        machine: &Machine,
        driver: &str,
        kind: &str,
        attrs: ObjectAttributes,
    ) -> Result<Self, Status> {
        if let Some(parent) = &attrs.parent {
            parent.ensure_alive(&format!("create a {kind} child"))?;
        }
        if machine.faults().should_fail(FaultPoint::ObjectCreation) {
            return Err(Status::INSUFFICIENT_RESOURCES);
        }
        let id = context::new_uid();
        let table = table(machine);
        let name = {
            let mut t = lock(&table.inner);
            let name = attrs.name.clone().unwrap_or_else(|| {
                let n = t
                    .counters
                    .entry((kind.to_owned(), driver.to_owned()))
                    .or_insert(0);
                let name = format!("{kind} {driver}#{n}");
                *n += 1;
                name
            });
            t.live.insert(id, (name.clone(), driver.to_owned()));
            name
        };
        let obj = WdfObject(Arc::new(ObjectInner {
            id,
            kind: kind.to_owned(),
            name,
            driver: driver.to_owned(),
            machine: MachineRef::new(machine),
            parent: attrs.parent.as_ref().map(|p| Arc::downgrade(&p.0)),
            st: Mutex::new(ObjState {
                state: ObjectState::Alive,
                refs: 1,
                creation_ref_held: true,
                delete_called: false,
                children: Vec::new(),
                cleanup: attrs.cleanup,
                destroy: attrs.destroy,
                context: attrs.context,
                delete_hook: None,
                framework_cleanup: None,
            }),
        }));
        if let Some(parent) = &attrs.parent {
            lock(&parent.0.st).children.push(obj.clone());
        }
        machine
            .trace()
            .record_for(TraceKind::State, Some(driver), &obj.0.name, "created");
        Ok(obj)
    }

    /// The readable name, e.g. `WDFDEVICE switchbar#0`.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The kind, e.g. `WDFDEVICE`.
    pub fn kind(&self) -> &str {
        &self.0.kind
    }

    /// The owning driver.
    pub fn driver_name(&self) -> &str {
        &self.0.driver
    }

    /// The machine the object lives on, while it runs.
    pub fn machine(&self) -> Option<Machine> {
        self.0.machine.machine()
    }

    /// A process-unique id.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The lifecycle stage.
    pub fn state(&self) -> ObjectState {
        lock(&self.0.st).state
    }

    /// True once deleted (cleanup ran or is running).
    pub fn is_deleted(&self) -> bool {
        self.state() != ObjectState::Alive
    }

    /// The current reference count (the creation reference counts as 1 until deletion).
    pub fn reference_count(&self) -> usize {
        lock(&self.0.st).refs
    }

    /// The parent, if any and still not destroyed.
    pub fn parent(&self) -> Option<WdfObject> {
        self.0
            .parent
            .as_ref()
            .and_then(Weak::upgrade)
            .map(WdfObject)
    }

    /// The nearest `WDFDEVICE` in the object's parent chain, the object itself included (the
    /// device a timer's or work item's `ParentObject` must lead to).
    pub fn device_ancestor(&self) -> Option<WdfObject> {
        let mut object = Some(self.clone());
        while let Some(o) = object {
            if o.kind() == "WDFDEVICE" {
                return Some(o);
            }
            object = o.parent();
        }
        None
    }

    /// The children not yet destroyed, oldest first.
    pub fn children(&self) -> Vec<WdfObject> {
        lock(&self.0.st).children.clone()
    }

    /// Reports [`Rule::DeletedObjectUsed`] if the object is deleted, naming `operation`.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` when deleted (after the report, in Record mode).
    pub fn ensure_alive(&self, operation: &str) -> Result<(), Status> {
        if self.is_deleted() {
            self.report_deleted(operation);
            return Err(Status::INVALID_DEVICE_STATE);
        }
        Ok(())
    }

    fn report_deleted(&self, operation: &str) {
        let driver = context::current_driver().unwrap_or_else(|| self.0.driver.clone());
        let Some(core) = self.0.machine.core() else {
            return;
        };
        core.verifier.report_for(
            Rule::DeletedObjectUsed,
            &driver,
            &self.0.name,
            &format!("{operation} on an object that was already deleted"),
        );
    }

    /// The typed context set at creation, if it is a `T`. Allowed until the object is destroyed
    /// (that is, also from the cleanup and destroy callbacks); afterwards a
    /// [`Rule::DeletedObjectUsed`] violation.
    pub fn context<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let st = lock(&self.0.st);
        if st.state == ObjectState::Destroyed {
            drop(st);
            self.report_deleted("context access");
            return None;
        }
        st.context
            .as_ref()
            .and_then(|c| Arc::clone(c).downcast::<T>().ok())
    }

    /// `WdfObjectReference`: adds a reference. On a destroyed object, a violation.
    pub fn reference(&self) {
        let mut st = lock(&self.0.st);
        if st.state == ObjectState::Destroyed {
            drop(st);
            self.report_deleted("WdfObjectReference");
            return;
        }
        st.refs += 1;
    }

    /// `WdfObjectDereference`: drops a reference; a deleted object whose count reaches 0 (and whose
    /// children are destroyed) is destroyed now. Dropping a reference that was never taken is a
    /// [`Rule::DeletedObjectUsed`] violation when the object is destroyed and otherwise ignored.
    pub fn dereference(&self) {
        let mut st = lock(&self.0.st);
        if st.state == ObjectState::Destroyed || st.refs == 0 {
            drop(st);
            self.report_deleted("WdfObjectDereference");
            return;
        }
        st.refs -= 1;
        drop(st);
        let machine = self.machine();
        let _g = machine.as_ref().and_then(bind);
        self.try_destroy();
    }

    /// `WdfObjectDelete`: cleanup (children first), then release of the creation references
    /// (children first); each object is destroyed when its count reaches 0. Deleting a deleted
    /// object is a [`Rule::DeletedObjectUsed`] violation.
    ///
    /// Errors: `STATUS_INVALID_DEVICE_STATE` when already deleted.
    ///
    /// An object its parent's deletion already disposed (its cleanup ran, its destroy waits for
    /// references) may still be deleted by the driver, once: KMDF's `FxObject::DeleteObject`
    /// accepts it in the *disposed* state, and drivers do it (C DMF deletes its Modules' memory
    /// in their cleanup). That call changes nothing. A second explicit delete is a violation.
    pub fn delete(&self) -> Result<(), Status> {
        {
            let mut st = lock(&self.0.st);
            if st.state == ObjectState::Deleted && !st.delete_called {
                st.delete_called = true;
                return Ok(());
            }
            if st.state == ObjectState::Alive {
                st.delete_called = true;
            }
        }
        self.ensure_alive("WdfObjectDelete")?;
        self.delete_now();
        Ok(())
    }

    /// `WdfObjectDelete` by the framework on behalf of an owner that may come after the object's
    /// parent deleted it (a timer dropped after its device was removed): deletes the object if it
    /// is alive, and otherwise does nothing (no violation, no second cleanup).
    pub(crate) fn delete_if_alive(&self) {
        if !self.is_deleted() {
            self.delete_now();
        }
    }

    fn delete_now(&self) {
        let machine = self.machine();
        let _g = machine.as_ref().and_then(bind);
        let hook = lock(&self.0.st).delete_hook.take();
        if let Some(h) = &hook {
            h.before(self);
        }
        // Only the thread whose cleanup deleted the object releases it: a parent deleting it
        // concurrently releases it in its own release phase.
        if self.cleanup_tree() {
            self.release_tree();
        }
        if let Some(h) = &hook {
            h.after(self);
        }
    }

    /// Sets the framework's own teardown of this object, run in its cleanup phase before the
    /// driver's `EvtCleanupCallback`. Returns false (and keeps nothing) if the object is already
    /// deleted: the caller then tears down itself.
    pub(crate) fn set_framework_cleanup(&self, f: impl FnOnce() + Send + 'static) -> bool {
        let mut st = lock(&self.0.st);
        if st.state != ObjectState::Alive {
            return false;
        }
        st.framework_cleanup = Some(Box::new(f));
        true
    }

    /// Sets the framework's [`DeleteHook`] of this object (replacing any earlier one).
    pub(crate) fn set_delete_hook(&self, hook: Arc<dyn DeleteHook>) {
        lock(&self.0.st).delete_hook = Some(hook);
    }

    /// Phase 1: children's cleanup, then ours (the framework's part first, then the driver's
    /// callback). False if the object was already deleted.
    fn cleanup_tree(&self) -> bool {
        let (children, framework, cb) = {
            let mut st = lock(&self.0.st);
            if st.state != ObjectState::Alive {
                return false;
            }
            st.state = ObjectState::Deleted;
            (
                st.children.clone(),
                st.framework_cleanup.take(),
                st.cleanup.take(),
            )
        };
        for child in children.iter().rev() {
            child.cleanup_tree();
        }
        if let Some(framework) = framework {
            framework();
        }
        if let Some(cb) = cb {
            verifier::invoke_callback(&self.0.driver, &self.0.name, "EvtCleanupCallback", || {
                cb(self);
            });
        }
        self.0
            .machine
            .state(&self.0.driver, &self.0.name, "deleted");
        true
    }

    /// Phase 2: children release their creation reference first, then we do.
    ///
    /// As KMDF's `FxObject::DeletedAndDisposedWorkerLocked` (`DestroyChildren`, then the
    /// object's own release): once its children have released their creation references, the
    /// object lets go of the ones still kept alive by a reference (they are destroyed at their
    /// last dereference, possibly after their parent), so that an object whose child is
    /// referenced by the object itself — a `WDFCOLLECTION` holding its own children — is not
    /// kept forever.
    fn release_tree(&self) {
        let children = lock(&self.0.st).children.clone();
        for child in children.iter().rev() {
            child.release_tree();
        }
        let release = {
            let mut st = lock(&self.0.st);
            let held = st.creation_ref_held;
            if held {
                st.creation_ref_held = false;
                st.refs = st.refs.saturating_sub(1);
                st.children.retain(|c| {
                    let child = lock(&c.0.st);
                    child.state == ObjectState::Deleted && child.creation_ref_held
                });
            }
            held
        };
        if release {
            self.try_destroy();
        }
    }

    fn try_destroy(&self) {
        let cb = {
            let mut st = lock(&self.0.st);
            if st.state != ObjectState::Deleted || st.refs > 0 || !st.children.is_empty() {
                return;
            }
            st.state = ObjectState::Destroyed;
            st.destroy.take()
        };
        if let Some(cb) = cb {
            verifier::invoke_callback(&self.0.driver, &self.0.name, "EvtDestroyCallback", || {
                cb(self);
            });
        }
        // The context goes away right after EvtDestroyCallback ("Power-Down and Removal Sequence
        // for a Function or Filter Driver").
        let context = lock(&self.0.st).context.take();
        drop(context);
        if let Some(m) = self.0.machine.machine() {
            lock(&table(&m).inner).live.remove(&self.0.id);
        }
        self.0
            .machine
            .state(&self.0.driver, &self.0.name, "destroyed");
        if let Some(parent) = self.parent() {
            lock(&parent.0.st).children.retain(|c| c != self);
            parent.try_destroy();
        }
    }
}

/// Binds the calling thread to `machine` for a scope unless it already is, so traces and
/// verifier reports of framework work land on that machine.
pub(crate) fn bind(machine: &Machine) -> Option<crate::machine::MachineGuard> {
    let bound = Machine::current().is_some_and(|m| Arc::ptr_eq(m.core(), machine.core()));
    (!bound).then(|| machine.enter())
}

/// A weak reference to a machine, for simulator objects kept in machine extensions (a strong
/// [`Machine`] there would keep the machine alive forever).
#[derive(Clone)]
pub(crate) struct MachineRef(Weak<Core>);

impl MachineRef {
    pub(crate) fn new(machine: &Machine) -> Self {
        MachineRef(Arc::downgrade(machine.core()))
    }

    pub(crate) fn core(&self) -> Option<Arc<Core>> {
        self.0.upgrade()
    }

    pub(crate) fn machine(&self) -> Option<Machine> {
        self.core().and_then(|c| c.machine())
    }

    /// Records a [`TraceKind::State`] event attributed to `driver`.
    pub(crate) fn state(&self, driver: &str, object: &str, text: &str) {
        if let Some(core) = self.core() {
            core.trace
                .record_for(TraceKind::State, Some(driver), object, text);
        }
    }
}
