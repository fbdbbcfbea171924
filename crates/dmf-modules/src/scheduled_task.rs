//! # ScheduledTask
//!
//! ## Summary
//!
//! Runs a client task once — once per boot, or once ever — at PrepareHardware, at D0Entry, or
//! when the client asks, immediately or deferred, retrying on a timer while the task asks for it
//! (C DMF: `Dmf_ScheduledTask.c`).
//!
//! - **When** ([`ExecuteWhen`]): in the Module's own PrepareHardware or D0Entry callback, or
//!   `Other` (only by [`ScheduledTask::execute_now`] / [`ScheduledTask::execute_now_deferred_ex`]
//!   / [`ScheduledTask::execute_now_deferred`]).
//! - **How** ([`ExecutionMode`]): `Immediate` calls the task inside the phase callback; `Deferred`
//!   starts a PASSIVE_LEVEL timer `time_before_initial_call` later.
//! - **How often** ([`Persistence`]): the task counts its successful runs ("times run"). A phase
//!   runs it only while that count is 0. `NotPersistentAcrossReboots` keeps the count in memory
//!   (once per boot); `PersistentAcrossReboots` keeps it as a `REG_DWORD` under the driver's
//!   `Parameters` key, so "once ever" survives a reboot.
//! - **Retry**: a run the Module started (phase, deferred, retry) whose task returns
//!   [`ScheduledTaskResult::SuccessButTryAgain`] / [`ScheduledTaskResult::FailButTryAgain`] runs
//!   again `timer_period_on_success` / `timer_period_on_fail` later, until it returns `Success` or
//!   `Fail`, or until [`ScheduledTask::cancel`], D0Exit/ReleaseHardware or close.
//!
//! ## Configuration
//!
//! [`ScheduledTaskConfig`]: `callback` (`EvtScheduledTaskCallback`), `persistence`
//! (`PersistenceType`), `execution_mode` (`ExecutionMode`), `execute_when` (`ExecuteWhen`),
//! `timer_period_on_success` / `timer_period_on_fail` (`TimerPeriodMsOnSuccess` / `…OnFail`),
//! `time_before_initial_call` (`TimeMsBeforeInitialCall`). C's `CallbackContext` is whatever the
//! closure captures. That is the whole of `DMF_CONFIG_ScheduledTask`.
//!
//! ## Methods
//!
//! | Method | C DMF | IRQL |
//! |---|---|---|
//! | [`ScheduledTask::execute_now`] | `DMF_ScheduledTask_ExecuteNow` | PASSIVE |
//! | [`ScheduledTask::execute_now_deferred_ex`] | `DMF_ScheduledTask_ExecuteNowDeferredEx` | ≤ DISPATCH |
//! | [`ScheduledTask::execute_now_deferred`] | `DMF_ScheduledTask_ExecuteNowDeferred` (legacy: result not honoured) | ≤ DISPATCH |
//! | [`ScheduledTask::cancel`] | `DMF_ScheduledTask_Cancel` | ≤ DISPATCH |
//! | [`ScheduledTask::restart`] | `DMF_ScheduledTask_Restart` | ≤ DISPATCH |
//! | [`ScheduledTask::times_run`] | `DMF_ScheduledTask_TimesRunGet` | PASSIVE |
//! | [`ScheduledTask::set_times_run`] | `DMF_ScheduledTask_TimesRunSet` | PASSIVE |
//!
//! ## Callbacks
//!
//! `EVT_DMF_ScheduledTask_Callback` → [`ScheduledTaskCallback`]:
//! `Fn(&ScheduledTask, Option<PowerDeviceState>) -> ScheduledTaskResult`, at `PASSIVE_LEVEL`. The
//! state is D0Entry's previous state for a D0Entry task, `None` otherwise (C passes a meaningless
//! value).
//!
//! ## Remarks
//!
//! - `execute_now` always calls the task (the client decides; C does the same) and returns its
//!   result without retrying; a `Success…` result counts as a run.
//! - `execute_now_deferred_ex` runs the task on a PASSIVE_LEVEL work item (C's
//!   `DeferredOnDemand`), once per call: calls made while runs are pending are counted and run
//!   one after the other by the same work item (C's `NumberOfPendingCalls`). It honours the
//!   result: `Success` completes the task (C's `WorkIsCompleted`: later `_ex` runs, and runs when
//!   a persistent count says the task ran, do not call it), `…ButTryAgain` retries on the timer.
//!   `execute_now_deferred` is C DMF's legacy variant: the task runs, its result is ignored (C
//!   keeps that "due to a bug in the original implementation"; C tells the two apart by the first
//!   pending call's `CallbackContext`, here by which Method queued the batch). C's per-call
//!   `CallbackContext` is whatever the closure captures, so both Methods take no argument; the
//!   explicit context of the legacy Method has no Rust counterpart.
//! - `cancel` (C: ends the Module's rundown) stops future runs — a pending deferred run or retry,
//!   pending on-demand runs — and refuses `execute_now_deferred(_ex)` with `STATUS_UNSUCCESSFUL`
//!   until `restart` (C: `DMF_Rundown_Start`); a run in progress finishes. Unlike C's it does not
//!   wait for that run, so it may be called at DISPATCH_LEVEL and from the task itself. A phase
//!   still schedules its first run after `cancel`, as C's does.
//! - A task whose Immediate phase run fails is not an error of the phase here (C fails
//!   PrepareHardware/D0Entry with `STATUS_UNSUCCESSFUL`, which would fail the device's start for
//!   a task the Module is built to retry).
//! - D0Exit (D0Entry tasks) and ReleaseHardware (PrepareHardware tasks) stop pending retries and
//!   wait for a running deferred task; a task that never succeeded runs again at the next phase.
//! - Close (C: Cancel) drops pending on-demand runs, waits for the work item and the timer to
//!   finish a running task; nothing outlives the Module.
//! - A registry failure while reading the count is treated as "never ran" (the task runs), while
//!   writing it is traced: running a task twice is safer than never.
//! - Open option `OPEN_Create` with its own PrepareHardware/D0Entry callbacks, DISPATCH lock.
//!   Because it implements WDF callbacks it cannot be created dynamically (framework rule).
//! - **Needs a device.** Its timer is a child of the Module's device (the `ParentObject` of
//!   `WdfTimerCreate`); in a collection without a device it fails to open with
//!   `STATUS_INVALID_DEVICE_STATE`, as C DMF's `WdfTimerCreate` fails there.
//!
//! ## Category
//!
//! Task Execution.
//!
//! # Example
//!
//! ```
//! extern crate alloc;
//! use alloc::sync::Arc;
//! use core::time::Duration;
//! use dmf_core::module::{CollectionConfig, ModuleCollection, ModuleInit, PowerDeviceState};
//! use dmf_modules::scheduled_task::*;
//!
//! let machine = kmdf_sim::Machine::new();
//! let _bound = machine.enter();
//! let mut init = ModuleInit::new();
//! let token = init.add(ScheduledTask::with(ScheduledTaskConfig {
//!     callback: Arc::new(|_task: &ScheduledTask, _previous: Option<PowerDeviceState>| ScheduledTaskResult::Success),
//!     persistence: Persistence::NotPersistentAcrossReboots,
//!     execution_mode: ExecutionMode::Immediate,
//!     execute_when: ExecuteWhen::D0Entry,
//!     timer_period_on_success: Duration::ZERO,
//!     timer_period_on_fail: Duration::ZERO,
//!     time_before_initial_call: Duration::ZERO,
//! }));
//! // Its timer and work item are children of its device: a device on the simulator.
//! let (_node, wdf_device) = dmf_core::platform::simulator::plug_in_device(&machine, "example")?;
//! let config = CollectionConfig { device: Some(wdf_device), ..CollectionConfig::default() };
//! let device = ModuleCollection::create(init, config)?;
//! let task = device.get(token)?;
//! device.d0_entry(PowerDeviceState::D3Final)?;
//! device.d0_exit(PowerDeviceState::D3)?;
//! device.d0_entry(PowerDeviceState::D3)?;
//! assert_eq!(task.times_run()?, 1, "once per boot");
//! device.destroy();
//! # Ok::<(), dmf_core::NtStatus>(())
//! ```

