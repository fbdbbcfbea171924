//! ScheduledTask (MODS-ScheduledTask): unit tests through a ModuleCollection's phase functions,
//! persistence across a simulated reboot, and a stress scenario modelled on C DMF's
//! Tests_ScheduledTask (dmf-upstream §4).
#![cfg(feature = "sim")]
#![allow(clippy::missing_panics_doc, clippy::too_many_lines)]

mod task_support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmf_core::module::{CollectionConfig, ModuleCollection, ModuleInit, PowerDeviceState};
use dmf_core::platform::contract::{Irql, PlatformIrql};
use dmf_core::platform::{simulator, CurrentIrql};
use dmf_core::NtStatus;
use dmf_modules::scheduled_task::{
    ExecuteWhen, ExecutionMode, Persistence, ScheduledTask, ScheduledTaskConfig,
    ScheduledTaskResult,
};
use kmdf_sim::exec::SystemThread;
use kmdf_sim::registry::{RegistryStore, RegistryValue as SimValue};
use kmdf_sim::{ClockMode, Machine};
use task_support::{assert_clean, seed, Rng};

type Script = Arc<Mutex<Vec<ScheduledTaskResult>>>;
type Seen = Arc<Mutex<Vec<Option<PowerDeviceState>>>>;

/// A task that returns the scripted results in turn (then `Success`) and records its calls.
fn config(
    when: ExecuteWhen,
    mode: ExecutionMode,
    persistence: Persistence,
    script: &Script,
    seen: &Seen,
) -> ScheduledTaskConfig {
    let (script, seen) = (Arc::clone(script), Arc::clone(seen));
    ScheduledTaskConfig {
        callback: Arc::new(move |_t: &ScheduledTask, previous| {
            assert_eq!(CurrentIrql::current(), Irql::Passive);
            seen.lock().unwrap().push(previous);
            let mut script = script.lock().unwrap();
            if script.is_empty() {
                ScheduledTaskResult::Success
            } else {
                script.remove(0)
            }
        }),
        persistence,
        execution_mode: mode,
        execute_when: when,
        timer_period_on_success: Duration::from_millis(200),
        timer_period_on_fail: Duration::from_millis(100),
        time_before_initial_call: Duration::from_millis(50),
    }
}

/// The collection's config: bound to a device plugged in on the calling thread's machine (the
/// parent of the Module's timer and work item).
fn on_a_device() -> CollectionConfig {
    let machine = Machine::current().expect("the test thread is bound to its machine");
    let (_node, device) =
        simulator::plug_in_device(&machine, "task-test").expect("the test device starts");
    CollectionConfig {
        device: Some(device),
        ..CollectionConfig::default()
    }
}

fn device(config: ScheduledTaskConfig) -> (ModuleCollection, ScheduledTask) {
    let mut init = ModuleInit::new();
    let token = init.add(ScheduledTask::with(config));
    let device = ModuleCollection::create(init, on_a_device()).unwrap();
    let task = device.get(token).unwrap();
    (device, task)
}

fn persistent() -> Persistence {
    Persistence::PersistentAcrossReboots {
        driver: "TaskTest".into(),
        value_name: "TimesRun".into(),
    }
}

/// MODS-ScheduledTask: PrepareHardware, immediate, once per boot: a second start does not run it.
#[test]
fn mods_scheduledtask_prepare_hardware_immediate_once_per_boot() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let (script, seen) = (Script::default(), Seen::default());
    let (device, task) = device(config(
        ExecuteWhen::PrepareHardware,
        ExecutionMode::Immediate,
        Persistence::NotPersistentAcrossReboots,
        &script,
        &seen,
    ));
    assert!(seen.lock().unwrap().is_empty(), "not at create");
    device
        .prepare_hardware(&dmf_core::platform::Resources::default())
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![None]);
    device.d0_entry(PowerDeviceState::D3Final).unwrap();
    device.d0_exit(PowerDeviceState::D3Final).unwrap();
    device
        .release_hardware(&dmf_core::platform::Resources::default())
        .unwrap();
    device
        .prepare_hardware(&dmf_core::platform::Resources::default())
        .unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1, "once per boot");
    assert_eq!(task.times_run(), Ok(1));
    task.set_times_run(0).unwrap();
    device
        .release_hardware(&dmf_core::platform::Resources::default())
        .unwrap();
    device
        .prepare_hardware(&dmf_core::platform::Resources::default())
        .unwrap();
    assert_eq!(seen.lock().unwrap().len(), 2, "count reset: runs again");
    device.destroy();
    assert_eq!(task.times_run(), Err(NtStatus::INVALID_DEVICE_STATE));
    drop(task);
    assert_clean(&machine, 0);
}

