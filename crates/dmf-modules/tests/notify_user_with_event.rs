//! DMF_NotifyUserWithEvent: an application creates a named event and waits on it (virtual
//! clock); the driver's Module opens, sets and closes it per notification. C DMF has no
//! Tests_NotifyUserWithEvent; the scenarios follow the Module's contract in
//! Dmf_NotifyUserWithEvent.c: events opened on use, the application restarting, index checks,
//! open/close churn under load.
#![cfg(feature = "sim")]
// reason: scenario closures name their handle `h`, the thread `t`, the Rng `rng`, as Tests_* do.
#![allow(clippy::many_single_char_names)]

mod driver_support;
mod task_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dmf_core::module::{DynamicModule, NoParent};
use dmf_core::platform::contract::PlatformClock;
use dmf_core::platform::{simulator, Clock};
use dmf_core::NtStatus;
use dmf_modules::notify_user_with_event::{
    NotifyUserWithEvent, NotifyUserWithEventConfig, NOTIFY_USER_WITH_EVENT_DEFAULT_INDEX,
    NOTIFY_USER_WITH_EVENT_MAXIMUM_EVENTS,
};
use kmdf_sim::exec::named_event::{named_event_exists, named_event_handles};
use kmdf_sim::exec::{raise_irql, Irql, NamedEvent, WaitStatus};
use kmdf_sim::io::{AppConfig, Application};
use kmdf_sim::pnp::StackSpec;
use kmdf_sim::{ClockMode, Machine, VerifierMode};
use task_support::{assert_clean, clean, seed, since, spawn, Rng};

const READY: &str = r"\BaseNamedObjects\DmfTestReady";
const DATA: &str = r"\BaseNamedObjects\DmfTestData";
const ERROR: &str = r"\Sessions\1\BaseNamedObjects\DmfTestError";

fn config(maximum_event_index: u32) -> NotifyUserWithEventConfig {
    NotifyUserWithEventConfig {
        maximum_event_index,
        event_names: [READY, DATA, ERROR, ""],
    }
}

fn create(maximum_event_index: u32) -> DynamicModule<NotifyUserWithEvent> {
    NotifyUserWithEvent::with(config(maximum_event_index))
        .create(&NoParent)
        .unwrap()
}

fn app(machine: &Machine) -> Application {
    Application::new(
        machine,
        AppConfig {
            administrator: false,
            name: "listener.exe".into(),
        },
    )
}

/// The driver's Module (added to its device) signals the event an application created and waits
/// on: the application's wait returns signalled when the driver notifies, two virtual seconds
/// into a ten-second timeout; without a notification the next wait times out after exactly ten.
#[test]
fn nue_driver_module_signals_the_waiting_application() {
    let machine = Machine::builder().verifier(VerifierMode::Record).build();
    let _on = machine.enter();
    let slot = driver_support::install(&machine, "notifier", false, |modules| {
        modules.add(NotifyUserWithEvent::with(config(0)))
    });
    let node = machine
        .pnp()
        .plug_in(StackSpec::new("ROOT\\NOTIFIER", "notifier"))
        .unwrap();
    let (_device, notify) = driver_support::take(&slot);
    // CreateEvent(NULL, FALSE, FALSE, L"Global\\DmfTestReady").
    let listener = app(&machine);
    let ready = Arc::new(
        listener
            .create_event(r"Global\DmfTestReady", false, false)
            .unwrap(),
    );
    assert!(!ready.existed());
    let waiter = {
        let ready = Arc::clone(&ready);
        spawn(&machine, "listener", move || {
            let start = Clock::now();
            assert_eq!(
                ready.wait(Some(Duration::from_secs(10))),
                WaitStatus::Signaled
            );
            assert_eq!(since(start), Duration::from_secs(2));
            let start = Clock::now();
            assert_eq!(
                ready.wait(Some(Duration::from_secs(10))),
                WaitStatus::TimedOut
            );
            assert_eq!(since(start), Duration::from_secs(10));
        })
    };
    machine.advance(Duration::from_secs(2));
    assert_eq!(notify.notify(), Ok(()));
    // Only the application's handle is open: the Module closed its own after setting.
    assert_eq!(named_event_handles(&machine, READY), 1);
    machine.advance(Duration::from_secs(10));
    assert_eq!(waiter.wait(None), kmdf_sim::exec::WaitStatus::Signaled);
    node.remove().unwrap();
    assert_eq!(notify.notify(), Err(NtStatus::INVALID_DEVICE_STATE));
    Arc::try_unwrap(ready).unwrap().close();
    assert!(!named_event_exists(&machine, READY));
    assert_clean(&machine, 0);
}

