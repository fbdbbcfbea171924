//! WDFTIMER.
//!
//! Semantics of WdfTimerCreate / WDF_TIMER_CONFIG / WdfTimerStart / WdfTimerStop / EVT_WDF_TIMER
//! (kmdf-sequences §8.1; learn.microsoft.com `wdftimer/nf-wdftimer-wdftimerstart`,
//! `…-wdftimerstop`, `wdftimer/ns-wdftimer-_wdf_timer_config`, `wdftimer/nc-wdftimer-evt_wdf_timer`):
//!
//! * one-shot (`period_ms == 0`) or periodic (`period_ms > 0`; expiries at due, due + period,
//!   due + 2·period, … without drift);
//! * [`ExecutionLevel::Dispatch`] (default): `EvtTimerFunc` runs on the machine's DPC thread at
//!   DISPATCH_LEVEL; [`ExecutionLevel::Passive`]: from a system worker thread at PASSIVE_LEVEL, and
//!   the period must be 0 (else `STATUS_INVALID_PARAMETER`);
//! * [`Timer::start`] returns true if the timer was already queued — its due time is then reset;
//!   restarting a one-shot timer from its own callback is allowed;
//! * [`Timer::stop`] returns true if the timer was queued; with `wait = true` it also waits until
//!   a pending or running callback of the timer has returned, PASSIVE_LEVEL only, and calling it
//!   from the timer's own callback is a
//!   [`Rule::TimerStopWaitInOwnCallback`]
//!   violation (a deadlock on real hardware);
//! * an expiry that finds the previous one's callback still queued is coalesced (one KDPC);
//! * deleting the timer ([`Timer::delete`] or dropping the owner) stops it and waits for a running
//!   callback, except from inside that callback or above PASSIVE_LEVEL.
//!
//! # Parent
//!
//! A driver's timer is created with [`Timer::create`] (`WdfTimerCreate`): a `WDFTIMER` object
//! whose `ParentObject` is mandatory and must be a device or an object whose parent chain leads
//! to one (kmdf-sequences §8.1). When the framework deletes that device (removal) it deletes the
//! timer with it: in the timer's cleanup step it stops the timer and waits for a running callback
//! (D50), then runs the driver's `EvtCleanupCallback`. The owner's later [`Timer::delete`] or drop
//! is then harmless (the object is not deleted twice); any other use is a
//! [`Rule::DeletedObjectUsed`] violation, as on KMDF. [`Timer::new`] makes a timer without an
//! object or parent: what the framework uses internally (request time-outs, idle timers) and what
//! the execution-layer tests use.

use core::time::Duration;
use std::sync::{Arc, Mutex};

use crate::exec::clock::{duration_to_ticks, TICKS_PER_MILLISECOND};
use crate::exec::context;
use crate::exec::irql::{require_max_irql, Irql};
use crate::exec::sched::{Deferred, Expire, SchedState};
use crate::exec::{delete_callback_object, lock, report_deleted, CallbackState};
use crate::machine::{Core, Machine};
use crate::object::{ObjectAttributes, WdfObject};
use crate::status::Status;
use crate::verifier::{invoke_callback, Rule, NO_DRIVER};

/// Where a timer's (or any deferred) callback runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExecutionLevel {
    /// On the DPC thread at DISPATCH_LEVEL (`WdfExecutionLevelDispatch`, the default for timers).
    #[default]
    Dispatch,
    /// On a system worker thread at PASSIVE_LEVEL (`WdfExecutionLevelPassive`).
    Passive,
}

/// `WDF_TIMER_CONFIG`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// The timer's name (traces, violations).
    pub name: String,
    /// Period in milliseconds; 0 = one-shot.
    pub period_ms: u32,
    /// Where the callback runs.
    pub execution_level: ExecutionLevel,
}

impl TimerConfig {
    /// A one-shot dispatch-level timer (`WDF_TIMER_CONFIG_INIT`).
    pub fn one_shot(name: &str) -> Self {
        TimerConfig {
            name: name.to_owned(),
            period_ms: 0,
            execution_level: ExecutionLevel::Dispatch,
        }
    }

    /// A periodic dispatch-level timer (`WDF_TIMER_CONFIG_INIT_PERIODIC`).
    pub fn periodic(name: &str, period_ms: u32) -> Self {
        TimerConfig {
            period_ms,
            ..TimerConfig::one_shot(name)
        }
    }

    /// Sets the execution level.
    #[must_use]
    pub fn execution_level(mut self, level: ExecutionLevel) -> Self {
        self.execution_level = level;
        self
    }
}

type TimerCallback = Box<dyn Fn(&Timer) + Send + Sync>;

/// Timer state beyond [`CallbackState`]; written under the dispatcher lock.
#[derive(Debug, Default)]
struct TimerQueueState {
    /// Key in the machine's timer queue while the timer is set.
    due: Option<(u64, u64)>,
}