/// MODS-ScheduledTask: D0Entry, deferred, with timer retry on FailButTryAgain /
/// SuccessButTryAgain on the virtual clock; the task gets D0Entry's previous state.
#[test]
fn mods_scheduledtask_d0entry_deferred_retries_on_timer() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let script: Script = Arc::new(Mutex::new(vec![
        ScheduledTaskResult::FailButTryAgain,
        ScheduledTaskResult::SuccessButTryAgain,
        ScheduledTaskResult::Success,
    ]));
    let seen = Seen::default();
    let (device, task) = device(config(
        ExecuteWhen::D0Entry,
        ExecutionMode::Deferred,
        Persistence::NotPersistentAcrossReboots,
        &script,
        &seen,
    ));
    device.d0_entry(PowerDeviceState::D3Final).unwrap();
    machine.settle();
    assert_eq!(seen.lock().unwrap().len(), 0, "deferred");
    machine.advance(Duration::from_millis(50));
    assert_eq!(seen.lock().unwrap().len(), 1, "initial call");
    assert_eq!(task.times_run(), Ok(0), "failed");
    machine.advance(Duration::from_millis(99));
    assert_eq!(seen.lock().unwrap().len(), 1);
    machine.advance(Duration::from_millis(1));
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "retry after timer_period_on_fail"
    );
    assert_eq!(task.times_run(), Ok(1), "SuccessButTryAgain counts");
    machine.advance(Duration::from_millis(200));
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "retry after timer_period_on_success"
    );
    machine.advance(Duration::from_secs(5));
    assert_eq!(seen.lock().unwrap().len(), 3, "Success ends it");
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .all(|p| *p == Some(PowerDeviceState::D3Final)));
    device.d0_exit(PowerDeviceState::D3).unwrap();
    device.d0_entry(PowerDeviceState::D3).unwrap();
    machine.advance(Duration::from_secs(1));
    assert_eq!(seen.lock().unwrap().len(), 3, "already ran this boot");
    device.destroy();
    assert_clean(&machine, 0);
}

/// MODS-ScheduledTask: D0Exit stops pending retries; the task runs again at the next D0Entry
/// because it never succeeded.
#[test]
fn mods_scheduledtask_d0exit_stops_retries() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let script: Script = Arc::new(Mutex::new(vec![ScheduledTaskResult::FailButTryAgain; 3]));
    let seen = Seen::default();
    let (device, _task) = device(config(
        ExecuteWhen::D0Entry,
        ExecutionMode::Immediate,
        Persistence::NotPersistentAcrossReboots,
        &script,
        &seen,
    ));
    device.d0_entry(PowerDeviceState::D3Final).unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1, "immediate");
    device.d0_exit(PowerDeviceState::D3).unwrap();
    machine.advance(Duration::from_secs(1));
    assert_eq!(seen.lock().unwrap().len(), 1, "no retry while in D3");
    device.d0_entry(PowerDeviceState::D3).unwrap();
    assert_eq!(seen.lock().unwrap().len(), 2);
    machine.advance(Duration::from_millis(100));
    assert_eq!(seen.lock().unwrap().len(), 3);
    device.destroy();
    machine.advance(Duration::from_secs(1));
    assert_eq!(seen.lock().unwrap().len(), 3, "nothing after close");
    assert_clean(&machine, 0);
}