/// The event does not exist at open: the Module opens anyway (C DMF opens events on use) and a
/// notification fails with ZwOpenEvent's STATUS_OBJECT_NAME_NOT_FOUND; after the application
/// closed its event (it stopped) the same; when it starts again and re-creates it, the
/// notification reaches the new event.
#[test]
fn nue_missing_event_and_application_restart() {
    let machine = task_support::machine();
    let _on = machine.enter();
    let notify = create(0);
    assert_eq!(notify.notify(), Err(NtStatus::OBJECT_NAME_NOT_FOUND));
    let listener = app(&machine);
    let first = listener
        .create_event(r"Global\DmfTestReady", true, false)
        .unwrap();
    assert_eq!(notify.notify(), Ok(()));
    assert!(first.is_signaled());
    first.close();
    assert_eq!(notify.notify(), Err(NtStatus::OBJECT_NAME_NOT_FOUND));
    let second = listener
        .create_event(r"Global\DmfTestReady", true, false)
        .unwrap();
    assert!(
        !second.existed(),
        "a new event: the old one went with its last handle"
    );
    assert!(!second.is_signaled());
    assert_eq!(notify.notify(), Ok(()));
    assert_eq!(second.wait(Some(Duration::ZERO)), WaitStatus::Signaled);
    // A session-local event of the same short name is another object.
    let local = listener.create_event("DmfTestReady", true, false).unwrap();
    second.clear();
    assert_eq!(notify.notify(), Ok(()));
    assert!(second.is_signaled() && !local.is_signaled());
    drop((second, local));
    notify.delete();
    clean(&machine);
}

/// Indexes: each index sets its own event; an index above MaximumEventIndex (or above the
/// array) is STATUS_INVALID_PARAMETER; Notify is NotifyByIndex(NotifyUserWithEvent_DefaultIndex).
#[test]
fn nue_notify_by_index_and_bad_index() {
    let machine = task_support::machine();
    let _on = machine.enter();
    let notify = create(2);
    let listener = app(&machine);
    let events: Vec<_> = [
        r"Global\DmfTestReady",
        r"Global\DmfTestData",
        "DmfTestError",
    ]
    .iter()
    .map(|name| listener.create_event(name, true, false).unwrap())
    .collect();
    for (index, _) in events.iter().enumerate() {
        for e in &events {
            e.clear();
        }
        assert_eq!(
            notify.notify_by_index(u32::try_from(index).unwrap()),
            Ok(())
        );
        let set: Vec<bool> = events.iter().map(NamedEvent::is_signaled).collect();
        let mut expected = vec![false; events.len()];
        expected[index] = true;
        assert_eq!(set, expected, "index {index}");
    }
    for e in &events {
        e.clear();
    }
    assert_eq!(NOTIFY_USER_WITH_EVENT_DEFAULT_INDEX, 0);
    assert_eq!(notify.notify(), Ok(()));
    assert!(events[0].is_signaled() && !events[1].is_signaled());
    let beyond = u32::try_from(NOTIFY_USER_WITH_EVENT_MAXIMUM_EVENTS).unwrap();
    for bad in [3, beyond, u32::MAX] {
        assert_eq!(
            notify.notify_by_index(bad),
            Err(NtStatus::INVALID_PARAMETER)
        );
    }
    let narrow = create(0);
    assert_eq!(narrow.notify_by_index(1), Err(NtStatus::INVALID_PARAMETER));
    drop(events);
    notify.delete();
    narrow.delete();
    clean(&machine);
}

/// Open checks the configuration (C DMF: MaximumEventIndex ≥ NotifyUserWithEvent_MAXIMUM_EVENTS
/// is STATUS_INVALID_PARAMETER; here also an empty or over-long name at a used index).
#[test]
fn nue_bad_configurations_fail_open() {
    static LONG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let machine = task_support::machine();
    let _on = machine.enter();
    let open = |config: NotifyUserWithEventConfig| {
        NotifyUserWithEvent::with(config)
            .create(&NoParent)
            .map(DynamicModule::delete)
    };
    let maximum = u32::try_from(NOTIFY_USER_WITH_EVENT_MAXIMUM_EVENTS).unwrap();
    assert_eq!(open(config(maximum)), Err(NtStatus::INVALID_PARAMETER));
    assert_eq!(
        open(config(3)),
        Err(NtStatus::INVALID_PARAMETER),
        "name 3 is empty"
    );
    assert_eq!(open(config(2)), Ok(()));
    let long: &'static str =
        LONG.get_or_init(|| format!("\\BaseNamedObjects\\{}", "x".repeat(32_767)));
    let too_long = NotifyUserWithEventConfig {
        maximum_event_index: 0,
        event_names: [long, "", "", ""],
    };
    assert_eq!(open(too_long), Err(NtStatus::INVALID_PARAMETER));
    clean(&machine);
}

