//! The scheduler accounting of one machine (internal).
//!
//! One mutex per machine — the *dispatcher lock*, named after the kernel's — protects: the table of
//! threads bound to the machine with their run state, the DPC queue, the system work queue, the
//! timer queue and the state of every dispatcher object (event flags, wait-lock owners, timer
//! queue membership). Two condition variables go with it:
//!
//! * `wake_cv` — blocked waiters. Every change that could satisfy a wait (an event set, a lock
//!   released, a queue filled, time moved) is made under the lock and followed by
//!   [`Sched::wake_all`], which marks every blocked thread *woken* before notifying. A woken thread
//!   re-evaluates its wait condition under the lock and either returns or blocks again.
//! * `service_cv` — idle service threads (the DPC thread and the system worker threads waiting for
//!   their queue, [`Sched::block_until_queued`]). Their wait can only be satisfied by an entry
//!   queued, the queues resumed, a timer fired or shutdown, so only those changes wake them
//!   ([`Sched::wake_service`]); an event set or a lock released does not, as on a real machine,
//!   where an idle worker thread sleeps on its queue, not on every dispatcher object.
//! * `idle_cv` — observers: [`Machine::settle`](crate::Machine::settle), `advance`. Notified when a
//!   thread blocks or leaves.
//!
//! Because the waker marks the waiter woken *under the lock*, an observer can never see "every
//! thread blocked" while a wake-up is in flight: quiescence is exact, and `settle` needs no
//! sleep-polling. A blocked thread never sleeps for real in Manual and AutoAdvance modes: its
//! deadline is recorded, and the clock owner wakes it when virtual time reaches it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::exec::clock::{Clock, ClockMode};
use crate::exec::context;
pub(crate) use crate::exec::context::ThreadRole;
use crate::status::Status;

/// The outcome of a wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    /// The object was signaled (`STATUS_SUCCESS`).
    Signaled,
    /// The timeout expired first (`STATUS_TIMEOUT`).
    TimedOut,
}

impl WaitStatus {
    /// The `NTSTATUS` KeWaitForSingleObject returns.
    pub fn to_status(self) -> Status {
        match self {
            WaitStatus::Signaled => Status::SUCCESS,
            WaitStatus::TimedOut => Status::TIMEOUT,
        }
    }

    /// True for [`WaitStatus::Signaled`].
    pub fn is_signaled(self) -> bool {
        self == WaitStatus::Signaled
    }
}

/// Something the DPC thread or a worker thread runs (a DPC object, a timer expiry, a work item).
pub(crate) trait Deferred: Send + Sync {
    /// Under the dispatcher lock, when dequeued: update the object's state; false skips `run`.
    fn begin(&self, st: &mut SchedState) -> bool;
    /// Outside the lock, at the queue's IRQL: call the driver.
    fn run(self: Arc<Self>);
    /// Under the dispatcher lock, after `run` returned (or was skipped: not called then).
    fn end(&self, st: &mut SchedState);
}

/// Something in the timer queue.
pub(crate) trait Expire: Send + Sync {
    /// Under the dispatcher lock, when virtual time reached `deadline`.
    fn expire(self: Arc<Self>, st: &mut SchedState, deadline: u64);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    Running,
    Blocked(Option<u64>),
    Woken,
}

#[derive(Debug)]
struct ThreadRec {
    name: String,
    role: ThreadRole,
    state: RunState,
    nest: u32,
    /// Blocked in [`Sched::block_until_queued`] (woken by [`Sched::wake_service`] only).
    idle_service: bool,
}

/// Everything the dispatcher lock protects.
pub(crate) struct SchedState {
    threads: HashMap<u64, ThreadRec>,
    pub(crate) dpc_queue: VecDeque<Arc<dyn Deferred>>,
    pub(crate) work_queue: VecDeque<Arc<dyn Deferred>>,
    pub(crate) timers: BTreeMap<(u64, u64), Arc<dyn Expire>>,
    seq: u64,
    generation: u64,
    holds: u32,
    /// Number of live [`QueuesPaused`](crate::QueuesPaused) guards: while non-zero, the DPC and
    /// worker threads take nothing from their queues.
    pub(crate) paused: u32,
    /// Threads blocked in [`Sched::block_under_watchdog`]: while non-zero, a Manual clock
    /// auto-advances like AutoAdvance (see [`Sched::maybe_auto_advance`]).
    watchdog_waiters: u32,
    pub(crate) shutdown: bool,
    pub(crate) crash: Option<String>,
    /// Threads (bound or not) sleeping on `wake_cv` and on `service_cv`: a wake-up with nobody
    /// asleep costs no system call.
    sleepers: [u32; 2],
}