use alloc::string::String;
use alloc::sync::Arc;
use core::time::Duration;

use dmf_core::fallible::{try_arc, try_string};
use dmf_core::module::{Dispatched, ModuleCallbacks, PowerDeviceState, Scope};
use dmf_core::platform::contract::{
    PlatformRegistryKey, PlatformTimer, PlatformTrace, PlatformWorkItem, RegistryValue,
    TimerExecutionLevel, TraceLevel,
};
use dmf_core::platform::Resources;
use dmf_core::platform::{RegistryKey, Timer, Trace, WorkItem};
use dmf_core::sync::{LockKind, ModuleLock};
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

use crate::back_ref::BackRef;

/// `ScheduledTask_Result_Type`: what a task run achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScheduledTaskResult {
    /// `ScheduledTask_WorkResult_Success`: done; counts as a run.
    Success,
    /// `ScheduledTask_WorkResult_Fail`: failed; not retried.
    Fail,
    /// `ScheduledTask_WorkResult_FailButTryAgain`: retry after `timer_period_on_fail`.
    FailButTryAgain,
    /// `ScheduledTask_WorkResult_SuccessButTryAgain`: counts as a run; run again after
    /// `timer_period_on_success`.
    SuccessButTryAgain,
}

/// `ScheduledTask_Persistence_Type`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Persistence {
    /// `ScheduledTask_Persistence_PersistentAcrossReboots`: once ever. The count is the `REG_DWORD`
    /// `value_name` under the `Parameters` key of the driver (service) `driver`.
    PersistentAcrossReboots {
        /// The driver's service name (whose `Parameters` key holds the count).
        driver: String,
        /// The value name of the count.
        value_name: String,
    },
    /// `ScheduledTask_Persistence_NotPersistentAcrossReboots`: once per boot (per Module life).
    NotPersistentAcrossReboots,
}

