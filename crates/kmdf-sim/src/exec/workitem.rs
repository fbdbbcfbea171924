//! WDFWORKITEM.
//!
//! Semantics of WdfWorkItemEnqueue / WdfWorkItemFlush / EVT_WDF_WORKITEM (kmdf-sequences §8.2;
//! learn.microsoft.com `wdfworkitem/nf-wdfworkitem-wdfworkitemenqueue`, `…-wdfworkitemflush`,
//! `wdfworkitem/nc-wdfworkitem-evt_wdf_workitem`):
//!
//! * [`WorkItem::enqueue`] (≤ DISPATCH_LEVEL) adds the item to the machine's system work queue;
//!   enqueuing an item that is already queued does not queue it again (KMDF ≥ 1.7), so one
//!   `EvtWorkItem` run must handle all accumulated work. Enqueuing while the callback runs is
//!   allowed and the next run may start before the current one returns.
//! * `EvtWorkItem` runs at PASSIVE_LEVEL on one of the machine's system worker threads, FIFO.
//! * [`WorkItem::flush`] (PASSIVE_LEVEL) returns after the item was dequeued and its callback
//!   returned.
//! * Deleting the item waits for running callbacks.
//!
//! # Parent
//!
//! A driver's work item is created with [`WorkItem::create`] (`WdfWorkItemCreate`): a
//! `WDFWORKITEM` object whose `ParentObject` is mandatory and must be a device or an object whose
//! parent chain leads to one. When the framework deletes that device it deletes the work item
//! with it ("directly or via its parent", kmdf-sequences §8.2): a queued run is skipped and a
//! running callback waited for before the driver's `EvtCleanupCallback` (D50). The owner's later
//! [`WorkItem::delete`] or drop is then harmless; [`WorkItem::enqueue`] is a
//! [`Rule::DeletedObjectUsed`](crate::verifier::Rule::DeletedObjectUsed) violation, as on KMDF.
//! [`WorkItem::new`] makes a work item without an object or parent (the framework's own, and the
//! execution-layer tests').

use std::sync::{Arc, Mutex};

use crate::exec::context;
use crate::exec::irql::{require_max_irql, Irql};
use crate::exec::sched::{Deferred, SchedState};
use crate::exec::{delete_callback_object, lock, report_deleted, CallbackState};
use crate::machine::{Core, Machine};
use crate::object::{ObjectAttributes, WdfObject};
use crate::status::Status;
use crate::verifier::{invoke_callback, NO_DRIVER};

type WorkCallback = Box<dyn Fn(&WorkItem) + Send + Sync>;

struct WorkInner {
    core: Arc<Core>,
    name: String,
    driver: String,
    callback: WorkCallback,
    cb: Mutex<CallbackState>,
    /// The `WDFWORKITEM` object of a work item made with [`WorkItem::create`].
    object: Option<WdfObject>,
}

impl WorkInner {
    /// The framework's part of deleting the item: skip a queued run, wait for a running callback
    /// (when allowed).
    fn delete_callbacks(&self) {
        delete_callback_object(&self.core, &self.cb, &mut |_| {});
    }
}

impl Deferred for WorkInner {
    fn begin(&self, _st: &mut SchedState) -> bool {
        CallbackState::begin(&self.cb)
    }

    fn run(self: Arc<Self>) {
        let handle = WorkItem {
            inner: self,
            owner: false,
        };
        let inner = &handle.inner;
        invoke_callback(&inner.driver, &inner.name, "EvtWorkItem", || {
            (inner.callback)(&handle);
        });
    }

    fn end(&self, _st: &mut SchedState) {
        CallbackState::end(&self.cb);
    }
}

/// A framework work item. The value returned by [`WorkItem::new`] owns it (drop = delete); the
/// callback receives a borrowed handle.
pub struct WorkItem {
    inner: Arc<WorkInner>,
    owner: bool,
}

