//! `Machine`: one simulated computer.
//!
//! A [`Machine`] is a cheap-to-clone handle (an `Arc` inside) to one simulated computer with its
//! own virtual clock, scheduler accounting, DPC thread, system worker threads, verifier, pool
//! tracker, trace and fault injector. Machines are **not global**: a test process can run many in
//! parallel, each fully isolated.
//!
//! ## Threads
//!
//! Building a machine starts one DPC thread (runs `EvtDpcFunc` and dispatch-level `EvtTimerFunc`
//! at `DISPATCH_LEVEL`) and a small fixed pool of system worker threads (default 2; run
//! `EvtWorkItem` and passive-level `EvtTimerFunc` at `PASSIVE_LEVEL`, FIFO). When the last user
//! handle drops — or on an explicit [`Machine::shutdown`] — these threads stop and are joined, and
//! system threads blocked in a simulator wait are unwound and joined, so no OS thread leaks.
//! Simulator threads hold only internal references, so a callback that wants the machine calls
//! [`Machine::current`] instead of capturing a clone (a captured clone keeps the machine alive
//! for as long as the closure lives).
//!
//! ## Adding a subsystem
//!
//! Later subsystems (device tree, interfaces, …) either become a field of the internal `Core`
//! with an accessor here, or — without touching this file — hang off
//! [`Machine::extension`], a per-machine type map.

use core::time::Duration;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;

use crate::exec::clock::{duration_to_ticks, ticks_to_duration, Clock, ClockMode};
use crate::exec::context::{self, Bound, Irql, ThreadRole};
use crate::exec::sched::{panic_message, Sched, SchedState, WaitStatus};
use crate::fault::FaultInjector;
use crate::pool::Pool;
use crate::trace::{Trace, TraceKind};
use crate::verifier::{Rule, Verifier, VerifierMode, DEFAULT_POWER_WATCHDOG};

static NEXT_MACHINE: AtomicU64 = AtomicU64::new(1);