/// `ScheduledTask_ExecutionMode_Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExecutionMode {
    /// In the phase callback itself.
    Immediate,
    /// On a PASSIVE_LEVEL timer, `time_before_initial_call` after the phase.
    Deferred,
}

/// `ScheduledTask_ExecuteWhen_Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExecuteWhen {
    /// In the Module's PrepareHardware.
    PrepareHardware,
    /// In the Module's D0Entry.
    D0Entry,
    /// Only when the client calls `execute_now` / `execute_now_deferred`.
    Other,
}

/// `EVT_DMF_ScheduledTask_Callback`.
pub type ScheduledTaskCallback =
    Arc<dyn Fn(&ScheduledTask, Option<PowerDeviceState>) -> ScheduledTaskResult + Send + Sync>;

/// `DMF_CONFIG_ScheduledTask`.
#[derive(Clone)]
pub struct ScheduledTaskConfig {
    /// `EvtScheduledTaskCallback`.
    pub callback: ScheduledTaskCallback,
    /// `PersistenceType`.
    pub persistence: Persistence,
    /// `ExecutionMode`.
    pub execution_mode: ExecutionMode,
    /// `ExecuteWhen`.
    pub execute_when: ExecuteWhen,
    /// `TimerPeriodMsOnSuccess`: retry delay after `SuccessButTryAgain`.
    pub timer_period_on_success: Duration,
    /// `TimerPeriodMsOnFail`: retry delay after `FailButTryAgain`.
    pub timer_period_on_fail: Duration,
    /// `TimeMsBeforeInitialCall`: delay of a deferred phase run.
    pub time_before_initial_call: Duration,
}

impl core::fmt::Debug for ScheduledTaskConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ScheduledTaskConfig")
            .field("persistence", &self.persistence)
            .field("execution_mode", &self.execution_mode)
            .field("execute_when", &self.execute_when)
            .field("timer_period_on_success", &self.timer_period_on_success)
            .field("timer_period_on_fail", &self.timer_period_on_fail)
            .field("time_before_initial_call", &self.time_before_initial_call)
            .finish_non_exhaustive()
    }
}