impl SchedState {
    /// Adds (or re-enters) a thread in the accounting, as running.
    pub(crate) fn register(&mut self, uid: u64, name: &str, role: ThreadRole) {
        self.threads
            .entry(uid)
            .and_modify(|r| r.nest += 1)
            .or_insert_with(|| ThreadRec {
                name: name.to_owned(),
                role,
                state: RunState::Running,
                nest: 1,
                idle_service: false,
            });
    }

    /// A fresh sequence number (timer-queue tie breaker: equal deadlines fire in start order).
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

/// Payload used to unwind a system thread blocked in a wait when its machine shuts down.
pub(crate) struct ShutdownUnwind;

/// How long `settle` waits in real time for threads that never block before it reports them.
const SETTLE_WATCHDOG: Duration = Duration::from_mins(1);

pub(crate) struct Sched {
    core_id: u64,
    pub(crate) clock: Arc<Clock>,
    state: Mutex<SchedState>,
    wake_cv: Condvar,
    service_cv: Condvar,
    idle_cv: Condvar,
}

impl Sched {
    pub(crate) fn new(core_id: u64, clock: Arc<Clock>) -> Self {
        Sched {
            core_id,
            clock,
            state: Mutex::new(SchedState {
                threads: HashMap::new(),
                dpc_queue: VecDeque::new(),
                work_queue: VecDeque::new(),
                timers: BTreeMap::new(),
                seq: 0,
                generation: 0,
                holds: 0,
                paused: 0,
                watchdog_waiters: 0,
                shutdown: false,
                crash: None,
                sleepers: [0; 2],
            }),
            wake_cv: Condvar::new(),
            service_cv: Condvar::new(),
            idle_cv: Condvar::new(),
        }
    }

    /// Takes the dispatcher lock. Poisoning is ignored: the state is kept consistent at every
    /// unlock, and a bug check (verifier panic) never happens with the lock held.
    pub(crate) fn lock(&self) -> MutexGuard<'_, SchedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes a thread (or one nesting level of it) from the accounting.
    pub(crate) fn unregister(&self, st: &mut SchedState, uid: u64) {
        if let Some(rec) = st.threads.get_mut(&uid) {
            rec.nest -= 1;
            if rec.nest == 0 {
                st.threads.remove(&uid);
            }
        }
        self.idle_cv.notify_all();
        self.maybe_auto_advance(st);
    }

    /// Marks every blocked thread woken and notifies them — except idle service threads, which
    /// only [`wake_service`](Self::wake_service) wakes. Call after any change that may satisfy a
    /// wait, with the lock held.
    pub(crate) fn wake_all(&self, st: &mut SchedState) {
        st.generation += 1;
        for rec in st.threads.values_mut() {
            if !rec.idle_service && matches!(rec.state, RunState::Blocked(_)) {
                rec.state = RunState::Woken;
            }
        }
        if st.sleepers[0] > 0 {
            self.wake_cv.notify_all();
        }
    }

    /// Marks the idle service threads woken and notifies them: call after a change to what
    /// their wait reads (a queue filled, the queues resumed, shutdown), with the lock held.
    pub(crate) fn wake_service(&self, st: &mut SchedState) {
        st.generation += 1;
        for rec in st.threads.values_mut() {
            if rec.idle_service && matches!(rec.state, RunState::Blocked(_)) {
                rec.state = RunState::Woken;
            }
        }
        if st.sleepers[1] > 0 {
            self.service_cv.notify_all();
        }
    }

    /// [`wake_all`](Self::wake_all) and [`wake_service`](Self::wake_service).
    pub(crate) fn wake_everyone(&self, st: &mut SchedState) {
        self.wake_all(st);
        self.wake_service(st);
    }

    /// Something was added to the DPC or work queue.
    pub(crate) fn queued(&self, st: &mut SchedState) {
        self.wake_everyone(st);
    }

    /// The timer queue changed (a timer started or stopped).
    pub(crate) fn deadlines_changed(&self, st: &mut SchedState) {
        if self.clock.mode() == ClockMode::RealTime {
            // Threads sleeping in real time may have to wake earlier now.
            self.wake_everyone(st);
        } else {
            self.maybe_auto_advance(st);
        }
    }