struct TimerInner {
    core: Arc<Core>,
    name: String,
    driver: String,
    period_ticks: u64,
    level: ExecutionLevel,
    callback: TimerCallback,
    cb: Mutex<CallbackState>,
    queue: Mutex<TimerQueueState>,
    /// The `WDFTIMER` object of a timer made with [`Timer::create`].
    object: Option<WdfObject>,
}

impl TimerInner {
    /// The framework's part of deleting the timer: stop it, skip a queued expiry, wait for a
    /// running callback (when allowed).
    fn delete_callbacks(&self) {
        delete_callback_object(&self.core, &self.cb, &mut |st| {
            if let Some(k) = lock(&self.queue).due.take() {
                st.timers.remove(&k);
            }
        });
    }
}

impl Expire for TimerInner {
    fn expire(self: Arc<Self>, st: &mut SchedState, deadline: u64) {
        let mut q = lock(&self.queue);
        q.due = None;
        if self.period_ticks > 0 {
            let key = (deadline.saturating_add(self.period_ticks), st.next_seq());
            st.timers.insert(key, Arc::clone(&self) as Arc<dyn Expire>);
            q.due = Some(key);
        }
        drop(q);
        let mut cb = lock(&self.cb);
        if cb.queued || cb.deleted {
            return; // coalesced with the expiry whose callback is still queued
        }
        cb.queued = true;
        drop(cb);
        let level = self.level;
        let entry = self as Arc<dyn Deferred>;
        match level {
            ExecutionLevel::Dispatch => st.dpc_queue.push_back(entry),
            ExecutionLevel::Passive => st.work_queue.push_back(entry),
        }
    }
}

impl Deferred for TimerInner {
    fn begin(&self, _st: &mut SchedState) -> bool {
        CallbackState::begin(&self.cb)
    }

    fn run(self: Arc<Self>) {
        let handle = Timer {
            inner: self,
            owner: false,
        };
        let inner = &handle.inner;
        invoke_callback(&inner.driver, &inner.name, "EvtTimerFunc", || {
            (inner.callback)(&handle);
        });
    }

    fn end(&self, _st: &mut SchedState) {
        CallbackState::end(&self.cb);
    }
}

/// A framework timer. The value returned by [`Timer::new`] owns the timer: dropping it deletes
/// the timer. The callback receives a borrowed handle with which it may restart or stop it.
pub struct Timer {
    inner: Arc<TimerInner>,
    owner: bool,
}

impl core::fmt::Debug for Timer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Timer")
            .field("name", &self.inner.name)
            .field("period_ticks", &self.inner.period_ticks)
            .field("level", &self.inner.level)
            .finish_non_exhaustive()
    }
}

impl Timer {
    /// A timer on `machine` without a WDF object or parent (the framework's own timers; see the
    /// [module docs](self)), owned by the calling thread's current driver.
    ///
    /// Errors: `STATUS_INVALID_PARAMETER` for a passive-level timer with a nonzero period.
    pub fn new(
        machine: &Machine,
        config: TimerConfig,
        callback: impl Fn(&Timer) + Send + Sync + 'static,
    ) -> Result<Timer, Status> {
        if config.execution_level == ExecutionLevel::Passive && config.period_ms != 0 {
            return Err(Status::INVALID_PARAMETER);
        }
        Ok(Timer::build(machine, config, None, callback))
    }

    /// `WdfTimerCreate(config, attributes)`: a `WDFTIMER` object, child of `attrs.parent`, owned
    /// by the calling thread's current driver. The framework deletes it with its device (see the
    /// [module docs](self)); `attrs` also carries its `EvtCleanupCallback`/`EvtDestroyCallback`.
    ///
    /// Errors: `STATUS_INVALID_PARAMETER` for a passive-level timer with a nonzero period;
    /// `STATUS_WDF_PARENT_NOT_SPECIFIED` without a parent; `STATUS_INVALID_DEVICE_REQUEST` when
    /// the parent chain has no device; `STATUS_INVALID_DEVICE_STATE` when the parent is deleted
    /// (also a [`Rule::DeletedObjectUsed`] violation) or its machine is gone;
    /// `STATUS_INSUFFICIENT_RESOURCES` (fault injection at object creation).
    pub fn create(
        config: TimerConfig,
        attrs: ObjectAttributes,
        callback: impl Fn(&Timer) + Send + Sync + 'static,
    ) -> Result<Timer, Status> {
        if config.execution_level == ExecutionLevel::Passive && config.period_ms != 0 {
            return Err(Status::INVALID_PARAMETER);
        }
        let (machine, object) = crate::exec::create_parented_object(attrs, "WDFTIMER")?;
        let timer = Timer::build(&machine, config, Some(object.clone()), callback);
        let weak = Arc::downgrade(&timer.inner);
        let armed = object.set_framework_cleanup(move || {
            if let Some(inner) = weak.upgrade() {
                inner.delete_callbacks();
            }
        });
        if !armed {
            // The parent went away while we created the timer.
            timer.inner.delete_callbacks();
        }
        Ok(timer)
    }