/// Run-once tasks with timer retry. See the [module documentation](self).
#[dmf_module(crate = dmf_core, config = ScheduledTaskConfig, context = Context, open = Create, lock = Dispatch)]
pub struct ScheduledTask;

#[derive(Default)]
struct Context {
    shared: Option<Arc<Shared>>,
}

/// What C DMF's rundown of the Module's on-demand part says.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Admit {
    /// Runs and retries admitted.
    #[default]
    Open,
    /// `DMF_ScheduledTask_Cancel` until `DMF_ScheduledTask_Restart` (C ends the rundown): no
    /// retry, no on-demand run, deferred calls refused.
    Cancelled,
    /// Closing: nothing runs any more; `restart` does not lift it.
    Closing,
}

#[derive(Default)]
struct State {
    /// No retries: powered down (D0Exit/ReleaseHardware) or closing (C's `DisableRetries`).
    halted: bool,
    /// Whether on-demand runs and retries are admitted.
    admit: Admit,
    /// What the deferred run passes to the task.
    previous: Option<PowerDeviceState>,
    /// Times run, when not persistent.
    times_run: u32,
    /// C's `WorkIsCompleted`: a run that honours the result returned `Success`; an
    /// `execute_now_deferred_ex` run then does not call the task again.
    work_is_completed: bool,
    /// C's `NumberOfPendingCalls`: on-demand runs requested and not yet done.
    pending: u32,
    /// The pending batch came from `execute_now_deferred` (result not honoured); C tells the
    /// two apart by the first call's `CallbackContext`.
    legacy: bool,
}

struct Shared {
    handle: ScheduledTask,
    config: ScheduledTaskConfig,
    state: ModuleLock<State>,
    /// Serialises the read-modify-write of a persistent count (PASSIVE: the registry is there).
    count_lock: ModuleLock<()>,
    timer: Timer,
    /// C's `DeferredOnDemand`: runs `execute_now_deferred(_ex)` requests.
    on_demand: WorkItem,
}

const SOURCE: &str = "ScheduledTask";

/// Why the timer is being started.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arm {
    /// A phase's deferred first run: lifts the power-down halt (C starts it whatever the
    /// rundown says).
    Phase,
    /// A retry the task asked for: not while halted or cancelled.
    Retry,
}

impl Shared {
    fn times_run(&self) -> NtResult<u32> {
        match &self.config.persistence {
            Persistence::NotPersistentAcrossReboots => Ok(self.state.lock().times_run),
            Persistence::PersistentAcrossReboots { driver, value_name } => {
                let key = RegistryKey::open_driver_parameters(driver)?;
                match key.query(value_name) {
                    Ok(RegistryValue::Dword(n)) => Ok(n),
                    Ok(_) => Err(NtStatus::OBJECT_TYPE_MISMATCH),
                    Err(status) if status == NtStatus::OBJECT_NAME_NOT_FOUND => Ok(0),
                    Err(status) => Err(status),
                }
            }
        }
    }

    fn set_times_run(&self, times: u32) -> NtResult<()> {
        match &self.config.persistence {
            Persistence::NotPersistentAcrossReboots => {
                self.state.lock().times_run = times;
                Ok(())
            }
            Persistence::PersistentAcrossReboots { driver, value_name } => {
                RegistryKey::open_driver_parameters(driver)?
                    .set(value_name, RegistryValue::Dword(times))
            }
        }
    }

    /// Calls the task and counts a successful run.
    fn execute(&self, previous: Option<PowerDeviceState>) -> ScheduledTaskResult {
        let result = (self.config.callback)(&self.handle, previous);
        if matches!(
            result,
            ScheduledTaskResult::Success | ScheduledTaskResult::SuccessButTryAgain
        ) {
            let counted = match &self.config.persistence {
                Persistence::NotPersistentAcrossReboots => {
                    let mut state = self.state.lock();
                    state.times_run = state.times_run.saturating_add(1);
                    Ok(())
                }
                Persistence::PersistentAcrossReboots { .. } => {
                    let _serialised = self.count_lock.lock();
                    self.times_run()
                        .and_then(|n| self.set_times_run(n.saturating_add(1)))
                }
            };
            if let Err(status) = counted {
                <Trace as PlatformTrace>::trace(
                    TraceLevel::Error,
                    SOURCE,
                    format_args!("cannot record the run: {status:?}"),
                );
            }
        }
        result
    }