    fn set_state(st: &mut SchedState, uid: Option<u64>, state: RunState) {
        if let Some(rec) = uid.and_then(|u| st.threads.get_mut(&u)) {
            rec.state = state;
        }
    }

    /// Blocks the calling thread until `cond` (evaluated under the lock) returns true, or until
    /// virtual time reaches `deadline`. Returns the guard and whether `cond` was satisfied.
    ///
    /// A system thread blocked here when the machine shuts down is unwound (see
    /// [`ShutdownUnwind`]); other callers should include `st.shutdown` in `cond` if they must not
    /// wait forever on a dead machine.
    pub(crate) fn block_until<'a>(
        &'a self,
        st: MutexGuard<'a, SchedState>,
        deadline: Option<u64>,
        cond: &mut dyn FnMut(&mut SchedState) -> bool,
    ) -> (MutexGuard<'a, SchedState>, bool) {
        self.block_on(st, deadline, cond, false)
    }

    /// [`block_until`](Self::block_until) for a service thread waiting for its queue: `cond` may
    /// read only the queues, `paused` and `shutdown`, the state that
    /// [`wake_service`](Self::wake_service)'s callers change.
    pub(crate) fn block_until_queued<'a>(
        &'a self,
        st: MutexGuard<'a, SchedState>,
        cond: &mut dyn FnMut(&mut SchedState) -> bool,
    ) -> (MutexGuard<'a, SchedState>, bool) {
        self.block_on(st, None, cond, true)
    }

    fn block_on<'a>(
        &'a self,
        mut st: MutexGuard<'a, SchedState>,
        deadline: Option<u64>,
        cond: &mut dyn FnMut(&mut SchedState) -> bool,
        idle_service: bool,
    ) -> (MutexGuard<'a, SchedState>, bool) {
        let role = context::role_on(self.core_id);
        let me = role.map(|_| context::thread_uid());
        let which = usize::from(idle_service);
        if let Some(rec) = me.and_then(|u| st.threads.get_mut(&u)) {
            rec.idle_service = idle_service;
        }
        let (st, satisfied) = self.block_loop(st, deadline, cond, me, role, which);
        let mut st = st;
        if let Some(rec) = me.and_then(|u| st.threads.get_mut(&u)) {
            rec.idle_service = false;
        }
        (st, satisfied)
    }

    fn block_loop<'a>(
        &'a self,
        mut st: MutexGuard<'a, SchedState>,
        deadline: Option<u64>,
        cond: &mut dyn FnMut(&mut SchedState) -> bool,
        me: Option<u64>,
        role: Option<ThreadRole>,
        which: usize,
    ) -> (MutexGuard<'a, SchedState>, bool) {
        let cv = if which == 1 {
            &self.service_cv
        } else {
            &self.wake_cv
        };
        loop {
            if self.clock.mode() == ClockMode::RealTime {
                self.fire_due(&mut st);
            }
            if cond(&mut st) {
                Self::set_state(&mut st, me, RunState::Running);
                return (st, true);
            }
            if deadline.is_some_and(|d| self.clock.now() >= d) {
                Self::set_state(&mut st, me, RunState::Running);
                return (st, false);
            }
            if st.shutdown && role == Some(ThreadRole::System) {
                Self::set_state(&mut st, me, RunState::Running);
                drop(st);
                std::panic::resume_unwind(Box::new(ShutdownUnwind));
            }
            Self::set_state(&mut st, me, RunState::Blocked(deadline));
            let generation = st.generation;
            self.idle_cv.notify_all();
            self.maybe_auto_advance(&mut st);
            if st.generation != generation {
                continue; // woken while we were still here (auto-advance): look again
            }
            st.sleepers[which] += 1;
            st = if self.clock.mode() == ClockMode::RealTime {
                let wake_at = [deadline, st.timers.keys().next().map(|k| k.0)]
                    .into_iter()
                    .flatten()
                    .min();
                match wake_at {
                    Some(t) => {
                        let real = self.clock.real_until(t);
                        cv.wait_timeout(st, real)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                    None => cv.wait(st).unwrap_or_else(PoisonError::into_inner),
                }
            } else {
                cv.wait(st).unwrap_or_else(PoisonError::into_inner)
            };
            st.sleepers[which] -= 1;
        }
    }

    /// [`block_until`](Self::block_until) with a deadline `bound` ticks from now, as a wait under
    /// the power watchdog (crate::verifier, "The power watchdog"): while it lasts, a Manual clock
    /// advances by itself whenever the machine is otherwise quiescent — every bound thread blocked
    /// and nothing queued, so nothing but the clock could ever end the wait. Returns the guard
    /// and whether `cond` was satisfied (false: the bound passed).
    pub(crate) fn block_under_watchdog<'a>(
        &'a self,
        mut st: MutexGuard<'a, SchedState>,
        bound: u64,
        cond: &mut dyn FnMut(&mut SchedState) -> bool,
    ) -> (MutexGuard<'a, SchedState>, bool) {
        /// Keeps the count right if the wait unwinds (a system thread at shutdown).
        struct Count<'s>(&'s Sched);
        impl Drop for Count<'_> {
            fn drop(&mut self) {
                let mut st = self.0.lock();
                st.watchdog_waiters = st.watchdog_waiters.saturating_sub(1);
            }
        }
        st.watchdog_waiters += 1;
        let deadline = self.clock.now().saturating_add(bound);
        let count = Count(self);
        let (st, satisfied) = self.block_until(st, Some(deadline), cond);
        drop(st);
        drop(count);
        (self.lock(), satisfied)
    }

    /// The earliest pending deadline: a timer expiry or a timed wait of a blocked thread.
    fn earliest_deadline(st: &SchedState) -> Option<u64> {
        let timer = st.timers.keys().next().map(|k| k.0);
        let wait = st
            .threads
            .values()
            .filter_map(|r| match r.state {
                RunState::Blocked(d) => d,
                _ => None,
            })
            .min();
        [timer, wait].into_iter().flatten().min()
    }

    /// Expires every timer due at the current time and wakes timed-out waiters.
    pub(crate) fn fire_due(&self, st: &mut SchedState) {
        let now = self.clock.now();
        let mut fired = false;
        while let Some(entry) = st.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((deadline, _), timer) = entry.remove_entry();
            timer.expire(st, deadline);
            fired = true;
        }
        let timed_out = st
            .threads
            .values()
            .any(|r| matches!(r.state, RunState::Blocked(Some(d)) if d <= now));
        if fired || timed_out {
            self.wake_everyone(st);
        }
    }

    /// True if every bound thread other than `except` is blocked and both queues are empty.
    fn quiescent(st: &SchedState, except: Option<u64>) -> bool {
        (st.paused > 0 || (st.dpc_queue.is_empty() && st.work_queue.is_empty()))
            && st
                .threads
                .iter()
                .all(|(uid, r)| Some(*uid) == except || matches!(r.state, RunState::Blocked(_)))
    }

    /// AutoAdvance: if the machine is idle and a client or system thread waits, jump to the
    /// earliest deadline. A Manual clock does the same while a thread waits under the power
    /// watchdog ([`block_under_watchdog`](Self::block_under_watchdog)).
    pub(crate) fn maybe_auto_advance(&self, st: &mut SchedState) {
        let auto = match self.clock.mode() {
            ClockMode::AutoAdvance => true,
            ClockMode::Manual => st.watchdog_waiters > 0,
            ClockMode::RealTime => false,
        };
        if !auto
            || st.holds > 0
            || st.shutdown
            || st.crash.is_some()
            || !Self::quiescent(st, None)
            || !st.threads.values().any(|r| r.role != ThreadRole::Service)
        {
            return;
        }
        if let Some(t) = Self::earliest_deadline(st) {
            self.clock.set(t);
            self.fire_due(st);
        }
    }

    fn settle_locked<'a>(
        &'a self,
        mut st: MutexGuard<'a, SchedState>,
        me: Option<u64>,
    ) -> MutexGuard<'a, SchedState> {
        let started = Instant::now();
        loop {
            if let Some(crash) = st.crash.clone() {
                st.holds = st.holds.saturating_sub(1);
                drop(st);
                panic!("the simulated machine bug-checked: {crash}");
            }
            if st.shutdown || Self::quiescent(&st, me) {
                return st;
            }
            if started.elapsed() > SETTLE_WATCHDOG {
                let running: Vec<String> = st
                    .threads
                    .iter()
                    .filter(|(uid, r)| {
                        Some(**uid) != me && !matches!(r.state, RunState::Blocked(_))
                    })
                    .map(|(_, r)| r.name.clone())
                    .collect();
                st.holds = st.holds.saturating_sub(1);
                drop(st);
                panic!("settle: threads never blocked within {SETTLE_WATCHDOG:?}: {running:?}");
            }
            st = self
                .idle_cv
                .wait_timeout(st, Duration::from_secs(1))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// See [`Machine::settle`](crate::Machine::settle).
    pub(crate) fn settle(&self) {
        let me = context::role_on(self.core_id).map(|_| context::thread_uid());
        let mut st = self.lock();
        st.holds += 1;
        let mut st = self.settle_locked(st, me);
        st.holds -= 1;
        self.maybe_auto_advance(&mut st);
    }

    /// See [`Machine::advance`](crate::Machine::advance).
    pub(crate) fn advance(&self, ticks: u64) {
        if self.clock.mode() == ClockMode::RealTime {
            std::thread::sleep(crate::exec::clock::ticks_to_duration(ticks));
            self.settle();
            return;
        }
        let me = context::role_on(self.core_id).map(|_| context::thread_uid());
        let mut st = self.lock();
        st.holds += 1;
        let target = self.clock.now().saturating_add(ticks);
        loop {
            st = self.settle_locked(st, me);
            if st.shutdown {
                break;
            }
            match Self::earliest_deadline(&st) {
                Some(t) if t <= target => {
                    self.clock.set(t);
                    self.fire_due(&mut st);
                }
                _ => {
                    self.clock.set(target);
                    break;
                }
            }
        }
        st.holds -= 1;
        self.maybe_auto_advance(&mut st);
    }

    /// Records a bug check (a panic in a simulator thread) and wakes observers.
    pub(crate) fn record_crash(&self, message: String) {
        let mut st = self.lock();
        st.crash.get_or_insert(message);
        self.idle_cv.notify_all();
    }

    /// Starts shutdown: service threads leave, blocked system threads unwind.
    pub(crate) fn begin_shutdown(&self) -> bool {
        let mut st = self.lock();
        let first = !st.shutdown;
        st.shutdown = true;
        self.wake_everyone(&mut st);
        self.idle_cv.notify_all();
        first
    }
}