/// MODS-ScheduledTask: persistent — "once ever" survives a simulated reboot (two machines sharing
/// one registry store); the count lives under the driver's Parameters key.
#[test]
fn mods_scheduledtask_persistent_survives_reboot() {
    let store = RegistryStore::new();
    for boot in 0..3 {
        let machine = Machine::new();
        machine.use_registry(&store);
        let _bound = machine.enter();
        let (script, seen) = (Script::default(), Seen::default());
        let (device, task) = device(config(
            ExecuteWhen::PrepareHardware,
            ExecutionMode::Immediate,
            persistent(),
            &script,
            &seen,
        ));
        device
            .prepare_hardware(&dmf_core::platform::Resources::default())
            .unwrap();
        device.d0_entry(PowerDeviceState::D3Final).unwrap();
        let expected = usize::from(boot == 0);
        assert_eq!(seen.lock().unwrap().len(), expected, "boot {boot}");
        assert_eq!(task.times_run(), Ok(1));
        device.d0_exit(PowerDeviceState::D3Final).unwrap();
        device
            .release_hardware(&dmf_core::platform::Resources::default())
            .unwrap();
        device.destroy();
        let value = machine
            .registry()
            .driver_parameters("TaskTest")
            .unwrap()
            .query_value("TimesRun")
            .unwrap();
        assert_eq!(value, SimValue::Dword(1));
        assert_clean(&machine, 0);
    }
}

/// MODS-ScheduledTask: "Other" — ExecuteNow returns the result; ExecuteNowDeferredEx retries
/// until cancelled; after Cancel the deferred Methods are refused until Restart; invalid configs
/// are refused with a status.
#[test]
fn mods_scheduledtask_other_execute_now_deferred_and_cancel() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let script: Script = Arc::new(Mutex::new(vec![
        ScheduledTaskResult::Fail,
        ScheduledTaskResult::SuccessButTryAgain,
        ScheduledTaskResult::SuccessButTryAgain,
        ScheduledTaskResult::SuccessButTryAgain,
        ScheduledTaskResult::SuccessButTryAgain,
    ]));
    let seen = Seen::default();
    let (device, task) = device(config(
        ExecuteWhen::Other,
        ExecutionMode::Deferred,
        Persistence::NotPersistentAcrossReboots,
        &script,
        &seen,
    ));
    device
        .prepare_hardware(&dmf_core::platform::Resources::default())
        .unwrap();
    device.d0_entry(PowerDeviceState::D3Final).unwrap();
    machine.advance(Duration::from_secs(1));
    assert!(seen.lock().unwrap().is_empty(), "Other: no phase run");
    assert_eq!(task.execute_now(), Ok(ScheduledTaskResult::Fail));
    assert_eq!(task.times_run(), Ok(0));
    task.execute_now_deferred_ex().unwrap();
    machine.settle();
    assert_eq!(seen.lock().unwrap().len(), 2);
    machine.advance(Duration::from_millis(200));
    assert_eq!(seen.lock().unwrap().len(), 3);
    task.cancel().unwrap();
    machine.advance(Duration::from_secs(2));
    assert_eq!(seen.lock().unwrap().len(), 3, "cancelled");
    assert_eq!(task.times_run(), Ok(2));
    assert_eq!(
        task.execute_now_deferred_ex(),
        Err(NtStatus::UNSUCCESSFUL),
        "refused until restart"
    );
    assert_eq!(task.execute_now_deferred(), Err(NtStatus::UNSUCCESSFUL));
    machine.settle();
    assert_eq!(seen.lock().unwrap().len(), 3);
    task.restart().unwrap();
    task.execute_now_deferred_ex().unwrap();
    machine.settle();
    assert_eq!(
        seen.lock().unwrap().len(),
        4,
        "deferred again after restart"
    );
    device.destroy();

    let bad = config(
        ExecuteWhen::Other,
        ExecutionMode::Immediate,
        Persistence::PersistentAcrossReboots {
            driver: String::new(),
            value_name: "x".into(),
        },
        &script,
        &seen,
    );
    let mut init = ModuleInit::new();
    let _ = init.add(ScheduledTask::with(bad));
    assert_eq!(
        ModuleCollection::create(init, on_a_device()).err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    let fine = config(
        ExecuteWhen::Other,
        ExecutionMode::Immediate,
        Persistence::NotPersistentAcrossReboots,
        &script,
        &seen,
    );
    let mut init = ModuleInit::new();
    let _ = init.add(ScheduledTask::with(fine));
    assert_eq!(
        ModuleCollection::create(init, CollectionConfig::default()).err(),
        Some(NtStatus::INVALID_DEVICE_STATE),
        "a collection without a device cannot parent the task's timer"
    );
    assert_clean(&machine, 0);
}