    /// A run that honours the result: counts it, remembers a `Success`, retries on the timer
    /// when the task asks for it.
    fn run_scheduled(&self, previous: Option<PowerDeviceState>) {
        match self.execute(previous) {
            ScheduledTaskResult::SuccessButTryAgain => {
                self.arm(self.config.timer_period_on_success, Arm::Retry);
            }
            ScheduledTaskResult::FailButTryAgain => {
                self.arm(self.config.timer_period_on_fail, Arm::Retry);
            }
            ScheduledTaskResult::Success => self.state.lock().work_is_completed = true,
            ScheduledTaskResult::Fail => {}
        }
    }

    /// Starts the timer `due` from now, as `why` allows.
    fn arm(&self, due: Duration, why: Arm) {
        let state = &mut *self.state.lock();
        let admitted = match (why, state.admit) {
            (_, Admit::Closing) | (Arm::Retry, Admit::Cancelled) => false,
            (Arm::Phase, _) => {
                state.halted = false;
                true
            }
            (Arm::Retry, Admit::Open) => !state.halted,
        };
        if !admitted {
            return;
        }
        self.timer.start(due);
    }

    /// Stops future runs and waits for a running deferred one (PASSIVE, never from the timer).
    fn halt_and_wait(&self) {
        self.state.lock().halted = true;
        self.timer.stop(true);
    }

    /// The phase run (PrepareHardware / D0Entry) of a task that has not run yet.
    fn phase(&self, previous: Option<PowerDeviceState>) {
        let times = self.times_run().unwrap_or(0);
        if times > 0 {
            return;
        }
        match self.config.execution_mode {
            ExecutionMode::Immediate => {
                self.state.lock().halted = false;
                self.run_scheduled(previous);
            }
            ExecutionMode::Deferred => {
                self.state.lock().previous = previous;
                self.arm(self.config.time_before_initial_call, Arm::Phase);
            }
        }
    }

    /// `DMF_ScheduledTask_ExecuteNowDeferred(Ex)`: one more on-demand run; the work item is
    /// queued by the call that finds none pending.
    fn defer(&self, legacy: bool) -> NtResult<()> {
        let first = {
            let state = &mut *self.state.lock();
            if state.admit != Admit::Open {
                return Err(NtStatus::UNSUCCESSFUL);
            }
            state.pending = state
                .pending
                .checked_add(1)
                .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
            if state.pending == 1 {
                state.legacy = legacy;
            }
            state.pending == 1
        };
        if first {
            self.on_demand.enqueue();
        }
        Ok(())
    }

    /// The on-demand work item: runs the task once per pending call (none once cancelled or
    /// closing: the calls are only counted down).
    fn on_demand_runs(&self) {
        loop {
            let (legacy, run) = {
                let state = self.state.lock();
                if state.pending == 0 {
                    return;
                }
                (state.legacy, state.admit == Admit::Open)
            };
            if run {
                if legacy {
                    // The result is not honoured (C DMF keeps this for legacy clients).
                    let _ = (self.config.callback)(&self.handle, None);
                } else if !self.already_done() {
                    self.run_scheduled(None);
                }
            }
            let state = &mut *self.state.lock();
            state.pending = state.pending.saturating_sub(1);
            if state.pending == 0 {
                state.legacy = false;
                return;
            }
        }
    }

    /// C's check before an honoured on-demand run: the work was completed (a `Success`), or a
    /// persistent count says it ran.
    fn already_done(&self) -> bool {
        if self.state.lock().work_is_completed {
            return true;
        }
        matches!(
            self.config.persistence,
            Persistence::PersistentAcrossReboots { .. }
        ) && self.times_run().unwrap_or(0) >= 1
    }
}