impl core::fmt::Debug for WorkItem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WorkItem")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl WorkItem {
    /// A work item on `machine` without a WDF object or parent (the framework's own; see the
    /// [module docs](self)), owned by the calling thread's current driver.
    pub fn new(
        machine: &Machine,
        name: &str,
        callback: impl Fn(&WorkItem) + Send + Sync + 'static,
    ) -> WorkItem {
        WorkItem::build(machine, name, None, callback)
    }

    /// `WdfWorkItemCreate(config, attributes)`: a `WDFWORKITEM` object named `name` in traces,
    /// child of `attrs.parent`, owned by the calling thread's current driver. The framework
    /// deletes it with its device (see the [module docs](self)).
    ///
    /// Errors: `STATUS_WDF_PARENT_NOT_SPECIFIED` without a parent; `STATUS_INVALID_DEVICE_REQUEST`
    /// when the parent chain has no device; `STATUS_INVALID_DEVICE_STATE` when the parent is
    /// deleted (also a `DeletedObjectUsed` violation) or its machine is gone;
    /// `STATUS_INSUFFICIENT_RESOURCES` (fault injection at object creation).
    pub fn create(
        name: &str,
        attrs: ObjectAttributes,
        callback: impl Fn(&WorkItem) + Send + Sync + 'static,
    ) -> Result<WorkItem, Status> {
        let (machine, object) = crate::exec::create_parented_object(attrs, "WDFWORKITEM")?;
        let item = WorkItem::build(&machine, name, Some(object.clone()), callback);
        let weak = Arc::downgrade(&item.inner);
        let armed = object.set_framework_cleanup(move || {
            if let Some(inner) = weak.upgrade() {
                inner.delete_callbacks();
            }
        });
        if !armed {
            // The parent went away while we created the item.
            item.inner.delete_callbacks();
        }
        Ok(item)
    }

    fn build(
        machine: &Machine,
        name: &str,
        object: Option<WdfObject>,
        callback: impl Fn(&WorkItem) + Send + Sync + 'static,
    ) -> WorkItem {
        WorkItem {
            inner: Arc::new(WorkInner {
                core: Arc::clone(machine.core()),
                name: name.to_owned(),
                driver: context::current_driver().unwrap_or_else(|| NO_DRIVER.to_owned()),
                callback: Box::new(callback),
                cb: Mutex::new(CallbackState::default()),
                object,
            }),
            owner: true,
        }
    }

    /// The `WDFWORKITEM` object of a work item made with [`create`](Self::create).
    pub fn object(&self) -> Option<&WdfObject> {
        self.inner.object.as_ref()
    }

    /// True once the item is deleted (by its owner, or by the framework with its parent).
    pub fn is_deleted(&self) -> bool {
        lock(&self.inner.cb).deleted
    }

    /// The work item's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `WdfWorkItemEnqueue` (≤ DISPATCH_LEVEL): true if queued now, false if already queued.
    pub fn enqueue(&self) -> bool {
        let inner = &self.inner;
        let core = &inner.core;
        let mut st = core.sched.lock();
        let mut cb = lock(&inner.cb);
        if cb.deleted {
            drop(cb);
            drop(st);
            report_deleted(core, &inner.name, "WdfWorkItemEnqueue");
            return false;
        }
        if cb.queued || st.shutdown {
            return false;
        }
        cb.queued = true;
        drop(cb);
        st.work_queue
            .push_back(Arc::clone(inner) as Arc<dyn Deferred>);
        core.sched.queued(&mut st);
        true
    }

    /// `WdfWorkItemFlush` (PASSIVE_LEVEL): waits until the item is no longer queued and no
    /// callback of it runs. From inside its own callback it returns at once (it would wait for
    /// itself).
    pub fn flush(&self) {
        if !require_max_irql(Irql::Passive, "WdfWorkItemFlush") {
            return;
        }
        let inner = &self.inner;
        let core = &inner.core;
        let st = core.sched.lock();
        if CallbackState::in_own_callback(&inner.cb) {
            return;
        }
        let _ = core.sched.block_until(st, None, &mut |st| {
            let cb = lock(&inner.cb);
            st.shutdown || (!cb.queued && cb.running == 0)
        });
    }

    /// `WdfObjectDelete` on the work item: a queued run is skipped; waits for a running callback
    /// (unless called from it or above PASSIVE_LEVEL); then the object's cleanup and destroy
    /// callbacks run. Dropping the owner does the same. Once deleted — also by the framework with
    /// the item's parent — this does nothing.
    pub fn delete(&self) {
        match &self.inner.object {
            // The object's cleanup step unqueues the item (framework cleanup, set by `create`).
            Some(object) => object.delete_if_alive(),
            None => self.inner.delete_callbacks(),
        }
    }
}

impl Drop for WorkItem {
    fn drop(&mut self) {
        if self.owner {
            self.delete();
        }
    }
}