/// Methods run at PASSIVE_LEVEL only (C: PAGED_CODE): above it, STATUS_INVALID_DEVICE_REQUEST and
/// no event is touched.
#[test]
fn nue_notify_above_passive_is_refused() {
    let machine = task_support::machine();
    let _on = machine.enter();
    let notify = create(0);
    let ready = app(&machine)
        .create_event(r"Global\DmfTestReady", true, false)
        .unwrap();
    let old = raise_irql(Irql::Dispatch);
    assert_eq!(notify.notify(), Err(NtStatus::INVALID_DEVICE_REQUEST));
    kmdf_sim::exec::lower_irql(old);
    assert!(!ready.is_signaled());
    assert_eq!(notify.notify(), Ok(()));
    assert!(ready.is_signaled());
    drop(ready);
    notify.delete();
    clean(&machine);
}

/// Open/close churn under load (seeded): an application thread creates and closes its event at
/// random, two driver threads notify at random, and the Module is deleted and re-created between
/// rounds. Every notification is STATUS_SUCCESS (an event existed), STATUS_OBJECT_NAME_NOT_FOUND
/// (none did) or STATUS_INVALID_DEVICE_STATE (the Module closed under it); no kernel handle is
/// ever left open; the application sees at least one notification per round it listened in.
#[test]
fn scenario_nue_open_close_churn() {
    let seed = seed("scenario_nue_open_close_churn", 0x004E_5545);
    let machine = Machine::builder()
        .clock(ClockMode::AutoAdvance)
        .verifier(VerifierMode::Record)
        .build();
    let _on = machine.enter();
    let mut rng = Rng::new(seed);
    let delivered = Arc::new(AtomicU64::new(0));
    for round in 0..6_u64 {
        let notify = create(0);
        let stop = Arc::new(AtomicBool::new(false));
        let listener = {
            let (stop, delivered) = (Arc::clone(&stop), Arc::clone(&delivered));
            let mut rng = Rng::new(seed ^ round);
            let app = app(&machine);
            spawn(&machine, "listener", move || {
                while !stop.load(Ordering::SeqCst) {
                    let event = app
                        .create_event(r"Global\DmfTestReady", false, false)
                        .unwrap();
                    for _ in 0..=rng.below(4) {
                        if event.wait(Some(Duration::from_millis(rng.below(5) + 1)))
                            == WaitStatus::Signaled
                        {
                            delivered.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    event.close();
                    let nap = app.create_event("nap", true, false).unwrap();
                    let _ = nap.wait(Some(Duration::from_millis(rng.below(3))));
                }
            })
        };
        let notifiers: Vec<_> = (0..2_u64)
            .map(|id| {
                let h = (*notify).clone();
                let mut rng = Rng::new(seed.rotate_left(7) ^ round ^ id);
                let app = app(&machine);
                spawn(&machine, "notifier", move || {
                    let nap = app.create_event("driver-nap", true, false).unwrap();
                    for _ in 0..200 {
                        match h.notify() {
                            Ok(()) | Err(NtStatus::OBJECT_NAME_NOT_FOUND) => {}
                            Err(NtStatus::INVALID_DEVICE_STATE) => break,
                            Err(other) => panic!("unexpected {other:?}"),
                        }
                        let _ = nap.wait(Some(Duration::from_millis(rng.below(3))));
                    }
                })
            })
            .collect();
        let nap = app(&machine).create_event("main-nap", true, false).unwrap();
        let _ = nap.wait(Some(Duration::from_millis(100 + rng.below(100))));
        notify.delete();
        for t in &notifiers {
            assert_eq!(t.wait(None), kmdf_sim::exec::WaitStatus::Signaled);
        }
        stop.store(true, Ordering::SeqCst);
        assert_eq!(listener.wait(None), kmdf_sim::exec::WaitStatus::Signaled);
        drop(nap);
        assert_eq!(
            named_event_handles(&machine, READY),
            0,
            "round {round}: a handle was left open"
        );
    }
    assert!(
        delivered.load(Ordering::SeqCst) > 0,
        "seed {seed}: nothing delivered"
    );
    assert_clean(&machine, seed);
}

/// Allocation failure: the Module's creation with each allocation failing in turn fails cleanly
/// (STATUS_INSUFFICIENT_RESOURCES), leaves nothing behind, and a created Module notifies.
#[test]
fn nue_alloc_sweep() {
    let report = simulator::alloc_sweep(|fail_at| {
        let machine = task_support::machine();
        {
            let _on = machine.enter();
            let ready = app(&machine)
                .create_event(r"Global\DmfTestReady", true, false)
                .unwrap();
            if fail_at > 0 {
                machine
                    .faults()
                    .fail_nth(kmdf_sim::fault::FaultPoint::Allocation, fail_at);
            }
            match NotifyUserWithEvent::with(config(0)).create(&NoParent) {
                Ok(notify) => {
                    assert_eq!(notify.notify(), Ok(()));
                    assert!(ready.is_signaled());
                    notify.delete();
                }
                Err(status) => assert_eq!(status, NtStatus::INSUFFICIENT_RESOURCES),
            }
        }
        machine
    })
    .unwrap();
    assert!(report.points > 0);
}