/// A copy of `config` for the Module's shared state; `STATUS_INSUFFICIENT_RESOURCES` if the
/// registry names cannot be copied.
fn try_clone_config(config: &ScheduledTaskConfig) -> NtResult<ScheduledTaskConfig> {
    let persistence = match &config.persistence {
        Persistence::PersistentAcrossReboots { driver, value_name } => {
            Persistence::PersistentAcrossReboots {
                driver: try_string(driver)?,
                value_name: try_string(value_name)?,
            }
        }
        Persistence::NotPersistentAcrossReboots => Persistence::NotPersistentAcrossReboots,
    };
    Ok(ScheduledTaskConfig {
        callback: Arc::clone(&config.callback),
        persistence,
        execution_mode: config.execution_mode,
        execute_when: config.execute_when,
        timer_period_on_success: config.timer_period_on_success,
        timer_period_on_fail: config.timer_period_on_fail,
        time_before_initial_call: config.time_before_initial_call,
    })
}

fn shared_of(module: &Scope<'_, ScheduledTask>) -> Option<Arc<Shared>> {
    module.lock().shared.clone()
}

#[dmf_callbacks(crate = dmf_core)]
impl ModuleCallbacks for ScheduledTask {
    fn open(module: &Dispatched<'_, Self>) -> NtResult<()> {
        let config = try_clone_config(module.config())?;
        if let Persistence::PersistentAcrossReboots { driver, value_name } = &config.persistence {
            if driver.is_empty() || value_name.is_empty() {
                return Err(NtStatus::INVALID_PARAMETER);
            }
        }
        let device = module.require_device()?;
        let handle = module.handle()?;
        let state = ModuleLock::new(LockKind::Spin, State::default())?;
        let count_lock = ModuleLock::new(LockKind::Wait, ())?;
        let back = BackRef::<Shared>::new()?;
        let timer = Timer::new(device, module.name(), None, TimerExecutionLevel::Passive, {
            let back = Arc::clone(&back);
            move || {
                if let Some(shared) = back.upgrade() {
                    let previous = shared.state.lock().previous;
                    shared.run_scheduled(previous);
                }
            }
        })?;
        let on_demand = WorkItem::new(device, module.name(), {
            let back = Arc::clone(&back);
            move || {
                if let Some(shared) = back.upgrade() {
                    shared.on_demand_runs();
                }
            }
        })?;
        let shared = try_arc(Shared {
            handle,
            config,
            state,
            count_lock,
            timer,
            on_demand,
        })?;
        back.set(&shared);
        module.lock().shared = Some(shared);
        Ok(())
    }

    fn close(module: &Dispatched<'_, Self>) {
        let shared = module.lock().shared.take();
        if let Some(shared) = shared {
            // C DMF's close cancels: no new run, the on-demand runs flushed, the timer stopped.
            {
                let state = &mut *shared.state.lock();
                state.admit = Admit::Closing;
                state.halted = true;
            }
            shared.on_demand.flush();
            shared.timer.stop(true);
        }
    }

    fn prepare_hardware(module: &Dispatched<'_, Self>, _resources: &Resources) -> NtResult<()> {
        if module.config().execute_when == ExecuteWhen::PrepareHardware {
            if let Some(shared) = shared_of(module) {
                shared.phase(None);
            }
        }
        Ok(())
    }

    fn release_hardware(module: &Dispatched<'_, Self>, _resources: &Resources) -> NtResult<()> {
        if module.config().execute_when == ExecuteWhen::PrepareHardware {
            if let Some(shared) = shared_of(module) {
                shared.halt_and_wait();
            }
        }
        Ok(())
    }

    fn d0_entry(module: &Dispatched<'_, Self>, previous: PowerDeviceState) -> NtResult<()> {
        if module.config().execute_when == ExecuteWhen::D0Entry {
            if let Some(shared) = shared_of(module) {
                shared.phase(Some(previous));
            }
        }
        Ok(())
    }

    fn d0_exit(module: &Dispatched<'_, Self>, _target: PowerDeviceState) -> NtResult<()> {
        if module.config().execute_when == ExecuteWhen::D0Entry {
            if let Some(shared) = shared_of(module) {
                shared.halt_and_wait();
            }
        }
        Ok(())
    }
}