/// MODS-ScheduledTask stress (Tests_ScheduledTask): system threads call ExecuteNow,
/// ExecuteNowDeferredEx, Cancel, Restart and TimesRunGet at random while the task returns random results and
/// one caller closes the Module. Invariants: the task runs at PASSIVE_LEVEL; the persistent count
/// equals the successful runs; nothing runs after close; every Method after close fails with
/// STATUS_INVALID_DEVICE_STATE; no verifier violation, no pool leaked.
#[test]
fn mods_scheduledtask_stress_concurrent_callers_and_close() {
    for round in 0..3u64 {
        stress(seed("mods_scheduledtask_stress", 0x5C4E_0000 + round));
    }
}

fn stress(seed: u64) {
    const CALLERS: u8 = 3;
    const ITERATIONS: u32 = 60;
    let machine = Machine::builder().clock(ClockMode::AutoAdvance).build();
    let _bound = machine.enter();
    let successes = Arc::new(AtomicU32::new(0));
    let runs = Arc::new(AtomicU32::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    let results = Arc::new(Mutex::new(Rng::new(seed ^ 0xABCD)));
    let config = {
        let (successes, runs, closed, results) = (
            Arc::clone(&successes),
            Arc::clone(&runs),
            Arc::clone(&closed),
            Arc::clone(&results),
        );
        ScheduledTaskConfig {
            callback: Arc::new(move |_t: &ScheduledTask, _previous| {
                assert_eq!(CurrentIrql::current(), Irql::Passive, "seed {seed}");
                runs.fetch_add(1, Ordering::SeqCst);
                let _ = &closed;
                let result = match results.lock().unwrap().below(8) {
                    0 => ScheduledTaskResult::FailButTryAgain,
                    1 => ScheduledTaskResult::SuccessButTryAgain,
                    2 | 3 => ScheduledTaskResult::Fail,
                    _ => ScheduledTaskResult::Success,
                };
                if matches!(
                    result,
                    ScheduledTaskResult::Success | ScheduledTaskResult::SuccessButTryAgain
                ) {
                    successes.fetch_add(1, Ordering::SeqCst);
                }
                result
            }),
            persistence: Persistence::PersistentAcrossReboots {
                driver: "TaskStress".into(),
                value_name: "TimesRun".into(),
            },
            execution_mode: ExecutionMode::Deferred,
            execute_when: ExecuteWhen::Other,
            timer_period_on_success: Duration::from_millis(5),
            timer_period_on_fail: Duration::from_millis(3),
            time_before_initial_call: Duration::ZERO,
        }
    };
    let mut init = ModuleInit::new();
    let token = init.add(ScheduledTask::with(config));
    let device = ModuleCollection::create(init, on_a_device()).unwrap();
    let handle = device.get(token).unwrap();
    let owner = Arc::new(Mutex::new(Some(device)));
    let close_at = u32::try_from(Rng::new(seed).below(u64::from(ITERATIONS))).unwrap();
    let threads: Vec<SystemThread> = (0..CALLERS)
        .map(|caller| {
            let (handle, owner, closed) = (handle.clone(), Arc::clone(&owner), Arc::clone(&closed));
            let mut rng = Rng::new(seed ^ (u64::from(caller) << 32));
            SystemThread::spawn(&machine, &format!("caller-{caller}"), move || {
                for i in 0..ITERATIONS {
                    if caller == 0 && i == close_at {
                        let device = owner.lock().unwrap().take();
                        drop(device);
                        // Set only once the close has completed: a call that starts after
                        // this point must be refused.
                        closed.store(true, Ordering::SeqCst);
                        continue;
                    }
                    let was_closed = closed.load(Ordering::SeqCst);
                    let (result, deferred) = match rng.below(6) {
                        0 => (handle.execute_now().map(drop), false),
                        1 | 2 => (handle.execute_now_deferred_ex(), true),
                        3 => (handle.cancel(), false),
                        4 => (handle.restart(), false),
                        _ => (handle.times_run().map(drop), false),
                    };
                    match result {
                        Ok(()) => assert!(!was_closed, "seed {seed}: a call succeeded after close"),
                        // Cancelled by another caller and not restarted yet.
                        Err(NtStatus::UNSUCCESSFUL) if deferred => {}
                        Err(status) => {
                            assert_eq!(status, NtStatus::INVALID_DEVICE_STATE, "seed {seed}");
                        }
                    }
                }
            })
            .unwrap()
        })
        .collect();
    for thread in &threads {
        thread.wait(None);
    }
    assert!(closed.load(Ordering::SeqCst));
    let after_close = runs.load(Ordering::SeqCst);
    machine.advance(Duration::from_secs(10));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        after_close,
        "seed {seed}: ran after close"
    );
    let stored = machine
        .registry()
        .driver_parameters("TaskStress")
        .unwrap()
        .query_value("TimesRun")
        .ok();
    let successes = successes.load(Ordering::SeqCst);
    let expected = (successes > 0).then_some(SimValue::Dword(successes));
    assert_eq!(stored, expected, "seed {seed}: count != successful runs");
    drop(handle);
    assert_clean(&machine, seed);
}