    fn build(
        machine: &Machine,
        config: TimerConfig,
        object: Option<WdfObject>,
        callback: impl Fn(&Timer) + Send + Sync + 'static,
    ) -> Timer {
        Timer {
            inner: Arc::new(TimerInner {
                core: Arc::clone(machine.core()),
                name: config.name,
                driver: context::current_driver().unwrap_or_else(|| NO_DRIVER.to_owned()),
                period_ticks: u64::from(config.period_ms) * TICKS_PER_MILLISECOND,
                level: config.execution_level,
                callback: Box::new(callback),
                cb: Mutex::new(CallbackState::default()),
                queue: Mutex::new(TimerQueueState::default()),
                object,
            }),
            owner: true,
        }
    }

    /// The `WDFTIMER` object of a timer made with [`create`](Self::create).
    pub fn object(&self) -> Option<&WdfObject> {
        self.inner.object.as_ref()
    }

    /// True once the timer is deleted (by its owner, or by the framework with its parent).
    pub fn is_deleted(&self) -> bool {
        lock(&self.inner.cb).deleted
    }

    /// The timer's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// True while the timer is set (in the machine's timer queue).
    pub fn is_queued(&self) -> bool {
        let _st = self.inner.core.sched.lock();
        lock(&self.inner.queue).due.is_some()
    }

    /// `WdfTimerStart` with a relative due time: the callback runs once `due` of virtual time has
    /// passed (`Duration::ZERO`: at once). Returns true if the timer was already queued; its due
    /// time is then replaced.
    pub fn start(&self, due: Duration) -> bool {
        let inner = &self.inner;
        let core = &inner.core;
        let mut st = core.sched.lock();
        if lock(&inner.cb).deleted {
            drop(st);
            report_deleted(core, &inner.name, "WdfTimerStart");
            return false;
        }
        if st.shutdown {
            return false;
        }
        let mut q = lock(&inner.queue);
        let was_queued = q.due.take().is_some_and(|k| st.timers.remove(&k).is_some());
        let deadline = core.now().saturating_add(duration_to_ticks(due));
        let key = (deadline, st.next_seq());
        st.timers.insert(key, Arc::clone(inner) as Arc<dyn Expire>);
        q.due = Some(key);
        drop(q);
        if deadline <= core.now() {
            core.sched.fire_due(&mut st);
        }
        core.sched.deadlines_changed(&mut st);
        was_queued
    }

    /// `WdfTimerStop`: removes the timer from the timer queue and returns true if it was queued.
    /// With `wait`, also waits until no callback of this timer is pending or running (PASSIVE_LEVEL
    /// only; never from the timer's own callback — both are reported and the call does not wait).
    pub fn stop(&self, wait: bool) -> bool {
        let inner = &self.inner;
        let core = &inner.core;
        let mut wait = wait && require_max_irql(Irql::Passive, "WdfTimerStop(Wait = TRUE)");
        let mut st = core.sched.lock();
        let was_queued = {
            let mut q = lock(&inner.queue);
            q.due.take().is_some_and(|k| st.timers.remove(&k).is_some())
        };
        if wait && CallbackState::in_own_callback(&inner.cb) {
            drop(st);
            core.verifier.report(
                Rule::TimerStopWaitInOwnCallback,
                &inner.name,
                &format!(
                    "WdfTimerStop(Wait = TRUE) called from the EvtTimerFunc of timer '{}' itself; \
                     it would wait for its own return (deadlock); the call does not wait",
                    inner.name
                ),
            );
            wait = false;
            st = core.sched.lock();
        }
        core.sched.deadlines_changed(&mut st);
        if wait {
            let _ = core.sched.block_until(st, None, &mut |st| {
                let cb = lock(&inner.cb);
                st.shutdown || (!cb.queued && cb.running == 0)
            });
        }
        was_queued
    }

    /// `WdfObjectDelete` on the timer: stops it, skips an expiry still queued, and waits for a
    /// running callback (unless called from it or above PASSIVE_LEVEL); then the object's cleanup
    /// and destroy callbacks run. Further use is a [`Rule::DeletedObjectUsed`] violation.
    /// Dropping the owner does the same. Once deleted — also by the framework with the timer's
    /// parent — this does nothing.
    pub fn delete(&self) {
        match &self.inner.object {
            // The object's cleanup step stops the timer (framework cleanup, set by `create`).
            Some(object) => object.delete_if_alive(),
            None => self.inner.delete_callbacks(),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if self.owner {
            self.delete();
        }
    }
}