impl ScheduledTask {
    /// `DMF_ScheduledTask_ExecuteNow` (PASSIVE_LEVEL): calls the task now, on this thread, and
    /// returns its result (no retry; a `Success…` result counts as a run).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open.
    pub fn execute_now(&self) -> NtResult<ScheduledTaskResult> {
        let module = self.enter()?;
        let shared = shared_of_method(&module)?;
        Ok(shared.execute(None))
    }

    /// `DMF_ScheduledTask_ExecuteNowDeferred` (≤ DISPATCH_LEVEL): calls the task once soon, on
    /// a PASSIVE_LEVEL work item, **without honouring its result** (no count, no retry) — C DMF
    /// keeps this behaviour for its legacy clients; use
    /// [`execute_now_deferred_ex`](Self::execute_now_deferred_ex). Each call is one run (calls
    /// made while runs are pending join that batch, as in C).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open; `STATUS_UNSUCCESSFUL` after
    /// [`cancel`](Self::cancel) until [`restart`](Self::restart).
    pub fn execute_now_deferred(&self) -> NtResult<()> {
        let module = self.enter()?;
        shared_of_method(&module)?.defer(true)
    }

    /// `DMF_ScheduledTask_ExecuteNowDeferredEx` (≤ DISPATCH_LEVEL): runs the task soon, on a
    /// PASSIVE_LEVEL work item, honouring its result: `Success` counts and ends the task (later
    /// `_ex` runs do not call it again; nor once a persistent count says it ran),
    /// `…ButTryAgain` retries on the timer. Each call is one run (C's pending-call count).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open; `STATUS_UNSUCCESSFUL` after
    /// [`cancel`](Self::cancel) until [`restart`](Self::restart).
    pub fn execute_now_deferred_ex(&self) -> NtResult<()> {
        let module = self.enter()?;
        shared_of_method(&module)?.defer(false)
    }

    /// `DMF_ScheduledTask_Cancel` (≤ DISPATCH_LEVEL): a pending deferred run or retry does not
    /// start, pending on-demand runs do not call the task (unless `restart` comes first), and
    /// `execute_now_deferred(_ex)` is refused until [`restart`](Self::restart); a run in progress finishes. A phase (PrepareHardware/D0Entry)
    /// still schedules its first run, as in C.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open.
    pub fn cancel(&self) -> NtResult<()> {
        let module = self.enter()?;
        let shared = shared_of_method(&module)?;
        {
            let state = &mut *shared.state.lock();
            if state.admit == Admit::Open {
                state.admit = Admit::Cancelled;
            }
        }
        shared.timer.stop(false);
        Ok(())
    }

    /// `DMF_ScheduledTask_Restart` (≤ DISPATCH_LEVEL): lifts [`cancel`](Self::cancel): deferred
    /// runs and retries are allowed again. Nothing is scheduled by it.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open.
    pub fn restart(&self) -> NtResult<()> {
        let module = self.enter()?;
        let shared = shared_of_method(&module)?;
        let state = &mut *shared.state.lock();
        if state.admit == Admit::Cancelled {
            state.admit = Admit::Open;
        }
        Ok(())
    }

    /// `DMF_ScheduledTask_TimesRunGet` (PASSIVE_LEVEL): how many times the task succeeded (from
    /// the registry when persistent).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open; the registry's status when persistent.
    pub fn times_run(&self) -> NtResult<u32> {
        let module = self.enter()?;
        shared_of_method(&module)?.times_run()
    }

    /// `DMF_ScheduledTask_TimesRunSet` (PASSIVE_LEVEL): sets the count (0 makes the task run again
    /// at its next phase).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` unless open; the registry's status when persistent.
    pub fn set_times_run(&self, times: u32) -> NtResult<()> {
        let module = self.enter()?;
        shared_of_method(&module)?.set_times_run(times)
    }
}

fn shared_of_method(module: &Scope<'_, ScheduledTask>) -> NtResult<Arc<Shared>> {
    shared_of(module).ok_or(NtStatus::INVALID_DEVICE_STATE)
}
