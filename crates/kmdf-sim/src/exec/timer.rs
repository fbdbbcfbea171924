//! WDFTIMER.
//!
//! Semantics of [`WdfTimerCreate`] / [`WDF_TIMER_CONFIG`] / [`WdfTimerStart`] / [`WdfTimerStop`] /
//! [`EVT_WDF_TIMER`]:
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
//! to one ([`WdfTimerCreate`]). When the framework deletes that device (removal) it deletes the
//! timer with it: in the timer's cleanup step it stops the timer and waits for a running callback
//! (the `EvtCleanupCallback` rule), then runs the driver's `EvtCleanupCallback`. The owner's later
//! [`Timer::delete`] or drop is then harmless (the object is not deleted twice); any other use is
//! a [`Rule::DeletedObjectUsed`] violation, as on KMDF. [`Timer::new`] makes a timer without an
//! object or parent: what the framework uses internally (request time-outs, idle timers) and what
//! the execution-layer tests use.
//!
//! [`WdfTimerCreate`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdftimer/nf-wdftimer-wdftimercreate
//! [`WDF_TIMER_CONFIG`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdftimer/ns-wdftimer-_wdf_timer_config
//! [`WdfTimerStart`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdftimer/nf-wdftimer-wdftimerstart
//! [`WdfTimerStop`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdftimer/nf-wdftimer-wdftimerstop
//! [`EVT_WDF_TIMER`]: https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdftimer/nc-wdftimer-evt_wdf_timer

use core::time::Duration;
use std::sync::{Arc, Mutex};

pub use crate::exec::callback::ExecutionLevel;
use crate::exec::callback::{push, report_deleted, CallbackKind, CallbackObject, CallbackState};
use crate::exec::clock::{duration_to_ticks, TICKS_PER_MILLISECOND};
use crate::exec::irql::{require_max_irql, Irql};
use crate::exec::lock;
use crate::exec::sched::{Deferred, Expire, SchedState};
use crate::machine::Machine;
use crate::object::{ObjectAttributes, WdfObject};
use crate::status::Status;
use crate::verifier::Rule;

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

/// Timer state beyond [`CallbackState`]; written under the dispatcher lock.
#[derive(Debug, Default)]
struct TimerQueueState {
    /// Key in the machine's timer queue while the timer is set.
    due: Option<(u64, u64)>,
}

/// What a timer holds besides its callback.
pub(crate) struct TimerExtra {
    period_ticks: u64,
    level: ExecutionLevel,
    queue: Mutex<TimerQueueState>,
}

impl CallbackKind for Timer {
    const CALLBACK: &'static str = "EvtTimerFunc";
    type Extra = TimerExtra;
    fn borrowed(inner: Arc<CallbackObject<Self>>) -> Self {
        Timer {
            inner,
            owner: false,
        }
    }
    /// Deleting the timer stops it: its pending expiry leaves the timer queue.
    fn on_delete(inner: &CallbackObject<Self>, st: &mut SchedState) {
        if let Some(k) = lock(&inner.extra.queue).due.take() {
            st.timers.remove(&k);
        }
    }
}

impl Expire for CallbackObject<Timer> {
    fn expire(self: Arc<Self>, st: &mut SchedState, deadline: u64) {
        let timer = &self.extra;
        let mut q = lock(&timer.queue);
        q.due = None;
        if timer.period_ticks > 0 {
            let key = (deadline.saturating_add(timer.period_ticks), st.next_seq());
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
        let level = timer.level;
        push(st, level, self as Arc<dyn Deferred>);
    }
}

/// A framework timer. The value returned by [`Timer::new`] owns the timer: dropping it deletes
/// the timer. The callback receives a borrowed handle with which it may restart or stop it.
pub struct Timer {
    inner: Arc<CallbackObject<Timer>>,
    owner: bool,
}

impl core::fmt::Debug for Timer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Timer")
            .field("name", &self.inner.name)
            .field("period_ticks", &self.inner.extra.period_ticks)
            .field("level", &self.inner.extra.level)
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
        Ok(Timer::build(machine, config, callback))
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
        let (name, extra) = Timer::parts(config);
        Ok(Timer {
            inner: CallbackObject::create("WDFTIMER", name, attrs, extra, callback)?,
            owner: true,
        })
    }

    fn build(
        machine: &Machine,
        config: TimerConfig,
        callback: impl Fn(&Timer) + Send + Sync + 'static,
    ) -> Timer {
        let (name, extra) = Timer::parts(config);
        Timer {
            inner: CallbackObject::new(machine, name, None, extra, callback),
            owner: true,
        }
    }

    fn parts(config: TimerConfig) -> (String, TimerExtra) {
        let extra = TimerExtra {
            period_ticks: u64::from(config.period_ms) * TICKS_PER_MILLISECOND,
            level: config.execution_level,
            queue: Mutex::new(TimerQueueState::default()),
        };
        (config.name, extra)
    }

    /// The `WDFTIMER` object of a timer made with [`create`](Self::create).
    pub fn object(&self) -> Option<&WdfObject> {
        self.inner.object.as_ref()
    }

    /// True once the timer is deleted (by its owner, or by the framework with its parent).
    pub fn is_deleted(&self) -> bool {
        self.inner.is_deleted()
    }

    /// The timer's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// True while the timer is set (in the machine's timer queue).
    pub fn is_queued(&self) -> bool {
        let _st = self.inner.core.sched.lock();
        lock(&self.inner.extra.queue).due.is_some()
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
        let mut q = lock(&inner.extra.queue);
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
            let mut q = lock(&inner.extra.queue);
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
            inner.wait_idle(st);
        }
        was_queued
    }

    /// `WdfObjectDelete` on the timer: stops it, skips an expiry still queued, and waits for a
    /// running callback (unless called from it or above PASSIVE_LEVEL); then the object's cleanup
    /// and destroy callbacks run. Further use is a [`Rule::DeletedObjectUsed`] violation.
    /// Dropping the owner does the same. Once deleted — also by the framework with the timer's
    /// parent — this does nothing.
    pub fn delete(&self) {
        // With an object, its cleanup step stops the timer (framework cleanup, set by `create`).
        self.inner.delete();
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if self.owner {
            self.delete();
        }
    }
}