/// The shared state of one machine. Simulator objects hold an `Arc<Core>`; only user handles
/// ([`Machine`]) keep the machine *running*.
pub(crate) struct Core {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) sched: Sched,
    pub(crate) trace: Arc<Trace>,
    pub(crate) verifier: Arc<Verifier>,
    pub(crate) faults: Arc<FaultInjector>,
    pub(crate) pool: Pool,
    handle: Weak<MachineHandle>,
    os_threads: Mutex<Vec<JoinHandle<()>>>,
    extensions: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl Core {
    /// Current virtual time in ticks.
    pub(crate) fn now(&self) -> u64 {
        self.sched.clock.now()
    }

    /// Keeps an OS thread's handle so shutdown can join it; forgets threads that already ended.
    pub(crate) fn adopt_thread(&self, handle: JoinHandle<()>) {
        let mut threads = self
            .os_threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        threads.retain(|h| !h.is_finished());
        threads.push(handle);
    }

    /// Records a panic that escaped a simulator thread as a bug check of the machine.
    pub(crate) fn crash(&self, payload: &(dyn Any + Send)) {
        let msg = panic_message(payload);
        self.trace.record_for(
            TraceKind::Note,
            None,
            "machine",
            &format!("bug check: {msg}"),
        );
        self.sched.record_crash(msg);
    }

    fn shutdown(&self) {
        self.sched.begin_shutdown();
        let handles = std::mem::take(
            &mut *self
                .os_threads
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let me = std::thread::current().id();
        for h in handles {
            if h.thread().id() != me {
                // A thread that panicked already reported its bug check.
                let _ = h.join();
            }
        }
    }

    pub(crate) fn machine(&self) -> Option<Machine> {
        self.handle.upgrade().map(Machine)
    }

    /// The core of the machine the calling thread is bound to (the innermost binding).
    pub(crate) fn current() -> Option<Arc<Core>> {
        context::current_machine().and_then(|m| m.downcast::<Core>().ok())
    }

    /// Binds the calling thread to this machine (a binding of the thread context, which sees the
    /// machine and its verifier type-erased).
    pub(crate) fn bind_thread(self: &Arc<Self>, role: ThreadRole) {
        let machine: Weak<Core> = Arc::downgrade(self);
        let verifier: Weak<Verifier> = Arc::downgrade(&self.verifier);
        context::push_binding(
            Bound {
                id: self.id,
                machine,
                verifier,
            },
            role,
        );
    }

    /// Ends the calling thread's innermost binding to this machine.
    pub(crate) fn unbind_thread(&self) {
        context::pop_binding(self.id);
    }

    /// After the last user handle dropped and shutdown joined the threads: drops what the core
    /// still holds that may hold the core in turn — subsystems ([`Machine::extension`]), and
    /// work items, DPCs and timers still queued — so that no reference cycle keeps it alive.
    /// Nothing can reach these any more: every public entry point needs a [`Machine`].
    fn release_references(&self) {
        let extensions = std::mem::take(
            &mut *self
                .extensions
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let queued = {
            let mut st = self.sched.lock();
            (
                std::mem::take(&mut st.dpc_queue),
                std::mem::take(&mut st.work_queue),
                std::mem::take(&mut st.timers),
            )
        };
        drop(queued);
        drop(extensions);
    }
}

/// The user handle: dropping the last one shuts the machine down.
struct MachineHandle {
    core: Arc<Core>,
}

impl Drop for MachineHandle {
    fn drop(&mut self) {
        self.core.shutdown();
        self.core.release_references();
    }
}

/// One simulated computer. Cheap to clone; see the [module documentation](self).
#[derive(Clone)]
pub struct Machine(Arc<MachineHandle>);

impl core::fmt::Debug for Machine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Machine")
            .field("name", &self.0.core.name)
            .field("now", &self.now())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Machine`].
#[derive(Clone, Debug)]
pub struct MachineBuilder {
    name: String,
    clock: ClockMode,
    verifier: VerifierMode,
    power_watchdog: Option<Duration>,
    workers: usize,
}

impl Default for MachineBuilder {
    fn default() -> Self {
        MachineBuilder {
            name: "machine".to_owned(),
            clock: ClockMode::Manual,
            verifier: VerifierMode::Panic,
            power_watchdog: Some(DEFAULT_POWER_WATCHDOG),
            workers: 2,
        }
    }
}

impl MachineBuilder {
    /// The machine's name (prefix of its OS thread names). Default `machine`.
    #[must_use]
    pub fn name(mut self, name: &str) -> Self {
        name.clone_into(&mut self.name);
        self
    }

    /// The clock mode. Default [`ClockMode::Manual`].
    #[must_use]
    pub fn clock(mut self, mode: ClockMode) -> Self {
        self.clock = mode;
        self
    }

    /// The verifier mode. Default [`VerifierMode::Panic`].
    #[must_use]
    pub fn verifier(mut self, mode: VerifierMode) -> Self {
        self.verifier = mode;
        self
    }

    /// The verifier's power watchdog: how much virtual time a PnP/power transition may wait for
    /// a driver before it is reported like bug check 0x9F (`None`: no bound). Default
    /// [`DEFAULT_POWER_WATCHDOG`], ten minutes. See
    /// [`Verifier::set_power_watchdog`].
    #[must_use]
    pub fn power_watchdog(mut self, bound: Option<Duration>) -> Self {
        self.power_watchdog = bound;
        self
    }

    /// Number of system worker threads (at least 1). Default 2.
    #[must_use]
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Builds the machine and starts its DPC thread and worker threads.
    ///
    /// # Panics
    ///
    /// If the operating system cannot create a thread.
    pub fn build(self) -> Machine {
        let id = NEXT_MACHINE.fetch_add(1, Ordering::Relaxed);
        let clock = Arc::new(Clock::new(self.clock));
        let trace = Arc::new(Trace::new(Arc::clone(&clock)));
        let verifier = Arc::new(Verifier::new(self.verifier, Arc::clone(&trace)));
        verifier.set_power_watchdog(self.power_watchdog);
        let faults = Arc::new(FaultInjector::new(Arc::clone(&trace)));
        let pool = Pool::new(
            Arc::clone(&faults),
            Arc::clone(&verifier),
            Arc::clone(&trace),
        );
        let handle = Arc::new_cyclic(|weak| MachineHandle {
            core: Arc::new(Core {
                id,
                name: self.name.clone(),
                sched: Sched::new(id, clock),
                trace,
                verifier,
                faults,
                pool,
                handle: weak.clone(),
                os_threads: Mutex::new(Vec::new()),
                extensions: Mutex::new(HashMap::new()),
            }),
        });
        let core = &handle.core;
        spawn_service(core, "dpc".to_owned(), Queue::Dpc);
        for i in 0..self.workers {
            spawn_service(core, format!("worker-{i}"), Queue::Work);
        }
        Machine(handle)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Queue {
    Dpc,
    Work,
}

fn spawn_service(core: &Arc<Core>, name: String, queue: Queue) {
    let uid = context::new_uid();
    {
        let mut st = core.sched.lock();
        st.register(uid, &name, ThreadRole::Service);
    }
    let thread_core = Arc::clone(core);
    let os_name = format!("{}-{name}", core.name);
    let handle = std::thread::Builder::new()
        .name(os_name)
        .spawn(move || service_loop(&thread_core, uid, &name, queue))
        .expect("kmdf-sim: cannot create a service thread");
    core.adopt_thread(handle);
}

/// The body of the DPC thread and of each system worker thread.
fn service_loop(core: &Arc<Core>, uid: u64, name: &str, queue: Queue) {
    context::init_sim_thread(uid, name);
    core.bind_thread(ThreadRole::Service);
    let level = match queue {
        Queue::Dpc => Irql::Dispatch,
        Queue::Work => Irql::Passive,
    };
    loop {
        let st = core.sched.lock();
        let (mut st, _) = core.sched.block_until_queued(st, &mut |st| {
            st.shutdown
                || (st.paused == 0
                    && match queue {
                        Queue::Dpc => !st.dpc_queue.is_empty(),
                        Queue::Work => !st.work_queue.is_empty(),
                    })
        });
        if st.shutdown {
            break;
        }
        let next = match queue {
            Queue::Dpc => st.dpc_queue.pop_front(),
            Queue::Work => st.work_queue.pop_front(),
        };
        let Some(entry) = next else { continue };
        if !entry.begin(&mut st) {
            continue;
        }
        drop(st);
        context::set_irql(level);
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| Arc::clone(&entry).run()));
        context::set_irql(Irql::Passive);
        if let Err(payload) = result {
            core.crash(&*payload);
        }
        let mut st = core.sched.lock();
        entry.end(&mut st);
        core.sched.wake_all(&mut st);
    }
    core.unbind_thread();
}

/// Holds the machine's DPC and work-item queues while alive; see [`Machine::pause_queues`].
#[must_use = "the queues resume as soon as the guard drops"]
pub struct QueuesPaused {
    machine: Machine,
}

impl Drop for QueuesPaused {
    fn drop(&mut self) {
        let sched = &self.machine.0.core.sched;
        let mut st = sched.lock();
        st.paused -= 1;
        sched.wake_everyone(&mut st);
    }
}

impl std::fmt::Debug for QueuesPaused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuesPaused").finish_non_exhaustive()
    }
}

impl Default for Machine {
    fn default() -> Self {
        Machine::new()
    }
}

impl Machine {
    /// A machine with the default settings (Manual clock, Panic verifier, 2 workers).
    pub fn new() -> Self {
        MachineBuilder::default().build()
    }

    /// A builder for a machine with non-default settings.
    pub fn builder() -> MachineBuilder {
        MachineBuilder::default()
    }

    /// The machine the calling thread is bound to (by [`Machine::enter`] or because the simulator
    /// spawned it), if it is still running.
    pub fn current() -> Option<Machine> {
        Core::current().and_then(|c| c.machine())
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.0.core
    }

    /// The machine's name.
    pub fn name(&self) -> &str {
        &self.0.core.name
    }

    /// Binds the calling OS thread (a test thread or a simulated application thread) to this
    /// machine at `PASSIVE_LEVEL` until the guard drops. While bound, the thread counts for
    /// [`settle`](Self::settle) and AutoAdvance: in AutoAdvance mode time only jumps while it is
    /// blocked in a simulator wait. Guards nest.
    pub fn enter(&self) -> MachineGuard {
        let core = self.core();
        let uid = context::thread_uid();
        {
            let mut st = core.sched.lock();
            st.register(uid, &context::thread_name(), ThreadRole::Client);
        }
        core.bind_thread(ThreadRole::Client);
        MachineGuard {
            machine: self.clone(),
            uid,
            _not_send: PhantomData,
        }
    }

    /// The clock mode.
    pub fn clock_mode(&self) -> ClockMode {
        self.0.core.sched.clock.mode()
    }

    /// Virtual time since boot.
    pub fn now(&self) -> Duration {
        ticks_to_duration(self.0.core.now())
    }

    /// Virtual time since boot, in 100-ns ticks.
    pub fn now_ticks(&self) -> u64 {
        self.0.core.now()
    }

    /// Waits until every simulator thread other than the caller is blocked or idle and the DPC and
    /// work queues are empty. Does not move time. While it waits, AutoAdvance is held off.
    ///
    /// # Panics
    ///
    /// If the machine bug-checked (a verifier violation in Panic mode or a panic in a simulator
    /// thread): the panic message carries the bug-check text. Also if some thread never blocks
    /// within a minute of real time (a busy loop), naming it.
    pub fn settle(&self) {
        self.0.core.sched.settle();
    }

    /// Holds DPC and work-item dispatch until the returned guard drops: queued DPCs and work items
    /// stay queued (a test can build a backlog deterministically, as on a busy machine whose
    /// workers have not been scheduled yet). While paused, [`settle`](Self::settle) and
    /// [`advance`](Self::advance) do not wait for the queues to drain. Guards nest.
    pub fn pause_queues(&self) -> QueuesPaused {
        let mut st = self.0.core.sched.lock();
        st.paused += 1;
        QueuesPaused {
            machine: self.clone(),
        }
    }

    /// Moves virtual time forward by `d`: settles, then fires every deadline ≤ now + d in time
    /// order (timer expiries, timed-out waits), settling after each, and ends at exactly now + d.
    /// In RealTime mode it sleeps for `d` and settles.
    ///
    /// # Panics
    ///
    /// As [`settle`](Self::settle).
    pub fn advance(&self, d: Duration) {
        self.0.core.sched.advance(duration_to_ticks(d));
    }

    /// Stops the machine now: timers stop firing, the DPC and worker threads exit, system threads
    /// blocked in simulator waits are unwound; every one of them is joined (except the caller's
    /// own thread). Dropping the last handle does the same.
    pub fn shutdown(&self) {
        self.0.core.shutdown();
    }

    /// True once [`shutdown`](Self::shutdown) started.
    pub fn is_shut_down(&self) -> bool {
        self.0.core.sched.lock().shutdown
    }

    /// The bug-check message, if a simulator thread panicked (Panic-mode verifier violation in a
    /// callback, or a driver panic).
    pub fn crash(&self) -> Option<String> {
        self.0.core.sched.lock().crash.clone()
    }

    /// A simulator wait on an arbitrary condition — the building block for waitable objects of
    /// later layers (synchronous I/O sends, PnP state waits). Blocks the calling thread until
    /// `cond` returns true, or until `timeout` of virtual time passed (`None`: forever;
    /// `Some(Duration::ZERO)`: only test). The wait counts for `settle` and AutoAdvance and obeys
    /// the KeWaitForSingleObject IRQL rule ([`Rule::WaitAtDispatch`](crate::verifier::Rule)
    /// reported as `routine` on `object`).
    ///
    /// `cond` runs under the machine's dispatcher lock: it must only read state that is changed
    /// inside [`Machine::notify`], and must not call other simulator routines.
    pub fn wait_until(
        &self,
        routine: &str,
        object: &str,
        timeout: Option<Duration>,
        mut cond: impl FnMut() -> bool,
    ) -> WaitStatus {
        checked_wait(self.core(), routine, object, timeout, &mut |_| cond())
    }

    /// A framework wait of a PnP/power transition (PASSIVE_LEVEL) under the verifier's power
    /// watchdog ([`Verifier::power_watchdog`]; see crate::verifier, "The power watchdog"): blocks
    /// until `cond` holds — true — or until the watchdog's bound of virtual time passed — false,
    /// and the caller reports the [`Rule::PowerStateFailure`](crate::verifier::Rule). With the
    /// watchdog off it waits without a bound.
    pub(crate) fn wait_under_watchdog(
        &self,
        routine: &str,
        object: &str,
        mut cond: impl FnMut() -> bool,
    ) -> bool {
        let core = self.core();
        let Some(bound) = core.verifier.power_watchdog_ticks() else {
            return self.wait_until(routine, object, None, cond).is_signaled();
        };
        let st = core.sched.lock();
        let (_st, satisfied) = core.sched.block_under_watchdog(st, bound, &mut |_| cond());
        satisfied
    }

    /// Changes state that [`Machine::wait_until`] conditions read: runs `f` under the dispatcher
    /// lock, then wakes every waiter to re-evaluate its condition. `f` must not call other
    /// simulator routines.
    pub fn notify<R>(&self, f: impl FnOnce() -> R) -> R {
        let core = self.core();
        let mut st = core.sched.lock();
        let r = f();
        core.sched.wake_all(&mut st);
        r
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.0.core.verifier
    }

    /// The tagged pool allocator and leak tracker.
    pub fn pool(&self) -> &Pool {
        &self.0.core.pool
    }

    /// The fault injector.
    pub fn faults(&self) -> &FaultInjector {
        &self.0.core.faults
    }

    /// The trace of callbacks, requests and state changes.
    pub fn trace(&self) -> &Trace {
        &self.0.core.trace
    }

    /// A per-machine subsystem of type `T`, created by `init` on first use. Lets later layers
    /// (object tree, device tree, …) attach their state to a machine without a field here.
    ///
    /// # Panics
    ///
    /// Never in practice: the map only stores values of their own `TypeId`.
    pub fn extension<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        let mut map = self
            .0
            .core
            .extensions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(init()) as Arc<dyn Any + Send + Sync>);
        Arc::clone(entry)
            .downcast::<T>()
            .expect("extension map holds a value of the wrong type")
    }
}

/// The binding of a thread to a machine, from [`Machine::enter`]. Not `Send`: it describes the
/// thread that created it.
#[must_use = "the thread is unbound when the guard drops"]
pub struct MachineGuard {
    machine: Machine,
    uid: u64,
    _not_send: PhantomData<*const ()>,
}

impl core::fmt::Debug for MachineGuard {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MachineGuard")
            .field("machine", &self.machine.name())
            .finish_non_exhaustive()
    }
}

impl MachineGuard {
    /// The machine this thread is bound to.
    pub fn machine(&self) -> &Machine {
        &self.machine
    }
}

impl Drop for MachineGuard {
    fn drop(&mut self) {
        let core = self.machine.core();
        core.unbind_thread();
        let mut st = core.sched.lock();
        core.sched.unregister(&mut st, self.uid);
    }
}

/// A simulator wait with the KeWaitForSingleObject IRQL rule: a zero timeout only tests and is
/// allowed up to DISPATCH_LEVEL; any other wait above APC_LEVEL is a [`Rule::WaitAtDispatch`]
/// violation, after which the wait degrades to a test.
pub(crate) fn checked_wait(
    core: &Core,
    routine: &str,
    object: &str,
    timeout: Option<Duration>,
    cond: &mut dyn FnMut(&mut SchedState) -> bool,
) -> WaitStatus {
    let mut relative = timeout.map(duration_to_ticks);
    let irql = context::irql();
    if relative != Some(0) && irql > Irql::Apc {
        let what = if timeout.is_none() {
            "without a timeout"
        } else {
            "with a nonzero timeout"
        };
        core.verifier.report(
            Rule::WaitAtDispatch,
            object,
            &format!(
                "{routine} {what} called at {irql}; only a zero timeout (a test of the state) is \
                 allowed at DISPATCH_LEVEL"
            ),
        );
        relative = Some(0);
    }
    let st = core.sched.lock();
    let deadline = relative.map(|t| core.now().saturating_add(t));
    let (_st, satisfied) = core.sched.block_until(st, deadline, cond);
    if satisfied {
        WaitStatus::Signaled
    } else {
        WaitStatus::TimedOut
    }
}
