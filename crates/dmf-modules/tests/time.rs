//! DMF_Time: tick count and elapsed time on the virtual clock, and a scenario with concurrent
//! callers whose elapsed times must never go backwards, closed under load.
#![cfg(feature = "sim")]
// reason: scenario closures name their handle `h`, the thread `t`, the Rng `rng`, as Tests_* do.
#![allow(clippy::many_single_char_names)]

use std::time::Duration;

use dmf_core::module::NoParent;
use dmf_core::platform::contract::{EventKind, PlatformEvent};
use dmf_core::platform::Event;
use dmf_core::NtStatus;
use dmf_modules::time::{Time, TICK_NANOSECONDS};
use kmdf_sim::exec::{SystemThread, WaitStatus as SimWait};
use kmdf_sim::{ClockMode, Machine, VerifierMode};

/// DMF_Time: ticks are 100 ns of the platform clock; elapsed times follow the virtual clock.
#[test]
fn mods_time_ticks_and_elapsed_on_the_virtual_clock() {
    let machine = Machine::builder().verifier(VerifierMode::Record).build();
    let _on = machine.enter();
    let time = Time::with(()).create(&NoParent).unwrap();
    machine.advance(Duration::from_secs(2));
    assert_eq!(time.tick_count_get(), Ok(20_000_000));
    assert_eq!(time.tick_count_get_in_milliseconds(), Ok(2_000));
    assert_eq!(time.tick_count_get_in_nanoseconds(), Ok(2_000_000_000));
    let start = time.tick_count_get().unwrap();
    machine.advance(Duration::from_micros(2_500));
    assert_eq!(time.elapsed_time_milliseconds_get(start), Ok(2));
    assert_eq!(time.elapsed_time_nanoseconds_get(start), Ok(2_500_000));
    assert_eq!(TICK_NANOSECONDS, 100);
    // A start in the future or negative is invalid input, not a panic.
    assert_eq!(
        time.elapsed_time_milliseconds_get(start + 1_000_000),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        time.elapsed_time_nanoseconds_get(-1),
        Err(NtStatus::INVALID_PARAMETER)
    );
    let handle = (*time).clone();
    time.delete();
    assert_eq!(handle.tick_count_get(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert!(machine.verifier().violations().is_empty());
}

/// Scenario: three callers read ticks and elapsed times while virtual time jumps (AutoAdvance);
/// per caller the tick count never decreases and elapsed ≥ the nap taken; the Module is closed
/// under load and the callers then see STATUS_INVALID_DEVICE_STATE only.
#[test]
fn scenario_tests_time_monotonic_and_close_under_load() {
    let machine = Machine::builder()
        .clock(ClockMode::AutoAdvance)
        .verifier(VerifierMode::Record)
        .build();
    let _on = machine.enter();
    let time = Time::with(()).create(&NoParent).unwrap();
    let handle = (*time).clone();
    let threads: Vec<SystemThread> = (0..3_u64)
        .map(|id| {
            let h = handle.clone();
            SystemThread::spawn(&machine, &format!("t{id}"), move || {
                let mut last = 0;
                for n in 0..400_u64 {
                    let nap = Event::new(EventKind::Notification, false).unwrap();
                    let Ok(start) = h.tick_count_get() else { break };
                    assert!(start >= last, "ticks went backwards");
                    last = start;
                    let ms = (n * 7 + id) % 5;
                    let _ = nap.wait(Some(Duration::from_millis(ms)));
                    match h.elapsed_time_milliseconds_get(start) {
                        Ok(elapsed) => assert!(elapsed >= i64::try_from(ms).unwrap()),
                        Err(e) => {
                            assert_eq!(e, NtStatus::INVALID_DEVICE_STATE);
                            break;
                        }
                    }
                }
            })
            .unwrap()
        })
        .collect();
    let nap = Event::new(EventKind::Notification, false).unwrap();
    let _ = nap.wait(Some(Duration::from_millis(200)));
    time.delete();
    for t in &threads {
        assert_eq!(t.wait(None), SimWait::Signaled);
    }
    assert!(machine.crash().is_none());
    assert!(machine.verifier().violations().is_empty());
    assert!(machine.pool().outstanding().is_empty());
}
