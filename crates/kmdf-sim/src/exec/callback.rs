//! What DPCs, work items and timers share: a driver callback run from one of the machine's
//! queues, the bookkeeping of its runs, its deletion, and — for work items and timers made with
//! `WdfWorkItemCreate` / `WdfTimerCreate` — the WDF object under a device that owns it.
//!
//! Each of [`Dpc`](super::Dpc), [`WorkItem`](super::WorkItem) and [`Timer`](super::Timer) is a
//! handle to one [`CallbackObject`] of its own kind ([`CallbackKind`]); what differs between them
//! (the callback's name, a timer's period and due time) is the kind's.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::exec::context;
use crate::exec::lock;
use crate::exec::sched::{Deferred, SchedState};
use crate::machine::{Core, Machine};
use crate::object::{ObjectAttributes, WdfObject};
use crate::status::Status;
use crate::verifier::{invoke_callback, Rule, NO_DRIVER};

use crate::exec::irql::{current_irql, Irql};

/// Where a deferred callback runs: the queue it is put on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExecutionLevel {
    /// On the DPC thread at DISPATCH_LEVEL (`WdfExecutionLevelDispatch`, the default for timers).
    #[default]
    Dispatch,
    /// On a system worker thread at PASSIVE_LEVEL (`WdfExecutionLevelPassive`).
    Passive,
}

/// Puts `entry` on the machine's DPC queue (`Dispatch`) or system work queue (`Passive`).
pub(crate) fn push(st: &mut SchedState, level: ExecutionLevel, entry: Arc<dyn Deferred>) {
    match level {
        ExecutionLevel::Dispatch => st.dpc_queue.push_back(entry),
        ExecutionLevel::Passive => st.work_queue.push_back(entry),
    }
}

/// The bookkeeping shared by DPCs, timers and work items.
#[derive(Debug, Default)]
pub(crate) struct CallbackState {
    /// In the DPC or work queue (DPC, work item) or with an expiry pending there (timer).
    pub(crate) queued: bool,
    /// Callbacks running now.
    pub(crate) running: u32,
    /// Threads running them (to detect calls from inside the own callback).
    pub(crate) running_on: Vec<u64>,
    /// Deleted: queued entries are skipped, new use is a violation.
    pub(crate) deleted: bool,
}

impl CallbackState {
    /// Under the dispatcher lock, when dequeued.
    pub(crate) fn begin(state: &Mutex<CallbackState>) -> bool {
        let mut s = lock(state);
        s.queued = false;
        if s.deleted {
            return false;
        }
        s.running += 1;
        s.running_on.push(context::thread_uid());
        true
    }

    /// Under the dispatcher lock, after the callback returned.
    pub(crate) fn end(state: &Mutex<CallbackState>) {
        let mut s = lock(state);
        s.running = s.running.saturating_sub(1);
        let me = context::thread_uid();
        if let Some(pos) = s.running_on.iter().position(|&u| u == me) {
            s.running_on.remove(pos);
        }
    }

    /// Is the calling thread inside this object's callback?
    pub(crate) fn in_own_callback(state: &Mutex<CallbackState>) -> bool {
        lock(state).running_on.contains(&context::thread_uid())
    }
}

/// One kind of callback object: the public handle type (`Dpc`, `WorkItem`, `Timer`).
pub(crate) trait CallbackKind: Sized + Send + Sync + 'static {
    /// The callback's name in traces (`EvtDpcFunc`).
    const CALLBACK: &'static str;
    /// What else an object of this kind holds.
    type Extra: Send + Sync;
    /// The handle the callback receives: borrowed, dropping it deletes nothing.
    fn borrowed(inner: Arc<CallbackObject<Self>>) -> Self;
    /// Under the dispatcher lock, when the object is deleted: drop what is queued besides the
    /// callback itself (a timer's pending expiry).
    fn on_delete(inner: &CallbackObject<Self>, st: &mut SchedState) {
        let _ = (inner, st);
    }
}

/// A DPC, work item or timer: its driver callback and the state of its runs.
pub(crate) struct CallbackObject<K: CallbackKind> {
    pub(crate) core: Arc<Core>,
    pub(crate) name: String,
    driver: String,
    callback: Box<dyn Fn(&K) + Send + Sync>,
    pub(crate) cb: Mutex<CallbackState>,
    /// The WDF object of a work item or timer made with `WdfWorkItemCreate` / `WdfTimerCreate`.
    pub(crate) object: Option<WdfObject>,
    pub(crate) extra: K::Extra,
}

impl<K: CallbackKind> CallbackObject<K> {
    /// An object on `machine` owned by the calling thread's current driver.
    pub(crate) fn new(
        machine: &Machine,
        name: String,
        object: Option<WdfObject>,
        extra: K::Extra,
        callback: impl Fn(&K) + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(CallbackObject {
            core: Arc::clone(machine.core()),
            name,
            driver: context::current_driver().unwrap_or_else(|| NO_DRIVER.to_owned()),
            callback: Box::new(callback),
            cb: Mutex::new(CallbackState::default()),
            object,
            extra,
        })
    }