/// A device whose task is `Other`, deferred, counting in memory, with `script`'s results.
fn other_task(script: &Script, seen: &Seen) -> (ModuleCollection, ScheduledTask) {
    device(config(
        ExecuteWhen::Other,
        ExecutionMode::Deferred,
        Persistence::NotPersistentAcrossReboots,
        script,
        seen,
    ))
}

/// MODS-ScheduledTask (Tests_ScheduledTask_RunManualTasksEx): every ExecuteNowDeferredEx call is
/// one run on the work item (calls made while runs are pending are counted, C's
/// `NumberOfPendingCalls`), at PASSIVE_LEVEL, with the result honoured: `FailButTryAgain`
/// retries on the timer, and after a `Success` no `_ex` run calls the task again — while
/// ExecuteNow still does.
#[test]
fn mods_scheduledtask_deferred_ex_runs_once_per_call_until_success() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let script: Script = Arc::new(Mutex::new(vec![
        ScheduledTaskResult::Fail,
        ScheduledTaskResult::Fail,
        ScheduledTaskResult::FailButTryAgain,
    ]));
    let seen = Seen::default();
    let (device, task) = other_task(&script, &seen);
    let paused = machine.pause_queues();
    for _ in 0..3 {
        task.execute_now_deferred_ex().unwrap();
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "deferred: not on the caller's thread"
    );
    drop(paused);
    machine.settle();
    assert_eq!(seen.lock().unwrap().len(), 3, "one run per call");
    assert_eq!(task.times_run(), Ok(0), "three failures");
    machine.advance(Duration::from_millis(99));
    assert_eq!(seen.lock().unwrap().len(), 3);
    machine.advance(Duration::from_millis(1));
    assert_eq!(
        seen.lock().unwrap().len(),
        4,
        "FailButTryAgain retried after timer_period_on_fail, and succeeded"
    );
    assert_eq!(task.times_run(), Ok(1));
    task.execute_now_deferred_ex().unwrap();
    task.execute_now_deferred_ex().unwrap();
    machine.advance(Duration::from_secs(1));
    assert_eq!(seen.lock().unwrap().len(), 4, "the work is completed");
    assert_eq!(task.execute_now(), Ok(ScheduledTaskResult::Success));
    assert_eq!(
        seen.lock().unwrap().len(),
        5,
        "ExecuteNow always calls the task"
    );
    assert!(seen.lock().unwrap().iter().all(Option::is_none));
    device.destroy();
    assert_clean(&machine, 0);
}

