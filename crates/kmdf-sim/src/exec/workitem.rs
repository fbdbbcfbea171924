//! WDFWORKITEM.
//!
//! Semantics of [`WdfWorkItemEnqueue`] / [`WdfWorkItemFlush`] / [`EVT_WDF_WORKITEM`]:
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
//! with it (deletion via its parent, see [`EVT_WDF_OBJECT_CONTEXT_CLEANUP`]): a queued run is
//! skipped and a running callback waited for before the driver's `EvtCleanupCallback`. The
//! owner's later [`WorkItem::delete`] or drop is then harmless; [`WorkItem::enqueue`] is a
//! [`Rule::DeletedObjectUsed`](crate::verifier::Rule::DeletedObjectUsed) violation, as on KMDF.
//! [`WorkItem::new`] makes a work item without an object or parent (the framework's own, and the
//! execution-layer tests').
//!
//! [`WdfWorkItemEnqueue`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfworkitem/nf-wdfworkitem-wdfworkitemenqueue
//! [`WdfWorkItemFlush`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfworkitem/nf-wdfworkitem-wdfworkitemflush
//! [`EVT_WDF_WORKITEM`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfworkitem/nc-wdfworkitem-evt_wdf_workitem
//! [`EVT_WDF_OBJECT_CONTEXT_CLEANUP`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdfobject/nc-wdfobject-evt_wdf_object_context_cleanup

use std::sync::Arc;

use crate::exec::callback::{CallbackKind, CallbackObject, CallbackState, ExecutionLevel};
use crate::exec::irql::{require_max_irql, Irql};
use crate::machine::Machine;
use crate::object::{ObjectAttributes, WdfObject};
use crate::status::Status;

/// A framework work item. The value returned by [`WorkItem::new`] owns it (drop = delete); the
/// callback receives a borrowed handle.
pub struct WorkItem {
    inner: Arc<CallbackObject<WorkItem>>,
    owner: bool,
}

impl CallbackKind for WorkItem {
    const CALLBACK: &'static str = "EvtWorkItem";
    type Extra = ();
    fn borrowed(inner: Arc<CallbackObject<Self>>) -> Self {
        WorkItem {
            inner,
            owner: false,
        }
    }
}

impl core::fmt::Debug for WorkItem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.inner.debug("WorkItem", f)
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
        WorkItem {
            inner: CallbackObject::new(machine, name.to_owned(), None, (), callback),
            owner: true,
        }
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
        Ok(WorkItem {
            inner: CallbackObject::create("WDFWORKITEM", name.to_owned(), attrs, (), callback)?,
            owner: true,
        })
    }

    /// The `WDFWORKITEM` object of a work item made with [`create`](Self::create).
    pub fn object(&self) -> Option<&WdfObject> {
        self.inner.object.as_ref()
    }

    /// True once the item is deleted (by its owner, or by the framework with its parent).
    pub fn is_deleted(&self) -> bool {
        self.inner.is_deleted()
    }

    /// The work item's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `WdfWorkItemEnqueue` (≤ DISPATCH_LEVEL): true if queued now, false if already queued.
    pub fn enqueue(&self) -> bool {
        self.inner
            .enqueue("WdfWorkItemEnqueue", ExecutionLevel::Passive)
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
        inner.wait_idle(st);
    }

    /// `WdfObjectDelete` on the work item: a queued run is skipped; waits for a running callback
    /// (unless called from it or above PASSIVE_LEVEL); then the object's cleanup and destroy
    /// callbacks run. Dropping the owner does the same. Once deleted — also by the framework with
    /// the item's parent — this does nothing.
    pub fn delete(&self) {
        // With an object, its cleanup step unqueues the item (framework cleanup, set by `create`).
        self.inner.delete();
    }
}

impl Drop for WorkItem {
    fn drop(&mut self) {
        if self.owner {
            self.delete();
        }
    }
}