    /// `WdfWorkItemCreate` / `WdfTimerCreate`: the object named `name` as a `kind` object under
    /// `attrs.parent`, which is mandatory and must be a device or lead to one (the documented
    /// `ParentObject` rule of both routines). When the framework deletes the parent, the object's
    /// cleanup step deletes the callbacks (a queued run is skipped, a running one waited for)
    /// before the driver's `EvtCleanupCallback`.
    ///
    /// Errors: `STATUS_WDF_PARENT_NOT_SPECIFIED` without a parent; `STATUS_INVALID_DEVICE_REQUEST`
    /// when no device is in the parent chain; `STATUS_INVALID_DEVICE_STATE` when the parent is
    /// deleted (a [`Rule::DeletedObjectUsed`] violation too) or its machine is gone;
    /// `STATUS_INSUFFICIENT_RESOURCES` (fault injection).
    pub(crate) fn create(
        kind: &str,
        name: String,
        attrs: ObjectAttributes,
        extra: K::Extra,
        callback: impl Fn(&K) + Send + Sync + 'static,
    ) -> Result<Arc<Self>, Status> {
        let parent = attrs
            .parent
            .clone()
            .ok_or(Status::WDF_PARENT_NOT_SPECIFIED)?;
        if parent.device_ancestor().is_none() {
            return Err(Status::INVALID_DEVICE_REQUEST);
        }
        let machine = parent.machine().ok_or(Status::INVALID_DEVICE_STATE)?;
        let object = WdfObject::create(&machine, kind, attrs)?;
        let inner = Self::new(&machine, name, Some(object.clone()), extra, callback);
        let weak = Arc::downgrade(&inner);
        let armed = object.set_framework_cleanup(move || {
            if let Some(inner) = weak.upgrade() {
                inner.delete_callbacks();
            }
        });
        if !armed {
            // The parent went away while we created the object.
            inner.delete_callbacks();
        }
        Ok(inner)
    }

    /// True once deleted (by its owner, or by the framework with its parent).
    pub(crate) fn is_deleted(&self) -> bool {
        lock(&self.cb).deleted
    }

    /// `WdfDpcEnqueue` / `WdfWorkItemEnqueue` (`routine`): puts the object on the queue of
    /// `level`; false if it is already queued (one run then handles everything accumulated), the
    /// machine shuts down, or the object is deleted (a [`Rule::DeletedObjectUsed`] violation).
    pub(crate) fn enqueue(self: &Arc<Self>, routine: &str, level: ExecutionLevel) -> bool {
        let core = &self.core;
        let mut st = core.sched.lock();
        let mut cb = lock(&self.cb);
        if cb.deleted {
            drop(cb);
            drop(st);
            report_deleted(core, &self.name, routine);
            return false;
        }
        if cb.queued || st.shutdown {
            return false;
        }
        cb.queued = true;
        drop(cb);
        push(&mut st, level, Arc::clone(self) as Arc<dyn Deferred>);
        core.sched.queued(&mut st);
        true
    }

    /// The framework's part of deleting the object: marks it deleted (a queued run is skipped)
    /// and, when possible, waits for a running callback. It cannot wait from inside its own
    /// callback or above PASSIVE_LEVEL; then it returns at once and the running callback
    /// finishes on its own.
    pub(crate) fn delete_callbacks(&self) {
        let mut st = self.core.sched.lock();
        {
            let mut s = lock(&self.cb);
            if s.deleted {
                return;
            }
            s.deleted = true;
        }
        K::on_delete(self, &mut st);
        if CallbackState::in_own_callback(&self.cb) || current_irql() > Irql::Passive {
            return;
        }
        let _ = self.core.sched.block_until(st, None, &mut |st| {
            st.shutdown || lock(&self.cb).running == 0
        });
    }

    /// With the dispatcher lock `st` held: waits until no run of the object is queued or running
    /// (or the machine shuts down).
    pub(crate) fn wait_idle(&self, st: MutexGuard<'_, SchedState>) {
        let _ = self.core.sched.block_until(st, None, &mut |st| {
            let cb = lock(&self.cb);
            st.shutdown || (!cb.queued && cb.running == 0)
        });
    }

    /// `WdfObjectDelete` on the object (or its owner dropped): deletes the WDF object, whose
    /// cleanup step deletes the callbacks — or, without an object, the callbacks directly. Once
    /// deleted this does nothing.
    pub(crate) fn delete(&self) {
        match &self.object {
            Some(object) => object.delete_if_alive(),
            None => self.delete_callbacks(),
        }
    }

    /// Debug output of a handle: its kind and name.
    pub(crate) fn debug(&self, kind: &str, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct(kind)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<K: CallbackKind> Deferred for CallbackObject<K> {
    fn begin(&self, _st: &mut SchedState) -> bool {
        CallbackState::begin(&self.cb)
    }

    fn run(self: Arc<Self>) {
        let inner = Arc::clone(&self);
        let handle = K::borrowed(self);
        invoke_callback(&inner.driver, &inner.name, K::CALLBACK, || {
            (inner.callback)(&handle);
        });
    }

    fn end(&self, _st: &mut SchedState) {
        CallbackState::end(&self.cb);
    }
}

/// Reports use of a deleted object.
pub(crate) fn report_deleted(core: &Core, object: &str, routine: &str) {
    core.verifier.report(
        Rule::DeletedObjectUsed,
        object,
        &format!("{routine} called on '{object}' after the object was deleted"),
    );
}