/// MODS-ScheduledTask (Tests_ScheduledTask_RunManualTasks): the legacy ExecuteNowDeferred calls
/// the task once per call and ignores its result — no count, no retry, and it still calls the
/// task after a `Success`.
#[test]
fn mods_scheduledtask_legacy_deferred_ignores_the_result() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let script: Script = Arc::new(Mutex::new(vec![
        ScheduledTaskResult::FailButTryAgain,
        ScheduledTaskResult::SuccessButTryAgain,
    ]));
    let seen = Seen::default();
    let (device, task) = other_task(&script, &seen);
    task.execute_now_deferred().unwrap();
    task.execute_now_deferred().unwrap();
    machine.settle();
    assert_eq!(seen.lock().unwrap().len(), 2);
    machine.advance(Duration::from_secs(2));
    assert_eq!(seen.lock().unwrap().len(), 2, "no retry");
    assert_eq!(task.times_run(), Ok(0), "not counted");
    task.execute_now_deferred().unwrap();
    machine.settle();
    assert_eq!(seen.lock().unwrap().len(), 3, "Success");
    task.execute_now_deferred().unwrap();
    machine.settle();
    assert_eq!(
        seen.lock().unwrap().len(),
        4,
        "legacy runs even after a Success"
    );
    assert_eq!(task.times_run(), Ok(0));
    device.destroy();
    assert_clean(&machine, 0);
}

/// MODS-ScheduledTask (Tests_ScheduledTask_RunManualTasksExCancel): ExecuteNowDeferredEx, then
/// Cancel before the work item ran — the task is not called and its retries stop; Restart and
/// ExecuteNowDeferredEx again, in a loop. Restart alone schedules nothing; Cancel and Restart
/// are refused once the Module closes.
#[test]
fn mods_scheduledtask_cancel_and_restart_loop() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let script: Script = Arc::new(Mutex::new(vec![ScheduledTaskResult::FailButTryAgain; 64]));
    let seen = Seen::default();
    let (device, task) = other_task(&script, &seen);
    for round in 0..5 {
        if round > 0 {
            task.restart().unwrap();
        }
        // The work item stays queued until Cancel (C waits 30 ms, hoping for the same).
        let paused = machine.pause_queues();
        task.execute_now_deferred_ex().unwrap();
        task.cancel().unwrap();
        drop(paused);
        machine.advance(Duration::from_millis(30));
        assert_eq!(
            seen.lock().unwrap().len(),
            0,
            "round {round}: cancelled first"
        );
    }
    task.restart().unwrap();
    machine.advance(Duration::from_secs(1));
    assert_eq!(seen.lock().unwrap().len(), 0, "restart schedules nothing");
    task.execute_now_deferred_ex().unwrap();
    machine.settle();
    assert_eq!(seen.lock().unwrap().len(), 1);
    machine.advance(Duration::from_millis(100));
    assert_eq!(seen.lock().unwrap().len(), 2, "retrying");
    task.cancel().unwrap();
    machine.advance(Duration::from_secs(1));
    assert_eq!(seen.lock().unwrap().len(), 2, "Cancel stops the retries");
    task.restart().unwrap();
    machine.advance(Duration::from_secs(1));
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "a stopped retry is not resumed"
    );
    device.destroy();
    assert_eq!(task.cancel(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(task.restart(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(
        task.execute_now_deferred_ex(),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    drop(task);
    assert_clean(&machine, 0);
}

/// MODS-ScheduledTask: close with on-demand runs requested: it waits for the work item, nothing
/// runs after it returns, and nothing is leaked.
#[test]
fn mods_scheduledtask_close_with_on_demand_runs_requested() {
    let machine = Machine::new();
    let _bound = machine.enter();
    let (script, seen) = (Script::default(), Seen::default());
    let (device, task) = other_task(&script, &seen);
    for _ in 0..4 {
        task.execute_now_deferred_ex().unwrap();
    }
    device.destroy();
    let at_close = seen.lock().unwrap().len();
    assert!(at_close <= 1, "one Success ends the `_ex` runs");
    machine.advance(Duration::from_secs(1));
    assert_eq!(seen.lock().unwrap().len(), at_close, "nothing after close");
    drop(task);
    assert_clean(&machine, 0);
}