/// Extracts a readable message from a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched_with_two_blocked() -> (Sched, u64, u64) {
        let sched = Sched::new(0, Arc::new(Clock::new(ClockMode::Manual)));
        let (waiter, worker) = (1_u64, 2_u64);
        {
            let mut st = sched.lock();
            st.register(waiter, "waiter", ThreadRole::System);
            st.register(worker, "worker", ThreadRole::Service);
            for uid in [waiter, worker] {
                let rec = st.threads.get_mut(&uid).expect("registered");
                rec.state = RunState::Blocked(None);
            }
            st.threads
                .get_mut(&worker)
                .expect("registered")
                .idle_service = true;
        }
        (sched, waiter, worker)
    }

    fn woken(sched: &Sched, uid: u64) -> bool {
        matches!(sched.lock().threads[&uid].state, RunState::Woken)
    }

    #[test]
    fn an_event_set_leaves_idle_service_threads_asleep() {
        let (sched, waiter, worker) = sched_with_two_blocked();
        let mut st = sched.lock();
        sched.wake_all(&mut st);
        drop(st);
        assert!(woken(&sched, waiter), "a waiter re-checks its condition");
        assert!(
            !woken(&sched, worker),
            "an idle worker waits for its queue only"
        );
        // Still blocked, so the machine is quiescent once the waiter blocks again.
        let mut st = sched.lock();
        st.threads.get_mut(&waiter).expect("registered").state = RunState::Blocked(None);
        assert!(Sched::quiescent(&st, None));
    }

    #[test]
    fn queued_work_wakes_idle_service_threads_and_waiters() {
        let (sched, waiter, worker) = sched_with_two_blocked();
        let mut st = sched.lock();
        sched.queued(&mut st);
        drop(st);
        assert!(woken(&sched, worker));
        assert!(woken(&sched, waiter));
        let st = sched.lock();
        assert!(!Sched::quiescent(&st, None));
    }

    #[test]
    fn shutdown_wakes_idle_service_threads() {
        let (sched, _waiter, worker) = sched_with_two_blocked();
        assert!(sched.begin_shutdown());
        assert!(woken(&sched, worker));
    }
}
